"""Batches of atomic structures as tensors, input checks and energy/force/stress autograd.

The *structure-model convention* used by :class:`~pointsym.models.PET`,
:class:`~pointsym.symmetrize.ECSE` and the toy :class:`~pointsym.symmetrize.NeighborMLP`:

``model(positions, numbers, cell, pbc, batch)`` with

=============  =================  ======================================================
``positions``  ``(N, 3)`` float   Cartesian positions of all atoms of all structures, Å
``numbers``    ``(N,)`` int64     per-atom atomic numbers
``cell``       ``(S, 3, 3)``      lattice vectors as rows, Å (zeros when not periodic)
``pbc``        ``(S, 3)`` bool    periodicity of each structure along each cell vector
``batch``      ``(N,)`` int64     structure index of each atom, in ``[0, S)``
=============  =================  ======================================================

Structure-level outputs have a leading axis of size ``S``, per-atom outputs of size ``N``.

Validate once
-------------
Inputs are validated once, at the public boundary (:func:`check_structure_inputs`: shapes,
dtypes, NaN/inf, empty structures, ``batch`` range -- several device-to-host syncs). Code that
has already validated its inputs and calls another structure model (ECSE calling the wrapped
model once per chunk of frames, :func:`autograd_energy_forces` calling the model) does so
inside :func:`trusted_inputs`: there, :func:`check_structure_inputs` only canonicalises
(``None`` defaults, ``(3, 3)`` cells, bool/``(3,)`` pbc, int64 numbers) without checks or
syncs. A structure model therefore needs nothing beyond calling
:func:`check_structure_inputs` first thing in its ``forward``; models that do their own checks
can consult :func:`inputs_trusted`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pointsym.core import renamed_kwargs, warn_deprecated
from pointsym.geometry import neighbor_list

__all__ = [
    "MIN_DISTANCE",
    "StructureBatch",
    "batch_structures",
    "batched_neighbor_list",
    "check_structure_inputs",
    "inputs_trusted",
    "trusted_inputs",
    "autograd_energy_forces",
    "energy_and_forces",
    "predict_structures",
    "strained_inputs",
    "strain_to_stress",
]

# Closer atoms than this are "overlapping": no physical structure has them and the
# neighbour directions that models and frames rely on become meaningless.
MIN_DISTANCE = 0.1


@dataclass
class StructureBatch:
    """Several structures concatenated along the atom axis (see module docstring).

    Attributes:
        positions: ``(N, 3)`` Å.
        numbers: ``(N,)`` int64 per-atom atomic numbers (``species`` is a deprecated alias).
        cell: ``(S, 3, 3)`` Å, rows are lattice vectors.
        pbc: ``(S, 3)`` bool.
        batch: ``(N,)`` int64 structure index.
        energy: ``(S,)`` reference energies in eV, or ``None``.
        forces: ``(N, 3)`` reference forces in eV/Å, or ``None``.
    """

    positions: torch.Tensor
    numbers: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    batch: torch.Tensor
    energy: torch.Tensor | None = None
    forces: torch.Tensor | None = None

    @property
    def species(self) -> torch.Tensor:
        """Deprecated alias of :attr:`numbers` (per-atom atomic numbers)."""
        warn_deprecated("StructureBatch.species is deprecated, use StructureBatch.numbers (per-atom atomic numbers)",
                        stacklevel=2)
        return self.numbers

    @property
    def n_structures(self) -> int:
        return int(self.cell.shape[0])

    @property
    def batch_size(self) -> int:
        """Number of structures (read by :class:`~pointsym.training.Trainer`)."""
        return self.n_structures

    @property
    def n_atoms(self) -> torch.Tensor:
        """``(S,)`` number of atoms per structure."""
        return torch.bincount(self.batch, minlength=self.n_structures)

    def inputs(self) -> dict[str, Any]:
        """Keyword arguments of a structure model."""
        return {"positions": self.positions, "numbers": self.numbers, "cell": self.cell, "pbc": self.pbc,
                "batch": self.batch}

    def to(self, device: Any = None, dtype: torch.dtype | None = None) -> StructureBatch:
        """Copy with float tensors moved/cast (integer and bool tensors only moved)."""

        def move(t: Any) -> Any:
            if t is None:
                return None
            if t.is_floating_point() and dtype is not None:
                return t.to(device=device, dtype=dtype)
            return t.to(device=device)

        return StructureBatch(*(move(getattr(self, f)) for f in
                                ("positions", "numbers", "cell", "pbc", "batch", "energy", "forces")))


# One release of StructureBatch(species=...) (the per-atom field is now ``numbers``).
StructureBatch.__init__ = renamed_kwargs(species="numbers")(StructureBatch.__init__)  # type: ignore[method-assign]


def _is_atoms(x: Any) -> bool:
    return hasattr(x, "get_positions") and hasattr(x, "numbers") and hasattr(x, "cell")


def batch_structures(
    frames: Any,
    *,
    dtype: torch.dtype = torch.float32,
    device: Any = "cpu",
    labels: bool = False,
) -> StructureBatch:
    """Concatenate ``ase.Atoms`` into a :class:`StructureBatch`.

    Args:
        frames: one ``ase.Atoms`` or a sequence of them.
        dtype: float dtype of positions, cells and labels (default: float32).
        device: torch device (default: "cpu").
        labels: also read ``info["energy"]`` (eV) and ``arrays["forces"]`` (eV/Å), as set by
            :func:`pointsym.datasets.read_atomistic`; missing labels raise ``ValueError``.

    Returns:
        A :class:`StructureBatch`.
    """
    if _is_atoms(frames):
        frames = [frames]
    if not isinstance(frames, Sequence) or isinstance(frames, (str, bytes)):
        raise TypeError(f"Expected 'frames' to be an ase.Atoms or a list of them (got {type(frames).__name__}).")
    if len(frames) == 0:
        raise ValueError("'frames' is empty; pass at least one structure.")
    pos, num, cells, pbcs, batch, energy, forces = [], [], [], [], [], [], []
    for k, atoms in enumerate(frames):
        if not _is_atoms(atoms):
            raise TypeError(f"frames[{k}] is a {type(atoms).__name__}, not an ase.Atoms.")
        if len(atoms) == 0:
            raise ValueError(f"frames[{k}] is an empty structure (0 atoms); remove it.")
        p = np.asarray(atoms.get_positions(), dtype=np.float64)
        if not np.all(np.isfinite(p)):
            raise ValueError(f"frames[{k}] has NaN or infinite positions; fix or drop that structure.")
        pos.append(p)
        num.append(np.asarray(atoms.numbers, dtype=np.int64))
        pbc = np.asarray(atoms.pbc, dtype=bool).reshape(3)
        cells.append(np.asarray(atoms.cell[:], dtype=np.float64) if pbc.any() else np.zeros((3, 3)))
        pbcs.append(pbc)
        batch.append(np.full(len(atoms), k, dtype=np.int64))
        if labels:
            if "energy" not in atoms.info or "forces" not in atoms.arrays:
                raise ValueError(
                    f"frames[{k}] has no info['energy'] / arrays['forces']; read files with "
                    "pointsym.datasets.read_atomistic (or load_atomistic), which unifies the labels."
                )
            energy.append(float(atoms.info["energy"]))
            forces.append(np.asarray(atoms.arrays["forces"], dtype=np.float64))

    def f(a: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=dtype, device=device)

    return StructureBatch(
        positions=f(np.concatenate(pos)),
        numbers=torch.as_tensor(np.concatenate(num), device=device),
        cell=f(np.stack(cells)),
        pbc=torch.as_tensor(np.stack(pbcs), device=device),
        batch=torch.as_tensor(np.concatenate(batch), device=device),
        energy=f(energy) if labels else None,
        forces=f(np.concatenate(forces)) if labels else None,
    )


_TRUSTED: contextvars.ContextVar[bool] = contextvars.ContextVar("pointsym_trusted_structure_inputs", default=False)


@contextlib.contextmanager
def trusted_inputs() -> Iterator[None]:
    """Within this block :func:`check_structure_inputs` trusts its inputs (validated upstream).

    For code that has validated ``positions, numbers, cell, pbc, batch`` once and then calls
    structure models on transformed copies of them (rotated positions and cells, subsets of
    structures): the checks -- and their device-to-host syncs -- are skipped, only the cheap
    canonicalisation of :func:`check_structure_inputs` remains. Nesting is allowed; the flag is
    a :mod:`contextvars` variable, so other threads are unaffected.

    Example:
        >>> import torch
        >>> from pointsym.structures import check_structure_inputs, inputs_trusted, trusted_inputs
        >>> with trusted_inputs():
        ...     pos, z, cell, pbc, batch = check_structure_inputs(torch.zeros(2, 3), torch.ones(2, dtype=torch.long))
        ...     inputs_trusted()
        True
        >>> tuple(cell.shape), inputs_trusted()
        ((1, 3, 3), False)
    """
    token = _TRUSTED.set(True)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def inputs_trusted() -> bool:
    """Whether the caller runs inside :func:`trusted_inputs` (inputs already validated)."""
    return _TRUSTED.get()


def _canonical_structure_inputs(
    positions: torch.Tensor, numbers: Any, cell: Any, pbc: Any, batch: Any,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The canonical form of already validated inputs: shape/dtype fixes only, no checks, no syncs
    (except ``cell=None`` with an explicit ``batch``, which needs the number of structures)."""
    dev = positions.device
    numbers = torch.as_tensor(numbers, device=dev)
    numbers = numbers if numbers.dtype == torch.long else numbers.long()
    if batch is None:
        batch = torch.zeros(positions.shape[0], dtype=torch.long, device=dev)
        n_struct = 1
    else:
        batch = torch.as_tensor(batch, device=dev)
        batch = batch if batch.dtype == torch.long else batch.long()
        n_struct = None
    if cell is None:
        n_struct = n_struct or int(batch.max()) + 1
        cell = torch.zeros(n_struct, 3, 3, dtype=positions.dtype, device=dev)
    else:
        cell = torch.as_tensor(cell, dtype=positions.dtype, device=dev)
        if cell.ndim == 2:
            cell = cell.unsqueeze(0)
    n_struct = cell.shape[0]
    if pbc is None:
        pbc = torch.zeros(n_struct, 3, dtype=torch.bool, device=dev)
    else:
        pbc = torch.as_tensor(pbc, device=dev).bool()
        if pbc.ndim == 0:
            pbc = pbc.expand(n_struct, 3)
        elif pbc.ndim == 1:
            pbc = pbc.unsqueeze(0).expand(n_struct, 3)
    return positions, numbers, cell, pbc, batch


