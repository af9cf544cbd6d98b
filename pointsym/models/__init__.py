"""Complete models.

- :class:`CSNNClassifier` -- concentric spherical neural network for point-cloud
  classification (icosahedral-rotation equivariant, papers 001/003).
- :class:`PointNet` -- the PointNet classifier baseline (rotation robustness only through
  augmentation); ``forward(points (B, N, 3)) -> logits``.
"""

from pointsym.models.csnn import CSNNClassifier
from pointsym.models.pointnet import PointNet, TNet

__all__ = [
    "CSNNClassifier",
    "PointNet",
    "TNet",
]
