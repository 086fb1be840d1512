"""The sweep engine: chunking, stores, resume, sharding, Dask, provenance, derivatives."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxgames as jg
from jaxgames import _sweep
from jaxgames._solver import Newton, Status
from jaxgames.models import bakshi_kleindorfer as bk

AXES = {
    "f": np.linspace(0.1, 0.9, 5),
    "p": np.linspace(0.0, 1.0, 4),
    "D_J": np.geomspace(1e6, 1e8, 3),
}
PROVENANCE = ("model", "solve_function", "base_params", "axes", "design", "solver", "dtype",
              "jaxgames_version", "jax_version", "numpy_version", "xarray_version", "device",
              "created", "sweep_key", "n_points", "n_chunks")


def _stable(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` loaded, without the attributes that record when/where it was made."""
    ds = ds.load().copy()
    for k in _sweep.VOLATILE_ATTRS:
        ds.attrs.pop(k, None)
    return ds


@pytest.fixture(scope="module")
def reference():
    return jg.sweep(bk.noncooperative, bk.DEFAULT, AXES, progress=False)


# ----------------------------------------------------------------------------- values & labels


def test_grid_values_equal_closed_form(reference):
    ds = reference
    assert ds["y_r"].dims == ("f", "p", "D_J")
    f, p, d = np.meshgrid(AXES["f"], AXES["p"], AXES["D_J"], indexing="ij")
    params = bk.DEFAULT._replace(f=f, p=p, D_J=d)
    cf = bk.noncooperative_closed_form(params, np)
    # the closed form is the interior solution: compare where all its investments are positive
    interior = (np.asarray(cf.y_r) > 0) & (np.asarray(cf.y_ss) > 0) & (np.asarray(cf.y_su) > 0)
    assert interior.any()
    for name in ("y_ss", "y_su", "y_r", "t_r"):
        np.testing.assert_allclose(ds[name].values[interior], np.asarray(getattr(cf, name))[
            interior], rtol=1e-9)
    assert bool(ds["converged"].all())
    assert (ds["status"] == Status.SUCCESS).all()
    # certification, not only reference numbers: every point's residual met the solver's
    # tolerance on max|Phi| (100 eps of float64, 2.2e-14), not only the looser step test
    assert float(ds["residual"].max()) <= bk.SOLVER.tolerance(np.float64)


def test_labels_and_provenance(reference):
    ds = reference
    for k in PROVENANCE:
        assert k in ds.attrs, k
    assert ds.attrs["model"] == "bakshi_kleindorfer"
    assert ds.attrs["solve_function"] == "jaxgames.models.bakshi_kleindorfer.noncooperative"
    assert json.loads(ds.attrs["base_params"]) == bk.DEFAULT._asdict()
    assert "Newton(" in ds.attrs["solver"]
    assert ds["y_r"].attrs["units"] == "$" and "retailer" in ds["y_r"].attrs["description"]
    assert ds["f"].attrs["units"] == "1" and ds["D_J"].attrs["units"] == "$"
    np.testing.assert_array_equal(ds["D_J"].values, AXES["D_J"])
    for v in ("converged", "residual", "iterations", "status", "assumptions_hold"):
        assert v in ds
    for v in ds.attrs.values():  # netCDF-safe attribute types
        assert isinstance(v, str | int | float)


def test_float32_sweep():
    ds = jg.sweep(bk.noncooperative, bk.DEFAULT, {"f": [0.2, 0.5, 0.8]}, dtype="float32",
                  progress=False)
    assert ds["y_r"].dtype == np.float32 and ds["f"].dtype == np.float32
    ref = bk.noncooperative_closed_form(bk.DEFAULT._replace(f=np.array([0.2, 0.5, 0.8])), np)
    # float32: 100 eps of the working precision is the solver's tolerance
    np.testing.assert_allclose(ds["y_r"].values, ref.y_r, rtol=100 * np.finfo(np.float32).eps)


# ----------------------------------------------------------------------------- chunking


