r"""Security investment for supply-chain resilience: Bakshi & Kleindorfer (2009), POM 18(6).

A retailer ``r`` and a supplier of private type ``tau`` in {s (safe), u (unsafe)},
``P(tau = s) = p``, invest ``y >= 0`` in security. Disruption probabilities are exponential
(source eq. 1): ``P_ss(y) = theta_ss e^{-alpha_ss y}``, ``P_su(y) = theta_su e^{-alpha_su y}``,
``P_r(y) = theta_r e^{-alpha_r y}``, and the supply chain is disrupted with probability
``P_Jtau = 1 - (1 - P_stau)(1 - P_r)``, causing a loss ``D_J``.

* :func:`first_best` -- eqs. (3)-(5): a welfare maximiser minimises
  ``W_tau = y_stau + y_rtau + P_Jtau D_J`` for each type; ``W = p W_s + (1 - p) W_u``.
* :func:`noncooperative` -- eqs. (6)-(8): the Bayesian game in which the supplier bears a share
  ``f`` of the loss: ``t_stau = y_stau + f P_Jtau D_J``,
  ``t_r = y_r + (1 - f)[p P_Js + (1 - p) P_Ju] D_J``. Its equilibrium is the complementarity
  form of FOCs (9)-(10), ``0 <= y  perp  dt/dy >= 0``.
* :func:`bargaining` -- section 3.3 and Proposition 4: the HSN-SCD contract maximising the
  generalised Nash product ``p log(t_ss - C_ss) + (1 - p) log(t_su - C_su) + log(t_r - C_r)``
  subject to the incentive-compatibility (IC s, IC u), individual-rationality and feasibility
  constraints. Interior solution: First Best investments and equal surplus, (A12)-(A15).
* :func:`robust_bargaining` -- Proposition 5: the same with ``f_ss = f_su = 0``.
* :func:`noncooperative_and_bargaining` -- both at one point from one program (Figure 3).

Every equilibrium is computed by the jaxgames engine (semismooth Newton on the FOCs, derived by
autodiff from the cost functions above). The source's interior closed forms (section 3.1,
section 3.2.1, (A13)-(A15)) are exported as ``*_closed_form`` for tests and benchmarks only.

Decisions where the source is silent (documented in the README as well):

* **Domain.** ``f, theta_*, p`` in [0, 1], ``alpha_*`` > 0, ``D_J`` >= 0. Outside, a concrete
  input raises; a traced one is flagged ``status = INVALID_INPUT``. Inside the domain but outside
  assumption set (2) (``alpha_su <= alpha_ss``, ``theta_su > theta_ss``,
  ``alpha_su theta_su > alpha_ss theta_ss``, ``theta_su + theta_r < 1``, ``0 < f < 1``) the
  games are still solved and ``assumptions_hold`` is False.
* **Reduced bargaining problem.** Given investments ``y``, the transfers ``gamma`` map one-to-one
  to the costs ``C_ss, C_su``; ``C_r = W(y) - p C_ss - (1 - p) C_su`` follows (transfers are
  internal). The shares ``f`` enter only the IC constraints, which read
  ``C_su - C_ss >= f_su dP(y_su, y_ru) D_J`` (IC s) and ``C_su - C_ss <= f_ss dP(y_ss, y_rs) D_J``
  (IC u), with ``dP(y1, y2) = P_Ju(y1, y2) - P_Js(y1, y2)``. So the GNP is maximised over
  ``(y, C_ss, C_su)`` with the IC constraints at their most permissive ``f`` in [0, 1]; a
  contract ``(f, gamma)`` is then constructed from the feasible ``f`` intervals (midpoints).
* **Reported bargaining outcome.** If a feasible contract realises the interior solution
  (First Best + equal surplus), that is the outcome (Proposition 4); otherwise the numerical
  GNP optimum is (the boundary case ``f_ss = 1`` with under-investment), flagged
  ``interior = False``. The numerical GNP optimum is always returned too (``gnp_*``), as an
  independent check of (A13)-(A15).
"""

from __future__ import annotations

import dataclasses
import types
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgames._batching import tiled
from jaxgames._games import bayesian_nash, nash_bargaining, nash_equilibrium
from jaxgames._solver import Newton, Status
from jaxgames._validation import (
    Interval,
    as_point,
    check_domain,
    first_failure,
    flag_invalid,
)

Array = jax.Array

MODEL = "bakshi_kleindorfer"


class Params(NamedTuple):
    """Parameters of the model (source notation). Every leaf may be an array (a batch)."""

    f: Array | float  # supplier's share of the loss in the non-cooperative game
    theta_ss: Array | float  # base disruption probability, safe supplier
    theta_su: Array | float  # base disruption probability, unsafe supplier
    theta_r: Array | float  # base disruption probability, retailer
    alpha_ss: Array | float  # investment effectiveness (1/$), safe supplier
    alpha_su: Array | float  # investment effectiveness (1/$), unsafe supplier
    alpha_r: Array | float  # investment effectiveness (1/$), retailer
    D_J: Array | float  # supply-chain loss from a disruption ($)
    p: Array | float  # prior probability that the supplier is safe


#: Allowed values of each parameter (input validation, not the assumption set (2)).
DOMAIN = {
    "f": Interval(0.0, 1.0),
    "theta_ss": Interval(0.0, 1.0),
    "theta_su": Interval(0.0, 1.0),
    "theta_r": Interval(0.0, 1.0),
    "alpha_ss": Interval(0.0, np.inf, lo_open=True),
    "alpha_su": Interval(0.0, np.inf, lo_open=True),
    "alpha_r": Interval(0.0, np.inf, lo_open=True),
    "D_J": Interval(0.0, np.inf),
    "p": Interval(0.0, 1.0),
}

#: Units and descriptions of parameters and outputs (used to label datasets).
UNITS = {
    "f": "1", "theta_ss": "1", "theta_su": "1", "theta_r": "1",
    "alpha_ss": "1/$", "alpha_su": "1/$", "alpha_r": "1/$", "D_J": "$", "p": "1",
}


def _fig3(f, theta_ss, theta_su, theta_r, alpha_ss, alpha_su, alpha_r, D_J):
    return Params(f, theta_ss, theta_su, theta_r, alpha_ss, alpha_su, alpha_r, D_J, 0.3)


#: The five examples of the source's Figure 3 (inputs block).
FIGURE3: tuple[Params, ...] = (
    _fig3(0.2, 0.027, 0.04, 0.03, 0.00003, 0.000024, 0.00004, 10_000_000.0),
    _fig3(0.8, 0.027, 0.04, 0.03, 0.00003, 0.000024, 0.00004, 10_000_000.0),
    _fig3(0.2, 0.005, 0.01, 0.002, 0.00003, 0.000024, 0.00004, 100_000_000.0),
    _fig3(0.8, 0.005, 0.01, 0.002, 0.00003, 0.000024, 0.00004, 100_000_000.0),
    _fig3(0.9, 0.0001, 0.001, 0.005, 0.0003, 0.00015, 0.00003, 1_000_000_000.0),
)

