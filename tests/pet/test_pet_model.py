"""The Point Edge Transformer: batching, periodicity, symmetries it has and has not,
exact derivatives, smooth cutoff, neighbour layout and input validation."""

from __future__ import annotations

import ase
import numpy as np
import pytest
import torch

from helpers import energy_forces_fn, small_pet
from pointsym.geometry import neighbor_list
from pointsym.models._pet_layers import neighbor_layout
from pointsym.models.pet import PET
from pointsym.structures import batch_structures, energy_and_forces
from pointsym.testing import assert_equivariant, equivariance_error


def test_batch_of_structures_of_different_sizes_equals_separate_calls(water_like, si_crystal):
    model = small_pet(["H", "O", "Si"], r_cut=3.0)
    both = model.predict([water_like, si_crystal, water_like[:3]], stress=True)
    for k, atoms in enumerate([water_like, si_crystal, water_like[:3]]):
        one = model.predict(atoms, stress=True)
        assert np.allclose(both["energy"][k], one["energy"][0], atol=1e-12)
        assert np.allclose(both["forces"][both["batch"] == k], one["forces"], atol=1e-12)
    assert np.isnan(both["stress"][0]).all() and np.isfinite(both["stress"][1]).all()


def test_periodic_images_supercell_and_origin_shift(si_crystal):
    model = small_pet(["Si"], r_cut=3.0)
    e1 = model.predict(si_crystal)["energy"][0]
    e2 = model.predict(si_crystal.repeat((2, 1, 1)))["energy"][0]
    assert abs(e2 - 2 * e1) < 1e-10 * abs(e1)  # extensive and periodic
    shifted = si_crystal.copy()
    shifted.positions += [1.3, -0.4, 2.2]
    shifted.wrap()
    assert abs(model.predict(shifted)["energy"][0] - e1) < 1e-10 * abs(e1)


def test_translation_and_permutation_invariant_but_not_rotation_invariant(water_like):
    model = small_pet(["H", "O"])
    inputs = {"positions": torch.tensor(water_like.positions), "numbers": torch.tensor(water_like.numbers)}

    fn = energy_forces_fn(model)
    for kind in ("translation", "permutation"):
        assert_equivariant(fn, inputs, kind, outputs=("invariant", "atom_vector"), rtol=1e-10, n_trials=3)
    err = equivariance_error(fn, inputs, "rotation", outputs=("invariant", "atom_vector"), n_trials=3)
    assert err["0"]["rel"] > 1e-5 and err["1"]["rel"] > 1e-3  # PET learns rotations, it is not built in


def test_length_only_pet_is_exactly_invariant(water_like):
    model = small_pet(["H", "O"], use_only_length=True)
    inputs = {"positions": torch.tensor(water_like.positions), "numbers": torch.tensor(water_like.numbers)}

    fn = energy_forces_fn(model)
    for kind in ("rotation", "reflection"):
        assert_equivariant(fn, inputs, kind, outputs=("invariant", "atom_vector"), rtol=1e-10, n_trials=5)


def test_forces_and_stress_are_exact_derivatives(si_crystal):
    model = small_pet(["Si"], r_cut=3.0)
    b = batch_structures(si_crystal, dtype=torch.float64)
    out = energy_and_forces(model, **b.inputs(), stress=True)
    rng = np.random.default_rng(0)
    h = 1e-5
    d = torch.tensor(rng.normal(size=b.positions.shape))
    ep = model(b.positions + h * d, b.numbers, b.cell, b.pbc)
    em = model(b.positions - h * d, b.numbers, b.cell, b.pbc)
    assert abs(float((ep - em).detach()) / (2 * h) + float((out["forces"] * d).sum())) < 1e-6
    eps = torch.tensor(rng.normal(size=(3, 3)))
    eps = 0.5 * (eps + eps.T)
    eye = torch.eye(3, dtype=torch.float64)
    ep = model(b.positions @ (eye + h * eps), b.numbers, b.cell @ (eye + h * eps), b.pbc)
    em = model(b.positions @ (eye - h * eps), b.numbers, b.cell @ (eye - h * eps), b.pbc)
    volume = abs(float(torch.linalg.det(b.cell[0])))
    assert abs(float((ep - em).detach()) / (2 * h) / volume - float((out["stress"][0] * eps).sum())) < 1e-8


