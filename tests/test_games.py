"""Game blocks on textbook games: closed forms AND the defining equilibrium property.

Every equilibrium is certified twice: against a hand-derived closed form, and by checking that
no player can lower its own cost by a unilateral deviation (a fine grid plus a bounded scalar
minimisation over its own strategy, the others fixed). Each game family is one module-level
jitted (and usually vmapped) function of its parameters, so one compile serves all its cases.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from jaxgames import (
    Equilibrium,
    StackelbergEquilibrium,
    Status,
    bayesian_nash,
    best_response,
    nash_bargaining,
    nash_equilibrium,
    stackelberg,
)

# Bound for quantities derived from a solution (slacks, multipliers at 0, bound distances): the
# solver stops at 100 eps = 2.2e-14 on the scaled residual; 1e-12 allows for the conversion.
TOL = 1e-12


def assert_no_profitable_deviation(cost, x_eq, lo, hi, tol=1e-9, n_grid=4001):
    """``cost(x_eq) <= min cost over [lo, hi]`` (grid and bounded Brent) up to ``tol``."""
    grid = np.linspace(lo, hi, n_grid)
    values = np.asarray(cost(grid))  # every cost below is plain arithmetic: vectorised
    res = minimize_scalar(cost, bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-12, "maxiter": 500})
    best = min(values.min(), float(res.fun))
    assert cost(x_eq) <= best + tol, (cost(x_eq), best)
    return best


# --------------------------------------------------------------------------------------------
# Cournot oligopoly: linear demand P = a - b Q, constant marginal costs c_i, q_i >= 0
# --------------------------------------------------------------------------------------------


def _cournot_costs(q, p):
    a, b, c = p
    price = a - b * sum(q[i] for i in range(len(q)))
    return -jnp.stack([(price - c[i]) * q[i] for i in range(len(q))])


def _cournot(a, b, c):
    n = c.shape[0]
    return nash_equilibrium(_cournot_costs, [[i] for i in range(n)], jnp.ones(n), (a, b, c),
                            lower=0.0)


cournot = jax.jit(jax.vmap(_cournot))


@jax.jit
@jax.vmap
def capacity_game(a, b, c, cap):
    """Cournot duopoly with the shared constraint q1 + q2 <= cap (variational equilibrium).

    With a slack capacity this is the plain duopoly (mu = 0), so the duopoly tests run through
    this family too (one compile for both)."""
    return nash_equilibrium(
        _cournot_costs, [[0], [1]], jnp.ones(2), (a, b, c), lower=0.0,
        shared_constraints=lambda q, p: (cap - q[0] - q[1])[None], n_shared=1,
    )


NO_CAP = 1e6


def cournot_closed_form(a, b, c):
    """Active-set iteration on q_i = (a - (k+1) c_i + sum_{active} c_j) / ((k+1) b)."""
    c = np.asarray(c, float)
    active = np.ones(len(c), bool)
    while True:
        k = active.sum()
        q = np.where(active, (a - (k + 1) * c + c[active].sum()) / ((k + 1) * b), 0.0)
        if np.all(q >= 0):
            return q
        active &= q > 0


def _deviation_cost(q, i, a, b, c):
    """Firm i's cost of producing v (vectorised over v), the others' quantities fixed."""
    others = float(np.sum(q)) - float(q[i])
    return lambda v: -(a - b * (others + v) - c[i]) * v


def _check_cournot(q, a, b, c):
    q = np.asarray(q)
    n = len(c)
    np.testing.assert_allclose(q, cournot_closed_form(a, b, c), rtol=1e-12, atol=1e-12)
    for i in range(n):
        assert_no_profitable_deviation(_deviation_cost(q, i, a, b, c), q[i], 0.0, a / b)
        # KKT: at q_i = 0 the marginal cost of producing is >= 0
        marginal = -(a - b * q.sum() - b * q[i] - c[i])
        if q[i] <= TOL:
            assert marginal >= 0
        else:
            assert abs(marginal) < 1e-11


DUOPOLY_CASES = [  # (a, b, c1, c2)
    (10.0, 1.0, 1.0, 2.0),
    (20.0, 2.0, 3.0, 1.0),
    (100.0, 0.5, 10.0, 10.0),
    (10.0, 1.0, 1.0, 8.0),  # firm 2's interior formula (10 - 16 + 1)/3 < 0: it produces 0
]
CAPS = [4.0, 5.0, 8.0, 17.0 / 3.0]  # joint capacities for (10, 1, 1, 2): binding or not


def _run_capacity_family():
    """Duopoly cases with a slack capacity, then the capacity cases: one batch, one compile."""
    rows = [(a, b, c1, c2, NO_CAP) for a, b, c1, c2 in DUOPOLY_CASES]
    rows += [(10.0, 1.0, 1.0, 2.0, cap) for cap in CAPS]
    p = np.array(rows)
    eq = capacity_game(p[:, 0], p[:, 1], p[:, 2:4], p[:, 4])
    k = len(DUOPOLY_CASES)
    take = lambda sl: jax.tree_util.tree_map(lambda v: v[sl], eq)
    return take(slice(0, k)), take(slice(k, None))


@pytest.fixture(scope="module")
def capacity_results():
    return _run_capacity_family()


def test_cournot_duopoly(capacity_results):
    eq, _ = capacity_results
    assert isinstance(eq, Equilibrium)
    assert bool(jnp.all(eq.converged))
    # the slack capacity constraint has a zero multiplier: this is the plain duopoly
    np.testing.assert_allclose(np.asarray(eq.multipliers), 0.0, atol=TOL)
    for k, (a, b, c1, c2) in enumerate(DUOPOLY_CASES):
        q = np.asarray(eq.x[k])
        interior = np.array([(a - 2 * c1 + c2) / (3 * b), (a - 2 * c2 + c1) / (3 * b)])
        if np.all(interior >= 0):
            np.testing.assert_allclose(q, interior, rtol=1e-12)
        _check_cournot(q, a, b, [c1, c2])


def test_cournot_bound_binds(capacity_results):
    eq, _ = capacity_results
    a, b, c1, c2 = DUOPOLY_CASES[-1]
    q = np.asarray(eq.x[-1])
    assert (a - 2 * c2 + c1) / (3 * b) < 0  # the interior formula is negative
    assert q[1] == pytest.approx(0.0, abs=TOL)
    assert q[0] == pytest.approx((a - c1) / (2 * b), rel=1e-12)  # firm 1 is a monopolist
    marginal_cost_2 = -(a - b * q[0] - c2)  # d cost_2 / d q_2 at q_2 = 0
    assert marginal_cost_2 > 0
    assert marginal_cost_2 == pytest.approx(2.5, rel=1e-12)


def test_cournot_three_firms():
    cases = [(12.0, 1.0, [1.0, 2.0, 3.0]), (12.0, 1.0, [1.0, 2.0, 7.0]),
             (30.0, 0.7, [4.0, 2.5, 1.0])]
    a = np.array([c[0] for c in cases])
    b = np.array([c[1] for c in cases])
    c = np.array([c[2] for c in cases])
    eq = cournot(a, b, c)
    assert bool(jnp.all(eq.converged))
    assert eq.multipliers.shape == (len(cases), 0)
    np.testing.assert_allclose(np.asarray(eq.x[0]), [3.5, 2.5, 1.5], rtol=1e-12)
    # firm 3's interior formula (12 - 28 + 10)/4 < 0: it is priced out, the others play the
    # duopoly (12 - 2 + 2)/3 = 4, (12 - 4 + 1)/3 = 3
    np.testing.assert_allclose(np.asarray(eq.x[1]), [4.0, 3.0, 0.0], rtol=1e-12, atol=TOL)
    for k in range(len(cases)):
        _check_cournot(eq.x[k], a[k], b[k], c[k])


# --------------------------------------------------------------------------------------------
# Shared constraint: joint capacity q1 + q2 <= K (variational equilibrium)
# --------------------------------------------------------------------------------------------


def test_shared_capacity_constraint(capacity_results):
    _, eq = capacity_results
    a, b, c = 10.0, 1.0, np.array([1.0, 2.0])
    assert bool(jnp.all(eq.converged))
    assert eq.multipliers.shape == (len(CAPS), 1)
    unconstrained = cournot_closed_form(a, b, c)  # (10/3, 7/3), total 17/3
    for k, cap in enumerate(CAPS):
        q, mu = np.asarray(eq.x[k]), float(eq.multipliers[k, 0])
        if cap < unconstrained.sum():
            # sum the two FOCs a - bQ - b q_i - c_i = mu with Q = K
            mu_hand = (2 * a - 3 * b * cap - c.sum()) / 2
            q_hand = (a - b * cap - c - mu_hand) / b
            assert mu == pytest.approx(mu_hand, rel=1e-12) and mu > 0
            np.testing.assert_allclose(q, q_hand, rtol=1e-12)
            assert q.sum() == pytest.approx(cap, rel=1e-13)
        else:  # K = 8 slack; K = 17/3 exactly the unconstrained total (degenerate, mu = 0)
            assert mu == pytest.approx(0.0, abs=TOL)
            np.testing.assert_allclose(q, unconstrained, rtol=1e-12)
        # KKT of each player with the same multiplier
        for i in range(2):
            grad_cost = -(a - b * q.sum() - b * q[i] - c[i])
            assert grad_cost + mu == pytest.approx(0.0, abs=1e-11)  # d/dq_i (cost - mu g) = 0
        slack = cap - q.sum()
        assert mu >= -TOL and slack >= -TOL and abs(mu * slack) < 1e-11
        # no profitable deviation within the shared feasible set, the other firm fixed
        for i in range(2):
            assert_no_profitable_deviation(_deviation_cost(q, i, a, b, c), q[i], 0.0,
                                           cap - q[1 - i])


# --------------------------------------------------------------------------------------------
# Bayesian Nash: Cournot with firm 2's cost private (c_L with prob p, c_H with 1 - p)
# --------------------------------------------------------------------------------------------


def _bayes_costs(actions, types, p):
    a, b, c1, c2 = p[0], p[1], p[2], p[3:5]
    q1, q2 = actions[0][0], actions[1][0]
    price = a - b * (q1 + q2)
    return -jnp.stack([(price - c1) * q1, (price - c2[types[1]]) * q2])


def _bayes(p):
    return bayesian_nash(_bayes_costs, n_types=(1, 2), action_dims=(1, 1),
                         prior=lambda p: [jnp.ones(1), jnp.stack([p[5], 1.0 - p[5]])],
                         x0=jnp.ones(3), args=p, lower=0.0)


def _bayes_x_and_eq(p):
    eq = _bayes(p)
    return eq.x, eq


# the equilibrium and a directional derivative (w.r.t. the parameter vector) from one program
_bayes_jvp = jax.jit(jax.vmap(lambda p, v: jax.jvp(_bayes_x_and_eq, (p,), (v,), has_aux=True)))


def bayes(p):
    return _bayes_jvp(p, np.zeros_like(p))[2]


def bayes_derivative(p, index):
    """d x* / d p[index] for every row of p (forward mode, implicit function theorem)."""
    v = np.zeros_like(p)
    v[:, index] = 1.0
    return np.asarray(_bayes_jvp(p, v)[1])


def bayes_closed_form(a, b, c1, c_lo, c_hi, prob):
    ec = prob * c_lo + (1 - prob) * c_hi
    q1 = (a - 2 * c1 + ec) / (3 * b)
    q2 = (a - np.array([c_lo, c_hi]) - b * q1) / (2 * b)
    dq1 = (c_lo - c_hi) / (3 * b)
    return np.array([q1, *q2]), np.array([dq1, -dq1 / 2, -dq1 / 2])


BAYES = np.array([  # a, b, c1, c_L, c_H, p
    [10.0, 1.0, 1.0, 1.0, 3.0, 0.5],
    [10.0, 1.0, 2.0, 0.5, 4.0, 0.2],
    [25.0, 2.0, 3.0, 2.0, 6.0, 0.9],
])


def test_bayesian_cournot():
    eq = bayes(BAYES)
    assert bool(jnp.all(eq.converged))
    for k, (a, b, c1, c_lo, c_hi, prob) in enumerate(BAYES):
        x = np.asarray(eq.x[k])
        expected, _ = bayes_closed_form(a, b, c1, c_lo, c_hi, prob)
        np.testing.assert_allclose(x, expected, rtol=1e-12)
        c2 = [c_lo, c_hi]

        def cost_1(v, x=x, a=a, b=b, c1=c1, prob=prob, c2=c2):
            # firm 1's expected cost over firm 2's types
            return -sum(w * (a - b * (v + x[1 + t]) - c1) * v
                        for t, w in enumerate((prob, 1 - prob)))

        assert_no_profitable_deviation(cost_1, x[0], 0.0, a / b)
        for t in range(2):
            def cost_2(v, t=t, x=x, a=a, b=b, c2=c2):
                return -(a - b * (x[0] + v) - c2[t]) * v

            assert_no_profitable_deviation(cost_2, x[1 + t], 0.0, a / b)


def test_bayesian_derivative_wrt_prior():
    d_prior = bayes_derivative(BAYES, 5)  # (k, 3 outputs)
    d_intercept = bayes_derivative(BAYES, 0)
    h = 1e-6
    up, down = BAYES.copy(), BAYES.copy()
    up[:, 5] += h
    down[:, 5] -= h
    fd = (np.asarray(bayes(up).x) - np.asarray(bayes(down).x)) / (2 * h)
    for k, row in enumerate(BAYES):
        _, analytic = bayes_closed_form(*row)
        np.testing.assert_allclose(d_prior[k], analytic, rtol=1e-10)
        np.testing.assert_allclose(d_prior[k], fd[k], rtol=1e-7, atol=1e-9)
        # and w.r.t. the demand intercept: dq1/da = 1/(3b), dq2(t)/da = 1/(2b) - 1/(6b)
        b = row[1]
        np.testing.assert_allclose(d_intercept[k], [1 / (3 * b), 1 / (3 * b), 1 / (3 * b)],
                                   rtol=1e-10)


# --------------------------------------------------------------------------------------------
# Leader-follower (Stackelberg) and best responses
# --------------------------------------------------------------------------------------------


def _leader_cost(x, y, p):
    """Leader's cost; ``theta sin(omega q)`` makes the reduced problem non-convex."""
    a, b, c_l, _, theta, omega = p[0], p[1], p[2], p[3], p[4], p[5]
    return -(a - b * (x[0] + y[0]) - c_l) * x[0] + theta * jnp.sin(omega * x[0])


