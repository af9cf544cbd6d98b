"""Complete models.

- :class:`CSNNClassifier` -- concentric spherical neural network for point-cloud
  classification (icosahedral-rotation equivariant, papers 001/003).
- :class:`CSNNDOS` -- the atom-centred CSNN density-of-states model (per-atom fingerprints ->
  per-atom DOS, averaged per structure; spec ``csnn.md`` section 5); its loss is
  :func:`pointsym.electronic.dos_loss`.
- :class:`DOSHead` -- the spec-5 per-atom DOS head as a module; the DOS baselines
  :class:`AtomwiseDOSMLP` (per-atom SOAP -> standardisation -> head, exactly invariant) and
  :class:`PETDOS` (PET with a per-atom DOS head; exact invariance through ECSE around
  ``PETDOS.per_atom()``), in :mod:`pointsym.models.dos_heads`.
- :class:`PointNet` -- the PointNet classifier baseline (rotation robustness only through
  augmentation); ``forward(points (B, N, 3)) -> logits``.
- :class:`PET` -- the Point Edge Transformer interatomic potential (energies, forces by
  autograd, stress), paper 002; wrap it in :class:`pointsym.symmetrize.ECSE` for exact
  O(3) equivariance.
"""

from pointsym.models.csnn import CSNNClassifier
from pointsym.models.csnn_dos import CSNNDOS
from pointsym.models.dos_heads import PETDOS, AtomwiseDOSMLP, DOSHead
from pointsym.models.pet import PET
from pointsym.models.pointnet import PointNet, TNet

__all__ = [
    "AtomwiseDOSMLP",
    "CSNNDOS",
    "CSNNClassifier",
    "DOSHead",
    "PET",
    "PETDOS",
    "PointNet",
    "TNet",
]
