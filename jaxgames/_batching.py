"""Wide ``vmap``s of a solve function on a CPU run as tiles inside a loop.

On a CPU a batch much wider than about a thousand points streams every lane's intermediates
through memory instead of the caches, so the cost per point of a vmapped solve can grow with the
width (benchmarks/README.md, width scan). :func:`tiled` makes a model's solve function immune to
that: under ``vmap``, on a platform listed in :data:`TILE`, a batch wider than the tile runs as
:func:`tile_loop` over vmapped tiles of equal width (at most :data:`TILE` lanes, a multiple
of 8, the last point repeated to fill them) -- the layout of the sweep engine's CPU chunks, so
a bare ``vmap`` and a sweep compute the same bits. On accelerators (not listed) a batch stays one
``vmap``: a GPU needs the width.

The decorator changes nothing else: an unbatched call runs the function itself (validation of
concrete inputs included), and derivatives (``jvp``, ``grad``, and ``vmap`` of either) are those
of the function itself, untiled (``jax.custom_jvp`` around the batching rule, because JAX's
``custom_vmap`` has no reverse mode). The batching rule sees only the innermost ``vmap`` over the
function: ``vmap(vmap(f))`` tiles the inner axis, the outer one stays as wide as it is.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxgames._solver import LANES, _enclosing_lanes

#: Tile width per platform: a ``vmap`` of a :func:`tiled` function wider than this runs as
#: :func:`tile_loop` over tiles. Platforms not listed run one ``vmap``.
TILE = {"cpu": 1024}
_override: list = []


@contextlib.contextmanager
def tiling(width: int | None):
    """Within this context (at trace time), :func:`tiled` functions use tiles of ``width``
    lanes on every platform; ``None``: one ``vmap``."""
    _override.append(width)
    try:
        yield
    finally:
        _override.pop()


def tile_width() -> int | None:
    """The tile width in effect: the innermost :func:`tiling` context's, else the default
    backend's entry of :data:`TILE`."""
    if _override:
        return _override[-1]
    return TILE.get(jax.default_backend())


def tiles(n: int, width: int) -> tuple[int, int]:
    """``(groups, tile)`` for ``n`` points in tiles of at most ``width``: the fewest groups, of
    equal width rounded up to a multiple of ``jaxgames._solver.LANES`` (so that every lane
    runs the same vectorised code)."""
    groups = math.ceil(n / width)
    return groups, math.ceil(math.ceil(n / groups) / LANES) * LANES


def map_tiles(fn: Callable, n: int, width: int, batched: list[bool], leaves: list):
    """``vmap(fn)`` over the leading axis (length ``n``) of the ``batched`` leaves, computed
    as :func:`tile_loop` over tiles of at most ``width`` lanes; the other leaves are shared."""
    groups, tile = tiles(n, width)
    pad = groups * tile - n

    def split(v):
        if pad:
            v = jnp.concatenate([v, jnp.repeat(v[-1:], pad, axis=0)])
        return v.reshape((groups, tile, *v.shape[1:]))

    idx = [i for i, b in enumerate(batched) if b]

    def group(xs):
        def one(*vals):
            full = list(leaves)
            for i, v in zip(idx, vals, strict=True):
                full[i] = v
            return fn(*full)

        return jax.vmap(one)(*xs)

    out = tile_loop(group, [split(leaves[i]) for i in idx], groups)
    return jax.tree_util.tree_map(lambda v: v.reshape((groups * tile, *v.shape[2:]))[:n], out)


def tile_loop(group: Callable, xs: list, groups: int):
    """``lax.map(group, xs)`` written as a ``fori_loop`` whose body reads tile ``g`` of the
    (closed-over) inputs and writes its outputs into arrays carried by the loop.

    The same tiles and the same bits as ``lax.map``, but cheaper on the CPU: for
    ``bakshi_kleindorfer.noncooperative`` (16 tiles of 1,024 points, float64) the ``lax.map``
    program took 41 ms of CPU per call and this one 31 ms (one vmap of all 16,384 points: 29
    ms; medians of 25 shuffled rounds, benchmarks/README.md, "Session 11")."""
    # Traced once: the shapes of the outputs and the loop body come from one jitted function
    # (its trace is cached; XLA inlines the call).
    group = jax.jit(group)
    out = jax.eval_shape(group, [v[0] for v in xs])
    init = jax.tree_util.tree_map(lambda s: jnp.zeros((groups, *s.shape), s.dtype), out)

    def body(g, acc):
        o = group([jax.lax.dynamic_index_in_dim(v, g, keepdims=False) for v in xs])
        return jax.tree_util.tree_map(
            lambda a, v: jax.lax.dynamic_update_index_in_dim(a, v, g, 0), acc, o)

    return jax.lax.fori_loop(0, groups, body, init)


def tiled(fn: Callable) -> Callable:
    """Decorator for a solve function: under ``vmap`` a batch wider than the tile runs as
    tiles (module docstring). Arguments that are not JAX arrays are static."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        leaves, tree = jax.tree_util.tree_flatten((args, kwargs))
        # Not under a vmap (the solver's reading of JAX's batch tracers; 1 where it fails):
        # the function itself.
        if _enclosing_lanes(leaves) <= 1 or tile_width() is None:
            return fn(*args, **kwargs)
        dyn = [i for i, v in enumerate(leaves) if isinstance(v, jax.Array)]

        def call(*vals):
            full = list(leaves)
            for i, v in zip(dyn, vals, strict=True):
                full[i] = v
            a, k = jax.tree_util.tree_unflatten(tree, full)
            return fn(*a, **k)

        @jax.custom_batching.custom_vmap
        def batched_call(*vals):
            return call(*vals)

        @batched_call.def_vmap
        def rule(axis_size, in_batched, *vals):
            width = tile_width()
            in_batched = list(in_batched)
            if width is None or axis_size <= width:
                out = jax.vmap(call, in_axes=[0 if b else None for b in in_batched])(*vals)
            else:
                out = map_tiles(call, axis_size, width, in_batched, list(vals))
            return out, jax.tree_util.tree_map(lambda _: True, out)

        @jax.custom_jvp
        def differentiable(*vals):
            return batched_call(*vals)

        @differentiable.defjvp
        def differentiable_jvp(primals, tangents):
            return jax.jvp(call, primals, tangents)

        return differentiable(*[leaves[i] for i in dyn])

    return wrapper
