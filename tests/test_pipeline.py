from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from PIL import Image

from resemote_lib import paths
from resemote_lib.commands import cli, pipeline
from resemote_lib.params import FIELDS, NOTEBOOK_KEYS, read_yaml, resolved_values

PARAM_FILES = sorted(paths.PARAMS.glob("*.yaml"))


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_every_params_key_is_declared_by_a_notebook(path):
    declared = set().union(*(pipeline.declared_parameters(pipeline.notebook_path(n)) for n in pipeline.NOTEBOOKS))
    keys = set(read_yaml(path)) - {"notebooks"}  # read by the pipeline itself
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
    assert declared == set(FIELDS) | {"base", "config_json"}
    data_declared = set(pipeline.declared_parameters(pipeline.notebook_path("00_data")))
    assert "download" in data_declared
    ablation_declared = set(pipeline.declared_parameters(pipeline.notebook_path("05_ablation")))
    assert set(FIELDS) - {"model"} | {"base", "config_json", "variants", "seeds", "flow_sizes",
                                      "train_missing"} == ablation_declared
    assert set(NOTEBOOK_KEYS) <= data_declared | ablation_declared | {"notebooks"}


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
    assert cli.main(["pipeline", str(paths.PARAMS / "smoke.yaml"), "--results", str(results), "--no-progress"]) == 0
    run = results / "smoke"
    for name in pipeline.EXPERIMENT_NOTEBOOKS:
        nb = nbformat.read(run / "notebooks" / f"{name}.ipynb", as_version=4)
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), name
    assert (results / "paper" / "03_paper.ipynb").is_file()
    pngs = [run / "figures" / f"{n}.png" for n in ("class_distribution", "examples", "quality_examples", "training_curves",
                                                   "confusion_matrix", "confused_examples", "reliability",
                                                   "explore_probs", "explore_se_gates", "explore_cam",
                                                   "explore_predictions", "explore_confused_pairs", "explore_errors",
                                                   "explore_cams")]
    pngs += [results / "paper" / "table3.png", results / "paper" / "fig3_smoke.png"]
    for png in pngs:
        with Image.open(png) as img:
            img.verify()
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"accuracy", "balanced_accuracy", "macro_f1", "nll", "confusion", "per_class", "protocol",
            "split_sizes", "checkpoint", "provenance", "tta_flip", "calibration"} <= set(metrics)
    assert {"temperature", "ece_before", "ece_after"} <= set(metrics["calibration"])
    from resemote_lib.calibration import read_temperature
    from resemote_lib.files import sha256_of

    assert read_temperature(run / "best.pt") == metrics["calibration"]["temperature"]  # beside it, not in it
    assert metrics["checkpoint_sha256"] == sha256_of(run / "best.pt")
    assert not (run / "last.pt").exists()  # the smoke preset keeps only what it needs
    assert metrics["n"] == 70
    for csv in ("history.csv", "predictions.csv", "table1.csv", "table2.csv", "duplicates.csv"):
        pd.read_csv(run / csv)
    table = pd.read_csv(results / "paper" / "table3.csv")
    assert table["run"].tolist() == ["smoke"] and table["official"].iloc[0] == pytest.approx(100 * metrics["accuracy"], abs=0.01)
    assert "Table III" in (results / "paper" / "table3.md").read_text()
    assert (run / "params.yaml").is_file() and (run / "provenance.json").is_file()
    assert not any(Path(paths.ROOT / "results").glob("smoke"))  # nothing in the committed results/


def test_make_paper_skips_experiments_without_data():
    assert pipeline.data_present(paths.PARAMS / "smoke.yaml")
    assert not pipeline.data_present(paths.PARAMS / "fer2013.yaml")  # nothing under the test's data/