def _follower_cost(x, y, p):
    a, b, c_f = p[0], p[1], p[3]
    return -(a - b * (x[0] + y[0]) - c_f) * y[0]


LEADER_UPPER = 8.0


@jax.jit
def leader_follower(p, starts):
    return stackelberg(_leader_cost, _follower_cost, starts, jnp.ones(1), p,
                       leader_lower=0.0, leader_upper=LEADER_UPPER, follower_lower=0.0)


def analytic_best_response(x, a, b, c_f):
    return np.maximum(0.0, (a - c_f - b * x) / (2 * b))


def reduced_leader_cost(x, p):
    a, b, c_l, c_f, theta, omega = p
    y = analytic_best_response(x, a, b, c_f)
    return -(a - b * (x + y) - c_l) * x + theta * np.sin(omega * x)


STARTS = np.array([[1.0], [4.0], [7.0]])


def test_stackelberg_duopoly():
    for a, b, c_l, c_f in [(10.0, 1.0, 1.0, 1.0), (14.0, 1.5, 2.0, 1.0)]:
        p = np.array([a, b, c_l, c_f, 0.0, 1.0])
        eq = leader_follower(p, STARTS)
        assert isinstance(eq, StackelbergEquilibrium)
        assert bool(eq.converged) and int(eq.follower_status) == Status.SUCCESS
        q_l = (a - 2 * c_l + c_f) / (2 * b)
        q_f = (a - c_f - b * q_l) / (2 * b)
        assert float(eq.leader[0]) == pytest.approx(q_l, rel=1e-12)
        assert float(eq.follower[0]) == pytest.approx(q_f, rel=1e-12)
        assert float(eq.leader_cost) == pytest.approx(reduced_leader_cost(q_l, p), rel=1e-12)
        # the leader cannot do better anticipating the follower; the follower best-responds
        assert_no_profitable_deviation(lambda v, p=p: reduced_leader_cost(v, p), q_l, 0.0,
                                       LEADER_UPPER)
        assert_no_profitable_deviation(
            lambda v, a=a, b=b, c_f=c_f, q_l=q_l: -(a - b * (q_l + v) - c_f) * v, q_f, 0.0,
            a / b)


