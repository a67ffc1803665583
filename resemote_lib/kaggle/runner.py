"""Run one resemote experiment inside a Kaggle kernel (standard library only).

The pushed kernel is this file followed by the constants ``resemote_lib.kaggle.push`` writes:
``BUNDLE`` (base64 of a tar.gz of one commit's source, whose ``resemote_source.json``
records the commit), ``BUNDLE_SHA256`` and ``CONFIG`` (params file, overrides, run name,
dataset slug, requirements), and a call of ``main``. On Kaggle it:

1. unpacks the bundle outside ``/kaggle/working`` (the code is not output), checks it
   against the pushed commit and makes it read-only;
2. installs only the project requirements the image lacks or has too old, and never torch
   or torchvision: pip runs with a constraint pinning the image's own torch, torchvision
   (built for Kaggle's GPUs; a PyPI torch may lack their kernels) and numpy (what the
   image's compiled packages were built against);
3. runs ``python -m resemote_lib pipeline PARAMS --set device=cuda`` with the results, the
   decoded-image cache and any download under ``/kaggle/working`` and the attached dataset
   read in place (read-only) from ``/kaggle/input``;
4. leaves as output ``results/`` only: executed notebooks, metrics, provenance, history,
   predictions, figures, the selected checkpoint (``best.pt`` or ``final.pt``) and
   ``results/paper/``. It deletes ``last.pt`` (600-900 MiB of optimizer state), the cache
   and downloaded data, and writes ``results/<run_name>/kaggle_run.json`` (times, GPU,
   versions, what was installed).

Environment, for tests and local trials: ``RESEMOTE_KAGGLE_ROOT`` (default ``/kaggle``),
``RESEMOTE_KAGGLE_SOURCE`` (where to unpack the bundle, or a folder it was already unpacked
into; default a new temporary folder), ``RESEMOTE_KAGGLE_DEVICE`` (default ``cuda``).
``python resemote_kernel.py --unpack DIR`` only unpacks.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.metadata
import io
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger("resemote_kernel")

SOURCE_RECORD = "resemote_source.json"  # as resemote_lib.provenance.SOURCE_RECORD (a test checks)
# Kaggle's own builds match its GPUs and CUDA driver: never replaced, only pinned.
NEVER_INSTALLED = ("torch", "torchvision")
# Also pinned when installed: the image's compiled packages (scipy, opencv, ...) are built
# against its numpy, and an upgrade pulled in as a dependency (1.x -> 2.x) would break them.
ALSO_PINNED = ("numpy",)
# Interactive use and the test suite; ``python -m resemote_lib pipeline`` imports neither.
NOT_NEEDED = ("jupyterlab", "nbval")
# Any OpenCV wheel provides cv2; installing the headless one beside another breaks both.
ALTERNATIVES = {"opencv-python-headless": ("opencv-python", "opencv-contrib-python",
                                           "opencv-contrib-python-headless")}
KEEP_CHECKPOINTS = ("best.pt", "final.pt")
TAIL_LINES = 40


class RunnerError(RuntimeError):
    """Something the kernel cannot go on with; the message says what and what to do."""


def canonical(name: str) -> str:
    """PEP 503 name: ``Opencv_Python.headless`` -> ``opencv-python-headless``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def unmet_requirements(requirements: list[str]) -> list[str]:
    """The requirements (PEP 508 strings) that no installed distribution satisfies.

    torch and torchvision are left out (never installed here), and so are the packages
    only interactive use and tests need (``NOT_NEEDED``).
    """
    try:
        from packaging.requirements import Requirement
    except ImportError:  # then only presence is checked
        Requirement = None
    unmet = []
    for spec in requirements:
        name = re.split(r"[\s<>=!~;\[(]", spec.strip(), maxsplit=1)[0]
        key = canonical(name)
        if key in NEVER_INSTALLED or key in NOT_NEEDED:
            continue
        specifier = None
        if Requirement is not None:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate():
                continue
            specifier = req.specifier
        for candidate in (name, *ALTERNATIVES.get(key, ())):
            version = installed_version(candidate)
            if version is not None and (specifier is None or specifier.contains(version, prereleases=True)):
                break
        else:
            unmet.append(spec)
    return unmet


def torch_pins() -> list[str]:
    """``torch==X``, ``torchvision==Y`` (and ``numpy==Z``) of the image, for pip's ``--constraint``."""
    pins = []
    for name in NEVER_INSTALLED:
        version = installed_version(name)
        if version is None:
            raise RunnerError(f"{name} is not installed. This runner uses the image's own {name} (Kaggle's "
                              "Python image has it) and never installs it.")
        pins.append(f"{name}=={version}")
    return pins + [f"{name}=={v}" for name in ALSO_PINNED if (v := installed_version(name)) is not None]


def stream(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
           tail: deque[str] | None = None) -> int:
    """Run ``cmd``, copying its output line by line to our stdout (a notebook cell's output
    on Kaggle, where a child's own stdout would not be shown); returns its exit status."""
    with subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if tail is not None:
                tail.append(line)
        return proc.wait()


