"""``pointsym csnn-dos train`` and ``pointsym csnn-dos eval``: atom-centred DOS models on the carbon set.

``train`` fits a DOS model (``--model csnn``, the CSNN of spec ``csnn.md`` section 5, or another
kind through its adapter) to the per-atom DOS of the carbon-allotrope set through
:class:`pointsym.training.Trainer` (resumable checkpoints in ``OUT/checkpoints``): loss
``alpha MSE(DOS) + (1 - alpha) MSE(integrated DOS)``, Adam, ReduceLROnPlateau on the validation
loss (stop when the learning rate falls below ``--min-lr``), model selection on the validation
loss. It then evaluates the best model on the test split and writes ``OUT/metrics.json`` and plots.

``eval`` evaluates a trained model (its Trainer checkpoint) on a split of its data or of another
file in the same format, optionally under random rotations (mean +- std of the metrics over the
rotations and the per-structure spread of the band energy), and writes ``OUT/eval_<tag>.json``
and plots.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pointsym.experiments.common.cli import (
    SOURCES,
    add_common_arguments,
    add_dataclass_arguments,
    add_limit_arguments,
    add_run_arguments,
    argument_group,
    validate_options,
)
from pointsym.experiments.common.results import save_results
from pointsym.experiments.csnn_dos.adapters import ADAPTERS, CSNN_DEFAULTS

__all__ = ["EvalOptions", "TrainOptions", "load_run", "register"]

#: ReduceLROnPlateau of the reference (``dos/train.py``): factor and relative threshold.
LR_FACTOR = 0.1
LR_THRESHOLD = 5e-3
_DTYPE = torch.float32
_CSNN_GROUP = "CSNN model (--model csnn)"
_METHODS = ("xtb", "gpaw")


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 64,64 (got {text!r})") from None


def _csnn_default(key: str) -> str:
    value = CSNN_DEFAULTS[key]
    if value is None:
        return "none"
    return ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


# ---------------------------------------------------------------------------------- options
@dataclass
class TrainOptions:
    """Options of ``csnn-dos train`` (each declared once here; ``--help`` shows defaults and units).

    Besides these: the data group (``--source``, ``--data-dir``), the limits ``--max-train`` /
    ``--max-val`` / ``--max-test`` and the run and output groups of :mod:`pointsym.experiments.common.cli`.
    Model options left unset (``None``) are the model's own defaults (the reference CSNN).
    """

    data_file: str | None = field(default=None, metadata={
        "help": "read the structures from this carbon DOS file (extxyz(.gz) as written by pointsym dos-data) "
                "instead of --source", "metavar": "PATH", "default_help": "--source", "group": "data"})
    method: str = field(default="xtb", metadata={
        "help": "electronic-structure method of the --source full file: xtb (GFN1-xTB, every structure) or gpaw "
                "(the PBE subset)", "choices": _METHODS, "group": "data"})
    align: str = field(default="midgap", metadata={
        "help": "energy reference of the targets: midgap shifts each structure by its (HOMO + LUMO) / 2 (the Fermi "
                "level); none keeps the method's absolute energies, on which the band energy is a sum of local "
                "terms", "choices": ("midgap", "none"), "group": "energy grid"})
    e_min: float | None = field(default=None, metadata={
        "help": "first energy of the DOS grid (relative to (HOMO + LUMO) / 2 with --align midgap)", "unit": "eV",
        "default_help": "-12.0 midgap, -21.0 none (xtb); -25.0 midgap (gpaw)", "group": "energy grid"})
    e_max: float | None = field(default=None, metadata={
        "help": "last energy of the DOS grid (e_min + k * e_step)", "unit": "eV",
        "default_help": "2.9 midgap, -6.1 none (xtb)", "group": "energy grid"})
    e_step: float = field(default=0.1, metadata={"help": "spacing of the DOS grid", "unit": "eV",
                                                 "group": "energy grid", "gt": 0.0})
    sigma: float = field(default=0.2, metadata={"help": "Gaussian broadening of the eigenvalues into the target DOS",
                                                "unit": "eV", "group": "energy grid", "gt": 0.0})
    model: str = field(default="csnn", metadata={
        "help": "model kind: the CSNN (csnn), a SOAP + MLP (soap-mlp) or PET (pet), all predicting atomic DOS",
        "metavar": "{" + ",".join(ADAPTERS) + "}", "group": "model"})
    hidden: tuple[int, ...] | None = field(default=None, metadata={
        "help": "hidden widths of the per-atom head, comma-separated", "type": _int_tuple, "metavar": "W,W,...",
        "default_help": f"the model's (csnn: {_csnn_default('hidden')})", "group": "model", "min": 1})
    dropout: float | None = field(default=None, metadata={
        "help": "dropout probability of the head, in [0, 1)", "default_help": "the model's (csnn: 0)",
        "group": "model", "min": 0.0, "lt": 1.0})
    r_cut: float | None = field(default=None, metadata={
        "help": "neighbour cutoff of the atomic environments", "unit": "Å",
        "default_help": f"the model's (csnn: {_csnn_default('r_cut')})", "group": "model", "gt": 0.0})
    model_options: str | None = field(default=None, metadata={
        "help": "further model options as a JSON object, e.g. '{\"pool\": \"max\"}' (keys of the model's adapter; "
                "they override the flags)", "metavar": "JSON", "group": "model"})
    level: int | None = field(default=None, metadata={
        "help": "icosphere level L of the fingerprint (V = 10 4^L + 2 directions)",
        "default_help": _csnn_default("level"), "group": _CSNN_GROUP, "min": 0, "max": 6})
    n_bins: int | None = field(default=None, metadata={
        "help": "radial bins of the fingerprint (its channels)", "default_help": _csnn_default("n_bins"),
        "group": _CSNN_GROUP, "min": 1})
    r_min: float | None = field(default=None, metadata={
        "help": "inner radius of the fingerprint (closer neighbours are dropped)", "unit": "Å",
        "default_help": _csnn_default("r_min"), "group": _CSNN_GROUP, "min": 0.0})
    scaling: str | None = field(default=None, metadata={
        "help": "value a neighbour adds to its bin: inverse (1/d), inverse_square or none (1)",
        "choices": ("inverse", "inverse_square", "none"), "default_help": _csnn_default("scaling"),
        "group": _CSNN_GROUP})
    base_width: int | None = field(default=None, metadata={
        "help": "graph channels of the first block (block i: base_width 2^i graph, twice that co-radial)",
        "unit": "channels", "default_help": _csnn_default("base_width"), "group": _CSNN_GROUP, "min": 1})
    gconv_dims: tuple[int, ...] | None = field(default=None, metadata={
        "help": "explicit graph channels per block (level + 1 entries)", "type": _int_tuple, "metavar": "C,C,...",
        "default_help": "from --base-width", "group": _CSNN_GROUP, "min": 1})
    radial_dims: tuple[int, ...] | None = field(default=None, metadata={
        "help": "explicit co-radial channels per block (level + 1 entries)", "type": _int_tuple,
        "metavar": "C,C,...", "default_help": "from --base-width", "group": _CSNN_GROUP, "min": 1})
    pool: str | None = field(default=None, metadata={
        "help": "neighbourhood pooling between icosphere levels", "choices": ("mean", "max"),
        "default_help": _csnn_default("pool"), "group": _CSNN_GROUP})
    epochs: int = field(default=1500, metadata={
        "help": "total epochs, counted over resumed runs (reference: up to 1500; training stops earlier when the "
                "learning rate falls below --min-lr)", "unit": "epochs", "group": "training", "min": 1})
    batch_size: int = field(default=32, metadata={"help": "structures per optimisation step", "unit": "structures",
                                                  "group": "training", "min": 1})
    lr: float = field(default=5e-4, metadata={"help": "initial Adam learning rate", "group": "training", "gt": 0.0})
    weight_decay: float = field(default=1e-7, metadata={
        "help": "Adam weight decay (L2 penalty coefficient), >= 0", "group": "training", "min": 0.0})
    loss_alpha: float = field(default=0.1, metadata={
        "help": "weight alpha of the DOS term of the loss alpha MSE(DOS) + (1 - alpha) MSE(integrated DOS), in "
                "[0, 1]", "group": "training", "min": 0.0, "max": 1.0})
    band_weight: float = field(default=0.0, metadata={
        "help": "weight of an extra loss term, the mean squared error of the occupied first moment of the DOS "
                "at the reference Fermi level (pointsym.electronic.band_moment: the band-energy error at a fixed "
                "electron count), eV^2 (0: the paper's loss)", "group": "training", "min": 0.0})
    lr_patience: int = field(default=99, metadata={
        "help": f"epochs without a relative improvement of {LR_THRESHOLD:g} of the validation loss before the "
                f"learning rate is multiplied by {LR_FACTOR:g} (ReduceLROnPlateau)", "unit": "epochs",
        "group": "training", "min": 1})
    min_lr: float = field(default=1e-5, metadata={
        "help": "stop training once the learning rate is below this (0: never)", "group": "training", "min": 0.0})
    max_minutes: float | None = field(default=None, metadata={
        "help": "stop after the epoch that exceeds this wall time; rerun to continue (resumes)", "unit": "min",
        "default_help": "no limit", "group": "training", "gt": 0.0})
    ema_decay: float | None = field(default=None, metadata={
        "help": "validate, select and save an exponential moving average of the weights (decay per optimizer step, "
                "in (0, 1); about 1 / (1 - decay) steps are averaged): it smooths the step-to-step noise of the "
                "weights that K-atom sampling adds", "default_help": "no averaging", "group": "training",
        "gt": 0.0, "lt": 1.0})
    atoms_per_structure: int | None = field(default=None, metadata={
        "help": "train on K random atoms per structure per step: the mean of their predicted per-atom DOS is fitted "
                "to the structure's DOS (the prediction is an unbiased estimate of the all-atom mean, so the "
                "expected loss is the all-atom loss plus the sampling variance between atoms; a cheap step on "
                "CPUs). Validation and evaluation use all atoms", "metavar": "K", "default_help": "all atoms",
        "group": "training", "min": 1})
    val_atoms_per_structure: int | None = field(default=None, metadata={
        "help": "validate on a fixed (seeded) subset of K atoms per structure, the same every epoch (cheaper model "
                "selection; the final evaluation still uses all atoms)", "metavar": "K",
        "default_help": "all atoms", "group": "training", "min": 1})
    rotate_train: bool = field(default=False, metadata={
        "help": "rotate every training structure (positions and cell) by its own Haar-uniform random rotation at "
                "every step", "action": "store_true", "group": "training"})
    restart: bool = field(default=False, metadata={
        "help": "start fresh: move the checkpoints already in OUT/checkpoints aside (to previous/<n>/, not "
                "deleted) instead of resuming them", "action": "store_true", "group": "training"})
    init_from: str | None = field(default=None, metadata={
        "help": "start from the weights of a csnn-dos checkpoint (best.pt/last.pt) or a model file of the same "
                "architecture, with a fresh optimizer; a last.pt in OUT/checkpoints still takes precedence",
        "metavar": "PATH", "group": "training"})
    eval_split: str = field(default="test", metadata={
        "help": "split evaluated after training with all atoms (none: skip)",
        "choices": ("train", "val", "test", "none"), "group": "evaluation"})
    eval_batch_atoms: int = field(default=4096, metadata={
        "help": "atoms per forward pass in the evaluation (memory knob)", "unit": "atoms", "group": "evaluation",
        "min": 1})
    plots: bool = field(default=True, metadata={"help": "write the PNG figures", "group": "output"})

    def validate(self) -> None:
        if self.model not in ADAPTERS:
            raise ValueError(f"--model must be one of {', '.join(ADAPTERS)} (got {self.model!r}).")
        from pointsym.electronic import energy_grid

        e_min, e_max = _window(self)
        if e_max <= e_min:
            raise ValueError(f"--e-max must be larger than --e-min (got {e_min} and {e_max}).")
        try:
            energy_grid(e_min, e_max, self.e_step)
        except ValueError as exc:
            raise ValueError(f"--e-min, --e-max and --e-step do not make a grid: {exc}") from None
        if self.model != "csnn":
            given = [_flag(k) for k in _CSNN_KEYS if getattr(self, k) is not None]
            if given:
                raise ValueError(f"{given[0]} applies to --model csnn only; pass options of --model {self.model} "
                                 "with --model-options JSON.")
        _model_options(self)  # the JSON parses into an object


_CSNN_KEYS = ("level", "n_bins", "r_min", "scaling", "base_width", "gconv_dims", "radial_dims", "pool")
_GENERIC_KEYS = ("hidden", "dropout", "r_cut")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _model_options(opts: Any) -> dict[str, Any]:
    """The options passed to the adapter: the model flags that were set, then ``--model-options``."""
    keys = _GENERIC_KEYS + (_CSNN_KEYS if opts.model == "csnn" else ())
    out: dict[str, Any] = {}
    for k in keys:
        v = getattr(opts, k)
        if v is not None:
            out[k] = list(v) if isinstance(v, tuple) else v
    if opts.model_options:
        try:
            extra = json.loads(opts.model_options)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--model-options is not valid JSON ({exc.msg} at character {exc.pos}); pass an object "
                             "such as '{\"pool\": \"max\"}'.") from None
        if not isinstance(extra, dict):
            raise ValueError(f"--model-options must be a JSON object such as '{{\"pool\": \"max\"}}' (got "
                             f"{opts.model_options!r}).")
        out.update(extra)
    return out


@dataclass
class EvalOptions:
    """Options of ``csnn-dos eval`` (plus ``--data-dir``, ``--max-test``, the run group and ``--out``)."""

    checkpoint: str = field(metadata={
        "help": "checkpoint written by csnn-dos train (OUT/checkpoints/best.pt or last.pt), or the run folder OUT",
        "metavar": "PATH"})
    split: str = field(default="test", metadata={"help": "split of the data to evaluate (all: every structure)",
                                                 "choices": ("train", "val", "test", "all")})
    rotations: int = field(default=0, metadata={
        "help": "also evaluate R Haar-random rotations of every structure: metrics as mean +- std over the "
                "rotations and the per-structure spread of the predicted band energy (0: none)", "metavar": "R",
        "min": 0})
    data_file: str | None = field(default=None, metadata={
        "help": "evaluate the structures of this carbon DOS file (same format, any method); the model predicts on "
                "its training grid and the file's DOS is broadened onto that grid", "metavar": "PATH",
        "default_help": "the training data"})
    source: str | None = field(default=None, metadata={
        "help": "the full data root or the subset shipped with pointsym (ignored with --data-file)",
        "choices": SOURCES, "default_help": "the training run's"})
    method: str | None = field(default=None, metadata={
        "help": "method of the --source full file (xtb or gpaw)", "choices": _METHODS,
        "default_help": "the training run's"})
    eval_batch_atoms: int = field(default=4096, metadata={
        "help": "atoms per forward pass (memory knob)", "unit": "atoms", "min": 1})
    ecse: str | None = field(default=None, metadata={
        "help": "PET models only: evaluate the ECSE-symmetrized model, exactly rotation invariant (union: the "
                "whole structure; atom: per environment, for one-message-layer PETs; off: the bare model)",
        "choices": ("off", "union", "atom"), "default_help": "the training run's (off unless set in --model-options)"})
    tag: str | None = field(default=None, metadata={
        "help": "name of the outputs eval_<tag>.json and <tag>_*.png",
        "default_help": "<split>[_rot<R>][_<file>]", "group": "output"})
    plots: bool = field(default=True, metadata={"help": "write the PNG figures", "group": "output"})


# ---------------------------------------------------------------------------------- training
def _window(opts: Any) -> tuple[float, float]:
    """``(e_min, e_max)`` of the grid: the options, else the loader's default for the method and alignment."""
    from pointsym.datasets import energy_window

    try:
        return energy_window(opts.method, opts.align, opts.e_min, opts.e_max)
    except ValueError:
        raise ValueError(f"--method {opts.method} with --align {opts.align} has no default energy window; pass "
                         "--e-min and --e-max (eV, absolute energies of the method).") from None


