"""One-way, tornado and Sobol' sensitivity analysis (:mod:`jaxgames.sensitivity`).

* Sobol' indices on the Ishigami function (a = 7, b = 0.1, x_i ~ U(-pi, pi)), written as a
  model (a Params NamedTuple and a JAX function returning a NamedTuple), whose indices are
  known analytically (Ishigami & Homma 1990; Saltelli et al. 2008, Primer, 4.6):
  (1) our estimators, fed with outputs in SALib's own sample order, reproduce
  ``SALib.analyze.sobol.analyze`` to rounding; (2) our whole pipeline and SALib's agree within
  their combined sampling error, and both cover the analytic values; (3) the same seed gives
  the same numbers.
* One-way and tornado on ``bakshi_kleindorfer.noncooperative`` at its DEFAULT point: values
  equal the source's interior closed form (section 3.2.1), the base equals a direct solve,
  datasets follow the contract, and out-of-domain ranges raise before any evaluation.
"""

from __future__ import annotations

import json
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgames import sensitivity
from jaxgames.models import bakshi_kleindorfer as bk

# ============================================================================ helpers


def _no_evaluation():
    def fail(*args, **kwargs):
        raise AssertionError("the model was evaluated")

    return fail


# ============================================================================ Ishigami

A_ISH, B_ISH = 7.0, 0.1
PI = math.pi
ISH_BOUNDS = {"x1": (-PI, PI), "x2": (-PI, PI), "x3": (-PI, PI)}


class IshigamiParams(NamedTuple):
    x1: float
    x2: float
    x3: float


class IshigamiOut(NamedTuple):
    y: jax.Array
    converged: jax.Array


def ishigami(p: IshigamiParams) -> IshigamiOut:
    x1, x2, x3 = (jnp.asarray(v) for v in p)
    y = jnp.sin(x1) + A_ISH * jnp.sin(x2) ** 2 + B_ISH * x3**4 * jnp.sin(x1)
    return IshigamiOut(y, jnp.ones_like(y, dtype=bool))


def ishigami_np(x: np.ndarray) -> np.ndarray:
    return np.sin(x[:, 0]) + A_ISH * np.sin(x[:, 1]) ** 2 + B_ISH * x[:, 2] ** 4 * np.sin(x[:, 0])


def ishigami_indices():
    """Analytic (S1, ST): V1 = (1 + b pi^4 / 5)^2 / 2, V2 = a^2 / 8, V13 = 8 b^2 pi^8 / 225."""
    v1 = 0.5 * (1 + B_ISH * PI**4 / 5) ** 2
    v2 = A_ISH**2 / 8
    v13 = B_ISH**2 * PI**8 * (1 / 18 - 1 / 50)
    v = v1 + v2 + v13
    return np.array([v1, v2, 0.0]) / v, np.array([v1 + v13, v2, v13]) / v


ISH_BASE = IshigamiParams(0.0, 0.0, 0.0)
PROBLEM = {"num_vars": 3, "names": ["x1", "x2", "x3"], "bounds": [[-PI, PI]] * 3}
N_BASE = 2**12
N_BOOT = 1000


def test_ishigami_analytic_values_as_published():
    s1, st = ishigami_indices()
    np.testing.assert_allclose(s1, [0.3139, 0.4424, 0.0], atol=5e-5)
    np.testing.assert_allclose(st, [0.5576, 0.4424, 0.2437], atol=5e-5)


def _salib_split(y, d, second_order):
    """SALib's layout: per base row, A, AB_1..AB_d, (BA_1..BA_d), B."""
    step = 2 * d + 2 if second_order else d + 2
    rows = y.reshape(-1, step)
    return rows[:, 0], rows[:, -1], rows[:, 1:1 + d], rows[:, 1 + d:1 + 2 * d] if (
        second_order) else None


