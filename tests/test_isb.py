"""Tests of the ``isb`` agent-based model: hand traces, equality with a plain per-agent Python
reference (tests/isb_reference.py) in all 48 scenarios, daily invariants on stressed inputs,
common random numbers, determinism, one compilation, the experiment and its statistics."""

import math

import isb_reference as ref
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from jaxgames._solver import Status
from jaxgames.models import isb

SCENARIOS = [(s, p, b) for s in isb.STRUCTURES for p in isb.POLICIES
             for b in isb.EXPERIMENT_BREACHES]
SLOT = {"customer": 0, "R1": 0, "R2": 1, "W1": 0, "W2": 1}


def _codes(scenarios):
    return tuple(jnp.array([isb.code(n, x[i]) for x in scenarios], jnp.int32)
                 for i, n in enumerate(("structure", "policy", "breach")))


def _with_codes(base, s, p, b, d):
    return isb.simulate(base._replace(structure=s, policy=p, breach=b), None, d, trace=True)


# One compiled program per Settings serves every scenario of a test.
_trace_one = jax.jit(_with_codes)
_trace_batch = jax.jit(jax.vmap(_with_codes, (None, 0, 0, 0, None)))


def _run(scenarios, base, demand):
    return _trace_batch(base, *_codes(scenarios), jnp.asarray(demand))


def _const_demand(days, d1=10.0, d2=10.0):
    return np.column_stack([np.full(days, d1), np.full(days, d2)])


# ----------------------------------------------------------------------------- hand traces

SHORT = isb.Settings(days=8, warmup=0)
# W and M on day 0: no incoming order, the window [mu0] * 9 + [0]. With mu0 = 10:
# mean 9, sample variance (9 * 1^2 + 9^2) / 9 = 10; LT + 1 = 4 for W (1 + 2) and M (3).
ROP_0 = 9 * 4 + 1.65 * math.sqrt(10) * math.sqrt(4)  # 46.4355...
Q_0 = ROP_0 - 40  # OH0 = mu0 (LT + 1) = 40, OO = 0: option I orders 6.4355...
# mu0 = 20 (merged agent): mean 18, variance (9 * 2^2 + 18^2) / 9 = 40, OH0 = 80.
ROP_0_MERGED = 18 * 4 + 1.65 * math.sqrt(40) * 2
Q_0_MERGED = ROP_0_MERGED - 80  # = 2 Q_0


def _hand(structure, breach="none", **kw):
    demand = jnp.asarray(kw.pop("demand", _const_demand(SHORT.days)))
    pr = isb.make_params(structure, "I", breach, settings=SHORT, **kw)
    return _trace_one(pr, pr.structure, pr.policy, pr.breach, demand)


@pytest.mark.parametrize("structure", isb.STRUCTURES)
def test_hand_trace_first_days(structure):
    """Option I, demand 10 at both retailers every day, no breach: days 0-3 worked by hand."""
    res, tr = _hand(structure)
    np.testing.assert_array_equal(res.active, isb.ACTIVE[isb.code("structure", structure)])
    # Retailers: OH0 = 10 * 4 = 40; every day ships 10; the first delivery is W's shipment of
    # day 1 (W shipped nothing on day 0, it had no order), received on day 1 + 2 = 3:
    # OH = 40-10 = 30, 30-10 = 20, 20-10 = 10, 10+10-10 = 10. IP = OH + OO stays 30 < ROP = 40
    # (window all 10: sigma 0), so Q = 40 - 30 = 10 every day.
    for r in (0, 1):
        np.testing.assert_allclose(tr.on_hand[:4, r], [30, 20, 10, 10], rtol=1e-12)
        np.testing.assert_allclose(tr.q[:4, r], [10, 10, 10, 10], rtol=1e-12)
        np.testing.assert_allclose(tr.received[:4, r], [0, 0, 0, 10], rtol=1e-12)
        np.testing.assert_allclose(tr.holding_cost[:4, r], [30, 20, 10, 10], rtol=1e-12)
        np.testing.assert_array_equal(tr.backlog_cost[:4, r], 0.0)
        np.testing.assert_allclose(tr.ordering_cost[:4, r], 1.0)  # f = 1 per order
    if structure in ("S", "MF"):
        # W_j serves R_j: day 0 Q_0; day 1 the order of 10 arrives: OH 40-10 = 30,
        # IP = 30 + Q_0 = ROP_0 - 10 (window mean 9, sigma sqrt(10) again) -> Q = 10;
        # day 2 OH 20, Q = 10; day 3 M's shipment of day 1 (= W's day-0 order Q_0) arrives:
        # OH = 20 + Q_0 - 10.
        for w in (2, 3):
            np.testing.assert_allclose(tr.orders[:4, w].sum(-1), [0, 10, 10, 10], rtol=1e-12)
            np.testing.assert_allclose(tr.on_hand[:4, w], [40, 30, 20, 10 + Q_0], rtol=1e-12)
            np.testing.assert_allclose(tr.q[:4, w], [Q_0, 10, 10, 10], rtol=1e-12)
            np.testing.assert_allclose(tr.rop[0, w], ROP_0, rtol=1e-12)
    if structure == "WH":
        # W1 serves both retailers: mu0 = 20, OH0 = 80; day 0 Q = Q_0_MERGED = 2 Q_0, split
        # equally over M1 and M2 (Q_0 each); day 1 both orders of 10 arrive: OH 80-20 = 60,
        # IP = 60 + 2 Q_0 -> Q = ROP_0_MERGED - IP = 20.
        np.testing.assert_allclose(tr.on_hand[:3, 2], [80, 60, 40], rtol=1e-12)
        np.testing.assert_allclose(tr.q[:3, 2], [Q_0_MERGED, 20, 20], rtol=1e-12)
        np.testing.assert_allclose(tr.sent[0, 2], [Q_0, Q_0], rtol=1e-12)
        np.testing.assert_allclose(tr.orders[1, 2], [10, 10], rtol=1e-12)
        np.testing.assert_array_equal(tr.on_hand[:, 3], 0.0)  # W2 absent
        assert math.isnan(res.cost[3]) and not res.active[3]
    if structure == "NT":
        # Each retailer splits Q = 10 into 5 + 5; each W receives 5 from each retailer.
        np.testing.assert_allclose(tr.sent[0, 0], [5, 5], rtol=1e-12)
        np.testing.assert_allclose(tr.orders[1, 2], [5, 5], rtol=1e-12)
        np.testing.assert_allclose(tr.sent[0, 2], [Q_0 / 2, Q_0 / 2], rtol=1e-12)
    # Manufacturers, day 0: no order; Q = Q_0 (mu0 = 10) or Q_0_MERGED (MF: mu0 = 20, cap 80),
    # all started at once (WIP = 0, Q < cap); day 1 the wholesalers' day-0 orders arrive and are
    # shipped from OH0 = 40 (80 in MF).
    if structure == "MF":
        np.testing.assert_allclose(tr.q[0, 4], Q_0_MERGED, rtol=1e-12)
        np.testing.assert_allclose(tr.started[0, 4], Q_0_MERGED, rtol=1e-12)
        np.testing.assert_allclose(tr.orders[1, 4], [Q_0, Q_0], rtol=1e-12)
        np.testing.assert_allclose(tr.on_hand[1, 4], 80 - 2 * Q_0, rtol=1e-12)
        assert not res.active[5]
    else:
        for m in (4, 5):
            np.testing.assert_allclose(tr.q[0, m], Q_0, rtol=1e-12)
            np.testing.assert_allclose(tr.started[0, m], Q_0, rtol=1e-12)
            np.testing.assert_allclose(tr.orders[1, m].sum(), Q_0, rtol=1e-12)
            np.testing.assert_allclose(tr.on_hand[1, m], 40 - Q_0, rtol=1e-12)
        # Production started on day 0 is finished on day 0 + 3.
        np.testing.assert_allclose(tr.received[3, 4], Q_0, rtol=1e-12)
        np.testing.assert_array_equal(tr.received[:3, 4], 0.0)


