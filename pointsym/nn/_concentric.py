"""Layers on concentric icosphere grids (spec ``csnn.md`` section 2).

Feature layout: ``(B, R, V, F)`` = (batch, shell, icosphere vertex, channel). Every layer is
equivariant to the icosahedral rotations, which act on the grid by permuting the vertex
axis: the intra-sphere convolution and pooling only use the icosphere graph (preserved by
those permutations), the co-radial convolution and the batch norm act identically on
every vertex.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pointsym.core import check_choice, check_int
from pointsym.geometry.icosphere import icosphere

_DENSE_MAX_VERTICES = 162  # level <= 2

__all__ = [
    "CoRadialConv",
    "CoRadialLayer",
    "GlobalPool",
    "GridBatchNorm",
    "IcoPool",
    "IntraSphereConv",
    "IntraSphereLayer",
]


def _check_features(name: str, x: torch.Tensor, min_ndim: int, n_vertices: int | None, n_features: int,
                    layout: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} expects a torch.Tensor (got {type(x).__name__}).")
    if not x.is_floating_point():
        raise TypeError(f"{name} expects floating-point features (got dtype {x.dtype}).")
    if x.ndim < min_ndim or (n_vertices is not None and x.shape[-2] != n_vertices) or x.shape[-1] != n_features:
        want = layout.replace("V", str(n_vertices) if n_vertices is not None else "V").replace("F", str(n_features))
        raise ValueError(f"{name} expects input of shape {want} (got {tuple(x.shape)}).")


class IntraSphereConv(nn.Module):
    """Graph convolution within each sphere: ``h'_v = W sum_{u in N(v) + {v}} h_u + b``.

    The sum runs over the 1-ring of ``v`` on the icosphere plus ``v`` itself (a self loop),
    with no degree normalisation, as in the reference code (DGL ``GraphConv``,
    ``norm='none'``): the 12 degree-5 vertices sum 6 terms, all others 7.

    Args:
        in_features: input channels ``F_in``.
        out_features: output channels ``F_out``.
        level: icosphere level of the grid (``V = 10 * 4**level + 2``).
        bias: add a learnable bias (default True).

    Shapes:
        ``(..., V, F_in)`` -> ``(..., V, F_out)`` (any leading axes, e.g. ``(B, R)``).
    """

    def __init__(self, in_features: int, out_features: int, level: int, *, bias: bool = True) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features, minimum=1)
        self.out_features = check_int("out_features", out_features, minimum=1)
        self.level = check_int("level", level, minimum=0, maximum=7)
        sphere = icosphere(self.level)
        self.n_vertices = sphere.n_vertices
        # A + I as a matrix: dense up to level 2 (fastest on CPU), sparse COO above.
        rows = np.concatenate([np.arange(self.n_vertices), sphere.edges[:, 0], sphere.edges[:, 1]])
        cols = np.concatenate([np.arange(self.n_vertices), sphere.edges[:, 1], sphere.edges[:, 0]])
        adj = torch.sparse_coo_tensor(torch.as_tensor(np.stack([rows, cols])), torch.ones(len(rows)),
                                      (self.n_vertices, self.n_vertices), check_invariants=True).coalesce()
        self._dense = self.n_vertices <= _DENSE_MAX_VERTICES
        self.register_buffer("adjacency", adj.to_dense() if self._dense else adj, persistent=False)
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features))
        self.bias = nn.Parameter(torch.empty(self.out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Glorot (as DGL GraphConv), zero bias.
        nn.init.xavier_uniform_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def aggregate(self, x: torch.Tensor) -> torch.Tensor:
        """``(A + I) x`` along the vertex axis (-2), without the linear map."""
        adj = self.adjacency.to(x.dtype)
        if self._dense:
            return torch.matmul(adj, x)
        # Sparse (V, V) @ (V, rest): move the vertex axis first.
        xt = x.movedim(-2, 0)
        out = torch.sparse.mm(adj, xt.reshape(self.n_vertices, -1)).view(xt.shape)
        return out.movedim(0, -2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_features(type(self).__name__, x, 2, self.n_vertices, self.in_features, "(..., V, F)")
        # (A + I) X W = (A + I)(X W): apply the linear map on the narrower side first.
        if self.out_features <= self.in_features:
            out = self.aggregate(F.linear(x, self.weight))
        else:
            out = F.linear(self.aggregate(x), self.weight)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, level={self.level} ({self.n_vertices} vertices), "
                f"bias={self.bias is not None}")


class CoRadialConv(nn.Module):
    """1-D convolution along the shell axis, shared by all vertices (inter-sphere convolution).

    ``h'[r, v] = sum_k W_k h[r + k - (K-1)/2, v] + b`` with zero padding at the innermost and
    outermost shells, so an odd kernel size ``K`` keeps the number of shells ``R``. This is
    ``torch.nn.Conv1d(F_in, F_out, K, padding=(K-1)//2)`` applied to every vertex.

    Args:
        in_features: input channels.
        out_features: output channels.
        kernel_size: odd kernel size ``K`` (default 3; 1 is a point-wise linear map).
        bias: add a learnable bias (default True).

    Shapes:
        ``(B, R, V, F_in)`` -> ``(B, R, V, F_out)``.
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, *, bias: bool = True) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features, minimum=1)
        self.out_features = check_int("out_features", out_features, minimum=1)
        self.kernel_size = check_int("kernel_size", kernel_size, minimum=1)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"Expected an odd 'kernel_size' so that zero padding keeps the number of shells "
                             f"(got {kernel_size}); use 1, 3, 5, ...")
        # Same parameter layout as nn.Conv1d: (F_out, F_in, K).
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features, self.kernel_size))
        self.bias = nn.Parameter(torch.empty(self.out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Conv1d's default initialisation.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features * self.kernel_size)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_features(type(self).__name__, x, 4, None, self.in_features, "(B, R, V, F)")
        k, n_shells = self.kernel_size, x.shape[-3]
        if k == 1:
            return F.linear(x, self.weight[:, :, 0], self.bias)
        pad = (k - 1) // 2
        xp = F.pad(x, (0, 0, 0, 0, pad, pad))  # zero shells inside and outside
        # Stack the K shifted copies on the channel axis: one matmul instead of K.
        cols = torch.cat([xp[..., j: j + n_shells, :, :] for j in range(k)], dim=-1)  # (B, R, V, K F_in)
        w = self.weight.permute(0, 2, 1).reshape(self.out_features, k * self.in_features)
        return F.linear(cols, w, self.bias)

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, kernel_size={self.kernel_size}, "
                f"padding={(self.kernel_size - 1) // 2} (zeros), bias={self.bias is not None}")


class GridBatchNorm(nn.BatchNorm1d):
    """Batch norm over the channel (last) axis; statistics over all other axes (B, R, V).

    Shapes:
        ``(..., F)`` -> same.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        _check_features(type(self).__name__, x, 2, None, self.num_features, "(..., F)")
        return super().forward(x.reshape(-1, x.shape[-1])).view(x.shape)


class IntraSphereLayer(nn.Module):
    """Reference ``GCNLayer``: :class:`IntraSphereConv` -> BatchNorm -> ReLU (-> + input).

    The residual connection is used when ``in_features == out_features`` and
    ``residual=True``. (The reference's dropout is overwritten, so there is none here.)

    Shapes:
        ``(B, R, V, F_in)`` -> ``(B, R, V, F_out)``.
    """

    def __init__(self, in_features: int, out_features: int, level: int, *, batch_norm: bool = True,
                 residual: bool = True) -> None:
        super().__init__()
        self.conv = IntraSphereConv(in_features, out_features, level)
        self.norm = GridBatchNorm(out_features) if batch_norm else nn.Identity()
        self.residual = bool(residual) and in_features == out_features

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()
        if isinstance(self.norm, GridBatchNorm):
            self.norm.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.norm(self.conv(x)))
        return x + h if self.residual else h

    def extra_repr(self) -> str:
        return f"residual={self.residual}"


class CoRadialLayer(nn.Module):
    """:class:`CoRadialConv` -> BatchNorm -> ReLU (the reference co-radial block layer).

    Shapes:
        ``(B, R, V, F_in)`` -> ``(B, R, V, F_out)``.
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, *,
                 batch_norm: bool = True) -> None:
        super().__init__()
        self.conv = CoRadialConv(in_features, out_features, kernel_size)
        self.norm = GridBatchNorm(out_features) if batch_norm else nn.Identity()

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()
        if isinstance(self.norm, GridBatchNorm):
            self.norm.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(x)))


