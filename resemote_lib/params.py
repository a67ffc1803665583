"""Experiment configuration: typed, frozen, validated; loaded from ``params/*.yaml``.

``params/*.yaml`` hold values only. A file may name a ``base:`` file (relative to itself)
whose values it extends, so protocols and datasets are layered instead of copied.
``protocol`` selects a preset (``PROTOCOLS``) that fills every optimisation value the
file does not set itself; a file that overrides a preset value gets a warning, and the
run is labelled as deviating from its protocol (``protocol_deviations``).

The same resolution runs from every entry point: the CLI and the pipeline read the file;
a notebook's parameters cell (papermill ``-f``/``-p``, or a person in JupyterLab) passes
what it set (``None`` meaning "not set") and its ``base``, through ``from_notebook``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import types
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import paths
from .model import VARIANTS


@dataclass(frozen=True)
class TrainConfig:
    """One experiment. Defaults: the ``smoke`` preset (1 epoch of 64 synthetic faces)."""

    # --- what to run
    run_name: str = "smoke"  # results/<run_name>/ holds everything the run writes (a plain name)
    dataset: str = "synthetic"  # fer2013 | rafdb | affectnet | folder (class folders, needs data_root) | synthetic
    data_root: str | None = None  # None: /kaggle/input/<slug> if mounted, else data/<dataset>
    protocol: str = "smoke"  # paper | reference | clean | cpu_budget | demo | smoke (see PROTOCOLS)
    model: str = "resemotenet"  # resemotenet | resemotenet_lean | cnn | cnn_se | cnn_res (model.VARIANTS)
    image_size: int = 48  # side of the square input (paper: 64)
    seed: int = 0  # training: initialisation, data order, flips, dropout
    split_seed: int = 0  # hold-out splits and synthetic data; fixed so every seed tests on the same images
    # --- data options
    val_fraction: float = 0.1  # RAF-DB/AffectNet validation hold-out of train
    test_fraction: float = 0.1  # AffectNet Kaggle release only
    test_per_class: int | None = None  # AffectNet test subset per class (paper: 500)
    max_train_items: int | None = 64  # a seeded stratified subset of train; None: all
    synthetic_n_train: int = 200
    synthetic_n_val: int = 50
    synthetic_n_test: int = 70
    # --- optimisation (the protocol preset fills these unless the file sets them)
    epochs: int = 1
    batch_size: int = 32  # global batch (split over DDP processes; must divide by their number)
    optimizer: str = "adamw"  # sgd | adamw
    lr: float = 3e-4
    momentum: float = 0.9
    weight_decay: float = 1e-4
    scheduler: str = "none"  # plateau (x factor when val accuracy stalls) | onecycle (per step, peak lr) | none
    plateau_patience: int = 5  # epochs without val-accuracy gain tolerated before the LR drops
    plateau_factor: float = 0.1
    early_stopping_patience: int | None = None  # stop after MORE than this many epochs without gain
    label_smoothing: float = 0.0  # cross-entropy label smoothing (Szegedy et al., 2016); the paper: none
    class_balance: str = "none"  # none | sqrt | inverse: weight each class's loss by (1 / its training frequency)^(1/2 | 1)
    augment: str = "flip"  # flip (the paper's random horizontal flip) | affine (flip + rotation, scale, shift)
    selection: str = "best_val"  # best_val | last: which weights are tested
    amp: bool | None = None  # mixed precision; None (or auto): bf16 where native (CUDA 8.0+, AVX512_BF16/AMX CPUs), fp16 on older GPUs
    # --- device and speed
    device: str = "auto"  # auto (cuda > mps > cpu) | cpu | cuda | cuda:N | mps
    channels_last: bool | None = None  # None: on for CUDA
    compile: bool = False  # torch.compile the training model
    step_graph: str = "auto"  # auto (on for CUDA where possible) | on | off: each step as one CUDA graph (train_step.py)
    sync_bn: bool = False  # DDP: synchronise BatchNorm statistics across processes
    checkpoint_every: int | None = None  # last.pt every this many epochs (and when stopped); None: 1, on CUDA
    # as many as keep its writes under 5% of the run's time (measured after the first)
    keep_last: bool = False  # keep last.pt (weights + optimiser state, only for continuing) once the run finished
    eval_batch_size: int = 256
    tta_flip: bool = True  # also report horizontal-flip test-time augmentation
    results_dir: str | None = None  # None: results/ (or $RESEMOTE_RESULTS)
    resume_other_code: bool = False  # resume a last.pt that different library code wrote

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Presets. The paper's protocols train ResEmoteNet in its lean form: the same function at the
# protocol's input size (model.make_lean), without the 44 M weights that only ever multiply zero
# padding at 64 px, so a step reads and writes half the memory (tests/test_model.py checks that
# one SGD step on either gives the same kept weights and logits).
# The paper gives batch 16, 80 epochs, SGD, cross-entropy, random horizontal flip
# and a x0.1 LR drop on an accuracy plateau. Its initial LR is blank in the text and it
# states no momentum or weight decay: those take the reference code's values. Ours, not the
# paper's (it does not say): the plateau patience (5 epochs), testing the last epoch, and
# fp32 with TF32 where the GPU has it (the reference code runs fp32).
PROTOCOLS: dict[str, dict[str, Any]] = {
    "paper": dict(model="resemotenet_lean", max_train_items=None, batch_size=16, epochs=80, optimizer="sgd", lr=0.001, momentum=0.9,
                  weight_decay=1e-4, scheduler="plateau", plateau_patience=5, plateau_factor=0.1,
                  early_stopping_patience=None, selection="last", image_size=64, amp=False, label_smoothing=0.0,
                  augment="flip", class_balance="none", keep_last=True),
    # What the reference repository's training script does: no schedule, early stopping when
    # `patience_counter > patience` (15), best validation weights tested, fp32.
    "reference": dict(model="resemotenet_lean", max_train_items=None, batch_size=16, epochs=80, optimizer="sgd", lr=0.001, momentum=0.9,
                      weight_decay=1e-4, scheduler="none", plateau_patience=5, plateau_factor=0.1,
                      early_stopping_patience=15, selection="best_val", image_size=64, amp=False,
                      label_smoothing=0.0, augment="flip", class_balance="none", keep_last=True),
    # Ours: the paper's optimiser and schedule on deduplicated data, selection on validation
    # only, test once; mixed precision where it is native.
    "clean": dict(model="resemotenet_lean", max_train_items=None, batch_size=16, epochs=80, optimizer="sgd", lr=0.001, momentum=0.9,
                  weight_decay=1e-4, scheduler="plateau", plateau_patience=5, plateau_factor=0.1,
                  early_stopping_patience=None, selection="best_val", image_size=64, amp=None, label_smoothing=0.0,
                  augment="flip", class_balance="none", keep_last=True),
    # Ours, not a paper protocol: ResEmoteNet trained on a 2-core CPU in under an hour, on the
    # clean protocol's deduplicated data. The recipe (48 px, batch 64, AdamW with a one-cycle
    # schedule, label smoothing 0.1, the paper's flip, square-root class balance) came from measured
    # sweeps on the real FER2013 (benchmarks/sweep_cpu.py, docs/cpu_training.md);
    # 15 epochs fit the hour in bf16 on an AVX512_BF16 CPU (amp auto; an AVX2-only CPU trains the
    # same 15 epochs in fp32, about twice as long: the epoch count never depends on the machine).
    "cpu_budget": dict(model="resemotenet_lean", max_train_items=None, batch_size=64, epochs=15, optimizer="adamw",
                       lr=2e-3, momentum=0.9, weight_decay=5e-2, scheduler="onecycle", plateau_patience=5,
                       plateau_factor=0.1, early_stopping_patience=None, selection="best_val", image_size=48,
                       amp=None, label_smoothing=0.1, augment="flip", class_balance="sqrt", keep_last=True),
    # The synthetic demo: not a paper protocol. AdamW learns this task in a few thousand
    # images on a CPU, where SGD at lr 1e-3 needs far more (measured: docs/data.md, "The synthetic faces").
    "demo": dict(max_train_items=None, batch_size=32, epochs=6, optimizer="adamw", lr=3e-4, momentum=0.9,
                 weight_decay=1e-4, scheduler="none", plateau_patience=5, plateau_factor=0.1,
                 early_stopping_patience=None, selection="best_val", image_size=48, amp=None, label_smoothing=0.0,
                 augment="flip"),
    # Seconds on a CPU: the demo's optimiser on 64 images for one epoch (notebook defaults, tests).
    "smoke": dict(max_train_items=64, batch_size=32, epochs=1, optimizer="adamw", lr=3e-4, momentum=0.9,
                  weight_decay=1e-4, scheduler="none", plateau_patience=5, plateau_factor=0.1,
                  early_stopping_patience=None, selection="best_val", image_size=48, amp=None, label_smoothing=0.0,
                  augment="flip"),
}
# Protocols whose numbers may be compared with the paper's (when also on the paper's test set).
PAPER_PROTOCOLS = ("paper", "reference", "clean")
# Protocols that train and validate on the deduplicated data (runs.open_training_splits).
CLEAN_DATA_PROTOCOLS = ("clean", "cpu_budget")
CHOICES = {
    "dataset": ("fer2013", "rafdb", "affectnet", "folder", "synthetic"),
    "model": tuple(VARIANTS),
    "protocol": tuple(PROTOCOLS),
    "optimizer": ("sgd", "adamw"),
    "scheduler": ("plateau", "onecycle", "none"),
    "augment": ("flip", "affine"),
    "class_balance": ("none", "sqrt", "inverse"),
    "step_graph": ("auto", "on", "off"),
    "selection": ("best_val", "last"),
}
# Inclusive numeric ranges: (min, max); None is open. Checked before anything is created.
RANGES: dict[str, tuple[float | None, float | None]] = {
    "image_size": (8, 1024),  # three 2x2 max pools need at least 8 pixels
    "seed": (0, 2**31 - 1), "split_seed": (0, 2**31 - 1),  # seed * 100_003 + epoch stays an int64
    "val_fraction": (0, 0.9), "test_fraction": (0, 0.9),
    "test_per_class": (1, None), "max_train_items": (2, None),
    "synthetic_n_train": (2, None), "synthetic_n_val": (1, None), "synthetic_n_test": (1, None),
    "epochs": (1, None), "batch_size": (2, None),  # BatchNorm cannot train on one image
    "lr": (0, None), "momentum": (0, 0.999), "weight_decay": (0, None), "label_smoothing": (0, 0.5),
    "plateau_patience": (0, None), "plateau_factor": (0, 0.999), "early_stopping_patience": (0, None),
    "checkpoint_every": (1, None), "eval_batch_size": (1, None),
}
POSITIVE = {"lr", "plateau_factor"}  # strictly above their minimum
# Folders: ``~`` expanded and a relative path made absolute against the working folder, once,
# when the value is read; a run's config.json then names the same folder from anywhere.
PATH_KEYS = ("data_root", "results_dir")
FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Folders of results/ that are not runs.
RESERVED_NAMES = frozenset({"paper", "bench", "figures"})
# Keys a params file may hold for the notebooks that are not training config: type, default.
NOTEBOOK_KEYS: dict[str, tuple[type, Any]] = {
    "download": (bool, False),  # 00_data: fetch the dataset from Kaggle when absent
    # the pipeline: which notebooks run, in order, for this experiment (03_paper always runs last)
    "notebooks": (list, ["00_data", "01_train", "02_evaluate", "04_explore"]),
    "variants": (list, list(VARIANTS)),  # 05_ablation: the models compared
    "seeds": (list, [0, 1]),  # 05_ablation: training seeds per variant
    "flow_sizes": (list, [48, 64]),  # 05_ablation: input sizes of the gradient-flow table
    "train_missing": (bool, True),  # 05_ablation: train the runs not finished (False: tabulate the finished ones)
}


ECHO_LIMIT = 200  # characters of a bad value that an error message repeats


def _short(value: Any) -> str:
    """``repr(value)`` cut to ``ECHO_LIMIT`` characters: an error names the value, it does not echo megabytes."""
    try:
        return _cut(repr(value))
    except ValueError:  # an int too long to print (over 4300 digits)
        return f"an integer of {value.bit_length():,} bits"


def _cut(text: str) -> str:
    return text if len(text) <= ECHO_LIMIT else f"{text[:ECHO_LIMIT]}... ({len(text):,} characters)"


def _check_type(key: str, value: Any, where: str) -> Any:
    """Return ``value`` if it fits the field's type (ints and numeric strings accepted for
    floats: YAML 1.1 reads ``1e-3`` as a string), else raise."""
    hint = typing.get_type_hints(TrainConfig)[key]
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for t in options:
        if t is type(None) and value is None:
            return None
        if t is float and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                continue
        if t is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t in (str, bool) and isinstance(value, t):
            return value
    names = " or ".join("null" if t is type(None) else t.__name__ for t in options)
    raise ValueError(f"{where}: {key} must be {names}, got {_short(value)} ({type(value).__name__})")


def _check_range(key: str, value: Any, where: str) -> None:
    if key not in RANGES or value is None:
        return
    lo, hi = RANGES[key]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {key} must be a finite number, got {_short(value)}")
    if (lo is not None and (value < lo or (key in POSITIVE and value == lo))) or (hi is not None and value > hi):
        low = f"> {lo}" if key in POSITIVE else f">= {lo}"
        bound = low if hi is None else f"in [{lo}, {hi}]" if key not in POSITIVE else f"in ({lo}, {hi}]"
        raise ValueError(f"{where}: {key} must be {bound}, got {_short(value)}")


def absolute_path(value: str) -> str:
    """``value`` with ``~`` expanded, made absolute against the working folder (symlinks kept)."""
    return os.path.abspath(os.path.expanduser(value))


def check_run_name(name: str, where: str = "run_name") -> str:
    """``name`` if it is a plain folder name that is not reserved, else ValueError."""
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(f"{where}: {_short(name)} is not a plain folder name (letters, digits, '.', '_', '-'; no "
                         "path separators, no leading dot): runs live only inside the results folder")
    if name in RESERVED_NAMES:
        raise ValueError(f"{where}: {name!r} is reserved for results/{name}/; choose another run_name")
    return name


def validate(values: Mapping[str, Any], where: str = "params") -> dict[str, Any]:
    """Reject unknown keys, wrong types, out-of-range values and unknown choices; return
    the typed values. Nothing is created on disk before this has passed."""
    out = {}
    for key, value in values.items():
        if key not in FIELDS:
            raise ValueError(f"{where}: unknown config key {_short(key)}; known keys: {sorted(FIELDS)}")
        if isinstance(value, bool) and {"on", "off"} <= set(CHOICES.get(key, ())):
            value = "on" if value else "off"  # YAML 1.1 reads an unquoted on/off (yes/no) as a boolean
        if key == "amp" and value == "auto":
            value = None  # the default's name: bf16 where the processor has it natively (device.choose_precision)
        out[key] = _check_type(key, value, where)
        if key in PATH_KEYS and isinstance(out[key], str):
            out[key] = absolute_path(out[key])
        if key in CHOICES and out[key] not in CHOICES[key]:
            raise ValueError(f"{where}: {key}={_short(out[key])} is not one of {list(CHOICES[key])}")
        _check_range(key, out[key], where)
    if "run_name" in out:
        check_run_name(out["run_name"], f"{where}: run_name")
    if out.get("val_fraction", 0) + out.get("test_fraction", 0) >= 1:
        raise ValueError(f"{where}: val_fraction + test_fraction must be below 1, got "
                         f"{out['val_fraction']} + {out['test_fraction']}")
    return out


class _ParamsLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses what a params file never needs: a key given twice
    (YAML lets the last silently win) and aliases (``*name``: a few hundred bytes of nested
    aliases expand to gigabytes, the "billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise _Refused(f"line {mark.line + 1}: YAML aliases (*name) are not allowed in params files; write the "
                           "value out (a file extends another with base: FILE)")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                if key in first:
                    raise _Refused(f"line {line}: key {_short(key)} appears twice (first on line {first[key]}); "
                                   "keep one")
                first[key] = line
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                break
        return super().construct_mapping(node, deep=deep)


class _Refused(yaml.YAMLError):
    """What ``_ParamsLoader`` refuses, with its line."""


def read_yaml(path: str | os.PathLike, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A params file's values with its ``base:`` chain applied (the file's own win).

    A key given twice and YAML aliases are errors naming the line (``_ParamsLoader``).
    """
    path = Path(path)
    try:
        found = path.is_file()
    except OSError:  # a name too long for the file system
        found = False
    if not found:
        raise FileNotFoundError(f"params file not found: {_cut(str(path))}"
                                + (f" (the base of {_chain[-1]})" if _chain else ""))
    if path.resolve() in _chain:
        cycle = " -> ".join(p.name for p in (*_chain, path.resolve()))
        raise ValueError(f"{path}: base: files form a cycle ({cycle})")
    try:
        values = yaml.load(path.read_text(), Loader=_ParamsLoader) or {}  # a SafeLoader
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except _Refused as e:
        raise ValueError(f"{path}, {e}") from None
    except (yaml.YAMLError, ValueError) as e:  # ValueError: an integer of more than 4300 digits
        raise ValueError(f"{path}: not valid YAML: {_cut(' '.join(str(e).split()))}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of keys to values, got {type(values).__name__}")
    base = values.pop("base", None)
    if base is None:
        return values
    if not isinstance(base, str):
        raise ValueError(f"{path}: base must be one file name (relative to this file), got {_short(base)}")
    return {**read_yaml(path.parent / base, (*_chain, path.resolve())), **values}


