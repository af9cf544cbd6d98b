"""``pointsym csnn-shapes``: rotated ModelNet10 classification with CSNN or PointNet.

Trains one model with training rotations ``z`` (about the vertical axis) or ``so3`` (Haar
uniform), plus the paper's augmentation (anisotropic scaling U(0.8, 1.2) per axis,
translation U(-0.1, 0.1), jitter N(0, 0.01^2) clipped to 0.05), and evaluates it on the test
split under each requested test rotation (optionally with voting over several rotations).
The pairs z/z, z/SO3 and SO3/SO3 of the papers need two trainings (``--train-rot z`` with
``--test-rot z,so3`` and ``--train-rot so3``).

The model is selected on a held-out validation part of the training split (not on the test
set, unlike the reference code). ``--benchmark-shells 1,2,4,8,16`` instead measures the
training time per epoch and the inference time per batch of the CSNN versus the number of
spatial shells; ``--summarize`` collects finished runs into one table and plot.

Fair comparisons: ``--max-minutes M`` gives a run a training-time budget (CPU time by default,
``--budget-clock``), checked between epochs; ``--search lr=1e-3,3e-3 dropout=0.1,0.3`` trains
one run per setting and compares them on the validation split only (``<run>_search.json``);
``--seeds 0,1,2`` repeats a run per seed and writes the mean and sample std
(``<run>_seeds.json``). ``--radial soft`` and ``--global-pool mean+max`` are options beyond
the reference CSNN (defaults: the reference).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pointsym.core import check_choice, check_int, check_positive
from pointsym.experiments.common.cli import (
    add_common_arguments,
    add_dataclass_arguments,
    progress,
    validate_options,
)
from pointsym.experiments.common.results import save_results

__all__ = [
    "ShapesConfig",
    "augment",
    "benchmark_shells",
    "build_model",
    "evaluate",
    "load_shapes",
    "n_parameters",
    "register",
    "rotate_batch",
    "run",
    "run_grid",
    "search_settings",
    "summarize",
]

ROTATIONS = ("z", "so3")


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc


def _rot_tuple(text: str) -> tuple[str, ...]:
    vals = tuple(t.strip().lower() for t in text.split(",") if t.strip())
    for v in vals:
        if v not in ROTATIONS:
            raise argparse.ArgumentTypeError(f"expected z, so3 or z,so3 (got {text!r})")
    return vals


@dataclass
class ShapesConfig:
    """Settings of one ``csnn-shapes`` run (defaults: the CPU-sized CSNN of the README).

    Attributes:
        model: ``"csnn"`` or ``"pointnet"``.
        train_rot: rotations during training, ``"z"`` or ``"so3"``.
        test_rot: test rotations to evaluate, a subset of ``("z", "so3")``.
        epochs, batch_size, lr, weight_decay: optimisation (Adam, cosine learning-rate decay over
            ``epochs``).
        max_minutes, budget_clock: training-time budget (``None``: train all ``epochs``) and
            the clock it is counted by (``"cpu"`` or ``"wall"``); see ``--max-minutes``.
        train_per_class: at most this many training shapes per class (``None``: all).
        val_fraction: stratified part of the training split held out for model selection.
        votes: test rotations per shape whose softmax outputs are averaged.
        n_points: points per cloud.
        level, n_shells, n_channels, base_width, hidden, dropout, mapping, radial_kernel, radial,
            global_pool: CSNN.
        pointnet_scale, pointnet_dropout: width multiplier (1.0 = original widths) and dropout
            of PointNet.
        seed: seed of the split, initialisation, augmentation and test rotations.
    """

    model: str = field(default="csnn", metadata={
        "help": "classifier: the concentric spherical network (csnn) or the PointNet baseline",
        "choices": ("csnn", "pointnet")})
    train_rot: str = field(default="z", metadata={
        "help": "random rotations of the training shapes: z (about the vertical axis) or so3 (uniform)",
        "choices": ROTATIONS})
    test_rot: tuple[str, ...] = field(default=("z", "so3"), metadata={
        "help": "test rotations, comma-separated", "type": _rot_tuple, "metavar": "z,so3"})
    epochs: int = field(default=10, metadata={"help": "total epochs, also the length of the cosine learning-rate "
                                                      "schedule (a rerun into the same --out resumes)",
                                              "unit": "epochs", "min": 1})
    max_minutes: float | None = field(default=None, metadata={
        "help": "training-time budget of the run, counted by --budget-clock over all its sessions: between epochs, "
                "training stops at the epoch boundary nearest to the budget (at least one epoch). --epochs stays "
                "the cap and the length of the cosine schedule, so set it to about the epochs that fit. A rerun "
                "with the same or a larger budget resumes. The epoch count reached depends on the machine (and, "
                "for wall, its load): the JSON records it under 'budget'", "unit": "min",
        "default_help": "no limit", "gt": 0.0})
    budget_clock: str = field(default="cpu", metadata={
        "help": "what --max-minutes counts: cpu (CPU time of this process, all its threads: robust to other jobs on "
                "a shared machine) or wall (the Trainer's elapsed epoch seconds)", "choices": ("cpu", "wall")})
    batch_size: int = field(default=32, metadata={"help": "batch size (>= 2, for batch normalisation)",
                                                  "unit": "shapes", "min": 2})
    lr: float = field(default=1e-3, metadata={"help": "initial Adam learning rate, cosine decay to 0", "gt": 0.0})
    weight_decay: float = field(default=2.7e-7, metadata={
        "help": "Adam weight decay: L2 penalty coefficient added to every weight's gradient, >= 0", "min": 0.0})
    train_per_class: int | None = field(default=None, metadata={
        "help": "at most this many training shapes per class", "unit": "shapes", "default_help": "all", "min": 2})
    val_fraction: float = field(default=0.1, metadata={
        "help": "stratified fraction of the training split held out for model selection, in (0, 0.5)",
        "gt": 0.0, "lt": 0.5})
    votes: int = field(default=1, metadata={"help": "test-time rotation votes per shape", "min": 1})
    n_points: int = field(default=1024, metadata={"help": "points per cloud, at most 1024", "unit": "points",
                                                  "min": 1, "max": 1024})
    level: int = field(default=2, metadata={"help": "icosphere level (0-6)", "group": "CSNN", "min": 0, "max": 6})
    n_shells: int = field(default=4, metadata={"help": "spatial shells R", "group": "CSNN", "min": 1})
    n_channels: int = field(default=4, metadata={"help": "fine shells per spatial shell C", "group": "CSNN",
                                                 "min": 1})
    base_width: int = field(default=16, metadata={"help": "first block width", "unit": "channels", "group": "CSNN",
                                                  "min": 1})
    hidden: tuple[int, ...] = field(default=(256, 128), metadata={
        "help": "head hidden sizes", "type": _int_tuple, "metavar": "256,128", "group": "CSNN", "min": 1})
    dropout: float = field(default=0.14, metadata={"help": "head dropout probability, in [0, 1)", "group": "CSNN",
                                                   "min": 0.0, "lt": 1.0})
    mapping: str = field(default="rbf", metadata={"help": "mapping of the points onto the spherical grids: "
                                                          "Gaussian rbf or constant", "choices": ("rbf", "constant"),
                                                  "group": "CSNN"})
    radial_kernel: int = field(default=3, metadata={"help": "co-radial kernel size (odd)", "unit": "shells",
                                                    "group": "CSNN", "min": 1})
    radial: str = field(default="hard", metadata={
        "help": "radial assignment of a point to the shells: hard (reference: its own shell) or soft (split "
                "linearly between the two nearest shells; not in the reference)", "choices": ("hard", "soft"),
        "group": "CSNN"})
    global_pool: str = field(default="max", metadata={
        "help": "invariant readout of every block: max (reference) or mean+max (both, concatenated; not in the "
                "reference)", "choices": ("max", "mean+max"), "group": "CSNN"})
    pointnet_scale: float = field(default=0.25, metadata={"help": "width multiplier of PointNet (1.0 = original)",
                                                          "group": "PointNet", "gt": 0.0})
    pointnet_dropout: float = field(default=0.3, metadata={
        "help": "PointNet dropout before its last linear layer, in [0, 1) (the paper's keep 0.7)",
        "group": "PointNet", "min": 0.0, "lt": 1.0})
    seed: int = field(default=0, metadata={"cli": False})  # the shared --seed of the run group

    def validate(self) -> ShapesConfig:
        check_choice("model", self.model, ("csnn", "pointnet"))
        check_choice("train_rot", self.train_rot, ROTATIONS)
        if not self.test_rot:
            raise ValueError("Expected at least one test rotation in 'test_rot' (z and/or so3).")
        for t in self.test_rot:
            check_choice("test_rot", t, ROTATIONS)
        check_int("epochs", self.epochs, minimum=0)
        check_int("batch_size", self.batch_size, minimum=2)
        check_positive("lr", self.lr)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        if self.train_per_class is not None:
            check_int("train_per_class", self.train_per_class, minimum=2)
        if not 0.0 < self.val_fraction < 0.5:
            raise ValueError(f"Expected 'val_fraction' in (0, 0.5) (got {self.val_fraction}).")
        check_int("votes", self.votes, minimum=1)
        check_int("n_points", self.n_points, minimum=1, maximum=1024)
        check_positive("pointnet_scale", self.pointnet_scale)
        if self.max_minutes is not None:
            check_positive("max_minutes", self.max_minutes)
        check_choice("budget_clock", self.budget_clock, ("cpu", "wall"))
        check_choice("radial", self.radial, ("hard", "soft"))
        check_choice("global_pool", self.global_pool, ("max", "mean+max"))
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"Expected 'dropout' (--dropout) in [0, 1) (got {self.dropout}).")
        if not 0.0 <= self.pointnet_dropout < 1.0:
            raise ValueError(f"Expected 'pointnet_dropout' (--pointnet-dropout) in [0, 1) "
                             f"(got {self.pointnet_dropout}).")
        if self.radial_kernel % 2 == 0:
            raise ValueError(f"Expected an odd 'radial_kernel' (--radial-kernel) (got {self.radial_kernel}).")
        return self


# --------------------------------------------------------------------------- data


def load_shapes(split: str, *, n_points: int = 1024, source: str = "full",
                data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """ModelNet10 clouds ``(n, n_points, 3)`` float32 (z vertical), labels, class names."""
    from pointsym.datasets import load_modelnet10

    return load_modelnet10(split, n_points=n_points, source=source, data_dir=data_dir)


def _split_train_val(labels: np.ndarray, val_fraction: float, per_class: int | None,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded indices (train, val); ``per_class`` caps the training part."""
    rng = np.random.default_rng(seed)
    tr, va = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = max(1, int(round(val_fraction * len(idx))))
        va.append(idx[:n_val])
        rest = idx[n_val:]
        tr.append(rest if per_class is None else rest[:per_class])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(va))


