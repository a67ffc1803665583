"""resemote_lib.kaggle.push and its command line: the kernel folder, the push record, refusals.

The pushes bundle a fresh clone of this checkout's HEAD (a clean tree, whatever state the
working copy is in), with the Kaggle API faked at its boundary.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys

import pytest

from resemote_lib import provenance
from resemote_lib.kaggle import cli, push
from resemote_lib.kaggle.credentials import WHERE_CREDENTIALS_GO

from . import kaggle_fakes as F
from .kaggle_fakes import REAL, SMOKE, FakeClient, embedded_config, git, unpack_script

no_credentials, repo, user = F.no_credentials, F.repo, F.user  # fixtures


def test_dry_run_metadata_and_bundle(repo, tmp_path, no_credentials, user, capsys):
    out = tmp_path / "kernel"
    assert cli.main(["push", REAL, "--repo", str(repo), "--dry-run", str(out)]) == 0
    meta = json.loads((out / push.METADATA_FILE).read_text())
    assert meta == {
        "id": "alice/resemote-fer2013-clean", "title": "resemote fer2013_clean", "code_file": "resemote_kernel.py",
        "language": "python", "kernel_type": "script", "is_private": True, "enable_gpu": True,
        "enable_tpu": False, "enable_internet": True, "machine_shape": "NvidiaTeslaT4",
        "dataset_sources": ["msambare/fer2013"], "competition_sources": [], "kernel_sources": [],
        "model_sources": [],
    }
    slugify = pytest.importorskip("slugify").slugify  # what kaggle's push compares the id with
    assert meta["id"].split("/")[1] == slugify(meta["title"])
    assert (out / meta["code_file"]).is_file()
    assert "not pushed" in capsys.readouterr().out

    src = unpack_script(out / meta["code_file"], tmp_path / "src")
    head = git(repo, "rev-parse", "HEAD")
    tracked = set(git(repo, "ls-files").splitlines())
    files = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}
    assert files == {f for f in tracked if not f.startswith("results/")} | {provenance.SOURCE_RECORD}
    for name in sorted(files - {provenance.SOURCE_RECORD}):
        assert (src / name).read_bytes() == (repo / name).read_bytes(), name
    assert not any(f.startswith(("results/", ".venv/", "data/", ".cache/", ".git/")) for f in files)
    record = json.loads((src / provenance.SOURCE_RECORD).read_text())
    assert record["commit"] == head and record["dirty"] is False and record["source"] == "git archive HEAD"
    assert record["code_sha256"] == provenance.code_hash(src) == provenance.code_hash(repo)
    assert provenance.git_state(src) == {"commit": head, "dirty": False, "from": provenance.SOURCE_RECORD}
    assert (src / REAL).is_file() and (src / "params/_real.yaml").is_file()  # the params and their base

    config = embedded_config(out / meta["code_file"])
    assert config["params"] == REAL and config["run_name"] == "fer2013_clean"
    assert config["dataset_slug"] == "msambare/fer2013" and config["source"]["commit"] == head
    assert "torch>=2.1" in config["requirements"]


def test_push_with_fake_api_records_what_was_pushed(repo, tmp_path, user):
    client = FakeClient(tmp_path / "api")
    results = tmp_path / "results"
    assert cli.main(["push", REAL, "--repo", str(repo), "--results", str(results), "--set", "seed=3"],
                    client=client) == 0
    assert [c[0] for c in client.calls] == ["push"]
    meta = client.calls[0][1]
    assert meta["id"] == "alice/resemote-fer2013-clean" and meta["dataset_sources"] == ["msambare/fer2013"]
    record = json.loads((results / "fer2013_clean" / push.PUSH_RECORD).read_text())
    assert record["kernel"] == meta["id"] and record["commit"] == git(repo, "rev-parse", "HEAD")
    assert record["params"] == REAL and record["overrides"] == {"seed": 3} and record["dirty"] is False
    assert record["version"] == 1 and record["url"].startswith("https://www.kaggle.com/code/")
    assert record["pushed_utc"] and record["machine_shape"] == "NvidiaTeslaT4"
    script = client.folders[0] / push.CODE_FILE
    text = script.read_text()
    start = text.index("BUNDLE = (")
    encoded = "".join(line.strip().strip('"') for line in text[start:].splitlines()[1:] if line.startswith('    "'))
    assert hashlib.sha256(base64.b64decode(encoded)).hexdigest() == record["bundle_sha256"]
    assert embedded_config(script)["overrides"] == {"seed": 3}


def test_user_name_comes_from_the_api_when_not_configured(repo, tmp_path, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "cfg"))
    client = FakeClient(tmp_path / "api")
    assert cli.main(["push", SMOKE, "--repo", str(repo), "--results", str(tmp_path / "r")], client=client) == 0
    assert client.calls[0] == ("username",) and client.calls[1][1]["id"] == "from-api/resemote-smoke"
    assert client.calls[1][1]["dataset_sources"] == []  # synthetic: nothing to attach


def test_unknown_params_key_is_refused_before_pushing(repo, tmp_path, user, capsys):
    client = FakeClient(tmp_path / "api")
    assert cli.main(["push", SMOKE, "--repo", str(repo), "--set", "colour=blue"], client=client) == 2
    assert "colour" in capsys.readouterr().err and client.calls == []


def test_push_without_credentials_is_one_line(repo, tmp_path, no_credentials, capsys):
    sys.modules.pop("kaggle", None)
    assert cli.main(["push", SMOKE, "--repo", str(repo), "--results", str(tmp_path / "r")]) == 2
    out = capsys.readouterr()
    assert len(out.err.strip().splitlines()) == 1 and "no Kaggle credentials" in out.err
    assert WHERE_CREDENTIALS_GO in out.err  # the one message, as download and pull give it
    assert "kaggle" not in sys.modules and not (tmp_path / "r").exists()


def test_p100_is_accepted_with_a_warning(repo, tmp_path, user, caplog):
    out = tmp_path / "kernel"
    assert cli.main(["push", SMOKE, "--repo", str(repo), "--dry-run", str(out), "--accelerator", "gpu-p100",
                     "--no-internet"]) == 0
    meta = json.loads((out / push.METADATA_FILE).read_text())
    assert meta["machine_shape"] == "NvidiaTeslaP100" and meta["enable_internet"] is False
    assert "retired" in caplog.text and "sm_60" in caplog.text


def test_title_and_slug_stay_within_kaggle_limits():
    meta = push.kernel_metadata("bob", "x" * 80 + "_Run", "rafdb")
    assert 5 <= len(meta["title"]) <= push.MAX_TITLE
    assert meta["id"] == "bob/" + push.kernel_slug(meta["title"]) and meta["dataset_sources"] == [
        "shuvoalok/raf-db-dataset"]
    with pytest.raises(ValueError, match="unknown accelerator"):
        push.kernel_metadata("bob", "r", "fer2013", accelerator="tpu")


@pytest.mark.parametrize("where", ["file", "file/kernel"])
def test_dry_run_into_a_file_is_refused_before_any_work(tmp_path, monkeypatch, capsys, where):
    from resemote_lib.kaggle import bundle

    (tmp_path / "file").write_text("mine")
    monkeypatch.setattr(bundle, "source_files", lambda *a, **k: pytest.fail("bundled before checking --dry-run"))
    assert cli.main(["push", SMOKE, "--dry-run", str(tmp_path / where)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"kaggle push: --dry-run {tmp_path / where}")
    assert f"{tmp_path / 'file'} is a file, not a folder; give a folder" in err
    assert (tmp_path / "file").read_text() == "mine"
