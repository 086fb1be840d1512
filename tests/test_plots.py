"""Figures of sweep and sensitivity datasets (synthetic datasets in the contract's formats)."""

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.colors import CenteredNorm, LogNorm  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402
from matplotlib.contour import ContourSet  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from jaxgames import plots  # noqa: E402

MONEY = {"units": "$", "description": "expected cost, retailer"}


# ----------------------------------------------------------------------------- datasets


def tornado_ds(converged=True):
    params = ["f", "theta_r", "D_J", "p"]
    # t_r swings 1, 5, 3, 0.5 (D_J: unequal sides); y_r swings 0.2, 0.4, 0.8, 0.6
    low = np.array([[9.5, 7.5, 7.5, 9.75], [1.9, 1.8, 1.6, 1.7]])
    high = np.array([[10.5, 12.5, 10.5, 10.25], [2.1, 2.2, 2.4, 2.3]])
    conv = np.ones((2, 4), bool)
    if not converged:
        conv[0, 3] = False
    return xr.Dataset(
        {"low": (("output", "parameter"), low), "high": (("output", "parameter"), high),
         "base": (("output",), np.array([10.0, 2.0])),
         "swing": (("output", "parameter"), np.abs(high - low)),
         "converged": (("output", "parameter"), conv)},
        coords={"output": ["t_r", "y_r"], "parameter": params,
                "param_low": ("parameter", [0.1, 0.015, 5e6, 0.15]),
                "param_high": ("parameter", [0.3, 0.045, 1.5e7, 0.45])},
        attrs={"model": "bakshi_kleindorfer"})


def one_way_ds(rel=(0.25, 0.5, 1.0, 2.0, 4.0)):
    rel = np.asarray(rel)
    base = {"f": 0.2, "D_J": 1e7, "theta_r": 0.0}
    value = np.stack([base["f"] * rel, base["D_J"] * rel, np.linspace(0, 0.1, rel.size)])
    relative = np.stack([rel, rel, np.full(rel.size, np.nan)])
    t_r = np.stack([100 - 10 * rel, 50 + 20 * np.log(rel), 70 + 100 * value[2]])
    conv = np.ones(t_r.shape, bool)
    conv[0, -1] = False
    t_r[1, -1] = np.nan
    conv[1, -1] = False
    return xr.Dataset(
        {"t_r": (("parameter", "step"), t_r, MONEY),
         "y_r": (("parameter", "step"), t_r / 2, {"units": "$",
                                                  "description": "security investment"}),
         "P_r": (("parameter", "step"), t_r / 1e3, {"units": "1"}),
         "converged": (("parameter", "step"), conv)},
        coords={"parameter": list(base), "step": np.arange(rel.size),
                "value": (("parameter", "step"), value),
                "relative": (("parameter", "step"), relative)},
        attrs={"model": "bakshi_kleindorfer", "base_params": json.dumps(base)})


def grid_ds(signed=False):
    f = np.linspace(0.05, 0.95, 12)
    dj = np.geomspace(1e5, 1e9, 15)
    p = np.array([0.3, 0.7])
    F, D, P = np.meshgrid(f, dj, p, indexing="ij")
    t_r = (1 - F) * np.log10(D) * 1e4 * (1 + P)
    if signed:
        t_r = t_r - t_r.mean()
    regime = (F > 0.5).astype(np.int32) * 2 + (D > 1e7).astype(np.int32)  # 0, 1, 2, 3
    regime[regime == 1] = 3  # category 1 never occurs
    conv = np.ones(F.shape, bool)
    conv[0, 0, :] = False
    return xr.Dataset(
        {"t_r": (("f", "D_J", "p"), t_r, MONEY),
         "regime": (("f", "D_J", "p"), regime, {"description": "who invests"}),
         "assumptions_hold": (("f", "D_J", "p"), F < 2),  # all True
         "converged": (("f", "D_J", "p"), conv)},
        coords={"f": ("f", f, {"units": "1", "description": "supplier's share of the loss"}),
                "D_J": ("D_J", dj, {"units": "$", "description": "supply-chain loss"}),
                "p": ("p", p, {"units": "1"})},
        attrs={"model": "bakshi_kleindorfer"})


