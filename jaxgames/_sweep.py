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
  solved by one call of a single jit-compiled ``vmap`` of the model function (on the CPU as
  a loop over vmapped tiles of 1,024 points, see :data:`MICRO_BATCH`): compiled once,
  reused for every chunk, so peak memory scales with ``chunk_size``, not with the grid.
* **Pipelining.** JAX dispatches asynchronously: chunk ``i + 1`` is submitted before chunk ``i``
  is copied back and written, so the device computes while the host writes.
* **Devices.** With several local devices each chunk is split across all of them along the
  point axis: on accelerators one partitioned ``vmap``; on CPU devices (cores, after
  :func:`jaxgames.use_cpu_cores`, or ``XLA_FLAGS=--xla_force_host_platform_device_count``)
  every device runs the tile loop over its own part (``shard_map``), since a partitioned
  ``vmap`` there ran 2.5x slower than one device's tiles (``benchmarks/README.md``).
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

What a sweep can vary and return is read from the model contract (:mod:`jaxgames._contract`):
outputs with dims of their own (``OUTPUT_DIMS``) keep them after the sweep's dims, in memory,
in the store (one Zarr chunk spans them) and on every device; a vector parameter
(``PARAM_DIMS``) is swept whole (``"v"``) or by element (``"v[1]"``); a categorical parameter
(``CATEGORIES``) takes labels, stored as string coords and passed to the model as traced
integer codes; a stochastic solve function (``STOCHASTIC``) gets a last dim ``replication``
and the key ``fold_in(key(seed), replication)``, computed inside the compiled function from
the replication index, so its numbers do not depend on chunking, resume or devices.

The work is done in stages with one job each: :func:`_resolve` (check the inputs against the
contract), :func:`_find_outputs` (trace one point: names, dtypes, trailing dims),
:func:`_plan_chunks` (layout, batch, devices), :func:`_provenance` (attrs and the sweep key)
and :func:`_execute` (store, chunks, dataset).

Failure is data: every diagnostic of the model function (``converged``, ``residual``,
``iterations``, ``status``, ``assumptions_hold``) is a variable of the dataset, and derivatives
at points that did not converge are NaN (they would be derivatives of a non-solution).
Inputs are checked before anything is compiled: unknown parameters, non-finite or empty axes,
values outside a model's ``DOMAIN``, unknown outputs in ``derivatives``, the store's path, and
the study's estimated memory and disk (:func:`estimate_size`, :func:`check_size`), before
anything of the grid's size is allocated. A float64 sweep enables 64-bit JAX for its own work
only (:func:`_precision`), never for the whole process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import gc
import hashlib
import json
import math
import os
import platform
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from jaxgames._batching import map_tiles, tiling
from jaxgames._contract import (
    Axis,
    Combined,
    Point,
    SolveSpec,
    as_dict,
    combine,
    jax_key,
    solve_spec,
)
from jaxgames._validation import describe_setting
from jaxgames.design import Design

__all__ = ["ChunkInfo", "Combined", "combine", "open_sweep", "sweep"]

#: Attributes that describe *when/where* a dataset was made, not what it contains; they differ
#: between two runs of the same sweep (and are ignored when comparing a resumed sweep).
VOLATILE_ATTRS = ("created", "device", "devices")

_MARKER_DIR = "jaxgames_progress"  # a Zarr subgroup, so readers of the root ignore it
_DEFAULT_CHUNK = {"cpu": 2**16}  # points; accelerators default to 2**20

#: Default ``micro_batch`` per platform, the same for every model: on the CPU a chunk is solved as a
#: loop over vmapped tiles of 1,024 points (``_batching.tile_loop``), elsewhere as one ``vmap`` (a
#: batch as wide as the chunk, which is what an accelerator needs). Batched Newton solves cost what
#: their hard points cost, not the batch width (the solver's ``vmap`` rule iterates only the lanes
#: still unfinished), but on a CPU a batch much wider than ~1,000 points streams its working set
#: (every lane's intermediates) through memory instead of the caches: in the same run, 16,384 random
#: points as one vmap ran at 0.45x (``defender_attacker.equilibrium``) and 0.59x
#: (``bakshi_kleindorfer.first_best``) of their rate in vmaps of 1,024 (benchmarks/README.md, width
#: scan).
_DEFAULT_MICRO_BATCH = {"cpu": 1024}
#: Overrides the platform default for every sweep when set (``micro_batch=`` overrides both).
MICRO_BATCH: int | None = None


def _default_micro_batch() -> int | None:
    if MICRO_BATCH is not None:
        return MICRO_BATCH
    return _DEFAULT_MICRO_BATCH.get(jax.default_backend())

#: Held while a store is created or a chunk is written and marked: whoever ends the process
#: on Ctrl-C (the command line) takes it first, so no store is left half-made.
STORE_LOCK = threading.RLock()

#: Name of the replication dim of a stochastic sweep.
REPLICATION = "replication"


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


@dataclasses.dataclass(frozen=True)
class Variable:
    """One variable of a sweep's dataset: name, dtype and its own trailing dims."""

    name: str
    dtype: str
    dims: tuple[str, ...] = ()  # trailing dims after the sweep's dims (e.g. ("csc",))
    shape: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True, eq=False)
