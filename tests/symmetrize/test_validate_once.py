"""Validate once: a public call checks its structure inputs exactly once, however many inner
model calls (ECSE frame chunks, PET.forward -> atomic energies, autograd wrappers) follow."""

from __future__ import annotations

import ase
import pytest
import torch
from ase.build import bulk

import pointsym.structures.batch as structures_batch
from helpers import tiny_pet
from pointsym.structures import (
    batch_structures,
    check_structure_inputs,
    energy_and_forces,
    inputs_trusted,
    predict_structures,
    trusted_inputs,
)
from pointsym.symmetrize import ECSE, NeighborMLP


@pytest.fixture
def validations(monkeypatch):
    """Counts the full validations of check_structure_inputs."""
    count = {"n": 0}
    real = structures_batch._validate_structure_inputs

    def counting(*args, **kwargs):
        count["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(structures_batch, "_validate_structure_inputs", counting)
    return count


def _frames():
    si = bulk("Si", "diamond", a=5.43)
    si.rattle(0.05, seed=1)
    ch4 = ase.Atoms("CH4", positions=[[0, 0, 0], [.63, .63, .63], [-.63, -.63, .63], [-.63, .63, -.63],
                                      [.63, -.63, -.63]])
    return [si, ch4]


def test_one_ecse_energy_call_validates_exactly_once(validations):
    b = batch_structures(_frames(), dtype=torch.float64)
    sym = ECSE(tiny_pet([1, 6, 14]), r_cut=3.0, chunk_atoms=8)  # several frame chunks
    out = sym.energy_and_forces(b.positions, b.numbers, b.cell, b.pbc, b.batch, stress=True)
    assert validations["n"] == 1
    assert int(sym.last_stats["n_evaluations"].sum()) > 4  # many inner PET calls, none re-validated
    validations["n"] = 0
    ref = energy_and_forces(sym, **b.inputs(), stress=True)  # delegates to ECSE.energy_and_forces
    assert validations["n"] == 1
    torch.testing.assert_close(out["forces"], ref["forces"], rtol=0, atol=0)
    validations["n"] = 0
    with torch.no_grad():
        sym(**b.inputs())
    assert validations["n"] == 1
    validations["n"] = 0
    energy_and_forces(sym, **b.inputs(), create_graph=True)  # plain-autograd path through ECSE.forward
    assert validations["n"] == 1


def test_pet_and_wrappers_validate_once(validations):
    b = batch_structures(_frames(), dtype=torch.float64)
    pet = tiny_pet([1, 6, 14])
    for call in (lambda: pet(**b.inputs()), lambda: pet.atomic_energies(**b.inputs()),
                 lambda: energy_and_forces(pet, **b.inputs(), stress=True)):
        validations["n"] = 0
        call()
        assert validations["n"] == 1
    validations["n"] = 0
    predict_structures(ECSE(pet, r_cut=3.0), _frames(), batch_size=1)
    assert validations["n"] == 2  # once per batch of structures


def test_collinear_fallback_validates_once(validations):
    co = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.5, 1.0]], dtype=torch.float64)
    sym = ECSE(NeighborMLP(r_cut=3.0, hidden=4, n_features=4).double(), r_cut=3.0, outputs=NeighborMLP.OUTPUTS)
    sym.energy_and_forces(co, torch.tensor([6, 8]))
    assert validations["n"] == 1
    assert float(sym.last_stats["w_aux"][0]) > 0  # the axis-projection fallback did run


def test_errors_are_still_raised_at_the_boundary():
    sym = ECSE(tiny_pet([1, 6]), r_cut=3.0)
    with pytest.raises(ValueError, match="NaN"):
        sym.energy_and_forces(torch.full((3, 3), float("nan"), dtype=torch.float64), torch.tensor([1, 1, 6]))
    with pytest.raises(ValueError, match="'numbers'"):
        sym(torch.zeros(3, 3, dtype=torch.float64), torch.tensor([1, 6]))


def test_trusted_inputs_only_canonicalises():
    pos = torch.rand(4, 3, dtype=torch.float64)
    z = torch.tensor([1, 1, 6, 6], dtype=torch.int32)
    cell = torch.eye(3).expand(2, 3, 3) * 5
    ref = check_structure_inputs(pos, z, cell, True, torch.tensor([0, 0, 1, 1]))
    assert not inputs_trusted()
    with trusted_inputs():
        assert inputs_trusted()
        with trusted_inputs():
            assert inputs_trusted()
        assert inputs_trusted()
        got = check_structure_inputs(pos, z, cell, True, torch.tensor([0, 0, 1, 1]))
        for a, b in zip(got, ref, strict=True):
            assert a.dtype == b.dtype and torch.equal(a, b)
        got1 = check_structure_inputs(pos, z, torch.eye(3), [True, False, True])
    ref1 = check_structure_inputs(pos, z, torch.eye(3), [True, False, True])
    for a, b in zip(got1, ref1, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert not inputs_trusted()
