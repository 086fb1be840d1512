"""Tests of the defender-attacker protection game (Xu, Zhuang & Liu 2015; the specification §2).

Equilibria are certified by their defining properties: the attacker's response against a
brute-force argmax of ``u_T``, the defender's optimum against a brute-force grid over
``(r, I)`` (no grid point may beat it), the nesting of the mechanisms, Proposition 1 and the
Table 3 classification. The baseline optima of the no-protection and backup mechanisms are
checked against values derived by hand (see ``test_baseline_optima_by_hand``).
"""

from __future__ import annotations

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxgames import Status
from jaxgames.models import defender_attacker as da

jax.config.update("jax_enable_x64", True)

NAMES = da.SOURCE_PARAMETERS
BASE = np.array([getattr(da.BASELINE, n) for n in NAMES])


def random_params(rng, n):
    """Each source parameter = baseline x a log-uniform factor in [1/4, 4] (Figure 7's range)."""
    return BASE * np.exp(rng.uniform(-math.log(4), math.log(4), (n, len(NAMES))))


def batch(values):
    n = len(values)
    return da.Params(*[jnp.asarray(values[:, i]) for i in range(len(NAMES))],
                     c_L=jnp.full(n, 0.4), c_D=jnp.full(n, 1.0))


def point(values):
    return da.Params(*[float(x) for x in values])


# ----------------------------------------------------------------------------- payoff oracle
#
# An independent implementation of the payoffs (10) and (11) and the best response, written
# from the printed equations (not from the model's formulas): every expectation over the
# uniform laws L ~ U(E_L (1 - c_L), E_L (1 + c_L)) and D ~ U(E_D (1 - c_D), E_D (1 + c_D)) is
# integrated exactly piece by piece. ``test_oracle_equals_the_printed_integrals`` checks the
# oracle itself against nested adaptive quadrature of the printed integrals.


def _uniform(mean, spread):
    return mean * (1.0 - spread), mean * (1.0 + spread)


def _e_min(c, a, b):
    """E[min(c, S)] for S ~ U(a, b) (point mass at a if b == a), c >= 0 an array."""
    c = np.asarray(c, float)
    if b == a:
        return np.minimum(c, a)
    m = np.clip(c, a, b)
    return ((m * m - a * a) / 2.0 + c * (b - m)) / (b - a)


def _e_excess(c, a, b):
    """E[(S - c)^+] for S ~ U(a, b)."""
    c = np.asarray(c, float)
    if b == a:
        return np.maximum(a - c, 0.0)
    m = np.clip(c, a, b)
    return ((b * b - m * m) / 2.0 - c * (b - m)) / (b - a)


def _e_stock(I, r, a, b):
    """E[int_0^L (I - r z)^+ dz] for L ~ U(a, b): the integrand integrates to
    ``I l - r l^2 / 2`` for l <= c = I / r and to ``I c / 2`` beyond (r = 0: ``I l``)."""
    I, r = np.broadcast_arrays(np.asarray(I, float), np.asarray(r, float))
    safe_r = np.where(r > 0, r, 1.0)
    c = np.where(r > 0, I / safe_r, np.inf)

    def g(l):
        return np.where(l <= c, I * l - r * l * l / 2.0, I * c / 2.0)

    if b == a:
        return g(a)
    m = np.clip(c, a, b)
    # int_a^m (I l - r l^2 / 2) dl + (b - m) I c / 2
    head = I * (m * m - a * a) / 2.0 - r * (m**3 - a**3) / 6.0
    tail = np.where(np.isfinite(c), (b - m) * I * np.where(np.isfinite(c), c, 0.0) / 2.0, 0.0)
    return (head + tail) / (b - a)


def oracle_days(p, r, k, I):
    """Contest days A, attacker-held days B and inventory-days H of (10)-(11) at (r, k, I)."""
    r, I = np.broadcast_arrays(np.asarray(r, float), np.asarray(I, float))
    l_lo, l_hi = _uniform(p.E_L, p.c_L)
    d_lo, d_hi = _uniform(p.E_D, p.c_D)
    s_lo, s_hi = (d_lo, d_hi) if k else (l_lo, l_hi)  # S = (1 - k) L + k D
    c = np.where(r > 0, I / np.where(r > 0, r, 1.0), np.where(I > 0, np.inf, 0.0))
    c_fin = np.where(np.isfinite(c), c, s_hi)  # c beyond the support: min(c, S) = S
    a_days = p.E_X + _e_min(c_fin, s_lo, s_hi) + k * (p.E_L - p.E_D)
    b_days = _e_excess(c_fin, s_lo, s_hi)
    h_days = I * p.E_X + _e_stock(I, r, l_lo, l_hi)
    return a_days, b_days, h_days


