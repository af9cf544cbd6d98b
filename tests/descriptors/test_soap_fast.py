"""The compiled forward kernel (pointsym.descriptors._fast) against the exact torch engine.

``create`` (and ``create_tensor`` / ``compute`` without gradients) use the numba kernel for the
GTO basis on the CPU; everything differentiable uses the torch engine. Both must give the same
features to the accuracy of the tabulated radial functions (quintic Hermite, ~1e-11 relative).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from helpers import WEIGHTINGS, max_rel, random_crystal, random_molecule, rattled_silicon
from pointsym.descriptors import SOAP, _fast

pytestmark = pytest.mark.skipif(not _fast.HAVE_NUMBA, reason="numba is not installed (or POINTSYM_NO_NUMBA is set)")

RTOL = 1e-10
MOL = random_molecule("H3C2O2", seed=1)
SPECIES = ["H", "C", "O"]


def _both(monkeypatch, system, centers=None, **kw):
    soap = SOAP(**kw)
    fast = soap.create(system, centers=centers)
    with monkeypatch.context() as m:
        m.setattr(_fast, "HAVE_NUMBA", False)
        exact = soap.create(system, centers=centers)
    return np.asarray(fast), np.asarray(exact)


@pytest.mark.parametrize(
    ("r_cut", "n_max", "l_max", "sigma"),
    [(3.0, 2, 0, 0.4), (4.0, 4, 3, 0.5), (5.0, 6, 9, 1.0), (6.0, 3, 14, 0.7), (2.5, 8, 2, 0.3), (5.0, 9, 4, 0.5)],
)
def test_radial_table_matches_the_exact_radial_functions(r_cut, n_max, l_max, sigma):
    plan = SOAP(SPECIES, r_cut, n_max, l_max, sigma)._plan
    table, inv_h = plan.fast_table()
    w = plan._host["radial_w"]
    log_c, a, M = w[:, 0], -w[:, 1], np.transpose(plan._host["Mt"], (0, 2, 1))
    r = np.concatenate([[0.0], np.random.default_rng(0).uniform(0, plan.cutoff, 3000), [plan.cutoff]])
    ls = np.arange(l_max + 1)[:, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):  # r = 0 (0 * log 0), set below
        prim = np.exp(log_c[:, :, None] + ls * np.log(r)[None, None, :] - a[:, :, None] * r**2)
    prim[1:, :, 0] = 0.0
    prim[0, :, 0] = np.exp(log_c[0])
    exact = np.einsum("lnk,lkr->lrn", M, prim)  # (L + 1, r, n)
    u = r * inv_h
    i = np.minimum(u.astype(int), table.shape[0] - 1)
    t = (u - i)[:, None]
    coef = table[i]  # (r, 6, (L + 1) n_pad)
    spline = coef[:, 5]
    for k in range(4, -1, -1):
        spline = coef[:, k] + t * spline
    n_pad = table.shape[2] // (l_max + 1)
    spline = spline.reshape(len(r), l_max + 1, n_pad)[:, :, :n_max].transpose(1, 0, 2)
    err = np.max(np.abs(spline - exact)) / np.max(np.abs(exact))
    assert err <= 1e-10
    assert np.all(table.reshape(table.shape[0], 6, l_max + 1, n_pad)[..., n_max:] == 0)


@pytest.mark.parametrize(
    ("r_cut", "n_max", "l_max", "sigma"), [(4.0, 4, 3, 0.5), (5.0, 6, 9, 1.0), (6.0, 3, 14, 0.7), (5.0, 9, 4, 0.5)]
)
def test_fast_path_matches_torch_engine_molecule(monkeypatch, r_cut, n_max, l_max, sigma):
    fast, exact = _both(monkeypatch, MOL, species=SPECIES, r_cut=r_cut, n_max=n_max, l_max=l_max, sigma=sigma)
    assert fast.shape == exact.shape
    assert max_rel(fast, exact) <= RTOL


@pytest.mark.parametrize(
    "weighting",
    WEIGHTINGS,
)
def test_fast_path_weighting(monkeypatch, weighting):
    fast, exact = _both(monkeypatch, MOL, species=SPECIES, r_cut=4.0, n_max=3, l_max=3, sigma=0.45,
                        weighting=weighting)
    assert max_rel(fast, exact) <= RTOL


@pytest.mark.parametrize("mode", ["off", "crossover", "mu2", "mu1nu1"])
@pytest.mark.parametrize("species_weighting", [None, {"H": 0.5, "C": 2.0, "O": -1.0}])
def test_fast_path_compression(monkeypatch, mode, species_weighting):
    fast, exact = _both(monkeypatch, MOL, species=SPECIES, r_cut=4.0, n_max=3, l_max=4, sigma=0.5,
                        compression={"mode": mode, "species_weighting": species_weighting})
    assert max_rel(fast, exact) <= RTOL


@pytest.mark.parametrize("average", ["inner", "outer"])
def test_fast_path_average(monkeypatch, average):
    systems = [MOL, random_molecule("H2CO", seed=3)]
    fast, exact = _both(monkeypatch, systems, species=SPECIES, r_cut=4.0, n_max=4, l_max=4, sigma=0.5, average=average)
    assert fast.shape == exact.shape == (2, SOAP(SPECIES, 4.0, 4, 4).get_number_of_features())
    assert max_rel(fast, exact) <= RTOL


def test_fast_path_periodic_and_cartesian_centres(monkeypatch):
    crystal = random_crystal(seed=4)
    species = sorted(set(crystal.get_chemical_symbols()))
    kw = dict(species=species, r_cut=4.5, n_max=5, l_max=5, sigma=0.5, periodic=True)
    fast, exact = _both(monkeypatch, crystal, **kw)
    assert max_rel(fast, exact) <= RTOL
    centres = [0, 2, [0.3, 0.1, -0.2], [7.5, -3.0, 12.0]]
    fast, exact = _both(monkeypatch, crystal, centers=centres, **kw)
    assert fast.shape[0] == 4 and max_rel(fast, exact) <= RTOL


def test_fast_path_point_cloud_all_pairs_and_threads(monkeypatch):
    """Compact clouds skip the neighbour search; two threads give the same numbers."""
    rng = np.random.default_rng(2)
    clouds = [rng.uniform(0, 10, (40, 3)) for _ in range(3)]
    kw = dict(species=["H"], r_cut=20.0, n_max=5, l_max=8, sigma=2.0)
    fast, exact = _both(monkeypatch, clouds, **kw)
    assert max_rel(fast, exact) <= RTOL
    soap = SOAP(**kw)
    np.testing.assert_array_equal(soap.create(clouds, n_jobs=2), soap.create(clouds, n_jobs=1))


def test_several_systems_come_back_as_one_writable_array_equal_to_the_single_results():
    """``create`` on a list views the one output buffer instead of stacking copies (_soap._stack)."""
    frames = [rattled_silicon(seed=s) for s in (1, 2, 3)]
    soap = SOAP(species=["Si"], r_cut=4.0, n_max=4, l_max=4, sigma=0.5, periodic=True)
    whole = soap.create(frames)
    singles = np.stack([soap.create(f) for f in frames])
    assert whole.shape == singles.shape and whole.flags.c_contiguous and whole.flags.writeable
    np.testing.assert_array_equal(whole, singles)
    whole[0] = 0.0  # the caller owns it: a second call is unaffected
    np.testing.assert_array_equal(soap.create(frames)[0], singles[0])
    np.testing.assert_array_equal(soap.create_tensor(frames).numpy(), singles)  # the same view path
    mean = SOAP(species=["Si"], r_cut=4.0, n_max=4, l_max=4, sigma=0.5, periodic=True, average="outer").create(frames)
    np.testing.assert_allclose(mean, singles.mean(axis=1), rtol=1e-12, atol=0)


def test_fast_path_float32(monkeypatch):
    si = rattled_silicon(seed=1)
    soap = SOAP(species=["Si"], r_cut=5.0, n_max=8, l_max=6, sigma=0.5, periodic=True, dtype="float32")
    f32 = soap.create_tensor(si)
    assert f32.dtype == torch.float32
    with monkeypatch.context() as m:
        m.setattr(_fast, "HAVE_NUMBA", False)
        ref = SOAP(species=["Si"], r_cut=5.0, n_max=8, l_max=6, sigma=0.5, periodic=True).create(si)
    assert max_rel(f32.numpy().astype(np.float64), ref) <= 1e-5


def test_gradients_bypass_the_fast_path():
    """With positions that require grad the torch engine runs (the kernel has no backward)."""
    pos = torch.tensor(MOL.get_positions(), requires_grad=True)
    soap = SOAP(species=SPECIES, r_cut=4.0, n_max=3, l_max=3, sigma=0.5)
    feats = soap.create_tensor({"positions": pos, "numbers": MOL.numbers})
    assert feats.requires_grad
    feats.square().sum().backward()
    assert pos.grad is not None and bool(torch.isfinite(pos.grad).all()) and float(pos.grad.abs().max()) > 0
    assert not math.isnan(float(feats.detach().sum()))


def _pair_sets(counts, vectors, neighbours):
    start = np.concatenate([[0], np.cumsum(counts)])
    out = []
    for c in range(len(counts)):
        rows = np.column_stack([neighbours[start[c]:start[c + 1]], np.round(vectors[start[c]:start[c + 1]], 8)])
        out.append(rows[np.lexsort(rows.T[::-1])])
    return out


@pytest.mark.parametrize("case", ["triclinic", "tiny_cell_many_images", "slab", "cluster", "overlap", "silicon"])
def test_cell_pairs_is_vesins_full_list(case):
    import vesin

    rng = np.random.default_rng(3)
    cutoff = 4.0
    if case == "triclinic":
        cell = np.array([[5.0, 0.0, 0.0], [2.1, 4.6, 0.0], [-1.3, 0.9, 5.2]])
        pos, pbc = rng.uniform(0, 1, (17, 3)) @ cell + rng.normal(0, 2.0, (17, 3)), [True] * 3  # some outside
    elif case == "tiny_cell_many_images":
        cell = np.array([[1.6, 0.0, 0.0], [0.3, 1.9, 0.0], [0.2, -0.4, 2.2]])  # cutoff >> cell: 5+ images a side
        pos, pbc = rng.uniform(0, 1, (2, 3)) @ cell, [True] * 3
    elif case == "slab":
        cell = np.diag([4.5, 5.5, 30.0])
        pos, pbc = rng.uniform(0, 1, (20, 3)) * [4.5, 5.5, 8.0] + [0, 0, 40.0], [True, True, False]  # z outside
    elif case == "cluster":
        cell = np.zeros((3, 3))
        pos, pbc = rng.uniform(-6, 6, (40, 3)), [False] * 3
    elif case == "overlap":
        cell = np.diag([6.0, 6.0, 6.0])
        pos = rng.uniform(0, 6, (10, 3))
        pos[3] = pos[7]  # two atoms on one site: a pair at r = 0
        pbc = [True] * 3
    else:
        atoms = rattled_silicon()
        cell, pos, pbc, cutoff = atoms.cell.array, atoms.positions, atoms.pbc.tolist(), 6.85
    found = _fast.cell_pairs(pos, cell, np.array(pbc), cutoff)
    assert found is not None
    i, j, d = vesin.NeighborList(cutoff=cutoff, full_list=True, sorted=True).compute(
        pos, cell if any(pbc) else np.zeros((3, 3)), pbc, quantities="ijD")
    ref = (np.bincount(i, minlength=len(pos)), np.asarray(d), np.asarray(j))
    assert np.array_equal(found[0], ref[0]) and found[0].sum() > 0
    for a, b in zip(_pair_sets(*found), _pair_sets(*ref), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-8)


def test_cell_pairs_declines_a_singular_periodic_cell():
    cell = np.array([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 0.0]])  # ASE's slab without a z vector
    assert _fast.cell_pairs(np.zeros((2, 3)), cell, np.array([True, True, False]), 3.0) is None


def test_cell_pairs_sizes_its_buffer_from_the_cloud_not_from_a_unit_cell():
    # A large open cloud has no cell to take the density from: a first guess of n^2 x (4/3 pi
    # r^3) pairs per unit volume would ask for tens of GB here; the bounding box gives the density.
    import vesin

    pos = np.random.default_rng(0).uniform(0, 60.0, (3000, 3))
    counts, vectors, _ = _fast.cell_pairs(pos, np.zeros((3, 3)), np.zeros(3, dtype=bool), 3.0)
    i, _ = vesin.NeighborList(cutoff=3.0, full_list=True).compute(pos, np.zeros((3, 3)), False, quantities="ij")
    assert np.array_equal(counts, np.bincount(i, minlength=len(pos))) and vectors.shape == (counts.sum(), 3)