#: Solver settings used by the model functions. The step cap (10 e-folds of a disruption
#: probability per iteration) keeps a far first step from overflowing the exponentials. The
#: first Newton steps run as unrolled code (``fast_steps``) that XLA fuses with the warm start;
#: the globalised loop then runs only while some lane of a batch needs it. From the warm start
#: one step meets float32's tolerance at every benchmark point, while float64's needs a second
#: step at 29% of them, so: one fast step in float32, two in float64 (measured under vmap, one
#: more or one fewer was slower; benchmarks/README.md).
SOLVER = Newton(max_steps=60, max_step=10.0, fast_steps=(("float32", 1), ("float64", 2)))


# ----------------------------------------------------------------------------- primitives


def disruption_probability(y, theta, alpha, xp=jnp):
    """Marginal disruption probability ``theta e^{-alpha y}`` (source section 3, eq. 1)."""
    return theta * xp.exp(-alpha * y)


def _union(p_a, p_b):
    """``1 - (1 - p_a)(1 - p_b)`` as ``p_a + p_b - p_a p_b`` (no cancellation for small p)."""
    return p_a + p_b - p_a * p_b


def joint_probability(y_s, y_r, theta_s, alpha_s, theta_r, alpha_r, xp=jnp):
    """``P_J = 1 - (1 - P_s)(1 - P_r)`` (eq. 1): the chain is disrupted if either site is.

    Evaluated as ``P_s + P_r - P_s P_r``, which has no cancellation for small probabilities.
    """
    return _union(disruption_probability(y_s, theta_s, alpha_s, xp),
                  disruption_probability(y_r, theta_r, alpha_r, xp))


def _supplier(params: Params, tau: int):
    return (params.theta_ss, params.alpha_ss) if tau == 0 else (params.theta_su, params.alpha_su)


def welfare_cost(y_s, y_r, params: Params, tau: int):
    """``W_tau = y_stau + y_rtau + P_Jtau D_J`` (eqs. 3-4)."""
    theta, alpha = _supplier(params, tau)
    pj = joint_probability(y_s, y_r, theta, alpha, params.theta_r, params.alpha_r)
    return y_s + y_r + pj * params.D_J


def assumptions_hold(params: Params, xp=jnp):
    """Assumption set (2) of the source plus ``f`` in (0, 1) and ``p`` in [0, 1]."""
    pr = params
    return (
        (pr.alpha_su <= pr.alpha_ss)
        & (pr.theta_su > pr.theta_ss)
        & (pr.alpha_su * pr.theta_su > pr.alpha_ss * pr.theta_ss)
        & (pr.theta_su + pr.theta_r < 1.0)
        & (pr.f > 0.0)
        & (pr.f < 1.0)
        & (pr.p >= 0.0)
        & (pr.p <= 1.0)
    )


def validate(params: Params) -> None:
    """Raise ``ValueError`` naming the parameter if a concrete input is outside its domain."""
    if not isinstance(params, Params):
        raise TypeError(f"{MODEL}: expected a Params, got {type(params).__name__}")
    check_domain(params, DOMAIN, MODEL)


def _dtype(params: Params):
    return jnp.result_type(*[jnp.asarray(v) for v in params], float)


def _prepare(params: Params) -> tuple[Params, Array]:
    validate(params)
    return as_point(params, DOMAIN, MODEL)


def _warm_start(theta, alpha, share):
    """Investment that sets one player's FOC to zero if the partner's site were perfectly safe.

    ``1 = alpha theta e^{-alpha y} share`` gives ``y = log(alpha theta share) / alpha``; clipped
    at 0. It is only a starting point for Newton, typically within a few percent.
    """
    z = alpha * theta * share
    return jnp.where(z > 1.0, jnp.log(jnp.where(z > 1.0, z, 1.0)) / alpha, 0.0)


# ----------------------------------------------------------------------------- First Best


class FirstBest(NamedTuple):
    """First Best (welfare-maximising) investments and costs, eqs. (3)-(5)."""

    y_ss: Array
    y_su: Array
    y_rs: Array
    y_ru: Array
    W_s: Array
    W_u: Array
    W: Array
    converged: Array
    residual: Array
    iterations: Array
    status: Array
    assumptions_hold: Array


@tiled
def first_best(params: Params, *, solver: Newton = SOLVER, x0: Array | None = None) -> FirstBest:
    """Welfare-maximising investments: ``min W_tau`` over ``y_stau, y_rtau >= 0`` (eqs. 3-5).

    Solved as one two-"player" team problem (the planner for each type) by the engine; the
    closed form of section 3.1 is :func:`first_best_closed_form`.
    """
    params, valid = _prepare(params)
    pr = params

    def costs(x, a):
        return jnp.stack([welfare_cost(x[0], x[2], a, 0), welfare_cost(x[1], x[3], a, 1)])

    if x0 is None:
        x0 = jnp.stack([
            _warm_start(pr.theta_ss, pr.alpha_ss, pr.D_J),
            _warm_start(pr.theta_su, pr.alpha_su, pr.D_J),
            _warm_start(pr.theta_r, pr.alpha_r, pr.D_J),
            _warm_start(pr.theta_r, pr.alpha_r, pr.D_J),
        ])
    scale = 1.0 / jnp.stack([pr.alpha_ss, pr.alpha_su, pr.alpha_r, pr.alpha_r])
    eq = nash_equilibrium(
        costs, [[0, 2], [1, 3]], x0, params, lower=0.0, x_scale=scale, solver=solver
    )
    y = eq.x
    w_s = welfare_cost(y[0], y[2], pr, 0)
    w_u = welfare_cost(y[1], y[3], pr, 1)
    status = flag_invalid(eq.status, valid)
    return FirstBest(
        y[0], y[1], y[2], y[3], w_s, w_u, pr.p * w_s + (1 - pr.p) * w_u,
        status == Status.SUCCESS, eq.residual, eq.iterations, status, assumptions_hold(pr),
    )


# ----------------------------------------------------------------------------- non-cooperative


class Noncooperative(NamedTuple):
    """Pure-strategy Bayesian Nash equilibrium of the non-cooperative game, eqs. (6)-(10)."""

    y_ss: Array
    y_su: Array
    y_r: Array
    P_ss: Array
    P_su: Array
    P_r: Array
    t_ss: Array
    t_su: Array
    t_r: Array
    converged: Array
    residual: Array
    iterations: Array
    status: Array
    assumptions_hold: Array


