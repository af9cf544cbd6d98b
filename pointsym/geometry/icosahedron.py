"""The regular icosahedron and its rotation group, in the frame used by the icosphere grids.

The 12 level-0 vertices and 20 faces follow the concentric-spherical-network reference code
(spec ``csnn.md`` section 1.1), so that the 60 rotations returned by
:func:`icosahedral_rotations` permute the vertices of every subdivision level.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from pointsym.core import check_choice
from pointsym.geometry.rotations import rotation_about_axis

__all__ = ["icosahedron", "icosahedral_rotations", "vertex_permutation"]

_T = (1.0 + 5.0**0.5) / 2.0
_BASE_VERTICES = np.array(
    [
        (-1, _T, 0), (1, _T, 0), (-1, -_T, 0), (1, -_T, 0),
        (0, -1, _T), (0, 1, _T), (0, -1, -_T), (0, 1, -_T),
        (_T, 0, -1), (_T, 0, 1), (-_T, 0, -1), (-_T, 0, 1),
    ],
    dtype=np.float64,
)
_BASE_FACES = np.array(
    [
        (0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11),
        (1, 5, 9), (5, 11, 4), (11, 10, 2), (10, 7, 6), (7, 1, 8),
        (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9),
        (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1),
    ],
    dtype=np.int64,
)


def icosahedron() -> tuple[np.ndarray, np.ndarray]:
    """Unit-sphere icosahedron.

    Returns:
        vertices: float64 ``(12, 3)``, unit norm, in the reference order.
        faces: int64 ``(20, 3)`` vertex indices, counter-clockwise seen from outside.
    """
    verts = _BASE_VERTICES / np.sqrt(1.0 + _T**2)
    return verts.copy(), _BASE_FACES.copy()


@lru_cache(maxsize=1)
def _group() -> np.ndarray:
    verts, faces = icosahedron()
    # Generators: 5-fold about a vertex, 3-fold about a face centre. Their closure is the
    # full rotation group I (order 60); built by breadth-first multiplication.
    gen5 = rotation_about_axis(verts[0], 2 * np.pi / 5)
    gen3 = rotation_about_axis(verts[faces[0]].mean(axis=0), 2 * np.pi / 3)
    elements = [np.eye(3)]
    keys = {tuple(np.round(np.eye(3), 8).ravel())}
    frontier = [np.eye(3)]
    while frontier:
        new = []
        for g in frontier:
            for h in (gen5, gen3):
                m = h @ g
                key = tuple(np.round(m, 8).ravel())
                if key not in keys:
                    keys.add(key)
                    elements.append(m)
                    new.append(m)
        frontier = new
    group = np.stack(elements)
    # Snap to the exact group: each element maps vertices to vertices, so rebuild it from
    # that permutation by least squares (removes accumulated round-off).
    out = np.empty_like(group)
    for k, g in enumerate(group):
        perm = vertex_permutation(g, verts)
        u, _, vt = np.linalg.svd(verts[perm].T @ verts)
        out[k] = u @ vt
    return out


def icosahedral_rotations(*, backend: str = "numpy", dtype: Any = None, device: Any = None) -> Any:
    """The 60 proper rotations of the icosahedral group, ``(60, 3, 3)`` (float64 by default).

    Element 0 is the identity. Each matrix ``R`` maps the icosahedron's vertices onto
    themselves: ``icosahedron()[0] @ R.T`` is a permutation of the vertices.

    Args:
        backend: ``"numpy"`` (default) or ``"torch"``.
        dtype: output dtype; device: torch device for the torch backend.
    """
    check_choice("backend", backend, ("numpy", "torch"))
    group = _group().copy()
    if backend == "numpy":
        return group.astype(dtype or np.float64)
    import torch

    return torch.as_tensor(group, dtype=dtype or torch.float64, device=device)


def vertex_permutation(rotation: np.ndarray, vertices: np.ndarray, atol: float = 1e-6) -> np.ndarray:
    """Index array ``perm`` with ``vertices @ rotation.T == vertices[perm]``.

    Raises:
        ValueError: the rotation does not map the vertex set onto itself.
    """
    rotated = np.asarray(vertices) @ np.asarray(rotation).T
    d2 = ((rotated[:, None, :] - vertices[None, :, :]) ** 2).sum(-1)
    perm = d2.argmin(axis=1)
    if not np.all(np.sqrt(d2[np.arange(len(perm)), perm]) < atol) or len(set(perm.tolist())) != len(perm):
        raise ValueError("'rotation' does not map the given vertices onto themselves.")
    return perm
