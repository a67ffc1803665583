from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from resemote_lib.model import (
    VARIANTS,
    ResEmoteNet,
    ResidualBlock,
    SEBlock,
    SmallMapConv2d,
    build_model,
    count_parameters,
    describe,
    expand_lean,
    make_lean,
    unreached_parameters,
)

from .conftest import ACCEPT, REFERENCE_KEYS

GOLDEN = Path(__file__).parent / "golden" / "model_logits.json"


def _reference_keys() -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in REFERENCE_KEYS.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        name, shape, _dtype = line.split("\t")
        rows.append((name, tuple(json.loads(shape.replace("(", "[").replace(",)", "]").replace(")", "]")))))
    return rows


@pytest.mark.parametrize("size", [64, 48])
@pytest.mark.parametrize("batch", [1, 8])
def test_output_shape_and_finite(size, batch):
    model = ResEmoteNet().eval()
    with torch.no_grad():
        out = model(torch.randn(batch, 3, size, size))
    assert out.shape == (batch, 7)
    assert torch.isfinite(out).all()


def test_parameter_count():
    assert count_parameters(ResEmoteNet()) == 80_238_599


def test_state_dict_matches_reference_keys_and_shapes():
    expected = _reference_keys()
    assert len(expected) == 94
    got = [(k, tuple(v.shape)) for k, v in ResEmoteNet().state_dict().items()]
    assert got == expected


def test_num_classes_and_channels_are_parameters():
    model = ResEmoteNet(num_classes=6, in_channels=1)
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 6)


def test_se_block_gates_channels_by_hand():
    se = SEBlock(16, reduction=16)  # bottleneck of one unit
    with torch.no_grad():
        se.fc[0].weight.fill_(1.0 / 16)  # z -> mean of channel means
        se.fc[2].weight.copy_(torch.arange(16, dtype=torch.float32).view(16, 1) - 8)
    x = torch.ones(1, 16, 4, 4) * 2.0  # every channel mean is 2, hidden unit = relu(2) = 2
    gates = torch.sigmoid(2.0 * (torch.arange(16, dtype=torch.float32) - 8))
    torch.testing.assert_close(se(x), 2.0 * gates.view(1, 16, 1, 1).expand(1, 16, 4, 4))
    torch.testing.assert_close(se.gates(x), gates.view(1, 16))


def test_residual_block_identity_shortcut_adds_input():
    block = ResidualBlock(8, 8, stride=1)
    assert len(block.shortcut) == 0
    with torch.no_grad():
        for m in (block.conv1, block.conv2):
            m.weight.zero_()
            m.bias.zero_()
    block.eval()  # BN of a zero map is its bias (0): the block returns relu(x)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(block(x), torch.relu(x))


def test_residual_block_projection_shortcut_shape():
    block = ResidualBlock(8, 16, stride=2)
    assert block(torch.randn(2, 8, 6, 6)).shape == (2, 16, 3, 3)
    assert len(block.shortcut) == 2


def test_unreached_parameters_at_64():
    # The reference README: about 44M of the 80M parameters get no data gradient at 64x64.
    unreached = unreached_parameters(ResEmoteNet(), image_size=64)
    assert sum(unreached.values()) == 44_040_192
    assert unreached["res_block1.conv1"] == 0
    # ...and a measured check: a gradient on res_block3.conv2's corner taps is exactly 0.
    model = ResEmoteNet().train()
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    grad = model.res_block3.conv2.weight.grad
    assert grad[:, :, 1, 1].abs().sum() > 0
    assert grad[:, :, 0, 0].abs().sum() == 0


def test_golden_logits_under_fixed_seed():
    torch.manual_seed(0)
    model = ResEmoteNet().eval()
    x = torch.linspace(-2, 2, 2 * 3 * 64 * 64).view(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
    if ACCEPT or not GOLDEN.exists():
        if not ACCEPT:
            pytest.fail(f"{GOLDEN} missing: run with RESEMOTE_ACCEPT=1 to write it")
        GOLDEN.write_text(json.dumps(logits.tolist(), indent=1))
    expected = torch.tensor(json.loads(GOLDEN.read_text()))
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_builds_and_trains_a_step(name):
    torch.manual_seed(0)
    model = build_model(name, image_size=32).train()
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4) % 7
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and model(x).shape == (4, 7)
    assert (getattr(model, "se", None) is None) == (name in ("cnn", "cnn_res", "cnn_res_lean", "resnet18"))


def test_variants_share_the_reference_names():
    full = dict(ResEmoteNet().state_dict())
    for name in ("cnn_se", "cnn_res"):
        keys = build_model(name).state_dict().keys()
        assert all(k in full for k in keys if not k.startswith("fc1."))  # fc1's width follows the features
    assert count_parameters(build_model("resemotenet")) == 80_238_599
    assert count_parameters(build_model("resemotenet_lean", image_size=64)) == 80_238_599 - 44_040_192
    with pytest.raises(ValueError, match="unknown model 'resnet'; available"):
        build_model("resnet")


def test_lean_equals_full_at_64():
    import copy

    torch.manual_seed(0)
    full = build_model("resemotenet").eval()
    lean = make_lean(copy.deepcopy(full), 64).eval()
    assert lean.res_block3.conv1.kernel_size == (2, 2) and lean.res_block3.conv2.kernel_size == (1, 1)
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(full(x), lean(x), rtol=1e-5, atol=1e-6)  # the same sums, in another order


