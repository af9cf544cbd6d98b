"""Radial bases of the SOAP expansion (DScribe 2.x definitions) and their orthonormalisation.

Two bases, both Löwdin-orthonormalised (``g = S^{-1/2} phi`` with ``S`` the overlap matrix of
the primitives ``phi`` under the ``r^2 dr`` measure on ``[0, inf)``):

* ``"gto"``: ``phi_{nl}(r) = r^l exp(-alpha_{nl} r^2)`` with decay radii
  ``a_n = linspace(1, r_cut, n_max)`` and ``alpha_{nl} = ln(10^3 a_n^l) / a_n^2`` (so that
  ``phi`` falls to 1e-3 of ``a_n^l`` at ``a_n``). One orthonormal set per ``l``.
* ``"polynomial"``: ``phi_n(r) = (r_cut - r)^{n+2}`` on ``[0, r_cut]``, ``n = 1..n_max``,
  the same set for every ``l``.

**Numerical stability (where pointsym differs from DScribe).** The primitive overlap matrices
are *graded*: their diagonal spans up to 60 orders of magnitude (``r_cut = 100``, ``l = 20``),
so DScribe's ``scipy.linalg.sqrtm(inv(S))`` in float64 warns about ill-conditioning and, for
``n_max >= 10``, returns a basis that is only orthonormal to ~1e-7 (or not at all for small
``r_cut``). pointsym computes the *same* matrix ``S^{-1/2}`` in extended precision (mpmath,
shipped with torch's sympy dependency; precision chosen from the dynamic range of ``S``) and
stores it as ``M = S^{-1/2} D^{-1}`` acting on unit-normalised primitives ``D phi``, whose
entries stay moderate. The features are mathematically DScribe's; the numbers agree with
DScribe wherever DScribe itself is accurate. ``compat=True`` uses DScribe's float64
``sqrtm(inv(S))`` instead (bit-for-bit the same coefficients, including its round-off).
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np

__all__ = [
    "GL_NODES",
    "gl_grid",
    "gto_alphas",
    "gto_betas",
    "gto_orthonormalizer",
    "gto_overlap",
    "gto_radial_basis",
    "polynomial_orthonormalizer",
    "polynomial_overlap",
    "polynomial_radial_basis",
]

#: Gauss-Legendre order of DScribe's polynomial-basis radial quadrature.
GL_NODES = 100
_DECAY = 1e-3
# Extra decimal digits carried beyond the dynamic range of the overlap matrix.
_GUARD_DIGITS = 30


def gto_alphas(r_cut: float, n_max: int, l_max: int) -> np.ndarray:
    """GTO exponents ``alpha[l, n]`` (1/Å^2), shape ``(l_max + 1, n_max)``."""
    a = np.linspace(1.0, r_cut, n_max)
    out = np.empty((l_max + 1, n_max))
    for l in range(l_max + 1):
        # Same expression as DScribe so that compat mode reproduces its bits.
        out[l] = -np.log(_DECAY / np.power(a, l)) / a**2
    return out


def gto_overlap(alphas: np.ndarray, l: int) -> np.ndarray:
    """Float64 overlap ``S_nn' = Gamma(l+3/2) / 2 (alpha_n + alpha_n')^{-(l+3/2)}`` of one ``l``."""
    from scipy.special import gamma

    m = alphas[:, None] + alphas[None, :]
    return 0.5 * gamma(l + 1.5) * m ** (-l - 1.5)


def polynomial_overlap(r_cut: float, n_max: int) -> np.ndarray:
    """Float64 overlap of the polynomial primitives, shape ``(n_max, n_max)``."""
    idx = np.arange(1, n_max + 1, dtype=np.float64)
    s = idx[:, None] + idx[None, :]
    return 2.0 * r_cut ** (7.0 + s) / ((5.0 + s) * (6.0 + s) * (7.0 + s))


def _lowdin_mp(entry, n: int, log10_range: float) -> np.ndarray:
    """``S^{-1/2}`` of the SPD matrix ``S[i, j] = entry(i, j)`` (mpmath numbers), in extended precision.

    ``log10_range`` is the number of decades spanned by ``S``; that many digits plus a guard are
    carried so that the small eigenvalues of the graded matrix are resolved exactly.
    """
    import mpmath

    with mpmath.workdps(int(_GUARD_DIGITS + max(0.0, log10_range))):
        S = mpmath.matrix(n, n)
        for i in range(n):
            for j in range(i, n):
                S[i, j] = S[j, i] = entry(i, j)
        evals, evecs = mpmath.eigsy(S)
        if min(evals) <= 0:
            raise ValueError(
                "The radial basis overlap matrix is singular: the primitives are linearly dependent. "
                "Lower 'n_max' or increase 'r_cut'."
            )
        inv_sqrt = evecs * mpmath.diag([1 / mpmath.sqrt(e) for e in evals]) * evecs.T
        return np.array(inv_sqrt.tolist(), dtype=np.float64)


def _scaled_condition(scaled: np.ndarray, exact_entry=None) -> float:
    """Condition number of a unit-diagonal overlap matrix (how linearly dependent the primitives are).

    float64 when that is reliable; otherwise recomputed in extended precision from
    ``exact_entry(i, j)`` (mpmath numbers; the float64 matrix itself when not given).
    """
    ev = np.linalg.eigvalsh(scaled)
    if ev.min() > 0 and ev.max() / ev.min() < 1e12:
        return float(ev.max() / ev.min())
    import mpmath

    n = scaled.shape[0]
    with mpmath.workdps(60):
        m = mpmath.matrix(n, n)
        for i in range(n):
            for j in range(n):
                m[i, j] = exact_entry(i, j) if exact_entry is not None else mpmath.mpf(float(scaled[i, j]))
        evm = mpmath.eigsy(m, eigvals_only=True)
        lo, hi = min(evm), max(evm)
        return float(hi / lo) if lo > 0 else float("inf")


def _warn_if_dependent(cond: float, what: str) -> None:
    # Evaluating the orthonormal functions amplifies round-off by about sqrt(cond).
    if cond > 1e16:
        warnings.warn(
            f"The {what} radial primitives are nearly linearly dependent (condition number {cond:.1e} after "
            f"normalisation); features are accurate only to about {math.sqrt(cond) * 1e-16:.0e} relative. "
            "Lower 'n_max' or increase 'r_cut'.",
            RuntimeWarning,
            stacklevel=4,
        )


@functools.lru_cache(maxsize=256)
def _gto_lowdin_exact(r_cut: float, n_max: int, l: int) -> tuple[np.ndarray, np.ndarray, float]:
    import mpmath

    alphas = gto_alphas(r_cut, n_max, l)[l]
    half = mpmath.mpf(l) + mpmath.mpf(3) / 2

    def entry(i: int, j: int):
        return mpmath.gamma(half) / 2 * (mpmath.mpf(alphas[i]) + mpmath.mpf(alphas[j])) ** (-half)

    diag = np.log10(0.5) + math.lgamma(l + 1.5) / math.log(10) - (l + 1.5) * np.log10(2 * alphas)
    beta = _lowdin_mp(entry, n_max, 2 * float(diag.max() - diag.min()))
    norms = _gto_norms(alphas, l)
    # Unit-diagonal overlap in closed form: (2 sqrt(a_i a_j) / (a_i + a_j))^(l + 3/2).
    geo = np.sqrt(alphas[:, None] * alphas[None, :])

    def scaled_entry(i: int, j: int):
        ai, aj = mpmath.mpf(alphas[i]), mpmath.mpf(alphas[j])
        return (2 * mpmath.sqrt(ai * aj) / (ai + aj)) ** half

    cond = _scaled_condition((2 * geo / (alphas[:, None] + alphas[None, :])) ** (l + 1.5), scaled_entry)
    return beta, norms, cond


def _gto_norms(alphas: np.ndarray, l: int) -> np.ndarray:
    """``r^2``-weighted L2 norms of the primitives ``r^l exp(-alpha r^2)``."""
    return np.exp(0.5 * (math.lgamma(l + 1.5) - math.log(2.0) - (l + 1.5) * np.log(2 * alphas)))


def _dscribe_sqrtm_inv(
    S: np.ndarray,
    what: str = "the radial basis",
    fix: str = "Lower 'n_max', increase 'r_cut' or use compat=False.",
) -> np.ndarray:
    """DScribe's ``sqrtm(inv(S))`` in float64 (its ill-conditioning warnings silenced).

    Raises ``ValueError`` (mentioning ``what`` and the remedy ``fix``) when the square root is
    genuinely complex, where DScribe fails too.
    """
    from scipy.linalg import inv, sqrtm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        beta = sqrtm(inv(S))
    if np.iscomplexobj(beta):
        if np.abs(beta.imag).max() > 0:
            raise ValueError(
                f"compat=True: could not calculate normalization factors for {what} in the domain of "
                f"real numbers (DScribe fails here too). {fix}"
            )
        beta = beta.real
    return np.asarray(beta, dtype=np.float64)


def gto_orthonormalizer(r_cut: float, n_max: int, l_max: int, *, compat: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormalisation of the GTO primitives.

    Returns:
        alphas: ``(l_max + 1, n_max)`` exponents, 1/Å^2.
        M: ``(l_max + 1, n_max, n_max)`` such that ``g_{nl} = sum_k M[l, n, k] * phi_{kl} / ||phi_{kl}||``
            (``||phi||`` is the ``r^2``-weighted L2 norm of the primitive).
    """
    alphas = gto_alphas(r_cut, n_max, l_max)
    M = np.empty((l_max + 1, n_max, n_max))
    worst = 1.0
    for l in range(l_max + 1):
        norms = _gto_norms(alphas[l], l)
        if compat:
            beta = _dscribe_sqrtm_inv(gto_overlap(alphas[l], l))
        else:
            beta, norms, cond = _gto_lowdin_exact(float(r_cut), int(n_max), l)
            worst = max(worst, cond)
        M[l] = beta * norms[None, :]
    if not compat:
        _warn_if_dependent(worst, "GTO")
    return alphas, M