class _Plan:
    """Everything a worker needs to solve and store one chunk (picklable)."""

    solve_fn: Callable
    base: tuple[tuple[str, np.ndarray], ...]  # numeric leaves: scalars, vectors, int codes
    settings: tuple[tuple[str, Any], ...]  # static settings of the params (hashable)
    base_type: type
    varied: tuple[str, ...]  # axis keys: "p", "v" (every element), "v[1]" (one element)
    columns: tuple[np.ndarray, ...] | None  # design points (None for a grid)
    axes: tuple[np.ndarray, ...] | None  # grid values, or integer codes (None for a design)
    layout: Layout
    derivatives: tuple[str, ...]
    wrt: tuple[str, ...]
    elasticities: bool
    dtype: str
    batch: int  # compiled batch length (chunk_points rounded up to a multiple of devices)
    n_devices: int
    store: str | None
    variables: tuple[Variable, ...]  # in dataset order
    micro_batch: int | None = None  # lockstep group inside a chunk (None: one vmap)
    elements: tuple[tuple[str, str, int], ...] = ()  # (key "v[1]", parameter, 0-based index)
    stochastic: bool = False
    replications: int = 0  # > 0: the last layout dim is REPLICATION
    seed: int = 0

    def values(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Inputs of flat points ``start..stop-1`` (padded to the batch length): axis values
        (floats in the sweep's dtype, int32 category codes) and the replication index."""
        idx = np.arange(start, stop)
        idx = np.concatenate([idx, np.full(self.batch - len(idx), stop - 1)])
        multi = np.unravel_index(idx, self.layout.shape)
        if self.columns is not None:
            vals = {n: c[multi[0]] for n, c in zip(self.varied, self.columns, strict=True)}
        else:
            vals = {n: a[m] for n, a, m in zip(self.varied, self.axes,
                                                multi[:len(self.varied)], strict=True)}
        out = {k: v.astype(np.int32 if np.issubdtype(v.dtype, np.integer) else self.dtype)
               for k, v in vals.items()}
        if self.replications:
            out[REPLICATION] = multi[-1].astype(np.int32)
        return out

    def base_arrays(self) -> dict[str, jax.Array]:
        out = {k: jnp.asarray(v, jnp.int32 if np.issubdtype(v.dtype, np.integer) else self.dtype)
               for k, v in self.base}
        if self.stochastic:
            out[_SEED] = jnp.asarray(self.seed, jnp.uint32)
        return out


_SEED = "__seed__"


def _point_function(solve_fn, base_type, settings, derivatives, wrt, elasticities,
                    elements=(), stochastic=False):
    """The per-point function: outputs, plus implicit derivatives from the same solve.

    ``values`` holds the swept inputs of one point: ``{"p": x}`` replaces a parameter (a
    vector parameter gets ``x`` in every element), ``{"v[1]": x}`` one element (after whole
    vectors, so both can be swept together), ``REPLICATION`` the replication index.
    """
    element = {k: (p, i) for k, p, i in elements}

    def assign(leaves, values):
        leaves = dict(leaves)
        for k, x in values.items():
            if k not in element:
                leaves[k] = jnp.broadcast_to(x, jnp.shape(leaves[k]))
        for k, x in values.items():
            if k in element:
                name, i = element[k]
                leaves[name] = leaves[name].at[i].set(x)
        return leaves

    def point(values, base):
        values, base = dict(values), dict(base)
        replication, seed = values.pop(REPLICATION, None), base.pop(_SEED, None)
        key = jax_key(seed, replication) if stochastic else None

        def call(leaves):
            params = base_type(**leaves, **dict(settings))
            return as_dict(solve_fn(params, key) if stochastic else solve_fn(params))

        leaves = assign(base, values)
        if not derivatives:
            return call(leaves)

        def f(sel):
            # x - stop_gradient(x) is 0 with derivative 1: the point is unchanged and a whole
            # vector and one of its elements can both be differentiated in one pass.
            shifted = dict(leaves)
            shifted.update({w: x for w, x in sel.items() if w not in element})
            for w, x in sel.items():
                if w in element:
                    name, i = element[w]
                    shifted[name] = shifted[name].at[i].add(x - jax.lax.stop_gradient(x))
            full = call(shifted)
            return {o: full[o] for o in derivatives}, full

        sel = {w: leaves[element[w][0]][element[w][1]] if w in element else leaves[w]
               for w in wrt}
        jac, full = jax.jacfwd(f, has_aux=True)(sel)
        ok = full.get("converged", jnp.bool_(True))
        out = dict(full)
        for o in derivatives:
            y = full[o]
            for w in wrt:
                d = jnp.where(ok, jac[o][w], jnp.nan)
                out[f"d{o}_d{w}"] = d
                if elasticities:
                    x = sel[w]
                    # d has shape y.shape + x.shape: line both up with it (no rank promotion)
                    y_b = jnp.reshape(y, jnp.shape(y) + (1,) * jnp.ndim(x))
                    x_b = jnp.reshape(x, (1,) * jnp.ndim(y) + jnp.shape(x))
                    safe = jnp.where(y_b != 0, y_b, 1.0)
                    out[f"elasticity_{o}_{w}"] = jnp.where(y_b != 0, d * x_b / safe, jnp.nan)
        return out

    return point


#: A sweep releases compiled programs before it compiles when this process holds more than this
#: share of the kernel's limit on its memory mappings (``vm.max_map_count``, 65,530 by default
#: on Linux). XLA's CPU backend maps the code of every compiled program in many pieces (one
#: ``defender_attacker`` sweep program takes about 3,000 mappings, ``bakshi_kleindorfer``'s
#: ``bargaining`` 1,500), so a long-lived process that has compiled a few dozen programs cannot
#: map the next one: LLVM reports "Cannot allocate memory" and the process crashes (our test
#: suite did, in one process, after ~550 tests). Releasing costs a recompilation of what is
#: used again; crashing costs the process.
MAP_SHARE = 0.5


def _mappings() -> tuple[int, int] | None:
    """``(memory mappings of this process, the kernel's limit)``, or ``None`` where ``/proc``
    does not say (not Linux)."""
    try:
        with open("/proc/self/maps", "rb") as f:
            n = f.read().count(b"\n")
        with open("/proc/sys/vm/max_map_count") as f:
            limit = int(f.read())
    except (OSError, ValueError):
        return None
    return n, limit


def release_compiled_programs(share: float | None = None) -> bool:
    """Drop the sweep's and JAX's caches of compiled programs (``jax.clear_caches``) if this
    process holds more than ``share`` (default :data:`MAP_SHARE`) of its memory-mapping limit;
    whether it did. Functions compiled again on their next call, with the same results.

    :func:`sweep` calls it before it compiles; a long-lived process that compiles many programs
    by other means (a notebook, a test suite) may call it between them."""
    counts = _mappings()
    if counts is None or counts[0] <= (MAP_SHARE if share is None else share) * counts[1]:
        return False
    _compiled.cache_clear()
    jax.clear_caches()
    gc.collect()  # the executables' code is unmapped when the last reference goes
    return True


@functools.lru_cache(maxsize=64)
def _compiled(solve_fn, base_type, settings, derivatives, wrt, elasticities, n_devices,
              micro_batch=None, elements=(), stochastic=False, dtype="float64"):
    """One jit-compiled vmapped function per sweep configuration and precision (cached across
    chunks/calls; ``dtype`` is part of the key because each precision compiles its own)."""
    point = _point_function(solve_fn, base_type, settings, derivatives, wrt, elasticities,
                            elements, stochastic)
    if micro_batch is None:
        def batched(values, base):
            # The sweep decides the batch layout itself (a solve function would tile a wide
            # vmap on the CPU, see jaxgames._batching).
            with tiling(None):
                return jax.vmap(point, in_axes=(0, None))(values, base)
    else:
        def batched(values, base):
            # Tiles of equal width (a multiple of 8 lanes, jaxgames._batching.tiles), the last
            # point repeated to fill them; always inside the loop, also a single tile: XLA
            # compiles the top level of a program differently from a loop body (on the CPU the
            # same vmapped defender_attacker.equilibrium gave different last bits at the top
            # level than inside a loop, while inside a loop widths 64, 512 and 1,024 agreed),
            # so results do not depend on the chunking.
            leaves, tree = jax.tree_util.tree_flatten(values)

            def solve(*vals):
                return point(jax.tree_util.tree_unflatten(tree, vals), base)

            with tiling(None):
                return map_tiles(solve, leaves[0].shape[0], micro_batch, [True] * len(leaves),
                                 leaves)
    if n_devices == 1:
        return jax.jit(batched), None
    mesh = jax.sharding.Mesh(np.array(jax.local_devices()[:n_devices]), ("points",))
    points = jax.sharding.PartitionSpec("points")
    sharding = jax.sharding.NamedSharding(mesh, points)
    if micro_batch is None:  # one vmap, partitioned over the devices
        return jax.jit(batched), sharding
    # Tiles (CPU devices, i.e. cores): every device runs the tile loop over its own part of the
    # chunk; a partitioned jit of the loop would slice tiles across the devices instead.
    return jax.jit(_shard_map(batched, mesh, (points, jax.sharding.PartitionSpec()),
                              points)), sharding


def _shard_map(f, mesh, in_specs, out_specs):
    """``jax.shard_map`` (or ``jax.experimental.shard_map`` on the older releases that
    ``pyproject.toml`` allows) without the replication check, which knows no rule for some of
    the engine's custom primitives; no output here is replicated."""
    if hasattr(jax, "shard_map"):
        return jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                             check_vma=False)
    from jax.experimental.shard_map import shard_map

    return shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)


