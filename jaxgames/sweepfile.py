r"""Sweep files: a parameter study described in TOML, checked strictly before anything runs.

A sweep file names a model, the function(s) to solve, a base point, *one* way to vary the
parameters (a grid, a sample design, a one-way study or a tornado study), where to write the
dataset and, optionally, figures to draw from it::

    jaxgames sweep sweeps/FILE.toml                    # the command line
    jaxgames.sweepfile.load_sweep(path).run()          # the same from Python

:func:`load_sweep` reads the file with :mod:`tomllib` and checks *everything* -- unknown keys at
any level, names of models, solve functions, parameters and outputs, types, finiteness, the
parameter domains of the model -- and raises :class:`SweepFileError` (a ``ValueError``) whose
message names the file and the dotted key, e.g.
``sweeps/x.toml: axes.f: value 1.5 is outside the allowed range [0, 1] of parameter f``.
Nothing is compiled or solved while loading (output names are read from the solve functions'
NamedTuple return annotations). :meth:`SweepSpec.run` then runs the sweep in stages, each a
function of its own: check the options (:meth:`SweepSpec.check_run_options`), solve
(:func:`run_study`), save (:func:`save_dataset`) and draw (:func:`draw_figures`). The figures
are checked by one parser, :class:`_FigureParser`, against a :class:`FigureContext`: built
from the file before it runs, or from a dataset by ``jaxgames plot``, whose flags spell the same
keys.

Schema
------
Types: *number* = a TOML integer or float (not a boolean), finite; *int* = a TOML integer (not a
float, not a boolean); *name* = a string; lists are TOML arrays. ``[table]`` means a TOML table
(``[base]`` on its own line, or inline ``{ ... }``). Keys not listed here are errors.

Top level:

=================  ========  ==============================================================
key                required  meaning
=================  ========  ==============================================================
``model``          yes       a model of :data:`jaxgames.models.REGISTRY`, e.g.
                             ``"bakshi_kleindorfer"``
``solve``          yes       a name of the model's ``SOLVE_FUNCTIONS`` (``"noncooperative"``),
                             or a non-empty list of them (``["noncooperative",
                             "first_best"]``): then every output is prefixed with its
                             function (``noncooperative_y_r``, ``first_best_W``) and
                             unprefixed ``converged``, ``status`` (the first failure) and
                             ``assumptions_hold`` summarise them (:func:`jaxgames.combine`)
``output``         yes       path of the dataset: ``*.zarr`` (a Zarr store written chunk by
                             chunk while the sweep runs, resumable) or ``*.nc`` (netCDF,
                             written once at the end)
``dtype``          no        ``"float64"`` (default) or ``"float32"``
``chunk_size``     no        int >= 1, points per compiled batch (default: the engine's)
``description``    no        free text
``derivatives``    no        list of outputs to differentiate (implicit derivatives), adding
                             variables ``d{output}_d{parameter}``; only real-valued model
                             outputs (those with units, not diagnostics or flags)
``wrt``            no        list of parameters to differentiate with respect to (default:
                             all); needs ``derivatives``
``elasticities``   no        boolean; also add ``elasticity_{output}_{parameter}``; needs
                             ``derivatives``
``replications``   no        int >= 1 (default 1); stochastic solve functions only (the
                             model's ``STOCHASTIC``): a last dim ``replication``
``seed``           no        int in [0, 2**32) (default 0), stochastic solve functions only:
                             replication ``r`` uses ``fold_in(key(seed), r)`` in every
                             scenario (common random numbers)
``micro_batch``    no        int >= 1, points of a chunk solved as one vmapped group
                             (default, for every model: tiles of at most 1,024 points on
                             the CPU, one ``vmap`` over the chunk on an accelerator)
``max_memory``     no        the memory the study may use: an int (bytes) or a size string
                             (``"64GB"``, ``"512MiB"``); default: the memory available. The
                             study's memory and disk are estimated before any axis value or
                             design point is made; one that does not fit is refused, naming
                             ``axes`` or ``design.n``
``max_disk``       no        the disk a ``.zarr`` output may take, as ``max_memory`` (default:
                             the free space of its file system)
``[base]``         no        ``parameter = number``: overrides of the model's ``DEFAULT`` point
                             (a vector parameter: a list, or a number for every element; a
                             categorical parameter: a label)
``[axes]``         one of    a full-factorial grid (below)
``[design]``       these     a sample design (below)
``[oneway]``       four      a one-way sensitivity study (below)
``[tornado]``                a tornado study (below)
``[[figure]]``     no        any number of figures drawn after the sweep (below)
=================  ========  ==============================================================

``[axes]`` -- ``parameter = { ... }``, one entry per dimension, in file order; each is exactly
one of

* ``{ linspace = [lo, hi, n] }`` -- ``n`` (int >= 1) evenly spaced values, ends included;
* ``{ geomspace = [lo, hi, n] }`` -- ``n`` values evenly spaced in ``log``; ``lo`` and ``hi``
  non-zero and of one sign;
* ``{ values = [v1, v2, ...] }`` -- explicit values, non-empty, distinct.

A key is a parameter (``v``: every element of a vector parameter), one element of a vector
parameter (``"v[2]"``, quoted; the coordinate ``1..n`` or a label of the model's
``DIM_COORDS``), or a categorical parameter, which takes ``{ values = ["label", ...] }`` only.

``[design]`` -- a sample of points along one ``sample`` dimension (:mod:`jaxgames.design`):

* ``kind`` (required): ``"random"``, ``"latin_hypercube"`` or ``"sobol"``;
* ``n`` (required): int >= 1, the number of points; a power of 2 for ``"sobol"``;
* ``seed``: int >= 0 (default 0), recorded in the dataset;
* ``scramble``: boolean, ``"sobol"`` only (default true);
* ``bounds`` (required): ``parameter = [lo, hi]`` or ``[lo, hi, "log"]`` (uniform in ``log``;
  ``lo > 0``) or ``[lo, hi, "linear"]``, with ``lo < hi``.

``[oneway]`` -- :func:`jaxgames.sensitivity.one_way`: each parameter moved alone, the others
at the base point; dims ``(parameter, step)``:

* ``n``: int >= 2, steps per parameter (default: that of ``one_way``);
* either ``ranges = { parameter = [lo, hi], ... }`` (``[lo, hi, "log"]``: steps evenly
  spaced in ``log``, ``lo > 0``),
* or ``relative = [lo, hi]`` (factors of the base value, ``lo < hi``; ``[lo, hi, "log"]``:
  steps evenly spaced in ``log``, ``lo > 0``, e.g. ``[0.25, 4.0, "log"]`` puts the base value
  in the middle of an odd number of steps) with optional ``params = [...]`` (default: every
  parameter; none may have base value 0).

``[tornado]`` -- :func:`jaxgames.sensitivity.tornado`: each parameter set to its low and high
end, the others at the base point; dims ``(output, parameter)``:

* ``outputs`` (required): list of real-valued outputs;
* either ``ranges = { parameter = [lo, hi], ... }`` or ``relative = [lo, hi]`` with optional
  ``params``, as for ``[oneway]`` (``[lo, hi]`` only: a tornado has two ends, no steps).

One-way and tornado studies are computed in memory and written at the end (``.zarr`` or
``.nc``); streaming, ``--resume`` and ``--dask`` apply to ``[axes]`` and ``[design]`` sweeps.

``[[figure]]`` -- each one figure, drawn with :mod:`jaxgames.plots` after the sweep and saved:

* ``kind`` (required): ``"heatmap"``, ``"region_map"``, ``"line"`` (these three need
  ``[axes]``), ``"one_way"``, ``"one_way_regions"`` (these two need ``[oneway]``) or
  ``"tornado"`` (needs ``[tornado]``);
* ``path`` (required): the image file, ``.png``, ``.pdf`` or ``.svg``;
* ``title``: a string, replacing the plot's own title;
* ``heatmap`` (:func:`jaxgames.plots.heatmap`): ``var``, ``x``, ``y`` (required; ``x`` and
  ``y`` two different axes), ``sel``, ``contours`` (boolean, default true: labelled contour
  lines), ``levels`` (int: number of contour levels, or a list of increasing levels),
  ``facet`` (a third axis: one panel per value of it, side by side, with one colour scale and
  one set of contour levels), ``reduce`` (below);
* ``region_map`` (:func:`jaxgames.plots.region_map`): ``var`` (an integer or boolean
  variable: ``status``, ``converged``, ``assumptions_hold``, ``contract_exists``, ...), ``x``,
  ``y`` (required), ``sel``, ``labels`` (``{ "0" = "solved", "4" = "invalid input" }`` or
  ``{ "true" = "...", "false" = "..." }``);
* ``line`` (:func:`jaxgames.plots.lines`): ``var`` (a name, a list of names, or a table
  ``{ "panel title" = [names] }`` for one panel per entry), ``x`` (required), ``sel``, ``by``
  (another axis: one line per value of it, e.g. ``by = "k"``), ``xmarks`` (a list of
  real-valued variables that are thresholds of ``x``, e.g. ``["rho"]``: a dotted vertical line,
  with its value in the legend, where ``x`` crosses each);
* ``one_way`` (:func:`jaxgames.plots.one_way`): ``outputs`` (required; a name or a list of
  real-valued outputs with the same units), ``x`` (``"relative"``, the default, or
  ``"value"``), ``sharey`` (boolean, default true: one y axis for all panels; false: one per
  panel, for outputs whose scale changes much between parameters);
* ``one_way_regions`` (:func:`jaxgames.plots.one_way_regions`): one-way curves over a
  background coloured by a categorical variable: ``outputs`` (required; real-valued outputs,
  units may differ), ``background`` (required; an integer or boolean variable, e.g. a case or
  regime number), ``labels`` (legend texts of the categories, as for ``region_map``), ``x``,
  ``sharey`` (default false);
* ``tornado`` (:func:`jaxgames.plots.tornado`): ``output`` (required, one of
  ``tornado.outputs``), ``top`` (int >= 1: draw only the largest swings).

``sel = { parameter = value }`` fixes the axes that are not plotted (every such axis must be
fixed; ``facet`` and ``by`` count as plotted); ``value`` must be one of that axis's values.
Every figure marks points that did not converge, and points where the model's assumptions do
not hold (``assumptions_hold`` False: cross-hatched, or dashed on a line).

``var`` names a variable of the dataset: an output of the solve function(s) (``y_r``,
``converged``, ...; with several solve functions ``noncooperative_y_r``, ...) or a
derivative/elasticity variable requested above (``dy_r_dp``, ``elasticity_y_r_p``).

``reduce = "mean"`` (``heatmap`` and ``line``, a stochastic sweep with ``replications`` >= 2)
draws the mean over ``replication`` (:func:`jaxgames.summaries.mean`) instead of fixing one
replication with ``sel``; a line figure shades the 95% Student-t confidence interval of the
mean around each line (:func:`jaxgames.summaries.confidence_interval`). A point counts as
converged (and its assumptions as holding) only where every replication converged (holds).

``sel`` also fixes the dims an output has of its own (``OUTPUT_DIMS``: ``sel = { csc = 1 }``,
``sel = { agent = "R1" }``) and, for a stochastic solve function, ``replication``; the axis of
a categorical parameter is fixed by a label (``sel = { structure = "WH" }``). Tornado
``outputs`` and one-way figure ``outputs`` may name one element of an output with one dim of
its own, ``"q[1]"``.

Paths (``output``, figure ``path``) that are relative are taken relative to the current
working directory -- the directory you run ``jaxgames sweep`` from -- not to the sweep file.
``jaxgames sweep FILE --out PATH`` overrides ``output`` and puts the figures next to it (their
file names kept); ``--figures DIR`` puts them into ``DIR``. A figure that would replace a file
tracked by git is refused unless ``--figures`` names its directory.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import textwrap
import tomllib
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FigureContext", "FigureSpec", "SweepFileError", "SweepSpec", "draw_figures",
           "load_sweep", "run_study", "save_dataset"]

MODES = ("axes", "design", "oneway", "tornado")
DTYPES = ("float64", "float32")
FIGURE_KINDS = ("heatmap", "region_map", "line", "one_way", "one_way_regions", "tornado")
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")
DESIGN_KINDS = ("random", "latin_hypercube", "sobol")
REDUCTIONS = ("mean",)
REPLICATION = "replication"
#: The confidence of the band a line figure with ``reduce`` draws around the mean.
CONFIDENCE = 0.95

_TOP_KEYS = ("model", "solve", "output", "dtype", "chunk_size", "description", "derivatives",
             "wrt", "elasticities", "replications", "seed", "micro_batch", "max_memory",
             "max_disk", "base", *MODES, "figure")
#: Diagnostics every solve function returns; with several solve functions these summarise all.
_SUMMARY_OUTPUTS = ("converged", "status", "assumptions_hold")
_FIGURE_KEYS = {
    "heatmap": ("var", "x", "y", "sel", "contours", "levels", "facet", "reduce"),
    "region_map": ("var", "x", "y", "sel", "labels"),
    "line": ("var", "x", "sel", "by", "xmarks", "reduce"),
    "one_way": ("outputs", "x", "sharey"),
    "one_way_regions": ("outputs", "background", "labels", "x", "sharey"),
    "tornado": ("output", "top"),
}
_FIGURE_REQUIRED = {
    "heatmap": ("var", "x", "y"),
    "region_map": ("var", "x", "y"),
    "line": ("var", "x"),
    "one_way": ("outputs",),
    "one_way_regions": ("outputs", "background"),
    "tornado": ("output",),
}
_FIGURE_MODE = {"heatmap": "axes", "region_map": "axes", "line": "axes",
                "one_way": "oneway", "one_way_regions": "oneway", "tornado": "tornado"}


class SweepFileError(ValueError):
    """A sweep file that cannot be run; the message names the file and the dotted key."""

    def __init__(self, path: str | Path, key: str | None, message: str):
        self.path = str(path)
        self.key = key
        self.reason = message
        super().__init__(f"{path}: {key}: {message}" if key else f"{path}: {message}")


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """One ``[[figure]]`` entry; keys its kind does not use are ``None``/empty.

    ``var`` is a name (a tuple of names for a ``line`` figure or the ``outputs`` of a
    ``one_way``/``one_way_regions`` figure); ``x`` is an axis, or ``"relative"``/``"value"``
    for the one-way kinds. ``facet`` (heatmap) and ``by`` (line) are axes; ``xmarks`` are
    variables; ``background`` is a categorical variable; ``sharey`` is ``None`` where the kind's
    default applies.
    """

    kind: str
    path: Path
    title: str | None = None
    var: str | tuple[str, ...] | None = None
    x: str | None = None
    y: str | None = None
    sel: Mapping[str, float] = dataclasses.field(default_factory=dict)
    contours: bool = True
    levels: int | tuple[float, ...] | None = None
    labels: Mapping[Any, str] | None = None
    top: int | None = None
    facet: str | None = None
    by: str | None = None
    xmarks: tuple[str, ...] = ()
    background: str | None = None
    sharey: bool | None = None
    reduce: str | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class SweepSpec:
    """A checked sweep file. Build it with :func:`load_sweep`; run it with :meth:`run`.

    Attributes:
        path: the sweep file.
        model: the model's name; ``module`` is its module.
        solve: the solve function names (one, or several combined).
        output: the dataset path (``.zarr`` or ``.nc``), relative to the working directory.
        base: the base point, the model's ``Params``.
        mode: ``"axes"``, ``"design"``, ``"oneway"`` or ``"tornado"``.
        axes: ``{parameter: 1-D float array}`` for ``"axes"``, else ``None``.
        design: a :class:`jaxgames.design.Design` for ``"design"``, else ``None``.
        study: keyword arguments of ``sensitivity.one_way``/``tornado`` (``n``, ``ranges``,
            ``relative``, ``params``, ``outputs``) for those modes, else ``None``.
        dtype, chunk_size, description, derivatives, wrt, elasticities: as in the file.
        figures: the ``[[figure]]`` entries.
        replications, seed: replications of a stochastic solve function (``None``: not
            stochastic) and the seed of their common random numbers.
        micro_batch: points solved in lockstep inside a chunk (``None``: the sweep's default).
    """

    path: Path
    model: str
    solve: tuple[str, ...]
    output: Path
    base: Any
    mode: str
    axes: Mapping[str, np.ndarray] | None = None
    design: Any = None
    study: Mapping[str, Any] | None = None
    dtype: str = "float64"
    chunk_size: int | None = None
    description: str = ""
    derivatives: tuple[str, ...] = ()
    wrt: tuple[str, ...] | None = None
    elasticities: bool = False
    figures: tuple[FigureSpec, ...] = ()
    replications: int | None = None
    seed: int = 0
    micro_batch: int | None = None
    max_memory: int | None = None
    max_disk: int | None = None
    point_bytes: int = 0  # estimated bytes of one point's outputs (before solving)

    @property
    def module(self):
        from jaxgames.models import get_model

        return get_model(self.model)

    @property
    def n_points(self) -> int:
        """Parameter points of a grid or design (one-way/tornado: the study decides)."""
        if self.axes is not None:
            return math.prod(len(v) for v in self.axes.values())
        if self.design is not None:
            return self.design.size
        raise AttributeError(f"n_points is not known in advance for a {self.mode} study")

    def solve_function(self) -> Callable:
        """The function ``params -> outputs`` that is swept (several solve names combined)."""
        fns = {name: getattr(self.module, name) for name in self.solve}
        if len(fns) == 1:
            return next(iter(fns.values()))
        from jaxgames._sweep import combine

        return combine(fns)

    def run(self, *, out: str | Path | None = None, resume: bool = False,
            overwrite: bool = False, chunk_size: int | None = None, dask: Any = None,
            progress: bool = True, figures: str | Path | None = None):
        """Run the sweep, write the dataset and the figures, return the dataset.

        The stages, each its own function: check the options (:meth:`check_run_options`),
        solve (:func:`run_study`), save (:func:`save_dataset`), draw
        (:func:`draw_figures`). A grid or design sweep into a ``.zarr`` output streams every
        chunk to the store as it finishes (so it can be resumed) and returns the dataset
        opened lazily from it; a ``.nc`` output is written once at the end. One-way and
        tornado studies (a few hundred points) are computed in memory and written at the end
        in either format.

        Args:
            out: write the dataset here instead of ``output`` (``.zarr`` or ``.nc``); the
                figures follow it into its directory (unless ``figures`` is given).
            resume: continue an interrupted ``.zarr`` grid/design sweep (chunks already
                stored are kept).
            overwrite: replace an existing dataset.
            chunk_size: points per compiled batch, overriding the file's ``chunk_size``.
            dask: a ``dask.distributed`` scheduler address or ``Client``: chunks of a
                ``.zarr`` grid/design sweep are solved on that cluster.
            progress: show a progress bar.
            figures: a directory for the figures (each keeps its file name).

        Raises:
            SweepFileError: an option that does not fit the file (e.g. ``resume`` with a
                netCDF output, an existing output without ``resume``/``overwrite``, a figure
                that would replace a tracked file of a git checkout); raised before anything
                is computed.
        """
        output = self.check_run_options(out=out, resume=resume, overwrite=overwrite,
                                        chunk_size=chunk_size, dask=dask, figures=figures)
        ds = run_study(self, output, resume=resume, overwrite=overwrite,
                       chunk_size=chunk_size, dask=dask, progress=progress)
        save_dataset(self, ds, output, overwrite=overwrite)
        draw_figures(self.figures, ds, self.figure_paths(out=out, figures=figures))
        return ds

    def streamed(self, output: Path) -> bool:
        """Whether the sweep writes ``output`` chunk by chunk while it runs."""
        return output.suffix == ".zarr" and self.mode in ("axes", "design")

    def figure_paths(self, *, out: str | Path | None = None,
                     figures: str | Path | None = None) -> dict[int, Path]:
        """Where each ``[[figure]]`` goes: into ``figures`` if given, else next to ``out`` if
        given, else the file's ``path`` (relative to the working directory)."""
        if figures is not None:
            return {i: Path(figures) / f.path.name for i, f in enumerate(self.figures)}
        if out is not None:
            return {i: Path(out).parent / f.path.name for i, f in enumerate(self.figures)}
        return {i: f.path for i, f in enumerate(self.figures)}

    def check_run_options(self, *, out: str | Path | None = None, resume: bool = False,
                          overwrite: bool = False, chunk_size: int | None = None,
                          dask: Any = None, figures: str | Path | None = None,
                          cli: bool = False) -> Path:
        """The output path :meth:`run` would write; :class:`SweepFileError` for options that
        do not fit the file (as :meth:`run` raises them, before any work): the output and
        figure paths (writable; an existing output only with ``resume``/``overwrite``, and
        replaced only if jaxgames wrote it) and the study's estimated memory and disk.
        ``cli``: name command-line flags (``--overwrite``) in the messages, not arguments."""
        opt = functools.partial(_spell, cli)
        output, key = self.output, "output"
        if out is not None:
            output, key = Path(out), opt("--out", "out")
            if output.suffix not in (".zarr", ".nc"):
                raise SweepFileError(self.path, key,
                                     f"{out} must end in .zarr (Zarr store) or .nc (netCDF)")
        self._check_modes(output, key, resume, overwrite, dask, opt)
        self._check_existing(output, key, resume, overwrite, opt)
        if chunk_size is not None and (isinstance(chunk_size, bool)
                                       or not isinstance(chunk_size, int) or chunk_size < 1):
            raise SweepFileError(self.path, opt("--chunk-size", "chunk_size"),
                                 f"must be a positive integer, got {chunk_size!r}")
        for i, path in self.figure_paths(out=out, figures=figures).items():
            self._check_figure_path(path, f"figure[{i}].path", figures is not None, opt)
        self.check_size(output, chunk_size, cli=cli)
        return output

    def _check_modes(self, output: Path, key: str, resume: bool, overwrite: bool, dask,
                     opt: Callable[[str, str], str]) -> None:
        """``resume`` and ``dask``: a streamed (``.zarr`` grid or design) sweep only."""
        if resume and overwrite:
            raise SweepFileError(self.path, key, f"{opt('--resume', 'resume')} and "
                                                 f"{opt('--overwrite', 'overwrite')} exclude "
                                                 "each other")
        if not resume and dask is None:
            return
        what = opt("--resume", "resume") if resume else opt("--dask", "dask")
        if self.mode not in ("axes", "design"):
            raise SweepFileError(self.path, self.mode,
                                 f"a {self.mode} study is computed in memory: {what} applies "
                                 "to [axes] and [design] sweeps only")
        if output.suffix != ".zarr":
            raise SweepFileError(self.path, key,
                                 f"{output} is netCDF, written at the end; {what} needs a "
                                 ".zarr output")

    def _check_existing(self, output: Path, key: str, resume: bool, overwrite: bool,
                        opt: Callable[[str, str], str]) -> None:
        """An existing output: resumed (a jaxgames store) or replaced (a jaxgames dataset),
        never silently; a new one: in a writable directory."""
        from jaxgames import _sweep

        exists = output.exists() or output.is_symlink()
        if exists and not (resume or overwrite):
            raise SweepFileError(self.path, key,
                                 f"{output} exists; resume it "
                                 f"({opt('--resume', 'resume=True')}) or replace it "
                                 f"({opt('--overwrite', 'overwrite=True')})")
        if resume and not exists:
            raise SweepFileError(self.path, key,
                                 f"{output} does not exist, so there is nothing to resume; "
                                 f"run without {opt('--resume', 'resume=True')} to start the "
                                 "sweep")
        if resume and not _sweep.is_jaxgames_store(output):
            raise SweepFileError(self.path, key, f"{output} is not a jaxgames Zarr store, so "
                                                 "it cannot be resumed")
        if overwrite and exists:
            try:
                _check_replaceable(output, opt("--overwrite", "overwrite=True"))
            except FileExistsError as exc:
                raise SweepFileError(self.path, key, str(exc)) from None
        bad = _sweep._writable_dir(output) if not exists else (
            None if os.access(output, os.W_OK) else output)
        if bad is not None:
            raise SweepFileError(self.path, key, f"cannot write {output}: {bad} is not a "
                                                 "writable directory")

    def _check_figure_path(self, path: Path, key: str, explicit: bool,
                           opt: Callable[[str, str], str]) -> None:
        """A figure path: a writable file, not a tracked file of a git checkout (unless
        ``explicit``: the user named its directory with ``--figures``)."""
        from jaxgames import _sweep

        if path.is_dir():
            raise SweepFileError(self.path, key, f"{path} is a directory, not an image file")
        bad = (_sweep._writable_dir(path) if not path.exists() else
               None if os.access(path, os.W_OK) else path)
        if bad is not None:
            where = f" (write the figures elsewhere with {opt('--figures', 'figures=')} DIR)"
            raise SweepFileError(self.path, key, f"cannot write the figure {path}: {bad} "
                                                 f"is not writable{where}")
        if not explicit and path.exists() and _tracked(path):
            raise SweepFileError(
                self.path, key,
                f"{path} is a tracked file of a git checkout and is not replaced "
                "silently; write the figures elsewhere (--out PATH puts them next to "
                "the dataset, --figures DIR into DIR), or name its directory with "
                f"--figures {path.parent} to replace it")

    def size(self, output: Path | None = None, chunk_size: int | None = None):
        """The study's estimated memory and disk (:func:`jaxgames._sweep.estimate_size`),
        from the file alone; ``None`` for one-way and tornado studies (small, in memory)."""
        from jaxgames import _sweep

        if self.mode not in ("axes", "design"):
            return None
        return _estimate(self.n_points, self.point_bytes, self.n_values,
                         chunk_size or self.chunk_size,
                         output if self.streamed(output or self.output) else None,
                         _sweep)

    @property
    def n_values(self) -> int:
        """Swept values held in memory (every axis value, or every design coordinate)."""
        if self.axes is not None:
            return sum(len(v) for v in self.axes.values())
        return self.design.size * len(self.design.names) if self.design is not None else 0

    def check_size(self, output: Path | None = None, chunk_size: int | None = None,
                   cli: bool = False) -> None:
        """:class:`SweepFileError` naming ``axes`` or ``design.n`` if the study's estimated
        memory or disk exceeds its limit (``max_memory``/``max_disk``, by default what the
        machine has)."""
        size = self.size(output, chunk_size)
        if size is not None:
            _check_limits(self.path, "axes" if self.mode == "axes" else "design.n", size,
                          self.max_memory, self.max_disk,
                          output if self.streamed(output or self.output) else None, cli)


def _spell(cli: bool, flag: str, arg: str) -> str:
    """An option as the user gave it: a command-line ``flag`` or an API ``arg``."""
    return flag if cli else arg


def _check_replaceable(output: Path, flag: str) -> None:
    """``FileExistsError`` unless ``output`` is a dataset jaxgames wrote (a marked Zarr store
    or a netCDF file with ``jaxgames_version``): ``flag`` replaces only those."""
    from jaxgames import _sweep

    if output.suffix == ".zarr" or output.is_dir():
        _sweep.check_replaceable(output, flag)
    elif not _is_jaxgames_netcdf(output):
        raise FileExistsError(f"{output} exists and is not a netCDF file written by jaxgames; "
                              f"{flag} replaces only jaxgames datasets. Move or delete it "
                              "yourself, or choose another path")


# ----------------------------------------------------------------------------- stages


def run_study(spec: SweepSpec, output: Path, *, resume: bool = False, overwrite: bool = False,
              chunk_size: int | None = None, dask: Any = None, progress: bool = True):
    """Solve the study of ``spec`` with :func:`jaxgames.sweep` (grid, design; streamed into
    ``output`` if :meth:`SweepSpec.streamed`) or :mod:`jaxgames.sensitivity` (one-way,
    tornado); the dataset."""
    kwargs = dict(
        derivatives=spec.derivatives, wrt=spec.wrt, elasticities=spec.elasticities,
        chunk_size=chunk_size if chunk_size is not None else spec.chunk_size,
        progress=progress, dtype=spec.dtype,
    )
    if spec.streamed(output):
        kwargs.update(store=str(output), resume=resume, overwrite=overwrite, dask=dask)
    if spec.replications is not None:
        kwargs.update(replications=spec.replications, seed=spec.seed)
    if spec.micro_batch is not None:
        kwargs.update(micro_batch=spec.micro_batch)
    fn = spec.solve_function()
    if spec.mode in ("axes", "design"):
        from jaxgames._sweep import sweep

        points = dict(spec.axes) if spec.mode == "axes" else spec.design
        return sweep(fn, spec.base, points, max_memory=spec.max_memory,
                     max_disk=spec.max_disk, **kwargs)
    from jaxgames import sensitivity

    study = getattr(sensitivity, "one_way" if spec.mode == "oneway" else "tornado")
    return study(fn, spec.base, **spec.study, **kwargs)


def save_dataset(spec: SweepSpec, ds, output: Path, *, overwrite: bool = False) -> None:
    """Write ``ds`` to ``output`` (``.zarr`` or ``.nc``) unless the sweep already streamed
    it there; ``overwrite`` replaces only a dataset that jaxgames wrote."""
    if spec.streamed(output):
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix == ".zarr":
        from jaxgames._sweep import _labels_as_object, remove_store

        if overwrite:  # only a store that jaxgames wrote (checked before the run too)
            remove_store(output)
        _labels_as_object(ds).to_zarr(output, mode="w-", consolidated=False)
        return
    if overwrite and output.exists() and not _is_jaxgames_netcdf(output):
        raise FileExistsError(f"{output} is not a netCDF file written by "
                              "jaxgames; overwrite=True replaces only those")
    # written next to it and renamed: an interrupted write leaves no partial file
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        ds.to_netcdf(tmp, engine="h5netcdf")
        if output.exists() and not overwrite:
            raise FileExistsError(f"{output} exists")
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)


