"""Cost of ECSE relative to the bare model (energy + forces), union vs per-environment mode.

A 1-block PET (``n_gnn_layers=1``: strictly local, so both ``ECSE(mode="union")`` and
``ECSE(mode="atom")`` apply) with random weights, on one test cell of each mlearn element
(Si, Ge: 64 atoms; Li, Mo: 54 atoms), at the cutoffs of the PET runs in ``results/pet``.
Every round times bare PET, ECSE union and ECSE atom once each, in rotating order
(interleaved: robust to the load drift of a shared machine); the reported ratios are medians
over rounds of (ECSE time / bare time) of the same round. Also recorded: frames kept per
atom (``k``, atom mode) and model evaluations.

    python benchmarks/ecse_cost.py [--rounds 5] [--threads 1] [--elements Si Ge Li Mo]
        [--r-cut 5.0] [--data-dir ../shared/data] [--out results/pet/ecse_cost.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pointsym.datasets import load_atomistic
from pointsym.models import PET
from pointsym.structures import batch_structures, energy_and_forces
from pointsym.symmetrize import ECSE

#: Cutoff (Å) and switching width of the PET runs of results/pet (the data's natural cutoffs).
CUTOFFS = {"Si": (3.5, 0.5), "Ge": (3.7, 0.5), "Li": (4.5, 0.5), "Mo": (4.2, 0.6)}
ROOT = Path(__file__).resolve().parents[1]


def _structure(name: str, data_dir: str | None):
    try:
        frames = load_atomistic(name, "test", data_dir=data_dir)
        source = "full"
    except (FileNotFoundError, ValueError, OSError):
        if name != "Si":
            return None, None
        frames, source = load_atomistic(name, "test", source="embedded"), "embedded"
    largest = max(len(a) for a in frames)
    return next(a for a in frames if len(a) == largest), source


def _model(name: str, r_cut: float | None = None) -> PET:
    r_cut, delta = (r_cut, 0.5) if r_cut else CUTOFFS[name]
    torch.manual_seed(0)
    pet = PET([name], r_cut=r_cut, d_model=32, n_gnn_layers=1, n_trans_layers=1, n_heads=4, dim_feedforward=64,
              head_hidden=32, cutoff_delta=delta)
    return pet.double()


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds after one warm-up (default: 5)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    ap.add_argument("--elements", nargs="+", default=list(CUTOFFS), choices=list(CUTOFFS),
                    help="mlearn elements (default: Si Ge Li Mo)")
    default_data = ROOT.parent / "shared" / "data"
    ap.add_argument("--data-dir", default=str(default_data) if default_data.is_dir() else None,
                    help="data root (default: ../shared/data when present, else the embedded Si set)")
    ap.add_argument("--r-cut", type=float, default=None,
                    help="one cutoff (Å, switching width 0.5) for all elements (default: the runs' cutoffs)")
    ap.add_argument("--out", default=str(ROOT / "results" / "pet" / "ecse_cost.json"),
                    help="JSON output (default: results/pet/ecse_cost.json)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.elements:
        atoms, source = _structure(name, args.data_dir)
        if atoms is None:
            print(f"{name}: no data under {args.data_dir}, skipped", file=sys.stderr)
            continue
        pet = _model(name, args.r_cut)
        b = batch_structures([atoms], dtype=torch.float64)
        inputs = b.inputs()
        union = ECSE(pet, r_cut=pet.r_cut)
        atom = ECSE(pet, r_cut=pet.r_cut, mode="atom")
        calls = {k: functools.partial(energy_and_forces, m, **inputs)
                 for k, m in (("bare", pet), ("union", union), ("atom", atom))}
        ref = {k: f() for k, f in calls.items()}  # warm-up, and the exactness numbers below
        n_atoms = len(atoms)
        per_atom_k = atom.last_stats["n_frames_per_atom"]
        stats = {"union_frames": int(union.last_stats["n_frames"][0]),
                 "union_evaluations": int(union.last_stats["n_evaluations"][0]),
                 "atom_frames_per_atom_mean": float(np.mean(per_atom_k)),
                 "atom_env_evaluations": int(atom.last_stats["n_evaluations"][0]),
                 "atom_w_aux_max": float(np.max(atom.last_stats["w_aux"]))}
        times = {k: [] for k in calls}
        order = list(calls)
        for r in range(args.rounds):
            for k in order[r % 3:] + order[:r % 3]:
                times[k].append(_timed(calls[k]))
        ratio = {m: statistics.median(t / b_ for t, b_ in zip(times[m], times["bare"])) for m in ("union", "atom")}
        rows.append({
            "element": name, "source": source, "n_atoms": n_atoms, "r_cut": pet.r_cut,
            "cutoff_delta": pet.cutoff_delta,
            "median_s": {k: statistics.median(v) for k, v in times.items()},
            "ratio_union": ratio["union"], "ratio_atom": ratio["atom"],
            **stats,
            "floor_2k": 2 * stats["atom_frames_per_atom_mean"],
            "energy": {k: float(v["energy"][0].detach()) for k, v in ref.items()},
        })
        row = rows[-1]
        print(f"{name}: {n_atoms} atoms, bare {row['median_s']['bare'] * 1e3:.1f} ms, union x{ratio['union']:.1f}, "
              f"atom x{ratio['atom']:.1f} (k = {stats['atom_frames_per_atom_mean']:.1f}/atom)", flush=True)
    print()
    print("| element | atoms | r_cut (Å) | bare E+F (ms) | union / bare | atom / bare | k per atom | 2k floor |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['element']} | {row['n_atoms']} | {row['r_cut']} | {row['median_s']['bare'] * 1e3:.1f} | "
              f"{row['ratio_union']:.1f} | {row['ratio_atom']:.1f} | {row['atom_frames_per_atom_mean']:.1f} | "
              f"{row['floor_2k']:.1f} |")
    meta = {"rounds": args.rounds, "threads": args.threads, "torch": torch.__version__,
            "python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "dtype": "float64",
            "model": "PET d_model 32, n_gnn_layers 1, n_trans_layers 1, heads 4, FFN 64, head 32, random weights",
            "timing": "energy_and_forces; interleaved rounds in rotating order; ratio = median over rounds of "
                      "ECSE time / bare time in the same round",
            "command": " ".join(["python", "benchmarks/ecse_cost.py", *(argv if argv is not None else sys.argv[1:])])}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    tmp.replace(out)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
