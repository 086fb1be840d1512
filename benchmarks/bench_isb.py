"""Runs per second of the ``isb`` agent-based supply-chain simulation (Durowoju et al. 2020):
the vectorised simulator against the plain per-agent Python reference (tests/isb_reference.py),
measured in the same run.

One "run" is one simulated supply chain over ``days`` = 800 days (one structure, policy, breach
scenario and replication); an "agent-day" is one active agent simulated for one day (6 agents in
S and NT, 5 in WH and MF).

* ``experiment``   ``isb.experiment(reps)``: the source's whole design (4 structures x 3
                   policies x 4 breach scenarios x ``reps`` replications = 2,160 runs at 45), one
                   jit-compiled call of ``simulate_runs`` (runs on the trailing axis) plus the
                   demand draws and building the xarray Dataset.
* ``core``         ``simulate_runs`` alone on the same runs and demand (no draws, no Dataset).
* ``vmap_keys``    ``jit(vmap(simulate))`` over (scenario, key) pairs with the demand drawn inside
                   from each key: the path a generic sweep over ``STOCHASTIC`` functions takes.
* ``reference``    the per-agent Python simulator on ``--ref-runs`` of the same runs (scenarios
                   in turn, replication 0's demand), timed in ``--repeats`` slices, one after
                   each round of the vectorised methods, so that both see the same machine load
                   (the per-round ratio is recorded too); its runs/s is extrapolated to the whole
                   design (it is linear in runs). Its results are compared with the experiment's.
* ``sweep``        ``--big`` runs (default 10^5): random structure/policy/breach codes and
                   replication keys, in chunks of ``--chunk`` runs (demand drawn per chunk);
                   total time, runs/s and the peak resident memory of the process.

Compilation is timed separately (first call minus the best later call; ``core`` reuses the
program ``experiment`` compiled, so its compile time is ~0). Each timed method runs
once first, then ``--repeats`` rounds; the headline figure is the best round (the speed-up:
best method round against the reference's whole time), medians and per-round ratios in the
JSON. The machine is shared: load averages at the start and end are recorded. Every round also
records the process's CPU time (all threads): the reference uses one core, while XLA may split a
loop over several threads, so the CPU-time ratio is the speed-up per core used.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/bench_isb.py                 # float64, ~2 min on 2 cores
    PYTHONPATH=. python benchmarks/bench_isb.py --float32
    PYTHONPATH=. python benchmarks/bench_isb.py --quick         # smoke run
    PYTHONPATH=. python benchmarks/bench_isb.py --pin 0         # the process on one core
    PYTHONPATH=. python benchmarks/bench_isb.py --cores 2       # runs split over 2 CPU devices
    git show main:jaxgames/models/isb.py > /tmp/isb_main.py     # A/B against another version
    PYTHONPATH=. python benchmarks/bench_isb.py --compare /tmp/isb_main.py [--float32] [--pin 1]
    PYTHONPATH=. python benchmarks/bench_isb.py --compare /tmp/isb_main.py --method experiment
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=45)
    ap.add_argument("--ref-runs", type=int, default=48)
    ap.add_argument("--big", type=int, default=100_000)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--float32", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--note", default=None)
    ap.add_argument("--pin", type=int, default=None, metavar="CPU",
                    help="run the whole process (reference and simulator) on this one CPU")
    ap.add_argument("--cores", type=int, default=1, metavar="N",
                    help="CPU devices for JAX (jaxgames.use_cpu_cores(N)): simulate_runs and "
                         "experiment split their runs over them, side by side (default 1, "
                         "JAX's default)")
    ap.add_argument("--compare", nargs="+", default=None, metavar="ISB_PY",
                    help="A/B only: CPU time of simulate_runs on the design for this repo's isb "
                         "and each given copy of isb.py (e.g. another commit's), interleaved")
    ap.add_argument("--rounds", type=int, default=7, help="rounds of --compare")
    ap.add_argument("--method", choices=("core", "experiment", "vmap_keys"), default="core",
                    help="what --compare times: simulate_runs on the design (core), the whole "
                         "isb.experiment (draws, runs, Dataset) or jit(vmap(simulate)) over "
                         "(scenario, key) (vmap_keys)")
    args = ap.parse_args(argv)
    if args.pin is not None:
        # Before JAX starts its thread pools. Both sides then run on one core: XLA cannot spread
        # a step's kernels over threads that, on a loaded machine, wait for each other.
        os.sched_setaffinity(0, {args.pin})
    if args.quick:
        args.reps, args.ref_runs, args.big, args.chunk, args.repeats = 3, 4, 4096, 1024, 1
    import jax

    import jaxgames

    if args.cores > 1:  # before the first JAX computation, for --compare too
        jaxgames.use_cpu_cores(args.cores)
    if args.compare:
        return compare(args)
    jax.config.update("jax_enable_x64", not args.float32)
    import isb_reference as ref
    import jax.numpy as jnp
    import numpy as np
    from bench_bakshi_kleindorfer import (
        _cpu_model,
        _device_tag,
        _jsonable,
        _library_info,
        _version,
    )

    from jaxgames.models import isb

    dtype = "float32" if args.float32 else "float64"
    dev = jax.devices()[0]
    load_start = os.getloadavg()
    st = isb.Settings()
    active_per_structure = isb.ACTIVE.sum(1)  # S 6, WH 5, MF 5, NT 6
    n_scen = len(isb.STRUCTURES) * len(isb.POLICIES) * len(isb.EXPERIMENT_BREACHES)
    runs_exp = n_scen * args.reps
    agent_days_exp = float(active_per_structure.mean() * st.days * runs_exp)

    def first_call(fn):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        return time.perf_counter() - t0

    def once(fn):
        # Wall time, and the process's CPU time (all its threads) over the same interval.
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn())
        return time.perf_counter() - t0, time.process_time() - c0

    out = {"benchmark": "isb.experiment / simulate_runs vs per-agent Python reference",
           "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
           "dtype": dtype, "setup": vars(args) | {"days": st.days, "warmup": st.warmup,
                                                  "runs_experiment": runs_exp,
                                                  "agent_days_experiment": agent_days_exp}}

    # --- the methods: the whole experiment, its core, the generic vmap-over-keys path
    keys = isb.replication_keys(0, args.reps)
    fdt = jnp.result_type(float)
    demand = jax.vmap(isb.demand_draws, (0, None, None, None))(
        keys, st.days, jnp.asarray(10.0, fdt), jnp.asarray(2.0, fdt))
    grid = np.meshgrid(np.arange(4), np.arange(3), np.arange(4), indexing="ij")
    s, p, b = (np.repeat(g.ravel(), args.reps) for g in grid)
    runs = isb.DEFAULT._replace(structure=s, policy=p, breach=b)
    big_demand = jnp.tile(demand, (n_scen, 1, 1))
    vsim = jax.jit(jax.vmap(lambda s_, p_, b_, k_: isb.simulate(
        isb.DEFAULT._replace(structure=s_, policy=p_, breach=b_), k_).cost_chain))
    rep_keys = jnp.tile(keys, n_scen)
    methods = {
        "experiment": lambda: isb.experiment(reps=args.reps).cost_chain.values,
        "core": lambda: isb.simulate_runs(runs, big_demand).cost_chain,
        "vmap_keys": lambda: vsim(jnp.asarray(s), jnp.asarray(p), jnp.asarray(b), rep_keys),
    }
    first = {k: first_call(f) for k, f in methods.items()}
    ds = isb.experiment(reps=args.reps)

    # --- the per-agent Python reference on a sample of the same runs (replication 0), timed
    # in slices between the rounds of the vectorised methods, so that both see the same load
    d0 = np.asarray(demand[0], float).tolist()
    scen = [(x, y, z) for x in isb.STRUCTURES for y in isb.POLICIES
            for z in isb.EXPERIMENT_BREACHES]
    chosen = [scen[i % n_scen] for i in range(args.ref_runs)]
    slices = np.array_split(np.arange(args.ref_runs), args.repeats)
    rounds = {k: [] for k in methods}
    cpu_rounds = {k: [] for k in methods}
    ref_rounds, ref_out, ref_cpu = [], [], []
    for sl in slices:
        for k, f in methods.items():
            wall, cpu = once(f)
            rounds[k].append(wall)
            cpu_rounds[k].append(cpu)
        t0, c0 = time.perf_counter(), time.process_time()
        part = [ref.simulate(*chosen[i], d0) for i in sl]
        ref_rounds.append((time.perf_counter() - t0, len(sl),
                           sum(len(o) for o in part) * st.days))
        ref_cpu.append(time.process_time() - c0)
        ref_out += part
    worst = 0.0
    for sc, o in zip(chosen, ref_out, strict=True):
        v = float(ds.cost_chain.sel(structure=sc[0], policy=sc[1], breach=sc[2],
                                    replication=0))
        r_ = sum(a["cost"] for a in o.values())
        worst = max(worst, abs(v - r_) / abs(r_))
    ref_s = sum(t for t, _, _ in ref_rounds)
    ref_runs_per_s = args.ref_runs / ref_s
    ref_adps = sum(a for _, _, a in ref_rounds) / ref_s
    out["reference"] = {"runs": args.ref_runs, "time_s": ref_s, "runs_per_s": ref_runs_per_s,
                        "agent_days_per_s": ref_adps,
                        "rounds_s": [t for t, _, _ in ref_rounds], "cpu_s": sum(ref_cpu),
                        "cpu_rounds_s": ref_cpu,
                        "experiment_time_extrapolated_s": runs_exp / ref_runs_per_s,
                        "max_rel_diff_cost_chain_vs_experiment": worst}
    out["speedup"] = {}
    for k in methods:
        times = rounds[k]
        r = {"first_s": first[k], "best_s": min(times), "median_s": statistics.median(times),
             "all_s": times, "compile_s": max(0.0, first[k] - min(times)),
             "cpu_best_s": min(cpu_rounds[k]), "cpu_all_s": cpu_rounds[k]}
        r["runs_per_s"] = runs_exp / r["best_s"]
        r["agent_days_per_s"] = agent_days_exp / r["best_s"]
        out[k] = r
        # Per round: (reference time per run) / (method time per run), same load.
        per_round = [(rt / n_ref) / (t / runs_exp) for t, (rt, n_ref, _) in
                     zip(times, ref_rounds, strict=True)]
        out["speedup"][k] = {"runs": r["runs_per_s"] / ref_runs_per_s,
                             "agent_days": r["agent_days_per_s"] / ref_adps,
                             "per_round_runs": per_round,
                             "median_round_runs": statistics.median(per_round),
                             # CPU time per run (all threads of the process) of the reference
                             # over that of the method's best round: the speed-up per core used.
                             "cpu_time_runs": (sum(ref_cpu) / args.ref_runs)
                             / (r["cpu_best_s"] / runs_exp)}

    # --- a large sweep in chunks
    rng = np.random.default_rng(20200928)
    n, c = args.big, args.chunk
    codes = [rng.integers(0, k, n) for k in (4, 3, 4)]
    draw = jax.jit(jax.vmap(isb.demand_draws, (0, None, None, None)), static_argnums=1)

    all_keys = isb.replication_keys(1, n)

    def sweep():
        totals = []
        for i in range(0, n, c):
            sl = slice(i, min(i + c, n))
            m = sl.stop - sl.start
            idx = np.arange(i, i + c) % n  # pad the last chunk (same shape: no recompile)
            dd = draw(all_keys[idx], st.days, jnp.asarray(10.0, fdt), jnp.asarray(2.0, fdt))
            rr = isb.DEFAULT._replace(structure=codes[0][idx], policy=codes[1][idx],
                                      breach=codes[2][idx])
            totals.append(np.asarray(isb.simulate_runs(rr, dd).cost_chain)[:m])
        return np.concatenate(totals)

    t0 = time.perf_counter()
    first_total = sweep()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    total = sweep()
    again = time.perf_counter() - t0
    assert np.array_equal(first_total, total) and np.all(np.isfinite(total))
    adays = float(active_per_structure[codes[0]].sum() * st.days)
    out["sweep"] = {"runs": n, "chunk": c, "first_s": first, "time_s": again,
                    "runs_per_s": n / again, "agent_days_per_s": adays / again,
                    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

    out["machine"] = {"cpu_model": _cpu_model(), "cpu_count": os.cpu_count(),
                      "jax_platform": dev.platform, "device_kind": dev.device_kind,
                      "load_avg_start": load_start, "load_avg_end": os.getloadavg(),
                      "cpu_affinity": sorted(os.sched_getaffinity(0)), "pinned": args.pin,
                      "cpu_devices": len(jax.local_devices(backend="cpu")),
                      "xla_flags": os.environ.get("XLA_FLAGS", "")}
    out["library"] = _library_info(jaxgames, args.note)
    # How the simulator compiles its day loop on this backend (module docstring of isb).
    out["isb_program"] = {"one_kernel": isb._one_kernel(), "chunk": isb.CHUNK,
                          "simulate_runs_compiler_options": isb.COMPILER_OPTIONS
                          if dev.platform == "cpu" else None}
    out["versions"] = {m: _version(m) for m in ("jax", "jaxlib", "numpy", "xarray")}
    path = Path(args.out) if args.out else HERE / "results" / (
        f"isb_{_device_tag(dev)}_{dtype}{'_pinned' if args.pin is not None else ''}"
        f"{f'_cores{args.cores}' if args.cores > 1 else ''}{'_quick' if args.quick else ''}.json")
    path.write_text(json.dumps(_jsonable(out), indent=1) + "\n")

    f = lambda x: f"{x:,.0f}"  # noqa: E731
    print(f"isb benchmark ({dtype}, {dev.platform}, load {load_start[0]:.1f} -> "
          f"{out['machine']['load_avg_end'][0]:.1f}"
          f"{f', pinned to CPU {args.pin}' if args.pin is not None else ''}"
          f"{f', {args.cores} CPU devices' if args.cores > 1 else ''})")
    print(f"  runs in the experiment {runs_exp:,} ({agent_days_exp:,.0f} agent-days)")
    for k in ("experiment", "core", "vmap_keys"):
        r = out[k]
        print(f"  {k:<11} best {r['best_s']:.3f} s (median {r['median_s']:.3f}, compile "
              f"{r['compile_s']:.1f} s): {f(r['runs_per_s'])} runs/s, "
              f"{r['agent_days_per_s']:.3g} agent-days/s, x{out['speedup'][k]['runs']:.0f} "
              f"the reference (median of rounds x{out['speedup'][k]['median_round_runs']:.0f}; "
              f"CPU time {r['cpu_best_s']:.3f} s, x{out['speedup'][k]['cpu_time_runs']:.0f})")
    r = out["reference"]
    print(f"  reference   {r['runs']} runs in {r['time_s']:.2f} s: {r['runs_per_s']:.1f} runs/s, "
          f"{r['agent_days_per_s']:.3g} agent-days/s (experiment "
          f"~{r['experiment_time_extrapolated_s']:.0f} s); max rel diff "
          f"{r['max_rel_diff_cost_chain_vs_experiment']:.1e}")
    r = out["sweep"]
    print(f"  sweep       {r['runs']:,} runs in {r['time_s']:.1f} s (first {r['first_s']:.1f} s): "
          f"{f(r['runs_per_s'])} runs/s, {r['agent_days_per_s']:.3g} agent-days/s, peak RSS "
          f"{r['peak_rss_mib']:.0f} MiB")
    print(f"  -> {path}")


def compare(args):
    """A/B of whole module versions: ``simulate_runs`` on the design's runs (``core``; with
    ``--method experiment`` the whole ``isb.experiment``, with ``--method vmap_keys``
    ``jit(vmap(simulate))`` over the runs' codes and keys) for this repository's ``isb`` and
    each file of ``--compare`` (loaded as a module of its own), the variants interleaved round
    by round; process CPU time and wall time, medians and minima."""
    import importlib.util

    import jax

    jax.config.update("jax_enable_x64", not args.float32)
    import jax.numpy as jnp
    import numpy as np

    from jaxgames.models import isb

    mods = {"this": isb}
    for i, path in enumerate(args.compare):
        spec = importlib.util.spec_from_file_location(f"_isb_variant{i}", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # dataclasses need the module registered
        spec.loader.exec_module(mod)
        mods[path] = mod
    fdt = jnp.result_type(float)
    keys = isb.replication_keys(0, args.reps)
    demand = jax.vmap(isb.demand_draws, (0, None, None, None))(
        keys, isb.Settings().days, jnp.asarray(10.0, fdt), jnp.asarray(2.0, fdt))
    grid = np.meshgrid(np.arange(4), np.arange(3), np.arange(4), indexing="ij")
    s, p, b = (np.repeat(g.ravel(), args.reps) for g in grid)
    big = jnp.tile(demand, (48, 1, 1))
    fns, first = {}, {}
    for name, mod in mods.items():
        runs = mod.DEFAULT._replace(structure=s, policy=p, breach=b)
        if args.method == "core":
            fns[name] = lambda mod=mod, runs=runs: mod.simulate_runs(runs, big).cost_chain
        elif args.method == "experiment":
            fns[name] = lambda mod=mod: mod.experiment(reps=args.reps).cost_chain.values.ravel()
        else:
            vsim = jax.jit(jax.vmap(lambda s_, p_, b_, k_, mod=mod: mod.simulate(
                mod.DEFAULT._replace(structure=s_, policy=p_, breach=b_), k_).cost_chain))
            fns[name] = lambda vsim=vsim: vsim(jnp.asarray(s), jnp.asarray(p), jnp.asarray(b),
                                               jnp.tile(keys, 48))
        first[name] = np.asarray(fns[name]())  # compile
    diff = {k: float(np.max(np.abs(v - first["this"]) / np.abs(first["this"])))
            for k, v in first.items()}
    # Every Result field of simulate_runs on the design, bit for bit (NaN = NaN, and the sign
    # of zeros), against this repository's module.
    full = {name: mod.simulate_runs(mod.DEFAULT._replace(structure=s, policy=p, breach=b), big)
            for name, mod in mods.items()}

    def same_bits(x, y):
        x, y = np.asarray(x), np.asarray(y)
        return x.shape == y.shape and np.array_equal(x, y, equal_nan=True) and (
            x.dtype.kind != "f" or np.array_equal(np.signbit(x), np.signbit(y)))

    bits = {k: [f for f in isb.Result._fields if not same_bits(getattr(r, f),
                                                               getattr(full["this"], f))]
            for k, r in full.items()}
    cpu = {k: [] for k in fns}
    wall = {k: [] for k in fns}
    load_start = os.getloadavg()
    for _ in range(args.rounds):
        for k, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(fn())
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    out = {"benchmark": f"isb A/B: {args.method} on the design, variants interleaved",
           "method": args.method,
           "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
           "dtype": "float32" if args.float32 else "float64", "runs": int(len(s)),
           "rounds": args.rounds, "pinned": args.pin,
           "load_avg_start": load_start, "load_avg_end": os.getloadavg(),
           "variants": {k: {"cpu_median_s": statistics.median(cpu[k]), "cpu_min_s": min(cpu[k]),
                            "wall_median_s": statistics.median(wall[k]),
                            "wall_min_s": min(wall[k]), "cpu_all_s": cpu[k],
                            "max_rel_diff_cost_chain_vs_this": diff[k],
                            "simulate_runs_fields_differing_from_this": bits[k]} for k in fns}}
    print(f"isb A/B ({args.method}, {out['dtype']}, {len(s)} runs, {args.rounds} rounds, load "
          f"{load_start[0]:.1f} -> {out['load_avg_end'][0]:.1f}"
          f"{f', pinned to CPU {args.pin}' if args.pin is not None else ''})")
    for k, v in out["variants"].items():
        print(f"  {k}: CPU median {v['cpu_median_s']:.3f} s (min {v['cpu_min_s']:.3f}), wall "
              f"median {v['wall_median_s']:.3f} s; max rel diff {diff[k]:.1e}; "
              f"simulate_runs fields differing: {bits[k] or 'none (same bits)'}")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