class IcoPool(nn.Module):
    """Neighbourhood pooling and downsampling from icosphere level ``l`` to ``l - 1``.

    Coarse vertex ``v < V_{l-1}`` (the same point as fine vertex ``v``, by the prefix
    property) gets the max or mean over ``{v} + 1-ring_l(v)`` (6 or 7 fine vertices).
    ``reduce="none"`` only keeps the first ``V_{l-1}`` vertices.

    Args:
        level: level ``l >= 1`` of the input grid.
        reduce: ``"max"`` (ModelNet reference), ``"mean"`` (DOS reference) or ``"none"``.

    Shapes:
        ``(..., V_l, F)`` -> ``(..., V_{l-1}, F)``.
    """

    def __init__(self, level: int, reduce: str = "max") -> None:
        super().__init__()
        self.level = check_int("level", level, minimum=1, maximum=7)
        self.reduce = check_choice("reduce", reduce, ("max", "mean", "none"))
        fine = icosphere(self.level)
        self.n_in = fine.n_vertices
        self.n_out = icosphere(self.level - 1).n_vertices
        table = fine.neighbors_with_self()[: self.n_out]  # (V', 7): [v, ring..., (v again if degree 5)]
        weight = np.ones(table.shape)
        weight[fine.degrees[: self.n_out] == 5, -1] = 0.0  # do not count v twice in the mean
        weight /= weight.sum(1, keepdims=True)
        self.register_buffer("index", torch.as_tensor(table.reshape(-1).copy()), persistent=False)
        self.register_buffer("weight", torch.as_tensor(weight, dtype=torch.float32)[..., None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[-2] != self.n_in:
            raise ValueError(f"IcoPool(level={self.level}) expects input of shape (..., {self.n_in}, F) "
                             f"(got {tuple(getattr(x, 'shape', ()))}).")
        if self.reduce == "none":
            return x[..., : self.n_out, :]
        g = x.index_select(-2, self.index).unflatten(-2, (self.n_out, 7))  # (..., V', 7, F)
        if self.reduce == "max":
            return g.amax(-2)
        return (g * self.weight.to(x.dtype)).sum(-2)

    def extra_repr(self) -> str:
        return f"level={self.level} ({self.n_in} -> {self.n_out} vertices), reduce={self.reduce!r}"


class GlobalPool(nn.Module):
    """Global max or mean over the shell and vertex axes (an invariant readout).

    Shapes:
        ``(B, R, V, F)`` -> ``(B, F)``.
    """

    def __init__(self, reduce: str = "max") -> None:
        super().__init__()
        self.reduce = check_choice("reduce", reduce, ("max", "mean"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ValueError(f"GlobalPool expects input of shape (B, R, V, F) (got {tuple(getattr(x, 'shape', ()))}).")
        flat = x.flatten(1, 2)
        return flat.amax(1) if self.reduce == "max" else flat.mean(1)

    def extra_repr(self) -> str:
        return f"reduce={self.reduce!r}"