def oracle_payoffs(p, r, k, I, R):
    """``(u_G, u_T)`` of (10) and (11); the contest share r / (r + R) is 0 at r = R = 0."""
    r, I, R = np.broadcast_arrays(*(np.asarray(v, float) for v in (r, I, R)))
    a_days, b_days, h_days = oracle_days(p, r, k, I)
    tot = r + R
    share_g = np.where(tot > 0, r / np.where(tot > 0, tot, 1.0), 0.0)
    backup = k * r * (p.alpha * (p.E_X + p.E_L) + p.beta * (p.E_L - p.E_D))
    u_g = (share_g * p.v - p.gamma_G * r) * a_days - backup - p.h * h_days - p.m * r * b_days
    u_t = ((1.0 - share_g) * p.V - p.gamma_T * R) * a_days + (p.V - p.gamma_T * R) * b_days
    return u_g, u_t


def oracle_best_response(p, r, k, I):
    """argmax_R of (11): du_T/dR = V r A / (r + R)^2 - gamma_T (A + B) = 0, or R = 0."""
    a_days, b_days, _ = oracle_days(p, r, k, I)
    return np.maximum(np.sqrt(p.V * np.asarray(r, float) * a_days
                              / (p.gamma_T * (a_days + b_days))) - r, 0.0)


def _printed_payoffs(p, r, k, I, R):
    """(10) and (11) literally: nested adaptive quadrature over l and d (and E[X] for x)."""
    from scipy import integrate

    l_lo, l_hi = _uniform(p.E_L, p.c_L)
    d_lo, d_hi = _uniform(p.E_D, p.c_D)
    f_l, f_d = 1.0 / (l_hi - l_lo), 1.0 / (d_hi - d_lo)
    cov = I / r

    def ld(fn):
        return integrate.dblquad(lambda d, l: fn(l, d) * f_l * f_d, l_lo, l_hi, d_lo, d_hi,
                                 epsabs=1e-13, epsrel=1e-13)[0]

    contest = p.E_X + ld(lambda l, d: min(cov, (1 - k) * l + k * d) + k * (l - d))
    backup = k * r * (p.alpha * (p.E_X + p.E_L) + p.beta * ld(lambda l, d: l - d))
    stock = integrate.quad(
        lambda l: integrate.quad(lambda z: max(I - r * z, 0.0), 0.0, l, points=[cov],
                                 epsabs=1e-13, epsrel=1e-13)[0] * f_l,
        l_lo, l_hi, points=[cov], epsabs=1e-13, epsrel=1e-13)[0]
    holding = p.h * (I * p.E_X + stock)
    outage = ld(lambda l, d: max(k * d + (1 - k) * l - cov, 0.0))
    u_g = (r * p.v / (r + R) - p.gamma_G * r) * contest - backup - holding - p.m * r * outage
    u_t = (R * p.V / (r + R) - p.gamma_T * R) * contest + (p.V - p.gamma_T * R) * outage
    return u_g, u_t


@pytest.mark.parametrize("k", [0, 1])
@pytest.mark.parametrize("r, I, R", [(0.7, 0.0, 0.4), (1.3, 2.0, 0.9), (0.5, 6.0, 2.0),
                                     (2.0, 0.5, 0.0)])
def test_oracle_equals_the_printed_integrals(k, r, I, R):
    """The test oracle against (10)-(11) integrated numerically as printed."""
    p = da.BASELINE
    expected = _printed_payoffs(p, r, k, I, R)
    got = oracle_payoffs(p, r, k, I, R)
    np.testing.assert_allclose([float(got[0]), float(got[1])], expected, rtol=1e-9, atol=1e-11)


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(-math.log(4), math.log(4)), min_size=11, max_size=11),
       r=st.one_of(st.just(0.0), st.floats(1e-3, 20.0)), k=st.sampled_from([0, 1]),
       I=st.one_of(st.just(0.0), st.floats(0.0, 60.0)), R=st.floats(0.0, 20.0))
def test_model_payoffs_equal_the_oracle(values, r, k, I, R):
    """The model's payoffs (JAX) and best response equal the independent oracle."""
    p = point(BASE * np.exp(values))
    pay = da.payoffs(p, r, k, I, R)
    u_g, u_t = oracle_payoffs(p, r, k, I, R)
    scale = 1.0 + p.V * (p.E_X + p.E_L) * (1.0 + R) + p.v * (p.E_X + p.E_L) * (1.0 + r + I)
    assert float(pay.u_G) == pytest.approx(float(u_g), rel=1e-12, abs=1e-13 * scale)
    assert float(pay.u_T) == pytest.approx(float(u_t), rel=1e-12, abs=1e-13 * scale)
    R_hat = float(oracle_best_response(p, r, k, I))
    assert float(_br(p, r, k, I).R_hat) == pytest.approx(R_hat, rel=1e-10, abs=1e-12)