def draw_figures(figures: Sequence[FigureSpec], ds, paths: Mapping[int, Path]) -> list[Path]:
    """Draw every figure from ``ds`` (:func:`_draw`) and save it at ``paths[i]``; the paths
    written."""
    from jaxgames import plots

    return [plots.save(_draw(spec, ds), paths[i]) for i, spec in enumerate(figures)]


def _estimate(n_points: int, point_bytes: int, n_values: int, chunk_size: int | None,
              store: Path | None, _sweep):
    chunk = max(1, min(chunk_size or _sweep._default_chunk_size(), n_points))
    n_chunks = -(-n_points // chunk)
    return _sweep.estimate_size(n_points, point_bytes, chunk_points=chunk, n_values=n_values,
                                n_chunks=n_chunks, n_variables=max(1, point_bytes // 8),
                                store=store)


def _check_limits(path, key: str, size, max_memory, max_disk, store, cli: bool) -> None:
    """A sweep file's size check: :class:`SweepFileError` naming ``key``, the size, the limit
    and how to raise it (the file's ``max_memory``/``max_disk``, or the flags)."""
    from jaxgames import _sweep

    try:
        _sweep.check_size(size, max_memory=max_memory, max_disk=max_disk, store=store,
                          what=key)
    except _sweep.StudyTooLarge as exc:
        arg = "max_memory" if exc.resource == "memory" else "max_disk"
        flag = "--max-memory" if exc.resource == "memory" else "--max-disk"
        hint = ("write a .zarr output (streamed to disk; only the chunks in flight are held "
                "in memory), " if exc.resource == "memory" and size.disk == 0 else "")
        raise SweepFileError(path, key, f"{exc.statement}; {hint}sweep fewer "
                                        f"points, or raise the limit with {arg} = \"SIZE\" "
                                        f"in the file or {flag} SIZE (e.g. 200GB) if the "
                                        "estimate is too high") from None


def _is_jaxgames_netcdf(path: Path) -> bool:
    """Whether ``path`` is a netCDF file whose global attributes carry ``jaxgames_version``."""
    try:
        import h5netcdf

        with h5netcdf.File(path, "r") as f:
            return "jaxgames_version" in f.attrs
    except Exception:  # not HDF5/netCDF4, unreadable, or h5netcdf missing
        return False


def _tracked(path: Path) -> bool:
    """Whether ``path`` is a file tracked by git (False outside a checkout or without git)."""
    import subprocess

    try:
        proc = subprocess.run(["git", "ls-files", "--error-unmatch", "--", path.name],
                              cwd=path.parent, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


# ----------------------------------------------------------------------------- loading


def load_sweep(path: str | Path, *, max_memory: int | str | None = None,
               max_disk: int | str | None = None) -> SweepSpec:
    """Read and check the sweep file ``path``; :class:`SweepFileError` if anything is wrong.

    Only reads and checks: nothing is compiled or solved (a design's points are drawn). The
    study's size is checked before any axis value or design point is made: its estimated
    memory and disk must fit ``max_memory``/``max_disk`` (bytes, or a size such as
    ``"200GB"``; these override the file's keys; default: the memory available now and the
    free space of the output's file system).
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise SweepFileError(path, None, "no such file") from None
    except OSError as exc:
        raise SweepFileError(path, None, f"cannot read it: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SweepFileError(path, None, f"not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise SweepFileError(path, None, f"not UTF-8 text: {exc}") from None
    return _Loader(path, max_memory, max_disk).load(doc)


def _axis_length(spec) -> int:
    """The number of values an ``[axes]`` entry asks for, read before any is made (1 where
    the entry is malformed: its error comes when it is parsed)."""
    arg = next(iter(spec.values()), None) if isinstance(spec, dict) else None
    if isinstance(arg, list) and "values" not in spec:
        n = arg[2] if len(arg) == 3 else 1
        return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
    return len(arg) if isinstance(arg, list) else 1


def _toml_type(v) -> str:
    if isinstance(v, bool):
        return f"a boolean ({str(v).lower()})"
    if isinstance(v, int):
        return f"an integer ({v})"
    if isinstance(v, float):
        return f"a float ({v!r})"
    if isinstance(v, str):
        return f"a string ({v!r})"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "a table"
    return f"a {type(v).__name__} ({v})"


def _fmt(v: float) -> str:
    return f"{v:.10g}"


def _join(names) -> str:
    return ", ".join(str(n) for n in names)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" and not word.startswith("one") else "a"  # a oneway


class _Checker:
    """Typed reads of TOML values (tables, keys, numbers, names, ...), shared by the
    parsers of a sweep file: every error is a :class:`SweepFileError` naming the file and
    the dotted key."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str | None, message: str) -> typing.NoReturn:
        raise SweepFileError(self.path, key, message)

    # --------------------------------------------------------------- primitives

    def table(self, v, key: str) -> dict:
        if not isinstance(v, dict):
            self.fail(key, f"expected a table, got {_toml_type(v)}")
        return v

    def keys(self, t: dict, key: str | None, allowed: Sequence[str],
             required: Sequence[str] = ()) -> None:
        prefix = f"{key}." if key else ""
        for k in t:
            if k not in allowed:
                self.fail(f"{prefix}{k}", f"unknown key; the keys allowed here are "
                                          f"{_join(allowed)}")
        for k in required:
            if k not in t:
                self.fail(f"{prefix}{k}", "required key missing")

    def number(self, v, key: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.fail(key, f"expected a number, got {_toml_type(v)}")
        v = float(v)
        if not math.isfinite(v):
            self.fail(key, f"expected a finite number, got {v}")
        return v

    def integer(self, v, key: str, minimum: int | None = None) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(key, f"expected an integer, got {_toml_type(v)}")
        if minimum is not None and v < minimum:
            self.fail(key, f"must be an integer >= {minimum}, got {v}")
        return v

    def boolean(self, v, key: str) -> bool:
        if not isinstance(v, bool):
            self.fail(key, f"expected a boolean (true or false), got {_toml_type(v)}")
        return v

    def string(self, v, key: str, choices: Sequence[str] | None = None, what: str = "") -> str:
        if not isinstance(v, str):
            self.fail(key, f"expected a string, got {_toml_type(v)}")
        if choices is not None and v not in choices:
            self.fail(key, f"unknown {what or 'value'} {v!r}; choose from {_join(choices)}")
        return v

    def array(self, v, key: str, nonempty: bool = True) -> list:
        if not isinstance(v, list):
            self.fail(key, f"expected an array, got {_toml_type(v)}")
        if nonempty and not v:
            self.fail(key, "must not be empty")
        return v

    def item(self, key: str, i: int) -> str:
        """The key of item ``i`` of the array at ``key``."""
        return f"{key}[{i}]"

    def names(self, v, key: str, choices: Sequence[str], what: str) -> tuple[str, ...]:
        items = self.array(v, key)
        out = []
        for i, item in enumerate(items):
            name = self.string(item, self.item(key, i), choices, what)
            if name in out:
                self.fail(self.item(key, i), f"{name!r} is listed twice")
            out.append(name)
        return tuple(out)


class _Loader(_Checker):
    """A sweep file's document -> :class:`SweepSpec`: the model and solve function(s)
    (through the model contract), the options, the outputs and derivatives, the base point,
    the one study section and the figures (:class:`_FigureParser`), each a small parser
    sharing :class:`_Checker`'s typed reads and error."""

    def __init__(self, path: Path, max_memory=None, max_disk=None):
        super().__init__(path)
        self.limits = {"max_memory": max_memory, "max_disk": max_disk}

    # --------------------------------------------------------------- model-aware checks

    def param(self, name: str, key: str) -> str:
        if name not in self.params:
            self.fail(key, f"unknown parameter {name!r} of model {self.model}; the parameters "
                           f"are {_join(self.params)}")
        return name

    def in_domain(self, name: str, value: float, key: str) -> float:
        bad = self.mspec.outside(name, value)
        if bad is not None:
            self.fail(key, f"value {_fmt(value)} is outside the allowed range {bad[1]} of "
                           f"parameter {name}")
        return value

    def size_value(self, v, key: str) -> int:
        """A size: an integer number of bytes, or a string such as ``"200GB"``."""
        from jaxgames._sweep import parse_bytes

        if isinstance(v, bool) or not isinstance(v, (int, str)):
            self.fail(key, f"expected a size (bytes, or a string such as \"200GB\"), got "
                           f"{_toml_type(v)}")
        try:
            return parse_bytes(v)
        except ValueError as exc:
            self.fail(key, str(exc))

    def check_study(self, n_points: int, n_values: int, key: str) -> None:
        """The study's estimated memory and disk against the limits, before any of its values
        are made (a 10**12-value axis is refused here, not by a ``MemoryError``)."""
        from jaxgames import _sweep

        store = self.output if self.output.suffix == ".zarr" else None
        size = _estimate(n_points, self.point_bytes, n_values, self.chunk_size, store, _sweep)
        _check_limits(self.path, key, size, self.limits["max_memory"], self.limits["max_disk"],
                      store, cli=False)

    def param_range(self, v, key: str, name: str, scales: bool = False) -> tuple:
        """``[lo, hi]`` (or, with ``scales``, ``[lo, hi, "log"|"linear"]``), lo < hi."""
        items = self.array(v, key)
        allowed = (2, 3) if scales else (2,)
        form = '[lo, hi] or [lo, hi, "log"]' if scales else "[lo, hi]"
        if len(items) not in allowed:
            self.fail(key, f"expected {form}, got an array of length {len(items)}")
        lo = self.in_domain(name, self.number(items[0], f"{key}[0]"), key)
        hi = self.in_domain(name, self.number(items[1], f"{key}[1]"), key)
        if not lo < hi:
            self.fail(key, f"needs lo < hi, got [{_fmt(lo)}, {_fmt(hi)}]")
        if len(items) == 3:
            scale = self.string(items[2], f"{key}[2]", ("linear", "log"), "scale")
            if scale == "log" and lo <= 0:
                self.fail(key, f"a log range needs lo > 0, got {_fmt(lo)}")
            return (lo, hi, scale)
        return (lo, hi)

    # --------------------------------------------------------------- sections

    def load(self, doc: dict) -> SweepSpec:
        """The whole file, section by section, in the order its errors are reported."""
        self.keys(doc, None, _TOP_KEYS, ("model", "solve", "output"))
        spec = self.contract(doc)
        options = self.options(doc)
        replications, seed = self.replications(doc, spec)
        self.outputs_of(spec)
        derivatives = self.derivatives(doc)
        base = self.base(doc.get("base", {}))
        wrt, elasticities = self.derivative_options(doc, derivatives)
        self.add_derivative_variables(derivatives, wrt, elasticities)
        self.point_bytes = self.point_size(options["dtype"], replications)
        mode = self.mode_of(doc, spec, replications)
        axes, design, study = self.section(doc, mode, base)
        self.mode, self.axes_values, self.study_spec = mode, axes, study
        figures = self.figures(doc["figure"]) if "figure" in doc else ()
        return SweepSpec(
            path=self.path, model=self.model, solve=self.solve_names, base=base, mode=mode,
            axes=axes, design=design, study=study, derivatives=derivatives, wrt=wrt,
            elasticities=elasticities, figures=figures, replications=replications, seed=seed,
            point_bytes=self.point_bytes, max_memory=self.limits["max_memory"],
            max_disk=self.limits["max_disk"], **options,
        )

    def options(self, doc: dict) -> dict[str, Any]:
        """``output``, ``dtype``, ``chunk_size``, ``micro_batch``, ``description`` and the
        size limits (``max_memory``/``max_disk`` unless given to :func:`load_sweep`)."""
        output = Path(self.string(doc["output"], "output"))
        if output.suffix not in (".zarr", ".nc"):
            self.fail("output", f"{str(output)!r} must end in .zarr (Zarr store) or .nc "
                                "(netCDF)")
        dtype = self.string(doc.get("dtype", "float64"), "dtype", DTYPES, "dtype")
        chunk_size = (self.integer(doc["chunk_size"], "chunk_size", 1)
                      if "chunk_size" in doc else None)
        micro_batch = (self.integer(doc["micro_batch"], "micro_batch", 1)
                       if "micro_batch" in doc else None)
        description = self.string(doc.get("description", ""), "description")
        for k in ("max_memory", "max_disk"):
            if self.limits[k] is None and k in doc:
                self.limits[k] = self.size_value(doc[k], k)
        self.output, self.dtype, self.chunk_size = output, dtype, chunk_size
        return dict(output=output, dtype=dtype, chunk_size=chunk_size, micro_batch=micro_batch,
                    description=description)

    def derivatives(self, doc: dict) -> tuple[str, ...]:
        if "derivatives" not in doc:
            return ()
        what = "output" if len(self.solve_names) == 1 else (
            "output (prefixed with its solve function)")
        return self.names(doc["derivatives"], "derivatives", self.real_outputs,
                          f"real-valued {what}")

    def derivative_options(self, doc: dict, derivatives) -> tuple[tuple[str, ...] | None, bool]:
        """``wrt`` and ``elasticities`` (only with ``derivatives``)."""
        wrt = self.wrt(doc["wrt"]) if "wrt" in doc else None
        elasticities = (self.boolean(doc["elasticities"], "elasticities")
                        if "elasticities" in doc else False)
        for k in ("wrt", "elasticities"):
            if k in doc and not derivatives:
                self.fail(k, "has no effect without derivatives = [...]")
        return wrt, elasticities

    def add_derivative_variables(self, derivatives, wrt, elasticities: bool) -> None:
        """The variables of the dataset: the outputs, ``d{o}_d{p}`` and
        ``elasticity_{o}_{p}`` (a whole vector parameter's dim comes last)."""
        self.variables = set(self.outputs)
        for o in derivatives:
            for p in wrt or self.point.real:
                dims = self.dims.get(o, ())
                if p in self.mspec.param_dims:
                    d = self.mspec.param_dims[p]
                    dims = dims + (f"{d}_wrt" if d in dims else d,)
                names = [f"d{o}_d{p}"] + ([f"elasticity_{o}_{p}"] if elasticities else [])
                for name in names:
                    self.variables.add(name)
                    self.dims[name] = dims

    def point_size(self, dtype: str, replications: int | None) -> int:
        """Estimated bytes of one point's variables (all replications), before solving."""
        itemsize = 8 if dtype == "float64" else 4
        return max(1, replications or 1) * sum(
            itemsize * math.prod(len(self.dim_coords(d)) or 1 for d in self.dims.get(v, ()))
            for v in self.variables)

    def mode_of(self, doc: dict, spec, replications: int | None) -> str:
        """The one study section of the file."""
        modes = [m for m in MODES if m in doc]
        if not modes:
            self.fail(None, "needs one of [axes], [design], [oneway], [tornado] (none found)")
        if len(modes) > 1:
            self.fail(modes[1], f"only one of [axes], [design], [oneway], [tornado] may be "
                                f"given, found {_join('[' + m + ']' for m in modes)}")
        mode = modes[0]
        if replications is not None and mode not in ("axes", "design"):
            self.fail(mode, f"{spec.name} is stochastic: replications apply to [axes] and "
                            "[design] sweeps only")
        return mode

    def section(self, doc: dict, mode: str, base):
        """``(axes, design, study)``: the study section parsed, the others ``None``."""
        if mode == "axes":
            return self.axes(doc["axes"]), None, None
        if mode == "design":
            return None, self.design(doc["design"]), None
        return None, None, self.study(doc[mode], mode, base)

    def contract(self, doc: dict):
        """The model and solve function(s), resolved through the model contract."""
        from jaxgames._contract import model_spec, solve_spec
        from jaxgames.models import REGISTRY

        self.model = self.string(doc["model"], "model", tuple(REGISTRY), "model")
        self.mspec = model_spec(self.model)
        self.domain = dict(self.mspec.domain)
        module = self.mspec.module
        names = self.mspec.solve_functions
        what = f"solve function of {self.model}"
        v = doc["solve"]
        solve = (self.names(v, "solve", names, what) if isinstance(v, list)
                 else (self.string(v, "solve", names, what),))
        self.solve_names = solve
        fns = {n: getattr(module, n) for n in solve}
        parts = [solve_spec(f) for f in fns.values()]
        for name, part in zip(solve, parts, strict=True):
            if part.outputs is None:
                self.fail("solve", f"{module.__name__}.{name} has no NamedTuple return "
                                   "annotation, so its outputs are unknown (a model bug: "
                                   "annotate it, e.g. '-> Noncooperative')")
        types_ = {p.input_type for p in parts}
        if len(types_) > 1:
            self.fail("solve", f"the functions {_join(solve)} take different inputs "
                               f"({_join(sorted(t.__name__ for t in types_ if t))}); "
                               "sweep them in separate files")
        from jaxgames._sweep import combine

        spec = solve_spec(fns[solve[0]] if len(solve) == 1 else combine(fns))
        self.spec = spec
        self.default = spec.base_point()
        try:
            self.point = self.mspec.resolve_point(self.default, "DEFAULT")
        except (TypeError, ValueError) as exc:  # a model bug: its DEFAULT breaks the contract
            self.fail("model", f"{self.model}.DEFAULT: {exc}")
        self.params = tuple(self.point.values)
        # one-way, tornado and designs vary real scalar parameters
        self.scalar_params = tuple(p for p in self.point.real
                                   if p not in self.mspec.param_dims)
        return spec

    def outputs_of(self, spec) -> None:
        self.outputs = spec.outputs
        self.real_outputs = spec.differentiable()
        # one element of a real output with one dim of its own: "q[1]", "cost[R1]"
        self.element_outputs = tuple(
            f"{o}[{c}]" for o in self.real_outputs if len(spec.output_dims(o)) == 1
            for c in self.dim_coords(spec.output_dims(o)[0]))
        self.units = {o: spec.output_units(o) for o in self.outputs}
        self.dims = {o: spec.output_dims(o) for o in self.outputs}
        self.categorical = tuple(o for o in self.outputs if o not in self.real_outputs
                                 and not o.endswith("residual") and not self.dims[o])
        self.scalar_outputs = tuple(o for o in self.real_outputs if not self.dims[o])
        self.output_what = "real-valued output" + (
            f" (or element, e.g. {self.element_outputs[0]})" if self.element_outputs else "")

    def replications(self, doc: dict, spec) -> tuple[int | None, int]:
        if not spec.stochastic:
            for k in ("replications", "seed"):
                if k in doc:
                    self.fail(k, f"applies to stochastic solve functions only; "
                                 f"{_join(self.solve_names)} of {self.model} is not (the "
                                 f"stochastic ones are {_join(self.mspec.stochastic) or 'none'})")
            self.n_replications = 0
            return None, 0
        replications = self.integer(doc.get("replications", 1), "replications", 1)
        self.n_replications = replications
        seed = self.integer(doc.get("seed", 0), "seed", 0)
        if seed >= 2**32:
            self.fail("seed", f"must be an integer in [0, 2**32), got {seed}")
        return replications, seed

    def element(self, key_name: str, key: str) -> str:
        """The parameter of an axis key ``p`` or ``v[1]`` (an element of a vector parameter)."""
        name = key_name.split("[", 1)[0] if key_name.endswith("]") else key_name
        self.param(name, key)
        if name != key_name:
            try:
                self.mspec.resolve_axis(key_name, [getattr(self.default, name)[0]]
                                        if name in self.mspec.param_dims else [0.0],
                                        self.point, "axes")
            except ValueError as exc:
                self.fail(key, str(exc).split(": ", 1)[1])
        return name

    def wrt(self, v) -> tuple[str, ...]:
        items = self.array(v, "wrt")
        out = []
        for i, item in enumerate(items):
            key = f"wrt[{i}]"
            name = self.string(item, key)
            p = self.element(name, key)
            if p in self.mspec.categories:
                self.fail(key, f"{p} is categorical; derivatives are with respect to real "
                               f"parameters: {_join(self.point.real)}")
            if name in out:
                self.fail(key, f"{name!r} is listed twice")
            out.append(name)
        return tuple(out)

    def base(self, v):
        t = self.table(v, "base")
        values = {}
        for name, value in t.items():
            key = f"base.{name}"
            self.param(name, key)
            if name in self.mspec.categories:
                labels = self.mspec.categories[name]
                values[name] = self.mspec.code(
                    name, self.string(value, key, labels, f"label of {name}"))
            elif name in self.mspec.param_dims:
                n = len(self.point.values[name])
                if isinstance(value, list):
                    items = self.array(value, key)
                    vec = [self.in_domain(name, self.number(x, f"{key}[{i}]"), f"{key}[{i}]")
                           for i, x in enumerate(items)]
                else:  # a number sets every element
                    vec = [self.in_domain(name, self.number(value, key), key)] * n
                values[name] = np.asarray(vec, float)
            else:
                values[name] = self.in_domain(name, self.number(value, key), key)
        base = self.default._replace(**values)
        base = base._replace(**{f: float(getattr(base, f)) for f in self.params
                                if f not in self.mspec.param_dims
                                and f not in self.mspec.categories})
        for name in self.params:  # by name: static settings (None, laws) are not checked
            if name not in values and name not in self.mspec.categories:
                for x in np.atleast_1d(getattr(base, name)):
                    self.in_domain(name, float(x), "base")
        try:
            self.point = self.mspec.resolve_point(base, "base")
        except (TypeError, ValueError) as exc:
            self.fail("base", str(exc))
        return base

    def axes(self, v) -> dict[str, np.ndarray]:
        """``[axes]``: ``{key: values}``, one grid dimension per key, in file order."""
        t = self.table(v, "axes")
        if not t:
            self.fail("axes", "needs at least one parameter")
        # sizes first, from the specs: nothing is made before the study is known to fit
        lengths = [_axis_length(spec) for spec in t.values()]
        self.check_study(math.prod(lengths), sum(lengths), "axes")
        return {name: self.axis(name, spec) for name, spec in t.items()}

    def axis(self, name: str, spec) -> np.ndarray:
        """One axis: ``{ linspace | geomspace = [lo, hi, n] }`` or ``{ values = [...] }``
        (labels, for a categorical parameter), distinct values inside the domain."""
        key = f"axes.{name}"
        param = self.element(name, key)
        if param in self.mspec.categories:
            return self.category_axis(spec, key, param)
        if not isinstance(spec, dict):
            self.fail(key, f"expected {{ linspace = [lo, hi, n] }}, "
                           f"{{ geomspace = [lo, hi, n] }} or {{ values = [...] }}, got "
                           f"{_toml_type(spec)}")
        self.keys(spec, key, ("linspace", "geomspace", "values"))
        if len(spec) != 1:
            self.fail(key, "needs exactly one of linspace, geomspace, values")
        (form, arg), = spec.items()
        fkey = f"{key}.{form}"
        items = self.array(arg, fkey)
        values = (np.array([self.number(x, f"{fkey}[{i}]") for i, x in enumerate(items)])
                  if form == "values" else self.spaced(form, items, fkey))
        if len(np.unique(values)) != len(values):
            self.fail(fkey, "values must be distinct")
        for x in values:
            self.in_domain(param, float(x), key)
        return values

    def spaced(self, form: str, items: list, fkey: str) -> np.ndarray:
        """``linspace`` / ``geomspace`` ``[lo, hi, n]``."""
        if len(items) != 3:
            self.fail(fkey, f"expected [lo, hi, n], got an array of length {len(items)}")
        lo = self.number(items[0], f"{fkey}[0]")
        hi = self.number(items[1], f"{fkey}[1]")
        n = self.integer(items[2], f"{fkey}[2]", 1)
        if form == "geomspace" and not (lo * hi > 0):
            self.fail(fkey, f"needs lo and hi non-zero and of one sign, got "
                            f"[{_fmt(lo)}, {_fmt(hi)}]")
        if n > 1 and lo == hi:
            self.fail(fkey, f"lo == hi gives {n} equal values")
        return np.linspace(lo, hi, n) if form == "linspace" else np.geomspace(lo, hi, n)

    def category_axis(self, spec, key: str, param: str) -> np.ndarray:
        """``{ values = ["S", "WH"] }``: labels of a categorical parameter."""
        labels = self.mspec.categories[param]
        if not isinstance(spec, dict) or set(spec) != {"values"}:
            self.fail(key, f"a categorical parameter takes {{ values = [labels] }} with labels "
                           f"from {_join(labels)}")
        fkey = f"{key}.values"
        items = self.array(spec["values"], fkey)
        out = []
        for i, x in enumerate(items):
            label = self.string(x, f"{fkey}[{i}]", labels, f"label of {param}")
            if label in out:
                self.fail(f"{fkey}[{i}]", f"{label!r} is listed twice")
            out.append(label)
        return np.asarray(out, dtype=object)

    def design(self, v):
        from jaxgames import design as designs

        t = self.table(v, "design")
        self.keys(t, "design", ("kind", "n", "seed", "bounds", "scramble"),
                  ("kind", "n", "bounds"))
        kind = self.string(t["kind"], "design.kind", DESIGN_KINDS, "design kind")
        n = self.integer(t["n"], "design.n", 1)
        if kind == "sobol" and n & (n - 1):
            self.fail("design.n", f"a Sobol design needs a power of 2 (e.g. "
                                  f"{1 << (n.bit_length() - 1)} or {1 << n.bit_length()}), "
                                  f"got {n}")
        seed = self.integer(t.get("seed", 0), "design.seed", 0)
        bounds_t = self.table(t["bounds"], "design.bounds")
        if not bounds_t:
            self.fail("design.bounds", "needs at least one parameter")
        # the unit-cube sample and its scaled copy: (n, d) twice, before the study is drawn
        self.check_study(n, 2 * n * len(bounds_t), "design.n")
        bounds = {}
        for name, b in bounds_t.items():
            key = f"design.bounds.{name}"
            param = self.element(name, key)  # "v[1]": one element; "v": every element
            if param in self.mspec.categories:
                self.fail(key, f"{param} is categorical (labels "
                               f"{_join(self.mspec.categories[param])}); a design samples real "
                               "parameters: sweep it in [axes]")
            bounds[name] = self.param_range(b, key, param, scales=True)
        # the file's limit, already checked above (the design's own default would be the
        # memory available, not the file's max_memory)
        limit = self.limits["max_memory"]
        if kind == "sobol":
            scramble = self.boolean(t.get("scramble", True), "design.scramble")
            return designs.sobol(bounds, n, seed=seed, scramble=scramble, max_memory=limit)
        if "scramble" in t:
            self.fail("design.scramble", f"applies to a sobol design only, not {kind}")
        return getattr(designs, kind)(bounds, n, seed=seed, max_memory=limit)

    def study(self, v, section: str, base) -> dict[str, Any]:
        """``[oneway]`` / ``[tornado]``: keyword arguments of ``sensitivity.one_way`` /
        ``tornado``."""
        t = self.table(v, section)
        allowed = ("n", "ranges", "relative", "params") if section == "oneway" else (
            "outputs", "ranges", "relative", "params")
        self.keys(t, section, allowed, () if section == "oneway" else ("outputs",))
        out: dict[str, Any] = {}
        if "n" in t:
            out["n"] = self.integer(t["n"], f"{section}.n", 2)
        if "outputs" in t:
            out["outputs"] = self.names(t["outputs"], f"{section}.outputs",
                                        self.scalar_outputs + self.element_outputs,
                                        self.output_what)
        if ("ranges" in t) == ("relative" in t):
            self.fail(section, "needs exactly one of ranges = { ... } and relative = [lo, hi]")
        if "ranges" in t:
            out["ranges"] = self.study_ranges(t, section)
        else:
            out.update(self.study_relative(t, section, base))
        return out

    def study_ranges(self, t: dict, section: str) -> dict[str, tuple]:
        """``ranges = { parameter = [lo, hi], "v[1]" = [lo, hi] }``: real scalars only."""
        if "params" in t:
            self.fail(f"{section}.params", "goes with relative; ranges names its "
                                           "parameters itself")
        rt = self.table(t["ranges"], f"{section}.ranges")
        if not rt:
            self.fail(f"{section}.ranges", "needs at least one parameter")
        ranges = {}
        for name, r in rt.items():
            key = f"{section}.ranges.{name}"
            param = self.element(name, key)  # "v[1]": one element of a vector
            if param in self.mspec.categories:
                self.fail(key, f"a {section} study varies real scalars; {name} is "
                               "categorical")
            if param == name and param in self.mspec.param_dims:
                self.fail(key, f"a {section} study varies real scalars; {name} is a "
                               f"vector: name one element, e.g. {name}[1]")
            ranges[name] = self.param_range(r, key, param, scales=section == "oneway")
        return ranges

    def study_relative(self, t: dict, section: str, base) -> dict[str, Any]:
        """``relative = [lo, hi]`` (a one-way study also ``[lo, hi, "log"]``: then explicit
        log ranges, factors of the base) with optional ``params``."""
        key = f"{section}.relative"
        lo, hi, scale = self.relative_factors(t["relative"], key, section == "oneway")
        params = (self.names(t["params"], f"{section}.params", self.scalar_params,
                             "real scalar parameter")
                  if "params" in t else self.scalar_params)
        for name in params:
            self.relative_range(name, getattr(base, name), lo, hi, key, section)
        if scale == "log":  # steps even in log: explicit ranges, factors of the base
            for name in params:
                if getattr(base, name) < 0:
                    self.fail(key, f"parameter {name} has a negative base value "
                                   f"{_fmt(getattr(base, name))}; a log range needs "
                                   "positive values")
            return {"ranges": {name: (getattr(base, name) * lo, getattr(base, name) * hi,
                                      "log") for name in params}}
        return {"relative": (lo, hi), **({"params": params} if "params" in t else {})}

    def relative_factors(self, v, key: str, scales: bool) -> tuple[float, float, str]:
        """``[lo, hi]`` (with ``scales`` also ``[lo, hi, "log"|"linear"]``), lo < hi."""
        items = self.array(v, key)
        if len(items) not in ((2, 3) if scales else (2,)):
            form = '[lo, hi] or [lo, hi, "log"]' if scales else "[lo, hi]"
            self.fail(key, f"expected {form}, got an array of length {len(items)}")
        lo = self.number(items[0], f"{key}[0]")
        hi = self.number(items[1], f"{key}[1]")
        if not lo < hi:
            self.fail(key, f"needs lo < hi, got [{_fmt(lo)}, {_fmt(hi)}]")
        scale = (self.string(items[2], f"{key}[2]", ("linear", "log"), "scale")
                 if len(items) == 3 else "linear")
        if scale == "log" and lo <= 0:
            self.fail(key, f"a log range needs lo > 0, got {_fmt(lo)}")
        return lo, hi, scale

    def relative_range(self, name: str, b: float, lo: float, hi: float, key: str,
                       section: str) -> None:
        """Both ends ``lo * b`` and ``hi * b`` of parameter ``name`` (base value ``b``)
        inside its domain, and the range not empty."""
        if b == 0:
            self.fail(key, f"parameter {name} has base value 0, so a relative range is "
                           f"empty; list the others in {section}.params, or give "
                           f"{section}.ranges")
        for factor in (lo, hi):
            value = b * factor
            bad = self.mspec.outside(name, value)
            if bad is not None:
                self.fail(key, f"{_fmt(factor)} x base {name} = {_fmt(value)} is "
                               f"outside the allowed range {bad[1]} of parameter {name}")

    def figures(self, v) -> tuple[FigureSpec, ...]:
        if isinstance(v, dict):
            self.fail("figure", "write each figure as [[figure]] (an array of tables)")
        items = self.array(v, "figure", nonempty=False)
        ctx = self.figure_context()
        return tuple(_FigureParser(self.path, ctx, f"figure[{i}]").parse(f)
                     for i, f in enumerate(items))

    def figure_context(self) -> FigureContext:
        """What the file's figures may name, before anything is solved."""
        axes = tuple(self.axes_values or ())
        rep = (REPLICATION,) if self.n_replications else ()
        own = {d for v in self.variables for d in self.dims.get(v, ())}
        labels = {d: tuple(map(str, self.mspec.dim_coords[d.removesuffix("_wrt")]))
                  for d in own if d.removesuffix("_wrt") in self.mspec.dim_coords}
        real = tuple(v for v in self.variables if v not in self.categorical
                     and not v.endswith("residual"))
        return FigureContext(
            mode=self.mode, axes=dict(self.axes_values or {}),
            dims={v: axes + self.dims.get(v, ()) + rep for v in self.variables},
            categorical=self.categorical, real=real,
            outputs=self.scalar_outputs + self.element_outputs, output_what=self.output_what,
            units=self.units, tornado_outputs=tuple((self.study_spec or {}).get("outputs", ())),
            labels=labels, sizes={d: len(self.dim_coords(d)) for d in own if d not in labels},
            replications=self.n_replications)

    def dim_coords(self, dim: str) -> tuple[str, ...]:
        """Coordinates of a dim, as written in keys (``()`` if its length is not known before
        solving: a dim that no vector parameter and no ``DIM_COORDS`` fixes)."""
        labels = self.mspec.dim_coords.get(dim)
        if labels is not None:
            return tuple(map(str, labels))
        base = dim[:-4] if dim.endswith("_wrt") else dim  # "csc_wrt": the coords of csc
        n = next((len(self.point.values[p]) for p, d in self.mspec.param_dims.items()
                  if d == base), 0)
        return tuple(str(i) for i in range(1, n + 1))


# ----------------------------------------------------------------------------- figures


def figure_flag(key: str) -> str:
    """How ``jaxgames plot`` spells a ``[[figure]]`` key (``outputs`` -> ``--var``, ``path``
    -> ``--png``, the booleans as flag pairs); one place for the command line's messages."""
    return _FIGURE_FLAGS.get(key, f"--{key}")


_FIGURE_FLAGS = {"outputs": "--var", "path": "--png", "sharey": "--sharey/--no-sharey",
                 "contours": "--contours/--no-contours"}


@dataclasses.dataclass(frozen=True, eq=False)
class FigureContext:
    """What the figures of one study may name, for :class:`_FigureParser`: known from a sweep
    file before it runs (:func:`load_sweep`), or read from its dataset (``jaxgames plot``).

    Attributes:
        mode: ``"axes"``, ``"oneway"`` or ``"tornado"`` (a design has no figures).
        axes: ``{dim: values}`` of the dims a figure plots or fixes by value (labels as an
            object array).
        dims: ``{variable: its dims, in order}``.
        categorical: integer or boolean variables (region maps, backgrounds).
        real: real-valued variables (``xmarks``).
        outputs: what one-way figures plot (real outputs over the study, and elements
            ``"q[1]"``); ``output_what`` names them in messages.
        units: ``{output: units}``.
        tornado_outputs: the outputs of a tornado study; ``tornado_what`` names them.
        labels: ``{dim: coords}`` of dims besides ``axes`` fixed by a label (``agent``);
            ``sizes``: ``{dim: n}`` of those numbered ``1..n`` (0: not known before solving).
        replications: the size of the ``replication`` dim (0: none).
    """

    mode: str
    axes: Mapping[str, np.ndarray]
    dims: Mapping[str, tuple[str, ...]]
    categorical: tuple[str, ...] = ()
    real: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    output_what: str = "real-valued output"
    units: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tornado_outputs: tuple[str, ...] = ()
    tornado_what: str = "output of tornado.outputs"
    labels: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    sizes: Mapping[str, int] = dataclasses.field(default_factory=dict)
    replications: int = 0

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(sorted(self.dims))

    def dims_of(self, names: Sequence[str]) -> tuple[str, ...]:
        """The dims of ``names`` together, in order; ``replication`` last."""
        dims = dict.fromkeys(d for n in names for d in self.dims.get(n, ())
                             if d != REPLICATION)
        if any(REPLICATION in self.dims.get(n, ()) for n in names):
            dims[REPLICATION] = None
        return tuple(dims)

    @classmethod
    def of_dataset(cls, ds, mode: str) -> FigureContext:
        """The context of a dataset opened from disk (``jaxgames plot``): every dim but
        ``replication`` is an axis; variables are classified by their dtype (and, for a
        one-way dataset, by their values: integers stored as floats count as categories)."""
        axes = {}
        for d in ds.dims:
            if d != REPLICATION:
                values = np.asarray(ds[d].values)
                numeric = values.dtype.kind in "biuf"  # else labels (str, object, StringDType)
                axes[str(d)] = (values if numeric else
                                np.array([str(v) for v in values.ravel()], dtype=object))
        dims = {str(v): tuple(map(str, ds[v].dims)) for v in ds.data_vars}
        categorical = tuple(sorted(v for v in dims if _is_categorical(ds[v], mode == "oneway")
                                   and (mode != "oneway" or dims[v] == ("parameter", "step"))))
        # floats are real-valued even where they hold integers (a background may be either)
        real = tuple(sorted(v for v in dims if not v.endswith("residual")
                            and np.issubdtype(ds[v].dtype, np.floating)))
        study = ("parameter", "step")
        scalars = tuple(v for v in real if dims[v] == study)
        elements = tuple(f"{v}[{c}]" for v in real if dims[v][:2] == study
                         and len(dims[v]) == 3 for c in map(str, ds[dims[v][2]].values))
        tornado = (tuple(str(o) for o in ds["output"].values) if "output" in ds.dims else ())
        return cls(mode=mode, axes=axes, dims=dims, categorical=categorical, real=real,
                   outputs=scalars + elements, units={v: ds[v].attrs.get("units") for v in dims},
                   tornado_outputs=tornado, tornado_what="output of the dataset",
                   replications=ds.sizes.get(REPLICATION, 0))


def _is_categorical(da, by_value: bool) -> bool:
    """An integer or boolean variable (a case, a regime, ``status``); with ``by_value`` (a
    small dataset) also floats holding only integers (and NaN)."""
    if da.dtype == bool or np.issubdtype(da.dtype, np.integer):
        return True
    if not by_value or not np.issubdtype(da.dtype, np.floating):
        return False
    values = np.asarray(da)
    return bool(np.all(np.isnan(values) | (values == np.round(values))))



class _FigureParser(_Checker):
    """One figure -- a sweep file's ``[[figure]]`` table, or the same table built from
    ``jaxgames plot``'s flags -- checked against a :class:`FigureContext`; a
    :class:`FigureSpec`. ``where`` is the table's key (``figure[0]``); ``None``: keys are
    named as command-line flags (:func:`figure_flag`)."""

    def __init__(self, path, ctx: FigureContext, where: str | None):
        super().__init__(path)
        self.ctx, self.where = ctx, where

    def at(self, sub: str) -> str:
        """The key ``sub`` (``"sel.p"``, ``"levels[0]"``) of this figure, as the user wrote
        it: in the file (``figure[0].sel.p``) or as a flag (``--sel p``, ``--levels``)."""
        if self.where is not None:
            return f"{self.where}.{sub}"
        head, _, rest = sub.partition(".")
        head = head.split("[", 1)[0]
        return f"--sel {rest}" if head == "sel" and rest else figure_flag(head)

    def item(self, key: str, i: int) -> str:
        return key if self.where is None else super().item(key, i)

    def said(self, key: str) -> str:
        """A key named inside a message: ``x`` in a file, ``--x`` on the command line."""
        return key if self.where is not None else figure_flag(key)

    def parse(self, v) -> FigureSpec:
        t = self.table(v, self.where or "figure")
        kind = self.head(t)
        f: dict[str, Any] = {"kind": kind, "path": self.path_of(t)}
        if "title" in t:
            f["title"] = self.string(t["title"], self.at("title"))
        if kind in ("heatmap", "region_map", "line"):
            self.grid(t, kind, f)
        elif kind in ("one_way", "one_way_regions"):
            self.one_way(t, kind, f)
        else:
            f["var"] = self.string(t["output"], self.at("output"), self.ctx.tornado_outputs,
                                   self.ctx.tornado_what)
            if "top" in t:
                f["top"] = self.integer(t["top"], self.at("top"), 1)
        return FigureSpec(**f)

    def head(self, t: dict) -> str:
        """The kind, its keys, and the study it needs."""
        if "kind" not in t:
            self.fail(self.at("kind"), f"required key missing; choose from {_join(FIGURE_KINDS)}")
        kind = self.string(t["kind"], self.at("kind"), FIGURE_KINDS, "figure kind")
        allowed = ("kind", "path", "title", *_FIGURE_KEYS[kind])
        for k in t:
            if k not in allowed:
                self.fail(self.at(k), f"unknown key; the keys allowed here are {_join(allowed)}")
        for k in ("path", *_FIGURE_REQUIRED[kind]):
            if k not in t:
                self.fail(self.at(k), "required key missing")
        need = _FIGURE_MODE[kind]
        if self.ctx.mode != need and self.where is None:  # jaxgames plot: a dataset
            dims = {"oneway": "parameter, step", "tornado": "output, parameter"}.get(need, "")
            self.fail(self.at("kind"), f"{self.path} is not {_article(need)} "
                                       f"{need.replace('oneway', 'one-way')} dataset"
                                       + (f" (dims {dims})" if dims else ""))
        if self.ctx.mode != need:
            self.fail(self.at("kind"), f"a {kind} figure needs {_article(need)} [{need}] sweep, "
                                       f"this file has [{self.ctx.mode}]")
        return kind

    def path_of(self, t: dict) -> Path:
        path = Path(self.string(t["path"], self.at("path")))
        if path.suffix.lower() not in FIGURE_SUFFIXES:
            self.fail(self.at("path"), f"{str(path)!r} must end in {_join(FIGURE_SUFFIXES)}")
        return path

    def one_way(self, t: dict, kind: str, f: dict) -> None:
        outputs, ctx = t["outputs"], self.ctx
        f["var"] = (self.names(outputs, self.at("outputs"), ctx.outputs, ctx.output_what)
                    if isinstance(outputs, list) else
                    (self.string(outputs, self.at("outputs"), ctx.outputs, ctx.output_what),))
        units = {ctx.units.get(o.split("[")[0]) for o in f["var"]}
        if kind == "one_way" and len(units) > 1:
            self.fail(self.at("outputs"), f"outputs with different units "
                                          f"({_join(sorted(map(str, units)))}) cannot share "
                                          "a one_way figure; use one figure per unit, or a "
                                          "one_way_regions figure (units per line)")
        f["x"] = self.string(t.get("x", "relative"), self.at("x"), ("relative", "value"), "x")
        if "sharey" in t:
            f["sharey"] = self.boolean(t["sharey"], self.at("sharey"))
        if kind == "one_way_regions":
            f["background"] = self.string(t["background"], self.at("background"),
                                          ctx.categorical, "integer or boolean variable")
            if "labels" in t:
                f["labels"] = self.labels(t["labels"])

    def grid(self, t: dict, kind: str, f: dict) -> None:
        """A heatmap, region map or line figure of a grid: variables, plotted dims, the
        other dims fixed (``sel``) or reduced (``reduce``), and the kind's options."""
        f["var"] = self.grid_var(t, kind)
        names = _var_names(f["var"])
        plotted = self.plotted(t, names, f)
        if "xmarks" in t:
            real = sorted(v for v in self.ctx.real if v in self.ctx.dims)
            f["xmarks"] = self.names(t["xmarks"], self.at("xmarks"), real,
                                     "real-valued variable")
        if "reduce" in t:
            f["reduce"] = self.reduce(t["reduce"])
            plotted.add(REPLICATION)
        f["sel"] = self.sel(t.get("sel", {}), names, plotted, f.get("reduce"))
        if "contours" in t:
            f["contours"] = self.boolean(t["contours"], self.at("contours"))
        if "levels" in t:
            f["levels"] = self.levels(t["levels"])
        if "labels" in t:
            f["labels"] = self.labels(t["labels"])

    def grid_var(self, t: dict, kind: str):
        """``var``: a name; for a line also a list of names, or ``{ panel = [names] }``."""
        if kind == "region_map":
            choices, what = self.ctx.categorical, "integer or boolean variable"
        else:
            choices, what = self.ctx.variables, "variable"
        v, key = t["var"], self.at("var")
        if kind == "line" and isinstance(v, list):
            return self.names(v, key, choices, what)
        if kind == "line" and isinstance(v, dict):  # { panel title = [names] }
            if not v:
                self.fail(key, "needs at least one panel")
            return tuple((panel, tuple(self.names(names, self.at(f"var.{panel}"), choices,
                                                  what)))
                         for panel, names in v.items())
        return self.string(v, key, choices, what)

    def plotted(self, t: dict, names: Sequence[str], f: dict) -> set[str]:
        """``x``, ``y``, ``facet``, ``by``: different dims of the variables, along which
        they are drawn."""
        axes = tuple(d for d in self.ctx.dims_of(names) if d in self.ctx.axes)
        f["x"] = self.string(t["x"], self.at("x"), axes, "axis")
        plotted = {f["x"]}
        if "y" in t:
            f["y"] = self.string(t["y"], self.at("y"), axes, "axis")
            if f["y"] == f["x"]:
                self.fail(self.at("y"), f"must differ from {self.said('x')}")
            plotted.add(f["y"])
        for extra, what in (("facet", "one panel per value"), ("by", "one line per value")):
            if extra in t:
                name = self.string(t[extra], self.at(extra), axes, "axis")
                if name in plotted:
                    self.fail(self.at(extra), f"{name} is already an axis of the figure; "
                                              f"{self.said(extra)} needs another axis ({what})")
                f[extra] = name
                plotted.add(name)
        return plotted

    def reduce(self, v) -> str:
        """``reduce = "mean"``: the mean over replications (a stochastic study)."""
        how = self.string(v, self.at("reduce"), REDUCTIONS, "reduction")
        n = self.ctx.replications
        if n < 2:
            what = "no replication dim" if not n else "1 replication"
            self.fail(self.at("reduce"), f"needs a stochastic study with at least 2 "
                                         f"replications (a confidence interval), this one has "
                                         f"{what}")
        return how

    def sel(self, v, names: Sequence[str], plotted: set[str], reduce: str | None) -> dict:
        """``sel``: a value of every dim of the variables that is not plotted."""
        ctx = self.ctx
        dims = ctx.dims_of(names)
        sel = {}
        for name, value in self.table(v, self.at("sel")).items():
            skey = self.at(f"sel.{name}")
            self.string(name, skey, tuple(ctx.axes) + tuple(d for d in dims
                                                            if d not in ctx.axes),
                        "axis or dim")
            if name == REPLICATION and reduce is not None:
                self.fail(skey, f"replication is reduced ({self.said('reduce')} = "
                                f"{reduce!r}); it cannot be fixed too")
            if name in plotted:
                self.fail(skey, f"{name} is an axis of the figure; it cannot be fixed too")
            sel[name] = (self.dim_value(name, value, skey) if name not in ctx.axes
                         else self.axis_value(name, value, skey))
        free = [d for d in dims if d not in plotted and d not in sel]
        if free:
            hint = (f"sel = {{ {free[0]} = ... }}" if self.where is not None
                    else f"--sel {free[0]}=VALUE")
            self.fail(self.at("sel"), f"axes {_join(free)} are neither plotted nor fixed; add "
                                      f"{hint}")
        return sel

    def axis_value(self, name: str, value, key: str):
        """One value of the axis ``name``: a label, or a number on it (to rounding)."""
        ax = self.ctx.axes[name]
        if ax.dtype == object:  # labels of a categorical parameter
            return self.string(value, key, tuple(ax), f"label on axis {name}")
        value = self.number(value, key)
        if not np.isclose(ax, value, rtol=1e-9, atol=0.0).any():
            self.fail(key, f"{_fmt(value)} is not a value of axis {name} (values: "
                           f"{_join(_fmt(a) for a in ax[:8])}{', ...' if len(ax) > 8 else ''})")
        return value

    def dim_value(self, dim: str, value, key: str):
        """A coordinate of an output's own dim: a replication ``0..n-1``, a label of
        ``DIM_COORDS``, or ``1..n``."""
        n_rep = self.ctx.replications
        if dim == REPLICATION and n_rep:
            v = self.integer(value, key, 0)
            if v >= n_rep:
                self.fail(key, f"replications are 0..{n_rep - 1}, got {v}")
            return v
        labels = self.ctx.labels.get(dim)
        if labels is not None:
            return self.string(value, key, labels, f"coord of dim {dim}")
        n = self.ctx.sizes.get(dim) or None
        v = self.integer(value, key, 1)
        if n is not None and v > n:
            self.fail(key, f"dim {dim} has coords 1..{n}, got {v}")
        return v

    def levels(self, lv) -> int | tuple[float, ...]:
        if not isinstance(lv, list):
            return self.integer(lv, self.at("levels"), 1)
        items = self.array(lv, self.at("levels"))
        levels = tuple(self.number(c, self.at(f"levels[{i}]")) for i, c in enumerate(items))
        if any(b <= a for a, b in zip(levels, levels[1:], strict=False)):
            self.fail(self.at("levels"), "contour levels must be increasing")
        return levels

    def labels(self, v) -> dict[Any, str]:
        """``{ "0" = "text", "true" = "text" }``: legend texts of integer/boolean categories."""
        labels = {}
        for k, text in self.table(v, self.at("labels")).items():
            lkey = self.at(f"labels.{k}")
            if k in ("true", "false"):
                value: Any = k == "true"
            else:
                try:
                    value = int(k)
                except ValueError:
                    self.fail(lkey, "a category is an integer (\"0\") or a boolean "
                                    "(\"true\", \"false\")")
            labels[value] = self.string(text, lkey)
        return labels


def _var_names(var) -> list[str]:
    """The variable names of a figure's ``var``: a name, names, or ``(panel, names)`` pairs."""
    if var is None:
        return []
    if isinstance(var, str):
        return [var]
    if var and isinstance(var[0], tuple):
        return [n for _, group in var for n in group]
    return list(var)


# ----------------------------------------------------------------------------- running


def _draw(spec: FigureSpec, ds):
    """Draw one figure of ``ds`` as ``spec`` says (a sweep file's ``[[figure]]`` or
    ``jaxgames plot``'s flags, checked by :class:`_FigureParser`); the matplotlib figure."""
    from jaxgames import plots

    if spec.kind in ("one_way", "one_way_regions"):  # elements "q[1]" as variables
        from jaxgames._contract import output_element

        extra = [n for n in spec.var if n not in ds.data_vars]
        if extra:
            ds = ds.assign({n: output_element(ds, n) for n in extra})
    bands: dict[str, tuple[str, str]] = {}
    if spec.reduce is not None:
        ds, bands = _reduce_replications(ds, [*_var_names(spec.var), *spec.xmarks])
    fig = _DRAW[spec.kind](plots, spec, ds, bands)
    if spec.reduce is not None and spec.title is None and spec.kind == "heatmap":
        for ax in fig.axes:
            if ax.get_title():
                ax.set_title(f"{ax.get_title()}\n{_mean_text(ds)}", fontsize=9)
    if spec.title is not None:
        title = textwrap.fill(spec.title, max(50, int(10.5 * fig.get_figwidth())))  # fits
        if fig._suptitle is not None:
            fig.suptitle(title)
        else:
            fig.axes[0].set_title(title)
    return fig


def _mean_text(ds) -> str:
    return f"mean of {ds.attrs['replications']} replications"


def _reduce_replications(ds, names: Sequence[str]):
    """``ds`` with ``names`` replaced by their mean over ``replication``
    (:func:`jaxgames.summaries.mean`) and, next to each, the bounds of its Student-t
    confidence interval (:func:`jaxgames.summaries.confidence_interval`, ``CONFIDENCE``);
    ``converged`` and ``assumptions_hold`` hold where they hold in every replication. Also
    ``{name: (lower, upper)}``, the names of the bounds."""
    from jaxgames import summaries

    names = [n for n in dict.fromkeys(names) if REPLICATION in ds[n].dims]
    n = ds.sizes[REPLICATION]
    mean = summaries.mean(ds[names])
    ci = summaries.confidence_interval(ds[names], confidence=CONFIDENCE)
    out = ds.drop_dims(REPLICATION).assign({v: mean[v] for v in names})
    flags = [f for f in ("converged", "assumptions_hold")
             if f in ds and REPLICATION in ds[f].dims]
    out = out.assign({f: ds[f].all(REPLICATION) for f in flags})
    bands = {}
    for v in names:
        lo, hi = f"{v} (lower)", f"{v} (upper)"
        out[lo] = ci[v].sel(bound="lower", drop=True)
        out[hi] = ci[v].sel(bound="upper", drop=True)
        bands[v] = (lo, hi)
    out.attrs["replications"] = n
    return out, bands


def _draw_heatmap(plots, spec, ds, bands):
    levels = list(spec.levels) if isinstance(spec.levels, tuple) else spec.levels
    return plots.heatmap(ds, spec.var, spec.x, spec.y, contours=spec.contours, levels=levels,
                         facet=spec.facet, **spec.sel)


def _draw_region_map(plots, spec, ds, bands):
    return plots.region_map(ds, spec.var, spec.x, spec.y, labels=spec.labels, **spec.sel)


def _draw_line(plots, spec, ds, bands):
    var = spec.var
    groups = ({p: list(v) for p, v in var} if var and isinstance(var[0], tuple)
              else [var] if isinstance(var, str) else list(var))
    band_label = (f"{CONFIDENCE:.0%} confidence interval of the {_mean_text(ds)}"
                  if bands else None)
    return plots.lines(ds, groups, spec.x, sel=dict(spec.sel) if spec.sel else None,
                       title=spec.title, by=spec.by, xmarks=list(spec.xmarks) or None,
                       bands=bands or None, band_label=band_label)


def _draw_one_way(plots, spec, ds, bands):
    return plots.one_way(ds, list(spec.var), x=spec.x,
                         sharey=True if spec.sharey is None else spec.sharey)


def _draw_one_way_regions(plots, spec, ds, bands):
    return plots.one_way_regions(ds, list(spec.var), spec.background, labels=spec.labels,
                                 x=spec.x, sharey=False if spec.sharey is None else spec.sharey)


def _draw_tornado(plots, spec, ds, bands):
    return plots.tornado(ds, spec.var, top=spec.top)


_DRAW = {"heatmap": _draw_heatmap, "region_map": _draw_region_map, "line": _draw_line,
         "one_way": _draw_one_way, "one_way_regions": _draw_one_way_regions,
         "tornado": _draw_tornado}
