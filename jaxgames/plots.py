"""Figures of sweep and sensitivity datasets.

Every function takes a labelled :class:`xarray.Dataset` (a sweep from :func:`jaxgames.sweep`, or
a one-way, tornado or Sobol result from the sensitivity layer) and returns a
:class:`matplotlib.figure.Figure`. Figures are built with the object API (no ``pyplot`` state,
no ``show``), so they render headless and in notebooks alike; :func:`save` writes one to disk.

Axes are labelled from the datasets' own metadata: a variable's ``description`` (or
``long_name``) and ``units`` attrs, e.g. "expected cost, retailer [$]". Where a dataset holds
outputs or parameters only as coordinate labels (tornado, Sobol, one-way parameters), the
metadata of the model named in ``ds.attrs["model"]`` is used. Dimensionless quantities (units
"1") get no unit suffix.

Points whose solve did not converge (a ``converged`` variable that is False) are always shown as
such -- hatched bars, red crosses, hatched grey cells -- never silently drawn as results. Points
outside the model's assumptions (an ``assumptions_hold`` variable that is False) are solved and
drawn, and marked: cross-hatched cells and stretches of one-way panels, dashed stretches of lines.
"""

from __future__ import annotations

import json
import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import xarray as xr
from matplotlib import colors as mcolors
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

__all__ = ["heatmap", "lines", "one_way", "one_way_regions", "region_map", "save", "sobol_bars",
           "tornado"]

#: Okabe & Ito's colour-blind-safe qualitative palette (without black and yellow, which read
#: poorly as lines and areas on white), in the order categories and lines take them.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000")
LOW_COLOR, HIGH_COLOR = "#0072B2", "#E69F00"  # tornado: parameter at its low / high end
FAIL_COLOR = "#D55E00"  # markers of non-converged points
_LINE_COLORS = tuple(c for c in PALETTE if c not in (FAIL_COLOR, "#F0E442"))
_HATCH = "///"


# ----------------------------------------------------------------------------- labels


def _model_meta(ds: xr.Dataset, name: str) -> tuple[str | None, str | None]:
    """(description, units) of ``name`` from the model named in ``ds.attrs['model']``."""
    model = ds.attrs.get("model")
    if not isinstance(model, str):
        return None, None
    from jaxgames.models import get_model  # deferred: plotting must not need the registry

    try:
        module = get_model(model)
    except ValueError:
        return None, None
    units = {**getattr(module, "UNITS", {}), **getattr(module, "OUTPUT_UNITS", {})}
    descriptions = getattr(module, "DESCRIPTIONS", {})
    if name not in units and name not in descriptions:
        # outputs of combined solve functions are prefixed: "noncooperative_t_r"
        for prefix in getattr(module, "SOLVE_FUNCTIONS", ()):
            if name.startswith(prefix + "_"):
                base = name[len(prefix) + 1:]
                desc = descriptions.get(base)
                return (f"{desc} ({prefix.replace('_', ' ')})" if desc else None,
                        units.get(base))
    return descriptions.get(name), units.get(name)


def _meta(ds: xr.Dataset, name: str) -> tuple[str | None, str | None]:
    """(description, units) of a variable or coordinate, falling back on the model metadata."""
    attrs = ds[name].attrs if name in ds.variables else {}
    desc = attrs.get("description") or attrs.get("long_name")
    units = attrs.get("units")
    if desc is None or units is None:
        mdesc, munits = _model_meta(ds, name)
        desc, units = desc or mdesc, units or munits
    return desc, units


def _with_units(text: str, units: str | None) -> str:
    return f"{text} [{units}]" if units and units != "1" else text


def _label(ds: xr.Dataset, name: str) -> str:
    """Axis label: "description [units]" (the name where there is no description)."""
    desc, units = _meta(ds, name)
    return _with_units(desc or name, units)


def _units(ds: xr.Dataset, name: str) -> str | None:
    return _meta(ds, name)[1]


def _fmt(v: float) -> str:
    """A compact number: 3 significant digits, exponents without padding (1e7, 2.5e-5)."""
    if not np.isfinite(v):
        return str(v)
    text = f"{float(v):.3g}"
    if "e" in text:
        mant, exp = text.split("e")
        text = f"{mant}e{int(exp)}"
    return text


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _tidy(ax: Axes) -> None:
    ax.spines[["top", "right"]].set_visible(False)


def _thousands(values: np.ndarray) -> bool:
    finite = np.abs(values[np.isfinite(values)])
    return bool(finite.size and 1e4 <= finite.max() < 1e9)


def _readable_numbers(axis, values: np.ndarray) -> None:
    """Tick labels without a detached offset or exponent: thousands separators (250,000) for
    amounts of money, compact exponents (2e-5) for small rates."""
    finite = np.abs(values[np.isfinite(values)])
    if _thousands(values):
        axis.set_major_formatter(ticker.StrMethodFormatter("{x:,.0f}"))
    elif finite.size and 0 < finite.max() < 1e-2:
        axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _fmt(v)))


# ----------------------------------------------------------------------------- tornado


