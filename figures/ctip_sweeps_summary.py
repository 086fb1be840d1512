"""Numbers quoted in the README from the ctip sweep datasets (claims (2) to (4) of the model's
issue): reads the stores that ``jaxgames sweep`` writes for

* ``sweeps/ctip_levers.toml``      EW and profits over the subsidy ``sigma`` and sharing ``lam``
* ``sweeps/ctip_sharing.toml``     investment and protection (``z``, ``pi``) over ``lam``
* ``sweeps/ctip_moq.toml``         EW, profits and ``mu`` over the minimum order ``M``
* ``sweeps/ctip_policy_map.toml``  optimal policy (targeted and common subsidy) over ``(v_1, v_2)``

and writes ``figures/ctip_sweeps.json`` (and prints it). Usage (repository root, after the
four sweeps)::

    PYTHONPATH=. python -m jaxgames sweep sweeps/ctip_levers.toml --figures figures
    PYTHONPATH=. python -m jaxgames sweep sweeps/ctip_moq.toml --figures figures
    PYTHONPATH=. python -m jaxgames sweep sweeps/ctip_sharing.toml --figures figures
    PYTHONPATH=. python -m jaxgames sweep sweeps/ctip_policy_map.toml --figures figures
    PYTHONPATH=. python figures/ctip_sweeps_summary.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parent.parent
INFEASIBLE = 6  # jaxgames.Status.INFEASIBLE


def _open(name: str) -> xr.Dataset:
    return xr.open_zarr(ROOT / "results" / f"{name}.zarr", consolidated=False).load()


def _r(x, nd=3):
    return None if x is None or not np.isfinite(x) else round(float(x), nd)


def levers(ds: xr.Dataset) -> dict:
    ok = ds.converged.values
    ew = np.where(ok, ds.EW_moq.values, np.nan)
    pi = np.where(ok, ds.Pi_moq.sel(csc=1).values, np.nan)
    pi_sq = float(ds.Pi_sp.sel(csc=1, sigma=0.2, lam=0.5, method="nearest"))
    k = np.unravel_index(np.nanargmax(ew), ew.shape)
    feas = ok & (pi >= pi_sq)
    return {
        "points": int(ok.size), "converged": int(ok.sum()),
        "EW_moq_min": _r(np.nanmin(ew)), "EW_moq_max": _r(np.nanmax(ew)),
        "argmax_EW": {"sigma": _r(ds.sigma.values[k[0]]), "lam": _r(ds.lam.values[k[1]]),
                      "Pi_moq": _r(pi[k])},
        "Pi_sp_status_quo": _r(pi_sq),
        "Pi_moq_min": _r(np.nanmin(pi)), "Pi_moq_max": _r(np.nanmax(pi)),
        "participation_points": int(feas.sum()),
        "Pi_moq_minus_Pi_sp_status_quo_max": _r(np.nanmax(pi) - pi_sq),
        "dEW_min": _r(np.nanmin(np.where(ok, ds.dEW.values, np.nan))),
        "dEW_max": _r(np.nanmax(np.where(ok, ds.dEW.values, np.nan))),
        "EW_moq_at_lam": {_r(x, 2): _r(float(ds.EW_moq.sel(sigma=0.2, lam=x,
                                                           method="nearest")))
                          for x in (0.0, 0.5, 1.0)},
    }


def moq(ds: xr.Dataset) -> dict:
    out = {"points": int(ds.converged.size), "converged": int(ds.converged.values.sum())}
    for v in ds.v.values:
        d = ds.sel(v=v)
        ok = d.converged.values
        ew = np.where(ok, d.EW_moq.values, np.nan)
        binds = d.mu.values > 0
        k = int(np.nanargmax(ew))
        out[f"v={_r(v, 2)}"] = {
            "EW_sp": _r(float(d.EW_sp.values[0])), "Pi_sp": _r(float(d.Pi_sp.sel(csc=1)[0])),
            "M_binds_from": _r(d.M.values[binds].min()) if binds.any() else None,
            "argmax_EW_M": _r(d.M.values[k]), "EW_moq_max": _r(ew[k]),
            "EW_moq_at_M0": _r(ew[0]), "EW_moq_at_M100": _r(ew[-1]),
            "Pi_moq_at_M0": _r(float(d.Pi_moq.sel(csc=1)[0])),
            "Pi_moq_at_argmax": _r(float(d.Pi_moq.sel(csc=1)[k])),
            "Pi_moq_max": _r(np.nanmax(np.where(ok, d.Pi_moq.sel(csc=1).values, np.nan))),
            "converged": int(ok.sum()),
        }
    return out


def policy_map(ds: xr.Dataset) -> dict:
    v1, v2 = ds["v[1]"].values, ds["v[2]"].values
    var = {kind: (lambda name, kind=kind: ds[f"optimal_policy_{kind}_{name}"])
           for kind in ("targeted", "default")}
    cells = []
    for i, a in enumerate(v1):
        for j, b in enumerate(v2):
            c = {"v": [_r(a, 2), _r(b, 2)]}
            for kind, get in var.items():
                at = {"v[1]": i, "v[2]": j}
                st = int(get("status").isel(at))
                c[kind] = {"status": st,
                           "dEW": _r(float(get("dEW").isel(at))) if st == 0 else None,
                           "sigma": [_r(x) for x in get("sigma").isel(at).values],
                           "lam": _r(float(get("lam").isel(at))),
                           "M": _r(float(get("M").isel(at)))}
            cells.append(c)
    out = {"profiles": len(cells)}
    status = {kind: get("status").values for kind, get in var.items()}
    for kind, get in var.items():
        st = status[kind]
        dew = np.where(st == 0, get("dEW").values, np.nan)
        ok = st == 0
        binds = ok & (get("mu").values > 0)
        out[kind] = {"converged": int(ok.sum()), "infeasible": int((st == INFEASIBLE).sum()),
                     "other_failures": int(((st != 0) & (st != INFEASIBLE)).sum()),
                     "dEW_min": _r(np.nanmin(dew)), "dEW_max": _r(np.nanmax(dew)),
                     "lam_min": _r(get("lam").values[ok].min()),
                     "lam_max": _r(get("lam").values[ok].max()),
                     "sigma_min": _r(get("sigma").values[ok].min()),
                     "sigma_max": _r(get("sigma").values[ok].max()),
                     "M_binds_at": [[_r(v1[i], 2), _r(v2[j], 2)]
                                    for i, j in zip(*np.nonzero(binds), strict=True)],
                     "slack_max": _r(get("slack").values[ok].max())}
    both = (status["targeted"] == 0) & (status["default"] == 0)
    diff = np.where(both, var["targeted"]("EW").values - var["default"]("EW").values, np.nan)
    out["targeted_minus_common_EW"] = {"cells_both_converged": int(both.sum()),
                                       "min": _r(np.nanmin(diff)), "max": _r(np.nanmax(diff))}
    only_t = (status["targeted"] == 0) & (status["default"] == INFEASIBLE)
    out["feasible_only_with_targeting"] = [
        [_r(v1[i], 2), _r(v2[j], 2)] for i, j in zip(*np.nonzero(only_t), strict=True)]
    out["cells"] = cells
    return out


def sharing(ds: xr.Dataset) -> dict:
    """Free riding vs protection: chain 1's investment and disruption probability against
    ``lam`` (MOQ, chain 2 at v = 0.6), at the lowest, a middle and the highest ``v[1]``."""
    out = {"points": int(ds.converged.size), "converged": int(ds.converged.values.sum()),
           "lam": [_r(ds.lam.values[0], 2), _r(ds.lam.values[-1], 2)]}
    for v in (ds["v[1]"].values[0], ds["v[1]"].values[len(ds["v[1]"]) // 2],
              ds["v[1]"].values[-1]):
        d = ds.sel({"v[1]": v})
        z1, pi1 = d.z.sel(csc=1).values, d.pi.sel(csc=1).values
        z2, pi2 = d.z.sel(csc=2).values, d.pi.sel(csc=2).values
        free = d.lam.values[z1 == 0.0]
        out[f"v1={_r(v, 2)}"] = {
            "z1": [_r(z1[0]), _r(z1[-1])], "pi1": [_r(pi1[0], 4), _r(pi1[-1], 4)],
            "z2": [_r(z2[0]), _r(z2[-1])], "pi2": [_r(pi2[0], 4), _r(pi2[-1], 4)],
            "z1_zero_from_lam": _r(free.min(), 2) if free.size else None,
            "pi1_min": _r(pi1.min(), 4), "lam_at_pi1_min": _r(d.lam.values[pi1.argmin()], 2),
        }
    return out


def main() -> None:
    out = {"levers": levers(_open("ctip_levers")), "moq": moq(_open("ctip_moq")),
           "sharing": sharing(_open("ctip_sharing")),
           "policy_map": policy_map(_open("ctip_policy_map"))}
    text = json.dumps(out, indent=1)
    (ROOT / "figures" / "ctip_sweeps.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
