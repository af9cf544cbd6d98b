"""The Point Edge Transformer DOS model (:class:`pointsym.models.PETDOS`) as a ``csnn-dos`` model adapter.

PET is not rotation invariant by construction: train it with the loop's rotation augmentation
(``--rotate-train``). For exactly invariant predictions at evaluation set the option ``ecse``:
the model (in eval mode) is then evaluated through :class:`pointsym.symmetrize.ECSE` around
:meth:`PETDOS.per_atom`, its per-atom DOS declared ``"atom_scalar"`` (invariant rows), and
averaged over the centres. ``"union"`` works for any number of message-passing blocks but costs
about ``2 x frames`` PET evaluations of the whole structure (tens to hundreds for a crystal);
``"atom"`` (per-environment ECSE) needs ``n_gnn_layers = 1`` and is far cheaper. Training
(``model.training``) never goes through ECSE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pointsym.experiments.csnn_dos.adapters import check_centres, grid_step
from pointsym.models import PETDOS
from pointsym.models.dos_heads import structure_mean
from pointsym.structures import batch_structures

__all__ = ["PET_DEFAULTS", "PETAdapter", "PETInputs"]

#: The model options of :class:`PETAdapter` with their defaults (``ecse`` is the adapter's own).
PET_DEFAULTS: dict[str, Any] = {
    "species": ["C"], "r_cut": 4.0, "d_model": 128, "n_gnn_layers": 3, "n_trans_layers": 3, "n_heads": 4,
    "dim_feedforward": 512, "head_hidden": 128, "n_features": 128, "cutoff_delta": 0.2, "residual_factor": 0.5,
    "transformer_type": "post_ln", "use_bond_heads": True, "use_only_length": False,
    "hidden": [512, 512], "dropout": 0.0, "smoothing": True, "ecse": "off",
}
_ECSE_MODES = ("off", "union", "atom")


@dataclass
class PETInputs:
    """Prepared PET input: every atom of every structure (message passing uses all) and the centres."""

    positions: torch.Tensor  # (N, 3)
    numbers: torch.Tensor  # (N,)
    cell: torch.Tensor  # (S, 3, 3)
    pbc: torch.Tensor  # (S, 3)
    batch: torch.Tensor  # (N,)
    centre: torch.Tensor  # (A_c,) flat indices of the centre atoms (ordered by structure)
    n_structures: int

    @property
    def n_atoms(self) -> int:
        return int(self.centre.shape[0])

    def to(self, device: Any) -> PETInputs:
        return PETInputs(*(t.to(device) for t in (self.positions, self.numbers, self.cell, self.pbc, self.batch,
                                                  self.centre)), self.n_structures)


class PETAdapter:
    """:class:`pointsym.models.PETDOS` as a ``DOSAdapter``.

    Options (keys of ``options``; defaults :data:`PET_DEFAULTS`): ``species`` (``["C"]``), ``r_cut``
    (Å, 4.0), ``d_model`` (128), ``n_gnn_layers`` (3), ``n_trans_layers`` (3), ``n_heads`` (4),
    ``dim_feedforward`` (512), ``head_hidden`` (128), ``n_features`` (128, the per-atom PET readout
    fed to the head), ``cutoff_delta`` (0.2), ``residual_factor`` (0.5), ``transformer_type``
    (``"post_ln"``), ``use_bond_heads`` (True), ``use_only_length`` (False), the head ``hidden``
    ([512, 512]), ``dropout`` (0), ``smoothing`` (True), and ``ecse``: ``"off"`` (default),
    ``"union"`` or ``"atom"`` (needs ``n_gnn_layers = 1``), the symmetrization of eval-mode
    predictions. Unknown keys raise ``ValueError``.
    """

    name = "pet"

    def __init__(self) -> None:
        self.ecse = "off"
        self._wrapped: Any = None

    def build_model(self, energies: np.ndarray, options: dict[str, Any]) -> torch.nn.Module:
        unknown = sorted(set(options) - set(PET_DEFAULTS))
        if unknown:
            raise ValueError(f"Unknown pet model option(s) {unknown}; known: {sorted(PET_DEFAULTS)}.")
        opts = {**PET_DEFAULTS, **options}
        ecse = opts.pop("ecse")
        if ecse not in _ECSE_MODES:
            raise ValueError(f"Expected pet model option 'ecse' to be one of {_ECSE_MODES} (got {ecse!r}).")
        if ecse == "atom" and opts["n_gnn_layers"] != 1:
            raise ValueError(f"pet model option ecse='atom' (per-environment ECSE) needs n_gnn_layers=1 (got "
                             f"{opts['n_gnn_layers']}); use ecse='union' for message-passing PETs.")
        energies = np.asarray(energies, dtype=np.float64)
        step = grid_step(energies)
        if isinstance(opts["species"], (str, int)):
            opts["species"] = [opts["species"]]
        opts["species"] = list(opts["species"])
        opts["hidden"] = list(opts["hidden"])
        model = PETDOS(n_energies=int(energies.shape[0]), e_min=float(energies[0]), e_step=step, **opts)
        self.ecse = ecse
        self._wrapped = None
        return model

    def prepare(self, frames: list[Any], centres: list[np.ndarray] | None, *, dtype: torch.dtype,
                device: torch.device) -> PETInputs:
        frames = list(frames)
        if not frames:
            raise ValueError("'frames' is empty; pass at least one structure.")
        sb = batch_structures(frames, dtype=dtype, device=device)
        sizes = [len(a) for a in frames]
        if centres is None:
            centre = torch.arange(sb.positions.shape[0], device=device)
        else:
            picked = check_centres(centres, sizes)
            offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
            centre = torch.as_tensor(np.concatenate([o + c for o, c in zip(offsets, picked)]), device=device)
        return PETInputs(sb.positions, sb.numbers, sb.cell, sb.pbc, sb.batch, centre, len(frames))

    def predict(self, model: torch.nn.Module, prepared: PETInputs) -> torch.Tensor:
        if not isinstance(model, PETDOS):
            raise TypeError(f"PETAdapter.predict needs a PETDOS (got {type(model).__name__}).")
        p = prepared
        args = (p.positions, p.numbers, p.cell, p.pbc, p.batch)
        if self.ecse != "off" and not model.training:
            atoms = self.symmetrized(model)(*args)[p.centre]
        elif p.centre.shape[0] < p.positions.shape[0]:
            # K sampled atoms: a one-block PET computes only their environments
            atoms = model.forward_centres(*args, centres=p.centre)
        else:
            atoms = model.forward_atoms(*args)[p.centre]
        return structure_mean(atoms, p.batch[p.centre], p.n_structures)

    def symmetrized(self, model: PETDOS) -> Any:
        """The ECSE wrapper of ``model``'s per-atom DOS (built once per model) for this adapter's ``ecse`` mode."""
        from pointsym.symmetrize import ECSE

        if self.ecse == "off":
            raise ValueError("This PETAdapter was built with ecse='off'; set the model option ecse='union' or 'atom'.")
        if self._wrapped is None or self._wrapped.model.model is not model:
            self._wrapped = ECSE(model.per_atom(), r_cut=model.r_cut, outputs="atom_scalar", mode=self.ecse)
        return self._wrapped
