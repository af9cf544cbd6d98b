"""The project's own exception types.

Each also derives from the built-in exception a user would catch without knowing pointsym
(``ValueError`` for bad files and settings, ``FloatingPointError`` for a diverged training),
and every one derives from :class:`PointsymError`, which the command line turns into one
line on stderr and exit status 2.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigMismatchError", "PointsymError", "TrainingDivergedError"]


class PointsymError(Exception):
    """Base class of pointsym's own errors."""


class CheckpointError(PointsymError, ValueError):
    """A file is not a readable pointsym checkpoint, or holds another model or format."""


class ConfigMismatchError(PointsymError, ValueError):
    """A resume was asked for with settings that differ from the stored run's."""


class TrainingDivergedError(PointsymError, FloatingPointError):
    """The training loss became NaN or infinite."""
