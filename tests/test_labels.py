"""Every label table by name: the folder synonyms that the ``folder`` dataset reads."""

from __future__ import annotations

import pytest

from resemote_lib.labels import CLASS_NAMES, CLASS_SYNONYMS, class_of_folder


def test_class_synonyms_are_exactly_these():
    by_name = {spelling: CLASS_NAMES[k] for spelling, k in CLASS_SYNONYMS.items()}
    assert by_name == {
        "anger": "angry", "angry": "angry",
        "disgust": "disgust", "disgusted": "disgust",
        "fear": "fear", "fearful": "fear", "afraid": "fear",
        "happy": "happy", "happiness": "happy", "joy": "happy",
        "neutral": "neutral", "calm": "neutral",
        "sad": "sad", "sadness": "sad",
        "surprise": "surprise", "surprised": "surprise",
    }


@pytest.mark.parametrize(("folder", "expected"), [
    ("Anger", "angry"), ("HAPPINESS", "happy"), ("Joy", "happy"), ("Fearful", "fear"), ("Surprised", "surprise"),
    ("calm", "neutral"), (" Sad ", "sad"),
])
def test_folder_names_are_read_in_any_case(folder, expected):
    assert CLASS_NAMES[class_of_folder(folder)] == expected


@pytest.mark.parametrize("folder", ["contempt", "Contempt", "other", "happy2", ""])
def test_other_folders_are_outside_the_seven_classes(folder):
    assert class_of_folder(folder) is None
