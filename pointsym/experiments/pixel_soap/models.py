"""Models and training helpers of the pixel-wise SOAP pipeline (paper 000).

* :class:`PixelMLP` - the pixel classifier of Fig. 8 (ReLU + dropout 0.1 hidden layers).
* :class:`LinearAutoencoder`, :class:`DeepAutoencoder` - Figs. 15-16 (Section 4.3).
* :class:`PatchCNN` - a small CNN on the image patch centred on a pixel (our baseline for
  the rotation experiment; not in the paper).

Every model is trained through :class:`pointsym.training.Trainer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pointsym.core import CheckpointMixin, check_int, check_positive, warn_deprecated

__all__ = [
    "ArrayDataset",
    "DeepAutoencoder",
    "LinearAutoencoder",
    "PatchCNN",
    "PixelMLP",
    "classification_metrics",
    "extract_patches",
    "fit_autoencoder",
    "fit_classifier",
    "plot_confusion",
    "predict",
    "reconstruct",
]


# ---------------------------------------------------------------------------- data
class ArrayDataset(torch.utils.data.Dataset):
    """In-memory ``(X, y)`` (or ``X`` alone) with batched fetching.

    ``__getitems__`` lets the DataLoader take a whole batch by fancy indexing instead of
    stacking ``batch_size`` single rows, which dominates the cost of a small MLP on CPU.
    Use it with ``collate_fn=ArrayDataset.collate``.
    """

    def __init__(self, X: Any, y: Any = None) -> None:
        self.X = torch.as_tensor(np.asarray(X, dtype=np.float32))
        self.y = None if y is None else torch.as_tensor(np.asarray(y, dtype=np.int64))
        if self.y is not None and len(self.y) != len(self.X):
            raise ValueError(f"'X' has {len(self.X)} rows but 'y' has {len(self.y)}.")

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i: int) -> Any:
        return (self.X[i], self.y[i]) if self.y is not None else (self.X[i],)

    def __getitems__(self, idx: list[int]) -> Any:
        t = torch.as_tensor(idx, dtype=torch.long)
        return (self.X[t], self.y[t]) if self.y is not None else (self.X[t],)

    @staticmethod
    def collate(batch: Any) -> Any:
        return batch


# ---------------------------------------------------------------------------- models
def _check_input(name: str, x: torch.Tensor, trailing: tuple[int, ...]) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"Expected '{name}' to be a torch.Tensor (got {type(x).__name__}).")
    if x.ndim != 1 + len(trailing) or tuple(x.shape[1:]) != trailing:
        want = ", ".join(["batch", *map(str, trailing)])
        raise ValueError(f"Expected '{name}' of shape ({want}) (got {tuple(x.shape)}).")
    if not x.is_floating_point():
        raise TypeError(f"Expected '{name}' to be a floating-point tensor (got {x.dtype}).")


def _check_widths(name: str, widths: Sequence[int]) -> tuple[int, ...]:
    if isinstance(widths, (int, np.integer)):
        widths = (int(widths),)
    widths = tuple(check_int(f"{name}[{i}]", w, minimum=1) for i, w in enumerate(widths))
    return widths


class PixelMLP(CheckpointMixin, nn.Module):
    """Pixel classifier of paper 000, Fig. 8: ``Linear -> ReLU -> Dropout`` hidden layers.

    The paper does not give the widths; the default ``(512, 256, 128)`` (three hidden layers)
    is our choice.

    Args:
        n_features: input width (SOAP spectrum length, 308 at the paper's setting).
        hidden: hidden widths (default: (512, 256, 128)).
        n_classes: number of classes (default: 10).
        dropout: dropout probability after each hidden ReLU (default: 0.1).

    Shapes:
        forward: ``(batch, n_features)`` float -> logits ``(batch, n_classes)``.
    """

    def __init__(self, n_features: int, hidden: Sequence[int] = (512, 256, 128), n_classes: int = 10,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.n_features = check_int("n_features", n_features, minimum=1)
        self.hidden = _check_widths("hidden", hidden)
        self.n_classes = check_int("n_classes", n_classes, minimum=2)
        self.dropout = check_positive("dropout", dropout, allow_zero=True)
        if self.dropout >= 1:
            raise ValueError(f"Expected 'dropout' in [0, 1) (got {dropout}).")
        layers: list[nn.Module] = []
        width = self.n_features
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(self.dropout)]
            width = h
        layers.append(nn.Linear(width, self.n_classes))
        self.net = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.net:
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input("x", x, (self.n_features,))
        return self.net(x)

    @property
    def hypers(self) -> dict[str, Any]:
        """Constructor arguments; ``PixelMLP(**m.hypers)`` rebuilds the architecture."""
        return {"n_features": self.n_features, "hidden": list(self.hidden), "n_classes": self.n_classes,
                "dropout": self.dropout}

    def config(self) -> dict[str, Any]:
        """Deprecated alias of :attr:`hypers` (one release)."""
        warn_deprecated("PixelMLP.config() is deprecated, use the PixelMLP.hypers property", stacklevel=2)
        return self.hypers

    def extra_repr(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return f"n_features={self.n_features}, hidden={self.hidden}, n_classes={self.n_classes}, " \
               f"dropout={self.dropout}, params={n}"


class _Autoencoder(CheckpointMixin, nn.Module):
    """Shared encode/forward/reset of the autoencoders: subclasses set ``encoder``/``decoder``."""

    n_features: int
    encoder: nn.Module
    decoder: nn.Module

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        _check_input("x", x, (self.n_features,))
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x))


class LinearAutoencoder(_Autoencoder):
    """Linear autoencoder of Fig. 15: ``R^d -> R^h_e -> R^d`` without activation.

    Shapes:
        forward: ``(batch, n_features)`` -> reconstruction ``(batch, n_features)``;
        encode: ``(batch, n_features)`` -> ``(batch, h_e)``.
    """

    def __init__(self, n_features: int, h_e: int) -> None:
        super().__init__()
        self.n_features = check_int("n_features", n_features, minimum=1)
        self.h_e = check_int("h_e", h_e, minimum=1)
        self.encoder = nn.Linear(self.n_features, self.h_e)
        self.decoder = nn.Linear(self.h_e, self.n_features)
        self.reset_parameters()

    @property
    def hypers(self) -> dict[str, Any]:
        """Constructor arguments; ``LinearAutoencoder(**m.hypers)`` rebuilds the architecture."""
        return {"n_features": self.n_features, "h_e": self.h_e}

    def extra_repr(self) -> str:
        return f"n_features={self.n_features}, h_e={self.h_e}"


class DeepAutoencoder(_Autoencoder):
    """Deep autoencoder of Fig. 16: ``R^d -> R^(d h_m) -> R^h_e -> R^(d h_m) -> R^d``.

    ReLU after the wide hidden layers; the code and the output are linear.

    Shapes:
        forward: ``(batch, n_features)`` -> reconstruction ``(batch, n_features)``;
        encode: ``(batch, n_features)`` -> ``(batch, h_e)``.
    """

    def __init__(self, n_features: int, h_e: int, h_m: int = 2) -> None:
        super().__init__()
        self.n_features = check_int("n_features", n_features, minimum=1)
        self.h_e = check_int("h_e", h_e, minimum=1)
        self.h_m = check_int("h_m", h_m, minimum=1)
        wide = self.n_features * self.h_m
        self.encoder = nn.Sequential(nn.Linear(self.n_features, wide), nn.ReLU(), nn.Linear(wide, self.h_e))
        self.decoder = nn.Sequential(nn.Linear(self.h_e, wide), nn.ReLU(), nn.Linear(wide, self.n_features))
        self.reset_parameters()

    @property
    def hypers(self) -> dict[str, Any]:
        """Constructor arguments; ``DeepAutoencoder(**m.hypers)`` rebuilds the architecture."""
        return {"n_features": self.n_features, "h_e": self.h_e, "h_m": self.h_m}

    def extra_repr(self) -> str:
        return f"n_features={self.n_features}, h_e={self.h_e}, h_m={self.h_m} (hidden {self.n_features * self.h_m})"


class PatchCNN(CheckpointMixin, nn.Module):
    """Small CNN classifying a pixel from the image patch centred on it (not invariant).

    Three stride-2 convolutions (16, 32, 64 channels, ReLU), flattened, then
    ``Linear(64, 64) -> ReLU -> Dropout(0.1) -> Linear(64, n_classes)``.

    Shapes:
        forward: ``(batch, 1, patch, patch)`` float in [0, 1] -> logits ``(batch, n_classes)``.
    """

    def __init__(self, patch: int = 41, n_classes: int = 10, channels: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        self.patch = check_int("patch", patch, minimum=7)
        self.n_classes = check_int("n_classes", n_classes, minimum=2)
        self.channels = _check_widths("channels", channels)
        layers: list[nn.Module] = []
        c_in = 1
        for i, c in enumerate(self.channels):
            layers += [nn.Conv2d(c_in, c, kernel_size=5 if i == 0 else 3, stride=2, padding=1), nn.ReLU()]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * self._spatial() ** 2, 64), nn.ReLU(),
                                  nn.Dropout(0.1), nn.Linear(64, self.n_classes))
        self.reset_parameters()

    def _spatial(self) -> int:
        s = self.patch
        for i in range(len(self.channels)):
            k = 5 if i == 0 else 3
            s = (s + 2 - k) // 2 + 1
        return s

    def reset_parameters(self) -> None:
        for m in [*self.features, *self.head]:
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input("x", x, (1, self.patch, self.patch))
        return self.head(self.features(x))

    @property
    def hypers(self) -> dict[str, Any]:
        """Constructor arguments; ``PatchCNN(**m.hypers)`` rebuilds the architecture."""
        return {"patch": self.patch, "n_classes": self.n_classes, "channels": list(self.channels)}

    def config(self) -> dict[str, Any]:
        """Deprecated alias of :attr:`hypers` (one release)."""
        warn_deprecated("PatchCNN.config() is deprecated, use the PatchCNN.hypers property", stacklevel=2)
        return self.hypers

    def extra_repr(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return f"patch={self.patch}, channels={self.channels}, params={n}"


def extract_patches(images: np.ndarray, image_index: np.ndarray, pixels: np.ndarray, half_width: int) -> np.ndarray:
    """Zero-padded ``(2 h + 1)^2`` patches centred on ``pixels`` (row, col), scaled to [0, 1].

    Returns:
        float32 ``(T, 1, 2 h + 1, 2 h + 1)``.
    """
    h = check_int("half_width", half_width, minimum=1)
    images = np.asarray(images)
    padded = np.pad(images.astype(np.float32) / 255.0, ((0, 0), (h, h), (h, h)))
    out = np.empty((len(image_index), 1, 2 * h + 1, 2 * h + 1), dtype=np.float32)
    for t, (k, (r, c)) in enumerate(zip(image_index, pixels)):
        out[t, 0] = padded[k, r:r + 2 * h + 1, c:c + 2 * h + 1]
    return out


# ---------------------------------------------------------------------------- training
def _classification_loss(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
    x, y = batch
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y)
    acc = float((logits.argmax(1) == y).float().mean())
    return loss, {"acc": acc}


def _reconstruction_loss(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
    (x,) = batch
    loss = nn.functional.mse_loss(model(x), x)
    return loss, {"mse": float(loss.detach())}


def fit_classifier(
    model: nn.Module, X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray, *,
    epochs: int, batch_size: int = 128, lr: float = 1e-3, patience: int | None = 20, seed: int = 0,
    out_dir: str | Path | None = None, device: str = "cpu", quiet: bool = True, restart: bool = False,
    init_from: str | Path | None = None,
) -> tuple[nn.Module, list[dict[str, Any]], Any]:
    """Train a classifier with cross-entropy through the Trainer; returns the best-val-accuracy model.

    Early stopping monitors validation accuracy (``patience`` epochs). With ``out_dir``,
    checkpoints are written there and an interrupted run resumes; ``restart`` moves them aside
    and starts fresh. ``init_from`` loads the weights of a model file, a pixel-SOAP bundle or a
    Trainer checkpoint first (a ``last.pt`` in ``out_dir`` still takes precedence).

    Returns:
        ``(model with best weights, history, trainer)``.
    """
    from pointsym.training import TrainConfig, Trainer, init_weights

    if init_from is not None:
        init_weights(model, init_from, key="model")
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, patience=patience, monitor="acc",
                      mode="max", out_dir=None if out_dir is None else str(out_dir), device=str(device), quiet=quiet,
                      restart=restart, extra={"model": {"class": type(model).__name__, "hypers": model.hypers}}
                      if hasattr(model, "hypers") else {})
    trainer = Trainer(model, _classification_loss, cfg, collate_fn=ArrayDataset.collate)
    history = trainer.fit(ArrayDataset(X_train, y_train), ArrayDataset(X_val, y_val))
    return trainer.load_best(), history, trainer


def fit_autoencoder(
    model: nn.Module, X_train: np.ndarray, X_val: np.ndarray, *, epochs: int, batch_size: int = 512,
    lr: float = 1e-4, seed: int = 0, patience: int | None = None, out_dir: str | Path | None = None,
    device: str = "cpu", quiet: bool = True,
) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Train an autoencoder on MSE through the Trainer (paper: Adam 1e-4, batch 512); best-val model."""
    from pointsym.training import TrainConfig, Trainer

    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, patience=patience, monitor="loss",
                      mode="min", out_dir=None if out_dir is None else str(out_dir), device=str(device), quiet=quiet)
    trainer = Trainer(model, _reconstruction_loss, cfg, collate_fn=ArrayDataset.collate)
    history = trainer.fit(ArrayDataset(X_train), ArrayDataset(X_val))
    return trainer.load_best(), history


