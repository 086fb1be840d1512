"""A plain per-agent Python simulator of the ``isb`` model, written from the model specification
(the module docstring of :mod:`jaxgames.models.isb`, spec §4 of the project) without the
vectorised code: agents are objects, structures are lists of upstream links, every day is a
Python loop over agents. It is the oracle of ``tests/test_isb.py`` and the baseline of
``benchmarks/bench_isb.py`` (the kind of simulator the source and its users write).

Its results agree with the vectorised simulator to rounding; every discrete decision
(``IP < ROP``, shortages, batches) comes out the same because the model decides ``IP < ROP``
beyond a relative 1e-9 (``isb.ORDER_RTOL``), as this reference does.
"""

from __future__ import annotations

import math

AGENTS = ("R1", "R2", "W1", "W2", "M1", "M2")

#: structure -> {agent: [(upstream agent, share of its orders)]}; M agents produce.
UPSTREAM = {
    "S": {"R1": [("W1", 1.0)], "R2": [("W2", 1.0)], "W1": [("M1", 1.0)], "W2": [("M2", 1.0)],
          "M1": [], "M2": []},
    "WH": {"R1": [("W1", 1.0)], "R2": [("W1", 1.0)], "W1": [("M1", 0.5), ("M2", 0.5)],
           "M1": [], "M2": []},
    "MF": {"R1": [("W1", 1.0)], "R2": [("W2", 1.0)], "W1": [("M1", 1.0)], "W2": [("M1", 1.0)],
           "M1": []},
    "NT": {"R1": [("W1", 0.5), ("W2", 0.5)], "R2": [("W1", 0.5), ("W2", 0.5)],
           "W1": [("M1", 0.5), ("M2", 0.5)], "W2": [("M1", 0.5), ("M2", 0.5)],
           "M1": [], "M2": []},
}

PROFILES = {"none": (1.0, 0.0, 0.0), "BP1": (90.0, 1.0, 45.0), "BP2": (7.0, 1.0, 3.0),
            "BP3": (90.0, 5.0, 45.0)}


class Agent:
    def __init__(self, name, links, upstream, lead_time, mu0, window):
        self.name = name
        self.links = links  # downstream agent names, in agent order (retailer: ["customer"])
        self.upstream = upstream
        self.lt = lead_time
        self.oh = mu0 * (lead_time + 1)
        self.bl = {lk: 0.0 for lk in links}
        self.oo = 0.0
        self.window = [mu0] * window
        self.held = 0.0
        self.queue = 0.0
        self.inbox = []  # (day due, link, quantity) orders in information transit
        self.arrivals = []  # (day due, quantity) shipments / finished production
        self.starts = []  # (day, quantity) production started (M)
        self.sum_hold = self.sum_back = self.sum_order = self.sum_q = 0.0
        self.n_orders = 0
        self.n_breached = 0


def waterfill(oh, owed):
    """Equal shares of ``oh``, each capped at what its link is owed, surplus to the others."""
    total = 0.0
    for v in owed.values():
        total += v
    if oh >= total:
        return dict(owed), True
    ship = {}
    remaining = oh
    open_links = list(owed)
    while open_links:
        share = remaining / len(open_links)
        capped = [lk for lk in open_links if owed[lk] <= share]
        if not capped:
            for lk in open_links:
                ship[lk] = share
            break
        for lk in capped:
            ship[lk] = owed[lk]
            remaining -= owed[lk]
            open_links.remove(lk)
    return ship, False


