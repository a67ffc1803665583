"""Kaggle kernel push/pull, offline: the API faked at its boundary, the kernel run locally.

The pushes bundle a fresh clone of this checkout's HEAD (a clean tree, whatever state the
working copy is in). The slow test runs the pushed script outside the checkout, in a
simulated /kaggle (read-only input and source, no credentials, no network), then pulls
its output back with a fake client and regenerates Table III for real.
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
import types
from pathlib import Path

import pytest

from resemote_lib import kaggle, kernel, paths, provenance
from resemote_lib.kaggle_runner import runner

from . import layouts as L
from . import test_kaggle

no_credentials = test_kaggle.no_credentials  # fixtures shared with test_kaggle
snapshot = test_kaggle.snapshot

SMOKE = "params/smoke.yaml"
REAL = "params/fer2013_clean.yaml"


def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A clean clone of this checkout's HEAD."""
    if not (paths.ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    dest = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(paths.ROOT), str(dest)], check=True)
    return dest


@pytest.fixture
def user(monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    return "alice"


class FakeClient:
    """Kaggle's API, faked: records every call and keeps a copy of each pushed folder."""

    def __init__(self, root: Path, states=("complete",), output=None, log="") -> None:
        self.root, self.calls, self.folders = root, [], []
        self.states, self._output, self.log = list(states), output, log

    def username(self):
        self.calls.append(("username",))
        return "from-api"

    def push(self, folder):
        self.calls.append(("push", json.loads((folder / kernel.METADATA_FILE).read_text())))
        copy = self.root / f"push{len(self.folders)}"
        shutil.copytree(folder, copy)
        self.folders.append(copy)
        return {"ref": "/code/alice/x", "url": "https://www.kaggle.com/code/alice/x", "version": len(self.folders)}

    def status(self, slug):
        self.calls.append(("status", slug))
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def output(self, slug, dest):
        self.calls.append(("output", slug))
        dest.mkdir(parents=True, exist_ok=True)
        if self._output is not None:
            self._output(dest)
        return self.log


def unpack_script(script: Path, dest: Path) -> Path:
    """Run the pushed script's own ``--unpack``: what the kernel does first."""
    subprocess.run([sys.executable, str(script), "--unpack", str(dest)], check=True, capture_output=True, cwd=dest.parent)
    return dest


def embedded_config(script: Path) -> dict:
    text = script.read_text()
    line = next(x for x in text.splitlines() if x.startswith("CONFIG = json.loads("))
    return json.loads(eval(line[len("CONFIG = json.loads("):-1]))  # a repr'd string literal


# ---------------------------------------------------------------------------------- push


def test_dry_run_metadata_and_bundle(repo, tmp_path, no_credentials, user, capsys):
    out = tmp_path / "kernel"
    assert kernel.main(["push", REAL, "--repo", str(repo), "--dry-run", str(out)]) == 0
    meta = json.loads((out / kernel.METADATA_FILE).read_text())
    assert meta == {
        "id": "alice/resemote-fer2013-clean", "title": "resemote fer2013_clean", "code_file": "resemote_kernel.py",
        "language": "python", "kernel_type": "script", "is_private": True, "enable_gpu": True,
        "enable_tpu": False, "enable_internet": True, "machine_shape": "NvidiaTeslaT4",
        "dataset_sources": ["msambare/fer2013"], "competition_sources": [], "kernel_sources": [],
        "model_sources": [],
    }
    slugify = pytest.importorskip("slugify").slugify  # what kaggle's push compares the id with
    assert meta["id"].split("/")[1] == slugify(meta["title"])
    assert (out / meta["code_file"]).is_file()
    assert "not pushed" in capsys.readouterr().out

    src = unpack_script(out / meta["code_file"], tmp_path / "src")
    head = git(repo, "rev-parse", "HEAD")
    tracked = set(git(repo, "ls-files").splitlines())
    files = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}
    assert files == {f for f in tracked if not f.startswith("results/")} | {provenance.SOURCE_RECORD}
    for name in sorted(files - {provenance.SOURCE_RECORD}):
        assert (src / name).read_bytes() == (repo / name).read_bytes(), name
    assert not any(f.startswith(("results/", ".venv/", "data/", ".cache/", ".git/")) for f in files)
    record = json.loads((src / provenance.SOURCE_RECORD).read_text())
    assert record["commit"] == head and record["dirty"] is False and record["source"] == "git archive HEAD"
    assert record["code_sha256"] == provenance.code_hash(src) == provenance.code_hash(repo)
    assert provenance.git_state(src) == {"commit": head, "dirty": False, "from": provenance.SOURCE_RECORD}
    assert (src / REAL).is_file() and (src / "params/_real.yaml").is_file()  # the params and their base

    config = embedded_config(out / meta["code_file"])
    assert config["params"] == REAL and config["run_name"] == "fer2013_clean"
    assert config["dataset_slug"] == "msambare/fer2013" and config["source"]["commit"] == head
    assert "torch>=2.1" in config["requirements"]


