"""Model adapters: one protocol through which every DOS model kind shares the training loop of ``csnn-dos``.

A :class:`DOSAdapter` turns structures into a model's input (:meth:`~DOSAdapter.prepare`) and the
model's output into the per-atom DOS of each structure (:meth:`~DOSAdapter.predict`), the mean of
the per-atom DOS of the chosen *centre* atoms (all atoms by default). The training loop draws the
centres (``--atoms-per-structure``), rotates the structures (``--rotate-train``) and computes the
loss; it knows nothing else about the model.

Adapters are registered by name in :data:`ADAPTERS` as ``"module:attribute"`` strings and imported
only when asked for (:func:`get_adapter`), so a model kind whose dependencies are missing does not
break the others. This module holds the CSNN adapter (:class:`CSNNAdapter`); the SOAP-MLP and PET
adapters live in ``adapter_soap.py`` and ``adapter_pet.py`` of this package.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

__all__ = ["ADAPTERS", "CSNNAdapter", "CSNNInputs", "DOSAdapter", "centre_pairs", "check_centres", "environment_grid",
           "get_adapter", "grid_step"]


@runtime_checkable
class DOSAdapter(Protocol):
    """What the ``csnn-dos`` training loop needs from a model kind.

    Attributes:
        name: the model kind, e.g. ``"csnn"``, ``"soap-mlp"``, ``"pet"`` (the ``--model`` value).
    """

    name: str

    def build_model(self, energies: np.ndarray, options: dict[str, Any]) -> torch.nn.Module:
        """A fresh (untrained) model predicting the DOS on ``energies`` (``(n_E,)``, eV), from ``options``.

        ``options`` holds the model options given on the command line (only those set, plus
        ``--model-options``); the adapter supplies defaults for the rest and raises
        ``ValueError`` for keys it does not know. Called once per run (also when an evaluation
        rebuilds a trained model from its checkpoint, with the same ``options``), before
        :meth:`prepare`.
        """
        ...

    def prepare(self, frames: list[Any], centres: list[np.ndarray] | None, *, dtype: torch.dtype,
                device: torch.device) -> Any:
        """The model input of ``frames`` (``ase.Atoms``) for the atoms ``centres[k]`` of frame ``k``.

        ``centres`` is ``None`` (every atom of every frame) or one integer index array per frame
        (``None`` entries: all atoms of that frame); the neighbours of a centre are still all
        atoms. Called once per batch (training) or chunk (evaluation).
        """
        ...

    def predict(self, model: torch.nn.Module, prepared: Any) -> torch.Tensor:
        """``(S, n_E)`` per-atom DOS of each structure: the mean over its centres of the per-atom DOS."""
        ...


#: Model kind -> ``"module:attribute"`` of its adapter class (imported by :func:`get_adapter`).
ADAPTERS: dict[str, str] = {
    "csnn": "pointsym.experiments.csnn_dos.adapters:CSNNAdapter",
    "soap-mlp": "pointsym.experiments.csnn_dos.adapter_soap:SOAPMLPAdapter",
    "pet": "pointsym.experiments.csnn_dos.adapter_pet:PETAdapter",
}


def get_adapter(name: str, **kwargs: Any) -> DOSAdapter:
    """An instance of the adapter registered as ``name`` in :data:`ADAPTERS` (``kwargs`` go to its constructor).

    Raises:
        ValueError: ``name`` is not registered, or its module (or one of its dependencies)
            cannot be imported, or the module lacks the attribute.
    """
    if name not in ADAPTERS:
        raise ValueError(f"Unknown DOS model {name!r}; expected one of {', '.join(ADAPTERS)} (--model).")
    module_name, _, attr = ADAPTERS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        what = ("is not installed in this pointsym" if missing == module_name
                else f"cannot be imported ({type(exc).__name__}: {exc})")
        raise ValueError(f"The {name!r} model's adapter {module_name} {what}; choose another --model "
                         f"({', '.join(n for n in ADAPTERS if n != name)}).") from exc
    cls = getattr(module, attr, None)
    if cls is None:
        raise ValueError(f"The {name!r} model's adapter module {module_name} has no {attr!r}; its registry entry "
                         f"{ADAPTERS[name]!r} is wrong.")
    return cls(**kwargs)


# ---------------------------------------------------------------------------------- helpers
def grid_step(energies: Any) -> float:
    """Spacing of a uniform, increasing energy grid (at least 2 points), eV; ``ValueError`` otherwise."""
    e = np.asarray(energies, dtype=np.float64)
    if e.ndim != 1 or e.shape[0] < 2:
        raise ValueError(f"Expected a 1-D energy grid of at least 2 energies (got shape {e.shape}).")
    d = np.diff(e)
    if d[0] <= 0 or not np.allclose(d, d[0], rtol=1e-6, atol=1e-9):
        raise ValueError("Expected a uniform, increasing energy grid (build it with pointsym.electronic.energy_grid).")
    return float(d[0])


def check_centres(centres: Sequence[Any] | None, sizes: Sequence[int]) -> list[np.ndarray]:
    """``centres`` as one int64 index array per frame (all atoms where ``None``), checked against ``sizes``."""
    if centres is None:
        return [np.arange(n, dtype=np.int64) for n in sizes]
    if len(centres) != len(sizes):
        raise ValueError(f"Expected one centre array per frame ({len(sizes)}) (got {len(centres)}).")
    out = []
    for k, (c, n) in enumerate(zip(centres, sizes, strict=True)):
        if c is None:
            out.append(np.arange(n, dtype=np.int64))
            continue
        idx = np.asarray(c)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"centres[{k}] must be a non-empty 1-D array of atom indices (got {c!r}).")
        if idx.min() < 0 or idx.max() >= n:
            raise ValueError(f"centres[{k}] has atom indices outside [0, {n}) (frame {k} has {n} atoms).")
        out.append(idx.astype(np.int64))
    return out


def _image_shifts(cell: np.ndarray, pbc: np.ndarray, r_cut: float) -> np.ndarray:
    """Cartesian lattice shifts ``n @ cell`` that reach every neighbour within ``r_cut`` of atoms inside the cell."""
    if not pbc.any():
        return np.zeros((1, 3))
    box = np.asarray(cell, dtype=np.float64)
    volume = abs(np.linalg.det(box))
    reach = []
    for k in range(3):
        if pbc[k]:
            spacing = volume / np.linalg.norm(np.cross(box[(k + 1) % 3], box[(k + 2) % 3]))
            n = int(np.ceil(r_cut / spacing)) + 1
            reach.append(np.arange(-n, n + 1, dtype=np.float64))
        else:
            reach.append(np.zeros(1))
    return np.stack(np.meshgrid(*reach, indexing="ij"), -1).reshape(-1, 3) @ box


def centre_pairs(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, centres: np.ndarray,
                 r_cut: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbours within ``r_cut`` of the atoms ``centres`` of one structure (periodic images included).

    A direct search over the neighbouring cell images, whose cost grows with the number of
    centres (the full neighbour list of a structure grows with its number of atoms): the pairs
    and vectors are those of a full neighbour list restricted to the centres.

    Returns:
        ``(row, j, vectors)``: ``(E,)`` index into ``centres``, ``(E,)`` neighbour atom, ``(E, 3)``
        float64 displacement ``r_j + shift - r_centre``, Å.

    Raises:
        ValueError: two atoms closer than :data:`pointsym.structures.MIN_DISTANCE`.
    """
    from pointsym.structures import MIN_DISTANCE

    pos = np.asarray(positions, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    shifts = _image_shifts(cell, pbc, r_cut)
    if pbc.any():
        # wrap along the periodic axes: the set of vectors r_j - r_i + n @ cell is unchanged
        box = np.asarray(cell, dtype=np.float64)
        frac = np.linalg.solve(box.T, pos.T).T
        frac[:, pbc] -= np.floor(frac[:, pbc])
        pos = frac @ box
    diff = pos[None, :, None, :] + shifts[None, None] - pos[centres][:, None, None, :]  # (C, N, S, 3)
    dist = np.sqrt(np.einsum("cnsk,cnsk->cns", diff, diff))
    zero = int(np.argmin(np.abs(shifts).sum(1)))
    self_pair = np.zeros(dist.shape, dtype=bool)
    self_pair[np.arange(len(centres)), centres, zero] = True
    close = (dist < MIN_DISTANCE) & ~self_pair
    if close.any():
        c, n, _ = np.argwhere(close)[0]
        raise ValueError(f"Overlapping atoms: atoms {int(centres[c])} and {int(n)} are {dist[close].min():.3g} Å "
                         f"apart (< {MIN_DISTANCE} Å); remove duplicates or fix the positions.")
    row, j, s = np.nonzero((dist <= r_cut) & ~self_pair)
    return row, j, diff[row, j, s]


#: Above this many candidate (centre, atom, image) triples a structure's centres take the full neighbour list.
_DIRECT_LIMIT = 2_000_000


def environment_grid(frames: Sequence[Any], centres: Sequence[Any] | None = None, *, dtype: torch.dtype,
                     device: Any, level: int, n_bins: int, r_min: float, r_cut: float, scaling: str,
                     species: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fingerprints (:func:`pointsym.nn.atomic_environment_grid`) of the centre atoms only.

    The neighbours of a centre are all atoms of its frame (periodic images included); only the
    centres get a grid, ``(sum_k len(centres[k]), 1, V, C)``, with the structure index of each
    row. Centres are ordered by frame, then as given. Without ``centres`` this is
    :func:`~pointsym.nn.atomic_environment_grid` of every atom. The pairs of a few centres come
    from :func:`centre_pairs` (a cost that grows with the centres, not the atoms); the values
    equal the rows of the full grid up to round-off.
    """
    from pointsym.core import parse_species
    from pointsym.nn import atomic_environment_grid, nearest_vertex_mapping
    from pointsym.structures import batch_structures, batched_neighbor_list

    frames = list(frames)
    sb = batch_structures(frames, dtype=dtype, device=device)
    if centres is None:
        grid = atomic_environment_grid(sb.positions, sb.numbers, sb.cell, sb.pbc, sb.batch, level=level,
                                       n_bins=n_bins, r_min=r_min, r_cut=r_cut, scaling=scaling, species=species)
        return grid, sb.batch
    picked = check_centres(centres, [len(a) for a in frames])
    rows, vecs, nbs, batch = [], [], [], []
    first = 0
    for k, (atoms, c) in enumerate(zip(frames, picked, strict=True)):
        pos = np.asarray(atoms.positions, dtype=np.float64)
        pbc = np.asarray(atoms.pbc, dtype=bool).reshape(3)
        cell = np.asarray(atoms.cell[:], dtype=np.float64)
        direct = pbc.all() or not pbc.any()  # (a partly periodic cell may have a zero vector: the full list)
        if direct and len(c) * len(atoms) * len(_image_shifts(cell, pbc, r_cut)) <= _DIRECT_LIMIT:
            row, j, vec = centre_pairs(pos, cell, pbc, c, r_cut)
        else:  # many centres: the full neighbour list of the frame, restricted to them
            one = batch_structures([atoms], dtype=torch.float64)
            i_t, j_t, _, v_t = batched_neighbor_list(one.positions, one.cell, one.pbc, one.batch, r_cut=r_cut)
            where = np.full(len(atoms), -1)
            where[c] = np.arange(len(c))
            keep = where[i_t.numpy()] >= 0
            row, j, vec = where[i_t.numpy()[keep]], j_t.numpy()[keep], v_t.numpy()[keep]
        rows.append(row + first)
        vecs.append(vec)
        nbs.append(np.asarray(atoms.numbers)[j])
        batch.append(np.full(len(c), k, dtype=np.int64))
        first += len(c)
    row_t = torch.as_tensor(np.concatenate(rows), dtype=torch.long, device=device)
    vec_t = torch.as_tensor(np.concatenate(vecs), dtype=dtype, device=device)
    nb = np.concatenate(nbs)

    def grid(sel: np.ndarray | None) -> torch.Tensor:
        v, e = (vec_t, row_t) if sel is None else (vec_t[torch.as_tensor(sel, device=device)],
                                                    row_t[torch.as_tensor(sel, device=device)])
        return nearest_vertex_mapping(v, level, n_bins, r_min=r_min, r_cut=r_cut, scaling=scaling, index=e,
                                      n_envs=first)

    out = grid(None) if species is None else torch.cat([grid(nb == z) for z in parse_species(species)], dim=-1)
    return out, torch.as_tensor(np.concatenate(batch), device=device)


# ---------------------------------------------------------------------------------- CSNN
@dataclass
class CSNNInputs:
    """Prepared CSNN input: fingerprints of the centre atoms and the structure of each."""

    grid: torch.Tensor  # (A_c, 1, V, C)
    batch: torch.Tensor  # (A_c,)
    n_structures: int

    @property
    def n_atoms(self) -> int:
        return int(self.grid.shape[0])

    def to(self, device: Any) -> CSNNInputs:
        return CSNNInputs(self.grid.to(device), self.batch.to(device), self.n_structures)


#: The options of :class:`CSNNAdapter` with their defaults: the reference carbon model (spec section 5).
CSNN_DEFAULTS: dict[str, Any] = {
    "level": 3, "n_bins": 32, "r_min": 1.0, "r_cut": 7.0, "scaling": "inverse", "species": None, "base_width": 32,
    "gconv_dims": None, "radial_dims": None, "gconv_layers": None, "radial_layers": None, "radial_kernel": 1,
    "pool": "mean", "hidden": [512, 512], "dropout": 0.0, "smoothing": True,
}
_FINGERPRINT_KEYS = ("level", "n_bins", "r_min", "r_cut", "scaling", "species")


class CSNNAdapter:
    """The atom-centred CSNN (:class:`pointsym.models.CSNNDOS`) as a :class:`DOSAdapter`.

    Fingerprints are built per batch from the structures (only for the centre atoms, the
    neighbour list still over all atoms): the grid of every atom of a large set would need tens
    of GB, and a batch's grid is cheap to recompute.

    Options (keys of ``options``; defaults :data:`CSNN_DEFAULTS`, the reference model): the
    fingerprint ``level``, ``n_bins``, ``r_min``, ``r_cut``, ``scaling``, ``species`` and the
    network ``base_width``, ``gconv_dims``, ``radial_dims``, ``gconv_layers``, ``radial_layers``,
    ``radial_kernel``, ``pool``, ``hidden``, ``dropout``, ``smoothing`` (see :class:`CSNNDOS`).
    """

    name = "csnn"

    def __init__(self) -> None:
        self.fingerprint: dict[str, Any] | None = None

    def build_model(self, energies: np.ndarray, options: dict[str, Any]) -> torch.nn.Module:
        from pointsym.models import CSNNDOS

        unknown = sorted(set(options) - set(CSNN_DEFAULTS))
        if unknown:
            raise ValueError(f"Unknown csnn model option(s) {unknown}; known: {sorted(CSNN_DEFAULTS)}.")
        opts = {**CSNN_DEFAULTS, **options}
        energies = np.asarray(energies, dtype=np.float64)
        step = grid_step(energies)
        if opts["hidden"] is not None:
            opts["hidden"] = list(opts["hidden"])
        model = CSNNDOS(n_energies=int(energies.shape[0]), e_min=float(energies[0]), e_step=step, **opts)
        hypers = model.hypers
        self.fingerprint = {k: hypers[k] for k in _FINGERPRINT_KEYS}
        return model

    def prepare(self, frames: list[Any], centres: list[np.ndarray] | None, *, dtype: torch.dtype,
                device: torch.device) -> CSNNInputs:
        if self.fingerprint is None:
            raise RuntimeError("CSNNAdapter.prepare needs the fingerprint settings: call build_model first.")
        grid, batch = environment_grid(frames, centres, dtype=dtype, device=device, **self.fingerprint)
        return CSNNInputs(grid, batch, len(frames))

    def predict(self, model: torch.nn.Module, prepared: CSNNInputs) -> torch.Tensor:
        return model(prepared.grid, prepared.batch, prepared.n_structures)
