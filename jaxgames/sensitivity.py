r"""Sensitivity analysis of equilibria: one-way sweeps, tornado diagrams and Sobol' indices.

Every function here turns its question into one explicit :class:`jaxgames.design.Design` and
evaluates it with a single call of :func:`jaxgames.sweep`, so all model evaluations are
vectorised by the sweep engine; the returned datasets keep the sweep's provenance attrs.

**One-way sensitivity** (:func:`one_way`). Each parameter in turn is moved over ``n`` points
of its range while every other parameter stays at its base value. **Tornado**
(:func:`tornado`) is the two-point version: the output at the low and the high end of each
range, and the swing ``|high - low|``.

**Variance-based (Sobol') indices** (:func:`sobol_indices`). For ``Y = f(X)`` with independent
inputs ``X_i`` (uniform on the given bounds, or log-uniform for ``"log"`` bounds), the
first-order index ``S_i = V[E(Y | X_i)] / V(Y)`` is the share of the variance of ``Y``
explained by ``X_i`` alone, and the total index ``S_Ti = E[V(Y | X_~i)] / V(Y)`` is the share
that involves ``X_i`` at all (alone or through interactions); ``S_Ti - S_i`` measures
interactions and ``S_Ti ~ 0`` means ``X_i`` could be fixed anywhere in its range.

They are estimated with the design of Saltelli et al. (2010), section 3: two independent
``n x d`` base matrices ``A`` and ``B`` (here the two halves of one scrambled Sobol' sequence of
dimension ``2d``, as in SALib) and, for each ``i``, the matrix ``A_B^(i)`` equal to ``A`` with
column ``i`` taken from ``B`` -- ``n (d + 2)`` model evaluations in all. With
``f_A = f(A)`` etc.,

* first order, the estimator proposed by Saltelli et al. (2010) (their Table 2):
  ``V_i = mean(f_B (f_{A_B^(i)} - f_A))``;
* total order, Jansen (1999), recommended by Saltelli et al. (2010) (Table 2):
  ``V_Ti = mean((f_A - f_{A_B^(i)})^2) / 2``;

each divided by ``V(Y)``, the sample variance of the ``2n`` values ``[f_A, f_B]``. As in SALib,
the outputs are first centred and scaled by the mean and standard deviation of all evaluations
(the indices do not depend on the scale, and centring lowers the variance of the first-order
estimator, whose numerator is not invariant to a shift of ``f``). Confidence half-widths are
``z_{(1 + c)/2}`` times the standard deviation of the estimates over bootstrap resamples of the
``n`` base rows (Archer et al. 1997). :func:`sobol_analyze` given an integer seed draws the
resamples of SALib 1.6's ``analyze`` with the same seed, so its numbers are SALib's. Optional
second-order indices use the extra matrices ``B_A^(i)`` and the estimator of Saltelli (2002),
as SALib does.

The bootstrap treats the rows as independent draws; for a scrambled Sobol' design the actual
error is usually smaller, so the intervals are conservative.

A point that did not converge (``converged`` False, or a non-finite output) has no valid
output, and leaving it out of the estimators would silently change what they estimate. By
default :func:`sobol_indices` raises, stating how many points failed; ``on_failure="drop"``
drops every base row with a failed point and records the counts in the result.

References:
    A. Saltelli, P. Annoni, I. Azzini, F. Campolongo, M. Ratto, S. Tarantola (2010), Variance
    based sensitivity analysis of model output. Design and estimator for the total sensitivity
    index. Computer Physics Communications 181(2), 259-270.
    M. J. W. Jansen (1999), Analysis of variance designs for model output. Computer Physics
    Communications 117(1-2), 35-43.
    A. Saltelli (2002), Making best use of model evaluations to compute sensitivity indices.
    Computer Physics Communications 145(2), 280-297.
    G. E. B. Archer, A. Saltelli, I. M. Sobol' (1997), Sensitivity measures, ANOVA-like
    techniques and the use of bootstrap. J. Statistical Computation and Simulation 58, 99-120.
    J. Herman, W. Usher (2017), SALib: An open-source Python library for sensitivity analysis.
    Journal of Open Source Software 2(9), 97.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from jaxgames import design as _design
from jaxgames._contract import output_element as _output
from jaxgames._validation import describe_setting, is_setting, numeric_fields

__all__ = [
    "SaltelliLayout",
    "one_way",
    "saltelli_design",
    "sobol_analyze",
    "sobol_indices",
    "tornado",
]


# ----------------------------------------------------------------------------- helpers


def _sweep_fn() -> Callable[..., xr.Dataset]:
    # Imported when called: the sweep engine imports the models, which need not be loaded to
    # build a design or analyse outputs.
    from jaxgames._sweep import sweep

    return sweep


def _run(solve_fn, base_params, design: _design.Design, sweep_kwargs) -> xr.Dataset:
    ds = _sweep_fn()(solve_fn, base_params, design, **{"progress": False, **sweep_kwargs})
    if ds.sizes.get(design.dim) != design.size:
        raise RuntimeError(
            f"the sweep returned {ds.sizes.get(design.dim)} points along {design.dim!r}, "
            f"the design has {design.size}")
    return ds


def _params_json(base_params) -> str:
    return json.dumps({k: describe_setting(v) if is_setting(v) else np.asarray(v).tolist()
                       for k, v in base_params._asdict().items()})


def _base_values(base_params, solve_fn=None) -> dict[str, float]:
    """Base values of what a range can vary: real scalar parameters and, for a vector
    parameter ``v`` of the model, its elements ``v[1]``, ``v[2]``, ... (``DIM_COORDS``
    labels where the dim has them). Categorical parameters are not varied."""
    if not hasattr(base_params, "_fields"):
        raise TypeError(
            f"base_params must be the model's Params NamedTuple, got {type(base_params).__name__}")
    model = None
    if solve_fn is not None:
        from jaxgames._contract import solve_spec

        model = solve_spec(solve_fn).model
    out = {}
    for k, v in base_params._asdict().items():
        if is_setting(v):  # a static setting (e.g. a quadrature law): not a number
            continue
        if model is not None and k in model.categories:
            continue
        arr = np.asarray(v)
        if model is not None and k in model.param_dims and arr.ndim == 1:
            coords = model.coords(model.param_dims[k], len(arr))
            out.update({f"{k}[{c}]": float(x) for c, x in zip(coords, arr, strict=True)})
            continue
        if arr.shape != ():
            raise ValueError(f"base_params.{k} must be a scalar, got shape {arr.shape}")
        out[k] = float(arr)
    return out


def _param_of(name: str) -> str:
    return name.split("[", 1)[0] if name.endswith("]") else name


def _check_names(base_params, names: Sequence[str], solve_fn=None) -> None:
    fields = base_params._fields
    unknown = [n for n in names if _param_of(n) not in fields]
    if solve_fn is not None and not unknown:
        base = _base_values(base_params, solve_fn)
        unknown = [n for n in names if n not in base]
        fields = list(base)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown}; the parameters of {type(base_params).__name__} "
            f"are {list(fields)}")


def _check_domain(solve_fn, base_params, ranges: Mapping[str, tuple], what: str) -> None:
    """Raise before any evaluation if a range leaves the model's declared domain."""
    from jaxgames._contract import solve_spec
    from jaxgames._validation import check_domain

    spec = solve_spec(solve_fn).model
    domain, model = spec.domain, spec.name
    if not domain:
        return
    check_domain(base_params, domain, model)
    for name, b in ranges.items():
        # The domain is an interval and every point lies between the two ends.
        bad = spec.outside(_param_of(name), b[:2])
        if bad is not None:
            raise ValueError(
                f"{model}: {what} [{b[0]:g}, {b[1]:g}] of parameter {name} is outside its "
                f"allowed range {bad[1]}")