def test_bundle_is_deterministic_and_checked(repo):
    a = kernel.build_bundle(SMOKE, repo=repo)
    b = kernel.build_bundle(SMOKE, repo=repo)
    assert a.sha256 == b.sha256 == hashlib.sha256(a.archive).hexdigest()
    assert a.archive == b.archive


def test_push_with_fake_api_records_what_was_pushed(repo, tmp_path, user):
    client = FakeClient(tmp_path / "api")
    results = tmp_path / "results"
    assert kernel.main(["push", REAL, "--repo", str(repo), "--results", str(results), "--set", "seed=3"],
                       client=client) == 0
    assert [c[0] for c in client.calls] == ["push"]
    meta = client.calls[0][1]
    assert meta["id"] == "alice/resemote-fer2013-clean" and meta["dataset_sources"] == ["msambare/fer2013"]
    record = json.loads((results / "fer2013_clean" / kernel.PUSH_RECORD).read_text())
    assert record["kernel"] == meta["id"] and record["commit"] == git(repo, "rev-parse", "HEAD")
    assert record["params"] == REAL and record["overrides"] == {"seed": 3} and record["dirty"] is False
    assert record["version"] == 1 and record["url"].startswith("https://www.kaggle.com/code/")
    assert record["pushed_utc"] and record["machine_shape"] == "NvidiaTeslaT4"
    script = client.folders[0] / kernel.CODE_FILE
    text = script.read_text()
    start = text.index("BUNDLE = (")
    encoded = "".join(line.strip().strip('"') for line in text[start:].splitlines()[1:] if line.startswith('    "'))
    assert hashlib.sha256(base64.b64decode(encoded)).hexdigest() == record["bundle_sha256"]
    assert embedded_config(script)["overrides"] == {"seed": 3}


def test_user_name_comes_from_the_api_when_not_configured(repo, tmp_path, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "cfg"))
    client = FakeClient(tmp_path / "api")
    assert kernel.main(["push", SMOKE, "--repo", str(repo), "--results", str(tmp_path / "r")], client=client) == 0
    assert client.calls[0] == ("username",) and client.calls[1][1]["id"] == "from-api/resemote-smoke"
    assert client.calls[1][1]["dataset_sources"] == []  # synthetic: nothing to attach


