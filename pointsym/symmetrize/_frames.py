"""ECSE frames and weights: local coordinate systems from ordered pairs of neighbours.

Implements ``ecse_pet.md`` B.2-B.7 for a batch of structures. For every atom ``i``:

1. an adaptive inner cutoff ``R_in(i)`` = smooth minimum over unordered neighbour pairs
   (within ``R_out``) of ``smax(r_j, r_j') + T(beta)``, each weighted by how well
   conditioned the pair is, plus ``delta_r``;
2. every ordered pair ``(j, j')`` within ``R_in(i)`` gives a right-handed frame
   ``[r_j/|r_j|, n, r_j/|r_j| x n]`` with ``n`` the normalised ``r_j x r_j'``, weighted by
   ``f(r_j; R_in) f(r_j'; R_in) q~(sin^2 theta)``;
3. the frames of all atoms of a structure form its ensemble (``B.9``: the whole structure is
   evaluated in each frame); weights below ``~0.9`` times their smooth maximum are smoothly
   pruned, and an auxiliary weight ``w_aux`` switches on when every frame is ill-defined
   (collinear neighbourhoods). With ``group="atom"`` (per-environment ECSE of local models)
   each atom's frames form its own ensemble instead: the smooth maximum, the pruning and
   ``w_aux`` are computed per centre atom.

Every weight is a smooth, rotation-invariant function of the positions; frames rotate with
the input. Nothing here is detached except integer bookkeeping and exact-zero filtering.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from pointsym.structures import MIN_DISTANCE, batched_neighbor_list
from pointsym.symmetrize._switching import (
    cutoff_switch,
    segment_smooth_max,
    smooth_max_undershoot,
    switch_on,
    switch_on_linear,
)

__all__ = ["ECSEConfig", "FrameSet", "compute_frames"]


@dataclass(frozen=True)
class ECSEConfig:
    """Hyper-parameters of the frame ensemble (defaults: the reference ``sp_default_hypers``).

    Attributes:
        r_cut: outer radius ``R_out`` used to look for frame-defining pairs, Å (it is capped
            at ``r_cut_outer_max``).
        r_cut_outer_max: upper bound of ``R_out``, Å (default: 10).
        beta: sharpness of the smooth max/min over distances, 1/Å (default: 5).
        beta_weights: sharpness of the smooth max over frame weights (default: 1).
        delta_r: width of the distance switches, Å (default: 0.15).
        omega: ``sin^2`` threshold of well-conditioned pairs for ``R_in`` (default: 0.2).
        delta_omega: width of the angular switches (default: 0.15); frame weights turn on
            between ``sin^2 = omega - delta_omega`` and ``omega``.
        aux_threshold, aux_threshold_delta: ``w_aux = f(W_max; t, delta)`` (default: 0.5, 0.5).
        prune_threshold, prune_threshold_delta: frames below ``~prune_threshold * W_max`` are
            switched off (default: 0.9, 0.1).
        n_prunings: pruning rounds (default: 4).
        prune_turn_on, prune_turn_on_delta: pruning is off while ``W_max`` is below
            ``prune_turn_on - prune_turn_on_delta`` (default: 0.5, 0.25).
        eps: frames with weight <= eps are dropped (default: 1e-10).
        min_distance: overlapping-atom threshold, Å (default: 0.1).
    """

    r_cut: float
    r_cut_outer_max: float = 10.0
    beta: float = 5.0
    beta_weights: float = 1.0
    delta_r: float = 0.15
    omega: float = 0.2
    delta_omega: float = 0.15
    aux_threshold: float = 0.5
    aux_threshold_delta: float = 0.5
    prune_threshold: float = 0.9
    prune_threshold_delta: float = 0.1
    n_prunings: int = 4
    prune_turn_on: float = 0.5
    prune_turn_on_delta: float = 0.25
    eps: float = 1e-10
    min_distance: float | None = MIN_DISTANCE

    @property
    def r_out(self) -> float:
        return min(self.r_cut, self.r_cut_outer_max)

    @property
    def search_cutoff(self) -> float:
        """Largest possible ``R_in``: neighbours up to here may enter a frame."""
        return self.r_out + smooth_max_undershoot(self.beta) + self.delta_r + 1e-6


@dataclass
class FrameSet:
    """The frame ensemble of a batch of structures.

    Attributes:
        rotations: ``(K, 3, 3)`` proper rotations, columns are the frame axes.
        weights: ``(K,)`` weights after pruning (all > eps).
        structure: ``(K,)`` int64 structure of each frame.
        center: ``(K,)`` int64 atom whose neighbours define the frame.
        w_aux: ``(S,)`` weight of the auxiliary (collinear fallback) prediction.
        w_max: ``(S,)`` smooth maximum of the frame weights before pruning.
        r_in: ``(N,)`` adaptive inner cutoff of each atom, Å.
        n_candidates: ``(S,)`` number of frames with non-zero weight before pruning.
        group: ``"structure"`` (default) or ``"atom"``; with ``"atom"`` the ensembles are
            per centre atom and ``w_aux``, ``w_max`` and ``n_candidates`` are ``(N,)``.
    """

    rotations: torch.Tensor
    weights: torch.Tensor
    structure: torch.Tensor
    center: torch.Tensor
    w_aux: torch.Tensor
    w_max: torch.Tensor
    r_in: torch.Tensor
    n_candidates: torch.Tensor
    extra: dict = field(default_factory=dict)
    group: str = "structure"

    @property
    def n_frames(self) -> torch.Tensor:
        """Frames kept per ensemble: ``(S,)`` per structure, or ``(N,)`` per atom with ``group="atom"``."""
        index = self.center if self.group == "atom" else self.structure
        return torch.bincount(index, minlength=self.w_aux.shape[0])


def _pairs_same_center(center: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All unordered pairs ``(a, b)``, ``a < b``, of kept edges that share a centre.

    ``center`` is sorted. Returns edge indices (into the full edge arrays).
    """
    edges = np.flatnonzero(keep)
    if edges.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    c = center[edges]
    bounds = np.flatnonzero(np.diff(c)) + 1
    starts = np.concatenate([[0], bounds])
    counts = np.diff(np.concatenate([starts, [len(c)]]))
    out_a, out_b = [], []
    for n in np.unique(counts):
        if n < 2:
            continue
        sel = starts[counts == n]
        ta, tb = np.triu_indices(n, 1)
        out_a.append(edges[(sel[:, None] + ta[None, :]).ravel()])
        out_b.append(edges[(sel[:, None] + tb[None, :]).ravel()])
    if not out_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_a), np.concatenate(out_b)


