r"""Summaries over replications: means, standard errors, confidence intervals, paired differences.

A stochastic sweep (a solve function in its model's ``STOCHASTIC``) has a ``replication`` dim;
replication ``r`` of every scenario uses the same random numbers
(``key = fold_in(key(seed), r)``). These functions turn such a dataset into estimates; each
takes and returns an :class:`xarray.Dataset` and works on every numeric variable that has the
replication dim (others are dropped; booleans count as 0/1, i.e. proportions).

With ``n`` replications ``Y_1 .. Y_n`` of a variable at one scenario:

* :func:`mean`: ``Ybar = (1/n) sum Y_r``;
* :func:`standard_error`: ``s / sqrt(n)`` with ``s`` the sample standard deviation
  (``ddof = 1``);
* :func:`confidence_interval`: the Student-t interval ``Ybar -/+ t_{n-1, (1+c)/2} s/sqrt(n)``,
  along a new dim ``bound = ("lower", "upper")``; exact for normal ``Y``, asymptotically valid
  otherwise (e.g. Law (2015), *Simulation Modeling and Analysis*, 5th ed., section 9.4.1).

:func:`paired_difference` compares coordinates of one dim (e.g. ``policy = I, II, III``) on the
*same* replications: ``D_r = Y_r(b) - Y_r(a)``. Common random numbers make the ``Y_r(a)`` and
``Y_r(b)`` positively correlated, so ``Var(D)`` is smaller than for independent runs; the
paired-t interval ``Dbar -/+ t_{n-1, 1-alpha'/2} s_D/sqrt(n)`` and the paired-t test of
``E[D] = 0`` (Law 2015, section 10.2.1) account for it. With ``m`` comparisons made at once
(the *family*), the Bonferroni correction uses ``alpha' = alpha / m`` for every interval, so
that all ``m`` intervals hold simultaneously with probability at least ``1 - alpha``, and
reports adjusted p-values ``min(1, m p)``. The family is stated explicitly (``family=``) and
recorded; by default it is the number of pairs compared by the call times the number of other
scenarios (every cell of the result is one comparison).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import xarray as xr

__all__ = ["confidence_interval", "mean", "paired_difference", "standard_error"]

REPLICATION = "replication"


def _numeric(ds: xr.Dataset, dim: str) -> xr.Dataset:
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"expected an xarray.Dataset, got {type(ds).__name__}")
    if dim not in ds.dims:
        raise ValueError(f"the dataset has no dim {dim!r} (its dims are {list(ds.dims)}); "
                         "replications come from sweeps of stochastic solve functions")
    keep = [v for v in ds.data_vars if dim in ds[v].dims
            and (np.issubdtype(ds[v].dtype, np.number) or ds[v].dtype == bool)]
    out = ds[keep]
    return out.assign({v: out[v].astype(float) for v in keep if out[v].dtype == bool})


def _n(ds: xr.Dataset, dim: str, minimum: int) -> int:
    n = ds.sizes[dim]
    if n < minimum:
        raise ValueError(f"{dim}: needs at least {minimum} replications, got {n}")
    return n


def _check_confidence(confidence: float) -> float:
    c = float(confidence)
    if not 0.0 < c < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    return c


def mean(ds: xr.Dataset, dim: str = REPLICATION) -> xr.Dataset:
    """Mean over ``dim`` of every numeric variable that has it."""
    num = _numeric(ds, dim)
    _n(num, dim, 1)
    out = num.mean(dim, keep_attrs=True)
    out.attrs.update(ds.attrs, summary=f"mean over {dim} (n = {num.sizes[dim]})")
    return out


def standard_error(ds: xr.Dataset, dim: str = REPLICATION) -> xr.Dataset:
    """Standard error of the mean over ``dim``: ``std(ddof=1) / sqrt(n)``."""
    num = _numeric(ds, dim)
    n = _n(num, dim, 2)
    out = num.std(dim, ddof=1, keep_attrs=True) / np.sqrt(n)
    out.attrs.update(ds.attrs, summary=f"standard error of the mean over {dim} (n = {n})")
    return out


def confidence_interval(ds: xr.Dataset, dim: str = REPLICATION,
                        confidence: float = 0.95) -> xr.Dataset:
    """Student-t confidence interval of the mean over ``dim``, along ``bound`` =
    ``("lower", "upper")``."""
    c = _check_confidence(confidence)
    num = _numeric(ds, dim)
    n = _n(num, dim, 2)
    m = num.mean(dim, keep_attrs=True)
    half = _t().ppf((1.0 + c) / 2.0, n - 1) * num.std(dim, ddof=1) / np.sqrt(n)
    out = xr.concat([m - half, m + half], dim=xr.DataArray(["lower", "upper"], dims="bound"),
                    coords="minimal")
    for v in out.data_vars:
        out[v].attrs = dict(num[v].attrs)
    out.attrs.update(ds.attrs, summary=f"{c:g} Student-t confidence interval of the mean over "
                                       f"{dim} (n = {n})", confidence=c)
    return out


def paired_difference(
    ds: xr.Dataset,
    dim: str,
    *,
    pairs: Sequence[tuple] | None = None,
    baseline=None,
    replication: str = REPLICATION,
    confidence: float = 0.95,
    family: int | None = None,
) -> xr.Dataset:
    """Paired differences ``Y(b) - Y(a)`` between coordinates of ``dim``, on common random
    numbers, with paired-t intervals and tests, Bonferroni-corrected over a family.

    Args:
        ds: a dataset with dims ``dim`` and ``replication``.
        dim: the dim whose coordinates are compared (e.g. ``"policy"``).
        pairs: ``[(a, b), ...]`` coordinate pairs, each giving ``b - a``; default: every other
            coordinate against ``baseline`` if given, else all pairs ``(a, b)`` in coordinate
            order.
        baseline: the coordinate every other one is compared with (``pairs`` not given).
        replication: the dim of the replications.
        confidence: joint confidence of the family (``1 - alpha``).
        family: number of comparisons in the family the Bonferroni correction covers; default
            ``len(pairs)`` times the number of cells of each variable over its other dims
            (one comparison per result cell). Must be at least that number.

    Returns:
        Dataset with a dim ``pair`` (coords ``"b - a"``, and ``a``/``b`` along it); for every
        variable ``v``: ``v`` (the mean difference), ``v_se``, ``v_lower``, ``v_upper``
        (simultaneous interval at level ``1 - alpha/family``), ``v_t`` (paired-t statistic),
        ``v_p`` (two-sided p-value) and ``v_p_adjusted`` (``min(1, family p)``). Attrs record
        ``confidence``, ``family`` and the per-comparison level.
    """
    c = _check_confidence(confidence)
    num = _numeric(ds, replication)
    n = _n(num, replication, 2)
    if dim not in ds.dims or dim == replication:
        raise ValueError(f"dim must be a dim of the dataset other than {replication!r}, got "
                         f"{dim!r} (its dims are {list(ds.dims)})")
    coords = list(ds[dim].values)
    if pairs is None:
        if baseline is not None:
            if baseline not in coords:
                raise ValueError(f"baseline: {baseline!r} is not a coord of {dim}; the coords "
                                 f"are {coords}")
            pairs = [(baseline, b) for b in coords if b != baseline]
        else:
            pairs = list(itertools.combinations(coords, 2))
    elif baseline is not None:
        raise ValueError("give pairs= or baseline=, not both")
    pairs = [tuple(p) for p in pairs]
    for p in pairs:
        if len(p) != 2 or any(x not in coords for x in p) or p[0] == p[1]:
            raise ValueError(f"pairs: {p!r} is not two different coords of {dim}; the coords "
                             f"are {coords}")
    if not pairs:
        raise ValueError(f"{dim}: needs at least two coords to compare")
    cells = max((int(np.prod([num.sizes[d] for d in num[v].dims if d not in (dim, replication)]))
                 for v in num.data_vars), default=1)
    least = len(pairs) * cells
    if family is None:
        family = least
    elif isinstance(family, bool) or not isinstance(family, (int, np.integer)) or family < least:
        raise ValueError(f"family must be an integer >= {least} (the comparisons made: "
                         f"{len(pairs)} pair(s) x {cells} cell(s)), got {family!r}")
    alpha = (1.0 - c) / family
    t_crit = _t().ppf(1.0 - alpha / 2.0, n - 1)

    labels = [f"{b} - {a}" for a, b in pairs]
    diff = xr.concat([num.sel({dim: b}, drop=True) - num.sel({dim: a}, drop=True)
                      for a, b in pairs], dim=xr.DataArray(labels, dims="pair"),
                     coords="minimal")
    d_mean = diff.mean(replication)
    se = diff.std(replication, ddof=1) / np.sqrt(n)
    out = xr.Dataset(coords={"pair": labels,
                             "a": ("pair", np.asarray([a for a, _ in pairs], dtype=object)),
                             "b": ("pair", np.asarray([b for _, b in pairs], dtype=object))})
    for v in num.data_vars:
        t = d_mean[v] / se[v]
        p = xr.apply_ufunc(lambda x: 2.0 * _t().sf(np.abs(x), n - 1), t)
        units = {"units": num[v].attrs["units"]} if "units" in num[v].attrs else {}
        out[v] = d_mean[v].assign_attrs(units, description=f"mean paired difference of {v}")
        out[f"{v}_se"] = se[v].assign_attrs(units)
        out[f"{v}_lower"] = (d_mean[v] - t_crit * se[v]).assign_attrs(units)
        out[f"{v}_upper"] = (d_mean[v] + t_crit * se[v]).assign_attrs(units)
        out[f"{v}_t"] = t
        out[f"{v}_p"] = p
        out[f"{v}_p_adjusted"] = np.minimum(1.0, family * p)  # xarray ufunc: keeps dims
    out.attrs.update(ds.attrs, summary=f"paired differences along {dim} over {replication} "
                                       f"(n = {n}), paired-t, Bonferroni over {family}",
                     confidence=c, family=int(family), per_comparison_confidence=1.0 - alpha)
    return out


def _t():
    # SciPy is imported on first use: the sweep layer (which imports this module) must load on a
    # machine without it (e.g. the accelerator machines of benchmarks/gpu.sh).
    import scipy.stats

    return scipy.stats.t
