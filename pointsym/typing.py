"""Type aliases for the inputs pointsym accepts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import ase
    import torch

    ArrayLike = np.ndarray | torch.Tensor | Sequence[Sequence[float]]
    #: one structure: an ``ase.Atoms`` or an ``(n, 3)`` array of positions in Å
    AtomsLike = ase.Atoms | np.ndarray | torch.Tensor
    #: one structure or a list of them
    SystemsLike = AtomsLike | Sequence[AtomsLike]
else:
    ArrayLike = object
    AtomsLike = object
    SystemsLike = object

__all__ = ["ArrayLike", "AtomsLike", "SystemsLike"]