def test_stackelberg_multistart_non_convex():
    """Reduced leader cost -(4.5 q - q^2/2) + 2 sin(2q) has local minima at q ~ 2.603 and
    q ~ 5.386 (global); a start in the wrong basin finds the local one, multi-start the best."""
    p = np.array([10.0, 1.0, 1.0, 1.0, 2.0, 2.0])
    grid = np.linspace(0.0, LEADER_UPPER, 160001)
    values = reduced_leader_cost(grid, p)
    q_global = grid[np.argmin(values)]
    assert q_global == pytest.approx(5.386, abs=1e-3)

    local = leader_follower(p, np.full((3, 1), 2.0))  # every start in the worse basin
    assert bool(local.converged)
    assert float(local.leader[0]) == pytest.approx(2.603, abs=1e-3)
    r = float(local.leader[0])
    # it is a genuine local minimum of the reduced cost: R'(r) = 0 and R''(r) > 0
    dr = -4.5 + r + 4 * np.cos(2 * r)
    assert abs(dr) < 1e-10 and 1 - 8 * np.sin(2 * r) > 0

    best = leader_follower(p, np.array([[2.0], [4.0], [5.0]]))
    assert bool(best.converged)
    q = float(best.leader[0])
    assert q == pytest.approx(q_global, abs=1e-4)
    assert float(best.leader_cost) < float(local.leader_cost) - 1.0
    assert float(best.leader_cost) <= values.min() + 1e-9
    assert float(best.follower[0]) == pytest.approx(analytic_best_response(q, 10.0, 1.0, 1.0),
                                                    rel=1e-12)
    res = minimize_scalar(lambda v: reduced_leader_cost(v, p), bounds=(5.0, 6.0),
                          method="bounded", options={"xatol": 1e-12})
    assert q == pytest.approx(res.x, abs=1e-7)