@pytest.mark.parametrize("chunk_size", [1, 7, 12, 13, 60, 1000])
def test_chunked_equals_unchunked(reference, chunk_size):
    ds = jg.sweep(bk.noncooperative, bk.DEFAULT, AXES, chunk_size=chunk_size, progress=False)
    xr.testing.assert_identical(_stable(ds), _stable(reference).assign_attrs(
        n_chunks=ds.attrs["n_chunks"], chunk_points=ds.attrs["chunk_points"],
        sweep_key=ds.attrs["sweep_key"]))


@settings(max_examples=200, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4),
       chunk_size=st.integers(1, 300))
def test_layout_partitions_the_grid(shape, chunk_size):
    dims = tuple("abcd"[: len(shape)])
    lay = _sweep.Layout.make(dims, tuple(shape), chunk_size)
    assert 1 <= lay.chunk_points <= max(chunk_size, 1)
    flat = np.arange(lay.n_points).reshape(shape)
    covered = []
    for i in range(lay.n_chunks):
        start, stop, region = lay.chunk(i)
        block = flat[tuple(region[d] for d in dims)]
        # a chunk is a contiguous flat range AND a rectangular block of the grid
        np.testing.assert_array_equal(block.reshape(-1), np.arange(start, stop))
        assert stop - start <= lay.chunk_points
        # it is exactly one storage chunk (aligned to the Zarr chunk grid)
        for d, c in zip(dims, lay.storage_chunks, strict=True):
            assert region[d].start % c == 0
        covered.append((start, stop))
    assert covered[0][0] == 0 and covered[-1][1] == lay.n_points
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:], strict=False))


def test_compiled_once_for_all_chunks():
    traces = []

    def counting(params):
        traces.append(1)  # runs at trace time only
        return bk.noncooperative(params)

    jg.sweep(counting, bk.DEFAULT, {"f": np.linspace(0.1, 0.9, 40)}, chunk_size=4,
             progress=False)
    # one trace for the output shapes (eval_shape) and one for the compiled chunk function,
    # not one per chunk (10 chunks)
    assert len(traces) == 2


def test_design_sweep_matches_pointwise():
    d = jg.design.latin_hypercube({"f": (0.1, 0.9), "D_J": (1e6, 1e9, "log")}, 50, seed=3)
    ds = jg.sweep(bk.noncooperative, bk.DEFAULT, d, chunk_size=16, progress=False)
    assert ds["y_r"].dims == ("sample",)
    np.testing.assert_array_equal(ds["f"].values, d.points["f"])
    one = bk.noncooperative(bk.DEFAULT._replace(f=d.points["f"][7], D_J=d.points["D_J"][7]))
    np.testing.assert_allclose(ds["y_r"].values[7], one.y_r, rtol=1e-12)
    assert json.loads(ds.attrs["design"])["seed"] == 3


def test_designs_are_reproducible():
    b = {"f": (0.1, 0.9), "p": (0.0, 1.0)}
    for make in (jg.design.random, jg.design.latin_hypercube, jg.design.sobol):
        a1, a2, a3 = make(b, 64, seed=1), make(b, 64, seed=1), make(b, 64, seed=2)
        np.testing.assert_array_equal(a1.points["f"], a2.points["f"])
        assert not np.array_equal(a1.points["f"], a3.points["f"])
        assert a1.points["f"].min() >= 0.1 and a1.points["f"].max() <= 0.9
    lhs = jg.design.latin_hypercube(b, 64, seed=0).points["p"]
    # Latin hypercube: exactly one point in each of the 64 strata
    np.testing.assert_array_equal(np.sort(np.floor(lhs * 64)), np.arange(64))