@pytest.mark.parametrize("second_order", [False, True])
def test_estimators_reproduce_salib(second_order):
    from SALib.analyze import sobol as salib_analyze
    from SALib.sample import sobol as salib_sample

    x = salib_sample.sample(PROBLEM, 2**10, calc_second_order=second_order, seed=11)
    y = ishigami_np(x)
    seed = 12345  # SALib seeds its resampling only for a truthy seed
    ref = salib_analyze.analyze(PROBLEM, y, calc_second_order=second_order,
                                num_resamples=N_BOOT, conf_level=0.95, seed=seed)
    y_a, y_b, y_ab, y_ba = _salib_split(y, 3, second_order)
    ours = sensitivity.sobol_analyze(y_a, y_b, y_ab, y_ba, n_bootstrap=N_BOOT, confidence=0.95,
                                     seed=seed)
    # Same formulas on the same float64 data (and, with the same seed, the same resamples):
    # they differ only in rounding. On standardised outputs (|y| <= m) every summed term is
    # below 2 m^2, so a mean of n terms is off by at most n eps 2 m^2 (V(Y) = 1), an index
    # (a difference of at most 3 such means, S2) by 3 times that, and a confidence half-width
    # (z < 2 times a standard deviation of such estimates) by twice that again.
    n = y.size // (8 if second_order else 5)
    m = np.max(np.abs((y - y.mean()) / y.std()))
    atol = 2 * 3 * n * np.finfo(float).eps * 2 * m**2
    assert atol < 1e-10  # still a meaningful test
    keys = ["S1", "ST", "S1_conf", "ST_conf"] + (["S2", "S2_conf"] if second_order else [])
    for k in keys:
        np.testing.assert_allclose(ours[k], ref[k], rtol=0, atol=atol, err_msg=k)


def test_saltelli_design_layout():
    bounds = {"x1": (-PI, PI), "x2": (1.0, 100.0, "log"), "x3": (0.0, 2.0)}
    design, layout = sensitivity.saltelli_design(bounds, 8, seed=3, calc_second_order=True)
    d = 3
    assert design.size == layout.size == 8 * (2 * d + 2)
    assert layout.names == ("x1", "x2", "x3")
    cols = np.stack([design.points[k] for k in layout.names], axis=1)
    blocks = cols.reshape(2 * d + 2, 8, d)
    a, b = blocks[0], blocks[1]
    for i in range(d):
        ab, ba = blocks[2 + i], blocks[2 + d + i]
        others = [j for j in range(d) if j != i]
        np.testing.assert_array_equal(ab[:, others], a[:, others])
        np.testing.assert_array_equal(ab[:, i], b[:, i])
        np.testing.assert_array_equal(ba[:, others], b[:, others])
        np.testing.assert_array_equal(ba[:, i], a[:, i])
    # A and B are the two halves of one scrambled Sobol' sequence of dimension 2d.
    from scipy.stats import qmc

    u = qmc.Sobol(d=2 * d, scramble=True, rng=np.random.default_rng(3)).random(8)
    np.testing.assert_allclose(a[:, 0], -PI + 2 * PI * u[:, 0], rtol=1e-15)
    np.testing.assert_allclose(b[:, 1], np.exp(np.log(100.0) * u[:, 4]), rtol=1e-14)
    assert np.all((cols[:, 1] >= 1.0) & (cols[:, 1] <= 100.0))
    split = layout.split(np.arange(layout.size, dtype=float))
    np.testing.assert_array_equal(split["A"], np.arange(8))
    np.testing.assert_array_equal(split["AB"][:, 2], np.arange(8) + 8 * 4)
    again, _ = sensitivity.saltelli_design(bounds, 8, seed=3, calc_second_order=True)
    for k in layout.names:
        np.testing.assert_array_equal(again.points[k], design.points[k])


@pytest.fixture(scope="module")
def sobol_ours():
    return sensitivity.sobol_indices(ishigami, ISH_BASE, ISH_BOUNDS, ["y"], n=N_BASE, seed=7,
                                     n_bootstrap=N_BOOT)


def test_sobol_dataset_format(sobol_ours):
    ds = sobol_ours
    for k in ("S1", "S1_conf", "ST", "ST_conf"):
        assert ds[k].dims == ("output", "parameter")
    assert list(ds.output.values) == ["y"]
    assert list(ds.parameter.values) == ["x1", "x2", "x3"]
    assert ds.attrs["n_base"] == N_BASE and ds.attrs["seed"] == 7
    assert ds.attrs["n_evaluations"] == N_BASE * 5
    assert ds.attrs["n_failed"] == 0


