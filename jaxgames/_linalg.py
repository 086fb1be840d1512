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
#: ``jnp.linalg.solve``. The unrolled form makes a Newton step of a small game one fused loop,
#: but its code grows as n^3 (n jvps for the Jacobian, n^3/3 pivoted updates). At n = 8 (the
#: Nash product of ``bakshi_kleindorfer.bargaining``) compiling ``jaxgames figure3``, and
#: loading it from the compilation cache, took about 3x as long as with the array form
#: (``benchmarks/bench_cache.py figure3 --stages``; numbers in benchmarks/README.md). Hence 7.
UNROLL_MAX_N = 7


def _unrolled(n: int) -> bool:
    return n <= UNROLL_MAX_N


def vsum(v: jax.Array) -> jax.Array:
    """Sum of a short vector, unrolled (no reduce op) for small sizes."""
    n = v.shape[-1]
    if not _unrolled(n):
        return jnp.sum(v, axis=-1)
    return functools.reduce(operator.add, [v[..., i] for i in range(n)])


def matvec(a: jax.Array, x: jax.Array) -> jax.Array:
    """``a @ x`` for a small matrix, as scalar products and sums."""
    n = a.shape[-1]
    if not _unrolled(n):
        return a @ x
    return jnp.stack([vsum(a[i] * x) for i in range(a.shape[0])])


def small_solve(
    a: jax.Array, b: jax.Array, *, rtol: float | None = None, floor: float = 0.0
) -> tuple[jax.Array, jax.Array]:
    """Solve ``a @ x = b`` for one small square system by pivoted Gaussian elimination.

    Returns ``(x, ok)``. ``ok`` is False if ``a`` is singular or non-finite, or if a pivot (for
    ``n > UNROLL_MAX_N``: the smallest singular value) is at most
    ``max(rtol * max|a_ij|, floor)``; ``rtol`` defaults to ``n * eps`` (numerically singular).
    Where ``ok`` is False, ``x`` is NaN: the elimination never divides by a substituted pivot,
    and no finite number stands in for the solution of a singular system.
    """
    n = a.shape[-1]
    if not _unrolled(n):
        rtol = n * jnp.finfo(a.dtype).eps if rtol is None else rtol
        # LAPACK does not report near-singularity; compare the extreme singular values.
        sv = jnp.linalg.svd(a, compute_uv=False)
        x = jnp.linalg.solve(a, b)
        ok = (jnp.all(jnp.isfinite(x)) & jnp.all(jnp.isfinite(sv))
              & (sv[-1] > jnp.maximum(rtol * sv[0], floor)))
        return jnp.where(ok, x, jnp.nan), ok
    x, ok = _eliminate([[a[i, j] for j in range(n)] for i in range(n)],
                       [b[i] for i in range(n)], rtol, floor)
    return jnp.stack(x), ok


def _eliminate(m: list, r: list, rtol: float | None = None, floor: float = 0.0
               ) -> tuple[list, jax.Array]:
    """Pivoted Gaussian elimination on an ``n x n`` list of scalars; ``(x, ok)``, x a list.

    A pivot at most ``max(rtol * max|a|, floor)`` (``rtol`` default ``n * eps``) makes ``ok``
    False and every entry of ``x`` NaN.
    """
    n = len(r)
    m = [list(row) for row in m]
    r = list(r)
    rtol = n * jnp.finfo(r[0].dtype).eps if rtol is None else rtol
    # A pivot below n * eps * max|a| is treated as zero: nearly singular systems are reported
    # (ok=False) rather than solved into garbage.
    threshold = jnp.maximum(rtol * functools.reduce(
        jnp.maximum, [jnp.abs(v) for row in m for v in row]), floor)
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
        # A rejected pivot is not replaced by a stand-in: dividing by NaN makes everything
        # downstream of it NaN (and ok is already False).
        inv = 1.0 / jnp.where(ok, pivot, jnp.nan)
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
        x[k] = acc / jnp.where(ok, m[k][k], jnp.nan)
    ok = ok & functools.reduce(operator.and_, [jnp.isfinite(v) for v in x])
    return [jnp.where(ok, v, jnp.nan) for v in x], ok


def derivative_tolerance(dtype) -> float:
    """Smallest pivot, relative to ``max(1, max|J_ij|)``, at which implicit derivatives are
    computed: ``sqrt(eps)`` (1.5e-8 in float64, 3.5e-4 in float32).

    The Jacobian is the scaled one (``d Phi / d (x / x_scale)`` with ``Phi = F / f_scale``),
    whose entries the scales make O(1). The solution is known to the solver's tolerance, so
    its Jacobian is known to about ``|d J / dx| * atol / pivot``; below a pivot of
    ``sqrt(eps)`` that uncertainty (or round-off in the pivot itself) reaches the size of the
    pivot, and ``(dPhi/dx)^{-1}`` is not the derivative of anything: e.g. the root
    ``x = a^(1/3)`` of ``x^3 - a`` at ``a = 0``, where ``dx/da`` is infinite but a solution
    within tolerance has a finite ``1 / (3 x^2)``.
    """
    return float(jnp.finfo(dtype).eps) ** 0.5


