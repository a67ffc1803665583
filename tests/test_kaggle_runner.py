"""resemote_lib.kaggle.runner, the kernel side: requirements, the bundle, the mount, and the whole
kernel run offline.

The slow test runs the pushed script outside the checkout, in a simulated /kaggle (read-only
input and source, no credentials, no network), then pulls its output back with a fake
client and regenerates Table III for real.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from resemote_lib import paths, provenance
from resemote_lib.kaggle import cli, push, runner

from . import kaggle_fakes as F
from . import layouts as L
from .kaggle_fakes import SMOKE, FakeClient, snapshot, unpack_script

repo, user = F.repo, F.user  # fixtures


def test_runner_is_one_standard_library_file():
    """The kernel runs the runner's text as a script, before any requirement is installed."""
    import ast

    tree = ast.parse(Path(runner.__file__).read_text())
    assert not [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]  # no relative import
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = {alias.name for n in top if isinstance(n, ast.Import) for alias in n.names}
    names |= {n.module for n in top if isinstance(n, ast.ImportFrom)}
    assert {name.split(".")[0] for name in names} <= set(sys.stdlib_module_names) | {"__future__"}


def test_requirements_the_image_lacks():
    specs = ["torch>=999", "torchvision>=999", "numpy>=1.0", "numpy>=999", "nbval>=999", "jupyterlab>=999",
             "surely-not-installed-pkg>=1", "opencv-python-headless>=4.8,<5", "pyyaml>=6.0; python_version < '3'"]
    assert runner.unmet_requirements(specs) == ["numpy>=999", "surely-not-installed-pkg>=1"]