def test_dirty_tree_is_refused_unless_allowed(repo, tmp_path, user, capsys):
    labels = repo / "resemote_lib" / "labels.py"
    labels.write_text(labels.read_text() + "\n# local change\n")
    out = tmp_path / "kernel"
    assert kernel.main(["push", SMOKE, "--repo", str(repo), "--dry-run", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "uncommitted changes" in err and "resemote_lib/labels.py" in err and "--allow-dirty" in err
    assert not out.exists()

    assert kernel.main(["push", SMOKE, "--repo", str(repo), "--dry-run", str(out), "--allow-dirty"]) == 0
    src = unpack_script(out / kernel.CODE_FILE, tmp_path / "src")
    record = json.loads((src / provenance.SOURCE_RECORD).read_text())
    assert record["dirty"] is True and record["modified"] == ["resemote_lib/labels.py"]
    assert record["commit"] == git(repo, "rev-parse", "HEAD")
    assert (src / "resemote_lib" / "labels.py").read_text().endswith("# local change\n")
    assert provenance.git_state(src)["dirty"] is True


def test_untracked_or_outside_params_are_refused(repo, tmp_path, user, capsys):
    (repo / "params" / "mine.yaml").write_text("base: smoke.yaml\nrun_name: mine\n")
    assert kernel.main(["push", "params/mine.yaml", "--repo", str(repo), "--dry-run", str(tmp_path / "k")]) == 2
    assert "not tracked by git" in capsys.readouterr().err
    outside = tmp_path / "outside.yaml"
    outside.write_text("run_name: x\n")
    assert kernel.main(["push", str(outside), "--repo", str(repo), "--dry-run", str(tmp_path / "k")]) == 2
    assert "must be inside the repository" in capsys.readouterr().err


def test_unknown_params_key_is_refused_before_pushing(repo, tmp_path, user, capsys):
    client = FakeClient(tmp_path / "api")
    assert kernel.main(["push", SMOKE, "--repo", str(repo), "--set", "colour=blue"], client=client) == 2
    assert "colour" in capsys.readouterr().err and client.calls == []


def test_push_without_credentials_is_one_line(repo, tmp_path, no_credentials, capsys):
    sys.modules.pop("kaggle", None)
    assert kernel.main(["push", SMOKE, "--repo", str(repo), "--results", str(tmp_path / "r")]) == 2
    out = capsys.readouterr()
    assert len(out.err.strip().splitlines()) == 1 and "no Kaggle credentials" in out.err
    assert "kaggle" not in sys.modules and not (tmp_path / "r").exists()


def test_p100_is_accepted_with_a_warning(repo, tmp_path, user, caplog):
    out = tmp_path / "kernel"
    assert kernel.main(["push", SMOKE, "--repo", str(repo), "--dry-run", str(out), "--accelerator", "gpu-p100",
                        "--no-internet"]) == 0
    meta = json.loads((out / kernel.METADATA_FILE).read_text())
    assert meta["machine_shape"] == "NvidiaTeslaP100" and meta["enable_internet"] is False
    assert "retired" in caplog.text and "sm_60" in caplog.text


def test_title_and_slug_stay_within_kaggle_limits():
    meta = kernel.kernel_metadata("bob", "x" * 80 + "_Run", "rafdb")
    assert 5 <= len(meta["title"]) <= kernel.MAX_TITLE
    assert meta["id"] == "bob/" + kernel.kernel_slug(meta["title"]) and meta["dataset_sources"] == [
        "shuvoalok/raf-db-dataset"]
    with pytest.raises(ValueError, match="unknown accelerator"):
        kernel.kernel_metadata("bob", "r", "fer2013", accelerator="tpu")


# ------------------------------------------------------------- the real client, offline


@pytest.fixture
def quiet_kaggle(tmp_path, monkeypatch):
    """The installed ``kaggle`` package with fake credentials and its HTTP client replaced."""
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", "not-a-real-key")
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "cfg"))
    sys.modules.pop("kaggle", None)
    with io.StringIO() as sink, __import__("contextlib").redirect_stdout(sink):
        import kaggle as kaggle_pkg
    requests = []

    class Kernels:
        def save_kernel(self, request):
            from kagglesdk.kernels.types.kernels_api_service import ApiSaveKernelResponse

            requests.append(request)
            resp = ApiSaveKernelResponse()
            resp.ref, resp.url, resp.version_number = "/code/alice/k", "https://www.kaggle.com/code/alice/k", 3
            return resp

        def get_kernel_session_status(self, request):
            from kagglesdk.kernels.types.kernels_api_service import ApiGetKernelSessionStatusResponse
            from kagglesdk.kernels.types.kernels_enums import KernelWorkerStatus

            requests.append(request)
            resp = ApiGetKernelSessionStatusResponse()
            resp.status, resp.failure_message = KernelWorkerStatus.CANCEL_ACKNOWLEDGED, "stopped by user"
            return resp

        def list_kernel_session_output(self, request):
            requests.append(request)
            return types.SimpleNamespace(files=[], next_page_token=None,
                                         log=json.dumps([{"stream_name": "stdout", "time": 1.0, "data": "a\nb\n"}]))

    class Client:
        kernels = types.SimpleNamespace(kernels_api_client=Kernels())

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(kaggle_pkg.api, "build_kaggle_client", lambda: Client())
    yield requests
    sys.modules.pop("kaggle", None)


