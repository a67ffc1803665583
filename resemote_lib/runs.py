"""Run directories: where a run lives, what it was started with, its data, and its lock.

Shared by training, evaluation, the notebooks and the CLI, so that evaluation never
imports training. A run directory is ``results/<run_name>/``; ``run_name`` is a plain
name (no path), confined to the results folder. One process at a time may write a run
directory: ``RunLock`` holds an OS lock on ``.lock`` for as long as it writes, and names
the holder to anyone else who tries.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from . import paths
from .data import SPLITS, FaceDataset, open_dataset
from .data.audit import AUDIT_SIZE, QualityReport, quality_report
from .data.base import stratified_split
from .params import CLEAN_DATA_PROTOCOLS, TrainConfig, check_run_name, resolve

log = logging.getLogger(__name__)
LOCK_FILE = ".lock"
# Environment variable through which a process holding run locks (the pipeline) lets the
# processes it starts (the notebooks' kernels) write those run directories: "dir=pid;...".
INHERITED_LOCKS = "RESEMOTE_HELD_RUN_LOCKS"
# What ``checkpoint.atomic_torch_save`` and friends write before renaming: ".<name>.<random>.tmp".
_TEMP_FILE = re.compile(r"\.(last|best|final)\.pt\.[^.]+\.tmp|.*\.(json|csv)\.tmp")


class RunBusy(RuntimeError):
    """Another live process holds the run directory's lock."""


def run_dir_for(cfg: TrainConfig) -> Path:
    """``<results>/<run_name>``, the run name checked (never a path outside the results)."""
    return Path(cfg.results_dir or paths.RESULTS) / check_run_name(cfg.run_name)


def selected_checkpoint(run_dir: str | os.PathLike, cfg: TrainConfig) -> Path:
    """The weights a run is tested with: ``best.pt`` (best validation) or ``final.pt`` (last epoch)."""
    return Path(run_dir) / ("best.pt" if cfg.selection == "best_val" else "final.pt")


def load_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The config a finished training run was started with; the error lists the runs that exist."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        found = finished_runs(Path(run_dir).parent)
        hint = (f"finished runs in {Path(run_dir).parent}: {', '.join(found)}" if found
                else f"no finished run in {Path(run_dir).parent} yet")
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a finished training run ({hint}). Train it "
                                "first (notebook 01_train, or python -m resemote_lib train PARAMS.yaml), or set "
                                "run_name to one of those")
    try:
        values = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); the run's config was damaged: restore it, or train the "
                         "run again under another run_name") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a JSON object of config keys, got {type(values).__name__}")
    return resolve(values, where=str(path))


def finished_runs(results_dir: str | os.PathLike | None = None) -> list[str]:
    """Names of the finished runs (those with ``config.json``) under the results folder,
    most recent first."""
    root = Path(results_dir) if results_dir is not None else paths.RESULTS
    found = [p.parent for p in root.glob("*/config.json")] if root.is_dir() else []
    return [p.name for p in sorted(found, key=lambda p: (p / "config.json").stat().st_mtime, reverse=True)]


def preferred_runs(results_dir: str | os.PathLike | None = None) -> list[str]:
    """The finished runs in the order a notebook offers them, the one it shows by default first:
    runs on real data before synthetic ones, full runs before ``smoke`` runs (64 images, one
    epoch), then the newest first. A notebook run on its defaults (a synthetic smoke run) thus
    never hides a real model; a run whose config.json cannot be read comes last."""
    root = Path(results_dir) if results_dir is not None else paths.RESULTS

    def rank(name: str) -> tuple[bool, bool, bool]:  # (real data, full run, readable)
        try:
            cfg = json.loads((root / name / "config.json").read_text())
        except (OSError, ValueError):
            cfg = None
        if not isinstance(cfg, dict):
            return False, False, False
        return cfg.get("dataset", "synthetic") != "synthetic", cfg.get("protocol") != "smoke", True

    return sorted(finished_runs(root), key=rank, reverse=True)  # stable: newest first within a rank


@dataclass
class RunChoice:
    """The run a notebook shows, its config, and a sentence (bold first line) saying which and why."""

    run_dir: Path
    cfg: TrainConfig
    sentence: str


