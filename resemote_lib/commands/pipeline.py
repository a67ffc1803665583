"""Run the notebooks in order with papermill: ``python -m resemote_lib pipeline params/x.yaml``.

For each params file: validate every key against the parameters the notebooks declare
(papermill itself only warns on unknown ones) and its device against this machine before
any kernel starts, then execute
00_data, 01_train, 02_evaluate and 04_explore into ``results/<run_name>/notebooks/``
with the resolved values, holding the run directory's lock (shared with the kernels);
finally 03_paper regenerates ``results/paper/``. A failing notebook stops the pipeline
with the path of the executed copy showing the failing cell; a cell that runs longer than
its notebook's timeout (``CELL_TIMEOUTS``) is stopped and named.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

import yaml

from .. import paths
from ..params import FIELDS, absolute_path, resolved_values
from ..progress import TEXT_PROGRESS
from ..runs import RunLock

log = logging.getLogger(__name__)
EXPERIMENT_NOTEBOOKS = ("00_data", "01_train", "02_evaluate", "04_explore")  # the default `notebooks`
FINAL_NOTEBOOK = "03_paper"
NOTEBOOKS = (*EXPERIMENT_NOTEBOOKS, "05_ablation", FINAL_NOTEBOOK)
KERNEL = "python3"
# Seconds one cell may run before the pipeline stops it (None: no limit). Training runs for
# hours by design; anything else that takes an hour is hung (a kernel waiting forever).
DEFAULT_CELL_TIMEOUT = 3600
CELL_TIMEOUTS: dict[str, int | None] = {"01_train": None, "05_ablation": None}


class PipelineError(ValueError):
    """A params file that does not fit the notebooks."""


class NotebookFailed(RuntimeError):
    """A notebook raised, or one of its cells ran past its timeout."""


def declared_parameters(notebook: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The parameters a notebook's ``parameters`` cell declares (name -> papermill info)."""
    import papermill as pm

    return pm.inspect_notebook(str(notebook))


def notebook_path(name: str) -> Path:
    return paths.NOTEBOOKS / f"{name}.ipynb"


