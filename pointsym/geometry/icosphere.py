"""Icosphere hierarchy (subdivided icosahedron) and fast nearest-vertex look-up.

Level 0 is :func:`pointsym.geometry.icosahedron`; level ``l`` is obtained from level
``l - 1`` by splitting every triangle into four at its edge midpoints and projecting the
new vertices onto the unit sphere (spec ``csnn.md`` section 1.2). New vertices are
*appended*, so the first ``10 * 4**(l-1) + 2`` vertices of level ``l`` are exactly the
vertices of level ``l - 1`` in the same order (the *prefix property*). Pooling between
levels relies on it: coarse vertex ``v`` is fine vertex ``v``.

Because every rotation of :func:`pointsym.geometry.icosahedral_rotations` maps the level-0
vertices onto themselves, and midpoints onto midpoints, it permutes the vertices (and the
edges and faces) of every level.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from pointsym.core import check_int
from pointsym.geometry.icosahedron import icosahedron

__all__ = ["Icosphere", "icosphere", "icosphere_size", "nearest_vertices"]

#: Highest supported level (10,485,762 vertices would not fit the look-up tables).
MAX_LEVEL = 7


@dataclass(frozen=True)
class Icosphere:
    """One level of the icosphere hierarchy (arrays are read-only and shared by a cache).

    Attributes:
        level: subdivision level ``l``.
        vertices: float64 ``(V, 3)`` unit vectors, ``V = 10 * 4**l + 2``.
        faces: int64 ``(20 * 4**l, 3)`` vertex indices, counter-clockwise from outside.
        edges: int64 ``(30 * 4**l, 2)`` undirected edges ``i < j``, sorted.
        neighbors: int64 ``(V, 6)`` 1-ring of every vertex (sorted); the 12 level-0
            vertices have degree 5 and their last column is ``-1``.
        degrees: int64 ``(V,)``: 5 for the first 12 vertices, 6 for all others.
    """

    level: int
    vertices: np.ndarray
    faces: np.ndarray
    edges: np.ndarray
    neighbors: np.ndarray
    degrees: np.ndarray

    @property
    def n_vertices(self) -> int:
        return int(self.vertices.shape[0])

    def neighbors_with_self(self) -> np.ndarray:
        """``(V, 7)`` index table ``[v, 1-ring...]`` where degree-5 rows repeat ``v`` at the end.

        Repeating ``v`` (instead of a ``-1`` pad) keeps every entry a valid index; use
        :attr:`degrees` when a sum must not count ``v`` twice.
        """
        nb = self.neighbors.copy()
        v = np.arange(self.n_vertices)
        nb[nb < 0] = np.broadcast_to(v[:, None], nb.shape)[nb < 0]
        return np.concatenate([v[:, None], nb], axis=1)

    def __repr__(self) -> str:
        return (f"Icosphere(level={self.level}, n_vertices={self.n_vertices}, n_faces={len(self.faces)}, "
                f"n_edges={len(self.edges)})")


def icosphere_size(level: int) -> int:
    """Number of vertices ``10 * 4**level + 2`` of icosphere level ``level``."""
    level = check_int("level", level, minimum=0, maximum=MAX_LEVEL)
    return 10 * 4**level + 2


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _subdivide(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One midpoint subdivision; new vertices are appended after the old ones."""
    n = len(vertices)
    a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
    # Edge (i, j) of face k, in the order ab, bc, ca; unique undirected edges get new
    # vertex ids in order of first appearance (face by face), which is deterministic.
    pairs = np.stack([np.stack([a, b], 1), np.stack([b, c], 1), np.stack([c, a], 1)], axis=1)  # (F, 3, 2)
    flat = np.sort(pairs.reshape(-1, 2), axis=1)
    keys = flat[:, 0] * n + flat[:, 1]
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # unique edges by first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    mid_id = (n + rank[inverse]).reshape(-1, 3)  # (F, 3): m_ab, m_bc, m_ca
    edge_pairs = flat[first[order]]
    mids = vertices[edge_pairs[:, 0]] + vertices[edge_pairs[:, 1]]
    mids /= np.linalg.norm(mids, axis=1, keepdims=True)
    m_ab, m_bc, m_ca = mid_id[:, 0], mid_id[:, 1], mid_id[:, 2]
    new_faces = np.stack(
        [
            np.stack([a, m_ab, m_ca], 1),
            np.stack([m_ab, b, m_bc], 1),
            np.stack([m_ca, m_bc, c], 1),
            np.stack([m_ab, m_bc, m_ca], 1),
        ],
        axis=1,
    ).reshape(-1, 3)  # the 4 children of face k are faces 4k..4k+3
    return np.concatenate([vertices, mids]), new_faces


