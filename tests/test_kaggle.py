from __future__ import annotations

import shutil
import sys

import pytest

from resemote_lib import kaggle
from resemote_lib.data import open_dataset

from . import layouts as L


@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle-config"))
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)


class ZipClient:
    """Stands in for Kaggle: 'downloads' a zip of a fixture layout, nested one level."""

    def __init__(self, tmp_path):
        self.tmp_path, self.calls = tmp_path, []

    def download(self, slug, dest):
        self.calls.append(slug)
        src = L.write_fer2013_folders(self.tmp_path / "src" / "fer2013")
        shutil.make_archive(str(dest / "fer2013"), "zip", src.parent)


def test_already_present_skips(tmp_path, no_credentials):
    root = L.write_fer2013_csv(tmp_path / "fer")
    client = ZipClient(tmp_path)
    assert kaggle.download("fer2013", root, client=client) == root
    assert kaggle.download("fer2013", root) == root  # no credentials needed either
    assert client.calls == []


def test_missing_credentials_is_one_clear_error(tmp_path, no_credentials, capsys):
    sys.modules.pop("kaggle", None)
    with pytest.raises(kaggle.KaggleError, match=r"no Kaggle credentials.*kaggle.json.*download by hand"):
        kaggle.download("rafdb", tmp_path / "raf")
    assert "kaggle" not in sys.modules  # never imported without credentials
    assert capsys.readouterr().out == ""


def test_fake_client_download_unzips_and_validates(tmp_path, no_credentials):
    client = ZipClient(tmp_path)
    root = kaggle.download("fer2013", tmp_path / "dest", client=client)
    assert client.calls == ["msambare/fer2013"]
    assert not list((tmp_path / "dest").glob("*.zip"))
    ds = open_dataset("fer2013", root, "val", image_size=48, cache_dir=tmp_path / "c")
    assert ds.counts() == L.FER_COUNTS["PublicTest"]


def test_download_of_wrong_content_fails_clearly(tmp_path, no_credentials):
    class Junk:
        def download(self, slug, dest):
            (dest / "readme.txt").write_text("nothing")

    with pytest.raises(kaggle.KaggleError, match="downloaded shuvoalok/raf-db-dataset.*no known layout"):
        kaggle.download("rafdb", tmp_path / "d", client=Junk())


def test_real_client_wraps_systemexit_and_hides_chatter(tmp_path, monkeypatch, capsys):
    """kaggle prints 'Authentication required' and raises SystemExit: we give one KaggleError."""
    import types

    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "s3cr3t-key-value")
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "cfg"))

    def dataset_download_files(slug, path, **kw):
        print("Authentication required for someone / s3cr3t-key-value")
        raise SystemExit(1)

    fake = types.ModuleType("kaggle")
    fake.api = types.SimpleNamespace(dataset_download_files=dataset_download_files)
    monkeypatch.setitem(sys.modules, "kaggle", fake)
    with pytest.raises(kaggle.KaggleError, match="downloading noamsegal/affectnet-training-data failed") as err:
        kaggle.download("affectnet", tmp_path / "an")
    out = capsys.readouterr()
    assert "s3cr3t" not in str(err.value) and "s3cr3t" not in out.out + out.err


def test_credential_sources_names_places_only(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("KAGGLE_API_TOKEN", "tok-123")
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    (tmp_path / "kaggle.json").write_text('{"username": "u", "key": "k"}')
    found = kaggle.credential_sources()
    assert found == [str(tmp_path / "kaggle.json"), "KAGGLE_API_TOKEN"]
    assert "tok-123" not in " ".join(found)
