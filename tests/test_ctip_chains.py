"""Tests of the ctip model that need no N = 2 equilibrium program (``tests/test_ctip.py`` has
those and the optimal policy; the two files compile disjoint programs, so ``pytest-xdist`` can
run them on two workers without compiling anything twice): the second stage against an
enumeration of active sets and the engine's complementarity solve, the smoothed second stage,
the expected profits for every N against a NumPy oracle, N = 3 permutation equivariance,
equilibria at N = 6, and the N = 4 point without a pure-strategy equilibrium.
"""

import functools
import itertools
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads
from test_ctip import deviation_gain, prepared, stack

from jaxgames import Status
from jaxgames.models import ctip

#: MOQ alone, one program per N (the N = 3 and N = 4 tests).
_SOLVE_MOQ = jax.jit(jax.vmap(lambda p: ctip.equilibrium(p, "moq")))


# ----------------------------------------------------------------------------- second stage


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.integers(2, ctip.MAX_N), st.data())
def test_second_stage_equals_enumeration(N, data):
    """The closed-form second stage equals the enumeration of all 2^N active sets (N = 2 ... 6)
    and the engine's complementarity solve (N <= 4: one compilation per N), ties included."""
    ys = data.draw(st.lists(st.sampled_from([0.0, 5.0, 12.5, 20.0, 30.0, 47.0])
                            | st.floats(0.0, 60.0), min_size=N, max_size=N))
    y = np.array(ys)
    a, b, w_e = 100.0, data.draw(st.sampled_from([0.5, 1.0, 2.0])), data.draw(
        st.floats(20.0, 60.0))
    exact = np.asarray(_stage2(jnp.asarray(y), a, b, w_e))
    oracle = ctip.second_stage_enumerated(y, a, b, w_e)
    np.testing.assert_allclose(exact, oracle, atol=1e-10)
    assert np.all(exact >= 0.0)
    if N <= 4:
        sol = _stage2_mcp(jnp.asarray(y), a, b, w_e)
        assert sol.status == Status.SUCCESS
        np.testing.assert_allclose(np.asarray(sol.value), oracle, atol=1e-8)


_stage2 = jax.jit(ctip.second_stage)
_stage2_mcp = jax.jit(ctip.second_stage_mcp)
_stage2_engine = jax.jit(ctip.second_stage_engine)


def test_second_stage_engine_scales_and_failure():
    """The engine's per-state solves (stage2="engine", N = 4, 96 states at once) equal the
    closed form for c = (a - w_e) / b from -70 (no top-ups) and 5e-3 to 1e6, orders from 1e-8
    to 1e3 times c (its scales are relative to max(|c|, max |y|)); a state whose solve fails
    (a NaN order) gets NaN top-ups and its failure status, never a plausible number."""
    rng = np.random.default_rng(0)
    sizes = np.array([1e-8, 1e-3, 0.3, 1.0, 3.0, 1e3])[:, None, None]
    for a, b, w_e in [(100.0, 1.0, 30.0), (1e4, 1e-2, 30.0), (1e-2, 1.0, 5e-3),
                      (1e6, 1e3, 1.0), (100.0, 1e6, 30.0), (30.0, 1.0, 100.0)]:
        c = (a - w_e) / b
        y = (rng.uniform(0.0, 1.0, (6, 16, 4)) * sizes * abs(c) / 4).reshape(-1, 4)
        e, status = _stage2_engine(jnp.asarray(y), a, b, w_e)
        assert status == Status.SUCCESS, (a, b, w_e)
        np.testing.assert_allclose(e, _stage2(jnp.asarray(y), a, b, w_e), rtol=0.0,
                                   atol=1e-12 * abs(c))
    y[5, 2] = np.nan
    e, status = _stage2_engine(jnp.asarray(y), a, b, w_e)
    e = np.asarray(e)
    assert status == Status.NONFINITE
    assert np.all(np.isnan(e[5])) and np.all(np.isfinite(np.delete(e, 5, axis=0)))
_outcome = jax.jit(ctip.outcome, static_argnums=3)