@renamed_kwargs(species="numbers")
def check_structure_inputs(
    positions: Any,
    numbers: Any,
    cell: Any = None,
    pbc: Any = None,
    batch: Any = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate and canonicalise structure-model inputs (the public boundary's one check).

    Accepts ``cell`` as ``None`` (not periodic), ``(3, 3)`` or ``(S, 3, 3)``; ``pbc`` as
    ``None``, a bool, ``(3,)`` or ``(S, 3)``; ``batch=None`` means one structure. Inside
    :func:`trusted_inputs` only the canonicalisation is done (no checks, no device syncs).

    Returns:
        ``(positions (N, 3), numbers (N,) int64, cell (S, 3, 3), pbc (S, 3) bool, batch (N,) int64)``.

    Raises:
        TypeError: non-tensor positions, non-integer numbers or batch.
        ValueError: wrong shapes, an empty structure, NaN/inf values, out-of-range batch.
    """
    if _TRUSTED.get() and isinstance(positions, torch.Tensor):
        return _canonical_structure_inputs(positions, numbers, cell, pbc, batch)
    return _validate_structure_inputs(positions, numbers, cell, pbc, batch)


def _validate_structure_inputs(
    positions: Any, numbers: Any, cell: Any, pbc: Any, batch: Any,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The full checks of :func:`check_structure_inputs`."""
    if not isinstance(positions, torch.Tensor) or not positions.is_floating_point():
        raise TypeError("Expected 'positions' to be a floating-point torch.Tensor of shape (n_atoms, 3) "
                        f"(got {type(positions).__name__}"
                        f"{'' if not isinstance(positions, torch.Tensor) else ' ' + str(positions.dtype)}).")
    if positions.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"Expected 'positions' in float32 or float64 (got {positions.dtype}); half precision is "
                        "too coarse for atomic coordinates: cast with positions.float() or .double().")
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"Expected 'positions' of shape (n_atoms, 3) (got {tuple(positions.shape)}).")
    n = positions.shape[0]
    if n == 0:
        raise ValueError("Empty structure: 'positions' has 0 atoms; pass at least one atom.")
    if not bool(torch.isfinite(positions).all()):
        bad = int(torch.nonzero(~torch.isfinite(positions).all(1))[0, 0])
        raise ValueError(f"'positions' contains NaN or infinite values (first at atom {bad}); fix the structure.")
    numbers = torch.as_tensor(numbers, device=positions.device)
    if numbers.is_floating_point() or numbers.dtype == torch.bool:
        raise TypeError(f"Expected 'numbers' to hold integer atomic numbers (got dtype {numbers.dtype}).")
    if numbers.shape != (n,):
        raise ValueError(f"Expected 'numbers' (per-atom atomic numbers) of shape ({n},) to match 'positions' "
                         f"(got {tuple(numbers.shape)}).")
    numbers = numbers.long()
    if batch is None:
        batch = torch.zeros(n, dtype=torch.long, device=positions.device)
    else:
        batch = torch.as_tensor(batch, device=positions.device)
        if batch.is_floating_point() or batch.shape != (n,):
            raise ValueError(f"Expected 'batch' to be an int64 tensor of shape ({n},) (got {batch.dtype} "
                             f"{tuple(batch.shape)}).")
        batch = batch.long()
        if int(batch.min()) < 0:
            raise ValueError(f"'batch' has negative structure indices (min {int(batch.min())}).")
    if cell is None:
        n_struct = int(batch.max()) + 1
        cell = torch.zeros(n_struct, 3, 3, dtype=positions.dtype, device=positions.device)
    else:
        cell = torch.as_tensor(cell, dtype=positions.dtype, device=positions.device)
        if cell.shape == (3, 3):
            cell = cell.unsqueeze(0)
        if cell.ndim != 3 or cell.shape[1:] != (3, 3):
            raise ValueError(f"Expected 'cell' of shape (3, 3) or (n_structures, 3, 3) (got {tuple(cell.shape)}).")
        if not bool(torch.isfinite(cell).all()):
            raise ValueError("'cell' contains NaN or infinite values; fix the lattice vectors.")
    n_struct = cell.shape[0]
    if int(batch.max()) >= n_struct:
        raise ValueError(f"'batch' refers to structure {int(batch.max())} but 'cell' describes only {n_struct}.")
    counts = torch.bincount(batch, minlength=n_struct)
    if bool((counts == 0).any()):
        empty = int(torch.nonzero(counts == 0)[0, 0])
        raise ValueError(f"Empty structure: structure {empty} has no atoms in 'batch'; remove it.")
    if pbc is None:
        pbc = torch.zeros(n_struct, 3, dtype=torch.bool, device=positions.device)
    else:
        pbc = torch.as_tensor(pbc, device=positions.device).bool()
        if pbc.ndim == 0:
            pbc = pbc.expand(n_struct, 3)
        elif pbc.shape == (3,):
            pbc = pbc.unsqueeze(0).expand(n_struct, 3)
        if pbc.shape != (n_struct, 3):
            raise ValueError(f"Expected 'pbc' as a bool, (3,) or ({n_struct}, 3) (got {tuple(pbc.shape)}).")
    return positions, numbers, cell, pbc, batch


