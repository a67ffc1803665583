"""resemote_lib.kaggle.datasets: the Kaggle mount used in place, else a download, else how to get it."""

from __future__ import annotations

import shutil
import sys

import pandas as pd
import pytest

from resemote_lib import kaggle
from resemote_lib.data import open_dataset
from resemote_lib.kaggle.credentials import WHERE_CREDENTIALS_GO

from . import kaggle_fakes as F
from . import layouts as L

no_credentials, read_only, snapshot = F.no_credentials, F.read_only, F.snapshot  # fixtures and helpers


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
    with pytest.raises(kaggle.KaggleError, match=r"no Kaggle credentials.*kaggle.json.*download by hand") as err:
        kaggle.download("rafdb", tmp_path / "raf")
    assert WHERE_CREDENTIALS_GO in str(err.value)
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
    assert WHERE_CREDENTIALS_GO in str(err.value) and "download by hand" in str(err.value)


# ---------------------------------------------------------------- the Kaggle mount (read-only)


class Forbidden:
    def download(self, slug, dest):
        raise AssertionError(f"downloaded {slug} although the Kaggle mount holds it")


@pytest.mark.parametrize("where", ["input/fer2013", "input/datasets/msambare/fer2013"])
def test_attached_dataset_is_used_in_place(tmp_path, no_credentials, monkeypatch, read_only, where):
    """download=True on Kaggle: the read-only mount is returned, nothing downloaded or written."""
    from resemote_lib import data

    mount = read_only(L.write_fer2013_folders(tmp_path / where))
    monkeypatch.setattr(data, "KAGGLE_INPUT", tmp_path / "input")
    before = snapshot(tmp_path / "input")
    sys.modules.pop("kaggle", None)
    assert kaggle.download("fer2013", None, client=Forbidden()) == mount
    assert kaggle.download("fer2013") == mount  # no client, no credentials
    assert kaggle.download("fer2013", tmp_path / "data" / "fer2013") == mount  # a dest without data: the mount
    assert not (tmp_path / "data").exists()
    assert "kaggle" not in sys.modules
    assert snapshot(tmp_path / "input") == before
    ds = open_dataset("fer2013", mount, "val", image_size=48, cache_dir=tmp_path / "working" / "cache")
    assert ds.counts() == L.FER_COUNTS["PublicTest"]
    assert snapshot(tmp_path / "input") == before


def test_mount_candidates_follow_default_root(tmp_path, monkeypatch):
    from resemote_lib import data

    monkeypatch.setattr(data, "KAGGLE_INPUT", tmp_path / "input")
    assert kaggle.mount_candidates("rafdb") == []  # nothing attached
    (tmp_path / "input/datasets/shuvoalok/raf-db-dataset").mkdir(parents=True)  # the newer mount layout
    assert kaggle.mount_candidates("rafdb") == [tmp_path / "input/datasets/shuvoalok/raf-db-dataset"]
    assert data.default_root("rafdb") == tmp_path / "input/datasets/shuvoalok/raf-db-dataset"
    (tmp_path / "input/raf-db-dataset").mkdir(parents=True)
    assert kaggle.mount_candidates("rafdb") == [tmp_path / "input/raf-db-dataset"]
    assert kaggle.mounted_root("rafdb") is None  # mounted, but no layout there


def test_explicit_dest_with_data_wins_over_the_mount(tmp_path, no_credentials, monkeypatch):
    from resemote_lib import data

    L.write_fer2013_folders(tmp_path / "input" / "fer2013")
    monkeypatch.setattr(data, "KAGGLE_INPUT", tmp_path / "input")
    mine = L.write_fer2013_csv(tmp_path / "mine")
    assert kaggle.download("fer2013", mine, client=Forbidden()) == mine


def test_dest_inside_the_mount_is_never_written(tmp_path, no_credentials, monkeypatch):
    from resemote_lib import data

    (tmp_path / "input").mkdir()
    monkeypatch.setattr(data, "KAGGLE_INPUT", tmp_path / "input")
    with pytest.raises(kaggle.KaggleError, match=r"read-only Kaggle input.*attach the dataset msambare/fer2013"):
        kaggle.download("fer2013", tmp_path / "input" / "fer2013", client=Forbidden())
    assert list((tmp_path / "input").iterdir()) == []


@pytest.mark.realdata
def test_real_fer2013_from_a_read_only_kaggle_mount(real_fer2013, tmp_path, monkeypatch, read_only):
    """00_data with download=True, no credentials, FER2013 attached read-only: used in place."""
    from resemote_lib.commands import pipeline

    kaggle_root = tmp_path / "kaggle"
    mount = kaggle_root / "input" / "fer2013"
    shutil.copytree(real_fer2013, mount)  # a copy: chmod must not touch the user's data
    read_only(mount)
    before = snapshot(mount)
    working = kaggle_root / "working"
    monkeypatch.setenv("RESEMOTE_KAGGLE_INPUT", str(kaggle_root / "input"))
    monkeypatch.setenv("RESEMOTE_CACHE", str(working / "cache"))
    monkeypatch.setenv("RESEMOTE_DATA", str(working / "data"))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle-config"))
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    out = pipeline.execute("00_data", working / "notebooks" / "00_data.ipynb",
                           {"dataset": "fer2013", "download": True, "image_size": 48, "run_name": "kaggle_real",
                            "results_dir": str(working / "results")}, progress=False)
    assert snapshot(mount) == before
    assert out.is_file()
    table1 = pd.read_csv(working / "results" / "kaggle_real" / "table1.csv")
    assert table1.loc[0, ["layout", "total"]].tolist() == ["fer2013-folders", 35887]
    assert list((working / "cache").rglob("*.pt")), "decoded images are cached in the working folder"
    # RESEMOTE_DATA is empty and nothing was downloaded: the mount was the only copy it could read.
    assert not (working / "data").exists()