def test_install_pins_the_images_torch(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(runner, "stream", lambda cmd, **kw: calls.append(cmd) or 0)
    runner.install([], tmp_path)
    assert calls == []
    runner.install(["seaborn>=0.13"], tmp_path)
    cmd = calls[0]
    assert cmd[1:4] == ["-m", "pip", "install"] and cmd[-1] == "seaborn>=0.13" and "torch" not in " ".join(cmd[4:-1])
    pins = (tmp_path / "constraints.txt").read_text().split()
    from importlib.metadata import version

    assert pins == [f"torch=={version('torch')}", f"torchvision=={version('torchvision')}",
                    f"numpy=={version('numpy')}"]
    monkeypatch.setattr(runner, "torch_pins", iter([["torch==1"], ["torch==2"]]).__next__)
    with pytest.raises(runner.RunnerError, match="pip replaced the image's torch"):
        runner.install(["x"], tmp_path)


def test_find_mount_knows_both_layouts(tmp_path):
    assert runner.find_mount(tmp_path, "msambare/fer2013") is None
    (tmp_path / "datasets" / "msambare" / "fer2013").mkdir(parents=True)
    assert runner.find_mount(tmp_path, "msambare/fer2013") == tmp_path / "datasets" / "msambare" / "fer2013"
    (tmp_path / "fer2013").mkdir()
    assert runner.find_mount(tmp_path, "msambare/fer2013") == tmp_path / "fer2013"


def test_corrupt_bundle_is_refused(tmp_path):
    with pytest.raises(runner.RunnerError, match="corrupt"):
        runner.unpack(base64.b64encode(b"x").decode(), "0" * 64, tmp_path / "src")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo("../evil")
        tar.addfile(info, io.BytesIO(b""))
    data = raw.getvalue()
    with pytest.raises(runner.RunnerError, match="unexpected entry"):
        runner.unpack(base64.b64encode(data).decode(), hashlib.sha256(data).hexdigest(), tmp_path / "src")


NET_PROBE = r"""
import errno, socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(("8.8.8.8", 53))
except OSError as e:
    ok = e.errno in (errno.ENETUNREACH, errno.EACCES, errno.EPERM, errno.ECONNREFUSED)
    print("NETWORK-BLOCKED" if ok else f"NETWORK-ERROR {e!r}")
else:
    print("NETWORK-OPEN")
"""

# Brings the loopback interface up (Jupyter talks to its kernel over 127.0.0.1) without `ip`.


LOOPBACK_UP = r"""
import fcntl, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH", b"lo", 0)))[1]
fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags | 1))
"""

# Fallback where user namespaces are not allowed: Python-level, for every Python process started.


SITECUSTOMIZE = r"""
_connect = socket.socket.connect
def _guarded(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
        raise OSError(101, "Network is unreachable (blocked by the test's sitecustomize)")
    return _connect(self, address)
socket.socket.connect = _guarded
"""


def namespaces_work() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = subprocess.run(["unshare", "-rmn", "true"], capture_output=True)
    return probe.returncode == 0


def sandboxed(cmd: list[str], *, read_only_dirs: list[Path], cwd: Path, env: dict, tmp: Path) -> list[list[str]]:
    """Commands that run ``cmd`` without network and with ``read_only_dirs`` really read-only.

    With user namespaces: a new network namespace (loopback only) and read-only bind
    mounts, which stop root too. Without: a sitecustomize that refuses non-loopback
    connections (chmod a-w and the snapshots still guard the folders).
    """
    py = sys.executable
    if namespaces_work():
        script = "set -e\n" + f"{py} -c '{LOOPBACK_UP}'\n"
        for d in read_only_dirs:
            script += f'mount --bind "{d}" "{d}"\nmount -o remount,bind,ro "{d}" "{d}"\n'
        script += f"{py} -c '{NET_PROBE}'\n"
        script += f'cd "{cwd}"\nexec ' + " ".join(f'"{c}"' for c in cmd) + "\n"
        return [["unshare", "-rmn", "sh", "-c", script]]
    site = tmp / "sitecustomize"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env["PYTHONPATH"] = str(site)
    return [[py, "-c", NET_PROBE], cmd]


@pytest.mark.slow
def test_pushed_kernel_runs_offline_in_a_simulated_kaggle_and_pulls_back(repo, tmp_path, user):
    # push (the API faked), as a user would
    api = FakeClient(tmp_path / "api")
    local_results = tmp_path / "local" / "results"
    assert cli.main(["push", SMOKE, "--repo", str(repo), "--results", str(local_results)], client=api) == 0
    pushed = api.folders[0]
    push_record = json.loads((local_results / "smoke" / push.PUSH_RECORD).read_text())

    # a simulated /kaggle, outside the checkout: an attached dataset (unused by the smoke run) and the source
    kaggle_root = tmp_path / "kaggle"
    input_dir, working = kaggle_root / "input", kaggle_root / "working"
    L.write_fer2013_folders(input_dir / "fer2013")
    working.mkdir(parents=True)
    source = unpack_script(pushed / push.CODE_FILE, tmp_path / "src")
    assert not str(source).startswith(str(paths.ROOT))
    guarded = [input_dir, source, pushed]
    for d in guarded:
        runner.make_read_only(d)
    before = {d: snapshot(d) for d in guarded}

    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAGGLE_", "RESEMOTE_"))}
    env.update(RESEMOTE_KAGGLE_ROOT=str(kaggle_root), RESEMOTE_KAGGLE_SOURCE=str(source),
               RESEMOTE_KAGGLE_DEVICE="cpu", HOME=str(tmp_path / "home"),
               KAGGLE_CONFIG_DIR=str(tmp_path / "home" / ".kaggle"), PYTHONHASHSEED="0", MPLBACKEND="Agg")
    env.pop("PYTHONPATH", None)
    (tmp_path / "home").mkdir()
    commands = sandboxed([sys.executable, str(pushed / push.CODE_FILE)], read_only_dirs=guarded, cwd=working,
                         env=env, tmp=tmp_path)
    outputs = []
    try:
        for cmd in commands:
            proc = subprocess.run(cmd, env=env, cwd=working, capture_output=True, text=True, timeout=1200)
            outputs.append(proc.stdout + proc.stderr)
            assert proc.returncode == 0, "\n".join(outputs)[-6000:]
        after = {d: snapshot(d) for d in guarded}
    finally:
        for d in guarded:  # let pytest delete them
            for p in [d, *d.rglob("*")]:
                p.chmod(p.stat().st_mode | 0o200)
    log_text = "\n".join(outputs)
    assert "NETWORK-BLOCKED" in log_text, log_text[-3000:]
    assert "NETWORK-OPEN" not in log_text

    # nothing written into the mount, the source or the pushed folder; outputs only under working/results
    assert after == before
    assert sorted(p.name for p in working.iterdir()) == ["results"]
    run = working / "results" / "smoke"
    for name in ("metrics.json", "provenance.json", "history.csv", "predictions.csv", "params.yaml",
                 "kaggle_run.json", *(f"notebooks/{n}.ipynb" for n in ("00_data", "01_train", "02_evaluate",
                                                                       "04_explore"))):
        assert (run / name).is_file(), name
    assert list((run / "figures").glob("*.png"))
    assert [p.name for p in run.glob("*.pt")] in (["best.pt"], ["final.pt"])  # never last.pt
    assert (working / "results" / "paper" / "table3.md").is_file()
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["git"] == {"commit": push_record["commit"], "dirty": False, "from": provenance.SOURCE_RECORD}
    assert prov["code_sha256"] == push_record["code_sha256"] and prov["device"] == "cpu"
    ran = json.loads((run / "kaggle_run.json").read_text())
    assert ran["exit"] == 0 and ran["installed"] == [] and ran["commit"] == push_record["commit"]
    # the smoke preset keeps no last.pt (keep_last false), so no checkpoint was there to remove (the
    # removal of a real protocol's last.pt: test_clean_output_removes_last_pt_and_scratch...)
    assert not any(".pt" in r for r in ran["removed"]), ran["removed"]

    # pull it back with the API faked: the kernel's working folder is its output
    log = json.dumps([{"stream_name": "stdout", "time": 0, "data": log_text}])
    api.states = ["running", "complete"]
    api._output = lambda dest: shutil.copytree(working, dest, dirs_exist_ok=True)
    api.log = log
    assert cli.main(["pull", "smoke", "--results", str(local_results), "--poll", "0", "--no-progress"],
                    client=api) == 0
    local = local_results / "smoke"
    assert json.loads((local / "metrics.json").read_text()) == json.loads((run / "metrics.json").read_text())
    assert (local / "kaggle_paper" / "table3.md").is_file() and (local / "kaggle.log").is_file()
    table3 = (local_results / "paper" / "table3.md").read_text()  # regenerated here, for real
    assert "smoke" in table3


def test_clean_output_removes_last_pt_and_scratch_and_keeps_the_tested_weights(tmp_path):
    """What a real protocol's run leaves (keep_last: last.pt, 600-900 MiB) never becomes kernel output."""
    run = tmp_path / "results" / "fer2013"
    run.mkdir(parents=True)
    for name in ("last.pt", "best.pt", "final.pt", ".best.pt.x1.tmp", ".lock", "metrics.json"):
        (run / name).write_bytes(b"x" * 10)
    (tmp_path / ".cache" / "decoded").mkdir(parents=True)
    removed = runner.clean_output(tmp_path, "fer2013", [tmp_path / ".cache", tmp_path / "absent"])
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "final.pt", "metrics.json"]
    assert [r.split(" ")[0] for r in removed] == ["results/fer2013/.best.pt.x1.tmp", "results/fer2013/.lock",
                                                  "results/fer2013/last.pt", ".cache/"]
    assert not (tmp_path / ".cache").exists()
