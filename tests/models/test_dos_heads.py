"""DOS heads and baselines (pointsym.models.dos_heads) and their csnn-dos adapters: shapes, symmetry, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, graphene, molecule

from pointsym.core import load_model
from pointsym.electronic import dos_loss
from pointsym.geometry import random_rotation
from pointsym.models import PETDOS, AtomwiseDOSMLP, DOSHead
from pointsym.models.dos_heads import SOAPFeaturizer, structure_mean
from pointsym.structures import batch_structures
from pointsym.symmetrize import ECSE

N_E = 24
ENERGIES = -3.0 + 0.1 * np.arange(N_E)


# ---------------------------------------------------------------------------- structures
def _diamond(seed: int = 0) -> Atoms:
    a = bulk("C", "diamond", a=3.567, cubic=True)
    a.rattle(0.08, seed=seed)
    return a


def _graphene() -> Atoms:
    a = graphene(size=(2, 2, 1), vacuum=4.0)  # pbc (True, True, False)
    a.rattle(0.05, seed=3)
    return a


def _cluster() -> Atoms:
    ring = molecule("C6H6")
    a = ring[[i for i, z in enumerate(ring.numbers) if z == 6]]
    a.rattle(0.05, seed=4)
    return a


def _rotated(atoms: Atoms, rot: np.ndarray) -> Atoms:
    out = atoms.copy()
    out.positions = atoms.positions @ rot.T
    if atoms.pbc.any():
        out.set_cell(np.asarray(atoms.cell[:]) @ rot.T, scale_atoms=False)
    return out


def _permuted(atoms: Atoms, perm: np.ndarray) -> Atoms:
    out = atoms[perm]
    out.set_cell(atoms.cell, scale_atoms=False)
    return out


def _inputs(frames, dtype=torch.float64):
    return batch_structures(frames, dtype=dtype).inputs()


def _soap_model(**kw) -> AtomwiseDOSMLP:
    args = dict(r_cut=4.0, n_max=4, l_max=3, hidden=(16, 16))
    args.update(kw)
    return AtomwiseDOSMLP(N_E, **args)


def _pet(**kw) -> PETDOS:
    args = dict(r_cut=3.0, n_energies=N_E, d_model=16, n_gnn_layers=2, n_trans_layers=1, n_heads=2,
                dim_feedforward=16, head_hidden=16, n_features=12, hidden=(16,))
    args.update(kw)
    return PETDOS(**args)


def _perturb_bn(model: torch.nn.Module) -> None:
    """Non-trivial batch-norm statistics, so eval-mode outputs are not a mere function of the init."""
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=g, dtype=torch.float64))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g, dtype=torch.float64))


@pytest.fixture(scope="module")
def fitted_soap() -> AtomwiseDOSMLP:
    torch.manual_seed(0)
    model = _soap_model().double()
    model.fit_scaler(model.featurize([_diamond(1), _graphene(), _cluster()]))
    _perturb_bn(model)
    return model.eval()


# ---------------------------------------------------------------------------- head and mean
def test_dos_head_shapes_non_negative_and_errors():
    head = DOSHead(7, N_E, hidden=(9, 5))
    x = torch.randn(6, 7)
    y = head(x)
    assert y.shape == (6, N_E) and bool((y >= 0).all())
    assert DOSHead(7, N_E, hidden=(), smoothing=False)(x).shape == (6, N_E)
    assert [type(m).__name__ for m in head.layers][:3] == ["Linear", "BatchNorm1d", "ReLU"]
    with pytest.raises(ValueError, match=r"\(n_atoms, 7\)"):
        head(torch.randn(6, 8))
    with pytest.raises(ValueError, match="dropout"):
        DOSHead(7, N_E, dropout=1.0)
    with pytest.raises(TypeError, match="hidden"):
        DOSHead(7, N_E, hidden="512")


def test_structure_mean_and_its_errors():
    v = torch.arange(12.0).reshape(4, 3)
    out = structure_mean(v, torch.tensor([0, 1, 1, 0]))
    assert torch.allclose(out, torch.stack([(v[0] + v[3]) / 2, (v[1] + v[2]) / 2]))
    assert torch.allclose(structure_mean(v), v.mean(0, keepdim=True))
    with pytest.raises(ValueError, match="Structure 2 has no atoms"):
        structure_mean(v, torch.tensor([0, 1, 1, 0]), 3)
    with pytest.raises(ValueError, match="integer tensor of shape"):
        structure_mean(v, torch.zeros(4))
    with pytest.raises(ValueError, match="n_structures"):
        structure_mean(v, torch.tensor([0, 1, 2, 0]), 2)


# ---------------------------------------------------------------------------- SOAP baseline
def test_soap_feature_size_and_defaults():
    assert SOAPFeaturizer().n_features == 252  # carbon, n_max 8, l_max 6
    model = AtomwiseDOSMLP(N_E, hidden=(8,))
    assert model.n_features == 252 and model.r_cut == 6.0 and not model.scaler_fitted
    feats = model.featurize([_diamond(), _cluster()], centres=[None, [0, 2]])
    assert [f.shape for f in feats] == [(8, 252), (2, 252)]
    assert np.allclose(feats[1], model.featurize(_cluster())[0][[0, 2]], atol=1e-12)


def test_soap_model_is_rotation_and_permutation_invariant(fitted_soap):
    frames = [_diamond(), _graphene(), _cluster()]
    with torch.no_grad():
        ref = fitted_soap.forward_structures(**_inputs(frames))
        rot = random_rotation(seed=5)
        rotated = fitted_soap.forward_structures(**_inputs([_rotated(a, rot) for a in frames]))
    assert ref.shape == (3, N_E) and bool((ref >= 0).all()) and float(ref.max()) > 0
    assert torch.allclose(rotated, ref, rtol=0, atol=1e-10 * float(ref.abs().max()))
    rng = np.random.default_rng(0)
    perms = [rng.permutation(len(a)) for a in frames]
    permuted = fitted_soap.forward_structures(**_inputs([_permuted(a, p) for a, p in zip(frames, perms)]))
    assert torch.allclose(permuted, ref, rtol=0, atol=1e-12 * float(ref.abs().max()))
    # per-atom rows follow the atoms
    f0 = torch.as_tensor(fitted_soap.featurize(frames[0])[0])
    fp = torch.as_tensor(fitted_soap.featurize(_permuted(frames[0], perms[0]))[0])
    assert torch.allclose(fitted_soap.forward_atoms(f0)[perms[0]], fitted_soap.forward_atoms(fp), atol=1e-12)


def test_soap_scaler_standardises_and_gradients_flow():
    torch.manual_seed(1)
    model = _soap_model().double()
    feats = model.featurize([_diamond(0), _diamond(1), _graphene()])
    model.fit_scaler(feats)
    x = torch.as_tensor(np.concatenate(feats))
    z = (x - model.feature_mean) / model.feature_std
    assert model.scaler_fitted and int(model.n_fitted) == x.shape[0]
    assert torch.allclose(z.mean(0), torch.zeros(z.shape[1], dtype=z.dtype), atol=1e-10)
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor([len(f) for f in feats]))
    pred = model.train()(x, batch)
    loss = dos_loss(pred, torch.rand(3, N_E, dtype=torch.float64), 0.1)
    loss.backward()
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.parameters())


def test_soap_checkpoint_round_trip(fitted_soap, tmp_path):
    feats = torch.as_tensor(np.concatenate(fitted_soap.featurize([_diamond(), _cluster()])))
    batch = torch.tensor([0] * 8 + [1] * 6)
    path = fitted_soap.save(tmp_path / "soap.pt", meta={"epochs": 1})
    for loaded in (AtomwiseDOSMLP.from_checkpoint(path), load_model(path)):
        assert type(loaded) is AtomwiseDOSMLP and not loaded.training and loaded.hypers == fitted_soap.hypers
        assert loaded.scaler_fitted and torch.equal(loaded.feature_std, fitted_soap.feature_std)
        assert torch.equal(loaded(feats, batch), fitted_soap(feats, batch))


def test_soap_bad_inputs():
    model = _soap_model()
    with pytest.raises(ValueError, match=r"shape \(n_atoms, 40\)"):
        model(torch.zeros(3, 41))
    with pytest.raises(ValueError, match=r"atomic numbers \[1\] outside"):
        model.featurize(molecule("CH4"))
    with pytest.raises(ValueError, match="empty"):
        model.featurize([_diamond()], centres=[[]])
    with pytest.raises(ValueError, match=r"n_atoms >= 2"):
        model.fit_scaler(np.zeros((1, 40)))
    with pytest.raises(ValueError, match="n_max"):
        AtomwiseDOSMLP(N_E, n_max=0)


# ---------------------------------------------------------------------------- PET + head
@pytest.fixture(scope="module")
def pet() -> PETDOS:
    torch.manual_seed(0)
    model = _pet().double()
    _perturb_bn(model)
    return model.eval()


def test_pet_shapes_and_permutation_invariance(pet):
    frames = [_diamond(), _graphene(), _cluster()]
    inp = _inputs(frames)
    out = pet(**inp)
    atoms = pet.forward_atoms(**inp)
    assert out.shape == (3, N_E) and atoms.shape == (22, N_E) and bool((atoms >= 0).all())
    assert torch.allclose(out, structure_mean(atoms, inp["batch"], 3))
    assert pet.embed_atoms(**inp).shape == (22, 12)
    rng = np.random.default_rng(1)
    perms = [rng.permutation(len(a)) for a in frames]
    permuted = pet(**_inputs([_permuted(a, p) for a, p in zip(frames, perms)]))
    assert torch.allclose(permuted, out, rtol=0, atol=1e-12)
    # bare PET is not rotation invariant (it learns rotations from augmentation)
    rot = random_rotation(seed=2)
    assert not torch.allclose(pet(**_inputs([_rotated(a, rot) for a in frames])), out, atol=1e-6)


def test_pet_under_ecse_is_rotation_invariant(pet):
    rot = random_rotation(seed=7)
    # union mode (message passing, any n_gnn_layers): an isolated cluster
    sym = ECSE(pet.per_atom(), r_cut=pet.r_cut, outputs="atom_scalar")
    ref = sym(**_inputs([_cluster()]))
    got = sym(**_inputs([_rotated(_cluster(), rot)]))
    assert ref.shape == (6, N_E) and torch.allclose(got, ref, rtol=0, atol=1e-10)
    # per-environment mode (one block): a periodic cell, reflections included
    torch.manual_seed(3)
    local = _pet(n_gnn_layers=1).double().eval()
    sym = ECSE(local.per_atom(), r_cut=local.r_cut, outputs="atom_scalar", mode="atom")
    frames = [_diamond(), _graphene()]
    ref = sym(**_inputs(frames))
    mirror = np.diag([1.0, -1.0, 1.0]) @ rot
    got = sym(**_inputs([_rotated(a, mirror) for a in frames]))
    assert torch.allclose(got, ref, rtol=0, atol=1e-10)
    assert not torch.allclose(local.forward_atoms(**_inputs(frames)), ref, atol=1e-6)  # ECSE did something
    # the structure model itself declines per-environment ECSE (its structure output is a mean, not a sum)
    with pytest.raises(ValueError, match="does not declare locality"):
        ECSE(local, r_cut=local.r_cut, mode="atom")(**_inputs(frames))


def test_pet_forward_centres_equals_every_atom_then_pick(pet):
    frames = [_diamond(), _graphene(), _cluster()]
    inp = _inputs(frames)
    centres = torch.tensor([0, 5, 5, 9, 21, 3])
    np.testing.assert_array_equal(pet.forward_centres(**inp, centres=centres).detach(),
                                  pet.forward_atoms(**inp)[centres].detach())
    torch.manual_seed(5)
    local = _pet(n_gnn_layers=1).double().eval()
    _perturb_bn(local)
    local.eval()
    got = local.forward_centres(**inp, centres=centres)
    assert got.shape == (6, N_E)
    assert torch.allclose(got, local.forward_atoms(**inp)[centres], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="'centres' must index the 22 atoms"):
        local.forward_centres(**inp, centres=torch.tensor([22]))


def test_pet_gradients_flow():
    torch.manual_seed(2)
    model = _pet().double().train()
    pred = model(**_inputs([_diamond(), _cluster()]))
    dos_loss(pred, torch.rand(2, N_E, dtype=torch.float64), 0.1).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


def test_pet_checkpoint_round_trip(pet, tmp_path):
    inp = _inputs([_diamond(), _cluster()])
    path = pet.save(tmp_path / "pet_dos.pt")
    for loaded in (PETDOS.from_checkpoint(path), load_model(path)):
        assert type(loaded) is PETDOS and loaded.hypers == pet.hypers
        assert torch.equal(loaded(**inp), pet(**inp))
    fresh = PETDOS(**pet.hypers).double()
    fresh.load_state_dict(pet.state_dict())
    assert torch.equal(fresh.eval()(**inp), pet(**inp))


def test_pet_bad_inputs(pet):
    with pytest.raises(ValueError, match=r"Atomic numbers \[1\] are not in this model's species"):
        pet(**_inputs([molecule("CH4")]))
    with pytest.raises(TypeError, match="dtype"):
        pet(**_inputs([_cluster()], dtype=torch.float32))
    with pytest.raises(ValueError, match="n_gnn_layers == 1"):
        pet.environment_dos(torch.tensor([6]), torch.zeros(0, 3, dtype=torch.float64),
                                 torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="cutoff_delta"):
        PETDOS(r_cut=0.1)
    with pytest.raises(ValueError, match="empty"):
        PETDOS(species=[])


# ---------------------------------------------------------------------------- adapters
def test_soap_adapter_caches_invariant_features_and_fits_lazily():
    from pointsym.experiments.csnn_dos.adapter_soap import SOAPMLPAdapter

    adapter = SOAPMLPAdapter()
    with pytest.raises(ValueError, match="bogus"):
        adapter.build_model(ENERGIES, {"bogus": 1})
    with pytest.raises(RuntimeError, match="build_model"):
        adapter.prepare([_diamond()], None, dtype=torch.float64, device=torch.device("cpu"))
    torch.manual_seed(0)
    model = adapter.build_model(ENERGIES, {"r_cut": 4.0, "n_max": 4, "l_max": 3, "hidden": [16]}).double()
    assert adapter.name == "soap-mlp" and model.n_energies == N_E and abs(model.e_step - 0.1) < 1e-12
    frames = [_diamond(), _graphene(), _cluster()]
    cpu = torch.device("cpu")
    prep = adapter.prepare(frames, [np.array([0, 3]), None, np.array([5])], dtype=torch.float64, device=cpu)
    assert prep.features.shape == (2 + 8 + 1, 40) and prep.n_structures == 3 and adapter.cache_size == 3
    assert not model.scaler_fitted
    out = adapter.predict(model.train(), prep)  # the first training batch fits the scaler
    assert out.shape == (3, N_E) and model.scaler_fitted and int(model.n_fitted) == 22
    model.eval()
    full = adapter.predict(model, adapter.prepare(frames, None, dtype=torch.float64, device=cpu))
    rot = random_rotation(3, seed=9)
    rotated = [_rotated(a, r) for a, r in zip(frames, rot)]
    again = adapter.predict(model, adapter.prepare(rotated, None, dtype=torch.float64, device=cpu))
    assert adapter.cache_size == 3  # rotated copies hit the cache
    assert torch.allclose(again, full, rtol=0, atol=1e-12)
    fresh = SOAPMLPAdapter(cache=False)
    fresh.build_model(ENERGIES, {"r_cut": 4.0, "n_max": 4, "l_max": 3, "hidden": [16]})
    direct = adapter.predict(model, fresh.prepare(rotated, None, dtype=torch.float64, device=cpu))
    assert fresh.cache_size == 0 and torch.allclose(direct, full, rtol=0, atol=1e-9 * float(full.detach().abs().max()))
    other = SOAPMLPAdapter()
    other.build_model(ENERGIES, {"r_cut": 4.5, "n_max": 4, "l_max": 3})
    with pytest.raises(ValueError, match="SOAP settings"):
        adapter.predict(model, other.prepare(frames, None, dtype=torch.float64, device=cpu))


def test_pet_adapter_centres_and_ecse():
    from pointsym.experiments.csnn_dos.adapter_pet import PETAdapter

    adapter = PETAdapter()
    small = {"r_cut": 3.0, "d_model": 16, "n_gnn_layers": 1, "n_trans_layers": 1, "n_heads": 2,
             "dim_feedforward": 16, "head_hidden": 16, "n_features": 12, "hidden": [16]}
    with pytest.raises(ValueError, match="nonsense"):
        adapter.build_model(ENERGIES, {"nonsense": 0})
    with pytest.raises(ValueError, match="n_gnn_layers=1"):
        adapter.build_model(ENERGIES, {**small, "n_gnn_layers": 2, "ecse": "atom"})
    torch.manual_seed(0)
    model = adapter.build_model(ENERGIES, {**small, "ecse": "atom"}).double()
    _perturb_bn(model)
    model.eval()
    frames = [_diamond(), _cluster()]
    cpu = torch.device("cpu")
    centres = [np.array([1, 4, 6]), np.array([2])]
    prep = adapter.prepare(frames, centres, dtype=torch.float64, device=cpu)
    out = adapter.predict(model, prep)
    atoms = ECSE(model.per_atom(), r_cut=3.0, outputs="atom_scalar", mode="atom")(**_inputs(frames))
    assert out.shape == (2, N_E)
    assert torch.allclose(out, torch.stack([atoms[[1, 4, 6]].mean(0), atoms[8 + 2]]), atol=1e-12)
    rot = random_rotation(2, seed=4)
    again = adapter.predict(model, adapter.prepare([_rotated(a, r) for a, r in zip(frames, rot)], centres,
                                                   dtype=torch.float64, device=cpu))
    assert torch.allclose(again, out, rtol=0, atol=1e-10)
    # training mode never symmetrizes: the bare per-atom DOS of the centres, from their environments only
    # (batch norm then normalises over the centres, as for the CSNN and SOAP models)
    model.train()
    bare = adapter.predict(model, prep)
    every = model.forward_centres(**_inputs(frames), centres=torch.tensor([1, 4, 6, 10]))
    assert torch.allclose(bare, torch.stack([every[:3].mean(0), every[3]]), rtol=0, atol=1e-12)
    bare.sum().backward()
    assert model.blocks[0].geometry.weight.grad is not None


def test_init_from_another_energy_grid_copies_the_weights(tmp_path):
    # the grid (e_min, e_step) only labels the output bins: a start on another grid is allowed, another
    # width is not
    from pointsym.training import init_weights

    src = AtomwiseDOSMLP(20, e_min=-12.0, e_step=0.1, hidden=(8,), n_max=2, l_max=1)
    path = src.save(tmp_path / "src.pt")
    dst = AtomwiseDOSMLP(20, e_min=-21.0, e_step=0.1, hidden=(8,), n_max=2, l_max=1)
    init_weights(dst, path)
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k
    assert dst.hypers["e_min"] == -21.0
    with pytest.raises(ValueError, match="another architecture.*hidden"):
        init_weights(AtomwiseDOSMLP(20, e_min=-21.0, hidden=(16,), n_max=2, l_max=1), path)
