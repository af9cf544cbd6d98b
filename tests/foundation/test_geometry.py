"""Rotations, the icosahedral group and neighbour lists."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list as ase_neighbor_list

from pointsym.geometry import (
    edge_vectors,
    icosahedral_rotations,
    icosahedron,
    neighbor_list,
    random_reflection,
    random_rotation,
    random_z_rotation,
    vertex_permutation,
)


@pytest.mark.parametrize("fn,det", [(random_rotation, 1.0), (random_z_rotation, 1.0), (random_reflection, -1.0)])
def test_random_orthogonal_matrices(fn, det):
    mats = fn(50, seed=1)
    assert mats.shape == (50, 3, 3)
    np.testing.assert_allclose(mats @ mats.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (50, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(mats), det, atol=1e-12)
    assert fn(seed=3).shape == (3, 3)
    np.testing.assert_array_equal(fn(4, seed=7), fn(4, seed=7))  # seeded
    assert not np.allclose(fn(4, seed=7), fn(4, seed=8))


def test_random_rotation_torch_backend():
    r = random_rotation(3, seed=0, backend="torch", dtype=torch.float32)
    assert isinstance(r, torch.Tensor) and r.dtype == torch.float32 and r.shape == (3, 3, 3)
    np.testing.assert_allclose(r.double().numpy(), random_rotation(3, seed=0), atol=1e-6)


@pytest.mark.parametrize("fn", [random_rotation, random_z_rotation])
def test_random_rotation_torch_generator(fn):
    # A torch.Generator as seed: batched draws from torch's RNG (reproducible per generator seed).
    a = fn(64, torch.Generator().manual_seed(3), backend="torch", dtype=torch.float32)
    b = fn(64, torch.Generator().manual_seed(3), backend="torch", dtype=torch.float32)
    assert a.shape == (64, 3, 3) and a.dtype == torch.float32
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    eye = torch.eye(3).expand(64, 3, 3)
    torch.testing.assert_close(a @ a.transpose(1, 2), eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(a.double()), torch.ones(64, dtype=torch.float64), atol=1e-5, rtol=0)
    assert fn(None, torch.Generator().manual_seed(0), backend="torch").shape == (3, 3)
    # The global generator: the same stream as unseeded torch draws after torch.manual_seed.
    torch.manual_seed(5)
    g = fn(4, torch.default_generator, backend="torch")
    torch.manual_seed(5)
    assert torch.equal(g, fn(4, torch.default_generator, backend="torch"))
    with pytest.raises(ValueError, match="backend='torch'"):
        fn(2, torch.Generator())


def test_random_rotation_torch_generator_is_haar():
    mats = random_rotation(20000, torch.Generator().manual_seed(0), backend="torch").numpy()
    assert np.abs(mats.mean(0)).max() < 0.02
    np.testing.assert_allclose((mats**2).mean(0), 1 / 3, atol=0.01)


def test_random_rotation_is_haar():
    # For Haar-random R, E[R] = 0 and E[R_ij^2] = 1/3: a check on the distribution, not just orthogonality.
    mats = random_rotation(20000, seed=0)
    assert np.abs(mats.mean(0)).max() < 0.02
    np.testing.assert_allclose((mats**2).mean(0), 1 / 3, atol=0.01)


def test_z_rotation_fixes_z_axis():
    mats = random_z_rotation(10, seed=0)
    np.testing.assert_allclose(mats @ np.array([0, 0, 1.0]), np.tile([0, 0, 1.0], (10, 1)), atol=1e-15)


def test_rotation_bad_input():
    with pytest.raises(ValueError, match="'n'"):
        random_rotation(-1)
    with pytest.raises(TypeError, match="'seed'"):
        random_rotation(2, seed="abc")
    with pytest.raises(ValueError, match="'backend'"):
        random_rotation(2, backend="jax")


def test_icosahedral_group_is_closed_and_complete():
    group = icosahedral_rotations()
    assert group.shape == (60, 3, 3)
    np.testing.assert_allclose(group[0], np.eye(3), atol=1e-14)
    np.testing.assert_allclose(np.linalg.det(group), 1.0, atol=1e-12)
    np.testing.assert_allclose(group @ group.transpose(0, 2, 1), np.broadcast_to(np.eye(3), group.shape), atol=1e-12)
    flat = group.reshape(60, 9)
    # 60 distinct elements
    dists = np.linalg.norm(flat[:, None] - flat[None], axis=-1)
    assert (dists + np.eye(60) * 10).min() > 0.1
    # closed under composition and inverses
    for a, b in itertools.product(range(60), repeat=2):
        prod = (group[a] @ group[b]).reshape(9)
        assert np.linalg.norm(flat - prod, axis=1).min() < 1e-10
    for a in range(60):
        assert np.linalg.norm(flat - group[a].T.reshape(9), axis=1).min() < 1e-10


def test_icosahedral_group_permutes_vertices():
    verts, faces = icosahedron()
    np.testing.assert_allclose(np.linalg.norm(verts, axis=1), 1.0, atol=1e-15)
    # every edge of the icosahedron has the same length, and there are 30 of them
    edges = {tuple(sorted(e)) for f in faces for e in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0]))}
    lengths = [np.linalg.norm(verts[a] - verts[b]) for a, b in edges]
    assert len(edges) == 30 and np.ptp(lengths) < 1e-12
    perms = {tuple(vertex_permutation(g, verts)) for g in icosahedral_rotations()}
    assert len(perms) == 60
    with pytest.raises(ValueError, match="onto themselves"):
        vertex_permutation(random_rotation(seed=0), verts)


def _pairs(nl):
    return sorted(zip(nl.i.tolist(), nl.j.tolist(), np.round(nl.distances, 8).tolist(), strict=True))


def test_neighbor_list_matches_ase_periodic():
    atoms = bulk("Si", "diamond", a=5.43) * (2, 1, 1)
    atoms.rattle(0.05, seed=0)
    nl = neighbor_list(atoms, r_cut=6.0)  # cutoff larger than the cell: many images
    i, j, d = ase_neighbor_list("ijd", atoms, 6.0)
    assert sorted(zip(i.tolist(), j.tolist(), np.round(d, 8).tolist(), strict=True)) == _pairs(nl)
    vec = atoms.positions[nl.j] - atoms.positions[nl.i] + nl.shifts @ atoms.cell[:]
    np.testing.assert_allclose(vec, nl.vectors, atol=1e-10)


def test_neighbor_list_mixed_pbc_and_molecule():
    slab = bulk("Cu", "fcc", a=3.6, cubic=True)
    slab.pbc = [True, True, False]
    nl = neighbor_list(slab, r_cut=4.0)
    i, j, d = ase_neighbor_list("ijd", slab, 4.0)
    assert len(nl) == len(i)
    mol = molecule("CH4")
    nl = neighbor_list(mol.positions, r_cut=1.5)
    assert len(nl) == 8 and np.all(nl.shifts == 0)
    assert len(neighbor_list(np.zeros((0, 3)), r_cut=1.0)) == 0


@pytest.mark.parametrize("self_interaction", [False, True])
def test_neighbor_list_unsorted_has_the_same_pairs_on_a_skewed_periodic_cell(self_interaction):
    rng = np.random.default_rng(4)
    cell = np.array([[4.0, 0.0, 0.0], [1.7, 3.6, 0.0], [-1.1, 0.9, 3.3]])  # triclinic, strongly skewed
    positions = rng.random((7, 3)) @ cell
    kwargs = dict(cell=cell, pbc=True, self_interaction=self_interaction)
    ref = neighbor_list(positions, r_cut=5.0, **kwargs)  # cutoff beyond the cell: many periodic images
    fast = neighbor_list(positions, r_cut=5.0, sort=False, **kwargs)
    assert len(ref) == len(fast) > 7 * 10

    def rows(nl):
        return np.column_stack([nl.i, nl.j, nl.shifts])

    assert len({tuple(r) for r in rows(ref).tolist()}) == len(ref)  # (i, j, shift) identifies a pair
    assert {tuple(r) for r in rows(fast).tolist()} == {tuple(r) for r in rows(ref).tolist()}
    # The same pairs carry the same vectors and distances; sort=True is the lexicographic order.
    order = np.lexsort((fast.shifts[:, 2], fast.shifts[:, 1], fast.shifts[:, 0], fast.j, fast.i))
    np.testing.assert_array_equal(rows(fast)[order], rows(ref))
    np.testing.assert_array_equal(fast.vectors[order], ref.vectors)
    np.testing.assert_array_equal(fast.distances[order], ref.distances)
    assert fast.i.dtype == fast.j.dtype == fast.shifts.dtype == np.int64


def test_edge_vectors_differentiable():
    atoms = bulk("Si", "diamond", a=5.43)
    nl = neighbor_list(atoms, r_cut=3.0)
    pos = torch.tensor(atoms.positions, requires_grad=True)
    cell = torch.tensor(atoms.cell[:], requires_grad=True)
    vec = edge_vectors(pos, torch.as_tensor(nl.i), torch.as_tensor(nl.j), nl.shifts, cell)
    np.testing.assert_allclose(vec.detach().numpy(), nl.vectors, atol=1e-12)
    vec.norm(dim=1).sum().backward()
    assert pos.grad is not None and cell.grad is not None and torch.isfinite(cell.grad).all()


def test_neighbor_list_bad_input():
    with pytest.raises(ValueError, match="'cell'"):
        neighbor_list(np.zeros((2, 3)), r_cut=1.0, pbc=True)
    with pytest.raises(ValueError, match="'r_cut'"):
        neighbor_list(np.zeros((2, 3)), r_cut=-1.0)
    with pytest.raises(ValueError, match="NaN"):
        neighbor_list(np.array([[0, 0, np.nan]]), r_cut=1.0)
    with pytest.raises(ValueError, match="shape"):
        neighbor_list(np.zeros((2, 2)), r_cut=1.0)
    with pytest.raises(ValueError, match="degenerate"):
        neighbor_list(np.zeros((2, 3)), r_cut=1.0, cell=np.zeros((3, 3)), pbc=True)


def test_icosahedral_rotations_torch_backend():
    g = icosahedral_rotations(backend="torch", dtype=torch.float32)
    assert isinstance(g, torch.Tensor) and g.shape == (60, 3, 3) and g.dtype == torch.float32
    np.testing.assert_allclose(g.double().numpy(), icosahedral_rotations(), atol=1e-6)