def tornado(ds: xr.Dataset, output: str, *, ax: Axes | None = None,
            top: int | None = None) -> Figure:
    """Tornado diagram of one output: the swing caused by each parameter over its range.

    Each parameter gets a row of two bars starting at the base value of ``output``: blue to the
    output's value with the parameter at its low end, orange to the value at its high end. Rows
    are sorted by swing ``|high - low|``, largest on top, and labelled with the parameter's range
    ("f  0.1 → 0.3"). Rows whose solves did not converge are hatched.

    Args:
        ds: a tornado dataset (dims ``output``, ``parameter``; variables ``low``, ``high``,
            ``base``, ``swing``, optionally ``converged``; coords ``param_low``,
            ``param_high``).
        output: which output to draw.
        ax: axes to draw on (default: a new figure).
        top: show only the ``top`` parameters with the largest swing.
    """
    if output not in ds["output"].values:
        raise ValueError(f"output {output!r} is not in the tornado dataset; its outputs are "
                         f"{list(map(str, ds['output'].values))}")
    d = ds.sel(output=output)
    low, high = np.asarray(d["low"], float), np.asarray(d["high"], float)
    base = float(d["base"])
    swing = np.asarray(d["swing"], float) if "swing" in d else np.abs(high - low)
    conv = (np.asarray(d["converged"], bool) if "converged" in d
            else np.ones(low.shape, bool))
    names = [str(p) for p in d["parameter"].values]
    p_lo = np.asarray(d["param_low"], float)
    p_hi = np.asarray(d["param_high"], float)

    order = np.argsort(np.where(np.isfinite(swing), -swing, np.inf), kind="stable")
    if top is not None:
        order = order[:top]
    n = len(order)
    fig, ax = _new_axes(ax, (7.5, 1.2 + 0.42 * max(n, 2)))

    height = 0.7
    for row, i in enumerate(order):
        y = n - 1 - row  # largest swing on top
        hatch = None if conv[i] else _HATCH
        ends = [(low[i], LOW_COLOR), (high[i], HIGH_COLOR)]
        # the longer bar first, so that a shorter one on the same side stays visible
        ends.sort(key=lambda e: -abs(e[0] - base) if np.isfinite(e[0]) else 0.0)
        for value, color in ends:
            if np.isfinite(value):
                ax.barh(y, value - base, left=base, height=height, color=color,
                        hatch=hatch, edgecolor="0.25" if hatch else color, linewidth=0.6)
        if not (np.isfinite(low[i]) and np.isfinite(high[i])):
            ax.annotate("no value", (base, y), xytext=(4, 0), textcoords="offset points",
                        va="center", fontsize=8, color=FAIL_COLOR)
    ax.axvline(base, color="0.15", linewidth=1.2, zorder=3)
    ax.set_yticks(range(n), [f"{names[i]}   {_fmt(p_lo[i])} → {_fmt(p_hi[i])}"
                             for i in order[::-1]], fontsize=9)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlabel(_label(ds, output))
    _readable_numbers(ax.xaxis, np.concatenate([low, high, [base]]))
    ax.xaxis.grid(True, color="0.9")
    ax.set_axisbelow(True)
    _tidy(ax)

    handles = [Patch(color=LOW_COLOR, label="parameter at its low value"),
               Patch(color=HIGH_COLOR, label="parameter at its high value"),
               Line2D([], [], color="0.15", label="base: " + (
                   f"{base:,.0f}" if _thousands(np.array([base])) else _fmt(base)))]
    if not conv[order].all():
        handles.append(Patch(facecolor="white", edgecolor="0.25", hatch=_HATCH,
                             label="not converged"))
    ax.legend(handles=handles, loc="best", fontsize=8, frameon=True, framealpha=0.9)
    desc, _ = _meta(ds, output)
    ax.set_title(f"Tornado: {desc or output} ({output})" if desc else f"Tornado: {output}",
                 fontsize=11)
    return fig


# ----------------------------------------------------------------------------- one-way


def _base_params(ds: xr.Dataset) -> dict[str, float]:
    try:  # real scalars only: vectors and labels of categories have no single base value
        return {k: float(v) for k, v in json.loads(ds.attrs.get("base_params", "{}")).items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}
    except (TypeError, ValueError):
        return {}


def _set_log_ticks(axis, relative: bool) -> None:
    """Plain numbers on a log axis spanning a few decades at most: factors of 2 around 1 for
    relative values, 1-2-5 steps otherwise."""
    axis.set_major_locator(ticker.LogLocator(base=2, subs=(1.0,)) if relative
                           else ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _fmt(v)))
    axis.set_minor_formatter(ticker.NullFormatter())


def _step_edges(xs: np.ndarray, log: bool) -> np.ndarray:
    """Edges of the stretches of a sorted x axis that belong to each point: midpoints between
    neighbours (geometric on a log axis), the first and last point at the ends."""
    if xs.size < 2:
        return np.array([xs[0], xs[0]], float)
    t = np.log(xs) if log else xs
    mid = 0.5 * (t[1:] + t[:-1])
    return np.concatenate([[xs[0]], np.exp(mid) if log else mid, [xs[-1]]])


def _runs(values: Sequence) -> list[tuple[int, int, Any]]:
    """``(start, stop, value)`` of each run of equal consecutive values."""
    out: list[tuple[int, int, Any]] = []
    start = 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[start]:
            out.append((start, i, values[start]))
            start = i
    return out


def _category_key(raw: np.ndarray):
    """Integer or boolean category of each element (``None`` where not finite)."""
    if raw.dtype == bool:
        return [bool(v) for v in raw]
    vals = raw.astype(float)
    if np.any(np.isfinite(vals) & (vals != np.round(vals))):
        raise ValueError("a background needs categorical (integer or boolean) values")
    return [int(v) if np.isfinite(v) else None for v in vals]


def _category_colours(cats: Sequence, labels: Mapping[Any, str] | None) -> dict[Any, str]:
    """A colour per category present: in the order of ``labels`` (then by value)."""
    order = list(labels) if labels else []
    ranked = sorted(set(cats), key=lambda c: (order.index(c) if c in order else len(order), c))
    if len(ranked) <= len(PALETTE):
        palette = list(PALETTE)
    else:
        palette = [mcolors.to_hex(c) for c in
                   mpl.colormaps["tab20"](np.linspace(0, 1, 20))][: max(len(ranked), 1)]
    return {c: palette[k % len(palette)] for k, c in enumerate(ranked)}


_ASSUMPTION_HATCH = "xx"
_ASSUMPTION_EDGE = "0.45"


def _assumption_label(ds: xr.Dataset) -> str:
    desc = _meta(ds, "assumptions_hold")[0] if "assumptions_hold" in ds.variables else None
    return "assumptions violated" + (f" (assumptions_hold: {desc})" if desc else "")


def _hatch_handles(ds: xr.Dataset, failed: bool, violated: bool) -> list[Patch]:
    """Legend entries for the hatched cells of a map: not converged, assumptions violated."""
    out = []
    if failed:
        out.append(Patch(facecolor="0.82", edgecolor="0.35", hatch=_HATCH, label="not converged"))
    if violated:
        out.append(_assumption_patch(ds))
    return out


def _assumption_patch(ds: xr.Dataset) -> Patch:
    return Patch(facecolor="white", edgecolor=_ASSUMPTION_EDGE, hatch=_ASSUMPTION_HATCH,
                 label=_assumption_label(ds))


#: Lines drawn over a coloured background: dark colours and distinct dashes.
_DARK_LINES = ("#000000", "#A50F15", "#08519C", "#54278F", "#006D2C", "#7F2704")
_DASHES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 1)))


