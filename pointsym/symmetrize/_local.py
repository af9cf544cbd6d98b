"""Per-environment ECSE (``ECSE(model, r_cut, mode="atom")``) for strictly local models.

Spec ``ecse_pet.md`` B.9, last sentence: for a model whose atomic outputs depend only on the
atom's own environment, each atom's contribution is symmetrized with the frames of that
environment alone, ``y_i = [sum_k w_ik M_k * f(env_i M_k) + w_aux,i y_aux,i] / [sum_k w_ik +
w_aux,i]``, and structure outputs are sums of atomic ones. The cost is about ``2 k_i``
environment evaluations per atom (``k_i`` frames kept for atom ``i``) instead of
``2 sum_i k_i`` evaluations of the whole structure.

The locality protocol
---------------------
A model takes part by exposing

* ``atomic_outputs_local(center_numbers (M,), edge_vectors (E, 3), edge_numbers (E,),
  edge_center (E,)) -> tensor | dict``: the outputs of ``M`` isolated environments; environment
  ``m`` is a centre atom of atomic number ``center_numbers[m]`` with the edges ``e`` where
  ``edge_center[e] == m`` (sorted by ``edge_center``): vectors ``edge_vectors[e]`` (Å) from the
  centre to neighbours of atomic number ``edge_numbers[e]``. It returns one row per environment
  for every declared output of ECSE: the atom's own value for per-atom kinds
  (``"atom_scalar"``, ...) and its contribution to the structure value for structure kinds
  (``"scalar"``, ...; the structure output is the sum over its atoms);
* ``r_cut`` (Å): neighbours farther than this do not affect an atom's outputs;
* optionally ``is_local`` (default ``True``): ``False`` declines (e.g. a PET with several
  message-passing blocks).

:class:`~pointsym.models.PET` (``n_gnn_layers == 1``) and :class:`NeighborMLP` implement it.

Collinear fallback (per atom)
-----------------------------
``w_aux,i`` switches on when atom ``i``'s own environment is (nearly) collinear (an atom with
one neighbour, a chain). ``aux_model="projection"`` then evaluates the wrapped model on the
environment *straightened* along its principal axis ``e`` (top eigenvector of
``sum_e f_c(r_e) r_e r_e^T``): neighbour ``e`` is laid at ``(s_e |r_e|, 0, 0)`` with
``s_e = sign(r_e . e)``, for ``e`` and ``-e`` (averaged; vectors keep their axial part, tensors
their axially symmetric part). Distances to the centre are kept, so a neighbour still
crosses the model's cutoff smoothly, and for an exactly collinear environment the result is
the model's own prediction. The sign ``s_e`` jumps where a neighbour is exactly perpendicular
to the axis; with ``w_aux,i > 0`` that can only happen for a neighbour at the edge of the
frame cutoff (any well-placed perpendicular neighbour defines a good frame), where its
contribution is switched off by the model's own cutoff when ``r_cut`` of ECSE and of the
model agree. Alternatively, ``aux_model`` may be an intrinsically invariant local model
(e.g. ``PET(..., n_gnn_layers=1, use_only_length=True)``), evaluated on the lab-frame
environment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from pointsym.structures import batched_neighbor_list, trusted_inputs
from pointsym.symmetrize._fallback import _TopEigenvector
from pointsym.symmetrize._frames import FrameSet, compute_frames
from pointsym.symmetrize._switching import cutoff_switch

if TYPE_CHECKING:  # pragma: no cover
    from pointsym.symmetrize._ecse import ECSE

__all__ = ["check_local_model", "is_local_model", "local_forward"]


def is_local_model(model: Any) -> bool:
    """Whether ``model`` implements the locality protocol (and does not decline it)."""
    return (callable(getattr(model, "atomic_outputs_local", None)) and bool(getattr(model, "is_local", True))
            and getattr(model, "r_cut", None) is not None)


def check_local_model(model: Any, role: str = "model") -> float:
    """Raise a ``ValueError`` unless ``model`` is local; return its cutoff (Å)."""
    if is_local_model(model):
        return float(model.r_cut)
    name = type(model).__name__
    if getattr(model, "n_gnn_layers", 1) != 1 and callable(getattr(model, "atomic_outputs_local", None)):
        why = (f"a {name} with n_gnn_layers={model.n_gnn_layers} passes messages, so an atom's outputs depend on "
               "atoms beyond its own environment")
    elif callable(getattr(model, "atomic_outputs_local", None)) and not getattr(model, "is_local", True):
        why = f"{name}.is_local is False"
    elif callable(getattr(model, "atomic_outputs_local", None)) and getattr(model, "r_cut", None) is None:
        why = f"{name} has atomic_outputs_local but no 'r_cut' attribute (the environment radius)"
    else:
        why = (f"{name} does not declare locality (it needs a method atomic_outputs_local(center_numbers, "
               "edge_vectors, edge_numbers, edge_center) and an 'r_cut'; see pointsym.symmetrize._local)")
    raise ValueError(f"ECSE(mode='atom') symmetrizes each atomic environment on its own and needs a strictly "
                     f"local {role}, but {why}. Use mode='union' (the default) for this {role}.")


def _check_rows(sym: ECSE, out: Any, n_env: int) -> dict[str | None, torch.Tensor]:
    if None in sym.outputs:
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"atomic_outputs_local returned {type(out).__name__}; with a single declared kind in "
                            "'outputs' it must return one tensor.")
        out = {None: out}
    elif not isinstance(out, dict) or not set(sym.outputs) <= set(out):
        got = sorted(map(str, out)) if isinstance(out, dict) else type(out).__name__
        raise ValueError(f"atomic_outputs_local returned {got}; it must return a dict with every declared output "
                         f"{sorted(map(str, sym.outputs))}.")
    for key, kind in sym.outputs.items():
        y = out[key]
        tail = {"scalar": 0, "vector": 1, "tensor": 2}[kind.replace("atom_", "")]
        if not isinstance(y, torch.Tensor) or y.dim() < 1 + tail or y.shape[0] != n_env or \
                tuple(y.shape[y.dim() - tail:]) != (3,) * tail:
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"atomic_outputs_local output {'output' if key is None else repr(key)} (declared "
                             f"{kind!r}) must have one row per environment ({n_env}) and last axes {(3,) * tail}; "
                             f"got {shape}.")
    return out


def _gather_edges(centers: torch.Tensor, edge_start: torch.Tensor, edge_count: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges of the environments centred on ``centers``: ``(edge_index, environment_of_edge)``."""
    cnt = edge_count[centers]
    env = torch.repeat_interleave(torch.arange(centers.shape[0], device=centers.device), cnt)
    within = torch.arange(env.shape[0], device=centers.device) - (torch.cumsum(cnt, 0) - cnt)[env]
    return edge_start[centers][env] + within, env


