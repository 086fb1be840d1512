"""The ``jaxgames`` command line.

    jaxgames sweep FILE [--out PATH] [--figures DIR] [--resume] [--overwrite]
                        [--chunk-size N] [--dask ADDRESS] [--no-progress]
                        [--max-memory SIZE] [--max-disk SIZE] [--no-compilation-cache]
                                    run a sweep file (see jaxgames.sweepfile, sweeps/README.md)
    jaxgames plot DATASET --kind KIND [--var V,...] [--x X] [--y Y]
                          [--sel NAME=VALUE ...] [--facet DIM] [--by DIM] [--xmarks V,...]
                          [--background V] [--labels VALUE=TEXT ...] [--sharey | --no-sharey]
                          [--contours | --no-contours] [--levels N|L1,L2,...] [--top N]
                          [--reduce mean] [--output NAME] --png PATH
                                    draw a figure of a sweep or sensitivity dataset; KIND:
                                    heatmap, region_map, line, one_way, one_way_regions,
                                    tornado, sobol
    jaxgames figure3 [--png PATH]   reproduce Figure 3 of Bakshi & Kleindorfer (2009)
    jaxgames info                   devices and versions

Exit codes: 0 success; 1 the run failed or a check failed (e.g. a printed value not
reproduced); 2 bad usage or a bad sweep file (one line on stderr says what is wrong);
130 interrupted by Ctrl-C (a .zarr sweep keeps its finished chunks: run again with --resume).
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (``jaxgames sweep: error: ...``), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _UsageError(Exception):
    """A problem with the command line or its inputs: exit code 2."""


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def _size(text: str) -> int:
    from jaxgames._sweep import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ----------------------------------------------------------------------------- compilation cache


def compilation_cache_dir() -> Path:
    """Where the command line keeps JAX's persistent compilation cache:
    ``$XDG_CACHE_HOME/jaxgames/jax`` (``~/.cache/jaxgames/jax`` without ``XDG_CACHE_HOME``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jaxgames" / "jax"


def _enable_compilation_cache(args: argparse.Namespace) -> Path | None:
    """Turn on JAX's persistent compilation cache (before anything is compiled), unless
    ``--no-compilation-cache``: a second run of a study then skips most of its compilation."""
    if getattr(args, "no_compilation_cache", True):
        return None
    import jax

    path = compilation_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a read-only home: run without the cache, say so
        print(f"jaxgames: compilation cache disabled, cannot create {path}: {exc}",
              file=sys.stderr)
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    # cache every program that took a noticeable time to compile (default: 1 s)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path


_NO_CACHE_HELP = ("do not use the persistent JAX compilation cache (by default compiled "
                  "programs are kept under $XDG_CACHE_HOME/jaxgames/jax, or "
                  "~/.cache/jaxgames/jax, so a second run skips most compilation)")


# ----------------------------------------------------------------------------- figure3, info


def _figure3(args: argparse.Namespace) -> int:
    _enable_compilation_cache(args)
    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxgames import reports

    # Times from benchmarks/bench_cache.py figure3 (CPU time of the whole command, measured
    # on a shared 2-core machine; benchmarks/README.md).
    print("jaxgames figure3: solving the five examples with the engine in float64 "
          "(compiling one program first: about 10 s on an idle 2-core CPU; about 3.5 s in "
          "all when the compilation cache holds an earlier run's program)...",
          file=sys.stderr, flush=True)
    rows = reports.figure3_rows()
    print(reports.format_figure3(rows))
    if args.png:
        fig = reports.plot_figure3(rows)
        fig.savefig(args.png, dpi=130)
        print(f"figure written to {args.png}")
    return 0 if all(r.match for r in rows) else 1


_INFO_MODULES = (("xarray", "xarray"), ("optax", "optax"), ("matplotlib", "matplotlib"),
                 ("scipy", "scipy"), ("zarr", "zarr"), ("dask", "dask"),
                 ("distributed", "distributed"), ("tqdm", "tqdm"), ("h5netcdf", "h5netcdf"),
                 ("SALib", "SALib"))


def _info(args: argparse.Namespace) -> int:
    import importlib

    import jax
    import numpy as np

    import jaxgames

    print(f"{'jaxgames':<12} {jaxgames.__version__}")
    print(f"{'python':<12} {platform.python_version()} ({platform.machine()})")
    print(f"{'jax':<12} {jax.__version__}")
    print(f"{'numpy':<12} {np.__version__}")
    for label, mod in _INFO_MODULES:
        try:
            m = importlib.import_module(mod)
            print(f"{label:<12} {getattr(m, '__version__', '?')}")
        except ImportError:
            print(f"{label:<12} not installed")
    print(f"{'x64':<12} {jax.config.jax_enable_x64}")
    print(f"{'compilation cache':<12} {compilation_cache_dir()} (jaxgames sweep and figure3; "
          "--no-compilation-cache turns it off)")
    for d in jax.devices():
        print(f"{'device':<12} {d.platform}:{d.id} {d.device_kind}")
    return 0


# ----------------------------------------------------------------------------- sweep


def _share(da) -> tuple[int, int]:
    """(number true, number of elements) of a boolean variable, computed chunk-wise."""
    return int(da.sum().values), int(da.size)


def _summary(spec, ds, seconds: float, output: Path, figures) -> str:
    rows = []
    if spec.mode == "tornado":
        conv = ds["converged"].all("output") if "converged" in ds else None
        n = 1 + 2 * ds.sizes["parameter"]  # the base point and both ends of each range
        rows.append(("parameters", f"{ds.sizes['parameter']} (each at its low and high end; "
                                   f"{len(ds['output'])} outputs)"))
    else:
        conv = ds["converged"] if "converged" in ds else None
        from jaxgames.sweepfile import _SUMMARY_OUTPUTS

        # One value per point: ``converged`` where the model solves, else its ``status`` or
        # ``assumptions_hold`` (a simulation such as isb has no convergence to report).
        per_point = next((ds[k] for k in _SUMMARY_OUTPUTS if k in ds), None)
        n = int(per_point.size) if per_point is not None else None
        shape = " x ".join(f"{ds.sizes[d]} {d}" for d in (per_point.dims if per_point is not None
                                                           else ds.sizes))
        rows.append(("points", (f"{n:,}" if n is not None else "?")
                     + (f" ({shape})" if shape else "")))
    if conv is not None:
        k, m = _share(conv)
        what = "parameters with both ends converged" if spec.mode == "tornado" else "points"
        rows.append(("converged", f"{100 * k / m:.1f}% ({k:,} of {m:,} {what})"))
    if "assumptions_hold" in ds and spec.mode != "tornado":
        k, m = _share(ds["assumptions_hold"])
        rows.append(("assumptions", f"{100 * k / m:.1f}% of points satisfy the model's "
                                    f"assumptions ({k:,} of {m:,})"))
    rate = ""
    if n and seconds > 0:
        r = n / seconds
        rate = f" ({r:,.0f} points/s" if r >= 100 else f" ({r:.3g} points/s"
        rate += ", compilation included)"
    rows.append(("wall time", f"{seconds:.1f} s{rate}"))
    rows.append(("output", str(output)))
    rows.append(("figures", ", ".join(map(str, figures)) if figures else "none"))
    return "\n".join(f"  {k:<12} {v}" for k, v in rows)


_FLAGS = (("overwrite=True", "--overwrite"), ("resume=True", "--resume"),
          ("max_memory=BYTES", "--max-memory SIZE"), ("max_disk=BYTES", "--max-disk SIZE"),
          ("chunk_size=", "--chunk-size "), ("store=...", "a .zarr --out"))


def _as_flags(text: str) -> str:
    """A library message with its argument names spelled as this command's flags."""
    for arg, flag in _FLAGS:
        text = text.replace(arg, flag)
    return text


class _interrupts:
    """Ctrl-C (SIGINT) stops the run at once, exit code 130, with ``message()`` (the resume
    hint).

    A Python signal handler runs only when the main thread returns to the interpreter, so a
    Ctrl-C during XLA compilation (a long C++ call) would wait for it, and a
    ``KeyboardInterrupt`` raised inside JAX's or Zarr's machinery (tracing, an event-loop
    thread) was seen to be swallowed or to crash the process at exit. Instead the signal's
    wake-up byte (``signal.set_wakeup_fd``, written by the C-level handler the moment the
    signal arrives) wakes a watcher thread, which waits until no store is being created or
    chunk written (:data:`jaxgames._sweep.STORE_LOCK`: finished chunks stay complete and
    marked), prints ``message`` and ends the process with ``os._exit(130)``: no unwinding
    through compiled code, no interpreter teardown with XLA threads running. Only in the main
    thread (elsewhere Ctrl-C keeps its default behaviour), and not where SIGINT is ignored.
    """

    def __init__(self, message: Callable[[], str]):
        self.message = message  # may be replaced while running (the sweep's resume hint)

    def __enter__(self):
        # the main thread only; and SIGINT ignored by the parent (a background job of a
        # script) stays ignored, as Python itself leaves it
        self.active = (threading.current_thread() is threading.main_thread()
                       and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN)
        if not self.active:
            return self
        r, w = os.pipe()
        os.set_blocking(w, False)
        self.fds = (r, w)
        self.old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        self.old_handler = signal.signal(signal.SIGINT, lambda *_: None)  # the watcher acts
        threading.Thread(target=self._watch, args=(r,), daemon=True,
                         name="jaxgames-sigint").start()
        return self

    def _watch(self, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, 64)
            except OSError:  # closed on exit from the block
                return
            if not data:
                return
            if signal.SIGINT in data:
                # held while a store is created or a chunk written (nothing to wait for if
                # the sweep engine is not loaded; importing it here could deadlock)
                engine = sys.modules.get("jaxgames._sweep")
                lock = getattr(engine, "STORE_LOCK", None)
                if lock is not None:
                    lock.acquire()
                try:
                    try:
                        text = self.message()
                    except Exception:  # noqa: BLE001 - the exit must happen regardless
                        text = "jaxgames: interrupted"
                    sys.stdout.flush()
                    sys.stderr.write(f"\n{text}\n")
                    sys.stderr.flush()
                finally:
                    os._exit(130)

    def __exit__(self, *exc):
        if self.active:
            signal.set_wakeup_fd(self.old_fd)
            signal.signal(signal.SIGINT, self.old_handler)
            os.close(self.fds[1])
            os.close(self.fds[0])
        return False


def _sweep(args: argparse.Namespace) -> int:
    from jaxgames.sweepfile import SweepFileError, load_sweep

    prog = "jaxgames sweep"
    if args.resume and args.overwrite:
        raise _UsageError("--resume and --overwrite exclude each other")
    if args.cores > 1:  # before any JAX computation (the file's checks compute nothing)
        from jaxgames._devices import use_cpu_cores

        use_cpu_cores(args.cores)
    try:
        spec = load_sweep(args.file, max_memory=args.max_memory, max_disk=args.max_disk)
    except SweepFileError as exc:
        raise _UsageError(_as_flags(str(exc))) from None
    options = dict(out=args.out, resume=args.resume, overwrite=args.overwrite,
                   chunk_size=args.chunk_size, dask=args.dask, figures=args.figures)
    try:
        output = spec.check_run_options(**options, cli=True)
    except SweepFileError as exc:
        raise _UsageError(str(exc)) from None
    solve = " + ".join(spec.solve)
    size = f"{spec.n_points:,} points, " if spec.mode in ("axes", "design") else ""
    if size and spec.replications:
        size = f"{spec.n_points:,} points x {spec.replications:,} replications, "
    print(f"{prog}: {args.file}: {spec.model}.{solve} ({size}[{spec.mode}], {spec.dtype}) -> "
          f"{output}", file=sys.stderr, flush=True)
    _enable_compilation_cache(args)
    def interrupted() -> str:  # said when Ctrl-C stops the run
        from jaxgames._sweep import is_jaxgames_store

        if spec.streamed(output) and is_jaxgames_store(output):
            return (f"{prog}: interrupted; the finished chunks are kept in {output}: run "
                    "again with --resume")
        return f"{prog}: interrupted (nothing was written to {output})"

    if getattr(args, "interrupts", None) is not None:
        args.interrupts.message = interrupted
    t0 = time.perf_counter()
    ds = spec.run(**options, progress=not args.no_progress)
    seconds = time.perf_counter() - t0
    figures = list(spec.figure_paths(out=args.out, figures=args.figures).values())
    print(f"{prog}: {args.file} done")
    print(_summary(spec, ds, seconds, output, figures))
    return 0


# ----------------------------------------------------------------------------- plot


@functools.cache
def _plot_schema() -> tuple[dict[str, set[str]], dict[str, tuple[str, ...]]]:
    """The flags each ``--kind`` takes and needs: the keys of a sweep file's ``[[figure]]``
    of that kind (one schema, :mod:`jaxgames.sweepfile`), spelled as flags (``outputs`` ->
    ``--var``); ``sobol`` (sensitivity datasets only) takes ``--output``."""
    from jaxgames.sweepfile import _FIGURE_KEYS, _FIGURE_REQUIRED

    def flag(key: str) -> str:
        return {"outputs": "var"}.get(key, key)

    flags = {k: {flag(key) for key in keys} for k, keys in _FIGURE_KEYS.items()}
    required = {k: tuple(flag(key) for key in keys) for k, keys in _FIGURE_REQUIRED.items()}
    flags["sobol"], required["sobol"] = {"output"}, ("output",)
    return flags, required


_PLOT_FLAG_TEXT = {"sharey": "--sharey/--no-sharey",  # flags not spelled --NAME
                   "contours": "--contours/--no-contours"}
_ONE_WAY_X = ("relative", "value")


def _open_dataset(path: Path):
    import xarray as xr

    if not path.exists():
        raise _UsageError(f"{path}: no such dataset")
    if path.suffix == ".zarr":
        from jaxgames._sweep import _open_store

        return _open_store(path)
    if path.suffix == ".nc":
        return xr.open_dataset(path, engine="h5netcdf")
    raise _UsageError(f"{path}: expected a .zarr store or a .nc file")


def _parse_sel(ds, items: list[str]) -> dict:
    import numpy as np

    sel = {}
    for item in items:
        name, eq, text = item.partition("=")
        name = name.strip()
        if not eq or not name or not text.strip():
            raise _UsageError(f"--sel {item!r}: expected NAME=VALUE, e.g. --sel D_J=1e7")
        if name not in ds.dims:
            raise _UsageError(f"--sel {item!r}: {name!r} is not a dimension of the dataset; "
                              f"its dimensions are {', '.join(map(str, ds.dims))}")
        coord = ds[name]
        if np.issubdtype(coord.dtype, np.number):
            try:
                value = float(text)
            except ValueError:
                raise _UsageError(f"--sel {item!r}: {text!r} is not a number") from None
        else:
            value = text.strip()
            if value not in [str(v) for v in coord.values]:
                raise _UsageError(f"--sel {item!r}: {value!r} is not a value of {name}")
        sel[name] = value
    return sel


def _parse_labels(items: list[str]) -> dict:
    """``VALUE=TEXT`` items as ``{category: text}`` (categories: integers, true, false)."""
    labels: dict = {}
    for item in items:
        value, eq, text = item.partition("=")
        value = value.strip()
        if not eq or not value or not text.strip():
            raise _UsageError(f"--labels {item!r}: expected VALUE=TEXT, e.g. --labels 0=solved "
                              "'4=invalid input'")
        if value.lower() in ("true", "false"):
            labels[value.lower() == "true"] = text.strip()
            continue
        try:
            labels[int(value)] = text.strip()
        except ValueError:
            raise _UsageError(f"--labels {item!r}: the category {value!r} is not an integer "
                              "or true/false") from None
    return labels


def _names(flag: str, text: str) -> list[str]:
    """A comma-separated list of variable names (``--var y_r,y_ss``)."""
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise _UsageError(f"--{flag} {text!r}: expected a name or comma-separated names")
    return names


def _levels(text: str) -> int | tuple[float, ...]:
    """``--levels 8`` (a number of contour levels) or ``--levels 0.1,0.2,0.5`` (increasing)."""
    try:
        if "," not in text:
            n = int(text)
            if n < 1:
                raise ValueError
            return n
        levels = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise _UsageError(f"--levels {text!r}: expected a positive integer or increasing "
                          "comma-separated numbers") from None
    if any(b <= a for a, b in zip(levels, levels[1:], strict=False)):
        raise _UsageError(f"--levels {text!r}: contour levels must be increasing")
    return levels


def _draw_or_usage(draw, *args, **kwargs):
    """A plots helper's ``ValueError`` (data that does not fit the figure) is a usage error."""
    try:
        return draw(*args, **kwargs)
    except ValueError as exc:  # e.g. region_map of a continuous variable
        raise _UsageError(str(exc)) from None


def _check_plot_flags(args: argparse.Namespace) -> None:
    """The flags ``--kind`` takes and needs (the keys of its ``[[figure]]``)."""
    kind = args.kind
    flags, required = _plot_schema()
    given = {k for k in set().union(*flags.values()) if getattr(args, k) not in (None, [])}
    extra = sorted(given - flags[kind])
    if extra:
        raise _UsageError(f"--kind {kind} does not take "
                          f"{', '.join(_PLOT_FLAG_TEXT.get(e, '--' + e) for e in extra)}")
    missing = [k for k in required[kind] if getattr(args, k) is None]
    if missing:
        raise _UsageError(f"--kind {kind} needs {', '.join('--' + m for m in missing)}")


def _dataset_mode(ds) -> str:
    """The study a dataset holds, as a sweep file names it: one-way datasets have dims
    ``(parameter, step)``, tornado datasets ``(output, parameter)``, grids their axes."""
    if "parameter" in ds.dims and "step" in ds.dims:
        return "oneway"
    if "output" in ds.dims and "parameter" in ds.dims:
        return "tornado"
    return "axes"


def _figure_table(args: argparse.Namespace, ds) -> dict:
    """The ``[[figure]]`` table the flags spell: the sweep file's keys (``--var`` is
    ``outputs`` for the one-way kinds), values as TOML would hold them."""
    from jaxgames.sweepfile import _FIGURE_KEYS

    kind = args.kind
    table: dict = {"kind": kind, "path": args.png}
    for key in _FIGURE_KEYS[kind]:
        value = getattr(args, "var" if key == "outputs" else key)
        if value is None or value == []:
            continue
        if (key == "var" and kind == "line") or key in ("outputs", "xmarks"):
            value = _names("var" if key == "outputs" else key, value)
        elif key == "sel":
            value = _parse_sel(ds, value)
        elif key == "labels":
            value = {str(k).lower(): text for k, text in _parse_labels(value).items()}
        elif key == "levels":
            value = _levels(value)
            value = list(value) if isinstance(value, tuple) else value
        table[key] = value
    for name in table.get("outputs", ()):  # an element "q[1]" must exist
        if name.endswith("]") and name.split("[")[0] in ds.data_vars:
            from jaxgames._contract import output_element

            _draw_or_usage(output_element, ds, name)
    return table


def _plot(args: argparse.Namespace) -> int:
    """Draw one figure of a dataset: the flags make a sweep file's ``[[figure]]`` table,
    checked by the sweep file's figure parser against the dataset (messages name the flags)
    and drawn by the same function as the figures of a sweep file."""
    from jaxgames import plots
    from jaxgames.sweepfile import FigureContext, SweepFileError, _draw, _FigureParser

    _check_plot_flags(args)
    if Path(args.png).suffix.lower() not in (".png", ".pdf", ".svg"):
        raise _UsageError(f"--png {args.png}: expected a .png (or .pdf, .svg) path")
    ds = _open_dataset(Path(args.dataset))
    if args.kind == "sobol":
        if "output" not in ds.dims:
            raise _UsageError(f"{args.dataset} is not a sobol dataset (no 'output' dimension)")
        outputs = [str(v) for v in ds["output"].values]
        if args.output not in outputs:
            raise _UsageError(f"--output {args.output}: not in the dataset; its outputs are "
                              f"{', '.join(outputs)}")
        fig = _draw_or_usage(plots.sobol_bars, ds, args.output)
    else:
        table = _figure_table(args, ds)
        ctx = FigureContext.of_dataset(ds, _dataset_mode(ds))
        try:
            spec = _FigureParser(args.dataset, ctx, None).parse(table)
        except SweepFileError as exc:
            raise _UsageError(f"{exc.key}: {exc.reason}" if exc.key else str(exc)) from None
        fig = _draw_or_usage(_draw, spec, ds)
    path = plots.save(fig, Path(args.png))
    print(f"figure written to {path}")
    return 0


# ----------------------------------------------------------------------------- parser


def _add_sweep_parser(sub) -> None:
    """``jaxgames sweep``: its flags."""
    sweep = sub.add_parser(
        "sweep",
        help="run a sweep file: solve a model over a grid, design, one-way or tornado study",
        description="Check the sweep file strictly (any error: exit code 2 and one line "
        "naming the key), solve the model at every point with a progress bar, write the "
        "dataset (.zarr streamed and resumable, or .nc at the end) and the file's figures, "
        "and print a summary (points, converged share, wall time, output). The file format "
        "is documented in sweeps/README.md and jaxgames.sweepfile. Relative paths in the "
        "file are relative to the current directory. Exit codes: 0 done, 1 the run failed, "
        "2 bad sweep file or options.",
    )
    sweep.add_argument("file", metavar="FILE", help="the sweep file (TOML)")
    sweep.add_argument("--out", metavar="PATH",
                       help="write the dataset to PATH (.zarr or .nc) instead of the file's "
                       "output")
    sweep.add_argument("--resume", action="store_true",
                       help="continue an interrupted .zarr sweep: finished chunks are kept, "
                       "the others solved")
    sweep.add_argument("--overwrite", action="store_true",
                       help="replace an existing output (otherwise an existing output is an "
                       "error)")
    sweep.add_argument("--chunk-size", metavar="N", type=_positive_int,
                       help="points per compiled batch (overrides the file's chunk_size; "
                       "peak memory grows with it)")
    sweep.add_argument("--dask", metavar="ADDRESS",
                       help="solve the chunks on a dask.distributed cluster at this scheduler "
                       "address (e.g. tcp://host:8786); needs a .zarr output")
    sweep.add_argument("--no-progress", action="store_true",
                       help="do not show the progress bar")
    sweep.add_argument("--figures", metavar="DIR",
                       help="write the file's figures into DIR (by default they follow "
                       "--out: the directory of PATH; without --out the paths in the file)")
    sweep.add_argument("--max-memory", metavar="SIZE", type=_size,
                       help="memory the study may use, e.g. 64GB (default: the memory "
                       "available now; overrides the file's max_memory). The study's memory "
                       "and disk are estimated before anything runs; one that does not fit "
                       "is refused")
    sweep.add_argument("--max-disk", metavar="SIZE", type=_size,
                       help="disk a .zarr output may take, e.g. 2TB (default: the free space "
                       "of its file system; overrides the file's max_disk)")
    sweep.add_argument("--cores", metavar="N", type=_positive_int, default=1,
                       help="on the CPU, split each chunk's tiles over N cores (JAX sees N CPU "
                       "devices, jaxgames.use_cpu_cores; default 1; the values of one core, "
                       "up to the last bits for models whose tile width matters)")
    sweep.add_argument("--no-compilation-cache", action="store_true", help=_NO_CACHE_HELP)
    sweep.set_defaults(func=_sweep, subparser=sweep)


def _add_plot_parser(sub) -> None:
    """``jaxgames plot``: its flags, the keys of a sweep file's ``[[figure]]``."""
    plot = sub.add_parser(
        "plot",
        help="draw a figure (heatmap, region map, lines, one-way, tornado, Sobol) of a dataset",
        description="Open a dataset written by `jaxgames sweep` or the sensitivity functions "
        "(.zarr or .nc), draw one figure with jaxgames.plots and save it. The kinds and their "
        "options are those of a sweep file's [[figure]] (sweeps/README.md). Flags a kind does "
        "not take are errors. Exit code 2 if the dataset lacks the variable or dimensions "
        "asked for.",
    )
    plot.add_argument("dataset", metavar="DATASET", help="a .zarr store or .nc file")
    plot.add_argument("--kind", required=True, choices=tuple(_plot_schema()[0]),
                      help="heatmap / region_map: a variable over two sweep dimensions "
                      "(region_map for integer or boolean ones such as status); line: "
                      "variables along one sweep dimension; one_way: one-way sensitivity "
                      "curves; one_way_regions: one-way curves over a background coloured by "
                      "a categorical variable (--background); tornado: a tornado diagram; "
                      "sobol: Sobol index bars")
    plot.add_argument("--var", metavar="V",
                      help="variable to draw (heatmap, region_map); for line the variable or "
                      "comma-separated variables (one panel); for one_way and one_way_regions "
                      "the output or comma-separated outputs, e.g. y_r,y_ss (one_way: same "
                      "units; one_way_regions: units may differ)")
    plot.add_argument("--x", metavar="X", help="dimension along the x axis (heatmap, "
                      "region_map, line); for one_way and one_way_regions: relative (the "
                      "default, value / base value) or value")
    plot.add_argument("--y", metavar="Y", help="dimension along the y axis (heatmap, "
                      "region_map)")
    plot.add_argument("--sel", metavar="NAME=VALUE", nargs="+", action="extend",
                      help="fix a further dimension at (the value nearest) VALUE, e.g. "
                      "--sel D_J=1e7 p=0.3 (heatmap, region_map, line)")
    plot.add_argument("--facet", metavar="DIM",
                      help="a third dimension: one panel per value of it, side by side, "
                      "sharing one colour scale and one set of contour levels (heatmap)")
    plot.add_argument("--by", metavar="DIM",
                      help="another dimension: one line per value of it, one colour each "
                      "(line)")
    plot.add_argument("--xmarks", metavar="V,...",
                      help="comma-separated variables that are thresholds of --x (e.g. rho): "
                      "a dotted vertical line where x crosses each, its value in the legend "
                      "(line)")
    plot.add_argument("--background", metavar="V",
                      help="integer or boolean variable (a case, a regime, status, ...) whose "
                      "categories colour the x axis behind the lines (one_way_regions)")
    plot.add_argument("--labels", metavar="VALUE=TEXT", nargs="+", action="extend",
                      help="legend text of a category, e.g. --labels 0=solved '4=invalid "
                      "input' or true=deterred (region_map, one_way_regions)")
    plot.add_argument("--sharey", action=argparse.BooleanOptionalAction,
                      help="one y axis for all panels, or (--no-sharey) one per panel "
                      "(one_way: default shared; one_way_regions: default one per panel)")
    plot.add_argument("--reduce", metavar="mean",
                      help="mean: draw the mean over the replication dim of a stochastic "
                      "sweep (lines shade its 95%% confidence interval) instead of fixing one "
                      "replication with --sel (heatmap, line)")
    plot.add_argument("--output", metavar="NAME",
                      help="the output to draw (tornado, sobol)")
    plot.add_argument("--contours", action=argparse.BooleanOptionalAction,
                      help="labelled contour lines (heatmap; default on)")
    plot.add_argument("--levels", metavar="N|L1,L2,...",
                      help="contour levels: a number of levels, or increasing comma-separated "
                      "levels (heatmap)")
    plot.add_argument("--top", metavar="N", type=_positive_int,
                      help="draw only the N largest swings (tornado)")
    plot.add_argument("--png", metavar="PATH", required=True,
                      help="image file to write (.png; .pdf and .svg work too)")
    plot.set_defaults(func=_plot, subparser=plot)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jaxgames",
        description="Vectorised equilibria of supply-chain and cyber-security games.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    _add_sweep_parser(sub)
    _add_plot_parser(sub)

    fig3 = sub.add_parser(
        "figure3",
        help="reproduce Figure 3 of Bakshi & Kleindorfer (2009) next to the printed values",
        description="Solve the five examples of Figure 3 with the engine (float64) and print "
        "every computed number next to the printed one. Exit code 1 if any differs.",
    )
    fig3.add_argument("--png", metavar="PATH", help="also save a bar chart of the costs as PNG")
    fig3.add_argument("--no-compilation-cache", action="store_true", help=_NO_CACHE_HELP)
    fig3.set_defaults(func=_figure3, subparser=fig3)
    info = sub.add_parser(
        "info", help="show jaxgames/jax/dependency versions and the available devices",
        description="Print the versions of jaxgames, Python, JAX and the (optional) "
        "dependencies, whether float64 is enabled, and the devices JAX sees.")
    info.set_defaults(func=_info, subparser=info)
    return parser


_COMMANDS = ("sweep", "plot", "figure3", "info")


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C ends the command at once (exit code 130) from here on, before anything heavy is
    # imported: parsing a size imports the sweep engine, and with it jax, whose import
    # installs a garbage-collection hook in which a KeyboardInterrupt is swallowed (the run
    # went on and exited 0). See _interrupts.
    words = (sys.argv[1:] if argv is None else argv)[:1]
    command = f"jaxgames {words[0]}" if words and words[0] in _COMMANDS else "jaxgames"
    guard = _interrupts(lambda: f"{command}: interrupted")
    try:
        with guard:
            parser = build_parser()
            args, extra = parser.parse_known_args(argv)
            command = f"jaxgames {args.command}"
            if extra:  # reported by the subcommand, whose --help lists its flags
                args.subparser.error(f"unrecognized arguments: {' '.join(extra)}")
            args.interrupts = guard  # the sweep replaces the message by its resume hint
            return args.func(args)
    except KeyboardInterrupt:  # SIGINT ignored by the parent, or raised by hand
        print(f"\n{command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        sys.stderr.close()
        return 0
    except _UsageError as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # one clear line, non-zero exit
        msg = str(exc).strip().splitlines()
        text = msg[0] if msg else type(exc).__name__
        if command == "jaxgames sweep":  # the library's words for its arguments, as flags
            text = _as_flags(text)
        print(f"{command}: error: {type(exc).__name__}: {text}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