# Both pipelines' estimates are (asymptotically) normal with standard errors estimated by the
# bootstrap, sigma = conf / z_0.975. Independent samples (different scrambles) differ with
# standard deviation sqrt(sigma_1^2 + sigma_2^2). K = 4 standard deviations has two-sided tail
# probability 6.3e-5, so all 12 comparisons below (6 indices x {SALib, analytic}) pass with
# probability > 0.999 for a random seed; the bootstrap ignores the QMC variance reduction, so
# the sigmas overstate the error and the bound is conservative.
K_SIGMA = 4.0
Z95 = 1.959963984540054


def test_sobol_pipeline_agrees_with_salib_and_analytic(sobol_ours):
    from SALib.analyze import sobol as salib_analyze
    from SALib.sample import sobol as salib_sample

    x = salib_sample.sample(PROBLEM, N_BASE, calc_second_order=False, seed=2024)
    ref = salib_analyze.analyze(PROBLEM, ishigami_np(x), calc_second_order=False,
                                num_resamples=N_BOOT, seed=99)
    s1_true, st_true = ishigami_indices()
    ours = sobol_ours.sel(output="y")
    for k, truth in (("S1", s1_true), ("ST", st_true)):
        est, sig = ours[k].values, ours[f"{k}_conf"].values / Z95
        ref_est, ref_sig = np.asarray(ref[k]), np.asarray(ref[f"{k}_conf"]) / Z95
        # The comparison has power only if the bound is below the smallest non-zero index
        # (ST of x3 = 0.24): then an index wrongly estimated as 0, or swapped between
        # parameters, cannot pass.
        assert K_SIGMA * np.hypot(sig, ref_sig).max() < st_true[2], (sig, ref_sig)
        assert np.all(np.abs(est - ref_est) <= K_SIGMA * np.hypot(sig, ref_sig)), (est, ref_est)
        assert np.all(np.abs(est - truth) <= K_SIGMA * sig), (k, est, truth, sig)
        assert np.all(np.abs(ref_est - truth) <= K_SIGMA * ref_sig), (k, ref_est, truth)


def test_sobol_deterministic(sobol_ours):
    again = sensitivity.sobol_indices(ishigami, ISH_BASE, ISH_BOUNDS, ["y"], n=N_BASE, seed=7,
                                      n_bootstrap=N_BOOT)
    for k in ("S1", "S1_conf", "ST", "ST_conf"):
        np.testing.assert_array_equal(again[k].values, sobol_ours[k].values, err_msg=k)
    other = sensitivity.sobol_indices(ishigami, ISH_BASE, ISH_BOUNDS, ["y"], n=N_BASE, seed=8,
                                      n_bootstrap=N_BOOT)
    assert not np.array_equal(other["S1"].values, sobol_ours["S1"].values)


class FailOut(NamedTuple):
    y: jax.Array
    converged: jax.Array


def ishigami_failing(p: IshigamiParams) -> FailOut:
    """Ishigami that 'does not converge' where x1 > 2.5 (a region of known size)."""
    out = ishigami(p)
    return FailOut(out.y, jnp.asarray(p.x1) <= 2.5)


def test_sobol_failures_raise_or_are_dropped_explicitly():
    n = 64
    design, layout = sensitivity.saltelli_design(ISH_BOUNDS, n, seed=1)
    failed = design.points["x1"] > 2.5
    assert failed.any()
    with pytest.raises(ValueError, match=rf"{failed.sum()} of {design.size} points"):
        sensitivity.sobol_indices(ishigami_failing, ISH_BASE, ISH_BOUNDS, ["y"], n=n, seed=1,
                                  n_bootstrap=10)
    ds = sensitivity.sobol_indices(ishigami_failing, ISH_BASE, ISH_BOUNDS, ["y"], n=n, seed=1,
                                   n_bootstrap=10, on_failure="drop")
    bad_rows = np.unique(layout.base_row()[failed])
    assert ds.attrs["n_failed"] == failed.sum()
    assert ds.attrs["n_base_used"] == n - bad_rows.size
    # Dropped rows = the estimators applied to the surviving rows by hand.
    y = ishigami_np(np.stack([design.points[k] for k in layout.names], axis=1))
    keep = np.setdiff1d(np.arange(n), bad_rows)
    parts = layout.split(y)
    ref = sensitivity.sobol_analyze(parts["A"][keep], parts["B"][keep], parts["AB"][keep],
                                    n_bootstrap=0)
    for k in ("S1", "ST"):
        np.testing.assert_allclose(ds[k].sel(output="y").values, ref[k], rtol=0,
                                   atol=ATOL_NP_VS_JAX, err_msg=k)