# ----------------------------------------------------------------------------- expectations


def _exact_moments(a, w, c):
    """E[min(c,S)], E[min(c,S)^2], E[(S-c)^+] for S ~ U(a, a+w), integrated exactly in rational
    arithmetic (the integrands are polynomials on [a, m] and [m, b], m = clip(c, a, b))."""
    a, w, c = Fraction(a), Fraction(w), Fraction(c)
    b = a + w
    m = min(max(c, a), b)
    m1 = ((m * m - a * a) / 2 + c * (b - m)) / w
    m2 = ((m ** 3 - a ** 3) / 3 + c * c * (b - m)) / w
    ex = ((b * b - m * m) / 2 - c * (b - m)) / w
    return np.array([float(m1), float(m2), float(ex)])


@settings(max_examples=300, deadline=None)
@given(a=st.floats(0.0, 20.0), w=st.floats(1e-3, 20.0), c=st.floats(0.0, 50.0))
def test_uniform_moments_equal_exact_integrals(a, w, c):
    got = np.array(da.uniform_moments(np.float64(a), np.float64(w), np.float64(c), xp=np))
    # a few ulps of the largest term of each closed form
    scale = (a + w + c) ** np.array([1, 2, 1])
    assert np.all(np.abs(got - _exact_moments(a, w, c)) <= 16 * np.finfo(float).eps * scale)


@settings(max_examples=100, deadline=None)
@given(a=st.floats(0.1, 20.0), w=st.floats(1e-3, 20.0), frac=st.floats(-0.5, 1.5))
def test_uniform_moments_equal_piecewise_exact_quadrature(a, w, frac):
    """Gauss-Legendre on each side of the kink c integrates the polynomial pieces exactly."""
    c = a + frac * w
    x, wt = np.polynomial.legendre.leggauss(8)
    nodes, weights = [], []
    for lo, hi in [(a, min(max(c, a), a + w)), (min(max(c, a), a + w), a + w)]:
        if hi > lo:
            nodes.append(lo + (hi - lo) * (x + 1) / 2)
            weights.append(wt * (hi - lo) / 2 / w)
    nodes, weights = np.concatenate(nodes), np.concatenate(weights)
    got = da.uniform_moments(a, w, c, xp=np)
    want = da.quadrature_moments(nodes, weights, c, xp=np)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * (a + w + abs(c)) ** 2)


def test_point_mass_moments():
    m1, m2, ex = da.uniform_moments(np.float64(3.0), np.float64(0.0), np.array([1.0, 3.0, 5.0]),
                                    xp=np)
    np.testing.assert_array_equal(m1, [1.0, 3.0, 3.0])
    np.testing.assert_array_equal(m2, [1.0, 9.0, 9.0])
    np.testing.assert_array_equal(ex, [2.0, 0.0, 0.0])


@pytest.mark.parametrize("k", [0, 1])
@pytest.mark.parametrize("r,I", [(1.0, 0.0), (1.0, 2.0), (0.5, 2.2), (2.0, 40.0), (0.0, 3.0)])
def test_days_uniform_law_vs_midpoint_quadrature_law(k, r, I):
    """The model's quadrature path with a midpoint rule of n cells for U(1-c, 1+c) converges to
    the closed form; min(c, S) and (S - c)^+ are linear but in the cell holding the kink, so the
    midpoint rule errs by at most w / (8 n^2) (w the width of the law)."""
    n = 4000
    mid = lambda spread: da.Quadrature(1 - spread + 2 * spread * (np.arange(n) + 0.5) / n,
                                       np.full(n, 1.0 / n))
    closed = da.contest_days(da.BASELINE, r, k, I)
    quad = da.contest_days(da.BASELINE._replace(law_L=mid(0.4), law_D=mid(1.0)), r, k, I)
    w = 2 * 0.4 * 5.0 if k == 0 else 2 * 1.0 * 1.0
    bound = w / (8 * n**2) * (1 + 1e-6)
    assert abs(float(closed.A) - float(quad.A)) <= bound
    assert abs(float(closed.B) - float(quad.B)) <= bound


def test_deterministic_law_two_ways():
    """c_L = c_D = 0 (closed form, zero width) and point-mass quadrature laws agree exactly."""
    p0 = da.BASELINE._replace(c_L=0.0, c_D=0.0)
    pq = da.BASELINE._replace(law_L=da.Quadrature.deterministic(),
                              law_D=da.Quadrature.deterministic())
    for k in (0, 1):
        for r, I in [(1.0, 0.5), (2.0, 12.0), (0.0, 1.0)]:
            a, b = da.contest_days(p0, r, k, I), da.contest_days(pq, r, k, I)
            np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-15, atol=1e-15)


