"""Random rotations and reflections, in numpy or torch.

All functions return proper rotation matrices ``R`` (``R @ R.T = I``, ``det R = +1``) or,
for :func:`random_reflection`, improper ones (``det R = -1``). A point cloud ``x`` of shape
``(n, 3)`` is rotated as ``x @ R.T``.
"""

from __future__ import annotations

import sys
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


def _torch_generator(seed: Any) -> Any:
    """``seed`` when it is a ``torch.Generator`` (draws then come from torch), else ``None``."""
    torch = sys.modules.get("torch")
    return seed if torch is not None and isinstance(seed, torch.Generator) else None


def _torch_draws(gen: Any, n: int | None, backend: str, dtype: Any, device: Any, kind: str) -> Any:
    """Rotations drawn from the torch generator ``gen`` (on its device), as torch tensors.

    Haar: a normalised 4-D Gaussian ``(w, x, y, z)`` is a uniform unit quaternion; z: an angle
    ``2 pi U(0, 1)``. Batched: one ``randn(n, 4)`` / ``rand(n)`` call for all ``n`` matrices, so
    the stream depends only on the generator state and ``n`` (and ``dtype``).
    """
    import torch

    if backend != "torch":
        raise ValueError("A torch.Generator as 'seed' draws torch tensors; pass backend='torch'.")
    count = _count(n)
    dtype = dtype or torch.float64
    if kind == "z":
        a = torch.rand(count, generator=gen, dtype=dtype, device=gen.device) * (2 * np.pi)
        c, s = torch.cos(a), torch.sin(a)
        zero, one = torch.zeros_like(a), torch.ones_like(a)
        mats = torch.stack([c, -s, zero, s, c, zero, zero, zero, one], -1).view(count, 3, 3)
    else:
        q = torch.randn(count, 4, generator=gen, dtype=dtype, device=gen.device)
        w, x, y, z = (q / q.norm(dim=1, keepdim=True)).unbind(1)
        mats = torch.stack([
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ], -1).view(count, 3, 3)
    if device is not None:
        mats = mats.to(device)
    return mats if n is not None else mats[0]


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
        seed: ``None``, an ``int`` or a ``numpy.random.Generator`` (reproducible draws), or a
            ``torch.Generator`` (e.g. ``torch.default_generator``, the global torch RNG) to draw
            with torch on the generator's device (needs ``backend="torch"``; used inside
            training loops whose RNG state the Trainer checkpoints).
        backend: ``"numpy"`` (default) or ``"torch"``.
        dtype: output dtype (default float64 in either backend); with a torch generator the
            draws are made in this dtype.
        device: torch device when ``backend="torch"``.

    Returns:
        Array of shape ``(3, 3)`` or ``(n, 3, 3)``.
    """
    gen = _torch_generator(seed)
    if gen is not None:
        return _torch_draws(gen, n, backend, dtype, device, "so3")
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
    """Rotations about the z axis by angles uniform in [0, 2 pi). Arguments as :func:`random_rotation`."""
    gen = _torch_generator(seed)
    if gen is not None:
        return _torch_draws(gen, n, backend, dtype, device, "z")
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