def gto_betas(r_cut: float, n_max: int, l_max: int, *, compat: bool = False) -> np.ndarray:
    """DScribe's ``betas[l, n, k]`` (``g_{nl} = sum_k beta[l, n, k] r^l exp(-alpha_{kl} r^2)``)."""
    alphas, M = gto_orthonormalizer(r_cut, n_max, l_max, compat=compat)
    out = np.empty_like(M)
    for l in range(l_max + 1):
        out[l] = M[l] / _gto_norms(alphas[l], l)[None, :]
    return out


@functools.lru_cache(maxsize=64)
def _poly_lowdin_exact(r_cut: float, n_max: int) -> tuple[np.ndarray, float]:
    import mpmath

    rc = mpmath.mpf(r_cut)

    def entry(i: int, j: int):
        s = i + j + 2
        return 2 * rc ** (7 + s) / ((5 + s) * (6 + s) * (7 + s))

    digits = 2 * (n_max - 1) * abs(math.log10(r_cut)) + 2 * n_max
    beta = _lowdin_mp(entry, n_max, digits)
    S = polynomial_overlap(1.0, n_max)  # the unit-diagonal form does not depend on r_cut
    d = 1 / np.sqrt(np.diag(S))

    def scaled_entry(i: int, j: int):
        def raw(a: int, b: int):
            s = a + b + 2
            return mpmath.mpf(2) / ((5 + s) * (6 + s) * (7 + s))

        return raw(i, j) / mpmath.sqrt(raw(i, i) * raw(j, j))

    return beta, _scaled_condition(S * d[:, None] * d[None, :], scaled_entry)


