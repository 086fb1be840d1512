"""``isb.simulate`` as a sweepable solve function (issue: "like every other model").

A numeric parameter x the categorical axes x replication, streamed to a Zarr store, resumed
after an interruption, and equal (to rounding) to the vectorised experiment on the same
common random numbers (replication r of every scenario uses ``fold_in(key(seed), r)``).
Short horizons keep compilation and runtime small; the simulator itself is tested in
``test_isb.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import jaxgames as jg
from jaxgames import summaries
from jaxgames.models import isb

SETTINGS = isb.Settings(days=60, warmup=10)
BASE = isb.make_params(settings=SETTINGS)
AXES = {"demand_std": [2.0, 4.0], "structure": ["S", "NT"], "policy": ["I", "III"],
        "breach": ["none", "BP2"]}
REPS = 3
SEED = 7


@pytest.fixture(scope="module")
def swept():
    return jg.sweep(isb.simulate, BASE, AXES, replications=REPS, seed=SEED, dtype="float64",
                    progress=False)


def test_dims_labels_and_provenance(swept):
    ds = swept
    assert ds["cost"].dims == ("demand_std", "structure", "policy", "breach", "replication",
                               "agent")
    assert list(ds["structure"].values) == ["S", "NT"]
    assert list(ds["agent"].values) == list(isb.AGENTS)
    assert ds.attrs["model"] == "isb"
    assert int(ds.attrs["seed"]) == SEED
    assert int(ds.attrs["replications"]) == REPS
    assert bool(ds["assumptions_hold"].all())


def test_equals_the_experiment_on_common_random_numbers(swept):
    for std in AXES["demand_std"]:
        ex = isb.experiment(reps=REPS, seed=SEED, structures=AXES["structure"],
                            policies=AXES["policy"], breaches=AXES["breach"],
                            settings=SETTINGS, demand_std=std)
        got = swept.sel(demand_std=std)
        for name in ("cost", "cost_chain", "order_rate", "holding_tier"):
            # Same draws, same arithmetic; the two programs (vmap layout vs runs-trailing layout)
            # may sum the daily averages in a different order, hence rounding, not bit equality.
            np.testing.assert_allclose(got[name].values, ex[name].values, rtol=1e-12,
                                       atol=0, err_msg=name)


def test_scenarios_share_draws_and_replications_differ(swept):
    # Replications differ; one scenario swept on its own gets the same draws (and so the same
    # numbers) as inside the full grid: draws depend on (seed, replication) only.
    c = swept["cost_chain"].sel(demand_std=2.0, structure="S", policy="I")
    assert not np.array_equal(c.isel(replication=0).values, c.isel(replication=1).values)
    one = jg.sweep(isb.simulate, BASE, {"structure": ["NT"], "policy": ["III"],
                                        "breach": ["BP2"], "demand_std": [4.0]},
                   replications=REPS, seed=SEED, dtype="float64", progress=False)
    np.testing.assert_array_equal(
        one["cost"].sel(structure="NT", policy="III", breach="BP2", demand_std=4.0).values,
        swept["cost"].sel(structure="NT", policy="III", breach="BP2", demand_std=4.0).values)


def test_store_resume_round_trip(swept, tmp_path):
    store = str(tmp_path / "isb.zarr")
    calls = []

    def stop_after_two(info):
        calls.append(info)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        jg.sweep(isb.simulate, BASE, AXES, replications=REPS, seed=SEED, dtype="float64",
                 store=store, chunk_size=8, progress=False, callback=stop_after_two)
    ds = jg.sweep(isb.simulate, BASE, AXES, replications=REPS, seed=SEED, dtype="float64",
                  store=store, chunk_size=8, progress=False, resume=True)
    xr.testing.assert_equal(ds[["cost", "cost_chain"]], swept[["cost", "cost_chain"]])
    reopened = jg.open_sweep(store)
    xr.testing.assert_equal(reopened[["cost", "cost_chain"]], swept[["cost", "cost_chain"]])
    # Labels come back as the sweep returned them (object arrays of str), and label
    # reductions work on them (Zarr's variable-length strings read as NumPy's StringDType,
    # on which xarray's idxmin raised).
    for dim in ("structure", "policy", "breach", "agent"):
        assert reopened[dim].dtype == swept[dim].dtype == object, dim
    mean = reopened["cost_chain"].mean("replication")
    xr.testing.assert_equal(mean.idxmin("policy"),
                            swept["cost_chain"].mean("replication").idxmin("policy"))


def test_paired_reconfiguration_effect_from_the_sweep(swept):
    # NT vs S on the same replications: the paired difference over `replication`.
    ds = swept[["cost_chain"]].sel(demand_std=2.0)
    d = summaries.paired_difference(ds, "structure", baseline="S")
    assert "replication" not in d.dims
    diff = (ds["cost_chain"].sel(structure="NT") - ds["cost_chain"].sel(structure="S"))
    np.testing.assert_allclose(d["cost_chain"].sel(pair="NT - S").values,
                               diff.mean("replication").values, rtol=1e-12)