# --------------------------------------------------------------------------- rotations / augmentation


def _default_generator(device: Any) -> torch.Generator:
    """The global torch generator of ``device`` (what unseeded ``torch.rand(..., device=device)`` uses)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    return torch.default_generator


def _torch_rotations(n: int, kind: str, *, dtype: torch.dtype, device: Any,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` random rotation matrices from the torch RNG: about z, or Haar on SO(3).

    Drawn by :func:`pointsym.geometry.random_z_rotation` / :func:`~pointsym.geometry.random_rotation`
    from ``generator`` (default: the global generator of ``device``), so that the Trainer's
    checkpointed torch RNG state makes the augmentation resumable.
    """
    from pointsym.geometry import random_rotation, random_z_rotation

    gen = generator if generator is not None else _default_generator(device)
    sample = random_z_rotation if kind == "z" else random_rotation
    return sample(n, gen, backend="torch", dtype=dtype, device=device)


def rotate_batch(points: torch.Tensor, kind: str, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotate every cloud of ``(B, N, 3)`` by its own random rotation (``"z"`` or ``"so3"``)."""
    check_choice("kind", kind, ROTATIONS)
    rot = _torch_rotations(points.shape[0], kind, dtype=points.dtype, device=points.device, generator=generator)
    return points @ rot.transpose(1, 2)


def augment(points: torch.Tensor, rotation: str) -> torch.Tensor:
    """The papers' training augmentation of a batch ``(B, N, 3)`` (torch RNG, so resumable).

    Order as in the reference: anisotropic scale U(0.8, 1.2) per axis -> random rotation
    (``"z"`` or ``"so3"``) -> translation U(-0.1, 0.1)^3 -> jitter N(0, 0.01^2) clipped to
    +-0.05.
    """
    b = points.shape[0]
    scale = torch.empty(b, 1, 3, dtype=points.dtype, device=points.device).uniform_(0.8, 1.2)
    p = rotate_batch(points * scale, rotation)
    p = p + torch.empty(b, 1, 3, dtype=points.dtype, device=points.device).uniform_(-0.1, 0.1)
    return p + (0.01 * torch.randn_like(p)).clamp(-0.05, 0.05)


def _fixed_rotations(n: int, kind: str, seed: int) -> np.ndarray:
    from pointsym.geometry import random_rotation, random_z_rotation

    return (random_z_rotation if kind == "z" else random_rotation)(n, seed=seed)


# --------------------------------------------------------------------------- models


def build_model(cfg: ShapesConfig, n_classes: int) -> torch.nn.Module:
    """The CSNN or PointNet of a config."""
    from pointsym.models import CSNNClassifier, PointNet

    if cfg.model == "csnn":
        return CSNNClassifier(level=cfg.level, n_shells=cfg.n_shells, n_channels=cfg.n_channels,
                              n_classes=n_classes, base_width=cfg.base_width, hidden=tuple(cfg.hidden),
                              dropout=cfg.dropout, mapping=cfg.mapping, radial_kernel=cfg.radial_kernel,
                              radial=cfg.radial, global_pool=cfg.global_pool)
    return PointNet.scaled(n_classes, cfg.pointnet_scale, dropout=cfg.pointnet_dropout)


def n_parameters(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def _loss_fn(rotation: str):  # noqa: ANN202 - returns the Trainer's loss_fn
    def loss_fn(model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        points, labels = batch
        if model.training:
            points = augment(points, rotation)
        logits = model(points)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        return loss, {"acc": float((logits.argmax(1) == labels).float().mean())}

    return loss_fn


@torch.no_grad()
def evaluate(model: torch.nn.Module, points: np.ndarray, labels: np.ndarray, rotation: str, *, votes: int = 1,
             seed: int = 0, batch_size: int = 32, device: Any = "cpu", quiet: bool = True,
             n_classes: int | None = None) -> dict[str, Any]:
    """Accuracy of ``model`` on clouds rotated by seeded random rotations of type ``rotation``.

    With ``votes > 1`` the softmax outputs over ``votes`` independent rotations per shape are
    averaged (the reference code kept only the last vote). The rotations depend only on
    ``seed`` and the vote, so every model sees the same rotated test set.

    Returns:
        ``{"accuracy", "mean_class_accuracy", "votes", "ms_per_batch", "n"}`` plus the
        per-class accuracies; with ``votes > 1`` also ``"accuracy_one_vote"``, the accuracy of
        the first vote alone (the rotations of ``votes=1``), so one run reports both.
    """
    model.eval()
    n_classes = n_classes or int(labels.max()) + 1
    probs = np.zeros((len(points), n_classes))
    dtype = next(model.parameters()).dtype
    t_model, n_batches = 0.0, 0
    for v in range(votes):
        rot = _fixed_rotations(len(points), rotation, seed=seed * 1000 + 17 * v + (0 if rotation == "z" else 7))
        rotated = np.einsum("bij,bnj->bni", rot, points.astype(np.float64))
        batches = range(0, len(points), batch_size)
        for s in progress(batches, quiet=quiet, desc=f"test {rotation} vote {v + 1}/{votes}"):
            x = torch.as_tensor(rotated[s: s + batch_size], dtype=dtype, device=device)
            t0 = time.perf_counter()
            p = torch.softmax(model(x), dim=1)
            t_model += time.perf_counter() - t0
            n_batches += 1
            probs[s: s + batch_size] += p.double().cpu().numpy()
        if v == 0:
            one_vote = float((probs.argmax(1) == labels).mean())
    pred = probs.argmax(1)
    per_class = [float((pred[labels == c] == c).mean()) if np.any(labels == c) else float("nan")
                 for c in range(n_classes)]
    out = {
        "accuracy": float((pred == labels).mean()),
        "mean_class_accuracy": float(np.nanmean(per_class)),
        "per_class_accuracy": per_class,
        "votes": votes,
        "n": int(len(labels)),
        "ms_per_batch": 1000.0 * t_model / max(n_batches, 1),
    }
    if votes > 1:
        out["accuracy_one_vote"] = one_vote
    return out


# --------------------------------------------------------------------------- one run


def run(cfg: ShapesConfig, *, out_dir: str | Path, run_name: str | None = None, source: str = "full",
        data_dir: str | None = None, device: str = "cpu", quiet: bool = False,
        data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]] | None = None,
        restart: bool = False, init_from: str | None = None, test: bool = True,
        group: str | None = None) -> dict[str, Any]:
    """Train (through :class:`pointsym.training.Trainer`, resuming from its checkpoint) and test.

    With ``cfg.max_minutes`` the Trainer runs one epoch per ``fit`` call (each resumes from
    ``last.pt``, so the run is identical to one ``fit`` over the same epochs) and the budget is
    checked between epochs (:func:`_fit_within_budget`).

    Args:
        cfg: the run settings.
        out_dir: results directory; writes ``<run>.json`` and ``<run>_curves.png`` there and
            the Trainer's ``last.pt``/``best.pt``/``metrics.json`` in ``checkpoints/<run>/``.
        run_name: default ``"<model>_<train_rot>"``.
        source, data_dir: ModelNet10 source (``"full"`` or ``"embedded"``) and data root.
        device: torch device.
        quiet: no progress bars.
        data: preloaded ``(x_train, y_train, x_test, y_test, class_names)`` (used by the demo).
        restart: move the run's old checkpoints aside (``checkpoints/<run>/previous/<n>/``) and
            start fresh instead of resuming.
        init_from: start from the weights of this model file or Trainer checkpoint (fresh
            optimizer); a ``last.pt`` of the run still takes precedence.
        test: evaluate on the test split (``False``: validation only, as in a search; the
            payload then has no ``"test"``).
        group: name of the seed or search group the run belongs to (:func:`run_grid`),
            recorded as ``"group"``; :func:`summarize` reports the group instead.

    Returns:
        The result payload (also written to ``<run>.json``); under ``torchrun`` only rank 0
        evaluates and writes, the other ranks return ``{"run": name}``.
    """
    from pointsym.training import TrainConfig, Trainer, init_weights, seed_everything

    cfg.validate()
    out = Path(out_dir)
    name = run_name or f"{cfg.model}_{cfg.train_rot}"
    if data is None:
        x_tr, y_tr, names = load_shapes("train", n_points=cfg.n_points, source=source, data_dir=data_dir)
        x_te, y_te, _ = load_shapes("test", n_points=cfg.n_points, source=source, data_dir=data_dir)
    else:
        x_tr, y_tr, x_te, y_te, names = data
    n_classes = len(names)
    tr_idx, va_idx = _split_train_val(y_tr, cfg.val_fraction, cfg.train_per_class, cfg.seed)
    # Fixed validation rotations of the training kind: model selection sees no test data.
    rot_val = _fixed_rotations(len(va_idx), cfg.train_rot, seed=cfg.seed + 99)
    x_val = np.einsum("bij,bnj->bni", rot_val, x_tr[va_idx].astype(np.float64)).astype(np.float32)
    to_t = torch.as_tensor
    train_set = torch.utils.data.TensorDataset(to_t(x_tr[tr_idx]), to_t(y_tr[tr_idx]))
    val_set = torch.utils.data.TensorDataset(to_t(x_val), to_t(y_tr[va_idx]))

    seed_everything(cfg.seed)
    model = build_model(cfg, n_classes)
    if init_from is not None:
        init_weights(model, init_from)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(cfg.epochs, 1))
    ckpt_dir = out / "checkpoints" / name
    # The budget is left out of the stored settings: like --epochs it only says how long to
    # train, so a rerun with a larger budget resumes the run.
    stored = {k: v for k, v in asdict(cfg).items() if k not in ("max_minutes", "budget_clock")}
    tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                       seed=cfg.seed, monitor="acc", mode="max", out_dir=str(ckpt_dir), device=device,
                       quiet=quiet, restart=restart, extra={"run": name, **stored, "init_from": init_from})
    trainer = Trainer(model, _loss_fn(cfg.train_rot), tcfg, optimizer=optimizer, scheduler=scheduler)
    cpu0 = time.process_time()
    if cfg.max_minutes is None:
        history = trainer.fit(train_set, val_set)
        budget = {"max_minutes": None, "clock": None, "budget_seconds": None, "stopped_by": "epochs"}
    else:
        history, budget = _fit_within_budget(trainer, train_set, val_set, cfg.epochs, 60.0 * cfg.max_minutes,
                                             clock=cfg.budget_clock, log_path=ckpt_dir / _EPOCH_TIMES)
        budget["max_minutes"] = cfg.max_minutes
    budget.update({"epochs_reached": len(history), "epochs_cap": cfg.epochs,
                   "wall_seconds": float(sum(h["seconds"] for h in history)),
                   "session_cpu_seconds": time.process_time() - cpu0})
    if not trainer.is_main:
        # Under torchrun rank 0 alone tests and writes <run>.json and the plot; the others wait.
        trainer.barrier()
        return {"run": name}
    try:
        return _test_and_write(cfg, trainer, history, name, out, source, names, x_te, y_te, tr_idx, va_idx,
                               device=device, quiet=quiet, budget=budget, test=test, group=group)
    finally:
        trainer.barrier()


#: Per-epoch CPU seconds of a budgeted run, beside the Trainer's checkpoints.
_EPOCH_TIMES = "epoch_times.json"


def _read_epoch_cpu(path: Path, history: list[dict[str, Any]]) -> dict[int, float]:
    """CPU seconds per epoch index from ``path``, for the epochs of ``history`` only.

    An entry counts when its recorded wall seconds equal the history's (a fingerprint), so
    entries of a run moved aside by ``--restart`` or of another run are ignored.
    """
    try:
        rows = json.loads(path.read_text())["epochs"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    out = {}
    for r in rows if isinstance(rows, list) else ():
        e = r.get("epoch") if isinstance(r, dict) else None
        if isinstance(e, int) and 0 <= e < len(history) and r.get("wall") == history[e]["seconds"]:
            out[e] = float(r["cpu"])
    return out


def _write_epoch_cpu(path: Path, history: list[dict[str, Any]], cpu: dict[int, float]) -> None:
    rows = [{"epoch": e, "wall": history[e]["seconds"], "cpu": c} for e, c in sorted(cpu.items())]
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"epochs": rows}, indent=1))
    tmp.replace(path)


def _agree(trainer: Any, flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank of a torchrun launch (so that all ranks stop together)."""
    if trainer.world_size > 1:
        import torch.distributed as dist

        t = torch.tensor([int(flag)], device=trainer.device)
        dist.broadcast(t, 0)
        return bool(t.item())
    return flag


def _fit_within_budget(trainer: Any, train_set: Any, val_set: Any, epochs: int, budget_s: float, *,
                       clock: str, log_path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train epoch by epoch until ``epochs`` or the time budget; returns (history, budget record).

    The same mechanism as ``csnn-dos``/``nesf-train --max-minutes``: one epoch per
    ``Trainer.fit`` call, each resuming from ``last.pt`` (seeded and RNG-restored, so the epochs
    are those of a single ``fit``). The time used is the sum over the run's epochs, so it counts
    every resumed session: ``"wall"`` the Trainer's recorded epoch seconds (training plus
    validation), ``"cpu"`` the process CPU time of each one-epoch ``fit`` (also training plus
    validation, plus the checkpoint I/O), kept in ``checkpoints/<run>/epoch_times.json``; an
    epoch without a CPU entry (trained without a budget) counts its wall seconds. Before each
    epoch, training goes on only when ``used + est / 2 <= budget`` (``est``: mean of the last
    three epoch times), so it stops at the epoch boundary nearest to the budget, after at least
    one epoch; the overshoot or shortfall is at most about half an epoch.
    """
    trainer.config.epochs = 0
    trainer.fit(train_set, val_set)  # resume (or move aside with restart) without training
    trainer.config.restart = False  # moved aside once; the following one-epoch fits resume
    cpu = _read_epoch_cpu(log_path, trainer.history)

    def times() -> list[float]:
        hist = trainer.history
        if clock == "wall":
            return [float(h["seconds"]) for h in hist]
        return [cpu.get(e, float(h["seconds"])) for e, h in enumerate(hist)]

    stopped_by = "epochs"
    while len(trainer.history) < epochs:
        t = times()
        if _agree(trainer, bool(t) and sum(t) + 0.5 * float(np.mean(t[-3:])) > budget_s):
            stopped_by = "max_minutes"
            break
        trainer.config.epochs = len(trainer.history) + 1
        c0 = time.process_time()
        trainer.fit(train_set, val_set)
        cpu[len(trainer.history) - 1] = time.process_time() - c0
        if trainer.is_main:
            _write_epoch_cpu(log_path, trainer.history, cpu)
    t = times()
    record = {"clock": clock, "budget_seconds": budget_s, "stopped_by": stopped_by, "seconds_used": float(sum(t)),
              "cpu_seconds": float(sum(cpu.values())) if len(cpu) == len(trainer.history) else None,
              "cpu_seconds_per_epoch": [cpu.get(e) for e in range(len(trainer.history))]}
    return trainer.history, record


def _test_and_write(cfg: ShapesConfig, trainer: Any, history: list[dict[str, Any]], name: str, out: Path,
                    source: str, names: list[str], x_te: np.ndarray, y_te: np.ndarray, tr_idx: np.ndarray,
                    va_idx: np.ndarray, *, device: str, quiet: bool, budget: dict[str, Any] | None = None,
                    test: bool = True, group: str | None = None) -> dict[str, Any]:
    n_classes = len(names)
    trainer.load_best()
    tests = {}
    for rot in cfg.test_rot if test else ():
        tests[rot] = evaluate(trainer.model, x_te, y_te, rot, votes=cfg.votes, seed=cfg.seed,
                              batch_size=cfg.batch_size, device=device, quiet=quiet, n_classes=n_classes)
    train_seconds = float(sum(h["seconds"] for h in history))
    payload = {
        "run": name,
        "seed": cfg.seed,
        "config": asdict(cfg),
        "n_parameters": n_parameters(trainer.model),
        "model_repr": repr(trainer.model).splitlines()[0],
        "data": {"source": source, "n_train": int(len(tr_idx)), "n_val": int(len(va_idx)),
                 "n_test": int(len(y_te)), "classes": names},
        "epochs_run": len(history),
        "best_epoch": trainer.best_epoch,
        "best_val_acc": trainer.best_value,
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / max(len(history), 1),
        "budget": budget,
        "history": history,
        "torch_threads": torch.get_num_threads(),
    }
    if test:
        payload["test"] = tests
    if group is not None:
        payload["group"] = group
    save_results(out / f"{name}.json", payload)
    if history:
        _plot_curves(history, tests, out / f"{name}_curves.png", title=name)
    return payload


def _plot_curves(history: list[dict[str, Any]], tests: dict[str, Any], path: Path, title: str) -> None:
    from pointsym.experiments.common.plotting import plot_history

    plot_history(history, path, panels=[("loss", "cross-entropy loss"), ("acc", "accuracy (fraction)")],
                 splits=[("train", "train (augmented)"), ("val", "validation")], title=title,
                 reference_lines={"acc": [(res["accuracy"], f"test {_ROT_NAMES.get(rot, rot)}")
                                          for rot, res in tests.items()]})


#: Legend text of the test rotations.
_ROT_NAMES = {"so3": "SO(3)", "o3": "O(3)", "z": "z", "none": "no rotation"}


# --------------------------------------------------------------------------- seeds and search

#: Settings a ``--search`` may vary: the validation split, the test protocol, the model kind
#: and the seed (``--seeds``) stay fixed across a search.
_NOT_SEARCHABLE = frozenset({"model", "train_rot", "test_rot", "votes", "seed", "val_fraction", "hidden",
                             "budget_clock"})
_CSNN_ONLY = frozenset({"level", "n_shells", "n_channels", "base_width", "dropout", "mapping", "radial_kernel",
                        "radial", "global_pool"})
_POINTNET_ONLY = frozenset({"pointnet_scale", "pointnet_dropout"})


def _field_types() -> dict[str, type]:
    import typing

    hints = typing.get_type_hints(ShapesConfig)
    out = {}
    for f in ShapesConfig.__dataclass_fields__.values():
        tp = hints[f.name]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        base = args[0] if typing.get_origin(tp) is not None and len(args) == 1 else tp
        if base in (int, float, str) and f.name not in _NOT_SEARCHABLE and f.metadata.get("cli", True):
            out[f.name] = base
    return out


def _search_item(text: str) -> tuple[str, tuple[Any, ...]]:
    """``"lr=1e-3,3e-3"`` -> ``("lr", (0.001, 0.003))`` (argparse type of ``--search``)."""
    key, sep, vals = text.partition("=")
    key = key.strip().replace("-", "_")
    types_ = _field_types()
    if not sep or not key or not vals.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=V1,V2,... (e.g. lr=1e-3,3e-3), got {text!r}")
    if key not in types_:
        raise argparse.ArgumentTypeError(f"cannot search {key!r}; searchable: {', '.join(sorted(types_))}")
    conv = types_[key]
    try:
        values = tuple(conv(v.strip()) for v in vals.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {conv.__name__} values for {key} (got {vals!r})") from None
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"repeated value in {text!r}")
    return key, values


def search_settings(search: Sequence[tuple[str, Sequence[Any]]] | None) -> list[dict[str, Any]]:
    """The grid (Cartesian product, in the order given) of ``[(name, values), ...]``; ``[{}]`` for none."""
    import itertools

    if not search:
        return [{}]
    names = [k for k, _ in search]
    if len(set(names)) != len(names):
        raise ValueError(f"--search names a setting twice ({', '.join(names)}); give each NAME=V1,V2 once.")
    return [dict(zip(names, combo)) for combo in itertools.product(*(v for _, v in search))]


def _check_search(cfg: ShapesConfig, settings: list[dict[str, Any]]) -> None:
    """Bounds (named ``--search NAME``) and model relevance of every searched value."""
    from pointsym.experiments.common.cli import check_option

    for key in settings[0]:
        unused = _CSNN_ONLY if cfg.model == "pointnet" else _POINTNET_ONLY if cfg.model == "csnn" else set()
        if key in unused:
            hint = "; use pointnet_dropout" if key == "dropout" else ""
            raise ValueError(f"--search {key} has no effect on --model {cfg.model}{hint}.")
        meta = ShapesConfig.__dataclass_fields__[key].metadata
        bounds = {b: meta[b] for b in ("min", "max", "gt", "lt") if meta.get(b) is not None}
        for setting in settings:
            check_option(f"--search {key}", setting[key], **bounds)
            if "choices" in meta and setting[key] not in meta["choices"]:
                raise ValueError(f"--search {key} must be one of {', '.join(meta['choices'])} (got {setting[key]}).")


def _tag(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _stats(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof = 1; ``None`` for one value) of finite values."""
    vals = [float(v) for v in values if v is not None]
    return {"mean": float(np.mean(vals)) if vals else None,
            "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None, "values": vals}


def run_grid(cfg: ShapesConfig, *, out_dir: str | Path, seeds: Sequence[int] | None = None,
             search: Sequence[tuple[str, Sequence[Any]]] | None = None, run_name: str | None = None,
             **run_kwargs: Any) -> dict[str, Any]:
    """Several seeds and/or a validation-split search: one :func:`run` per (setting, seed).

    Each run is named ``<name>[_<key><value>...][_seed<s>]`` (``<name>`` as in :func:`run`)
    and writes its own ``<run>.json`` with ``"seed"`` and ``"group"``. A search
    (``search=[("lr", (1e-3, 3e-3)), ("dropout", (0.1, 0.3))]``, their Cartesian product)
    trains and selects on the validation split only: no test shape is evaluated, and
    ``<name>_search.json`` holds one row per setting (best validation accuracy, mean and
    sample std over the seeds, epochs, seconds) and the best setting. Without a search,
    ``<name>_seeds.json`` holds the test accuracies per seed and their mean and sample
    standard deviation (ddof = 1).

    Args:
        cfg: the settings shared by all runs (``cfg.seed`` is the seed when ``seeds`` is None).
        out_dir: results directory.
        seeds: seeds to run (``None``: ``[cfg.seed]``, and no ``_seed<s>`` suffix).
        search: ``[(setting name, values), ...]`` to search, or None.
        run_name: base name (default ``<model>_<train_rot>``).
        run_kwargs: passed to :func:`run` (source, data_dir, device, quiet, data, restart, init_from).

    Returns:
        The aggregate payload (also written); ``{}`` on the non-zero ranks of a torchrun launch.
    """
    from pointsym.training import is_main_process

    settings = search_settings(search)
    _check_search(cfg, settings)
    seed_list = [cfg.seed] if seeds is None else [check_int("seed", s, minimum=0) for s in seeds]
    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise ValueError(f"--seeds must be distinct seeds >= 0, e.g. 0,1,2 (got {list(seed_list)}).")
    base = run_name or f"{cfg.model}_{cfg.train_rot}"
    kind = "search" if search else "seeds"
    group = f"{base}_{kind}"
    rows = []
    for setting in settings:
        runs = []
        for seed in seed_list:
            c = replace(cfg, **setting, seed=seed).validate()
            name = base + "".join(f"_{k}{_tag(v)}" for k, v in setting.items())
            name += f"_seed{seed}" if seeds is not None else ""
            res = run(c, out_dir=out_dir, run_name=name, test=not search, group=group, **run_kwargs)
            runs.append(res)
        if not is_main_process():
            continue
        row: dict[str, Any] = {
            "setting": setting, "seeds": seed_list, "runs": [r["run"] for r in runs],
            "best_val_acc": _stats([r["best_val_acc"] for r in runs]),
            "best_epoch": [r["best_epoch"] for r in runs],
            "epochs_run": [r["epochs_run"] for r in runs],
            "train_seconds": _stats([r["train_seconds"] for r in runs]),
            "stopped_by": [r["budget"]["stopped_by"] for r in runs],
            "budget_seconds_used": _stats([r["budget"].get("seconds_used") for r in runs]),
            "n_parameters": runs[0]["n_parameters"],
        }
        if not search:
            row["test"] = {rot: {"accuracy": _stats([r["test"][rot]["accuracy"] for r in runs])["mean"],
                                 "accuracy_std": _stats([r["test"][rot]["accuracy"] for r in runs])["std"],
                                 "accuracies": [r["test"][rot]["accuracy"] for r in runs],
                                 "mean_class_accuracy": _stats([r["test"][rot]["mean_class_accuracy"]
                                                                for r in runs])["mean"],
                                 "mean_class_accuracy_std": _stats([r["test"][rot]["mean_class_accuracy"]
                                                                    for r in runs])["std"],
                                 "votes": cfg.votes,
                                 **({"accuracy_one_vote": _stats([r["test"][rot]["accuracy_one_vote"]
                                                                  for r in runs])["mean"],
                                     "accuracy_one_vote_std": _stats([r["test"][rot]["accuracy_one_vote"]
                                                                      for r in runs])["std"]}
                                    if cfg.votes > 1 else {})}
                           for rot in cfg.test_rot}
        rows.append(row)
    if not is_main_process():
        return {}
    config = {k: v for k, v in asdict(cfg).items() if k != "seed"}
    payload: dict[str, Any] = {"kind": kind, "run": group, "base": base, "config": config, "seeds": seed_list,
                               "std": "sample standard deviation over the seeds (ddof = 1; null for one seed)"}
    if search:
        best = max(rows, key=lambda r: -math.inf if r["best_val_acc"]["mean"] is None else r["best_val_acc"]["mean"])
        payload.update({"split": "validation (no test shape evaluated)", "searched": [k for k, _ in search],
                        "rows": rows, "best": best["setting"], "best_val_acc": best["best_val_acc"]})
    else:
        payload.update(rows[0])
        del payload["setting"]
    save_results(Path(out_dir) / f"{group}.json", payload)
    return payload


# --------------------------------------------------------------------------- runtime vs shells


def benchmark_shells(cfg: ShapesConfig, shells: list[int], *, n_batches: int = 5, out_dir: str | Path,
                     source: str = "full", data_dir: str | None = None, device: str = "cpu",
                     quiet: bool = False) -> dict[str, Any]:
    """Train time per epoch and inference time per batch of the CSNN for each ``R`` in ``shells``.

    Training is timed with the Trainer: ``n_batches + 1`` one-batch epochs on real (augmented)
    training shapes; the first is a warm-up and the median of the others, times the number
    of batches of a full epoch of the training split, is the extrapolated epoch time.
    Inference is the median over ``n_batches`` test batches (mapping included, after one
    warm-up batch). Medians make the numbers robust to other jobs on a shared machine.
    Everything else (level, ``n_channels``, widths) is fixed, so the parameter count does
    not change with ``R``.
    """
    from pointsym.training import TrainConfig, Trainer, seed_everything

    n_batches = check_int("n_batches", n_batches, minimum=1)
    x_tr, y_tr, names = load_shapes("train", n_points=cfg.n_points, source=source, data_dir=data_dir)
    x_te, _, _ = load_shapes("test", n_points=cfg.n_points, source=source, data_dir=data_dir)
    tr_idx, _ = _split_train_val(y_tr, cfg.val_fraction, cfg.train_per_class, cfg.seed)
    n_full = len(tr_idx)
    rng = np.random.default_rng(cfg.seed)
    sub = rng.choice(tr_idx, size=min(cfg.batch_size, len(tr_idx)), replace=False)
    one_batch = torch.utils.data.TensorDataset(torch.as_tensor(x_tr[sub]), torch.as_tensor(y_tr[sub]))
    rows = []
    for r in shells:
        c = ShapesConfig(**{**asdict(cfg), "model": "csnn", "n_shells": r})
        seed_everything(cfg.seed)
        model = build_model(c, len(names))
        trainer = Trainer(model, _loss_fn(cfg.train_rot),
                          TrainConfig(epochs=n_batches + 1, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                                      out_dir=None, device=device, quiet=True))
        hist = trainer.fit(one_batch)
        s_per_batch = float(np.median([h["seconds"] for h in hist[1:]]))
        model.eval()
        times = []
        with torch.no_grad():
            for b in range(n_batches + 1):
                lo = (b * cfg.batch_size) % max(len(x_te) - cfg.batch_size, 1)
                x = torch.as_tensor(x_te[lo: lo + cfg.batch_size], device=device)
                t0 = time.perf_counter()
                model(x)
                if b > 0:  # the first batch is a warm-up
                    times.append(time.perf_counter() - t0)
        row = {
            "n_shells": r,
            "n_channels": cfg.n_channels,
            "n_parameters": n_parameters(model),
            "train_s_per_batch": s_per_batch,
            "train_s_per_epoch_extrapolated": s_per_batch * math.ceil(n_full / cfg.batch_size),
            "inference_ms_per_batch": 1000.0 * float(np.median(times)),
            "timed_train_batches": n_batches,
            "timed_inference_batches": len(times),
        }
        rows.append(row)
        if not quiet:
            print(f"[benchmark] R={r}: {row['train_s_per_epoch_extrapolated']:.1f} s/epoch (extrapolated), "
                  f"{row['inference_ms_per_batch']:.1f} ms/batch inference", flush=True)
    payload = {"config": asdict(cfg), "n_train_full_epoch": n_full, "batch_size": cfg.batch_size, "rows": rows}
    out = Path(out_dir)
    save_results(out / "runtime_vs_shells.json", payload)
    from pointsym.experiments.common.plotting import plt, savefig

    fig, ax = plt.subplots(1, 2, figsize=(8, 3))
    rs = [row["n_shells"] for row in rows]
    ax[0].plot(rs, [row["train_s_per_epoch_extrapolated"] for row in rows], "o-")
    ax[0].set_xlabel("spatial shells R")
    ax[0].set_ylabel("train s / epoch")
    ax[1].plot(rs, [row["inference_ms_per_batch"] for row in rows], "o-")
    ax[1].set_xlabel("spatial shells R")
    ax[1].set_ylabel(f"inference ms / batch of {cfg.batch_size}")
    for a in ax:
        a.set_xscale("log", base=2)
    savefig(fig, out / "runtime_vs_shells.png")
    return payload


# --------------------------------------------------------------------------- summary


def _label(name: str, train_rot: str) -> str:
    """Row label of a run: its name without the training rotation (``csnn_z_R16`` -> ``csnn_R16``)."""
    parts = name.split("_")
    if train_rot in parts:
        parts.remove(train_rot)
    return "_".join(parts) or name


def summarize(out_dir: str | Path) -> dict[str, Any]:
    """Collect the finished runs into ``summary.json``/``summary.md``/``summary.png``.

    One row per run name without its training rotation (``csnn_z`` and ``csnn_so3`` give the
    row ``csnn``, ``csnn_z_R16`` the row ``csnn_R16``). A seed group (``<name>_seeds.json`` of
    :func:`run_grid`) gives one row ``<label> (seeds)`` with mean +- sample std, and its
    single-seed runs are left out; search runs (validation only) are left out.
    """
    out = Path(out_dir)
    table: dict[str, dict[str, Any]] = {}
    for path in sorted(out.glob("*.json")):
        if path.name in ("summary.json", "runtime_vs_shells.json"):
            continue
        rec = json.loads(path.read_text())
        if "test" not in rec or "config" not in rec or rec.get("group") is not None:
            continue
        model, tr = rec["config"]["model"], rec["config"]["train_rot"]
        if rec.get("kind") == "seeds":
            label = f"{_label(rec['base'], tr)} (seeds)"
            seconds, epochs, n_params = rec["train_seconds"]["mean"], rec["epochs_run"], rec["n_parameters"]
        elif rec.get("kind") is None:
            label = _label(rec["run"], tr)
            seconds, epochs, n_params = rec["train_seconds"], rec["epochs_run"], rec["n_parameters"]
        else:
            continue
        entry = table.setdefault(label, {"model": model, "n_parameters": n_params, "train_seconds": {},
                                         "epochs": {}, "acc": {}, "acc_std": {}, "votes": {}, "seeds": {}})
        entry["train_seconds"][tr] = seconds
        entry["epochs"][tr] = epochs
        entry["seeds"][tr] = rec.get("seeds", [rec.get("seed", rec["config"].get("seed"))])
        for te, res in rec["test"].items():
            entry["acc"][f"{tr}/{te}"] = res["accuracy"]
            entry["votes"][f"{tr}/{te}"] = res.get("votes", 1)
            if res.get("accuracy_std") is not None:
                entry["acc_std"][f"{tr}/{te}"] = res["accuracy_std"]
    lines = ["| model | params | z/z | z/SO3 | SO3/SO3 | epochs z, SO3 | train time z, SO3 (s) |",
             "|---|---|---|---|---|---|---|"]

    def acc(e: dict[str, Any], key: str) -> str:
        if key not in e["acc"]:
            return "-"
        text = f"{100 * e['acc'][key]:.1f}"
        if key in e["acc_std"]:
            text += f" +- {100 * e['acc_std'][key]:.1f}"
        return text + (f" ({e['votes'][key]} votes)" if e["votes"].get(key, 1) > 1 else "")

    def per_rot(d: dict[str, Any], fmt: str) -> str:
        def one(v: Any) -> str:
            return "/".join(str(x) for x in v) if isinstance(v, list) else format(v, fmt)

        return ", ".join(one(d[k]) if k in d else "-" for k in ROTATIONS)

    for label, e in table.items():
        lines.append(f"| {label} | {e['n_parameters']:,} | {acc(e, 'z/z')} | {acc(e, 'z/so3')} | "
                     f"{acc(e, 'so3/so3')} | {per_rot(e['epochs'], 'd')} | {per_rot(e['train_seconds'], '.0f')} |")
    md = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(md)
    save_results(out / "summary.json", {"table": table})
    if table:
        from pointsym.experiments.common.plotting import plt, savefig

        keys = ["z/z", "z/so3", "so3/so3"]
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(table) + 2), 3.2))
        width = 0.8 / len(table)
        for i, (label, e) in enumerate(table.items()):
            vals = [100 * e["acc"].get(k, np.nan) for k in keys]
            errs = [100 * e["acc_std"].get(k, 0.0) for k in keys]
            ax.bar(np.arange(3) + i * width, vals, width, yerr=errs if any(errs) else None, label=label)
        ax.set_xticks(np.arange(3) + width * (len(table) - 1) / 2)
        ax.set_xticklabels(["z/z", "z/SO3", "SO3/SO3"])
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
        ax.legend(fontsize="small")
        savefig(fig, out / "summary.png")
    print(md)
    return table


