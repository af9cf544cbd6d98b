"""Per-atom density-of-states heads and the two baseline DOS models (spec ``csnn.md`` section 5).

- :class:`DOSHead` -- the spec-5 per-atom DOS head as a module: (Linear -> BatchNorm -> ReLU) per
  hidden size, Linear to the ``n_energies`` bins -> BatchNorm -> ReLU -> Dropout, then the 1-D
  smoothing convolution over energies (Conv1d 1 -> 3, kernel 3, padding 1 -> ReLU -> mean over the
  3 channels). The same layers as the head of :class:`~pointsym.models.CSNNDOS` (whose head is an
  inline ``nn.Sequential``, so it is mirrored here; the smoothing module is reused).
- :class:`AtomwiseDOSMLP` -- the hand-crafted-descriptor baseline (AGNI-like): a per-atom SOAP
  power spectrum (:class:`pointsym.descriptors.SOAP`, DScribe keywords) -> standardisation
  (``feature_mean`` / ``feature_std`` buffers, :meth:`~AtomwiseDOSMLP.fit_scaler`) -> DOSHead.
  SOAP is rotation invariant, so the model is exactly invariant (to round-off).
- :class:`PETDOS` -- the Point Edge Transformer with a per-atom DOS head; not rotation invariant
  by construction (train with rotation augmentation; exact invariance at evaluation through
  :class:`pointsym.symmetrize.ECSE` around :meth:`PETDOS.per_atom`).
- :func:`structure_mean` -- the per-structure mean of per-atom values (the DOS per atom).

Every model predicts the per-atom DOS (states / eV / atom, non-negative) on a uniform energy grid
``e_min + k e_step``; the structure's DOS per atom is the mean of its atoms' DOS. The loss is
:func:`pointsym.electronic.dos_loss`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from pointsym.core import CheckpointMixin, check_choice, check_int, check_positive, parse_species
from pointsym.descriptors import SOAP
from pointsym.models._pet_layers import PETBlock, check_pet_hypers, local_block_outputs, pet_graph, run_pet_blocks
from pointsym.models.csnn_dos import _Smoothing, structure_mean
from pointsym.structures import MIN_DISTANCE, batched_neighbor_list, check_structure_inputs

__all__ = ["AtomwiseDOSMLP", "DOSHead", "PETDOS", "PerAtomDOS", "SOAPFeaturizer", "structure_mean"]


# ---------------------------------------------------------------------------- helpers
def _hidden(value: Any) -> list[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"Expected 'hidden' to be a sequence of layer widths (got {value!r}).")
    return [check_int(f"hidden[{i}]", h, minimum=1) for i, h in enumerate(value)]


def _dropout(value: Any) -> float:
    value = check_positive("dropout", value, allow_zero=True)
    if value >= 1:
        raise ValueError(f"Expected 'dropout' in [0, 1) (got {value}).")
    return float(value)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"Expected '{name}' to be a number (got {value!r}).")
    return float(value)


def _energy_grid(n_energies: int, e_min: float, e_step: float) -> torch.Tensor:
    return e_min + e_step * torch.arange(n_energies, dtype=torch.float64)


# ---------------------------------------------------------------------------- the head
class DOSHead(nn.Module):
    """Per-atom DOS head of spec ``csnn.md`` section 5: features ``(A, in_features) -> (A, n_energies)``.

    ``(Linear -> BatchNorm1d -> ReLU)`` for each width in ``hidden``, ``Linear -> BatchNorm1d ->
    ReLU -> Dropout`` to the energy bins (a non-negative atomic DOS), then (``smoothing``) the 1-D
    convolution over energies ``Conv1d(1 -> 3, kernel 3, padding 1) -> ReLU -> mean over channels``.
    Outputs are non-negative. The batch norms make training-mode outputs depend on the other atoms
    of the batch (a training batch needs at least two atoms); in eval mode atoms are independent.

    Args:
        in_features: width of the per-atom input features.
        n_energies: energy bins of the DOS.
        hidden: hidden widths (reference (512, 512); may be empty).
        dropout: dropout after the last ReLU (reference 0).
        smoothing: apply the smoothing convolution (reference True).
    """

    def __init__(self, in_features: int, n_energies: int, hidden: Sequence[int] = (512, 512), dropout: float = 0.0,
                 smoothing: bool = True) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features, minimum=1)
        self.n_energies = check_int("n_energies", n_energies, minimum=1)
        self.hidden = _hidden(hidden)
        self.dropout = _dropout(dropout)
        if not isinstance(smoothing, (bool, np.bool_)):
            raise TypeError(f"Expected 'smoothing' to be a bool (got {smoothing!r}).")
        layers: list[nn.Module] = []
        width = self.in_features
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU()]
            width = h
        layers += [nn.Linear(width, self.n_energies), nn.BatchNorm1d(self.n_energies), nn.ReLU(),
                   nn.Dropout(self.dropout)]
        self.layers = nn.Sequential(*layers)
        self.smoothing = _Smoothing() if smoothing else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.in_features:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"Expected per-atom features of shape (n_atoms, {self.in_features}) (got {got}).")
        out = self.layers(x)
        return out if self.smoothing is None else self.smoothing(out)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, n_energies={self.n_energies}, hidden={self.hidden}, "
                f"dropout={self.dropout}, smoothing={self.smoothing is not None}")


# ---------------------------------------------------------------------------- SOAP baseline
class SOAPFeaturizer:
    """Per-atom SOAP power spectra of periodic or isolated structures (float64 numpy, no gradients).

    Two :class:`~pointsym.descriptors.SOAP` descriptors with the same settings: the periodic one
    (the structure's cell and ``pbc`` flags decide the images; it needs a cell of non-zero volume)
    for structures with any periodic direction, the non-periodic one for the others.

    Args:
        species, r_cut, n_max, l_max, sigma, rbf: DScribe keywords of the descriptor.
    """

    def __init__(self, species: Any = ("C",), r_cut: float = 6.0, n_max: int = 8, l_max: int = 6,
                 sigma: float = 0.5, rbf: str = "gto") -> None:
        self.species = parse_species(species)
        if not self.species:
            raise ValueError("'species' is empty; list the elements to handle, e.g. ['C'].")
        self.r_cut = float(check_positive("r_cut", r_cut))
        self.n_max = check_int("n_max", n_max, minimum=1)
        self.l_max = check_int("l_max", l_max, minimum=0, maximum=20)
        self.sigma = float(check_positive("sigma", sigma))
        self.rbf = check_choice("rbf", rbf, ("gto", "polynomial"))
        kw = dict(species=self.species, r_cut=self.r_cut, n_max=self.n_max, l_max=self.l_max, sigma=self.sigma,
                  rbf=self.rbf)
        self._soap = {False: SOAP(**kw, periodic=False), True: SOAP(**kw, periodic=True)}
        self.n_features = int(self._soap[False].get_number_of_features())

    @property
    def settings(self) -> dict[str, Any]:
        """The descriptor settings (a plain dict; equal settings give equal features)."""
        return {"species": list(self.species), "r_cut": self.r_cut, "n_max": self.n_max, "l_max": self.l_max,
                "sigma": self.sigma, "rbf": self.rbf}

    def __repr__(self) -> str:
        return f"SOAPFeaturizer({', '.join(f'{k}={v!r}' for k, v in self.settings.items())})"

    def featurize(self, frames: Any, centres: Any = None) -> list[np.ndarray]:
        """Per-atom SOAP features ``(A_k, F)`` (float64 numpy) of every structure.

        Args:
            frames: an ``ase.Atoms`` or a list of them (or dicts ``{"positions", "numbers", "cell", "pbc"}``).
            centres: ``None`` (all atoms) or, per structure, ``None`` or a list of atom indices
                (rows in that order).

        Raises:
            ValueError: elements outside ``species``, empty structures or centre lists, a periodic
                structure without a cell of non-zero volume.
        """
        single = not isinstance(frames, (list, tuple))
        frames = [frames] if single else list(frames)
        if not frames:
            raise ValueError("'frames' is empty; pass at least one structure.")
        if centres is None:
            centres = [None] * len(frames)
        elif len(centres) != len(frames):
            raise ValueError(f"'centres' has {len(centres)} entries for {len(frames)} structures (one per structure, "
                             "None for all atoms).")
        groups: dict[bool, list[int]] = {False: [], True: []}
        for k, frame in enumerate(frames):
            numbers, pbc = self._numbers_pbc(frame, k)
            unknown = sorted(set(numbers.tolist()) - set(self.species))
            if unknown:
                raise ValueError(f"Structure {k} has atomic numbers {unknown} outside this model's species "
                                 f"{self.species}; build the model with them or drop those structures.")
            if centres[k] is not None and len(centres[k]) == 0:
                raise ValueError(f"centres[{k}] is empty; every structure needs at least one centre (None: all "
                                 "atoms).")
            groups[bool(pbc.any())].append(k)
        out: list[np.ndarray | None] = [None] * len(frames)
        for periodic, members in groups.items():
            if not members:
                continue
            soap = self._soap[periodic]
            if len(members) == 1:
                k = members[0]
                c = None if centres[k] is None else [int(i) for i in centres[k]]
                parts = [soap.create(frames[k], centers=c)]
            else:
                cs = [None if centres[k] is None else [int(i) for i in centres[k]] for k in members]
                res = soap.create([frames[k] for k in members], centers=cs)
                parts = list(res)
            for k, feats in zip(members, parts):
                out[k] = np.asarray(feats, dtype=np.float64).reshape(-1, self.n_features)
        return [o for o in out if o is not None]

    @staticmethod
    def _numbers_pbc(frame: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(frame, dict):
            numbers = np.asarray(frame.get("numbers", []), dtype=np.int64).reshape(-1)
            pbc = np.broadcast_to(np.asarray(False if frame.get("pbc") is None else frame["pbc"], dtype=bool), 3)
        elif hasattr(frame, "numbers") and hasattr(frame, "pbc"):
            numbers, pbc = np.asarray(frame.numbers, dtype=np.int64), np.asarray(frame.pbc, dtype=bool)
        else:
            raise TypeError(f"frames[{k}] is a {type(frame).__name__}; pass ase.Atoms (or dicts with positions, "
                            "numbers, cell, pbc).")
        if numbers.size == 0:
            raise ValueError(f"frames[{k}] has no atoms.")
        return numbers, pbc


class AtomwiseDOSMLP(CheckpointMixin, nn.Module):
    """SOAP + MLP density-of-states baseline: per-atom SOAP -> standardisation -> :class:`DOSHead`.

    The descriptor is pointsym's DScribe-compatible :class:`~pointsym.descriptors.SOAP` power
    spectrum (GTO basis), of ``n_max (n_max + 1) / 2 * (l_max + 1)`` features for one species (252
    for carbon with the defaults); periodic structures use their cell and ``pbc`` (any periodic
    direction selects the periodic descriptor, which needs a cell of non-zero volume), isolated
    ones are featurised without images. Features are rotation, translation and permutation
    invariant, so the model is too (exactly, up to round-off); they are computed in float64 by
    :meth:`featurize` (no gradients) and standardised with the ``feature_mean`` / ``feature_std``
    buffers that :meth:`fit_scaler` sets from the training features (until then the identity).

    Args:
        n_energies: energy bins of the DOS (reference 310).
        species: elements the descriptor handles (default carbon).
        r_cut, n_max, l_max, sigma, rbf: SOAP settings (Å; default 6.0, 8, 6, 0.5, ``"gto"``).
        hidden, dropout, smoothing: the :class:`DOSHead`.
        e_min, e_step: first energy and spacing of the DOS grid, eV (only used by :attr:`energies`).

    Shapes:
        ``forward(features (A, F), batch (A,) | None, n_structures=None) -> (S, n_energies)``;
        ``forward_atoms(features (A, F)) -> (A, n_energies)``;
        ``forward_structures(positions, numbers, cell, pbc, batch) -> (S, n_energies)``;
        ``featurize(frames, centres=None) -> [ (A_k, F) float64 arrays ]``.
    """

    def __init__(
        self,
        n_energies: int = 310,
        *,
        species: Any = ("C",),
        r_cut: float = 6.0,
        n_max: int = 8,
        l_max: int = 6,
        sigma: float = 0.5,
        rbf: str = "gto",
        hidden: Sequence[int] = (512, 512),
        dropout: float = 0.0,
        smoothing: bool = True,
        e_min: float = -30.0,
        e_step: float = 0.1,
    ) -> None:
        super().__init__()
        self.n_energies = check_int("n_energies", n_energies, minimum=1)
        self.featurizer = SOAPFeaturizer(species, r_cut, n_max, l_max, sigma, rbf)
        self.species = self.featurizer.species
        self.r_cut, self.n_max, self.l_max = self.featurizer.r_cut, self.featurizer.n_max, self.featurizer.l_max
        self.sigma, self.rbf = self.featurizer.sigma, self.featurizer.rbf
        self.n_features = self.featurizer.n_features
        self.e_min = _number("e_min", e_min)
        self.e_step = float(check_positive("e_step", e_step))
        self.head = DOSHead(self.n_features, self.n_energies, hidden, dropout, smoothing)
        self.register_buffer("feature_mean", torch.zeros(self.n_features))
        self.register_buffer("feature_std", torch.ones(self.n_features))
        self.register_buffer("n_fitted", torch.zeros((), dtype=torch.long))
        self._hypers = {
            "n_energies": self.n_energies, "species": list(self.species), "r_cut": self.r_cut, "n_max": self.n_max,
            "l_max": self.l_max, "sigma": self.sigma, "rbf": self.rbf, "hidden": list(self.head.hidden),
            "dropout": self.head.dropout, "smoothing": self.head.smoothing is not None, "e_min": self.e_min,
            "e_step": self.e_step,
        }

    @property
    def hypers(self) -> dict[str, Any]:
        """Constructor arguments; ``AtomwiseDOSMLP(**m.hypers)`` rebuilds the architecture."""
        return json.loads(json.dumps(self._hypers))

    @property
    def energies(self) -> torch.Tensor:
        """``(n_energies,)`` float64 energies of the output bins, eV."""
        return _energy_grid(self.n_energies, self.e_min, self.e_step)

    @property
    def scaler_fitted(self) -> bool:
        """Whether :meth:`fit_scaler` has set the standardisation."""
        return int(self.n_fitted) > 0

    def reset_parameters(self) -> None:
        """Re-initialise the head (keeps the scaler)."""
        for m in self.head.modules():
            reset = getattr(m, "reset_parameters", None)
            if m is not self.head and callable(reset):
                reset()

    def featurize(self, frames: Any, centres: Any = None) -> list[np.ndarray]:
        """Per-atom SOAP features ``(A_k, F)`` (float64 numpy) of every structure (:meth:`SOAPFeaturizer.featurize`)."""
        return self.featurizer.featurize(frames, centres)

    @torch.no_grad()
    def fit_scaler(self, features: Any) -> AtomwiseDOSMLP:
        """Set ``feature_mean`` / ``feature_std`` from training features.

        Args:
            features: ``(A, F)`` tensor or array, or a list of ``(A_k, F)`` arrays (e.g. :meth:`featurize`
                of the training structures). Statistics are taken in float64 over all rows;
                features with a standard deviation below ``1e-8`` of the largest one keep ``std = 1``.

        Returns:
            ``self``.
        """
        if isinstance(features, (list, tuple)):
            if not features:
                raise ValueError("'features' is empty; pass the training features.")
            x = torch.cat([torch.as_tensor(np.asarray(f) if not isinstance(f, torch.Tensor) else f).double().cpu()
                           for f in features])
        else:
            x = torch.as_tensor(features).double().cpu()
        if x.ndim != 2 or x.shape[1] != self.n_features or x.shape[0] < 2:
            raise ValueError(f"Expected training features of shape (n_atoms >= 2, {self.n_features}) (got "
                             f"{tuple(x.shape)}).")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("'features' contains NaN or infinite values.")
        mean, std = x.mean(0), x.std(0)
        std = torch.where(std > 1e-8 * std.max().clamp_min(1e-300), std, torch.ones_like(std))
        self.feature_mean.copy_(mean.to(self.feature_mean))
        self.feature_std.copy_(std.to(self.feature_std))
        self.n_fitted.fill_(x.shape[0])
        return self

    # -------------------------------------------------------------- forward
    def _check_features(self, features: Any) -> None:
        if not isinstance(features, torch.Tensor) or features.ndim != 2 or features.shape[1] != self.n_features:
            got = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"Expected SOAP features of shape (n_atoms, {self.n_features}) (got {got}); compute "
                             "them with model.featurize.")
        if not features.is_floating_point():
            raise TypeError(f"Expected floating-point features (got dtype {features.dtype}).")

    def forward_atoms(self, features: torch.Tensor) -> torch.Tensor:
        """Per-atom DOS ``(A, n_energies)`` (non-negative) of SOAP features ``(A, F)``."""
        self._check_features(features)
        return self.head((features - self.feature_mean) / self.feature_std)

    def forward(self, features: torch.Tensor, batch: Any = None, n_structures: int | None = None) -> torch.Tensor:
        """Per-atom DOS of each structure ``(S, n_energies)``: the mean over its atoms of :meth:`forward_atoms`."""
        self._check_features(features)
        return structure_mean(self.forward_atoms(features), batch, n_structures)

    def forward_structures(self, positions: Any, numbers: Any, cell: Any = None, pbc: Any = None,
                           batch: Any = None) -> torch.Tensor:
        """Per-atom DOS ``(S, n_energies)`` of structures in the structure-model convention (features by
        :meth:`featurize`, no gradients with respect to positions)."""
        positions, numbers, cell, pbc, batch = check_structure_inputs(positions, numbers, cell, pbc, batch)
        n_s = cell.shape[0]
        pos, num, bat = positions.detach().cpu().numpy(), numbers.cpu().numpy(), batch.cpu().numpy()
        frames, rows = [], []
        for s in range(n_s):
            sel = np.flatnonzero(bat == s)
            rows.append(sel)
            frames.append({"positions": pos[sel].astype(np.float64), "numbers": num[sel],
                           "cell": cell[s].detach().cpu().numpy().astype(np.float64), "pbc": pbc[s].cpu().numpy()})
        feats = self.featurize(frames)
        param = self.feature_mean
        x = torch.as_tensor(np.concatenate(feats), dtype=param.dtype, device=param.device)
        b = torch.as_tensor(np.concatenate([np.full(len(r), s) for s, r in enumerate(rows)]), device=param.device)
        return self.forward(x, b, n_s)

    def extra_repr(self) -> str:
        return (f"species={self.species}, r_cut={self.r_cut}, n_max={self.n_max}, l_max={self.l_max}, "
                f"sigma={self.sigma}, n_features={self.n_features}, n_energies={self.n_energies}, "
                f"scaler_fitted={self.scaler_fitted}")


# ---------------------------------------------------------------------------- PET + DOS head
class PETDOS(CheckpointMixin, nn.Module):
    """Point Edge Transformer with a per-atom density-of-states head.

    Route: PET's message passing is reused unchanged -- the same :class:`PETBlock` s, neighbour
    list, reverse-edge messages and readout (``run_pet_blocks`` / ``pet_graph`` of
    ``_pet_layers``, extracted from :class:`~pointsym.models.PET` by a behaviour-preserving
    refactor that leaves PET's outputs, hypers and checkpoints bit-for-bit unchanged) -- but every
    block's atom and bond readouts emit ``n_features`` numbers instead of PET's one energy
    (``PETBlock`` already takes ``d_out``). Their sum over blocks is a per-atom feature vector that
    goes through the same :class:`DOSHead` as the SOAP and CSNN models. Adding an ``n_outputs`` hyper
    to PET itself was not chosen: it would give PET outputs that are not energies and extra
    hypers in every PET file, and the DOS head (batch norm, ReLU, smoothing) would still be needed
    on top.

    Symmetry: translation and permutation invariant; not rotation invariant (train with rotation
    augmentation). For exact O(3) invariance at evaluation wrap the per-atom view:
    ``ECSE(model.per_atom(), r_cut=model.r_cut, outputs="atom_scalar")`` (any ``n_gnn_layers``;
    costs about ``2 x frames`` evaluations of the whole structure) or, for ``n_gnn_layers == 1``,
    ``..., mode="atom")`` (per-environment, much cheaper); then average the rows of each structure
    (:func:`structure_mean`). ECSE averages the model over frames, so it must be in eval mode (the
    batch norms then act per atom); ECSE treats the ``(N, n_energies)`` rows as invariant scalars.

    Args:
        species: elements (default carbon).
        r_cut: neighbour cutoff, Å (default 4.0).
        n_energies: energy bins of the DOS (reference 310).
        d_model, n_gnn_layers, n_trans_layers, n_heads, dim_feedforward, head_hidden,
            cutoff_delta, residual_factor, transformer_type, use_bond_heads, use_only_length,
            min_distance: as :class:`~pointsym.models.PET`.
        n_features: width of the per-atom PET readout fed to the head (default 128).
        hidden, dropout, smoothing: the :class:`DOSHead`.
        e_min, e_step: first energy and spacing of the DOS grid, eV (only used by :attr:`energies`).

    Shapes:
        ``forward(positions (N, 3), numbers (N,), cell (S, 3, 3) | (3, 3) | None,
        pbc (S, 3) | bool | None, batch (N,) | None) -> (S, n_energies)``;
        ``forward_atoms(...) -> (N, n_energies)``; ``embed_atoms(...) -> (N, n_features)``.
    """

    def __init__(
        self,
        species: Any = ("C",),
        r_cut: float = 4.0,
        n_energies: int = 310,
        d_model: int = 128,
        n_gnn_layers: int = 3,
        n_trans_layers: int = 3,
        *,
        n_heads: int = 4,
        dim_feedforward: int = 512,
        head_hidden: int = 128,
        n_features: int = 128,
        cutoff_delta: float = 0.2,
        residual_factor: float = 0.5,
        transformer_type: str = "post_ln",
        use_bond_heads: bool = True,
        use_only_length: bool = False,
        min_distance: float = MIN_DISTANCE,
        hidden: Sequence[int] = (512, 512),
        dropout: float = 0.0,
        smoothing: bool = True,
        e_min: float = -30.0,
        e_step: float = 0.1,
    ) -> None:
        super().__init__()
        check_pet_hypers(d_model, n_gnn_layers, n_heads, cutoff_delta, r_cut, residual_factor, transformer_type)
        self.species = parse_species(species)
        if not self.species:
            raise ValueError("'species' is empty; list the elements to handle, e.g. ['C'].")
        self.r_cut = float(r_cut)
        self.n_energies = check_int("n_energies", n_energies, minimum=1)
        self.d_model = int(d_model)
        self.n_gnn_layers = int(n_gnn_layers)
        self.n_trans_layers = check_int("n_trans_layers", n_trans_layers, minimum=1)
        self.n_heads = int(n_heads)
        self.dim_feedforward = check_int("dim_feedforward", dim_feedforward, minimum=1)
        self.head_hidden = check_int("head_hidden", head_hidden, minimum=1)
        self.n_features = check_int("n_features", n_features, minimum=1)
        self.cutoff_delta = float(cutoff_delta)
        self.residual_factor = float(residual_factor)
        self.transformer_type = transformer_type
        self.use_bond_heads = bool(use_bond_heads)
        self.use_only_length = bool(use_only_length)
        self.min_distance = float(check_positive("min_distance", min_distance, allow_zero=True))
        self.e_min = _number("e_min", e_min)
        self.e_step = float(check_positive("e_step", e_step))
        n_sp = len(self.species)
        lookup = torch.full((max(self.species) + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(self.species)] = torch.arange(n_sp)
        self.register_buffer("species_index", lookup, persistent=False)
        self.neighbor_embedding = nn.Embedding(n_sp + 1, self.d_model)
        self.blocks = nn.ModuleList(
            PETBlock(n_sp, self.d_model, self.n_trans_layers, self.n_heads, self.dim_feedforward, self.head_hidden,
                     self.n_features, use_only_length=self.use_only_length, pre_ln=transformer_type == "pre_ln",
                     use_bond_heads=self.use_bond_heads)
            for _ in range(self.n_gnn_layers)
        )
        self.head = DOSHead(self.n_features, self.n_energies, hidden, dropout, smoothing)

    @property
    def hypers(self) -> dict[str, Any]:
        """Constructor arguments; ``PETDOS(**m.hypers)`` rebuilds the architecture."""
        return {
            "species": list(self.species), "r_cut": self.r_cut, "n_energies": self.n_energies,
            "d_model": self.d_model, "n_gnn_layers": self.n_gnn_layers, "n_trans_layers": self.n_trans_layers,
            "n_heads": self.n_heads, "dim_feedforward": self.dim_feedforward, "head_hidden": self.head_hidden,
            "n_features": self.n_features, "cutoff_delta": self.cutoff_delta,
            "residual_factor": self.residual_factor, "transformer_type": self.transformer_type,
            "use_bond_heads": self.use_bond_heads, "use_only_length": self.use_only_length,
            "min_distance": self.min_distance, "hidden": list(self.head.hidden), "dropout": self.head.dropout,
            "smoothing": self.head.smoothing is not None, "e_min": self.e_min, "e_step": self.e_step,
        }

    @property
    def energies(self) -> torch.Tensor:
        """``(n_energies,)`` float64 energies of the output bins, eV."""
        return _energy_grid(self.n_energies, self.e_min, self.e_step)

    def reset_parameters(self) -> None:
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def extra_repr(self) -> str:
        n_params = sum(p.numel() for p in self.parameters())
        return (f"species={self.species}, r_cut={self.r_cut}, d_model={self.d_model}, "
                f"n_gnn_layers={self.n_gnn_layers}, n_features={self.n_features}, n_energies={self.n_energies}, "
                f"n_params={n_params}")

    def _species_to_index(self, numbers: torch.Tensor) -> torch.Tensor:
        lookup = self.species_index.to(numbers.device)
        known = (numbers >= 0) & (numbers < lookup.shape[0])
        idx = torch.where(known, lookup[numbers.clamp(0, lookup.shape[0] - 1)], torch.full_like(numbers, -1))
        if bool((idx < 0).any()):
            bad = sorted(set(numbers[idx < 0].tolist()))
            raise ValueError(f"Atomic numbers {bad} are not in this model's species {self.species}; train a model "
                             "that includes them or remove those atoms.")
        return idx

    # -------------------------------------------------------------- forward
    def _embed(self, positions: torch.Tensor, numbers: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
               batch: torch.Tensor) -> torch.Tensor:
        param = self.neighbor_embedding.weight
        if positions.dtype != param.dtype:
            raise TypeError(f"'positions' dtype {positions.dtype} differs from the model dtype {param.dtype}; "
                            f"cast the inputs or call model.to({positions.dtype}).")
        idx = self._species_to_index(numbers)
        graph = pet_graph(positions, cell, pbc, batch, r_cut=self.r_cut, cutoff_delta=self.cutoff_delta,
                          min_distance=self.min_distance)
        return run_pet_blocks(self.blocks, graph, self.neighbor_embedding(idx[graph.neighbor]), idx,
                              self.residual_factor)

    def embed_atoms(self, positions: Any, numbers: Any, cell: Any = None, pbc: Any = None,
                    batch: Any = None) -> torch.Tensor:
        """Per-atom PET features ``(N, n_features)`` (the sum over blocks of the readouts)."""
        return self._embed(*check_structure_inputs(positions, numbers, cell, pbc, batch))

    def forward_atoms(self, positions: Any, numbers: Any, cell: Any = None, pbc: Any = None,
                      batch: Any = None) -> torch.Tensor:
        """Per-atom DOS ``(N, n_energies)`` (non-negative); inputs as :meth:`forward`."""
        return self.head(self._embed(*check_structure_inputs(positions, numbers, cell, pbc, batch)))

    def forward_centres(self, positions: Any, numbers: Any, cell: Any = None, pbc: Any = None, batch: Any = None,
                        *, centres: Any) -> torch.Tensor:
        """Per-atom DOS ``(M, n_energies)`` of the atoms ``centres`` (``(M,)`` indices into ``positions``).

        Equal to ``forward_atoms(...)[centres]``. A one-block PET (:attr:`is_local`) evaluates only
        the environments of ``centres``, so training on K sampled atoms per structure costs K
        environments instead of every atom; with message passing every atom is still computed.
        """
        positions, numbers, cell, pbc, batch = check_structure_inputs(positions, numbers, cell, pbc, batch)
        centres = torch.as_tensor(centres, dtype=torch.long, device=positions.device).reshape(-1)
        n = positions.shape[0]
        if centres.numel() and (int(centres.min()) < 0 or int(centres.max()) >= n):
            raise ValueError(f"'centres' must index the {n} atoms (got values {int(centres.min())} ... "
                             f"{int(centres.max())}).")
        if not self.is_local:
            return self.head(self._embed(positions, numbers, cell, pbc, batch))[centres]
        i, j, _, vectors = batched_neighbor_list(positions, cell, pbc, batch, r_cut=self.r_cut,
                                                 min_distance=self.min_distance)
        # the edges of every picked centre, grouped by environment (a centre picked twice gets its edges twice)
        order = torch.argsort(i, stable=True)
        i, j, vectors = i[order], j[order], vectors[order]
        start = torch.searchsorted(i, torch.arange(n + 1, device=i.device))
        first, count = start[centres], start[centres + 1] - start[centres]
        edge_env = torch.repeat_interleave(torch.arange(centres.numel(), device=i.device), count)
        offset = torch.arange(edge_env.numel(), device=i.device) - (torch.cumsum(count, 0) - count)[edge_env]
        sel = first[edge_env] + offset
        return self.environment_dos(numbers[centres], vectors[sel], numbers[j[sel]], edge_env)

    def forward(self, positions: Any, numbers: Any, cell: Any = None, pbc: Any = None,
                batch: Any = None) -> torch.Tensor:
        """DOS per atom of every structure ``(S, n_energies)``: the mean of :meth:`forward_atoms` over its atoms.

        Args:
            positions: ``(N, 3)`` Å, in the model's dtype.
            numbers: ``(N,)`` atomic numbers, all in ``species``.
            cell: ``(S, 3, 3)`` or ``(3, 3)`` lattice vectors as rows (Å), or ``None``.
            pbc: ``(S, 3)``, ``(3,)`` or a bool; ``None`` = not periodic.
            batch: ``(N,)`` structure index of each atom; ``None`` = one structure.
        """
        positions, numbers, cell, pbc, batch = check_structure_inputs(positions, numbers, cell, pbc, batch)
        atoms = self.head(self._embed(positions, numbers, cell, pbc, batch))
        return structure_mean(atoms, batch, cell.shape[0])

    # -------------------------------------------------------------- symmetrization
    @property
    def is_local(self) -> bool:
        """True for one message-passing block (an atom's DOS then depends only on its own environment)."""
        return self.n_gnn_layers == 1

    def environment_dos(self, center_numbers: torch.Tensor, edge_vectors: torch.Tensor,
                        edge_numbers: torch.Tensor, edge_center: torch.Tensor) -> torch.Tensor:
        """Per-atom DOS ``(M, n_energies)`` of ``M`` isolated environments; only for ``n_gnn_layers == 1``.

        Arguments as ECSE's locality protocol (see :mod:`pointsym.symmetrize`), which :meth:`per_atom`
        implements with this method. PETDOS itself does not implement the protocol: ECSE's
        ``mode="atom"`` sums atomic outputs into structure outputs, whereas :meth:`forward` averages.
        """
        if not self.is_local:
            raise ValueError(f"PETDOS.environment_dos needs n_gnn_layers == 1 (got {self.n_gnn_layers}): with "
                             "message passing an atom's DOS depends on more than its own environment.")
        idx = self._species_to_index(center_numbers)
        messages = self.neighbor_embedding(self._species_to_index(edge_numbers))
        feats = local_block_outputs(self.blocks[0], edge_vectors, messages, idx, edge_center, self.r_cut,
                                    self.cutoff_delta)
        return self.head(feats)

    def per_atom(self) -> PerAtomDOS:
        """A module sharing these weights whose ``forward`` is :meth:`forward_atoms` ``(N, n_energies)``.

        For ECSE: ``ECSE(model.per_atom(), r_cut=model.r_cut, outputs="atom_scalar")``; with
        ``n_gnn_layers == 1`` it also implements the locality protocol (``mode="atom"``). It is not a
        model file of its own: save the PETDOS and wrap it again after loading.
        """
        return PerAtomDOS(self)


class PerAtomDOS(nn.Module):
    """Per-atom view of a :class:`PETDOS` (see :meth:`PETDOS.per_atom`): ``forward -> (N, n_energies)``."""

    def __init__(self, model: PETDOS) -> None:
        super().__init__()
        if not isinstance(model, PETDOS):
            raise TypeError(f"Expected a PETDOS (got {type(model).__name__}).")
        self.model = model

    @property
    def r_cut(self) -> float:
        return self.model.r_cut

    @property
    def n_gnn_layers(self) -> int:
        return self.model.n_gnn_layers

    @property
    def is_local(self) -> bool:
        return self.model.is_local

    def atomic_outputs_local(self, center_numbers: torch.Tensor, edge_vectors: torch.Tensor,
                             edge_numbers: torch.Tensor, edge_center: torch.Tensor) -> torch.Tensor:
        """ECSE's locality protocol (``n_gnn_layers == 1``): :meth:`PETDOS.environment_dos`."""
        return self.model.environment_dos(center_numbers, edge_vectors, edge_numbers, edge_center)

    def forward(self, positions: Any, numbers: Any, cell: Any = None, pbc: Any = None,
                batch: Any = None) -> torch.Tensor:
        return self.model.forward_atoms(positions, numbers, cell, pbc, batch)