def _grid_spec(opts: Any) -> Any:
    from pointsym.experiments.csnn_dos.data import GridSpec

    e_min, e_max = _window(opts)
    return GridSpec(e_min=e_min, e_max=e_max, step=float(opts.e_step), sigma=float(opts.sigma), align=opts.align)


def _make_loss(adapter: Any, *, energies: Any, alpha: float, atoms_per_structure: int | None, rotate: bool,
               band_weight: float = 0.0):
    """Trainer ``loss_fn``: ``dos_loss`` of the predicted mean per-atom DOS of the centre atoms, plus
    ``band_weight`` times the mean squared error of :func:`~pointsym.electronic.band_moment` at the
    reference Fermi level.

    In training the centres are ``atoms_per_structure`` random atoms per structure and the
    structures are randomly rotated (with ``rotate``), both from torch's global RNG, which the
    Trainer checkpoints (a resumed run draws the same); in validation the batch's fixed centres
    (all atoms by default) and no rotation.
    """
    from pointsym.electronic import band_moment, dos_loss, integrated_dos
    from pointsym.experiments.csnn_dos.data import rotate_frames, sample_centres
    from pointsym.geometry import random_rotation

    step = float(energies[1] - energies[0])

    def loss_fn(model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        frames, centres = batch.frames, batch.centres
        if model.training:
            if rotate:
                rots = random_rotation(len(frames), torch.default_generator, backend="torch", dtype=torch.float64)
                frames = rotate_frames(frames, rots.numpy())
            if atoms_per_structure is not None:
                # at least 2 atoms in a batch: the head's batch norm needs two rows in training
                k = max(atoms_per_structure, 2) if len(frames) == 1 else atoms_per_structure
                centres = sample_centres([len(a) for a in frames], k)
        prepared = adapter.prepare(frames, centres, dtype=_DTYPE, device=batch.dos.device)
        pred = adapter.predict(model, prepared)
        loss = dos_loss(pred, batch.dos, step, alpha)
        metrics: dict[str, float] = {}
        if batch.fermi is not None:
            # the moment error is the band-energy error at the reference electron count (eV/atom); without
            # its loss term it is only a metric, computed outside autograd
            with torch.set_grad_enabled(band_weight > 0 and torch.is_grad_enabled()):
                moment_err = band_moment(pred, energies, batch.fermi) - band_moment(batch.dos, energies, batch.fermi)
            if band_weight > 0:
                loss = loss + band_weight * moment_err.pow(2).mean()
            metrics["band_moment_mae"] = float(moment_err.detach().abs().mean())
        with torch.no_grad():
            d = pred.detach() - batch.dos
            di = integrated_dos(pred.detach(), step) - integrated_dos(batch.dos, step)
            metrics |= {"dos_rmse": float(d.pow(2).mean().sqrt()), "idos_rmse": float(di.pow(2).mean().sqrt())}
        return loss, metrics

    return loss_fn


def _n_atoms(sizes: np.ndarray, k: int | None) -> int:
    return int(np.minimum(sizes, k).sum()) if k is not None else int(np.sum(sizes))


def _train_main(args: argparse.Namespace) -> int:
    from pointsym.core.checkpoints import model_spec
    from pointsym.experiments.csnn_dos.adapters import get_adapter
    from pointsym.experiments.csnn_dos.data import DOSDataset, collate, fixed_centres, limit, load_sets, split_of
    from pointsym.training import TrainConfig, Trainer, init_weights, seed_everything

    t_start = time.perf_counter()
    opts = validate_options(args, TrainOptions)
    options = _model_options(opts)
    if opts.init_from is not None and not Path(opts.init_from).is_file():
        raise FileNotFoundError(f"--init-from {opts.init_from!r} does not exist (expected a csnn-dos checkpoint such "
                                "as OUT/checkpoints/best.pt or a model file).")
    grid = _grid_spec(opts)
    adapter = get_adapter(opts.model)
    data = load_sets(source=args.source, method=opts.method, data_dir=args.data_dir, data_file=opts.data_file,
                     grid=grid)
    train = limit(split_of(data, "train"), args.max_train, args.seed)
    val = limit(split_of(data, "val"), args.max_val, args.seed + 1)
    seed_everything(args.seed)
    model = adapter.build_model(data.energies, options).to(_DTYPE)
    if opts.init_from is not None:
        init_weights(model, opts.init_from)
    try:
        spec: dict[str, Any] | None = model_spec(model)
    except TypeError:  # a model without the pointsym checkpoint contract: its options rebuild it
        spec = None
    val_centres = fixed_centres(val.n_atoms.tolist(), opts.val_atoms_per_structure, args.seed + 2)
    out = Path(args.out)
    optimizer = torch.optim.Adam(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=LR_FACTOR,
                                                           patience=opts.lr_patience, threshold=LR_THRESHOLD)
    data_spec = {"source": args.source if opts.data_file is None else None, "data_file": opts.data_file,
                 "method": opts.method, "grid": grid.to_dict(), "max_train": args.max_train,
                 "max_val": args.max_val}
    config = TrainConfig(
        epochs=opts.epochs, batch_size=opts.batch_size, lr=opts.lr, weight_decay=opts.weight_decay, seed=args.seed,
        out_dir=str(out / "checkpoints"), restart=opts.restart, device=args.device, quiet=args.quiet,
        min_lr=opts.min_lr if opts.min_lr > 0 else None, max_minutes=opts.max_minutes, ema_decay=opts.ema_decay,
        extra={"task": "csnn-dos", "adapter": opts.model, "model_options": options, "model": spec,
               "data": data_spec, "loss_alpha": opts.loss_alpha, "band_weight": opts.band_weight,
               "atoms_per_structure": opts.atoms_per_structure,
               "val_atoms_per_structure": opts.val_atoms_per_structure, "rotate_train": opts.rotate_train,
               "lr_schedule": {"kind": "plateau", "factor": LR_FACTOR, "patience": opts.lr_patience,
                               "threshold": LR_THRESHOLD, "min_lr": opts.min_lr},
               "dtype": "float32", "init_from": opts.init_from},
    )
    loss_fn = _make_loss(adapter, energies=data.energies, alpha=opts.loss_alpha, band_weight=opts.band_weight,
                         atoms_per_structure=opts.atoms_per_structure,
                         rotate=opts.rotate_train)
    trainer = Trainer(model, loss_fn, config, optimizer=optimizer, scheduler=scheduler, collate_fn=collate)
    n_params = sum(p.numel() for p in model.parameters())
    train_atoms = _n_atoms(train.n_atoms, opts.atoms_per_structure)
    val_atoms = _n_atoms(val.n_atoms, opts.val_atoms_per_structure)
    if not args.quiet and trainer.is_main:
        print(f"csnn-dos train: {opts.model}, {n_params:,} parameters; {len(train)} train / {len(val)} val structures "
              f"({train_atoms} / {val_atoms} atoms per epoch); grid {grid.e_min:g} ... {grid.e_max:g} eV, "
              f"{len(data.energies)} energies")
    t0 = time.perf_counter()
    trainer.fit(DOSDataset(train), DOSDataset(val, val_centres))
    stopped = trainer.stopped_by
    session_seconds = time.perf_counter() - t0
    if not trainer.is_main:
        # Under torchrun rank 0 alone evaluates and writes; the others wait for it.
        trainer.barrier()
        return 0
    try:
        history = trainer.history
        epoch_seconds = float(np.mean([h["seconds"] for h in history])) if history else float("nan")
        payload: dict[str, Any] = {
            "task": "csnn-dos train", "model": opts.model, "model_options": options, "model_spec": spec,
            "n_parameters": n_params,
            "data": {**data_spec, "file": data.meta.get("file"), "n_train": len(train), "n_val": len(val),
                     "families": list(dict.fromkeys(data.family.tolist())), "method_in_file": data.method},
            "training": {
                "epochs_run": len(history), "epochs_requested": opts.epochs, "stopped_by": stopped,
                "best_epoch": trainer.best_epoch, "best_val_loss": trainer.best_value,
                "final_lr": history[-1]["lr"] if history else None, "loss_alpha": opts.loss_alpha,
                "atoms_per_structure": opts.atoms_per_structure, "val_atoms_per_structure":
                opts.val_atoms_per_structure, "rotate_train": opts.rotate_train, "batch_size": opts.batch_size,
                "lr": opts.lr, "weight_decay": opts.weight_decay, "lr_patience": opts.lr_patience,
                "ema_decay": opts.ema_decay, "train_atoms_per_epoch": train_atoms, "val_atoms_per_epoch": val_atoms,
                "seconds_per_epoch": epoch_seconds,
                "train_atoms_per_second": train_atoms / epoch_seconds if history else None,
                "train_seconds_total": float(sum(h["seconds"] for h in history)),
                "session_seconds": session_seconds, "torch_threads": torch.get_num_threads(),
            },
            "history": history,
        }
        if opts.eval_split != "none":
            model = trainer.load_best()
            test = limit(split_of(data, opts.eval_split), args.max_test, args.seed + 3)
            result = _evaluate_and_plot(adapter, model, test, out, tag=opts.eval_split, rotations=0, seed=args.seed,
                                        device=args.device, max_atoms=opts.eval_batch_atoms, quiet=args.quiet,
                                        plots=opts.plots, title=f"{opts.model} on {opts.eval_split}")
            payload["eval"] = {"split": opts.eval_split, **result}
        if opts.plots and history:
            from pointsym.experiments.csnn_dos.plots import plot_learning_curve

            label = "train (sampled atoms)" if opts.atoms_per_structure else "train"
            payload.setdefault("images", []).append(str(plot_learning_curve(
                history, out / "learning_curve.png", alpha=opts.loss_alpha, train_label=label)))
        payload["wall_seconds"] = time.perf_counter() - t_start
        path = save_results(out / "metrics.json", payload)
        best = "none" if trainer.best_value is None else f"{trainer.best_value:.4g}"
        print(f"csnn-dos train: {len(history)} epochs (stopped by {stopped}), best epoch {trainer.best_epoch} "
              f"(val loss {best}), {epoch_seconds:.2f} s/epoch, {train_atoms / epoch_seconds:.0f} training atoms/s "
              f"(validation time included); results -> {path}")
        return 0
    finally:
        trainer.barrier()


# ---------------------------------------------------------------------------------- evaluation
def _evaluate_and_plot(adapter: Any, model: torch.nn.Module, data: Any, out: Path, *, tag: str, rotations: int,
                       seed: int, device: str, max_atoms: int, quiet: bool, plots: bool, title: str) -> dict[str, Any]:
    from pointsym.experiments.csnn_dos.evaluation import evaluate, format_table

    t0 = time.perf_counter()
    result, arrays = evaluate(adapter, model, data, rotations=rotations, seed=seed, dtype=_DTYPE, device=device,
                              max_atoms=max_atoms, quiet=quiet)
    result["seconds"] = time.perf_counter() - t0
    result["atoms_per_second"] = result["n_atoms"] * (1 + rotations) / max(result["seconds"], 1e-9)
    if plots:
        from pointsym.experiments.csnn_dos.plots import (
            plot_band_energy_mae,
            plot_band_energy_parity,
            plot_dos_panels,
        )

        m = arrays["metrics"]
        spread = None
        if rotations:
            spread = np.asarray(result["rotations"]["band_energy_spread_ev_per_atom"]["per_structure_std"])
        result["images"] = [
            str(plot_dos_panels(data.energies, arrays["pred"], data, out / f"{tag}_dos.png", title=title)),
            str(plot_band_energy_parity(m["band_energy_ref"], m["band_energy_pred"], np.asarray(data.family),
                                        out / f"{tag}_band_energy_parity.png", spread=spread, title=title)),
            str(plot_band_energy_mae(result["summary"], out / f"{tag}_band_energy_mae.png",
                                     rotated=result["rotations"]["summary"] if rotations else None)),
        ]
    print(format_table(result, f"{title}: {result['n_structures']} structures, {result['n_atoms']} atoms "
                               f"({result['n_unreached']} without a predicted Fermi level)"))
    return result


def _checkpoint_path(path: str) -> Path:
    p = Path(path)
    if p.is_dir():
        for cand in (p / "checkpoints" / "best.pt", p / "best.pt", p / "checkpoints" / "last.pt", p / "last.pt"):
            if cand.is_file():
                return cand
        raise FileNotFoundError(f"--checkpoint {path!r} is a folder without checkpoints/best.pt or best.pt (expected "
                                "the --out folder of csnn-dos train or a checkpoint file).")
    if not p.is_file():
        raise FileNotFoundError(f"--checkpoint {path!r} does not exist (expected OUT/checkpoints/best.pt of csnn-dos "
                                "train).")
    return p


def load_run(path: str | Path, device: str = "cpu", *,
             options: dict[str, Any] | None = None) -> tuple[Any, torch.nn.Module, dict[str, Any], int]:
    """``(adapter, model in eval mode, config.extra, epochs trained)`` of a ``csnn-dos train`` Trainer checkpoint.

    ``options`` override model options that leave the weights unchanged (e.g. PET's ``ecse``);
    the returned ``extra["model_options"]`` holds the options the model was built with.
    """
    from pointsym.core import CheckpointError
    from pointsym.core.checkpoints import trainer_weights
    from pointsym.electronic import energy_grid
    from pointsym.experiments.csnn_dos.adapters import get_adapter
    from pointsym.training import load_checkpoint

    ckpt = load_checkpoint(path, map_location="cpu")
    extra = (ckpt.get("config") or {}).get("extra") or {}
    if extra.get("task") != "csnn-dos" or "adapter" not in extra:
        raise CheckpointError(f"{str(path)!r} is a Trainer checkpoint but not of csnn-dos train (no adapter in its "
                              "settings); pass OUT/checkpoints/best.pt of a csnn-dos train run.")
    g = extra["data"]["grid"]
    adapter = get_adapter(extra["adapter"])
    extra["model_options"] = {**extra["model_options"], **(options or {})}
    model = adapter.build_model(energy_grid(g["e_min"], g["e_max"], g["step"]), dict(extra["model_options"]))
    model = model.to(_DTYPE)
    try:
        model.load_state_dict(trainer_weights(ckpt))  # the weight average of an --ema-decay run
    except RuntimeError as exc:
        raise CheckpointError(f"{str(path)!r}: its weights do not fit the model rebuilt from its settings "
                              f"({str(exc).splitlines()[0]}).") from exc
    return adapter, model.to(device).eval(), extra, int(ckpt["epoch"]) + 1


def _file_stem(path: str) -> str:
    name = Path(path).name
    for suffix in (".gz", ".extxyz", ".xyz"):
        name = name.removesuffix(suffix)
    return name


def _eval_main(args: argparse.Namespace) -> int:
    from pointsym.datasets import EnergyWindowError
    from pointsym.experiments.csnn_dos.data import GridSpec, limit, load_sets, split_of

    t_start = time.perf_counter()
    opts = validate_options(args, EvalOptions)
    ckpt = _checkpoint_path(opts.checkpoint)
    adapter, model, extra, epochs = load_run(ckpt, device=args.device)
    if opts.ecse is not None:
        if extra["adapter"] != "pet":
            raise ValueError(f"--ecse {opts.ecse} symmetrizes PET models; --checkpoint {str(ckpt)!r} holds a "
                             f"{extra['adapter']} model (drop --ecse).")
        adapter, model, extra, epochs = load_run(ckpt, device=args.device, options={"ecse": opts.ecse})
    trained = extra["data"]
    grid = GridSpec(**trained["grid"])
    if opts.data_file is not None:
        data_file, source = opts.data_file, "full"
    elif opts.source is not None:
        data_file, source = None, opts.source
    elif trained.get("data_file"):
        data_file, source = trained["data_file"], "full"
    else:
        data_file, source = None, trained.get("source") or "full"
    method = opts.method or trained.get("method", "xtb")
    try:
        data = load_sets(source=source, method=method, data_dir=args.data_dir, data_file=data_file, grid=grid)
    except EnergyWindowError as exc:
        # the grid is the checkpoint's: name it, and the way out (a model trained on a wider window)
        raise ValueError(f"{exc.reason}. The model of --checkpoint {str(ckpt)!r} predicts on "
                         f"{grid.e_min:g} ... {grid.e_max:g} eV (align={grid.align!r}) and cannot describe this data; "
                         "evaluate a model trained with --e-min/--e-max that hold it.") from exc
    data = limit(split_of(data, opts.split), args.max_test, args.seed)
    if data_file is not None:
        other = _file_stem(data_file) if data_file != trained.get("data_file") else ""
    else:
        other = f"{source}_{method}" if (source, method) != (trained.get("source"), trained.get("method")) else ""
    tag = opts.tag or "_".join(t for t in (opts.split, f"rot{opts.rotations}" if opts.rotations else "",
                                           f"ecse_{opts.ecse}" if opts.ecse else "", other) if t)
    out = Path(args.out) if args.out is not None else (ckpt.parent.parent if ckpt.parent.name == "checkpoints"
                                                        else ckpt.parent)
    title = f"{extra['adapter']} on {opts.split}" + (f" of {Path(data.meta['file']).name}" if other else "")
    result = _evaluate_and_plot(adapter, model, data, out, tag=tag, rotations=opts.rotations, seed=args.seed,
                                device=args.device, max_atoms=opts.eval_batch_atoms, quiet=args.quiet,
                                plots=opts.plots, title=title)
    payload = {
        "task": "csnn-dos eval", "checkpoint": str(ckpt), "model": extra["adapter"],
        "model_options": extra["model_options"], "trained_on": trained,
        "data": {"file": data.meta.get("file"), "source": None if data_file else source, "method": method,
                 "method_in_file": data.method, "split": opts.split, "grid": grid.to_dict()},
        "epochs_trained": epochs, **result, "wall_seconds": time.perf_counter() - t_start,
    }
    path = save_results(out / f"eval_{tag}.json", payload)
    print(f"csnn-dos eval: results -> {path}")
    return 0


# ---------------------------------------------------------------------------------- parsers
def register(sub: Any) -> None:
    """Add ``pointsym csnn-dos {train,eval}``."""
    p = sub.add_parser("csnn-dos", help="atom-centred DOS models (CSNN, SOAP-MLP, PET) on the carbon set: train, "
                                        "eval", description=__doc__.split("\n\n")[0])
    exp = p.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)

    t = exp.add_parser("train", help="train a DOS model through the Trainer (resumable), then evaluate it",
                       description=__doc__.split("\n\n")[1])
    add_common_arguments(t, results="results/csnn_dos/run", source="carbon DOS structures")
    add_limit_arguments(t, train="use at most N training structures (a seeded subset, balanced over families)",
                        val="use at most N validation structures (a seeded subset, balanced over families)",
                        test="evaluate at most N structures after training (balanced over families)")
    add_dataclass_arguments(t, TrainOptions)
    t.set_defaults(func=_train_main)

    e = exp.add_parser("eval", help="evaluate a trained DOS model (optionally under random rotations)",
                       description=__doc__.split("\n\n")[2])
    argument_group(e, "data").add_argument(
        "--data-dir", default=None, help="data root (default: $POINTSYM_DATA, else ../shared/data next to the project)")
    add_limit_arguments(e, test="evaluate at most N structures (a seeded subset, balanced over families)")
    add_dataclass_arguments(e, EvalOptions, group="evaluation")
    add_run_arguments(e)
    argument_group(e, "output").add_argument(
        "--out", default=None, help="results directory (default: the run folder of --checkpoint)")
    e.set_defaults(func=_eval_main)
