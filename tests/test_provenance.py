"""provenance: what a run records about its environment, without slowing every command down."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

from resemote_lib import paths, provenance

# What each CLI command imports (resemote_lib.commands.cli loads them lazily, per command).
COMMAND_MODULES = ("commands.cli", "train", "evaluate", "predict", "predict.export", "commands.pipeline", "kaggle.cli",
                   "provenance")


def test_versions_are_the_installed_distributions():
    record = provenance.collect(config={"seed": 3})
    assert record["torchvision"] == version("torchvision")
    assert record["torch"].split("+")[0] == version("torch").split("+")[0]
    assert record["seed"] == 3 and record["code_sha256"] == provenance.code_hash()


def test_no_command_imports_torchvision():
    """Importing torchvision costs about 2 s per command here; nothing in the library uses it."""
    code = ("import sys\n"
            + "".join(f"import resemote_lib.{m}\n" for m in COMMAND_MODULES)
            + "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchvision'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=paths.ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_the_kaggle_runner_names_the_source_record_as_provenance_does():
    """The runner is standard library only (it is pasted into the kernel) and cannot import the
    core's name for the file its bundle's git state travels in: the two spellings must agree."""
    from resemote_lib.kaggle import runner

    assert runner.SOURCE_RECORD == provenance.SOURCE_RECORD == "resemote_source.json"
