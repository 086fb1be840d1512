"""Semismooth Newton for box-constrained mixed complementarity problems, with implicit adjoints.

Every equilibrium notion in jaxgames (Nash with bounds, Bayesian Nash, leader-follower, Nash
bargaining, shared constraints) reduces to a mixed complementarity problem (MCP): find ``x`` with
``lower <= x <= upper`` such that, componentwise,

    x_i = lower_i          =>  F_i(x) >= 0
    x_i = upper_i          =>  F_i(x) <= 0
    lower_i < x_i < upper_i =>  F_i(x) = 0.

``F`` is a stacked first-order condition (gradients of the players' costs, Lagrangian gradients,
constraint values for multipliers). We solve the equivalent square system ``Phi(x) = 0`` where
``Phi`` is the Fischer-Burmeister reformulation (Billups' form for two-sided boxes), by a
semismooth Newton method globalised with an Armijo backtracking line search on
``1/2 ||Phi||^2``, a gradient fallback when the Newton system is singular, and an optional cap on
the step length in scaled variables. Variables and residuals are scaled (``x_scale``,
``f_scale``) so that problems whose unknowns are ~1e5 and whose probabilities are ~1e-5 are
conditioned like O(1) problems.

The solve is pure: it works under ``jit``, ``vmap`` and ``grad``, never vmaps by itself, and
returns its diagnostics as data (:class:`Solution`). Under ``vmap`` a batching rule
(:func:`_batched_newton_loop`) keeps the cost of a batch proportional to the work its problems
need, not to its width times the slowest problem's: all problems take the unrolled fast steps
together, and only those still unsolved run the globalised loop, gathered into a small buffer.
Every problem's result is the same bits whatever the batch width, its neighbours or nesting,
provided ``fn`` itself computes the same bits at every batch shape (elementwise code does;
XLA's batched matrix products and reductions may not).

Derivatives flow by the implicit function theorem applied to ``Phi``: at a strictly
complementary solution the generalised Jacobian of the Fischer-Burmeister function is exactly
the active-set Jacobian (rows of active bounds pin ``dx_i = d lower_i``, inactive rows
linearise ``F_i = 0``), so
``dx = -(dPhi/dx)^{-1} dPhi/dtheta dtheta`` is the active-set sensitivity.

Derivatives are NaN -- never a finite stand-in -- where the solve did not converge, and where the
scaled Jacobian ``dPhi/dxi`` is singular or ill-conditioned beyond
:func:`jaxgames._linalg.derivative_tolerance` (a pivot below ``sqrt(eps) * max(1, max|J_ij|)``:
1.5e-8 in float64, 3.5e-4 in float32), e.g. at a degenerate root (``x^3 - a`` at ``a = 0``,
where ``dx/da`` is infinite). :func:`jaxgames.jacobian` and :func:`jaxgames.sensitivity_matrix`
report these as NaN with a flag.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgames._linalg import (
    ball,
    bdot,
    bjacobian,
    bmatvec,
    bmax,
    brmatvec,
    bsolve,
    bwhere,
    jacobian_columns,
    join,
    linear_solve,
    split,
)

Array = jax.Array
PyTree = Any


class Status(enum.IntEnum):
    """Outcome of a solve, stored as ``int32`` data so that it survives ``vmap``."""

    SUCCESS = 0
    #: The iteration budget ran out before the residual met the tolerance.
    MAX_STEPS = 1
    #: The residual or the iterate became NaN/inf.
    NONFINITE = 2
    #: The line search could not decrease the merit function (stationary point of the merit
    #: function that is not a solution, or a residual floor above the tolerance).
    STAGNATED = 3
    #: The inputs lie outside the model's domain (set by the models, not by the solver).
    INVALID_INPUT = 4
    #: The objective has no maximum (it grows without bound; set by the models).
    UNBOUNDED = 5
    #: No candidate satisfies the problem's constraints (e.g. no policy meets participation;
    #: set by the models).
    INFEASIBLE = 6


class Solution(NamedTuple):
    """Result of :func:`solve_mcp`. All fields are arrays; under ``vmap`` each gets a batch dim."""

    value: Array  # (n,) the solution x*
    residual: Array  # () infinity norm of the scaled complementarity residual Phi(x*)
    iterations: Array  # () int32 Newton iterations taken
    status: Array  # () int32, a Status value

    @property
    def converged(self) -> Array:
        return self.status == Status.SUCCESS


@dataclasses.dataclass(frozen=True)
class Newton:
    """Static configuration of the semismooth Newton solver (hashable, so ``jit`` can key on it).

    Attributes:
        atol: tolerance on ``max_i |Phi_i|`` in scaled units; ``None`` means ``100 * eps`` of
            the working dtype (2.2e-14 in float64, 1.2e-5 in float32). Residuals with a
            round-off floor above it are certified by the step test (``xtol``).
        max_steps: Newton iteration budget.
        max_step: cap on ``max_i |dx_i / x_scale_i|`` per iteration; ``None`` for no cap. A cap
            stops a far-off first step from jumping into a region where exponentials overflow.
        armijo: sufficient-decrease constant of the line search.
        max_backtracks: halvings of the step before the line search gives up.
        fast_steps: Newton steps taken first as straight-line (unrolled) code: full steps,
            each accepted only if it passes the Armijo test at unit step length, else the
            iterate stays. With a good starting point these converge most problems; the
            globalised loop then only runs while some lane of a batch still needs it. Unrolled
            code lets XLA fuse the whole solve into a few kernels (no per-iteration loop
            overhead), which is what makes large vmapped batches fast. Fast steps count
            towards ``max_steps``. Either an int, or pairs ``((dtype name, steps), ...)`` for
            a count per working dtype (a warm start may meet float32's tolerance after one
            step but need two for float64's; an unneeded step still costs every lane of a
            batch). Dtypes not listed get 0.
        xtol: a second convergence test, on the Newton step: the point is accepted when the
            full Newton step is below ``xtol * (1 + max|x / x_scale|)`` (the step estimates the
            distance to the root) and the residual is below ``step_atol``. It certifies
            solutions whose residual has a round-off floor above ``atol`` (steep first-order
            conditions, e.g. near a pole of a log-barrier). ``None`` means ``1000 * eps``.
        step_atol: the step test accepts a residual up to
            ``min(step_atol * max(1, max|J_ij|) * (1 + max|xi|), sqrt(atol))``, ``J`` the
            scaled Jacobian and ``xi`` the scaled iterate (the round-off floor of ``Phi`` grows
            with its slope and with the size of the unknowns); ``None`` means ``10 * atol``
            (2.2e-13 in float64, 1.2e-4 in float32). Before this bound the step test accepted
            any residual up to ``sqrt(atol)``, 3.5e-3 in float32, whatever the problem's
            scale.

    What ``status == SUCCESS`` (``converged``) guarantees, in scaled units
    (``xi = x / x_scale``, ``Phi`` of ``F / f_scale``): the returned point has
    ``max|Phi| <= atol`` (float64: 2.2e-14, float32: 1.2e-5 by default), or the full Newton
    step from it is below ``xtol * (1 + max|xi|)`` (2.2e-13 / 1.2e-4 relative) with
    ``max|Phi| <= min(step_atol * max(1, max|J_ij|) * (1 + max|xi|), sqrt(atol))``
    (4.4e-13 / 2.4e-4 for an O(1) problem, never above 1.5e-7 / 3.5e-3). ``residual`` is that
    ``max|Phi|``. A
    component within ``atol`` of a bound is then reported exactly at the bound (a move of at
    most ``atol`` in scaled units). A point that did not converge is reported as the iterate
    the residual describes, neither clipped nor snapped (it may lie outside the box).
    """

    atol: float | None = None
    max_steps: int = 50
    max_step: float | None = None
    armijo: float = 1e-4
    max_backtracks: int = 30
    fast_steps: int | tuple[tuple[str, int], ...] = 0
    xtol: float | None = None
    step_atol: float | None = None

    def __post_init__(self):
        if not isinstance(self.fast_steps, int):
            object.__setattr__(self, "fast_steps",
                               tuple((str(k), int(v)) for k, v in self.fast_steps))

    def fast_steps_for(self, dtype) -> int:
        """Unrolled fast steps for the working ``dtype`` (see ``fast_steps``)."""
        if isinstance(self.fast_steps, int):
            return self.fast_steps
        return dict(self.fast_steps).get(jnp.dtype(dtype).name, 0)

    def tolerance(self, dtype) -> float:
        return self.atol if self.atol is not None else 100.0 * float(jnp.finfo(dtype).eps)

    def step_tolerance(self, dtype) -> float:
        return self.xtol if self.xtol is not None else 1000.0 * float(jnp.finfo(dtype).eps)

    def step_residual_tolerance(self, dtype) -> float:
        return self.step_atol if self.step_atol is not None else 10.0 * self.tolerance(dtype)


def _fb(a: Array, b: Array) -> Array:
    """Fischer-Burmeister function ``sqrt(a^2 + b^2) - a - b`` (zero iff a, b >= 0, ab = 0).

    At the kink a = b = 0 we return the element of the generalised Jacobian with direction
    (1, 1)/sqrt(2), so that autodiff never sees 0/0. (``a``, ``b`` are scaled quantities; an
    overflow of ``a^2`` only happens far outside any sensible iterate, where the merit
    function is then infinite and the line search rejects the step.)
    """
    kink = (a == 0) & (b == 0)
    a_ = jnp.where(kink, 1.0, a)
    b_ = jnp.where(kink, 1.0, b)
    r = jnp.sqrt(a_ * a_ + b_ * b_)
    return jnp.where(kink, (jnp.sqrt(0.5) - 1.0) * (a + b), r - a - b)


def _component_residual(kind: str, f, x, lo, up):
    if kind == "free":
        return f
    if kind == "lo":
        return _fb(x - lo, f)
    if kind == "up":
        return _fb(up - x, -f)  # zero iff x <= u, f <= 0, (u - x) f = 0
    return _fb(x - lo, _fb(up - x, -f))  # "box": Billups (1995)


def complementarity_residual(
    f: Array, x: Array, lower: Array, upper: Array, pattern: tuple[str, ...] | None = None
) -> Array:
    """``Phi(x)``: zero exactly at solutions of the MCP ``lower <= x <= upper  perp  f``.

    ``x``, ``lower``, ``upper`` and ``f`` must already be in scaled units. Infinite bounds are
    allowed; a free variable gets ``Phi_i = f_i``. ``pattern`` -- one of ``"free"``, ``"lo"``,
    ``"up"``, ``"box"`` per component, known at trace time -- selects each component's formula
    statically; without it the formula is selected at run time from ``isfinite`` of the bounds
    (all four evaluated, about three times the work).
    """
    if pattern is not None:
        return jnp.stack([
            _component_residual(k, f[i], x[i], lower[i], upper[i]) for i, k in enumerate(pattern)
        ])
    has_lo = jnp.isfinite(lower)
    has_up = jnp.isfinite(upper)
    lo = jnp.where(has_lo, lower, 0.0)
    up = jnp.where(has_up, upper, 0.0)
    upper_part = _component_residual("up", f, x, lo, up)
    both = _component_residual("box", f, x, lo, up)
    only_lo = _component_residual("lo", f, x, lo, up)
    return jnp.where(
        has_lo & has_up, both, jnp.where(has_lo, only_lo, jnp.where(has_up, upper_part, f))
    )


def _bound_pattern(lower, upper, n: int) -> tuple[str, ...] | None:
    """Static per-component bound kinds if both bounds are concrete (not traced), else None."""

    def finite(v):
        if v is None:
            return np.zeros(n, bool)
        if isinstance(v, jax.core.Tracer):
            return None
        return np.broadcast_to(np.isfinite(np.asarray(v, dtype=float)), (n,))

    lo, up = finite(lower), finite(upper)
    if lo is None or up is None:
        return None
    kinds = {(False, False): "free", (True, False): "lo", (False, True): "up", (True, True): "box"}
    return tuple(kinds[(bool(a), bool(b))] for a, b in zip(lo, up, strict=True))


def _as_vector(v, n: int, dtype, fill: float) -> Array:
    if v is None:
        return jnp.full((n,), fill, dtype)
    return jnp.broadcast_to(jnp.asarray(v, dtype), (n,))


def solve_mcp(
    fn: Callable[[Array, PyTree], Array],
    x0: Array,
    args: PyTree = None,
    lower: Array | None = None,
    upper: Array | None = None,
    *,
    x_scale: Array | None = None,
    f_scale: Array | None = None,
    solver: Newton = Newton(),
) -> Solution:
    """Solve the box-constrained MCP ``lower <= x <= upper  perp  fn(x, args)``.

    Args:
        fn: pure function ``(x, args) -> F(x)`` with ``F`` of the same shape ``(n,)`` as ``x``.
        x0: starting point, shape ``(n,)``; its dtype is the working dtype.
        args: any pytree of parameters. The solution is differentiable with respect to every
            floating leaf of ``args`` and with respect to ``lower``/``upper`` (implicit function
            theorem); ``x0`` gets no derivative.
        lower, upper: bounds, broadcastable to ``(n,)``; ``None`` means unbounded (+-inf).
        x_scale: typical magnitude of each ``x_i`` (the solver works in ``x / x_scale``).
        f_scale: typical magnitude of each ``F_i`` (the residual is ``F / f_scale``).
        solver: a :class:`Newton` configuration.

    Returns:
        A :class:`Solution`; ``status`` says whether it converged and, if not, why.
    """
    x0 = jnp.asarray(x0)
    if x0.ndim != 1:
        raise ValueError(f"x0 must be a vector of shape (n,); got shape {x0.shape}")
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        x0 = x0.astype(jnp.result_type(float))
    n, dtype = x0.shape[0], x0.dtype
    pattern = _bound_pattern(lower, upper, n)
    fn, args = _hoist_constants(fn, x0, args)
    lower = _as_vector(lower, n, dtype, -jnp.inf)
    upper = _as_vector(upper, n, dtype, jnp.inf)
    x_scale = _as_vector(x_scale, n, dtype, 1.0)
    f_scale = _as_vector(f_scale, n, dtype, 1.0)
    return _solve(fn, solver, pattern, x0, (args, lower, upper, x_scale, f_scale))


def _hoist_constants(fn, x0, args):
    """Make every array ``fn`` closes over an explicit argument.

    Closed-over arrays may be tracers of an enclosing ``jit``/``vmap``/``jvp`` (a model
    building an index array or a parameter-dependent table inside a jitted function); a
    ``custom_jvp`` must not capture them as constants of its non-differentiable function
    argument. ``jax.closure_convert`` lifts only floating-point values, so we trace ``fn`` to a
    jaxpr and pass all of its constants, of any dtype, along with ``args`` (integer ones get
    zero tangents).
    """
    flat_args, tree = jax.tree_util.tree_flatten(args)

    def flat_fn(x, *flat):
        return fn(x, jax.tree_util.tree_unflatten(tree, flat))

    closed = jax.make_jaxpr(flat_fn)(x0, *flat_args)
    if not closed.consts:
        return fn, args
    jaxpr = closed.jaxpr

    def converted(x, packed):
        a, consts = packed
        return jax.core.eval_jaxpr(jaxpr, list(consts), x, *jax.tree_util.tree_leaves(a))[0]

    return converted, (args, tuple(closed.consts))


def _scaled_residual(fn, pattern, xi, args, lower, upper, x_scale, f_scale):
    """``Phi`` as a function of the scaled variable ``xi = x / x_scale``."""
    x = xi * x_scale
    f = fn(x, args) / f_scale
    return complementarity_residual(f, xi, lower / x_scale, upper / x_scale, pattern)


def _block_residual(f, xi, lo, up, pattern):
    """``Phi`` on block vectors (see ``_linalg``): per scalar, or for one array block."""
    if xi[0].ndim != 0:
        return (complementarity_residual(f[0], xi[0], lo[0], up[0], pattern),)
    if pattern is None:
        return tuple(complementarity_residual(*a) for a in zip(f, xi, lo, up, strict=True))
    return tuple(_component_residual(k, *a) for k, *a in zip(pattern, f, xi, lo, up, strict=True))


class _Ops(NamedTuple):
    """The closures a Newton iteration is made of, for one problem (one lane of a batch)."""

    phi: Callable  # scaled iterate -> Phi (block vectors, see _linalg)
    phi_and_jac: Callable  # scaled iterate -> (Phi, dPhi/dxi)
    xs: tuple  # x_scale, f_scale, scaled bounds: blocks
    lo: tuple
    up: tuple


def _ops(fn, pattern, inputs) -> _Ops:
    # Vectors are tuples of blocks (n scalars for small n, see _linalg): under vmap every
    # operation of a Newton step is then elementwise over the batch and fuses.
    args, lower, upper, x_scale, f_scale = inputs
    xs, fs = split(x_scale), split(f_scale)
    lo = tuple(v / s for v, s in zip(split(lower), xs, strict=True))
    up = tuple(v / s for v, s in zip(split(upper), xs, strict=True))

    def phi(xi):
        f = split(fn(join(tuple(v * s for v, s in zip(xi, xs, strict=True))), args))
        return _block_residual(tuple(v / s for v, s in zip(f, fs, strict=True)), xi, lo, up,
                               pattern)

    return _Ops(phi, lambda xi: bjacobian(phi, xi), xs, lo, up)


def _add(a, b, t=None):
    return tuple(u + v if t is None else u + t * v for u, v in zip(a, b, strict=True))


def _merit(r):
    m = 0.5 * bdot(r, r)
    return jnp.where(jnp.isfinite(m), m, jnp.inf)


def _norm(r):
    return bmax(tuple(jnp.abs(v) for v in r))


def _finite(v):
    return ball(tuple(jnp.isfinite(b) for b in v))


def _cap(solver: Newton, d):
    if solver.max_step is None:
        return d
    big = _norm(d)
    c = jnp.minimum(1.0, solver.max_step / jnp.where(big > 0, big, 1.0))
    return tuple(v * c for v in d)


def _newton_direction(solver: Newton, r, jac):
    d, ok = bsolve(jac, tuple(-v for v in r))
    return _cap(solver, d), ok


class _State(NamedTuple):
    """Where one problem's iteration stands: scaled iterate, its residual, steps, status.
    ``status == MAX_STEPS`` with ``iterations < max_steps`` means "still iterating"."""

    xi: tuple
    r: tuple
    iterations: Array
    status: Array


def _pending(solver: Newton, state: _State) -> Array:
    return (state.status == Status.MAX_STEPS) & (state.iterations < solver.max_steps)


def _fast_phase(fn, solver: Newton, pattern, x0, inputs) -> _State:
    """The start and the unrolled fast steps (``Newton.fast_steps``) of one problem."""
    ops = _ops(fn, pattern, inputs)
    tol = solver.tolerance(x0.dtype)
    xi0 = tuple(v / s for v, s in zip(split(x0), ops.xs, strict=True))
    fast_steps = min(solver.fast_steps_for(x0.dtype), solver.max_steps)
    if fast_steps > 0:
        r0, jac0 = ops.phi_and_jac(xi0)
    else:
        # Without fast steps the start's Jacobian is never used. XLA would drop it, but it
        # would still be traced and lowered on every run, also when the compilation cache
        # holds the executable (a quarter of bargaining's program).
        r0 = ops.phi(xi0)
    finite0 = _finite(r0) & _finite(xi0)
    it0 = jnp.int32(0)
    # Fast phase: unrolled full Newton steps, each kept only if it decreases the merit
    # function by the Armijo factor at t = 1 (Newton slope is -2 * merit).
    for step in range(fast_steps):
        active = finite0 & ((_norm(r0) > tol) | (step == 0))
        d, ok = _newton_direction(solver, r0, jac0)
        trial = bwhere(ok, _add(xi0, d), xi0)
        r1, jac1 = ops.phi_and_jac(trial)
        slope = bdot(r0, bmatvec(jac0, d))
        accept = active & ok & (_merit(r1) <= _merit(r0) + solver.armijo * slope)
        xi0, r0, jac0 = bwhere(accept, (trial, r1, jac1), (xi0, r0, jac0))
        it0 = it0 + active.astype(jnp.int32)
    status0 = jnp.where(finite0, jnp.int32(Status.MAX_STEPS), jnp.int32(Status.NONFINITE))
    if fast_steps > 0:
        status0 = jnp.where(_norm(r0) <= tol, jnp.int32(Status.SUCCESS), status0)
    # else: at least one Newton step, even from a point already within the tolerance: the
    # step costs little and makes the answer as accurate as the arithmetic allows (a warm
    # start within 1000 eps in float32 can still be 1e-3 off in relative terms).
    return _State(xi0, r0, it0, status0)


def _global_phase(fn, solver: Newton, pattern, state: _State, inputs) -> _State:
    """The globalised iteration (Newton with Armijo backtracking, gradient fallback) of one
    problem, from ``state`` until it succeeds, fails or spends ``max_steps``."""
    ops = _ops(fn, pattern, inputs)
    dtype = state.r[0].dtype
    tol = solver.tolerance(dtype)
    xtol = solver.step_tolerance(dtype)
    loose = solver.step_residual_tolerance(dtype)
    sqrt_tol = tol**0.5

    def body(state):
        xi, r, it, status_in = state
        # Under vmap the loop runs until the last lane finishes; finished lanes must not keep
        # the batched line search backtracking (their Armijo test fails on round-off).
        active = status_in == Status.MAX_STEPS
        # The Jacobian is evaluated here, not carried from the previous trial point: the
        # last trial of the fast phase then needs only Phi (XLA drops its Jacobian), and the
        # loop state stays small.
        _, jac = ops.phi_and_jac(xi)
        grad = brmatvec(jac, r)  # gradient of the merit function
        d, ok = _newton_direction(solver, r, jac)
        # Fall back to steepest descent when the Newton system is singular or the Newton
        # direction is not a descent direction for the merit function.
        use_newton = ok & (bdot(grad, tuple(jnp.where(ok, v, 0.0) for v in d)) < 0)
        # The step test accepts a residual at the round-off floor of Phi: a point whose full
        # Newton step is negligible and whose residual is within
        # step_atol * max(1, max|J|) * (1 + max|xi|) (at most sqrt(atol)) -- the size of the
        # residual of a root rounded to a relative step_atol.
        jmax = jnp.maximum(1.0, bmax(tuple(jnp.abs(v) for row in jac for v in row)))
        floor = jnp.minimum(loose * jmax * (1.0 + _norm(xi)), sqrt_tol)
        at_root = (use_newton & (_norm(d) <= xtol * (1.0 + _norm(xi))) & (_norm(r) <= floor))
        d = bwhere(use_newton, d, _cap(solver, tuple(-g for g in grad)))
        m0 = _merit(r)
        slope = bdot(grad, d)

        def ls_cond(ls):
            t, r_trial, m_new, k = ls
            # Stop backtracking once the trial point meets the tolerance: near a solution the
            # Armijo test can fail on round-off alone (notably for the polishing step).
            # (Written as ~(norm <= tol): a NaN trial -- outside the domain -- never meets it.)
            return (active & (m_new > m0 + solver.armijo * t * slope)
                    & ~(_norm(r_trial) <= tol) & (k < solver.max_backtracks))

        def ls_body(ls):
            t, _, _, k = ls
            t = 0.5 * t
            r_new = ops.phi(_add(xi, d, t))
            return t, r_new, _merit(r_new), k + 1

        r1 = ops.phi(_add(xi, d))
        t, r_new, m_new, _ = jax.lax.while_loop(
            ls_cond, ls_body, (jnp.asarray(1.0, r1[0].dtype), r1, _merit(r1), 0)
        )
        # A zero direction (stationary point of the merit function) is no progress.
        accepted = (((m_new <= m0 + solver.armijo * t * slope) & (slope < 0))
                    | ((_norm(r_new) <= tol) & (m_new <= m0)))
        xi_new = bwhere(accepted, _add(xi, d, t), xi)
        r_new = bwhere(accepted, r_new, r)
        status = jnp.where(accepted, jnp.int32(Status.MAX_STEPS), jnp.int32(Status.STAGNATED))
        status = jnp.where((_norm(r_new) <= tol) | at_root, jnp.int32(Status.SUCCESS), status)
        return _State(xi_new, r_new, it + 1, status)

    return jax.lax.while_loop(functools.partial(_pending, solver), body, state)


def _finish(fn, solver: Newton, pattern, state: _State, inputs) -> Solution:
    """The :class:`Solution` of one problem from its final state."""
    _, lower, upper, _, _ = inputs
    ops = _ops(fn, pattern, inputs)
    xi, r, it, status = state
    tol = solver.tolerance(r[0].dtype)
    status = jnp.where(_finite(xi) & _finite(r), status, jnp.int32(Status.NONFINITE))
    # Fischer-Burmeister solutions sit within the tolerance of the box, possibly just outside
    # (-1e-9 for an investment of 0, say) or a denormal inside it. A component within the
    # tolerance of a bound (in scaled units, the accuracy of the solve) is reported exactly at
    # the bound, so boundary solutions come out as exact zeros, independent of how a batch
    # was compiled; the rest is clipped to the box. Only converged points are moved: a failed
    # solve reports the iterate that its residual describes (clipping it into the box would
    # make a point that the residual says nothing about look plausible).
    x_iter = join(tuple(v * s for v, s in zip(xi, ops.xs, strict=True)))
    x_box = jnp.clip(join(tuple(
        jnp.where(v - lo_i <= tol, lower_i, jnp.where(up_i - v <= tol, upper_i, v * s))
        for v, s, lo_i, up_i, lower_i, upper_i in zip(
            xi, ops.xs, ops.lo, ops.up, split(lower), split(upper), strict=True))), lower, upper)
    x = jnp.where(status == Status.SUCCESS, x_box, x_iter)
    return Solution(x, _norm(r), it, status)


def _newton_loop(fn, solver: Newton, pattern, x0, inputs) -> Solution:
    """Semismooth Newton on one problem: fast phase, globalised loop, finish."""
    state = _fast_phase(fn, solver, pattern, x0, inputs)
    state = _global_phase(fn, solver, pattern, state, inputs)
    return _finish(fn, solver, pattern, state, inputs)


#: Lanes of the buffer in which a batch's unfinished problems run the globalised loop (see
#: :func:`_batched_newton_loop`); ``None`` runs every lane of a batch in lockstep (the engine
#: before issue 14; kept for benchmarks, see :func:`lockstep`). A multiple of :data:`LANES`.
BUFFER = 64
#: Batches are padded so that their lanes, counted over every enclosing ``vmap`` too, are a
#: multiple of this many, so that XLA compiles the same vectorised code for every lane whatever
#: the batch width. A batch of 1 or 7 would otherwise compile to scalar or remainder code, which
#: LLVM contracts into fused multiply-adds differently from the vector loop (last bits differ;
#: with ``--xla_cpu_max_isa=AVX``, i.e. without FMA instructions, they do not).
LANES = 8


def _enclosing_lanes(leaves) -> int:
    """Lanes of the ``vmap``s enclosing the one being batched (the product of their sizes,
    over the axes that any of ``leaves`` is batched along; 1 at the top level).

    A nested solve (a vmap over 2 candidates inside a vmap over 1,024 points) already runs
    2,048 lanes side by side; padding its own axis of 2 to 8 lanes would quadruple its work
    (45% of ``defender_attacker``'s time) for nothing. Reads JAX's batch tracers (the custom
    batching API does not expose the enclosing axes); where that fails, 1 (pad as at the top
    level: the same bits, more work)."""
    try:
        from jax._src.interpreters.batching import BatchTracer

        sizes = {}
        for leaf in leaves:
            v = leaf
            while isinstance(v, BatchTracer):
                if isinstance(v.batch_dim, int):
                    # One entry per enclosing vmap: ``main`` is its MainTrace (jax < 0.4.36)
                    # or its tag.
                    axis = getattr(v._trace, "main", None)
                    sizes[id(v._trace if axis is None else axis)] = v.val.shape[v.batch_dim]
                v = v.val
        return math.prod(sizes.values())
    except (ImportError, AttributeError, IndexError, TypeError):  # pragma: no cover
        return 1


#: Lanes that ``vmap``s invisible to :func:`_enclosing_lanes` add (see :func:`hidden_lanes`).
_hidden: list = []


@contextlib.contextmanager
def hidden_lanes(lanes: int):
    """Within this context (at trace time), solves count ``lanes`` more enclosing lanes than
    :func:`_enclosing_lanes` sees.

    The body of a ``lax.fori_loop`` / ``while_loop`` is traced on its own, without the batch
    tracers of the ``vmap``s around the loop: a ``vmap`` over 2 in the body of a loop that runs
    inside ``vmap``s over ``m`` lanes looks like a top-level batch of 2 and would be padded to
    8 lanes (4x the work) although it runs ``2 m`` lanes side by side. A caller that knows
    ``m`` (or a factor of it: the lanes are padded only to what the known factor leaves
    missing) says so here, inside the loop body. Only the factor matters, so the padding, and
    the bits, do not depend on the width of a batch."""
    _hidden.append(int(lanes))
    try:
        yield
    finally:
        _hidden.pop()


@contextlib.contextmanager
def lockstep():
    """Within this context, solves *traced* under ``vmap`` run every lane in lockstep until
    the slowest finishes (no buffer): the engine's batched behaviour before issue 14, for
    benchmarks that measure the difference in one process. Results are the same bits."""
    global BUFFER
    saved, BUFFER = BUFFER, None
    try:
        yield
    finally:
        BUFFER = saved


def _batched_newton_loop(fn, solver: Newton, pattern, axis_size, in_batched, x0, inputs):
    """``vmap`` rule of the solve: the batch's cost follows its hard problems, not its width.

    A vmapped ``while_loop`` runs every lane until the slowest lane finishes, so one hard
    problem makes a whole batch pay for its iterations. Here every lane takes the cheap fixed
    phase (start and unrolled fast steps) together; then the lanes still iterating are listed
    once, and taken :data:`BUFFER` at a time into a buffer, which runs the globalised loop until
    all of its problems are done and is scattered back. A
    lane's arithmetic is the same as in a lockstep batch or an unbatched solve (each phase is
    the per-problem function, vmapped), and the batch is padded so that its lanes times those
    of the enclosing vmaps are a multiple of :data:`LANES` (:func:`_enclosing_lanes`, and
    :func:`hidden_lanes` for those a loop body cannot see), so that
    every lane runs the same vectorised code: results are the same bits whatever the batch
    width.
    """
    # Work on the flat leaves: unbatched ones (a model's tables, shared bounds) stay unbatched
    # (vmap in_axes None) instead of being copied to every lane.
    leaves, tree = jax.tree_util.tree_flatten((x0, inputs))
    batched = jax.tree_util.tree_leaves(tuple(in_batched))
    # Pad to a multiple of the lanes this axis must add so that, with the enclosing vmaps'
    # lanes, every vector is full (8 at the top level; none inside a vmap over a multiple of 8).
    step = LANES // math.gcd(_enclosing_lanes(leaves) * math.prod(_hidden), LANES)
    width = -(-axis_size // step) * step
    # Padding lanes repeat the last problem; they are never iterated and are sliced off.
    leaves = [jnp.concatenate([v, jnp.repeat(v[-1:], width - axis_size, axis=0)])
              if b and width != axis_size else v for v, b in zip(leaves, batched, strict=True)]
    axes = [0 if b else None for b in batched]

    def lanes(phase, size):
        """``phase`` vmapped over ``size`` lanes: ``(state, *leaves) -> ...``, where a
        ``state`` of None means the phase starts from ``x0`` (the fast phase)."""
        def one(state, *flat):
            x0, inputs = jax.tree_util.tree_unflatten(tree, flat)
            return phase(fn, solver, pattern, x0 if state is None else state, inputs)

        return jax.vmap(one, in_axes=(0, *axes), axis_size=size)

    state = lanes(_fast_phase, width)(None, *leaves)
    glob = lanes(_global_phase, width)
    real = jnp.arange(width) < axis_size
    buffer = None if BUFFER is None else min(BUFFER, width)
    if buffer is None:
        state = glob(state, *leaves)
    else:
        # The lanes still iterating, listed once, in lane order (filler: `width`, out of
        # range). A buffer's problems all finish before the next buffer is taken (the
        # globalised loop runs until every lane of the buffer is done), so each listed lane
        # is taken once: the loop costs O(width) once plus O(buffer) per buffer, instead of
        # a search over the whole width per buffer (quadratic in the width when most lanes
        # need the globalised loop, as for ``bakshi_kleindorfer.first_best``).
        pending = _pending(solver, state) & real
        slots = -(-width // buffer) * buffer
        order = jnp.nonzero(pending, size=slots, fill_value=width)[0]
        count = jnp.sum(pending.astype(jnp.int32))

        def cond(carry):
            return carry[0] * buffer < count

        def body(carry):
            k, state = carry
            idx = jax.lax.dynamic_slice(order, (k * buffer,), (buffer,))
            take = jnp.minimum(idx, width - 1)
            sub = jax.tree_util.tree_map(lambda v: v[take], state)
            sub_leaves = [v[take] if b else v for v, b in zip(leaves, batched, strict=True)]
            # Filler slots hold a copy of a real lane marked finished: they do not iterate and
            # are dropped when the buffer is scattered back.
            sub = sub._replace(status=jnp.where(idx < width, sub.status,
                                                jnp.int32(Status.SUCCESS)))
            sub = lanes(_global_phase, buffer)(sub, *sub_leaves)
            return k + 1, jax.tree_util.tree_map(
                lambda v, s: v.at[idx].set(s, mode="drop"), state, sub)

        _, state = jax.lax.while_loop(cond, body, (jnp.int32(0), state))
    sol = lanes(_finish, width)(state, *leaves)
    sol = jax.tree_util.tree_map(lambda v: v[:axis_size], sol)
    return sol, jax.tree_util.tree_map(lambda _: True, sol)


def _solve_impl(fn, solver, pattern, x0, inputs):
    x0 = jax.lax.stop_gradient(x0)

    @jax.custom_batching.custom_vmap
    def solve(x0, inputs):
        return _newton_loop(fn, solver, pattern, x0, inputs)

    solve.def_vmap(functools.partial(_batched_newton_loop, fn, solver, pattern))
    return solve(x0, inputs)


_solve = jax.custom_jvp(_solve_impl, nondiff_argnums=(0, 1, 2))


@_solve.defjvp
def _solve_jvp(fn, solver, pattern, primals, tangents):
    x0, inputs = primals
    _, dinputs = tangents
    # Calling _solve (not _newton_loop) keeps higher-order derivatives on the implicit path.
    sol = _solve(fn, solver, pattern, x0, inputs)
    args, lower, upper, x_scale, f_scale = inputs
    xi = sol.value / x_scale

    def phi_of_inputs(inp):
        a, lo, up, xs, fs = inp
        return _scaled_residual(fn, pattern, xi, a, lo, up, xs, fs)

    def phi_of_xi(v):
        return _scaled_residual(fn, pattern, v, args, lower, upper, x_scale, f_scale)

    # The scales are solver settings, not model parameters: the solution does not depend on them.
    dinputs = (dinputs[0], dinputs[1], dinputs[2], jnp.zeros_like(x_scale), jnp.zeros_like(f_scale))
    _, dphi = jax.jvp(phi_of_inputs, (inputs,), (dinputs,))
    _, jac = jacobian_columns(phi_of_xi, xi)
    # NaN where the scaled Jacobian is singular or ill-conditioned beyond
    # _linalg.derivative_tolerance, and where the solve did not converge: the implicit
    # function theorem says nothing about a point that is not a solution.
    dxi = linear_solve(jac, -dphi)
    # (A factor, not a where(): the tangent map must stay linear so that reverse mode
    # transposes the NaN too.)
    dvalue = dxi * jnp.where(sol.status == Status.SUCCESS, x_scale, jnp.nan)
    zeros = jax.tree_util.tree_map(
        lambda v: np.zeros(v.shape, jax.dtypes.float0)
        if not jnp.issubdtype(v.dtype, jnp.inexact)
        else jnp.zeros_like(v),
        sol,
    )
    return sol, zeros._replace(value=dvalue)