def _resolve_ranges(base_params, ranges, relative, params, solve_fn=None) -> dict[str, tuple]:
    """``{name: (lo, hi)}`` or ``(lo, hi, "log")`` from explicit ranges or relative factors."""
    base = _base_values(base_params, solve_fn)
    if (ranges is None) == (relative is None):
        raise ValueError("give either ranges={name: (lo, hi)} or relative=(lo_factor, hi_factor)")
    if ranges is not None:
        if params is not None:
            raise ValueError("params= selects parameters for relative=; with ranges= omit it")
        _check_names(base_params, list(ranges), solve_fn)
        return _design._check_bounds(ranges)
    rel = tuple(relative)
    if len(rel) != 2 or not all(math.isfinite(float(r)) for r in rel) or not rel[0] < rel[1]:
        raise ValueError(f"relative must be two finite factors lo < hi, got {relative!r}")
    # default: every real scalar parameter (elements of vectors only when named)
    names = (tuple(n for n in numeric_fields(base_params) if n in base) if params is None
             else tuple(params))
    if not names:
        raise ValueError("params must name at least one parameter")
    _check_names(base_params, names, solve_fn)
    out = {}
    for name in names:
        lo, hi = sorted((base[name] * float(rel[0]), base[name] * float(rel[1])))
        if not lo < hi:
            raise ValueError(
                f"parameter {name} has base value {base[name]:g}, so the relative range "
                f"{tuple(rel)} is empty; give it an explicit range")
        out[name] = (lo, hi)
    return _design._check_bounds(out)