def test_smoothed_second_stage():
    """The homotopy's smoothed subgame (tau > 0): symmetric in the base deliveries (tied
    deliveries get identical top-ups), within N t log 2 of the exact subgame (its limit
    t -> 0), its level the root of x + sum_j (y_j + t softplus((x - y_j) / t)) = c to
    round-off, and its derivatives (implicit, custom JVP) right in forward and reverse mode
    to second order. Eager, N = 6, ties at a kink of the exact subgame."""
    c = 70.0  # (a - w_e) / b
    q = c / 5.5  # the N = 6 defaults' kink (delta = 1/2)
    y = np.array([[10.0] * 6,  # every top-up switches on here: x* = 10
                  [q] * 4 + [q / 2] * 2,  # two disruptions at the N = 6 defaults' kink
                  [3.0, 20.0, 5.0, 15.0, 8.0, 8.0]])  # the two smallest top up to 19/3
    exact = np.asarray(ctip.second_stage(jnp.asarray(y), 100.0, 1.0, 30.0))
    for t in (1.0, 1e-2, 1e-6):
        e = np.asarray(ctip.second_stage(jnp.asarray(y), 100.0, 1.0, 30.0, t))
        assert np.all(np.abs(e - exact) <= 6 * t * np.log(2.0) + 1e-12), t
        for row in range(len(y)):
            for i, j in itertools.combinations(range(6), 2):
                if y[row, i] == y[row, j]:
                    assert e[row, i] == e[row, j], (t, row)
        # the level x* from the largest top-up, e_j = t softplus((x* - y_j) / t)
        j = np.argmax(e, axis=1)
        rows = np.arange(len(y))
        u = e[rows, j] / t
        x = y[rows, j] + t * (u + np.log(-np.expm1(-u)))  # softplus^-1, overflow-free
        g = x + np.sum(y + t * np.logaddexp(0.0, (x[:, None] - y) / t), axis=1) - c
        np.testing.assert_allclose(g, 0.0, atol=1e-12 * c)
    f = lambda y, a, w_e, t: ctip.second_stage(y, a, 1.0, w_e, t)  # noqa: E731
    check_grads(jax.jit(f), (jnp.asarray(y), 100.0, 30.0, 0.5), order=2,
                              modes=("fwd", "rev"))


@pytest.mark.parametrize("N", range(2, ctip.MAX_N + 1))
def test_payoffs_match_numpy_oracle_for_every_n(N):
    """N = 2 ... 6: the expected profits (C4)/(C6) over all 2^N states, with the second stage,
    equal the independent NumPy oracle at an asymmetric point; the welfare parts add up (C7)."""
    rng = np.random.default_rng(N)
    p = ctip.make_params(N, v=rng.uniform(0.1, 0.6, N), delta=rng.uniform(0.3, 0.8, N),
                         alpha=rng.uniform(0.03, 0.08, N), sigma=rng.uniform(0.0, 0.5, N))
    pr = prepared(p)
    q, z = rng.uniform(40.0 / N, 80.0 / N, N), rng.uniform(0.0, 30.0, N)  # top-ups occur
    for regime in ctip.REGIMES:
        out = _outcome(pr, jnp.asarray(q), jnp.asarray(z), regime)
        np.testing.assert_allclose(out.Pi, ctip.profits_numpy(p, q, z, regime), rtol=1e-12)
        np.testing.assert_allclose(
            out.EW, out.CS + 10.0 * out.EX + out.Pi.sum() - out.subsidy - 50.0 * 0.5**2,
            rtol=1e-13)
        assert out.subsidy == pytest.approx(float(np.sum(pr.sigma * z)), rel=1e-14)
    assert np.any(np.asarray(_outcome(pr, jnp.asarray(q), jnp.asarray(z), "moq").e) > 0)


# ----------------------------------------------------------------------------- structure


def test_permutation_equivariance_n3():
    """N = 3 with permuted chains gives permuted results."""
    p = ctip.make_params(3, v=[0.1, 0.3, 0.5], delta=[0.3, 0.5, 0.7], alpha=[0.04, 0.05, 0.06],
                         sigma=[0.1, 0.2, 0.3], M=60.0)
    perm = np.array([2, 0, 1])
    pp = p._replace(**{f: np.asarray(getattr(p, f))[perm] for f in ctip.CHAIN_FIELDS})
    # MOQ only (the regime with the shared constraint and the second stage): at N = 3 the
    # program of both regimes would compile for minutes.
    eq = jax.tree_util.tree_map(np.asarray, _SOLVE_MOQ(stack([p, pp])))
    assert np.all(eq.status == Status.SUCCESS)
    for f in ("q", "z", "pi", "Pi", "e"):
        np.testing.assert_allclose(getattr(eq, f)[1], getattr(eq, f)[0][perm], rtol=1e-9,
                                   atol=1e-9)
    for f in ("mu", "EW", "EX"):
        np.testing.assert_allclose(getattr(eq, f)[1], getattr(eq, f)[0], rtol=1e-10)


