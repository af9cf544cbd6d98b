"""Turning user input (ase.Atoms, dicts, arrays; centre lists) into one flat batch with neighbour pairs.

Everything here is numpy and runs once per call; the heavy, differentiable work happens in
:mod:`pointsym.descriptors._engine`. The only Python loop is over *systems* (one
:func:`pointsym.geometry.neighbor_list` call each); centres and neighbours are handled as arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pointsym.core import check_finite_array, to_numpy
from pointsym.geometry import neighbor_list, parse_pbc

__all__ = ["System", "Batch", "as_system", "is_single_system", "build_batch"]


@dataclass
class System:
    """One structure: positions (Å), atomic numbers, cell rows (Å) and periodicity.

    ``positions``/``cell`` may be torch tensors (kept as given so that gradients flow); the
    numpy copies are used for neighbour search.
    """

    positions: Any
    numbers: np.ndarray
    cell: Any
    pbc: np.ndarray
    positions_np: np.ndarray
    cell_np: np.ndarray


@dataclass
class Batch:
    """Flat description of many systems, their centres and all centre-neighbour pairs.

    Attributes (numpy; ``P`` pairs, ``C`` centres, ``N`` atoms, ``B`` systems):
        systems: the input systems.
        atom_offset: ``(B + 1,)`` start of each system's atoms in the flat atom arrays.
        numbers: ``(N,)`` atomic numbers.
        centre_system: ``(C,)`` system of each centre.
        centre_atom: ``(C,)`` flat atom index of an atom-index centre, ``-1`` for a point.
        centre_point: ``(C, 3)`` Cartesian position of point centres (unused for atom centres).
        pair_centre, pair_atom: ``(P,)`` centre and flat neighbour atom indices.
        pair_shift: ``(P, 3)`` integer cell shift of the neighbour image.
        centre_offset: ``(B + 1,)`` start of each system's centres.
    """

    systems: list[System]
    atom_offset: np.ndarray
    numbers: np.ndarray
    centre_system: np.ndarray
    centre_atom: np.ndarray
    centre_point: np.ndarray
    centre_offset: np.ndarray
    pair_centre: np.ndarray
    pair_atom: np.ndarray
    pair_shift: np.ndarray


def _is_atoms(x: Any) -> bool:
    return hasattr(x, "get_positions") and hasattr(x, "get_atomic_numbers") and hasattr(x, "cell")


def _is_array(x: Any) -> bool:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(x, np.ndarray)


def is_single_system(x: Any) -> bool:
    """True for one structure (Atoms, dict, ``(positions, numbers)`` tuple or one ``(n, 3)`` array)."""
    if _is_atoms(x) or isinstance(x, dict):
        return True
    if _is_array(x):
        return len(tuple(x.shape)) == 2
    return bool(isinstance(x, tuple) and len(x) in (2, 3, 4) and _is_array(x[0]) and len(tuple(x[0].shape)) == 2)


def integer_numbers(name: str, value: Any) -> np.ndarray:
    """``value`` as a flat int64 array of atomic numbers, refusing non-integers.

    Floats are accepted only when they hold whole numbers (``6.0``); ``1.5``, bools and
    complex numbers raise instead of being truncated to an element.
    """
    arr = to_numpy(name, value)
    if arr.dtype == bool or arr.dtype.kind == "c":
        raise TypeError(f"Expected '{name}' to hold integer atomic numbers (got dtype {arr.dtype}).")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            first = np.argwhere(bad.reshape(-1))[0, 0]
            raise ValueError(f"'{name}' must hold integer atomic numbers (got {float(arr.reshape(-1)[first])} at index "
                             f"{first}); pass e.g. 6 for carbon.")
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"Expected '{name}' to hold integer atomic numbers (got dtype {arr.dtype}).")
    return arr.astype(np.int64).reshape(-1)


def check_real_positions(name: str, value: Any) -> np.ndarray:
    """``value`` as float64 numpy, refusing complex and bool arrays instead of casting them."""
    arr = to_numpy(name, value)
    if arr.dtype == bool or arr.dtype.kind not in "iuf":
        raise TypeError(f"Expected '{name}' to be a real-valued float array (got dtype {arr.dtype}); pass Cartesian "
                        "coordinates in Å as floats.")
    return arr.astype(np.float64, copy=False)


def _numbers_from(value: Any, n: int, default_number: int | None, name: str = "system") -> np.ndarray:
    if value is None:
        if default_number is None:
            raise ValueError(
                "A system given as bare positions needs its species: pass a dict with 'numbers' (or 'symbols'), "
                "an ase.Atoms, or configure the descriptor with exactly one species."
            )
        return np.full(n, default_number, dtype=np.int64)
    if isinstance(value, str):
        from ase.symbols import symbols2numbers

        value = symbols2numbers(value)
    arr = np.asarray(value)
    if arr.dtype.kind in "US" or arr.dtype == object:
        from ase.data import atomic_numbers

        try:
            arr = np.array([atomic_numbers[str(s)] for s in arr.reshape(-1)], dtype=np.int64)
        except KeyError as exc:
            raise ValueError(f"Unknown chemical symbol {exc.args[0]!r} in the system's species.") from exc
    arr = integer_numbers(f"{name} numbers", arr)
    if arr.shape[0] != n:
        raise ValueError(f"The system has {n} positions but {arr.shape[0]} species/numbers; give one per atom.")
    return arr


def as_system(x: Any, *, periodic: bool, default_number: int | None, name: str = "system") -> System:
    """Validate and normalise one structure.

    Accepted: ``ase.Atoms``; a dict with ``positions`` and ``numbers``/``species``/``symbols``
    (optional ``cell``, ``pbc``); a tuple ``(positions, numbers[, cell[, pbc]])``; an ``(n, 3)``
    array or tensor of positions when the descriptor has a single species.
    """
    cell: Any = None
    pbc: Any = None
    if _is_atoms(x):
        positions = x.get_positions()
        numbers = np.asarray(x.get_atomic_numbers(), dtype=np.int64)
        cell = np.asarray(x.cell[:], dtype=np.float64)
        pbc = np.asarray(x.get_pbc(), dtype=bool)
    else:
        if isinstance(x, dict):
            unknown = set(x) - {"positions", "numbers", "species", "symbols", "cell", "pbc"}
            if unknown:
                raise ValueError(f"Unknown key(s) {sorted(unknown)} in '{name}'; use positions, numbers, cell, pbc.")
            if "positions" not in x:
                raise ValueError(f"'{name}' has no 'positions' entry.")
            positions = x["positions"]
            spec = x.get("numbers", x.get("species", x.get("symbols")))
            cell, pbc = x.get("cell"), x.get("pbc")
        elif isinstance(x, tuple):
            positions, spec = x[0], x[1]
            cell = x[2] if len(x) > 2 else None
            pbc = x[3] if len(x) > 3 else None
        elif _is_array(x):
            positions, spec = x, None
        else:
            raise TypeError(
                f"Expected '{name}' to be an ase.Atoms, a dict with 'positions' and 'numbers', a "
                f"(positions, numbers) tuple or an (n, 3) array (got {type(x).__name__})."
            )
        n = int(tuple(positions.shape)[0]) if _is_array(positions) else len(positions)
        numbers = _numbers_from(spec, n, default_number, name)
    positions_np = check_real_positions(f"{name} positions", positions)
    if positions_np.ndim != 2 or positions_np.shape[1] != 3:
        raise ValueError(f"Expected '{name}' positions of shape (n, 3) (got {positions_np.shape}).")
    if positions_np.shape[0] == 0:
        raise ValueError(f"'{name}' is empty (no atoms); pass at least one atom.")
    check_finite_array(f"{name} positions", positions_np)
    if cell is None:
        cell_np = np.zeros((3, 3))
        cell = cell_np
    else:
        cell_np = to_numpy(f"{name} cell", cell, dtype=np.float64)
        if cell_np.shape == (3,):
            cell_np = np.diag(cell_np)
            cell = cell_np
        if cell_np.shape != (3, 3):
            raise ValueError(f"Expected '{name}' cell of shape (3, 3) (got {cell_np.shape}).")
        check_finite_array(f"{name} cell", cell_np)
    pbc_arr = parse_pbc(False if pbc is None else pbc)
    if periodic:
        # DScribe semantics: periodic=True needs a cell of non-zero volume; the system's own pbc
        # flags then decide along which directions images are added.
        if abs(np.linalg.det(cell_np)) < 1e-12:
            raise ValueError(
                f"periodic=True but '{name}' has no cell of non-zero volume (cell={cell_np.tolist()}); set the "
                "lattice vectors (atoms.cell, or 'cell' in a dict) or use periodic=False."
            )
    else:
        pbc_arr = np.zeros(3, dtype=bool)
    return System(positions, numbers, cell, pbc_arr, positions_np, cell_np)


def _centres_of(centres: Any, system: System, index: int, allow_empty: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Split one system's ``centers`` into (atom index or -1, point) per centre."""
    n = system.numbers.shape[0]
    if centres is None:
        return np.arange(n, dtype=np.int64), np.zeros((n, 3))
    where = "centers" if index < 0 else f"centers[{index}]"
    if _is_array(centres):
        arr = to_numpy(where, centres)
        items = list(arr) if arr.ndim >= 1 else [arr]
    elif isinstance(centres, (list, tuple)):
        items = list(centres)
    else:
        raise TypeError(
            f"Expected '{where}' to be a list of atom indices and/or (x, y, z) points (got {type(centres).__name__})."
        )
    if len(items) == 0:
        if allow_empty:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 3))
        raise ValueError(f"'{where}' is empty; pass at least one atom index or point, or None for all atoms.")
    atom = np.full(len(items), -1, dtype=np.int64)
    point = np.zeros((len(items), 3))
    for k, item in enumerate(items):
        if isinstance(item, (bool, np.bool_)):
            raise TypeError(f"'{where}[{k}]' is a bool; pass an atom index or an (x, y, z) point.")
        if isinstance(item, (int, np.integer)):
            if not -n <= int(item) < n:
                raise ValueError(f"'{where}[{k}]' = {int(item)} is out of range for a system of {n} atoms.")
            atom[k] = int(item) % n
        else:
            p = np.asarray(to_numpy(f"{where}[{k}]", item, dtype=np.float64)).reshape(-1)
            if p.shape != (3,):
                raise ValueError(
                    f"'{where}[{k}]' must be an atom index or an (x, y, z) point (got shape {p.shape})."
                )
            check_finite_array(f"{where}[{k}]", p)
            point[k] = p
    return atom, point


