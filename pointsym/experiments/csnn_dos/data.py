"""Data plumbing of ``csnn-dos``: splits of the carbon DOS set, batches, centre sampling and rotations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["DOSBatch", "DOSDataset", "GridSpec", "collate", "fixed_centres", "limit", "load_sets", "reference_fermi",
           "rotate_frames", "sample_centres", "split_of"]


@dataclass(frozen=True)
class GridSpec:
    """The energy grid and broadening of the targets (arguments of :func:`pointsym.datasets.load_carbon_dos`)."""

    e_min: float = -12.0
    e_max: float = 2.9
    step: float = 0.1
    sigma: float = 0.2
    # runs written before the option existed were all on the midgap grid
    align: str = "midgap"

    def to_dict(self) -> dict[str, Any]:
        return {"e_min": self.e_min, "e_max": self.e_max, "step": self.step, "sigma": self.sigma, "align": self.align}


def load_sets(*, source: str, method: str, data_dir: str | None, data_file: str | None, grid: GridSpec) -> Any:
    """Every structure of the data (all splits, one read of the file) as a :class:`pointsym.datasets.DOSSet`."""
    from pathlib import Path

    from pointsym.datasets import load_carbon_dos

    if data_file is not None and not Path(data_file).is_file():
        raise FileNotFoundError(f"--data-file {data_file!r} does not exist (expected an extxyz(.gz) file written by "
                                "pointsym dos-data, e.g. data/carbon_dos/carbon_dos_xtb.extxyz.gz).")
    try:
        return load_carbon_dos(None, source=source, method=method, data_dir=data_dir, path=data_file, **grid.to_dict())
    except KeyError as exc:
        where = f"--data-file {data_file!r}" if data_file else f"the {source} carbon DOS data"
        raise ValueError(f"A frame of {where} lacks the key {exc} that pointsym dos-data writes (family, split, "
                         "homo, lumo, eigenvalues, ...); is it a carbon DOS file?") from exc


def split_of(data: Any, split: str) -> Any:
    """The structures of ``split`` (``"train"``, ``"val"``, ``"test"`` or ``"all"``); ``ValueError`` when none."""
    if split == "all":
        return data
    sel = data.split == split
    if not sel.any():
        have = sorted(set(data.split.tolist()))
        raise ValueError(f"No {split!r} structures in {data.meta.get('file', 'the data')!r} (it has splits {have}).")
    return data.subset(sel)


def limit(data: Any, n: int | None, seed: int) -> Any:
    """At most ``n`` structures, balanced over the families: a seeded round robin over shuffled families."""
    if n is None or n >= len(data):
        return data
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(data))
    queues: dict[str, list[int]] = {}
    for k in perm:
        queues.setdefault(str(data.family[k]), []).append(int(k))
    order = [queues[f] for f in dict.fromkeys(str(f) for f in data.family)]
    picked: list[int] = []
    while len(picked) < n:
        for q in order:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    return data.subset(np.sort(np.asarray(picked)))


def fixed_centres(sizes: Sequence[int], k: int | None, seed: int) -> list[np.ndarray] | None:
    """A seeded subset of ``min(k, n)`` atoms per structure (``None`` for ``k=None``: all atoms)."""
    if k is None:
        return None
    rng = np.random.default_rng(seed)
    return [np.sort(rng.choice(n, min(k, n), replace=False)).astype(np.int64) for n in sizes]


def sample_centres(sizes: Sequence[int], k: int) -> list[np.ndarray]:
    """``min(k, n)`` atoms per structure drawn without replacement from torch's global RNG (resumable)."""
    out = []
    for n in sizes:
        if k >= n:
            out.append(np.arange(n, dtype=np.int64))
        else:
            out.append(np.sort(torch.randperm(n)[:k].numpy()).astype(np.int64))
    return out


def rotate_frames(frames: Sequence[Any], rotations: Any) -> list[Any]:
    """Copies of ``frames`` with positions and cell rotated, ``x -> R x`` (``rotations``: ``(S, 3, 3)``)."""
    rots = np.asarray(rotations, dtype=np.float64)
    out = []
    for atoms, rot in zip(frames, rots, strict=True):
        a = atoms.copy()
        a.calc = None
        a.positions = atoms.positions @ rot.T
        if a.pbc.any():
            a.set_cell(np.asarray(atoms.cell[:]) @ rot.T, scale_atoms=False)
        out.append(a)
    return out


def reference_fermi(data: Any) -> np.ndarray:
    """``(S,)`` Fermi level of every reference DOS of ``data``, eV (linear crossing)."""
    from pointsym.electronic import fermi_level

    return np.atleast_1d(fermi_level(data.energies, data.dos * data.n_atoms[:, None], data.n_electrons,
                                     crossing="linear"))


class DOSDataset(torch.utils.data.Dataset):
    """Structures of a :class:`~pointsym.datasets.DOSSet` with their per-atom DOS and reference Fermi level,
    optionally with fixed centres."""

    def __init__(self, data: Any, centres: list[np.ndarray] | None = None) -> None:
        self.data = data
        self.centres = centres
        self.fermi = reference_fermi(data)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, k: int) -> tuple[Any, np.ndarray, np.ndarray | None, float]:
        return (self.data.frames[k], self.data.dos[k], None if self.centres is None else self.centres[k],
                float(self.fermi[k]))


@dataclass
class DOSBatch:
    """A batch of structures: frames, their reference per-atom DOS ``(S, n_E)``, optional fixed centres and
    the reference Fermi levels ``(S,)`` (eV)."""

    frames: list[Any]
    dos: torch.Tensor
    centres: list[np.ndarray] | None = field(default=None)
    fermi: torch.Tensor | None = field(default=None)

    @property
    def batch_size(self) -> int:
        return len(self.frames)

    def to(self, device: Any) -> DOSBatch:
        return DOSBatch(self.frames, self.dos.to(device), self.centres,
                        None if self.fermi is None else self.fermi.to(device))


def collate(items: list[tuple[Any, np.ndarray, np.ndarray | None, float]]) -> DOSBatch:
    """Trainer ``collate_fn``: float32 targets, the frames as they are."""
    frames = [it[0] for it in items]
    dos = torch.as_tensor(np.stack([it[1] for it in items]), dtype=torch.float32)
    centres = None if all(it[2] is None for it in items) else [it[2] for it in items]
    fermi = torch.tensor([it[3] for it in items], dtype=torch.float64)
    return DOSBatch(frames, dos, centres, fermi)
