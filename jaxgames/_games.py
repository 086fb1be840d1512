"""Game-theoretic building blocks, each reduced to one mixed complementarity problem.

* :func:`nash_equilibrium` -- N players, each minimising its own cost over the variables it
  owns, with box bounds, and optionally shared constraints ``g(x) >= 0`` coupling the players
  (variational equilibrium: one multiplier per shared constraint, common to all players;
  Rosen 1965, Facchinei & Kanzow 2007).
* :func:`bayesian_nash` -- Bayesian Nash equilibrium over finite, independent type sets, in the
  Harsanyi agent form: each (player, type) pair is an agent minimising its interim expected cost.
* :func:`stackelberg` -- leader-follower: the follower's best response is itself an MCP solve,
  differentiated implicitly inside the leader's first-order condition; multi-start over leader
  candidates for non-convex leader problems.
* :func:`nash_bargaining` -- generalised (asymmetric) Nash bargaining: maximise
  ``sum_i w_i log(d_i - c_i(x))`` subject to constraints, via its KKT system.

First-order conditions come from autodiff of the cost functions; nothing is hand-derived. All
functions are pure and unbatched: ``vmap`` them over problems yourself.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgames._linalg import jacobian_columns
from jaxgames._solver import Newton, Solution, Status, solve_mcp

Array = jax.Array
PyTree = Any


class Equilibrium(NamedTuple):
    """Solution of an equilibrium problem: strategies, multipliers and the solver diagnostics."""

    x: Array  # (n,) strategies, in the order of the players' variables
    multipliers: Array  # (m,) multipliers of the constraints (empty if none)
    residual: Array
    iterations: Array
    status: Array

    @property
    def converged(self) -> Array:
        return self.status == Status.SUCCESS


def _from_solution(sol: Solution, n: int) -> Equilibrium:
    return Equilibrium(sol.value[:n], sol.value[n:], sol.residual, sol.iterations, sol.status)


def _owners(players: Sequence[Sequence[int]], n: int) -> tuple[int, ...]:
    owner = [-1] * n
    for i, idx in enumerate(players):
        for j in idx:
            if owner[j] != -1:
                raise ValueError(f"variable {j} is owned by players {owner[j]} and {i}")
            owner[j] = i
    if -1 in owner:
        raise ValueError(f"variables {[j for j, o in enumerate(owner) if o == -1]} have no owner")
    return tuple(owner)


def _extend(bound, default, n: int, fill, m: int, dtype):
    """Bounds of ``x`` followed by ``m`` multiplier bounds; NumPy when concrete, so that the
    solver can specialise the complementarity formula per component at trace time."""
    if isinstance(bound, jax.core.Tracer):
        head = jnp.broadcast_to(jnp.asarray(bound, dtype), (n,))
        return jnp.concatenate([head, jnp.full((m,), fill, dtype)])
    head = np.broadcast_to(np.asarray(default if bound is None else bound, dtype=float), (n,))
    return np.concatenate([head, np.full((m,), fill)])


def nash_equilibrium(
    costs: Callable[[Array, PyTree], Array],
    players: Sequence[Sequence[int]],
    x0: Array,
    args: PyTree = None,
    lower: Array | None = None,
    upper: Array | None = None,
    *,
    shared_constraints: Callable[[Array, PyTree], Array] | None = None,
    n_shared: int = 0,
    x_scale: Array | None = None,
    f_scale: Array | None = None,
    multiplier_scale: Array | float = 1.0,
    solver: Newton = Newton(),
) -> Equilibrium:
    """Pure-strategy Nash equilibrium with box bounds and optional shared constraints.

    Player ``i`` chooses ``x[players[i]]`` to minimise ``costs(x, args)[i]`` subject to
    ``lower <= x <= upper`` and, if given, the shared constraints ``g(x, args) >= 0``. The
    equilibrium conditions are, for each variable ``j`` owned by player ``i``,

        lower_j <= x_j <= upper_j  perp  d costs_i / d x_j - sum_k mu_k d g_k / d x_j

    and ``0 <= mu  perp  g(x) >= 0`` with one multiplier vector ``mu`` common to all players (the
    variational equilibrium of the generalised Nash game). Under convex costs these are the
    players' KKT conditions, so a solution certifies "no profitable unilateral deviation".

    Args:
        costs: ``(x, args) -> (N,)`` array of the players' costs (to be minimised).
        players: ``players[i]`` lists the indices of ``x`` player ``i`` controls.
        x0: starting point ``(n,)``.
        shared_constraints: ``(x, args) -> (n_shared,)`` with ``g >= 0`` feasible.
        n_shared: number of shared constraints.
        multiplier_scale: typical size of the multipliers (for scaling).
    """
    x0 = jnp.asarray(x0)
    n = x0.shape[0]
    owner = _owners(players, n)

    def own_gradient(x, a):
        # d costs[owner[j]] / d x_j, one jvp per variable (see _linalg.jacobian_columns).
        _, jac = jacobian_columns(lambda v: costs(v, a), x)  # (N, n)
        return jnp.stack([jac[o, j] for j, o in enumerate(owner)])

    return _solve_stationarity(
        own_gradient, x0, args, lower, upper, shared_constraints, n_shared,
        x_scale, f_scale, multiplier_scale, solver,
    )


def _solve_stationarity(own_gradient, x0, args, lower, upper, shared_constraints, n_shared,
                        x_scale, f_scale, multiplier_scale, solver) -> Equilibrium:
    """Solve ``lower <= x <= upper  perp  own_gradient(x) - J_g(x)^T mu`` and
    ``0 <= mu  perp  g(x) >= 0`` (no ``mu`` without shared constraints) as one MCP."""
    n = x0.shape[0]

    def foc(z, a):
        x, mu = z[:n], z[n:]
        grad_own = own_gradient(x, a)
        if shared_constraints is None:
            return grad_own
        g, g_vjp = jax.vjp(lambda v: shared_constraints(v, a), x)
        return jnp.concatenate([grad_own - g_vjp(mu)[0], g])

    if shared_constraints is None:
        sol = solve_mcp(
            foc, x0, args, lower, upper, x_scale=x_scale, f_scale=f_scale, solver=solver
        )
        return _from_solution(sol, n)

    dtype = x0.dtype
    m = n_shared
    z0 = jnp.concatenate([x0, jnp.zeros((m,), dtype)])
    lo = _extend(lower, -np.inf, n, 0.0, m, dtype)
    up = _extend(upper, np.inf, n, np.inf, m, dtype)
    xs = jnp.concatenate(
        [jnp.broadcast_to(jnp.asarray(1.0 if x_scale is None else x_scale, dtype), (n,)),
         jnp.broadcast_to(jnp.asarray(multiplier_scale, dtype), (m,))]
    )
    fs = None
    if f_scale is not None:
        fs = jnp.concatenate(
            [jnp.broadcast_to(jnp.asarray(f_scale, dtype), (n,)), jnp.ones((m,), dtype)]
        )
    sol = solve_mcp(foc, z0, args, lo, up, x_scale=xs, f_scale=fs, solver=solver)
    return _from_solution(sol, n)


def bayesian_nash(
    costs: Callable[[tuple[Array, ...], tuple[int, ...], PyTree], Array],
    n_types: Sequence[int],
    action_dims: Sequence[int],
    prior: Callable[[PyTree], Sequence[Array]],
    x0: Array,
    args: PyTree = None,
    lower: Array | None = None,
    upper: Array | None = None,
    **kwargs,
) -> Equilibrium:
    """Bayesian Nash equilibrium of a game with finite, independent private types.

    Player ``i`` has ``n_types[i]`` types, drawn independently with probabilities
    ``prior(args)[i]``, and a type-contingent action of dimension ``action_dims[i]``. In the
    Harsanyi agent form each pair ``(i, tau_i)`` is an agent minimising its interim expected cost

        E_{tau_-i}[ costs(a(tau), tau, args)[i] ],   a(tau) = (a_1(tau_1), ..., a_N(tau_N)).

    The unknown vector stacks the agents' actions player by player, type by type:
    ``[a_1(0), a_1(1), ..., a_2(0), ...]``; ``x0``, ``lower``, ``upper`` use that layout.

    Args:
        costs: ``(actions, types, args) -> (N,)`` ex-post costs for the type profile ``types``
            (a tuple of Python ints) and the profile's actions ``actions[i]`` (arrays).
        prior: ``args -> [probabilities of player i's types]``, differentiable in ``args``.
        **kwargs: forwarded to :func:`nash_equilibrium` (scales, solver, shared constraints).
    """
    n_types = tuple(int(t) for t in n_types)
    action_dims = tuple(int(d) for d in action_dims)
    if len(n_types) != len(action_dims):
        raise ValueError("n_types and action_dims must have one entry per player")
    offsets, agents, start = [], [], 0
    for nt, d in zip(n_types, action_dims, strict=True):
        offsets.append(start)
        for tau in range(nt):
            agents.append(list(range(start + tau * d, start + (tau + 1) * d)))
        start += nt * d
    agent_index = [sum(n_types[:i]) for i in range(len(n_types))]
    profiles = list(itertools.product(*[range(nt) for nt in n_types]))

    def agent_costs(x, a):
        probs = prior(a)
        total = [jnp.zeros((), x.dtype) for _ in agents]
        for prof in profiles:
            actions = tuple(
                x[offsets[i] + tau * action_dims[i]: offsets[i] + (tau + 1) * action_dims[i]]
                for i, tau in enumerate(prof)
            )
            c = costs(actions, prof, a)
            for i, tau in enumerate(prof):
                # Interim expectation for agent (i, tau_i): weight by the others' type probs.
                w = 1.0
                for j, tau_j in enumerate(prof):
                    if j != i:
                        w = w * probs[j][tau_j]
                k = agent_index[i] + tau
                total[k] = total[k] + w * c[i]
        return jnp.stack(total)

    return nash_equilibrium(agent_costs, agents, x0, args, lower, upper, **kwargs)


class StackelbergEquilibrium(NamedTuple):
    """Leader-follower equilibrium with diagnostics of both levels."""

    leader: Array  # (n_leader,)
    follower: Array  # (n_follower,)
    leader_cost: Array
    residual: Array  # leader's complementarity residual
    iterations: Array
    status: Array  # worst of leader and follower status
    follower_status: Array

    @property
    def converged(self) -> Array:
        return self.status == Status.SUCCESS


def best_response(
    follower_cost: Callable[[Array, Array, PyTree], Array],
    x_leader: Array,
    y0: Array,
    args: PyTree = None,
    lower: Array | None = None,
    upper: Array | None = None,
    *,
    y_scale: Array | None = None,
    f_scale: Array | None = None,
    solver: Newton = Newton(),
) -> Solution:
    """Follower's best response ``argmin_y follower_cost(x_leader, y, args)`` over a box.

    Solved as the MCP of the follower's first-order condition; differentiable (implicitly) in
    ``x_leader`` and ``args``. The certificate is the FOC; for a non-convex follower cost check
    the optimum separately.
    """

    def foc(y, a):
        xl, inner = a
        return jax.grad(follower_cost, argnums=1)(xl, y, inner)

    return solve_mcp(
        foc, y0, (x_leader, args), lower, upper, x_scale=y_scale, f_scale=f_scale, solver=solver
    )


def stackelberg(
    leader_cost: Callable[[Array, Array, PyTree], Array],
    follower_cost: Callable[[Array, Array, PyTree], Array],
    leader_starts: Array,
    y0: Array,
    args: PyTree = None,
    leader_lower: Array | None = None,
    leader_upper: Array | None = None,
    follower_lower: Array | None = None,
    follower_upper: Array | None = None,
    *,
    leader_scale: Array | None = None,
    follower_scale: Array | None = None,
    leader_f_scale: Array | None = None,
    follower_f_scale: Array | None = None,
    solver: Newton = Newton(),
    follower_solver: Newton = Newton(),
) -> StackelbergEquilibrium:
    """Leader-follower (Stackelberg) equilibrium.

    The follower plays ``y*(x) = argmin_y follower_cost(x, y, args)`` (see :func:`best_response`);
    the leader minimises the reduced cost ``leader_cost(x, y*(x), args)`` over its box. The
    leader's first-order condition uses ``dy*/dx`` from the implicit function theorem, and its
    Newton Jacobian the second-order implicit derivatives.

    The reduced leader problem is generally non-convex, so the leader's problem is solved from
    every row of ``leader_starts`` (shape ``(k, n_leader)``; candidate generation is the
    caller's: a coarse grid, the corners, known kinks) and the converged candidate with the
    lowest leader cost is returned. ``y0`` starts every follower solve.

    Every follower solve inside the leader's iterations must succeed (the leader's
    first-order condition is NaN where it does not); ``status`` is the leader's status, or the
    follower's if the leader succeeded, and ``follower_status`` the follower's at the returned
    point.

    The certificate is first-order (a KKT point of the reduced leader problem): from a single
    start Newton can end at a local maximum or saddle of the leader's reduced cost and still
    report SUCCESS. Supply starts that cover the leader's box (and known kinks); the best
    converged candidate wins.
    """
    leader_starts = jnp.atleast_2d(jnp.asarray(leader_starts))

    def follower(x, a):
        return best_response(
            follower_cost, x, y0, a, follower_lower, follower_upper,
            y_scale=follower_scale, f_scale=follower_f_scale, solver=follower_solver,
        )

    def reduced(x, a):
        fsol = follower(x, a)
        return leader_cost(x, fsol.value, a), fsol.status

    def leader_foc(x, a):
        # The reduced cost exists only where the follower's solve succeeded: elsewhere the
        # leader's first-order condition is NaN, which the line search rejects as a trial
        # point and which makes a start with a failed follower NONFINITE -- a follower's
        # failure during the leader's iterations is never silently used.
        grad, fstatus = jax.grad(reduced, has_aux=True)(x, a)
        return jnp.where(fstatus == Status.SUCCESS, grad, jnp.nan)

    def from_start(x_start):
        sol = solve_mcp(
            leader_foc, x_start, args, leader_lower, leader_upper,
            x_scale=leader_scale, f_scale=leader_f_scale, solver=solver,
        )
        fsol = follower(sol.value, args)
        cost = leader_cost(sol.value, fsol.value, args)
        return sol, fsol, cost

    sols, fsols, costs = jax.vmap(from_start)(leader_starts)
    ok = (sols.status == Status.SUCCESS) & (fsols.status == Status.SUCCESS) & jnp.isfinite(costs)
    best = jnp.argmin(jnp.where(ok, costs, jnp.inf))
    pick = lambda t: jax.tree_util.tree_map(lambda v: v[best], t)  # noqa: E731
    sol, fsol, cost = pick(sols), pick(fsols), costs[best]
    status = jnp.where(sol.status != Status.SUCCESS, sol.status, fsol.status)
    return StackelbergEquilibrium(
        sol.value, fsol.value, cost, sol.residual, jnp.sum(sols.iterations), status, fsol.status
    )


def nash_bargaining(
    costs: Callable[[Array, PyTree], Array],
    disagreement: Callable[[PyTree], Array],
    weights: Callable[[PyTree], Array],
    x0: Array,
    args: PyTree = None,
    lower: Array | None = None,
    upper: Array | None = None,
    *,
    constraints: Callable[[Array, PyTree], Array] | None = None,
    n_constraints: int = 0,
    x_scale: Array | None = None,
    f_scale: Array | float | None = None,
    multiplier_scale: Array | float = 1.0,
    solver: Newton = Newton(),
) -> Equilibrium:
    """Generalised Nash bargaining solution (Harsanyi-Selten / asymmetric Nash product).

    Maximises the generalised Nash product ``sum_i w_i log(d_i - c_i(x))`` over the agreement
    ``x`` subject to ``lower <= x <= upper`` and ``constraints(x) >= 0``, where ``c_i`` are the
    players' costs under the agreement and ``d_i`` their disagreement (threat-point) costs.
    Individual rationality ``c_i < d_i`` is the domain of the logarithm; outside it the
    first-order map is NaN, so the line search keeps iterates inside and ``x0`` must be inside
    (strictly individually rational). Solved as the KKT system

        lower <= x <= upper  perp  -grad GNP(x) - J_g(x)^T lam,     0 <= lam  perp  g(x) >= 0.

    A KKT point of a non-concave program is a local optimum candidate: start near the expected
    solution and certify the result (the models compare with closed forms and grid searches).
    """
    x0 = jnp.asarray(x0)

    def neg_gnp(x, a):
        surplus = disagreement(a) - costs(x, a)
        w = weights(a)
        # A zero weight drops its player; the inner where keeps log() off invalid values so
        # that the gradient of the masked branch is not NaN.
        safe = jnp.where(w > 0, surplus, 1.0)
        return -jnp.sum(jnp.where(w > 0, w * jnp.log(safe), 0.0))

    def team_cost(x, a):
        # The gradient -w / (d - c) stays finite where a surplus is negative, so Newton could
        # converge to a stationary point outside individual rationality. Outside the domain
        # of the logarithm the cost is NaN, which the line search rejects: iterates started
        # inside stay inside, and no solution can lie outside.
        surplus = disagreement(a) - costs(x, a)
        inside = jnp.all(jnp.where(weights(a) > 0, surplus > 0, True))
        # guard * sum(x) adds 0 inside and NaN outside, to the value and to every derivative
        # (a where() on the value alone would give a zero gradient outside: a false KKT point).
        guard = jnp.where(inside, 0.0, jnp.nan)
        return neg_gnp(x, a) + guard * jnp.sum(x)

    # One player (the team) owns every variable, so its stationarity condition is the
    # gradient of one scalar: one reverse-mode pass instead of one forward pass per variable
    # (nash_equilibrium's general per-player rule). The Newton Jacobian differentiates this
    # map once more per unknown, so for n variables and m unknowns the program holds m
    # forward-over-reverse passes rather than n * m second-order forward passes: for the
    # HSN-SCD problem of bakshi_kleindorfer (n = 6, m = 8) its lowered program went from
    # 3.9 MB to 1.1 MB of HLO text.
    return _solve_stationarity(
        jax.grad(team_cost), x0, args, lower, upper, constraints, n_constraints,
        x_scale, f_scale, multiplier_scale, solver,
    )
