"""Tests of the ctip model: reference values, the equilibrium property (no profitable deviation
on a brute-force grid with the second stage re-solved), the shared constraint's KKT conditions,
the second stage against an enumeration of active sets, permutation equivariance, implicit
derivatives against finite differences, boundaries and kinks, and the optimal policy against a
grid search.

Compiled functions are module-level and batched to a fixed size, so every test reuses them.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxgames import Status
from jaxgames.models import ctip

D = ctip.DEFAULT
BATCH = 4


def batch(points):
    """Stack ``Params`` points (padded with the last one to a multiple of ``BATCH``)."""
    points = list(points)
    n = len(points)
    points += [points[-1]] * (-n % BATCH)
    N = ctip.n_chains(points[0])
    cols = {}
    for f in ctip.Params._fields:
        vals = [np.asarray(getattr(p, f), float) for p in points]
        if f in ctip.CHAIN_FIELDS:
            vals = [np.broadcast_to(v, (N,)) for v in vals]
        cols[f] = np.stack(vals)
    return ctip.Params(**cols), n


_SOLVE = {r: jax.jit(jax.vmap(lambda p, r=r: ctip.equilibrium(p, r))) for r in ctip.REGIMES}


def solve(points, regime):
    """Equilibria at a list of points (one compiled program per regime and N)."""
    P, n = batch(points)
    out = _SOLVE[regime](P)
    return jax.tree_util.tree_map(lambda v: np.asarray(v)[:n], out)


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


@jax.jit
def _q_jacobian(pr, q, z):
    return jax.jacfwd(lambda qq: ctip.outcome(pr, qq, z, "moq").Pi)(q)


def test_shared_constraint_kkt_binding_and_slack():
    """0 <= mu  perp  sum q - M >= 0, and each CSC's FOC in q_i holds with the common mu."""
    for M, binding in ((56.0, True), (0.0, False), (40.0, False)):
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


# ----------------------------------------------------------------------------- second stage


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.integers(2, 4), st.data())
def test_second_stage_equals_enumeration(N, data):
    """The closed-form second stage equals the enumeration of all 2^N active sets and the
    engine's complementarity solve (ties included)."""
    ys = data.draw(st.lists(st.sampled_from([0.0, 5.0, 12.5, 20.0, 30.0, 47.0])
                            | st.floats(0.0, 60.0), min_size=N, max_size=N))
    y = np.array(ys)
    a, b, w_e = 100.0, data.draw(st.sampled_from([0.5, 1.0, 2.0])), data.draw(
        st.floats(20.0, 60.0))
    exact = np.asarray(_stage2(jnp.asarray(y), a, b, w_e))
    oracle = ctip.second_stage_enumerated(y, a, b, w_e)
    np.testing.assert_allclose(exact, oracle, atol=1e-10)
    sol = _stage2_mcp(jnp.asarray(y), a, b, w_e)
    assert sol.status == Status.SUCCESS
    np.testing.assert_allclose(np.asarray(sol.value), oracle, atol=1e-8)
    assert np.all(exact >= 0.0)


_stage2 = jax.jit(ctip.second_stage)
_stage2_mcp = jax.jit(ctip.second_stage_mcp)


# ----------------------------------------------------------------------------- structure


def test_permutation_equivariance_n3():
    """N = 3 with permuted chains gives permuted results."""
    p = ctip.make_params(3, v=[0.1, 0.3, 0.5], delta=[0.3, 0.5, 0.7], alpha=[0.04, 0.05, 0.06],
                         sigma=[0.1, 0.2, 0.3], M=60.0)
    perm = np.array([2, 0, 1])
    pp = p._replace(**{f: np.asarray(getattr(p, f))[perm] for f in ctip.CHAIN_FIELDS})
    eq = solve([p, pp], "moq")
    assert np.all(eq.status == Status.SUCCESS)
    for f in ("q", "z", "pi", "Pi", "e"):
        np.testing.assert_allclose(getattr(eq, f)[1], getattr(eq, f)[0][perm], rtol=1e-9,
                                   atol=1e-9)
    for f in ("mu", "EW", "EX"):
        np.testing.assert_allclose(getattr(eq, f)[1], getattr(eq, f)[0], rtol=1e-10)


def _theta_point(theta):
    sigma, lam, M, v = theta
    return D._replace(sigma=jnp.stack([sigma, sigma]), lam=lam, M=M, v=jnp.stack([v, v - 0.1]))