def simulate(structure, policy, breach, demand, *, h=1.0, b=5.0, f=1.0, s_f=10.0, z=1.65,
             demand_mean=10.0, capacity=80.0, eoq_factor=2.2361, days=None, warmup=100,
             window=10, tau_I=1, tau_T=2, tau_P=3, breach_mask=("R1", "R2"),
             batch_multiples=True, profile=None, trace=False):
    """Simulate one run on the explicit ``demand`` (``days`` rows of two retailers' demand).

    Returns ``{agent: {holding, backlog, ordering, cost, order_rate, order_qty,
    breached_days}}`` for the active agents (and the list of daily states if ``trace``).
    """
    days = len(demand) if days is None else days
    period, duration, offset = profile if profile is not None else PROFILES[breach]
    up = UPSTREAM[structure]
    names = [a for a in AGENTS if a in up]
    downstream = {a: [] for a in names}
    for a in names:
        for u, _share in up[a]:
            if a not in downstream[u]:
                downstream[u].append(a)
    n_m = sum(1 for a in names if a[0] == "M")
    # Expected daily incoming total: demand_mean per retailer, passed upstream by the shares.
    mu0 = {a: 0.0 for a in names}
    for a in names:
        if a[0] == "R":
            mu0[a] = demand_mean
    for tier in ("R", "W"):
        for a in names:
            if a[0] == tier:
                for u, share in up[a]:
                    mu0[u] += mu0[a] * share
    agents = {}
    for a in names:
        links = ["customer"] if a[0] == "R" else sorted(downstream[a])
        lt = tau_P if a[0] == "M" else tau_I + tau_T
        agents[a] = Agent(a, links, up[a], lt, mu0[a], window)
    states = []

    for t in range(days):
        snapshot = {}
        for a in names:
            ag = agents[a]
            # 1. receive
            got = 0.0
            keep = []
            for due, qty in ag.arrivals:
                if due == t:
                    got += qty
                else:
                    keep.append((due, qty))
            ag.arrivals = keep
            ag.oh += got
            ag.oo -= got
            # 2. incoming orders
            if a[0] == "R":
                o = {"customer": demand[t][int(a[1]) - 1]}
            else:
                o = {lk: 0.0 for lk in ag.links}
                keep = []
                for due, lk, qty in ag.inbox:
                    if due == t:
                        o[lk] += qty
                    else:
                        keep.append((due, lk, qty))
                ag.inbox = keep
            incoming = 0.0
            for lk in ag.links:
                incoming += o[lk]
            # 3. ship
            owed = {lk: ag.bl[lk] + o[lk] for lk in ag.links}
            ship, full = waterfill(ag.oh, owed)
            if full:
                total = 0.0
                for lk in ag.links:
                    total += owed[lk]
                ag.oh = ag.oh - total
            else:
                ag.oh = 0.0
            for lk in ag.links:
                ag.bl[lk] = owed[lk] - ship[lk]
                if lk != "customer":
                    agents[lk].arrivals.append((t + tau_T, ship[lk]))
            # 4. costs
            shortages = sum(1 for lk in ag.links if o[lk] > 0 and ship[lk] < owed[lk])
            backlog = 0.0
            for lk in ag.links:
                backlog += ag.bl[lk]
            hold_c = h * ag.oh
            back_c = b * backlog + s_f * shortages
            # 5. forecast
            ag.window = ag.window[1:] + [incoming]
            mu = sum(ag.window) / window
            sigma = math.sqrt(sum((w - mu) ** 2 for w in ag.window) / (window - 1))
            # 6. inventory position
            ip = ag.oh + ag.oo - backlog
            # 7. order
            rop = mu * (ag.lt + 1) + z * sigma * math.sqrt(ag.lt + 1)
            eoq = math.sqrt(2.0 * mu * f * (h + b) / (h * b))
            q = 0.0
            if rop - ip > 1e-9 * (1.0 + abs(rop)):  # IP < ROP beyond rounding (model docs)
                if policy == "I":
                    q = rop - ip
                elif policy == "II":
                    batch = eoq_factor * eoq
                    if batch > 0:
                        n = max(1.0, math.ceil((rop - ip) / batch)) if batch_multiples else 1.0
                        q = n * batch
                else:
                    q = (rop - ip) + eoq
            ag.oo += q
            order_c = f if q > 0 else 0.0
            # 8. send / produce
            is_breached = (a in breach_mask and t >= offset
                           and math.fmod(t - offset, period) < duration)
            if is_breached:
                ag.held += q
                release = 0.0
            else:
                release = ag.held + q
                ag.held = 0.0
            if a[0] == "M":
                ag.queue += release
                wip = 0.0
                for day, qty in ag.starts:
                    if t - tau_P < day < t:
                        wip += qty
                cap = capacity / n_m
                start = max(0.0, min(ag.queue, cap - wip))
                ag.queue -= start
                ag.starts = [(d_, q_) for d_, q_ in ag.starts if d_ > t - tau_P] + [(t, start)]
                ag.arrivals.append((t + tau_P, start))
            else:
                start = wip = 0.0
                for u, share in ag.upstream:
                    agents[u].inbox.append((t + tau_I, a, release * share))
            if t >= warmup:
                ag.sum_hold += hold_c
                ag.sum_back += back_c
                ag.sum_order += order_c
                ag.sum_q += q
                ag.n_orders += q > 0
                ag.n_breached += is_breached
            if trace:
                snapshot[a] = dict(received=got, orders=dict(o), shipped=dict(ship), on_hand=ag.oh,
                                   backlog=dict(ag.bl), on_order=ag.oo, position=ip, mu=mu,
                                   sigma=sigma, rop=rop, q=q, breached=is_breached,
                                   held=ag.held, queue=ag.queue, started=start, wip=wip,
                                   holding_cost=hold_c, backlog_cost=back_c,
                                   ordering_cost=order_c)
        if trace:
            states.append(snapshot)

    n = days - warmup
    out = {}
    for a in names:
        ag = agents[a]
        hold, back, order = ag.sum_hold / n, ag.sum_back / n, ag.sum_order / n
        out[a] = dict(holding=hold, backlog=back, ordering=order, cost=hold + back + order,
                      order_rate=ag.n_orders / n,
                      order_qty=ag.sum_q / ag.n_orders if ag.n_orders else math.nan,
                      breached_days=float(ag.n_breached))
    return (out, states) if trace else out