def sobol_ds():
    params = ["f", "theta_r", "D_J"]
    S1 = np.array([[0.2, 0.5, 0.1]])
    ST = np.array([[0.3, 0.6, 0.05]])
    return xr.Dataset(
        {"S1": (("output", "parameter"), S1), "S1_conf": (("output", "parameter"), S1 / 10),
         "ST": (("output", "parameter"), ST), "ST_conf": (("output", "parameter"), ST / 10)},
        coords={"output": ["t_r"], "parameter": params},
        attrs={"n_base": 64, "seed": 0, "n_evaluations": 320, "model": "bakshi_kleindorfer"})


def render(fig):
    """Draw the figure (catches layout warnings, which pytest turns into errors)."""
    fig.canvas.draw()  # Figure() without pyplot renders through FigureCanvasBase -> Agg
    return fig


@pytest.fixture(autouse=True)
def _no_pyplot_leaks():
    yield
    plt.close("all")


# ----------------------------------------------------------------------------- tornado


def test_tornado_sorted_by_swing_with_ranges_and_units():
    fig = render(plots.tornado(tornado_ds(), "t_r"))
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()][::-1]  # top to bottom
    assert [lab.split()[0] for lab in labels] == ["theta_r", "D_J", "f", "p"]
    assert labels[0] == "theta_r   0.015 → 0.045"
    assert "D_J   5e6 → 1.5e7" in labels
    assert "[$]" in ax.get_xlabel() and "retailer" in ax.get_xlabel()  # units from the model
    assert "t_r" in ax.get_title()
    assert not any(p.get_hatch() for p in ax.patches)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "not converged" not in legend
    assert any(line.get_xdata()[0] == 10.0 for line in ax.get_lines())  # base line


def test_tornado_top_and_non_converged_hatched():
    fig = render(plots.tornado(tornado_ds(converged=False), "t_r", top=4))
    (ax,) = fig.axes
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 2  # both ends of p
    assert "not converged" in [t.get_text() for t in ax.get_legend().get_texts()]
    ds = tornado_ds(converged=False)
    ds["low"][0, 1] = np.nan  # theta_r: no value at its low end; its swing is NaN, sorted last
    ds["swing"][0, 1] = np.nan
    ax = render(plots.tornado(ds, "t_r")).axes[0]
    assert ax.get_yticklabels()[0].get_text().startswith("theta_r")  # bottom row
    assert [t.get_text() for t in ax.texts] == ["no value"]
    fig = render(plots.tornado(tornado_ds(), "y_r", top=2))
    labels = [t.get_text().split()[0] for t in fig.axes[0].get_yticklabels()][::-1]
    assert labels == ["D_J", "p"]


def test_tornado_on_given_axes_and_unknown_output():
    fig = Figure()
    ax = fig.add_subplot()
    assert plots.tornado(tornado_ds(), "y_r", ax=ax) is fig
    with pytest.raises(ValueError, match="'W'.*t_r"):
        plots.tornado(tornado_ds(), "W")


# ----------------------------------------------------------------------------- one-way


def test_one_way_panels_units_base_and_failures():
    fig = render(plots.one_way(one_way_ds(), ["t_r", "y_r"], ncols=2))
    assert isinstance(fig, Figure)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 3  # one panel per parameter
    assert all("[$]" in ax.get_ylabel() for ax in axes if ax.get_ylabel())
    assert axes[0].get_ylabel()
    f_ax, dj_ax, theta_ax = axes
    assert f_ax.get_xscale() == "log" and f_ax.get_xlabel() == "f / base value"
    # theta_r has base 0: no relative value, so its panel falls back to the parameter value
    assert theta_ax.get_xscale() == "linear" and theta_ax.get_xlabel() == "theta_r"
    crosses = [ln for ax in axes for ln in ax.get_lines() if ln.get_marker() == "x"]
    assert len(crosses) == 4  # (f, 2 outputs at a finite value) + (D_J, 2 outputs at NaN)
    dots = [ln for ln in f_ax.get_lines() if ln.get_marker() == "o"]
    assert [ln.get_xdata()[0] for ln in dots] == [1.0, 1.0]
    texts = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    assert "expected cost, retailer (t_r)" in texts and "not converged" in texts