def test_quadrature_validation():
    with pytest.raises(ValueError, match="sum to 1"):
        da.Quadrature((1.0, 1.0), (0.5, 0.6))
    with pytest.raises(ValueError, match="mean 1"):
        da.Quadrature((1.0, 2.0), (0.5, 0.5))
    with pytest.raises(ValueError, match=">= 0"):
        da.Quadrature((-1.0, 3.0), (0.5, 0.5))
    with pytest.raises(ValueError, match="as many weights"):
        da.Quadrature((1.0,), (0.5, 0.5))
    q = da.Quadrature.lognormal(0.5, 24)
    assert abs(np.dot(q.nodes, q.weights) - 1) < 1e-12
    assert hash(q) == hash(da.Quadrature.lognormal(0.5, 24))


def test_assumption_flag():
    assert bool(da.assumptions_hold(da.BASELINE))  # 5 (1 - 0.4) = 3 > 2 = 2 E_D
    assert not bool(da.assumptions_hold(da.BASELINE._replace(E_D=1.6)))
    assert not bool(da.assumptions_hold(da.BASELINE._replace(E_L=3.0)))


# ----------------------------------------------------------------------------- attacker


_br = jax.jit(da.attacker_best_response)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(-math.log(4), math.log(4)), min_size=11, max_size=11),
       r=st.one_of(st.just(0.0), st.floats(1e-100, 20.0)), k=st.sampled_from([0, 1]),
       I=st.floats(0.0, 60.0))
def test_best_response_is_the_argmax_of_u_T(values, r, k, I):
    # (0 < r < ~1e-200: the FOC's Jacobian ~ r (r + R)^-3 underflows; such points are flagged
    # by status, see attacker_best_response)
    p = point(BASE * np.exp(values))
    br = _br(p, r, k, I)
    assert int(br.status) == Status.SUCCESS
    R = float(br.R_hat)
    # the corrected closed form (12)
    cf = float(da.attacker_best_response_closed_form(p, np.float64(r), k, np.float64(I), xp=np))
    assert R == pytest.approx(cf, rel=1e-10, abs=1e-12)
    # brute force: u_T on a fine grid of R never beats u_T(R_hat)
    R_max = max(2 * math.sqrt(p.V * max(r, 1e-12) / p.gamma_T), 1e-9)
    grid = np.linspace(0.0, R_max, 20001)
    u_grid = oracle_payoffs(p, r, k, I, grid)[1]
    u_hat = float(oracle_payoffs(p, r, k, I, R)[1])
    assert u_grid.max() <= u_hat + 1e-12 * (1 + abs(u_hat))
    assert abs(grid[np.argmax(u_grid)] - R) <= grid[1] + 1e-12


def test_best_response_foc_certificate():
    """0 <= R  perp  -du_T/dR >= 0 at the engine's solution (autodiff of (11))."""
    for k in (0, 1):
        for r, I in [(0.3, 0.0), (2.0, 3.0), (6.0, 0.0), (0.01, 5.0)]:
            R = float(_br(da.BASELINE, r, k, I).R_hat)
            g = jax.grad(lambda x, r=r, k=k, I=I: da.payoffs(da.BASELINE, r, k, I, x).u_T)(R)
            if R > 0:
                assert abs(float(g)) < 1e-12
            else:
                assert float(g) <= 1e-12


def test_erratum_printed_G_is_not_the_best_response():
    """(12) prints G = V [..] / (gamma_T [..]) - r (no square root, no factor r) and Appendix 1
    V r [..] / (gamma_T [..]) - r (no square root). Neither maximises u_T; the engine's
    root of the FOC does, and equals the form with the square root."""
    p, r, k, I = da.BASELINE, 1.0, 1, 0.0
    days = da.contest_days(p, r, k, I)
    share = float(days.A) / float(days.A + days.B)
    printed_12 = p.V * share / p.gamma_T - r
    printed_app1 = p.V * r * share / p.gamma_T - r
    corrected = math.sqrt(p.V * r * share / p.gamma_T) - r
    R = float(_br(p, r, k, I).R_hat)
    assert R == pytest.approx(corrected, rel=1e-12)
    u = lambda x: float(da.payoffs(p, r, k, I, x).u_T)
    assert u(printed_12) < u(R) - 1e-3
    assert u(printed_app1) < u(R) - 1e-3


