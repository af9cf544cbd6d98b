"""Per-environment ECSE (``mode="atom"``) of strictly local models: exact O(3) equivariance
(energies, forces, stress, vectors), invariant models unchanged, smoothness (frames switching,
cutoff crossing, per-atom collinear fallback), forces = -dE/dx, and refusal of non-local models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_ecse_smoothness import _assert_smooth

from helpers import energy_forces_fn, small_pet, tiny_pet
from pointsym.structures import batched_neighbor_list, check_structure_inputs, energy_and_forces
from pointsym.symmetrize import ECSE, NeighborMLP
from pointsym.testing import assert_equivariant, equivariance_error

MLP_TYPES = {"energy": "invariant", "vector": "vector", "atom_energy": "atom_invariant", "atom_vector": "atom_vector"}


def _mlp(r_cut=3.0, seed=7):
    torch.manual_seed(seed)
    return NeighborMLP(r_cut=r_cut, hidden=16, n_features=8).double()


def _rotation(seed, reflect=False):
    q = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))[0]
    q = q * np.sign(np.linalg.det(q))
    return torch.tensor(q @ np.diag([1.0, 1.0, -1.0]) if reflect else q)


def test_local_entry_points_reproduce_the_models(si_cell, methane):
    pet, mlp = tiny_pet([14, 6, 1], r_cut=3.0), _mlp()
    for inputs in (si_cell, methane):
        p, n, c, pb, b = check_structure_inputs(**inputs)
        i, j, _, v = batched_neighbor_list(p, c, pb, b, r_cut=3.0)
        torch.testing.assert_close(pet.atomic_outputs_local(n, v, n[j], i), pet.atomic_energies(**inputs),
                                   rtol=0, atol=1e-13)
        local, bare = mlp.atomic_outputs_local(n, v, n[j], i), mlp(**inputs)
        for key in ("atom_energy", "atom_vector"):
            torch.testing.assert_close(local[key], bare[key], rtol=0, atol=1e-13)
    assert pet.is_local and not small_pet([14]).is_local


@pytest.mark.parametrize("structure", ["methane", "si_cell"])
def test_atom_mode_pet_is_exactly_o3_equivariant(structure, request):
    inputs = request.getfixturevalue(structure)
    pet = tiny_pet([6, 1] if structure == "methane" else [14], r_cut=3.0)
    sym = ECSE(pet, r_cut=3.0, mode="atom")
    for kind in ("rotation", "reflection"):
        errors = assert_equivariant(energy_forces_fn(sym), inputs, kind, outputs=("invariant", "atom_vector"),
                                    rtol=1e-12, n_trials=6)
        assert errors["0"]["scale"] > 0 and errors["1"]["scale"] > 0
    assert sym.last_stats["mode"] == "atom"
    # A different (also exact) symmetrization than the union mode, and not the bare model.
    with torch.no_grad():
        e_atom, e_union, e_bare = sym(**inputs), ECSE(pet, r_cut=3.0)(**inputs), pet(**inputs)
    assert abs(float(e_atom - e_union)) > 1e-8 and abs(float(e_atom - e_bare)) > 1e-8


def test_atom_mode_stress_is_equivariant_and_matches_finite_strain(si_cell):
    sym = ECSE(tiny_pet([14], r_cut=3.0), r_cut=3.0, mode="atom")
    out = energy_and_forces(sym, **si_cell, stress=True)
    for seed, reflect in ((0, False), (1, True)):
        q = _rotation(seed, reflect)
        rot = dict(si_cell, positions=si_cell["positions"] @ q.T, cell=si_cell["cell"] @ q.T)
        got = energy_and_forces(sym, **rot, stress=True)
        assert abs(float(got["energy"] - out["energy"])) < 1e-12 * abs(float(out["energy"]))
        torch.testing.assert_close(got["forces"], out["forces"] @ q.T, rtol=0, atol=1e-11)
        torch.testing.assert_close(got["stress"][0], q @ out["stress"][0] @ q.T, rtol=0, atol=1e-11)
    # stress = (1/V) dE/d(strain): central differences of one symmetric strain component
    h, (a, b) = 1e-6, (0, 1)
    eps = torch.zeros(3, 3, dtype=torch.float64)
    eps[a, b] = eps[b, a] = 0.5

    def energy(t):
        d = torch.eye(3, dtype=torch.float64) + t * eps
        return float(energy_and_forces(sym, **dict(si_cell, positions=si_cell["positions"] @ d,
                                                    cell=si_cell["cell"] @ d), forces=False)["energy"])

    volume = abs(float(torch.linalg.det(si_cell["cell"])))
    fd = (energy(h) - energy(-h)) / (2 * h) / volume
    st = out["stress"][0]
    assert abs(fd - float(0.5 * (st[a, b] + st[b, a]))) < 1e-6 * (1 + abs(fd))


def test_atom_mode_generic_mlp_vectors_and_atomic_outputs():
    x = torch.tensor(np.random.default_rng(2).normal(scale=1.1, size=(7, 3)))
    inputs = {"positions": x, "numbers": torch.tensor([1, 1, 6, 6, 8, 1, 1])}
    sym = ECSE(_mlp(seed=1), r_cut=3.0, outputs=NeighborMLP.OUTPUTS, mode="atom")
    for kind in ("rotation", "reflection"):
        assert_equivariant(sym, inputs, kind, outputs=MLP_TYPES, rtol=1e-12, n_trials=5)
    for kind in ("permutation", "translation"):
        assert_equivariant(sym, inputs, kind, outputs=MLP_TYPES, rtol=1e-12, n_trials=2)
    with torch.no_grad():
        out = sym(**inputs)
    # Structure outputs are the sums of the symmetrized atomic ones.
    torch.testing.assert_close(out["energy"], out["atom_energy"].sum()[None], rtol=0, atol=1e-12)
    torch.testing.assert_close(out["vector"], out["atom_vector"].sum(0)[None], rtol=0, atol=1e-12)
    # Batching two structures gives the same as one by one.
    b = {"positions": torch.cat([x, x[:4] + 10.0]), "numbers": torch.tensor([1, 1, 6, 6, 8, 1, 1, 1, 1, 6, 6]),
         "batch": torch.tensor([0] * 7 + [1] * 4)}
    with torch.no_grad():
        both = sym(**b)
        second = sym(positions=x[:4], numbers=torch.tensor([1, 1, 6, 6]))
    torch.testing.assert_close(both["energy"], torch.cat([out["energy"], second["energy"]]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["union", "atom"])
def test_an_invariant_model_is_reproduced_in_both_modes(mode, methane, si_cell):
    for inputs, species in ((methane, [6, 1]), (si_cell, [14])):
        inv = tiny_pet(species, r_cut=3.0, use_only_length=True, seed=2)
        bare = {k: v.detach() for k, v in energy_and_forces(inv, **inputs).items()}
        sym = energy_and_forces(ECSE(inv, r_cut=3.0, mode=mode), **inputs)
        assert abs(float(sym["energy"] - bare["energy"])) < 1e-12 * abs(float(bare["energy"]))
        torch.testing.assert_close(sym["forces"], bare["forces"], rtol=0, atol=1e-12)


def test_atom_mode_forces_are_minus_the_energy_gradient(methane, si_cell):
    rng = np.random.default_rng(0)
    for inputs, species in ((methane, [6, 1]), (si_cell, [14])):
        sym = ECSE(tiny_pet(species, r_cut=3.0), r_cut=3.0, mode="atom")
        out = energy_and_forces(sym, **inputs)
        for _ in range(3):
            a, k = int(rng.integers(inputs["positions"].shape[0])), int(rng.integers(3))
            h = 1e-6
            d = torch.zeros_like(inputs["positions"])
            d[a, k] = 1.0
            e = [float(energy_and_forces(sym, **dict(inputs, positions=inputs["positions"] + s * h * d),
                                         forces=False)["energy"]) for s in (1, -1)]
            fd = (e[0] - e[1]) / (2 * h)
            assert abs(fd + float(out["forces"][a, k])) < 1e-6 * (1 + abs(fd)), (a, k, fd, out["forces"][a, k])


def test_atom_mode_is_smooth_when_frames_switch_and_a_neighbour_crosses_the_cutoff():
    sym = ECSE(_mlp(), r_cut=3.0, outputs=NeighborMLP.OUTPUTS, mode="atom")

    def pos(t):  # atom 3 leaves R_in of atom 0 (its frames switch off), then the cutoff (3 A)
        return np.array([[0.0, 0.0, 0.0], [1.0, 0.05, 0.0], [0.0, 1.0, 0.1], [0.1, 0.0, t]])

    _, _, stats = _assert_smooth(sym, pos, np.linspace(1.0, 1.4, 11), [6, 1, 1, 1])
    assert stats[0][0] > stats[-1][0]  # frames were switched off along the path
    energies, slopes, _ = _assert_smooth(sym, pos, np.linspace(2.8, 3.4, 11), [6, 1, 1, 1])
    assert abs(slopes[0]) > 1e-6 and abs(slopes[-1]) < 1e-12  # interacts, then out of range


def test_atom_mode_is_smooth_when_the_per_atom_collinear_fallback_switches_on():
    sym = ECSE(_mlp(), r_cut=3.0, outputs=NeighborMLP.OUTPUTS, mode="atom")

    def pos(t):  # HCN bent by t degrees: every environment collinear -> bent
        a = np.deg2rad(t)
        return np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.16], [1.07 * np.sin(a), 0.0, -1.07 * np.cos(a)]])

    _assert_smooth(sym, pos, np.linspace(0.0, 40.0, 11), [6, 7, 1])
    energy_and_forces(sym, torch.tensor(pos(0.0)), torch.tensor([6, 7, 1]))
    assert np.all(sym.last_stats["w_aux"] == 1.0)
    energy_and_forces(sym, torch.tensor(pos(40.0)), torch.tensor([6, 7, 1]))
    w_aux = sym.last_stats["w_aux"]
    assert w_aux[0] == 0.0 and min(w_aux[1:]) > 0.4  # C is bent; N and H still see a narrow angle


def test_atom_mode_collinear_fallback_is_exact_and_equivariant():
    inputs = {"positions": torch.tensor([[0.1, 0.2, 0.3], [0.1, 0.2, 1.46], [0.1, 0.2, -0.86]], dtype=torch.float64),
              "numbers": torch.tensor([6, 8, 8])}
    mlp = _mlp(seed=3)
    sym = ECSE(mlp, r_cut=3.0, outputs=NeighborMLP.OUTPUTS, mode="atom")
    for kind in ("rotation", "reflection"):  # (the total vector of this symmetric molecule is ~0: atol)
        assert_equivariant(sym, inputs, kind, outputs=MLP_TYPES, rtol=1e-12, atol=1e-14, n_trials=5)
    # Along x the projection is the molecule itself: scalars are the model's own (x and -x averaged).
    along_x = {"positions": torch.tensor([[0.0, 0, 0], [1.16, 0, 0], [-1.16, 0, 0]], dtype=torch.float64),
               "numbers": inputs["numbers"]}
    mirrored = dict(along_x, positions=-along_x["positions"])
    with torch.no_grad():
        ref = 0.5 * (mlp(**along_x)["energy"] + mlp(**mirrored)["energy"])
        torch.testing.assert_close(sym(**inputs)["energy"], ref, rtol=0, atol=1e-12)
    # An intrinsically invariant local aux model, or none (then an explicit error).
    aux = tiny_pet([6, 8], r_cut=3.0, use_only_length=True, seed=4)
    pet = tiny_pet([6, 8], r_cut=3.0)
    e = energy_and_forces(ECSE(pet, r_cut=3.0, mode="atom", aux_model=aux), **inputs)["energy"]
    torch.testing.assert_close(e, aux(**inputs), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="collinear"):
        ECSE(pet, r_cut=3.0, mode="atom", aux_model=None)(**inputs)


def test_non_local_models_are_refused_and_union_stays_the_default(methane, tmp_path):
    with pytest.raises(ValueError, match="n_gnn_layers=2"):
        ECSE(small_pet([6, 1]), r_cut=3.0, mode="atom")

    def any_callable(positions, numbers, cell, pbc, batch):
        return positions.sum()[None]

    with pytest.raises(ValueError, match="does not declare locality"):
        ECSE(any_callable, r_cut=3.0, mode="atom")
    with pytest.raises(ValueError, match="aux_model"):
        ECSE(tiny_pet([6, 1]), r_cut=3.0, mode="atom", aux_model=small_pet([6, 1], use_only_length=True))
    with pytest.raises(ValueError, match="mode"):
        ECSE(tiny_pet([6, 1]), r_cut=3.0, mode="atoms")
    sym = ECSE(tiny_pet([6, 1]), r_cut=3.0)
    assert sym.mode == "union" and sym.hypers["mode"] == "union"
    # mode is a setting: it survives save / from_checkpoint.
    local = ECSE(tiny_pet([6, 1]), r_cut=3.0, mode="atom")
    local.save(tmp_path / "ecse.pt")
    again = ECSE.from_checkpoint(tmp_path / "ecse.pt")
    assert again.mode == "atom"
    with torch.no_grad():
        torch.testing.assert_close(again(**methane), local(**methane), rtol=0, atol=1e-12)
    bare = equivariance_error(energy_forces_fn(tiny_pet([6, 1])), methane, "rotation",
                              outputs=("invariant", "atom_vector"), n_trials=3)
    assert bare["1"]["rel"] > 1e-3  # negative control: the bare PET is not equivariant


class _EdgeModel(torch.nn.Module):
    """A model given only by the locality protocol (no structure forward): a non-invariant
    per-atom energy from raw edge components, and a wrongly declared variant."""

    r_cut = 2.5

    def __init__(self, keys=("energy",)):
        super().__init__()
        self.keys = keys
        self.w = torch.nn.Parameter(torch.tensor([0.3, -0.7, 1.1], dtype=torch.float64))

    def atomic_outputs_local(self, center_numbers, edge_vectors, edge_numbers, edge_center):
        r = edge_vectors.norm(dim=1)
        fc = torch.where(r < self.r_cut, torch.cos(0.5 * torch.pi * r / self.r_cut) ** 2, torch.zeros_like(r))
        e = fc * torch.tanh(edge_vectors @ self.w + 0.2 * edge_vectors[:, 0] * edge_vectors[:, 1]) * edge_numbers
        atom = e.new_zeros(center_numbers.shape[0]).index_add(0, edge_center, e) + 0.1 * center_numbers
        return {k: atom for k in self.keys}


def test_any_model_implementing_the_locality_protocol(methane):
    sym = ECSE(_EdgeModel(), r_cut=2.5, outputs={"energy": "scalar"}, mode="atom")
    for kind in ("rotation", "reflection"):
        assert_equivariant(energy_forces_fn(sym), methane, kind, outputs=("invariant", "atom_vector"),
                           rtol=1e-12, n_trials=4)
    with pytest.raises(ValueError, match="every declared output"):
        ECSE(_EdgeModel(keys=("e",)), r_cut=2.5, outputs={"energy": "scalar"}, mode="atom")(**methane)
    declined = _EdgeModel()
    declined.is_local = False
    with pytest.raises(ValueError, match="is_local is False"):
        ECSE(declined, r_cut=2.5, mode="atom")