def one_way(ds: xr.Dataset, outputs: str | Sequence[str], *, x: str = "relative",
            ncols: int = 3, sharey: bool = True) -> Figure:
    """One-way sensitivity curves: each parameter varied alone, the others at their base values.

    One panel per parameter, one line per output. With ``sharey`` (the default) panels share
    the y axis, so the steepest panel is the parameter the outputs are most sensitive to; with
    ``sharey=False`` each panel has its own y range (for outputs whose scale changes a lot
    from one parameter to the next). All ``outputs`` must share their units; call once per
    unit for outputs with different units. Several outputs are drawn widest first, so that a
    line lying on another one still shows.

    The x axis is the parameter's ``value`` or its value ``relative`` to the base (a parameter
    whose base is 0 has no relative value and falls back to ``value``), on a log scale when the
    panel's range spans a factor of 4 or more. A dashed line marks the base value, and dots the
    outputs there when the base is one of the steps; red crosses mark points whose solve did
    not converge (at the bottom of the panel where the output is not finite), and a grey
    cross-hatched background the steps where the model's assumptions do not hold (a variable
    ``assumptions_hold`` that is False).

    Args:
        ds: a one-way dataset (dims ``parameter``, ``step``; coords ``value``, ``relative``).
        outputs: output variable name(s).
        x: ``"relative"`` or ``"value"``.
        ncols: panels per row.
        sharey: one y axis for all panels (default) or one per panel.
    """
    outputs = _check_one_way(ds, outputs, x)
    units = {_units(ds, o) for o in outputs}
    if len(units) > 1:
        raise ValueError(f"outputs {outputs} have different units {sorted(map(str, units))}; "
                         "plot one unit at a time")
    (unit,) = units
    ylabel = (_label(ds, outputs[0]) if len(outputs) == 1
              else _with_units(_common_description(ds, outputs) or "value", unit))
    colors = [_LINE_COLORS[k % len(_LINE_COLORS)] for k in range(len(outputs))]
    n = len(outputs)
    # widest first, later ones dashed: a line lying on an earlier one still shows
    widths = [1.8 if n == 1 else 1.3 + 0.75 * (n - 1 - k) for k in range(n)]
    styles = [dict(color=c, linewidth=w, linestyle="-" if k < 2 else _DASHES[k - 1])
              for k, (c, w) in enumerate(zip(colors, widths, strict=True))]
    what = (f"{_meta(ds, outputs[0])[0] or outputs[0]} ({outputs[0]})" if len(outputs) == 1
            else ", ".join(outputs))
    return _one_way_figure(ds, outputs, styles, x=x, ncols=ncols, sharey=sharey,
                           ylabel=ylabel, legend_lines=n > 1,
                           title=f"One-way sensitivity of {what}: each parameter varied alone")


def one_way_regions(ds: xr.Dataset, outputs: str | Sequence[str], background: str, *,
                    labels: Mapping[Any, str] | None = None, x: str = "relative",
                    ncols: int = 3, sharey: bool = False) -> Figure:
    """One-way curves over a background coloured by a categorical variable.

    Like :func:`one_way` (one panel per parameter, one line per output, the base value, non-
    converged points and violated assumptions marked), and behind the lines each step's
    stretch of the x axis takes the colour of the integer or boolean variable ``background``
    there -- e.g. which regime or case of a classification an equilibrium is in. The legend
    lists the categories that occur, as ``labels[value]`` (default ``"background = value"``);
    colours follow the order of ``labels``, then the values.

    ``outputs`` may have different units (e.g. a resource per day and a stock): each line's
    legend entry and the y label give its units. By default each panel has its own y axis.

    Args:
        ds: a one-way dataset (dims ``parameter``, ``step``).
        outputs: output variable name(s) drawn as lines.
        background: an integer or boolean variable of ``ds`` with dims ``parameter, step``.
        labels: ``{value: text}`` for the legend.
        x: ``"relative"`` or ``"value"``.
        ncols: panels per row.
        sharey: one y axis for all panels, or (default) one per panel.
    """
    outputs = _check_one_way(ds, outputs, x)
    if background not in ds.variables:
        raise ValueError(f"background {background!r} is not in the dataset; its variables are "
                         f"{list(map(str, ds.data_vars))}")
    if set(ds[background].dims) != {"parameter", "step"}:
        raise ValueError(f"background {background!r} needs dims (parameter, step), it has "
                         f"{tuple(ds[background].dims)}")
    try:
        cats = _category_key(np.asarray(ds[background].transpose("parameter", "step")).ravel())
    except ValueError:
        raise ValueError(f"background {background!r} needs categorical (integer or boolean) "
                         f"values, it has dtype {ds[background].dtype}") from None
    colours = _category_colours([c for c in cats if c is not None], labels)
    units: dict[str | None, list[str]] = {}
    for o in outputs:
        units.setdefault(_units(ds, o), []).append(o)
    if len(outputs) == 1:
        ylabel = _label(ds, outputs[0])
    elif len(units) == 1:
        ylabel = _with_units("value", next(iter(units)))
    else:
        ylabel = "; ".join(_with_units(", ".join(names), u) for u, names in units.items())
    styles = [dict(color=_DARK_LINES[k % len(_DARK_LINES)],
                   linestyle=_DASHES[k % len(_DASHES)], linewidth=1.9)
              for k in range(len(outputs))]
    text = dict(labels or {})
    bdesc = _meta(ds, background)[0]
    return _one_way_figure(
        ds, outputs, styles, x=x, ncols=ncols, sharey=sharey, ylabel=ylabel,
        legend_lines=True, line_units=len(units) > 1,
        background=(background, colours, {c: text.get(c, f"{background} = {c}")
                                          for c in colours}),
        title=f"One-way sensitivity of {', '.join(outputs)}; background: "
              f"{bdesc or background}")


def _common_description(ds: xr.Dataset, names: Sequence[str]) -> str | None:
    """The words the descriptions of ``names`` start with ("defender's payoff" for
    "defender's payoff, none mechanism" and "defender's payoff, backup mechanism")."""
    descs = [_meta(ds, n)[0] for n in names]
    if not all(descs):
        return None
    common = os.path.commonprefix(descs)
    if not all(len(d) == len(common) or not d[len(common)].isalnum() for d in descs):
        common = common[: max(common.rfind(" "), 0)]  # do not cut a word
    common = common.rstrip(" ,;:(-")
    return common if len(common) >= 4 else None


def _check_one_way(ds: xr.Dataset, outputs, x: str) -> list[str]:
    if x not in ("relative", "value"):
        raise ValueError(f"x must be 'relative' or 'value', got {x!r}")
    outputs = [outputs] if isinstance(outputs, str) else list(outputs)
    if not outputs:
        raise ValueError("one_way needs at least one output")
    missing = [o for o in outputs if o not in ds.data_vars]
    if missing:
        raise ValueError(f"output(s) {missing} are not in the dataset; its variables are "
                         f"{list(map(str, ds.data_vars))}")
    return outputs


