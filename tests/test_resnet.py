"""The ResNet-18 baseline of the ablation: its stem, its cost, one training step, a checkpoint round trip."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from resemote_lib import resnet
from resemote_lib.checkpoint import load_model, save_checkpoint
from resemote_lib.labels import CLASS_NAMES
from resemote_lib.model import build_model, count_parameters, flops_per_image
from resemote_lib.resnet import ResNet18


def test_the_stem_keeps_48_px_faces_large_enough_for_four_stages():
    """3x3 stride-1 conv and the max-pool: layer1..layer4 see 24, 12, 6 and 3 px maps at 48 px
    (ImageNet's 7x7 stride-2 stem would leave layer4 a 2x2 map); 7 outputs named fc4."""
    model = build_model("resnet18", image_size=48).eval()
    assert isinstance(model, ResNet18)
    assert (model.conv1.kernel_size, model.conv1.stride) == ((3, 3), (1, 1))
    sizes = {}
    hooks = [getattr(model, f"layer{k}").register_forward_hook(
        lambda m, i, o, k=k: sizes.__setitem__(k, tuple(o.shape[-2:]))) for k in range(1, 5)]
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 48, 48))
    for h in hooks:
        h.remove()
    assert out.shape == (2, len(CLASS_NAMES)) and model.fc4.out_features == len(CLASS_NAMES)
    assert sizes == {1: (24, 24), 2: (12, 12), 3: (6, 6), 4: (3, 3)}
    assert not hasattr(model, "fc")  # one classifier, under the name the rest of the library reads


def test_its_cost_is_stated_in_the_module_docstring():
    """The docstring says 0.63 GFLOPs per 48 px image, measured here, so that a changed stem cannot
    leave it wrong; the parameters are torchvision's ResNet-18's (11.2 M with a 7-class head)."""
    model = build_model("resnet18")
    assert round(flops_per_image(model, 48) / 1e9, 2) == 0.63
    assert "0.63 GFLOPs" in resnet.__doc__
    assert 11.1e6 < count_parameters(model) < 11.2e6


def test_one_training_step_lowers_the_loss_on_its_batch_and_a_checkpoint_loads_back(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18", image_size=48)
    x, y = torch.randn(8, 3, 48, 48), torch.randint(0, len(CLASS_NAMES), (8,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    losses = []
    for _ in range(3):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    path = save_checkpoint(tmp_path / "best.pt", model.eval(), class_names=CLASS_NAMES, image_size=48,
                           config={"model": "resnet18", "image_size": 48})
    loaded = load_model(path)
    assert isinstance(loaded, ResNet18) and loaded.class_names == CLASS_NAMES
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
