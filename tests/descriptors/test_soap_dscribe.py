"""Agreement with DScribe 2.1 (the reference implementation): max |ours - dscribe| <= 1e-6 max |dscribe|.

Covers random molecules and skewed periodic crystals, several species, both radial bases,
averaging, weighting, compression, Cartesian centres and several (r_cut, n_max, l_max, sigma).
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import WEIGHTINGS, dscribe_soap, max_rel, random_crystal, random_molecule, rattled_silicon
from pointsym.descriptors import SOAP

pytest.importorskip("dscribe")

RTOL = 1e-6  # the acceptance bound; observed agreement is ~1e-11

MOL = random_molecule("H3C2O2", seed=1)
SPECIES = ["H", "C", "O"]


def _both(system, centers=None, **kw):
    ref = dscribe_soap(**kw).create(system, centers=centers)
    ours = SOAP(**kw).create(system, centers=centers)
    return ours, ref


@pytest.mark.parametrize(
    ("r_cut", "n_max", "l_max", "sigma"),
    [(3.0, 2, 0, 0.4), (4.0, 4, 3, 0.5), (5.0, 6, 9, 1.0), (6.0, 3, 14, 0.7), (2.5, 8, 2, 0.3)],
)
def test_gto_molecule_matches_dscribe(r_cut, n_max, l_max, sigma):
    ours, ref = _both(MOL, species=SPECIES, r_cut=r_cut, n_max=n_max, l_max=l_max, sigma=sigma)
    assert ours.shape == ref.shape == (len(MOL), SOAP(SPECIES, r_cut, n_max, l_max).get_number_of_features())
    assert max_rel(ours, ref) <= RTOL


@pytest.mark.parametrize(("l_max", "sigma"), [(3, 0.5), (6, 1.0), (12, 0.6)])
def test_polynomial_compat_matches_dscribe(l_max, sigma):
    """compat=True reproduces DScribe's polynomial-basis numerics, shortcuts included."""
    kw = dict(species=SPECIES, r_cut=4.0, n_max=4, l_max=l_max, sigma=sigma, rbf="polynomial")
    assert max_rel(SOAP(compat=True, **kw).create(MOL), dscribe_soap(**kw).create(MOL)) <= RTOL


def test_polynomial_accurate_mode_matches_dscribe_where_its_shortcuts_are_exact():
    """DScribe drops exp(-(r +- r_i)^2 / 2 sigma^2) beyond 5 Å and the harmonics |m| > 9 for l >= 10.

    With a narrow Gaussian (sigma 0.4: the dropped exponentials are < 1e-60) and l_max < 10
    both shortcuts are exact in float64, so the accurate default must agree with DScribe.
    """
    kw = dict(species=SPECIES, r_cut=4.0, n_max=4, l_max=7, sigma=0.4, rbf="polynomial")
    assert max_rel(SOAP(**kw).create(MOL), dscribe_soap(**kw).create(MOL)) <= RTOL