def test_one_way_value_axis_and_narrow_range_is_linear():
    fig = render(plots.one_way(one_way_ds(rel=(0.8, 0.9, 1.0, 1.1, 1.2)), "t_r", x="value"))
    f_ax, dj_ax = fig.axes[:2]
    assert f_ax.get_xscale() == "linear"  # spans a factor 1.5 only
    assert f_ax.get_xlabel() == "f"  # dimensionless: no unit suffix
    assert dj_ax.get_xlabel() == "D_J [$]"  # parameter units from the model
    assert f_ax.get_ylabel() == "expected cost, retailer [$]"
    assert "expected cost, retailer" in fig.get_suptitle()
    base_lines = [ln for ln in dj_ax.get_lines() if ln.get_linestyle() == "--"]
    assert base_lines[0].get_xdata()[0] == 1e7


def test_one_way_rejects_mixed_units_and_bad_arguments():
    ds = one_way_ds()
    with pytest.raises(ValueError, match="different units"):
        plots.one_way(ds, ["t_r", "P_r"])
    with pytest.raises(ValueError, match="'nope'"):
        plots.one_way(ds, ["nope"])
    with pytest.raises(ValueError, match="x must be"):
        plots.one_way(ds, "t_r", x="step")


# ----------------------------------------------------------------------------- heatmap


def _contours(ax):
    return [c for c in ax.collections if isinstance(c, ContourSet)]


def test_heatmap_labels_log_axes_contours_and_failures():
    fig = render(plots.heatmap(grid_ds(), "t_r", "f", "D_J", p=0.31))
    assert isinstance(fig, Figure)
    ax, cax = fig.axes
    assert ax.get_xlabel() == "supplier's share of the loss"
    assert ax.get_ylabel() == "supply-chain loss [$]"
    assert ax.get_xscale() == "linear" and ax.get_yscale() == "log"  # D_J spans 4 decades
    assert cax.get_ylabel() == "expected cost, retailer [$]"
    (cs,) = _contours(ax)
    assert len(cs.levels) > 0 and len(ax.texts) > 0  # labelled contour lines
    assert "p = 0.3" in ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["not converged"]
    assert any(c.get_hatch() for c in ax.collections)


def test_heatmap_options_and_norms():
    ds = grid_ds()
    fig = render(plots.heatmap(ds, "t_r", "D_J", "f", contours=False, p=0.7))
    assert _contours(fig.axes[0]) == []
    assert fig.axes[0].get_xscale() == "log"
    fig = render(plots.heatmap(ds, "t_r", "f", "D_J", levels=[3e4, 5e4, 1e9], p=0.3))
    np.testing.assert_array_equal(_contours(fig.axes[0])[0].levels, [3e4, 5e4])
    fig = render(plots.heatmap(grid_ds(signed=True), "t_r", "f", "D_J", p=0.3))
    mesh = fig.axes[0].collections[0]
    assert isinstance(mesh.norm, CenteredNorm) and mesh.norm.vcenter == 0
    wide = ds.assign(t_r=ds["t_r"] ** 3)  # positive, spanning > 2 decades: log colours
    fig = render(plots.heatmap(wide, "t_r", "f", "D_J", p=0.3))
    assert isinstance(fig.axes[0].collections[0].norm, LogNorm)


def test_heatmap_bad_selection_names_dims():
    ds = grid_ds()
    with pytest.raises(ValueError, match=r"dims are \('f', 'D_J', 'p'\).*select \['p'\]"):
        plots.heatmap(ds, "t_r", "f", "D_J")
    with pytest.raises(ValueError, match=r"y='theta_r'.*dims are \('f', 'D_J'\)"):
        plots.heatmap(ds, "t_r", "f", "theta_r", p=0.3)
    with pytest.raises(ValueError, match="'W' is not in the dataset"):
        plots.heatmap(ds, "W", "f", "D_J", p=0.3)


