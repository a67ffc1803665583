from __future__ import annotations

import json
import os
import warnings

import pytest

from resemote_lib import runs
from resemote_lib.params import resolve


def _finished_run(results, name: str, mtime: float, **values) -> None:
    run = results / name
    run.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = resolve({"run_name": name, **values})
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    os.utime(run / "config.json", (mtime, mtime))


def test_pick_run_takes_the_newest_finished_run_and_says_which(tmp_path):
    results = tmp_path / "results"
    with pytest.raises(FileNotFoundError, match="no finished run in .* train one"):
        runs.pick_run(results)
    _finished_run(results, "older", 1_000_000, model="resemotenet")
    _finished_run(results, "newer", 2_000_000, model="cnn")
    choice = runs.pick_run(results)
    assert choice.run_dir == results / "newer" and choice.cfg.model == "cnn"
    assert "newer" in choice.sentence.splitlines()[0] and "`older`" in choice.sentence
    asked = runs.pick_run(results, "older")
    assert asked.cfg.model == "resemotenet" and "as set by `run_name`" in asked.sentence


def test_notebooks_show_the_best_real_run_not_the_newest_smoke_run(tmp_path):
    """Issue 31.14: after 01_train ran on its defaults, 04_explore and 02_evaluate showed that
    newest run, a synthetic smoke model, and the real FER2013 model vanished from view. Runs on
    real data come first, full runs before smoke runs, then the newest; the first line, bold,
    names the run shown and the others."""
    results = tmp_path / "results"
    _finished_run(results, "fer2013_cpu", 1_000_000, dataset="fer2013", protocol="cpu_budget")
    _finished_run(results, "fer2013_smoke", 2_000_000, dataset="fer2013", protocol="smoke")
    _finished_run(results, "nb_train_synthetic_smoke", 3_000_000)
    _finished_run(results, "demo", 2_500_000, protocol="demo")
    (results / "broken").mkdir()
    (results / "broken" / "config.json").write_text("{not json")
    os.utime(results / "broken" / "config.json", (4_000_000, 4_000_000))
    assert runs.finished_runs(results)[0] == "broken"  # the newest
    assert runs.preferred_runs(results) == ["fer2013_cpu", "fer2013_smoke", "demo", "nb_train_synthetic_smoke",
                                            "broken"]
    choice = runs.pick_run(results, verb="Evaluating")
    assert choice.run_dir == results / "fer2013_cpu" and choice.cfg.protocol == "cpu_budget"
    first = choice.sentence.splitlines()[0]
    assert first.startswith("**Evaluating run `fer2013_cpu`") and first.endswith("**"), first
    for other in ("fer2013_smoke", "demo", "nb_train_synthetic_smoke", "broken"):
        assert f"`{other}`" in first, other
    assert "real data before synthetic" in choice.sentence
