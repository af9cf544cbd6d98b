"""Grey-scale images as 3-D point clouds (the lifting used by paper 000, pixel-wise SOAP on MNIST).

:func:`image_to_points` is Algorithm 1 of paper 000 (``IMAGETOXYZ``); it is the one
implementation used by :mod:`pointsym.descriptors` and by the pixel-SOAP pipeline
(:mod:`pointsym.experiments.pixel_soap` re-exports it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pointsym.core import check_finite_array, check_int, check_positive, to_numpy

__all__ = ["image_to_points", "pixel_point_index"]


def _check_image(image: Any, name: str = "image") -> np.ndarray:
    """Validate one grey-scale image and return it as a float64 ``(rows, cols)`` array.

    Raises:
        TypeError: non-numeric dtype.
        ValueError: not 2-D, empty, or containing NaN/inf.
    """
    arr = to_numpy(name, image)
    if arr.dtype == bool:
        arr = arr.astype(np.float64)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"Expected '{name}' to be a real-valued grayscale array (got dtype {arr.dtype}).")
    if arr.ndim != 2:
        hint = (" For RGB(A) images convert to grayscale first;" if arr.ndim == 3 and arr.shape[-1] in (3, 4) else "")
        raise ValueError(
            f"Expected '{name}' to be a 2D grayscale array of shape (rows, cols) (got shape {arr.shape}).{hint} "
            "For a stack of images call image_to_points once per image."
        )
    if arr.size == 0:
        raise ValueError(f"'{name}' is empty (shape {arr.shape}); pass an image with at least one pixel.")
    return check_finite_array(name, arr.astype(np.float64, copy=False))


def _kept_mask(image: np.ndarray, intensity_step: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Heights ``z = floor(I / intensity_step)`` ``(rows, cols)`` and the mask of kept pixels (``z > 0``).

    ``image`` must already be validated by :func:`_check_image` (float64, 2-D, finite).
    """
    z = np.floor(image / float(intensity_step))
    return z, z > 0


def image_to_points(
    image: Any,
    sigma_disturbance: float = 0.0,
    rng: np.random.Generator | int | None = None,
    *,
    n_points: int | None = None,
    intensity_step: int = 10,
    return_pixels: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Lift a grayscale image to 3D points (Algorithm 1 of paper 000, ``IMAGETOXYZ``).

    Pixel ``(i, j)`` (row ``i``, column ``j``) with intensity ``I`` gives the point
    ``(x, y, z) = (j, i, floor(I / intensity_step))`` in pixel units (one pixel = 1 "Å" for
    SOAP); only pixels with ``z > 0`` (``I >= intensity_step`` for non-negative
    intensities) are kept, in row-major order. With ``sigma_disturbance > 0`` independent
    ``N(0, sigma_disturbance^2)`` displacements are added to x, y and z of every kept point
    (drawn per point in the order x, y, z, as in the algorithm's loop).

    Args:
        image: 2D grayscale array ``(rows, cols)``, any real dtype (MNIST: uint8 0..255).
        sigma_disturbance: standard deviation of the Gaussian displacement, in pixels
            (default: 0, no displacement).
        rng: ``numpy.random.Generator`` or integer seed for the displacement; ``None`` uses a
            fresh unseeded generator (only drawn from when ``sigma_disturbance > 0``).
        n_points: keep at most this many points: the ``n_points`` brightest kept pixels (largest
            intensity ``I``; ties broken in row-major pixel order, no randomness). The selected
            points are still *returned in row-major order*, not by brightness. ``None`` (default)
            keeps every pixel with ``z > 0``, as in the paper. The displacement is drawn for the
            selected points only.
        intensity_step: intensity per unit height ``z`` (paper 000: 10), a positive integer.
        return_pixels: also return the ``(row, col)`` of every point.

    Returns:
        points: float64 ``(n, 3)`` ``(x, y, z)``; and, with ``return_pixels``, int64 ``(n, 2)``
        ``(row, col)`` pixel indices of the same points, in the same (row-major) order.

    Raises:
        TypeError: the image is not real-valued, or ``n_points``/``intensity_step`` are not integers.
        ValueError: the image is not 2D, is empty, contains NaN/inf, or has no pixel with
            ``z > 0``; ``sigma_disturbance < 0``; ``n_points < 1``; ``intensity_step < 1``.
    """
    img = _check_image(image)
    sigma_disturbance = check_positive("sigma_disturbance", sigma_disturbance, allow_zero=True)
    step = check_int("intensity_step", intensity_step, minimum=1)
    if n_points is not None:
        n_points = check_int("n_points", n_points, minimum=1)
    z, mask = _kept_mask(img, step)
    rows, cols = np.nonzero(mask)  # row-major
    if rows.size == 0:
        raise ValueError(
            f"'image' (shape {img.shape}, max intensity {img.max():g}) has no pixel with floor(I / {step}) > 0, so "
            f"Algorithm 1 gives an empty point set; pass an image with intensities >= {step} (e.g. uint8 0..255, "
            "not 0..1 floats: multiply those by 255), or a smaller 'intensity_step'."
        )
    if n_points is not None and n_points < rows.size:
        # Stable sort on -I over row-major pixels: brightest first, ties row-major; then back to row-major.
        brightest = np.argsort(-img[rows, cols], kind="stable")[:n_points]
        keep = np.sort(brightest)
        rows, cols = rows[keep], cols[keep]
    points = np.stack([cols, rows, z[rows, cols]], axis=1).astype(np.float64)
    if sigma_disturbance > 0:
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        points = points + gen.normal(0.0, sigma_disturbance, size=points.shape)
    if return_pixels:
        return points, np.stack([rows, cols], axis=1).astype(np.int64)
    return points


def pixel_point_index(image: Any, row: int, col: int) -> int:
    """Index of pixel ``(row, col)`` in ``image_to_points(image)`` (default arguments: every
    pixel with ``floor(I / 10) > 0``, row-major order).

    Raises ``ValueError`` if the pixel is outside the image or is dropped (``z = 0``).
    """
    img = _check_image(image)
    check_int("row", row, minimum=0, maximum=img.shape[0] - 1)
    check_int("col", col, minimum=0, maximum=img.shape[1] - 1)
    _, mask = _kept_mask(img)
    if not mask[row, col]:
        raise ValueError(f"Pixel ({row}, {col}) has intensity {img[row, col]:g} < 10, so it is not a point; "
                         "choose a pixel with floor(I / 10) > 0.")
    return int(np.count_nonzero(mask.ravel()[: row * img.shape[1] + col]))