def test_design_too_large_is_refused_before_allocating():
    """A 2**40-point design is refused with an error naming ``n``, the size and the limit,
    and how to raise it -- not a raw ``MemoryError`` (nothing is allocated first)."""
    b = {"f": (0.1, 0.9), "p": (0.0, 1.0)}
    for make in (jg.design.random, jg.design.latin_hypercube, jg.design.sobol):
        with pytest.raises(jg.design.DesignTooLarge, match=r"^n: 1,099,511,627,776 points x 2 "
                           r"parameters need about 52.8 TB of memory, more than the limit "
                           r"1 GB; .*raise the limit with max_memory"):
            make(b, 2**40, seed=0, max_memory="1GB")
        with pytest.raises(ValueError, match="the memory available now"):
            make(b, 2**40, seed=0)
    # the limit is a limit, not a switch: a design that fits it is drawn
    assert jg.design.sobol(b, 1024, seed=0, max_memory="1MB").size == 1024


def test_combined_functions():
    fn = jg.combine({"nc": bk.noncooperative, "fb": bk.first_best})
    ds = jg.sweep(fn, bk.DEFAULT, {"p": [0.2, 0.5]}, progress=False)
    assert "nc_y_r" in ds and "fb_W" in ds and "converged" in ds
    assert ds["nc_y_r"].attrs["units"] == "$"
    assert (ds["converged"] == (ds["nc_converged"] & ds["fb_converged"])).all()
    fb = bk.first_best(bk.DEFAULT._replace(p=0.5))
    np.testing.assert_allclose(ds["fb_W"].values[1], fb.W, rtol=1e-12)


# ----------------------------------------------------------------------------- failure is data


def test_non_converged_points_are_flagged():
    starved = functools.partial(bk.noncooperative, solver=Newton(max_steps=1))
    ds = jg.sweep(starved, bk.DEFAULT, {"f": [0.2, 0.5]}, derivatives=["y_r"], wrt=["f"],
                  progress=False)
    bad = ~ds["converged"].values
    assert bad.any()
    assert (ds["status"].values[bad] == Status.MAX_STEPS).all()
    assert np.isnan(ds["dy_r_df"].values[bad]).all()  # no derivative of a non-solution


def test_assumption_violations_are_flagged():
    ds = jg.sweep(bk.noncooperative, bk.DEFAULT, {"theta_su": [0.01, 0.04]}, progress=False)
    # theta_su = 0.01 < theta_ss = 0.027 violates assumption set (2)
    np.testing.assert_array_equal(ds["assumptions_hold"].values, [False, True])


@pytest.mark.parametrize(("axes", "match"), [
    ({"g": [1.0]}, r"unknown parameter\(s\) \['g'\]"),
    ({"f": [0.5, 1.5]}, r"axes\['f'\]: value 1.5 is outside the allowed range \[0, 1\]"),
    ({"alpha_r": [0.0]}, r"allowed range \(0, inf\) of parameter alpha_r"),
    ({"f": [0.5, np.nan]}, "non-finite"),
    ({"f": []}, "non-empty"),
    ({"f": [[0.1, 0.2]]}, "1-D"),
    ({}, "at least one parameter"),
])
def test_bad_axes_fail_before_compiling(monkeypatch, axes, match):
    monkeypatch.setattr(_sweep, "_compiled", lambda *a: pytest.fail("compiled"))
    with pytest.raises(ValueError, match=match):
        jg.sweep(bk.noncooperative, bk.DEFAULT, axes, progress=False)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"derivatives": ["nope"]}, r"derivatives: unknown output\(s\) \['nope'\]"),
    ({"derivatives": ["converged"]}, "not floating point"),
    ({"derivatives": ["y_r"], "wrt": ["zz"]}, r"wrt: unknown parameter\(s\)"),
    ({"elasticities": True}, "needs derivatives"),
    ({"chunk_size": 0}, "chunk_size must be a positive integer"),
    ({"dtype": "int32"}, "float32 or float64"),
    ({"devices": 99}, "local device"),
])
def test_bad_options_fail_before_compiling(monkeypatch, kwargs, match):
    monkeypatch.setattr(_sweep, "_compiled", lambda *a: pytest.fail("compiled"))
    with pytest.raises(ValueError, match=match):
        jg.sweep(bk.noncooperative, bk.DEFAULT, {"f": [0.5]}, progress=False, **kwargs)


