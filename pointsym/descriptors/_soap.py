"""The SOAP power spectrum with DScribe 2.1 semantics, vectorised and differentiable in torch."""

from __future__ import annotations

import contextlib
import math
import os
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from pointsym.core import (
    atomic_number,
    check_choice,
    check_int,
    check_positive,
    parse_species,
    renamed_kwargs,
    resolve_device,
    to_numpy,
)
from pointsym.descriptors import _fast
from pointsym.descriptors._engine import Plan, _Chunk
from pointsym.descriptors._harmonics import differentiable_mode, needs_graph
from pointsym.descriptors._systems import Batch, System, _within_cutoff, as_system, build_batch, is_single_system

__all__ = ["SOAP"]

_WEIGHTING_KEYS = {"function", "r0", "c", "d", "m", "threshold", "w0"}
_COMPRESSION_MODES = ("off", "crossover", "mu2", "mu1nu1")
# Working-set budget of one chunk (padded slots x per-slot channels) and the slot cap; chosen so
# that a chunk's intermediates stay cache-resident while amortising per-operation overhead.
_CHUNK_ELEMENTS = 2_000_000
_MAX_SLOTS = 8192
# Centres per group of systems handled in one pass (bounds the memory of the pair bookkeeping).
_MAX_GROUP_CENTRES = 4096
# The compiled path (:mod:`pointsym.descriptors._fast`) keeps no per-slot intermediates, so its
# memory is the pair list of a group: smaller groups keep the peak near DScribe's.
_MAX_GROUP_CENTRES_FAST = 512
# Coefficients per chunk of the compiled path (2 MB in float64: the chunk's power spectrum stays in cache).
_FAST_CHUNK_VALUES = 1 << 18


