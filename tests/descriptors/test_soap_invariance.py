"""Symmetries of SOAP, checked with pointsym.testing: errors <= 1e-10 relative in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import max_rel, random_crystal, random_molecule
from pointsym.descriptors import SOAP
from pointsym.testing import assert_invariant

RTOL = 1e-10
MOL = random_molecule("H4C2ON", seed=11)
SPECIES = ["H", "C", "N", "O"]
CONFIGS = {
    "gto": dict(r_cut=4.0, n_max=4, l_max=6, sigma=0.5),
    "gto_weighted": dict(r_cut=4.0, n_max=3, l_max=4, sigma=0.5,
                         weighting={"function": "poly", "r0": 4.0, "c": 1, "m": 2}),
    "polynomial": dict(r_cut=4.0, n_max=3, l_max=4, sigma=0.5, rbf="polynomial"),
}


def _per_atom(soap: SOAP):
    def fn(positions, numbers):
        return soap.create({"positions": positions, "numbers": numbers})

    return fn


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("kind", ["rotation", "reflection", "translation", "permutation"])
def test_molecule_invariance(config, kind):
    soap = SOAP(species=SPECIES, **CONFIGS[config])
    inputs = {"positions": MOL.get_positions(), "numbers": MOL.get_atomic_numbers()}
    assert_invariant(_per_atom(soap), inputs, kind, per_atom=True, rtol=RTOL, n_trials=3)


@pytest.mark.parametrize("average", ["inner", "outer"])
@pytest.mark.parametrize("kind", ["rotation", "reflection", "permutation"])
def test_averaged_invariance(average, kind):
    soap = SOAP(species=SPECIES, r_cut=4.0, n_max=3, l_max=4, sigma=0.5, average=average)
    inputs = {"positions": MOL.get_positions(), "numbers": MOL.get_atomic_numbers()}
    assert_invariant(_per_atom(soap), inputs, kind, rtol=RTOL, n_trials=3)


@pytest.mark.parametrize("kind", ["rotation", "reflection", "translation", "permutation"])
def test_periodic_invariance(kind):
    """Rotating/reflecting the whole crystal (cell included), translating it, permuting atoms."""
    crystal = random_crystal(seed=7)
    soap = SOAP(species=["Na", "Cl", "K"], r_cut=4.5, n_max=3, l_max=4, sigma=0.5, periodic=True)

    def fn(positions, numbers, cell):
        return soap.create({"positions": positions, "numbers": numbers, "cell": cell, "pbc": True})

    inputs = {"positions": crystal.get_positions(), "numbers": crystal.numbers, "cell": np.asarray(crystal.cell[:])}
    assert_invariant(fn, inputs, kind, per_atom=True, rtol=RTOL, n_trials=3)


@pytest.mark.parametrize("rbf", ["gto", "polynomial"])
def test_supercell_gives_the_same_per_atom_vectors(rbf):
    crystal = random_crystal(seed=5)
    soap = SOAP(species=["Na", "Cl", "K"], r_cut=4.5, n_max=3, l_max=4, sigma=0.5, periodic=True, rbf=rbf)
    base = soap.create(crystal)
    big = crystal.repeat((2, 1, 2))  # ase tiles the original atoms first
    assert max_rel(soap.create(big)[: len(crystal)], base) <= RTOL
    # A different (sheared) choice of the same lattice: cell rows a, b + a, c - b.
    sheared = crystal.copy()
    cell = np.asarray(crystal.cell[:])
    sheared.set_cell(np.stack([cell[0], cell[1] + cell[0], cell[2] - cell[1]]), scale_atoms=False)
    assert max_rel(soap.create(sheared), base) <= RTOL


def test_periodic_images_of_a_centre_are_equivalent():
    """A Cartesian centre and its lattice translates (far outside the cell) have one environment."""
    crystal = random_crystal(seed=2)
    soap = SOAP(species=["Na", "Cl", "K"], r_cut=4.5, n_max=3, l_max=4, sigma=0.5, periodic=True)
    p = np.array([0.7, 1.1, 0.4])
    cell = np.asarray(crystal.cell[:])
    images = [p, p + 2 * cell[0] - 3 * cell[2], p - 5 * cell[1]]
    out = soap.create(crystal, centers=images)
    assert max_rel(out[1], out[0]) <= RTOL and max_rel(out[2], out[0]) <= RTOL


def test_tensor_path_is_invariant_in_float32():
    soap = SOAP(species=SPECIES, r_cut=4.0, n_max=3, l_max=4, sigma=0.5, dtype="float32")

    def fn(positions, numbers):
        return soap.create_tensor({"positions": positions, "numbers": numbers})

    inputs = {"positions": torch.tensor(MOL.get_positions(), dtype=torch.float32), "numbers": MOL.numbers}
    assert_invariant(fn, inputs, "rotation", per_atom=True, rtol=1e-5, n_trials=2)