def _one_way_figure(ds: xr.Dataset, outputs: list[str], styles: list[dict], *, x: str,
                    ncols: int, sharey: bool, ylabel: str, legend_lines: bool, title: str,
                    line_units: bool = False, background=None) -> Figure:
    """The panels of :func:`one_way` and :func:`one_way_regions`."""
    params = [str(p) for p in ds["parameter"].values]
    base = _base_params(ds)
    ncols = max(1, min(ncols, len(params)))
    nrows = math.ceil(len(params) / ncols)
    fig = Figure(figsize=(3.6 * ncols + 0.6, 2.9 * nrows + 1.2), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharey=sharey, squeeze=False)
    conv_all = ds["converged"] if "converged" in ds else None
    hold_all = ds["assumptions_hold"] if "assumptions_hold" in ds else None
    any_fail = any_base = any_violated = False
    seen: set = set()

    for k, (ax, p) in enumerate(zip(axes.flat, params, strict=False)):
        d = ds.sel(parameter=p)
        xs = np.asarray(d[x], float)
        kind = x
        if x == "relative" and not np.isfinite(xs).any():
            xs, kind = np.asarray(d["value"], float), "value"
        order = np.argsort(xs)
        xs = xs[order]
        if kind == "relative":
            x0 = 1.0
        elif p in base:
            x0 = base[p]
        else:
            v, r = np.asarray(d["value"], float), np.asarray(d["relative"], float)
            ok = np.isfinite(r) & (r != 0)
            x0 = float(v[ok][0] / r[ok][0]) if ok.any() else np.nan
        at_base = np.isclose(xs, x0, rtol=1e-9, atol=0.0)
        fail = (~np.asarray(conv_all.sel(parameter=p), bool)[order] if conv_all is not None
                else np.zeros(xs.shape, bool))
        any_fail |= bool(fail.any())
        finite = xs[np.isfinite(xs)]
        logx = bool(finite.size and finite.min() > 0 and finite.max() >= 4 * finite.min())
        edges = _step_edges(xs, logx) if np.isfinite(xs).all() else None
        if background is not None and edges is not None:
            name, colours, _ = background
            cats = _category_key(np.asarray(d[name])[order])
            for i, j, c in _runs(cats):
                if c is not None:
                    ax.axvspan(edges[i], edges[j], facecolor=colours[c], alpha=0.3,
                               linewidth=0, zorder=0)
                    seen.add(c)
        if hold_all is not None and edges is not None:
            bad = ~np.asarray(hold_all.sel(parameter=p), bool)[order]
            for i, j, v in _runs(list(bad)):
                if v:
                    any_violated = True
                    ax.axvspan(edges[i], edges[j], facecolor="none", hatch=_ASSUMPTION_HATCH,
                               edgecolor=_ASSUMPTION_EDGE, linewidth=0, zorder=0.5)
        for o, style in zip(outputs, styles, strict=True):
            ys = np.asarray(d[o], float)[order]
            ax.plot(xs, ys, zorder=2, **style)
            # (empty marker lines are skipped: unclipped, they would pad the layout at (0, 0))
            if at_base.any():
                any_base = True
                ax.plot(xs[at_base], ys[at_base], "o", color=style["color"],
                        markeredgecolor="k", markersize=6, zorder=4)
            bad_finite = fail & np.isfinite(ys)
            if bad_finite.any():
                ax.plot(xs[bad_finite], ys[bad_finite], "x", color=FAIL_COLOR, markersize=7,
                        markeredgewidth=2, zorder=5)
            bad_nan = fail & ~np.isfinite(ys) & np.isfinite(xs)
            if bad_nan.any():
                ax.plot(xs[bad_nan], np.full(bad_nan.sum(), 0.03), "x", color=FAIL_COLOR,
                        markersize=7, markeredgewidth=2, zorder=5, clip_on=False,
                        transform=ax.get_xaxis_transform())
        if np.isfinite(x0):
            ax.axvline(x0, color="0.5", linestyle="--", linewidth=1)
        if logx:
            ax.set_xscale("log")
            if finite.max() <= 1e3 * finite.min():
                _set_log_ticks(ax.xaxis, relative=kind == "relative" and
                               finite.max() <= 64 * finite.min())
        if background is not None and edges is not None:
            ax.set_xlim(edges[0], edges[-1])
        desc, punits = _meta(ds, p)
        ax.set_title(textwrap.fill(p if desc is None else f"{p}: {desc}", 44), fontsize=9)
        ax.set_xlabel(f"{p} / base value" if kind == "relative"
                      else _with_units(p, punits), fontsize=9)
        if ax.get_xscale() == "linear":
            _readable_numbers(ax.xaxis, xs)
        if k % ncols == 0:
            ax.set_ylabel(ylabel, fontsize=9 if len(ylabel) < 40 else 8)
        if k % ncols == 0 or not sharey:
            _readable_numbers(ax.yaxis, np.concatenate(
                [np.asarray(ds[o] if sharey else d[o], float).ravel() for o in outputs]))
        ax.tick_params(labelsize=8)
        ax.grid(True, color="0.92")
        _tidy(ax)
    for ax in axes.flat[len(params):]:
        ax.set_visible(False)

    handles = []
    if legend_lines:
        for o, style in zip(outputs, styles, strict=True):
            desc, units = _meta(ds, o)
            text = f"{desc} ({o})" if desc else o
            handles.append(Line2D([], [], **{**style, "linewidth": max(style["linewidth"],
                                                                       1.8)},
                                  label=_with_units(text, units) if line_units else text))
    handles.append(Line2D([], [], color="0.5", linestyle="--", marker="o" if any_base else "",
                          markersize=6, markerfacecolor="0.5", markeredgecolor="k",
                          label="base point" if any_base else "base value"))
    if any_fail:
        handles.append(Line2D([], [], color=FAIL_COLOR, linestyle="", marker="x",
                              markersize=7, markeredgewidth=2, label="not converged"))
    if any_violated:
        handles.append(_assumption_patch(ds))
    if background is not None:
        name, colours, text = background
        cat_handles = [Patch(facecolor=colours[c], alpha=0.45, label=text[c])
                       for c in colours if c in seen]
        fig.legend(handles=cat_handles, loc="outside right center", fontsize=8,
                   frameon=False, title=textwrap.fill(_meta(ds, name)[0] or name, 28),
                   title_fontsize=9)
    fig.legend(handles=handles, loc="outside lower center",
               ncols=min(len(handles), 3 if not legend_lines or len(outputs) < 4 else 4),
               fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=11)
    return fig


# ----------------------------------------------------------------------------- 2-D maps


def _edges(c: np.ndarray, log: bool) -> np.ndarray:
    """Cell edges around cell centres ``c`` (geometric midpoints on a log axis)."""
    t = np.log(c) if log else c.astype(float)
    if t.size == 1:
        e = np.array([t[0] - 0.5, t[0] + 0.5])
    else:
        mid = 0.5 * (t[1:] + t[:-1])
        e = np.concatenate([[2 * t[0] - mid[0]], mid, [2 * t[-1] - mid[-1]]])
    return np.exp(e) if log else e


