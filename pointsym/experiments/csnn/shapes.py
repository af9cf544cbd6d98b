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
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
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
        epochs, batch_size, lr, weight_decay: optimisation (Adam, cosine learning-rate decay).
        train_per_class: at most this many training shapes per class (``None``: all).
        val_fraction: stratified part of the training split held out for model selection.
        votes: test rotations per shape whose softmax outputs are averaged.
        n_points: points per cloud.
        level, n_shells, n_channels, base_width, hidden, dropout, mapping, radial_kernel: CSNN.
        pointnet_scale: width multiplier of PointNet (1.0 = original widths).
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
    epochs: int = field(default=10, metadata={"help": "total epochs (a rerun into the same --out resumes)",
                                              "unit": "epochs", "min": 1})
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
    pointnet_scale: float = field(default=0.25, metadata={"help": "width multiplier of PointNet (1.0 = original)",
                                                          "group": "PointNet", "gt": 0.0})
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
                              dropout=cfg.dropout, mapping=cfg.mapping, radial_kernel=cfg.radial_kernel)
    return PointNet.scaled(n_classes, cfg.pointnet_scale)


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
        per-class accuracies.
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
    pred = probs.argmax(1)
    per_class = [float((pred[labels == c] == c).mean()) if np.any(labels == c) else float("nan")
                 for c in range(n_classes)]
    return {
        "accuracy": float((pred == labels).mean()),
        "mean_class_accuracy": float(np.nanmean(per_class)),
        "per_class_accuracy": per_class,
        "votes": votes,
        "n": int(len(labels)),
        "ms_per_batch": 1000.0 * t_model / max(n_batches, 1),
    }


# --------------------------------------------------------------------------- one run