def _sin2(u_a: torch.Tensor, u_b: torch.Tensor) -> torch.Tensor:
    return (torch.linalg.cross(u_a, u_b, dim=-1) ** 2).sum(-1)


def compute_frames(
    positions: torch.Tensor,
    cell: torch.Tensor,
    pbc: torch.Tensor,
    batch: torch.Tensor,
    config: ECSEConfig,
    *,
    group: str = "structure",
    neighbors: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> FrameSet:
    """Frames and weights of every structure (differentiable w.r.t. positions and cell).

    Args:
        positions, cell, pbc, batch: canonical structure inputs (see
            :func:`pointsym.structures.check_structure_inputs`).
        config: an :class:`ECSEConfig`.
        group: ``"structure"`` (default: one ensemble per structure, the union over its
            atoms) or ``"atom"`` (one ensemble per centre atom: smooth maximum, pruning and
            ``w_aux`` per atom, for per-environment ECSE).
        neighbors: optional precomputed ``(i, vectors)`` of a neighbour list sorted by centre
            whose cutoff is at least ``config.search_cutoff`` (saves a second pair search when
            the caller needs a neighbour list anyway); pairs beyond the search cutoff are dropped.

    Returns:
        A :class:`FrameSet`.
    """
    cfg = config
    n_atoms, n_struct = positions.shape[0], cell.shape[0]
    dev, dt = positions.device, positions.dtype
    if neighbors is None:
        i, _, _, vec = batched_neighbor_list(positions, cell, pbc, batch, r_cut=cfg.search_cutoff,
                                             min_distance=cfg.min_distance)
    else:
        i, vec = neighbors
        near = (vec.detach() ** 2).sum(-1) < cfg.search_cutoff ** 2
        i, vec = i[near], vec[near]
    r = torch.sqrt((vec ** 2).sum(-1) + torch.finfo(dt).tiny)
    unit = vec / r[:, None]
    i_np, r_np = i.cpu().numpy(), r.detach().cpu().numpy()
    beta = cfg.beta
    t_beta = smooth_max_undershoot(beta)

    # --- adaptive inner cutoff R_in per atom (B.4), from unordered pairs within R_out.
    a_np, b_np = _pairs_same_center(i_np, r_np < cfg.r_out)
    a, b = torch.as_tensor(a_np, device=dev), torch.as_tensor(b_np, device=dev)
    s_ab = _sin2(unit[a], unit[b])
    u = (cutoff_switch(r[a], cfg.r_out, cfg.delta_r) * cutoff_switch(r[b], cfg.r_out, cfg.delta_r)
         * switch_on(s_ab, cfg.omega, cfg.delta_omega))
    pair_r = torch.stack([r[a], r[b]], dim=1)
    v = (torch.softmax(beta * pair_r, dim=1) * pair_r).sum(1) + t_beta
    keep = u > 0
    values = torch.cat([v[keep], torch.full((n_atoms,), cfg.r_out, dtype=dt, device=dev)])
    weights = torch.cat([u[keep], torch.ones(n_atoms, dtype=dt, device=dev)])
    owner = torch.cat([i[a[keep]], torch.arange(n_atoms, device=dev)])
    r_min, _ = segment_smooth_max(values, weights, owner, n_atoms, -beta)
    r_in = r_min + cfg.delta_r

    # --- frame weights of ordered pairs within R_in (B.5).
    inside = r_np < r_in.detach().cpu().numpy()[i_np]
    a_np, b_np = _pairs_same_center(i_np, inside)
    a = torch.as_tensor(np.concatenate([a_np, b_np]), device=dev)
    b = torch.as_tensor(np.concatenate([b_np, a_np]), device=dev)
    s_ab = _sin2(unit[a], unit[b])
    rin_c = r_in[i[a]]
    w = (cutoff_switch(r[a], rin_c, cfg.delta_r) * cutoff_switch(r[b], rin_c, cfg.delta_r)
         * switch_on_linear(s_ab, cfg.omega - cfg.delta_omega, cfg.delta_omega))
    keep = w > cfg.eps
    a, b, w = a[keep], b[keep], w[keep]
    center = i[a]
    struct = batch[center]
    if group not in ("structure", "atom"):
        raise ValueError(f"Expected 'group' to be 'structure' or 'atom' (got {group!r}).")
    per_atom = group == "atom"
    n_seg = n_atoms if per_atom else n_struct
    seg = center if per_atom else struct
    n_candidates = torch.bincount(seg, minlength=n_seg)

    # --- auxiliary weight and pruning (B.6, B.7), per structure or per centre atom.
    w_max, _ = segment_smooth_max(w, w, seg, n_seg, cfg.beta_weights)
    w_aux = cutoff_switch(w_max, cfg.aux_threshold, cfg.aux_threshold_delta)
    prune_off = cutoff_switch(w_max, cfg.prune_turn_on, cfg.prune_turn_on_delta)
    for _ in range(cfg.n_prunings):
        if w.numel() == 0:
            break
        wm, _ = segment_smooth_max(w, w, seg, n_seg, cfg.beta_weights)
        wm_k = wm[seg]
        g = switch_on(w, cfg.prune_threshold * wm_k, torch.clamp(cfg.prune_threshold_delta * wm_k,
                                                                 min=torch.finfo(dt).tiny))
        po = prune_off[seg]
        w = w * (g * (1.0 - po) + po)
        keep = w > cfg.eps
        a, b, w, center, struct = a[keep], b[keep], w[keep], center[keep], struct[keep]
        seg = center if per_atom else struct

    # --- the frames themselves (B.2), only for surviving pairs (no 0/0 for collinear ones).
    e1 = unit[a]
    n = torch.linalg.cross(unit[a], unit[b], dim=-1)
    e2 = n / torch.linalg.vector_norm(n, dim=-1, keepdim=True)
    e3 = torch.linalg.cross(e1, e2, dim=-1)
    rotations = torch.stack([e1, e2, e3], dim=-1)
    return FrameSet(rotations=rotations, weights=w, structure=struct, center=center, w_aux=w_aux, w_max=w_max,
                    r_in=r_in, n_candidates=n_candidates, group=group)
