"""Implementation of :class:`Trainer` (see package docstring)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pointsym.core import (
    CheckpointError,
    ConfigMismatchError,
    TrainingDivergedError,
    check_choice,
    check_int,
    check_positive,
    read_torch_file,
)

__all__ = ["RESUMABLE_CHANGES", "TrainConfig", "Trainer", "barrier", "config_changes", "init_weights",
           "is_main_process", "load_checkpoint", "move_aside", "seed_everything"]

CHECKPOINT_VERSION = 1

#: Settings that may differ between a run and its resume: more epochs (or patience) extend a
#: run, and where or how verbosely it runs does not change what it learns. Applied to the
#: top-level config and to the keys of ``config.extra``.
RESUMABLE_CHANGES = frozenset({"epochs", "patience", "quiet", "device", "num_workers", "out_dir", "resume",
                               "restart", "threads", "init_from", "max_minutes", "min_lr"})
_CHECKPOINT_FILES = ("last.pt", "best.pt", "metrics.json")

# loss_fn(model, batch) -> (scalar loss tensor, {metric name: float})
LossFn = Callable[[torch.nn.Module, Any], "tuple[torch.Tensor, dict[str, float]]"]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) for reproducible experiments."""
    seed = check_int("seed", seed, minimum=0)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class TrainConfig:
    """Hyper-parameters of a training run.

    Attributes:
        epochs: maximum number of epochs (default: 10).
        batch_size: per-process batch size (default: 32).
        lr: Adam learning rate (default: 1e-3).
        weight_decay: Adam weight decay (default: 0).
        seed: seed of weights, shuffling and dropout (default: 0).
        patience: early-stopping patience in epochs on the monitored validation metric;
            ``None`` disables early stopping (default: None).
        monitor: validation metric to select the best model (default: "loss").
        mode: ``"min"`` or ``"max"`` for ``monitor`` (default: "min").
        grad_clip: max gradient norm, ``None`` for no clipping (default: None).
        out_dir: directory for ``last.pt``, ``best.pt`` and ``metrics.json``; ``None`` keeps
            everything in memory (default: None).
        resume: continue from ``out_dir/last.pt`` when it exists (default: True). The stored
            settings must equal these ones (up to :data:`RESUMABLE_CHANGES`), otherwise
            :class:`~pointsym.core.ConfigMismatchError` names the changed keys.
        restart: move the checkpoints and metrics already in ``out_dir`` aside (into
            ``out_dir/previous/<n>/``, never deleted) and start fresh (default: False).
        device: torch device string (default: "cpu").
        quiet: disable progress bars (default: False).
        eval_requires_grad: run validation with autograd enabled, needed when the loss
            differentiates the model (forces = -dE/dx) (default: False).
        num_workers: DataLoader workers (default: 0).
        ema_decay: keep an exponential moving average of the weights (and float buffers),
            updated after every optimizer step with decay ``min(ema_decay, (1 + t) / (10 + t))``
            at step ``t`` (the warm-up keeps the random initial weights from dominating the
            early averages). Validation, ``best.pt`` (its ``"model"``), :meth:`load_best` and
            everything reading them use the averaged weights; ``last.pt`` keeps the raw
            weights for resuming plus the average under ``"ema"``. Typical: 0.99-0.9999
            (about ``1 / (1 - ema_decay)`` steps averaged); ``None`` disables it (default: None).
        max_minutes: stop after the first epoch that ends later than this many minutes of wall
            time after :meth:`fit` started (this session only; a rerun resumes and gets a new
            budget). ``None``: no limit (default: None).
        min_lr: stop once the learning rate of the first parameter group is below this, after
            the scheduler's step (a plateau schedule's natural end). ``None``: never (default: None).
        extra: free-form metadata copied into checkpoints and metrics (default: {}).
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    patience: int | None = None
    monitor: str = "loss"
    mode: str = "min"
    grad_clip: float | None = None
    out_dir: str | None = None
    resume: bool = True
    restart: bool = False
    device: str = "cpu"
    quiet: bool = False
    eval_requires_grad: bool = False
    num_workers: int = 0
    ema_decay: float | None = None
    max_minutes: float | None = None
    min_lr: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        check_int("epochs", self.epochs, minimum=0)
        check_int("batch_size", self.batch_size, minimum=1)
        check_positive("lr", self.lr)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_int("seed", self.seed, minimum=0)
        if self.patience is not None:
            check_int("patience", self.patience, minimum=1)
        check_choice("mode", self.mode, ("min", "max"))
        if self.grad_clip is not None:
            check_positive("grad_clip", self.grad_clip)
        if self.ema_decay is not None and not 0.0 < float(self.ema_decay) < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), e.g. 0.999 (about 1000 steps averaged), or None to "
                             f"train without weight averaging (got {self.ema_decay!r}).")
        if self.max_minutes is not None:
            check_positive("max_minutes", self.max_minutes)
        if self.min_lr is not None:
            check_positive("min_lr", self.min_lr, allow_zero=True)


def _dist_info() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from the torchrun environment (1 process otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world


def is_main_process() -> bool:
    """True in a single process and on rank 0 of a ``torchrun`` launch: the one that writes results."""
    return _dist_info()[0] == 0


def barrier() -> None:
    """Wait for every process of a ``torchrun`` launch (no-op in a single process or before
    :class:`Trainer` initialised the process group)."""
    if _dist_info()[2] > 1:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Load a pointsym Trainer checkpoint, refusing unreadable files and newer format versions.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is empty, truncated, not a torch file, not a pointsym
            checkpoint, or written by a newer format version.
    """
    path = Path(path)
    hint = ("; delete or move it, or rerun with --restart (which moves old checkpoints aside) to start fresh")
    try:
        ckpt = read_torch_file(path, map_location, pickled=True)
    except CheckpointError as exc:  # empty, truncated, not a torch file: named, plus what to do here
        raise CheckpointError(f"{str(exc).rstrip('.')}{hint}.") from exc
    if isinstance(ckpt, dict) and ckpt.get("format") == "pointsym-model":
        cls = ckpt.get("class", "model")
        raise CheckpointError(f"{str(path)!r} is a {cls} model file (written by {cls}.save), not a Trainer "
                              f"checkpoint; load it with {cls}.from_checkpoint, or start a training from its "
                              "weights with --init-from.")
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise CheckpointError(f"{str(path)!r} is not a pointsym checkpoint (no 'format_version'){hint}.")
    if ckpt["format_version"] > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} has format version {ckpt['format_version']}, newer than this "
            f"pointsym supports ({CHECKPOINT_VERSION}); upgrade pointsym."
        )
    if "model" not in ckpt:
        raise CheckpointError(f"{str(path)!r} is not a Trainer checkpoint (no model weights){hint}.")
    return ckpt


