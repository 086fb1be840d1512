"""The model contract (``jaxgames._contract``) and the sweep features it enables: outputs with
their own dims, vector and categorical parameters, replications on common random numbers.

Most tests use ``tests/_toy_model.py``, a closed-form model that declares every optional part
of the contract, so that numbers can be checked exactly.
"""

from __future__ import annotations

import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import jaxgames as jg
from jaxgames import _contract, _sweep
from jaxgames.models import REGISTRY, get_model
from jaxgames.models import bakshi_kleindorfer as bk

sys.path.insert(0, os.path.dirname(__file__))
import _toy_model as toy  # noqa: E402

V, C = toy.DEFAULT.v, toy.DEFAULT.c


def _stable(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.load().copy()
    for k in _sweep.VOLATILE_ATTRS:
        ds.attrs.pop(k, None)
    return ds


# ----------------------------------------------------------------------------- the contract


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registered_model_meets_the_contract(name):
    """Every registered model declares the contract, and every solve function resolves
    against it, with output names from its annotation, units and dims."""
    module = get_model(name)
    spec = _contract.check_model(module)
    assert spec.name == module.MODEL == name
    point = spec.resolve_point(spec.default)  # the default point is inside the domain
    assert set(point.values) | set(point.settings) == set(spec.params_type._fields)
    for fname in spec.solve_functions:
        s = jg.solve_spec(getattr(module, fname))
        assert s.model is spec
        assert s.outputs, fname
        assert s.stochastic == (fname in spec.stochastic)
        assert set(s.differentiable()) <= set(s.outputs)
        assert not any(s.is_diagnostic(o) for o in s.differentiable())
        for o in s.outputs:
            assert all(d in spec.output_dims.get(o, ()) for d in s.output_dims(o))
        base = s.base_point()
        assert base is not None
    for p, labels in spec.categories.items():
        assert all(spec.label(p, spec.code(p, lab)) == lab for lab in labels)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registered_solve_function_traces_to_its_declared_outputs(name):
    """Each solve function, traced at the model's base point (nothing is compiled), returns
    the fields its annotation names, with the trailing dims OUTPUT_DIMS declares and the
    diagnostics as data."""
    module = get_model(name)
    spec = jg.model_spec(module)
    # tracing big solvers costs seconds each (ctip's policy optimiser tens of seconds): the
    # first function and one function per result type with declared trailing dims (functions
    # returning the same NamedTuple share its outputs and dims; the sweeps of every shipped
    # study run them all in other tests)
    by_outputs = {}
    for f in spec.solve_functions:
        outputs = jg.solve_spec(getattr(module, f)).outputs
        if any(o in spec.output_dims for o in outputs):
            by_outputs.setdefault(outputs, f)
    for fname in dict.fromkeys([spec.solve_functions[0], *by_outputs.values()]):
        s = jg.solve_spec(getattr(module, fname))
        base = s.base_point()
        point = spec.resolve_point(base)
        first = next(k for k in point.real if k not in spec.param_dims)
        study = _sweep._find_outputs(_sweep._resolve(
            s.function, base, {first: [float(point.values[first])]}, (), None, False,
            None, 0, None))
        names = [v.name for v in study.variables]
        assert names == list(s.outputs), fname
        for v in study.variables:
            assert v.dims == s.output_dims(v.name), (fname, v.name)
        if "converged" in names:
            assert dict((v.name, v.dtype) for v in study.variables)["converged"] == "bool"


def test_partial_keeps_its_model():
    """functools.partial(bk.noncooperative, solver=...) is still bakshi_kleindorfer: name,
    units, domain validation, provenance with the bound setting."""
    solver = bk.SOLVER.__class__(max_steps=30)
    fn = functools.partial(bk.noncooperative, solver=solver)
    spec = jg.solve_spec(fn)
    assert spec.model.name == "bakshi_kleindorfer"
    assert spec.name.startswith("jaxgames.models.bakshi_kleindorfer.noncooperative(solver=")
    assert spec.outputs == bk.Noncooperative._fields
    with pytest.raises(ValueError, match=r"value 1.5 is outside the allowed range \[0, 1\]"):
        jg.sweep(fn, bk.DEFAULT, {"f": [0.5, 1.5]}, progress=False)
    ds = jg.sweep(fn, bk.DEFAULT, {"f": [0.5]}, progress=False)
    assert ds.attrs["model"] == "bakshi_kleindorfer"
    assert ds["y_r"].attrs["units"] == "$"
    assert "max_steps=30" in ds.attrs["solver"]
    with pytest.raises(TypeError, match="positional"):
        jg.solve_spec(functools.partial(bk.noncooperative, bk.DEFAULT))


def test_combined_parts_resolve_to_one_model():
    spec = jg.solve_spec(jg.combine({"nc": bk.noncooperative, "fb": bk.first_best}))
    assert spec.model.name == "bakshi_kleindorfer" and spec.combined
    assert "nc_y_r" in spec.outputs and "converged" in spec.outputs
    assert spec.output_units("fb_W") == "$" and spec.field("fb_W") == "W"
    assert spec.is_diagnostic("nc_status")
    with pytest.raises(ValueError, match="different models"):
        jg.solve_spec(jg.combine({"a": bk.noncooperative, "b": toy.equilibrium}))


# ----------------------------------------------------------------------------- outputs with dims


@pytest.fixture(scope="module")
def grid():
    """Vector parameter swept whole and by element, a categorical axis, derivatives wrt the
    vector, one element and a scalar."""
    toy.TRACES["equilibrium"] = 0
    ds = jg.sweep(toy.equilibrium, toy.DEFAULT,
                  {"v": [1.0, 2.0], "v[2]": [5.0, 6.0], "regime": ["A", "B", "C"]},
                  derivatives=["q", "Q"], wrt=["v", "v[1]", "c"], elasticities=True,
                  progress=False)
    return ds, toy.TRACES["equilibrium"]


def _expected_q(v_all, v2, regime):
    v = np.array([v_all, v2, v_all])
    return toy.GAIN[toy.CATEGORIES["regime"].index(regime)] * v / C


def test_vector_and_element_axes_and_trailing_dims(grid):
    ds, _ = grid
    assert ds["q"].dims == ("v", "v[2]", "regime", "csc")
    assert ds["Q"].dims == ("v", "v[2]", "regime")
    np.testing.assert_array_equal(ds["csc"].values, [1, 2, 3])
    assert ds["v[2]"].attrs["element_of"] == "v"
    for v_all in (1.0, 2.0):
        for v2 in (5.0, 6.0):
            for r in ("A", "B", "C"):
                q = ds["q"].sel({"v": v_all, "v[2]": v2, "regime": r}).values
                np.testing.assert_allclose(q, _expected_q(v_all, v2, r), rtol=1e-15)
    # the equilibrium property: every player's first-order condition holds
    np.testing.assert_array_less(ds["residual"].values, 1e-12)


def test_categorical_labels_are_string_coords_and_one_compilation(grid):
    ds, traces = grid
    assert ds["regime"].values.tolist() == ["A", "B", "C"]
    # at most one trace to find the outputs and one for the compiled batch, for three
    # labels: the labels are traced integer codes, not compiled in
    assert 1 <= traces <= 2
    assert '"regime": "A"' in ds.attrs["base_params"]
    assert '"labels": ["A", "B", "C"]' in ds.attrs["axes"]


def test_derivatives_wrt_vector_element_and_scalar(grid):
    ds, _ = grid
    g = np.array(toy.GAIN)[None, None, :]
    # dq/dv: (…, csc, csc_wrt) = diag(g / c); dq/dv[1] = e_1 g / c; dq/dc = -q / c
    assert ds["dq_dv"].dims == ("v", "v[2]", "regime", "csc", "csc_wrt")
    def full(x, like):
        return np.broadcast_to(x, ds[like].shape)

    eye = np.eye(3)[None, None, None]
    np.testing.assert_allclose(ds["dq_dv"].values, full(eye * (g / C)[..., None, None], "dq_dv"),
                               rtol=1e-15)
    np.testing.assert_allclose(ds["dq_dv[1]"].values,
                               full(eye[..., 0] * (g / C)[..., None], "dq_dv[1]"), rtol=1e-15)
    np.testing.assert_allclose(ds["dq_dc"].values, -ds["q"].values / C, rtol=1e-14)
    assert ds["dQ_dv"].dims == ("v", "v[2]", "regime", "csc")
    np.testing.assert_allclose(ds["dQ_dv[1]"].values, full(g / C, "dQ_dv[1]"), rtol=1e-15)
    assert ds["dQ_dv"].attrs["units"] == "(unit)/($/unit)"
    # elasticity of q_i wrt its own v_i is 1, wrt the others 0; wrt c is -1
    el = ds["elasticity_q_v"]
    np.testing.assert_allclose(el.values, np.broadcast_to(np.eye(3), el.shape), atol=1e-15)
    np.testing.assert_allclose(ds["elasticity_Q_c"].values, -1.0, rtol=1e-14)


def test_derivatives_match_finite_differences():
    base = toy.DEFAULT._replace(regime=2)
    ds = jg.sweep(toy.equilibrium, base, {"c": [1.5]}, derivatives=["Q"], wrt=["v[3]"],
                  progress=False)
    h = 1e-6
    up = toy.equilibrium(base._replace(c=1.5, v=V + np.array([0, 0, h]))).Q
    dn = toy.equilibrium(base._replace(c=1.5, v=V - np.array([0, 0, h]))).Q
    np.testing.assert_allclose(ds["dQ_dv[3]"].values, (up - dn) / (2 * h), rtol=1e-8)


@pytest.mark.parametrize(("axes", "match"), [
    ({"regime": ["A", "Z"]}, r"axes\['regime'\]: unknown label 'Z' of parameter regime; "
                             r"the labels are \['A', 'B', 'C'\]"),
    ({"v[4]": [1.0]}, r"axes\['v\[4\]'\]: no element '4' of dim 'csc'; the coords are "
                      r"\['1', '2', '3'\]"),
    ({"c[1]": [1.0]}, r"parameter c is a scalar"),
    ({"v[1]": [-1.0]}, r"axes\['v\[1\]'\]: value -1.0 is outside the allowed range "
                       r"\(0, inf\) of parameter v"),
    ({"w": [1.0]}, r"unknown parameter\(s\) \['w'\]"),
])
def test_bad_axes_name_the_key_and_allowed_values(monkeypatch, axes, match):
    monkeypatch.setattr(_sweep, "_compiled", lambda *a: pytest.fail("compiled"))
    with pytest.raises(ValueError, match=match):
        jg.sweep(toy.equilibrium, toy.DEFAULT, axes, progress=False)


def test_bad_base_points_and_options(monkeypatch):
    monkeypatch.setattr(_sweep, "_compiled", lambda *a: pytest.fail("compiled"))
    with pytest.raises(ValueError, match=r"base_params\['regime'\].*\['A', 'B', 'C'\]"):
        jg.sweep(toy.equilibrium, toy.DEFAULT._replace(regime=7), {"c": [1.0]}, progress=False)
    with pytest.raises(ValueError, match=r"not a label of parameter regime"):
        jg.sweep(toy.equilibrium, toy.DEFAULT._replace(regime="Z"), {"c": [1.0]},
                 progress=False)
    with pytest.raises(ValueError, match=r"base_params\['v'\] must be a non-empty vector"):
        jg.sweep(toy.equilibrium, toy.DEFAULT._replace(v=1.0), {"c": [1.0]}, progress=False)
    with pytest.raises(ValueError, match=r"wrt: unknown parameter\(s\) \['regime'\]"):
        jg.sweep(toy.equilibrium, toy.DEFAULT, {"c": [1.0]}, derivatives=["Q"],
                 wrt=["regime"], progress=False)
    with pytest.raises(ValueError, match="replications: .* is not stochastic"):
        jg.sweep(toy.equilibrium, toy.DEFAULT, {"c": [1.0]}, replications=2, progress=False)
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        jg.sweep(toy.simulate, toy.DEFAULT, {"c": [1.0]}, seed=-1, progress=False)


def test_undeclared_nonscalar_output_is_an_error():
    with pytest.raises(ValueError, match="output x has shape \\(2,\\).*OUTPUT_DIMS"):
        jg.sweep(toy.undeclared, toy.DEFAULT, {"c": [1.0]}, progress=False)


def test_label_as_base_value_equals_code():
    a = jg.sweep(toy.equilibrium, toy.DEFAULT._replace(regime="C"), {"c": [1.0]},
                 progress=False)
    b = jg.sweep(toy.equilibrium, toy.DEFAULT._replace(regime=2), {"c": [1.0]},
                 progress=False)
    xr.testing.assert_identical(_stable(a), _stable(b))


# ----------------------------------------------------------------------------- stores


@pytest.mark.parametrize("suffix", [".zarr", ".nc"])
def test_store_round_trip_with_dims_and_labels(grid, tmp_path, suffix):
    ds, _ = grid
    path = tmp_path / f"g{suffix}"
    if suffix == ".zarr":
        ds.to_zarr(path, consolidated=False)
        back = xr.open_zarr(path, consolidated=False)
    else:
        ds.to_netcdf(path, engine="h5netcdf")
        back = xr.open_dataset(path, engine="h5netcdf")
    xr.testing.assert_identical(back.load(), ds)


def test_streamed_store_and_resume_with_dims(grid, tmp_path):
    ds, _ = grid
    store = tmp_path / "s.zarr"
    axes = {"v": [1.0, 2.0], "v[2]": [5.0, 6.0], "regime": ["A", "B", "C"]}
    kw = dict(derivatives=["q", "Q"], wrt=["v", "v[1]", "c"], elasticities=True,
              progress=False)
    full = jg.sweep(toy.equilibrium, toy.DEFAULT, axes, chunk_size=3, store=store, **kw)
    xr.testing.assert_equal(full.load(), ds)  # other chunks: same numbers
    expected = _stable(full)
    _sweep._marker(os.fspath(store), 1).unlink()
    again = jg.sweep(toy.equilibrium, toy.DEFAULT, axes, chunk_size=3, store=store,
                     resume=True, **kw)
    xr.testing.assert_identical(_stable(again), expected)


# ----------------------------------------------------------------------------- replications


@pytest.fixture(scope="module")
def replicated():
    return jg.sweep(toy.simulate, toy.DEFAULT, {"regime": ["A", "B"], "noise": [0.0, 0.2]},
                    replications=5, seed=11, progress=False)


def test_replications_use_common_random_numbers(replicated):
    ds = replicated
    assert ds["cost"].dims == ("regime", "noise", "replication", "agent")
    assert ds["agent"].values.tolist() == ["R1", "R2", "W1"]
    assert ds.attrs["seed"] == 11 and ds.attrs["replications"] == 5
    # scenarios that differ only in a label (or in a real parameter) see the same draws
    z = ds["z"].values
    for idx in np.ndindex(2, 2):
        np.testing.assert_array_equal(z[idx], z[0, 0])
    # ... and those draws are fold_in(key(seed), replication)
    for r in range(5):
        key = jax.random.fold_in(jax.random.key(11), r)
        np.testing.assert_array_equal(z[0, 0, r], jax.random.normal(key, (3,), jnp.float64))
    g = np.array(toy.GAIN[:2])[:, None, None, None]
    noise = np.array([0.0, 0.2])[None, :, None, None]
    np.testing.assert_allclose(ds["cost"].values, C * g * (1 + noise * z), rtol=1e-15)


def test_seed_reproduces_and_chunking_and_resume_change_nothing(replicated, tmp_path):
    axes = {"regime": ["A", "B"], "noise": [0.0, 0.2]}
    again = jg.sweep(toy.simulate, toy.DEFAULT, axes, replications=5, seed=11, chunk_size=3,
                     progress=False)
    for v in replicated.data_vars:  # bit for bit
        np.testing.assert_array_equal(again[v].values, replicated[v].values)
    other = jg.sweep(toy.simulate, toy.DEFAULT, axes, replications=5, seed=12, progress=False)
    assert not np.array_equal(other["z"].values, replicated["z"].values)
    store = tmp_path / "r.zarr"
    jg.sweep(toy.simulate, toy.DEFAULT, axes, replications=5, seed=11, chunk_size=4,
             store=store, progress=False)
    _sweep._marker(os.fspath(store), 2).unlink()
    with pytest.raises(ValueError, match="different sweep"):
        jg.sweep(toy.simulate, toy.DEFAULT, axes, replications=5, seed=12, chunk_size=4,
                 store=store, resume=True, progress=False)
    resumed = jg.sweep(toy.simulate, toy.DEFAULT, axes, replications=5, seed=11, chunk_size=4,
                       store=store, resume=True, progress=False)
    xr.testing.assert_equal(resumed.load(), replicated)


# ----------------------------------------------------------------------------- summaries


def _synthetic(n=12, seed=3):
    rng = np.random.default_rng(seed)
    common = rng.normal(size=(n, 2))  # shared by every policy: common random numbers
    y = np.stack([common * s + m + 0.3 * rng.normal(size=(n, 2))
                  for m, s in ((1.0, 1.0), (1.2, 1.1), (0.7, 0.9))])  # (policy, rep, agent)
    return xr.Dataset(
        {"cost": (("policy", "replication", "agent"), y, {"units": "$"}),
         "ok": (("policy", "replication"), y[..., 0] > 1.0),
         "label": (("policy",), np.array(["x", "y", "z"], dtype=object))},
        coords={"policy": np.array(["I", "II", "III"], dtype=object),
                "replication": np.arange(n), "agent": np.array(["R1", "W1"], dtype=object)},
        attrs={"seed": 3})


def test_mean_se_and_confidence_interval_match_scipy():
    ds = _synthetic()
    y = ds["cost"].values
    m, se = jg.summaries.mean(ds), jg.summaries.standard_error(ds)
    assert "label" not in m and m["cost"].dims == ("policy", "agent")
    np.testing.assert_allclose(m["cost"].values, y.mean(axis=1), rtol=1e-14)
    np.testing.assert_allclose(se["cost"].values, scipy_stats().sem(y, axis=1), rtol=1e-12)
    np.testing.assert_allclose(m["ok"].values, ds["ok"].values.mean(axis=1))  # a proportion
    ci = jg.summaries.confidence_interval(ds, confidence=0.9)
    lo, hi = scipy_stats().t.interval(0.9, y.shape[1] - 1, loc=y.mean(axis=1),
                                      scale=scipy_stats().sem(y, axis=1))
    np.testing.assert_allclose(ci["cost"].sel(bound="lower").values, lo, rtol=1e-12)
    np.testing.assert_allclose(ci["cost"].sel(bound="upper").values, hi, rtol=1e-12)
    assert ci.attrs["seed"] == 3 and ci["cost"].attrs["units"] == "$"


def test_paired_differences_match_scipy_with_bonferroni():
    st = scipy_stats()
    ds = _synthetic()
    out = jg.summaries.paired_difference(ds, "policy", baseline="I", confidence=0.95)
    assert out["pair"].values.tolist() == ["II - I", "III - I"]
    family = 2 * 2  # two pairs x two agents
    assert out.attrs["family"] == family
    y = ds["cost"].values
    for k, b in enumerate((1, 2)):
        d = y[b] - y[0]
        res = st.ttest_rel(y[b], y[0], axis=0)
        np.testing.assert_allclose(out["cost_t"].values[k], res.statistic, rtol=1e-12)
        np.testing.assert_allclose(out["cost_p"].values[k], res.pvalue, rtol=1e-10)
        np.testing.assert_allclose(out["cost_p_adjusted"].values[k],
                                   np.minimum(1, family * res.pvalue), rtol=1e-10)
        lo, hi = st.t.interval(1 - 0.05 / family, len(d) - 1, loc=d.mean(axis=0),
                               scale=st.sem(d, axis=0))
        np.testing.assert_allclose(out["cost_lower"].values[k], lo, rtol=1e-12)
        np.testing.assert_allclose(out["cost_upper"].values[k], hi, rtol=1e-12)
    wider = jg.summaries.paired_difference(ds, "policy", pairs=[("I", "II")], family=10)
    assert wider.attrs["family"] == 10
    assert (wider["cost_upper"] - wider["cost_lower"]).values.min() > (
        out["cost_upper"] - out["cost_lower"]).sel(pair="II - I").values.max() * 0.999
    with pytest.raises(ValueError, match=r"family must be an integer >= 2"):
        jg.summaries.paired_difference(ds, "policy", pairs=[("I", "II")], family=1)
    with pytest.raises(ValueError, match=r"baseline: 'IV' is not a coord of policy; the "
                                         r"coords are \['I', 'II', 'III'\]"):
        jg.summaries.paired_difference(ds, "policy", baseline="IV")
    with pytest.raises(ValueError, match="no dim 'replication'"):
        jg.summaries.mean(ds.isel(replication=0))


def test_common_random_numbers_make_paired_differences_exact(replicated):
    """Regimes A and B see the same draws, so cost(B) - cost(A) = c (g_B - g_A)(1 + noise z)
    replication by replication: at noise 0 the difference has no variance at all."""
    out = jg.summaries.paired_difference(replicated, "regime", pairs=[("A", "B")])
    d = out["cost"].sel(pair="B - A", noise=0.0).values
    np.testing.assert_allclose(d, C * (toy.GAIN[1] - toy.GAIN[0]), rtol=1e-14)
    np.testing.assert_allclose(out["cost_se"].sel(noise=0.0).values, 0.0, atol=1e-15)


def scipy_stats():
    import scipy.stats

    return scipy.stats


# ----------------------------------------------------------------------------- sweep files


@pytest.fixture
def toy_file(monkeypatch, tmp_path):
    """Write a sweep file for the toy model (registered for the test) and load it."""
    from jaxgames import models
    from jaxgames.sweepfile import load_sweep

    monkeypatch.setitem(models.REGISTRY, "toy_contract", "_toy_model")

    def load(text: str):
        path = tmp_path / "toy.toml"
        path.write_text(text.replace("OUT", str(tmp_path)))
        return load_sweep(path)

    return load


TOY_GRID = '''
model = "toy_contract"
solve = "equilibrium"
output = "OUT/toy.nc"
derivatives = ["Q"]
wrt = ["v[1]", "c"]

[base]
v = [1.0, 2.0, 4.0]
regime = "B"

[axes]
"v[2]" = { values = [1.0, 3.0] }
regime = { values = ["A", "C"] }
c = { linspace = [1.0, 2.0, 3] }

[[figure]]
kind = "line"
var = "q"
x = "c"
sel = { "v[2]" = 3.0, regime = "C", csc = 2 }
path = "OUT/q.png"
'''


def test_sweep_file_with_vector_element_labels_and_dims(toy_file):
    spec = toy_file(TOY_GRID)
    assert spec.base.regime == 1 and list(spec.base.v) == [1.0, 2.0, 4.0]
    assert spec.axes["regime"].tolist() == ["A", "C"]
    ds = spec.run(progress=False)
    assert ds["q"].dims == ("v[2]", "regime", "c", "csc")
    q = ds["q"].sel({"v[2]": 3.0, "regime": "C"}).values
    np.testing.assert_allclose(q, 2.0 * np.array([1.0, 3.0, 4.0]) / ds["c"].values[:, None],
                               rtol=1e-15)
    assert "dQ_dv[1]" in ds and (ds.regime.values == ["A", "C"]).all()
    assert spec.figures[0].path.exists()


def test_sweep_file_figure_of_a_derivative_wrt_a_vector(toy_file):
    spec = toy_file(TOY_GRID.replace('wrt = ["v[1]", "c"]', 'wrt = ["v"]').replace(
        'derivatives = ["Q"]', 'derivatives = ["q"]').replace(
        'var = "q"', 'var = "dq_dv"').replace('csc = 2 }', 'csc = 2, csc_wrt = 2 }'))
    ds = spec.run(progress=False)
    assert ds["dq_dv"].dims == ("v[2]", "regime", "c", "csc", "csc_wrt")
    assert spec.figures[0].path.exists()
    from jaxgames.sweepfile import SweepFileError

    with pytest.raises(SweepFileError, match=r"axes csc_wrt are neither plotted nor fixed"):
        toy_file(TOY_GRID.replace('wrt = ["v[1]", "c"]', 'wrt = ["v"]').replace(
            'derivatives = ["Q"]', 'derivatives = ["q"]').replace('var = "q"', 'var = "dq_dv"'))


def test_sweep_file_replications(toy_file):
    spec = toy_file('''
model = "toy_contract"
solve = "simulate"
output = "OUT/sim.zarr"
replications = 4
seed = 9
[axes]
regime = { values = ["A", "B"] }
noise = { values = [0.1, 0.2] }
[[figure]]
kind = "line"
var = "cost"
x = "noise"
sel = { regime = "B", agent = "W1", replication = 3 }
path = "OUT/sim.png"
''')
    assert spec.replications == 4 and spec.seed == 9
    ds = spec.run(progress=False)
    assert ds.attrs["seed"] == 9 and ds.sizes["replication"] == 4
    z = ds["z"].values
    np.testing.assert_array_equal(z[0], z[1])  # common random numbers across labels


@pytest.mark.parametrize(("text", "match"), [
    ('[axes]\nregime = { values = ["A", "Z"] }',
     r"axes.regime.values\[1\]: unknown label of regime 'Z'; choose from A, B, C"),
    ('[axes]\n"v[9]" = { values = [1.0] }',
     r"axes.v\[9\]: no element '9' of dim 'csc'; the coords are \['1', '2', '3'\]"),
    ('[axes]\n"v[1]" = { values = [-1.0] }', r"axes.v\[1\]: value -1 is outside the allowed"),
    ('[axes]\nregime = { linspace = [0, 1, 2] }', r"axes.regime: a categorical parameter"),
    ('replications = 2\n[axes]\nc = { values = [1.0] }',
     r"replications: applies to stochastic solve functions only"),
    ('[base]\nregime = "Q"\n[axes]\nc = { values = [1.0] }',
     r"base.regime: unknown label of regime 'Q'; choose from A, B, C"),
    ('wrt = ["regime"]\nderivatives = ["Q"]\n[axes]\nc = { values = [1.0] }',
     r"wrt\[0\]: regime is categorical"),
    ('[axes]\nc = { values = [1.0] }\n[[figure]]\nkind = "line"\nvar = "q"\nx = "c"\n'
     'path = "x.png"', r"figure\[0\].sel: axes csc are neither plotted nor fixed"),
    ('[axes]\nc = { values = [1.0] }\n[[figure]]\nkind = "line"\nvar = "q"\nx = "c"\n'
     'sel = { csc = 7 }\npath = "x.png"', r"figure\[0\].sel.csc: dim csc has coords 1..3"),
])
def test_sweep_file_errors_name_the_key_and_allowed_values(toy_file, text, match):
    from jaxgames.sweepfile import SweepFileError

    with pytest.raises(SweepFileError, match=match):
        toy_file('model = "toy_contract"\nsolve = "equilibrium"\noutput = "OUT/x.nc"\n' + text)


# ----------------------------------------------------------------------------- sensitivity


def test_one_way_and_tornado_on_an_element_of_a_dimensioned_output():
    from jaxgames import sensitivity

    ow = sensitivity.one_way(toy.equilibrium, toy.DEFAULT, {"v[2]": (1.0, 3.0), "c": (1.0, 4.0)},
                             n=3)
    assert ow["q"].dims == ("parameter", "step", "csc")
    assert ow["csc"].values.tolist() == [1, 2, 3]
    np.testing.assert_allclose(ow["q"].sel(parameter="v[2]", csc=2).values, [0.5, 1.0, 1.5])
    tor = sensitivity.tornado(toy.equilibrium, toy.DEFAULT, {"v[2]": (1.0, 3.0), "c": (1.0, 4.0)},
                              ["q[2]", "Q"])
    np.testing.assert_allclose(tor["low"].sel(output="q[2]").values, [0.5, 2.0 / 1.0])
    np.testing.assert_allclose(tor["high"].sel(output="q[2]").values, [1.5, 2.0 / 4.0])
    with pytest.raises(ValueError, match=r"no element '7' of dim 'csc'"):
        sensitivity.tornado(toy.equilibrium, toy.DEFAULT, {"c": (1.0, 4.0)}, ["q[7]"])
    with pytest.raises(ValueError, match=r"not real scalars at each point; choose one element"):
        sensitivity.tornado(toy.equilibrium, toy.DEFAULT, {"c": (1.0, 4.0)}, ["q"])


# ----------------------------------------------------------------------------- command line


CLI_FILE = '''
model = "toy_contract"
solve = "equilibrium"
output = "res/toy.nc"
[axes]
regime = { values = ["A", "C"] }
c = { values = [1.0, 2.0] }
[[figure]]
kind = "line"
var = "Q"
x = "c"
sel = { regime = "C" }
path = "figs/Q.png"
'''


@pytest.fixture
def cli_env(monkeypatch, tmp_path):
    from jaxgames import models

    monkeypatch.setitem(models.REGISTRY, "toy_contract", "_toy_model")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "toy.toml").write_text(CLI_FILE)
    return tmp_path


