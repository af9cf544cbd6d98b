"""Point Edge Transformer (PET): a smooth, unconstrained graph transformer for atoms.

PET (Pozdnyakov & Ceriotti, NeurIPS 2023, arXiv:2305.19302) feeds the raw Cartesian
neighbour vectors of every atom, together with messages from the previous block, to a
transformer whose attention is modulated by a smooth cutoff. It is translation and
permutation invariant and smooth, but **not** rotationally invariant: it learns rotations
from augmentation, and becomes exactly O(3)-invariant when wrapped by
:class:`pointsym.symmetrize.ECSE`.

Architecture (``ecse_pet.md`` Part A): ``n_gnn_layers`` blocks; in block ``k`` every edge
``i -> j`` gets a token ``t_ij = MLP([Linear([r_ij, |r_ij|]) ; m_ij])`` (``m_ij`` = neighbour
species embedding in block 1, then the reverse-edge output of the previous block,
``m_ij <- 0.5 (m_ij + o_ji)``); the sequence ``[c_i, t_i1, ..., t_iM]`` (``c_i`` a species
token of the centre) goes through ``n_trans_layers`` cutoff-modulated transformer layers;
each block adds ``H_a(c_i) + sum_j f_c(r_ij) H_b(o_ij)`` to the atomic energy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from pointsym.core import CheckpointMixin, check_int, renamed_kwargs, warn_deprecated
from pointsym.core.species import parse_species as _parse_species
from pointsym.models._pet_layers import PETBlock, check_pet_hypers, local_block_outputs, pet_graph, run_pet_blocks
from pointsym.structures import (
    MIN_DISTANCE,
    StructureBatch,
    batch_structures,
    check_structure_inputs,
    composition_baseline,
    predict_structures,
)

__all__ = ["PET"]


def __getattr__(name: str) -> Any:
    if name == "parse_species":  # deprecated alias, one release
        warn_deprecated("pointsym.models.pet.parse_species is deprecated, use pointsym.core.parse_species",
                        stacklevel=2)
        return _parse_species
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class PET(CheckpointMixin, nn.Module):
    """Point Edge Transformer predicting energies (eV) of molecules and periodic crystals.

    Args:
        species: atomic numbers or symbols the model handles (e.g. ``["H", "C"]``).
        r_cut: neighbour cutoff in Å (choose about 20 neighbours per atom).
        d_model: token width (default: 128).
        n_gnn_layers: message-passing blocks (default: 3).
        n_trans_layers: transformer layers per block (default: 3).
        n_heads: attention heads (default: 4).
        dim_feedforward: transformer feed-forward width (default: 512).
        head_hidden: width of the readout MLPs (default: 128).
        cutoff_delta: width of the cosine cutoff, Å (default: 0.2).
        residual_factor: ``rho`` in ``m <- rho (m + o_reverse)`` (default: 0.5).
        transformer_type: ``"post_ln"`` (default) or ``"pre_ln"``.
        use_bond_heads: add the edge readout (default: True).
        use_only_length: embed edges from their length only, which makes the model exactly
            rotation invariant (and less expressive); used as ECSE's auxiliary model.
        min_distance: atoms closer than this (Å) are rejected as overlapping (default: 0.1).

    Shapes (see :mod:`pointsym.structures` for the structure-model convention):
        ``forward(positions (N, 3), numbers (N,), cell (S, 3, 3) | (3, 3) | None,
        pbc (S, 3) | bool | None, batch (N,) | None) -> energies (S,)``.

    Example:
        >>> import ase, torch
        >>> from pointsym.models.pet import PET  # also exported as pointsym.models.PET
        >>> model = PET(["H", "C"], r_cut=3.0, d_model=16, n_gnn_layers=1, n_trans_layers=1,
        ...             dim_feedforward=32, head_hidden=16)
        >>> ch4 = ase.Atoms("CH4", positions=[[0, 0, 0], [.63, .63, .63], [-.63, -.63, .63],
        ...                                   [-.63, .63, -.63], [.63, -.63, -.63]])
        >>> out = model.predict(ch4)
        >>> out["energy"].shape, out["forces"].shape
        ((1,), (5, 3))
    """

    def __init__(
        self,
        species: Any,
        r_cut: float,
        d_model: int = 128,
        n_gnn_layers: int = 3,
        n_trans_layers: int = 3,
        *,
        n_heads: int = 4,
        dim_feedforward: int = 512,
        head_hidden: int = 128,
        cutoff_delta: float = 0.2,
        residual_factor: float = 0.5,
        transformer_type: str = "post_ln",
        use_bond_heads: bool = True,
        use_only_length: bool = False,
        min_distance: float = MIN_DISTANCE,
    ) -> None:
        super().__init__()
        check_pet_hypers(d_model, n_gnn_layers, n_heads, cutoff_delta, r_cut, residual_factor, transformer_type)
        self.species = _parse_species(species)
        self.r_cut = float(r_cut)
        self.d_model = int(d_model)
        self.n_gnn_layers = int(n_gnn_layers)
        self.n_trans_layers = check_int("n_trans_layers", n_trans_layers, minimum=1)
        self.n_heads = int(n_heads)
        self.dim_feedforward = check_int("dim_feedforward", dim_feedforward, minimum=1)
        self.head_hidden = check_int("head_hidden", head_hidden, minimum=1)
        self.cutoff_delta = float(cutoff_delta)
        self.residual_factor = float(residual_factor)
        self.transformer_type = transformer_type
        self.use_bond_heads = bool(use_bond_heads)
        self.use_only_length = bool(use_only_length)
        self.min_distance = float(min_distance)
        n_sp = len(self.species)
        lookup = torch.full((max(self.species) + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(self.species)] = torch.arange(n_sp)
        self.register_buffer("species_index", lookup, persistent=False)
        # Per-species reference energies (eV) and the scale (eV) of the network output.
        self.register_buffer("self_energies", torch.zeros(n_sp))
        self.register_buffer("energy_scale", torch.ones(()))
        self.neighbor_embedding = nn.Embedding(n_sp + 1, self.d_model)
        self.blocks = nn.ModuleList(
            PETBlock(n_sp, self.d_model, self.n_trans_layers, self.n_heads, self.dim_feedforward, self.head_hidden, 1,
                     use_only_length=self.use_only_length, pre_ln=transformer_type == "pre_ln",
                     use_bond_heads=self.use_bond_heads)
            for _ in range(self.n_gnn_layers)
        )

    # ------------------------------------------------------------------ construction helpers
    @property
    def hypers(self) -> dict[str, Any]:
        """Constructor arguments; ``PET(**model.hypers)`` rebuilds the architecture."""
        return {
            "species": list(self.species), "r_cut": self.r_cut, "d_model": self.d_model,
            "n_gnn_layers": self.n_gnn_layers, "n_trans_layers": self.n_trans_layers, "n_heads": self.n_heads,
            "dim_feedforward": self.dim_feedforward, "head_hidden": self.head_hidden,
            "cutoff_delta": self.cutoff_delta, "residual_factor": self.residual_factor,
            "transformer_type": self.transformer_type, "use_bond_heads": self.use_bond_heads,
            "use_only_length": self.use_only_length, "min_distance": self.min_distance,
        }

    def reset_parameters(self) -> None:
        """Re-initialise all weights (keeps ``self_energies`` and ``energy_scale``)."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def extra_repr(self) -> str:
        n_params = sum(p.numel() for p in self.parameters())
        return (f"species={self.species}, r_cut={self.r_cut}, d_model={self.d_model}, "
                f"n_gnn_layers={self.n_gnn_layers}, n_trans_layers={self.n_trans_layers}, "
                f"use_only_length={self.use_only_length}, n_params={n_params}")

    @torch.no_grad()
    def fit_baseline(self, frames: Any, *, alpha: float = 1e-10) -> PET:
        """Fit per-species self energies and the output scale on training structures.

        Self energies: ridge regression (``alpha``, no intercept) of total energies on the
        composition counts; the network then learns the residual. ``energy_scale``: RMS of
        the force components (eV/Å, times 1 Å), or the std of residual energies per atom
        when no forces are given.

        Args:
            frames: ``ase.Atoms`` list with labels, or a labelled :class:`StructureBatch`.

        Returns:
            ``self``.
        """
        b = frames if isinstance(frames, StructureBatch) else batch_structures(frames, dtype=torch.float64,
                                                                               labels=True)
        coef, scale = composition_baseline(b, self.species, alpha=alpha)
        self.self_energies.copy_(torch.as_tensor(coef, dtype=self.self_energies.dtype))
        self.energy_scale.fill_(scale)
        return self

    def _species_to_index(self, numbers: torch.Tensor) -> torch.Tensor:
        """Row of every atom in the species tables; atomic numbers outside ``species`` raise."""
        lookup = self.species_index.to(numbers.device)
        known = (numbers >= 0) & (numbers < lookup.shape[0])
        idx = torch.where(known, lookup[numbers.clamp(0, lookup.shape[0] - 1)], torch.full_like(numbers, -1))
        if bool((idx < 0).any()):
            bad = sorted(set(numbers[idx < 0].tolist()))
            raise ValueError(f"Atomic numbers {bad} are not in this model's species {self.species}; train a model "
                             "that includes them or remove those atoms.")
        return idx

    # ------------------------------------------------------------------ locality (per-environment ECSE)
    @property
    def is_local(self) -> bool:
        """True for one message-passing block: an atom's energy then depends only on the
        atoms within ``r_cut`` of it, so ``ECSE(model, r_cut, mode="atom")`` may symmetrize
        each atomic environment on its own (see :mod:`pointsym.symmetrize`)."""
        return self.n_gnn_layers == 1

    def atomic_outputs_local(self, center_numbers: torch.Tensor, edge_vectors: torch.Tensor,
                             edge_numbers: torch.Tensor, edge_center: torch.Tensor) -> torch.Tensor:
        """Atomic energies ``(M,)`` (eV) of ``M`` isolated environments (the locality protocol).

        Environment ``m`` is a centre of atomic number ``center_numbers[m]`` and the edges
        ``e`` with ``edge_center[e] == m`` (sorted): vectors ``edge_vectors[e]`` (Å) from the
        centre to neighbours of atomic number ``edge_numbers[e]``. Edges longer than ``r_cut``
        contribute nothing. For the atoms of a structure and its neighbour list this is exactly
        :meth:`atomic_energies`. Only defined for ``n_gnn_layers == 1`` (:attr:`is_local`).
        """
        if not self.is_local:
            raise ValueError(f"PET.atomic_outputs_local needs n_gnn_layers == 1 (got {self.n_gnn_layers}): with "
                             "message passing an atom's energy depends on more than its own environment.")
        idx = self._species_to_index(center_numbers)
        messages = self.neighbor_embedding(self._species_to_index(edge_numbers))
        atom = local_block_outputs(self.blocks[0], edge_vectors, messages, idx, edge_center, self.r_cut,
                                   self.cutoff_delta)
        return atom[:, 0] * self.energy_scale + self.self_energies[idx]

    # ------------------------------------------------------------------ forward
    @renamed_kwargs(species="numbers")
    def atomic_energies(
        self,
        positions: torch.Tensor,
        numbers: torch.Tensor,
        cell: torch.Tensor | None = None,
        pbc: Any = None,
        batch: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-atom energies ``(N,)`` in eV (self energy included); inputs as :meth:`forward`."""
        return self._atomic_energies(*check_structure_inputs(positions, numbers, cell, pbc, batch))

    def _atomic_energies(self, positions: torch.Tensor, numbers: torch.Tensor, cell: torch.Tensor,
                         pbc: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """:meth:`atomic_energies` of canonical, already validated inputs (no structure checks)."""
        param = self.neighbor_embedding.weight
        if positions.dtype != param.dtype:
            raise TypeError(f"'positions' dtype {positions.dtype} differs from the model dtype {param.dtype}; "
                            f"cast the inputs or call model.to({positions.dtype}).")
        idx = self._species_to_index(numbers)
        graph = pet_graph(positions, cell, pbc, batch, r_cut=self.r_cut, cutoff_delta=self.cutoff_delta,
                          min_distance=self.min_distance)
        out = run_pet_blocks(self.blocks, graph, self.neighbor_embedding(idx[graph.neighbor]), idx,
                             self.residual_factor)
        return out[:, 0] * self.energy_scale + self.self_energies[idx]

    @renamed_kwargs(species="numbers")
    def forward(
        self,
        positions: torch.Tensor,
        numbers: torch.Tensor,
        cell: torch.Tensor | None = None,
        pbc: Any = None,
        batch: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Total energy of every structure, ``(S,)`` eV.

        The inputs are validated once here (skipped inside
        :func:`pointsym.structures.trusted_inputs`, e.g. when called by ECSE).

        Args:
            positions: ``(N, 3)`` Å, float32 or float64 (the model's dtype).
            numbers: ``(N,)`` per-atom atomic numbers, all in the model's ``species``.
            cell: ``(S, 3, 3)`` or ``(3, 3)`` lattice vectors as rows (Å), or ``None``.
            pbc: ``(S, 3)``, ``(3,)`` or a bool; ``None`` = not periodic.
            batch: ``(N,)`` structure index of each atom; ``None`` = a single structure.

        Raises:
            ValueError: atomic numbers outside ``species``, overlapping atoms, NaN, empty structures,
                bad shapes.
        """
        positions, numbers, cell, pbc, batch = check_structure_inputs(positions, numbers, cell, pbc, batch)
        atom = self._atomic_energies(positions, numbers, cell, pbc, batch)
        return atom.new_zeros(cell.shape[0]).index_add(0, batch, atom)

    def predict(
        self,
        frames: Any,
        *,
        forces: bool = True,
        stress: bool = False,
        batch_size: int = 16,
    ) -> dict[str, np.ndarray]:
        """Energies (eV), forces (eV/Å) and optionally stress (eV/Å³) of ``ase.Atoms``.

        Returns:
            dict of numpy arrays: ``energy (S,)``, ``forces (N, 3)``, ``stress (S, 3, 3)``,
            ``batch (N,)`` (see :func:`pointsym.symmetrize.predict_structures`).
        """
        return predict_structures(self, frames, forces=forces, stress=stress, batch_size=batch_size)

    # ------------------------------------------------------------------ checkpoints
    # save(path, meta=None) and from_checkpoint(path, map_location="cpu") come from
    # pointsym.core.CheckpointMixin; from_checkpoint also reads ``pointsym pet-train``
    # Trainer checkpoints (hypers in ``config.extra["model"]``), in the dtype they were trained in.

