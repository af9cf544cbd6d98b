"""Command-line plumbing shared by every sub-command.

One set of option groups is used by every sub-command, with one name per concept:

* data:   ``--source {full,embedded}`` (the full data root or the small subsets shipped with
  pointsym) and ``--data-dir``;
* limits: ``--max-train N``, ``--max-val N``, ``--max-test N`` (use at most ``N`` items of that
  split; the evaluated split for the evaluation-only commands);
* run:    ``--device``, ``--threads``, ``--quiet``, ``--seed``;
* output: ``--out``.

Older spellings (``--embedded``, ``--limit``, ``--limit-train``, ``--limit-val``,
``--max-eval``, ``--n-test``, ``--n-train``) still parse as hidden aliases that print a
one-line deprecation notice to stderr (:func:`add_deprecated_alias`).

Options of a configuration dataclass are declared once, on the dataclass, and added with
:func:`add_dataclass_arguments` (default, type, ``choices`` and ``metadata={"help": ...,
"unit": ...}`` of each field). :class:`DefaultsHelpFormatter` makes every option's help state
its default.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from pointsym.core import resolve_device

__all__ = [
    "DefaultsHelpFormatter",
    "PointsymArgumentParser",
    "RawDescriptionDefaultsHelpFormatter",
    "add_common_arguments",
    "add_data_arguments",
    "add_dataclass_arguments",
    "add_deprecated_alias",
    "add_limit_arguments",
    "add_output_arguments",
    "add_run_arguments",
    "apply_common_arguments",
    "check_option",
    "argument_group",
    "config_from_args",
    "format_default",
    "progress",
    "resolve_device",
    "validate_options",
]

T = TypeVar("T")

SOURCES = ("full", "embedded")


# --------------------------------------------------------------------------- help formatting
def format_default(value: Any) -> str:
    """How a default is shown in ``--help``: tuples comma-separated, booleans on/off."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to every option whose help does not mention its default yet."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if text == argparse.SUPPRESS or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            return action.help
        if "default" in text or "(required)" in text:
            return text
        if action.required:
            return f"{text} (required)".strip()
        if not action.option_strings and action.nargs not in ("?", "*"):
            return text
        if action.default is argparse.SUPPRESS:
            return text
        shown = format_default(action.default).replace("%", "%%")
        return f"{text} (default: {shown})".strip()


class RawDescriptionDefaultsHelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultsHelpFormatter):
    """:class:`DefaultsHelpFormatter` that keeps the description and epilog as written."""


class PointsymArgumentParser(argparse.ArgumentParser):
    """``ArgumentParser`` whose help formatter defaults to :class:`DefaultsHelpFormatter`.

    Sub-parsers created from it (``add_subparsers().add_parser``) are of the same class.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)


# --------------------------------------------------------------------------- deprecated aliases
class _DeprecatedAlias(argparse.Action):
    """Hidden old spelling of an option: stores into the new option's ``dest``, warns once."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, replacement: str, value: Any = None,
                 store_value: bool = False, **kwargs: Any) -> None:
        self.replacement = replacement
        self.value = value
        self.store_value = store_value
        if store_value:
            kwargs["nargs"] = 0
        kwargs["help"] = argparse.SUPPRESS
        kwargs.setdefault("default", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"{parser.prog}: warning: {option_string} is deprecated; use {self.replacement}", file=sys.stderr)
        setattr(namespace, self.dest, self.value if self.store_value else values)


def add_deprecated_alias(parser: Any, old: str, *, dest: str, replacement: str,
                         type: Callable[[str], Any] | None = None,
                         value: Any = None, store_value: bool = False, **kwargs: Any) -> argparse.Action:
    """Add ``old`` as a hidden, deprecated spelling that sets ``dest``.

    Args:
        parser: parser or argument group.
        old: the old option string, e.g. ``"--limit"``.
        dest: attribute it sets (the new option's ``dest``).
        replacement: what the notice recommends, e.g. ``"--max-test"`` or ``"--source embedded"``.
        type: conversion of the value (options with a value).
        value, store_value: with ``store_value=True`` the option takes no value and sets
            ``dest`` to ``value`` (``--embedded`` -> ``source="embedded"``).
    """
    return parser.add_argument(old, dest=dest, action=_DeprecatedAlias, replacement=replacement, type=type,
                               value=value, store_value=store_value, **kwargs)


