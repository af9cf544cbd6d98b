"""A small self-contained HTML report (used by ``pointsym demo``)."""

from __future__ import annotations

import html
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pointsym.experiments.common.results import to_jsonable

__all__ = ["Section", "format_value", "readable_name", "write_report"]


@dataclass
class Section:
    """One stage of a report.

    Attributes:
        title: heading.
        text: paragraphs of plain text (escaped) shown under the heading.
        metrics: flat dict of numbers shown as a table and saved to ``report.json``.
        images: ``(filename, caption)`` pairs, filenames relative to the report directory.
        seconds: wall time of the stage.
        error: error message if the stage failed.
    """

    title: str
    text: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    images: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None


# Unit suffixes of metric keys -> the unit shown in the report's tables.
_UNIT_SUFFIXES = (
    ("_mev_per_atom", "meV/atom"), ("_ev_per_A", "eV/Å"), ("_per_s", "1/s"), ("_seconds", "s"),
    ("_pct", "%"), ("_percent", "%"), ("_deg", "°"),
)
# Keys whose unit is implied by their meaning rather than a suffix.
_IMPLIED_UNITS = (("position_error_actual", "Å"), ("position_error_detected", "Å"), ("position_error", "Å"),
                  ("lengths_mae", "Å"), ("discrepancy_forces_rms", "eV/Å"), ("discrepancy_energy_rms", "eV"))
_WORDS = {
    "mae": "MAE", "rmse": "RMSE", "rms": "RMS", "soap": "SOAP", "pca": "PCA", "pc1": "PC1", "pc2": "PC2",
    "ecse": "ECSE", "csnn": "CSNN", "pet": "PET", "nesf": "NeSF", "mnist": "MNIST", "si": "Si", "so3": "SO(3)",
    "z": "z", "fd": "finite differences", "rel": "relative", "n": "number of", "f1": "F1", "modelnet10": "ModelNet10",
    "lim": "lim", "l6": "l6", "frame0": "frame 0", "5a": "5 Å", "float64": "(float64)", "rot90": "90° rotation",
    "vs": "vs", "ico": "icosahedral",
}


def readable_name(key: str) -> str:
    """A metric key such as ``"bare_forces_mae_ev_per_A"`` as table text ("Bare forces MAE (eV/Å)").

    Underscores become spaces, abbreviations are capitalised as in the papers, and a unit
    suffix (``_mev_per_atom``, ``_ev_per_A``, ``_seconds``, ``_pct``, ...) becomes a unit in
    parentheses.
    """
    unit = ""
    if key in ("train_seconds", "spectra_seconds"):
        key = {"train_seconds": "training_time_seconds", "spectra_seconds": "spectra_time_seconds"}[key]
    for suffix, u in _UNIT_SUFFIXES:
        if key.endswith(suffix):
            key, unit = key[: -len(suffix)], u
            break
    else:
        for stem, u in _IMPLIED_UNITS:
            if key.endswith(stem):
                unit = u
                break
    words = [_WORDS.get(w.lower(), w) for w in key.replace("lim_l6", "lim_l6").split("_") if w]
    text = " ".join(words).replace("lim l6", "lim_l6")
    if not text.startswith("lim_l6"):  # a data-set name keeps its spelling
        text = text[:1].upper() + text[1:] if text else text
    return f"{text} ({unit})" if unit else text


def format_value(v: Any) -> str:
    """Numbers rounded for reading: 4 significant digits, scientific below 1e-3, thousands separators."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return html.escape(str(v))
    if isinstance(v, int):
        return f"{v:,}"
    if v != v or v in (float("inf"), float("-inf")):
        return str(v)
    if v == 0:
        return "0"
    if abs(v) < 1e-3:
        return f"{v:.2e}"
    if abs(v) >= 1e4:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def write_report(sections: list[Section], out_dir: str | os.PathLike[str], *, title: str = "pointsym demo",
                 command: str = "") -> Path:
    """Write ``report.html`` and ``report.json`` into ``out_dir``; returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
        "img{max-width:100%;border:1px solid #eee}.err{color:#b00;white-space:pre-wrap}"
        "figure{margin:1em 0}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Generated {time.strftime('%Y-%m-%d %H:%M:%S')}"
        + (f" by <code>{html.escape(command)}</code>" if command else "") + "</p>",
        "<ul>" + "".join(f"<li><a href='#s{i}'>{html.escape(s.title)}</a>" + (" (failed)" if s.error else "")
                         + "</li>" for i, s in enumerate(sections)) + "</ul>",
    ]
    for i, s in enumerate(sections):
        parts.append(f"<h2 id='s{i}'>{html.escape(s.title)} <small>({s.seconds:.1f} s)</small></h2>")
        parts.extend(f"<p>{html.escape(t)}</p>" for t in s.text)
        if s.error:
            parts.append(f"<p class='err'>Stage failed: {html.escape(s.error)}</p>")
        if s.metrics:
            rows = "".join(f"<tr><th title='{html.escape(str(k))}'>{html.escape(readable_name(str(k)))}</th>"
                           f"<td>{format_value(v)}</td></tr>" for k, v in s.metrics.items())
            parts.append(f"<table>{rows}</table>")
        for fname, caption in s.images:
            parts.append(f"<figure><img src='{html.escape(fname)}' alt='{html.escape(caption)}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts))
    summary = [{"title": s.title, "metrics": s.metrics, "images": [f for f, _ in s.images], "seconds": s.seconds,
                "error": s.error} for s in sections]
    (out / "report.json").write_text(json.dumps(to_jsonable({"command": command, "sections": summary}), indent=2))
    return path