@pytest.mark.parametrize("size", [64, 48])
def test_one_sgd_step_on_full_and_lean_keeps_them_equal(size):
    """From one initialisation, one SGD step (momentum 0.9, weight decay 1e-4, train mode:
    dropout and BatchNorm batch statistics) on the full and on the lean network gives the same
    kept weights and the same logits afterwards, within float32 summation order: the largest
    difference allowed is 1e-5 (relative 1e-4). The taps the lean form drops get no gradient
    in the full one (only their weight decay moves them), so no kept number can differ."""
    import copy

    torch.manual_seed(0)
    full = build_model("resemotenet")
    lean = make_lean(copy.deepcopy(full), size)
    x, y = torch.randn(8, 3, size, size), torch.randint(0, 7, (8,))
    for model in (full, lean):
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        for _ in range(2):  # twice, so that the momentum buffers take part
            torch.manual_seed(1)  # the same dropout masks for both
            torch.nn.functional.cross_entropy(model.train()(x), y).backward()
            opt.step()
            opt.zero_grad()
    kept = expand_lean(lean.state_dict(), size)
    cut = {k for k, v in lean.state_dict().items() if v.shape != full.state_dict()[k].shape}
    assert cut == {"res_block3.conv1.weight", "res_block3.conv2.weight"}  # at 48 and 64 px alike
    for key, value in full.state_dict().items():
        if key in cut:  # compare only the kept taps: the dropped ones decayed in the full model
            mask = kept[key] != 0
            torch.testing.assert_close(value[mask], kept[key][mask], rtol=1e-4, atol=1e-5)
        else:
            torch.testing.assert_close(value, kept[key], rtol=1e-4, atol=1e-5, msg=key)
    with torch.no_grad():
        z = torch.randn(4, 3, size, size)
        torch.testing.assert_close(full.eval()(z), lean.eval()(z), rtol=1e-4, atol=1e-5)


def test_a_lean_checkpoint_expands_to_the_reference_network():
    torch.manual_seed(0)
    lean = build_model("resemotenet_lean", image_size=64).eval()
    full = ResEmoteNet().eval()
    full.load_state_dict(expand_lean(lean.state_dict(), 64), strict=True)  # the reference's keys and shapes
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(full(x), lean(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="not the lean form at 32 px"):
        expand_lean(lean.state_dict(), 32)


def test_a_lean_model_at_another_input_size_is_an_error_naming_its_size():
    lean = build_model("resemotenet_lean", image_size=48).eval()
    with pytest.raises(ValueError, match=r"lean form, exact at 48x48 px only.*got a 64x64 input"):
        lean(torch.zeros(1, 3, 64, 64))
    assert describe("resemotenet_lean", 48) == "ResEmoteNet (lean form, exact at 48 px)"
    assert describe("resemotenet", 64) == "ResEmoteNet" and "ablation variant" in describe("cnn", 64)

def test_small_map_convolution_under_bf16_autocast_is_one_matrix_product_not_a_weight_copy_per_image():
    """bf16 evaluation on the CPU: a 3-D input to ``F.linear`` under autocast took a batched path
    that expanded and copied the weight once per image (``aten::bmm`` on [N, K, out] copies: 7x
    slower evaluation than fp32, measured). The product is 2-D: no bmm, and the same function."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(256, 512, 3, stride=2, padding=1)
    small = SmallMapConv2d(256, 512, 3, stride=2, padding=1)
    small.load_state_dict(conv.state_dict())
    x = torch.randn(16, 256, 6, 6)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            got = small(x)
        expected = conv(x)
    ops = {e.key for e in prof.key_averages()}
    assert "aten::bmm" not in ops and ({"aten::mm", "aten::addmm", "aten::linear"} & ops)
    torch.testing.assert_close(got.float(), expected.float(), rtol=0.05, atol=0.05)



@pytest.mark.parametrize("cin, cout, k, stride, pad, size", [
    (64, 96, 3, 1, 1, 2), (32, 64, 3, 2, 1, 3), (64, 128, 2, 2, 0, 2), (64, 64, 1, 1, 0, 1), (32, 64, 1, 2, 0, 6),
    (16, 32, 3, 1, 1, 12)])  # the last: a large map, left to oneDNN
def test_small_map_convolution_is_the_same_function_as_conv2d(cin, cout, k, stride, pad, size):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(cin, cout, k, stride=stride, padding=pad)
    small = SmallMapConv2d(cin, cout, k, stride=stride, padding=pad)
    small.load_state_dict(conv.state_dict())  # the same parameter names and shapes
    x = torch.randn(4, cin, size, size, requires_grad=True)
    g = torch.randn_like(conv(x))
    expected = (conv(x), *torch.autograd.grad(conv(x), (x, conv.weight, conv.bias), g))
    got = (small(x), *torch.autograd.grad(small(x), (x, small.weight, small.bias), g))
    for a, b in zip(expected, got, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # traced (export) it records the plain convolution
        traced = torch.jit.trace(small, x.detach())
    assert "unfold" not in str(traced.graph) and "im2col" not in str(traced.graph)


@pytest.mark.parametrize("size", [48, 64])
def test_lean_cnn_res_equals_the_full_one_at_its_input_size(size):
    """The ablation's ``cnn_res_lean`` trains at the lean ResEmoteNet's cost per image; it must be the
    same function as ``cnn_res`` (stem + residual blocks + head, no SE) at its size."""
    import copy

    torch.manual_seed(0)
    full = build_model("cnn_res").eval()
    lean = make_lean(copy.deepcopy(full), size).eval()
    assert lean.se is None and lean.res_block3.conv2.kernel_size == (1, 1)
    assert dict(VARIANTS["cnn_res_lean"]) == {**VARIANTS["cnn_res"], "lean": True}
    built = build_model("cnn_res_lean", image_size=size)
    assert [tuple(p.shape) for p in built.parameters()] == [tuple(p.shape) for p in lean.parameters()]
    x = torch.randn(4, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(full(x), lean(x), rtol=1e-5, atol=1e-5)
