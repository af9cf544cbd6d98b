"""API contract of SOAP: shapes, layout, input forms, dtypes, containers, errors, no input mutation."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from ase import Atoms

from helpers import max_rel, random_crystal, random_molecule
from pointsym.descriptors import SOAP

MOL = random_molecule("H3CO", seed=31)
KW = dict(species=["H", "C", "O"], r_cut=3.5, n_max=3, l_max=3, sigma=0.5)


def test_number_of_features_formulas():
    for S, n, L in [(1, 7, 10), (2, 8, 6), (3, 4, 3)]:
        species = ["H", "C", "O"][:S]
        off = SOAP(species=species, r_cut=4.0, n_max=n, l_max=L)
        assert off.get_number_of_features() == (S * n) * (S * n + 1) // 2 * (L + 1)
        assert SOAP(species=species, r_cut=4.0, n_max=n, l_max=L, compression={"mode": "crossover"}) \
            .get_number_of_features() == S * n * (n + 1) // 2 * (L + 1)
        assert SOAP(species=species, r_cut=4.0, n_max=n, l_max=L, compression={"mode": "mu2"}) \
            .get_number_of_features() == n * (n + 1) // 2 * (L + 1)
        assert SOAP(species=species, r_cut=4.0, n_max=n, l_max=L, compression={"mode": "mu1nu1"}) \
            .get_number_of_features() == S * n * n * (L + 1)
    assert SOAP(species=["H"], r_cut=63, n_max=7, l_max=10, sigma=3).get_number_of_features() == 308  # paper 000


def test_get_location_slices_hold_the_pair_blocks():
    soap = SOAP(**KW)
    out = soap.create(MOL)
    blocks = [soap.get_location(p) for p in [("H", "H"), ("H", "C"), ("H", "O"), ("C", "C"), ("C", "O"), ("O", "O")]]
    assert blocks[0].start == 0 and blocks[-1].stop == soap.get_number_of_features()
    assert all(a.stop == b.start for a, b in itertools.pairwise(blocks))
    assert soap.get_location(("O", "H")) == soap.get_location((1, 8))
    assert np.abs(out[:, soap.get_location(("C", "O"))]).max() > 0
    # A declared species absent from the system: every block involving it is exactly zero.
    with_n = SOAP(species=["H", "C", "N", "O"], r_cut=3.5, n_max=3, l_max=3, sigma=0.5)
    out_n = with_n.create(MOL)
    for partner in ["H", "C", "N", "O"]:
        assert np.all(out_n[:, with_n.get_location(("N", partner))] == 0)
    keep = np.ones(with_n.get_number_of_features(), dtype=bool)
    for partner in ["H", "C", "N", "O"]:
        keep[with_n.get_location(("N", partner))] = False
    assert np.abs(out_n[:, keep]).min() >= 0 and np.count_nonzero(out_n[:, keep]) > 0
    with pytest.raises(ValueError, match="not specified"):
        soap.get_location(("H", "N"))
    with pytest.raises(ValueError, match="cross-species"):
        SOAP(compression={"mode": "crossover"}, **KW).get_location(("H", "O"))


def test_shape_rules():
    soap = SOAP(**KW)
    other = random_molecule("H2CO", seed=3)
    assert soap.create(MOL).shape == (len(MOL), soap.get_number_of_features())
    assert soap.create([MOL]).shape == (len(MOL), soap.get_number_of_features())  # one-element list
    assert soap.create([MOL, MOL]).shape == (2, len(MOL), soap.get_number_of_features())
    ragged = soap.create([MOL, other])
    assert isinstance(ragged, list) and [r.shape[0] for r in ragged] == [len(MOL), len(other)]
    assert soap.create(MOL, centers=[0, [0.0, 0.0, 0.0]]).shape == (2, soap.get_number_of_features())
    avg = SOAP(average="outer", **KW)
    assert avg.create(MOL).shape == (avg.get_number_of_features(),)
    assert avg.create([MOL, other]).shape == (2, avg.get_number_of_features())


def test_input_forms_agree():
    soap = SOAP(**KW)
    ref = soap.create(MOL)
    pos, z = MOL.get_positions(), MOL.get_atomic_numbers()
    assert max_rel(soap.create({"positions": pos, "numbers": z}), ref) == 0
    assert max_rel(soap.create({"positions": torch.tensor(pos), "symbols": MOL.get_chemical_symbols()}), ref) == 0
    assert max_rel(soap.create((pos, z)), ref) == 0
    single = SOAP(species=["H"], r_cut=3.0, n_max=2, l_max=2)
    pts = np.random.default_rng(0).uniform(0, 2, (4, 5, 3))
    batch = single.create(pts)  # (b, n, 3) array = a batch of single-species clouds
    assert batch.shape == (4, 5, 9)
    assert max_rel(single.create(pts[2]), batch[2]) <= 1e-12  # other chunking, same numbers


def test_native_compute_and_create_tensor():
    soap = SOAP(**KW)
    other = random_molecule("H2CO", seed=3)
    pos = torch.tensor(np.concatenate([MOL.get_positions(), other.get_positions()]), requires_grad=True)
    numbers = np.concatenate([MOL.numbers, other.numbers])
    batch = np.repeat([0, 1], [len(MOL), len(other)])
    feats, index = soap.compute(pos, numbers, batch=batch)
    assert feats.shape == (len(numbers), soap.get_number_of_features())
    assert index.tolist() == batch.tolist()
    ref = soap.create([MOL, other])
    # compute() with gradients runs the exact torch engine, create() the compiled kernel whose
    # radial functions come from a quintic Hermite table (~1e-11 relative; see test_soap_fast.py).
    assert max_rel(feats[: len(MOL)].detach().numpy(), ref[0]) <= 1e-10
    feats.sum().backward()
    assert pos.grad is not None and torch.isfinite(pos.grad).all()
    sub, sub_index = soap.compute(pos.detach(), numbers, batch=batch, centers=[1, len(MOL) + 2])
    assert sub.shape[0] == 2 and sub_index.tolist() == [0, 1]
    assert max_rel(sub[1].numpy(), ref[1][2]) <= 1e-12


def test_float32_output_and_computation():
    soap32 = SOAP(dtype="float32", **KW)
    out = soap32.create(MOL)
    assert out.dtype == np.float32
    assert max_rel(out, SOAP(**KW).create(MOL)) <= 1e-6  # create() computes in float64, then casts
    t = soap32.create_tensor({"positions": torch.tensor(MOL.get_positions(), dtype=torch.float32),
                              "numbers": MOL.numbers})
    assert t.dtype == torch.float32
    assert max_rel(t.numpy(), SOAP(**KW).create(MOL)) <= 1e-4  # float32 arithmetic


def test_sparse_output():
    sparse = pytest.importorskip("sparse")
    out = SOAP(sparse=True, **KW).create([MOL, MOL])
    assert isinstance(out, sparse.COO) and out.shape == (2, len(MOL), SOAP(**KW).get_number_of_features())
    assert max_rel(out.todense()[0], SOAP(**KW).create(MOL)) == 0


def test_inputs_are_not_mutated():
    weighting = {"function": "poly", "r0": 3.0, "c": 1, "m": 2}
    compression = {"mode": "mu2", "species_weighting": {"H": 1, "C": 2, "O": 3}}
    w_copy, c_copy = copy.deepcopy(weighting), copy.deepcopy(compression)
    atoms = random_crystal(seed=1)
    before = atoms.copy()
    soap = SOAP(species=["Na", "Cl", "K"], r_cut=3.5, n_max=2, l_max=2, weighting=weighting, periodic=True)
    soap.create(atoms, centers=[0, [0.1, 0.2, 0.3]])
    SOAP(compression=compression, **KW)
    assert weighting == w_copy and compression == c_copy
    assert atoms == before and np.array_equal(atoms.positions, before.positions)


def test_repr_and_n_jobs():
    soap = SOAP(**KW)
    assert "SOAP(species=[1, 6, 8]" in repr(soap) and "features" in repr(soap)
    before = torch.get_num_threads()
    out = soap.create([MOL, MOL], n_jobs=1)
    assert torch.get_num_threads() == before and out.shape[0] == 2


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: SOAP(**KW).create(Atoms("HN", positions=[[0, 0, 0], [1, 0, 0]])), "species"),
        (lambda: SOAP(**KW).create(Atoms("HO", positions=[[0, 0, np.nan], [1, 0, 0]])), "positions"),
        (lambda: SOAP(**KW).create({"positions": [[0, 0, np.inf]], "numbers": [1]}), "positions"),
        (lambda: SOAP(species=["H"], r_cut=0.0, n_max=2, l_max=2), "r_cut"),
        (lambda: SOAP(species=["H"], r_cut=-2.0, n_max=2, l_max=2), "r_cut"),
        (lambda: SOAP(species=["H"], r_cut=0.8, n_max=2, l_max=2), "r_cut"),
        (lambda: SOAP(species=["H"], r_cut=3.0, n_max=0, l_max=2), "n_max"),
        (lambda: SOAP(species=["H"], r_cut=3.0, n_max=2, l_max=-1), "l_max"),
        (lambda: SOAP(species=["H"], r_cut=3.0, n_max=2, l_max=2, sigma=0.0), "sigma"),
        (lambda: SOAP(species=["H"], r_cut=3.0, n_max=2, l_max=2, sigma=-1.0), "sigma"),
        (lambda: SOAP(**KW).create(Atoms()), "empty"),
        (lambda: SOAP(**KW).create(MOL, centers=[len(MOL)]), "centers"),
        (lambda: SOAP(**KW).create(MOL, centers=[[0.0, 1.0]]), "centers"),
        (lambda: SOAP(**KW).create(MOL, centers=[]), "centers"),
        (lambda: SOAP(periodic=True, **KW).create(MOL), "cell"),
        (lambda: SOAP(species=["H"], r_cut=3.0, n_max=2, l_max=2, rbf="bessel"), "rbf"),
        (lambda: SOAP(species=["H"], r_cut=3.0, n_max=2, l_max=2, average="mean"), "average"),
        (lambda: SOAP(species=["H"], r_cut=3.0, n_max=2, l_max=2, compression={"mode": "mu3"}), "compression"),
        (lambda: SOAP(species=["H"], r_cut=3.0, n_max=2, l_max=2, weighting={"function": "poly"}), "r0"),
        (lambda: SOAP(species=["H"], r_cut=3.0, n_max=2, l_max=2, dtype="float16"), "dtype"),
        (lambda: SOAP(r_cut=3.0, n_max=2, l_max=2), "species"),
        (lambda: SOAP(species=["H"], n_max=2, l_max=2), "r_cut"),
        (lambda: SOAP(species=["Xx"], r_cut=3.0, n_max=2, l_max=2), "Xx"),
        (lambda: SOAP(**KW).create([MOL, MOL], centers=[[0]]), "centers"),
        (lambda: SOAP(**KW).create(np.zeros((3, 3))), "species"),  # bare positions, several species
        (lambda: SOAP(species=["H"], r_cut=3.0, n_max=2, l_max=2,
                      weighting={"function": "pow", "r0": 1, "c": 1, "d": 0, "m": 2}).create(np.eye(3)), "w0"),
    ],
)
def test_bad_input_raises_clear_errors(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_type_errors_name_the_argument():
    with pytest.raises(TypeError, match="n_max"):
        SOAP(species=["H"], r_cut=3.0, n_max=2.5, l_max=2)
    with pytest.raises(TypeError, match="system"):
        SOAP(**KW).create("not a structure")
