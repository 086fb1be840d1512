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
