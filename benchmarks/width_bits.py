"""Which outputs of a solve function differ in their bits between batch widths, and by how much.

``bench_width.py`` says whether a function's outputs are bit-identical across widths; this
script says where they are not: for each output, how many of the ``N`` points differ between
each width and the first one, and the largest relative difference. It uses the width scan's
points and layout (``lax.map`` over vmapped groups of ``w``; ``bench_width.draw_points`` and
``make_runner``), and records ``XLA_FLAGS`` with the results, so that one run with
``XLA_FLAGS=--xla_cpu_max_isa=AVX`` (an x86 CPU without fused multiply-add instructions) and
one without tell whether a difference comes from where XLA's CPU compiler contracts
``a * b + c`` into one rounding (it does that inside a fused kernel, and its fusion decisions
depend on the batch shape) or from the model's arithmetic itself.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/width_bits.py bakshi_kleindorfer.bargaining --widths 8 2048
    XLA_FLAGS=--xla_cpu_max_isa=AVX PYTHONPATH=. python benchmarks/width_bits.py \\
        bakshi_kleindorfer.bargaining --widths 8 2048

Results for ``bargaining`` are in benchmarks/README.md ("Session 10").
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_width as bw  # noqa: E402


def differences(a, b, n: int) -> dict[str, dict]:
    """Per output path: points (of the first ``n``) whose values differ (NaN equals NaN) and
    the largest absolute and relative differences among them."""
    import jax

    out = {}
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b),
                            strict=True):
        x, y = np.asarray(x)[:n].reshape(n, -1), np.asarray(y)[:n].reshape(n, -1)
        inexact = np.issubdtype(x.dtype, np.inexact)
        same = (x == y) | (np.isnan(x) & np.isnan(y)) if inexact else x == y
        bad = ~same.all(axis=1)
        if not bad.any():
            continue
        worst = {"max_absolute": None, "max_relative": None}
        if inexact:
            with np.errstate(all="ignore"):
                d = np.abs(x - y)
                r = d / np.maximum(np.abs(x), np.abs(y))
            for key, v in (("max_absolute", d), ("max_relative", r)):
                v = v[np.isfinite(v)]
                worst[key] = float(v.max()) if v.size else None
        out[jax.tree_util.keystr(path)] = {"points": int(bad.sum()), **worst}
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("function", help="model.function, e.g. bakshi_kleindorfer.bargaining")
    ap.add_argument("--n", type=int, default=2048, help="points (default 2048)")
    ap.add_argument("--widths", type=int, nargs="+", default=[8, 2048])
    ap.add_argument("--seed", type=int, default=14, help="the width scan's draw (default 14)")
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("--out", help="JSON file to write")
    args = ap.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", args.dtype == "float64")
    import jaxgames as jg

    model, name = args.function.split(".")
    mod = importlib.import_module(f"jaxgames.models.{model}")
    spec = jg.model_spec(model)
    fn = getattr(mod, name)
    stochastic = name in getattr(mod, "STOCHASTIC", ())
    vals, base = bw.draw_points(model, spec, mod.DEFAULT, args.n, args.seed)
    dtype = np.dtype(args.dtype)
    outs = {}
    for w in args.widths:
        groups = -(-args.n // w)
        padded = bw._pad(vals, groups * w, dtype)
        t = time.perf_counter()
        run = bw.make_runner(fn, base, stochastic, args.seed, args.n, w)
        outs[w] = jax.tree.map(np.asarray, run(padded))
        print(f"width {w}: compiled and ran in {time.perf_counter() - t:.0f} s", flush=True)
    first = args.widths[0]
    result = {
        "function": args.function, "n": args.n, "seed": args.seed,
        "dtype": args.dtype, "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        "machine": bw.machine_info(), "against_width": first, "widths": {},
    }
    for w in args.widths[1:]:
        diff = differences(outs[first], outs[w], args.n)
        result["widths"][str(w)] = diff
        print(f"width {w} against {first}: "
              + ("identical" if not diff else f"{len(diff)} outputs differ"))
        for k, v in diff.items():
            print(f"  {k}: {v['points']} of {args.n} points, max absolute {v['max_absolute']}, "
                  f"relative {v['max_relative']}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print("wrote", args.out)
    return result


if __name__ == "__main__":
    main()
