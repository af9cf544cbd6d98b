"""NeSF networks: PointNet encoder, query-conditioned field decoders, lattice head.

Architecture restated from the reference code (``omron-sinicx/neural-structure-field``,
``src/model.py``; see ``../shared/specs/nesf.md`` section 2). ``MLP(c0, ..., cK)`` means
Linear -> ReLU -> BatchNorm1d (-> Dropout) for every hidden layer and a bare final Linear.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pointsym.core import (
    CheckpointError,
    CheckpointMixin,
    check_choice,
    check_int,
    check_positive,
    parse_species,
    warn_deprecated,
)
from pointsym.core.checkpoints import build_from_state, describe_foreign, trainer_extra, trainer_weights
from pointsym.core.deprecation import renamed_kwargs

__all__ = [
    "ALL_ELEMENTS",
    "LatticeHead",
    "NeSF",
    "PointNetEncoder",
    "PositionFieldDecoder",
    "QueryEncoding",
    "SpeciesFieldDecoder",
]

# Default species vocabulary: every element, so that one checkpoint can read any data set.
ALL_ELEMENTS: tuple[int, ...] = tuple(range(1, 119))


def _channels(name: str, value: Sequence[int]) -> tuple[int, ...]:
    try:
        out = tuple(int(c) for c in value)
    except TypeError as exc:
        raise TypeError(f"Expected '{name}' to be a sequence of layer widths (got {value!r}).") from exc
    if not out or any(c < 1 for c in out):
        raise ValueError(f"Expected '{name}' to be a non-empty sequence of positive widths (got {value!r}).")
    return out


def mlp(channels: Sequence[int], *, batch_norm: bool = True, dropout: float = 0.0) -> nn.Sequential:
    """``MLP(c0, ..., cK)``: hidden layers Linear -> ReLU -> BatchNorm1d (-> Dropout), last a bare Linear."""
    channels = _channels("channels", channels)
    if len(channels) < 2:
        raise ValueError(f"An MLP needs at least input and output widths (got {channels}).")
    layers: list[nn.Module] = []
    for k, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
        layers.append(nn.Linear(c_in, c_out))
        if k < len(channels) - 2:
            layers.append(nn.ReLU())
            if batch_norm:
                layers.append(nn.BatchNorm1d(c_out))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def _reset(module: nn.Module) -> None:
    for m in module.modules():
        if m is not module and hasattr(m, "reset_parameters"):
            m.reset_parameters()


def _check_tensor(name: str, x: Any, shape: tuple[int | None, ...], *, floating: bool = True) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"Expected '{name}' to be a torch.Tensor (got {type(x).__name__}).")
    if x.ndim != len(shape) or any(s is not None and x.shape[i] != s for i, s in enumerate(shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"Expected '{name}' of shape {want} (got {tuple(x.shape)}).")
    if floating:
        if not x.is_floating_point():
            raise TypeError(f"Expected '{name}' to be a floating-point tensor (got {x.dtype}).")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"'{name}' contains NaN or infinite values; fix the input.")
    elif x.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"Expected '{name}' to be an integer (long) tensor (got {x.dtype}).")
    return x


class QueryEncoding(nn.Module):
    """Encoding gamma(q) of query points fed to every decoder layer.

    ``"raw"``: gamma(q) = q (Å), d = 3 (the paper-era ``nesf.yaml``). ``"fourier"``:
    NeRF-style [sin(2^l pi q_c), cos(2^l pi q_c)] for l < ``n_frequencies``, d = 6 L
    (``nesf_pe.yaml``; no gradient flows through it, as in the reference).

    Shapes: ``(Q, 3) -> (Q, dim)``.
    """

    def __init__(self, kind: str = "raw", n_frequencies: int = 10) -> None:
        super().__init__()
        self.kind = check_choice("kind", kind, ("raw", "fourier"))
        self.n_frequencies = check_int("n_frequencies", n_frequencies, minimum=1)
        self.dim = 3 if kind == "raw" else 6 * self.n_frequencies

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        if self.kind == "raw":
            return q
        with torch.no_grad():
            freqs = (2.0 ** torch.arange(self.n_frequencies, device=q.device, dtype=q.dtype)) * math.pi
            arg = (q[:, None, :] * freqs[:, None]).reshape(q.shape[0], -1)
            return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}" + (f", n_frequencies={self.n_frequencies}" if self.kind == "fourier" else "")


class PointNetEncoder(nn.Module):
    """PointNet encoder of a crystal: atoms + lattice -> latent vector.

    Per atom: position branch ``MLP(3, 64, 128, 128)`` on Cartesian positions, species
    branch ``MLP(S, 128, 128)`` on one-hot species; concatenate -> ``Linear(256, 512)``;
    global max pool over the atoms of each structure; concatenate the 6 lattice
    parameters (lengths Å, angles rad) -> ``MLP(518, 256, 256, L)`` with BatchNorm and
    dropout on the hidden layers. Invariant to the order of the atoms.

    Args:
        num_species: size ``S`` of the species vocabulary (one-hot width).
        latent_dim: ``L`` (default 192).
        position_channels: hidden/out widths of the position branch (default (64, 128, 128)).
        species_channels: widths of the species branch (default (128, 128)).
        pooled_dim: width before pooling (default 512).
        head_channels: hidden widths of the final MLP (default (256, 256)).
        dropout: dropout of the final MLP's hidden layers (default 0.3).

    Shapes:
        positions ``(N, 3)``, species_index ``(N,)`` long class indices in ``[0, S)`` (see
        :meth:`NeSF.species_index`), batch ``(N,)`` long, lengths ``(B, 3)``, angles ``(B, 3)``
        -> latent ``(B, L)``.
    """

    def __init__(
        self,
        num_species: int,
        latent_dim: int = 192,
        *,
        position_channels: Sequence[int] = (64, 128, 128),
        species_channels: Sequence[int] = (128, 128),
        pooled_dim: int = 512,
        head_channels: Sequence[int] = (256, 256),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.num_species = check_int("num_species", num_species, minimum=1)
        self.latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        pos_ch = _channels("position_channels", position_channels)
        spec_ch = _channels("species_channels", species_channels)
        head_ch = _channels("head_channels", head_channels)
        self.pooled_dim = check_int("pooled_dim", pooled_dim, minimum=1)
        self.dropout = check_positive("dropout", dropout, allow_zero=True)
        if self.dropout >= 1:
            raise ValueError(f"Expected 'dropout' in [0, 1) (got {dropout}).")
        self.position_mlp = mlp((3, *pos_ch))
        self.species_mlp = mlp((self.num_species, *spec_ch))
        self.mix = nn.Linear(pos_ch[-1] + spec_ch[-1], self.pooled_dim)  # a single Linear, as in the reference
        self.head = mlp((self.pooled_dim + 6, *head_ch, self.latent_dim), dropout=self.dropout)

    def reset_parameters(self) -> None:
        _reset(self)

    @renamed_kwargs(species="species_index")
    def forward(
        self, positions: torch.Tensor, species_index: torch.Tensor, batch: torch.Tensor, lengths: torch.Tensor,
        angles: torch.Tensor,
    ) -> torch.Tensor:
        _check_tensor("positions", positions, (None, 3))
        n = positions.shape[0]
        _check_tensor("species_index", species_index, (n,), floating=False)
        _check_tensor("batch", batch, (n,), floating=False)
        _check_tensor("lengths", lengths, (None, 3))
        b = lengths.shape[0]
        _check_tensor("angles", angles, (b, 3))
        if n == 0 or b == 0:
            raise ValueError("Cannot encode an empty batch: every structure needs at least one atom.")
        if int(species_index.min()) < 0 or int(species_index.max()) >= self.num_species:
            raise ValueError(f"'species_index' must hold class indices in [0, {self.num_species}) (got "
                             f"{int(species_index.min())}..{int(species_index.max())}); map atomic numbers with "
                             "NeSF.species_index.")
        if int(batch.min()) < 0 or int(batch.max()) >= b:
            raise ValueError(f"'batch' must index the {b} structures given by 'lengths' (got {int(batch.max())}).")
        counts = torch.bincount(batch, minlength=b)
        if bool((counts == 0).any()):
            raise ValueError(f"Structure {int(torch.nonzero(counts == 0)[0])} of the batch has no atoms.")
        one_hot = nn.functional.one_hot(species_index.long(), self.num_species).to(positions.dtype)
        h = self.mix(torch.cat([self.position_mlp(positions), self.species_mlp(one_hot)], dim=-1))
        index = batch.long()[:, None].expand_as(h)
        pooled = h.new_full((b, h.shape[1]), float("-inf")).scatter_reduce(0, index, h, reduce="amax")
        return self.head(torch.cat([pooled, lengths, angles], dim=-1))

    def extra_repr(self) -> str:
        return f"num_species={self.num_species}, latent_dim={self.latent_dim}, dropout={self.dropout}"


class _QueryConditionedField(nn.Module):
    """Implicit field ``f(z, q)`` with the query encoding concatenated to every hidden layer's input."""

    def __init__(
        self, latent_dim: int, channels: Sequence[int], out_dim: int, query_encoding: str, n_frequencies: int,
        batch_norm: bool,
    ) -> None:
        super().__init__()
        self.latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        self.channels = _channels("channels", channels)
        self.out_dim = check_int("out_dim", out_dim, minimum=1)
        self.encoding = QueryEncoding(query_encoding, n_frequencies)
        self.batch_norm = bool(batch_norm)
        d = self.encoding.dim
        widths = (self.latent_dim, *self.channels)
        self.hidden = nn.ModuleList(nn.Linear(c_in + d, c_out) for c_in, c_out in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(
            nn.BatchNorm1d(c) if self.batch_norm else nn.Identity() for c in self.channels)
        self.out = nn.Linear(self.channels[-1], self.out_dim)

    def reset_parameters(self) -> None:
        _reset(self)

    def latent_projection(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent part of the first layer, ``W_z z`` ``(B, c_1)``; computed once per structure."""
        w = self.hidden[0].weight
        return latent @ w[:, : self.latent_dim].T

    def forward(
        self, latent: torch.Tensor, queries: torch.Tensor, query_batch: torch.Tensor,
        latent_projection: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Field values at ``queries`` ``(Q, 3)`` of structures ``query_batch`` ``(Q,)`` given ``latent`` ``(B, L)``.

        ``latent_projection`` (from :meth:`latent_projection`) may be passed to skip
        recomputing the first layer's latent term when the same latents are queried often.
        """
        _check_tensor("latent", latent, (None, self.latent_dim))
        _check_tensor("queries", queries, (None, 3))
        _check_tensor("query_batch", query_batch, (queries.shape[0],), floating=False)
        if queries.shape[0] and (int(query_batch.min()) < 0 or int(query_batch.max()) >= latent.shape[0]):
            raise ValueError(f"'query_batch' must index the {latent.shape[0]} latents (got values up to "
                             f"{int(query_batch.max())}).")
        g = self.encoding(queries)
        d = g.shape[1]
        # Layer t computes [h; g] W_t^T + b_t as (g W_{t,g}^T + b_t) + h W_{t,h}^T, without
        # materialising the concatenation: its backward hands BatchNorm a strided gradient, whose
        # CPU kernel is ~15x slower. (One product for the query terms of all layers is slower still:
        # the backward of each slice of it materialises a full-width gradient.)
        # [z; g] W^T = z W_z^T + g W_g^T: the latent term is computed per structure, then gathered.
        first = self.hidden[0]
        zw = self.latent_projection(latent) if latent_projection is None else latent_projection
        h = zw.index_select(0, query_batch.long()) + nn.functional.linear(g, first.weight[:, self.latent_dim:],
                                                                          first.bias)
        h = self.norms[0](torch.relu(h))
        for lin, norm in zip(self.hidden[1:], self.norms[1:]):
            c_in = lin.in_features - d
            h = norm(torch.relu(torch.addmm(nn.functional.linear(g, lin.weight[:, c_in:], lin.bias), h,
                                            lin.weight[:, :c_in].T)))
        return self.out(h)

    @torch.no_grad()
    def inference_plan(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Weights for :meth:`forward_plan`: each evaluation-mode BatchNorm folded into the next layer.

        ``BN(x) = a x + beta`` with the running statistics, so ``W [BN(h); g] + b`` equals
        ``W' [h; g] + b'`` with ``W'_h = W_h diag(a)``, ``b' = b + W_h beta``. Entries:
        ``(W_g, b)`` of the first layer's query part, ``(W', b')`` of each further hidden layer
        and of the output layer. Valid until the weights change.
        """
        if self.training:
            raise RuntimeError("inference_plan() needs evaluation mode (BatchNorm running statistics); call .eval().")

        def affine(norm: nn.Module, width: int) -> tuple[torch.Tensor, torch.Tensor]:
            w = self.out.weight
            if isinstance(norm, nn.Identity):
                return w.new_ones(width), w.new_zeros(width)
            a = torch.rsqrt(norm.running_var + norm.eps)
            if norm.weight is not None:
                a = a * norm.weight
            beta = -norm.running_mean * a + (norm.bias if norm.bias is not None else 0.0)
            return a, beta

        first = self.hidden[0]
        plan = [(first.weight[:, self.latent_dim:].clone(), first.bias.clone())]
        layers = [*self.hidden[1:], self.out]
        for lin, norm, width in zip(layers, self.norms, self.channels):
            a, beta = affine(norm, width)
            w = lin.weight.clone()
            b = lin.bias + w[:, :width] @ beta
            w[:, :width] *= a
            plan.append((w, b))
        return plan

    @torch.no_grad()
    def forward_plan(self, plan: list[tuple[torch.Tensor, torch.Tensor]], latent_projection: torch.Tensor,
                     queries: torch.Tensor, query_batch: torch.Tensor) -> torch.Tensor:
        """Evaluation-mode field values from :meth:`inference_plan` (no BatchNorm passes, in-place ReLU).

        The same function as ``forward`` in evaluation mode up to float rounding;
        ``latent_projection`` from :meth:`latent_projection`.
        """
        g = self.encoding(queries)
        w, b = plan[0]
        h = torch.addmm(b, g, w.T).add_(latent_projection.index_select(0, query_batch.long())).relu_()
        for w, b in plan[1:-1]:
            h = torch.addmm(b, torch.cat([h, g], dim=-1), w.T).relu_()
        w, b = plan[-1]
        return torch.addmm(b, h, w.T)

    def extra_repr(self) -> str:
        return (f"latent_dim={self.latent_dim}, channels={list(self.channels)}, out_dim={self.out_dim}, "
                f"batch_norm={self.batch_norm}")


class PositionFieldDecoder(_QueryConditionedField):
    """Position-field decoder ``v(z, q) -> (3,)``, the vector from ``q`` to its nearest atom (Å).

    Widths ``[L, 256, 128 x 7, 3]`` (9 Linear layers); the query encoding is concatenated
    to the input of the 8 hidden layers.

    Shapes: latent ``(B, L)``, queries ``(Q, 3)``, query_batch ``(Q,)`` -> ``(Q, 3)``.
    """

    def __init__(
        self, latent_dim: int = 192, channels: Sequence[int] = (256, 128, 128, 128, 128, 128, 128, 128), *,
        query_encoding: str = "raw", n_frequencies: int = 10, batch_norm: bool = True,
    ) -> None:
        super().__init__(latent_dim, channels, 3, query_encoding, n_frequencies, batch_norm)


class SpeciesFieldDecoder(_QueryConditionedField):
    """Species-field decoder: logits over ``num_species`` classes of the nearest atom's species.

    Widths ``[L, 256, 128, S]``; the query encoding is concatenated at the 2 hidden layers.

    Shapes: latent ``(B, L)``, queries ``(Q, 3)``, query_batch ``(Q,)`` -> ``(Q, S)``.
    """

    def __init__(
        self, num_species: int, latent_dim: int = 192, channels: Sequence[int] = (256, 128), *,
        query_encoding: str = "raw", n_frequencies: int = 10, batch_norm: bool = True,
    ) -> None:
        super().__init__(latent_dim, channels, num_species, query_encoding, n_frequencies, batch_norm)


class LatticeHead(nn.Module):
    """Lattice parameters from the latent: lengths ``MLP(L, 128, 3)`` (Å), angles ``MLP(L, 128, 3)`` (rad).

    No BatchNorm (as in the reference). Shapes: ``(B, L) -> ((B, 3), (B, 3))``.
    """

    def __init__(self, latent_dim: int = 192, hidden: int = 128) -> None:
        super().__init__()
        self.latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        self.hidden = check_int("hidden", hidden, minimum=1)
        self.lengths = mlp((self.latent_dim, self.hidden, 3), batch_norm=False)
        self.angles = mlp((self.latent_dim, self.hidden, 3), batch_norm=False)

    def reset_parameters(self) -> None:
        _reset(self)

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_tensor("latent", latent, (None, self.latent_dim))
        return self.lengths(latent), self.angles(latent)

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, hidden={self.hidden}"


class NeSF(CheckpointMixin, nn.Module):
    """Neural structure field autoencoder for crystals (encoder + field decoders + lattice head).

    Args:
        species: species vocabulary, atomic numbers or symbols (default: all 118 elements, so
            one model can read any data set; the reference uses the training set's list). Its
            order defines the class indices (:meth:`species_index`).
        latent_dim: latent size ``L`` (default 192).
        box_min, box_max: bounding box of the training atoms (Å), used for training
            queries and the reconstruction grid; stored with the model.
        query_encoding: ``"raw"`` (paper-era, default) or ``"fourier"``.
        n_frequencies: frequencies of the Fourier encoding (default 10).
        dropout: encoder head dropout (default 0.3).
        encoder_kwargs, position_channels, species_channels: width overrides (defaults from the spec).

    Example:
        >>> import torch
        >>> from pointsym.fields import NeSF
        >>> model = NeSF(species=(8, 22, 38), box_min=(0, 0, 0), box_max=(4, 4, 4)).eval()
        >>> idx = model.species_index(torch.tensor([38, 22, 8, 8, 8]))
        >>> z = model.encode(torch.rand(5, 3) * 4, idx, torch.zeros(5, dtype=torch.long),
        ...                  torch.full((1, 3), 3.9), torch.full((1, 3), 1.5708))
        >>> tuple(z.shape)
        (1, 192)
    """

    def __init__(
        self,
        species: Sequence[int] = ALL_ELEMENTS,
        latent_dim: int = 192,
        *,
        box_min: Sequence[float] = (0.0, 0.0, 0.0),
        box_max: Sequence[float] = (10.0, 10.0, 10.0),
        query_encoding: str = "raw",
        n_frequencies: int = 10,
        dropout: float = 0.3,
        encoder_kwargs: dict[str, Any] | None = None,
        position_channels: Sequence[int] = (256, 128, 128, 128, 128, 128, 128, 128),
        species_channels: Sequence[int] = (256, 128),
    ) -> None:
        super().__init__()
        # The vocabulary's order defines the one-hot class indices stored in checkpoints: keep it.
        vocab = tuple(parse_species(species, "species", ordered=True))
        self.species = vocab
        self.latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        self.box_min = tuple(float(v) for v in box_min)
        self.box_max = tuple(float(v) for v in box_max)
        if len(self.box_min) != 3 or len(self.box_max) != 3 or any(a > b for a, b in zip(self.box_min, self.box_max)):
            raise ValueError(f"Expected 3-vectors box_min <= box_max (got {box_min!r}, {box_max!r}).")
        self._config = {
            "species": list(vocab), "latent_dim": self.latent_dim, "box_min": list(self.box_min),
            "box_max": list(self.box_max), "query_encoding": query_encoding, "n_frequencies": n_frequencies,
            "dropout": dropout, "encoder_kwargs": dict(encoder_kwargs or {}),
            "position_channels": list(position_channels), "species_channels": list(species_channels),
        }
        s = len(vocab)
        lookup = torch.full((max(vocab) + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(vocab)] = torch.arange(s)
        self.register_buffer("_lookup", lookup, persistent=False)
        self.encoder = PointNetEncoder(s, self.latent_dim, dropout=dropout, **(encoder_kwargs or {}))
        self.position_decoder = PositionFieldDecoder(self.latent_dim, position_channels,
                                                     query_encoding=query_encoding, n_frequencies=n_frequencies)
        self.species_decoder = SpeciesFieldDecoder(s, self.latent_dim, species_channels,
                                                   query_encoding=query_encoding, n_frequencies=n_frequencies)
        self.lattice_head = LatticeHead(self.latent_dim)

    # ------------------------------------------------------------------ construction
    @property
    def hypers(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable); ``NeSF(**model.hypers)`` rebuilds the model."""
        return {k: (dict(v) if isinstance(v, dict) else (list(v) if isinstance(v, list) else v))
                for k, v in self._config.items()}

    def config(self) -> dict[str, Any]:
        """Deprecated alias of :attr:`hypers` (one release)."""
        warn_deprecated("NeSF.config() is deprecated, use the NeSF.hypers property", stacklevel=2)
        return self.hypers

    @classmethod
    def _from_legacy(cls, raw: Any, path: Any) -> NeSF | None:
        # Older NeSF files: the slim export of save_nesf before the pointsym-model format
        # ({"format_version": 1, "kind": "nesf", "model", "config": {"extra": {"nesf": hypers}}})
        # and ``pointsym nesf-train`` Trainer checkpoints (hypers in config.extra["nesf"]).
        extra = trainer_extra(raw, path)
        if extra is None:
            return None
        hypers = extra.get("nesf")
        if not isinstance(hypers, dict):
            raise CheckpointError(describe_foreign(raw, path, cls.__name__))
        return build_from_state(cls, hypers, trainer_weights(raw), path)

    def reset_parameters(self) -> None:
        for m in (self.encoder, self.position_decoder, self.species_decoder, self.lattice_head):
            m.reset_parameters()

    @property
    def num_species(self) -> int:
        return len(self.species)

    def species_index(self, numbers: Any) -> torch.Tensor:
        """Map atomic numbers ``(N,)`` to class indices ``(N,)`` long; unknown species raise ``ValueError``."""
        z = torch.as_tensor(numbers, device=self._lookup.device)
        if z.is_floating_point() or z.dtype == torch.bool:
            raise TypeError(f"Expected integer atomic numbers (got dtype {z.dtype}).")
        z = z.long()
        known = (z >= 0) & (z < self._lookup.shape[0])
        idx = torch.where(known, self._lookup[z.clamp(0, self._lookup.shape[0] - 1)], torch.full_like(z, -1))
        if bool((idx < 0).any()):
            bad = sorted(set(z[idx < 0].tolist()))
            raise ValueError(f"Unknown species (atomic numbers) {bad[:10]}: this model's vocabulary has "
                             f"{self.num_species} elements ({list(self.species)[:10]}...); retrain with a vocabulary "
                             "that contains them (default: all elements).")
        return idx

    def species_number(self, index: torch.Tensor) -> torch.Tensor:
        """Map class indices back to atomic numbers."""
        table = torch.as_tensor(self.species, device=index.device)
        return table[index.long()]

    # ------------------------------------------------------------------ parts
    @renamed_kwargs(species="species_index")
    def encode(self, positions: torch.Tensor, species_index: torch.Tensor, batch: torch.Tensor,
               lengths: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, L)`` of a batch of structures (``species_index``: per-atom class indices from
        :meth:`species_index`, not atomic numbers)."""
        return self.encoder(positions, species_index, batch, lengths, angles)

    def position_field(self, latent: torch.Tensor, queries: torch.Tensor, query_batch: torch.Tensor) -> torch.Tensor:
        """Predicted vector to the nearest atom ``(Q, 3)`` (Å)."""
        return self.position_decoder(latent, queries, query_batch)

    def species_logits(self, latent: torch.Tensor, queries: torch.Tensor, query_batch: torch.Tensor) -> torch.Tensor:
        """Species-field logits ``(Q, S)`` (class indices of the vocabulary)."""
        return self.species_decoder(latent, queries, query_batch)

    def lattice(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted lattice lengths ``(B, 3)`` (Å) and angles ``(B, 3)`` (rad)."""
        return self.lattice_head(latent)

    @renamed_kwargs(species="species_index")
    def forward(
        self, positions: torch.Tensor, species_index: torch.Tensor, batch: torch.Tensor, lengths: torch.Tensor,
        angles: torch.Tensor, queries: torch.Tensor | None = None, query_batch: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Encode a batch and decode lattice and (optionally) both fields at ``queries``.

        Returns a dict with ``latent (B, L)``, ``lengths (B, 3)``, ``angles (B, 3)`` and, when
        queries are given, ``position_field (Q, 3)`` and ``species_logits (Q, S)``.
        """
        z = self.encode(positions, species_index, batch, lengths, angles)
        pred_len, pred_ang = self.lattice(z)
        out = {"latent": z, "lengths": pred_len, "angles": pred_ang}
        if queries is not None:
            if query_batch is None:
                raise ValueError("'query_batch' is required with 'queries' (structure index of each query).")
            out["position_field"] = self.position_field(z, queries, query_batch)
            out["species_logits"] = self.species_logits(z, queries, query_batch)
        return out

    def extra_repr(self) -> str:
        return (f"num_species={self.num_species}, latent_dim={self.latent_dim}, "
                f"query_encoding={self._config['query_encoding']!r}, box_min={self.box_min}, box_max={self.box_max}")