def test_real_client_through_the_installed_kaggle_package(repo, tmp_path, quiet_kaggle, capsys):
    """Our metadata passes kaggle 2.x's own checks and becomes the request we expect."""
    out = tmp_path / "kernel"
    assert kernel.main(["push", REAL, "--repo", str(repo), "--dry-run", str(out)]) == 0
    client = kernel.KaggleKernelClient()
    assert client.push(out) == {"ref": "/code/alice/k", "url": "https://www.kaggle.com/code/alice/k", "version": 3}
    req = quiet_kaggle[0]
    assert req.slug == "alice/resemote-fer2013-clean" and req.new_title == "resemote fer2013_clean"
    assert (req.language, req.kernel_type) == ("python", "script")
    assert req.enable_gpu is True and req.enable_internet is True and req.is_private is True
    assert req.machine_shape == "NvidiaTeslaT4" and list(req.dataset_data_sources) == ["msambare/fer2013"]
    assert req.text == (out / kernel.CODE_FILE).read_text()
    assert client.status("alice/resemote-k") == kernel.KernelStatus("cancelacknowledged", "stopped by user")
    log = client.output("alice/resemote-k", tmp_path / "dl")
    assert kernel.log_lines(log) == ["a", "b"] and list((tmp_path / "dl").iterdir()) == []
    assert "resolve" not in capsys.readouterr().out  # kaggle's "title does not resolve to the id" warning


def test_real_client_turns_every_failure_into_one_error(quiet_kaggle, monkeypatch):
    import kaggle as kaggle_pkg

    def boom(*a, **k):
        print("Authentication required: not-a-real-key")
        raise SystemExit(1)

    monkeypatch.setattr(kaggle_pkg.api, "kernels_status", boom)
    with pytest.raises(kaggle.KaggleError, match=r"reading the status of alice/resemote-k failed \(SystemExit") as e:
        kernel.KaggleKernelClient().status("alice/resemote-k")
    assert "not-a-real-key" not in str(e.value)


def test_status_values_are_normalised():
    from kagglesdk.kernels.types.kernels_enums import KernelWorkerStatus

    assert kernel.normalize_state(KernelWorkerStatus.COMPLETE) == "complete"
    assert kernel.normalize_state("cancelAcknowledged") == "cancelacknowledged"
    assert kernel.normalize_state("KernelWorkerStatus.CANCEL_REQUESTED") == "cancelrequested"
    assert kernel.as_status("Running") == kernel.KernelStatus("running", "")


# ---------------------------------------------------------------------------------- pull


def pushed_record(results: Path, run: str = "r1", commit: str = "c0ffee", code: str = "abc") -> dict:
    record = {"kernel": "alice/resemote-r1", "commit": commit, "dirty": False, "code_sha256": code,
              "run_name": run, "params": SMOKE}
    (results / run).mkdir(parents=True, exist_ok=True)
    (results / run / kernel.PUSH_RECORD).write_text(json.dumps(record))
    return record