def test_cli_figures_follow_out_or_figures_dir(cli_env, capsys):
    from jaxgames import cli

    assert cli.main(["sweep", "toy.toml", "--no-compilation-cache", "--no-progress"]) == 0
    assert (cli_env / "figs" / "Q.png").exists() and (cli_env / "res" / "toy.nc").exists()
    assert cli.main(["sweep", "toy.toml", "--out", "other/x.nc", "--no-compilation-cache",
                     "--no-progress"]) == 0
    assert (cli_env / "other" / "Q.png").exists()  # next to the dataset
    out = capsys.readouterr().out
    assert "other/Q.png" in out
    assert cli.main(["sweep", "toy.toml", "--out", "third/x.nc", "--figures", "pics",
                     "--no-compilation-cache", "--no-progress"]) == 0
    assert (cli_env / "pics" / "Q.png").exists() and not (cli_env / "third" / "Q.png").exists()


def test_cli_never_silently_overwrites_tracked_figures(cli_env, capsys):
    import subprocess

    from jaxgames import cli

    (cli_env / "figs").mkdir()
    (cli_env / "figs" / "Q.png").write_bytes(b"committed")
    subprocess.run(["git", "init", "-q"], cwd=cli_env, check=True)
    subprocess.run(["git", "add", "figs/Q.png"], cwd=cli_env, check=True)
    assert cli.main(["sweep", "toy.toml", "--no-compilation-cache", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "figure[0].path: figs/Q.png is a tracked file of a git checkout" in err
    assert (cli_env / "figs" / "Q.png").read_bytes() == b"committed"
    assert not (cli_env / "res").exists()  # refused before anything ran
    # naming the directory explicitly replaces it
    assert cli.main(["sweep", "toy.toml", "--figures", "figs", "--no-compilation-cache",
                     "--no-progress"]) == 0
    assert (cli_env / "figs" / "Q.png").read_bytes() != b"committed"


def test_cli_compilation_cache_under_xdg_cache_home(cli_env, capsys, monkeypatch):
    import jax

    from jaxgames import cli

    assert cli.compilation_cache_dir() == cli_env / "cache" / "jaxgames" / "jax"
    assert cli.main(["info"]) == 0
    assert str(cli_env / "cache" / "jaxgames" / "jax") in capsys.readouterr().out
    before = jax.config.jax_compilation_cache_dir
    try:
        args = cli.build_parser().parse_args(["sweep", "toy.toml", "--no-compilation-cache"])
        assert cli._enable_compilation_cache(args) is None
        assert jax.config.jax_compilation_cache_dir == before
        args = cli.build_parser().parse_args(["sweep", "toy.toml"])
        path = cli._enable_compilation_cache(args)
        assert path == cli.compilation_cache_dir() and path.is_dir()
        assert jax.config.jax_compilation_cache_dir == str(path)
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(cli_env / "home"))
    assert cli.compilation_cache_dir() == cli_env / "home" / ".cache" / "jaxgames" / "jax"


def test_progress_says_it_is_compiling_and_starts_the_eta_after(capsys):
    bar = _sweep._progress_bar(True, 100, "toy", 0)
    assert "compiling" in capsys.readouterr().err
    bar.update(10)  # the first chunk: compilation is over, the points bar starts
    bar.update(20)
    bar.close()
    err = capsys.readouterr().err
    assert "30.0/100" in err and "compiling" not in err.splitlines()[-1]
    assert _sweep._progress_bar(False, 100, "toy", 0) is None


# ----------------------------------------------------------------------------- scale-out


def test_dask_cluster_with_dims_labels_and_replications(tmp_path, monkeypatch, replicated):
    distributed = pytest.importorskip("distributed")
    here = os.path.dirname(__file__)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.dirname(here), here]))
    axes = {"regime": ["A", "B"], "noise": [0.0, 0.2]}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        ds = jg.sweep(toy.simulate, toy.DEFAULT, axes, replications=5, seed=11, chunk_size=4,
                      store=tmp_path / "d.zarr", dask=client, progress=False)
    xr.testing.assert_equal(ds.load(), replicated)