def resolve(values: Mapping[str, Any], where: str = "params") -> TrainConfig:
    """Defaults <- protocol preset <- ``values``; warns where a preset value is overridden."""
    values = validate(values, where)
    protocol = values.get("protocol", TrainConfig.protocol)
    preset = PROTOCOLS[protocol]
    changed = {k: v for k, v in values.items() if k in preset and preset[k] != v}
    if changed and protocol in PAPER_PROTOCOLS:
        warnings.warn(f"{where}: overrides the {protocol!r} protocol's {changed}; the run no longer "
                      f"follows that protocol exactly", stacklevel=2)
    return TrainConfig(**{**preset, **values})


def protocol_deviations(cfg: TrainConfig) -> dict[str, Any]:
    """The values of ``cfg`` that differ from its protocol's preset (empty: followed exactly)."""
    return {k: getattr(cfg, k) for k, v in PROTOCOLS[cfg.protocol].items() if getattr(cfg, k) != v}


def split_notebook_keys(values: Mapping[str, Any], where: str = "params") -> tuple[dict[str, Any], dict[str, Any]]:
    """``(training values, notebook-only values)``; notebook-only values are type-checked."""
    train, other = {}, {}
    for key, value in values.items():
        if key in NOTEBOOK_KEYS:
            kind = NOTEBOOK_KEYS[key][0]
            if not isinstance(value, kind):
                raise ValueError(f"{where}: {key} must be {kind.__name__}, got {_short(value)}")
            if key == "variants" and not set(value) <= set(VARIANTS):
                raise ValueError(f"{where}: variants {_short(sorted(set(value) - set(VARIANTS)))} unknown; known: "
                                 f"{list(VARIANTS)}")
            low = 8 if key == "flow_sizes" else 0  # an input size needs 8 px (three 2x2 max pools)
            if key in ("seeds", "flow_sizes") and not all(isinstance(v, int) and low <= v < 2**31 for v in value):
                raise ValueError(f"{where}: {key} must be a list of integers >= {low}, got {_short(value)}")
            if key in ("seeds", "variants") and len(set(value)) != len(value):
                repeated = sorted({v for v in value if value.count(v) > 1})
                raise ValueError(f"{where}: {key} lists {repeated} more than once; each must be distinct (repeated "
                                 "runs would be counted as independent and report a spread of 0)")
            other[key] = value
        else:
            train[key] = value
    return train, other


