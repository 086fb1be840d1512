"""One-command accelerator report (issue 14): every model's width scan and the
Bakshi-Kleindorfer engine against the jitted closed form, in float32 and float64.

Run it through ``benchmarks/gpu.sh`` (or directly) from the repository root::

    PYTHONPATH=. benchmarks/gpu.sh                     # JSON into $OUT, else benchmarks/results/gpu
    PYTHONPATH=. python benchmarks/gpu_report.py --out DIR --budget 480

Needs only JAX, NumPy and jaxgames' own imports (no SciPy, Zarr, Dask or pytest in this
script). Each dtype runs in its own subprocess (``jax_enable_x64`` is fixed at start):

1. ``bk_closed_form_<device>_<dtype>.json``: ``jax.jit(jax.vmap(bk.noncooperative))`` (the engine:
   semismooth Newton) against ``jax.jit(jax.vmap(bk.noncooperative_closed_form))`` on the SAME
   seeded interior points (``sample_params`` of benchmarks/bench_bakshi_kleindorfer.py: assumption
   set (2), unique interior equilibrium), processed in chunks of each of ``--bk-chunks`` points;
   compiled first (not timed), then ``--repeats`` round-robin rounds, best time. Reported: points/s
   of both, the ratio engine / closed form per chunk size and at each method's best chunk, the
   share converged and the engine's largest relative error against the closed form. GPU goal of
   the issue: ratio >= 0.2.
2. ``width_<device>_<dtype>.json``: ``benchmarks/bench_width.py`` over every registered model's
   solve functions (most important first, see ``bench_width.FIRST``), with an explicit point
   count, ``--max-groups`` sequential groups at most per width (width w runs min(n, w * groups)
   points, a prefix of the same draw) and a time budget after which no further function starts
   (skips are listed in the JSON). GPU goal of the issue: defender_attacker >= 1e5 points/s.
3. ``gpu_report.json``: device, versions, files, wall time and the headline numbers.

Sizing: the defaults (``--budget 480`` seconds of wall time for everything, split over the
dtypes) are meant to fit in ~10 minutes on an H100/H200, compilation included; the budget stops
new work, it does not interrupt a compilation or a timed call, so keep ~2 minutes of slack.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GOALS = {"bk_engine_over_cf_jax": 0.2, "defender_attacker_points_per_s": 1e5}
BK_OUTPUTS = ("y_ss", "y_su", "y_r")


def _load(name: str):
    """A sibling benchmark module by path (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _env() -> dict:
    """Child environment: this checkout's jaxgames first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


# ----------------------------------------------------------------------------- BK vs closed form


def bk_worker(args) -> dict:
    """Engine vs jitted closed form, one dtype (runs in its own process)."""
    import jax

    jax.config.update("jax_enable_x64", args.dtype == "float64")
    from jaxgames.models import bakshi_kleindorfer as bk

    bw = _load("bench_width")
    bbk = _load("bench_bakshi_kleindorfer")
    dtype = np.dtype(args.dtype)
    params, acceptance = bbk.sample_params(bk, args.bk_n, args.seed, margin=0.1)
    n = args.bk_n
    chunks = sorted({min(c, n) for c in args.bk_chunks})
    engine = jax.jit(jax.vmap(bk.noncooperative))
    cf = jax.jit(jax.vmap(bk.noncooperative_closed_form))
    methods = {"engine": engine, "cf_jax": cf}
    runs = {}
    for c in chunks:
        n_pad = math.ceil(n / c) * c
        cols = {k: np.pad(params[k].astype(dtype), (0, n_pad - n), mode="edge")
                for k in bbk.PARAMS}
        batches = [jax.device_put(bk.Params(**{k: v[i:i + c] for k, v in cols.items()}))
                   for i in range(0, n_pad, c)]
        for name, fn in methods.items():
            t0 = time.perf_counter()
            fn.lower(batches[0]).compile()
            jax.block_until_ready(fn(batches[0]))  # fills jit's own cache too
            runs[name, c] = {"batches": batches, "compile_s": time.perf_counter() - t0,
                             "times_s": [], "loadavg": []}
    outs = {}
    for _ in range(args.repeats):
        for (name, _chunk), run in runs.items():
            fn = methods[name]
            t0 = time.perf_counter()
            res = jax.block_until_ready([fn(b) for b in run["batches"]])
            run["times_s"].append(time.perf_counter() - t0)
            run["loadavg"].append(bw.loadavg())
            outs.setdefault(name, res)
    rows = []
    for (name, c), run in runs.items():
        best = min(run["times_s"])
        rows.append({"method": name, "chunk": c, "compile_s": run["compile_s"],
                     "times_s": run["times_s"], "loadavg": run["loadavg"], "best_s": best,
                     "median_s": float(np.median(run["times_s"])), "points_per_s": n / best})
    rate = {(r["method"], r["chunk"]): r["points_per_s"] for r in rows}
    best = {m: max((r for r in rows if r["method"] == m), key=lambda r: r["points_per_s"])
            for m in methods}

    def cat(res, field):
        return np.concatenate([np.asarray(getattr(o, field)) for o in res])[:n]

    y = np.stack([cat(outs["engine"], f) for f in BK_OUTPUTS], axis=1).astype(np.float64)
    ref = np.stack([cat(outs["cf_jax"], f) for f in BK_OUTPUTS], axis=1).astype(np.float64)
    with np.errstate(all="ignore"):
        rel = np.max(np.abs(y - ref) / np.abs(ref), axis=1)
    rel = np.where(np.isfinite(rel), rel, np.inf)
    converged = cat(outs["engine"], "converged").astype(bool)
    ratio_best = best["engine"]["points_per_s"] / best["cf_jax"]["points_per_s"]
    return {
        "benchmark": "bakshi_kleindorfer engine vs jitted closed form (issue 14)",
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": bw.machine_info(), "dtype": args.dtype, "n_points": n, "seed": args.seed,
        "acceptance_rate": acceptance, "chunks": chunks, "repeats": args.repeats,
        "points": "sample_params of benchmarks/bench_bakshi_kleindorfer.py (interior, margin 0.1)",
        "rows": rows,
        "ratio_engine_over_cf_jax": {str(c): rate["engine", c] / rate["cf_jax", c]
                                     for c in chunks},
        "ratio_engine_over_cf_jax_best_chunks": ratio_best,
        "best_chunk": {m: best[m]["chunk"] for m in methods},
        "share_converged": float(converged.mean()),
        "max_rel_err_converged": float(rel[converged].max()) if converged.any() else None,
        "goal": {"engine_over_cf_jax": GOALS["bk_engine_over_cf_jax"],
                 "met": ratio_best >= GOALS["bk_engine_over_cf_jax"]},
    }


# ----------------------------------------------------------------------------- the report


def _run(cmd: list[str], log) -> int:
    log("$ " + " ".join(cmd))
    return subprocess.run(cmd, env=_env(), cwd=ROOT, check=False).returncode


def _headline(width: dict | None, bk: dict | None) -> dict:
    out = {}
    if bk is not None:
        out["bk_engine_over_cf_jax"] = bk["ratio_engine_over_cf_jax_best_chunks"]
        out["bk_engine_points_per_s"] = max(r["points_per_s"] for r in bk["rows"]
                                            if r["method"] == "engine")
        out["bk_cf_jax_points_per_s"] = max(r["points_per_s"] for r in bk["rows"]
                                            if r["method"] == "cf_jax")
    if width is not None:
        for res in width["results"]:
            key = f"{res['model']}.{res['function']}"
            out[key] = {str(r["width"]): round(r["points_per_s"], 1) for r in res["widths"]}
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or str(HERE / "results" / "gpu"),
                    help="output directory (default: $OUT, else benchmarks/results/gpu)")
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"],
                    choices=("float32", "float64"))
    ap.add_argument("--budget", type=float, default=480.0,
                    help="seconds of wall time for the whole report (no new work after it)")
    ap.add_argument("--n", type=int, default=16384, help="width-scan points per function")
    ap.add_argument("--widths", type=int, nargs="+", default=[8, 64, 1024, 16384])
    ap.add_argument("--max-groups", type=int, default=16,
                    help="at most this many sequential groups per width")
    ap.add_argument("--only", nargs="*", default=None, metavar="MODEL[.FN]",
                    help="width scan of these only (default: every shipped solve function)")
    ap.add_argument("--bk-n", type=int, default=2**22, help="points for BK vs closed form")
    ap.add_argument("--bk-chunks", type=int, nargs="+", default=[2**16, 2**18, 2**20, 2**22])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--tiny", action="store_true",
                    help="seconds-long smoke configuration (tests): 16 points, widths 4 16, "
                         "bakshi_kleindorfer.noncooperative only, 1 repeat; BK 64 points")
    ap.add_argument("--bk-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.bk_worker:
        report = bk_worker(args)
        Path(args.worker_out).write_text(json.dumps(_load("bench_width")._jsonable(report),
                                                    indent=1) + "\n")
        return report

    if args.tiny:
        args.n, args.widths, args.max_groups, args.repeats = 16, [4, 16], None, 1
        args.bk_n, args.bk_chunks = 64, [64]
        if args.only is None:
            args.only = ["bakshi_kleindorfer.noncooperative"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    lines: list[str] = []

    def log(msg):
        lines.append(msg)
        print(msg, flush=True)

    # the device, named by a child (the parent stays free of jax's x64 setting)
    probe = subprocess.run(
        [sys.executable, "-c", "import jax; d = jax.devices()[0]; "
         "print(f'{d.platform}|{d.device_kind}|{jax.device_count()}|{jax.__version__}')"],
        env=_env(), capture_output=True, text=True, check=False)
    platform_, kind, count, jax_version = (probe.stdout.strip().split("|") + ["?"] * 4)[:4]
    tag = "cpu" if platform_ == "cpu" else "-".join(
        filter(None, ["".join(ch if ch.isalnum() else "-" for ch in f"{platform_}-{kind}".lower())
                      .strip("-")]))
    log(f"device: {platform_} {kind} x{count}, jax {jax_version}; output {out}")

    files, width_reports, bk_reports, rcs = [], {}, {}, {}
    for i, dtype in enumerate(args.dtypes):
        t_dtype = time.monotonic()
        share = (args.budget - (t_dtype - t0)) / (len(args.dtypes) - i)  # of what is left
        bk_file = out / f"bk_closed_form_{tag}_{dtype}.json"
        rcs[f"bk_{dtype}"] = _run(
            [sys.executable, str(HERE / "gpu_report.py"), "--bk-worker", "--dtype", dtype,
             "--bk-n", str(args.bk_n), "--bk-chunks", *map(str, args.bk_chunks),
             "--repeats", str(args.repeats), "--seed", str(args.seed),
             "--worker-out", str(bk_file)], log)
        if bk_file.exists():
            files.append(bk_file.name)
            bk_reports[dtype] = json.loads(bk_file.read_text())
        width_file = out / f"width_{tag}_{dtype}.json"
        budget = max(share - (time.monotonic() - t_dtype), 1.0)  # what BK left of the share
        cmd = [sys.executable, str(HERE / "bench_width.py"), "--dtype", dtype,
               "--n", str(args.n), "--widths", *map(str, args.widths),
               "--repeats", str(args.repeats), "--seed", str(args.seed),
               "--budget", f"{budget:.0f}", "--out", str(width_file),
               "--note", f"gpu_report.py, budget {budget:.0f} s of {args.budget:g} s"]
        if args.max_groups:
            cmd += ["--max-groups", str(args.max_groups)]
        if args.only:
            cmd += ["--only", *args.only]
        rcs[f"width_{dtype}"] = _run(cmd, log)
        if width_file.exists():
            files.append(width_file.name)
            width_reports[dtype] = json.loads(width_file.read_text())

    headline = {d: _headline(width_reports.get(d), bk_reports.get(d)) for d in args.dtypes}
    report = {
        "benchmark": "one-command accelerator report (issue 14)",
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": f"{platform_}: {kind}", "device_count": count, "jax": jax_version,
        "tag": tag, "dtypes": args.dtypes, "budget_s": args.budget,
        "elapsed_s": time.monotonic() - t0, "files": files, "exit_codes": rcs,
        "goals": GOALS, "headline": headline, "tiny": args.tiny, "log": lines,
    }
    (out / "gpu_report.json").write_text(json.dumps(report, indent=1) + "\n")
    log(f"wrote {out / 'gpu_report.json'} ({report['elapsed_s']:.0f} s)")
    if any(rcs.values()):
        log(f"some steps failed: {rcs}")
    return report


if __name__ == "__main__":
    rep = main()
    sys.exit(1 if isinstance(rep, dict) and any(rep.get("exit_codes", {}).values()) else 0)
