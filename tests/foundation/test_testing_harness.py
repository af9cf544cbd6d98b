"""The public invariance/equivariance harness catches violations and passes exact symmetries."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

from pointsym.testing import assert_equivariant, assert_invariant, equivariance_error


def _pairwise_energy(positions, species=None):
    d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    return np.exp(-d).sum()


def _forces(positions, species=None):
    x = torch.as_tensor(positions, dtype=torch.float64).requires_grad_(True)
    d = (x[:, None] - x[None]).pow(2).sum(-1)
    e = torch.exp(-d).sum()
    (g,) = torch.autograd.grad(e, x)
    return -g


@pytest.mark.parametrize("kind", ["rotation", "reflection", "permutation", "translation"])
def test_exact_symmetries_pass(kind):
    x = np.random.default_rng(0).normal(size=(7, 3))
    assert_invariant(_pairwise_energy, x, kind)
    assert_equivariant(_forces, x, kind, outputs="atom_vector")
    assert_equivariant(lambda positions: positions * 2 - positions, x, kind, outputs="atom_point")


def test_violations_are_caught():
    x = np.random.default_rng(1).normal(size=(6, 3))
    with pytest.raises(AssertionError, match="rotation"):
        assert_invariant(lambda positions: positions[:, 0].sum(), x, "rotation")
    with pytest.raises(AssertionError, match="translation"):
        assert_invariant(lambda positions: positions.sum(), x, "translation")
    with pytest.raises(AssertionError, match="permutation"):
        assert_invariant(lambda positions: positions[0, 0] * np.arange(6) @ positions[:, 1], x, "permutation")
    # a chiral quantity is rotation- but not reflection-invariant
    chiral = lambda positions: np.linalg.det(positions[1:4] - positions[0])  # noqa: E731
    assert_invariant(chiral, x, "rotation")
    with pytest.raises(AssertionError):
        assert_invariant(chiral, x, "reflection")


def test_dict_inputs_with_species_and_cell():
    rng = np.random.default_rng(2)
    pos = rng.normal(size=(5, 3))
    species = np.array([1, 1, 8, 8, 6])

    def weighted(positions, species, cell):
        # uses the cell only through invariants, species as per-atom weights
        c = positions.mean(0)
        return (species * np.linalg.norm(positions - c, axis=1)).sum() + np.linalg.det(cell @ cell.T)

    inputs = {"positions": pos, "species": species, "cell": np.diag([3.0, 4.0, 5.0])}
    for kind in ("rotation", "permutation", "translation", "reflection"):
        assert_invariant(weighted, inputs, kind)
    # without permuting species along with atoms, the permutation test must fail
    with pytest.raises(AssertionError):
        assert_invariant(weighted, inputs, "permutation", atom_inputs=())


def test_ase_atoms_and_float32_tolerance():
    atoms = bulk("NaCl", "rocksalt", a=5.6) * (2, 1, 1)

    def volume_and_dists(a):
        return a.get_volume(), np.sort(a.get_all_distances(mic=True).ravel())

    assert_invariant(volume_and_dists, atoms, "rotation", outputs=("invariant", "invariant"))
    x32 = torch.randn(8, 3, dtype=torch.float32)
    errs = assert_invariant(lambda positions: torch.cdist(positions, positions).sum(), x32, "rotation")
    assert errs["output"]["rel"] < 1e-4


def test_batched_positions_and_error_report():
    x = torch.randn(3, 6, 3, dtype=torch.float64)
    out = equivariance_error(lambda positions: positions - positions.mean(1, keepdim=True), x, "permutation",
                             outputs="atom_vector")
    assert out["output"]["abs"] < 1e-12
    with pytest.raises(ValueError, match="kind"):
        equivariance_error(lambda positions: positions, x, "shear")
    with pytest.raises(ValueError, match="outputs"):
        equivariance_error(lambda positions: positions, x, outputs="tensor")