def test_polynomial_accurate_mode_keeps_the_harmonics_dscribe_drops():
    kw = dict(species=SPECIES, r_cut=4.0, n_max=4, l_max=12, sigma=0.4, rbf="polynomial")
    accurate, compat = SOAP(**kw), SOAP(compat=True, **kw)
    a, c = accurate.create(MOL), compat.create(MOL)
    low = slice(0, accurate.get_location(("H", "H")).start + 4 * 5 // 2 * 10)  # H-H block, l < 10
    np.testing.assert_allclose(a[:, low], c[:, low], rtol=0, atol=1e-9 * np.abs(c).max())
    assert max_rel(a, c) > 1e-4  # l >= 10 features include |m| > 9 only in the accurate mode


@pytest.mark.parametrize(
    "weighting",
    WEIGHTINGS,
)
@pytest.mark.parametrize("rbf", ["gto", "polynomial"])
def test_weighting_matches_dscribe(weighting, rbf):
    ours, ref = _both(MOL, species=SPECIES, r_cut=4.0, n_max=3, l_max=3, sigma=0.45, rbf=rbf, weighting=weighting)
    assert max_rel(ours, ref) <= RTOL


def test_r_cut_inferred_from_weighting():
    w = {"function": "pow", "r0": 1.5, "c": 1.0, "d": 1.0, "m": 4}
    ours = SOAP(species=SPECIES, n_max=3, l_max=2, sigma=0.5, weighting=w)
    ref = dscribe_soap(species=SPECIES, n_max=3, l_max=2, sigma=0.5, weighting=dict(w))
    assert ours.r_cut == pytest.approx(ref._r_cut)
    assert max_rel(ours.create(MOL), ref.create(MOL)) <= RTOL


@pytest.mark.parametrize("mode", ["off", "crossover", "mu2", "mu1nu1"])
@pytest.mark.parametrize("species_weighting", [None, {"H": 0.5, "C": 2.0, "O": 1.25}])
def test_compression_matches_dscribe(mode, species_weighting):
    comp = {"mode": mode, "species_weighting": species_weighting}
    ours, ref = _both(MOL, species=SPECIES, r_cut=4.0, n_max=3, l_max=3, sigma=0.5, compression=comp)
    assert max_rel(ours, ref) <= RTOL


@pytest.mark.parametrize("average", ["inner", "outer"])
@pytest.mark.parametrize("rbf", ["gto", "polynomial"])
def test_average_matches_dscribe(average, rbf):
    ours, ref = _both(MOL, species=SPECIES, r_cut=4.0, n_max=3, l_max=4, sigma=0.5, average=average, rbf=rbf)
    assert ours.shape == ref.shape == (SOAP(SPECIES, 4.0, 3, 4).get_number_of_features(),)
    assert max_rel(ours, ref) <= RTOL


@pytest.mark.parametrize("rbf", ["gto", "polynomial"])
def test_periodic_crystal_matches_dscribe(rbf):
    crystal = random_crystal(seed=3)
    kw = dict(species=["Na", "Cl", "K"], r_cut=4.5, n_max=3, l_max=4, sigma=0.5, periodic=True, rbf=rbf)
    ours, ref = _both(crystal, **kw)
    assert max_rel(ours, ref) <= RTOL
    # Cartesian centres inside the cell, atom-index centres.
    centers = [0, [0.3, 0.2, 0.1], crystal.cell[1] * 0.9 + [0.2, 0.1, 0.0], 4]
    ours, ref = _both(crystal, centers=centers, **kw)
    assert max_rel(ours, ref) <= RTOL
    # Atoms translated out of the cell by lattice-incommensurate amounts, atom centres.
    moved = crystal.copy()
    moved.positions += moved.cell[0] * 1.3 - moved.cell[2] * 0.7
    ours, ref = _both(moved, **kw)
    assert max_rel(ours, ref) <= RTOL
    # (DScribe only replicates the cell around the atoms: Cartesian centres far from them lose
    # neighbours there, so those are checked by the periodic-invariance tests instead.)


def test_silicon_benchmark_setting_matches_dscribe():
    si = rattled_silicon()
    ours, ref = _both(si, species=["Si"], r_cut=5.0, n_max=8, l_max=6, sigma=0.5, periodic=True)
    assert max_rel(ours, ref) <= RTOL


def test_paper_000_setting_matches_dscribe():
    """r_cut 63, n_max 7, l_max 10, sigma 3 on a small lifted-digit-like cloud (DScribe warns here)."""
    rng = np.random.default_rng(0)
    pts = np.stack([rng.integers(0, 28, 60), rng.integers(0, 28, 60), rng.integers(1, 26, 60)], 1).astype(float)
    pts = np.unique(pts, axis=0)
    from ase import Atoms

    cloud = Atoms(numbers=np.ones(len(pts), dtype=int), positions=pts)
    ours, ref = _both(cloud, species=["H"], r_cut=63.0, n_max=7, l_max=10, sigma=3.0)
    assert ours.shape == (len(pts), 308)
    assert max_rel(ours, ref) <= RTOL


def test_multiple_systems_and_centres_match_dscribe():
    a, b = random_molecule("H2CO", seed=4), random_molecule("H4C2O", seed=5)
    kw = dict(species=SPECIES, r_cut=4.0, n_max=3, l_max=3, sigma=0.5)
    ours, ref = _both([a, b], **kw)  # different sizes -> list
    assert isinstance(ours, list) and len(ours) == 2
    for o, r in zip(ours, ref, strict=True):
        assert max_rel(o, r) <= RTOL
    centers = [[0, [0.5, 0.5, 0.5]], [3, [1.0, 2.0, 0.0]]]  # same count -> stacked (2, 2, F)
    ours, ref = _both([a, b], centers=centers, **kw)
    assert ours.shape == ref.shape == (2, 2, SOAP(SPECIES, 4.0, 3, 3).get_number_of_features())
    assert max_rel(ours, ref) <= RTOL


def test_get_location_matches_dscribe():
    kw = dict(species=["H", "C", "O", "N"], r_cut=4.0, n_max=3, l_max=2)
    ours, ref = SOAP(**kw), dscribe_soap(**kw)
    for pair in [("H", "H"), ("H", "O"), ("O", "C"), ("N", "N"), (7, 6), ("C", "N")]:
        assert ours.get_location(pair) == ref.get_location(pair)
    for mode in ["crossover", "mu1nu1", "mu2"]:
        o, r = SOAP(compression={"mode": mode}, **kw), dscribe_soap(compression={"mode": mode}, **kw)
        assert o.get_number_of_features() == r.get_number_of_features()
        assert o.get_location(("C", "C")) == r.get_location(("C", "C"))