def _precision(dtype: str):
    """A context in which a sweep in ``dtype`` is traced, compiled and run.

    A float64 sweep needs 64-bit JAX; it is enabled for the sweep's own work only
    (``jax.enable_x64``, thread-local and restored on exit), so the caller's global
    configuration is unchanged. ``jit`` keys its cache on this setting, so the compiled
    functions of each precision are cached side by side. A float32 sweep runs in the caller's
    setting (bit-identical to earlier releases).
    """
    return x64_context(True) if dtype == "float64" else contextlib.nullcontext()


def x64_context(enabled: bool = True):
    """``jax.enable_x64(enabled)`` (jax >= 0.6), or ``jax.experimental.enable_x64`` on the older
    releases that ``pyproject.toml`` still allows (CI's lowest-versions step runs them)."""
    ctx = getattr(jax, "enable_x64", None)
    if ctx is None:
        from jax.experimental import enable_x64 as ctx
    return ctx(enabled)


def _dispatch(plan: _Plan, start: int, stop: int):
    """Submit one chunk (asynchronously); returns device arrays."""
    fn, sharding = _compiled(plan.solve_fn, plan.base_type, plan.settings, plan.derivatives,
                             plan.wrt, plan.elasticities, plan.n_devices, plan.micro_batch,
                             plan.elements, plan.stochastic, plan.dtype)
    with _precision(plan.dtype):  # also on Dask workers: fresh processes
        values = {k: jnp.asarray(v) for k, v in plan.values(start, stop).items()}
        if sharding is not None:
            values = jax.device_put(values, sharding)
        return fn(values, plan.base_arrays())


def _collect(plan: _Plan, out, start: int, stop: int) -> dict[str, np.ndarray]:
    host = jax.device_get(out)
    n = stop - start
    return {v.name: np.asarray(host[v.name][:n]).astype(v.dtype, copy=False)
            for v in plan.variables}


# ----------------------------------------------------------------------------- the store


def _marker(store: str, i: int) -> Path:
    return Path(store) / _MARKER_DIR / f"chunk-{i:08d}"


def _done_chunks(store: str) -> set[int]:
    d = Path(store) / _MARKER_DIR
    if not d.is_dir():
        return set()
    # "chunk-<i>" only: a "chunk-<i>.tmp<pid>" left by a process killed while marking is not
    # a marker (the chunk is recomputed)
    return {int(p.name[6:]) for p in d.iterdir()
            if p.name.startswith("chunk-") and p.name[6:].isdigit()}


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
    ds = xr.Dataset({v.name: (plan.layout.dims + v.dims, arrays[v.name].reshape(shape + v.shape))
                     for v in plan.variables})
    region = {**region, **{d: slice(0, n) for v in plan.variables
                           for d, n in zip(v.dims, v.shape, strict=True)}}
    with STORE_LOCK:
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


def _axis_param(key: str) -> str:
    return key.split("[", 1)[0] if key.endswith("]") else key


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
    return name  # float64 without global x64: enabled for the sweep only (_precision)


# ----------------------------------------------------------------------------- the dataset


def _device_description(n_devices: int) -> tuple[str, str]:
    devs = jax.local_devices()[:n_devices]
    kinds = sorted({f"{d.platform}:{d.device_kind}" for d in devs})
    return ", ".join(kinds), f"{len(devs)} device(s): " + ", ".join(str(d) for d in devs)



def _var_attrs(name: str, study: _Study) -> dict[str, str]:
    spec, model = study.spec, study.spec.model
    for o in study.derivatives:
        for w in study.wrt:
            p = _axis_param(w)
            if name == f"d{o}_d{w}":
                u_o, u_p = spec.output_units(o) or "1", model.units.get(p, "1")
                return {"units": f"({u_o})/({u_p})",
                        "description": f"d {o} / d {w} (implicit function theorem)",
                        "output": o, "wrt": w}
            if name == f"elasticity_{o}_{w}":
                return {"units": "1", "description": f"elasticity of {o} with respect to {w}",
                        "output": o, "wrt": w}
    attrs = {}
    u, d = spec.output_units(name), spec.description(name)
    if u is not None:
        attrs["units"] = u
    if d is not None:
        attrs["description"] = d
    return attrs


def _coords(plan: _Plan, study: _Study, coord_attrs: Mapping) -> dict[str, tuple]:
    design = study.design
    if design is not None:
        coords = {design.dim: (design.dim, np.arange(design.size))}
        coords.update({n: (design.dim, c.astype(plan.dtype), coord_attrs.get(n, {}))
                       for n, c in zip(plan.varied, plan.columns, strict=True)})
    else:
        coords = {a.key: (a.key, a.coords if a.categorical else a.coords.astype(plan.dtype),
                          coord_attrs.get(a.key, {})) for a in study.axes}
    if plan.replications:
        coords[REPLICATION] = (REPLICATION, np.arange(plan.replications),
                               {"description": "replication (common random numbers: the key "
                                               "is fold_in(key(seed), replication))"})
    coords.update({d: (d, c) for d, c in study.trailing.items()})
    return coords