@pytest.mark.parametrize("regime", ctip.REGIMES)
def test_implicit_derivatives_match_finite_differences(regime):
    """d(q, z, EW)/d(sigma, lam, M, v) by implicit differentiation equals central differences,
    away from kinks (the MOQ constraint binds)."""
    theta = jnp.array([0.2, 0.5, 56.0, 0.35])

    def f(t):
        eq = ctip.equilibrium(_theta_point(t), regime)
        return jnp.concatenate([eq.q, eq.z, eq.EW[None], eq.mu[None]])

    jac = np.asarray(jax.jit(jax.jacfwd(f))(theta))
    fj = jax.jit(f)
    h = np.array([1e-5, 1e-5, 1e-4, 1e-6])
    fd = np.stack([(np.asarray(fj(theta + h[k] * np.eye(4)[k]))
                    - np.asarray(fj(theta - h[k] * np.eye(4)[k]))) / (2 * h[k])
                   for k in range(4)], axis=1)
    np.testing.assert_allclose(jac, fd, rtol=2e-5, atol=2e-5 * np.abs(fd).max())


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
    eq = solve([D._replace(lam=1.0)], "moq")
    assert eq.status[0] == Status.SUCCESS and not eq.z_unique[0]
    np.testing.assert_allclose(eq.z[0, 0], eq.z[0, 1], rtol=1e-9)
    near = solve([D._replace(lam=1.0 - 1e-7)], "moq")
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
    with pytest.raises(ValueError, match="levers"):
        ctip.optimal_policy(D, levers=("tax",))
    with pytest.raises(ValueError, match="bounds of lam"):
        ctip.optimal_policy(D, bounds={"lam": (0.0, 2.0)})


def test_traced_invalid_input_is_flagged():
    P, n = batch([D, D._replace(delta=np.array([0.5, 1.5]))])
    eq = _SOLVE["sp"](P)
    assert int(eq.status[0]) == Status.SUCCESS
    assert int(eq.status[1]) == Status.INVALID_INPUT and not bool(eq.converged[1])


def test_compare():
    c = jax.jit(ctip.compare)(D)
    np.testing.assert_allclose(c.dEW, 3268.5 - 3160.3, atol=0.1)
    np.testing.assert_allclose(c.slack, 633.8 - 665.2, atol=0.1)
    assert not bool(c.participates) and bool(c.converged)


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
    P, n = batch(pts)
    per_chain = np.array([True, True, True, False])
    f = jax.jit(jax.vmap(lambda p, c: ctip.optimal_policy(p, per_chain_sigma=c)))
    out = f(P, per_chain)
    return jax.tree_util.tree_map(lambda v: np.asarray(v)[:n], out)


def grid_search(p, per_chain):
    """Best feasible EW^MOQ on a lever grid (converged grid points only), and the EW variation
    between it and its grid neighbours (the grid's resolution)."""
    sig = np.linspace(0.0, 0.95, 5)
    lam = np.linspace(0.0, 1.0, 5)
    Ms = np.linspace(0.0, 100.0, 6)
    sp = solve1(p, "sp")
    axes = [sig, sig, lam, Ms] if per_chain else [sig, lam, Ms]
    pts = []
    for c in itertools.product(*axes):
        s = np.array(c[:2]) if per_chain else np.array([c[0], c[0]])
        pts.append(p._replace(sigma=s, lam=c[-2], M=c[-1]))
    eq = solve(pts, "moq")
    ok = eq.status == Status.SUCCESS
    assert ok.mean() >= 0.9, ok.mean()
    feasible = ok & np.all(eq.Pi >= sp.Pi - 1e-9 * np.abs(sp.Pi), axis=1)
    if not feasible.any():
        return None, None
    EW = eq.EW.reshape([len(a) for a in axes])
    feas = feasible.reshape(EW.shape)
    best = np.unravel_index(np.argmax(np.where(feas, EW, -np.inf)), EW.shape)
    resolution = 0.0
    for d in range(EW.ndim):
        for s in (-1, 1):
            nb = list(best)
            nb[d] += s
            if 0 <= nb[d] < EW.shape[d] and ok.reshape(EW.shape)[tuple(nb)]:
                resolution = max(resolution, abs(EW[tuple(nb)] - EW[best]))
    return EW[best], resolution


def test_optimal_policy_beats_grid_search(policies):
    """At three risk profiles the optimiser's EW is at least the best feasible grid point's
    minus the grid's resolution, with participation satisfied (targeted sigma_i)."""
    for k, (name, v) in enumerate(PROFILES.items()):
        pol = jax.tree_util.tree_map(lambda x, k=k: x[k], policies)
        best, resolution = grid_search(D._replace(v=v), per_chain=name == "asymmetric")
        assert best is not None, name
        assert pol.converged and pol.feasible, (name, pol.status)
        assert np.all(pol.slack >= -1e-9 * np.abs(pol.Pi)), name
        assert pol.EW >= best - resolution, (name, pol.EW, best, resolution)
        # Better than the status quo's SP welfare (the platform pays off under participation).
        assert pol.EW > pol.EW_sp, name
        assert 0.0 <= pol.lam <= 1.0 and 0.0 <= pol.M <= 100.0
        assert np.all((pol.sigma >= 0.0) & (pol.sigma <= 0.95))


def test_infeasible_policy_is_reported(policies):
    """Common sigma, v = (0.1, 0.6): no lever setting on the grid satisfies participation; the
    optimiser reports INFEASIBLE, never a converged policy."""
    best, _ = grid_search(D._replace(v=VERY_ASYMMETRIC), per_chain=False)
    assert best is None
    pol = jax.tree_util.tree_map(lambda x: x[3], policies)
    assert int(pol.status) == ctip.INFEASIBLE
    assert not pol.converged and not pol.feasible
    assert pol.sigma[0] == pol.sigma[1]
