"""NeSF reconstruction speed on one core: the decoders before this change, today, and with BatchNorm folded.

```
python benchmarks/nesf_reconstruction.py            # 16 lim_l6 test structures, 3 interleaved rounds
```

All fields decode the committed model ``results/nesf/nesf_lim_l6.pt`` with the recorded
evaluation settings (``--freeze-tol 1e-3``, otherwise the spec's parameters): ``before`` is the
decoder forward before this change (concatenation at every layer), ``split`` today's
evaluation-mode ``forward`` (split weights), ``folded`` what :class:`pointsym.fields.NeuralField`
does now (``inference_plan`` / ``forward_plan``: each BatchNorm folded into the next layer,
in-place ReLU). Reports seconds per structure (median over rounds, order rotated) and whether
the atoms decoded by ``folded`` and ``before`` agree. Writes
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


def concat_forward(dec, zw, q, b):
    """The decoder forward before this change: ``torch.cat([h, q])`` and a Linear at every layer."""
    g = dec.encoding(q)
    first = dec.hidden[0]
    h = zw[b.long()] + torch.nn.functional.linear(g, first.weight[:, dec.latent_dim:], first.bias)
    h = dec.norms[0](torch.relu(h))
    for lin, norm in zip(dec.hidden[1:], dec.norms[1:]):
        h = norm(torch.relu(lin(torch.cat([h, g], dim=-1))))
    return dec.out(h)


class PlainField(NeuralField):
    """The decoders' ordinary evaluation-mode forward (``concat=True``: the code before this change)."""

    concat = False

    def _eval(self, dec, proj, q, b):
        return concat_forward(dec, proj, q, b) if self.concat else dec(self.latent, q, b, latent_projection=proj)

    def position(self, queries, batch):
        dec = self.model.position_decoder
        parts = self._chunks(queries, batch, lambda q, b: self._eval(dec, self._proj_pos, q, b))
        return torch.cat(parts).double().cpu().numpy() if parts else np.zeros((0, 3))

    def species(self, queries, batch):
        dec = self.model.species_decoder
        parts = self._chunks(queries, batch, lambda q, b: self._eval(dec, self._proj_spec, q, b).argmax(-1))
        if not parts:
            return np.zeros(0, dtype=np.int64)
        return self.model.species_number(torch.cat(parts)).cpu().numpy().astype(np.int64)


class BeforeField(PlainField):
    concat = True


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
    fields = {"before": BeforeField(model, crystals), "split": PlainField(model, crystals),
              "folded": NeuralField(model, crystals)}
    seconds: dict[str, list[float]] = {k: [] for k in fields}
    recs = {}
    for r in range(args.rounds):
        names = list(fields)
        for name in names[r % len(names):] + names[: r % len(names)]:
            tic = time.perf_counter()
            recs[name] = reconstruct(fields[name], model.box_min, model.box_max, params)
            seconds[name].append((time.perf_counter() - tic) / len(crystals))
        print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f} s/structure" for k, v in seconds.items()),
              flush=True)
    a, b = recs["before"], recs["folded"]
    same_counts = all(len(x.numbers) == len(y.numbers) for x, y in zip(a, b))
    same_species = same_counts and all(np.array_equal(x.numbers, y.numbers) for x, y in zip(a, b))
    max_dpos = max((float(np.abs(x.positions - y.positions).max()) for x, y in zip(a, b)
                    if len(x.numbers) and len(x.numbers) == len(y.numbers)), default=0.0)
    med = {k: statistics.median(v) for k, v in seconds.items()}
    result = {"model": args.model, "n_structures": len(crystals), "threads": 1, "params": params.to_dict(),
              "seconds_per_structure": seconds, "median_seconds_per_structure": med,
              "median_speedup_vs_before": {k: statistics.median(x / y for x, y in zip(seconds["before"], v))
                                           for k, v in seconds.items()},
              "same_atom_counts": same_counts, "same_species": same_species,
              "max_position_difference": max_dpos}
    print(", ".join(f"{k} {med[k]:.3f} s/structure (x{result['median_speedup_vs_before'][k]:.2f})" for k in med)
          + f"; folded vs before: same counts {same_counts}, same species {same_species}, max position "
          f"difference {max_dpos:.2e} Å")
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=1))
    print(f"results -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
