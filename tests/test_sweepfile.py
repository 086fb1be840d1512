"""Sweep files: strict parsing (every class of error names its key), plumbing into the engine."""

import functools
import json
import re
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import jaxgames
from jaxgames import sweepfile
from jaxgames.models import bakshi_kleindorfer as bk
from jaxgames.sweepfile import SweepFileError, load_sweep

SWEEPS = sorted((Path(__file__).parents[1] / "sweeps").glob("*.toml"))

HEAD = """\
model = "bakshi_kleindorfer"
solve = "noncooperative"
output = "out.zarr"
"""
GRID = """\
[axes]
f = { linspace = [0.2, 0.8, 3] }
p = { values = [0.1, 0.3, 0.5, 0.7] }
"""


def write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path, text):
    return load_sweep(write(tmp_path, text))


def error(tmp_path, text) -> str:
    with pytest.raises(SweepFileError) as exc:
        load(tmp_path, text)
    return str(exc.value)


# ----------------------------------------------------------------------------- good files


def test_minimal_grid_file_parses_to_the_spec(tmp_path):
    spec = load(tmp_path, HEAD + GRID)
    assert spec.model == "bakshi_kleindorfer" and spec.solve == ("noncooperative",)
    assert spec.output == Path("out.zarr") and spec.mode == "axes"
    assert spec.dtype == "float64" and spec.chunk_size is None and spec.figures == ()
    assert spec.base == bk.DEFAULT
    assert list(spec.axes) == ["f", "p"]  # file order = dim order
    np.testing.assert_array_equal(spec.axes["f"], [0.2, 0.5, 0.8])
    np.testing.assert_array_equal(spec.axes["p"], [0.1, 0.3, 0.5, 0.7])
    assert spec.n_points == 12
    assert spec.derivatives == () and spec.wrt is None and spec.elasticities is False
    assert spec.solve_function() is bk.noncooperative


def test_full_grid_file(tmp_path):
    spec = load(tmp_path, """\
        model = "bakshi_kleindorfer"
        solve = "first_best"
        output = "r/x.nc"
        dtype = "float32"
        chunk_size = 1024
        description = "First Best over D_J"
        derivatives = ["y_rs", "W"]
        wrt = ["D_J"]
        elasticities = true
        [base]
        p = 0.5
        D_J = 20000000          # an integer is a number
        [axes]
        D_J = { geomspace = [1e6, 1e9, 4] }
        f = { values = [0.2, 0.4] }
        [[figure]]
        kind = "heatmap"
        var = "dW_dD_J"
        x = "D_J"
        y = "f"
        levels = [0.0, 0.5]
        path = "figs/a.png"
        [[figure]]
        kind = "line"
        var = ["elasticity_W_D_J", "y_rs"]
        x = "D_J"
        sel = { f = 0.4 }
        title = "t"
        path = "figs/b.svg"
        [[figure]]
        kind = "region_map"
        var = "status"
        x = "f"
        y = "D_J"
        labels = { "0" = "solved", "1" = "max steps" }
        path = "figs/c.pdf"
    """)
    assert spec.base == bk.DEFAULT._replace(p=0.5, D_J=2e7)
    assert all(isinstance(v, float) for v in spec.base)
    np.testing.assert_allclose(spec.axes["D_J"], [1e6, 1e7, 1e8, 1e9])
    assert (spec.dtype, spec.chunk_size, spec.description) == ("float32", 1024,
                                                                "First Best over D_J")
    assert spec.derivatives == ("y_rs", "W") and spec.wrt == ("D_J",) and spec.elasticities
    heat, line, region = spec.figures
    assert (heat.kind, heat.var, heat.x, heat.y, heat.levels) == (
        "heatmap", "dW_dD_J", "D_J", "f", (0.0, 0.5))
    assert line.var == ("elasticity_W_D_J", "y_rs") and line.sel == {"f": 0.4}
    assert line.title == "t" and line.path == Path("figs/b.svg")
    assert region.labels == {0: "solved", 1: "max steps"}


def test_design_file(tmp_path):
    spec = load(tmp_path, HEAD + """\
        [design]
        kind = "sobol"
        n = 64
        seed = 7
        bounds = { f = [0.1, 0.9], D_J = [1e6, 1e8, "log"] }
    """)
    d = spec.design
    assert spec.mode == "design" and isinstance(d, jaxgames.design.Design)
    assert (d.kind, d.size, d.seed, d.names) == ("sobol", 64, 7, ("f", "D_J"))
    assert d.bounds["D_J"] == (1e6, 1e8, "log")
    assert d.points["D_J"].min() >= 1e6 and d.points["D_J"].max() <= 1e8
    again = load(tmp_path, HEAD + "[design]\nkind='sobol'\nn=64\nseed=7\n"
                 "bounds={f=[0.1, 0.9], D_J=[1e6, 1e8, 'log']}\n").design
    np.testing.assert_array_equal(d.points["f"], again.points["f"])  # the seed reproduces it
    lhs = load(tmp_path, HEAD + "[design]\nkind='latin_hypercube'\nn=10\n"
               "bounds={p=[0, 1]}\n").design
    assert (lhs.kind, lhs.size, lhs.seed) == ("latin_hypercube", 10, 0)


def test_design_takes_the_files_memory_limit(tmp_path, monkeypatch):
    """The design is drawn under the file's ``max_memory``, the limit its size was checked
    against, not the memory available (the design's own default)."""
    from jaxgames import _sweep

    text = HEAD + "[design]\nkind='sobol'\nn=64\nbounds={f=[0.1, 0.9]}\n"
    monkeypatch.setattr(_sweep, "memory_available", lambda: 1000)  # a machine short of it
    assert "design.n" in error(tmp_path, text)
    assert load(tmp_path, 'max_memory = "1GB"\n' + text).design.size == 64