def _call_local(sym: ECSE, module: Any, centers: torch.Tensor, numbers: torch.Tensor, vec: torch.Tensor,
                nb_numbers: torch.Tensor, env: torch.Tensor) -> dict[str | None, torch.Tensor]:
    with trusted_inputs():
        out = module.atomic_outputs_local(numbers[centers], vec, nb_numbers, env)
    return _check_rows(sym, out, centers.shape[0])


def _rotate(y: torch.Tensor, kind: str, mats: torch.Tensor) -> torch.Tensor:
    from pointsym.symmetrize._ecse import _rotate_back

    return _rotate_back(y, kind, mats)


def _axial(y_plus: torch.Tensor, y_minus: torch.Tensor, kind: str, axis: torch.Tensor) -> torch.Tensor:
    """Combine the ``+e`` / ``-e`` projected evaluations into an equivariant lab-frame value."""
    base = kind.replace("atom_", "")
    extra = y_plus.dim() - 1 - {"scalar": 0, "vector": 1, "tensor": 2}[base]
    axb = axis.reshape(axis.shape[0], *([1] * extra), 3)
    if base == "scalar":
        return 0.5 * (y_plus + y_minus)
    if base == "vector":
        return 0.5 * (y_plus[..., 0:1] - y_minus[..., 0:1]) * axb
    eye = torch.eye(3, dtype=axis.dtype, device=axis.device)
    eet = axb[..., :, None] * axb[..., None, :]

    def sym(t: torch.Tensor) -> torch.Tensor:
        a = t[..., 0, 0][..., None, None]
        b = 0.5 * (t[..., 1, 1] + t[..., 2, 2])[..., None, None]
        return a * eet + b * (eye - eet)

    return 0.5 * (sym(y_plus) + sym(y_minus))


