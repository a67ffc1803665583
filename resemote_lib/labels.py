"""Class names and every dataset's own label codes, remapped in this one place.

The canonical order used everywhere in this project (models we train, metrics, plots):
angry, disgust, fear, happy, neutral, sad, surprise (alphabetical, as the Kaggle
FER2013 folders). Each table below maps a dataset's code (or folder name) to that
canonical index; `tests/test_labels.py` checks every table by name, not by position.
"""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
NUM_CLASSES = len(CLASS_NAMES)
_INDEX = {name: i for i, name in enumerate(CLASS_NAMES)}

# The reference implementation's output order (its training folders were listed in
# this order); a reference checkpoint's logits mean these classes, in this order.
REFERENCE_CLASS_NAMES: tuple[str, ...] = (
    "happy", "surprise", "sad", "angry", "disgust", "fear", "neutral",
)

# fer2013.csv `emotion` column.
FER2013_CODES: dict[int, int] = {
    0: _INDEX["angry"], 1: _INDEX["disgust"], 2: _INDEX["fear"], 3: _INDEX["happy"],
    4: _INDEX["sad"], 5: _INDEX["surprise"], 6: _INDEX["neutral"],
}
# msambare/fer2013 folder names are already the canonical names.
FER2013_FOLDERS: dict[str, int] = {name: _INDEX[name] for name in CLASS_NAMES}

# RAF-DB basic, official list_patition_label.txt and the Kaggle release (1..7).
RAFDB_CODES: dict[int, int] = {
    1: _INDEX["surprise"], 2: _INDEX["fear"], 3: _INDEX["disgust"], 4: _INDEX["happy"],
    5: _INDEX["sad"], 6: _INDEX["angry"], 7: _INDEX["neutral"],
}

# AffectNet official training.csv / validation.csv `expression`; 7..10 (contempt, none,
# uncertain, no-face) are outside the 7-class task and are excluded, and counted.
AFFECTNET_CODES: dict[int, int] = {
    0: _INDEX["neutral"], 1: _INDEX["happy"], 2: _INDEX["sad"], 3: _INDEX["surprise"],
    4: _INDEX["fear"], 5: _INDEX["disgust"], 6: _INDEX["angry"],
}
AFFECTNET_EXCLUDED_CODES: dict[int, str] = {
    7: "contempt", 8: "none", 9: "uncertain", 10: "no-face",
}
# noamsegal/affectnet-training-data labels.csv `label` (folder names); contempt excluded.
AFFECTNET_KAGGLE_NAMES: dict[str, int] = {
    "anger": _INDEX["angry"], "disgust": _INDEX["disgust"], "fear": _INDEX["fear"],
    "happy": _INDEX["happy"], "neutral": _INDEX["neutral"], "sad": _INDEX["sad"],
    "surprise": _INDEX["surprise"],
}
AFFECTNET_KAGGLE_EXCLUDED: frozenset[str] = frozenset({"contempt"})

# Folder names that datasets of class folders use for our seven classes (the ``folder``
# layout): looked up case-insensitively (``class_of_folder``). Any other folder (contempt,
# for instance) is outside the seven-class task: excluded and counted.
CLASS_SYNONYMS: dict[str, int] = {
    "anger": _INDEX["angry"], "angry": _INDEX["angry"],
    "disgust": _INDEX["disgust"], "disgusted": _INDEX["disgust"],
    "fear": _INDEX["fear"], "fearful": _INDEX["fear"], "afraid": _INDEX["fear"],
    "happy": _INDEX["happy"], "happiness": _INDEX["happy"], "joy": _INDEX["happy"],
    "neutral": _INDEX["neutral"], "calm": _INDEX["neutral"],
    "sad": _INDEX["sad"], "sadness": _INDEX["sad"],
    "surprise": _INDEX["surprise"], "surprised": _INDEX["surprise"],
}


def class_of_folder(name: str) -> int | None:
    """The canonical index a class folder's name stands for (``CLASS_SYNONYMS``, any
    case), or None for a folder outside the seven classes."""
    return CLASS_SYNONYMS.get(name.strip().casefold())


__all__ = [
    "AFFECTNET_CODES", "AFFECTNET_EXCLUDED_CODES", "AFFECTNET_KAGGLE_EXCLUDED",
    "AFFECTNET_KAGGLE_NAMES", "CLASS_NAMES", "CLASS_SYNONYMS", "FER2013_CODES", "FER2013_FOLDERS",
    "NUM_CLASSES", "RAFDB_CODES", "REFERENCE_CLASS_NAMES", "class_of_folder",
]