_SHARD_SCRIPT = '''
import sys
import jax
jax.config.update("jax_enable_x64", True)
sys.path.insert(0, sys.argv[1])
import numpy as np
import xarray as xr
import jaxgames as jg
import _toy_model as toy

assert len(jax.local_devices()) == 2, jax.local_devices()
axes = {"regime": ["A", "C"], "v[2]": [1.0, 2.0, 3.0]}
kw = dict(replications=3, seed=4, chunk_size=6, progress=False)
both = jg.sweep(toy.simulate, toy.DEFAULT, axes, **kw)  # all devices
one = jg.sweep(toy.simulate, toy.DEFAULT, axes, devices=1, **kw)
assert both.attrs["devices"].startswith("2 device(s)") and one.attrs["devices"].startswith(
    "1 device(s)"), (both.attrs["devices"], one.attrs["devices"])
xr.testing.assert_equal(both, one)
eq2 = jg.sweep(toy.equilibrium, toy.DEFAULT, axes, derivatives=["q"], wrt=["v"], chunk_size=3,
               progress=False)
eq1 = jg.sweep(toy.equilibrium, toy.DEFAULT, axes, derivatives=["q"], wrt=["v"], chunk_size=3,
               progress=False, devices=1)
xr.testing.assert_equal(eq2, eq1)
print("OK")
'''


