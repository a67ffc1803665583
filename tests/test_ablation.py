"""The ablation's bookkeeping, without training: which runs it starts, skips, and says it is at."""

from __future__ import annotations

import json

import pandas as pd

from resemote_lib.params import resolve
from resemote_lib.reports import ablation


def test_progress_names_the_variant_and_seed_at_work_and_skips_finished_runs(tmp_path, monkeypatch, capsys):
    """Issue 24.17: 05_ablation's progress never said which variant and seed was training."""
    cfg = resolve({"run_name": "nb_ablation_synthetic_smoke", "results_dir": str(tmp_path)})
    trained = []

    def fit(run_cfg, progress=True):
        trained.append((run_cfg.model, run_cfg.seed))
        run_dir = tmp_path / cfg.run_name / "runs" / run_cfg.run_name
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.json").write_text(json.dumps({}))

    monkeypatch.setattr(ablation, "fit", fit)
    monkeypatch.setattr(ablation, "evaluate_run", lambda *a, **k: None)
    monkeypatch.setattr(ablation, "_speeds", lambda cfg, variant: {"params": 1, "gflops": 0.1, "infer_img_s": 1.0})
    monkeypatch.setattr(ablation, "_metrics", lambda run_dir: {})
    done = tmp_path / cfg.run_name / "runs" / "cnn_s0"
    done.mkdir(parents=True)
    (done / "metrics.json").write_text("{}")

    table = ablation.run_ablation(cfg, ["cnn", "cnn_se"], [0, 1])
    err = capsys.readouterr().err
    assert trained == [("cnn_se", 0), ("cnn", 1), ("cnn_se", 1)]  # seeds outer: every variant once first
    assert "cnn seed 0 already done" in err and "training cnn seed 1" in err and "training cnn_se seed 0" in err
    assert "3 trained now, 1 already done" in err
    assert isinstance(table, pd.DataFrame) and len(table) == 4
    assert list(zip(table["variant"], table["seed"], strict=True)) == [("cnn", 0), ("cnn", 1), ("cnn_se", 0),
                                                                       ("cnn_se", 1)]
