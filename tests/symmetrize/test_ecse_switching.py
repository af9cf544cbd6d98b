"""Switching functions and smooth maxima: closed-form values, smoothness, safe gradients."""

from __future__ import annotations

import numpy as np
import torch

from pointsym.symmetrize import cutoff_switch, segment_smooth_max, switch_on, switch_on_linear
from pointsym.symmetrize._switching import OMEGA_0, smooth_max_undershoot


def _grid(lo, hi, n=2001):
    return torch.linspace(lo, hi, n, dtype=torch.float64, requires_grad=True)


def test_cutoff_switch_limits_and_midpoint():
    r = torch.tensor([0.0, 3.0, 3.5, 3.75, 4.0, 4.5], dtype=torch.float64)
    f = cutoff_switch(r, 4.0, 0.5)
    assert f[:3].tolist() == [1.0, 1.0, 1.0]
    assert f[4:].tolist() == [0.0, 0.0]
    # phi(0) = tanh(1 - 1) = 0 -> half way.
    assert abs(float(f[3]) - 0.5) < 1e-15


def test_switch_on_is_the_mirror_of_the_cutoff():
    s = torch.linspace(-0.2, 1.2, 301, dtype=torch.float64)
    q = switch_on(s, 0.2, 0.3)
    # q(s; w, d) = 1 - f(s; w + d, d) by symmetry of phi.
    assert torch.allclose(q, 1.0 - cutoff_switch(s, 0.5, 0.3), atol=1e-14)
    assert float(q[s <= 0.2].abs().max()) == 0.0 and float((q[s >= 0.5] - 1).abs().max()) == 0.0


def test_switch_on_linear_grows_linearly_past_the_switch():
    s = torch.tensor([0.0, 0.05, 0.2, 0.6, 1.0], dtype=torch.float64)
    q = switch_on_linear(s, 0.05, 0.15)
    assert q[:2].tolist() == [0.0, 0.0]
    assert torch.allclose(q[2:], (s[2:] - 0.05) / 0.15, atol=1e-14)


def test_switches_are_smooth_and_have_finite_gradients_everywhere():
    for fn, args in [(cutoff_switch, (4.0, 0.5)), (switch_on, (0.05, 0.15)), (switch_on_linear, (0.05, 0.15))]:
        lo, hi = (3.0, 5.0) if fn is cutoff_switch else (-0.2, 0.6)
        x = _grid(lo, hi)
        y = fn(x, *args)
        (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        (g2,) = torch.autograd.grad(g.sum(), x)
        assert torch.isfinite(g).all() and torch.isfinite(g2).all()
        # Continuity of value and derivative: consecutive grid steps change them by O(step).
        step = float(x[1].detach() - x[0].detach())
        y, g = y.detach(), g.detach()
        assert float((y[1:] - y[:-1]).abs().max()) <= float(g.abs().max()) * step * 1.01 + 1e-12
        # The derivative leaves the constant regions continuously (flat stitching).
        edge = (x.detach() - (args[0] - args[1] if fn is cutoff_switch else args[0])).abs() < 2 * step
        assert float(g[edge].abs().max()) < 1e-6


def test_segment_smooth_max_matches_the_formula_and_handles_empty_segments():
    rng = np.random.default_rng(0)
    v = torch.tensor(rng.uniform(0, 10, 12))
    u = torch.tensor(rng.uniform(0, 2, 12))
    u[3] = 0.0
    idx = torch.tensor([0] * 5 + [1] * 7)
    for beta in (5.0, -5.0, 1.0):
        got, _ = segment_smooth_max(v, u, idx, 3, beta)
        for s in (0, 1):
            m = idx == s
            e = u[m] * torch.exp(beta * v[m])
            assert abs(float(got[s] - (e * v[m]).sum() / e.sum())) < 1e-12
        assert float(got[2]) == 0.0  # segment without entries


def test_segment_smooth_max_is_stable_for_large_arguments():
    v = torch.tensor([400.0, 401.0], dtype=torch.float64)
    got, _ = segment_smooth_max(v, torch.ones(2, dtype=torch.float64), torch.zeros(2, dtype=torch.long), 1, 5.0)
    expected = (400.0 + 401.0 * np.exp(5.0)) / (1.0 + np.exp(5.0))
    assert abs(float(got[0]) - expected) < 1e-10


def test_undershoot_bound_of_two_value_smooth_max():
    # smax(a, b) + T(beta) >= max(a, b), and T is the tightest such constant.
    beta = 5.0
    d = np.linspace(0, 3, 30001)
    smax = d * np.exp(beta * d) / (1 + np.exp(beta * d))  # smax(0, d)
    gap = d - smax
    assert gap.max() <= smooth_max_undershoot(beta) + 1e-12
    assert abs(gap.max() - OMEGA_0 / beta) < 1e-6