def _pairs(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> tuple[np.ndarray, ...]:
    """Full neighbour list within ``cutoff`` (Å): :func:`pointsym.geometry.neighbor_list` with ``sort=False``.

    Args:
        positions: ``(n, 3)`` float64 positions, Å (validated by :func:`as_system`).
        cell: ``(3, 3)`` lattice vectors as rows, Å (ignored when no ``pbc`` is set).
        pbc: bool ``(3,)`` periodicity along each cell vector.
        cutoff: pair cutoff, Å.

    Returns:
        ``i``, ``j`` int64 ``(p,)`` and ``shifts`` int64 ``(p, 3)``: every pair ``i != j`` or
        with non-zero shift closer than ``cutoff``, no zero-shift self pairs, in unspecified
        order. The deterministic sort of the geometry function would cost ~3x the search
        itself (512-atom Si: ~11 ms vs ~4 ms) and the SOAP layout re-orders pairs anyway.
    """
    nl = neighbor_list(positions, cell=cell, pbc=pbc, r_cut=float(cutoff), sort=False)
    return nl.i, nl.j, nl.shifts


def _all_pairs(n_centres: int, n_atoms: int) -> tuple[np.ndarray, ...]:
    slots = np.repeat(np.arange(n_centres, dtype=np.int64), n_atoms)
    neigh = np.tile(np.arange(n_atoms, dtype=np.int64), n_centres)
    return slots, neigh, np.zeros((slots.shape[0], 3), dtype=np.int64)


def _within_cutoff(system: System, points: np.ndarray, cutoff: float) -> bool:
    """True when the system is not periodic and every atom is closer than ``cutoff`` to every point.

    Checked against the farthest corner of the atoms' bounding box (a cheap upper bound), so
    the neighbour search can be skipped for compact clouds such as digit images.
    """
    if system.pbc.any():
        return False
    lo, hi = system.positions_np.min(axis=0), system.positions_np.max(axis=0)
    far = np.maximum(np.abs(points - lo), np.abs(points - hi))
    return bool(np.all(np.sqrt((far**2).sum(axis=1)) < cutoff))


def _atom_centre_pairs(system: System, atoms: np.ndarray, cutoff: float) -> tuple[np.ndarray, ...]:
    """Pairs (centre slot, neighbour, shift) for centres sitting on atoms, self pair included."""
    if _within_cutoff(system, system.positions_np[atoms], cutoff):
        return _all_pairs(atoms.shape[0], system.numbers.shape[0])
    nl_i, nl_j, nl_shifts = _pairs(system.positions_np, system.cell_np, system.pbc, cutoff)
    n = system.numbers.shape[0]
    if nl_i.shape[0] and not np.all(nl_i[1:] >= nl_i[:-1]):
        order = np.argsort(nl_i, kind="stable")  # group by centre atom
        nl_i, nl_j, nl_shifts = nl_i[order], nl_j[order], nl_shifts[order]
    counts = np.bincount(nl_i, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts)])
    per_slot = counts[atoms]
    slot = np.repeat(np.arange(atoms.shape[0]), per_slot)
    within = np.arange(slot.shape[0]) - np.repeat(np.cumsum(per_slot) - per_slot, per_slot)
    idx = starts[atoms][slot] + within
    k = atoms.shape[0]
    slots = np.concatenate([np.arange(k), slot])
    neigh = np.concatenate([atoms, nl_j[idx]])
    shifts = np.concatenate([np.zeros((k, 3), np.int64), nl_shifts[idx]])
    return slots, neigh, shifts