# --------------------------------------------------------------------------- CLI


def _main(args: argparse.Namespace) -> int:
    if args.summarize:
        summarize(args.out)
        return 0
    cfg = validate_options(args, ShapesConfig)
    if args.benchmark_batches < 1:
        raise ValueError(f"--benchmark-batches must be >= 1 (got {args.benchmark_batches}).")
    if args.benchmark_shells is not None and (not args.benchmark_shells or min(args.benchmark_shells) < 1):
        raise ValueError(f"--benchmark-shells must be numbers of shells >= 1, e.g. 1,2,4 "
                         f"(got {args.benchmark_shells}).")
    if args.init_from is not None and not Path(args.init_from).is_file():
        raise FileNotFoundError(f"--init-from {args.init_from!r} does not exist (expected a csnn-shapes checkpoint "
                                "such as OUT/checkpoints/<run>/best.pt, or a model file of CSNNClassifier.save).")
    if args.seeds is not None and (not args.seeds or min(args.seeds) < 0 or len(set(args.seeds)) != len(args.seeds)):
        raise ValueError(f"--seeds must be distinct seeds >= 0, e.g. 0,1,2 (got {args.seeds}).")
    if args.benchmark_shells:
        if args.seeds is not None or args.search:
            raise ValueError("--benchmark-shells times one configuration; leave out --seeds and --search.")
        benchmark_shells(cfg, list(args.benchmark_shells), n_batches=args.benchmark_batches, out_dir=args.out,
                         source=args.source, data_dir=args.data_dir, device=args.device, quiet=args.quiet)
        return 0
    kwargs = dict(source=args.source, data_dir=args.data_dir, device=args.device, quiet=args.quiet,
                  restart=args.restart, init_from=args.init_from)
    if args.seeds is not None or args.search:
        settings = search_settings(args.search)
        _check_search(cfg, settings)  # before any training: a bad value fails at once
        agg = run_grid(cfg, out_dir=args.out, seeds=args.seeds, search=args.search, run_name=args.run_name,
                       **kwargs)
        if not agg:  # not rank 0 of a torchrun launch
            return 0
        _print_grid(agg)
        print(f"results in {Path(args.out) / (agg['run'] + '.json')}")
        return 0
    res = run(cfg, out_dir=args.out, run_name=args.run_name, **kwargs)
    if "test" not in res:  # not rank 0 of a torchrun launch: rank 0 reports
        return 0
    for rot, r in res["test"].items():
        print(f"{res['run']}: train {cfg.train_rot} / test {rot}: accuracy {100 * r['accuracy']:.2f} %, "
              f"mean class accuracy {100 * r['mean_class_accuracy']:.2f} % ({r['votes']} vote(s))")
    b = res["budget"]
    stop = (f", stopped by the {cfg.max_minutes:g}-min {b['clock']} budget after {b['seconds_used']:.0f} s"
            if b["stopped_by"] == "max_minutes" else "")
    print(f"{res['n_parameters']:,} parameters, {res['train_seconds']:.0f} s training "
          f"({res['epochs_run']} epochs{stop}); results in {Path(args.out) / (res['run'] + '.json')}")
    return 0