def pick_run(results_dir: str | os.PathLike, run_name: str | None = None, *, verb: str = "Exploring") -> RunChoice:
    """``run_name``, or else the first of ``preferred_runs`` (no path typed). The sentence's
    first line, bold, names the run shown and every other finished run."""
    results_dir = Path(results_dir)
    found = preferred_runs(results_dir)
    name = run_name or (found[0] if found else None)
    if name is None:
        raise FileNotFoundError(f"no finished run in {results_dir} yet: train one (notebook 01_train, or python -m "
                                "resemote_lib train PARAMS.yaml), then run this notebook again")
    run_dir = results_dir / name
    cfg = load_run_config(run_dir)
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime((run_dir / "config.json").stat().st_mtime))
    others = [r for r in found if r != name]
    listed = ", ".join(f"`{r}`" for r in others[:8]) + (f" and {len(others) - 8} more" if len(others) > 8 else "")
    first = (f"**{verb} run `{name}` ({cfg.dataset}, {cfg.protocol} protocol, finished {when}); "
             + (f"other finished runs: {listed}; set `run_name` to show one.**" if others
                else "the only finished run.**"))
    if run_name:
        why = "as set by `run_name`"
    elif others:
        why = (f"the best of the {len(found)} finished runs in `{results_dir}` (real data before synthetic, full runs "
               "before smoke runs, then the newest)")
    else:
        why = f"the only finished run in `{results_dir}`"
    detail = f"`{cfg.model}` trained on {cfg.dataset} under the {cfg.protocol} protocol at {cfg.image_size} px; {why}."
    return RunChoice(run_dir, cfg, f"{first}\n\n{detail}")


# --- data ------------------------------------------------------------------------------

def open_split(cfg: TrainConfig, split: str, *, image_size: int | None = None,
               crop_faces: bool = False) -> FaceDataset:
    """One split of ``cfg``'s dataset with all of its data options.

    Hold-out splits (val of RAF-DB/AffectNet, test of AffectNet's Kaggle release) are drawn
    with ``cfg.split_seed``, never the training seed: changing the seed of a run does not
    change what it is tested on. ``crop_faces``: the ``folder`` dataset's face crop.
    """
    return open_dataset(cfg.dataset, cfg.data_root, split, image_size=image_size or cfg.image_size,
                        val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=cfg.split_seed,
                        test_per_class=cfg.test_per_class, crop_faces=crop_faces,
                        synthetic_sizes={"n_train": cfg.synthetic_n_train, "n_val": cfg.synthetic_n_val,
                                         "n_test": cfg.synthetic_n_test, "seed": cfg.split_seed})


def open_training_splits(cfg: TrainConfig) -> dict[str, FaceDataset]:
    """The train and val splits of ``cfg`` (never test), with the optional train subset.

    Under the ``clean`` and ``cpu_budget`` protocols, what the data-quality audit finds is removed first (see
    ``audit.QualityReport.clean_exclusions``): from train, the copies of val and test
    images, every member of a group of copies with conflicting labels, and blank images;
    from val, the copies of train images. The counts per reason are in each split's
    ``report["clean"]`` (and so in provenance.json).
    """
    out = {split: open_split(cfg, split) for split in ("train", "val")}
    if cfg.protocol in CLEAN_DATA_PROTOCOLS:
        removed = audit_report(cfg).clean_exclusions()
        out = {split: _without(ds, removed[removed["split"] == split]) for split, ds in out.items()}
    if cfg.max_train_items is not None and cfg.max_train_items < len(out["train"]):
        out["train"] = subset(out["train"], cfg.max_train_items, cfg.seed)
    return out


def audit_report(cfg: TrainConfig) -> QualityReport:
    """The data-quality audit of ``cfg``'s dataset: all three splits decoded at
    ``AUDIT_SIZE`` whatever the model's size, computed once and then read from the cache."""
    return quality_report({split: open_split(cfg, split, image_size=AUDIT_SIZE) for split in SPLITS})


def _without(ds: FaceDataset, removed) -> FaceDataset:
    drop = set(removed["id"])
    keep = [i for i, item in enumerate(ds.ids) if item not in drop]
    counts = removed["reason"].value_counts().to_dict()
    return select(ds, keep, {"clean": {"removed": len(ds) - len(keep), "of": len(ds),
                                       "by_reason": {k: int(v) for k, v in sorted(counts.items())}}})


def subset(ds: FaceDataset, n: int, seed: int) -> FaceDataset:
    """A seeded, stratified subset of ``n`` items (for smoke runs and learning curves)."""
    keep, _ = stratified_split(ds.targets, (n / len(ds),), seed)
    return select(ds, keep, {"subset": {"n": len(keep), "of": len(ds), "seed": seed}})


def select(ds: FaceDataset, keep, report: dict | None = None) -> FaceDataset:
    """The items of ``ds`` at positions ``keep`` (in that order), with ``report`` added."""
    idx = torch.as_tensor(keep, dtype=torch.int64)
    return FaceDataset(ds.images[idx], ds.labels[idx], [ds.ids[i] for i in idx.tolist()], name=ds.name,
                       split=ds.split, layout=ds.layout, root=ds.root, transform=ds.transform,
                       report={**ds.report, **(report or {})}, class_names=ds.class_names)


# --- the lock --------------------------------------------------------------------------

