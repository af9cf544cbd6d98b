"""Equivariant Coordinate System Ensemble (ECSE): exact O(3) symmetrization of any model.

Pozdnyakov & Ceriotti, *Smooth, exact rotational symmetrization for deep learning on point
clouds*, NeurIPS 2023 (arXiv:2305.19302); spec ``ecse_pet.md`` Part B.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import nn

from pointsym.core import (
    CheckpointError,
    CheckpointMixin,
    check_choice,
    check_int,
    check_positive,
    renamed_kwargs,
)
from pointsym.core.checkpoints import build_spec, load_state_into, model_payload, model_spec
from pointsym.structures import (
    MIN_DISTANCE,
    autograd_energy_forces,
    check_structure_inputs,
    predict_structures,
    strain_to_stress,
    strained_inputs,
    trusted_inputs,
)
from pointsym.symmetrize._fallback import principal_axis
from pointsym.symmetrize._frames import ECSEConfig, FrameSet, compute_frames
from pointsym.symmetrize._local import _axial, check_local_model, local_forward

__all__ = ["ECSE", "OUTPUT_KINDS"]

#: Declared kinds of the wrapped model's outputs.
OUTPUT_KINDS = ("scalar", "vector", "tensor", "atom_scalar", "atom_vector", "atom_tensor")


def _parse_outputs(outputs: Any) -> dict[str | None, str]:
    if isinstance(outputs, str):
        check_choice("outputs", outputs, OUTPUT_KINDS)
        return {None: outputs}
    if not isinstance(outputs, Mapping) or not outputs:
        raise TypeError(f"Expected 'outputs' to be one of {OUTPUT_KINDS} or a non-empty dict name -> kind "
                        f"(got {outputs!r}).")
    for key, kind in outputs.items():
        if not isinstance(key, str):
            raise TypeError(f"Output names must be strings (got {key!r}).")
        check_choice(f"outputs[{key!r}]", kind, OUTPUT_KINDS)
    return dict(outputs)


def _rotate_back(y: torch.Tensor, kind: str, mats: torch.Tensor) -> torch.Tensor:
    """Local-frame outputs -> lab frame. ``mats`` has one (3, 3) frame per leading row of ``y``."""
    base = kind.replace("atom_", "")
    if base == "scalar":
        return y
    extra = y.dim() - (2 if base == "vector" else 3)
    m = mats.reshape(mats.shape[0], *([1] * extra), 3, 3)
    if base == "vector":  # row vectors: v_lab = v_local M^T
        return (m @ y.unsqueeze(-1)).squeeze(-1)
    return m @ y @ m.transpose(-1, -2)


def _weighted(y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return y * w.reshape(-1, *([1] * (y.dim() - 1)))


class _Centered:
    """Accumulates ``sum_k wbar_k (y_k - c)`` for one output and adds ``c`` back at the end.

    ``c`` is a detached reference value per result row (the first evaluation seen). As the
    normalised weights sum to one, this changes nothing mathematically, but it removes the
    cancellation ``c * sum_k d wbar_k / dx`` from the gradients: large constant parts of an
    output (e.g. self energies of -1000 eV) would otherwise turn float32 rounding of the
    weights into force errors of ~1e-3 eV/Å.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.ref: torch.Tensor | None = None
        self.has: torch.Tensor | None = None

    def centered(self, index: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.ref is None:
            self.ref = y.new_zeros((self.size, *y.shape[1:]))
            self.has = torch.zeros(self.size, dtype=torch.bool, device=y.device)
        new = ~self.has[index]
        if bool(new.any()):
            self.ref[index[new]] = y[new].detach()
            self.has[index[new]] = True
        return y - self.ref[index]


def _output_shape_message(name: str, kind: str, y: Any, n_struct: int, n_atoms: int, counts: list[int] | None,
                          tail: tuple[int, ...]) -> str:
    """What a wrongly shaped model output should be, per structure and atom (the user's terms).

    ECSE calls the model on many rotated copies of each structure at once, so the raw row
    counts of that call (``n_struct`` copies, ``n_atoms`` atoms in all) mean nothing to the user.
    """
    sizes = sorted(set(counts)) if counts else []
    atoms = (f"{sizes[0]} atoms" if len(sizes) == 1 else
             f"{sizes[0]} to {sizes[-1]} atoms per structure" if sizes else "one per atom")
    per_atom = kind.startswith("atom_")
    last = {(): "", (3,): " and a last axis of size 3", (3, 3): " and last axes (3, 3)"}[tail]
    want = (f"one row per atom ({atoms}){last}" if per_atom else
            f"one row per structure{last}" + (f" (of {atoms})" if sizes else ""))
    if not isinstance(y, torch.Tensor):
        got = f"a {type(y).__name__}"
    else:
        rows, rest = (int(y.shape[0]), tuple(y.shape[1:])) if y.dim() else (0, ())
        if y.dim() == 0:
            got = "a 0-d tensor (no row axis)"
        elif rows == n_atoms and n_atoms != n_struct:
            got = f"one row per atom, each of shape {rest}"
        elif rows == n_struct and n_atoms != n_struct:
            got = f"one row per structure, each of shape {rest}"
        elif n_struct and rows % n_struct == 0:
            got = f"{rows // n_struct} row(s) per structure, each of shape {rest}"
        else:
            got = f"{rows} rows of shape {rest} for {n_struct} structure(s) of {atoms}"
    kind_text = "per-atom" if per_atom else "per-structure"
    return (f"Model {name} declared {kind!r} is a {kind_text} output and must have {want}; the model returned {got}. "
            "Return that shape, or declare the output's kind in 'outputs' (e.g. 'scalar', 'atom_vector').")


class ECSE(CheckpointMixin, nn.Module):
    """Wrap a structure model so that its outputs become exactly O(3)-equivariant and smooth.

    ``ECSE(model)(A) = [sum_k w_k M_k * model(A M_k) + w_aux y_aux(A)] / [sum_k w_k + w_aux]``
    where the ``M_k`` are local frames built from ordered pairs of neighbours of every atom,
    ``w_k`` smooth rotation-invariant weights (pruned to the near-maximal ones) and ``*``
    rotates each output back according to its **declared** kind. Gradients flow through
    frames and weights, so ``-dE/dx`` of the symmetrized energy are exact conservative forces.

    With ``reflections=True`` (default) every frame is used together with its mirror image
    ``M_k diag(1, -1, 1)`` (same weight), which makes the result O(3)- rather than only
    SO(3)-equivariant (vectors are then polar vectors, not pseudo-vectors).

    The wrapped model follows the structure-model convention
    ``model(positions (N, 3), numbers (N,), cell (S, 3, 3), pbc (S, 3), batch (N,))``
    (see :mod:`pointsym.structures`); with ``batched=False`` it is instead
    called once per structure as ``model(positions, numbers, cell (3, 3), pbc (3,))``. It
    must be translation-invariant and smooth for the result to be smooth; nothing else is
    required (it needs no symmetry at all).

    Args:
        model: the model to symmetrize (any ``torch.nn.Module`` or callable).
        r_cut: radius (Å) within which neighbour pairs may define frames; usually the
            model's cutoff. Capped at ``r_cut_outer_max``.
        outputs: how each output transforms -- an explicit declaration, never guessed:
            ``"scalar"`` (per structure, invariant, shape ``(S, ...)``), ``"vector"``
            (``(S, ..., 3)``, rotates like a displacement), ``"tensor"`` (``(S, ..., 3, 3)``,
            ``M T M^T``), and the per-atom ``"atom_scalar"``, ``"atom_vector"``,
            ``"atom_tensor"`` (leading axis ``N``). A single kind when the model returns one
            tensor, or a dict ``{name: kind}`` matching the keys of the dict it returns
            (default: "scalar").
        aux_model: prediction used where all neighbourhoods are collinear:
            ``"projection"`` (default; the wrapped model on the structure's principal axis,
            see :mod:`pointsym.symmetrize._fallback`; molecules only), an intrinsically
            equivariant module with the same calling convention and outputs, or ``None``
            (collinear structures then raise ``ValueError``).
        reflections: include mirrored frames for O(3) equivariance (default: True).
        batched: the model accepts the batched convention (default: True).
        chunk_atoms: at most this many atoms per model call (default: 4096).
        max_frames: raise ``ValueError`` if a structure (an atom with ``mode="atom"``) keeps
            more frames than this after pruning (``None``: no limit; never silent truncation).
        mode: ``"union"`` (default; the frame ensemble of a structure is the union over its
            atoms and the whole structure is evaluated in every frame: right for any model,
            message passing included) or ``"atom"`` (per-environment ECSE for strictly local
            models: each atom's outputs are symmetrized with the frames of its own
            environment, pruned and with a collinear fallback per atom, and structure outputs
            are sums of atomic ones; about ``2 x frames per atom`` environment evaluations
            per atom instead of ``2 x frames per structure`` structure evaluations). ``"atom"``
            needs a model implementing the locality protocol of
            :mod:`pointsym.symmetrize._local` (``atomic_outputs_local`` and ``r_cut``; e.g.
            :class:`~pointsym.models.PET` with ``n_gnn_layers=1``, :class:`NeighborMLP`),
            else ``ValueError``. The two modes are different (both exact) symmetrizations.
        r_cut_outer_max, beta, beta_weights, delta_r, omega, delta_omega, aux_threshold,
            aux_threshold_delta, prune_threshold, prune_threshold_delta, n_prunings,
            prune_turn_on, prune_turn_on_delta, eps, min_distance: see :class:`ECSEConfig`.

    Shapes:
        ``forward(positions (N, 3), numbers (N,), cell (S, 3, 3) | (3, 3) | None,
        pbc (S, 3) | bool | None, batch (N,) | None)`` -> the model's output structure
        (tensor or dict), structure outputs with a leading ``S`` axis.

    Notes:
        * The frame ensemble of a structure is the union of the frames of all its atoms and
          the whole structure is evaluated in each (as for message-passing models in the
          paper), so the cost is ``~2 x frames kept`` model evaluations per structure;
          ``last_stats`` records frames kept/before pruning, evaluations and ``w_aux``.
        * ``mode="atom"`` (local models) costs about ``2 x frames per atom`` *environment*
          evaluations per atom instead (energy + forces of a 64-atom Si cell with a 1-block
          PET: ~5x the bare model at r_cut 3.5 Å, ~7-9x at 5 Å, against ~170x and ~530-830x
          in union mode; ``benchmarks/ecse_cost.py``); ``batched`` is not used there,
          ``chunk_atoms`` bounds the environments per model call, and ``last_stats`` holds
          ``n_frames`` (summed per structure), ``n_frames_per_atom``, ``n_evaluations``
          (environment evaluations per structure) and the per-atom ``w_aux``.
        * Outputs are accumulated as ``c + sum_k wbar_k (y_k - c)`` with a detached
          reference ``c``: identical in exact arithmetic, but large constant parts of an
          output (self energies) no longer amplify float32 rounding of the weights into the
          forces.
        * The iterated pruning of the reference algorithm is C-infinity but can switch a
          frame off over a very narrow range of positions (each round sharpens the
          previous one), so forces can vary quickly there; use ``n_prunings=0`` for the
          smoothest (and most expensive) ensemble.

    Example:
        >>> import torch
        >>> from pointsym.symmetrize import ECSE, NeighborMLP
        >>> mlp = NeighborMLP(r_cut=3.0, hidden=8)           # not rotation invariant
        >>> sym = ECSE(mlp, r_cut=3.0, outputs={"energy": "scalar", "vector": "vector",
        ...            "atom_energy": "atom_scalar", "atom_vector": "atom_vector"})
        >>> x = torch.randn(6, 3, dtype=torch.float64) * 1.2
        >>> out = sym.double()(x, torch.ones(6, dtype=torch.long))
        >>> out["energy"].shape, out["vector"].shape, out["atom_vector"].shape
        (torch.Size([1]), torch.Size([1, 3]), torch.Size([6, 3]))
    """

    def __init__(
        self,
        model: Callable[..., Any],
        r_cut: float,
        *,
        outputs: Any = "scalar",
        aux_model: Any = "projection",
        reflections: bool = True,
        batched: bool = True,
        chunk_atoms: int = 4096,
        max_frames: int | None = None,
        mode: str = "union",
        r_cut_outer_max: float = 10.0,
        beta: float = 5.0,
        beta_weights: float = 1.0,
        delta_r: float = 0.15,
        omega: float = 0.2,
        delta_omega: float = 0.15,
        aux_threshold: float = 0.5,
        aux_threshold_delta: float = 0.5,
        prune_threshold: float = 0.9,
        prune_threshold_delta: float = 0.1,
        n_prunings: int = 4,
        prune_turn_on: float = 0.5,
        prune_turn_on_delta: float = 0.25,
        eps: float = 1e-10,
        min_distance: float | None = MIN_DISTANCE,
    ) -> None:
        super().__init__()
        if not callable(model):
            raise TypeError(f"Expected 'model' to be a torch.nn.Module or callable (got {type(model).__name__}).")
        self.model = model
        self.outputs = _parse_outputs(outputs)
        if isinstance(aux_model, str):
            check_choice("aux_model", aux_model, ("projection",))
        elif aux_model is not None and not callable(aux_model):
            raise TypeError(f"Expected 'aux_model' to be 'projection', None or a module (got {aux_model!r}).")
        self.aux_model = aux_model
        self.reflections = bool(reflections)
        self.batched = bool(batched)
        self.chunk_atoms = check_int("chunk_atoms", chunk_atoms, minimum=1)
        self.max_frames = None if max_frames is None else check_int("max_frames", max_frames, minimum=1)
        self.mode = check_choice("mode", mode, ("union", "atom"))
        if self.mode == "atom":
            check_local_model(model)
            if aux_model is not None and not isinstance(aux_model, str):
                check_local_model(aux_model, "aux_model")
        for name, value in {"beta": beta, "beta_weights": beta_weights, "delta_r": delta_r,
                            "delta_omega": delta_omega, "aux_threshold_delta": aux_threshold_delta,
                            "prune_threshold_delta": prune_threshold_delta,
                            "prune_turn_on_delta": prune_turn_on_delta, "eps": eps,
                            "r_cut_outer_max": r_cut_outer_max}.items():
            check_positive(name, value)
        check_positive("r_cut", r_cut)
        if not 0 < omega - delta_omega < omega < 1:
            raise ValueError(f"Expected 0 < omega - delta_omega < omega < 1 (got omega={omega}, "
                             f"delta_omega={delta_omega}).")
        self.config = ECSEConfig(
            r_cut=float(r_cut), r_cut_outer_max=r_cut_outer_max, beta=beta, beta_weights=beta_weights,
            delta_r=delta_r, omega=omega, delta_omega=delta_omega, aux_threshold=aux_threshold,
            aux_threshold_delta=aux_threshold_delta, prune_threshold=prune_threshold,
            prune_threshold_delta=prune_threshold_delta, n_prunings=check_int("n_prunings", n_prunings, minimum=0),
            prune_turn_on=prune_turn_on, prune_turn_on_delta=prune_turn_on_delta, eps=eps,
            min_distance=min_distance)
        self.last_stats: dict[str, Any] = {}

    def extra_repr(self) -> str:
        kinds = self.outputs.get(None, self.outputs)
        aux = self.aux_model
        if not (isinstance(aux, str) or aux is None):
            aux = type(aux).__name__
        return (f"mode={self.mode}, r_out={self.config.r_out}, outputs={kinds}, reflections={self.reflections}, "
                f"aux_model={aux}, group={'O(3)' if self.reflections else 'SO(3)'}")

    # ------------------------------------------------------------------ checkpoints
    @property
    def hypers(self) -> dict[str, Any]:
        """ECSE's own settings as a plain dict: ``ECSE(model, **sym.hypers)`` rebuilds it around ``model``.

        The wrapped model is not a setting (pass it again); neither is a module ``aux_model``
        (then absent here, pass ``aux_model=`` too). :meth:`save` stores both by class, hypers
        and weights, so :meth:`from_checkpoint` needs nothing else for pointsym models.
        """
        cfg = asdict(self.config)
        out: dict[str, Any] = {"r_cut": float(cfg.pop("r_cut")),
                               "outputs": self.outputs[None] if None in self.outputs else dict(self.outputs)}
        if self.aux_model is None or isinstance(self.aux_model, str):
            out["aux_model"] = self.aux_model
        out.update(reflections=self.reflections, batched=self.batched, chunk_atoms=self.chunk_atoms,
                   max_frames=self.max_frames, mode=self.mode, **cfg)
        return out

    def _checkpoint_payload(self, meta: dict[str, Any] | None) -> dict[str, Any]:
        if isinstance(self.model, ECSE):
            raise TypeError("ECSE.save does not support an ECSE wrapped in an ECSE.")
        wrapped = {"model": model_spec(self.model, "model"),
                   "aux_model": None if self.aux_model is None or isinstance(self.aux_model, str)
                   else model_spec(self.aux_model, "aux_model")}
        return {**model_payload(self, meta), "wrapped": wrapped}

    @classmethod
    def _from_payload(cls, payload: dict[str, Any], path: str | os.PathLike[str]) -> ECSE:
        wrapped = payload.get("wrapped")
        if not isinstance(wrapped, dict) or "model" not in wrapped:
            raise CheckpointError(f"{str(path)!r} is a damaged ECSE file (no 'wrapped' model entry).")
        hypers = dict(payload["hypers"])
        if wrapped.get("aux_model") is not None:
            hypers["aux_model"] = build_spec(wrapped["aux_model"], path)
        try:
            sym = cls(build_spec(wrapped["model"], path), **hypers)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{str(path)!r}: cannot rebuild an ECSE from the stored hypers {hypers!r} "
                                  f"({exc}).") from exc
        return load_state_into(sym, payload["state_dict"], path, dtype=payload.get("dtype"))

    # ------------------------------------------------------------------ frames
    @renamed_kwargs(species="numbers")
    def frames(
        self,
        positions: torch.Tensor,
        numbers: torch.Tensor,
        cell: torch.Tensor | None = None,
        pbc: Any = None,
        batch: torch.Tensor | None = None,
    ) -> FrameSet:
        """The frame ensemble (rotations, weights, ``w_aux``) of a batch; see :class:`FrameSet`
        (per atom with ``mode="atom"``)."""
        positions, numbers, cell, pbc, batch = check_structure_inputs(positions, numbers, cell, pbc, batch)
        self._check_dtype(positions)
        return compute_frames(positions, cell, pbc, batch, self.config,
                              group="atom" if self.mode == "atom" else "structure")

    # ------------------------------------------------------------------ model calls
    def _check_dtype(self, positions: torch.Tensor) -> None:
        """The wrapped model (and a module aux model) must compute in the dtype of the inputs."""
        for role, module in (("model", self.model), ("aux_model", self.aux_model)):
            if not isinstance(module, nn.Module):
                continue
            param = next((p for p in module.parameters() if p.is_floating_point()), None)
            if param is not None and param.dtype != positions.dtype:
                raise TypeError(f"'positions' dtype {positions.dtype} differs from the wrapped {role}'s dtype "
                                f"{param.dtype}; cast the inputs, or the wrapper with ecse.to({positions.dtype}).")

    def _call(self, module: Callable[..., Any], pos: torch.Tensor, numbers: torch.Tensor, cell: torch.Tensor,
              pbc: torch.Tensor, batch: torch.Tensor, counts: list[int]) -> dict[str | None, torch.Tensor]:
        """Call a model on ``len(counts)`` structures; returns ``{name: tensor}``.

        The inputs derive from ones validated at ECSE's public entry point, so the model runs
        inside :func:`pointsym.structures.trusted_inputs` (its own input checks are skipped).
        """
        with trusted_inputs():
            if self.batched:
                out = module(pos, numbers, cell, pbc, batch)
            else:
                parts, start = [], 0
                for s, n in enumerate(counts):
                    res = module(pos[start:start + n], numbers[start:start + n], cell[s], pbc[s])
                    parts.append(res)
                    start += n
                out = self._stack_single(parts)
        return self._check_outputs(out, len(counts), pos.shape[0], counts)

    def _stack_single(self, parts: list[Any]) -> Any:
        def cat(key: str | None) -> torch.Tensor:
            vals = [p if key is None else p[key] for p in parts]
            kind = self.outputs[key]
            return torch.cat(vals) if kind.startswith("atom_") else torch.stack(vals)

        if None in self.outputs:
            return cat(None)
        if not isinstance(parts[0], Mapping):
            raise TypeError("'outputs' is a dict, so the model must return a dict of tensors.")
        return {k: cat(k) for k in self.outputs}

    def _check_outputs(self, out: Any, n_struct: int, n_atoms: int,
                       counts: list[int] | None = None) -> dict[str | None, torch.Tensor]:
        if None in self.outputs:
            if not isinstance(out, torch.Tensor):
                raise TypeError(f"The model returned {type(out).__name__}; with a single declared kind in "
                                "'outputs' it must return one tensor (declare a dict for dict outputs).")
            out = {None: out}
        else:
            if not isinstance(out, Mapping):
                raise TypeError(f"'outputs' declares {sorted(self.outputs)} but the model returned a "
                                f"{type(out).__name__}, not a dict.")
            undeclared = sorted(set(out) - set(self.outputs))
            missing = sorted(set(self.outputs) - set(out))
            if undeclared or missing:
                raise ValueError(f"Model outputs {sorted(out)} do not match the declared 'outputs' "
                                 f"{sorted(self.outputs)} (undeclared: {undeclared}, missing: {missing}); declare "
                                 "every output and its kind.")
        for key, kind in self.outputs.items():
            y = out[key]
            name = "output" if key is None else repr(key)
            lead = n_atoms if kind.startswith("atom_") else n_struct
            base = kind.replace("atom_", "")
            tail = {"scalar": (), "vector": (3,), "tensor": (3, 3)}[base]
            if (not isinstance(y, torch.Tensor) or y.dim() < 1 + len(tail) or y.shape[0] != lead
                    or tuple(y.shape[y.dim() - len(tail):]) != tail):
                raise ValueError(_output_shape_message(name, kind, y, n_struct, n_atoms, counts, tail))
        return out

    # ------------------------------------------------------------------ evaluation
    def _copies(self, frames: FrameSet) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frame matrices of all evaluations (frames and their mirror images), their
        structure and their un-normalised weight."""
        mats, struct, w = frames.rotations, frames.structure, frames.weights
        if self.reflections:
            mirror = torch.tensor([1.0, -1.0, 1.0], dtype=mats.dtype, device=mats.device)
            mats = torch.cat([mats, mats * mirror])
            struct = torch.cat([struct, struct])
            w = torch.cat([w, w]) * 0.5
        return mats, struct, w

    def _frame_chunks(
        self, positions: torch.Tensor, numbers: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
        batch: torch.Tensor, mats: torch.Tensor, struct: torch.Tensor, wnorm: torch.Tensor,
    ) -> Iterator[dict[str | None, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
        """Yield, per chunk of frame evaluations, ``{name: (y_lab, row_index, row_weight)}``.

        ``y_lab`` is rotated back to the lab frame; its rows belong to structures (or atoms)
        ``row_index`` and carry the normalised frame weights ``row_weight``.
        """
        n_struct = cell.shape[0]
        counts = torch.bincount(batch, minlength=n_struct)
        order = torch.argsort(batch, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        sizes = counts[struct].cpu().numpy()
        bounds, acc, begin = [], 0, 0
        for c, n in enumerate(sizes):
            if acc and acc + n > self.chunk_atoms:
                bounds.append((begin, c))
                begin, acc = c, 0
            acc += int(n)
        if len(sizes):
            bounds.append((begin, len(sizes)))
        for lo, hi in bounds:
            cs = struct[lo:hi]
            cnt = counts[cs]
            n_copies = hi - lo
            atom_copy = torch.repeat_interleave(torch.arange(n_copies, device=cs.device), cnt)
            within = torch.arange(atom_copy.shape[0], device=cs.device) - (torch.cumsum(cnt, 0) - cnt)[atom_copy]
            atom_idx = order[starts[cs][atom_copy] + within]
            m = mats[lo:hi]
            pos_c = torch.einsum("ak,akl->al", positions[atom_idx], m[atom_copy])
            cell_c = torch.bmm(cell[cs], m)
            out = self._call(self.model, pos_c, numbers[atom_idx], cell_c, pbc[cs], atom_copy, cnt.tolist())
            w = wnorm[lo:hi]
            lab = {}
            for key, kind in self.outputs.items():
                if kind.startswith("atom_"):
                    lab[key] = (_rotate_back(out[key], kind, m[atom_copy]), atom_idx, w[atom_copy])
                else:
                    lab[key] = (_rotate_back(out[key], kind, m), cs, w)
            yield lab

    def _aux_outputs(
        self, positions: torch.Tensor, numbers: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
        batch: torch.Tensor, which: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str | None, torch.Tensor]]:
        """Auxiliary predictions of the structures ``which``: ``(atom_index, {name: lab output})``.

        Structure outputs have one row per entry of ``which``; per-atom outputs one row per
        entry of ``atom_index`` (the atoms of those structures).
        """
        sel = torch.isin(batch, which)
        atom_idx = torch.nonzero(sel)[:, 0]
        remap = torch.full((cell.shape[0],), -1, dtype=torch.long, device=batch.device)
        remap[which] = torch.arange(which.shape[0], device=batch.device)
        sub_batch = remap[batch[atom_idx]]
        counts = torch.bincount(sub_batch, minlength=which.shape[0]).tolist()
        if self.aux_model is None:
            raise ValueError(
                f"Structures {which.tolist()} have only (nearly) collinear neighbourhoods, so no ECSE frame is "
                "well defined; pass aux_model='projection' (molecules) or an intrinsically invariant aux_model."
            )
        if not isinstance(self.aux_model, str):
            grouped = torch.argsort(sub_batch, stable=True)  # contiguous structures (batched=False needs it)
            atom_idx, sub_batch = atom_idx[grouped], sub_batch[grouped]
            out = self._call(self.aux_model, positions[atom_idx], numbers[atom_idx], cell[which], pbc[which],
                             sub_batch, counts)
            return atom_idx, out
        if bool(pbc[which].any()):
            raise ValueError(
                f"Periodic structures {which[pbc[which].any(1)].tolist()} have only (nearly) collinear "
                "neighbourhoods; the 'projection' fallback is for molecules, pass an intrinsically invariant "
                "aux_model (e.g. PET(..., use_only_length=True)) to ECSE."
            )
        # Axis projection: every selected structure is evaluated laid along +x and -x.
        locals_, axes = [], []
        for s in range(which.shape[0]):
            pts = positions[atom_idx[sub_batch == s]]
            centroid, axis = principal_axis(pts)
            t = (pts - centroid) @ axis
            zeros = torch.zeros_like(t)
            locals_.append((torch.stack([t, zeros, zeros], 1), torch.stack([-t, zeros, zeros], 1)))
            axes.append(axis)
        n_sel = which.shape[0]
        pos_aux = torch.cat([p for pair in zip(*locals_) for p in pair])  # all "+" copies, then all "-" copies
        sub_numbers = numbers[atom_idx]
        order = torch.argsort(sub_batch, stable=True)
        sp_sorted = sub_numbers[order]
        numbers_aux = torch.cat([sp_sorted, sp_sorted])
        counts2 = counts + counts
        batch_aux = torch.repeat_interleave(torch.arange(2 * n_sel, device=batch.device),
                                            torch.tensor(counts2, device=batch.device))
        cell_aux = torch.zeros(2 * n_sel, 3, 3, dtype=positions.dtype, device=positions.device)
        pbc_aux = torch.zeros(2 * n_sel, 3, dtype=torch.bool, device=positions.device)
        out = self._call(self.model, pos_aux, numbers_aux, cell_aux, pbc_aux, batch_aux, counts2)
        axis = torch.stack(axes)  # (n_sel, 3)
        n_sub = int(sel.sum())
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.shape[0], device=order.device)
        res = {}
        for key, kind in self.outputs.items():
            y = out[key]
            if kind.startswith("atom_"):
                plus, minus = y[:n_sub][inverse], y[n_sub:][inverse]
                ax = axis[sub_batch]
            else:
                plus, minus = y[:n_sel], y[n_sel:]
                ax = axis
            res[key] = _axial(plus, minus, kind, ax)
        return atom_idx, res

    def _prepare(self, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, batch: torch.Tensor
                 ) -> tuple[FrameSet, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        frames = compute_frames(positions, cell, pbc, batch, self.config)
        n_frames = frames.n_frames
        if self.max_frames is not None and bool((n_frames > self.max_frames).any()):
            worst = int(torch.argmax(n_frames))
            raise ValueError(f"Structure {worst} keeps {int(n_frames[worst])} ECSE frames (> max_frames="
                             f"{self.max_frames}); raise max_frames or tighten the pruning.")
        mats, struct, w = self._copies(frames)
        z = frames.w_aux.clone().index_add(0, frames.structure, frames.weights)
        wnorm = w / z[struct]
        aux_w = frames.w_aux / z
        which = torch.nonzero(frames.w_aux > self.config.eps)[:, 0]
        self.last_stats = {
            "n_frames": n_frames.detach().cpu().numpy(),
            "n_candidates": frames.n_candidates.detach().cpu().numpy(),
            "n_evaluations": (n_frames * (2 if self.reflections else 1)).detach().cpu().numpy()
            + (frames.w_aux > self.config.eps).long().cpu().numpy() * (2 if self.aux_model == "projection" else 1),
            "w_aux": frames.w_aux.detach().cpu().numpy(),
        }
        return frames, mats, struct, wnorm, aux_w, which

    @renamed_kwargs(species="numbers")
    def forward(
        self,
        positions: torch.Tensor,
        numbers: torch.Tensor,
        cell: torch.Tensor | None = None,
        pbc: Any = None,
        batch: torch.Tensor | None = None,
    ) -> Any:
        """Symmetrized outputs (same container as the wrapped model); see the class docstring.

        The inputs are validated once, here; the wrapped model is then called on every chunk of
        frames inside :func:`pointsym.structures.trusted_inputs` (no repeated checks).
        """
        positions, numbers, cell, pbc, batch = check_structure_inputs(positions, numbers, cell, pbc, batch)
        self._check_dtype(positions)
        if self.mode == "atom":
            local = local_forward(self, positions, numbers, cell, pbc, batch)
            return local[None] if None in self.outputs else local
        n_struct, n_atoms = cell.shape[0], positions.shape[0]
        _, mats, struct, wnorm, aux_w, which = self._prepare(positions, cell, pbc, batch)
        result: dict[str | None, torch.Tensor | None] = {k: None for k in self.outputs}
        sizes = {k: n_atoms if kind.startswith("atom_") else n_struct for k, kind in self.outputs.items()}
        refs = {k: _Centered(sizes[k]) for k in self.outputs}

        def add(key: str | None, index: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> None:
            value = _weighted(refs[key].centered(index, y), w)
            acc = result[key]
            if acc is None:
                acc = value.new_zeros((sizes[key], *value.shape[1:]))
            result[key] = acc.index_add(0, index, value)

        for lab in self._frame_chunks(positions, numbers, cell, pbc, batch, mats, struct, wnorm):
            for key, (y, index, w) in lab.items():
                add(key, index, y, w)
        if which.numel():
            atom_idx, aux = self._aux_outputs(positions, numbers, cell, pbc, batch, which)
            for key, kind in self.outputs.items():
                if kind.startswith("atom_"):
                    add(key, atom_idx, aux[key], aux_w[batch[atom_idx]])
                else:
                    add(key, which, aux[key], aux_w[which])
        final = {k: result[k] + refs[k].ref for k in self.outputs}
        if None in self.outputs:
            return final[None]
        return final

    @renamed_kwargs(species="numbers")
    def energy_and_forces(
        self,
        positions: torch.Tensor,
        numbers: torch.Tensor,
        cell: torch.Tensor | None = None,
        pbc: Any = None,
        batch: torch.Tensor | None = None,
        *,
        forces: bool = True,
        stress: bool = False,
        create_graph: bool = False,
        energy_key: str = "energy",
    ) -> dict[str, torch.Tensor]:
        """Symmetrized energy and its exact derivatives (forces, stress).

        Back-propagates chunk by chunk (the frame graph is shared), so memory does not grow
        with the number of frames. ``create_graph=True`` falls back to plain autograd.
        Arguments as :func:`pointsym.structures.energy_and_forces`.
        """
        key = None if None in self.outputs else energy_key
        if key not in self.outputs or self.outputs[key] != "scalar":
            raise ValueError(f"energy_and_forces needs a 'scalar' output named {energy_key!r} (declared outputs: "
                             f"{self.outputs}).")
        if create_graph or not (forces or stress) or self.mode == "atom":
            # mode="atom": environments are small, one backward pass through the whole graph.
            out = autograd_energy_forces(self._energy_only(key), positions, numbers, cell, pbc, batch,
                                         forces=forces, stress=stress, create_graph=create_graph)
            return out if create_graph else {k: v.detach() for k, v in out.items()}
        positions, numbers, cell, pbc, batch = check_structure_inputs(positions, numbers, cell, pbc, batch)
        self._check_dtype(positions)
        n_struct = cell.shape[0]
        with torch.enable_grad():
            leaf = positions.detach().clone().requires_grad_(True)
            pos, cel, strain = strained_inputs(leaf, cell, batch, stress)
            wrt = [leaf] + ([strain] if strain is not None else [])
            grads = [torch.zeros_like(t) for t in wrt]
            energy = positions.new_zeros(n_struct)
            _, mats, struct, wnorm, aux_w, which = self._prepare(pos, cel, pbc, batch)

            ref = _Centered(n_struct)

            def accumulate(y: torch.Tensor, index: torch.Tensor, w: torch.Tensor) -> None:
                nonlocal energy
                contrib = _weighted(ref.centered(index, y), w)
                energy = energy.index_add(0, index, contrib.detach())
                if contrib.requires_grad:
                    g = torch.autograd.grad(contrib.sum(), wrt, retain_graph=True, allow_unused=True)
                    for acc, gi in zip(grads, g):
                        if gi is not None:
                            acc += gi

            for lab in self._frame_chunks(pos, numbers, cel, pbc, batch, mats, struct, wnorm):
                accumulate(*lab[key])
            if which.numel():
                _, aux = self._aux_outputs(pos, numbers, cel, pbc, batch, which)
                accumulate(aux[key], which, aux_w[which])
            energy = energy + ref.ref
        result = {"energy": energy}
        if forces:
            result["forces"] = -grads[0]
        if stress:
            result["stress"] = strain_to_stress(grads[1], cell, pbc)
        return result

    def _energy_only(self, key: str | None) -> Callable[..., torch.Tensor]:
        def fn(*args: Any) -> torch.Tensor:
            out = self(*args)
            return out if key is None else out[key]

        return fn

    def predict(
        self,
        frames: Any,
        *,
        forces: bool = True,
        stress: bool = False,
        batch_size: int = 1,
        energy_key: str = "energy",
    ) -> dict[str, np.ndarray]:
        """Symmetrized energies/forces/stress of ``ase.Atoms`` (see :func:`predict_structures`)."""
        return predict_structures(self, frames, forces=forces, stress=stress, batch_size=batch_size,
                                  energy_key=energy_key)
