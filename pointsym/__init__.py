"""pointsym: rotation-aware learning on 3D point clouds.

Sub-packages (imported lazily so that ``import pointsym`` stays cheap):

- :mod:`pointsym.core` -- input checks, device resolution, the species parser, checkpoints.
- :mod:`pointsym.structures` -- structure batches, input checks, neighbour lists, energies/forces.
- :mod:`pointsym.descriptors` -- invariant descriptors (SOAP power spectrum).
- :mod:`pointsym.nn` -- equivariant layers (concentric spherical convolutions, ...).
- :mod:`pointsym.models` -- complete models (CSNN classifier, PET, PointNet, ...).
- :mod:`pointsym.symmetrize` -- exact symmetrization of any model (ECSE).
- :mod:`pointsym.fields` -- neural structure fields for crystals.
- :mod:`pointsym.calculators` -- ASE calculators around trained structure models (MD, relaxations).
- :mod:`pointsym.datasets` -- data-root resolution and loaders (MNIST, ModelNet10, crystals, ...).
- :mod:`pointsym.geometry` -- rotations, symmetry groups, neighbour lists.
- :mod:`pointsym.testing` -- public invariance / equivariance harness.
- :mod:`pointsym.training` -- the one shared trainer (seeding, checkpoints, progress, DDP).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = (
    "core",
    "structures",
    "electronic",
    "descriptors",
    "nn",
    "models",
    "symmetrize",
    "fields",
    "calculators",
    "datasets",
    "geometry",
    "experiments",
    "testing",
    "training",
)

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"pointsym.{name}")
    raise AttributeError(f"module 'pointsym' has no attribute {name!r}")