def install(unmet: list[str], scratch: Path) -> None:
    """pip-install ``unmet`` on top of the image, its torch and torchvision pinned."""
    pins = torch_pins()
    if not unmet:
        log.info("every requirement is already installed (%s kept)", ", ".join(pins))
        return
    constraints = scratch / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")
    log.info("installing %s (constraint: %s)", " ".join(unmet), ", ".join(pins))
    rc = stream([sys.executable, "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
                 "--progress-bar", "off", "--constraint", str(constraints), *unmet])
    if rc != 0:
        raise RunnerError(f"pip could not install {unmet} (exit {rc}). The kernel needs internet for them: push "
                          "without --no-internet (Kaggle allows internet to phone-verified accounts).")
    importlib.invalidate_caches()
    after = torch_pins()
    if after != pins:
        raise RunnerError(f"pip replaced the image's torch/torchvision ({pins} -> {after}): not running")


def make_read_only(folder: Path) -> None:
    """Remove every write permission below ``folder`` (files first, then folders)."""
    for dirpath, _, filenames in os.walk(folder, topdown=False):
        for name in filenames:
            p = Path(dirpath) / name
            p.chmod(stat.S_IMODE(p.stat().st_mode) & ~0o222)
        d = Path(dirpath)
        d.chmod(stat.S_IMODE(d.stat().st_mode) & ~0o222)


def unpack(bundle_b64: str, sha256: str, dest: Path) -> Path:
    """Check and unpack the embedded source bundle into ``dest`` (left writable)."""
    data = base64.b64decode(bundle_b64)
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise RunnerError(f"the embedded source bundle is corrupt (sha256 {digest}, pushed {sha256})")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile() or member.name.startswith("/") or ".." in Path(member.name).parts:
                raise RunnerError(f"unexpected entry in the source bundle: {member.name!r}")
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(dest, **extra)
    return dest


def prepare_source(bundle_b64: str, sha256: str, expected: dict[str, Any], dest: Path) -> Path:
    """The unpacked, read-only source, checked against the commit that was pushed."""
    if not (dest / SOURCE_RECORD).is_file():
        unpack(bundle_b64, sha256, dest)
        make_read_only(dest)
    record = json.loads((dest / SOURCE_RECORD).read_text())
    for key in ("commit", "dirty", "code_sha256"):
        if record.get(key) != expected.get(key):
            raise RunnerError(f"{dest / SOURCE_RECORD}: {key} is {record.get(key)!r}, the push recorded "
                              f"{expected.get(key)!r}")
    log.info("source: commit %s%s, unpacked read-only at %s", record["commit"],
             " (dirty tree)" if record["dirty"] else "", dest)
    return dest


def find_mount(input_dir: Path, slug: str) -> Path | None:
    """Where Kaggle mounted dataset ``owner/name``: ``input/<name>`` or ``input/datasets/<owner>/<name>``."""
    owner, name = slug.split("/")
    for candidate in (input_dir / name, input_dir / "datasets" / owner / name):
        if candidate.is_dir():
            return candidate
    return None


def _listing(folder: Path, depth: int = 3) -> list[str]:
    if not folder.is_dir():
        return [f"{folder} (missing)"]
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        level = len(Path(dirpath).relative_to(folder).parts)
        if level >= depth:
            dirnames.clear()
        out.append(f"{dirpath}/ ({len(filenames)} files)")
        if len(out) > 30:
            break
    return out


PROBE = ("import json, resemote_lib, torch; c = torch.cuda.is_available(); "
         "print(json.dumps({'resemote_lib': resemote_lib.__file__, 'torch': torch.__version__, "
         "'cuda': torch.version.cuda, 'gpu': torch.cuda.get_device_name(0) if c else None, "
         "'capability': list(torch.cuda.get_device_capability(0)) if c else None, "
         "'arch_list': torch.cuda.get_arch_list() if c else []}))")


def probe(env: dict[str, str], source: Path) -> dict[str, Any]:
    """Versions and GPU as the pipeline will see them; checks it imports the bundle's library."""
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RunnerError(f"importing resemote_lib and torch failed:\n{out.stderr[-3000:]}")
    info = json.loads(out.stdout.strip().splitlines()[-1])
    if not Path(info["resemote_lib"]).resolve().is_relative_to(source.resolve()):
        raise RunnerError(f"resemote_lib was imported from {info['resemote_lib']}, not from the bundle at {source}")
    return info


def clean_output(working: Path, run_name: str, scratch_dirs: list[Path]) -> list[str]:
    """Delete what must not be kernel output; returns what was deleted."""
    removed = []
    run_dir = working / "results" / run_name
    if run_dir.is_dir():
        # .lock: the pipeline's run lock (resemote_lib.runs), meaningless once it has ended
        for p in sorted([*run_dir.glob("*.pt"), *run_dir.glob("*.tmp"), *run_dir.glob(".lock")]):
            if p.name not in KEEP_CHECKPOINTS:
                removed.append(f"{p.relative_to(working)} ({p.stat().st_size / 2**20:.0f} MiB)")
                p.unlink()
    for d in scratch_dirs:
        if d.exists():
            removed.append(f"{d.relative_to(working)}/")
            shutil.rmtree(d, ignore_errors=True)
    return removed


