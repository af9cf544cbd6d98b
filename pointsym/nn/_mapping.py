"""Point cloud -> concentric spherical grid (spec ``csnn.md`` section 3).

The grid has ``R`` concentric spheres of radii ``1/R, 2/R, ..., 1`` (after the cloud is
scaled to unit radius), each discretised by the icosphere of one level (``V`` vertices),
and ``C`` input channels per grid point. Layout: ``(B, R, V, C)``.

Every mapping is vectorised and costs O(N) in the number of points: each point updates a
constant number of grid values (its 3 nearest vertices, or 1), found with the exact
cube-map look-up of :func:`pointsym.geometry.nearest_vertices`. Because the icosahedral
rotations permute the icosphere vertices, rotating the cloud by one of them permutes the
vertex axis of the grid (up to round-off).

Radial assignment (``radial=``): ``"hard"`` (the reference) puts a point at normalised radius
``rho`` into the one shell whose cell ``[r/R, (r+1)/R)`` holds it (the last one closed at 1).
``"soft"`` (an option, not in the reference code) splits it between the two shells whose
radii bracket ``rho``, with linear weights: shell ``i`` sits at the mean radius of its fine
spheres, ``a_i = (i + (C+1)/(2C)) / R`` (the sphere ``(i+1)/R`` for ``C = 1``, so the point
is shared by the two spheres that bound its cell, the paper's two-triangle neighbourhood), and
``a_i <= rho <= a_{i+1}`` gives weights ``(a_{i+1} - rho) R`` to shell ``i`` and
``(rho - a_i) R`` to shell ``i + 1``; below ``a_0`` or above ``a_{R-1}`` the point stays in the
first or last shell. The constant mapping interpolates between its ``R C`` fine shells (spheres
``(f+1)/(R C)``). The weights of a point sum to 1 and depend on ``rho`` only, so the grid still
permutes under the icosahedral rotations and the constant mapping's total is that of ``"hard"``.

Degenerate clouds (:func:`_normalise`): a cloud whose valid points all coincide (zero extent,
or an extent at round-off level, at most ``64 eps`` times its distance from the origin) has
no scale. It is mapped as if every point were at the centre: all its weight goes to the
innermost shell, spread uniformly over the vertices (as for a single point at the centroid).
The grid is finite, deterministic and fixed by every rotation. NaN or infinite coordinates
are a ``ValueError``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import torch

from pointsym.core import check_choice, check_int, check_positive
from pointsym.geometry.icosphere import icosphere, nearest_vertices

__all__ = [
    "ConcentricGridMapping",
    "concentric_constant_mapping",
    "concentric_rbf_mapping",
    "group_shells",
    "nearest_vertex_mapping",
    "rbf_gammas",
]

# Points closer than this (relative to the cloud radius) to the centre have no defined
# direction; they are spread evenly over all vertices so that the grid stays symmetric.
_ORIGIN_EPS = 1e-9

# A centred cloud whose radius is at most this many machine epsilons of its distance from the
# origin is degenerate: what is left after subtracting the centroid is round-off, not shape.
_EXTENT_ULPS = 64.0

RADIAL = ("hard", "soft")


@cache
def _gammas(level: int, n_shells: int, threshold: float) -> tuple[float, ...]:
    face = icosphere(level).vertices[icosphere(level).faces[0]]  # (3, 3) unit vectors
    out = []
    for i in range(1, n_shells + 1):
        if i == 1:
            pts = np.concatenate([face / n_shells, np.zeros((1, 3))])
        else:
            pts = np.concatenate([face * i / n_shells, face * (i - 1) / n_shells])
        d = np.linalg.norm(pts[:, None] - pts[None], axis=-1).max()
        out.append(-np.log(threshold) / d**2)
    return tuple(out)


def rbf_gammas(level: int, n_shells: int, threshold: float = 0.01) -> np.ndarray:
    """Per-shell RBF widths ``gamma_i = -ln(T) / d_i**2`` of the kernel mapping.

    ``d_i`` is the largest distance between the 6 points made of face 0 of the level-``level``
    icosphere projected to radii ``i/R`` and ``(i-1)/R`` (for ``i = 1``: the 3 vertices at
    ``1/R`` and the origin), so the kernel equals ``T`` across one grid cell.

    Args:
        level: icosphere level.
        n_shells: number of (coarse) shells ``R``.
        threshold: ``T`` in (0, 1).

    Returns:
        float64 ``(R,)``.
    """
    level = check_int("level", level, minimum=0)
    n_shells = check_int("n_shells", n_shells, minimum=1)
    threshold = check_positive("threshold", threshold)
    if threshold >= 1.0:
        raise ValueError(f"Expected 'threshold' in (0, 1) (got {threshold}); 0.01 is the reference value.")
    return np.array(_gammas(level, n_shells, float(threshold)))


def _as_points(name: str, points: Any) -> tuple[torch.Tensor, bool]:
    """Validate ``(N, 3)`` / ``(B, N, 3)`` points; returns a batched tensor and whether unbatched."""
    if not isinstance(points, torch.Tensor):
        try:
            points = torch.as_tensor(np.asarray(points, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"Could not convert '{name}' to a float tensor ({exc}).") from exc
    if not points.is_floating_point():
        raise TypeError(f"Expected '{name}' to be a floating-point tensor (got dtype {points.dtype}).")
    if points.ndim not in (2, 3) or points.shape[-1] != 3:
        raise ValueError(f"Expected '{name}' of shape (n_points, 3) or (batch, n_points, 3) "
                         f"(got shape {tuple(points.shape)}).")
    single = points.ndim == 2
    if single:
        points = points.unsqueeze(0)
    if points.shape[1] == 0:
        raise ValueError(f"'{name}' is empty (shape {tuple(points.shape)}); every cloud needs at least one point.")
    if not bool(torch.isfinite(points).all()):
        bad = torch.nonzero(~torch.isfinite(points))[0].tolist()
        raise ValueError(f"'{name}' contains NaN or infinite values (first at index {tuple(bad)}); "
                         "remove or fix those points before mapping.")
    return points, single


def _as_mask(mask: Any, shape: tuple[int, int], device: Any) -> torch.Tensor | None:
    if mask is None:
        return None
    mask = torch.as_tensor(mask, device=device)
    if mask.dtype != torch.bool:
        raise TypeError(f"Expected 'mask' to be a bool tensor (got dtype {mask.dtype}).")
    if mask.ndim == 1:
        mask = mask.unsqueeze(0)
    if tuple(mask.shape) != shape:
        raise ValueError(f"Expected 'mask' of shape {shape} (batch, n_points) (got {tuple(mask.shape)}).")
    return mask


def _normalise(points: torch.Tensor, mask: torch.Tensor | None, center: bool, name: str) -> torch.Tensor:
    """Centre (optionally) and scale each cloud to unit max norm over its valid points.

    A degenerate cloud (see the module docstring: zero extent, or at most ``64 eps`` times
    its largest distance from the origin; with ``center=False`` all points at the origin)
    is returned as all zeros, i.e. every point at the centre, which the mappings spread
    evenly over the vertices of the innermost shell. No division by a zero radius happens.
    """
    if mask is None:
        w = torch.ones(points.shape[:2], dtype=points.dtype, device=points.device)
    else:
        w = mask.to(points.dtype)
    count = w.sum(1)
    if bool((count == 0).any()):
        b = int(torch.nonzero(count == 0)[0])
        raise ValueError(f"Cloud {b} of '{name}' has no valid points (mask is all False); pass at least one point.")
    scale = (points.norm(dim=-1) * w).amax(1)  # distance of the farthest valid point from the origin
    if center:
        points = points - (points * w[..., None]).sum(1, keepdim=True) / count[:, None, None]
    radius = (points.norm(dim=-1) * w).amax(1)
    degenerate = radius <= _EXTENT_ULPS * torch.finfo(points.dtype).eps * scale  # radius 0 included
    if not bool(degenerate.any()):
        return points / radius[:, None, None]
    safe = torch.where(degenerate, torch.ones_like(radius), radius)
    out = points / safe[:, None, None]
    return torch.where(degenerate[:, None, None], torch.zeros_like(out), out)


def _radial_terms(rho: torch.Tensor, n_shells: int, radial: str,
                  n_sub: int = 1) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Shells and weights of each point: ``[(shell (B, N) long, weight (B, N) or None), ...]``.

    ``"hard"``: one term, shell ``floor(rho R)`` (the last shell closed at ``rho = 1``),
    weight 1 (``None``). ``"soft"``: two terms, the shells whose radii
    ``a_i = (i + (n_sub + 1) / (2 n_sub)) / R`` bracket ``rho``, linear weights summing to 1
    (see the module docstring; ``n_sub`` is the number of fine spheres per shell).
    """
    if radial == "hard":
        return [((rho.detach() * n_shells).floor().clamp(0, n_shells - 1).long(), None)]
    offset = (n_sub + 1) / (2 * n_sub)
    t = (rho * n_shells - offset).clamp(0.0, float(n_shells - 1))  # shell i at t = i
    lo = t.detach().floor().clamp(0, max(n_shells - 2, 0)).long()
    frac = (t - lo.to(t.dtype)).clamp(0.0, 1.0)
    hi = (lo + 1).clamp(max=n_shells - 1)
    return [(lo, 1.0 - frac), (hi, frac)]


