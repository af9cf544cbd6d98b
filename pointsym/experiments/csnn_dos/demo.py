"""Demo stage: the atom-centred CSNN density-of-states pipeline on the embedded carbon subset.

Shows the reference per-atom DOS and integrated DOS of one structure per family, trains a tiny
CSNN through ``pointsym csnn-dos train`` (the shared Trainer, random atom subsampling and random
rotations, then the CLI's evaluation on the test split), checks in float64 that its prediction is
invariant under the 60 icosahedral rotations and measures its spread under Haar-random rotations,
and compares predicted and reference DOS on a few test structures. About 20 s on 1 thread.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from typing import Any

import numpy as np
import torch

from pointsym.experiments.common.plotting import plt, savefig
from pointsym.experiments.common.report import Section

__all__ = ["DEMO_ARGS", "stage"]

RUN_NAME = "csnn_dos_demo"
EPOCHS = 60
ATOMS_PER_STRUCTURE = 8
#: ``pointsym csnn-dos train`` options of the demo: the CPU-sized CSNN of the CLI test (level 1, 42 directions,
#: 8 radial bins, widths 4/8, head 16), 8 random atoms per structure per step, random rotations.
DEMO_ARGS = ["--source", "embedded", "--epochs", str(EPOCHS), "--level", "1", "--n-bins", "8", "--base-width", "4",
             "--hidden", "16", "--atoms-per-structure", str(ATOMS_PER_STRUCTURE), "--rotate-train",
             "--batch-size", "8", "--lr", "3e-2", "--eval-split", "test", "--no-plots", "--quiet"]
#: Test structures whose predicted DOS is drawn: a cage, a sheet, the bulk and a nanotube.
SHOWN_FAMILIES = ("C60", "Graphene", "Graphite", "C_8_0")
N_HAAR = 5


def _colours(families: list[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    return {f: cmap(i % 10) for i, f in enumerate(families)}


def _plot_data(data: Any, fermi: np.ndarray, path: Any) -> list[str]:
    """Reference per-atom DOS (offset per family) and integrated DOS of the first structure of every family."""
    from pointsym.electronic import integrated_dos

    families = list(dict.fromkeys(str(f) for f in data.family))
    picks = [int(np.flatnonzero(data.family == f)[0]) for f in families]
    colours = _colours(families)
    e = data.energies
    step = float(e[1] - e[0])
    offset = 1.0
    # At most 9 in wide: the report (1000 px = 9.1 in at 110 dpi) shows it unscaled.
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 5.2), gridspec_kw={"width_ratios": (1.25, 1)})
    for n, k in enumerate(picks):
        f = families[n]
        base = offset * n
        ax.plot(e, data.dos[k] + base, color=colours[f], lw=1.1)
        ax.axhline(base, color="0.85", lw=0.6, zorder=0)
        ax.plot([fermi[k]], [base], marker="v", color="k", ms=5, ls="none",
                label="Fermi level" if n == 0 else None)
        # the name left of the band (the DOS is zero below about -10 eV)
        ax.text(e[0] + 0.15, base + 0.08, f, fontsize=9, color=colours[f], va="bottom")
        ax2.plot(e, integrated_dos(data.dos[k], step), color=colours[f], lw=1.1)  # colours as on the left
    ax.set_xlim(e[0], e[-1])
    ax.set_ylim(-0.1, offset * len(picks) + 0.9)  # room for the legend
    ax.set_xlabel("E - (HOMO + LUMO)/2 (eV)")
    ax.set_ylabel(f"DOS (states/eV/atom), offset by {offset:g} per family")
    ax.set_title("reference per-atom DOS (GFN1-xTB, 0.2 eV Gaussians)", fontsize=10)
    ax.legend(fontsize=9, loc="upper right", framealpha=0.9)
    ax2.axhline(4.0, color="k", lw=0.8, ls="--", label="4 valence electrons/atom")
    ax2.set_xlim(e[0], e[-1])
    ax2.set_xlabel("E - (HOMO + LUMO)/2 (eV)")
    ax2.set_ylabel("integrated DOS (states/atom)")
    ax2.set_title("integrated DOS (Fermi level where it reaches 4)", fontsize=10)
    ax2.legend(fontsize=9, loc="lower right")
    savefig(fig, path)
    return families


def _plot_predictions(data: Any, pred: np.ndarray, baseline: np.ndarray, rows: list[dict[str, Any]],
                      path: Any) -> list[int]:
    """Predicted vs reference per-atom DOS of one test structure of each of :data:`SHOWN_FAMILIES`."""
    picks = [int(np.flatnonzero(data.family == f)[0]) for f in SHOWN_FAMILIES if (data.family == f).any()]
    e = data.energies
    cols = 2
    n_rows = int(np.ceil(len(picks) / cols))
    fig, axes = plt.subplots(n_rows, cols, figsize=(9, 3.2 * n_rows + 0.2), squeeze=False, sharey=True)
    top = 1.4 * max(float(data.dos[picks].max()), float(pred[picks].max()))  # room for the legend
    for ax, k in zip(axes.flat, picks, strict=False):
        r = rows[k]
        ax.plot(e, data.dos[k], color="k", lw=1.2, label="reference")
        ax.plot(e, pred[k], color="C3", lw=1.1, ls="--", label="tiny CSNN")
        ax.plot(e, baseline, color="0.45", lw=1.1, ls=":", label="mean training DOS")
        ax.axvline(r["fermi_ref"], color="k", lw=0.7, alpha=0.5)
        if np.isfinite(r["fermi_pred"]):
            ax.axvline(r["fermi_pred"], color="C3", lw=0.7, ls="--", alpha=0.7)
        ax.set_xlim(e[0], e[-1])
        ax.set_ylim(0, top)
        ax.set_xlabel("E - (HOMO + LUMO)/2 (eV)")
        ax.set_ylabel("DOS (states/eV/atom)")
        ax.set_title(f"{r['family']} ({r['n_atoms']} atoms)\nRMSE {r['dos_rmse']:.3f}, "
                     f"|dE_F| {r['fermi_abs_error']:.2f} eV, |dE_band| {r['band_energy_abs_error']:.3f} eV/atom",
                     fontsize=9)
        ax.tick_params(labelsize=9)
        ax.yaxis.set_tick_params(labelleft=True)
    for ax in list(axes.flat)[len(picks):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=9, loc="upper left", ncol=2)
    savefig(fig, path)
    return picks


def _train(ctx: Any) -> tuple[Any, str]:
    """``pointsym csnn-dos train`` with :data:`DEMO_ARGS` into ``OUT/csnn_dos_demo``; returns (folder, its output)."""
    from pointsym.experiments.common.cli import PointsymArgumentParser, apply_common_arguments
    from pointsym.experiments.csnn_dos.cli import register

    def main(argv: list[str]) -> int:
        # the csnn-dos sub-command alone (experiments must not import the top-level pointsym.cli)
        parser = PointsymArgumentParser(prog="pointsym")
        register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(argv)
        apply_common_arguments(args)
        return int(args.func(args) or 0)

    out = ctx.out_dir / RUN_NAME
    if out.exists():
        shutil.rmtree(out)  # always a fresh run (the Trainer would resume from OUT/checkpoints otherwise)
    argv = ["csnn-dos", "train", *DEMO_ARGS, "--seed", str(ctx.seed), "--device", ctx.device, "--out", str(out)]
    buf_out, buf_err = io.StringIO(), io.StringIO()
    # --threads is left out: the CLI then keeps the thread count that `pointsym demo --threads` set
    with contextlib.redirect_stdout(buf_out), contextlib.redirect_stderr(buf_err):
        rc = main(argv)
    if rc != 0:
        raise RuntimeError(f"pointsym {' '.join(argv)} exited with status {rc}:\n{buf_err.getvalue()}"
                           f"{buf_out.getvalue()}")
    return out, buf_out.getvalue()


def _predict(adapter: Any, model: torch.nn.Module, frames: list[Any], dtype: torch.dtype) -> np.ndarray:
    with torch.no_grad():
        prepared = adapter.prepare(frames, None, dtype=dtype, device=torch.device("cpu"))
        return adapter.predict(model, prepared).to(torch.float64).numpy()


def stage(ctx) -> Section:  # noqa: ANN001 - DemoContext, imported lazily by the runner
    from pointsym.electronic import dos_metrics, summarize_dos_metrics
    from pointsym.experiments.csnn_dos.cli import load_run
    from pointsym.experiments.csnn_dos.data import GridSpec, load_sets, rotate_frames, split_of
    from pointsym.experiments.csnn_dos.evaluation import predict_dos
    from pointsym.experiments.csnn_dos.plots import plot_learning_curve
    from pointsym.geometry import icosahedral_rotations, random_rotation

    torch.manual_seed(ctx.seed)

    # 1. Train and evaluate through the CLI (shared Trainer, atom subsampling, random rotations).
    out, log = _train(ctx)
    if not ctx.quiet:
        print("\n".join("  " + line for line in log.strip().splitlines()), flush=True)
    rec = json.loads((out / "metrics.json").read_text())
    adapter, model, extra, _ = load_run(out / "checkpoints" / "best.pt")

    # 2. The same data as the run (its grid), the reference figure.
    data = load_sets(source="embedded", method="xtb", data_dir=None, data_file=None,
                     grid=GridSpec(**extra["data"]["grid"]))
    train, test = split_of(data, "train"), split_of(data, "test")
    fermi_train = dos_metrics(train.energies, train.dos, train.dos, train.n_atoms, train.n_electrons)["fermi_ref"]
    families = _plot_data(train, fermi_train, ctx.path("csnn_dos_data.png"))

    # 3. Predictions on the test split (float32, as the CLI evaluates) against a mean-DOS baseline.
    pred = predict_dos(adapter, model, test.frames)
    rows = rec["eval"]["per_structure"]
    mine = dos_metrics(test.energies, pred, test.dos, test.n_atoms, test.n_electrons, unreached="nan")
    if not np.allclose(mine["dos_rmse"], [r["dos_rmse"] for r in rows], rtol=1e-5, atol=1e-7):
        raise RuntimeError("The demo's predictions differ from the CLI evaluation of the same checkpoint.")
    overall = rec["eval"]["summary"]["overall"]
    baseline = train.dos.mean(axis=0)
    base = summarize_dos_metrics(
        dos_metrics(test.energies, np.repeat(baseline[None], len(test), 0), test.dos, test.n_atoms, test.n_electrons,
                    unreached="nan"), test.family)["overall"]
    shown = _plot_predictions(test, pred, baseline, rows, ctx.path("csnn_dos_predictions.png"))
    label = f"train ({ATOMS_PER_STRUCTURE} sampled atoms)"
    plot_learning_curve(rec["history"], ctx.path("csnn_dos_learning_curve.png"), alpha=rec["training"]["loss_alpha"],
                        train_label=label)

    # 4. Symmetry of the trained model, float64, eval mode: one test structure under the 60 icosahedral rotations
    #    (exact up to round-off) and under Haar-random rotations (only approximate).
    k = int(np.flatnonzero(test.family == "C60")[0])
    atoms = test.frames[k]
    model64 = model.double().eval()
    ref = _predict(adapter, model64, [atoms], torch.float64)[0]
    group = icosahedral_rotations()
    ico = _predict(adapter, model64, rotate_frames([atoms] * len(group), group), torch.float64)
    haar = _predict(adapter, model64, rotate_frames([atoms] * N_HAAR, random_rotation(N_HAAR, seed=ctx.seed)),
                    torch.float64)
    scale = float(np.abs(ref).max())
    ico_dev = float(np.abs(ico - ref).max() / scale)
    haar_dev = float(np.abs(haar - ref).max() / scale)
    n_at, n_el = np.full(N_HAAR, len(atoms)), np.full(N_HAAR, float(test.n_electrons[k]))
    e_band = dos_metrics(test.energies, haar, np.repeat(ref[None], N_HAAR, 0), n_at, n_el,
                         unreached="nan")["band_energy_pred"]
    haar_band_spread = float(np.nanstd(e_band) * 1000)

    t = rec["training"]
    n_params = int(rec["n_parameters"])
    shown_names = ", ".join(str(test.family[i]) for i in shown)
    metrics = {
        "n_parameters": n_params,
        "epochs": int(t["epochs_run"]),
        "best_epoch": int(t["best_epoch"]),
        "train_seconds": float(t["train_seconds_total"]),
        "icosahedral_max_relative_deviation_float64": ico_dev,
        "haar_max_relative_deviation_float64": haar_dev,
        "haar_band_energy_std_mev_per_atom": haar_band_spread,
        "test_DOS_rmse": float(overall["dos_rmse"]),
        "test_Fermi_level_mae": float(overall["fermi_abs_error"]),
        "test_band_energy_mae_mev_per_atom": 1000 * float(overall["band_energy_abs_error"]),
        "mean_DOS_baseline_DOS_rmse": float(base["dos_rmse"]),
        "mean_DOS_baseline_Fermi_level_mae": float(base["fermi_abs_error"]),
        "mean_DOS_baseline_band_energy_mae_mev_per_atom": 1000 * float(base["band_energy_abs_error"]),
        "test_structures_without_Fermi_level": int(overall["n_unreached"]),
    }
    return Section(
        title="CSNN density of states of carbon allotropes (embedded subset)",
        text=[
            f"The embedded subset of the carbon DOS set has {len(data)} structures ({len(train)} train, "
            f"{len(data) - len(train) - len(test)} validation, {len(test)} test) of {len(families)} families "
            f"({', '.join(families)}), MD snapshots at 300 K with GFN1-xTB eigenvalues broadened into a per-atom "
            f"DOS on {data.energies[0]:g} ... {data.energies[-1]:g} eV ({data.energies[1] - data.energies[0]:g} eV "
            "steps), aligned at each structure's (HOMO + LUMO)/2. The atom-centred CSNN maps every atom's "
            "neighbours (1-7 Å) onto an icosphere with radial bins as channels, predicts a non-negative DOS per "
            "atom and averages it over the structure's atoms.",
            f"Smoke-scale model on the {len(data)}-structure subset: a tiny CSNN (level 1, 8 radial bins, "
            f"{n_params:,} parameters) trained {t['epochs_run']} epochs ({t['train_seconds_total']:.0f} s) by "
            f"`pointsym csnn-dos train` on {ATOMS_PER_STRUCTURE} random atoms per structure per step with random "
            "rotations (loss 0.1 MSE(DOS) + 0.9 MSE(integrated DOS)), evaluated with all atoms on the test split. "
            "It is far from converged and is compared with predicting the mean training DOS for every structure; "
            "its numbers say nothing about the method's accuracy. The trained results (full data set, paper-sized "
            "model) are in results/csnn_dos/README.md.",
            f"Test metrics (overall means over {len(test)} structures): DOS RMSE "
            f"{overall['dos_rmse']:.3f} states/eV/atom (mean training DOS: {base['dos_rmse']:.3f}), Fermi-level "
            f"error |dE_F| {overall['fermi_abs_error']:.2f} eV ({base['fermi_abs_error']:.2f}), band-energy error "
            f"|dE_band| {overall['band_energy_abs_error']:.3f} eV/atom ({base['band_energy_abs_error']:.3f}); the "
            "paper's CSNN reaches 0.025 eV/atom on its DFT set. The table's DOS RMSE is in states/eV/atom and the "
            "Fermi-level MAE in eV.",
            f"Symmetry (trained model, float64, eval mode, test {atoms.get_chemical_formula()} structure): under the "
            f"60 icosahedral rotations the predicted DOS changes by at most {ico_dev:.1e} of its maximum (round-off: "
            f"these rotations permute the icosphere vertices); under {N_HAAR} Haar-random rotations by up to "
            f"{haar_dev:.1e} (band-energy spread {haar_band_spread:.2g} meV/atom): the CSNN is only icosahedrally "
            "exact.",
        ],
        metrics=metrics,
        images=[
            ("csnn_dos_data.png", "Left: reference per-atom DOS of the first training structure of each family "
                                  "(shifted up by 1 per family; triangles: Fermi level). Right: their integrated "
                                  "DOS (same colours); carbon has 4 valence electrons per atom."),
            ("csnn_dos_learning_curve.png", "Training (sampled atoms) and validation (all atoms) loss and DOS RMSE "
                                            "of the tiny CSNN per epoch."),
            ("csnn_dos_predictions.png", f"Test structures ({shown_names}): reference DOS, the tiny CSNN's "
                                         "prediction and the mean training DOS; vertical lines: reference (solid) "
                                         "and predicted (dashed) Fermi level; titles: DOS RMSE (states/eV/atom) "
                                         "and the Fermi-level and band-energy errors."),
        ],
    )