def fake_run_output(run="r1", commit="c0ffee", code="abc", metrics=True):
    def write(dest: Path):
        d = dest / "results" / run
        (d / "notebooks").mkdir(parents=True)
        (d / "notebooks" / "01_train.ipynb").write_text("{}")
        (d / "provenance.json").write_text(json.dumps({"git": {"commit": commit, "dirty": False},
                                                       "code_sha256": code}))
        if metrics:
            (d / "metrics.json").write_text(json.dumps({"accuracy": 0.5}))
        (d / "best.pt").write_bytes(b"weights")
        (dest / "results" / "paper").mkdir()
        (dest / "results" / "paper" / "table3.md").write_text("| kernel's table |")
    return write


@pytest.fixture
def regenerated(monkeypatch):
    from resemote_lib import pipeline

    calls = []

    def fake(results_dir=None, **kw):
        calls.append(Path(results_dir))
        (Path(results_dir) / "paper").mkdir(exist_ok=True)
        return Path(results_dir) / "paper" / "03_paper.ipynb"

    monkeypatch.setattr(pipeline, "regenerate_paper", fake)
    return calls


def test_pull_complete_downloads_checks_and_regenerates(tmp_path, regenerated, capsys):
    results = tmp_path / "results"
    pushed_record(results)
    client = FakeClient(tmp_path, states=["queued", "running", "complete"], output=fake_run_output(), log="done")
    assert kernel.main(["pull", "r1", "--results", str(results), "--poll", "0", "--no-progress"], client=client) == 0
    run = results / "r1"
    assert json.loads((run / "metrics.json").read_text()) == {"accuracy": 0.5}
    assert (run / "best.pt").is_file() and (run / "notebooks" / "01_train.ipynb").is_file()
    assert (run / "kaggle_paper" / "table3.md").is_file() and (run / "kaggle.log").read_text() == "done"
    assert (run / kernel.PUSH_RECORD).is_file()
    assert regenerated == [results]
    assert [c[0] for c in client.calls] == ["status"] * 3 + ["output"]
    assert "test accuracy 50.00%" in capsys.readouterr().out
    assert not (paths.CACHE / "kaggle" / "r1").exists()


def test_pull_of_a_failed_kernel_prints_its_log_tail(tmp_path, regenerated, capsys):
    results = tmp_path / "results"
    pushed_record(results)
    log = json.dumps([{"stream_name": "stdout", "time": i, "data": f"line {i}\n"} for i in range(100)])
    client = FakeClient(tmp_path, states=["running", "error"], output=fake_run_output(metrics=False), log=log)
    assert kernel.main(["pull", "r1", "--results", str(results), "--poll", "0", "--no-progress"], client=client) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("kaggle pull: kernel alice/resemote-r1 ended with status error")
    assert err[-1] == "line 99" and "line 50" not in err and len(err) == 1 + kernel.LOG_TAIL
    assert (results / "r1" / "kaggle.log").read_text() == log
    assert not (results / "r1" / "provenance.json").exists() and regenerated == []


def test_pull_of_an_output_without_metrics_fails_clearly(tmp_path, regenerated, capsys):
    results = tmp_path / "results"
    pushed_record(results)
    client = FakeClient(tmp_path, output=fake_run_output(metrics=False))
    assert kernel.main(["pull", "r1", "--results", str(results), "--poll", "0", "--no-progress"], client=client) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no results/r1/metrics.json" in err
    assert not list(results.rglob("provenance.json")) and regenerated == []  # kept out of results/


def test_pull_refuses_output_from_another_commit(tmp_path, regenerated, capsys):
    results = tmp_path / "results"
    pushed_record(results, commit="c0ffee")
    client = FakeClient(tmp_path, output=fake_run_output(commit="deadbeef"))
    assert kernel.main(["pull", "r1", "--results", str(results), "--poll", "0", "--no-progress"], client=client) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "commit mismatch" in err and "deadbeef" in err and "c0ffee" in err
    assert not list(results.rglob("metrics.json")) and regenerated == []  # never enters Table III


