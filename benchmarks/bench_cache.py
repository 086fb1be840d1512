"""First and second run of each shipped sweep file: what the persistent compilation cache saves.

``jaxgames sweep`` keeps JAX's persistent compilation cache under
``$XDG_CACHE_HOME/jaxgames/jax``. For every ``sweeps/*.toml`` this runs, each in a fresh
process (``python -m jaxgames sweep FILE --out TMP --figures TMP --no-progress``):

* ``first``: with an empty cache directory (everything is compiled and stored);
* ``second``: the same command again (compiled programs are read from the cache);

and reports the wall times of the whole command (interpreter start, imports, checking the file,
compiling or loading, solving, writing the dataset and the figures) and their ratio
``second / first`` from the same run. The cache directory is a fresh temporary one, so the
user's cache is neither used nor changed.

    python benchmarks/bench_cache.py                       # every shipped sweep file
    python benchmarks/bench_cache.py sweeps/default.toml   # some of them
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


def _run(file: Path, tmp: Path, cache: Path, tag: str) -> float:
    from jaxgames.sweepfile import load_sweep

    out = tmp / f"{file.stem}-{tag}{load_sweep(file).output.suffix}"
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "jaxgames", "sweep", str(file), "--out",
                           str(out), "--figures", str(tmp / f"figures-{tag}"), "--no-progress"],
                          env=env, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{file}: exit {proc.returncode}: {proc.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path,
                        help="sweep files (default: every sweeps/*.toml)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" /
                        "cache.json", help="where to store the results")
    args = parser.parse_args()
    files = args.files or sorted((ROOT / "sweeps").glob("*.toml"))
    rows = []
    for file in files:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            cache = tmp / "cache"
            first = _run(file, tmp, cache, "first")
            second = _run(file, tmp, cache, "second")
            size = sum(p.stat().st_size for p in (cache / "jaxgames" / "jax").rglob("*")
                       if p.is_file())
        row = {"file": str(file.relative_to(ROOT) if file.is_absolute() else file),
               "first_s": round(first, 2), "second_s": round(second, 2),
               "ratio": round(second / first, 3), "cache_bytes": size}
        rows.append(row)
        print(f"{row['file']:<32} first {first:7.1f} s   second {second:7.1f} s   "
              f"second/first {second / first:5.2f}   cache {size / 1e6:6.1f} MB", flush=True)
    import jax

    result = {"machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "jax": jax.__version__,
              "date": time.strftime("%Y-%m-%d"), "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
