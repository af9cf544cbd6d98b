"""Vectorised, differentiable SOAP evaluation in torch.

Data layout of one chunk of centres (channel-first: the slot axis is innermost everywhere, so
every elementwise operation is a long vectorised loop): the neighbour pairs fill a padded set
of ``G * K`` slots, ``G = centres * species`` and ``K`` = most neighbours of one species
around one centre in the chunk (centres are sorted by that count, so padding is small).
For a GTO basis, with unit-vector harmonics ``Y`` (:mod:`pointsym.descriptors._harmonics`)::

    E[l, slot, n']     = exp(log K_ln' + l log r - a_ln' r^2)      one (3 x (L+1) n) matrix product + exp
    c'[g, l, m, n']    = sum_k  Y_l[g, m, k] E[l, (g, k), n']       one bmm per l over g
    c[g, l, m, n]      = sum_n' c'[g, l, m, n'] M[l, n, n']         Löwdin orthonormalisation
    P[c, l, a n, b n'] = sum_m c[(c, a), l, m, n] c[(c, b), l, m, n']   one bmm for every l at once

and the features are gathered from ``P`` with a precomputed index map in DScribe's order. No
Python loop runs over centres or neighbours; the loops are over ``l`` (at most 21) and over
memory-bounded chunks (sized to stay cache-resident).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pointsym.descriptors._harmonics import needs_graph, unit_harmonics
from pointsym.descriptors._radial import gl_grid, gto_orthonormalizer, polynomial_orthonormalizer

__all__ = ["Plan", "feature_layout", "POLY_COMPAT_MAX_M"]

# DScribe's polynomial basis uses a table of spherical-harmonic normalisations in which the
# entries below ~1e-9 were stored as 0: for these degrees, orders |m| above the value given
# here are silently dropped. Reproduced with compat=True only.
POLY_COMPAT_MAX_M = {10: 9, 11: 9, 12: 8, 13: 8, 14: 8, **{l: 7 for l in range(15, 21)}}


def feature_layout(mode: str, n_species: int, n_max: int, l_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Index map from the batched product blocks to DScribe's feature order.

    The power spectrum is computed for every ``l`` at once as a block per centre (see
    :meth:`Plan.power_spectrum`); this returns, for every feature in DScribe's order, its flat
    index inside that centre's blocks and its ``l``. Block shapes per centre: ``"off"``:
    ``(L + 1, S n, S n)``; ``"crossover"``: ``(S, L + 1, n, n)``; ``"mu2"``: ``(L + 1, n, n)``;
    ``"mu1nu1"``: ``(L + 1, S n, n)``.
    """
    S, N, L1 = n_species, n_max, l_max + 1
    tri = [(n, k) for n in range(N) for k in range(n, N)]
    full = [(n, k) for n in range(N) for k in range(N)]
    src: list[int] = []
    ls: list[int] = []
    if mode == "off":
        W = S * N
        for a in range(S):
            for b in range(a, S):
                for l in range(L1):
                    for n, k in tri if a == b else full:
                        src.append(l * W * W + (a * N + n) * W + b * N + k)
                        ls.append(l)
    elif mode == "crossover":
        for a in range(S):
            for l in range(L1):
                for n, k in tri:
                    src.append((a * L1 + l) * N * N + n * N + k)
                    ls.append(l)
    elif mode == "mu2":
        for l in range(L1):
            for n, k in tri:
                src.append(l * N * N + n * N + k)
                ls.append(l)
    elif mode == "mu1nu1":
        for a in range(S):
            for l in range(L1):
                for n, k in full:
                    src.append(l * S * N * N + (a * N + n) * N + k)
                    ls.append(l)
    else:  # pragma: no cover - validated by the caller
        raise ValueError(mode)
    return np.asarray(src, dtype=np.int64), np.asarray(ls, dtype=np.int64)


_EXP_FLOOR = {torch.float64: -600.0, torch.float32: -60.0}


