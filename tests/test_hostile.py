"""Hostile inputs, one row each (issue 11): what a user types, the exit code, the one line on
stderr that names the culprit, no traceback, and that nothing already on disk was lost.

Each row is a command line run the way a user runs it, in a fresh process
(``python -m resemote_lib ...``), except two that need a fault injected into the process
(Ctrl-C inside a save, a notebook cell that hangs): those call the library through
``cli.run``, the function that turns every CLI command's exceptions into exit codes. Rows
marked ``shared`` check the one tiny training run the module trains (it is their command:
its data folder holds the hostile files). That run's ``best.pt``/``last.pt`` serve the
predict/export/checkpoint rows and are deleted at module teardown (about 1.2 GB: it keeps last.pt on purpose). The two rows
that need a training run of their own (a real SIGKILL mid-save, a BOM CSV trained on) are
marked slow; ``tests/test_data_base.py`` and ``tests/test_checkpoint.py`` cover the same at unit level.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resemote_lib import checkpoint, paths
from resemote_lib.commands import cli, pipeline
from resemote_lib.data.synthetic import make_faces

from . import layouts as L
from .conftest import read_only_command

SMOKE = str(paths.PARAMS / "smoke.yaml")
TINY = ["image_size=32", "max_train_items=32", "batch_size=8"]
# The single line a failing command prints: cli.run's "error: ..." / "interrupted: ...", argparse's,
# or the kaggle command's own "kaggle push: ..." / "kaggle pull: ...".
ERROR_LINE = re.compile(r"^(error|interrupted): |^python -m resemote_lib[\w. ]*: error: |^kaggle (push|pull): ")
SHARED = "shared"  # a row whose command is the module's shared training run


def py(*args: object) -> list[str]:
    return [sys.executable, "-m", *map(str, args)]


# --- the shared training run -------------------------------------------------------------------

@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Shared:
    root: Path
    results: Path
    data: Path
    argv: list[str]
    outcome: Outcome

    @property
    def run(self) -> Path:
        return self.results / "shared"


def hostile_fer2013_folders(root: Path) -> Path:
    """The Kaggle FER2013 folders as a Mac user's copy of them holds them: AppleDouble ``._*``
    files and ``.DS_Store``, a ``__MACOSX`` folder, .webp/.gif/16-bit PNG images, a notes file."""
    L.write_fer2013_folders(root)
    happy = root / "train" / "happy"
    face = Image.open(next(happy.glob("*.jpg"))).convert("L")
    for f in list((root / "train").rglob("Training_*.jpg"))[:4]:
        (f.parent / f"._{f.name}").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    (root / "train" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "__MACOSX" / "train").mkdir(parents=True)
    face.save(happy / "Training_90000001.webp")
    face.save(happy / "Training_90000002.gif")
    Image.fromarray(np.asarray(face).astype(np.uint16) * 257).save(happy / "Training_90000003.png")  # 16-bit
    (root / "train" / "sad" / "notes.txt").write_text("relabelled by hand, see email")
    return root


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Shared:
    root = tmp_path_factory.mktemp("hostile")
    data = hostile_fer2013_folders(root / "fer2013")
    results = root / "results"
    argv = py("resemote_lib", "train", SMOKE, f"results_dir={results}", "run_name=shared", "dataset=fer2013",
              f"data_root={data}", *TINY, "lr=1e-3", "keep_last=true")  # the rows use its last.pt too
    out = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    yield Shared(root, results, data, argv, Outcome(out.returncode, out.stdout, out.stderr))
    shutil.rmtree(root, ignore_errors=True)


# --- one row ---------------------------------------------------------------------------------

@dataclass
class Ctx:
    """What a row's setup gets: its own folder, the shared run, and a record of the files
    that must come out of the command byte-for-byte unchanged."""

    tmp: Path
    request: pytest.FixtureRequest
    monkeypatch: pytest.MonkeyPatch
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # added to the command's environment
    kept: dict[Path, tuple] = field(default_factory=dict)
    background: list[subprocess.Popen] = field(default_factory=list)
    holder_pid: int | None = None  # the lock row's first training

    @property
    def shared(self) -> Shared:
        """The module's training run, trained when the first row that needs it asks."""
        return self.request.getfixturevalue("shared")

    def keep(self, *paths: Path) -> None:
        for path in paths:
            for p in ([path] if path.is_file() else sorted(q for q in path.rglob("*") if q.is_file())):
                self.kept[p] = _fingerprint(p)

    def face(self, name: str = "face.png", seed: int = 0) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(make_faces(1, seed=seed)[0][0]).save(path)
        return path

    def checkpoint_variant(self, name: str, edit: Callable[[dict], None]) -> Path:
        """A copy of the shared best.pt with ``edit`` applied to its payload."""
        payload = checkpoint.read_checkpoint(self.shared.run / "best.pt")
        edit(payload)
        torch.save(payload, self.tmp / name)
        return self.tmp / name


def _fingerprint(p: Path) -> tuple:
    st = p.stat()
    digest = p.read_bytes() if st.st_size < 2**20 else None  # big checkpoints: inode, size and mtime
    return st.st_ino, st.st_size, st.st_mtime_ns, digest


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Ctx], Sequence[str] | Callable[[], int] | str]  # argv, an in-process command, or SHARED
    code: int
    stderr: str | None = None  # failing rows: the one error line matches; exit 0: found in stderr
    check: Callable[[Ctx, Outcome], None] | None = None
    slow: bool = False
    xfail: str | None = None  # a known defect outside this row's files, with its reason


def _train(ctx: Ctx, *overrides: str, params: str = SMOKE) -> list[str]:
    return py("resemote_lib", "train", params, f"results_dir={ctx.tmp / 'results'}", *overrides)


def _nothing_written(ctx: Ctx, out: Outcome) -> None:
    assert not (ctx.tmp / "results").exists() or not any((ctx.tmp / "results").rglob("*.pt"))


def _resume_shared(ctx: Ctx) -> list[str]:
    ctx.keep(ctx.shared.run / "best.pt", ctx.shared.run / "last.pt")
    return ctx.shared.argv


# --- the rows: runs, locks, saves ---------------------------------------------------------------

def lock_held_by_another_training(ctx: Ctx) -> list[str]:
    argv = _train(ctx, "run_name=busy", *TINY)
    holder = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctx.background.append(holder)
    lock = ctx.tmp / "results" / "busy" / ".lock"
    deadline = time.monotonic() + 120
    while not (lock.is_file() and f'"pid": {holder.pid}' in lock.read_text()):
        assert holder.poll() is None and time.monotonic() < deadline, "the first training never took the lock"
        time.sleep(0.05)
    holder.send_signal(signal.SIGSTOP)  # it keeps the lock, and the CPU to the second one
    ctx.holder_pid = holder.pid
    return argv


def _lock_names_holder(ctx: Ctx, out: Outcome) -> None:
    assert f"in use by pid {ctx.holder_pid} " in out.stderr
    assert ctx.background[0].poll() is None  # the first training was not disturbed
    assert not (ctx.tmp / "results" / "busy" / "last.pt").exists()


def stale_temp_file_from_a_killed_save(ctx: Ctx) -> list[str]:
    """What SIGKILL during ``atomic_torch_save`` leaves in a run killed while it trained: ``last.pt``,
    a partial ``.last.pt.<random>.tmp`` and no ``config.json`` yet (written once training has
    finished; a finished run is read back, not resumed). The shared run, hard-linked into this
    row's own results folder (saves replace files by renaming: the shared run stays as it is)."""
    results = ctx.tmp / "results"
    shutil.copytree(ctx.shared.run, results / "shared", copy_function=os.link)
    (results / "shared" / "config.json").unlink()
    with open(results / "shared" / "last.pt", "rb") as f:
        (results / "shared" / ".last.pt.k1ll3d.tmp").write_bytes(f.read(2**20))
    return [f"results_dir={results}" if a.startswith("results_dir=") else a for a in ctx.shared.argv]


def _temp_file_removed(ctx: Ctx, out: Outcome) -> None:
    run = ctx.tmp / "results" / "shared"
    assert (run / "config.json").is_file() and not list(run.glob(".*.tmp"))


def real_sigkill_during_a_save(ctx: Ctx) -> list[str]:
    argv = _train(ctx, "run_name=killed", *TINY)
    trainer = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctx.background.append(trainer)
    run, deadline = ctx.tmp / "results" / "killed", time.monotonic() + 600
    while True:
        assert trainer.poll() is None and time.monotonic() < deadline, "no save was caught in progress"
        if run.is_dir() and list(run.glob(".*.pt.*.tmp")):
            trainer.send_signal(signal.SIGSTOP)  # frozen mid-save...
            if list(run.glob(".*.pt.*.tmp")):
                break
            trainer.send_signal(signal.SIGCONT)  # ...unless that save had just finished: wait for the next
        time.sleep(0.01)
    trainer.send_signal(signal.SIGKILL)
    trainer.wait()
    return argv


def _no_temp_left(ctx: Ctx, out: Outcome) -> None:
    assert not list((ctx.tmp / "results" / "killed").glob(".*.tmp"))


def ctrl_c_inside_a_save(ctx: Ctx) -> Callable[[], int]:
    path = checkpoint.atomic_torch_save({"w": torch.zeros(4)}, ctx.tmp / "last.pt")
    ctx.keep(path)

    def interrupted(obj, f):  # what torch's zip writer raises when SIGINT lands inside it
        f.write(b"partial")
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0") from None

    ctx.monkeypatch.setattr(checkpoint.torch, "save", interrupted)

    def save_again() -> int:
        checkpoint.atomic_torch_save({"w": torch.ones(8)}, path)
        return 0

    return save_again