def test_best_response_limits_and_source_observations():
    p = da.BASELINE
    # r = 0: the attacker wins every contest day with R = 0^+; u_T = V (A + B)
    br = _br(p, 0.0, 0, 2.0)
    assert float(br.R_hat) == 0.0 and int(br.status) == Status.SUCCESS
    days = da.contest_days(p, 0.0, 0, 2.0)
    assert float(br.u_T) == pytest.approx(p.V * float(days.A + days.B), rel=1e-14)
    assert float(days.A + days.B) == pytest.approx(p.E_X + p.E_L, rel=1e-14)
    # Figure 4: R_hat rises, then falls in r, and is higher with backup (k = 1)
    rs = np.linspace(0.05, 8.0, 160)
    R0 = np.array([float(_br(p, r, 0, 0.0).R_hat) for r in rs])
    R1 = np.array([float(_br(p, r, 1, 0.0).R_hat) for r in rs])
    assert np.all(R1 >= R0) and np.any(R1 > R0)
    for R in (R0, R1):
        top = int(np.argmax(R))
        assert 0 < top < len(rs) - 1
        assert np.all(np.diff(R[: top + 1]) > 0) and np.all(np.diff(R[top:]) <= 0)
    # deterrence threshold: R_hat > 0 just below rho, = 0 at and above it
    for k in (0, 1):
        rho = float(da.deterrence_threshold(p, k, 0.0))
        assert float(_br(p, rho * (1 - 1e-6), k, 0.0).R_hat) > 0
        assert float(_br(p, rho, k, 0.0).R_hat) <= 1e-8 * rho
        assert float(_br(p, rho * 1.01, k, 0.0).R_hat) == 0.0


def test_invalid_inputs_raise_before_solving():
    with pytest.raises(ValueError, match=r"V=-1.0 is outside its allowed range \(0, inf\)"):
        da.equilibrium(da.BASELINE._replace(V=-1.0))
    with pytest.raises(ValueError, match=r"c_L=1.5 .* \[0, 1\]"):
        da.equilibrium(da.BASELINE._replace(c_L=1.5))
    with pytest.raises(ValueError, match="k .* must be 0 or 1"):
        da.attacker_best_response(da.BASELINE, 1.0, 0.5, 0.0)
    with pytest.raises(ValueError, match="mechanism must be one of"):
        da.equilibrium(da.BASELINE, "both")
    with pytest.raises(TypeError, match="Quadrature or None"):
        da.equilibrium(da.BASELINE._replace(law_L=(1.0,)))


# ----------------------------------------------------------------------------- defender

_compare = jax.jit(da.compare_mechanisms)
_compare_batch = jax.jit(jax.vmap(da.compare_mechanisms))


def _brute(p, k_values, inventory, n=301):
    """Brute-force max of u_G over a uniform (r, I) grid with the closed-form R_hat.

    Returns (max, value at the best cell's neighbours, best (r, I, k)). The box
    r <= V / gamma_T, I <= r_max sup S contains the optimum (module docstring)."""
    best = (-np.inf, None, None)
    for k in k_values:
        r_max = p.V / p.gamma_T
        c_max = p.E_D * (1 + p.c_D) if k else p.E_L * (1 + p.c_L)
        r = np.linspace(0.0, r_max, n)[:, None]
        I = np.linspace(0.0, r_max * c_max, n)[None, :] if inventory else np.zeros((1, 1))
        R = oracle_best_response(p, r, k, I)
        u = oracle_payoffs(p, r, k, I, R)[0]
        i, j = np.unravel_index(np.argmax(u), u.shape)
        if u[i, j] > best[0]:
            near = u[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2]
            best = (u[i, j], near.min(), (r[i, 0], I[0, j], k))
    return best


_MECH = {"none": ((0,), False), "backup": ((0, 1), False), "inventory": ((0,), True),
         "combined": ((0, 1), True)}