def test_hand_trace_shortage_and_fixed_shortage_cost():
    """S, option I: R1 sees 35, 10, 0, 10. Day 0 ships 35 of 40 (OH 5); day 1 ships 5 of 10:
    backlog 5, cost b * 5 + s_f = 35; day 2 no new order: backlog 5 costs b * 5 = 25 only;
    day 3: W1's shipment of day 1 arrives (W1 had 40 on hand for R1's day-0 order
    Q = ROP - 5 > 40, so it shipped 40 and is short itself), R1 ships 5 + 10."""
    demand = _const_demand(SHORT.days)
    demand[:4, 0] = [35, 10, 0, 10]
    res, tr = _hand("S", demand=demand)
    np.testing.assert_allclose(tr.on_hand[:4, 0], [5, 0, 0, 40 - 15], rtol=1e-12)
    np.testing.assert_allclose(tr.backlog[:4, 0, 0], [0, 5, 5, 0], rtol=1e-12)
    np.testing.assert_allclose(tr.backlog_cost[:4, 0], [0, 35, 25, 0], rtol=1e-12)
    # Window [10] * 9 + [35]: mean 12.5, variance (9 * 2.5^2 + 22.5^2) / 9 = 62.5.
    rop = 12.5 * 4 + 1.65 * math.sqrt(62.5) * 2
    np.testing.assert_allclose(tr.q[0, 0], rop - 5, rtol=1e-12)
    # W1 on day 1: owed rop - 5 > 40, ships its 40, backlog rop - 45, charged s_f once.
    np.testing.assert_allclose(tr.shipped[1, 2, 0], 40, rtol=1e-12)
    np.testing.assert_allclose(tr.backlog_cost[1, 2], 5 * (rop - 45) + 10, rtol=1e-12)
    np.testing.assert_allclose(tr.received[3, 0], 40, rtol=1e-12)


@pytest.mark.parametrize("profiles", [
    [(90.0, 5.0, 45.0), (7.0, 1.0, 3.0), (20.0, 6.0, 5.0), (1.0, 0.0, 0.0)],  # whole days
    [(90.0, 5.0, 45.0), (7.3, 1.7, 2.9), (10.0 / 3.0, 1.0, 0.1)],  # any fmod batch
])
def test_breach_rule_exact(profiles):
    """``t >= offset and (t - offset) mod period < duration`` exactly as Python's ``%`` computes
    it, on the vectorised path (whole-day periods and offsets) and on the fmod path."""
    days = 2000
    pr = isb.Params(h=jnp.ones(len(profiles)), period=jnp.array([p for p, _, _ in profiles]),
                    duration=jnp.array([d for _, d, _ in profiles]),
                    offset=jnp.array([o for _, _, o in profiles]),
                    breach=jnp.full(len(profiles), isb.code("breach", "custom")))
    got = np.asarray(jax.jit(jax.vmap(isb._breach_rule(pr, days)))(jnp.arange(days)))
    want = np.array([[t >= o and (t - o) % p < d for p, d, o in profiles] for t in range(days)])
    np.testing.assert_array_equal(got, want)


def test_waterfill_equal_shares_with_caps():
    """Source eq. (6): half of on-hand to each link; a link owed less than half gets what it is
    owed and the other link the rest; enough stock ships all."""
    oh = jnp.array([10.0, 10.0, 10.0, 30.0, 0.0])
    owed = jnp.array([[8.0, 8.0], [3.0, 20.0], [12.0, 0.0], [12.0, 9.0], [4.0, 1.0]])
    ship, full = isb._waterfill(oh, owed)
    np.testing.assert_array_equal(ship, [[5, 5], [3, 7], [10, 0], [12, 9], [0, 0]])
    np.testing.assert_array_equal(full, [False, False, False, True, False])