@torch.no_grad()
def _batched(model: nn.Module, X: np.ndarray, batch_size: int, device: str) -> np.ndarray:
    model.eval()
    dev = torch.device(device)
    outs = []
    for start in range(0, len(X), batch_size):
        x = torch.as_tensor(np.asarray(X[start:start + batch_size], dtype=np.float32), device=dev)
        outs.append(model(x).cpu().numpy())
    return np.concatenate(outs, axis=0)


def predict(model: nn.Module, X: np.ndarray, *, batch_size: int = 4096, device: str = "cpu") -> np.ndarray:
    """Class predictions ``(T,)`` of a classifier on float inputs ``(T, ...)`` (eval mode)."""
    return _batched(model, X, batch_size, device).argmax(1)


def reconstruct(model: nn.Module, X: np.ndarray, *, batch_size: int = 4096, device: str = "cpu") -> np.ndarray:
    """Autoencoder reconstruction ``(T, d)`` of ``X`` (eval mode)."""
    return _batched(model, X, batch_size, device)


# ---------------------------------------------------------------------------- metrics
def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = 10) -> dict[str, Any]:
    """Accuracy, macro and weighted recall/precision/F1 and the row-normalised confusion matrix.

    The weighted recall always equals the accuracy; the paper's recall equals its accuracy
    (0.6863), which suggests its table used weighted averages, so both are reported.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = list(range(n_classes))
    out: dict[str, Any] = {"accuracy": float(accuracy_score(y_true, y_pred))}
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=avg, zero_division=0)
        out[f"recall_{avg}"], out[f"precision_{avg}"], out[f"f1_{avg}"] = float(r), float(p), float(f)
    out["confusion"] = confusion_matrix(y_true, y_pred, labels=labels, normalize="true")
    return out


def plot_confusion(cm: np.ndarray, path: str | Path, title: str) -> Path:
    """Row-normalised confusion matrix as an annotated heat map (like the paper's Fig. 9)."""
    from pointsym.experiments.common.plotting import plt, savefig

    cm = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(7.2, 6.2))
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]:.2f}", ha="center", va="center", fontsize=9,
                    color="white" if cm[i, j] > 0.5 else "black")
    ax.set_xticks(range(cm.shape[1]))
    ax.set_yticks(range(cm.shape[0]))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true digit's pixels")
    return savefig(fig, path)
