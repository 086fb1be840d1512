"""First and second run of each shipped sweep file: what the persistent compilation cache saves.

``jaxgames sweep`` and ``jaxgames figure3`` keep JAX's persistent compilation cache under
``$XDG_CACHE_HOME/jaxgames/jax``. For every ``sweeps/*.toml`` (and ``figure3``, the command
``jaxgames figure3``) this runs, each in a fresh process
(``python -m jaxgames sweep FILE --out TMP --figures TMP --no-progress``, or
``python -m jaxgames figure3``):

* ``first``: with an empty cache directory (everything is compiled and stored);
* ``second``: the same command again (compiled programs are read from the cache);

and reports the wall times of the whole command (interpreter start, imports, checking the file,
compiling or loading, solving, writing the dataset and the figures) and their ratio
``second / first`` from the same run, plus the CPU time (user + system) and peak memory of each
process and the 1-minute load average before it started: on a shared machine the wall time
says more about the other processes than about the command, the CPU time much less. The cache
directory is a fresh temporary one, so the user's cache is neither used nor changed.

    python benchmarks/bench_cache.py                       # every shipped sweep file
    python benchmarks/bench_cache.py sweeps/default.toml   # some of them
    python benchmarks/bench_cache.py figure3 --repeat 3    # jaxgames figure3, three times
    python benchmarks/bench_cache.py figure3 --stages      # ... and where its time goes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The pseudo-file that stands for the ``jaxgames figure3`` command.
FIGURE3 = "figure3"


def _command(target: str, tmp: Path, tag: str) -> list[str]:
    if target == FIGURE3:
        return [sys.executable, "-m", "jaxgames", "figure3"]
    from jaxgames.sweepfile import load_sweep

    file = Path(target)
    out = tmp / f"{file.stem}-{tag}{load_sweep(file).output.suffix}"
    return [sys.executable, "-m", "jaxgames", "sweep", str(file), "--out", str(out),
            "--figures", str(tmp / f"figures-{tag}"), "--no-progress"]


def _run(target: str, tmp: Path, cache: Path, tag: str) -> dict:
    """One run in a fresh process: wall and CPU seconds, peak memory, load average before."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "PYTHONPATH": str(ROOT)}
    load = os.getloadavg()[0]
    with open(tmp / f"{tag}.out", "w+") as out, open(tmp / f"{tag}.err", "w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(_command(target, tmp, tag), env=env, stdout=out, stderr=err,
                                cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{target}: exit {proc.returncode}: {err.read()[-2000:]}")
    return {"s": round(seconds, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "rss_mb": round(usage.ru_maxrss / 1024), "load": round(load, 2)}


# Run in a fresh process by --stages: the CPU time of each stage of figure3's work, done as
# jaxgames.reports.figure3_rows does it (one jitted noncooperative_and_bargaining).
_STAGES = r"""
import json, sys, time
t = [time.process_time()]
def lap():
    t.append(time.process_time())
    return round(t[-1] - t[-2], 2)
out = {}
import jax
jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_enable_x64", True)
from jaxgames.models import bakshi_kleindorfer as bk
out["import"] = lap()
traced = jax.jit(bk.noncooperative_and_bargaining).trace(bk.FIGURE3[0])
out["trace"] = lap()
lowered = traced.lower()
out["lower"] = lap()
compiled = lowered.compile()
out["compile_or_load"] = lap()
for params in bk.FIGURE3:
    jax.block_until_ready(compiled(params))
out["solve_five"] = lap()
def count(jaxpr):
    n = 0
    for eqn in jaxpr.eqns:
        n += 1
        for v in eqn.params.values():
            for x in v if isinstance(v, (list, tuple)) else [v]:
                n += count(x.jaxpr) if hasattr(x, "consts") else count(x) if hasattr(
                    x, "eqns") else 0
    return n
out["jaxpr_equations"] = count(traced.jaxpr.jaxpr)
out["hlo_chars"] = len(lowered.as_text())
print(json.dumps(out))
"""


def _stages(tmp: Path) -> dict:
    """figure3's stages (CPU seconds) in two fresh processes: empty cache, then filled."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cache = tmp / "stages-cache"
    result = {}
    for tag in ("first", "second"):
        proc = subprocess.run([sys.executable, "-c", _STAGES, str(cache)], env=env, cwd=ROOT,
                              capture_output=True, text=True, check=True)
        result[tag] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*",
                        help=f"sweep files, or {FIGURE3!r} for the jaxgames figure3 command "
                             "(default: every sweeps/*.toml)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="first/second pairs per file, each with a fresh cache (default 1)")
    parser.add_argument("--stages", action="store_true",
                        help="for figure3, also time its stages (import, trace, lower, compile "
                             "or load, solve) in two more fresh processes")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" /
                        "cache.json", help="where to store the results")
    args = parser.parse_args()
    targets = args.files or [str(f) for f in sorted((ROOT / "sweeps").glob("*.toml"))]
    rows = []
    for target in targets:
        name = target if target == FIGURE3 else str(
            Path(target).resolve().relative_to(ROOT) if Path(target).is_absolute()
            else Path(target))
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as d:
                tmp = Path(d)
                cache = tmp / "cache"
                first = _run(target, tmp, cache, "first")
                second = _run(target, tmp, cache, "second")
                size = sum(p.stat().st_size for p in (cache / "jaxgames" / "jax").rglob("*")
                           if p.is_file())
            row = {"file": name, "first_s": first["s"], "second_s": second["s"],
                   "ratio": round(second["s"] / first["s"], 3), "cache_bytes": size,
                   "first_cpu_s": first["cpu_s"], "second_cpu_s": second["cpu_s"],
                   "first_rss_mb": first["rss_mb"], "second_rss_mb": second["rss_mb"],
                   "load_first": first["load"], "load_second": second["load"]}
            if args.stages and target == FIGURE3:
                with tempfile.TemporaryDirectory() as d:
                    row["stages_cpu_s"] = _stages(Path(d))
                print(f"{name:<32} stages (CPU s): {row['stages_cpu_s']}", flush=True)
            rows.append(row)
            print(f"{name:<32} first {first['s']:7.1f} s (cpu {first['cpu_s']:6.1f} s, "
                  f"load {first['load']:4.1f})   second {second['s']:7.1f} s "
                  f"(cpu {second['cpu_s']:6.1f} s, load {second['load']:4.1f})   "
                  f"second/first {row['ratio']:5.2f}   cache {size / 1e6:6.1f} MB", flush=True)
    import jax

    result = {"machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "jax": jax.__version__, "commit": _commit(),
              "date": time.strftime("%Y-%m-%d"), "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