@dataclass
class RunLock:
    """Exclusive right to write ``run_dir`` (an OS lock on ``run_dir/.lock``).

    Entering creates the folder, checks that files can be written there (a read-only
    folder fails now, not after an epoch), takes the lock or raises ``RunBusy`` naming the
    holder, and removes temporary files that a killed save left behind (only the lock
    holder can have been writing them). The OS releases the lock when the process dies,
    however it dies. A process started by the lock holder inherits the lock through
    ``RESEMOTE_HELD_RUN_LOCKS`` (the pipeline runs notebooks that write the run).

    Leaving deletes ``.lock`` (while still holding it; a process that opened the file just
    before sees, once it has the lock, that it is no longer the one at that path, and tries
    again), and the folders entering created when they are still empty: a command refused
    inside the block (a bad device, data that is missing) leaves nothing behind, a finished
    one no lock file.
    """

    run_dir: Path
    what: str = "training"
    removed: list[Path] | None = None
    _fd: int | None = None
    _created: list[Path] | None = None  # the folders entering made, deepest first

    def __enter__(self) -> RunLock:
        self.run_dir = Path(self.run_dir)
        missing = [p for p in (self.run_dir, *self.run_dir.parents) if not p.exists()]
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(e.errno, f"cannot create the run directory {self.run_dir}: {e.strerror}") from None
        self._created = missing
        if not self._inherited():
            self._acquire()
        try:
            _check_writable(self.run_dir)
            self.removed = remove_stale_temp_files(self.run_dir)
        except BaseException:
            self.__exit__()  # never keep the lock of a folder we then refuse (a notebook kernel lives on)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            import fcntl

            with contextlib.suppress(OSError):
                (self.run_dir / LOCK_FILE).unlink()  # still locked: no one else can be using it
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        for folder in self._created or ():
            try:
                folder.rmdir()  # only when empty: a refused command leaves no folder it made
            except OSError:
                break
        self._created = None

    @contextlib.contextmanager
    def shared_with_children(self) -> Iterator[None]:
        """Let processes started inside this block (notebook kernels) write the run directory."""
        before = os.environ.get(INHERITED_LOCKS)
        entry = f"{self.run_dir.resolve()}={os.getpid()}"
        os.environ[INHERITED_LOCKS] = os.pathsep.join(e for e in (before, entry) if e)
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(INHERITED_LOCKS, None)
            else:
                os.environ[INHERITED_LOCKS] = before

    def _inherited(self) -> bool:
        for entry in os.environ.get(INHERITED_LOCKS, "").split(os.pathsep):
            folder, _, pid = entry.rpartition("=")
            if folder == str(self.run_dir.resolve()) and pid.isdigit() and _holder(self.run_dir).get("pid") == int(pid):
                return _alive(int(pid))
        return False

    def _acquire(self) -> None:
        import fcntl

        path = self.run_dir / LOCK_FILE
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise OSError(e.errno, f"cannot write {path}: {e.strerror}; is {self.run_dir} read-only? Choose a "
                              "writable results folder (RESEMOTE_RESULTS) or another run_name") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = _holder(self.run_dir)
                raise RunBusy(f"{self.run_dir} is in use by pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
                              f"({holder.get('what', '?')} since {holder.get('since', '?')}: "
                              f"{holder.get('command', '?')}); wait for it to finish, stop it, or use another "
                              "run_name") from None
            if _same_file(fd, path):
                break
            os.close(fd)  # the holder deleted it on leaving, after we opened it: lock the file now there
        info = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
                "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)[:300]}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        self._fd = fd


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (not one deleted since it was opened)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (opened.st_dev, opened.st_ino)


def _holder(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / LOCK_FILE).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_writable(folder: Path) -> None:
    probe = folder / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OSError(e.errno, f"cannot write files in {folder} ({e.strerror}); make it writable, set "
                      "RESEMOTE_RESULTS to a writable folder, or use another run_name") from None


def remove_stale_temp_files(run_dir: Path) -> list[Path]:
    """Delete the temporary files an interrupted atomic save left in ``run_dir``."""
    stale = [p for p in run_dir.iterdir() if p.is_file() and _TEMP_FILE.fullmatch(p.name)]
    if stale:
        size = sum(p.stat().st_size for p in stale)
        log.warning("%s: removing %d temporary file(s) (%.0f MiB) left by an interrupted save: %s", run_dir,
                    len(stale), size / 2**20, ", ".join(p.name for p in stale))
        for p in stale:
            p.unlink(missing_ok=True)
    return stale


__all__ = [
    "RunBusy",
    "RunChoice",
    "RunLock",
    "audit_report",
    "finished_runs",
    "load_run_config",
    "open_split",
    "open_training_splits",
    "pick_run",
    "preferred_runs",
    "remove_stale_temp_files",
    "run_dir_for",
    "select",
    "selected_checkpoint",
    "subset",
]
