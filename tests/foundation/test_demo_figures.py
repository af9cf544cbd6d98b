"""The demo report's figures are readable: labelled axes, labelled colour bars, fonts of >= 9 pt
as the report shows them (1000 px wide at most), and "Å" rather than "A" for Ångström.

Every ``Figure.savefig`` of a demo stage is intercepted and its figure inspected just before it
is written (after ``savefig``'s ``tight_layout``). The cheap stages run by default on the
embedded data; CSNN and PET (10-20 s each on 2 cores) are marked slow.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from pointsym.experiments.common.plotting import plt

#: The report's body is 1000 px wide; a wider PNG is scaled down by the browser.
REPORT_WIDTH_PX = 1000
#: Smallest readable font, in points at the demo's 110 dpi and the report's scale.
MIN_FONT_PT = 9.0
REFERENCE_DPI = 110
#: "A" in a unit position where "Å" is meant: "(A)", "[A]", "eV/A", "1.2 A".
ANGSTROM_AS_A = re.compile(r"[(\[]A[)\]]|/A\b|\d A\b")


def _drawn(ax) -> bool:  # noqa: ANN001
    """Whether the axes' axis lines, ticks and labels are drawn (3-D axes keep their own flag)."""
    return bool(ax._axis3don) if hasattr(ax, "get_zlabel") else ax.axison


def figure_problems(fig: Figure, dpi: float = REFERENCE_DPI) -> list[str]:
    """What makes ``fig`` hard to read in the report (empty list: nothing)."""
    fig.canvas.draw()  # tick labels get their text when drawn
    problems = []
    colorbar_axes = {}
    for ax in fig.axes:
        for mappable in [*ax.collections, *ax.images]:
            cb = getattr(mappable, "colorbar", None)
            if cb is not None:
                colorbar_axes[cb.ax] = cb
    for i, ax in enumerate(fig.axes):
        name = f"axes {i} ({ax.get_title() or 'untitled'})"
        if ax in colorbar_axes:
            cb = colorbar_axes[ax]
            label = ax.get_ylabel() if cb.orientation == "vertical" else ax.get_xlabel()
            if not label.strip():
                problems.append(f"{name}: colour bar without a label")
            continue
        if not _drawn(ax):
            # Only picture thumbnails may hide their axes (e.g. one MNIST digit per class).
            if ax.collections or ax.lines or not ax.images:
                problems.append(f"{name}: axes switched off on a data plot (not a picture thumbnail)")
            continue
        getters = [("x", ax.get_xlabel), ("y", ax.get_ylabel)]
        if hasattr(ax, "get_zlabel"):
            getters.append(("z", ax.get_zlabel))
        for axis, get in getters:
            if not get().strip():
                problems.append(f"{name}: no {axis} label")
    scale = min(1.0, REPORT_WIDTH_PX / (fig.get_figwidth() * dpi))
    # Tick labels etc. of axes that are not drawn (their titles are).
    hidden = {id(t) for ax in fig.axes if not _drawn(ax) for t in ax.findobj(Text) if t is not ax.title}
    for t in fig.findobj(Text):
        text = t.get_text().strip()
        if not text or not t.get_visible() or id(t) in hidden:
            continue
        shown = t.get_fontsize() * scale * dpi / REFERENCE_DPI
        if shown < MIN_FONT_PT - 1e-6:
            problems.append(f"text {text!r}: {t.get_fontsize():.1f} pt shown as {shown:.1f} pt (< {MIN_FONT_PT})")
        if ANGSTROM_AS_A.search(text):
            problems.append(f"text {text!r}: 'A' where 'Å' is meant")
    return problems


@pytest.fixture
def inspected(monkeypatch):
    """Figures saved while the fixture is active: ``{file name: problems}``."""
    seen: dict[str, list[str]] = {}
    original = Figure.savefig

    def checking_savefig(self, fname, *args, **kwargs):  # noqa: ANN001, ANN202
        seen[Path(str(fname)).name] = figure_problems(self, kwargs.get("dpi") or self.dpi)
        return original(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", checking_savefig)
    return seen


def _run_stage(key: str, tmp_path: Path, monkeypatch) -> object:  # noqa: ANN001
    import importlib

    from pointsym.experiments.demo.cli import STAGES, DemoContext

    if key == "nesf":
        from pointsym.experiments.nesf import demo as demo_nesf

        if not demo_nesf.CHECKPOINT.is_file():
            pytest.skip(f"no NeSF checkpoint at {demo_nesf.CHECKPOINT}")
        monkeypatch.setattr(demo_nesf, "_N_MODEL", 1)  # one crystal is enough for the figure
    module, func = dict(STAGES)[key].split(":")
    return getattr(importlib.import_module(module), func)(DemoContext(out_dir=tmp_path, quiet=True))


@pytest.mark.parametrize("key", [
    "data", "soap", "pixel_soap", "nesf",
    pytest.param("csnn", marks=pytest.mark.slow), pytest.param("csnn_dos", marks=pytest.mark.slow),
    pytest.param("pet", marks=pytest.mark.slow),
])
def test_demo_stage_figures_are_labelled_and_readable(key, tmp_path, monkeypatch, inspected):
    section = _run_stage(key, tmp_path, monkeypatch)
    assert section.error is None
    images = [name for name, _ in section.images]
    assert images, f"stage {key!r} made no figure"
    assert set(images) <= set(inspected), f"figures not saved through matplotlib: {set(images) - set(inspected)}"
    bad = {name: problems for name, problems in inspected.items() if problems}
    assert not bad, f"stage {key!r}: " + "; ".join(f"{n}: {', '.join(p)}" for n, p in bad.items())
    text = " ".join(section.text)
    assert not ANGSTROM_AS_A.search(text), f"stage {key!r} text writes 'A' for Ångström: {text}"


def test_nesf_demo_finds_the_committed_checkpoint():
    from pointsym.experiments.nesf import demo as demo_nesf

    expected = Path(__file__).resolve().parents[2] / "results" / "nesf" / "nesf_lim_l6_118ep.pt"
    assert expected == demo_nesf.CHECKPOINT


def test_the_checker_finds_the_defects_it_is_meant_to_find():
    fig, (a, b) = plt.subplots(1, 2, figsize=(15, 4))  # 1650 px: shown at 0.61 of its size
    sc = a.scatter([0, 1], [0, 1], c=[0, 1])
    fig.colorbar(sc, ax=a)
    b.plot([0, 1], [0, 1])
    b.set_xlabel("x [A]")
    b.set_ylabel("y (Å)")
    b.axis("off")
    problems = " | ".join(figure_problems(fig))
    plt.close(fig)
    assert "no x label" in problems and "no y label" in problems
    assert "colour bar without a label" in problems
    assert "axes switched off on a data plot" in problems
    assert "shown as 6.1 pt" in problems

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.set(xlabel="position error [A]", ylabel="count")
    fig3 = plt.figure(figsize=(4, 4))
    ax3 = fig3.add_subplot(projection="3d")
    ax3.set(xlabel="x (Å)", ylabel="y (Å)")
    assert any("'Å' is meant" in p for p in figure_problems(fig))
    assert any("no z label" in p for p in figure_problems(fig3))
    ax3.set_zlabel("z (Å)")
    assert figure_problems(fig3) == []
    plt.close(fig)
    plt.close(fig3)
