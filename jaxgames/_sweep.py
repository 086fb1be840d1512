"""Sweeps: a model solved at every point of a parameter grid or design, as a labelled dataset.

:func:`sweep` is the product's main job. It takes a model function ``params -> NamedTuple``
written for *one* point (e.g. :func:`jaxgames.models.bakshi_kleindorfer.noncooperative`), a base
point, and either ``axes`` (a full factorial grid) or a :class:`~jaxgames.design.Design` (a list
of points), and returns an :class:`xarray.Dataset` whose dims are the swept parameters.

How a sweep runs
----------------
* **Chunks.** The grid is flattened in C order and cut into chunks of at most ``chunk_size``
  points. A chunk is a contiguous run of flat indices that is also a rectangular block of the
  grid -- ``(1, ..., 1, k, n_{j+1}, ..., n_{d-1})`` -- so it is exactly one chunk of the Zarr
  arrays it is written to (no two chunks share a storage chunk: concurrent writers never race,
  and a chunk is either complete or rewritten). Every chunk is padded to the same length and
  solved by one call of a single jit-compiled ``vmap`` of the model function: compiled once,
  reused for every chunk, so peak memory scales with ``chunk_size``, not with the grid.
* **Pipelining.** JAX dispatches asynchronously: chunk ``i + 1`` is submitted before chunk ``i``
  is copied back and written, so the device computes while the host writes.
* **Devices.** With several local devices (GPUs, or CPU devices forced by
  ``XLA_FLAGS=--xla_force_host_platform_device_count``) each chunk is sharded across all of them
  along the point axis.
* **Store and resume.** With ``store=path.zarr`` every chunk is written to its own region of a
  Zarr store as soon as it finishes, and then marked complete by an atomically created marker
  file (``<store>/jaxgames_progress/chunk-<i>``, inside a Zarr subgroup that readers of the
  dataset ignore). A chunk whose marker is missing -- never started, or
  interrupted while writing (e.g. SIGKILL) -- is recomputed in full on ``resume=True``; a marked
  chunk is never recomputed. The store records a key of everything that determines the numbers
  (model function, base point, axes, derivatives, dtype, chunk layout, jaxgames version) and
  refuses to resume a different sweep.
* **Dask.** ``dask=`` (a ``distributed.Client`` or a scheduler address) runs the pending chunks
  as tasks on a cluster; each task solves one chunk and writes its own region of the store, so
  the result is identical to a single-process run.

Failure is data: every diagnostic of the model function (``converged``, ``residual``,
``iterations``, ``status``, ``assumptions_hold``) is a variable of the dataset, and derivatives
at points that did not converge are NaN (they would be derivatives of a non-solution).
Inputs are checked before anything is compiled: unknown parameters, non-finite or empty axes,
values outside a model's ``DOMAIN``, unknown outputs in ``derivatives``.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import inspect
import json
import math
import os
import platform
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from jaxgames._solver import Status
from jaxgames._validation import Interval, describe_setting, is_setting
from jaxgames.design import Design

#: Attributes that describe *when/where* a dataset was made, not what it contains; they differ
#: between two runs of the same sweep (and are ignored when comparing a resumed sweep).
VOLATILE_ATTRS = ("created", "device", "devices")

_MARKER_DIR = "jaxgames_progress"  # a Zarr subgroup, so readers of the root ignore it
_DEFAULT_CHUNK = {"cpu": 2**16}  # points; accelerators default to 2**20


# ----------------------------------------------------------------------------- combining


@dataclasses.dataclass(frozen=True)
class Combined:
    """Several model functions evaluated at the same point, outputs prefixed by their names.

    ``Combined((("noncooperative", nc), ("first_best", fb)))(params)`` returns
    ``{"noncooperative_y_r": ..., "first_best_W": ..., ..., "converged": ..., "status": ...}``
    where the unprefixed ``converged``/``status``/``assumptions_hold`` summarise all parts
    (``status`` is the first failing part's status). Hashable by value, so a sweep compiles
    it once (also on Dask workers, where it arrives by pickling).
    """

    functions: tuple[tuple[str, Callable], ...]

    def __call__(self, params):
        out: dict[str, Any] = {}
        converged, status, assumptions = None, None, None
        for name, fn in self.functions:
            part = _as_dict(fn(params))
            out.update({f"{name}_{k}": v for k, v in part.items()})
            if "converged" in part:
                c = part["converged"]
                converged = c if converged is None else converged & c
            if "status" in part:
                s = part["status"]
                status = s if status is None else jnp.where(status == Status.SUCCESS, s, status)
            if "assumptions_hold" in part and assumptions is None:
                assumptions = part["assumptions_hold"]
        for key, v in (("converged", converged), ("status", status),
                       ("assumptions_hold", assumptions)):
            if v is not None:
                out[key] = v
        return out

    @property
    def name(self) -> str:  # for provenance
        return "combine(" + ", ".join(f"{k}={_qualname(fn)}" for k, fn in self.functions) + ")"


def combine(functions: Mapping[str, Callable]) -> Combined:
    """One sweepable function from several: ``{prefix: model_function}`` (see :class:`Combined`)."""
    if not functions:
        raise ValueError("combine needs at least one function")
    return Combined(tuple(functions.items()))


# ----------------------------------------------------------------------------- helpers


def _as_dict(out) -> dict[str, Any]:
    if hasattr(out, "_asdict"):
        return dict(out._asdict())
    if isinstance(out, Mapping):
        return dict(out)
    raise TypeError(
        f"a sweep needs a function returning a NamedTuple or a dict, got {type(out).__name__}")


def _qualname(fn) -> str:
    if isinstance(fn, Combined):
        return fn.name
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _model_module(solve_fn):
    if isinstance(solve_fn, Combined):
        solve_fn = solve_fn.functions[0][1]
    return sys.modules.get(getattr(solve_fn, "__module__", "") or "")


def _solver_settings(solve_fn) -> str:
    fns = [f for _, f in solve_fn.functions] if isinstance(solve_fn, Combined) else [solve_fn]
    out = {}
    for fn in fns:
        try:
            p = inspect.signature(fn).parameters.get("solver")
        except (TypeError, ValueError):
            p = None
        if p is not None and p.default is not inspect.Parameter.empty:
            out[_qualname(fn)] = repr(p.default)
    return json.dumps(out)


def _default_chunk_size() -> int:
    return _DEFAULT_CHUNK.get(jax.default_backend(), 2**20)


class ChunkInfo(NamedTuple):
    """Passed to ``callback`` after a chunk is safely stored."""

    index: int  # chunk number
    start: int  # first flat point index
    stop: int  # one past the last flat point index
    n_chunks: int
    n_points: int


# ----------------------------------------------------------------------------- layout


@dataclasses.dataclass(frozen=True)
class Layout:
    """How the flattened grid is cut into chunks that are rectangular blocks.

    Axis ``block_axis`` is cut into runs of ``block_len``; axes before it are taken one index
    at a time, axes after it whole. A chunk is therefore contiguous in C order.
    """

    dims: tuple[str, ...]
    shape: tuple[int, ...]
    block_axis: int
    block_len: int

    @classmethod
    def make(cls, dims, shape, chunk_size: int) -> Layout:
        # Walk from the last axis; ``trailing`` = points in one index of axis j (< chunk_size).
        trailing = 1
        for j in range(len(shape) - 1, -1, -1):
            if shape[j] * trailing >= chunk_size or j == 0:
                return cls(tuple(dims), tuple(shape), j, min(shape[j], chunk_size // trailing))
            trailing *= shape[j]
        raise ValueError("a sweep needs at least one axis")

    @property
    def n_points(self) -> int:
        return math.prod(self.shape)

    @property
    def trailing(self) -> int:
        return math.prod(self.shape[self.block_axis + 1:])

    @property
    def chunk_points(self) -> int:
        return self.block_len * self.trailing

    @property
    def blocks_per_run(self) -> int:
        return -(-self.shape[self.block_axis] // self.block_len)

    @property
    def n_chunks(self) -> int:
        return math.prod(self.shape[:self.block_axis]) * self.blocks_per_run

    @property
    def storage_chunks(self) -> tuple[int, ...]:
        j = self.block_axis
        return (1,) * j + (self.block_len,) + self.shape[j + 1:]

    def chunk(self, i: int) -> tuple[int, int, dict[str, slice]]:
        """Flat ``[start, stop)`` and the region ``{dim: slice}`` of chunk ``i``."""
        j, n_j = self.block_axis, self.shape[self.block_axis]
        lead, b = divmod(i, self.blocks_per_run)
        lo = b * self.block_len
        hi = min(lo + self.block_len, n_j)
        start = (lead * n_j + lo) * self.trailing
        stop = (lead * n_j + hi) * self.trailing
        lead_idx = np.unravel_index(lead, self.shape[:j]) if j else ()
        region = {d: slice(int(k), int(k) + 1) for d, k in zip(self.dims[:j], lead_idx,
                                                                strict=True)}
        region[self.dims[j]] = slice(lo, hi)
        region.update({d: slice(0, n) for d, n in zip(self.dims[j + 1:], self.shape[j + 1:],
                                                      strict=True)})
        return start, stop, region

    def region_shape(self, region: Mapping[str, slice]) -> tuple[int, ...]:
        return tuple(region[d].stop - region[d].start for d in self.dims)


# ----------------------------------------------------------------------------- the plan


@dataclasses.dataclass(frozen=True, eq=False)
class _Plan:
    """Everything a worker needs to solve and store one chunk (picklable)."""

    solve_fn: Callable
    base: tuple[tuple[str, float], ...]
    settings: tuple[tuple[str, Any], ...]  # static settings of the params (hashable)
    base_type: type
    varied: tuple[str, ...]
    columns: tuple[np.ndarray, ...] | None  # design points (None for a grid)
    axes: tuple[np.ndarray, ...] | None  # grid coordinates (None for a design)
    layout: Layout
    derivatives: tuple[str, ...]
    wrt: tuple[str, ...]
    elasticities: bool
    dtype: str
    batch: int  # compiled batch length (chunk_points rounded up to a multiple of devices)
    n_devices: int
    store: str | None
    variables: tuple[tuple[str, str], ...]  # (name, dtype) in dataset order
    micro_batch: int | None = None  # lockstep group inside a chunk (None: one vmap)

    def values(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Parameter values of flat points ``start..stop-1``, padded to the batch length."""
        idx = np.arange(start, stop)
        idx = np.concatenate([idx, np.full(self.batch - len(idx), stop - 1)])
        if self.columns is not None:
            vals = {n: c[idx] for n, c in zip(self.varied, self.columns, strict=True)}
        else:
            multi = np.unravel_index(idx, self.layout.shape)
            vals = {n: a[m] for n, a, m in zip(self.varied, self.axes, multi, strict=True)}
        return {k: v.astype(self.dtype) for k, v in vals.items()}


def _point_function(solve_fn, base_type, settings, derivatives, wrt, elasticities):
    """The per-point function: outputs, plus implicit derivatives from the same solve."""

    def point(values, base):
        params = base_type(**{**base, **dict(settings), **values})
        if not derivatives:
            return _as_dict(solve_fn(params))

        def f(sel):
            full = _as_dict(solve_fn(params._replace(**sel)))
            return {o: full[o] for o in derivatives}, full

        sel = {p: getattr(params, p) for p in wrt}
        jac, full = jax.jacfwd(f, has_aux=True)(sel)
        ok = full.get("converged", jnp.bool_(True))
        out = dict(full)
        for o in derivatives:
            for p in wrt:
                d = jnp.where(ok, jac[o][p], jnp.nan)
                out[f"d{o}_d{p}"] = d
                if elasticities:
                    y = full[o]
                    safe = jnp.where(y != 0, y, 1.0)
                    out[f"elasticity_{o}_{p}"] = jnp.where(y != 0, d * sel[p] / safe, jnp.nan)
        return out

    return point


@functools.lru_cache(maxsize=64)
def _compiled(solve_fn, base_type, settings, derivatives, wrt, elasticities, n_devices,
              micro_batch=None):
    """One jit-compiled vmapped function per sweep configuration (cached across chunks/calls)."""
    point = _point_function(solve_fn, base_type, settings, derivatives, wrt, elasticities)
    if micro_batch is None:
        batched = jax.vmap(point, in_axes=(0, None))
    else:
        def batched(values, base):
            return jax.lax.map(lambda v: point(v, base), values, batch_size=micro_batch)
    if n_devices == 1:
        return jax.jit(batched), None
    mesh = jax.sharding.Mesh(np.array(jax.local_devices()[:n_devices]), ("points",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("points"))
    return jax.jit(batched), sharding


def _dispatch(plan: _Plan, start: int, stop: int):
    """Submit one chunk (asynchronously); returns device arrays."""
    if plan.dtype == "float64" and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)  # Dask workers: a fresh process
    fn, sharding = _compiled(plan.solve_fn, plan.base_type, plan.settings, plan.derivatives,
                             plan.wrt, plan.elasticities, plan.n_devices, plan.micro_batch)
    values = {k: jnp.asarray(v) for k, v in plan.values(start, stop).items()}
    if sharding is not None:
        values = jax.device_put(values, sharding)
    base = {k: jnp.asarray(v, plan.dtype) for k, v in plan.base}
    return fn(values, base)


def _collect(plan: _Plan, out, start: int, stop: int) -> dict[str, np.ndarray]:
    host = jax.device_get(out)
    n = stop - start
    return {name: np.asarray(host[name][:n]).astype(dt, copy=False) for name, dt in plan.variables}


# ----------------------------------------------------------------------------- the store


def _marker(store: str, i: int) -> Path:
    return Path(store) / _MARKER_DIR / f"chunk-{i:08d}"


def _done_chunks(store: str) -> set[int]:
    d = Path(store) / _MARKER_DIR
    if not d.is_dir():
        return set()
    return {int(p.name.split("-")[1]) for p in d.iterdir() if p.name.startswith("chunk-")}


def _mark_done(store: str, i: int) -> None:
    path = _marker(store, i)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write("done\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)  # atomic: a marker exists only after the chunk's data is written


def _write_chunk(plan: _Plan, i: int, arrays: Mapping[str, np.ndarray]) -> None:
    _, _, region = plan.layout.chunk(i)
    shape = plan.layout.region_shape(region)
    ds = xr.Dataset({k: (plan.layout.dims, v.reshape(shape)) for k, v in arrays.items()})
    ds.to_zarr(plan.store, region=region, mode="r+", consolidated=False)
    _mark_done(plan.store, i)


def _run_chunk_task(plan: _Plan, i: int) -> int:
    """A Dask task: solve chunk ``i`` and write it to the store."""
    start, stop, _ = plan.layout.chunk(i)
    _write_chunk(plan, i, _collect(plan, _dispatch(plan, start, stop), start, stop))
    return i


# ----------------------------------------------------------------------------- validation


def _check_names(names, fields, what):
    unknown = [n for n in names if n not in fields]
    if unknown:
        raise ValueError(f"{what}: unknown parameter(s) {unknown}; the parameters are "
                         f"{list(fields)}")


def _check_values(name: str, values: np.ndarray, domain: Mapping[str, Interval] | None, what):
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{what}[{name!r}] must be a non-empty 1-D array, got shape "
                         f"{values.shape}")
    if not np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype,
                                                                   np.complexfloating):
        raise ValueError(f"{what}[{name!r}] must be real numbers, got dtype {values.dtype}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what}[{name!r}] contains non-finite values")
    if domain is not None and name in domain:
        ok = np.asarray(domain[name].contains(values.astype(float), xp=np), bool)
        if not ok.all():
            bad = values[np.flatnonzero(~ok)[0]]
            raise ValueError(f"{what}[{name!r}]: value {bad.item()!r} is outside the allowed range "
                             f"{domain[name]} of parameter {name}")


