"""Robustness campaign: every shipped solve function on random points over the whole domain.

Each point is solved by the engine (``jax.jit`` of the model function, chunked) and then
certified by an INDEPENDENT check written here in NumPy from the source equations (no model
code is reused for the certificate):

* ``bakshi_kleindorfer.noncooperative`` -- the complementarity residual of FOCs (9)-(10),
  ``max |min(alpha y, dt/dy)|`` with hand-derived marginal costs; on a sample, no profitable
  unilateral deviation (bounded Brent over each agent's own investment).
* ``first_best`` -- the same for ``dW_tau / dy`` (eqs. 3-5).
* ``robust_bargaining`` -- Proposition 5: ``C_ss = C_su``, First-Best FOCs at the reported
  investments, surpluses ``t - C >= 0``, and the one-dimensional optimality condition of the
  Nash product ``(p / s_ss + (1 - p) / s_su) s_r = 1`` (with a weight-0 or unresolvably small
  type's IR bound binding: ``<= 1``).
* ``bargaining`` -- the contract's feasibility (IC s, IC u, IR, ``f`` in [0, 1]) and, where it
  is interior (Proposition 4), First-Best FOCs and equal surplus. The optimality of a
  non-interior (GNP) outcome is not certified independently here (reported separately).
* ``defender_attacker.compare_mechanisms`` -- for each mechanism, the attacker's response is
  the argmax of (11) (``R = max(0, sqrt(V r A / (gamma_T (A + B))) - r)``, with ``A, B``
  integrated exactly from the uniform laws) and ``u_G`` equals (10) at the reported strategy;
  on a sample, no (r, I, k) on a brute-force grid beats the reported optimum.

Reported per function: points inside / outside the assumption set, the converged share inside,
the share outside that is flagged (``assumptions_hold`` False), the certified share of the
converged points, SILENT FAILURES (converged but not certified, or a NaN output without a
failure status) and the worst certified residual.

Usage (repository root)::

    PYTHONPATH=. python benchmarks/robustness.py            # 1e6 BK (all functions), 1e5 DA
    PYTHONPATH=. python benchmarks/robustness.py --quick        # 1e4 BK, 1e3 DA (minutes)
    PYTHONPATH=. python benchmarks/robustness.py --bk 200000 --bargaining 20000 --da 20000
    PYTHONPATH=. python benchmarks/robustness.py --only da      # 1e5 DA points only

Results go to ``benchmarks/results/robustness.json``; benchmarks/README.md has the table.
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

ROOT = Path(__file__).resolve().parent.parent
EPS = float(np.finfo(np.float64).eps)
#: Certificate tolerances (dimensionless natural residuals). The engine stops at 100 eps on
#: the Fischer-Burmeister residual; rounding of the hand formulas is a few eps.
FOC_TOL = 1e-9
OPT_TOL = 1e-8


# ----------------------------------------------------------------------------- sampling


def _log_uniform(rng, lo, hi, n):
    return np.exp(rng.uniform(math.log(lo), math.log(hi), n))


def _with_edges(rng, x, edges, share=0.01):
    """Replace a share of the draws by exact domain edges (0, 1, ...)."""
    pick = rng.random(len(x)) < share
    x = x.copy()
    x[pick] = rng.choice(np.asarray(edges, float), pick.sum())
    return x


def sample_bk(n: int, seed: int) -> dict[str, np.ndarray]:
    """The whole BK domain: ``f, p`` uniform in [0, 1]; ``theta_*`` log-uniform in [1e-6, 1];
    ``alpha_*`` log-uniform in [1e-7, 1] (1/$); ``D_J`` log-uniform in [1, 1e12] ($); 1% of
    each parameter's draws are exact edges (0 and 1 for shares and probabilities, 0 for
    ``D_J``)."""
    rng = np.random.default_rng(seed)
    out = {
        "f": _with_edges(rng, rng.uniform(0, 1, n), (0.0, 1.0)),
        "theta_ss": _with_edges(rng, _log_uniform(rng, 1e-6, 1.0, n), (0.0, 1.0)),
        "theta_su": _with_edges(rng, _log_uniform(rng, 1e-6, 1.0, n), (0.0, 1.0)),
        "theta_r": _with_edges(rng, _log_uniform(rng, 1e-6, 1.0, n), (0.0, 1.0)),
        "alpha_ss": _log_uniform(rng, 1e-7, 1.0, n),
        "alpha_su": _log_uniform(rng, 1e-7, 1.0, n),
        "alpha_r": _log_uniform(rng, 1e-7, 1.0, n),
        "D_J": _with_edges(rng, _log_uniform(rng, 1.0, 1e12, n), (0.0,)),
        "p": _with_edges(rng, rng.uniform(0, 1, n), (0.0, 1.0)),
    }
    return out


DA_NAMES = ("alpha", "beta", "V", "v", "h", "gamma_G", "gamma_T", "m", "E_X", "E_L", "E_D")


def sample_da(n: int, seed: int, baseline) -> dict[str, np.ndarray]:
    """Each of the 11 source parameters = its Table 2 value x a log-uniform factor in
    [1e-2, 1e2] (four decades around the baseline: the domain itself is unbounded); the
    spreads ``c_L, c_D`` uniform in [0, 1]."""
    rng = np.random.default_rng(seed)
    out = {k: getattr(baseline, k) * _log_uniform(rng, 1e-2, 1e2, n) for k in DA_NAMES}
    out["c_L"] = rng.uniform(0.0, 1.0, n)
    out["c_D"] = rng.uniform(0.0, 1.0, n)
    return out


# ----------------------------------------------------------------------------- running


def run_chunked(fn, params: dict, n: int, chunk: int, make):
    """``fn`` (jitted, batched) over ``n`` points in chunks; outputs as NumPy arrays."""
    import jax

    parts = []
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        size = stop - start
        batch = {k: v[start:stop] for k, v in params.items()}
        if size < chunk:  # pad to the compiled shape
            batch = {k: np.concatenate([v, np.repeat(v[-1:], chunk - size)])
                     for k, v in batch.items()}
        out = jax.device_get(fn(make(batch)))
        parts.append({k: np.asarray(v)[:size] for k, v in out._asdict().items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# ----------------------------------------------------------------------------- BK certificates


def _bk_probs(q, y_s, y_r, theta_s, alpha_s):
    p_s = theta_s * np.exp(-alpha_s * y_s)
    p_r = q["theta_r"] * np.exp(-q["alpha_r"] * y_r)
    return p_s, p_r


def _natural(z, g):
    """``|min(z, g)|``: 0 iff ``z >= 0, g >= 0, z g = 0`` (complementarity)."""
    return np.abs(np.minimum(z, g))


def nc_residual(q, o):
    """FOCs (9)-(10): d t_ss / d y_ss = 1 - f D alpha_ss P_ss (1 - P_r), likewise for su, and
    d t_r / d y_r = 1 - (1 - f) D alpha_r P_r [p (1 - P_ss) + (1 - p)(1 - P_su)]."""
    y_ss, y_su, y_r = o["y_ss"], o["y_su"], o["y_r"]
    p_ss = q["theta_ss"] * np.exp(-q["alpha_ss"] * y_ss)
    p_su = q["theta_su"] * np.exp(-q["alpha_su"] * y_su)
    p_r = q["theta_r"] * np.exp(-q["alpha_r"] * y_r)
    f, d, p = q["f"], q["D_J"], q["p"]
    g = [1 - f * d * q["alpha_ss"] * p_ss * (1 - p_r),
         1 - f * d * q["alpha_su"] * p_su * (1 - p_r),
         1 - (1 - f) * d * q["alpha_r"] * p_r * (p * (1 - p_ss) + (1 - p) * (1 - p_su))]
    z = [q["alpha_ss"] * y_ss, q["alpha_su"] * y_su, q["alpha_r"] * y_r]
    return np.max([_natural(zi, gi) for zi, gi in zip(z, g, strict=True)], axis=0)


def fb_residual(q, y_ss, y_su, y_rs, y_ru):
    """dW_tau/dy_s = 1 - D alpha_s P_s (1 - P_r), dW_tau/dy_r = 1 - D alpha_r P_r (1 - P_s)."""
    res = []
    for y_s, y_r, theta, alpha in ((y_ss, y_rs, q["theta_ss"], q["alpha_ss"]),
                                   (y_su, y_ru, q["theta_su"], q["alpha_su"])):
        p_s = theta * np.exp(-alpha * y_s)
        p_r = q["theta_r"] * np.exp(-q["alpha_r"] * y_r)
        g_s = 1 - q["D_J"] * alpha * p_s * (1 - p_r)
        g_r = 1 - q["D_J"] * q["alpha_r"] * p_r * (1 - p_s)
        res += [_natural(alpha * y_s, g_s), _natural(q["alpha_r"] * y_r, g_r)]
    return np.max(res, axis=0)


def _interim(q, y_ss, y_su, y_r):
    p_ss = q["theta_ss"] * np.exp(-q["alpha_ss"] * y_ss)
    p_su = q["theta_su"] * np.exp(-q["alpha_su"] * y_su)
    p_r = q["theta_r"] * np.exp(-q["alpha_r"] * y_r)
    pjs = 1 - (1 - p_ss) * (1 - p_r)
    pju = 1 - (1 - p_su) * (1 - p_r)
    t_ss = y_ss + q["f"] * pjs * q["D_J"]
    t_su = y_su + q["f"] * pju * q["D_J"]
    t_r = y_r + (1 - q["f"]) * (q["p"] * pjs + (1 - q["p"]) * pju) * q["D_J"]
    return t_ss, t_su, t_r


def nc_deviation_violations(q, o, idx) -> int:
    """No agent lowers its interim cost (6)-(8) by changing its own investment (bounded Brent
    on [0, y + 50 / alpha], plus y = 0)."""
    from scipy.optimize import minimize_scalar

    bad = 0
    for i in idx:
        qi = {k: float(v[i]) for k, v in q.items()}
        y = [float(o["y_ss"][i]), float(o["y_su"][i]), float(o["y_r"][i])]
        base = _interim(qi, *y)
        alphas = (qi["alpha_ss"], qi["alpha_su"], qi["alpha_r"])
        scale = abs(base[0]) + abs(base[1]) + abs(base[2]) + qi["D_J"]
        for agent in range(3):
            def cost(v, agent=agent, y=y, qi=qi):
                yy = list(y)
                yy[agent] = v
                return _interim(qi, *yy)[agent]
            hi = y[agent] + 50.0 / alphas[agent]
            res = minimize_scalar(cost, bounds=(0.0, hi), method="bounded",
                                  options={"xatol": 1e-10 * hi})
            best = min(float(res.fun), cost(0.0))
            if best < base[agent] - 1e-9 * scale:
                bad += 1
                break
    return bad


def robust_residual(q, o):
    """Proposition 5 and the optimality of C_s; ``inf`` where a check fails."""
    t_ss, t_su, t_r = o["_t_ss"], o["_t_su"], o["_t_r"]
    exists = o["contract_exists"].astype(bool)
    s = np.stack([o["surplus_ss"], o["surplus_su"], o["surplus_r"]])
    c = np.stack([o["C_ss"], o["C_su"], o["C_r"]])
    atol = 64 * EPS * (np.abs(t_ss) + np.abs(t_su) + np.abs(t_r) + q["D_J"])
    t = np.stack([t_ss, t_su, t_r])
    consistent = np.all(np.abs(t - c - s) <= atol, axis=0) & np.all(s >= 0, axis=0)
    same = o["C_ss"] == o["C_su"]
    fb = fb_residual(q, o["y_ss"], o["y_su"], o["y_rs"], o["y_ru"])
    p = q["p"]
    with np.errstate(divide="ignore", invalid="ignore"):
        w_s = np.where(s[0] > 0, p / s[0], 0.0)
        w_u = np.where(s[1] > 0, (1 - p) / s[1], 0.0)
        rho = (w_s + w_u) * s[2] - 1.0
    # a type reported at surplus 0 (weight 0, or an optimum below 1e-277 G): its IR binds,
    # and the Nash product still increases in C_s there: rho <= 0
    binding = (s[0] == 0) | (s[1] == 0)
    opt = np.where(binding, np.maximum(rho, 0.0), np.abs(rho))
    res = np.where(exists, np.maximum(fb, opt), 0.0)
    ok = np.where(exists, consistent & same, True)
    return np.where(ok, res, np.inf)


def bargaining_residual(q, o):
    """Feasibility of the contract; interior: First Best and equal surplus. ``(res, interior)``."""
    atol = 64 * EPS * (np.abs(o["_t_ss"]) + np.abs(o["_t_su"]) + np.abs(o["_t_r"]) + q["D_J"])
    exists = o["contract_exists"].astype(bool)
    interior = o["interior"].astype(bool)

    def dp(y_s, y_r, which):
        p_r = q["theta_r"] * np.exp(-q["alpha_r"] * y_r)
        p_ss = q["theta_ss"] * np.exp(-q["alpha_ss"] * y_s)
        p_su = q["theta_su"] * np.exp(-q["alpha_su"] * y_s)
        del which
        return (1 - (1 - p_su) * (1 - p_r)) - (1 - (1 - p_ss) * (1 - p_r))

    gap = o["C_su"] - o["C_ss"]
    ic_s = gap - o["f_su"] * dp(o["y_su"], o["y_ru"], "u") * q["D_J"] >= -atol
    ic_u = gap - o["f_ss"] * dp(o["y_ss"], o["y_rs"], "s") * q["D_J"] <= atol
    f_ok = (o["f_ss"] >= 0) & (o["f_ss"] <= 1) & (o["f_su"] >= 0) & (o["f_su"] <= 1)
    ir = ((o["surplus_ss"] >= -atol) & (o["surplus_su"] >= -atol) & (o["surplus_r"] >= -atol))
    feasible = ic_s & ic_u & f_ok & ir
    fb = fb_residual(q, o["y_ss"], o["y_su"], o["y_rs"], o["y_ru"])
    # equal surplus: every type gains the same share of the total gain (A12)-(A15)
    eq_s = np.abs(o["surplus_ss"] - o["surplus_su"]) <= atol
    res = np.where(interior, fb, 0.0)
    ok = np.where(exists, feasible & np.where(interior, eq_s, True), True)
    return np.where(ok, res, np.inf), exists & interior


# ----------------------------------------------------------------------------- DA certificates


def _e_min(c, a, b):
    m = np.clip(c, a, b)
    w = np.where(b > a, b - a, 1.0)
    return np.where(b > a, ((m * m - a * a) / 2 + c * (b - m)) / w, np.minimum(c, a))


def _e_excess(c, a, b):
    m = np.clip(c, a, b)
    w = np.where(b > a, b - a, 1.0)
    return np.where(b > a, ((b * b - m * m) / 2 - c * (b - m)) / w, np.maximum(a - c, 0.0))


def _e_stock(I, r, a, b):
    safe_r = np.where(r > 0, r, 1.0)
    c = np.where(r > 0, I / safe_r, np.inf)
    cf = np.where(np.isfinite(c), c, 0.0)
    m = np.clip(c, a, b)
    head = I * (m * m - a * a) / 2 - r * (m**3 - a**3) / 6
    tail = np.where(np.isfinite(c), (b - m) * I * cf / 2, 0.0)
    w = np.where(b > a, b - a, 1.0)
    point = np.where(a <= c, I * a - r * a * a / 2, I * cf / 2)
    return np.where(b > a, (head + tail) / w, point)


def da_days(q, r, k, I):
    """A, B, H of (10)-(11) for uniform laws, integrated exactly (independent of the model)."""
    l_lo, l_hi = q["E_L"] * (1 - q["c_L"]), q["E_L"] * (1 + q["c_L"])
    d_lo, d_hi = q["E_D"] * (1 - q["c_D"]), q["E_D"] * (1 + q["c_D"])
    s_lo, s_hi = np.where(k == 1, d_lo, l_lo), np.where(k == 1, d_hi, l_hi)
    safe_r = np.where(r > 0, r, 1.0)
    c = np.where(r > 0, I / safe_r, np.where(I > 0, s_hi, 0.0))
    c = np.minimum(c, s_hi)
    a_days = q["E_X"] + _e_min(c, s_lo, s_hi) + k * (q["E_L"] - q["E_D"])
    b_days = _e_excess(c, s_lo, s_hi)
    h_days = I * q["E_X"] + _e_stock(I, r, l_lo, l_hi)
    return a_days, b_days, h_days


def da_payoff(q, r, k, I, R):
    """``u_G`` of (10) at ``(r, k, I)`` against ``R`` (share r / (r + R) = 0 at r = R = 0)."""
    a_days, b_days, h_days = da_days(q, r, k, I)
    share = np.where(r + R > 0, r / np.where(r + R > 0, r + R, 1.0), 0.0)
    backup = k * r * (q["alpha"] * (q["E_X"] + q["E_L"]) + q["beta"] * (q["E_L"] - q["E_D"]))
    return ((share * q["v"] - q["gamma_G"] * r) * a_days - backup - q["h"] * h_days
            - q["m"] * r * b_days)


def da_response(q, r, k, I):
    """argmax_R of (11): ``max(0, sqrt(V r A / (gamma_T (A + B))) - r)``."""
    a_days, b_days, _ = da_days(q, r, k, I)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.maximum(np.sqrt(q["V"] * r * a_days / (q["gamma_T"] * (a_days + b_days))) - r,
                          0.0)


def da_check(q, r, k, I, R, u_G):
    """(attacker optimality residual, |u_G - (10)| / scale) at reported strategies."""
    rhat = da_response(q, r, k, I)
    u = da_payoff(q, r, k, I, R)
    scale = 1.0 + q["v"] * (q["E_X"] + q["E_L"]) * (1.0 + r + I) + q["V"] * (q["E_X"] + q["E_L"])
    return np.abs(R - rhat) / (1.0 + r + rhat), np.abs(u_G - u) / scale


def da_brute_violations(q, out, idx, n=161) -> int:
    """No point of an (r, I, k) grid (with the attacker's best response) beats the reported
    combined optimum beyond round-off."""
    bad = 0
    for i in idx:
        qi = {k: np.float64(v[i]) for k, v in q.items()}
        best = -np.inf
        for k in (0.0, 1.0):
            r_max = qi["V"] / qi["gamma_T"]
            c_max = qi["E_D"] * (1 + qi["c_D"]) if k else qi["E_L"] * (1 + qi["c_L"])
            r, I = np.meshgrid(np.linspace(0.0, r_max, n), np.linspace(0.0, r_max * c_max, n),
                               indexing="ij")
            a_days, _, _ = da_days(qi, r, k, I)
            with np.errstate(invalid="ignore", divide="ignore"):
                u = da_payoff(qi, r, k, I, da_response(qi, r, k, I))
            u = np.where((a_days > 0) & np.isfinite(u), u, -np.inf)
            best = max(best, float(u.max()))
        reported = float(out["u_G_combined"][i])
        if best > reported + 1e-9 * (1 + abs(reported)):
            bad += 1
    return bad


# ----------------------------------------------------------------------------- summary


def summarise(name, n, status, assumptions, certified, residual, nan_unflagged, extra=None):
    conv = status == 0
    inside = assumptions.astype(bool)
    silent = int(np.sum(conv & ~certified)) + int(nan_unflagged)
    cert_res = residual[conv & certified]
    row = {
        "function": name,
        "points": int(n),
        "inside_assumptions": int(inside.sum()),
        "converged_share_inside": float(np.mean(conv[inside])) if inside.any() else None,
        "converged_share_outside": float(np.mean(conv[~inside])) if (~inside).any() else None,
        "flagged_share_outside": float(np.mean(~inside[~inside])) if (~inside).any() else None,
        "not_converged": int(np.sum(~conv)),
        "status_counts": {str(s): int(c) for s, c in zip(*np.unique(status, return_counts=True),
                                                          strict=True)},
        "certified_share_of_converged": float(np.mean(certified[conv])) if conv.any() else None,
        "silent_failures": silent,
        "worst_certified_residual": float(cert_res.max()) if cert_res.size else None,
    }
    if extra:
        row.update(extra)
    return row


def _nan_unflagged(out) -> int:
    conv = out["status"] == 0
    bad = np.zeros_like(conv)
    for k, v in out.items():
        if k.startswith("_") or not np.issubdtype(v.dtype, np.floating):
            continue
        bad |= conv & ~np.isfinite(v) & (k not in ("u_G_none",))
    return int(bad.sum())


def run_bk(n, n_bargaining, chunk, seed, n_dev):
    import jax

    from jaxgames.models import bakshi_kleindorfer as bk

    q = sample_bk(n, seed)

    def make(batch):
        return bk.Params(**{k: np.asarray(v, np.float64) for k, v in batch.items()})

    rows, timings = [], {}
    nc_fn = jax.jit(jax.vmap(bk.noncooperative))
    t0 = time.perf_counter()
    nc = run_chunked(nc_fn, q, n, chunk, make)
    timings["noncooperative"] = time.perf_counter() - t0
    res = nc_residual(q, nc)
    certified = res <= FOC_TOL
    rng = np.random.default_rng(seed + 1)
    conv_idx = np.flatnonzero(nc["status"] == 0)
    sample = rng.choice(conv_idx, min(n_dev, conv_idx.size), replace=False)
    dev_bad = nc_deviation_violations(q, nc, sample)
    rows.append(summarise("noncooperative", n, nc["status"], nc["assumptions_hold"], certified,
                          res, _nan_unflagged(nc) + dev_bad,
                          {"deviation_sample": int(sample.size),
                           "deviation_violations": dev_bad}))

    fb_fn = jax.jit(jax.vmap(bk.first_best))
    t0 = time.perf_counter()
    fb = run_chunked(fb_fn, q, n, chunk, make)
    timings["first_best"] = time.perf_counter() - t0
    res = fb_residual(q, fb["y_ss"], fb["y_su"], fb["y_rs"], fb["y_ru"])
    rows.append(summarise("first_best", n, fb["status"], fb["assumptions_hold"],
                          res <= FOC_TOL, res, _nan_unflagged(fb)))

    rb_fn = jax.jit(jax.vmap(bk.robust_bargaining))
    t0 = time.perf_counter()
    rb = run_chunked(rb_fn, q, n, chunk, make)
    timings["robust_bargaining"] = time.perf_counter() - t0
    rb["_t_ss"], rb["_t_su"], rb["_t_r"] = nc["t_ss"], nc["t_su"], nc["t_r"]
    res = robust_residual(q, rb)
    rows.append(summarise("robust_bargaining", n, rb["status"], rb["assumptions_hold"],
                          res <= OPT_TOL, res, _nan_unflagged(rb)))

    if n_bargaining:
        qb = {k: v[:n_bargaining] for k, v in q.items()}
        bg_fn = jax.jit(jax.vmap(bk.bargaining))
        t0 = time.perf_counter()
        bg = run_chunked(bg_fn, qb, n_bargaining, min(chunk, 2**12), make)
        timings["bargaining"] = time.perf_counter() - t0
        bg["_t_ss"], bg["_t_su"], bg["_t_r"] = (nc[k][:n_bargaining] for k in ("t_ss", "t_su",
                                                                              "t_r"))
        res, interior = bargaining_residual(qb, bg)
        conv = bg["status"] == 0
        rows.append(summarise(
            "bargaining", n_bargaining, bg["status"], bg["assumptions_hold"], res <= FOC_TOL,
            res, _nan_unflagged(bg),
            {"interior_share_of_converged": float(np.mean(interior[conv])) if conv.any()
             else None,
             "note": "non-interior (GNP) outcomes: feasibility certified, optimality not "
                     "independently"}))
    return rows, timings


def run_da(n, chunk, seed, n_brute, micro):
    import jax

    from jaxgames.models import defender_attacker as da

    q = sample_da(n, seed, da.BASELINE)

    def make(batch):
        return da.Params(**{k: np.asarray(v, np.float64) for k, v in batch.items()})

    # One vmap over the whole chunk by default: the solve's cost no longer grows with the
    # batch width (issue 14); ``--micro`` keeps the older lax.map over small groups.
    if micro:
        fn = jax.jit(lambda p: jax.lax.map(da.compare_mechanisms, p, batch_size=micro))
    else:
        fn = jax.jit(jax.vmap(da.compare_mechanisms))
    t0 = time.perf_counter()
    out = run_chunked(fn, q, n, chunk, make)
    elapsed = time.perf_counter() - t0
    worst_r = np.zeros(n)
    worst_u = np.zeros(n)
    for mech in ("none", "backup", "inventory", "combined"):
        r = out[f"r_{mech}"]
        k = out[f"k_{mech}"].astype(np.float64) if f"k_{mech}" in out else np.zeros(n)
        I = out[f"I_{mech}"] if f"I_{mech}" in out else np.zeros(n)
        r_res, u_res = da_check(q, r, k, I, out[f"R_{mech}"], out[f"u_G_{mech}"])
        worst_r = np.maximum(worst_r, np.where(np.isfinite(r_res), r_res, np.inf))
        worst_u = np.maximum(worst_u, np.where(np.isfinite(u_res), u_res, np.inf))
    res = np.maximum(worst_r, worst_u)
    certified = res <= OPT_TOL
    rng = np.random.default_rng(seed + 2)
    conv_idx = np.flatnonzero(out["status"] == 0)
    sample = rng.choice(conv_idx, min(n_brute, conv_idx.size), replace=False)
    brute_bad = da_brute_violations(q, out, sample)
    # a converged point beaten by a grid point is a silent failure too
    row = summarise("compare_mechanisms", n, out["status"], out["assumptions_hold"], certified,
                    res, _nan_unflagged(out) + brute_bad,
                    {"brute_force_sample": int(sample.size),
                     "brute_force_violations": brute_bad})
    return [row], {"compare_mechanisms": elapsed}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bk", type=int, default=1_000_000, help="BK points (default 1e6)")
    ap.add_argument("--bargaining", type=int, default=None,
                    help="BK points for bargaining, the first of the --bk points (slowest BK "
                         "function; default: all of them)")
    ap.add_argument("--da", type=int, default=100_000, help="defender_attacker points")
    ap.add_argument("--quick", action="store_true", help="1e4 BK, 1e3 bargaining, 1e3 DA")
    ap.add_argument("--chunk", type=int, default=2**15)
    ap.add_argument("--da-chunk", type=int, default=2**10)
    ap.add_argument("--micro", type=int, default=0,
                    help="lax.map batch size for DA (default 0: one vmap per chunk)")
    ap.add_argument("--only", choices=("bk", "da"), default=None,
                    help="run only one model's part (same as --da 0 or --bk 0)")
    ap.add_argument("--deviation-sample", type=int, default=300)
    ap.add_argument("--brute-sample", type=int, default=100)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", default=None,
                    help="JSON path (default benchmarks/results/robustness.json, or "
                         "robustness_da.json / robustness_bk.json with --only)")
    args = ap.parse_args(argv)
    if args.bargaining is None:
        args.bargaining = args.bk
    if args.quick:
        args.bk, args.bargaining, args.da = 10_000, 1_000, 1_000
        args.deviation_sample, args.brute_sample = 50, 20
    if args.only == "da":
        args.bk = 0
    elif args.only == "bk":
        args.da = 0
    if args.out is None:
        suffix = f"_{args.only}" if args.only else ""
        args.out = str(ROOT / "benchmarks" / "results" / f"robustness{suffix}.json")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    jax.config.update("jax_enable_x64", True)
    rows, timings = [], {}
    t0 = time.perf_counter()
    if args.bk:
        r, t = run_bk(args.bk, args.bargaining, args.chunk, args.seed, args.deviation_sample)
        rows += [{"model": "bakshi_kleindorfer", **x} for x in r]
        timings.update(t)
    if args.da:
        r, t = run_da(args.da, args.da_chunk, args.seed, args.brute_sample, args.micro)
        rows += [{"model": "defender_attacker", **x} for x in r]
        timings.update(t)
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "argv": sys.argv[1:], "jax": jax.__version__, "platform": platform.platform(),
        "cpu_count": os.cpu_count(), "dtype": "float64",
        "note": "2 CPU cores shared with other jobs: timings measured under load",
        "foc_tol": FOC_TOL, "opt_tol": OPT_TOL, "rows": rows,
        "seconds": {k: round(v, 1) for k, v in timings.items()},
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    for x in rows:
        print(json.dumps(x))
    print("seconds", report["seconds"])
    silent = sum(x["silent_failures"] for x in rows)
    return 0 if silent == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