def _nc_costs(actions, types_, params: Params):
    """Ex-post costs (supplier, retailer) for supplier type ``types_[0]`` (eqs. 6-8)."""
    (y_s,), (y_r,) = actions
    theta, alpha = _supplier(params, types_[0])
    loss = joint_probability(y_s, y_r, theta, alpha, params.theta_r, params.alpha_r) * params.D_J
    return jnp.stack([y_s + params.f * loss, y_r + (1.0 - params.f) * loss])


def _type_prior(params: Params):
    return [jnp.stack([params.p, 1.0 - params.p]), jnp.ones((1,), jnp.result_type(params.p))]


@tiled
def noncooperative(
    params: Params, *, solver: Newton = SOLVER, x0: Array | None = None
) -> Noncooperative:
    """Bayesian Nash equilibrium ``(y_ss, y_su, y_r)`` of the non-cooperative game.

    Unknowns ``y >= 0``; equilibrium = complementarity form of FOCs (9)-(10), derived by
    autodiff of the interim expected costs (6)-(8). Boundary equilibria (a player investing 0,
    e.g. when ``theta alpha f D_J (1 - P_r) < 1``) are solutions of the complementarity problem,
    not special cases. ``x0`` overrides the warm start (e.g. ``jnp.zeros(3)``).
    """
    params, valid = _prepare(params)
    pr = params
    if x0 is None:
        # One Gauss-Seidel sweep of decoupled best responses: suppliers as if the retailer
        # were safe, the retailer against those, the suppliers again against the retailer.
        # Each best response solves its own FOC (9)/(10) in one variable; the sweep is only a
        # starting point and typically saves one Newton iteration for the whole batch.
        y_ss0 = _warm_start(pr.theta_ss, pr.alpha_ss, pr.f * pr.D_J)
        y_su0 = _warm_start(pr.theta_su, pr.alpha_su, pr.f * pr.D_J)
        safe = pr.p * (1 - disruption_probability(y_ss0, pr.theta_ss, pr.alpha_ss)) + (
            1 - pr.p) * (1 - disruption_probability(y_su0, pr.theta_su, pr.alpha_su))
        y_r0 = _warm_start(pr.theta_r, pr.alpha_r, (1.0 - pr.f) * pr.D_J * safe)
        share = pr.f * pr.D_J * (1 - disruption_probability(y_r0, pr.theta_r, pr.alpha_r))
        x0 = jnp.stack([
            _warm_start(pr.theta_ss, pr.alpha_ss, share),
            _warm_start(pr.theta_su, pr.alpha_su, share),
            y_r0,
        ])
    scale = 1.0 / jnp.stack([pr.alpha_ss, pr.alpha_su, pr.alpha_r])
    eq = bayesian_nash(
        _nc_costs, (2, 1), (1, 1), _type_prior, x0, params, lower=0.0,
        x_scale=scale, solver=solver,
    )
    status = flag_invalid(eq.status, valid)
    return _noncooperative_result(pr, eq.x, eq.residual, eq.iterations, status)


def _noncooperative_result(pr: Params, y, residual, iterations, status, xp=jnp):
    y_ss, y_su, y_r = y[0], y[1], y[2]
    p_ss = disruption_probability(y_ss, pr.theta_ss, pr.alpha_ss, xp)
    p_su = disruption_probability(y_su, pr.theta_su, pr.alpha_su, xp)
    p_r = disruption_probability(y_r, pr.theta_r, pr.alpha_r, xp)
    pj_s, pj_u = _union(p_ss, p_r), _union(p_su, p_r)
    t_ss = y_ss + pr.f * pj_s * pr.D_J
    t_su = y_su + pr.f * pj_u * pr.D_J
    t_r = y_r + (1.0 - pr.f) * (pr.p * pj_s + (1.0 - pr.p) * pj_u) * pr.D_J
    return Noncooperative(
        y_ss, y_su, y_r, p_ss, p_su, p_r, t_ss, t_su, t_r,
        status == Status.SUCCESS, residual, iterations, status, assumptions_hold(pr, xp),
    )


# ----------------------------------------------------------------------------- bargaining


class Bargaining(NamedTuple):
    """HSN-SCD bargaining outcome (Proposition 4) with a feasible contract and the GNP check."""

    y_ss: Array
    y_su: Array
    y_rs: Array
    y_ru: Array
    C_ss: Array
    C_su: Array
    C_r: Array
    surplus_ss: Array  # t_ss - C_ss
    surplus_su: Array
    surplus_r: Array
    f_ss: Array  # one feasible contract realising (y, C); NaN-free, check contract_exists
    f_su: Array
    gamma_ss: Array
    gamma_su: Array
    contract_exists: Array  # a contract with f in [0, 1] meets IC s, IC u and IR
    interior: Array  # the interior solution (First Best + equal surplus, A12-A15) is feasible
    gnp_y_ss: Array  # numerical maximiser of the generalised Nash product
    gnp_y_su: Array
    gnp_y_rs: Array
    gnp_y_ru: Array
    gnp_C_ss: Array
    gnp_C_su: Array
    gnp_C_r: Array
    gnp_ic_u_binding: Array  # multiplier of IC u (with f_ss = 1) positive: the boundary case
    gnp_converged: Array
    converged: Array
    residual: Array
    iterations: Array
    status: Array
    assumptions_hold: Array


def _reference_solves(pr: Params, solver: Newton) -> tuple[Noncooperative, FirstBest]:
    """The non-cooperative equilibrium (disagreement point) and First Best that the contracts
    are built on, for the composite solves (bargaining, robust_bargaining, cost_comparison).

    They run without unrolled fast steps. Each fast step is another copy of the solve's
    Jacobian and elimination in the compiled program; here they doubled the two sub-solves'
    share of the program (13167 -> 7187 and 15221 -> 8055 jaxpr equations), which is traced
    and compiled on every cold run and traced again on every run that finds the compiled
    program in the persistent cache. The solutions are the same to the solver's tolerance;
    only the standalone :func:`noncooperative` and :func:`first_best`, whose large vmapped
    sweeps the fast steps are for, keep them.
    """
    nested = dataclasses.replace(solver, fast_steps=0)
    return noncooperative(pr, solver=nested), first_best(pr, solver=nested)


def _delta_p(y_s, y_r, pr: Params):
    """``P_Ju(y_s, y_r) - P_Js(y_s, y_r) = (P_su(y_s) - P_ss(y_s)) (1 - P_r(y_r))``."""
    d = disruption_probability(y_s, pr.theta_su, pr.alpha_su) - disruption_probability(
        y_s, pr.theta_ss, pr.alpha_ss
    )
    return d * (1.0 - disruption_probability(y_r, pr.theta_r, pr.alpha_r))


