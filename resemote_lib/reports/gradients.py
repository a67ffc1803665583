"""Gradient flow: which weights of a network ever receive a gradient, layer by layer.

At the paper's 64x64 input the last residual block of ResEmoteNet sees 2x2 and 1x1 maps,
so most taps of its 3x3 convolutions multiply only zero padding: their gradient is
exactly zero for every input. ``gradient_flow`` measures it (one backward pass over a
batch): per layer, the share of weights whose gradient is exactly zero, and the gradient's
norm. ``model.unreached_parameters`` computes the structural part from the shapes alone.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..model import build_model

COLUMNS = ["variant", "image_size", "layer", "params", "zero_grad_params", "zero_grad_share", "grad_norm"]


def gradient_flow(model: nn.Module, image_size: int, *, batch: int = 8, seed: int = 0) -> pd.DataFrame:
    """Per weight tensor of ``model`` (biases and BatchNorm skipped): how many of its entries
    get an exactly-zero gradient from one cross-entropy backward pass over ``batch`` random
    images of ``image_size``, and the gradient's L2 norm. Dropout is off (eval mode for
    dropout; BatchNorm in training mode, as in training)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, model.conv1.in_channels, image_size, image_size, generator=g)
    y = torch.randint(0, model.fc4.out_features, (batch,), generator=g)
    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.eval()  # dropout zeroes units at random: that is not the structure we measure
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    rows = []
    for name, p in model.named_parameters():
        if p.dim() < 2 or p.grad is None:
            continue
        zero = int((p.grad == 0).sum())
        rows.append({"layer": name.removesuffix(".weight"), "params": p.numel(), "zero_grad_params": zero,
                     "zero_grad_share": zero / p.numel(), "grad_norm": float(p.grad.norm())})
    model.zero_grad(set_to_none=True)
    return pd.DataFrame(rows)


def gradient_flow_table(variants: Iterable[str], sizes: Iterable[int] = (48, 64, 96, 112), *,
                        batch: int = 8, seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """``gradient_flow`` of each variant (``model.VARIANTS``) at each input size, one table
    (``COLUMNS``); each variant is initialised with ``seed``. ``progress``: a bar naming the
    variant and size being measured (building and back-propagating the full network takes
    seconds each on a CPU)."""
    cases = [(name, size) for name in variants for size in sizes]
    frames = []
    with tqdm(total=len(cases), desc="gradient flow", unit="model", disable=not progress) as bar:
        for name, size in cases:
            bar.set_description(f"gradient flow: {name} at {size} px")
            torch.manual_seed(seed)
            flow = gradient_flow(build_model(name, image_size=size), size, batch=batch, seed=seed)
            frames.append(flow.assign(variant=name, image_size=size))
            bar.update(1)
        bar.set_description(f"gradient flow: {len(cases)} model(s) measured")
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per variant and size: weights in all, weights with an exactly-zero gradient, share."""
    out = table.groupby(["variant", "image_size"], sort=False)[["params", "zero_grad_params"]].sum()
    out["zero_grad_share"] = out["zero_grad_params"] / out["params"]
    return out.reset_index()


__all__ = ["COLUMNS", "gradient_flow", "gradient_flow_table", "summary"]