@contextlib.contextmanager
def _threads(n_jobs: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (DScribe's ``n_jobs`` semantics for negatives)."""
    if n_jobs is None:
        yield
        return
    n = check_int("n_jobs", n_jobs)
    if n < 0:
        n = (os.cpu_count() or 1) + n
    if n <= 0:
        raise ValueError(f"Expected 'n_jobs' >= 1 or a negative count from the number of CPUs (got {n_jobs}).")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _stack(parts: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack(parts)``, as a view when the parts already lie back to back in one storage.

    The per-system results of one evaluation are consecutive row blocks of a single output
    tensor; viewing them as one saves copying the whole result (~5 % of ``create`` on small
    periodic cells). Parts that carry gradients are stacked as usual.
    """
    first = parts[0]
    ptr, n = first.untyped_storage().data_ptr(), first.numel()
    for i, p in enumerate(parts):
        if (p.requires_grad or p.shape != first.shape or p.dtype != first.dtype or not p.is_contiguous()
                or p.untyped_storage().data_ptr() != ptr or p.storage_offset() != first.storage_offset() + i * n):
            return torch.stack(parts)
    return first.as_strided((len(parts), *first.shape), (n, *first.stride()))


class SOAP:
    r"""Smooth Overlap of Atomic Positions: partial power spectrum, DScribe 2.1 compatible.

    The density around a centre is a sum of unnormalised Gaussians
    ``rho^Z(r) = sum_{i in Z} w_i exp(-|r - r_i|^2 / (2 sigma^2))`` over atoms closer than
    ``r_cut + 3.717 sigma`` (the centre's own atom included, weight ``w0``), expanded in real
    spherical harmonics and an orthonormal radial basis; the features are

    .. math:: p^{Z Z'}_{n n' l} = \pi \sqrt{8 / (2l + 1)} \sum_m c^Z_{nlm} c^{Z'}_{n'lm}

    in DScribe's order (species pairs ``a <= b`` sorted by atomic number, then ``l``, ``n``,
    ``n'``, with ``n' >= n`` inside a same-species block). See ``../shared/specs/soap.md``.

    Args:
        species: every element that can appear (symbols or atomic numbers); sorted by atomic
            number internally, which fixes the output layout.
        r_cut: cutoff in Å (> 1 for ``"gto"``); may be omitted when a ``weighting`` function
            is given (inferred as in DScribe).
        n_max: number of radial functions (>= 1).
        l_max: largest spherical-harmonics degree (0..20).
        sigma: Gaussian width in Å (> 0).
        rbf: ``"gto"`` (l-dependent Gaussian-type orbitals, analytic) or ``"polynomial"``
            (Bartók's polynomials, 100-point Gauss-Legendre quadrature).
        weighting: ``{"function": "poly"|"pow"|"exp", "r0", "c", "d", "m", "threshold", "w0"}``
            as in DScribe (never modified).
        average: ``"off"`` (one row per centre), ``"inner"`` (average the coefficients over a
            system's centres, then the power spectrum) or ``"outer"`` (average the spectra).
        compression: ``{"mode": "off"|"crossover"|"mu2"|"mu1nu1", "species_weighting": None |
            {species: weight}}`` (``None`` means mode ``"off"``; never modified).
        periodic: honour the systems' cells and pbc flags (periodic images).
        sparse: return ``sparse.COO`` arrays from :meth:`create` (needs the ``sparse`` package).
        dtype: ``"float64"`` (default) or ``"float32"``. :meth:`create` always computes in
            float64 and casts (as DScribe); :meth:`create_tensor` / :meth:`compute` compute in
            ``dtype`` (the radial factors are evaluated in log space, so float32 cannot overflow).
        device: torch device of the computation (``"cpu"``, ``"cuda"``, ...).
        compat: ``False`` (default) evaluates the definitions accurately; ``True`` reproduces
            DScribe's numerics bit-for-bit where they are approximate: its float64
            ``sqrtm(inv(S))`` orthonormalisation (inaccurate for ``n_max >= 10``), and for the
            polynomial basis its upward Bessel recursion with clipping, the exponentials it drops
            beyond 5 Å and the harmonics ``|m|`` it drops for ``l >= 10``.

    Differences from DScribe, all deliberate: the GTO orthonormalisation is exact (DScribe's
    float64 ``sqrtm`` loses orthonormality for ``n_max >= 10``; ``compat`` restores it);
    Cartesian centres are periodic-consistent anywhere in space (DScribe replicates the cell
    only around the atoms, so far-away centres miss neighbours there); bad input raises
    ``ValueError``/``TypeError`` instead of returning NaN/inf; radial factors below
    ``exp(-600)`` are floored (an absolute change below 1e-260).

    Shapes (:meth:`create`, as DScribe): one system -> ``(n_centers, n_features)`` (``(n_features,)``
    when averaged); several systems -> ``(n_systems, n_centers, n_features)`` when every
    system has the same number of centres, else a list of 2-D arrays (averaged:
    ``(n_systems, n_features)``). A one-element list is treated as a single system.

    Example:
        >>> from ase.build import molecule
        >>> soap = SOAP(species=["H", "O"], r_cut=4.0, n_max=4, l_max=3, sigma=0.5)
        >>> soap.create(molecule("H2O")).shape
        (3, 144)
    """

    def __init__(
        self,
        species: Any = None,
        r_cut: float | None = None,
        n_max: int | None = None,
        l_max: int | None = None,
        sigma: float = 1.0,
        rbf: str = "gto",
        weighting: dict[str, Any] | None = None,
        average: str = "off",
        compression: dict[str, Any] | None = None,
        periodic: bool = False,
        sparse: bool = False,
        dtype: str = "float64",
        device: Any = "cpu",
        compat: bool = False,
    ) -> None:
        # Species --------------------------------------------------------------------------
        if species is None:
            raise ValueError("'species' is required: list every element that can appear, e.g. species=['H', 'O'].")
        if isinstance(species, (str, int, np.integer)):
            species = [species]
        numbers = parse_species(species, "species")
        self._species = species
        self._atomic_numbers = np.asarray(numbers, dtype=np.int64)
        self._species_index = {z: i for i, z in enumerate(numbers)}

        # Scalars --------------------------------------------------------------------------
        self._sigma = check_positive("sigma", sigma)
        check_choice("rbf", rbf, ("gto", "polynomial"))
        self._rbf = rbf
        if n_max is None:
            raise ValueError("'n_max' is required (number of radial basis functions, >= 1).")
        self._n_max = check_int("n_max", n_max, minimum=1)
        if l_max is None:
            raise ValueError("'l_max' is required (largest spherical-harmonics degree, 0..20).")
        self._l_max = check_int("l_max", l_max, minimum=0, maximum=20)
        check_choice("average", average, ("off", "inner", "outer"))
        self.average = average
        if not isinstance(periodic, (bool, np.bool_)):
            raise TypeError(f"Expected 'periodic' to be a bool (got {periodic!r}).")
        if not isinstance(sparse, (bool, np.bool_)):
            raise TypeError(f"Expected 'sparse' to be a bool (got {sparse!r}).")
        if not isinstance(compat, (bool, np.bool_)):
            raise TypeError(f"Expected 'compat' to be a bool (got {compat!r}).")
        self.periodic = bool(periodic)
        self.sparse = bool(sparse)
        self.compat = bool(compat)
        check_choice("dtype", dtype, ("float32", "float64"))
        self.dtype = dtype
        self.device = resolve_device(device)

        self._weighting = self._check_weighting(weighting)
        if r_cut is None:
            if "function" not in self._weighting:
                raise ValueError("Either 'r_cut' or a weighting function (weighting={'function': ...}) must be given.")
            r_cut = self._infer_r_cut(self._weighting)
        self._r_cut = check_positive("r_cut", r_cut)
        if rbf == "gto" and self._r_cut <= 1.0:
            raise ValueError(
                f"Expected 'r_cut' > 1 Å with rbf='gto' (got {self._r_cut}); the GTO decay radii start at 1 Å."
            )
        self._compression, species_weights = self._check_compression(compression)
        self._plan = Plan(
            rbf=rbf,
            r_cut=self._r_cut,
            n_max=self._n_max,
            l_max=self._l_max,
            sigma=self._sigma,
            n_species=len(numbers),
            weighting=self._weighting,
            species_weights=species_weights,
            compression=self._compression["mode"],
            compat=self.compat,
        )
        self._species_weights = species_weights
        self._use_species_weights = not np.all(species_weights == 1.0)

    # ------------------------------------------------------------------ validation helpers
    @staticmethod
    def _check_weighting(weighting: Any) -> dict[str, Any]:
        if weighting is None:
            return {}
        if not isinstance(weighting, dict):
            raise TypeError(f"Expected 'weighting' to be a dict or None (got {type(weighting).__name__}).")
        unknown = set(weighting) - _WEIGHTING_KEYS
        if unknown:
            raise ValueError(f"Unknown key(s) {sorted(unknown)} in 'weighting'; valid keys: {sorted(_WEIGHTING_KEYS)}.")
        out: dict[str, Any] = {}
        if weighting.get("w0") is not None:
            out["w0"] = check_positive("weighting['w0']", weighting["w0"], allow_zero=True)
        func = weighting.get("function")
        if func is None:
            return out
        check_choice("weighting['function']", func, ("poly", "pow", "exp"))
        out["function"] = func
        needed = {"poly": ("r0", "c", "m"), "pow": ("r0", "c", "d", "m"), "exp": ("r0", "c", "d")}[func]
        for key in needed:
            if weighting.get(key) is None:
                raise ValueError(f"weighting function {func!r} needs weighting[{key!r}] (see the SOAP docstring).")
        out["r0"] = check_positive("weighting['r0']", weighting["r0"])
        for key in needed[1:]:
            out[key] = check_positive(f"weighting[{key!r}]", weighting[key], allow_zero=True)
        if func in ("pow", "exp"):
            out["threshold"] = check_positive("weighting['threshold']", weighting.get("threshold", 1e-2))
        return out

    @staticmethod
    def _infer_r_cut(w: dict[str, Any]) -> float:
        if w["function"] == "poly":
            return w["r0"]
        if w["function"] == "pow":
            base = w["c"] / w["threshold"] - w["d"]
            if base <= 0 or w["m"] == 0:
                raise ValueError(
                    "Cannot infer 'r_cut' from this 'pow' weighting (it never drops below the threshold); give r_cut."
                )
            return w["r0"] * base ** (1.0 / w["m"])
        arg = w["c"] / w["threshold"] - w["d"]
        if arg <= 1:
            raise ValueError("Cannot infer 'r_cut' from this 'exp' weighting; give r_cut.")
        return w["r0"] * math.log(arg)

    def _check_compression(self, compression: Any) -> tuple[dict[str, Any], np.ndarray]:
        if compression is None:
            compression = {"mode": "off", "species_weighting": None}
        if not isinstance(compression, dict):
            raise TypeError(f"Expected 'compression' to be a dict or None (got {type(compression).__name__}).")
        unknown = set(compression) - {"mode", "species_weighting"}
        if unknown:
            raise ValueError(
                f"Unknown key(s) {sorted(unknown)} in 'compression'; valid keys: ['mode', 'species_weighting']."
            )
        mode = compression.get("mode", "off")
        check_choice("compression['mode']", mode, _COMPRESSION_MODES)
        sw = compression.get("species_weighting")
        weights = np.ones(len(self._atomic_numbers))
        if sw is not None:
            if not isinstance(sw, dict):
                raise TypeError(f"Expected compression['species_weighting'] to be a dict or None (got {sw!r}).")
            given = {}
            for key, value in sw.items():
                given[atomic_number(key, "compression['species_weighting']")] = float(value)
            missing = [int(z) for z in self._atomic_numbers if int(z) not in given]
            extra = sorted(set(given) - {int(z) for z in self._atomic_numbers})
            if missing or extra:
                raise ValueError(
                    "compression['species_weighting'] must have exactly one entry per species "
                    f"(missing atomic numbers {missing}, unexpected {extra})."
                )
            weights = np.array([given[int(z)] for z in self._atomic_numbers])
            if not np.all(np.isfinite(weights)):
                raise ValueError("compression['species_weighting'] contains a non-finite weight.")
        return {"mode": mode, "species_weighting": None if sw is None else dict(sw)}, weights

    # ------------------------------------------------------------------ public properties
    @property
    def species(self) -> Any:
        """The species as given to the constructor."""
        return self._species

    @property
    def atomic_numbers(self) -> np.ndarray:
        """Sorted atomic numbers (the order of the species blocks)."""
        return self._atomic_numbers.copy()

    @property
    def r_cut(self) -> float:
        return self._r_cut

    @property
    def n_max(self) -> int:
        return self._n_max

    @property
    def l_max(self) -> int:
        return self._l_max

    @property
    def sigma(self) -> float:
        return self._sigma

    @property
    def rbf(self) -> str:
        return self._rbf

    @property
    def weighting(self) -> dict[str, Any]:
        """A copy of the (validated) weighting dict."""
        return dict(self._weighting)

    @property
    def compression(self) -> dict[str, Any]:
        """A copy of the compression settings."""
        return dict(self._compression)

    @property
    def cutoff(self) -> float:
        """Neighbour search radius, Å: ``r_cut`` plus DScribe's Gaussian padding ``sigma sqrt(-2 ln 1e-3)``."""
        return self._plan.cutoff

    def __repr__(self) -> str:
        extra = ""
        if self._weighting:
            extra += f", weighting={self._weighting}"
        if self.compat:
            extra += ", compat=True"
        return (
            f"SOAP(species={self._atomic_numbers.tolist()}, r_cut={self._r_cut:g}, n_max={self._n_max}, "
            f"l_max={self._l_max}, sigma={self._sigma:g}, rbf={self._rbf!r}, average={self.average!r}, "
            f"compression={self._compression['mode']!r}, periodic={self.periodic}, dtype={self.dtype!r}, "
            f"device='{self.device}'{extra}) -> {self.get_number_of_features()} features"
        )

    # ------------------------------------------------------------------ layout
    def get_number_of_features(self) -> int:
        """Length of one feature vector (see the class docstring for the formula per mode)."""
        return self._plan.n_features

    def get_location(self, species: Any) -> slice:
        """Slice of the features of one species pair, e.g. ``("H", "O")`` or ``(1, 8)``.

        Raises:
            ValueError: not a pair, an unknown species, or a cross-species pair under a
                compression mode that has no cross-species block.
        """
        if not isinstance(species, (tuple, list)) or len(species) != 2:
            raise ValueError(f"Expected 'species' to be a pair of symbols or atomic numbers (got {species!r}).")
        idx = []
        for s in species:
            z = atomic_number(s, "species")
            if z not in self._species_index:
                raise ValueError(f"Atomic number {z} was not specified in the species {self._atomic_numbers.tolist()}.")
            idx.append(self._species_index[z])
        i, j = sorted(idx)
        S, N, L1 = len(self._atomic_numbers), self._n_max, self._l_max + 1
        symm, unsymm = N * (N + 1) // 2 * L1, N * N * L1
        mode = self._compression["mode"]
        if mode == "off":
            # Blocks before (i, j) in the loop a <= b: same-species ones are `symm` long.
            before = [(a, b) for a in range(S) for b in range(a, S) if (a, b) < (i, j)]
            start = sum(symm if a == b else unsymm for a, b in before)
            return slice(start, start + (symm if i == j else unsymm))
        if mode == "mu2":
            return slice(0, symm)
        if i != j:
            raise ValueError(f"compression mode {mode!r} has no cross-species block; ask for a same-species pair.")
        size = unsymm if mode == "mu1nu1" else symm
        return slice(i * size, (i + 1) * size)

    # ------------------------------------------------------------------ input handling
    def _default_number(self) -> int | None:
        return int(self._atomic_numbers[0]) if len(self._atomic_numbers) == 1 else None

    def _systems(self, system: Any) -> tuple[list[System], bool]:
        if is_single_system(system):
            items, single = [system], True
        elif isinstance(system, (list, tuple)) or (hasattr(system, "shape") and len(tuple(system.shape)) == 3):
            items, single = list(system), False
            if not items:
                raise ValueError("'system' is an empty list; pass at least one structure.")
        else:
            raise TypeError(
                "Expected 'system' to be an ase.Atoms, a dict/tuple with positions and numbers, an (n, 3) array, "
                f"or a list of those (got {type(system).__name__})."
            )
        default = self._default_number()
        out = []
        for k, item in enumerate(items):
            name = "system" if single else f"system[{k}]"
            out.append(as_system(item, periodic=self.periodic, default_number=default, name=name))
            unknown = sorted(set(out[-1].numbers.tolist()) - set(self._species_index))
            if unknown:
                raise ValueError(
                    f"'{name}' contains atomic numbers {unknown} that are not in this descriptor's species "
                    f"{self._atomic_numbers.tolist()}; add them to 'species'."
                )
        return out, single

    def _centre_lists(self, centers: Any, n_systems: int, single: bool) -> list[Any]:
        if centers is None:
            return [None] * n_systems
        if single:
            return [centers]
        if not isinstance(centers, (list, tuple)) or len(centers) != n_systems:
            raise ValueError(
                f"With {n_systems} systems, 'centers' must be None or a list with one entry per system "
                f"(got {type(centers).__name__} of length {len(centers) if hasattr(centers, '__len__') else '?'})."
            )
        return list(centers)

    # ------------------------------------------------------------------ evaluation
    @staticmethod
    def _check_torch_dtype(dtype: Any) -> torch.dtype | None:
        """``None``, ``torch.float32`` or ``torch.float64`` (strings "float32"/"float64" accepted)."""
        if dtype is None:
            return None
        if isinstance(dtype, str) and dtype in ("float32", "float64"):
            return getattr(torch, dtype)
        if dtype in (torch.float32, torch.float64):
            return dtype
        raise TypeError(f"Expected 'dtype' to be torch.float32 or torch.float64 (got {dtype!r}); SOAP is computed "
                        "in single or double precision only (cast the output for other dtypes).")

    def _compute_dtype(self, requested: torch.dtype | None) -> torch.dtype:
        return requested or (torch.float32 if self.dtype == "float32" else torch.float64)

    def _evaluate(self, systems: list[System], centres: list[Any], dtype: torch.dtype, *,
                  allow_empty: bool = False) -> tuple[torch.Tensor, Batch]:
        """Features of all centres (``(C, F)``) or of all systems when averaged (``(B, F)``)."""
        if self._fast_path(systems):
            return self._evaluate_fast(systems, centres, dtype, allow_empty)
        plan, device = self._plan, self.device
        batch = build_batch(systems, centres, plan.cutoff, allow_empty=allow_empty)
        consts = plan.constants(dtype, device)
        S = len(self._atomic_numbers)
        C, B = batch.centre_system.shape[0], len(systems)

        lookup = np.full(int(self._atomic_numbers.max()) + 1, -1, dtype=np.int64)
        lookup[self._atomic_numbers] = np.arange(S)
        spec = lookup[batch.numbers]

        def as_tensor(x: Any) -> torch.Tensor:
            if isinstance(x, torch.Tensor):
                return x.to(device=device, dtype=dtype)
            return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=dtype, device=device)

        pos = torch.cat([as_tensor(s.positions) for s in systems], dim=0).T.contiguous()  # (3, N), channel-first
        periodic = any(bool(s.pbc.any()) for s in systems)
        cells = torch.stack([as_tensor(s.cell) for s in systems]) if periodic else None
        is_atom = batch.centre_atom >= 0
        cpos = torch.as_tensor(np.ascontiguousarray(batch.centre_point.T), dtype=dtype, device=device)  # (3, C)
        if is_atom.any():
            atom_t = torch.as_tensor(np.where(is_atom, batch.centre_atom, 0), device=device)
            cpos = torch.where(torch.as_tensor(is_atom, device=device), pos.index_select(1, atom_t), cpos)

        layout = _pad_layout(batch.pair_centre, spec[batch.pair_atom], C, S, self._slots_per_chunk())
        porder = layout["pair_order"]
        atom_t = torch.as_tensor(batch.pair_atom[porder], device=device)
        cen_t = torch.as_tensor(batch.pair_centre[porder], device=device)
        sys_t = torch.as_tensor(batch.centre_system, device=device)
        # Every pair vector at once, (3, P) (differentiable in positions and cell).
        vec = pos.index_select(1, atom_t) - cpos.index_select(1, cen_t)
        if cells is not None:
            shift = torch.as_tensor(batch.pair_shift[porder].T, dtype=dtype, device=device)  # (3, P)
            if len(systems) == 1:
                vec = vec + cells[0].T @ shift
            else:
                pair_sys = sys_t.index_select(0, cen_t)
                for i in range(3):
                    vec = vec + cells[:, i, :].T.index_select(1, pair_sys) * shift[i]
        r2 = (vec * vec).sum(0)
        sw_t = torch.as_tensor(self._species_weights, dtype=dtype, device=device) if self._use_species_weights else None
        unit_weights = self._rbf == "gto" and not self._weighting and sw_t is None
        w = None
        if not unit_weights:
            species_w = sw_t[torch.as_tensor(layout["pair_species"], device=device)] if sw_t is not None else None
            w = plan.pair_weights(r2, species_w)
            if not bool(torch.isfinite(w).all()):
                raise ValueError(
                    "The weighting function is infinite for some neighbour (e.g. 'pow' with d=0 at the central "
                    "atom); set weighting['w0'] or a positive 'd'."
                )
        flat_t = torch.as_tensor(layout["flat"], device=device)

        average = self.average
        n_per_sys = torch.as_tensor(np.bincount(batch.centre_system, minlength=B), dtype=dtype, device=device)
        inf_padding = unit_weights and not needs_graph(vec)

        def work(spec: tuple[int, int, int, int, int]) -> tuple[np.ndarray, torch.Tensor]:
            """Coefficients (average="inner") or features of one chunk of centres."""
            c0, c1, p0, p1, K = spec
            G = (c1 - c0) * S
            w_c = None if w is None else w[p0:p1]
            if p1 - p0 == G * K:
                # Dense chunk (every slot used, pairs already in slot order): no padding copy.
                chunk = _Chunk(G, K, vec[:, p0:p1], r2[p0:p1], w_c)
            else:
                chunk = self._padded_chunk(G, K, flat_t[p0:p1], vec[:, p0:p1], r2[p0:p1], w_c, inf_padding)
            coeffs = plan.coefficients(chunk, consts)
            cid = layout["centre_order"][c0:c1]
            return cid, coeffs if average == "inner" else plan.power_spectrum(coeffs, c1 - c0, consts)

        # Chunks run one after the other; torch's intra-op threads parallelise inside each
        # (measured faster than a thread pool over chunks, whose small kernels contend for the GIL).
        results = [work(spec) for spec in layout["chunks"]]

        acc_coeffs: torch.Tensor | None = None
        acc_feats: torch.Tensor | None = None
        rows: list[torch.Tensor] = []
        row_ids: list[np.ndarray] = []
        for cid, value in results:
            csys = sys_t[torch.as_tensor(cid, device=device)]
            if average == "inner":
                gsys = (csys[:, None] * S + torch.arange(S, device=device)[None, :]).reshape(-1)
                if acc_coeffs is None:
                    acc_coeffs = torch.zeros(B * S, *value.shape[1:], dtype=dtype, device=device)
                acc_coeffs = acc_coeffs.index_add(0, gsys, value)
            elif average == "outer":
                if acc_feats is None:
                    acc_feats = torch.zeros(B, value.shape[1], dtype=dtype, device=device)
                acc_feats = acc_feats.index_add(0, csys, value)
            else:
                rows.append(value)
                row_ids.append(cid)
        if average == "inner":
            assert acc_coeffs is not None
            div = n_per_sys.repeat_interleave(S)
            mean = acc_coeffs / div.view(-1, *([1] * (acc_coeffs.dim() - 1)))
            return plan.power_spectrum(mean, B, consts), batch
        if average == "outer":
            assert acc_feats is not None
            return acc_feats / n_per_sys[:, None], batch
        if not rows:
            return torch.zeros(0, plan.n_features, dtype=dtype, device=device), batch
        out = torch.cat(rows, dim=0)
        inverse = np.empty(C, dtype=np.int64)
        inverse[np.concatenate(row_ids)] = np.arange(C)
        return out[torch.as_tensor(inverse, device=device)], batch

    def _fast_path(self, systems: list[System]) -> bool:
        """Whether the compiled forward kernel applies (GTO basis, CPU, no derivative requested)."""
        if not (_fast.HAVE_NUMBA and self._rbf == "gto" and self.device.type == "cpu"):
            return False
        tensors = [x for s in systems for x in (s.positions, s.cell) if isinstance(x, torch.Tensor)]
        return not (tensors and needs_graph(*tensors))

    def _fast_pairs(self, systems: list[System], centres: list[Any], allow_empty: bool) -> dict[str, Any]:
        """Pairs grouped by centre for the compiled kernel: vectors, neighbour species, CSR starts.

        Every-atom centres (the common case) are searched directly (all pairs for compact
        clouds, else the compiled cell list :func:`~pointsym.descriptors._fast.cell_pairs`, or
        vesin for a singular periodic cell) and the centre's own atom is passed separately;
        other centre specifications go through :func:`build_batch`.
        """
        cutoff = self._plan.cutoff
        lookup = np.full(int(self._atomic_numbers.max()) + 1, -1, dtype=np.int64)
        lookup[self._atomic_numbers] = np.arange(len(self._atomic_numbers))
        if any(c is not None for c in centres):
            batch = build_batch(systems, centres, cutoff, allow_empty=allow_empty)
            pc = batch.pair_centre
            order = np.argsort(pc, kind="stable") if pc.shape[0] > 1 and not np.all(pc[1:] >= pc[:-1]) else None
            pa, shifts = (batch.pair_atom, batch.pair_shift) if order is None else (batch.pair_atom[order],
                                                                                    batch.pair_shift[order])
            pc = pc if order is None else pc[order]
            C = batch.centre_system.shape[0]
            start = np.zeros(C + 1, dtype=np.int64)
            np.cumsum(np.bincount(pc, minlength=C), out=start[1:])
            pos = np.concatenate([s.positions_np for s in systems])
            cpos = batch.centre_point.copy()
            is_atom = batch.centre_atom >= 0
            cpos[is_atom] = pos[batch.centre_atom[is_atom]]
            vec = pos[pa]
            vec -= cpos[pc]
            for b, s in enumerate(systems):
                if s.pbc.any():
                    p0, p1 = start[batch.centre_offset[b]], start[batch.centre_offset[b + 1]]
                    vec[p0:p1] += shifts[p0:p1] @ s.cell_np
            return {"vec": vec, "spec": lookup[batch.numbers][pa], "start": start, "self_spec": np.zeros(C, np.int64),
                    "self_w": np.zeros(C), "centre_offset": batch.centre_offset, "centre_system": batch.centre_system}
        import vesin

        vecs, specs, counts, self_spec = [], [], [], []
        centre_offset = np.zeros(len(systems) + 1, dtype=np.int64)
        has_self = np.zeros(len(systems), dtype=bool)
        for b, s in enumerate(systems):
            pos, n = s.positions_np, s.numbers.shape[0]
            sp = lookup[s.numbers]
            if _within_cutoff(s, pos, cutoff):  # all pairs, the centre's own atom at r = 0 included
                vecs.append((pos[None, :, :] - pos[:, None, :]).reshape(-1, 3))
                specs.append(np.tile(sp, n))
                counts.append(np.full(n, n, dtype=np.int64))
            else:
                # The compiled cell list first (2-6x faster than vesin here, see _fast.cell_pairs);
                # vesin where the cell is singular.
                found = _fast.cell_pairs(pos, s.cell_np, s.pbc, float(cutoff))
                if found is not None:
                    cnt, d, j = found
                else:
                    nl = vesin.NeighborList(cutoff=float(cutoff), full_list=True, sorted=True)
                    box = s.cell_np if s.pbc.any() else np.zeros((3, 3))
                    i, j, d = nl.compute(pos, box, s.pbc.tolist(), quantities="ijD")
                    cnt = np.bincount(np.asarray(i, dtype=np.int64), minlength=n)
                vecs.append(np.asarray(d, dtype=np.float64))
                specs.append(sp[np.asarray(j, dtype=np.int64)])
                counts.append(cnt)
                has_self[b] = True
            self_spec.append(sp)
            centre_offset[b + 1] = centre_offset[b] + n
        C = int(centre_offset[-1])
        start = np.zeros(C + 1, dtype=np.int64)
        np.cumsum(np.concatenate(counts), out=start[1:])
        self_w = np.repeat(has_self.astype(np.float64), np.diff(centre_offset))
        return {"vec": np.concatenate(vecs), "spec": np.concatenate(specs), "start": start,
                "self_spec": np.concatenate(self_spec), "self_w": self_w, "centre_offset": centre_offset,
                "centre_system": np.repeat(np.arange(len(systems)), np.diff(centre_offset))}

    def _evaluate_fast(self, systems: list[System], centres: list[Any], dtype: torch.dtype,
                       allow_empty: bool) -> tuple[torch.Tensor, Batch]:
        """:meth:`_evaluate` through the compiled kernel: pairs in centre order, no padding."""
        plan, S = self._plan, len(self._atomic_numbers)
        L, N = self._l_max, self._n_max
        consts = plan.constants(dtype, self.device)
        pairs = self._fast_pairs(systems, centres, allow_empty)
        vec, pair_spec, start = pairs["vec"], pairs["spec"], pairs["start"]
        self_w, self_spec, csys = pairs["self_w"], pairs["self_spec"], pairs["centre_system"]
        C, B = csys.shape[0], len(systems)
        np_dtype = np.float32 if dtype == torch.float32 else np.float64
        if self._weighting or self._use_species_weights:
            r2 = torch.from_numpy(np.einsum("pi,pi->p", vec, vec))
            sw = torch.from_numpy(self._species_weights[pair_spec]) if self._use_species_weights else None
            w = plan.pair_weights(r2, sw).numpy()
            sw0 = torch.from_numpy(self._species_weights[self_spec]) if self._use_species_weights else None
            w_self = plan.pair_weights(torch.zeros(C, dtype=torch.float64), sw0).numpy()
            self_w = np.where(self_w != 0, w_self, 0.0)  # 0 where the own atom is already a pair (all-pairs clouds)
            if not (np.all(np.isfinite(w)) and np.all(np.isfinite(self_w))):
                raise ValueError(
                    "The weighting function is infinite for some neighbour (e.g. 'pow' with d=0 at the central "
                    "atom); set weighting['w0'] or a positive 'd'."
                )
        else:
            w = np.ones(vec.shape[0])
        vec, w = vec.astype(np_dtype, copy=False), w.astype(np_dtype, copy=False)
        table, inv_h = plan.fast_table()
        table = table.astype(np_dtype, copy=False)
        # neighbours per (centre, species), the centre's own atom included
        pair_c = np.repeat(np.arange(C), np.diff(start))
        counts = np.bincount(pair_c * S + pair_spec, minlength=C * S).reshape(C, S)
        counts[np.arange(C), self_spec] += self_w != 0
        average = self.average
        acc = torch.zeros(B * S, L + 1, 2 * L + 2, N, dtype=dtype) if average == "inner" else None
        out = torch.zeros(B, plan.n_features, dtype=dtype) if average == "outer" else torch.empty(
            C, plan.n_features, dtype=dtype)
        sys_t = torch.as_tensor(csys)
        # Chunks of consecutive centres whose coefficients fit _FAST_CHUNK_VALUES (cache-sized power
        # spectra); at least one centre, and enough chunks for the threads.
        n_pad = table.shape[2] // (L + 1)
        per_centre = S * (L + 1) * (2 * L + 2) * n_pad
        size = max(1, min(_FAST_CHUNK_VALUES // per_centre, -(-C // max(1, torch.get_num_threads()))))
        chunks = [(c0, min(C, c0 + size)) for c0 in range(0, C, size)]
        local = threading.local()
        layout = plan.fast_features(n_pad) if average != "inner" else None

        def run(chunk: tuple[int, int]) -> tuple[int, int, torch.Tensor]:
            """Coefficients (average="inner") or features of one chunk of centres."""
            c0, c1 = chunk
            nc = c1 - c0
            reuse = average != "inner"  # "inner" keeps every chunk's coefficients until the sum
            if reuse and getattr(local, "work", None) is None:  # per-thread buffer: no page faults per chunk
                local.work = np.empty(size * per_centre, np_dtype)
            k_max = int(counts[c0:c1].max()) if nc else 1
            X = _fast.coefficients(vec, w, pair_spec, start[c0 : c1 + 1], self_w[c0:c1], self_spec[c0:c1], L, S,
                                   table, inv_h, k_max, local.work if reuse else None)
            if layout is not None:  # compiled power spectrum, straight into the output rows
                dest = out[c0:c1] if average == "off" else torch.empty(nc, plan.n_features, dtype=dtype)
                _fast.power_spectrum(X, layout, dest.numpy())
                return c0, c1, dest
            # (nc, L + 1, M, S, n_pad) -> the torch engine's (nc S, L + 1, M, n)
            Xt = torch.from_numpy(X).permute(0, 3, 1, 2, 4)[..., :N].reshape(nc * S, L + 1, 2 * L + 2, N)
            return c0, c1, Xt if average == "inner" else plan.power_spectrum(Xt, nc, consts)

        # Chunks run concurrently, one Python thread each with single-threaded torch inside: the
        # kernel releases the GIL and a chunk is only a dozen large torch calls.
        results = _fast.map_threaded(run, list(chunks), min(torch.get_num_threads(), len(chunks)))
        for c0, c1, value in results:
            if average == "inner":
                assert acc is not None
                gsys = (sys_t[c0:c1, None] * S + torch.arange(S)[None, :]).reshape(-1)
                acc.index_add_(0, gsys, value)
            elif average == "outer":
                out.index_add_(0, sys_t[c0:c1], value)
            elif layout is None:  # the compiled power spectrum wrote its rows already
                out[c0:c1] = value
        empty = np.zeros(0, dtype=np.int64)
        batch = Batch(systems=systems, atom_offset=empty, numbers=empty, centre_system=csys, centre_atom=empty,
                      centre_point=np.zeros((0, 3)), centre_offset=pairs["centre_offset"], pair_centre=empty,
                      pair_atom=empty, pair_shift=np.zeros((0, 3), dtype=np.int64))
        n_per_sys = torch.as_tensor(np.bincount(csys, minlength=B), dtype=dtype)
        if average == "inner":
            assert acc is not None
            mean = acc / n_per_sys.repeat_interleave(S).view(-1, 1, 1, 1)
            return plan.power_spectrum(mean, B, consts), batch
        if average == "outer":
            return out / n_per_sys[:, None], batch
        return out, batch

    def _evaluate_parts(self, systems: list[System], centres: list[Any], dtype: torch.dtype, *,
                        allow_empty: bool = False) -> list[torch.Tensor]:
        """Per-system results (``(n_centers, F)``, or ``(F,)`` averaged), in groups of systems.

        Systems are evaluated a group at a time (at most :data:`_MAX_GROUP_CENTRES` centres, at
        least one system) so that the pair bookkeeping of huge lists stays bounded in memory.
        """
        counts = []
        for s, c in zip(systems, centres):
            counts.append(s.numbers.shape[0] if c is None else (len(c) if hasattr(c, "__len__") else 1))
        fast = self._fast_path(systems)
        limit = _MAX_GROUP_CENTRES_FAST if fast else _MAX_GROUP_CENTRES
        groups = []
        start = 0
        while start < len(systems):
            stop, total = start, 0
            while stop < len(systems) and (stop == start or total + counts[stop] <= limit):
                total += counts[stop]
                stop += 1
            groups.append((start, stop))
            start = stop

        def run(group: tuple[int, int]) -> list[torch.Tensor]:
            feats, batch = self._evaluate(systems[group[0] : group[1]], centres[group[0] : group[1]], dtype,
                                          allow_empty=allow_empty)
            return self._split(feats, batch)

        # Compiled path with several groups: one group per Python thread, single-threaded torch
        # inside (the neighbour search, the kernel and the large torch calls release the GIL).
        results = _fast.map_threaded(run, groups, torch.get_num_threads() if fast else 1)
        return [p for r in results for p in r]

    @staticmethod
    def _padded_chunk(G: int, K: int, flat: torch.Tensor, vec: torch.Tensor, r2: torch.Tensor,
                      w: torch.Tensor | None, inf_padding: bool) -> _Chunk:
        """Scatter one chunk's pairs into its ``G * K`` padded slots.

        ``inf_padding`` (no weights, no derivatives): padding slots get ``r^2 = inf`` so that
        their radial factors vanish without a weight multiplication. Otherwise padding gets
        weight 0 (infinities would turn derivative products into NaN).
        """
        kw = {"dtype": vec.dtype, "device": vec.device}
        vec_pad = torch.zeros(3, G * K, **kw).index_copy(1, flat, vec)
        if inf_padding:
            r2_pad = torch.full((G * K,), math.inf, **kw).index_copy(0, flat, r2)
            used = torch.zeros(G * K, dtype=torch.bool, device=vec.device).index_fill_(0, flat, True)
            return _Chunk(G, K, vec_pad, r2_pad, None, torch.nonzero(~used).flatten())
        r2_pad = torch.zeros(G * K, **kw).index_copy(0, flat, r2)
        if w is None:
            w_pad = torch.zeros(G * K, **kw).index_fill_(0, flat, 1.0)
        else:
            w_pad = torch.zeros(G * K, **kw).index_copy(0, flat, w)
        return _Chunk(G, K, vec_pad, r2_pad, w_pad)

    def _slots_per_chunk(self) -> int:
        """Padded neighbour slots per chunk: large enough to amortise dispatch, small enough for the cache."""
        per_slot = 6 * (self._l_max + 1) + (self._l_max + 1) * (self._l_max + 2) // 2 + (self._l_max + 1) * self._n_max
        if self._rbf == "polynomial":
            per_slot += 2 * 100 * (self._l_max + 1)
        return int(min(_MAX_SLOTS, max(256, _CHUNK_ELEMENTS // per_slot)))

    def _split(self, feats: torch.Tensor, batch: Batch) -> list[torch.Tensor]:
        if self.average != "off":
            return list(feats.unbind(0))
        off = batch.centre_offset
        return [feats[off[b] : off[b + 1]] for b in range(len(off) - 1)]

    # ------------------------------------------------------------------ public API
    def create(self, system: Any, centers: Any = None, n_jobs: int | None = None, only_physical_cores: bool = False,
               verbose: bool = False) -> Any:
        """SOAP features as numpy arrays (or ``sparse.COO`` with ``sparse=True``), DScribe layout.

        Args:
            system: an ``ase.Atoms`` (or dict ``{"positions", "numbers", "cell", "pbc"}``, tuple
                ``(positions, numbers[, cell[, pbc]])``, or ``(n, 3)`` array for a single-species
                descriptor), or a list of those.
            centers: ``None`` (every atom), or per system a list of atom indices and/or
                Cartesian points (Å); for several systems a list with one entry (or ``None``)
                per system.
            n_jobs: torch threads for this call (``None``: torch's current setting; negative
                values count back from the number of CPUs as in DScribe).
            only_physical_cores, verbose: accepted for DScribe compatibility; ignored.

        Returns:
            See the class docstring for the shape rules. Always computed in float64, then cast
            to ``dtype``.
        """
        del only_physical_cores, verbose
        systems, single = self._systems(system)
        centres = self._centre_lists(centers, len(systems), single)
        with _threads(n_jobs), torch.no_grad():
            tensors = self._evaluate_parts(systems, centres, torch.float64)
        np_dtype = np.float32 if self.dtype == "float32" else np.float64

        def to_numpy(t: torch.Tensor) -> Any:
            return self._format(t.cpu().numpy().astype(np_dtype, copy=False))

        if single or len(tensors) == 1:
            return to_numpy(tensors[0])
        if self.average != "off" or len({tuple(p.shape) for p in tensors}) == 1:
            return to_numpy(_stack(tensors))
        return [to_numpy(p) for p in tensors]

    def _format(self, arr: np.ndarray) -> Any:
        if not self.sparse:
            return arr
        try:
            import sparse
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "sparse=True needs the 'sparse' package: pip install sparse (or pointsym[sparse])."
            ) from exc
        return sparse.COO.from_numpy(arr)

    def create_dask(self, systems: Any, centers: Any = None, *, chunk_size: int = 100, **create_kwargs: Any) -> Any:
        """:meth:`create` over many structures as a lazy ``dask.array.Array``, ``chunk_size`` per task.

        Same values, dtype and layout as ``create(systems, centers)`` -- ``(n_structures,
        n_features)`` averaged, ``(n_structures, n_centers, n_features)`` for equal centre
        counts -- except that different centre counts give one ``(total_centres, n_features)``
        array instead of a list. Needs the ``dask`` extra; see
        :func:`pointsym.descriptors.create_dask` for the details and an example.
        """
        from pointsym.descriptors._dask import create_dask

        return create_dask(self, systems, centers=centers, chunk_size=chunk_size, **create_kwargs)

    def create_tensor(self, system: Any, centers: Any = None, *, dtype: torch.dtype | None = None) -> Any:
        """Like :meth:`create` but returns torch tensors that carry gradients.

        Pass positions (and cells) as torch tensors with ``requires_grad=True`` inside dicts
        or tuples, e.g. ``{"positions": pos, "numbers": z, "cell": cell, "pbc": True}``, and
        the features are differentiable with respect to them. Centres given as atom indices
        move with their atom; Cartesian centres are constants.

        Returns:
            One tensor (single system) or a stacked tensor / list of tensors, with the same
            shape rules as :meth:`create`, in ``dtype`` (default: the descriptor's dtype).
        """
        systems, single = self._systems(system)
        centres = self._centre_lists(centers, len(systems), single)
        dtype = self._check_torch_dtype(dtype)
        out_dtype = dtype or (torch.float32 if self.dtype == "float32" else torch.float64)
        parts = [p.to(out_dtype) for p in self._evaluate_parts(systems, centres, self._compute_dtype(dtype))]
        if single or len(parts) == 1:
            return parts[0]
        if self.average != "off" or len({tuple(p.shape) for p in parts}) == 1:
            return _stack(parts)
        return parts

    @renamed_kwargs(system="batch")
    def compute(
        self,
        positions: torch.Tensor,
        numbers: Any,
        *,
        cell: Any = None,
        pbc: Any = None,
        batch: Any = None,
        centers: Any = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed-rank native API for batches: all systems concatenated along the atom axis.

        Args:
            positions: ``(N, 3)`` tensor (Å) of every atom of every system (gradients flow).
            numbers: ``(N,)`` per-atom atomic numbers.
            cell: ``(B, 3, 3)`` or ``(3, 3)`` lattice vectors (tensor for cell gradients).
            pbc: ``(B, 3)``, ``(3,)`` or bool periodicity (used when ``periodic=True``).
            batch: ``(N,)`` system index of each atom, non-decreasing (``None``: one system;
                ``system=`` is a deprecated alias).
            centers: ``None`` (every atom) or a 1-D tensor/array of flat atom indices.
            dtype: computation/output dtype (default: the descriptor's dtype).

        Returns:
            ``features``: ``(n_centers_total, n_features)`` (``(B, n_features)`` when averaged),
            rows grouped by system in increasing system order, and ``index``:
            ``(n_centers_total,)`` the system of each row (``arange(B)`` when averaged).
        """
        dtype = self._check_torch_dtype(dtype)
        pos = positions
        if not isinstance(pos, torch.Tensor):
            pos = torch.as_tensor(to_numpy("positions", positions, dtype=np.float64))
        if pos.dim() != 2 or pos.shape[-1] != 3:
            raise ValueError(f"Expected 'positions' of shape (N, 3) (got {tuple(pos.shape)}).")
        n = pos.shape[0]
        nums = to_numpy("numbers", numbers).astype(np.int64).reshape(-1)
        if nums.shape[0] != n:
            raise ValueError(f"'numbers' has {nums.shape[0]} entries for {n} positions.")
        if batch is None:
            sys_idx = np.zeros(n, dtype=np.int64)
        else:
            sys_idx = to_numpy("batch", batch).astype(np.int64).reshape(-1)
        if sys_idx.shape[0] != n:
            raise ValueError(f"'batch' has {sys_idx.shape[0]} entries for {n} positions.")
        if n and np.any(np.diff(sys_idx) < 0):
            raise ValueError("'batch' must be non-decreasing (atoms of one system contiguous, systems in order).")
        B = int(sys_idx.max()) + 1 if n else 0
        bounds = np.searchsorted(sys_idx, np.arange(B + 1))
        cells = cell
        if cells is not None and not isinstance(cells, torch.Tensor):
            cells = torch.as_tensor(to_numpy("cell", cell, dtype=np.float64))
        if cells is not None and cells.dim() == 2:
            cells = cells.expand(B, 3, 3)
        pbcs = None
        if pbc is not None:
            pbcs = np.broadcast_to(np.asarray(pbc, dtype=bool).reshape(-1, 3 if np.size(pbc) > 1 else 1), (B, 3))
        systems_in = []
        for b in range(B):
            d = {"positions": pos[bounds[b] : bounds[b + 1]], "numbers": nums[bounds[b] : bounds[b + 1]]}
            if cells is not None:
                d["cell"] = cells[b]
            if pbcs is not None:
                d["pbc"] = np.asarray(pbcs[b], dtype=bool)
            systems_in.append(d)
        if B == 0:
            raise ValueError("'positions' is empty; pass at least one atom.")
        systems, _ = self._systems(systems_in if B > 1 else systems_in[0])
        if centers is None:
            centres: list[Any] = [None] * B
        else:
            cidx = to_numpy("centers", centers).astype(np.int64).reshape(-1)
            if np.any(cidx < 0) or np.any(cidx >= n):
                raise ValueError(f"'centers' contains atom indices outside [0, {n}).")
            cs = sys_idx[cidx]
            centres = [cidx[cs == b] - bounds[b] for b in range(B)]
            if self.average != "off" and any(c.size == 0 for c in centres):
                raise ValueError("With averaging, every system needs at least one centre in 'centers'.")
        parts = self._evaluate_parts(systems, centres, self._compute_dtype(dtype), allow_empty=True)
        dtype = self._check_torch_dtype(dtype)
        out_dtype = dtype or (torch.float32 if self.dtype == "float32" else torch.float64)
        if self.average != "off":
            return _stack(parts).to(out_dtype), torch.arange(B, device=self.device)
        index = torch.repeat_interleave(torch.arange(B, device=self.device),
                                        torch.as_tensor([p.shape[0] for p in parts], device=self.device))
        return torch.cat(parts).to(out_dtype), index

    def derivatives(
        self,
        system: Any,
        centers: Any = None,
        include: Any = None,
        exclude: Any = None,
        method: str = "auto",
        return_descriptor: bool = True,
        attach: bool = False,
        n_jobs: int | None = None,
        only_physical_cores: bool = False,
        verbose: bool = False,
    ) -> Any:
        """Derivatives of the features with respect to atomic positions, DScribe layout.

        ``method="auto"``/``"analytical"``: exact, by automatic differentiation (any basis,
        weighting, periodicity); ``"numerical"``: central differences with h = 1e-4 Å, all
        displaced copies evaluated as one batch.

        Returns:
            ``d`` of shape ``(n_centers, n_included_atoms, 3, n_features)`` (averaged:
            ``(1, n_included_atoms, 3, n_features)``) and, with ``return_descriptor``, the
            descriptor ``(n_centers, n_features)`` (averaged: ``(1, n_features)``); for several
            systems, stacked arrays or lists as in :meth:`create`.
        """
        del only_physical_cores, verbose
        check_choice("method", method, ("auto", "analytical", "numerical"))
        systems, single = self._systems(system)
        centres = self._centre_lists(centers, len(systems), single)
        results = []
        with _threads(n_jobs):
            for b, (sys_b, cen) in enumerate(zip(systems, centres)):
                inc = self._included(sys_b.numbers.shape[0], include, exclude, b, single)
                results.append(self._derivatives_one(sys_b, cen, inc, method, attach))
        np_dtype = np.float32 if self.dtype == "float32" else np.float64
        ders = [r[0].astype(np_dtype) for r in results]
        descs = [r[1].astype(np_dtype) for r in results]
        if single or len(results) == 1:
            d, c = self._format(ders[0]), self._format(descs[0])
        else:
            same = len({x.shape for x in ders}) == 1 and len({x.shape for x in descs}) == 1
            d = self._format(np.stack(ders)) if same else [self._format(x) for x in ders]
            c = self._format(np.stack(descs)) if same else [self._format(x) for x in descs]
        return (d, c) if return_descriptor else d

    @staticmethod
    def _included(n: int, include: Any, exclude: Any, b: int, single: bool) -> np.ndarray:
        if include is not None and exclude is not None:
            raise ValueError("Provide either 'include' or 'exclude', not both.")
        sel = include if include is not None else exclude
        if sel is None:
            return np.arange(n)
        if not single and len(sel) and isinstance(sel[0], (list, tuple, np.ndarray)):
            sel = sel[b]
        arr = np.asarray(sel, dtype=np.int64).reshape(-1)
        name = "include" if include is not None else "exclude"
        if np.any(arr < 0) or np.any(arr >= n):
            raise ValueError(f"'{name}' contains atom indices outside [0, {n}).")
        idx = arr if include is not None else np.setdiff1d(np.arange(n), arr)
        if idx.size == 0:
            raise ValueError("Please include at least one atom in the derivatives.")
        return idx

    def _derivatives_one(self, system: System, centres: Any, include: np.ndarray, method: str,
                         attach: bool) -> tuple[np.ndarray, np.ndarray]:
        base = torch.as_tensor(system.positions_np, dtype=torch.float64)
        if attach:
            centres_fixed: Any = centres
        else:
            # DScribe: without attach, atom-index centres become fixed Cartesian points.
            _, point = _resolve_centres(centres, system)
            centres_fixed = [p.tolist() for p in point]
        cell = system.cell_np

        def features(p: torch.Tensor) -> torch.Tensor:
            sys_d = {"positions": p, "numbers": system.numbers, "cell": cell, "pbc": system.pbc}
            syss, _ = self._systems(sys_d)
            f, _ = self._evaluate(syss, [centres_fixed], torch.float64)
            return f

        with torch.no_grad():
            desc = features(base)
        n_inc = include.shape[0]
        if method == "numerical":
            h = 1e-4
            disp = []
            for sign in (1.0, -1.0):
                d = np.zeros((n_inc, 3) + system.positions_np.shape)
                d[np.arange(n_inc)[:, None], np.arange(3)[None, :], include[:, None], np.arange(3)[None, :]] = sign * h
                disp.append(system.positions_np[None, None] + d)
            stacked = np.concatenate([x.reshape(-1, *system.positions_np.shape) for x in disp])
            syss = [
                System(p, system.numbers, cell, system.pbc, p, cell) for p in stacked
            ]
            with torch.no_grad():
                f, batch = self._evaluate(syss, [centres_fixed] * len(syss), torch.float64)
            per = self._split(f, batch)
            plus = torch.stack(per[: 3 * n_inc]).reshape(n_inc, 3, *desc.shape)
            minus = torch.stack(per[3 * n_inc :]).reshape(n_inc, 3, *desc.shape)
            jac = (plus - minus) / (2 * h)  # (n_inc, 3, C, F) or (n_inc, 3, F)
        else:
            def sub(x: torch.Tensor) -> torch.Tensor:
                full = base.index_copy(0, torch.as_tensor(include), x)
                return features(full)

            from torch.autograd import forward_ad

            x0 = base[torch.as_tensor(include)].clone()
            # Forward mode, one pass per included coordinate (3 n_inc << n_centers * n_features outputs).
            cols = []
            # torch's forward-mode rules import its compiler stack on first use, which emits a
            # DeprecationWarning about torch.jit.script from inside torch: not ours to act on.
            with warnings.catch_warnings(), differentiable_mode(), forward_ad.dual_level():
                warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=DeprecationWarning)
                for k in range(3 * n_inc):
                    tangent = torch.zeros(3 * n_inc, dtype=torch.float64)
                    tangent[k] = 1.0
                    out = sub(forward_ad.make_dual(x0, tangent.view(n_inc, 3)))
                    cols.append(forward_ad.unpack_dual(out).tangent)
            jac = torch.stack(cols).reshape(n_inc, 3, *desc.shape)  # (n_inc, 3, C, F) or (n_inc, 3, F)
        if self.average == "off":
            d = jac.permute(2, 0, 1, 3)
            out_desc = desc
        else:
            # DScribe keeps a leading axis of length 1 for averaged derivatives.
            d = jac.reshape(1, n_inc, 3, -1)
            out_desc = desc.reshape(1, -1)
        return d.detach().cpu().numpy(), out_desc.detach().cpu().numpy()


def _pad_layout(pair_centre: np.ndarray, pair_species: np.ndarray, n_centres: int, n_species: int,
                max_slots: int) -> dict[str, Any]:
    """Where every pair goes in the padded per-chunk tensors (all numpy, vectorised).

    Centres are ordered by their largest per-species neighbour count so that chunks are
    homogeneous (little padding), then cut into chunks of at most ``max_slots`` padded slots.
    Pairs are ordered by (centre rank, species); a pair's slot is its rank inside its group.

    Returns:
        ``pair_order`` (permutation of the pairs), ``pair_species`` (in that order),
        ``flat`` (slot index inside its chunk), ``centre_order`` and ``chunks`` as tuples
        ``(first centre rank, end rank, first pair, end pair, K)``.
    """
    S, C = n_species, n_centres
    counts = np.bincount(pair_centre * S + pair_species, minlength=C * S).reshape(C, S)
    k_c = np.maximum(counts.max(axis=1), 1)
    centre_order = np.argsort(k_c, kind="stable")
    k_sorted = k_c[centre_order]
    rank = np.empty(C, dtype=np.int64)
    rank[centre_order] = np.arange(C)
    bounds = [0]
    while bounds[-1] < C:
        lo = bounds[-1]
        # (hi - lo) * S * K(hi - 1) grows with hi: binary search for the budget.
        cost = (np.arange(lo + 1, C + 1) - lo) * S * k_sorted[lo:]
        bounds.append(lo + max(1, int(np.searchsorted(cost, max_slots, side="right"))))
    bounds_arr = np.asarray(bounds, dtype=np.int64)
    key = rank[pair_centre] * S + pair_species
    if key.shape[0] and np.all(key[1:] >= key[:-1]):
        pair_order = np.arange(key.shape[0])  # already grouped (e.g. all-pairs clouds)
    else:
        pair_order = np.argsort(key, kind="stable")
        key = key[pair_order]
    group_start = np.concatenate([[0], np.cumsum(np.bincount(key, minlength=C * S))])
    slot = np.arange(key.shape[0]) - group_start[key]
    prank, pspec = key // S, key % S
    chunk_k = k_sorted[bounds_arr[1:] - 1]
    chunk_of_rank = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds_arr))
    pchunk = chunk_of_rank[prank] if key.shape[0] else np.zeros(0, dtype=np.int64)
    flat = ((prank - bounds_arr[pchunk]) * S + pspec) * chunk_k[pchunk] + slot
    pair_bounds = np.searchsorted(prank, bounds_arr)
    chunks = [
        (int(bounds_arr[i]), int(bounds_arr[i + 1]), int(pair_bounds[i]), int(pair_bounds[i + 1]), int(chunk_k[i]))
        for i in range(len(bounds) - 1)
    ]
    return {"pair_order": pair_order, "pair_species": pspec, "flat": flat, "centre_order": centre_order,
            "chunks": chunks}


def _resolve_centres(centres: Any, system: System) -> tuple[np.ndarray, np.ndarray]:
    """Centres as (atom index or -1, Cartesian point), atom centres placed on their atom."""
    from pointsym.descriptors._systems import _centres_of

    atom, point = _centres_of(centres, system, -1)
    point = point.copy()
    mask = atom >= 0
    point[mask] = system.positions_np[atom[mask]]
    return atom, point
