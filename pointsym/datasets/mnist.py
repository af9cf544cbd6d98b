"""MNIST handwritten digits (LeCun et al. 1998)."""

from __future__ import annotations

import os

import numpy as np

from pointsym.datasets._root import check_source, data_file, embedded_file

__all__ = ["load_mnist"]

SPLITS = ("train", "test")


def load_mnist(
    split: str = "train", *, source: str = "full", data_dir: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load MNIST images and labels.

    Args:
        split: ``"train"`` (60,000 full / 2,000 embedded) or ``"test"`` (10,000 / 500).
        source: ``"full"`` reads ``mnist/mnist.npz`` under the data root; ``"embedded"`` the
            small subset shipped with pointsym (first images of each split).
        data_dir: data root (default: ``$POINTSYM_DATA`` or ``../shared/data``).

    Returns:
        images: uint8 ``(n, 28, 28)``, 0 = background; labels: uint8 ``(n,)`` in 0..9.
    """
    if split not in SPLITS:
        raise ValueError(f"Expected 'split' to be one of {list(SPLITS)} (got {split!r}).")
    path = (
        embedded_file("mnist_subset.npz")
        if check_source(source) == "embedded"
        else data_file("mnist/mnist.npz", data_dir, what="MNIST")
    )
    with np.load(path) as d:
        return d[f"x_{split}"].astype(np.uint8), d[f"y_{split}"].astype(np.uint8)
