"""Run a params file on a Kaggle GPU, then fetch and check its results.

``python -m resemote_lib kaggle push PARAMS.yaml`` (or ``python -m resemote_lib.kernel push ...``)
    [--accelerator gpu-t4|gpu-p100] [--set KEY=VALUE ...] [--allow-dirty] [--no-internet]
    [--user NAME] [--dry-run DIR] [--results DIR] [--repo DIR]

    Bundles the source of the current commit (``git archive HEAD``, less ``results/``,
    plus ``resemote_source.json`` recording the commit and the library's code hash) into a
    private Kaggle script kernel with the params' dataset attached and a GPU on, and pushes
    it, which starts it. The kernel runs ``kaggle_runner/runner.py`` (it says there what
    is installed and what is left as output). What was pushed (kernel, commit, params,
    time) goes to ``results/<run_name>/kaggle_push.json``. A tree whose tracked files
    differ from HEAD is refused unless ``--allow-dirty``; then the tracked files as they
    are on disk are bundled and recorded as dirty. ``--dry-run DIR`` writes the kernel
    folder (``kernel-metadata.json``, ``resemote_kernel.py``) into DIR and pushes nothing
    (no credentials needed).

``python -m resemote_lib kaggle pull RUN_NAME [--timeout S] [--poll S] [--results DIR]``

    Waits for the kernel pushed for RUN_NAME (a status line: queued, running, ...),
    downloads its output, checks it (``metrics.json`` and ``provenance.json`` present, the
    provenance's commit, dirty flag and code hash equal to the pushed ones), moves it into
    ``results/<run_name>/`` (the kernel's log as ``kaggle.log``, its own Table III as
    ``kaggle_paper/``) and regenerates Table III from every run in ``results/``. An
    output that fails a check is left outside ``results/`` (the path is printed), so it
    never enters Table III.

The source travels inside the kernel script, as base64 of a deterministic tar.gz (about
0.2 MB): the kernel version on Kaggle then is the exact code it ran, one push does
everything, nothing needs cloning (kernels often have no internet), and no private
dataset has to be created, versioned and waited for at each commit.

Exit codes (as ``python -m resemote_lib``): 0 success; 1 the run failed (the push was
rejected, the kernel ended in error or was cancelled, its output lacks metrics.json or
provenance.json or comes from another commit, Table III could not be regenerated);
2 bad usage, missing Kaggle credentials, uncommitted changes without ``--allow-dirty``,
nothing pushed for that run; 3 busy: the kernel, which writes that run, was still queued
or running when ``--timeout`` ran out (pull again later). Each failure is one line on
stderr (a failed kernel's line is followed by the tail of its log).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from . import paths
from .kaggle import KaggleError, credential_sources
from .kaggle_runner import runner
from .params import check_run_name
from .runs import RunBusy, RunLock

log = logging.getLogger(__name__)

CODE_FILE = "resemote_kernel.py"
METADATA_FILE = "kernel-metadata.json"  # kaggle.api.KERNEL_METADATA_FILE
PUSH_RECORD = "kaggle_push.json"
SOURCE_RECORD = runner.SOURCE_RECORD  # provenance.SOURCE_RECORD is the same object
# --accelerator -> kernel-metadata.json machine_shape (kaggle 2.x ``kernels push --accelerator``).
ACCELERATORS = {"gpu-t4": "NvidiaTeslaT4", "gpu-p100": "NvidiaTeslaP100"}
P100_WARNING = ("gpu-p100: kaggle 2.2.5 marks NvidiaTeslaP100 as retired (the session runs on a T4 instead), and "
                "Kaggle's default image ships a CUDA 12.8 torch without Pascal (sm_60) kernels "
                "(github.com/Kaggle/kaggle-cli/issues/1151); gpu-t4 is the working choice")
# Never in a bundle: outputs, data, environments (only results/ is tracked, for its reviewed tables).
EXCLUDED = ("results/", "data/", ".venv/", ".cache/")
BUNDLE_WARN_BYTES = 1 << 20
MAX_TITLE = 50  # Kaggle kernel titles: 5 to 50 characters
OK, FAILED, USAGE, BUSY = 0, 1, 2, 3  # as resemote_lib.cli.EXIT_CODES
DONE, CANCELLED = "complete", ("error", "cancelrequested", "cancelacknowledged")
LOG_TAIL = 30


class DirtyTreeError(ValueError):
    """Tracked files differ from HEAD and ``--allow-dirty`` was not given."""


# --------------------------------------------------------------------------- the Kaggle API


class KernelStatus(NamedTuple):
    state: str  # normalised: queued, running, complete, error, cancelrequested, cancelacknowledged, ...
    message: str = ""


class KernelClient(Protocol):
    """The Kaggle API as push and pull use it (a fake in tests)."""

    def username(self) -> str | None:
        """The authenticated user's name."""

    def push(self, folder: Path) -> dict[str, Any]:
        """Push the kernel folder (metadata + code), which starts a run: ``{ref, url, version}``."""

    def status(self, kernel: str) -> KernelStatus | str:
        """The kernel's latest run status."""

    def output(self, kernel: str, dest: Path) -> str:
        """Download the latest run's output files into ``dest``; return its log text."""


