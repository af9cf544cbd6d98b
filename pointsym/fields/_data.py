"""Crystal sets in the NeSF layout: flat arrays plus the true atomic numbers.

The NeSF npz files (``../shared/data/nsf_crystals``) store, in ``numbers``, the *species
index* of each atom (position in the data set's sorted list of atomic numbers), not the
atomic number: the map back is ``sidx_to_z`` in the ``<stem>.attr.json`` beside each npz
(for example ``lim_l6`` index 24 is Ni, ``mp-23``). Indices differ between data sets
(``ICSG3D`` has Tc, I, Pm, Ac that ``lim_l6`` lacks), so a model trained on one set and
evaluated on another must work with atomic numbers. :func:`read_nesf_npz` does that
conversion (through :func:`pointsym.datasets.crystals.resolve_species_map`, shared with
:func:`pointsym.datasets.read_crystals_npz`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pointsym.core import check_choice, check_finite_array
from pointsym.datasets.crystals import read_nesf_arrays

__all__ = ["LIM_L6_SIDX_TO_Z", "Crystal", "CrystalSet", "load_nesf_set", "read_nesf_npz"]

# sidx_to_z of lim_l6 (identical in its train/val/test attr.json); used for the embedded
# lim_l6 subsets, which ship without their attr.json.
LIM_L6_SIDX_TO_Z: tuple[int, ...] = (
    1, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
    32, 33, 34, 35, 37, 38, 39, 40, 41, 42, 44, 45, 46, 47, 48, 49, 50, 51, 52, 55, 56, 57, 58, 59, 60, 62,
    63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 90, 91, 92, 93, 94,
)


@dataclass(frozen=True)
class Crystal:
    """One structure: the atoms of one conventional cell (no periodic images).

    Attributes:
        positions: Cartesian positions ``(n, 3)`` (Å).
        numbers: atomic numbers ``(n,)``.
        lengths: lattice lengths a, b, c ``(3,)`` (Å).
        angles: lattice angles alpha, beta, gamma ``(3,)`` (radians).
        id: identifier (Materials Project id for the NeSF sets).
    """

    positions: np.ndarray
    numbers: np.ndarray
    lengths: np.ndarray
    angles: np.ndarray
    id: str = ""

    @property
    def cell(self) -> np.ndarray:
        """Lattice vectors as rows ``(3, 3)`` (Å), ase's ``cellpar_to_cell`` convention."""
        from ase.geometry import cellpar_to_cell

        return cellpar_to_cell(np.r_[self.lengths, np.degrees(self.angles)])