def test_hand_trace_breach_holds_and_releases_orders():
    """Custom breach period 4, duration 2, offset 1 on both retailers: breached on days 1, 2,
    5, 6. R decides Q = 10 (and pays f) every day, holds it while breached and sends
    10 + 10 + 10 = 30 on the first day out (3, 7); W receives it one day later."""
    res, tr = _hand("S", "custom", period=4.0, duration=2.0, offset=1.0)
    np.testing.assert_array_equal(tr.breached[:, 0], [0, 1, 1, 0, 0, 1, 1, 0])
    np.testing.assert_allclose(tr.q[:, 0], 10.0, rtol=1e-12)
    np.testing.assert_allclose(tr.ordering_cost[:, 0], 1.0)
    np.testing.assert_allclose(tr.sent[:, 0, 0], [10, 0, 0, 30, 10, 0, 0, 30], rtol=1e-12)
    np.testing.assert_allclose(tr.held[:, 0], [0, 10, 20, 0, 0, 10, 20, 0], rtol=1e-12)
    np.testing.assert_allclose(tr.orders[:, 2, 0], [0, 10, 0, 0, 30, 10, 0, 0], rtol=1e-12)
    np.testing.assert_array_equal(res.breached_days, [4, 4, 0, 0, 0, 0])
    np.testing.assert_allclose(res.order_rate[:2], 1.0)


# ----------------------------------------------------------------------------- reference

MID = isb.Settings(days=150, warmup=20)
STRESS = isb.Settings(days=200, warmup=20, breach_mask=isb.AGENTS)
STRESS_KW = dict(demand_std=8.0, capacity=30.0, period=20.0, duration=6.0, offset=5.0)


def _demand(days, std, seed):
    rng = np.random.default_rng(seed)
    return np.maximum(0.0, 10.0 + std * rng.standard_normal((days, 2)))


def _compare(res, tr, k, scenario, demand, settings, **kw):
    s, p, b = scenario
    out, states = ref.simulate(s, p, b, demand.tolist(), warmup=settings.warmup,
                               window=settings.window, tau_I=settings.tau_I,
                               tau_T=settings.tau_T, tau_P=settings.tau_P,
                               breach_mask=settings.breach_mask,
                               batch_multiples=settings.batch_multiples, trace=True, **kw)
    tol = dict(rtol=1e-9, atol=1e-9)
    for i, a in enumerate(isb.AGENTS):
        if a not in out:
            assert not res.active[k, i]
            assert np.all(np.isnan(np.asarray(res.cost[k, i])))
            continue
        for field, v in out[a].items():
            np.testing.assert_allclose(getattr(res, field)[k, i], v, **tol,
                                       err_msg=f"{scenario} {a} {field}")
        for field in ("received", "on_hand", "on_order", "position", "mu", "sigma", "rop", "q",
                      "held", "queue", "started", "wip", "holding_cost", "backlog_cost",
                      "ordering_cost", "breached"):
            expect = [st[a][field] for st in states]
            np.testing.assert_allclose(getattr(tr, field)[k, :, i], expect, **tol,
                                       err_msg=f"{scenario} {a} {field}")
        for field in ("backlog", "orders", "shipped"):
            expect = np.zeros((settings.days, 2))
            for t, st in enumerate(states):
                for link, v in st[a][field].items():
                    expect[t, SLOT[link]] = v
            np.testing.assert_allclose(getattr(tr, field)[k, :, i], expect, **tol,
                                       err_msg=f"{scenario} {a} {field}")


def test_matches_reference_all_48_scenarios():
    """Every scenario, every agent, every day: equal to the plain per-agent Python simulator
    on the same demand array (std 4), outputs and daily states to 1e-9."""
    demand = _demand(MID.days, 4.0, 1)
    res, tr = _run(SCENARIOS, isb.Params(settings=MID), demand)
    for k, sc in enumerate(SCENARIOS):
        _compare(res, tr, k, sc, demand, MID)


def test_matches_reference_stressed():
    """All 48 structure x policy x breach codes, plus a long custom breach of every agent
    (manufacturers included), binding capacity (30) and demand std 8."""
    demand = _demand(STRESS.days, 8.0, 2)
    scenarios = [(s, p, b) for s in isb.STRUCTURES for p in isb.POLICIES
                 for b in (*isb.EXPERIMENT_BREACHES, "custom")]
    base = isb.Params(settings=STRESS, **STRESS_KW)
    res, tr = _run(scenarios, base, demand)
    for k, sc in enumerate(scenarios):
        profile = (20.0, 6.0, 5.0) if sc[2] == "custom" else None
        _compare(res, tr, k, sc, demand, STRESS, capacity=30.0, profile=profile)


def test_matches_reference_other_delays_and_window():
    """Delays and window other than the source's (information 2 days, transport 1, production
    4; a window of 5): the pipelines are ring buffers indexed by the day, checked here for
    every scenario against the reference's explicit lists of due arrivals. With a scattered
    breach mask (R2, W1, M2): held orders are kept for the mask's agents only, joined back
    into the day's releases row by row."""
    st = isb.Settings(days=60, warmup=10, window=5, tau_I=2, tau_T=1, tau_P=4,
                      breach_mask=("R2", "W1", "M2"))
    demand = _demand(st.days, 4.0, 5)
    res, tr = _run(SCENARIOS, isb.Params(settings=st), demand)
    for k, sc in enumerate(SCENARIOS):
        _compare(res, tr, k, sc, demand, st)


def test_matches_reference_single_batch_option_II():
    """``batch_multiples=False``: option II orders exactly one batch when below the ROP."""
    st = isb.Settings(days=60, warmup=10, batch_multiples=False)
    demand = _demand(st.days, 4.0, 3)
    scenarios = [(s, "II", b) for s in isb.STRUCTURES for b in ("none", "BP3")]
    res, tr = _run(scenarios, isb.Params(settings=st), demand)
    for k, sc in enumerate(scenarios):
        _compare(res, tr, k, sc, demand, st)
    q = np.asarray(tr.q)
    batch = 2.2361 * np.sqrt(2 * np.asarray(tr.mu) * 1 * 6 / 5)
    np.testing.assert_allclose(q[q > 0], batch[q > 0], rtol=1e-12)