def _share_interval(coef, rhs):
    """Feasible ``f`` in [0, 1] for the linear constraint ``coef * f >= rhs``: ``(lo, hi)``."""
    safe = jnp.where(coef == 0, 1.0, coef)
    root = rhs / safe
    lo = jnp.where(coef > 0, jnp.maximum(0.0, root), 0.0)
    hi = jnp.where(coef < 0, jnp.minimum(1.0, root), 1.0)
    empty_flat = (coef == 0) & (rhs > 0)
    return lo, jnp.where(empty_flat, -1.0, hi)


def _contract(pr: Params, y, c_ss, c_su, t, tol):
    """Construct one contract ``(f_ss, f_su, gamma_ss, gamma_su)`` realising costs ``C``.

    IC u: ``C_ss + f_ss dP(y_ss, y_rs) D_J >= C_su``; IC s: ``C_su - f_su dP(y_su, y_ru) D_J
    >= C_ss``. Each gives an interval of feasible shares in [0, 1]; we take its midpoint (strict
    IC wherever possible, Proposition 4 case 1). ``tol`` absorbs round-off in the comparisons.
    """
    y_ss, y_su, y_rs, y_ru = y
    d_s = _delta_p(y_ss, y_rs, pr) * pr.D_J
    d_u = _delta_p(y_su, y_ru, pr) * pr.D_J
    # The tolerance decides only whether a contract exists; the shares come from the exact
    # intervals (so a binding IC u gives exactly f_ss = 1, not 1 minus the tolerance).
    lo_ss, hi_ss = _share_interval(d_s, c_su - c_ss - tol)
    lo_su, hi_su = _share_interval(-d_u, c_ss - c_su - tol)
    exists = (lo_ss <= hi_ss) & (lo_su <= hi_su)
    lo_ss, hi_ss = _share_interval(d_s, c_su - c_ss)
    lo_su, hi_su = _share_interval(-d_u, c_ss - c_su)
    f_ss = jnp.clip(0.5 * (jnp.minimum(lo_ss, 1.0) + jnp.maximum(hi_ss, 0.0)), 0.0, 1.0)
    f_su = jnp.clip(0.5 * (jnp.minimum(lo_su, 1.0) + jnp.maximum(hi_su, 0.0)), 0.0, 1.0)
    pj_s = joint_probability(y_ss, y_rs, pr.theta_ss, pr.alpha_ss, pr.theta_r, pr.alpha_r)
    pj_u = joint_probability(y_su, y_ru, pr.theta_su, pr.alpha_su, pr.theta_r, pr.alpha_r)
    gamma_ss = c_ss - y_ss - f_ss * pj_s * pr.D_J
    gamma_su = c_su - y_su - f_su * pj_u * pr.D_J
    t_ss, t_su, t_r, c_r = t
    ir = (t_ss - c_ss >= -tol) & (t_su - c_su >= -tol) & (t_r - c_r >= -tol)
    return f_ss, f_su, gamma_ss, gamma_su, exists & ir


def _total_welfare(y, pr: Params):
    return pr.p * welfare_cost(y[0], y[2], pr, 0) + (1 - pr.p) * welfare_cost(y[1], y[3], pr, 1)


def _welfare_change(y, y_ref, pr: Params):
    """``W(y) - W(y_ref)`` computed from the investment changes, without cancellation.

    With ``dP = P(y_ref) expm1(-alpha dy)`` for each site, ``P_J(y) - P_J(y_ref) =
    dP_s (1 - P_r) + dP_r (1 - P_s) - dP_s dP_r`` at the reference probabilities. Forming
    ``W(y) - W(y_ref)`` by subtraction instead loses ``eps * W`` -- more than the whole gain
    from cooperation when that gain is small, which stalls the bargaining solve.
    """
    total = 0.0
    for tau, (i_s, i_r) in enumerate(((0, 2), (1, 3))):
        theta, alpha = _supplier(pr, tau)
        p_s = disruption_probability(y_ref[i_s], theta, alpha)
        p_r = disruption_probability(y_ref[i_r], pr.theta_r, pr.alpha_r)
        d_s = p_s * jnp.expm1(-alpha * (y[i_s] - y_ref[i_s]))
        d_r = p_r * jnp.expm1(-pr.alpha_r * (y[i_r] - y_ref[i_r]))
        d_pj = d_s * (1.0 - p_r) + d_r * (1.0 - p_s) - d_s * d_r
        change = (y[i_s] - y_ref[i_s]) + (y[i_r] - y_ref[i_r]) + d_pj * pr.D_J
        total = total + (pr.p if tau == 0 else 1.0 - pr.p) * change
    return total


def equal_surplus_costs(t_ss, t_su, t_r, W, p):
    """(A13)-(A15): costs with equal surplus ``t - C`` for all players summing to ``W``."""
    c_ss = (W - (1 - p) * (t_su - t_ss) - (t_r - t_ss)) / 2
    return c_ss, c_ss + (t_su - t_ss), c_ss + (t_r - t_ss)


def _gains_tolerance(pr: Params, scale):
    """Total gains from cooperation below this count as none (round-off of the $ costs)."""
    eps = jnp.finfo(_dtype(pr)).eps
    return 1000.0 * eps * scale


def _solve_surplus_problem(pr, y_fb, u0, gain, disagreement, shared_costs, constraints,
                           n_constraints, solver):
    """Nash-product maximisation over ``(y, u)`` in units of the total gain ``G``.

    Costs are written as offsets from a reference point at which every surplus is known
    (``disagreement``, dimensionless), divided by ``G``: then every surplus is O(1), the
    multipliers are O(1), and the investment rows are scaled by ``1 / (alpha G)`` so that they
    read ``dW/dy`` (dimensionless). Without this the problem is ill-conditioned whenever the
    gains are small against the costs (the round-off of ``1/surplus`` terms exceeds the
    tolerance and the line search stagnates).
    """
    alphas = jnp.stack([pr.alpha_ss, pr.alpha_su, pr.alpha_r, pr.alpha_r])
    args = (pr, y_fb, gain, disagreement)

    def costs(x, a):
        p_, y_ref, g, _ = a
        return shared_costs(x[4:], _welfare_change(x[:4], y_ref, p_) / g, p_)

    n_u = u0.shape[0]
    x0 = jnp.concatenate([y_fb, u0])
    lower = np.concatenate([np.zeros(4), np.full((n_u,), -np.inf)])  # static: see solve_mcp
    x_scale = jnp.concatenate([1.0 / alphas, jnp.ones(n_u, x0.dtype)])
    f_scale = jnp.concatenate([1.0 / (alphas * gain), jnp.ones(n_u, x0.dtype)])
    return nash_bargaining(
        costs, lambda a: a[3],
        lambda a: jnp.stack([a[0].p, 1 - a[0].p, jnp.ones_like(a[0].p)]),
        x0, args, lower, constraints=constraints, n_constraints=n_constraints,
        x_scale=x_scale, f_scale=f_scale, solver=solver,
    )


