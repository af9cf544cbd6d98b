"""Neighbour lists with periodic boundary conditions (backed by the ``vesin`` library).

Pair ``k`` connects centre ``i[k]`` to neighbour ``j[k]`` through the periodic image
``shifts[k]`` (integer cell multiples): the neighbour vector is
``positions[j] - positions[i] + shifts @ cell`` (Å). Lists are *full* (both ``i -> j`` and
``j -> i``) and never truncated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pointsym.core import check_finite_array, check_points, check_positive, renamed_kwargs, to_numpy, warn_deprecated

__all__ = ["NeighborList", "neighbor_list", "edge_vectors", "parse_pbc"]


@dataclass(frozen=True)
class NeighborList:
    """Result of :func:`neighbor_list`; all arrays have length ``n_pairs``.

    Attributes:
        i: int64 centre indices.
        j: int64 neighbour indices.
        shifts: int64 ``(n_pairs, 3)`` periodic image of ``j`` in cell units.
        vectors: float64 ``(n_pairs, 3)`` neighbour minus centre, Å.
        distances: float64 ``(n_pairs,)`` Å.
    """

    i: np.ndarray
    j: np.ndarray
    shifts: np.ndarray
    vectors: np.ndarray
    distances: np.ndarray

    def __len__(self) -> int:
        return int(self.i.shape[0])


def parse_pbc(pbc: Any) -> np.ndarray:
    """Return a bool ``(3,)`` array from ``True``/``False`` or three booleans."""
    arr = np.asarray(pbc, dtype=bool).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    if arr.size != 3:
        raise ValueError(f"Expected 'pbc' to be a bool or three bools (got {pbc!r}).")
    return arr


def _from_atoms(system: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    return system.get_positions(), np.asarray(system.cell[:], dtype=np.float64), parse_pbc(system.pbc)


def _is_real_scalar(value: Any) -> bool:
    """A plain number (the old positional cutoff), never a cell, a pbc flag or a bool."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return True
    if getattr(value, "ndim", None) == 0:  # 0-d numpy array or torch tensor
        dtype = str(getattr(value, "dtype", "bool"))
        return "bool" not in dtype and "complex" not in dtype
    return False


_UNSET: Any = object()


