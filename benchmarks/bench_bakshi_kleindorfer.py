"""Throughput and accuracy of the Bakshi-Kleindorfer (2009) non-cooperative equilibrium.

All methods run on the SAME seeded random parameter points (assumption set (2) of the model,
Figure-3 magnitudes, interior equilibria only; see :func:`sample_params`) and are compared with
the float64 NumPy closed form of section 3.2.1:

* ``engine``       ``jax.jit(jax.vmap(bk.noncooperative))`` (semismooth Newton, default settings)
* ``cf_jax``       ``jax.jit(jax.vmap(bk.noncooperative_closed_form))``
* ``cf_numpy``     ``bk.noncooperative_closed_form(params, xp=numpy)`` on arrays
* ``scipy_loop``   ``scipy.optimize.root`` (hybr, analytic Jacobian) in a Python loop, subsample
* ``optimistix``   ``optimistix.Newton`` on the interior FOCs in ``u = alpha y``, jit(vmap)
* ``sensitivity``  ``jax.jit(jax.vmap(jaxgames.jacobian(bk.noncooperative, ...)))``: the full
                   3 x 9 matrix ``dy*/dtheta`` (solve included)

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/bench_bakshi_kleindorfer.py --all            # both dtypes
    PYTHONPATH=. python benchmarks/bench_bakshi_kleindorfer.py --dtype float32 --n 100000

Timing protocol: every method is called once first (compilation, not timed in the throughput),
then ``--repeats`` rounds are run round-robin (each round times every method once, so a burst
of load on a shared machine hits all methods alike); each call ends with ``block_until_ready``.
The headline statistic is the BEST (minimum) time of the rounds; the median is reported too.
Inputs are on the device before timing; vectorised methods process ``--chunk`` points per call.
See benchmarks/README.md for the column definitions and measured numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUTPUTS = ("y_ss", "y_su", "y_r")
PARAMS = ("f", "theta_ss", "theta_su", "theta_r", "alpha_ss", "alpha_su", "alpha_r", "D_J", "p")

#: Targets (throughput ratios engine / baseline, higher is better).
TARGETS_CPU = {"engine_over_cf_numpy": 0.1, "engine_over_scipy_loop": 1000.0}
TARGETS_GPU = {"engine_over_cf_jax": 0.2}

DEFAULTS = {  # platform -> (n, chunk sizes, n_diag)
    "cpu": (1_000_000, (2**12, 2**14, 2**16), 2**14),
    "gpu": (2**24, (2**20, 2**22), 2**20),
}
#: Methods that process the points in chunks (each is timed at every chunk size).
VECTORISED = ("engine", "cf_jax", "cf_numpy", "optimistix", "sensitivity")
#: The sensitivity matrices are checked on at most this many points (memory: 27 floats each).
N_SENS_CHECK = 2**20


# ----------------------------------------------------------------------------- parameter draws


def _loguniform(rng, lo, hi, m):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), m))


def closed_form_stable(q, xp=np):
    """Interior equilibrium ``(y_ss, y_su, y_r)`` without the cancellation in ``b - sqrt(.)``.

    Same formulas as ``bk.noncooperative_closed_form`` except that the smaller root is computed
    as ``(1/kappa) / (b + sqrt(b^2 - 1/kappa))``. Works on complex input (complex-step
    derivatives). Used to check the reference itself and for the reference sensitivities.
    """
    f, t_ss, t_su, t_r, a_ss, a_su, a_r, d, p = q
    eta = (1 - f) * a_r / f * (p / a_ss + (1 - p) / a_su)
    kappa = a_r * (1 - f) * d
    b = (1 + kappa - eta) / (2 * kappa)
    p_r = (1 / kappa) / (b + xp.sqrt(b * b - 1 / kappa))
    y_r = xp.log(t_r / p_r) / a_r
    y_ss = xp.log(t_ss * a_ss * (1 - p_r) * f * d) / a_ss
    y_su = xp.log(t_su * a_su * (1 - p_r) * f * d) / a_su
    return y_ss, y_su, y_r


def sample_params(bk, n: int, seed: int, margin: float):
    """``n`` seeded points with a unique, interior equilibrium (rejection sampling).

    Draws: ``theta_*`` log-uniform in [1e-3, 0.05], ``alpha_*`` log-uniform in [1e-5, 1e-3],
    ``D_J`` log-uniform in [1e7, 1e9], ``f, p`` uniform in (0, 1); the two supplier draws are
    ordered so that ``alpha_su <= alpha_ss`` and ``theta_su > theta_ss``. A point is kept if
    assumption set (2) holds (``bk.assumptions_hold``), the closed form is finite, every
    player's scaled investment ``alpha y >= margin`` (interior, away from the boundary), and the
    other root of the ``P_r`` quadratic is ``>= theta_r`` (so no second interior equilibrium).
    Returns ``(dict name -> float64 array, acceptance rate)``.
    """
    rng = np.random.default_rng(seed)
    kept = {k: [] for k in PARAMS}
    n_kept = n_drawn = 0
    while n_kept < n:
        m = min(max(3 * (n - n_kept), 4096), 2**22)  # bounded batches (GPU-sized n)
        a1, a2 = _loguniform(rng, 1e-5, 1e-3, m), _loguniform(rng, 1e-5, 1e-3, m)
        t1, t2 = _loguniform(rng, 1e-3, 0.05, m), _loguniform(rng, 1e-3, 0.05, m)
        q = bk.Params(
            f=rng.uniform(0.0, 1.0, m),
            theta_ss=np.minimum(t1, t2),
            theta_su=np.maximum(t1, t2),
            theta_r=_loguniform(rng, 1e-3, 0.05, m),
            alpha_ss=np.maximum(a1, a2),
            alpha_su=np.minimum(a1, a2),
            alpha_r=_loguniform(rng, 1e-5, 1e-3, m),
            D_J=_loguniform(rng, 1e7, 1e9, m),
            p=rng.uniform(0.0, 1.0, m),
        )
        with np.errstate(all="ignore"):
            ok = np.asarray(bk.assumptions_hold(q, np)) & (q.f > 0)
            cf = bk.noncooperative_closed_form(q, np)
            eta = (1 - q.f) * q.alpha_r / q.f * (q.p / q.alpha_ss + (1 - q.p) / q.alpha_su)
            kappa = q.alpha_r * (1 - q.f) * q.D_J
            b = (1 + kappa - eta) / (2 * kappa)
            big_root = b + np.sqrt(b * b - 1 / kappa)
            for y, a in ((cf.y_ss, q.alpha_ss), (cf.y_su, q.alpha_su), (cf.y_r, q.alpha_r)):
                ok &= np.isfinite(y) & (a * y >= margin)
            ok &= np.isfinite(big_root) & (big_root >= q.theta_r)
        idx = np.flatnonzero(ok)[: n - n_kept]
        for k in PARAMS:
            kept[k].append(np.asarray(getattr(q, k))[idx])
        n_kept += idx.size
        n_drawn += m
    return {k: np.concatenate(v) for k, v in kept.items()}, n_kept / n_drawn


# ----------------------------------------------------------------------------- helpers


def _chunks(params: dict, n: int, chunk: int, dtype) -> list[list[np.ndarray]]:
    """Split into equal chunks (the last one padded by repeating the final point)."""
    n_pad = math.ceil(n / chunk) * chunk
    cols = [np.pad(params[k].astype(dtype), (0, n_pad - n), mode="edge") for k in PARAMS]
    return [[c[i : i + chunk] for c in cols] for i in range(0, n_pad, chunk)]


def _rel_err(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per point: max over the three outputs of ``|y - ref| / |ref|`` (inf if not finite)."""
    with np.errstate(all="ignore"):
        e = np.max(np.abs(y.astype(np.float64) - ref) / np.abs(ref), axis=1)
    return np.where(np.isfinite(e), e, np.inf)


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:  # not Linux: fall back
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(mod: str) -> str:
    try:
        return __import__(mod).__version__
    except Exception:  # noqa: BLE001 - report, do not fail
        return "not installed"


