"""Numerical robustness of the radial bases (large r_cut, many radial functions) and the compat switch."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from helpers import dscribe_soap, max_rel
from pointsym.descriptors import SOAP, gto_alphas, gto_betas
from pointsym.descriptors._radial import gto_radial_basis, polynomial_radial_basis


def _gram_even(values: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Overlap under r^2 dr of functions sampled on a uniform grid from 0 to where they vanish.

    r^{2l+2} exp(-a r^2) products are even in r, so the trapezoid rule converges spectrally.
    """
    h = r[1] - r[0]
    w = np.full(r.shape, h)
    w[0] = w[-1] = h / 2
    return (values * (w * r**2)) @ values.T


def _gram_polynomial(g, r_cut: float, n_nodes: int = 40) -> np.ndarray:
    """Overlap under r^2 dr on [0, r_cut]; Gauss-Legendre with 40 nodes is exact for degree < 80."""
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    r = 0.5 * r_cut * (x + 1.0)
    vals = g(r)
    return (vals * (0.5 * r_cut * w * r**2)) @ vals.T


@pytest.mark.parametrize(("r_cut", "n_max", "l_max"), [(100.0, 12, 3), (63.0, 12, 10), (10.0, 12, 2), (5.0, 8, 6)])
def test_gto_basis_is_orthonormal(r_cut, n_max, l_max):
    """The Löwdin-orthonormalised GTOs are orthonormal to 1e-8 up to r_cut = 100, n_max = 12."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ill-conditioning warning either
        basis = gto_radial_basis(np.linspace(0, 1, 3), r_cut, n_max, l_max)  # builds (and caches) the basis
    assert basis.shape == (l_max + 1, n_max, 3)
    r = np.linspace(0.0, 1.8 * r_cut + 10, 6001)
    values = gto_radial_basis(r, r_cut, n_max, l_max)
    for l in range(l_max + 1):
        assert np.abs(_gram_even(values[l], r) - np.eye(n_max)).max() <= 1e-8, l


def test_dscribe_float64_orthonormalisation_degrades_where_ours_does_not():
    """The reason for compat=False: DScribe's sqrtm(inv(S)) loses orthonormality at n_max = 12."""
    r_cut, n_max, l_max = 10.0, 12, 0
    r = np.linspace(0.0, 30.0, 6001)
    ours = _gram_even(gto_radial_basis(r, r_cut, n_max, l_max)[0], r)
    theirs = _gram_even(gto_radial_basis(r, r_cut, n_max, l_max, compat=True)[0], r)
    assert np.abs(ours - np.eye(n_max)).max() <= 1e-8
    assert np.abs(theirs - np.eye(n_max)).max() > 1e-8


def test_compat_reproduces_dscribe_betas():
    pytest.importorskip("dscribe")
    ref = dscribe_soap(species=["H"], r_cut=5.0, n_max=8, l_max=6)
    np.testing.assert_array_equal(gto_alphas(5.0, 8, 6), ref._alphas)
    np.testing.assert_allclose(gto_betas(5.0, 8, 6, compat=True), ref._betas, rtol=0,
                               atol=1e-12 * np.abs(ref._betas).max())
    # The accurate betas agree with DScribe's to DScribe's own accuracy here (cond ~ 1e7).
    assert max_rel(gto_betas(5.0, 8, 6), ref._betas) <= 1e-8


@pytest.mark.parametrize(("r_cut", "n_max"), [(100.0, 10), (4.0, 8)])
def test_polynomial_basis_is_orthonormal(r_cut, n_max):
    G = _gram_polynomial(lambda r: polynomial_radial_basis(r, r_cut, n_max), r_cut)
    assert np.abs(G - np.eye(n_max)).max() <= 1e-8


@pytest.mark.parametrize(("r_cut", "sigma"), [(63.0, 3.0), (100.0, 2.0)])
def test_descriptor_finite_and_continuous_at_large_cutoff(r_cut, sigma):
    """n_max = 12 at large r_cut: finite features that move smoothly with the atoms."""
    soap = SOAP(species=["H"], r_cut=r_cut, n_max=12, l_max=3, sigma=sigma)
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 30, (25, 3))
    base = soap.create(pts)
    assert np.all(np.isfinite(base)) and np.abs(base).max() > 0
    # Lipschitz-type continuity: a 1e-6 Å displacement changes features by O(1e-6) relative.
    steps = [soap.create(pts + rng.normal(size=pts.shape) * h) for h in (1e-6, 1e-4)]
    d6, d4 = (max_rel(s, base) for s in steps)
    assert d6 <= 1e-4 and d4 <= 1e-2
    assert d4 / max(d6, 1e-300) == pytest.approx(100, rel=0.5)  # linear in the displacement


def test_nearly_dependent_basis_warns():
    with pytest.warns(RuntimeWarning, match="nearly linearly dependent"):
        SOAP(species=["H"], r_cut=1.5, n_max=12, l_max=0)
