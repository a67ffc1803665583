"""The ablation's bookkeeping, without training: which runs it starts, skips, and says it is at."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

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
    monkeypatch.setattr(ablation, "_speeds", lambda *a: {"params": 1, "gflops": 0.1, "infer_img_s": 1.0})
    opened = []
    monkeypatch.setattr(ablation, "open_split", lambda cfg, split: opened.append(split) or SimpleNamespace(images=[]))
    monkeypatch.setattr(ablation, "_metrics", lambda run_dir: {})
    done = tmp_path / cfg.run_name / "runs" / "cnn_s0"
    done.mkdir(parents=True)
    (done / "metrics.json").write_text("{}")

    table = ablation.run_ablation(cfg, ["cnn", "cnn_se"], [0, 1])
    err = capsys.readouterr().err
    assert trained == [("cnn_se", 0), ("cnn", 1), ("cnn_se", 1)]  # seeds outer: every variant once first
    assert "cnn seed 0 already done" in err and "training cnn seed 1" in err and "training cnn_se seed 0" in err
    assert "3 trained now, 1 already done" in err
    assert opened == ["test"]  # the test images for the speed column: opened once, not once per variant
    assert isinstance(table, pd.DataFrame) and len(table) == 4
    assert list(zip(table["variant"], table["seed"], strict=True)) == [("cnn", 0), ("cnn", 1), ("cnn_se", 0),
                                                                       ("cnn_se", 1)]


def _fake_run(root, name, true, predicted, duplicate_of, recall=None):
    """A run folder with what the ablation reads: predictions.csv and metrics.json."""
    run = root / "runs" / name
    run.mkdir(parents=True)
    pd.DataFrame({"id": [f"img{k}.jpg" for k in range(len(true))], "true": true, "predicted": predicted,
                  "duplicate_of": duplicate_of}).to_csv(run / "predictions.csv", index=False)
    correct = [t == p for t, p in zip(true, predicted, strict=True)]
    kept = [c for c, d in zip(correct, duplicate_of, strict=True) if not d]
    per_class = [{"class": c, "recall": (recall or {}).get(c, 0.5), "support": 1} for c in ("happy", "angry")]
    (run / "metrics.json").write_text(json.dumps({
        "accuracy": sum(correct) / len(correct), "accuracy_ci95": [0.1, 0.9], "per_class": per_class,
        "dedup": {"accuracy": sum(kept) / len(kept), "accuracy_ci95": [0.2, 0.8]}}))
    return f"runs/{name}"


def test_paired_differences_match_a_hand_count_per_seed_and_pooled(tmp_path):
    """Seed s of a variant is paired with seed s of the reference, image by image (by id, whatever
    the row order), on both test sets; the pooled row counts all seed-matched pairs together."""
    true = ["happy"] * 6
    dup = ["", "", "", "", "x.jpg", "y.jpg"]  # the last two images have a copy in train: not in dedup
    rows = [
        ("resemotenet_lean", 0, _fake_run(tmp_path, "ref0", true, ["happy", "happy", "sad", "sad", "happy", "sad"], dup)),
        ("resemotenet_lean", 1, _fake_run(tmp_path, "ref1", true, ["happy"] * 6, dup)),
        ("cnn", 0, _fake_run(tmp_path, "cnn0", true, ["happy", "sad", "happy", "happy", "sad", "sad"], dup)),
        ("cnn", 1, _fake_run(tmp_path, "cnn1", true, ["sad", "happy", "happy", "happy", "happy", "happy"], dup)),
    ]
    table = pd.DataFrame(rows, columns=["variant", "seed", "run"])
    ref0 = tmp_path / "runs" / "ref0" / "predictions.csv"
    pd.read_csv(ref0, keep_default_na=False).iloc[::-1].to_csv(ref0, index=False)  # another row order, same images
    paired = ablation.paired_differences(table, tmp_path)
    got = {(r.test_set, r.seed): (r.n, r.variant_only, r.reference_only) for r in paired.itertuples()}
    # seed 0: cnn right on 0, 2, 3 and ref right on 0, 1, 4: cnn-only {2, 3}, ref-only {1, 4} (dedup: {1})
    # seed 1: cnn right on all but 0, ref right on all: cnn-only {}, ref-only {0}
    # all: per image, cnn minus ref averaged over the seeds: [-.5, -.5, .5, .5, -.5, 0]: 2 for cnn, 3 for ref;
    # each image counts once (n = 6, not 12: the seeds' pairs of one image are not independent)
    assert got == {("official", 0): (6, 2, 2), ("official", 1): (6, 0, 1), ("official", "all"): (6, 2, 3),
                   ("dedup", 0): (4, 2, 1), ("dedup", 1): (4, 0, 1), ("dedup", "all"): (4, 2, 2)}
    over = paired[(paired["test_set"] == "official") & (paired["seed"] == "all")].iloc[0]
    assert over["seeds"] == 2 and over["difference"] == pytest.approx((2 - 3) / 12)
    assert over["accuracy"] == pytest.approx(8 / 12) and over["reference_accuracy"] == pytest.approx(9 / 12)
    half = 1.96 * np.std([-.5, -.5, .5, .5, -.5, 0]) / np.sqrt(6)
    assert (over["low"], over["high"]) == pytest.approx((-1 / 12 - half, -1 / 12 + half))
    assert set(paired["variant"]) == {"cnn"} and set(paired["reference"]) == {"resemotenet_lean"}


def test_each_block_is_measured_with_and_without_the_other_block(tmp_path):
    """The 2x2 design: SE = (lean - cnn_res_lean) and (cnn_se - cnn); residual blocks = (lean -
    cnn_se) and (cnn_res_lean - cnn); each paired on the same images like paired_differences."""
    true, dup = ["happy"] * 4, ["", "", "", "x.jpg"]
    right = {"resemotenet_lean": [1, 1, 1, 0], "cnn_res_lean": [1, 1, 0, 1], "cnn_se": [1, 0, 0, 0], "cnn": [0, 0, 0, 0]}
    table = pd.DataFrame([(v, 0, _fake_run(tmp_path, v, true, ["happy" if r else "sad" for r in rs], dup))
                          for v, rs in right.items()], columns=["variant", "seed", "run"])
    got = ablation.contrasts(table, tmp_path)
    official = got[got["test_set"] == "official"].set_index(["block", "context"])
    assert list(got.columns) == ablation.CONTRAST_COLUMNS and len(got) == 8  # 4 contrasts x 2 test sets, one seed
    assert official.loc[("SE block", "with the residual blocks"),
                        ["with_variant", "without_variant", "with_only", "without_only"]].tolist() \
        == ["resemotenet_lean", "cnn_res_lean", 1, 1]
    assert official["difference"].to_dict() == pytest.approx({
        ("SE block", "with the residual blocks"): 0.0, ("SE block", "without the residual blocks"): 0.25,
        ("residual blocks", "with the SE block"): 0.5, ("residual blocks", "without the SE block"): 0.75})
    dedup = got[got["test_set"] == "dedup"].set_index(["block", "context"])  # image 3 has a copy: not counted
    assert dedup.loc[("SE block", "with the residual blocks"), ["n", "with_only", "without_only"]].tolist() == [3, 1, 0]
    assert (got["difference"] - (got["with_accuracy"] - got["without_accuracy"])).abs().max() < 1e-12
    lean_and_cnn = table[table["variant"].isin(["resemotenet_lean", "cnn"])]
    assert ablation.contrasts(lean_and_cnn, tmp_path).empty  # no contrast has both of its variants
    assert len(ablation.missing_contrasts(lean_and_cnn)) == 4 and ablation.missing_contrasts(table) == []
    md = ablation.write(table.assign(params=1, gflops=0.1, train_img_s=1.0, infer_img_s=1.0, accuracy=0.5,
                                     dedup_accuracy=0.5, balanced_accuracy=0.5, macro_f1=0.5, nll=1.0, ece=0.1,
                                     best_epoch=1), pd.DataFrame(columns=["variant"]), tmp_path)["md"].read_text()
    assert "## What each block buys" in md
    assert re.search(r"\| residual blocks +\| without the SE block +\| cnn_res_lean - cnn +\| official +\| +0 \|.*\+75\.00", md)


def test_the_gpu_ablations_full_forms_give_the_contrasts_their_lean_forms_would(tmp_path):
    """params/ablation_<dataset>.yaml runs resemotenet and cnn_res (no cnn_res_lean): the SE block
    with the residual blocks is then resemotenet - cnn_res; lean pairs are preferred when both ran."""
    true = ["happy"] * 4
    right = {"resemotenet": [1, 1, 1, 0], "resemotenet_lean": [1, 1, 0, 0], "cnn": [0, 0, 0, 0], "cnn_se": [1, 0, 0, 0],
             "cnn_res": [1, 0, 0, 0]}
    table = pd.DataFrame([(v, 0, _fake_run(tmp_path, v, true, ["happy" if r else "sad" for r in rs], [""] * 4))
                          for v, rs in right.items()], columns=["variant", "seed", "run"])
    from resemote_lib import paths
    from resemote_lib.params import resolved_values

    assert set(table["variant"]) == set(resolved_values(paths.PARAMS / "ablation_fer2013.yaml")["variants"])
    got = ablation.contrasts(table, tmp_path).query("test_set == 'official'").set_index(["block", "context"])
    assert got.loc[("SE block", "with the residual blocks"), ["with_variant", "without_variant", "difference"]].tolist() \
        == ["resemotenet", "cnn_res", 0.5]
    assert got.loc[("residual blocks", "with the SE block"), "with_variant"] == "resemotenet_lean"  # lean preferred
    assert got.loc[("residual blocks", "without the SE block"), ["with_variant", "difference"]].tolist() == ["cnn_res", 0.25]
    assert ablation.missing_contrasts(table) == []


def test_runs_tested_on_different_images_are_not_paired(tmp_path):
    table = pd.DataFrame([("resemotenet_lean", 0, _fake_run(tmp_path, "ref0", ["happy"] * 3, ["happy"] * 3, [""] * 3)),
                          ("cnn", 0, _fake_run(tmp_path, "cnn0", ["happy"] * 4, ["happy"] * 4, [""] * 4))],
                         columns=["variant", "seed", "run"])
    with pytest.raises(ValueError, match="different images"):
        ablation.paired_differences(table, tmp_path)


def test_the_written_table_has_every_metric_and_the_paired_section(tmp_path):
    true, dup = ["happy", "angry", "happy", "angry"], ["", "", "", "a.jpg"]
    runs = [("resemotenet_lean", 0, _fake_run(tmp_path, "ref0", true, ["happy", "angry", "angry", "angry"], dup,
                                              {"happy": 0.5, "angry": 1.0})),
            ("cnn", 0, _fake_run(tmp_path, "cnn0", true, ["happy", "happy", "happy", "angry"], dup,
                                 {"happy": 1.0, "angry": 0.5}))]
    table = pd.DataFrame([{"variant": v, "seed": s, "run": r, "params": 10, "gflops": 0.1, "train_img_s": 5.0,
                           "infer_img_s": 9.0, "accuracy": 0.75, "dedup_accuracy": 0.7, "balanced_accuracy": 0.7,
                           "macro_f1": 0.6, "nll": 1.0, "ece": 0.1, "best_epoch": 1} for v, s, r in runs])
    table.attrs["missing"] = ["cnn_s1"]
    files = ablation.write(table, pd.DataFrame(columns=["variant"]), tmp_path, note="a note")
    md = files["md"].read_text()
    assert "**Partial: 1 run(s) not finished and not in these tables**: cnn_s1." in md
    assert "macro-F1 %" in md and "## Each variant against `resemotenet_lean`" in md and "McNemar p" in md
    assert "a note" in md
    recall = pd.read_csv(files["recall"])
    assert list(recall["class"][:2]) == ["angry", "happy"]  # canonical order, not the file's
    assert recall.set_index(["variant", "class"])["recall"].to_dict() == {
        ("resemotenet_lean", "angry"): 1.0, ("resemotenet_lean", "happy"): 0.5, ("cnn", "angry"): 0.5,
        ("cnn", "happy"): 1.0}
    intervals = ablation.accuracy_intervals(table, tmp_path)
    assert len(intervals) == 4 and set(intervals["test_set"]) == {"official", "dedup"}


def test_with_train_missing_off_only_finished_runs_are_tabulated_and_the_rest_named(tmp_path, monkeypatch):
    cfg = resolve({"run_name": "nb_ablation_synthetic_smoke", "results_dir": str(tmp_path)})
    monkeypatch.setattr(ablation, "fit", lambda *a, **k: pytest.fail("trained although train_missing is off"))
    monkeypatch.setattr(ablation, "_speeds", lambda *a: {"params": 1, "gflops": 0.1, "infer_img_s": 1.0})
    opened = []
    monkeypatch.setattr(ablation, "open_split", lambda cfg, split: opened.append(split) or SimpleNamespace(images=[]))
    monkeypatch.setattr(ablation, "_metrics", lambda run_dir: {"accuracy": 0.5})
    done = tmp_path / cfg.run_name / "runs" / "cnn_se_s1"
    done.mkdir(parents=True)
    (done / "metrics.json").write_text("{}")
    table = ablation.run_ablation(cfg, ["cnn", "cnn_se"], [0, 1], train_missing=False, progress=False)
    assert list(zip(table["variant"], table["seed"], strict=True)) == [("cnn_se", 1)]
    assert table.attrs["missing"] == ["cnn_s0", "cnn_se_s0", "cnn_s1"]


def test_the_real_ablation_trains_every_variant_exactly_as_make_demo_real_trains():
    """Issue 29: same epochs, batch, optimiser, schedule, augmentation, input size, precision...
    params/ablation_fer2013_cpu.yaml may differ from params/fer2013_cpu.yaml only in the
    ablation's own keys, and each run's config only in model, seed, folder and name."""
    from resemote_lib import paths
    from resemote_lib.params import load_params, resolved_values

    ablation_values = resolved_values(paths.PARAMS / "ablation_fer2013_cpu.yaml")
    demo_real = resolved_values(paths.PARAMS / "fer2013_cpu.yaml")
    own = {"run_name", "notebooks", "variants", "seeds", "flow_sizes", "train_missing"}
    assert {k: v for k, v in ablation_values.items() if k not in own} == \
        {k: v for k, v in demo_real.items() if k not in own}
    assert ablation_values["variants"] == ["resemotenet_lean", "cnn_se", "cnn", "cnn_res_lean", "resnet18"]
    assert len(ablation_values["seeds"]) >= 2
    cfg = load_params(paths.PARAMS / "ablation_fer2013_cpu.yaml")
    run = ablation._run_config(cfg, Path("/tmp/ablation/runs"), "resnet18", 1)
    changed = {k for k, v in run.to_dict().items() if v != cfg.to_dict()[k]}
    assert changed == {"model", "seed", "results_dir", "run_name"}, changed
