"""The neutral core every package builds on: input checks, device resolution, the species parser
and versioned model checkpoints. It imports nothing else of pointsym."""

from pointsym.core.devices import resolve_device
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
    "atomic_number",
    "check_choice",
    "check_finite_array",
    "check_int",
    "check_points",
    "check_positive",
    "parse_species",
    "resolve_device",
    "to_numpy",
]
