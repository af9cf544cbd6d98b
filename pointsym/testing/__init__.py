"""Public invariance / equivariance harness used by every descriptor, layer and model.

Example:
    >>> import numpy as np
    >>> from pointsym.testing import assert_invariant
    >>> x = np.random.default_rng(0).normal(size=(5, 3))
    >>> report = assert_invariant(lambda positions: np.linalg.norm(positions - positions.mean(0), axis=1).sum(), x)
    >>> sorted(report["output"])  # the largest error found, per output
    ['abs', 'rel', 'scale']
    >>> report["output"]["abs"] < 1e-12
    True
"""

from pointsym.testing._equivariance import (
    OUTPUT_TYPES,
    assert_equivariant,
    assert_invariant,
    equivariance_error,
)

__all__ = ["OUTPUT_TYPES", "assert_equivariant", "assert_invariant", "equivariance_error"]
