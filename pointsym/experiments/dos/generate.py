"""``pointsym dos-data``: generate the carbon-allotrope DOS data set (resumable, seeded).

Per family and temperature two independent Langevin trajectories are run (see
:mod:`.structures`): trajectory ``a`` gives the training and validation snapshots (split at
random, seeded), trajectory ``b`` (another seed) the test snapshots, so that no test structure
is a near neighbour in time of a training one. Each snapshot's electronic structure is cached
in its own file, ``<out>/cache/<method>/<family>/<T>K/<traj><index>.npz``; a rerun skips the
cached ones (the MD is recomputed, it is deterministic and cheap). At the end the cache is
assembled into ``<out>/carbon_dos_<method>.extxyz.gz`` and ``<out>/manifest_<method>.json``
(settings, versions, counts, timings).

Methods: ``xtb`` (GFN1-xTB, every snapshot) and ``gpaw`` (PBE/LCAO-dzp on the first
``--dft-per-family`` test snapshots of every family and temperature 300 K, the same
structures as the xTB ones).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pointsym.experiments.dos.structures import FAMILIES, MDSettings, build_pristine, md_snapshots
from pointsym.structures import read_structures

__all__ = ["DOSDataConfig", "assemble", "generate", "snapshot_plan", "write_subset"]

METHODS = ("xtb", "gpaw")


@dataclass(frozen=True)
class DOSDataConfig:
    """Settings of the generator (the CLI options of ``pointsym dos-data``)."""

    families: tuple[str, ...] = field(default=tuple(FAMILIES), metadata={
        "help": "structure families to generate", "choices": tuple(FAMILIES)})
    temperatures: tuple[float, ...] = field(default=(300.0, 600.0), metadata={
        "help": "MD temperatures", "unit": "K", "gt": 0})
    n_train: int = field(default=80, metadata={
        "help": "training snapshots per family and temperature (2 x 80 = 160 per family, as in CSNN)", "min": 0})
    n_val: int = field(default=20, metadata={"help": "validation snapshots per family and temperature", "min": 0})
    n_test: int = field(default=10, metadata={
        "help": "test snapshots per family and temperature, from an independent trajectory", "min": 0})
    method: str = field(default="xtb", metadata={
        "help": "electronic structure: xtb (GFN1-xTB, every snapshot) or gpaw (PBE, the DFT subset)",
        "choices": METHODS})
    dft_per_family: int = field(default=5, metadata={
        "help": "with --method gpaw: test snapshots per family (at the first temperature)", "min": 0})
    seed: int = field(default=0, metadata={"help": "random seed of the MD and of the split", "min": 0})
    md: MDSettings = field(default_factory=MDSettings, metadata={"cli": False})

    def __post_init__(self) -> None:
        for f in self.families:
            if f not in FAMILIES:
                raise ValueError(f"Expected every family in {list(FAMILIES)} (got {f!r}).")
        if self.method not in METHODS:
            raise ValueError(f"Expected 'method' to be one of {list(METHODS)} (got {self.method!r}).")
        for name in ("n_train", "n_val", "n_test", "dft_per_family"):
            if getattr(self, name) < 0:
                raise ValueError(f"Expected '{name}' >= 0 (got {getattr(self, name)}).")
        for t in self.temperatures:
            if not t > 0:
                raise ValueError(f"Expected temperatures > 0 K (got {t}).")


def _seed(base: int, *parts: Any) -> int:
    """A stable 63-bit seed from the base seed and labels (independent of PYTHONHASHSEED)."""
    text = ":".join(str(p) for p in (base, *parts)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def snapshot_plan(cfg: DOSDataConfig) -> list[dict[str, Any]]:
    """Every snapshot to compute: family, temperature, trajectory, index in it, split and seed."""
    plan = []
    for family in cfg.families:
        for temp in cfg.temperatures:
            n_a = cfg.n_train + cfg.n_val
            rng = np.random.default_rng(_seed(cfg.seed, family, temp, "split"))
            val = set(rng.permutation(n_a)[: cfg.n_val].tolist())
            for traj, count in (("a", n_a), ("b", cfg.n_test)):
                for k in range(count):
                    split = "test" if traj == "b" else ("val" if k in val else "train")
                    if cfg.method == "gpaw" and (split != "test" or temp != cfg.temperatures[0]
                                                 or k >= cfg.dft_per_family):
                        continue
                    plan.append({"family": family, "temperature": float(temp), "traj": traj, "index": k,
                                 "split": split, "md_seed": _seed(cfg.seed, family, temp, traj)})
    return plan


def _cache_path(out: Path, method: str, item: dict[str, Any]) -> Path:
    return (out / "cache" / method / item["family"] / f"{int(item['temperature'])}K"
            / f"{item['traj']}{item['index']:04d}.npz")


def _compute(atoms, method: str) -> dict[str, Any]:
    from pointsym.experiments.dos.electronic import gpaw_single_point, xtb_single_point

    return xtb_single_point(atoms) if method == "xtb" else gpaw_single_point(atoms)


def _write_cache(path: Path, atoms, item: dict[str, Any], result: dict[str, Any], seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    meta = {**item, **{k: v for k, v in result.items() if np.isscalar(v)},
            "kpts": result.get("kpts", [1, 1, 1]), "seconds": seconds}
    np.savez_compressed(
        tmp, positions=atoms.positions, numbers=atoms.numbers, cell=atoms.cell.array, pbc=atoms.pbc,
        tags=atoms.get_tags(), eigenvalues=np.asarray(result["eigenvalues"]),
        weights=np.asarray(result["weights"]), occupations=np.asarray(result["occupations"]),
        meta=np.array(json.dumps(meta)))
    os.replace(tmp, path)  # atomic: an interrupted run never leaves a half-written cache file


def generate(cfg: DOSDataConfig, out: str | os.PathLike[str], *, quiet: bool = False) -> dict[str, Any]:
    """Compute every missing snapshot of ``cfg`` into the cache under ``out``, then :func:`assemble`.

    Returns the manifest (also written as ``manifest_<method>.json``).
    """
    from pointsym.experiments.common.cli import progress

    out = Path(out)
    plan = snapshot_plan(cfg)
    restored = _restore_cache(cfg, out, plan)
    todo = [it for it in plan if not _cache_path(out, cfg.method, it).is_file()]
    t0 = time.perf_counter()
    if todo:
        groups: dict[tuple[str, float, str], list[dict[str, Any]]] = {}
        for it in todo:
            groups.setdefault((it["family"], it["temperature"], it["traj"]), []).append(it)
        bar = progress(range(len(todo)), quiet=quiet, desc=f"dos-data {cfg.method}", total=len(todo))
        it_bar = iter(bar)
        pristine: dict[str, Any] = {}
        for (family, temp, _traj), items in groups.items():
            if family not in pristine:
                pristine[family] = build_pristine(family)
            wanted = {it["index"]: it for it in items}
            n_run = max(wanted) + 1
            for k, snap in enumerate(md_snapshots(pristine[family], temp, n_run, seed=items[0]["md_seed"],
                                                  settings=cfg.md)):
                if k not in wanted:
                    _check_replay(restored, (family, temp, _traj, k), snap)
                    continue
                snap.info.clear()
                t1 = time.perf_counter()
                result = _compute(snap, cfg.method)
                _write_cache(_cache_path(out, cfg.method, wanted[k]), snap, wanted[k], result,
                             time.perf_counter() - t1)
                next(it_bar, None)
        if hasattr(bar, "close"):
            bar.close()
    return assemble(cfg, out, generation_seconds=time.perf_counter() - t0)


def _restore_cache(cfg: DOSDataConfig, out: Path, plan: list[dict[str, Any]]) -> dict[tuple, np.ndarray]:
    """Refill missing cache files from an assembled ``carbon_dos_<method>.extxyz.gz`` in ``out``.

    The cache is not committed, the assembled file is: a later session (or another machine)
    resumes from it. Returns the positions of every restored snapshot, keyed by (family,
    temperature, trajectory, index), so that the replayed MD can be checked against them.
    """
    path = out / f"carbon_dos_{cfg.method}.extxyz.gz"
    if not path.is_file():
        return {}
    by_key = {(it["family"], it["temperature"], it["traj"], it["index"]): it for it in plan}
    positions: dict[tuple, np.ndarray] = {}
    for a in read_structures(path, format="extxyz"):
        key = (a.info["family"], float(a.info["temperature"]), a.info["traj"], int(a.info["index"]))
        item = by_key.get(key)
        if item is None or a.info.get("method", cfg.method) != cfg.method:
            continue
        positions[key] = a.positions.copy()
        cache = _cache_path(out, cfg.method, item)
        if cache.is_file():
            continue
        n_k = int(np.prod(a.info.get("kpts", [1, 1, 1])))
        eig = np.asarray(a.info["eigenvalues"])
        shape = (-1,) if cfg.method == "xtb" else (n_k, -1)
        weights = np.asarray(a.info.get("eigenvalue_weights", np.full(eig.shape, 2.0)))
        result = {"eigenvalues": eig.reshape(shape), "weights": weights.reshape(shape),
                  "occupations": np.asarray(a.info["occupations"]).reshape(shape),
                  "energy": float(a.info["total_energy"]), "homo": float(a.info["homo"]),
                  "lumo": float(a.info["lumo"]), "n_electrons": float(a.info["n_electrons"]),
                  "kpts": np.asarray(a.info.get("kpts", [1, 1, 1])).tolist()}
        _write_cache(cache, a, item, result, float(a.info.get("seconds", 0.0)))
    return positions


def _check_replay(restored: dict[tuple, np.ndarray], key: tuple, snap) -> None:
    """The replayed MD must reproduce a restored snapshot; else the environment changed."""
    ref = restored.get(key)
    if ref is None:
        return
    diff = float(np.abs(ref - snap.positions).max())
    if diff > 1e-5:
        raise RuntimeError(
            f"Replaying the MD of {key} does not reproduce the stored snapshot (max |dr| = {diff:.2e} A): the "
            "MD codes or their versions differ from the ones that made the data set (see manifest_*.json). "
            "Install those versions, or generate into a new --out.")


def assemble(cfg: DOSDataConfig, out: str | os.PathLike[str], *, generation_seconds: float = 0.0) -> dict[str, Any]:
    """Gather the cached snapshots of ``cfg`` into one extended-XYZ file plus a manifest.

    Every frame's ``info`` holds ``family``, ``temperature`` (K), ``split``, ``traj``, ``index``,
    ``method``, ``total_energy`` (eV), ``homo`` / ``lumo`` (eV), ``n_electrons``, ``kpts``,
    ``seconds`` and the eigenvalues ``eigenvalues`` (eV, flattened, rounded to 1e-6 eV),
    ``occupations`` (same length) and ``eigenvalue_weights`` (left out when every weight is 2,
    as for GFN1-xTB at the Gamma point); positions in Angstrom.
    """
    import ase.io
    from ase import Atoms

    from pointsym.experiments.dos.electronic import versions

    out = Path(out)
    frames, seconds = [], []
    missing = 0
    for it in snapshot_plan(cfg):
        path = _cache_path(out, cfg.method, it)
        if not path.is_file():
            missing += 1
            continue
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            atoms = Atoms(numbers=z["numbers"], positions=z["positions"], cell=z["cell"], pbc=z["pbc"],
                          tags=z["tags"])
            atoms.info.update({
                "family": it["family"], "temperature": it["temperature"], "split": it["split"],
                "traj": it["traj"], "index": it["index"], "method": cfg.method,
                "total_energy": meta["energy"], "homo": meta["homo"], "lumo": meta["lumo"],
                "n_electrons": meta["n_electrons"], "kpts": np.asarray(meta["kpts"], dtype=int),
                "seconds": float(meta["seconds"]),
                # 1e-6 eV / 1e-6 electrons: far below the 0.1 eV grid, and the file stays a few MB
                "eigenvalues": np.round(z["eigenvalues"].reshape(-1).astype(np.float64), 6),
                "occupations": np.round(z["occupations"].reshape(-1).astype(np.float64), 6),
            })
            weights = z["weights"].reshape(-1).astype(np.float64)
            if not np.all(weights == 2.0):  # GFN1-xTB: 2 per level (spin, Gamma point), left out
                atoms.info["eigenvalue_weights"] = weights
        seconds.append(meta["seconds"])
        frames.append(atoms)
    target = out / f"carbon_dos_{cfg.method}.extxyz.gz"
    if frames:
        tmp = out / f".carbon_dos_{cfg.method}.tmp.extxyz.gz"
        ase.io.write(tmp, frames, format="extxyz")
        os.replace(tmp, target)
    counts: dict[str, dict[str, int]] = {}
    for a in frames:
        counts.setdefault(a.info["family"], {}).setdefault(a.info["split"], 0)
        counts[a.info["family"]][a.info["split"]] += 1
    manifest = {
        "file": target.name, "n_structures": len(frames), "missing": missing, "counts": counts,
        "config": dataclasses.asdict(cfg), "versions": versions(),
        "seconds_per_structure": {"mean": float(np.mean(seconds)) if seconds else None,
                                  "max": float(np.max(seconds)) if seconds else None,
                                  "total": float(np.sum(seconds))},
        "generation_seconds_this_run": generation_seconds,
        "atoms_per_family": {a.info["family"]: len(a) for a in frames},
    }
    (out / f"manifest_{cfg.method}.json").write_text(json.dumps(manifest, indent=1, default=str) + "\n")
    return manifest


def write_subset(source: str | os.PathLike[str], target: str | os.PathLike[str], *,
                 per_split: dict[str, int] | None = None, seed: int = 0) -> int:
    """Write a small subset of an assembled file (the embedded set of tests and demo).

    Takes ``per_split`` structures of every family and split (default 3 train, 1 val, 2 test),
    chosen at random (seeded), and keeps only what the loader needs (eigenvalues, HOMO/LUMO,
    electron count; the GFN1-xTB weights are 2 per level). Returns the number written.
    """
    import ase.io

    per_split = per_split or {"train": 3, "val": 1, "test": 2}
    frames = read_structures(source, format="extxyz")
    rng = np.random.default_rng(seed)
    keep = []
    for family in dict.fromkeys(a.info["family"] for a in frames):
        for split, count in per_split.items():
            idx = [k for k, a in enumerate(frames) if a.info["family"] == family and a.info["split"] == split]
            keep += sorted(rng.permutation(idx)[:count].tolist())
    out = []
    for k in keep:
        a = frames[k].copy()
        for key in ("eigenvalue_weights", "occupations", "kpts"):
            a.info.pop(key, None)
        a.info["eigenvalues"] = np.round(np.asarray(a.info["eigenvalues"]), 5)
        a.positions = np.round(a.positions, 5)
        out.append(a)
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(target, out, format="extxyz")
    return len(out)
