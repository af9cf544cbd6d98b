"""Smooth switching functions and smooth maxima used to build ECSE frame weights.

All functions are C-infinity in their arguments (the ``tanh`` stitching
``phi(t) = tanh(1/(t+1) + 1/(t-1))`` flattens every derivative at ``t = +-1``), and they
never produce NaN values or NaN gradients outside their transition region: the unsafe
branch is evaluated on a clamped argument and discarded with ``torch.where``.

Reference: Pozdnyakov & Ceriotti, NeurIPS 2023 (arXiv:2305.19302), SI; spec
``ecse_pet.md`` section B.3.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "OMEGA_0",
    "cutoff_switch",
    "segment_smooth_max",
    "smooth_max_undershoot",
    "switch_on",
    "switch_on_linear",
]

# Lambert W_0(1/e): the largest undershoot of the two-value smooth max is W_0(1/e) / beta.
OMEGA_0 = 0.2784645427610738


def _phi(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``phi(t)`` on the open interval (-1, 1) and the mask of that interval."""
    inside = (t > -1.0) & (t < 1.0)
    ts = torch.where(inside, t, torch.zeros_like(t))  # safe argument: no 1/0 in the discarded branch
    return torch.tanh(1.0 / (ts + 1.0) + 1.0 / (ts - 1.0)), inside


def cutoff_switch(r: torch.Tensor, r_cut: torch.Tensor | float, delta: torch.Tensor | float) -> torch.Tensor:
    """Smooth step from 1 (``r <= r_cut - delta``) to 0 (``r >= r_cut``).

    Args:
        r: any shape.
        r_cut: where the function reaches 0 (broadcastable to ``r``).
        delta: width of the transition (> 0, broadcastable).

    Returns:
        Tensor shaped like ``r`` with values in [0, 1].
    """
    t = 2.0 * (r - (r_cut - 0.5 * delta)) / delta
    phi, inside = _phi(t)
    value = 0.5 * phi + 0.5
    return torch.where(inside, value, torch.where(t <= -1.0, torch.ones_like(r), torch.zeros_like(r)))


def switch_on(s: torch.Tensor, start: torch.Tensor | float, delta: torch.Tensor | float) -> torch.Tensor:
    """Smooth step from 0 (``s <= start``) to 1 (``s >= start + delta``)."""
    t = 2.0 * (s - (start + 0.5 * delta)) / delta
    phi, inside = _phi(-t)
    value = 0.5 * phi + 0.5
    return torch.where(inside, value, torch.where(t >= 1.0, torch.ones_like(s), torch.zeros_like(s)))


def switch_on_linear(s: torch.Tensor, start: torch.Tensor | float, delta: torch.Tensor | float) -> torch.Tensor:
    """:func:`switch_on` times ``(s - start) / delta``: keeps growing past ``start + delta``.

    Used for frame weights so that more orthogonal neighbour pairs get larger weight.
    """
    return switch_on(s, start, delta) * torch.clamp(s - start, min=0.0) / delta


def smooth_max_undershoot(beta: float) -> float:
    """``T(beta) = W_0(1/e) / |beta|``: max amount the two-value smooth max undershoots the max."""
    return OMEGA_0 / abs(beta)


def segment_smooth_max(
    values: torch.Tensor,
    weights: torch.Tensor,
    index: torch.Tensor,
    n_segments: int,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted smooth maximum (``beta > 0``) or minimum (``beta < 0``) per segment.

    ``smax = sum_k u_k v_k exp(beta v_k) / sum_k u_k exp(beta v_k)`` over the entries ``k``
    of each segment, evaluated with a (detached) per-segment shift for numerical safety.

    Args:
        values: ``(K,)`` values ``v``.
        weights: ``(K,)`` non-negative weights ``u``.
        index: ``(K,)`` int64 segment of each entry, in ``[0, n_segments)``.
        n_segments: number of segments.
        beta: sharpness; the sign selects max (> 0) or min (< 0).

    Returns:
        ``(smax, total)``: ``(n_segments,)`` smooth maxima (0 for segments without any
        positive weight) and ``(n_segments,)`` the shifted denominators (0 marks empty).
    """
    scaled = beta * values
    has_weight = weights > 0
    masked = torch.where(has_weight, scaled, torch.full_like(scaled, -math.inf)).detach()
    shift = torch.full((n_segments,), -math.inf, dtype=values.dtype, device=values.device)
    shift = shift.scatter_reduce(0, index, masked, reduce="amax", include_self=True)
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    expo = torch.exp(torch.where(has_weight, scaled - shift[index], torch.zeros_like(scaled)))
    term = torch.where(has_weight, weights * expo, torch.zeros_like(expo))
    den = torch.zeros(n_segments, dtype=values.dtype, device=values.device).index_add(0, index, term)
    num = torch.zeros(n_segments, dtype=values.dtype, device=values.device).index_add(0, index, term * values)
    safe = den > 0
    smax = torch.where(safe, num / torch.where(safe, den, torch.ones_like(den)), torch.zeros_like(den))
    return smax, den
