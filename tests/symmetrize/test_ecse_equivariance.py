"""ECSE makes models exactly O(3)-equivariant: PET (energies, forces) and a generic MLP
(scalars, vectors, per-atom outputs), with negative controls on the bare models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import energy_forces_fn, tiny_pet
from pointsym.structures import energy_and_forces
from pointsym.symmetrize import ECSE, NeighborMLP
from pointsym.testing import assert_equivariant, equivariance_error

N_ROT = 20
MLP_TYPES = {"energy": "invariant", "vector": "vector", "atom_energy": "atom_invariant", "atom_vector": "atom_vector"}


@pytest.mark.parametrize("structure", ["methane", "si_cell"])
def test_symmetrized_pet_is_exactly_o3_equivariant_and_bare_pet_is_not(structure, request):
    inputs = request.getfixturevalue(structure)
    species = [6, 1] if structure == "methane" else [14]
    model = tiny_pet(species, r_cut=3.0)
    sym = ECSE(model, r_cut=model.r_cut)
    for kind in ("rotation", "reflection"):
        # Energy spread and force-equivariance error over 20 random group elements.
        errors = assert_equivariant(energy_forces_fn(sym), inputs, kind, outputs=("invariant", "atom_vector"),
                                    rtol=1e-10, n_trials=N_ROT)
        assert errors["0"]["scale"] > 0 and errors["1"]["scale"] > 0
    # Negative control: the bare PET is clearly not invariant.
    bare = equivariance_error(energy_forces_fn(model), inputs, "rotation", outputs=("invariant", "atom_vector"),
                              n_trials=5)
    assert bare["0"]["rel"] > 1e-5 and bare["1"]["rel"] > 1e-3


def test_generic_wrapper_on_a_non_equivariant_mlp():
    x = torch.tensor(np.random.default_rng(2).normal(scale=1.1, size=(7, 3)))
    inputs = {"positions": x, "numbers": torch.tensor([1, 1, 6, 6, 8, 1, 1])}
    torch.manual_seed(1)
    mlp = NeighborMLP(r_cut=3.0, hidden=8, n_features=8).double()
    bare = equivariance_error(mlp, inputs, "rotation", outputs=MLP_TYPES, n_trials=5)
    assert all(v["rel"] > 1e-3 for v in bare.values()), bare  # the negative control fails
    sym = ECSE(mlp, r_cut=3.0, outputs=NeighborMLP.OUTPUTS)
    for kind in ("rotation", "reflection"):
        assert_equivariant(sym, inputs, kind, outputs=MLP_TYPES, rtol=1e-10, n_trials=N_ROT)
    # Symmetrization keeps the symmetries the model already had.
    for kind in ("permutation", "translation"):
        assert_equivariant(sym, inputs, kind, outputs=MLP_TYPES, rtol=1e-10, n_trials=3)


def test_so3_mode_is_rotation_exact_but_not_mirror_exact(methane):
    torch.manual_seed(1)
    mlp = NeighborMLP(r_cut=3.0, hidden=8, n_features=8).double()
    sym = ECSE(mlp, r_cut=3.0, outputs=NeighborMLP.OUTPUTS, reflections=False)
    assert_equivariant(sym, methane, "rotation", outputs=MLP_TYPES, rtol=1e-10, n_trials=5)
    err = equivariance_error(sym, methane, "reflection", outputs=MLP_TYPES, n_trials=3)
    assert err["vector"]["rel"] > 1e-4  # proper frames only: mirrors are not exact


def test_rank2_tensor_outputs_rotate_as_m_t_mT(si_cell):
    torch.manual_seed(3)
    mlp = NeighborMLP(r_cut=3.5, hidden=8, n_features=8).double()

    def tensor_model(positions, numbers, cell, pbc, batch):
        out = mlp(positions, numbers, cell, pbc, batch)
        v, t = out["atom_vector"], out["vector"]
        # Deliberately non-equivariant rank-2 outputs (mixing in raw coordinates).
        atom_t = v[:, :, None] * (v[:, None, :] + positions[:, None, :] ** 2)
        return {"t": t[:, :, None] * t[:, None, :] + torch.diag_embed(t), "atom_t": atom_t}

    sym = ECSE(tensor_model, r_cut=3.5, outputs={"t": "tensor", "atom_t": "atom_tensor"})
    with torch.no_grad():
        ref = sym(**si_cell)
    q = torch.tensor(np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0])
    rot = dict(si_cell, positions=si_cell["positions"] @ q.T, cell=si_cell["cell"] @ q.T)
    with torch.no_grad():
        got = sym(**rot)
    assert torch.allclose(got["t"], q @ ref["t"] @ q.T, atol=1e-12 * float(ref["t"].abs().max()))
    assert torch.allclose(got["atom_t"], q @ ref["atom_t"] @ q.T, atol=1e-12 * float(ref["atom_t"].abs().max()))


@pytest.mark.parametrize("positions", [
    [[0.0, 0.0, 0.0], [0.3, 0.5, 1.0]],  # diatomic
    [[0.1, 0.2, 0.3], [0.1, 0.2, 1.46], [0.1, 0.2, -0.86]],  # linear triatomic (CO2-like)
], ids=["diatomic", "linear_triatomic"])
def test_collinear_molecules_use_the_equivariant_fallback(positions):
    z = [6, 8] if len(positions) == 2 else [6, 8, 8]
    inputs = {"positions": torch.tensor(positions, dtype=torch.float64), "numbers": torch.tensor(z)}
    model = tiny_pet([6, 8], r_cut=3.0)
    sym = ECSE(model, r_cut=3.0)
    for kind in ("rotation", "reflection"):
        assert_equivariant(energy_forces_fn(sym), inputs, kind, outputs=("invariant", "atom_vector"), rtol=1e-10,
                           n_trials=N_ROT)
    assert sym.last_stats["n_frames"][0] == 0 and sym.last_stats["w_aux"][0] == 1.0
    # An intrinsically invariant auxiliary model works as well...
    aux = tiny_pet([6, 8], r_cut=3.0, use_only_length=True, seed=4)
    sym_aux = ECSE(model, r_cut=3.0, aux_model=aux)
    e = energy_and_forces(sym_aux, **inputs)["energy"]
    assert torch.allclose(e, aux(**inputs), atol=1e-12)  # w_aux = 1: pure auxiliary prediction
    assert_equivariant(energy_forces_fn(sym_aux), inputs, "rotation", outputs=("invariant", "atom_vector"),
                       rtol=1e-10, n_trials=5)
    # ...and without any fallback the undefined case is an explicit error, not a NaN.
    with pytest.raises(ValueError, match="collinear"):
        ECSE(model, r_cut=3.0, aux_model=None)(**inputs)