def _check_positive_int(name, v):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def _resolve_dtype(dtype) -> str:
    if dtype is None:
        return "float64" if jax.config.jax_enable_x64 else "float32"
    name = np.dtype(dtype).name
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {name}")
    if name == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("dtype float64 needs 64-bit JAX: call "
                         "jax.config.update('jax_enable_x64', True) before the sweep")
    return name


# ----------------------------------------------------------------------------- the dataset


def _device_description(n_devices: int) -> tuple[str, str]:
    devs = jax.local_devices()[:n_devices]
    kinds = sorted({f"{d.platform}:{d.device_kind}" for d in devs})
    return ", ".join(kinds), f"{len(devs)} device(s): " + ", ".join(str(d) for d in devs)


def _metadata(module):
    units = dict(getattr(module, "UNITS", {}) or {})
    out_units = dict(getattr(module, "OUTPUT_UNITS", {}) or {})
    desc = dict(getattr(module, "DESCRIPTIONS", {}) or {})
    return units, out_units, desc


def _var_attrs(name, solve_fn, units, out_units, desc, plan) -> dict[str, str]:
    prefixes = [p for p, _ in solve_fn.functions] if isinstance(solve_fn, Combined) else []

    def lookup(table, key):
        if key in table:
            return table[key]
        for p in prefixes:
            if key.startswith(p + "_") and key[len(p) + 1:] in table:
                return table[key[len(p) + 1:]]
        return None

    for o in plan.derivatives:
        for p in plan.wrt:
            if name == f"d{o}_d{p}":
                u_o, u_p = lookup(out_units, o) or "1", units.get(p, "1")
                return {"units": f"({u_o})/({u_p})",
                        "description": f"d {o} / d {p} (implicit function theorem)",
                        "output": o, "wrt": p}
            if name == f"elasticity_{o}_{p}":
                return {"units": "1", "description": f"elasticity of {o} with respect to {p}",
                        "output": o, "wrt": p}
    attrs = {}
    u, d = lookup(out_units, name), lookup(desc, name)
    if u is not None:
        attrs["units"] = u
    if d is not None:
        for p in prefixes:
            if name.startswith(p + "_"):
                d = f"{d} ({p})"
        attrs["description"] = d
    return attrs


