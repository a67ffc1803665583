"""The baseline a practitioner would try first: torchvision's ResNet-18, from scratch, for 48 px faces.

ImageNet's stem (a 7x7 stride-2 convolution, then a stride-2 max-pool) divides a 48 px face by 4
before the first residual stage (layer4 would see a 2x2 map; 0.20 GFLOPs per image). Here the
stem is one 3x3 stride-1 convolution keeping the max-pool, so the stages see 24, 12, 6 and 3 px
maps: 0.63 GFLOPs per 48 px image (``model.flops_per_image``, 2 per multiply-add), 1.6x the
lean ResEmoteNet's 0.40; without the max-pool it would cost 2.50 GFLOPs. (Its training speed
beside the other variants: ``make bench-ablation``.) The classifier is named ``fc4`` like ResEmoteNet's last
layer, so that checkpoints, prediction and class reordering read the class count the same way.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, ResNet

from .labels import NUM_CLASSES


class ResNet18(ResNet):
    """torchvision's ResNet-18 (``BasicBlock``, [2, 2, 2, 2]) with a 3x3 stride-1 stem conv.

    Args:
        num_classes: outputs of ``fc4``.
        in_channels: 3 (grayscale faces replicated to 3 channels, as for ResEmoteNet).
    """

    lean_size: int | None = None  # the same attribute as ResEmoteNet's: exact at every size

    def __init__(self, num_classes: int = NUM_CLASSES, in_channels: int = 3) -> None:
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision's
        self.fc4 = self.fc
        del self.fc

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc4(torch.flatten(self.avgpool(x), 1))


__all__ = ["ResNet18"]
