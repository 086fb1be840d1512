"""Width scan: throughput of every shipped solve function against the batch width (issue 14).

On a GPU a sweep is fast only when many points run side by side, so the cost of a batched solve
should follow its hard points, not the batch width. This script measures that cost for every
solve function of every registered model (``jaxgames.models.REGISTRY``, read through
``jaxgames.model_spec``; a model whose module does not import is skipped with a message):

* ``N`` random points are drawn once per solve function over the model's allowed domain (see
  :func:`draw_points`); the SAME points are used at every width.
* At width ``w`` the ``N`` points are processed as ``N / w`` vmapped groups of ``w`` points in
  the engine's tile loop (``jaxgames._batching.tile_loop``: a ``fori_loop`` over the groups,
  the layout of the sweep's CPU chunks; ``w = N``: one ``vmap``), under ``jit``. The last
  group is padded by repeating the final point when ``w`` does not divide ``N``; throughput
  counts the ``N`` real points only.
* Compilation is excluded: every width is compiled ahead of time (``jit(...).lower().compile()``)
  before any timing. Then ``--repeats`` rounds are run round-robin over the widths (a burst of
  load on a shared machine hits every width alike); each call ends with ``block_until_ready``.
  The one-minute load average is recorded with every timed call.
* Reported per width: best and median time, points/s (best and median), the ratio of each
  width's points/s to the best width's (best-time based; ``ratio_median`` from medians), and per
  function the share of points converged, inside the model's assumptions, and flagged
  (``not (converged and assumptions_hold)``), the number of unflagged points with a non-finite
  output (must be 0: failure is data, never a silent NaN), and whether the outputs are
  bit-identical across widths.

A stochastic solve function (``STOCHASTIC``: ``fn(params, key)``) gets the key of replication 0,
``jax.random.fold_in(jax.random.key(seed), 0)``, at every point (common random numbers, as in a
sweep). Categorical parameters get uniformly drawn integer codes (one compilation serves every
label); settings (non-numeric leaves such as a quadrature law or ISB's ``Settings``) keep the
base point's value and are compiled in.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/bench_width.py --only bakshi_kleindorfer.noncooperative
    PYTHONPATH=. python benchmarks/bench_width.py --quick            # every function, small
    PYTHONPATH=. python benchmarks/bench_width.py --n 2048 --widths 8 64 1024 2048 \\
        --only defender_attacker.equilibrium --out benchmarks/results/width_da.json

Only JAX, NumPy and jaxgames are needed (the one-command GPU report, ``benchmarks/gpu.sh``, runs
this script). See benchmarks/README.md, "Width scan", for the measured numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import importlib.util
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WIDTHS = (8, 64, 1024, 16384)
#: ``--quick``: points, widths, repeats.
QUICK = (512, (8, 64, 512), 2)
#: Issue 14 targets (CPU, float64): width >= 1,024 at >= 0.7x the best width's points/s;
#: defender_attacker >= 5,000 points/s at every width >= 64.
TARGET_RATIO, TARGET_RATIO_FROM = 0.7, 1024
TARGET_DA_RATE, TARGET_DA_FROM = 5000.0, 64
#: Functions run first (a budget that runs out skips the later ones).
FIRST = ("bakshi_kleindorfer.noncooperative", "defender_attacker.equilibrium", "isb.simulate")
#: Parameters whose domain is an interval but whose model accepts only these values.
DISCRETE = {("defender_attacker", "k"): (0.0, 1.0)}
#: A draw spans [base / SPREAD, base * SPREAD] intersected with the domain.
SPREAD = 10.0


# ----------------------------------------------------------------------------- machine info


def loadavg() -> float | None:
    """One-minute load average (``None`` where the OS has none)."""
    with contextlib.suppress(OSError, AttributeError):
        return os.getloadavg()[0]
    return None


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info() -> dict:
    import jax

    dev = jax.devices()[0]
    return {
        "device": f"{dev.platform}: {dev.device_kind}",
        "device_count": jax.device_count(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": importlib.import_module("jaxlib").__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def device_tag() -> str:
    import jax

    dev = jax.devices()[0]
    if dev.platform == "cpu":
        return "cpu"
    kind = "".join(ch if ch.isalnum() else "-" for ch in dev.device_kind.lower())
    return f"{dev.platform}-{kind}".strip("-")


def _sibling(name: str):
    """A sibling benchmark module by path (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: JSON-safe copy of a report (NumPy scalars, non-finite floats): the BK benchmark's helper
#: (that module imports only the standard library and NumPy at load time).
_jsonable = _sibling("bench_bakshi_kleindorfer")._jsonable


# ----------------------------------------------------------------------------- discovery


def discover(only: list[str] | None = None, log=print) -> list[tuple[str, str, object, object]]:
    """``(model, function name, function, ModelSpec)`` for every shipped solve function.

    ``only``: entries ``model`` or ``model.function``. A registered model whose module fails to
    import (e.g. being added on another branch) is skipped with a message, as is an ``only``
    entry that names no shipped function.
    """
    import jaxgames
    from jaxgames.models import REGISTRY

    wanted = None if not only else {tuple(o.split(".", 1)) if "." in o else (o, None)
                                    for o in only}
    found = []
    for name, path in REGISTRY.items():
        if wanted is not None and not any(m == name for m, _ in wanted):
            continue
        try:
            module = importlib.import_module(path)
        except Exception as exc:  # noqa: BLE001 - a model being added elsewhere: skip, say why
            log(f"skip model {name}: {path} does not import ({type(exc).__name__}: {exc})")
            continue
        spec = jaxgames.model_spec(module)
        for fn_name in spec.solve_functions:
            if wanted is not None and (name, None) not in wanted and (name, fn_name) not in wanted:
                continue
            found.append((name, fn_name, getattr(module, fn_name), spec))
    if wanted is not None:
        names = {(m, f) for m, f, _, _ in found}
        for m, f in sorted(wanted, key=str):
            if m not in REGISTRY:
                log(f"skip {m}: not a registered model (registered: {sorted(REGISTRY)})")
            elif f is not None and (m, f) not in names:
                log(f"skip {m}.{f}: not a shipped solve function of {m}")
    return found


# ----------------------------------------------------------------------------- random points


def _interval_range(base: float, interval) -> tuple[float, float]:
    """``[base / SPREAD, base * SPREAD]`` (``[0, 1]`` around a zero base) within ``interval``."""
    if base > 0:
        lo, hi = base / SPREAD, base * SPREAD
    elif base < 0:
        lo, hi = base * SPREAD, base / SPREAD
    else:
        lo, hi = 0.0, 1.0
    if interval is not None:
        lo, hi = max(lo, interval.lo), min(hi, interval.hi)
        # open ends: stay strictly inside (1e-6 of the width, relative to the end's size)
        eps = 1e-6 * max(hi - lo, 1e-300)
        if interval.lo_open and lo == interval.lo:
            lo += eps
        if interval.hi_open and hi == interval.hi:
            hi -= eps
    return lo, hi


def draw_values(rng, base: float, interval, size) -> np.ndarray:
    """Values around ``base`` over its allowed ``interval``: log-uniform where the range spans a
    decade or more of positive values, uniform otherwise."""
    lo, hi = _interval_range(float(base), interval)
    if lo > 0 and hi / lo >= 10:
        return np.exp(rng.uniform(np.log(lo), np.log(hi), size))
    return rng.uniform(lo, hi, size)


def draw_points(model: str, spec, base, n: int, seed: int):
    """``n`` seeded random points around the base point ``base`` of one solve function.

    Every real parameter is drawn independently over ``[base/10, base*10]`` intersected with its
    ``DOMAIN`` interval (``[0, 1]`` when the base value is 0), log-uniform where that range
    spans a decade or more, uniform otherwise; the draws deliberately include points outside a
    model's assumptions and hard points, which the solve functions must flag. Vector parameters
    (``PARAM_DIMS``) are drawn elementwise; categorical parameters get uniform integer codes;
    parameters listed in :data:`DISCRETE` get one of their allowed values; settings keep the base
    point's value. Returns ``(values: {name: array with leading dim n}, settings base point)``.
    """
    from jaxgames._validation import is_setting

    rng = np.random.default_rng(seed)
    values = {}
    for name in base._fields:
        raw = getattr(base, name)
        if name in spec.categories:
            values[name] = rng.integers(0, len(spec.categories[name]), n).astype(np.int32)
        elif is_setting(raw):
            continue
        elif (model, name) in DISCRETE:
            values[name] = rng.choice(np.asarray(DISCRETE[model, name]), n)
        else:
            b = np.asarray(raw, float)
            interval = spec.domain.get(name)
            cols = [draw_values(rng, v, interval, n) for v in b.reshape(-1)]
            values[name] = np.stack(cols, axis=-1).reshape((n, *b.shape))
    return values, base


# ----------------------------------------------------------------------------- one width


def make_runner(fn, base, stochastic: bool, seed: int, n: int, width: int):
    """``jit`` of: the points' values ``{name: (n_pad, ...)}`` -> outputs, processed as
    the engine's tile loop over vmapped groups of ``width`` (one vmap when ``width >= n``)."""
    import jax

    from jaxgames._batching import tile_loop

    key = jax.random.fold_in(jax.random.key(seed), 0) if stochastic else None

    def one(vals):
        p = base._replace(**vals)
        return fn(p, key) if stochastic else fn(p)

    batched = jax.vmap(one)
    groups = math.ceil(n / width)

    def run(vals):
        if groups == 1:
            return batched(vals)
        names = list(vals)
        xs = [vals[k].reshape((groups, width, *vals[k].shape[1:])) for k in names]
        # The engine's tile loop (the sweep's layout on the CPU, and ``tiled``'s).
        out = tile_loop(lambda tile: batched(dict(zip(names, tile, strict=True))), xs, groups)
        return jax.tree.map(lambda a: a.reshape((groups * width, *a.shape[2:])), out)

    return jax.jit(run)


def _pad(values: dict, n_pad: int, dtype) -> dict:
    out = {}
    for k, v in values.items():
        v = v if np.issubdtype(v.dtype, np.integer) else v.astype(dtype)
        pad = [(0, n_pad - v.shape[0])] + [(0, 0)] * (v.ndim - 1)
        out[k] = np.pad(v, pad, mode="edge")
    return out


def _leaves_named(out, name: str) -> list[np.ndarray]:
    import jax

    leaves = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(out)[0]:
        last = path[-1] if path else None
        if getattr(last, "name", None) == name:
            leaves.append(np.asarray(leaf))
    return leaves


def flags(out, n: int) -> dict:
    """Shares converged / inside the assumptions / flagged, and unflagged non-finite outputs."""
    import jax

    def all_true(name):
        ok = np.ones(n, bool)
        for leaf in _leaves_named(out, name):
            ok &= leaf[:n].reshape(n, -1).all(axis=1)
        return ok, bool(_leaves_named(out, name))

    conv, has_conv = all_true("converged")
    assum, has_assum = all_true("assumptions_hold")
    flagged = ~(conv & assum)
    finite = np.ones(n, bool)
    by_output = {}  # unflagged points with a non-finite value, per output (a model may document
    for path, leaf in jax.tree_util.tree_flatten_with_path(out)[0]:  # NaN as "undefined")
        leaf = np.asarray(leaf)
        if np.issubdtype(leaf.dtype, np.floating):
            ok = np.isfinite(leaf[:n]).reshape(n, -1).all(axis=1)
            finite &= ok
            if (~ok & ~flagged).any():
                by_output[jax.tree_util.keystr(path)] = int((~ok & ~flagged).sum())
    return {
        "share_converged": float(conv.mean()) if has_conv else None,
        "share_assumptions_hold": float(assum.mean()) if has_assum else None,
        "share_flagged": float(flagged.mean()),
        "unflagged_nonfinite": int((~flagged & ~finite).sum()),
        "flagged_nonfinite": int((flagged & ~finite).sum()),
        "unflagged_nonfinite_by_output": by_output,
    }


def _same(a, b, n: int) -> tuple[bool, float]:
    """Bit-identical (NaN == NaN) and the largest absolute difference of the first n rows."""
    import jax

    identical, worst = True, 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x)[:n], np.asarray(y)[:n]
        if not np.array_equal(x, y, equal_nan=np.issubdtype(x.dtype, np.inexact)):
            identical = False
            if np.issubdtype(x.dtype, np.inexact):
                with np.errstate(all="ignore"):
                    d = np.abs(x.astype(float) - y.astype(float))
                d = d[np.isfinite(d)]
                worst = max(worst, float(d.max()) if d.size else 0.0)
            else:
                worst = max(worst, math.inf)
    return identical, worst