def _pm(stats: dict[str, Any] | None, scale: float = 100.0) -> str:
    if not stats or stats.get("mean") is None:
        return "-"
    text = f"{scale * stats['mean']:.2f}"
    return text + (f" +- {scale * stats['std']:.2f}" if stats.get("std") is not None else "")


def _print_grid(agg: dict[str, Any]) -> None:
    if agg["kind"] == "search":
        for row in agg["rows"]:
            shown = ", ".join(f"{k}={_tag(v)}" for k, v in row["setting"].items())
            print(f"{shown}: best validation accuracy {_pm(row['best_val_acc'])} % "
                  f"(epochs {row['epochs_run']}, {row['train_seconds']['mean']:.0f} s per run)")
        print(f"best on the validation split: {', '.join(f'{k}={_tag(v)}' for k, v in agg['best'].items())}")
        return
    for rot, r in agg["test"].items():
        stats = {"mean": r["accuracy"], "std": r["accuracy_std"]}
        print(f"{agg['base']}: train {agg['config']['train_rot']} / test {rot}: accuracy {_pm(stats)} % over seeds "
              f"{agg['seeds']} ({r['votes']} vote(s))")


def _search_help() -> str:
    return ("validation-split search: NAME=V1,V2,... (repeatable; the grid is their product), e.g. "
            "--search lr=1e-3,3e-3 dropout=0.1,0.3. One run per setting (and seed) named <run>_<name><value>..., "
            "trained and selected on the validation split only (no test shape is evaluated); OUT/<run>_search.json "
            "holds one row per setting and the best one. Searchable: " + ", ".join(sorted(_field_types())))


