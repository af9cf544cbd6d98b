"""NeSF training throughput: the old training step vs the new one, and an equal-steps accuracy check.

```
python benchmarks/nesf_throughput.py                 # profile + 5 interleaved rounds + 400-step check
python benchmarks/nesf_throughput.py --quick         # 2 rounds, batch 16, 60 steps (about 1 min)
```

Paths (same model initialisation, one thread, one process):

- ``old``: the decoder forward as it was before (``torch.cat([h, q])`` at every layer, latent
  gather by advanced indexing), float32;
- ``new_fp32``: the current decoder (query terms of all layers in one matrix product, no
  concatenation), float32; mathematically the same function;
- ``new_bf16``: the current decoder under bfloat16 autocast (``--precision bf16``), float32
  master weights.

Throughput: one full training step (query sampling, nearest-atom targets, encoder, both
decoders, loss, backward, Adam) on lim_l6 train batches with the default ``nesf-train``
settings (batch 64, the whole jittered global grid, 64 local and 216 species queries per
atom). Structure-queries per second = (position + species queries of the batch) / step
time. The paths alternate within each round (order rotated); ratios are medians over rounds
of per-round ratios, robust to the load of a shared machine.

Accuracy check (plus ``new_bf16_importance``: ``new_bf16`` with ``--global-sampling importance``):
every path trains ``--steps`` steps from the same seed (same initial
weights, batches and query draws) on the first ``--subset`` lim_l6 train structures with the
recorded run's query subsets (128 global, 16 local, 8 species); the training loss per step
and, every ``--eval-every`` steps, the float32 validation loss / field error near atoms /
species accuracy on the first 64 lim_l6 val structures are recorded.

Writes ``results/nesf/throughput.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pointsym.fields import (
    NeSF,
    NeSFLoss,
    QuerySampler,
    batched_nearest_atoms,
    collate_crystals,
    crystal_dataset,
    load_nesf_set,
)
from pointsym.fields._model import _check_tensor, _QueryConditionedField
from pointsym.training import seed_everything

NEW_FORWARD = _QueryConditionedField.forward


def old_forward(self, latent, queries, query_batch, latent_projection=None):
    """The decoder forward before this change (concatenation at every layer), for comparison."""
    _check_tensor("latent", latent, (None, self.latent_dim))
    _check_tensor("queries", queries, (None, 3))
    _check_tensor("query_batch", query_batch, (queries.shape[0],), floating=False)
    g = self.encoding(queries)
    first = self.hidden[0]
    zw = self.latent_projection(latent) if latent_projection is None else latent_projection
    h = zw[query_batch.long()] + nn.functional.linear(g, first.weight[:, self.latent_dim:], first.bias)
    h = self.norms[0](torch.relu(h))
    for lin, norm in zip(self.hidden[1:], self.norms[1:]):
        h = norm(torch.relu(lin(torch.cat([h, g], dim=-1))))
    return self.out(h)


PATHS = {"old": (old_forward, "fp32"), "new_fp32": (NEW_FORWARD, "fp32"), "new_bf16": (NEW_FORWARD, "bf16")}


def use_path(name: str) -> str:
    forward, precision = PATHS[name]
    _QueryConditionedField.forward = forward
    return precision


def train_step(model, opt, loss_fn, batch) -> tuple[float, int]:
    model.train()
    loss, metrics = loss_fn(model, batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach()), metrics


def n_queries(sampler, batch) -> int:
    n_atoms = batch.positions.shape[0]
    n_glob = sampler.n_global or len(sampler.global_grid)
    return (batch.batch_size * n_glob + n_atoms * (sampler.n_local or len(sampler.local_offsets))
            + n_atoms * (sampler.n_species or len(sampler.species_offsets)))


def profile_step(model, sampler, items, batch_size, precision, repeats) -> dict[str, float]:
    """Median seconds of each phase of one training step (mirrors NeSFLoss.__call__)."""
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    model.train()
    rows = []
    rng = np.random.default_rng(0)
    for _ in range(repeats + 1):
        t = {}
        tic = time.perf_counter()
        batch = collate_crystals([items[i] for i in rng.choice(len(items), batch_size, replace=False)])
        t["data loading (collate)"] = time.perf_counter() - tic
        tic = time.perf_counter()
        q = sampler.sample(batch.positions, batch.batch, batch.batch_size, train=True)
        t["query sampling"] = time.perf_counter() - tic
        tic = time.perf_counter()
        with torch.no_grad():
            near_p = batched_nearest_atoms(batch.positions, batch.batch, q["position_queries"], q["position_batch"],
                                           batch.batch_size)
            near_s = batched_nearest_atoms(batch.positions, batch.batch, q["species_queries"], q["species_batch"],
                                           batch.batch_size)
        target_v = batch.positions[near_p] - q["position_queries"]
        target_s = batch.species_index[near_s]
        t["nearest-atom targets"] = time.perf_counter() - tic
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            tic = time.perf_counter()
            z = model.encode(batch.positions, batch.species_index, batch.batch, batch.lengths, batch.angles)
            t["encoder"] = time.perf_counter() - tic
            tic = time.perf_counter()
            pred_v = model.position_field(z, q["position_queries"], q["position_batch"])
            t["position decoder (forward)"] = time.perf_counter() - tic
            tic = time.perf_counter()
            logits = model.species_logits(z, q["species_queries"], q["species_batch"])
            t["species decoder (forward)"] = time.perf_counter() - tic
            tic = time.perf_counter()
            pred_len, pred_ang = model.lattice(z)
        f = nn.functional
        loss = (10 * f.mse_loss(pred_v.float(), target_v) + 0.1 * f.cross_entropy(logits.float(), target_s)
                + f.mse_loss(pred_len.float(), batch.lengths) + f.mse_loss(pred_ang.float(), batch.angles))
        t["lattice head + loss"] = time.perf_counter() - tic
        tic = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t["backward (all parts)"] = time.perf_counter() - tic
        tic = time.perf_counter()
        opt.step()
        t["Adam step"] = time.perf_counter() - tic
        t["total"] = sum(t.values())
        t["queries"] = q["position_queries"].shape[0] + q["species_queries"].shape[0]
        rows.append(t)
    rows = rows[1:]  # the first is a warm-up
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def throughput(models, sampler, items, batch_size, rounds) -> dict:
    rng = np.random.default_rng(1)
    opts = {k: torch.optim.Adam(m.parameters(), 1e-3) for k, m in models.items()}
    names = list(models)
    warm = collate_crystals([items[i] for i in rng.choice(len(items), batch_size, replace=False)])
    for k in names:  # untimed warm-up
        train_step(models[k], opts[k], NeSFLoss(sampler, precision=use_path(k)), warm)
    per_round = []
    for r in range(rounds):
        batch = collate_crystals([items[i] for i in rng.choice(len(items), batch_size, replace=False)])
        seconds = {}
        for k in names[r % len(names):] + names[: r % len(names)]:
            loss_fn = NeSFLoss(sampler, precision=use_path(k))
            torch.manual_seed(100 + r)  # same query draws for every path of the round
            tic = time.perf_counter()
            train_step(models[k], opts[k], loss_fn, batch)
            seconds[k] = time.perf_counter() - tic
        q = n_queries(sampler, batch)
        per_round.append({"queries": q, "seconds": seconds})
        print(f"  round {r + 1}/{rounds}: {q} queries; " + ", ".join(f"{k} {s:.2f} s" for k, s in seconds.items()),
              flush=True)
    out = {"rounds": per_round, "paths": {}}
    for k in names:
        rates = [row["queries"] / row["seconds"][k] for row in per_round]
        out["paths"][k] = {"median_seconds_per_step": statistics.median(row["seconds"][k] for row in per_round),
                           "median_queries_per_second": statistics.median(rates),
                           "median_speedup_vs_old": statistics.median(row["seconds"]["old"] / row["seconds"][k]
                                                                      for row in per_round)}
    return out


def accuracy_check(init, train_items, val_batch, sampler, steps, batch_size, eval_every, importance) -> dict:
    eval_loss = NeSFLoss(sampler, eval_subsample=False)
    out = {}
    runs = [(k, k, sampler) for k in PATHS] + [("new_bf16_importance", "new_bf16", importance)]
    for name, k, train_sampler in runs:
        precision = use_path(k)
        model = copy.deepcopy(init)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        loss_fn = NeSFLoss(train_sampler, precision=precision)
        seed_everything(0)
        order = torch.randperm(len(train_items), generator=torch.Generator().manual_seed(0)).tolist()
        losses, evals = [], []
        tic = time.perf_counter()
        for step in range(steps):
            s = (step * batch_size) % len(order)
            idx = order[s:s + batch_size] if s + batch_size <= len(order) else order[:batch_size]
            loss, _ = train_step(model, opt, loss_fn, collate_crystals([train_items[i] for i in idx]))
            losses.append(loss)
            if (step + 1) % eval_every == 0 or step + 1 == steps:
                use_path("new_fp32")  # evaluate every path's weights the same way (float32)
                model.eval()
                with torch.no_grad():
                    vl, vm = eval_loss(model, val_batch)
                evals.append({"step": step + 1, "val_loss": float(vl), **{m: vm[m] for m in
                              ("position_mse", "local_position_mae", "species_acc")}})
                use_path(k)
        seconds = time.perf_counter() - tic
        tail = evals[-4:]  # the last evaluations, averaged (one evaluation is noisy this early)
        e = {m: float(np.mean([row[m] for row in tail])) for m in ("val_loss", "local_position_mae", "species_acc")}
        out[name] = {"train_loss": losses, "eval": evals, "seconds": seconds,
                     "mean_train_loss_last_50": float(np.mean(losses[-50:])),
                     "mean_of_last_evals": {"steps": [row["step"] for row in tail], **e}}
        print(f"  {name:19s} {steps} steps in {seconds:.0f} s: mean train loss (last 50) "
              f"{out[name]['mean_train_loss_last_50']:.4f}; last {len(tail)} evaluations: val loss "
              f"{e['val_loss']:.4f}, field error near atoms {e['local_position_mae']:.4f} Å, species acc "
              f"{e['species_acc']:.3f}", flush=True)
    ref = np.asarray(out["old"]["train_loss"])
    for k in ("new_fp32", "new_bf16", "new_bf16_importance"):
        d = np.abs(np.asarray(out[k]["train_loss"]) - ref) / np.abs(ref)
        out[k]["train_loss_rel_diff_vs_old"] = {"median": float(np.median(d)), "max": float(d.max())}
    use_path("new_fp32")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default: 5)")
    p.add_argument("--batch-size", type=int, default=64, help="structures per step (default: 64, nesf-train's)")
    p.add_argument("--profile-repeats", type=int, default=2, help="profiled steps per path (default: 2)")
    p.add_argument("--steps", type=int, default=400, help="steps of the accuracy check (default: 400)")
    p.add_argument("--subset", type=int, default=256, help="lim_l6 train structures of the check (default: 256)")
    p.add_argument("--check-batch-size", type=int, default=32, help="batch of the check (default: 32)")
    p.add_argument("--eval-every", type=int, default=50, help="steps between validations (default: 50)")
    p.add_argument("--data-dir", default=None, help="data root (default: pointsym's)")
    p.add_argument("--quick", action="store_true", help="2 rounds, batch 16, 60 check steps")
    p.add_argument("--out", default="results/nesf/throughput.json")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.batch_size, args.steps, args.eval_every, args.profile_repeats = 2, 16, 60, 30, 1
    torch.set_num_threads(1)
    kw = {"data_dir": args.data_dir} if args.data_dir else {}
    train = load_nesf_set("lim_l6", "train", **kw)
    val = load_nesf_set("lim_l6", "val", **kw)
    lo, hi = train.bounding_box()
    seed_everything(0)
    init = NeSF(box_min=lo.tolist(), box_max=hi.tolist())
    items = crystal_dataset(train, init)
    sampler = QuerySampler(lo, hi)  # nesf-train's defaults: full sampling
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "batch_size": args.batch_size,
              "sampler": sampler.settings, "n_parameters": sum(p.numel() for p in init.parameters())}

    print("profile of one default training step (median seconds):", flush=True)
    result["profile"] = {}
    for k in PATHS:
        precision = use_path(k)
        result["profile"][k] = prof = profile_step(copy.deepcopy(init), sampler, items, args.batch_size, precision,
                                                   args.profile_repeats)
        print(f"  {k}: " + ", ".join(f"{n} {v:.3f}" for n, v in prof.items() if n != "queries")
              + f"; {prof['queries']:.0f} queries", flush=True)

    print(f"throughput ({args.rounds} interleaved rounds, batch {args.batch_size}, default sampling):", flush=True)
    result["throughput"] = throughput({k: copy.deepcopy(init) for k in PATHS}, sampler, items, args.batch_size,
                                      args.rounds)
    for k, v in result["throughput"]["paths"].items():
        print(f"  {k:9s} {v['median_queries_per_second']:9.0f} structure-queries/s, "
              f"{v['median_seconds_per_step']:.2f} s/step, x{v['median_speedup_vs_old']:.2f} vs old")

    print(f"equal-steps accuracy check ({args.steps} steps, batch {args.check_batch_size}, first {args.subset} "
          "lim_l6 train structures, 128/16/8 queries):", flush=True)
    check_sampler = QuerySampler(lo, hi, n_global=128, n_local=16, n_species=8)
    importance = QuerySampler(lo, hi, n_global=128, n_local=16, n_species=8, global_sampling="importance")
    sub = crystal_dataset(train.subset(range(min(args.subset, len(train)))), init)
    val_batch = collate_crystals(crystal_dataset(val.subset(range(64)), init))
    result["accuracy_check"] = {"steps": args.steps, "subset": args.subset, "batch_size": args.check_batch_size,
                                "sampler": check_sampler.settings,
                                "paths": accuracy_check(init, sub, val_batch, check_sampler, args.steps,
                                                        args.check_batch_size, args.eval_every, importance)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"results -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
