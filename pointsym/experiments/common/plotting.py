"""Matplotlib helpers (Agg backend, no display needed)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_history", "plt", "savefig", "unit_cube_axes"]


def unit_cube_axes(ax: Any) -> None:
    """Compact 3-D axes for a cloud in the normalised cube [-1, 1]^3 (dimensionless x, y, z):
    labelled axes, two ticks each, 9 pt text, no panes or grid."""
    for axis, set_label in zip((ax.xaxis, ax.yaxis, ax.zaxis), (ax.set_xlabel, ax.set_ylabel, ax.set_zlabel),
                               strict=True):
        axis.set_ticks([-0.5, 0.5])  # not at ±1: labels of neighbouring axes would meet at the corners
        axis.set_pane_color((1.0, 1.0, 1.0, 0.0))
        set_label(axis.axis_name, fontsize=9, labelpad=-10)
    ax.set(xlim=(-1, 1), ylim=(-1, 1), zlim=(-1, 1))
    ax.tick_params(labelsize=9, pad=-4)
    ax.grid(False)


def savefig(fig: Any, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Save and close ``fig``; returns the path.

    The demo report shows figures at most 1000 px wide (about 9 in at the default 110 dpi) and
    scales wider ones down: keep demo figures <= 9 in wide, text >= 9 pt, every axis and colour bar
    labelled with its unit (``tests/foundation/test_demo_figures.py`` checks this).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


#: Curves drawn by :func:`plot_history` for each panel: ``(history key prefix, legend label)``.
SPLITS = (("train", "train"), ("val", "validation"))


def plot_history(
    history: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    panels: Sequence[tuple[str, str]] = (("loss", "loss"),),
    splits: Sequence[tuple[str, str]] = SPLITS,
    title: str | None = None,
    log_y: bool | Sequence[bool] = False,
    reference_lines: Mapping[str, Sequence[tuple[float, str]]] | None = None,
    marker: str | None = None,
    panel_size: tuple[float, float] = (4.5, 3.4),
) -> Path:
    """PNG of a training history (one row per epoch, as :class:`pointsym.training.Trainer` returns).

    One panel per ``(metric, y label)`` of ``panels``; each draws ``<split>_<metric>`` against
    ``epoch`` for every split of ``splits`` that the history has. Axes are labelled (x:
    ``epoch``, y: the panel's label, which should carry the unit where there is one).

    Args:
        history: rows with ``"epoch"`` and e.g. ``"train_loss"``, ``"val_loss"``.
        path: output PNG.
        panels: ``(metric, y label)`` per panel, e.g. ``[("loss", "cross-entropy"), ("acc", "accuracy")]``.
        splits: ``(key prefix, legend label)`` of the curves of each panel.
        title: figure title.
        log_y: logarithmic y axis (one flag for all panels or one per panel).
        reference_lines: horizontal dashed lines per metric, ``{"acc": [(0.91, "test so3")]}``.
        marker: matplotlib marker of the curves (e.g. ``"o"``); by default none, ``"o"`` for a single epoch.
        panel_size: size of one panel in inches.

    Returns:
        The path written.
    """
    if not history:
        raise ValueError("Expected a non-empty training history to plot.")
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    if marker is None and len(epochs) < 2:
        marker = "o"  # a single point draws no line
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(panel_size[0] * n, panel_size[1]), squeeze=False)
    logs = [log_y] * n if isinstance(log_y, bool) else list(log_y)
    for k, (ax, (metric, label)) in enumerate(zip(axes[0], panels, strict=True)):
        for prefix, name in splits:
            key = f"{prefix}_{metric}"
            if any(key in h for h in history):
                ax.plot(epochs, [h.get(key, float("nan")) for h in history], marker=marker, ms=3, label=name)
        for i, (value, name) in enumerate((reference_lines or {}).get(metric, ())):
            ax.axhline(value, ls="--", lw=1.0, color=("k", "0.45", "0.7")[i % 3], label=name)
        if logs[k]:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return savefig(fig, path)