def _partial_follower_cost(x, y, p):
    """``exp(y) - (x - 2) y``: the best response ``y = log(x - 2)`` exists only for x > 2."""
    return jnp.exp(y[0]) - (x[0] - 2.0) * y[0]


def _partial_leader_cost(x, y, p):
    """Reduced cost ``(x - 3)^2 - log(x - 2)``: minimum at ``x = (5 + sqrt 3) / 2``."""
    return (x[0] - 3.0) ** 2 - y[0]


@jax.jit
def partial_leader_follower(starts):
    return stackelberg(_partial_leader_cost, _partial_follower_cost, starts, jnp.zeros(1),
                       None, leader_lower=0.0, leader_upper=6.0)


def test_stackelberg_follower_failure_reaches_the_result():
    """The follower has no best response for x <= 2. A leader started there is not allowed to
    iterate on the failed follower's output: its first-order condition is NaN, the start
    reports NONFINITE, and with only such starts the result is not converged. (At 8f31d2c the
    leader iterated on the output of the failed follower solves -- a diverging y and its
    'implicit derivative' -- and here happened to end at the optimum: luck, not a
    certificate.) A start where the follower exists finds the optimum, certified against the
    closed form."""
    bad = partial_leader_follower(jnp.array([[1.0]]))
    assert int(bad.status) == Status.NONFINITE and not bool(bad.converged)
    assert int(bad.follower_status) != Status.SUCCESS
    both = partial_leader_follower(jnp.array([[1.0], [4.0]]))
    assert bool(both.converged) and int(both.follower_status) == Status.SUCCESS
    x_star = (5.0 + np.sqrt(3.0)) / 2.0
    assert float(both.leader[0]) == pytest.approx(x_star, rel=1e-12)
    assert float(both.follower[0]) == pytest.approx(np.log(x_star - 2.0), rel=1e-12)
    assert_no_profitable_deviation(lambda v: (v - 3.0) ** 2 - np.log(v - 2.0), x_star, 2.0 + 1e-9,
                                   6.0)


