"""Training NeSF: batches of crystals, query sampling (spec section 3.1) and the loss (3.2)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from pointsym.core import check_choice, check_int, check_positive, renamed_kwargs, warn_deprecated
from pointsym.fields._data import CrystalSet
from pointsym.fields._field import batched_nearest_atoms

__all__ = ["GLOBAL_SAMPLINGS", "PRECISIONS", "CrystalBatch", "NeSFLoss", "QuerySampler", "collate_crystals",
           "crystal_dataset", "grid_points"]

#: Training precisions of :class:`NeSFLoss`.
PRECISIONS = ("fp32", "bf16")
#: How :class:`QuerySampler` draws its global subset.
GLOBAL_SAMPLINGS = ("uniform", "importance")


@dataclass
class CrystalBatch:
    """A batch of crystals as flat tensors (what the Trainer moves to the device).

    Attributes:
        positions: ``(N, 3)`` atom positions (Å).
        species_index: ``(N,)`` long class indices of the model's vocabulary (``species`` is a
            deprecated alias).
        batch: ``(N,)`` long structure index of each atom (sorted).
        lengths: ``(B, 3)`` lattice lengths (Å).
        angles: ``(B, 3)`` lattice angles (rad).
        index: ``(B,)`` long position of each structure in its data set.
    """

    positions: torch.Tensor
    species_index: torch.Tensor
    batch: torch.Tensor
    lengths: torch.Tensor
    angles: torch.Tensor
    index: torch.Tensor

    @property
    def species(self) -> torch.Tensor:
        """Deprecated alias of :attr:`species_index`."""
        warn_deprecated("CrystalBatch.species is deprecated, use CrystalBatch.species_index (class indices)",
                        stacklevel=2)
        return self.species_index

    @property
    def batch_size(self) -> int:
        return int(self.lengths.shape[0])

    def to(self, device: Any) -> CrystalBatch:
        return CrystalBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


# One release of CrystalBatch(species=...) (the per-atom class indices are now ``species_index``).
CrystalBatch.__init__ = renamed_kwargs(species="species_index")(CrystalBatch.__init__)  # type: ignore[method-assign]


def crystal_dataset(crystals: CrystalSet, model: Any, dtype: torch.dtype = torch.float32) -> list[tuple]:
    """Per-structure tensors ``(positions, species index, lengths, angles, index)`` for a DataLoader.

    Species are mapped through ``model.species_index`` here, so unknown elements fail before training.
    """
    species = model.species_index(torch.as_tensor(crystals.numbers)).cpu()
    pos = torch.as_tensor(crystals.positions, dtype=dtype)
    lengths = torch.as_tensor(crystals.lengths, dtype=dtype)
    angles = torch.as_tensor(crystals.angles, dtype=dtype)
    off = crystals.offsets
    return [(pos[off[k]:off[k + 1]], species[off[k]:off[k + 1]], lengths[k], angles[k], k)
            for k in range(len(crystals))]


def collate_crystals(items: Sequence[tuple]) -> CrystalBatch:
    """Collate items of :func:`crystal_dataset` into a :class:`CrystalBatch`."""
    counts = torch.tensor([len(it[1]) for it in items])
    return CrystalBatch(
        positions=torch.cat([it[0] for it in items]),
        species_index=torch.cat([it[1] for it in items]).long(),
        batch=torch.repeat_interleave(torch.arange(len(items)), counts),
        lengths=torch.stack([it[2] for it in items]),
        angles=torch.stack([it[3] for it in items]),
        index=torch.tensor([int(it[4]) for it in items]),
    )


def grid_points(
    start: Sequence[float], stop: Sequence[float], spacing: float, *, inclusive: bool = False
) -> np.ndarray:
    """Regular grid ``arange(start_c, stop_c, spacing)`` per axis as ``(G, 3)`` points (Å).

    ``inclusive`` adds ``stop`` itself when it falls on the grid (up to 1e-9 Å).
    """
    spacing = check_positive("spacing", spacing)
    axes = []
    for a, b in zip(start, stop):
        n = int(np.floor((b - a) / spacing + (1e-9 if inclusive else -1e-9))) + 1
        axes.append(a + spacing * np.arange(max(n, 1)))
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


def _offsets(extent: Sequence[float]) -> np.ndarray:
    lo, hi, step = (float(v) for v in extent)
    axis = np.arange(lo, hi - 1e-9, step)  # arange(lo, hi, step) without float round-up at hi
    mesh = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


class QuerySampler:
    """Query points of one training step (spec 3.1).

    - global: grid of ``global_spacing`` over ``[box_min - margin, box_max + margin)``, each
      point jittered by N(0, ``global_jitter``^2) per structure (also in evaluation);
    - local (position field): per atom, the offsets ``arange(*local_extent)^3`` (64) jittered
      by N(0, ``local_jitter``^2) in training;
    - species: per atom, ``arange(*species_extent)^3`` (216) jittered by N(0, ``species_jitter``^2) in training.

    ``n_global``, ``n_local``, ``n_species`` optionally keep a random subset of that many
    queries per structure / per atom in training (``None`` = all, the reference); a CPU
    budget knob that keeps the sampling distribution and only reduces its size.

    ``global_sampling="importance"`` (with ``n_global``) draws the global subset, with
    replacement, from the mixture ``p = 1/2 uniform + 1/2 h / sum(h)`` over the grid with
    ``h = exp(-d1^2 / 2 s^2) + exp(-d2^2 / 2 s^2)`` (``d1``, ``d2``: distances of the grid
    point to its nearest and second-nearest atom, ``s`` = ``importance_sigma`` Å): more
    queries near atoms and between close atoms, where the field jumps. The queries
    then carry loss weights ``1 / (G p)`` (``position_weights``), so the expected loss is the
    uniform one.
    """

    def __init__(
        self,
        box_min: Sequence[float],
        box_max: Sequence[float],
        *,
        global_spacing: float = 1.0,
        global_margin: float = 1.0,
        global_jitter: float = 0.5,
        local_extent: Sequence[float] = (-0.6, 0.6, 0.3),
        local_jitter: float = 0.15,
        species_extent: Sequence[float] = (-0.3, 0.3, 0.1),
        species_jitter: float = 0.05,
        n_global: int | None = None,
        n_local: int | None = None,
        n_species: int | None = None,
        global_sampling: str = "uniform",
        importance_sigma: float = 1.0,
    ) -> None:
        margin = check_positive("global_margin", global_margin, allow_zero=True)
        self.global_sampling = check_choice("global_sampling", global_sampling, GLOBAL_SAMPLINGS)
        self.importance_sigma = check_positive("importance_sigma", importance_sigma)
        self.global_grid = grid_points(np.asarray(box_min) - margin, np.asarray(box_max) + margin, global_spacing)
        self.local_offsets = _offsets(local_extent)
        self.species_offsets = _offsets(species_extent)
        self.global_jitter = check_positive("global_jitter", global_jitter, allow_zero=True)
        self.local_jitter = check_positive("local_jitter", local_jitter, allow_zero=True)
        self.species_jitter = check_positive("species_jitter", species_jitter, allow_zero=True)
        self.n_global = None if n_global is None else check_int("n_global", n_global, 1, len(self.global_grid))
        self.n_local = None if n_local is None else check_int("n_local", n_local, 1, len(self.local_offsets))
        self.n_species = None if n_species is None else check_int("n_species", n_species, 1, len(self.species_offsets))
        self.settings = {
            "box_min": list(map(float, box_min)), "box_max": list(map(float, box_max)),
            "global_spacing": global_spacing, "global_margin": margin, "global_jitter": global_jitter,
            "local_extent": list(local_extent), "local_jitter": local_jitter, "species_extent": list(species_extent),
            "species_jitter": species_jitter, "n_global": n_global, "n_local": n_local, "n_species": n_species,
        }
        if self.global_sampling != "uniform":  # the default adds no key: older runs resume unchanged
            self.settings.update(global_sampling=self.global_sampling, importance_sigma=self.importance_sigma)

    def __repr__(self) -> str:
        return (f"QuerySampler(global={len(self.global_grid)}, local={len(self.local_offsets)}/atom, "
                f"species={len(self.species_offsets)}/atom, subsample=({self.n_global}, {self.n_local}, "
                f"{self.n_species}))")

    @staticmethod
    def _subset(n_groups: int, size: int, keep: int | None, device: Any, gen: torch.Generator | None) -> torch.Tensor:
        """Indices ``(n_groups, keep)`` of a random subset of ``range(size)`` per group (all if ``keep`` is None)."""
        if keep is None or keep >= size:
            return torch.arange(size, device=device).expand(n_groups, size)
        return torch.rand(n_groups, size, generator=gen, device=device).argsort(dim=1)[:, :keep]

    def sample(
        self, positions: torch.Tensor, batch: torch.Tensor, num_structures: int, *, train: bool = True,
        subsample: bool | None = None, generator: torch.Generator | None = None,
    ) -> dict[str, Any]:
        """Draw the queries of one batch.

        ``train`` switches the local/species jitter on (the global jitter is always on, as in
        the reference); ``subsample`` (default: ``train``) applies ``n_global/n_local/n_species``.

        Returns ``position_queries (Qp, 3)`` (global queries first, then local ones),
        ``position_batch (Qp,)``, ``species_queries (Qs, 3)``, ``species_batch (Qs,)`` and
        ``num_global`` (int).
        """
        dev, dt = positions.device, positions.dtype
        gen = generator
        sub = train if subsample is None else bool(subsample)

        def noise(shape: tuple[int, ...], sigma: float) -> torch.Tensor:
            if sigma == 0:
                return torch.zeros(shape, device=dev, dtype=dt)
            return torch.randn(shape, generator=gen, device=dev, dtype=dt) * sigma

        grid = torch.as_tensor(self.global_grid, device=dev, dtype=dt)
        weights = None
        if sub and self.n_global is not None and self.global_sampling == "importance":
            g_idx, weights = self._importance_subset(grid, positions.detach(), batch, num_structures, gen)
        else:
            g_idx = self._subset(num_structures, len(grid), self.n_global if sub else None, dev, gen)
        glob = grid[g_idx]  # (B, G', 3)
        glob = glob + noise(tuple(glob.shape), self.global_jitter)
        g_batch = torch.arange(num_structures, device=dev)[:, None].expand(glob.shape[:2])

        def around_atoms(offsets_np: np.ndarray, keep: int | None, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
            off = torch.as_tensor(offsets_np, device=dev, dtype=dt)
            idx = self._subset(positions.shape[0], len(off), keep if sub else None, dev, gen)
            pts = positions.detach()[:, None, :] + off[idx]
            if train:
                pts = pts + noise(tuple(pts.shape), sigma)
            return pts.reshape(-1, 3), batch[:, None].expand(pts.shape[:2]).reshape(-1)

        loc, loc_batch = around_atoms(self.local_offsets, self.n_local, self.local_jitter)
        spc, spc_batch = around_atoms(self.species_offsets, self.n_species, self.species_jitter)
        out = {
            "position_queries": torch.cat([glob.reshape(-1, 3), loc]),
            "position_batch": torch.cat([g_batch.reshape(-1), loc_batch]),
            "species_queries": spc,
            "species_batch": spc_batch,
            "num_global": int(glob.shape[0] * glob.shape[1]),
        }
        if weights is not None:
            out["position_weights"] = torch.cat([weights.reshape(-1), weights.new_ones(loc.shape[0])])
        return out

    def _importance_subset(self, grid: torch.Tensor, positions: torch.Tensor, batch: torch.Tensor, b: int,
                           gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Grid indices ``(B, n_global)`` drawn from the importance mixture, and their weights ``1 / (G p)``."""
        counts = torch.bincount(batch, minlength=b)
        start = torch.cumsum(counts, 0) - counts
        slot = torch.arange(positions.shape[0], device=positions.device) - start[batch]
        padded = positions.new_full((b, int(counts.max()), 3), float("inf"))
        padded[batch, slot] = positions
        d = torch.cdist(grid.expand(b, *grid.shape), padded.nan_to_num(posinf=1e6))  # (B, G, n_max)
        if d.shape[2] == 1:
            d = torch.cat([d, torch.full_like(d, 1e6)], dim=2)
        two = d.topk(2, dim=2, largest=False).values
        s2 = 2 * self.importance_sigma ** 2
        hard = torch.exp(-two[..., 0] ** 2 / s2) + torch.exp(-two[..., 1] ** 2 / s2)
        g = grid.shape[0]
        p = 0.5 / g + 0.5 * hard / hard.sum(dim=1, keepdim=True)
        idx = torch.multinomial(p, self.n_global, replacement=True, generator=gen)
        return idx, 1.0 / (g * p.gather(1, idx))