def run(cfg: ShapesConfig, *, out_dir: str | Path, run_name: str | None = None, source: str = "full",
        data_dir: str | None = None, device: str = "cpu", quiet: bool = False,
        data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]] | None = None,
        restart: bool = False, init_from: str | None = None) -> dict[str, Any]:
    """Train (through :class:`pointsym.training.Trainer`, resuming from its checkpoint) and test.

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
    tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                       seed=cfg.seed, monitor="acc", mode="max", out_dir=str(ckpt_dir), device=device,
                       quiet=quiet, restart=restart, extra={"run": name, **asdict(cfg), "init_from": init_from})
    trainer = Trainer(model, _loss_fn(cfg.train_rot), tcfg, optimizer=optimizer, scheduler=scheduler)
    history = trainer.fit(train_set, val_set)
    if not trainer.is_main:
        # Under torchrun rank 0 alone tests and writes <run>.json and the plot; the others wait.
        trainer.barrier()
        return {"run": name}
    try:
        return _test_and_write(cfg, trainer, history, name, out, source, names, x_te, y_te, tr_idx, va_idx,
                               device=device, quiet=quiet)
    finally:
        trainer.barrier()


def _test_and_write(cfg: ShapesConfig, trainer: Any, history: list[dict[str, Any]], name: str, out: Path,
                    source: str, names: list[str], x_te: np.ndarray, y_te: np.ndarray, tr_idx: np.ndarray,
                    va_idx: np.ndarray, *, device: str, quiet: bool) -> dict[str, Any]:
    n_classes = len(names)
    trainer.load_best()
    tests = {}
    for rot in cfg.test_rot:
        tests[rot] = evaluate(trainer.model, x_te, y_te, rot, votes=cfg.votes, seed=cfg.seed,
                              batch_size=cfg.batch_size, device=device, quiet=quiet, n_classes=n_classes)
    train_seconds = float(sum(h["seconds"] for h in history))
    payload = {
        "run": name,
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
        "history": history,
        "test": tests,
        "torch_threads": torch.get_num_threads(),
    }
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


def summarize(out_dir: str | Path) -> dict[str, Any]:
    """Collect ``<model>_<train_rot>.json`` runs into ``summary.json``/``summary.md``/``summary.png``."""
    out = Path(out_dir)
    table: dict[str, dict[str, Any]] = {}
    for path in sorted(out.glob("*.json")):
        if path.name in ("summary.json", "runtime_vs_shells.json"):
            continue
        rec = json.loads(path.read_text())
        if "test" not in rec or "config" not in rec:
            continue
        model, tr = rec["config"]["model"], rec["config"]["train_rot"]
        entry = table.setdefault(model, {"n_parameters": rec["n_parameters"], "train_seconds": {},
                                         "epochs": {}, "acc": {}})
        entry["train_seconds"][tr] = rec["train_seconds"]
        entry["epochs"][tr] = rec["epochs_run"]
        for te, res in rec["test"].items():
            entry["acc"][f"{tr}/{te}"] = res["accuracy"]
    lines = ["| model | params | z/z | z/SO3 | SO3/SO3 | train time z, SO3 (s) |", "|---|---|---|---|---|---|"]
    def acc(e: dict[str, Any], key: str) -> str:
        return f"{100 * e['acc'][key]:.1f}" if key in e["acc"] else "-"

    for model, e in table.items():
        times = ", ".join(f"{e['train_seconds'][k]:.0f}" if k in e["train_seconds"] else "-" for k in ROTATIONS)
        lines.append(f"| {model} | {e['n_parameters']:,} | {acc(e, 'z/z')} | {acc(e, 'z/so3')} | "
                     f"{acc(e, 'so3/so3')} | {times} |")
    md = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(md)
    save_results(out / "summary.json", {"table": table})
    if table:
        from pointsym.experiments.common.plotting import plt, savefig

        keys = ["z/z", "z/so3", "so3/so3"]
        fig, ax = plt.subplots(figsize=(6, 3.2))
        width = 0.8 / len(table)
        for i, (model, e) in enumerate(table.items()):
            vals = [100 * e["acc"].get(k, np.nan) for k in keys]
            ax.bar(np.arange(3) + i * width, vals, width, label=model)
        ax.set_xticks(np.arange(3) + width * (len(table) - 1) / 2)
        ax.set_xticklabels(["z/z", "z/SO3", "SO3/SO3"])
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
        ax.legend()
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
    if args.benchmark_shells:
        benchmark_shells(cfg, list(args.benchmark_shells), n_batches=args.benchmark_batches, out_dir=args.out,
                         source=args.source, data_dir=args.data_dir, device=args.device, quiet=args.quiet)
        return 0
    res = run(cfg, out_dir=args.out, run_name=args.run_name, source=args.source, data_dir=args.data_dir,
              device=args.device, quiet=args.quiet, restart=args.restart, init_from=args.init_from)
    if "test" not in res:  # not rank 0 of a torchrun launch: rank 0 reports
        return 0
    for rot, r in res["test"].items():
        print(f"{res['run']}: train {cfg.train_rot} / test {rot}: accuracy {100 * r['accuracy']:.2f} %, "
              f"mean class accuracy {100 * r['mean_class_accuracy']:.2f} % ({r['votes']} vote(s))")
    print(f"{res['n_parameters']:,} parameters, {res['train_seconds']:.0f} s training "
          f"({res['epochs_run']} epochs); results in {Path(args.out) / (res['run'] + '.json')}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "csnn-shapes",
        help="rotated ModelNet10 classification with a CSNN or PointNet (z/z, z/SO3, SO3/SO3)",
        description=__doc__.split("\n\n")[0],
    )
    add_common_arguments(p, results="results/csnn_shapes", source="ModelNet10")
    add_dataclass_arguments(p, ShapesConfig, group="run settings")
    p.add_argument("--run-name", default=None, help="name of the run (default: <model>_<train-rot>)")
    t = p.add_argument_group("training")
    t.add_argument("--restart", action="store_true",
                   help="start fresh: move the checkpoints already in OUT/checkpoints/<run> aside (to previous/<n>/, "
                        "not deleted) instead of resuming them (default: off)")
    t.add_argument("--init-from", default=None, metavar="PATH",
                   help="start from the weights of a csnn-shapes checkpoint (best.pt/last.pt) or a model file, with "
                        "a fresh optimizer; a last.pt of the run still takes precedence (default: none)")
    g = p.add_argument_group("other modes")
    g.add_argument("--benchmark-shells", type=_int_tuple, default=None,
                   help="time the CSNN for these numbers of shells instead of training, e.g. 1,2,4,8,16")
    g.add_argument("--benchmark-batches", type=int, default=5, help="batches timed per R (default: 5)")
    g.add_argument("--summarize", action="store_true", help="collect the finished runs into summary.md/png")
    p.set_defaults(func=_main)
