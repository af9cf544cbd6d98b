"""Real orthonormal spherical harmonics, evaluated with a few large tensor operations.

For a unit vector ``(x, y, z) = (sin t cos p, sin t sin p, cos t)``::

    Y_l,+-m = Q_lm(cos t) * {Re, Im} (x + i y)^m ,     Q_lm(cos t) = sum_j C[lm, j] T_j(cos t)

``Q_lm`` (the associated Legendre function divided by ``sin^m t``, normalised, with the
sqrt(2) of the real harmonics) is a polynomial of degree ``l - m``; its coefficients ``C`` in
the Chebyshev basis ``T_j(cos t) = cos(j t)`` are positive-dominated and well conditioned
(unlike monomial coefficients, which reach 1e6 at ``l = 20``). Evaluation is therefore:
two short recursions for complex powers (``e^{i j t}`` and ``(x + i y)^m``), one matrix product with
``C`` for all ``(l, m)`` at once, and one broadcast product per degree.

Packed layout of degree ``l`` (used internally): ``2l + 2`` rows ``(Re m=0..l, Im m=0..l)``;
the row ``Im m=0`` is identically zero. The public :func:`solid_harmonics` returns the
conventional ``m = -l..l`` layout (``m < 0``: sine harmonics), without the Condon-Shortley
phase, multiplied by ``|v|^l``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["legendre_chebyshev_table", "unit_harmonics", "solid_harmonics", "solid_harmonics_by_l"]

# log(r) used for r = 0: exp(l * _LOG_ZERO) underflows to exactly 0 for l >= 1.
LOG_ZERO = -1.0e4

# Set while forward-mode or vectorised derivatives are taken: forces the out-of-place code path
# (the in-place, preallocated fast path is only used when no derivative can be requested).
_FORCE_DIFFERENTIABLE = contextvars.ContextVar("pointsym_soap_differentiable", default=False)


def needs_graph(*tensors: torch.Tensor) -> bool:
    """Whether derivatives may be taken through ``tensors`` (then no in-place fast paths)."""
    if _FORCE_DIFFERENTIABLE.get():
        return True
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


@contextlib.contextmanager
def differentiable_mode() -> Iterator[None]:
    """Force the differentiable code path (for forward-mode / vmapped Jacobians)."""
    token = _FORCE_DIFFERENTIABLE.set(True)
    try:
        yield
    finally:
        _FORCE_DIFFERENTIABLE.reset(token)


def _normalised_q(l_max: int, t: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    """``Q_lm(t)`` by the stable three-term recursion (float64), for all ``m <= l <= l_max``."""
    out: dict[tuple[int, int], np.ndarray] = {}
    for m in range(l_max + 1):
        # Q_mm = sqrt((2 - delta_m0) (2m+1)/(4 pi) / (2m)!) (2m-1)!!   (log space)
        log_dfact = math.lgamma(2 * m + 1) - m * math.log(2) - math.lgamma(m + 1)
        q_mm = math.exp(0.5 * (math.log(2 * m + 1) - math.log(4 * math.pi) - math.lgamma(2 * m + 1)) + log_dfact)
        q_mm *= math.sqrt(2.0) if m > 0 else 1.0
        out[(m, m)] = np.full_like(t, q_mm)
        for l in range(m + 1, l_max + 1):
            a = math.sqrt((4 * l * l - 1) / (l * l - m * m))
            val = a * t * out[(l - 1, m)]
            if l - 2 >= m:
                b = math.sqrt((2 * l + 1) * ((l - 1) ** 2 - m * m) / ((2 * l - 3) * (l * l - m * m)))
                val = val - b * out[(l - 2, m)]
            out[(l, m)] = val
    return out


@functools.lru_cache(maxsize=64)
def legendre_chebyshev_table(l_max: int) -> np.ndarray:
    """``C`` of shape ``((l_max + 1)(l_max + 2) / 2, l_max + 1)``: row ``l (l + 1) / 2 + m`` holds the
    Chebyshev coefficients of ``Q_lm`` (exact interpolation at ``l_max + 1`` Chebyshev nodes)."""
    n = l_max + 1
    theta = np.pi * (np.arange(n) + 0.5) / n
    values = _normalised_q(l_max, np.cos(theta))
    # Discrete cosine transform (type II) of the node values gives the coefficients.
    basis = np.cos(np.outer(np.arange(n), theta))  # (j, k)
    table = np.zeros((n * (n + 1) // 2, n))
    for (l, m), v in values.items():
        coef = (2.0 / n) * basis @ v
        coef[0] *= 0.5
        coef[l - m + 1 :] = 0.0  # exact zeros above the degree
        table[l * (l + 1) // 2 + m] = coef
    return table


def _safe_norm(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``r``, ``1/r`` (0 at the origin) and ``log r`` (:data:`LOG_ZERO` at the origin), NaN-free gradients."""
    r2 = x * x + y * y + z * z
    nonzero = r2 > 0
    r = torch.sqrt(torch.where(nonzero, r2, torch.ones_like(r2)))
    inv_r = torch.where(nonzero, 1.0 / r, torch.zeros_like(r))
    log_r = torch.where(nonzero, torch.log(r), torch.full_like(r, LOG_ZERO))
    return torch.where(nonzero, r, torch.zeros_like(r)), inv_r, log_r


