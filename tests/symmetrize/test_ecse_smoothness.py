"""Smoothness of ECSE(PET): energies and forces along paths where neighbours cross the
cutoff, frames switch weights or get pruned, and the collinear fallback switches on; forces
are exact gradients (finite differences)."""

from __future__ import annotations

import numpy as np
import torch

from helpers import tiny_pet
from pointsym.structures import energy_and_forces
from pointsym.symmetrize import ECSE, NeighborMLP


def _path_profile(model, pos_fn, ts, numbers, cache=None):
    """Energies, path derivatives dE/dt = -F . dx/dt and ECSE statistics along a path
    (``cache`` maps t to already computed values)."""
    z = torch.tensor(numbers)
    cache = {} if cache is None else cache
    for t in ts:
        if float(t) in cache:
            continue
        h = 1e-6
        x = torch.tensor(pos_fn(t))
        dxdt = (torch.tensor(pos_fn(t + h)) - torch.tensor(pos_fn(t - h))) / (2 * h)
        out = energy_and_forces(model, x, z)
        stat = None
        if getattr(model, "last_stats", None):
            stat = (int(model.last_stats["n_frames"][0]), float(model.last_stats["w_aux"][0]))
        cache[float(t)] = (float(out["energy"][0].detach()), float(-(out["forces"] * dxdt).sum()), stat)
    rows = [cache[float(t)] for t in ts]
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows]), [r[2] for r in rows if r[2] is not None]


def _mismatch(energies, slopes, ts):
    """Energy increments minus the trapezoid integral of the force along the path."""
    return np.diff(energies) - 0.5 * (slopes[1:] + slopes[:-1]) * np.diff(ts)


def _zoom(model, pos_fn, numbers, lo, hi, metric, cache, *, n_refine=4, levels=6):
    """Refine [lo, hi] ``levels`` times, always into the sub-interval where ``metric`` (of
    energies, slopes, times; one value per sub-interval) is largest; return the largest
    value of every level."""
    history = []
    for _ in range(levels):
        sub_t = np.linspace(lo, hi, n_refine + 1)
        e, sl, _ = _path_profile(model, pos_fn, sub_t, numbers, cache)
        values = metric(e, sl, sub_t)
        j = int(np.argmax(values))
        history.append(values[j])
        lo, hi = sub_t[j], sub_t[j + 1]
    return history


def _assert_smooth(model, pos_fn, ts, numbers):
    """Energies are continuous, forces are their gradient and are continuous along the path.

    Two discrepancies are measured per interval: the energy increment minus the trapezoid
    integral of -F . dx, and the change of the path derivative -F . dx/dt. For a jump of
    the energy (or of the forces) the discrepancy of the interval holding it stays at the
    jump however small the interval; for a smooth path it shrinks (by ~4^3, resp. ~4, per
    four-fold refinement). The worst interval is zoomed into 4^6-fold (iterated pruning
    makes some transitions smooth but very steep, so a few levels are needed to resolve
    them) and each discrepancy must still be shrinking at the last level.
    """
    cache: dict = {}
    energies, slopes, stats = _path_profile(model, pos_fn, ts, numbers, cache)

    def energy_gap(e, sl, t):
        return np.abs(_mismatch(e, sl, t))

    def force_jump(e, sl, t):
        return np.abs(np.diff(sl))

    for metric, what in ((energy_gap, "energy"), (force_jump, "forces")):
        coarse = metric(energies, slopes, ts)
        k = int(np.argmax(coarse))
        history = _zoom(model, pos_fn, numbers, ts[k], ts[k + 1], metric, cache)
        assert history[-1] <= 0.5 * history[-2] + 1e-13, (f"{what} not continuous near t={ts[k]}", history)
    return energies, slopes, stats