def test_pull_reports_a_table3_failure(tmp_path, monkeypatch, capsys):
    from resemote_lib import pipeline

    def broken(*a, **k):
        raise RuntimeError("03_paper failed in cell 3: KeyError: 'accuracy'")

    monkeypatch.setattr(pipeline, "regenerate_paper", broken)
    results = tmp_path / "results"
    pushed_record(results)
    assert kernel.main(["pull", "r1", "--results", str(results), "--poll", "0", "--no-progress"],
                       client=FakeClient(tmp_path, output=fake_run_output())) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Table III was not regenerated" in err and "03_paper failed" in err
    assert (results / "r1" / "metrics.json").is_file()  # the checked output is kept


def test_pull_without_credentials_is_one_line(tmp_path, no_credentials, capsys):
    results = tmp_path / "results"
    pushed_record(results)
    sys.modules.pop("kaggle", None)
    assert kernel.main(["pull", "r1", "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no Kaggle credentials" in err and "kaggle" not in sys.modules


def test_pull_of_nothing_pushed(tmp_path, capsys):
    assert kernel.main(["pull", "never", "--results", str(tmp_path)], client=FakeClient(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing pushed for run 'never'" in err


def test_pull_times_out_while_running(tmp_path, capsys):
    results = tmp_path / "results"
    pushed_record(results)
    client = FakeClient(tmp_path, states=["running"])
    assert kernel.main(["pull", "r1", "--results", str(results), "--timeout", "0", "--no-progress"],
                       client=client) == 3
    assert "still running" in capsys.readouterr().err
    assert ("output", "alice/resemote-r1") not in client.calls


# --------------------------------------------------------------------------- the runner


def test_requirements_the_image_lacks(monkeypatch):
    assert runner.read_requirements((paths.ROOT / "pyproject.toml").read_text())[:2] == ["torch>=2.1",
                                                                                       "torchvision>=0.16"]
    monkeypatch.setitem(sys.modules, "tomllib", None)  # Python 3.10: the fallback reads the same list
    fallback = runner.read_requirements((paths.ROOT / "pyproject.toml").read_text())
    monkeypatch.delitem(sys.modules, "tomllib")
    assert fallback == runner.read_requirements((paths.ROOT / "pyproject.toml").read_text())
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


# ------------------------------------------------------------------ the kernel, end to end

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
    assert kernel.main(["push", SMOKE, "--repo", str(repo), "--results", str(local_results)], client=api) == 0
    pushed = api.folders[0]
    push_record = json.loads((local_results / "smoke" / kernel.PUSH_RECORD).read_text())

    # a simulated /kaggle, outside the checkout: an attached dataset (unused by the smoke run) and the source
    kaggle_root = tmp_path / "kaggle"
    input_dir, working = kaggle_root / "input", kaggle_root / "working"
    L.write_fer2013_folders(input_dir / "fer2013")
    working.mkdir(parents=True)
    source = unpack_script(pushed / kernel.CODE_FILE, tmp_path / "src")
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
    commands = sandboxed([sys.executable, str(pushed / kernel.CODE_FILE)], read_only_dirs=guarded, cwd=working,
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
    assert any(r.startswith("results/smoke/last.pt") for r in ran["removed"])

    # pull it back with the API faked: the kernel's working folder is its output
    log = json.dumps([{"stream_name": "stdout", "time": 0, "data": log_text}])
    api.states = ["running", "complete"]
    api._output = lambda dest: shutil.copytree(working, dest, dirs_exist_ok=True)
    api.log = log
    assert kernel.main(["pull", "smoke", "--results", str(local_results), "--poll", "0", "--no-progress"],
                       client=api) == 0
    local = local_results / "smoke"
    assert json.loads((local / "metrics.json").read_text()) == json.loads((run / "metrics.json").read_text())
    assert (local / "kaggle_paper" / "table3.md").is_file() and (local / "kaggle.log").is_file()
    table3 = (local_results / "paper" / "table3.md").read_text()  # regenerated here, for real
    assert "smoke" in table3