def categorical_ds():
    """isb-like: costs over two categorical parameters (labels) and a numeric one."""
    structure, policy = ["S", "WH", "MF", "NT"], ["I", "II", "III"]
    capacity = np.array([60.0, 80.0, 100.0])
    cost = (np.arange(4)[:, None, None] * 10.0 + np.arange(3)[None, :, None] * 100.0
            + capacity[None, None, :])
    return xr.Dataset(
        {"cost_chain": (("structure", "policy", "capacity"), cost,
                        {"units": "$/day", "description": "chain cost"}),
         "assumptions_hold": (("structure", "policy", "capacity"), np.ones(cost.shape, bool))},
        coords={"structure": ("structure", structure, {"description": "structure"}),
                "policy": ("policy", policy), "capacity": ("capacity", capacity)},
        attrs={"model": "isb"})


def test_heatmap_and_region_map_over_categorical_axes():
    """Labels (categorical parameters) go at evenly spaced ticks in the coordinate's order,
    one cell per label, without contours across them; a numeric axis beside them is kept."""
    ds = categorical_ds()
    fig = render(plots.heatmap(ds, "cost_chain", "policy", "structure", capacity=80.0))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["I", "II", "III"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["S", "WH", "MF", "NT"]
    np.testing.assert_array_equal(ax.get_xticks(), [0, 1, 2])
    assert ax.get_xlim() == (-0.5, 2.5) and ax.get_ylim() == (-0.5, 3.5)
    assert _contours(ax) == []
    # the cells hold the values in the coordinates' order (row = structure, column = policy)
    np.testing.assert_array_equal(np.asarray(ax.collections[0].get_array()).reshape(4, 3),
                                  ds["cost_chain"].sel(capacity=80.0).values)
    fig = render(plots.heatmap(ds, "cost_chain", "capacity", "structure", policy="II"))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["S", "WH", "MF", "NT"]
    assert ax.get_xlim() == (50.0, 110.0) and _contours(ax) == []
    codes = ds.assign(cheapest=ds["cost_chain"].argmin("policy").astype(np.int32))
    fig = render(plots.region_map(codes, "cheapest", "capacity", "structure"))
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["S", "WH", "MF", "NT"]


def test_lines_along_a_categorical_x():
    ds = categorical_ds()
    fig = render(plots.lines(ds, "cost_chain", "structure", by="policy", sel={"capacity": 80}))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["S", "WH", "MF", "NT"]
    assert ax.get_xscale() == "linear"
    line = ax.lines[0]
    assert line.get_marker() == "o"
    np.testing.assert_array_equal(line.get_xdata(), [0, 1, 2, 3])
    np.testing.assert_array_equal(line.get_ydata(),
                                  ds["cost_chain"].sel(policy="I", capacity=80.0).values)
    with pytest.raises(ValueError, match="xmarks need a numeric x; 'structure' holds labels"):
        plots.lines(ds.assign(mark=ds["cost_chain"]), "cost_chain", "structure", by="policy",
                    sel={"capacity": 80}, xmarks=["mark"])


# ----------------------------------------------------------------------------- region map


def test_region_map_lists_present_categories_only():
    labels = {0: "nobody", 1: "supplier only", 2: "retailer only", 3: "both"}
    fig = render(plots.region_map(grid_ds(), "regime", "f", "D_J", labels=labels, p=0.3))
    assert isinstance(fig, Figure)
    (ax,) = fig.axes  # no colorbar
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == ["nobody", "retailer only", "both", "not converged"]
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "supply-chain loss [$]"
    fig = render(plots.region_map(grid_ds(), "assumptions_hold", "f", "D_J", p=0.3))
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "True", "not converged"]


def test_region_map_colours_follow_label_order():
    ds = grid_ds()
    full = plots.region_map(ds, "regime", "f", "D_J", labels={0: "a", 2: "b", 3: "c"}, p=0.3)
    no_zero = ds.assign(regime=ds["regime"].where(ds["regime"] != 0, 3))
    sub = plots.region_map(no_zero, "regime", "f", "D_J", labels={0: "a", 2: "b", 3: "c"},
                           p=0.3)

    def colours(fig):
        leg = fig.axes[0].get_legend()
        return {t.get_text(): tuple(h.get_facecolor())
                for t, h in zip(leg.get_texts(), leg.legend_handles, strict=True)}

    assert colours(full)["c"] == colours(sub)["c"]
    assert "a" not in colours(sub)