def _gnp_solve(pr: Params, nc: Noncooperative, fb: FirstBest, solver: Newton):
    """Maximise the generalised Nash product over ``(y, C_ss, C_su)`` (reduced problem).

    Variables: investments ``y`` and ``u_tau = (C_stau - C*_stau) / G`` where ``C*`` are the
    equal-surplus costs (A13)-(A15) and ``G = p t_ss + (1 - p) t_su + t_r - W`` the total gain
    (at ``u = 0``, ``y = y_FB`` every surplus is ``G / 2``). Returns the solution and the gain.
    """
    t_ss, t_su, t_r = nc.t_ss, nc.t_su, nc.t_r
    y_fb = jnp.stack([fb.y_ss, fb.y_su, fb.y_rs, fb.y_ru])
    gain = pr.p * t_ss + (1 - pr.p) * t_su + t_r - fb.W
    no_gain = gain <= _gains_tolerance(pr, pr.p * t_ss + (1 - pr.p) * t_su + t_r)
    g = jnp.where(no_gain, 1.0, gain)
    half = jnp.full((3,), 0.5, y_fb.dtype)

    def shared_costs(u, dw, p_):
        # Surplus_i / G = 1/2 - cost_i: C_r - C*_r = (W(y) - W*) - p G u_ss - (1 - p) G u_su.
        return jnp.stack([u[0], u[1], dw - p_.p * u[0] - (1 - p_.p) * u[1]])

    def constraints(x, a):
        p_, _, gg, _ = a
        gap = (t_su - t_ss) / gg + x[5] - x[4]  # (C_su - C_ss) / G
        d_s = _delta_p(x[0], x[2], p_) * p_.D_J / gg
        d_u = _delta_p(x[1], x[3], p_) * p_.D_J / gg
        # IC s with its most permissive f_su in [0, 1]; IC u with its most permissive f_ss.
        return jnp.stack([gap - jnp.minimum(0.0, d_u), jnp.maximum(0.0, d_s) - gap])

    eq = _solve_surplus_problem(pr, y_fb, jnp.zeros(2, y_fb.dtype), g, half,
                                shared_costs, constraints, 2, solver)
    c_ss0, c_su0, _ = equal_surplus_costs(t_ss, t_su, t_r, fb.W, pr.p)
    y = jnp.where(no_gain, y_fb, eq.x[:4])
    c_ss = jnp.where(no_gain, t_ss, c_ss0 + g * eq.x[4])
    c_su = jnp.where(no_gain, t_su, c_su0 + g * eq.x[5])
    c_r = _total_welfare(y, pr) - pr.p * c_ss - (1 - pr.p) * c_su
    status = jnp.where(no_gain, jnp.int32(Status.SUCCESS), eq.status)
    binding = jnp.where(no_gain, False, eq.multipliers[1] > 0)
    return eq._replace(status=status), y, c_ss, c_su, c_r, binding


@tiled
def bargaining(
    params: Params, *, solver: Newton = SOLVER, contract_tol: float | None = None
) -> Bargaining:
    """HSN-SCD bargaining contract (section 3.3, Proposition 4), solved by the engine.

    The disagreement point is :func:`noncooperative`; First Best investments come from
    :func:`first_best`; the interior costs are (A13)-(A15). A feasible contract realising them is
    constructed (or its absence reported). The generalised Nash product is also maximised
    numerically under IC/IR/feasibility; where no interior contract exists its optimum (the
    boundary case ``f_ss = 1``, possibly with under-investment) is the reported outcome. With
    no gains from cooperation (``W`` equal to the non-cooperative total cost) the outcome is the
    disagreement point.

    ``contract_tol`` (in $) absorbs round-off in the IC/IR comparisons that decide
    ``contract_exists`` and ``interior``; default ``64 eps (|t_ss| + |t_su| + |t_r| + D_J)``
    in float64 (the size of the compared terms) and ``1e-4`` times the total disagreement cost
    ``p t_ss + (1 - p) t_su + t_r`` in float32, where the solves' tolerance dominates.
    """
    pr, valid = _prepare(params)
    nc, fb = _reference_solves(pr, solver)
    return _bargaining(pr, valid, nc, fb, solver, contract_tol)


def _bargaining(pr: Params, valid, nc: Noncooperative, fb: FirstBest, solver: Newton,
                contract_tol: float | None = None) -> Bargaining:
    """:func:`bargaining` given its disagreement point ``nc`` and First Best ``fb`` at ``pr``
    (prepared): callers that need these solves too pass them in instead of solving (and
    compiling) them a second time."""
    if contract_tol is None:
        eps = jnp.finfo(_dtype(pr)).eps
        if eps < 1e-10:
            # Round-off of the compared terms: differences of costs (of the size of t) and
            # dP D_J with probabilities <= 1. At 1e-9 of the total cost (before 2026-12-01) one
            # point in 10^6 of benchmarks/robustness.py was reported as an interior contract
            # whose IC s failed by 1.1e-3 $ (7.6e-11 of the costs), far beyond round-off.
            tol = 64 * eps * (jnp.abs(nc.t_ss) + jnp.abs(nc.t_su) + jnp.abs(nc.t_r) + pr.D_J)
        else:
            # float32: the solves' own tolerance (1000 eps, ~1e-4) dominates round-off.
            tol = 1e-4 * (pr.p * nc.t_ss + (1 - pr.p) * nc.t_su + nc.t_r)
    else:
        tol = contract_tol
    t = (nc.t_ss, nc.t_su, nc.t_r)
    y_fb = jnp.stack([fb.y_ss, fb.y_su, fb.y_rs, fb.y_ru])
    c_ss, c_su, c_r = equal_surplus_costs(nc.t_ss, nc.t_su, nc.t_r, fb.W, pr.p)
    *_, interior = _contract(pr, y_fb, c_ss, c_su, (*t, c_r), tol)

    # The 8-unknown GNP problem runs without unrolled fast steps: each one is another copy of
    # its 8 x 8 Jacobian (64 second-order jvps) and elimination in the compiled program, and
    # that halved bargaining's compile time (405 s -> 206 s measured under load; the solution
    # is the same to the tolerance). Its warm start is the interior solution itself.
    gnp, gy, g_ss, g_su, g_r, ic_u_binding = _gnp_solve(
        pr, nc, fb, dataclasses.replace(solver, fast_steps=0))
    y = jnp.where(interior, y_fb, gy)
    c_ss = jnp.where(interior, c_ss, g_ss)
    c_su = jnp.where(interior, c_su, g_su)
    c_r = jnp.where(interior, c_r, g_r)
    f_ss, f_su, gamma_ss, gamma_su, exists = _contract(pr, y, c_ss, c_su, (*t, c_r), tol)

    gnp_status = flag_invalid(gnp.status, valid)
    status = first_failure(nc.status, fb.status, gnp_status)
    return Bargaining(
        y[0], y[1], y[2], y[3], c_ss, c_su, c_r,
        nc.t_ss - c_ss, nc.t_su - c_su, nc.t_r - c_r,
        f_ss, f_su, gamma_ss, gamma_su, exists, interior,
        gy[0], gy[1], gy[2], gy[3], g_ss, g_su, g_r, ic_u_binding,
        gnp_status == Status.SUCCESS,
        status == Status.SUCCESS,
        jnp.maximum(jnp.maximum(nc.residual, fb.residual), gnp.residual),
        nc.iterations + fb.iterations + gnp.iterations,
        status, assumptions_hold(pr),
    )


