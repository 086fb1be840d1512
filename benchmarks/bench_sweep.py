"""End-to-end sweep throughput: grid -> engine -> Zarr store, against a per-point Python loop.

What is measured (one run, same machine, same grid family):

* ``sweep``: ``jaxgames.sweep(bakshi_kleindorfer.noncooperative, ...)`` over a 4-way grid of
  ``N`` points streamed to a Zarr store (validation, chunking, solve, device->host copy, Zarr
  writes, completion markers, reopening). Reported twice: the first call including
  compilation ("cold") and a second call into a fresh store ("warm", compiled function cached).
* ``loop``: the same sweep written the way SALib / EMA-Workbench style studies usually run a
  model: a Python loop over points, each solved by ``scipy.optimize.root`` (hybr with the
  analytic Jacobian, the non-cooperative FOCs (9)-(10)), outcomes appended to lists, then one
  ``xarray.Dataset`` written to Zarr. It is timed on a subsample of points (``--loop-points``)
  and its rate is per point.
* ``memory``: peak resident memory of a fresh process running the sweep at several chunk
  sizes (``ru_maxrss``), to show that memory follows the chunk size, not the grid size.

Ratios are ``sweep points/s / loop points/s`` from the same run. Absolute numbers are only
meaningful with the device named (printed and stored in the JSON).

    python benchmarks/bench_sweep.py                      # 1e6 and 1e7 points, CPU
    python benchmarks/bench_sweep.py --points 1e8         # on a GPU
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_bakshi_kleindorfer import _cpu_model, _foc_numpy, _warm_u  # noqa: E402


def grid_axes(n_points: float) -> dict[str, np.ndarray]:
    """A 4-way grid (f, p, D_J, alpha_r) with about ``n_points`` points."""
    side = max(2, round(n_points ** 0.25))
    # make the product close to n_points: adjust the last axis
    last = max(2, round(n_points / side**3))
    return {
        "f": np.linspace(0.05, 0.95, side),
        "p": np.linspace(0.05, 0.95, side),
        "D_J": np.geomspace(1e6, 1e9, side),
        "alpha_r": np.geomspace(1e-5, 1.6e-4, last),
    }


def time_sweep(axes, chunk_size: int, workdir: Path, dtype: str) -> dict:
    import jaxgames as jg
    from jaxgames.models import bakshi_kleindorfer as bk

    out = {}
    for label in ("cold", "warm"):
        store = workdir / f"sweep_{label}.zarr"
        shutil.rmtree(store, ignore_errors=True)
        t0 = time.perf_counter()
        ds = jg.sweep(bk.noncooperative, bk.DEFAULT, axes, chunk_size=chunk_size, store=store,
                      progress=False, dtype=dtype)
        converged = float(ds["converged"].mean())
        seconds = time.perf_counter() - t0
        n = int(ds.attrs["n_points"])
        size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
        out[label] = {"seconds": seconds, "points_per_s": n / seconds, "n_points": n,
                      "converged_share": converged, "store_bytes": size}
        shutil.rmtree(store, ignore_errors=True)
    return out


def time_loop(axes, n_loop: int, workdir: Path) -> dict:
    """SALib/EMA-Workbench style: a Python loop calling a per-point model, then xarray."""
    import xarray as xr
    from scipy.optimize import root

    from jaxgames.models import bakshi_kleindorfer as bk

    shape = tuple(len(v) for v in axes.values())
    flat = np.random.default_rng(0).choice(math.prod(shape), n_loop, replace=False)
    idx = np.unravel_index(flat, shape)
    base = bk.DEFAULT._asdict()
    t0 = time.perf_counter()
    records = {k: [] for k in ("y_ss", "y_su", "y_r", "converged")}
    for i in range(n_loop):
        q = dict(base)
        for (name, values), j in zip(axes.items(), idx, strict=True):
            q[name] = float(values[j[i]])
        qt = tuple(q[k] for k in bk.Params._fields)
        f, t_ss, t_su, t_r, a_ss, a_su, a_r, d, _ = qt
        u0 = np.array([_warm_u(t_ss, a_ss, f * d, np), _warm_u(t_su, a_su, f * d, np),
                       _warm_u(t_r, a_r, (1 - f) * d, np)])
        sol = root(_foc_numpy, u0, args=(qt,), jac=True, method="hybr", tol=1e-12)
        y = sol.x / np.array([a_ss, a_su, a_r])
        for k, v in zip(("y_ss", "y_su", "y_r", "converged"), (*y, sol.success), strict=True):
            records[k].append(v)
    ds = xr.Dataset({k: ("sample", np.asarray(v)) for k, v in records.items()})
    store = workdir / "loop.zarr"
    ds.to_zarr(store, mode="w", consolidated=False)
    seconds = time.perf_counter() - t0
    shutil.rmtree(store, ignore_errors=True)
    return {"seconds": seconds, "n_points": n_loop, "points_per_s": n_loop / seconds}


_MEM_SCRIPT = """
import resource, sys, jax
jax.config.update("jax_enable_x64", sys.argv[3] == "float64")
sys.path.insert(0, sys.argv[4])
from bench_sweep import grid_axes
import jaxgames as jg
from jaxgames.models import bakshi_kleindorfer as bk
axes = grid_axes(float(sys.argv[1]))
ds = jg.sweep(bk.noncooperative, bk.DEFAULT, axes, chunk_size=int(sys.argv[2]),
              store=sys.argv[5], progress=False, dtype=sys.argv[3])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def memory_vs_chunk(n_points: float, chunk_sizes, dtype: str, workdir: Path) -> list[dict]:
    rows = []
    for cs in chunk_sizes:
        store = workdir / f"mem_{cs}.zarr"
        shutil.rmtree(store, ignore_errors=True)
        proc = subprocess.run(
            [sys.executable, "-c", _MEM_SCRIPT, str(n_points), str(cs), dtype, str(HERE),
             str(store)], capture_output=True, text=True, check=True)
        rows.append({"chunk_size": cs, "n_points": n_points,
                     "peak_rss_mib": int(proc.stdout.split()[-1]) / 1024})
        shutil.rmtree(store, ignore_errors=True)
    return rows