def _library_info(pkg, note: str | None) -> dict:
    """Which jaxgames was measured: path, git commit and dirty state, hash of its sources."""
    lib = Path(pkg.__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(lib.rglob("*.py")):
        h.update(f.relative_to(lib).as_posix().encode())
        h.update(f.read_bytes())
    info = {"path": str(lib), "source_sha256": h.hexdigest(), "note": note}

    def git(*cmd):
        r = subprocess.run(["git", "-C", str(lib), *cmd], capture_output=True, text=True,
                           check=False)
        return r.stdout.strip() if r.returncode == 0 else None

    info["git_commit"] = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", ".")
    info["git_dirty"] = None if status is None else bool(status)
    return info


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def _warm_u(theta, alpha, share, xp):
    """The engine's warm start in scaled units ``u = alpha y`` (``bk._warm_start`` times alpha)."""
    z = alpha * theta * share
    return xp.where(z > 1.0, xp.log(xp.where(z > 1.0, z, 1.0)), 0.0)


# ----------------------------------------------------------------------------- baselines


def _foc_numpy(u, q):
    """FOCs (9)-(10) in ``u = alpha y`` (interior form) and their analytic Jacobian."""
    f, t_ss, t_su, t_r, a_ss, a_su, a_r, d, p = q
    p_ss, p_su, p_r = t_ss * np.exp(-u[0]), t_su * np.exp(-u[1]), t_r * np.exp(-u[2])
    g_ss = f * d * a_ss * p_ss
    g_su = f * d * a_su * p_su
    g_r = (1 - f) * d * a_r * p_r
    e = p * (1 - p_ss) + (1 - p) * (1 - p_su)
    fval = np.array([1 - g_ss * (1 - p_r), 1 - g_su * (1 - p_r), 1 - g_r * e])
    jac = np.array([
        [g_ss * (1 - p_r), 0.0, -g_ss * p_r],
        [0.0, g_su * (1 - p_r), -g_su * p_r],
        [-g_r * p * p_ss, -g_r * (1 - p) * p_su, g_r * e],
    ])
    return fval, jac


def _scipy_loop(points: list[tuple[float, ...]], tol: float):
    from scipy.optimize import root

    out = []
    for q in points:
        f, t_ss, t_su, t_r, a_ss, a_su, a_r, d, _ = q
        u0 = np.array([
            _warm_u(t_ss, a_ss, f * d, np), _warm_u(t_su, a_su, f * d, np),
            _warm_u(t_r, a_r, (1 - f) * d, np),
        ])
        sol = root(_foc_numpy, u0, args=(q,), jac=True, method="hybr", tol=tol)
        out.append((sol.x / np.array([a_ss, a_su, a_r]), sol.success))
    return out


def _foc_jax(u, q):
    import jax.numpy as jnp

    p_ss = q.theta_ss * jnp.exp(-u[0])
    p_su = q.theta_su * jnp.exp(-u[1])
    p_r = q.theta_r * jnp.exp(-u[2])
    e = q.p * (1 - p_ss) + (1 - q.p) * (1 - p_su)
    return jnp.stack([
        1 - q.f * q.D_J * q.alpha_ss * p_ss * (1 - p_r),
        1 - q.f * q.D_J * q.alpha_su * p_su * (1 - p_r),
        1 - (1 - q.f) * q.D_J * q.alpha_r * p_r * e,
    ])


def _u0_jax(q):
    import jax.numpy as jnp

    return jnp.stack([
        _warm_u(q.theta_ss, q.alpha_ss, q.f * q.D_J, jnp),
        _warm_u(q.theta_su, q.alpha_su, q.f * q.D_J, jnp),
        _warm_u(q.theta_r, q.alpha_r, (1 - q.f) * q.D_J, jnp),
    ])


def _optimistix_solve(q, tol: float):
    import jax.numpy as jnp
    import optimistix as optx

    sol = optx.root_find(
        _foc_jax, optx.Newton(rtol=tol, atol=tol), _u0_jax(q), args=q, max_steps=60, throw=False
    )
    y = sol.value / jnp.stack([q.alpha_ss, q.alpha_su, q.alpha_r])
    return y, sol.result == optx.RESULTS.successful, sol.stats["num_steps"]


def _hand_newton(q, tol: float, max_steps: int = 60):
    """Diagnostic floor: plain Newton on the interior FOCs, analytic 3x3 block elimination."""
    import jax
    import jax.numpy as jnp

    def parts(u):
        p_ss = q.theta_ss * jnp.exp(-u[0])
        p_su = q.theta_su * jnp.exp(-u[1])
        p_r = q.theta_r * jnp.exp(-u[2])
        g_ss = q.f * q.D_J * q.alpha_ss * p_ss
        g_su = q.f * q.D_J * q.alpha_su * p_su
        g_r = (1 - q.f) * q.D_J * q.alpha_r * p_r
        e = q.p * (1 - p_ss) + (1 - q.p) * (1 - p_su)
        fval = jnp.stack([1 - g_ss * (1 - p_r), 1 - g_su * (1 - p_r), 1 - g_r * e])
        return fval, (p_ss, p_su, p_r, g_ss, g_su, g_r, e)

    def cond(s):
        _, fval, it = s
        return (jnp.max(jnp.abs(fval)) > tol) & (it < max_steps)

    def body(s):
        u, fval, it = s
        _, (p_ss, p_su, p_r, g_ss, g_su, g_r, e) = parts(u)
        a, c = g_ss * (1 - p_r), -g_ss * p_r  # row 0: [a, 0, c]
        d, h = g_su * (1 - p_r), -g_su * p_r  # row 1: [0, d, h]
        k0, k1, k2 = -g_r * q.p * p_ss, -g_r * (1 - q.p) * p_su, g_r * e
        du2 = (-fval[2] + k0 * fval[0] / a + k1 * fval[1] / d) / (k2 - k0 * c / a - k1 * h / d)
        du = jnp.stack([(-fval[0] - c * du2) / a, (-fval[1] - h * du2) / d, du2])
        u = u + du
        return u, parts(u)[0], it + 1

    u0 = _u0_jax(q)
    u, fval, it = jax.lax.while_loop(cond, body, (u0, parts(u0)[0], jnp.int32(0)))
    y = u / jnp.stack([q.alpha_ss, q.alpha_su, q.alpha_r])
    return y, jnp.max(jnp.abs(fval)) <= tol, it


# ----------------------------------------------------------------------------- timing


class Timed:
    """A method to time: ``run()`` does the whole batch and blocks; ``collect(out)`` -> dict."""

    def __init__(self, key, label, n, run, collect, chunk=None):
        self.key, self.label, self.n, self.run, self.collect = key, label, n, run, collect
        self.chunk = chunk  # points per call (None: not chunked)
        self.by_chunk: dict | None = None  # after _best_chunks: timings at every chunk size
        self.times: list[float] = []
        self.first_call_s = float("nan")
        self.result: dict = {}


def _time_round_robin(methods: list[Timed], repeats: int) -> None:
    for m in methods:
        t0 = time.perf_counter()
        out = m.run()
        m.first_call_s = time.perf_counter() - t0
        m.result = m.collect(out)
        del out
    for _ in range(repeats):
        for m in methods:
            t0 = time.perf_counter()
            out = m.run()
            m.times.append(time.perf_counter() - t0)
            del out


def _best_chunks(methods: list[Timed]) -> list[Timed]:
    """One entry per method: the chunk size with the best time; all sizes kept in ``by_chunk``."""
    best: dict[str, Timed] = {}
    by_chunk: dict[str, dict] = {}
    for m in methods:
        if m.chunk is None:
            best[m.key] = m
            continue
        by_chunk.setdefault(m.key, {})[m.chunk] = {
            "best_s": min(m.times), "median_s": float(np.median(m.times)),
            "eq_per_s_best": m.n / min(m.times), "first_call_s": m.first_call_s}
        if m.key not in best or min(m.times) < min(best[m.key].times):
            best[m.key] = m
    for key, m in best.items():
        m.by_chunk = by_chunk.get(key)
    return list(best.values())


def _summary(m: Timed) -> dict:
    best, med = min(m.times), float(np.median(m.times))
    out = {
        "label": m.label, "n": m.n, "times_s": m.times, "best_s": best, "median_s": med,
        "eq_per_s_best": m.n / best, "eq_per_s_median": m.n / med,
        "first_call_s": m.first_call_s,
    }
    if m.chunk is not None:
        out["chunk"] = m.chunk
        out["by_chunk"] = m.by_chunk
    return out


# ----------------------------------------------------------------------------- one dtype


def run_one(args) -> dict:
    import jax

    jax.config.update("jax_enable_x64", args.dtype == "float64")  # before any array is made
    if importlib.util.find_spec("jaxgames") is None:  # PYTHONPATH wins; else this checkout
        sys.path.insert(0, str(ROOT))
    import jax.numpy as jnp

    import jaxgames
    from jaxgames import Newton
    from jaxgames.models import bakshi_kleindorfer as bk

    dev = jax.devices()[0]
    plat = "cpu" if dev.platform == "cpu" else "gpu"
    n = args.n or DEFAULTS[plat][0]
    chunk_sizes = sorted({min(c, n) for c in (args.chunk or DEFAULTS[plat][1])})
    args.n_diag = min(DEFAULTS[plat][2] if args.n_diag is None else args.n_diag, n)
    dtype = np.float64 if args.dtype == "float64" else np.float32
    tol = 1000.0 * float(np.finfo(dtype).eps)  # the engine's default tolerance rule
    load_start = os.getloadavg()
    t_start = time.perf_counter()

    # --- draws and the reference (float64 NumPy closed form at the dtype-rounded points)
    t0 = time.perf_counter()
    params64, acceptance = sample_params(bk, n, args.seed, args.margin)
    q_ref = bk.Params(**{k: v.astype(dtype).astype(np.float64) for k, v in params64.items()})
    cf_ref = bk.noncooperative_closed_form(q_ref, np)
    y_ref = np.stack([getattr(cf_ref, k) for k in OUTPUTS], axis=1)
    y_stable = np.stack(closed_form_stable(q_ref), axis=1)
    ref_self_err = _rel_err(y_ref, y_stable)
    sample_s = time.perf_counter() - t0
    print(f"[{args.dtype}] {n} points drawn (acceptance {acceptance:.3f}) in {sample_s:.1f}s; "
          f"reference vs cancellation-free closed form: max rel diff {ref_self_err.max():.2e}",
          flush=True)

    np_chunks = {c: _chunks(params64, n, c, dtype) for c in chunk_sizes}
    dev_chunks = {c: [jax.device_put(bk.Params(*b)) for b in np_chunks[c]] for c in chunk_sizes}

    def jax_runner(fn, chunk):
        def run():
            outs = [fn(c) for c in dev_chunks[chunk]]
            jax.block_until_ready(outs)
            return outs
        return run

    def cat(outs, get):
        return np.concatenate([np.asarray(get(o)) for o in outs])[:n]

    def collect_nc(outs):
        y = np.stack([cat(outs, lambda o, k=k: getattr(o, k)) for k in OUTPUTS], axis=1)
        res = {"y": y, "ok": cat(outs, lambda o: o.converged)}
        if hasattr(outs[0], "iterations") and outs[0].iterations.dtype.kind == "i":
            res["iterations"] = cat(outs, lambda o: o.iterations)
            res["chunk_max_iterations"] = [int(np.max(o.iterations)) for o in outs]
        return res

    def collect_cf(outs):
        y = np.stack([cat(outs, lambda o, k=k: getattr(o, k)) for k in OUTPUTS], axis=1)
        return {"y": y, "ok": np.all(np.isfinite(y), axis=1)}

    def collect_tuple(outs):
        return {"y": cat(outs, lambda o: o[0]), "ok": cat(outs, lambda o: o[1]),
                "iterations": cat(outs, lambda o: o[2])}

    engine = jax.jit(jax.vmap(bk.noncooperative))
    cf_jax = jax.jit(jax.vmap(lambda p: bk.noncooperative_closed_form(p)))
    optx_fn = jax.jit(jax.vmap(lambda p: _optimistix_solve(p, tol)))
    sens = jax.jit(jax.vmap(
        lambda p: jaxgames.jacobian(bk.noncooperative, p, outputs=list(OUTPUTS))))

    def cf_numpy_runner(chunk):
        def run():
            return [bk.noncooperative_closed_form(bk.Params(*c), np) for c in np_chunks[chunk]]
        return run

    n_loop = min(args.n_loop, n)
    # The loop always runs in float64 (at the dtype-rounded points, like the reference).
    loop_points = [tuple(float(getattr(q_ref, k)[i]) for k in PARAMS) for i in range(n_loop)]
    scipy_tol = 1e-12

    def collect_scipy(out):
        return {"y": np.stack([o[0] for o in out]), "ok": np.array([o[1] for o in out])}

    n_sens = min(n, N_SENS_CHECK)

    def collect_sens(outs):
        ok = np.concatenate([  # every entry finite, all points
            np.all([np.isfinite(np.asarray(o[a][b])) for a in OUTPUTS for b in PARAMS], axis=0)
            for o in outs])[:n]
        head = outs[: math.ceil(n_sens / outs[0][OUTPUTS[0]][PARAMS[0]].shape[0])]
        jac = np.stack([
            np.stack([np.concatenate([np.asarray(o[a][b]) for o in head])[:n_sens]
                      for b in PARAMS], axis=1)
            for a in OUTPUTS], axis=1)  # (n_sens, 3, 9)
        return {"jac": jac, "ok": ok}

    vectorised = {
        "engine": ("engine jit(vmap(noncooperative))", lambda c: jax_runner(engine, c),
                   collect_nc),
        "cf_jax": ("closed form, jit(vmap) JAX", lambda c: jax_runner(cf_jax, c), collect_cf),
        "cf_numpy": ("closed form, NumPy arrays", cf_numpy_runner, collect_cf),
        "optimistix": ("optimistix.Newton jit(vmap)", lambda c: jax_runner(optx_fn, c),
                       collect_tuple),
        "sensitivity": ("engine + dy*/dtheta (3x9) jit(vmap)", lambda c: jax_runner(sens, c),
                        collect_sens),
    }
    # Every vectorised method runs at every chunk size and is reported at its own best one:
    # on a CPU the best size depends on how much of a method's working set stays in cache.
    methods = [Timed("scipy_loop", "scipy.optimize.root hybr loop", n_loop,
                     lambda: _scipy_loop(loop_points, scipy_tol), collect_scipy)]
    for key, (label, runner, collect) in vectorised.items():
        for c in chunk_sizes:
            methods.append(Timed(key, label, n, runner(c), collect, chunk=c))
    if args.skip:
        methods = [m for m in methods if m.key not in args.skip]
    _time_round_robin(methods, args.repeats)
    methods = _best_chunks(methods)

    # --- accuracy
    results = {}
    for m in methods:
        s = _summary(m)
        r = m.result
        s["converged_share"] = float(np.mean(r["ok"]))
        if "y" in r:
            e = _rel_err(r["y"], y_ref[: m.n])
            s["max_rel_err"] = float(e.max())
            s["max_rel_err_converged"] = float(e[r["ok"]].max()) if r["ok"].any() else None
            s["median_rel_err"] = float(np.median(e))
            s["p99_rel_err"] = float(np.quantile(e, 0.99))
            s["max_rel_err_vs_stable_cf"] = float(_rel_err(r["y"], y_stable[: m.n]).max())
        if "iterations" in r:
            s["iterations_hist"] = np.bincount(r["iterations"]).tolist()
            s["iterations_mean"] = float(np.mean(r["iterations"]))
        if "chunk_max_iterations" in r:
            s["chunk_max_iterations_mean"] = float(np.mean(r["chunk_max_iterations"]))
        if m.key == "sensitivity":
            q_sens = bk.Params(*[np.asarray(v)[:n_sens] for v in q_ref])
            s.update(_sensitivity_accuracy(r["jac"], q_sens, y_ref[:n_sens]))
            s["accuracy_checked_on"] = n_sens
        results[m.key] = s

    ratios = _ratios(results)
    targets = TARGETS_CPU if plat == "cpu" else TARGETS_GPU
    verdicts = {
        k: {"target": v, "measured": ratios.get(k),
            "pass": (ratios.get(k) is not None and ratios[k] >= v)}
        for k, v in targets.items()
    }

    diagnostics = {}
    if not args.no_diagnostics and args.n_diag > 0:
        diagnostics = _diagnostics(jax, jnp, bk, Newton, params64, dtype, tol, y_ref, args)

    report = {
        "benchmark": "bakshi_kleindorfer.noncooperative",
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "dtype": args.dtype,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_model": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "jax_platform": dev.platform,
            "device_kind": dev.device_kind,
            "n_devices": jax.device_count(),
            "load_avg_start": load_start,
            "load_avg_end": os.getloadavg(),
        },
        "library": _library_info(jaxgames, args.note),
        "versions": {m: _version(m) for m in
                     ("jax", "jaxlib", "numpy", "scipy", "optimistix", "equinox", "jaxgames")},
        "setup": {
            "n": n, "n_loop": n_loop, "chunk_sizes": chunk_sizes, "repeats": args.repeats,
            "chunk_rule": "each vectorised method is reported at its best chunk size",
            "seed": args.seed, "margin": args.margin, "acceptance": acceptance,
            "statistic": "best of repeats (round-robin); median also reported",
            "engine_tolerance": tol, "optimistix_tol": tol, "scipy_tol": scipy_tol,
            "starts": "engine default warm start; optimistix and scipy start at the same point",
            "reference": "float64 NumPy closed form at the dtype-rounded parameters",
            "reference_vs_stable_max_rel_diff": float(ref_self_err.max()),
        },
        "methods": results,
        "ratios": ratios,
        "targets": verdicts,
        "diagnostics": diagnostics,
        "wall_s": time.perf_counter() - t_start,
    }
    _print_report(report)
    out = Path(args.out) if args.out else (
        ROOT / "benchmarks" / "results" / f"bakshi_kleindorfer_{_device_tag(dev)}_{args.dtype}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_jsonable(report), indent=1) + "\n")
    print(f"wrote {out}")
    return report


def _device_tag(dev) -> str:
    if dev.platform == "cpu":
        return "cpu"
    kind = "".join(ch if ch.isalnum() else "-" for ch in dev.device_kind.lower())
    return f"{dev.platform}-{kind}".strip("-")


def _sensitivity_accuracy(jac: np.ndarray, q_ref, y_ref: np.ndarray) -> dict:
    """Elasticity errors vs complex-step derivatives of the cancellation-free closed form."""
    base = [np.asarray(getattr(q_ref, k), np.complex128) for k in PARAMS]
    theta = np.stack([np.asarray(getattr(q_ref, k)) for k in PARAMS], axis=1)  # (n, 9)
    n = jac.shape[0]
    h = 1e-20
    el_ref = np.empty((n, 3, len(PARAMS)))
    for j in range(len(PARAMS)):
        q = list(base)
        q[j] = q[j] * (1 + 1j * h)
        y = np.stack(closed_form_stable(q), axis=1)
        el_ref[:, :, j] = y.imag / h / y_ref  # theta_j / y_i * dy_i/dtheta_j
    with np.errstate(all="ignore"):
        el = jac.astype(np.float64) * theta[:, None, :] / y_ref[:, :, None]
        err = np.abs(el - el_ref)
    err = np.where(np.isfinite(err), err, np.inf)
    per_point = err.reshape(n, -1).max(axis=1)
    return {
        "max_abs_elasticity_err": float(per_point.max()),
        "median_abs_elasticity_err": float(np.median(per_point)),
        "max_abs_elasticity": float(np.abs(el_ref).max()),
    }


def _ratios(res: dict) -> dict:
    out = {}
    if "engine" not in res:
        return out
    e = res["engine"]["eq_per_s_best"]
    for k in ("cf_numpy", "scipy_loop", "cf_jax", "optimistix"):
        if k in res:
            out[f"engine_over_{k}"] = e / res[k]["eq_per_s_best"]
            out[f"engine_over_{k}_median"] = (
                res["engine"]["eq_per_s_median"] / res[k]["eq_per_s_median"])
    if "sensitivity" in res:
        out["sensitivity_time_over_solve_time"] = res["sensitivity"]["best_s"] / res["engine"][
            "best_s"]
        out["sensitivity_time_over_solve_time_median"] = (
            res["sensitivity"]["median_s"] / res["engine"]["median_s"])
    return out


# ----------------------------------------------------------------------------- diagnostics


def _diagnostics(jax, jnp, bk, Newton, params64, dtype, tol, y_ref, args) -> dict:
    """Why is the engine as fast as it is? Variants timed on a subsample (one chunk)."""
    n_d = args.n_diag
    chunk = _chunks({k: v[:n_d] for k, v in params64.items()}, n_d, n_d, dtype)[0]
    q = jax.device_put(bk.Params(*chunk))
    default = bk.SOLVER

    def engine_with(**kw):
        s = Newton(**{"max_steps": default.max_steps, "max_step": default.max_step, **kw})
        return jax.jit(jax.vmap(lambda p: bk.noncooperative(p, solver=s)))

    base = jax.jit(jax.vmap(bk.noncooperative))(q)
    k_max = int(np.max(base.iterations))
    variants = {
        "engine (default)": jax.jit(jax.vmap(bk.noncooperative)),
        "engine, max_backtracks=0": engine_with(max_backtracks=0),
        "hand-coded Newton (floor)": jax.jit(jax.vmap(lambda p: _hand_newton(p, tol))),
        "closed form JAX": jax.jit(jax.vmap(lambda p: bk.noncooperative_closed_form(p))),
    }
    for k in range(0, k_max + 1):
        variants[f"engine, max_backtracks=0, max_steps={k}"] = engine_with(
            max_backtracks=0, max_steps=k)
    methods = []
    for name, fn in variants.items():
        def run(fn=fn):
            out = fn(q)
            jax.block_until_ready(out)
            return out

        def collect(out):
            if isinstance(out, tuple) and not hasattr(out, "_fields"):
                return {"y": np.asarray(out[0]), "ok": np.asarray(out[1]),
                        "it": np.asarray(out[2])}
            y = np.stack([np.asarray(getattr(out, k)) for k in OUTPUTS], axis=1)
            return {"y": y, "ok": np.asarray(out.converged), "it": np.asarray(out.iterations)}

        methods.append(Timed(name, name, n_d, run, collect))
    _time_round_robin(methods, args.repeats)
    table = {}
    for m in methods:
        e = _rel_err(m.result["y"], y_ref[:n_d])
        table[m.key] = {
            "best_s": min(m.times), "eq_per_s_best": n_d / min(m.times),
            "converged_share": float(np.mean(m.result["ok"])),
            "max_iterations": int(np.max(m.result["it"])),
            "max_rel_err": float(e.max()),
        }
    # Cost model of the engine: time(k) = overhead + k * per_iteration (k Newton steps, no LS).
    ks = np.arange(0, k_max + 1)
    ts = np.array([table[f"engine, max_backtracks=0, max_steps={k}"]["best_s"] for k in ks])
    slope, intercept = np.polyfit(ks, ts, 1) if len(ks) > 1 else (float("nan"), ts[0])
    t_default = table["engine (default)"]["best_s"]
    t_nols = table["engine, max_backtracks=0"]["best_s"]
    its = np.asarray(base.iterations)
    diag = {
        "n": n_d,
        "variants": table,
        "engine_iterations_hist": np.bincount(its).tolist(),
        "engine_max_iterations": k_max,
        "engine_mean_iterations": float(its.mean()),
        "per_iteration_ns_per_point": 1e9 * slope / n_d,
        "overhead_ns_per_point": 1e9 * intercept / n_d,
        "line_search_share_of_time": (t_default - t_nols) / t_default,
        "lockstep_factor_max_over_mean_iterations": k_max / max(float(its.mean()), 1e-12),
    }
    try:
        txt = jax.jit(jax.vmap(bk.noncooperative)).lower(q).compile().as_text()
        txt_cf = jax.jit(jax.vmap(lambda p: bk.noncooperative_closed_form(p))).lower(
            q).compile().as_text()
        diag["hlo_kernels_engine"] = txt.count(" fusion(") + txt.count(" dot(")
        diag["hlo_kernels_closed_form"] = txt_cf.count(" fusion(") + txt_cf.count(" dot(")
    except Exception as exc:  # noqa: BLE001 - diagnostics only
        diag["hlo_error"] = repr(exc)
    return diag


# ----------------------------------------------------------------------------- printing


def _fmt(x, spec=".3g"):
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return format(x, spec)


def _print_report(rep: dict) -> None:
    mach, st = rep["machine"], rep["setup"]
    print()
    print(f"Bakshi-Kleindorfer non-cooperative equilibrium -- {rep['dtype']} on "
          f"{mach['jax_platform']} ({mach['device_kind']}, {mach['cpu_model']}, "
          f"{mach['cpu_count']} cores), n={st['n']}, chunk sizes {st['chunk_sizes']} (each "
          f"method at its best), "
          f"repeats={st['repeats']}, statistic: best (median in JSON)")
    head = (f"{'method':38s} {'chunk':>6s} {'n':>9s} {'best s':>9s} {'median s':>9s} {'eq/s':>10s} "
            f"{'conv %':>7s} {'max rel err':>11s} {'p99 rel':>9s} {'vs stable':>9s} "
            f"{'1st call s':>10s}")
    print(head)
    print("-" * len(head))
    for r in rep["methods"].values():
        print(f"{r['label']:38s} {r.get('chunk', '-')!s:>6s} {r['n']:9d} {_fmt(r['best_s']):>9s} "
              f"{_fmt(r['median_s']):>9s} {_fmt(r['eq_per_s_best']):>10s} "
              f"{100 * r['converged_share']:7.2f} {_fmt(r.get('max_rel_err')):>11s} "
              f"{_fmt(r.get('p99_rel_err')):>9s} {_fmt(r.get('max_rel_err_vs_stable_cf')):>9s} "
              f"{_fmt(r['first_call_s']):>10s}")
    if "sensitivity" in rep["methods"]:
        s = rep["methods"]["sensitivity"]
        print(f"sensitivity: max |elasticity error| {_fmt(s['max_abs_elasticity_err'])} "
              f"(median {_fmt(s['median_abs_elasticity_err'])}; largest |elasticity| "
              f"{_fmt(s['max_abs_elasticity'])})")
    if "engine" in rep["methods"]:
        e = rep["methods"]["engine"]
        print(f"engine iterations histogram (index = iterations): {e['iterations_hist']}, "
              f"mean {e['iterations_mean']:.2f}, mean of per-chunk max "
              f"{e['chunk_max_iterations_mean']:.2f}")
    print("ratios (throughput engine/baseline, best): " + ", ".join(
        f"{k}={_fmt(v)}" for k, v in rep["ratios"].items() if not k.endswith("_median")))
    for k, v in rep["targets"].items():
        print(f"TARGET {k} >= {v['target']}: measured {_fmt(v['measured'])} -> "
              f"{'PASS' if v['pass'] else 'FAIL'}")
    d = rep.get("diagnostics") or {}
    if d:
        print(f"\ndiagnostics on {d['n']} points (best of repeats):")
        for name, r in d["variants"].items():
            print(f"  {name:44s} {_fmt(r['best_s']):>9s} s {_fmt(r['eq_per_s_best']):>9s} eq/s "
                  f"conv {100 * r['converged_share']:6.2f}% max it {r['max_iterations']:3d} "
                  f"max rel err {_fmt(r['max_rel_err'])}")
        print(f"  per Newton iteration {_fmt(d['per_iteration_ns_per_point'])} ns/point, "
              f"fixed overhead {_fmt(d['overhead_ns_per_point'])} ns/point; "
              f"line-search share of time {_fmt(d['line_search_share_of_time'])}; "
              f"lockstep factor (max/mean iterations) "
              f"{_fmt(d['lockstep_factor_max_over_mean_iterations'])}; "
              f"XLA kernels engine {d.get('hlo_kernels_engine')} vs closed form "
              f"{d.get('hlo_kernels_closed_form')}")
    lib = rep["library"]
    print(f"jaxgames: {lib['path']} commit {lib['git_commit']} dirty {lib['git_dirty']} "
          f"sha256 {lib['source_sha256'][:12]} {lib['note'] or ''}")
    print(f"load average start {mach['load_avg_start']}, end {mach['load_avg_end']}; "
          f"wall {rep['wall_s']:.0f}s")


# ----------------------------------------------------------------------------- driver


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    ap.add_argument("--all", action="store_true", help="run float64 and float32 (subprocesses)")
    ap.add_argument("--n", type=int, default=None,
                    help="points for the vectorised methods (default 1e6 CPU, 2^24 GPU)")
    ap.add_argument("--n-loop", type=int, default=500, help="points for the scipy loop")
    ap.add_argument("--n-diag", type=int, default=None,
                    help="points for the diagnostics (default 2^16 CPU, 2^20 GPU)")
    ap.add_argument("--chunk", type=int, nargs="+", default=None,
                    help="points per call of a vectorised method; several sizes are each timed "
                         "and every method is reported at its best (default 2^12 2^14 2^16 "
                         "CPU, 2^20 2^22 GPU)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=20090601)
    ap.add_argument("--margin", type=float, default=0.1,
                    help="minimum scaled investment alpha*y of every player in the draws")
    ap.add_argument("--skip", nargs="*", default=[], help="method keys to leave out")
    ap.add_argument("--no-diagnostics", action="store_true")
    ap.add_argument("--note", default=None, help="free text stored in the JSON (provenance)")
    ap.add_argument("--out", default=None,
                    help="JSON path (with --all, '{dtype}' in it is replaced)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.all:
        run_one(args)
        return 0
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = [a for a in argv if a != "--all"]
    # Drop --dtype/--out (set per child).
    clean, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--dtype", "--out"):
            skip = True
            continue
        if a.startswith(("--dtype=", "--out=")):
            continue
        clean.append(a)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(ROOT)]))
    rc = 0
    for dt in ("float64", "float32"):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--dtype", dt, *clean]
        if args.out:
            cmd += ["--out", args.out.replace("{dtype}", dt)]
        print(f"$ {' '.join(cmd)}", flush=True)
        rc = max(rc, subprocess.run(cmd, env=env, check=False).returncode)
    return rc


if __name__ == "__main__":
    sys.exit(main())