def noncooperative_and_bargaining(
    params: Params, *, solver: Newton = SOLVER
) -> tuple[Noncooperative, Bargaining]:
    """:func:`noncooperative` and :func:`bargaining` at one point, the disagreement point
    solved once for both (the two blocks of the source's Figure 3). Equal to calling the two
    functions to the solver's tolerance (the non-cooperative solve runs without fast steps,
    see :func:`_reference_solves`); one compiled program instead of two, that solve in it once."""
    pr, valid = _prepare(params)
    nc, fb = _reference_solves(pr, solver)
    return nc, _bargaining(pr, valid, nc, fb, solver)


class RobustBargaining(NamedTuple):
    """Robust HSN-SCD contract (Proposition 5): ``f_ss = f_su = 0``."""

    y_ss: Array
    y_su: Array
    y_rs: Array
    y_ru: Array
    C_ss: Array
    C_su: Array
    C_r: Array
    surplus_ss: Array
    surplus_su: Array
    surplus_r: Array
    gamma_ss: Array  # upfront transfer of each supplier type (its whole cost net of investment)
    gamma_su: Array
    contract_exists: Array  # an IR-feasible robust contract exists (else: disagreement)
    converged: Array
    residual: Array
    iterations: Array
    status: Array
    assumptions_hold: Array


@tiled
def robust_bargaining(params: Params, *, solver: Newton = SOLVER) -> RobustBargaining:
    """Robust HSN-SCD contract (Proposition 5), solved as a Nash bargaining problem.

    With ``f_ss = f_su = 0`` the IC constraints force ``C_ss = C_su = C_s``; the retailer bears
    all losses, so ``C_r = W(y) - C_s``. The Nash product
    ``p log(t_ss - C_s) + (1 - p) log(t_su - C_s) + log(t_r - W(y) + C_s)`` depends on the
    investments only through ``W(y)``, so it separates exactly: ``y`` minimises ``W`` (First
    Best, from :func:`first_best`, Proposition 5(i)) whatever ``C_s`` is, and the engine
    maximises over ``C_s`` alone. (Keeping ``y`` in the bargaining problem would leave a type
    with prior weight 0 -- ``p`` = 0 or 1 -- with undetermined investments: a singular system.)

    Individual rationality needs ``W - t_r < C_s < min(t_ss, t_su)``: the source takes this
    interval to be non-empty. Where it is empty (gain ``min(t_ss, t_su) + t_r - W <= 0``) no
    robust contract exists; we report ``contract_exists = False`` and the disagreement point.
    A supplier type with weight 0 still has its IR constraint (a bound of the solve).

    The unknown is the logarithm of the scarcer supplier surplus ``t_min - C_s`` (in units of
    the gain), so that the whole prior range ``p`` in [0, 1] is solved: with a tiny weight
    (``p = 4e-123``) that surplus is of order ``p`` times the gain, far below the resolution of
    ``C_s``; the reported surpluses are computed from it directly. Surpluses below 1e-277 of
    the gain (float64; 7e-35 in float32) are reported as 0.
    """
    pr, valid = _prepare(params)
    nc, fb = _reference_solves(pr, solver)
    return _robust_bargaining(pr, valid, nc, fb, solver)


def _robust_bargaining(pr: Params, valid, nc: Noncooperative, fb: FirstBest,
                       solver: Newton) -> RobustBargaining:
    """:func:`robust_bargaining` given ``nc`` and ``fb`` at ``pr`` (see :func:`_bargaining`)."""
    y_fb = jnp.stack([fb.y_ss, fb.y_su, fb.y_rs, fb.y_ru])
    t_min = jnp.minimum(nc.t_ss, nc.t_su)
    gain = t_min + nc.t_r - fb.W
    exists = gain > _gains_tolerance(pr, pr.p * nc.t_ss + (1 - pr.p) * nc.t_su + nc.t_r)
    g = jnp.where(exists, gain, 1.0)
    # Unknown: e = (t_min - C_s) / G, the surplus of the supplier type with the smaller
    # disagreement cost, in units of the gain G; the surpluses are G (d0 + e), G (d1 + e) and
    # G (1 - e) with d_tau = (t_stau - t_min) / G >= 0 (one of them 0). The engine solves for
    # w = log(e): a type with a tiny weight (p = 4e-123, say) has an optimal surplus of order
    # p G, which C_s itself cannot resolve (at 8f31d2c the solve in C_s stagnated there), while
    # w resolves it to full relative precision.
    d0 = jnp.where(exists, (nc.t_ss - t_min) / g, 0.0)
    d1 = jnp.where(exists, (nc.t_su - t_min) / g, 0.0)
    e0, w_min = _robust_start(pr.p, d0, d1)
    w0 = jnp.log(jnp.maximum(e0, jnp.exp(w_min)))
    # The first-order condition in w is e dGNP/de: of the size of the binding type's weight
    # (p, 1 - p or 1) and of e; f_scale makes it O(1), so that neither the tolerance nor the
    # derivative test mistakes a tiny weight for a flat problem.
    weight = jnp.where(d0 == 0, pr.p, 0.0) + jnp.where(d1 == 0, 1 - pr.p, 0.0)
    f_scale = jnp.maximum(weight + jnp.exp(w0), jnp.exp(w_min))
    args = (pr, jnp.stack([d0, d1, jnp.ones_like(d0)]))
    eq = nash_bargaining(
        lambda w, a: jnp.stack([-jnp.exp(w[0]), -jnp.exp(w[0]), jnp.exp(w[0])]),
        lambda a: a[1],
        lambda a: jnp.stack([a[0].p, 1 - a[0].p, jnp.ones_like(a[0].p)]),
        w0[None], args, lower=w_min, f_scale=f_scale, solver=solver,
    )
    # At the lower bound of w (a type of weight 0 whose individual rationality binds, or a
    # weight below 1e-277 in float64) the binding surplus is 0.
    e = jnp.where(eq.x[0] <= w_min, 0.0, jnp.exp(eq.x[0]))
    y = jnp.where(exists, y_fb, jnp.stack([nc.y_ss, nc.y_su, nc.y_r, nc.y_r]))
    c_s = t_min - g * e
    c_ss = jnp.where(exists, c_s, nc.t_ss)
    c_su = jnp.where(exists, c_s, nc.t_su)
    c_r = jnp.where(exists, fb.W - c_s, nc.t_r)
    # Surpluses from e directly (t - C would lose a binding surplus below the ulp of t).
    surplus = [jnp.where(exists, g * (d0 + e), 0.0), jnp.where(exists, g * (d1 + e), 0.0),
               jnp.where(exists, g * (1.0 - e), 0.0)]
    eq_status = jnp.where(exists, eq.status, jnp.int32(Status.SUCCESS))
    status = first_failure(flag_invalid(first_failure(nc.status, eq_status), valid), fb.status)
    return RobustBargaining(
        y[0], y[1], y[2], y[3], c_ss, c_su, c_r, *surplus,
        c_ss - y[0], c_su - y[1], exists,
        status == Status.SUCCESS, jnp.maximum(nc.residual, jnp.where(exists, eq.residual, 0.0)),
        nc.iterations + fb.iterations + eq.iterations, status, assumptions_hold(pr),
    )