def _sel(obj, sel: Mapping[str, Any]):
    """``obj.sel(sel)``: nearest value on numeric coords (float round-off in a file or on the
    command line), exact match on labels (categorical parameters, agents)."""
    numeric = {k: v for k, v in sel.items()
               if np.issubdtype(np.asarray(obj[k].values).dtype, np.number)}
    exact = {k: v for k, v in sel.items() if k not in numeric}
    if numeric:
        obj = obj.sel(numeric, method="nearest")
    return obj.sel(exact) if exact else obj


def _positions(values) -> tuple[np.ndarray, list[str] | None]:
    """Where a coordinate's values go on an axis: numbers where they are, labels (a categorical
    parameter such as isb's ``structure``, agents) at 0, 1, ... in their order, with the labels
    to write at those ticks (else ``None``)."""
    v = np.asarray(values)
    if v.dtype.kind in "biuf":
        return v.astype(float), None
    return np.arange(v.size, dtype=float), [str(t) for t in v]


def _is_log(c: np.ndarray) -> bool:
    c = c[np.isfinite(c)]
    return bool(c.size and c.min() > 0 and c.max() > 100 * c.min())


class _Grid:
    """One variable on a (y, x) grid, selected from a dataset, ready to draw."""

    def __init__(self, ds: xr.Dataset, var: str, x: str, y: str, sel: Mapping[str, Any],
                 what: str):
        if var not in ds.variables:
            raise ValueError(f"{var!r} is not in the dataset; its variables are "
                             f"{list(map(str, ds.data_vars))}")
        if x == y:
            raise ValueError(f"x and y must differ, both are {x!r}")
        da = ds[var]
        if sel:
            da = _sel(da, sel)
        if set(da.dims) != {x, y}:
            extra = [d for d in da.dims if d not in (x, y)]
            hint = (f"; select {extra} with keyword arguments, e.g. "
                    f"{what}(ds, {var!r}, {x!r}, {y!r}, {extra[0]}=...)" if extra else "")
            raise ValueError(f"{what} of {var!r} needs a 2-D selection over (y={y!r}, x={x!r}), "
                             f"but after selecting {dict(sel)} its dims are {tuple(da.dims)}"
                             + hint)
        self.da = da.transpose(y, x)
        self.x, self.xticks = _positions(self.da[x].values)
        self.y, self.yticks = _positions(self.da[y].values)
        self.xlog = self.xticks is None and _is_log(self.x)
        self.ylog = self.yticks is None and _is_log(self.y)
        # Labels have no values between them: no contour lines across a categorical axis.
        self.categorical = self.xticks is not None or self.yticks is not None
        self.xe, self.ye = _edges(self.x, self.xlog), _edges(self.y, self.ylog)
        self.failed = None
        if "converged" in ds and var != "converged":
            conv = ds["converged"]
            conv = _sel(conv, {k: v for k, v in sel.items() if k in conv.dims})
            if set(conv.dims) == {x, y}:
                self.failed = ~np.asarray(conv.transpose(y, x), bool)
        self.violated = None
        if "assumptions_hold" in ds and var != "assumptions_hold":
            hold = ds["assumptions_hold"]
            hold = _sel(hold, {k: v for k, v in sel.items() if k in hold.dims})
            if set(hold.dims) <= {x, y}:
                hold = hold.broadcast_like(self.da)
                self.violated = ~np.asarray(hold.transpose(y, x), bool)
        self.at = ", ".join(f"{k} = {_value_text(da[k].values.item())}" for k in sel
                            if k in da.coords and da[k].ndim == 0)
        self.ds, self.var, self.xname, self.yname = ds, var, x, y

    def axes(self, ax: Axes, title: str) -> None:
        ax.set_xlim(self.xe.min(), self.xe.max())
        ax.set_ylim(self.ye.min(), self.ye.max())
        if self.xticks is not None:
            ax.set_xticks(self.x, self.xticks)
        elif self.xlog:
            ax.set_xscale("log")
        else:
            _readable_numbers(ax.xaxis, self.x)
        if self.yticks is not None:
            ax.set_yticks(self.y, self.yticks)
        elif self.ylog:
            ax.set_yscale("log")
        else:
            _readable_numbers(ax.yaxis, self.y)
        ax.set_xlabel(_label(self.ds, self.xname))
        ax.set_ylabel(_label(self.ds, self.yname))
        ax.set_title(textwrap.fill(title, 60) + (f"\nat {self.at}" if self.at else ""),
                     fontsize=11)

    def hatch_failed(self, ax: Axes) -> bool:
        """Grey, hatched cells where the solve did not converge; True if there were any."""
        if self.failed is None or not self.failed.any():
            return False
        mask = np.ma.masked_where(~self.failed, np.ones(self.failed.shape))
        ax.pcolormesh(self.xe, self.ye, mask, cmap=mcolors.ListedColormap(["0.82"]),
                      shading="flat", zorder=2)
        # the hatch: one filled contour per failed cell would blur edges; pcolor keeps cells
        ax.pcolor(self.xe, self.ye, mask, facecolor="none", edgecolor="0.35", hatch=_HATCH,
                  linewidth=0.0, zorder=2.1)
        return True

    def hatch_violated(self, ax: Axes) -> bool:
        """Cross-hatch over the cells where the model's assumptions do not hold."""
        if self.violated is None or not self.violated.any():
            return False
        mask = np.ma.masked_where(~self.violated, np.ones(self.violated.shape))
        ax.pcolor(self.xe, self.ye, mask, facecolor="none", edgecolor=_ASSUMPTION_EDGE,
                  hatch=_ASSUMPTION_HATCH, linewidth=0.0, zorder=2.2)
        return True


def _contour_levels(finite: np.ndarray, levels: int | Sequence[float] | None,
                    log: bool) -> np.ndarray:
    """Contour levels strictly inside the data range (a level at the minimum of data that sit
    on a bound, e.g. zero investment, would trace round-off noise)."""
    lo, hi = float(finite.min()), float(finite.max())
    if levels is not None and not isinstance(levels, int):
        lv = np.asarray(levels, float)
    elif log:
        n = 7 if levels is None else levels
        lv = ticker.LogLocator(subs=(1.0, 2.0, 5.0)).tick_values(lo, hi)
        if ((lv > lo) & (lv < hi)).sum() > n + 3:
            lv = ticker.LogLocator(subs=(1.0,)).tick_values(lo, hi)
    else:
        lv = ticker.MaxNLocator((7 if levels is None else levels) + 1).tick_values(lo, hi)
    if log:
        lv = lv[lv > 0]
    t, tlo, thi = (np.log(lv), np.log(lo), np.log(hi)) if log else (lv, lo, hi)
    margin = 1e-6 * (thi - tlo)
    return lv[(t > tlo + margin) & (t < thi - margin)]