def check_params(values: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """Every key must be declared by some notebook's parameters cell, or be a config key (those
    reach every notebook whole, through ``config_json``); returns each notebook's values."""
    declared = {name: declared_parameters(notebook_path(name)) for name in NOTEBOOKS}
    known = set().union(*declared.values()) | set(FIELDS)
    unknown = sorted(set(values) - known - {"notebooks"})
    if unknown:
        raise PipelineError(f"{where}: key(s) {unknown} are declared by no notebook's parameters cell "
                            f"({', '.join(NOTEBOOKS)}); papermill would ignore them")
    bad = [n for n in values.get("notebooks", EXPERIMENT_NOTEBOOKS) if n not in NOTEBOOKS or n == FINAL_NOTEBOOK]
    if bad:
        raise PipelineError(f"{where}: notebooks {bad} are not experiment notebooks; choose from "
                            f"{[n for n in NOTEBOOKS if n != FINAL_NOTEBOOK]} (03_paper always runs last)")
    return {name: {k: v for k, v in values.items() if k in params} for name, params in declared.items()}


def execute(name: str, output: Path, parameters: dict[str, Any], *, progress: bool = True,
            timeout: int | str | None = "default") -> Path:
    """Execute one notebook with papermill into ``output``; raise with its path on failure.

    Args:
        timeout: seconds any one cell may run; ``"default"``: ``CELL_TIMEOUTS`` for this
            notebook, else ``DEFAULT_CELL_TIMEOUT``; None: no limit.
    """
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError

    if timeout == "default":
        timeout = CELL_TIMEOUTS.get(name, DEFAULT_CELL_TIMEOUT)
    output.parent.mkdir(parents=True, exist_ok=True)
    log.info("running %s -> %s", name, output)
    if progress:  # the kernel's own bars (epochs, validation) as text lines in this terminal
        os.environ[TEXT_PROGRESS] = "1"
    try:
        pm.execute_notebook(str(notebook_path(name)), str(output), parameters=parameters, kernel_name=KERNEL,
                            progress_bar=progress, log_output=True, cwd=str(paths.ROOT),
                            execution_timeout=timeout)
    except pm.PapermillExecutionError as e:
        raise NotebookFailed(f"{name} failed in cell {e.exec_count}: {e.ename}: {e.evalue} "
                             f"(see the executed notebook: {output})") from None
    except CellTimeoutError:
        cell = _running_cell(output)
        raise NotebookFailed(f"{name}: cell {cell} ran longer than its {timeout} s timeout and was stopped "
                             f"(see the executed notebook: {output})") from None
    finally:
        os.environ.pop(TEXT_PROGRESS, None)
    return output


def _running_cell(executed: Path) -> str:
    """``"<n> (<first line>)"`` of the cell that was running when execution stopped: the last
    cell papermill started (it marks a timed-out cell "completed" on its way out, so its
    status cannot tell)."""
    try:
        cells = json.loads(executed.read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return "?"
    started = [i for i, cell in enumerate(cells) if cell.get("metadata", {}).get("papermill", {}).get("start_time")]
    if not started:
        return "?"
    source = "".join(cells[started[-1]].get("source", "")).strip().splitlines()
    return f"{started[-1] + 1} ({source[0][:80] if source else 'empty'})"


def check_device(name: str, where: str) -> None:
    """The device a params file names must exist here before any notebook starts: 00_data would
    otherwise run (and a dataset download) before 01_train finds ``device: banana`` or an absent GPU."""
    from ..device import DeviceError, resolve_device

    try:
        resolve_device(name)
    except DeviceError as e:
        raise DeviceError(f"{where}: {e}") from None


def notebook_parameters(params_file: str | os.PathLike, **overrides: Any) -> tuple[dict[str, Any],
                                                                                  dict[str, dict[str, Any]]]:
    """The resolved values of ``params_file`` and what papermill injects into each notebook: the
    keys it declares, each value on its own line, and the whole config as ``config_json``.

    The notebooks read the config from config_json: a value the file sets to null stays null
    there (a notebook's own None means "not set"). The single values are the same ones, so an
    executed notebook shows them, and one a person edits then differs from config_json
    (``params.from_notebook`` refuses that in one line instead of ignoring the edit).
    """
    values = resolved_values(params_file, **overrides)
    config_json = json.dumps({k: v for k, v in values.items() if k in FIELDS})
    return values, check_params({**values, "config_json": config_json}, str(params_file))


def run_experiment(params_file: str | os.PathLike, *, results_dir: str | os.PathLike | None = None,
                   progress: bool = True, **overrides: Any) -> Path:
    """Notebooks 00, 01, 02, 04 for one params file; returns the run directory. ``results_dir``
    (else the params' own, else results/) holds the run."""
    params_file = Path(params_file)
    if results_dir is not None:
        overrides["results_dir"] = str(results_dir)
    values, per_notebook = notebook_parameters(params_file, **overrides)
    run_dir = Path(values["results_dir"] or paths.RESULTS) / values["run_name"]
    with RunLock(run_dir, what="pipeline") as lock, lock.shared_with_children():
        (run_dir / "params.yaml").write_text(
            f"# resolved from {params_file}\n" + yaml.safe_dump(values, sort_keys=False))
        for name in values["notebooks"]:
            execute(name, run_dir / "notebooks" / f"{name}.ipynb", per_notebook[name], progress=progress)
    return run_dir


def regenerate_paper(results_dir: str | os.PathLike | None = None, *, progress: bool = True) -> Path:
    root = Path(results_dir).resolve() if results_dir is not None else paths.RESULTS
    return execute(FINAL_NOTEBOOK, root / "paper" / f"{FINAL_NOTEBOOK}.ipynb", {"results_dir": str(root)},
                   progress=progress)


def data_present(params_file: str | os.PathLike, **overrides: Any) -> bool:
    """Whether the dataset of ``params_file`` is already on disk (for ``make paper``)."""
    from ..data import default_root, detect_layout

    values = resolved_values(params_file, **overrides)
    if values["dataset"] == "synthetic":
        return True
    try:
        detect_layout(values["dataset"], values["data_root"] or default_root(values["dataset"]))
    except FileNotFoundError:
        return False
    return True


def require_data(params_file: str | os.PathLike, **overrides: Any) -> None:
    """Stop before any notebook starts, in one line saying where to put the data, when the
    dataset of ``params_file`` is not on disk and cannot be downloaded (no Kaggle credentials,
    or ``download: false``)."""
    from ..data import KAGGLE_SLUGS, default_root
    from ..kaggle import credential_sources
    from ..kaggle.credentials import WHERE_CREDENTIALS_GO

    values = resolved_values(params_file, **overrides)
    name = values["dataset"]
    if name not in KAGGLE_SLUGS or data_present(params_file, **overrides):
        return
    if values["download"] and credential_sources():
        return  # 00_data downloads it
    where = values["data_root"] or default_root(name)
    how = (f"or, to download it, {WHERE_CREDENTIALS_GO}, and run again" if values["download"]
           else "or set download: true with Kaggle credentials")
    raise FileNotFoundError(f"{params_file}: no {name} dataset at {where} (nor $RESEMOTE_DATA or a Kaggle mount): "
                            f"put the Kaggle {KAGGLE_SLUGS[name]} archive (the zip, or its content) in {where}, {how}")


def pipeline_command(argv: list[str]) -> int:
    """The CLI's ``pipeline`` command (errors are raised; ``cli.run`` maps them to exit codes)."""
    from ..usage import UsageError, parse_overrides

    parser = argparse.ArgumentParser(prog="python -m resemote_lib pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("params", nargs="+", help="params/*.yaml, one experiment each")
    parser.add_argument("--results", help="results folder (default: results/ or $RESEMOTE_RESULTS)")
    parser.add_argument("--if-data-present", action="store_true",
                        help="skip experiments whose dataset is not on disk (make paper)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter for every experiment (YAML value), e.g. --set epochs=3")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.getLogger("resemote_lib").setLevel(logging.INFO)
    overrides = parse_overrides(args.set)
    if args.results is not None:
        if "results_dir" in overrides and absolute_path(str(overrides["results_dir"])) != absolute_path(args.results):
            raise UsageError(f"--results {args.results} and --set results_dir={overrides['results_dir']} name two "
                             "results folders; give one")
        overrides["results_dir"] = absolute_path(args.results)
    for params_file in args.params:  # every file checked before the first notebook runs
        values = resolved_values(params_file, **overrides)
        check_params(values, str(params_file))
        check_device(values["device"], str(params_file))
        if not args.if_data_present:
            require_data(params_file, **overrides)
    roots = []
    for params_file in args.params:
        if args.if_data_present and not data_present(params_file):
            log.warning("skipping %s: its dataset is not on disk (download it, or set download: true)", params_file)
            continue
        run_dir = run_experiment(params_file, progress=not args.no_progress, **overrides)
        log.info("done: %s", run_dir)
        roots.append(run_dir.parent)
    for root in dict.fromkeys(roots or [Path(overrides.get("results_dir") or paths.RESULTS)]):
        paper = regenerate_paper(root, progress=not args.no_progress)  # Table III where the runs are
        log.info("Table III and figures: %s", paper.parent)
    return 0


__all__ = ["CELL_TIMEOUTS", "EXPERIMENT_NOTEBOOKS", "NOTEBOOKS", "NotebookFailed", "PipelineError", "check_device",
           "check_params",
           "declared_parameters", "execute", "notebook_parameters", "pipeline_command", "regenerate_paper",
           "run_experiment"]
