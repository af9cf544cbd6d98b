"""Invariant descriptors of atomic environments and point clouds.

- :class:`SOAP` -- the SOAP power spectrum, a drop-in for DScribe 2.1's ``SOAP`` (same
  parameters, feature order and shapes), vectorised and differentiable in torch.
- :func:`create_dask` -- any descriptor's ``create`` over many structures as a lazy, chunked
  ``dask.array.Array`` (the ``dask`` extra); also :meth:`SOAP.create_dask`.
- :func:`solid_harmonics` -- real orthonormal solid harmonics ``r^l Y_lm``.
- :func:`image_to_points` -- grey-scale image to a 3-D point cloud (paper 000's lifting).
- :func:`gto_betas` / :func:`polynomial_betas` -- the orthonormalisation matrices of the
  radial bases (DScribe's ``betas``), computed in extended precision.
"""

from pointsym.descriptors._dask import create_dask
from pointsym.descriptors._harmonics import solid_harmonics
from pointsym.descriptors._images import image_to_points, pixel_point_index
from pointsym.descriptors._radial import gto_alphas, gto_betas
from pointsym.descriptors._radial import polynomial_orthonormalizer as polynomial_betas
from pointsym.descriptors._soap import SOAP

__all__ = [
    "SOAP",
    "create_dask",
    "gto_alphas",
    "gto_betas",
    "image_to_points",
    "pixel_point_index",
    "polynomial_betas",
    "solid_harmonics",
]
