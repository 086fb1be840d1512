"""Figures and numbers for the abstract's claims under the ctip reconstruction (defaults of
the specification §3, N = 2, float64). Standalone: it vmaps the model directly.

* ``ctip_dEW_risk.png``      EW_moq - EW_sp against the vulnerability v (both CSCs), for
                             delta = 0.3, 0.5, 0.8 (claim 1: MOQ better, especially at high risk?)
* ``ctip_investment_lam.png`` z_i against the sharing level lam, SP and MOQ (free riding vs
                             protection)

Writes the PNGs and ``ctip_claims.json`` next to this file. The other claims have sweep files:
EW and profits over the levers (``sweeps/ctip_levers.toml``, ``sweeps/ctip_moq.toml``) and the
map of optimal policies over risk profiles (``sweeps/ctip_policy_map.toml``); their quoted
numbers come from ``figures/ctip_sweeps_summary.py``. Usage (repository root)::

    PYTHONPATH=. python figures/ctip_claims.py
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from jaxgames.models import ctip  # noqa: E402

HERE = Path(__file__).resolve().parent
D = ctip.DEFAULT


def stack(pts):
    return ctip.Params(*[np.stack([np.broadcast_to(np.asarray(getattr(p, f), float),
                                                   np.shape(getattr(D, f))) for p in pts])
                         for f in ctip.Params._fields])


def main() -> None:
    out = {}
    cmp = jax.jit(jax.vmap(ctip.compare))
    vs = np.linspace(0.05, 0.9, 18)
    deltas = (0.3, 0.5, 0.8)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    out["dEW_risk"] = {}
    for d in deltas:
        c = cmp(stack([D._replace(v=np.array([v, v]), delta=np.array([d, d])) for v in vs]))
        ok = np.asarray(c.converged)
        dew = np.where(ok, np.asarray(c.dEW), np.nan)
        ax.plot(vs, dew, marker="o", ms=3, label=f"δ = {d}")
        out["dEW_risk"][str(d)] = {"v": vs.tolist(), "dEW": dew.tolist(),
                                   "slack": np.asarray(c.slack)[:, 0].tolist(),
                                   "z_sp": np.asarray(c.z_sp)[:, 0].tolist(),
                                   "z_moq": np.asarray(c.z_moq)[:, 0].tolist(),
                                   "converged": ok.tolist()}
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("vulnerability v (both CSCs)")
    ax.set_ylabel("EW_moq − EW_sp")
    ax.set_title("Welfare gain of MOQ over SP (M = 56, σ = 0.2, λ = 0.5)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "ctip_dEW_risk.png", dpi=120)
    plt.close(fig)

    lams = np.linspace(0.0, 1.0, 21)
    c = cmp(stack([D._replace(lam=x) for x in lams]))
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(lams, np.asarray(c.z_sp)[:, 0], label="z_i, SP")
    ax.plot(lams, np.asarray(c.z_moq)[:, 0], label="z_i, MOQ")
    ax.set_xlabel("intelligence sharing λ")
    ax.set_ylabel("security investment per CSC")
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "ctip_investment_lam.png", dpi=120)
    plt.close(fig)
    out["investment_lam"] = {"lam": lams.tolist(), "z_sp": np.asarray(c.z_sp)[:, 0].tolist(),
                             "z_moq": np.asarray(c.z_moq)[:, 0].tolist(),
                             "converged": np.asarray(c.converged).tolist()}

    (HERE / "ctip_claims.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