def test_region_map_rejects_continuous_values():
    with pytest.raises(ValueError, match="categorical"):
        plots.region_map(grid_ds(), "t_r", "f", "D_J", p=0.3)


# ----------------------------------------------------------------------------- Sobol


def test_sobol_bars_sorted_with_error_bars():
    fig = render(plots.sobol_bars(sobol_ds(), "t_r"))
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["theta_r", "f", "D_J"]
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 2 and all(c.errorbar is not None for c in bars)  # S1, ST
    heights = [p.get_height() for p in bars[1].patches]
    assert heights == pytest.approx([0.6, 0.3, 0.05])
    assert "Sobol index" in ax.get_ylabel()
    assert "expected cost, retailer" in ax.get_title() and "320" in ax.get_title()


# ----------------------------------------------------------------------------- save


def test_save_writes_png_and_closes_pyplot_figures(tmp_path):
    path = plots.save(plots.sobol_bars(sobol_ds(), "t_r"), tmp_path / "a" / "b" / "s.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig, _ = plt.subplots()
    plots.save(fig, tmp_path / "p.png", dpi=50)
    assert not plt.fignum_exists(fig.number)
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lines_panels_units_and_failures():
    p = np.linspace(0.0, 1.0, 11)
    ds = xr.Dataset(
        {"a_y": ("p", 1e4 * (1 + p), {"units": "$"}), "b_y": ("p", 2e4 * (1 - p) + 1,
                                                               {"units": "$"}),
         "converged": ("p", p < 0.95)},
        coords={"p": ("p", p, {"units": "1", "description": "prior"})})
    fig = plots.lines(ds, {"first": ["a_y"], "second": ["a_y", "b_y"]}, "p",
                      title="two panels")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 2
    assert visible[0].get_ylabel() == "[$]" and visible[0].get_xlabel() == "prior"
    assert [t.get_text() for t in visible[1].get_legend().get_texts()] == ["a_y", "b_y"]
    # the non-converged point is marked in red on every line
    red = [ln for ln in visible[1].lines if ln.get_color() == "red"]
    assert len(red) == 2 and all(len(ln.get_xdata()) == 1 for ln in red)
    grid = ds.expand_dims(q=[1.0, 2.0])
    with pytest.raises(ValueError, match="select"):
        plots.lines(grid, ["a_y"], "p")
    with pytest.raises(ValueError, match="no variable"):
        plots.lines(ds, ["zz"], "p")


# ----------------------------------------------------------------------------- one-way, more


def regions_ds():
    """A one-way dataset with a categorical background, mixed units and violated
    assumptions (no model attr: all metadata from the variables' own attrs)."""
    rel = np.geomspace(0.25, 4.0, 9)
    base = {"V": 2.0, "h": 0.5}
    dims = ("parameter", "step")
    value = np.stack([2.0 * rel, 0.5 * rel])
    case = np.stack([np.where(rel < 1, 5, 2), np.full(9, 2)]).astype(np.int32)
    hold = np.ones((2, 9), bool)
    hold[1, -2:] = False  # h at its two largest values
    conv = np.ones((2, 9), bool)
    conv[0, 0] = False
    return xr.Dataset(
        {"r": (dims, np.stack([1 + rel, 2 - 0.1 * rel]),
               {"units": "unit/day", "description": "defender's daily resource"}),
         "R": (dims, np.stack([rel, 0.5 * rel]),
               {"units": "unit/day", "description": "attacker's daily resource"}),
         "I": (dims, np.stack([0 * rel, rel]), {"units": "unit", "description": "inventory"}),
         "case": (dims, case, {"description": "case of Table 3"}),
         "assumptions_hold": (dims, hold, {"description": "min L > max D"}),
         "converged": (dims, conv)},
        coords={"parameter": ["V", "h"], "step": np.arange(9),
                "value": (dims, value), "relative": (dims, np.stack([rel, rel]))},
        attrs={"base_params": json.dumps(base)})


def _hatched(ax, hatch="xx"):
    return [p for p in ax.patches if p.get_hatch() == hatch]


def test_one_way_regions_background_legend_and_mixed_units():
    ds = regions_ds()
    fig = render(plots.one_way_regions(ds, ["r", "R", "I"], "case",
                                       labels={2: "#2 backup", 5: "#5 deterred", 9: "#9"}))
    v_ax, h_ax = [ax for ax in fig.axes if ax.get_visible()]
    # V: two stretches (case 5 below the base value, case 2 above), h: one, all filled
    spans = [p for p in v_ax.patches if not p.get_hatch()]
    assert len(spans) == 2
    assert len({p.get_facecolor()[:3] for p in spans}) == 2
    assert v_ax.get_xlim() == pytest.approx((0.25, 4.0))  # the background fills the panel
    assert v_ax.get_xscale() == "log"
    # violated assumptions: cross-hatched over h's two largest steps only
    assert len(_hatched(h_ax)) == 1 and not _hatched(v_ax)
    assert v_ax.get_ylabel() == "r, R [unit/day]; I [unit]"
    cat_legend, line_legend = fig.legends
    assert [t.get_text() for t in cat_legend.get_texts()] == ["#2 backup", "#5 deterred"]
    assert cat_legend.get_title().get_text() == "case of Table 3"
    texts = [t.get_text() for t in line_legend.get_texts()]
    assert "defender's daily resource (r) [unit/day]" in texts
    assert "inventory (I) [unit]" in texts
    assert "assumptions violated (assumptions_hold: min L > max D)" in texts
    assert "not converged" in texts
    # panels have their own y axes by default
    assert not v_ax.get_shared_y_axes().joined(v_ax, h_ax)
    assert "background: case of Table 3" in fig.get_suptitle()
    lines = [ln for ln in v_ax.get_lines() if ln.get_marker() in ("None", "", None)
             and len(ln.get_xdata()) == 9]
    assert [ln.get_linestyle() for ln in lines] == ["-", "--", "-."]


def test_one_way_regions_default_labels_value_axis_and_sharey():
    ds = regions_ds()
    fig = render(plots.one_way_regions(ds, "r", "case", x="value", sharey=True))
    v_ax, h_ax = fig.axes[:2]
    assert v_ax.get_shared_y_axes().joined(v_ax, h_ax)
    assert v_ax.get_xlabel() == "V" and v_ax.get_ylabel() == "defender's daily resource [unit/day]"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["case = 2", "case = 5"]
    booleans = ds.assign(case=ds["case"] == 2)
    fig = render(plots.one_way_regions(booleans, "r", "case",
                                       labels={True: "two", False: "other"}))
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["two", "other"]


def test_one_way_regions_rejects_bad_backgrounds():
    ds = regions_ds()
    with pytest.raises(ValueError, match="background 'regime' is not in the dataset"):
        plots.one_way_regions(ds, "r", "regime")
    with pytest.raises(ValueError, match="background 'R' needs categorical"):
        plots.one_way_regions(ds, "r", "R")
    with pytest.raises(ValueError, match=r"needs dims \(parameter, step\)"):
        plots.one_way_regions(ds.assign(c=("step", np.arange(9))), "r", "c")
    with pytest.raises(ValueError, match="'nope'"):
        plots.one_way_regions(ds, "nope", "case")


def test_one_way_sharey_false_assumptions_and_overlapping_lines():
    ds = one_way_ds()
    hold = np.ones(ds["t_r"].shape, bool)
    hold[0, :2] = False
    ds = ds.assign(assumptions_hold=(("parameter", "step"), hold))
    fig = render(plots.one_way(ds, ["t_r", "y_r"], sharey=False))
    f_ax, dj_ax = fig.axes[:2]
    assert not f_ax.get_shared_y_axes().joined(f_ax, dj_ax)
    assert f_ax.get_ylim() != dj_ax.get_ylim()
    assert len(_hatched(f_ax)) == 1 and not _hatched(dj_ax)
    texts = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    assert any(t.startswith("assumptions violated (assumptions_hold: ") for t in texts)
    t_line, y_line = [ln for ln in f_ax.get_lines() if len(ln.get_xdata()) == 5]
    assert t_line.get_linewidth() > y_line.get_linewidth()  # a line on top stays visible
    fig = render(plots.one_way(ds, "t_r"))  # shared by default
    assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[1])


