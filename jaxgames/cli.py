"""The ``jaxgames`` command line.

    jaxgames figure3 [--png PATH]   reproduce Figure 3 of Bakshi & Kleindorfer (2009)
    jaxgames info                   devices and versions

Exit codes: 0 success; 1 a check failed (e.g. a printed value not reproduced); 2 bad usage.
"""

from __future__ import annotations

import argparse
import platform
import sys


def _figure3(args: argparse.Namespace) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxgames import reports

    print("jaxgames figure3: solving the five examples with the engine in float64 "
          "(compiling first, ~20-30 s on a laptop CPU)...", file=sys.stderr, flush=True)
    rows = reports.figure3_rows()
    print(reports.format_figure3(rows))
    if args.png:
        fig = reports.plot_figure3(rows)
        fig.savefig(args.png, dpi=130)
        print(f"figure written to {args.png}")
    return 0 if all(r.match for r in rows) else 1


def _info(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    import jaxgames

    print(f"jaxgames {jaxgames.__version__}")
    print(f"python   {platform.python_version()} ({platform.machine()})")
    print(f"jax      {jax.__version__}")
    print(f"numpy    {np.__version__}")
    for mod in ("xarray", "optax", "matplotlib", "scipy"):
        try:
            m = __import__(mod)
            print(f"{mod:<8} {m.__version__}")
        except ImportError:
            print(f"{mod:<8} not installed")
    print(f"x64      {jax.config.jax_enable_x64}")
    for d in jax.devices():
        print(f"device   {d.platform}:{d.id} {d.device_kind}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxgames",
        description="Vectorised equilibria of supply-chain and cyber-security games.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fig3 = sub.add_parser(
        "figure3",
        help="reproduce Figure 3 of Bakshi & Kleindorfer (2009) next to the printed values",
        description="Solve the five examples of Figure 3 with the engine (float64) and print "
        "every computed number next to the printed one. Exit code 1 if any differs.",
    )
    fig3.add_argument("--png", metavar="PATH", help="also save a bar chart of the costs as PNG")
    fig3.set_defaults(func=_figure3)
    info = sub.add_parser("info", help="show jaxgames/jax versions and the available devices")
    info.set_defaults(func=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        sys.stderr.close()
        return 0
    except Exception as exc:  # one clear line, non-zero exit
        print(f"jaxgames {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