def _powers(re: torch.Tensor, im: torch.Tensor, l_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary parts of ``(re + i im)^j``, ``j = 0..l_max``: two ``(B, l_max + 1, K)`` tensors."""
    pre, pim = [torch.ones_like(re)], [torch.zeros_like(re)]
    for _ in range(l_max):
        a, b = pre[-1], pim[-1]
        pre.append(a * re - b * im)
        pim.append(a * im + b * re)
    return torch.stack(pre, 1), torch.stack(pim, 1)


def _powers_fast(t: torch.Tensor, s: torch.Tensor, u: torch.Tensor, v: torch.Tensor, l_max: int) -> torch.Tensor:
    """Without autograd: ``(B, 4, l_max + 1, K)`` = Re/Im of ``(t + i s)^j`` and of ``(u + i v)^j``.

    Complex multiplications into one preallocated buffer (one kernel per power), then a single
    de-interleaving copy.
    """
    B, K = t.shape
    ctype = torch.complex128 if t.dtype == torch.float64 else torch.complex64
    w = torch.complex(torch.stack([t, u], 1), torch.stack([s, v], 1))  # (B, 2, K)
    out = torch.empty(B, 2, l_max + 1, K, dtype=ctype, device=t.device)
    out[:, :, 0] = 1.0
    if l_max >= 1:
        out[:, :, 1] = w
    for j in range(2, l_max + 1):
        torch.mul(out[:, :, j - 1], w, out=out[:, :, j])
    # (B, 2, L + 1, K, 2) -> (B, 2 sets, 2 parts, L + 1, K)
    return torch.view_as_real(out).permute(0, 1, 4, 2, 3).reshape(B, 4, l_max + 1, K)


def unit_harmonics(
    x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, l_max: int, *, solid_l1: bool = False
) -> tuple[Iterator[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Harmonics of the directions of ``(x, y, z)`` in the packed layout.

    Args:
        x, y, z: ``(B, K)`` Cartesian components (any length; the direction is used).
        l_max: largest degree (>= 0).

    Returns:
        ``Y``: an iterator over ``l = 0..l_max`` yielding ``(B, 2l + 2, K)`` tensors (``Y_lm``
        of the unit vector; a zero vector gives zeros except for ``l = 0``). Without autograd
        the tensors share one buffer: consume each before asking for the next.
        ``r``: ``(B, K)`` lengths; ``log_r``: ``log r`` (:data:`LOG_ZERO` where ``r = 0``).
        Gradients are finite everywhere.

    With ``solid_l1=True`` the degree-1 block is the *solid* harmonic ``r Y_1m`` (linear in
    ``x, y, z``), so that its derivative at ``r = 0`` is exact (the unit-vector form has no
    derivative there); higher degrees vanish at the origin with zero slope either way.
    """
    B, K = x.shape
    r, inv_r, log_r = _safe_norm(x, y, z)
    t = z * inv_r
    # sin(theta) from the in-plane length keeps full precision near the poles.
    rho2 = x * x + y * y
    has_rho = rho2 > 0
    s = torch.where(has_rho, torch.sqrt(torch.where(has_rho, rho2, torch.ones_like(rho2))), torch.zeros_like(rho2))
    s = s * inv_r
    table = torch.as_tensor(legendre_chebyshev_table(l_max), dtype=x.dtype, device=x.device)
    grad = needs_graph(x, y, z)
    if grad:
        cheb, _ = _powers(t, s, l_max)  # T_j(t) = cos(j theta) = Re (t + i s)^j
        ab = torch.stack(_powers(x * inv_r, y * inv_r, l_max), 1)  # (B, 2, L + 1, K)
    else:
        pw = _powers_fast(t, s, x * inv_r, y * inv_r, l_max)
        cheb, ab = pw[:, 0], pw[:, 2:4]
    q_all = torch.matmul(table, cheb)  # (B, n_q, K)

    def generate() -> Iterator[torch.Tensor]:
        buf = None if grad else torch.empty(B * 2 * (l_max + 1) * K, dtype=x.dtype, device=x.device)
        for l in range(l_max + 1):
            if l == 1 and solid_l1:
                # Q_10(t) = c10 * t and Q_11 = c11, so r Y_1 = (c10 z, c11 x, 0, c11 y) in packed order.
                c10, c11 = float(table[1, 1]), float(table[2, 0])
                yield torch.stack([c10 * z, c11 * x, torch.zeros_like(x), c11 * y], 1)
                continue
            q = q_all[:, l * (l + 1) // 2 : (l + 1) * (l + 2) // 2].unsqueeze(1)
            if buf is None:
                yield (q * ab[:, :, : l + 1]).reshape(B, 2 * l + 2, K)
            else:
                out = buf[: B * 2 * (l + 1) * K].view(B, 2, l + 1, K)
                torch.mul(q, ab[:, :, : l + 1], out=out)
                yield out.view(B, 2 * l + 2, K)

    return generate(), r, log_r


def solid_harmonics_by_l(vectors: torch.Tensor, l_max: int) -> list[torch.Tensor]:
    """Real orthonormal solid harmonics, one tensor per degree.

    Args:
        vectors: ``(..., 3)`` Cartesian vectors (any float dtype/device).
        l_max: largest degree (>= 0).

    Returns:
        ``l_max + 1`` tensors of shape ``(..., 2l + 1)`` (``m = -l..l``) holding
        ``|v|^l Y_lm(v / |v|)``.
    """
    batch = vectors.shape[:-1]
    flat = vectors.reshape(1, -1, 3)
    Y, r, _ = unit_harmonics(flat[..., 0], flat[..., 1], flat[..., 2], l_max, solid_l1=True)
    out = []
    for l, packed in enumerate(Y):
        packed = packed.clone()
        # packed rows: m -> cos part of order m, l + 1 + m -> sin part
        order = [l + 1 + m for m in range(l, 0, -1)] + [0] + [m for m in range(1, l + 1)]
        vals = packed[0, order] if l == 1 else packed[0, order] * r[0] ** l
        out.append(vals.T.reshape(*batch, 2 * l + 1))
    return out


def solid_harmonics(vectors: torch.Tensor, l_max: int) -> torch.Tensor:
    """All real solid harmonics up to ``l_max`` concatenated: ``(..., 3) -> (..., (l_max + 1)^2)``.

    Component ``l^2 + l + m`` holds ``|v|^l Y_lm``; ``m > 0`` are the ``cos(m phi)``
    harmonics, ``m < 0`` the ``sin(|m| phi)`` ones (no Condon-Shortley phase).
    """
    return torch.cat(solid_harmonics_by_l(vectors, l_max), dim=-1)
