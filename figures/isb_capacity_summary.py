"""Numbers quoted in the README from the ``isb`` capacity study (``sweeps/isb_capacity.toml``):
per structure and policy, the capacity of the grid with the lowest mean chain cost, that cost,
the cost at the source's capacity 80 and at 100, and how much of the rise from the cheapest
capacity to 100 each tier carries (tier means, ``cost_tier``); the ranking at capacity 80.
Means over the 30 replications. Writes ``figures/isb_capacity.json`` (and prints it). Usage
(repository root)::

    PYTHONPATH=. python -m jaxgames sweep sweeps/isb_capacity.toml --figures figures --overwrite
    PYTHONPATH=. python figures/isb_capacity_summary.py
"""

from __future__ import annotations

import json
from pathlib import Path

import xarray as xr

import jaxgames

ROOT = Path(__file__).resolve().parent.parent


def summary(ds: xr.Dataset) -> dict:
    if not bool(ds["assumptions_hold"].all()):
        raise SystemExit("some runs violate the model's assumptions: see assumptions_hold")
    cost = ds["cost_chain"].mean("replication")
    tier = ds["cost_tier"].mean("replication")
    best = cost.idxmin("capacity")
    out = {"replications": int(ds.sizes["replication"]),
           "capacity_grid": [float(ds.capacity.min()), float(ds.capacity.max()),
                             int(ds.sizes["capacity"])], "cells": {}}
    for s in ds.structure.values:
        for p in ds.policy.values:
            c = cost.sel(structure=s, policy=p)
            b = float(best.sel(structure=s, policy=p))
            rise = (tier.sel(structure=s, policy=p, capacity=100.0)
                    - tier.sel(structure=s, policy=p, capacity=b))
            out["cells"][f"{s}/{p}"] = {
                "cheapest_capacity": b, "cost_at_cheapest": round(float(c.min()), 2),
                "cost_at_80": round(float(c.sel(capacity=80.0)), 2),
                "cost_at_100": round(float(c.sel(capacity=100.0)), 2),
                "rise_to_100": round(float(c.sel(capacity=100.0) - c.min()), 2),
                "rise_to_100_per_tier_mean": {str(t): round(float(v), 2) for t, v in
                                              zip(rise.tier.values, rise.values, strict=True)}}
    at80 = cost.sel(capacity=80.0)
    cheapest, dearest = at80.idxmin("policy"), at80.idxmax("structure")
    out["at_80"] = {
        "cheapest_policy_per_structure": dict(zip(map(str, cheapest.structure.values),
                                                  map(str, cheapest.values), strict=True)),
        "dearest_structure_per_policy": dict(zip(map(str, dearest.policy.values),
                                                 map(str, dearest.values), strict=True))}
    cells = out["cells"].values()
    out["range"] = {
        "cheapest_capacity": [min(v["cheapest_capacity"] for v in cells),
                              max(v["cheapest_capacity"] for v in cells)],
        "rise_to_100": [min(v["rise_to_100"] for v in cells),
                        max(v["rise_to_100"] for v in cells)],
        "largest_tier_share_of_rise": sorted({max(v["rise_to_100_per_tier_mean"],
                                                  key=v["rise_to_100_per_tier_mean"].get)
                                              for v in cells})}
    return out


def main() -> None:
    ds = jaxgames.open_sweep(ROOT / "results" / "isb_capacity.zarr").load()
    out = summary(ds)
    text = json.dumps(out, indent=1)
    (ROOT / "figures" / "isb_capacity.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