def test_matches_reference_full_length():
    """The full 800-day horizon (100 warm-up days) of one scenario per structure."""
    st = isb.Settings()
    demand = np.asarray(isb.demand_draws(jax.random.key(7), st.days, 10.0, 2.0))
    scenarios = [("S", "I", "BP3"), ("WH", "III", "BP2"), ("MF", "II", "BP1"),
                 ("NT", "II", "BP3")]
    res, tr = _run(scenarios, isb.Params(), demand)
    for k, sc in enumerate(scenarios):
        _compare(res, tr, k, sc, demand, st)


# ----------------------------------------------------------------------------- invariants


@pytest.fixture(scope="module")
def stressed():
    scenarios = [(s, p, b) for s in isb.STRUCTURES for p in isb.POLICIES
                 for b in (*isb.EXPERIMENT_BREACHES, "custom")]
    demand = _demand(STRESS.days, 8.0, 4)
    res, tr = _run(scenarios, isb.Params(settings=STRESS, **STRESS_KW), demand)
    return scenarios, res, jax.tree.map(np.asarray, tr)


def _lag(x, k):
    """x shifted k days later (zeros first)."""
    out = np.zeros_like(x)
    out[:, k:] = x[:, :-k]
    return out


def test_invariants_every_day(stressed):
    scenarios, res, tr = stressed
    atol = 1e-9
    assert np.all(tr.on_hand >= 0) and np.all(tr.backlog >= 0) and np.all(tr.queue >= 0)
    assert np.all(tr.shipped >= 0) and np.all(tr.started >= 0)
    assert np.all(tr.shipped <= tr.backlog + tr.shipped)  # never more than owed
    # Capacity binds somewhere, and is never exceeded: units started on the last tau_P days.
    cap = np.array([30.0 / (1 if s == "MF" else 2) for s, _, _ in scenarios])[:, None, None]
    in_use = tr.started + _lag(tr.started, 1) + _lag(tr.started, 2)
    assert np.all(in_use[..., 4:] <= cap + atol)
    assert np.any(in_use[..., 4:] >= cap - 1e-9)
    # Material balance per agent: OH_t = OH_{t-1} + received - shipped.
    oh0 = np.concatenate([np.zeros_like(tr.on_hand[:, :1]), tr.on_hand[:, :-1]], 1)
    oh0[:, 0] = tr.on_hand[:, 0] - tr.received[:, 0] + tr.shipped[:, 0].sum(-1)
    np.testing.assert_allclose(tr.on_hand, oh0 + tr.received - tr.shipped.sum(-1), atol=atol)
    # Shipments arrive tau_T = 2 days later at the right agent; production tau_P = 3 days later.
    for k, (s, _, _) in enumerate(scenarios):
        a_rw, a_wm = isb.A_RW[isb.code("structure", s)], isb.A_WM[isb.code("structure", s)]
        to_r = _lag(tr.shipped[k:k + 1, :, 2:4], 2)[0].sum(1)  # (days, R)
        to_w = _lag(tr.shipped[k:k + 1, :, 4:6], 2)[0].sum(1)
        np.testing.assert_allclose(tr.received[k, :, :2], to_r, atol=atol)
        np.testing.assert_allclose(tr.received[k, :, 2:4], to_w, atol=atol)
        np.testing.assert_allclose(tr.received[k, :, 4:], _lag(tr.started[k:k + 1], 3)[0, :, 4:],
                                   atol=atol)
        # Orders are received tau_I = 1 day after they are sent, by the agent they are routed to.
        np.testing.assert_allclose(tr.orders[k, :, 2:4], _lag(
            tr.sent[k:k + 1, :, :2], 1)[0].transpose(0, 2, 1), atol=atol)
        np.testing.assert_allclose(tr.orders[k, :, 4:6], _lag(
            tr.sent[k:k + 1, :, 2:4], 1)[0].transpose(0, 2, 1), atol=atol)
        # Routing: the released order is split by the structure's shares.
        up = np.concatenate([a_rw, a_wm])
        released = tr.sent[k, :, :4].sum(-1)
        np.testing.assert_allclose(tr.sent[k, :, :4], released[..., None] * up, atol=atol)
        # On-order identity (R, W): held + in information transit + owed by the upstream
        # agents on this agent's link + in transport (shipped on the last tau_T - 1 days).
        for a in range(4):
            u0 = 2 if a < 2 else 4
            owed = tr.backlog[k, :, u0:u0 + 2, a % 2].sum(-1)
            transit = tr.shipped[k, :, u0:u0 + 2, a % 2].sum(-1)
            transit = transit + _lag(tr.shipped[k:k + 1, :, u0:u0 + 2, a % 2], 1)[0].sum(-1)
            np.testing.assert_allclose(tr.on_order[k, :, a], tr.held[k, :, a] + released[:, a]
                                       + owed + transit, atol=1e-8)
        # On-order identity (M): held + queue + in production.
        prod = tr.started[k] + _lag(tr.started[k:k + 1], 1)[0] + _lag(tr.started[k:k + 1], 2)[0]
        np.testing.assert_allclose(tr.on_order[k, :, 4:], (tr.held[k] + tr.queue[k] + prod)[:, 4:],
                                   atol=1e-8)
    # Chain balance: stock on hand, in transport and in production changes by what retailers
    # ship to customers (it leaves) and nothing else; production starts only move the queue.
    in_transport = tr.shipped[:, :, 2:].sum((-1, -2)) + _lag(tr.shipped[:, :, 2:], 1).sum((-1, -2))
    in_prod = (tr.started + _lag(tr.started, 1) + _lag(tr.started, 2)).sum(-1)
    stock = tr.on_hand.sum(-1) + in_transport + in_prod
    np.testing.assert_allclose(np.diff(stock, axis=1), (tr.started.sum(-1)
                               - tr.shipped[:, :, :2, 0].sum(-1))[:, 1:], atol=1e-8)
    # Inventory-position identity: IP = OH + OO (before today's order) - backlog.
    np.testing.assert_allclose(tr.position, tr.on_hand + tr.on_order - tr.q
                               - tr.backlog.sum(-1), atol=1e-8)
    # Breached orders are delayed, never lost: decided = released + held, every day.
    released = np.concatenate([tr.sent[:, :, :4].sum(-1), (
        tr.queue - _lag(tr.queue, 1) + tr.started)[..., 4:]], -1)
    np.testing.assert_allclose(np.cumsum(tr.q, 1), np.cumsum(released, 1) + tr.held, atol=1e-8)
    assert np.all(tr.held[~tr.breached.astype(bool)] == 0)
    breached = tr.breached.astype(bool)
    assert np.all(released[..., :4][breached[..., :4]] == 0)
    assert np.all(np.abs(released[..., 4:][breached[..., 4:]]) < 1e-9)
    assert np.any(tr.breached[..., 4:])  # manufacturers are breached too in this test
    assert np.all(np.asarray(res.status) == Status.SUCCESS)