def _point_centre_pairs(system: System, points: np.ndarray, cutoff: float) -> tuple[np.ndarray, ...]:
    """Pairs for free Cartesian centres: the points join the neighbour search as ghost atoms."""
    n = system.numbers.shape[0]
    if _within_cutoff(system, points, cutoff):
        return _all_pairs(points.shape[0], n)
    combined = np.concatenate([system.positions_np, points])
    nl_i, nl_j, nl_shifts = _pairs(combined, system.cell_np, system.pbc, cutoff)
    keep = (nl_i >= n) & (nl_j < n)
    return nl_i[keep] - n, nl_j[keep], nl_shifts[keep]


def build_batch(systems: list[System], centres: list[Any], cutoff: float, *, allow_empty: bool = False) -> Batch:
    """Neighbour pairs within ``cutoff`` (Å) of every centre of every system."""
    atom_offset = np.zeros(len(systems) + 1, dtype=np.int64)
    centre_offset = np.zeros(len(systems) + 1, dtype=np.int64)
    c_sys, c_atom, c_point = [], [], []
    p_c, p_a, p_s = [], [], []
    for b, (system, cen) in enumerate(zip(systems, centres)):
        n = system.numbers.shape[0]
        atom, point = _centres_of(cen, system, b if len(systems) > 1 else -1, allow_empty)
        k = atom.shape[0]
        is_atom = atom >= 0
        slots_all, neigh_all, shift_all = [], [], []
        if is_atom.any():
            sel = np.flatnonzero(is_atom)
            s, j, sh = _atom_centre_pairs(system, atom[sel], cutoff)
            slots_all.append(sel[s])
            neigh_all.append(j)
            shift_all.append(sh)
        if (~is_atom).any():
            sel = np.flatnonzero(~is_atom)
            s, j, sh = _point_centre_pairs(system, point[sel], cutoff)
            slots_all.append(sel[s])
            neigh_all.append(j)
            shift_all.append(sh)
        if slots_all:
            p_c.append(np.concatenate(slots_all) + centre_offset[b])
            p_a.append(np.concatenate(neigh_all) + atom_offset[b])
            p_s.append(np.concatenate(shift_all))
        c_sys.append(np.full(k, b, dtype=np.int64))
        c_atom.append(np.where(is_atom, atom + atom_offset[b], -1))
        c_point.append(point)
        atom_offset[b + 1] = atom_offset[b] + n
        centre_offset[b + 1] = centre_offset[b] + k
    return Batch(
        systems=systems,
        atom_offset=atom_offset,
        numbers=np.concatenate([s.numbers for s in systems]),
        centre_system=np.concatenate(c_sys),
        centre_atom=np.concatenate(c_atom),
        centre_point=np.concatenate(c_point),
        centre_offset=centre_offset,
        pair_centre=np.concatenate(p_c or [np.zeros(0)]).astype(np.int64),
        pair_atom=np.concatenate(p_a or [np.zeros(0)]).astype(np.int64),
        pair_shift=np.concatenate(p_s or [np.zeros((0, 3))]).astype(np.int64).reshape(-1, 3),
    )
