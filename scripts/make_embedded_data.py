"""Regenerate the small data subsets embedded in ``pointsym/datasets/embedded``.

Usage: ``python scripts/make_embedded_data.py [DATA_ROOT]`` (default ``../shared/data``).
Subsets are deterministic (first items or a seeded choice, stated per file below).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from pathlib import Path

import ase.io
import numpy as np

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1].parent / "shared" / "data")
OUT = Path(__file__).resolve().parents[1] / "pointsym" / "datasets" / "embedded"
OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)

# MNIST: first 2,000 train and first 500 test images (original order).
with np.load(ROOT / "mnist/mnist.npz") as d:
    np.savez_compressed(OUT / "mnist_subset.npz", x_train=d["x_train"][:2000], y_train=d["y_train"][:2000],
                        x_test=d["x_test"][:500], y_test=d["y_test"][:500])

# ModelNet10: 20 train / 10 test non-empty shapes per class (seeded choice), as uint8 voxel
# indices i with point = (i + 0.5) / 16 - 1 (exact inverse of the float16 values).
with np.load(ROOT / "modelnet10_voxel/modelnet10_vox32_surface_points1024.npz") as d:
    arrays = {}
    for split, per_class in (("train", 20), ("test", 10)):
        x, y, ns = d[f"x_{split}"].astype(np.float32), d[f"y_{split}"], d[f"n_surface_voxels_{split}"]
        pick = np.concatenate([rng.choice(np.flatnonzero((y == c) & (ns > 0)), per_class, replace=False)
                               for c in range(10)])
        pick.sort()
        idx = np.rint((x[pick] + 1.0) * 16.0 - 0.5)
        assert np.allclose((idx + 0.5) / 16 - 1, x[pick]) and idx.min() >= 0 and idx.max() <= 31
        arrays[f"idx_{split}"] = idx.astype(np.uint8)
        arrays[f"y_{split}"] = y[pick]
        arrays[f"n_surface_voxels_{split}"] = ns[pick]
    np.savez_compressed(OUT / "modelnet10_subset.npz", **arrays)

# lim_l6: first 60 train, 20 val, 20 test structures, same npz layout as nsf_crystals.
for split, n in (("train", 60), ("val", 20), ("test", 20)):
    with np.load(ROOT / f"nsf_crystals/lim_l6_{split}.npz") as d:
        off = d["offsets"]
        np.savez_compressed(OUT / f"lim_l6_{split}_subset.npz", positions=d["positions"][: off[n]],
                            numbers=d["numbers"][: off[n]], offsets=off[: n + 1], lengths=d["lengths"][:n],
                            angles_rad=d["angles_rad"][:n], mpid=d["mpid"][:n])
    # 'numbers' are species indices: ship the index -> atomic number map beside the subset.
    attr = json.loads((ROOT / f"nsf_crystals/lim_l6_{split}.attr.json").read_text())
    (OUT / f"lim_l6_{split}_subset.attr.json").write_text(
        json.dumps({"num_species": attr["num_species"], "sidx_to_z": attr["sidx_to_z"],
                    "mpid": attr["mpid"][:n]}))

# perov_5 val: first 20 rows of the CSV.
with gzip.open(ROOT / "cdvae_crystals/perov_5/val.csv.gz", "rt") as fh:
    text = fh.read()
rows = list(csv.reader(io.StringIO(text)))
buf = io.StringIO()
csv.writer(buf, lineterminator="\n").writerows(rows[:21])
with gzip.GzipFile(OUT / "perov_5_val_subset.csv.gz", "wb", mtime=0) as fh:
    fh.write(buf.getvalue().encode())

# Energies/forces: mlearn Si 50 train / 25 test, PET methane 50 train / 25 val / 25 test (first frames).
for src, dst, n in (("mlearn/Si_training.extxyz.gz", "Si_train_subset.xyz.gz", 50),
                    ("mlearn/Si_test.extxyz.gz", "Si_test_subset.xyz.gz", 25),
                    ("pet_methane/methane_train.xyz", "methane_train_subset.xyz.gz", 50),
                    ("pet_methane/methane_val.xyz", "methane_val_subset.xyz.gz", 25),
                    ("pet_methane/methane_test.xyz", "methane_test_subset.xyz.gz", 25)):
    frames = ase.io.read(ROOT / "mlip_small" / src, f":{n}")
    buf = io.StringIO()
    ase.io.write(buf, frames, format="extxyz")
    with gzip.GzipFile(OUT / dst, "wb", mtime=0) as fh:
        fh.write(buf.getvalue().encode())

total = sum(p.stat().st_size for p in OUT.iterdir())
print(f"wrote {len(list(OUT.iterdir()))} files, {total / 1e6:.2f} MB in {OUT}")
