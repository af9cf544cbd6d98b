"""Atom-centred CSNN density-of-states model (spec ``csnn.md`` section 5, ``dos/model.py`` of the reference).

Every atom's environment is a concentric spherical fingerprint ``(1, V_L, C)``
(:func:`pointsym.nn.atomic_environment_grid`: one shell whose ``C = n_bins`` radial bins are
the channels). The network, applied to all atoms of a batch at once:

1. for ``i = 0 ... L-1`` at level ``L - i``: intra-sphere (graph) layers, co-radial layers
   (kernel 1, i.e. point-wise), mean-pool to level ``L - i - 1``;
2. at level 0 (12 vertices): intra-sphere layers, mean over the 12 vertices, co-radial layers,
   mean over the shell axis -> an invariant per-atom feature vector;
3. per-atom head: (linear -> batch norm -> ReLU) for each hidden size, linear to the
   ``n_energies`` bins -> batch norm -> ReLU (a non-negative atomic DOS), then the 1-D
   smoothing convolution over energies (Conv1d 1 -> 3 channels, kernel 3, padding 1 -> ReLU ->
   mean over the 3 channels);
4. the structure's per-atom DOS is the mean of its atoms' DOS.

Atoms of a batch are concatenated (``batch`` gives each atom's structure), never padded, so the
head's batch norm sees only real atoms: the reference's padded-atom statistics (spec pitfall 7)
do not arise, and results differ from the reference's by that much.

Every stage before the vertex mean is equivariant to the 60 icosahedral rotations (they permute
the vertex axis), so the predicted DOS is invariant (up to round-off) when a structure is rotated
by one of them; for other rotations only approximately. The training loss is
:func:`pointsym.electronic.dos_loss`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pointsym.core import CheckpointMixin, check_choice, check_int, check_positive, parse_species
from pointsym.geometry import icosphere_size
from pointsym.models.csnn import _int_list  # one per-block list check for both CSNN models
from pointsym.nn import CoRadialLayer, GlobalPool, IcoPool, IntraSphereLayer, atomic_environment_grid

__all__ = ["CSNNDOS", "structure_mean"]


def structure_mean(values: torch.Tensor, batch: Any = None, n_structures: int | None = None) -> torch.Tensor:
    """Mean of per-atom rows over each structure: ``(A, ...) -> (S, ...)``.

    Args:
        values: ``(A, ...)`` per-atom values (atoms of all structures concatenated).
        batch: ``(A,)`` integer structure index of every row in ``[0, S)`` (``None``: one structure).
        n_structures: ``S`` (default ``batch.max() + 1``); every structure needs at least one row.

    Raises:
        ValueError: bad ``batch`` shape or dtype, negative or too large indices, an empty structure.
    """
    n_rows = values.shape[0]
    if n_rows == 0:
        raise ValueError("No atoms to average; pass at least one atom per structure.")
    if batch is None:
        batch = torch.zeros(n_rows, dtype=torch.long, device=values.device)
    else:
        batch = torch.as_tensor(batch, device=values.device)
        if batch.is_floating_point() or batch.dtype == torch.bool or batch.shape != (n_rows,):
            raise ValueError(f"Expected 'batch' to be an integer tensor of shape ({n_rows},), one structure index "
                             f"per atom (got dtype {batch.dtype}, shape {tuple(batch.shape)}).")
        batch = batch.long()
    if int(batch.min()) < 0:
        raise ValueError(f"'batch' has negative structure indices (min {int(batch.min())}).")
    n_s = int(batch.max()) + 1 if n_structures is None else check_int("n_structures", n_structures, minimum=1)
    if int(batch.max()) >= n_s:
        raise ValueError(f"'batch' refers to structure {int(batch.max())} but 'n_structures'={n_s}.")
    counts = torch.bincount(batch, minlength=n_s)
    if bool((counts == 0).any()):
        empty = int(torch.nonzero(counts == 0)[0, 0])
        raise ValueError(f"Structure {empty} has no atoms in 'batch'; every structure needs at least one atom "
                         "(or lower 'n_structures').")
    total = values.new_zeros((n_s, *values.shape[1:])).index_add(0, batch, values)
    return total / counts.to(values.dtype).reshape(n_s, *([1] * (values.dim() - 1)))


class _VertexMean(nn.Module):
    """Mean over the vertex axis, keeping it: ``(B, R, V, F) -> (B, R, 1, F)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=-2, keepdim=True)