def _engine_mode(mode: str):
    """Context in which a runner is traced: ``buffer`` (the engine's default vmap rule) or
    ``lockstep`` (``jaxgames._solver.lockstep()``: every lane of a vmapped solve iterates until
    the slowest finishes, the engine before issue 14)."""
    if mode == "buffer":
        return contextlib.nullcontext()
    return importlib.import_module("jaxgames._solver").lockstep()


def _summarise_rows(rows: list[dict]) -> None:
    """Best/median time, points/s and ratios to the best width, in place; the same from the
    process's CPU time (every thread counted: the cost of a width, which on a shared machine
    is steadier than the wall clock, and which does not credit a wide program for spreading
    over several cores)."""
    for row in rows:
        t = np.asarray(row["times_s"])
        row["best_s"], row["median_s"] = float(t.min()), float(np.median(t))
        row["points_per_s"] = row["n_points"] / row["best_s"]
        row["points_per_s_median"] = row["n_points"] / row["median_s"]
        c = np.asarray(row["cpu_s"])
        row["best_cpu_s"], row["median_cpu_s"] = float(c.min()), float(np.median(c))
        row["points_per_cpu_s"] = row["n_points"] / row["best_cpu_s"]
    best = max(row["points_per_s"] for row in rows)
    best_med = max(row["points_per_s_median"] for row in rows)
    best_cpu = max(row["points_per_cpu_s"] for row in rows)
    for row in rows:
        row["ratio_to_best"] = row["points_per_s"] / best
        row["ratio_median"] = row["points_per_s_median"] / best_med
        row["ratio_cpu"] = row["points_per_cpu_s"] / best_cpu