@cache
def _build(level: int) -> Icosphere:
    if level == 0:
        verts, faces = icosahedron()
    else:
        coarse = _build(level - 1)
        verts, faces = _subdivide(np.array(coarse.vertices), np.array(coarse.faces))
    n = len(verts)
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.unique(np.sort(e, axis=1), axis=0)
    # 1-ring: collect both directions of every edge, sort by (vertex, neighbour).
    src = np.concatenate([e[:, 0], e[:, 1]])
    dst = np.concatenate([e[:, 1], e[:, 0]])
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    degrees = np.bincount(src, minlength=n)
    neighbors = np.full((n, 6), -1, dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(degrees)[:-1]])
    slot = np.arange(len(src)) - start[src]
    neighbors[src, slot] = dst
    return Icosphere(
        level=level,
        vertices=_readonly(verts.astype(np.float64)),
        faces=_readonly(faces.astype(np.int64)),
        edges=_readonly(e.astype(np.int64)),
        neighbors=_readonly(neighbors),
        degrees=_readonly(degrees.astype(np.int64)),
    )


def icosphere(level: int) -> Icosphere:
    """The icosphere of subdivision level ``level`` (cached; arrays are read-only).

    Args:
        level: 0 (icosahedron, 12 vertices) to 7; ``V = 10 * 4**level + 2``.

    Returns:
        An :class:`Icosphere` with vertices, faces, edges, 1-ring neighbours and degrees.

    Example:
        >>> from pointsym.geometry import icosphere
        >>> s = icosphere(2)
        >>> s.vertices.shape, s.faces.shape, s.edges.shape
        ((162, 3), (320, 3), (480, 2))
    """
    return _build(check_int("level", level, minimum=0, maximum=MAX_LEVEL))


# ---------------------------------------------------------------------------------------
# Nearest-vertex look-up in O(1) per query direction.
#
# A cube map splits the sphere into 6 * M * M cells (gnomonic projection onto the faces of
# a cube). For every cell we store every vertex that can be among the k nearest vertices of
# *any* direction in that cell; a query then compares only against its cell's candidates.
# Conservative bound (angles on the sphere): if q lies within rho of the cell centre c, the
# k-th nearest angle of q is <= d_k(c) + rho, so a vertex v can only be a k-nearest of q if
# angle(v, c) <= d_k(c) + 2 rho. The look-up is therefore exact, not approximate.


def _cube_cell(directions: Any, m: int, xp: Any) -> Any:
    """Cube-map cell index of (not necessarily unit) directions ``(..., 3)``."""
    ad = xp.abs(directions)
    axis = ad.argmax(-1)  # face axis 0/1/2
    major: Any  # numpy array or torch tensor, like ``directions``
    if xp is np:
        major = np.take_along_axis(directions, axis[..., None], -1)[..., 0]
    else:
        major = directions.gather(-1, axis[..., None])[..., 0]
    # Zero vectors would divide 0 by 0; any valid cell is fine for them.
    if xp is np:
        face = 2 * axis + (major < 0)
        scale = np.maximum(np.abs(major), np.finfo(np.float64).tiny)
    else:
        face = 2 * axis + (major < 0).long()
        scale = major.abs().clamp_min(xp.finfo(directions.dtype).tiny)
    # The two minor coordinates in a fixed order (the axes other than ``axis``).
    i1 = (axis + 1) % 3
    i2 = (axis + 2) % 3
    if xp is np:
        u = np.take_along_axis(directions, i1[..., None], -1)[..., 0] / scale
        v = np.take_along_axis(directions, i2[..., None], -1)[..., 0] / scale
        iu = np.clip(np.floor((u + 1.0) * 0.5 * m), 0, m - 1).astype(np.int64)
        iv = np.clip(np.floor((v + 1.0) * 0.5 * m), 0, m - 1).astype(np.int64)
    else:
        u = directions.gather(-1, i1[..., None])[..., 0] / scale
        v = directions.gather(-1, i2[..., None])[..., 0] / scale
        iu = ((u + 1.0) * 0.5 * m).floor().clamp(0, m - 1).long()
        iv = ((v + 1.0) * 0.5 * m).floor().clamp(0, m - 1).long()
    return (face * m + iu) * m + iv


