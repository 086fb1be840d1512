"""Safe files, no global state, bad input and interruptions (sweep and command line).

Overwriting deletes only a store jaxgames wrote; a float64 sweep leaves the caller's
``jax_enable_x64`` alone; a study too large for the machine is refused before anything is
allocated; paths are checked before the run; Ctrl-C stops a command-line sweep at once with
exit code 130 and keeps the finished chunks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
import xarray as xr

import jaxgames as jg
from jaxgames import _sweep, cli
from jaxgames._sweep import x64_context
from jaxgames.models import bakshi_kleindorfer as bk
from jaxgames.sweepfile import SweepFileError, load_sweep

AXES = {"f": [0.2, 0.5], "p": [0.1, 0.3, 0.7]}  # one small grid: one compilation shared
HEAD = 'model = "bakshi_kleindorfer"\nsolve = "noncooperative"\n'
GRID = "[axes]\nf = { values = [0.2, 0.5] }\np = { values = [0.1, 0.3, 0.7] }\n"
REPO = Path(__file__).parents[1]


def _sweep_small(**kwargs):
    return jg.sweep(bk.noncooperative, bk.DEFAULT, AXES, progress=False, **kwargs)


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("jaxgames sweep: error: "), err
    return lines[0]


# ----------------------------------------------------------------------------- overwrite


def _users_directory(path: Path) -> Path:
    path.mkdir()
    mine = path / "notes.txt"
    mine.write_text("a user's file\n")
    return mine


def test_overwrite_deletes_only_a_jaxgames_store(tmp_path):
    store = tmp_path / "s.zarr"
    mine = _users_directory(store)
    with pytest.raises(FileExistsError, match=f"{store} exists and is a directory that is not "
                                              "a jaxgames Zarr store"):
        _sweep_small(store=store, overwrite=True)
    assert mine.read_text() == "a user's file\n"
    # a Zarr store that jaxgames did not write is not replaced either
    other = tmp_path / "other.zarr"
    xr.Dataset({"x": ("i", np.arange(3.0))}).to_zarr(other, consolidated=False)
    with pytest.raises(FileExistsError, match="other.zarr exists and is a directory that is "
                                              "not a jaxgames Zarr store"):
        _sweep_small(store=other, overwrite=True)
    assert xr.open_zarr(other, consolidated=False)["x"].values.tolist() == [0.0, 1.0, 2.0]
    # a jaxgames store is replaced
    ours = tmp_path / "ours.zarr"
    _sweep_small(store=ours)
    assert _sweep.is_jaxgames_store(ours)
    ds = _sweep_small(store=ours, overwrite=True)
    assert ds.sizes == {"f": 2, "p": 3}


def test_cli_overwrite_refuses_a_users_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("s.toml").write_text(HEAD + 'output = "out.zarr"\n' + GRID)
    mine = _users_directory(tmp_path / "out.zarr")
    assert cli.main(["sweep", "s.toml", "--overwrite", "--no-progress",
                     "--no-compilation-cache"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "out.zarr exists and is a directory that is not a jaxgames Zarr store" in line
    assert "--overwrite replaces only" in line and "overwrite=True" not in line
    assert mine.read_text() == "a user's file\n"


# ----------------------------------------------------------------------------- precision


def test_float64_sweep_leaves_the_global_flag_alone(tmp_path):
    reference = _sweep_small(dtype="float64")  # in this x64 test process (conftest)
    with x64_context(False):  # as in a float32 user process
        assert not jax.config.jax_enable_x64
        ds = _sweep_small(dtype="float64")
        assert not jax.config.jax_enable_x64
        assert ds["y_r"].dtype == np.float64 and ds["f"].dtype == np.float64
        xr.testing.assert_identical(ds.drop_attrs(), reference.drop_attrs())
        # the sweep-file runner too (dtype float64 is the file's default)
        spec = load_sweep(_write(tmp_path / "s.toml", HEAD + f'output = "{tmp_path}/o.nc"\n'
                                 + GRID))
        ds = spec.run(progress=False)
        assert not jax.config.jax_enable_x64
        assert ds["y_r"].dtype == np.float64
        np.testing.assert_array_equal(ds["y_r"].values, reference["y_r"].values)
    assert jax.config.jax_enable_x64  # and the x64 setting of this process is intact


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- size


BIG = {"f": np.linspace(0.1, 0.9, 10**4), "p": np.linspace(0.0, 1.0, 10**4),
       "D_J": np.geomspace(1e6, 1e8, 10**4)}  # 10**12 points


def test_a_grid_too_large_is_refused_before_anything_is_allocated(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(_sweep.StudyTooLarge, match=r"axes: 1,000,000,000,000 points x \d+ B "
                                                   r"per point need about .* TB of memory, "
                                                   "more than the limit"):
        jg.sweep(bk.noncooperative, bk.DEFAULT, BIG, progress=False)
    with pytest.raises(_sweep.StudyTooLarge, match=r"TB of disk, more than the limit 1 GB; "
                                                   ".*max_disk=BYTES"):
        jg.sweep(bk.noncooperative, bk.DEFAULT, BIG, progress=False,
                 store=tmp_path / "big.zarr", max_disk="1GB")
    assert not (tmp_path / "big.zarr").exists()
    assert time.perf_counter() - t0 < 60  # refused from the sizes, not after filling memory
    # the limits are the user's to set
    with pytest.raises(_sweep.StudyTooLarge, match="of memory, more than the limit 1 kB"):
        _sweep_small(max_memory=1000)
    assert _sweep_small(max_memory="1GB").sizes == {"f": 2, "p": 3}


_GRID12 = ("[axes]\nf = { linspace = [0.1, 0.9, 1000000] }\n"
           "p = { linspace = [0.0, 1.0, 1000000] }\n")  # a 10**12-point grid


@pytest.mark.parametrize(("output", "body", "key", "resource"), [
    ("big.zarr", "[axes]\nf = { linspace = [0.1, 0.9, 1000000000000] }\n", "axes",
     "memory"),  # a 10**12-value axis: its values alone are 8 TB
    ("big.nc", _GRID12, "axes", "memory"),  # held in memory, written at the end
    ("big.zarr", 'max_disk = "1TB"\n' + _GRID12, "axes", "disk"),  # streamed to disk
    ("big.zarr", '[design]\nkind = "sobol"\nn = 1099511627776\nbounds = { f = [0.1, 0.9] }\n',
     "design.n", "memory"),  # 2**40 points
])
def test_a_sweep_file_too_large_is_refused_naming_the_key(tmp_path, output, body, key,
                                                          resource):
    path = _write(tmp_path / "big.toml", HEAD + f'output = "{tmp_path}/{output}"\n' + body)
    arg = "max_memory" if resource == "memory" else "max_disk"
    with pytest.raises(SweepFileError, match=rf"big.toml: {key}: [\d,]+ points x \d+ B per "
                                             rf"point need about .* TB of {resource}, more "
                                             rf"than the limit .*; .*{arg} = \"SIZE\" in the "
                                             rf"file or --{arg.replace('_', '-')} SIZE"):
        load_sweep(path)


def test_cli_size_limits(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "s.toml", HEAD + 'output = "out.nc"\n' + GRID)
    assert cli.main(["sweep", "s.toml", "--max-memory", "1kB", "--no-progress"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "s.toml: axes: 6 points" in line and "more than the limit 1 kB" in line
    assert "write a .zarr output" in line and "--max-memory SIZE" in line
    _write(tmp_path / "s.toml", HEAD + 'output = "out.nc"\nmax_memory = "1kB"\n' + GRID)
    assert cli.main(["sweep", "s.toml", "--no-progress"]) == 2
    assert "more than the limit 1 kB" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # a usage error of argparse
        cli.main(["sweep", "s.toml", "--max-memory", "lots"])
    assert exit_.value.code == 2
    assert "--max-memory: expected a size in bytes" in capsys.readouterr().err


# ----------------------------------------------------------------------------- paths


def test_store_paths_are_checked_before_the_run(tmp_path):
    with pytest.raises(ValueError, match=r"store='.*s.nc': a sweep's store is a Zarr store, "
                                         "its path ending in .zarr"):
        _sweep_small(store=tmp_path / "s.nc")
    with pytest.raises(FileNotFoundError, match="cannot resume, it does not exist"):
        _sweep_small(store=tmp_path / "none.zarr", resume=True)
    assert not (tmp_path / "none.zarr").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(PermissionError, match="is not a writable directory"):
        _sweep_small(store=tmp_path / "file" / "s.zarr")


def test_cli_paths_are_checked_before_the_sweep(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("figs").write_text("a file where a directory is expected")
    _write(tmp_path / "s.toml", HEAD + 'output = "out.zarr"\n' + GRID + textwrap_figure)
    ran = []
    monkeypatch.setattr(_sweep, "sweep", lambda *a, **k: ran.append(1))
    assert cli.main(["sweep", "s.toml", "--no-progress"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "figure[0].path: cannot write the figure figs/y_r.png: " in line
    assert "figs is not writable" in line
    assert "--figures DIR" in line
    assert not ran and not Path("out.zarr").exists()
    # --resume of a store that does not exist says so, with the flag's name
    assert cli.main(["sweep", "s.toml", "--resume", "--figures", "ok"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "out.zarr does not exist, so there is nothing to resume; run without --resume" in line
    # the flags, not the arguments, in an existing output's message
    Path("out.zarr").mkdir()
    assert cli.main(["sweep", "s.toml", "--figures", "ok"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "resume it (--resume) or replace it (--overwrite)" in line and "=True" not in line
    assert cli.main(["sweep", "s.toml", "--out", "x.csv"]) == 2
    assert "--out: x.csv must end in .zarr" in capsys.readouterr().err
    assert not ran


textwrap_figure = ('[[figure]]\nkind = "heatmap"\nvar = "y_r"\nx = "f"\ny = "p"\n'
                   'path = "figs/y_r.png"\n')


# ----------------------------------------------------------------------------- Ctrl-C


LONG = HEAD + """\
chunk_size = 64
[axes]
f = { linspace = [0.1, 0.9, 150] }
p = { linspace = [0.0, 1.0, 150] }
"""  # 22,500 points in 352 chunks: seconds of chunks after a compilation


def _popen_with_sigint(*args, **kwargs) -> subprocess.Popen:
    """``subprocess.Popen`` whose child starts with Ctrl-C's default disposition, as in a
    terminal. Run as a background job of a non-interactive shell (``.ci/run &``), pytest
    inherits SIGINT *ignored*, which the child would inherit too, and the command line rightly
    keeps an ignored SIGINT ignored (as Python does): the sweep would finish (exit 0) instead
    of testing the interrupt. A handled signal is reset to the default at ``exec``, so SIGINT
    is handled here while the child starts (no ``preexec_fn``: that forks a process in which
    JAX's threads run, which JAX warns about)."""
    old = signal.getsignal(signal.SIGINT)
    if old is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(*args, **kwargs)
    finally:
        signal.signal(signal.SIGINT, old)


def _start(tmp_path: Path, name: str) -> tuple[subprocess.Popen, Path]:
    sweep_file = _write(tmp_path / f"{name}.toml", LONG.replace(
        "chunk_size", f'output = "{name}.zarr"\nchunk_size'))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = _popen_with_sigint([sys.executable, "-m", "jaxgames", "sweep", str(sweep_file),
                             "--no-progress", "--no-compilation-cache"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    return proc, tmp_path / f"{name}.zarr"


def _wait_for(proc, condition, timeout=240.0):
    t0 = time.monotonic()
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended (rc {proc.returncode}) first: {proc.stderr.read()}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail("timed out waiting for the sweep")
        time.sleep(0.01)


def _interrupt(proc) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("Ctrl-C did not stop the sweep within 60 s")
    return proc.returncode, err


def test_ctrl_c_while_compiling_and_while_solving(tmp_path):
    # during compilation: the store exists (made before compiling), no chunk is done yet
    proc, store = _start(tmp_path, "compiling")
    _wait_for(proc, lambda: (store / _sweep._MARKER_DIR / "zarr.json").exists())
    assert not _sweep._done_chunks(os.fspath(store))
    rc, err = _interrupt(proc)
    assert rc == 130, err
    assert "interrupted; the finished chunks are kept in compiling.zarr: run again with " \
           "--resume" in err
    assert "Traceback" not in err and _sweep.is_jaxgames_store(store)
    # during chunks: the finished chunks stay marked (and complete), the rest resume later
    proc, store = _start(tmp_path, "solving")
    _wait_for(proc, lambda: len(_sweep._done_chunks(os.fspath(store))) >= 2)
    seen = _sweep._done_chunks(os.fspath(store))
    rc, err = _interrupt(proc)
    assert rc == 130, err
    assert "run again with --resume" in err and "Traceback" not in err
    done = _sweep._done_chunks(os.fspath(store))
    assert seen <= done and len(done) < 352
    with pytest.raises(ValueError, match="chunks are not complete; resume"):
        jg.open_sweep(store)
    ds = xr.open_zarr(store, consolidated=False)
    layout = _sweep.Layout.make(("f", "p"), (150, 150), 64)
    for i in sorted(done)[:3]:  # a kept chunk holds its solved values
        _, _, region = layout.chunk(i)
        assert np.isfinite(ds["y_r"].isel(region).values).all()


def _loading_jaxlib(pid: int) -> bool:
    """Whether the process has begun to import jax (its compiled extension is mapped)."""
    try:
        return "jaxlib" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_ctrl_c_while_importing_jax(tmp_path):
    """jax's import installs a garbage-collection hook in which a KeyboardInterrupt is
    swallowed (the sweep ran on and exited 0): the command line's guard must be in place
    before it (``import jaxgames`` imports no jax; ``cli.main`` installs the guard first)."""
    # the moment jax's extension is loaded (jax's import has begun: its gc hook follows), and
    # a moment later (the hook installed, the import going on)
    for i, delay in enumerate((0.0, 0.3)):
        proc, store = _start(tmp_path, f"importing{i}")
        _wait_for(proc, lambda p=proc: _loading_jaxlib(p.pid), timeout=60)
        time.sleep(delay)
        rc, err = _interrupt(proc)
        assert rc == 130, err
        assert "jaxgames sweep: interrupted" in err, err
        assert "Traceback" not in err and "Exception ignored" not in err, err
        assert not _sweep._done_chunks(os.fspath(store))


def test_overwrite_of_a_netcdf_output_replaces_only_a_jaxgames_file(tmp_path):
    pytest.importorskip("h5netcdf")
    spec = load_sweep(_write(tmp_path / "s.toml", HEAD + f'output = "{tmp_path}/o.nc"\n'
                             + GRID))
    theirs = tmp_path / "theirs.nc"
    xr.Dataset({"x": ("i", np.arange(3.0))}).to_netcdf(theirs, engine="h5netcdf")
    with pytest.raises(SweepFileError, match="theirs.nc exists and is not a netCDF file "
                                             "written by jaxgames; --overwrite replaces only"):
        spec.check_run_options(out=theirs, overwrite=True, cli=True)
    ours = tmp_path / "ours.nc"
    xr.Dataset(attrs={"jaxgames_version": jg.__version__}).to_netcdf(ours, engine="h5netcdf")
    assert spec.check_run_options(out=ours, overwrite=True) == ours
    assert xr.open_dataset(theirs, engine="h5netcdf")["x"].size == 3


def test_a_marker_being_written_is_not_a_marker(tmp_path):
    # a process killed (or stopped by Ctrl-C) while marking chunk 3 leaves its temporary file
    d = tmp_path / "s.zarr" / _sweep._MARKER_DIR
    d.mkdir(parents=True)
    (d / "chunk-00000002").write_text("done\n")
    (d / "chunk-00000003.tmp4242").write_text("do")
    assert _sweep._done_chunks(os.fspath(tmp_path / "s.zarr")) == {2}
