"""Tests of the ctip model at N = 2: reference values, the equilibrium property (no profitable
deviation on a brute-force grid with the second stage re-solved), the restarts, the shared
constraint's KKT conditions, implicit derivatives against finite differences, boundaries and
kinks, and the optimal policy against a grid search.

Compile time dominates, so every N = 2 equilibrium of this file (both regimes and ``compare``,
the grid searches of the optimal-policy certificate and the finite differences included) comes
from one compiled program, :data:`_SOLVE`, called on fixed-size chunks of :data:`BATCH` points;
the optimal policies from one more (a module-scoped fixture). The tests that need none of these
programs (the second stage, the profits for every N, N = 3, 4 and 6) are in
``tests/test_ctip_chains.py``, so that ``pytest-xdist`` can run the two files on two workers.
"""

import functools
import inspect
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxgames import Status
from jaxgames._contract import check_model
from jaxgames.models import ctip

D = ctip.DEFAULT
#: Points per compiled call: every call has this batch size, so a program compiles once per N.
BATCH = 8


def batch(points):
    """Stack ``Params`` points (padded with the last one to a multiple of ``BATCH``)."""
    points = list(points)
    n = len(points)
    return stack(points + [points[-1]] * (-n % BATCH)), n


def stack(points):
    """Stack ``Params`` points along a leading batch axis."""
    N = ctip.n_chains(points[0])
    cols = {}
    for f in ctip.Params._fields:
        vals = [np.asarray(getattr(p, f), float) for p in points]
        if f in ctip.CHAIN_FIELDS:
            vals = [np.broadcast_to(v, (N,)) for v in vals]
        cols[f] = np.stack(vals)
    return ctip.Params(**cols)


def _both(p):
    sp, moq = ctip.equilibrium(p, "sp"), ctip.equilibrium(p, "moq")
    return sp, moq, ctip.compare_equilibria(sp, moq)


#: SP, MOQ and their comparison at a batch of points: the one equilibrium program of this file.
_SOLVE = jax.jit(jax.vmap(_both))


def _key(point):
    return b"".join(np.asarray(getattr(point, f), float).tobytes() for f in ctip.Params._fields)


#: ``(sp, moq, compare)`` of every N = 2 point solved so far, by the point's values: a point
#: that several tests use (the defaults, the status quo of the grid searches, both regimes of
#: one hypothesis example) is solved once. The solve of a point does not depend on the other
#: points of its batch (vmap), so a cached result is the one a new call would give.
_SOLVED = {}


def solve_all(points):
    """``(sp, moq, compare)`` at a list of points, in chunks of ``BATCH`` (one compiled
    program per N, whatever the number of points). Each distinct point is solved once
    (:data:`_SOLVED`; e.g. a common subsidy's lever grid is the diagonal of the targeted
    one's)."""
    points = list(points)
    todo = list({k: p for p in points if (k := _key(p)) not in _SOLVED}.items())
    if todo:
        P, n = batch([p for _, p in todo])
        outs = [_SOLVE(jax.tree_util.tree_map(lambda v, k=k: v[k:k + BATCH], P))
                for k in range(0, n, BATCH)]
        out = jax.tree_util.tree_map(lambda *v: np.concatenate([np.asarray(x) for x in v]),
                                     *outs)
        for i, (k, _) in enumerate(todo):
            _SOLVED[k] = jax.tree_util.tree_map(lambda x, i=i: x[i], out)
    return jax.tree_util.tree_map(lambda *v: np.stack(v),
                                  *[_SOLVED[_key(p)] for p in points])


def solve(points, regime):
    """Equilibria of ``regime`` at a list of points."""
    return solve_all(points)[ctip.REGIMES.index(regime)]


def solve1(point, regime):
    return jax.tree_util.tree_map(lambda v: v[0], solve([point], regime))


def prepared(point):
    return ctip._prepare(point)[0]


@jax.jit
def _profits_grid(pr, q, z, moq):
    """Expected profits at a batch of first-stage profiles (rows of q, z); stage 2 re-solved."""
    sp = jax.vmap(lambda qq, zz: ctip.outcome(pr, qq, zz, "sp").Pi)(q, z)
    mq = jax.vmap(lambda qq, zz: ctip.outcome(pr, qq, zz, "moq").Pi)(q, z)
    return jnp.where(moq, mq, sp)


