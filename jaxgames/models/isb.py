r"""Information-security breaches in a reconfigurable three-tier supply chain: Durowoju, Chan,
Wang & Akenroye (2020), *Supply chain redesign implications to information disruption impact*,
Int. J. Prod. Econ. 107939 (an agent-based simulation).

**Agents and structures** (source Figure 1). Three tiers -- retailers R, wholesalers W,
manufacturers M -- with two slots each (agents R1, R2, W1, W2, M1, M2) and two demand streams.
A structure is *routing data*: ``A_RW[i, j]``, the share of retailer i's orders sent to
wholesaler j; ``A_WM[j, k]`` likewise; and an ``active`` mask.

* ``S`` serial: ``A_RW = A_WM = I`` (two independent chains);
* ``WH`` merged wholesaler (W2 absent): both retailers order from W1, which splits each order
  equally over M1 and M2;
* ``MF`` merged manufacturer (M2 absent): each wholesaler orders from M1;
* ``NT`` network: every retailer and wholesaler splits each order equally over both upstream
  agents.

All structures, policies and breach scenarios run in one compiled program: the structure, the
policy and the breach profile are integer codes (:data:`CATEGORIES`) used as traced values
(``jnp.take`` / ``jnp.where``), never Python branches.

**Order of events in one day** (the source omits it; we follow the project's fixed reading,
restated here). Every agent uses its state at the start of its step; ``tau_I = 1`` (an order sent
on day t is received on t + 1), ``tau_T = 2`` (shipped on t, received on t + 2), ``tau_P = 3``
(production started on t is finished on t + 3). Lead time in the reorder point:
``LT = tau_I + tau_T`` for R and W, ``LT = tau_P`` for M.

1. *Receive* shipments sent on ``t - tau_T`` (M: production started on ``t - tau_P``) into the
   on-hand stock ``OH``; remove them from the on-order quantity ``OO``.
2. *Incoming orders* per downstream link ``l``: a retailer's demand ``d[i, t]``, for W and M the
   orders sent to them on ``t - tau_I``; ``O`` is their sum.
3. *Ship*: link ``l`` is owed ``D[l] = BL[l] + o[l]``. If ``OH >= sum D`` all is shipped; else
   ``OH`` is shared equally, each link capped at what it is owed and the cap's surplus going to
   the other link (water-filling; source eq. (6): half of on-hand to each), and ``OH = 0``.
   ``BL[l] = D[l] - ship[l]``.
4. *Costs*: holding ``h OH``; backlog ``b sum BL`` plus a fixed shortage cost ``s_f`` for each
   link that received a new order that day (``o[l] > 0``) and ends it short (``ship[l] < D[l]``).
5. *Forecast*: ``O`` enters the moving window of the last ``W = 10`` daily incoming totals;
   ``mu`` is its mean, ``sigma`` its sample standard deviation (ddof = 1).
6. *Inventory position* ``IP = OH + OO - sum BL``.
7. *Order* (source eqs. (1)-(4)): ``ROP = mu (LT + 1) + z sigma sqrt(LT + 1)``,
   ``EOQ = sqrt(2 mu f (h + b) / (h b))`` (eq. (2)). If ``IP < ROP``:

   * option I (order-up-to, eq. (1)): ``Q = ROP - IP``;
   * option II (batch, eq. (3)): ``Q = n 2.2361 EOQ`` with ``n >= 1`` the smallest integer that
     brings ``IP + Q`` to at least ``ROP`` (an (R, nQ) policy; ``batch_multiples=False``: one
     batch, ``n = 1``); nothing if ``EOQ = 0``;
   * option III (eq. (4)): ``Q = ROP + EOQ - IP``;

   otherwise ``Q = 0``. ``OO += Q``; the ordering cost ``f`` is paid once if ``Q > 0``.
8. *Send*: R and W split ``Q`` over their upstream agents by the routing matrix. A breached agent
   holds its orders; on its first day out of breach it sends everything held plus that day's
   order as one order per link (delayed, never lost). M adds ``Q`` to its production queue
   (a breached M keeps it out of the queue until the breach ends) and starts
   ``max(0, min(queue, cap - WIP))``, ``WIP`` the units started on days
   ``t - tau_P + 1 ... t - 1`` (capacity is in use for the production lead time), ``cap`` the
   total capacity (80) over the number of active manufacturers.

**Demand** ``d[i, t] = max(0, demand_mean + demand_std eps[i, t])`` with ``eps`` standard normal,
drawn as ``jax.random.normal(key, (days, 2))``: ``eps[i, t]`` depends only on the key, the
retailer and the day (not on the scenario, nor, with JAX's default partitionable threefry, on
the horizon), which gives common random numbers across scenarios. An explicit ``(days, 2)``
demand array replaces the draws.

**Initial state.** Backlogs 0, pipelines and queues empty, ``OO = 0``; the window is filled with
the agent's expected daily incoming total ``mu0`` (``demand_mean`` per demand stream routed to
it: S 10/10/10, WH 10/20/10, MF 10/10/20, NT 10/10/10 for R/W/M) and ``OH = mu0 (LT + 1)``.

**Breaches** (source Table 1), deterministic: an agent of the breach mask (default: both
retailers) is breached on day t iff ``t >= offset`` and ``(t - offset) mod period < duration``.
Profiles ``none``; ``BP1`` (period 90, duration 1, offset 45); ``BP2`` (7, 1, 3); ``BP3``
(90, 5, 45); ``custom`` uses the numeric parameters ``period, duration, offset``.

**Outputs** are daily averages over days ``warmup .. days - 1`` (100..799): per agent holding,
backlog (incl. ``s_f``), ordering and total cost, ordering rate (share of days with ``Q > 0``)
and effective average order quantity (mean ``Q`` over ordering days); tier means over the tier's
active agents (source assumption); chain totals over all active agents.

**Gap decisions** (the specification §4 of the project, restated):

* ``s_f`` is charged once per link and day on which a new order arrives and the link ends the
  day short; old backlog on a day without a new order costs only ``b`` per unit.
* A breached agent still runs steps 1-7: it decides ``Q``, pays ``f`` that day, and its
  ordering rate and order quantity count the decided ``Q``, not the combined released order.
* ``f`` is paid once per agent-day with ``Q > 0``, however many upstream agents share it.
* A day without incoming orders adds 0 to the window. If ``mu = 0``, ``EOQ = 0`` and option II
  orders nothing.
* Tier means of the order quantity ignore agents that never ordered.

**Our decisions where the section leaves room** (tested in ``tests/test_isb.py``):

* ``mu0`` uses the ``demand_mean`` parameter (10 by default), not ``E[max(0, d)]``.
* Absent agents (W2 in WH, M2 in MF) have every per-agent output NaN and ``active = False``; an
  agent that never ordered has order quantity NaN (an undefined mean, not 0).
* The window is a ring buffer (slot ``t mod W``); its mean and variance are two-pass sums,
  pairwise over the slots, ``((w0 + w1) + (w2 + w3)) + ...``, which differ from oldest-first
  summation only by rounding (a window of zeros gives ``mu = sigma = 0`` exactly either way).
* Breach parameters are real numbers of days; ``duration = 0`` is no breach.
* ``IP < ROP`` means ``ROP - IP > 1e-9 (1 + |ROP|)`` (:data:`ORDER_RTOL`): when ``IP = ROP``
  in exact arithmetic (option I after a day without change), rounding must not decide whether a
  1e-14-unit order (and its cost ``f``) is placed.

**API.** :func:`simulate` (one run; ``STOCHASTIC``: it takes a key; ``trace=True`` adds the
daily :class:`Trace`), :func:`simulate_runs` (a batch of runs on explicit demand, runs on the
trailing axis), :func:`experiment` (the source's 4 x 3 x 4 x 45 design as one labelled
Dataset), :func:`analyse` (reconfiguration effects, breach impacts, demand-std sensitivity,
paired-t intervals with Bonferroni correction, Tables 3-8 via :func:`tables`),
:func:`make_params` / :func:`code` (labels of the categorical parameters). Under ``vmap``,
:func:`simulate` also puts the runs on the trailing axis of its state (a custom batching rule)
and pads them to a multiple of :data:`LANES`, so that a run's results are the same bits at any
batch width.

**Implementation note.** A scan step runs step 8 and the accounting of day t - 1, then steps 1-7
of day t, so that the order decided on a day reaches the state updates that use it through the
scan's carry: XLA's CPU backend has no multi-output fusion and would otherwise recompute the
whole decision in each of them (for the same reason the day's shipments are divided by an
exact 1 that XLA cannot fold: it never duplicates a division). The delay pipelines are ring
buffers indexed by the day, and each run reads its own row of a runs-first demand array in
place. State arrays hold only the agents that use them (production: M; what is sent and in
transport: R and W; held orders: the breach mask's agents), not slots of zeros for the
others; day counts are int32. The arithmetic is that of the order of events above. On a CPU
backend the day loop is compiled as one kernel (:data:`ONE_KERNEL`; XLA's
``xla_cpu_small_call`` path), a batch of more than :data:`CHUNK` runs is simulated in chunks
inside it, and :func:`simulate_runs` compiles with :data:`COMPILER_OPTIONS`; with several
CPU devices (:func:`jaxgames.use_cpu_cores`) :func:`simulate_runs` and :func:`experiment`
split their runs over the devices, one thread each, so that the cores work side by side. None
of these changes a result (the same bits, tested).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from typing import Literal, NamedTuple, overload

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from jaxgames._devices import cpu_devices, traced
from jaxgames._solver import LANES as _LANES
from jaxgames._solver import Status
from jaxgames._validation import Interval, check_domain, inputs_valid

Array = jax.Array

MODEL = "isb"

AGENTS = ("R1", "R2", "W1", "W2", "M1", "M2")
TIERS = ("R", "W", "M")
STRUCTURES = ("S", "WH", "MF", "NT")
POLICIES = ("I", "II", "III")
BREACHES = ("none", "BP1", "BP2", "BP3", "custom")

#: Categorical parameters: the Params leaf holds the index of the label.
CATEGORIES = {"structure": STRUCTURES, "policy": POLICIES, "breach": BREACHES}

#: Breach profiles of source Table 1: (period, duration, offset) in days. ``none`` has duration
#: 0; ``custom`` (last) takes the numeric parameters.
PROFILES = {"none": (1.0, 0.0, 0.0), "BP1": (90.0, 1.0, 45.0), "BP2": (7.0, 1.0, 3.0),
            "BP3": (90.0, 5.0, 45.0)}

_I2 = np.eye(2)
_HALF = np.full((2, 2), 0.5)
_TO_FIRST = np.array([[1.0, 0.0], [1.0, 0.0]])
#: Routing data per structure (index = structure code): retailer -> wholesaler shares,
#: wholesaler -> manufacturer shares, active agents (R1, R2, W1, W2, M1, M2).
A_RW = np.stack([_I2, _TO_FIRST, _I2, _HALF])
A_WM = np.stack([_I2, np.array([[0.5, 0.5], [0.0, 0.0]]), _TO_FIRST, _HALF])
ACTIVE = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 1, 1], [1, 1, 1, 1, 1, 0],
                   [1, 1, 1, 1, 1, 1]], dtype=bool)


def code(name: str, label: str) -> int:
    """The integer code of ``label`` of the categorical parameter ``name``."""
    if name not in CATEGORIES:
        raise ValueError(f"{MODEL}: {name!r} is not categorical; the categorical parameters are "
                         f"{sorted(CATEGORIES)}")
    if label not in CATEGORIES[name]:
        raise ValueError(f"{MODEL}: {name}={label!r} is not one of {CATEGORIES[name]}")
    return CATEGORIES[name].index(label)


# ----------------------------------------------------------------------------- parameters


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class Settings:
    """Static settings: part of the compiled program, never swept.

    ``days`` simulated, the first ``warmup`` excluded from the averages, the forecast
    ``window``, the delays (days, each >= 1), the agents a breach hits, and whether option II
    may order several batches (``batch_multiples``, see the module docstring).
    """

    days: int = 800
    warmup: int = 100
    window: int = 10
    tau_I: int = 1
    tau_T: int = 2
    tau_P: int = 3
    breach_mask: tuple[str, ...] = ("R1", "R2")
    batch_multiples: bool = True

    def __post_init__(self):
        for name in ("days", "warmup", "window", "tau_I", "tau_T", "tau_P"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                raise TypeError(f"{MODEL}: setting {name} must be an integer, got {v!r}")
        if self.days < 1:
            raise ValueError(f"{MODEL}: setting days={self.days} must be >= 1")
        if not 0 <= self.warmup < self.days:
            raise ValueError(f"{MODEL}: setting warmup={self.warmup} must lie in "
                             f"[0, days - 1] = [0, {self.days - 1}]")
        if self.window < 2:
            raise ValueError(f"{MODEL}: setting window={self.window} must be >= 2 (sample std)")
        for name in ("tau_I", "tau_T", "tau_P"):
            if getattr(self, name) < 1:
                raise ValueError(f"{MODEL}: setting {name}={getattr(self, name)} must be >= 1 "
                                 f"(every delay is at least one day)")
        mask = tuple(self.breach_mask)
        object.__setattr__(self, "breach_mask", mask)
        bad = [a for a in mask if a not in AGENTS]
        if bad:
            raise ValueError(f"{MODEL}: setting breach_mask has unknown agents {bad}; the agents "
                             f"are {AGENTS}")

    @property
    def mask(self) -> np.ndarray:
        return np.array([a in self.breach_mask for a in AGENTS])

    @property
    def lead_times(self) -> np.ndarray:
        lt = self.tau_I + self.tau_T
        return np.array([lt, lt, lt, lt, self.tau_P, self.tau_P], dtype=float)


class Params(NamedTuple):
    """Parameters (defaults: the specification §4; the source's own values where it gives them).

    Numeric leaves may be swept; ``structure``, ``policy`` and ``breach`` are integer codes of
    :data:`CATEGORIES` (see :func:`code` and :func:`make_params`); ``settings`` is static.
    """

    h: Array | float = 1.0  # holding cost per unit per day
    b: Array | float = 5.0  # backlog cost per unit per day
    f: Array | float = 1.0  # fixed ordering cost per order
    s_f: Array | float = 10.0  # fixed shortage cost per order not filled in full that day
    z: Array | float = 1.65  # safety factor of the reorder point
    demand_mean: Array | float = 10.0  # mean daily demand per retailer (source: 10)
    demand_std: Array | float = 2.0  # std of daily demand (source: 2; sensitivity 4)
    capacity: Array | float = 80.0  # total manufacturer capacity (source: 80)
    eoq_factor: Array | float = 2.2361  # batch multiplier of option II (source eq. (3))
    period: Array | float = 90.0  # custom breach: days between breach starts
    duration: Array | float = 5.0  # custom breach: days breached
    offset: Array | float = 45.0  # custom breach: first breached day
    structure: Array | int = 0  # code of S, WH, MF, NT
    policy: Array | int = 0  # code of I, II, III
    breach: Array | int = 0  # code of none, BP1, BP2, BP3, custom
    settings: Settings = Settings()


DEFAULT = Params()

_POS = Interval(0.0, math.inf, lo_open=True)
_NONNEG = Interval(0.0, math.inf)

#: Allowed values. ``h, b > 0`` (the EOQ divides by ``h b``), ``period >= 1`` day.
DOMAIN = {
    "h": _POS, "b": _POS, "f": _NONNEG, "s_f": _NONNEG, "z": Interval(),
    "demand_mean": _NONNEG, "demand_std": _NONNEG, "capacity": _POS, "eoq_factor": _POS,
    "period": Interval(1.0, math.inf), "duration": _NONNEG, "offset": _NONNEG,
    "structure": Interval(0, len(STRUCTURES) - 1), "policy": Interval(0, len(POLICIES) - 1),
    "breach": Interval(0, len(BREACHES) - 1),
}

UNITS = {
    "h": "$/(unit day)", "b": "$/(unit day)", "f": "$/order", "s_f": "$/order", "z": "1",
    "demand_mean": "unit/day", "demand_std": "unit/day", "capacity": "unit",
    "eoq_factor": "1", "period": "day", "duration": "day", "offset": "day",
    "structure": "1", "policy": "1", "breach": "1",
}

#: ``IP < ROP`` is decided as ``ROP - IP > ORDER_RTOL (1 + |ROP|)``: under option I the
#: position after an order equals ROP, and on a day that changes neither (no incoming order, a
#: window that drops the value it adds) ``IP = ROP`` exactly in exact arithmetic; rounding would
#: otherwise place orders of 1e-14 units depending on the order of floating-point operations.
ORDER_RTOL = 1e-9

_NUMERIC = ("h", "b", "f", "s_f", "z", "demand_mean", "demand_std", "capacity", "eoq_factor",
            "period", "duration", "offset")
_CODES = ("structure", "policy", "breach")


def make_params(structure: str = "S", policy: str = "I", breach: str = "none", *,
                settings: Settings | None = None, **numeric) -> Params:
    """A :class:`Params` from labels, e.g. ``make_params("WH", "II", "BP3", demand_std=4.0)``."""
    unknown = set(numeric) - set(_NUMERIC)
    if unknown:
        raise ValueError(f"{MODEL}: unknown parameters {sorted(unknown)}; the numeric "
                         f"parameters are {_NUMERIC}")
    return Params(**numeric, structure=code("structure", structure),
                  policy=code("policy", policy), breach=code("breach", breach),
                  settings=settings or Settings())


def validate(params: Params) -> None:
    """Raise ``ValueError`` naming the parameter if a concrete input is outside its domain."""
    if not isinstance(params, Params):
        raise TypeError(f"{MODEL}: expected a Params, got {type(params).__name__}")
    if not isinstance(params.settings, Settings):
        raise TypeError(f"{MODEL}: settings must be a Settings, got "
                        f"{type(params.settings).__name__}")
    check_domain(params, DOMAIN, MODEL)
    for name in _CODES:
        v = getattr(params, name)
        if not isinstance(v, jax.core.Tracer):
            arr = np.asarray(v)
            if not np.issubdtype(arr.dtype, np.integer) and not np.all(arr == np.round(arr)):
                raise ValueError(f"{MODEL}: parameter {name} must be an integer code of "
                                 f"{CATEGORIES[name]}, got {v!r}")


def _prepare(params: Params) -> tuple[Params, Array]:
    validate(params)
    dtype = jnp.result_type(float)
    params = params._replace(
        **{k: jnp.asarray(getattr(params, k), dtype) for k in _NUMERIC},
        **{k: jnp.asarray(getattr(params, k), jnp.int32) for k in _CODES})
    shapes = {jnp.shape(getattr(params, k)) for k in (*_NUMERIC, *_CODES)}
    if shapes != {()}:
        raise ValueError(f"{MODEL}: simulate takes one parameter point (scalar leaves); vmap "
                         f"over a batch. Got leaf shapes {sorted(shapes)}")
    return params, inputs_valid(params, DOMAIN)


# ----------------------------------------------------------------------------- results


class Result(NamedTuple):
    """Daily averages over days ``warmup .. days - 1``. ``(6,)`` fields have dim ``agent``,
    ``(3,)`` fields dim ``tier``; absent agents are NaN with ``active = False``."""

    holding: Array  # (6,) holding cost
    backlog: Array  # (6,) backlog cost incl. fixed shortage cost
    ordering: Array  # (6,) ordering cost
    cost: Array  # (6,) total cost
    order_rate: Array  # (6,) share of days with Q > 0
    order_qty: Array  # (6,) mean Q over ordering days (NaN if none)
    active: Array  # (6,) bool, the agent exists in the structure
    breached_days: Array  # (6,) days breached in the averaging period
    holding_tier: Array  # (3,) means over the tier's active agents
    backlog_tier: Array
    ordering_tier: Array
    cost_tier: Array
    order_rate_tier: Array
    order_qty_tier: Array  # (3,) mean over active agents that ordered
    holding_chain: Array  # () sums over active agents
    backlog_chain: Array
    ordering_chain: Array
    cost_chain: Array
    assumptions_hold: Array  # () bool, inputs inside DOMAIN
    status: Array  # () int32: SUCCESS, or INVALID_INPUT


class Trace(NamedTuple):
    """Daily state (leading dim: day). Agent dims follow :data:`AGENTS`; links ``l`` of a W or M
    are its downstream agents (slot 1, 2 of the tier below); a retailer's link 0 is its
    customers."""

    demand: Array  # (days, 2)
    received: Array  # (days, 6) material received (step 1)
    orders: Array  # (days, 6, 2) incoming orders per link o[l] (step 2)
    shipped: Array  # (days, 6, 2) shipped per link (step 3)
    on_hand: Array  # (days, 6) after shipping
    backlog: Array  # (days, 6, 2) after shipping
    on_order: Array  # (days, 6) after ordering (step 7)
    position: Array  # (days, 6) IP of step 6
    mu: Array  # (days, 6)
    sigma: Array  # (days, 6)
    rop: Array  # (days, 6)
    q: Array  # (days, 6) the decided order
    sent: Array  # (days, 6, 2) orders released to upstream slot u (R, W)
    held: Array  # (days, 6) orders held by a breach, after step 8
    breached: Array  # (days, 6) bool
    queue: Array  # (days, 6) M's production queue after the start
    started: Array  # (days, 6) production started (M)
    wip: Array  # (days, 6) units in production before the start (M)
    holding_cost: Array  # (days, 6)
    backlog_cost: Array  # (days, 6)
    ordering_cost: Array  # (days, 6)


OUTPUT_DIMS = {
    **{k: ("agent",) for k in ("holding", "backlog", "ordering", "cost", "order_rate",
                                "order_qty", "active", "breached_days")},
    **{f"{k}_tier": ("tier",) for k in ("holding", "backlog", "ordering", "cost",
                                        "order_rate", "order_qty")},
}
DIM_COORDS = {"agent": AGENTS, "tier": TIERS}
STOCHASTIC = ("simulate",)
SOLVE_FUNCTIONS = ("simulate",)

_MONEY = "$/day"
OUTPUT_UNITS = {
    **{k: _MONEY for k in ("holding", "backlog", "ordering", "cost")},
    **{f"{k}_tier": _MONEY for k in ("holding", "backlog", "ordering", "cost")},
    **{f"{k}_chain": _MONEY for k in ("holding", "backlog", "ordering", "cost")},
    "order_rate": "1", "order_rate_tier": "1", "order_qty": "unit", "order_qty_tier": "unit",
    "active": "1", "breached_days": "day",
}

DESCRIPTIONS = {
    "h": "holding cost per unit and day", "b": "backlog cost per unit and day",
    "f": "fixed cost per order", "s_f": "fixed shortage cost per order not filled that day",
    "z": "safety factor of the reorder point", "demand_mean": "mean daily demand per retailer",
    "demand_std": "standard deviation of daily demand", "capacity": "total manufacturer capacity",
    "eoq_factor": "batch multiple of the EOQ under option II (eq. (3))",
    "period": "days between breach starts (custom profile)",
    "duration": "days breached per breach (custom profile)",
    "offset": "first breached day (custom profile)",
    "structure": "supply-chain structure (S, WH, MF, NT)",
    "policy": "ordering policy (I order-up-to, II batch, III batch-and-parameter)",
    "breach": "breach profile (none, BP1, BP2, BP3 of Table 1, custom)",
    "holding": "daily holding cost", "backlog": "daily backlog cost incl. fixed shortage cost",
    "ordering": "daily ordering cost", "cost": "daily total cost",
    "order_rate": "share of days with an order", "order_qty": "mean order over ordering days",
    "active": "agent exists in the structure", "breached_days": "breached days after warm-up",
    **{f"{k}_tier": f"tier mean of {k} over active agents" for k in
       ("holding", "backlog", "ordering", "cost", "order_rate", "order_qty")},
    **{f"{k}_chain": f"supply-chain total of {k} over active agents" for k in
       ("holding", "backlog", "ordering", "cost")},
}


# ----------------------------------------------------------------------------- simulation


def demand_draws(key: Array, days: int, mean, std) -> Array:
    """``(days, 2)`` demand ``max(0, mean + std eps)``, ``eps = normal(key, (days, 2))``.

    With JAX's partitionable threefry (the default, ``jax_threefry_partitionable = True``)
    element ``(t, i)`` is drawn from its own counter, so day t's draws depend only on the key,
    the day and the retailer, not on the horizon (tested)."""
    eps = jax.random.normal(key, (days, 2), jnp.result_type(float))
    return jnp.maximum(0.0, mean + std * eps)


def _as_key(key) -> Array:
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    arr = jnp.asarray(key)
    if arr.dtype == jnp.uint32 and arr.shape == (2,):  # a raw jax.random.PRNGKey
        return jax.random.wrap_key_data(arr)
    if arr.shape != () or not jnp.issubdtype(arr.dtype, jnp.integer):
        raise TypeError(f"{MODEL}: key must be a JAX PRNG key or an integer replication, got "
                        f"dtype {arr.dtype} and shape {arr.shape}")
    # An integer: replication ``key`` of seed 0.
    return jax.random.fold_in(jax.random.key(0), arr.astype(jnp.uint32))


def _profile(pr: Params):
    """``(period, duration, offset)`` of the breach profile (batch shape of the codes)."""
    table = jnp.asarray(np.array([PROFILES[k] for k in BREACHES[:-1]]), pr.h.dtype)
    custom = pr.breach == len(BREACHES) - 1
    prof = jnp.take(table, jnp.minimum(pr.breach, len(BREACHES) - 2), axis=0)
    return tuple(jnp.where(custom, getattr(pr, k), prof[..., i])
                 for i, k in enumerate(("period", "duration", "offset")))


def _breach_rule(pr: Params, days: int):
    """``breached(t)``: whether the breach profile is on at day ``t`` (batch shape of the codes):
    ``t >= offset`` and ``(t - offset) mod period < duration``.

    ``jnp.mod`` calls the C library's ``fmod`` once per run and day, about a sixth of the
    simulator's time. When every run of the batch has a whole-day period and offset (every
    profile of the source) below 2^20 days, ``x - period floor(x / period)`` is the same number
    exactly (``x / period`` is then at least ``1 / period`` away from any other integer, far
    more than its rounding error, and the rest is integer arithmetic) and vectorises; a batch
    with any other value keeps ``fmod`` (one branch for the whole batch: the same bits)."""
    period, duration, offset = _profile(pr)
    whole = jnp.all((period == jnp.floor(period)) & (offset == jnp.floor(offset))
                    & (period <= 2.0 ** 20) & (jnp.abs(offset) <= 2.0 ** 20))
    if days > 2 ** 20:
        whole = jnp.asarray(False)

    def breached(t):
        tt = jnp.asarray(t, pr.h.dtype)
        x = tt - offset
        phase = jax.lax.cond(whole, lambda: x - period * jnp.floor(x / period),
                             lambda: jnp.mod(x, period))
        return (tt >= offset) & (phase < duration)

    return breached


def _waterfill(oh, owed):
    """Ship per link (two links, axis 1 of ``owed``): all if ``oh`` covers it, else equal shares
    capped at what a link is owed, the surplus going to the other link (source eq. (6))."""
    d0, d1 = owed[:, 0], owed[:, 1]
    full = oh >= d0 + d1
    half = 0.5 * oh
    s0 = jnp.where(full, d0, jnp.minimum(d0, jnp.maximum(half, oh - d1)))
    s1 = jnp.where(full, d1, jnp.minimum(d1, jnp.maximum(half, oh - d0)))
    return jnp.stack([s0, s1], 1), full


def _seq_sum(x):
    # One addition at a time along the leading axis (a fixed order on every backend).
    s = x[0]
    for k in range(1, x.shape[0]):
        s = s + x[k]
    return s


def _tree_sum(x):
    # Pairwise along the leading axis, (x0 + x1) + (x2 + x3) ...: a fixed order on every
    # backend (XLA does not reassociate floating-point additions), and a dependency chain of
    # ceil(log2 n) additions instead of n - 1.
    xs = [x[k] for k in range(x.shape[0])]
    while len(xs) > 1:
        xs = [xs[k] + xs[k + 1] if k + 1 < len(xs) else xs[k] for k in range(0, len(xs), 2)]
    return xs[0]


class _State(NamedTuple):
    # Agent (or pipeline) dims first, then the batch dims of the parameters (trailing, so that
    # a batched run vectorises over runs, the long axis, in memory order). Arrays that only
    # some tiers use hold those tiers' slots only: what is sent upstream and in transport,
    # R and W (slots 0-3: 4); the production queue and pipeline, M (slots 4-5: 2). The other
    # slots' entries were zeros that the day's arithmetic added or kept (``x + 0 = x``: the
    # same bits); computing them took 12% of the CPU time (benchmarks/README.md).
    oh: Array  # (6, *b) on hand
    bl: Array  # (6, 2, *b) backlog per downstream link
    oo: Array  # (6, *b) on order
    win: Array  # (W, 6, *b) last W daily incoming totals (ring buffer, slot t mod W)
    held: Array  # (k, *b) orders held during a breach (R, W) or kept out of the queue (M), for
    # the k agents of the breach mask (default R1, R2)
    queue: Array  # (2, *b) production queue (M)
    info: Array  # (tau_I, 4, 2, *b) orders in information transit [sender R, W; upstream slot]
    # Ring buffers indexed by the day (slot t mod tau): slot t mod tau_T holds the material
    # that arrives on day t (shipped on t - tau_T), slot t mod tau_P the production started on
    # t - tau_P; a slot is read on its day and then rewritten with the new shipment / start,
    # due tau days later. (Shift registers cost two copies of each pipeline a day: the shift
    # and a copy XLA inserts because the old pipeline is still read after the new one is
    # written; ~8% of the CPU time.)
    trans: Array  # (tau_T, 4, *b) material in transport to an agent (R, W)
    prod: Array  # (tau_P, 2, *b) production started (M)
    # Separate (6, *b) arrays, not one stacked array: XLA's CPU backend emits a stacked
    # (concatenated) result with a branch per element, which costs more than the sums.
    sums: tuple[Array, ...]  # holding, backlog, ordering cost; sum of Q (after warm-up)
    # The day counts are integers (int32: exact, half the bytes of a float64 and twice the
    # lanes of a vector), converted once at the end: the same numbers, the same bits.
    count: tuple[Array, ...]  # ordering days (6, *b), breached days (k, *b; after warm-up), int32


def _one_kernel() -> bool:
    """Whether :func:`_run` compiles the day loop as one kernel (on a CPU backend, with a JAX
    that can tag a value with XLA metadata)."""
    return ONE_KERNEL and _tags_values() and jax.default_backend() == "cpu"


@functools.cache
def _tags_values() -> bool:
    """Whether ``set_xla_metadata(value, **attrs)`` tags a value; the older JAX releases that
    pyproject allows (0.4.34) have only its context-manager form (which would tag every
    operation traced inside it), so there the plain program runs (the same model; results
    agree to rounding)."""
    from jax.experimental.xla_metadata import set_xla_metadata

    return "x" in inspect.signature(set_xla_metadata).parameters


#: On a CPU, the day loop (``lax.scan`` over the days, with the initial state) is compiled as
#: one function: :func:`_run` wraps it in an inner ``jit`` whose call is tagged with the frontend
#: attributes ``xla_cpu_small_call="true"`` (XLA's CPU backend then emits the whole called
#: computation, loop included, as a single kernel with its legacy IR emitter, as it does for the
#: loops its ``SmallWhileLoopHoistingPass`` selects) and ``inlineable="false"`` (so that the call
#: survives inlining). Without it, XLA's thunk runtime dispatches ~26 fusion kernels and 11
#: buffer copies per simulated day as tasks on its thread pool; about half of the CPU time went
#: to that dispatch (``benchmarks/README.md``). The kernel emitter aborts the process (a
#: failed check, not an exception) on some operand lists: one buffer named twice (XLA's common
#: subexpression elimination makes that of closed-over values that happen to be equal) or a
#: large constant (parameters XLA folds, e.g. unbatched ones under ``vmap``). So the inner call
#: takes exactly three operands (the numeric parameters stacked with a row of ones, the codes
#: stacked with the runs' demand rows where given, the demand)
#: and they pass through ``lax.optimization_barrier``, which XLA does not constant-fold
#: (tested in a subprocess). ``False`` restores the plain thunk-runtime program (same model,
#: same order of operations; results agree to rounding, tested).
ONE_KERNEL = True


def _run(pr: Params, demand: Array, settings: Settings, trace: bool, rows=None):
    """Simulate ``settings.days`` days. Parameter leaves have a batch shape ``b`` (``()`` for
    one run); ``demand`` is ``(days, 2, *b)``, or with ``rows`` (ints, ``b = (n,)``) a
    runs-first ``(m, days, 2)`` array of which run ``j`` reads row ``rows[j]``, day by day, in
    place (:func:`simulate_runs` takes its demand as given; :func:`experiment` passes one row
    per replication, shared by every scenario); every state array is ``(agents..., *b)``.

    On a CPU the loop runs as one kernel (:data:`ONE_KERNEL`)."""
    if not _one_kernel():
        return _run_days(pr, demand, settings, trace, rows=rows)
    from jax.experimental.xla_metadata import set_xla_metadata

    bs = jnp.shape(pr.h)
    # The last row is the 1 of ``_run_days``' ``unit``: after the barrier, XLA cannot see it.
    numeric = jnp.stack([jnp.broadcast_to(getattr(pr, k), bs) for k in _NUMERIC]
                        + [jnp.ones(bs, pr.h.dtype)])
    codes = jnp.stack([jnp.broadcast_to(getattr(pr, k), bs) for k in _CODES]
                      + ([] if rows is None else [rows.astype(jnp.int32)]))
    numeric, codes, demand = jax.lax.optimization_barrier((numeric, codes, demand))
    out = _run_inner(numeric, codes, demand, settings, trace)
    return set_xla_metadata(out, xla_cpu_small_call="true", inlineable="false")


#: Runs per chunk of the one-kernel loop: a batch of more than ``CHUNK`` runs is split into
#: chunks of at most ``CHUNK`` runs (a multiple of 16: whole 512-bit vectors of floats),
#: simulated one after the other inside the kernel, so that a chunk's state (~1.2 kB a run in
#: float64) and temporaries stay in the core's cache. CPU time of the 2,160 runs of the design
#: (float64, one core): 0.104 s in one piece, 0.075 s in chunks of 240, 0.058 s in chunks of 80
#: (``benchmarks/README.md``). Every run is computed by the same code whatever its chunk.
CHUNK = 128


def _chunking(n: int) -> tuple[int, int]:
    """``(chunk, padded n)``: the chunk (a multiple of 16 from 32 to :data:`CHUNK`) that pads
    ``n`` runs least, the larger on ties."""
    if n <= CHUNK:
        return n, n
    best = None
    for c in range(32, CHUNK + 1, 16):
        padded = -(-n // c) * c
        if best is None or padded <= best[1]:
            best = (c, padded)
    return best


@functools.partial(jax.jit, static_argnums=(3, 4))
def _run_inner(numeric, codes, demand, settings, trace):
    def run(numeric, codes, offset=None):
        pr = Params(settings=settings, **{k: numeric[i] for i, k in enumerate(_NUMERIC)},
                    **{k: codes[i] for i, k in enumerate(_CODES)})
        rows = codes[len(_CODES)] if codes.shape[0] > len(_CODES) else None
        return _run_days(pr, demand, settings, trace, offset, rows, unit=numeric[-1])

    if numeric.ndim != 2 or numeric.shape[1] <= CHUNK:
        return run(numeric, codes)
    n = numeric.shape[1]
    chunk, width = _chunking(n)
    rows = codes.shape[0] > len(_CODES)
    if width != n:  # the padding point of _simulate_core (the defaults, demand 0)
        fill = jnp.asarray([float(getattr(DEFAULT, k)) for k in _NUMERIC] + [1.0], numeric.dtype)
        numeric = jnp.concatenate([numeric, jnp.broadcast_to(fill[:, None],
                                                             (len(fill), width - n))], 1)
        # With ``rows`` a padding run reads row 0 (any valid demand: it is sliced off).
        codes = jnp.concatenate([codes, jnp.zeros((codes.shape[0], width - n), codes.dtype)], 1)
        if not rows:
            demand = jnp.concatenate([demand, jnp.zeros((*demand.shape[:-1], width - n),
                                                        demand.dtype)], -1)

    def split(x):  # (..., width) -> (width / chunk, ..., chunk)
        return jnp.moveaxis(x.reshape(*x.shape[:-1], width // chunk, chunk), -2, 0)

    def join(x):  # (width / chunk, ..., chunk) -> (..., n)
        return jnp.moveaxis(x, 0, -2).reshape(*x.shape[1:-1], width)[..., :n]

    # The demand stays where it is: each chunk reads its columns day by day.
    out = jax.lax.map(lambda a: run(*a), (split(numeric), split(codes),
                                          jnp.arange(0, width, chunk)))
    return jax.tree.map(join, out)


def _run_days(pr: Params, demand: Array, settings: Settings, trace: bool, offset=None,
              rows=None, unit=None):
    """:func:`_run`'s computation. With ``offset``, the runs are the ``b`` runs of ``demand``'s
    last axis from ``offset`` on (read in place day by day: one chunk of a larger batch); with
    ``rows``, ``demand`` is ``(m, days, 2)`` and run ``j`` reads its row ``rows[j]`` (``offset``
    is then unused). ``unit`` (batch shape): ones that XLA cannot constant-fold (the one-kernel
    path passes them through its barrier); dividing the day's shipments by them changes no bit
    (``x / 1 = x``) but makes XLA compute the water-filling once a day (below)."""
    dtype = pr.h.dtype
    bs = jnp.shape(pr.h)
    W = settings.window

    def col(v):  # (6,) constants against (6, *b) states
        v = jnp.asarray(v)
        return v.reshape(v.shape + (1,) * len(bs))

    def par(v):  # (*b) parameters against (6, *b) states
        return v[None]

    def batch_first(x):  # (*b, i, j) -> (i, j, *b)
        return jnp.moveaxis(x, (-2, -1), (0, 1))

    a_rw = batch_first(jnp.take(jnp.asarray(A_RW, dtype), pr.structure, axis=0))
    a_wm = batch_first(jnp.take(jnp.asarray(A_WM, dtype), pr.structure, axis=0))
    active = jnp.moveaxis(jnp.take(jnp.asarray(ACTIVE), pr.structure, axis=0), -1, 0)
    # up[a, u]: share of agent a's order sent to upstream slot u (M: none, it produces).
    up = jnp.concatenate([a_rw, a_wm])  # R and W only (slots 0-3)
    lt1 = col(jnp.asarray(settings.lead_times + 1.0, dtype))
    sqrt_lt1 = jnp.sqrt(lt1)
    # The agents a breach can hit (the static ``breach_mask``; default R1, R2): only they hold
    # orders, so only their slots carry held orders and the breach test. Every other agent
    # releases ``0 + q = q`` each day (q is never -0), exactly what it did as a slot of zeros.
    hit = np.flatnonzero(settings.mask)

    def on_hit(y, x):  # x (6, *b) with rows ``hit`` replaced by y (len(hit), *b)
        # Concatenated runs of rows (the one-kernel emitter has no scatter).
        parts, a = [], 0
        for j, i in enumerate(hit):
            parts += [x[a:i], y[j:j + 1]]
            a = i + 1
        return jnp.concatenate([*parts, x[a:]]) if len(hit) else x

    n_m = active[4].astype(dtype) + active[5].astype(dtype)
    cap = par(pr.capacity / n_m)  # per active manufacturer
    h, b, f, s_f, z = (par(getattr(pr, k)) for k in ("h", "b", "f", "s_f", "z"))
    # The policy's choice and the active mask as bit masks (all ones or 0) applied with bitwise
    # and / or to the candidate orders' bits: exactly ``jnp.where``'s values, without the
    # conversions of per-run booleans (bytes) to vector masks that ``where`` compiles to in the
    # order decision's loop, which is latency-bound (fewer instructions per element, more
    # elements in flight).
    utype = jnp.dtype(f"uint{8 * jnp.dtype(dtype).itemsize}")
    ones = jnp.asarray(np.iinfo(utype).max, utype)

    def bits(x):
        return jax.lax.bitcast_convert_type(x, utype)

    def unbits(x):
        return jax.lax.bitcast_convert_type(x, dtype)

    pick = [jnp.where(par(pr.policy) == k, ones, utype.type(0)) for k in range(3)] + [
        jnp.where(active, ones, utype.type(0))]
    breach_on = _breach_rule(pr, settings.days)

    mu_r = jnp.broadcast_to(pr.demand_mean, (2, *bs))
    mu_w = jnp.einsum("i...,ij...->j...", mu_r, a_rw)
    mu_m = jnp.einsum("i...,ij...->j...", mu_w, a_wm)
    mu0 = jnp.concatenate([mu_r, mu_w, mu_m]) * active
    state = _State(
        oh=mu0 * lt1, bl=jnp.zeros((6, 2, *bs), dtype), oo=jnp.zeros((6, *bs), dtype),
        win=jnp.broadcast_to(mu0, (W, 6, *bs)), held=jnp.zeros((len(hit), *bs), dtype),
        queue=jnp.zeros((2, *bs), dtype), info=jnp.zeros((settings.tau_I, 4, 2, *bs), dtype),
        trans=jnp.zeros((settings.tau_T, 4, *bs), dtype),
        prod=jnp.zeros((settings.tau_P, 2, *bs), dtype), sums=(jnp.zeros((6, *bs), dtype),) * 4,
        count=(jnp.zeros((6, *bs), jnp.int32), jnp.zeros((len(hit), *bs), jnp.int32)))

    def shift(pipe):
        return jnp.concatenate([pipe[1:], jnp.zeros_like(pipe[:1])])

    # A day is split in two halves: ``decide`` (steps 1-7, the expensive part: shipping, the
    # forecast window, the order decision) and ``act`` (step 8 and the cost sums). The scan
    # runs ``act`` of day t - 1 and then ``decide`` of day t, so the decided order ``q`` and the
    # backlog cost reach ``act`` through the loop carry: XLA's CPU backend has no multi-output
    # fusion and would otherwise recompute the whole chain behind ``q`` inside each of the
    # half-dozen state updates that use it. The arithmetic is the same in the same order.

    def decide(s: _State, t, d):
        # 1. receive
        received = jnp.concatenate(
            [jax.lax.dynamic_index_in_dim(s.trans, t % settings.tau_T, keepdims=False),
             jax.lax.dynamic_index_in_dim(s.prod, t % settings.tau_P, keepdims=False)])
        oh = s.oh + received
        oo = s.oo - received
        # 2. incoming orders per link: R its demand; W link l = orders of R_l; M link l: W_l
        arrived = s.info[0]
        info = shift(s.info)
        o = jnp.concatenate([jnp.stack([d, jnp.zeros_like(d)], 1),
                             jnp.swapaxes(arrived[0:2], 0, 1), jnp.swapaxes(arrived[2:4], 0, 1)])
        incoming = o[:, 0] + o[:, 1]
        # 3. ship
        owed = s.bl + o
        ship, full = _waterfill(oh, owed)
        if unit is not None:
            # XLA's CPU backend has no multi-output fusion and recomputes a cheap value inside
            # every fusion that uses it: the water-filling ran in each of the four updates that
            # use the shipments (backlog, on-hand, transport, shortage cost). A division is
            # "expensive" to XLA, which never duplicates it; by an exact 1 it changes no bit and
            # the shipments are computed once (-7% CPU time, benchmarks/README.md).
            ship = ship / par(unit)[:, None]
        bl = owed - ship
        oh = jnp.where(full, oh - (owed[:, 0] + owed[:, 1]), 0.0)
        to_r = ship[2] + ship[3]  # W_j ships ship[2 + j, l] to R_l
        to_w = ship[4] + ship[5]
        # Shipped today, due on t + tau_T: written to the ring by ``act`` (through the carry, as
        # ``q``), after ``decide`` of day t has read that slot. ``0 +``: the former shift
        # register added it to an emptied slot.
        to = 0.0 + jnp.concatenate([to_r, to_w])
        # 4. costs (holding h OH is computed by ``act`` from the carried OH)
        short = (o > 0) & (ship < owed)
        # s_f per short link as a select (0, s_f or 2 s_f: the same values as s_f times the count
        # of short links, without converting the comparisons to numbers)
        back_c = b * (bl[:, 0] + bl[:, 1]) + (jnp.where(short[:, 0], s_f, 0.0)
                                              + jnp.where(short[:, 1], s_f, 0.0))
        # 5. forecast
        # Ring buffer: day t's total replaces the one of day t - W (slot t mod W).
        win = jax.lax.dynamic_update_index_in_dim(s.win, incoming, t % W, 0)
        mu = _tree_sum(win) / W
        sigma = jnp.sqrt(_tree_sum((win - mu[None]) ** 2) / (W - 1))
        # 6. inventory position
        ip = oh + oo - (bl[:, 0] + bl[:, 1])
        # 7. order
        rop = mu * lt1 + z * sigma * sqrt_lt1
        eoq = jnp.sqrt(2.0 * mu * f * (h + b) / (h * b))
        batch = par(pr.eoq_factor) * eoq
        gap = rop - ip
        if settings.batch_multiples:
            n = jnp.maximum(1.0, jnp.ceil(gap / jnp.where(batch > 0, batch, 1.0)))
        else:
            n = 1.0
        q_batch = jnp.where(batch > 0, n * batch, 0.0)
        q_policy = bits(gap) & pick[0] | bits(q_batch) & pick[1] | bits(gap + eoq) & pick[2]
        below = gap > ORDER_RTOL * (1.0 + jnp.abs(rop))  # IP < ROP beyond rounding
        q = unbits(jnp.where(below, q_policy & pick[3], 0))
        new = s._replace(oh=oh, bl=bl, oo=oo, win=win, info=info)
        out = None
        if trace:
            out = (d, received, o, ship, ip, mu, sigma, rop)
        return new, (q, back_c, to), out

    def act(s: _State, q, back_c, to, t):
        ordered = q > 0
        oo = s.oo + q
        order_c = jnp.where(ordered, f, 0.0)
        hold_c = h * s.oh
        # 8. send (R, W) or queue and produce (M)
        breached = par(breach_on(t)) & active[hit]
        release = on_hit(jnp.where(breached, 0.0, s.held + q[hit]), q)
        held = jnp.where(breached, s.held + q[hit], 0.0)
        sent = release[:4, None] * up
        info = s.info.at[-1].set(sent)
        queue = s.queue + release[4:]
        tau_p = settings.tau_P
        # WIP: the starts of days t - tau_P + 1 .. t - 1, oldest first, then the slot of day t
        # (consumed by ``decide``) as 0: the order of the former shift register's sum.
        wip = _seq_sum(jnp.stack([jax.lax.dynamic_index_in_dim(s.prod, (t + k) % tau_p,
                                                               keepdims=False)
                                  for k in range(1, tau_p)] + [jnp.zeros_like(s.queue)]))
        start = jnp.maximum(0.0, jnp.minimum(queue, cap - wip))
        queue = queue - start
        prod = jax.lax.dynamic_update_index_in_dim(s.prod, start, t % tau_p, 0)
        trans = jax.lax.dynamic_update_index_in_dim(s.trans, to, t % settings.tau_T, 0)
        # averages after warm-up
        after = (t >= settings.warmup).astype(dtype)
        sums = tuple(x + after * y for x, y in zip(s.sums, (hold_c, back_c, order_c, q),
                                                   strict=True))
        count = tuple(x + (y & (t >= settings.warmup)).astype(jnp.int32)
                      for x, y in zip(s.count, (ordered, breached), strict=True))
        new = s._replace(oo=oo, held=held, info=info, queue=queue, prod=prod, trans=trans,
                         sums=sums, count=count)
        out = None
        if trace:
            z4 = jnp.zeros((4, *bs), dtype)
            out = (s.oh, s.bl, oo, q, jnp.concatenate([sent, jnp.zeros((2, 2, *bs), dtype)]),
                   on_hit(held, jnp.zeros_like(q)), on_hit(breached, jnp.zeros_like(ordered)),
                   *(jnp.concatenate([z4, x]) for x in (queue, start, wip)),
                   hold_c, back_c,
                   order_c)
        return new, out

    def day(carry, inp):
        s, pending = carry
        t = inp
        if rows is not None:
            d = jnp.take(jax.lax.dynamic_index_in_dim(demand, t, axis=1, keepdims=False), rows,
                         axis=0, mode="clip").T
        elif offset is None:
            d = jax.lax.dynamic_index_in_dim(demand, t, keepdims=False)
        else:
            d = jax.lax.dynamic_slice(demand, (t, 0, offset), (1, 2, *bs))[0]
        s, out_b = act(s, *pending, t - 1)  # day t - 1 (a no-op before day 0: q = 0)
        s, pending, out_a = decide(s, t, d)
        return (s, pending), (out_a, out_b)

    zero = jnp.zeros((6, *bs), dtype)
    ts = jnp.arange(settings.days)
    (s, pending), (tr_a, tr_b) = jax.lax.scan(day, (state, (zero, zero, zero[:4])), ts)
    final, last_b = act(s, *pending, jnp.asarray(settings.days - 1))
    final = final._replace(count=(final.count[0], on_hit(final.count[1], final.count[0] * 0)))
    tr = None
    if trace:
        # ``act`` of day t ran in step t + 1 (and after the scan for the last day).
        tr_b = jax.tree.map(lambda x, y: jnp.concatenate([x[1:], y[None]]), tr_b, last_b)
        d, received, o, ship, ip, mu, sigma, rop = tr_a
        oh, bl, oo, q, sent, held, breached, queue, start, wip, hold_c, back_c, order_c = tr_b
        tr = Trace(d, received, o, ship, oh, bl, oo, ip, mu, sigma, rop, q, sent, held,
                   breached, queue, start, wip, hold_c, back_c, order_c)
    return final, active, tr


def _summarise(final: _State, active: Array, settings: Settings, valid) -> Result:
    """Averages, tier means and chain totals; agent and tier dims first, then the batch."""
    dtype = final.oh.dtype
    bs = final.oh.shape[1:]
    n = settings.days - settings.warmup
    nan = jnp.asarray(jnp.nan, dtype)
    hold, back, order = final.sums[0] / n, final.sums[1] / n, final.sums[2] / n
    qsum = final.sums[3]
    # One division of the summed costs: ``hold + back + order`` would be ``a x + b y`` after
    # XLA turns the divisions into products, which LLVM contracts into a fused multiply-add
    # differently in vectorised and scalar code (width-dependent last bits).
    cost = (final.sums[0] + final.sums[1] + final.sums[2]) / n
    n_orders, breached_days = (x.astype(dtype) for x in final.count)
    rate = n_orders / n
    qty = jnp.where(n_orders > 0, qsum / jnp.where(n_orders > 0, n_orders, 1.0), nan)
    act = active.astype(dtype)

    def agent(x):
        return jnp.where(active, x, nan)

    def tier_mean(x, w):
        x, w = jnp.where(w > 0, x, 0.0).reshape((3, 2, *bs)), w.reshape((3, 2, *bs))
        k = w[:, 0] + w[:, 1]
        return jnp.where(k > 0, (x[:, 0] * w[:, 0] + x[:, 1] * w[:, 1]) / jnp.where(k > 0, k, 1.0),
                         nan)

    def chain(x):
        return jnp.sum(jnp.where(active, x, 0.0), axis=0)

    ordered = act * (n_orders > 0)
    status = jnp.where(valid, jnp.int32(Status.SUCCESS), jnp.int32(Status.INVALID_INPUT))
    return Result(
        holding=agent(hold), backlog=agent(back), ordering=agent(order), cost=agent(cost),
        order_rate=agent(rate), order_qty=agent(qty), active=active,
        breached_days=agent(breached_days),
        holding_tier=tier_mean(hold, act), backlog_tier=tier_mean(back, act),
        ordering_tier=tier_mean(order, act), cost_tier=tier_mean(cost, act),
        order_rate_tier=tier_mean(rate, act), order_qty_tier=tier_mean(qty, ordered),
        holding_chain=chain(hold), backlog_chain=chain(back), ordering_chain=chain(order),
        cost_chain=chain(cost), assumptions_hold=valid, status=status)


#: Under ``vmap`` (and in :func:`simulate_runs`) the runs axis is padded to a multiple of
#: ``LANES`` runs (the engine's, ``jaxgames._solver.LANES``) with a fixed point, sliced off
#: after. XLA compiles an elementwise loop over the runs to a vectorised body and a scalar
#: remainder and contracts multiplications and additions into fused multiply-adds, which can
#: round differently in the two; and it simplifies a batch of one like an unbatched value. Either
#: way a run's last bits depended on the batch width (up to 1e-10 relative in float64 after
#: 800 days, whole orders in float32, where a reorder decision flips). Padded, every run goes
#: through the vectorised body and results are the same bits at any width (tested).
LANES = _LANES


def _simulate_core(pr: Params, valid, x: Array, settings: Settings, trace: bool, drawn: bool):
    """``_run`` and ``_summarise`` of one run (``Result`` and the trace or None) on the demand
    ``x`` or, if ``drawn``, on ``max(0, demand_mean + demand_std x)`` (``x`` the standard normal
    draws; computed here so that it is padded too: its multiply-add is contracted differently
    at different widths otherwise). Under ``vmap``
    the runs go on the trailing axis of every state array (the layout of :func:`simulate_runs`)
    rather than on the leading one, where the scan would loop over arrays with a minor dimension
    of 6 agents (1.6x the CPU time), and the batch is padded to a multiple of :data:`LANES`;
    the demand stays runs-first and each run reads its own row day by day (:func:`_run`'s
    ``rows``), so no transposed copy of it is made.
    Derivatives are those of the plain function (``custom_vmap`` alone does not support
    reverse mode)."""

    def plain(pr, valid, x, rows=None):
        # x: (days, 2) for one run; under vmap runs-first (runs, days, 2), read by ``rows``.
        if drawn:  # demand_draws: ([runs,] days, 2) against parameters ([runs])
            expand = (lambda v: v[:, None, None]) if rows is not None else (lambda v: v)
            x = jnp.maximum(0.0, expand(pr.demand_mean) + expand(pr.demand_std) * x)
        final, active, tr = _run(pr, x, settings, trace, rows)
        return _summarise(final, active, settings, valid), tr

    @jax.custom_jvp
    def run(pr, valid, x):
        return batched(pr, valid, x)

    @run.defjvp
    def _jvp(primals, tangents):
        return jax.jvp(plain, primals, tangents)

    @jax.custom_batching.custom_vmap
    def batched(pr, valid, x):
        return plain(pr, valid, x)

    @batched.def_vmap
    def _rule(axis_size, in_batched, pr, valid, x):
        width = -(-axis_size // LANES) * LANES
        # Padding runs hold a fixed valid point (the defaults, demand or draws 0), not copies of
        # a run: padded copies of the only run of a batch of one would be a broadcast, which
        # XLA simplifies as it does an unbatched parameter (folding products of parameters in
        # another order), and its bits would differ from the same run in a wider batch.
        fill = (DEFAULT._replace(settings=pr.settings), True, 0)

        def padded(x, batched, fill):  # (width, ...)
            if batched:
                pad = jnp.full((width - axis_size, *jnp.shape(x)[1:]), fill, x.dtype)
                return jnp.concatenate([x, pad]) if width != axis_size else x
            return jnp.broadcast_to(x, (width, *jnp.shape(x)))

        def last(x, batched, fill):
            return jnp.moveaxis(padded(x, batched, fill), 0, -1)

        pr, valid = jax.tree.map(last, (pr, valid), tuple(in_batched[:2]), fill[:2])
        # The demand stays runs-first (no transposed copy): run j reads row rows[j]. Drawn
        # demand depends on each run's parameters, so it has a row per run; explicit demand
        # shared by every run is one row.
        if in_batched[2] or drawn:
            x = padded(x, in_batched[2], fill[2])
            rows = jnp.arange(width, dtype=jnp.int32)
        else:
            x = x[None]
            rows = jnp.zeros(width, jnp.int32)
        out = plain(pr, valid, x, rows)
        out = jax.tree.map(lambda x: jnp.moveaxis(x, -1, 0)[:axis_size], out)
        return out, jax.tree.map(lambda _: True, out)

    return run(pr, valid, x)


@overload
def simulate(params: Params, key, demand: Array | None = None,
             trace: Literal[False] = False) -> Result: ...


@overload
def simulate(params: Params, key, demand: Array | None = None, *,
             trace: Literal[True]) -> tuple[Result, Trace]: ...


def simulate(params: Params, key, demand: Array | None = None, trace: bool = False) -> Result:
    """Simulate one run of the supply chain (module docstring) and return its :class:`Result`
    (and the daily :class:`Trace` if ``trace``: then a pair ``(Result, Trace)``; the sweep and
    the model contract read the default form, whose outputs are the :class:`Result` fields).

    ``key`` is a JAX PRNG key (the sweep passes ``fold_in(key(seed), replication)``) or an
    integer replication of seed 0. ``demand`` (``(days, 2)``, non-negative) replaces the random
    demand. Pure: ``jit``/``vmap`` it over parameters, keys or demand arrays.
    """
    pr, valid = _prepare(params)
    settings = params.settings
    if demand is None:  # demand_draws, in two parts (see _simulate_core)
        x = jax.random.normal(_as_key(key), (settings.days, 2), pr.h.dtype)
    else:
        demand = jnp.asarray(demand, pr.h.dtype)
        if demand.shape != (settings.days, 2):
            raise ValueError(f"{MODEL}: demand must have shape (days, 2) = ({settings.days}, 2),"
                             f" got {demand.shape}")
        if not isinstance(demand, jax.core.Tracer) and not bool(jnp.all(demand >= 0)):
            raise ValueError(f"{MODEL}: demand must be >= 0 everywhere")
        x = demand
    result, tr = _simulate_core(pr, valid, x, settings, trace, drawn=demand is None)
    return (result, tr) if trace else result


# ----------------------------------------------------------------------------- experiment

#: The breach scenarios of the source's experiment (Table 1 plus no breach).
EXPERIMENT_BREACHES = ("none", "BP1", "BP2", "BP3")


@functools.partial(jax.jit, static_argnums=1)
def _replication_normals(keys: Array, days: int) -> Array:
    """``normal(key, (days, 2))`` of each key (the draws of :func:`demand_draws`)."""
    return jax.vmap(lambda k: jax.random.normal(k, (days, 2), jnp.result_type(float)))(keys)


def replication_keys(seed: int, reps: int) -> Array:
    """``fold_in(key(seed), r)`` for ``r = 0 .. reps - 1``: the key of each replication."""
    return _replication_keys(seed, int(reps))


@functools.partial(jax.jit, static_argnums=1)
def _replication_keys(seed, reps: int) -> Array:
    # One compiled call (eagerly, vmap dispatched fold_in's operations one by one: 0.9 ms of
    # CPU per experiment); integer hashing, the same keys (tested).
    return jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(seed), jnp.arange(reps))


def _runs_program(pr: Params, demand: Array, rows=None) -> Result:
    # Every leaf of ``pr`` has the batch shape (n,); demand is (days, 2, n). The batch is the
    # trailing (memory-contiguous) axis of every state array, so each step of the scan is a
    # few loops over n runs (several times faster on a CPU than vmap, whose batch axis leads).
    valid = inputs_valid(pr, DOMAIN)
    final, active, _ = _run(pr, demand, pr.settings, False, rows)
    res = _summarise(final, active, pr.settings, valid)
    return res._replace(**{k: jnp.moveaxis(getattr(res, k), 0, -1) for k in OUTPUT_DIMS})


#: XLA options of :func:`simulate_runs`'s program (per program, not process-wide): 512-bit
#: vectors where the CPU has them (XLA prefers 256 bits by default; the day loop is compute
#: bound: -25% CPU time on an AVX-512 machine, the same bits), and copy insertion by region
#: analysis (fewer copies of the loop-carried state: -7%). Both are CPU options; other backends
#: ignore them (``benchmarks/README.md``).
COMPILER_OPTIONS = {"xla_cpu_prefer_vector_width": 512,
                    "xla_cpu_copy_insertion_use_region_analysis": True}


_runs_jit = jax.jit(_runs_program)
try:
    _runs_jit_cpu = jax.jit(_runs_program, compiler_options=COMPILER_OPTIONS)
except TypeError:  # jax releases before per-program options (0.4.34 has none): same bits
    _runs_jit_cpu = _runs_jit


def _runs_compiled(*args):
    """:func:`_runs_program` jitted, with :data:`COMPILER_OPTIONS` on a CPU backend (chosen at
    the call: importing the module does not start a backend). Inside a trace (``jit``, ``vmap``
    ...) the plain version: JAX accepts compiler options on top-level programs only."""
    if traced(*args) or not COMPILER_OPTIONS or jax.default_backend() != "cpu":
        return _runs_jit
    return _runs_jit_cpu


def simulate_runs(params: Params, demand: Array) -> Result:
    """Many runs in one call: ``params`` leaves broadcast to one batch shape ``(n,)``, ``demand``
    is ``(n, days, 2)``. Equal to ``vmap(simulate)`` on explicit demand (tested), with runs as the
    innermost axis. Returns a :class:`Result` with a leading dim ``n``."""
    validate(params)
    dtype = jnp.result_type(float)
    demand = jnp.asarray(demand, dtype)
    n = demand.shape[0]
    if demand.shape != (n, params.settings.days, 2):
        raise ValueError(f"{MODEL}: demand must have shape (runs, days, 2) = "
                         f"(n, {params.settings.days}, 2), got {demand.shape}")
    res = _simulate_runs_last(params, demand, np.arange(n, dtype=np.int32))
    return jax.tree.map(jnp.asarray, res)  # arrays on the default device, as a jit returns


def _simulate_runs_last(params: Params, demand: Array, rows=None) -> Result:
    """:func:`simulate_runs` on ``demand`` of shape ``(days, 2, n)``, or runs-first
    ``(m, days, 2)`` with ``rows`` (``(n,)`` ints): run ``j`` reads row ``rows[j]`` in place,
    day by day (no transposed or tiled copy of the demand: :func:`simulate_runs` passes its
    ``(n, days, 2)`` demand with ``rows = 0 .. n - 1``; :func:`experiment` its ``(reps, days,
    2)`` draws, shared by the 48 scenarios). The result's leaves are JAX arrays, or NumPy
    arrays when the runs were split over CPU devices (:func:`_on_devices`)."""
    dtype = jnp.result_type(float)
    n = demand.shape[-1] if rows is None else len(rows)
    if rows is not None:
        rows = np.asarray(rows)
    # The batch's parameters built with NumPy unless traced: 15 small eager JAX operations
    # took ~3 ms, 4% of the design's time on two CPU devices.
    xp = jnp if traced(params, demand) else np
    pr = params._replace(
        **{k: xp.broadcast_to(xp.asarray(getattr(params, k), dtype), (n,)) for k in _NUMERIC},
        **{k: xp.broadcast_to(xp.asarray(getattr(params, k), np.int32), (n,))
           for k in _CODES})
    width = -(-n // LANES) * LANES  # padded as under vmap: the same bits at any n
    if width != n:
        pr = jax.tree.map(lambda x, fill: xp.concatenate(
            [x, xp.full((width - n,), fill, x.dtype)]), pr, DEFAULT._replace(settings=pr.settings))
        if rows is None:
            demand = jnp.concatenate([demand, jnp.zeros((*demand.shape[:-1], width - n),
                                                        demand.dtype)], -1)
        else:  # padding runs read column 0 (sliced off)
            rows = np.concatenate([rows, np.zeros(width - n, rows.dtype)])
    args = (pr, demand) if rows is None else (pr, demand, rows.astype(np.int32))
    devs = [] if rows is None else cpu_devices(*args)[:width // CHUNK]
    if len(devs) > 1:
        res = _on_devices(devs, args)
    else:
        res = _runs_compiled(*args)(*args)
    return jax.tree.map(lambda x: x[:n], res) if width != n else res


def _on_devices(devs, args) -> Result:
    """:func:`_runs_compiled` on several CPU devices at once (:func:`jaxgames.use_cpu_cores`):
    the runs (reading a runs-first demand through ``rows``) in contiguous parts, one per device,
    each part run from a thread of its own (JAX executes a small CPU program such as this
    one-kernel loop in the calling thread, so parts dispatched from one thread would run one
    after the other), the results joined on the host (NumPy arrays). A run gives the same bits
    in any part as in one batch (its arithmetic does not depend on its neighbours: tested).

    The parts are whole chunks of the batch's own chunking (:func:`_chunking`), shared out as
    evenly as the chunks allow: halves of the design's 2,160 runs (1,080 each) would each be
    padded to chunks of 64 (10% more time than 1,040 + 1,120 runs in chunks of 80 and 112).
    Every part's inputs are sliced on the host and go to its device with the call, from its
    thread (``jax.default_device``): an operation dispatched to the first device while its part
    runs waits for that part (one device executes in order), which had the second part start
    only after the first ended in some calls (0.092-0.115 s in all, against 0.063-0.068 s for
    the two kernels launched side by side with their inputs ready)."""
    pr, demand, rows = args
    width = pr.h.shape[0]
    k = len(devs)
    chunk = _chunking(width)[0]
    units = -(-width // chunk)
    cuts = [min(width, (i * units // k) * chunk) for i in range(k)] + [width]
    host_pr = jax.tree.map(np.asarray, pr)
    host_demand = np.asarray(demand)
    parts = []
    for i in range(k):
        a, b = cuts[i], cuts[i + 1]
        lo, hi = int(rows[a:b].min()), int(rows[a:b].max()) + 1
        # The demand rows the part reads (all of experiment's few), its rows shifted to them.
        parts.append((devs[i], (jax.tree.map(lambda x, a=a, b=b: x[a:b], host_pr),
                                host_demand[lo:hi], rows[a:b] - lo)))

    def run(dev_part):
        dev, part = dev_part
        with jax.default_device(dev):
            return jax.tree.map(np.asarray, _runs_compiled(*part)(*part))

    outs = list(_thread_pool(k).map(run, parts))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)


@functools.cache
def _thread_pool(k: int):
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(k, thread_name_prefix="jaxgames-isb")


def experiment(reps: int = 45, seed: int = 0, *, structures=STRUCTURES, policies=POLICIES,
               breaches=EXPERIMENT_BREACHES, settings: Settings | None = None,
               **overrides) -> xr.Dataset:
    """The source's experiment: every structure x policy x breach scenario, ``reps``
    replications on common random numbers (replication r uses ``fold_in(key(seed), r)`` in every
    scenario), from one vectorised, jit-compiled call.

    ``overrides`` are numeric parameters (e.g. ``demand_std=4.0``). Returns a Dataset over
    ``(structure, policy, breach, replication[, agent | tier])`` with every :class:`Result`
    field (``active`` over ``(structure, agent)``).
    """
    if int(reps) < 2:
        raise ValueError(f"{MODEL}: reps={reps} must be >= 2 (paired-t intervals)")
    for name, labels, allowed in (("structures", structures, STRUCTURES),
                                  ("policies", policies, POLICIES),
                                  ("breaches", breaches, BREACHES)):
        bad = [x for x in labels if x not in allowed]
        if bad or not labels:
            raise ValueError(f"{MODEL}: {name} must be a non-empty subset of {allowed}, got "
                             f"{tuple(labels)}")
    base = make_params(settings=settings, **overrides)
    validate(base)
    st = base.settings
    grid = np.meshgrid(*[np.array([code(n, x) for x in labels], np.int32) for n, labels in
                         (("structure", structures), ("policy", policies),
                          ("breach", breaches))], indexing="ij")
    s, p, b = (g.ravel() for g in grid)
    dtype = jnp.result_type(float)
    # vmap(demand_draws) over the replications' keys, its normal draws in one compiled call
    # (eagerly, vmap dispatched them operation by operation: 3.3 ms against 1.3 ms); the same
    # bits (tested): max(0, mean + std eps) stays outside, as in demand_draws.
    eps = _replication_normals(replication_keys(seed, reps), st.days)
    demand = jnp.maximum(0.0, jnp.asarray(base.demand_mean, dtype)
                         + jnp.asarray(base.demand_std, dtype) * eps)
    # Runs ordered (scenario, replication); replication r has the same demand in every scenario.
    n_scen = len(s)
    runs = base._replace(structure=np.repeat(s, reps), policy=np.repeat(p, reps),
                         breach=np.repeat(b, reps))
    validate(runs)
    res = _simulate_runs_last(runs, demand,
                              np.tile(np.arange(int(reps), dtype=np.int32), n_scen))
    shape = (len(structures), len(policies), len(breaches), int(reps))
    dims = ("structure", "policy", "breach", "replication")
    data = {}
    for name, value in res._asdict().items():
        value = np.asarray(value).reshape(shape + np.shape(value)[1:])
        extra = OUTPUT_DIMS.get(name, ())
        if name == "active":
            data[name] = (("structure", "agent"), value[:, 0, 0, 0])
        else:
            data[name] = (dims + extra, value)
        attrs = {"description": DESCRIPTIONS.get(name, name)}
        if name in OUTPUT_UNITS:
            attrs["units"] = OUTPUT_UNITS[name]
        data[name] = (*data[name], attrs)
    coords = {"structure": list(structures), "policy": list(policies), "breach": list(breaches),
              "replication": np.arange(int(reps)), "agent": list(AGENTS), "tier": list(TIERS)}
    numeric = {k: float(getattr(base, k)) for k in _NUMERIC}
    attrs = {"model": MODEL, "seed": int(seed), "reps": int(reps),
             "settings": repr(st), **{f"param_{k}": v for k, v in numeric.items()}}
    return xr.Dataset(data, coords=coords, attrs=attrs)


# ----------------------------------------------------------------------------- analysis


def paired_t(x, y, axis: int = -1, m: int = 1, alpha: float = 0.05):
    """Paired-t confidence interval of ``mean(x - y)`` at overall level ``1 - alpha`` with a
    Bonferroni correction over ``m`` comparisons (each at ``1 - alpha / m``).

    Returns ``(mean difference, lower, upper, significant)``; significant: the interval
    excludes 0.
    """
    from scipy import stats  # deferred: the simulator itself does not need scipy

    d = np.asarray(x, float) - np.asarray(y, float)
    n = d.shape[axis]
    mean = d.mean(axis)
    se = d.std(axis, ddof=1) / math.sqrt(n)
    half = stats.t.ppf(1.0 - alpha / (2.0 * m), n - 1) * se
    lo, hi = mean - half, mean + half
    return mean, lo, hi, (lo > 0) | (hi < 0)


_LEVELS = (("agent", "cost"), ("tier", "cost_tier"), ("chain", "cost_chain"))


def _effect(base: xr.DataArray, other: xr.DataArray, m: int, alpha: float, dim: str) -> dict:
    """Relative effect ``(mean(base) - mean(other)) / mean(base)`` and the paired-t interval of
    ``base - other`` over ``dim`` (``base`` and ``other`` aligned)."""
    base, other = xr.broadcast(base, other)
    axis = base.get_axis_num(dim)
    diff, lo, hi, sig = paired_t(base.values, other.values, axis=axis, m=m, alpha=alpha)
    mb = base.mean(dim)
    dims = mb.dims
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = (mb - other.mean(dim)) / mb
    return {"effect": rel, "diff": xr.DataArray(diff, dims=dims, coords=mb.coords),
            "lo": xr.DataArray(lo, dims=dims, coords=mb.coords),
            "hi": xr.DataArray(hi, dims=dims, coords=mb.coords),
            "significant": xr.DataArray(sig & np.isfinite(diff), dims=dims, coords=mb.coords)}


def analyse(ds: xr.Dataset, high: xr.Dataset | None = None, alpha: float = 0.05):
    """The source's analysis of an :func:`experiment` dataset.

    * Reconfiguration effect ``(C_S - C_X) / C_S`` (X = WH, MF, NT) per policy and breach, for
      each agent, tier and the chain; paired-t intervals of ``C_S - C_X`` with a Bonferroni
      correction over the three reconfigurations of one policy and breach (m = 3).
    * Breach impact ``(C_BP - C_none) / C_none`` per structure and policy; family: the three
      breaches of one structure and policy (m = 3).
    * Ordering pattern (source Table 4): change of ordering rate (percentage points, S minus X)
      and of the effective average order quantity (``(Q_S - Q_X) / Q_S``).
    * With ``high`` (the experiment at ``demand_std = 4``): the sensitivity
      ``(C_low - C_high) / C_low`` of the serial structure; family: its twelve policy x breach
      scenarios (m = 12).

    Percent effects are ratios of means over replications; intervals are of the paired
    differences, at ``1 - alpha`` overall per family. Returns ``(Dataset, tables)``:
    ``tables`` maps ``"table3" .. "table8"`` to :class:`Table` (``.markdown``, ``.csv``).
    """
    out = {}
    rep = "replication"
    structures = list(ds.structure.values)
    if "S" not in structures:
        raise ValueError(f"{MODEL}: analyse needs the serial structure S as the base model")
    others = [x for x in structures if x != "S"]
    for level, var in _LEVELS:
        c = ds[var]
        if others:
            e = _effect(c.sel(structure="S"), c.sel(structure=others), len(others), alpha, rep)
            for k, v in e.items():
                out[f"reconf_{k}_{level}"] = v.rename(structure="reconfiguration")
        bps = [x for x in ds.breach.values if x != "none"]
        if "none" in ds.breach.values and bps:
            # impact = (C_BP - C_none) / C_none; the paired difference is C_BP - C_none.
            e = _effect(c.sel(breach="none"), c.sel(breach=bps), len(bps), alpha, rep)
            out[f"impact_{level}"] = -e["effect"]
            out[f"impact_diff_{level}"] = -e["diff"]
            out[f"impact_lo_{level}"] = -e["hi"]
            out[f"impact_hi_{level}"] = -e["lo"]
            out[f"impact_significant_{level}"] = e["significant"]
        if high is not None:
            lo_c = c.sel(structure="S")
            hi_c = high[var].sel(structure="S")
            m = lo_c.sizes["policy"] * lo_c.sizes["breach"]
            e = _effect(lo_c, hi_c, m, alpha, rep)
            for k, v in e.items():
                out[f"sensitivity_{k}_{level}"] = v
    for var, tier_var in (("order_rate", "order_rate_tier"), ("order_qty", "order_qty_tier")):
        for level, v in (("agent", ds[var]), ("tier", ds[tier_var])):
            vb = v.sel(structure="S").mean(rep)
            vx = v.sel(structure=others).mean(rep)
            if var == "order_rate":
                change = 100.0 * (vb - vx)
            else:
                with np.errstate(invalid="ignore", divide="ignore"):
                    change = (vb - vx) / vb
            out[f"{var}_change_{level}"] = change.rename(structure="reconfiguration")
    if others and {"BP1", "BP2", "BP3"} <= set(ds.breach.values):
        # Source Table 8: does reconfiguration reduce the cost increase of a more frequent
        # (RoC: BP2 vs BP1) or a longer (DD: BP3 vs BP1) breach? Paired over replications:
        # (C_S,BPk - C_S,BP1) - (C_X,BPk - C_X,BP1), family: the three reconfigurations.
        for level, var in _LEVELS:
            c = ds[var]
            rise = xr.concat([c.sel(breach="BP2") - c.sel(breach="BP1"),
                              c.sel(breach="BP3") - c.sel(breach="BP1")],
                             dim=xr.DataArray(["RoC", "DD"], dims="element", name="element"))
            e = _effect(rise.sel(structure="S"), rise.sel(structure=others), len(others), alpha,
                        rep)
            for k in ("diff", "lo", "hi", "significant"):
                out[f"profile_{k}_{level}"] = e[k].rename(structure="reconfiguration")
    # Variables over different subsets of breaches (impacts: BP1..BP3 only) are aligned by an
    # outer join, which sorts the labels; restore the experiment's order.
    result = xr.Dataset(out).reindex(breach=list(ds.breach.values))
    result.attrs = {"model": MODEL, "alpha": alpha,
                    **{f"experiment_{k}": v for k, v in ds.attrs.items()}}
    for name in result.data_vars:
        if "_lo_" in name or "_hi_" in name or "_diff_" in name:
            result[name].attrs["units"] = OUTPUT_UNITS["cost"]
    return result, tables(result, ds)


class Table(NamedTuple):
    """One results table: a title, a pandas DataFrame of strings, and a note."""

    title: str
    frame: object  # pandas.DataFrame
    note: str = ""

    @property
    def markdown(self) -> str:
        df = self.frame
        head = [*df.index.names, *df.columns]
        rows = [[*(i if isinstance(i, tuple) else (i,)), *r] for i, r in
                zip(df.index, df.values.tolist(), strict=True)]
        lines = [f"**{self.title}**", "", "| " + " | ".join(map(str, head)) + " |",
                 "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines) + "\n"

    @property
    def csv(self) -> str:
        return self.frame.to_csv()


def _pct(effect, significant) -> str:
    if not np.isfinite(effect):
        return "n/a"
    return f"{100.0 * effect:.2f}" + ("" if significant else "*")


def _symbol(diff, significant) -> str:
    if not np.isfinite(diff):
        return "n/a"
    return "-" if not significant else (">" if diff > 0 else "<")


_STAR = "'*': not significant (paired-t with Bonferroni, 95% overall per family)."
_MERGED = ("Per-agent effects of a merged agent (W1 in WH, M1 in MF) compare an agent serving "
           "two demand streams with one serving one.")


def tables(res: xr.Dataset, ds: xr.Dataset) -> dict[str, Table]:
    """Tables in the form of the source's Tables 3-8 from :func:`analyse`'s Dataset."""
    import pandas as pd  # deferred: only the tables need pandas

    out = {}
    cols_t = list(TIERS)
    if "sensitivity_effect_tier" in res:
        rows, idx = [], []
        for p in res.policy.values:
            for b in res.breach.values:
                sel = {"policy": p, "breach": b}
                e = res.sensitivity_effect_tier.sel(sel)
                g = res.sensitivity_significant_tier.sel(sel)
                ec = res.sensitivity_effect_chain.sel(sel)
                gc = res.sensitivity_significant_chain.sel(sel)
                rows.append([_pct(e.sel(tier=t).item(), g.sel(tier=t).item()) for t in cols_t]
                            + [_pct(ec.item(), gc.item())])
                idx.append((p, b))
        out["table3"] = Table(
            "Table 3: effect of demand std 2 -> 4 on cost, serial structure, (C_low - C_high) / "
            "C_low in % (negative: higher cost at std 4)",
            pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(idx, names=["policy", "breach"]),
                         columns=[*cols_t, "chain"]), _STAR + " Family: 12 scenarios.")
    if "reconf_effect_tier" in res:
        recs = list(res.reconfiguration.values)
        rows, idx = [], []
        for p in res.policy.values:
            for x in recs:
                r = res.order_rate_change_tier.sel(policy=p, reconfiguration=x, breach="none")
                q = res.order_qty_change_tier.sel(policy=p, reconfiguration=x, breach="none")
                rows.append([f"{r.sel(tier=t).item():.2f}" for t in cols_t]
                            + [f"{100 * q.sel(tier=t).item():.2f}" for t in cols_t])
                idx.append((p, x))
        out["table4"] = Table(
            "Table 4: ordering pattern, no breach: change of ordering rate (S - X, percentage "
            "points) and of effective average order quantity ((Q_S - Q_X) / Q_S, %)",
            pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(idx, names=["policy", "structure"]),
                         columns=[f"OR {t}" for t in cols_t] + [f"EAOQ {t}" for t in cols_t]),
            "Negative OR: orders more often than in S; positive EAOQ: smaller orders than in S.")
        cols = [*AGENTS, *cols_t, "chain"]

        def cells(p, x, b, fmt):
            sel = {"policy": p, "reconfiguration": x, "breach": b}
            a = [fmt(res.reconf_effect_agent.sel(sel).sel(agent=k).item(),
                     res.reconf_significant_agent.sel(sel).sel(agent=k).item()) for k in AGENTS]
            t = [fmt(res.reconf_effect_tier.sel(sel).sel(tier=k).item(),
                     res.reconf_significant_tier.sel(sel).sel(tier=k).item()) for k in cols_t]
            return a + t + [fmt(res.reconf_effect_chain.sel(sel).item(),
                                res.reconf_significant_chain.sel(sel).item())]

        idx = [(p, x) for p in res.policy.values for x in recs]
        if "none" in res.breach.values:
            out["table5"] = Table(
                "Table 5: reconfiguration effect on cost, no breach, (C_S - C_X) / C_S in % "
                "(positive: X is cheaper)",
                pd.DataFrame([cells(p, x, "none", _pct) for p, x in idx],
                             index=pd.MultiIndex.from_tuples(idx, names=["policy", "structure"]),
                             columns=cols), _STAR + " Family: 3 reconfigurations. " + _MERGED)
            out["table6"] = Table(
                "Table 6: summary of Table 5 ('>' significant benefit, '<' significant "
                "detriment, '-' no significant effect)",
                pd.DataFrame([cells(p, x, "none", _symbol) for p, x in idx],
                             index=pd.MultiIndex.from_tuples(idx, names=["policy", "structure"]),
                             columns=cols), _MERGED)
        bps = [b for b in res.breach.values if b != "none"]
        idx7 = [(p, b, x) for p in res.policy.values for b in bps for x in recs]
        rows = [cells(p, x, b, _pct)[6:] for p, b, x in idx7]
        if "impact_tier" in res:
            impact = {(p, b, x): _pct(res.impact_chain.sel(policy=p, breach=b, structure=x).item(),
                                      res.impact_significant_chain.sel(
                                          policy=p, breach=b, structure=x).item())
                      for p in res.policy.values for b in bps for x in ds.structure.values}
            rows = [r + [impact[(p, b, "S")], impact[(p, b, x)]]
                    for r, (p, b, x) in zip(rows, idx7, strict=True)]
            extra = ["impact S", "impact X"]
        else:
            extra = []
        out["table7"] = Table(
            "Table 7: reconfiguration effect on cost under breach, (C_S - C_X) / C_S in %, and "
            "breach impact on the chain, (C_BP - C_none) / C_none in %, of S and of X",
            pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(
                idx7, names=["policy", "breach", "structure"]), columns=[*cols_t, "chain", *extra]),
            _STAR + " Families: 3 reconfigurations (effects), 3 breaches (impacts).")
    if "profile_diff_chain" in res:
        idx8, rows = [], []
        for p in res.policy.values:
            for el in res.element.values:
                for x in res.reconfiguration.values:
                    sel = {"policy": p, "element": el, "reconfiguration": x}
                    rows.append([_symbol(res.profile_diff_tier.sel(sel).sel(tier=t).item(),
                                         res.profile_significant_tier.sel(sel).sel(tier=t).item())
                                 for t in cols_t]
                                + [_symbol(res.profile_diff_chain.sel(sel).item(),
                                           res.profile_significant_chain.sel(sel).item()),
                                   f"{res.profile_diff_chain.sel(sel).item():.3f}"])
                    idx8.append((p, el, x))
        out["table8"] = Table(
            "Table 8: does reconfiguration reduce the cost increase of a more frequent (RoC: BP2 "
            "vs BP1) or a longer (DD: BP3 vs BP1) breach? '>' ameliorates (significantly "
            "smaller increase than in S), '<' exacerbates, '-' no significant difference",
            pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(
                idx8, names=["policy", "element", "structure"]),
                columns=[*cols_t, "chain", "chain diff ($/day)"]),
            "Paired over replications: (C_S,BPk - C_S,BP1) - (C_X,BPk - C_X,BP1); family: 3 "
            "reconfigurations.")
    return out
