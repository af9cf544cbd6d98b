"""Icosphere hierarchy: counts, prefix property, graph structure, icosahedral symmetry, look-up."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import kdtree_vertex_permutation
from pointsym.geometry import (
    icosahedral_rotations,
    icosahedron,
    icosphere,
    icosphere_size,
    nearest_vertices,
    vertex_permutation,
)


@pytest.mark.parametrize("level", range(5))
def test_counts_degrees_and_unit_norm(level):
    s = icosphere(level)
    n_v = 10 * 4**level + 2
    assert s.vertices.shape == (n_v, 3) and icosphere_size(level) == n_v
    assert s.faces.shape == (20 * 4**level, 3) and s.edges.shape == (30 * 4**level, 2)
    np.testing.assert_allclose(np.linalg.norm(s.vertices, axis=1), 1.0, atol=1e-15)
    np.testing.assert_array_equal(s.degrees[:12], 5)
    np.testing.assert_array_equal(s.degrees[12:], 6)
    # Euler characteristic of the sphere.
    assert n_v - len(s.edges) + len(s.faces) == 2


@pytest.mark.parametrize("level", range(4))
def test_faces_edges_and_neighbours_are_consistent(level):
    s = icosphere(level)
    v, f = s.vertices, s.faces
    # Faces are counter-clockwise seen from outside: normal points away from the centre.
    normal = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    assert np.all((normal * v[f].sum(1)).sum(1) > 0)
    # Every edge borders exactly two faces.
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(e, axis=0, return_counts=True)
    assert np.all(counts == 2)
    # The 1-ring table is the symmetric adjacency of the edges.
    adj = np.zeros((len(v), len(v)), bool)
    adj[s.edges[:, 0], s.edges[:, 1]] = adj[s.edges[:, 1], s.edges[:, 0]] = True
    for i in range(len(v)):
        ring = s.neighbors[i][s.neighbors[i] >= 0]
        assert set(ring.tolist()) == set(np.flatnonzero(adj[i]).tolist())
    # Neighbours are the nearest vertices: 1-ring distances are below every non-neighbour distance.
    d = np.linalg.norm(v[:, None] - v[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert np.max(np.where(adj, d, 0).max(1) - np.where(adj, np.inf, d).min(1)) < 0


def test_prefix_property_and_level0_is_the_icosahedron():
    verts, faces = icosahedron()
    np.testing.assert_array_equal(icosphere(0).vertices, verts)
    np.testing.assert_array_equal(icosphere(0).faces, faces)
    for level in range(1, 5):
        fine, coarse = icosphere(level), icosphere(level - 1)
        np.testing.assert_array_equal(fine.vertices[: coarse.n_vertices], coarse.vertices)
        # New vertices are edge midpoints of the coarse level, projected to the sphere.
        mids = coarse.vertices[coarse.edges].sum(1)
        mids /= np.linalg.norm(mids, axis=1, keepdims=True)
        new = fine.vertices[coarse.n_vertices:]
        d = np.linalg.norm(new[:, None] - mids[None], axis=-1)
        assert np.allclose(d.min(1), 0, atol=1e-14) and len(set(d.argmin(1).tolist())) == len(mids)


def test_cached_and_read_only():
    assert icosphere(3) is icosphere(3)
    with pytest.raises(ValueError):
        icosphere(3).vertices[0, 0] = 1.0


def test_perm_helper_agrees_with_vertex_permutation():
    for g in icosahedral_rotations()[:5]:
        verts = icosphere(2).vertices
        np.testing.assert_array_equal(kdtree_vertex_permutation(g, verts), vertex_permutation(g, verts))


@pytest.mark.parametrize("level", range(4))
def test_icosahedral_rotations_permute_every_level(level):
    s = icosphere(level)
    coarse = icosphere(level - 1) if level else None
    n_v = s.n_vertices

    def keys(simplices: np.ndarray) -> np.ndarray:  # order-free code of each face/edge, sorted
        t = np.sort(simplices, axis=1)
        return np.sort(sum(t[:, i] * n_v**i for i in range(t.shape[1])))

    faces, edges = keys(s.faces), keys(s.edges)
    perms = set()
    for g in icosahedral_rotations():
        perm = kdtree_vertex_permutation(g, s.vertices)  # g v_i = v_perm[i]
        perms.add(tuple(perm))
        np.testing.assert_array_equal(keys(perm[s.faces]), faces)
        np.testing.assert_array_equal(keys(perm[s.edges]), edges)
        if coarse is not None:  # consistent with the coarser level (prefix property)
            np.testing.assert_array_equal(perm[: coarse.n_vertices], kdtree_vertex_permutation(g, coarse.vertices))
    assert len(perms) == 60
    # The inversion is a symmetry too (the icosphere is centrally symmetric).
    kdtree_vertex_permutation(-np.eye(3), s.vertices)


@pytest.mark.parametrize("level,k", [(0, 1), (0, 3), (1, 3), (3, 1), (3, 3), (4, 3)])
def test_nearest_vertices_matches_brute_force(level, k):
    rng = np.random.default_rng(level)
    n = 1500
    d = rng.normal(size=(n, 3)) * rng.uniform(0.1, 10, size=(n, 1))  # any length
    # Include exact vertex directions and cube-map cell boundaries (axes, diagonals).
    d = np.concatenate([d, icosphere(level).vertices * 2.5, np.eye(3), -np.eye(3), [[1, 1, 1], [1, -1, 0]]])
    dots = (d / np.linalg.norm(d, axis=1, keepdims=True)) @ icosphere(level).vertices.T
    best = -np.sort(np.partition(-dots, k - 1, axis=1)[:, :k], axis=1)  # k largest cosines, descending
    got = nearest_vertices(d, level, k)
    got_t = nearest_vertices(torch.as_tensor(d), level, k)
    assert got.shape == (len(d), k) and isinstance(got_t, torch.Tensor) and got_t.dtype == torch.int64
    # Compare the distances (indices may differ only between exactly tied vertices).
    np.testing.assert_allclose(np.take_along_axis(dots, got, 1), best, atol=1e-14)
    np.testing.assert_allclose(np.take_along_axis(dots, got_t.numpy(), 1), best, atol=1e-14)
    # A vertex direction finds itself first.
    n_v = icosphere(level).n_vertices
    np.testing.assert_array_equal(got[n: n + n_v, 0], np.arange(n_v))


def test_nearest_vertices_batched_shape_and_errors():
    d = torch.randn(4, 7, 3, dtype=torch.float32)
    assert nearest_vertices(d, 2, 3).shape == (4, 7, 3)
    with pytest.raises(ValueError, match="'k'"):
        nearest_vertices(d, 2, 7)
    with pytest.raises(ValueError, match="directions"):
        nearest_vertices(torch.randn(5, 2), 2)
    with pytest.raises(ValueError, match="'level'"):
        icosphere(-1)
    with pytest.raises(TypeError, match="'level'"):
        icosphere(1.5)