def deviation_gain(point, eq, regime, n_coarse=61, n_fine=41):
    """Largest gain of any CSC from a unilateral deviation of its own ``(q_i, z_i)`` on a
    coarse grid over the whole relevant box and a fine grid around the equilibrium (MOQ:
    within the shared constraint). Returns (gain, tolerance) per CSC."""
    pr = prepared(point)
    N = len(eq.q)
    a, b = float(pr.a), float(pr.b)
    gains, tols = [], []
    for i in range(N):
        floor = max(0.0, float(pr.M) - (eq.q.sum() - eq.q[i])) if regime == "moq" else 0.0
        q_hi = a / b
        z_hi = max(4.0 * eq.z[i], 2.0 / max(float(pr.alpha[i]), 1e-3), 10.0)
        qs = np.concatenate([np.linspace(floor, q_hi, n_coarse),
                             np.clip(eq.q[i] + np.linspace(-0.05, 0.05, n_fine) * q_hi, floor,
                                     None)])
        zs = np.concatenate([np.linspace(0.0, z_hi, n_coarse),
                             np.clip(eq.z[i] + np.linspace(-0.05, 0.05, n_fine) * z_hi, 0.0,
                                     None)])
        Q, Z = np.meshgrid(qs, zs, indexing="ij")
        q = np.tile(eq.q, (Q.size, 1))
        z = np.tile(eq.z, (Q.size, 1))
        q[:, i], z[:, i] = Q.ravel(), Z.ravel()
        pi = np.asarray(_profits_grid(pr, q, z, regime == "moq"))[:, i]
        gains.append(pi.max() - eq.Pi[i])
        tols.append(1e-9 * (abs(eq.Pi[i]) + a * q_hi))
    return np.array(gains), np.array(tols)


# ----------------------------------------------------------------------------- references


def test_reference_values_sp():
    """The specification §3, SP at the defaults (independent scipy best-response values)."""
    eq = solve1(D, "sp")
    assert eq.status == Status.SUCCESS
    np.testing.assert_allclose(eq.q, 27.44, atol=5e-3)
    np.testing.assert_allclose(eq.z, 17.19, atol=5e-3)
    np.testing.assert_allclose(eq.Pi, 665.2, atol=5e-2)
    np.testing.assert_allclose(eq.EW, 3160.3, atol=5e-2)
    assert eq.mu == 0.0 and np.all(eq.e == 0.0)


def test_reference_values_moq():
    """The specification §3, MOQ at the defaults: M = 56 binds."""
    eq = solve1(D, "moq")
    assert eq.status == Status.SUCCESS and not eq.at_kink
    np.testing.assert_allclose(eq.q, 28.00, atol=5e-3)
    np.testing.assert_allclose(eq.z, 17.80, atol=5e-3)
    np.testing.assert_allclose(eq.mu, 1.777, atol=5e-4)
    # the specification prints 633.8; the engine and the independent SciPy loop
    # (test_matches_scipy_best_response_loop's oracle) both give 633.748: a rounding slip there.
    np.testing.assert_allclose(eq.Pi, 633.75, atol=5e-3)
    np.testing.assert_allclose(eq.Pi, ctip.profits_numpy(D, eq.q, eq.z, "moq"), rtol=1e-12)
    np.testing.assert_allclose(eq.EW, 3268.5, atol=5e-2)