def test_bad_base_fails():
    with pytest.raises(ValueError, match=r"base_params\['D_J'\]: value -1.0 is outside"):
        jg.sweep(bk.noncooperative, bk.DEFAULT._replace(D_J=-1.0), {"f": [0.5]},
                 progress=False)


# ----------------------------------------------------------------------------- derivatives


def test_derivatives_equal_finite_differences():
    pts = {"f": np.array([0.2, 0.6]), "p": np.array([0.3, 0.7])}
    ds = jg.sweep(bk.noncooperative, bk.DEFAULT, pts, derivatives=["y_r", "t_ss"],
                  wrt=["f", "D_J", "alpha_r"], elasticities=True, progress=False)
    for out in ("y_r", "t_ss"):
        for par in ("f", "D_J", "alpha_r"):
            for i, f in enumerate(pts["f"]):
                for j, p in enumerate(pts["p"]):
                    base = bk.DEFAULT._replace(f=f, p=p)
                    x = getattr(base, par)
                    # central differences: truncation O(h^2) ~ 1e-10 and round-off
                    # eps / h ~ 2e-11, relative; the implicit derivative is exact to
                    # round-off, so they agree to 1e-9 (seen: 1.7e-10 at worst)
                    h = 1e-5 * x
                    hi = getattr(bk.noncooperative_closed_form(base._replace(**{par: x + h}),
                                                               np), out)
                    lo = getattr(bk.noncooperative_closed_form(base._replace(**{par: x - h}),
                                                               np), out)
                    fd = (hi - lo) / (2 * h)
                    got = ds[f"d{out}_d{par}"].values[i, j]
                    np.testing.assert_allclose(got, fd, rtol=1e-9, err_msg=f"d{out}/d{par}")
                    y = ds[out].values[i, j]
                    np.testing.assert_allclose(ds[f"elasticity_{out}_{par}"].values[i, j],
                                               got * x / y, rtol=1e-12)
    assert ds["dy_r_dD_J"].attrs["units"] == "($)/($)"


# ----------------------------------------------------------------------------- stores


def test_store_roundtrip_and_netcdf(tmp_path, reference):
    store = tmp_path / "s.zarr"
    ds = jg.sweep(bk.noncooperative, bk.DEFAULT, AXES, chunk_size=7, store=store,
                  progress=False)
    # streamed to the store, opened lazily, and identical to the in-memory sweep
    assert ds["y_r"].chunks is not None
    ref = _stable(reference).assign_attrs(n_chunks=ds.attrs["n_chunks"],
                                          chunk_points=ds.attrs["chunk_points"],
                                          sweep_key=ds.attrs["sweep_key"])
    xr.testing.assert_identical(_stable(ds), ref)
    reopened = xr.open_zarr(store, consolidated=False)
    xr.testing.assert_identical(reopened.load(), ds.load())
    nc = tmp_path / "s.nc"
    ds.to_netcdf(nc, engine="h5netcdf")
    with xr.open_dataset(nc, engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), ds.load())


def test_design_store_roundtrip(tmp_path):
    d = jg.design.sobol({"f": (0.1, 0.9), "p": (0.0, 1.0)}, 32, seed=0)
    ds = jg.sweep(bk.noncooperative, bk.DEFAULT, d, chunk_size=10, store=tmp_path / "d.zarr",
                  progress=False)
    mem = jg.sweep(bk.noncooperative, bk.DEFAULT, d, chunk_size=10, progress=False)
    xr.testing.assert_identical(_stable(ds), _stable(mem))
    ds.to_netcdf(tmp_path / "d.nc", engine="h5netcdf")
    with xr.open_dataset(tmp_path / "d.nc", engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), ds.load())