def test_oneway_and_tornado_files(tmp_path):
    one = load(tmp_path, HEAD + """\
        [oneway]
        n = 5
        ranges = { f = [0.1, 0.9], D_J = [1e6, 1e8, "log"] }
        [[figure]]
        kind = "one_way"
        outputs = ["y_r", "y_ss"]
        path = "o.png"
    """)
    assert one.mode == "oneway"
    assert one.study == {"n": 5, "ranges": {"f": (0.1, 0.9), "D_J": (1e6, 1e8, "log")}}
    assert one.figures[0].var == ("y_r", "y_ss") and one.figures[0].x == "relative"
    tor = load(tmp_path, """\
        model = "bakshi_kleindorfer"
        solve = ["noncooperative", "first_best"]
        output = "t.nc"
        [tornado]
        outputs = ["noncooperative_t_r", "first_best_W"]
        relative = [0.8, 1.2]
        params = ["f", "p"]
        [[figure]]
        kind = "tornado"
        output = "first_best_W"
        top = 2
        path = "t.png"
    """)
    assert tor.study == {"outputs": ("noncooperative_t_r", "first_best_W"),
                         "relative": (0.8, 1.2), "params": ("f", "p")}
    assert (tor.figures[0].var, tor.figures[0].top) == ("first_best_W", 2)
    fn = tor.solve_function()
    assert fn == jaxgames.combine({"noncooperative": bk.noncooperative,
                                   "first_best": bk.first_best})


GRID3 = """\
[axes]
f = { linspace = [0.2, 0.8, 3] }
p = { values = [0.1, 0.3, 0.5, 0.7] }
alpha_r = { values = [2e-5, 4e-5] }
"""


def test_facet_by_and_xmarks(tmp_path):
    spec = load(tmp_path, HEAD + GRID3 + """\
        [[figure]]
        kind = "heatmap"
        var = "y_r"
        x = "f"
        y = "p"
        facet = "alpha_r"
        path = "h.png"
        [[figure]]
        kind = "line"
        var = "y_r"
        x = "f"
        by = "alpha_r"
        xmarks = ["y_ss", "t_r"]
        sel = { p = 0.3 }
        path = "l.png"
    """)
    heat, line = spec.figures
    assert (heat.facet, heat.by, heat.sel) == ("alpha_r", None, {})
    assert (line.by, line.xmarks, line.facet, line.sel) == ("alpha_r", ("y_ss", "t_r"), None,
                                                            {"p": 0.3})


def test_one_way_regions_sharey_and_log_relative(tmp_path):
    spec = load(tmp_path, HEAD + """\
        [base]
        D_J = 2e7
        [oneway]
        n = 5
        relative = [0.25, 4.0, "log"]
        params = ["D_J", "alpha_r"]
        [[figure]]
        kind = "one_way_regions"
        outputs = ["y_r", "P_r"]       # units may differ
        background = "status"
        labels = { "0" = "solved", "1" = "max steps" }
        path = "r.png"
        [[figure]]
        kind = "one_way_regions"
        outputs = "t_r"
        background = "assumptions_hold"
        sharey = true
        x = "value"
        path = "s.png"
        [[figure]]
        kind = "one_way"
        outputs = ["y_r", "t_r"]
        sharey = false
        path = "o.png"
    """)
    # log steps of relative factors are explicit ranges around the base point
    assert spec.study == {"n": 5, "ranges": {"D_J": (5e6, 8e7, "log"),
                                             "alpha_r": (1e-5, 1.6e-4, "log")}}
    regions, other, one = spec.figures
    assert (regions.kind, regions.var, regions.background, regions.sharey) == (
        "one_way_regions", ("y_r", "P_r"), "status", None)
    assert regions.labels == {0: "solved", 1: "max steps"} and regions.x == "relative"
    assert (other.var, other.background, other.sharey, other.x) == (
        ("t_r",), "assumptions_hold", True, "value")
    assert (one.sharey, one.var) == (False, ("y_r", "t_r"))
    linear = load(tmp_path, HEAD + "[oneway]\nrelative = [0.5, 2.0, 'linear']\n"
                  "params = ['p']\n")
    assert linear.study == {"relative": (0.5, 2.0), "params": ("p",)}


def test_base_point_with_static_settings_and_another_input_type(tmp_path):
    """Inputs with non-numeric fields (quadrature laws, None) and a solve function whose input
    is not Params (defender_attacker.response takes a Strategy with r, k, I)."""
    from jaxgames.models import defender_attacker as da

    spec = load(tmp_path, """\
        model = "defender_attacker"
        solve = "response"
        output = "r.nc"
        [base]
        I = 2.0
        V = 3
        [axes]
        r = { linspace = [0.0, 7.0, 8] }
        k = { values = [0.0, 1.0] }
    """)
    assert isinstance(spec.base, da.Strategy)
    assert spec.base == da.DEFAULTS[da.Strategy]._replace(I=2.0, V=3.0)
    assert spec.base.law_L is None and list(spec.axes) == ["r", "k"]
    eq = load(tmp_path, 'model = "defender_attacker"\nsolve = "equilibrium"\n'
              'output = "e.nc"\n[base]\nh = 0.25\n[axes]\nV = { values = [1.0, 2.0] }\n')
    assert eq.base == da.DEFAULT._replace(h=0.25)
    msg = error(tmp_path, 'model = "defender_attacker"\nsolve = "response"\noutput = "e.nc"\n'
                '[base]\nI = -1.0\n[axes]\nr = { values = [1.0] }\n')
    assert "base.I: value -1 is outside the allowed range [0, inf) of parameter I" in msg


@pytest.mark.parametrize("path", SWEEPS, ids=[p.name for p in SWEEPS])
def test_every_shipped_sweep_file_parses(path):
    spec = load_sweep(path)
    assert spec.output.suffix in (".zarr", ".nc")


# ----------------------------------------------------------------------------- bad files