def test_matches_scipy_best_response_loop():
    """The engine's equilibria equal the independent NumPy/SciPy variational best-response
    loop (its own water-filling second stage, brentq on mu) at an asymmetric point."""
    p = D._replace(v=np.array([0.2, 0.4]), delta=np.array([0.4, 0.6]), M=58.0)
    for regime in ctip.REGIMES:
        eq = solve1(p, regime)
        q, z, mu, _ = ctip.best_response_scipy(p, regime, tol=1e-10)
        assert eq.status == Status.SUCCESS
        np.testing.assert_allclose(eq.q, q, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(eq.z, z, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(eq.mu, mu, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(eq.Pi, ctip.profits_numpy(p, eq.q, eq.z, regime), rtol=1e-12)


# ----------------------------------------------------------------------------- equilibrium property

@st.composite
def points(draw):
    v = [draw(st.floats(0.05, 0.7)) for _ in range(2)]
    delta = [draw(st.floats(0.2, 0.9)) for _ in range(2)]
    alpha = [draw(st.floats(0.02, 0.1)) for _ in range(2)]
    sigma = draw(st.floats(0.0, 0.6))
    return D._replace(v=np.array(v), delta=np.array(delta), alpha=np.array(alpha),
                      sigma=np.array([sigma, sigma]), lam=draw(st.floats(0.0, 0.9)),
                      M=draw(st.floats(0.0, 70.0)), w_e=draw(st.floats(22.0, 50.0)))


@settings(max_examples=8, deadline=None, derandomize=True)
@given(points())
def test_no_profitable_deviation(p):
    """No CSC beats its equilibrium strategy anywhere on a grid over its own (q_i, z_i), with
    the second stage re-solved; asymmetric points, both regimes."""
    for regime in ctip.REGIMES:
        eq = solve1(p, regime)
        assert np.all(np.isfinite(eq.q)) and np.all(np.isfinite(eq.z))
        gain, tol = deviation_gain(p, eq, regime)
        if eq.status == Status.SUCCESS:
            assert np.all(gain <= tol), (regime, gain)
        else:
            # Flagged, and for a reason: the first-order point is not a best response.
            assert eq.status == Status.STAGNATED and not eq.converged, (regime, eq.status)
            assert eq.deviation_gain > ctip.CERT_TOL or np.any(gain > tol), regime
    # The SP game is well behaved everywhere in this range.
    assert solve1(p, "sp").status == Status.SUCCESS


#: MOQ points of the benchmark's random N = 2 sample (benchmarks/bench_ctip.py, seed 2:
#: indices 113, 146, 215) and their equilibrium (q, z). Newton from the start point converged
#: to a first-order point where one CSC sat on a local maximum of its payoff, relying on
#: top-ups (q_2 = 5.6, q_2 = 2.0, q_1 = 3.3; grid gains 0.45 %, 1.5 %, 0.9 %; flagged
#: STAGNATED before the restarts); a Gauss-Seidel loop of global best responses (grid, then
#: L-BFGS-B) from there converges to the (q, z) given.
RESTARTED = [
    (dict(v=[0.39953735913165167, 0.595852357164289], delta=[0.4432390071149556,
          0.6707237996422082], alpha=[0.05590712584653215, 0.041221689550481645],
          sigma=0.39048304204157247, lam=0.10758402602224813, M=27.638310922969236,
          w_e=25.335493274833027), [27.7002, 26.1681], [33.604, 72.734]),
    (dict(v=[0.3978384777954963, 0.5566635517945083], delta=[0.3789536011410346,
          0.6812676860131808], alpha=[0.04172832451393802, 0.043915872447959976],
          sigma=0.490313343312148, lam=0.027775390120943957, M=28.89154848573076,
          w_e=28.02365870422986), [27.4618, 26.7690], [45.098, 86.496]),
    (dict(v=[0.5609337797072373, 0.13395487379776858], delta=[0.5584657287393234,
          0.570080751679311], alpha=[0.056138945595872194, 0.07834333546674406],
          sigma=0.11691148868985074, lam=0.022116303249255908, M=24.38984213958396,
          w_e=26.26877635966842), [25.6334, 28.2198], [46.305, 14.451]),
]

#: SP point of the same sample (index 21, lam = 0.86) without a pure-strategy equilibrium.
NO_PURE_SP = dict(v=[0.2726384222343716, 0.43562833059946526],
                  delta=[0.6666118632421271, 0.43261319508831986],
                  alpha=[0.03058819007939051, 0.07463079383165688], sigma=0.4865524976320081,
                  lam=0.860774862232466, M=5.243024969274127, w_e=28.07210422247706)


def test_restart_from_the_certificates_deviation():
    """Where the first solve ends at a first-order point that a unilateral deviation beats, the
    solve restarts from that deviation (ctip.RESTARTS): at three random N = 2 points (MOQ) it
    then reaches the equilibrium that global best-response dynamics converge to, certified by
    the brute-force deviation grid. One SP point of the same sample has no pure-strategy
    equilibrium: it stays flagged STAGNATED, and the best replies show why -- chain 1's reply
    jumps from not investing to investing 32-41 as chain 2's investment z_2 crosses a switch
    point z_2*, while chain 2 replies with z_2 ~ 19.5 (> z_2*) to the first and with z_2 = 0
    (< z_2*) to the second, so the composed reply z_2 -> z_2' never meets the diagonal.
    (A scan of chain 2's strategies, q_2 in [0, 60], z_2 in [0, 80], with replies by a fine
    grid refined by a bounded Brent search, finds |reply - strategy| >= 0.82 everywhere.)"""
    pts = [ctip.make_params(2, **kw) for kw, _, _ in RESTARTED] + [
        ctip.make_params(2, **NO_PURE_SP)]
    sp, moq, _ = solve_all(pts)
    for k, (p, (_, q, z)) in enumerate(zip(pts, RESTARTED, strict=False)):
        one = jax.tree_util.tree_map(lambda v, k=k: v[k], moq)
        assert one.status == Status.SUCCESS and one.deviation_gain <= ctip.CERT_TOL, k
        np.testing.assert_allclose(one.q, q, atol=2e-3)
        np.testing.assert_allclose(one.z, z, atol=2e-2)
        gain, tol = deviation_gain(p, one, "moq")
        assert np.all(gain <= tol), (k, gain)
    assert sp.status[3] == Status.STAGNATED and not sp.converged[3]
    assert sp.deviation_gain[3] > ctip.CERT_TOL
    # Best replies on a grid of one CSC's own (q_i, z_i) (the shape of deviation_gain's grid,
    # so the compiled _profits_grid is reused): q in [20, 35] holds every reply.
    pr = prepared(pts[3])
    Q, Z = (g.ravel() for g in np.meshgrid(np.linspace(20.0, 35.0, 102),
                                           np.linspace(0.0, 60.0, 102), indexing="ij"))

    def reply(i, q_other, z_other):
        q, z = np.empty((Q.size, 2)), np.empty((Q.size, 2))
        q[:, i], z[:, i], q[:, 1 - i], z[:, 1 - i] = Q, Z, q_other, z_other
        k = np.argmax(np.asarray(_profits_grid(pr, q, z, False))[:, i])
        return Q[k], Z[k]

    # chain 2's order, the switch point z_2* of chain 1's reply there (bisection on z_2, the
    # replies by a fine z grid refined by a bounded Brent search)
    for q2, switch in ((28.0, 1.4354), (29.0, 2.8390)):
        for z2 in (0.0, switch - 0.4, switch + 0.4, switch + 5.0, 20.0):
            q1, z1 = reply(0, q2, z2)
            z2_reply = reply(1, q1, z1)[1]
            if z2 < switch:
                assert z1 == 0.0 and z2_reply > z2 + 15.0, (q2, z2, z1, z2_reply)
            else:
                assert z1 > 25.0 and z2_reply < min(z2, 4.0), (q2, z2, z1, z2_reply)


@jax.jit
def _q_jacobian(pr, q, z):
    return jax.jacfwd(lambda qq: ctip.outcome(pr, qq, z, "moq").Pi)(q)


def test_shared_constraint_kkt_binding_and_slack():
    """0 <= mu  perp  sum q - M >= 0, and each CSC's FOC in q_i holds with the common mu."""
    cases = ((56.0, True), (0.0, False), (40.0, False))
    solve_all([D._replace(M=M) for M, _ in cases])  # one batch
    for M, binding in cases:
        p = D._replace(M=M)
        eq = solve1(p, "moq")
        assert eq.status == Status.SUCCESS
        slack = eq.q.sum() - M
        assert slack >= -1e-12 and eq.mu >= 0.0
        if binding:
            assert eq.mu > 0.1 and abs(slack) <= 1e-10
        else:
            assert eq.mu == 0.0 and slack > 1.0
        pr = prepared(p)
        # d Pi_i / d q_i (own derivatives): the diagonal of the Jacobian.
        jac = _q_jacobian(pr, jnp.asarray(eq.q), jnp.asarray(eq.z))
        np.testing.assert_allclose(np.diag(jac) + eq.mu, 0.0, atol=1e-9)



def _theta_point(theta):
    sigma, lam, M, v = theta
    return D._replace(sigma=jnp.stack([sigma, sigma]), lam=lam, M=M, v=jnp.stack([v, v - 0.1]))


def _theta_outputs(t, regime):
    eq = ctip.equilibrium(_theta_point(t), regime)
    return jnp.concatenate([eq.q, eq.z, eq.EW[None], eq.mu[None]])


#: d(q, z, EW, mu)/d(sigma, lam, M, v), forward mode through the engine's implicit derivatives.
_JAC = {r: jax.jit(jax.jacfwd(lambda t, r=r: _theta_outputs(t, r))) for r in ctip.REGIMES}


@pytest.mark.parametrize("regime", ctip.REGIMES)
def test_implicit_derivatives_match_finite_differences(regime):
    """d(q, z, EW, mu)/d(sigma, lam, M, v) by implicit differentiation equals central
    differences, away from kinks (the MOQ constraint binds). The 8 perturbed points are solved
    in one batch by the shared program."""
    theta = np.array([0.2, 0.5, 56.0, 0.35])
    jac = np.asarray(_JAC[regime](jnp.asarray(theta)))
    h = np.array([1e-5, 1e-5, 1e-4, 1e-6])
    shifts = [theta + s * h[k] * np.eye(4)[k] for k in range(4) for s in (1.0, -1.0)]
    pts = [D._replace(sigma=np.array([t[0], t[0]]), lam=t[1], M=t[2],
                      v=np.array([t[3], t[3] - 0.1])) for t in shifts]
    eq = solve(pts, regime)
    assert np.all(eq.status == Status.SUCCESS)
    out = np.concatenate([eq.q, eq.z, eq.EW[:, None], eq.mu[:, None]], axis=1)
    fd = np.stack([(out[2 * k] - out[2 * k + 1]) / (2 * h[k]) for k in range(4)], axis=1)
    np.testing.assert_allclose(jac, fd, rtol=2e-5, atol=2e-5 * np.abs(fd).max())


#: MOQ with the second stage solved by the engine in every state (stage2="engine"), one
#: program for both tests. (The implicit derivatives w.r.t. the levers are compared in
#: benchmarks/bench_ctip.py --stage2-engine, not here: their program costs ~370 s of CPU to
#: compile.)
_SOLVE_ENGINE = jax.jit(functools.partial(ctip.equilibrium, regime="moq", stage2="engine"))


@pytest.mark.parametrize("M", [56.0, 40.0])
def test_stage2_engine_equals_closed_form(M):
    """stage2="engine" (the exact subgame (C5) by the engine's solve in each of the 2^N
    states; the first-stage Newton differentiates the payoffs twice through those solves)
    gives the closed form's equilibrium, with M binding (56) and slack (40). Both routes are
    exact, so they agree to the solves' round-off."""
    point = D._replace(sigma=np.array([0.2, 0.2]), lam=0.5, M=M, v=np.array([0.35, 0.25]))
    eng = _SOLVE_ENGINE(point)
    eq = solve1(point, "moq")
    assert eng.status == Status.SUCCESS and eq.status == Status.SUCCESS
    assert (eq.mu > 0.1) if M == 56.0 else (eq.mu == 0.0)
    for f in ("q", "z", "e", "EW", "mu", "Pi"):
        np.testing.assert_allclose(getattr(eng, f), getattr(eq, f), rtol=1e-10, atol=1e-10,
                                   err_msg=f)


# ----------------------------------------------------------------------------- boundaries, kinks


def test_boundaries_are_exact():
    """Free riding z_1 = 0 at v = (0.1, 0.6); q_2 = 0 for a chain that loses everything; no
    top-up when flexible supply is dear: exact zeros, no NaN."""
    free = D._replace(v=np.array([0.1, 0.6]))
    risky = D._replace(v=np.array([0.3, 1.0]), delta=np.array([0.5, 1.0]),
                       alpha=np.array([0.05, 0.0]))
    dear = D._replace(w_e=60.0)
    for regime in ctip.REGIMES:
        eq = solve([free, risky, dear], regime)
        assert np.all(eq.status == Status.SUCCESS)
        assert eq.z[0, 0] == 0.0 and eq.z[0, 1] > 10.0
        assert eq.q[1, 1] == 0.0 and eq.z[1, 1] == 0.0 and eq.q[1, 0] > 0.0
        assert np.all(eq.e[2] == 0.0)
        for f in eq._fields:
            assert np.all(np.isfinite(np.asarray(getattr(eq, f), float))), f


def test_equilibrium_on_a_kink_converges_and_is_certified():
    """w_e = 44, M = 0: the equilibrium sits where a lone disrupted CSC stops topping up
    (q = (a - w_e) / (2 b) with delta = 1/2); it is found through the homotopy, flagged
    at_kink, and no deviation on the grid beats it. Nearby points off the kink converge."""
    pts = [D._replace(w_e=w, M=0.0) for w in (42.0, 44.0, 46.0)]
    eq = solve(pts, "moq")
    assert np.all(eq.status == Status.SUCCESS)
    assert list(eq.at_kink) == [False, True, False]
    np.testing.assert_allclose(eq.q[1], 28.0, atol=1e-5)
    for k, p in enumerate(pts):
        one = jax.tree_util.tree_map(lambda v, k=k: v[k], eq)
        gain, tol = deviation_gain(p, one, "moq")
        assert np.all(gain <= tol), (k, gain)


def test_lambda_one_symmetric_split():
    """At lam = 1 only the sum of investments is determined: reported, symmetric split."""
    both = solve([D._replace(lam=1.0), D._replace(lam=1.0 - 1e-7)], "moq")
    eq, near = (jax.tree_util.tree_map(lambda v, k=k: v[k:k + 1], both) for k in (0, 1))
    assert eq.status[0] == Status.SUCCESS and not eq.z_unique[0]
    np.testing.assert_allclose(eq.z[0, 0], eq.z[0, 1], rtol=1e-9)
    assert near.z_unique[0]
    np.testing.assert_allclose(near.EW, eq.EW, rtol=1e-7)


def test_invalid_inputs_raise_before_compiling():
    with pytest.raises(ValueError, match="sigma"):
        ctip.equilibrium(D._replace(sigma=1.0))
    with pytest.raises(ValueError, match="v=1.5"):
        ctip.equilibrium(D._replace(v=np.array([0.3, 1.5])))
    with pytest.raises(ValueError, match=r"N must be an integer in \[2, 6\]"):
        ctip.make_params(7)
    with pytest.raises(ValueError, match="common length"):
        ctip.equilibrium(D._replace(v=np.array([0.3, 0.3, 0.3])))
    with pytest.raises(ValueError, match="regime"):
        ctip.equilibrium(D, "joint")
    stage2 = r"stage2 must be one of \['closed_form', 'engine'\], got 'mcp'"
    for f in (lambda: ctip.equilibrium(D, "moq", stage2="mcp"),
              lambda: ctip.equilibrium_moq(D, stage2="mcp"),
              lambda: ctip.compare(D, stage2="mcp"),
              lambda: ctip.optimal_policy(D, stage2="mcp")):
        with pytest.raises(ValueError, match=stage2):
            f()
    with pytest.raises(ValueError, match="levers"):
        ctip.optimal_policy(D, levers=("tax",))
    with pytest.raises(ValueError, match="bounds of lam"):
        ctip.optimal_policy(D, bounds={"lam": (0.0, 2.0)})


def test_traced_invalid_input_is_flagged():
    out = solve_all([D, D._replace(delta=np.array([0.5, 1.5]))])
    for eq in out:  # SP, MOQ, compare
        assert int(eq.status[0]) == Status.SUCCESS
        assert int(eq.status[1]) == Status.INVALID_INPUT and not bool(eq.converged[1])


def test_compare():
    """``compare`` (SP and MOQ at the same point) at the defaults: the MOQ welfare gain and the
    participation slack of the reference values; the chains would not join."""
    sp, moq, c = jax.tree_util.tree_map(lambda v: v[0], solve_all([D]))
    np.testing.assert_allclose(c.dEW, 3268.5 - 3160.3, atol=0.1)
    np.testing.assert_allclose(c.slack, 633.8 - 665.2, atol=0.1)
    np.testing.assert_array_equal(c.slack, moq.Pi - sp.Pi)
    np.testing.assert_array_equal(c.q_moq, moq.q)
    assert c.dEW == moq.EW - sp.EW and c.EW_sp == sp.EW
    assert not bool(c.participates) and bool(c.converged)


def test_compare_is_compare_equilibria(monkeypatch):
    """``compare(params)`` is ``compare_equilibria`` of the SP and the MOQ equilibrium at
    ``params`` (the tests above use the latter to share one compiled program). Checked on its
    wiring, without compiling: ``_solve`` replaced by distinct stand-in equilibria."""
    fake = {r: ctip.Equilibrium(*[v + k + 10 * (r == "moq") if v.dtype != bool else v | bool(k % 2)
                                  for k, v in enumerate(_zero_equilibrium())])
            for r in ctip.REGIMES}
    calls = []

    def fake_solve(pr, valid, N, regime, x0, solver, global_check=True, stage2="closed_form"):
        calls.append((regime, x0, global_check))
        return fake[regime]

    monkeypatch.setattr(ctip, "_solve", fake_solve)
    got = ctip.compare(D)
    want = ctip.compare_equilibria(fake["sp"], fake["moq"])
    assert [c[0] for c in calls] == ["sp", "moq"] and all(c[2] for c in calls)
    for f in ctip.Comparison._fields:
        np.testing.assert_array_equal(np.asarray(getattr(got, f)), np.asarray(getattr(want, f)))


def _zero_equilibrium():
    """Zeros shaped and typed as the fields of one N = 2 :class:`ctip.Equilibrium`."""
    per_chain = {"q", "z", "pi", "Pi", "e"}
    flags = {"at_kink", "z_unique", "converged", "assumptions_hold"}
    return [np.zeros(2) if f in per_chain else np.zeros((), bool) if f in flags
            else np.zeros((), np.int32) if f in ("iterations", "status") else np.zeros(())
            for f in ctip.Equilibrium._fields]


# ----------------------------------------------------------------------------- optimal policy

PROFILES = {
    "symmetric low risk": np.array([0.15, 0.15]),
    "symmetric high risk": np.array([0.5, 0.5]),
    "asymmetric": np.array([0.2, 0.5]),
}
#: The specification's very asymmetric profile: no feasible policy with a common sigma (and none on
#: the grid with targeted sigma_i either: the low-risk CSC free-rides, z_1 = 0, so its subsidy
#: share cannot compensate it).
VERY_ASYMMETRIC = np.array([0.1, 0.6])


@pytest.fixture(scope="module")
def policies():
    """Optimal policies at the three profiles (targeted sigma_i) and, last, the asymmetric one
    with a common sigma: one compiled program (``per_chain_sigma`` is traced)."""
    pts = [D._replace(v=v) for v in PROFILES.values()] + [D._replace(v=VERY_ASYMMETRIC)]
    per_chain = np.array([True, True, True, False])
    f = jax.jit(jax.vmap(lambda p, c: ctip.optimal_policy(p, per_chain_sigma=c)))
    return jax.tree_util.tree_map(np.asarray, f(stack(pts), per_chain))


#: The lever grid of the certificate: sigma (common, or one axis per CSC), lam, M.
GRID_SIGMA = np.linspace(0.0, 0.95, 5)
GRID_LAM = np.linspace(0.0, 1.0, 5)
GRID_M = np.linspace(0.0, 100.0, 6)


def _grid_axes(per_chain):
    return ([GRID_SIGMA, GRID_SIGMA, GRID_LAM, GRID_M] if per_chain
            else [GRID_SIGMA, GRID_LAM, GRID_M])


def _grid_points(p, per_chain):
    pts = []
    for c in itertools.product(*_grid_axes(per_chain)):
        s = np.array(c[:2]) if per_chain else np.array([c[0], c[0]])
        pts.append(p._replace(sigma=s, lam=c[-2], M=c[-1]))
    return pts


#: Grid searches of the certificate: (risk profile v, targeted sigma_i).
GRID_CASES = {
    "symmetric low risk": (PROFILES["symmetric low risk"], False),
    "symmetric high risk": (PROFILES["symmetric high risk"], False),
    "asymmetric": (PROFILES["asymmetric"], True),
    "very asymmetric, common": (VERY_ASYMMETRIC, False),
    "very asymmetric, targeted": (VERY_ASYMMETRIC, True),
}


@pytest.fixture(scope="module")
def grid_searches():
    """Best feasible EW^MOQ on the lever grid (converged grid points only) and the EW variation
    between it and its grid neighbours (the grid's resolution), per case of
    :data:`GRID_CASES`; ``(None, None)`` if no grid point is feasible. Every case's grid (and
    its status-quo SP point) is solved in one batch by the shared program."""
    pts, spans = [], {}
    for name, (v, per_chain) in GRID_CASES.items():
        p = D._replace(v=v)
        grid = [p] + _grid_points(p, per_chain)  # the status quo first: its SP profits
        spans[name] = (len(pts), len(grid), per_chain)
        pts += grid
    sp, moq, _ = solve_all(pts)
    out = {}
    for name, (start, n, per_chain) in spans.items():
        target = sp.Pi[start]
        eq = jax.tree_util.tree_map(lambda x, a=start + 1, b=start + n: x[a:b], moq)
        ok = eq.status == Status.SUCCESS
        assert ok.mean() >= 0.9, (name, ok.mean())
        feasible = ok & np.all(eq.Pi >= target - 1e-9 * np.abs(target), axis=1)
        if not feasible.any():
            out[name] = (None, None)
            continue
        EW = eq.EW.reshape([len(a) for a in _grid_axes(per_chain)])
        feas = feasible.reshape(EW.shape)
        best = np.unravel_index(np.argmax(np.where(feas, EW, -np.inf)), EW.shape)
        resolution = 0.0
        for d in range(EW.ndim):
            for s in (-1, 1):
                nb = list(best)
                nb[d] += s
                if 0 <= nb[d] < EW.shape[d] and ok.reshape(EW.shape)[tuple(nb)]:
                    resolution = max(resolution, abs(EW[tuple(nb)] - EW[best]))
        out[name] = (EW[best], resolution)
    return out


def test_optimal_policy_beats_grid_search(policies, grid_searches):
    """At three risk profiles the optimiser's EW is at least the best feasible grid point's
    minus the grid's resolution, with participation satisfied (targeted sigma_i)."""
    for k, name in enumerate(PROFILES):
        pol = jax.tree_util.tree_map(lambda x, k=k: x[k], policies)
        best, resolution = grid_searches[name]
        assert best is not None, name
        assert pol.converged and pol.feasible, (name, pol.status)
        assert np.all(pol.slack >= -1e-9 * np.abs(pol.Pi)), name
        assert pol.EW >= best - resolution, (name, pol.EW, best, resolution)
        # Better than the status quo's SP welfare (the platform pays off under participation).
        assert pol.EW > pol.EW_sp, name
        assert 0.0 <= pol.lam <= 1.0 and 0.0 <= pol.M <= 100.0
        assert np.all((pol.sigma >= 0.0) & (pol.sigma <= 0.95))
        assert pol.dEW == pol.EW - pol.EW_sp and pol.assumptions_hold
        # The induced MOQ equilibrium satisfies the shared constraint's complementarity.
        assert pol.mu >= 0.0 and pol.q.sum() >= pol.M - 1e-9 * max(pol.M, 1.0)
        assert pol.mu == 0.0 or abs(pol.q.sum() - pol.M) <= 1e-8 * max(pol.M, 1.0)


def test_policy_solve_functions(monkeypatch):
    """The sweepable policies: declared (contract checked), their per-CSC outputs carry the dim
    ``csc``, every output has a description; ``optimal_policy_default`` / ``_targeted`` are
    ``optimal_policy`` with the documented defaults (checked on the call, without compiling)."""
    check_model(ctip)
    assert {"optimal_policy_default", "optimal_policy_targeted"} <= set(ctip.SOLVE_FUNCTIONS)
    for f in ctip.Policy._fields:
        assert f in ctip.DESCRIPTIONS, f
    for f in ("sigma", "q", "z", "Pi", "slack"):
        assert ctip.OUTPUT_DIMS[f] == ("csc",), f
    for f in ("lam", "M", "EW", "EW_sp", "dEW", "mu"):
        assert f in ctip.OUTPUT_UNITS and f not in ctip.OUTPUT_DIMS, f
    # optimal_policy's own defaults: all levers, LEVER_BOUNDS, POLICY_OPTIMIZER, SOLVER.
    defaults = {k: v.default for k, v in inspect.signature(ctip.optimal_policy).parameters.items()}
    assert defaults["levers"] == ctip.LEVERS and defaults["bounds"] is None
    assert defaults["per_chain_sigma"] is False
    assert defaults["optimizer"] == ctip.POLICY_OPTIMIZER and defaults["solver"] == ctip.SOLVER
    calls = []
    monkeypatch.setattr(ctip, "optimal_policy", lambda *a, **k: calls.append((a, k)))
    ctip.optimal_policy_default(D)
    ctip.optimal_policy_targeted(D)
    assert calls == [((D,), {}), ((D,), {"per_chain_sigma": True})]


def test_infeasible_policy_is_reported(policies, grid_searches):
    """Common sigma, v = (0.1, 0.6): no lever setting on the grid satisfies participation (nor
    with targeted sigma_i); the optimiser reports INFEASIBLE, never a converged policy."""
    assert grid_searches["very asymmetric, common"] == (None, None)
    assert grid_searches["very asymmetric, targeted"] == (None, None)
    pol = jax.tree_util.tree_map(lambda x: x[3], policies)
    assert int(pol.status) == ctip.INFEASIBLE
    assert not pol.converged and not pol.feasible
    assert pol.sigma[0] == pol.sigma[1]
