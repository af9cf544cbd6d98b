"""``pointsym nesf-train`` and ``pointsym nesf-eval``: neural structure fields on crystal sets.

``nesf-train`` fits the NeSF autoencoder through :class:`pointsym.training.Trainer`
(checkpoints in ``OUT/checkpoints``, resumable), then exports the best model (lowest
validation loss) to ``OUT/nesf_<data>.pt`` and writes ``OUT/train_<data>.json``.

``nesf-eval`` decodes every structure of a data set from a trained model's fields (or from
the exact analytic fields with ``--model exact``), prints the NeSF metrics and writes
``OUT/eval_<tag>.json`` plus a picture of a few reconstructions.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pointsym.experiments.common.cli import (
    add_common_arguments,
    add_dataclass_arguments,
    add_limit_arguments,
    argument_group,
    config_from_args,
    progress,
    validate_options,
)

__all__ = ["NeSFEvalOptions", "NeSFTrainOptions", "evaluate", "plot_reconstructions", "plot_training", "register"]

_METRIC_LABELS = [
    ("atom_count_error_pct", "Error in number of atoms [%]"),
    ("position_error_actual", "Position error (actual) [Å]"),
    ("position_error_detected", "Position error (detected) [Å]"),
    ("species_error_actual_pct", "Species error (actual) [%]"),
    ("species_error_detected_pct", "Species error (detected) [%]"),
    ("lengths_mae", "Lattice lengths MAE [Å]"),
    ("angles_mae_deg", "Lattice angles MAE [deg]"),
]


def _ints(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise ValueError(f"Expected comma-separated integers (got {text!r}).") from exc


def _load_set(data: str, split: str, args: argparse.Namespace, limit: int | None = None,
              flag: str = "--max-test") -> Any:
    from pointsym.fields import load_nesf_set, read_nesf_npz

    if data.endswith(".npz") and getattr(args, "sidx_to_z", None):
        table = json.loads(Path(args.sidx_to_z).read_text())
        table = table["sidx_to_z"] if isinstance(table, dict) else table
        crystals = read_nesf_npz(data, sidx_to_z=table)
    else:
        crystals = load_nesf_set(data, split, source=args.source, data_dir=args.data_dir)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"Expected '{flag}' >= 1 (got {limit}).")
        crystals = crystals.subset(range(min(limit, len(crystals))))
    return crystals


def _data_tag(data: str, split: str) -> str:
    return Path(data).name[: -len(".npz")] if data.endswith(".npz") else f"{data}_{split}"


# ---------------------------------------------------------------------------------- train
def _train(args: argparse.Namespace) -> int:
    import torch

    from pointsym.fields import ALL_ELEMENTS, NeSF, NeSFLoss, QuerySampler, collate_crystals, crystal_dataset
    from pointsym.training import TrainConfig, Trainer, seed_everything

    validate_options(args, NeSFTrainOptions)
    if args.init_from is not None and not Path(args.init_from).is_file():
        raise FileNotFoundError(f"--init-from {args.init_from!r} does not exist (expected an exported model "
                                "nesf_<data>.pt or a nesf-train checkpoint such as OUT/checkpoints/<data>/best.pt).")
    train = _load_set(args.data, args.train_split, args, args.max_train, "--max-train")
    val = None
    if args.val_split != "none":
        if args.val_data is None and args.data.endswith(".npz"):
            print("nesf-train: no --val-data given for an npz training file: training without validation "
                  "(the last epoch is exported).")
        else:
            val = _load_set(args.val_data or args.data, args.val_split, args, args.max_val, "--max-val")
    lo, hi = train.bounding_box()
    vocab = ALL_ELEMENTS if args.species_vocab == "all" else tuple(sorted(set(train.numbers.tolist())))
    seed_everything(args.seed)
    model_kwargs: dict[str, Any] = {
        "species": vocab, "latent_dim": args.latent_dim, "box_min": lo.tolist(), "box_max": hi.tolist(),
        "query_encoding": args.query_encoding, "dropout": args.dropout,
    }
    if args.position_channels:
        model_kwargs["position_channels"] = _ints(args.position_channels)
    if args.species_channels:
        model_kwargs["species_channels"] = _ints(args.species_channels)
    model = NeSF(**model_kwargs)
    if args.init_from:
        # warm start from exported weights (e.g. the committed checkpoint); a last.pt in the
        # checkpoint directory, when present, still takes precedence (Trainer resume).
        from pointsym.fields import load_nesf

        init, _ = load_nesf(args.init_from)
        if init.hypers != model.hypers:
            diff = ", ".join(f"{k}: {init.hypers.get(k)!r} in the file, {model.hypers.get(k)!r} in this run"
                             for k in sorted(set(init.hypers) | set(model.hypers))
                             if init.hypers.get(k) != model.hypers.get(k))
            raise ValueError(f"--init-from {args.init_from!r} has another architecture/vocabulary/box than this run "
                             f"({diff}); pass the model options and training data of the run that wrote it.")
        model.load_state_dict(init.state_dict())
    sampler = QuerySampler(lo, hi, n_global=args.n_global, n_local=args.n_local, n_species=args.n_species,
                           global_sampling=args.global_sampling)
    loss_fn = NeSFLoss(sampler, precision=args.precision)
    train_items = crystal_dataset(train, model)
    val_items = crystal_dataset(val, model) if val is not None else None
    out = Path(args.out)
    tag = _data_tag(args.data, args.train_split).removesuffix(f"_{args.train_split}")
    ckpt_dir = out / "checkpoints" / tag
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = _scheduler(optimizer, args)
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, patience=args.patience,
        out_dir=str(ckpt_dir), restart=args.restart, device=args.device, quiet=args.quiet,
        max_minutes=args.max_minutes,
        extra={"nesf": model.hypers, "sampler": sampler.settings, "data": tag, "init_from": args.init_from,
               **_schedule_extra(args)},
    )
    trainer = Trainer(model, loss_fn, config, optimizer=optimizer, scheduler=scheduler, collate_fn=collate_crystals)
    n_params = sum(p.numel() for p in model.parameters())
    if not args.quiet and trainer.is_main:
        print(f"nesf-train: {len(train)} train / {len(val) if val is not None else 0} val structures, "
              f"{n_params} parameters, box {np.round(lo, 3).tolist()} .. {np.round(hi, 3).tolist()}, {sampler!r}")
    t0 = time.perf_counter()
    trainer.fit(train_items, val_items)  # stops at --epochs, --patience or --max-minutes
    session_seconds = time.perf_counter() - t0
    if not trainer.is_main:
        # Under torchrun rank 0 alone exports the model and writes the summary and plot; the
        # others wait for it (Trainer.fit already waited for its final checkpoints).
        trainer.barrier()
        return 0
    try:
        return _export(args, trainer, model, train, val, sampler, tag, ckpt_dir, out, n_params, session_seconds)
    finally:
        trainer.barrier()


def _scheduler(optimizer: Any, args: argparse.Namespace) -> Any:
    """The learning-rate schedule of ``--lr-schedule`` (stepped once per epoch by the Trainer)."""
    import torch

    if args.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=args.lr_step, gamma=args.lr_gamma)
    floor = args.lr_min / args.lr
    total = args.epochs

    def cosine(epoch: int) -> float:  # clamped: constant at --lr-min after --epochs
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(epoch, total) / total))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)


def _schedule_extra(args: argparse.Namespace) -> dict[str, Any]:
    """Checkpoint settings of the schedule (a resume must keep them). The default adds nothing, so runs
    made before the option existed resume unchanged. ``--precision`` is left out on purpose: like the
    device, it may change between sessions of one run (e.g. bf16 for the bulk, fp32 to finish)."""
    if args.lr_schedule == "step":
        return {}
    return {"lr_schedule": {"kind": args.lr_schedule, "lr_min": args.lr_min}}


def _export(args: argparse.Namespace, trainer: Any, model: Any, train: Any, val: Any, sampler: Any, tag: str,
            ckpt_dir: Path, out: Path, n_params: int, session_seconds: float) -> int:
    from pointsym.experiments.common.results import save_results
    from pointsym.fields import save_nesf
    from pointsym.training import load_checkpoint

    history = trainer.history
    best_path = ckpt_dir / ("best.pt" if (ckpt_dir / "best.pt").is_file() else "last.pt")
    if not best_path.is_file():
        raise ValueError(f"No epoch was trained into {str(ckpt_dir)!r}, so there is no model to export; "
                         "pass --epochs >= 1.")
    best = load_checkpoint(best_path)
    model.load_state_dict(best["model"])
    total_seconds = float(sum(h.get("seconds", 0.0) for h in history))
    meta = {
        "data": tag, "n_train": len(train), "n_val": len(val) if val is not None else 0,
        "epochs_run": len(history), "best_epoch": trainer.best_epoch, "best_val_loss": trainer.best_value,
        "train_seconds_total": total_seconds, "sampler": sampler.settings, "n_parameters": n_params,
        "checkpoint_source": str(best_path), "precision": args.precision, "lr_schedule": args.lr_schedule,
    }
    export = out / f"nesf_{tag}.pt"
    save_nesf(model, export, meta=meta)
    payload = {
        "task": "nesf-train", **meta, "export": str(export), "session_seconds": session_seconds,
        "model_config": model.hypers, "last_epoch": history[-1] if history else None,
        "best_row": next((h for h in history if h["epoch"] == trainer.best_epoch), None),
        "history": history,
    }
    path = save_results(out / f"train_{tag}.json", payload)
    if history:
        plot_training(history, out / f"train_{tag}.png")
    print(f"nesf-train: {len(history)} epochs in total ({total_seconds / 60:.1f} min of epochs; this session "
          f"{session_seconds / 60:.1f} min); best epoch {trainer.best_epoch} (val loss {trainer.best_value}); "
          f"model -> {export}; summary -> {path}")
    return 0


# ---------------------------------------------------------------------------------- eval
def _species_colors(numbers: np.ndarray) -> dict[int, Any]:
    from pointsym.experiments.common.plotting import plt

    cmap = plt.get_cmap("tab10")
    return {int(z): cmap(i % 10) for i, z in enumerate(sorted(set(int(v) for v in numbers)))}


def plot_training(history: list[dict[str, Any]], path: str | Path) -> Path:
    """PNG of the training history: losses, local position error near atoms, species accuracy."""
    from pointsym.experiments.common.plotting import plot_history

    return plot_history(history, path, marker="o", splits=[("train", "train"), ("val", "validation")],
                        panels=[("loss", "loss (10 MSE_pos + 0.1 CE + MSE_lat)"),
                                ("local_position_mae", "|v_hat - v| near atoms [Å]"),
                                ("species_acc", "species accuracy near atoms (fraction)")])


def plot_reconstructions(crystals: Any, recs: list[Any], path: str | Path, *, title: str = "") -> Path:
    """PNG of true (large hollow circles) vs reconstructed (small filled dots) atoms, colour = species.

    Args:
        crystals: the true structures (``CrystalSet`` or list of ``Crystal``), same order as ``recs``.
        recs: :class:`pointsym.fields.Reconstruction` objects.
        path: output PNG.
        title: figure title.
    """
    from ase.data import chemical_symbols
    from matplotlib.ticker import MaxNLocator

    from pointsym.experiments.common.plotting import plt, savefig

    n = len(recs)
    cols = min(n, 3)  # 3 panels of 3 in: the report (1000 px = 9.1 in at 110 dpi) shows them unscaled
    rows = int(np.ceil(n / cols))
    fig = plt.figure(figsize=(3.0 * cols, 4.3 * rows))
    for k, (c, r) in enumerate(zip(crystals, recs)):
        ax = fig.add_subplot(rows, cols, k + 1, projection="3d")
        colors = _species_colors(np.r_[c.numbers, r.numbers])
        cell = c.cell
        for i0 in range(8):  # the 12 edges of the true unit cell, as context
            f0 = np.array([(i0 >> 0) & 1, (i0 >> 1) & 1, (i0 >> 2) & 1])
            for axis in range(3):
                if f0[axis] == 0:
                    seg = np.stack([f0, f0 + np.eye(3, dtype=int)[axis]]) @ cell
                    ax.plot(seg[:, 0], seg[:, 1], seg[:, 2], color="0.45", lw=0.7, ls="--")
        for z in sorted(set(int(v) for v in c.numbers)):
            p = c.positions[c.numbers == z]
            ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=160, facecolors="none", edgecolors=[colors[z]], linewidths=1.5,
                       label=f"true {chemical_symbols[z] if z < len(chemical_symbols) else z}")
        for z in sorted(set(int(v) for v in r.numbers)):
            p = r.positions[r.numbers == z]
            ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=22, c=[colors[z]], marker="o",
                       label=f"rec. {chemical_symbols[z] if z < len(chemical_symbols) else z}")
        ax.set_title(f"{c.id}: {len(c.numbers)} true / {len(r.numbers)} found", fontsize=10)
        for axis, set_label in zip((ax.xaxis, ax.yaxis, ax.zaxis), (ax.set_xlabel, ax.set_ylabel, ax.set_zlabel),
                                   strict=True):
            axis.set_major_locator(MaxNLocator(3, integer=True))
            set_label(f"{axis.axis_name} (Å)", fontsize=9, labelpad=-2)
        ax.tick_params(labelsize=9, pad=-2)
        ax.set_box_aspect(None, zoom=0.88)  # room inside the panel for the z label
        ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, 0.02), ncol=2, frameon=False,
                  handletextpad=0.2, columnspacing=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    return savefig(fig, path)


def evaluate(
    model: Any, crystals: Any, *, box: str = "model", params: Any = None, device: str = "cpu",
    batch_structures: int = 8, quiet: bool = True, periodic: bool = False,
) -> tuple[dict[str, Any], list[Any], tuple[np.ndarray, np.ndarray]]:
    """Reconstruct every structure of ``crystals`` and compute the NeSF metrics.

    Args:
        model: a :class:`pointsym.fields.NeSF` or the string ``"exact"`` (analytic fields).
        crystals: :class:`pointsym.fields.CrystalSet`.
        box: particle-grid box: ``"model"`` (the model's training box), ``"data"`` (the
            box of ``crystals``) or ``"union"``. ``"model"`` is not available for ``"exact"``.
        params: :class:`pointsym.fields.ReconstructionParams`.

    Returns:
        ``(metrics, reconstructions, (box_min, box_max))``.
    """
    from pointsym.fields import ExactField, NeuralField, reconstruct, reconstruction_metrics

    lo_d, hi_d = crystals.bounding_box()
    if isinstance(model, str):
        if model != "exact":
            raise ValueError(f"Expected a NeSF model or 'exact' (got {model!r}).")
        if box == "model":
            raise ValueError("box='model' needs a trained model; use box='data' with the exact field.")
        field = ExactField(crystals, periodic=periodic)
        lo, hi = lo_d, hi_d
    else:
        field = NeuralField(model, crystals, device=device)
        lo_m, hi_m = np.asarray(model.box_min), np.asarray(model.box_max)
        lo, hi = {"model": (lo_m, hi_m), "data": (lo_d, hi_d),
                  "union": (np.minimum(lo_m, lo_d), np.maximum(hi_m, hi_d))}[box]
    recs = reconstruct(field, lo, hi, params, batch_structures=batch_structures,
                       progress=lambda it, total: progress(it, quiet=quiet, desc="reconstruct", total=total))
    metrics = reconstruction_metrics(
        crystals, recs, true_lattice=(crystals.lengths, crystals.angles),
        pred_lattice=(np.stack([r.lengths for r in recs]), np.stack([r.angles for r in recs])))
    return metrics, recs, (np.asarray(lo), np.asarray(hi))


def _eval(args: argparse.Namespace) -> int:
    from pointsym.experiments.common.results import save_results
    from pointsym.fields import ReconstructionParams, load_nesf

    validate_options(args, NeSFEvalOptions)
    validate_options(args, ReconstructionParams, overrides=_RECONSTRUCTION_OPTIONS)
    if args.model != "exact" and not Path(args.model).is_file():
        raise FileNotFoundError(f"--model {args.model!r} does not exist (expected a model exported by nesf-train, "
                                "e.g. results/nesf/nesf_lim_l6.pt, or 'exact').")
    crystals = _load_set(args.data, args.split, args, args.max_test, "--max-test")
    info: dict[str, Any] = {}
    if args.model == "exact":
        model: Any = "exact"
        model_tag = "exact" + ("_periodic" if args.periodic else "")
        box = args.box or "data"
    else:
        if args.periodic:
            raise ValueError("--periodic applies to --model exact only (NeSF fields are not periodic).")
        model, info = load_nesf(args.model, device=args.device)
        model_tag = Path(args.model).stem
        box = args.box or "model"
    params = config_from_args(ReconstructionParams, args)
    t0 = time.perf_counter()
    metrics, recs, (lo, hi) = evaluate(model, crystals, box=box, params=params, device=args.device,
                                       batch_structures=args.batch_structures, quiet=args.quiet,
                                       periodic=args.periodic)
    seconds = time.perf_counter() - t0
    tag = args.tag or f"{model_tag}_{_data_tag(args.data, args.split)}"
    out = Path(args.out)
    images = []
    if args.plots > 0:
        k = min(args.plots, len(recs))
        png = plot_reconstructions([crystals[i] for i in range(k)], recs[:k], out / f"recon_{tag}.png",
                                   title=f"{model_tag} on {crystals.name}: true (circles) vs reconstructed (dots)")
        images.append(str(png))
    per_structure = [{"id": c.id, "n_true": int(len(c.numbers)), "n_detected": int(len(r.numbers)),
                      "n_kept_particles": int(r.n_kept)} for c, r in zip(crystals, recs)]
    payload = {
        "task": "nesf-eval", "model": args.model, "model_info": info, "data": crystals.name,
        "n_structures": len(crystals), "box": box, "box_min": lo, "box_max": hi,
        "reconstruction": params.to_dict(), "metrics": metrics, "seconds": seconds,
        "seconds_per_structure": seconds / max(len(crystals), 1), "images": images, "per_structure": per_structure,
    }
    path = save_results(out / f"eval_{tag}.json", payload)
    print(f"nesf-eval: {model_tag} on {crystals.name} ({len(crystals)} structures, box={box}, {seconds:.1f} s)")
    for key, label in _METRIC_LABELS:
        if key in metrics:
            print(f"  {label:34s} {metrics[key]:.4g}")
    print(f"  detected / true atoms: {metrics['n_detected_atoms']} / {metrics['n_true_atoms']}; "
          f"empty reconstructions: {metrics['n_empty_reconstructions']}")
    print(f"results -> {path}" + (f"; picture -> {images[0]}" if images else ""))
    return 0


# ---------------------------------------------------------------------------------- parsers
@dataclass
class NeSFTrainOptions:
    """Options of ``nesf-train`` (each declared once here; ``--help`` shows defaults and units).

    Besides these: the data group (``--source``, ``--data-dir``, ``--sidx-to-z``), the limits
    ``--max-train`` / ``--max-val`` and the run and output groups.
    """

    data: str = field(default="lim_l6", metadata={
        "help": "data set name (lim_l6, ICSG3D, YBCO13) or a training npz in the NeSF format", "metavar": "NAME|NPZ",
        "group": "data sets"})
    train_split: str = field(default="train", metadata={
        "help": "split of a named --data used for training (train, val or test)", "metavar": "SPLIT",
        "group": "data sets"})
    val_data: str | None = field(default=None, metadata={
        "help": "validation set: a data set name or a NeSF-format npz", "metavar": "NAME|NPZ",
        "default_help": "--data", "group": "data sets"})
    val_split: str = field(default="val", metadata={
        "help": "split of the validation set (train, val or test), or 'none' to train without validation",
        "metavar": "SPLIT", "group": "data sets"})
    epochs: int = field(default=3200, metadata={
        "help": "total epochs, counted over resumed runs (reference: 3200)", "unit": "epochs", "group": "training",
        "min": 1})
    max_minutes: float | None = field(default=None, metadata={
        "help": "stop after the epoch that exceeds this wall time; rerun to continue (resumes)", "unit": "min",
        "default_help": "no limit", "group": "training", "gt": 0.0})
    batch_size: int = field(default=64, metadata={"help": "batch size", "unit": "structures", "group": "training",
                                                  "min": 1})
    lr: float = field(default=1e-3, metadata={"help": "initial Adam learning rate (see --lr-schedule)",
                                              "group": "training", "gt": 0.0})
    lr_step: int = field(default=640, metadata={
        "help": "epochs between two learning-rate decays by --lr-gamma (StepLR; reference: 640)", "unit": "epochs",
        "group": "training", "min": 1})
    lr_gamma: float = field(default=0.5, metadata={
        "help": "factor applied to the learning rate every --lr-step epochs, in (0, 1]", "group": "training",
        "gt": 0.0, "max": 1.0})
    lr_schedule: str = field(default="step", metadata={
        "help": "learning-rate schedule, stepped once per epoch: step (StepLR by --lr-gamma every --lr-step epochs, "
                "the reference) or cosine (from --lr down to --lr-min over --epochs, then constant)",
        "choices": ("step", "cosine"), "group": "training"})
    lr_min: float = field(default=1e-5, metadata={
        "help": "final learning rate of --lr-schedule cosine", "group": "training", "min": 0.0})
    precision: str = field(default="fp32", metadata={
        "help": "precision of the forward pass: fp32, or bf16 autocast (bfloat16 matrix products, float32 weights, "
                "optimizer, query terms and loss; fast on CPUs with AVX-512 BF16/AMX and on GPUs)",
        "choices": ("fp32", "bf16"), "group": "training"})
    patience: int | None = field(default=None, metadata={
        "help": "early-stopping patience on the validation loss", "unit": "epochs", "default_help": "off",
        "group": "training", "min": 1})
    restart: bool = field(default=False, metadata={
        "help": "start fresh: move the checkpoints already in OUT/checkpoints/<data> aside (to previous/<n>/, not "
                "deleted) instead of resuming them", "action": "store_true", "group": "training"})
    init_from: str | None = field(default=None, metadata={
        "help": "start from the weights of an exported model (nesf_<data>.pt) or a nesf-train checkpoint, with a "
                "fresh optimizer; used when OUT/checkpoints/<data>/last.pt is absent (e.g. in a fresh clone)",
        "metavar": "PATH", "group": "training"})
    latent_dim: int = field(default=192, metadata={"help": "size of the encoder's latent vector", "unit": "features",
                                                   "group": "model", "min": 1})
    dropout: float = field(default=0.3, metadata={"help": "dropout probability of the decoders, in [0, 1)",
                                                  "group": "model", "min": 0.0, "lt": 1.0})
    query_encoding: str = field(default="raw", metadata={
        "help": "raw query coordinates (paper-era nesf.yaml) or NeRF encoding (nesf_pe.yaml)",
        "choices": ("raw", "fourier"), "group": "model"})
    species_vocab: str = field(default="all", metadata={
        "help": "species vocabulary: all 118 elements or the training set's elements", "choices": ("all", "data"),
        "group": "model"})
    position_channels: str | None = field(default=None, metadata={
        "help": "hidden widths of the position decoder, comma-separated, e.g. 64,64,64", "metavar": "W,W,...",
        "default_help": "the reference widths", "group": "model"})
    species_channels: str | None = field(default=None, metadata={
        "help": "hidden widths of the species decoder, comma-separated, e.g. 64,64", "metavar": "W,W,...",
        "default_help": "the reference widths", "group": "model"})
    n_global: int | None = field(default=None, metadata={
        "help": "random global queries per structure per step", "unit": "queries",
        "default_help": "the whole jittered grid", "group": "queries", "min": 1})
    n_local: int | None = field(default=None, metadata={
        "help": "local position queries per atom per step, at most 64", "unit": "queries", "default_help": "all 64",
        "group": "queries", "min": 1, "max": 64})
    n_species: int | None = field(default=None, metadata={
        "help": "species queries per atom per step, at most 216", "unit": "queries", "default_help": "all 216",
        "group": "queries", "min": 1, "max": 216})
    global_sampling: str = field(default="uniform", metadata={
        "help": "how the --n-global queries are drawn from the jittered grid: uniform subset, or importance: half "
                "uniform, half near atoms and between close atoms (sigma 1 Å), with loss weights "
                "1/(G p) that keep the expected loss (needs --n-global)",
        "choices": ("uniform", "importance"), "group": "queries"})

    def validate(self) -> None:
        """Combinations and lists (single bounds come from the field metadata)."""
        if self.global_sampling == "importance" and self.n_global is None:
            raise ValueError("--global-sampling importance draws the --n-global queries; pass --n-global N "
                             "(without it every grid point is used).")
        for flag, text in (("--position-channels", self.position_channels),
                           ("--species-channels", self.species_channels)):
            if text is None:
                continue
            try:
                widths = _ints(text)
            except ValueError:
                widths = None
            if not widths or any(w < 1 for w in widths):
                raise ValueError(f"{flag} must be comma-separated widths >= 1, e.g. 64,64 (got {text!r}).")
        splits = ("train", "val", "test")
        if not self.data.endswith(".npz") and self.train_split not in splits:
            raise ValueError(f"--train-split must be one of {', '.join(splits)} (got {self.train_split!r}).")
        if self.val_split not in (*splits, "none"):
            raise ValueError(f"--val-split must be one of {', '.join(splits)} or none (got {self.val_split!r}).")
        if self.lr_schedule == "cosine" and self.lr_min > self.lr:
            raise ValueError(f"--lr-min ({self.lr_min:g}) must not exceed --lr ({self.lr:g}).")


@dataclass
class NeSFEvalOptions:
    """Options of ``nesf-eval`` besides the reconstruction parameters.

    Those (``--spacing``, ``--steps``, ...) are fields of :class:`pointsym.fields.ReconstructionParams`.
    """

    model: str = field(metadata={"help": "checkpoint (.pt from nesf-train) or 'exact' (analytic fields)"})
    data: str = field(metadata={"help": "data set name (lim_l6, ICSG3D, YBCO13) or any NeSF-format npz"})
    split: str = field(default="test", metadata={"help": "split of a named data set"})
    box: str | None = field(default=None, metadata={
        "help": "particle-grid box", "choices": ("model", "data", "union"),
        "default_help": "the model's training box; the data's box for 'exact'"})
    periodic: bool = field(default=False, metadata={"help": "exact field with periodic images (extension)",
                                                    "action": "store_true"})
    batch_structures: int = field(default=8, metadata={"help": "structures decoded together", "min": 1})
    plots: int = field(default=4, metadata={"help": "structures drawn in recon_<tag>.png (0: none)",
                                            "group": "output", "min": 0})
    tag: str | None = field(default=None, metadata={"help": "name of the outputs", "default_help": "<model>_<data>",
                                                    "group": "output"})

    def validate(self) -> None:
        if self.periodic and self.model != "exact":
            raise ValueError("--periodic applies to --model exact only (NeSF fields are not periodic).")
        if self.box == "model" and self.model == "exact":
            raise ValueError("--box model needs a trained model; use --box data (the default) with --model exact.")


#: The reconstruction parameters ``nesf-eval`` exposes, with their option names and units.
_RECONSTRUCTION_OPTIONS: dict[str, dict[str, Any]] = {
    "spacing": {"help": "particle grid spacing", "unit": "Å", "gt": 0.0},
    "n_steps": {"help": "transport steps", "flag": "--steps", "metavar": "STEPS", "min": 1},
    "residual_threshold": {"help": "keep particles whose last displacement is at most this", "unit": "Å",
                           "gt": 0.0},
    "nms_radius": {"help": "cluster radius", "unit": "Å", "gt": 0.0},
    "min_cluster_size": {"help": "particles per atom", "min": 1},
    "freeze_tol": {"help": "stop moving particles whose step fell below this; speed knob", "unit": "Å",
                   "default_help": "off", "gt": 0.0},
}


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    argument_group(p, "data").add_argument(
        "--sidx-to-z", default=None,
        help="JSON file with 'sidx_to_z' (an .attr.json) for an npz whose 'numbers' are species indices and that has "
             "no <stem>.attr.json beside it (default: none)")


def register(sub: Any) -> None:
    """Add the ``nesf-train`` and ``nesf-eval`` sub-commands."""
    from pointsym.fields import ReconstructionParams

    source = "NeSF crystal sets"
    p = sub.add_parser("nesf-train", help="train the NeSF crystal autoencoder (resumable)",
                       description=__doc__.split("\n\n")[1])
    add_common_arguments(p, results="results/nesf", source=source)
    _add_data_arguments(p)
    add_limit_arguments(p, train="use only the first N training structures",
                        val="use only the first N validation structures",
                        aliases={"train": ["--limit-train"], "val": ["--limit-val"]})
    add_dataclass_arguments(p, NeSFTrainOptions)
    p.set_defaults(func=_train)

    e = sub.add_parser("nesf-eval", help="reconstruct crystals from NeSF (or exact) fields and print the metrics",
                       description=__doc__.split("\n\n")[2])
    add_common_arguments(e, results="results/nesf", source=source)
    _add_data_arguments(e)
    add_limit_arguments(e, test="evaluate only the first N structures", aliases={"test": ["--limit"]})
    add_dataclass_arguments(e, NeSFEvalOptions, group="evaluation")
    add_dataclass_arguments(e, ReconstructionParams, include=_RECONSTRUCTION_OPTIONS,
                            overrides=_RECONSTRUCTION_OPTIONS, group="reconstruction")
    e.set_defaults(func=_eval)