#: Indices from outputs computed by NumPy here and by XLA in the sweep: sin differs by a few
#: ulps, so each standardised output (|y| < 4) moves by < 1e-14, and the estimators (means of
#: products of at most two such outputs, over V(Y) = 1) by < 2 * 4 * 1e-14 each term.
ATOL_NP_VS_JAX = 1e-12


def test_sobol_second_order_through_the_pipeline():
    n = 64
    ds = sensitivity.sobol_indices(ishigami, ISH_BASE, ISH_BOUNDS, ["y"], n=n, seed=5,
                                   n_bootstrap=10, calc_second_order=True)
    assert ds["S2"].dims == ("output", "parameter", "parameter_2")
    assert ds.attrs["n_evaluations"] == n * 8
    design, layout = sensitivity.saltelli_design(ISH_BOUNDS, n, seed=5, calc_second_order=True)
    parts = layout.split(ishigami_np(np.stack([design.points[k] for k in layout.names], 1)))
    ref = sensitivity.sobol_analyze(parts["A"], parts["B"], parts["AB"], parts["BA"],
                                    n_bootstrap=0)
    for k in ("S1", "ST", "S2"):
        np.testing.assert_allclose(ds[k].sel(output="y").values, ref[k], rtol=0,
                                   atol=ATOL_NP_VS_JAX, err_msg=k)
    s2 = ds["S2"].sel(output="y").values
    assert np.all(np.isnan(s2[np.tril_indices(3)]))
    assert np.all(np.isfinite(s2[np.triu_indices(3, 1)]))


def test_sobol_analyze_constant_output_and_validation():
    n, d = 16, 2
    r = sensitivity.sobol_analyze(np.ones(n), np.ones(n), np.ones((n, d)), n_bootstrap=10)
    assert np.all(np.isnan(r["S1"])) and np.all(np.isnan(r["ST"]))
    assert r["variance"] == 0.0
    with pytest.raises(ValueError, match="finite"):
        sensitivity.sobol_analyze(np.r_[np.nan, np.ones(n - 1)], np.ones(n), np.ones((n, d)))
    with pytest.raises(ValueError, match="shape"):
        sensitivity.sobol_analyze(np.ones(n), np.ones(n), np.ones(n))
    with pytest.raises(ValueError, match="unknown parameter"):
        sensitivity.sobol_indices(ishigami, ISH_BASE, {"x9": (0.0, 1.0)}, ["y"], n=8)
    with pytest.raises(ValueError, match="lo < hi"):
        sensitivity.sobol_indices(ishigami, ISH_BASE, {"x1": (1.0, 0.0)}, ["y"], n=8)


# ============================================================================ Bakshi-Kleindorfer

BASE = bk.DEFAULT
NC_OUTPUTS = ("y_ss", "y_su", "y_r", "P_ss", "P_su", "P_r", "t_ss", "t_su", "t_r")
#: The interior closed form is exact; the engine's Newton solves agree with it to ~1e-12 in
#: relative terms (step test 1000 eps in alpha * y units, alpha * y > 0.1); 1e-9 is the
#: tolerance of tests/test_bakshi_kleindorfer.py for the same comparison under vmap.
RTOL_CF = 1e-9
#: A batched solve and a direct one run the same Newton iterations; they differ by rounding
#: (tests/test_bakshi_kleindorfer.py holds vmap equal to a loop to 1e-12 as well).
RTOL_BATCH = 1e-12


@pytest.fixture(scope="module")
def at_base():
    """A direct (unbatched) solve at the base point."""
    return jax.jit(bk.noncooperative)(BASE)