def register(sub: Any) -> None:
    from pointsym.experiments.common.cli import argument_group

    p = sub.add_parser(
        "csnn-shapes",
        help="rotated ModelNet10 classification with a CSNN or PointNet (z/z, z/SO3, SO3/SO3)",
        description=__doc__.split("\n\n")[0],
    )
    add_common_arguments(p, results="results/csnn_shapes", source="ModelNet10")
    add_dataclass_arguments(p, ShapesConfig, group="run settings")
    p.add_argument("--run-name", default=None, help="name of the run (default: <model>_<train-rot>)")
    t = argument_group(p, "training")
    t.add_argument("--restart", action="store_true",
                   help="start fresh: move the checkpoints already in OUT/checkpoints/<run> aside (to previous/<n>/, "
                        "not deleted) instead of resuming them (default: off)")
    t.add_argument("--init-from", default=None, metavar="PATH",
                   help="start from the weights of a csnn-shapes checkpoint (best.pt/last.pt) or a model file, with "
                        "a fresh optimizer; a last.pt of the run still takes precedence (default: none)")
    m = p.add_argument_group("seeds and search")
    m.add_argument("--seeds", type=_int_tuple, default=None, metavar="0,1,2",
                   help="run once per seed (replaces --seed; runs named <run>_seed<s>) and write OUT/<run>_seeds.json "
                        "with the test accuracies per seed and their mean and sample std (default: --seed only)")
    m.add_argument("--search", type=_search_item, nargs="+", action="extend", default=None, metavar="NAME=V1,V2",
                   help=_search_help() + " (default: none)")
    g = p.add_argument_group("other modes")
    g.add_argument("--benchmark-shells", type=_int_tuple, default=None,
                   help="time the CSNN for these numbers of shells instead of training, e.g. 1,2,4,8,16")
    g.add_argument("--benchmark-batches", type=int, default=5, help="batches timed per R (default: 5)")
    g.add_argument("--summarize", action="store_true", help="collect the finished runs into summary.md/png")
    p.set_defaults(func=_main)
