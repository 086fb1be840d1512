r"""Protection against supply-chain disruption in a defender-attacker game: Xu, Zhuang & Liu
(2015), Ann. Oper. Res. 236(1).

A defender (leader) chooses a daily resource ``r >= 0``, capacity backup ``k`` in {0, 1} and an
inventory ``I >= 0``; then an attacker (follower) chooses a daily resource ``R >= 0``. Peace lasts
``X`` days; an outage lasts ``L`` days; a reserved backup supplier needs ``D`` days to deliver.
With ``c = I / r`` (days of inventory) and ``S = (1 - k) L + k D`` (the uncovered outage):

* ``A = E[X] + k (E[L] - E[D]) + E[min(c, S)]`` -- expected days of contest,
* ``B = E[(S - c)^+]`` -- expected days the attacker holds the asset unopposed,
* ``H = I E[X] + E[ int_0^L (I - r z)^+ dz ]`` -- expected inventory-days (holding), as printed
  in (7) and (10): the stock is drawn down over the whole outage ``L`` (also when ``k = 1``),
* ``K = alpha (E[X] + E[L]) + beta (E[L] - E[D])`` -- backup cost per unit of ``r``.

Payoffs, eqs. (10) and (11) (special cases (1)-(2), (4)-(5), (7)-(8)):

    u_G = (r v / (r + R) - gamma_G r) A - k r K - h H - m r B
    u_T = (R V / (r + R) - gamma_T R) A + (V - gamma_T R) B

The contest success function ``r / (r + R)`` has no value at ``r = R = 0``; we use its limit
``r -> 0``: the attacker wins every contest day, the defender's contest payoff is 0,
``R_hat = 0^+`` and ``u_T = V (A + B)`` (spec §2). Case #16 (``r = I = k = 0``) then gives
``u_G = 0``.

**Attacker's best response.** :func:`attacker_best_response` solves the attacker's
complementarity problem ``0 <= R  perp  -du_T/dR >= 0`` with the jaxgames engine; the FOC comes
from autodiff of (11). ``u_T`` is strictly concave in ``R`` for ``r > 0`` (Appendix 1), so the
solution is the best response, and it equals the closed form

    R_hat = max(0, sqrt(V r A / (gamma_T (A + B))) - r).

**Erratum.** The printed ``G_{k,I}`` of (12) drops the square root and the factor ``r``, and
the one in Appendix 1 drops the square root. (3), (6), (9) and the FOC of Appendix 1 all give
the form above, which is what the engine finds; :func:`attacker_best_response_closed_form` is
the corrected (12), a test oracle only. The threshold in (12) is correct: ``R_hat = 0`` iff
``r >= rho = V A / (gamma_T (A + B))`` (:func:`deterrence_threshold`).

**Defender's problem** (:func:`equilibrium`): ``max u_G(r, k, I, R_hat(r, k, I))`` over
``r, I >= 0`` for each allowed ``k``, a bilevel, non-convex problem. We solve it globally:

* Coordinates ``(s, c)`` with ``r = s^2 rho(c)``, ``I = c r``, ``s`` in ``[0, 1]``,
  ``c`` in ``[0, sup S]``. At fixed ``c`` the attacker's unconstrained FOC root gives
  ``r / (r + R) = s``, so ``s = 1`` is exactly the deterrence threshold (the kink of
  ``R_hat``) and ``s < 1`` the contested branch. Points with ``r > rho(c)`` are dominated
  (``u_G`` is then linear and non-increasing in ``r`` at fixed ``c``), and so are ``c > sup S``
  (more inventory only adds holding cost). The kink becomes a box bound, and the whole
  problem a smooth problem on a box.
* Candidates: a grid over ``(s, c)`` (including every kink of the outage law's expectations).
  Local refinement: the engine's semismooth Newton on the KKT conditions of the box problem,
  from the best local maxima of the grid. The follower is solved inside by the engine, and
  derivatives pass through it implicitly (as in :func:`jaxgames.stackelberg`); each of its
  solves starts at the explicit root ``R = s (1 - s) rho(c)``, so the engine only certifies it
  (one Newton step) and its status still reaches the result. Every stage has a fixed trip
  count (grid, golden section, unrolled Newton steps), so a vmapped batch costs the same per
  point at any width; the globalised Newton loops run only for the rare lane that needs them.
  The
  boundaries ``I = 0`` (``c = 0``) and ``R = 0`` (``s = 1``) are bounds of the box. The
  limit ``r -> 0`` is compared explicitly: the corner ``r = I = k = 0`` (case #16,
  ``u_G = 0``).
* Ties are broken against using anything: the source assumes that an indifferent defender
  does not use a protection, and we extend this to ``r`` (``r = 0`` on a tie with
  ``u_G = 0``).
* A refined point must beat every grid candidate; else its status says ``STAGNATED``.

Mechanisms (Figure 7): ``none`` (``k = 0, I = 0``), ``backup`` (``I = 0``), ``inventory``
(``k = 0``) and ``combined``. Every optimum is classified into the sixteen cases of Table 3
(:func:`classify`).

**Gap decision: distributions** (spec §2). The source gives only ``E[X], E[L], E[D]`` and
assumes ``min L > max D``. Default laws: ``L ~ U(E_L (1 - c_L), E_L (1 + c_L))`` with
``c_L = 0.4`` and ``D ~ U(E_D (1 - c_D), E_D (1 + c_D))`` with ``c_D = 1``, i.e.
``U(0, 2 E_D)``. ``c_L = 0`` or ``c_D = 0`` is a deterministic length. Any other law is given
as a :class:`Quadrature` of ``L / E_L`` (or ``D / E_D``; mean 1, so that ``E_L`` stays the
mean) in ``Params.law_L`` / ``Params.law_D``. ``X`` enters only through ``E[X]``. Uniform
expectations are in closed form (:func:`uniform_moments`); quadrature laws are summed over
their nodes (:func:`quadrature_moments`). Points violating ``min L > max D`` are solved and
flagged ``assumptions_hold = False``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgames._batching import tiled
from jaxgames._games import best_response
from jaxgames._solver import Newton, Status, hidden_lanes, solve_mcp
from jaxgames._validation import (
    Interval,
    as_point,
    check_domain,
    first_failure,
    flag_invalid,
)

Array = jax.Array

MODEL = "defender_attacker"

MECHANISMS = ("none", "backup", "inventory", "combined")


# ----------------------------------------------------------------------------- laws


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class Quadrature:
    """A discrete law of a standardised length ``xi`` (``L = E_L xi``): nodes and weights.

    Weights are non-negative and sum to 1, nodes are non-negative and ``sum w xi = 1`` (so the
    model's mean parameter stays the mean); each to 1e-12. A ``Quadrature`` is a static pytree
    node (no array leaves), so a ``Params`` holding one can be jitted and vmapped over its
    numeric leaves, and it is hashable (it is part of the compiled program).
    """

    nodes: tuple[float, ...]
    weights: tuple[float, ...]

    def __post_init__(self):
        nodes = tuple(float(x) for x in np.ravel(np.asarray(self.nodes, dtype=float)))
        weights = tuple(float(x) for x in np.ravel(np.asarray(self.weights, dtype=float)))
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "weights", weights)
        n, w = np.asarray(nodes), np.asarray(weights)
        if len(n) == 0 or len(n) != len(w):
            raise ValueError(f"Quadrature: need as many weights as nodes (>= 1), got "
                             f"{len(n)} nodes and {len(w)} weights")
        if not (np.all(np.isfinite(n)) and np.all(np.isfinite(w))):
            raise ValueError("Quadrature: nodes and weights must be finite")
        if np.any(n < 0) or np.any(w < 0):
            raise ValueError("Quadrature: nodes (lengths) and weights must be >= 0")
        if abs(w.sum() - 1.0) > 1e-12:
            raise ValueError(f"Quadrature: weights must sum to 1, got {w.sum()!r}")
        if abs(float(n @ w) - 1.0) > 1e-12:
            raise ValueError(f"Quadrature: the law of L / E_L (or D / E_D) must have mean 1, "
                             f"got {float(n @ w)!r}")

    @classmethod
    def deterministic(cls) -> Quadrature:
        """The length equals its mean."""
        return cls((1.0,), (1.0,))

    @classmethod
    def uniform(cls, spread: float, n: int = 64) -> Quadrature:
        """Gauss-Legendre rule for ``U(1 - spread, 1 + spread)`` (for tests of the closed form)."""
        x, w = np.polynomial.legendre.leggauss(n)
        return cls._normalised(1.0 + spread * x, w / 2.0)

    @classmethod
    def lognormal(cls, cv: float, n: int = 32) -> Quadrature:
        """Gauss-Hermite rule for a lognormal law with mean 1 and coefficient of variation
        ``cv``."""
        if not cv > 0:
            raise ValueError(f"Quadrature.lognormal: cv must be > 0, got {cv!r}")
        sigma2 = math.log1p(cv * cv)
        x, w = np.polynomial.hermite_e.hermegauss(n)
        return cls._normalised(np.exp(math.sqrt(sigma2) * x - sigma2 / 2), w / w.sum())

    @classmethod
    def _normalised(cls, nodes, weights) -> Quadrature:
        # Remove the last-bit drift of the rule so that the mean-1 check is exact.
        weights = np.asarray(weights, float) / np.sum(weights)
        nodes = np.asarray(nodes, float) / float(np.asarray(nodes, float) @ weights)
        return cls(tuple(nodes), tuple(weights))

    def support(self) -> tuple[float, float]:
        return min(self.nodes), max(self.nodes)


# ----------------------------------------------------------------------------- parameters


class Params(NamedTuple):
    """Parameters (Table 1 notation; Table 2 baseline in :data:`BASELINE`).

    The eleven leaves of the source, then the distribution settings of the gap decision (see
    the module docstring). Every numeric leaf may be swept or differentiated; ``law_L`` and
    ``law_D`` are static settings.
    """

    alpha: Array | float  # reservation cost of capacity backup (per unit of r per day)
    beta: Array | float  # usage cost of capacity backup (per unit of r per day of use)
    V: Array | float  # attacker's asset valuation (per day)
    v: Array | float  # defender's asset valuation (per day)
    h: Array | float  # holding cost per unit of inventory per day
    gamma_G: Array | float  # defender's cost per unit of resource per day
    gamma_T: Array | float  # attacker's cost per unit of resource per day
    m: Array | float  # defender's loss per unit of resource per day without supply
    E_X: Array | float  # expected peace time (days)
    E_L: Array | float  # expected outage time (days)
    E_D: Array | float  # expected delay of the backup supplier (days)
    c_L: Array | float = 0.4  # L ~ U(E_L (1 - c_L), E_L (1 + c_L)); 0: deterministic
    c_D: Array | float = 1.0  # D ~ U(E_D (1 - c_D), E_D (1 + c_D)); 0: deterministic
    law_L: Quadrature | None = None  # law of L / E_L; replaces the uniform law if given
    law_D: Quadrature | None = None  # law of D / E_D; replaces the uniform law if given


#: Table 2 of the source.
BASELINE = Params(alpha=0.02, beta=0.05, V=2.0, v=2.0, h=0.5, gamma_G=0.2, gamma_T=0.3, m=0.1,
                  E_X=6.0, E_L=5.0, E_D=1.0)

#: The eleven parameters of the source (Figure 7 varies each of them).
SOURCE_PARAMETERS = ("alpha", "beta", "V", "v", "h", "gamma_G", "gamma_T", "m", "E_X", "E_L",
                     "E_D")

_NONNEG = Interval(0.0, np.inf)
_POS = Interval(0.0, np.inf, lo_open=True)

#: Allowed values of the parameters (and of the decisions of a :class:`Strategy`). ``V`` and
#: ``gamma_T`` must be positive (the best response divides by them; with ``V = 0`` the
#: supremum at ``r -> 0^+`` is not attained), ``E_X > 0`` (contest days), spreads in [0, 1]
#: (lengths are non-negative).
DOMAIN = {
    "alpha": _NONNEG, "beta": _NONNEG, "V": _POS, "v": _NONNEG, "h": _NONNEG,
    "gamma_G": _NONNEG, "gamma_T": _POS, "m": _NONNEG, "E_X": _POS, "E_L": _POS,
    "E_D": _NONNEG, "c_L": Interval(0.0, 1.0), "c_D": Interval(0.0, 1.0),
    "r": _NONNEG, "k": Interval(0.0, 1.0), "I": _NONNEG,
}

UNITS = {
    "alpha": "$/(unit day)", "beta": "$/(unit day)", "V": "$/day", "v": "$/day",
    "h": "$/(unit day)", "gamma_G": "$/(unit day)", "gamma_T": "$/(unit day)",
    "m": "$/(unit day)", "E_X": "day", "E_L": "day", "E_D": "day", "c_L": "1", "c_D": "1",
    "r": "unit/day", "k": "1", "I": "unit",
}

_PARAM_DOMAIN = {k: v for k, v in DOMAIN.items() if k in Params._fields}


def validate(params: Params) -> None:
    """Raise ``ValueError`` naming the parameter if a concrete input is outside its domain."""
    if not isinstance(params, Params):
        raise TypeError(f"{MODEL}: expected a Params, got {type(params).__name__}")
    for name in ("law_L", "law_D"):
        law = getattr(params, name)
        if law is not None and not isinstance(law, Quadrature):
            raise TypeError(f"{MODEL}: {name} must be a Quadrature or None, got "
                            f"{type(law).__name__}")
    check_domain(params, _PARAM_DOMAIN, MODEL)


def _prepare(params: Params) -> tuple[Params, Array]:
    validate(params)
    return as_point(params, _PARAM_DOMAIN, MODEL)


# ----------------------------------------------------------------------------- expectations


def uniform_moments(a, w, c, xp=jnp):
    """``E[min(c, S)]``, ``E[min(c, S)^2]`` and ``E[(S - c)^+]`` for ``S ~ U(a, a + w)``.

    ``w = 0`` is a point mass at ``a``. Written with ``u = clip(c - a, 0, w)`` and the ratio
    ``u / w`` in [0, 1], so that nothing divides by a vanishing width:
    ``E[min(c, S)] = min(c, a) + u - u^2 / (2 w)``,
    ``E[min(c, S)^2] = min(c, a)^2 + 2 a u + u^2 - u^2 (a + 2 u / 3) / w`` and
    ``E[(S - c)^+] = (a - c)^+ + (w - u)^2 / (2 w)`` (integrals of ``P(S > t)``).
    """
    pos = w > 0
    w_safe = xp.where(pos, w, 1.0)
    u = xp.clip(c - a, 0.0, w)
    q = w - u
    ur = xp.where(pos, u / w_safe, 0.0)
    qr = xp.where(pos, q / w_safe, 0.0)
    lo = xp.minimum(c, a)
    m1 = lo + u - 0.5 * u * ur
    m2 = lo * lo + 2.0 * a * u + u * u - u * ur * (a + 2.0 * u / 3.0)
    excess = xp.maximum(a - c, 0.0) + 0.5 * q * qr
    return m1, m2, excess


def quadrature_moments(nodes, weights, c, xp=jnp):
    """The same three expectations for a discrete law (nodes, weights along the last axis)."""
    c = xp.asarray(c)[..., None]
    lo = xp.minimum(c, nodes)
    return ((weights * lo).sum(-1), (weights * lo * lo).sum(-1),
            (weights * xp.maximum(nodes - c, 0.0)).sum(-1))


def _law_moments(mean, spread, law: Quadrature | None, c, xp=jnp):
    if law is None:
        return uniform_moments(mean * (1.0 - spread), 2.0 * mean * spread, c, xp=xp)
    dtype = xp.result_type(mean)
    nodes = mean * xp.asarray(law.nodes, dtype)
    return quadrature_moments(nodes, xp.asarray(law.weights, dtype), c, xp=xp)


def _law_support(mean, spread, law: Quadrature | None):
    if law is None:
        return mean * (1.0 - spread), mean * (1.0 + spread)
    lo, hi = law.support()
    return mean * lo, mean * hi


def _law_kinks(mean, law: Quadrature | None):
    """Interior kinks of the expectations as functions of ``c`` (nodes of a discrete law);
    uniform laws give C^1 expectations and need none."""
    if law is None:
        return None
    return mean * jnp.asarray(law.nodes, jnp.result_type(mean))


def assumptions_hold(params: Params):
    """The source's assumption ``min L > max D`` under the laws of ``params``."""
    l_lo, _ = _law_support(params.E_L, params.c_L, params.law_L)
    _, d_hi = _law_support(params.E_D, params.c_D, params.law_D)
    return l_lo > d_hi


class Days(NamedTuple):
    """Expected contest days ``A``, attacker-held days ``B`` and inventory-days ``H``."""

    A: Array
    B: Array
    H: Array


def _cap(pr: Params, xp=jnp):
    """A length beyond every support: inventory cover beyond it changes nothing but ``H``."""
    _, l_hi = _law_support(pr.E_L, pr.c_L, pr.law_L)
    _, d_hi = _law_support(pr.E_D, pr.c_D, pr.law_D)
    return xp.maximum(l_hi, d_hi)


def _days(pr: Params, k, r, I, c, xp=jnp):
    """``A, B, H`` for days of cover ``c = I / r`` (``c`` at or above every support for
    ``r = 0``); ``k`` is 0 or 1. ``xp``: ``jax.numpy`` or ``numpy`` (the oracles)."""
    c = xp.minimum(c, _cap(pr, xp))
    l_m1, l_m2, l_ex = _law_moments(pr.E_L, pr.c_L, pr.law_L, c, xp)
    d_m1, _, d_ex = _law_moments(pr.E_D, pr.c_D, pr.law_D, c, xp)
    backup = k == 1
    a = pr.E_X + xp.where(backup, pr.E_L - pr.E_D + d_m1, l_m1)
    b = xp.where(backup, d_ex, l_ex)
    # E[int_0^L (I - r z)^+ dz] = E[I min(L, c) - r min(L, c)^2 / 2]
    h = I * pr.E_X + I * l_m1 - 0.5 * r * l_m2
    return Days(a, b, h)


def _cover(r, I, cap, xp=jnp):
    """Days of cover ``I / r``; at ``r = 0`` its limit ``r -> 0^+``: unbounded (``cap``) for
    ``I > 0`` and 0 for ``I = 0``."""
    pos = r > 0
    return xp.where(pos, I / xp.where(pos, r, 1.0), xp.where(I > 0, cap, 0.0))


def contest_days(params: Params, r, k, I) -> Days:
    """``A(r, k, I)``, ``B(r, k, I)``, ``H(r, I)`` of the module docstring (the source's (10))."""
    pr, _ = _prepare(params)
    r, I = jnp.asarray(r, pr.E_X.dtype), jnp.asarray(I, pr.E_X.dtype)
    return _days(pr, jnp.asarray(k), r, I, _cover(r, I, _cap(pr)))


def _backup_cost(pr: Params):
    return pr.alpha * (pr.E_X + pr.E_L) + pr.beta * (pr.E_L - pr.E_D)


# ----------------------------------------------------------------------------- payoffs


class Payoffs(NamedTuple):
    u_G: Array
    u_T: Array


def _payoffs(pr: Params, r, k, I, R, days: Days, xp=jnp) -> Payoffs:
    a, b, h = days
    # Contest success function r / (r + R), with its r -> 0 limit (the attacker wins).
    pos = r > 0
    share_g = xp.where(pos, r / xp.where(pos, r + R, 1.0), 0.0)
    share_t = 1.0 - share_g
    u_g = (pr.v * share_g - pr.gamma_G * r) * a - k * r * _backup_cost(pr) - pr.h * h \
        - pr.m * r * b
    u_t = (pr.V * share_t - pr.gamma_T * R) * a + (pr.V - pr.gamma_T * R) * b
    return Payoffs(u_g, u_t)


def _check_k(k) -> None:
    if not isinstance(k, jax.core.Tracer):
        arr = np.asarray(k)
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError(f"{MODEL}: k (capacity backup) must be 0 or 1, got {arr!r}")


def payoffs(params: Params, r, k, I, R) -> Payoffs:
    """``u_G`` (10) and ``u_T`` (11) at the strategies ``(r, k, I)`` and ``R``."""
    _check_k(k)
    pr, _ = _prepare(params)
    dt = pr.E_X.dtype
    r, I, R = (jnp.asarray(x, dt) for x in (r, I, R))
    k = jnp.asarray(k, dt)
    return _payoffs(pr, r, k, I, R, _days(pr, k, r, I, _cover(r, I, _cap(pr))))


def deterrence_threshold(params: Params, k, c):
    """``rho(c) = V A / (gamma_T (A + B))``: the attacker plays ``R = 0`` iff ``r >= rho`` at
    days of cover ``c = I / r`` (the threshold of (12): the attacker's marginal payoff at
    ``R = 0``, ``(V / r - gamma_T) A - gamma_T B``, changes sign there)."""
    pr, _ = _prepare(params)
    c = jnp.asarray(c, pr.E_X.dtype)
    return _threshold(pr, jnp.asarray(k), c)


def _threshold(pr: Params, k, c):
    # A and B do not depend on r at fixed c (H does, but it does not enter the threshold).
    zero = jnp.zeros_like(c)
    a, b, _ = _days(pr, k, zero, zero, c)
    return pr.V * a / (pr.gamma_T * (a + b))


# ----------------------------------------------------------------------------- attacker


#: Newton settings of the attacker's one-variable problem. One unrolled step
#: (``fast_steps``): inside the defender's search the solve starts at the explicit root (see
#: :func:`_defender_value_and_status`), where it only confirms the root, so that no
#: ``while_loop`` iteration runs in the search's grids; from the default start below the root
#: (:func:`attacker_best_response`) the globalised loop takes over after it.
FOLLOWER_SOLVER = Newton(max_steps=40, fast_steps=1)


class BestResponse(NamedTuple):
    """The attacker's best response ``R_hat`` and the diagnostics of its solve."""

    R_hat: Array
    u_T: Array
    converged: Array
    residual: Array
    iterations: Array
    status: Array


def _attacker_cost(r, R, args):
    """``-u_T`` as a function of the attacker's ``R`` (11); ``A, B`` do not depend on ``R``."""
    pr, k, I, days = args
    return -_payoffs(pr, r, k, I, R[0], days).u_T


def _response_start(pr: Params, r, days: Days):
    """A starting point ``y0`` for ``y = r + R`` below the root of the attacker's FOC
    ``V r A / y^2 = gamma_T (A + B)`` (convex and decreasing in ``y``, so Newton from below
    converges monotonically): ``y0 = sqrt(V r s / gamma_T)`` with a contest share ``s`` at most
    ``A / (A + B)``. The no-protection share ``E_X / (E_X + E_L)`` is the smallest when
    ``E_L >= E_D``; a slow backup (``E_D > E_L``) can make ``A / (A + B)`` smaller still (down
    to 1e-16 at the edge of the feasible set ``A > 0``), so the smaller of the two is used. (At
    8f31d2c only the first was, and the attacker's solve started 1e8 times above the root at
    such points and failed.)"""
    nominal = pr.E_X / (pr.E_X + pr.E_L)
    total = days.A + days.B
    share = jnp.where((days.A > 0) & (total > 0),
                      jnp.minimum(nominal, days.A / jnp.where(total > 0, total, 1.0)), nominal)
    return jnp.sqrt(pr.V * r * share / pr.gamma_T)


def _follower(pr: Params, r, k, I, days: Days, *, bounded: bool, solver: Newton, start=None):
    """The attacker's engine solve; ``start`` (optional) replaces the default start below
    the root (:func:`_response_start`)."""
    y0 = _response_start(pr, r, days)
    scale = jnp.where(y0 > 0, y0, 1.0)
    if start is None:
        start = jnp.maximum(y0 - r, 0.0) if bounded else y0 - r
    f_scale = pr.gamma_T * (pr.E_X + pr.E_L)
    return best_response(
        _attacker_cost, r, start[None], (pr, k, I, days),
        lower=0.0 if bounded else None, y_scale=scale[None], f_scale=f_scale[None],
        solver=solver,
    )


def attacker_best_response(params: Params, r, k, I, *,
                           solver: Newton = FOLLOWER_SOLVER) -> BestResponse:
    """``R_hat(r, k, I) = argmax_{R >= 0} u_T`` (11), solved by the engine from the attacker's
    first-order condition (Appendix 1) as a complementarity problem. ``r = 0`` gives the limit
    ``R_hat = 0``. (For ``0 < r < 1e-200`` in float64 the FOC's Jacobian, of order
    ``r (r + R)^-3``, underflows; the solve then reports a failure status.)"""
    _check_k(k)
    pr, valid = _prepare(params)
    dt = pr.E_X.dtype
    r, I = jnp.asarray(r, dt), jnp.asarray(I, dt)
    k = jnp.asarray(k, dt)
    valid = valid & (r >= 0) & (I >= 0) & ((k == 0) | (k == 1))
    days = _days(pr, k, r, I, _cover(r, I, _cap(pr)))
    sol = _follower(pr, r, k, I, days, bounded=True, solver=solver)
    R = sol.value[0]
    status = flag_invalid(sol.status, valid)
    return BestResponse(R, _payoffs(pr, r, k, I, R, days).u_T, status == Status.SUCCESS,
                        sol.residual, sol.iterations, status)


def attacker_best_response_closed_form(params: Params, r, k, I, xp: types.ModuleType = jnp):
    """The corrected (12): ``max(0, sqrt(V r A / (gamma_T (A + B))) - r)`` -- a test oracle.

    Evaluated with ``xp`` (``numpy`` or ``jax.numpy``); the leaves of ``params`` and ``r, k,
    I`` broadcast together. Uniform and deterministic laws only (``law_L = law_D = None``).
    """
    if params.law_L is not None or params.law_D is not None:
        raise ValueError("attacker_best_response_closed_form: uniform laws only")
    a, b, _ = _days_xp(params, k, r, I, xp)
    y = xp.sqrt(params.V * r * a / (params.gamma_T * (a + b)))
    return xp.maximum(y - r, 0.0)


def _days_xp(pr: Params, k, r, I, xp):
    """``A, B, H`` at strategies ``(r, k, I)`` in plain ``xp`` (the oracles' entry point)."""
    return _days(pr, k, r, I, _cover(r, I, _cap(pr, xp), xp), xp)


def payoffs_closed_form(params: Params, r, k, I, R, xp: types.ModuleType = jnp) -> Payoffs:
    """``u_G, u_T`` (10)-(11) in plain ``xp``, broadcasting: the NumPy oracle of
    :func:`payoffs` (no validation, no solve)."""
    return _payoffs(params, r, k, I, R, _days_xp(params, k, r, I, xp), xp)


# ----------------------------------------------------------------------------- defender


@dataclasses.dataclass(frozen=True)
class Search:
    """Static settings of the defender's global search (see the module docstring).

    Attributes:
        n_c: grid points in the days of cover ``c`` over ``[0, sup S]`` (the nodes of a
            discrete law are added).
        n_brackets: best local maxima of the grid profile that are refined.
        n_golden: golden-section steps in each bracket (each shrinks it by 0.618; 40 steps
            leave 4e-9 of the bracket, which Newton then polishes).
        s_min: smallest ``s = sqrt(r / rho)`` searched (``r >= s_min^2 rho``). Below it the
            corner ``r = 0`` (case #16) is compared directly; the payoff forgone is at most
            ``v A s_min / 2``.
    """

    n_c: int = 33
    n_brackets: int = 2
    n_golden: int = 40
    s_min: float = 1e-6


SEARCH = Search()

#: Newton settings of the defender's final polish in ``(s, c)`` (started within 1e-8 of the
#: solution by the golden-section search): two unrolled full steps (``fast_steps``; one meets
#: the tolerance almost everywhere), then the globalised loop, which under ``vmap`` runs only
#: while some lane still needs it.
SOLVER = Newton(max_steps=25, fast_steps=2)


class _Candidate(NamedTuple):
    u: Array  # defender's payoff
    s: Array
    c: Array
    status: Array
    residual: Array
    iterations: Array


def _tie(u, dtype):
    """Payoffs within this distance are a tie (round-off of separately solved candidates)."""
    return 1e3 * float(jnp.finfo(dtype).eps) * (1.0 + jnp.abs(u))


def _defender_value(x, args, k, solver):
    """``u_G`` at ``(s, c)`` against the attacker's contested-branch response (the root of
    his FOC without the bound ``R >= 0``, which equals ``R_hat`` for ``s <= 1``); NaN where
    the attacker's solve failed (see :func:`_defender_value_and_status`)."""
    return _defender_value_and_status(x, args, k, solver)[0]


def _defender_value_and_status(x, args, k, solver):
    """``(u_G, follower status)`` at ``(s, c)``. Where the attacker's solve did not succeed
    the payoff is NaN: the search stages count such points (their status reaches the
    subproblem's), and Newton's line search rejects them."""
    pr = args
    s, c = x[0], x[1]
    zero = jnp.zeros_like(c)
    a, b, _ = _days(pr, k, zero, zero, c)  # A and B do not depend on r at fixed c
    # A <= 0 (rho <= 0): no contest days (backup that arrives after the outage ends,
    # E[D] >= E[X] + E[L] - E[min(c, D)], far outside the source's assumptions). The payoff
    # formula has no meaning there; such strategies are infeasible (-inf). The attacker's
    # solve is then run on stand-in days (A, B) = (E_X, E_L), a well-posed problem whose root
    # is as explicit as the real one: without a root (A <= 0) it would spend its whole
    # iteration budget, and every lane of a vmapped batch would wait for it.
    feasible = a > 0
    a = jnp.where(feasible, a, pr.E_X)
    b = jnp.where(feasible, b, pr.E_L)
    rho = pr.V * a / (pr.gamma_T * (a + b))
    r = s * s * rho
    I = c * r
    days = _days(pr, k, r, I, c)
    days_f = Days(jnp.where(feasible, days.A, a), jnp.where(feasible, days.B, b), days.H)
    # In (s, c) the root of the attacker's FOC is explicit: r / (r + R) = s, i.e.
    # R = s (1 - s) rho. The engine's solve starts there, so it only certifies the root
    # (one Newton step, below the tolerance from the start) instead of searching for it: no
    # lane of a batch waits for another's iterations (the globalised loop runs only where the
    # start misses the tolerance, e.g. where the solve fails and must say so).
    start = jax.lax.stop_gradient(s * (1.0 - s) * rho)
    sol = _follower(pr, r, k, I, days_f, bounded=False, solver=solver, start=start)
    # Infeasible strategies never ask the follower anything (its problem is a stand-in).
    fstatus = jnp.where(feasible, sol.status, jnp.int32(Status.SUCCESS))
    u = jnp.where(feasible, _payoffs(pr, r, k, I, sol.value[0], days).u_G, -jnp.inf)
    return jnp.where(fstatus == Status.SUCCESS, u, jnp.nan), fstatus


def _feasible_cover(pr: Params, k, c_hi):
    """The smallest days of cover ``c`` in ``[0, c_hi]`` with contest days ``A(c) > 0``.

    ``A = E_X + k (E_L - E_D) + E[min(c, S)]`` increases in ``c``; it can be <= 0 only with
    backup slower than the outage (``E_D > E_X + E_L - E[min(c, D)]``, far outside the
    source's assumption), where the payoff formula has no meaning. Bisection (60 halvings)
    keeps the search box inside the feasible set; 0 when ``A(0) > 0``, ``c_hi`` when no ``c``
    is feasible (the grid then finds no feasible point and the subproblem is empty).
    """
    zero = jnp.zeros_like(c_hi)

    def a_of(c):
        return _days(pr, k, zero, zero, c).A

    def step(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        ok = a_of(mid) > 0
        return jnp.where(ok, lo, mid), jnp.where(ok, mid, hi)

    _, hi = jax.lax.fori_loop(0, 60, step, (zero, c_hi))
    return jnp.where(a_of(zero) > 0, zero, hi)


def _subproblem(pr: Params, k, inventory, search: Search, solver: Newton,
                follower_solver: Newton, lanes: int = 1) -> _Candidate:
    """Global maximum of ``u_G`` over ``(s, c)`` for a fixed ``k`` (``c = 0`` without
    inventory); ``lanes``: the subproblems solved side by side with this one (a vmap).

    1. Profile ``psi(c) = max_s u_G(s, c)`` on a grid of ``c`` (at fixed ``c`` the problem in
       ``s`` is a concave quadratic: parabolic interpolation, no derivatives).
    2. Golden-section search of ``psi`` in the grid cells around the best local maxima: no
       derivatives, so kinks of ``psi`` (nodes of a discrete law) and non-concave stretches
       are harmless.
    3. Newton polish of the KKT conditions in ``(s, c)`` from there: the certificate
       (complementarity residual) and the implicit derivatives with respect to ``params``.

    ``k`` (0./1.) and ``inventory`` (bool) are data, so that the subproblems of a mechanism
    are one vmapped (and once compiled) computation; without inventory the box of ``c`` is
    ``[0, 0]``.
    """
    dt = pr.E_X.dtype
    one = jnp.ones((), dt)
    s_min = jnp.asarray(search.s_min, dt)
    value = lambda x, a: _defender_value(x, a, k, follower_solver)  # noqa: E731
    value_status = lambda x, a: _defender_value_and_status(x, a, k, follower_solver)  # noqa: E731
    # The grid and golden-section stages only choose the polish's starting point, which gets
    # no derivative: keep autodiff (jvp/grad of the equilibrium, sweep derivatives) out of them.
    pr_search = jax.tree_util.tree_map(jax.lax.stop_gradient, pr)
    scale = pr.v * (pr.E_X + pr.E_L) + 1.0
    c_max = jnp.where(k == 1, _law_support(pr.E_D, pr.c_D, pr.law_D)[1],
                      _law_support(pr.E_L, pr.c_L, pr.law_L)[1])
    # c beyond sup S only adds holding cost; a tiny box keeps c well posed if sup S = 0.
    c_hi = jnp.where(inventory, jnp.maximum(c_max, 1e-6 * pr.E_L), 0.0)
    c_lo = _feasible_cover(pr, k, c_hi)
    c_grid = c_lo + (c_hi - c_lo) * jnp.linspace(0.0, 1.0, search.n_c, dtype=dt)
    nodes = [x for x in (_law_kinks(pr.E_L, pr.law_L), _law_kinks(pr.E_D, pr.law_D))
             if x is not None]
    kinks = jnp.sort(jnp.clip(jnp.concatenate(nodes), c_lo, c_hi)) if nodes else None
    if kinks is not None:
        c_grid = jnp.sort(jnp.concatenate([c_grid, kinks]))

    def inner(c):
        """``max_s u_G(s, c)`` by parabolic interpolation through ``s = 0`` (where
        ``u_G = 0``), ``1/2`` and ``1``. At fixed ``c``, ``u_G`` is a concave quadratic in
        ``s`` (``r / (r + R) = s``, and every cost is linear in ``r = s^2 rho``), so the
        parabola and its maximum are exact; the Newton polish below certifies the final point
        anyway. (One vmapped evaluation: it keeps the compiled program small.)"""
        xs = jnp.stack([jnp.stack([0.5 * one, c]), jnp.stack([one, c])])
        (f_half, f_one), st = jax.vmap(lambda x: value_status(x, pr_search))(xs)
        lin = 4.0 * f_half - f_one  # u_G = lin s - quad s^2
        quad = 4.0 * f_half - 2.0 * f_one
        s = jnp.where(quad > 0, lin / (2.0 * jnp.where(quad > 0, quad, 1.0)),
                      jnp.where(lin > 0, 1.0, 0.0))
        s = jnp.clip(s, s_min, 1.0)
        return lin * s - quad * s * s, s, first_failure(st[0], st[1])

    def psi_status(c):
        u, _, st = inner(c)
        return jnp.where(jnp.isfinite(u), u, -jnp.inf), st

    def psi(c):
        return psi_status(c)[0]

    c_grid = jax.lax.stop_gradient(c_grid)
    # Beyond the deterrence threshold (R = 0) u_G is linear in r at fixed c with slope
    # -gamma_G A - k K - m B - h H(r = 1): the search box s <= 1 rests on that slope being
    # <= 0. With k = 1 and a negative backup cost K = alpha (E_X + E_L) + beta (E_L - E_D)
    # (a backup slower than the outage, outside the source's assumption) it can be positive:
    # then u_G grows without bound in r and there is no optimum to report.
    backup_cost = pr.alpha * (pr.E_X + pr.E_L) + pr.beta * (pr.E_L - pr.E_D)

    def rising(c):
        days = _days(pr, k, one, c, c)
        slope = -pr.gamma_G * days.A - k * backup_cost - pr.m * days.B - pr.h * days.H
        return (slope > 0) & (days.A > 0)  # only feasible strategies (A > 0) count

    unbounded = jnp.any(jax.vmap(rising)(c_grid))
    profile, grid_status = jax.vmap(psi_status)(c_grid)
    # A failed attacker solve at a grid point hides that point's payoff: the search could miss
    # the optimum there, so the subproblem reports the follower's failure.
    follower_status = first_failure(*[grid_status[i] for i in range(grid_status.shape[0])])
    grid_best = jnp.max(profile)
    n = c_grid.shape[0]
    left = jnp.concatenate([profile[:1] - 1.0, profile[:-1]])
    right = jnp.concatenate([profile[1:], profile[-1:] - 1.0])
    ranked = jnp.where((profile >= left) & (profile >= right), profile, -jnp.inf)
    top, idx = jax.lax.top_k(ranked, min(search.n_brackets, n))
    # Fewer local maxima than brackets: repeat the best one.
    idx = jnp.where(top > -jnp.inf, idx, idx[0])

    ratio = (math.sqrt(5.0) - 1.0) / 2.0

    def golden(j):
        a, b = c_grid[jnp.maximum(j - 1, 0)], c_grid[jnp.minimum(j + 1, n - 1)]
        x1, x2 = b - ratio * (b - a), a + ratio * (b - a)
        (f1, f2), st = jax.vmap(psi_status)(jnp.stack([x1, x2]))
        state = (a, b, x1, x2, f1, f2, first_failure(st[0], st[1]))

        def step(_, st):
            # The loop body is traced without the vmaps around it (brackets, subproblems,
            # points): tell the attacker's solves in it that these run side by side, so that
            # their vmap over 2 values of s is not padded to 8 lanes (4x the work of the
            # search's longest stage; the same bits, see jaxgames._solver.hidden_lanes).
            with hidden_lanes(idx.shape[0] * lanes):
                return golden_step(st)

        def golden_step(st):
            a, b, x1, x2, f1, f2, status = st
            keep_left = f1 >= f2  # the maximum lies in [a, x2]
            a = jnp.where(keep_left, a, x1)
            b = jnp.where(keep_left, x2, b)
            new = jnp.where(keep_left, b - ratio * (b - a), a + ratio * (b - a))
            f_new, st_new = psi_status(new)
            x1, x2, f1, f2 = (jnp.where(keep_left, new, x2), jnp.where(keep_left, x1, new),
                              jnp.where(keep_left, f_new, f2), jnp.where(keep_left, f1, f_new))
            return a, b, x1, x2, f1, f2, first_failure(status, st_new)

        a, b, x1, x2, f1, f2, status = jax.lax.fori_loop(0, search.n_golden, step, state)
        c_best = jnp.where(f1 >= f2, x1, x2)
        # The grid point itself may be the maximum (a kink of a discrete law, or a bound).
        c_best = jnp.where(profile[j] > jnp.maximum(f1, f2), c_grid[j], c_best)
        return c_best, status

    c0, golden_status = jax.vmap(golden)(idx)
    follower_status = first_failure(follower_status, *[golden_status[i]
                                                       for i in range(golden_status.shape[0])])
    _, s0, _ = jax.vmap(inner)(c0)
    c_scale = jnp.where(c_hi > 0, c_hi, 1.0)
    if kinks is None:
        # Uniform/deterministic laws: the payoff is C^1 in c on the whole box.
        lo_c = jnp.full_like(c0, c_lo)
        hi_c = jnp.full_like(c0, c_hi)
    else:
        # Discrete laws: polish in the smooth cell between the kinks around c0 (a kink
        # within the golden-section tolerance of c0 is the optimum: a cell of width 0).
        near = jnp.abs(kinks[None, :] - c0[:, None]) <= 1e-7 * c_scale
        at_kink = jnp.any(near, axis=1)
        kink = jnp.max(jnp.where(near, kinks[None, :], -jnp.inf), axis=1)
        below = jnp.max(jnp.where(kinks[None, :] <= c0[:, None], kinks[None, :], c_lo),
                        axis=1)
        above = jnp.min(jnp.where(kinks[None, :] >= c0[:, None], kinks[None, :], c_hi), axis=1)
        lo_c = jnp.where(at_kink, kink, below)
        hi_c = jnp.where(at_kink, kink, above)
        c0 = jnp.clip(c0, lo_c, hi_c)

    def fn(x, a):
        return -jax.grad(value)(x, a)

    def polish(s, c, lo, hi):
        # Scales from the start: s in units of s0 and the payoff in units of its contest gain
        # v A(c0) s0 (twice u_G at an interior optimum in s), so that the scaled Jacobian is
        # O(1). With the fixed scales (1, c_hi) and v (E_X + E_L) + 1, an optimum at small s
        # (s0 = 3e-5, u_G* = 9e-6 for v (E_X + E_L) + 1 = 2.3) had a Hessian conditioned
        # ~1e9 and Newton stalled at a residual of 1e-12 (MAX_STEPS). These scales are never
        # looser than the fixed ones (v A s0 <= v (E_X + E_L) and s0 <= 1).
        gain = jax.lax.stop_gradient(pr.v * _days(pr_search, k, 0.0 * c, 0.0 * c, c).A * s)
        ok = jnp.isfinite(gain) & (gain > 0)
        x_s = jnp.where(ok, s, one)
        f_s = jnp.where(ok, gain / jnp.where(ok, s, one), scale)
        f_c = jnp.where(ok, gain, scale) / c_scale
        return solve_mcp(fn, jnp.stack([s, c]), pr, jnp.stack([s_min, lo]),
                         jnp.stack([one, hi]), x_scale=jnp.stack([x_s, c_scale]),
                         f_scale=jnp.stack([f_s, f_c]), solver=solver)

    sol = jax.vmap(polish)(s0, c0, lo_c, hi_c)
    x_opt = sol.value
    u_opt, polish_fstatus = jax.vmap(lambda x: value_status(x, pr))(x_opt)
    ok = (sol.status == Status.SUCCESS) & jnp.isfinite(u_opt)
    finite = jnp.where(jnp.isfinite(u_opt), u_opt, -jnp.inf)
    pick = jnp.where(jnp.any(ok), jnp.argmax(jnp.where(ok, u_opt, -jnp.inf)),
                     jnp.argmax(finite))
    u = u_opt[pick]
    status = first_failure(sol.status[pick], polish_fstatus[pick], follower_status)
    # Certificate: the polished optimum beats every grid candidate. The profile's values come
    # from the parabola through u_G(1/2, c) and u_G(1, c), whose round-off grows with
    # |u_G(1, c)|: with a large threshold rho that is up to 1e8 times u_G* (the parabola's
    # maximum then carries an error of 1e-12 where u_G* is 0.1, and an exact optimum lost to
    # it: STAGNATED at 1 in 2,000 random points). The best grid candidate (top_k: idx[0] is
    # the profile's maximum) is therefore evaluated directly, with the round-off of u_G itself.
    c_top = c_grid[idx[0]]
    _, s_top, _ = inner(c_top)
    u_top, _ = value_status(jnp.stack([s_top, c_top]), pr_search)
    grid_best_u = jnp.where(jnp.isfinite(u_top), u_top, grid_best)
    status = jnp.where((status == Status.SUCCESS) & (u < grid_best_u - _tie(grid_best_u, dt)),
                       jnp.int32(Status.STAGNATED), status)
    # No feasible strategy at all (A <= 0 for every c): the subproblem is empty, not failed
    # (unless an attacker's solve failed on the grid).
    empty = grid_best == -jnp.inf
    u = jnp.where(empty, -jnp.inf, u)
    status = jnp.where(empty, follower_status, status)
    status = jnp.where(unbounded, jnp.int32(Status.UNBOUNDED), status)
    return _Candidate(u, x_opt[pick, 0], x_opt[pick, 1], status, sol.residual[pick],
                      jnp.sum(sol.iterations))


def _solve_subproblems(pr: Params, keys, search: Search, solver: Newton,
                       follower_solver: Newton) -> _Candidate:
    """The subproblems ``keys = ((k, inventory), ...)`` as one vmapped computation."""
    dt = pr.E_X.dtype
    ks = jnp.asarray([float(k) for k, _ in keys], dt)
    inv = jnp.asarray([bool(i) for _, i in keys])
    return jax.vmap(lambda k, i: _subproblem(pr, k, i, search, solver, follower_solver,
                                             len(keys)))(ks, inv)


#: Table 3 of the source: the case number for (r = 0, I = 0) rows and (R > 0, k) columns.
TABLE3 = np.array([
    # R>0,k=1  R>0,k=0  R=0,k=1  R=0,k=0
    [1, 9, 3, 11],  # r > 0, I > 0
    [2, 10, 5, 13],  # r > 0, I = 0
    [4, 12, 7, 15],  # r = 0, I > 0
    [6, 14, 8, 16],  # r = 0, I = 0
], dtype=np.int32)

#: Cases that Proposition 1 rules out (dominated); #8 is weakly dominated.
DOMINATED_CASES = (4, 6, 7, 12, 14, 15)

#: ``R`` counts as positive when ``R > POSITIVE_RTOL * r`` (the solver's round-off at the
#: deterrence threshold is far below it).
POSITIVE_RTOL = 1e-8


def classify(r, k, I, R, xp: types.ModuleType = jnp):
    """The case number (1-16) of Table 3 for strategies ``(r, k, I, R)``."""
    r_pos = r > 0
    i_pos = I > 0
    a_pos = R > POSITIVE_RTOL * xp.maximum(r, xp.finfo(xp.result_type(r)).tiny)
    row = 2 * (~r_pos).astype(np.int32) + (~i_pos).astype(np.int32)
    col = 2 * (~a_pos).astype(np.int32) + (k == 0).astype(np.int32)
    return xp.asarray(TABLE3)[row, col]


class Equilibrium(NamedTuple):
    """Subgame-perfect equilibrium of the defender-attacker game under one mechanism."""

    r: Array
    k: Array
    I: Array  # noqa: E741
    R: Array
    u_G: Array
    u_T: Array
    case: Array
    cover: Array  # days of inventory I / r
    converged: Array
    residual: Array
    iterations: Array
    status: Array
    assumptions_hold: Array


# Subproblems (k, inventory) each mechanism may use, in the order of tie-breaking preference
# (protections are used only when strictly better).
_ALLOWED = {
    "none": ((0, False),),
    "backup": ((0, False), (1, False)),
    "inventory": ((0, False), (0, True)),
    "combined": ((0, False), (1, False), (0, True), (1, True)),
}


def _check_mechanism(mechanism: str) -> None:
    if mechanism not in _ALLOWED:
        raise ValueError(f"{MODEL}: mechanism must be one of {list(MECHANISMS)}, got "
                         f"{mechanism!r}")


def _jax_version() -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", jax.__version__)[:3])


#: ``jax.lax.optimization_barrier`` got its batching rule in jax 0.4.36 and its autodiff rules
#: in 0.5.3; older versions (pyproject allows 0.4.34) skip the fence.
_HAS_FENCE = _jax_version() >= (0, 5, 3)


def _fence(tree):
    """Materialise ``tree`` (an optimisation barrier: nothing is fused across it).

    XLA on CPU contracts ``a * b + c`` into fused multiply-adds inside a fusion, so the last
    bit of an expression depends on which operations share a kernel; and fusion decisions
    depend on the batch width. Without the fence the equilibrium's payoffs differed by up to
    one ulp (5.7e-14 in ``u_G``) between a batch of 1,024 points and groups of 8. The outputs
    are computed from fenced inputs, by the same kernels at every width. (Values unchanged;
    a no-op on jax < 0.5.3.)"""
    return jax.lax.optimization_barrier(tree) if _HAS_FENCE else tree


def _select(pr: Params, subs: _Candidate, keys, allowed, valid, solver_f: Newton
            ) -> Equilibrium:
    """Best of the r = 0 corner and the allowed subproblems; snapped, classified, certified."""
    dt = pr.E_X.dtype
    zero = jnp.zeros((), dt)
    best = _Candidate(zero, zero, zero, jnp.int32(Status.SUCCESS), zero, jnp.int32(0))
    best_k = jnp.zeros((), dt)
    is_corner = jnp.bool_(True)
    iterations = jnp.int32(0)
    for key in allowed:
        pos = keys.index(key)
        cand = jax.tree_util.tree_map(lambda v, i=pos: v[i], subs)
        iterations = iterations + cand.iterations
        better = cand.u > best.u + _tie(best.u, dt)
        best = jax.tree_util.tree_map(lambda a, b, t=better: jnp.where(t, a, b), cand, best)
        best_k = jnp.where(better, jnp.asarray(float(key[0]), dt), best_k)
        is_corner = is_corner & ~better
    # The reported equilibrium is computed from the chosen candidate behind a fence (see
    # _fence), so that its arithmetic does not depend on how XLA fused it with the search.
    best, best_k, is_corner, pr = _fence((best, best_k, is_corner, pr))
    # Bound-active solutions sit within the solver tolerance of the bound: snap them, so that
    # I = 0 and R = 0 are exact (the payoff can only improve: the gradient points outwards).
    snap = 10.0 * float(jnp.finfo(dt).eps) ** 0.5
    s = jnp.where(best.s >= 1.0 - snap, 1.0, best.s)
    c = jnp.where(best.c <= snap * pr.E_L, 0.0, best.c)
    rho = _threshold(pr, best_k, c)
    r = jnp.where(is_corner, 0.0, s * s * rho)
    I = jnp.where(is_corner, 0.0, c * r)
    k = jnp.where(is_corner, 0.0, best_k)
    c = jnp.where(is_corner, 0.0, c)
    days = _days(pr, k, r, I, c)  # c = I / r (0 in the corner r = I = 0)
    # The re-check starts at the explicit response of the (s, c) coordinates,
    # R = s (1 - s) rho (0 at the threshold s = 1 and in the corner).
    start = jnp.where(is_corner, 0.0, s * (1.0 - s) * rho)
    br = _follower(pr, r, k, I, days, bounded=True, solver=solver_f,
                   start=jax.lax.stop_gradient(start))
    R = br.value[0]
    # At the deterrence threshold (s = 1) the response is 0 up to the round-off of rho.
    R = jnp.where(is_corner | (R <= POSITIVE_RTOL * r), 0.0, R)
    pay = _payoffs(pr, r, k, I, R, days)
    # A failed subproblem might have held the optimum: then no answer is certified.
    others = [subs.status[keys.index(key)] for key in allowed]
    status = first_failure(best.status, jnp.where(is_corner, jnp.int32(Status.SUCCESS),
                                                   br.status), *others)
    status = flag_invalid(status, valid)
    return Equilibrium(
        r, k.astype(jnp.int32), I, R, pay.u_G, pay.u_T, classify(r, k, I, R), c,
        status == Status.SUCCESS, best.residual, iterations + br.iterations, status,
        assumptions_hold(pr),
    )


@tiled
def equilibrium(params: Params, mechanism: str = "combined", *, search: Search = SEARCH,
                solver: Newton = SOLVER, follower_solver: Newton = FOLLOWER_SOLVER
                ) -> Equilibrium:
    """Subgame-perfect equilibrium ``(r, k, I, R)`` under ``mechanism`` (the defender's global
    optimum against the attacker's best response), with the Table 3 case."""
    _check_mechanism(mechanism)
    pr, valid = _prepare(params)
    allowed = _ALLOWED[mechanism]
    subs = _solve_subproblems(pr, allowed, search, solver, follower_solver)
    return _select(pr, subs, allowed, allowed, valid, follower_solver)


def _equilibrium_fn(mechanism: str):
    def solve(params: Params) -> Equilibrium:
        return equilibrium(params, mechanism)

    solve.__name__ = solve.__qualname__ = f"equilibrium_{mechanism}"
    solve.__doc__ = f"``equilibrium(params, {mechanism!r})`` (a sweepable solve function)."
    solve.__module__ = __name__
    return solve


equilibrium_none = _equilibrium_fn("none")
equilibrium_backup = _equilibrium_fn("backup")
equilibrium_inventory = _equilibrium_fn("inventory")
equilibrium_combined = _equilibrium_fn("combined")


class Mechanisms(NamedTuple):
    """The defender's equilibrium payoff and strategy under each of the four mechanisms."""

    u_G_none: Array
    u_G_backup: Array
    u_G_inventory: Array
    u_G_combined: Array
    r_none: Array
    r_backup: Array
    r_inventory: Array
    r_combined: Array
    I_inventory: Array
    I_combined: Array
    k_backup: Array
    k_combined: Array
    R_none: Array
    R_backup: Array
    R_inventory: Array
    R_combined: Array
    case_none: Array
    case_backup: Array
    case_inventory: Array
    case_combined: Array
    converged: Array
    residual: Array
    iterations: Array
    status: Array
    assumptions_hold: Array


@tiled
def compare_mechanisms(params: Params, *, search: Search = SEARCH, solver: Newton = SOLVER,
                       follower_solver: Newton = FOLLOWER_SOLVER) -> Mechanisms:
    """All four mechanisms at once (Figure 7): the four ``(k, inventory)`` subproblems are
    solved once and shared, and each mechanism takes the best of those it allows, so
    ``u_G_combined >= u_G_backup, u_G_inventory >= u_G_none`` holds exactly."""
    pr, valid = _prepare(params)
    keys = _ALLOWED["combined"]
    subs = _solve_subproblems(pr, keys, search, solver, follower_solver)
    eq = {m: _select(pr, subs, keys, _ALLOWED[m], valid, follower_solver) for m in MECHANISMS}
    status = first_failure(*(eq[m].status for m in MECHANISMS))
    return Mechanisms(
        *(eq[m].u_G for m in MECHANISMS), *(eq[m].r for m in MECHANISMS),
        eq["inventory"].I, eq["combined"].I, eq["backup"].k, eq["combined"].k,
        *(eq[m].R for m in MECHANISMS), *(eq[m].case for m in MECHANISMS),
        status == Status.SUCCESS,
        jnp.max(jnp.stack([eq[m].residual for m in MECHANISMS])),
        jnp.sum(subs.iterations),
        status, eq["combined"].assumptions_hold,
    )


# ----------------------------------------------------------------------------- strategy maps


class Strategy(NamedTuple):
    """A parameter point together with the defender's strategy ``(r, k, I)``: the input of
    :func:`response`, so that the attacker's best response and both payoffs can be swept over
    strategies (the source's Figures 4 and 5)."""

    alpha: Array | float
    beta: Array | float
    V: Array | float
    v: Array | float
    h: Array | float
    gamma_G: Array | float
    gamma_T: Array | float
    m: Array | float
    E_X: Array | float
    E_L: Array | float
    E_D: Array | float
    c_L: Array | float = 0.4
    c_D: Array | float = 1.0
    law_L: Quadrature | None = None
    law_D: Quadrature | None = None
    r: Array | float = 1.0  # defender's daily resource
    k: Array | float = 0.0  # capacity backup (0 or 1)
    I: Array | float = 0.0  # noqa: E741  inventory

    @property
    def params(self) -> Params:
        return Params(*self[: len(Params._fields)])


class Response(NamedTuple):
    """The attacker's best response to a defender strategy and the payoffs it gives."""

    R_hat: Array
    u_G: Array
    u_T: Array
    A: Array  # expected contest days
    B: Array  # expected days the attacker holds the asset
    H: Array  # expected inventory-days
    rho: Array  # deterrence threshold at the strategy's days of cover
    converged: Array
    residual: Array
    iterations: Array
    status: Array
    assumptions_hold: Array


def response(point: Strategy) -> Response:
    """``R_hat(r, k, I)`` (engine), ``u_G``, ``u_T`` and ``A, B, H`` at one strategy."""
    if not isinstance(point, Strategy):
        raise TypeError(f"{MODEL}: expected a Strategy, got {type(point).__name__}")
    check_domain(point, {n: DOMAIN[n] for n in ("r", "k", "I")}, MODEL)
    _check_k(point.k)
    br = attacker_best_response(point.params, point.r, point.k, point.I)
    pr, _ = _prepare(point.params)
    dt = pr.E_X.dtype
    r, k, I = (jnp.asarray(x, dt) for x in (point.r, point.k, point.I))
    cap = _cap(pr)
    c = _cover(r, I, cap)
    days = _days(pr, k, r, I, c)
    pay = _payoffs(pr, r, k, I, br.R_hat, days)
    return Response(br.R_hat, pay.u_G, pay.u_T, days.A, days.B, days.H,
                    _threshold(pr, k, jnp.minimum(c, cap)), br.converged, br.residual,
                    br.iterations, br.status, assumptions_hold(pr))


# ----------------------------------------------------------------------------- sweep metadata

#: The base point of sweep files: Table 2.
DEFAULT = BASELINE

#: Base points of solve functions whose input is not ``Params``.
DEFAULTS = {Strategy: Strategy(*BASELINE)}

#: Functions ``point -> NamedTuple`` that sweeps may call.
SOLVE_FUNCTIONS = ("equilibrium", "equilibrium_none", "equilibrium_backup",
                   "equilibrium_inventory", "equilibrium_combined", "compare_mechanisms",
                   "response")

_MONEY = "$"
OUTPUT_UNITS = {
    **{k: _MONEY for k in ("u_G", "u_T", *(f"u_G_{m}" for m in MECHANISMS))},
    **{k: "unit/day" for k in ("r", "R", "R_hat", "rho", *(f"r_{m}" for m in MECHANISMS),
                               *(f"R_{m}" for m in MECHANISMS))},
    **{k: "unit" for k in ("I", "I_inventory", "I_combined")},
    **{k: "day" for k in ("cover", "A", "B")},
    "H": "unit day",
}

DESCRIPTIONS = {
    "alpha": "reservation cost of capacity backup",
    "beta": "usage cost of capacity backup",
    "V": "attacker's asset valuation",
    "v": "defender's asset valuation",
    "h": "holding cost of inventory",
    "gamma_G": "defender's resource cost",
    "gamma_T": "attacker's resource cost",
    "m": "defender's loss rate without supply",
    "E_X": "expected peace time",
    "E_L": "expected outage time",
    "E_D": "expected backup delay",
    "c_L": "relative half-width of the uniform outage law",
    "c_D": "relative half-width of the uniform delay law",
    "r": "defender's daily resource",
    "k": "capacity backup (1 = reserved)",
    "I": "inventory",
    "R": "attacker's daily resource",
    "R_hat": "attacker's best response",
    "u_G": "defender's expected payoff",
    "u_T": "attacker's expected payoff",
    "case": "case of Table 3 (1-16)",
    "cover": "days of inventory I / r",
    "A": "expected days of contest",
    "B": "expected days the attacker holds the asset",
    "H": "expected inventory-days",
    "rho": "deterrence threshold of r",
    **{f"u_G_{m}": f"defender's payoff, {m} mechanism" for m in MECHANISMS},
    **{f"r_{m}": f"defender's resource, {m} mechanism" for m in MECHANISMS},
    **{f"R_{m}": f"attacker's resource, {m} mechanism" for m in MECHANISMS},
    **{f"case_{m}": f"Table 3 case, {m} mechanism" for m in MECHANISMS},
    "I_inventory": "inventory, inventory mechanism",
    "I_combined": "inventory, combined mechanism",
    "k_backup": "capacity backup, backup mechanism",
    "k_combined": "capacity backup, combined mechanism",
    "converged": "the solve met its tolerance (status == 0)",
    "residual": "norm of the complementarity residual at the solution",
    "iterations": "Newton iterations",
    "status": "0 success, 1 max steps, 2 non-finite, 3 stagnated, 4 invalid input, "
              "5 unbounded (no optimum)",
    "assumptions_hold": "min L > max D (the source's assumption)",
}