def _br(x, p):
    return best_response(_follower_cost, x[None], jnp.ones(1), p, lower=0.0).value[0]


best_resp = jax.jit(jax.vmap(jax.value_and_grad(_br), in_axes=(0, None)))


def test_best_response_and_slope():
    a, b, c_f = 10.0, 2.0, 1.0
    p = np.array([a, b, 0.0, c_f, 0.0, 1.0])
    xs = np.array([0.0, 1.0, 3.0, 4.4, 4.6, 6.0])  # BR hits 0 for x > (a - c_f) / b = 4.5
    y, slope = best_resp(xs, p)
    np.testing.assert_allclose(np.asarray(y), analytic_best_response(xs, a, b, c_f),
                               rtol=1e-12, atol=TOL)
    interior = xs < (a - c_f) / b
    np.testing.assert_allclose(np.asarray(slope), np.where(interior, -0.5, 0.0), rtol=1e-12,
                               atol=1e-15)
    for x, yy in zip(xs, np.asarray(y), strict=True):
        assert_no_profitable_deviation(lambda v, x=x: -(a - b * (x + v) - c_f) * v, yy, 0.0,
                                       a / b)


# --------------------------------------------------------------------------------------------
# Nash bargaining
# --------------------------------------------------------------------------------------------

# Two players split a surplus S; player i's utility is x_i - kappa_i x_i^2 (kappa = 0: linear)
# and its disagreement utility d_i. Constraint x1 + x2 <= S (a multiplier), box x1 <= cap.
# params: w1, w2, d1, d2, S, cap, kappa1, kappa2


