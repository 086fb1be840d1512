"""Dense linear algebra for the tiny systems a Newton step on a game produces.

Under ``vmap`` a per-point 3x3 system becomes a batch of tiny matrices. ``jnp.linalg.solve``
turns that into a batched LAPACK/cuSOLVER call, and even plain ``@``, ``jnp.sum(axis=...)`` or
``vmap``-over-tangents create dot, reduce and transpose operations that XLA does not fuse with
the elementwise work around them: each becomes a separate pass over the whole batch. For small
``n`` we therefore unroll everything into scalar arithmetic on the entries (a Python list of
``n`` or ``n x n`` scalars): under ``vmap`` every operation is elementwise over the batch, and
XLA fuses a whole Newton step into a few loop kernels.
"""

from __future__ import annotations

import functools
import operator

import jax
import jax.numpy as jnp

#: Largest system handled by unrolled scalar code; larger ones use ``jnp`` reductions and
#: ``jnp.linalg.solve``.
UNROLL_MAX_N = 8


def _unrolled(n: int) -> bool:
    return n <= UNROLL_MAX_N


def vsum(v: jax.Array) -> jax.Array:
    """Sum of a short vector, unrolled (no reduce op) for small sizes."""
    n = v.shape[-1]
    if not _unrolled(n):
        return jnp.sum(v, axis=-1)
    return functools.reduce(operator.add, [v[..., i] for i in range(n)])


def vmax(v: jax.Array) -> jax.Array:
    """Maximum of a short vector, unrolled for small sizes."""
    n = v.shape[-1]
    if not _unrolled(n):
        return jnp.max(v, axis=-1)
    return functools.reduce(jnp.maximum, [v[..., i] for i in range(n)])


def vall(v: jax.Array) -> jax.Array:
    """Logical and of a short boolean vector, unrolled for small sizes."""
    n = v.shape[-1]
    if not _unrolled(n):
        return jnp.all(v, axis=-1)
    return functools.reduce(operator.and_, [v[..., i] for i in range(n)])


def matvec(a: jax.Array, x: jax.Array) -> jax.Array:
    """``a @ x`` for a small matrix, as scalar products and sums."""
    n = a.shape[-1]
    if not _unrolled(n):
        return a @ x
    return jnp.stack([vsum(a[i] * x) for i in range(a.shape[0])])


def small_solve(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Solve ``a @ x = b`` for one small square system by pivoted Gaussian elimination.

    Returns ``(x, ok)`` where ``ok`` is False if a pivot vanished (singular or non-finite
    ``a``); then ``x`` is not meaningful and the caller must fall back.
    """
    n = a.shape[-1]
    if not _unrolled(n):
        x = jnp.linalg.solve(a, b)
        # LAPACK does not report near-singularity; check the reciprocal condition number.
        cond_ok = jnp.linalg.cond(a) < 1.0 / (n * jnp.finfo(a.dtype).eps)
        return x, jnp.all(jnp.isfinite(x)) & cond_ok
    # A pivot below n * eps * max|a| is treated as zero: nearly singular systems are reported
    # (ok=False) rather than solved into garbage.
    threshold = n * jnp.finfo(a.dtype).eps * vmax(jnp.abs(a).reshape(-1))
    m = [[a[i, j] for j in range(n)] for i in range(n)]
    r = [b[i] for i in range(n)]
    ok = jnp.array(True)
    for k in range(n):
        # Partial pivoting by pairwise compare-and-swap: afterwards row k holds the entry of
        # largest magnitude in column k among rows k..n-1. Selects, not gathers.
        for i in range(k + 1, n):
            swap = jnp.abs(m[i][k]) > jnp.abs(m[k][k])
            for j in range(k, n):
                m[k][j], m[i][j] = (jnp.where(swap, m[i][j], m[k][j]),
                                    jnp.where(swap, m[k][j], m[i][j]))
            r[k], r[i] = jnp.where(swap, r[i], r[k]), jnp.where(swap, r[k], r[i])
        pivot = m[k][k]
        ok = ok & (jnp.abs(pivot) > threshold) & jnp.isfinite(pivot)
        inv = 1.0 / jnp.where(ok, pivot, 1.0)
        for i in range(k + 1, n):
            factor = m[i][k] * inv
            for j in range(k + 1, n):
                m[i][j] = m[i][j] - factor * m[k][j]
            r[i] = r[i] - factor * r[k]
    x = [None] * n
    for k in reversed(range(n)):
        acc = r[k]
        for j in range(k + 1, n):
            acc = acc - m[k][j] * x[j]
        x[k] = acc / jnp.where(ok, m[k][k], 1.0)
    out = jnp.stack(x)
    return out, ok & vall(jnp.isfinite(out))


def linear_solve(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a^{-1} b`` that is differentiable and transposable in ``b`` (for implicit adjoints)."""

    def mv(v):
        return matvec(a, v)

    def solve(_, rhs):
        return small_solve(a, rhs)[0]

    def transpose_solve(_, rhs):
        return small_solve(a.T, rhs)[0]

    return jax.lax.custom_linear_solve(mv, b, solve, transpose_solve)


def jacobian_columns(fn, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(fn(x), d fn / d x)`` by one ``jvp`` per column.

    Unlike ``jax.jacfwd`` (a ``vmap`` over basis tangents) this creates no batch dimension of
    tangents and hence no transposes; XLA's common-subexpression elimination shares the primal
    computation between the ``jvp`` calls.
    """
    n = x.shape[0]
    if not _unrolled(n):
        eye = jnp.eye(n, dtype=x.dtype)
        return jax.vmap(lambda t: jax.jvp(fn, (x,), (t,)), out_axes=(None, 1))(eye)
    cols = []
    value = None
    for j in range(n):
        tangent = jnp.zeros_like(x).at[j].set(1.0)
        value, col = jax.jvp(fn, (x,), (tangent,))
        cols.append(col)
    return value, jnp.stack(cols, axis=-1)
