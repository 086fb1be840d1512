"""Reproductions of the sources' printed results, as tables and figures.

Computation is done by the models (the engine); this module only lays results next to the
printed values and draws them.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from jaxgames.models import _bk_figure3 as printed
from jaxgames.models import bakshi_kleindorfer as bk


class Row(NamedTuple):
    example: int
    block: str  # "non-cooperative" or "bargaining"
    name: str
    computed: str  # formatted like the printed value
    printed: str
    value: float

    @property
    def match(self) -> bool:
        return self.computed == self.printed


def figure3_rows() -> list[Row]:
    """Solve the five Figure 3 examples with the engine and pair every number with the print.

    Requires float64 (``jax.config.update("jax_enable_x64", True)``): the table has 7
    significant digits and some entries are differences of numbers of order 1e5.
    """
    if not jax.config.jax_enable_x64:
        raise RuntimeError("figure3_rows needs float64: set jax_enable_x64 before calling")
    solve = jax.jit(bk.noncooperative_and_bargaining)
    rows = []
    for i, params in enumerate(bk.FIGURE3):
        nc, b = solve(params)
        if not (bool(nc.converged) and bool(b.converged)):
            raise RuntimeError(f"Figure 3 example {i + 1} did not converge "
                               f"(status {int(nc.status)}, {int(b.status)})")
        values = {name: float(getattr(nc, name)) for name in printed.NONCOOPERATIVE}
        for name, text in zip(printed.NONCOOPERATIVE, printed.PRINTED_NONCOOPERATIVE[i],
                              strict=True):
            rows.append(Row(i + 1, "non-cooperative", name,
                            printed.format_like(values[name], text), text, values[name]))
        bvals = {name: float(getattr(b, name)) for name in printed.BARGAINING[:7]}
        for tau in ("ss", "su", "r"):
            bvals[f"red_{tau}"] = float(getattr(b, f"surplus_{tau}") / getattr(nc, f"t_{tau}"))
        for name, text in zip(printed.BARGAINING, printed.PRINTED_BARGAINING[i], strict=True):
            rows.append(Row(i + 1, "bargaining", name,
                            printed.format_like(bvals[name], text), text, bvals[name]))
    return rows


def format_figure3(rows: list[Row]) -> str:
    """A plain-text table: computed and printed values side by side, mismatches marked."""
    lines = [f"{'ex':>2}  {'block':<15} {'output':<7} {'jaxgames':>14} {'printed':>14}  ok"]
    for r in rows:
        lines.append(f"{r.example:>2}  {r.block:<15} {r.name:<7} {r.computed:>14} "
                     f"{r.printed:>14}  {'yes' if r.match else 'NO'}")
    n_ok = sum(r.match for r in rows)
    lines.append(f"{n_ok} of {len(rows)} printed values reproduced digit for digit")
    return "\n".join(lines)


def plot_figure3(rows: list[Row]):
    """Expected costs of each player, non-cooperative vs bargaining, for the five examples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    get = {(r.example, r.block, r.name): r.value for r in rows}
    players = (("ss", "safe supplier"), ("su", "unsafe supplier"), ("r", "retailer"))
    fig, axes = plt.subplots(1, 5, figsize=(15, 4.2), sharey=False)
    for ex, ax in zip(range(1, 6), axes, strict=True):
        x = np.arange(3)
        nc = [get[(ex, "non-cooperative", f"t_{k}")] / 1e3 for k, _ in players]
        hs = [get[(ex, "bargaining", f"C_{k}")] / 1e3 for k, _ in players]
        ax.bar(x - 0.2, nc, 0.4, label="non-cooperative  $t$", color="#b0b0b0")
        ax.bar(x + 0.2, hs, 0.4, label="HSN-SCD bargaining  $C$", color="#2b6cb0")
        for j, (k, _) in enumerate(players):
            red = get[(ex, "bargaining", f"red_{k}")]
            ax.annotate(f"-{100 * red:.0f}%", (x[j] + 0.2, max(hs[j], 0)), ha="center",
                        va="bottom", fontsize=8, color="#2b6cb0")
        bk_p = bk.FIGURE3[ex - 1]
        ax.set_title(f"Example {ex}: f={bk_p.f:g}, $D_J$={bk_p.D_J:.0e}", fontsize=10)
        ax.set_xticks(x, ["safe\nsupplier", "unsafe\nsupplier", "retailer"], fontsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_ylabel("expected cost (thousand $)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=9, frameon=False)
    fig.suptitle("Bakshi & Kleindorfer (2009), Figure 3: bargaining cuts every player's cost "
                 "(labels: % reduction)", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig
