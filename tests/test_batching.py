"""Wide ``vmap``s of solve functions run as tiles inside a loop (``jaxgames._batching``), with
the same bits as the sweep engine's tiles, the same derivatives, and unbatched calls untouched.

A one-variable complementarity problem stands in for a model (it compiles in a second), and
tiles of 16 lanes for the CPU's 1,024, so that the batches stay small."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgames as jg
from jaxgames import _batching
from jaxgames.models import bakshi_kleindorfer as bk
from jaxgames.models import defender_attacker as da

N = 40  # points: 3 tiles of 16 lanes (40 -> 3 x 14 -> rounded up to 3 x 16, 8 lanes padded)


@_batching.tiled
def cube_root(a, c):
    """``x >= 0 perp c x^3 + x - a >= 0``: ``x = 0`` for ``a <= 0``, else the real root; ``c``
    (a static setting, not an array) scales the cubic term."""
    if not isinstance(c, float):
        raise TypeError("c is a static setting")
    if not isinstance(a, jax.core.Tracer) and a < -10:
        raise ValueError("a must be >= -10")  # concrete inputs are validated unbatched
    return jg.solve_mcp(lambda x, a: c * x**3 + x - a, jnp.ones(1) * 0.5, a, lower=0.0)


def _points():
    return jnp.asarray(np.random.default_rng(7).uniform(-1.0, 8.0, N))


def _run(width):
    def run(a):
        with _batching.tiling(width):
            return jax.vmap(lambda x: cube_root(x, 1.0))(a)

    return run


def _tilings(fn, a, monkeypatch) -> list:
    """The ``(n, width)`` of every tiling that tracing ``fn(a)`` does."""
    calls, real = [], _batching.map_tiles

    def spy(fn, n, width, batched, leaves):
        calls.append((n, width))
        return real(fn, n, width, batched, leaves)

    monkeypatch.setattr(_batching, "map_tiles", spy)
    jax.make_jaxpr(fn)(a)
    monkeypatch.undo()
    return calls


def test_tiles():
    assert _batching.tiles(40, 16) == (3, 16)
    assert _batching.tiles(1112, 1024) == (2, 560)
    assert _batching.tiles(1024, 1024) == (1, 1024)
    assert _batching.tiles(5, 1024) == (1, 8)


def test_wide_vmap_runs_as_tiles_with_the_sweeps_bits(monkeypatch):
    """A vmap wider than the tile is a loop over tiles; its outputs equal, bit for bit, the
    sweep engine's tiles of the same width, and the solution (boundary ones exactly 0)."""
    a = _points()
    assert _tilings(_run(16), a, monkeypatch) == [(N, 16)]
    assert _tilings(_run(None), a, monkeypatch) == []

    def sweep_style(a):
        with _batching.tiling(None):
            return _batching.map_tiles(lambda x: cube_root(x, 1.0), N, 16, [True], [a])

    tiled, swept = jax.jit(_run(16))(a), jax.jit(sweep_style)(a)
    for name, x, y in zip(tiled._fields, tiled, swept, strict=True):
        assert np.asarray(x).shape[0] == N
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=name)
    x = np.asarray(tiled.value)[:, 0]
    assert np.all(np.asarray(tiled.status) == jg.Status.SUCCESS)
    np.testing.assert_array_equal(x[np.asarray(a) <= 0], 0.0)
    np.testing.assert_allclose((x**3 + x)[np.asarray(a) > 0], np.asarray(a)[np.asarray(a) > 0],
                               rtol=1e-12)


def test_narrow_vmap_and_unbatched_call_are_untouched(monkeypatch):
    """A vmap no wider than the tile is one vmap; an unbatched call is the function itself
    (concrete inputs are validated before anything is traced)."""
    assert _tilings(_run(16), _points()[:16], monkeypatch) == []
    with pytest.raises(ValueError, match="a must be"):
        cube_root(jnp.asarray(-11.0), 1.0)


def test_derivatives_through_a_tiled_vmap():
    """grad and jvp of a tiled vmap are the function's own: dx/da = 1 / (3 x^2 + 1) inside,
    0 at the bound."""
    a = _points()

    def total(s):
        return jnp.sum(_run(16)(a * s).value)

    x = np.asarray(jax.jit(_run(None))(a).value)[:, 0]
    expected = float(np.sum(np.where(x > 0, np.asarray(a) / (3 * x**2 + 1), 0.0)))
    np.testing.assert_allclose(float(jax.jit(jax.grad(total))(1.0)), expected, rtol=1e-10)
    tangent = jax.jit(lambda s: jax.jvp(total, (s,), (1.0,))[1])(1.0)
    np.testing.assert_allclose(float(tangent), expected, rtol=1e-10)


@pytest.mark.parametrize("fn", [da.equilibrium, da.compare_mechanisms,
                                *(getattr(bk, f) for f in bk.SOLVE_FUNCTIONS)])
def test_solve_functions_are_tiled(fn):
    """The solve functions whose wide vmap costs more per point on a CPU carry the decorator
    (``defender_attacker.equilibrium_*`` call the decorated ``equilibrium``)."""
    assert getattr(fn, "__wrapped__", None) is not None