def _only_last_pt(ctx: Ctx, out: Outcome) -> None:
    assert sorted(p.name for p in ctx.tmp.iterdir()) == ["last.pt"]


def read_only_run_directory(ctx: Ctx) -> list[str]:
    run = ctx.tmp / "results" / "ro"
    run.mkdir(parents=True)
    (run / "history.csv").write_text("epoch\n1\n")
    ctx.keep(run)
    return read_only_command(run, _train(ctx, "run_name=ro", *TINY))  # root included: tests/conftest.py


def read_only_run_directory_evaluate(ctx: Ctx) -> list[str]:
    ctx.keep(ctx.shared.run / "best.pt")
    return read_only_command(ctx.shared.run, py("resemote_lib", "evaluate", ctx.shared.run))


# --- export and checkpoints --------------------------------------------------------------------

def export_onto_its_input(ctx: Ctx) -> list[str]:
    best = ctx.shared.run / "best.pt"
    ctx.keep(best)
    return py("resemote_lib", "export", best, ctx.shared.run / ".." / "shared" / "best.pt")


def export_onto_another_checkpoint(ctx: Ctx) -> list[str]:
    ctx.keep(ctx.shared.run / "last.pt")
    return py("resemote_lib", "export", ctx.shared.run / "best.pt", ctx.shared.run / "last.pt")


def last_pt_as_a_model(ctx: Ctx) -> list[str]:
    faces = ctx.tmp / "faces"
    for i in range(3):
        ctx.face(f"faces/f{i}.png", seed=i)
    ctx.keep(ctx.shared.run / "last.pt")
    return py("resemote_lib", "predict", ctx.shared.run / "last.pt", faces, "--detector", "none",
              "--device", "cpu", "--out", ctx.tmp / "last.jsonl")


def _same_as_best(ctx: Ctx, out: Outcome) -> None:
    """last.pt after epoch 1 holds best.pt's weights: same labels and probabilities, same class order."""
    from resemote_lib.labels import CLASS_NAMES
    from resemote_lib.predict import Predictor, predict_files

    got = [json.loads(line) for line in (ctx.tmp / "last.jsonl").read_text().splitlines()]
    predictor = Predictor(ctx.shared.run / "best.pt", detector=None, device="cpu")
    assert predictor.image_size == 32
    want = [r.to_dict() for r in predict_files(predictor, sorted((ctx.tmp / "faces").iterdir()))]
    assert [list(g["faces"][0]["probs"]) for g in got] == [list(CLASS_NAMES)] * 3
    for g, w in zip(got, want, strict=True):
        assert g["faces"][0]["label"] == w["faces"][0]["label"]
        assert max(abs(g["faces"][0]["probs"][k] - w["faces"][0]["probs"][k]) for k in CLASS_NAMES) < 1e-5