def linear_solve(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a^{-1} b`` that is differentiable and transposable in ``b`` (for implicit adjoints).

    NaN where ``a`` is singular or ill-conditioned beyond :func:`derivative_tolerance` (a
    pivot of the scaled Jacobian below ``sqrt(eps) * max(1, max|a_ij|)``): an implicit
    derivative there is reported as NaN, never as a finite stand-in.
    """
    tol = derivative_tolerance(a.dtype)

    def mv(v):
        return matvec(a, v)

    def solve(_, rhs):
        return small_solve(a, rhs, rtol=tol, floor=tol)[0]

    def transpose_solve(_, rhs):
        return small_solve(a.T, rhs, rtol=tol, floor=tol)[0]

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


# ----------------------------------------------------------------------------- blocks
#
# Inside a solver loop, a vector of length n is a tuple of *blocks*: n scalars when
# n <= UNROLL_MAX_N, else one (n,) array; a matrix is a tuple of rows of blocks (n x n scalars, or
# one (n, n) array). Stacked (n,) arrays under vmap become (batch, n) arrays whose columns XLA
# slices, transposes and copies between kernels; tuples of scalars stay (batch,) arrays that
# fuse elementwise, which made a vmapped Newton step of a 3-player game about twice as fast.


def split(x: jax.Array) -> tuple[jax.Array, ...]:
    """An ``(n,)`` array as a tuple of blocks."""
    n = x.shape[-1]
    return tuple(x[i] for i in range(n)) if _unrolled(n) else (x,)


def join(v: tuple[jax.Array, ...]) -> jax.Array:
    """A tuple of blocks as one ``(n,)`` array."""
    return jnp.stack(v) if v[0].ndim == 0 else v[0]


def bsum(v) -> jax.Array:
    """Sum of all entries of a block vector."""
    return functools.reduce(operator.add, [b if b.ndim == 0 else jnp.sum(b) for b in v])


def bmax(v) -> jax.Array:
    """Maximum of all entries of a block vector."""
    return functools.reduce(jnp.maximum, [b if b.ndim == 0 else jnp.max(b) for b in v])


def ball(v) -> jax.Array:
    """Logical and of all entries of a boolean block vector."""
    return functools.reduce(operator.and_, [b if b.ndim == 0 else jnp.all(b) for b in v])


def bdot(a, b) -> jax.Array:
    return bsum(tuple(x * y for x, y in zip(a, b, strict=True)))


def bmatvec(m, x):
    """``M x`` for a block matrix."""
    return tuple(
        functools.reduce(operator.add, [_mul(mij, xj) for mij, xj in zip(row, x, strict=True)])
        for row in m)


def brmatvec(m, r):
    """``M^T r`` for a block matrix."""
    return tuple(
        functools.reduce(operator.add, [_mul(m[i][j], r[i], transpose=True)
                                        for i in range(len(r))])
        for j in range(len(m[0])))


def _mul(mij, xj, transpose=False):
    if mij.ndim == 0:
        return mij * xj
    return (mij.T if transpose else mij) @ xj


def bsolve(m, b):
    """Solve ``M x = b`` for a block matrix; ``(x, ok)`` as :func:`small_solve` (NaN where not
    ok)."""
    if b[0].ndim == 0:
        x, ok = _eliminate(m, b)
        return tuple(x), ok
    x, ok = small_solve(m[0][0], b[0])
    return (x,), ok


def bjacobian(fn, x):
    """``(fn(x), d fn / d x)`` for ``fn`` mapping block vectors to block vectors of equal size.

    One ``jvp`` per scalar unknown, with one-hot tangents (see :func:`jacobian_columns`); for a
    single array block, ``jacobian_columns``.
    """
    if x[0].ndim != 0:
        value, jac = jacobian_columns(lambda v: fn((v,))[0], x[0])
        return (value,), ((jac,),)
    n = len(x)
    cols, value = [], None
    for j in range(n):
        tangent = tuple(jnp.ones_like(x[i]) if i == j else jnp.zeros_like(x[i]) for i in range(n))
        value, col = jax.jvp(fn, (x,), (tangent,))
        cols.append(col)
    return value, tuple(tuple(cols[j][i] for j in range(n)) for i in range(n))


def bwhere(cond, a, b):
    """Elementwise ``where`` over matching block pytrees (vectors or matrices)."""
    return jax.tree_util.tree_map(lambda u, v: jnp.where(cond, u, v), a, b)
