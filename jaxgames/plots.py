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
such -- hatched bars, red crosses, hatched grey cells -- never silently drawn as results.
"""

from __future__ import annotations

import json
import math
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

__all__ = ["heatmap", "one_way", "region_map", "save", "sobol_bars", "tornado"]

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
    try:
        return {k: float(v) for k, v in json.loads(ds.attrs.get("base_params", "{}")).items()}
    except (TypeError, ValueError):
        return {}


def _set_log_ticks(axis, relative: bool) -> None:
    """Plain numbers on a log axis spanning a few decades at most: factors of 2 around 1 for
    relative values, 1-2-5 steps otherwise."""
    axis.set_major_locator(ticker.LogLocator(base=2, subs=(1.0,)) if relative
                           else ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _fmt(v)))
    axis.set_minor_formatter(ticker.NullFormatter())


def one_way(ds: xr.Dataset, outputs: str | Sequence[str], *, x: str = "relative",
            ncols: int = 3) -> Figure:
    """One-way sensitivity curves: each parameter varied alone, the others at their base values.

    One panel per parameter (panels share the y axis, so the steepest panel is the parameter
    the outputs are most sensitive to), one line per output. All ``outputs`` must therefore
    share their units; call once per unit for outputs with different units.

    The x axis is the parameter's ``value`` or its value ``relative`` to the base (a parameter
    whose base is 0 has no relative value and falls back to ``value``), on a log scale when the
    panel's range spans a factor of 4 or more. A dashed line marks the base value, and dots the
    outputs there when the base is one of the steps; red crosses mark points whose solve did
    not converge (at the bottom of the panel where the output is not finite).

    Args:
        ds: a one-way dataset (dims ``parameter``, ``step``; coords ``value``, ``relative``).
        outputs: output variable name(s).
        x: ``"relative"`` or ``"value"``.
        ncols: panels per row.
    """
    if x not in ("relative", "value"):
        raise ValueError(f"x must be 'relative' or 'value', got {x!r}")
    outputs = [outputs] if isinstance(outputs, str) else list(outputs)
    if not outputs:
        raise ValueError("one_way needs at least one output")
    missing = [o for o in outputs if o not in ds.data_vars]
    if missing:
        raise ValueError(f"output(s) {missing} are not in the dataset; its variables are "
                         f"{list(map(str, ds.data_vars))}")
    units = {_units(ds, o) for o in outputs}
    if len(units) > 1:
        raise ValueError(f"outputs {outputs} have different units {sorted(map(str, units))}; "
                         "plot one unit at a time")
    (unit,) = units

    params = [str(p) for p in ds["parameter"].values]
    base = _base_params(ds)
    ncols = max(1, min(ncols, len(params)))
    nrows = math.ceil(len(params) / ncols)
    fig = Figure(figsize=(3.6 * ncols + 0.6, 2.9 * nrows + 1.2), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False)
    conv_all = ds["converged"] if "converged" in ds else None
    colors = {o: _LINE_COLORS[k % len(_LINE_COLORS)] for k, o in enumerate(outputs)}
    any_fail = any_base = False

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
        for o in outputs:
            ys = np.asarray(d[o], float)[order]
            ax.plot(xs, ys, color=colors[o], linewidth=1.8)
            # (empty marker lines are skipped: unclipped, they would pad the layout at (0, 0))
            if at_base.any():
                any_base = True
                ax.plot(xs[at_base], ys[at_base], "o", color=colors[o], markeredgecolor="k",
                        markersize=6, zorder=4)
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
        finite = xs[np.isfinite(xs)]
        if finite.size and finite.min() > 0 and finite.max() >= 4 * finite.min():
            ax.set_xscale("log")
            if finite.max() <= 1e3 * finite.min():
                _set_log_ticks(ax.xaxis, relative=kind == "relative" and
                               finite.max() <= 64 * finite.min())
        desc, punits = _meta(ds, p)
        ax.set_title(textwrap.fill(p if desc is None else f"{p}: {desc}", 44), fontsize=9)
        ax.set_xlabel(f"{p} / base value" if kind == "relative"
                      else _with_units(p, punits), fontsize=9)
        if ax.get_xscale() == "linear":
            _readable_numbers(ax.xaxis, xs)
        if k % ncols == 0:
            ax.set_ylabel(_label(ds, outputs[0]) if len(outputs) == 1
                          else _with_units("value", unit))
            _readable_numbers(ax.yaxis, np.concatenate(
                [np.asarray(ds[o], float).ravel() for o in outputs]))
        ax.tick_params(labelsize=8)
        ax.grid(True, color="0.92")
        _tidy(ax)
    for ax in axes.flat[len(params):]:
        ax.set_visible(False)

    handles = [Line2D([], [], color=colors[o], linewidth=1.8,
                      label=_with_units(_meta(ds, o)[0] or o, None) + f" ({o})")
               for o in outputs] if len(outputs) > 1 else []
    handles.append(Line2D([], [], color="0.5", linestyle="--", marker="o" if any_base else "",
                          markersize=6, markerfacecolor="0.5", markeredgecolor="k",
                          label="base point" if any_base else "base value"))
    if any_fail:
        handles.append(Line2D([], [], color=FAIL_COLOR, linestyle="", marker="x",
                              markersize=7, markeredgewidth=2, label="not converged"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3),
               fontsize=9, frameon=False)
    what = (f"{_meta(ds, outputs[0])[0] or outputs[0]} ({outputs[0]})" if len(outputs) == 1
            else ", ".join(outputs))
    fig.suptitle(f"One-way sensitivity of {what}: each parameter varied alone", fontsize=11)
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
            da = da.sel(dict(sel), method="nearest")
        if set(da.dims) != {x, y}:
            extra = [d for d in da.dims if d not in (x, y)]
            hint = (f"; select {extra} with keyword arguments, e.g. "
                    f"{what}(ds, {var!r}, {x!r}, {y!r}, {extra[0]}=...)" if extra else "")
            raise ValueError(f"{what} of {var!r} needs a 2-D selection over (y={y!r}, x={x!r}), "
                             f"but after selecting {dict(sel)} its dims are {tuple(da.dims)}"
                             + hint)
        self.da = da.transpose(y, x)
        self.x = np.asarray(self.da[x], float)
        self.y = np.asarray(self.da[y], float)
        self.xlog, self.ylog = _is_log(self.x), _is_log(self.y)
        self.xe, self.ye = _edges(self.x, self.xlog), _edges(self.y, self.ylog)
        self.failed = None
        if "converged" in ds and var != "converged":
            conv = ds["converged"]
            conv = conv.sel({k: v for k, v in sel.items() if k in conv.dims}, method="nearest")
            if set(conv.dims) == {x, y}:
                self.failed = ~np.asarray(conv.transpose(y, x), bool)
        self.at = ", ".join(f"{k} = {_fmt(float(da[k]))}" for k in sel
                            if k in da.coords and da[k].ndim == 0)
        self.ds, self.var, self.xname, self.yname = ds, var, x, y

    def axes(self, ax: Axes, title: str) -> None:
        ax.set_xlim(self.xe.min(), self.xe.max())
        ax.set_ylim(self.ye.min(), self.ye.max())
        if self.xlog:
            ax.set_xscale("log")
        else:
            _readable_numbers(ax.xaxis, self.x)
        if self.ylog:
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
            **sel: Any) -> Figure:
    """Colour map of ``ds[var]`` over two sweep dimensions, with labelled contour lines.

    Other dimensions are fixed by keyword: ``heatmap(ds, "t_r", "f", "D_J", p=0.3)`` selects
    the nearest ``p``. Axes are logarithmic where a coordinate is positive and spans more than
    two decades. Signed data (both signs present) get a diverging colour map centred at 0,
    others viridis. Cells whose solve did not converge are grey and hatched, and left out of
    the contours.

    Raises:
        ValueError: naming the remaining dims if the selection is not 2-D over ``(y, x)``.
    """
    g = _Grid(ds, var, x, y, sel, "heatmap")
    z = np.asarray(g.da, float)
    if g.failed is not None:
        z = np.where(g.failed, np.nan, z)
    zm = np.ma.masked_invalid(z)
    fig, ax = _new_axes(ax, (6.4, 4.8))
    finite = z[np.isfinite(z)]
    signed = bool(finite.size and finite.min() < 0 < finite.max())
    logz = bool(finite.size and finite.min() > 0 and finite.max() > 100 * finite.min())
    if signed:
        cmap, norm = "RdBu_r", mcolors.CenteredNorm(vcenter=0.0)
    elif logz:
        cmap, norm = "viridis", mcolors.LogNorm(finite.min(), finite.max())
    else:
        cmap, norm = "viridis", None
    mesh = ax.pcolormesh(g.xe, g.ye, zm, cmap=cmap, norm=norm, shading="flat", zorder=1)
    bar = fig.colorbar(mesh, ax=ax)
    bar.set_label(_label(ds, var))
    if not logz:
        _readable_numbers(bar.ax.yaxis, finite)
    if contours and finite.size and np.ptp(finite) > 0 and min(z.shape) >= 2:
        lv = _contour_levels(finite, levels, logz)
        if lv.size:
            cs = ax.contour(g.x, g.y, zm, levels=lv, colors="k", linewidths=0.8, alpha=0.75,
                            zorder=3)
            ax.clabel(cs, fontsize=8, inline=True,
                      fmt="{:,.0f}".format if not logz and _thousands(finite) else _fmt)
            bar.add_lines(cs)
    failed = g.hatch_failed(ax)
    if failed:
        ax.legend(handles=[Patch(facecolor="0.82", edgecolor="0.35", hatch=_HATCH,
                                 label="not converged")],
                  loc="upper left", bbox_to_anchor=(0, -0.14), fontsize=8, frameon=False)
    desc, _ = _meta(ds, var)
    g.axes(ax, f"{desc} ({var})" if desc else var)
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
    text = dict(labels or {})
    handles = [Patch(color=palette[slot[c]], label=text.get(c, str(c)))
               for c in sorted(cats, key=lambda c: slot[c])]
    if failed:
        handles.append(Patch(facecolor="0.82", edgecolor="0.35", hatch=_HATCH,
                             label="not converged"))
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


def lines(ds: xr.Dataset, groups, x: str, *, sel: dict | None = None, title: str | None = None,
          ncols: int = 3) -> Figure:
    """Line panels along the coordinate ``x``: one panel per group of variables.

    ``groups`` is a list of variable names (one panel) or ``{panel title: [names]}``. Each
    line is labelled by its name; a panel's y label gives the shared units. Other dims must be
    fixed by ``sel`` (nearest values). Points that did not converge are marked with red x.
    """
    if isinstance(groups, str):
        groups = {"": [groups]}
    elif not isinstance(groups, dict):
        groups = {"": list(groups)}
    sel = dict(sel or {})
    names = [n for g in groups.values() for n in g]
    missing = [n for n in [*names, x] if n not in ds.variables]
    if missing:
        raise ValueError(f"no variable(s) {missing} in the dataset")
    sub = ds.sel(sel, method="nearest") if sel else ds
    extra = [d for d in sub[names[0]].dims if d != x]
    if extra:
        raise ValueError(f"dims are {sub[names[0]].dims}; select {extra} (sel=...) to leave "
                         f"only {x!r}")
    n = len(groups)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.6 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    xs = np.asarray(sub[x], float)
    bad = ~np.asarray(sub["converged"], bool) if "converged" in sub else np.zeros(len(xs), bool)
    for ax, (panel, members) in zip(axes, groups.items(), strict=False):
        for name in members:
            ys = np.asarray(sub[name], float)
            ax.plot(xs, ys, lw=1.8, label=name)
            if bad.any():
                ax.plot(xs[bad], ys[bad], "x", color="red", ms=6)
        units = {_units(ds, m) for m in members}
        ax.set_ylabel(f"[{units.pop()}]" if len(units) == 1 and None not in units else "")
        ax.set_xlabel(_label(ds, x))
        if xs.min() > 0 and xs.max() > 100 * xs.min():
            ax.set_xscale("log")
        ax.set_title(panel, fontsize=11)
        ax.grid(True, color="0.92")
        ax.legend(fontsize=8, frameon=False)
        _readable_numbers(ax.yaxis, np.concatenate(
            [np.asarray(sub[m], float).ravel() for m in members]))
    for ax in axes[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return fig
