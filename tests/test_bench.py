"""The benchmark script runs and reports every ratio (tiny settings; no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from resemote_lib import paths


@pytest.mark.slow
def test_benchmark_runs_and_reports_every_ratio(tmp_path):
    out = subprocess.run([sys.executable, str(paths.ROOT / "benchmarks" / "run.py"), "--device", "cpu",
                          "--image-size", "32", "--images", "96", "--epoch-images", "32", "--no-compile",
                          "--repeats", "2", "--steps-16", "2", "--steps-128", "1",
                          "--recipe-steps", "1", "--recipe-repeats", "1",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["loader"]["ratio"] > 0 and report["efficiency"]["ratio"] > 0
    assert set(report["fit_loop"]) == {"batch_16", "batch_128"}
    for row in report["fit_loop"].values():
        assert row["ratio"] > 0 and len(row["ratio_all"]) == 2 and row["checkpoint_s_per_epoch"] > 0
    # best is the fastest variant that ran, and the ratio its speed over eager's, from the row's own numbers
    for row in report["inference"].values():
        speeds = {k: v for k, v in row.items() if k not in ("best", "best_over_eager") and isinstance(v, float)}
        assert {"eager", "channels_last"} <= set(speeds), row
        assert row["best"] == max(speeds, key=speeds.get), row
        assert row["best_over_eager"] == pytest.approx(speeds[row["best"]] / speeds["eager"]), row
    assert report["epoch"]["ratio_ours_over_reference"] > 0
    assert 0 < report["step_profile"]["conv_backward_share"] < 1
    table = (tmp_path / "bench.md").read_text()
    assert "loader: ours / reference-style" in table and "training FLOP/s" in table and "step profile" in table
    assert "fit loop batch_16: model-only step / fit step" in table and "checkpoint write per epoch" in table
    # the CPU-budget recipe, read from params/fer2013_cpu.yaml, through fit itself in fp32 and in bf16,
    # each step profiled, each rate over the fp32 and the bf16 matmul rates
    recipe = report["recipe"]
    assert recipe["recipe"]["model"] == "resemotenet_lean" and recipe["recipe"]["image_size"] == 48
    assert recipe["matmul_fp32_gflop_s"] > 0 and recipe["matmul_bf16_gflop_s"] > 0
    for name in ("fp32", "bf16"):
        row = recipe[name]
        assert len(row["fit_img_s_all"]) == 1 and row["fit_img_s"] == row["fit_img_s_all"][0] > 0
        assert row["achieved_gflop_s"] == pytest.approx(row["fit_img_s"] * recipe["train_gflop_per_image"])
        assert row["ratio_fp32_matmul"] == pytest.approx(row["achieved_gflop_s"] / recipe["matmul_fp32_gflop_s"])
        assert row["ratio_bf16_matmul"] == pytest.approx(row["achieved_gflop_s"] / recipe["matmul_bf16_gflop_s"])
        profile = row["profile"]
        assert 0 < profile["flop_ops_share"] < 1 and profile["optimizer_fused_s"] > 0
        assert f"CPU-budget recipe (resemotenet_lean, 48 px, batch 64, adamw), {name}" in table
        assert f"CPU-budget recipe, {name}: training FLOP/s / fp32 matmul FLOP/s; / bf16 matmul FLOP/s" in table
        assert f"CPU-budget recipe step profile, {name}" in table
