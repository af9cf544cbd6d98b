"""ECSE as a module: batching, calling conventions, gradient paths, stress, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import tiny_pet
from pointsym.structures import autograd_energy_forces, energy_and_forces
from pointsym.symmetrize import ECSE, NeighborMLP, rotational_discrepancy


def _cat(a, b):
    """Two structures as one batch."""
    n_a, n_b = len(a["positions"]), len(b["positions"])
    cell_a = a.get("cell", torch.zeros(3, 3, dtype=torch.float64)).reshape(1, 3, 3)
    cell_b = b.get("cell", torch.zeros(3, 3, dtype=torch.float64)).reshape(1, 3, 3)
    pbc_a = a.get("pbc", torch.zeros(3, dtype=torch.bool)).reshape(1, 3)
    pbc_b = b.get("pbc", torch.zeros(3, dtype=torch.bool)).reshape(1, 3)
    return {"positions": torch.cat([a["positions"], b["positions"]]),
            "numbers": torch.cat([a["numbers"], b["numbers"]]),
            "cell": torch.cat([cell_a, cell_b]), "pbc": torch.cat([pbc_a, pbc_b]),
            "batch": torch.cat([torch.zeros(n_a, dtype=torch.long), torch.ones(n_b, dtype=torch.long)])}


def test_batch_of_different_structures_equals_separate_calls(methane, si_cell):
    model = tiny_pet([1, 6, 14], r_cut=3.5)
    sym = ECSE(model, r_cut=3.5, chunk_atoms=20)  # small chunks: several model calls per structure
    both = energy_and_forces(sym, **_cat(methane, si_cell))
    one = energy_and_forces(sym, **methane)
    two = energy_and_forces(sym, **si_cell)
    assert torch.allclose(both["energy"], torch.cat([one["energy"], two["energy"]]), atol=1e-12)
    assert torch.allclose(both["forces"], torch.cat([one["forces"], two["forces"]]), atol=1e-12)


def test_chunked_backward_equals_plain_autograd_through_frames_and_weights(si_cell):
    sym = ECSE(tiny_pet([14], r_cut=3.0), r_cut=3.0, chunk_atoms=5)
    chunked = energy_and_forces(sym, **si_cell, stress=True)
    plain = autograd_energy_forces(sym, **si_cell, stress=True)
    for key in ("energy", "forces", "stress"):
        assert torch.allclose(chunked[key], plain[key], atol=1e-12), key
    # Detaching frames and weights gives different (non-conservative) forces: they matter.
    positions = si_cell["positions"].detach().requires_grad_(True)
    frames = sym.frames(**dict(si_cell, positions=positions))
    assert frames.rotations.requires_grad and frames.weights.requires_grad


def test_stress_is_a_strain_derivative_and_rotates_as_a_tensor(si_cell):
    sym = ECSE(tiny_pet([14], r_cut=3.0), r_cut=3.0)
    out = energy_and_forces(sym, **si_cell, stress=True)
    eps = np.zeros((3, 3))
    eps[0, 1] = eps[1, 0] = 1e-5
    strained = dict(si_cell, positions=si_cell["positions"] @ (torch.eye(3, dtype=torch.float64) + torch.tensor(eps)),
                    cell=si_cell["cell"] @ (torch.eye(3, dtype=torch.float64) + torch.tensor(eps)))
    relaxed = dict(si_cell, positions=si_cell["positions"] @ (torch.eye(3, dtype=torch.float64) - torch.tensor(eps)),
                   cell=si_cell["cell"] @ (torch.eye(3, dtype=torch.float64) - torch.tensor(eps)))
    de = float(energy_and_forces(sym, **strained, forces=False)["energy"]
               - energy_and_forces(sym, **relaxed, forces=False)["energy"]) / 2
    volume = abs(float(torch.linalg.det(si_cell["cell"])))
    assert abs(de / volume - float(out["stress"][0, 0, 1] + out["stress"][0, 1, 0]) * 1e-5) < 1e-9
    q = torch.tensor(np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0])
    rot = dict(si_cell, positions=si_cell["positions"] @ q.T, cell=si_cell["cell"] @ q.T)
    got = energy_and_forces(sym, **rot, stress=True)["stress"][0]
    assert torch.allclose(got, q @ out["stress"][0] @ q.T, atol=1e-12)


def test_unbatched_models_are_supported(methane):
    torch.manual_seed(0)
    mlp = NeighborMLP(r_cut=3.0, hidden=8, n_features=8).double()

    def single(positions, numbers, cell, pbc):  # one structure, no batch argument
        out = mlp(positions, numbers, cell, pbc)
        return {k: v[0] if k in ("energy", "vector") else v for k, v in out.items()}

    batched = ECSE(mlp, r_cut=3.0, outputs=NeighborMLP.OUTPUTS)(**methane)
    unbatched = ECSE(single, r_cut=3.0, outputs=NeighborMLP.OUTPUTS, batched=False)(**methane)
    for key in batched:
        assert torch.allclose(batched[key], unbatched[key], atol=1e-12), key


def test_rotational_discrepancy_metric(methane):
    import ase

    atoms = ase.Atoms(numbers=methane["numbers"].numpy(), positions=methane["positions"].numpy())
    model = tiny_pet([6, 1], r_cut=3.0)
    bare = rotational_discrepancy(model.predict, atoms, n_rotations=6, reflections=True)
    sym = rotational_discrepancy(ECSE(model, r_cut=3.0).predict, atoms, n_rotations=6, reflections=True)
    assert bare["forces_rms"] > 1e-4 and bare["energy_rms"] > 1e-7
    assert sym["forces_rms"] < 1e-12 and sym["energy_rms"] < 1e-12
    assert sym["energy_mean"].shape == (1,) and sym["forces_mean"].shape == (5, 3)


def test_declared_outputs_are_checked(methane):
    mlp = NeighborMLP(r_cut=3.0, hidden=8).double()
    with pytest.raises(ValueError, match="do not match the declared"):
        ECSE(mlp, r_cut=3.0, outputs={"energy": "scalar"})(**methane)
    with pytest.raises(TypeError, match="not a dict|must return one tensor"):
        ECSE(mlp, r_cut=3.0, outputs="scalar")(**methane)
    with pytest.raises(ValueError, match=r"must have one row per atom \(5 atoms\) and a last axis of size 3; "
                                         r"the model returned one row per structure"):
        ECSE(mlp, r_cut=3.0, outputs={**NeighborMLP.OUTPUTS, "vector": "atom_vector"})(**methane)
    with pytest.raises(ValueError, match="Expected 'outputs"):
        ECSE(mlp, r_cut=3.0, outputs="pseudovector")
    with pytest.raises(ValueError, match="needs a 'scalar' output"):
        energy_and_forces(ECSE(mlp, r_cut=3.0, outputs=NeighborMLP.OUTPUTS), **methane, energy_key="vector")


def test_bad_input_gives_clear_errors(methane):
    sym = ECSE(tiny_pet([6, 1], r_cut=3.0), r_cut=3.0)
    pos = methane["positions"]
    with pytest.raises(ValueError, match="NaN"):
        sym(pos.clone().fill_(float("nan")), methane["numbers"])
    with pytest.raises(ValueError, match="Overlapping atoms"):
        sym(torch.cat([pos, pos[:1]]), torch.cat([methane["numbers"], methane["numbers"][:1]]))
    with pytest.raises(ValueError, match="Empty structure"):
        sym(pos[:0], methane["numbers"][:0])
    with pytest.raises(ValueError, match="not in this model's species"):
        sym(pos, torch.tensor([6, 1, 1, 1, 8]))
    with pytest.raises(ValueError, match="max_frames"):
        ECSE(tiny_pet([6, 1], r_cut=3.0), r_cut=3.0, max_frames=1)(**methane)
    with pytest.raises(ValueError, match="projection"):  # collinear chain in a periodic cell
        cell = torch.diag(torch.tensor([2.0, 20.0, 20.0], dtype=torch.float64))
        ECSE(tiny_pet([6], r_cut=3.0), r_cut=3.0)(torch.tensor([[0.0, 0, 0]], dtype=torch.float64),
                                                   torch.tensor([6]), cell, torch.tensor([True, True, True]))
    with pytest.raises(TypeError, match="'model'"):
        ECSE(42, r_cut=3.0)
    with pytest.raises(ValueError, match="r_cut"):
        ECSE(sym.model, r_cut=-1.0)


def test_principal_axis_gradient_is_exact_even_with_degenerate_small_moments():
    from pointsym.symmetrize import principal_axis

    v = torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64)

    def f(points):  # sign-invariant function of the axis
        return (principal_axis(points)[1] @ v) ** 2

    bent = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.0, 1.2], [-0.05, 0.08, -1.1]], dtype=torch.float64)
    linear = torch.tensor([[0.0, 0.0, -1.16], [0.0, 0.0, 0.0], [0.0, 0.0, 1.16]], dtype=torch.float64)
    for points in (bent, linear):  # the linear case has two exactly equal (zero) small moments
        assert torch.autograd.gradcheck(f, (points.requires_grad_(True),), eps=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="no unique principal axis"):
        principal_axis(torch.eye(3, dtype=torch.float64))  # an equilateral triangle: planar, no axis
