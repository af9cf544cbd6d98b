"""The ASE calculator: forces and stress are exact derivatives, NVE MD conserves energy (bare and
ECSE), and it loads from pet-train checkpoints and model files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk, molecule
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.md.verlet import VelocityVerlet

from helpers import small_pet, tiny_pet
from pointsym.calculators import PointsymCalculator
from pointsym.symmetrize import ECSE


def _si(seed=0):
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)  # 8 atoms, periodic
    atoms.rattle(0.05, seed=seed)
    return atoms


def _stiff(model):
    # Random weights give a very soft potential; scale it so that atoms feel ~0.1 eV/Å forces.
    model.energy_scale.fill_(10.0)
    return model


def _thermalize(atoms, temperature_k=300.0, seed=0):
    rng = np.random.default_rng(seed)
    masses = atoms.get_masses()[:, None]
    p = rng.normal(size=(len(atoms), 3)) * np.sqrt(masses * units.kB * temperature_k)
    atoms.set_momenta(p - p.mean(0) * masses / masses.mean())  # zero total momentum


def _nve_drift(atoms, steps):
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    e0 = atoms.get_total_energy()
    drift, displacement, start = 0.0, 0.0, atoms.get_positions().copy()
    for _ in range(steps):
        dyn.run(1)
        drift = max(drift, abs(atoms.get_total_energy() - e0) / len(atoms))
    displacement = float(np.abs(atoms.get_positions() - start).max())
    return drift, displacement


def test_forces_and_stress_match_finite_differences():
    atoms = _si()
    atoms.calc = PointsymCalculator(_stiff(small_pet([14], r_cut=3.0)))
    forces = atoms.get_forces()
    assert np.abs(forces).max() > 1e-2  # a real test: the forces are not ~0
    np.testing.assert_allclose(forces, calculate_numerical_forces(atoms, eps=1e-5), atol=1e-8)
    np.testing.assert_allclose(atoms.get_stress(), calculate_numerical_stress(atoms, eps=1e-6), atol=1e-8)


def test_ecse_forces_match_finite_differences():
    # ECSE's switching functions curve sharply, so central differences need a small step;
    # a few components keep the test cheap.
    atoms = _si()
    calc = PointsymCalculator(ECSE(_stiff(tiny_pet([14], r_cut=3.0)), r_cut=3.0))
    atoms.calc = calc
    forces = atoms.get_forces()
    eps = 1e-6
    for atom, axis in [(5, 1), (0, 2), (3, 0)]:
        probe = atoms.copy()
        probe.calc = calc
        probe.positions[atom, axis] += eps
        e_plus = probe.get_potential_energy()
        probe.positions[atom, axis] -= 2 * eps
        e_minus = probe.get_potential_energy()
        assert forces[atom, axis] == pytest.approx(-(e_plus - e_minus) / (2 * eps), abs=1e-7)


def test_molecule_has_forces_but_no_stress():
    atoms = molecule("CH4")
    atoms.calc = PointsymCalculator(_stiff(small_pet(["H", "C"], r_cut=3.0)))
    assert atoms.get_forces().shape == (5, 3)
    assert abs(atoms.get_forces().sum(0)).max() < 1e-10  # translation invariance: no net force
    with pytest.raises(ValueError, match="periodic"):
        atoms.get_stress()


# ECSE's frame weights switch sharply (narrow angular windows), so velocity Verlet at 1 fs
# shows transient total-energy errors of ~1e-5..1e-4 eV/atom where a frame switches, against
# ~1e-8 for the bare model; the energy itself is consistent with the forces (next test).
@pytest.mark.parametrize("wrap,steps,bound", [("bare", 40, 1e-6), ("ecse", 12, 5e-4)])
def test_nve_md_conserves_energy(wrap, steps, bound):
    model = _stiff(small_pet([14], r_cut=3.0) if wrap == "bare" else tiny_pet([14], r_cut=3.0))
    if wrap == "ecse":
        model = ECSE(model, r_cut=3.0)
    atoms = _si(seed=1)
    atoms.calc = PointsymCalculator(model)
    _thermalize(atoms)
    drift, moved = _nve_drift(atoms, steps)
    assert moved > 1e-3  # the atoms really moved
    assert drift < bound, f"energy drift {drift:.3g} eV/atom over {steps} steps"


def test_ecse_energy_change_equals_work_along_an_md_step():
    # No discontinuity: along a path of 0.002 Å per atom the energy change equals the line
    # integral of the forces (trapezoid rule) step by step.
    atoms = _si(seed=1)
    calc = PointsymCalculator(ECSE(_stiff(tiny_pet([14], r_cut=3.0)), r_cut=3.0))
    atoms.calc = calc
    start = atoms.get_positions().copy()
    direction = np.random.default_rng(3).normal(size=start.shape)
    direction *= 0.002 / np.abs(direction).max()
    ts = np.linspace(0.0, 1.0, 41)
    energies, work_rate = [], []
    for t in ts:
        atoms.positions = start + t * direction
        energies.append(atoms.get_potential_energy())
        work_rate.append(-(atoms.get_forces() * direction).sum())
    d_energy = np.diff(energies)
    d_work = 0.5 * (np.array(work_rate[1:]) + np.array(work_rate[:-1])) * (ts[1] - ts[0])
    assert np.abs(d_energy).max() > 1e-7
    np.testing.assert_allclose(d_energy, d_work, atol=2e-8)


def test_calculator_from_model_file_and_ecse(tmp_path):
    model = _stiff(tiny_pet([14], r_cut=3.0))
    model.save(tmp_path / "pet.pt")
    atoms = _si()
    bare = PointsymCalculator.from_checkpoint(tmp_path / "pet.pt")
    assert bare.get_potential_energy(atoms) == pytest.approx(PointsymCalculator(model).get_potential_energy(atoms),
                                                             abs=1e-10)
    sym = PointsymCalculator.from_checkpoint(tmp_path / "pet.pt", ecse=True)
    assert type(sym.model).__name__ == "ECSE"
    # ECSE energies are exactly invariant under a rotation of the whole cell
    rotated = atoms.copy()
    rotated.rotate(37, "x", rotate_cell=True)
    rotated.rotate(81, "z", rotate_cell=True)
    assert sym.get_potential_energy(rotated) == pytest.approx(sym.get_potential_energy(atoms), abs=1e-9)


def test_calculator_from_pet_train_checkpoint(tmp_path):
    from pointsym.cli import main

    out = tmp_path / "run"
    rc = main(["pet-train", "--data", "Si", "--source", "embedded", "--max-train", "8", "--max-test", "2",
               "--epochs", "1", "--d-model", "8", "--n-gnn-layers", "1", "--n-trans-layers", "1",
               "--quiet", "--out", str(out), "--discrepancy-structures", "1", "--no-eval-ecse"])
    assert rc == 0
    calc = PointsymCalculator.from_checkpoint(out / "checkpoints" / "best.pt")
    atoms = _si()
    atoms.calc = calc
    assert np.isfinite(atoms.get_potential_energy())
    assert atoms.get_forces().shape == (8, 3)
    # A fresh process that never imported pointsym.models: the Trainer checkpoint names the class
    # only ("PET"), and loading must still find it.
    code = ("import sys; from pointsym.calculators import PointsymCalculator; "
            "assert 'pointsym.models.pet' not in sys.modules; "
            f"print(type(PointsymCalculator.from_checkpoint({str(out / 'checkpoints' / 'best.pt')!r}).model).__name__)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "PET"


def test_bad_arguments():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        PointsymCalculator(lambda *a: 0.0)
    with pytest.raises(ValueError, match="dtype"):
        PointsymCalculator(torch.nn.Linear(1, 1), dtype="float16")
