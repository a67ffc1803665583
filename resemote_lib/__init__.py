"""resemote: ResEmoteNet facial emotion recognition, reproduced and measured.

Public API (the rest lives in the submodules: ``data``, ``train``, ``evaluate``,
``plots``, ``provenance``, ``pipeline``, ``kaggle``):
"""

from .checkpoint import CheckpointError, load_model, save_checkpoint
from .labels import CLASS_NAMES, REFERENCE_CLASS_NAMES
from .model import ResEmoteNet, ResidualBlock, SEBlock, resemotenet

__all__ = [
    "CLASS_NAMES", "REFERENCE_CLASS_NAMES", "CheckpointError", "ResEmoteNet", "ResidualBlock",
    "SEBlock", "load_model", "resemotenet", "save_checkpoint",
]
