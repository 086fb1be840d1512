"""Check the section-4 observations of Xu, Zhuang & Liu (2015) under the default laws.

Runs one one-way study of ``defender_attacker.compare_mechanisms`` (each of the 11 source
parameters from 0.25x to 4x its Table 2 value, 41 log-spaced steps, the others at baseline)
and writes ``figures/da_observations.md``: for every parameter, where combined protection
(cases #1/#3) is optimal and the payoff gaps between the mechanisms at 0.25x, 1x and 4x; then a
verdict on each observation. Nothing here is tuned: the default distributions of spec §2
(``L ~ U(0.6 E_L, 1.4 E_L)``, ``D ~ U(0, 2 E_D)``) are used as they are.

    PYTHONPATH=. python figures/da_observations.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from jaxgames.models import defender_attacker as da  # noqa: E402
from jaxgames.sensitivity import one_way  # noqa: E402

OUT = Path(__file__).with_name("da_observations.md")
SYMBOL = {"alpha": "α", "beta": "β", "V": "V", "v": "v", "h": "h", "gamma_G": "γ_G",
          "gamma_T": "γ_T", "m": "m", "E_X": "E[X]", "E_L": "E[L]", "E_D": "E[D]"}

# The source's claims: parameter -> the direction ("low"/"high") in which the first mechanism
# beats the second by more. Observation (Fig. 6) and points 2-4 of section 4.2.
CLAIMS = {
    "2. combined > backup when low": ("combined", "backup", {"V": "low", "h": "low",
                                                            "E_X": "low"}),
    "3. combined >> inventory": ("combined", "inventory", {
        "alpha": "low", "beta": "low", "V": "low", "gamma_G": "low", "E_X": "low",
        "E_D": "low", "v": "high", "m": "high", "gamma_T": "high", "E_L": "high",
        "h": "low and high (listed under both)"}),
    "4. backup >> inventory": ("backup", "inventory", {
        "alpha": "low", "beta": "low", "gamma_G": "low", "E_X": "low", "E_D": "low",
        "v": "high", "m": "high", "gamma_T": "high", "h": "high", "E_L": "high"}),
}


def study():
    ranges = {n: (0.25 * getattr(da.BASELINE, n), 4.0 * getattr(da.BASELINE, n), "log")
              for n in da.SOURCE_PARAMETERS}
    return one_way(da.compare_mechanisms, da.BASELINE, ranges, n=41, progress=False)


def low_study():
    """V, h, E[X] (the Fig. 6 observation) further down: 0.01x to 1x."""
    ranges = {n: (0.01 * getattr(da.BASELINE, n), getattr(da.BASELINE, n), "log")
              for n in ("V", "h", "E_X")}
    return one_way(da.compare_mechanisms, da.BASELINE, ranges, n=41, progress=False)


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def report(ds, low) -> str:
    steps = ds.sizes["step"]
    lo, mid, hi = 0, steps // 2, steps - 1
    u = {m: ds[f"u_G_{m}"].values for m in da.MECHANISMS}
    rel = ds["relative"].values
    names = list(ds["parameter"].values)
    lines = ["| parameter | combined (#1/#3) optimal at factors | comb − backup at 0.25× / 1× / 4× "
             "| comb − inv at 0.25× / 4× | backup − inv at 0.25× / 4× | min L > max D fails at |",
             "|---|---|---|---|---|---|"]
    for i, name in enumerate(names):
        case = ds["case_combined"].values[i]
        uses = np.isin(case, [1, 3])
        where = ("never" if not uses.any() else
                 f"{rel[i][uses].min():.2f}–{rel[i][uses].max():.2f}"
                 + ("" if np.all(np.diff(np.flatnonzero(uses)) == 1) else " (not contiguous)"))
        fails = ~ds["assumptions_hold"].values[i]
        bad = ("—" if not fails.any() else
               f"{rel[i][fails].min():.2f}–{rel[i][fails].max():.2f}")
        cb = u["combined"][i] - u["backup"][i]
        ci = u["combined"][i] - u["inventory"][i]
        bi = u["backup"][i] - u["inventory"][i]
        lines.append(
            f"| {SYMBOL[name]} | {where} | {_fmt(cb[lo])} / {_fmt(cb[mid])} / {_fmt(cb[hi])} "
            f"| {_fmt(ci[lo])} / {_fmt(ci[hi])} | {_fmt(bi[lo])} / {_fmt(bi[hi])} | {bad} |")
    out = ["## Section 4 of the source against the model (default laws)", "",
           f"One-way study: each parameter from 0.25× to 4× its Table 2 value ({steps} "
           "log-spaced steps), the others at baseline; all points converged: "
           f"{bool(ds['converged'].values.all())}. At the baseline the defender's payoffs are "
           + ", ".join(f"{m} {u[m][0, mid]:.4f}" for m in da.MECHANISMS)
           + f" (case #{int(ds['case_combined'].values[0, mid])} for combined).", "",
           *lines, ""]

    # Observation 1: gains from supply-chain risk management, combined >= all.
    gain = (u["combined"] - u["none"]) / np.abs(u["none"])
    nested = bool(np.all(u["combined"] >= np.maximum(u["backup"], u["inventory"])))
    out += ["**1. Risk-management tools help; combined is (weakly) best.** "
            f"Combined ≥ backup, inventory everywhere: {nested}. Its gain over no protection "
            f"ranges from {100 * gain.min():.1f}% to {100 * gain.max():.1f}% of |u_G(none)| "
            f"(median {100 * np.median(gain):.1f}%). **Agrees.**", ""]

    # Observation of Fig. 6: combined (cases 1/3) when V, h or E[X] is low.
    fig6 = []
    for name in ("V", "h", "E_X"):
        i = names.index(name)
        uses = np.isin(ds["case_combined"].values[i], [1, 3])
        at_low, at_high = uses[:mid].any(), uses[mid + 1:].any()
        fig6.append(f"{SYMBOL[name]}: {'low' if at_low else ''}"
                    f"{'/' if at_low and at_high else ''}{'high' if at_high else ''}"
                    f"{'never' if not (at_low or at_high) else ''}")
    others = [SYMBOL[n] for n in names if n not in ("V", "h", "E_X")
              and np.isin(ds["case_combined"].values[names.index(n)], [1, 3]).any()]
    below = []
    for j, name in enumerate(low["parameter"].values):
        uses = np.isin(low["case_combined"].values[j], [1, 3])
        rel_j = low["relative"].values[j]
        below.append(f"{SYMBOL[str(name)]} ≤ {rel_j[uses].max():.3f}× baseline"
                     if uses.any() else f"{SYMBOL[str(name)]}: not even at 0.01×")
    out += ["**Fig. 6 observation: combined protection (#1/#3) when V, h or E[X] is low.** "
            "Within 0.25×–4×, where combined is optimal: " + "; ".join(fig6)
            + (f"; also for {', '.join(others)}." if others else ".")
            + " Lowering each of them alone further (0.01×–1×), combined protection appears "
            "for " + "; ".join(below) + ". The direction agrees; the thresholds are far "
            "below Table 2: with h = 0.5 a unit held for the E[X] = 6 peace days costs 3, "
            "while a day of cover gains the defender far less than the r ≈ 2.6–3.4 units it "
            "consumes would cost to hold.", ""]

    for title, (a, b, claims) in CLAIMS.items():
        verdicts = []
        for name, direction in claims.items():
            i = names.index(name)
            gap = u[a][i] - u[b][i]
            got = ("low" if gap[lo] > gap[hi] + 1e-9 else "high" if gap[hi] > gap[lo] + 1e-9
                   else "flat")
            ok = got in direction.split()
            verdicts.append(f"{SYMBOL[name]} {direction}: gap {_fmt(gap[lo])} at 0.25×, "
                            f"{_fmt(gap[hi])} at 4× → larger when {got} "
                            f"({'agrees' if ok else 'disagrees'})")
        n_ok = sum("(agrees)" in v for v in verdicts)
        out += [f"**{title}** ({a} − {b}): {n_ok} of {len(verdicts)} directions agree.", ""]
        out += [f"- {v}" for v in verdicts] + [""]
    return "\n".join(out)


def main() -> int:
    text = report(study(), low_study())
    OUT.write_text(text + "\n")
    print(text)
    print(f"\nwrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
