"""``pointsym pet-train`` and ``pointsym pet-predict``: PET (+ECSE) on energies and forces.

``pet-train`` fits a Point Edge Transformer (or the non-equivariant ``NeighborMLP``
baseline) to an energy/force set through :class:`pointsym.training.Trainer` (resumable
checkpoints in ``OUT/checkpoints``), then evaluates the best checkpoint on the test split three
ways -- bare, bare under random rotations (rotational discrepancy) and symmetrized with
ECSE -- and writes ``OUT/results.json`` plus plots.

``pet-predict`` writes energies and forces of every structure of an extxyz file into a new
extxyz, from a checkpoint or an untrained ``random:SEED`` model, with or without ECSE.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pointsym.core.checkpoints import model_spec
from pointsym.experiments.common.cli import (
    add_common_arguments,
    add_dataclass_arguments,
    add_limit_arguments,
    add_run_arguments,
    progress,
    resolve_device,
    validate_options,
)
from pointsym.experiments.common.results import save_results
from pointsym.structures import read_structures

__all__ = [
    "PETPredictOptions",
    "PETTrainOptions",
    "build_model",
    "check_frames",
    "evaluate",
    "load_frames",
    "load_model",
    "make_loss",
    "read_frames",
    "register",
    "symmetrized",
]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


# ---------------------------------------------------------------------------------- data
def read_frames(path: str | Path, *, fmt: str | None = None, flag: str = "--data") -> list:
    """Every structure of a file, read with ``ase.io.read`` (format ``fmt``, or guessed from the name).

    An unreadable file is a ``ValueError`` that names the file, the format tried and ``--format``.
    """
    try:
        frames = read_structures(path, format=fmt)
    except Exception as exc:  # noqa: BLE001 - XYZError, UnknownFileTypeError, ParseError, ... : one message
        try:
            from ase.io.formats import filetype

            tried = fmt or f"{filetype(str(path), read=False)} (guessed from the file name)"
        except Exception:  # noqa: BLE001
            tried = fmt or "none guessed from the file name"
        detail = str(exc).splitlines()[0] if str(exc) else "no detail"
        raise ValueError(f"Could not read the structures of {flag} {str(path)!r} as format {tried} "
                         f"({type(exc).__name__}: {detail}); pass --format with the right ase.io format "
                         "(e.g. extxyz, xyz, vasp, cif, lammps-data), or fix the file.") from exc
    return frames if isinstance(frames, list) else [frames]


def check_frames(frames: list, where: str, *, labels: bool) -> list:
    """Refuse empty structures, NaN/inf positions, overlapping atoms (and bad labels), naming the
    frame's index in ``where`` -- checked here, before shuffling and batching, because the
    model's own checks can only name a structure's place in a shuffled batch."""
    from pointsym.geometry import neighbor_list
    from pointsym.structures import MIN_DISTANCE

    for k, atoms in enumerate(frames):
        what = f"Frame {k} of {where}"
        if len(atoms) == 0:
            raise ValueError(f"{what} has no atoms; remove it from the file.")
        if not np.all(np.isfinite(atoms.positions)):
            raise ValueError(f"{what} has NaN or infinite positions; fix or remove that frame.")
        nl = neighbor_list(atoms.positions, cell=atoms.cell[:] if atoms.pbc.any() else None,
                           pbc=atoms.pbc.tolist() if atoms.pbc.any() else False, r_cut=MIN_DISTANCE)
        if len(nl):
            k = int(np.argmin(nl.distances))
            raise ValueError(f"{what} has overlapping atoms: atoms {int(nl.i[k])} and {int(nl.j[k])} are "
                             f"{nl.distances[k]:.3g} Å apart (< {MIN_DISTANCE} Å); remove duplicates or fix the "
                             "positions.")
        if not labels:
            continue
        energy = atoms.info.get("energy")
        forces = atoms.arrays.get("forces")
        if energy is None or forces is None:
            raise ValueError(f"{what} has no energy and forces (expected an energy in the comment line and a "
                             "forces column, as extxyz writes them); pet-train needs both labels.")
        if not np.isfinite(energy):
            raise ValueError(f"{what} has a non-finite energy ({energy}); fix or remove that frame.")
        if np.shape(forces) != (len(atoms), 3) or not np.all(np.isfinite(forces)):
            raise ValueError(f"{what} has NaN/infinite forces or forces of shape {np.shape(forces)} for "
                             f"{len(atoms)} atoms; fix or remove that frame.")
    return frames


def load_frames(spec: str, split: str, *, source: str = "full", data_dir: str | None = None,
                fmt: str | None = None, flag: str = "--data") -> list:
    """Structures (with energy/force labels) from a data-set name (``load_atomistic``) or a structure file.

    Every frame is checked (:func:`check_frames`); errors name the frame's index in the file.
    """
    from pointsym.datasets import ATOMISTIC_SETS, load_atomistic, read_atomistic

    if Path(spec).is_file():
        if fmt is None and Path(spec).suffix.lower() in (".xyz", ".extxyz"):
            try:
                frames = read_atomistic(spec)
            except Exception:  # noqa: BLE001 - reread for the message that names the file and format
                frames = _with_labels(read_frames(spec, fmt="extxyz", flag=flag))
        else:
            frames = _with_labels(read_frames(spec, fmt=fmt, flag=flag))
        return check_frames(frames, f"{flag} {spec!r}", labels=True)
    if spec in ATOMISTIC_SETS:
        frames = load_atomistic(spec, split, source=source, data_dir=data_dir)
        return check_frames(frames, f"{spec!r} ({split} split)", labels=True)
    raise ValueError(f"{flag} {spec!r} is neither an existing structure file nor a data set name "
                     f"({sorted(ATOMISTIC_SETS)}).")


def _with_labels(frames: list) -> list:
    """Energy/forces of a calculator (any ase format) moved into ``info``/``arrays``, as read_atomistic does."""
    out = []
    for atoms in frames:
        energy, forces = atoms.info.get("energy"), atoms.arrays.get("forces", atoms.arrays.get("force"))
        if atoms.calc is not None:
            energy = atoms.calc.results.get("energy", energy)
            forces = atoms.calc.results.get("forces", forces)
        clean = atoms.copy()
        clean.calc = None
        if energy is not None:
            clean.info["energy"] = float(energy)
        if forces is not None:
            clean.arrays["forces"] = np.asarray(forces, dtype=np.float64)
        out.append(clean)
    return out


def _splits(args: argparse.Namespace) -> tuple[list, list, list]:
    from pointsym.datasets import ATOMISTIC_SETS

    fmt = getattr(args, "format", None)
    train = load_frames(args.data, "train", source=args.source, data_dir=args.data_dir, fmt=fmt)
    splits = ATOMISTIC_SETS.get(args.data, {})
    rng = np.random.default_rng(args.seed)
    if args.val:
        val = load_frames(args.val, "val", source=args.source, data_dir=args.data_dir, fmt=fmt, flag="--val")
    elif "val" in splits:
        val = load_frames(args.data, "val", source=args.source, data_dir=args.data_dir)
    else:  # hold out part of the training split, reproducibly
        if len(train) < 2:
            raise ValueError(f"--data {args.data!r} holds {len(train)} structure(s): too few to hold out "
                             f"validation structures (--val-fraction); pass a validation file with --val, "
                             "or use a file with more structures.")
        perm = rng.permutation(len(train))
        n_val = min(len(train) - 1, max(1, int(round(args.val_fraction * len(train)))))
        val = [train[k] for k in perm[:n_val]]
        train = [train[k] for k in perm[n_val:]]
    if args.test:
        test = load_frames(args.test, "test", source=args.source, data_dir=args.data_dir, fmt=fmt, flag="--test")
    elif "test" in splits:
        test = load_frames(args.data, "test", source=args.source, data_dir=args.data_dir)
    else:
        test = []
    if args.max_train is not None and len(train) > args.max_train:
        train = [train[k] for k in sorted(rng.permutation(len(train))[: args.max_train])]
    if not train:
        raise ValueError(f"No training structures in --data {args.data!r}.")
    return train, val, test


# ---------------------------------------------------------------------------------- models
def build_model(kind: str, species: list[int], args: argparse.Namespace) -> torch.nn.Module:
    """A PET or NeighborMLP from command-line hyper-parameters."""
    from pointsym.models.pet import PET
    from pointsym.symmetrize import NeighborMLP

    if kind == "pet":
        return PET(species, r_cut=args.r_cut, d_model=args.d_model, n_gnn_layers=args.n_gnn_layers,
                   n_trans_layers=args.n_trans_layers, n_heads=args.n_heads, dim_feedforward=args.dim_feedforward,
                   head_hidden=args.head_hidden, cutoff_delta=args.cutoff_delta)
    return NeighborMLP(r_cut=args.r_cut, hidden=args.head_hidden, n_features=args.d_model, species=species)


def load_model(spec: str, *, species: list[int] | None = None, r_cut: float = 4.0, seed_dims: dict | None = None
               ) -> torch.nn.Module:
    """A model from a ``pet-train`` checkpoint or a ``PET.save`` file, or an untrained ``random:SEED`` PET."""
    from pointsym.core import read_torch_file
    from pointsym.core.checkpoints import model_class_of
    from pointsym.models.pet import PET
    from pointsym.symmetrize import NeighborMLP
    from pointsym.training import seed_everything

    if spec.startswith("random:"):
        try:
            seed = int(spec.split(":", 1)[1])
        except ValueError as exc:
            raise ValueError(f"Expected --model random:SEED with an integer SEED (got {spec!r}).") from exc
        if not species:
            raise ValueError("A random model needs the species of the input structures.")
        seed_everything(seed)
        dims = {"d_model": 32, "n_gnn_layers": 2, "n_trans_layers": 2, "dim_feedforward": 64, "head_hidden": 32,
                **(seed_dims or {})}
        return PET(species, r_cut=r_cut, **dims)
    # A pet-train Trainer checkpoint (hypers in config.extra["model"]) or a model file of PET.save.
    raw = read_torch_file(spec)
    cls = model_class_of(raw, spec)
    if cls not in (PET, NeighborMLP):
        raise ValueError(f"{spec!r} holds a {cls.__name__}, expected a PET or NeighborMLP (a pet-train "
                         "checkpoint or a PET.save file).")
    return cls.from_loaded(raw, spec)


def symmetrized(model: torch.nn.Module, **kwargs: Any) -> torch.nn.Module:
    """``ECSE`` around a PET or NeighborMLP, with the right output declaration."""
    from pointsym.symmetrize import ECSE, NeighborMLP

    outputs = NeighborMLP.OUTPUTS if isinstance(model, NeighborMLP) else "scalar"
    return ECSE(model, r_cut=model.r_cut, outputs=outputs, **kwargs)


# ---------------------------------------------------------------------------------- training
def _random_o3(n: int, dtype: torch.dtype, device: Any) -> torch.Tensor:
    """``n`` Haar-random rotations times a random sign (random O(3) elements), from torch's global RNG.

    The rotations come from :func:`pointsym.geometry.random_rotation` with
    ``torch.default_generator`` (the Trainer checkpoints that RNG state, so training resumes
    with the same augmentation).
    """
    from pointsym.geometry import random_rotation

    rot = random_rotation(n, torch.default_generator, backend="torch", dtype=torch.float64)
    sign = torch.where(torch.rand(n) < 0.5, -1.0, 1.0).to(torch.float64)
    return (rot * sign[:, None, None]).to(dtype=dtype, device=device)


def make_loss(energy_weight: float, sigma_e: float, sigma_f: float, augment: bool):
    """Loss ``w_E MSE(E/atom)/sigma_E^2 + MSE(F)/sigma_F^2`` with O(3) augmentation in training.

    Metrics: ``e_mae`` (meV/atom) and ``f_mae`` (eV/Å).
    """
    from pointsym.structures import autograd_energy_forces

    def loss_fn(model: torch.nn.Module, b: Any) -> tuple[torch.Tensor, dict[str, float]]:
        pos, cell, forces_ref = b.positions, b.cell, b.forces
        if augment and model.training:
            q = _random_o3(b.n_structures, pos.dtype, pos.device)
            pos = torch.einsum("nk,nlk->nl", pos, q[b.batch])
            cell = torch.einsum("skm,slm->skl", cell, q)
            forces_ref = torch.einsum("nk,nlk->nl", forces_ref, q[b.batch])
        out = autograd_energy_forces(model, pos, b.numbers, cell, b.pbc, b.batch, forces=True,
                                     create_graph=model.training)
        n_atoms = b.n_atoms.to(pos.dtype)
        de = (out["energy"] - b.energy) / n_atoms
        df = out["forces"] - forces_ref
        loss = energy_weight * (de ** 2).mean() / sigma_e ** 2 + (df ** 2).mean() / sigma_f ** 2
        return loss, {"e_mae": float(de.detach().abs().mean()) * 1000.0, "f_mae": float(df.detach().abs().mean())}

    return loss_fn


def _lr_lambda(epochs: int, warmup: int):
    def f(epoch: int) -> float:
        if epoch < warmup:
            return (epoch + 1) / warmup
        progress_ = (epoch - warmup) / max(1, epochs - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))

    return f


# ---------------------------------------------------------------------------------- evaluation
def evaluate(model: torch.nn.Module, frames: list, *, quiet: bool = True, desc: str = "eval") -> dict[str, Any]:
    """Energy MAE/RMSE (meV/atom), force MAE/RMSE (eV/Å) and time per structure (s).

    Structures are predicted one at a time so that the time per structure is comparable
    between bare and symmetrized models. For an ECSE model the frames kept after pruning
    (and before) and the number of model evaluations per structure are averaged too.
    """
    from pointsym.structures import predict_structures

    e_err, f_err, times, stats = [], [], [], []
    for atoms in progress(frames, quiet=quiet, desc=desc):
        t0 = time.perf_counter()
        out = predict_structures(model, [atoms], batch_size=1)
        times.append(time.perf_counter() - t0)
        if getattr(model, "last_stats", None):
            st = model.last_stats
            stats.append((st["n_frames"][0], st["n_candidates"][0], st["n_evaluations"][0]))
        e_err.append((out["energy"][0] - atoms.info["energy"]) / len(atoms))
        f_err.append((out["forces"] - atoms.arrays["forces"]).ravel())
    e, f = np.asarray(e_err), np.concatenate(f_err)
    res = {
        "energy_mae_mev_per_atom": float(np.abs(e).mean() * 1000), "energy_rmse_mev_per_atom":
        float(np.sqrt((e ** 2).mean()) * 1000), "forces_mae": float(np.abs(f).mean()),
        "forces_rmse": float(np.sqrt((f ** 2).mean())), "seconds_per_structure": float(np.mean(times)),
        "n_structures": len(frames), "_energy_err": e, "_forces_err": f,
    }
    if stats:
        arr = np.asarray(stats, dtype=np.float64)
        res.update({"mean_frames_kept": float(arr[:, 0].mean()), "max_frames_kept": float(arr[:, 0].max()),
                    "mean_frames_before_pruning": float(arr[:, 1].mean()),
                    "mean_model_evaluations": float(arr[:, 2].mean())})
    return res


def _evenly_spaced(n_total: int, n: int) -> np.ndarray:
    """Indices of ``min(n, n_total)`` evenly spaced items of ``n_total`` (first and last included)."""
    return np.unique(np.linspace(0, n_total - 1, max(1, min(n, n_total))).round().astype(int))


def _predict_fn(model: torch.nn.Module):
    from pointsym.structures import predict_structures

    return lambda frames: predict_structures(model, frames, batch_size=len(frames))


def _train_main(args: argparse.Namespace) -> int:
    from pointsym.structures import batch_structures
    from pointsym.training import TrainConfig, Trainer, init_weights, seed_everything

    t_start = time.perf_counter()
    validate_options(args, PETTrainOptions)
    if args.max_test is not None and args.max_test < 1:
        raise ValueError(f"--max-test must be >= 1 (got {args.max_test}); leave it out to use all.")
    if args.init_from is not None and not Path(args.init_from).is_file():
        raise FileNotFoundError(f"--init-from {args.init_from!r} does not exist (expected a pet-train checkpoint "
                                "such as OUT/checkpoints/best.pt or a PET.save file).")
    out = Path(args.out)
    train, val, test = _splits(args)
    species = sorted({int(z) for a in train + val + test for z in a.numbers})
    seed_everything(args.seed)
    model = build_model(args.model, species, args)
    model.fit_baseline(train)
    _zero_readout(model)
    if args.init_from is not None:
        # Weights only (fresh optimizer and schedule); a last.pt of this --out still takes precedence.
        init_weights(model, args.init_from)
    dtype = _DTYPES[args.dtype]
    tb = batch_structures(train, dtype=torch.float64, labels=True)
    per_atom = (tb.energy - _baseline_energy(model, tb)) / tb.n_atoms.double()
    sigma_e = float(per_atom.std()) if len(train) > 1 else 1.0
    sigma_f = float(torch.sqrt((tb.forces ** 2).mean()))
    model = model.to(_DTYPES[args.dtype])
    loss_fn = make_loss(args.energy_weight, sigma_e if sigma_e > 0 else 1.0, sigma_f if sigma_f > 0 else 1.0,
                        args.augment)

    def collate(frames: list) -> Any:
        return batch_structures(frames, dtype=dtype, labels=True)

    warmup = max(1, int(0.05 * args.epochs))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(args.epochs, warmup))
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, out_dir=str(out / "checkpoints"),
        device=args.device, quiet=args.quiet, eval_requires_grad=True, grad_clip=args.grad_clip,
        restart=args.restart,
        extra={"model": model_spec(model), "data": args.data, "augment": args.augment,
               "energy_weight": args.energy_weight, "dtype": args.dtype, "init_from": args.init_from},
    )
    trainer = Trainer(model, loss_fn, config, optimizer=optimizer, scheduler=scheduler, collate_fn=collate)
    t0 = time.perf_counter()
    history = trainer.fit(train, val)
    train_seconds = time.perf_counter() - t0
    if not trainer.is_main:
        # Under torchrun rank 0 alone evaluates and writes results, plots and prints; the
        # others wait for it, so that no process exits (or reads a file) before it is written.
        trainer.barrier()
        return 0
    try:
        return _evaluate_and_write(args, trainer, history, train, val, test, species, sigma_e, sigma_f,
                                   train_seconds, t_start)
    finally:
        trainer.barrier()


def _evaluate_and_write(args: argparse.Namespace, trainer: Any, history: list, train: list, val: list, test: list,
                        species: list[int], sigma_e: float, sigma_f: float, train_seconds: float,
                        t_start: float) -> int:
    from pointsym.experiments.common.plotting import plot_history, plt, savefig
    from pointsym.symmetrize import rotational_discrepancy

    out = Path(args.out)
    model = trainer.load_best().eval()

    results: dict[str, Any] = {
        "data": args.data, "model": model_spec(model), "n_parameters": sum(p.numel() for p in model.parameters()),
        "augment": args.augment, "epochs_run": len(history), "epochs_requested": args.epochs,
        "best_epoch": trainer.best_epoch, "train_seconds_this_invocation": train_seconds,
        "train_seconds_total": float(sum(h["seconds"] for h in history)),
        "n_train": len(train), "n_val": len(val), "n_test": len(test), "species": species,
        "loss": {"energy_weight": args.energy_weight, "sigma_e_ev_per_atom": sigma_e, "sigma_f": sigma_f},
        "final_val": {k: v for k, v in history[-1].items() if k.startswith("val_")} if history else {},
        "history": history,
    }
    eval_sets = {"test": test} if test else {"val": val}
    for split, frames in eval_sets.items():
        if args.max_test is not None:
            frames = frames[: args.max_test]
        res_split: dict[str, Any] = {}
        bare = evaluate(model, frames, quiet=args.quiet, desc=f"{split} bare")
        res_split["bare"] = {k: v for k, v in bare.items() if not k.startswith("_")}
        # Bare model: evenly spaced structures (all by default). The smallest ones alone are not
        # representative: a model trained without augmentation on axis-aligned cubic cells can be
        # nearly invariant on small surface slabs and off by ~0.1 eV/atom on rotated bulk cells.
        n_bare = len(frames) if args.discrepancy_structures is None else args.discrepancy_structures
        disc_pick = _evenly_spaced(len(frames), n_bare)
        disc = rotational_discrepancy(_predict_fn(model), [frames[k] for k in disc_pick],
                                      n_rotations=args.discrepancy_rotations,
                                      reflections=True, seed=args.seed)
        res_split["bare"]["rotational_discrepancy"] = {k: v for k, v in disc.items() if not k.endswith("_mean")}
        if args.eval_ecse:
            sym = symmetrized(model)
            ecse_frames = frames
            if args.ecse_max_test is not None and len(frames) > args.ecse_max_test:
                # Evenly spaced subset (ECSE costs ~2 x frames kept model evaluations per structure).
                pick = _evenly_spaced(len(frames), args.ecse_max_test)
                ecse_frames = [frames[k] for k in pick]
                bare_sub = evaluate(model, ecse_frames, quiet=True)
                res_split["bare_on_ecse_subset"] = {k: v for k, v in bare_sub.items() if not k.startswith("_")}
                res_split["ecse_subset_indices"] = pick.tolist()
            sym_eval = evaluate(sym, ecse_frames, quiet=args.quiet, desc=f"{split} ECSE")
            res_split["ecse"] = {k: v for k, v in sym_eval.items() if not k.startswith("_")}
            # ECSE is exact by construction, so its (expensive) check uses the smallest structures.
            n_disc = sorted(frames, key=len)[: args.ecse_discrepancy_structures]
            disc = rotational_discrepancy(_predict_fn(sym), n_disc,
                                          n_rotations=args.discrepancy_rotations, reflections=True, seed=args.seed)
            res_split["ecse"]["rotational_discrepancy"] = {k: v for k, v in disc.items() if not k.endswith("_mean")}
            bare_ref = res_split.get("bare_on_ecse_subset", res_split["bare"])
            res_split["ecse_cost_ratio"] = sym_eval["seconds_per_structure"] / bare_ref["seconds_per_structure"]
        results[split] = res_split
        if not args.plots:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        axes[0].hist(bare["_energy_err"] * 1000, bins=20, alpha=0.6, label="bare")
        axes[1].hist(bare["_forces_err"], bins=40, alpha=0.6, label="bare")
        if args.eval_ecse:
            axes[0].hist(sym_eval["_energy_err"] * 1000, bins=20, alpha=0.6, label="ECSE")
            axes[1].hist(sym_eval["_forces_err"], bins=40, alpha=0.6, label="ECSE")
        axes[0].set_xlabel("energy error (meV/atom)")
        axes[1].set_xlabel("force component error (eV/Å)")
        for ax in axes:
            ax.legend()
        fig.suptitle(f"{args.model.upper()} on {args.data} ({split}), augment={args.augment}")
        savefig(fig, out / f"errors_{split}.png")
    if history and args.plots:
        plot_history(history, out / "learning_curve.png", log_y=True, panel_size=(5, 3.5),
                     panels=[("loss", "loss (normalised energy + force MSE)")])
    results["wall_seconds"] = time.perf_counter() - t_start
    path = save_results(out / "results.json", results)
    if not args.quiet:
        print(f"results: {path}")
    for split in eval_sets:
        r = results[split]
        line = (f"[{split}] bare: E MAE {r['bare']['energy_mae_mev_per_atom']:.2f} meV/atom, "
                f"F MAE {r['bare']['forces_mae']:.4f} eV/Å")
        if "ecse" in r:
            line += (f" | ECSE: E MAE {r['ecse']['energy_mae_mev_per_atom']:.2f}, F MAE {r['ecse']['forces_mae']:.4f}, "
                     f"cost x{r['ecse_cost_ratio']:.1f}, frames {r['ecse']['mean_frames_kept']:.1f}")
        print(line)
    return 0


def _zero_readout(model: torch.nn.Module) -> None:
    """Zero the last layer of every energy readout: training then starts from the baseline
    (zero forces) instead of random forces, which shortens the initial plateau."""
    from pointsym.models.pet import PET

    heads = ([b.atom_head.net[-1] for b in model.blocks] + [b.bond_head.net[-1] for b in model.blocks
                                                            if b.bond_head is not None]
             if isinstance(model, PET) else [model.rho[-1]])
    with torch.no_grad():
        for layer in heads:
            layer.weight.zero_()
            layer.bias.zero_()


def _baseline_energy(model: torch.nn.Module, b: Any) -> torch.Tensor:
    """Sum of the fitted self energies of every structure (no network)."""
    from pointsym.models.pet import PET

    if isinstance(model, PET):
        table = model.self_energies.double()[model._species_to_index(b.numbers)]
    else:
        table = model.self_energies.double()[b.numbers]
    return table.new_zeros(b.n_structures).index_add(0, b.batch, table)


# ---------------------------------------------------------------------------------- predict
def _predict_main(args: argparse.Namespace) -> int:
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    from pointsym.structures import predict_structures

    validate_options(args, PETPredictOptions)
    path = Path(args.input)
    if not path.is_file():
        raise FileNotFoundError(f"--input {args.input!r} does not exist.")
    frames = check_frames(read_frames(path, fmt=args.format, flag="--input"), f"--input {args.input!r}",
                          labels=False)
    if not frames:
        raise ValueError(f"--input {args.input!r} holds no structures.")
    species = sorted({int(z) for a in frames for z in a.numbers})
    model = load_model(args.model, species=species, r_cut=args.r_cut)
    dtype = _DTYPES[args.dtype]
    model = model.to(device=resolve_device(args.device), dtype=dtype).eval()
    runner = symmetrized(model) if args.symmetrize else model
    t0 = time.perf_counter()
    res = predict_structures(runner, frames, forces=True, stress=args.stress, batch_size=1 if args.symmetrize else 16,
                             dtype=dtype)
    seconds = time.perf_counter() - t0
    out_frames = []
    for k, atoms in enumerate(frames):
        a = atoms.copy()
        a.calc = None
        results = {"energy": float(res["energy"][k]), "forces": res["forces"][res["batch"] == k]}
        if args.stress and np.all(a.pbc):
            s = res["stress"][k]
            results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
        a.info["pointsym_model"] = args.model
        a.info["pointsym_symmetrized"] = bool(args.symmetrize)
        a.calc = SinglePointCalculator(a, **results)
        out_frames.append(a)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(args.output, out_frames, format="extxyz")
    if not args.quiet:
        print(f"wrote {len(out_frames)} structures to {args.output} ({seconds:.2f} s, "
              f"{'ECSE-symmetrized' if args.symmetrize else 'bare'} {type(model).__name__}, {args.dtype})")
    return 0


# ---------------------------------------------------------------------------------- CLI
@dataclass
class PETTrainOptions:
    """Options of ``pet-train`` (each declared once here; ``--help`` shows defaults and units).

    Besides these: the data group (``--source``, ``--data-dir``), the limits ``--max-train`` /
    ``--max-test`` and the run and output groups of :mod:`pointsym.experiments.common.cli`.
    """

    data: str = field(metadata={"help": "data set name (Si, Ge, Li, Mo, methane, ...) or an extxyz path"})
    val: str | None = field(default=None, metadata={
        "help": "validation data (name or path)",
        "default_help": "the 'val' split if the set has one, else --val-fraction of the training split"})
    val_fraction: float = field(default=0.1, metadata={
        "help": "fraction of the training structures held out for validation when there is no validation set, "
                "in (0, 1)", "gt": 0.0, "lt": 1.0})
    test: str | None = field(default=None, metadata={"help": "test data (name or path)",
                                                     "default_help": "the set's 'test' split"})
    format: str | None = field(default=None, metadata={
        "help": "ase.io format of the structure files of --data/--val/--test (e.g. extxyz, vasp, cif)",
        "default_help": "guessed from each file name"})
    model: str = field(default="pet", metadata={"help": "PET or the NeighborMLP baseline",
                                                "choices": ("pet", "mlp"), "group": "model"})
    r_cut: float = field(default=4.5, metadata={"help": "cutoff", "unit": "Å", "group": "model", "gt": 0.0})
    d_model: int = field(default=32, metadata={"help": "PET token width / MLP feature size (a multiple of "
                                                       "--n-heads)", "group": "model", "min": 1})
    n_gnn_layers: int = field(default=2, metadata={"help": "PET message-passing blocks", "group": "model", "min": 1})
    n_trans_layers: int = field(default=1, metadata={"help": "transformer layers per block", "group": "model",
                                                     "min": 1})
    n_heads: int = field(default=4, metadata={"help": "attention heads", "group": "model", "min": 1})
    dim_feedforward: int = field(default=64, metadata={"help": "transformer FFN width", "group": "model", "min": 1})
    head_hidden: int = field(default=32, metadata={"help": "readout MLP width", "group": "model", "min": 1})
    cutoff_delta: float = field(default=0.2, metadata={"help": "cutoff switching width (< --r-cut)", "unit": "Å",
                                                       "group": "model", "gt": 0.0})
    epochs: int = field(default=50, metadata={"help": "total epochs (a rerun into the same --out resumes)",
                                              "group": "training", "min": 1})
    batch_size: int = field(default=8, metadata={"help": "batch size", "unit": "structures", "group": "training",
                                                 "min": 1})
    lr: float = field(default=3e-3, metadata={"help": "peak Adam learning rate (warm-up, cosine decay)",
                                              "group": "training", "gt": 0.0})
    grad_clip: float = field(default=10.0, metadata={"help": "largest gradient norm (gradients are clipped to it)",
                                                     "group": "training", "gt": 0.0})
    energy_weight: float = field(default=1.0, metadata={
        "help": "weight of the normalised per-atom energy MSE vs the force MSE", "group": "training", "min": 0.0})
    restart: bool = field(default=False, metadata={
        "help": "start fresh: move the checkpoints already in OUT/checkpoints aside (to previous/<n>/, not "
                "deleted) instead of resuming them", "action": "store_true", "group": "training"})
    init_from: str | None = field(default=None, metadata={
        "help": "start from the weights of a pet-train checkpoint (best.pt/last.pt) or a PET.save file, with a "
                "fresh optimizer; a last.pt in OUT/checkpoints still takes precedence", "metavar": "PATH",
        "group": "training"})
    augment: bool = field(default=True, metadata={
        "help": "random O(3) rotation of every training structure at every step", "group": "training"})
    dtype: str = field(default="float32", metadata={"help": "floating-point precision of training",
                                                    "choices": tuple(sorted(_DTYPES)),
                                                    "group": "training"})
    eval_ecse: bool = field(default=True, metadata={"help": "also evaluate the ECSE-symmetrized model",
                                                    "group": "evaluation"})
    ecse_max_test: int | None = field(default=None, metadata={
        "help": "evaluate ECSE on at most N (evenly spaced) evaluation structures", "default_help": "all",
        "metavar": "N", "aliases": ("--ecse-max-eval",), "group": "evaluation", "min": 1})
    discrepancy_rotations: int = field(default=10, metadata={
        "help": "random O(3) elements per structure for the rotational discrepancy (>= 2)", "group": "evaluation",
        "min": 2})
    discrepancy_structures: int | None = field(default=None, metadata={
        "help": "evenly spaced test structures for the bare model's rotational discrepancy", "default_help": "all",
        "group": "evaluation", "min": 1})
    ecse_discrepancy_structures: int = field(default=3, metadata={
        "help": "smallest test structures for the ECSE model's rotational discrepancy", "group": "evaluation",
        "min": 1})
    plots: bool = field(default=True, metadata={"help": "write learning-curve and error-histogram PNGs",
                                                "group": "output"})

    def validate(self) -> None:
        """Combinations of options (the single bounds are checked from the field metadata)."""
        if self.model == "pet" and self.d_model % self.n_heads:
            raise ValueError(f"--d-model must be a multiple of --n-heads (got {self.d_model} and {self.n_heads}).")
        if self.model == "pet" and self.cutoff_delta >= self.r_cut:
            raise ValueError(f"--cutoff-delta must be smaller than --r-cut (got {self.cutoff_delta} >= {self.r_cut}).")


@dataclass
class PETPredictOptions:
    """Options of ``pet-predict`` (plus ``--device``, ``--threads``, ``--quiet``)."""

    model: str = field(metadata={"help": "pet-train checkpoint (e.g. results/pet/run/checkpoints/best.pt) or "
                                         "random:SEED for an untrained PET"})
    input: str = field(metadata={"help": "input structures (any ase-readable file, e.g. extxyz)"})
    output: str = field(metadata={"help": "output extxyz file (energies, forces, optional stress)"})
    format: str | None = field(default=None, metadata={
        "help": "ase.io format of --input (e.g. extxyz, vasp, cif)", "default_help": "guessed from the file name"})
    symmetrize: bool = field(default=True, metadata={"help": "wrap the model in ECSE for exact O(3) equivariance"})
    dtype: str = field(default="float64", metadata={"help": "floating-point precision of the predictions",
                                                    "choices": tuple(sorted(_DTYPES))})
    stress: bool = field(default=False, metadata={"help": "also write the stress of fully periodic structures",
                                                  "action": "store_true"})
    r_cut: float = field(default=4.0, metadata={"help": "cutoff of a random:SEED model", "unit": "Å", "gt": 0.0})


def register(sub: Any) -> None:
    """Add the ``pet-train`` and ``pet-predict`` sub-commands."""
    p = sub.add_parser("pet-train", help="train PET (or the NeighborMLP baseline) on energies/forces; evaluate "
                       "bare, under rotations and with ECSE", description=__doc__.split("\n\n")[1])
    add_common_arguments(p, results="results/pet/run", source="energy/force data")
    add_limit_arguments(p, train="use at most N training structures (a seeded random subset)",
                        test="evaluate on at most N test structures, the first N (the validation structures when "
                             "the set has no test split)", aliases={"test": ["--max-eval"]})
    add_dataclass_arguments(p, PETTrainOptions, group="data sets")
    p.set_defaults(func=_train_main)

    q = sub.add_parser("pet-predict", help="energies and forces of an extxyz file with PET (optionally ECSE)",
                       description="Write energies and forces (and optionally stress) of every structure of "
                       "--input into the extxyz --output.")
    add_dataclass_arguments(q, PETPredictOptions)
    add_run_arguments(q, seed=False)
    q.set_defaults(func=_predict_main)