def _template(plan: _Plan, study: _Study, attrs: dict, var_attrs: dict, coord_attrs: dict,
              lazy: bool, values: Mapping | None = None) -> xr.Dataset:
    dims, shape = plan.layout.dims, plan.layout.shape
    data = {}
    for v in plan.variables:
        full = shape + v.shape
        if values is not None:
            arr = values[v.name].reshape(full)
        elif lazy:
            import dask.array as da

            arr = da.zeros(full, dtype=v.dtype, chunks=plan.layout.storage_chunks + v.shape)
        else:
            arr = np.zeros(full, dtype=v.dtype)
        data[v.name] = (dims + v.dims, arr, var_attrs.get(v.name, {}))
    return xr.Dataset(data, coords=_coords(plan, study, coord_attrs), attrs=attrs)


def is_jaxgames_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a Zarr store written by jaxgames: a directory whose root group's
    attributes carry ``jaxgames_version`` (every sweep, one-way, tornado and Sobol dataset
    has it). Read from the metadata file itself, so nothing else is opened or created."""
    path = Path(path)
    for meta, key in (("zarr.json", "attributes"), (".zattrs", None)):  # Zarr v3, v2
        try:
            doc = json.loads((path / meta).read_text())
        except (OSError, ValueError):
            continue
        attrs = doc.get(key, {}) if key else doc
        if isinstance(attrs, dict) and "jaxgames_version" in attrs:
            return True
    return False


def check_replaceable(path: str | os.PathLike, flag: str = "overwrite=True") -> None:
    """Raise unless ``path`` does not exist or is a jaxgames Zarr store (which ``flag`` may
    replace): overwriting never deletes a user's directory or someone else's store."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir() or not is_jaxgames_store(path):
        what = ("a symbolic link" if path.is_symlink() else "a file" if not path.is_dir()
                else "a directory that is not a jaxgames Zarr store (no jaxgames_version in "
                     "its zarr.json attributes)")
        raise FileExistsError(f"{path} exists and is {what}; {flag} replaces only a store "
                              "written by jaxgames. Move or delete it yourself, or choose "
                              "another path")


def remove_store(path: str | os.PathLike, flag: str = "overwrite=True") -> None:
    """Delete the jaxgames Zarr store at ``path`` (:func:`check_replaceable` first)."""
    import shutil

    check_replaceable(path, flag)
    if Path(path).exists():
        shutil.rmtree(path)


# ----------------------------------------------------------------------------- size


class Size(NamedTuple):
    """A study's estimated memory and disk (bytes), before anything is allocated."""

    n_points: int
    point_bytes: int  # bytes of one point's outputs (diagnostics and derivatives included)
    memory: int
    disk: int  # 0 without a store


#: Bytes a store needs per chunk besides its data: one file per variable and a marker, each
#: taking at least one file-system block.
_BLOCK = 4096


def _point_bytes(variables: Sequence[Variable]) -> int:
    return sum(np.dtype(v.dtype).itemsize * math.prod(v.shape) for v in variables)


def _n_values(plan: _Plan) -> int:
    arrays = plan.columns if plan.columns is not None else plan.axes
    return sum(len(a) for a in arrays)


def estimate_size(n_points: int, point_bytes: int, *, chunk_points: int, n_values: int,
                  n_chunks: int, n_variables: int, store: Any = None) -> Size:
    """Estimate a sweep's memory and disk from its sizes alone (nothing is allocated).

    Memory: the swept values (8 bytes each), the chunks in flight (two at a time, each held
    on the device and copied to the host, its inputs and outputs: ``4 * chunk_points *
    point_bytes``) and, without a store, the whole result (``n_points * point_bytes``); with
    a store, a little per chunk (bookkeeping). The model's own working memory inside a
    compiled chunk is not included (it scales with ``chunk_size``). Disk (a store only): the
    data uncompressed (an upper bound: Zarr compresses) plus one file-system block per
    variable and marker of every chunk.
    """
    memory = 8 * n_values + 4 * chunk_points * (point_bytes + 8 * 8)
    if store is None:
        memory += n_points * point_bytes
        return Size(n_points, point_bytes, memory, 0)
    memory += 256 * n_chunks
    disk = n_points * point_bytes + n_chunks * (n_variables + 1) * _BLOCK
    return Size(n_points, point_bytes, memory, disk)


def memory_available() -> int:
    """Bytes of memory available now (``MemAvailable`` on Linux), else the physical memory."""
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 2**63 - 1


def disk_free(path: str | os.PathLike) -> int:
    """Free bytes of the file system that ``path`` (or its nearest existing parent) is on."""
    import shutil

    p = Path(path).absolute()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def format_bytes(n: float) -> str:
    """``1.5 GB``-style text (powers of 1000, as ``parse_bytes`` reads them)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError  # pragma: no cover


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "p": 10**15, "pb": 10**15,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50}


def parse_bytes(text: str | int) -> int:
    """A size as bytes: an integer, or a number with a unit, ``"64GB"``, ``"1.5 TB"``,
    ``"512MiB"`` (kB/MB/GB/TB/PB: powers of 1000; KiB/MiB/GiB/TiB/PiB: of 1024)."""
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        value = int(text)
    else:
        import re

        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*",
                         str(text))
        if m is None or m.group(2).lower() not in _UNITS:
            raise ValueError(f"expected a size in bytes, e.g. 64GB, 500MB, 2TiB or an "
                             f"integer, got {text!r}")
        value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value < 1:
        raise ValueError(f"a size must be positive, got {text!r}")
    return value


class StudyTooLarge(ValueError):
    """A study whose estimated memory or disk exceeds its limit (raised before anything is
    allocated). ``key`` is what sets the study's size (``axes``, ``design``, or a sweep
    file's key), ``resource`` ``"memory"`` or ``"disk"``."""

    def __init__(self, key: str, resource: str, size: Size, need: int, limit: int,
                 default: bool, where: str | None = None):
        self.key, self.resource, self.size, self.need, self.limit = (
            key, resource, size, need, limit)
        arg = "max_memory" if resource == "memory" else "max_disk"
        source = (" (the memory available now)" if resource == "memory" else
                  f" (the free space on {where}'s file system)") if default else ""
        hint = ("write to a Zarr store (store=...; only the chunks in flight are then held "
                "in memory), " if resource == "memory" and size.disk == 0 else "")
        self.statement = (f"{size.n_points:,} points x {format_bytes(size.point_bytes)} per "
                          f"point need about {format_bytes(need)} of {resource}, more than "
                          f"the limit {format_bytes(limit)}{source}")
        super().__init__(f"{key}: {self.statement}; {hint}sweep fewer points, or raise the "
                         f"limit with {arg}=BYTES if the estimate is too high")


