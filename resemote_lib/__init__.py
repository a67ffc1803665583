"""resemote: ResEmoteNet facial emotion recognition, reproduced and measured.

The core, in reading order (each a module named after its idea):

1. ``model.py``: the network (stem, SE block, residual blocks, head), its lean form and the
   ablation variants (``resnet.py``: the ResNet-18 baseline).
2. ``data/``: the datasets (FER2013, RAF-DB, AffectNet, folders, synthetic faces), one label
   order (``labels.py``), the duplicate audit and the clean protocol's exclusions.
3. ``train.py``: ``fit``, the loop over epochs; ``train_step.py``: one optimisation step;
   ``optim.py``, ``resume.py``, ``interrupt.py`` around them; ``params.py``: every setting.
4. ``evaluate.py``: a run or checkpoint tested (``metrics.py``, ``calibration.py``,
   ``inference.py``); ``checkpoint.py`` and ``runs.py``: what training writes and reads back.

The tools use the core and are never imported by it: ``predict/`` (faces in photos and videos,
export), ``reports/`` (figures, the paper's tables, exploration, the ablation), ``commands/``
(the command line and the notebook pipeline), ``kaggle/`` (kernels and datasets).

Imported from here: the network (``ResEmoteNet``, its blocks, ``resemotenet``), checkpoints
(``load_model``, ``save_checkpoint``, ``CheckpointError``) and the class order.
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