def _closed_form_at(values: dict[str, np.ndarray]) -> bk.Noncooperative:
    shape = np.shape(next(iter(values.values())))
    pr = bk.Params(**{k: values.get(k, np.full(shape, float(v)))
                      for k, v in BASE._asdict().items()})
    return bk.noncooperative_closed_form(pr, np)


def _assert_interior(cf: bk.Noncooperative, values: dict[str, np.ndarray]) -> None:
    # The closed form is valid only for interior equilibria; keep away from y = 0 (the
    # condition of tests/test_bakshi_kleindorfer.py's interior batch).
    for y, alpha in ((cf.y_ss, "alpha_ss"), (cf.y_su, "alpha_su"), (cf.y_r, "alpha_r")):
        assert np.all(values.get(alpha, float(getattr(BASE, alpha))) * np.asarray(y) > 0.1)


def _one_way_points(ds) -> dict[str, np.ndarray]:
    """{parameter: (P, n) values} of every point of a one-way dataset (the others at base)."""
    names = list(ds.parameter.values)
    return {name: np.where(np.arange(len(names))[:, None] == k, ds.value.values,
                           float(getattr(BASE, name))) for k, name in enumerate(names)}


# The sweep engine compiles one function per set of varied parameters and padded batch length
# (a multiple of 8): the two one-way sweeps below (9 parameters x 3 steps = 27 points) share a
# compilation, and so do the two tornados (3 parameters, 7 points).


def test_one_way_equals_closed_form():
    n = 3
    ds = sensitivity.one_way(bk.noncooperative, BASE, relative=(0.8, 1.25), n=n)
    names = list(BASE._fields)
    assert ds["y_r"].dims == ("parameter", "step")
    assert list(ds.parameter.values) == names
    np.testing.assert_array_equal(ds.step.values, np.arange(n))
    assert ds.value.dims == ("parameter", "step") and ds.relative.dims == ("parameter", "step")
    for k, name in enumerate(names):
        b = float(getattr(BASE, name))
        np.testing.assert_allclose(ds.value.values[k], np.linspace(0.8 * b, 1.25 * b, n),
                                   rtol=1e-15)
    np.testing.assert_allclose(ds.relative.values, np.tile(np.linspace(0.8, 1.25, n),
                                                           (len(names), 1)), rtol=1e-14)
    for diag in ("converged", "residual", "iterations", "status", "assumptions_hold"):
        assert ds[diag].dims == ("parameter", "step")
    assert bool(ds.converged.all())
    assert ds.attrs["analysis"] == "one_way"
    assert json.loads(ds.attrs["base_params"]) == {k: float(v) for k, v in
                                                   BASE._asdict().items()}
    assert ds.attrs["solve_function"].endswith("noncooperative")  # the sweep's provenance

    # Every point against the closed form at that point.
    values = _one_way_points(ds)
    cf = _closed_form_at(values)
    _assert_interior(cf, values)
    for out in NC_OUTPUTS:
        np.testing.assert_allclose(ds[out].values, getattr(cf, out), rtol=RTOL_CF, err_msg=out)


def test_one_way_explicit_log_ranges_and_base(at_base):
    names = list(BASE._fields)
    ranges = {k: (float(v) / 1.25, float(v) * 1.25, "log") for k, v in BASE._asdict().items()}
    ds = sensitivity.one_way(bk.noncooperative, BASE, ranges, n=3)
    base = np.array([float(v) for v in BASE])
    np.testing.assert_allclose(ds.value.values, base[:, None] * np.array([0.8, 1.0, 1.25]),
                               rtol=1e-14)
    np.testing.assert_allclose(ds.relative.values[:, 1], 1.0, rtol=1e-14)
    # The middle of each geometric range is the base point: equal to a direct solve there.
    for out in NC_OUTPUTS:
        np.testing.assert_allclose(ds[out].isel(step=1).values,
                                   np.full(len(names), float(getattr(at_base, out))),
                                   rtol=RTOL_BATCH, err_msg=out)
    values = _one_way_points(ds)
    cf = _closed_form_at(values)
    _assert_interior(cf, values)
    for out in NC_OUTPUTS:
        np.testing.assert_allclose(ds[out].values, getattr(cf, out), rtol=RTOL_CF, err_msg=out)


TORNADO_PARAMS = ("f", "D_J", "alpha_r")


