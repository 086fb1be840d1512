"""The model contract as code: what a model module declares, read in one place.

A model module (one per source, in :mod:`jaxgames.models`) declares module-level constants;
:func:`model_spec` reads them into a :class:`ModelSpec` and :func:`solve_spec` resolves a solve
function -- a module function, a :func:`functools.partial` of one, or a :func:`combine` of
several -- into a :class:`SolveSpec`. The sweep engine, the sweep files, sensitivity analysis,
the plots and the command line all read a model through these two objects, so a partial keeps
its model (name, units, domain validation) and a combined regime is resolved the same way
everywhere.

What a model module declares
----------------------------
Required (existing models): ``MODEL`` (its name), ``Params`` (a NamedTuple of parameters),
``DOMAIN`` (``{parameter: Interval}``), ``UNITS``, ``DESCRIPTIONS``, ``OUTPUT_UNITS``
(``{output: unit}``; the outputs listed here are the real-valued, differentiable ones),
``DEFAULT`` (a ``Params``), ``SOLVE_FUNCTIONS`` (names of functions ``params -> NamedTuple``).

Optional:

* ``PARAM_DIMS = {parameter: dim}`` -- vector parameters (one value per player); the leaf has
  shape ``(n,)``, ``n`` its length in the base point. A sweep axis ``"v"`` sets every element,
  ``"v[1]"`` only the element whose coordinate is ``1`` (coordinates are ``1..n`` unless the
  dim has labels in ``DIM_COORDS``: then ``"x[R1]"``).
* ``OUTPUT_DIMS = {output: (dim, ...)}`` -- outputs with a fixed trailing shape; others are
  scalars per point.
* ``DIM_COORDS = {dim: (label, ...)}`` -- labels of dims with fixed labels; other dims get
  coordinates ``1..n``.
* ``CATEGORIES = {parameter: (label, ...)}`` -- categorical parameters. The ``Params`` leaf is
  the integer code (index into the labels), used by the model as a traced value, so one
  compilation serves every label. Users give labels; :meth:`ModelSpec.code` converts.
* ``STOCHASTIC = (name, ...)`` -- solve functions called as ``fn(params, key)``; a sweep passes
  ``key = jax.random.fold_in(jax.random.key(seed), replication)`` and the function's random
  numbers must depend on that key only (common random numbers across scenarios).
* ``DEFAULTS = {input_type: point}`` -- base points of solve functions whose input is not
  ``Params``.

Every solve function returns a NamedTuple (annotated as its return type) of outputs plus the
diagnostics that apply (:data:`DIAGNOSTICS`). Models know nothing about grids, files or devices.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgames._solver import Status
from jaxgames._validation import Interval, is_setting

#: Fields of a solve function's result that describe the solve, not the model's answer.
DIAGNOSTICS = ("converged", "residual", "iterations", "status", "assumptions_hold")

#: Fields of a :func:`combine`-d result that summarise all parts (unprefixed).
SUMMARY_OUTPUTS = ("converged", "status", "assumptions_hold")

_ELEMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\[([^\[\]]+)\]$")


# ----------------------------------------------------------------------------- combining


@dataclasses.dataclass(frozen=True)
class Combined:
    """Several model functions evaluated at the same point, outputs prefixed by their names.

    ``Combined((("noncooperative", nc), ("first_best", fb)))(params)`` returns
    ``{"noncooperative_y_r": ..., "first_best_W": ..., ..., "converged": ..., "status": ...}``
    where the unprefixed ``converged``/``status``/``assumptions_hold`` summarise all parts
    (``status`` is the first failing part's status). Hashable by value, so a sweep compiles
    it once (also on Dask workers, where it arrives by pickling). Stochastic parts receive
    ``key`` (the same key: common random numbers).
    """

    functions: tuple[tuple[str, Callable], ...]

    def __call__(self, params, key=None):
        out: dict[str, Any] = {}
        converged, status, assumptions = None, None, None
        for name, fn in self.functions:
            stochastic = solve_spec(fn).stochastic
            part = as_dict(fn(params, key) if stochastic else fn(params))
            out.update({f"{name}_{k}": v for k, v in part.items()})
            if "converged" in part:
                c = part["converged"]
                converged = c if converged is None else converged & c
            if "status" in part:
                s = part["status"]
                status = s if status is None else jnp.where(status == Status.SUCCESS, s, status)
            if "assumptions_hold" in part and assumptions is None:
                assumptions = part["assumptions_hold"]
        for k, v in (("converged", converged), ("status", status),
                     ("assumptions_hold", assumptions)):
            if v is not None:
                out[k] = v
        return out

    @property
    def name(self) -> str:  # for provenance
        return "combine(" + ", ".join(f"{k}={function_name(fn)}" for k, fn in self.functions) + ")"


def combine(functions: Mapping[str, Callable]) -> Combined:
    """One sweepable function from several: ``{prefix: model_function}`` (see :class:`Combined`)."""
    if not functions:
        raise ValueError("combine needs at least one function")
    return Combined(tuple(functions.items()))


def as_dict(out) -> dict[str, Any]:
    """A solve function's result as ``{field: value}``."""
    if hasattr(out, "_asdict"):
        return dict(out._asdict())
    if isinstance(out, Mapping):
        return dict(out)
    raise TypeError(
        f"a sweep needs a function returning a NamedTuple or a dict, got {type(out).__name__}")


def _unwrap(fn) -> tuple[Callable, dict[str, Any]]:
    """The innermost function of nested :func:`functools.partial` s and their keywords."""
    keywords: dict[str, Any] = {}
    while isinstance(fn, functools.partial):
        if fn.args:
            raise TypeError(
                f"a solve function takes the parameter point as its only positional argument; "
                f"functools.partial({function_name(fn.func)}, ...) binds positional arguments "
                f"{fn.args!r} (bind settings by keyword)")
        keywords = {**fn.keywords, **keywords}
        fn = fn.func
    return fn, keywords


def function_name(fn) -> str:
    """Provenance name: ``module.qualname``, with a partial's keywords, or ``combine(...)``."""
    if isinstance(fn, Combined):
        return fn.name
    inner, keywords = _unwrap(fn)
    name = f"{getattr(inner, '__module__', '?')}.{getattr(inner, '__qualname__', repr(inner))}"
    if keywords:
        name += "(" + ", ".join(f"{k}={v!r}" for k, v in sorted(keywords.items())) + ")"
    return name


# ----------------------------------------------------------------------------- the model


@dataclasses.dataclass(frozen=True, eq=False)
class ModelSpec:
    """Everything a model module declares (see the module docstring), with defaults filled in.

    Build it with :func:`model_spec`; a module without ``MODEL`` (e.g. a user's own solve
    function) gives a spec named after the module, with no domain, units or dims.
    """

    name: str
    module: types.ModuleType | None
    params_type: type | None
    domain: Mapping[str, Interval]
    units: Mapping[str, str]
    descriptions: Mapping[str, str]
    output_units: Mapping[str, str]
    default: Any
    defaults: Mapping[type, Any]
    solve_functions: tuple[str, ...]
    param_dims: Mapping[str, str]
    output_dims: Mapping[str, tuple[str, ...]]
    dim_coords: Mapping[str, tuple]
    categories: Mapping[str, tuple[str, ...]]
    stochastic: tuple[str, ...]

    # ---- dims and labels

    def coords(self, dim: str, n: int) -> np.ndarray:
        """Coordinates of ``dim`` of length ``n``: its declared labels, else ``1..n``."""
        labels = self.dim_coords.get(dim)
        if labels is None:
            return np.arange(1, n + 1)
        if len(labels) != n:
            raise ValueError(f"{self.name}: dim {dim!r} has {len(labels)} declared coords "
                             f"{list(labels)} but length {n}")
        # object (variable-length) strings: Zarr v3 has no stable fixed-width unicode dtype
        return np.asarray(labels, dtype=object if isinstance(labels[0], str) else None)

    def code(self, name: str, label: str) -> int:
        """Integer code of ``label`` of categorical parameter ``name``."""
        labels = self.categories.get(name)
        if labels is None:
            raise ValueError(f"{self.name}: parameter {name!r} is not categorical; the "
                             f"categorical parameters are {sorted(self.categories)}")
        if not isinstance(label, str) or label not in labels:
            raise ValueError(f"{self.name}: {label!r} is not a label of parameter {name}; the "
                             f"labels are {list(labels)}")
        return labels.index(label)

    def label(self, name: str, code: int) -> str:
        return self.categories[name][int(code)]

    # ---- one place for parameter validation

    def outside(self, name: str, values) -> tuple[float, Interval] | None:
        """The first of ``values`` outside ``DOMAIN[name]`` and the interval, or ``None``.
        (The one domain test of the sweep, the sweep files and sensitivity analysis.)"""
        interval = self.domain.get(name)
        if interval is None:
            return None
        values = np.asarray(values, float).reshape(-1)
        ok = np.asarray(interval.contains(values, xp=np), bool)
        if ok.all():
            return None
        return values[np.flatnonzero(~ok)[0]].item(), interval

    def check_values(self, name: str, values, what: str) -> np.ndarray:
        """Values of real parameter ``name`` as a non-empty 1-D float array, or ``ValueError``
        naming ``what``, the value and the allowed range (non-finite, outside ``DOMAIN``)."""
        values = np.asarray(values)
        if values.ndim != 1 or values.size == 0:
            raise ValueError(f"{what}: must be a non-empty 1-D array, got shape {values.shape}")
        if (not np.issubdtype(values.dtype, np.number) or values.dtype == bool
                or np.issubdtype(values.dtype, np.complexfloating)):
            raise ValueError(f"{what}: must be real numbers, got dtype {values.dtype}")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{what}: contains non-finite values")
        bad = self.outside(name, values)
        if bad is not None:
            raise ValueError(f"{what}: value {bad[0]!r} is outside the allowed range {bad[1]} "
                             f"of parameter {name}")
        return values.astype(float)

    def check_labels(self, name: str, values, what: str) -> np.ndarray:
        """Integer codes of the labels ``values`` of categorical parameter ``name``."""
        labels = self.categories[name]
        values = list(np.atleast_1d(np.asarray(values, dtype=object)))
        if not values:
            raise ValueError(f"{what}: needs at least one label of {list(labels)}")
        bad = [v for v in values if not isinstance(v, str) or v not in labels]
        if bad:
            raise ValueError(f"{what}: unknown label {bad[0]!r} of parameter {name}; the labels "
                             f"are {list(labels)}")
        return np.array([labels.index(v) for v in values], np.int32)

    def resolve_point(self, params, what: str = "base_params") -> Point:
        """Check a parameter point and split it into numbers, vectors, codes and settings."""
        if not (isinstance(params, tuple) and hasattr(params, "_fields")):
            raise TypeError(f"{what} must be a model's Params NamedTuple, got "
                            f"{type(params).__name__}")
        values: dict[str, np.ndarray] = {}
        settings: dict[str, Any] = {}
        for name in params._fields:
            raw = getattr(params, name)
            if name in self.categories:
                if isinstance(raw, str):
                    code = self.code(name, raw)
                else:
                    code = np.asarray(raw)
                    if code.shape != () or not np.issubdtype(code.dtype, np.integer) or not (
                            0 <= int(code) < len(self.categories[name])):
                        raise ValueError(
                            f"{what}[{name!r}] must be a label of {list(self.categories[name])} "
                            f"(or its integer code), got {raw!r}")
                    code = int(code)
                values[name] = np.asarray(code, np.int32)
                continue
            if is_setting(raw):  # e.g. a quadrature law: fixed for the sweep, compiled in
                settings[name] = raw
                continue
            v = np.asarray(raw)
            if not np.issubdtype(v.dtype, np.number) or v.dtype == bool:
                raise ValueError(f"{what}[{name!r}] must be real, got {raw!r}")
            if name in self.param_dims:
                if v.ndim != 1 or v.size == 0:
                    raise ValueError(f"{what}[{name!r}] must be a non-empty vector over dim "
                                     f"{self.param_dims[name]!r}, got shape {v.shape}")
            elif v.shape != ():
                raise ValueError(f"{what}[{name!r}] must be a real scalar, got {v!r}")
            self.check_values(name, v.reshape(-1), f"{what}[{name!r}]")
            values[name] = v.astype(float)
        return Point(self, type(params), values, settings)

    def resolve_axis(self, key: str, values, point: Point, what: str = "axes") -> Axis:
        """An axis ``key`` (``"p"``, ``"v"`` or ``"v[1]"``) with its values, checked."""
        name, index = key, None
        m = _ELEMENT.match(key)
        if m:
            name = m.group(1)
        if name not in point.values:
            raise ValueError(f"{what}: unknown parameter(s) {[key]}; the parameters are "
                             f"{point.sweepable}")
        label = f"{what}[{key!r}]"
        if m:
            if name not in self.param_dims:
                raise ValueError(f"{label}: parameter {name} is a scalar; element spelling "
                                 f"name[coord] needs a vector parameter, i.e. one of "
                                 f"{sorted(self.param_dims)}")
            n = point.values[name].shape[0]
            coords = [str(c) for c in self.coords(self.param_dims[name], n)]
            if m.group(2) not in coords:
                raise ValueError(f"{label}: no element {m.group(2)!r} of dim "
                                 f"{self.param_dims[name]!r}; the coords are {coords}")
            index = coords.index(m.group(2))
        if name in self.categories:
            codes = self.check_labels(name, values, label)
            return Axis(key, name, None, codes,
                        np.asarray(self.categories[name], dtype=object)[codes])
        v = self.check_values(name, np.asarray(values), label)
        return Axis(key, name, index, v, v)


@dataclasses.dataclass(frozen=True)
class Axis:
    """One swept quantity: a parameter, one element of a vector parameter, or a category."""

    key: str  # dim name: "p", "v" (every element) or "v[1]" (one element)
    param: str  # the Params field
    index: int | None  # element index (0-based) for "v[1]", None otherwise
    values: np.ndarray  # what the model gets: floats, or integer codes of a category
    coords: np.ndarray  # what the dataset shows: the values, or the labels

    @property
    def categorical(self) -> bool:
        return np.issubdtype(self.values.dtype, np.integer)


@dataclasses.dataclass(frozen=True, eq=False)
class Point:
    """A checked parameter point: numeric leaves as arrays, static settings apart."""

    model: ModelSpec
    params_type: type
    values: Mapping[str, np.ndarray]  # real scalars, real vectors, int32 codes
    settings: Mapping[str, Any]

    @property
    def sweepable(self) -> list[str]:
        return list(self.values)

    @property
    def real(self) -> tuple[str, ...]:
        """Parameters that can be differentiated (not categorical)."""
        return tuple(k for k in self.values if k not in self.model.categories)

    def describe(self) -> dict[str, Any]:
        """JSON-able: numbers, lists for vectors, labels for categories."""
        out: dict[str, Any] = {}
        for k, v in self.values.items():
            if k in self.model.categories:
                out[k] = self.model.label(k, v)
            else:
                out[k] = v.tolist() if v.ndim else float(v)
        return out


# ----------------------------------------------------------------------------- lookups


def _module_of(fn) -> types.ModuleType | None:
    return sys.modules.get(getattr(fn, "__module__", None) or "")


@functools.cache
def _model_spec_cached(module: types.ModuleType) -> ModelSpec:
    def get(name, default):
        v = getattr(module, name, None)
        return default if v is None else v

    params_type = getattr(module, "Params", None)
    output_dims = {k: tuple(v) for k, v in get("OUTPUT_DIMS", {}).items()}
    categories = {k: tuple(v) for k, v in get("CATEGORIES", {}).items()}
    return ModelSpec(
        name=get("MODEL", module.__name__), module=module, params_type=params_type,
        domain=dict(get("DOMAIN", {})), units=dict(get("UNITS", {})),
        descriptions=dict(get("DESCRIPTIONS", {})), output_units=dict(get("OUTPUT_UNITS", {})),
        default=getattr(module, "DEFAULT", None), defaults=dict(get("DEFAULTS", {})),
        solve_functions=tuple(get("SOLVE_FUNCTIONS", ())),
        param_dims=dict(get("PARAM_DIMS", {})), output_dims=output_dims,
        dim_coords={k: tuple(v) for k, v in get("DIM_COORDS", {}).items()},
        categories=categories, stochastic=tuple(get("STOCHASTIC", ())),
    )


def model_spec(model: str | types.ModuleType) -> ModelSpec:
    """The :class:`ModelSpec` of a registered model name or a model module."""
    if isinstance(model, str):
        from jaxgames.models import get_model

        model = get_model(model)
    return _model_spec_cached(model)


# ----------------------------------------------------------------------------- solve functions


@dataclasses.dataclass(frozen=True)
class Part:
    """One model function inside a solve function (several for :func:`combine`)."""

    prefix: str | None  # output prefix of a combined part, None alone
    function: Callable  # the module function (partials unwrapped)
    keywords: Mapping[str, Any]  # bound by functools.partial
    stochastic: bool
    fields: tuple[str, ...] | None  # NamedTuple fields from the return annotation


@dataclasses.dataclass(frozen=True, eq=False)
class SolveSpec:
    """A solve function resolved against its model (see :func:`solve_spec`)."""

    function: Callable  # as given (called by the sweep)
    name: str  # provenance: module.qualname, partial keywords, combine(...)
    model: ModelSpec
    parts: tuple[Part, ...]
    input_type: type | None

    @property
    def stochastic(self) -> bool:
        return any(p.stochastic for p in self.parts)

    @property
    def combined(self) -> bool:
        return isinstance(self.function, Combined)

    def call(self, params, key=None) -> dict[str, Any]:
        """Evaluate at one point; ``key`` goes to a stochastic function only."""
        if self.stochastic:
            return as_dict(self.function(params, key))
        return as_dict(self.function(params))

    @property
    def outputs(self) -> tuple[str, ...] | None:
        """Output names from the return annotations (no tracing); ``None`` if unknown."""
        if any(p.fields is None for p in self.parts):
            return None
        if not self.combined:
            return self.parts[0].fields
        names = tuple(f"{p.prefix}_{f}" for p in self.parts for f in p.fields)
        return names + tuple(o for o in SUMMARY_OUTPUTS
                             if all(o in p.fields for p in self.parts))

    def field(self, output: str) -> str:
        """The model's own name of ``output`` (its combine prefix removed)."""
        for p in self.parts:
            if p.prefix and output.startswith(p.prefix + "_"):
                return output[len(p.prefix) + 1:]
        return output

    def output_dims(self, output: str) -> tuple[str, ...]:
        return self.model.output_dims.get(self.field(output), ())

    def output_units(self, output: str) -> str | None:
        return self.model.output_units.get(self.field(output))

    def description(self, output: str) -> str | None:
        d = self.model.descriptions.get(self.field(output))
        if d is not None and self.field(output) != output:
            d = f"{d} ({output[: -len(self.field(output)) - 1]})"
        return d

    def is_diagnostic(self, output: str) -> bool:
        return self.field(output) in DIAGNOSTICS

    def differentiable(self, outputs: Mapping[str, Any] | None = None) -> tuple[str, ...]:
        """Real-valued model outputs: those with ``OUTPUT_UNITS`` if the model declares any,
        else every floating output that is not a diagnostic. ``outputs``: ``{name: shape
        struct}`` from tracing, to check dtypes; else the annotations are used."""
        names = tuple(outputs) if outputs is not None else (self.outputs or ())
        if self.model.output_units:
            keep = [o for o in names if self.field(o) in self.model.output_units]
        else:
            keep = [o for o in names if not self.is_diagnostic(o)]
        if outputs is not None:
            keep = [o for o in keep if jnp.issubdtype(outputs[o].dtype, jnp.floating)]
        return tuple(keep)

    def solver_settings(self) -> str:
        """JSON of each part's ``solver`` setting (default or bound), for provenance."""
        out = {}
        for fn in ([f for _, f in self.function.functions] if self.combined
                   else [self.function]):
            try:
                p = inspect.signature(fn).parameters.get("solver")
            except (TypeError, ValueError):
                p = None
            if p is not None and p.default is not inspect.Parameter.empty:
                out[function_name(_unwrap(fn)[0])] = repr(p.default)
        return json.dumps(out)

    def base_point(self):
        """The model's base point for this function's input type."""
        return self.model.defaults.get(self.input_type, self.model.default)


def _return_fields(fn) -> tuple[str, ...] | None:
    try:
        ret = typing.get_type_hints(fn).get("return")
    except Exception:  # an annotation that does not resolve
        return None
    fields = getattr(ret, "_fields", None)
    return tuple(fields) if fields is not None else None


def _input_type(fn):
    try:
        hints = typing.get_type_hints(fn)
        first = next(iter(inspect.signature(fn).parameters), None)
    except Exception:
        return None
    return hints.get(first)


def _part(prefix, fn) -> tuple[Part, types.ModuleType | None, Any]:
    inner, keywords = _unwrap(fn)
    module = _module_of(inner)
    stochastic = getattr(inner, "__name__", None) in getattr(module, "STOCHASTIC", ())
    return (Part(prefix, inner, keywords, stochastic, _return_fields(inner)), module,
            _input_type(inner))


@functools.lru_cache(maxsize=256)
def _solve_spec_cached(fn) -> SolveSpec:
    if isinstance(fn, Combined):
        resolved = [_part(prefix, f) for prefix, f in fn.functions]
    else:
        resolved = [_part(None, fn)]
    modules = {m for _, m, _ in resolved}
    if len(modules) > 1:
        raise ValueError(f"combine: the functions belong to different models "
                         f"{sorted(getattr(m, '__name__', '?') for m in modules)}")
    module = resolved[0][1]
    types_ = {t for _, _, t in resolved}
    model = (_model_spec_cached(module) if module is not None else
             ModelSpec("?", None, None, {}, {}, {}, {}, None, {}, (), {}, {}, {}, {}, ()))
    return SolveSpec(fn, function_name(fn), model, tuple(p for p, _, _ in resolved),
                     types_.pop() if len(types_) == 1 else None)


def solve_spec(fn: Callable) -> SolveSpec:
    """Resolve a solve function (module function, ``functools.partial`` of one, or
    :func:`combine`) against its model module."""
    if not callable(fn):
        raise TypeError(f"solve_fn must be callable, got {type(fn).__name__}")
    try:
        return _solve_spec_cached(fn)
    except TypeError as exc:
        if "unhashable" not in str(exc):
            raise
        return _solve_spec_cached.__wrapped__(fn)


def check_model(module: types.ModuleType) -> ModelSpec:
    """Check that a model module meets the contract; returns its spec or raises ``ValueError``
    naming the broken declaration (used by the tests for every registered model)."""
    spec = model_spec(module)
    problems = []
    for name in ("MODEL", "Params", "DOMAIN", "DEFAULT", "SOLVE_FUNCTIONS", "OUTPUT_UNITS"):
        if getattr(module, name, None) is None:
            problems.append(f"missing {name}")
    fields = set(getattr(spec.params_type, "_fields", ()))
    for table in ("PARAM_DIMS", "CATEGORIES"):
        for k in getattr(module, table, None) or {}:
            if k not in fields:
                problems.append(f"{table}[{k!r}] is not a field of Params")
    for k in spec.stochastic:
        if k not in spec.solve_functions:
            problems.append(f"STOCHASTIC names {k!r}, which is not in SOLVE_FUNCTIONS")
    for name in spec.solve_functions:
        fn = getattr(module, name, None)
        if not callable(fn):
            problems.append(f"SOLVE_FUNCTIONS names {name!r}, which is not a function")
        elif _return_fields(fn) is None:
            problems.append(f"{name} has no NamedTuple return annotation")
    if problems:
        raise ValueError(f"model {spec.name}: " + "; ".join(problems))
    return spec


def jax_key(seed, replication):
    """The key of a stochastic solve: ``fold_in(key(seed), replication)``."""
    return jax.random.fold_in(jax.random.key(seed), replication)


def output_element(ds, name: str):
    """Variable ``name``, or one element ``q[1]`` / ``cost[R1]`` of an output with one
    trailing dim (the coord as written: ``1..n`` or a ``DIM_COORDS`` label)."""
    if name in ds.data_vars or not name.endswith("]") or "[" not in name:
        return ds[name]
    var, label = name[:-1].split("[", 1)
    da = ds[var]
    # an output's own dims come after the sweep's: the element is taken along the last one
    last = da.dims[-1] if len(da.dims) > 1 else None
    if last is None or last not in ds.coords:
        raise ValueError(f"{name}: element spelling output[coord] needs an output with a dim "
                         f"of its own; {var} has dims {da.dims}")
    coords = [str(c) for c in ds[last].values]
    if label not in coords:
        raise ValueError(f"{name}: no element {label!r} of dim {last!r}; the coords are "
                         f"{coords}")
    return da.isel({last: coords.index(label)}, drop=True).rename(name)
