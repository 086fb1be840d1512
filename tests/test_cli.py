"""The command line: sweep files, plots, Figure 3 reproduction, info, usage errors."""

import textwrap

import numpy as np
import pytest
import xarray as xr

from jaxgames import cli

GRID_FILE = """\
model = "bakshi_kleindorfer"
solve = "noncooperative"
output = "res/grid.zarr"
chunk_size = 8

[axes]
f = { linspace = [0.2, 0.8, 3] }
p = { values = [0.1, 0.3, 0.5, 0.7] }

[[figure]]
kind = "heatmap"
var = "t_r"
x = "f"
y = "p"
path = "figs/t_r.png"
"""


def _one_error_line(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"jaxgames {command}: error: "), err
    return lines[0]


def test_figure3_reproduces_every_printed_value(capsys, tmp_path):
    png = tmp_path / "fig3.png"
    assert cli.main(["figure3", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "95 of 95 printed values reproduced digit for digit" in out
    assert " NO" not in out
    assert png.stat().st_size > 10_000


def test_info_lists_versions_and_devices(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "jax " in out and "device" in out
    for mod in ("xarray", "zarr", "dask", "distributed", "tqdm", "h5netcdf"):
        assert f"\n{mod} " in out, mod


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxgames: error: argument command: invalid")


@pytest.mark.parametrize("command", ["sweep", "plot", "figure3", "info"])
def test_help_documents_every_flag(capsys, command):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for action in sub._actions:
        for flag in action.option_strings:
            assert flag in text, flag
        if action.help is not None and action.dest != "help":
            words = " ".join(action.help.split()).split()[:4]
            assert " ".join(words) in text, (action.dest, words)
        if not action.option_strings:  # positional
            assert action.metavar in text


def test_sweep_bad_file_exits_2_with_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(GRID_FILE.replace("[0.2, 0.8, 3]", "[0.5, 1.5, 3]"))
    assert cli.main(["sweep", str(bad)]) == 2
    line = _one_error_line(capsys.readouterr().err, "sweep")
    assert line.endswith("bad.toml: axes.f: value 1.5 is outside the allowed range [0, 1] of "
                         "parameter f")
    assert cli.main(["sweep", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml: no such file" in _one_error_line(capsys.readouterr().err, "sweep")


@pytest.mark.parametrize("argv, message", [
    (["sweep", "F", "--chunk-size", "0"], "argument --chunk-size: expected a positive integer"),
    (["sweep", "F", "--chunk-size", "2.5"], "argument --chunk-size"),
    (["sweep"], "the following arguments are required: FILE"),
    (["sweep", "F", "--bogus"], "unrecognized arguments: --bogus"),
    (["plot", "x.zarr", "--kind", "pie", "--png", "a.png"], "argument --kind: invalid choice"),
])
def test_bad_usage_exits_2_with_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert message in _one_error_line(capsys.readouterr().err, argv[0])


@pytest.fixture
def tiny_zarr(tmp_path):
    """A small grid dataset written by hand (no solving)."""
    f, p, d = [0.2, 0.5, 0.8], [0.1, 0.3, 0.5, 0.7], [1e6, 1e7]
    shape = (3, 4, 2)
    ds = xr.Dataset(
        {"t_r": (("f", "p", "D_J"), np.arange(24.0).reshape(shape) / 3, {"units": "$"}),
         "status": (("f", "p", "D_J"), np.zeros(shape, np.int32)),
         "converged": (("f", "p", "D_J"), np.ones(shape, bool))},
        coords={"f": f, "p": p, "D_J": d})
    path = tmp_path / "tiny.zarr"
    ds.to_zarr(path, consolidated=False)
    return path


@pytest.mark.parametrize("argv, message", [
    (["--kind", "heatmap", "--var", "y_x", "--x", "f", "--y", "p", "--sel", "D_J=1e6"],
     "no variable 'y_x'; its variables are"),
    (["--kind", "heatmap", "--var", "t_r", "--x", "f", "--y", "theta", "--sel", "D_J=1e6"],
     "--y theta: not a dimension of 't_r'; its dimensions are f, p, D_J"),
    (["--kind", "heatmap", "--var", "t_r", "--x", "f", "--y", "p"],
     "'t_r' has dimensions D_J besides f and p; fix them with --sel"),
    (["--kind", "heatmap", "--var", "t_r", "--x", "f", "--y", "p", "--sel", "DJ=1e6"],
     "--sel 'DJ=1e6': 'DJ' is not a dimension of the dataset"),
    (["--kind", "heatmap", "--var", "t_r", "--x", "f", "--y", "p", "--sel", "D_J"],
     "expected NAME=VALUE"),
    (["--kind", "heatmap", "--var", "t_r", "--x", "f", "--y", "p", "--sel", "D_J=big"],
     "'big' is not a number"),
    (["--kind", "heatmap", "--var", "t_r", "--x", "f"], "--kind heatmap needs --y"),
    (["--kind", "tornado", "--output", "t_r", "--x", "f"], "--kind tornado does not take --x"),
    (["--kind", "tornado", "--output", "t_r"], "is not a tornado dataset"),
    (["--kind", "one_way", "--var", "t_r"], "is not a one-way dataset"),
    (["--kind", "region_map", "--var", "t_r", "--x", "f", "--y", "p", "--sel", "D_J=1e6"],
     "region_map needs categorical"),
])
def test_plot_errors_exit_2_with_one_line(capsys, tiny_zarr, tmp_path, argv, message):
    png = str(tmp_path / "x.png")
    assert cli.main(["plot", str(tiny_zarr), *argv, "--png", png]) == 2
    assert message in _one_error_line(capsys.readouterr().err, "plot")
    assert not (tmp_path / "x.png").exists()


def test_plot_missing_dataset_exits_2(capsys, tmp_path):
    assert cli.main(["plot", str(tmp_path / "nope.zarr"), "--kind", "tornado", "--output", "y",
                     "--png", str(tmp_path / "x.png")]) == 2
    assert "no such dataset" in _one_error_line(capsys.readouterr().err, "plot")


def test_plot_heatmap_and_region_map(capsys, tiny_zarr, tmp_path):
    for kind, var in (("heatmap", "t_r"), ("region_map", "status")):
        png = tmp_path / f"{kind}.png"
        assert cli.main(["plot", str(tiny_zarr), "--kind", kind, "--var", var, "--x", "p",
                         "--y", "f", "--sel", "D_J=1e7", "--png", str(png)]) == 0
        assert png.stat().st_size > 5000
        assert f"figure written to {png}" in capsys.readouterr().out


def test_sweep_end_to_end(capsys, tmp_path, monkeypatch):
    """A 3 x 4 grid into a Zarr store: exit 0, summary, dataset, figure; then reruns."""
    monkeypatch.chdir(tmp_path)  # the file's relative paths resolve here
    (tmp_path / "grid.toml").write_text(textwrap.dedent(GRID_FILE))
    assert cli.main(["sweep", "grid.toml"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "points       12 (3 f x 4 p)" in out
    assert "converged    100.0% (12 of 12 points)" in out
    assert "assumptions  100.0%" in out
    assert "points/s" in out and "wall time" in out
    assert "output       res/grid.zarr" in out
    assert "figures      figs/t_r.png" in out
    assert "100%" in captured.err  # the progress bar
    ds = xr.open_zarr(tmp_path / "res/grid.zarr", consolidated=False)
    assert ds.sizes == {"f": 3, "p": 4} and bool(ds["converged"].all())
    assert ds.attrs["model"] == "bakshi_kleindorfer"
    assert (tmp_path / "figs/t_r.png").stat().st_size > 10_000

    # The output exists: refused without --resume/--overwrite (exit 2, before any work).
    assert cli.main(["sweep", "grid.toml", "--no-progress"]) == 2
    assert "res/grid.zarr exists; resume it" in _one_error_line(capsys.readouterr().err, "sweep")
    # Resuming a finished sweep solves nothing and gives the same dataset.
    assert cli.main(["sweep", "grid.toml", "--resume", "--no-progress"]) == 0
    assert "converged    100.0%" in capsys.readouterr().out
    again = xr.open_zarr(tmp_path / "res/grid.zarr", consolidated=False)
    xr.testing.assert_equal(again.load(), ds.load())

    # Another figure from the written dataset.
    png = tmp_path / "y_r.png"
    assert cli.main(["plot", "res/grid.zarr", "--kind", "heatmap", "--var", "y_r", "--x", "f",
                     "--y", "p", "--png", str(png)]) == 0
    assert png.stat().st_size > 10_000


def _sensitivity_datasets():
    """Hand-made one-way, tornado and Sobol datasets in the shapes of jaxgames.sensitivity."""
    params, outputs = ["f", "p"], ["y_r", "t_r"]
    value = np.array([[0.1, 0.2, 0.3], [0.2, 0.3, 0.4]])
    one = xr.Dataset(
        {"y_r": (("parameter", "step"), value * 10, {"units": "$"}),
         "converged": (("parameter", "step"), np.ones((2, 3), bool))},
        coords={"parameter": params, "step": np.arange(3), "value": (("parameter", "step"), value),
                "relative": (("parameter", "step"), value / value[:, 1:2])},
        attrs={"base_params": '{"f": 0.2, "p": 0.3}'})
    tor = xr.Dataset(
        {"low": (("output", "parameter"), [[1.0, 2.0], [3.0, 4.0]]),
         "high": (("output", "parameter"), [[2.0, 1.0], [5.0, 3.0]]),
         "base": (("output",), [1.5, 4.0]),
         "swing": (("output", "parameter"), [[1.0, 1.0], [2.0, 1.0]]),
         "converged": (("output", "parameter"), np.ones((2, 2), bool))},
        coords={"output": outputs, "parameter": params, "param_low": ("parameter", [0.1, 0.2]),
                "param_high": ("parameter", [0.3, 0.4])})
    sob = xr.Dataset(
        {k: (("output", "parameter"), v) for k, v in
         {"S1": [[0.6, 0.3], [0.5, 0.4]], "S1_conf": [[0.05, 0.05], [0.05, 0.05]],
          "ST": [[0.7, 0.35], [0.6, 0.45]], "ST_conf": [[0.05, 0.05], [0.05, 0.05]]}.items()},
        coords={"output": outputs, "parameter": params}, attrs={"n_base": 64, "seed": 0})
    return one, tor, sob


def test_plot_sensitivity_datasets(capsys, tmp_path):
    pytest.importorskip("h5py")
    one, tor, sob = _sensitivity_datasets()
    for name, ds, argv in (("one.nc", one, ["--kind", "one_way", "--var", "y_r"]),
                           ("tor.nc", tor, ["--kind", "tornado", "--output", "t_r"]),
                           ("sob.nc", sob, ["--kind", "sobol", "--output", "y_r"])):
        ds.to_netcdf(tmp_path / name, engine="h5netcdf")
        png = tmp_path / f"{name}.png"
        assert cli.main(["plot", str(tmp_path / name), *argv, "--png", str(png)]) == 0, name
        assert png.stat().st_size > 5000
    assert cli.main(["plot", str(tmp_path / "tor.nc"), "--kind", "tornado", "--output", "W",
                     "--png", str(tmp_path / "x.png")]) == 2
    line = _one_error_line(capsys.readouterr().err, "plot")
    assert "--output W: not in the dataset; its outputs are y_r, t_r" in line