def check_size(size: Size, *, max_memory: int | None = None, max_disk: int | None = None,
               store: Any = None, what: str = "axes") -> None:
    """Raise :class:`StudyTooLarge` if ``size`` exceeds a limit (defaults: the machine's)."""
    limit = memory_available() if max_memory is None else parse_bytes(max_memory)
    if size.memory > limit:
        raise StudyTooLarge(what, "memory", size, size.memory, limit, max_memory is None)
    if store is not None and size.disk:
        limit = disk_free(store) if max_disk is None else parse_bytes(max_disk)
        if size.disk > limit:
            raise StudyTooLarge(what, "disk", size, size.disk, limit, max_disk is None,
                                os.fspath(store))


# ----------------------------------------------------------------------------- paths


def _writable_dir(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` if files cannot be created under it, else
    ``None`` (``path``'s missing parents are created when the store is written)."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return parent
    return None


def check_store_path(store: str | os.PathLike, *, resume: bool = False,
                     overwrite: bool = False) -> None:
    """Check a sweep's ``store`` before anything runs: a ``.zarr`` path; existing only with
    ``resume`` or ``overwrite`` (and then a jaxgames store), missing under ``resume``;
    writable. The messages name the API arguments (the command line translates them)."""
    path = Path(store)
    if path.suffix != ".zarr":
        raise ValueError(f"store={os.fspath(store)!r}: a sweep's store is a Zarr store, its "
                         "path ending in .zarr (write a netCDF copy afterwards with "
                         "ds.to_netcdf)")
    exists = path.exists() or path.is_symlink()
    if resume and not exists:
        raise FileNotFoundError(f"{path}: cannot resume, it does not exist (nothing was "
                                "stored there); leave out resume=True to start the sweep")
    if exists and not (resume or overwrite):
        raise FileExistsError(f"{path} exists; pass resume=True to continue it or "
                              "overwrite=True to replace it")
    if exists and overwrite:
        check_replaceable(path)
    if exists and resume and not is_jaxgames_store(path):
        raise ValueError(f"{path}: cannot resume, not a jaxgames Zarr store (no "
                         "jaxgames_version in its zarr.json attributes)")
    bad = _writable_dir(path) if not exists else (
        None if os.access(path, os.W_OK | os.X_OK) else path)
    if bad is not None:
        raise PermissionError(f"{path}: cannot write the store, {bad} is not a writable "
                              "directory")


def _open_store(store: str) -> xr.Dataset:
    return _labels_as_object(xr.open_zarr(store, consolidated=False))


def _labels_as_object(ds: xr.Dataset) -> xr.Dataset:
    """Labels (categorical coordinates such as isb's ``structure``, agents) as the sweep returns
    them in memory, object arrays of ``str``. Before writing: Zarr v3 has a specified encoding
    for variable-length strings only, not for fixed-width unicode. After reading: Zarr v3 reads
    variable-length strings back as NumPy's ``StringDType``, which xarray does not handle
    everywhere yet (``idxmin`` and ``idxmax`` over such a coordinate raise)."""
    names = [k for k, v in ds.variables.items() if v.dtype.kind in "UT"]
    return ds.assign_coords({k: ds[k].astype(object) for k in names if k in ds.coords}).assign(
        {k: ds[k].astype(object) for k in names if k not in ds.coords})


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


@dataclasses.dataclass(frozen=True, eq=False)
class _Study:
    """A sweep's question, checked: what to solve, where, and what to derive."""

    spec: SolveSpec
    point: Point
    axes: tuple[Axis, ...]  # grid axes ((): a design)
    design: Design | None
    derivatives: tuple[str, ...]
    wrt: tuple[str, ...]
    elements: tuple[tuple[str, str, int], ...]  # element keys "v[1]" of axes and wrt
    elasticities: bool
    dtype: str
    replications: int  # 0: not stochastic
    seed: int
    variables: tuple[Variable, ...] = ()  # filled by _find_outputs
    trailing: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)  # dim coords

    @property
    def varied(self) -> tuple[str, ...]:
        return self.design.names if self.design is not None else tuple(a.key for a in self.axes)


def _resolve(solve_fn, base_params, axes, derivatives, wrt, elasticities, replications, seed,
             dtype) -> _Study:
    """Stage 1: check every input against the model's contract (nothing is traced)."""
    spec = solve_spec(solve_fn)
    model = spec.model
    dtype = _resolve_dtype(dtype)
    point = model.resolve_point(base_params)
    elements: dict[str, tuple[str, str, int]] = {}
    if isinstance(axes, Design):
        design, grid = axes, ()
        _check_names([_axis_param(n) for n in design.names], point.sweepable, "design")
        if design.dim in point.values:
            raise ValueError(f"design dim name {design.dim!r} clashes with a parameter name")
        for n in design.names:
            if _axis_param(n) in model.categories:
                raise ValueError(f"design: parameter {n} is categorical (labels "
                                 f"{list(model.categories[n])}); sweep it as a grid axis")
            a = model.resolve_axis(n, design.points[n], point, "design")
            if a.index is not None:
                elements[n] = (n, a.param, a.index)
    elif isinstance(axes, Mapping):
        design = None
        if not axes:
            raise ValueError("axes must name at least one parameter (or pass a Design)")
        _check_names([_axis_param(n) for n in axes], point.sweepable, "axes")
        grid = tuple(model.resolve_axis(n, vals, point) for n, vals in axes.items())
        elements.update({a.key: (a.key, a.param, a.index) for a in grid if a.index is not None})
    else:
        raise TypeError(f"axes must be a mapping {{parameter: values}} or a Design, got "
                        f"{type(axes).__name__}")

    derivatives = tuple(derivatives)
    wrt = point.real if wrt is None else tuple(wrt)
    _check_names([_axis_param(w) for w in wrt], point.real, "wrt")
    for w in wrt:
        if w.endswith("]"):
            a = model.resolve_axis(w, point.values[_axis_param(w)].reshape(-1)[:1], point, "wrt")
            elements[w] = (w, a.param, a.index)
    if elasticities and not derivatives:
        raise ValueError("elasticities=True needs derivatives=[...] (the outputs to use)")
    if spec.stochastic:
        replications = 1 if replications is None else _check_positive_int("replications",
                                                                          replications)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not (
                0 <= seed < 2**32):
            raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    elif replications is not None:
        raise ValueError(f"replications: {spec.name} is not stochastic (its model's STOCHASTIC "
                         f"lists {list(model.stochastic)}); replications need a stochastic "
                         "solve function")
    else:
        replications = 0
    return _Study(spec, point, grid, design, derivatives, tuple(wrt),
                  tuple(elements.values()), bool(elasticities), dtype, replications,
                  int(seed) if replications else 0)


def _find_outputs(study: _Study) -> _Study:
    """Stage 2: output names, dtypes and trailing dims (traces one point; compiles nothing)."""
    spec, point, dtype = study.spec, study.point, study.dtype
    with _precision(dtype):
        leaves = {k: jnp.asarray(v, jnp.int32 if k in spec.model.categories else dtype)
                  for k, v in point.values.items()}
        params = point.params_type(**leaves, **point.settings)
        key = jax_key(0, 0) if spec.stochastic else None
        # The function itself, not a wrapper: JAX caches the trace per function (tracing a
        # model can take seconds), and its own result type keeps the NamedTuple field order.
        args = (params, key) if spec.stochastic else (params,)
        shapes = as_dict(jax.eval_shape(spec.function, *args))
    trailing: dict[str, np.ndarray] = {}

    def dims_of(name: str, shape: tuple[int, ...], dims: tuple[str, ...]) -> tuple[str, ...]:
        if len(dims) != len(shape):
            declared = (f"declares dims {dims}" if dims else "declares no OUTPUT_DIMS for it")
            raise ValueError(f"output {name} has shape {shape} per point but the model "
                             f"{spec.model.name} {declared}; declare OUTPUT_DIMS = "
                             f"{{{spec.field(name)!r}: (dim, ...)}} in the model")
        for d, n in zip(dims, shape, strict=True):
            c = spec.model.coords(d, n)
            if d in trailing and len(trailing[d]) != n:
                raise ValueError(f"dim {d!r} has length {len(trailing[d])} and {n} in "
                                 f"different outputs/parameters of {spec.model.name}")
            trailing[d] = c
        return dims

    for name in point.values:
        if name in spec.model.param_dims:
            dims_of(name, point.values[name].shape, (spec.model.param_dims[name],))
    variables = [Variable(k, np.dtype(v.dtype).name, dims_of(k, v.shape, spec.output_dims(k)),
                          tuple(v.shape)) for k, v in shapes.items()]
    clash = [v.name for v in variables if v.name in trailing or v.name in study.varied]
    if clash:
        raise ValueError(f"output(s) {clash} have the name of a dim of the sweep")
    by_name = {v.name: v for v in variables}
    unknown = [o for o in study.derivatives if o not in shapes]
    if unknown:
        raise ValueError(f"derivatives: unknown output(s) {unknown}; the outputs are "
                         f"{list(shapes)}")
    not_float = [o for o in study.derivatives
                 if not jnp.issubdtype(shapes[o].dtype, jnp.floating)]
    if not_float:
        raise ValueError(f"derivatives: output(s) {not_float} are not floating point")
    for o in study.derivatives:
        out = by_name[o]
        for w in study.wrt:
            p = _axis_param(w)
            if w == p and p in spec.model.param_dims:
                d = spec.model.param_dims[p]
                wdim = f"{d}_wrt" if d in out.dims else d  # e.g. dq/dv: (..., csc, csc_wrt)
                trailing.setdefault(wdim, trailing[d])
                extra_dims, extra = (wdim,), point.values[p].shape
            else:
                extra_dims, extra = (), ()
            variables.append(Variable(f"d{o}_d{w}", dtype, out.dims + extra_dims,
                                      out.shape + extra))
            if study.elasticities:
                variables.append(Variable(f"elasticity_{o}_{w}", dtype, out.dims + extra_dims,
                                          out.shape + extra))
    used = {d for v in variables for d in v.dims}
    return dataclasses.replace(study, variables=tuple(variables),
                               trailing={d: c for d, c in trailing.items() if d in used})


def _plan_chunks(study: _Study, chunk_size, devices, micro_batch, store) -> _Plan:
    """Stage 3: the chunk layout, the compiled batch length and the device configuration."""
    chunk_size = (_default_chunk_size() if chunk_size is None
                  else _check_positive_int("chunk_size", chunk_size))
    n_all = len(jax.local_devices())
    n_devices = n_all if devices is None else _check_positive_int("devices", devices)
    if n_devices > n_all:
        raise ValueError(f"devices={n_devices} but only {n_all} local device(s) exist")
    if study.design is not None:
        dims, shape = (study.design.dim,), (study.design.size,)
        columns = tuple(np.asarray(study.design.points[n], float) for n in study.varied)
        axes = None
    else:
        dims, shape = study.varied, tuple(len(a.values) for a in study.axes)
        columns, axes = None, tuple(a.values for a in study.axes)
    if study.replications:
        dims, shape = dims + (REPLICATION,), shape + (study.replications,)
    layout = Layout.make(dims, shape, chunk_size)
    # Pad every compiled batch to a multiple of 8 lanes per device: XLA then runs every point
    # through the same vectorised code, so results do not depend on the chunk size (a batch
    # of 1 compiles to scalar code whose exp/log differ in the last bits).
    lanes = 8 * n_devices
    batch = -(-layout.chunk_points // lanes) * lanes
    default = micro_batch is None
    micro_batch = (_default_micro_batch() if default
                   else _check_positive_int("micro_batch", micro_batch))
    if micro_batch is not None and micro_batch >= batch // n_devices and not default:
        # An explicit micro_batch of at least a device's part of the batch: one vmap. (The
        # platform default runs a narrower chunk as one tile inside the loop.)
        micro_batch = None
    point = study.point
    return _Plan(
        solve_fn=study.spec.function, base=tuple(point.values.items()),
        settings=tuple(point.settings.items()), base_type=point.params_type,
        varied=study.varied, columns=columns, axes=axes, layout=layout,
        derivatives=study.derivatives, wrt=study.wrt, elasticities=study.elasticities,
        dtype=study.dtype, batch=batch, n_devices=n_devices,
        store=None if store is None else os.fspath(store), variables=study.variables,
        micro_batch=micro_batch, elements=study.elements, stochastic=study.spec.stochastic,
        replications=study.replications, seed=study.seed,
    )


def _provenance(study: _Study, plan: _Plan) -> tuple[dict, dict, dict]:
    """Stage 4: dataset attrs (with the key that identifies the sweep), variable and coord
    attrs."""
    import jaxgames

    spec, model, layout = study.spec, study.spec.model, plan.layout
    settings = {k: describe_setting(v) for k, v in study.point.settings.items()}
    base = study.point.describe()
    values = plan.columns if plan.columns is not None else plan.axes

    def describe_axis(i, key):
        a = values[i]
        if key in model.categories or _axis_param(key) in model.categories:
            return {"n": int(len(a)), "labels": [model.label(_axis_param(key), c) for c in a]}
        return {"n": int(len(a)), "min": float(a.min()), "max": float(a.max())}

    key_src = {
        "solve_function": spec.name, "base": base, "varied": plan.varied,
        "settings": settings,
        "values": hashlib.sha256(b"".join(np.ascontiguousarray(a, float).tobytes()
                                          for a in values)).hexdigest(),
        "derivatives": study.derivatives, "wrt": study.wrt, "elasticities": study.elasticities,
        "dtype": study.dtype, "layout": [layout.block_axis, layout.block_len, list(layout.shape)],
        "variables": [[v.name, v.dtype] for v in plan.variables],
        "jaxgames": jaxgames.__version__,
    }
    if any(v.dims for v in plan.variables):
        key_src["trailing"] = [[v.name, list(v.dims), list(v.shape)] for v in plan.variables]
    if study.replications:
        key_src.update(seed=study.seed, replications=study.replications)
    device, devices_desc = _device_description(plan.n_devices)
    attrs = {
        "title": f"jaxgames sweep: {spec.name}",
        "model": model.name,
        "solve_function": spec.name,
        "base_params": json.dumps(base),
        "settings": json.dumps(settings),
        "axes": json.dumps({n: describe_axis(i, n) for i, n in enumerate(plan.varied)}),
        "design": (study.design.describe() if study.design is not None
                   else "full factorial grid"),
        "derivatives": json.dumps(list(study.derivatives)),
        "wrt": json.dumps(list(study.wrt) if study.derivatives else []),
        "elasticities": int(study.elasticities),
        "solver": spec.solver_settings(),
        "dtype": study.dtype,
        "n_points": int(layout.n_points),
        "chunk_points": int(layout.chunk_points),
        "n_chunks": int(layout.n_chunks),
        "micro_batch": int(plan.micro_batch or 0),
    }
    if study.replications:
        attrs.update(seed=study.seed, replications=study.replications,
                     random_numbers="key = jax.random.fold_in(jax.random.key(seed), "
                                    "replication): common random numbers across scenarios")
    attrs.update({
        "sweep_key": hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest(),
        "jaxgames_version": jaxgames.__version__,
        "jax_version": jax.__version__,
        "numpy_version": np.__version__,
        "xarray_version": xr.__version__,
        "python_version": platform.python_version(),
        "device": device,
        "devices": devices_desc,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    })
    var_attrs = {v.name: _var_attrs(v.name, study) for v in plan.variables}
    coord_attrs = {}
    for n in plan.varied:
        p = _axis_param(n)
        a = {k: v for k, v in (("units", model.units.get(p)),
                               ("description", model.descriptions.get(p))) if v is not None}
        if n != p:
            a["element_of"] = p
        coord_attrs[n] = a
    return attrs, var_attrs, coord_attrs


def sweep(
    solve_fn: Callable[..., Any],
    base_params: Any,
    axes: Mapping[str, Sequence[Any]] | Design,
    *,
    derivatives: Sequence[str] = (),
    wrt: Sequence[str] | None = None,
    elasticities: bool = False,
    replications: int | None = None,
    seed: int = 0,
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
    max_memory: int | None = None,
    max_disk: int | None = None,
) -> xr.Dataset:
    """Solve ``solve_fn`` at every point of a grid or design; return a labelled dataset.

    Args:
        solve_fn: model function ``params -> NamedTuple`` (or dict) for one point, e.g.
            ``bakshi_kleindorfer.noncooperative``, a ``functools.partial`` of one (settings bound
            by keyword), or :func:`combine` of several; resolved against its model module by
            :func:`jaxgames.solve_spec` (domain, units, dims, categories, stochastic).
        base_params: the model's ``Params``; parameters not swept keep these values. A vector
            parameter (``PARAM_DIMS``) is a 1-D array; a categorical one (``CATEGORIES``) a
            label (``"WH"``) or its integer code.
        axes: ``{key: values}`` for a full factorial grid (dims in this order), or a
            :class:`~jaxgames.design.Design` (one ``sample`` dim; parameter values are coords).
            A key is a parameter (``"p"``; for a vector parameter, every element gets the
            value), or one element of a vector parameter, ``"v[1]"`` (its coordinate: ``1..n``,
            or a label of ``DIM_COORDS``), applied after whole vectors. Categorical
            parameters take lists of labels (stored as string coords, passed to the model as
            integer codes: one compilation serves every label).
        derivatives: outputs to differentiate (implicit function theorem); adds
            ``d<output>_d<param>`` for every ``param`` in ``wrt``. A derivative with respect to
            a vector parameter has the parameter's dim as its last dim (``<dim>_wrt`` if the
            output already has that dim).
        wrt: parameters to differentiate with respect to (default: all real parameters, not
            categorical ones); elements as ``"v[1]"``.
        elasticities: also add ``elasticity_<output>_<param> = (param / output) d output/d param``
            (NaN where the output is 0).
        replications: stochastic solve functions only (the model's ``STOCHASTIC``): the number
            of replications, a last dim ``replication`` (default 1).
        seed: stochastic solve functions: replication ``r`` of every scenario gets the key
            ``jax.random.fold_in(jax.random.key(seed), r)`` (common random numbers); recorded
            in attrs.
        chunk_size: maximum points per compiled call (default 65,536 on CPU, 1,048,576 on an
            accelerator); replications count as points. Peak memory is proportional to it.
        store: path of a Zarr store (ending in ``.zarr``) to stream chunks into (the result is
            then opened lazily from it); ``None`` keeps everything in memory. Checked before
            anything runs: its directory must be writable, and an existing path needs
            ``resume`` or ``overwrite``.
        resume: continue the sweep already in ``store``: completed chunks are kept, the rest
            (including any chunk interrupted while writing) are solved. A store that does not
            exist is an error.
        overwrite: replace an existing store instead of failing; only a store jaxgames wrote
            (root attributes with ``jaxgames_version``) is deleted, anything else at that
            path is an error naming it.
        progress: show a progress bar (points, points/s, ETA); ``None``: only on a terminal.
        dtype: ``float32`` or ``float64`` (default: float64 if x64 is enabled). A float64 sweep
            enables 64-bit JAX for its own tracing, compilation and execution only
            (``jax.enable_x64``): the caller's global ``jax_enable_x64`` is left unchanged.
        dask: a ``distributed.Client`` or scheduler address: solve chunks as tasks on that
            cluster (needs ``store``; workers write their own regions).
        devices: number of local devices to split each chunk across (default: all).
        micro_batch: solve a chunk as a loop (``_batching.tile_loop``) over vmapped groups of
            this many points; ``None`` takes the platform's default, the same for every model
            (on the CPU tiles of at most 1,024 points of equal width, a narrower chunk as one tile,
            always inside the loop so that no chunking changes a bit; one ``vmap`` over the
            whole chunk on an accelerator; :data:`MICRO_BATCH` overrides it). An explicit
            value of at least the chunk gives one ``vmap``. Single-device runs only. Results
            are the same bits as one ``vmap`` for a model whose solve computes the same bits
            at every batch width (the engine's own arithmetic does); otherwise they may
            differ in the last bits.
        callback: called with a :class:`ChunkInfo` after each chunk is stored.
        max_memory: bytes of memory the sweep may use (default: the memory available now,
            ``MemAvailable`` of ``/proc/meminfo``, else the physical memory). The sweep's memory
            is estimated before anything is allocated (:func:`estimate_size`: the result held
            in memory without ``store``, the chunks in flight, the swept values); a sweep that
            needs more is refused with an error naming its size and the limit.
        max_disk: bytes the ``store`` may take (default: the free space of its file system);
            estimated uncompressed, as an upper bound.

    Returns:
        ``xarray.Dataset``: one variable per output of ``solve_fn`` (diagnostics included) and
        per derivative, with the sweep's dims followed by the output's own (``OUTPUT_DIMS``);
        coords are the swept values (labels for categories) and the declared dim coords;
        attrs record the provenance.
    """
    # ---- everything is checked before anything is compiled
    if dask is not None and store is None:
        raise ValueError("dask= needs store= (workers write their chunks to a shared Zarr store)")
    if resume and overwrite:
        raise ValueError("resume=True and overwrite=True contradict each other")
    if store is not None:
        check_store_path(store, resume=resume, overwrite=overwrite)
    elif resume or overwrite:
        raise ValueError(f"{'resume' if resume else 'overwrite'}=True needs store= (a sweep "
                         "kept in memory has nothing to resume or replace)")
    study = _resolve(solve_fn, base_params, axes, derivatives, wrt, elasticities, replications,
                     seed, dtype)
    study = _find_outputs(study)
    plan = _plan_chunks(study, chunk_size, devices, micro_batch, store)
    check_size(estimate_size(plan.layout.n_points, _point_bytes(plan.variables),
                             chunk_points=plan.batch, n_values=_n_values(plan),
                             n_chunks=plan.layout.n_chunks, n_variables=len(plan.variables),
                             store=plan.store),
               max_memory=max_memory, max_disk=max_disk, store=plan.store,
               what="axes" if study.design is None else "design")
    attrs, var_attrs, coord_attrs = _provenance(study, plan)
    return _execute(plan, study, attrs, var_attrs, coord_attrs, resume=resume,
                    overwrite=overwrite, progress=progress, dask=dask, callback=callback)


def _execute(plan: _Plan, study: _Study, attrs, var_attrs, coord_attrs, *, resume, overwrite,
             progress, dask, callback) -> xr.Dataset:
    """Stage 5: prepare the store, solve the pending chunks, return the dataset."""
    layout = plan.layout
    if plan.store is not None:
        with STORE_LOCK:
            done = _prepare_store(plan, study, attrs, var_attrs, coord_attrs, resume,
                                  overwrite)
        result = None
    else:
        done = set()
        result = {v.name: np.empty((layout.n_points,) + v.shape, v.dtype)
                  for v in plan.variables}
    todo = [i for i in range(layout.n_chunks) if i not in done]
    release_compiled_programs()  # before this sweep compiles (see MAP_SHARE)

    bar = _progress_bar(progress, layout.n_points,
                        study.spec.name.replace("jaxgames.models.", ""),
                        initial=sum(_chunk_len(layout, i) for i in done))
    try:
        if dask is not None:
            _run_dask(plan, todo, dask, bar, callback)
        else:
            _run_local(plan, todo, result, bar, callback)
    finally:
        if bar is not None:
            bar.close()

    if plan.store is not None:
        return open_sweep(plan.store)
    return _template(plan, study, attrs, var_attrs, coord_attrs, lazy=False, values=result)


def _chunk_len(layout: Layout, i: int) -> int:
    start, stop, _ = layout.chunk(i)
    return stop - start


class _Progress:
    """A progress bar that says when it is compiling, and whose rate and ETA start after.

    The first chunk of a sweep includes compiling the model (seconds to minutes), so a bar
    started before it would sit at 0% and then extrapolate a wrong rate. This shows
    ``<name>: compiling and solving the first chunk`` until the first chunk is stored, then
    opens the points bar (points/s and ETA measured from there on).
    """

    def __init__(self, progress, total: int, desc: str, initial: int):
        self.total, self.desc, self.n = total, desc, initial
        self.disable = None if progress is None else False
        self.bar = None
        self.first = True
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            tqdm = None
        self.tqdm = tqdm
        if tqdm is not None:
            self.bar = tqdm(total=total, initial=initial, unit="pt", unit_scale=True,
                            desc=f"{desc}: compiling and solving the first chunk",
                            disable=self.disable, bar_format="{desc} [{elapsed}]", leave=False)

    def update(self, n: int) -> None:
        self.n += n
        if self.bar is None:
            return
        if self.first:  # compilation done: the rate and ETA count from here
            self.first = False
            self.bar.close()
            self.bar = self.tqdm(total=self.total, initial=self.n, unit="pt", unit_scale=True,
                                 desc=self.desc, disable=self.disable, smoothing=0.1,
                                 leave=True)
        else:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress_bar(progress, total, desc, initial):
    if progress is False:
        return None
    return _Progress(progress, total, desc, initial)


def _prepare_store(plan, study, attrs, var_attrs, coord_attrs, resume, overwrite) -> set[int]:
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
        remove_store(store)
    template = _template(plan, study, attrs, var_attrs, coord_attrs, lazy=True)
    encoding = {v.name: {"chunks": plan.layout.storage_chunks + v.shape}
                for v in plan.variables}
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