def _papermill(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("papermill")
    return subprocess.run([str(exe), *args, "--cwd", str(paths.ROOT), "-k", pipeline.KERNEL, "--no-progress-bar"],
                          capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_papermill_by_hand_trains_what_the_pipeline_resolves(tmp_path):
    """`papermill notebooks/01_train.ipynb out.ipynb -f params/fer2013.yaml -p ...` (the file's
    base: chain followed, the paper preset filling the rest) trains the config the pipeline
    resolves for the same file and overrides."""
    from . import layouts as L

    overrides = {"data_root": str(L.write_fer2013_folders(tmp_path / "fer")), "epochs": 1, "max_train_items": 16,
                 "batch_size": 8, "image_size": 16, "device": "cpu", "results_dir": str(tmp_path / "results")}
    flags = [x for k, v in overrides.items() for x in ("-p", k, str(v))]
    out = _papermill(str(pipeline.notebook_path("01_train")), str(tmp_path / "out.ipynb"), "-f",
                     str(paths.PARAMS / "fer2013.yaml"), *flags)
    assert out.returncode == 0, out.stderr[-3000:]
    trained = json.loads((tmp_path / "results" / "fer2013_paper" / "config.json").read_text())
    with pytest.warns(UserWarning, match="overrides the 'paper' protocol"):
        expected = resolved_values(paths.PARAMS / "fer2013.yaml", **overrides)
    assert trained == {k: v for k, v in expected.items() if k in FIELDS}
    assert trained["optimizer"] == "sgd" and trained["lr"] == 0.001 and trained["scheduler"] == "plateau"


def test_setting_only_the_protocol_in_the_parameters_cell_gives_its_preset(tmp_path):
    """A JupyterLab user edits the parameters cell to `protocol = "paper"`: the whole preset
    follows (batch 16, 80 epochs, SGD, plateau, last epoch, 64 px), not the smoke defaults."""
    nb = nbformat.read(pipeline.notebook_path("01_train"), as_version=4)
    cells = nb.cells
    params_cell = next(c for c in cells if "parameters" in c.metadata.get("tags", []))
    params_cell.source = params_cell.source.replace('protocol: Optional[str] = None', 'protocol: Optional[str] = "paper"')
    cfg_index = next(i for i, c in enumerate(cells) if "params.from_notebook(globals())" in c.source)
    nb.cells = [*cells[:cfg_index + 1], nbformat.v4.new_code_cell(
        f"import json; open({str(tmp_path / 'cfg.json')!r}, 'w').write(json.dumps(cfg.to_dict()))")]
    path = tmp_path / "edited.ipynb"
    nbformat.write(nb, path)
    out = _papermill(str(path), str(tmp_path / "out.ipynb"))
    assert out.returncode == 0, out.stderr[-3000:]
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    from resemote_lib.params import PROTOCOLS

    assert {k: cfg[k] for k in PROTOCOLS["paper"]} == PROTOCOLS["paper"] and cfg["protocol"] == "paper"


def test_everything_a_run_writes_is_ignored_by_git():
    """make demo writes results/<run>/ and results/paper/: none of it may show as a change."""
    written = ["results/demo/best.pt", "results/demo/metrics.json", "results/paper/table3.md",
               "results/paper/table3.png", "results/bench/bench.json", "data/fer2013/train/angry/x.jpg",
               ".cache/datasets/x.pt"]
    out = subprocess.run(["git", "check-ignore", *written], cwd=paths.ROOT, capture_output=True, text=True)
    assert out.stdout.split() == written
    assert subprocess.run(["git", "check-ignore", "-q", "results/README.md"], cwd=paths.ROOT).returncode == 1


@pytest.mark.realdata
@pytest.mark.slow
def test_clean_pipeline_on_real_fer2013_writes_both_test_figures(real_fer2013, tmp_path):
    """The command of the real-data issue: the clean protocol on the real FER2013, cut to one
    epoch of 256 images at 32 px (no flip TTA), writes the official and the deduplicated test figures,
    test_excluded.csv and Table III with both columns."""
    results = tmp_path / "results"
    args = [str(paths.PARAMS / "fer2013_clean.yaml"), "--results", str(results), "--no-progress",
            "--set", f"data_root={real_fer2013}", "--set", "epochs=1", "--set", "max_train_items=256",
            "--set", "image_size=32", "--set", "tta_flip=false",
            "--set", "device=cpu", "--set", "download=false"]
    out = subprocess.run([sys.executable, "-m", "resemote_lib", "pipeline", *args], capture_output=True, text=True,
                         timeout=1500)
    assert out.returncode == 0, out.stderr[-3000:]
    run = results / "fer2013_clean"
    metrics = json.loads((run / "metrics.json").read_text())
    excluded = pd.read_csv(run / "test_excluded.csv")
    assert metrics["n"] == 3589 and metrics["dedup"]["n"] == 3589 - len(excluded) and len(excluded) > 300
    assert metrics["copies_only"]["n"] == len(excluded) and metrics["test_set"]["paper_comparable"]
    removed = json.loads((run / "provenance.json").read_text())["data"]["train"]["report"]["clean"]
    assert removed["removed"] > 1000 and {"duplicate_of_test", "label_conflict"} <= set(removed["by_reason"])
    table = pd.read_csv(results / "paper" / "table3.csv").set_index("run")
    row = table.loc["fer2013_clean"]
    assert row["published"] == 79.79 and pd.notna(row["gap"]) and pd.notna(row["dedup gap"])
    assert "epochs=1" in row["deviations"] and "max_train_items=256" in row["deviations"]
    print(f"real FER2013 clean pipeline (1 epoch, 256 images): official {row['official']}%, dedup {row['dedup']}%, "
          f"on copies {row['on copies']}%, {len(excluded)} test images excluded")


def test_notebooks_that_train_have_no_cell_time_limit():
    # Training runs for hours by design: a notebook whose code trains (fit, or the ablation's
    # many fits) must not be stopped by the pipeline's one-hour cell limit; all others keep it.
    for name in pipeline.NOTEBOOKS:
        source = "\n".join(cell.source for cell in nbformat.read(paths.NOTEBOOKS / f"{name}.ipynb", as_version=4).cells)
        trains = "fit(" in source or "run_ablation(" in source
        limit = pipeline.CELL_TIMEOUTS.get(name, pipeline.DEFAULT_CELL_TIMEOUT)
        assert (limit is None) == trains, f"{name}: trains={trains}, cell limit {limit}"


# Issue 24.14: each notebook's defaults write a run folder of their own, so that they work in any order
# after any other notebook or the pipeline. Every run name is left to its default; to keep it fast, what
# trains is the small cnn at 32 px (01_train, the pipeline) and 05_ablation one variant and seed; 00_data
# also runs on a FER2013 folder (its folder depends on the dataset).
ORDERS = {
    "notebooks first": ["05_ablation", "00_data fer2013", "01_train", "pipeline", "01_train", "03_paper"],
    "pipeline first": ["pipeline", "01_train", "05_ablation", "00_data fer2013"],
}


@pytest.mark.slow
@pytest.mark.parametrize("order", ORDERS, ids=list(ORDERS))
def test_each_notebooks_defaults_work_after_any_other(order, tmp_path):
    from resemote_lib.reports import paper

    from . import layouts as L

    results = tmp_path / "results"
    fer = L.write_fer2013_folders(tmp_path / "fer")
    small = {"model": "cnn", "image_size": 32}
    extra = {"00_data fer2013": {"dataset": "fer2013", "data_root": str(fer)}, "01_train": small,
             "05_ablation": {"variants": ["cnn"], "seeds": [0], "flow_sizes": [16], "image_size": 32}}
    pipeline_files: dict[str, bytes] = {}
    for k, step in enumerate(ORDERS[order]):
        if step == "pipeline":
            sets = [x for k, v in small.items() for x in ("--set", f"{k}={v}")]
            assert pipeline.pipeline_command([str(paths.PARAMS / "smoke.yaml"), "--results", str(results), *sets,
                                              "--no-progress"]) == 0
            pipeline_files = {f.name: f.read_bytes() for f in (results / "smoke").glob("*.*") if f.suffix in
                              (".json", ".csv")}
            continue
        name = step.split()[0]
        out = pipeline.execute(name, tmp_path / "executed" / f"{k}_{name}.ipynb",
                               {"results_dir": str(results), **extra.get(step, {})}, progress=False)
        text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", ""))
                         for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code" for o in c.outputs)
        if name == "01_train" and ORDERS[order][:k].count("01_train"):
            assert "was already finished" in text, text[-2000:]
        if pipeline_files:  # nothing a notebook's defaults run touches the pipeline's run
            now = {f.name: f.read_bytes() for f in (results / "smoke").glob("*.*") if f.suffix in (".json", ".csv")}
            assert now == pipeline_files, f"{step} changed {sorted(n for n in now if now[n] != pipeline_files.get(n))}"
            assert not (results / "smoke" / "ablation.md").exists() and not (results / "smoke" / "runs").exists()
    runs = {p.parent.name for p in results.glob("*/config.json")}
    assert {"smoke", "nb_train_synthetic_smoke"} <= runs
    assert not {p.parent.name for p in paper.ablations(results)} & runs, "an ablation in a training run's folder"
    assert pd.read_csv(results / "nb_data_fer2013" / "table1.csv")["dataset"].tolist() == ["fer2013"]
    assert pd.read_csv(results / "smoke" / "table1.csv")["dataset"].tolist() == ["synthetic"]


def test_demo_real_without_the_data_stops_in_one_line_saying_where_to_put_it(tmp_path):
    """`make demo-real` (`pipeline params/fer2013_cpu.yaml`) with no FER2013 on disk and no Kaggle
    credentials: exit 2 before any notebook runs, one line naming the folder and the archive."""
    from resemote_lib.kaggle.credentials import WHERE_CREDENTIALS_GO

    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env.update(RESEMOTE_DATA=str(tmp_path / "data"), RESEMOTE_RESULTS=str(tmp_path / "results"),
               KAGGLE_CONFIG_DIR=str(tmp_path / "no-kaggle"))
    out = subprocess.run([sys.executable, "-m", "resemote_lib", "pipeline", "params/fer2013_cpu.yaml"],
                         cwd=paths.ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: params/fer2013_cpu.yaml: no fer2013 dataset at "), lines
    assert "put the Kaggle msambare/fer2013 archive (the zip, or its content) in " in lines[0]
    assert str(tmp_path / "data" / "fer2013") in lines[0] and WHERE_CREDENTIALS_GO in lines[0]
    assert not (tmp_path / "results").exists()  # nothing written


@pytest.mark.parametrize("name", pipeline.NOTEBOOKS)
def test_every_parameter_says_what_it_is_and_its_default(name):
    """Issue 31.16: `papermill --help-notebook` showed `(default None)` and no description for lr,
    weight_decay, plateau_factor, synthetic_n_val... Every parameter has a description (the trailing
    comment papermill shows), and one whose value is None ("not set") says what it then is: the
    config's default (the smoke preset), or what None means."""
    from resemote_lib.params import TrainConfig

    declared = pipeline.declared_parameters(pipeline.notebook_path(name))
    assert not [p for p, info in declared.items() if not info["help"].strip()], "parameters without a description"
    for key, info in declared.items():
        if info["default"] != "None":
            continue
        takes_config = "config_json" in declared and key != "run_name"  # 02/04's dataset, device: their own
        default = getattr(TrainConfig, key, None) if takes_config else None
        if default is None:
            assert re.search(r"\bNone\b|\bdefault\b", info["help"]), f"{key}: what None means: {info['help']!r}"
        else:
            shown = f"{default:g}" if isinstance(default, float) else str(default)
            assert f"default {shown}" in info["help"], f"{key}: no 'default {shown}' in {info['help']!r}"


# Issue 31.13: the pipeline's notebooks hold each value in the injected cell and the whole config in
# config_json, which won: an edited value in an executed copy was silently ignored. The two agree as
# papermill wrote them; where they differ, the notebook stops in one line.
CONFLICT = ("epochs=3 conflicts with config_json's epochs=1: delete the config_json line of the injected cell to "
            "use your values")
SMALL_RUN = {"model": "cnn", "image_size": 32, "max_train_items": 32, "batch_size": 8, "device": "cpu"}


def test_a_value_edited_beside_config_json_stops_in_one_line(tmp_path):
    from resemote_lib.params import ParameterConflict, from_notebook, load_params

    _, per_notebook = pipeline.notebook_parameters(paths.PARAMS / "smoke.yaml", results_dir=str(tmp_path), **SMALL_RUN)
    injected = per_notebook["01_train"]
    cfg, _ = from_notebook(injected)  # as papermill injected them: the config, no conflict
    assert cfg == load_params(paths.PARAMS / "smoke.yaml", results_dir=str(tmp_path), **SMALL_RUN)
    assert from_notebook({**injected, "lr": 3e-4, "label_smoothing": 0})[0] == cfg  # the same values, spelt otherwise
    with pytest.raises(ParameterConflict) as e:
        from_notebook({**injected, "epochs": 3})
    assert str(e.value) == CONFLICT
    with pytest.raises(ParameterConflict, match=r"^max_train_items=None, epochs=3 conflict with config_json's "
                                                r"max_train_items=32, epochs=1: delete the config_json line"):
        from_notebook({**injected, "epochs": 3, "max_train_items": None})  # None: an edit too, never ignored
    assert e.value._render_traceback_() == [f"ParameterConflict: {CONFLICT}"]  # one line in a notebook


@pytest.mark.slow
def test_editing_a_parameter_of_an_executed_notebook_takes_effect_or_stops_in_one_line(tmp_path):
    """Through real kernels: papermill executes 01_train with the pipeline's values; rerun as it is,
    it finds its run finished; with epochs edited in the injected cell, it stops in one line (no
    traceback); with the config_json line deleted (and a new run_name), the edit trains."""
    from nbclient import NotebookClient

    results = tmp_path / "results"
    _, per_notebook = pipeline.notebook_parameters(paths.PARAMS / "smoke.yaml", results_dir=str(results),
                                                   run_name="piped", **SMALL_RUN)
    executed = pipeline.execute("01_train", tmp_path / "01_train.ipynb", per_notebook["01_train"], progress=False)

    def rerun(*edits: tuple[str, str]) -> list[dict]:
        nb = nbformat.read(executed, as_version=4)
        cell = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
        for pattern, replacement in edits:
            cell.source, n = re.subn(pattern, replacement, cell.source, flags=re.MULTILINE)
            assert n == 1, (pattern, cell.source)
        NotebookClient(nb, kernel_name=pipeline.KERNEL, allow_errors=True,
                       resources={"metadata": {"path": str(paths.ROOT)}}).execute()
        return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]

    def text(outputs: list[dict]) -> str:
        return "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", "")) for o in outputs)

    outputs = rerun()
    assert not [o for o in outputs if o.output_type == "error"] and "was already finished" in text(outputs)
    first = next(o for o in rerun((r"^epochs = 1$", "epochs = 3")) if o.output_type == "error")  # then NameErrors
    assert (first.ename, first.evalue, first.traceback) == ("ParameterConflict", CONFLICT,
                                                            [f"ParameterConflict: {CONFLICT}"])
    outputs = rerun((r"^config_json = .*\n", ""), (r"^epochs = 1$", "epochs = 2"), (r'^run_name = "piped"$',
                                                                                      'run_name = "mine"'))
    assert not [o for o in outputs if o.output_type == "error"] and "finished: 2 epoch(s) trained now" in text(outputs)
    assert json.loads((results / "mine" / "config.json").read_text())["epochs"] == 2
