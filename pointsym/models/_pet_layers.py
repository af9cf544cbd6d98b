"""Building blocks of the Point Edge Transformer (see :mod:`pointsym.models.pet`).

Spec: ``ecse_pet.md`` Part A (Pozdnyakov & Ceriotti, arXiv:2305.19302, SI section I).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from pointsym.core import check_choice, check_int, check_positive
from pointsym.structures import batched_neighbor_list

__all__ = [
    "CutoffAttention",
    "MLPHead",
    "PETBlock",
    "PETGraph",
    "PETTransformer",
    "TransformerLayer",
    "cosine_cutoff",
    "local_block_outputs",
    "neighbor_layout",
    "pet_graph",
    "run_pet_blocks",
]


def cosine_cutoff(r: torch.Tensor, r_cut: float, delta: float) -> torch.Tensor:
    """PET cutoff: 1 below ``r_cut - delta``, ``1/2 + 1/2 cos(pi (r - r_cut + delta) / delta)``
    in between, 0 from ``r_cut`` on (continuous with a continuous first derivative)."""
    x = torch.clamp((r - (r_cut - delta)) / delta, 0.0, 1.0)
    return 0.5 + 0.5 * torch.cos(math.pi * x)


def neighbor_layout(
    i: np.ndarray, j: np.ndarray, shifts: np.ndarray, n_atoms: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Slot of every edge in its centre's padded row and the index of its reverse edge.

    Args:
        i, j: ``(E,)`` centre and neighbour of each edge, sorted by ``i``.
        shifts: ``(E, 3)`` integer cell shifts (the reverse of ``(i, j, S)`` is ``(j, i, -S)``).
        n_atoms: number of atoms.

    Returns:
        ``(slot, reverse, max_neighbors)``: ``slot[e]`` in ``[0, max_neighbors)``, and
        ``reverse[e]`` the edge index of the reverse edge (``-1`` if missing, which only
        happens when floating-point rounding puts a pair exactly at the cutoff).
    """
    n_edges = len(i)
    counts = np.bincount(i, minlength=n_atoms) if n_edges else np.zeros(n_atoms, np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(n_edges) - starts[i] if n_edges else np.zeros(0, np.int64)
    reverse = np.full(n_edges, -1, dtype=np.int64)
    if n_edges:
        fwd = np.stack([i, j, shifts[:, 0], shifts[:, 1], shifts[:, 2]], axis=1)
        bwd = np.stack([j, i, -shifts[:, 0], -shifts[:, 1], -shifts[:, 2]], axis=1)
        order_f = np.lexsort(fwd.T[::-1])
        order_b = np.lexsort(bwd.T[::-1])
        match = np.all(fwd[order_f] == bwd[order_b], axis=1)
        reverse[order_b[match]] = order_f[match]
        if not match.all():
            # Rare asymmetric list: fall back to an exact dictionary match.
            lookup = {tuple(row): k for k, row in enumerate(fwd)}
            for e in np.flatnonzero(reverse < 0):
                reverse[e] = lookup.get(tuple(bwd[e]), -1)
    return slot.astype(np.int64), reverse, int(counts.max()) if n_atoms else 0


class CutoffAttention(nn.Module):
    """Multi-head self-attention whose probabilities are modulated by per-key weights.

    ``a'_ab = a_ab w_b / sum_b' a_ab' w_b'`` with ``a = softmax(q k^T / sqrt(d_head))``:
    keys with ``w_b = 0`` (beyond the cutoff, or padding) are removed exactly, and keys
    approaching the cutoff fade out smoothly (spec pitfall 9: do not add ``log w`` to logits).

    Args:
        d_model: token width.
        n_heads: number of heads (must divide ``d_model``).

    Shapes:
        x ``(B, L, d_model)``, weights ``(B, L)`` -> ``(B, L, d_model)``.
    """

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.d_model = check_int("d_model", d_model, minimum=1)
        self.n_heads = check_int("n_heads", n_heads, minimum=1)
        if d_model % n_heads:
            raise ValueError(f"'d_model' ({d_model}) must be divisible by 'n_heads' ({n_heads}).")
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.qkv.weight)
        nn.init.zeros_(self.qkv.bias)
        self.out.reset_parameters()
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        h = self.n_heads
        q, k, v = self.qkv(x).view(b, length, 3, h, d // h).permute(2, 0, 3, 1, 4)
        logits = q @ k.transpose(-1, -2) / math.sqrt(d // h)
        # softmax(l)_b w_b / sum_b' softmax(l)_b' w_b' == e^l_b w_b / sum_b' e^l_b' w_b': one
        # normalisation instead of two (the shift by the detached max cancels exactly).
        att = torch.exp(logits - logits.amax(dim=-1, keepdim=True).detach()) * weights[:, None, None, :]
        att = att / att.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(att.dtype).tiny)
        return self.out((att @ v).transpose(1, 2).reshape(b, length, d))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}"