def test_cutoff_makes_energy_and_forces_vanish_continuously():
    model = small_pet(["C", "O"], r_cut=3.0, cutoff_delta=0.5)
    far = model.predict(ase.Atoms("CO", positions=[[0, 0, 0], [0, 0, 10.0]]))["energy"][0]
    rs = np.linspace(2.4, 3.1, 36)
    out = [model.predict(ase.Atoms("CO", positions=[[0, 0, 0], [0.3, 0.2, r]])) for r in rs]
    energies = np.array([o["energy"][0] for o in out]) - far
    forces = np.array([np.abs(o["forces"]).max() for o in out])
    inside = rs < 2.5
    assert np.abs(energies[inside]).min() > 1e-6 and forces[inside].min() > 1e-6  # they interact...
    gone = np.sqrt(rs ** 2 + 0.13) >= 3.0
    assert np.abs(energies[gone]).max() < 1e-12 and forces[gone].max() < 1e-12  # ...not beyond r_cut
    # ...and approach zero continuously: no step anywhere on this fine grid.
    steps = np.abs(np.diff(energies))
    assert steps.max() < 3 * np.median(steps[steps > 0]) + 1e-9


def test_reverse_edges_in_small_periodic_cells():
    cell = np.diag([2.2, 2.5, 6.0])  # tiny cell: atoms see their own periodic images
    pos = np.array([[0.1, 0.2, 0.3], [1.2, 1.3, 2.0]])
    nl = neighbor_list(pos, cell=cell, pbc=True, r_cut=3.0)
    slot, reverse, max_nb = neighbor_layout(nl.i, nl.j, nl.shifts, 2)
    assert (reverse >= 0).all()
    assert (nl.i[reverse] == nl.j).all() and (nl.j[reverse] == nl.i).all()
    assert (nl.shifts[reverse] == -nl.shifts).all()
    assert np.any((nl.i == nl.j) & np.any(nl.shifts != 0, axis=1))  # self images are present
    assert max_nb == np.bincount(nl.i).max() and slot.max() == max_nb - 1


def test_fit_baseline_recovers_self_energies():
    frames = []
    rng = np.random.default_rng(0)
    for n_h in range(1, 6):
        atoms = ase.Atoms("C" + "H" * n_h, positions=rng.normal(scale=2.0, size=(n_h + 1, 3)))
        atoms.info["energy"] = -37.5 - 0.5 * n_h
        atoms.arrays["forces"] = rng.normal(size=(n_h + 1, 3))
        frames.append(atoms)
    model = small_pet(["H", "C"]).fit_baseline(frames)
    assert np.allclose(model.self_energies.numpy(), [-0.5, -37.5], atol=1e-8)
    rms = np.sqrt(np.mean(np.concatenate([a.arrays["forces"].ravel() for a in frames]) ** 2))
    assert float(model.energy_scale) == pytest.approx(rms)


def test_hypers_rebuild_the_same_model(tmp_path, water_like):
    model = small_pet(["H", "O"])
    clone = PET(**model.hypers).double()
    clone.load_state_dict(model.state_dict())
    assert np.allclose(clone.predict(water_like)["energy"], model.predict(water_like)["energy"], atol=1e-14)
    assert "r_cut=3.0" in repr(model) and "n_params=" in repr(model)


def test_bad_input_gives_clear_errors(water_like):
    model = small_pet(["H", "O"])
    x, z = torch.tensor(water_like.positions), torch.tensor(water_like.numbers)
    with pytest.raises(ValueError, match=r"Atomic numbers \[6\] are not in this model's species \[1, 8\]"):
        model(x, torch.tensor([8, 1, 1, 6, 1, 1]))
    with pytest.raises(ValueError, match="Overlapping atoms in structure 0: atoms 0 and 6"):
        model(torch.cat([x, x[:1] + 1e-3]), torch.cat([z, z[:1]]))
    with pytest.raises(ValueError, match="NaN"):
        model(torch.where(torch.arange(6)[:, None] == 2, float("nan"), x), z)
    with pytest.raises(ValueError, match="Empty structure"):
        model(x[:0], z[:0])
    with pytest.raises(ValueError, match="Empty structure"):
        model(x, z, cell=torch.zeros(2, 3, 3, dtype=torch.float64), batch=torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match="frames\\[0\\] is an empty structure"):
        model.predict(ase.Atoms())
    with pytest.raises(ValueError, match="shape"):
        model(x[:, :2], z)
    with pytest.raises(TypeError, match="dtype"):
        model(x.float(), z)
    with pytest.raises(ValueError, match="divisible"):
        PET(["H"], r_cut=3.0, d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="cutoff_delta"):
        PET(["H"], r_cut=0.1, cutoff_delta=0.2)
    with pytest.raises(ValueError, match="Unknown chemical symbol"):
        PET(["Xx"], r_cut=3.0)
