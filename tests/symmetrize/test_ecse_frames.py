"""ECSE frames and weights: against a slow, obvious re-implementation, and their symmetries."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from pointsym.geometry import neighbor_list, random_reflection, random_rotation
from pointsym.symmetrize import ECSEConfig, compute_frames


def _phi(t):
    return math.tanh(1 / (t + 1) + 1 / (t - 1))


def _f(r, rc, d):  # cutoff switch, written out
    t = 2 * (r - (rc - d / 2)) / d
    return 1.0 if t <= -1 else 0.0 if t >= 1 else 0.5 * _phi(t) + 0.5


def _q(s, w, d):  # switch-on, written out
    t = 2 * (s - (w + d / 2)) / d
    return 0.0 if t <= -1 else 1.0 if t >= 1 else 0.5 * _phi(-t) + 0.5


def _slow_frames(pos, cfg):
    """Per-atom R_in and unpruned weights of every ordered pair, with plain loops."""
    nl = neighbor_list(pos, r_cut=cfg.search_cutoff)
    beta, t_beta = cfg.beta, 0.2784645427610738 / cfg.beta
    r_in, weights = [], {}
    for i in range(len(pos)):
        vecs = nl.vectors[nl.i == i]
        idx = np.flatnonzero(nl.i == i)
        r = np.linalg.norm(vecs, axis=1)
        vals, us = [cfg.r_out], [1.0]
        for a, b in itertools.combinations(range(len(vecs)), 2):
            if r[a] >= cfg.r_out or r[b] >= cfg.r_out:
                continue
            s = np.sum(np.cross(vecs[a] / r[a], vecs[b] / r[b]) ** 2)
            u = _f(r[a], cfg.r_out, cfg.delta_r) * _f(r[b], cfg.r_out, cfg.delta_r) * _q(s, cfg.omega, cfg.delta_omega)
            if u > 0:
                ea, eb = math.exp(beta * r[a]), math.exp(beta * r[b])
                vals.append((r[a] * ea + r[b] * eb) / (ea + eb) + t_beta)
                us.append(u)
        vals, us = np.array(vals), np.array(us)
        e = us * np.exp(-beta * vals)
        rin = float((e * vals).sum() / e.sum()) + cfg.delta_r
        r_in.append(rin)
        for a, b in itertools.permutations(range(len(vecs)), 2):
            s = np.sum(np.cross(vecs[a] / r[a], vecs[b] / r[b]) ** 2)
            start = cfg.omega - cfg.delta_omega
            w = (_f(r[a], rin, cfg.delta_r) * _f(r[b], rin, cfg.delta_r) * _q(s, start, cfg.delta_omega)
                 * max(s - start, 0.0) / cfg.delta_omega)
            if w > cfg.eps:
                weights[(int(idx[a]), int(idx[b]))] = w
    return np.array(r_in), weights


def _inputs(pos):
    x = torch.tensor(pos)
    n = len(pos)
    return x, torch.zeros(1, 3, 3, dtype=x.dtype), torch.zeros(1, 3, dtype=torch.bool), torch.zeros(n, dtype=torch.long)


def test_frames_match_slow_reference(methane):
    pos = methane["positions"].numpy()
    cfg = ECSEConfig(r_cut=3.0, n_prunings=0)
    fs = compute_frames(*_inputs(pos), cfg)
    r_in, weights = _slow_frames(pos, cfg)
    assert np.allclose(fs.r_in.numpy(), r_in, atol=1e-12)
    assert len(weights) == int(fs.weights.numel()) == int(fs.n_candidates[0])
    # Every reference frame (first axis along r_a, second along r_a x r_b) is present with its weight.
    nl = neighbor_list(pos, r_cut=cfg.search_cutoff)
    got = fs.rotations[:, :, :2].transpose(1, 2).reshape(-1, 6).numpy()
    for (a, b), w in weights.items():
        n = np.cross(nl.vectors[a], nl.vectors[b])
        key = np.concatenate([nl.vectors[a] / nl.distances[a], n / np.linalg.norm(n)])
        dist = np.abs(got - key).max(axis=1)
        k = int(np.argmin(dist))
        assert dist[k] < 1e-12 and abs(float(fs.weights[k]) - w) < 1e-12


def test_frames_are_right_handed_rotations_and_follow_the_input(methane):
    cfg = ECSEConfig(r_cut=3.0)
    x, cell, pbc, batch = _inputs(methane["positions"].numpy())
    fs = compute_frames(x, cell, pbc, batch, cfg)
    rot = fs.rotations
    eye = torch.eye(3, dtype=rot.dtype).expand_as(rot)
    assert torch.allclose(rot.transpose(1, 2) @ rot, eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(len(rot), dtype=rot.dtype), atol=1e-12)
    assert bool((fs.weights > cfg.eps).all())
    for q in (random_rotation(seed=1), random_reflection(seed=2)):
        qt = torch.tensor(q)
        fq = compute_frames(x @ qt.T, cell, pbc, batch, cfg)
        assert torch.allclose(fq.weights, fs.weights, atol=1e-12)  # invariant weights, same order
        expected = qt @ rot
        if np.linalg.det(q) < 0:  # a mirror flips the normal axis: Q R diag(1, -1, 1)
            expected = expected * torch.tensor([1.0, -1.0, 1.0], dtype=rot.dtype)
        assert torch.allclose(fq.rotations, expected, atol=1e-12)


def test_pruning_keeps_the_best_frames_and_only_shrinks_weights(methane):
    x, cell, pbc, batch = _inputs(methane["positions"].numpy())
    raw = compute_frames(x, cell, pbc, batch, ECSEConfig(r_cut=3.0, n_prunings=0))
    pruned = compute_frames(x, cell, pbc, batch, ECSEConfig(r_cut=3.0))
    assert 0 < pruned.weights.numel() < raw.weights.numel()
    assert float(pruned.weights.max()) == pytest.approx(float(raw.weights.max()), rel=1e-12)
    assert float(pruned.weights.min()) > 0.5 * float(raw.weights.max())  # near-maximal frames only
    assert float(pruned.w_aux[0]) == 0.0  # well-conditioned molecule: no fallback


def test_collinear_structures_have_no_frames_and_full_aux_weight():
    for pos in (np.array([[0.0, 0, 0], [0.3, 0.4, 1.0]]),  # diatomic
                np.array([[0.0, 0, 0], [0, 0, 1.16], [0, 0, -1.16]]),  # CO2
                np.array([[5.0, 0, 0]])):  # single atom
        fs = compute_frames(*_inputs(pos), ECSEConfig(r_cut=3.0))
        assert fs.weights.numel() == 0
        assert float(fs.w_aux[0]) == 1.0
