"""Demo stage: neural structure fields on a few embedded lim_l6 crystals.

Runs the reconstruction algorithm on the exact structure fields of the 20 embedded lim_l6
test crystals (it must recover every atom), then auto-encodes a few of them with the
committed checkpoint ``results/nesf/nesf_lim_l6_118ep.pt`` and draws true vs reconstructed atoms.
"""

from __future__ import annotations

from pathlib import Path

from pointsym.experiments.common.report import Section

__all__ = ["CHECKPOINT", "stage"]

# parents[3]: the repository root (this file is pointsym/experiments/nesf/demo.py).
CHECKPOINT = Path(__file__).resolve().parents[3] / "results" / "nesf" / "nesf_lim_l6_118ep.pt"
_N_MODEL = 3  # crystals auto-encoded by the network (about 5-10 s each on one CPU core)


def stage(ctx) -> Section:  # noqa: ANN001 - DemoContext, imported lazily by the runner
    from pointsym.experiments.nesf.cli import evaluate, plot_reconstructions
    from pointsym.fields import ReconstructionParams, load_nesf, load_nesf_set

    crystals = load_nesf_set("lim_l6", "test", source="embedded")
    exact, _, _ = evaluate("exact", crystals, box="data")
    metrics = {f"exact_{k}": v for k, v in exact.items()
               if k in ("n_structures", "atom_count_error_pct", "position_error_actual", "species_error_actual_pct")}
    text = [
        "Neural structure fields (Chiba et al. 2023): a crystal is the field of vectors to the nearest atom plus "
        "that atom's species; a PointNet encoder and two query-conditioned MLP decoders form an autoencoder; atoms "
        "are recovered by moving particles along the field, filtering by residual and clustering (NMS).",
        f"Exact fields of the {len(crystals)} embedded lim_l6 test crystals: the reconstruction recovers "
        f"{exact['n_detected_atoms']} of {exact['n_true_atoms']} atoms "
        f"(count error {exact['atom_count_error_pct']:.1f} %, "
        f"position error {exact['position_error_actual']:.2g} Å).",
    ]
    images = []
    if CHECKPOINT.is_file():
        model, info = load_nesf(CHECKPOINT, device=ctx.device)
        sub = crystals.subset(range(_N_MODEL))
        learned, recs, _ = evaluate(model, sub, box="model", params=ReconstructionParams(freeze_tol=1e-3),
                                    device=ctx.device, quiet=ctx.quiet)
        metrics.update({f"model_{k}": v for k, v in learned.items() if k not in ("position_error_actual_nonempty",)})
        metrics["model_epochs_trained"] = info.get("epochs_run_total", info.get("epochs_run", info.get("epoch")))
        plot_reconstructions(list(sub), recs, ctx.path("nesf_reconstructions.png"),
                             title="NeSF (committed checkpoint): true atoms (circles) vs reconstructed (dots)")
        images.append(("nesf_reconstructions.png",
                       f"{_N_MODEL} embedded lim_l6 test crystals auto-encoded by results/nesf/nesf_lim_l6_118ep.pt "
                       f"(trained {metrics['model_epochs_trained']} epochs on CPU; see results/nesf/README.md)"))
        text.append(f"Committed checkpoint on {_N_MODEL} of them (freeze_tol 1e-3 Å for speed): "
                    f"atom-count error {learned['atom_count_error_pct']:.0f} %, position error (actual) "
                    f"{learned['position_error_actual']:.3g} Å, species error (actual) "
                    f"{learned['species_error_actual_pct']:.1f} %.")
    else:
        text.append(f"No checkpoint at {CHECKPOINT}: only the exact-field check ran "
                    "(train one with `pointsym nesf-train`).")
    return Section(title="Neural structure fields (NeSF)", text=text, metrics=metrics, images=images)