@dataclass
class _Chunk:
    """Padded pair data of one chunk of centres, channel-first (slot axis innermost).

    Slot ``(g, k)`` (``g = centre * S + species``, ``k < K``) is column ``g * K + k``;
    padding columns have weight 0.
    """

    G: int
    K: int
    vec: torch.Tensor  # (3, G * K) neighbour minus centre, Å
    r2: torch.Tensor  # (G * K,)
    weight: torch.Tensor | None  # (G * K,); None: all ones (padding then has r2 = inf)
    pad_slots: torch.Tensor | None = None  # indices of the padding slots (when weight is None)


class Plan:
    """Constants of one SOAP configuration, materialised for a dtype and device."""

    def __init__(
        self,
        *,
        rbf: str,
        r_cut: float,
        n_max: int,
        l_max: int,
        sigma: float,
        n_species: int,
        weighting: dict[str, Any],
        species_weights: np.ndarray,
        compression: str,
        compat: bool,
    ) -> None:
        self.rbf = rbf
        self.r_cut = float(r_cut)
        self.n_max = int(n_max)
        self.l_max = int(l_max)
        self.sigma = float(sigma)
        self.eta = 1.0 / (2.0 * sigma**2)
        self.pad = sigma * math.sqrt(-2.0 * math.log(1e-3))
        self.cutoff = self.r_cut + self.pad
        self.n_species = int(n_species)
        self.weighting = dict(weighting)
        self.species_weights = np.asarray(species_weights, dtype=np.float64)
        self.compression = compression
        self.compat = bool(compat)
        self._src, feature_l = feature_layout(compression, n_species, n_max, l_max)
        self.n_features = int(self._src.shape[0])
        self._prefactor = math.pi * np.sqrt(8.0 / (2 * feature_l + 1))
        self._host: dict[str, np.ndarray] = {}
        if rbf == "gto":
            alphas, M = gto_orthonormalizer(self.r_cut, self.n_max, self.l_max, compat=self.compat)
            ls = np.arange(self.l_max + 1)[:, None]
            ratio = alphas / self.eta
            norms = np.exp(
                0.5 * (np.vectorize(math.lgamma)(ls + 1.5) - math.log(2.0) - (ls + 1.5) * np.log(2 * alphas))
            )
            # exp(log_c + l log r - a r^2) = K_ln r^l exp(-a_ln r^2) / ||phi_ln||   (see module docs)
            log_c = (
                1.5 * math.log(math.pi)
                - 1.5 * math.log(self.eta)
                - (ls + 1.5) * np.log1p(ratio)
                - np.log(norms)
            )
            a_eff = alphas / (1.0 + ratio)
            # arg[l, p, n] = log_c[l, n] - a[l, n] r_p^2 + l log r_p  ==  [1, r^2, log r] @ radial_w[l]
            l_power = np.broadcast_to(ls, log_c.shape).astype(np.float64).copy()
            if self.l_max >= 1:
                l_power[1] = 0.0  # r^1 is inside the solid l = 1 harmonics
            self._host["radial_w"] = np.stack([log_c, -a_eff, l_power], axis=1)
            self._host["Mt"] = np.ascontiguousarray(np.transpose(M, (0, 2, 1)))
        else:
            beta = polynomial_orthonormalizer(self.r_cut, self.n_max, compat=self.compat)
            rw, ws = gl_grid(self.r_cut)
            powers = np.arange(1, self.n_max + 1)[:, None] + 2
            g = beta @ (self.r_cut - np.clip(rw, 0.0, self.r_cut))[None, :] ** powers  # (n, 100)
            # c_nlm = 4 pi (r_cut / 2) sum_w ws rw^2 g_n(rw) sum_i w_i F_l(rw, r_i) Y_lm(r_hat_i)
            G = (4.0 * math.pi * 0.5 * self.r_cut) * (ws * rw**2)[None, :] * g  # (n, 100)
            self._host["Gt"] = np.ascontiguousarray(G.T)
            self._host["rw"] = rw
            self._host["centre"] = G @ np.exp(-self.eta * rw**2)  # (n,), atom on the centre
        if rbf == "polynomial" and self.compat:
            mask = np.zeros((self.l_max + 1, 2 * self.l_max + 2))
            for l in range(self.l_max + 1):
                mmax = POLY_COMPAT_MAX_M.get(l, l)
                mask[l, : mmax + 1] = 1.0  # packed rows: cos parts m = 0..l, then sin parts
                mask[l, l + 1 : l + 2 + mmax] = 1.0
            self._ymask = mask
        else:
            self._ymask = None
        self._cache: dict[tuple[Any, Any], dict[str, torch.Tensor]] = {}
        self._host_fast: dict[str, Any] = {}

    def fast_table(self) -> tuple[np.ndarray, float]:
        """Quintic Hermite table of the orthonormalised GTO radial functions (built once, float64)."""
        if "fast_table" not in self._host_fast:
            from pointsym.descriptors._fast import radial_table

            w = self._host["radial_w"]
            M = np.transpose(self._host["Mt"], (0, 2, 1))
            self._host_fast["fast_table"] = radial_table(w[:, 0], -w[:, 1], M, self.cutoff)
        return self._host_fast["fast_table"]

    def fast_features(self, n_pad: int) -> tuple[np.ndarray, np.ndarray] | None:
        """``(src, prefactor)`` of the compiled power spectrum for rows of ``n_pad`` lanes per
        species (uncompressed layout only, else None)."""
        if self.compression != "off":
            return None
        key = f"features_{n_pad}"
        if key not in self._host_fast:
            from pointsym.descriptors._fast import padded_layout

            self._host_fast[key] = padded_layout(self._src, self._prefactor, self.n_species, self.n_max, n_pad)
        return self._host_fast[key]

    def __getstate__(self) -> dict[str, Any]:
        # The per-(dtype, device) tensor cache is rebuilt on demand: dropping it keeps pickles
        # (Dask / multiprocessing workers) small and free of GPU tensors.
        state = self.__dict__.copy()
        state["_cache"] = {}
        state["_host_fast"] = {}
        return state

    # ------------------------------------------------------------------ constants
    def constants(self, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
        key = (dtype, device)
        if key not in self._cache:
            consts: dict[str, Any] = {k: torch.as_tensor(v, dtype=dtype, device=device) for k, v in self._host.items()}
            consts["prefactor"] = torch.as_tensor(self._prefactor, dtype=dtype, device=device)
            consts["src"] = torch.as_tensor(self._src, device=device)
            if self._ymask is not None:
                consts["ymask"] = torch.as_tensor(self._ymask, dtype=dtype, device=device)[..., None]
            self._cache[key] = consts
        return self._cache[key]

    # ------------------------------------------------------------------ weights
    def pair_weights(self, r2: torch.Tensor, species_weight: torch.Tensor | None) -> torch.Tensor:
        """Density amplitude of each neighbour: weighting function, ``w0`` on the centre, species weight."""
        w = self.weighting
        func = w.get("function")
        zero = r2 == 0
        if func is None:
            out = torch.ones_like(r2)
        else:
            # sqrt with a safe argument: r = 0 is either w0 or a finite w(0) with zero slope here.
            r = torch.sqrt(torch.where(zero, torch.ones_like(r2), r2))
            r = torch.where(zero, torch.zeros_like(r), r)
            if func == "poly":
                x = r / w["r0"]
                base = (1.0 + 2.0 * x**3 - 3.0 * x**2).clamp(min=0.0)
                out = w["c"] * torch.where(r > w["r0"], torch.zeros_like(r), base ** w["m"])
            elif func == "pow":
                out = w["c"] / (w["d"] + (r / w["r0"]) ** w["m"])
            else:  # "exp"
                out = w["c"] / (w["d"] + torch.exp(-r / w["r0"]))
        if "w0" in w:
            out = torch.where(zero, torch.full_like(out, w["w0"]), out)
        if species_weight is not None:
            out = out * species_weight
        return out

    # ------------------------------------------------------------------ expansion
    def coefficients(self, chunk: _Chunk, consts: dict[str, torch.Tensor]) -> torch.Tensor:
        """Expansion coefficients ``(G, l_max + 1, 2 l_max + 2, n_max)``, ``G = centres * species``.

        Dimension 2 follows the packed harmonic layout of each ``l`` (cosine then sine parts of
        the orders ``m = 0..l``, zero-padded); sums over it equal sums over the real harmonics
        ``m = -l..l``.
        """
        G, K, L, N = chunk.G, chunk.K, self.l_max, self.n_max
        v = chunk.vec.view(3, G, K)
        # GTO: r^l is carried by the radial factor, except for l = 1 where the solid harmonic
        # keeps the derivative exact at r = 0 (an atom on a Cartesian centre).
        Y, r, log_r = unit_harmonics(v[0], v[1], v[2], L, solid_l1=self.rbf == "gto")
        if self.rbf == "gto":
            # log of K_ln r^l exp(-a_ln r^2) / ||phi_ln|| for all (l, n) as one small matrix product:
            # [1, r^2, log r] @ W  ->  (L + 1, G * K, n)
            feats = torch.stack([torch.ones_like(chunk.r2), chunk.r2, log_r.reshape(-1)], -1)
            arg = torch.matmul(feats.unsqueeze(0), consts["radial_w"])
            # exp() of arguments below about -708 (denormal or zero results) is ~50x slower on x86;
            # values below the floor contribute < 1e-260 (float64) / 1e-26 (float32).
            floor = _EXP_FLOOR[arg.dtype]
            if needs_graph(arg):
                E = torch.exp(arg.clamp(min=floor))
            else:
                E = arg.clamp_(min=floor).exp_()
                if chunk.pad_slots is not None:
                    # exp() is floored at e^-600: zero the padding slots so they add exactly nothing.
                    E.index_fill_(1, chunk.pad_slots, 0.0)
            if chunk.weight is not None:
                E = E * chunk.weight[:, None]
            radial = [E[l].view(G, K, N) for l in range(L + 1)]
        else:
            radial = self._poly_radial(chunk, r.reshape(-1), consts)
        M = 2 * L + 2
        grad = needs_graph(chunk.vec)
        if grad:
            parts = [
                torch.nn.functional.pad(torch.bmm(Yl, radial[l]), (0, 0, 0, M - Yl.shape[1])) for l, Yl in enumerate(Y)
            ]
            X = torch.stack(parts, 1)  # (G, L + 1, 2 L + 2, n)
        else:
            X = torch.zeros(G, L + 1, M, N, dtype=chunk.vec.dtype, device=chunk.vec.device)
            for l, Yl in enumerate(Y):
                X[:, l, : 2 * l + 2] = torch.bmm(Yl, radial[l])
        if "ymask" in consts:
            X = X * consts["ymask"]
        if "Mt" in consts:
            X = torch.matmul(X, consts["Mt"])
        return X

    def _poly_radial(self, chunk: _Chunk, r: torch.Tensor, consts: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Polynomial-basis radial integrals ``(G, K, n)`` per ``l`` (weights applied)."""
        G, K = chunk.G, chunk.K
        centre = chunk.r2 <= 1e-12 if self.compat else r == 0
        F = self._bessel_terms(torch.where(centre, torch.ones_like(r), r), consts["rw"])  # per l: (P, 100)
        radial = []
        for l in range(self.l_max + 1):
            R = torch.matmul(F[l], consts["Gt"])  # (P, n)
            fill = consts["centre"].expand_as(R) if l == 0 else torch.zeros_like(R)
            R = torch.where(centre[:, None], fill, R)
            if chunk.weight is not None:
                R = R * chunk.weight[:, None]
            radial.append(R.view(G, K, -1))
        return radial

    def _bessel_terms(self, r: torch.Tensor, rw: torch.Tensor) -> list[torch.Tensor]:
        """``F_l(rw, r) = exp(-eta (rw^2 + r^2)) i_l(2 eta rw r)``: per ``l`` a ``(P, 100)`` tensor."""
        eta, L = self.eta, self.l_max
        ri = r[:, None]
        rw = rw[None, :]
        if self.compat:
            # DScribe's evaluation: upward recursion, exponentials dropped beyond 5 Å, negative
            # values clipped to zero for l >= 2.
            diff = rw - ri
            total = rw + ri
            minus = torch.where(diff > 5.0, torch.zeros_like(diff), torch.exp(-eta * diff * diff))
            plus = torch.where(total > 5.0, torch.zeros_like(total), torch.exp(-eta * total * total))
            o = (0.25 / eta) / ri / rw
            F = [o * (minus - plus)]
            if L > 0:
                F.append(o * (minus + plus - 2.0 * F[0]))
            for l in range(2, L + 1):
                F.append((F[l - 2] - o * (4 * l - 2) * F[l - 1]).clamp(min=0.0))
            return F
        x = 2.0 * eta * rw * ri
        gauss = torch.exp(-eta * (rw - ri) ** 2)
        k0 = -torch.expm1(-2.0 * x) / (2.0 * x)
        # Scaled modified spherical Bessel functions k_l = exp(-x) i_l(x): upward recursion is
        # accurate for x well above l; below, a downward continued fraction for k_l / k_{l-1}.
        k = [k0]
        if L > 0:
            x_switch = 1.5 * L + 10.0
            small = x < x_switch
            # Each branch only sees arguments it is accurate for, so no inf/NaN reaches autograd.
            xu = torch.where(small, torch.full_like(x, x_switch), x)
            prev2 = (1.0 + torch.exp(-2.0 * xu)) / (2.0 * xu)
            prev = -torch.expm1(-2.0 * xu) / (2.0 * xu)
            for l in range(1, L + 1):
                cur = prev2 - (2 * l - 1) / xu * prev
                k.append(cur)
                prev2, prev = prev, cur
            if bool(small.any()):
                # Downward continued fraction for rho_l = k_l / k_{l-1}, only where x is small.
                xs = x[small]
                rho = torch.zeros_like(xs)
                ratios: list[torch.Tensor] = [None] * (L + 1)  # type: ignore[list-item]
                for l in range(L + int(x_switch) + 15, 0, -1):
                    rho = 1.0 / ((2 * l + 1) / xs + rho)
                    if l <= L:
                        ratios[l] = rho
                kd = k0[small]
                for l in range(1, L + 1):
                    kd = kd * ratios[l]
                    merged = k[l].clone()
                    merged[small] = kd
                    k[l] = merged
        return [gauss * kl for kl in k]

    # ------------------------------------------------------------------ power spectrum
    def power_spectrum(self, coeffs: torch.Tensor, n_centres: int, consts: dict[str, torch.Tensor]) -> torch.Tensor:
        """Features ``(n_centres, n_features)`` from coefficients ``(n_centres * S, L + 1, M, n)``."""
        S, N, C = self.n_species, self.n_max, n_centres
        L1, M = coeffs.shape[1], coeffs.shape[2]
        X = coeffs.view(C, S, L1, M, N)
        if self.compression == "off":
            A = X.permute(0, 2, 3, 1, 4).reshape(C * L1, M, S * N)
            P = torch.bmm(A.transpose(1, 2), A)  # (C (L + 1), S n, S n)
        elif self.compression == "crossover":
            A = X.reshape(C * S * L1, M, N)
            P = torch.bmm(A.transpose(1, 2), A)  # (C S (L + 1), n, n)
        elif self.compression == "mu2":
            A = X.sum(1).reshape(C * L1, M, N)
            P = torch.bmm(A.transpose(1, 2), A)  # (C (L + 1), n, n)
        else:  # mu1nu1
            A = X.permute(0, 2, 3, 1, 4).reshape(C * L1, M, S * N)
            T = X.sum(1).reshape(C * L1, M, N)
            P = torch.bmm(A.transpose(1, 2), T)  # (C (L + 1), S n, n)
        return P.reshape(C, -1)[:, consts["src"]] * consts["prefactor"]
