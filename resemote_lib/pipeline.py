"""Run the notebooks in order with papermill: ``python -m resemote_lib.pipeline params/x.yaml``.

For each params file: validate every key against the parameters the notebooks declare
(papermill itself only warns on unknown ones) before any kernel starts, then execute
00_data, 01_train, 02_evaluate and 04_explore into ``results/<run_name>/notebooks/``
with the resolved values; finally 03_paper regenerates ``results/paper/``. A failing
notebook stops the pipeline with the path of the executed copy showing the failing cell.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from . import paths
from .params import resolved_values

log = logging.getLogger(__name__)
EXPERIMENT_NOTEBOOKS = ("00_data", "01_train", "02_evaluate", "04_explore")
FINAL_NOTEBOOK = "03_paper"
NOTEBOOKS = (*EXPERIMENT_NOTEBOOKS, FINAL_NOTEBOOK)
KERNEL = "python3"


class PipelineError(RuntimeError):
    """A params file that does not fit the notebooks, or a notebook that failed."""


def declared_parameters(notebook: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The parameters a notebook's ``parameters`` cell declares (name -> papermill info)."""
    import papermill as pm

    return pm.inspect_notebook(str(notebook))


def notebook_path(name: str) -> Path:
    return paths.NOTEBOOKS / f"{name}.ipynb"


def check_params(values: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """Every key must be declared by some notebook; returns each notebook's values."""
    declared = {name: declared_parameters(notebook_path(name)) for name in NOTEBOOKS}
    known = set().union(*declared.values())
    unknown = sorted(set(values) - known)
    if unknown:
        raise PipelineError(f"{where}: key(s) {unknown} are declared by no notebook's parameters cell "
                            f"({', '.join(NOTEBOOKS)}); papermill would ignore them")
    return {name: {k: v for k, v in values.items() if k in params} for name, params in declared.items()}


def execute(name: str, output: Path, parameters: dict[str, Any], *, progress: bool = True) -> Path:
    """Execute one notebook with papermill into ``output``; raise with its path on failure."""
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    log.info("running %s -> %s", name, output)
    try:
        pm.execute_notebook(str(notebook_path(name)), str(output), parameters=parameters, kernel_name=KERNEL,
                            progress_bar=progress, log_output=True, cwd=str(paths.ROOT))
    except pm.PapermillExecutionError as e:
        raise PipelineError(f"{name} failed in cell {e.exec_count}: {e.ename}: {e.evalue}\n"
                            f"See the executed notebook: {output}") from None
    return output


def run_experiment(params_file: str | os.PathLike, *, results_dir: str | os.PathLike | None = None,
                   progress: bool = True, **overrides: Any) -> Path:
    """Notebooks 00, 01, 02, 04 for one params file; returns the run directory."""
    params_file = Path(params_file)
    values = resolved_values(params_file, **overrides)
    if results_dir is not None:
        values["results_dir"] = str(Path(results_dir).resolve())
    per_notebook = check_params(values, str(params_file))
    run_dir = Path(values["results_dir"] or paths.RESULTS) / values["run_name"]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "params.yaml").write_text(
        f"# resolved from {params_file}\n" + yaml.safe_dump(values, sort_keys=False))
    for name in EXPERIMENT_NOTEBOOKS:
        execute(name, run_dir / "notebooks" / f"{name}.ipynb", per_notebook[name], progress=progress)
    return run_dir


def regenerate_paper(results_dir: str | os.PathLike | None = None, *, progress: bool = True) -> Path:
    root = Path(results_dir).resolve() if results_dir is not None else paths.RESULTS
    return execute(FINAL_NOTEBOOK, root / "paper" / f"{FINAL_NOTEBOOK}.ipynb", {"results_dir": str(root)},
                   progress=progress)


def data_present(params_file: str | os.PathLike) -> bool:
    """Whether the dataset of ``params_file`` is already on disk (for ``make paper``)."""
    from .data import default_root, detect_layout

    values = resolved_values(params_file)
    if values["dataset"] == "synthetic":
        return True
    try:
        detect_layout(values["dataset"], values["data_root"] or default_root(values["dataset"]))
    except FileNotFoundError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resemote_lib.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("params", nargs="+", help="params/*.yaml, one experiment each")
    parser.add_argument("--results", help="results folder (default: results/ or $RESEMOTE_RESULTS)")
    parser.add_argument("--if-data-present", action="store_true",
                        help="skip experiments whose dataset is not on disk (make paper)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter for every experiment (YAML value), e.g. --set epochs=3")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    overrides = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)}
    try:
        for params_file in args.params:
            if args.if_data_present and not data_present(params_file):
                log.warning("skipping %s: its dataset is not on disk (download it, or set download: true)",
                            params_file)
                continue
            run_dir = run_experiment(params_file, results_dir=args.results, progress=not args.no_progress,
                                     **overrides)
            log.info("done: %s", run_dir)
        paper = regenerate_paper(args.results, progress=not args.no_progress)
        log.info("Table III and figures: %s", paper.parent)
    except (PipelineError, FileNotFoundError, ValueError) as e:
        print(f"pipeline failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["EXPERIMENT_NOTEBOOKS", "NOTEBOOKS", "PipelineError", "check_params", "declared_parameters",
           "execute", "main", "regenerate_paper", "run_experiment"]
