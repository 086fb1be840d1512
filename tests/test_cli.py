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
         "converged": (("f", "p", "D_J"), np.ones(shape, bool)),
         "f_bar": (("f", "p", "D_J"), np.full(shape, 0.5), {"description": "threshold of f"})},
        coords={"f": f, "p": p, "D_J": d})
    path = tmp_path / "tiny.zarr"
    ds.to_zarr(path, consolidated=False)
    return path


@pytest.mark.parametrize("argv, message", [
    (["--kind", "heatmap", "--var", "y_x", "--x", "f", "--y", "p", "--sel", "D_J=1e6"],
     "--var: unknown variable 'y_x'; choose from converged, f_bar, status, t_r"),
    (["--kind", "heatmap", "--var", "t_r", "--x", "f", "--y", "theta", "--sel", "D_J=1e6"],
     "--y: unknown axis 'theta'; choose from f, p, D_J"),
    (["--kind", "heatmap", "--var", "t_r", "--x", "f", "--y", "p"],
     "--sel: axes D_J are neither plotted nor fixed; add --sel D_J=VALUE"),
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
     "--var: unknown integer or boolean variable 't_r'; choose from converged, status"),
    (["--kind", "line", "--var", "t_r"], "--kind line needs --x"),
    (["--kind", "line", "--var", "t_r", "--x", "f", "--y", "p"], "--kind line does not take --y"),
    (["--kind", "line", "--var", "t_r", "--x", "f", "--by", "f", "--sel", "p=0.3"],
     "--by: f is already an axis of the figure; --by needs another axis (one line per "
     "value)"),
    (["--kind", "line", "--var", "t_r", "--x", "f", "--by", "theta"],
     "--by: unknown axis 'theta'; choose from f, p, D_J"),
    (["--kind", "line", "--var", "t_r", "--x", "f"],
     "--sel: axes p, D_J are neither plotted nor fixed; add --sel p=VALUE"),
    (["--kind", "line", "--var", "t_r", "--x", "f", "--by", "D_J", "--sel", "p=0.3",
      "D_J=1e6"], "--sel D_J: D_J is an axis of the figure; it cannot be fixed too"),
    (["--kind", "line", "--var", "t_r", "--x", "f", "--by", "D_J", "--sel", "p=0.3",
      "--xmarks", "f_bar,rho"],
     "--xmarks: unknown real-valued variable 'rho'; choose from f_bar, t_r"),
    (["--kind", "line", "--var", "t_r", "--x", "f", "--xmarks", ","], "--xmarks ','"),
    (["--kind", "line", "--var", "t_r", "--x", "f", "--facet", "D_J"],
     "--kind line does not take --facet"),
    (["--kind", "heatmap", "--var", "t_r", "--x", "f", "--y", "p", "--facet", "f"],
     "--facet: f is already an axis of the figure; --facet needs another axis"),
    (["--kind", "heatmap", "--var", "t_r", "--x", "f", "--y", "p", "--facet", "theta"],
     "--facet: unknown axis 'theta'; choose from f, p, D_J"),
    (["--kind", "heatmap", "--var", "t_r", "--x", "f", "--y", "p", "--facet", "D_J", "--sel",
      "D_J=1e6"], "--sel D_J: D_J is an axis of the figure"),
    (["--kind", "heatmap", "--var", "t_r", "--x", "f", "--y", "p", "--by", "D_J"],
     "--kind heatmap does not take --by"),
    (["--kind", "region_map", "--var", "status", "--x", "f", "--y", "p", "--facet", "D_J"],
     "--kind region_map does not take --facet"),
    (["--kind", "heatmap", "--var", "t_r", "--x", "f", "--y", "p", "--sel", "D_J=1e6",
      "--labels", "0=a"], "--kind heatmap does not take --labels"),
    (["--kind", "heatmap", "--var", "t_r", "--x", "f", "--y", "p", "--sel", "D_J=1e6",
      "--no-sharey"], "--kind heatmap does not take --sharey/--no-sharey"),
    (["--kind", "region_map", "--var", "status", "--x", "f", "--y", "p", "--sel", "D_J=1e6",
      "--labels", "zero=solved"], "--labels 'zero=solved': the category 'zero' is not an "
     "integer or true/false"),
    (["--kind", "region_map", "--var", "status", "--x", "f", "--y", "p", "--sel", "D_J=1e6",
      "--labels", "0"], "--labels '0': expected VALUE=TEXT"),
    (["--kind", "one_way", "--var", "t_r", "--x", "f"],
     "tiny.zarr is not a one-way dataset (dims parameter, step)"),
    (["--kind", "one_way", "--var", "t_r", "--background", "status"],
     "--kind one_way does not take --background"),
    (["--kind", "one_way_regions", "--var", "t_r"], "--kind one_way_regions needs --background"),
    (["--kind", "one_way_regions", "--var", "t_r", "--background", "status", "--by", "p"],
     "--kind one_way_regions does not take --by"),
    (["--kind", "one_way_regions", "--var", "t_r", "--background", "status"],
     "is not a one-way dataset"),
    (["--kind", "tornado", "--output", "t_r", "--sharey"],
     "--kind tornado does not take --sharey/--no-sharey"),
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


ISB_FILE = """\
model = "isb"
solve = "simulate"
output = "isb.nc"
replications = 3
seed = 1

[axes]
structure = { values = ["S", "NT"] }
capacity = { values = [60.0, 80.0] }

[[figure]]
kind = "line"
var = "cost_chain"
x = "capacity"
by = "structure"
reduce = "mean"
path = "isb.png"
"""


def test_sweep_of_a_simulation_summarises_its_points(capsys, tmp_path, monkeypatch):
    """A model without convergence to report (``isb``: ``status`` and ``assumptions_hold``,
    no ``converged``) gets the same summary: exit 0, its points counted over the sweep's dims
    and replications (the summary used to fail after a finished sweep: exit 1)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "isb.toml").write_text(ISB_FILE)
    assert cli.main(["sweep", "isb.toml", "--no-progress"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "isb.simulate (4 points x 3 replications, [axes], float64)" in captured.err
    assert "points       12 (2 structure x 2 capacity x 3 replication)" in out, out
    assert "converged" not in out
    assert "assumptions  100.0% of points satisfy the model's assumptions (12 of 12)" in out, out
    assert "figures      isb.png" in out
    ds = xr.load_dataset(tmp_path / "isb.nc")
    assert ds["status"].shape == (2, 2, 3) and bool(ds["assumptions_hold"].all())
    assert (tmp_path / "isb.png").stat().st_size > 10_000


def test_sweep_on_two_cores_gives_the_same_dataset(tmp_path, monkeypatch):
    """``--cores 2``: JAX sees two CPU devices and each chunk's tiles are split over them
    (in a subprocess: the device count is fixed when JAX starts); the values are those of the
    one-device run in this process."""
    import os
    import subprocess
    import sys

    monkeypatch.chdir(tmp_path)
    (tmp_path / "grid.toml").write_text(textwrap.dedent(GRID_FILE))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "jaxgames.cli", "sweep", "grid.toml", "--cores",
                           "2", "--out", "two.nc", "--no-progress", "--no-compilation-cache"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert cli.main(["sweep", "grid.toml", "--out", "one.nc", "--no-progress"]) == 0
    two, one = xr.load_dataset("two.nc"), xr.load_dataset("one.nc")
    assert two.attrs["devices"].startswith("2 device(s)"), two.attrs["devices"]
    assert one.attrs["devices"].startswith("1 device(s)"), one.attrs["devices"]
    for k in ("devices", "created"):
        two.attrs.pop(k), one.attrs.pop(k)
    xr.testing.assert_identical(two, one)


def _sensitivity_datasets():
    """Hand-made one-way, tornado and Sobol datasets in the shapes of jaxgames.sensitivity."""
    params, outputs = ["f", "p"], ["y_r", "t_r"]
    value = np.array([[0.1, 0.2, 0.3], [0.2, 0.3, 0.4]])
    one = xr.Dataset(
        {"y_r": (("parameter", "step"), value * 10, {"units": "$"}),
         "I": (("parameter", "step"), value * 3, {"units": "unit"}),
         "case": (("parameter", "step"), np.array([[0, 0, 1], [1, 1, 2]], np.int32)),
         "flat": (("parameter",), np.array([0, 1], np.int32)),
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
    assert "--output: unknown output of the dataset 'W'; choose from y_r, t_r" in line


@pytest.fixture
def drawn(monkeypatch):
    """The figures ``jaxgames plot`` saves (still written to disk)."""
    from jaxgames import plots

    figures = []
    save = plots.save

    def recording_save(fig, path, *args, **kwargs):
        figures.append(fig)
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(plots, "save", recording_save)
    return figures


def _legend_texts(fig) -> list[str]:
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    return [t.get_text() for leg in legends if leg is not None for t in leg.get_texts()]


def test_plot_line_by_and_xmarks(capsys, tiny_zarr, tmp_path, drawn):
    png = tmp_path / "line.png"
    assert cli.main(["plot", str(tiny_zarr), "--kind", "line", "--var", "t_r", "--x", "f",
                     "--by", "D_J", "--sel", "p=0.3", "--xmarks", "f_bar",
                     "--png", str(png)]) == 0
    assert png.stat().st_size > 5000
    assert f"figure written to {png}" in capsys.readouterr().out
    texts = _legend_texts(drawn[-1])
    assert "D_J = 1e6" in texts and "D_J = 1e7" in texts  # one line per value of --by
    assert sum("(f_bar) = 0.5" in t for t in texts) == 2  # the threshold, in each line
    # several variables in one panel, every other dim fixed
    png = tmp_path / "lines.png"
    assert cli.main(["plot", str(tiny_zarr), "--kind", "line", "--var", "t_r,f_bar", "--x",
                     "p", "--sel", "f=0.5", "D_J=1e6", "--png", str(png)]) == 0
    assert png.stat().st_size > 5000
    assert {"t_r", "f_bar"} <= set(_legend_texts(drawn[-1]))


def test_plot_heatmap_facet_and_region_map_labels(tiny_zarr, tmp_path, drawn):
    png = tmp_path / "facet.png"
    assert cli.main(["plot", str(tiny_zarr), "--kind", "heatmap", "--var", "t_r", "--x", "p",
                     "--y", "f", "--facet", "D_J", "--png", str(png)]) == 0
    assert png.stat().st_size > 5000
    titles = [ax.get_title() for ax in drawn[-1].axes]
    assert "D_J = 1e6" in titles and "D_J = 1e7" in titles  # one panel per value
    assert len(drawn[-1].axes) == 3  # two panels and one shared colour bar
    png = tmp_path / "regions.png"
    assert cli.main(["plot", str(tiny_zarr), "--kind", "region_map", "--var", "status", "--x",
                     "p", "--y", "f", "--sel", "D_J=1e7", "--labels", "0=solved",
                     "4=invalid input", "--png", str(png)]) == 0
    assert png.stat().st_size > 5000
    assert "solved" in _legend_texts(drawn[-1])




def _shared_y(fig) -> bool:
    a, b = fig.axes[:2]
    return a.get_shared_y_axes().joined(a, b)


def test_plot_one_way_regions_and_sharey(capsys, tmp_path, drawn):
    pytest.importorskip("h5py")
    one, _, _ = _sensitivity_datasets()
    path = tmp_path / "one.nc"
    one.to_netcdf(path, engine="h5netcdf")

    def plot(*argv):
        png = tmp_path / "x.png"
        png.unlink(missing_ok=True)
        code = cli.main(["plot", str(path), *argv, "--png", str(png)])
        if code == 0:
            assert png.stat().st_size > 5000
        return code

    # outputs with different units over the case; labels for some categories
    assert plot("--kind", "one_way_regions", "--var", "y_r,I", "--background", "case",
                "--labels", "0=no case", "2=case two") == 0
    fig = drawn[-1]
    texts = _legend_texts(fig)
    assert {"no case", "case = 1", "case two"} <= set(texts)
    assert not _shared_y(fig)  # one_way_regions: one y axis per panel by default
    assert plot("--kind", "one_way_regions", "--var", "y_r", "--background", "case", "--x",
                "value", "--sharey") == 0
    assert _shared_y(drawn[-1])
    assert drawn[-1].axes[0].get_xlabel() == "f"  # the value, not "f / base value"
    # one_way: shared by default, --no-sharey one y axis per panel
    assert plot("--kind", "one_way", "--var", "y_r") == 0
    assert _shared_y(drawn[-1])
    assert plot("--kind", "one_way", "--var", "y_r", "--no-sharey", "--x", "value") == 0
    assert not _shared_y(drawn[-1])
    capsys.readouterr()

    for argv, message in (
            (("--background", "nope"), "--background: unknown integer or boolean variable "
                                       "'nope'; choose from case, converged, y_r"),
            (("--background", "I"), "--background: unknown integer or boolean variable 'I'"),
            # an integer variable over (parameter) only: not a background of the steps
            (("--background", "flat"), "--background: unknown integer or boolean variable "
                                       "'flat'"),
            (("--background", "case", "--x", "bogus"), "--x: unknown x 'bogus'; choose from "
                                                       "relative, value")):
        assert plot("--kind", "one_way_regions", "--var", "y_r", *argv) == 2, argv
        assert message in _one_error_line(capsys.readouterr().err, "plot")
    assert plot("--kind", "one_way", "--var", "y_r,I") == 2  # units differ: one_way_regions
    assert "different units" in _one_error_line(capsys.readouterr().err, "plot")