def polynomial_orthonormalizer(r_cut: float, n_max: int, *, compat: bool = False) -> np.ndarray:
    """DScribe's ``betas`` of the polynomial basis, ``(n_max, n_max)``: ``g_n = sum_k beta[n, k] phi_k``."""
    if compat:
        return _dscribe_sqrtm_inv(polynomial_overlap(r_cut, n_max), "the polynomial radial basis",
                                  "Lower 'n_max' or use compat=False.")
    beta, cond = _poly_lowdin_exact(float(r_cut), int(n_max))
    _warn_if_dependent(cond, "polynomial")
    return beta


def gl_grid(r_cut: float) -> tuple[np.ndarray, np.ndarray]:
    """DScribe's radial quadrature: 100 Gauss-Legendre nodes on ``[0, r_cut]`` and the weights on ``[-1, 1]``."""
    x, w = np.polynomial.legendre.leggauss(GL_NODES)
    return r_cut * 0.5 * (x + 1.0), w


def gto_radial_basis(r: np.ndarray, r_cut: float, n_max: int, l_max: int, *, compat: bool = False) -> np.ndarray:
    """The orthonormal GTO radial functions ``g_nl(r)``, shape ``(l_max + 1, n_max, len(r))``.

    Evaluated through the unit-normalised primitives (well conditioned); ``compat=True`` uses
    DScribe's float64 betas instead.
    """
    r = np.asarray(r, dtype=np.float64)
    alphas, M = gto_orthonormalizer(r_cut, n_max, l_max, compat=compat)
    out = np.empty((l_max + 1, n_max, r.shape[0]))
    for l in range(l_max + 1):
        norms = _gto_norms(alphas[l], l)
        with np.errstate(divide="ignore"):
            log_r = np.where(r > 0, np.log(np.where(r > 0, r, 1.0)), -np.inf)
        log_phi = (l * log_r if l else 0.0) - alphas[l][:, None] * r**2 - np.log(norms)[:, None]
        out[l] = M[l] @ np.exp(log_phi)
    return out


def polynomial_radial_basis(r: np.ndarray, r_cut: float, n_max: int, *, compat: bool = False) -> np.ndarray:
    """The orthonormal polynomial radial functions ``g_n(r)`` (zero beyond ``r_cut``), ``(n_max, len(r))``."""
    r = np.asarray(r, dtype=np.float64)
    beta = polynomial_orthonormalizer(r_cut, n_max, compat=compat)
    powers = np.arange(1, n_max + 1)[:, None] + 2
    return beta @ (r_cut - np.clip(r, 0.0, r_cut))[None, :] ** powers