def normalize_state(raw: Any) -> str:
    """``KernelWorkerStatus.CANCEL_ACKNOWLEDGED`` (kaggle 2.x), ``"cancelAcknowledged"`` (1.x)
    -> ``"cancelacknowledged"``."""
    name = getattr(raw, "name", None) or str(raw)
    return name.split(".")[-1].replace("_", "").lower()


def as_status(value: KernelStatus | str) -> KernelStatus:
    if isinstance(value, KernelStatus):
        return KernelStatus(normalize_state(value.state), value.message or "")
    return KernelStatus(normalize_state(value))


class KaggleKernelClient:
    """The real client: the ``kaggle`` package, imported quietly (it authenticates and prints
    at import, and raises SystemExit without credentials), every failure one KaggleError."""

    def _call(self, what: str, fn):
        chatter = io.StringIO()
        try:
            with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
                import kaggle

                return fn(kaggle.api)
        except (Exception, SystemExit) as e:  # SystemExit: kaggle's authenticate() without credentials
            first = str(e).splitlines()[0] if str(e) else ""
            raise KaggleError(f"{what} failed ({type(e).__name__}: {first})") from None
        finally:
            if chatter.getvalue().strip():
                log.debug("kaggle said: %s", chatter.getvalue().strip())

    def username(self) -> str | None:
        return self._call("reading the Kaggle user name", lambda api: api.get_config_value("username"))

    def push(self, folder: Path) -> dict[str, Any]:
        resp = self._call(f"pushing {folder}", lambda api: api.kernels_push(str(folder)))
        if resp is None or getattr(resp, "error", None):
            raise KaggleError(f"Kaggle refused the kernel: {getattr(resp, 'error', 'no response')}")
        invalid = getattr(resp, "invalid_dataset_sources", None)
        if invalid:
            raise KaggleError(f"Kaggle does not know the dataset source(s) {invalid}: the kernel runs without them")
        return {"ref": resp.ref, "url": resp.url, "version": resp.version_number}

    def status(self, kernel: str) -> KernelStatus:
        resp = self._call(f"reading the status of {kernel}", lambda api: api.kernels_status(kernel))
        return KernelStatus(normalize_state(resp.status), getattr(resp, "failure_message", "") or "")

    def output(self, kernel: str, dest: Path) -> str:
        dest.mkdir(parents=True, exist_ok=True)
        self._call(f"downloading the output of {kernel}",
                   lambda api: api.kernels_output(kernel, str(dest), force=True, quiet=True))
        log_file = dest / f"{kernel.split('/')[-1]}.log"  # where kernels_output writes the log
        text = log_file.read_text(errors="replace") if log_file.is_file() else ""
        log_file.unlink(missing_ok=True)
        return text


def configured_username() -> str | None:
    """``KAGGLE_USERNAME``, else the ``username`` in kaggle.json (no API call)."""
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    config = Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle")) / "kaggle.json"
    try:
        return json.loads(config.read_text()).get("username") or None
    except (OSError, ValueError):
        return None


def log_lines(raw: str) -> list[str]:
    """A kernel log as text lines: Kaggle stores it as a JSON list of ``{stream_name, time, data}``."""
    try:
        entries = json.loads(raw)
    except ValueError:
        return raw.splitlines()
    if isinstance(entries, list) and all(isinstance(e, dict) for e in entries):
        return "".join(str(e.get("data", "")) for e in entries).splitlines()
    return raw.splitlines()


