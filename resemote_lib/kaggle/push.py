"""``kaggle push``: run a params file on a Kaggle GPU, as a private script kernel.

The kernel folder is ``kernel-metadata.json`` (the params' dataset attached, a GPU on) and
``resemote_kernel.py``: the text of ``runner.py`` followed by the source bundle (base64 of
``bundle.build_bundle``'s tar.gz, about 0.2 MB), its checksum, the run's settings and the
call of ``runner.main``. The kernel version on Kaggle then is the exact code it ran, one
push does everything, nothing needs cloning (kernels often have no internet), and no
private dataset has to be created, versioned and waited for at each commit. Pushing starts
it; what was pushed (kernel, commit, params, time) goes to
``results/<run_name>/kaggle_push.json``, which ``pull`` reads.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import tempfile
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import paths
from ..usage import UsageError, WorkFailed
from . import runner
from .bundle import Bundle, build_bundle
from .credentials import KaggleError, configured_username, credential_sources, missing_credentials
from .kernels import KaggleKernelClient, KernelClient

log = logging.getLogger(__name__)

CODE_FILE = "resemote_kernel.py"
METADATA_FILE = "kernel-metadata.json"  # kaggle.api.KERNEL_METADATA_FILE
PUSH_RECORD = "kaggle_push.json"
# --accelerator -> kernel-metadata.json machine_shape (kaggle 2.x ``kernels push --accelerator``).
ACCELERATORS = {"gpu-t4": "NvidiaTeslaT4", "gpu-p100": "NvidiaTeslaP100"}
P100_WARNING = ("gpu-p100: kaggle 2.2.5 marks NvidiaTeslaP100 as retired (the session runs on a T4 instead), and "
                "Kaggle's default image ships a CUDA 12.8 torch without Pascal (sm_60) kernels "
                "(github.com/Kaggle/kaggle-cli/issues/1151); gpu-t4 is the working choice")
BUNDLE_WARN_BYTES = 1 << 20
MAX_TITLE = 50  # Kaggle kernel titles: 5 to 50 characters


def kernel_title(run_name: str) -> str:
    return f"resemote {run_name}"[:MAX_TITLE].strip()


def kernel_slug(title: str) -> str:
    """What Kaggle makes of a title (lower case, dashes): the id must match it."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def dataset_slug(dataset: str) -> str | None:
    from ..data import KAGGLE_SLUGS

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
            + "\n\n# ---- written by resemote_lib.kaggle.push.kernel_script ----\n"
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


def kernel_folder(dry_run: str | os.PathLike) -> Path:
    """``--dry-run DIR``: a folder, or a path where one can be made (checked before any work)."""
    folder = Path(dry_run).expanduser()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        what = f"--dry-run {folder}" + ("" if existing == folder else f": {existing}")
        raise UsageError(f"{what} is a file, not a folder; give a folder to write the kernel into (it is created "
                         "if missing)")
    return folder


def push(params_file: str | os.PathLike, *, overrides: dict[str, Any], accelerator: str = "gpu-t4",
         allow_dirty: bool = False, internet: bool = True, user: str | None = None,
         dry_run: str | os.PathLike | None = None, results_dir: str | os.PathLike | None = None,
         repo: str | os.PathLike | None = None, client: KernelClient | None = None) -> str:
    """Bundle the commit, write the kernel folder and push it (``dry_run``: only write it there).

    Returns the line to show the user. Raises ``UsageError`` when nothing was pushed (bad
    params or ``--dry-run``, a dirty tree, no credentials) and ``WorkFailed`` when Kaggle
    refused the push.
    """
    from ..commands.pipeline import PipelineError

    folder = kernel_folder(dry_run) if dry_run is not None else None
    if accelerator == "gpu-p100":
        log.warning("%s", P100_WARNING)
    try:
        bundle = build_bundle(params_file, overrides, repo=repo, allow_dirty=allow_dirty)
    except (ValueError, FileNotFoundError, PipelineError) as e:  # DirtyTreeError is a ValueError
        raise UsageError(str(e)) from None
    _warn_about(bundle)
    if folder is None and client is None:
        if not credential_sources():
            raise UsageError(missing_credentials("nothing can be pushed"))
        client = KaggleKernelClient()
    user = user or configured_username()
    if user is None and client is not None:
        try:
            user = client.username()
        except KaggleError as e:
            raise UsageError(str(e)) from None
    metadata = kernel_metadata(user or "USERNAME", bundle.values["run_name"], bundle.values["dataset"],
                               accelerator=accelerator, internet=internet)
    script = kernel_script(bundle, kernel_config(bundle, overrides))
    if folder is not None:
        write_kernel(folder, metadata, script)
        return (f"kernel {metadata['id']} written to {folder} (not pushed): commit {bundle.record['commit'][:12]}"
                f"{' (dirty)' if bundle.record['dirty'] else ''}, {len(bundle.files)} files, "
                f"{len(script) / 2**10:.0f} KiB script. Push it yourself with: kaggle kernels push -p {folder}")
    with tempfile.TemporaryDirectory(prefix="resemote-kernel-") as tmp:
        try:
            pushed = client.push(write_kernel(Path(tmp), metadata, script))
        except KaggleError as e:
            raise WorkFailed(str(e)) from None
    record = push_record(bundle, metadata, pushed, overrides=overrides, accelerator=accelerator, internet=internet)
    record_file = Path(results_dir or paths.RESULTS) / record["run_name"] / PUSH_RECORD
    record_file.parent.mkdir(parents=True, exist_ok=True)
    record_file.write_text(json.dumps(record, indent=2) + "\n")
    return (f"pushed {metadata['id']} (version {record['version']}, commit {record['commit'][:12]}"
            f"{', dirty' if record['dirty'] else ''}, {metadata['machine_shape']}): {record['url'] or ''}\n"
            f"recorded in {record_file}; fetch it with: python -m resemote_lib kaggle pull {record['run_name']}")


def _warn_about(bundle: Bundle) -> None:
    if bundle.values.get("data_root") is not None:
        log.warning("%s sets data_root=%s: on Kaggle that path must exist (null uses the attached dataset)",
                    bundle.params, bundle.values["data_root"])
    if len(bundle.archive) * 4 / 3 > BUNDLE_WARN_BYTES:
        log.warning("the source bundle is %.1f MiB encoded: large for a kernel script", len(bundle.archive) / 2**20)


def push_record(bundle: Bundle, metadata: dict[str, Any], pushed: dict[str, Any], *, overrides: dict[str, Any],
                accelerator: str, internet: bool) -> dict[str, Any]:
    """``kaggle_push.json``: what ``pull`` checks the kernel's output against."""
    return {
        "kernel": metadata["id"], "url": pushed.get("url"), "version": pushed.get("version"),
        "run_name": bundle.values["run_name"], "params": bundle.params, "overrides": overrides,
        "accelerator": accelerator, "machine_shape": metadata["machine_shape"],
        "enable_internet": internet, "dataset_sources": metadata["dataset_sources"],
        **{k: bundle.record[k] for k in ("commit", "dirty", "code_sha256")},
        "bundle_sha256": bundle.sha256,
        "pushed_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


__all__ = ["ACCELERATORS", "CODE_FILE", "METADATA_FILE", "PUSH_RECORD", "kernel_config", "kernel_folder",
           "kernel_metadata", "kernel_script", "push", "push_record", "write_kernel"]