def test_one_way_y_label_from_the_common_description():
    ds = one_way_ds()
    ds = ds.assign(u_a=ds["t_r"].assign_attrs(description="defender's payoff, none mechanism"),
                   u_b=ds["y_r"].assign_attrs(description="defender's payoff, backup"))
    fig = render(plots.one_way(ds, ["u_a", "u_b"]))
    assert fig.axes[0].get_ylabel() == "defender's payoff [$]"
    ds = ds.assign(u_b=ds["u_b"].assign_attrs(description="defender's pay"))
    assert render(plots.one_way(ds, ["u_a", "u_b"])).axes[0].get_ylabel() == "defender's [$]"


# ----------------------------------------------------------------------------- lines, more


def response_ds():
    r = np.linspace(0.0, 6.0, 25)
    k = np.array([0.0, 1.0])
    rho = np.array([3.0, 5.0])
    R_hat = np.maximum(0.0, np.sqrt(r[:, None] * rho[None, :]) - r[:, None])
    hold = np.ones((25, 2), bool)
    hold[-3:, 1] = False
    conv = np.ones((25, 2), bool)
    conv[4, 0] = False
    return xr.Dataset(
        {"R_hat": (("r", "k"), R_hat, {"units": "unit/day", "description": "best response"}),
         "rho": (("r", "k"), np.broadcast_to(rho, (25, 2)).copy(),
                 {"units": "unit/day", "description": "deterrence threshold"}),
         "assumptions_hold": (("r", "k"), hold),
         "converged": (("r", "k"), conv)},
        coords={"r": ("r", r, {"units": "unit/day", "description": "defender's resource"}),
                "k": ("k", k, {"description": "capacity backup"}),
                "I": ("I", [0.0, 1.0])})


