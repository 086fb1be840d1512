"""Equilibria per second of the ctip model (SP and MOQ, N = 2 and N = 4) against a SciPy
best-response loop measured in the same run, and policy optimisations per second batched over
risk profiles.

Points: seeded random parameter points around the defaults (float64): per CSC ``v ~ U(0.1,
0.6)``, ``delta ~ U(0.3, 0.8)``, ``alpha ~ U(0.03, 0.08)``; common ``sigma ~ U(0, 0.5)``,
``lam ~ U(0, 0.9)``, ``M ~ U(0, 1.1 * 28 N / 2)``, ``w_e ~ U(25, 45)``. Every method solves the
same points.

* ``engine``  ``jax.jit(jax.vmap(ctip.equilibrium))`` over chunks of ``--chunk`` points
              (semismooth Newton; MOQ: the homotopy ``ctip.HOMOTOPY`` -- four smoothed levels
              and the exact game, more where a level fails; the local and the grid
              certificate, and where a solution fails them up to ``ctip.RESTARTS``
              restarts: from the grid's best deviation, then from a Gauss-Seidel pass
              of all CSCs' best grid replies, and for MOQ last from the symmetric start
              on the homotopy's second path of widths).
* ``scipy``   :func:`jaxgames.models.ctip.best_response_scipy`: Gauss-Seidel best responses by
              L-BFGS-B on the NumPy profits; MOQ: brentq on the common multiplier (the
              variational equilibrium). A per-point loop, so its rate does not depend on how
              many points it runs: it solves a documented subsample, the first
              ``--n-scipy`` points at N = 2 (half of them at N = 4 SP, a quarter at N = 4
              MOQ, where one point costs minutes), once (nothing compiles, so there is no
              warm-up call), each point timed on its own (``per_point_s`` in the JSON). The
              two are compared on those points (max |dq|).
* ``policy``  ``jax.jit(jax.vmap(ctip.optimal_policy))`` (per-CSC sigma, all three levers) over
              ``--n-policy`` risk profiles ``v ~ U(0.1, 0.6)^2``.

Engine points: the first ``--n`` of the sample per (N, regime), but ``--n-moq`` at N = 4 MOQ
(each N = 4 MOQ equilibrium costs ~100x an SP one; the rate is per point either way).

Timing protocol as in ``bench_bakshi_kleindorfer.py`` for the engine and the policy: one untimed
(compiling) call, then ``--repeats`` rounds round-robin, each ending in ``block_until_ready``;
best times are the headline, medians in the JSON. The SciPy loop runs once, in the first round
(see above). Usage (repository root)::

    PYTHONPATH=. python benchmarks/bench_ctip.py            # CPU: ~12 min of CPU time
    PYTHONPATH=. python benchmarks/bench_ctip.py --quick    # smoke run
    PYTHONPATH=. python benchmarks/bench_ctip.py --check-samples 3 4 5 6  # MOQ, 8 points each
    PYTHONPATH=. python benchmarks/bench_ctip.py --engine-only --N 4 --regime moq  # statuses
    PYTHONPATH=. python benchmarks/bench_ctip.py --sp21-scan  # the SP point without a pure eq.
    PYTHONPATH=. python benchmarks/bench_ctip.py --moq4-scan [249]  # N = 4 MOQ points without one
    PYTHONPATH=. python benchmarks/bench_ctip.py --stage2-engine [2 4]  # stage2 routes compared

``--stage2-engine``: MOQ equilibria with ``stage2="closed_form"`` and ``stage2="engine"`` (the
exact second stage by the engine's solve in every state), at the defaults with ``M`` binding
(56) and slack (0) and the first ``--stage2-n`` (32) points of :func:`sample` (seed ``N``):
compile CPU time, equilibria/s (best of ``--repeats``, process CPU time beside wall), the
largest difference of ``q, z, mu, EW`` between the routes (relative to ``max(|value|, 1)``),
statuses, and ``jax.jacobian`` (reverse mode) of ``(EW, q)`` w.r.t. ``(sigma, lam, M)`` at the
default points (and ``--stage2-jac-n`` sample points off kinks) under both routes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_bakshi_kleindorfer import (  # noqa: E402
    Timed,
    _cpu_model,
    _device_tag,
    _jsonable,
    _library_info,
    _summary,
    _version,
)


def sample(ctip, N: int, n: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    pts = []
    for _ in range(n):
        s = rng.uniform(0.0, 0.5)
        pts.append(ctip.make_params(
            N, v=rng.uniform(0.1, 0.6, N), delta=rng.uniform(0.3, 0.8, N),
            alpha=rng.uniform(0.03, 0.08, N), sigma=s, lam=rng.uniform(0.0, 0.9),
            M=rng.uniform(0.0, 1.1 * 28.0 * N / 2), w_e=rng.uniform(25.0, 45.0)))
    return pts


def stack(ctip, pts):
    return ctip.Params(*[np.stack([np.asarray(getattr(p, f), float) for p in pts])
                         for f in ctip.Params._fields])


def run(args) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jaxgames
    from jaxgames.models import ctip

    dev = jax.devices()[0]
    results = {}
    methods = []
    for N in args.N:
        for regime in ctip.REGIMES:
            n = args.n_for(N, regime)
            pts = sample(ctip, N, n, seed=N)
            fn = jax.jit(jax.vmap(lambda p, r=regime: ctip.equilibrium(p, r)))
            chunks = [stack(ctip, pts[i:i + args.chunk]) for i in range(0, n, args.chunk)]
            chunks = [jax.device_put(c) for c in chunks]

            def run_engine(fn=fn, chunks=chunks):
                outs = [fn(c) for c in chunks]
                jax.block_until_ready(outs)
                return outs

            def collect(outs):
                st = np.concatenate([np.asarray(o.status) for o in outs])
                q = np.concatenate([np.asarray(o.q) for o in outs])
                kink = np.concatenate([np.asarray(o.at_kink) for o in outs])
                return {"converged_fraction": float(np.mean(st == 0)),
                        "status_counts": {int(k): int(v) for k, v in
                                          zip(*np.unique(st, return_counts=True), strict=True)},
                        "at_kink_fraction": float(np.mean(kink)), "q": q}

            methods.append(Timed(f"engine_N{N}_{regime}", f"engine N={N} {regime}", n,
                                 run_engine, collect, chunk=min(args.chunk, n)))
            sub = pts[: args.n_scipy_for(N, regime)]

            def run_scipy(sub=sub, regime=regime):
                outs, per_point = [], []
                for p in sub:
                    t0 = time.perf_counter()
                    outs.append(ctip.best_response_scipy(p, regime, tol=1e-8))
                    per_point.append(time.perf_counter() - t0)
                return outs, per_point

            def collect_scipy(res):
                outs, per_point = res
                return {"q": np.stack([o[0] for o in outs]),
                        "rounds": [int(o[3]) for o in outs], "per_point_s": per_point}

            methods.append(Timed(f"scipy_N{N}_{regime}", f"scipy BR loop N={N} {regime}",
                                 len(sub), run_scipy, collect_scipy))
    rng = np.random.default_rng(7)
    profiles = [ctip.DEFAULT._replace(v=rng.uniform(0.1, 0.6, 2)) for _ in range(args.n_policy)]
    pol_fn = jax.jit(jax.vmap(lambda p: ctip.optimal_policy(p, per_chain_sigma=True)))
    prof = jax.device_put(stack(ctip, profiles))

    def run_policy():
        out = pol_fn(prof)
        jax.block_until_ready(out)
        return out

    def collect_policy(out):
        st = np.asarray(out.status)
        return {"status_counts": {int(k): int(v) for k, v in
                                  zip(*np.unique(st, return_counts=True), strict=True)},
                "feasible_fraction": float(np.mean(np.asarray(out.feasible))),
                "gradient_steps": int(np.asarray(out.iterations)[0])}

    methods.append(Timed("policy", "optimal_policy (per-CSC sigma, lam, M)", args.n_policy,
                         run_policy, collect_policy))
    load_before = os.getloadavg()
    _time_rounds(methods, args.repeats)
    load_after = os.getloadavg()
    for m in methods:
        res = _summary(m)
        res.update({k: v for k, v in m.result.items() if k != "q"})
        results[m.key] = res
    comparisons = {}
    for N in args.N:
        for regime in ctip.REGIMES:
            eng, sci = methods_by_key(methods, f"engine_N{N}_{regime}", f"scipy_N{N}_{regime}")
            k = len(sci.result["q"])
            comparisons[f"N{N}_{regime}"] = {
                "engine_over_scipy": results[eng.key]["eq_per_s_best"]
                / results[sci.key]["eq_per_s_best"],
                "max_abs_dq_vs_scipy": float(np.max(np.abs(eng.result["q"][:k]
                                                           - sci.result["q"]))),
            }
    return {
        "benchmark": "ctip", "date": datetime.datetime.now(datetime.UTC).isoformat(),
        "device": {"platform": dev.platform, "kind": dev.device_kind, "tag": _device_tag(dev),
                   "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
                   "loadavg_before": load_before, "loadavg_after": load_after},
        "versions": {"python": platform.python_version(), "jax": _version("jax"),
                     "numpy": _version("numpy"), "scipy": _version("scipy"),
                     "optax": _version("optax")},
        "library": _library_info(jaxgames, args.note),
        "settings": {k: v for k, v in vars(args).items()
                     if k not in ("n_scipy_for", "n_for")},
        "results": results, "comparisons": comparisons,
    }


def _time_rounds(methods, repeats: int) -> None:
    """``_time_round_robin`` of ``bench_bakshi_kleindorfer.py``, except that the SciPy loop
    (nothing to compile) runs once, in the first round, and that run is its timing."""
    for m in methods:
        t0 = time.perf_counter()
        out = m.run()
        dt = time.perf_counter() - t0
        if m.key.startswith("scipy"):
            m.times.append(dt)
        else:
            m.first_call_s = dt
        m.result = m.collect(out)
        del out
    for _ in range(repeats):
        for m in methods:
            if m.key.startswith("scipy"):
                continue
            t0 = time.perf_counter()
            out = m.run()
            m.times.append(time.perf_counter() - t0)
            del out


def check_samples(Ns, n: int = 8) -> dict:
    """``--check-samples``: MOQ equilibria at the first ``n`` points of :func:`sample` (seed
    ``N``) for each ``N``; status counts and the failures (the README's "8 random points each
    at N = 3, 4, 5, 6")."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxgames.models import ctip

    out = {}
    for N in Ns:
        pts = sample(ctip, N, n, seed=N)
        eq = jax.jit(jax.vmap(lambda p: ctip.equilibrium(p, "moq")))(stack(ctip, pts))
        st = np.asarray(eq.status)
        out[N] = {"converged": int(np.sum(st == 0)), "n": n,
                  "failed": [int(k) for k in np.nonzero(st != 0)[0]]}
        print(f"N = {N}: MOQ converged {out[N]['converged']}/{n}, failed {out[N]['failed']}")
    return out


def engine_check(Ns, regimes, args) -> dict:
    """``--engine-only``: the engine part alone, one (compiling) call per (N, regime) over the
    benchmark's points (``--n``, ``--n-moq``, ``--chunk``), no timing rounds: status counts
    and the failed indices, with wall and CPU time."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxgames.models import ctip

    out = {}
    for N in Ns:
        for regime in regimes:
            n = args.n_for(N, regime)
            pts = sample(ctip, N, n, seed=N)
            fn = jax.jit(jax.vmap(lambda p, r=regime: ctip.equilibrium(p, r)))
            t0, c0 = time.perf_counter(), time.process_time()
            st = np.concatenate([np.asarray(fn(stack(ctip, pts[i:i + args.chunk])).status)
                                 for i in range(0, n, args.chunk)])
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            failed = [int(k) for k in np.nonzero(st != 0)[0]]
            out[f"N{N}_{regime}"] = {"converged": int(np.sum(st == 0)), "n": n,
                                     "failed": failed,
                                     "failed_status": [int(st[k]) for k in failed]}
            print(f"engine N = {N} {regime}: converged {int(np.sum(st == 0))}/{n}, failed "
                  f"{failed} (status {[int(st[k]) for k in failed]}); {wall:.0f} s wall, "
                  f"{cpu:.0f} s CPU (compile included), load {os.getloadavg()[0]:.1f}",
                  flush=True)
    return out


def sp21_reply_scan() -> float:
    """``--sp21-scan``: point 21 of the N = 2 sample (SP, lam = 0.86) has no pure-strategy
    equilibrium. For given investments the SP payoff is quadratic in ``q_i`` (closed-form
    best order); the best ``z_i`` by a grid of 15,001 points on [0, 150] refined by a bounded
    Brent search. Prints chain 1's switch point ``z_2*`` and chain 2's replies to both
    branches for a few ``q_2``, and returns ``min |F(s_2) - s_2|`` over a grid of chain 2's
    strategies ``s_2 = (q_2, z_2)`` (121 x 161 on [0, 60] x [0, 80], refined around the
    minimum), ``F`` the composed best reply: an equilibrium is a zero of it."""
    from scipy.optimize import minimize_scalar

    from jaxgames.models import ctip

    p = sample(ctip, 2, 256, seed=2)[21]
    a, b, w = float(p.a), float(p.b), float(p.w)
    v, d, al, beta = (np.asarray(getattr(p, f), float) for f in ("v", "delta", "alpha", "beta"))
    s, lam = float(np.asarray(p.sigma)[0]), float(p.lam)

    def parts(i, zi, qj, zj):
        j = 1 - i
        pi_i = v[i] * (1 + al[i] * (zi + lam * zj)) ** -beta[i]
        pi_j = v[j] * (1 + al[j] * (zj + lam * zi)) ** -beta[j]
        r1, r2 = 1 - d[i] * pi_i, (1 - pi_i) + (1 - d[i]) ** 2 * pi_i  # E r_i, E r_i^2
        return r1, r2, a - b * qj * (1 - d[j] * pi_j)

    def q_best(i, zi, qj, zj):
        r1, r2, m = parts(i, zi, qj, zj)
        return np.maximum(0.0, (m * r1 - w) / (2 * b * r2))

    def pay(i, zi, qj, zj):
        r1, r2, m = parts(i, zi, qj, zj)
        q = q_best(i, zi, qj, zj)
        return m * r1 * q - b * r2 * q**2 - w * q - (1 - s) * zi

    grid = np.linspace(0.0, 150.0, 15001)

    def reply(i, qj, zj):
        k = int(np.argmax(pay(i, grid, qj, zj)))
        r = minimize_scalar(lambda z: -pay(i, z, qj, zj), method="bounded",
                            bounds=(grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]),
                            options={"xatol": 1e-10})
        z = r.x if -r.fun > pay(i, grid[k], qj, zj) else grid[k]
        return float(q_best(i, z, qj, zj)), float(z)

    for q2 in (27.0, 28.0, 29.0):
        lo, hi = 0.0, 5.0
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if reply(0, q2, mid)[1] > 1.0 else (mid, hi)
        below, above = reply(0, q2, lo), reply(0, q2, hi)
        print(f"q_2 = {q2}: chain 1's reply jumps at z_2* = {lo:.4f} from z_1 = {below[1]:.2f} "
              f"to {above[1]:.2f}; chain 2 replies z_2 = {reply(1, *below)[1]:.2f} and "
              f"{reply(1, *above)[1]:.2f}")

    def scan(Q2, Z2):
        best = (np.inf, None)
        for q2 in Q2:
            for z2 in Z2:
                q2n, z2n = reply(1, *reply(0, q2, z2))
                r = float(np.hypot(q2n - q2, z2n - z2))
                best = min(best, (r, (float(q2), float(z2))), key=lambda t: t[0])
        return best

    r, (q2, z2) = scan(np.linspace(0, 60, 121), np.linspace(0, 80, 161))
    r, _ = scan(np.linspace(q2 - 1, q2 + 1, 81), np.linspace(max(z2 - 2, 0), z2 + 2, 161))
    print(f"min |F(s_2) - s_2| = {r:.3f} (no fixed point: no pure-strategy equilibrium)")
    return r


def moq4_scan(index: int = 11, starts: int = 96, rounds: int = 15) -> dict:
    """``--moq4-scan [INDEX]``: point ``index`` of the ``N = 4`` sample (seed 4; MOQ), one of
    the two flagged ``STAGNATED`` among the first 256 before the Gauss-Seidel restart: 11 (the
    default) has no pure-strategy equilibrium that any of these finds; at 249 they find the
    equilibrium that the solve's restarts missed and its second restart (part (v)'s rule)
    now reaches. Prints (i) the engine's solution
    and its grid deviation; (ii) the solve (:func:`ctip._attempt` and the grid certificate) from
    ``starts`` random starts ``q_i, z_i ~ U(0, 40)`` and four profiles built from the SciPy
    loop's (the two CSCs with the largest ``delta`` ordering and investing nothing or not;
    at point 11 CSCs 2 and 4), each on both homotopy paths: the distinct
    first-order points that pass the local certificate and each one's grid gain; (iii) the
    SciPy loop's answer and its grid gain; (iv) ``rounds`` rounds of Gauss-Seidel global best
    replies with the exact second stage (each CSC's reply by a 401 x 241 grid over its own
    ``(q_i, z_i)``, ``q_i`` from its MOQ floor to 100, ``z_i`` to 120, zoomed five times around
    the best point), from the engine's solution (point 11: a cycle of three profiles); (v) up
    to three solves (first path) from Gauss-Seidel passes of the grid certificate's best
    replies (each CSC in turn), the first from the engine's solution, each next from the last
    solve's profile (its start where it left none)."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    from jaxgames.models import ctip

    N = 4
    p = sample(ctip, N, max(64, index + 1), seed=N)[index]
    pr = ctip._prepare(p)[0]
    np.set_printoptions(precision=4, suppress=True, linewidth=150)
    out = {}

    eq = jax.jit(lambda p: ctip.equilibrium(p, "moq"))(p)
    gain, x_dev = jax.jit(lambda q, z: ctip._grid_deviation(pr, q, z, "moq", N))(eq.q, eq.z)
    print(f"(i) equilibrium: status {int(eq.status)}, q = {np.asarray(eq.q)}, z = "
          f"{np.asarray(eq.z)}, grid gain {float(gain):.3e}; the grid's best deviation: "
          f"{np.asarray(x_dev)}")

    def attempt(x0, lt0):
        x, mu, _, _, st, ok, tau = ctip._attempt(N, ctip.SOLVER, "moq", pr, pr, x0, lt0)
        return x, st, ok, ctip._grid_deviation(pr, x[:N], x[N:], "moq", N)[0]

    q_sc, z_sc, _, rounds_sc = ctip.best_response_scipy(p, "moq", tol=1e-8)
    rng = np.random.default_rng(0)
    heavy = np.sort(np.argsort(np.asarray(p.delta))[-2:])  # point 11: CSCs 2 and 4
    X0 = [np.concatenate([rng.uniform(0, 40, N), rng.uniform(0, 40, N)]) for _ in range(starts)]
    for off2 in (False, True):
        for off4 in (False, True):
            q, z = q_sc.copy(), z_sc.copy()
            for i, off in zip(heavy, (off2, off4), strict=True):
                if off:
                    q[i] = z[i] = 0.0
            X0.append(np.concatenate([q, z]))
    X0 = np.array(X0 + X0)
    LT = np.repeat([np.log10(ctip.HOMOTOPY.start), np.log10(ctip.HOMOTOPY.wide_start)],
                   len(X0) // 2)
    x, st, ok, g = (np.asarray(v) for v in jax.jit(jax.vmap(attempt))(jnp.asarray(X0),
                                                                      jnp.asarray(LT)))
    local = (st == 0) & ok
    print(f"(ii) {len(X0)} solves: {int(local.sum())} end at a first-order point that passes "
          f"the local certificate, {int(np.sum(local & (g <= ctip.CERT_TOL)))} pass the grid too")
    distinct = []
    for k in np.argsort(np.where(local, g, np.inf)):
        if not local[k]:
            break
        if not any(np.allclose(x[k], d, atol=2e-3) for d, _ in distinct):
            distinct.append((x[k], g[k]))
    for xk, gk in distinct:
        print(f"    q = {xk[:N]}, z = {xk[N:]}: grid gain {gk:.3e}")
    g_sc = float(jax.jit(lambda q, z: ctip._grid_deviation(pr, q, z, "moq", N)[0])(
        jnp.asarray(q_sc), jnp.asarray(z_sc)))
    print(f"(iii) SciPy loop ({rounds_sc} rounds): q = {q_sc}, z = {z_sc}, grid gain {g_sc:.3e}")

    @jax.jit
    def pay(q, z, i, Q, Z):
        return jax.vmap(lambda qi, zi: ctip.profits(pr, q.at[i].set(qi), z.at[i].set(zi),
                                                    "moq")[i])(Q, Z)

    def reply(q, z, i):
        lo = max(0.0, float(pr.M) - (q.sum() - q[i]))
        qs, zs = np.linspace(lo, 100.0, 401), np.linspace(0.0, 120.0, 241)
        for _ in range(6):
            Q, Z = (v.ravel() for v in np.meshgrid(qs, zs, indexing="ij"))
            val = np.asarray(pay(jnp.asarray(q), jnp.asarray(z), i, jnp.asarray(Q),
                                 jnp.asarray(Z)))
            k = int(np.argmax(val))
            dq, dz = 2 * (qs[1] - qs[0]), 2 * (zs[1] - zs[0])
            qs = np.clip(np.linspace(Q[k] - dq, Q[k] + dq, 401), lo, None)
            zs = np.clip(np.linspace(Z[k] - dz, Z[k] + dz, 241), 0.0, None)
        return Q[k], Z[k], val[k]

    q, z = np.asarray(eq.q, float).copy(), np.asarray(eq.z, float).copy()
    history = []
    for r in range(rounds):
        for i in range(N):
            q[i], z[i], _ = reply(q, z, i)
        history.append(np.concatenate([q, z]))
        print(f"(iv) round {r}: q = {q}, z = {z}")
    period = next((d for d in range(1, rounds // 2)
                   if np.allclose(history[-1], history[-1 - d], atol=1e-3)), None)
    print(f"    the last rounds repeat with period {period}")

    @jax.jit
    def gs_pass(q, z):
        """Each CSC in turn plays its best point on the grid certificate's own grid."""
        nq, nz = ctip.CERT_GRID
        for i in range(N):
            lo = jnp.maximum(pr.M - (jnp.sum(q) - q[i]), 0.0)
            qs = lo + (pr.a / pr.b - lo) * jnp.linspace(0.0, 1.0, nq)
            zs = jnp.maximum(3.0 * z[i], 3.0 / jnp.maximum(pr.alpha[i], 1e-3)) * jnp.linspace(
                0.0, 1.0, nz)
            Q, Z = (v.ravel() for v in jnp.meshgrid(jnp.append(qs, q[i]), jnp.append(zs, z[i]),
                                                    indexing="ij"))
            k = jnp.argmax(pay(q, z, i, Q, Z))
            q, z = q.at[i].set(Q[k]), z.at[i].set(Z[k])
        return q, z

    x = np.asarray(eq.q), np.asarray(eq.z)
    solve1 = jax.jit(lambda x0: attempt(x0, np.log10(ctip.HOMOTOPY.start)))
    for r in range(3):  # restarts from Gauss-Seidel passes of the grid's best replies
        q, z = gs_pass(jnp.asarray(x[0], float), jnp.asarray(x[1], float))
        xn, st, ok, g = (np.asarray(v) for v in solve1(jnp.concatenate([q, z])))
        print(f"(v) restart from a Gauss-Seidel pass of grid best replies {r + 1}: start q = "
              f"{np.asarray(q)}, z = {np.asarray(z)}; status {int(st)}, local certificate "
              f"{bool(ok)}, grid gain {float(g):.3e}, q = {xn[:N]}, z = {xn[N:]}")
        if int(st) == 0 and bool(ok) and float(g) <= ctip.CERT_TOL:
            break
        x = (xn[:N], xn[N:]) if np.all(np.isfinite(xn)) else (np.asarray(q), np.asarray(z))
    out.update(distinct=len(distinct), period=period)
    return out


def stage2_engine(Ns, n: int = 32, repeats: int = 3, jac_n: int = 0, jac: bool = True) -> dict:
    """``--stage2-engine``: ``stage2="closed_form"`` against ``stage2="engine"`` (module
    docstring); ``jac=False`` skips the derivatives (their programs cost the most compilation).
    Prints and returns the measurements."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxgames.models import ctip

    def timed(f, *a):
        t0, c0 = time.perf_counter(), time.process_time()
        out = jax.block_until_ready(f(*a))
        return out, time.perf_counter() - t0, time.process_time() - c0

    def lower_compile(f, *a):  # tracing and XLA compilation
        return f.lower(*a).compile()

    def rel(u, v):
        u, v = np.asarray(u, float), np.asarray(v, float)
        return float(np.max(np.abs(u - v) / np.maximum(np.abs(v), 1.0)))

    out = {}
    for N in Ns:
        base = ctip.make_params(N)
        pts = [base, base._replace(M=0.0)] + sample(ctip, N, n, seed=N)
        P = stack(ctip, pts)
        res = {}
        for s2 in ctip.STAGE2:
            f = jax.jit(jax.vmap(lambda p, s2=s2: ctip.equilibrium(p, "moq", stage2=s2)))
            comp, cw, cc = timed(lower_compile, f, P)
            eq, w1, c1 = timed(comp, P)
            walls, cpus = [], []
            for _ in range(repeats):
                _, w, c = timed(comp, P)
                walls.append(w)
                cpus.append(c)
            res[s2] = {"compile_wall_s": cw, "compile_cpu_s": cc,
                       "eq_per_s_wall": len(pts) / min(walls),
                       "eq_per_s_cpu": len(pts) / min(cpus),
                       "eq": jax.tree_util.tree_map(np.asarray, eq)}
            print(f"N = {N} {s2:11s}: compile {cw:6.1f} s wall / {cc:6.1f} s CPU; "
                  f"{len(pts)} points: {len(pts) / min(walls):8.2f} eq/s wall, "
                  f"{len(pts) / min(cpus):8.2f} eq/s CPU; load {os.getloadavg()[0]:.2f}",
                  flush=True)
        cf, en = res["closed_form"]["eq"], res["engine"]["eq"]
        diff = {k: rel(getattr(en, k), getattr(cf, k)) for k in ("q", "z", "mu", "EW")}
        same_status = bool(np.all(cf.status == en.status))
        print(f"N = {N}: max rel. difference engine vs closed form {diff}; statuses equal "
              f"{same_status}; status counts {np.unique(cf.status, return_counts=True)}; "
              f"defaults mu = {cf.mu[:2]}", flush=True)
        extra = {}
        if jac:  # derivatives: reverse mode (jax.jacobian) of (EW, q) w.r.t. (sigma, lam, M)
            extra = _stage2_jacobians(ctip, N, pts, cf, res, jac_n, timed, lower_compile)
        for s2 in ctip.STAGE2:
            del res[s2]["eq"]
        out[N] = {"points": len(pts), "max_rel_diff": diff, "statuses_equal": same_status,
                  **extra, **res}
    return out


def _stage2_jacobians(ctip, N, pts, cf, res, jac_n, timed, lower_compile) -> dict:
    """``--stage2-engine``'s derivatives: ``jax.jacobian`` of ``(EW, q)`` w.r.t. ``(sigma, lam,
    M)`` under both routes at the defaults (M binding and slack) and ``jac_n`` sample points off
    kinks; records each route's compile time in ``res`` and returns the comparison."""
    import jax
    import jax.numpy as jnp

    off = [k for k in range(2, len(pts)) if cf.status[k] == 0 and not cf.at_kink[k]]
    jpts = [0, 1] + off[:jac_n]

    def outputs(theta, p, s2):
        p = p._replace(sigma=jnp.broadcast_to(theta[0], (N,)), lam=theta[1], M=theta[2])
        eq = ctip.equilibrium(p, "moq", stage2=s2)
        return jnp.concatenate([eq.EW[None], eq.q])

    J = stack(ctip, [pts[k] for k in jpts])
    thetas = jnp.stack([J.sigma[:, 0], J.lam, J.M], axis=1)
    jacs = {}
    for s2 in ctip.STAGE2:
        g = jax.jit(jax.vmap(jax.jacobian(lambda t, p, s2=s2: outputs(t, p, s2))))
        comp, cw, cc = timed(lower_compile, g, thetas, J)
        jm, w, c = timed(comp, thetas, J)
        jacs[s2] = np.asarray(jm)
        res[s2]["jacobian_compile_cpu_s"] = cc
        print(f"N = {N} {s2:11s}: jax.jacobian compile {cw:6.1f} s wall / {cc:6.1f} s CPU, "
              f"{len(jpts)} points {w:.2f} s wall / {c:.2f} s CPU", flush=True)
    djac = float(np.max(np.abs(jacs["engine"] - jacs["closed_form"])
                        / np.maximum(np.abs(jacs["closed_form"]), 1.0)))
    finite = bool(np.all(np.isfinite(jacs["engine"])))
    print(f"N = {N}: jacobian points {jpts}: max rel. difference {djac:.2e}, engine finite "
          f"{finite}; closed form at the defaults (EW, q) x (sigma, lam, M):\n"
          f"{jacs['closed_form'][0]}", flush=True)
    return {"jacobian_points": jpts, "jacobian_max_rel_diff": djac}


def methods_by_key(methods, *keys):
    d = {m.key: m for m in methods}
    return [d[k] for k in keys]


def _print(rep: dict) -> None:
    print(f"device {rep['device']['tag']} ({rep['device']['cpu']}), load "
          f"{rep['device']['loadavg_before'][0]:.1f} -> {rep['device']['loadavg_after'][0]:.1f}")
    for r in rep["results"].values():
        extra = ""
        if "converged_fraction" in r:
            extra = f" converged {r['converged_fraction']:.3f} at_kink {r['at_kink_fraction']:.3f}"
        print(f"{r['label']:45s} n={r['n']:6d} {r['eq_per_s_best']:10.3g}/s "
              f"(median {r['eq_per_s_median']:.3g}/s, first call {r['first_call_s']:.1f} s)"
              f"{extra}")
    for key, c in rep["comparisons"].items():
        print(f"{key}: engine/scipy {c['engine_over_scipy']:.3g}x, max|dq| "
              f"{c['max_abs_dq_vs_scipy']:.2e}")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--N", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--n", type=int, default=None, help="engine points per (N, regime)")
    ap.add_argument("--chunk", type=int, default=None)
    ap.add_argument("--n-moq", type=int, default=None, help="engine points at N >= 3, MOQ")
    ap.add_argument("--n-scipy", type=int, default=None,
                    help="scipy points at N = 2 (N >= 3: half, MOQ a quarter)")
    ap.add_argument("--n-policy", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--note", default=None, help="free text stored in the JSON")
    ap.add_argument("--out", default=None)
    ap.add_argument("--check-samples", type=int, nargs="+", default=None, metavar="N",
                    help="only: MOQ status at the first 8 sample points for each N")
    ap.add_argument("--engine-only", action="store_true",
                    help="only: the engine's status counts, one call per (N, regime)")
    ap.add_argument("--regime", nargs="+", default=["sp", "moq"], choices=["sp", "moq"],
                    help="regimes of --engine-only")
    ap.add_argument("--sp21-scan", action="store_true",
                    help="only: the best-reply scan of the N = 2 SP point without a pure "
                         "equilibrium")
    ap.add_argument("--moq4-scan", type=int, nargs="?", const=11, default=None,
                    metavar="INDEX", help="only: an N = 4 MOQ sample point without a pure "
                    "equilibrium (11, the default, or 249)")
    ap.add_argument("--stage2-engine", type=int, nargs="*", default=None, metavar="N",
                    help="only: MOQ with stage2='engine' against 'closed_form' (N = 2 4)")
    ap.add_argument("--stage2-n", type=int, default=32, help="sample points, --stage2-engine")
    ap.add_argument("--stage2-jac-n", type=int, default=0,
                    help="sample points (off kinks) in --stage2-engine's jacobians")
    ap.add_argument("--stage2-no-jac", action="store_true",
                    help="--stage2-engine without the jacobians (equilibria only)")
    args = ap.parse_args(argv)
    quick = args.quick
    args.n = args.n or (64 if quick else 1024)
    args.n_moq = args.n_moq or (64 if quick else 256)
    args.chunk = args.chunk or (64 if quick else 256)
    args.n_scipy = args.n_scipy or (2 if quick else 8)
    args.n_policy = args.n_policy or (4 if quick else 16)
    args.repeats = args.repeats or (1 if quick else 3)
    args.n_for = lambda N, regime: args.n if N <= 2 or regime == "sp" else args.n_moq
    # The SciPy loop at N = 4 costs ~8x N = 2 per point (16 states, 4 players), and MOQ there
    # (brentq on mu around the loop) minutes a point: half the points, a quarter for MOQ.
    args.n_scipy_for = lambda N, regime: max(
        1, args.n_scipy if N <= 2 else args.n_scipy // (2 if regime == "sp" else 4))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.engine_only:
        engine_check(args.N, args.regime, args)
        return 0
    if args.stage2_engine is not None:
        stage2_engine(args.stage2_engine or [2, 4], args.stage2_n, args.repeats, args.stage2_jac_n,
                      not args.stage2_no_jac)
        return 0
    if args.sp21_scan or args.check_samples or args.moq4_scan is not None:
        if args.sp21_scan:
            sp21_reply_scan()
        if args.moq4_scan is not None:
            moq4_scan(args.moq4_scan)
        if args.check_samples:
            check_samples(args.check_samples)
        return 0
    rep = run(args)
    _print(rep)
    tag = rep["device"]["tag"]
    out = Path(args.out) if args.out else HERE / "results" / (
        f"ctip_{tag}_float64{'_quick' if args.quick else ''}.json")
    out.write_text(json.dumps(_jsonable(rep), indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
