"""resemote: ResEmoteNet facial emotion recognition, reproduced and measured.

Public API (the rest lives in the submodules: ``data``, ``train``, ``evaluate``,
``plots``, ``provenance``, ``pipeline``, ``kaggle``):
"""

from .usage import refuse_module_run

refuse_module_run()  # `python -m resemote_lib.<module>`: one line naming the command to run, exit 2

from .checkpoint import CheckpointError, load_model, save_checkpoint  # noqa: E402
from .labels import CLASS_NAMES, REFERENCE_CLASS_NAMES  # noqa: E402
from .model import ResEmoteNet, ResidualBlock, SEBlock, resemotenet  # noqa: E402

__all__ = [
    "CLASS_NAMES", "REFERENCE_CLASS_NAMES", "CheckpointError", "ResEmoteNet", "ResidualBlock",
    "SEBlock", "load_model", "resemotenet", "save_checkpoint",
]