class TransformerLayer(nn.Module):
    """Post-LN (``x = LN(x + Attn x); x = LN(x + FFN x)``) or Pre-LN transformer layer."""

    def __init__(self, d_model: int, n_heads: int, dim_feedforward: int, *, pre_ln: bool = False) -> None:
        super().__init__()
        self.pre_ln = pre_ln
        self.attention = CutoffAttention(d_model, n_heads)
        self.ffn = nn.Sequential(nn.Linear(d_model, check_int("dim_feedforward", dim_feedforward, minimum=1)),
                                 nn.SiLU(), nn.Linear(dim_feedforward, d_model))
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if self.pre_ln:
            x = x + self.attention(self.norm1(x), weights)
            return x + self.ffn(self.norm2(x))
        x = self.norm1(x + self.attention(x, weights))
        return self.norm2(x + self.ffn(x))


class PETTransformer(nn.Module):
    """Stack of :class:`TransformerLayer` (plus a final LayerNorm in the Pre-LN variant)."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int, dim_feedforward: int, *, pre_ln: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerLayer(d_model, n_heads, dim_feedforward, pre_ln=pre_ln)
            for _ in range(check_int("n_trans_layers", n_layers, minimum=1))
        )
        self.final_norm = nn.LayerNorm(d_model) if pre_ln else nn.Identity()

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, weights)
        return self.final_norm(x)


class MLPHead(nn.Module):
    """``Linear -> SiLU -> Linear -> SiLU -> Linear`` readout (``d_in -> hidden -> hidden -> d_out``)."""

    def __init__(self, d_in: int, hidden: int, d_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PETBlock(nn.Module):
    """One PET message-passing block (spec A.4, steps 1-6).

    Args:
        n_species: number of species (the embedding tables have one extra padding row).
        d_model: token width.
        n_trans_layers, n_heads, dim_feedforward: transformer shape.
        head_hidden: width of the readout MLPs.
        d_out: number of predicted per-atom targets.
        use_only_length: embed edges from ``|r|`` only (a rotationally invariant PET).
        pre_ln: Pre-LN instead of Post-LN transformer layers.
        use_bond_heads: add the cutoff-weighted bond (edge) readout.
    """

    def __init__(self, n_species: int, d_model: int, n_trans_layers: int, n_heads: int, dim_feedforward: int,
                 head_hidden: int, d_out: int, *, use_only_length: bool, pre_ln: bool, use_bond_heads: bool) -> None:
        super().__init__()
        self.use_only_length = use_only_length
        self.geometry = nn.Linear(1 if use_only_length else 4, d_model)
        self.compress = nn.Sequential(nn.Linear(2 * d_model, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
        self.central = nn.Embedding(n_species + 1, d_model)
        self.transformer = PETTransformer(d_model, n_trans_layers, n_heads, dim_feedforward, pre_ln=pre_ln)
        self.atom_head = MLPHead(d_model, head_hidden, d_out)
        self.bond_head = MLPHead(d_model, head_hidden, d_out) if use_bond_heads else None

    def forward(
        self,
        vectors: torch.Tensor,
        lengths: torch.Tensor,
        messages: torch.Tensor,
        central_index: torch.Tensor,
        fc: torch.Tensor,
        edge_center: torch.Tensor,
        edge_slot: torch.Tensor,
        max_neighbors: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run one block.

        Shapes:
            vectors ``(E, 3)``, lengths/fc ``(E,)``, messages ``(E, d)``, central_index ``(N,)``
            (rows of the species tables), edge_center/edge_slot ``(E,)`` -> per-atom output
            ``(N, d_out)``, edge tokens ``(E, d)``.
        """
        n_atoms = central_index.shape[0]
        geo_in = lengths[:, None] if self.use_only_length else torch.cat([vectors, lengths[:, None]], dim=1)
        tokens = self.compress(torch.cat([self.geometry(geo_in), messages], dim=1))
        d = tokens.shape[1]
        # Sequence per atom: [central token, edge tokens..., zero padding]; padding has weight 0.
        edges = tokens.new_zeros(n_atoms, max_neighbors, d).index_put((edge_center, edge_slot), tokens)
        seq = torch.cat([self.central(central_index)[:, None], edges], dim=1)
        edge_w = fc.new_zeros(n_atoms, max_neighbors).index_put((edge_center, edge_slot), fc)
        weights = torch.cat([fc.new_ones(n_atoms, 1), edge_w], dim=1)
        out = self.transformer(seq, weights)
        edge_out = out[edge_center, edge_slot + 1]
        atom = self.atom_head(out[:, 0])
        if self.bond_head is not None and edge_out.shape[0]:
            atom = atom.index_add(0, edge_center, fc[:, None] * self.bond_head(edge_out))
        return atom, edge_out


