"""PointNet classifier (Qi et al., CVPR 2017), the augmentation-only baseline of the CSNN papers.

Shared per-point MLP (a 1x1 convolution) with batch norm and ReLU, optional learned input
(3x3) and feature (FxF) transforms (T-Nets), global max pooling, MLP head. Invariant to the
order of the points; *not* invariant to rotations (it only sees rotations through training
augmentation), which is what the CSNN comparison is about.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pointsym.core import CheckpointMixin, check_int, check_positive

__all__ = ["PointNet", "TNet"]


def _widths(name: str, value: Sequence[int], minimum_len: int = 1) -> list[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) < minimum_len:
        raise TypeError(f"Expected '{name}' to be a sequence of at least {minimum_len} positive integers "
                        f"(got {value!r}).")
    return [check_int(f"{name}[{i}]", v, minimum=1) for i, v in enumerate(value)]


class _PointMLP(nn.Module):
    """Per-point 1x1 Conv1d -> BatchNorm1d -> ReLU stack on channels-first ``(B, F, N)``.

    Channels-first keeps batch norm over (batch, points) fast on CPU (a ``(B N, F)`` layout
    is several times slower for wide layers).
    """

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(a, b, 1) for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(b) for b in widths[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, bn in zip(self.convs, self.norms):
            x = torch.relu(bn(conv(x)))
        return x


class TNet(nn.Module):
    """Spatial transformer predicting a ``k x k`` matrix (initialised to the identity).

    Args:
        k: size of the transform (3 for points, F for features).
        widths: per-point MLP widths (default (64, 128, 1024)).
        head: hidden sizes of the regression head (default (512, 256)).

    Shapes:
        ``(B, k, N)`` (channels first) -> ``(B, k, k)``.
    """

    def __init__(self, k: int, widths: Sequence[int] = (64, 128, 1024), head: Sequence[int] = (512, 256)) -> None:
        super().__init__()
        self.k = check_int("k", k, minimum=1)
        widths, head = _widths("widths", widths), list(head)
        self.mlp = _PointMLP([self.k, *widths])
        layers: list[nn.Module] = []
        prev = widths[-1]
        for h in head:
            layers += [nn.Linear(prev, check_int("head", h, minimum=1)), nn.BatchNorm1d(h), nn.ReLU()]
            prev = h
        self.head = nn.Sequential(*layers)
        self.out = nn.Linear(prev, self.k * self.k)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Start as the identity transform.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.head(self.mlp(x).amax(-1))
        eye = torch.eye(self.k, dtype=x.dtype, device=x.device)
        return self.out(g).view(-1, self.k, self.k) + eye


class PointNet(CheckpointMixin, nn.Module):
    """PointNet classifier: ``forward(points (B, N, 3)) -> logits (B, n_classes)``.

    Defaults give the original classification network (about 3.5M parameters with both
    transforms); shrink ``widths``, ``tnet_widths`` and ``head`` (or use
    :meth:`scaled`) for a CPU-sized model.

    Args:
        n_classes: number of classes.
        widths: per-point MLP widths after the input (default (64, 64, 64, 128, 1024)); the
            feature transform acts after the second entry.
        head: hidden sizes of the classification head (default (512, 256)).
        dropout: dropout before the last linear layer (default 0.3, as in the paper's 0.7 keep).
        input_transform: learn a 3x3 input transform (default True).
        feature_transform: learn a feature transform (default False; it needs an extra
            orthogonality loss, see :meth:`feature_transform_loss`).
        tnet_widths, tnet_head: sizes of the T-Nets (default (64, 128, 1024), (512, 256)).
        center: centre each cloud on its centroid and scale it to unit max norm in
            ``forward`` (default True; same normalisation as the CSNN mapping).

    Shapes:
        ``(B, N, 3)`` (optional bool mask ``(B, N)`` of valid points) -> ``(B, n_classes)``.
        Masked points are excluded from the centring and the max pooling; in training mode
        they still enter the batch-norm statistics of the per-point layers.
    """

    def __init__(
        self,
        n_classes: int,
        *,
        widths: Sequence[int] = (64, 64, 64, 128, 1024),
        head: Sequence[int] = (512, 256),
        dropout: float = 0.3,
        input_transform: bool = True,
        feature_transform: bool = False,
        tnet_widths: Sequence[int] = (64, 128, 1024),
        tnet_head: Sequence[int] = (512, 256),
        center: bool = True,
    ) -> None:
        super().__init__()
        self.n_classes = check_int("n_classes", n_classes, minimum=2)
        widths = _widths("widths", widths, 2)
        head = [check_int(f"head[{i}]", h, minimum=1) for i, h in enumerate(head)]
        dropout = check_positive("dropout", dropout, allow_zero=True)
        if dropout >= 1:
            raise ValueError(f"Expected 'dropout' in [0, 1) (got {dropout}).")
        self.center = bool(center)
        self._hypers = {
            "n_classes": self.n_classes, "widths": list(widths), "head": list(head), "dropout": float(dropout),
            "input_transform": bool(input_transform), "feature_transform": bool(feature_transform),
            "tnet_widths": list(tnet_widths), "tnet_head": list(tnet_head),
            "center": self.center,
        }
        self.input_tnet = TNet(3, tnet_widths, tnet_head) if input_transform else None
        self.mlp1 = _PointMLP([3, *widths[:2]])
        self.feature_tnet = TNet(widths[1], tnet_widths, tnet_head) if feature_transform else None
        self.mlp2 = _PointMLP(widths[1:])
        layers: list[nn.Module] = []
        prev = widths[-1]
        for h in head:
            layers += [nn.Linear(prev, h), nn.BatchNorm1d(h), nn.ReLU()]
            prev = h
        layers += [nn.Dropout(dropout), nn.Linear(prev, self.n_classes)]
        self.head = nn.Sequential(*layers)
        self._last_feature_transform: torch.Tensor | None = None

    @classmethod
    def scaled(cls, n_classes: int, scale: float, **kwargs) -> PointNet:  # noqa: ANN003
        """The default architecture with every width multiplied by ``scale`` (at least 4)."""
        scale = check_positive("scale", scale)

        def s(ws: Sequence[int]) -> tuple[int, ...]:
            return tuple(max(4, round(w * scale)) for w in ws)

        return cls(n_classes, widths=s((64, 64, 64, 128, 1024)), head=s((512, 256)),
                   tnet_widths=s((64, 128, 1024)), tnet_head=s((512, 256)), **kwargs)

    @property
    def hypers(self) -> dict[str, Any]:
        """Constructor arguments; ``PointNet(**m.hypers)`` rebuilds the architecture."""
        return json.loads(json.dumps(self._hypers))

    def reset_parameters(self) -> None:
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def _normalise(self, points: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        w = torch.ones(points.shape[:2], dtype=points.dtype, device=points.device) if mask is None \
            else mask.to(points.dtype)
        p = points - (points * w[..., None]).sum(1, keepdim=True) / w.sum(1).clamp_min(1)[:, None, None]
        radius = (p.norm(dim=-1) * w).amax(1)
        # A cloud whose points coincide (one ModelNet10 training shape is a single repeated voxel)
        # has no scale: it stays at the centre (radius 1), as the CSNN grid mapping treats it,
        # instead of a division by zero. Round-off of the centring counts as zero extent.
        scale = (points.abs() * w[..., None]).amax(dim=(1, 2))
        tiny = radius <= 64 * torch.finfo(points.dtype).eps * scale
        radius = torch.where(tiny, torch.ones_like(radius), radius)
        p = torch.where(tiny[:, None, None], torch.zeros_like(p), p)
        return p / radius[:, None, None]

    def forward(self, points: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if not isinstance(points, torch.Tensor) or points.ndim != 3 or points.shape[-1] != 3:
            raise ValueError(f"Expected 'points' of shape (batch, n_points, 3) "
                             f"(got {tuple(getattr(points, 'shape', ()))}).")
        if points.shape[1] == 0:
            raise ValueError("'points' is empty (0 points per cloud); pass at least one point.")
        if not bool(torch.isfinite(points).all()):
            raise ValueError("'points' contains NaN or infinite values; remove or fix those points.")
        if mask is not None and (mask.dtype != torch.bool or tuple(mask.shape) != tuple(points.shape[:2])):
            raise ValueError(f"Expected 'mask' to be a bool tensor of shape {tuple(points.shape[:2])}.")
        x = self._normalise(points, mask) if self.center else points
        x = x.transpose(1, 2)  # (B, 3, N): channels first
        if self.input_tnet is not None:
            x = self.input_tnet(x).transpose(1, 2) @ x  # each point p -> p @ T
        x = self.mlp1(x)
        if self.feature_tnet is not None:
            t = self.feature_tnet(x)
            self._last_feature_transform = t
            x = t.transpose(1, 2) @ x
        x = self.mlp2(x)
        if mask is not None:
            x = x.masked_fill(~mask[:, None, :], float("-inf"))
        return self.head(x.amax(-1))

    def feature_transform_loss(self) -> torch.Tensor:
        """``||I - A A^T||_F^2`` of the last feature transform (0 without one), mean over the batch."""
        t = self._last_feature_transform
        if t is None:
            return torch.zeros(())
        eye = torch.eye(t.shape[-1], dtype=t.dtype, device=t.device)
        return ((eye - t @ t.transpose(1, 2)) ** 2).sum((1, 2)).mean()

    def extra_repr(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return (f"n_classes={self.n_classes}, input_transform={self.input_tnet is not None}, "
                f"feature_transform={self.feature_tnet is not None}, center={self.center}, parameters={n:,}")
