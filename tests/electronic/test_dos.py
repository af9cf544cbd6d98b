"""DOS mathematics of pointsym.electronic: grid, Gaussian DOS, integrated DOS, Fermi level, band energy, metrics.

Closed-form DOS (constant, quadratic band edge) check Fermi level and band energy against analytic
values; the two real DFT structures of ``dos_small`` (Au2, Mg2 with k-resolved eigenvalues) check the
whole eigenvalues -> DOS -> Fermi level -> band energy pipeline against direct sums over the eigenvalues.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import norm

from pointsym.electronic import (
    FERMI_TOLERANCE,
    band_energy,
    band_moment,
    dos_loss,
    dos_metrics,
    energy_grid,
    fermi_level,
    gaussian_dos,
    integrated_dos,
    summarize_dos_metrics,
)

FINE = 0.01  # fine-grid step of fermi_level / band_energy (eV)


# ---------------------------------------------------------------------------- grid and DOS
def test_energy_grid_reference_and_errors():
    grid = energy_grid()
    assert grid.shape == (310,) and grid[0] == -30.0 and abs(grid[-1] - 0.9) < 1e-12
    np.testing.assert_allclose(np.diff(grid), 0.1, rtol=0, atol=1e-12)
    assert energy_grid(-2.0, 2.0, 0.5).tolist() == [-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0]
    with pytest.raises(ValueError, match="'e_max' > 'e_min'"):
        energy_grid(1.0, -1.0, 0.1)
    with pytest.raises(ValueError, match="whole number of steps"):
        energy_grid(0.0, 1.05, 0.1)
    with pytest.raises(ValueError, match="'step'"):
        energy_grid(0.0, 1.0, 0.0)
    with pytest.raises(TypeError, match="'e_min'"):
        energy_grid("a", 1.0, 0.1)


def test_gaussian_dos_normalisation_weights_and_chunks(monkeypatch):
    rng = np.random.default_rng(0)
    eig = rng.uniform(-8.0, 4.0, (40, 12))  # 40 k-points, 12 bands
    w = rng.uniform(0.5, 1.5, 40)
    w *= 2.0 / w.sum()  # spin-degenerate weights summing to 2
    grid = energy_grid(-12.0, 8.0, 0.1)
    sigma = 0.25
    dos = gaussian_dos(eig, grid, sigma, w)
    # Integral = sum(weights) * n_bands. Every peak is >= 4 eV (16 sigma) inside the window and the
    # Riemann sum of a Gaussian sampled at h = 0.4 sigma is exact up to exp(-2 pi^2 sigma^2 / h^2) ~ 1e-33.
    assert abs(dos.sum() * 0.1 - 2.0 * 12) < 1e-10
    # Direct (unchunked) sum, and 1-D eigenvalues with per-state weights give the same DOS.
    z = (grid[None, :] - eig.reshape(-1)[:, None]) / sigma
    direct = np.repeat(w, 12) @ np.exp(-0.5 * z**2) / (sigma * math.sqrt(2 * math.pi))
    np.testing.assert_allclose(dos, direct, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gaussian_dos(eig.reshape(-1), grid, sigma, np.repeat(w, 12)), dos, rtol=1e-12)
    # Without weights every eigenvalue counts once; torch input is accepted.
    ones = gaussian_dos(torch.as_tensor(eig[:2]), grid, sigma)
    assert abs(ones.sum() * 0.1 - 24) < 1e-10
    # Blocks of 1000 Gaussian values (a few eigenvalues at a time) give the same numbers.
    import pointsym.electronic._dos as dos_module

    monkeypatch.setattr(dos_module, "_CHUNK_ELEMENTS", 1000)
    np.testing.assert_allclose(gaussian_dos(eig, grid, sigma, w), dos, rtol=1e-12, atol=1e-14)


def test_gaussian_dos_bad_input():
    grid = energy_grid(-1.0, 1.0, 0.1)
    with pytest.raises(ValueError, match=r"'weights' of shape \(3,\), one weight per k-point"):
        gaussian_dos(np.zeros((3, 2)), grid, 0.1, np.ones(6))
    with pytest.raises(ValueError, match="'sigma'"):
        gaussian_dos(np.zeros(3), grid, 0.0)
    with pytest.raises(ValueError, match="'eigenvalues' of shape"):
        gaussian_dos(np.zeros((2, 2, 2)), grid, 0.1)
    with pytest.raises(ValueError, match="'eigenvalues' contains NaN"):
        gaussian_dos(np.array([0.0, np.nan]), grid, 0.1)
    with pytest.raises(ValueError, match="'energies'"):
        gaussian_dos(np.zeros(3), np.zeros((2, 2)), 0.1)


# ---------------------------------------------------------------------------- closed-form DOS
def test_fermi_level_and_band_energy_of_a_constant_dos():
    grid = energy_grid()  # -30 ... 0.9 eV
    n_atoms, c = 10, 2.0  # total DOS 2 states/eV
    dos = np.full(grid.shape, c)
    # I(E) = c (E + 30) (spline and trapezoid are exact): first fine energy with I > 40 - 0.005 is -10.00.
    e_f = fermi_level(grid, dos, 40)
    assert isinstance(e_f, float) and abs(e_f - (-10.0)) < 1e-9
    # E_b = (1/N) int_{-30}^{-10} c E dE = c (100 - 900) / (2 N) = -80 eV/atom (trapezoid exact for a line).
    assert abs(band_energy(grid, dos, e_f, n_atoms) - (-80.0)) < 1e-9
    # Off the fine grid the last partial interval is added: the integral up to exactly -9.995 eV.
    assert abs(band_energy(grid, dos, -9.995, n_atoms) - c * (9.995**2 - 900) / (2 * n_atoms)) < 1e-9
    # Batched form: one Fermi level per structure.
    both = fermi_level(grid, np.stack([dos, 2 * dos]), np.array([40.0, 40.0]))
    np.testing.assert_allclose(both, [-10.0, -20.0], atol=1e-9)
    # The window ends at 0.8 eV (one coarse step before 0.9): c * 30.8 = 61.6 states at most.
    with pytest.raises(ValueError, match=r"reaches only 61\.6 states.*'n_electrons'.*Widen the window"):
        fermi_level(grid, dos, 70)


def test_linear_crossing_counts_exactly_the_electrons():
    # constant total DOS c: I(E) = c (E + 30), so the linear crossing of N_e - 0.005 is exact,
    # E_F = -30 + (N_e - 0.005) / c, where the reference's grid crossing rounds up to the fine grid
    grid = energy_grid()
    n_atoms, c, n_e = 10, 2.0, 40.3
    dos = np.full(grid.shape, c)
    exact = -30.0 + (n_e - 0.005) / c
    assert abs(fermi_level(grid, dos, n_e) - (-9.85)) < 1e-9  # first fine energy above -9.8525
    assert abs(fermi_level(grid, dos, n_e, crossing="linear") - exact) < 1e-9
    m = dos_metrics(grid, dos / n_atoms, dos / n_atoms, n_atoms, n_e, crossing="linear")
    np.testing.assert_allclose(m["fermi_ref"], exact, atol=1e-9)
    np.testing.assert_allclose(m["band_energy_ref"], c * (exact**2 - 900) / (2 * n_atoms), atol=1e-9)
    # a rigid shift of the scale moves the linear band energy by exactly (N_e - 0.005) / N times the shift
    shifted = dos_metrics(grid + 7.0, dos / n_atoms, dos / n_atoms, n_atoms, n_e, crossing="linear")
    np.testing.assert_allclose(shifted["band_energy_ref"] - m["band_energy_ref"], 7.0 * (n_e - 0.005) / n_atoms,
                               atol=1e-9)
    with pytest.raises(ValueError, match="crossing"):
        fermi_level(grid, dos, n_e, crossing="nearest")


def test_band_moment_closed_form_shift_invariance_and_gradient():
    grid = energy_grid(-10.0, 2.0, 0.1)
    c = 0.5
    dos = torch.full((2, grid.size), c, dtype=torch.float64)
    # E_F on a bin edge: sum over the bins below of (E_k - E_F) c dE = c dE^2 sum_j -(j - 1/2), j = 1..n
    e_f = torch.tensor([-5.05, -2.05], dtype=torch.float64)
    n = np.round((e_f.numpy() - (-10.0 - 0.05)) / 0.1).astype(int)
    exact = -c * 0.1**2 * n**2 / 2.0
    np.testing.assert_allclose(band_moment(dos, grid, e_f).numpy(), exact, rtol=1e-12)
    # a rigid shift of grid and Fermi level together changes nothing; the bin holding E_F counts its fraction
    np.testing.assert_allclose(band_moment(dos, grid + 3.3, e_f + 3.3).numpy(), exact, rtol=1e-10)
    # E_F = -5.0, a bin centre: the 50 full bins below sit 0.05 eV lower relative to it, the half bin adds 0
    half = band_moment(dos[:1], grid, torch.tensor([-5.0], dtype=torch.float64))
    assert float(half) == pytest.approx(exact[0] - c * 0.1 * 50 * 0.05, rel=1e-10)
    g = torch.rand(2, grid.size, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: band_moment(x, grid, e_f), (g,))
    with pytest.raises(ValueError, match="e_fermi"):
        band_moment(dos, grid, e_f[:1])
    with pytest.raises(TypeError, match="torch"):
        band_moment(dos.numpy(), grid, e_f)


def test_fermi_level_and_band_energy_of_a_quadratic_band():
    # G(E) = a u^2, u = E + 30: the not-a-knot cubic spline reproduces it exactly. Analytic
    # I(u) = a u^3 / 3, band energy a (u^4 / 4 - 10 u^3) / N.
    grid = energy_grid()
    a, n_e, n_atoms = 0.012, 30.0, 8
    dos = a * (grid + 30.0) ** 2
    e_f = fermi_level(grid, dos, n_e)
    u_star = (3 * (n_e - FERMI_TOLERANCE) / a) ** (1 / 3)  # analytic crossing of n_e - 0.005
    # The trapezoid rule overestimates a convex integral by a h^2 u / 6 (~1e-5 states here), i.e. moves
    # the crossing down by < 1e-6 eV; E_F is the first fine-grid point above it.
    assert u_star - 1e-6 <= e_f + 30.0 < u_star + FINE + 1e-9
    u = e_f + 30.0
    e_b = band_energy(grid, dos, e_f, n_atoms)
    exact = a * (u**4 / 4 - 10 * u**3) / n_atoms
    # Euler-Maclaurin: the trapezoid error of int (u^3 - 30 u^2) is h^2 (u^2 / 4 - 5 u), exactly.
    bound = a * FINE**2 * abs(u**2 / 4 - 5 * u) / n_atoms
    assert abs(e_b - exact) <= 1.001 * bound + 1e-9 and bound < 1e-4
    assert abs(e_b - (exact + a * FINE**2 * (u**2 / 4 - 5 * u) / n_atoms)) < 1e-9


def test_fermi_and_band_energy_bad_input():
    grid = energy_grid()
    dos = np.ones(310)
    with pytest.raises(ValueError, match=r"'dos_total' of shape \(310,\) or \(S, 310\)"):
        fermi_level(grid, np.ones(309), 4)
    with pytest.raises(ValueError, match="uniform"):
        fermi_level(np.sort(np.random.default_rng(0).uniform(-30, 1, 310)), dos, 4)
    with pytest.raises(ValueError, match="'n_electrons' > 0"):
        fermi_level(grid, dos, -1)
    with pytest.raises(ValueError, match=r"'n_electrons' to be a scalar or of shape \(2,\)"):
        fermi_level(grid, np.stack([dos, dos]), [4, 4, 4])
    with pytest.raises(ValueError, match="'e_fermi' = 3 eV is outside"):
        band_energy(grid, dos, 3.0, 1)
    with pytest.raises(ValueError, match="'n_atoms' > 0"):
        band_energy(grid, dos, -10.0, 0)


# ---------------------------------------------------------------------------- integrated DOS and loss
def test_integrated_dos_numpy_torch_and_loss_gradient():
    rng = np.random.default_rng(1)
    g = rng.uniform(0, 2, (3, 50))
    f_np = integrated_dos(g, 0.1)
    f_t = integrated_dos(torch.as_tensor(g), 0.1)
    assert isinstance(f_np, np.ndarray) and isinstance(f_t, torch.Tensor)
    np.testing.assert_allclose(f_t.numpy(), f_np, rtol=1e-15)
    np.testing.assert_allclose(f_np[:, -1], 0.1 * g.sum(1), rtol=1e-13)
    assert integrated_dos([1.0, 2.0], 0.5).tolist() == [0.5, 1.5]
    with pytest.raises(ValueError, match="'step'"):
        integrated_dos(g, -0.1)

    pred = torch.as_tensor(rng.uniform(0, 1, (2, 7)), dtype=torch.float64).requires_grad_()
    ref = torch.as_tensor(rng.uniform(0, 1, (2, 7)), dtype=torch.float64)
    loss = dos_loss(pred, ref, 0.1, alpha=0.3)
    p, r = pred.detach().numpy(), ref.numpy()
    manual = 0.3 * np.mean((p - r) ** 2) + 0.7 * np.mean((0.1 * np.cumsum(p - r, 1)) ** 2)
    assert abs(loss.item() - manual) < 1e-15
    assert torch.autograd.gradcheck(lambda x: dos_loss(x, ref, 0.1, alpha=0.3), (pred,))
    assert float(dos_loss(ref, ref, 0.1)) == 0.0
    with pytest.raises(ValueError, match="'alpha' in \\[0, 1\\]"):
        dos_loss(pred, ref, 0.1, alpha=1.5)
    with pytest.raises(ValueError, match="same shape"):
        dos_loss(pred, ref[:, :5], 0.1)
    with pytest.raises(TypeError, match="torch tensors"):
        dos_loss(p, ref, 0.1)


# ---------------------------------------------------------------------------- metrics
def _spectra() -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(2)
    grid = energy_grid()
    n_atoms = np.array([6, 4])
    # States well inside the window (DOS ~ 0 at both ends), 0.4 states each: 80 and 60 states.
    eigs = [rng.uniform(-25.0, -5.0, 200), rng.uniform(-24.0, -6.0, 150)]
    return grid, eigs, n_atoms


def test_dos_metrics_of_a_rigidly_shifted_spectrum():
    grid, eigs, n_atoms = _spectra()
    n_e = 4.0 * n_atoms  # carbon: 4 valence electrons per atom
    sigma, shift = 0.3, 0.3  # shift = 3 coarse bins = 30 fine steps
    ref = np.stack([gaussian_dos(e, grid, sigma, np.full(e.size, 0.4)) / n for e, n in zip(eigs, n_atoms)])
    pred = np.stack([gaussian_dos(e + shift, grid, sigma, np.full(e.size, 0.4)) / n for e, n in zip(eigs, n_atoms)])
    m = dos_metrics(grid, pred, ref, n_atoms, n_e)
    assert set(m) >= {"dos_rmse", "idos_rmse", "fermi_abs_error", "band_energy_abs_error", "fermi_pred",
                      "fermi_ref", "band_energy_pred", "band_energy_ref"}
    assert all(v.shape == (2,) for v in m.values())
    np.testing.assert_allclose(m["dos_rmse"], np.sqrt(((pred - ref) ** 2).mean(1)), rtol=1e-13)
    idos = 0.1 * np.cumsum(pred - ref, 1) * n_atoms[:, None]
    np.testing.assert_allclose(m["idos_rmse"], np.sqrt((idos**2).mean(1)), rtol=1e-13)
    # A shift by whole grid bins shifts the splined DOS and its integral (the DOS vanishes at the
    # window's ends), so E_F moves by exactly the shift ...
    np.testing.assert_allclose(m["fermi_abs_error"], shift, atol=1e-9)
    np.testing.assert_allclose(m["fermi_pred"], m["fermi_ref"] + shift, atol=1e-9)
    # ... and the band energy by shift * I(E_F) / N, with I(E_F) in (N_e - 0.005, N_e - 0.005 + 0.01 G].
    np.testing.assert_allclose(m["band_energy_pred"] - m["band_energy_ref"], m["band_energy_abs_error"], rtol=1e-12)
    g_max = (ref * n_atoms[:, None]).max(1)
    tol = shift * (FERMI_TOLERANCE + FINE * g_max) / n_atoms
    assert np.all(np.abs(m["band_energy_abs_error"] - shift * n_e / n_atoms) <= tol), m["band_energy_abs_error"]
    # The reference's own numbers agree with the single-structure functions.
    total = ref * n_atoms[:, None]
    np.testing.assert_allclose(m["fermi_ref"], fermi_level(grid, total, n_e), rtol=0)
    np.testing.assert_allclose(m["band_energy_ref"],
                               [band_energy(grid, total[s], m["fermi_ref"][s], n_atoms[s]) for s in range(2)],
                               rtol=1e-13)
    same = dos_metrics(grid, ref, ref, n_atoms, n_e)
    assert all(float(np.abs(same[k]).max()) == 0.0 for k in ("dos_rmse", "idos_rmse", "fermi_abs_error",
                                                             "band_energy_abs_error"))


def test_dos_metrics_unreached_and_summary():
    grid, eigs, n_atoms = _spectra()
    ref = np.stack([gaussian_dos(e, grid, 0.3, np.full(e.size, 0.4)) / n for e, n in zip(eigs, n_atoms)])
    pred = ref.copy()
    pred[1] = 0.0  # an untrained model's prediction: no electrons at all
    with pytest.raises(ValueError, match=r"'dos_pred' of structure 1 reaches only 0 states.*unreached='nan'"):
        dos_metrics(grid, pred, ref, n_atoms, 4 * n_atoms)
    m = dos_metrics(grid, pred, ref, n_atoms, 4 * n_atoms, unreached="nan")
    assert np.isnan(m["fermi_pred"][1]) and np.isnan(m["band_energy_abs_error"][1]) and m["fermi_abs_error"][0] == 0
    # Three structures in two families.
    m3 = {k: np.append(v, v[0]) for k, v in m.items()}
    m3["dos_rmse"][2] = 0.5
    s = summarize_dos_metrics(m3, groups=["C60", "Graphite", "C60"])
    assert s["overall"]["n_structures"] == 3 and s["overall"]["n_unreached"] == 1
    assert abs(s["overall"]["dos_rmse"] - (m3["dos_rmse"].sum() / 3)) < 1e-15
    assert s["overall"]["fermi_abs_error"] == 0.0  # the NaN entry is left out of the mean
    assert list(s["groups"]) == ["C60", "Graphite"]
    assert s["groups"]["C60"]["dos_rmse"] == 0.25 and s["groups"]["C60"]["n_structures"] == 2
    assert np.isnan(s["groups"]["Graphite"]["fermi_abs_error"]) and s["groups"]["Graphite"]["n_unreached"] == 1
    assert summarize_dos_metrics(m)["groups"] == {}
    with pytest.raises(ValueError, match="one label per structure"):
        summarize_dos_metrics(m, groups=["a"])
    with pytest.raises(ValueError, match="lacks"):
        summarize_dos_metrics({"dos_rmse": [1.0]})
    with pytest.raises(ValueError, match="'n_atoms' to be a scalar or of shape \\(2,\\)"):
        dos_metrics(grid, pred, ref, [1, 2, 3], 4)
    with pytest.raises(ValueError, match="same shape"):
        dos_metrics(grid, pred, ref[:1], n_atoms, 4)
    with pytest.raises(ValueError, match="'unreached'"):
        dos_metrics(grid, ref, ref, n_atoms, 4, unreached="skip")


# ---------------------------------------------------------------------------- real DFT eigenvalues
def _frames(root: Path) -> list:
    import ase.io

    path = Path(root) / "dos_small" / "DOS_structures.xyz.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found (the dos_small data set)")
    return ase.io.read(path, ":")


@pytest.mark.dataset
@pytest.mark.parametrize("frame, sigma", [(0, 0.2), (1, 0.1), (1, 0.3)], ids=["Au2-0.2", "Mg2-0.1", "Mg2-0.3"])
def test_dft_eigenvalues_to_fermi_level_and_band_energy(data_root, frame, sigma):
    atoms = _frames(data_root)[frame]
    eig = np.asarray(atoms.info["eigenvalues"], dtype=np.float64)  # (n_k, n_bands), eV
    w = np.asarray(atoms.info["k-point weights"], dtype=np.float64)  # (n_k,), sum 2 (spin)
    n_atoms = len(atoms)
    eps = eig.reshape(-1)
    ws = np.repeat(w, eig.shape[1])
    # N_e is not stored. The eigenvalues are referenced to the Fermi level (0 eV): the weighted number of
    # states below 0 eV is an integer to 1e-2 -- 38 for Au2 (19 electrons/atom: 5s2 5p6 5d10 6s1, the
    # semicore 5s/5p bands lie at -106 and -57 eV) and 4 for Mg2 (3s2; no 2p semicore band in the data).
    count = ws[eps < 0].sum()
    n_e = round(count)
    assert abs(count - n_e) < 1e-2 and n_e == {0: 38, 1: 4}[frame]

    grid = energy_grid(math.floor(eps.min() - 8 * sigma), 3.0, 0.1)  # every occupied state inside
    dos = gaussian_dos(eig, grid, sigma, w)  # total DOS, states/eV (spin included)
    e_f = fermi_level(grid, dos, n_e)
    e_b = band_energy(grid, dos, e_f, n_atoms)

    # 1. Broadened, from the eigenvalues directly: sum_kn w Phi((E - eps)/sigma) = N_e - 0.005 at E*. E_F is
    #    the first 0.01 eV grid point above E* (the spline + trapezoid count is accurate to << 1e-4 states).
    e_star = brentq(lambda x: ws @ norm.cdf((x - eps) / sigma) - (n_e - FERMI_TOLERANCE), -5.0, 5.0, xtol=1e-12)
    assert e_star - 1e-4 <= e_f < e_star + FINE + 1e-4, (e_f, e_star)
    #    Band energy up to E_F in closed form: int^{E_F} eps g_sigma(eps - e) = e Phi(z) - sigma phi(z).
    z = (e_f - eps) / sigma
    exact = ws @ (eps * norm.cdf(z) - sigma * norm.pdf(z)) / n_atoms
    assert abs(e_b - exact) < 1e-4, (e_b, exact)  # spline of Gaussians sampled at <= sigma: ~1e-6 eV/atom

    # 2. Unbroadened (step occupations): E_F^0 puts N_e electrons in the weighted eigenvalues; the band
    #    energy is sum w eps over the occupied states. The k-point weights are ~1e-3, so E_F^0 is defined
    #    to the level spacing (< 0.01 eV) in these metals.
    order = np.argsort(eps)
    k = int(np.searchsorted(np.cumsum(ws[order]), n_e))
    e_f0 = eps[order][k]
    e_b0 = ws[order][: k + 1] @ eps[order][: k + 1] / n_atoms
    #    Broadening moves the count only within a few sigma of E_F; for a DOS smooth on that scale E_F
    #    moves by far less than sigma.
    assert abs(e_f - e_f0) < sigma / 2 + FINE, (e_f, e_f0)
    #    At fixed N_e a Gaussian broadening lowers the band energy by sigma^2 G(E_F) / (2 N) to leading
    #    order (G'' terms of the broadened DOS); the higher orders are within a factor 2 here.
    g_f = float(np.interp(e_f, grid, dos))
    lead = sigma**2 * g_f / (2 * n_atoms)
    assert 0.5 * lead < e_b0 - e_b < 2.0 * lead, (e_b0 - e_b, lead)


@pytest.mark.dataset
def test_dft_dos_counts_all_states(data_root):
    au, mg = _frames(data_root)
    # Mg2: a window around all 8 bands holds sum(w) * 8 states (Riemann sum exact for sigma = 2 h).
    eig, w = np.asarray(mg.info["eigenvalues"]), np.asarray(mg.info["k-point weights"])
    dos = gaussian_dos(eig, energy_grid(-10.0, 16.5, 0.1), 0.2, w)
    assert abs(dos.sum() * 0.1 - w.sum() * 8) < 1e-8
    # Au2: -115 ... -30 eV lies in gaps at both ends and holds the 8 semicore bands (5s, 5p of two atoms).
    eig, w = np.asarray(au.info["eigenvalues"]), np.asarray(au.info["k-point weights"])
    dos = gaussian_dos(eig, energy_grid(-115.0, -30.0, 0.1), 0.2, w)
    assert abs(dos.sum() * 0.1 - w.sum() * 8) < 1e-8