class PETGraph(NamedTuple):
    """The edges of a batch as PET's blocks consume them (see :func:`pet_graph`)."""

    centre: torch.Tensor  # (E,) centre atom of every edge, sorted
    neighbor: torch.Tensor  # (E,) neighbour atom
    vectors: torch.Tensor  # (E, 3) centre -> neighbour, Å
    lengths: torch.Tensor  # (E,)
    fc: torch.Tensor  # (E,) cosine cutoff weights
    slot: torch.Tensor  # (E,) position of the edge in its centre's padded row
    has_reverse: torch.Tensor  # (E,) bool
    reverse: torch.Tensor  # (E,) index of the reverse edge (0 where there is none)
    max_neighbors: int


def pet_graph(positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, batch: torch.Tensor, *,
              r_cut: float, cutoff_delta: float, min_distance: float) -> PETGraph:
    """Neighbour list, padded layout, reverse edges and cutoff weights of canonical structure inputs."""
    i, j, shifts, vectors = batched_neighbor_list(positions, cell, pbc, batch, r_cut=r_cut,
                                                  min_distance=min_distance)
    slot, reverse, max_nb = neighbor_layout(i.cpu().numpy(), j.cpu().numpy(), shifts.cpu().numpy(),
                                            positions.shape[0])
    dev = positions.device
    slot_t = torch.as_tensor(slot, device=dev)
    rev_t = torch.as_tensor(reverse, device=dev)
    has_rev = rev_t >= 0
    rev_safe = torch.where(has_rev, rev_t, torch.zeros_like(rev_t))
    lengths = torch.sqrt((vectors ** 2).sum(dim=1) + 1e-15)
    fc = cosine_cutoff(lengths, r_cut, cutoff_delta)
    return PETGraph(i, j, vectors, lengths, fc, slot_t, has_rev, rev_safe, max_nb)


def run_pet_blocks(blocks: nn.ModuleList, graph: PETGraph, messages: torch.Tensor, central_index: torch.Tensor,
                   residual_factor: float) -> torch.Tensor:
    """Sum over the blocks of their per-atom readouts, ``(N, d_out)`` (spec A.4 with message passing).

    ``messages`` ``(E, d)`` are the first block's edge messages (the neighbour species embedding);
    after each block but the last, ``m_ij <- residual_factor (m_ij + o_ji)``.
    """
    out: torch.Tensor | None = None
    messages_k = messages
    for k, block in enumerate(blocks):
        atom, edge_out = block(graph.vectors, graph.lengths, messages_k, central_index, graph.fc, graph.centre,
                               graph.slot, graph.max_neighbors)
        out = (atom.new_zeros(atom.shape) if out is None else out) + atom
        if k + 1 < len(blocks):
            incoming = torch.where(graph.has_reverse[:, None], edge_out[graph.reverse], torch.zeros_like(edge_out))
            messages_k = residual_factor * (messages_k + incoming)
    if out is None:
        raise ValueError("PET needs at least one block.")
    return out


def local_block_outputs(block: PETBlock, edge_vectors: torch.Tensor, messages: torch.Tensor,
                        central_index: torch.Tensor, edge_center: torch.Tensor, r_cut: float,
                        cutoff_delta: float) -> torch.Tensor:
    """Per-environment readout ``(M, d_out)`` of one block on isolated environments (the locality protocol).

    ``edge_center`` ``(E,)`` (sorted) gives each edge's environment in ``[0, M)``, ``M = len(central_index)``.
    """
    n_env, n_edges = central_index.shape[0], edge_center.shape[0]
    counts = torch.bincount(edge_center, minlength=n_env)
    slot = torch.arange(n_edges, device=edge_center.device) - (torch.cumsum(counts, 0) - counts)[edge_center]
    max_nb = int(counts.max()) if n_env else 0
    lengths = torch.sqrt((edge_vectors ** 2).sum(dim=1) + 1e-15)
    fc = cosine_cutoff(lengths, r_cut, cutoff_delta)
    atom, _ = block(edge_vectors, lengths, messages, central_index, fc, edge_center, slot, max_nb)
    return atom


def check_pet_hypers(d_model: int, n_gnn_layers: int, n_heads: int, cutoff_delta: float, r_cut: float,
                     residual_factor: float, transformer_type: str) -> None:
    """Validate PET hyper-parameters with clear messages."""
    check_int("d_model", d_model, minimum=1)
    check_int("n_gnn_layers", n_gnn_layers, minimum=1)
    check_int("n_heads", n_heads, minimum=1)
    check_positive("r_cut", r_cut)
    check_positive("cutoff_delta", cutoff_delta)
    if cutoff_delta >= r_cut:
        raise ValueError(f"Expected 'cutoff_delta' < 'r_cut' (got {cutoff_delta} >= {r_cut}).")
    check_positive("residual_factor", residual_factor)
    check_choice("transformer_type", transformer_type, ("post_ln", "pre_ln"))
