"""Import direction inside pointsym (docs/conventions.md, "Layering"), checked on the syntax tree.

Every module under pointsym/ is parsed with ``ast`` (never imported, never grepped); every
``import`` / ``from ... import`` (relative ones resolved, those inside functions and
``if TYPE_CHECKING:`` blocks included) and every ``importlib.import_module("pointsym...")`` with a
literal name is checked against four rules:

1. nothing outside ``pointsym/experiments/`` imports ``pointsym.experiments`` (only ``pointsym/cli.py``
   may, and ``pointsym/__init__.py``, whose lazy loader imports by computed name);
2. no module imports another package's underscore module or name (``pointsym.models`` importing
   ``pointsym.symmetrize._ecse``); a package's own private modules are fine, and so is
   ``pointsym.experiments.X`` importing the public ``pointsym.experiments.common``;
3. ``pointsym.core`` imports no other part of pointsym;
4. imports run downward through the layers below, never sideways within a layer or upward.

The negative controls at the end feed the checker synthetic sources that break each rule.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "pointsym"

# The layers, lowest first (docs/conventions.md). A package may import the packages of lower layers
# only. Derived from the imports in the code: every edge that exists is downward in this order.
# Current edges: geometry, datasets, training -> core; structures, descriptors, nn, testing -> core,
# geometry; models -> core, nn, structures; symmetrize -> core, geometry, structures; fields -> core,
# datasets; calculators -> core, structures, symmetrize; experiments -> the rest; cli -> core, experiments.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core", "typing"),  # typing: the type aliases (imports only numpy)
    ("geometry",),
    ("structures", "electronic"),
    ("datasets",),
    ("training",),
    ("descriptors", "nn"),
    ("models", "symmetrize"),
    ("fields", "calculators"),  # calculators: the ASE calculator around a saved model (and ECSE)
    ("testing",),
    ("experiments",),
    ("cli",),
    ("__main__",),
)
RANK = {name: level for level, names in enumerate(LAYERS) for name in names}


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. "pointsym.models.pet"; a package's __init__ is the package name
    is_package: bool
    source: str
    path: str = "<string>"


def _packages() -> frozenset[str]:
    return frozenset(
        ".".join(p.parent.relative_to(ROOT.parent).parts) for p in ROOT.rglob("__init__.py")
    )


PACKAGES = _packages()


def _modules() -> list[Module]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        out.append(Module(".".join(parts), is_package, path.read_text(), str(path.relative_to(ROOT.parent))))
    return out


def imported_names(module: Module) -> list[tuple[int, str]]:
    """(line, dotted name) of everything ``module`` imports from pointsym.

    ``from a.b import c`` yields ``a.b.c`` (a module or a name in ``a.b``; the rules treat both alike).
    """
    tree = ast.parse(module.source, filename=module.path)
    here = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names if alias.name != "*"]
            found.append((node.lineno, target))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) == "import_module" or getattr(node.func, "id", None)
                   in ("import_module", "__import__"))):
            found.append((node.lineno, node.args[0].value))
    return [(line, name) for line, name in found if name == "pointsym" or name.startswith("pointsym.")]


def _top(name: str) -> str | None:
    """The pointsym package or top-level module a dotted name belongs to (None: the root itself)."""
    parts = name.split(".")
    if len(parts) == 1 or (parts[1].startswith("__") and parts[1] != "__main__"):  # pointsym, pointsym.__version__
        return None
    return parts[1]


def _private_owner(name: str) -> str | None:
    """The package that owns the first underscore module/name in ``name`` (None when all public)."""
    parts = name.split(".")
    for i in range(1, len(parts)):
        if parts[i].startswith("_") and not (parts[i].startswith("__") and parts[i].endswith("__")):
            owner = ".".join(parts[:i])
            return owner if owner in PACKAGES or i == 1 else ".".join(parts[: i - 1])
    return None


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(module: Module) -> list[str]:
    """Every broken rule in ``module``, as ``path:line: rule: message``."""
    out: list[str] = []
    me = _top(module.name)
    seen_layers: set[tuple[int, str]] = set()  # `from a import b, c` is one layer crossing
    for line, name in imported_names(module):
        where = f"{module.path}:{line}"
        target = _top(name)
        if _within(name, "pointsym.experiments") and me not in ("experiments", "cli") and module.name != "pointsym":
            out.append(f"{where}: experiments: {module.name} imports {name} (only pointsym.cli may)")
        owner = _private_owner(name)
        if owner is not None and not _within(module.name, owner):
            out.append(f"{where}: private: {module.name} imports {name}, private to {owner}")
        if me == "core" and not _within(name, "pointsym.core"):
            out.append(f"{where}: core: pointsym.core imports {name} (core imports no other pointsym package)")
        if me is not None and target is not None and target != me and (line, target) not in seen_layers:
            seen_layers.add((line, target))
            if target not in RANK or me not in RANK:
                unknown = target if target not in RANK else me
                out.append(f"{where}: layers: {unknown!r} is in no layer (add it to LAYERS)")
            elif RANK[target] >= RANK[me]:
                side = "sideways" if RANK[target] == RANK[me] else "upward"
                out.append(f"{where}: layers: {module.name} imports {name} ({side}: {me} -> {target})")
    return out


MODULES = _modules()


def test_every_module_is_parsed():
    names = {m.name for m in MODULES}
    assert {"pointsym", "pointsym.cli", "pointsym.core", "pointsym.experiments.common"} <= names
    assert len(MODULES) > 50
    # Each top-level package and module is in a layer.
    tops = {_top(m.name) for m in MODULES} - {None}
    assert tops <= set(RANK), tops - set(RANK)


def test_pointsym_imports_follow_the_rules():
    found = [v for m in MODULES for v in violations(m)]
    assert not found, "\n".join(found)


def test_the_checker_sees_the_real_edges():
    # Positive controls on the real tree: the checker finds the imports it judges.
    by_name = {m.name: m for m in MODULES}
    cli = {name for _, name in imported_names(by_name["pointsym.cli"])}
    assert any(_within(n, "pointsym.experiments") for n in cli)
    models = {_top(n) for m in MODULES if _within(m.name, "pointsym.models") for _, n in imported_names(m)}
    assert {"nn", "structures"} <= models


# ---------------------------------------------------------------------------- negative controls
def _flags(name: str, source: str, is_package: bool = False) -> list[str]:
    return violations(Module(name, is_package, source))


@pytest.mark.parametrize(
    ("name", "source", "rule"),
    [
        # 1. experiments imported from outside experiments (absolute, relative, by literal name)
        ("pointsym.models.pet", "from pointsym.experiments.common import report\n", "experiments"),
        ("pointsym.fields._io", "from ..experiments import pet\n", "experiments"),
        ("pointsym.nn", "import importlib\nimportlib.import_module('pointsym.experiments.csnn')\n", "experiments"),
        # 2. another package's private module or name
        ("pointsym.models.pet", "from pointsym.symmetrize._ecse import ECSE\n", "private"),
        ("pointsym.models.pet", "from pointsym.symmetrize import _ecse\n", "private"),
        ("pointsym.nn._mapping", "from pointsym.geometry.icosphere import _cube_cell\n", "private"),
        ("pointsym.experiments.pet.cli", "from pointsym.experiments.common._hidden import x\n", "private"),
        ("pointsym.experiments.pet.cli", "from ..csnn._private import y\n", "private"),
        # 3. core importing any other part of pointsym (even a lower-looking one)
        ("pointsym.core.devices", "from pointsym.geometry import random_rotation\n", "core"),
        ("pointsym.core.validation", "def f():\n    from pointsym.typing import ArrayLike\n", "core"),
        # 4. upward and sideways imports
        ("pointsym.geometry.rotations", "from pointsym.structures import batch_structures\n", "layers"),
        ("pointsym.datasets.crystals", "import pointsym.models\n", "layers"),
        ("pointsym.nn._mapping", "from pointsym.descriptors import SOAP\n", "layers"),
        ("pointsym.symmetrize._ecse", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                      "    from pointsym.models import PET\n", "layers"),
        ("pointsym.training._trainer", "from ..fields import NeSF\n", "layers"),
    ],
)
def test_checker_flags_each_rule(name, source, rule):
    found = _flags(name, source)
    assert any(f": {rule}: " in v for v in found), found


@pytest.mark.parametrize(
    ("name", "source", "is_package"),
    [
        ("pointsym.descriptors", "from pointsym.descriptors._soap import SOAP\n", True),  # its own private module
        ("pointsym.descriptors", "from ._soap import SOAP\n", True),
        ("pointsym.models.pet", "from ._pet_layers import Block\nfrom pointsym.structures import x\n", False),
        ("pointsym.experiments.pet.cli", "from pointsym.experiments.common import cli\n", False),  # common is public
        ("pointsym.experiments.pet.cli", "from ..common.cli import add\nfrom . import _data\n", False),
        ("pointsym.cli", "from pointsym.experiments import demo\nimport pointsym\n", False),
        ("pointsym.core.devices", "from pointsym.core.validation import check_int\nfrom . import species\n", False),
        ("pointsym.fields._model", "from pointsym.datasets import load_crystals\nimport numpy, torch\n", False),
        ("pointsym.experiments.common.results", "def f():\n    import pointsym\n    return pointsym.__version__\n",
         False),
    ],
)
def test_checker_allows_the_legal_imports(name, source, is_package):
    assert _flags(name, source, is_package) == []