def _face_directions(face: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Unit directions of the cube-map points ``(u, v)`` of face ``face`` (``2 * axis + negative``)."""
    axis, negative = divmod(face, 2)
    out = np.empty(u.shape + (3,))
    out[..., axis] = -1.0 if negative else 1.0
    out[..., (axis + 1) % 3] = u
    out[..., (axis + 2) % 3] = v
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def _cell_geometry(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit centre directions ``(6 m^2, 3)`` and angular radii ``(6 m^2,)`` of all cells."""
    edges = np.linspace(-1.0, 1.0, m + 1)
    mids = 0.5 * (edges[1:] + edges[:-1])
    centres, radii = [], []
    for face in range(6):
        uu, vv = np.meshgrid(mids, mids, indexing="ij")
        c = _face_directions(face, uu, vv)  # (m, m, 3)
        # Max angle to the 4 corners (a gnomonic cell is a convex geodesic quadrilateral,
        # so the farthest point from an interior point is a corner).
        worst = np.zeros((m, m))
        for du in (0, 1):
            for dv in (0, 1):
                cu, cv = np.meshgrid(edges[du: m + du], edges[dv: m + dv], indexing="ij")
                corner = _face_directions(face, cu, cv)
                worst = np.maximum(worst, np.arccos(np.clip((c * corner).sum(-1), -1.0, 1.0)))
        centres.append(c.reshape(-1, 3))
        radii.append(worst.reshape(-1))
    return np.concatenate(centres), np.concatenate(radii)


@cache
def _candidate_table(level: int, k: int) -> tuple[int, np.ndarray]:
    """(M, candidates ``(6 M^2, C)`` with ``-1`` padding) for the k-nearest look-up."""
    verts = icosphere(level).vertices
    m = max(2, 2 ** (level + 2))
    centres, radii = _cell_geometry(m)
    tree = cKDTree(verts)
    dist_k = tree.query(centres, k=k)[0]
    dist_k = dist_k if k == 1 else dist_k[:, k - 1]  # chord length of the k-th nearest
    ang_k = 2.0 * np.arcsin(np.clip(dist_k / 2.0, 0.0, 1.0))
    bound = np.minimum(ang_k + 2.0 * radii * 1.01 + 1e-9, np.pi)  # 1.01, 1e-9: round-off margins
    found = tree.query_ball_point(centres, 2.0 * np.sin(bound / 2.0) + 1e-12)
    counts = np.array([len(f) for f in found])
    rows = np.repeat(np.arange(len(centres)), counts)
    cols = np.concatenate([np.sort(np.asarray(f, dtype=np.int64)) for f in found])
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    table = np.full((len(centres), int(counts.max())), -1, dtype=np.int64)
    table[rows, np.arange(len(rows)) - start[rows]] = cols
    table.setflags(write=False)
    return m, table


def nearest_vertices(directions: Any, level: int, k: int = 1) -> Any:
    """Indices of the ``k`` icosphere vertices closest to each direction.

    Exact (a conservative cube-map candidate table, built once per ``(level, k)``), O(1)
    per query and fully vectorised; works on numpy arrays and torch tensors (any device).

    Args:
        directions: ``(..., 3)`` non-zero vectors (they need not be normalised).
        level: icosphere level.
        k: number of nearest vertices, 1 to 6.

    Returns:
        int64 indices ``(..., k)`` sorted from nearest to farthest, same library/device
        as ``directions``. Zero vectors get an arbitrary (but valid) answer.
    """
    k = check_int("k", k, minimum=1, maximum=6)
    m, table = _candidate_table(check_int("level", level, minimum=0, maximum=MAX_LEVEL), k)
    verts = icosphere(level).vertices
    try:
        import torch

        is_torch = isinstance(directions, torch.Tensor)
    except ImportError:  # pragma: no cover
        is_torch = False
    if not is_torch:
        d = np.asarray(directions, dtype=np.float64)
        if d.ndim < 1 or d.shape[-1] != 3:
            raise ValueError(f"Expected 'directions' of shape (..., 3) (got shape {d.shape}).")
        cand = table[_cube_cell(d, m, np)]  # (..., C)
        dots = np.einsum("...cj,...j->...c", verts[np.maximum(cand, 0)], d)
        dots = np.where(cand < 0, -np.inf, dots)
        idx = np.argsort(-dots, axis=-1, kind="stable")[..., :k]
        return np.take_along_axis(cand, idx, -1)
    d = directions
    if d.ndim < 1 or d.shape[-1] != 3:
        raise ValueError(f"Expected 'directions' of shape (..., 3) (got shape {tuple(d.shape)}).")
    dev = d.device
    cand = _torch_cached(table, dev, torch.int64)[_cube_cell(d.detach(), m, torch)]
    vt = _torch_cached(verts, dev, d.dtype)
    dots = (vt[cand.clamp(min=0)] * d.detach().unsqueeze(-2)).sum(-1)
    dots = dots.masked_fill(cand < 0, float("-inf"))
    idx = dots.topk(k, dim=-1).indices
    return cand.gather(-1, idx)


_TORCH_CACHE: dict[tuple[int, str, Any], Any] = {}


def _torch_cached(array: np.ndarray, device: Any, dtype: Any) -> Any:
    """Torch copy of a cached read-only numpy array, memoised per device and dtype."""
    import torch

    key = (id(array), str(device), dtype)
    hit = _TORCH_CACHE.get(key)
    if hit is None or hit[0] is not array:
        hit = (array, torch.as_tensor(np.array(array), dtype=dtype, device=device))
        _TORCH_CACHE[key] = hit
    return hit[1]