@dataclass(frozen=True)
class CrystalSet:
    """A list of crystals stored as flat arrays (the NeSF npz layout, with atomic numbers).

    Attributes:
        positions: ``(N, 3)`` float64, all atoms (Å).
        numbers: ``(N,)`` int64 atomic numbers.
        offsets: ``(M + 1,)`` int64; structure ``k`` is ``offsets[k]:offsets[k + 1]``.
        lengths: ``(M, 3)`` lattice lengths (Å).
        angles: ``(M, 3)`` lattice angles (radians).
        ids: ``M`` identifiers.
        name: label of the set (file stem or ``name/split``).
    """

    positions: np.ndarray
    numbers: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    angles: np.ndarray
    ids: tuple[str, ...]
    name: str = ""

    def __post_init__(self) -> None:
        m = self.offsets.shape[0] - 1
        if m < 0 or self.offsets[0] != 0 or self.offsets[-1] != self.positions.shape[0]:
            raise ValueError(f"Inconsistent crystal set {self.name!r}: offsets must run from 0 to the atom count.")
        if np.any(np.diff(self.offsets) < 1):
            k = int(np.flatnonzero(np.diff(self.offsets) < 1)[0])
            raise ValueError(f"Structure {k} ({self.ids[k] if k < len(self.ids) else '?'}) of {self.name!r} has "
                             "no atoms; every structure needs at least one atom.")
        if self.positions.ndim != 2 or self.positions.shape[1] != 3 or self.numbers.shape != self.positions.shape[:1]:
            raise ValueError(f"Inconsistent crystal set {self.name!r}: positions (N, 3) and numbers (N,) expected.")
        if self.lengths.shape != (m, 3) or self.angles.shape != (m, 3) or len(self.ids) != m:
            raise ValueError(f"Inconsistent crystal set {self.name!r}: need lengths/angles (M, 3) and M ids.")
        check_finite_array("positions", self.positions)
        check_finite_array("lengths", self.lengths)
        check_finite_array("angles", self.angles)

    def __len__(self) -> int:
        return self.offsets.shape[0] - 1

    def __getitem__(self, k: int) -> Crystal:
        if not -len(self) <= k < len(self):
            raise IndexError(f"Crystal index {k} out of range for a set of {len(self)}.")
        k = k % len(self)
        s, e = self.offsets[k], self.offsets[k + 1]
        return Crystal(self.positions[s:e], self.numbers[s:e], self.lengths[k], self.angles[k], self.ids[k])

    def __iter__(self):  # noqa: ANN204 - generator of Crystal
        return (self[k] for k in range(len(self)))

    @property
    def n_atoms(self) -> np.ndarray:
        """Number of atoms per structure ``(M,)``."""
        return np.diff(self.offsets)

    def subset(self, indices: Sequence[int] | np.ndarray) -> CrystalSet:
        """The structures ``indices`` (in that order) as a new set."""
        return CrystalSet.from_crystals([self[int(k)] for k in indices], name=self.name)

    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-coordinate min and max of all atom positions, two ``(3,)`` arrays (Å)."""
        return self.positions.min(axis=0), self.positions.max(axis=0)

    @classmethod
    def from_crystals(cls, crystals: Sequence[Crystal], name: str = "") -> CrystalSet:
        """Pack :class:`Crystal` objects into a set."""
        if len(crystals) == 0:
            return cls(np.zeros((0, 3)), np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros((0, 3)),
                       np.zeros((0, 3)), (), name)
        counts = [len(c.numbers) for c in crystals]
        return cls(
            positions=np.concatenate([np.asarray(c.positions, np.float64).reshape(-1, 3) for c in crystals]),
            numbers=np.concatenate([np.asarray(c.numbers, np.int64) for c in crystals]),
            offsets=np.r_[0, np.cumsum(counts)].astype(np.int64),
            lengths=np.stack([np.asarray(c.lengths, np.float64) for c in crystals]),
            angles=np.stack([np.asarray(c.angles, np.float64) for c in crystals]),
            ids=tuple(str(c.id) for c in crystals),
            name=name,
        )

    @classmethod
    def from_atoms(cls, atoms_list: Sequence[Any], name: str = "") -> CrystalSet:
        """Build a set from ``ase.Atoms`` (atomic numbers from ``Atoms.numbers``, cell from ``Atoms.cell``)."""
        crystals = []
        for k, atoms in enumerate(atoms_list):
            if not hasattr(atoms, "get_positions") or not hasattr(atoms, "cell"):
                raise TypeError(f"Expected ase.Atoms in 'atoms_list' (item {k} is {type(atoms).__name__}).")
            par = atoms.cell.cellpar()
            crystals.append(Crystal(atoms.get_positions(), np.asarray(atoms.numbers), par[:3], np.radians(par[3:]),
                                    str(atoms.info.get("mpid", k))))
        return cls.from_crystals(crystals, name=name)


def _attr_path(path: Path) -> Path:
    return path.with_name(path.name[: -len(".npz")] + ".attr.json") if path.name.endswith(".npz") else path


def read_nesf_npz(
    path: str | os.PathLike[str], *, sidx_to_z: Sequence[int] | str | None = "auto", name: str | None = None
) -> CrystalSet:
    """Read a NeSF-format npz (``positions, numbers, offsets, lengths, angles_rad[, mpid]``).

    Args:
        path: the npz file.
        sidx_to_z: how to turn the stored ``numbers`` into atomic numbers. ``"auto"``
            (default): use ``sidx_to_z`` of ``<stem>.attr.json`` beside the file when it
            exists, else take ``numbers`` as atomic numbers (with a warning). A sequence:
            that map. ``None``: take ``numbers`` as they are.
        name: label of the set (default: the file stem).

    Returns:
        A :class:`CrystalSet` with atomic numbers.
    """
    path = Path(path)
    d = read_nesf_arrays(path, sidx_to_z=sidx_to_z)
    return CrystalSet(d["positions"], d["numbers"], d["offsets"], d["lengths"], d["angles_rad"], tuple(d["mpid"]),
                      name or path.name[: -len(".npz")])


def load_nesf_set(
    name: str, split: str = "train", *, source: str = "full", data_dir: str | os.PathLike[str] | None = None
) -> CrystalSet:
    """Load a NeSF data set split (``lim_l6``, ``ICSG3D``, ``YBCO13``) with atomic numbers.

    Also accepts a path to any npz in that format as ``name`` (``split`` is then ignored).

    Args:
        name: data set name or npz path.
        split: ``"train"``, ``"val"`` or ``"test"``.
        source: ``"full"`` (data root) or ``"embedded"`` (lim_l6 subsets of 60/20/20).
        data_dir: data root override.
    """
    from pointsym.datasets import CRYSTAL_SETS, check_source, data_file, embedded_file

    if str(name).endswith(".npz"):
        return read_nesf_npz(name)
    nesf_sets = {k: v for k, v in CRYSTAL_SETS.items() if all(str(p).endswith(".npz") for p in v.values())}
    check_choice("name", name, sorted(nesf_sets) + ["<path>.npz"])
    check_choice("split", split, sorted(nesf_sets[name]))
    if check_source(source) == "embedded":
        if name != "lim_l6":
            raise ValueError(f"Only lim_l6 has embedded subsets (got {name!r}); use source='full'.")
        path = embedded_file(f"lim_l6_{split}_subset.npz")
        return read_nesf_npz(path, sidx_to_z=LIM_L6_SIDX_TO_Z, name=f"lim_l6/{split} (embedded)")
    path = data_file(nesf_sets[name][split], data_dir, what=f"Crystal set {name}/{split}")
    return read_nesf_npz(path, name=f"{name}/{split}")
