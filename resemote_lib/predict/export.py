"""Export a checkpoint to ONNX (verified with ONNX Runtime) and TorchScript.

The exported graph includes the preprocessing after decoding: it takes grayscale face
crops as float ``(N, 1, S, S)`` in 0..255, replicates them to the model's input channels (3
for all resemote trains), normalises with the checkpoint's mean/std (ImageNet's for every
known checkpoint), and returns logits and (temperature-calibrated) probabilities.

An export never destroys a file it was not asked to replace: the output may not be the
input (whatever path names it); an existing file there is replaced without
``overwrite=True`` only when it is an earlier export of ours (or empty), never a
checkpoint, someone else's ONNX model or any other file. The export is written to a
hidden temporary file beside the output (``.<name>.<pid>.<random>.tmp<suffix>``) and
renamed once complete and verified, so a failed export leaves whatever was there before;
the temporary file of an export that was killed (SIGKILL) is removed by the next export
to that output.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..checkpoint import file_kind, load_model
from ..files import remove_stale_temporaries, temporary_beside, umask
from ..inference import preprocess_of
from ..usage import WorkFailed

log = logging.getLogger(__name__)


class Deployable(nn.Module):
    """ResEmoteNet with its preprocessing (``inference.preprocess_of``: the checkpoint's own) and
    softmax inside: 0..255 gray in, probabilities out."""

    def __init__(self, model: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        self.model = model.eval()
        self.preprocess = preprocess_of(model)  # the Preset evaluation and the Predictor apply
        self.temperature = float(temperature)

    def forward(self, gray255: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.model(self.preprocess(gray255))
        return logits, (logits / self.temperature).softmax(1)


FORMATS = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript"}
# The largest difference of an export's probabilities from PyTorch's that counts as agreement
# (float32 kernels of ONNX Runtime and PyTorch differ by about 1e-6).
VERIFY_TOLERANCE = 1e-4


def check_output(checkpoint: str | os.PathLike, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Refuse an export output that would destroy something; returns ``path``.

    Raises ``ValueError`` for an unknown suffix, a folder, or the input checkpoint itself
    (however it is spelled: same file after resolving links), and ``FileExistsError`` for
    an existing file that is not an earlier export of ours (``is_our_export``) or empty,
    unless ``overwrite``.
    """
    src, dst = Path(checkpoint), Path(path)
    if dst.suffix not in FORMATS:
        raise ValueError(f"unknown export format {dst.suffix!r} for {dst}: use .onnx, or .pt/.ts for TorchScript")
    if dst.is_dir():
        raise ValueError(f"export output {dst} is a folder; give a file name such as {dst / 'model.onnx'}")
    if not dst.exists():
        return dst
    if src.exists() and os.path.samefile(src, dst):
        raise ValueError(f"export output {dst} is the input checkpoint {src}: exporting would replace the "
                         f"checkpoint; choose another name, e.g. {src.with_suffix('.onnx')}")
    if overwrite or file_kind(dst) == "empty" or is_our_export(dst):
        return dst
    if file_kind(dst) in ("checkpoint", "pickle"):
        raise FileExistsError(f"export output {dst} already exists and is a PyTorch checkpoint; refusing to replace "
                              "it with an export. Choose another name, or pass --force (overwrite=True) to replace it")
    raise FileExistsError(f"export output {dst} already exists and is not an export of ours ({_describe(dst)}); "
                          "refusing to replace it. Choose another name, or pass --force (overwrite=True) to replace it")


# What every export of ``Deployable`` holds: its input's name in the ONNX graph (the first
# node reads it, within the first bytes of the file), its class in a TorchScript archive
# (whose code is stored under the module's path, ``export.py`` or ``export/___torch_mangle_N.py``
# when a process traces twice: this module's, or resemote_lib/export's in exports made before
# the module moved into predict/).
_ONNX_MARK = b"gray255"
_TORCHSCRIPT_MARKS = ("__torch__/resemote_lib/predict/export", "__torch__/resemote_lib/export")


def is_our_export(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an ONNX or TorchScript file ``export`` wrote (from its first
    64 KiB, or a zip archive's member names), so that a new export may replace it."""
    path = Path(path)
    if file_kind(path) == "torchscript":
        with zipfile.ZipFile(path) as z:
            return any(mark in name for name in z.namelist() for mark in _TORCHSCRIPT_MARKS)
    if path.suffix != ".onnx" or file_kind(path) != "other":
        return False
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    return head[:1] == b"\x08" and _ONNX_MARK in head  # ModelProto.ir_version comes first


def _describe(path: Path) -> str:
    kind = file_kind(path)
    if kind == "torchscript":
        return "a TorchScript model of another network"
    with open(path, "rb") as f:
        head = f.read(512)
    if path.suffix == ".onnx" and head[:1] == b"\x08":
        return "an ONNX model of another network"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return f"a file starting with bytes {head[:8]!r}"


def export(checkpoint: str | os.PathLike, path: str | os.PathLike, *, verify: bool = True,
           overwrite: bool = False) -> dict:
    """Export ``checkpoint`` to ``path`` (``.onnx``, or ``.pt``/``.ts`` for TorchScript).

    Args:
        checkpoint: any checkpoint ``load_model`` reads.
        path: the output; checked by ``check_output`` before anything is loaded.
        verify: run the exported file on a batch and compare it with PyTorch.
        overwrite: replace whatever file is at ``path`` (never ``checkpoint`` itself); without
            it only an earlier export of ours is replaced.

    The probabilities are calibrated with ``model.temperature`` (``load_model``: the
    checkpoint's calibration file, else 1). Returns a report: path, input size, class
    names, temperature and, when verified, the maximum absolute difference of the exported
    model's probabilities from PyTorch's. Probabilities that are not finite are a ``ValueError``,
    and a difference over ``VERIFY_TOLERANCE`` (or NaN) a ``usage.WorkFailed``: either way
    nothing is written.
    """
    path = check_output(checkpoint, path, overwrite=overwrite)
    model = load_model(checkpoint)
    wrapped = Deployable(model, model.temperature).eval()
    size = model.image_size
    x = torch.rand(5, 1, size, size) * 255  # a batch size other than the traced one
    with torch.inference_mode():
        expected = wrapped(x)[1].numpy()
    if not np.isfinite(expected).all():
        raise ValueError(f"{checkpoint}: the model's probabilities are not finite (NaN or inf) at temperature "
                         f"{model.temperature:g}; nothing was exported")
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {"path": str(path), "input": f"float32 (N, 1, {size}, {size}), gray 0..255",
              "outputs": ["logits", "probs"], "class_names": list(model.class_names),
              "temperature": model.temperature, "checkpoint_kind": getattr(model, "checkpoint_kind", "resemote")}
    stale = remove_stale_temporaries(path, suffix=f".tmp{path.suffix}")
    if stale:
        log.warning("removed %d temporary file(s) left by an interrupted export: %s", len(stale),
                    ", ".join(p.name for p in stale))
    tmp = temporary_beside(path, suffix=f".tmp{path.suffix}")
    try:
        _write(wrapped, tmp, size)
        if verify:
            diff = float(np.abs(run_exported(tmp, x.numpy()) - expected).max())
            if not diff <= VERIFY_TOLERANCE:  # written so that NaN fails too
                raise WorkFailed(f"{path}: the exported model's probabilities differ from PyTorch's by {diff:g} (more "
                                 f"than {VERIFY_TOLERANCE:g}); nothing was exported")
            report["max_abs_diff"] = diff
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; an export gets the usual mode
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %s", report)
    return report


def _write(wrapped: Deployable, path: Path, size: int) -> None:
    example = torch.rand(2, 1, size, size) * 255
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")  # the TorchScript-based exporters warn about their deprecation
        if FORMATS[path.suffix] == "onnx":
            torch.onnx.export(wrapped, (example,), str(path), input_names=["gray255"], output_names=["logits", "probs"],
                              dynamic_axes={"gray255": {0: "batch"}, "logits": {0: "batch"}, "probs": {0: "batch"}},
                              dynamo=False)
        else:
            torch.jit.trace(wrapped, example).save(str(path))


def run_exported(path: str | os.PathLike, gray255: np.ndarray) -> np.ndarray:
    """Probabilities from an exported file (ONNX Runtime on CPU, or TorchScript)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return sess.run(["probs"], {"gray255": gray255.astype(np.float32)})[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated": still works
        module = torch.jit.load(str(path))
    with torch.inference_mode():
        return module(torch.from_numpy(gray255.astype(np.float32)))[1].numpy()


__all__ = ["FORMATS", "VERIFY_TOLERANCE", "Deployable", "check_output", "export", "is_our_export", "run_exported"]
