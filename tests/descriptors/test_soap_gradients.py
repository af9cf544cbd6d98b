"""Autograd derivatives of SOAP: against central finite differences and DScribe's analytic derivatives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import dscribe_soap, max_rel, random_crystal, random_molecule
from pointsym.descriptors import SOAP

MOL = random_molecule("H2CO", seed=21)  # 4 atoms: 24 finite-difference evaluations
SPECIES = ["H", "C", "O"]


def _fd_jacobian(fn, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central differences of ``fn`` (array -> array) with respect to every entry of ``x``."""
    cols = []
    for k in range(x.size):
        d = np.zeros(x.size)
        d[k] = h
        cols.append((fn(x + d.reshape(x.shape)) - fn(x - d.reshape(x.shape))) / (2 * h))
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize(
    "config",
    [
        dict(rbf="gto"),
        dict(rbf="gto", weighting={"function": "poly", "r0": 4.0, "c": 1.0, "m": 2}),
        dict(rbf="polynomial"),
        dict(rbf="gto", average="inner"),
        dict(rbf="gto", compression={"mode": "mu1nu1"}),
    ],
    ids=["gto", "gto-poly-weight", "polynomial", "inner", "mu1nu1"],
)
def test_autograd_matches_finite_differences(config):
    soap = SOAP(species=SPECIES, r_cut=4.0, n_max=3, l_max=3, sigma=0.5, **config)
    x0 = MOL.get_positions()
    pos = torch.tensor(x0, requires_grad=True)
    out = soap.create_tensor({"positions": pos, "numbers": MOL.numbers})
    # A random projection of all features -> one scalar (an "energy"); its gradient vs FD.
    w = torch.as_tensor(np.random.default_rng(0).normal(size=tuple(out.shape)))
    (out * w).sum().backward()
    wn = w.numpy()

    def energy(x: np.ndarray) -> np.ndarray:
        return np.array((soap.create({"positions": x, "numbers": MOL.numbers}) * wn).sum())

    fd = _fd_jacobian(energy, x0).reshape(x0.shape)
    assert max_rel(pos.grad.numpy(), fd) <= 1e-6


def test_cell_gradient_matches_finite_differences():
    crystal = random_crystal(seed=9)
    soap = SOAP(species=["Na", "Cl", "K"], r_cut=4.0, n_max=3, l_max=3, sigma=0.5, periodic=True)
    pos0, cell0 = crystal.get_positions(), np.asarray(crystal.cell[:])
    pos = torch.tensor(pos0, requires_grad=True)
    cell = torch.tensor(cell0, requires_grad=True)
    out = soap.create_tensor({"positions": pos, "numbers": crystal.numbers, "cell": cell, "pbc": True})
    w = torch.as_tensor(np.random.default_rng(1).normal(size=tuple(out.shape)))
    (out * w).sum().backward()

    def energy(c: np.ndarray) -> np.ndarray:
        return np.array((soap.create({"positions": pos0, "numbers": crystal.numbers, "cell": c, "pbc": True})
                         * w.numpy()).sum())

    fd = _fd_jacobian(energy, cell0).reshape(3, 3)
    assert max_rel(cell.grad.numpy(), fd) <= 1e-6
    assert torch.isfinite(pos.grad).all()


@pytest.mark.parametrize("attach", [False, True])
def test_derivatives_match_dscribe_analytic(attach):
    pytest.importorskip("dscribe")
    kw = dict(species=SPECIES, r_cut=4.0, n_max=3, l_max=4, sigma=0.5)
    ref_d, ref_c = dscribe_soap(**kw).derivatives(MOL, method="analytical", attach=attach)
    d, c = SOAP(**kw).derivatives(MOL, attach=attach)
    assert d.shape == ref_d.shape == (len(MOL), len(MOL), 3, c.shape[1])
    assert max_rel(d, ref_d) <= 1e-6
    assert max_rel(c, ref_c) <= 1e-6


def test_derivatives_with_centres_include_and_numerical_method():
    pytest.importorskip("dscribe")
    kw = dict(species=SPECIES, r_cut=4.0, n_max=3, l_max=3, sigma=0.5)
    centers, include = [1, [0.4, 0.3, 0.2]], [0, 2, 3]
    ref_d, _ = dscribe_soap(**kw).derivatives(MOL, centers=centers, include=include, method="numerical")
    ours = SOAP(**kw)
    d_auto, _ = ours.derivatives(MOL, centers=centers, include=include)
    d_num, _ = ours.derivatives(MOL, centers=centers, include=include, method="numerical")
    assert d_auto.shape == ref_d.shape == (2, 3, 3, ours.get_number_of_features())
    # DScribe's numerical derivative (h = 1e-4) carries O(h^2) truncation error.
    assert max_rel(d_auto, ref_d) <= 1e-6
    assert max_rel(d_num, d_auto) <= 1e-6


def test_derivatives_periodic_and_averaged_shapes():
    crystal = random_crystal(seed=4)
    soap = SOAP(species=["Na", "Cl", "K"], r_cut=4.0, n_max=2, l_max=2, sigma=0.5, periodic=True, average="outer")
    d, c = soap.derivatives(crystal, include=[0, 1])
    assert d.shape == (1, 2, 3, soap.get_number_of_features()) and c.shape == (1, soap.get_number_of_features())
    d_num, _ = soap.derivatives(crystal, include=[0, 1], method="numerical")
    assert max_rel(d, d_num) <= 1e-6


def test_gradients_are_finite_for_coincident_points_and_exact_at_the_centre():
    """An atom exactly on a Cartesian centre: finite gradients, and l = 1 terms differentiate exactly."""
    soap = SOAP(species=["H"], r_cut=3.0, n_max=3, l_max=4, sigma=0.5)
    x0 = np.array([[0.0, 0.0, 0.0], [1.1, 0.2, -0.3], [0.1, 0.9, 0.5]])
    pos = torch.tensor(x0, requires_grad=True)
    out = soap.create_tensor({"positions": pos, "numbers": [1, 1, 1]}, centers=[[0.0, 0.0, 0.0]])
    out.sum().backward()
    assert torch.isfinite(pos.grad).all()

    def energy(x: np.ndarray) -> np.ndarray:
        return np.array(soap.create({"positions": x, "numbers": [1, 1, 1]}, centers=[[0.0, 0.0, 0.0]]).sum())

    fd = _fd_jacobian(energy, x0, h=1e-6).reshape(x0.shape)
    assert max_rel(pos.grad.numpy(), fd) <= 1e-5
