"""The batch transforms (``resemote_lib/data/transforms.py``): normalisation and flips."""

from __future__ import annotations

import warnings

import torch

from resemote_lib.data.transforms import EVAL, TRAIN


def test_transforms_normalise_and_flip():
    img = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    img[:, :, :, 0] = 255
    x = EVAL(img)
    assert x.shape == (2, 3, 4, 4)
    torch.testing.assert_close(x[0, :, 0, 0], (1 - torch.tensor(EVAL.mean)) / torch.tensor(EVAL.std))
    g = torch.Generator().manual_seed(0)
    flipped = TRAIN(img.repeat(50, 1, 1, 1), generator=g)
    left = flipped[:, 0, 0, 0] > 0
    assert 0 < left.sum() < 100  # some flipped, some not
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert EVAL(img[0]).shape == (3, 4, 4)
