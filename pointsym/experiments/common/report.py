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

__all__ = ["Section", "write_report"]


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


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return html.escape(str(v))


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
        f"<p>Generated {time.strftime('%Y-%m-%d %H:%M:%S')}" + (f" by <code>{html.escape(command)}</code>" if command else "") + "</p>",
        "<ul>" + "".join(f"<li><a href='#s{i}'>{html.escape(s.title)}</a>" + (" (failed)" if s.error else "")
                         + "</li>" for i, s in enumerate(sections)) + "</ul>",
    ]
    for i, s in enumerate(sections):
        parts.append(f"<h2 id='s{i}'>{html.escape(s.title)} <small>({s.seconds:.1f} s)</small></h2>")
        parts.extend(f"<p>{html.escape(t)}</p>" for t in s.text)
        if s.error:
            parts.append(f"<p class='err'>Stage failed: {html.escape(s.error)}</p>")
        if s.metrics:
            rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in s.metrics.items())
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
