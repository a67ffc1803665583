"""resemote_lib.kaggle.pull: wait, download, check, take in, regenerate Table III (the API faked)."""

from __future__ import annotations

import json
import re
import sys

import pytest

from resemote_lib import paths
from resemote_lib.kaggle import cli, pull, push
from resemote_lib.kaggle.credentials import WHERE_CREDENTIALS_GO

from . import kaggle_fakes as F
from .kaggle_fakes import FakeClient, fake_run_output, pushed_record

no_credentials, regenerated = F.no_credentials, F.regenerated  # fixtures


def test_pull_complete_downloads_checks_and_regenerates(tmp_path, regenerated, capsys):
    results = tmp_path / "results"
    pushed_record(results)
    client = FakeClient(tmp_path, states=["queued", "running", "complete"], output=fake_run_output(), log="done")
    assert cli.main(["pull", "r1", "--results", str(results), "--poll", "0", "--no-progress"], client=client) == 0
    run = results / "r1"
    assert json.loads((run / "metrics.json").read_text()) == {"accuracy": 0.5}
    assert (run / "best.pt").is_file() and (run / "notebooks" / "01_train.ipynb").is_file()
    assert (run / "kaggle_paper" / "table3.md").is_file() and (run / "kaggle.log").read_text() == "done"
    assert (run / push.PUSH_RECORD).is_file()
    assert regenerated == [results]
    assert [c[0] for c in client.calls] == ["status"] * 3 + ["output"]
    assert "test accuracy 50.00%" in capsys.readouterr().out
    assert not (paths.CACHE / "kaggle" / "r1").exists()


def test_pull_of_a_failed_kernel_prints_its_log_tail(tmp_path, regenerated, capsys):
    results = tmp_path / "results"
    pushed_record(results)
    log = json.dumps([{"stream_name": "stdout", "time": i, "data": f"line {i}\n"} for i in range(100)])
    client = FakeClient(tmp_path, states=["running", "error"], output=fake_run_output(metrics=False), log=log)
    assert cli.main(["pull", "r1", "--results", str(results), "--poll", "0", "--no-progress"], client=client) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("kaggle pull: kernel alice/resemote-r1 ended with status error")
    assert err[-1] == "line 99" and "line 50" not in err and len(err) == 1 + pull.LOG_TAIL
    assert (results / "r1" / "kaggle.log").read_text() == log
    assert not (results / "r1" / "provenance.json").exists() and regenerated == []


def test_pull_of_an_output_without_metrics_fails_clearly(tmp_path, regenerated, capsys):
    results = tmp_path / "results"
    pushed_record(results)
    client = FakeClient(tmp_path, output=fake_run_output(metrics=False))
    assert cli.main(["pull", "r1", "--results", str(results), "--poll", "0", "--no-progress"], client=client) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no results/r1/metrics.json" in err
    assert not list(results.rglob("provenance.json")) and regenerated == []  # kept out of results/


def test_pull_refuses_output_from_another_commit(tmp_path, regenerated, capsys):
    results = tmp_path / "results"
    pushed_record(results, commit="c0ffee")
    client = FakeClient(tmp_path, output=fake_run_output(commit="deadbeef"))
    assert cli.main(["pull", "r1", "--results", str(results), "--poll", "0", "--no-progress"], client=client) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "commit mismatch" in err and "deadbeef" in err and "c0ffee" in err
    assert not list(results.rglob("metrics.json")) and regenerated == []  # never enters Table III


def test_pull_reports_a_table3_failure(tmp_path, monkeypatch, capsys):
    from resemote_lib.commands import pipeline

    def broken(*a, **k):
        raise RuntimeError("03_paper failed in cell 3: KeyError: 'accuracy'")

    monkeypatch.setattr(pipeline, "regenerate_paper", broken)
    results = tmp_path / "results"
    pushed_record(results)
    assert cli.main(["pull", "r1", "--results", str(results), "--poll", "0", "--no-progress"],
                    client=FakeClient(tmp_path, output=fake_run_output())) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Table III was not regenerated" in err and "03_paper failed" in err
    assert (results / "r1" / "metrics.json").is_file()  # the checked output is kept


def test_pull_without_credentials_is_one_line(tmp_path, no_credentials, capsys):
    results = tmp_path / "results"
    pushed_record(results)
    sys.modules.pop("kaggle", None)
    assert cli.main(["pull", "r1", "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no Kaggle credentials" in err and "kaggle" not in sys.modules
    assert WHERE_CREDENTIALS_GO in err


def test_pull_of_nothing_pushed(tmp_path, capsys):
    assert cli.main(["pull", "never", "--results", str(tmp_path)], client=FakeClient(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing pushed for run 'never'" in err


def test_pull_times_out_while_running(tmp_path, capsys):
    results = tmp_path / "results"
    pushed_record(results)
    client = FakeClient(tmp_path, states=["running"])
    assert cli.main(["pull", "r1", "--results", str(results), "--timeout", "0", "--no-progress"],
                    client=client) == 3
    assert "still running" in capsys.readouterr().err
    assert ("output", "alice/resemote-r1") not in client.calls


@pytest.mark.parametrize("text, says", [
    ("", r"kaggle_push\.json is not valid JSON \(Expecting value: line 1 column 1"),
    ('{"kernel": "alice/resemote-r1", "commit": "c0ffee",', r"kaggle_push\.json is not valid JSON"),
    ("[1, 2]", r"kaggle_push\.json holds a JSON list, not a push record"),
    ('{"commit": "c0ffee", "dirty": false}', r"kaggle_push\.json has no 'kernel', so it is not a complete push"),
    ('{"kernel": "alice/resemote-r1"}', r"kaggle_push\.json has no 'commit', 'dirty', so"),
    ('{"kernel": null, "commit": "c0ffee", "dirty": false}', r"kaggle_push\.json: kernel is None, not OWNER/SLUG"),
])
def test_a_damaged_push_record_is_one_line_naming_it(tmp_path, capsys, text, says):
    results = tmp_path / "results"
    pushed_record(results)
    (results / "r1" / push.PUSH_RECORD).write_text(text)
    client = FakeClient(tmp_path)
    assert cli.main(["pull", "r1", "--results", str(results), "--no-progress"], client=client) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"kaggle pull: {results / 'r1' / push.PUSH_RECORD}")
    assert re.search(says, err) and "push the run again" in err
    assert client.calls == []  # refused before Kaggle is asked anything


def test_an_output_with_broken_provenance_is_refused(tmp_path, regenerated, capsys):
    results = tmp_path / "results"
    pushed_record(results)

    def broken(dest):
        fake_run_output()(dest)
        (dest / "results" / "r1" / "provenance.json").write_text("{not json")

    assert cli.main(["pull", "r1", "--results", str(results), "--poll", "0", "--no-progress"],
                    client=FakeClient(tmp_path, output=broken)) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "provenance.json is not valid JSON" in err
    assert not (results / "r1" / "metrics.json").exists() and regenerated == []