# ----------------------------------------------------------------------------- randomness


def test_common_random_numbers_and_determinism():
    key = jax.random.fold_in(jax.random.key(11), 3)
    long = isb.demand_draws(key, 200, 10.0, 2.0)
    short = isb.demand_draws(key, 50, 10.0, 2.0)
    if jax.config.jax_threefry_partitionable:  # the default since jax 0.5 (README: Demand)
        np.testing.assert_array_equal(short, long[:50])  # day t's draw ignores the horizon
    sim = jax.jit(lambda pr, k: isb.simulate(pr, k, trace=True))
    runs = [sim(isb.make_params(s, p, b, settings=MID), key) for s, p, b in
            (("S", "I", "none"), ("NT", "III", "BP2"), ("MF", "II", "BP3"))]
    for _, tr in runs[1:]:
        np.testing.assert_array_equal(tr.demand, runs[0][1].demand)  # same draws everywhere
    again = sim(isb.make_params("NT", "III", "BP2", settings=MID), key)
    for x, y in zip(jax.tree.leaves(again), jax.tree.leaves(runs[1]), strict=True):
        np.testing.assert_array_equal(x, y)  # bit for bit
    other = sim(isb.make_params("NT", "III", "BP2", settings=MID), jax.random.fold_in(
        jax.random.key(11), 4))
    assert not np.array_equal(other[1].demand, runs[1][1].demand)


_WIDTH = isb.Settings(days=300, warmup=30)
# One key for every point (as a sweep with a fixed seed passes it): the demand draws are then
# unbatched inside, the case where unpadded widths differed.
_vsim = jax.jit(jax.vmap(isb.simulate, (0, None)))


def _random_points(n, seed):
    """``n`` random parameter points (every numeric parameter within a factor 10 of its default
    where its domain allows, random codes) and replication keys."""
    rng = np.random.default_rng(seed)
    num = {k: jnp.asarray(float(getattr(isb.DEFAULT, k)) * np.exp(rng.uniform(-2.3, 2.3, n)))
           for k in isb._NUMERIC}
    num["period"] = jnp.maximum(num["period"], 1.0)
    codes = {k: jnp.asarray(rng.integers(0, len(isb.CATEGORIES[k]), n), jnp.int32)
             for k in isb._CODES}
    return isb.Params(settings=_WIDTH, **num, **codes), isb.replication_keys(seed, n)


def test_bit_identical_across_widths():
    """The same (params, key) give the same bits under ``vmap`` at widths 1, 7 and 64, and in
    ``simulate_runs`` at 7 and 64 runs. Before the fix, float64 results differed by up to 1e-10
    between widths 1 and 64 on these points (float32 ones by whole orders): XLA contracts
    multiply-adds differently in a loop's vectorised body and its scalar remainder, and
    simplifies a batch of one as unbatched. The batch is now padded to a multiple of
    ``isb.LANES`` runs with a fixed point, and the demand is formed after the padding."""
    n = 64
    pr, keys = _random_points(n, 5)

    def part(lo, hi):
        return _vsim(jax.tree.map(lambda x: x[lo:hi], pr), keys[0])

    wide = part(0, n)
    by7 = [part(i, min(i + 7, n)) for i in range(0, n, 7)]
    by7 = jax.tree.map(lambda *x: np.concatenate(x), *by7)
    for i in (0, 6, 7, 30, 63):
        one = part(i, i + 1)
        for name in isb.Result._fields:
            np.testing.assert_array_equal(getattr(one, name)[0], getattr(wide, name)[i],
                                          err_msg=f"width 1 vs 64, point {i}, {name}")
    for name in isb.Result._fields:
        np.testing.assert_array_equal(getattr(by7, name), getattr(wide, name),
                                      err_msg=f"width 7 vs 64, {name}")
    # simulate_runs (runs on the trailing axis, padded alike): any number of runs, same bits.
    demand = jax.vmap(isb.demand_draws, (None, None, 0, 0))(keys[0], _WIDTH.days,
                                                             pr.demand_mean, pr.demand_std)
    many = isb.simulate_runs(pr, demand)
    few = isb.simulate_runs(jax.tree.map(lambda x: x[:7], pr), demand[:7])
    for name in isb.Result._fields:
        np.testing.assert_array_equal(getattr(few, name), getattr(many, name)[:7],
                                      err_msg=f"simulate_runs, 7 vs 64 runs, {name}")
        # A separately compiled program may contract differently: equal to rounding only.
        np.testing.assert_allclose(getattr(many, name), getattr(wide, name), rtol=1e-12,
                                   err_msg=f"simulate_runs vs vmap, {name}")