def test_crossings_interpolate_sign_changes():
    xs = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    assert plots._crossings(xs, np.full(5, 2.5)) == [2.5]
    assert plots._crossings(xs, np.full(5, 2.0)) == [2.0]
    assert plots._crossings(xs, np.full(5, 9.0)) == []
    assert plots._crossings(xs, np.array([0.5, 0.5, 3.0, 3.0, 3.0])) == pytest.approx(
        [0.5, 1.0 + 1.0 / 3.0, 3.0])


def test_lines_by_with_threshold_marks_and_assumptions():
    ds = response_ds()
    fig = render(plots.lines(ds, ["R_hat"], "r", by="k", xmarks=["rho"], title="Fig. 4"))
    (ax,) = [a for a in fig.axes if a.get_visible()]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[:4] == ["k = 0", "deterrence threshold (rho) = 3 at k = 0", "k = 1",
                         "deterrence threshold (rho) = 5 at k = 1"]
    assert texts[-1].startswith("assumptions violated")
    assert ax.get_legend().get_title().get_text() == "k: capacity backup"
    marks = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    assert sorted(ln.get_xdata()[0] for ln in marks) == pytest.approx([3.0, 5.0])
    k0, k1 = (ln for ln in ax.get_lines() if ln.get_label() in ("k = 0", "k = 1"))
    assert marks[0].get_color() == k0.get_color()
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 1 and dashed[0].get_color() == k1.get_color()
    assert np.isfinite(np.asarray(dashed[0].get_ydata(), float)).sum() == 4  # 3 + neighbour
    red = [ln for ln in ax.get_lines() if ln.get_color() == "red"]
    assert len(red) == 1 and red[0].get_xdata()[0] == pytest.approx(1.0)
    assert ax.get_ylabel() == "best response [unit/day]"
    assert fig.get_suptitle() == "Fig. 4"