def init_weights(model: torch.nn.Module, path: str | os.PathLike[str], *, flag: str = "--init-from",
                 key: str | None = None) -> torch.nn.Module:
    """Load only the weights of ``path`` into ``model`` (no optimizer, history or RNG state).

    ``path`` is a model file (``Model.save``, ``format: "pointsym-model"``), a Trainer
    checkpoint (``last.pt``/``best.pt``, weights in ``"model"``, or the weight average in
    ``"ema"`` when the run kept one) or a bundle holding a model
    file under ``key``. A model of another class or architecture is a ``ValueError`` that
    names the differing hyper-parameters (or parameter shapes) and ``flag``.
    """
    from pointsym.core.checkpoints import is_model_payload, trainer_extra, trainer_weights

    name = str(path)
    raw = read_torch_file(path, map_location="cpu")
    if key is not None and isinstance(raw, dict) and is_model_payload(raw.get(key)):
        raw = raw[key]
    hypers = getattr(model, "hypers", None)
    if is_model_payload(raw):
        cls = raw.get("class")
        if cls != type(model).__name__:
            raise ValueError(f"{flag} {name!r} holds a {cls} model; this run trains a {type(model).__name__}.")
        stored = raw.get("hypers")
        state = raw.get("state_dict")
    elif (extra := trainer_extra(raw, path)) is not None:
        spec = extra.get("model")
        stored = spec.get("hypers") if isinstance(spec, dict) and spec.get("class") == type(model).__name__ else None
        state = trainer_weights(raw)
    else:
        raise CheckpointError(f"{flag} {name!r} is neither a pointsym model file nor a Trainer checkpoint.")
    if isinstance(stored, dict) and isinstance(hypers, dict):
        diff = {k: (stored.get(k), hypers.get(k)) for k in sorted(set(stored) | set(hypers))
                if _json_norm(stored.get(k)) != _json_norm(hypers.get(k))}
        # Data-derived settings (self energies, boxes) are weights too, and a DOS model's energy grid
        # only labels its output bins (a start on another grid is a fine-tune): compare architecture only.
        diff = {k: v for k, v in diff.items() if k not in ("self_energies", "e_min", "e_step")}
        if diff:
            shown = ", ".join(f"{k}: {a!r} in the file, {b!r} in this run" for k, (a, b) in diff.items())
            raise ValueError(f"{flag} {name!r} holds a model of another architecture ({shown}); pass the same "
                             "model options as the run that wrote it.")
    if not isinstance(state, dict):
        raise CheckpointError(f"{flag} {name!r} holds no model weights.")
    own = model.state_dict()
    bad = [f"{k}: {tuple(v.shape)} in the file, {tuple(own[k].shape)} here" for k, v in state.items()
           if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if bad or missing or unexpected:
        parts = bad[:3] + ([f"missing {missing[:3]}"] if missing else []) + (
            [f"unexpected {unexpected[:3]}"] if unexpected else [])
        raise ValueError(f"{flag} {name!r} holds weights of another architecture ({'; '.join(parts)}); pass the "
                         "same model options as the run that wrote it.")
    model.load_state_dict(state)
    return model


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    # config.extra is flattened recursively (extra.model.hypers.d_model), so that a changed
    # setting is named by itself rather than by the whole dict holding it.
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and (prefix or key == "extra") and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _json_norm(value: Any) -> Any:
    """``value`` after a JSON round trip, so that tuples equal lists and numpy scalars equal floats."""
    return json.loads(json.dumps(value, default=str))


def config_changes(stored: dict[str, Any], requested: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Settings that differ between a stored run and a requested one, ``{key: (stored, requested)}``.

    Keys of ``config.extra`` appear as ``"extra.<key>"``; keys in :data:`RESUMABLE_CHANGES`
    (at either level) and keys missing from the stored run (added in a later pointsym) are
    not compared. Values are compared after a JSON round trip (tuples equal lists).
    """
    a, b = _flatten(stored), _flatten(requested)
    changes = {}
    for key in sorted(set(a) | set(b)):
        if key.split(".")[-1] in RESUMABLE_CHANGES or key not in a:
            continue
        if key not in b or _json_norm(a[key]) != _json_norm(b[key]):
            changes[key] = (a.get(key), b.get(key))
    return changes


def move_aside(out_dir: str | os.PathLike[str]) -> Path | None:
    """Move ``last.pt``, ``best.pt`` and ``metrics.json`` of ``out_dir`` into ``out_dir/previous/<n>/``.

    Returns the folder they went to, or ``None`` when there was nothing to move. Nothing is
    deleted.
    """
    out = Path(out_dir)
    present = [out / f for f in _CHECKPOINT_FILES if (out / f).exists()]
    if not present:
        return None
    n = 1
    while (out / "previous" / str(n)).exists():
        n += 1
    dest = out / "previous" / str(n)
    dest.mkdir(parents=True)
    for f in present:
        os.replace(f, dest / f.name)
    return dest


class Trainer:
    """Minimal, model-agnostic training loop.

    Args:
        model: any ``torch.nn.Module``.
        loss_fn: ``loss_fn(model, batch) -> (loss, metrics)``; ``loss`` is a scalar tensor,
            ``metrics`` a dict of floats averaged over batches (weighted by batch size).
        config: a :class:`TrainConfig`.
        optimizer: defaults to Adam(lr, weight_decay).
        scheduler: optional LR scheduler, stepped once per epoch (``ReduceLROnPlateau`` is
            stepped with the monitored metric).
        collate_fn: passed to the DataLoader.

    Example:
        >>> import torch
        >>> from pointsym.training import TrainConfig, Trainer
        >>> x = torch.randn(64, 3); y = x.sum(1, keepdim=True)
        >>> data = list(zip(x, y))
        >>> model = torch.nn.Linear(3, 1)
        >>> def loss_fn(m, b):
        ...     loss = torch.nn.functional.mse_loss(m(b[0]), b[1]); return loss, {"mse": loss.item()}
        >>> hist = Trainer(model, loss_fn, TrainConfig(epochs=2, quiet=True)).fit(data)
        >>> len(hist)
        2
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: LossFn,
        config: TrainConfig | None = None,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        self.config.validate()
        self.rank, self.local_rank, self.world_size = _dist_info()
        self.device = torch.device(self.config.device)
        if self.world_size > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                backend = "nccl" if self.device.type == "cuda" else "gloo"
                dist.init_process_group(backend=backend)
            if self.device.type == "cuda":
                self.device = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(self.device)
        self.model = model.to(self.device)
        self._ddp_model: torch.nn.Module = self.model
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self._ddp_model = DistributedDataParallel(self.model, device_ids=ids)
        self.loss_fn = loss_fn
        self.optimizer = optimizer or torch.optim.Adam(
            self.model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )
        self.scheduler = scheduler
        self.collate_fn = collate_fn
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 0
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.out_dir = Path(self.config.out_dir) if self.config.out_dir else None
        # Without out_dir the best weights are kept in memory so load_best() still works.
        self._best_state: dict[str, torch.Tensor] | None = None
        # Weight average (config.ema_decay): a copy of every float tensor of the state dict.
        self.ema_state: dict[str, torch.Tensor] | None = None
        self.ema_steps = 0
        self._ema_avg: list[torch.Tensor] = []
        self._ema_live: list[torch.Tensor] = []
        self._ema_other: list[tuple[torch.Tensor, torch.Tensor]] = []
        #: Why the last :meth:`fit` stopped: "epochs", "patience", "max_minutes" or "min_lr".
        self.stopped_by: str | None = None

    # ------------------------------------------------------------------ helpers
    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _loader(self, data: Dataset | Sequence[Any], shuffle: bool, epoch: int) -> DataLoader:
        sampler: Sampler[Any] | None = None
        if self.world_size > 1:
            from torch.utils.data.distributed import DistributedSampler

            sampler = DistributedSampler(data, shuffle=shuffle, seed=self.config.seed)  # type: ignore[arg-type]
            sampler.set_epoch(epoch)
        gen = torch.Generator().manual_seed(self.config.seed + 7919 * epoch)
        return DataLoader(
            data,  # type: ignore[arg-type]
            batch_size=self.config.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            generator=gen,
            collate_fn=self.collate_fn,
            num_workers=self.config.num_workers,
        )

    def _to_device(self, batch: Any) -> Any:
        if isinstance(batch, torch.Tensor):
            return batch.to(self.device)
        if isinstance(batch, (list, tuple)):
            return type(batch)(self._to_device(b) for b in batch)
        if isinstance(batch, dict):
            return {k: self._to_device(v) for k, v in batch.items()}
        if hasattr(batch, "to"):
            return batch.to(self.device)
        return batch

    @staticmethod
    def _batch_size(batch: Any) -> int:
        if isinstance(batch, torch.Tensor):
            return int(batch.shape[0])
        if isinstance(batch, (list, tuple)) and batch:
            return Trainer._batch_size(batch[0])
        if isinstance(batch, dict) and batch:
            return Trainer._batch_size(next(iter(batch.values())))
        return int(getattr(batch, "batch_size", 1))

    def _reduce(self, sums: dict[str, float], count: float) -> dict[str, float]:
        if self.world_size > 1:
            import torch.distributed as dist

            keys = sorted(sums)
            t = torch.tensor([sums[k] for k in keys] + [count], dtype=torch.float64, device=self.device)
            dist.all_reduce(t)
            sums, count = dict(zip(keys, t[:-1].tolist())), float(t[-1])
        return {k: v / max(count, 1.0) for k, v in sums.items()}

    def _run_epoch(self, data: Any, train: bool, epoch: int) -> dict[str, float]:
        from tqdm.auto import tqdm

        self._ddp_model.train(train)
        loader = self._loader(data, shuffle=train, epoch=epoch)
        sums: dict[str, float] = {}
        count = 0.0
        desc = f"epoch {epoch + 1}/{self.config.epochs} {'train' if train else 'val'}"
        quiet = self.config.quiet or bool(os.environ.get("POINTSYM_QUIET")) or not self.is_main
        bar = tqdm(loader, desc=desc, leave=False, disable=quiet)
        grad_ctx = torch.enable_grad() if (train or self.config.eval_requires_grad) else torch.no_grad()
        with grad_ctx:
            for batch in bar:
                batch = self._to_device(batch)
                loss, metrics = self.loss_fn(self._ddp_model, batch)
                if not torch.isfinite(loss):
                    raise TrainingDivergedError(
                        f"Loss became {loss.item()} at epoch {epoch + 1} (learning rate {self.config.lr:g}); "
                        "lower the learning rate ('lr', --lr on the command line), clip the gradients "
                        "('grad_clip') or check the inputs for NaN."
                    )
                if train:
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if self.config.grad_clip is not None:
                        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
                    self.optimizer.step()
                    self._update_ema()
                bs = float(self._batch_size(batch))
                count += bs
                metrics = {"loss": float(loss.detach()), **metrics}
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * bs
                bar.set_postfix(loss=f"{metrics['loss']:.4g}")
        return self._reduce(sums, count)

    # ------------------------------------------------------------------ weight averaging
    def _init_ema(self) -> None:
        if self.config.ema_decay is None:
            return
        if self.ema_state is None:
            self.ema_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.ema_steps = 0
        # (average, live tensor) lists for one fused update per step; the live tensors share the
        # parameters' storage (load_state_dict copies in place, so they stay valid).
        live = self.model.state_dict()
        self._ema_avg = [self.ema_state[k] for k, v in live.items() if v.is_floating_point()]
        self._ema_live = [v for v in live.values() if v.is_floating_point()]
        self._ema_other = [(self.ema_state[k], v) for k, v in live.items() if not v.is_floating_point()]

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema_state is None or self.config.ema_decay is None:
            return
        self.ema_steps += 1
        decay = min(float(self.config.ema_decay), (1.0 + self.ema_steps) / (10.0 + self.ema_steps))
        if self._ema_avg:
            torch._foreach_lerp_(self._ema_avg, self._ema_live, 1.0 - decay)
        for a, v in self._ema_other:  # integer buffers (counters) follow the model
            a.copy_(v)

    @contextlib.contextmanager
    def _ema_swapped(self) -> Iterator[None]:
        """Context in which the model holds the averaged weights (no-op without EMA)."""
        if self.ema_state is None:
            yield
            return
        raw = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.ema_state)
        try:
            yield
        finally:
            self.model.load_state_dict(raw)

    def eval_state(self) -> dict[str, torch.Tensor]:
        """The weights validation uses: the average with ``ema_decay``, else the model's own."""
        return self.ema_state if self.ema_state is not None else self.model.state_dict()

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, epoch: int, *, best: bool = False) -> dict[str, Any]:
        """Checkpoint payload. ``best=True``: ``"model"`` holds the weights validation used
        (the average with ``ema_decay``), so every reader of ``best.pt`` gets them."""
        return {
            "format_version": CHECKPOINT_VERSION,
            "epoch": epoch,
            "model": self.eval_state() if best else self.model.state_dict(),
            "ema": self.ema_state,
            "ema_steps": self.ema_steps,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "history": self.history,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "config": asdict(self.config),
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
            },
        }

    def _save(self, name: str, epoch: int) -> None:
        if self.out_dir is None or not self.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.out_dir / f"{name}.ckpt.tmp"
        torch.save(self.state_dict(epoch, best=name == "best.pt"), tmp)
        os.replace(tmp, self.out_dir / name)  # atomic: a killed run never leaves half a file

    def barrier(self) -> None:
        """Wait for every process (no-op in a single process)."""
        if self.world_size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.barrier()

    def _maybe_resume(self) -> None:
        if self.out_dir is None:
            return
        if self.config.restart:
            if self.is_main:
                moved = move_aside(self.out_dir)
                if moved is not None and not self.config.quiet:
                    print(f"[restart] previous checkpoints moved to {moved}", flush=True)
            self.barrier()
            return
        if not self.config.resume:
            return
        path = self.out_dir / "last.pt"
        if not path.is_file():
            return
        ckpt = load_checkpoint(path, map_location=self.device)
        changes = config_changes(ckpt.get("config", {}), asdict(self.config))
        if changes:
            shown = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())
            raise ConfigMismatchError(
                f"{str(path)!r} holds a run with other settings ({shown}); resuming it would mix them. "
                "Use --restart to start fresh (the old checkpoints are moved aside, not deleted; add "
                "--init-from PATH to start from the weights of a checkpoint only), or another --out."
            )
        try:
            self.model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise ConfigMismatchError(
                f"{str(path)!r} holds a model of another architecture ({str(exc).splitlines()[0]}); use "
                "--restart or another --out."
            ) from exc
        if self.config.ema_decay is not None:
            if ckpt.get("ema") is None:
                raise ConfigMismatchError(f"{str(path)!r} was trained without weight averaging; resuming it with "
                                          "ema_decay would start the average mid-run. Use --restart, or "
                                          "--init-from PATH to start a new run from its weights.")
            self.ema_state = {k: v.to(self.device) for k, v in ckpt["ema"].items()}
            self.ema_steps = int(ckpt.get("ema_steps", 0))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt.get("scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        self.history = list(ckpt["history"])
        self.best_value = ckpt["best_value"]
        self.best_epoch = ckpt["best_epoch"]
        self.bad_epochs = ckpt["bad_epochs"]
        self.start_epoch = int(ckpt["epoch"]) + 1
        rng = ckpt["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])

    def _improved(self, value: float) -> bool:
        if self.best_value is None:
            return True
        return value < self.best_value if self.config.mode == "min" else value > self.best_value

    def write_metrics(self, extra: dict[str, Any] | None = None) -> Path | None:
        """Write ``out_dir/metrics.json`` (history, best epoch, config, extras)."""
        if self.out_dir is None or not self.is_main:
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        payload = {
            "history": self.history,
            "best_epoch": self.best_epoch,
            "best_value": self.best_value,
            "monitor": self.config.monitor,
            "config": asdict(self.config),
            **(extra or {}),
        }
        path = self.out_dir / "metrics.json"
        path.write_text(json.dumps(payload, indent=2, default=float))
        return path

    # ------------------------------------------------------------------ main loop
    def fit(self, train_data: Any, val_data: Any = None) -> list[dict[str, Any]]:
        """Train for ``config.epochs`` epochs (resuming if a checkpoint exists).

        Returns the history: one dict per epoch with ``train_*``/``val_*`` metrics,
        ``epoch`` (1-based) and ``seconds``.
        """
        seed_everything(self.config.seed)
        self._maybe_resume()
        self._init_ema()
        t_fit = time.perf_counter()
        self.stopped_by = "epochs"
        for epoch in range(self.start_epoch, self.config.epochs):
            t0 = time.perf_counter()
            row: dict[str, Any] = {"epoch": epoch + 1}
            row.update({f"train_{k}": v for k, v in self._run_epoch(train_data, True, epoch).items()})
            if val_data is not None:
                with self._ema_swapped():
                    row.update({f"val_{k}": v for k, v in self._run_epoch(val_data, False, epoch).items()})
            key = f"val_{self.config.monitor}" if val_data is not None else f"train_{self.config.monitor}"
            if key not in row:
                raise ValueError(f"Monitored metric {key!r} not produced by loss_fn (have {sorted(row)}).")
            value = float(row[key])
            if self.scheduler is not None:
                # Plateau schedulers need the monitored metric; the others step once per epoch.
                if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    self.scheduler.step(value)
                else:
                    self.scheduler.step()
            row["lr"] = float(self.optimizer.param_groups[0]["lr"])
            row["seconds"] = time.perf_counter() - t0
            self.history.append(row)
            if math.isfinite(value) and self._improved(value):
                self.best_value, self.best_epoch, self.bad_epochs = value, epoch + 1, 0
                self._save("best.pt", epoch)
                if self.out_dir is None:
                    self._best_state = {k: v.detach().clone() for k, v in self.eval_state().items()}
            else:
                self.bad_epochs += 1
            self._save("last.pt", epoch)
            self.write_metrics()
            if not self.config.quiet and self.is_main:
                shown = ", ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float))
                print(f"[epoch {epoch + 1}/{self.config.epochs}] {shown}", flush=True)
            if self.config.patience is not None and self.bad_epochs >= self.config.patience:
                self.stopped_by = "patience"
                break
            if epoch + 1 >= self.config.epochs:
                break
            if self.config.min_lr is not None and row["lr"] < self.config.min_lr:
                self.stopped_by = "min_lr"
                break
            if (self.config.max_minutes is not None
                    and time.perf_counter() - t_fit > 60.0 * self.config.max_minutes):
                self.stopped_by = "max_minutes"
                break
        # Rank 0 has written the final checkpoints: nobody reads best.pt before that.
        self.barrier()
        return self.history

    def load_best(self) -> torch.nn.Module:
        """Load the best weights seen so far (from ``out_dir/best.pt`` or memory) into the model."""
        if self.out_dir is not None and (self.out_dir / "best.pt").is_file():
            self.model.load_state_dict(load_checkpoint(self.out_dir / "best.pt", self.device)["model"])
        elif self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        return self.model