def _check_optimum(p, out):
    assert int(out.status) == Status.SUCCESS, int(out.status)
    for mech, (ks, inventory) in _MECH.items():
        u = float(getattr(out, f"u_G_{mech}"))
        top, near, _ = _brute(p, ks, inventory)
        # no grid point beats the reported optimum (beyond round-off)...
        assert top <= u + 1e-10 * (1 + abs(u)), (mech, top, u)
        # ...and the grid comes within its own resolution of it
        assert u - top <= max(top - near, 0.0) + 1e-10 * (1 + abs(u)), (mech, top, near, u)
        # the reported strategy is a real one: R is the attacker's best response, u_G its payoff
        r = float(getattr(out, f"r_{mech}"))
        k = int(getattr(out, f"k_{mech}")) if mech in ("backup", "combined") else 0
        I = float(getattr(out, f"I_{mech}")) if inventory else 0.0
        R = float(getattr(out, f"R_{mech}"))
        R_cf = float(oracle_best_response(p, r, k, I))
        assert R == pytest.approx(R_cf, rel=1e-9, abs=1e-12 * max(r, 1.0))
        u_cf = float(oracle_payoffs(p, r, k, I, R_cf)[0])
        assert u == pytest.approx(u_cf, rel=1e-10, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(values=st.lists(st.floats(-math.log(4), math.log(4)), min_size=11, max_size=11))
def test_defender_optimum_beats_brute_force_grid(values):
    p = point(BASE * np.exp(values))
    _check_optimum(p, _compare(p))


@pytest.fixture(scope="module")
def random_batch():
    vals = random_params(np.random.default_rng(20150218), 64)
    return vals, _compare_batch(batch(vals))


def test_batch_is_bit_identical_to_single_points(random_batch):
    """Every output of a point is the same to the last bit whether it is solved alone
    (unbatched program) or in a vmapped batch of 64 (issue 14: results must not depend on the
    batch width; at 9073486 ``u_G`` differed by one ulp between widths, see ``da._fence``)."""
    vals, out = random_batch
    assert np.all(np.asarray(out.converged))
    for i in (0, 5, 17, 40, 63):
        one = _compare(point(vals[i]))
        for name, a, b in zip(one._fields, one, out, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[i], err_msg=name)


def test_mechanisms_are_nested(random_batch):
    _, out = random_batch
    u = {m: np.asarray(getattr(out, f"u_G_{m}")) for m in da.MECHANISMS}
    assert np.all(u["combined"] >= u["backup"]) and np.all(u["combined"] >= u["inventory"])
    assert np.all(u["backup"] >= u["none"]) and np.all(u["inventory"] >= u["none"])
    # where a mechanism's protection is not used its payoff equals the smaller mechanism's
    k = np.asarray(out.k_backup)
    np.testing.assert_array_equal(u["backup"][k == 0], u["none"][k == 0])
    I = np.asarray(out.I_inventory)
    np.testing.assert_array_equal(u["inventory"][I == 0], u["none"][I == 0])


def test_proposition_1_and_table_3(random_batch):
    _, out = random_batch
    for mech in da.MECHANISMS:
        case = np.asarray(getattr(out, f"case_{mech}"))
        assert not np.isin(case, da.DOMINATED_CASES).any()
        assert not np.isin(case, [8]).any()  # weakly dominated: ties go to case #16
        r = np.asarray(getattr(out, f"r_{mech}"))
        R = np.asarray(getattr(out, f"R_{mech}"))
        k = (np.asarray(getattr(out, f"k_{mech}")) if mech in ("backup", "combined")
             else np.zeros_like(case))
        I = (np.asarray(getattr(out, f"I_{mech}")) if mech in ("inventory", "combined")
             else np.zeros_like(r))
        # an independent reading of Table 3
        for c, ri, ki, Ii, Ri in zip(case, r, k, I, R, strict=True):
            attack = Ri > da.POSITIVE_RTOL * max(ri, 1e-300)
            row = {(True, True): 0, (True, False): 1, (False, True): 2, (False, False): 3}[
                (ri > 0, Ii > 0)]
            col = {(True, 1): 0, (True, 0): 1, (False, 1): 2, (False, 0): 3}[(attack, int(ki))]
            assert c == da.TABLE3[row, col]
        if mech == "none":
            assert set(np.unique(case)) <= {10, 13, 16}
    # the random draw reaches both sides of the deterrence threshold and every protection
    combined = np.asarray(out.case_combined)
    assert {2, 5}.issubset(set(combined)) and np.isin(combined, [1, 3, 9, 11]).any()


def test_baseline_optima_by_hand():
    """At the baseline both optima have I = 0 and R > 0. With c = 0, r / (r + R) = s and
    r = s^2 rho, u_G = A v s - s^2 rho (gamma_G A + k K + m B) with rho = V A / (gamma_T (A+B)),
    so u* = (A v)^2 / (4 rho (gamma_G A + k K + m B)):
    none (A = 6, B = 5): rho = 40/11, u* = 144 / (4 * 40/11 * 1.7) = 99/17;
    backup (A = 10, B = 1, K = 0.02 * 11 + 0.05 * 4): rho = 200/33, u* = 275/42."""
    out = _compare(da.BASELINE)
    assert float(out.u_G_none) == pytest.approx(99 / 17, rel=1e-14)
    assert float(out.r_none) == pytest.approx((33 / 34) ** 2 * 40 / 11, rel=1e-12)
    assert float(out.R_none) == pytest.approx(40 / 11 * (33 / 34) * (1 / 34), rel=1e-12)
    assert float(out.u_G_backup) == pytest.approx(275 / 42, rel=1e-14)
    assert float(out.u_G_combined) == pytest.approx(275 / 42, rel=1e-14)
    assert int(out.case_combined) == 2 and int(out.case_none) == 10
    assert float(out.I_combined) == 0.0 and int(out.k_combined) == 1


def test_cheap_inventory_is_used():
    out = _compare(da.BASELINE._replace(h=0.05, V=1.0))
    assert float(out.I_combined) > 0 and float(out.I_inventory) > 0
    assert int(out.case_combined) in (1, 3) and int(out.case_inventory) in (9, 11)
    _check_optimum(da.BASELINE._replace(h=0.05, V=1.0), out)


def test_boundary_cases():
    # v = 0: nothing to win in the contest; the defender stays out (case #16, u_G = 0)
    out = _compare(da.BASELINE._replace(v=0.0))
    assert int(out.status) == Status.SUCCESS
    for mech in da.MECHANISMS:
        assert int(getattr(out, f"case_{mech}")) == 16
        assert float(getattr(out, f"u_G_{mech}")) == 0.0
        assert float(getattr(out, f"r_{mech}")) == 0.0
    # a strong defender deters the attacker (R = 0 exactly at the threshold, cases 5 / 13)
    strong = da.BASELINE._replace(V=0.5, gamma_T=1.0, gamma_G=0.01)
    out = _compare(strong)
    assert int(out.case_none) == 13 and float(out.R_none) == 0.0
    rho = float(da.deterrence_threshold(strong, 0, 0.0))
    assert float(out.r_none) == pytest.approx(rho, rel=1e-12)
    _check_optimum(strong, out)
    # backup that arrives after the outage (E[D] > E[X] + E[L]) leaves no contest days with
    # k = 1 at I = 0: those strategies are infeasible, not a failed solve
    odd = da.BASELINE._replace(E_D=4.0, E_X=1.5, E_L=1.25)
    out = _compare(odd)
    assert int(out.status) == Status.SUCCESS and not bool(out.assumptions_hold)
    assert int(out.k_backup) == 0 and float(out.u_G_backup) == float(out.u_G_none)


def test_attacker_solve_at_the_edge_of_the_feasible_set():
    """Slow backup (E_D > E_L): at the smallest feasible cover the contest share A / (A + B) is
    ~1e-16. The attacker's solve starts below its root and converges there (at 8f31d2c it
    started 1e8 times above the root and STAGNATED, which -- once follower failures reached
    the result -- flagged the whole equilibrium)."""
    odd = da.BASELINE._replace(E_D=4.0, E_X=1.5, E_L=1.25)
    pr, _ = da._prepare(odd)
    c_lo = float(da._feasible_cover(pr, jnp.asarray(1.0), jnp.asarray(8.0)))
    days = da.contest_days(odd, 1.0, 1, c_lo)
    assert 0 < float(days.A) / float(days.A + days.B) < 1e-12
    for c, rel in ((c_lo, None), (c_lo + 1e-6, 1e-8)):
        rho = float(da.deterrence_threshold(odd, 1, c))
        for s in (0.5, 0.9):
            r = s * s * rho
            br = _br(odd, r, 1, c * r)
            assert int(br.status) == Status.SUCCESS
            expected = float(oracle_best_response(odd, r, 1, c * r))
            if rel is None:  # A is pure round-off here (the oracle's A is 0): R ~ r
                assert 0 <= float(br.R_hat) <= 10 * r
            else:
                assert float(br.R_hat) == pytest.approx(expected, rel=rel)


@jax.jit
def _subproblems_without_follower_steps(p):
    pr, _ = da._prepare(p)
    return da._solve_subproblems(pr, ((0, False),), da.SEARCH, da.SOLVER,
                                 da.Newton(max_steps=0))


def test_follower_failure_reaches_the_subproblem_status():
    """With no Newton steps for the attacker every solve inside the defender's search fails
    (MAX_STEPS). The subproblems -- the defender's search, before the final re-check of the
    chosen point -- report it (at 8f31d2c they searched and polished on the unconverged
    responses and only the final re-check could flag the result)."""
    subs = _subproblems_without_follower_steps(da.BASELINE)
    assert np.all(np.asarray(subs.status) == Status.MAX_STEPS)


def test_unbounded_payoff_is_flagged():
    """Outside the assumption (E[D] > E[L]) the backup cost K = alpha (E_X + E_L) +
    beta (E_L - E_D) can be negative enough that u_G grows without bound in r beyond the
    deterrence threshold: there is no optimum. Found by benchmarks/robustness.py, where the
    search reported a finite 'optimum' with status SUCCESS (16.2, against 114.5 at the edge of
    a brute-force grid and 5.6e3 at r = 1e4). Mechanisms with backup now say UNBOUNDED."""
    p = da.Params(alpha=0.006681598454511879, beta=0.8154413420483593, V=12.483012249437316,
                  v=1.8680028205418764, h=1.1912696084870307, gamma_G=0.10248452625675684,
                  gamma_T=0.061381771517069666, m=0.31227133001737184, E_X=1.5117512389793715,
                  E_L=0.17529066189009165, E_D=1.4667131839485121, c_L=0.14597943152147697,
                  c_D=0.8612545938509572)
    u = [float(oracle_payoffs(p, r, 1, 0.0, 0.0)[0]) for r in (1e2, 1e3, 1e4)]
    assert u[0] < u[1] < u[2] and u[2] > 5e3  # R = 0 is the response: r >= rho here
    assert float(oracle_best_response(p, 1e2, 1, 0.0)) == 0.0
    out = _compare(p)
    assert not bool(out.assumptions_hold)
    assert int(out.status) == Status.UNBOUNDED and not bool(out.converged)


def test_invalid_point_is_flagged_under_vmap(random_batch):
    vals = np.array(random_batch[0])  # the fixture's shape: no recompilation
    vals[1, NAMES.index("E_L")] = -1.0
    out = _compare_batch(batch(vals))
    assert int(out.status[0]) == Status.SUCCESS
    assert int(out.status[1]) == Status.INVALID_INPUT and not bool(out.converged[1])
    assert _compare_batch._cache_size() == 1


def test_quadrature_laws_end_to_end():
    """A point-mass law through the quadrature path (kinks at the nodes) gives the same
    equilibrium as zero-width uniform laws (closed forms)."""
    p0 = da.BASELINE._replace(c_L=0.0, c_D=0.0, h=0.02)
    pq = p0._replace(law_L=da.Quadrature.deterministic(), law_D=da.Quadrature.deterministic())
    a, b = _compare(p0), jax.jit(da.compare_mechanisms)(pq)
    assert int(b.status) == Status.SUCCESS
    for mech in da.MECHANISMS:
        assert float(getattr(b, f"u_G_{mech}")) == pytest.approx(
            float(getattr(a, f"u_G_{mech}")), rel=1e-10)
    assert float(a.I_combined) > 0


def test_implicit_derivatives_equal_finite_differences():
    """du_G/dtheta of the polished optimum (implicit function theorem through the nested
    solves) against central differences at an interior optimum with inventory, and at the
    baseline (backup, I = 0) against the analytic du*/dv = 2 u* / v of
    ``test_baseline_optima_by_hand``. Also: ``equilibrium`` equals ``compare_mechanisms``."""
    vg = jax.jit(jax.value_and_grad(lambda q: da.equilibrium(q, "combined").u_G))
    p = da.BASELINE._replace(h=0.05, V=1.0)
    u, grad = vg(p)
    assert float(u) == pytest.approx(float(_compare(p).u_G_combined), rel=1e-13)
    for name in ("V", "h", "E_X", "gamma_G", "m"):
        x = getattr(p, name)
        eps = 1e-5 * x
        fd = (float(vg(p._replace(**{name: x + eps}))[0])
              - float(vg(p._replace(**{name: x - eps}))[0])) / (2 * eps)
        assert float(getattr(grad, name)) == pytest.approx(fd, rel=1e-6, abs=1e-9), name
    u0, g0 = vg(da.BASELINE)
    assert float(u0) == pytest.approx(275 / 42, rel=1e-14)
    assert float(g0.v) == pytest.approx(2 * (275 / 42) / 2.0, rel=1e-10)


def test_sweep_with_a_quadrature_setting(tmp_path):
    """A quadrature law is a static setting of a sweep: recorded in the attrs, not swept."""
    import json

    import xarray as xr

    import jaxgames as jg

    base = da.DEFAULTS[da.Strategy]._replace(law_L=da.Quadrature.lognormal(0.3, 16))
    ds = jg.sweep(da.response, base, {"r": np.linspace(0.0, 6.0, 7), "k": [0.0, 1.0]},
                  progress=False)
    assert ds.R_hat.dims == ("r", "k") and bool(ds.converged.all())
    settings_ = json.loads(ds.attrs["settings"])
    assert settings_["law_D"] is None and settings_["law_L"]["type"] == "Quadrature"
    ds.to_netcdf(tmp_path / "x.nc", engine="h5netcdf")
    with xr.open_dataset(tmp_path / "x.nc", engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), ds)
    with pytest.raises(ValueError, match="law_L"):
        jg.sweep(da.response, base, {"law_L": [1.0]}, progress=False)
