"""A deliberately non-equivariant reference model: an MLP on Cartesian neighbour vectors.

Used to show that :class:`~pointsym.symmetrize.ECSE` works for *any* model and as the
negative control of the equivariance tests: the bare model is translation and permutation
invariant and smooth, but feeds raw ``(x, y, z)`` components to an MLP, so it is not
rotation invariant (nor equivariant for its vector outputs).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pointsym.core import CheckpointMixin, check_int, check_positive, parse_species, renamed_kwargs
from pointsym.structures import (
    MIN_DISTANCE,
    StructureBatch,
    batch_structures,
    batched_neighbor_list,
    check_structure_inputs,
    composition_baseline,
)

__all__ = ["NeighborMLP"]


class NeighborMLP(CheckpointMixin, nn.Module):
    """Per-atom MLP on the sum of cutoff-weighted features of Cartesian neighbour vectors.

    ``h_i = sum_j f_c(r_ij) phi([x_ij, y_ij, z_ij, e(Z_i), e(Z_j)])``;
    ``atom_energy_i = scale * rho(h_i) + b_{Z_i}``;
    ``atom_vector_i = sum_j f_c(r_ij) g([x_ij, ..]) r_ij`` with scalar MLP heads ``phi``, ``rho``,
    ``g`` and a cosine cutoff ``f_c`` over ``[r_cut - cutoff_delta, r_cut]``.

    Args:
        r_cut: neighbour cutoff, Å.
        hidden: width of the MLPs (default: 32).
        n_features: size of ``h_i`` (default: 16).
        cutoff_delta: width of the cosine cutoff, Å (default: 0.5).
        species: the elements with fitted self energies, symbols or atomic numbers
            (default: every element seen by :meth:`fit_baseline`).
        min_distance: overlapping-atom threshold, Å (default: 0.1).

    Shapes:
        ``forward(positions (N, 3), numbers (N,), cell, pbc, batch)`` -> dict with
        ``energy (S,)``, ``vector (S, 3)``, ``atom_energy (N,)``, ``atom_vector (N, 3)``.
    """

    OUTPUTS = {"energy": "scalar", "vector": "vector", "atom_energy": "atom_scalar", "atom_vector": "atom_vector"}

    def __init__(self, r_cut: float, hidden: int = 32, n_features: int = 16, *, cutoff_delta: float = 0.5,
                 species: Any = None, min_distance: float = MIN_DISTANCE) -> None:
        super().__init__()
        self.r_cut = check_positive("r_cut", r_cut)
        self.hidden = check_int("hidden", hidden, minimum=1)
        self.n_features = check_int("n_features", n_features, minimum=1)
        self.cutoff_delta = check_positive("cutoff_delta", cutoff_delta)
        if self.cutoff_delta > self.r_cut:
            raise ValueError(f"Expected 'cutoff_delta' <= 'r_cut' (got {cutoff_delta} > {r_cut}).")
        self.min_distance = min_distance
        self.species = parse_species(species) if species is not None else None
        emb = 4
        self.embedding = nn.Embedding(119, emb)
        self.phi = nn.Sequential(nn.Linear(3 + 2 * emb, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, n_features))
        self.rho = nn.Sequential(nn.Linear(n_features, hidden), nn.SiLU(), nn.Linear(hidden, 1))
        self.gate = nn.Sequential(nn.Linear(3 + 2 * emb, hidden), nn.SiLU(), nn.Linear(hidden, 1))
        self.register_buffer("self_energies", torch.zeros(119))
        self.register_buffer("energy_scale", torch.ones(()))

    @property
    def hypers(self) -> dict[str, Any]:
        """Constructor arguments (``NeighborMLP(**m.hypers)`` rebuilds the architecture)."""
        return {"r_cut": self.r_cut, "hidden": self.hidden, "n_features": self.n_features,
                "cutoff_delta": self.cutoff_delta, "species": self.species, "min_distance": self.min_distance}

    def reset_parameters(self) -> None:
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    @torch.no_grad()
    def fit_baseline(self, frames: Any) -> NeighborMLP:
        """Self energies and output scale from labelled structures (see :meth:`PET.fit_baseline`)."""
        b = frames if isinstance(frames, StructureBatch) else batch_structures(frames, dtype=torch.float64,
                                                                               labels=True)
        species = self.species or sorted(set(b.numbers.tolist()))
        coef, scale = composition_baseline(b, species)
        self.self_energies.zero_()
        self.self_energies[torch.tensor(species)] = torch.as_tensor(coef, dtype=self.self_energies.dtype)
        self.energy_scale.fill_(scale)
        return self

    def extra_repr(self) -> str:
        return f"r_cut={self.r_cut}, hidden={self.hidden}, n_features={self.n_features} (not rotation-equivariant)"

    #: Locality protocol (see :mod:`pointsym.symmetrize`): outputs of an atom depend only on
    #: the atoms within ``r_cut``, so ``ECSE(model, r_cut, mode="atom")`` is allowed.
    is_local = True

    def atomic_outputs_local(self, center_numbers: torch.Tensor, edge_vectors: torch.Tensor,
                             edge_numbers: torch.Tensor, edge_center: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-environment outputs of ``M`` isolated environments (the locality protocol).

        Environment ``m``: centre ``center_numbers[m]``, edges ``e`` with ``edge_center[e] == m``
        (vectors ``edge_vectors[e]`` from the centre, neighbour numbers ``edge_numbers[e]``).
        Returns one row per environment for every key of :attr:`OUTPUTS`: the atom's own
        outputs, and its contributions to the structure outputs (``energy``, ``vector``).
        """
        r = torch.sqrt((edge_vectors ** 2).sum(1) + 1e-15)
        x = torch.clamp((r - (self.r_cut - self.cutoff_delta)) / self.cutoff_delta, 0.0, 1.0)
        fc = 0.5 + 0.5 * torch.cos(torch.pi * x)
        inp = torch.cat([edge_vectors, self.embedding(center_numbers[edge_center]), self.embedding(edge_numbers)],
                        dim=1)
        n = center_numbers.shape[0]
        h = edge_vectors.new_zeros(n, self.n_features).index_add(0, edge_center, fc[:, None] * self.phi(inp))
        atom_energy = self.rho(h)[:, 0] * self.energy_scale + self.self_energies[center_numbers]
        atom_vector = edge_vectors.new_zeros(n, 3).index_add(0, edge_center,
                                                             (fc * self.gate(inp)[:, 0])[:, None] * edge_vectors)
        return {"energy": atom_energy, "vector": atom_vector, "atom_energy": atom_energy, "atom_vector": atom_vector}

    @renamed_kwargs(species="numbers")
    def forward(self, positions: torch.Tensor, numbers: torch.Tensor, cell: torch.Tensor | None = None,
                pbc: Any = None, batch: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        positions, numbers, cell, pbc, batch = check_structure_inputs(positions, numbers, cell, pbc, batch)
        if int(numbers.min()) < 1 or int(numbers.max()) > 118:
            raise ValueError(f"'numbers' must be atomic numbers in [1, 118] (got {int(numbers.min())}.."
                             f"{int(numbers.max())}).")
        i, j, _, vec = batched_neighbor_list(positions, cell, pbc, batch, r_cut=self.r_cut,
                                             min_distance=self.min_distance)
        local = self.atomic_outputs_local(numbers, vec, numbers[j], i)
        atom_energy, atom_vector = local["atom_energy"], local["atom_vector"]
        n_struct = cell.shape[0]
        return {
            "energy": atom_energy.new_zeros(n_struct).index_add(0, batch, atom_energy),
            "vector": atom_vector.new_zeros(n_struct, 3).index_add(0, batch, atom_vector),
            "atom_energy": atom_energy,
            "atom_vector": atom_vector,
        }