def test_six_chains():
    """N = 6 (64 disruption states): both regimes converge and pass the model's local and grid
    certificates at six points, with the profits equal to the NumPy oracle and the shared
    constraint's complementarity: MOQ binding (symmetric and asymmetric vulnerabilities,
    asymmetric losses with M = 80) and slack (asymmetric losses, at a kink; the defaults;
    v = 0.5 with lam = 0.2). The defaults sit on the kink where every state with two
    disruptions switches top-ups at once, q_i = (a - w_e) / ((N - 1/2) b) (delta = 1/2), and
    so does v = 0.5, lam = 0.2, with interior investments. Those two failed with the
    log-sum-exp smoothing of the sorted closed form (the defaults and the M = 80 point before
    the homotopy adapted its step; v = 0.5, lam = 0.2 until the smoothing became symmetric in
    the base deliveries -- all three were flagged STAGNATED), so this test's brute-force grid
    of unilateral deviations checks them too. The seventh point is point 4 of the benchmark's
    N = 6 sample (benchmarks/bench_ctip.py --check-samples 6), whose first homotopy path
    stagnates (flagged STAGNATED until the last restart, the second path of widths, was
    added): MOQ reaches the equilibrium off any kink with M slack, also checked on the
    brute-force grid."""
    N = ctip.MAX_N
    v, d = np.linspace(0.15, 0.45, N), np.linspace(0.3, 0.7, N)
    pts = [ctip.make_params(N, M=80.0), ctip.make_params(N, v=v, M=80.0),
           ctip.make_params(N, v=v, delta=d, M=0.0),
           ctip.make_params(N), ctip.make_params(N, v=v, delta=d, M=80.0),
           ctip.make_params(N, v=0.5, lam=0.2), ctip.make_params(N, **SAMPLE6_4)]
    sp, moq = jax.tree_util.tree_map(np.asarray, _SOLVE_6(stack(pts)))
    for k, p in enumerate(pts):
        for regime, eq in zip(ctip.REGIMES, (sp, moq), strict=True):
            eq = jax.tree_util.tree_map(lambda x, k=k: x[k], eq)
            assert eq.status == Status.SUCCESS and eq.converged, (k, regime, eq.status)
            assert eq.deviation_gain <= ctip.CERT_TOL, (k, regime)
            np.testing.assert_allclose(eq.Pi, ctip.profits_numpy(p, eq.q, eq.z, regime),
                                       rtol=1e-12, atol=1e-9)
            if regime == "moq":
                slack = eq.q.sum() - float(p.M)
                assert eq.mu >= 0.0 and slack >= -1e-9 and min(eq.mu, abs(slack)) <= 1e-9
                if k >= 3:
                    gain, tol = deviation_gain(p, eq, regime)
                    assert np.all(gain <= tol), (k, gain)
    assert list(moq.mu > 0.0) == [True, True, False, False, True, False, False]  # binding/slack
    assert list(moq.at_kink) == [False, False, True, True, False, True, False]
    np.testing.assert_allclose(moq.q[6], [17.5261, 19.7445, 10.5876, 2.2278, 19.3883, 2.7151],
                               atol=2e-3)
    np.testing.assert_allclose(moq.z[6], [0.0, 0.0, 27.731, 0.0, 0.0, 0.0], atol=2e-2)
    for k in (3, 5):  # symmetric points on the kink: a symmetric equilibrium
        np.testing.assert_allclose(moq.q[k], (100.0 - 30.0) / (N - 0.5), atol=1e-5)
        np.testing.assert_allclose(moq.z[k], moq.z[k][0], rtol=1e-9)
    np.testing.assert_array_equal(moq.z[3], 0.0)
    np.testing.assert_allclose(moq.z[5], 8.769, atol=5e-4)


#: Point 4 of the benchmark's N = 6 sample (seed 6; benchmarks/bench_ctip.py, ``sample``).
SAMPLE6_4 = dict(
    v=[0.365406806803255, 0.1774666389182933, 0.5784776852266119, 0.5935021362534554,
       0.2314915524598328, 0.5786680703499403],
    alpha=[0.04998663359191191, 0.03929340483535686, 0.04502872335040957,
           0.035640555181289044, 0.06859104576670531, 0.0442656416735782],
    delta=[0.4041090512345795, 0.3423718626021106, 0.6661148756280435, 0.7082030729588464,
           0.3998642680973995, 0.7768786740823743],
    sigma=0.23795580512250447, lam=0.6239664849358348, M=42.587538119900586,
    w_e=27.49946065480738)

#: Both regimes at N = 6 (one point, its own program).
_SOLVE_6 = jax.jit(jax.vmap(lambda p: (ctip.equilibrium(p, "sp"), ctip.equilibrium(p, "moq"))))


#: Point 11 of the benchmark's N = 4 sample (seed 4; benchmarks/bench_ctip.py, ``sample``).
SAMPLE4_11 = dict(
    v=[0.4388337047199511, 0.5992065241320788, 0.34429580038091323, 0.5665092401870349],
    alpha=[0.044914538041759565, 0.04966256232886408, 0.03662833105237091,
           0.031871620691810446],
    delta=[0.3097912374663842, 0.78257040554329, 0.3841906020697152, 0.7197613991964068],
    sigma=0.00991132189596633, lam=0.6769741404307761, M=45.96023199696606,
    w_e=27.470101954235822)