def _template(plan: _Plan, design: Design | None, attrs: dict, var_attrs: dict,
              coord_attrs: dict, lazy: bool, values: Mapping | None = None) -> xr.Dataset:
    dims, shape = plan.layout.dims, plan.layout.shape
    if design is not None:
        coords = {design.dim: (design.dim, np.arange(design.size))}
        coords.update({n: (design.dim, c.astype(plan.dtype), coord_attrs.get(n, {}))
                       for n, c in zip(plan.varied, plan.columns, strict=True)})
    else:
        coords = {n: (n, a.astype(plan.dtype), coord_attrs.get(n, {}))
                  for n, a in zip(plan.varied, plan.axes, strict=True)}
    data = {}
    for name, dt in plan.variables:
        if values is not None:
            arr = values[name].reshape(shape)
        elif lazy:
            import dask.array as da

            arr = da.zeros(shape, dtype=dt, chunks=plan.layout.storage_chunks)
        else:
            arr = np.zeros(shape, dtype=dt)
        data[name] = (dims, arr, var_attrs.get(name, {}))
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _open_store(store: str) -> xr.Dataset:
    return xr.open_zarr(store, consolidated=False)


def open_sweep(store: str | os.PathLike) -> xr.Dataset:
    """Open a sweep's Zarr store (lazily); raises if any chunk is not complete."""
    store = os.fspath(store)
    ds = _open_store(store)
    n = int(ds.attrs.get("n_chunks", -1))
    missing = n - len(_done_chunks(store))
    if missing:
        raise ValueError(f"{store}: {missing} of {n} chunks are not complete; resume the sweep "
                         "(jaxgames.sweep(..., store=..., resume=True) or jaxgames sweep "
                         "--resume)")
    return ds