# --------------------------------------------------------------------------- shared option groups
def argument_group(parser: Any, title: str) -> Any:
    """The argument group ``title`` of ``parser``, created on first use (a group is returned as it is)."""
    if isinstance(parser, argparse._ArgumentGroup):
        return parser
    for g in parser._action_groups:
        if g.title == title:
            return g
    return parser.add_argument_group(title)


def add_data_arguments(parser: Any, *, source: str | None = None, data_dir: bool = True,
                       default_source: str = "full") -> None:
    """The data group: ``--source {full,embedded}`` (when ``source`` names the data) and ``--data-dir``.

    Args:
        source: what is loaded, e.g. ``"MNIST"``; ``None`` adds no ``--source``.
        data_dir: add ``--data-dir``.
    """
    g = argument_group(parser, "data")
    if source is not None:
        g.add_argument("--source", choices=SOURCES, default=default_source,
                       help=f"{source} from the data root (full) or the small subsets shipped with pointsym "
                            f"(embedded) (default: {default_source})")
        add_deprecated_alias(g, "--embedded", dest="source", replacement="--source embedded",
                             value="embedded", store_value=True)
    if data_dir:
        g.add_argument("--data-dir", default=None,
                       help="data root (default: $POINTSYM_DATA, else ../shared/data next to the project)")


def _limit_type(flag: str) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer N for {flag} (got {text!r})") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"expected an integer N >= 1 for {flag} (got {text!r}); leave "
                                             f"{flag} out to use all")
        return value

    return convert


def _int_at_least(flag: str, minimum: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer for {flag} (got {text!r})") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum} for {flag} (got {text!r})")
        return value

    return convert


def add_limit_arguments(parser: Any, *, train: str | None = None, val: str | None = None, test: str | None = None,
                        defaults: Mapping[str, int | None] | None = None,
                        aliases: Mapping[str, Sequence[str]] | None = None) -> None:
    """The limits group: ``--max-train N``, ``--max-val N``, ``--max-test N`` (``dest`` ``max_<split>``).

    Args:
        train, val, test: help text of each limit to add (``None``: not added), e.g.
            ``"use at most N training structures"``.
        defaults: default per split (``None``, meaning all, unless given).
        aliases: deprecated old spellings per split, e.g. ``{"test": ["--limit"]}``.
    """
    g = argument_group(parser, "limits")
    defaults = dict(defaults or {})
    aliases = dict(aliases or {})
    for split, text in (("train", train), ("val", val), ("test", test)):
        if text is None:
            continue
        flag = f"--max-{split}"
        default = defaults.get(split)
        shown = "all" if default is None else format_default(default)
        g.add_argument(flag, dest=f"max_{split}", type=_limit_type(flag), default=default, metavar="N",
                       help=f"{text} (default: {shown})")
        for old in aliases.get(split, ()):
            add_deprecated_alias(g, old, dest=f"max_{split}", replacement=flag, type=_limit_type(old))


def add_run_arguments(parser: Any, *, seed: bool = True) -> None:
    """The run group: ``--device``, ``--threads``, ``--quiet`` and (with ``seed``) ``--seed``."""
    g = argument_group(parser, "run")
    g.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default: cpu)")
    g.add_argument("--threads", type=_int_at_least("--threads", 1), default=None,
                   help="torch CPU threads (default: torch's choice)")
    g.add_argument("--quiet", action="store_true", help="no progress bars or progress messages (default: off)")
    if seed:
        g.add_argument("--seed", type=_int_at_least("--seed", 0), default=0, help="random seed, >= 0 (default: 0)")


def add_output_arguments(parser: Any, default: str) -> None:
    """The output group: ``--out DIR``."""
    argument_group(parser, "output").add_argument("--out", default=default,
                                                  help=f"results directory (default: {default})")