@renamed_kwargs(cutoff="r_cut")
def neighbor_list(
    positions: Any,
    *args: Any,
    r_cut: float | None = None,
    cell: Any = _UNSET,
    pbc: Any = _UNSET,
    self_interaction: bool = False,
    sort: bool = True,
) -> NeighborList:
    """All pairs closer than ``r_cut`` (Å), with periodic images where ``pbc`` is set.

    Call as ``neighbor_list(positions, cell=None, pbc=False, *, r_cut, self_interaction=False,
    sort=True)`` (``cell`` and ``pbc`` may be positional, in that order). The old forms
    ``neighbor_list(positions, cutoff, cell, pbc)`` and ``cutoff=`` still work for one release,
    with a ``DeprecationWarning``.

    Args:
        positions: ``(n, 3)`` Cartesian positions in Å, or an ``ase.Atoms`` (its cell and
            pbc are then used and ``cell``/``pbc`` must be left at their defaults).
        cell: ``(3, 3)`` lattice vectors as rows, Å; required when any ``pbc`` is True.
        pbc: bool or three bools, periodicity along each cell vector (default and ``None``: False).
        r_cut: pair cutoff radius in Å (> 0), keyword only.
        self_interaction: include the pair ``(i, i)`` with zero shift (default: no).
            Periodic self-images at non-zero shift are always included.
        sort: order the pairs deterministically, lexicographically by ``(i, j, shifts)``
            (default). ``False`` skips that sort (about 3x the cost of the search itself on
            dense periodic systems): the *set* of pairs ``(i, j, shifts)`` and their vectors
            and distances are identical, but their order is unspecified (backend- and
            version-dependent; with ``self_interaction`` the ``n`` self pairs come first).

    Returns:
        A :class:`NeighborList`.
    """
    if args and _is_real_scalar(args[0]):  # old form neighbor_list(positions, cutoff, cell, pbc)
        if r_cut is not None:
            raise TypeError("neighbor_list() got the cutoff both positionally (deprecated) and as 'r_cut='.")
        warn_deprecated("neighbor_list(positions, cutoff, ...): a positional cutoff is deprecated, use "
                        "neighbor_list(positions, cell, pbc, r_cut=...)", stacklevel=3)
        r_cut, args = args[0], args[1:]
    if len(args) > 2:
        raise TypeError(f"neighbor_list() takes positions, cell, pbc positionally (got {1 + len(args)} positional "
                        "arguments); pass r_cut= as a keyword.")
    if len(args) >= 1:
        if cell is not _UNSET:
            raise TypeError("neighbor_list() got multiple values for argument 'cell'.")
        cell = args[0]
    if len(args) == 2:
        if pbc is not _UNSET:
            raise TypeError("neighbor_list() got multiple values for argument 'pbc'.")
        pbc = args[1]
    cell = None if cell is _UNSET else cell
    pbc = False if pbc is _UNSET or pbc is None else pbc
    if r_cut is None:
        raise TypeError("neighbor_list() missing the keyword argument 'r_cut' (pair cutoff in Å).")
    if hasattr(positions, "get_positions") and hasattr(positions, "cell"):
        if cell is not None or (pbc is not None and pbc is not False):
            raise ValueError("Pass either an ase.Atoms or 'positions' with 'cell'/'pbc', not both.")
        positions, cell, pbc = _from_atoms(positions)
    pos = check_points("positions", positions, allow_empty=True)
    cutoff = check_positive("r_cut", r_cut)
    pbc_arr = parse_pbc(pbc)
    if pbc_arr.any():
        if cell is None:
            raise ValueError("'pbc' is set but 'cell' is None; pass the (3, 3) lattice vectors or pbc=False.")
        box = check_finite_array("cell", to_numpy("cell", cell, dtype=np.float64))
        if box.shape != (3, 3):
            raise ValueError(f"Expected 'cell' of shape (3, 3) (got {box.shape}).")
        if np.any(np.linalg.norm(box, axis=1)[pbc_arr] == 0) or (pbc_arr.all() and abs(np.linalg.det(box)) < 1e-12):
            raise ValueError(
                f"'cell' is degenerate (zero-length or coplanar periodic vectors) with pbc={pbc_arr.tolist()}; "
                "fix the lattice vectors or switch periodicity off along that direction."
            )
    else:
        box = np.zeros((3, 3))
    if len(pos) == 0:
        empty_i = np.zeros(0, dtype=np.int64)
        return NeighborList(empty_i, empty_i.copy(), np.zeros((0, 3), np.int64), np.zeros((0, 3)), np.zeros(0))

    import vesin

    calc = vesin.NeighborList(cutoff=cutoff, full_list=True)
    i, j, shifts, vectors = calc.compute(pos, box, pbc_arr.tolist(), quantities="ijSD")
    i = i.astype(np.int64)
    j = j.astype(np.int64)
    shifts = shifts.astype(np.int64)
    vectors = np.asarray(vectors, dtype=np.float64)
    if self_interaction:
        n = len(pos)
        ar = np.arange(n, dtype=np.int64)
        i = np.concatenate([ar, i])
        j = np.concatenate([ar, j])
        shifts = np.concatenate([np.zeros((n, 3), np.int64), shifts])
        vectors = np.concatenate([np.zeros((n, 3)), vectors])
    if sort:
        # Deterministic order (sorted by centre, then neighbour, then shift) regardless of the backend.
        order = np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], j, i))
        i, j, shifts, vectors = i[order], j[order], shifts[order], vectors[order]
    return NeighborList(i, j, shifts, vectors, np.linalg.norm(vectors, axis=1))


def edge_vectors(positions: Any, i: Any, j: Any, shifts: Any = None, cell: Any = None) -> Any:
    """Differentiable neighbour vectors ``positions[j] - positions[i] + shifts @ cell``.

    Works with numpy arrays or torch tensors (gradients flow to ``positions`` and ``cell``).

    Shapes:
        positions ``(n, 3)``, i/j ``(p,)``, shifts ``(p, 3)``, cell ``(3, 3)`` -> ``(p, 3)``.
    """
    vec = positions[j] - positions[i]
    if shifts is not None and cell is not None:
        try:
            import torch

            if isinstance(vec, torch.Tensor):
                shifts = torch.as_tensor(shifts, dtype=vec.dtype, device=vec.device)
                cell = torch.as_tensor(cell, dtype=vec.dtype, device=vec.device)
        except ImportError:  # pragma: no cover
            pass
        vec = vec + shifts @ cell
    return vec