# --------------------------------------------------------------------------- the source bundle


@dataclass
class Bundle:
    """One commit's source as the kernel gets it."""

    archive: bytes  # deterministic tar.gz
    sha256: str
    record: dict[str, Any]  # resemote_source.json
    files: list[str]
    params: str  # the params file, relative to the repository
    values: dict[str, Any]  # its resolved values (overrides applied)
    requirements: list[str]  # pyproject.toml's dependencies


def _git(repo: Path, *args: str) -> bytes:
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        raise ValueError(f"git {' '.join(args)} could not run in {repo}: {e}") from None
    if out.returncode != 0:
        raise ValueError(f"git {' '.join(args)} failed in {repo} (is it a git checkout?): "
                         f"{out.stderr.decode(errors='replace').strip()}")
    return out.stdout


def source_files(repo: Path, *, allow_dirty: bool = False) -> tuple[dict[str, tuple[bytes, int]], dict[str, Any]]:
    """Path -> (content, mode) of the source to bundle, and its git record.

    A clean tree gives exactly ``git archive HEAD``; with ``allow_dirty``, a tree whose
    tracked files differ from HEAD gives those tracked files as they are on disk.
    Untracked files are never bundled. ``EXCLUDED`` folders are left out.
    """
    commit = _git(repo, "rev-parse", "HEAD").decode().strip()
    status = _git(repo, "status", "--porcelain", "--untracked-files=no").decode()
    modified = [line[3:] for line in status.splitlines() if line.strip()]
    if modified and not allow_dirty:
        shown = ", ".join(modified[:5]) + (f" and {len(modified) - 5} more" if len(modified) > 5 else "")
        raise DirtyTreeError(f"uncommitted changes to tracked files ({shown}): commit them, so the kernel runs a "
                             "commit, or pass --allow-dirty (recorded as dirty)")
    files: dict[str, tuple[bytes, int]] = {}
    if not modified:
        with tarfile.open(fileobj=io.BytesIO(_git(repo, "archive", "--format=tar", "HEAD"))) as tar:
            for member in tar.getmembers():
                f = tar.extractfile(member) if member.isfile() else None
                if f is not None:
                    files[member.name] = (f.read(), member.mode)
    else:
        for name in _git(repo, "ls-files", "-z").decode().split("\0"):
            p = repo / name
            if name and p.is_file() and not p.is_symlink():  # a deleted tracked file is not bundled
                files[name] = (p.read_bytes(), p.stat().st_mode)
    files = {name: (content, 0o755 if mode & 0o111 else 0o644) for name, (content, mode) in files.items()
             if not name.startswith(EXCLUDED)}
    record = {"commit": commit, "dirty": bool(modified), "modified": modified,
              "source": "git ls-files, as on disk" if modified else "git archive HEAD"}
    return files, record


def _targz(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A tar.gz with sorted entries and no times or owners: same files, same bytes."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w",
                                                                             format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            content, mode = files[name]
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), mode, 0
            tar.addfile(info, io.BytesIO(content))
    return raw.getvalue()


def _relative_params(params_file: str | os.PathLike, repo: Path) -> str:
    path = Path(params_file)
    if not path.is_absolute():  # relative to the repository, else to the working directory
        path = repo / path if (repo / path).exists() else path
    try:
        return path.resolve().relative_to(repo).as_posix()
    except ValueError:
        raise ValueError(f"{params_file}: the params file must be inside the repository {repo} (the kernel "
                         "gets the repository's files only)") from None