def heatmap(ds: xr.Dataset, var: str, x: str, y: str, *, contours: bool = True,
            levels: int | Sequence[float] | None = None, ax: Axes | None = None,
            facet: str | None = None, **sel: Any) -> Figure:
    """Colour map of ``ds[var]`` over two sweep dimensions, with labelled contour lines.

    Other dimensions are fixed by keyword: ``heatmap(ds, "t_r", "f", "D_J", p=0.3)`` selects
    the nearest ``p``. Axes are logarithmic where a coordinate is positive and spans more than
    two decades. Signed data (both signs present) get a diverging colour map centred at 0,
    others viridis. Cells whose solve did not converge are grey and hatched, and left out of
    the contours; cells where the model's assumptions do not hold (``assumptions_hold``
    False) are cross-hatched over their colour. An axis of labels (a categorical parameter)
    has one column or row per label, in the coordinate's order, and no contours.

    With ``facet``, a third dimension: one panel per value of it, side by side, sharing the
    axes, the colour scale and the contour levels (so that panels compare at a glance).

    Raises:
        ValueError: naming the remaining dims if the selection is not 2-D over ``(y, x)``.
    """
    if facet is None:
        grids = [_Grid(ds, var, x, y, sel, "heatmap")]
    else:
        if ax is not None:
            raise ValueError("heatmap with facet draws its own panels; do not pass ax")
        if facet in (x, y) or facet in sel:
            raise ValueError(f"facet={facet!r} must be another dim than x, y and the selection")
        if facet not in ds[var].dims:
            raise ValueError(f"facet={facet!r} is not a dim of {var!r} (dims "
                             f"{tuple(ds[var].dims)})")
        grids = [_Grid(ds, var, x, y, {**sel, facet: v}, "heatmap")
                 for v in np.asarray(ds[facet].values)]
    zs = []
    for g in grids:
        z = np.asarray(g.da, float)
        zs.append(np.where(g.failed, np.nan, z) if g.failed is not None else z)
    finite = np.concatenate([z[np.isfinite(z)] for z in zs])
    signed = bool(finite.size and finite.min() < 0 < finite.max())
    logz = bool(finite.size and finite.min() > 0 and finite.max() > 100 * finite.min())
    if signed:
        cmap, norm = "RdBu_r", mcolors.CenteredNorm(vcenter=0.0)
    elif logz:
        cmap, norm = "viridis", mcolors.LogNorm(finite.min(), finite.max())
    elif finite.size:
        cmap, norm = "viridis", mcolors.Normalize(finite.min(), finite.max())
    else:
        cmap, norm = "viridis", None
    lv = (_contour_levels(finite, levels, logz)
          if contours and finite.size and np.ptp(finite) > 0 else np.array([]))
    if facet is None:
        fig, ax = _new_axes(ax, (6.4, 4.8))
        panels = [ax]
    else:
        fig = Figure(figsize=(4.6 * len(grids) + 1.4, 4.8), layout="constrained")
        panels = list(fig.subplots(1, len(grids), sharex=True, sharey=True, squeeze=False)[0])
    failed = violated = False
    mesh = None
    css = []
    for g, z, pax in zip(grids, zs, panels, strict=True):
        mesh = pax.pcolormesh(g.xe, g.ye, np.ma.masked_invalid(z), cmap=cmap, norm=norm,
                              shading="flat", zorder=1)
        if lv.size and min(z.shape) >= 2 and np.isfinite(z).any() and not g.categorical:
            cs = pax.contour(g.x, g.y, np.ma.masked_invalid(z), levels=lv, colors="k",
                             linewidths=0.8, alpha=0.75, zorder=3)
            pax.clabel(cs, fontsize=8, inline=True,
                       fmt="{:,.0f}".format if not logz and _thousands(finite) else _fmt)
            css.append(cs)
        failed |= g.hatch_failed(pax)
        violated |= g.hatch_violated(pax)
    bar = fig.colorbar(mesh, ax=panels)
    bar.set_label(_label(ds, var))
    if not logz:
        _readable_numbers(bar.ax.yaxis, finite)
    if css:
        bar.add_lines(css[0])
    handles = []
    handles += _hatch_handles(ds, failed, violated)
    desc, _ = _meta(ds, var)
    title = f"{desc} ({var})" if desc else var
    if facet is None:
        if handles:
            panels[0].legend(handles=handles, loc="upper left", bbox_to_anchor=(0, -0.14),
                             fontsize=8, frameon=False)
        grids[0].axes(panels[0], title)
    else:
        fdesc = _meta(ds, facet)[0]
        for k, (g, pax) in enumerate(zip(grids, panels, strict=True)):
            g.axes(pax, "")
            value = np.asarray(ds[facet].values)[k]
            pax.set_title((f"{fdesc}: " if fdesc else "") + f"{facet} = {_value_text(value)}",
                          fontsize=10)
            if k:
                pax.set_ylabel("")
        if handles:
            fig.legend(handles=handles, loc="outside lower center", ncols=len(handles),
                       fontsize=8, frameon=False)
        at = grids[0].at.split(", ")
        at = ", ".join(a for a in at if a and not a.startswith(f"{facet} ="))
        fig.suptitle(title + (f" at {at}" if at else ""), fontsize=11)
    return fig


