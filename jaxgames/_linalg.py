"""Dense linear solves for the tiny systems a Newton step on a game produces.

A vmapped ``jnp.linalg.solve`` on a 3x3 system becomes a batched LAPACK/cuSOLVER call that XLA
cannot fuse with the rest of the iteration; on a GPU it runs ~100x below the memory bound. For
small ``n`` we unroll Gaussian elimination with partial pivoting into elementwise operations
(row swaps are one-hot blends, not gathers), so the whole Newton step fuses into one kernel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

#: Largest system solved by the unrolled elimination; larger ones go to ``jnp.linalg.solve``.
UNROLL_MAX_N = 8


def small_solve(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Solve ``a @ x = b`` for one small square system.

    Returns ``(x, ok)`` where ``ok`` is False if a pivot vanished (singular or non-finite ``a``);
    then ``x`` is not meaningful and the caller must fall back.
    """
    n = a.shape[-1]
    if n > UNROLL_MAX_N:
        x = jnp.linalg.solve(a, b)
        return x, jnp.all(jnp.isfinite(x))
    rows = jnp.arange(n)
    tiny = jnp.finfo(a.dtype).tiny
    ok = jnp.array(True)
    for k in range(n):
        # Partial pivoting: bring the largest |a[i, k]|, i >= k, to row k.
        col = jnp.where(rows >= k, jnp.abs(a[:, k]), -1.0)
        p = jnp.argmax(col)
        onehot_p = (rows == p).astype(a.dtype)
        e_k = (rows == k).astype(a.dtype)
        row_k, row_p = a[k], onehot_p @ a
        b_k, b_p = b[k], onehot_p @ b
        a = a + jnp.outer(e_k - onehot_p, row_p - row_k)
        b = b + (e_k - onehot_p) * (b_p - b_k)
        pivot = a[k, k]
        ok = ok & (jnp.abs(pivot) > tiny) & jnp.isfinite(pivot)
        safe_pivot = jnp.where(ok, pivot, 1.0)
        factors = jnp.where(rows > k, a[:, k] / safe_pivot, 0.0)
        a = a - jnp.outer(factors, a[k])
        b = b - factors * b[k]
    x = jnp.zeros_like(b)
    for k in reversed(range(n)):
        acc = b[k] - a[k] @ x  # x[j] for j <= k is still zero
        x = x.at[k].set(acc / jnp.where(ok, a[k, k], 1.0))
    return x, ok & jnp.all(jnp.isfinite(x))


def linear_solve(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a^{-1} b`` that is differentiable and transposable in ``b`` (for implicit adjoints)."""

    def matvec(v):
        return a @ v

    def solve(_, rhs):
        return small_solve(a, rhs)[0]

    def transpose_solve(_, rhs):
        return small_solve(a.T, rhs)[0]

    return jax.lax.custom_linear_solve(matvec, b, solve, transpose_solve)