def build_bundle(params_file: str | os.PathLike, overrides: dict[str, Any] | None = None, *,
                 repo: str | os.PathLike | None = None, allow_dirty: bool = False) -> Bundle:
    """The source bundle for one params file, checked as the kernel will see it.

    The bundled files are unpacked into a temporary folder first: the params file is
    resolved there (its ``base:`` chain included) and validated against the notebooks, and
    the code hash is computed there exactly as ``provenance.code_hash`` will on Kaggle.
    """
    from . import params, pipeline, provenance

    repo = Path(repo or paths.ROOT).resolve()
    overrides = dict(overrides or {})
    rel = _relative_params(params_file, repo)
    files, record = source_files(repo, allow_dirty=allow_dirty)
    if rel not in files:
        raise ValueError(f"{rel} is not tracked by git, so the kernel would not have it: commit it")
    if "pyproject.toml" not in files:
        raise ValueError(f"{repo}: no pyproject.toml in the bundle")
    with tempfile.TemporaryDirectory(prefix="resemote-bundle-") as tmp:
        for name, (content, _) in files.items():
            (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / name).write_bytes(content)
        record["code_sha256"] = provenance.code_hash(Path(tmp))
        values = params.resolved_values(Path(tmp) / rel, **overrides)
        pipeline.check_params(values, rel)
    files[SOURCE_RECORD] = (json.dumps(record, indent=2).encode() + b"\n", 0o644)
    archive = _targz(files)
    return Bundle(archive=archive, sha256=hashlib.sha256(archive).hexdigest(), record=record, files=sorted(files),
                  params=rel, values=values,
                  requirements=runner.read_requirements(files["pyproject.toml"][0].decode()))


# --------------------------------------------------------------------------- the kernel


def kernel_title(run_name: str) -> str:
    return f"resemote {run_name}"[:MAX_TITLE].strip()