def test_existing_store_is_not_overwritten(tmp_path):
    store = tmp_path / "s.zarr"
    jg.sweep(bk.noncooperative, bk.DEFAULT, {"f": [0.2]}, store=store, progress=False)
    with pytest.raises(FileExistsError, match="resume=True"):
        jg.sweep(bk.noncooperative, bk.DEFAULT, {"f": [0.2]}, store=store, progress=False)
    with pytest.raises(ValueError, match="different sweep"):
        jg.sweep(bk.noncooperative, bk.DEFAULT, {"f": [0.3]}, store=store, resume=True,
                 progress=False)
    ds = jg.sweep(bk.noncooperative, bk.DEFAULT, {"f": [0.3]}, store=store, overwrite=True,
                  progress=False)
    assert float(ds["f"][0]) == 0.3


class _Injected(RuntimeError):
    pass


def test_resume_after_injected_failure(tmp_path, reference):
    store = tmp_path / "s.zarr"
    seen = []

    def fail_after_three(info):
        seen.append(info.index)
        if len(seen) == 3:
            raise _Injected

    with pytest.raises(_Injected):
        jg.sweep(bk.noncooperative, bk.DEFAULT, AXES, chunk_size=7, store=store,
                 progress=False, callback=fail_after_three)
    with pytest.raises(ValueError, match="not complete"):
        jg.open_sweep(store)
    # simulate a chunk that was being written when the process died: data, but no marker
    done = _sweep._done_chunks(os.fspath(store))
    assert len(done) == 3
    half = min(set(range(int(reference.attrs["n_points"]) // 7)) - done)
    resumed = []
    ds = jg.sweep(bk.noncooperative, bk.DEFAULT, AXES, chunk_size=7, store=store, resume=True,
                  progress=False, callback=lambda info: resumed.append(info.index))
    assert not set(resumed) & done  # completed chunks are not redone
    assert half in resumed
    assert sorted(resumed + seen) == list(range(ds.attrs["n_chunks"]))
    full = jg.sweep(bk.noncooperative, bk.DEFAULT, AXES, chunk_size=7, progress=False)
    xr.testing.assert_identical(_stable(ds), _stable(full))


def test_partially_written_chunk_is_recomputed(tmp_path):
    store = tmp_path / "s.zarr"
    axes = {"f": np.linspace(0.1, 0.9, 12)}
    full = jg.sweep(bk.noncooperative, bk.DEFAULT, axes, chunk_size=4, store=store,
                    progress=False).load()
    # corrupt chunk 1 and remove its marker: as if killed between writing and marking
    xr.Dataset({"y_r": ("f", np.full(4, -1.0))}).to_zarr(
        store, region={"f": slice(4, 8)}, mode="r+", consolidated=False)
    _sweep._marker(os.fspath(store), 1).unlink()
    redone = []
    ds = jg.sweep(bk.noncooperative, bk.DEFAULT, axes, chunk_size=4, store=store, resume=True,
                  progress=False, callback=lambda info: redone.append(info.index))
    assert redone == [1]
    xr.testing.assert_identical(_stable(ds), _stable(full))


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import jaxgames as jg
    from jaxgames.models import bakshi_kleindorfer as bk

    def kill_after_two(info):
        if info.index == 1:
            os.kill(os.getpid(), signal.SIGKILL)

    jg.sweep(bk.noncooperative, bk.DEFAULT,
             {"f": np.linspace(0.1, 0.9, 9), "p": np.linspace(0.0, 1.0, 5)},
             chunk_size=10, store=sys.argv[1], progress=False, callback=kill_after_two)
""")


def test_resume_after_sigkill(tmp_path):
    store = tmp_path / "k.zarr"
    script = tmp_path / "kill.py"
    script.write_text(_KILL_SCRIPT)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(script), str(store)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert _sweep._done_chunks(os.fspath(store)) == {0, 1}
    axes = {"f": np.linspace(0.1, 0.9, 9), "p": np.linspace(0.0, 1.0, 5)}
    ds = jg.sweep(bk.noncooperative, bk.DEFAULT, axes, chunk_size=10, store=store,
                  resume=True, progress=False)
    full = jg.sweep(bk.noncooperative, bk.DEFAULT, axes, chunk_size=10, progress=False)
    xr.testing.assert_identical(_stable(ds), _stable(full))


# ----------------------------------------------------------------------------- scale-out


_SHARD_SCRIPT = textwrap.dedent("""
    import sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import xarray as xr
    import jaxgames as jg
    from jaxgames import _sweep
    from jaxgames.models import bakshi_kleindorfer as bk

    assert len(jax.local_devices()) == 2, jax.local_devices()
    axes = {"f": np.linspace(0.1, 0.9, 7), "p": np.linspace(0.0, 1.0, 5)}
    both = jg.sweep(bk.noncooperative, bk.DEFAULT, axes, chunk_size=9, progress=False,
                    derivatives=["y_r"], wrt=["f"])  # all devices: each runs its tiles
    one = jg.sweep(bk.noncooperative, bk.DEFAULT, axes, chunk_size=9, progress=False,
                   derivatives=["y_r"], wrt=["f"], devices=1)
    assert both.attrs["devices"].startswith("2 device(s)"), both.attrs["devices"]
    assert one.attrs["devices"].startswith("1 device(s)"), one.attrs["devices"]
    fn, sharding = _sweep._compiled(bk.noncooperative, bk.Params, (), ("y_r",), ("f",), False, 2)
    assert len(sharding.device_set) == 2
    # On CPU devices each device runs its part of a chunk in the tile loop (shard_map).
    assert both.attrs["micro_batch"] == one.attrs["micro_batch"] == 1024
    for k in ("devices", "micro_batch"):
        both.attrs.pop(k), one.attrs.pop(k)
    both.attrs.pop("created"), one.attrs.pop("created")
    xr.testing.assert_identical(both, one)
    print("OK")
""")


def test_sharded_across_two_host_devices(tmp_path):
    script = tmp_path / "shard.py"
    script.write_text(_SHARD_SCRIPT)
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK" in proc.stdout


def test_dask_local_cluster_equals_single_process(tmp_path):
    distributed = pytest.importorskip("distributed")
    axes = {"f": np.linspace(0.1, 0.9, 9), "D_J": np.geomspace(1e6, 1e8, 4)}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        ds = jg.sweep(bk.noncooperative, bk.DEFAULT, axes, chunk_size=8,
                      store=tmp_path / "dask.zarr", dask=client, progress=False,
                      derivatives=["y_r"], wrt=["f"])
        workers = client.run(os.getpid)
    assert len(workers) == 2
    single = jg.sweep(bk.noncooperative, bk.DEFAULT, axes, chunk_size=8, progress=False,
                      derivatives=["y_r"], wrt=["f"])
    xr.testing.assert_identical(_stable(ds), _stable(single))


def test_progress_is_shown(capsys):
    jg.sweep(bk.noncooperative, bk.DEFAULT, {"f": np.linspace(0.1, 0.9, 20)}, chunk_size=5,
             progress=True)
    err = capsys.readouterr().err
    assert "100%" in err and "20.0/20.0" in err and "pt/s" in err


def test_jax_arrays_as_axes():
    ds = jg.sweep(bk.noncooperative, bk.DEFAULT, {"f": jax.numpy.linspace(0.1, 0.9, 3)},
                  progress=False)
    assert ds.sizes["f"] == 3


def test_micro_batch_gives_the_same_results():
    """micro_batch solves a chunk as lax.map over vmapped groups; the numbers are the same
    bits as one vmap over the chunk (the solver's vmap rule makes a lane's arithmetic
    independent of the batch width)."""
    axes = {"p": np.linspace(0.05, 0.95, 37), "f": [0.2, 0.5, 0.8]}
    plain = jg.sweep(bk.noncooperative, bk.FIGURE3[0], axes, progress=False,
                           micro_batch=10**6)
    grouped = jg.sweep(bk.noncooperative, bk.FIGURE3[0], axes, progress=False,
                             micro_batch=8)
    assert plain.attrs["micro_batch"] == 0 and grouped.attrs["micro_batch"] == 8
    for name in ("y_ss", "y_su", "y_r", "t_r", "status", "iterations", "residual"):
        np.testing.assert_array_equal(grouped[name].values, plain[name].values)
    with pytest.raises(ValueError, match="micro_batch"):
        jg.sweep(bk.noncooperative, bk.FIGURE3[0], axes, progress=False, micro_batch=0)


def test_cpu_default_tiles_wide_chunks():
    """On the CPU a chunk is solved as lax.map over vmapped tiles of at most 1,024 points by
    default (here 2 x 560 for 1,112 padded points; the same bits as one vmap for BK); a
    narrower chunk is one tile."""
    axes = {"p": np.linspace(0.05, 0.95, 41), "f": np.linspace(0.1, 0.9, 27)}  # 1,107 points
    tiled = jg.sweep(bk.noncooperative, bk.FIGURE3[0], axes, progress=False)
    plain = jg.sweep(bk.noncooperative, bk.FIGURE3[0], axes, progress=False,
                     micro_batch=10**6)
    assert tiled.attrs["micro_batch"] == 1024 and plain.attrs["micro_batch"] == 0
    for name in ("y_ss", "y_su", "y_r", "t_r", "status", "iterations", "residual"):
        np.testing.assert_array_equal(tiled[name].values, plain[name].values)
    small = jg.sweep(bk.noncooperative, bk.FIGURE3[0], {"p": [0.2, 0.5]}, progress=False)
    assert small.attrs["micro_batch"] == 1024  # one tile of 8 lanes, inside the loop too


def test_defender_attacker_bits_do_not_depend_on_chunking():
    """Chunks of 1, 7 and 64 points (batches of 8, 8, 64 lanes, each run as a tile inside the
    loop) give the same bits for defender_attacker, whose search amplifies a one-ulp difference
    (at the top level of a program XLA's CPU code for it differs in the last bits)."""
    from jaxgames.models import defender_attacker as da

    axes = {"v": np.geomspace(0.5, 5.0, 8), "V": np.geomspace(0.5, 20.0, 8)}
    runs = {c: jg.sweep(da.equilibrium_none, da.DEFAULT, axes, chunk_size=c, progress=False)
            for c in (64, 7, 1)}
    for c in (7, 1):
        for name in runs[64].data_vars:
            np.testing.assert_array_equal(runs[c][name].values, runs[64][name].values,
                                          err_msg=f"chunk {c}: {name}")


@pytest.mark.skipif(_sweep._mappings() is None, reason="needs Linux /proc")
def test_compiled_programs_are_released_before_the_mapping_limit(monkeypatch):
    """A process near the kernel's limit on memory mappings cannot map another compiled
    program (XLA crashes): a sweep releases the compiled programs first, and the results are
    the same bits after recompiling."""
    axes = {"p": [0.2, 0.5, 0.8], "f": [0.3, 0.6]}
    before = jg.sweep(bk.noncooperative, bk.FIGURE3[0], axes, progress=False)
    assert _sweep._compiled.cache_info().currsize > 0
    assert not _sweep.release_compiled_programs(share=1.0)
    assert _sweep._compiled.cache_info().currsize > 0
    monkeypatch.setattr(_sweep, "MAP_SHARE", 0.0)  # every sweep now counts as crowded
    released = []
    real = _sweep.release_compiled_programs
    monkeypatch.setattr(_sweep, "release_compiled_programs",
                        lambda share=None: released.append(real(share)) or released[-1])
    after = jg.sweep(bk.noncooperative, bk.FIGURE3[0], axes, progress=False)
    assert released == [True]
    assert _sweep._compiled.cache_info().currsize == 1  # this sweep's program, compiled again
    xr.testing.assert_identical(_stable(after), _stable(before))
