"""Figures of ``csnn-dos``: DOS per family, band-energy parity and band-energy MAE per family (PNG)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CHEMICAL_ACCURACY", "PAPER_BAND_ENERGY_MAE", "plot_band_energy_mae", "plot_band_energy_parity",
           "plot_dos_panels", "plot_learning_curve"]

#: Chemical accuracy, 1 kcal/mol per atom in eV/atom.
CHEMICAL_ACCURACY = 0.043
#: Overall band-energy MAE of the CSNN paper's carbon DOS benchmark (DFT data, eV/atom), for scale only.
PAPER_BAND_ENERGY_MAE = {"CSNN": 0.025, "SchNet": 0.035, "AGNI": 0.033}


def _family_colours(families: list[str]) -> dict[str, Any]:
    from pointsym.experiments.common.plotting import plt

    cmap = plt.get_cmap("tab10")
    return {f: cmap(i % 10) for i, f in enumerate(families)}


def plot_dos_panels(energies: np.ndarray, pred: np.ndarray, data: Any, path: str | os.PathLike[str], *,
                    title: str = "") -> Path:
    """Predicted vs reference per-atom DOS of the first structure of every family, with the integrated DOS
    on a second axis (one panel per family, at most 8)."""
    from pointsym.electronic import integrated_dos
    from pointsym.experiments.common.plotting import plt

    families = list(dict.fromkeys(str(f) for f in data.family))[:8]
    picks = [int(np.flatnonzero(data.family == f)[0]) for f in families]
    cols = min(4, len(picks))
    rows = int(np.ceil(len(picks) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.25 * cols, 2.4 * rows + 0.5), squeeze=False, sharex=True)
    step = float(energies[1] - energies[0])
    handles = []
    for n, (ax, k) in enumerate(zip(axes.flat, picks, strict=False)):
        h1 = ax.plot(energies, data.dos[k], color="k", lw=1.1, label="reference DOS")
        h2 = ax.plot(energies, pred[k], color="C3", lw=1.1, ls="--", label="predicted DOS")
        twin = ax.twinx()
        h3 = twin.plot(energies, integrated_dos(data.dos[k], step), color="0.6", lw=0.9, label="reference IDOS")
        h4 = twin.plot(energies, integrated_dos(pred[k], step), color="C0", lw=0.9, ls=":", label="predicted IDOS")
        twin.set_ylim(0, max(4.5, float(np.nanmax(integrated_dos(pred[k], step))) * 1.05))
        ax.set_ylim(bottom=0)
        ax.set_title(f"{data.family[k]} ({int(data.n_atoms[k])} atoms)", fontsize=9)
        ax.tick_params(labelsize=9)
        twin.tick_params(labelsize=9)
        if n % cols == cols - 1 or n == len(picks) - 1:
            twin.set_ylabel("IDOS (states/atom)", fontsize=9)
        if not handles:
            handles = h1 + h2 + h3 + h4
    for ax in list(axes.flat)[len(picks):]:
        ax.set_visible(False)
    absolute = data.align == "none"
    fig.supxlabel(f"E ({data.method} absolute scale, eV)" if absolute else "E - (HOMO + LUMO)/2 (eV)", fontsize=9)
    fig.supylabel("DOS (states/eV/atom)", fontsize=9)
    top = 0.95
    if title:
        fig.suptitle(title, fontsize=10, y=0.995)
        top = 0.955
    fig.legend(handles, [h.get_label() for h in handles], loc="upper center", ncol=4, fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, top))
    fig.tight_layout(rect=(0, 0, 1, top - 0.035))
    # saved here, not with savefig: its tight_layout() would drop the room kept for the legend
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_band_energy_parity(ref: np.ndarray, pred: np.ndarray, families: np.ndarray, path: str | os.PathLike[str],
                            *, spread: np.ndarray | None = None, title: str = "") -> Path:
    """Predicted vs reference band energy per atom, coloured by family (error bars: std over rotations)."""
    from pointsym.experiments.common.plotting import plt, savefig

    fams = list(dict.fromkeys(str(f) for f in families))
    colours = _family_colours(fams)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    ok = np.isfinite(ref) & np.isfinite(pred)
    for f in fams:
        sel = (families == f) & ok
        if not sel.any():
            continue
        yerr = None if spread is None else np.where(np.isfinite(spread[sel]), spread[sel], 0.0)
        ax.errorbar(ref[sel], pred[sel], yerr=yerr, fmt="o", ms=4, color=colours[f], label=f, elinewidth=0.8,
                    capsize=1.5 if spread is not None else 0)
    if ok.any():
        lo = float(min(ref[ok].min(), pred[ok].min()))
        hi = float(max(ref[ok].max(), pred[ok].max()))
        pad = 0.05 * (hi - lo + 1e-9)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.5", lw=0.8, ls="--", label="y = x")
    missing = int((~ok).sum())
    if missing:
        ax.text(0.98, 0.02, f"{missing} structure(s) without a predicted Fermi level", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=9)
    ax.set_xlabel("reference band energy (eV/atom)")
    ax.set_ylabel("predicted band energy (eV/atom)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=9, ncol=2)
    if title:
        ax.set_title(title, fontsize=10)
    return savefig(fig, path)


def plot_band_energy_mae(summary: dict[str, Any], path: str | os.PathLike[str], *,
                         rotated: dict[str, Any] | None = None, title: str = "") -> Path:
    """Bar chart of the band-energy MAE per family and overall, with chemical accuracy and the paper's values.

    Args:
        summary: :func:`pointsym.electronic.summarize_dos_metrics` result.
        rotated: optional ``result["rotations"]["summary"]`` of :func:`.evaluation.evaluate`: a second
            bar per family, mean +- std over the rotations.
    """
    from pointsym.experiments.common.plotting import plt, savefig

    names = [*summary["groups"], "overall"]
    vals = [summary["groups"][f]["band_energy_abs_error"] for f in summary["groups"]]
    vals.append(summary["overall"]["band_energy_abs_error"])
    x = np.arange(len(names))
    width = 0.4 if rotated else 0.7
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    ax.bar(x - (width / 2 if rotated else 0), np.nan_to_num(vals, nan=0.0), width, color="C0",
           label="as in the data set")
    if rotated:
        r = [rotated["groups"][f]["band_energy_abs_error"] for f in summary["groups"]]
        r.append(rotated["overall"]["band_energy_abs_error"])
        ax.bar(x + width / 2, np.nan_to_num([v["mean"] for v in r], nan=0.0), width,
               yerr=np.nan_to_num([v["std"] for v in r], nan=0.0), color="C1", capsize=2,
               label="random rotations (mean +- std)")
    for k, v in enumerate(vals):
        if not np.isfinite(v):
            ax.text(x[k], 0.0, "n/a", ha="center", va="bottom", fontsize=9)
    ax.axhline(CHEMICAL_ACCURACY, color="C3", lw=1.2, label=f"chemical accuracy ({CHEMICAL_ACCURACY} eV/atom)")
    for (name, value), ls in zip(PAPER_BAND_ENERGY_MAE.items(), ("--", ":", "-."), strict=True):
        ax.axhline(value, color="0.35", lw=1.0, ls=ls, label=f"paper {name}, overall ({value})")
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=9)
    ax.set_ylabel("band-energy MAE (eV/atom)")
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(title or "band-energy MAE per family (paper: DFT set, for scale)", fontsize=10)
    return savefig(fig, path)


def plot_learning_curve(history: list[dict[str, Any]], path: str | os.PathLike[str], *, alpha: float,
                        train_label: str = "train") -> Path:
    """Training and validation loss and DOS RMSE per epoch (log scale)."""
    from pointsym.experiments.common.plotting import plot_history

    return plot_history(history, path, log_y=True, panel_size=(4.4, 3.4),
                        panels=[("loss", f"loss ({alpha:g} MSE DOS + {1 - alpha:g} MSE IDOS)"),
                                ("dos_rmse", "DOS RMSE (states/eV/atom)")],
                        splits=[("train", train_label), ("val", "validation")])