def add_common_arguments(parser: argparse.ArgumentParser, *, results: str | None = None,
                         source: str | None = None) -> None:
    """The shared groups: data (``--source`` when ``source`` names the data, ``--data-dir``),
    run (``--seed``, ``--device``, ``--threads``, ``--quiet``) and, with ``results``, output (``--out``)."""
    add_data_arguments(parser, source=source)
    add_run_arguments(parser)
    if results is not None:
        add_output_arguments(parser, results)


# --------------------------------------------------------------------------- options from a dataclass
def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _tuple_type(elem: Callable[[str], Any], choices: Sequence[Any] | None) -> Callable[[str], tuple[Any, ...]]:
    def convert(text: str) -> tuple[Any, ...]:
        try:
            vals = tuple(elem(t.strip()) for t in text.split(",") if t.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated values, got {text!r}") from None
        if choices is not None:
            bad = [v for v in vals if v not in choices]
            if bad:
                raise argparse.ArgumentTypeError(f"expected comma-separated values from {list(choices)} (got {text!r})")
        return vals

    return convert


def add_dataclass_arguments(parser: Any, cls: type, *, include: Iterable[str] | None = None,
                            exclude: Iterable[str] = (), overrides: Mapping[str, Mapping[str, Any]] | None = None,
                            group: str | None = None) -> list[argparse.Action]:
    """Add one option per field of the dataclass ``cls``; the field is the single declaration.

    For a field ``batch_size: int = 32`` this adds ``--batch-size`` (``dest="batch_size"``,
    ``type=int``, ``default=32``). Recognised ``field(metadata=...)`` keys (``overrides``
    supplies or replaces them per field without touching the class):

    * ``help`` (text), ``unit`` (shown as ``[unit]``), ``default_help`` (how the default is
      shown, e.g. ``"all"`` for ``None``), ``choices``, ``metavar``;
    * ``flag`` (option string, default ``--<name-with-dashes>``), ``aliases`` (deprecated old
      spellings, hidden), ``type`` (conversion replacing the one derived from the annotation),
      ``action`` (e.g. ``"store_true"``), ``group`` (argument group title), ``cli=False``
      (not an option);
    * ``min``/``max`` (inclusive) and ``gt``/``lt`` (exclusive) bounds of a number (of every
      item of a tuple), checked by :func:`validate_options` with a message naming the flag.

    Types: ``int``/``float``/``str``, ``X | None``, ``bool`` (``--x/--no-x``) and
    ``tuple[X, ...]`` (comma-separated). A field without default becomes a required option.

    Returns:
        The added actions (deprecated aliases excluded).
    """
    hints = typing.get_type_hints(cls)
    include = None if include is None else set(include)
    exclude = set(exclude)
    overrides = overrides or {}
    actions = []
    for f in dataclasses.fields(cls):
        if (include is not None and f.name not in include) or f.name in exclude:
            continue
        meta = {**f.metadata, **overrides.get(f.name, {})}
        if meta.get("cli", True) is False:
            continue
        if f.default is not dataclasses.MISSING:
            default, required = f.default, False
        elif f.default_factory is not dataclasses.MISSING:
            default, required = f.default_factory(), False
        else:
            default, required = None, True
        base, _optional = _unwrap_optional(hints[f.name])
        kwargs: dict[str, Any] = {"dest": f.name, "default": default}
        if required:
            kwargs["required"] = True
        if "action" in meta:
            kwargs["action"] = meta["action"]
        elif base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            conv = meta.get("type")
            if conv is None and typing.get_origin(base) is tuple:
                elem = typing.get_args(base)[0]
                conv = _tuple_type(elem, meta.get("choices"))
                kwargs["metavar"] = meta.get("metavar", "A,B,...")
            elif conv is None:
                conv = base
                if "choices" in meta:
                    kwargs["choices"] = tuple(meta["choices"])
            kwargs["type"] = conv
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        text = meta.get("help", f.name.replace("_", " "))
        if meta.get("unit"):
            text += f" [{meta['unit']}]"
        if required:
            text += " (required)"
        else:
            shown = meta.get("default_help", format_default(default))
            text += f" (default: {shown})"
        kwargs["help"] = text.replace("%", "%%")
        target = argument_group(parser, meta["group"]) if meta.get("group") else (
            argument_group(parser, group) if group else parser)
        flag = meta.get("flag", "--" + f.name.replace("_", "-"))
        actions.append(target.add_argument(flag, **kwargs))
        for old in meta.get("aliases", ()):
            add_deprecated_alias(target, old, dest=f.name, replacement=flag, type=kwargs.get("type"))
    return actions


def check_option(flag: str, value: Any, *, min: float | None = None, max: float | None = None,  # noqa: A002
                 gt: float | None = None, lt: float | None = None, hint: str = "") -> Any:
    """Return ``value`` if it lies within the bounds, else a ``ValueError`` naming ``flag``.

    ``min``/``max`` are inclusive, ``gt``/``lt`` exclusive; ``hint`` is appended to the message
    (e.g. ``"; leave it out to use all"``). NaN is outside every bound.
    """
    import math

    def fail(rule: str) -> None:
        raise ValueError(f"{flag} must be {rule} (got {value}){hint}.")

    if isinstance(value, float) and not math.isfinite(value) and any(b is not None for b in (min, max, gt, lt)):
        fail("a finite number")
    if min is not None and value < min:
        fail(f">= {min}")
    if max is not None and value > max:
        fail(f"<= {max}")
    if gt is not None and value <= gt:
        fail(f"> {gt}")
    if lt is not None and value >= lt:
        fail(f"< {lt}")
    return value


def validate_options(args: argparse.Namespace, cls: type[T], *,
                     overrides: Mapping[str, Mapping[str, Any]] | None = None) -> T:
    """The options dataclass ``cls`` from ``args``, checked before any work is done.

    Every field's bounds (``min``/``max``/``gt``/``lt`` in its metadata or ``overrides``) are
    checked with a message naming the command-line flag; then ``cls.validate(options)`` runs
    when the class defines it (combinations of options, e.g. ``--sigma-min <= --sigma-max``).
    Fields absent from ``args`` keep their defaults.
    """
    overrides = overrides or {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        meta = {**f.metadata, **overrides.get(f.name, {})}
        bounds = {k: meta[k] for k in ("min", "max", "gt", "lt") if meta.get(k) is not None}
        value = getattr(args, f.name, None)
        if not bounds or value is None or meta.get("cli", True) is False:
            continue
        flag = meta.get("flag", "--" + f.name.replace("_", "-"))
        for v in (value if isinstance(value, (tuple, list)) else (value,)):
            check_option(flag, v, **bounds)
    opts = config_from_args(cls, args)  # after the bounds: a __post_init__ check names fields, not flags
    validate = getattr(opts, "validate", None)
    if callable(validate):
        validate()
    return opts


def config_from_args(cls: type[T], args: argparse.Namespace, **changes: Any) -> T:
    """An instance of the dataclass ``cls`` from the parsed options (fields absent from ``args`` keep
    their defaults); ``changes`` override."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    values = {f.name: getattr(args, f.name) for f in fields if f.init and hasattr(args, f.name)}
    values.update(changes)
    return cls(**values)


def apply_common_arguments(args: argparse.Namespace) -> None:
    """Apply thread count and validate the device early with a clear message."""
    import torch

    if getattr(args, "threads", None):
        if args.threads < 1:
            raise ValueError(f"Expected '--threads' >= 1 (got {args.threads}).")
        torch.set_num_threads(args.threads)
    resolve_device(getattr(args, "device", "cpu"))


def progress(iterable: Iterable[T], *, quiet: bool = False, desc: str = "", total: int | None = None) -> Iterable[T]:
    """tqdm progress bar, disabled by ``quiet`` or ``$POINTSYM_QUIET``."""
    from tqdm.auto import tqdm

    disable = quiet or bool(os.environ.get("POINTSYM_QUIET"))
    return tqdm(iterable, desc=desc, total=total, disable=disable, leave=False)