class _Smoothing(nn.Module):
    """Conv1d(1 -> 3, kernel 3, padding 1) -> ReLU -> mean over the 3 channels: ``(A, n_E) -> (A, n_E)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 3, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x.unsqueeze(1))).mean(dim=1)


class CSNNDOS(CheckpointMixin, nn.Module):
    """CSNN density-of-states model: per-atom fingerprints -> per-atom DOS -> structure DOS (per atom).

    The defaults are the reference carbon model (level 3, 32 radial bins, graph widths
    [32, 64, 128, 256], co-radial widths [64, 128, 256, 512], head 512, 310 energies on
    -30.0 ... 0.9 eV). A CPU-sized model is e.g. ``CSNNDOS(level=2, n_bins=8, n_energies=64,
    base_width=16, hidden=(64, 64))`` (graph widths 16/32/64).

    Args:
        level: icosphere level ``L`` of the input grids (``V = 10 * 4**L + 2``).
        n_bins: radial bins of the fingerprint (input channels per neighbour element).
        n_energies: energy bins of the predicted DOS.
        species: optional element list: one fingerprint grid per neighbour element
            (see :func:`pointsym.nn.atomic_environment_grid`), ``n_bins * len(species)``
            input channels. ``None`` (default): all neighbours in one grid.
        r_min, r_cut, scaling: the fingerprint used by :meth:`forward_structures` (Å; reference
            1, 7, ``"inverse"``).
        e_min, e_step: first energy and spacing of the DOS grid, eV (reference -30, 0.1); only
            used by :attr:`energies`.
        base_width: graph channels of the first block; block ``i`` has ``base_width * 2**i``
            graph and twice as many co-radial channels (default 32).
        gconv_dims, radial_dims: explicit channels per block (``L + 1`` entries each).
        gconv_layers, radial_layers: layers per block (default 2 each, the last block 1 each).
        radial_kernel: odd co-radial kernel size (reference 1; the input has one shell).
        pool: neighbourhood pooling between levels, ``"mean"`` (reference) or ``"max"``.
        hidden: hidden sizes of the per-atom head (reference (512, 512)).
        dropout: dropout after the head's last ReLU (reference 0).
        smoothing: apply the 1-D smoothing convolution over energies (reference True).

    Shapes:
        ``forward(grid (A, 1, V, C), batch (A,), n_structures=None) -> (S, n_energies)``;
        ``forward_atoms(grid) -> (A, n_energies)``;
        ``forward_structures(positions, numbers, cell, pbc, batch) -> (S, n_energies)``.
        Outputs are non-negative, states/eV/atom.
    """

    def __init__(
        self,
        level: int = 3,
        n_bins: int = 32,
        n_energies: int = 310,
        *,
        species: Any = None,
        r_min: float = 1.0,
        r_cut: float = 7.0,
        scaling: str = "inverse",
        e_min: float = -30.0,
        e_step: float = 0.1,
        base_width: int = 32,
        gconv_dims: Sequence[int] | None = None,
        radial_dims: Sequence[int] | None = None,
        gconv_layers: Sequence[int] | None = None,
        radial_layers: Sequence[int] | None = None,
        radial_kernel: int = 1,
        pool: str = "mean",
        hidden: Sequence[int] = (512, 512),
        dropout: float = 0.0,
        smoothing: bool = True,
    ) -> None:
        super().__init__()
        self.level = check_int("level", level, minimum=0, maximum=6)
        self.n_bins = check_int("n_bins", n_bins, minimum=1)
        self.n_energies = check_int("n_energies", n_energies, minimum=1)
        self.species = None if species is None else parse_species(species)
        self.n_channels = self.n_bins * (1 if self.species is None else len(self.species))
        self.r_min = check_positive("r_min", r_min, allow_zero=True)
        self.r_cut = check_positive("r_cut", r_cut)
        if self.r_cut <= self.r_min:
            raise ValueError(f"Expected 'r_cut' > 'r_min' (got r_cut={r_cut}, r_min={r_min}).")
        self.scaling = check_choice("scaling", scaling, ("inverse", "inverse_square", "none"))
        if isinstance(e_min, bool) or not isinstance(e_min, (int, float)):
            raise TypeError(f"Expected 'e_min' to be a number in eV (got {e_min!r}).")
        self.e_min = float(e_min)
        self.e_step = check_positive("e_step", e_step)
        base_width = check_int("base_width", base_width, minimum=1)
        n_blocks = self.level + 1
        self.n_vertices = icosphere_size(self.level)
        self.gconv_dims = _int_list("gconv_dims", gconv_dims, n_blocks, [base_width * 2**i for i in range(n_blocks)], 1)
        self.radial_dims = _int_list("radial_dims", radial_dims, n_blocks,
                                     [2 * base_width * 2**i for i in range(n_blocks)], 1)
        self.gconv_layers = _int_list("gconv_layers", gconv_layers, n_blocks, [2] * self.level + [1], 1)
        self.radial_layers = _int_list("radial_layers", radial_layers, n_blocks, [2] * self.level + [1], 1)
        radial_kernel = check_int("radial_kernel", radial_kernel, minimum=1)
        pool = check_choice("pool", pool, ("mean", "max"))
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise TypeError(f"Expected 'hidden' to be a sequence of layer widths (got {hidden!r}).")
        hidden = [check_int(f"hidden[{i}]", h, minimum=1) for i, h in enumerate(hidden)]
        dropout = check_positive("dropout", dropout, allow_zero=True)
        if dropout >= 1:
            raise ValueError(f"Expected 'dropout' in [0, 1) (got {dropout}).")
        self._hypers = {
            "level": self.level, "n_bins": self.n_bins, "n_energies": self.n_energies, "species": self.species,
            "r_min": self.r_min, "r_cut": self.r_cut, "scaling": self.scaling, "e_min": self.e_min,
            "e_step": self.e_step, "base_width": base_width, "gconv_dims": list(self.gconv_dims),
            "radial_dims": list(self.radial_dims), "gconv_layers": list(self.gconv_layers),
            "radial_layers": list(self.radial_layers), "radial_kernel": radial_kernel, "pool": pool,
            "hidden": list(hidden), "dropout": float(dropout), "smoothing": bool(smoothing),
        }

        self.blocks = nn.ModuleList()
        self.pools = nn.ModuleList()
        f_in = self.n_channels
        for i in range(n_blocks):
            lvl = self.level - i
            layers: list[nn.Module] = []
            for j in range(self.gconv_layers[i]):
                layers.append(IntraSphereLayer(f_in if j == 0 else self.gconv_dims[i], self.gconv_dims[i], lvl))
            if lvl == 0:
                layers.append(_VertexMean())  # base block: mean over the 12 vertices before the co-radial layers
            for j in range(self.radial_layers[i]):
                layers.append(CoRadialLayer(self.gconv_dims[i] if j == 0 else self.radial_dims[i],
                                            self.radial_dims[i], radial_kernel))
            self.blocks.append(nn.Sequential(*layers))
            if lvl > 0:
                self.pools.append(IcoPool(lvl, pool))
            f_in = self.radial_dims[i]
        self.readout = GlobalPool("mean")  # over the shell axis (and the single remaining vertex)
        head: list[nn.Module] = []
        width = self.radial_dims[-1]
        for h in hidden:
            head += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU()]
            width = h
        head += [nn.Linear(width, self.n_energies), nn.BatchNorm1d(self.n_energies), nn.ReLU(), nn.Dropout(dropout)]
        self.head = nn.Sequential(*head)
        self.smoothing = _Smoothing() if smoothing else None

    @property
    def hypers(self) -> dict[str, Any]:
        """Constructor arguments (per-block widths made explicit); ``CSNNDOS(**m.hypers)`` rebuilds it."""
        return json.loads(json.dumps(self._hypers))

    @property
    def energies(self) -> torch.Tensor:
        """``(n_energies,)`` float64 energies of the output bins, eV: ``e_min + k * e_step``."""
        return self.e_min + self.e_step * torch.arange(self.n_energies, dtype=torch.float64)

    def reset_parameters(self) -> None:
        for m in self.modules():
            reset = getattr(m, "reset_parameters", None)
            if m is not self and callable(reset):
                reset()

    def _check_grid(self, grid: Any) -> None:
        want = (1, self.n_vertices, self.n_channels)
        if not isinstance(grid, torch.Tensor) or grid.ndim != 4 or tuple(grid.shape[1:]) != want:
            got = tuple(grid.shape) if isinstance(grid, torch.Tensor) else type(grid).__name__
            raise ValueError(f"Expected 'grid' of shape (n_atoms, 1, {want[1]}, {want[2]}) (level {self.level}, "
                             f"{self.n_channels} channels) (got {got}); build it with "
                             "pointsym.nn.atomic_environment_grid with this model's level, n_bins and species.")
        if not grid.is_floating_point():
            raise TypeError(f"Expected 'grid' to be floating point (got dtype {grid.dtype}).")

    def embed_atoms(self, grid: torch.Tensor) -> torch.Tensor:
        """Invariant per-atom features ``(A, radial_dims[-1])`` of fingerprints ``(A, 1, V, C)``."""
        self._check_grid(grid)
        h = grid
        pools: list[nn.Module | None] = [*self.pools, None]  # no pooling after the level-0 block
        for block, pool in zip(self.blocks, pools):
            h = block(h)
            if pool is not None:
                h = pool(h)
        return self.readout(h)

    def forward_atoms(self, grid: torch.Tensor) -> torch.Tensor:
        """Per-atom DOS ``(A, n_energies)`` (non-negative, states/eV) of fingerprints ``(A, 1, V, C)``."""
        out = self.head(self.embed_atoms(grid))
        return out if self.smoothing is None else self.smoothing(out)

    def forward(self, grid: torch.Tensor, batch: Any = None, n_structures: int | None = None) -> torch.Tensor:
        """Per-atom DOS of each structure ``(S, n_energies)``: the mean over its atoms of :meth:`forward_atoms`.

        Args:
            grid: ``(A, 1, V, C)`` fingerprints of the atoms of all structures, concatenated.
            batch: ``(A,)`` int structure index of every atom in ``[0, S)`` (``None``: one structure).
            n_structures: ``S`` (default ``batch.max() + 1``); every structure needs an atom.
        """
        self._check_grid(grid)
        if grid.shape[0] == 0:
            raise ValueError("'grid' has no atoms; pass at least one atom per structure.")
        return structure_mean(self.forward_atoms(grid), batch, n_structures)

    def forward_structures(self, positions: Any, numbers: Any, cell: Any = None, pbc: Any = None,
                           batch: Any = None) -> torch.Tensor:
        """Per-atom DOS ``(S, n_energies)`` of structures (the fingerprint is built with this model's settings).

        Arguments as :func:`pointsym.nn.atomic_environment_grid`; the grid is computed in the
        dtype of the model's parameters.
        """
        param = next(self.parameters())
        if isinstance(positions, torch.Tensor):
            positions = positions.to(device=param.device, dtype=param.dtype)
        else:
            positions = torch.as_tensor(positions, dtype=param.dtype, device=param.device)
        grid = atomic_environment_grid(positions, numbers, cell, pbc, batch, level=self.level, n_bins=self.n_bins,
                                       r_min=self.r_min, r_cut=self.r_cut, scaling=self.scaling,
                                       species=self.species)
        n_s = None if batch is None else int(torch.as_tensor(batch).max()) + 1
        if cell is not None and torch.as_tensor(cell).ndim == 3:
            n_s = int(torch.as_tensor(cell).shape[0])
        return self.forward(grid, batch, n_s)

    def extra_repr(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return (f"level={self.level}, n_bins={self.n_bins}, n_energies={self.n_energies}, species={self.species}, "
                f"gconv_dims={self.gconv_dims}, radial_dims={self.radial_dims}, parameters={n:,}")