@renamed_kwargs(cutoff="r_cut")
def batched_neighbor_list(
    positions: torch.Tensor,
    cell: torch.Tensor,
    pbc: torch.Tensor,
    batch: torch.Tensor,
    *args: Any,
    r_cut: float | None = None,
    min_distance: float | None = MIN_DISTANCE,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full neighbour list of every structure of a batch, with differentiable vectors.

    Call as ``batched_neighbor_list(positions, cell, pbc, batch, *, r_cut, min_distance=0.1)``;
    the old forms with the cutoff as fifth positional argument or ``cutoff=`` still work for one
    release, with a ``DeprecationWarning``.

    The pair search runs in float64 numpy (vesin) on detached positions; the returned
    vectors ``positions[j] - positions[i] + shifts @ cell`` are recomputed in torch so that
    gradients flow to ``positions`` and ``cell``.

    Args:
        positions, cell, pbc, batch: canonical inputs (see :func:`check_structure_inputs`).
        r_cut: pair cutoff, Å (keyword only).
        min_distance: raise ``ValueError`` for pairs closer than this (overlapping atoms);
            ``None`` disables the check.

    Returns:
        ``(i, j, shifts, vectors)``: ``(E,)`` int64 centres and neighbours (global atom
        indices), ``(E, 3)`` int64 cell shifts, ``(E, 3)`` vectors (dtype of ``positions``),
        sorted by centre.
    """
    if args:
        if len(args) != 1 or r_cut is not None:
            raise TypeError("batched_neighbor_list() takes positions, cell, pbc, batch positionally and r_cut= as a "
                            f"keyword (got {4 + len(args)} positional arguments).")
        warn_deprecated("batched_neighbor_list(positions, cell, pbc, batch, cutoff): a positional cutoff is "
                        "deprecated, use batched_neighbor_list(positions, cell, pbc, batch, r_cut=...)", stacklevel=3)
        r_cut = args[0]
    if r_cut is None:
        raise TypeError("batched_neighbor_list() missing the keyword argument 'r_cut' (pair cutoff in Å).")
    pos_np = positions.detach().cpu().double().numpy()
    cell_np = cell.detach().cpu().double().numpy()
    pbc_np = pbc.detach().cpu().numpy()
    batch_np = batch.detach().cpu().numpy()
    order = np.argsort(batch_np, kind="stable")
    bounds = np.searchsorted(batch_np[order], np.arange(cell_np.shape[0] + 1))
    ii, jj, ss = [], [], []
    for s in range(cell_np.shape[0]):
        idx = order[bounds[s]:bounds[s + 1]]
        periodic = bool(pbc_np[s].any())
        nl = neighbor_list(pos_np[idx], cell=cell_np[s] if periodic else None,
                           pbc=pbc_np[s].tolist() if periodic else False, r_cut=r_cut)
        if min_distance is not None and len(nl) and nl.distances.min() < min_distance:
            k = int(np.argmin(nl.distances))
            raise ValueError(
                f"Overlapping atoms in structure {s}: atoms {int(idx[nl.i[k]])} and {int(idx[nl.j[k]])} are "
                f"{nl.distances[k]:.3g} Å apart (< {min_distance} Å); remove duplicates or fix the positions."
            )
        ii.append(idx[nl.i])
        jj.append(idx[nl.j])
        ss.append(nl.shifts)
    i = np.concatenate(ii) if ii else np.zeros(0, np.int64)
    j = np.concatenate(jj) if jj else np.zeros(0, np.int64)
    shifts = np.concatenate(ss) if ss else np.zeros((0, 3), np.int64)
    srt = np.argsort(i, kind="stable")
    dev = positions.device
    i_t = torch.as_tensor(i[srt], dtype=torch.long, device=dev)
    j_t = torch.as_tensor(j[srt], dtype=torch.long, device=dev)
    s_t = torch.as_tensor(shifts[srt], dtype=torch.long, device=dev)
    vectors = positions[j_t] - positions[i_t]
    if bool(pbc.any()):
        vectors = vectors + torch.einsum("ek,ekl->el", s_t.to(positions.dtype), cell[batch[i_t]])
    return i_t, j_t, s_t, vectors


@renamed_kwargs(species="numbers")
def energy_and_forces(
    model: Callable[..., Any],
    positions: torch.Tensor,
    numbers: torch.Tensor,
    cell: torch.Tensor | None = None,
    pbc: torch.Tensor | None = None,
    batch: torch.Tensor | None = None,
    *,
    forces: bool = True,
    stress: bool = False,
    create_graph: bool = False,
    energy_key: str = "energy",
) -> dict[str, torch.Tensor]:
    """Energies of a structure model and their exact derivatives.

    ``forces = -dE/dpositions``; ``stress = (1/V) dE/d(strain)`` (eV/Å³, ASE sign
    convention), obtained by applying a homogeneous deformation ``(I + eps)`` to positions
    and cell. Stress is only defined for fully periodic structures (NaN elsewhere).
    A model with its own ``energy_and_forces`` method (e.g. :class:`ECSE`, which
    back-propagates frame by frame to save memory) is delegated to.

    Args:
        model: structure model; returns ``(S,)`` energies, or a dict holding them under
            ``energy_key``.
        positions, numbers, cell, pbc, batch: see the module docstring.
        forces: compute forces (default: True).
        stress: compute the stress tensor (default: False).
        create_graph: keep the graph of the derivatives (needed to train on forces).
        energy_key: dict key of the energy output (default: "energy").

    Returns:
        dict with ``"energy"`` ``(S,)`` and, when requested, ``"forces"`` ``(N, 3)`` and
        ``"stress"`` ``(S, 3, 3)``.
    """
    method = getattr(model, "energy_and_forces", None)
    if callable(method):
        return method(positions, numbers, cell, pbc, batch, forces=forces, stress=stress,
                      create_graph=create_graph, energy_key=energy_key)
    return autograd_energy_forces(model, positions, numbers, cell, pbc, batch, forces=forces, stress=stress,
                                  create_graph=create_graph, energy_key=energy_key)


@renamed_kwargs(species="numbers")
def autograd_energy_forces(
    model: Callable[..., Any],
    positions: torch.Tensor,
    numbers: torch.Tensor,
    cell: torch.Tensor | None = None,
    pbc: torch.Tensor | None = None,
    batch: torch.Tensor | None = None,
    *,
    forces: bool = True,
    stress: bool = False,
    create_graph: bool = False,
    energy_key: str = "energy",
) -> dict[str, torch.Tensor]:
    """:func:`energy_and_forces` by plain autograd through ``model`` (never delegates).

    The inputs are validated here, once; ``model`` is called inside :func:`trusted_inputs`.
    """
    positions, numbers, cell, pbc, batch = check_structure_inputs(positions, numbers, cell, pbc, batch)
    need_grad = forces or stress
    leaf = positions.detach().clone().requires_grad_(True) if need_grad else positions
    with torch.enable_grad() if need_grad else torch.no_grad():
        pos, cel, strain = strained_inputs(leaf, cell, batch, stress)
        with trusted_inputs():
            out = model(pos, numbers, cel, pbc, batch)
        energy = out[energy_key] if isinstance(out, dict) else out
        result = {"energy": energy}
        if not need_grad:
            return result
        wrt = [leaf] + ([strain] if strain is not None else [])
        if not energy.requires_grad:  # a constant model: zero derivatives
            grads: list[torch.Tensor | None] = [None] * len(wrt)
        else:
            grads = list(torch.autograd.grad(energy.sum(), wrt, create_graph=create_graph, allow_unused=True))
    if forces:
        result["forces"] = -grads[0] if grads[0] is not None else torch.zeros_like(positions)
    if stress:
        result["stress"] = strain_to_stress(grads[-1] if grads[-1] is not None else torch.zeros_like(cell), cell, pbc)
    return result


def strained_inputs(
    positions: torch.Tensor, cell: torch.Tensor, batch: torch.Tensor, stress: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Positions ``(N, 3)`` and cells ``(S, 3, 3)`` under the homogeneous deformation ``(I + eps)``.

    With ``stress`` a zero strain ``eps`` ``(S, 3, 3)`` requiring grad is created and applied
    (``x -> x (I + eps)`` per structure, cells likewise), so ``dE/d(eps)`` at ``eps = 0`` gives
    the stress through :func:`strain_to_stress`; without it the inputs are returned unchanged
    and the strain is ``None``. Call it with gradients enabled.
    """
    if not stress:
        return positions, cell, None
    strain = torch.zeros_like(cell).requires_grad_(True)
    pos = positions + torch.einsum("nk,nkl->nl", positions, strain[batch])
    return pos, cell + torch.bmm(cell, strain), strain


def strain_to_stress(d_strain: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """``dE/d(strain) / V`` for fully periodic structures, NaN for the others."""
    volume = torch.abs(torch.linalg.det(cell))
    periodic = pbc.all(dim=1) & (volume > 0)
    safe_v = torch.where(periodic, volume, torch.ones_like(volume))
    st = d_strain / safe_v[:, None, None]
    return torch.where(periodic[:, None, None], st, torch.full_like(st, float("nan")))


def predict_structures(
    model: Callable[..., Any],
    frames: Any,
    *,
    forces: bool = True,
    stress: bool = False,
    dtype: torch.dtype | None = None,
    device: Any = None,
    batch_size: int = 16,
    energy_key: str = "energy",
) -> dict[str, np.ndarray]:
    """Energies (and forces/stress) of ``ase.Atoms`` with a structure model, as numpy.

    Structures are processed ``batch_size`` at a time.

    Returns:
        dict with ``"energy"`` ``(S,)`` eV, ``"forces"`` ``(N, 3)`` eV/Å (all atoms of all
        structures, in input order), ``"stress"`` ``(S, 3, 3)`` eV/Å³ and ``"batch"``
        ``(N,)`` structure index of each atom.
    """
    if _is_atoms(frames):
        frames = [frames]
    param = next(iter(model.parameters()), None) if isinstance(model, torch.nn.Module) else None
    dtype = dtype or (param.dtype if param is not None else torch.float64)
    device = device or (param.device if param is not None else "cpu")
    out: dict[str, list[np.ndarray]] = {"energy": [], "forces": [], "stress": [], "batch": []}
    offset = 0
    for start in range(0, len(frames), batch_size):
        chunk = frames[start:start + batch_size]
        b = batch_structures(chunk, dtype=dtype, device=device)
        res = energy_and_forces(model, **b.inputs(), forces=forces, stress=stress, energy_key=energy_key)
        out["energy"].append(res["energy"].detach().cpu().double().numpy())
        if forces:
            out["forces"].append(res["forces"].detach().cpu().double().numpy())
        if stress:
            out["stress"].append(res["stress"].detach().cpu().double().numpy())
        out["batch"].append(b.batch.cpu().numpy() + offset)
        offset += len(chunk)
    return {k: np.concatenate(v) for k, v in out.items() if v}


def composition_baseline(
    batch: StructureBatch, species: Sequence[int], *, alpha: float = 1e-10
) -> tuple[np.ndarray, float]:
    """Per-species self energies and an energy scale from labelled structures.

    Self energies: ridge regression (``alpha``, no intercept) of total energies on the
    composition counts. Scale: RMS of the force components (eV/Å times 1 Å), or the std
    of the residual energy per atom when no forces are present.

    Args:
        batch: labelled :class:`StructureBatch`.
        species: the model's sorted atomic numbers.

    Returns:
        ``(self_energies (n_species,), scale)`` in eV.
    """
    if batch.energy is None:
        raise ValueError("A composition baseline needs reference energies (batch_structures(..., labels=True)).")
    species = list(species)
    z = batch.numbers.cpu().numpy()
    unknown = sorted(set(z.tolist()) - set(species))
    if unknown:
        raise ValueError(f"Species {unknown} are not in the model's species {species}.")
    col = np.searchsorted(species, z)
    counts = np.zeros((batch.n_structures, len(species)))
    np.add.at(counts, (batch.batch.cpu().numpy(), col), 1.0)
    y = batch.energy.double().cpu().numpy()
    coef = np.linalg.solve(counts.T @ counts + alpha * np.eye(len(species)), counts.T @ y)
    if batch.forces is not None and batch.forces.numel():
        scale = float(np.sqrt(np.mean(batch.forces.double().cpu().numpy() ** 2)))
    else:
        scale = float(np.std((y - counts @ coef) / counts.sum(1)))
    return coef, scale if scale > 0 else 1.0