def kernel_slug(title: str) -> str:
    """What Kaggle makes of a title (lower case, dashes): the id must match it."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def dataset_slug(dataset: str) -> str | None:
    from .data import KAGGLE_SLUGS

    return KAGGLE_SLUGS.get(dataset)


def kernel_metadata(user: str, run_name: str, dataset: str, *, accelerator: str = "gpu-t4",
                    internet: bool = True) -> dict[str, Any]:
    """``kernel-metadata.json`` (fields as kaggle 2.x ``kernels_push`` reads them)."""
    if accelerator not in ACCELERATORS:
        raise ValueError(f"unknown accelerator {accelerator!r}; available: {sorted(ACCELERATORS)}")
    title = kernel_title(run_name)
    slug = dataset_slug(dataset)
    return {
        "id": f"{user}/{kernel_slug(title)}",
        "title": title,
        "code_file": CODE_FILE,
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": True,
        "enable_tpu": False,
        "enable_internet": internet,  # pip, for what the image lacks (runner.unmet_requirements)
        "machine_shape": ACCELERATORS[accelerator],
        "dataset_sources": [slug] if slug else [],
        "competition_sources": [],
        "kernel_sources": [],
        "model_sources": [],
    }


def kernel_config(bundle: Bundle, overrides: dict[str, Any]) -> dict[str, Any]:
    """What the runner needs besides the bundle (``CONFIG`` in the kernel script)."""
    v = bundle.values
    return {"params": bundle.params, "overrides": overrides, "run_name": v["run_name"], "dataset": v["dataset"],
            "dataset_slug": dataset_slug(v["dataset"]), "data_root": v.get("data_root"),
            "requirements": bundle.requirements,
            "source": {k: bundle.record[k] for k in ("commit", "dirty", "code_sha256")}}


def kernel_script(bundle: Bundle, config: dict[str, Any]) -> str:
    """``runner.py`` followed by the bundle, its checksum, the config and the call of ``main``."""
    encoded = base64.b64encode(bundle.archive).decode()
    lines = "\n".join(f'    "{chunk}"' for chunk in textwrap.wrap(encoded, 100))
    return (Path(runner.__file__).read_text()
            + "\n\n# ---- written by resemote_lib.kernel.kernel_script ----\n"
            + f"BUNDLE_SHA256 = {bundle.sha256!r}\n"
            + f"CONFIG = json.loads({json.dumps(config, sort_keys=True)!r})\n"
            + f"BUNDLE = (\n{lines}\n)\n\n"
            + 'if __name__ == "__main__":\n'
            + "    _rc = main(BUNDLE, BUNDLE_SHA256, CONFIG)\n"
            + "    if _rc:  # an exception, not SystemExit: a notebook kernel must mark the run as failed too\n"
            + '        raise RuntimeError(f"resemote kernel failed (exit {_rc}): see the messages above")\n')


def write_kernel(folder: Path, metadata: dict[str, Any], script: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    (folder / CODE_FILE).write_text(script)
    return folder


def _fail(message: str, code: int) -> int:
    print(message, file=sys.stderr)
    return code


def push(params_file: str, *, overrides: dict[str, Any], accelerator: str = "gpu-t4", allow_dirty: bool = False,
         internet: bool = True, user: str | None = None, dry_run: str | os.PathLike | None = None,
         results_dir: str | os.PathLike | None = None, repo: str | os.PathLike | None = None,
         client: KernelClient | None = None) -> int:
    """``kaggle push``: see the module docstring. Returns the exit code."""
    from .pipeline import PipelineError

    if accelerator == "gpu-p100":
        log.warning("%s", P100_WARNING)
    try:
        bundle = build_bundle(params_file, overrides, repo=repo, allow_dirty=allow_dirty)
    except (ValueError, FileNotFoundError, PipelineError) as e:  # DirtyTreeError is a ValueError
        return _fail(f"kaggle push: {e}", USAGE)
    values = bundle.values
    if values.get("data_root") is not None:
        log.warning("%s sets data_root=%s: on Kaggle that path must exist (null uses the attached dataset)",
                    bundle.params, values["data_root"])
    if len(bundle.archive) * 4 / 3 > BUNDLE_WARN_BYTES:
        log.warning("the source bundle is %.1f MiB encoded: large for a kernel script", len(bundle.archive) / 2**20)
    if dry_run is None and client is None:
        if not credential_sources():
            return _fail("kaggle push: no Kaggle credentials (~/.kaggle/kaggle.json, KAGGLE_USERNAME/KAGGLE_KEY or "
                         "KAGGLE_API_TOKEN; kaggle.com > Settings > API > Create New Token)", USAGE)
        client = KaggleKernelClient()
    user = user or configured_username()
    if user is None and client is not None:
        try:
            user = client.username()
        except KaggleError as e:
            return _fail(f"kaggle push: {e}", USAGE)
    user = user or "USERNAME"
    metadata = kernel_metadata(user, values["run_name"], values["dataset"], accelerator=accelerator,
                               internet=internet)
    config = kernel_config(bundle, overrides)
    script = kernel_script(bundle, config)
    if dry_run is not None:
        folder = write_kernel(Path(dry_run), metadata, script)
        print(f"kernel {metadata['id']} written to {folder} (not pushed): commit {bundle.record['commit'][:12]}"
              f"{' (dirty)' if bundle.record['dirty'] else ''}, {len(bundle.files)} files, "
              f"{len(script) / 2**10:.0f} KiB script. Push it yourself with: kaggle kernels push -p {folder}")
        return OK
    with tempfile.TemporaryDirectory(prefix="resemote-kernel-") as tmp:
        folder = write_kernel(Path(tmp), metadata, script)
        try:
            pushed = client.push(folder)
        except KaggleError as e:
            return _fail(f"kaggle push: {e}", FAILED)
    record = {
        "kernel": metadata["id"], "url": pushed.get("url"), "version": pushed.get("version"),
        "run_name": values["run_name"], "params": bundle.params, "overrides": overrides,
        "accelerator": accelerator, "machine_shape": metadata["machine_shape"],
        "enable_internet": internet, "dataset_sources": metadata["dataset_sources"],
        **{k: bundle.record[k] for k in ("commit", "dirty", "code_sha256")},
        "bundle_sha256": bundle.sha256,
        "pushed_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    run_dir = Path(results_dir or paths.RESULTS) / values["run_name"]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / PUSH_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    print(f"pushed {metadata['id']} (version {record['version']}, commit {record['commit'][:12]}"
          f"{', dirty' if record['dirty'] else ''}, {metadata['machine_shape']}): {record['url'] or ''}\n"
          f"recorded in {run_dir / PUSH_RECORD}; fetch it with: python -m resemote_lib kaggle pull {values['run_name']}")
    return OK


# --------------------------------------------------------------------------- pull


def wait(client: KernelClient, kernel: str, *, timeout: float, poll: float, progress: bool = True,
         retries: int = 5) -> KernelStatus:
    """Poll until the kernel's run ends or ``timeout`` seconds pass; a status line meanwhile."""
    from tqdm.auto import tqdm

    start, failures = time.monotonic(), 0
    with tqdm(total=None, bar_format="{desc} [{elapsed}]", desc=f"{kernel}: ...", disable=not progress,
              file=sys.stderr) as bar:
        while True:
            try:
                status = as_status(client.status(kernel))
                failures = 0
            except KaggleError:
                failures += 1
                if failures > retries:
                    raise
                status = KernelStatus("unreachable")
            bar.set_description_str(f"{kernel}: {status.state}")
            if status.state == DONE or status.state in CANCELLED:
                return status
            left = timeout - (time.monotonic() - start)
            if left <= 0:
                return status
            time.sleep(min(poll, left))