def test_energy_and_forces_are_smooth_when_a_neighbour_crosses_the_cutoff():
    model = tiny_pet([6, 1], r_cut=2.5)
    sym = ECSE(model, r_cut=2.5)
    base = np.array([[0.0, 0.0, 0.0], [1.05, 0.1, 0.0], [-0.3, 1.0, 0.2], [-0.4, -0.5, 0.9]])

    def pos(t):  # atom 3 leaves along a line; it crosses r_cut = 2.5 of atom 0 at t ~ 2.27
        p = base.copy()
        p[3] = base[3] * t
        return p

    ts = np.linspace(2.0, 2.4, 11)
    for m in (model, sym):
        energies, slopes, _ = _assert_smooth(m, pos, ts, [6, 1, 1, 1])
        assert abs(slopes[0]) > 1e-3 and abs(slopes[-1]) < 1e-12  # atom 3 interacts, then it is out of range


def _mlp_ecse(r_cut):
    # A strongly non-invariant model: frames entering or leaving abruptly would show.
    torch.manual_seed(7)
    return ECSE(NeighborMLP(r_cut=r_cut, hidden=16, n_features=8).double(), r_cut=r_cut,
                outputs=NeighborMLP.OUTPUTS)


def test_energy_and_forces_are_smooth_when_a_frame_neighbour_leaves_the_inner_cutoff():
    sym = _mlp_ecse(3.0)

    def pos(t):  # atom 3 (orthogonal to the dominant pair 1-2 of atom 0) leaves R_in(0) ~ 1.2 A
        return np.array([[0.0, 0.0, 0.0], [1.0, 0.05, 0.0], [0.0, 1.0, 0.1], [0.1, 0.0, t]])

    ts = np.linspace(1.0, 1.4, 11)
    _, _, stats = _assert_smooth(sym, pos, ts, [6, 1, 1, 1])
    assert stats[0][0] > stats[-1][0]  # frames built on atom 3 were kept, then switched off


def test_energy_and_forces_are_smooth_when_pruning_switches_the_dominant_centre():
    sym = _mlp_ecse(3.0)

    def pos(t):  # isosceles triangle, apex angle t: the best frames move from the base atoms to the apex
        a = np.deg2rad(t) / 2
        return np.array([[0.0, 0.0, 0.0], [1.1 * np.sin(a), 1.1 * np.cos(a), 0.0],
                         [-1.1 * np.sin(a), 1.1 * np.cos(a), 0.0]])

    ts = np.linspace(45.0, 80.0, 11)
    _, _, stats = _assert_smooth(sym, pos, ts, [8, 1, 1])
    assert len({n for n, _ in stats}) >= 2  # the set of kept frames really changes along the path


def test_energy_and_forces_are_smooth_when_the_collinear_fallback_switches_on():
    sym = _mlp_ecse(3.0)

    def pos(t):  # HCN bent by t degrees: linear (fallback only) -> bent (frames only)
        a = np.deg2rad(t)
        return np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.16], [1.07 * np.sin(a), 0.0, -1.07 * np.cos(a)]])

    ts = np.linspace(0.0, 40.0, 11)
    _, _, stats = _assert_smooth(sym, pos, ts, [6, 7, 1])
    w_aux = [w for _, w in stats]
    assert w_aux[0] == 1.0 and w_aux[-1] == 0.0 and any(0.0 < w < 1.0 for w in w_aux)


def test_forces_are_minus_the_energy_gradient(methane, si_cell):
    rng = np.random.default_rng(0)
    for inputs, species, r_cut in ((methane, [6, 1], 3.0), (si_cell, [14], 3.0)):
        sym = ECSE(tiny_pet(species, r_cut=r_cut), r_cut=r_cut)
        out = energy_and_forces(sym, **inputs)
        for _ in range(3):
            d = torch.tensor(rng.normal(size=inputs["positions"].shape))
            h = 1e-5
            e_plus = energy_and_forces(sym, **dict(inputs, positions=inputs["positions"] + h * d), forces=False)
            e_minus = energy_and_forces(sym, **dict(inputs, positions=inputs["positions"] - h * d), forces=False)
            fd = float(e_plus["energy"] - e_minus["energy"]) / (2 * h)
            assert abs(fd + float((out["forces"] * d).sum())) < 1e-6 * (1 + abs(fd))