def test_chunked_batches_bit_identical_and_equal_to_the_thunk_program(monkeypatch):
    """A batch of more than ``isb.CHUNK`` runs is simulated in chunks inside the one-kernel day
    loop (the demand read in place, the last chunk padded): each run gives the same bits as in
    a batch of its own, under ``vmap`` and in ``simulate_runs``; and the one-kernel program
    equals the plain thunk-runtime program (``ONE_KERNEL = False``) to rounding."""
    n = 200  # 200 runs: chunks of 112 (ties go to the larger chunk), the last one padded
    assert isb._chunking(n) == (112, 224)
    pr, keys = _random_points(n, 8)
    wide = _vsim(pr, keys[0])
    demand = jax.vmap(isb.demand_draws, (None, None, 0, 0))(keys[0], _WIDTH.days,
                                                             pr.demand_mean, pr.demand_std)
    many = isb.simulate_runs(pr, demand)
    for lo, hi in ((0, 16), (104, 120), (184, 200)):
        part = jax.tree.map(lambda x, lo=lo, hi=hi: x[lo:hi], pr)
        few = _vsim(part, keys[0])
        runs = isb.simulate_runs(part, demand[lo:hi])
        for name in isb.Result._fields:
            np.testing.assert_array_equal(getattr(few, name), getattr(wide, name)[lo:hi],
                                          err_msg=f"vmap, runs {lo}-{hi} alone vs in 200, {name}")
            np.testing.assert_array_equal(getattr(runs, name), getattr(many, name)[lo:hi],
                                          err_msg=f"simulate_runs, {lo}-{hi} vs 200, {name}")
    monkeypatch.setattr(isb, "ONE_KERNEL", False)
    plain = jax.jit(jax.vmap(isb.simulate, (0, None)))(pr, keys[0])
    for name in isb.Result._fields:
        np.testing.assert_allclose(getattr(plain, name), getattr(wide, name), rtol=1e-12,
                                   err_msg=f"thunk program vs one kernel, {name}")


def test_day_loop_is_one_kernel_on_cpu():
    """On a CPU the day loop is one called computation tagged ``xla_cpu_small_call`` (emitted as
    a single kernel) in both compiled paths: ``simulate_runs`` and ``vmap(simulate)``."""
    if not isb._one_kernel():
        pytest.skip("CPU-only code path, on a JAX that tags values with XLA metadata")
    st = isb.Settings(days=8, warmup=0)
    n = 16
    pr = isb.Params(settings=st)._replace(
        **{k: jnp.full((n,), float(getattr(isb.DEFAULT, k))) for k in isb._NUMERIC},
        **{k: jnp.zeros((n,), jnp.int32) for k in isb._CODES})
    hlo = isb._runs_compiled().lower(pr, jnp.ones((st.days, 2, n))).compile().as_text()
    def day_loops(text):  # XLA also hoists the threefry draws' tiny loops this way
        return sum(" call(" in ln and 'xla_cpu_small_call="true"' in ln and "_run_inner" in ln
                   for ln in text.splitlines())

    assert day_loops(hlo) == 1
    assert "while(" not in hlo.split("ENTRY")[1]  # no loop left for the thunk runtime
    vm = jax.jit(jax.vmap(lambda h: isb.simulate(isb.Params(h=h, settings=st), 0))).lower(
        jnp.ones(n)).compile().as_text()
    assert day_loops(vm) == 1


_CONSTANT_INPUTS = """
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
from jaxgames.models import isb
st = isb.Settings(days=30, warmup=5)
d = np.full((30, 2), 10.0)
n = 144  # parameters folded into a 12 x 144 constant: 13.8 kB
one = jax.jit(lambda: isb.simulate(isb.make_params("NT", "II", settings=st), None, d))()
runs = jax.jit(lambda: isb.simulate_runs(isb.make_params("NT", "II", settings=st),
                                         np.tile(d, (n, 1, 1))))()
vm = jax.jit(jax.vmap(lambda s_, k: isb.simulate(isb.Params(structure=s_, settings=st), k)))(
    jnp.arange(n) % 4, isb.replication_keys(0, n))
assert np.allclose(runs.cost_chain, one.cost_chain, rtol=1e-12, atol=0)
assert np.isfinite(vm.cost_chain).all()
print("ok")
"""


def test_one_kernel_with_constant_inputs():
    """Inputs that XLA folds into constants (closed-over parameters and demand, unbatched
    parameters under ``vmap``; ``simulate_runs`` inside ``jit``) compile and run. The kernel
    emitter of the one-kernel loop aborts the process on a large constant operand; the operands
    pass through an optimization barrier. Run in a subprocess, so that an abort fails the test
    instead of the test session."""
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", _CONSTANT_INPUTS], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


_TWO_DEVICES = """
import jax
import jaxgames
assert jaxgames.use_cpu_cores(2) == 2
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
from jaxgames.models import isb

assert len(isb.cpu_devices()) == 2
assert jaxgames.use_cpu_cores(2) == 2  # started with 2: fine
try:
    jaxgames.use_cpu_cores(3)
except RuntimeError as exc:
    assert "already started with 2 device(s)" in str(exc), exc
else:
    raise AssertionError("use_cpu_cores(3) after the start did not raise")
st = isb.Settings(days=120, warmup=20)
rng = np.random.default_rng(3)
n = 300  # two parts of whole lanes (144 and 160 runs), each chunked inside its kernel
pr = isb.DEFAULT._replace(settings=st, **{k: rng.integers(0, len(isb.CATEGORIES[k]), n)
                                          for k in isb._CODES})
demand = jnp.asarray(rng.uniform(0.0, 20.0, (n, st.days, 2)))
split = isb.simulate_runs(pr, demand)
assert {d for x in jax.tree.leaves(split) for d in x.devices()} == {jax.devices()[0]}
ds = isb.experiment(reps=7, settings=st)  # 336 runs
isb.cpu_devices = lambda *a: []  # one batch on one device
one = isb.simulate_runs(pr, demand)
ds_one = isb.experiment(reps=7, settings=st)
for name in isb.Result._fields:
    a, b = np.asarray(getattr(split, name)), np.asarray(getattr(one, name))
    assert a.shape == b.shape and np.array_equal(a, b, equal_nan=True), name
assert ds.identical(ds_one)
print("ok")
"""


