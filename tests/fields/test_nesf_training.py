"""Query sampling, the NeSF loss and training through the shared Trainer (with resume)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pointsym.fields import (
    NeSF,
    NeSFLoss,
    QuerySampler,
    collate_crystals,
    crystal_dataset,
    grid_points,
    load_nesf,
    load_nesf_set,
)
from pointsym.training import TrainConfig, Trainer


def tiny_model(crystals):
    lo, hi = crystals.bounding_box()
    return NeSF(latent_dim=8, box_min=lo, box_max=hi, position_channels=(16, 16), species_channels=(16,),
                encoder_kwargs={"position_channels": (8, 8), "species_channels": (8,), "pooled_dim": 16,
                                "head_channels": (16,)})


def test_grid_points_follow_arange():
    g = grid_points([0, 0, 0], [1.0, 2.0, 0.5], 0.5)
    assert g.shape == (2 * 4 * 1, 3)
    np.testing.assert_allclose(np.unique(g[:, 1]), [0, 0.5, 1.0, 1.5])
    assert grid_points([0, 0, 0], [1, 1, 1], 0.5, inclusive=True).shape == (27, 3)


def test_sampler_sizes_and_eval_mode():
    sampler = QuerySampler([0, 0, 0], [4, 4, 2])
    # global grid: arange(-1, 5, 1) x arange(-1, 5, 1) x arange(-1, 3, 1) = 6 * 6 * 4
    assert len(sampler.global_grid) == 144
    assert len(sampler.local_offsets) == 64 and len(sampler.species_offsets) == 216
    np.testing.assert_allclose(np.unique(sampler.local_offsets[:, 0]), [-0.6, -0.3, 0.0, 0.3])
    pos = torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 1.0], [0.5, 0.5, 0.5]])
    batch = torch.tensor([0, 0, 1])
    q = sampler.sample(pos, batch, 2, train=False, generator=torch.Generator().manual_seed(0))
    assert q["position_queries"].shape == (2 * 144 + 3 * 64, 3) and q["num_global"] == 288
    assert q["species_queries"].shape == (3 * 216, 3)
    # evaluation: local/species queries are exactly atom + offset (no jitter)
    local = q["position_queries"][288:].reshape(3, 64, 3) - pos[:, None]
    np.testing.assert_allclose(local.numpy(), np.broadcast_to(sampler.local_offsets, (3, 64, 3)), atol=1e-6)
    assert q["species_batch"].tolist() == [0] * 432 + [1] * 216
    # global queries are jittered (sigma 0.5) even in evaluation, as in the reference code
    jitter = (q["position_queries"][:144] - torch.as_tensor(sampler.global_grid, dtype=torch.float32)).std()
    assert 0.35 < float(jitter) < 0.65


def test_sampler_subsets():
    sampler = QuerySampler([0, 0, 0], [4, 4, 2], n_global=10, n_local=5, n_species=7)
    pos = torch.rand(4, 3)
    q = sampler.sample(pos, torch.tensor([0, 0, 1, 1]), 2, train=True)
    assert q["position_queries"].shape == (2 * 10 + 4 * 5, 3) and q["species_queries"].shape == (28, 3)
    q = sampler.sample(pos, torch.tensor([0, 0, 1, 1]), 2, train=False)
    assert q["position_queries"].shape == (2 * 144 + 4 * 64, 3)
    with pytest.raises(ValueError, match="n_local"):
        QuerySampler([0, 0, 0], [1, 1, 1], n_local=65)


def test_loss_is_consistent_with_exact_targets():
    crystals = load_nesf_set("lim_l6", "train", source="embedded").subset(range(6))
    model = tiny_model(crystals)
    batch = collate_crystals(crystal_dataset(crystals, model))
    loss_fn = NeSFLoss(QuerySampler(*crystals.bounding_box(), n_global=20, n_local=4, n_species=4))
    model.train()
    loss, metrics = loss_fn(model, batch)
    assert torch.isfinite(loss)
    expected = 10 * metrics["position_mse"] + 0.1 * metrics["species_ce"] + metrics["lengths_mse"] + \
        metrics["angles_mse"]
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "encoder" in n or "decoder" in n)
    # evaluation losses are reproducible (seeded by the structures' indices)
    model.eval()
    with torch.no_grad():
        a, _ = loss_fn(model, batch)
        b, _ = loss_fn(model, batch)
    assert float(a) == float(b)


def test_a_few_adam_steps_reduce_the_loss():
    crystals = load_nesf_set("lim_l6", "train", source="embedded").subset(range(8))
    torch.manual_seed(0)
    model = tiny_model(crystals).train()
    batch = collate_crystals(crystal_dataset(crystals, model))
    loss_fn = NeSFLoss(QuerySampler(*crystals.bounding_box(), n_global=32, n_local=8, n_species=4))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss, _ = loss_fn(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_training_through_trainer_checkpoints_and_resumes(tmp_path):
    train = load_nesf_set("lim_l6", "train", source="embedded").subset(range(16))
    val = load_nesf_set("lim_l6", "val", source="embedded").subset(range(6))
    model = tiny_model(train)
    loss_fn = NeSFLoss(QuerySampler(*train.bounding_box(), n_global=16, n_local=4, n_species=4))
    cfg = dict(batch_size=8, quiet=True, out_dir=str(tmp_path), extra={"nesf": model.hypers})
    Trainer(model, loss_fn, TrainConfig(epochs=1, **cfg), collate_fn=collate_crystals).fit(
        crystal_dataset(train, model), crystal_dataset(val, model))
    reloaded, info = load_nesf(tmp_path / "last.pt")
    assert info["epoch"] == 1 and reloaded.hypers == model.hypers
    model2 = tiny_model(train)
    trainer = Trainer(model2, loss_fn, TrainConfig(epochs=2, **cfg), collate_fn=collate_crystals)
    hist = trainer.fit(crystal_dataset(train, model2), crystal_dataset(val, model2))
    assert [h["epoch"] for h in hist] == [1, 2]
    assert {"val_position_mse", "val_species_acc", "train_lengths_mse"} <= set(hist[-1])


def test_unknown_species_fails_before_training():
    crystals = load_nesf_set("lim_l6", "train", source="embedded").subset(range(3))
    lo, hi = crystals.bounding_box()
    model = NeSF(species=(1, 2, 3), box_min=lo, box_max=hi)
    with pytest.raises(ValueError, match="Unknown species"):
        crystal_dataset(crystals, model)


def test_bf16_precision_keeps_float32_weights_and_tracks_the_float32_loss():
    crystals = load_nesf_set("lim_l6", "train", source="embedded").subset(range(6))
    torch.manual_seed(0)
    model = tiny_model(crystals).eval()
    batch = collate_crystals(crystal_dataset(crystals, model))
    sampler = QuerySampler(*crystals.bounding_box(), n_global=20, n_local=4, n_species=4)
    with torch.no_grad():
        ref, _ = NeSFLoss(sampler)(model, batch)  # evaluation mode: the same seeded queries
        low, metrics = NeSFLoss(sampler, precision="bf16")(model, batch)
    assert low.dtype == torch.float32 and float(low) == pytest.approx(float(ref), rel=0.05)
    model.train()
    loss, _ = NeSFLoss(sampler, precision="bf16")(model, batch)
    loss.backward()
    assert all(p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32
               for n, p in model.named_parameters() if "decoder" in n)
    with pytest.raises(ValueError, match="precision"):
        NeSFLoss(sampler, precision="fp16")


def test_importance_sampling_concentrates_near_atoms_with_unbiased_weights():
    pos = torch.tensor([[1.0, 1.0, 1.0], [1.6, 1.0, 1.0], [3.0, 3.0, 1.0]])
    batch = torch.tensor([0, 0, 1])
    uni = QuerySampler([0, 0, 0], [4, 4, 2], n_global=400, global_jitter=0.0, global_spacing=0.5)
    imp = QuerySampler([0, 0, 0], [4, 4, 2], n_global=400, global_jitter=0.0, global_spacing=0.5,
                       global_sampling="importance")
    gen = torch.Generator().manual_seed(0)
    qu = uni.sample(pos, batch, 2, generator=gen)
    qi = imp.sample(pos, batch, 2, generator=gen)
    assert "position_weights" not in qu and qi["position_weights"].shape == (qi["position_queries"].shape[0],)
    n = qi["num_global"]
    assert n == 800 and bool((qi["position_weights"][n:] == 1).all())

    def near(q):
        d = torch.cdist(q["position_queries"][:400], pos[:2]).min(1).values
        return float((d < 1.0).float().mean())

    assert near(qi) > 1.5 * near(qu)
    # E[w] = sum_i p_i / (G p_i) = 1 over the grid of each structure
    assert float(qi["position_weights"][:n].mean()) == pytest.approx(1.0, abs=0.15)
    assert float(qi["position_weights"][:n].max()) <= 2.0 + 1e-6  # p >= 1 / (2 G)
    assert imp.settings["global_sampling"] == "importance" and "global_sampling" not in uni.settings
    with pytest.raises(ValueError, match="global_sampling"):
        QuerySampler([0, 0, 0], [1, 1, 1], global_sampling="hard")