def _robust_start(p, d0, d1):
    """Closed-form optimum ``e`` of the robust Nash product and the smallest ``w = log e``.

    ``p log(d0 + e) + (1 - p) log(d1 + e) + log(1 - e)`` is stationary where
    ``-2 e^2 + B e + C0 = 0`` with ``B = 1 - p d1 - (1 - p) d0 - d0 - d1`` and
    ``C0 = p d1 + (1 - p) d0 >= 0`` (``d0 d1 = 0``); the root in ``[0, 1)`` is the larger one,
    written without cancellation. It starts the engine's Newton solve (which certifies it and
    carries the implicit derivatives). ``w_min = 0.9 log(tiny)`` keeps ``e`` a normal number
    (1e-277 in float64, 7e-35 in float32); a smaller optimum is reported as ``e = 0``.
    """
    b = 1.0 - p * d1 - (1.0 - p) * d0 - d0 - d1
    c0 = p * d1 + (1.0 - p) * d0
    root = jnp.sqrt(b * b + 8.0 * c0)
    e = jnp.where(b >= 0, (b + root) / 4.0, 2.0 * c0 / jnp.where(root - b > 0, root - b, 1.0))
    w_min = 0.9 * float(np.log(jnp.finfo(jnp.result_type(p)).tiny))
    return e, jnp.asarray(w_min, jnp.result_type(p))


# ----------------------------------------------------------------------------- closed forms


def first_best_closed_form(params: Params, xp: types.ModuleType = jnp) -> FirstBest:
    """Interior First Best, source section 3.1 (test oracle and benchmark baseline).

    ``xp`` is ``jax.numpy`` or ``numpy``. Valid only where the solution is interior (all
    ``y > 0``); no diagnostics are computed (``converged`` is True, ``status`` 0).
    """
    pr = params
    out = []
    for theta, alpha in ((pr.theta_ss, pr.alpha_ss), (pr.theta_su, pr.alpha_su)):
        b = alpha + alpha * pr.alpha_r * pr.D_J - pr.alpha_r
        # The printed smaller root (b - sqrt(b^2 - 4 a^2 alpha_r D_J)) / (2 a alpha_r D_J),
        # rationalised to avoid cancellation (b^2 >> 4 a^2 alpha_r D_J for large D_J).
        p_r = 2 * alpha / (b + xp.sqrt(b * b - 4 * alpha**2 * pr.alpha_r * pr.D_J))
        y_r = xp.log(pr.theta_r / p_r) / pr.alpha_r
        p_s = 1.0 / ((1.0 - p_r) * alpha * pr.D_J)
        y_s = xp.log(theta / p_s) / alpha
        w = y_s + y_r + _union(p_s, p_r) * pr.D_J
        out.append((y_s, y_r, w))
    (y_ss, y_rs, w_s), (y_su, y_ru, w_u) = out
    one = xp.ones_like(w_s)
    return FirstBest(
        y_ss, y_su, y_rs, y_ru, w_s, w_u, pr.p * w_s + (1 - pr.p) * w_u,
        one > 0, 0 * one, (0 * one).astype(xp.int32), (0 * one).astype(xp.int32),
        assumptions_hold(pr, xp),
    )


def noncooperative_closed_form(params: Params, xp: types.ModuleType = jnp) -> Noncooperative:
    """Interior equilibrium of the non-cooperative game, source section 3.2.1.

    ``eta = (1 - f) alpha_r / f [p / alpha_ss + (1 - p) / alpha_su]``,
    ``kappa = alpha_r (1 - f) D_J``; ``P_r`` is the smaller root of
    ``x^2 - (1 + kappa - eta)/kappa x + 1/kappa = 0``. Valid only for interior equilibria.
    """
    pr = params
    eta = (1 - pr.f) * pr.alpha_r / pr.f * (pr.p / pr.alpha_ss + (1 - pr.p) / pr.alpha_su)
    kappa = pr.alpha_r * (1 - pr.f) * pr.D_J
    b = (1 + kappa - eta) / (2 * kappa)
    # The printed smaller root b - sqrt(b^2 - 1/kappa), rationalised (no cancellation).
    p_r = (1 / kappa) / (b + xp.sqrt(b * b - 1 / kappa))
    y_r = xp.log(pr.theta_r / p_r) / pr.alpha_r
    y_ss = xp.log(pr.theta_ss * pr.alpha_ss * (1 - p_r) * pr.f * pr.D_J) / pr.alpha_ss
    y_su = xp.log(pr.theta_su * pr.alpha_su * (1 - p_r) * pr.f * pr.D_J) / pr.alpha_su
    zero = 0 * y_r
    return _noncooperative_result(
        pr, (y_ss, y_su, y_r), zero, zero.astype(xp.int32), zero.astype(xp.int32), xp
    )


def bargaining_closed_form(params: Params, xp: types.ModuleType = jnp):
    """Interior bargaining costs (A13)-(A15) from the closed forms: ``(C_ss, C_su, C_r)``."""
    nc = noncooperative_closed_form(params, xp)
    fb = first_best_closed_form(params, xp)
    return equal_surplus_costs(nc.t_ss, nc.t_su, nc.t_r, fb.W, params.p)


# ----------------------------------------------------------------------------- comparison