def test_runs_split_over_cpu_devices():
    """With two CPU devices (``jaxgames.use_cpu_cores(2)``), ``simulate_runs`` and
    ``experiment`` run their batch in two parts side by side and give the same bits as one
    batch on one device; ``use_cpu_cores`` after JAX started with another number raises.
    In a subprocess: the device count is fixed when JAX's CPU backend starts."""
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, "-c", _TWO_DEVICES], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_key_forms():
    pr = isb.make_params("WH", "III", "BP1", settings=SHORT)
    a = isb.simulate(pr, jax.random.fold_in(jax.random.key(0), 5))
    b = isb.simulate(pr, 5)  # replication 5 of seed 0
    c = isb.simulate(pr, jax.random.key_data(jax.random.fold_in(jax.random.key(0), 5)))
    np.testing.assert_array_equal(a.cost, b.cost)
    np.testing.assert_array_equal(a.cost, c.cost)
    with pytest.raises(TypeError, match="key must be"):
        isb.simulate(pr, 1.5)


def test_one_compilation_for_every_scenario():
    fn = jax.jit(lambda pr, d: isb.simulate(pr, None, d))
    demand = _const_demand(SHORT.days)
    for s, p, b in SCENARIOS:
        fn(isb.make_params(s, p, b, settings=SHORT), demand)
    assert fn._cache_size() == 1


# ----------------------------------------------------------------------------- validation


def test_bad_input_errors_before_compile():
    with pytest.raises(ValueError, match="structure='XX'"):
        isb.make_params("XX")
    with pytest.raises(ValueError, match=r"parameter h=-1.0 is outside .*\(0, inf\)"):
        isb.simulate(isb.Params(h=-1.0), 0)
    with pytest.raises(ValueError, match="parameter policy"):
        isb.simulate(isb.Params(policy=5), 0)
    with pytest.raises(ValueError, match=r"demand must have shape \(days, 2\)"):
        isb.simulate(isb.Params(), 0, demand=np.ones((10, 2)))
    with pytest.raises(ValueError, match="warmup=900"):
        isb.Settings(warmup=900)
    with pytest.raises(ValueError, match="tau_T=0"):
        isb.Settings(tau_T=0)
    with pytest.raises(ValueError, match="unknown agents"):
        isb.Settings(breach_mask=("R3",))
    with pytest.raises(ValueError, match="unknown parameters"):
        isb.make_params(sigma=3.0)


def test_traced_invalid_input_is_flagged():
    fn = jax.jit(jax.vmap(lambda h: isb.simulate(isb.Params(h=h, settings=SHORT), None,
                                                 jnp.asarray(_const_demand(SHORT.days)))))
    res = fn(jnp.array([1.0, -1.0]))
    np.testing.assert_array_equal(res.status, [Status.SUCCESS, Status.INVALID_INPUT])
    np.testing.assert_array_equal(res.assumptions_hold, [True, False])


# ----------------------------------------------------------------------------- experiment


def test_paired_t_matches_scipy():
    rng = np.random.default_rng(5)
    x = rng.normal(10, 2, (4, 45))
    y = x + rng.normal(0.3, 1, (4, 45))
    for m in (1, 3, 12):
        mean, lo, hi, sig = isb.paired_t(x, y, axis=-1, m=m)
        for i in range(4):
            ci = scipy.stats.ttest_rel(x[i], y[i]).confidence_interval(1 - 0.05 / m)
            np.testing.assert_allclose([lo[i], hi[i]], [ci.low, ci.high], rtol=1e-12)
            np.testing.assert_allclose(mean[i], np.mean(x[i] - y[i]), rtol=1e-12)
            assert sig[i] == (ci.low > 0 or ci.high < 0)


@pytest.fixture(scope="module")
def small_experiment():
    st = isb.Settings(days=200, warmup=50)
    ds = isb.experiment(reps=4, seed=3, settings=st)
    high = isb.experiment(reps=4, seed=3, settings=st, structures=("S",), demand_std=4.0)
    return ds, high


def test_experiment_dataset_matches_single_runs(small_experiment):
    ds, _ = small_experiment
    assert dict(ds.sizes) == {"structure": 4, "policy": 3, "breach": 4, "replication": 4,
                              "agent": 6, "tier": 3}
    assert ds.cost.dims == ("structure", "policy", "breach", "replication", "agent")
    np.testing.assert_array_equal(ds.active.sel(structure="WH"), isb.ACTIVE[1])
    st = isb.Settings(days=200, warmup=50)
    key = jax.random.fold_in(jax.random.key(3), 2)  # replication 2 of seed 3
    one = isb.simulate(isb.make_params("MF", "III", "BP2", settings=st), key)
    sel = ds.sel(structure="MF", policy="III", breach="BP2", replication=2)
    np.testing.assert_allclose(sel.cost, one.cost, rtol=1e-12)
    np.testing.assert_allclose(sel.cost_chain, one.cost_chain, rtol=1e-12)
    # Chain totals are sums over active agents; tier means over active agents.
    np.testing.assert_allclose(ds.cost_chain, ds.cost.sum("agent"), rtol=1e-12)
    w = ds.cost.sel(structure="WH", agent="W1")
    np.testing.assert_allclose(ds.cost_tier.sel(structure="WH", tier="W"), w, rtol=1e-12)
    again = isb.experiment(reps=4, seed=3, settings=st, structures=("MF",), policies=("III",),
                           breaches=("BP2",))
    # The experiment's demand (normal draws in one compiled call) is vmap(demand_draws)'s,
    # bit for bit.
    keys = isb.replication_keys(3, 4)
    # The replication keys (one compiled call) are fold_in(key(seed), r), the sweep's.
    for seed in (3, 2**31 + 5):
        np.testing.assert_array_equal(
            jax.random.key_data(isb.replication_keys(seed, 4)),
            jax.random.key_data(jnp.stack([jax.random.fold_in(jax.random.key(seed), r)
                                           for r in range(4)])))
    mean, std = jnp.asarray(10.0), jnp.asarray(2.0)
    np.testing.assert_array_equal(
        jnp.maximum(0.0, mean + std * isb._replication_normals(keys, st.days)),
        jax.vmap(isb.demand_draws, (0, None, None, None))(keys, st.days, mean, std))
    np.testing.assert_array_equal(again.cost.values[0, 0, 0], ds.cost.sel(
        structure="MF", policy="III", breach="BP2").values)