def test_sharded_across_two_host_devices_with_dims(tmp_path):
    import subprocess

    script = tmp_path / "shard.py"
    script.write_text(_SHARD_SCRIPT)
    here = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.path.dirname(here),
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc = subprocess.run([sys.executable, str(script), here], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]


def test_sweep_file_one_way_and_tornado_on_elements(toy_file):
    head = 'model = "toy_contract"\nsolve = "equilibrium"\n'
    spec = toy_file(head + '''output = "OUT/ow.nc"
[oneway]
n = 3
ranges = { "v[2]" = [1.0, 3.0], c = [1.0, 4.0] }
[[figure]]
kind = "one_way"
outputs = ["q[2]", "Q"]
x = "value"
path = "OUT/ow.png"
''')
    ds = spec.run(progress=False)
    np.testing.assert_allclose(ds["q"].sel(parameter="v[2]", csc=2).values, [0.5, 1.0, 1.5])
    assert spec.figures[0].path.exists()
    spec = toy_file(head + '''output = "OUT/t.nc"
[tornado]
outputs = ["q[2]", "Q"]
ranges = { "v[2]" = [1.0, 3.0], c = [1.0, 4.0] }
[[figure]]
kind = "tornado"
output = "q[2]"
path = "OUT/t.png"
''')
    ds = spec.run(progress=False)
    np.testing.assert_allclose(ds["high"].sel(output="q[2]").values, [1.5, 0.5])
    from jaxgames.sweepfile import SweepFileError

    with pytest.raises(SweepFileError, match=r"tornado.outputs\[0\]: unknown real-valued output"
                                             r" \(or element, e.g. q\[1\]\) 'q\[4\]'"):
        toy_file(head + 'output = "OUT/t.nc"\n[tornado]\noutputs = ["q[4]"]\n'
                        'ranges = { c = [1.0, 4.0] }\n')
    with pytest.raises(SweepFileError, match=r"oneway.ranges.v: a oneway study varies real "
                                             r"scalars; v is a vector"):
        toy_file(head + 'output = "OUT/t.nc"\n[oneway]\nranges = { v = [1.0, 4.0] }\n')


