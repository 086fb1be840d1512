"""The source's experiment for ``isb`` (Durowoju et al. 2020) under the defaults, its analysis,
and a breach duration x frequency map beyond the source.

Writes (to ``figures/``):

* ``isb_costs.png``         chain cost per day with 95% confidence intervals (45 replications)
                            per structure x policy x breach;
* ``isb_reconfiguration.png`` reconfiguration effects (C_S - C_X) / C_S of the chain and the
                            tiers, hatched where not significant (paired-t, Bonferroni m = 3);
* ``isb_breach_impact.png`` breach impacts (C_BP - C_none) / C_none per structure and policy;
* ``isb_sensitivity.png``   demand std 2 -> 4, serial structure (Table 3);
* ``isb_breach_map.png``    beyond the source: breach duration 0-10 days x period 7-365 days,
                            every structure and policy, on common random numbers across the map:
                            where each reconfiguration pays and where it significantly does not;
* ``isb_tables.md`` and ``isb_table3.csv`` .. ``isb_table8.csv``: Tables 3-8;
* ``isb_findings.md``       the source's findings against these results, with the numbers.

Usage: ``PYTHONPATH=. python figures/isb_experiment.py`` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from jaxgames.models import isb  # noqa: E402

HERE = Path(__file__).resolve().parent
REPS, SEED = 45, 0
COLORS = {"S": "0.35", "WH": "tab:blue", "MF": "tab:orange", "NT": "tab:green"}
PERIODS = (7, 14, 30, 90, 182, 365)
DURATIONS = tuple(range(11))


def _ci(x: xr.DataArray, dim="replication", level=0.95):
    from scipy import stats

    n = x.sizes[dim]
    half = stats.t.ppf(0.5 + level / 2, n - 1) * x.std(dim, ddof=1) / np.sqrt(n)
    return x.mean(dim), half


def fig_costs(ds):
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    breaches = list(ds.breach.values)
    w = 0.2
    for ax, p in zip(axes, ds.policy.values, strict=True):
        for j, s in enumerate(ds.structure.values):
            m, h = _ci(ds.cost_chain.sel(policy=p, structure=s))
            x = np.arange(len(breaches)) + (j - 1.5) * w
            ax.bar(x, m, w, yerr=h, color=COLORS[s], label=s, capsize=2)
        ax.set_xticks(range(len(breaches)), breaches)
        ax.set_title(f"option {p}")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("supply-chain cost ($/day), mean ± 95% CI")
    axes[0].legend(title="structure", ncols=2)
    fig.suptitle(f"isb: chain cost per day, {REPS} replications on common random numbers")
    fig.tight_layout()
    fig.savefig(HERE / "isb_costs.png", dpi=120)
    plt.close(fig)


def _bars(ax, values, sig, labels, colors, lo=None, hi=None):
    x = np.arange(len(values))
    for i, (v, g) in enumerate(zip(values, sig, strict=True)):
        ax.bar(x[i], v, color=colors[i], hatch=None if g else "///", edgecolor="k",
               linewidth=0.5, alpha=1.0 if g else 0.45)
    if lo is not None:
        ax.errorbar(x, values, yerr=[np.asarray(values) - lo, hi - np.asarray(values)],
                    fmt="none", ecolor="k", capsize=2, lw=0.8)
    ax.set_xticks(x, labels, fontsize=7, rotation=90)
    ax.axhline(0, color="k", lw=0.6)


def fig_reconfiguration(res):
    levels = [("chain", None), ("tier", "R"), ("tier", "W"), ("tier", "M")]
    fig, axes = plt.subplots(len(levels), 3, figsize=(13, 11), sharey="row")
    for r, (level, tier) in enumerate(levels):
        for c, p in enumerate(res.policy.values):
            ax = axes[r, c]
            vals, sig, labels, colors = [], [], [], []
            for b in res.breach.values:
                for x in res.reconfiguration.values:
                    sel = dict(policy=p, breach=b, reconfiguration=x)
                    e = res[f"reconf_effect_{level}"].sel(sel)
                    g = res[f"reconf_significant_{level}"].sel(sel)
                    if tier:
                        e, g = e.sel(tier=tier), g.sel(tier=tier)
                    vals.append(100 * float(e))
                    sig.append(bool(g))
                    labels.append(f"{b}:{x}")
                    colors.append(COLORS[x])
            _bars(ax, vals, sig, labels, colors)
            if r == 0:
                ax.set_title(f"option {p}")
            if c == 0:
                ax.set_ylabel(f"{'chain' if level == 'chain' else 'tier ' + tier}: "
                              f"(C_S - C_X)/C_S (%)")
    fig.suptitle("isb: reconfiguration effect (positive: X cheaper than S); hatched: not "
                 "significant (paired-t, Bonferroni m = 3, 95%). Tier W of WH and tier M of MF "
                 "are one merged agent serving two streams", fontsize=9)
    fig.tight_layout()
    fig.savefig(HERE / "isb_reconfiguration.png", dpi=110)
    plt.close(fig)


def fig_impact(res):
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    for ax, p in zip(axes, res.policy.values, strict=True):
        vals, sig, labels, colors, lo, hi = [], [], [], [], [], []
        for b in [b for b in res.breach.values if b != "none"]:
            for s in res.impact_chain.structure.values:
                sel = dict(policy=p, breach=b, structure=s)
                base = float(res.impact_diff_chain.sel(sel) / res.impact_chain.sel(sel))
                vals.append(100 * float(res.impact_chain.sel(sel)))
                sig.append(bool(res.impact_significant_chain.sel(sel)))
                lo.append(100 * float(res.impact_lo_chain.sel(sel)) / base)
                hi.append(100 * float(res.impact_hi_chain.sel(sel)) / base)
                labels.append(f"{b}:{s}")
                colors.append(COLORS[s])
        _bars(ax, vals, sig, labels, colors, np.array(lo), np.array(hi))
        ax.set_title(f"option {p}")
    axes[0].set_ylabel("breach impact on chain cost (C_BP - C_none)/C_none (%)")
    fig.suptitle("isb: breach impact with Bonferroni intervals (m = 3, scaled by C_none); "
                 "hatched: not significant", fontsize=9)
    fig.tight_layout()
    fig.savefig(HERE / "isb_breach_impact.png", dpi=120)
    plt.close(fig)


def fig_sensitivity(res):
    fig, ax = plt.subplots(figsize=(10, 4))
    vals, sig, labels, colors = [], [], [], []
    tier_colors = {"R": "tab:purple", "W": "tab:cyan", "M": "tab:brown", "chain": "0.3"}
    for p in res.policy.values:
        for b in res.breach.values:
            sel = dict(policy=p, breach=b)
            for t in ("R", "W", "M", "chain"):
                if t == "chain":
                    e, g = res.sensitivity_effect_chain.sel(sel), \
                        res.sensitivity_significant_chain.sel(sel)
                else:
                    e = res.sensitivity_effect_tier.sel(sel).sel(tier=t)
                    g = res.sensitivity_significant_tier.sel(sel).sel(tier=t)
                vals.append(100 * float(e))
                sig.append(bool(g))
                labels.append(f"{p}:{b}:{t}")
                colors.append(tier_colors[t])
    _bars(ax, vals, sig, labels, colors)
    ax.set_ylabel("(C_std2 - C_std4)/C_std2 (%)")
    ax.set_title("isb: demand std 2 -> 4, serial structure (negative: higher cost at std 4); "
                 "hatched: not significant (Bonferroni m = 12)", fontsize=9)
    fig.tight_layout()
    fig.savefig(HERE / "isb_sensitivity.png", dpi=120)
    plt.close(fig)


def breach_map(reps=REPS, seed=SEED):
    """Chain cost over (structure, policy, period, duration, replication); the breach starts at
    offset floor(period / 2) (BP1 and BP2 of Table 1 are the cells (90, 1) and (7, 1)). Cells
    with duration >= period (a permanent breach: orders never released) are left out."""
    st = isb.Settings()
    keys = isb.replication_keys(seed, reps)
    demand = jax.vmap(isb.demand_draws, (0, None, None, None))(
        keys, st.days, jnp.asarray(10.0), jnp.asarray(2.0))
    cells = [(s, p, per, dur) for s in range(4) for p in range(3) for per in PERIODS
             for dur in DURATIONS if dur < per]
    cols = np.array(cells, float)
    n = len(cells)
    params = isb.DEFAULT._replace(
        structure=np.repeat(cols[:, 0].astype(int), reps),
        policy=np.repeat(cols[:, 1].astype(int), reps),
        breach=isb.code("breach", "custom"), period=np.repeat(cols[:, 2], reps),
        duration=np.repeat(cols[:, 3], reps), offset=np.repeat(np.floor(cols[:, 2] / 2), reps))
    res = isb.simulate_runs(params, jnp.tile(demand, (n, 1, 1)))
    cost = np.asarray(res.cost_chain).reshape(n, reps)
    full = np.full((4, 3, len(PERIODS), len(DURATIONS), reps), np.nan)
    for k, (s, p, per, dur) in enumerate(cells):
        full[s, p, PERIODS.index(per), dur] = cost[k]
    return xr.DataArray(full, dims=("structure", "policy", "period", "duration", "replication"),
                        coords={"structure": list(isb.STRUCTURES), "policy": list(isb.POLICIES),
                                "period": list(PERIODS), "duration": list(DURATIONS),
                                "replication": np.arange(reps)}, name="cost_chain"), n * reps


def fig_breach_map(cost):
    fig, axes = plt.subplots(3, 3, figsize=(13, 11), sharex=True, sharey=True)
    others = ["WH", "MF", "NT"]
    base = cost.sel(structure="S")
    for r, p in enumerate(cost.policy.values):
        for c, x in enumerate(others):
            ax = axes[r, c]
            other = cost.sel(structure=x, policy=p)
            b = base.sel(policy=p)
            _, lo, hi, sig = isb.paired_t(b.values, other.values, axis=-1, m=3)
            eff = 100 * (b.mean("replication") - other.mean("replication")) / b.mean(
                "replication")
            im = ax.imshow(eff.values, origin="lower", cmap="RdBu", vmin=-15, vmax=15,
                           aspect="auto")
            for i in range(len(PERIODS)):
                for j in range(len(DURATIONS)):
                    v = float(eff.values[i, j])
                    if not np.isfinite(v):
                        ax.text(j, i, "·", ha="center", va="center", color="0.6")
                        continue
                    mark = "+" if sig[i, j] and v > 0 else "×" if sig[i, j] else ""
                    ax.text(j, i, f"{v:.0f}{mark}", ha="center", va="center", fontsize=6.5)
            ax.set_xticks(range(len(DURATIONS)), DURATIONS)
            ax.set_yticks(range(len(PERIODS)), PERIODS)
            if r == 0:
                ax.set_title(f"{x} vs S")
            if c == 0:
                ax.set_ylabel(f"option {p}\nperiod between breaches (days)")
            if r == 2:
                ax.set_xlabel("breach duration (days)")
    fig.colorbar(im, ax=axes, shrink=0.6, label="(C_S - C_X)/C_S of chain cost (%)")
    fig.suptitle("isb beyond the source: reconfiguration effect over breach duration x period "
                 "(retailers breached; offset = period/2; '·': duration >= period, left out)\n"
                 "'+': X significantly cheaper, '×': significantly dearer, no mark: not "
                 "significant (paired-t, Bonferroni m = 3 per cell, 45 common-random-number "
                 "replications)", fontsize=9)
    fig.savefig(HERE / "isb_breach_map.png", dpi=110)
    plt.close(fig)


def main():
    t0 = time.perf_counter()
    ds = isb.experiment(reps=REPS, seed=SEED)
    high = isb.experiment(reps=REPS, seed=SEED, structures=("S",), demand_std=4.0)
    t_exp = time.perf_counter() - t0
    res, tables = isb.analyse(ds, high)
    md = [f"# isb: Tables 3-8 under the defaults ({REPS} replications, seed {SEED})", ""]
    for name, tab in tables.items():
        md += [tab.markdown, ""]
        (HERE / f"isb_{name}.csv").write_text(tab.csv)
    (HERE / "isb_tables.md").write_text("\n".join(md))
    fig_costs(ds)
    fig_reconfiguration(res)
    fig_impact(res)
    fig_sensitivity(res)
    t1 = time.perf_counter()
    cost, n_runs = breach_map()
    t_map = time.perf_counter() - t1
    fig_breach_map(cost)
    print(f"experiment: {ds.sizes['structure'] * ds.sizes['policy'] * ds.sizes['breach'] * REPS}"
          f" + {3 * 4 * REPS} runs in {t_exp:.1f} s; breach map: {n_runs} runs in {t_map:.1f} s "
          f"(compilation included)")
    findings(ds, high, res, cost)
    return ds, high, res, cost


def findings(ds, high, res, cost):
    """The source's findings (spec §4) against these results, written to isb_findings.md."""
    lines = ["# isb: the source's findings under the defaults", ""]
    pc = lambda v: f"{100 * float(v):+.2f}%"  # noqa: E731
    c = ds.cost_chain.mean("replication")
    lines.append("Chain cost per day (mean of 45 replications):")
    lines.append("")
    lines.append("| policy | breach | S | WH | MF | NT |")
    lines.append("|---|---|---|---|---|---|")
    for p in ds.policy.values:
        for b in ds.breach.values:
            lines.append(f"| {p} | {b} | " + " | ".join(
                f"{float(c.sel(policy=p, breach=b, structure=s)):.2f}"
                for s in ds.structure.values) + " |")
    lines.append("")
    lines.append("Reconfiguration effects on chain cost, (C_S - C_X)/C_S ('*' not significant):")
    lines.append("")
    lines.append("| policy | breach | WH | MF | NT |")
    lines.append("|---|---|---|---|---|")
    for p in res.policy.values:
        for b in res.breach.values:
            cells = []
            for x in res.reconfiguration.values:
                sel = dict(policy=p, breach=b, reconfiguration=x)
                cells.append(pc(res.reconf_effect_chain.sel(sel))
                             + ("" if bool(res.reconf_significant_chain.sel(sel)) else "*"))
            lines.append(f"| {p} | {b} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Breach impacts on chain cost, (C_BP - C_none)/C_none, mean over structures "
                 "(range):")
    lines.append("")
    for p in res.policy.values:
        parts = []
        for b in [b for b in res.breach.values if b != "none"]:
            v = res.impact_chain.sel(policy=p, breach=b)
            parts.append(f"{b} {pc(v.mean())} ({pc(v.min())} .. {pc(v.max())})")
        lines.append(f"- option {p}: " + "; ".join(parts))
    lines.append("")
    s = res.sensitivity_effect_chain
    g = res.sensitivity_significant_chain
    lines.append(f"Demand std 2 -> 4 (S): chain effect from {pc(s.min())} to {pc(s.max())}; "
                 f"{int((s < 0).sum())} of {s.size} scenarios costlier, {int(g.sum())} "
                 f"significant.")
    (HERE / "isb_findings.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main() and 0)