class CostComparison(NamedTuple):
    """Total expected supply-chain cost under each regime and the savings of the contracts."""

    W_nc: Array  # p t_ss + (1 - p) t_su + t_r at the non-cooperative equilibrium
    W_fb: Array  # First Best total cost W
    W_hsn: Array  # p C_ss + (1 - p) C_su + C_r of the HSN-SCD bargaining outcome
    W_robust: Array  # the same for the robust contract (f_ss = f_su = 0)
    reduction_hsn: Array  # 100 (W_nc - W_hsn) / W_nc, percent
    reduction_robust: Array  # 100 (W_nc - W_robust) / W_nc, percent
    reduction_fb: Array  # 100 (W_nc - W_fb) / W_nc: the most any contract can save
    contract_exists: Array  # an HSN-SCD contract with f in [0, 1] exists
    interior: Array  # ... and it realises First Best (Proposition 4)
    robust_contract_exists: Array
    converged: Array
    residual: Array
    iterations: Array
    status: Array
    assumptions_hold: Array


@tiled
def cost_comparison(params: Params, *, solver: Newton = SOLVER) -> CostComparison:
    """How much the contracts of section 3.3 save against the non-cooperative equilibrium.

    Combines :func:`noncooperative`, :func:`first_best`, :func:`bargaining` and
    :func:`robust_bargaining` at one point (the quantities behind the source's discussion of
    Proposition 3 and Figure 3: ``W_nc - W`` is the value of cooperation). With no gains from
    cooperation the contracts report the disagreement point, so the reduction is 0. Where
    ``W_nc`` is 0 (``D_J`` = 0) the reductions are reported as 0.
    """
    # The non-cooperative and First Best solves are shared by both contracts: each solve is
    # traced and compiled once (calling bargaining and robust_bargaining would repeat both
    # inside each, three copies of each solve in the compiled program).
    pr, valid = _prepare(params)
    nc, fb = _reference_solves(pr, solver)
    hsn = _bargaining(pr, valid, nc, fb, solver)
    rob = _robust_bargaining(pr, valid, nc, fb, solver)
    p = jnp.asarray(pr.p, nc.t_r.dtype)
    w_nc = p * nc.t_ss + (1 - p) * nc.t_su + nc.t_r
    w_hsn = p * hsn.C_ss + (1 - p) * hsn.C_su + hsn.C_r
    w_rob = p * rob.C_ss + (1 - p) * rob.C_su + rob.C_r
    safe = jnp.where(w_nc > 0, w_nc, 1.0)

    def pct(w):
        return jnp.where(w_nc > 0, 100.0 * (w_nc - w) / safe, 0.0)

    status = first_failure(nc.status, fb.status, hsn.status, rob.status)
    return CostComparison(
        w_nc, fb.W, w_hsn, w_rob, pct(w_hsn), pct(w_rob), pct(fb.W),
        hsn.contract_exists, hsn.interior, rob.contract_exists,
        status == Status.SUCCESS,
        jnp.maximum(jnp.maximum(nc.residual, fb.residual), jnp.maximum(hsn.residual,
                                                                       rob.residual)),
        nc.iterations + fb.iterations + hsn.iterations + rob.iterations,
        status, nc.assumptions_hold,
    )


# ----------------------------------------------------------------------------- sweep metadata

#: The base point of sweep files: Figure 3, Example 1.
DEFAULT = FIGURE3[0]

#: Functions ``params -> NamedTuple`` that sweeps may call (``jaxgames.sweep``, sweep files).
SOLVE_FUNCTIONS = ("first_best", "noncooperative", "bargaining", "robust_bargaining",
                   "cost_comparison")

#: Units of outputs (probabilities and shares "1", money "$"); diagnostics are unitless.
OUTPUT_UNITS = {
    **{k: "$" for k in (
        "y_ss", "y_su", "y_r", "y_rs", "y_ru", "W_s", "W_u", "W", "t_ss", "t_su", "t_r",
        "C_ss", "C_su", "C_r", "surplus_ss", "surplus_su", "surplus_r", "gamma_ss", "gamma_su",
        "gnp_y_ss", "gnp_y_su", "gnp_y_rs", "gnp_y_ru", "gnp_C_ss", "gnp_C_su", "gnp_C_r",
        "W_nc", "W_fb", "W_hsn", "W_robust")},
    **{k: "%" for k in ("reduction_hsn", "reduction_robust", "reduction_fb")},
    **{k: "1" for k in ("P_ss", "P_su", "P_r", "f_ss", "f_su")},
}

#: Descriptions of parameters and outputs (dataset ``description`` attrs).
DESCRIPTIONS = {
    "f": "supplier's share of the disruption loss (non-cooperative game)",
    "theta_ss": "base disruption probability, safe supplier",
    "theta_su": "base disruption probability, unsafe supplier",
    "theta_r": "base disruption probability, retailer",
    "alpha_ss": "security investment effectiveness, safe supplier",
    "alpha_su": "security investment effectiveness, unsafe supplier",
    "alpha_r": "security investment effectiveness, retailer",
    "D_J": "supply-chain loss from a disruption",
    "p": "prior probability that the supplier is safe",
    "y_ss": "security investment, safe supplier",
    "y_su": "security investment, unsafe supplier",
    "y_r": "security investment, retailer",
    "y_rs": "retailer's investment facing a safe supplier",
    "y_ru": "retailer's investment facing an unsafe supplier",
    "W_s": "total expected cost with a safe supplier",
    "W_u": "total expected cost with an unsafe supplier",
    "W": "total expected supply-chain cost",
    "P_ss": "disruption probability, safe supplier",
    "P_su": "disruption probability, unsafe supplier",
    "P_r": "disruption probability, retailer",
    "t_ss": "expected cost, safe supplier",
    "t_su": "expected cost, unsafe supplier",
    "t_r": "expected cost, retailer",
    "C_ss": "contract cost, safe supplier",
    "C_su": "contract cost, unsafe supplier",
    "C_r": "contract cost, retailer",
    "W_nc": "total expected cost, non-cooperative equilibrium",
    "W_fb": "total expected cost, First Best",
    "W_hsn": "total expected cost, HSN-SCD bargaining contract",
    "W_robust": "total expected cost, robust contract",
    "reduction_hsn": "cost reduction of the HSN-SCD contract vs non-cooperative",
    "reduction_robust": "cost reduction of the robust contract vs non-cooperative",
    "reduction_fb": "cost reduction of First Best vs non-cooperative",
    "contract_exists": "a feasible HSN-SCD contract exists",
    "interior": "the HSN-SCD contract realises First Best (Proposition 4)",
    "robust_contract_exists": "an individually rational robust contract exists",
    "converged": "the solve met its tolerance (status == 0)",
    "residual": "norm of the complementarity residual at the solution",
    "iterations": "Newton iterations",
    "status": "0 success, 1 max steps, 2 non-finite, 3 stagnated, 4 invalid input",
    "assumptions_hold": "the point satisfies the source's assumption set (2) and 0 < f < 1",
}