def test_sobol_on_elements_of_a_dimensioned_output():
    from jaxgames import sensitivity

    res = sensitivity.sobol_indices(toy.equilibrium, toy.DEFAULT,
                                    {"c": (1.0, 2.0), "v[1]": (1.0, 2.0)},
                                    outputs=["q[1]", "q[2]"], n=16, seed=0)
    # q_2 = v_2 / c does not depend on v_1 at all: its indices for v[1] are exactly 0
    assert float(res["ST"].sel(output="q[2]", parameter="v[1]")) == 0.0
    assert float(res["S1"].sel(output="q[2]", parameter="v[1]")) == 0.0
    assert float(res["ST"].sel(output="q[1]", parameter="v[1]")) > 0.1


def test_cli_plot_selects_labels_and_output_dims(grid, tmp_path, capsys):
    from jaxgames import cli

    ds, _ = grid
    path = tmp_path / "g.zarr"
    ds.to_zarr(path, consolidated=False)
    png = tmp_path / "q.png"
    assert cli.main(["plot", str(path), "--kind", "line", "--var", "q", "--x", "v", "--sel",
                     "v[2]=5", "regime=C", "csc=2", "--png", str(png)]) == 0
    assert png.exists()
    assert cli.main(["plot", str(path), "--kind", "heatmap", "--var", "Q", "--x", "v",
                     "--y", "v[2]", "--sel", "regime=B", "--png", str(png)]) == 0
    assert cli.main(["plot", str(path), "--kind", "line", "--var", "q", "--x", "v", "--sel",
                     "v[2]=5", "regime=Z", "csc=2", "--png", str(png)]) == 2
    assert "'Z' is not a value of regime" in capsys.readouterr().err


