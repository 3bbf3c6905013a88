"""The scikit-learn digits loader: 1,797 8x8 images, small enough for smoke tests without downloads."""
from __future__ import annotations

import numpy as np
import torch

from core.datasets.base import Dataset, Split, register_dataset
from core.datasets.splits import carve_test, carve_validation

CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PROMPTS = tuple(f"the digit {name}" for name in CLASS_NAMES)
# Computed once from the train split below (1,294 images) and written in, so loading
# does not depend on a pass over the data.
MEAN = (0.3061,)
STD = (0.3764,)


@register_dataset("digits")
def load_digits() -> Dataset:
    """Digits: a fixed 20% test split, then the validation split from the rest."""
    # Imported here: scikit-learn takes a second to import and only this loader needs it.
    from sklearn.datasets import load_digits as sklearn_digits

    raw = sklearn_digits()
    # Pixel values are integers 0..16; stretch them to the uint8 range every loader uses.
    images = np.rint(raw.images * (255.0 / 16.0)).astype(np.uint8)
    everything = Split(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(raw.target).long())
    rest, test = carve_test("digits", everything)
    train, val = carve_validation("digits", rest)
    return Dataset(
        name="digits",
        class_names=CLASS_NAMES,
        prompts=PROMPTS,
        channels=1,
        image_size=8,
        mean=MEAN,
        std=STD,
        train=train,
        val=val,
        test=test,
        source="sklearn.datasets.load_digits",
        flips=False,
    )