def _default_outputs(solve_fn, base_params, ds: xr.Dataset) -> list[str]:
    """Floating-point scalar outputs of ``solve_fn`` (not derivatives, not diagnostics);
    an element of an output with its own dims is chosen by name, ``q[1]``."""
    from jaxgames._contract import solve_spec

    spec = solve_spec(solve_fn)
    fields = set(spec.outputs or ())
    # In the dataset's order (the model's field order); derivatives are not fields.
    return [v for v in ds.data_vars if v in fields and not spec.is_diagnostic(v)
            and np.issubdtype(ds[v].dtype, np.floating) and len(ds[v].dims) == 1]


def _check_outputs(ds: xr.Dataset, outputs: Sequence[str], dim: str) -> list[str]:
    outputs = list(outputs)
    if not outputs:
        raise ValueError("outputs must name at least one output")
    bad = [o for o in outputs if o not in ds.data_vars
           and (not o.endswith("]") or o.split("[", 1)[0] not in ds.data_vars)]
    if bad:
        raise ValueError(f"unknown output(s) {bad}; the outputs are {list(ds.data_vars)}")
    arrays = {o: _output(ds, o) for o in outputs}
    bad = [o for o, a in arrays.items() if a.dims != (dim,)
           or not np.issubdtype(a.dtype, np.number) or a.dtype == bool]
    if bad:
        raise ValueError(f"output(s) {bad} are not real scalars at each point; choose one "
                         "element of an output with dims of its own as output[coord], e.g. "
                         "q[1]")
    return outputs


def _bounds_json(bounds: Mapping[str, tuple]) -> str:
    return json.dumps({k: list(v) for k, v in bounds.items()})


# ----------------------------------------------------------------------------- one-way


