"""Random rotations and reflections, in numpy or torch.

All functions return proper rotation matrices ``R`` (``R @ R.T = I``, ``det R = +1``) or,
for :func:`random_reflection`, improper ones (``det R = -1``). A point cloud ``x`` of shape
``(n, 3)`` is rotated as ``x @ R.T``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from pointsym.core import check_choice, check_int

__all__ = [
    "random_rotation",
    "random_z_rotation",
    "random_reflection",
    "rotation_about_axis",
]


def _rng(seed: Any) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"Expected 'seed' to be None, an int or a numpy Generator (got {seed!r}).")
    return np.random.default_rng(seed)


def _finish(mats: np.ndarray, n: int | None, backend: str, dtype: Any, device: Any) -> Any:
    check_choice("backend", backend, ("numpy", "torch"))
    out = mats if n is not None else mats[0]
    if backend == "numpy":
        return out.astype(dtype or np.float64)
    import torch

    return torch.as_tensor(out, dtype=dtype or torch.float64, device=device)


def _count(n: int | None) -> int:
    return 1 if n is None else check_int("n", n, minimum=0)


def random_rotation(
    n: int | None = None,
    seed: Any = None,
    *,
    backend: str = "numpy",
    dtype: Any = None,
    device: Any = None,
) -> Any:
    """Haar-uniform random rotations in SO(3).

    Args:
        n: number of matrices; ``None`` returns a single ``(3, 3)`` matrix.
        seed: ``None``, an ``int`` or a ``numpy.random.Generator`` (reproducible draws).
        backend: ``"numpy"`` (default) or ``"torch"``.
        dtype: output dtype (default float64 in either backend).
        device: torch device when ``backend="torch"``.

    Returns:
        Array of shape ``(3, 3)`` or ``(n, 3, 3)``.
    """
    count = _count(n)
    rng = _rng(seed)
    # Normalised 4D Gaussian -> uniform unit quaternion -> Haar measure on SO(3).
    mats = Rotation.random(count, random_state=rng).as_matrix() if count else np.zeros((0, 3, 3))
    return _finish(mats.reshape(count, 3, 3), n, backend, dtype, device)


def random_z_rotation(
    n: int | None = None,
    seed: Any = None,
    *,
    backend: str = "numpy",
    dtype: Any = None,
    device: Any = None,
) -> Any:
    """Rotations about the z axis by angles uniform in [0, 2 pi). Shapes as :func:`random_rotation`."""
    count = _count(n)
    angles = _rng(seed).uniform(0.0, 2.0 * np.pi, size=count)
    c, s = np.cos(angles), np.sin(angles)
    mats = np.zeros((count, 3, 3))
    mats[:, 0, 0], mats[:, 0, 1], mats[:, 1, 0], mats[:, 1, 1] = c, -s, s, c
    mats[:, 2, 2] = 1.0
    return _finish(mats, n, backend, dtype, device)


def random_reflection(
    n: int | None = None,
    seed: Any = None,
    *,
    backend: str = "numpy",
    dtype: Any = None,
    device: Any = None,
) -> Any:
    """Haar-uniform improper rotations (det = -1): ``-R`` with ``R`` Haar in SO(3).

    Every element of O(3) with determinant -1 is an inversion composed with a rotation, so
    this covers mirror planes too (a mirror is the inversion times a 180 degree rotation).
    """
    count = _count(n)
    rot = random_rotation(count, seed)
    return _finish(-rot, n, backend, dtype, device)


def rotation_about_axis(axis: Any, angle: float) -> np.ndarray:
    """Rotation matrix (3, 3) for ``angle`` radians about ``axis`` (any non-zero 3-vector)."""
    axis = np.asarray(axis, dtype=np.float64).reshape(3)
    norm = np.linalg.norm(axis)
    if not np.isfinite(norm) or norm == 0:
        raise ValueError(f"Expected 'axis' to be a finite non-zero 3-vector (got {axis.tolist()}).")
    return Rotation.from_rotvec(axis / norm * float(angle)).as_matrix()