def _utilities(x, p):
    return jnp.stack([x[0] - p[6] * x[0] ** 2, x[1] - p[7] * x[1] ** 2])


def _bargain(p):
    return nash_bargaining(
        lambda x, p: -_utilities(x, p),  # costs
        lambda p: -p[2:4],  # disagreement costs
        lambda p: p[0:2],
        p[2:4] + 0.1,  # start inside the individually rational region
        p,
        upper=jnp.stack([p[5], jnp.inf]),
        constraints=lambda x, p: (p[4] - x[0] - x[1])[None],
        n_constraints=1,
    )


bargain = jax.jit(jax.vmap(_bargain))

BARGAIN = np.array([  # w1, w2, d1, d2, S, cap, k1, k2
    [1.0, 1.0, 0.0, 0.0, 10.0, 100.0, 0.0, 0.0],  # equal split
    [2.0, 1.0, 0.0, 0.0, 9.0, 100.0, 0.0, 0.0],  # shares 2/3, 1/3
    [0.3, 0.7, 0.0, 0.0, 1.0, 100.0, 0.0, 0.0],  # shares = weights
    [1.0, 3.0, 1.0, 2.0, 7.0, 100.0, 0.0, 0.0],  # disagreement points
    [1.0, 1.0, 0.0, 0.0, 10.0, 3.0, 0.0, 0.0],  # cap on player 1 binds
    [1.0, 2.0, 0.5, 0.0, 3.0, 100.0, 0.1, 0.3],  # concave utilities
    [1.0, 1.0, 0.0, 0.0, 10.0, 100.0, 0.5, 0.5],  # satiation: x_i = 1, S slack
])


def _bargain_kkt(x, lam, p):
    """Box-MCP residuals: F = d/dx[-sum w log(u - d)] - J_g^T lam (J_g = [-1, -1]) and g."""
    w, d, s, kappa = p[0:2], p[2:4], p[4], p[6:8]
    u = x - kappa * x**2
    du = 1 - 2 * kappa * x
    f = -w * du / (u - d) + lam[0]
    return f, s - x[0] - x[1]


def test_nash_bargaining_closed_forms_and_kkt():
    eq = bargain(BARGAIN)
    assert bool(jnp.all(eq.converged))
    x, lam = np.asarray(eq.x), np.asarray(eq.multipliers)
    assert lam.shape == (len(BARGAIN), 1)
    for k, p in enumerate(BARGAIN):
        w, d, s, cap = p[0:2], p[2:4], p[4], p[5]
        f, g = _bargain_kkt(x[k], lam[k], p)
        # x2 is free: F2 = 0; x1 <= cap: F1 = 0 inside, F1 <= 0 at the cap
        assert f[1] == pytest.approx(0.0, abs=1e-11)
        if x[k, 0] < cap - 1e-9:
            assert f[0] == pytest.approx(0.0, abs=1e-11)
        else:
            assert f[0] <= 1e-11
        assert lam[k, 0] >= -TOL and g >= -TOL and abs(lam[k, 0] * g) < 1e-11
        assert np.all(x[k] - p[6:8] * x[k] ** 2 > d)  # individually rational
        if k < 4:  # linear utilities: x_i = d_i + w_i / sum(w) (S - sum(d)), lambda = ...
            np.testing.assert_allclose(x[k], d + w / w.sum() * (s - d.sum()), rtol=1e-12)
            assert lam[k, 0] == pytest.approx(w.sum() / (s - d.sum()), rel=1e-12)
            assert lam[k, 0] > 0  # the surplus constraint binds
    np.testing.assert_allclose(x[0], [5.0, 5.0], rtol=1e-12)
    np.testing.assert_allclose(x[1], [6.0, 3.0], rtol=1e-12)
    np.testing.assert_allclose(x[2], [0.3, 0.7], rtol=1e-12)
    # binding cap: x1 = 3, x2 = 7; 1/x2 = lam, and player 1 would like more: 1/x1 > lam
    np.testing.assert_allclose(x[4], [3.0, 7.0], rtol=1e-12)
    assert lam[4, 0] == pytest.approx(1 / 7, rel=1e-12)
    # satiation: both at the bliss point x_i = 1/(2 kappa_i), the surplus constraint slack
    np.testing.assert_allclose(x[6], [1.0, 1.0], rtol=1e-12)
    np.testing.assert_allclose(lam[6], 0.0, atol=TOL)