def random_bytes_checkpoint(ctx: Ctx) -> list[str]:
    (ctx.tmp / "model.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    return py("resemote_lib", "predict", ctx.tmp / "model.pt", ctx.face(), "--detector", "none")


def nan_weights(ctx: Ctx) -> list[str]:
    def poison(payload: dict) -> None:
        payload["state_dict"] = dict(payload["state_dict"])
        payload["state_dict"]["fc2.weight"] = payload["state_dict"]["fc2.weight"].clone()
        payload["state_dict"]["fc2.weight"][3, 5] = float("nan")

    return py("resemote_lib", "predict", ctx.checkpoint_variant("nan.pt", poison), ctx.face(), "--detector", "none")


def zero_temperature(ctx: Ctx) -> list[str]:
    path = ctx.checkpoint_variant("t0.pt", lambda p: p["meta"].update(temperature=0.0))
    return py("resemote_lib", "predict", path, ctx.face(), "--detector", "none", "--out", ctx.tmp / "p.jsonl")


def _no_results_file(ctx: Ctx, out: Outcome) -> None:
    assert not (ctx.tmp / "p.jsonl").exists()


# --- predict ---------------------------------------------------------------------------------------

def sixteen_bit_png(ctx: Ctx) -> list[str]:
    eight = ctx.face("g8.png")
    Image.fromarray(np.asarray(Image.open(eight)).astype(np.uint16) * 257).save(ctx.tmp / "g16.png")
    assert Image.open(ctx.tmp / "g16.png").mode == "I;16"
    return py("resemote_lib", "predict", ctx.shared.run / "best.pt", eight, ctx.tmp / "g16.png", "--detector", "none",
              "--out", ctx.tmp / "p.jsonl")


def _twins_agree(ctx: Ctx, out: Outcome) -> None:
    a, b = (json.loads(line)["faces"][0]["probs"] for line in (ctx.tmp / "p.jsonl").read_text().splitlines())
    assert a == b


def annotate_same_stems(ctx: Ctx) -> list[str]:
    for name in ("a/x.png", "b/x.jpg", "x.png", "x.jpg"):
        ctx.face(f"faces/{name}")
    return py("resemote_lib", "predict", ctx.shared.run / "best.pt", ctx.tmp / "faces", "--detector", "none",
              "--annotate", ctx.tmp / "ann")


def _four_annotated(ctx: Ctx, out: Outcome) -> None:
    names = sorted(str(p.relative_to(ctx.tmp / "ann")) for p in (ctx.tmp / "ann").rglob("*"))
    assert names == ["a", "a/x_annotated.jpg", "b", "b/x_annotated.jpg", "x_annotated-2.jpg", "x_annotated.jpg"]


def annotate_onto_existing_files(ctx: Ctx) -> list[str]:
    ctx.face("faces/a/x.png")
    (ctx.tmp / "ann" / "a").mkdir(parents=True)
    (ctx.tmp / "ann" / "a" / "x_annotated.jpg").write_bytes(b"yesterday's annotated picture")
    ctx.keep(ctx.tmp / "ann")
    return py("resemote_lib", "predict", ctx.shared.run / "best.pt", ctx.tmp / "faces", "--detector", "none",
              "--annotate", ctx.tmp / "ann", "--out", ctx.tmp / "p.jsonl")


def _clip(ctx: Ctx) -> Path:
    import cv2

    path = ctx.tmp / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    for img in make_faces(3, seed=1)[0]:
        writer.write(cv2.cvtColor(cv2.resize(img, (64, 64)), cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def video_annotate_into_a_new_folder(ctx: Ctx) -> list[str]:
    return py("resemote_lib", "predict", ctx.shared.run / "best.pt", _clip(ctx), "--detector", "none",
              "--annotate", ctx.tmp / "new" / "ann")


def _video_written(ctx: Ctx, out: Outcome) -> None:
    ann = ctx.tmp / "new" / "ann"
    assert (ann / "clip_annotated.mp4").stat().st_size > 1000
    assert len((ann / "clip_frames.csv").read_text().splitlines()) == 4  # header + 3 frames


def out_not_writable(ctx: Ctx) -> list[str]:
    ctx.face("faces/x.png")
    (ctx.tmp / "blocker").write_text("a file where --out needs a folder")
    return py("resemote_lib", "predict", ctx.shared.run / "best.pt", ctx.tmp / "faces", "--detector", "none",
              "--out", ctx.tmp / "blocker" / "out.jsonl", "--annotate", ctx.tmp / "ann")


def _before_any_work(ctx: Ctx, out: Outcome) -> None:
    assert out.stdout == "" and not (ctx.tmp / "ann").exists()
    assert (ctx.tmp / "blocker").read_text() == "a file where --out needs a folder"


def video_without_out(ctx: Ctx) -> list[str]:
    ctx.cwd = ctx.tmp / "work"
    ctx.cwd.mkdir()
    return py("resemote_lib", "predict", ctx.shared.run / "best.pt", _clip(ctx), "--detector", "none")


def _nothing_in_cwd(ctx: Ctx, out: Outcome) -> None:
    assert list(ctx.cwd.iterdir()) == []
    lines = out.stdout.splitlines()
    assert lines[0].startswith("source,frame,time_s,faces,box,label,p_angry") and len(lines) == 4


# --- data -----------------------------------------------------------------------------------------

def _fer_csv(ctx: Ctx, keep_usage: Callable[[str], bool] = lambda u: True, encoding: str = "utf-8",
             bom: bool = False) -> Path:
    root = L.write_fer2013_csv(ctx.tmp / "fer2013")
    path = root / "fer2013.csv"
    lines = [line for line in path.read_text().splitlines() if keep_usage(line.rsplit(",", 1)[-1])]
    text = "\n".join(lines) + "\n"
    if encoding == "latin-1":  # a note column would carry accents; here the header's 'Usage' does
        text = text.replace("Usage", "Us\u00e1ge", 1)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding))
    ctx.keep(path)
    return root


def csv_without_public_test_rows(ctx: Ctx) -> list[str]:
    root = _fer_csv(ctx, keep_usage=lambda u: u != "PublicTest")
    return _train(ctx, "run_name=empty", "dataset=fer2013", f"data_root={root}", *TINY)


def csv_with_bom(ctx: Ctx) -> list[str]:
    root = _fer_csv(ctx, bom=True)
    return _train(ctx, "run_name=bom", "dataset=fer2013", f"data_root={root}", "image_size=8", "max_train_items=8",
                  "batch_size=4")


def _bom_trained(ctx: Ctx, out: Outcome) -> None:
    assert (ctx.tmp / "results" / "bom" / "best.pt").is_file()
    shutil.rmtree(ctx.tmp / "results")


def csv_in_utf16(ctx: Ctx) -> list[str]:
    return _train(ctx, "run_name=u16", "dataset=fer2013", f"data_root={_fer_csv(ctx, encoding='utf-16')}", *TINY)


def csv_in_latin1(ctx: Ctx) -> list[str]:
    return _train(ctx, "run_name=l1", "dataset=fer2013", f"data_root={_fer_csv(ctx, encoding='latin-1')}", *TINY)


def several_datasets_under_the_root(ctx: Ctx) -> list[str]:
    L.write_fer2013_folders(ctx.tmp / "data" / "fer2013")
    L.write_fer2013_folders(ctx.tmp / "data" / "fer2013_copy")
    return _train(ctx, "run_name=two", "dataset=fer2013", f"data_root={ctx.tmp / 'data'}", *TINY)


def _shared_report(ctx: Ctx) -> dict:
    return json.loads((ctx.shared.run / "provenance.json").read_text())["data"]["train"]["report"]


def _hidden_skipped(ctx: Ctx, out: Outcome) -> None:
    assert _shared_report(ctx)["skipped"] == {"hidden": 5, "not_images": 1}  # 4 ._* + .DS_Store; notes.txt


def _webp_gif_read(ctx: Ctx, out: Outcome) -> None:
    prov = json.loads((ctx.shared.run / "provenance.json").read_text())["data"]["train"]
    assert prov["n"] == sum(L.FER_COUNTS["Training"]) + 3 and prov["n_bad_files"] == 0  # + .webp, .gif, 16-bit


def _lr_is_a_float(ctx: Ctx, out: Outcome) -> None:
    assert json.loads((ctx.shared.run / "config.json").read_text())["lr"] == 0.001


# --- params and pipeline -------------------------------------------------------------------------

def _yaml(ctx: Ctx, name: str, text: str) -> Path:
    (ctx.tmp / name).write_text(text)
    return ctx.tmp / name


def base_cycle(ctx: Ctx) -> list[str]:
    _yaml(ctx, "b.yaml", "base: a.yaml\nepochs: 2\n")
    return _train(ctx, params=str(_yaml(ctx, "a.yaml", "base: b.yaml\nepochs: 1\n")))


def base_list(ctx: Ctx) -> list[str]:
    _yaml(ctx, "a.yaml", f"base: {SMOKE}\n")
    return _train(ctx, params=str(_yaml(ctx, "c.yaml", "base: [a.yaml]\nepochs: 1\n")))


def pipeline_bad_params(ctx: Ctx) -> list[str]:
    bad = _yaml(ctx, "bad.yaml", f"base: {SMOKE}\nrun_name: bad\ncolor: blue\n")
    return py("resemote_lib", "pipeline", bad, "--results", ctx.tmp / "results", "--no-progress")


def hanging_notebook_cell(ctx: Ctx) -> Callable[[], int]:
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("seconds = 600  # how long the hung cell waits")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("import time\n\ntime.sleep(seconds)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, ctx.tmp / "hang.ipynb")
    ctx.monkeypatch.setattr(pipeline, "notebook_path", lambda name: ctx.tmp / f"{name}.ipynb")

    def run_notebook() -> int:
        pipeline.execute("hang", ctx.tmp / "out" / "hang.ipynb", {}, progress=False, timeout=3)
        return 0

    return run_notebook


def _executed_copy_kept(ctx: Ctx, out: Outcome) -> None:
    assert (ctx.tmp / "out" / "hang.ipynb").is_file()


# --- issue 24: train, evaluate, pipeline ----------------------------------------------------------

def refused_continuation(ctx: Ctx) -> list[str]:
    """epochs=5 on a finished 1-epoch run: refused, and the run's files untouched (provenance
    said "running" with the refused config before)."""
    run = ctx.shared.run
    ctx.keep(run / "provenance.json", run / "config.json", run / "history.csv", run / "best.pt")
    return [*ctx.shared.argv, "epochs=5"]


def evaluate_out_over_a_users_files(ctx: Ctx) -> list[str]:
    (ctx.tmp / "mine").mkdir()
    (ctx.tmp / "mine" / "metrics.json").write_text('{"accuracy": 0.99, "note": "my own evaluation"}')
    (ctx.tmp / "mine" / "predictions.csv").write_text("id,label\n")
    ctx.keep(ctx.tmp / "mine")
    return py("resemote_lib", "evaluate", ctx.shared.run / "best.pt", "--dataset", "fer2013", "--data-root",
              ctx.shared.data, "--out", ctx.tmp / "mine")


def results_dir_with_a_tilde(ctx: Ctx) -> list[str]:
    ctx.env = {"HOME": str(ctx.tmp / "home")}
    ctx.cwd = ctx.tmp / "work"
    ctx.cwd.mkdir()
    return py("resemote_lib", "train", SMOKE, "results_dir=~/res", "run_name=tilde", *TINY)


def _under_home_not_a_literal_tilde(ctx: Ctx, out: Outcome) -> None:
    assert (ctx.tmp / "home" / "res" / "tilde" / "config.json").is_file()
    assert list(ctx.cwd.iterdir()) == []  # no ./~ folder
    config = json.loads((ctx.tmp / "home" / "res" / "tilde" / "config.json").read_text())
    assert config["results_dir"] == str(ctx.tmp / "home" / "res")  # stored absolute


def relative_results_dir(ctx: Ctx) -> list[str]:
    ctx.cwd = ctx.tmp / "work"
    ctx.cwd.mkdir()
    return py("resemote_lib", "train", SMOKE, "results_dir=rel", "run_name=relative", *TINY)


def _whole_run_in_the_working_folder(ctx: Ctx, out: Outcome) -> None:
    run = ctx.tmp / "work" / "rel" / "relative"
    assert {"config.json", "best.pt", "history.csv", "provenance.json"} <= {p.name for p in run.iterdir()}
    assert json.loads((run / "config.json").read_text())["results_dir"] == str(ctx.tmp / "work" / "rel")


def relative_paths_in_a_params_file(ctx: Ctx) -> list[str]:
    """A params file elsewhere naming relative folders: README says they are read against the
    working folder (where the user typed the command), not the file's folder."""
    ctx.cwd = ctx.tmp / "work"
    ctx.cwd.mkdir()
    mine = ctx.tmp / "elsewhere"
    mine.mkdir()
    (mine / "mine.yaml").write_text(f"base: {SMOKE}\nresults_dir: rel\ndata_root: faces\nrun_name: from_file\n")
    return py("resemote_lib", "train", mine / "mine.yaml", *TINY)


def _params_file_paths_against_the_working_folder(ctx: Ctx, out: Outcome) -> None:
    run = ctx.tmp / "work" / "rel" / "from_file"
    config = json.loads((run / "config.json").read_text())
    assert (config["results_dir"], config["data_root"]) == (str(ctx.tmp / "work" / "rel"), str(ctx.tmp / "work" / "faces"))
    assert (ctx.tmp / "work" / "faces").is_dir() and sorted(p.name for p in (ctx.tmp / "elsewhere").iterdir()) == ["mine.yaml"]


def pipeline_set_results_dir(ctx: Ctx) -> list[str]:
    ctx.cwd = ctx.tmp / "work"
    ctx.cwd.mkdir()
    return py("resemote_lib", "pipeline", SMOKE, "--set", "results_dir=out", "--set", "run_name=piped",
              "--set", "max_train_items=32", "--set", "image_size=32", "--set", "batch_size=8", "--no-progress")


def _table3_beside_the_run(ctx: Ctx, out: Outcome) -> None:
    out_dir = ctx.tmp / "work" / "out"
    assert (out_dir / "piped" / "metrics.json").is_file()
    table = (out_dir / "paper" / "table3.csv").read_text()
    assert "piped" in table


def repeated_seeds(ctx: Ctx) -> list[str]:
    params = _yaml(ctx, "abl.yaml", f"base: {SMOKE}\nrun_name: abl\nnotebooks: [05_ablation]\nseeds: [0, 0, 0]\n")
    return py("resemote_lib", "pipeline", params, "--results", ctx.tmp / "results", "--no-progress")


def run_config_not_json(ctx: Ctx) -> list[str]:
    run = ctx.tmp / "results" / "broken"
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"run_name": "broken", ')
    return py("resemote_lib", "evaluate", run)
# --- issue 24: data and params ------------------------------------------------------------------

def _evaluate(ctx: Ctx, dataset: str, root: Path, *extra: str) -> list[str]:
    return py("resemote_lib", "evaluate", ctx.shared.run / "best.pt", "--dataset", dataset, "--data-root", root,
              "--out", ctx.tmp / "eval", *extra)


def synthetic_onto_a_real_csv(ctx: Ctx) -> list[str]:
    root = L.write_fer2013_csv(ctx.tmp / "fer2013")
    ctx.keep(root)
    return _train(ctx, "run_name=syn", "dataset=synthetic", f"data_root={root}", *TINY)


def synthetic_onto_the_kaggle_folders(ctx: Ctx) -> list[str]:
    root = L.write_fer2013_folders(ctx.tmp / "fer2013")
    ctx.keep(root)
    return _evaluate(ctx, "synthetic", root)


def _no_csv_added(ctx: Ctx, out: Outcome) -> None:
    assert not (ctx.tmp / "fer2013" / "fer2013.csv").exists() and not (ctx.tmp / "fer2013" / "synthetic.json").exists()


def both_fer2013_layouts(ctx: Ctx) -> list[str]:
    root = L.write_fer2013_folders(ctx.tmp / "fer2013")
    L.write_fer2013_csv(root)
    return _train(ctx, "run_name=both", "dataset=fer2013", f"data_root={root}", *TINY)


def missing_class_folder(ctx: Ctx) -> list[str]:
    root = L.write_fer2013_folders(ctx.tmp / "fer2013")
    shutil.rmtree(root / "test" / "disgust")
    return _evaluate(ctx, "fer2013", root)


def _missing_class_reported(ctx: Ctx, out: Outcome) -> None:
    report = json.loads((ctx.tmp / "eval" / "provenance.json").read_text())["data"]["test"]["report"]
    assert report["missing_classes"] == ["disgust"]


def duplicate_yaml_key(ctx: Ctx) -> list[str]:
    return _train(ctx, params=str(_yaml(ctx, "dup.yaml", f"base: {SMOKE}\nepochs: 2\nseed: 1\nepochs: 3\n")))


# A few hundred bytes: nine lists of nine aliases to the previous one, 9**9 strings once expanded.
ALIAS_BOMB = "\n".join(["lr:", '  - &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'] + [
    f"  - &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]" for p, n in zip("abcdefgh", "bcdefghi", strict=True)])


def yaml_alias_bomb(ctx: Ctx) -> list[str]:
    return _train(ctx, params=str(_yaml(ctx, "bomb.yaml", ALIAS_BOMB + "\n")))


def two_megabyte_value(ctx: Ctx) -> list[str]:
    return _train(ctx, params=str(_yaml(ctx, "big.yaml", f"base: {SMOKE}\nprotocol: {'x' * 2_000_000}\n")))


def _short_error(ctx: Ctx, out: Outcome) -> None:
    assert len(out.stderr) < 1000, len(out.stderr)


def corrupt_decode_cache_entry(ctx: Ctx) -> list[str]:
    """A cache entry whose item indices point past the split (IndexError before issue 24)."""
    from resemote_lib.data import open_dataset

    root = L.write_fer2013_folders(ctx.tmp / "fer2013")
    cache = paths.CACHE / "datasets"  # the subprocess's cache too (RESEMOTE_CACHE)
    before = set(cache.glob("*.pt"))
    open_dataset("fer2013", root, "test", image_size=32)
    (entry,) = set(cache.glob("*.pt")) - before
    payload = torch.load(entry, weights_only=True)
    payload["keep"], payload["images"] = torch.tensor([0, 1, 999]), payload["images"][:3]
    torch.save(payload, entry)
    return _evaluate(ctx, "fer2013", root)


def zip_in_the_data_root(ctx: Ctx) -> list[str]:
    src = L.write_fer2013_folders(ctx.tmp / "src")
    (ctx.tmp / "fer2013").mkdir()
    shutil.make_archive(str(ctx.tmp / "fer2013" / "fer2013"), "zip", src)
    ctx.keep(ctx.tmp / "fer2013" / "fer2013.zip")
    return _evaluate(ctx, "fer2013", ctx.tmp / "fer2013")


def _unpacked_beside_the_zip(ctx: Ctx, out: Outcome) -> None:
    assert sorted(p.name for p in (ctx.tmp / "fer2013").iterdir()) == ["fer2013.zip", "test", "train"]
    assert (ctx.tmp / "eval" / "metrics.json").is_file()


def labelled_folder(ctx: Ctx) -> list[str]:
    faces, labels = make_faces(12, seed=3)
    names = {0: "Anger", 1: "disgusted", 2: "afraid", 3: "joy", 4: "calm", 5: "Sadness", 6: "surprised"}
    for i, (img, y) in enumerate(zip(faces, labels, strict=True)):
        (ctx.tmp / "faces" / names[int(y)]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(ctx.tmp / "faces" / names[int(y)] / f"{i}.png")
    (ctx.tmp / "faces" / "contempt").mkdir()
    for i in range(3):
        Image.fromarray(faces[i]).save(ctx.tmp / "faces" / "contempt" / f"c{i}.png")
    return _evaluate(ctx, "folder", ctx.tmp / "faces")


def _folder_evaluated(ctx: Ctx, out: Outcome) -> None:
    metrics = json.loads((ctx.tmp / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 12 and metrics["test_set"]["layout"] == "folder-classes"
    assert len((ctx.tmp / "eval" / "predictions.csv").read_text().splitlines()) == 13


def predict_args(*extra: str) -> Callable[[Ctx], list[str]]:
    """argparse refuses these before the checkpoint is even looked at."""
    return lambda ctx: py("resemote_lib", "predict", ctx.tmp / "best.pt", ctx.face(), *extra)


# --- issue 24.13: kaggle --------------------------------------------------------------------------

def kaggle_pull_with_record(text: str) -> Callable[[Ctx], list[str]]:
    """``kaggle pull r1`` where ``results/r1/kaggle_push.json`` holds ``text``."""
    def setup(ctx: Ctx) -> list[str]:
        record = ctx.tmp / "results" / "r1" / "kaggle_push.json"
        record.parent.mkdir(parents=True)
        record.write_text(text)
        ctx.keep(record)
        return py("resemote_lib", "kaggle", "pull", "r1", "--results", ctx.tmp / "results", "--no-progress")
    return setup


def kaggle_dry_run_into_a_file(ctx: Ctx) -> list[str]:
    (ctx.tmp / "kernel.txt").write_text("my notes")
    ctx.keep(ctx.tmp / "kernel.txt")
    return py("resemote_lib", "kaggle", "push", SMOKE, "--dry-run", ctx.tmp / "kernel.txt")
# --- issue 24: predict/export/checkpoint ------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A small untrained checkpoint of ours (the cnn variant at 32 px, 6 MB): for the rows that
    need a model, not a trained one."""
    from resemote_lib.model import build_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    checkpoint.save_checkpoint(path, build_model("cnn"), image_size=32, config={"model": "cnn", "image_size": 32})
    return path


def _tiny(ctx: Ctx) -> Path:
    return ctx.request.getfixturevalue("tiny_checkpoint")


def _tiny_variant(ctx: Ctx, name: str, edit: Callable[[dict], None]) -> Path:
    payload = checkpoint.read_checkpoint(_tiny(ctx))
    edit(payload)
    torch.save(payload, ctx.tmp / name)
    return ctx.tmp / name


def _predict_tiny(ctx: Ctx, *args: object) -> list[str]:
    return py("resemote_lib", "predict", _tiny(ctx), *args, "--detector", "none", "--device", "cpu")


def out_is_the_input_video(ctx: Ctx) -> list[str]:
    clip = _clip(ctx)
    ctx.keep(clip)
    return _predict_tiny(ctx, clip, "--out", clip)


def every_input_fails(ctx: Ctx) -> list[str]:
    (ctx.tmp / "preds.jsonl").write_text('{"source": "yesterday.png", "error": null, "faces": []}\n')
    ctx.keep(ctx.tmp / "preds.jsonl")
    (ctx.tmp / "broken.png").write_bytes(b"not a png at all")
    (ctx.tmp / "empty.jpg").write_bytes(b"")  # not missing: a missing input is refused before any work (issue 31.11)
    return _predict_tiny(ctx, ctx.tmp / "broken.png", ctx.tmp / "empty.jpg", "--out", ctx.tmp / "preds.jsonl")


def _no_partial_left(ctx: Ctx, out: Outcome) -> None:
    assert not [p.name for p in ctx.tmp.iterdir() if p.name.startswith(".")]


def frames_table_beside_out_exists(ctx: Ctx) -> list[str]:
    clip = _clip(ctx)
    (ctx.tmp / "clip_frames.csv").write_text("my own notes about clip.mp4\n")
    ctx.keep(ctx.tmp / "clip_frames.csv")
    return _predict_tiny(ctx, clip, "--out", ctx.tmp / "preds.jsonl")


def _nothing_predicted(ctx: Ctx, out: Outcome) -> None:
    assert out.stdout == "" and not (ctx.tmp / "preds.jsonl").exists()


def annotate_through_a_dangling_link(ctx: Ctx) -> list[str]:
    ctx.face("faces/x.png")
    (ctx.tmp / "outside").mkdir()
    (ctx.tmp / "ann").mkdir()
    (ctx.tmp / "ann" / "x_annotated.jpg").symlink_to(ctx.tmp / "outside" / "victim.jpg")
    return _predict_tiny(ctx, ctx.tmp / "faces", "--annotate", ctx.tmp / "ann")


def _outside_untouched(ctx: Ctx, out: Outcome) -> None:
    assert list((ctx.tmp / "outside").iterdir()) == []


def out_dash_is_stdout(ctx: Ctx) -> list[str]:
    ctx.cwd = ctx.tmp / "work"
    ctx.cwd.mkdir()
    ctx.face("faces/a.png")
    ctx.face("faces/b.png", seed=1)
    return _predict_tiny(ctx, ctx.tmp / "faces", "--out", "-")


def _json_lines_on_stdout(ctx: Ctx, out: Outcome) -> None:
    assert list(ctx.cwd.iterdir()) == []
    results = [json.loads(line) for line in out.stdout.splitlines()]
    assert [Path(r["source"]).name for r in results] == ["a.png", "b.png"] and all(r["faces"] for r in results)


def export_onto_a_foreign_onnx(ctx: Ctx) -> list[str]:
    import warnings

    yunet = ctx.tmp / "face_detection_yunet.onnx"  # another network's ONNX model, as a user keeps one
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is deprecated: fine for a stand-in
        torch.onnx.export(torch.nn.Linear(4, 2), (torch.zeros(1, 4),), str(yunet), input_names=["input"],
                          dynamo=False)
    ctx.keep(yunet)
    return py("resemote_lib", "export", _tiny(ctx), yunet)


def export_onto_a_text_file(ctx: Ctx) -> list[str]:
    (ctx.tmp / "model.pt").write_text("my notes on the model\n")
    ctx.keep(ctx.tmp / "model.pt")
    return py("resemote_lib", "export", _tiny(ctx), ctx.tmp / "model.pt")


def export_after_a_killed_export(ctx: Ctx) -> list[str]:
    """An earlier export of ours is replaced; the temporary file a SIGKILLed export left is removed."""
    from resemote_lib.predict.export import export

    export(_tiny(ctx), ctx.tmp / "model.onnx")
    dead = subprocess.Popen(["true"])
    dead.wait()
    (ctx.tmp / f".model.onnx.{dead.pid}.k1ll3d_x.tmp.onnx").write_bytes(b"half an export")
    return py("resemote_lib", "export", _tiny(ctx), ctx.tmp / "model.onnx")


def _one_export_no_temporary(ctx: Ctx, out: Outcome) -> None:
    from resemote_lib.predict.export import is_our_export

    assert sorted(p.name for p in ctx.tmp.iterdir()) == ["model.onnx"] and is_our_export(ctx.tmp / "model.onnx")


def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that says it is ``width`` x ``height`` (PIL checks the size before decoding)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) +
                     chunk(b"IEND", b""))
    return path


def decompression_bomb(ctx: Ctx) -> list[str]:
    return _predict_tiny(ctx, _png_header(ctx.tmp / "bomb.png", 20000, 20000), ctx.face(), "--out", ctx.tmp / "p.jsonl")


def _bomb_reported_face_predicted(ctx: Ctx, out: Outcome) -> None:
    assert re.search(r"bomb\.png: not a readable image: DecompressionBombError", out.stderr)
    bomb, face = (json.loads(line) for line in (ctx.tmp / "p.jsonl").read_text().splitlines())
    assert bomb["error"] and face["faces"]


def fifo_named_png(ctx: Ctx) -> list[str]:
    import os

    os.mkfifo(ctx.tmp / "x.png")  # nothing will ever write to it: opening it to read blocks for ever
    ctx.face("faces/a.png")
    os.mkfifo(ctx.tmp / "faces" / "y.png")
    return _predict_tiny(ctx, ctx.tmp / "x.png", ctx.tmp / "faces", "--out", ctx.tmp / "p.jsonl")


def _fifos_reported(ctx: Ctx, out: Outcome) -> None:
    assert re.search(r"x\.png: not a regular file but a FIFO", out.stderr)
    assert re.search(r"y\.png: not a regular file but a FIFO", out.stderr)
    assert len((ctx.tmp / "p.jsonl").read_text().splitlines()) == 3


def sigterm_during_predict(ctx: Ctx) -> list[str]:
    """SIGTERM (``kill PID``) lands after the 12th of 40 results is written."""
    for i in range(40):
        ctx.face(f"faces/f{i:02d}.png", seed=i)
    script = ("import os, signal, sys\n"
              "from resemote_lib import predict\n"
              "from resemote_lib.commands import cli\n"
              "write, done = predict.ResultWriter.write, []\n"
              "def write_then_sigterm(self, r):\n"
              "    write(self, r)\n"
              "    done.append(r)\n"
              "    if len(done) == 12:\n"
              "        os.kill(os.getpid(), signal.SIGTERM)\n"
              "predict.ResultWriter.write = write_then_sigterm\n"
              "sys.exit(cli.main(sys.argv[1:]))\n")
    return [sys.executable, "-c", script, "predict", str(_tiny(ctx)), str(ctx.tmp / "faces"), "--detector", "none",
            "--device", "cpu", "--out", str(ctx.tmp / "preds.jsonl")]


def _twelve_kept(ctx: Ctx, out: Outcome) -> None:
    assert len((ctx.tmp / "preds.jsonl").read_text().splitlines()) == 12
    assert not [p.name for p in ctx.tmp.iterdir() if p.name.startswith(".")]


def _drop_class_names(payload: dict) -> None:
    del payload["class_names"]


def _repeat_a_class(payload: dict) -> None:
    payload["class_names"] = ["angry", "disgust", "fear", "happy", "happy", "sad", "surprise"]


def _unknown_model(payload: dict) -> None:
    payload["meta"]["config"]["model"] = "resemotenet_v2"


def _huge_image_size(payload: dict) -> None:
    payload["image_size"] = 200000


def checkpoint_row(name: str, edit: Callable[[dict], None]) -> Callable[[Ctx], list[str]]:
    """``predict`` with a copy of the tiny checkpoint edited by ``edit``."""
    return lambda ctx: py("resemote_lib", "predict", _tiny_variant(ctx, name, edit), ctx.face(), "--detector", "none",
                          "--out", ctx.tmp / "p.jsonl")



# --- issue 31 setups: data, folder datasets, evaluate, archives, locks (helper A) ---

def _evaluate_tiny(ctx: Ctx, dataset: str, root: Path, *extra: object) -> list[str]:
    return py("resemote_lib", "evaluate", _tiny(ctx), "--dataset", dataset, "--data-root", root, "--out",
              ctx.tmp / "eval", "--device", "cpu", *extra)


def _faces_folder(ctx: Ctx, n: int = 12) -> Path:
    faces, labels = make_faces(n, seed=3)
    for i, (img, y) in enumerate(zip(faces, labels, strict=True)):
        folder = ctx.tmp / "faces" / ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"][int(y)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i}.png")
    return ctx.tmp / "faces"


def _nothing_created(*names: str) -> Callable[[Ctx, Outcome], None]:
    """A refused command leaves none of these below the row's folder (``eval``: its --out)."""
    def check(ctx: Ctx, out: Outcome) -> None:
        assert not [name for name in names if (ctx.tmp / name).exists()], sorted(p.name for p in ctx.tmp.iterdir())
    return check


def crop_faces_on_photos_without_faces(ctx: Ctx) -> list[str]:
    for name in ("happy", "sad"):
        (ctx.tmp / "photos" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (160, 120), (90 + 40 * i, 120, 150)).save(ctx.tmp / "photos" / name / f"wall{i}.jpg")
    return _evaluate_tiny(ctx, "folder", ctx.tmp / "photos", "--crop-faces")


def folder_split_val(ctx: Ctx) -> list[str]:
    return _evaluate_tiny(ctx, "folder", _faces_folder(ctx), "--split", "val")


def all_class_folders_empty(ctx: Ctx) -> list[str]:
    for name in ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"):
        (ctx.tmp / "faces" / name).mkdir(parents=True)
    return _evaluate_tiny(ctx, "folder", ctx.tmp / "faces")


def out_inside_a_class_folder(ctx: Ctx) -> list[str]:
    root = _faces_folder(ctx)
    ctx.keep(root)
    return [*_evaluate_tiny(ctx, "folder", root)[:-4], "--out", root / "happy", "--device", "cpu"]


def out_is_the_data_root(ctx: Ctx) -> list[str]:
    root = _faces_folder(ctx)
    ctx.keep(root)
    return [*_evaluate_tiny(ctx, "folder", root)[:-4], "--out", root, "--device", "cpu"]


def _dataset_untouched(ctx: Ctx, out: Outcome) -> None:
    assert not [p for p in (ctx.tmp / "faces").rglob("*") if p.is_file() and p.suffix != ".png"]
    assert not list((ctx.tmp / "faces").rglob(".lock"))


def _folder_evaluated_no_lock(ctx: Ctx, out: Outcome) -> None:
    assert (ctx.tmp / "eval" / "metrics.json").is_file() and not (ctx.tmp / "eval" / ".lock").exists()
    metrics = json.loads((ctx.tmp / "eval" / "metrics.json").read_text())
    assert metrics["probabilities"]["same_as_predict"] and metrics["probabilities"]["temperature"] == 1.0
    assert metrics["copies_only"]["n"] == 0 and metrics["copies_only"]["accuracy"] is None


def empty_data_root(ctx: Ctx) -> list[str]:
    (ctx.tmp / "faces").mkdir()
    return _evaluate_tiny(ctx, "folder", ctx.tmp / "faces")


def data_root_is_a_file(ctx: Ctx) -> list[str]:
    (ctx.tmp / "faces.txt").write_text("not a folder")
    return _evaluate_tiny(ctx, "folder", ctx.tmp / "faces.txt")


def train_on_a_folder_of_class_folders(ctx: Ctx) -> list[str]:
    return _train(ctx, "run_name=folder", "dataset=folder", f"data_root={_faces_folder(ctx)}", *TINY)


def predict_a_missing_file(ctx: Ctx) -> list[str]:
    return py("resemote_lib", "predict", _tiny(ctx), ctx.tmp / "doesnotexist.jpg", "--detector", "none",
              "--device", "cpu")


def _zip_in(ctx: Ctx, files: dict[str, bytes]) -> Path:
    import zipfile

    (ctx.tmp / "fer2013").mkdir()
    with zipfile.ZipFile(ctx.tmp / "fer2013" / "fer2013.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    ctx.keep(ctx.tmp / "fer2013" / "fer2013.zip")
    return ctx.tmp / "fer2013"


def zip_bomb_in_the_data_root(ctx: Ctx) -> list[str]:
    return _evaluate_tiny(ctx, "fer2013", _zip_in(ctx, {"fer2013.csv": b"emotion,pixels,Usage\n0,"
                                                         + b"1" * 300_000_000 + b",Training\n"}))


def zip_of_junk_in_the_data_root(ctx: Ctx) -> list[str]:
    return _evaluate_tiny(ctx, "fer2013", _zip_in(ctx, {f"junk/{i:05d}.bin": b"" for i in range(30_000)}))


def _only_the_zip(ctx: Ctx, out: Outcome) -> None:
    assert [p.name for p in (ctx.tmp / "fer2013").iterdir()] == ["fer2013.zip"] and not (ctx.tmp / "eval").exists()


def csv_with_a_huge_field(ctx: Ctx) -> list[str]:
    (ctx.tmp / "fer2013").mkdir()
    (ctx.tmp / "fer2013" / "fer2013.csv").write_text("emotion,pixels,Usage\n0," + "7" * 300_000 + ",PrivateTest\n")
    return _evaluate_tiny(ctx, "fer2013", ctx.tmp / "fer2013")



# --- issue 31 setups: calibration, predict, export, device, CLI, params (helper B) ---

def step_graph_off_in_yaml(ctx: Ctx) -> list[str]:
    """``step_graph: off`` (YAML 1.1 reads False) is accepted: the one error is the key after it."""
    return _train(ctx, params=str(_yaml(ctx, "sg.yaml", f"base: {SMOKE}\nstep_graph: off\ncolour: blue\n")))


def predict_device_banana(ctx: Ctx) -> list[str]:
    return py("resemote_lib", "predict", _tiny(ctx), ctx.face(), "--detector", "none", "--device", "banana",
              "--annotate", ctx.tmp / "ann")


def _no_annotate_folder(ctx: Ctx, out: Outcome) -> None:
    assert not (ctx.tmp / "ann").exists()


def evaluate_device_banana(ctx: Ctx) -> list[str]:
    L.write_fer2013_folders(ctx.tmp / "fer2013")
    return py("resemote_lib", "evaluate", _tiny(ctx), "--dataset", "fer2013", "--data-root", ctx.tmp / "fer2013",
              "--out", ctx.tmp / "eval", "--device", "banana")


def _no_eval_folder(ctx: Ctx, out: Outcome) -> None:
    assert not (ctx.tmp / "eval").exists()


def _calibrated_tiny(ctx: Ctx, temperature: object) -> Path:
    """A link to the tiny checkpoint with a calibration file beside it: ``temperature``, its hash right."""
    from resemote_lib.calibration import calibration_path
    from resemote_lib.files import sha256_of

    path = ctx.tmp / "tiny.pt"
    os.link(_tiny(ctx), path)
    calibration_path(path).write_text(json.dumps({"checkpoint_sha256": sha256_of(path), "temperature": temperature}))
    return path


def predict_with_temperature(temperature: object) -> Callable[[Ctx], list[str]]:
    return lambda ctx: py("resemote_lib", "predict", _calibrated_tiny(ctx, temperature), ctx.face(), "--detector",
                          "none", "--device", "cpu", "--out", "-")


def _nothing_printed(ctx: Ctx, out: Outcome) -> None:
    assert out.stdout == ""


def calibration_folder(ctx: Ctx) -> list[str]:
    path = _calibrated_tiny(ctx, 1.0)
    (ctx.tmp / "tiny.calibration.json").unlink()
    (ctx.tmp / "tiny.calibration.json").mkdir()
    return py("resemote_lib", "predict", path, ctx.face(), "--detector", "none", "--device", "cpu", "--out", "-")


def export_with_temperature_1e_300(ctx: Ctx) -> list[str]:
    return py("resemote_lib", "export", _calibrated_tiny(ctx, 1e-300), ctx.tmp / "m.onnx")


def _no_export(ctx: Ctx, out: Outcome) -> None:
    assert sorted(p.name for p in ctx.tmp.iterdir()) == ["tiny.calibration.json", "tiny.pt"]


def folder_with_a_video(ctx: Ctx) -> list[str]:
    """A folder of media as a phone export holds it: a photo, and a clip one folder down."""
    ctx.face("media/a.png")
    (ctx.tmp / "media" / "sub").mkdir()
    _clip(ctx).rename(ctx.tmp / "media" / "sub" / "clip.mp4")
    return _predict_tiny(ctx, ctx.tmp / "media", "--out", ctx.tmp / "out" / "p.jsonl")


def _folder_video_predicted(ctx: Ctx, out: Outcome) -> None:
    assert re.search(r"sub/clip\.mp4: 3 frames -> .*clip_frames\.csv", out.stdout)
    assert len((ctx.tmp / "out" / "p.jsonl").read_text().splitlines()) == 1
    assert len((ctx.tmp / "out" / "clip_frames.csv").read_text().splitlines()) == 4  # header + 3 frames



CASES = [
    # runs, locks, saves
    Case("two trainings, same run_name", lock_held_by_another_training, 3,
         r"^error: .*busy is in use by pid \d+ on .*training since", _lock_names_holder),
    Case("SIGKILL during a save left .tmp: resume removes it", stale_temp_file_from_a_killed_save, 0,
         r"removing 1 temporary file\(s\) .*left by an interrupted save: \.last\.pt\.k1ll3d\.tmp", _temp_file_removed),
    Case("real SIGKILL during a save, then resume", real_sigkill_during_a_save, 0,
         r"removing 1 temporary file\(s\)", _no_temp_left, slow=True),
    Case("Ctrl-C during a save (in process)", ctrl_c_inside_a_save, 130,
         r"^interrupted: interrupted while saving .*last\.pt; the previous last\.pt is intact", _only_last_pt),
    Case("read-only run directory (train)", read_only_run_directory, 2,
         r"^error: (\[Errno (30|13)\] )?cannot write .*ro/\.lock: (Read-only file system|Permission denied); "
         r"is .* read-only\?"),
    Case("read-only run directory (evaluate)", read_only_run_directory_evaluate, 2,
         r"^error: (\[Errno (30|13)\] )?cannot write .*shared/\.lock: (Read-only file system|Permission denied)"),
    Case("run_name=../x", lambda c: _train(c, "run_name=../x"), 2,
         r"^error: .*smoke\.yaml: run_name: '\.\./x' is not a plain folder name", _nothing_written),
    Case("run_name absolute", lambda c: _train(c, f"run_name={c.tmp / 'abs'}"), 2,
         r"^error: .*run_name: '/.*abs' is not a plain folder name", _nothing_written),
    Case("run_name=paper", lambda c: _train(c, "run_name=paper"), 2,
         r"^error: .*run_name: 'paper' is reserved for results/paper/", _nothing_written),
    # export and checkpoints
    Case("export X X", export_onto_its_input, 2,
         r"^error: export output .*best\.pt is the input checkpoint .*best\.pt: exporting would replace"),
    Case("export onto last.pt", export_onto_another_checkpoint, 2,
         r"^error: export output .*last\.pt already exists and is a PyTorch checkpoint; refusing .*--force"),
    Case("last.pt used as a model", last_pt_as_a_model, 0, None, _same_as_best),
    Case("random-bytes checkpoint", random_bytes_checkpoint, 2,
         r"^error: .*model\.pt is not a PyTorch checkpoint at all: it starts with bytes"),
    Case("NaN weights", nan_weights, 2, r"^error: .*nan\.pt: tensor 'fc2\.weight' holds 1 NaN/inf value\(s\)"),
    Case("temperature 0", zero_temperature, 2,
         r"^error: .*t0\.pt: the stored calibration: temperature must be a number in \[0\.05, 20\], got 0\.0",
         _no_results_file),
    # predict
    Case("16-bit PNG", sixteen_bit_png, 0, None, _twins_agree),
    Case("--annotate: same-stem collisions", annotate_same_stems, 0, None, _four_annotated),
    Case("--annotate: existing file", annotate_onto_existing_files, 2,
         r"^error: --annotate .*ann: 1 of the files .* already exist, e\.g\. .*a/x_annotated\.jpg; nothing was "
         r"replaced", lambda c, o: None if not (c.tmp / "p.jsonl").exists() else pytest.fail("worked anyway")),
    Case("video --annotate DIR not existing", video_annotate_into_a_new_folder, 0, None, _video_written),
    Case("--out not writable (before any work)", out_not_writable, 2,
         r"^error: --out .*blocker/out\.jsonl: cannot write there: .*blocker is a file, not a folder.*Nothing was "
         r"computed", _before_any_work),
    Case("video without --out: nothing in cwd", video_without_out, 0, None, _nothing_in_cwd),
    Case("--every 0", predict_args("--every", "0"), 2, r"argument --every: must be >= 1, got 0"),
    Case("--smoothing 5", predict_args("--smoothing", "5"), 2, r"argument --smoothing: must be in \[0, 1\), got 5"),
    # data
    Case("split with no items (CSV without PublicTest)", csv_without_public_test_rows, 2,
         r"^error: the validation split of fer2013 \(.*fer2013\.csv\) has no images", _nothing_written),
    Case("CSV with BOM (Excel 'CSV UTF-8')", csv_with_bom, 0, None, _bom_trained, slow=True),
    Case("UTF-16 CSV", csv_in_utf16, 2,
         r"^error: .*fer2013\.csv: the file is UTF-16 text .*save it as UTF-8", _nothing_written),
    Case("latin-1 CSV", csv_in_latin1, 2,
         r"^error: .*fer2013\.csv, line 1: byte b'\\xe1' at column 18 is not UTF-8; the file is probably latin-1",
         _nothing_written),
    Case("data root with several datasets", several_datasets_under_the_root, 2,
         r"^error: fer2013: .*data holds 2 datasets one level below it: .*fer2013 .*fer2013_copy .*pass the one",
         _nothing_written),
    Case("AppleDouble ._* files", lambda c: SHARED, 0, None, _hidden_skipped),
    Case(".webp/.gif in Kaggle folders", lambda c: SHARED, 0,
         r"UserWarning: .*train: skipped 1 file\(s\) that are not images .*notes\.txt", _webp_gif_read),
    # params and pipeline
    Case("lr=1e-3 accepted", lambda c: SHARED, 0, None, _lr_is_a_float),
    Case("negative lr", lambda c: _train(c, "lr=-1"), 2, r"^error: .*lr must be > 0, got -1", _nothing_written),
    Case("NaN lr", lambda c: _train(c, "lr=.nan"), 2, r"^error: .*lr must be a finite number, got nan"),
    Case("negative weight decay", lambda c: _train(c, "weight_decay=-0.1"), 2, r"weight_decay must be >= 0, got -0\.1"),
    Case("image_size 7", lambda c: _train(c, "image_size=7"), 2, r"^error: .*image_size must be in \[8, .*\], got 7"),
    Case("seed -1", lambda c: _train(c, "seed=-1"), 2, r"^error: .*seed must be in \[0, .*\], got -1"),
    Case("negative synthetic sizes", lambda c: _train(c, "synthetic_n_val=-5"), 2,
         r"^error: .*synthetic_n_val must be >= \d+, got -5"),
    Case("bad params via train", lambda c: _train(c, "colour=blue"), 2, r"^error: .*unknown config key 'colour'"),
    Case("base: cycle", base_cycle, 2, r"^error: .*a\.yaml: base: files form a cycle \(a\.yaml -> b\.yaml -> a\.yaml\)"),
    Case("base: [a.yaml]", base_list, 2, r"^error: .*c\.yaml: base must be one file name .*got \['a\.yaml'\]"),
    Case("pipeline bad params", pipeline_bad_params, 2, r"^error: .*bad\.yaml: unknown config key 'color'",
         lambda c, o: None if not (c.tmp / "results").exists() else pytest.fail("a notebook ran")),
    Case("a notebook cell that hangs (in process)", hanging_notebook_cell, 1,
         r"^error: hang: cell 2 \(import time\) ran longer than its 3 s timeout and was stopped", _executed_copy_kept),
    # issue 24: train, evaluate, pipeline
    Case("refused train (epochs=5 on a finished run) writes nothing", refused_continuation, 2,
         r"^error: .*shared holds a finished run with a different config \{'epochs': \(1, 5\)\}"),
    Case("evaluate --out over a user's metrics.json", evaluate_out_over_a_users_files, 2,
         r"^error: .*mine already holds metrics\.json, predictions\.csv, not from an evaluation of this checkpoint.*"
         r"--force"),
    Case("results_dir=~/res", results_dir_with_a_tilde, 0, None, _under_home_not_a_literal_tilde),
    Case("relative results_dir from another folder", relative_results_dir, 0, None, _whole_run_in_the_working_folder),
    Case("relative results_dir and data_root in a params file", relative_paths_in_a_params_file, 0, None,
         _params_file_paths_against_the_working_folder),
    Case("pipeline --set results_dir=out", pipeline_set_results_dir, 0, None, _table3_beside_the_run, slow=True),
    Case("seeds: [0, 0, 0]", repeated_seeds, 2, r"^error: .*abl\.yaml: seeds lists \[0\] more than once",
         lambda c, o: None if not (c.tmp / "results").exists() else pytest.fail("a notebook ran")),
    Case("a run's config.json is not JSON", run_config_not_json, 2,
         r"^error: .*broken/config\.json: not valid JSON \(.*\); .*"),
    # issue 24.13: kaggle
    Case("kaggle pull: push record without kernel", kaggle_pull_with_record('{"commit": "c0ffee", "dirty": false}'), 2,
         r"^kaggle pull: .*/r1/kaggle_push\.json has no 'kernel', so it is not a complete push record; push the run "
         r"again"),
    Case("kaggle pull: push record not JSON", kaggle_pull_with_record('{"kernel": "alice/resemote-r1",'), 2,
         r"^kaggle pull: .*/r1/kaggle_push\.json is not valid JSON \(.* line 1 column \d+"),
    Case("kaggle push --dry-run FILE", kaggle_dry_run_into_a_file, 2,
         r"^kaggle push: --dry-run .*/kernel\.txt is a file, not a folder; give a folder to write the kernel into"),
    # issue 24: predict/export/checkpoint
    Case("predict clip.mp4 --out clip.mp4", out_is_the_input_video, 2,
         r"^error: --out .*clip\.mp4 is one of the inputs; writing results there would destroy it"),
    Case("predict: every input fails, --out kept", every_input_fails, 1,
         r"^error: 2 of 2 inputs failed \(each is named above\); .*preds\.jsonl was left as it was \(no image could "
         r"be read\)", _no_partial_left),
    Case("predict: <video>_frames.csv beside --out exists", frames_table_beside_out_exists, 2,
         r"^error: .*clip_frames\.csv already exists: predict would write .*clip\.mp4's per-frame table there \(beside "
         r"--out .*preds\.jsonl\); nothing was replaced", _nothing_predicted),
    Case("--annotate: dangling symlink out of the folder", annotate_through_a_dangling_link, 2,
         r"^error: --annotate .*ann: 1 of the files .* already exist, e\.g\. .*x_annotated\.jpg \(a symbolic link to "
         r".*outside/victim\.jpg\); nothing was replaced", _outside_untouched),
    Case("--out - is standard output", out_dash_is_stdout, 0, None, _json_lines_on_stdout),
    Case("export onto another network's .onnx", export_onto_a_foreign_onnx, 2,
         r"^error: export output .*yunet\.onnx already exists and is not an export of ours \(an ONNX model of another "
         r"network\); refusing to replace it.*--force"),
    Case("export onto a text file named model.pt", export_onto_a_text_file, 2,
         r"^error: export output .*model\.pt already exists and is not an export of ours \(a text file\)"),
    Case("export after a SIGKILLed export: temporary removed", export_after_a_killed_export, 0,
         r"removed 1 temporary file\(s\) left by an interrupted export: \.model\.onnx\.\d+\.k1ll3d_x\.tmp\.onnx",
         _one_export_no_temporary),
    Case("predict: image over PIL's decompression-bomb limit", decompression_bomb, 1,
         r"^error: 1 of 2 inputs failed \(each is named above\); .*p\.jsonl holds the 2 done",
         _bomb_reported_face_predicted),
    Case("predict: FIFO named x.png", fifo_named_png, 1, r"^error: 2 of 3 inputs failed", _fifos_reported),
    Case("SIGTERM during predict", sigterm_during_predict, 130,
         r"^interrupted: predict stopped after 12 of 40 inputs; .*preds\.jsonl holds the 12 done", _twelve_kept),
    Case("checkpoint without class_names", checkpoint_row("nonames.pt", _drop_class_names), 2,
         r"^error: .*nonames\.pt has no class_names", _no_results_file),
    Case("checkpoint with a class named twice", checkpoint_row("twice.pt", _repeat_a_class), 2,
         r"^error: .*twice\.pt: class_names \[.*\] name 'happy' more than once", _no_results_file),
    Case("checkpoint of an unknown model", checkpoint_row("future.pt", _unknown_model), 2,
         r"^error: .*future\.pt: its config names model 'resemotenet_v2', which this resemote does not know",
         _no_results_file),
    Case("checkpoint with image_size 200000", checkpoint_row("huge.pt", _huge_image_size), 2,
         r"^error: .*huge\.pt: image_size 200000 is not a whole number in \[8, 1024\]", _no_results_file),
    Case("predict webcam:abc", lambda c: _predict_tiny(c, "webcam:abc"), 2,
         r"^error: webcam:abc: a webcam is webcam:N, N the camera's number"),
    # issue 24: data and params
    Case("synthetic into a folder holding a real fer2013.csv", synthetic_onto_a_real_csv, 2,
         r"^error: synthetic: data_root .*fer2013 holds other data \(fer2013\.csv\), not written by the synthetic "
         r"generator", _nothing_written),
    Case("evaluate --dataset synthetic onto the Kaggle folders", synthetic_onto_the_kaggle_folders, 2,
         r"^error: synthetic: data_root .*fer2013 holds other data \(test/, train/\)", _no_csv_added),
    Case("both FER2013 layouts in one folder", both_fer2013_layouts, 2,
         r"^error: fer2013: .*fer2013 holds both FER2013 layouts, .*fer2013\.csv and the image folders .*train/ and "
         r".*test/", _nothing_written),
    Case("missing class folder", missing_class_folder, 0,
         r"UserWarning: fer2013/test .*: no images of disgust \(class folder missing or empty\)",
         _missing_class_reported),
    Case("duplicate YAML key", duplicate_yaml_key, 2,
         r"^error: .*dup\.yaml, line 4: key 'epochs' appears twice \(first on line 2\); keep one", _nothing_written),
    Case("YAML alias bomb (billion laughs)", yaml_alias_bomb, 2,
         r"^error: .*bomb\.yaml, line 3: YAML aliases \(\*name\) are not allowed in params files", _short_error),
    Case("2 MB value in a params file", two_megabyte_value, 2,
         r"^error: .*big\.yaml: protocol='x+\.\.\. \(2,000,002 characters\) is not one of", _short_error),
    Case("corrupt decode-cache entry", corrupt_decode_cache_entry, 0,
         r"UserWarning: decode cache .*fer2013-test-32-\w+\.pt is damaged \(item indices outside the split's \d+ "
         r"items, or out of order\); rebuilding it"),
    Case("dataset zip in the data root", zip_in_the_data_root, 0,
         r"fer2013: .*fer2013 holds no dataset but the archive fer2013\.zip: unpacking it there", _unpacked_beside_the_zip),
    Case("evaluate --dataset folder (class folders, contempt/)", labelled_folder, 0,
         r"UserWarning: folder/test .*: 3 image\(s\) in folders outside the seven classes excluded: contempt/ \(3\)",
         _folder_evaluated),
    # issue 31: data, folder datasets, evaluate, archives, locks (helper A)
    Case("evaluate --crop-faces, no face in any photo", crop_faces_on_photos_without_faces, 2,
         r"^error: no images in .*photos \(the test split\) to evaluate: of its 4 image file\(s\), no face found "
         r"in 4$", _nothing_created("eval")),
    Case("evaluate --split val on a folder of class folders", folder_split_val, 2,
         r"^error: no images in .*faces \(the val split\): nothing to evaluate; empty: a folder of class folders is "
         r"an evaluation set", _nothing_created("eval")),
    Case("every class folder empty", all_class_folders_empty, 2,
         r"^error: no images in .*faces \(the test split\): nothing to evaluate; no image files were found there$",
         _nothing_created("eval")),
    Case("evaluate --out inside a class folder", out_inside_a_class_folder, 2,
         r"^error: out folder .*faces/happy is inside the data root .*faces: metrics, predictions and provenance "
         r"would be written into the dataset", _dataset_untouched),
    Case("evaluate --out is the data root", out_is_the_data_root, 2,
         r"^error: out folder .*faces is the data root .*faces: ", _dataset_untouched),
    Case("evaluate a folder: --out holds no .lock after", lambda c: _evaluate_tiny(c, "folder", _faces_folder(c)), 0,
         None, _folder_evaluated_no_lock),
    Case("evaluate an empty data root: no --out made", empty_data_root, 2, r"^error: folder: no known layout at ",
         _nothing_created("eval")),
    Case("evaluate a missing data root: no --out made", lambda c: _evaluate_tiny(c, "folder", c.tmp / "nowhere"), 2,
         r"^error: folder: folder .*nowhere does not exist", _nothing_created("eval", "nowhere")),
    Case("evaluate a data root that is a file: no --out made", data_root_is_a_file, 2, r"^error: folder: ",
         _nothing_created("eval")),
    Case("train dataset=folder (an evaluation set): no run folder", train_on_a_folder_of_class_folders, 2,
         r"^error: the training split of folder has 0 image\(s\)", _nothing_created("results")),
    Case("train device=banana: no run folder", lambda c: _train(c, "run_name=banana", "device=banana", *TINY), 2,
         r"^error: device 'banana'", _nothing_created("results")),
    Case("predict a file that does not exist", predict_a_missing_file, 2,
         r"^error: .*doesnotexist\.jpg: no such file"),
    Case("fer2013.zip unpacking to 300 MB", zip_bomb_in_the_data_root, 2,
         r"^error: fer2013: .*fer2013\.zip would unpack to 300 MB from 0\.\d MB \(\d+x\), far more than images",
         _only_the_zip),
    Case("fer2013.zip of 30,000 junk files", zip_of_junk_in_the_data_root, 2,
         r"^error: fer2013: .*fer2013\.zip is not fer2013 \(no fer2013\.csv .*\): it holds 30000 file\(s\), e\.g\. "
         r"junk/00000\.bin, junk/00001\.bin, junk/00002\.bin, \.\.\.;", _only_the_zip),
    Case("fer2013.csv with a 300,000-character field", csv_with_a_huge_field, 2,
         r"^error: .*fer2013\.csv, line 2: a field of more than 131072 characters", _nothing_created("eval")),
    # issue 31: calibration, predict, export, device, CLI, params (helper B)
    Case("step_graph: off in YAML (a boolean)", step_graph_off_in_yaml, 2, r"^error: .*sg\.yaml: unknown config key 'colour'",
         _nothing_written),
    Case("predict --device banana", predict_device_banana, 2,
         r"^error: device 'banana' is not a device resemote runs on; use one of: auto, cpu, cuda, cuda:N, mps$",
         _no_annotate_folder),
    Case("evaluate --device banana", evaluate_device_banana, 2,
         r"^error: device 'banana' is not a device resemote runs on; use one of: auto, cpu, cuda, cuda:N, mps$",
         _no_eval_folder),
    Case("pipeline --set device=banana: no notebook runs", lambda c: py(
        "resemote_lib", "pipeline", SMOKE, "--set", "device=banana", "--results", c.tmp / "results", "--no-progress"), 2,
         r"^error: .*smoke\.yaml: device 'banana' is not a device resemote runs on; use one of: auto, cpu, cuda, "
         r"cuda:N, mps$", _nothing_created("results")),
    Case("pipeline --set device=cuda:7 (no such GPU here): no notebook runs", lambda c: py(
        "resemote_lib", "pipeline", SMOKE, "--set", "device=cuda:7", "--results", c.tmp / "results", "--no-progress"),
         2, r"^error: .*smoke\.yaml: device 'cuda:7'", _nothing_created("results")),
    Case("train device=banana", lambda c: _train(c, "device=banana", *TINY), 2,
         r"^error: device 'banana' is not a device resemote runs on; use one of: auto, cpu, cuda, cuda:N, mps$"),
    Case("calibration temperature 1e-300, --out -", predict_with_temperature(1e-300), 2,
         r"^error: .*tiny\.calibration\.json: temperature must be a number in \[0\.05, 20\], got 1e-300 ",
         _nothing_printed),
    Case("calibration temperature 1e308", predict_with_temperature(1e308), 2,
         r"^error: .*tiny\.calibration\.json: temperature must be a number in \[0\.05, 20\], got 1e\+308 ",
         _nothing_printed),
    Case("calibration temperature true", predict_with_temperature(True), 2,
         r"^error: .*tiny\.calibration\.json: temperature must be a number in \[0\.05, 20\], got True ",
         _nothing_printed),
    Case("calibration path is a folder", calibration_folder, 2,
         r"^error: .*tiny\.calibration\.json is a folder, not a calibration record", _nothing_printed),
    Case("export with calibration temperature 1e-300", export_with_temperature_1e_300, 2,
         r"^error: .*tiny\.calibration\.json: temperature must be a number in \[0\.05, 20\], got 1e-300 ",
         _no_export),
    Case("predict FOLDER holding a video", folder_with_a_video, 0, None, _folder_video_predicted),
    Case("python -m resemote_lib.pipeline PARAMS (the old form)",
         lambda c: py("resemote_lib.pipeline", paths.PARAMS / "fer2013.yaml", "--results", c.tmp / "results"), 2,
         r"^error: resemote_lib\.pipeline is not a command \(run as a script it would do nothing\); run: python -m "
         r"resemote_lib pipeline .*fer2013\.yaml --results .*results$",
         lambda c, o: None if not (c.tmp / "results").exists() else pytest.fail("something ran")),
]


def _marks(case: Case) -> list:
    return ([pytest.mark.slow] if case.slow else []) + ([pytest.mark.xfail(strict=True, reason=case.xfail)]
                                                       if case.xfail else [])


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=_marks(c)) for c in CASES])
def test_hostile_input(case: Case, tmp_path, request, monkeypatch, capsys):
    ctx = Ctx(tmp_path, request, monkeypatch)
    try:
        out = _run(case, ctx, capsys)
        assert out.returncode == case.code, f"exit {out.returncode}, expected {case.code}; stderr:\n{out.stderr[-3000:]}"
        assert "Traceback" not in out.stderr, out.stderr[-3000:]
        errors = [line for line in out.stderr.splitlines() if ERROR_LINE.match(line)]
        if case.code == 0:
            assert errors == [], errors
            if case.stderr:
                assert re.search(case.stderr, out.stderr), out.stderr[-3000:]
        else:
            assert len(errors) == 1, f"expected one error line, got:\n{out.stderr[-3000:]}"
            assert re.search(case.stderr, errors[0]), errors[0]
        for path, before in ctx.kept.items():
            assert path.is_file() and _fingerprint(path) == before, f"{path} was changed or removed"
        if case.check is not None:
            case.check(ctx, out)
    finally:
        for proc in ctx.background:
            proc.kill()
            proc.wait()


def _run(case: Case, ctx: Ctx, capsys) -> Outcome:
    command = case.setup(ctx)
    if command == SHARED:
        return ctx.shared.outcome
    if callable(command):
        capsys.readouterr()
        code = cli.run(command)
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)
    env = {**os.environ, **ctx.env} if ctx.env else None
    done = subprocess.run(list(command), capture_output=True, text=True, timeout=900, cwd=ctx.cwd, env=env)
    return Outcome(done.returncode, done.stdout, done.stderr)


def test_rows_are_unique():
    assert len({c.id for c in CASES}) == len(CASES)