class NeSFLoss:
    """NeSF training loss (spec 3.2), usable as the Trainer's ``loss_fn(model, batch)``.

    ``L = w_pos * mean ||v_hat - v||^2 (per component) + w_species * CE + w_len * MSE(lengths)
    + w_ang * MSE(angles in rad)``, with weights 10, 0.1, 1, 1 by default.

    In evaluation mode (``model.training`` False) local/species jitter is off and the
    queries come from a generator seeded with the structures' indices, so validation losses
    are reproducible and comparable between epochs; ``eval_subsample`` keeps the sampler's
    subsampling in evaluation too (default True: cheap validation; False: full reference sampling).

    ``precision="bf16"`` runs the network's forward pass under ``torch.autocast`` with
    bfloat16 (the parameters, and hence the optimizer, stay float32; the decoders keep the
    query terms in float32, see :class:`PositionFieldDecoder`); the targets and the loss are
    float32. ``"fp32"`` (default) is plain float32.
    """

    def __init__(self, sampler: QuerySampler, *, position_weight: float = 10.0, species_weight: float = 0.1,
                 lengths_weight: float = 1.0, angles_weight: float = 1.0, eval_subsample: bool = True,
                 precision: str = "fp32") -> None:
        self.sampler = sampler
        self.eval_subsample = bool(eval_subsample)
        self.precision = check_choice("precision", precision, PRECISIONS)
        self.weights = {
            "position": check_positive("position_weight", position_weight, allow_zero=True),
            "species": check_positive("species_weight", species_weight, allow_zero=True),
            "lengths": check_positive("lengths_weight", lengths_weight, allow_zero=True),
            "angles": check_positive("angles_weight", angles_weight, allow_zero=True),
        }

    def __repr__(self) -> str:
        return f"NeSFLoss(weights={self.weights}, precision={self.precision!r}, sampler={self.sampler!r})"

    def __call__(self, model: torch.nn.Module, batch: CrystalBatch) -> tuple[torch.Tensor, dict[str, float]]:
        net = getattr(model, "module", model)  # unwrap DistributedDataParallel
        b = batch.batch_size
        gen = None
        if not model.training:
            gen = torch.Generator(device=batch.positions.device)
            gen.manual_seed(int(batch.index.sum()) * 1_000_003 + int(batch.index[0]) + 17)
        q = self.sampler.sample(batch.positions, batch.batch, b, train=model.training,
                                subsample=True if model.training else self.eval_subsample, generator=gen)
        with torch.no_grad():
            near_p = batched_nearest_atoms(batch.positions, batch.batch, q["position_queries"], q["position_batch"], b)
            near_s = batched_nearest_atoms(batch.positions, batch.batch, q["species_queries"], q["species_batch"], b)
        target_v = batch.positions[near_p] - q["position_queries"]
        target_s = batch.species_index[near_s]
        # every structure is encoded once per step; its latent serves all of its queries
        with torch.autocast(batch.positions.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            z = net.encode(batch.positions, batch.species_index, batch.batch, batch.lengths, batch.angles)
            pred_v = net.position_field(z, q["position_queries"], q["position_batch"])
            logits = net.species_logits(z, q["species_queries"], q["species_batch"])
            pred_len, pred_ang = net.lattice(z)
        pred_v, logits, pred_len, pred_ang = (t.float() for t in (pred_v, logits, pred_len, pred_ang))
        if q.get("position_weights") is not None:  # importance sampling: weights 1 / (G p) keep the expectation
            pos_mse = (q["position_weights"][:, None] * (pred_v - target_v) ** 2).mean()
        else:
            pos_mse = torch.nn.functional.mse_loss(pred_v, target_v)
        ce = torch.nn.functional.cross_entropy(logits, target_s)
        len_mse = torch.nn.functional.mse_loss(pred_len, batch.lengths)
        ang_mse = torch.nn.functional.mse_loss(pred_ang, batch.angles)
        w = self.weights
        loss = w["position"] * pos_mse + w["species"] * ce + w["lengths"] * len_mse + w["angles"] * ang_mse
        with torch.no_grad():
            n_glob = q["num_global"]
            local_err = torch.linalg.vector_norm(pred_v[n_glob:] - target_v[n_glob:], dim=-1).mean()
            metrics = {
                "position_mse": float(pos_mse),
                "local_position_mae": float(local_err),
                "species_ce": float(ce),
                "species_acc": float((logits.argmax(-1) == target_s).float().mean()),
                "lengths_mse": float(len_mse),
                "angles_mse": float(ang_mse),
            }
        return loss, metrics
