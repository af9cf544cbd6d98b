"""The shared option groups, deprecated aliases, dataclass options and ``plot_history``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from pointsym.cli import build_parser
from pointsym.experiments.common.cli import (
    DefaultsHelpFormatter,
    add_dataclass_arguments,
    config_from_args,
)


def _leaf_parsers(parser: argparse.ArgumentParser, name: str = "pointsym"):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield name, parser
    for action in subs:
        for sub_name, sub in action.choices.items():
            yield from _leaf_parsers(sub, f"{name} {sub_name}")


LEAVES = dict(_leaf_parsers(build_parser()))


def test_every_command_is_reached():
    assert {"pointsym csnn-shapes", "pointsym pixel-soap train", "pointsym pixel-soap backend", "pointsym nesf-train",
            "pointsym nesf-eval", "pointsym pet-train", "pointsym pet-predict", "pointsym demo", "pointsym soap",
            "pointsym data"} <= set(LEAVES)


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_every_option_help_states_its_default(name):
    parser = LEAVES[name]
    formatter = DefaultsHelpFormatter(prog=parser.prog)
    missing = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)) or not action.option_strings:
            continue
        text = formatter._get_help_string(action)
        if text == argparse.SUPPRESS:  # deprecated alias
            continue
        if "default" not in text and "(required)" not in text:
            missing.append(action.option_strings[0])
    assert not missing, f"{name}: options without a default in --help: {missing}"
    parser.format_help()  # and the help renders


@pytest.mark.parametrize("name", ["pointsym csnn-shapes", "pointsym pixel-soap train", "pointsym nesf-train",
                                  "pointsym nesf-eval", "pointsym pet-train"])
def test_shared_groups(name):
    options = {s for a in LEAVES[name]._actions for s in a.option_strings}
    assert {"--source", "--data-dir", "--device", "--threads", "--quiet", "--seed", "--out"} <= options


ALIASES = [
    # (old argv, new argv, attribute)
    (["nesf-eval", "--model", "exact", "--data", "lim_l6", "--limit", "8"],
     ["nesf-eval", "--model", "exact", "--data", "lim_l6", "--max-test", "8"], "max_test"),
    (["nesf-eval", "--model", "exact", "--data", "lim_l6", "--embedded"],
     ["nesf-eval", "--model", "exact", "--data", "lim_l6", "--source", "embedded"], "source"),
    (["nesf-train", "--embedded", "--limit-train", "20", "--limit-val", "6"],
     ["nesf-train", "--source", "embedded", "--max-train", "20", "--max-val", "6"], "max_val"),
    (["pet-train", "--data", "Si", "--max-eval", "3", "--ecse-max-eval", "2"],
     ["pet-train", "--data", "Si", "--max-test", "3", "--ecse-max-test", "2"], "ecse_max_test"),
    (["pixel-soap", "search", "--n-train", "8000", "--n-test", "2000"],
     ["pixel-soap", "search", "--max-train", "8000", "--max-test", "2000"], "max_train"),
    (["pixel-soap", "noise", "--n-test", "10"], ["pixel-soap", "noise", "--max-test", "10"], "max_test"),
    (["csnn-shapes", "--embedded"], ["csnn-shapes", "--source", "embedded"], "source"),
]


@pytest.mark.parametrize("old,new,attr", ALIASES, ids=[" ".join(o) for o, _, _ in ALIASES])
def test_deprecated_aliases(old, new, attr, capsys):
    a = vars(build_parser().parse_args(old))
    err = capsys.readouterr().err
    b = vars(build_parser().parse_args(new))
    assert capsys.readouterr().err == ""
    a.pop("func"), b.pop("func")
    assert a == b and attr in a
    assert "deprecated" in err and len(err.strip().splitlines()) == sum(t.startswith("--") and t not in new
                                                                          for t in old)


def test_aliases_are_hidden():
    text = LEAVES["pointsym nesf-eval"].format_help()
    assert "--max-test" in text and "--limit" not in text and "--embedded" not in text


def test_limit_errors_name_the_flag(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["nesf-eval", "--model", "exact", "--data", "x", "--max-test", "many"])
    assert "--max-test" in capsys.readouterr().err


@dataclass
class _Options:
    name: str = field(metadata={"help": "a name"})
    r_cut: float = field(default=4.5, metadata={"help": "cutoff", "unit": "Å", "group": "model"})
    widths: tuple[int, ...] = field(default=(8, 4), metadata={"help": "widths"})
    limit: int | None = field(default=None, metadata={"help": "limit", "default_help": "all",
                                                      "aliases": ("--old-limit",)})
    flag: bool = True
    kind: str = field(default="a", metadata={"choices": ("a", "b")})
    hidden: int = field(default=0, metadata={"cli": False})


def test_add_dataclass_arguments(capsys):
    p = argparse.ArgumentParser(formatter_class=DefaultsHelpFormatter)
    add_dataclass_arguments(p, _Options)
    args = p.parse_args(["--name", "x", "--r-cut", "3", "--widths", "1,2,3", "--no-flag", "--old-limit", "5"])
    assert "--old-limit is deprecated; use --limit" in capsys.readouterr().err
    opts = config_from_args(_Options, args)
    assert opts == _Options(name="x", r_cut=3.0, widths=(1, 2, 3), limit=5, flag=False, kind="a")
    assert config_from_args(_Options, args, kind="b").kind == "b"
    defaults = p.parse_args(["--name", "y"])
    assert (defaults.r_cut, defaults.widths, defaults.limit, defaults.flag) == (4.5, (8, 4), None, True)
    assert not hasattr(defaults, "hidden")
    text = p.format_help()
    for expected in ("cutoff [Å] (default: 4.5)", "(default: 8,4)", "limit (default: all)", "(required)", "model:"):
        assert expected in " ".join(text.split())
    with pytest.raises(SystemExit):
        p.parse_args(["--name", "x", "--kind", "c"])
    with pytest.raises(SystemExit):
        p.parse_args([])  # --name is required


def test_plot_history(tmp_path):
    from pointsym.experiments.common.plotting import plot_history, plt

    history = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.1 / (e + 1), "train_acc": 0.1 * e}
               for e in range(4)]
    saved = []
    orig = plt.Figure.savefig

    def spy(fig, *args, **kwargs):
        saved.append([(ax.get_xlabel(), ax.get_ylabel(), [t.get_text() for t in ax.get_legend().get_texts()])
                      for ax in fig.axes])
        return orig(fig, *args, **kwargs)

    plt.Figure.savefig = spy
    try:
        path = plot_history(history, tmp_path / "h.png", panels=[("loss", "loss [eV]"), ("acc", "accuracy")],
                            log_y=[True, False], reference_lines={"acc": [(0.5, "test")]}, title="t")
    finally:
        plt.Figure.savefig = orig
    assert path.is_file() and path.stat().st_size > 0
    (loss_ax, acc_ax), = saved
    assert loss_ax == ("epoch", "loss [eV]", ["train", "validation"])
    assert acc_ax == ("epoch", "accuracy", ["train", "test"])
    with pytest.raises(ValueError, match="non-empty"):
        plot_history([], tmp_path / "empty.png")
