from __future__ import annotations

import torch
from torch import nn

from resemote_lib.model import ResEmoteNet, unreached_parameters
from resemote_lib.reports.gradients import gradient_flow, gradient_flow_table, summary


class _OneConv(nn.Module):
    """A 3x3 convolution (padding 1) on a 1x1 map, then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 3, padding=1, bias=False)
        self.fc4 = nn.Linear(3, 4)

    def forward(self, x):
        return self.fc4(self.conv1(x).flatten(1))


def test_a_3x3_conv_on_a_1x1_map_gets_gradient_on_its_centre_tap_only():
    flow = gradient_flow(_OneConv(), image_size=1, batch=16).set_index("layer")
    conv = flow.loc["conv1"]
    assert conv["params"] == 2 * 3 * 9 and conv["zero_grad_params"] == 2 * 3 * 8  # 8 of 9 taps per kernel
    assert conv["zero_grad_share"] == 8 / 9 and conv["grad_norm"] > 0


def test_measured_dead_taps_include_the_structural_ones_at_64():
    torch.manual_seed(0)
    flow = gradient_flow(ResEmoteNet(), 64, batch=8).set_index("layer")
    structural = unreached_parameters(ResEmoteNet(), 64)
    for layer in ("res_block3.conv1", "res_block3.conv2"):
        assert flow.loc[layer, "zero_grad_params"] >= structural[layer]
    assert flow.loc["res_block3.conv2", "zero_grad_params"] == structural["res_block3.conv2"]  # 8/9 exactly


def test_the_lean_variant_has_no_structurally_dead_taps():
    table = summary(gradient_flow_table(["resemotenet", "resemotenet_lean"], sizes=(64,), batch=8))
    full, lean = table.set_index("variant")["params"], table.set_index("variant")["zero_grad_params"]
    assert full["resemotenet"] - full["resemotenet_lean"] == 44_040_192
    assert lean["resemotenet_lean"] < lean["resemotenet"] - 40_000_000


def test_the_table_says_which_variant_and_size_it_is_measuring(capsys):
    """Issue 24.17: 05_ablation's gradient-flow cell said nothing for about a minute."""
    gradient_flow_table(["cnn", "cnn_se"], sizes=(16,), batch=2, progress=True)
    err = capsys.readouterr().err
    assert "gradient flow: cnn at 16 px" in err and "gradient flow: cnn_se at 16 px" in err
    assert "2 model(s) measured" in err