def local_forward(sym: ECSE, positions: torch.Tensor, numbers: torch.Tensor, cell: torch.Tensor,
                  pbc: torch.Tensor, batch: torch.Tensor) -> dict[str | None, torch.Tensor]:
    """Per-environment ECSE outputs ``{name: tensor}`` of canonical, validated inputs."""
    cfg = sym.config
    model_r_cut = check_local_model(sym.model)
    n_atoms, n_struct = positions.shape[0], cell.shape[0]
    dev = positions.device
    # One pair search for both the model's environments and the frames.
    r_search = max(model_r_cut, cfg.search_cutoff)
    i, j, _, vec = batched_neighbor_list(positions, cell, pbc, batch, r_cut=r_search, min_distance=cfg.min_distance)
    frames: FrameSet = compute_frames(positions, cell, pbc, batch, cfg, group="atom", neighbors=(i, vec))
    if r_search > model_r_cut:
        inside = (vec.detach() ** 2).sum(-1) < model_r_cut ** 2
        i, j, vec = i[inside], j[inside], vec[inside]
    edge_count = torch.bincount(i, minlength=n_atoms)
    edge_start = torch.cumsum(edge_count, 0) - edge_count
    nb_numbers = numbers[j]

    n_frames = frames.n_frames  # (N,)
    if sym.max_frames is not None and bool((n_frames > sym.max_frames).any()):
        worst = int(torch.argmax(n_frames))
        raise ValueError(f"Atom {worst} keeps {int(n_frames[worst])} ECSE frames (> max_frames={sym.max_frames}); "
                         "raise max_frames or tighten the pruning.")
    mats, _, w = sym._copies(frames)
    centers = torch.cat([frames.center, frames.center]) if sym.reflections else frames.center
    z = frames.w_aux.clone().index_add(0, frames.center, frames.weights)
    wnorm = w / z[centers]
    aux_w = frames.w_aux / z
    which = torch.nonzero(frames.w_aux > cfg.eps)[:, 0]
    per_eval = 2 if sym.reflections else 1
    n_aux_eval = 2 if sym.aux_model == "projection" else 1
    atom_evals = n_frames * per_eval + (frames.w_aux > cfg.eps).long() * n_aux_eval
    sym.last_stats = {
        "mode": "atom",
        "n_frames": torch.zeros(n_struct, dtype=torch.long, device=dev).index_add(0, batch, n_frames).cpu().numpy(),
        "n_frames_per_atom": n_frames.detach().cpu().numpy(),
        "n_candidates": torch.zeros(n_struct, dtype=torch.long, device=dev).index_add(
            0, batch, frames.n_candidates).cpu().numpy(),
        "n_evaluations": torch.zeros(n_struct, dtype=torch.long, device=dev).index_add(0, batch, atom_evals)
        .cpu().numpy(),
        "w_aux": frames.w_aux.detach().cpu().numpy(),
    }

    from pointsym.symmetrize._ecse import _Centered, _weighted

    result: dict[str | None, torch.Tensor | None] = {k: None for k in sym.outputs}
    refs = {k: _Centered(n_atoms) for k in sym.outputs}

    def add(key: str | None, index: torch.Tensor, y: torch.Tensor, wk: torch.Tensor) -> None:
        value = _weighted(refs[key].centered(index, y), wk)
        acc = result[key]
        if acc is None:
            acc = value.new_zeros((n_atoms, *value.shape[1:]))
        result[key] = acc.index_add(0, index, value)

    n_copies = mats.shape[0]
    for lo in range(0, n_copies, sym.chunk_atoms):
        hi = min(lo + sym.chunk_atoms, n_copies)
        c, m = centers[lo:hi], mats[lo:hi]
        e_idx, env = _gather_edges(c, edge_start, edge_count)
        local = torch.einsum("ek,ekl->el", vec[e_idx], m[env])  # coordinates in the frame (columns = axes)
        out = _call_local(sym, sym.model, c, numbers, local, nb_numbers[e_idx], env)
        for key, kind in sym.outputs.items():
            add(key, c, _rotate(out[key], kind, m), wnorm[lo:hi])

    if which.numel():
        for key, y in _aux_local(sym, which, numbers, vec, nb_numbers, edge_start, edge_count, model_r_cut).items():
            add(key, which, y, aux_w[which])

    atomic = {k: result[k] + refs[k].ref for k in sym.outputs}
    final = {}
    for key, kind in sym.outputs.items():
        y = atomic[key]
        final[key] = y if kind.startswith("atom_") else y.new_zeros((n_struct, *y.shape[1:])).index_add(0, batch, y)
    return final


def _aux_local(sym: ECSE, which: torch.Tensor, numbers: torch.Tensor, vec: torch.Tensor, nb_numbers: torch.Tensor,
               edge_start: torch.Tensor, edge_count: torch.Tensor, model_r_cut: float
               ) -> dict[str | None, torch.Tensor]:
    """Collinear-fallback outputs (lab frame) of the atoms ``which``, one row per atom."""
    if sym.aux_model is None:
        raise ValueError(f"Atoms {which.tolist()} have only (nearly) collinear environments, so no ECSE frame is "
                         "well defined; pass aux_model='projection' or an intrinsically invariant local aux_model.")
    e_idx, env = _gather_edges(which, edge_start, edge_count)
    v = vec[e_idx]
    if not isinstance(sym.aux_model, str):
        return _call_local(sym, sym.aux_model, which, numbers, v, nb_numbers[e_idx], env)
    n_sel = which.shape[0]
    r = torch.sqrt((v ** 2).sum(-1) + torch.finfo(v.dtype).tiny)
    wc = cutoff_switch(r, model_r_cut, sym.config.delta_r)
    moment = v.new_zeros(n_sel, 3, 3).index_add(0, env, wc[:, None, None] * v[:, :, None] * v[:, None, :])
    axis = _TopEigenvector.apply(moment)  # (n_sel, 3), sign arbitrary (both signs are evaluated)
    sign = torch.where((v * axis[env]).sum(-1).detach() >= 0, 1.0, -1.0).to(v.dtype)
    zeros = torch.zeros_like(r)
    plus = torch.stack([sign * r, zeros, zeros], 1)
    centers2 = torch.cat([which, which])
    env2 = torch.cat([env, env + n_sel])
    out = _call_local(sym, sym.model, centers2, numbers, torch.cat([plus, -plus]), torch.cat([nb_numbers[e_idx]] * 2),
                      env2)
    return {key: _axial(out[key][:n_sel], out[key][n_sel:], kind, axis) for key, kind in sym.outputs.items()}
