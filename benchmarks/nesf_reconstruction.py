"""NeSF reconstruction speed on one core: decoders with BatchNorm folded in vs their plain forward.

```
python benchmarks/nesf_reconstruction.py            # 16 lim_l6 test structures, 3 interleaved rounds
```

Both fields decode the committed model ``results/nesf/nesf_lim_l6.pt`` with the recorded
evaluation settings (``--freeze-tol 1e-3``, otherwise the spec's parameters): ``plain`` calls
the decoders' evaluation-mode ``forward`` (the code before this change), ``folded`` is what
:class:`pointsym.fields.NeuralField` does now (:meth:`inference_plan` / :meth:`forward_plan`:
each BatchNorm folded into the next layer, in-place ReLU). Reports seconds per structure
(median over rounds, order alternated) and whether the decoded atoms agree. Writes
``results/nesf/reconstruction_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from pointsym.fields import NeuralField, ReconstructionParams, load_nesf, load_nesf_set, reconstruct


class PlainField(NeuralField):
    """The decoders' ordinary evaluation-mode forward (before the folding)."""

    def position(self, queries, batch):
        dec = self.model.position_decoder
        parts = self._chunks(queries, batch, lambda q, b: dec(self.latent, q, b, latent_projection=self._proj_pos))
        return torch.cat(parts).double().cpu().numpy() if parts else np.zeros((0, 3))

    def species(self, queries, batch):
        dec = self.model.species_decoder
        parts = self._chunks(queries, batch,
                             lambda q, b: dec(self.latent, q, b, latent_projection=self._proj_spec).argmax(-1))
        if not parts:
            return np.zeros(0, dtype=np.int64)
        return self.model.species_number(torch.cat(parts)).cpu().numpy().astype(np.int64)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="results/nesf/nesf_lim_l6.pt")
    p.add_argument("--structures", type=int, default=16, help="first N lim_l6 test structures (default: 16)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: 3)")
    p.add_argument("--out", default="results/nesf/reconstruction_speed.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model, _ = load_nesf(args.model)
    crystals = load_nesf_set("lim_l6", "test").subset(range(args.structures))
    params = ReconstructionParams(freeze_tol=1e-3)
    fields = {"plain": PlainField(model, crystals), "folded": NeuralField(model, crystals)}
    seconds: dict[str, list[float]] = {k: [] for k in fields}
    recs = {}
    for r in range(args.rounds):
        for name in (list(fields) if r % 2 == 0 else list(fields)[::-1]):
            tic = time.perf_counter()
            recs[name] = reconstruct(fields[name], model.box_min, model.box_max, params)
            seconds[name].append((time.perf_counter() - tic) / len(crystals))
        print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f} s/structure" for k, v in seconds.items()),
              flush=True)
    a, b = recs["plain"], recs["folded"]
    same_counts = all(len(x.numbers) == len(y.numbers) for x, y in zip(a, b))
    same_species = same_counts and all(np.array_equal(x.numbers, y.numbers) for x, y in zip(a, b))
    max_dpos = max((float(np.abs(x.positions - y.positions).max()) for x, y in zip(a, b)
                    if len(x.numbers) and len(x.numbers) == len(y.numbers)), default=0.0)
    med = {k: statistics.median(v) for k, v in seconds.items()}
    result = {"model": args.model, "n_structures": len(crystals), "threads": 1, "params": params.to_dict(),
              "seconds_per_structure": seconds, "median_seconds_per_structure": med,
              "median_speedup": statistics.median(x / y for x, y in zip(seconds["plain"], seconds["folded"])),
              "same_atom_counts": same_counts, "same_species": same_species,
              "max_position_difference": max_dpos}
    print(f"plain {med['plain']:.3f} s/structure, folded {med['folded']:.3f} s/structure "
          f"(x{result['median_speedup']:.2f}); same counts {same_counts}, same species {same_species}, "
          f"max position difference {max_dpos:.2e} Å")
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=1))
    print(f"results -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