def test_lines_by_several_variables_and_bad_arguments():
    ds = response_ds()
    fig = render(plots.lines(ds, ["R_hat", "rho"], "r", by="k"))
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts[:4] == ["R_hat, k = 0", "R_hat, k = 1", "rho, k = 0", "rho, k = 1"]
    styles = {ln.get_label(): ln.get_linestyle() for ln in fig.axes[0].get_lines()}
    assert styles["R_hat, k = 0"] == "-" and styles["rho, k = 1"] == "--"
    named = ds.assign_coords(k=["none", "backup"])  # names as values of the by dim
    legend = render(plots.lines(named, "R_hat", "r", by="k")).axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()][:2] == ["k = none", "k = backup"]
    with pytest.raises(ValueError, match="by='r' must be another dim"):
        plots.lines(ds, ["R_hat"], "r", by="r")
    with pytest.raises(ValueError, match="by='I' is not a dim of 'R_hat'"):
        plots.lines(ds, ["R_hat"], "r", by="I")
    with pytest.raises(ValueError, match="no variable"):
        plots.lines(ds, ["R_hat"], "r", by="k", xmarks=["nope"])
    grid = ds.expand_dims(q=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"select \['q'\]"):
        plots.lines(grid, ["R_hat"], "r", by="k")


# ----------------------------------------------------------------------------- maps, more


def test_heatmap_facets_share_colours_and_levels():
    ds = grid_ds()
    fig = render(plots.heatmap(ds, "t_r", "f", "D_J", facet="p"))
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2 and len(fig.axes) == 3  # one colour bar for both panels
    meshes = [ax.collections[0] for ax in panels]
    assert meshes[0].norm is meshes[1].norm
    lo, hi = float(ds["t_r"].where(ds["converged"]).min()), float(ds["t_r"].max())
    assert (meshes[0].norm.vmin, meshes[0].norm.vmax) == pytest.approx((lo, hi))
    levels = [_contours(ax)[0].levels for ax in panels]
    np.testing.assert_array_equal(levels[0], levels[1])
    # the facet's description comes from the model named in the dataset (bakshi_kleindorfer)
    assert [ax.get_title() for ax in panels] == [
        "prior probability that the supplier is safe: p = 0.3",
        "prior probability that the supplier is safe: p = 0.7"]
    assert panels[0].get_ylabel() == "supply-chain loss [$]" and panels[1].get_ylabel() == ""
    assert "expected cost, retailer" in fig.get_suptitle()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["not converged"]
    three = ds.expand_dims(q=[1.0, 2.0])
    fig = render(plots.heatmap(three, "t_r", "f", "D_J", facet="p", q=2.0))
    assert fig.get_suptitle().endswith("at q = 2")


def test_heatmap_facet_bad_arguments():
    ds = grid_ds()
    with pytest.raises(ValueError, match="do not pass ax"):
        plots.heatmap(ds, "t_r", "f", "D_J", facet="p", ax=Figure().add_subplot())
    with pytest.raises(ValueError, match="facet='f' must be another dim"):
        plots.heatmap(ds, "t_r", "f", "D_J", facet="f")
    with pytest.raises(ValueError, match="facet='q' is not a dim"):
        plots.heatmap(ds, "t_r", "f", "D_J", facet="q", p=0.3)


def test_maps_cross_hatch_violated_assumptions():
    ds = grid_ds()
    hold = np.ones(ds["t_r"].shape, bool)
    hold[-3:, -2:, :] = False
    ds = ds.assign(assumptions_hold=(("f", "D_J", "p"), hold))
    ax = render(plots.heatmap(ds, "t_r", "f", "D_J", p=0.3)).axes[0]
    assert any(c.get_hatch() == "xx" for c in ax.collections)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[0] == "not converged" and texts[1].startswith("assumptions violated (")
    ax = render(plots.region_map(ds, "regime", "f", "D_J", p=0.3)).axes[0]
    assert any(c.get_hatch() == "xx" for c in ax.collections)
    assert ax.get_legend().get_texts()[-1].get_text().startswith("assumptions violated (")
    ax = render(plots.heatmap(grid_ds(), "t_r", "f", "D_J", p=0.3)).axes[0]  # all hold
    assert not any(c.get_hatch() == "xx" for c in ax.collections)