#: The other first-order points (q, z) at SAMPLE4_11 that pass the local certificate, found by
#: the solve from 200 random and structured starts (``bench_ctip.py --moq4-scan``; 4 decimals).
MOQ4_FIRST_ORDER = [
    ([22.6951, 15.1827, 21.8724, 7.7734], [0.0, 32.67, 0.0, 0.0]),
    ([24.2881, 6.5816, 23.855, 12.6348], [0.0, 0.0, 0.0, 24.2774]),
]


#: Point 249 of the same sample: an equilibrium exists, reached by the Gauss-Seidel restart.
SAMPLE4_249 = dict(
    v=[0.34974659831181676, 0.27053319276440113, 0.31689683896478527, 0.41795572180300644],
    alpha=[0.06878145062655475, 0.07717582377783061, 0.04604646646350771,
           0.04740141422825634],
    delta=[0.5652328001252711, 0.48957746507876343, 0.5874301566138922, 0.7608763389298117],
    sigma=0.23589320484132115, lam=0.7980989865216452, M=14.866714796443041,
    w_e=25.740677103729343)


@functools.cache
def _moq4_points():
    """Points 11 and 249 of the N = 4 sample, one batch (one program, shared by two tests)."""
    pts = [ctip.make_params(4, **SAMPLE4_11), ctip.make_params(4, **SAMPLE4_249)]
    return pts, jax.tree_util.tree_map(np.asarray, _SOLVE_MOQ(stack(pts)))


def test_n4_point_without_pure_equilibrium():
    """Point 11 of the benchmark's N = 4 sample has no pure-strategy equilibrium that any
    method finds (module docstring): it stays flagged STAGNATED, for a reason -- the solve's
    first-order point is beaten by CSC 4 ordering nothing, on the brute-force deviation grid
    (second stage re-solved) -- and so are the two other first-order points of a multi-start
    scan (the first is where the SciPy loop stops; CSC 2 gains by ordering nothing there)."""
    (p, _), eqs = _moq4_points()
    eq = jax.tree_util.tree_map(lambda v: v[0], eqs)
    assert eq.status == Status.STAGNATED and not eq.converged
    assert eq.deviation_gain > ctip.CERT_TOL
    np.testing.assert_allclose(eq.q, [29.9921, 0.0, 29.3171, 5.6538], atol=2e-3)
    np.testing.assert_allclose(eq.z, [11.7502, 0.0, 8.3542, 0.0], atol=2e-3)
    gain, tol = deviation_gain(p, eq, "moq")
    assert gain[3] > 1.0 and gain[3] > tol[3], gain
    for k, (q, z) in enumerate(MOQ4_FIRST_ORDER):
        q, z = np.array(q), np.array(z)
        profile = SimpleNamespace(q=q, z=z, Pi=ctip.profits_numpy(p, q, z, "moq"))
        gain, tol = deviation_gain(p, profile, "moq")
        assert np.max(gain - tol) > 1.0, (k, gain)
        if k == 0:
            assert np.argmax(gain) == 1, gain  # CSC 2


def test_n4_point_249_solved_by_gauss_seidel_restart():
    """Point 249 of the N = 4 sample: the first path and the restart from the one best grid
    deviation end at local equilibria that CSC 4 beats by ordering and investing nothing; the
    restart from a Gauss-Seidel pass of every CSC's best grid reply (ctip.GAUSS_SEIDEL_RESTARTS)
    reaches the equilibrium, M slack, that the SciPy best-response loop converges to (its
    values to 3 decimals, bench_ctip.py --moq4-scan 249). Certified by both of the model's
    certificates and by the brute-force deviation grid."""
    (_, p), eqs = _moq4_points()
    eq = jax.tree_util.tree_map(lambda v: v[1], eqs)
    assert eq.status == Status.SUCCESS and eq.converged
    assert eq.deviation_gain <= ctip.CERT_TOL
    np.testing.assert_allclose(eq.q, [18.603, 19.940, 17.597, 10.200], atol=2e-3)
    np.testing.assert_allclose(eq.z, [15.053, 0.0, 4.749, 0.0], atol=2e-3)
    assert eq.mu == 0.0 and eq.q.sum() > float(p.M)
    np.testing.assert_allclose(eq.Pi, ctip.profits_numpy(p, eq.q, eq.z, "moq"), rtol=1e-12,
                               atol=1e-9)
    gain, tol = deviation_gain(p, eq, "moq")
    assert np.all(gain <= tol), gain
