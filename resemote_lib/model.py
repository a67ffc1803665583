"""ResEmoteNet (Roy et al., 2024): CNN stem, Squeeze-and-Excitation, three residual blocks.

Module names follow the reference implementation (github.com/ArnabKumarRoy02/ResEmoteNet,
approach/ResEmoteNet.py @ fabbe68) so that its state_dicts load with ``strict=True``:
``conv1..bn3``, ``se.fc.0``/``se.fc.2``, ``res_block{1,2,3}.*``, ``fc1..fc4``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .labels import NUM_CLASSES


class SEBlock(nn.Module):
    """Squeeze-and-Excitation (Hu et al., 2018), as in the paper's eq. 3.

    ``s = sigmoid(W2 relu(W1 z))`` with ``z`` the channel-wise global average, then each
    channel is scaled by its gate. Bias-free linears, as in the reference (its ReLU sits
    at ``fc.1``, which is why the weights are ``fc.0`` and ``fc.2``).

    Args:
        channels: number of input (and output) channels ``C``.
        reduction: ``r``; the bottleneck has ``C // r`` units.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        if channels // reduction < 1:
            raise ValueError(f"SEBlock needs channels >= reduction, got {channels} < {reduction}")
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels, bias=False),
            nn.Sigmoid(),
        )

    def gates(self, x: Tensor) -> Tensor:
        """The per-channel excitation ``s`` in [0, 1], shape ``(N, C)``."""
        return self.fc(self.avg_pool(x).flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gates(x)[:, :, None, None]


# Input maps of at most this many pixels (6x6) are convolved as one matrix product on the CPU.
SMALL_MAP = 36


class SmallMapConv2d(nn.Conv2d):
    """``nn.Conv2d`` that, on the CPU, convolves small maps (at most ``SMALL_MAP`` pixels)
    as one matrix product over unfolded patches: the same function and the same parameters
    (state_dict keys and shapes are ``nn.Conv2d``'s), up to float summation order.

    Why: the residual blocks see 6x6 down to 1x1 maps, where oneDNN's convolution kernels
    (backward especially) ran 3-7x slower than a plain GEMM of the same arithmetic on a
    2-core AVX2 CPU (1024->1024 channels on 2x2 maps, batch 64: 570 vs 165 ms for forward
    plus backward). On larger maps oneDNN wins (12x12: 163 vs 312 ms), so they keep it; so
    do other devices, and tracing/ONNX export (which record the plain convolution).
    """

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if (x.device.type != "cpu" or h * w > SMALL_MAP or self.groups != 1 or torch.jit.is_tracing()
                or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()):
            return super().forward(x)
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        cols = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=self.padding, stride=self.stride)
        # One 2-D product (N*oh*ow, K) x (K, out): a 3-D input would let bf16 autocast take a batched
        # path that copies the weight once per image (measured: 7x slower bf16 evaluation).
        rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])
        y = F.linear(rows, self.weight.flatten(1), self.bias)  # (N*oh*ow, out_channels)
        return y.reshape(x.shape[0], oh * ow, self.out_channels).transpose(1, 2).reshape(
            x.shape[0], self.out_channels, oh, ow)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (He et al., 2016), the paper's eq. 4.

    The shortcut is a strided 1x1 convolution + BN when the shape changes, else identity.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        stride: stride of the first convolution and of the shortcut.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = SmallMapConv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = SmallMapConv2d(out_channels, out_channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                SmallMapConv2d(in_channels, out_channels, 1, stride=stride),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResEmoteNet(nn.Module):
    """The full network. Input ``(N, in_channels, H, W)``; 64x64 is the published size.

    Stem: three conv3x3-BN-ReLU-maxpool stages (64, 128, 256 channels) with Dropout(0.2)
    after the first two only; SE on 256 channels; residual blocks to 512, 1024, 2048
    channels, each stride 2; global average pool; head 2048-1024-512-256-classes with
    Dropout(0.5) after each hidden layer. ``se`` and ``res_blocks`` switch parts off for
    the ablation variants (``VARIANTS``); the defaults are exactly the reference network.

    Args:
        num_classes: outputs of ``fc4``. The canonical order is ``labels.CLASS_NAMES``.
        in_channels: 3 for the published model (grayscale replicated to 3 channels).
        se: keep the Squeeze-and-Excitation block.
        res_blocks: how many of the three residual blocks to keep (0 or 3 in ``VARIANTS``).
    """

    def __init__(self, num_classes: int = NUM_CLASSES, in_channels: int = 3, *, se: bool = True,
                 res_blocks: int = 3) -> None:
        super().__init__()
        if not 0 <= res_blocks <= 3:
            raise ValueError(f"res_blocks must be 0..3, got {res_blocks}")
        self.conv1 = nn.Conv2d(in_channels, 64, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 128, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(128)
        self.conv3 = nn.Conv2d(128, 256, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(256)
        self.dropout_stem = nn.Dropout(0.2)
        self.se = SEBlock(256, reduction=16) if se else None
        self.stem_out = nn.Identity()  # a hook point: the last map with spatial detail (reports/explain.py)
        widths = (256, 512, 1024, 2048)
        for k in range(res_blocks):
            setattr(self, f"res_block{k + 1}", ResidualBlock(widths[k], widths[k + 1], stride=2))
        self.res_blocks = res_blocks
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(widths[res_blocks], 1024)
        self.fc2 = nn.Linear(1024, 512)
        self.fc3 = nn.Linear(512, 256)
        self.dropout_head = nn.Dropout(0.5)
        self.fc4 = nn.Linear(256, num_classes)
        self.lean_size: int | None = None  # set by make_lean: the one input size this model is exact at

    def features(self, x: Tensor) -> Tensor:
        """The map after the last residual block (2048 channels), before pooling."""
        x = self.stem(x)
        for k in range(self.res_blocks):
            x = getattr(self, f"res_block{k + 1}")(x)
        return x

    def stem(self, x: Tensor) -> Tensor:
        """Three conv stages, then the SE block (when kept): the 256-channel map."""
        x = self.dropout_stem(F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2))
        x = self.dropout_stem(F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2))
        x = F.max_pool2d(F.relu(self.bn3(self.conv3(x))), 2)
        return self.stem_out(self.se(x) if self.se is not None else x)

    def head(self, x: Tensor) -> Tensor:
        """Logits from the pooled feature vector."""
        x = self.dropout_head(F.relu(self.fc1(x)))
        x = self.dropout_head(F.relu(self.fc2(x)))
        x = self.dropout_head(F.relu(self.fc3(x)))
        return self.fc4(x)

    def forward(self, x: Tensor) -> Tensor:
        if self.lean_size is not None and tuple(x.shape[-2:]) != (self.lean_size, self.lean_size):
            raise ValueError(f"this is ResEmoteNet's lean form, exact at {self.lean_size}x{self.lean_size} px only "
                             f"(convolution taps that meet only padding there were removed); got a "
                             f"{x.shape[-2]}x{x.shape[-1]} input. Resize the input to {self.lean_size} px, or "
                             "expand the weights to the full network (model.expand_lean) to use another size")
        return self.head(self.pool(self.features(x)).flatten(1))


# The ablation's variants: one builder, named arguments (timm's model_args), never copied
# classes. `cnn` is our stem and head (not the reference repository's separate 5-conv
# baseline). A `_lean` variant is the same function as its full form at a given input size,
# with the convolution taps that only ever multiply zero padding removed (same cost per image
# as `resemotenet_lean`, so the ablation compares at equal cost). `resnet18` is not ResEmoteNet:
# torchvision's ResNet-18 with a stem for 48 px faces (resnet.py), the baseline to beat.
VARIANTS: dict[str, dict[str, Any]] = {
    "resemotenet": dict(se=True, res_blocks=3),
    "resemotenet_lean": dict(se=True, res_blocks=3, lean=True),
    "cnn": dict(se=False, res_blocks=0),
    "cnn_se": dict(se=True, res_blocks=0),
    "cnn_res": dict(se=False, res_blocks=3),
    "cnn_res_lean": dict(se=False, res_blocks=3, lean=True),
    "resnet18": dict(baseline="resnet18"),
}


def build_model(name: str = "resemotenet", *, num_classes: int = NUM_CLASSES, in_channels: int = 3,
                image_size: int = 64) -> nn.Module:
    """A freshly initialised variant ``name`` (``VARIANTS``); ``image_size`` matters only to
    the ``_lean`` variants, whose pruned convolutions are exact at that size only."""
    if name not in VARIANTS:
        raise ValueError(f"unknown model {name!r}; available: {sorted(VARIANTS)}")
    args = dict(VARIANTS[name])
    if args.get("baseline") == "resnet18":
        from .resnet import ResNet18  # torchvision's network: imported only by who builds it
        return ResNet18(num_classes=num_classes, in_channels=in_channels)
    lean = args.pop("lean", False)
    model = ResEmoteNet(num_classes=num_classes, in_channels=in_channels, **args)
    return make_lean(model, image_size) if lean else model


def make_lean(model: ResEmoteNet, image_size: int) -> ResEmoteNet:
    """``model`` with each residual 3x3 convolution cut to the taps that touch data at
    ``image_size`` (in place; the weights are the kept taps of the originals).

    At 64x64, ``res_block3.conv1`` (stride 2 on a 2x2 map) uses 2x2 of its 9 taps: exactly a
    2x2 convolution without padding; ``res_block3.conv2`` sees a 1x1 map: exactly a 1x1
    convolution. The outputs are the same (up to float summation order).
    """
    size = image_size // 8
    for k in range(1, model.res_blocks + 1):
        block = getattr(model, f"res_block{k}")
        out = (size - 1) // 2 + 1
        block.conv1 = _cropped(block.conv1, size, out)
        block.conv2 = _cropped(block.conv2, out, out)
        size = out
    model.lean_size = image_size
    return model


def _kept_taps(in_size: int, out_size: int, stride: int) -> tuple[int, int]:
    """First and last tap (0..2, per axis) of a 3x3/padding-1 convolution that ever lands
    inside an ``in_size`` map (the taps in between do too: they are contiguous)."""
    used = sorted({k for o in range(out_size) for k in range(3) if 0 <= o * stride + k - 1 < in_size})
    return used[0], used[-1]


def _lean_shapes(image_size: int, res_blocks: int = 3) -> dict[str, tuple[int, int]]:
    """``{"res_block3.conv1": (lo, hi), ...}``: the kept taps of each residual 3x3 convolution at
    ``image_size`` (``(0, 2)`` where every tap is kept)."""
    out, size = {}, image_size // 8
    for k in range(1, res_blocks + 1):
        down = (size - 1) // 2 + 1
        out[f"res_block{k}.conv1"] = _kept_taps(size, down, 2)
        out[f"res_block{k}.conv2"] = _kept_taps(down, down, 1)
        size = down
    return out


def expand_lean(state_dict: dict[str, Tensor], image_size: int) -> dict[str, Tensor]:
    """The full network's (reference-format) state_dict from a lean one trained at ``image_size``:
    each cut 3x3 kernel is put back in place among zeros. ``ResEmoteNet()`` loads it strictly
    and computes the same logits at ``image_size`` (the zero taps only ever met padding there);
    at other sizes it is an ordinary full network whose removed taps start at zero."""
    out = dict(state_dict)
    for name, (lo, hi) in _lean_shapes(image_size).items():
        key = f"{name}.weight"
        w = state_dict.get(key)
        if w is None or w.shape[-1] == 3:
            continue
        if w.shape[-1] != hi - lo + 1:
            raise ValueError(f"{key}: a {w.shape[-1]}x{w.shape[-1]} kernel is not the lean form at {image_size} px "
                             f"(which keeps {hi - lo + 1}x{hi - lo + 1}); pass the size it was trained at")
        full = w.new_zeros((*w.shape[:2], 3, 3))
        full[:, :, lo:hi + 1, lo:hi + 1] = w
        out[key] = full
    return out


def describe(name: str, image_size: int) -> str:
    """The network a config trains, in words (provenance, Table III)."""
    if name == "resemotenet_lean":
        return f"ResEmoteNet (lean form, exact at {image_size} px)"
    if name == "resnet18":
        return "torchvision ResNet-18 from scratch, 3x3 stride-1 stem (a baseline, not the paper's network)"
    if name.endswith("_lean"):
        return f"ablation variant {name!r} (lean form, exact at {image_size} px; not the paper's network)"
    return "ResEmoteNet" if name == "resemotenet" else f"ablation variant {name!r} (not the paper's network)"


def _cropped(conv: nn.Conv2d, in_size: int, out_size: int) -> nn.Conv2d:
    """The 3x3/padding-1 ``conv`` restricted to the contiguous taps that reach the input."""
    stride = conv.stride[0]
    lo, hi = _kept_taps(in_size, out_size, stride)
    if (lo, hi) == (0, 2) or conv.kernel_size != (3, 3):
        return conv
    pad = 1 - lo  # taps before `lo` only ever met the padding
    new = type(conv)(conv.in_channels, conv.out_channels, hi - lo + 1, stride=stride, padding=pad,
                     bias=conv.bias is not None)
    with torch.no_grad():
        new.weight.copy_(conv.weight[:, :, lo:hi + 1, lo:hi + 1])
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new.to(conv.weight.device)


def resemotenet(*, num_classes: int = NUM_CLASSES, in_channels: int = 3) -> ResEmoteNet:
    """Build a freshly initialised ResEmoteNet (the reference network)."""
    return ResEmoteNet(num_classes=num_classes, in_channels=in_channels)


def flops_per_image(model: nn.Module, image_size: int) -> float:
    """Forward FLOPs of one ``image_size`` image (torch's FlopCounterMode: 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, model.conv1.in_channels, image_size, image_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x)
    return float(counter.get_total_flops())


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def unreached_parameters(model: ResEmoteNet, image_size: int = 64) -> dict[str, int]:
    """Weights of each residual conv that never multiply real data at ``image_size``.

    A 3x3 padded conv tap is used only if it lands inside the input map for some output
    position. At 64x64 ``res_block3`` sees 2x2 and 1x1 maps, so most of its taps only ever
    multiply zero padding and receive no data gradient (measured, not assumed).
    """
    unreached: dict[str, int] = {}
    size = image_size // 8  # the stem's three 2x2 max pools
    for name in ("res_block1", "res_block2", "res_block3"):
        block = getattr(model, name)
        out = (size - 1) // 2 + 1  # 3x3 conv, stride 2, padding 1
        for label, conv, n_in, stride in (("conv1", block.conv1, size, 2), ("conv2", block.conv2, out, 1)):
            used = _used_taps(n_in, out, stride) ** 2
            unreached[f"{name}.{label}"] = (
                conv.weight.numel() * (9 - used) // 9
            )
        size = out
    return unreached


def _used_taps(in_size: int, out_size: int, stride: int) -> int:
    """How many of a 3x3 kernel's 3 taps along one axis ever land inside the input."""
    return len({k for o in range(out_size) for k in range(3) if 0 <= o * stride + k - 1 < in_size})


__all__ = ["SMALL_MAP", "VARIANTS", "ResEmoteNet", "ResidualBlock", "SEBlock", "SmallMapConv2d", "build_model",
           "count_parameters", "describe", "expand_lean", "flops_per_image", "make_lean",
           "resemotenet", "unreached_parameters"]