def scan_function(model, fn_name, fn, spec, *, n, widths, repeats, seed, dtype,
                  max_groups=None, deadline=None, lockstep=False, log=print) -> dict:
    """Width scan of one solve function (module docstring); ``deadline``: ``time.monotonic()``
    after which no further repeat is started (at least one round always runs). ``lockstep``:
    also compile every width with the engine's lockstep batching (``_engine_mode``) and time it
    in the same rounds (rows ``widths_lockstep``, ratio ``buffer_over_lockstep`` per width)."""
    import jax

    from jaxgames import solve_spec

    sspec = solve_spec(fn)
    base = sspec.base_point()
    values, base = draw_points(model, spec, base, n, seed)
    widths = sorted({int(w) for w in widths})
    modes = ("buffer", "lockstep") if lockstep else ("buffer",)
    rows, runners, skipped_widths = [], [], []
    for w in widths:
        n_w = n if max_groups is None else min(n, w * max_groups)
        if w > n_w:
            log(f"  width {w} > {n_w} points: skipped")
            continue
        if rows and deadline is not None and time.monotonic() > deadline:
            log(f"  width {w}: skipped, budget spent")
            skipped_widths.append(w)
            continue
        n_pad = math.ceil(n_w / w) * w
        args = jax.device_put(_pad({k: v[:n_w] for k, v in values.items()}, n_pad, dtype))
        for mode in modes:
            t0 = time.perf_counter()
            with _engine_mode(mode):
                compiled = make_runner(fn, base, sspec.stochastic, seed, n_w, w).lower(
                    args).compile()
            compile_s = time.perf_counter() - t0
            rows.append({"width": w, "mode": mode, "n_points": n_w, "n_groups": n_pad // w,
                         "compile_s": compile_s, "times_s": [], "cpu_s": [], "loadavg": []})
            runners.append((compiled, args))
            log(f"  width {w} ({mode}): compiled in {compile_s:.1f} s")
    outputs = [None] * len(rows)
    for r in range(repeats):
        if r > 0 and deadline is not None and time.monotonic() > deadline:
            log(f"  budget reached after {r} round(s)")
            break
        for i, (compiled, args) in enumerate(runners):
            t0, c0 = time.perf_counter(), time.process_time()
            out = jax.block_until_ready(compiled(args))
            rows[i]["times_s"].append(time.perf_counter() - t0)
            rows[i]["cpu_s"].append(time.process_time() - c0)
            rows[i]["loadavg"].append(loadavg())
            if outputs[i] is None:
                outputs[i] = jax.tree.map(np.asarray, out)
        rates = ", ".join(f"w={row['width']}{'' if row['mode'] == 'buffer' else ' lockstep'} "
                          f"{row['n_points'] / row['times_s'][-1]:,.0f}/s "
                          f"(CPU {row['cpu_s'][-1]:.3g} s)" for row in rows)
        log(f"  round {r + 1}: {rates}")
    lock_rows = [row for row in rows if row["mode"] == "lockstep"]
    rows = [row for row in rows if row["mode"] == "buffer"]
    for group in (rows, lock_rows):
        if group:
            _summarise_rows(group)
    for row, lock in zip(rows, lock_rows, strict=False):
        row["buffer_over_lockstep"] = row["points_per_s"] / lock["points_per_s"]
        row["buffer_over_lockstep_median"] = (row["points_per_s_median"]
                                              / lock["points_per_s_median"])
    n_common = min(row["n_points"] for row in rows)
    identical, worst = True, 0.0
    for o in outputs[1:]:
        same, d = _same(outputs[0], o, n_common)
        identical &= same
        worst = max(worst, d)
    best = max(rows, key=lambda row: row["points_per_s"])
    result = {
        "model": model, "function": fn_name, "solve_spec": sspec.name,
        "stochastic": sspec.stochastic, "n_points": n, "seed": seed,
        "drawn": sorted(values), "widths": rows, "best_width": best["width"],
        "widths_lockstep": lock_rows,
        "widths_skipped_for_budget": skipped_widths,
        **flags(outputs[-1], rows[-1]["n_points"]),
        "identical_across_widths": identical, "max_abs_diff_across_widths": worst,
        # (with lockstep rows: compared across every width in both modes)
        "identical_across_modes": identical if lock_rows else None,
    }
    log(f"  best width {best['width']}; flagged {result['share_flagged']:.1%}; "
        f"unflagged non-finite {result['unflagged_nonfinite']}; identical across widths "
        f"{identical}")
    if lock_rows:
        log("  buffer / lockstep points/s: " + ", ".join(
            f"w={row['width']} {row['buffer_over_lockstep']:.2f}" for row in rows))
    return result


