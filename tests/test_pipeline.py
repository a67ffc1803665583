from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from PIL import Image

from resemote_lib import paths, pipeline
from resemote_lib.params import FIELDS, NOTEBOOK_KEYS, read_yaml

PARAM_FILES = sorted(paths.PARAMS.glob("*.yaml"))


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_every_params_key_is_declared_by_a_notebook(path):
    declared = set().union(*(pipeline.declared_parameters(pipeline.notebook_path(n)) for n in pipeline.NOTEBOOKS))
    keys = set(read_yaml(path))
    assert keys <= declared, f"{path.name}: {sorted(keys - declared)} declared by no notebook"


def test_every_notebook_is_in_the_pipeline_and_declares_parameters():
    on_disk = {p.stem for p in paths.NOTEBOOKS.glob("*.ipynb")}
    assert on_disk == set(pipeline.NOTEBOOKS)
    for name in pipeline.NOTEBOOKS:
        nb = nbformat.read(pipeline.notebook_path(name), as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), f"{name}: first code cell is not tagged parameters"
        assert nb.metadata["kernelspec"]["name"] == "python3"
        for c in code:  # thin notebooks: no definitions, no outputs committed
            assert not c.outputs and c.execution_count is None, f"{name}: outputs committed"
            assert "\ndef " not in "\n" + c.source and "\nclass " not in "\n" + c.source, name


def test_train_notebook_declares_every_config_field():
    declared = set(pipeline.declared_parameters(pipeline.notebook_path("01_train")))
    assert declared == set(FIELDS) | {"base"}
    data_declared = set(pipeline.declared_parameters(pipeline.notebook_path("00_data")))
    assert set(NOTEBOOK_KEYS) <= data_declared


def test_unknown_params_key_is_an_error_before_any_kernel(tmp_path, monkeypatch):
    f = tmp_path / "bad.yaml"
    f.write_text("base: " + str(paths.PARAMS / "smoke.yaml") + "\nrun_name: bad\n")
    started = []
    monkeypatch.setattr(pipeline, "execute", lambda *a, **k: started.append(a))
    values = {"epochs": 1, "color": "blue"}
    with pytest.raises(pipeline.PipelineError, match=r"\['color'\] are declared by no notebook"):
        pipeline.check_params(values, "bad.yaml")
    assert started == []


def test_failing_notebook_names_the_executed_copy(tmp_path):
    out = tmp_path / "results"
    with pytest.raises(pipeline.NotebookFailed, match=r"(?s)02_evaluate failed.*not a finished training run.*see the executed notebook: .*02_evaluate.ipynb"):
        # no training run exists under this results dir: 02_evaluate must fail, clearly
        pipeline.execute("02_evaluate", out / "nope" / "02_evaluate.ipynb",
                         {"run_name": "nope", "results_dir": str(out)}, progress=False)
    assert (out / "nope" / "02_evaluate.ipynb").is_file()


@pytest.mark.slow
def test_smoke_pipeline_end_to_end(tmp_path):
    results = tmp_path / "results"
    assert pipeline.main([str(paths.PARAMS / "smoke.yaml"), "--results", str(results), "--no-progress"]) == 0
    run = results / "smoke"
    for name in pipeline.EXPERIMENT_NOTEBOOKS:
        nb = nbformat.read(run / "notebooks" / f"{name}.ipynb", as_version=4)
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), name
    assert (results / "paper" / "03_paper.ipynb").is_file()
    pngs = [run / "figures" / f"{n}.png" for n in ("class_distribution", "examples", "duplicates", "training_curves",
                                                   "confusion_matrix", "confused_examples", "reliability",
                                                   "explore_probs", "explore_se_gates", "explore_cam")]
    pngs += [results / "paper" / "table3.png", results / "paper" / "fig3_smoke.png"]
    for png in pngs:
        with Image.open(png) as img:
            img.verify()
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"accuracy", "balanced_accuracy", "macro_f1", "nll", "confusion", "per_class", "protocol",
            "split_sizes", "checkpoint", "provenance", "tta_flip", "calibration"} <= set(metrics)
    assert {"temperature", "ece_before", "ece_after"} <= set(metrics["calibration"])
    from resemote_lib.checkpoint import read_checkpoint
    assert read_checkpoint(run / "best.pt")["meta"]["temperature"] == metrics["calibration"]["temperature"]
    assert metrics["n"] == 70
    for csv in ("history.csv", "predictions.csv", "table1.csv", "table2.csv", "duplicates.csv"):
        pd.read_csv(run / csv)
    table = pd.read_csv(results / "paper" / "table3.csv")
    assert table["run"].tolist() == ["smoke"] and table["ours"].iloc[0] == pytest.approx(100 * metrics["accuracy"])
    assert "Table III" in (results / "paper" / "table3.md").read_text()
    assert (run / "params.yaml").is_file() and (run / "provenance.json").is_file()
    assert not any(Path(paths.ROOT / "results").glob("smoke"))  # nothing in the committed results/


def test_make_paper_skips_experiments_without_data():
    assert pipeline.data_present(paths.PARAMS / "smoke.yaml")
    assert not pipeline.data_present(paths.PARAMS / "fer2013.yaml")  # nothing under the test's data/
