"""Equilibria per second of the defender-attacker game (Xu, Zhuang & Liu 2015), all four
mechanisms, for the engine against a NumPy brute-force grid search, and their accuracy.

Every method runs on the SAME seeded random parameter points: each of the eleven source
parameters is its Table 2 value times a factor drawn log-uniformly in [1/4, 4] (``c_L = 0.4``,
``c_D = 1``; draws with ``E_D >= E_X + E_L``, where the contest days under backup can be
negative, are redrawn: about 0.2%); float64 throughout. One "point" is one parameter point with
the defender's equilibrium payoff ``u_G`` under all four mechanisms (none, backup, inventory,
combined).

* ``engine``      ``jax.jit(jax.vmap(da.compare_mechanisms))`` on chunks of ``--chunk`` points
                  (global search in ``(s, c)`` with a Newton polish and a certificate).
* ``brute_<n>``   NumPy grid search: for each point and each ``k`` in {0, 1}, a uniform
                  ``n x n`` grid over ``r`` in ``[0, V / gamma_T]`` and ``I`` in
                  ``[0, (V / gamma_T) c_max(k)]`` (``c_max(0) = E_L (1 + c_L)``,
                  ``c_max(1) = E_D (1 + c_D)``); ``u_G`` at the attacker's closed-form best
                  response; the maximum over the ``I = 0`` column (none: ``k = 0``; backup:
                  ``k`` in {0, 1}) and over the whole grid (inventory: ``k = 0``; combined:
                  both). The ``I = 0`` column is shared, so one point costs ``2 n^2``
                  evaluations. Vectorised in cache-sized blocks (``--block-cells``).
* ``reference``   (accuracy only, not timed as a method) a derivative-free NumPy zoom search
                  in the coordinates ``(s, c)`` with ``r = s^2 rho(c)``, ``I = c r`` (``rho``:
                  the deterrence threshold), in which the attacker's kink ``R_hat = 0`` is the
                  line ``s = 1``: a 513 x 513 grid, then ``--zoom-levels`` grids of 33 x 33
                  over +-8 cells around the best point (2x finer per level, or moved without
                  refining when the best point is on the window's edge). It estimates the
                  engine's error without the engine's solver (no derivatives, no Newton).

The brute force's error is ``(u_engine - u_brute) / (1 + |u_engine|)`` (the engine's value is a
certified optimum, so this is >= 0 up to round-off; ``max(u_brute - u_engine)`` is recorded as
a check). The error is fitted as ``C n^-p`` and extrapolated to the grid side at which the brute
force would match the engine's accuracy; its time per point is extrapolated as ``2 n^2``
evaluations at the evaluation rate of the largest measured grid. Measured and extrapolated
numbers are kept apart in the output and in the JSON.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/bench_defender_attacker.py            # defaults (CPU ~3.5 min)
    PYTHONPATH=. python benchmarks/bench_defender_attacker.py --quick    # smoke run

Timing protocol (as in ``bench_bakshi_kleindorfer.py``): every method is called once first (the
engine compiles; for NumPy this call is timed too but not used), then ``--repeats`` rounds run
round-robin, each call ends with ``block_until_ready``; the headline statistic is the best
(minimum) time, medians are in the JSON. See benchmarks/README.md for the measured numbers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench_bakshi_kleindorfer import (  # noqa: E402
    Timed,
    _cpu_model,
    _device_tag,
    _fmt,
    _jsonable,
    _library_info,
    _loguniform,
    _summary,
    _time_round_robin,
    _version,
)

MECHANISMS = ("none", "backup", "inventory", "combined")
EPS = float(np.finfo(np.float64).eps)
#: The engine's payoff resolution: candidates within ``1e3 eps (1 + |u|)`` are a tie
#: (``defender_attacker._tie``), so the engine may return a value this much below the best one.
ENGINE_TIE = 1e3 * EPS

DEFAULTS = {  # platform -> settings
    "cpu": {"n": 8192, "chunk": 1024, "chunk_scan": [8, 64]},
    "gpu": {"n": 2**16, "chunk": 2**14, "chunk_scan": [2**10, 2**16]},
}
QUICK = {"n": 256, "grids": [16, 32, 64], "repeats": 1, "n_ref": 32, "brute_cells": 2**22,
         "zoom_levels": 64, "chunk_scan": []}


# ----------------------------------------------------------------------------- parameter draws


def sample_params(da, n: int, seed: int, lo: float = 0.25, hi: float = 4.0) -> tuple[dict, int]:
    """``n`` seeded points: every source parameter = baseline x a log-uniform factor in
    ``[lo, hi]``; ``c_L = 0.4``, ``c_D = 1`` (the default uniform laws).

    A draw is rejected (and redrawn) if ``E_D >= E_X + E_L``: the expected contest days under
    backup, ``A = E_X + E_L - E_D + E[min(c, D)]``, are then negative for small ``c``, where
    the payoffs have no meaning (and the closed form is NaN or absurdly large). About 0.2% of the
    draws. Points that only violate the source's ``min L > max D`` are kept. Returns
    ``(dict name -> float64 array, number of rejected draws)``.
    """
    rng = np.random.default_rng(seed)
    kept = {k: [] for k in (*da.SOURCE_PARAMETERS, "c_L", "c_D")}
    n_kept = rejected = 0
    while n_kept < n:
        m = n - n_kept
        cols = {k: float(getattr(da.BASELINE, k)) * _loguniform(rng, lo, hi, m)
                for k in da.SOURCE_PARAMETERS}
        ok = cols["E_D"] < cols["E_X"] + cols["E_L"]
        for k, v in cols.items():
            kept[k].append(v[ok])
        kept["c_L"].append(np.full(ok.sum(), 0.4))
        kept["c_D"].append(np.full(ok.sum(), 1.0))
        n_kept += int(ok.sum())
        rejected += int((~ok).sum())
    return {k: np.concatenate(v) for k, v in kept.items()}, rejected


def _np_params(da, cols: dict, sl: slice, ndim: int):
    """A ``Params`` of NumPy leaves for the points ``sl``, shaped ``(B, 1, ..., 1)``."""
    shape = (-1,) + (1,) * (ndim - 1)
    return da.Params(**{k: v[sl].reshape(shape) for k, v in cols.items()})


# ----------------------------------------------------------------------------- NumPy objective


def _days(da, p, k: int, c):
    """``A, B`` (contest / attacker-held days) and ``E[min(L, c)]``, ``E[min(L, c)^2]`` at
    days of cover ``c`` under the uniform laws (the model's closed form, in NumPy)."""
    l_lo, l_hi = p.E_L * (1 - p.c_L), p.E_L * (1 + p.c_L)
    c = np.minimum(c, np.maximum(l_hi, p.E_D * (1 + p.c_D)))
    l_m1, l_m2, l_ex = da.uniform_moments(l_lo, l_hi - l_lo, c, xp=np)
    if k == 1:
        d_lo, d_hi = p.E_D * (1 - p.c_D), p.E_D * (1 + p.c_D)
        d_m1, _, d_ex = da.uniform_moments(d_lo, d_hi - d_lo, c, xp=np)
        return p.E_X + p.E_L - p.E_D + d_m1, d_ex, l_m1, l_m2
    return p.E_X + l_m1, l_ex, l_m1, l_m2


def u_G_fast(da, p, r, k: int, I):
    """``u_G(r, k, I, R_hat(r, k, I))`` with the closed-form ``R_hat``: the brute force's
    objective. Same formulas as ``payoffs_closed_form(..., attacker_best_response_closed_form
    (...))`` (checked in every run), written once for ``u_G`` only: ``A, B`` are computed once
    and ``r + R_hat = max(y, r)`` with ``y = sqrt(V r A / (gamma_T (A + B)))``.

    Where the closed form is undefined (NaN: possible only if ``A < 0``, which the draws of
    :func:`sample_params` exclude) the value is ``-inf``, so it is never picked."""
    pos = r > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(pos, I / r, np.inf)
        a, b, l_m1, l_m2 = _days(da, p, k, c)
        y = np.sqrt(p.V * r * a / (p.gamma_T * (a + b)))
        share = np.where(pos, r / np.maximum(y, r), 0.0)
        h = I * (p.E_X + l_m1) - 0.5 * r * l_m2
        backup = p.alpha * (p.E_X + p.E_L) + p.beta * (p.E_L - p.E_D)
        u = (p.v * share - p.gamma_G * r) * a - k * r * backup - p.h * h - p.m * r * b
    return np.where(np.isnan(u), -np.inf, u)


def u_G_oracle(da, p, r, k, I):
    """The library's NumPy oracles: ``u_G`` at ``R_hat`` (closed form)."""
    R = da.attacker_best_response_closed_form(p, r, k, I, xp=np)
    return da.payoffs_closed_form(p, r, k, I, R, xp=np).u_G


def _bounds(p, k: int):
    """``r_max = V / gamma_T`` and ``I_max = r_max c_max(k)``."""
    r_max = p.V / p.gamma_T
    c_max = p.E_D * (1 + p.c_D) if k == 1 else p.E_L * (1 + p.c_L)
    return r_max, r_max * c_max


# ----------------------------------------------------------------------------- brute force


def brute_force(da, cols: dict, n_pts: int, n: int, block_cells: int) -> np.ndarray:
    """``(n_pts, 4)``: max ``u_G`` per mechanism on the uniform ``n x n`` grids (see module
    docstring). Points are processed in batches and grid rows in blocks of about
    ``block_cells`` evaluations, so memory stays bounded and the blocks stay in cache."""
    lin = np.linspace(0.0, 1.0, n)
    out = np.empty((n_pts, len(MECHANISMS)))
    bsz = max(1, block_cells // (n * n))
    rows = max(1, min(n, block_cells // (bsz * n)))
    for i0 in range(0, n_pts, bsz):
        sl = slice(i0, min(i0 + bsz, n_pts))
        p = _np_params(da, cols, sl, 3)
        col0, full = [], []
        for k in (0, 1):
            r_max, i_max = _bounds(p, k)
            r_all, I = r_max * lin[None, :, None], i_max * lin[None, None, :]
            m_col0 = np.full(r_all.shape[0], -np.inf)
            m_full = np.full(r_all.shape[0], -np.inf)
            for j in range(0, n, rows):
                u = u_G_fast(da, p, r_all[:, j:j + rows], k, I)
                m_col0 = np.maximum(m_col0, u[:, :, 0].max(axis=1))
                m_full = np.maximum(m_full, u.max(axis=(1, 2)))
            col0.append(m_col0)
            full.append(m_full)
        out[sl] = np.stack([col0[0], np.maximum(col0[0], col0[1]), full[0],
                            np.maximum(full[0], full[1])], axis=1)
    return out


def oracle_check(da, cols: dict, n_pts: int, n: int) -> dict:
    """``u_G_fast`` against the library's oracles on the ``n x n`` grids of the first points:
    max ``|diff| / (1 + |u|)`` where the oracle is finite, and whether ``u_G_fast`` is ``-inf``
    exactly where the oracle is NaN."""
    lin = np.linspace(0.0, 1.0, n)
    worst, n_nan, same_nan = 0.0, 0, True
    for i0 in range(0, n_pts, 64):
        p = _np_params(da, cols, slice(i0, min(i0 + 64, n_pts)), 3)
        for k in (0, 1):
            r_max, i_max = _bounds(p, k)
            r, I = r_max * lin[None, :, None], i_max * lin[None, None, :]
            a = u_G_fast(da, p, r, k, I)
            with np.errstate(invalid="ignore"):
                b = u_G_oracle(da, p, r, k, I)
            fin = np.isfinite(b)
            same_nan &= bool(np.array_equal(fin, np.isfinite(a)))
            n_nan += int((~fin).sum())
            worst = max(worst, float(np.max(np.abs(a - b)[fin] / (1 + np.abs(b[fin])))))
    return {"max_rel_diff": worst, "oracle_nan_cells": n_nan, "nan_cells_match": same_nan,
            "points": n_pts, "grid": n}


# ----------------------------------------------------------------------------- reference


def _u_sc(da, p, k: int, s, c):
    """``u_G`` at ``r = s^2 rho(c)``, ``I = c r`` (``rho``: the deterrence threshold at days of
    cover ``c``); ``-inf`` outside the brute force's box ``r <= V / gamma_T``."""
    a, b, _, _ = _days(da, p, k, c)
    r = s * s * (p.V * a / (p.gamma_T * (a + b)))
    u = u_G_fast(da, p, r, k, c * r)
    return np.where(r <= p.V / p.gamma_T, u, -np.inf)


def _zoom(da, p, k: int, inventory: bool, n0: int, levels: int, m: int = 33,
          half: float = 8.0) -> np.ndarray:
    """Max of ``u_G`` over ``(s, c)`` (``c = 0`` without inventory) for a batch ``p`` of
    points: a uniform grid (``n0 x n0``, or ``n0^2 / 32`` points in ``s`` alone), then
    ``levels`` grids of ``m x m`` over +-``half`` cells around the best point so far. A
    coordinate's cell shrinks by ``(m - 1) / (2 half)`` (2x by default) after a level unless
    the best point lay on the window's edge in that coordinate (not at a bound of the box):
    then the window only moves, so that the search can follow the narrow, curved ridges of
    ``u_G`` (the kink ``s = 1`` couples ``s`` and ``c`` strongly)."""
    b = p.V.shape[0]
    rows = np.arange(b)
    a0, b0, _, _ = _days(da, p, k, np.zeros_like(p.V))
    s_hi = np.sqrt((a0 + b0) / a0).reshape(b)  # r = V / gamma_T at c = 0 (the largest s)
    c_hi = (_bounds(p, k)[1] / (p.V / p.gamma_T)).reshape(b) if inventory else np.zeros(b)
    ns, nc = (n0, n0) if inventory else (n0 * n0 // 32, 1)
    s = s_hi[:, None, None] * np.linspace(0.0, 1.0, ns)[None, :, None]
    c = c_hi[:, None, None] * np.linspace(0.0, 1.0, nc)[None, None, :]
    best, s_best, c_best = np.full(b, -np.inf), np.zeros(b), np.zeros(b)
    h_s, h_c = s_hi / (ns - 1), c_hi / max(nc - 1, 1)
    w = np.linspace(-half, half, m)
    shrink = 2 * half / (m - 1)
    for level in range(levels + 1):
        u = _u_sc(da, p, k, s, c)
        shape = u.shape
        u = u.reshape(b, -1)
        j = np.argmax(u, axis=1)
        val = u[rows, j]
        better = val > best
        js, jc = np.unravel_index(j, shape[1:])
        s_new = np.broadcast_to(s, shape).reshape(b, -1)[rows, j]
        c_new = np.broadcast_to(c, shape).reshape(b, -1)[rows, j]
        best = np.where(better, val, best)
        if level > 0:  # shrink a coordinate's cell unless the best is on the window's edge
            edge_s = better & ((js == 0) | (js == m - 1)) & (s_new > 0) & (s_new < s_hi)
            edge_c = better & ((jc == 0) | (jc == m - 1)) & (c_new > 0) & (c_new < c_hi)
            h_s = np.where(edge_s, h_s, h_s * shrink)
            h_c = np.where(edge_c, h_c, h_c * shrink)
        s_best = np.where(better, s_new, s_best)
        c_best = np.where(better, c_new, c_best)
        if level == levels:
            break
        s = np.clip(s_best[:, None] + h_s[:, None] * w, 0.0, s_hi[:, None])[:, :, None]
        c = (np.clip(c_best[:, None] + h_c[:, None] * w, 0.0, c_hi[:, None])[:, None, :]
             if inventory else np.zeros((b, 1, 1)))
    return best


def reference(da, cols: dict, n_pts: int, n0: int, levels: int, batch: int = 4) -> np.ndarray:
    """``(n_pts, 4)`` reference ``u_G`` per mechanism from the ``(s, c)`` zoom search."""
    out = np.empty((n_pts, len(MECHANISMS)))
    for i0 in range(0, n_pts, batch):
        sl = slice(i0, min(i0 + batch, n_pts))
        p = _np_params(da, cols, sl, 3)
        s = {(k, inv): _zoom(da, p, k, inv, n0, levels) for k in (0, 1) for inv in (False, True)}
        none = s[0, False]
        backup = np.maximum(none, s[1, False])
        inventory = np.maximum(none, s[0, True])
        out[sl] = np.stack([none, backup, inventory,
                            np.maximum(backup, np.maximum(inventory, s[1, True]))], axis=1)
    return out


# ----------------------------------------------------------------------------- accuracy


def _rel(u: np.ndarray, u_engine: np.ndarray) -> np.ndarray:
    """``(u_engine - u) / (1 + |u_engine|)`` per point and mechanism."""
    return (u_engine - u) / (1.0 + np.abs(u_engine))


def _err_stats(err: np.ndarray) -> dict:
    """Stats of the brute force's error (rows: points, columns: mechanisms); ``err`` is
    ``(engine - brute) / (1 + |engine|)``, so its minimum is the check ``-(brute - engine)``."""
    per_mech = {m: {"mean": float(np.mean(err[:, i])), "max": float(np.max(err[:, i]))}
                for i, m in enumerate(MECHANISMS)}
    return {
        "mean_err": float(np.mean(err)), "median_err": float(np.median(err)),
        "p99_err": float(np.quantile(err, 0.99)), "max_err": float(np.max(err)),
        "max_brute_minus_engine": float(-np.min(err)),
        "check_brute_le_engine": bool(-np.min(err) <= ENGINE_TIE),
        "per_mechanism": per_mech, "n_points": int(err.shape[0]),
    }


def _max_or_none(x: np.ndarray):
    return float(np.max(x)) if x.size else None


def _power_fit(ns, errs) -> dict:
    """Least-squares fit ``err = C n^-p`` in log-log (positive errors only)."""
    ns, errs = np.asarray(ns, float), np.asarray(errs, float)
    ok = errs > 0
    if ok.sum() < 2:
        return {"C": None, "p": None, "grids": ns[ok].tolist()}
    slope, icpt = np.polyfit(np.log(ns[ok]), np.log(errs[ok]), 1)
    return {"C": float(np.exp(icpt)), "p": float(-slope), "grids": ns[ok].astype(int).tolist()}


def _extrapolate(fit: dict, target: float, sec_per_cell: float, engine_pts: float) -> dict:
    """Grid side at which ``C n^-p = target``, and the brute force's throughput there."""
    if not fit.get("p") or fit["p"] <= 0:
        return {"n_side": None}
    n_side = (fit["C"] / target) ** (1.0 / fit["p"])
    sec = sec_per_cell * 2.0 * n_side**2
    return {"n_side": n_side, "cells_per_point": 2.0 * n_side**2, "seconds_per_point": sec,
            "points_per_s": 1.0 / sec, "engine_over_brute": engine_pts * sec}


# ----------------------------------------------------------------------------- main run


def run(args) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)  # before any array exists
    import jaxgames
    from jaxgames.models import defender_attacker as da

    dev = jax.devices()[0]
    plat = "cpu" if dev.platform == "cpu" else "gpu"
    if args.quick:
        for key, val in QUICK.items():
            if getattr(args, key) is None:
                setattr(args, key, val)
    n = args.n or DEFAULTS[plat]["n"]
    chunk = min(args.chunk or DEFAULTS[plat]["chunk"], n)
    chunk_scan = DEFAULTS[plat]["chunk_scan"] if args.chunk_scan is None else args.chunk_scan
    grids = sorted(args.grids or [32, 128, 512, 1024])
    repeats = args.repeats or 3
    n_ref = min(args.n_ref if args.n_ref is not None else 1024, n)
    brute_cells = args.brute_cells or 2**28
    zoom_levels = args.zoom_levels or 64
    load_start = os.getloadavg()
    t_start = time.perf_counter()

    cols, rejected = sample_params(da, n, args.seed)
    print(f"[defender_attacker] {n} points (seed {args.seed}) on {dev.platform} "
          f"({dev.device_kind}; {_cpu_model()}, {os.cpu_count()} cores); chunk {chunk}, "
          f"grids {grids}, repeats {repeats}", flush=True)

    # --- engine (one jitted function; each chunk size compiles once, on its first call)
    engine = jax.jit(jax.vmap(da.compare_mechanisms))

    def engine_runner(size):
        n_pad = math.ceil(n / size) * size  # the last chunk is padded with the final point
        padded = {k: np.pad(v, (0, n_pad - n), mode="edge") for k, v in cols.items()}
        dev_chunks = [
            jax.device_put(da.Params(**{k: v[i:i + size] for k, v in padded.items()}))
            for i in range(0, n_pad, size)]

        def run_engine():
            outs = [engine(c) for c in dev_chunks]
            jax.block_until_ready(outs)
            return outs
        return run_engine

    def collect_engine(outs):
        def cat(name):
            return np.concatenate([np.asarray(getattr(o, name)) for o in outs])[:n]
        return {f: cat(f) for f in outs[0]._fields}

    # --- brute force: points per grid side (prefixes of the same draw)
    n_brute = {g: int(min(n, max(args.min_brute_points, brute_cells // (2 * g * g))))
               for g in grids}

    def brute_runner(g):
        return lambda: brute_force(da, cols, n_brute[g], g, args.block_cells)

    scan = [c for c in dict.fromkeys(chunk_scan) if c != chunk and c <= n]
    methods = [Timed("engine", f"engine jit(vmap(compare_mechanisms)) chunk {chunk}", n,
                     engine_runner(chunk), collect_engine)]
    methods += [Timed(f"brute_{g}", f"NumPy brute force {g}x{g}", n_brute[g], brute_runner(g),
                      lambda u: {"u": u}) for g in grids]
    methods += [Timed(f"engine_chunk_{c}", f"engine, chunk {c}", n, engine_runner(c),
                      lambda outs: {"u": np.stack([collect_engine(outs)[f"u_G_{m}"]
                                                   for m in MECHANISMS], axis=1)})
                for c in scan]
    _time_round_robin(methods, repeats)
    print(f"timing done in {time.perf_counter() - t_start:.0f} s", flush=True)
    by_key = {m.key: m for m in methods}

    eng = methods[0].result
    u_eng = np.stack([eng[f"u_G_{m}"] for m in MECHANISMS], axis=1)
    ok = eng["converged"].astype(bool)
    res = {m.key: _summary(m) for m in methods}
    e = res["engine"]
    e["converged_share"] = float(ok.mean())
    e["status_counts"] = np.bincount(eng["status"].astype(int), minlength=5).tolist()
    e["assumptions_hold_share"] = float(eng["assumptions_hold"].mean())
    e["residual_max"] = float(np.max(eng["residual"][ok])) if ok.any() else None
    e["residual_median"] = float(np.median(eng["residual"][ok])) if ok.any() else None
    e["compile_s"] = e["first_call_s"] - e["best_s"]  # first call minus a warm call
    e["cases"] = {m: np.bincount(eng[f"case_{m}"].astype(int), minlength=17)[1:].tolist()
                  for m in MECHANISMS}

    # Consistency: the engine's payoffs are attained by its strategies (oracle u_G at R_hat).
    p_all = _np_params(da, cols, slice(0, n), 1)
    strat = {"none": (0.0, 0.0), "backup": (eng["k_backup"], 0.0),
             "inventory": (0.0, eng["I_inventory"]),
             "combined": (eng["k_combined"], eng["I_combined"])}
    with np.errstate(invalid="ignore"):
        attained = np.stack([u_G_oracle(da, p_all, eng[f"r_{m}"],
                                        np.asarray(strat[m][0], float), strat[m][1])
                             for m in MECHANISMS], axis=1)
    e["oracle_u_G_at_engine_strategy_max_rel_diff"] = float(
        np.max(np.abs(attained - u_eng)[ok] / (1 + np.abs(u_eng[ok]))))

    # --- brute force accuracy (vs the engine, converged points only)
    engine_pts = e["eq_per_s_best"]
    for g in grids:
        r = res[f"brute_{g}"]
        u_b = by_key[f"brute_{g}"].result["u"]
        m_ok = ok[: n_brute[g]]
        r.update(_err_stats(_rel(u_b[m_ok], u_eng[: n_brute[g]][m_ok])))
        r["engine_over_brute"] = engine_pts / r["eq_per_s_best"]
        r["engine_over_brute_median"] = e["eq_per_s_median"] / r["eq_per_s_median"]
        r["grid"] = [g, g]
        r["cells_per_point"] = 2 * g * g
        r["seconds_per_cell_best"] = r["best_s"] / (n_brute[g] * 2 * g * g)
    # the same statistics on the common prefix (all grids), for the fit
    n_common = min(n_brute.values())
    c_ok = ok[:n_common]
    common = {g: _err_stats(_rel(by_key[f"brute_{g}"].result["u"][:n_common][c_ok],
                                 u_eng[:n_common][c_ok])) for g in grids}
    for c in scan:  # other chunk sizes: throughput, and the same answers?
        r = res[f"engine_chunk_{c}"]
        r["chunk"] = c
        r["over_default_chunk"] = r["eq_per_s_best"] / engine_pts
        r["compile_s"] = r["first_call_s"] - r["best_s"]
        r["max_abs_u_diff_vs_default_chunk"] = float(
            np.max(np.abs(by_key[f"engine_chunk_{c}"].result["u"] - u_eng)))
    oracle_diff = oracle_check(da, cols, min(n, 256), 64)

    # --- engine accuracy: independent zoom reference on a subset
    t0 = time.perf_counter()
    u_ref = reference(da, cols, n_ref, 513, zoom_levels)
    ref_s = time.perf_counter() - t0
    r_ok = ok[:n_ref]
    d = (u_ref - u_eng[:n_ref])[r_ok] / (1 + np.abs(u_eng[:n_ref][r_ok]))  # > 0: ref is better
    hold_ref = eng["assumptions_hold"][:n_ref][r_ok].astype(bool)
    eng_err_measured = float(max(0.0, np.max(d))) if d.size else float("nan")
    target = max(eng_err_measured, ENGINE_TIE)
    engine_acc = {
        "n_points": int(r_ok.sum()), "seconds": ref_s, "zoom_levels": zoom_levels,
        "coarse_grid": 513, "zoom": "33 x 33 over +-8 cells of the previous grid (2x finer "
                                    "per level unless the best point is on the window's edge), "
                                    "coordinates (s, c), r = s^2 rho(c), I = c r",
        "max_ref_minus_engine": float(np.max(d)), "min_ref_minus_engine": float(np.min(d)),
        "median_abs_diff": float(np.median(np.abs(d))),
        "p99_abs_diff": float(np.quantile(np.abs(d), 0.99)),
        "share_abs_diff_le_1e-13": float(np.mean(np.abs(d) <= 1e-13)),
        "per_mechanism_max_ref_minus_engine": {
            m: float(np.max(d[:, i])) for i, m in enumerate(MECHANISMS)},
        "max_abs_diff_assumptions_hold": _max_or_none(np.abs(d[hold_ref])),
        "max_abs_diff_assumptions_violated": _max_or_none(np.abs(d[~hold_ref])),
        "engine_error_estimate": eng_err_measured,
        "target_accuracy": target,
        "target_rule": "max(0, max (ref - engine) / (1 + |engine|), 1e3 eps); 1e3 eps is the "
                       "engine's tie tolerance",
    }

    # --- matched accuracy (extrapolated)
    g_big = grids[-1]
    sec_cell = res[f"brute_{g_big}"]["seconds_per_cell_best"]
    fit_grids = grids[1:] if len(grids) >= 3 else grids
    fits = {}
    for stat in ("mean_err", "max_err"):
        fit = _power_fit(fit_grids, [common[g][stat] for g in fit_grids])
        fit["extrapolated"] = _extrapolate(fit, target, sec_cell, engine_pts)
        fits[stat] = fit
    # Most favourable to the brute force: from the largest grid on at the best possible rate
    # of a uniform grid, p = 2 (a smooth interior maximum; kinks give p = 1).
    for stat in ("mean_err", "max_err"):
        err_l = common[g_big][stat]
        fits[f"{stat}_optimistic_p2"] = {
            "C": err_l * g_big**2, "p": 2.0, "grids": [g_big],
            "extrapolated": _extrapolate({"C": err_l * g_big**2, "p": 2.0}, target, sec_cell,
                                         engine_pts)}
    slopes = {f"{a}->{b}": {s: (math.log(common[a][s] / common[b][s]) / math.log(b / a)
                                if common[a][s] > 0 and common[b][s] > 0 else None)
                            for s in ("mean_err", "max_err")}
              for a, b in zip(grids[:-1], grids[1:], strict=True)}

    report = {
        "benchmark": "defender_attacker.compare_mechanisms vs NumPy brute force",
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "dtype": "float64",
        "machine": {
            "platform": platform.platform(), "python": platform.python_version(),
            "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(),
            "jax_platform": dev.platform, "device_kind": dev.device_kind,
            "n_devices": jax.device_count(), "load_avg_start": load_start,
            "load_avg_end": os.getloadavg(),
        },
        "library": _library_info(jaxgames, args.note),
        "versions": {m: _version(m) for m in ("jax", "jaxlib", "numpy", "jaxgames")},
        "setup": {
            "n": n, "chunk": chunk, "chunk_scan": scan, "repeats": repeats, "seed": args.seed,
            "quick": args.quick,
            "draw": "each of the 11 source parameters = Table 2 value x log-uniform factor in "
                    "[0.25, 4]; c_L = 0.4, c_D = 1.0; draws with E_D >= E_X + E_L rejected "
                    "(negative contest days under backup)",
            "grids": grids, "brute_points": {str(g): n_brute[g] for g in grids},
            "brute_cells_budget": brute_cells, "block_cells": args.block_cells,
            "brute_bounds": "r in [0, V/gamma_T]; I in [0, V/gamma_T * c_max(k)], c_max(0) = "
                            "E_L (1 + c_L), c_max(1) = E_D (1 + c_D); 2 n^2 evaluations/point",
            "n_ref": n_ref, "common_prefix_points": n_common,
            "statistic": "best of repeats (round-robin); median also reported",
            "error": "(u_engine - u_brute) / (1 + |u_engine|), pooled over points and the four "
                     "mechanisms; converged engine points only",
            "u_G_fast_vs_library_oracle": oracle_diff,
            "rejected_draws_E_D_ge_E_X_plus_E_L": rejected,
        },
        "methods": res,
        "brute_error_common_prefix": {str(g): common[g] for g in grids},
        "engine_accuracy": engine_acc,
        "matched_accuracy": {
            "measured": "brute-force errors and times at the grids in `methods`",
            "extrapolated": "grid side n* where the fitted C n^-p equals target_accuracy; "
                            "time = 2 n*^2 evaluations at the seconds/evaluation of the largest "
                            "measured grid. *_optimistic_p2: from the largest grid's error at "
                            "rate n^-2 (the best a uniform grid achieves; a lower bound on n*)",
            "fit_grids": fit_grids, "local_slopes": slopes, "target_accuracy": target,
            "seconds_per_cell": sec_cell, "fits": fits,
        },
        "wall_s": time.perf_counter() - t_start,
    }
    _print_report(report)
    out = Path(args.out) if args.out else (
        HERE / "results" / (f"defender_attacker_{_device_tag(dev)}_float64"
                            f"{'_quick' if args.quick else ''}.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_jsonable(report), indent=1) + "\n")
    print(f"wrote {out}")
    return report


def _print_report(rep: dict) -> None:
    mach, st = rep["machine"], rep["setup"]
    print()
    print(f"defender_attacker, all four mechanisms -- float64 on {mach['jax_platform']} "
          f"({mach['device_kind']}, {mach['cpu_model']}, {mach['cpu_count']} cores), "
          f"n={st['n']}, chunk={st['chunk']}, repeats={st['repeats']} (best)")
    head = (f"{'method':44s} {'points':>7s} {'best s':>9s} {'pts/s':>10s} {'eng/this':>9s} "
            f"{'mean err':>9s} {'max err':>9s} {'brute-eng':>9s} {'1st s':>7s}")
    print(head)
    print("-" * len(head))
    e = rep["methods"]["engine"]
    for key, r in rep["methods"].items():
        is_e = key.startswith("engine")
        ratio = (e["eq_per_s_best"] / r["eq_per_s_best"] if is_e
                 else r["engine_over_brute"])
        print(f"{r['label']:44s} {r['n']:7d} {_fmt(r['best_s']):>9s} "
              f"{_fmt(r['eq_per_s_best']):>10s} {_fmt(ratio):>9s} "
              f"{'-' if is_e else _fmt(r['mean_err']):>9s} "
              f"{'-' if is_e else _fmt(r['max_err']):>9s} "
              f"{'-' if is_e else _fmt(r['max_brute_minus_engine']):>9s} "
              f"{_fmt(r['first_call_s']):>7s}")
    print(f"engine: converged {100 * e['converged_share']:.2f}%, statuses {e['status_counts']}, "
          f"compile ~{e['compile_s']:.1f} s, KKT residual max {_fmt(e['residual_max'])}, "
          f"assumptions hold {100 * e['assumptions_hold_share']:.1f}%; oracle u_G at the "
          f"engine's strategies differs by <= "
          f"{_fmt(e['oracle_u_G_at_engine_strategy_max_rel_diff'])}")
    oc = st["u_G_fast_vs_library_oracle"]
    for key, r in rep["methods"].items():
        if key.startswith("engine_chunk_"):
            print(f"engine at chunk {r['chunk']}: {_fmt(r['over_default_chunk'])} x the "
                  f"throughput at chunk {st['chunk']}, compile ~{r['compile_s']:.1f} s, max "
                  f"|u_G diff| {_fmt(r['max_abs_u_diff_vs_default_chunk'])}")
    print(f"u_G_fast vs the library oracles ({oc['points']} points, {oc['grid']}^2): max rel "
          f"diff {_fmt(oc['max_rel_diff'])}; undefined cells {oc['oracle_nan_cells']} "
          f"(match: {oc['nan_cells_match']}); rejected draws (E_D >= E_X + E_L): "
          f"{st['rejected_draws_E_D_ge_E_X_plus_E_L']}")
    print(f"brute-force error on the common {st['common_prefix_points']} points:")
    for g, c in rep["brute_error_common_prefix"].items():
        print(f"  {g:>5s}^2: mean {_fmt(c['mean_err'])}, median {_fmt(c['median_err'])}, "
              f"max {_fmt(c['max_err'])}; per mechanism max "
              + ", ".join(f"{m} {_fmt(v['max'])}" for m, v in c["per_mechanism"].items()))
    a = rep["engine_accuracy"]
    print(f"engine vs zoom reference ({a['n_points']} points, {a['seconds']:.1f} s): "
          f"max(ref - engine) {_fmt(a['max_ref_minus_engine'])}, min "
          f"{_fmt(a['min_ref_minus_engine'])}, median |diff| {_fmt(a['median_abs_diff'])}, "
          f"p99 |diff| {_fmt(a['p99_abs_diff'])}; target accuracy {_fmt(a['target_accuracy'])}")
    ma = rep["matched_accuracy"]
    print("local slopes p: " + ", ".join(
        f"{k}: mean {_fmt(v['mean_err'])} max {_fmt(v['max_err'])}"
        for k, v in ma["local_slopes"].items()))
    for stat, fit in ma["fits"].items():
        x = fit["extrapolated"]
        if x.get("n_side") is None:
            print(f"EXTRAPOLATED ({stat}): no usable fit")
            continue
        print(f"EXTRAPOLATED ({stat}, fit on {fit['grids']}: C={_fmt(fit['C'])}, "
              f"p={_fmt(fit['p'])}): n* = {_fmt(x['n_side'])} per side, "
              f"{_fmt(x['seconds_per_point'])} s/point, {_fmt(x['points_per_s'])} pts/s; "
              f"engine/brute = {_fmt(x['engine_over_brute'])}")
    lib = rep["library"]
    print(f"jaxgames: {lib['path']} commit {lib['git_commit']} dirty {lib['git_dirty']}; "
          f"load average start {mach['load_avg_start']}, end {mach['load_avg_end']}; "
          f"wall {rep['wall_s']:.0f} s")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=None,
                    help="parameter points for the engine (default 8192 CPU, 2^16 GPU)")
    ap.add_argument("--chunk", type=int, default=None,
                    help="points per engine call (default 1024 CPU, 2^14 GPU)")
    ap.add_argument("--chunk-scan", type=int, nargs="*", default=None,
                    help="other chunk sizes to time the engine at (each compiles once; "
                         "default 8 64 CPU, 2^10 2^16 GPU; no values: none)")
    ap.add_argument("--grids", type=int, nargs="+", default=None,
                    help="brute-force grid sides n (n x n per k; default 32 128 512 1024)")
    ap.add_argument("--brute-cells", type=int, default=None,
                    help="evaluations per brute-force grid size and call (sets its number of "
                         "points, at most --n; default 2^28)")
    ap.add_argument("--min-brute-points", type=int, default=256,
                    help="at least this many points per brute-force grid size")
    ap.add_argument("--block-cells", type=int, default=2**14,
                    help="evaluations per vectorised NumPy block of the brute force")
    ap.add_argument("--n-ref", type=int, default=None,
                    help="points for the engine-accuracy reference (default 1024)")
    ap.add_argument("--zoom-levels", type=int, default=None,
                    help="zoom levels of the reference (default 64)")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds (default 3)")
    ap.add_argument("--seed", type=int, default=20150101)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: n=256, grids 16 32 64, one repeat, small reference")
    ap.add_argument("--note", default=None, help="free text stored in the JSON (provenance)")
    ap.add_argument("--out", default=None, help="JSON path (default "
                    "benchmarks/results/defender_attacker_<device>_float64[_quick].json)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
