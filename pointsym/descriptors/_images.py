"""Grey-scale images as 3-D point clouds (the lifting used by paper 000, pixel-wise SOAP on MNIST)."""

from __future__ import annotations

from typing import Any

import numpy as np

from pointsym._validation import check_int, to_numpy

__all__ = ["image_to_points"]


def image_to_points(image: Any, *, n_points: int | None = None, intensity_step: int = 10) -> np.ndarray:
    """Lift a grey-scale image to points ``(x, y, z) = (column, row, floor(I / step))``, keeping ``z > 0``.

    Args:
        image: ``(H, W)`` array of non-negative intensities (MNIST: uint8 0..255).
        n_points: keep at most this many points: the brightest ones, ties broken in row-major
            pixel order (deterministic, no randomness). ``None`` keeps every point.
        intensity_step: intensity per unit height (paper 000: 10).

    Returns:
        ``(n, 3)`` float64 points in pixel units (one pixel = 1 "Å" for SOAP), in the kept
        order: decreasing intensity, then row-major.
    """
    img = to_numpy("image", image)
    if img.ndim != 2:
        raise ValueError(f"Expected 'image' of shape (H, W) (got {img.shape}).")
    step = check_int("intensity_step", intensity_step, minimum=1)
    rows, cols = np.nonzero(img >= step)
    values = img[rows, cols].astype(np.int64)
    order = np.lexsort((cols, rows, -values))
    if n_points is not None:
        order = order[: check_int("n_points", n_points, minimum=1)]
    rows, cols, values = rows[order], cols[order], values[order]
    return np.stack([cols, rows, values // step], axis=1).astype(np.float64)
