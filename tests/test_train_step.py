"""The training step over static buffers (what a CUDA graph captures) against a textbook step;
the epoch's plan it reads and the watch over its running loss."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from resemote_lib.data.transforms import AUGMENTATIONS
from resemote_lib.device import FP32
from resemote_lib.distributed import DistInfo
from resemote_lib.model import build_model
from resemote_lib.progress import SilentBar
from resemote_lib.train_step import (
    LossWatch,
    TrainingDiverged,
    TrainStep,
    epoch_plan,
    graph_possible,
    lr_on_device,
)

CPU = torch.device("cpu")
AUGMENT = AUGMENTATIONS["affine"]


def _data():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (96, 1, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 7, (96,), generator=g)
    plan = epoch_plan(96, 1, 0, CPU, AUGMENT)
    return images, labels, plan, [plan.order[i * 8:(i + 1) * 8] for i in range(12)]


def _parts(optimizer: str, scheduler: str, *, tensor_lr: bool):
    torch.manual_seed(0)
    model = build_model("cnn", image_size=16).train()
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4, fused=True)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05, fused=True)
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=12) if scheduler == "onecycle"
             else torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5))
    if tensor_lr:
        lr_on_device(opt, CPU)
    return model, opt, sched


def _textbook(optimizer: str, scheduler: str, *, tensor_lr: bool) -> tuple[dict, list[float]]:
    images, labels, plan, batches = _data()
    model, opt, sched = _parts(optimizer, scheduler, tensor_lr=tensor_lr)
    torch.manual_seed(7)
    losses = []
    for idx in batches:
        x = AUGMENT(images[idx], flip_mask=plan.flips[idx], warps=plan.warps[idx])
        loss = F.cross_entropy(model(x), labels[idx], label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss))
    return {k: v.detach() for k, v in model.state_dict().items()}, losses


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("scheduler", ["onecycle", "step"])
def test_the_graph_ready_step_computes_exactly_what_a_textbook_step_computes(optimizer, scheduler):
    """12 steps with flips, warps, label smoothing, dropout and a learning rate the scheduler
    changes every step: the static-buffer step, its learning rate held in a device tensor that the
    scheduler fills in place (what a CUDA graph replays), leaves bit for bit the weights, BatchNorm
    statistics and running sums of a plain PyTorch loop with the same tensor learning rate."""
    expected, losses = _textbook(optimizer, scheduler, tensor_lr=True)
    images, labels, plan, batches = _data()
    model, opt, sched = _parts(optimizer, scheduler, tensor_lr=True)
    step = TrainStep(model=model, optimizer=opt, scaler=torch.amp.GradScaler("cpu", enabled=False), precision=FP32,
                     images=images, labels=labels, augment=AUGMENT, batch=8, device=CPU, channels_last=False,
                     label_smoothing=0.1, capture=False)
    step.new_epoch(plan.flips, plan.warps)
    torch.manual_seed(7)
    for idx in batches:
        step(idx)
        sched.step()
    assert isinstance(opt.param_groups[0]["lr"], torch.Tensor)
    got = model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in expected.items()), [k for k, v in expected.items()
                                                                      if not torch.equal(got[k], v)]
    assert float(step.loss_sum) == pytest.approx(8 * sum(losses), rel=1e-12)


@pytest.mark.parametrize("scheduler", ["onecycle", "step"])
def test_a_learning_rate_held_in_a_tensor_trains_sgd_as_a_float_does(scheduler):
    """The paper's SGD with its learning rate in a tensor (needed to capture the step) against a
    float learning rate: equal up to the rate's float32 rounding (rtol 1e-6). (AdamW is not
    compared this way: with a tensor rate torch computes its bias corrections in float32 on the
    device, and AdamW turns the float noise of gradients that are zero in exact arithmetic, such
    as those of convolution biases that BatchNorm cancels, into full steps of either sign.)"""
    a, _ = _textbook("sgd", scheduler, tensor_lr=False)
    b, _ = _textbook("sgd", scheduler, tensor_lr=True)
    for key, value in a.items():
        torch.testing.assert_close(b[key], value, rtol=1e-6, atol=1e-7, msg=key)


def test_a_graph_is_captured_only_where_it_can_be():
    assert "CUDA" in graph_possible(CPU, scaler=False, distributed=False, compiled=False)
    cuda = torch.device("cuda")
    assert graph_possible(cuda, scaler=False, distributed=False, compiled=False) is None
    assert "scaler" in graph_possible(cuda, scaler=True, distributed=False, compiled=False)
    assert "DDP" in graph_possible(cuda, scaler=False, distributed=True, compiled=False)
    assert "compile" in graph_possible(cuda, scaler=False, distributed=False, compiled=True)


def test_epoch_plan_is_a_function_of_seed_and_epoch():
    affine = AUGMENTATIONS["affine"]
    a = epoch_plan(50, 3, 7, torch.device("cpu"), affine)
    b = epoch_plan(50, 3, 7, torch.device("cpu"), affine)
    c = epoch_plan(50, 4, 7, torch.device("cpu"), affine)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True)) and not torch.equal(a.order, c.order)
    assert sorted(a.order.tolist()) == list(range(50)) and 10 < a.flips.sum() < 40
    # the warps stay within the preset's bounds and differ per item
    angle, zoom, tx, ty = a.warps.T
    assert angle.abs().max() <= math.radians(affine.degrees) and (zoom - 1).abs().max() <= affine.scale
    assert max(tx.abs().max(), ty.abs().max()) <= affine.shift and angle.std() > 0
    # flip-only runs draw the same order and flips as before warps existed, and no warps
    flip = epoch_plan(50, 3, 7, torch.device("cpu"))
    assert flip.warps is None and torch.equal(flip.order, a.order) and torch.equal(flip.flips, a.flips)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_the_loss_watch_shows_a_finite_loss_and_stops_a_run_whose_loss_is_not(tmp_path, bad):
    """A finite running loss goes to the progress bar as a mean per image; NaN or an infinity in
    either direction stops the run, naming the epoch, the step, the last good checkpoint and the
    learning rate."""
    last = tmp_path / "last.pt"
    last.touch()
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.05)
    step = SimpleNamespace(device=CPU, optimizer=optimizer, loss_sum=torch.tensor(12.0, dtype=torch.float64),
                           correct=torch.tensor(6))
    watch, bar = LossWatch(step, DistInfo(), epoch=3, last_path=last), SilentBar(total=10)
    watch.check(2, 16, bar)
    assert bar.postfix == {"loss": "0.750", "acc": "0.375"}
    step.loss_sum += bad
    with pytest.raises(TrainingDiverged, match=rf"loss became {bad} at epoch 3, step 4; .* checkpoint is "
                                               rf"{re.escape(str(last))}\. Try a lower lr \(now 0\.05\)"):
        watch.check(4, 32, bar, final=True)
    with pytest.raises(TrainingDiverged, match=r"checkpoint is \(none yet\)"):
        LossWatch(step, DistInfo(), epoch=1, last_path=tmp_path / "missing.pt").check(1, 8, bar)
