"""Atomic structures -> per-atom concentric spherical fingerprints (spec ``csnn.md`` section 3.3).

Every atom ``i`` gets the grid of :func:`pointsym.nn.nearest_vertex_mapping` built from the
displacements ``r_j - r_i`` (periodic images included) of its neighbours within ``r_cut``:
one "shell" whose ``n_bins`` radial bins are the channels. This is the input of the CSNN DOS
model (:class:`pointsym.models.CSNNDOS`).

The neighbour list is :func:`pointsym.structures.batched_neighbor_list` (vesin, exact,
periodic), so the grid is differentiable in the positions (and the cell) through the
``1/|d|`` values. Rotating a structure by one of the icosahedral rotations permutes the vertex
axis of every atom's grid (when no displacement direction is a tie between two vertices).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pointsym.core import check_choice, check_int, check_positive, parse_species
from pointsym.nn._mapping import nearest_vertex_mapping
from pointsym.structures import batch_structures, batched_neighbor_list, check_structure_inputs

__all__ = ["atomic_environment_grid", "atoms_environment_grid"]


def atomic_environment_grid(
    positions: Any,
    numbers: Any,
    cell: Any = None,
    pbc: Any = None,
    batch: Any = None,
    *,
    level: int = 3,
    n_bins: int = 32,
    r_min: float = 1.0,
    r_cut: float = 7.0,
    scaling: str = "inverse",
    species: Any = None,
) -> torch.Tensor:
    """Per-atom nearest-vertex, inverse-distance fingerprints of (periodic) structures.

    For every atom ``i`` and neighbour ``j`` (any periodic image) with ``r_min < |d| <= r_cut``,
    ``d = r_j - r_i``: radial bin ``ceil((|d| - r_min) n_bins / (r_cut - r_min)) - 1``, angular
    bin the icosphere vertex nearest to ``d / |d|``, value ``1/|d|`` (``scaling="inverse"``),
    ``1/|d|^2`` (``"inverse_square"``) or 1 (``"none"``), summed. Closer neighbours than
    ``r_min`` are dropped (the reference wrapped them into the last bin; spec pitfall 6).

    Channel layout: without ``species`` all neighbours share one grid, ``C = n_bins``. With
    ``species`` (sorted atomic numbers ``Z_0 < Z_1 < ...``) there is one grid per neighbour
    element, concatenated on the channel axis: channel ``k * n_bins + b`` is radial bin ``b`` of
    the neighbours of element ``Z_k`` (``C = len(species) * n_bins``). Centre atoms of every
    element get a grid; every atom must be one of ``species``.

    Args:
        positions: ``(A, 3)`` Cartesian positions of all atoms of all structures, Å (numpy,
            list or torch; numpy is taken as float64, a tensor keeps its dtype).
        numbers: ``(A,)`` atomic numbers.
        cell: ``(3, 3)`` or ``(S, 3, 3)`` lattice vectors as rows, Å (``None``: not periodic).
        pbc: bool, ``(3,)`` or ``(S, 3)`` periodicity (``None``: not periodic).
        batch: ``(A,)`` structure index of every atom (``None``: one structure).
        level: icosphere level (reference 3, 642 vertices).
        n_bins: radial bins (reference 32).
        r_min, r_cut: radial range, Å (reference 1 and 7).
        scaling: ``"inverse"`` (reference), ``"inverse_square"`` or ``"none"``.
        species: optional element list (symbols or atomic numbers) for per-element channels.

    Returns:
        ``(A, 1, V, C)`` tensor (dtype of ``positions``, float64 for numpy input), ``V = 10 * 4**level + 2``.

    Raises:
        ValueError: bad shapes or values (see :func:`pointsym.structures.check_structure_inputs`),
            overlapping atoms (< 0.1 Å), an element that is not in ``species``.
    """
    level = check_int("level", level, minimum=0, maximum=7)
    n_bins = check_int("n_bins", n_bins, minimum=1)
    r_min = check_positive("r_min", r_min, allow_zero=True)
    r_cut = check_positive("r_cut", r_cut)
    if r_cut <= r_min:
        raise ValueError(f"Expected 'r_cut' > 'r_min' (got r_cut={r_cut}, r_min={r_min}); the reference uses "
                         "1 and 7 Å.")
    check_choice("scaling", scaling, ("inverse", "inverse_square", "none"))
    elements = None if species is None else parse_species(species)
    if not isinstance(positions, torch.Tensor):
        try:
            positions = torch.as_tensor(np.asarray(positions, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"Could not convert 'positions' to a float array of shape (n_atoms, 3) ({exc}).") from exc
    if not isinstance(numbers, torch.Tensor):
        numbers = torch.as_tensor(np.asarray(numbers), device=positions.device)
    positions, numbers, cell, pbc, batch = check_structure_inputs(positions, numbers, cell, pbc, batch)
    if elements is not None:
        unknown = sorted(set(torch.unique(numbers).tolist()) - set(elements))
        if unknown:
            raise ValueError(f"'numbers' contains elements {unknown} that are not in 'species' = {elements}; "
                             "add them to 'species' (or pass species=None for one grid of all neighbours).")
    i, j, _, vectors = batched_neighbor_list(positions, cell, pbc, batch, r_cut=r_cut)
    n_atoms = positions.shape[0]

    def grid(sel: torch.Tensor | None) -> torch.Tensor:
        vec, idx = (vectors, i) if sel is None else (vectors[sel], i[sel])
        return nearest_vertex_mapping(vec, level, n_bins, r_min=r_min, r_cut=r_cut, scaling=scaling,
                                      index=idx, n_envs=n_atoms)

    if elements is None:
        return grid(None)
    neighbour = numbers[j]
    return torch.cat([grid(neighbour == z) for z in elements], dim=-1)


def atoms_environment_grid(
    frames: Any, *, dtype: torch.dtype = torch.float64, device: Any = "cpu", **kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`atomic_environment_grid` of one ``ase.Atoms`` or a list of them.

    Args:
        frames: an ``ase.Atoms`` or a sequence of them (their cells and pbc are used).
        dtype, device: of the positions and hence of the grid (default float64, CPU).
        **kwargs: ``level``, ``n_bins``, ``r_min``, ``r_cut``, ``scaling``, ``species``.

    Returns:
        ``(grid (A, 1, V, C), batch (A,) int64)``, the atoms of all frames concatenated in order.
    """
    sb = batch_structures(frames, dtype=dtype, device=device)
    grid = atomic_environment_grid(sb.positions, sb.numbers, sb.cell, sb.pbc, sb.batch, **kwargs)
    return grid, sb.batch