def _produced_run(staging: Path, run_name: str) -> Path:
    """The run folder inside a kernel's output (written under /kaggle/working/results/)."""
    for candidate in (staging / "results" / run_name, staging / run_name):
        if candidate.is_dir():
            return candidate
    return staging / "results" / run_name


def check_output(run: Path, record: dict[str, Any]) -> str | None:
    """Why a kernel's run folder cannot be accepted, or None."""
    for name in ("metrics.json", "provenance.json"):
        if not (run / name).is_file():
            return f"the kernel {record['kernel']} completed but its output has no results/{run.name}/{name}"
    prov = json.loads((run / "provenance.json").read_text())
    git = prov.get("git") or {}
    if git.get("commit") != record["commit"]:
        return (f"commit mismatch: the output's provenance.json records commit {git.get('commit')}, the push "
                f"recorded {record['commit']}: this output did not come from the pushed code")
    if git.get("dirty") != record["dirty"]:
        return f"dirty flag mismatch: provenance.json says {git.get('dirty')}, the push recorded {record['dirty']}"
    if record.get("code_sha256") and prov.get("code_sha256") != record["code_sha256"]:
        return (f"code hash mismatch: provenance.json records {prov.get('code_sha256')}, the pushed source had "
                f"{record['code_sha256']}")
    return None