def test_cli_plot_takes_the_sweep_file_figure_options(grid, tmp_path, capsys):
    """jaxgames plot: flags are the keys of a sweep file's [[figure]] (one schema), and the
    figure is drawn from the same FigureSpec."""
    from jaxgames import cli, sensitivity, sweepfile

    for kind, keys in sweepfile._FIGURE_KEYS.items():
        assert cli._plot_schema()[0][kind] == {"var" if k == "outputs" else k for k in keys}
    ranges = {"v[2]": (1.0, 3.0), "c": (1.0, 4.0)}
    ow = tmp_path / "ow.nc"
    sensitivity.one_way(toy.equilibrium, toy.DEFAULT, ranges, n=3).to_netcdf(
        ow, engine="h5netcdf")
    png = str(tmp_path / "f.png")
    assert cli.main(["plot", str(ow), "--kind", "one_way", "--var", "q[2]", "--png", png]) == 0
    assert cli.main(["plot", str(ow), "--kind", "one_way", "--var", "q[9]", "--png", png]) == 2
    assert "q[9]: no element '9' of dim 'csc'" in capsys.readouterr().err
    tor = tmp_path / "t.nc"
    sensitivity.tornado(toy.equilibrium, toy.DEFAULT, ranges, ["q[2]", "Q"]).to_netcdf(
        tor, engine="h5netcdf")
    assert cli.main(["plot", str(tor), "--kind", "tornado", "--output", "q[2]", "--top", "1",
                     "--png", png]) == 0
    ds, _ = grid
    g = tmp_path / "g.zarr"
    ds.to_zarr(g, consolidated=False)
    assert cli.main(["plot", str(g), "--kind", "heatmap", "--var", "Q", "--x", "v", "--y",
                     "v[2]", "--sel", "regime=A", "--levels", "1,2,4", "--no-contours",
                     "--png", png]) == 0
    assert cli.main(["plot", str(g), "--kind", "line", "--var", "Q", "--x", "v", "--top", "1",
                     "--png", png]) == 2
    assert "--kind line does not take --top" in capsys.readouterr().err
    assert cli.main(["plot", str(g), "--kind", "heatmap", "--var", "Q", "--x", "v", "--y",
                     "v[2]", "--sel", "regime=A", "--levels", "4,2", "--png", png]) == 2
    assert "contour levels must be increasing" in capsys.readouterr().err


def test_sweep_file_design_over_an_element(toy_file):
    from jaxgames.sweepfile import SweepFileError

    head = 'model = "toy_contract"\nsolve = "equilibrium"\noutput = "OUT/d.nc"\n'
    spec = toy_file(head + '[design]\nkind = "latin_hypercube"\nn = 8\n'
                           'bounds = { "v[3]" = [1.0, 2.0], c = [1.0, 2.0] }\n')
    ds = spec.run(progress=False)
    np.testing.assert_allclose(ds["q"].sel(csc=3).values, ds["v[3]"].values / ds["c"].values,
                               rtol=1e-15)
    with pytest.raises(SweepFileError, match=r"design.bounds.regime: regime is categorical "
                                             r"\(labels A, B, C\)"):
        toy_file(head + '[design]\nkind = "random"\nn = 2\nbounds = { regime = [0, 1] }\n')