def resolved_values(path: str | os.PathLike, **overrides: Any) -> dict[str, Any]:
    """Every value a params file gives the notebooks: the full config plus notebook keys."""
    train, other = split_notebook_keys({**read_yaml(path), **overrides}, str(path))
    defaults = {k: default for k, (_, default) in NOTEBOOK_KEYS.items()}
    return {**resolve(train, where=str(path)).to_dict(), **defaults, **other}


def load_params(path: str | os.PathLike, **overrides: Any) -> TrainConfig:
    """Load ``params/*.yaml`` (with its base chain), apply ``overrides``, validate."""
    train, _ = split_notebook_keys({**read_yaml(path), **overrides}, str(path))
    return resolve(train, where=str(path))


def base_path(base: str | os.PathLike) -> Path:
    """A ``base`` named in a notebook: absolute, relative to the working directory, or a
    file of ``params/`` (papermill ``-f params/x.yaml`` passes the file's own ``base:``
    verbatim, and it is relative to ``params/``)."""
    base = Path(base)
    for candidate in (base, paths.PARAMS / base):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"base params file not found: {base} (looked in the working directory and in "
                            f"{paths.PARAMS})")


class ParameterConflict(ValueError):
    """A notebook value that differs from the pipeline's ``config_json`` beside it: a person edited
    the injected cell of an executed notebook. Shown in a notebook as its one line, no traceback."""

    def _render_traceback_(self) -> list[str]:  # IPython's hook for an exception's own rendering
        return [f"{type(self).__name__}: {self}"]