def one_way(
    solve_fn: Callable[[Any], Any],
    base_params: Any,
    ranges: Mapping[str, Sequence] | None = None,
    *,
    n: int = 21,
    relative: Sequence[float] | None = None,
    params: Sequence[str] | None = None,
    **sweep_kwargs: Any,
) -> xr.Dataset:
    """One-way sensitivity: each parameter over ``n`` points, the others at their base values.

    Args:
        solve_fn: a model function ``params -> NamedTuple`` (called on one point).
        base_params: the base point (the model's ``Params``).
        ranges: ``{name: (lo, hi)}``, or ``(lo, hi, "log")`` for geometric spacing.
        n: points per parameter (``lo`` and ``hi`` included).
        relative: instead of ``ranges``, factors ``(lo, hi)``: each parameter of ``params``
            (default: all) goes from ``lo * base`` to ``hi * base``.
        params: the parameters varied with ``relative``.
        **sweep_kwargs: passed to :func:`jaxgames.sweep` (``chunk_size``, ``derivatives``, ...).

    Returns:
        Dataset with dims ``("parameter", "step")``: every output of the sweep (diagnostics
        included), coords ``value`` (the parameter's value) and ``relative`` (value / base,
        NaN where the base is 0). All ``P * n`` points are evaluated by one sweep call.

    Raises:
        ValueError: before any evaluation, for an unknown parameter, an empty or non-finite
            range, or a range outside the model's ``DOMAIN``.
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    n = int(n)
    bounds = _resolve_ranges(base_params, ranges, relative, params, solve_fn)
    _check_domain(solve_fn, base_params, bounds, "the range")
    base = _base_values(base_params, solve_fn)
    names = list(bounds)
    values = np.stack([
        np.geomspace(b[0], b[1], n) if len(b) == 3 else np.linspace(b[0], b[1], n)
        for b in bounds.values()
    ])  # (P, n)
    columns = {}
    for k, name in enumerate(names):
        col = np.full((len(names), n), base[name])
        col[k] = values[k]
        columns[name] = col.reshape(-1)
    design = _design.Design.from_points(columns)
    ds = _run(solve_fn, base_params, design, sweep_kwargs)

    dim = design.dim
    shape = (len(names), n)
    data_vars = {}
    for var_name, var in ds.data_vars.items():
        if dim in var.dims:
            var = var.transpose(dim, ...)
            data = var.data.reshape(shape + var.shape[1:])
            data_vars[var_name] = (("parameter", "step") + var.dims[1:], data, var.attrs)
        else:
            data_vars[var_name] = var
    trailing = {d: ds[d] for d in ds.coords if d in ds.dims and d != dim}  # e.g. csc, agent
    base_col = np.array([base[name] for name in names])[:, None]
    rel = np.divide(values, base_col, out=np.full(shape, np.nan), where=base_col != 0)
    attrs = dict(ds.attrs)
    attrs.setdefault("base_params", _params_json(base_params))
    attrs.update(analysis="one_way", ranges=_bounds_json(bounds), n_steps=n)
    return xr.Dataset(
        data_vars,
        coords={
            "parameter": ("parameter", np.array(names, dtype=str)),
            "step": ("step", np.arange(n)),
            **trailing,
            "value": (("parameter", "step"), values,
                      {"description": "value of the varied parameter"}),
            "relative": (("parameter", "step"), rel,
                         {"units": "1", "description": "value / base value of the parameter"}),
        },
        attrs=attrs,
    )


# ----------------------------------------------------------------------------- tornado


def tornado(
    solve_fn: Callable[[Any], Any],
    base_params: Any,
    ranges: Mapping[str, Sequence] | None = None,
    outputs: Sequence[str] | None = None,
    *,
    relative: Sequence[float] | None = None,
    params: Sequence[str] | None = None,
    **sweep_kwargs: Any,
) -> xr.Dataset:
    """Tornado analysis: each output at the low and the high end of each parameter's range.

    Arguments as in :func:`one_way`; ``outputs`` defaults to every floating-point output of
    ``solve_fn`` except diagnostics. The base point and the ``2 P`` ends are evaluated by one
    sweep call.

    Returns:
        Dataset with dims ``("output", "parameter")`` (parameters in the order given): ``low``,
        ``high``, ``swing = |high - low|``, ``converged`` (both ends converged), ``base``
        (output) and ``base_converged``; coords ``param_low``, ``param_high``.
    """
    bounds = _resolve_ranges(base_params, ranges, relative, params, solve_fn)
    _check_domain(solve_fn, base_params, bounds, "the range")
    if outputs is not None and isinstance(outputs, str):
        outputs = [outputs]
    base = _base_values(base_params, solve_fn)
    names = list(bounds)
    p = len(names)
    lows = np.array([b[0] for b in bounds.values()])
    highs = np.array([b[1] for b in bounds.values()])
    # Point 0 is the base; points 1 + 2k and 2 + 2k move parameter k to its low / high end.
    columns = {}
    for k, name in enumerate(names):
        col = np.full(1 + 2 * p, base[name])
        col[1 + 2 * k], col[2 + 2 * k] = lows[k], highs[k]
        columns[name] = col
    design = _design.Design.from_points(columns)
    ds = _run(solve_fn, base_params, design, sweep_kwargs)
    if outputs is None:
        outputs = _default_outputs(solve_fn, base_params, ds)
    outputs = _check_outputs(ds, outputs, design.dim)

    y = np.stack([np.asarray(_output(ds, o).values, dtype=float) for o in outputs])  # (O, 1+2P)
    low, high = y[:, 1::2], y[:, 2::2]
    if "converged" in ds.data_vars:
        conv = np.asarray(ds["converged"].values, dtype=bool)
    else:
        conv = np.ones(1 + 2 * p, dtype=bool)
    both = np.broadcast_to(conv[1::2] & conv[2::2], (len(outputs), p))
    attrs = dict(ds.attrs)
    attrs.setdefault("base_params", _params_json(base_params))
    attrs.update(analysis="tornado", ranges=_bounds_json(bounds))
    return xr.Dataset(
        {
            "low": (("output", "parameter"), low,
                    {"description": "output with the parameter at the low end of its range"}),
            "high": (("output", "parameter"), high,
                     {"description": "output with the parameter at the high end of its range"}),
            "base": (("output",), y[:, 0], {"description": "output at the base point"}),
            "swing": (("output", "parameter"), np.abs(high - low),
                      {"description": "|high - low|"}),
            "converged": (("output", "parameter"), both.copy(),
                          {"description": "the solves at both ends converged"}),
            "base_converged": ((), bool(conv[0]),
                               {"description": "the solve at the base point converged"}),
        },
        coords={
            "output": ("output", np.array(outputs, dtype=str)),
            "parameter": ("parameter", np.array(names, dtype=str)),
            "param_low": ("parameter", lows),
            "param_high": ("parameter", highs),
        },
        attrs=attrs,
    )


# ----------------------------------------------------------------------------- Saltelli design


@dataclasses.dataclass(frozen=True)
class SaltelliLayout:
    """Where each matrix of a Saltelli design lies along its ``sample`` dimension.

    The design is ``n`` rows of each block, blocks in the order ``A``, ``B``,
    ``A_B^(1) .. A_B^(d)`` and, with second order, ``B_A^(1) .. B_A^(d)``; row ``r`` of every
    block comes from base row ``r``.
    """

    n: int
    names: tuple[str, ...]
    calc_second_order: bool = False

    @property
    def d(self) -> int:
        return len(self.names)

    @property
    def n_blocks(self) -> int:
        return 2 + self.d * (2 if self.calc_second_order else 1)

    @property
    def size(self) -> int:
        return self.n * self.n_blocks

    def base_row(self) -> np.ndarray:
        """Base row of every design point, shape ``(size,)``."""
        return np.tile(np.arange(self.n), self.n_blocks)

    def split(self, y) -> dict[str, np.ndarray]:
        """``{"A": (n,), "B": (n,), "AB": (n, d)[, "BA": (n, d)]}`` from outputs ``y`` (size,)."""
        y = np.asarray(y)
        if y.shape != (self.size,):
            raise ValueError(f"expected outputs of shape ({self.size},), got {y.shape}")
        blocks = y.reshape(self.n_blocks, self.n)
        out = {"A": blocks[0], "B": blocks[1], "AB": blocks[2:2 + self.d].T}
        if self.calc_second_order:
            out["BA"] = blocks[2 + self.d:].T
        return out


def saltelli_design(
    bounds: Mapping[str, Sequence],
    n: int,
    *,
    seed: int,
    calc_second_order: bool = False,
) -> tuple[_design.Design, SaltelliLayout]:
    """Saltelli et al. (2010) design for first- and total-order Sobol' indices.

    ``A`` and ``B`` are the first and last ``d`` columns of the first ``n`` points of one
    scrambled Sobol' sequence of dimension ``2 d`` (``scipy.stats.qmc.Sobol``, seeded with
    ``np.random.default_rng(seed)``); ``A_B^(i)`` is ``A`` with column ``i`` from ``B`` (and
    ``B_A^(i)``, for second order, ``B`` with column ``i`` from ``A``). ``n`` should be a power
    of 2 (scipy warns otherwise). Points are mapped to ``bounds`` by
    :func:`jaxgames.design.scale_unit` (``"log"`` bounds: uniform in the logarithm).

    Returns:
        The design (``n (d + 2)`` points, ``n (2 d + 2)`` with second order) and its layout.
    """
    from scipy.stats import qmc

    bounds = _design._check_bounds(bounds)
    n, seed = _design._check_n(n), _design._check_seed(seed)
    d = len(bounds)
    u = qmc.Sobol(d=2 * d, scramble=True, rng=np.random.default_rng(seed)).random(n)
    a, b = u[:, :d], u[:, d:]
    blocks = [a, b]
    for i in range(d):
        ab = a.copy()
        ab[:, i] = b[:, i]
        blocks.append(ab)
    if calc_second_order:
        for i in range(d):
            ba = b.copy()
            ba[:, i] = a[:, i]
            blocks.append(ba)
    points = _design.scale_unit(np.concatenate(blocks), bounds)
    # An explicit design: its seed and bounds regenerate it with this function.
    design = _design.Design(points, kind="saltelli", seed=seed, bounds=bounds)
    return design, SaltelliLayout(n, tuple(bounds), bool(calc_second_order))


# ----------------------------------------------------------------------------- estimators


def _estimates(a, b, ab, ba, var):
    """Point estimates along axis 0 (rows); ``a, b``: (n, ...), ``ab, ba``: (n, d, ...)."""
    s1 = np.mean(b[:, None] * (ab - a[:, None]), axis=0) / var
    st = 0.5 * np.mean((a[:, None] - ab) ** 2, axis=0) / var
    s2 = None
    if ba is not None:
        # Saltelli (2002): V_jk = mean(f_BA^(j) f_AB^(k) - f_A f_B), S2_jk = V_jk / V - S_j - S_k.
        vjk = np.mean(ba[:, :, None] * ab[:, None, :] - (a * b)[:, None, None], axis=0) / var
        s2 = vjk - s1[:, None] - s1[None, :]
    return s1, st, s2


def sobol_analyze(
    y_A,
    y_B,
    y_AB,
    y_BA=None,
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int | np.random.SeedSequence = 0,
) -> dict[str, np.ndarray]:
    """First- and total-order Sobol' indices from the outputs of a Saltelli design.

    Args:
        y_A, y_B: outputs at the rows of ``A`` and ``B``, shape ``(n,)``.
        y_AB: outputs at ``A_B^(i)``, shape ``(n, d)`` (column ``i`` for parameter ``i``).
        y_BA: outputs at ``B_A^(i)``, shape ``(n, d)``, for second-order indices (optional).
        n_bootstrap: bootstrap resamples for the confidence intervals (0: none, ``*_conf``
            NaN).
        confidence: level of the intervals.
        seed: seed of the resampling (``np.random.default_rng(seed)``; with the same integer
            seed and ``n_bootstrap``, the resamples are those of ``SALib.analyze.sobol``).

    Returns:
        ``{"S1", "S1_conf", "ST", "ST_conf"}`` arrays of shape ``(d,)`` (conf = half-width of
        the interval), plus ``"S2", "S2_conf"`` ``(d, d)`` (upper triangle; NaN elsewhere) when
        ``y_BA`` is given, and ``"variance"``: the variance of ``[y_A, y_B]``. An output that
        is constant over ``A`` and ``B`` has no variance to apportion: its indices are NaN.
    """
    a, b = np.asarray(y_A, dtype=float), np.asarray(y_B, dtype=float)
    ab = np.asarray(y_AB, dtype=float)
    ba = None if y_BA is None else np.asarray(y_BA, dtype=float)
    if a.ndim != 1 or a.shape != b.shape or ab.ndim != 2 or ab.shape[0] != a.shape[0]:
        raise ValueError(
            f"need y_A, y_B of shape (n,) and y_AB of shape (n, d); got {a.shape}, {b.shape}, "
            f"{ab.shape}")
    if ba is not None and ba.shape != ab.shape:
        raise ValueError(f"y_BA must have the shape of y_AB {ab.shape}, got {ba.shape}")
    n, d = ab.shape
    if n < 2:
        raise ValueError(f"need at least 2 base rows, got {n}")
    if not isinstance(n_bootstrap, (int, np.integer)) or isinstance(n_bootstrap, bool) or (
            n_bootstrap < 2 and n_bootstrap != 0):
        raise ValueError(f"n_bootstrap must be 0 or an integer >= 2, got {n_bootstrap!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    arrays = [a, b, ab] + ([] if ba is None else [ba])
    if not all(np.all(np.isfinite(x)) for x in arrays):
        raise ValueError("the outputs must be finite")

    nan_d = np.full(d, np.nan)
    nan_dd = np.full((d, d), np.nan)
    result = {"S1": nan_d.copy(), "S1_conf": nan_d.copy(), "ST": nan_d.copy(),
              "ST_conf": nan_d.copy()}
    if ba is not None:
        result.update(S2=nan_dd.copy(), S2_conf=nan_dd.copy())
    raw_var = np.var(np.concatenate([a, b]))
    result["variance"] = np.asarray(raw_var)
    if np.ptp(np.concatenate([a, b])) == 0:
        return result

    # Centre and scale by all evaluations (as SALib): indices are scale-free, and centring
    # lowers the variance of the first-order numerator.
    y_all = np.concatenate([x.ravel() for x in arrays])
    mu, sd = y_all.mean(), y_all.std()
    a, b, ab = (a - mu) / sd, (b - mu) / sd, (ab - mu) / sd
    ba = None if ba is None else (ba - mu) / sd
    var = np.var(np.concatenate([a, b]))
    s1, st, s2 = _estimates(a, b, ab, ba, var)
    result["S1"], result["ST"] = s1, st
    iu = np.triu_indices(d, 1)
    if s2 is not None:
        result["S2"][iu] = s2[iu]
    if n_bootstrap == 0:
        return result

    from scipy.stats import norm

    z = norm.ppf(0.5 + confidence / 2)
    s1_b, st_b, s2_b = _bootstrap(a, b, ab, ba, int(n_bootstrap), seed)
    result["S1_conf"] = z * s1_b.std(axis=-1, ddof=1)
    result["ST_conf"] = z * st_b.std(axis=-1, ddof=1)
    if s2_b is not None:
        result["S2_conf"][iu] = (z * s2_b.std(axis=-1, ddof=1))[iu]
    return result


def _bootstrap(a, b, ab, ba, n_boot: int, seed, max_elements: int = 2**21):
    """Estimates over ``n_boot`` resamples of the rows, shapes ``(d, n_boot)`` / ``(d, d, ..)``.

    Resample ``k`` is rows ``r[:, k]`` of ``r = rng.integers(n, size=(n, n_boot))``. The
    estimators are means over rows, so ``r`` is drawn and consumed a block of its rows at a
    time (the generator yields the same numbers as one draw), accumulating sums: memory stays
    ``O(max_elements)`` instead of ``O(n * n_boot * d)``.
    """
    n, d = ab.shape
    rng = np.random.default_rng(seed)
    width = d * (d + 1) if ba is not None else d
    rows = max(1, max_elements // (n_boot * max(width, 1)))
    sum_y = np.zeros(n_boot)
    sum_y2 = np.zeros(n_boot)
    num1 = np.zeros((n_boot, d))
    num_t = np.zeros((n_boot, d))
    num2 = np.zeros((n_boot, d, d)) if ba is not None else None
    for start in range(0, n, rows):
        r = rng.integers(n, size=(min(rows, n - start), n_boot))
        ra, rb, rab = a[r], b[r], ab[r]  # (c, R), (c, R), (c, R, d)
        sum_y += ra.sum(0) + rb.sum(0)
        sum_y2 += (ra**2).sum(0) + (rb**2).sum(0)
        num1 += np.einsum("cr,crd->rd", rb, rab - ra[..., None])
        num_t += ((ra[..., None] - rab) ** 2).sum(0)
        if ba is not None:
            rba = ba[r]
            num2 += np.einsum("crj,crk->rjk", rba, rab) - (ra * rb).sum(0)[:, None, None]
    mean = sum_y / (2 * n)
    var = sum_y2 / (2 * n) - mean**2  # standardised data: no cancellation to speak of
    var = np.where(var > 0, var, np.nan)
    s1 = (num1 / n / var[:, None]).T
    st = (0.5 * num_t / n / var[:, None]).T
    s2 = None
    if ba is not None:
        vjk = num2 / n / var[:, None, None]
        s2 = np.moveaxis(vjk - (num1 / n / var[:, None])[:, :, None]
                         - (num1 / n / var[:, None])[:, None, :], 0, -1)
    return s1, st, s2


# ----------------------------------------------------------------------------- Sobol indices


def sobol_indices(
    solve_fn: Callable[[Any], Any],
    base_params: Any,
    bounds: Mapping[str, Sequence],
    outputs: Sequence[str] | None = None,
    *,
    n: int = 1024,
    seed: int = 0,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    calc_second_order: bool = False,
    on_failure: str = "raise",
    **sweep_kwargs: Any,
) -> xr.Dataset:
    """Sobol' first- and total-order indices of outputs of ``solve_fn`` over ``bounds``.

    Builds :func:`saltelli_design` (``n`` base rows, ``n (d + 2)`` evaluations), evaluates it
    with one :func:`jaxgames.sweep` call (parameters not in ``bounds`` stay at
    ``base_params``), and applies :func:`sobol_analyze` to each output.

    Args:
        bounds: ``{name: (lo, hi)}`` or ``(lo, hi, "log")``: independent uniform (log-uniform)
            inputs; must lie inside the model's ``DOMAIN`` (checked before any evaluation).
        outputs: outputs to analyse (default: every floating-point output except diagnostics).
        n: base rows, a power of 2.
        seed: seed of the design and of the bootstrap.
        calc_second_order: also estimate second-order indices (``n (2 d + 2)`` evaluations);
            adds ``S2``, ``S2_conf`` over ``("output", "parameter", "parameter_2")``.
        on_failure: what to do with points that did not converge (``converged`` False) or gave
            a non-finite output: ``"raise"`` (``ValueError`` with the count), or ``"drop"``:
            drop every base row that has a failed point (the estimate is then that of the
            output restricted to the rows that converged, biased if failures depend on the
            parameters); the counts are in attrs ``n_failed`` and ``n_base_used``.
        **sweep_kwargs: passed to :func:`jaxgames.sweep`.

    Returns:
        Dataset with dims ``("output", "parameter")``: ``S1``, ``S1_conf``, ``ST``, ``ST_conf``
        (confidence half-widths), ``variance`` (output); attrs ``n_base``, ``seed``,
        ``n_evaluations``, ``n_bootstrap``, ``confidence`` and the sweep's provenance.
    """
    if on_failure not in ("raise", "drop"):
        raise ValueError(f"on_failure must be 'raise' or 'drop', got {on_failure!r}")
    if isinstance(outputs, str):
        outputs = [outputs]
    _check_names(base_params, list(bounds), solve_fn)
    bounds = _design._check_bounds(bounds)
    _check_domain(solve_fn, base_params, bounds, "the bound")
    design, layout = saltelli_design(bounds, n, seed=seed, calc_second_order=calc_second_order)
    ds = _run(solve_fn, base_params, design, sweep_kwargs)
    if outputs is None:
        outputs = _default_outputs(solve_fn, base_params, ds)
    outputs = _check_outputs(ds, outputs, design.dim)

    y = {o: np.asarray(_output(ds, o).values, dtype=float) for o in outputs}
    failed = np.zeros(design.size, dtype=bool)
    if "converged" in ds.data_vars:
        failed |= ~np.asarray(ds["converged"].values, dtype=bool)
    for v in y.values():
        failed |= ~np.isfinite(v)
    n_failed = int(failed.sum())
    keep_rows = np.ones(layout.n, dtype=bool)
    if n_failed:
        detail = ""
        if "status" in ds.data_vars:
            st, counts = np.unique(np.asarray(ds["status"].values)[failed], return_counts=True)
            detail = f" (status: {dict(zip(st.tolist(), counts.tolist(), strict=True))})"
        if on_failure == "raise":
            raise ValueError(
                f"{n_failed} of {design.size} points of the Saltelli design did not converge or "
                f"gave a non-finite output{detail}; the indices would be biased. Narrow the "
                f"bounds, or pass on_failure='drop' to drop the affected base rows")
        np.logical_and.at(keep_rows, layout.base_row(), ~failed)
        if keep_rows.sum() < 2:
            raise ValueError(
                f"{n_failed} of {design.size} points failed{detail}: fewer than 2 base rows left")

    names = list(layout.names)
    # The bootstrap draws from its own stream, independent of the design's scrambling (both
    # would otherwise start from default_rng(seed)); every output uses the same resamples.
    boot_seed = np.random.SeedSequence(int(seed), spawn_key=(1,))
    res = {k: [] for k in ("S1", "S1_conf", "ST", "ST_conf", "variance", "S2", "S2_conf")}
    for o in outputs:
        parts = {k: v[keep_rows] for k, v in layout.split(y[o]).items()}
        r = sobol_analyze(parts["A"], parts["B"], parts["AB"], parts.get("BA"),
                          n_bootstrap=n_bootstrap, confidence=confidence, seed=boot_seed)
        for k, v in r.items():
            res[k].append(v)
    od = ("output", "parameter")
    data_vars = {
        "S1": (od, np.stack(res["S1"]), {"units": "1", "description": "first-order index"}),
        "S1_conf": (od, np.stack(res["S1_conf"]),
                    {"units": "1", "description": f"{confidence:g} confidence half-width of S1"}),
        "ST": (od, np.stack(res["ST"]), {"units": "1", "description": "total-order index"}),
        "ST_conf": (od, np.stack(res["ST_conf"]),
                    {"units": "1", "description": f"{confidence:g} confidence half-width of ST"}),
        "variance": (("output",), np.stack(res["variance"]),
                     {"description": "variance of the output over A and B"}),
    }
    coords = {"output": ("output", np.array(outputs, dtype=str)),
              "parameter": ("parameter", np.array(names, dtype=str))}
    if calc_second_order:
        odd = ("output", "parameter", "parameter_2")
        data_vars["S2"] = (odd, np.stack(res["S2"]),
                           {"units": "1", "description": "second-order index (upper triangle)"})
        data_vars["S2_conf"] = (odd, np.stack(res["S2_conf"]), {"units": "1"})
        coords["parameter_2"] = ("parameter_2", np.array(names, dtype=str))
    attrs = dict(ds.attrs)
    attrs.setdefault("base_params", _params_json(base_params))
    attrs.update(
        analysis="sobol", method="Saltelli (2010) first order, Jansen (1999) total order",
        bounds=_bounds_json(bounds), n_base=layout.n, seed=int(seed),
        n_evaluations=design.size, n_bootstrap=int(n_bootstrap), confidence=float(confidence),
        calc_second_order=int(bool(calc_second_order)), n_failed=n_failed,
        n_base_used=int(keep_rows.sum()),
    )
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)
