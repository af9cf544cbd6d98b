"""Every ``pointsym ...`` command recorded with the results still parses with today's parser.

Commands are collected from the fenced code blocks (and the inline ``pointsym ... --option``
spans) of ``results/*/README.md`` and from the ``"command"`` fields of ``results/**/*.json``.
Shell variables defined in the same code block (``COMMON="..."``) are expanded, line
continuations joined, comments and prefixes such as ``nice -n 10`` dropped. Parsing needs no
data, so no command is skipped (paths in them, such as ``--model results/nesf/...pt``, are
only read when the command runs).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from pointsym.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results"


def _expand(line: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env.get(m.group(1), m.group(0)), line)


def _argv(line: str) -> list[str] | None:
    """The arguments after ``pointsym`` of a shell line, or ``None`` when it runs no ``pointsym`` command."""
    tokens = shlex.split(line, comments=True)
    if "pointsym" not in tokens:
        return None
    return tokens[tokens.index("pointsym") + 1:]


def _readme_commands(path: Path) -> list[tuple[str, list[str]]]:
    text = path.read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S):
        env: dict[str, str] = {}
        for line in block.replace("\\\n", " ").splitlines():
            m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
            if m:
                env[m.group(1)] = " ".join(shlex.split(m.group(2)))
                continue
            argv = _argv(_expand(line, env))
            if argv:
                found.append((line.strip(), argv))
    for span in re.findall(r"`(pointsym [^`]+)`", text):
        if " --" in span:  # a command, not the mere name of a sub-command
            argv = _argv(span)
            if argv:
                found.append((span, argv))
    return found


def _json_commands(path: Path) -> list[tuple[str, list[str]]]:
    found = []

    def walk(obj: object) -> None:
        if isinstance(obj, dict):
            for key, value in obj.items():
                if key == "command" and isinstance(value, str) and value.startswith("pointsym "):
                    found.append((value, shlex.split(value)[1:]))
                else:
                    walk(value)
        elif isinstance(obj, list):
            for value in obj:
                walk(value)

    walk(json.loads(path.read_text(encoding="utf-8")))
    return found


def _collect() -> list[tuple[str, str, list[str]]]:
    cases = []
    for readme in sorted(RESULTS.glob("*/README.md")):
        cases += [(str(readme.relative_to(ROOT)), line, argv) for line, argv in _readme_commands(readme)]
    for path in sorted(set(RESULTS.glob("*/*.json")) | set(RESULTS.glob("**/*.json"))):
        cases += [(str(path.relative_to(ROOT)), line, argv) for line, argv in _json_commands(path)]
    return cases


CASES = _collect()


def test_commands_were_found():
    sources = {src.split("/")[1] for src, _, _ in CASES}
    assert {"csnn_shapes", "nesf", "pet", "pixel_soap"} <= sources
    assert len(CASES) >= 40


@pytest.mark.parametrize("source,line,argv", CASES, ids=[f"{s}:{' '.join(a)[:60]}" for s, _, a in CASES])
def test_recorded_command_parses(source, line, argv):
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse error: the recorded command no longer parses
        pytest.fail(f"{source}: {line!r} does not parse (exit {exc.code})")
    assert args.command == argv[0] and callable(args.func)