def _move_into(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for item in sorted(src.iterdir()):
        target = dest / item.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        shutil.move(str(item), str(target))


def pull(run_name: str, *, timeout: float, poll: float, results_dir: str | os.PathLike | None = None,
         client: KernelClient | None = None, staging: str | os.PathLike | None = None,
         progress: bool = True) -> int:
    """``kaggle pull``: see the module docstring. Returns the exit code."""
    from . import pipeline

    results = Path(results_dir).resolve() if results_dir is not None else paths.RESULTS
    try:
        run_dir = results / check_run_name(run_name)
    except ValueError as e:
        return _fail(f"kaggle pull: {e}", USAGE)
    record_file = run_dir / PUSH_RECORD
    if not record_file.is_file():
        return _fail(f"kaggle pull: nothing pushed for run {run_name!r} (no {record_file}); push it first: "
                     "python -m resemote_lib kaggle push PARAMS.yaml", USAGE)
    record = json.loads(record_file.read_text())
    kernel = record["kernel"]
    if client is None:
        if not credential_sources():
            return _fail("kaggle pull: no Kaggle credentials (~/.kaggle/kaggle.json, KAGGLE_USERNAME/KAGGLE_KEY or "
                         "KAGGLE_API_TOKEN; kaggle.com > Settings > API > Create New Token)", USAGE)
        client = KaggleKernelClient()
    try:
        status = wait(client, kernel, timeout=timeout, poll=poll, progress=progress)
    except KaggleError as e:
        return _fail(f"kaggle pull: {e}", FAILED)
    if status.state != DONE and status.state not in CANCELLED:
        return _fail(f"kaggle pull: {kernel} is still {status.state} after {timeout:.0f} s: pull again later", BUSY)
    # Outside results/: an output that fails its checks must never enter Table III.
    staging = Path(staging) if staging is not None else paths.CACHE / "kaggle" / run_name
    if staging.exists():
        shutil.rmtree(staging)
    try:
        log_text = client.output(kernel, staging)
    except KaggleError as e:
        return _fail(f"kaggle pull: {e}", FAILED)
    (run_dir / "kaggle.log").write_text(log_text)
    if status.state != DONE:
        tail = "\n".join(log_lines(log_text)[-LOG_TAIL:])
        return _fail(f"kaggle pull: kernel {kernel} ended with status {status.state}"
                     f"{': ' + status.message if status.message else ''}; its output is in {staging}, its log in "
                     f"{run_dir / 'kaggle.log'}; last lines:\n{tail}", FAILED)
    produced = _produced_run(staging, run_name)
    problem = check_output(produced, record)
    if problem:
        return _fail(f"kaggle pull: {problem} (output left in {staging}, log in {run_dir / 'kaggle.log'})", FAILED)
    try:
        with RunLock(run_dir, what="kaggle pull"):  # never under a local process writing the same run
            if (run_dir / "last.pt").is_file():
                return _fail(f"kaggle pull: {run_dir} holds a local training run (last.pt); the kernel's output "
                             f"stays in {staging}: move it by hand or pull into another results folder", USAGE)
            _move_into(produced, run_dir)
            kernel_paper = produced.parent / "paper"
            if kernel_paper.is_dir():
                _move_into(kernel_paper, run_dir / "kaggle_paper")
    except RunBusy as e:
        return _fail(f"kaggle pull: {e}", BUSY)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        paper = pipeline.regenerate_paper(results, progress=False)
    except (RuntimeError, ValueError, OSError) as e:  # a params error or a failed 03_paper notebook
        return _fail(f"kaggle pull: the output is in {run_dir} but Table III was not regenerated: {e}", FAILED)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    accuracy = metrics.get("accuracy")
    print(f"{run_name}: pulled {kernel} (commit {record['commit'][:12]}) into {run_dir}"
          + (f"; test accuracy {accuracy:.2%}" if isinstance(accuracy, (int, float)) else "")
          + f"; Table III: {paper.parent}")
    return OK


# --------------------------------------------------------------------------- command line


def _overrides(pairs: list[str]) -> dict[str, Any]:
    from .usage import parse_overrides

    return parse_overrides(pairs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m resemote_lib kaggle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("push", help="push a Kaggle kernel that runs the pipeline for PARAMS.yaml on a GPU")
    p.add_argument("params", help="params/*.yaml, tracked by git")
    p.add_argument("--accelerator", choices=sorted(ACCELERATORS), default="gpu-t4",
                   help="Kaggle GPU (default gpu-t4; gpu-p100 is retired and fails with the default image's torch)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter (YAML value), e.g. --set epochs=3")
    p.add_argument("--allow-dirty", action="store_true", help="bundle uncommitted changes, recorded as dirty")
    p.add_argument("--no-internet", action="store_true",
                   help="turn the kernel's internet off (then the image must already have every requirement)")
    p.add_argument("--user", help="Kaggle user name (default: KAGGLE_USERNAME, kaggle.json, or the API)")
    p.add_argument("--dry-run", metavar="DIR", help="write the kernel folder into DIR and push nothing")
    p.add_argument("--results", help="results folder for kaggle_push.json (default: results/ or $RESEMOTE_RESULTS)")
    p.add_argument("--repo", help="the git checkout to bundle (default: this one)")
    q = sub.add_parser("pull", help="wait for a pushed run, download, check, regenerate Table III")
    q.add_argument("run_name")
    q.add_argument("--timeout", type=float, default=13 * 3600,
                   help="seconds to wait (default 13 h: a Kaggle session stops after 12 h)")
    q.add_argument("--poll", type=float, default=60.0, help="seconds between status checks (default 60)")
    q.add_argument("--results", help="results folder (default: results/ or $RESEMOTE_RESULTS)")
    q.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None, *, client: KernelClient | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("papermill").setLevel(logging.WARNING)  # check_params inspects every notebook
    if args.command == "push":
        from .usage import UsageError

        try:
            overrides = _overrides(args.set)
        except UsageError as e:
            return _fail(f"kaggle push: --set: {e}", USAGE)
        return push(args.params, overrides=overrides, accelerator=args.accelerator, allow_dirty=args.allow_dirty,
                    internet=not args.no_internet, user=args.user, dry_run=args.dry_run, results_dir=args.results,
                    repo=args.repo, client=client)
    return pull(args.run_name, timeout=args.timeout, poll=args.poll, results_dir=args.results, client=client,
                progress=not args.no_progress)


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["ACCELERATORS", "Bundle", "DirtyTreeError", "KaggleKernelClient", "KernelClient", "KernelStatus",
           "build_bundle", "check_output", "kernel_metadata", "kernel_script", "main", "pull", "push", "wait"]