# ----------------------------------------------------------------------------- targets


def targets(result: dict, dtype: str) -> dict:
    """Issue 14's CPU targets (float64) for one function: met / not met per width."""
    out = {}
    for row in result["widths"]:
        if row["width"] >= TARGET_RATIO_FROM:
            out[f"ratio_w{row['width']}>={TARGET_RATIO}"] = row["ratio_to_best"] >= TARGET_RATIO
            out[f"cpu_ratio_w{row['width']}>={TARGET_RATIO}"] = row["ratio_cpu"] >= TARGET_RATIO
        if result["model"] == "defender_attacker" and row["width"] >= TARGET_DA_FROM:
            out[f"rate_w{row['width']}>={TARGET_DA_RATE:g}"] = (
                row["points_per_s"] >= TARGET_DA_RATE)
    return {"dtype_is_float64": dtype == "float64", "checks": out}


# ----------------------------------------------------------------------------- main


def _n_for(spec_list: list[str]) -> dict[str, int]:
    out = {}
    for s in spec_list:
        key, _, val = s.partition("=")
        if not val:
            raise SystemExit(f"--n-for expects model[.function]=N, got {s!r}")
        out[key] = int(val)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    ap.add_argument("--n", type=int, default=None, help="points per function (default: the "
                    f"largest width; --quick: {QUICK[0]})")
    ap.add_argument("--n-for", nargs="*", default=[], metavar="MODEL[.FN]=N",
                    help="points for some functions (overrides --n)")
    ap.add_argument("--widths", type=int, nargs="+", default=None,
                    help=f"batch widths (default {' '.join(map(str, WIDTHS))})")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds (default 3)")
    ap.add_argument("--quick", action="store_true",
                    help=f"small: {QUICK[0]} points, widths {QUICK[1]}, {QUICK[2]} rounds")
    ap.add_argument("--only", nargs="*", default=None, metavar="MODEL[.FN]",
                    help="run only these models / solve functions")
    ap.add_argument("--max-groups", type=int, default=None,
                    help="cap the sequential groups per width: width w runs min(n, w * this) "
                         "points, a prefix of the same draw (GPU sizing)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds: no new function starts when less is left than the longest "
                         "function so far took; no new width or round starts after it")
    ap.add_argument("--lockstep", action="store_true",
                    help="also run every width with the engine's lockstep batching "
                         "(jaxgames._solver.lockstep(), the engine before issue 14) in the same "
                         "rounds: before/after from one process")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--note", default=None, help="free text stored in the JSON")
    ap.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/"
                    "width_<device>_<dtype>[_quick].json)")
    args = ap.parse_args(argv)

    if args.dtype == "float64":
        os.environ["JAX_ENABLE_X64"] = "1"
    import jax

    jax.config.update("jax_enable_x64", args.dtype == "float64")
    dtype = np.dtype(args.dtype)

    widths = args.widths or (QUICK[1] if args.quick else WIDTHS)
    n_default = args.n or (QUICK[0] if args.quick else max(widths))
    repeats = args.repeats or (QUICK[2] if args.quick else 3)
    n_for = _n_for(args.n_for)
    t_start = time.monotonic()
    deadline = None if args.budget is None else t_start + args.budget
    log_lines: list[str] = []

    def log(msg):
        log_lines.append(msg)
        print(msg, flush=True)

    info = machine_info()
    log(f"width scan on {info['device']} ({info['cpu']}), jax {info['jax']}, {args.dtype}, "
        f"load {loadavg()}")
    out = Path(args.out) if args.out else (
        ROOT / "benchmarks" / "results"
        / f"width_{device_tag()}_{args.dtype}{'_quick' if args.quick else ''}.json")

    def write() -> dict:  # after every function: an interrupted run keeps what it measured
        report = {
            "benchmark": "width scan (issue 14)",
            "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": info, "dtype": args.dtype, "quick": args.quick,
            "widths": list(widths), "repeats": repeats, "max_groups": args.max_groups,
            "budget_s": args.budget, "elapsed_s": time.monotonic() - t_start,
            "statistic": "points/s from the best of the round-robin repeats (median also given); "
                         "compilation excluded",
            "jaxgames": str(Path(importlib.import_module("jaxgames").__file__).parent),
            "note": args.note, "results": results, "skipped": skipped,
            "log": log_lines,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(_jsonable(report), indent=1) + "\n")
        return report

    results, skipped, durations = [], [], []
    found = discover(args.only, log)
    found.sort(key=lambda f: (FIRST.index(f"{f[0]}.{f[1]}") if f"{f[0]}.{f[1]}" in FIRST
                              else len(FIRST)))
    for model, fn_name, fn, spec in found:
        key = f"{model}.{fn_name}"
        longest = max(durations, default=0.0)
        if deadline is not None and time.monotonic() + longest > deadline:
            log(f"skip {key}: budget of {args.budget:g} s (nearly) spent; the longest function "
                f"so far took {longest:.0f} s")
            skipped.append({"function": key, "reason": "budget"})
            continue
        t_fn = time.monotonic()
        n = n_for.get(key, n_for.get(model, n_default))
        log(f"{key}: {n} points, widths {list(widths)}, load {loadavg()}")
        try:
            res = scan_function(model, fn_name, fn, spec, n=n, widths=widths, repeats=repeats,
                                seed=args.seed, dtype=dtype, max_groups=args.max_groups,
                                deadline=deadline, lockstep=args.lockstep, log=log)
        except Exception as exc:  # noqa: BLE001 - one failing function must not lose the rest
            log(f"  FAILED: {type(exc).__name__}: {exc}")
            skipped.append({"function": key, "reason": f"{type(exc).__name__}: {exc}"})
            continue
        res["targets"] = targets(res, args.dtype)
        res["wall_s"] = time.monotonic() - t_fn
        durations.append(res["wall_s"])
        results.append(res)
        write()

    report = write()
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    if importlib.util.find_spec("jaxgames") is None:  # PYTHONPATH wins; else this checkout
        sys.path.insert(0, str(ROOT))
    main()
