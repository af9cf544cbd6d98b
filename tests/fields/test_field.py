"""The analytic structure field against brute force, its symmetries and its input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.geometry import cellpar_to_cell

from pointsym.fields import batched_nearest_atoms, species_one_hot, structure_field
from pointsym.testing import assert_equivariant, assert_invariant


def random_crystal(rng: np.random.Generator, n: int | None = None):
    """Random triclinic cell (lengths 2.5-6 Å, angles 65-115 deg) with 1-12 atoms inside."""
    n = int(rng.integers(1, 13)) if n is None else n
    cell = cellpar_to_cell(np.r_[rng.uniform(2.5, 6.0, 3), rng.uniform(65, 115, 3)])
    pos = rng.uniform(0, 1, (n, 3)) @ cell
    species = rng.integers(1, 95, n)
    return pos, species, cell


def brute_force(pos, species, queries, cell=None, reach=6):
    """Nearest atom by trying every atom (and, with a cell, every image with |n_i| <= reach)."""
    if cell is None:
        images, owner = pos, np.arange(len(pos))
    else:
        r = np.arange(-reach, reach + 1)
        shifts = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3) @ cell
        images = (pos[None] + shifts[:, None]).reshape(-1, 3)
        owner = np.tile(np.arange(len(pos)), len(shifts))
    k = np.concatenate([np.linalg.norm(q[:, None, :] - images[None, :, :], axis=-1).argmin(axis=1)
                        for q in np.array_split(queries, max(1, len(queries) // 100))])
    vec = images[k] - queries
    return vec, species[owner[k]], owner[k], np.linalg.norm(vec, axis=1)


@pytest.mark.parametrize("seed", range(5))
def test_field_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    pos, species, cell = random_crystal(rng)
    queries = rng.uniform(-2, 8, (3000, 3))
    f = structure_field(pos, species, queries)
    vec, spec, idx, _ = brute_force(pos, species, queries)
    np.testing.assert_allclose(f.vectors, vec, atol=1e-12)
    np.testing.assert_array_equal(f.species, spec)
    np.testing.assert_array_equal(f.nearest, idx)
    # the position field points at an atom: q + v(q) is an atom position
    np.testing.assert_allclose(queries + f.vectors, pos[f.nearest], atol=1e-12)


def test_torch_backend_matches_numpy(dtype, tol):
    rng = np.random.default_rng(11)
    pos, species, _ = random_crystal(rng, n=9)
    queries = rng.uniform(-2, 8, (2000, 3))
    ref = structure_field(pos, species, queries)
    f = structure_field(torch.as_tensor(pos, dtype=dtype), torch.as_tensor(species),
                        torch.as_tensor(queries, dtype=dtype))
    assert isinstance(f.vectors, torch.Tensor) and f.vectors.dtype == dtype
    # float32 distances may flip near-ties; compare distances to the nearest atom instead of indices there
    np.testing.assert_allclose(f.distances.double().numpy(), np.linalg.norm(ref.vectors, axis=1), atol=50 * tol)
    agree = f.nearest.numpy() == ref.nearest
    assert agree.mean() > 0.999
    np.testing.assert_allclose(f.vectors.double().numpy()[agree], ref.vectors[agree], atol=50 * tol)


@pytest.mark.parametrize("seed", range(4))
def test_periodic_field_matches_brute_force_images(seed):
    rng = np.random.default_rng(100 + seed)
    pos, species, cell = random_crystal(rng)
    queries = rng.uniform(-3, 9, (400, 3))
    f = structure_field(pos, species, queries, cell=cell, periodic=True)
    vec, spec, idx, dist = brute_force(pos, species, queries, cell=cell)
    np.testing.assert_allclose(np.linalg.norm(f.vectors, axis=1), dist, atol=1e-10)
    np.testing.assert_allclose(f.vectors, vec, atol=1e-9)
    np.testing.assert_array_equal(f.species, spec)
    # periodic field is periodic: shifting the queries by a lattice vector changes nothing
    g = structure_field(pos, species, queries + cell[0] - 2 * cell[2], cell=cell, periodic=True)
    np.testing.assert_allclose(g.vectors, f.vectors, atol=1e-9)
    # torch backend agrees
    t = structure_field(torch.as_tensor(pos), species, torch.as_tensor(queries), cell=cell, periodic=True)
    np.testing.assert_allclose(t.distances.numpy(), dist, atol=1e-10)


def test_periodic_field_is_never_farther_than_non_periodic():
    rng = np.random.default_rng(5)
    pos, species, cell = random_crystal(rng, n=4)
    queries = rng.uniform(-1, 7, (500, 3))
    d_np = structure_field(pos, species, queries).distances
    d_p = structure_field(pos, species, queries, cell=cell, periodic=True).distances
    assert np.all(d_p <= d_np + 1e-12) and np.any(d_p < d_np - 1e-3)


def test_field_rotation_and_permutation_symmetry():
    rng = np.random.default_rng(3)
    pos, species, _ = random_crystal(rng, n=7)
    inputs = {"positions": pos, "species": species, "queries": rng.uniform(-1, 6, (300, 3))}

    def vectors(positions, species, queries):
        return structure_field(positions, species, queries).vectors

    def labels(positions, species, queries):
        return structure_field(positions, species, queries).species.astype(float)

    # rotating atoms and queries together rotates the field vectors (queries rotate as vectors here)
    assert_equivariant(vectors, inputs, "rotation", outputs="vector", vector_inputs=("queries",))
    assert_equivariant(vectors, inputs, "reflection", outputs="vector", vector_inputs=("queries",))
    assert_invariant(vectors, inputs, "permutation")
    assert_invariant(labels, inputs, "permutation")


def test_species_one_hot():
    rng = np.random.default_rng(0)
    pos, species, _ = random_crystal(rng, n=5)
    species = rng.integers(0, 6, 5)
    f = structure_field(pos, species, rng.uniform(0, 5, (100, 3)))
    oh = f.one_hot(6)
    assert oh.shape == (100, 6)
    np.testing.assert_array_equal(oh.sum(1), 1.0)
    np.testing.assert_array_equal(oh.argmax(1), f.species)
    t = species_one_hot(torch.as_tensor(f.species), 6)
    np.testing.assert_array_equal(t.numpy(), oh)
    with pytest.raises(ValueError, match="outside"):
        f.one_hot(int(species.max()))


def test_batched_nearest_matches_per_structure():
    rng = np.random.default_rng(8)
    structs = [random_crystal(rng) for _ in range(5)]
    pos = torch.as_tensor(np.concatenate([s[0] for s in structs]))
    batch = torch.repeat_interleave(torch.arange(5), torch.tensor([len(s[0]) for s in structs]))
    queries = torch.as_tensor(rng.uniform(-1, 7, (400, 3)))
    qb = torch.as_tensor(rng.integers(0, 5, 400))
    got = batched_nearest_atoms(pos, batch, queries, qb)
    start = np.r_[0, np.cumsum([len(s[0]) for s in structs])]
    for k in range(5):
        sel = (qb == k).numpy()
        ref = structure_field(structs[k][0], structs[k][1], queries.numpy()[sel]).nearest + start[k]
        np.testing.assert_array_equal(got.numpy()[sel], ref)
    with pytest.raises(ValueError, match="no atoms"):
        batched_nearest_atoms(pos, batch, queries, qb, num_structures=6)


def test_millions_of_queries_are_fast():
    rng = np.random.default_rng(1)
    pos, species, _ = random_crystal(rng, n=12)
    queries = rng.uniform(-1, 7, (1_000_000, 3)).astype(np.float64)
    f = structure_field(pos, species, queries)
    assert f.vectors.shape == (1_000_000, 3) and f.species.shape == (1_000_000,)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"positions": np.zeros((0, 3))}, ValueError, "empty"),
        ({"positions": np.array([[0.0, np.nan, 0.0]])}, ValueError, "NaN"),
        ({"queries": np.array([[0.0, 0.0, np.inf]])}, ValueError, "NaN or infinite"),
        ({"positions": np.zeros((2, 2))}, ValueError, "shape"),
        ({"species": np.array([1, 2])}, ValueError, "one label per atom"),
        ({"species": np.array([-1])}, ValueError, ">= 0"),
        ({"species": np.array([1.5])}, TypeError, "integer"),
        ({"periodic": True}, ValueError, "cell"),
        ({"periodic": True, "cell": np.zeros((3, 3))}, ValueError, "singular"),
    ],
)
def test_bad_input_gives_clear_errors(kwargs, error, match):
    args = {"positions": np.zeros((1, 3)), "species": np.array([8]), "queries": np.ones((4, 3))}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        structure_field(**args)