def _check_unedited(namespace: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """Raise ``ParameterConflict`` where a config value in ``namespace`` differs from ``config``
    (config_json). Papermill injects both from the same resolved values, so they agree until a
    person edits one; an edit to None counts too (config_json keeps the file's nulls)."""
    given = {k: namespace[k] for k in FIELDS if k in namespace}
    edited = {k: v for k, v in given.items()
              if (None if v is None else validate({k: v}, "notebook parameters")[k]) != config[k]}
    if edited:
        yours = ", ".join(f"{k}={_short(v)}" for k, v in edited.items())
        piped = ", ".join(f"{k}={_short(config[k])}" for k in edited)
        raise ParameterConflict(f"{yours} {'conflicts' if len(edited) == 1 else 'conflict'} with config_json's {piped}: "
                                "delete the config_json line of the injected cell to use your values")


def from_notebook(namespace: Mapping[str, Any]) -> tuple[TrainConfig, dict[str, Any]]:
    """The config and notebook-only values (``download``) a notebook's parameters give.

    ``None`` means "not set": the value then comes from ``base`` (a params file, with its
    own base chain), else the protocol preset, else ``TrainConfig``'s default. So a
    notebook run by hand with ``papermill -f params/x.yaml`` (papermill injects the file's
    keys, ``base`` included, without following it) trains exactly what
    ``python -m resemote_lib pipeline params/x.yaml`` trains, and a JupyterLab user who
    sets ``protocol = "paper"`` gets the whole paper preset. Beside ``config_json``, a value
    that differs from it (edited in an executed notebook) is an error, never ignored.
    """
    explicit = {k: v for k, v in namespace.items() if (k in FIELDS or k in NOTEBOOK_KEYS) and v is not None}
    if namespace.get("config_json"):  # the pipeline's fully resolved config: explicit nulls included, used as is
        _, other = split_notebook_keys(explicit, "pipeline values")
        values = validate(json.loads(namespace["config_json"]), "pipeline config")
        if set(values) != set(FIELDS):
            raise ValueError(f"config_json: expected every config key, missing {sorted(set(FIELDS) - set(values))}")
        _check_unedited(namespace, values)
        defaults = {k: default for k, (_, default) in NOTEBOOK_KEYS.items()}
        return TrainConfig(**values), {**defaults, **other}
    base = namespace.get("base")
    where = f"notebook parameters (base {base})" if base else "notebook parameters"
    train, other = split_notebook_keys({**(read_yaml(base_path(base)) if base else {}), **explicit}, where)
    defaults = {k: default for k, (_, default) in NOTEBOOK_KEYS.items()}
    return resolve(train, where=where), {**defaults, **other}


__all__ = [
    "CHOICES",
    "CLEAN_DATA_PROTOCOLS",
    "NOTEBOOK_KEYS",
    "PAPER_PROTOCOLS",
    "PATH_KEYS",
    "PROTOCOLS",
    "RANGES",
    "RESERVED_NAMES",
    "ParameterConflict",
    "TrainConfig",
    "absolute_path",
    "base_path",
    "check_run_name",
    "from_notebook",
    "load_params",
    "protocol_deviations",
    "read_yaml",
    "resolve",
    "resolved_values",
    "split_notebook_keys",
    "validate",
]
