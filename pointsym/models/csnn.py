"""Concentric spherical neural network (CSNN) classifier for point clouds (spec ``csnn.md`` section 4).

Architecture (reference ModelNet40 model, here with configurable sizes):

1. map the raw cloud onto a concentric icosphere grid ``(B, R, V_L, C)`` (Gaussian RBF);
2. for ``i = 0 ... L-1`` at level ``L - i``: intra-sphere (graph) layers, co-radial layers,
   record the global max over shells and vertices, max-pool to level ``L - i - 1``;
3. at level 0 (12 vertices): intra-sphere layers, co-radial layers, global max;
   (``global_pool="mean+max"``, an option: the global mean beside the max, concatenated);
4. concatenate the ``L + 1`` recorded feature vectors and classify with an MLP
   (dropout -> linear -> batch norm -> ReLU, twice, then dropout -> linear).

Every stage is equivariant to the 60 icosahedral rotations and the readout is invariant, so
the logits are exactly invariant (up to round-off) when the input cloud is rotated by any of
them; for other rotations invariance is approximate.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pointsym.core import CheckpointMixin, check_choice, check_int, check_positive
from pointsym.nn import ConcentricGridMapping, CoRadialLayer, GlobalPool, IcoPool, IntraSphereLayer

__all__ = ["CSNNClassifier"]


def _int_list(name: str, value: Sequence[int] | None, length: int, default: list[int], minimum: int) -> list[int]:
    if value is None:
        return default
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"Expected '{name}' to be a sequence of {length} integers (got {value!r}).")
    out = [check_int(f"{name}[{i}]", v, minimum=minimum) for i, v in enumerate(value)]
    if len(out) != length:
        raise ValueError(f"Expected '{name}' to have level + 1 = {length} entries, one per mesh level "
                         f"(got {len(out)}: {list(value)}).")
    return out


class CSNNClassifier(CheckpointMixin, nn.Module):
    """CSNN point-cloud classifier: grid mapping, equivariant blocks, invariant readout, MLP head.

    The defaults with ``level=4, n_shells=20, n_channels=8, n_classes=40`` give the reference
    ModelNet40 model (about 4.0M parameters, 4.0M quoted in the paper). A CPU-sized model
    is e.g. ``CSNNClassifier(level=2, n_shells=4, n_channels=4, n_classes=10, base_width=16)``.

    Args:
        level: icosphere level ``L`` of the input grid (``V = 10 * 4**L + 2``).
        n_shells: spatial shells ``R``.
        n_channels: input channels ``C`` per shell (fine shells grouped into each shell).
        n_classes: number of classes.
        mapping: ``"rbf"`` (reference) or ``"constant"``; see :class:`pointsym.nn.ConcentricGridMapping`.
        threshold: RBF threshold ``T`` (default 0.01).
        center: centre each cloud on its centroid before mapping (default True).
        radial: ``"hard"`` (reference) or ``"soft"`` radial assignment of the points to the
            shells (linear between the two nearest shells); see :mod:`pointsym.nn._mapping`.
        base_width: channels of the first graph block; block ``i`` uses ``base_width * 2**i``
            graph channels and twice that many co-radial channels (default 32).
        gconv_dims, radial_dims: explicit channels per block (``L + 1`` entries each);
            override ``base_width``.
        gconv_layers: graph layers per block (default 2 for every block but the last, 1).
        radial_layers: co-radial layers per block (default 2, the last two blocks 1).
        radial_kernel: odd co-radial kernel size (default 3).
        pool: ``"max"`` (reference) or ``"mean"`` neighbourhood pooling.
        readout: ``"concat"`` (global max of every block, reference) or ``"last"``.
        global_pool: invariant pooling over shells and vertices of each read-out block:
            ``"max"`` (reference) or ``"mean+max"`` (both, concatenated max then mean, which
            doubles the head's input width).
        hidden: hidden sizes of the head (default (512, 256)).
        dropout: dropout before every linear layer of the head (default 0.14).

    Shapes:
        ``forward(points (B, N, 3), mask=None) -> logits (B, n_classes)``;
        ``forward_grid(grid (B, R, V, C)) -> logits``.
    """

    def __init__(
        self,
        level: int,
        n_shells: int,
        n_channels: int,
        n_classes: int,
        *,
        mapping: str = "rbf",
        threshold: float = 0.01,
        center: bool = True,
        base_width: int = 32,
        gconv_dims: Sequence[int] | None = None,
        radial_dims: Sequence[int] | None = None,
        gconv_layers: Sequence[int] | None = None,
        radial_layers: Sequence[int] | None = None,
        radial_kernel: int = 3,
        pool: str = "max",
        readout: str = "concat",
        global_pool: str = "max",
        radial: str = "hard",
        hidden: Sequence[int] = (512, 256),
        dropout: float = 0.14,
    ) -> None:
        super().__init__()
        self.level = check_int("level", level, minimum=0, maximum=6)
        self.n_shells = check_int("n_shells", n_shells, minimum=1)
        self.n_channels = check_int("n_channels", n_channels, minimum=1)
        self.n_classes = check_int("n_classes", n_classes, minimum=2)
        base_width = check_int("base_width", base_width, minimum=1)
        n_blocks = self.level + 1
        self.gconv_dims = _int_list("gconv_dims", gconv_dims, n_blocks,
                                    [base_width * 2**i for i in range(n_blocks)], 1)
        self.radial_dims = _int_list("radial_dims", radial_dims, n_blocks,
                                     [2 * base_width * 2**i for i in range(n_blocks)], 1)
        self.gconv_layers = _int_list("gconv_layers", gconv_layers, n_blocks, [2] * self.level + [1], 1)
        self.radial_layers = _int_list("radial_layers", radial_layers, n_blocks,
                                       [2] * max(self.level - 1, 0) + [1] * min(2, n_blocks), 1)
        self.readout = check_choice("readout", readout, ("concat", "last"))
        self.global_pool_kind = check_choice("global_pool", global_pool, ("max", "mean+max"))
        radial = check_choice("radial", radial, ("hard", "soft"))
        dropout = check_positive("dropout", dropout, allow_zero=True)
        if dropout >= 1:
            raise ValueError(f"Expected 'dropout' in [0, 1) (got {dropout}).")
        hidden = [check_int(f"hidden[{i}]", h, minimum=1) for i, h in enumerate(hidden)]
        self._hypers = {
            "level": self.level, "n_shells": self.n_shells, "n_channels": self.n_channels, "n_classes": self.n_classes,
            "mapping": mapping, "threshold": float(threshold), "center": bool(center), "base_width": base_width,
            "gconv_dims": list(self.gconv_dims), "radial_dims": list(self.radial_dims),
            "gconv_layers": list(self.gconv_layers), "radial_layers": list(self.radial_layers),
            "radial_kernel": int(radial_kernel), "pool": pool, "readout": self.readout, "hidden": list(hidden),
            "dropout": float(dropout),
        }
        # Options added later are stored only when they differ from the reference, so model
        # files written before they existed still compare equal (init_weights, --init-from).
        if self.global_pool_kind != "max":
            self._hypers["global_pool"] = self.global_pool_kind
        if radial != "hard":
            self._hypers["radial"] = radial

        self.mapping = ConcentricGridMapping(self.level, self.n_shells, self.n_channels, mapping=mapping,
                                             threshold=threshold, center=center, radial=radial)
        self.blocks = nn.ModuleList()
        self.pools = nn.ModuleList()
        f_in = self.n_channels
        for i in range(n_blocks):
            lvl = self.level - i
            layers: list[nn.Module] = []
            for j in range(self.gconv_layers[i]):
                layers.append(IntraSphereLayer(f_in if j == 0 else self.gconv_dims[i], self.gconv_dims[i], lvl))
            for j in range(self.radial_layers[i]):
                layers.append(CoRadialLayer(self.gconv_dims[i] if j == 0 else self.radial_dims[i],
                                            self.radial_dims[i], radial_kernel))
            self.blocks.append(nn.Sequential(*layers))
            if lvl > 0:
                self.pools.append(IcoPool(lvl, pool))
            f_in = self.radial_dims[i]
        self.global_pool = GlobalPool("max")
        self.global_mean = GlobalPool("mean") if self.global_pool_kind == "mean+max" else None
        head: list[nn.Module] = []
        width = sum(self.radial_dims) if self.readout == "concat" else self.radial_dims[-1]
        if self.global_mean is not None:
            width *= 2
        for h in hidden:
            head += [nn.Dropout(dropout), nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU()]
            width = h
        head += [nn.Dropout(dropout), nn.Linear(width, self.n_classes)]
        self.head = nn.Sequential(*head)

    @property
    def hypers(self) -> dict[str, Any]:
        """Constructor arguments (per-block widths made explicit); ``CSNNClassifier(**m.hypers)`` rebuilds it."""
        return json.loads(json.dumps(self._hypers))

    def reset_parameters(self) -> None:
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def embed_grid(self, grid: torch.Tensor) -> torch.Tensor:
        """Invariant features ``(B, sum(radial_dims))`` (or ``(B, radial_dims[-1])``) of a grid.

        With ``global_pool="mean+max"`` every block contributes its global max and then its
        global mean, so the width doubles.
        """
        n_v = self.mapping.n_vertices
        want = (self.n_shells, n_v, self.n_channels)
        if not isinstance(grid, torch.Tensor) or grid.ndim != 4 or tuple(grid.shape[1:]) != want:
            raise ValueError(f"Expected 'grid' of shape (B, {want[0]}, {want[1]}, {want[2]}) "
                             f"(got {tuple(getattr(grid, 'shape', ()))}).")
        h = grid
        feats = []
        for i, block in enumerate(self.blocks):
            h = block(h)
            feats.append(self.global_pool(h))
            if self.global_mean is not None:
                feats.append(self.global_mean(h))
            if i < len(self.pools):
                h = self.pools[i](h)
        if self.readout == "last":
            feats = feats[-2:] if self.global_mean is not None else feats[-1:]
        return torch.cat(feats, dim=-1) if len(feats) > 1 else feats[0]

    def forward_grid(self, grid: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_classes)`` from a precomputed grid ``(B, R, V, C)``."""
        return self.head(self.embed_grid(grid))

    def forward(self, points: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, n_classes)`` of point clouds ``(B, N, 3)`` (optional bool mask ``(B, N)``)."""
        if not isinstance(points, torch.Tensor) or points.ndim != 3 or points.shape[-1] != 3:
            raise ValueError(f"Expected 'points' of shape (batch, n_points, 3) "
                             f"(got {tuple(getattr(points, 'shape', ()))}).")
        return self.forward_grid(self.mapping(points, mask))

    def extra_repr(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return (f"level={self.level}, n_shells={self.n_shells}, n_channels={self.n_channels}, "
                f"n_classes={self.n_classes}, gconv_dims={self.gconv_dims}, radial_dims={self.radial_dims}, "
                f"readout={self.readout!r}, global_pool={self.global_pool_kind!r}, parameters={n:,}")