def _log_nash_product(x1, x2, p):
    w, d, kappa = p[0:2], p[2:4], p[6:8]
    u1 = x1 - kappa[0] * x1**2 - d[0]
    u2 = x2 - kappa[1] * x2**2 - d[1]
    feasible = (u1 > 0) & (u2 > 0) & (x1 + x2 <= p[4]) & (x1 <= p[5])
    with np.errstate(invalid="ignore", divide="ignore"):
        val = w[0] * np.log(u1) + w[1] * np.log(u2)
    return np.where(feasible, val, -np.inf)


@pytest.mark.parametrize("k", [3, 4, 5])
def test_nash_bargaining_brute_force(k):
    """The 2-variable agreement maximises the Nash product: a coarse grid over all splits,
    then a fine grid around the coarse optimum."""
    p = BARGAIN[k]
    x = np.asarray(bargain(BARGAIN).x[k])
    s = p[4]
    best = float(_log_nash_product(x[0], x[1], p))
    assert np.isfinite(best)
    lo, hi, n = np.zeros(2), np.full(2, s), 1201
    for _ in range(2):
        g1, g2 = np.meshgrid(np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n),
                             indexing="ij")
        vals = _log_nash_product(g1, g2, p)
        i, j = np.unravel_index(np.argmax(vals), vals.shape)
        step = (hi - lo) / (n - 1)
        assert best >= vals.max() - 1e-12  # no grid point beats the solver's agreement
        assert abs(g1[i, j] - x[0]) <= 2 * step[0] and abs(g2[i, j] - x[1]) <= 2 * step[1]
        centre = np.array([g1[i, j], g2[i, j]])
        lo, hi = centre - 3 * step, centre + 3 * step
    assert step.max() < 1e-4


def test_bargaining_weights_enumerated():
    """Shares equal the weights for a grid of weight vectors (linear utilities, d = 0, S = 1,
    x0 = (0.1, 0.1) strictly individually rational).

    (At 8f3a616 the team cost was where(inside, -GNP, nan), whose derivative outside the
    individually rational region is 0, not NaN: Newton left the region and reported SUCCESS at
    points like x = (100, -99).)"""
    ws = np.array(list(itertools.product([0.2, 1.0, 3.5], repeat=2)))
    p = np.zeros((len(ws), 8))
    p[:, 0:2] = ws
    p[:, 4] = 1.0
    p[:, 5] = 100.0
    # pad to the compiled batch size so no new compile is triggered
    batches = [p[i: i + len(BARGAIN)] for i in range(0, len(p), len(BARGAIN))]
    shares, ok = [], []
    for chunk in batches:
        pad = np.concatenate([chunk, BARGAIN[: len(BARGAIN) - len(chunk)]])
        eq = bargain(pad)
        ok.append(np.asarray(eq.converged[: len(chunk)]))
        shares.append(np.asarray(eq.x[: len(chunk)]))
    shares, ok = np.concatenate(shares), np.concatenate(ok)
    # a converged agreement must be individually rational (the log's domain) ...
    assert np.all(shares[ok] > 0), shares[ok]
    # ... and here every problem is benign: all converge to the weights
    assert np.all(ok)
    np.testing.assert_allclose(shares, ws / ws.sum(axis=1, keepdims=True), rtol=1e-12)