def region_map(ds: xr.Dataset, var: str, x: str, y: str, *,
               labels: Mapping[Any, str] | None = None, ax: Axes | None = None,
               **sel: Any) -> Figure:
    """Map of a categorical (integer or boolean) variable over two sweep dimensions.

    Each category present gets a discrete colour and a legend entry ``labels[value]`` (default
    ``str(value)``); categories absent from the selection are not listed. When ``labels`` is
    given, colours follow its order, so the same category has the same colour on every map.
    Other dimensions are fixed by keyword as in :func:`heatmap`; non-converged cells are
    hatched.
    """
    g = _Grid(ds, var, x, y, sel, "region_map")
    raw = np.asarray(g.da)
    is_bool = raw.dtype == bool
    vals = raw.astype(float)
    present = np.unique(vals[np.isfinite(vals)])
    if present.size == 0:
        raise ValueError(f"{var!r} has no finite values in this selection")
    if np.any(present != np.round(present)):
        raise ValueError(f"region_map needs categorical (integer or boolean) values; {var!r} "
                         f"has {present[:5]}...; use heatmap for continuous data")

    def key(v: float):
        return bool(v) if is_bool else int(v)

    cats = [key(v) for v in present]
    order = list(labels) if labels else []
    slot = {c: (order.index(c) if c in order else len(order) + k) for k, c in enumerate(cats)}
    n_slots = max(slot.values()) + 1
    if n_slots <= len(PALETTE):
        palette = list(PALETTE[:n_slots])
    else:
        palette = [mcolors.to_hex(c) for c in
                   mpl.colormaps["cividis"](np.linspace(0, 1, n_slots))]
    index = np.full(vals.shape, np.nan)
    for v, c in zip(present, cats, strict=True):
        index[vals == v] = slot[c]
    fig, ax = _new_axes(ax, (6.8, 4.8))
    cmap = mcolors.ListedColormap(palette)
    norm = mcolors.BoundaryNorm(np.arange(n_slots + 1) - 0.5, n_slots)
    ax.pcolormesh(g.xe, g.ye, np.ma.masked_invalid(index), cmap=cmap, norm=norm, shading="flat",
                  zorder=1)
    failed = g.hatch_failed(ax)
    violated = g.hatch_violated(ax)
    text = dict(labels or {})
    handles = [Patch(color=palette[slot[c]], label=text.get(c, str(c)))
               for c in sorted(cats, key=lambda c: slot[c])]
    handles += _hatch_handles(ds, failed, violated)
    desc, _ = _meta(ds, var)
    ax.legend(handles=handles, title=var, loc="upper left", bbox_to_anchor=(1.02, 1),
              fontsize=9, title_fontsize=9, frameon=False)
    g.axes(ax, f"{desc} ({var})" if desc else var)
    return fig


# ----------------------------------------------------------------------------- Sobol


def sobol_bars(ds: xr.Dataset, output: str, *, ax: Axes | None = None) -> Figure:
    """First-order (S1) and total-effect (ST) Sobol indices of one output, per parameter.

    Error bars are the confidence half-widths ``S1_conf``/``ST_conf``. Parameters are sorted by
    ST, most influential first; the gap between ST and S1 is the share of variance a parameter
    causes through interactions.
    """
    if output not in ds["output"].values:
        raise ValueError(f"output {output!r} is not in the Sobol dataset; its outputs are "
                         f"{list(map(str, ds['output'].values))}")
    d = ds.sel(output=output)
    names = [str(p) for p in d["parameter"].values]
    st = np.asarray(d["ST"], float)
    order = np.argsort(np.where(np.isfinite(st), -st, np.inf), kind="stable")
    n = len(names)
    fig, ax = _new_axes(ax, (max(5.0, 0.75 * n + 2.0), 4.2))
    pos = np.arange(n)
    w = 0.38
    for shift, idx, color, label in ((-w / 2, "S1", LOW_COLOR, "first order $S_1$"),
                                     (w / 2, "ST", HIGH_COLOR, "total effect $S_T$")):
        val = np.asarray(d[idx], float)[order]
        conf = np.asarray(d[f"{idx}_conf"], float)[order] if f"{idx}_conf" in d else None
        ax.bar(pos + shift, val, w, yerr=conf, color=color, label=label, capsize=3,
               error_kw={"elinewidth": 1, "ecolor": "0.2"})
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.set_xticks(pos, [names[i] for i in order], rotation=45 if n > 6 else 0,
                  ha="right" if n > 6 else "center")
    ax.set_ylabel("Sobol index (share of output variance)")
    ax.set_xlabel("parameter")
    ax.yaxis.grid(True, color="0.9")
    ax.set_axisbelow(True)
    _tidy(ax)
    ax.legend(fontsize=9, frameon=False)
    desc, _ = _meta(ds, output)
    info = [text.format(ds.attrs[k]) for k, text in (("n_base", "base sample N = {}"),
                                                      ("n_evaluations", "{} model evaluations"))
            if k in ds.attrs]
    conf = ds.attrs.get("confidence")
    bars = (f"error bars: {float(conf):.0%} confidence intervals" if conf is not None
            else "error bars: confidence intervals")
    ax.set_title(f"Sobol indices of {desc + ' (' + output + ')' if desc else output}"
                 + (f"\n{', '.join(info)}; {bars}" if info else ""),
                 fontsize=11)
    return fig


# ----------------------------------------------------------------------------- files


def save(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix), creating folders; close the figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    if getattr(fig.canvas, "manager", None) is not None:  # a pyplot figure: release it
        import matplotlib.pyplot as plt

        plt.close(fig)
    return path


def _crossings(xs: np.ndarray, vs: np.ndarray) -> list[float]:
    """The x where the curve ``x - v(x)`` changes sign (linear interpolation between steps)."""
    d = xs - vs
    ok = np.isfinite(d)
    out: list[float] = []
    idx = np.flatnonzero(ok)
    for a, b in zip(idx[:-1], idx[1:], strict=True):
        if d[a] == 0:
            out.append(float(xs[a]))
        elif d[a] * d[b] < 0:
            out.append(float(xs[a] + (xs[b] - xs[a]) * d[a] / (d[a] - d[b])))
    if idx.size and d[idx[-1]] == 0:
        out.append(float(xs[idx[-1]]))
    return out


def _plot_line(ax: Axes, xs: np.ndarray, ys: np.ndarray, hold: np.ndarray | None,
               **style) -> bool:
    """A line, dashed over the steps where ``hold`` is False; True if there were any."""
    if hold is None or hold.all():
        ax.plot(xs, ys, **style)
        return False
    bad = ~hold
    near = bad | np.r_[bad[1:], False] | np.r_[False, bad[:-1]]  # segments touching them
    ax.plot(xs, np.where(hold, ys, np.nan), **style)
    ax.plot(xs, np.where(near, ys, np.nan), **{**style, "linestyle": "--", "label": None})
    return True


def _band(ax: Axes, xs: np.ndarray, lo: np.ndarray, hi: np.ndarray, color, label) -> None:
    """The band between ``lo`` and ``hi`` in a line's colour; ``label`` once per panel."""
    labelled = any(c.get_label() == label for c in ax.collections)
    ax.fill_between(xs, lo, hi, color=color, alpha=0.2, linewidth=0,
                    label=None if labelled else label)


def _value_text(value) -> str:
    """A coordinate value for a label: compact numbers, other values (names) as they are."""
    try:
        return _fmt(float(value))
    except (TypeError, ValueError):
        return str(value)