def device_name() -> str:
    import jax

    d = jax.devices()[0]
    if d.platform == "cpu":
        return f"cpu: {_cpu_model()}, {os.cpu_count()} cores"
    return f"{d.platform}: {d.device_kind}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=float, nargs="+", default=[1e6, 1e7])
    ap.add_argument("--chunk-size", type=int, default=None,
                    help="points per chunk (default: the engine's default for the device)")
    ap.add_argument("--loop-points", type=int, default=2000)
    ap.add_argument("--memory-points", type=float, default=1e6)
    ap.add_argument("--memory-chunks", type=int, nargs="*",
                    default=[2**12, 2**14, 2**16, 2**18])
    ap.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "sweep.json")
    args = ap.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", args.dtype == "float64")
    from jaxgames import _sweep

    chunk = args.chunk_size or _sweep._default_chunk_size()
    report = {"device": device_name(), "dtype": args.dtype, "chunk_size": chunk,
              "jax": jax.__version__, "sweeps": [], "memory": []}
    print(f"device: {report['device']}, dtype {args.dtype}, chunk {chunk}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        loop = time_loop(grid_axes(1e6), args.loop_points, work)
        report["loop"] = loop
        print(f"loop   : {loop['points_per_s']:.4g} points/s ({loop['n_points']} points)",
              flush=True)
        for n in args.points:
            axes = grid_axes(n)
            res = time_sweep(axes, chunk, work, args.dtype)
            res["grid"] = {k: len(v) for k, v in axes.items()}
            res["ratio_warm_over_loop"] = res["warm"]["points_per_s"] / loop["points_per_s"]
            res["ratio_cold_over_loop"] = res["cold"]["points_per_s"] / loop["points_per_s"]
            report["sweeps"].append(res)
            print(f"sweep {res['warm']['n_points']:.3g} points: cold "
                  f"{res['cold']['points_per_s']:.4g} /s ({res['cold']['seconds']:.1f} s), warm "
                  f"{res['warm']['points_per_s']:.4g} /s ({res['warm']['seconds']:.1f} s), "
                  f"{res['ratio_warm_over_loop']:.0f}x the loop; converged "
                  f"{100 * res['warm']['converged_share']:.2f}%, store "
                  f"{res['warm']['store_bytes'] / 2**20:.0f} MiB", flush=True)
        if args.memory_chunks:
            report["memory"] = memory_vs_chunk(args.memory_points, args.memory_chunks,
                                               args.dtype, work)
            for row in report["memory"]:
                print(f"memory : chunk {row['chunk_size']:>8} -> peak RSS "
                      f"{row['peak_rss_mib']:.0f} MiB ({row['n_points']:.0e} points)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
