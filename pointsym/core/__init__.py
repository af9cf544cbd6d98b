"""The neutral core every package builds on: input checks, device resolution, the species parser
and versioned model checkpoints. It imports nothing else of pointsym."""

from pointsym.core.checkpoints import (
    MODEL_FORMAT,
    MODEL_FORMAT_VERSION,
    CheckpointMixin,
    atomic_torch_save,
    load_model,
    read_torch_file,
)
from pointsym.core.deprecation import renamed_kwargs, warn_deprecated
from pointsym.core.devices import resolve_device
from pointsym.core.errors import CheckpointError, ConfigMismatchError, PointsymError, TrainingDivergedError
from pointsym.core.species import atomic_number, parse_species
from pointsym.core.validation import (
    check_choice,
    check_finite_array,
    check_int,
    check_points,
    check_positive,
    to_numpy,
)

__all__ = [
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "CheckpointError",
    "CheckpointMixin",
    "ConfigMismatchError",
    "PointsymError",
    "TrainingDivergedError",
    "atomic_number",
    "atomic_torch_save",
    "check_choice",
    "check_finite_array",
    "check_int",
    "check_points",
    "check_positive",
    "load_model",
    "parse_species",
    "read_torch_file",
    "renamed_kwargs",
    "resolve_device",
    "to_numpy",
    "warn_deprecated",
]
