"""NeSF networks: permutation invariance, the query-at-every-layer decoder, species vocabulary, checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pointsym.fields import (
    NeSF,
    PointNetEncoder,
    PositionFieldDecoder,
    QueryEncoding,
    SpeciesFieldDecoder,
    load_nesf,
    save_nesf,
)
from pointsym.testing import assert_invariant


def small_model(**kw):
    args = {"species": (1, 8, 22, 38, 56), "latent_dim": 12, "box_min": (0, 0, 0), "box_max": (5, 5, 5),
            "position_channels": (24, 16, 16), "species_channels": (16, 16)}
    args.update(kw)
    return NeSF(**args)


def test_encoder_permutation_invariance(dtype):
    torch.manual_seed(0)
    enc = PointNetEncoder(num_species=5, latent_dim=8).to(dtype).eval()
    rng = np.random.default_rng(0)
    # two structures (4 and 3 atoms); the structure index follows its atoms when permuted
    inputs = {"positions": torch.as_tensor(rng.uniform(0, 5, (7, 3)), dtype=dtype),
              "species": torch.as_tensor(rng.integers(0, 5, 7)),
              "batch": torch.tensor([0, 0, 0, 0, 1, 1, 1])}
    lengths = torch.full((2, 3), 4.0, dtype=dtype)
    angles = torch.full((2, 3), math.pi / 2, dtype=dtype)

    def encode(positions, species, batch):
        with torch.no_grad():
            return enc(positions, species, batch, lengths, angles)

    assert_invariant(encode, inputs, "permutation", atom_inputs=("species", "batch"))
    # and the latent does depend on the atoms (the test above is not vacuous)
    moved = dict(inputs, positions=inputs["positions"] + 0.5)
    assert not torch.allclose(encode(**moved), encode(**inputs))


def test_encoder_invariant_in_training_mode_without_dropout():
    torch.manual_seed(1)
    enc = PointNetEncoder(num_species=3, latent_dim=6, dropout=0.0).double().train()
    pos = torch.rand(9, 3, dtype=torch.float64)
    spec = torch.randint(0, 3, (9,))
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    lat = (torch.full((3, 3), 4.0, dtype=torch.float64), torch.full((3, 3), 1.5, dtype=torch.float64))
    assert_invariant(lambda positions, species, batch: enc(positions, species, batch, *lat).detach(),
                     {"positions": pos, "species": spec, "batch": batch}, "permutation",
                     atom_inputs=("species", "batch"))


@pytest.mark.parametrize("encoding", ["raw", "fourier"])
def test_decoder_feeds_the_query_to_every_hidden_layer(encoding, dtype, tol):
    torch.manual_seed(2)
    dec = PositionFieldDecoder(latent_dim=6, channels=(10, 8, 8), query_encoding=encoding, n_frequencies=3)
    dec = dec.to(dtype).eval()
    d = 3 if encoding == "raw" else 18
    assert [lin.in_features for lin in dec.hidden] == [6 + d, 10 + d, 8 + d]
    assert dec.out.in_features == 8 and dec.out.out_features == 3
    z = torch.randn(2, 6, dtype=dtype)
    q = torch.randn(5, 3, dtype=dtype)
    qb = torch.tensor([0, 1, 1, 0, 1])
    # reference: explicit concatenation [h; gamma(q)] at every hidden layer, BN in eval mode
    g = dec.encoding(q)
    h = z[qb]
    for lin, bn in zip(dec.hidden, dec.norms, strict=True):
        h = bn(torch.relu(lin(torch.cat([h, g], dim=-1))))
    ref = dec.out(h)
    with torch.no_grad():
        np.testing.assert_allclose(dec(z, q, qb).numpy(), ref.detach().numpy(), atol=10 * tol, rtol=10 * tol)
        proj = dec.latent_projection(z)
        np.testing.assert_allclose(dec(z, q, qb, latent_projection=proj).numpy(), ref.detach().numpy(),
                                   atol=10 * tol, rtol=10 * tol)


def test_fourier_encoding_closed_form():
    enc = QueryEncoding("fourier", n_frequencies=2)
    q = torch.tensor([[0.25, 0.5, 1.0]], dtype=torch.float64)
    out = enc(q)[0].numpy()
    # layout: [sin(2^l pi q_c) for l, c] then [cos(...)]
    args = np.array([np.pi * 0.25, np.pi * 0.5, np.pi * 1.0, 2 * np.pi * 0.25, 2 * np.pi * 0.5, 2 * np.pi * 1.0])
    np.testing.assert_allclose(out, np.r_[np.sin(args), np.cos(args)], atol=1e-12)
    assert enc.dim == 12 and QueryEncoding("raw").dim == 3


def test_model_forward_shapes_and_species_decoder():
    model = small_model().eval()
    pos = torch.rand(6, 3) * 5
    species = model.species_index(torch.tensor([8, 8, 22, 38, 1, 56]))
    batch = torch.tensor([0, 0, 0, 1, 1, 1])
    lengths, angles = torch.full((2, 3), 4.0), torch.full((2, 3), 1.57)
    out = model(pos, species, batch, lengths, angles, torch.rand(10, 3), torch.randint(0, 2, (10,)))
    assert out["latent"].shape == (2, 12) and out["lengths"].shape == (2, 3) and out["angles"].shape == (2, 3)
    assert out["position_field"].shape == (10, 3) and out["species_logits"].shape == (10, 5)
    assert isinstance(model.species_decoder, SpeciesFieldDecoder)
    assert [lin.in_features for lin in model.species_decoder.hidden] == [12 + 3, 16 + 3]


def test_species_vocabulary_roundtrip_and_unknown_species():
    model = small_model()
    z = torch.tensor([56, 1, 38, 8])
    idx = model.species_index(z)
    assert idx.tolist() == [4, 0, 3, 1]
    assert model.species_number(idx).tolist() == z.tolist()
    with pytest.raises(ValueError, match=r"Unknown species.*\[3, 200\]"):
        model.species_index(torch.tensor([8, 3, 200]))
    with pytest.raises(TypeError, match="integer"):
        model.species_index(torch.tensor([8.0]))
    assert NeSF(box_min=(0, 0, 0), box_max=(1, 1, 1)).num_species == 118


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"positions": torch.zeros(0, 3), "species_index": torch.zeros(0, dtype=torch.long),
          "batch": torch.zeros(0, dtype=torch.long)}, ValueError, "empty"),
        ({"positions": torch.tensor([[0.0, float("nan"), 0.0]] * 3)}, ValueError, "NaN"),
        ({"species_index": torch.tensor([0, 1, 7])}, ValueError, r"\[0, 5\)"),
        ({"species_index": torch.tensor([0.0, 1.0, 2.0])}, TypeError, "integer"),
        ({"positions": torch.zeros(3, 2)}, ValueError, "shape"),
        ({"batch": torch.tensor([0, 0, 0])}, ValueError, "no atoms"),
    ],
)
def test_encoder_bad_input(change, error, match):
    model = small_model().eval()
    args = {"positions": torch.rand(3, 3), "species_index": torch.tensor([0, 1, 2]), "batch": torch.tensor([0, 1, 1]),
            "lengths": torch.full((2, 3), 4.0), "angles": torch.full((2, 3), 1.57)}
    args.update(change)
    with pytest.raises(error, match=match):
        model.encode(**args)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [({"species": ()}, ValueError, "species"), ({"species": (1, 1)}, ValueError, "distinct"),
     ({"latent_dim": 0}, ValueError, "latent_dim"), ({"box_min": (1, 1, 1), "box_max": (0, 0, 0)}, ValueError, "box"),
     ({"query_encoding": "sph"}, ValueError, "query_encoding|kind"), ({"dropout": 1.5}, ValueError, "dropout"),
     ({"position_channels": ()}, ValueError, "channels")],
)
def test_constructor_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        small_model(**kwargs)


def test_reset_parameters_and_repr():
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    model.reset_parameters()
    changed = [k for k, v in model.state_dict().items() if k.endswith("weight") and not torch.equal(v, before[k])]
    assert any("position_decoder" in k for k in changed) and any("encoder" in k for k in changed)
    text = repr(model)
    assert "num_species=5" in text and "latent_dim=12" in text and "query_encoding='raw'" in text
    assert "channels=[24, 16, 16]" in repr(model.position_decoder)


def test_save_and_load_roundtrip(tmp_path):
    model = small_model(query_encoding="fourier", n_frequencies=4).eval()
    path = save_nesf(model, tmp_path / "m.pt", meta={"note": "x"})
    loaded, info = load_nesf(path)
    assert info["note"] == "x" and loaded.hypers == model.hypers
    pos, species, batch = torch.rand(4, 3), torch.tensor([0, 1, 2, 3]), torch.tensor([0, 0, 1, 1])
    lat = (torch.full((2, 3), 4.0), torch.full((2, 3), 1.57))
    queries, qb = torch.rand(5, 3), torch.tensor([0, 1, 0, 1, 1])
    with torch.no_grad():
        a = model(pos, species, batch, *lat, queries, qb)
        b = loaded(pos, species, batch, *lat, queries, qb)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    torch.save({"format_version": 1, "model": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not of a NeSF model"):
        load_nesf(tmp_path / "other.pt")


def test_decoder_training_mode_forward_and_gradients_match_the_concatenation():
    """The split-weight layers ([h; g] W^T = h W_h^T + g W_g^T) are the reference function, BN in training mode."""
    torch.manual_seed(3)
    dec = PositionFieldDecoder(latent_dim=6, channels=(10, 8, 8)).double().train()
    z = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    q = torch.randn(40, 3, dtype=torch.float64)
    qb = torch.randint(0, 3, (40,))
    out = dec(z, q, qb)
    grads = torch.autograd.grad(out.square().sum(), [z, *dec.parameters()])
    g = dec.encoding(q)
    h = z[qb]
    for lin, bn in zip(dec.hidden, dec.norms, strict=True):
        h = bn(torch.relu(lin(torch.cat([h, g], dim=-1))))
    ref = dec.out(h)
    ref_grads = torch.autograd.grad(ref.square().sum(), [z, *dec.parameters()])
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), atol=1e-12)
    for a, b in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-10)


@pytest.mark.parametrize("encoding", ["raw", "fourier"])
def test_inference_plan_folds_batchnorm_exactly(encoding):
    torch.manual_seed(4)
    model = small_model(query_encoding=encoding, n_frequencies=2).double()
    for m in model.modules():  # non-trivial running statistics and affine parameters
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    model.eval()
    z = torch.randn(3, 12, dtype=torch.float64)
    q = torch.rand(50, 3, dtype=torch.float64) * 5
    qb = torch.randint(0, 3, (50,))
    for dec in (model.position_decoder, model.species_decoder):
        with torch.no_grad():
            ref = dec(z, q, qb)
            out = dec.forward_plan(dec.inference_plan(), dec.latent_projection(z), q, qb)
        np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-12)
    with pytest.raises(RuntimeError, match="evaluation mode"):
        model.train().position_decoder.inference_plan()