def _polar(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Radius ``(B, N)``, unit directions ``(B, N, 3)`` and the 'at the centre' flag."""
    rho = p.norm(dim=-1)
    origin = rho < _ORIGIN_EPS
    dirs = p / torch.where(origin, torch.ones_like(rho), rho)[..., None]
    return rho, dirs, origin


def _check_grid_args(level: int, n_shells: int, n_channels: int) -> tuple[int, int, int]:
    return (check_int("level", level, minimum=0, maximum=7), check_int("n_shells", n_shells, minimum=1),
            check_int("n_channels", n_channels, minimum=1))


def concentric_rbf_mapping(
    points: Any,
    level: int,
    n_shells: int,
    n_channels: int = 1,
    *,
    threshold: float = 0.01,
    center: bool = True,
    mask: Any = None,
    radial: str = "hard",
) -> torch.Tensor:
    """Gaussian-RBF mapping of point clouds onto a concentric icosphere grid (kernel mapping).

    Each cloud is (optionally) centred on its centroid and scaled to unit max norm. A point
    ``p`` at radius ``rho`` lies in coarse shell ``r = floor(rho R)`` (the last shell is
    closed at ``rho = 1``). That shell holds ``C = n_channels`` fine shells of radii
    ``rho_f = (r C + c + 1) / (R C)``; for each of the 3 vertices ``v`` nearest to the
    direction of ``p`` and each ``c``, ``exp(-gamma_r |rho_f v - p|^2)`` is added to grid
    value ``[r, v, c]`` (``gamma`` from :func:`rbf_gammas`). So ``R' = R C`` fine shells are
    grouped into ``R`` spatial shells with ``C`` channels, as in the reference code.

    Args:
        points: ``(N, 3)`` or ``(B, N, 3)`` float tensor (or array).
        level: icosphere level (``V = 10 * 4**level + 2`` vertices per shell).
        n_shells: number of spatial shells ``R``.
        n_channels: fine shells per spatial shell ``C``.
        threshold: RBF value ``T`` at one grid-cell distance (default 0.01).
        center: subtract each cloud's centroid first (default True; the reference code
            does not centre, which makes translated clouds map off-centre).
        mask: optional bool ``(B, N)``; False marks padding points that are ignored.
        radial: ``"hard"`` (default, the reference: only the point's own shell ``r``) or
            ``"soft"``: the point's values are computed as above for each of the two shells
            whose radii bracket it (module docstring) and added with the linear weights.

    A degenerate cloud (all points coinciding) is mapped as if all its points were at the
    centre (module docstring).

    Returns:
        ``(B, R, V, C)`` (or ``(R, V, C)`` for an unbatched cloud), dtype and device of ``points``.
    """
    level, n_shells, n_channels = _check_grid_args(level, n_shells, n_channels)
    radial = check_choice("radial", radial, RADIAL)
    gam = rbf_gammas(level, n_shells, threshold)
    pts, single = _as_points("points", points)
    mask_t = _as_mask(mask, tuple(pts.shape[:2]), pts.device)
    p = _normalise(pts, mask_t, center, "points")
    rho, dirs, origin = _polar(p)
    b, n, _ = p.shape
    n_v, k = icosphere(level).n_vertices, 3
    verts = torch.as_tensor(np.array(icosphere(level).vertices), dtype=p.dtype, device=p.device)
    gamma = torch.as_tensor(gam, dtype=p.dtype, device=p.device)
    nv = nearest_vertices(dirs, level, k)  # (B, N, k)
    chan = torch.arange(n_channels, device=p.device)
    # |rho_f v - p|^2 = (rho_f - rho)^2 + rho_f rho |v - p_hat|^2 (exact for unit v; avoids
    # forming the (B, N, k, C, 3) differences and cancellation in float32).
    chord2 = ((verts[nv] - dirs[:, :, None, :]) ** 2).sum(-1)  # (B, N, k)
    keep = ~origin if mask_t is None else (~origin & mask_t)
    idxs, vals = [], []
    for shell, weight in _radial_terms(rho, n_shells, radial, n_channels):  # shell (B, N)
        rad = (shell[..., None] * n_channels + chan + 1).to(p.dtype) / (n_shells * n_channels)  # (B, N, C)
        d2 = (rad - rho[..., None])[:, :, None, :] ** 2 + (rad * rho[..., None])[:, :, None, :] * chord2[..., None]
        val = torch.exp(-gamma[shell][..., None, None] * d2)
        if weight is not None:
            val = val * weight[..., None, None]
        val = val * keep[..., None, None].to(p.dtype)
        idx = (((torch.arange(b, device=p.device)[:, None, None, None] * n_shells + shell[..., None, None]) * n_v
                + nv[..., None]) * n_channels + chan)  # (B, N, k, C)
        idxs.append(idx.reshape(-1))
        vals.append(val.reshape(-1))
    out = p.new_zeros(b * n_shells * n_v * n_channels)
    out = out.index_add(0, torch.cat(idxs), torch.cat(vals)).view(b, n_shells, n_v, n_channels)
    centre = origin if mask_t is None else (origin & mask_t)
    if bool(centre.any()):
        # A point at the centre is equally close to every vertex: spread its k contributions.
        r0 = (chan + 1).to(p.dtype) / (n_shells * n_channels)  # fine radii of shell 0
        v0 = torch.exp(-gamma[0] * r0**2)  # |rho_f v - 0|^2 = rho_f^2 for every vertex
        w = centre.to(p.dtype).sum(1) * (k / n_v)  # (B,)
        bump = torch.zeros_like(out)
        bump[:, 0] = (w[:, None] * v0)[:, None, :]
        out = out + bump
    return out[0] if single else out


def concentric_constant_mapping(
    points: Any,
    level: int,
    n_shells: int,
    n_channels: int = 1,
    *,
    center: bool = True,
    mask: Any = None,
    k: int = 3,
    radial: str = "hard",
) -> torch.Tensor:
    """Indicator mapping: +1 at the ``k`` nearest vertices of each point's shell.

    With ``R' = R C`` fine shells of width ``1/R'``, a point at (normalised) radius ``rho``
    falls into fine shell ``f = floor(rho R')`` and adds 1 to grid value ``[f // C, v, f % C]``
    for its ``k`` nearest vertices ``v``. ``n_channels=1`` is the reference
    ``-m constant`` mapping; larger values are the same mapping on ``R'`` shells followed by
    :func:`group_shells`.

    Args:
        points, level, n_shells, n_channels, center, mask: see :func:`concentric_rbf_mapping`.
        k: nearest vertices per point (default 3, as in the reference).
        radial: ``"hard"`` (default, the reference: +1 in fine shell ``f``) or ``"soft"``:
            the +1 is split linearly between the two fine shells whose spheres ``(f+1)/R'``
            bracket ``rho`` (module docstring), so the grid total is unchanged.

    A degenerate cloud (all points coinciding) counts as all points at the centre: ``k/V``
    per point on every vertex of fine shell 0 (module docstring).

    Returns:
        ``(B, R, V, C)`` counts (or ``(R, V, C)``), dtype of ``points``.
    """
    level, n_shells, n_channels = _check_grid_args(level, n_shells, n_channels)
    k = check_int("k", k, minimum=1, maximum=6)
    radial = check_choice("radial", radial, RADIAL)
    pts, single = _as_points("points", points)
    mask_t = _as_mask(mask, tuple(pts.shape[:2]), pts.device)
    p = _normalise(pts, mask_t, center, "points")
    rho, dirs, origin = _polar(p)
    b, n, _ = p.shape
    n_v, n_fine = icosphere(level).n_vertices, n_shells * n_channels
    nv = nearest_vertices(dirs, level, k)
    keep = ~origin if mask_t is None else (~origin & mask_t)
    idxs, vals = [], []
    for fine, weight in _radial_terms(rho, n_fine, radial):  # fine (B, N): index r * C + c
        val = keep[..., None].to(p.dtype).expand(b, n, k)
        if weight is not None:
            val = val * weight[..., None]
        # Grid index ((b R + r) V + v) C + c with r = f // C, c = f % C.
        shell, chan = fine // n_channels, fine % n_channels
        idx = ((torch.arange(b, device=p.device)[:, None, None] * n_shells + shell[..., None]) * n_v + nv) \
            * n_channels + chan[..., None]
        idxs.append(idx.reshape(-1))
        vals.append(val.reshape(-1))
    out = p.new_zeros(b * n_shells * n_v * n_channels).index_add(0, torch.cat(idxs), torch.cat(vals))
    out = out.view(b, n_shells, n_v, n_channels)
    centre = origin if mask_t is None else (origin & mask_t)
    if bool(centre.any()):
        w = centre.to(p.dtype).sum(1) * (k / n_v)
        bump = torch.zeros_like(out)
        bump[:, 0, :, 0] = w[:, None]
        out = out + bump
    return out[0] if single else out


def group_shells(grid: torch.Tensor, n_shells: int) -> torch.Tensor:
    """Group ``R'`` shells into ``R`` spatial shells, moving the ``R'/R`` inner ones to channels.

    Shells ``r (R'/R) ... (r + 1)(R'/R) - 1`` become spatial shell ``r``; their features are
    concatenated (shell-major) along the channel axis.

    Args:
        grid: ``(..., R', V, F)``.
        n_shells: ``R``, a divisor of ``R'``.

    Returns:
        ``(..., R, V, (R'/R) F)``.
    """
    if not isinstance(grid, torch.Tensor) or grid.ndim < 3:
        raise ValueError(f"Expected 'grid' to be a tensor of shape (..., R', V, F) (got {type(grid).__name__} "
                         f"of shape {tuple(getattr(grid, 'shape', ()))}).")
    n_shells = check_int("n_shells", n_shells, minimum=1)
    r_fine, n_v, f = grid.shape[-3:]
    if r_fine % n_shells:
        raise ValueError(f"'n_shells'={n_shells} must divide the number of input shells {r_fine}.")
    g = r_fine // n_shells
    lead = grid.shape[:-3]
    out = grid.reshape(*lead, n_shells, g, n_v, f).transpose(-3, -2)  # (..., R, V, g, F)
    return out.reshape(*lead, n_shells, n_v, g * f)


def nearest_vertex_mapping(
    vectors: Any,
    level: int,
    n_bins: int,
    *,
    r_min: float = 1.0,
    r_cut: float = 7.0,
    scaling: str = "inverse",
    mask: Any = None,
    index: Any = None,
    n_envs: int | None = None,
) -> torch.Tensor:
    """Nearest-vertex, radially binned mapping of atomic environments (spec section 3.3).

    Each displacement ``d`` (neighbour minus centre, in Angstrom) with ``r_min < |d| <= r_cut``
    adds ``w(|d|)`` to radial bin ``ceil((|d| - r_min) n_bins / (r_cut - r_min)) - 1`` of the
    single vertex nearest to ``d / |d|``; ``w = 1/|d|`` (``"inverse"``), ``1/|d|^2``
    (``"inverse_square"``) or ``1`` (``"none"``). Displacements outside ``(r_min, r_cut]`` are
    ignored (the reference code let negative bins wrap around). The ``n_bins`` radial bins
    are the *channels* of one spatial shell.

    Args:
        vectors: ``(N, 3)`` / ``(B, N, 3)`` displacements, or ``(E, 3)`` with ``index``.
        level: icosphere level.
        n_bins: radial bins ``R`` (channels).
        r_min, r_cut: radial range (Angstrom), ``0 <= r_min < r_cut``.
        scaling: ``"inverse"``, ``"inverse_square"`` or ``"none"``.
        mask: optional bool ``(B, N)`` of valid (non-padding) vectors.
        index: optional int ``(E,)`` environment (centre atom) of each vector, e.g. the ``i``
            of a neighbour list; then the output has ``n_envs`` environments.
        n_envs: number of environments when ``index`` is given (default ``index.max() + 1``).

    Returns:
        ``(B, 1, V, n_bins)`` (``(1, V, n_bins)`` for unbatched input, ``(n_envs, 1, V,
        n_bins)`` with ``index``).
    """
    level = check_int("level", level, minimum=0, maximum=7)
    n_bins = check_int("n_bins", n_bins, minimum=1)
    r_min = check_positive("r_min", r_min, allow_zero=True)
    r_cut = check_positive("r_cut", r_cut)
    if r_cut <= r_min:
        raise ValueError(f"Expected 'r_cut' > 'r_min' (got r_cut={r_cut}, r_min={r_min}).")
    check_choice("scaling", scaling, ("inverse", "inverse_square", "none"))
    n_v = icosphere(level).n_vertices
    if index is not None:
        vec = torch.as_tensor(vectors) if not isinstance(vectors, torch.Tensor) else vectors
        if vec.ndim != 2 or vec.shape[-1] != 3:
            raise ValueError(f"With 'index', expected 'vectors' of shape (E, 3) (got {tuple(vec.shape)}).")
        if not vec.is_floating_point():
            raise TypeError(f"Expected 'vectors' to be floating point (got dtype {vec.dtype}).")
        if not bool(torch.isfinite(vec).all()):
            raise ValueError("'vectors' contains NaN or infinite values; fix those displacements first.")
        env = torch.as_tensor(index, device=vec.device)
        if env.dtype not in (torch.int32, torch.int64) or env.shape != vec.shape[:1]:
            raise ValueError(f"Expected 'index' to be an integer tensor of shape ({vec.shape[0]},) "
                             f"(got dtype {env.dtype}, shape {tuple(env.shape)}).")
        if env.numel() and int(env.min()) < 0:
            raise ValueError("'index' has negative entries; environment indices start at 0.")
        n_out = (int(env.max()) + 1 if env.numel() else 0) if n_envs is None else check_int("n_envs", n_envs, minimum=0)
        if env.numel() and int(env.max()) >= n_out:
            raise ValueError(f"'index' refers to environment {int(env.max())} but 'n_envs'={n_out}.")
        valid = torch.ones(vec.shape[0], dtype=torch.bool, device=vec.device)
        single = False
    else:
        vec, single = _as_points("vectors", vectors) if _nonempty(vectors) else _empty_batch(vectors)
        m = _as_mask(mask, tuple(vec.shape[:2]), vec.device)
        n_out = vec.shape[0]
        env = torch.arange(n_out, device=vec.device)[:, None].expand(vec.shape[:2]).reshape(-1)
        valid = torch.ones(vec.shape[:2], dtype=torch.bool, device=vec.device) if m is None else m
        vec, valid = vec.reshape(-1, 3), valid.reshape(-1)
    dist = vec.norm(dim=-1)
    valid = valid & (dist > r_min) & (dist <= r_cut)
    dist_safe = torch.where(valid, dist, torch.full_like(dist, r_cut))
    bins = torch.ceil((dist_safe.detach() - r_min) * n_bins / (r_cut - r_min)).long().sub(1).clamp(0, n_bins - 1)
    vert = nearest_vertices(vec / dist_safe[:, None], level, 1)[:, 0]
    w = {"inverse": 1.0 / dist_safe, "inverse_square": dist_safe**-2, "none": torch.ones_like(dist_safe)}[scaling]
    w = w * valid.to(w.dtype)
    idx = (env * n_v + vert) * n_bins + bins
    out = vec.new_zeros(n_out * n_v * n_bins).index_add(0, idx, w).view(n_out, 1, n_v, n_bins)
    return out[0] if single else out


def _nonempty(vectors: Any) -> bool:
    shape = tuple(getattr(vectors, "shape", np.shape(vectors)))
    return not (len(shape) >= 2 and shape[-2] == 0)


def _empty_batch(vectors: Any) -> tuple[torch.Tensor, bool]:
    """An atom with no neighbours is a valid (all-zero) environment: ``(B, 0, 3)``, unbatched flag."""
    vec = torch.as_tensor(vectors) if not isinstance(vectors, torch.Tensor) else vectors
    if vec.shape[-1:] != (3,) or vec.ndim not in (2, 3):
        raise ValueError(f"Expected 'vectors' of shape (N, 3) or (B, N, 3) (got {tuple(vec.shape)}).")
    vec = vec.to(torch.get_default_dtype()) if not vec.is_floating_point() else vec
    return (vec, False) if vec.ndim == 3 else (vec.reshape(1, 0, 3), True)


class ConcentricGridMapping(torch.nn.Module):
    """Module form of the point-cloud mappings (no weights), used as a model's first stage.

    Args:
        level: icosphere level.
        n_shells: spatial shells ``R``.
        n_channels: channels per shell ``C`` (fine shells per spatial shell).
        mapping: ``"rbf"`` (:func:`concentric_rbf_mapping`) or ``"constant"``
            (:func:`concentric_constant_mapping`).
        threshold: RBF threshold ``T`` (``"rbf"`` only).
        center: centre each cloud on its centroid before scaling.
        radial: ``"hard"`` (reference) or ``"soft"`` radial assignment (module docstring).

    Shapes:
        ``(B, N, 3)`` points (optional bool mask ``(B, N)``) -> ``(B, R, V, C)``.
    """

    def __init__(self, level: int, n_shells: int, n_channels: int = 1, *, mapping: str = "rbf",
                 threshold: float = 0.01, center: bool = True, radial: str = "hard") -> None:
        super().__init__()
        self.level, self.n_shells, self.n_channels = _check_grid_args(level, n_shells, n_channels)
        self.mapping = check_choice("mapping", mapping, ("rbf", "constant"))
        self.threshold = float(threshold)
        if mapping == "rbf":
            rbf_gammas(self.level, self.n_shells, self.threshold)  # validates threshold
        self.center = bool(center)
        self.radial = check_choice("radial", radial, RADIAL)

    @property
    def n_vertices(self) -> int:
        return icosphere(self.level).n_vertices

    def forward(self, points: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.mapping == "rbf":
            return concentric_rbf_mapping(points, self.level, self.n_shells, self.n_channels,
                                          threshold=self.threshold, center=self.center, mask=mask,
                                          radial=self.radial)
        return concentric_constant_mapping(points, self.level, self.n_shells, self.n_channels,
                                           center=self.center, mask=mask, radial=self.radial)

    def extra_repr(self) -> str:
        extra = f", threshold={self.threshold:g}" if self.mapping == "rbf" else ""
        if self.radial != "hard":
            extra += f", radial={self.radial!r}"
        return (f"level={self.level} ({self.n_vertices} vertices), n_shells={self.n_shells}, "
                f"n_channels={self.n_channels}, mapping={self.mapping!r}{extra}, center={self.center}")