# ----------------------------------------------------------------------------- the sweep


def sweep(
    solve_fn: Callable[[Any], Any],
    base_params: Any,
    axes: Mapping[str, Sequence[float]] | Design,
    *,
    derivatives: Sequence[str] = (),
    wrt: Sequence[str] | None = None,
    elasticities: bool = False,
    chunk_size: int | None = None,
    store: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    dtype: Any = None,
    dask: Any = None,
    devices: int | None = None,
    micro_batch: int | None = None,
    callback: Callable[[ChunkInfo], None] | None = None,
) -> xr.Dataset:
    """Solve ``solve_fn`` at every point of a grid or design; return a labelled dataset.

    Args:
        solve_fn: model function ``params -> NamedTuple`` (or dict) for one point, e.g.
            ``bakshi_kleindorfer.noncooperative``; :func:`combine` joins several.
        base_params: the model's ``Params``; parameters not swept keep these values.
        axes: ``{parameter: values}`` for a full factorial grid (dims in this order), or a
            :class:`~jaxgames.design.Design` (one ``sample`` dim; parameter values are coords).
        derivatives: outputs to differentiate (implicit function theorem); adds
            ``d<output>_d<param>`` for every ``param`` in ``wrt``.
        wrt: parameters to differentiate with respect to (default: all fields of the Params).
        elasticities: also add ``elasticity_<output>_<param> = (param / output) d output/d param``
            (NaN where the output is 0).
        chunk_size: maximum points per compiled call (default 65,536 on CPU, 1,048,576 on an
            accelerator). Peak memory is proportional to it.
        store: path of a Zarr store to stream chunks into (the result is then opened lazily
            from it); ``None`` keeps everything in memory.
        resume: continue the sweep already in ``store``: completed chunks are kept, the rest
            (including any chunk interrupted while writing) are solved.
        overwrite: replace an existing store instead of failing.
        progress: show a progress bar (points, points/s, ETA); ``None``: only on a terminal.
        dtype: ``float32`` or ``float64`` (default: float64 if x64 is enabled).
        dask: a ``distributed.Client`` or scheduler address: solve chunks as tasks on that
            cluster (needs ``store``; workers write their own regions).
        devices: number of local devices to shard each chunk across (default: all).
        micro_batch: points solved in lockstep inside a chunk (``jax.lax.map`` over vmapped
            groups of this size); ``None`` takes the model's ``MICRO_BATCH[platform]`` if it
            declares one, else the whole chunk is one ``vmap``. Models with large per-point
            working sets and nested loops run several times faster on CPU in small groups
            (``defender_attacker``: 8). Single-device runs only; it does not change results.
        callback: called with a :class:`ChunkInfo` after each chunk is stored.

    Returns:
        ``xarray.Dataset``: one variable per output of ``solve_fn`` (diagnostics included) and
        per derivative; coords are the swept values; attrs record the provenance.
    """
    # ---- validate everything before tracing or compiling anything
    if not (isinstance(base_params, tuple) and hasattr(base_params, "_fields")):
        raise TypeError(f"base_params must be a model's Params NamedTuple, got "
                        f"{type(base_params).__name__}")
    if not callable(solve_fn):
        raise TypeError(f"solve_fn must be callable, got {type(solve_fn).__name__}")
    fields = base_params._fields
    module = _model_module(solve_fn)
    domain = getattr(module, "DOMAIN", None)
    model_name = getattr(module, "MODEL", getattr(module, "__name__", "?"))
    dtype = _resolve_dtype(dtype)
    base, settings = {}, {}
    for name in fields:
        raw = getattr(base_params, name)
        if is_setting(raw):  # e.g. a quadrature law: fixed for the sweep, compiled in
            settings[name] = raw
            continue
        v = np.asarray(raw)
        if v.shape != () or not np.issubdtype(v.dtype, np.number):
            raise ValueError(f"base_params.{name} must be a real scalar, got {v!r}")
        _check_values(name, v.reshape(1).astype(float), domain, "base_params")
        base[name] = float(v)

    fields = tuple(f for f in fields if f not in settings)
    if isinstance(axes, Design):
        design = axes
        _check_names(design.names, fields, "design")
        for n, c in design.points.items():
            _check_values(n, c, domain, "design")
        varied = design.names
        columns = tuple(np.asarray(design.points[n], float) for n in varied)
        grid_axes = None
        layout_dims, layout_shape = (design.dim,), (design.size,)
        if design.dim in fields:
            raise ValueError(f"design dim name {design.dim!r} clashes with a parameter name")
    elif isinstance(axes, Mapping):
        design = None
        if not axes:
            raise ValueError("axes must name at least one parameter (or pass a Design)")
        _check_names(axes, fields, "axes")
        grid_axes = []
        for n, vals in axes.items():
            arr = np.asarray(vals)
            _check_values(n, arr, domain, "axes")
            grid_axes.append(arr.astype(float))
        grid_axes = tuple(grid_axes)
        varied = tuple(axes)
        columns = None
        layout_dims, layout_shape = varied, tuple(len(a) for a in grid_axes)
    else:
        raise TypeError(f"axes must be a mapping {{parameter: values}} or a Design, got "
                        f"{type(axes).__name__}")

    derivatives = tuple(derivatives)
    wrt = tuple(fields) if wrt is None else tuple(wrt)
    _check_names(wrt, fields, "wrt")
    if elasticities and not derivatives:
        raise ValueError("elasticities=True needs derivatives=[...] (the outputs to use)")
    chunk_size = (_default_chunk_size() if chunk_size is None
                  else _check_positive_int("chunk_size", chunk_size))
    n_all = len(jax.local_devices())
    n_devices = n_all if devices is None else _check_positive_int("devices", devices)
    if n_devices > n_all:
        raise ValueError(f"devices={n_devices} but only {n_all} local device(s) exist")
    if dask is not None and store is None:
        raise ValueError("dask= needs store= (workers write their chunks to a shared Zarr store)")
    if resume and overwrite:
        raise ValueError("resume=True and overwrite=True contradict each other")
    store = None if store is None else os.fspath(store)

    # ---- output names and dtypes (traces once at a scalar point; compiles nothing)
    base_scalar = type(base_params)(**{k: jnp.asarray(v, dtype) for k, v in base.items()},
                                    **settings)
    shapes = _as_dict(jax.eval_shape(solve_fn, base_scalar))
    nonscalar = [k for k, v in shapes.items() if v.shape != ()]
    if nonscalar:
        raise ValueError(f"solve_fn outputs must be scalars per point; {nonscalar} are not")
    unknown = [o for o in derivatives if o not in shapes]
    if unknown:
        raise ValueError(f"derivatives: unknown output(s) {unknown}; the outputs are "
                         f"{list(shapes)}")
    not_float = [o for o in derivatives if not jnp.issubdtype(shapes[o].dtype, jnp.floating)]
    if not_float:
        raise ValueError(f"derivatives: output(s) {not_float} are not floating point")
    variables = [(k, np.dtype(v.dtype).name) for k, v in shapes.items()]
    for o in derivatives:
        variables += [(f"d{o}_d{p}", dtype) for p in wrt]
        if elasticities:
            variables += [(f"elasticity_{o}_{p}", dtype) for p in wrt]

    layout = Layout.make(layout_dims, layout_shape, chunk_size)
    # Pad every compiled batch to a multiple of 8 lanes per device: XLA then runs every point
    # through the same vectorised code, so results do not depend on the chunk size (a batch
    # of 1 compiles to scalar code whose exp/log differ in the last bits).
    lanes = 8 * n_devices
    batch = -(-layout.chunk_points // lanes) * lanes
    if micro_batch is None:
        kind = jax.local_devices()[0].platform
        micro_batch = getattr(module, "MICRO_BATCH", {}).get(kind)
    else:
        micro_batch = _check_positive_int("micro_batch", micro_batch)
    if micro_batch is not None and (n_devices > 1 or micro_batch >= batch):
        micro_batch = None
    plan = _Plan(
        solve_fn=solve_fn, base=tuple(base.items()), settings=tuple(settings.items()),
        base_type=type(base_params),
        varied=varied, columns=columns, axes=grid_axes, layout=layout,
        derivatives=derivatives, wrt=wrt, elasticities=bool(elasticities), dtype=dtype,
        batch=batch, n_devices=n_devices, store=store, variables=tuple(variables),
        micro_batch=micro_batch,
    )

    # ---- provenance
    import jaxgames

    key_src = json.dumps({
        "solve_function": _qualname(solve_fn), "base": base, "varied": varied,
        "settings": {k: describe_setting(v) for k, v in settings.items()},
        "values": hashlib.sha256(b"".join(np.ascontiguousarray(a, float).tobytes()
                                          for a in (columns or grid_axes))).hexdigest(),
        "derivatives": derivatives, "wrt": wrt, "elasticities": bool(elasticities),
        "dtype": dtype, "layout": [layout.block_axis, layout.block_len, list(layout.shape)],
        "variables": variables, "jaxgames": jaxgames.__version__,
    }, sort_keys=True)
    device, devices_desc = _device_description(n_devices)
    attrs = {
        "title": f"jaxgames sweep: {_qualname(solve_fn)}",
        "model": model_name,
        "solve_function": _qualname(solve_fn),
        "base_params": json.dumps(base),
        "settings": json.dumps({k: describe_setting(v) for k, v in settings.items()}),
        "axes": json.dumps({n: {"n": int(len(a)), "min": float(a.min()), "max": float(a.max())}
                            for n, a in zip(varied, columns or grid_axes, strict=True)}),
        "design": design.describe() if design is not None else "full factorial grid",
        "derivatives": json.dumps(list(derivatives)),
        "wrt": json.dumps(list(wrt) if derivatives else []),
        "elasticities": int(bool(elasticities)),
        "solver": _solver_settings(solve_fn),
        "dtype": dtype,
        "n_points": int(layout.n_points),
        "chunk_points": int(layout.chunk_points),
        "n_chunks": int(layout.n_chunks),
        "micro_batch": int(micro_batch or 0),
        "sweep_key": hashlib.sha256(key_src.encode()).hexdigest(),
        "jaxgames_version": jaxgames.__version__,
        "jax_version": jax.__version__,
        "numpy_version": np.__version__,
        "xarray_version": xr.__version__,
        "python_version": platform.python_version(),
        "device": device,
        "devices": devices_desc,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    units, out_units, desc = _metadata(module)
    var_attrs = {n: _var_attrs(n, solve_fn, units, out_units, desc, plan) for n, _ in variables}
    coord_attrs = {n: {k: v for k, v in (("units", units.get(n)),
                                         ("description", desc.get(n))) if v is not None}
                   for n in varied}

    # ---- storage
    if store is not None:
        done = _prepare_store(plan, design, attrs, var_attrs, coord_attrs, resume, overwrite)
        result = None
    else:
        done = set()
        result = {name: np.empty(layout.n_points, dt) for name, dt in variables}
    todo = [i for i in range(layout.n_chunks) if i not in done]

    bar = _progress_bar(progress, layout.n_points,
                        _qualname(solve_fn).replace("jaxgames.models.", ""),
                        initial=sum(_chunk_len(layout, i) for i in done))
    try:
        if dask is not None:
            _run_dask(plan, todo, dask, bar, callback)
        else:
            _run_local(plan, todo, result, bar, callback)
    finally:
        if bar is not None:
            bar.close()

    if store is not None:
        ds = open_sweep(store)
    else:
        ds = _template(plan, design, attrs, var_attrs, coord_attrs, lazy=False, values=result)
    return ds



def _chunk_len(layout: Layout, i: int) -> int:
    start, stop, _ = layout.chunk(i)
    return stop - start


def _progress_bar(progress, total, desc, initial):
    if progress is False:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, initial=initial, unit="pt", unit_scale=True, desc=desc,
                disable=None if progress is None else False, smoothing=0.1, leave=True)


def _prepare_store(plan, design, attrs, var_attrs, coord_attrs, resume, overwrite) -> set[int]:
    store = plan.store
    exists = Path(store).exists()
    if exists and resume:
        try:
            old = _open_store(store)
        except Exception as exc:
            raise ValueError(f"{store}: cannot resume, not a readable jaxgames store ({exc})"
                             ) from exc
        if old.attrs.get("sweep_key") != attrs["sweep_key"]:
            raise ValueError(
                f"{store}: cannot resume, the store holds a different sweep (model function, "
                "base point, axes, derivatives, dtype, chunk size or jaxgames version differ); "
                "use another store or overwrite=True")
        return _done_chunks(store)
    if exists and not overwrite:
        raise FileExistsError(f"{store} exists; pass resume=True to continue it or "
                              "overwrite=True to replace it")
    if exists:
        import shutil

        shutil.rmtree(store)
    template = _template(plan, design, attrs, var_attrs, coord_attrs, lazy=True)
    encoding = {name: {"chunks": plan.layout.storage_chunks} for name, _ in plan.variables}
    template.to_zarr(store, compute=False, mode="w", encoding=encoding, consolidated=False)
    import zarr

    zarr.open_group(store, mode="a").create_group(_MARKER_DIR)
    return set()


def _finish(plan, i, out, result, bar, callback):
    start, stop, _ = plan.layout.chunk(i)
    arrays = _collect(plan, out, start, stop)
    if plan.store is not None:
        _write_chunk(plan, i, arrays)
    else:
        for name, arr in arrays.items():
            result[name][start:stop] = arr
    if bar is not None:
        bar.update(stop - start)
    if callback is not None:
        callback(ChunkInfo(i, start, stop, plan.layout.n_chunks, plan.layout.n_points))


def _run_local(plan: _Plan, todo, result, bar, callback):
    pending: deque = deque()
    for i in todo:
        start, stop, _ = plan.layout.chunk(i)
        pending.append((i, _dispatch(plan, start, stop)))  # async: device works meanwhile
        if len(pending) > 1:
            _finish(plan, *pending.popleft(), result, bar, callback)
    while pending:
        _finish(plan, *pending.popleft(), result, bar, callback)


def _run_dask(plan: _Plan, todo, dask, bar, callback):
    from distributed import Client, as_completed

    client = Client(dask) if isinstance(dask, str) else dask
    try:
        remote_plan = client.scatter(plan, broadcast=True)  # ship the plan once, not per task
        futures = [client.submit(_run_chunk_task, remote_plan, i, pure=False) for i in todo]
        for fut in as_completed(futures):
            i = fut.result()  # re-raises a worker's exception
            start, stop, _ = plan.layout.chunk(i)
            if bar is not None:
                bar.update(stop - start)
            if callback is not None:
                callback(ChunkInfo(i, start, stop, plan.layout.n_chunks, plan.layout.n_points))
    finally:
        if isinstance(dask, str):
            client.close()