def _check_tornado_ends(ds, outputs):
    for end in ("low", "high"):
        for k, name in enumerate(ds.parameter.values):
            x = ds[f"param_{end}"].values[k]
            cf = _closed_form_at({name: np.array(x)})
            _assert_interior(cf, {name: np.array(x)})
            np.testing.assert_allclose(ds[end].sel(parameter=name).values,
                                       [float(getattr(cf, o)) for o in outputs], rtol=RTOL_CF,
                                       err_msg=f"{end} {name}")


def test_tornado_equals_closed_form(at_base):
    ranges = {"f": (0.15, 0.3), "D_J": (8e6, 1.5e7), "alpha_r": (3e-5, 5e-5)}
    assert tuple(ranges) == TORNADO_PARAMS
    outputs = ["y_r", "t_ss", "P_r"]
    ds = sensitivity.tornado(bk.noncooperative, BASE, ranges, outputs)
    for k in ("low", "high", "swing", "converged"):
        assert ds[k].dims == ("output", "parameter")
    assert ds["base"].dims == ("output",)
    assert list(ds.output.values) == outputs
    assert list(ds.parameter.values) == list(ranges)
    np.testing.assert_array_equal(ds.param_low.values, [r[0] for r in ranges.values()])
    np.testing.assert_array_equal(ds.param_high.values, [r[1] for r in ranges.values()])
    assert ds.converged.dtype == bool and bool(ds.converged.all())
    np.testing.assert_array_equal(ds.swing.values, np.abs(ds.high.values - ds.low.values))
    np.testing.assert_allclose(ds.base.values, [float(getattr(at_base, o)) for o in outputs],
                               rtol=RTOL_BATCH)
    assert bool(ds.base_converged)
    assert ds.attrs["analysis"] == "tornado"
    _check_tornado_ends(ds, outputs)


def test_tornado_relative_default_outputs():
    ds = sensitivity.tornado(bk.noncooperative, BASE, relative=(0.9, 1.1),
                             params=list(TORNADO_PARAMS))
    # Every floating-point output of the model, without the residual diagnostic.
    assert list(ds.output.values) == list(NC_OUTPUTS)
    base = np.array([float(getattr(BASE, k)) for k in TORNADO_PARAMS])
    np.testing.assert_allclose(ds.param_low.values, 0.9 * base, rtol=1e-15)
    np.testing.assert_allclose(ds.param_high.values, 1.1 * base, rtol=1e-15)
    _check_tornado_ends(ds, NC_OUTPUTS)


@pytest.mark.parametrize("call, match", [
    (lambda: sensitivity.one_way(bk.noncooperative, BASE, {"f": (0.5, 1.5)}),
     r"parameter f is outside its allowed range \[0, 1\]"),
    (lambda: sensitivity.one_way(bk.noncooperative, BASE, relative=(0.5, 4.0), params=["p"]),
     r"parameter p is outside its allowed range \[0, 1\]"),
    (lambda: sensitivity.tornado(bk.noncooperative, BASE, {"alpha_r": (0.0, 1e-4)}, ["y_r"]),
     r"parameter alpha_r is outside its allowed range \(0, inf\)"),
    (lambda: sensitivity.sobol_indices(bk.noncooperative, BASE, {"theta_r": (0.5, 2.0)},
                                       ["y_r"], n=8),
     r"parameter theta_r is outside its allowed range \[0, 1\]"),
    (lambda: sensitivity.one_way(bk.noncooperative, BASE, {"nope": (0.0, 1.0)}),
     r"unknown parameter"),
    (lambda: sensitivity.one_way(bk.noncooperative, BASE, {"f": (0.3, 0.2)}),
     r"lo < hi"),
    (lambda: sensitivity.one_way(bk.noncooperative, BASE, {"f": (0.1, math.inf)}),
     r"lo < hi"),
    (lambda: sensitivity.one_way(bk.noncooperative, BASE, {"f": (0.1, 0.2)}, relative=(1, 2)),
     r"either"),
])
def test_invalid_ranges_raise_before_evaluation(monkeypatch, call, match):
    monkeypatch.setattr(sensitivity, "_sweep_fn", _no_evaluation)
    with pytest.raises(ValueError, match=match):
        call()
