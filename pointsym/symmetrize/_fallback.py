"""Collinear fallback of ECSE: evaluate the wrapped model on the structure's principal axis.

When every neighbourhood is (nearly) collinear (a diatomic, CO2, a linear chain
molecule) no well-conditioned frame exists and ECSE needs an auxiliary prediction that is
equivariant by construction (spec B.6). Without a dedicated invariant model, pointsym
uses the *axis projection*: the atoms are projected on the principal axis ``e`` of their
positions (top eigenvector of the centred second-moment matrix), laid along the local x
axis as ``(t_k, 0, 0)`` with ``t_k = (x_k - c) . e``, and the wrapped model is evaluated for
``e`` and ``-e``. For an exactly linear molecule the projection is the molecule itself, so
the fallback is the model's own prediction; the ``+-e`` average makes it independent of
the eigenvector's sign, and rotations about the axis leave ``(t_k, 0, 0)`` unchanged, so
scalars are exactly invariant. Vectors keep their axial component and rank-2 tensors
their axially symmetric part ``a e e^T + b (I - e e^T)`` -- the only components an
O(3)-equivariant function of a linear input can have.

Limits: non-periodic structures only, and the principal axis must be non-degenerate
(clearly elongated structures); otherwise pass an intrinsically invariant ``aux_model``
(e.g. ``PET(..., use_only_length=True)``).
"""

from __future__ import annotations

import torch

__all__ = ["principal_axis"]


class _TopEigenvector(torch.autograd.Function):
    """Top eigenvector of a symmetric 3x3 matrix with an exact, degeneracy-safe gradient.

    ``de = sum_{j<3} e_j e_j^T dC e / (lambda_3 - lambda_j)``: only gaps to the *top*
    eigenvalue appear, so the (often degenerate) two small eigenvalues of a linear
    molecule cause no 0 * inf.
    """

    @staticmethod
    def forward(ctx, mat: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        lam, vecs = torch.linalg.eigh(mat)
        ctx.save_for_backward(lam, vecs)
        return vecs[..., :, 2]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        lam, vecs = ctx.saved_tensors
        top = vecs[..., :, 2]
        gaps = (lam[..., 2:3] - lam[..., :2]).clamp_min(torch.finfo(lam.dtype).tiny)  # no 0/0 (no neighbours)
        coef = (vecs[..., :, :2].transpose(-1, -2) @ grad[..., None])[..., 0] / gaps
        de_dir = (vecs[..., :, :2] @ coef[..., None])[..., 0]
        g = de_dir[..., :, None] * top[..., None, :]
        return 0.5 * (g + g.transpose(-1, -2))


def principal_axis(points: torch.Tensor, *, min_gap: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Centroid and principal axis of a point set (differentiable, sign arbitrary).

    Args:
        points: ``(n, 3)``.
        min_gap: required relative gap ``(lambda_3 - lambda_2) / lambda_3``.

    Returns:
        ``(centroid (3,), axis (3,))``; for a single point the axis is ``(1, 0, 0)``.

    Raises:
        ValueError: the two largest second moments are (nearly) equal.
    """
    centroid = points.mean(0)
    if points.shape[0] == 1:
        return centroid, torch.tensor([1.0, 0.0, 0.0], dtype=points.dtype, device=points.device)
    x = points - centroid
    mat = x.T @ x / points.shape[0]
    lam = torch.linalg.eigvalsh(mat.detach())
    if float(lam[2] - lam[1]) <= min_gap * float(lam[2]):
        raise ValueError(
            "ECSE needs its collinear fallback here, but the structure has no unique principal axis "
            f"(second moments {lam.tolist()}); pass an intrinsically invariant aux_model to ECSE, "
            "e.g. PET(..., use_only_length=True)."
        )
    return centroid, _TopEigenvector.apply(mat)