def test_analyse_effects_and_tables(small_experiment):
    ds, high = small_experiment
    res, tables = isb.analyse(ds, high)
    c = ds.cost_chain
    # Reconfiguration effect: ratio of means; its interval is scipy's paired-t with m = 3.
    cs = c.sel(structure="S", policy="II", breach="BP3")
    cx = c.sel(structure="NT", policy="II", breach="BP3")
    eff = res.reconf_effect_chain.sel(reconfiguration="NT", policy="II", breach="BP3")
    np.testing.assert_allclose(eff, (cs.mean() - cx.mean()) / cs.mean(), rtol=1e-12)
    ci = scipy.stats.ttest_rel(cs, cx).confidence_interval(1 - 0.05 / 3)
    sel = dict(reconfiguration="NT", policy="II", breach="BP3")
    np.testing.assert_allclose([res.reconf_lo_chain.sel(sel), res.reconf_hi_chain.sel(sel)],
                               [ci.low, ci.high], rtol=1e-10)
    # Breach impact (C_BP - C_none) / C_none with its interval of C_BP - C_none.
    cb, cn = c.sel(structure="WH", policy="I", breach="BP3"), c.sel(structure="WH", policy="I",
                                                                    breach="none")
    sel = dict(structure="WH", policy="I", breach="BP3")
    np.testing.assert_allclose(res.impact_chain.sel(sel), (cb.mean() - cn.mean()) / cn.mean(),
                               rtol=1e-12)
    ci = scipy.stats.ttest_rel(cb, cn).confidence_interval(1 - 0.05 / 3)
    np.testing.assert_allclose([res.impact_lo_chain.sel(sel), res.impact_hi_chain.sel(sel)],
                               [ci.low, ci.high], rtol=1e-10)
    # Sensitivity: family of 12.
    lo, hi = c.sel(structure="S", policy="III", breach="BP1"), high.cost_chain.sel(
        structure="S", policy="III", breach="BP1")
    ci = scipy.stats.ttest_rel(lo, hi).confidence_interval(1 - 0.05 / 12)
    sel = dict(policy="III", breach="BP1")
    np.testing.assert_allclose([res.sensitivity_lo_chain.sel(sel),
                                res.sensitivity_hi_chain.sel(sel)], [ci.low, ci.high], rtol=1e-10)
    # Absent agents have no effect; the tables mark them n/a.
    assert np.isnan(res.reconf_effect_agent.sel(reconfiguration="WH", agent="W2")).all()
    assert set(tables) == {f"table{i}" for i in range(3, 9)}
    t5 = tables["table5"]
    assert "| I | WH |" in t5.markdown and "n/a" in t5.markdown
    assert t5.csv.splitlines()[0].startswith("policy,structure,R1")
    assert set(np.unique(tables["table6"].frame.values)) <= {">", "<", "-", "n/a"}


def test_analyse_keeps_breach_order(small_experiment):
    ds, high = small_experiment
    res, _ = isb.analyse(ds, high)
    assert list(res.breach.values) == ["none", "BP1", "BP2", "BP3"]
    assert np.isnan(res.impact_chain.sel(breach="none")).all()
    assert np.isfinite(res.impact_chain.sel(breach="BP3")).all()


def test_order_decision_compiled_once_per_day():
    """The day loop computes the order decision (its ``ceil``, option II's batch count) in one
    kernel: XLA's CPU backend has no multi-output fusion and, before the decision was passed to
    the next step through the loop carry, recomputed it inside each of seven state updates
    (a structural check of the compiled program, not a timing)."""
    st = isb.Settings(days=8, warmup=0)
    n = 16
    pr = isb.Params(settings=st)._replace(
        **{k: jnp.full((n,), float(getattr(isb.DEFAULT, k))) for k in isb._NUMERIC},
        **{k: jnp.zeros((n,), jnp.int32) for k in isb._CODES})
    hlo = isb._runs_jit.lower(pr, jnp.ones((st.days, 2, n))).compile().as_text()
    assert hlo.count(" ceil(") == 1


def test_vmap_layout_and_derivatives():
    """Under ``vmap`` the runs go on the trailing axis (a custom batching rule): the same
    results as unbatched calls, and reverse-mode derivatives still work, batched or not."""

    def f(h):
        return isb.simulate(isb.Params(h=h, settings=SHORT), 0).cost_chain

    hs = jnp.array([1.0, 2.5])
    one = jax.jit(jax.value_and_grad(f))
    (v0, g0), (v1, _) = one(hs[0]), one(hs[1])
    assert np.isfinite(g0) and g0 != 0
    v, g = jax.jit(jax.vmap(jax.value_and_grad(f)))(hs)
    np.testing.assert_allclose(v, [v0, v1], rtol=1e-12)
    np.testing.assert_allclose(g[0], g0, rtol=1e-12)
