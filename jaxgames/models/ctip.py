r"""Government-moderated cyber threat intelligence platform (CTIP) with minimum-order-quantity
(MOQ) procurement among competing critical supply chains -- a **reconstruction**.

Source: Arisian, Halat, Hafezalkotob & Maskey (2025), "Coopetitive Resilience: Integrating Cyber
Threat Intelligence Platforms in Critical Supply Chains", Transp. Res. E 197, 104043. Only the
abstract is available to this project, so **every equation below is a modelling choice** made
from the abstract and the building blocks it cites (Cournot competition, Gordon-Loeb breach
functions, Gal-Or & Ghose / Gordon et al. security-information sharing, MOQ contracts), not the
paper's model. Each choice is a parameter or a documented option; the numbers are illustrative.
Equation numbers (C1)-(C8) refer to this docstring (they restate the project's model
specification, which has no equation numbers of its own).

**Players.** A government (leader, :func:`optimal_policy`) and ``N`` competing critical supply
chains (CSCs), ``N`` = 2 ... 6. ``N`` is static: the length of the per-chain leaves ``v, alpha,
beta, delta, sigma`` (all scalars: ``N = 2``).

* (C1) Market: inverse demand ``P(X) = a - b X``, ``X = sum_i x_i`` (delivered quantities).
* (C2) Disruption of CSC ``i`` with probability (Gordon-Loeb class I)
  ``pi_i = v_i (1 + alpha_i (z_i + lam sum_{j != i} z_j))^{-beta_i}``: ``lam`` in [0, 1] is the
  platform's intelligence-sharing level (a share ``lam`` of the partners' security investment
  also protects ``i``). Disruptions ``B_i ~ Bernoulli(pi_i)`` are independent given ``z``; the
  ``2^N`` states ``B`` are enumerated exactly.
* (C3) A disrupted CSC loses a fraction ``delta_i`` of its base order: ``y_i = q_i (1 - delta_i
  B_i)``. Security investment ``z_i >= 0`` costs the CSC ``(1 - sigma_i) z_i``; the government
  pays ``sigma_i z_i``.

**SP -- separate procurement, fixed quantity** (:func:`equilibrium` with ``regime="sp"``). Each
CSC picks ``(q_i, z_i) >= 0``; delivered ``x_i = y_i``;

* (C4) ``Pi_i = E_B[P(X) x_i] - w q_i - (1 - sigma_i) z_i``.

**MOQ -- cooperative flexible procurement on the platform** (``regime="moq"``). Stage 1: each CSC
picks ``(q_i, z_i) >= 0`` under the joint minimum order ``sum_i q_i >= M`` -- a shared constraint
with one multiplier ``mu`` common to all CSCs (variational equilibrium,
``0 <= mu  perp  sum q - M >= 0``). Stage 2, after ``B`` is observed: each CSC may top up
``e_i >= 0`` at unit cost ``w_e`` from the pooled flexible supplier, a Cournot subgame

* (C5) ``0 <= e_i  perp  -(a - b X - b x_i - w_e) >= 0``, ``x_i = y_i + e_i``;
* (C6) ``Pi_i = E_B[P(X) x_i - w_e e_i] - w q_i - (1 - sigma_i) z_i``.

**Welfare** (C7): ``EW = E[b X^2 / 2] + psi E[X] + sum_i Pi_i - sum_i sigma_i z_i
- c_lam lam^2 / 2`` (consumer surplus, social value ``psi`` per delivered unit of a critical
product, profits, subsidy outlay, cost of running the platform).

**Participation and the outside option** (C8, gap decision): the government's levers act on the
MOQ platform; a CSC's outside option is SP at the status-quo policy (the ``sigma``, ``lam`` of the
``Params`` given), so participation reads ``Pi_i^MOQ(sigma', lam', M') >= Pi_i^SP(sigma, lam)``.

How it is solved
----------------
* **Second stage, exactly.** For fixed base deliveries ``y`` the Cournot subgame (C5) has a
  strongly monotone map (Jacobian ``b (I + 1 1^T)``), hence a unique equilibrium: all CSCs that
  top up reach a common delivered level ``x*``, the others deliver ``y_i``, and
  ``x* + sum_j max(y_j, x*) = (a - w_e) / b``. The left side is the maximum over ``k`` of the
  lines "the ``k`` smallest ``y`` top up", so ``x* = min_k ((a - w_e)/b - (sum of the N - k
  largest y)) / (1 + k)`` and ``e_i = max(0, x* - y_i)`` (:func:`second_stage`). This is the
  enumeration of the ordered active sets in closed form: piecewise linear in ``y``, with exact
  derivatives off the kinks (a top-up switching on or off). It is evaluated in all ``2^N`` states
  at once. :func:`second_stage_mcp` solves the same subgame with the engine's complementarity
  solver; tests hold the two equal (and both equal to a brute-force enumeration of all ``2^N``
  active sets, :func:`second_stage_enumerated`).
* **Two routes for the exact second stage** (static option ``stage2`` of :func:`equilibrium`,
  :func:`equilibrium_moq`, :func:`compare`, :func:`optimal_policy`; :data:`STAGE2`).
  ``"closed_form"``, the default: :func:`second_stage`, exact and fast. ``"engine"``:
  :func:`second_stage_engine`, (C5) solved per state by the engine (:func:`second_stage_mcp`
  ``vmap``-ped over the ``2^N`` states: semismooth Newton from ``e = 0``, scaled by
  ``max(|c|, max_j |y_j|)``, derivatives of any order by the implicit function theorem) -- the
  generic route that a subgame without a closed form would take. Tests hold the two routes'
  equilibria equal; the benchmark their implicit derivatives (3e-14). The engine route costs
  more: at ``N = 2`` (MOQ, ``jit(vmap)`` over 34 points) its program compiled in 354 s of
  CPU against 93 s and solved
  12 equilibria per CPU second against 55 (``benchmarks/bench_ctip.py --stage2-engine``;
  benchmarks/README). A stage-2 solve that fails gives its state NaN top-ups, so no
  first-stage level converges on it, and a failure at the reported profile sets the status
  (``Outcome.stage2_status``): never silently used.
* **First stage.** The CSCs' payoffs (C4)/(C6) are written once; the engine
  (:func:`jaxgames.nash_equilibrium`, semismooth Newton on the stacked first-order conditions from
  autodiff, shared constraint for MOQ) differentiates through the exact second stage -- with
  ``stage2="engine"`` through the engine's stage-2 solves (the Newton Jacobian differentiates
  them twice, the implicit derivatives of the first stage three times) -- so every CSC
  anticipates the top-ups of all CSCs in every state (subgame perfection). The smoothed
  second stages of the homotopy (``tau > 0``, below) are a path device and use the smoothed
  closed form under either option; the exact level and the outcomes use ``stage2``. The
  certificates (local and grid, below) re-solve the second stage by the closed form under
  either option: an independent check of an engine equilibrium, and the grid's
  ``N (24 + 1) (12 + 1)`` deviations would otherwise each cost ``2^N`` engine solves.
* **Kinks.** The MOQ payoff is only piecewise smooth in ``q``: where a top-up switches, the
  marginal value of ``q_i`` jumps (up when CSC ``i`` itself stops topping up -- its base order
  then crowds out the others' top-ups -- and down when a rival stops). A first-order root on a
  kink may hence not be a best response, and an equilibrium can sit exactly on a concave kink
  over a range of parameters (the first-order condition jumps over zero there, so Newton on the
  exact game cannot meet it). The MOQ solve is therefore a homotopy (:data:`HOMOTOPY`) over
  smoothed second stages of width ``t = tau (a - w_e) / b``, ``tau = 1e-2, 1e-4, 1e-6,
  1e-8``, each level warm-started from the previous one, then the exact game. The smoothing
  replaces ``max(0, u)`` by ``t softplus(u / t)`` in the level equation and the top-ups:
  ``x*`` is the root of ``x + sum_j (y_j + t softplus((x - y_j) / t)) = (a - w_e) / b``
  (increasing and convex in ``x``: Newton from the exact level, a fixed number of steps,
  derivatives by the implicit function theorem) and ``e_j = t softplus((x* - y_j) / t)``.
  It is symmetric in ``y`` -- CSCs with equal base deliveries get equal top-ups -- and
  tends to the exact subgame as ``t -> 0`` (``x*`` within ``N t log 2``). (The earlier
  smoothing, log-sum-exp of the sorted closed form's ``min``, was not smooth where base
  deliveries tie, so symmetric points had slightly asymmetric smoothed equilibria, and at
  ``N = 6``, ``v = 0.5``, ``lam = 0.2`` no level from ``tau = 1e-4`` on converged.)
  Where this path fails, an adaptive continuation takes over from the last solved level: one
  decade per step, halved after a failure and doubled (up to two) after a success, then the
  exact game. Where many states switch at one point -- at the defaults with ``N = 6`` every
  state with exactly two disruptions switches at the symmetric equilibrium ``q_i = (a -
  w_e) / ((N - 1/2) b)``, 15 kinks at once -- a level's solution lies about the previous
  width away from the next one's, whose first-order conditions curve on the scale of its own
  width, and a ratio of 100 between levels can leave Newton's basin; smaller steps keep the
  warm start inside (with the earlier smoothing the defaults needed this path: 319 Newton
  iterations in all; with the symmetric one they take 33). If no smoothed level was solved,
  the first one is retried from the same orders without security investment (at an
  asymmetric point with ``N = 6`` and a binding ``M = 80`` Newton wandered, with the earlier
  smoothing, from :func:`start_point`'s investments to negative ones and spent its 60 steps;
  from ``z = 0`` it converged in 13). The exact level's solution
  is used when it converges and is certified, else the last smoothed level's, once the path
  has reached ``tau = 1e-8`` (the kink is then located to ~1e-7 relative). The path is a loop
  on constants; derivatives are the implicit ones of the reported level
  (:func:`_path_jvp`). Every solution is certified locally: each CSC's payoff at
  ``q_i +- h``, ``z_i +- h`` (second stage re-solved) must not beat the reported one;
  otherwise the point is flagged ``status = STAGNATED``. ``at_kink`` reports a solution within
  ``1e-6`` (relative) of a switching point.
* **Global certificate.** Because of the convex kinks a first-order point can be a local
  maximum of a CSC's payoff only. Every solution is checked against a grid of unilateral
  deviations over each CSC's own ``(q_i, z_i)`` (:data:`CERT_GRID`, second stage re-solved);
  ``deviation_gain`` is the best relative gain found. This happens where top-ups are nearly
  as cheap as base orders (``w_e`` close to ``w``): Newton can end at a first-order point
  where one CSC sits on a local maximum of its payoff, relying on top-ups (a small ``q_i``),
  while a large order pays more; in SP with much sharing a CSC can likewise sit on a local
  maximum near free riding. A solve whose solution fails a certificate is therefore
  restarted (at most :data:`RESTARTS` times): first from the profile in which the CSC with
  the largest grid gain plays its best grid point -- a start in another basin of Newton's
  method --, then from a Gauss-Seidel pass of the grid's best replies to that restart's
  solution (CSC 1 plays its best grid point, then CSC 2 against the updated profile, ...,
  CSC ``N``; :data:`GAUSS_SEIDEL_RESTARTS`, :func:`_grid_replies`), and, under MOQ, a last
  time from the symmetric start on a second path of smoothing widths, ``1e-1, 1e-3, 1e-5,
  1e-7, 1e-8`` (:attr:`Homotopy.wide_start`; :func:`_path`). At the three such MOQ points
  of the benchmark's random sample of 256 at ``N = 2`` the first restart reaches a certified
  equilibrium, the point that a
  Gauss-Seidel loop of global best responses converges to. The fourth, an SP point with
  ``lam = 0.86``, has no pure-strategy equilibrium: one CSC's best reply jumps from not
  investing to investing much as its partner's investment crosses a switch point, and the
  partner's replies to the two branches lie on opposite sides of it (the best-response loop
  cycles between the two profiles; README, tests). The last restart is for paths that
  stagnate where the grid's deviation leads back into the same basin: at point 4 of the
  benchmark's ``N = 6`` sample (``v = (0.37, 0.18, 0.58, 0.59, 0.23, 0.58)``, ``lam = 0.62``,
  ``M = 42.6``, ``w_e = 27.5``) the first level, ``tau = 1e-2``, takes Newton from the
  symmetric start to a first-order point at which CSCs 4 and 6 order nothing and rely on
  top-ups (for a CSC that always tops up, the marginal value of its order is
  ``w_e (1 - delta_i pi_i) - w``, here -0.86 and -0.88, so ``q_i = 0`` is a local
  maximum); the finer levels and the exact game stagnate near it (Newton's residual stays
  ~1e-3: no first-order point found there), and the local certificate rejects the profile (at the
  ``tau = 1e-2`` level's, CSC 3 gains 0.28 by ordering 5.3 instead of 4.1). The grid's best
  deviation there is CSC 1's (the ``q_i`` grid step, ``(a/b) / 23``, is too coarse to see
  CSC 3's); the restart from it returns to the same profile, the Gauss-Seidel pass after it
  (CSCs 1 and 3 move a grid step) to a nearby one. Newton's basins on this
  problem are small and irregular (of 17 starts tried on the first path -- symmetric, SP,
  scaled and mixed profiles, the stagnated one with CSC 3's order raised -- two reach the
  equilibrium); the second path, from the
  symmetric start, reaches it at ``tau = 1e-5`` (its first two levels fail; 99 Newton
  iterations) and then the exact game: ``q = (17.53, 19.74, 10.59, 2.23, 19.39, 2.72)``,
  only CSC 3 investing (27.73), ``M`` slack, certified by both certificates and by the
  tests' brute-force grid -- the equilibrium that the earlier, log-sum-exp smoothing found
  on its nominal path. A point that no restart certifies is flagged ``STAGNATED``:
  reported as a failure, never as an equilibrium. That is the right answer at point 11 of the
  benchmark's ``N = 4`` sample (``v = (0.44, 0.60, 0.34, 0.57)``,
  ``delta = (0.31, 0.78, 0.38, 0.72)``, ``lam = 0.68``, ``sigma = 0.01``, ``M = 46.0``,
  ``w_e = 27.5``), which has no pure-strategy equilibrium that any method finds. CSCs 2 and 4
  lose most of a disrupted order and each has two local best replies: order and invest nothing,
  relying on top-ups, or order (and, for CSC 2, invest). The first path converges (the exact
  game) to a profile that passes the local certificate, ``q = (29.99, 0, 29.32, 5.65)``,
  ``z = (11.75, 0, 8.35, 0)``, but CSC 4 gains 6.0e-4 (relative) by ordering nothing; from that
  deviation and from the Gauss-Seidel pass after it (CSCs 1 and 3 order more), profiles in
  which CSCs 2 and 4 both order nothing, no level of the homotopy converges, and the second
  path stops at a smoothed level that the local certificate rejects. Of 200 solves from random and
  structured starts on both paths, 114 end at a locally certified first-order point, and those
  are only three profiles, each beaten by a unilateral grid deviation (relative gains 6.0e-4,
  5.8e-3, 1.2e-2): the one above, ``q = (22.70, 15.18, 21.87, 7.77)``, ``z = (0, 32.67, 0, 0)``
  (where CSC 2 gains by ordering nothing; the SciPy loop stops there, its L-BFGS-B replies
  being local) and ``q = (24.29, 6.58, 23.86, 12.63)``, ``z = (0, 0, 0, 24.28)``. Gauss-Seidel
  *global* best replies (exact second stage, each reply by a zoomed grid over the CSC's own
  ``(q_i, z_i)``), from the solve's profile, settle on a cycle of three profiles in which
  CSC 2 orders 0, 4.7, 11.5 and CSC 4 0, 0, 3.2 (``benchmarks/bench_ctip.py --moq4-scan``
  prints all of it; a test pins the flag and that the three first-order points are beaten).
  A mixed-strategy equilibrium is outside this model. At point 249 of the same sample
  (``v = (0.35, 0.27, 0.32, 0.42)``, ``delta = (0.57, 0.49, 0.59, 0.76)``, ``lam = 0.80``,
  ``M = 14.9``, ``w_e = 25.7``) the first path ends at a local equilibrium that CSC 4 beats
  by ordering and investing nothing (grid gain 8.7e-3), and from that deviation no level
  converges; the Gauss-Seidel pass from there moves all four CSCs (``q = (26.09, 21.74,
  17.39, 4.35)``, ``z = (23.79, 0, 0, 0)``), and the first path from it ends at the
  equilibrium that the SciPy loop finds, ``q = (18.60, 19.94, 17.60, 10.20)``, ``z = (15.05,
  0, 4.75, 0)``, ``M`` slack, certified (a test; the restart from a second single deviation,
  which it replaces, and the second path missed it). Where the first solve is certified
  the restart loop costs one more evaluation of the deviation grid (under ``vmap``: while no
  point of the batch restarts).
* **lam = 1.** The investments are then perfect substitutes in (C2): only their sum is
  determined (the Newton system is singular) and ``z_unique`` is False. The split reported is
  the limit ``lam -> 1-`` (the game solved at ``lam - LAM_SPLIT_EPS``, outcomes evaluated at
  ``lam``), with identical CSCs given exactly equal shares (the symmetric split).

Sweeps
------
:data:`SOLVE_FUNCTIONS`: :func:`equilibrium` (``"sp"``), :func:`equilibrium_sp`,
:func:`equilibrium_moq`, :func:`compare`, and the government's problem with its documented
defaults, :func:`optimal_policy_default` (a common subsidy) and :func:`optimal_policy_targeted`
(one ``sigma_i`` per CSC): a map of optimal policies over risk profiles is one batched call,
streamed to a dataset like any equilibrium (``sweeps/ctip_policy_map.toml``).

Gap decisions (all parameters or options): the functional forms (C1)-(C7); independence of
disruptions; ``delta_i`` as a fraction of the *base* order (top-ups are never disrupted); the
outside option (C8); the lever bounds ``sigma in [0, 0.95]``, ``lam in [0, 1]``, ``M in [0, 100]``
(:data:`LEVER_BOUNDS`); the defaults (:data:`DEFAULT`, illustrative, not from the source).
``assumptions_hold`` is False where the price ``a - b X`` is negative in a state with positive
probability (linear demand outside its range).
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgames._games import Equilibrium as _GameSolution
from jaxgames._games import nash_equilibrium
from jaxgames._solver import Newton, Status, solve_mcp
from jaxgames._validation import Interval, check_domain, first_failure, flag_invalid

Array = jax.Array

MODEL = "ctip"

REGIMES = ("sp", "moq")

#: Per-chain parameters: one value per CSC (trailing dim "csc"); a scalar broadcasts.
CHAIN_FIELDS = ("v", "alpha", "beta", "delta", "sigma")

#: The number of CSCs when every per-chain leaf is a scalar.
DEFAULT_N = 2
MAX_N = 6


class Params(NamedTuple):
    """Parameters (C1)-(C7). ``v, alpha, beta, delta, sigma`` have one value per CSC (shape
    ``(N,)``; a scalar broadcasts); the others are scalars. Every leaf may be swept or
    differentiated."""

    a: Array | float = 100.0  # demand intercept
    b: Array | float = 1.0  # demand slope
    w: Array | float = 20.0  # unit price of the base (fixed-quantity) order
    w_e: Array | float = 30.0  # unit price of a flexible top-up (MOQ stage 2)
    v: Array | float = 0.3  # vulnerability: disruption probability without investment
    alpha: Array | float = 0.05  # effectiveness of security investment (1/$)
    beta: Array | float = 1.0  # elasticity of the breach function
    delta: Array | float = 0.5  # fraction of the base order lost in a disruption
    sigma: Array | float = 0.2  # government's subsidy share of security investment
    lam: Array | float = 0.5  # intelligence-sharing level of the platform
    M: Array | float = 56.0  # minimum order quantity (joint, MOQ regime)
    psi: Array | float = 10.0  # social value per delivered unit of the critical product
    c_lam: Array | float = 100.0  # cost of running the platform: c_lam lam^2 / 2


def _check_n(N: int) -> None:
    if not isinstance(N, int | np.integer) or not 2 <= int(N) <= MAX_N:
        raise ValueError(f"{MODEL}: the number of CSCs N must be an integer in [2, {MAX_N}], "
                         f"got {N!r}")


def make_params(N: int = DEFAULT_N, **values) -> Params:
    """A :class:`Params` with ``N`` CSCs: per-chain values broadcast to shape ``(N,)``."""
    _check_n(N)
    p = Params(**values)
    return p._replace(**{f: np.broadcast_to(np.asarray(getattr(p, f), float), (N,)).copy()
                         for f in CHAIN_FIELDS})


#: Specification defaults (illustrative, not from the source), N = 2.
DEFAULT = make_params()

_NONNEG = Interval(0.0, math.inf)
_POS = Interval(0.0, math.inf, lo_open=True)
_UNIT = Interval(0.0, 1.0)

#: Allowed parameter values. ``sigma < 1``: at ``sigma = 1`` security is free to the CSCs and
#: ``z`` grows without bound.
DOMAIN = {
    "a": _POS, "b": _POS, "w": _NONNEG, "w_e": _NONNEG, "v": _UNIT, "alpha": _NONNEG,
    "beta": _NONNEG, "delta": _UNIT, "sigma": Interval(0.0, 1.0, hi_open=True), "lam": _UNIT,
    "M": _NONNEG, "psi": _NONNEG, "c_lam": _NONNEG,
}

#: Government lever bounds (gap decision, the specification §3).
LEVER_BOUNDS = {"sigma": (0.0, 0.95), "lam": (0.0, 1.0), "M": (0.0, 100.0)}

UNITS = {
    "a": "$/unit", "b": "$/unit^2", "w": "$/unit", "w_e": "$/unit", "v": "1", "alpha": "1/$",
    "beta": "1", "delta": "1", "sigma": "1", "lam": "1", "M": "unit", "psi": "$/unit",
    "c_lam": "$",
}

#: Vector parameters and their trailing dimension (sweep contract).
PARAM_DIMS = {f: "csc" for f in CHAIN_FIELDS}


def n_chains(params: Params) -> int:
    """``N``: the common length of the per-chain leaves (``DEFAULT_N`` if all are scalars)."""
    shapes = [jnp.shape(getattr(params, f)) for f in CHAIN_FIELDS]
    lengths = {s[-1] for s in shapes if len(s) > 0}
    if len(lengths) > 1:
        raise ValueError(f"{MODEL}: per-chain parameters {CHAIN_FIELDS} must have one common "
                         f"length N (or be scalars); got shapes {shapes}")
    N = lengths.pop() if lengths else DEFAULT_N
    _check_n(N)
    return int(N)


def validate(params: Params) -> None:
    """Raise ``ValueError`` naming the parameter if a concrete input is outside its domain or
    has the wrong shape (scalars; per-chain leaves scalar or ``(N,)``)."""
    if not isinstance(params, Params):
        raise TypeError(f"{MODEL}: expected a Params, got {type(params).__name__}")
    for f in Params._fields:
        shape = jnp.shape(getattr(params, f))
        allowed = 1 if f in CHAIN_FIELDS else 0
        if len(shape) > allowed:
            kind = "a scalar or an (N,) vector" if allowed else "a scalar"
            raise ValueError(f"{MODEL}: parameter {f} must be {kind} for one point (vmap over "
                             f"batches); got shape {shape}")
    n_chains(params)
    check_domain(params, DOMAIN, MODEL)


def _prepare(params: Params) -> tuple[Params, Array, int]:
    """Validated point: floating JAX leaves, per-chain leaves of shape ``(N,)``; validity flag."""
    validate(params)
    N = n_chains(params)
    dtype = jnp.result_type(*[jnp.asarray(v) for v in params], float)
    pr = Params(*[jnp.asarray(v, dtype) for v in params])
    pr = pr._replace(**{f: jnp.broadcast_to(getattr(pr, f), (N,)) for f in CHAIN_FIELDS})
    ok = jnp.array(True)
    for name, interval in DOMAIN.items():
        ok = ok & jnp.all(interval.contains(getattr(pr, name)))
    return pr, ok, N


# ----------------------------------------------------------------------------- building blocks


def states(N: int) -> np.ndarray:
    """The ``2^N`` disruption states ``B`` (rows, 0/1), first CSC varying slowest."""
    return np.array(list(itertools.product((0.0, 1.0), repeat=N)))


def disruption_probability(pr: Params, z: Array) -> Array:
    """(C2) ``pi_i = v_i (1 + alpha_i (z_i + lam sum_{j != i} z_j))^{-beta_i}``."""
    shared = z + pr.lam * (jnp.sum(z) - z)
    return pr.v * (1.0 + pr.alpha * shared) ** (-pr.beta)


def state_probabilities(pi: Array, B: np.ndarray) -> Array:
    """``P(B)`` for every state row of ``B`` (independent disruptions)."""
    pi = jnp.broadcast_to(pi, B.shape)
    return jnp.prod(jnp.where(B > 0, pi, 1.0 - pi), axis=-1)


def _static_zero(tau) -> bool:
    """``tau`` is a Python (or NumPy) zero, known while tracing."""
    return isinstance(tau, int | float | np.number) and tau == 0


def second_stage(y: Array, a, b, w_e, tau=0.0) -> Array:
    """Top-ups ``e`` of the Cournot subgame (C5) for base deliveries ``y`` (last axis: CSCs;
    any leading axes, e.g. the states). Exact (see the module docstring): ``x* = min_k (c -
    sum of the N - k largest y) / (1 + k)`` with ``c = (a - w_e) / b``, ``e = max(0, x* - y)``.

    ``tau > 0`` smooths the subgame symmetrically in ``y``: ``max(0, u)`` becomes
    ``t softplus(u / t)`` of width ``t = tau`` (in units of ``y``), both in the level's
    equation ``x + sum_j max(y_j, x) = c`` and in the top-ups, so ``x*`` is the root of
    ``x + sum_j (y_j + t softplus((x - y_j) / t)) = c`` (:func:`_smooth_level`) and
    ``e_j = t softplus((x* - y_j) / t)``. It is used only on the homotopy path of the
    first-stage solve towards equilibria that sit on a kink (module docstring); as ``t -> 0``
    it tends to the exact subgame (``0 <= x*_exact - x*_t <= N t log 2``). ``tau = 0`` is
    exact.
    """
    N = y.shape[-1]
    ys = jnp.sort(y, axis=-1)
    total = jnp.sum(ys, axis=-1, keepdims=True)
    below = jnp.concatenate([jnp.zeros_like(total), jnp.cumsum(ys, axis=-1)], axis=-1)
    c = (a - w_e) / b
    k1 = jnp.arange(1, N + 2, dtype=y.dtype).reshape((1,) * (y.ndim - 1) + (N + 1,))
    cand = (c - (total - below)) / k1
    level = jnp.min(cand, axis=-1)
    exact = jnp.maximum(level[..., None] - y, 0.0)
    if _static_zero(tau):  # exact by construction: keep the smoothing out of the program
        return exact
    smooth = tau > 0
    t = jnp.broadcast_to(jnp.where(smooth, tau, 1.0), level.shape).astype(y.dtype)
    x = _smooth_level(y, jnp.broadcast_to(c, level.shape).astype(y.dtype), t,
                      jax.lax.stop_gradient(level))
    soft = t[..., None] * jax.nn.softplus((x[..., None] - y) / t[..., None])
    return jnp.where(smooth, soft, exact)


#: Newton steps of :func:`_smooth_level` (from the exact level, the iteration decreases
#: monotonically to the root and reaches it to round-off in at most 5 steps).
SMOOTH_LEVEL_STEPS = 8


@jax.custom_jvp
def _smooth_level(y: Array, c: Array, t: Array, x0: Array) -> Array:
    """The root ``x`` of ``g(x) = x + sum_j (y_j + t softplus((x - y_j) / t)) - c`` (last
    axis of ``y``: CSCs; ``c``, ``t``, ``x0`` have ``y``'s leading shape).

    ``g`` is increasing (``g' = 1 + sum_j sigmoid((x - y_j) / t) >= 1``) and convex, so
    Newton's method started at a point right of the root decreases monotonically to it. The
    start ``x0`` is the exact level (the root of ``g`` with ``max`` for ``t softplus``):
    since ``t softplus(u / t) >= max(0, u)``, ``g(x0) >= 0``. In units of ``t`` the start is
    at most ``N log 2`` from the root, so a fixed number of steps,
    :data:`SMOOTH_LEVEL_STEPS`, reaches it to round-off (the iteration is scale-free in
    ``t``; tests check the residual). Derivatives by the implicit function theorem
    (:func:`_smooth_level_jvp`), so forward and reverse mode of any order are exact.
    """

    def newton(_, x):
        u = (x[..., None] - y) / t[..., None]
        g = x + jnp.sum(y + t[..., None] * jax.nn.softplus(u), axis=-1) - c
        return x - g / (1.0 + jnp.sum(jax.nn.sigmoid(u), axis=-1))

    return jax.lax.fori_loop(0, SMOOTH_LEVEL_STEPS, newton, x0)


@_smooth_level.defjvp
def _smooth_level_jvp(primals, tangents):
    """Implicit function theorem on ``g(x; y, c, t) = 0``: ``dx = -(sum_j (1 - s_j) dy_j - dc
    + sum_j (softplus(u_j) - u_j s_j) dt) / (1 + sum_j s_j)``, ``u_j = (x - y_j) / t``,
    ``s_j = sigmoid(u_j)`` (``x0`` only starts the iteration)."""
    y, c, t, x0 = primals
    dy, dc, dt, _ = tangents
    x = _smooth_level(y, c, t, x0)
    u = (x[..., None] - y) / t[..., None]
    s = jax.nn.sigmoid(u)
    num = (jnp.sum((1.0 - s) * dy, axis=-1) - dc
           + jnp.sum(jax.nn.softplus(u) - u * s, axis=-1) * dt)
    return x, -num / (1.0 + jnp.sum(s, axis=-1))


def second_stage_enumerated(y: np.ndarray, a: float, b: float, w_e: float) -> np.ndarray:
    """Test oracle (NumPy): the subgame (C5) for one ``y`` by enumerating all ``2^N`` active
    sets, solving each linear system and keeping the one that satisfies complementarity."""
    y = np.asarray(y, float)
    N = y.shape[0]
    found = []
    for S in itertools.product((False, True), repeat=N):
        S = np.array(S)
        e = np.zeros(N)
        if S.any():
            # a - b X - b x_i = w_e for i in S, x_i = y_i + e_i; X = sum y + sum e.
            k = S.sum()
            A = b * (np.eye(k) + np.ones((k, k)))
            rhs = a - w_e - b * y.sum() - b * y[S]
            e[S] = np.linalg.solve(A, rhs)
        X = y.sum() + e.sum()
        mr = a - b * X - b * (y + e) - w_e
        scale = 1e-9 * (abs(a) + abs(w_e) + b * abs(y).sum())
        if np.all(e >= -scale) and np.all(mr[~S] <= scale):
            found.append(np.maximum(e, 0.0))
    if not found:
        raise RuntimeError("no active set satisfies complementarity")
    return found[0]


#: Solver of :func:`second_stage_mcp`.
STAGE2_SOLVER = Newton(max_steps=30)


def second_stage_mcp(y: Array, a, b, w_e, *, solver: Newton = STAGE2_SOLVER):
    """The subgame (C5) for one state solved by the engine (:func:`jaxgames.solve_mcp`):
    ``0 <= e  perp  -(a - b X - b x - w_e)``, from ``e = 0``. Returns the engine's ``Solution``.

    Scales: quantities in units of ``s = max(|c|, max_j |y_j|)``, ``c = (a - w_e) / b`` (top-ups
    ``s / (N + 1)``, the conditions ``b s``), so the scaled problem is the same at any size of
    the market or the orders. (With a fixed ``f_scale = 1`` and ``x_scale`` floored at 1, as
    before, some solves at ``N = 4, 6`` stagnated at ``a = 1e6, b = 1e3``, and at ``b = 1e6``
    one was reported converged 1e-6 (relative to ``c``) from the solution.)"""

    def foc(e, args):
        y_, a_, b_, we_ = args
        x = y_ + e
        return -(a_ - b_ * jnp.sum(x) - b_ * x - we_)

    s = jnp.maximum(jnp.abs((a - w_e) / b), jnp.max(jnp.abs(y)))
    s = jnp.where(s > 0, s, 1.0)  # c = 0 and y = 0: e = 0 at any scale
    N = y.shape[-1]
    return solve_mcp(foc, jnp.zeros_like(y), (y, a, b, w_e), lower=0.0,
                     x_scale=jnp.full_like(y, s / (N + 1)), f_scale=jnp.full_like(y, b * s),
                     solver=solver)


#: Second-stage routes of the first-stage solve (:func:`equilibrium`'s ``stage2``; module
#: docstring): ``"closed_form"`` (:func:`second_stage`, the default) or ``"engine"``
#: (:func:`second_stage_engine`).
STAGE2 = ("closed_form", "engine")


def _check_stage2(stage2: str) -> None:
    if stage2 not in STAGE2:
        raise ValueError(f"{MODEL}: stage2 must be one of {list(STAGE2)}, got {stage2!r}")


def second_stage_engine(y: Array, a, b, w_e) -> tuple[Array, Array]:
    """Top-ups of (C5) in every state (rows of ``y``) by :func:`second_stage_mcp`, ``vmap``ped
    over the states: the engine's solve, derivatives of any order by its implicit function
    theorem. Returns ``(e, status)``: ``e`` is NaN in a state whose solve failed (so a payoff
    built on it is NaN: the first-stage solve cannot converge on it), ``status`` the first
    failure over the states (:func:`jaxgames._validation.first_failure` order)."""
    sol = jax.vmap(second_stage_mcp, in_axes=(0, None, None, None))(y, a, b, w_e)
    ok = sol.status == Status.SUCCESS
    first = jnp.argmin(ok)  # the first failed state (0 if none failed)
    status = jnp.where(jnp.all(ok), jnp.int32(Status.SUCCESS), sol.status[first])
    return jnp.where(ok[:, None], sol.value, jnp.nan), status


def _c_scale(pr: Params) -> Array:
    """Typical size of a delivered quantity, ``max(|a - w_e| / b, 1)``."""
    return jnp.maximum(jnp.abs(pr.a - pr.w_e) / pr.b, 1.0)


class Outcome(NamedTuple):
    """Expected outcomes of a first-stage profile ``(q, z)`` (stage 2 played optimally)."""

    Pi: Array  # (N,) expected profits (C4)/(C6)
    pi: Array  # (N,) disruption probabilities (C2)
    e: Array  # (N,) expected top-ups
    EX: Array  # expected total delivery
    CS: Array  # expected consumer surplus E[b X^2 / 2]
    subsidy: Array  # government's outlay sum sigma_i z_i
    EW: Array  # expected economic welfare (C7)
    price_ok: Array  # a - b X >= 0 in every state with positive probability
    kink_gap: Array  # min over states and CSCs of |x* - y_i| / scale (distance to a kink)
    stage2_status: Array  # first failure of the per-state stage-2 solves (stage2="engine")


def _stage_values(pr: Params, q: Array, z: Array, regime: str, tau, stage2: str):
    """The expected profits (C4)/(C6) and the per-state quantities they are made of; the
    exact second stage by ``stage2`` (:data:`STAGE2`), the smoothed one (``tau > 0``) always
    by the closed form (a device of the homotopy's path)."""
    N = q.shape[-1]
    B = states(N)
    pi = disruption_probability(pr, z)
    p = state_probabilities(pi, B)  # (S,)
    y = q[None, :] * (1.0 - pr.delta[None, :] * B)  # (S, N)
    s2 = jnp.int32(Status.SUCCESS)
    if regime == "moq" and stage2 == "engine":
        if _static_zero(tau):
            e, s2 = second_stage_engine(y, pr.a, pr.b, pr.w_e)
        else:
            # The homotopy's traced tau: smoothed levels keep the smoothed closed form; the
            # engine solves the exact level. A smoothed level gives the engine y = 0 (always
            # solved): an unused failed solve would still leak NaN into reverse-mode
            # derivatives through the select.
            smooth = tau > 0
            soft = second_stage(y, pr.a, pr.b, pr.w_e, tau * _c_scale(pr))
            e_ex, s2 = second_stage_engine(jnp.where(smooth, 0.0, y), pr.a, pr.b, pr.w_e)
            e = jnp.where(smooth, soft, e_ex)
            s2 = jnp.where(smooth, jnp.int32(Status.SUCCESS), s2)
    elif regime == "moq":
        e = second_stage(y, pr.a, pr.b, pr.w_e,
                         0.0 if _static_zero(tau) else tau * _c_scale(pr))
    else:
        e = jnp.zeros_like(y)
    x = y + e
    X = jnp.sum(x, axis=-1)
    price = pr.a - pr.b * X
    revenue = p @ (price[:, None] * x - pr.w_e * e)
    Pi = revenue - pr.w * q - (1.0 - pr.sigma) * z
    return Pi, pi, p, y, e, x, X, price, s2


def profits(pr: Params, q: Array, z: Array, regime: str, tau=0.0,
            stage2: str = "closed_form") -> Array:
    """``outcome(...).Pi`` alone: the payoffs the first-stage solve differentiates (twice), without
    the welfare and diagnostic terms (they would only lengthen the traced program)."""
    return _stage_values(pr, q, z, regime, tau, stage2)[0]


def outcome(pr: Params, q: Array, z: Array, regime: str, tau=0.0,
            stage2: str = "closed_form") -> Outcome:
    """(C4)-(C7) at the first-stage profile ``(q, z)`` of ``regime`` (``pr`` prepared);
    ``tau``: smoothing of the second stage (:func:`second_stage`), 0 = exact; ``stage2``: the
    exact second stage's route (:data:`STAGE2`)."""
    Pi, pi, p, y, e, x, X, price, s2 = _stage_values(pr, q, z, regime, tau, stage2)
    EX = p @ X
    CS = p @ (0.5 * pr.b * X * X)
    subsidy = jnp.sum(pr.sigma * z)
    EW = CS + pr.psi * EX + jnp.sum(Pi) - subsidy - 0.5 * pr.c_lam * pr.lam**2
    price_ok = jnp.all((price >= 0) | (p <= 0))
    if regime == "moq":
        level = jnp.min(x, axis=-1, keepdims=True)  # = x* wherever anyone tops up
        topping = jnp.any(e > 0, axis=-1, keepdims=True)
        # Without any top-up the switching level is the solution x* of (C5) with k = 1 for
        # the smallest y: a top-up of the smallest CSC switches on when y_min reaches it.
        c = (pr.a - pr.w_e) / pr.b
        x_star = jnp.where(topping, level, jnp.min((c - (jnp.sum(y, -1, keepdims=True)
                                                        - y)) / 2.0, axis=-1, keepdims=True))
        scale = _c_scale(pr)
        gap = jnp.min(jnp.where(p[:, None] > 0, jnp.abs(x_star - y) / scale, jnp.inf))
    else:
        gap = jnp.asarray(jnp.inf, q.dtype)
    return Outcome(Pi, pi, p @ e, EX, CS, subsidy, EW, price_ok, gap, s2)


def _np_point(params: Params) -> tuple[dict, int]:
    validate(params)
    N = n_chains(params)
    d = {f: np.asarray(getattr(params, f), float) for f in Params._fields}
    for f in CHAIN_FIELDS:
        d[f] = np.broadcast_to(d[f], (N,))
    return d, N


def profits_numpy(params: Params, q, z, regime: str) -> np.ndarray:
    """Test and benchmark oracle (NumPy, written independently of :func:`outcome`): the
    expected profits (C4)/(C6) at ``(q, z)``, the second stage by the sorted water-filling of
    (C5) (the level ``x*`` found by scanning the ordered active sets)."""
    p, N = _np_point(params)
    q, z = np.asarray(q, float), np.asarray(z, float)
    shared = z + p["lam"] * (z.sum() - z)
    pi = p["v"] * (1.0 + p["alpha"] * shared) ** (-p["beta"])
    total = np.zeros(N)
    c = (p["a"] - p["w_e"]) / p["b"]
    for B in itertools.product((0, 1), repeat=N):
        B = np.array(B)
        prob = np.prod(np.where(B == 1, pi, 1.0 - pi))
        y = q * (1.0 - p["delta"] * B)
        e = np.zeros(N)
        if regime == "moq":
            order = np.sort(y)
            for k in range(N, -1, -1):  # k smallest top up; the largest consistent k wins
                level = (c - order[k:].sum()) / (1 + k)
                if k == 0 or order[k - 1] < level:
                    break
            e = np.maximum(level - y, 0.0)
        x = y + e
        total += prob * ((p["a"] - p["b"] * x.sum()) * x - p["w_e"] * e)
    return total - p["w"] * q - (1.0 - p["sigma"]) * z


def best_response_scipy(params: Params, regime: str = "sp", *, tol: float = 1e-9,
                        max_rounds: int = 500):
    """Benchmark baseline and independent check (NumPy/SciPy): Gauss-Seidel best-response
    iteration, each CSC's ``(q_i, z_i)`` by ``scipy.optimize.minimize`` (L-BFGS-B) on
    :func:`profits_numpy`. MOQ: the variational equilibrium -- each CSC maximises
    ``Pi_i + mu q_i`` and ``mu >= 0`` is found by ``scipy.optimize.brentq`` on
    ``sum q(mu) = M`` when ``sum q(0) < M`` (a plain best-response loop with the constraint
    in each CSC's problem finds some other generalised equilibrium instead).
    Returns ``(q, z, mu, best-response rounds)``."""
    from scipy.optimize import brentq, minimize

    _check_regime(regime)
    p, N = _np_point(params)
    state = {"q": np.full(N, max(p["a"] - p["w"], 0.0) / (p["b"] * (N + 1))),
             "z": np.full(N, 1.0), "rounds": 0}

    def loop(mu):
        q, z = state["q"].copy(), state["z"].copy()
        for _ in range(max_rounds):
            state["rounds"] += 1
            change = 0.0
            for i in range(N):
                def neg(v, i=i):
                    qq, zz = q.copy(), z.copy()
                    qq[i], zz[i] = v
                    return -profits_numpy(params, qq, zz, regime)[i] - mu * v[0]

                res = minimize(neg, np.array([q[i], z[i]]), method="L-BFGS-B",
                               bounds=[(0.0, None), (0.0, None)],
                               options={"ftol": 1e-15, "gtol": 1e-10})
                change = max(change, abs(res.x[0] - q[i]), abs(res.x[1] - z[i]))
                q[i], z[i] = res.x
            if change < tol:
                break
        state["q"], state["z"] = q, z
        return q, z

    q, z = loop(0.0)
    mu = 0.0
    if regime == "moq" and q.sum() < p["M"]:
        hi = 1.0
        while loop(hi)[0].sum() < p["M"]:
            hi *= 2.0
        mu = brentq(lambda m: loop(m)[0].sum() - p["M"], 0.0, hi, xtol=1e-10)
        q, z = loop(mu)
    return q, z, mu, state["rounds"]


# ----------------------------------------------------------------------------- equilibrium


class Equilibrium(NamedTuple):
    """Subgame-perfect equilibrium of one regime (per-CSC fields have shape ``(N,)``)."""

    q: Array  # base order
    z: Array  # security investment
    pi: Array  # disruption probability
    Pi: Array  # expected profit
    e: Array  # expected top-up (0 under SP)
    mu: Array  # multiplier of sum q >= M (0 under SP)
    EX: Array  # expected total delivered quantity
    CS: Array  # expected consumer surplus
    subsidy: Array  # government's subsidy outlay
    EW: Array  # expected economic welfare
    at_kink: Array  # the solution lies within 1e-6 of a top-up switching point
    z_unique: Array  # the investments are determined individually (lam < 1)
    deviation_gain: Array  # best relative gain of a grid deviation (certificate; 0 at an eq.)
    converged: Array
    residual: Array
    iterations: Array
    status: Array
    assumptions_hold: Array


#: First-stage solver. The step cap keeps the first Newton steps from overshooting into
#: regions where (C2) is flat. The step test ``xtol`` certifies the smoothed levels of the
#: homotopy near a kink, whose first-order conditions are steep (curvature ~ 1/tau): their
#: residual has a round-off floor above ``atol`` (see :class:`jaxgames.Newton`).
SOLVER = Newton(max_steps=60, max_step=2.0, xtol=1e-10)

#: Relative distance to a kink reported as ``at_kink``.
KINK_TOL = 1e-6


def _check_regime(regime: str) -> None:
    if regime not in REGIMES:
        raise ValueError(f"{MODEL}: regime must be one of {list(REGIMES)}, got {regime!r}")


def _scales(pr: Params, N: int):
    q_scale = jnp.maximum(pr.a / pr.b, 1.0) / (N + 1)
    z_scale = jnp.maximum(jnp.max(1.0 / jnp.maximum(pr.alpha, 1e-3)), 1.0)
    return q_scale, z_scale


def start_point(pr: Params, N: int) -> Array:
    """Symmetric start ``(q, z)``: the Cournot quantity without risk, a tenth of ``1/alpha``."""
    q_scale, z_scale = _scales(pr, N)
    q0 = jnp.maximum(pr.a - pr.w, 0.0) / (pr.b * (N + 1))
    return jnp.concatenate([jnp.full((N,), q0), jnp.full((N,), 0.1 * z_scale)])


def _local_certificate(pr: Params, q, z, regime: str, N: int) -> Array:
    """No CSC gains by a small unilateral step ``+-h`` in ``q_i`` or ``z_i`` (stage 2 re-solved).

    Catches first-order roots on a convex kink (module docstring). A smooth maximum loses
    ``O(h^2)``; the tolerance admits round-off only. Under MOQ a deviation must respect the
    shared constraint: ``q_i >= M - sum_{j != i} q_j``.
    """
    # A yes/no answer: no derivatives flow through it (symbolic-zero tangents keep the
    # 8 N payoff evaluations out of every differentiated program).
    pr, q, z = jax.lax.stop_gradient((pr, q, z))
    q_scale, z_scale = _scales(pr, N)
    base = profits(pr, q, z, regime)
    h = 1e-4
    ok = jnp.array(True)
    tol = 1e-9 * (jnp.abs(base) + pr.a * q_scale)
    for i in range(N):
        for which, scale in ((0, q_scale), (1, z_scale)):
            for sgn in (-1.0, 1.0):
                qq, zz = q, z
                if which == 0:
                    floor = 0.0
                    if regime == "moq":
                        floor = jnp.maximum(pr.M - (jnp.sum(q) - q[i]), 0.0)
                    qq = q.at[i].set(jnp.maximum(q[i] + sgn * h * scale, floor))
                else:
                    zz = z.at[i].set(jnp.maximum(z[i] + sgn * h * scale, 0.0))
                gain = profits(pr, qq, zz, regime)[i] - base[i]
                ok = ok & (gain <= tol[i])
    return ok


#: Grid of the global certificate (:func:`_grid_gain`): values of ``q_i`` and of ``z_i``.
CERT_GRID = (24, 12)


def _grid_gain(pr: Params, q, z, regime: str, N: int) -> Array:
    """Largest gain of any CSC from a unilateral deviation to a point of a grid over its own
    ``(q_i, z_i)`` (stage 2 re-solved), relative to ``|Pi_i| + a q_scale``.

    The MOQ payoff is not concave in ``q_i`` (a convex kink where the CSC's own top-up stops),
    so a first-order point can be a local maximum only; the grid (``q_i`` from its floor to
    ``a / b``, ``z_i`` from 0 to ``max(3 z_i, 3 / alpha_i)``) catches distant better replies.
    """
    return _grid_deviation(pr, q, z, regime, N)[0]


def _grid_deviation(pr: Params, q, z, regime: str, N: int) -> tuple[Array, Array]:
    """:func:`_grid_gain` and the profile ``(q, z)`` (shape ``(2N,)``) in which the CSC with
    the largest gain plays its best grid point (the start of :data:`RESTARTS`)."""
    return _grid_replies(pr, q, z, regime, N)[:2]


def _grid_replies(pr: Params, q, z, regime: str, N: int, sequential=False):
    """Each CSC's best reply on the grid of :func:`_grid_gain`: ``(gain, x_dev, x_gs)``.

    ``sequential`` False (Jacobi): every CSC replies to ``(q, z)``; ``gain`` is
    :func:`_grid_gain`, ``x_dev`` the profile in which the CSC with the largest gain plays its
    best grid point. ``sequential`` True (a traced flag; the same grid evaluations, so the
    same cost): a Gauss-Seidel pass, CSC ``i`` replying to the profile in which CSCs ``1 ...
    i - 1`` already play their replies, ``x_gs`` the profile after CSC ``N``. A CSC moves only
    where it gains more than :data:`CERT_TOL`, so up to the first CSC that does every reply
    answers ``(q, z)`` itself: ``gain <= CERT_TOL`` decides the certificate as in the Jacobi
    pass (the gains' values after a move are the pass's own). Under MOQ a reply respects the
    shared constraint of the profile it answers.
    """
    pr, q, z = jax.lax.stop_gradient((pr, q, z))
    q_scale, _ = _scales(pr, N)
    base = profits(pr, q, z, regime)
    nq, nz = CERT_GRID
    qc, zc = q, z  # the profile the replies answer (Gauss-Seidel: updated by each reply)
    gains, moves = [], []
    for i in range(N):
        floor = jnp.maximum(pr.M - (jnp.sum(qc) - qc[i]), 0.0) if regime == "moq" else 0.0
        qs = floor + (pr.a / pr.b - floor) * jnp.linspace(0.0, 1.0, nq, dtype=q.dtype)
        z_hi = jnp.maximum(3.0 * zc[i], 3.0 / jnp.maximum(pr.alpha[i], 1e-3))
        zs = z_hi * jnp.linspace(0.0, 1.0, nz, dtype=q.dtype)
        # The CSC's own strategy is the grid's last point.
        Q, Z = jnp.meshgrid(jnp.append(qs, qc[i]), jnp.append(zs, zc[i]), indexing="ij")

        def pay(qi, zi, i=i, qc=qc, zc=zc):
            return profits(pr, qc.at[i].set(qi), zc.at[i].set(zi), regime)[i]

        dev = jax.vmap(pay)(Q.ravel(), Z.ravel())
        k = jnp.argmax(dev)
        # Gauss-Seidel: the payoff at the updated profile is the grid's last point.
        base_i = base[i] if sequential is False else jnp.where(sequential, dev[-1], base[i])
        gain = (dev[k] - base_i) / (jnp.abs(base_i) + pr.a * q_scale)
        gains.append(gain)
        moves.append(jnp.concatenate([q.at[i].set(Q.ravel()[k]), z.at[i].set(Z.ravel()[k])]))
        if sequential is not False:
            move = sequential & (gain > CERT_TOL)
            qc = jnp.where(move, qc.at[i].set(Q.ravel()[k]), qc)
            zc = jnp.where(move, zc.at[i].set(Z.ravel()[k]), zc)
    gains = jnp.stack(gains)
    best = jnp.argmax(gains)
    return jnp.maximum(gains[best], 0.0), jnp.stack(moves)[best], jnp.concatenate([qc, zc])


#: Relative grid gain above which a first-order point is not an equilibrium (round-off only).
CERT_TOL = 1e-9

#: Restarts of a first-stage solve whose solution the certificates reject (:func:`_path`): all
#: but the last from the profile in which the CSC with the largest grid gain plays its best
#: grid deviation, or a Gauss-Seidel pass of all (:data:`GAUSS_SEIDEL_RESTARTS`); under MOQ
#: the last from the symmetric start on the homotopy's second path
#: (:attr:`Homotopy.wide_start`), under SP none (SP makes ``RESTARTS - 1``).
RESTARTS = 3

#: Restarts (numbered from 1, :data:`RESTARTS`) that start from a Gauss-Seidel pass of every
#: CSC's best grid reply to the previous attempt's solution (:func:`_grid_replies`) instead of
#: the one best deviation (module docstring: point 249 of the ``N = 4`` sample).
GAUSS_SEIDEL_RESTARTS = (2,)


class Homotopy(NamedTuple):
    """Path of the MOQ first-stage solve (module docstring). Nominal path: smoothing widths
    ``tau`` (relative to ``(a - w_e) / b``) from ``start`` down to ``end``, ``step`` decades
    per level (``1e-2, 1e-4, 1e-6, 1e-8``), then the exact game, each level warm-started from
    the last solved one. If neither the exact level nor the last smoothed one converges, an
    adaptive continuation starts from the last solved level with half the step; its step
    halves after a failure and doubles (up to ``step``) after a success; below ``min_step``
    decades, once at ``end``, or at the last attempt the exact game is tried. If no smoothed
    level was solved, the first one is retried from the same orders without security
    investment. At most ``attempts`` levels are solved (failed ones and the exact game
    included); a finished path costs nothing more."""

    start: float = 1e-2
    end: float = 1e-8
    step: float = 2.0
    min_step: float = 0.25
    attempts: int = 24
    #: First width of the second path, the last MOQ restart (:data:`RESTARTS`), from the
    #: symmetric start: its nominal levels are ``1e-1, 1e-3, 1e-5, 1e-7, 1e-8`` (the decades
    #: between the first path's, the last clipped to ``end``), then the exact game; the
    #: adaptive steps and the retry work as on the first path.
    wide_start: float = 1e-1


#: The MOQ homotopy (module docstring).
HOMOTOPY = Homotopy()

#: At ``lam = 1`` the split of the investments is not determined; the solve uses
#: ``lam - LAM_SPLIT_EPS`` (the split of the limit ``lam -> 1-``), outcomes use ``lam``.
LAM_SPLIT_EPS = 1e-9


def _nash(pr: Params, tau, N: int, regime: str, x0: Array, solver: Newton,
          stage2: str = "closed_form"):
    q_scale, z_scale = _scales(pr, N)
    x_scale = jnp.concatenate([jnp.full((N,), q_scale), jnp.full((N,), z_scale)])
    f_scale = jnp.maximum(pr.a, 1.0) * jnp.ones((2 * N,), pr.a.dtype)
    players = [[i, N + i] for i in range(N)]

    def costs(x, args):
        p, t = args
        return -profits(p, x[:N], x[N:], regime, t, stage2)

    if regime == "moq":
        eq = nash_equilibrium(
            costs, players, x0, (pr, tau), lower=0.0,
            shared_constraints=lambda x, args: (jnp.sum(x[:N]) - args[0].M)[None], n_shared=1,
            x_scale=x_scale, f_scale=f_scale, multiplier_scale=1.0, solver=solver)
        return eq, eq.multipliers[0]
    eq = nash_equilibrium(costs, players, x0, (pr, tau), lower=0.0, x_scale=x_scale,
                          f_scale=f_scale, solver=solver)
    return eq, jnp.zeros((), x0.dtype)


def _homotopy(N: int, solver: Newton, pr: Params, ps: Params, x0: Array, lt0=None,
              stage2: str = "closed_form"):
    """The MOQ first stage by the homotopy :data:`HOMOTOPY` in the smoothing width of the
    second stage (module docstring): an equilibrium on a concave kink of a payoff is the limit
    of the smoothed games' equilibria; off kinks the exact level converges in a step or two
    from the last smoothed one. ``ps`` is the point solved (``lam`` split, see
    :data:`LAM_SPLIT_EPS`), ``pr`` the one certified. Returns ``(x, mu, residual, iterations
    (of all levels), status, certified locally, tau)`` of the reported level.

    Where the nominal path fails the step adapts: where several states switch top-ups at one
    point (e.g. the defaults at ``N = 6``: every state with two disruptions switches at the
    symmetric equilibrium) a warm start two decades of ``tau`` away can fall outside Newton's
    basin; smaller steps keep it inside. (The smoothing, :func:`second_stage` with
    ``tau > 0``, is symmetric in the base deliveries, so a symmetric point's smoothed games
    have symmetric equilibria.)

    A ``while_loop`` (under ``vmap`` it runs until the batch's last path ends; an ended path's
    further levels start from a non-finite point, which the engine returns at once).
    """
    h = HOMOTOPY
    dt = pr.a.dtype
    lt_end = math.log10(h.end)
    # log10 of the first width (traced: the last restart starts wider, :data:`RESTARTS`).
    lt_start = jnp.asarray(math.log10(h.start) if lt0 is None else lt0, dt)
    # Nominal levels lt_start - j step, the last one clipped to `end`: -2, -4, -6, -8
    # (from -1: -1, -3, -5, -7, -8).
    n_nom = (jnp.ceil((lt_start - lt_end) / h.step - 1e-9) + 1).astype(jnp.int32)

    def nominal(j):
        return jnp.maximum(lt_start - h.step * jnp.minimum(j, n_nom - 1), lt_end)

    x_alt = x0.at[N:].set(0.0)  # the same orders, no security investment
    nan = jnp.full_like(x0, jnp.nan)
    NOMINAL, RETRY, SMOOTH, DONE = range(4)
    zero = jnp.zeros((), dt)

    def attempt(c):
        k, phase, j, d, lt_s, x_nom, smooth, exact, its = c
        live = phase != DONE
        # NOMINAL: level j of (1e-2, 1e-4, 1e-6, 1e-8, exact), each from the last solved one;
        # RETRY: the first level from the alternative start; SMOOTH: the adaptive steps.
        nom_exact = (phase == NOMINAL) & (j >= n_nom)
        ada_exact = (phase == SMOOTH) & ((lt_s <= lt_end) | (d < h.min_step)
                                         | (k == h.attempts - 1))
        is_exact = nom_exact | ada_exact
        lt_try = jnp.where(phase == NOMINAL, nominal(j),
                           jnp.where(phase == RETRY, lt_start, jnp.maximum(lt_s - d, lt_end)))
        tau = jnp.where(is_exact, zero, 10.0 ** lt_try)
        start = jnp.where(phase == NOMINAL, x_nom, jnp.where(phase == RETRY, x_alt, smooth[0]))
        start = jnp.where(live, start, nan)
        e, m = _nash(ps, tau, N, "moq", start, solver, stage2)
        good = e.status == Status.SUCCESS
        now = (e.x, m, e.status, e.residual, tau)
        new_smooth = live & ~is_exact & good
        smooth = jax.tree_util.tree_map(lambda u, v: jnp.where(new_smooth, u, v), now, smooth)
        lt_s = jnp.where(new_smooth, lt_try, lt_s)
        x_nom = jnp.where(new_smooth, e.x, x_nom)
        exact = jax.tree_util.tree_map(lambda u, v: jnp.where(live & is_exact, u, v), now,
                                       exact)
        # The nominal path ends with success if the exact level or the last smoothed one
        # converged (the certificates decide after the loop); else the adaptive path starts
        # from the last solved level with half the nominal step, or from the alternative
        # start. Adaptive steps halve on failure and grow back (to `step`) on success.
        nominal_ok = good | (lt_s <= lt_end)
        d = jnp.where(nom_exact & ~nominal_ok, 0.5 * h.step, d)
        d = jnp.where((phase == SMOOTH) & ~is_exact,
                      jnp.where(good, jnp.minimum(2.0 * d, h.step), 0.5 * d), d)
        phase = jnp.select(
            [~live, nom_exact & nominal_ok, nom_exact & jnp.isfinite(lt_s), nom_exact,
             phase == NOMINAL, (phase == RETRY) & good, phase == RETRY, is_exact],
            [phase, DONE, SMOOTH, RETRY, phase, SMOOTH, DONE, DONE], phase)
        j = j + 1
        its = its + jnp.where(live, e.iterations, 0)
        return k + 1, phase, j, d, lt_s, x_nom, smooth, exact, its

    empty = (x0, zero, jnp.int32(Status.MAX_STEPS), jnp.asarray(jnp.inf, dt), zero)
    init = (jnp.int32(0), jnp.int32(NOMINAL), jnp.int32(0), jnp.asarray(h.step, dt),
            jnp.asarray(jnp.inf, dt), x0, empty, empty, jnp.int32(0))
    _, _, _, _, lt_s, _, smooth, exact, its = jax.lax.while_loop(
        lambda c: (c[0] < h.attempts) & (c[1] != DONE), attempt, init)
    cert_exact = _local_certificate(pr, exact[0][:N], exact[0][N:], "moq", N)
    cert_smooth = _local_certificate(pr, smooth[0][:N], smooth[0][N:], "moq", N)
    use_exact = (exact[2] == Status.SUCCESS) & cert_exact
    # The last smoothed level stands for the exact game only once the path has reached `end`
    # (the kink is then located to ~ end relative).
    use_smooth = ~use_exact & (lt_s <= lt_end) & (smooth[2] == Status.SUCCESS) & cert_smooth
    x, mu, _, residual, tau = jax.tree_util.tree_map(
        lambda u, v: jnp.where(use_exact, u, v), exact, smooth)
    # The exact level's failure is the informative one when neither is certified.
    status = jnp.where(use_smooth, smooth[2], exact[2])
    return x, mu, residual, its, status, use_exact | use_smooth, tau


def _attempt(N: int, solver: Newton, regime: str, pr: Params, ps: Params, x0: Array,
             lt0=None, stage2: str = "closed_form"):
    """One first-stage solve from ``x0``: ``(x, mu, residual, iterations, status, certified
    locally, tau)``; MOQ by the homotopy (:func:`_homotopy`, first width ``10**lt0``), SP by
    one engine solve."""
    if regime == "moq":
        return _homotopy(N, solver, pr, ps, x0, lt0, stage2)
    zero = jnp.zeros((), pr.a.dtype)
    eq, mu = _nash(ps, zero, N, regime, x0, solver)
    ok = (eq.status == Status.SUCCESS) & _local_certificate(pr, eq.x[:N], eq.x[N:], regime, N)
    return eq.x, mu, eq.residual, eq.iterations, eq.status, ok, zero


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2, 3, 4))
def _path(N: int, solver: Newton, regime: str, restarts: int, stage2: str, pr: Params,
          ps: Params, x0: Array):
    """The first stage of ``regime`` from ``x0`` (:func:`_attempt`), restarted where the
    solution fails a certificate (the local one, or the grid of unilateral deviations of
    :func:`_grid_deviation`): ``restarts - 1`` times from the profile in which the CSC with
    the largest grid gain plays its best grid deviation, or, for the restarts in
    :data:`GAUSS_SEIDEL_RESTARTS`, from a Gauss-Seidel pass of all CSCs' best grid replies
    (:func:`_grid_replies`), each to the previous attempt's solution, then (MOQ only) once
    from ``x0`` on
    the homotopy's second path of widths (:attr:`Homotopy.wide_start`; directly if a solve
    left no finite profile to deviate from). Newton converges to a first-order point of the
    basin it starts in, which can be a local maximum of a CSC's payoff only (module
    docstring, "Global certificate"); a restart from the better reply the certificate found
    starts in another basin, and the second path solves a different sequence of smoothed
    games, whose basins differ (module docstring: the ``N = 6`` point whose first path
    stagnates). A restart's solution is kept only if it passes both
    certificates; a point that never does keeps its first solution (and is flagged by
    :func:`_solve`). Returns :func:`_attempt`'s tuple (``iterations``: of all attempts).

    A ``while_loop`` on constants (under ``vmap`` it runs while any point restarts; the others'
    attempts start from a non-finite point, which the engine returns at once); its derivative
    (:func:`_path_jvp`) is the implicit one of the reported solution alone.
    """
    if restarts == 0:
        return _attempt(N, solver, regime, pr, ps, x0, stage2=stage2)

    # One loop, its first pass the solve from x0 (a single instance of the solve in the
    # program: the homotopy compiles once).
    h = HOMOTOPY
    lt_nominal, lt_wide = math.log10(h.start), math.log10(h.wide_start)

    def body(c):
        r, out, its, pending, start = c
        # MOQ: the last restart is from the symmetric start x0 with a wider first smoothing.
        wide = (regime == "moq") & (r == restarts)
        lt0 = jnp.where(wide, lt_wide, lt_nominal)
        new = _attempt(N, solver, regime, pr, ps,
                       jnp.where(pending, jnp.where(wide, x0, start), jnp.nan), lt0,
                       stage2)
        x, ok = new[0], new[5]
        # The next restart's start: the one best deviation, or a Gauss-Seidel pass of all
        # CSCs' best replies (GAUSS_SEIDEL_RESTARTS); one grid evaluation either way, which
        # also certifies this attempt's solution.
        seq = functools.reduce(jnp.logical_or, [r + 1 == k for k in GAUSS_SEIDEL_RESTARTS],
                               jnp.array(False))
        gain, x_dev, x_gs = _grid_replies(pr, x[:N], x[N:], regime, N, seq)
        x_dev = jnp.where(seq, x_gs, x_dev)
        good = ok & (gain <= CERT_TOL)
        keep = pending & ((r == 0) | good)
        out = jax.tree_util.tree_map(lambda u, v: jnp.where(keep, u, v), new, out)
        its = its + jnp.where(pending, new[3], 0)
        found = jnp.all(jnp.isfinite(x_dev))
        again = pending & ~good & (found | (regime == "moq"))
        # Without a deviation to start from (no finite solution), MOQ goes on to the wide one.
        r_next = jnp.where(found, r + 1, jnp.maximum(r + 1, restarts))
        return r_next, out, its, again, jnp.where(again & found, x_dev, start)

    dt = pr.a.dtype
    empty = (jnp.full_like(x0, jnp.nan), jnp.zeros((), dt), jnp.asarray(jnp.inf, dt),
             jnp.int32(0), jnp.int32(Status.MAX_STEPS), jnp.array(False), jnp.zeros((), dt))
    # SP: restarts - 1 from the deviations (no wide one).
    last = restarts if regime == "moq" else restarts - 1
    _, out, its, _, _ = jax.lax.while_loop(lambda c: (c[0] <= last) & c[3], body,
                                           (jnp.int32(0), empty, jnp.int32(0),
                                            jnp.array(True), x0))
    return out[:3] + (its,) + out[4:]


@_path.defjvp
def _path_jvp(N, solver, regime, restarts, stage2, primals, tangents):
    """Implicit derivative of the reported level: one more solve of it from its solution (a
    Newton step), through the engine's implicit-function JVP; a failure's start is non-finite
    (no iterations, zero tangent). Only differentiated programs contain this solve."""
    pr, ps, x0 = primals
    out = _path(N, solver, regime, restarts, stage2, pr, ps, x0)
    x, mu, residual, its, status, ok, tau = out

    def level(p):
        e, m = _nash(p, tau, N, regime, jnp.where(ok, x, jnp.nan), solver, stage2)
        return e.x, m

    _, (dx, dmu) = jax.jvp(level, (ps,), (tangents[1],))
    float0 = lambda v: np.zeros(jnp.shape(v), jax.dtypes.float0)  # noqa: E731
    return out, (jnp.where(ok, dx, 0.0), jnp.where(ok, dmu, 0.0), jnp.zeros_like(residual),
                 float0(its), float0(status), float0(ok), jnp.zeros_like(tau))


def _solve(pr: Params, valid: Array, N: int, regime: str, x0: Array | None,
           solver: Newton, global_check: bool = True,
           stage2: str = "closed_form") -> Equilibrium:
    if regime != "moq":  # no second stage: one program for both options
        stage2 = "closed_form"
    if x0 is None:
        x0 = start_point(pr, N)
    x0 = jax.lax.stop_gradient(jnp.asarray(x0, pr.a.dtype))
    split = jnp.where(pr.lam >= 1.0 - LAM_SPLIT_EPS, LAM_SPLIT_EPS, 0.0)
    ps = pr._replace(lam=pr.lam - split)
    # The restarts need the grid certificate; optimal_policy's inner iterations skip both.
    x, mu, residual, iterations, status, ok, _ = _path(
        N, solver, regime, RESTARTS if global_check else 0, stage2, pr, ps, x0)
    eq = _GameSolution(x, mu[None], residual, iterations, status)
    q, z = eq.x[:N], eq.x[N:]
    # At lam = 1 identical CSCs get exactly equal shares of the (determined) total investment:
    # their first-order conditions coincide, so averaging within a group of identical CSCs
    # keeps the equilibrium (the solve at lam - LAM_SPLIT_EPS resolves the split only to
    # ~ eps / LAM_SPLIT_EPS).
    same = jnp.ones((N, N), bool)
    for f in CHAIN_FIELDS:
        v = getattr(pr, f)
        same = same & (v[:, None] == v[None, :])
    z_sym = (same.astype(z.dtype) @ z) / jnp.sum(same, axis=1).astype(z.dtype)
    z = jnp.where(split > 0, z_sym, z)
    out = outcome(pr, q, z, regime, stage2=stage2)
    if global_check:
        gap = _grid_gain(pr, q, z, regime, N)
    else:  # inner iterations of optimal_policy: its final point is certified in full
        gap = jnp.zeros((), q.dtype)
    ok = ok & (gap <= CERT_TOL)
    status = eq.status
    # A first-order point that a unilateral deviation improves is no equilibrium.
    status = jnp.where((status == Status.SUCCESS) & ~ok, jnp.int32(Status.STAGNATED), status)
    # An engine stage-2 solve that failed at the reported profile (its outcomes are NaN).
    status = first_failure(status, out.stage2_status)
    status = jnp.where(jnp.all(jnp.isfinite(eq.x)) | (status != Status.SUCCESS), status,
                       jnp.int32(Status.NONFINITE))
    status = flag_invalid(status, valid)
    return Equilibrium(
        q, z, out.pi, out.Pi, out.e, mu, out.EX, out.CS, out.subsidy, out.EW,
        out.kink_gap <= KINK_TOL, pr.lam < 1.0, gap, status == Status.SUCCESS, eq.residual,
        iterations, status, out.price_ok,
    )


def equilibrium(params: Params, regime: str = "sp", *, x0: Array | None = None,
                solver: Newton = SOLVER, stage2: str = "closed_form") -> Equilibrium:
    """Subgame-perfect equilibrium of ``regime`` (``"sp"``: (C4); ``"moq"``: (C5)-(C6) with the
    shared constraint ``sum q >= M``). ``x0`` optionally warm-starts ``(q, z)`` (shape ``(2N,)``).
    ``stage2`` (static, :data:`STAGE2`): the exact second stage (C5) that the first stage
    differentiates through, ``"closed_form"`` (:func:`second_stage`) or ``"engine"``
    (:func:`second_stage_engine`, the engine's solve in every state; module docstring).
    """
    _check_regime(regime)
    _check_stage2(stage2)
    pr, valid, N = _prepare(params)
    return _solve(pr, valid, N, regime, x0, solver, stage2=stage2)


def equilibrium_sp(params: Params) -> Equilibrium:
    """``equilibrium(params, "sp")`` (a sweepable solve function)."""
    return equilibrium(params, "sp")


def equilibrium_moq(params: Params, *, stage2: str = "closed_form") -> Equilibrium:
    """``equilibrium(params, "moq", stage2=stage2)`` (a sweepable solve function)."""
    return equilibrium(params, "moq", stage2=stage2)


class Comparison(NamedTuple):
    """Both regimes at one parameter point, the welfare gain of MOQ and participation (C8)."""

    q_sp: Array
    z_sp: Array
    Pi_sp: Array
    EW_sp: Array
    q_moq: Array
    z_moq: Array
    Pi_moq: Array
    mu: Array
    EW_moq: Array
    dEW: Array  # EW_moq - EW_sp
    slack: Array  # (N,) Pi_moq - Pi_sp, participation slack at the same policy
    participates: Array  # every slack >= 0
    converged: Array
    residual: Array
    iterations: Array
    status: Array
    assumptions_hold: Array


def compare(params: Params, *, solver: Newton = SOLVER,
            stage2: str = "closed_form") -> Comparison:
    """SP and MOQ at the same ``params``: ``dEW = EW_moq - EW_sp`` and the participation slack
    ``Pi_moq - Pi_sp`` per CSC (the outside option of (C8) at the status-quo policy).
    ``stage2``: MOQ's second-stage route (:func:`equilibrium`)."""
    _check_stage2(stage2)
    pr, valid, N = _prepare(params)
    return compare_equilibria(_solve(pr, valid, N, "sp", None, solver),
                              _solve(pr, valid, N, "moq", None, solver, stage2=stage2))


def compare_equilibria(sp: Equilibrium, moq: Equilibrium) -> Comparison:
    """:func:`compare` from the two regimes' equilibria at the same ``params`` (for callers that
    need the full :class:`Equilibrium` of each regime too, without solving twice)."""
    slack = moq.Pi - sp.Pi
    status = first_failure(sp.status, moq.status)
    return Comparison(
        sp.q, sp.z, sp.Pi, sp.EW, moq.q, moq.z, moq.Pi, moq.mu, moq.EW, moq.EW - sp.EW, slack,
        jnp.all(slack >= 0), status == Status.SUCCESS, jnp.maximum(sp.residual, moq.residual),
        sp.iterations + moq.iterations, status, sp.assumptions_hold & moq.assumptions_hold,
    )


# ----------------------------------------------------------------------------- optimal policy

#: Status of :func:`optimal_policy` when no iterate met participation
#: (:attr:`jaxgames.Status.INFEASIBLE`; the other codes: see :class:`jaxgames.Status`).
INFEASIBLE = int(Status.INFEASIBLE)

LEVERS = ("sigma", "lam", "M")


class PolicyOptimizer(NamedTuple):
    """Settings of :func:`optimal_policy`'s augmented-Lagrangian projected gradient ascent.

    The levers are mapped to ``[0, 1]`` by their bounds; the objective is divided by
    ``|EW_sp|`` and constraint ``i`` by ``|Pi_i^SP| + 1`` (status quo). ``outer`` rounds of
    ``inner`` Adam steps each (a cosine-decaying rate from ``learning_rate``), each step
    followed by projection onto the box, ascend

        L(theta) = EW - 1/(2 rho) sum_i [max(0, nu_i - rho g_i)^2 - nu_i^2],

    ``g_i = Pi_i^MOQ(theta) - Pi_i^SP(status quo)`` (participation, (C8)); after each round
    ``nu <- max(0, nu - rho g)``. The runs start from the status quo and from
    ``starts - 1`` of :data:`POLICY_STARTS` (batched); the best feasible iterate of all runs
    (``g_i >= -feas_tol |Pi_i^SP|``, equilibrium converged) is returned.
    """

    learning_rate: float = 0.02
    inner: int = 20
    outer: int = 10
    rho: float = 1000.0
    feas_tol: float = 1e-9
    starts: int = 4


#: Starts of :func:`optimal_policy` after the status quo: (sigma as a fraction of its upper
#: bound, lam, M as a multiple of the SP total order at the status quo).
POLICY_STARTS = ((0.5, 0.5, 1.0), (0.8, 0.8, 1.05), (0.3, 1.0, 1.1))


class Policy(NamedTuple):
    """An optimal policy and the MOQ equilibrium it induces."""

    sigma: Array  # (N,) subsidy share (all equal unless per_chain_sigma)
    lam: Array  # intelligence-sharing level
    M: Array  # minimum order quantity
    EW: Array  # EW^MOQ at the policy
    EW_sp: Array  # EW^SP at the status quo
    dEW: Array  # EW - EW_sp: welfare gain of the policy over SP at the status quo
    q: Array  # (N,)
    z: Array  # (N,)
    Pi: Array  # (N,) Pi^MOQ at the policy
    slack: Array  # (N,) Pi^MOQ(policy) - Pi^SP(status quo)
    mu: Array  # multiplier of sum q >= M at the policy
    feasible: Array  # every slack >= 0 (to feas_tol)
    converged: Array  # feasible, equilibrium converged, objective settled
    residual: Array  # complementarity residual of the MOQ equilibrium at the policy
    iterations: Array  # gradient steps
    status: Array  # 0 success; INFEASIBLE (6), MAX_STEPS (not settled) or an equilibrium's
    assumptions_hold: Array  # price >= 0 in every state, at the policy (MOQ) and status quo (SP)


#: Default settings of :func:`optimal_policy`.
POLICY_OPTIMIZER = PolicyOptimizer()


def _check_levers(levers, bounds):
    levers = tuple(levers)
    if not levers or any(v not in LEVERS for v in levers) or len(set(levers)) != len(levers):
        raise ValueError(f"{MODEL}: levers must be distinct names from {list(LEVERS)}, got "
                         f"{levers!r}")
    out = dict(LEVER_BOUNDS)
    for k, (lo, hi) in (bounds or {}).items():
        if k not in LEVERS:
            raise ValueError(f"{MODEL}: bounds given for unknown lever {k!r}")
        lo, hi = float(lo), float(hi)
        dom = DOMAIN[k]
        if not (lo <= hi and dom.contains(lo, xp=np) and dom.contains(hi, xp=np)):
            raise ValueError(f"{MODEL}: bounds of {k} must satisfy lo <= hi inside {dom}, got "
                             f"({lo}, {hi})")
        out[k] = (lo, hi)
    return levers, out


def optimal_policy(params: Params, levers=LEVERS, bounds=None, *,
                   per_chain_sigma: bool | Array = False,
                   optimizer: PolicyOptimizer = POLICY_OPTIMIZER,
                   solver: Newton = SOLVER, stage2: str = "closed_form") -> Policy:
    """The levers (``sigma``, common or per CSC; ``lam``; ``M``) that maximise ``EW^MOQ`` subject
    to participation ``Pi_i^MOQ(levers) >= Pi_i^SP(status quo)`` for every CSC (C8).

    Projected gradient ascent with optax on an augmented Lagrangian (:class:`PolicyOptimizer`);
    the gradients are implicit derivatives of the MOQ equilibrium (the engine's implicit
    adjoint of the homotopy's reported level). Levers not in ``levers`` stay at their
    ``params`` values; ``bounds`` overrides :data:`LEVER_BOUNDS`. Pure and unbatched: ``vmap``
    it over risk profiles. If no iterate satisfies participation the status is
    :data:`INFEASIBLE` and ``converged`` is False -- an infeasible policy is never reported as
    converged. The certificate is local (a non-concave ``EW`` may have other maxima); tests
    compare with a grid search.

    ``per_chain_sigma`` may be a (traced) boolean: the subsidy is always a vector of ``N``
    shares, projected onto equal shares when it is False, so one compiled program serves both
    (e.g. ``vmap`` over profiles with and without targeted subsidies). ``stage2``: the MOQ
    equilibria's second-stage route (:func:`equilibrium`; the gradients then differentiate
    through the engine's stage-2 solves to third order).
    """
    import optax

    _check_stage2(stage2)
    levers, bnds = _check_levers(levers, bounds)
    pr, valid, N = _prepare(params)
    dt = pr.a.dtype
    sp = _solve(pr, valid, N, "sp", None, solver)
    target = jax.lax.stop_gradient(sp.Pi)
    scale = jnp.maximum(jnp.abs(sp.EW), 1.0)
    profit_scale = jnp.abs(target) + 1.0

    sizes = {"sigma": N, "lam": 1, "M": 1}
    common = ~jnp.asarray(per_chain_sigma, bool)
    is_sigma = np.zeros(sum(sizes[k] for k in levers), bool)
    if "sigma" in levers:
        at = sum(sizes[k] for k in levers[: levers.index("sigma")])
        is_sigma[at:at + N] = True

    def project(theta):
        """Onto the box [0, 1] and, for a common subsidy, onto equal shares."""
        theta = jnp.clip(theta, 0.0, 1.0)
        if "sigma" not in levers:
            return theta
        mean = jnp.sum(jnp.where(is_sigma, theta, 0.0)) / N
        return jnp.where(is_sigma & common, mean, theta)

    lo = jnp.concatenate([jnp.full((sizes[k],), bnds[k][0], dt) for k in levers])
    hi = jnp.concatenate([jnp.full((sizes[k],), bnds[k][1], dt) for k in levers])
    width = jnp.where(hi > lo, hi - lo, 1.0)

    def unpack(theta):
        vals, i = {}, 0
        for k in levers:
            vals[k] = lo[i:i + sizes[k]] + theta[i:i + sizes[k]] * width[i:i + sizes[k]]
            i += sizes[k]
        p = pr
        if "sigma" in vals:
            p = p._replace(sigma=jnp.broadcast_to(vals["sigma"], (N,)))
        if "lam" in vals:
            p = p._replace(lam=vals["lam"][0])
        if "M" in vals:
            p = p._replace(M=vals["M"][0])
        return p

    start = [jnp.broadcast_to(getattr(pr, k), (N,)) if k == "sigma" else getattr(pr, k)[None]
             for k in levers]
    theta0 = project((jnp.concatenate(start) - lo) / width)
    theta0 = jnp.where(hi > lo, theta0, 0.0)

    def lagrangian(theta, nu, x0):
        eq = _solve(unpack(theta), valid, N, "moq", x0, solver, global_check=False,
                    stage2=stage2)
        g = (eq.Pi - target) / profit_scale
        pen = jnp.sum(jnp.maximum(0.0, nu - optimizer.rho * g) ** 2 - nu**2) / (2 * optimizer.rho)
        return -eq.EW / scale + pen, (eq, g)

    # Forward mode: one tangent per lever (at most N + 2), through the engine's implicit
    # derivatives (custom JVP); no transposition of the solver is needed.
    grad_fn = jax.jacfwd(lagrangian, has_aux=True)
    # A cosine-decaying step lets the projected iteration settle (Adam at a constant rate
    # keeps oscillating around a constrained optimum).
    opt = optax.adam(optax.cosine_decay_schedule(optimizer.learning_rate,
                                                 optimizer.inner * optimizer.outer))
    feas_tol = optimizer.feas_tol * jnp.maximum(jnp.abs(target), 1.0)

    def step(carry, _):
        theta, state, nu, x0, best, _ = carry
        grad, (eq, g) = grad_fn(theta, nu, x0)
        grad = jnp.where(jnp.isfinite(grad) & (hi > lo), grad, 0.0)
        upd, state = opt.update(grad, state, theta)
        good = eq.converged
        feasible = good & jnp.all(eq.Pi - target >= -feas_tol)
        better = feasible & (eq.EW > best[1])
        best = (jnp.where(better, theta, best[0]), jnp.where(better, eq.EW, best[1]))
        theta_new = project(optax.apply_updates(theta, upd))
        x_next = jnp.where(good, jnp.concatenate([eq.q, eq.z]), x0)
        g = jnp.where(good, g, 0.0)
        return (theta_new, state, nu, x_next, best, g), (eq.EW, feasible)

    def outer(carry, _):
        carry, trace = jax.lax.scan(step, carry, None, length=optimizer.inner)
        theta, state, nu, x0, best, g = carry
        # Multiplier update from the constraint values of the round's last iterate.
        nu = jnp.maximum(0.0, nu - optimizer.rho * g)
        return (theta, state, nu, x0, best, g), trace

    x_start = jnp.concatenate([sp.q, sp.z])

    def run_from(theta_start):
        init = (theta_start, opt.init(theta_start), jnp.zeros((N,), dt), x_start,
                (theta_start, jnp.asarray(-jnp.inf, dt)), jnp.zeros((N,), dt))
        (theta, _, _, x_last, best, _), (ews, feas) = jax.lax.scan(outer, init, None,
                                                                   length=optimizer.outer)
        return theta, x_last, best, ews.reshape(-1), feas.reshape(-1)

    # Several starts: below the unconstrained total order, M does not bind and EW is flat in
    # it, so a single run that the participation penalty pushes there can stall.
    starts = [theta0]
    q_total = jnp.sum(sp.q)
    for s_frac, l_frac, m_mult in POLICY_STARTS[: optimizer.starts - 1]:
        fixed = {"sigma": jnp.full((N,), s_frac * LEVER_BOUNDS["sigma"][1], dt),
                 "lam": jnp.full((1,), l_frac, dt), "M": (m_mult * q_total)[None]}
        t = project((jnp.concatenate([fixed[k] for k in levers]) - lo) / width)
        starts.append(jnp.where(hi > lo, t, 0.0))
    thetas, x_lasts, bests, ews_all, feas_all = jax.vmap(run_from)(jnp.stack(starts))
    found_all = jnp.isfinite(bests[1])
    k = jnp.argmax(jnp.where(found_all, bests[1], -jnp.inf))
    k = jnp.where(jnp.any(found_all), k, 0)
    found = found_all[k]
    theta_out = jnp.where(found, bests[0][k], thetas[k])
    p_out = unpack(theta_out)
    eq = _solve(p_out, valid, N, "moq", x_lasts[k], solver, stage2=stage2)
    ews, feas, best_ew = ews_all[k], feas_all[k], bests[1][k]
    slack = eq.Pi - target
    feasible = jnp.all(slack >= -feas_tol) & eq.converged
    # Settled: the best feasible EW improved by less than 1e-5 (relative) over the last round.
    last = optimizer.inner
    best_before = jnp.max(jnp.where(feas[:-last], ews[:-last], -jnp.inf))
    settled = (best_ew - best_before) <= 1e-5 * scale
    status = jnp.where(eq.converged, jnp.int32(Status.SUCCESS), eq.status)
    status = jnp.where((status == Status.SUCCESS) & ~feasible, jnp.int32(INFEASIBLE), status)
    status = jnp.where((status == Status.SUCCESS) & ~settled, jnp.int32(Status.MAX_STEPS),
                       status)
    status = jnp.where((status == Status.SUCCESS) & (sp.status != Status.SUCCESS), sp.status,
                       status)
    return Policy(
        p_out.sigma, p_out.lam, p_out.M, eq.EW, sp.EW, eq.EW - sp.EW, eq.q, eq.z, eq.Pi, slack,
        eq.mu, feasible, status == Status.SUCCESS, eq.residual,
        jnp.int32(optimizer.inner * optimizer.outer * len(starts)), status,
        eq.assumptions_hold & sp.assumptions_hold,
    )


def optimal_policy_default(params: Params) -> Policy:
    """Sweepable :func:`optimal_policy` with a **common** subsidy: all three levers
    (:data:`LEVERS`: one ``sigma`` for every CSC, ``lam``, ``M``) in :data:`LEVER_BOUNDS`
    (``sigma in [0, 0.95]``, ``lam in [0, 1]``, ``M in [0, 100]``), optimiser
    :data:`POLICY_OPTIMIZER` (10 rounds of 20 projected Adam steps from 4 starts, learning rate
    0.02, ``rho = 1000``), engine :data:`SOLVER`. The status quo (outside option (C8)) is the
    ``sigma``, ``lam`` of ``params``; ``M`` of ``params`` is the first start's."""
    return optimal_policy(params)


def optimal_policy_targeted(params: Params) -> Policy:
    """As :func:`optimal_policy_default` but with **targeted** subsidies: one share
    ``sigma_i`` per CSC (output ``sigma`` with dim ``csc``), ``per_chain_sigma=True``."""
    return optimal_policy(params, per_chain_sigma=True)


# ----------------------------------------------------------------------------- sweep metadata

#: Functions ``params -> NamedTuple`` that sweeps may call.
SOLVE_FUNCTIONS = ("equilibrium", "equilibrium_sp", "equilibrium_moq", "compare",
                   "optimal_policy_default", "optimal_policy_targeted")

#: Outputs with a trailing per-CSC dimension (sweep contract); the others are scalars.
OUTPUT_DIMS = {
    **{k: ("csc",) for k in ("q", "z", "pi", "Pi", "e", "q_sp", "z_sp", "Pi_sp", "q_moq",
                             "z_moq", "Pi_moq", "slack", "sigma")},
}

_MONEY = "$"
OUTPUT_UNITS = {
    **{k: _MONEY for k in ("Pi", "CS", "subsidy", "EW", "Pi_sp", "EW_sp", "Pi_moq", "EW_moq",
                           "dEW", "slack", "z", "z_sp", "z_moq")},
    **{k: "unit" for k in ("q", "e", "EX", "q_sp", "q_moq", "M")},
    **{k: "1" for k in ("pi", "sigma", "lam")},
    "mu": "$/unit",
}

DESCRIPTIONS = {
    "a": "demand intercept", "b": "demand slope", "w": "unit price of the base order",
    "w_e": "unit price of a flexible top-up (MOQ)", "v": "vulnerability of a CSC",
    "alpha": "effectiveness of security investment", "beta": "elasticity of the breach function",
    "delta": "fraction of the base order lost in a disruption",
    "sigma": "government's subsidy share of security investment",
    "lam": "intelligence-sharing level of the platform", "M": "joint minimum order quantity",
    "psi": "social value per delivered unit", "c_lam": "cost coefficient of the platform",
    "q": "base order", "z": "security investment", "pi": "disruption probability",
    "Pi": "expected profit", "e": "expected top-up", "mu": "multiplier of sum q >= M",
    "EX": "expected delivered quantity", "CS": "expected consumer surplus",
    "subsidy": "government's subsidy outlay", "EW": "expected economic welfare",
    "at_kink": "the solution lies on a top-up switching point",
    "z_unique": "the split of investments is determined (lam < 1)",
    "deviation_gain": "best relative gain of a unilateral grid deviation (0 at an equilibrium)",
    "q_sp": "base order, SP", "z_sp": "security investment, SP", "Pi_sp": "profit, SP",
    "EW_sp": "welfare, SP", "q_moq": "base order, MOQ", "z_moq": "security investment, MOQ",
    "Pi_moq": "profit, MOQ", "EW_moq": "welfare, MOQ",
    "dEW": "EW_moq - EW_sp",
    "slack": "participation slack Pi_moq - Pi_sp", "participates": "every slack >= 0",
    "feasible": "participation holds for every CSC (optimal_policy)",
    "converged": "the solve met its tolerance and the local certificate (status == 0)",
    "residual": "norm of the complementarity residual at the solution",
    "iterations": "Newton iterations", "assumptions_hold": "price a - b X >= 0 in every state",
    "status": "0 success, 1 max steps (optimal_policy: objective not settled), 2 non-finite, "
              "3 stagnated or not a best response, 4 invalid input, 6 no policy meets "
              "participation",
}