def _lines_data(ds: xr.Dataset, names: list[str], x: str, sel: dict, by: str | None,
                xmarks: list[str], bands: Mapping[str, tuple[str, str]]) -> xr.Dataset:
    """``ds`` at ``sel``, checked to leave the lines' variables along ``x`` (and ``by``)."""
    bounds = [b for n in names if n in bands for b in bands[n]]
    missing = [n for n in [*names, x, *xmarks, *([by] if by else []), *bounds]
               if n not in ds.variables]
    if missing:
        raise ValueError(f"no variable(s) {missing} in the dataset")
    if by is not None and (by == x or by in sel):
        raise ValueError(f"by={by!r} must be another dim than x and not selected")
    sub = _sel(ds, sel) if sel else ds
    if by is not None and by not in sub[names[0]].dims:
        raise ValueError(f"by={by!r} is not a dim of {names[0]!r} (dims {sub[names[0]].dims})")
    extra = [d for d in sub[names[0]].dims if d not in (x, by)]
    if extra:
        raise ValueError(f"dims are {sub[names[0]].dims}; select {extra} (sel=...) to leave "
                         f"only {x!r}" + (f" and {by!r}" if by else ""))
    return sub


def lines(ds: xr.Dataset, groups, x: str, *, sel: dict | None = None, title: str | None = None,
          ncols: int = 3, by: str | None = None, xmarks: Sequence[str] | None = None,
          bands: Mapping[str, tuple[str, str]] | None = None,
          band_label: str | None = None) -> Figure:
    """Line panels along the coordinate ``x``: one panel per group of variables.

    ``groups`` is a list of variable names (one panel) or ``{panel title: [names]}``. Each
    line is labelled by its name; a panel's y label gives the shared units. Other dims must be
    fixed by ``sel`` (nearest values), except ``by``: one line per value of that dim (one
    colour per value; several variables in a panel then differ by their dashes). Points that
    did not converge are marked with red x; stretches where the model's assumptions do not
    hold (``assumptions_hold`` False) are dashed.

    ``xmarks`` names variables that are thresholds of ``x`` (e.g. a deterrence threshold):
    where a line's ``x`` crosses such a variable, a dotted vertical line in the line's colour
    marks it, labelled with its value.

    ``bands`` maps a line's variable to the names of two variables holding a lower and an
    upper bound (e.g. a confidence interval of a mean over replications): the band between
    them is shaded in the line's colour, labelled ``band_label`` once per panel.

    An ``x`` of labels (a categorical parameter) puts them at evenly spaced ticks in the
    coordinate's order, each value marked with a dot.
    """
    if isinstance(groups, str):
        groups = {"": [groups]}
    elif not isinstance(groups, dict):
        groups = {"": list(groups)}
    sel = dict(sel or {})
    xmarks = list(xmarks or [])
    names = [n for g in groups.values() for n in g]
    bands = dict(bands or {})
    sub = _lines_data(ds, names, x, sel, by, xmarks, bands)
    n = len(groups)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.6 * nrows + 0.4) if by is None else
                 (8.2 * ncols, 4.2 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    xs, xticks = _positions(sub[x].values)
    if xticks is not None and xmarks:
        raise ValueError(f"xmarks need a numeric x; {x!r} holds labels {xticks}")
    slices = ([(None, {})] if by is None else
              [(v, {by: v}) for v in np.asarray(sub[by].values)])

    def along_x(name, where):
        da = sub[name].isel({by: where}) if by is not None and by in sub[name].dims else sub[name]
        da = da.transpose(x, ...) if x in da.dims else da
        return np.broadcast_to(np.asarray(da, float), xs.shape)

    def mask(name, where):
        if name not in sub:
            return None
        return np.broadcast_to(along_x(name, where).astype(bool), xs.shape)

    for ax, (panel, members) in zip(axes, groups.items(), strict=False):
        any_violated = False
        for m_i, name in enumerate(members):
            for s_i, (value, _) in enumerate(slices):
                ys = along_x(name, s_i)
                if by is None:
                    label, style = name, dict(lw=1.8)
                else:
                    text = f"{by} = {_value_text(value)}"
                    label = text if len(members) == 1 else f"{name}, {text}"
                    style = dict(lw=1.8, color=_LINE_COLORS[s_i % len(_LINE_COLORS)],
                                 linestyle=_DASHES[m_i % len(_DASHES)])
                if xticks is not None:
                    style["marker"] = "o"
                hold = mask("assumptions_hold", s_i)
                any_violated |= _plot_line(ax, xs, ys, hold, label=label, **style)
                color = ax.lines[-1].get_color()
                if name in bands:
                    _band(ax, xs, *(along_x(b, s_i) for b in bands[name]), color, band_label)
                conv = mask("converged", s_i)
                bad = ~conv if conv is not None else np.zeros(len(xs), bool)
                if bad.any():
                    ax.plot(xs[bad], ys[bad], "x", color="red", ms=6)
                for mark in xmarks:
                    desc = _meta(ds, mark)[0]
                    for xc in _crossings(xs, along_x(mark, s_i)):
                        text = f"{desc} ({mark})" if desc else mark
                        if by is not None and len(slices) > 1:
                            text += f" = {_fmt(xc)} at {by} = {_value_text(value)}"
                        else:
                            text += f" = {_fmt(xc)}"
                        ax.axvline(xc, color=color, linestyle=":", linewidth=1.4, label=text)
        units = {_units(ds, m) for m in members}
        if by is not None and len(members) == 1:
            ax.set_ylabel(_label(ds, members[0]))
        else:
            ax.set_ylabel(f"[{units.pop()}]" if len(units) == 1 and None not in units else "")
        ax.set_xlabel(_label(ds, x))
        if xticks is not None:
            ax.set_xticks(xs, xticks)
        elif xs.min() > 0 and xs.max() > 100 * xs.min():
            ax.set_xscale("log")
        ax.set_title(panel, fontsize=11)
        ax.grid(True, color="0.92")
        handles, _ = ax.get_legend_handles_labels()
        if any_violated:
            handles.append(Line2D([], [], color="0.4", linestyle="--",
                                  label=_assumption_label(ds) + " (dashed)"))
        by_desc = _meta(ds, by)[0] if by is not None else None
        # with one line per value of `by`, the legend goes beside the panel, clear of lines
        ax.legend(handles=handles, fontsize=8, frameon=False,
                  title=f"{by}: {by_desc}" if by_desc and len(members) == 1 else None,
                  title_fontsize=8,
                  **(dict(loc="upper left", bbox_to_anchor=(1.02, 1.0))
                     if by is not None else {}))
        _readable_numbers(ax.yaxis, np.concatenate(
            [np.asarray(sub[m], float).ravel() for m in members]))
    for ax in axes[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return fig