BAD = {
    # name: (file text, expected start of the message after the file name)
    "unknown top-level key": (HEAD + "colour = 1\n" + GRID, "colour: unknown key"),
    "unknown nested key": (HEAD + "[design]\nkind='random'\nn=4\nsed=1\nbounds={f=[0,1]}\n",
                           "design.sed: unknown key"),
    "unknown key in an axis": (HEAD + "[axes]\nf = { linspace = [0, 1, 3], step = 1 }\n",
                               "axes.f.step: unknown key"),
    "unknown key in a figure": (HEAD + GRID + "[[figure]]\nkind='heatmap'\nvar='y_r'\nx='f'\n"
                                "y='p'\npath='a.png'\ncolour='red'\n",
                                "figure[0].colour: unknown key"),
    "missing required key": ('model = "bakshi_kleindorfer"\nsolve = "noncooperative"\n' + GRID,
                             "output: required key missing"),
    "unknown model": (HEAD.replace('"bakshi_kleindorfer"', '"bakshi"') + GRID,
                      "model: unknown model 'bakshi'; choose from bakshi_kleindorfer"),
    "unknown solve": (HEAD.replace('"noncooperative"', '"cooperative"') + GRID,
                      "solve: unknown solve function of bakshi_kleindorfer 'cooperative'"),
    "unknown solve in a list": (HEAD.replace('"noncooperative"', '["first_best", "nash"]')
                                + GRID, "solve[1]: unknown solve function"),
    "unknown parameter in axes": (HEAD + "[axes]\nq = { values = [1.0] }\n",
                                  "axes.q: unknown parameter 'q' of model bakshi_kleindorfer"),
    "unknown parameter in base": (HEAD + "[base]\ntheta = 0.1\n" + GRID,
                                  "base.theta: unknown parameter 'theta'"),
    "unknown parameter in wrt": (HEAD + "derivatives = ['y_r']\nwrt = ['f', 'D']\n" + GRID,
                                 "wrt[1]: unknown parameter 'D'"),
    "unknown output": (HEAD + "derivatives = ['y_rs']\n" + GRID,
                       "derivatives[0]: unknown real-valued output 'y_rs'"),
    "diagnostic as derivative": (HEAD + "derivatives = ['converged']\n" + GRID,
                                 "derivatives[0]: unknown real-valued output 'converged'"),
    "unprefixed output of combined solves": (
        HEAD.replace('"noncooperative"', '["noncooperative", "first_best"]')
        + "derivatives = ['y_r']\n" + GRID,
        "derivatives[0]: unknown real-valued output (prefixed with its solve function) 'y_r'"),
    "unknown figure variable": (HEAD + GRID + "[[figure]]\nkind='heatmap'\nvar='t_x'\nx='f'\n"
                                "y='p'\npath='a.png'\n", "figure[0].var: unknown variable"),
    "string for a number": (HEAD + "[base]\np = \"0.5\"\n" + GRID,
                            "base.p: expected a number, got a string ('0.5')"),
    "string for a table": (HEAD + "base = 'fig3'\n" + GRID, "base: expected a table"),
    "number for a string": (HEAD.replace('"out.zarr"', "3") + GRID,
                            "output: expected a string, got an integer"),
    "bool as int": (HEAD + "chunk_size = true\n" + GRID,
                    "chunk_size: expected an integer, got a boolean (true)"),
    "bool as number": (HEAD + "[base]\np = false\n" + GRID,
                       "base.p: expected a number, got a boolean"),
    "float n": (HEAD + "[axes]\nf = { linspace = [0.2, 0.8, 3.0] }\n",
                "axes.f.linspace[2]: expected an integer, got a float (3.0)"),
    "float design n": (HEAD + "[design]\nkind='random'\nn=8.0\nbounds={f=[0,1]}\n",
                       "design.n: expected an integer, got a float"),
    "non-finite base": (HEAD + "[base]\nD_J = inf\n" + GRID,
                        "base.D_J: expected a finite number, got inf"),
    "non-finite axis value": (HEAD + "[axes]\np = { values = [0.1, nan] }\n",
                              "axes.p.values[1]: expected a finite number, got nan"),
    "out-of-domain base": (HEAD + "[base]\np = 1.5\n" + GRID,
                           "base.p: value 1.5 is outside the allowed range [0, 1] of "
                           "parameter p"),
    "out-of-domain axis": (HEAD + "[axes]\nf = { linspace = [0.5, 1.5, 3] }\n",
                           "axes.f: value 1.5 is outside the allowed range [0, 1] of "
                           "parameter f"),
    "out-of-domain open end": (HEAD + "[axes]\nalpha_r = { values = [0.0, 1e-5] }\n",
                               "axes.alpha_r: value 0 is outside the allowed range (0, inf)"),
    "out-of-domain bound": (HEAD + "[design]\nkind='random'\nn=8\n"
                            "bounds={D_J=[-1.0, 1e6]}\n",
                            "design.bounds.D_J: value -1 is outside the allowed range [0, inf)"),
    "out-of-domain range": (HEAD + "[oneway]\nranges = { theta_r = [0.5, 2.0] }\n",
                            "oneway.ranges.theta_r: value 2 is outside the allowed range"),
    "out-of-domain relative": (HEAD + "[base]\np = 0.6\n[tornado]\noutputs=['y_r']\n"
                               "relative = [0.5, 2.0]\nparams = ['p']\n",
                               "tornado.relative: 2 x base p = 1.2 is outside the allowed "
                               "range [0, 1] of parameter p"),
    "two modes": (HEAD + GRID + "[design]\nkind='random'\nn=4\nbounds={f=[0,1]}\n",
                  "design: only one of [axes], [design], [oneway], [tornado] may be given, "
                  "found [axes], [design]"),
    "no mode": (HEAD, "needs one of [axes], [design], [oneway], [tornado]"),
    "bad linspace length": (HEAD + "[axes]\nf = { linspace = [0.2, 0.8] }\n",
                            "axes.f.linspace: expected [lo, hi, n], got an array of length 2"),
    "empty axes": (HEAD + "[axes]\n", "axes: needs at least one parameter"),
    "empty values": (HEAD + "[axes]\np = { values = [] }\n", "axes.p.values: must not be empty"),
    "2-D values": (HEAD + "[axes]\np = { values = [[0.1, 0.2]] }\n",
                   "axes.p.values[0]: expected a number, got an array"),
    "duplicate values": (HEAD + "[axes]\np = { values = [0.1, 0.1] }\n",
                         "axes.p.values: values must be distinct"),
    "axis as a bare list": (HEAD + "[axes]\np = [0.1, 0.2]\n",
                            "axes.p: expected { linspace = [lo, hi, n] }"),
    "two forms of one axis": (HEAD + "[axes]\np = { values = [0.1], linspace = [0, 1, 2] }\n",
                              "axes.p: needs exactly one of linspace, geomspace, values"),
    "geomspace through zero": (HEAD + "[axes]\nD_J = { geomspace = [0, 1e6, 3] }\n",
                               "axes.D_J.geomspace: needs lo and hi non-zero"),
    "zero points": (HEAD + "[axes]\nf = { linspace = [0.2, 0.8, 0] }\n",
                    "axes.f.linspace[2]: must be an integer >= 1, got 0"),
    "bad output suffix": (HEAD.replace("out.zarr", "out.csv") + GRID,
                          "output: 'out.csv' must end in .zarr"),
    "bad dtype": (HEAD + "dtype = 'float16'\n" + GRID,
                  "dtype: unknown dtype 'float16'; choose from float64, float32"),
    "wrt without derivatives": (HEAD + "wrt = ['f']\n" + GRID, "wrt: has no effect"),
    "sobol n not a power of 2": (HEAD + "[design]\nkind='sobol'\nn=100\nbounds={f=[0,1]}\n",
                                 "design.n: a Sobol design needs a power of 2 (e.g. 64 or "
                                 "128), got 100"),
    "scramble on a random design": (HEAD + "[design]\nkind='random'\nn=4\nscramble=false\n"
                                    "bounds={f=[0,1]}\n",
                                    "design.scramble: applies to a sobol design only"),
    "reversed bound": (HEAD + "[design]\nkind='random'\nn=4\nbounds={f=[0.9, 0.1]}\n",
                       "design.bounds.f: needs lo < hi"),
    "log bound from 0": (HEAD + "[design]\nkind='random'\nn=4\nbounds={D_J=[0, 1e6, 'log']}\n",
                         "design.bounds.D_J: a log range needs lo > 0"),
    "ranges and relative": (HEAD + "[oneway]\nranges={f=[0.1, 0.2]}\nrelative=[0.5, 2]\n",
                            "oneway: needs exactly one of ranges"),
    "relative of a zero base": (HEAD + "[base]\nf = 0.0\n[oneway]\nrelative=[0.5, 1.5]\n"
                                "params=['f']\n",
                                "oneway.relative: parameter f has base value 0"),
    "tornado without outputs": (HEAD + "[tornado]\nrelative=[0.5, 1.5]\n",
                                "tornado.outputs: required key missing"),
    "oneway n of 1": (HEAD + "[oneway]\nn = 1\nrelative=[0.5, 1.5]\n",
                      "oneway.n: must be an integer >= 2"),
    "figure as a table": (HEAD + GRID + "[figure]\nkind='heatmap'\n",
                          "figure: write each figure as [[figure]]"),
    "figure kind for another mode": (HEAD + GRID + "[[figure]]\nkind='tornado'\noutput='y_r'\n"
                                     "path='a.png'\n",
                                     "figure[0].kind: a tornado figure needs a [tornado] sweep"),
    "figure axis not fixed": (HEAD + GRID + "[[figure]]\nkind='line'\nvar='y_r'\nx='f'\n"
                              "path='a.png'\n",
                              "figure[0].sel: axes p are neither plotted nor fixed"),
    "figure sel off the grid": (HEAD + GRID + "[[figure]]\nkind='line'\nvar='y_r'\nx='f'\n"
                                "sel={p=0.2}\npath='a.png'\n",
                                "figure[0].sel.p: 0.2 is not a value of axis p"),
    "figure sel of a plotted axis": (HEAD + GRID + "[[figure]]\nkind='heatmap'\nvar='y_r'\n"
                                     "x='f'\ny='p'\nsel={p=0.1}\npath='a.png'\n",
                                     "figure[0].sel.p: p is an axis of the figure"),
    "figure path suffix": (HEAD + GRID + "[[figure]]\nkind='heatmap'\nvar='y_r'\nx='f'\n"
                           "y='p'\npath='a.jpeg'\n", "figure[0].path: 'a.jpeg' must end in"),
    "region map of a real output": (HEAD + GRID + "[[figure]]\nkind='region_map'\nvar='y_r'\n"
                                    "x='f'\ny='p'\npath='a.png'\n",
                                    "figure[0].var: unknown integer or boolean variable 'y_r'"),
    "region label not a category": (HEAD + GRID + "[[figure]]\nkind='region_map'\n"
                                    "var='status'\nx='f'\ny='p'\nlabels={ok='fine'}\n"
                                    "path='a.png'\n", "figure[0].labels.ok: a category is"),
    "one_way outputs of mixed units": (HEAD + "[oneway]\nrelative=[0.5, 1.5]\n[[figure]]\n"
                                       "kind='one_way'\noutputs=['y_r', 'P_r']\npath='a.png'\n",
                                       "figure[0].outputs: outputs with different units"),
    "tornado figure of an output not computed": (
        HEAD + "[tornado]\noutputs=['y_r']\nrelative=[0.5, 1.5]\n[[figure]]\nkind='tornado'\n"
        "output='t_r'\npath='a.png'\n", "figure[0].output: unknown output of tornado.outputs"),
    "invalid TOML": (HEAD + "[axes\n", "not valid TOML"),
    # facets, lines by an axis, threshold marks
    "facet not an axis": (HEAD + GRID3 + "[[figure]]\nkind='heatmap'\nvar='y_r'\nx='f'\n"
                          "y='p'\nfacet='D_J'\npath='a.png'\n",
                          "figure[0].facet: unknown axis 'D_J'; choose from f, p, alpha_r"),
    "facet on a plotted axis": (HEAD + GRID3 + "[[figure]]\nkind='heatmap'\nvar='y_r'\n"
                                "x='f'\ny='p'\nfacet='p'\npath='a.png'\n",
                                "figure[0].facet: p is already an axis of the figure"),
    "facet and sel of one axis": (HEAD + GRID3 + "[[figure]]\nkind='heatmap'\nvar='y_r'\n"
                                  "x='f'\ny='p'\nfacet='alpha_r'\nsel={alpha_r=2e-5}\n"
                                  "path='a.png'\n",
                                  "figure[0].sel.alpha_r: alpha_r is an axis of the figure"),
    "facet on a line": (HEAD + GRID3 + "[[figure]]\nkind='line'\nvar='y_r'\nx='f'\n"
                        "facet='p'\nsel={alpha_r=2e-5}\npath='a.png'\n",
                        "figure[0].facet: unknown key"),
    "by on a heatmap": (HEAD + GRID3 + "[[figure]]\nkind='heatmap'\nvar='y_r'\nx='f'\n"
                        "y='p'\nby='alpha_r'\npath='a.png'\n", "figure[0].by: unknown key"),
    "by equal to x": (HEAD + GRID3 + "[[figure]]\nkind='line'\nvar='y_r'\nx='f'\nby='f'\n"
                      "path='a.png'\n", "figure[0].by: f is already an axis of the figure"),
    "by leaves an axis free": (HEAD + GRID3 + "[[figure]]\nkind='line'\nvar='y_r'\nx='f'\n"
                               "by='p'\npath='a.png'\n",
                               "figure[0].sel: axes alpha_r are neither plotted nor fixed"),
    "xmarks of a flag": (HEAD + GRID + "[[figure]]\nkind='line'\nvar='y_r'\nx='f'\n"
                         "sel={p=0.1}\nxmarks=['converged']\npath='a.png'\n",
                         "figure[0].xmarks[0]: unknown real-valued variable 'converged'"),
    "xmarks not a list": (HEAD + GRID + "[[figure]]\nkind='line'\nvar='y_r'\nx='f'\n"
                          "sel={p=0.1}\nxmarks='y_ss'\npath='a.png'\n",
                          "figure[0].xmarks: expected an array, got a string"),
    # one-way figures: per-panel y axes, backgrounds, log relative ranges
    "sharey not a boolean": (HEAD + "[oneway]\nrelative=[0.5, 1.5]\n[[figure]]\n"
                             "kind='one_way'\noutputs='y_r'\nsharey='no'\npath='a.png'\n",
                             "figure[0].sharey: expected a boolean (true or false), got a "
                             "string"),
    "background missing": (HEAD + "[oneway]\nrelative=[0.5, 1.5]\n[[figure]]\n"
                           "kind='one_way_regions'\noutputs='y_r'\npath='a.png'\n",
                           "figure[0].background: required key missing"),
    "background not categorical": (HEAD + "[oneway]\nrelative=[0.5, 1.5]\n[[figure]]\n"
                                   "kind='one_way_regions'\noutputs='y_r'\nbackground='t_r'\n"
                                   "path='a.png'\n",
                                   "figure[0].background: unknown integer or boolean variable "
                                   "'t_r'"),
    "background label not a category": (HEAD + "[oneway]\nrelative=[0.5, 1.5]\n[[figure]]\n"
                                        "kind='one_way_regions'\noutputs='y_r'\n"
                                        "background='status'\nlabels={ok='fine'}\n"
                                        "path='a.png'\n",
                                        "figure[0].labels.ok: a category is"),
    "one_way_regions on a grid": (HEAD + GRID + "[[figure]]\nkind='one_way_regions'\n"
                                  "outputs='y_r'\nbackground='status'\npath='a.png'\n",
                                  "figure[0].kind: a one_way_regions figure needs a [oneway] "
                                  "sweep, this file has [axes]"),
    "one_way_regions of a flag": (HEAD + "[oneway]\nrelative=[0.5, 1.5]\n[[figure]]\n"
                                  "kind='one_way_regions'\noutputs=['y_r', 'status']\n"
                                  "background='status'\npath='a.png'\n",
                                  "figure[0].outputs[1]: unknown real-valued output 'status'"),
    "log relative from 0": (HEAD + "[oneway]\nrelative=[0.0, 2.0, 'log']\nparams=['p']\n",
                            "oneway.relative: a log range needs lo > 0, got 0"),
    "unknown relative scale": (HEAD + "[oneway]\nrelative=[0.5, 2.0, 'ln']\nparams=['p']\n",
                               "oneway.relative[2]: unknown scale 'ln'; choose from linear, "
                               "log"),
    "log relative of a tornado": (HEAD + "[tornado]\noutputs=['y_r']\n"
                                  "relative=[0.5, 2.0, 'log']\n",
                                  "tornado.relative: expected [lo, hi], got an array of "
                                  "length 3"),
    "log relative out of the domain": (HEAD + "[oneway]\nrelative=[0.5, 4.0, 'log']\n"
                                       "params=['p']\n",
                                       "oneway.relative: 4 x base p = 1.2 is outside the "
                                       "allowed range [0, 1] of parameter p"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_file_names_the_file_and_the_key(tmp_path, name):
    text, expected = BAD[name]
    msg = error(tmp_path, text)
    assert msg.startswith(f"{tmp_path / 's.toml'}: "), msg
    assert expected in msg, msg
    assert "\n" not in msg


def test_missing_file(tmp_path):
    with pytest.raises(SweepFileError, match="nope.toml: no such file"):
        load_sweep(tmp_path / "nope.toml")


def test_error_is_a_value_error_with_the_key(tmp_path):
    with pytest.raises(ValueError) as exc:
        load(tmp_path, HEAD + "[base]\np = 1.5\n" + GRID)
    assert exc.value.key == "base.p" and exc.value.path == str(tmp_path / "s.toml")


@pytest.fixture
def no_solving(monkeypatch):
    """Make every way of compiling or solving a model fail loudly."""

    def boom(*args, **kwargs):
        raise AssertionError("load_sweep must not compile or solve anything")

    def fake(name):
        @functools.wraps(getattr(bk, name))  # keeps the return annotation
        def solve(*args, **kwargs):
            raise AssertionError(f"load_sweep must not call {name}")

        return solve

    import jaxgames._sweep

    # jaxgames.sweep first: it is a lazy export, read from jaxgames._sweep when first asked
    # for, so patched after jaxgames._sweep.sweep it would be "restored" to boom afterwards
    monkeypatch.setattr(jaxgames, "sweep", boom)
    monkeypatch.setattr(jaxgames._sweep, "sweep", boom)
    monkeypatch.setattr(jaxgames._sweep, "_compiled", boom)
    for name in bk.SOLVE_FUNCTIONS:
        monkeypatch.setattr(bk, name, fake(name))
    monkeypatch.setattr("jax.eval_shape", boom)
    monkeypatch.setattr("jax.jit", boom)


def test_loading_never_solves(tmp_path, no_solving):
    assert "out-of-domain axis" in BAD
    for name in ("out-of-domain axis", "unknown output", "figure sel off the grid"):
        with pytest.raises(SweepFileError):
            load(tmp_path, BAD[name][0])
    spec = load(tmp_path, HEAD + "derivatives = ['y_r']\n" + GRID)  # a good file neither
    assert spec.derivatives == ("y_r",)


# ----------------------------------------------------------------------------- running


class _Recorder:
    def __init__(self, result):
        self.calls, self.result = [], result

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.result


def _tiny_dataset(dims=("f", "p")):
    coords = {"f": [0.2, 0.5, 0.8], "p": [0.1, 0.3, 0.5, 0.7]}
    shape = tuple(len(coords[d]) for d in dims)
    return xr.Dataset({"y_r": (dims, np.arange(12.0).reshape(shape)),
                       "converged": (dims, np.ones(shape, bool))},
                      coords={d: coords[d] for d in dims},
                      attrs={"jaxgames_version": jaxgames.__version__})  # as every sweep's


def test_run_passes_the_file_to_the_engine(tmp_path, monkeypatch):
    import jaxgames._sweep

    rec = _Recorder(_tiny_dataset())
    monkeypatch.setattr(jaxgames._sweep, "sweep", rec)
    monkeypatch.chdir(tmp_path)
    spec = load(tmp_path, HEAD + "chunk_size = 6\ndtype = 'float32'\nderivatives = ['y_r']\n"
                "wrt = ['f']\n" + GRID)
    spec.run(progress=False)
    (args, kwargs), = rec.calls
    fn, base, axes = args
    assert fn is bk.noncooperative and base == bk.DEFAULT
    assert list(axes) == ["f", "p"] and list(axes["p"]) == [0.1, 0.3, 0.5, 0.7]
    assert kwargs == dict(derivatives=("y_r",), wrt=("f",), elasticities=False, chunk_size=6,
                          progress=False, dtype="float32", store="out.zarr", resume=False,
                          overwrite=False, dask=None, max_memory=None, max_disk=None)
    # resuming needs a jaxgames store there (the engine is mocked: a root group's metadata)
    (tmp_path / "other.zarr").mkdir()
    (tmp_path / "other.zarr/zarr.json").write_text(
        json.dumps({"zarr_format": 3, "node_type": "group",
                    "attributes": {"jaxgames_version": "0"}}))
    spec.run(out="other.zarr", resume=True, chunk_size=3, dask="tcp://h:1")
    kwargs = rec.calls[1][1]
    assert (kwargs["store"], kwargs["resume"], kwargs["chunk_size"], kwargs["dask"]) == (
        "other.zarr", True, 3, "tcp://h:1")


def test_run_writes_netcdf_and_figures(tmp_path, monkeypatch):
    pytest.importorskip("h5py")
    import jaxgames._sweep

    rec = _Recorder(_tiny_dataset())
    monkeypatch.setattr(jaxgames._sweep, "sweep", rec)
    monkeypatch.chdir(tmp_path)  # relative paths are relative to the working directory
    spec = load(tmp_path, HEAD.replace("out.zarr", "res/out.nc") + GRID
                + "[[figure]]\nkind='heatmap'\nvar='y_r'\nx='f'\ny='p'\npath='figs/h.png'\n"
                "[[figure]]\nkind='line'\nvar='y_r'\nx='p'\nsel={f=0.5}\npath='figs/l.png'\n")
    ds = spec.run(progress=False)
    assert "store" not in rec.calls[0][1]  # netCDF: in memory, written at the end
    back = xr.open_dataset(tmp_path / "res/out.nc", engine="h5netcdf")
    xr.testing.assert_identical(back.load(), ds)
    back.close()
    assert (tmp_path / "figs/h.png").stat().st_size > 5000
    assert (tmp_path / "figs/l.png").stat().st_size > 5000
    with pytest.raises(SweepFileError, match="res/out.nc exists; resume it"):
        spec.run(progress=False)
    spec.run(progress=False, overwrite=True)
    assert len(rec.calls) == 2


def test_run_options_that_do_not_fit(tmp_path):
    spec = load(tmp_path, HEAD.replace("out.zarr", "out.nc") + GRID)
    with pytest.raises(SweepFileError, match="output: out.nc is netCDF, written at the end; "
                                             "resume needs a .zarr output"):
        spec.run(resume=True)
    with pytest.raises(SweepFileError, match=": out: x.csv must end in .zarr"):
        spec.run(out="x.csv")
    with pytest.raises(SweepFileError, match="resume and overwrite exclude each other"):
        spec.run(out="x.zarr", resume=True, overwrite=True)
    one = load(tmp_path, HEAD + "[oneway]\nrelative=[0.5, 1.5]\nparams=['p']\n")
    with pytest.raises(SweepFileError, match="oneway: a oneway study is computed in memory"):
        one.run(dask="tcp://h:1")


def _grid3_dataset():
    f, p, a = [0.2, 0.5, 0.8], [0.1, 0.3, 0.5, 0.7], [2e-5, 4e-5]
    shape = (3, 4, 2)
    y_r = np.arange(24.0).reshape(shape)
    hold = np.ones(shape, bool)
    hold[-1, :, 1] = False
    return xr.Dataset({"y_r": (("f", "p", "alpha_r"), y_r),
                       "y_ss": (("f", "p", "alpha_r"), np.full(shape, 0.4)),
                       "converged": (("f", "p", "alpha_r"), np.ones(shape, bool)),
                       "assumptions_hold": (("f", "p", "alpha_r"), hold)},
                      coords={"f": f, "p": p, "alpha_r": a}, attrs={"model": "bakshi_kleindorfer"})


def _oneway_dataset():
    rel = np.array([0.25, 0.5, 1.0, 2.0, 4.0])
    dims = ("parameter", "step")
    base = {"D_J": 1e7, "f": 0.2}
    return xr.Dataset(
        {"y_r": (dims, np.stack([rel, 2 * rel]), {"units": "$"}),
         "P_r": (dims, np.stack([rel / 10, rel / 20]), {"units": "1"}),
         "status": (dims, np.array([[0, 0, 1, 1, 0], [0, 0, 0, 0, 0]], np.int32)),
         "converged": (dims, np.ones((2, 5), bool))},
        coords={"parameter": list(base), "step": np.arange(5),
                "value": (dims, np.stack([1e7 * rel, 0.2 * rel])),
                "relative": (dims, np.stack([rel, rel]))},
        attrs={"model": "bakshi_kleindorfer", "base_params": json.dumps(base)})


def test_run_draws_facets_lines_by_and_background_figures(tmp_path, monkeypatch):
    import jaxgames._sweep

    monkeypatch.setattr(jaxgames._sweep, "sweep", _Recorder(_grid3_dataset()))
    fake = types.ModuleType("jaxgames.sensitivity")
    fake.one_way = _Recorder(_oneway_dataset())
    # the lazy export first: read after sys.modules is patched, it would be "restored" to fake
    monkeypatch.setattr(jaxgames, "sensitivity", fake, raising=False)
    monkeypatch.setitem(sys.modules, "jaxgames.sensitivity", fake)
    monkeypatch.chdir(tmp_path)
    title = "A long title " * 12
    spec = load(tmp_path, HEAD.replace("out.zarr", "g.nc") + GRID3 + f"""\
        [[figure]]
        kind = "heatmap"
        var = "y_r"
        x = "f"
        y = "p"
        facet = "alpha_r"
        title = "{title}"
        path = "figs/facet.png"
        [[figure]]
        kind = "line"
        var = "y_r"
        x = "f"
        by = "alpha_r"
        xmarks = ["y_ss"]
        sel = {{ p = 0.3 }}
        path = "figs/by.png"
    """)
    ds = spec.run(progress=False)
    figs = [plots_draw(f, ds) for f in spec.figures]
    assert len([ax for ax in figs[0].axes if ax.get_label() != "<colorbar>"]) == 2
    assert "\n" in figs[0].get_suptitle()  # the long title is wrapped to the figure
    assert figs[0].get_suptitle().replace("\n", " ") == title.strip()
    labels = [t.get_text() for t in figs[1].axes[0].get_legend().get_texts()]
    assert labels[0] == "alpha_r = 2e-5" and labels[2] == "alpha_r = 4e-5"
    for name in ("facet", "by"):
        assert (tmp_path / f"figs/{name}.png").stat().st_size > 5000
    one = load(tmp_path, HEAD.replace("out.zarr", "o.nc") + """\
        [oneway]
        n = 5
        relative = [0.25, 4.0, "log"]
        params = ["D_J", "f"]
        [[figure]]
        kind = "one_way_regions"
        outputs = ["y_r", "P_r"]
        background = "status"
        labels = { "0" = "solved", "1" = "max steps" }
        path = "figs/regions.png"
        [[figure]]
        kind = "one_way"
        outputs = "y_r"
        sharey = false
        path = "figs/oneway.png"
    """)
    ds = one.run(progress=False)
    (args, kwargs), = fake.one_way.calls
    assert kwargs["ranges"] == {"D_J": (2.5e6, 4e7, "log"), "f": (0.05, 0.8, "log")}
    assert "relative" not in kwargs and "params" not in kwargs
    regions, oneway = (plots_draw(f, ds) for f in one.figures)
    assert [t.get_text() for t in regions.legends[0].get_texts()] == ["solved", "max steps"]
    d_ax, f_ax = regions.axes[:2]
    assert not d_ax.get_shared_y_axes().joined(d_ax, f_ax)  # one_way_regions default
    assert not oneway.axes[0].get_shared_y_axes().joined(*oneway.axes[:2])  # sharey = false
    for name in ("regions", "oneway"):
        assert (tmp_path / f"figs/{name}.png").stat().st_size > 5000


def plots_draw(spec, ds):
    return sweepfile._draw(spec, ds)


def test_oneway_and_tornado_call_the_sensitivity_functions(tmp_path, monkeypatch):
    one_way = _Recorder(_tiny_dataset())
    tornado = _Recorder(_tiny_dataset())
    fake = types.ModuleType("jaxgames.sensitivity")
    fake.one_way, fake.tornado = one_way, tornado
    # the lazy export first: read after sys.modules is patched, it would be "restored" to fake
    monkeypatch.setattr(jaxgames, "sensitivity", fake, raising=False)
    monkeypatch.setitem(sys.modules, "jaxgames.sensitivity", fake)
    monkeypatch.chdir(tmp_path)
    load(tmp_path, HEAD + "[oneway]\nn = 4\nranges = { f = [0.1, 0.9] }\n").run(progress=False)
    (args, kwargs), = one_way.calls
    assert args == (bk.noncooperative, bk.DEFAULT)
    assert kwargs["n"] == 4 and kwargs["ranges"] == {"f": (0.1, 0.9)}
    assert "store" not in kwargs and kwargs["dtype"] == "float64"
    assert xr.open_zarr(tmp_path / "out.zarr", consolidated=False)["y_r"].shape == (3, 4)
    load(tmp_path, HEAD.replace("out.zarr", "t.zarr") + "[tornado]\noutputs = ['y_r']\n"
         "relative = [0.5, 1.5]\n").run(progress=False)
    (args, kwargs), = tornado.calls
    assert kwargs["outputs"] == ("y_r",) and kwargs["relative"] == (0.5, 1.5)
    assert "params" not in kwargs


def test_schema_is_documented():
    """Every key the loader accepts is named in the module docstring and sweeps/README.md."""
    keys = set(sweepfile._TOP_KEYS) | {"linspace", "geomspace", "values", "kind", "n", "seed",
                                       "bounds", "scramble", "relative", "ranges", "params",
                                       "outputs", "path", "title"}
    keys |= {k for ks in sweepfile._FIGURE_KEYS.values() for k in ks}
    readme = (Path(__file__).parents[1] / "sweeps" / "README.md").read_text()
    for text in (sweepfile.__doc__, readme):
        for key in keys:
            assert re.search(rf"\b{key}\b", text), key


def test_readme_examples_parse(tmp_path):
    readme = (Path(__file__).parents[1] / "sweeps" / "README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
    assert blocks
    for i, block in enumerate(blocks):
        spec = load_sweep(write(tmp_path, block, f"readme{i}.toml"))
        assert spec.figures


# ----------------------------------------------------------------------------- replications


STOCHASTIC = """\
model = "toy_contract"
solve = "simulate"
output = "OUT/sim.zarr"
replications = 5
seed = 3
[axes]
regime = { values = ["A", "B"] }
noise = { values = [0.1, 0.2, 0.4] }
c = { values = [1.0, 2.0] }
[[figure]]
kind = "line"
var = "cost"
x = "noise"
sel = { regime = "B", agent = "W1", c = 2.0 }
reduce = "mean"
path = "OUT/mean.png"
[[figure]]
kind = "heatmap"
var = "mean_cost"
x = "noise"
y = "c"
sel = { regime = "A" }
reduce = "mean"
path = "OUT/heat.png"
"""


@pytest.fixture
def toy_registered(monkeypatch):
    """The test model of tests/_toy_model.py (stochastic ``simulate``), registered."""
    from jaxgames import models

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.setitem(models.REGISTRY, "toy_contract", "_toy_model")


def test_figures_reduce_over_replications(tmp_path, toy_registered, capsys):
    """``reduce = "mean"``: the line is the mean over replications (jaxgames.summaries), the
    band its confidence interval; ``jaxgames plot --reduce mean`` draws the same figure."""
    from jaxgames import cli, summaries

    spec = load(tmp_path, STOCHASTIC.replace("OUT", str(tmp_path)))
    line, heat = spec.figures
    assert (line.reduce, heat.reduce) == ("mean", "mean")
    ds = spec.run(progress=False)
    for f in spec.figures:
        assert f.path.stat().st_size > 5000
    at = dict(regime="B", agent="W1", c=2.0)
    mean = summaries.mean(ds)["cost"].sel(at).values
    ci = summaries.confidence_interval(ds)["cost"].sel(at).transpose("bound", ...).values
    fig = plots_draw(line, ds)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), mean, rtol=1e-15)
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    for bound in ci:  # lower and upper bounds, at every noise value
        assert all(np.isclose(band, b, rtol=1e-12).any() for b in bound)
    assert not np.allclose(ci[0], ci[1])  # a band, not a line
    assert any("95% confidence interval" in t.get_text() for t in ax.get_legend().get_texts())
    img = plots_draw(heat, ds).axes[0].collections[0].get_array()
    np.testing.assert_allclose(np.ravel(img), np.ravel(
        summaries.mean(ds)["mean_cost"].sel(regime="A").transpose("c", "noise").values),
        rtol=1e-15)
    # the command line: the same figure from the dataset, with --reduce
    png = tmp_path / "cli.png"
    assert cli.main(["plot", str(tmp_path / "sim.zarr"), "--kind", "line", "--var", "cost",
                     "--x", "noise", "--sel", "regime=B", "agent=W1", "c=2", "--reduce", "mean",
                     "--png", str(png)]) == 0
    assert png.stat().st_size > 5000
    assert cli.main(["plot", str(tmp_path / "sim.zarr"), "--kind", "line", "--var", "cost",
                     "--x", "noise", "--sel", "regime=B", "agent=W1", "c=2", "replication=1",
                     "--reduce", "mean", "--png", str(png)]) == 2
    assert ("--sel replication: replication is reduced (--reduce = 'mean'); it cannot be "
            "fixed too") in capsys.readouterr().err


@pytest.mark.parametrize(("text", "match"), [
    ('reduce = "mean"\n', r"figure\[0\].sel.replication: replication is reduced"),
    ('reduce = "median"\n', r"figure\[0\].reduce: unknown reduction 'median'; choose from "
                            r"mean"),
])
def test_reduce_errors_name_the_key(tmp_path, toy_registered, text, match):
    body = STOCHASTIC.split("[[figure]]")[0] + (
        '[[figure]]\nkind = "line"\nvar = "cost"\nx = "noise"\n'
        'sel = { regime = "B", agent = "W1", c = 1.0, replication = 0 }\n' + text
        + 'path = "a.png"\n')
    with pytest.raises(SweepFileError, match=match):
        load(tmp_path, body.replace("OUT", str(tmp_path)))
    with pytest.raises(SweepFileError, match=r"figure\[0\].reduce: needs a stochastic study "
                                             r"with at least 2 replications .* this one has 1 "
                                             "replication"):
        load(tmp_path, body.replace("replications = 5", "replications = 1").replace(
            ", replication = 0", "").replace('"median"', '"mean"').replace("OUT", str(tmp_path)))