def _set(key: str, value: Any) -> list[str]:
    return ["--set", f"{key}={json.dumps(value)}"]  # JSON is YAML: the pipeline reads the same value back


def run(bundle_b64: str, bundle_sha256: str, config: dict[str, Any]) -> int:
    """Everything after argument parsing: returns the exit status."""
    started, t0 = datetime.now(timezone.utc), time.monotonic()
    kaggle_root = Path(os.environ.get("RESEMOTE_KAGGLE_ROOT", "/kaggle"))
    input_dir, working = kaggle_root / "input", kaggle_root / "working"
    device = os.environ.get("RESEMOTE_KAGGLE_DEVICE", "cuda")
    working.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="resemote-kernel-"))
    source = Path(os.environ.get("RESEMOTE_KAGGLE_SOURCE") or scratch / "src")
    cache, data_dir = working / "resemote_cache", working / "resemote_data"
    run_name = config["run_name"]
    record: dict[str, Any] = {"kernel_started_utc": started.isoformat(timespec="seconds"), "run_name": run_name,
                              "params": config["params"], "overrides": config["overrides"], "device": device,
                              "commit": config["source"]["commit"], "dirty": config["source"]["dirty"]}
    rc = 1
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    try:
        source = prepare_source(bundle_b64, bundle_sha256, config["source"], source)
        overrides = dict(config["overrides"])
        slug = config.get("dataset_slug")
        if slug:
            mount = find_mount(input_dir, slug)
            if mount is None:
                raise RunnerError(f"dataset {slug} is not attached: nothing at {input_dir / slug.split('/')[1]} or "
                                  f"{input_dir / 'datasets' / slug}. Found: " + "; ".join(_listing(input_dir)))
            log.info("dataset %s mounted at %s (read-only, used in place)", slug, mount)
            if overrides.get("data_root", config.get("data_root")) is None:
                overrides["data_root"] = str(mount)
        t_install = time.monotonic()
        unmet = unmet_requirements(config["requirements"])
        install(unmet, scratch)
        record["installed"] = unmet
        record["install_seconds"] = round(time.monotonic() - t_install, 1)
        env = dict(os.environ)
        env.update({
            "PYTHONPATH": os.pathsep.join([str(source), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "PYTHONDONTWRITEBYTECODE": "1",  # the source is read-only; no .pyc beside it
            "RESEMOTE_RESULTS": str(working / "results"),
            "RESEMOTE_CACHE": str(cache),
            "RESEMOTE_DATA": str(data_dir),
            "RESEMOTE_KAGGLE_INPUT": str(input_dir),
            "MPLBACKEND": "Agg",
        })
        info = probe(env, source)
        record.update({k: info[k] for k in ("torch", "cuda", "gpu", "capability", "arch_list")})
        log.info("torch %s (CUDA %s), GPU: %s", info["torch"], info["cuda"], info["gpu"])
        if device.startswith("cuda") and info["gpu"] is None:
            raise RunnerError("no GPU in this session: push with --accelerator gpu-t4 and check the weekly GPU quota")
        cmd = [sys.executable, "-m", "resemote_lib", "pipeline", str(source / config["params"]), "--no-progress"]
        for key, value in {**overrides, "device": device}.items():
            cmd += _set(key, value)
        log.info("running: %s", " ".join(cmd))
        t_run = time.monotonic()
        rc = stream(cmd, env=env, cwd=working, tail=tail)
        record["pipeline_seconds"] = round(time.monotonic() - t_run, 1)
        record["pipeline_exit"] = rc
        if rc == 0 and not (working / "results" / run_name / "metrics.json").is_file():
            raise RunnerError(f"the pipeline ended without results/{run_name}/metrics.json")
    except RunnerError as e:
        log.error("%s", e)
        record["error"] = str(e)
        rc = 1
    finally:
        record["removed"] = clean_output(working, run_name, [cache, data_dir])
        record["seconds"] = round(time.monotonic() - t0, 1)
        record["kernel_finished_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        record["exit"] = rc
        if rc != 0:
            record["log_tail"] = list(tail)
        out = working / "results" / run_name / "kaggle_run.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2))
    kept = sorted(str(p.relative_to(working)) for p in working.rglob("*") if p.is_file())
    log.info("exit %d after %.0f s; output (%d files): %s", rc, record["seconds"], len(kept), ", ".join(kept[:60]))
    return rc


def main(bundle_b64: str, bundle_sha256: str, config: dict[str, Any], argv: list[str] | None = None) -> int:
    """The kernel's entry point; ``--unpack DIR`` only unpacks (other arguments are ignored:
    a notebook kernel passes its own)."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s resemote_kernel: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--unpack"] and len(argv) == 2:
        unpack(bundle_b64, bundle_sha256, Path(argv[1]))
        return 0
    return run(bundle_b64, bundle_sha256, config)
