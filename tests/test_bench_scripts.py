"""The benchmark scripts of issue 14 still run: the one-command accelerator report
(``benchmarks/gpu.sh`` -> ``benchmarks/gpu_report.py``, which drives ``bench_width.py``) in its
tiny configuration on the CPU, and its import footprint (only JAX, NumPy, xarray, optax, tqdm,
matplotlib may be needed on an accelerator machine).

Subprocesses: the scripts set ``jax_enable_x64`` per dtype themselves, and import this checkout's
``jaxgames`` (``PYTHONPATH`` set to the repository root, as ``gpu.sh`` is documented to run).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["JAX_PLATFORMS"] = "cpu"
    env.pop("OUT", None)
    return env


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_report")
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), str(out), "--tiny"],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out


def test_gpu_report_writes_every_file(report):
    summary = json.loads((report / "gpu_report.json").read_text())
    assert summary["device"].startswith("cpu")
    assert summary["dtypes"] == ["float32", "float64"]
    assert not any(summary["exit_codes"].values())
    expected = {f"{kind}_cpu_{d}.json" for kind in ("bk_closed_form", "width")
                for d in ("float32", "float64")}
    assert set(summary["files"]) == expected
    assert all((report / f).exists() for f in expected)
    for d in ("float32", "float64"):
        head = summary["headline"][d]
        assert head["bk_engine_over_cf_jax"] > 0
        assert set(head["bakshi_kleindorfer.noncooperative"]) == {"4", "16"}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_width_scan_json(report, dtype):
    rep = json.loads((report / f"width_cpu_{dtype}.json").read_text())
    assert rep["dtype"] == dtype and rep["machine"]["device"].startswith("cpu")
    (res,) = rep["results"]
    assert (res["model"], res["function"]) == ("bakshi_kleindorfer", "noncooperative")
    assert [w["width"] for w in res["widths"]] == [4, 16]
    assert [w["n_groups"] for w in res["widths"]] == [4, 1]
    for w in res["widths"]:
        assert w["points_per_s"] > 0 and 0 < w["ratio_to_best"] <= 1
        assert len(w["times_s"]) == len(w["loadavg"]) == 1
    assert max(w["ratio_to_best"] for w in res["widths"]) == 1
    # failure is data: every point either solved with finite outputs or flagged
    assert res["unflagged_nonfinite"] == 0
    assert 0 <= res["share_flagged"] <= 1
    assert res["identical_across_widths"] in (True, False)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bk_closed_form_json(report, dtype):
    rep = json.loads((report / f"bk_closed_form_cpu_{dtype}.json").read_text())
    assert rep["dtype"] == dtype and rep["n_points"] == 64
    assert {r["method"] for r in rep["rows"]} == {"engine", "cf_jax"}
    # interior points of assumption set (2): the engine agrees with the closed form
    assert rep["share_converged"] == 1.0
    assert rep["max_rel_err_converged"] < (1e-4 if dtype == "float32" else 1e-10)


BLOCKED = ("scipy", "zarr", "dask", "pytest", "hypothesis", "optimistix", "SALib")


def test_report_imports_without_scipy_zarr_dask_pytest():
    """Import everything the report imports with the non-listed packages made unimportable."""
    code = textwrap.dedent(f"""
        import sys
        # As if not installed: `import x` raises ImportError and importlib.util.find_spec(x)
        # returns None (how libraries such as xarray probe for optional packages).
        for name in {BLOCKED!r}:
            sys.modules[name] = None
        import importlib.util
        from jaxgames.models import REGISTRY
        for path in REGISTRY.values():
            importlib.import_module(path)
        for name in ("bench_width", "gpu_report", "bench_bakshi_kleindorfer"):
            spec = importlib.util.spec_from_file_location(name, "benchmarks/" + name + ".py")
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _script(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_width_bits_counts_differing_points(tmp_path):
    """``width_bits.py``: NaN equals NaN, a last-bit difference is counted per point with its
    size, and a function whose bits do not depend on the width is reported identical."""
    import collections

    import numpy as np

    wb = _script("width_bits")
    Out = collections.namedtuple("Out", "a status")
    a = Out(np.array([1.0, np.nan, 3.0, 4.0]), np.array([0, 1, 0, 0]))
    b = Out(np.array([1.0, np.nan, np.nextafter(3.0, 4.0), 4.0]), np.array([0, 1, 0, 2]))
    diff = wb.differences(a, b, 4)
    assert diff[".a"]["points"] == 1
    assert diff[".a"]["max_absolute"] == np.nextafter(3.0, 4.0) - 3.0
    assert diff[".status"] == {"points": 1, "max_absolute": None, "max_relative": None}
    assert wb.differences(a, b, 2) == {}
    out = tmp_path / "bits.json"
    res = wb.main(["bakshi_kleindorfer.noncooperative", "--n", "16", "--widths", "8", "16",
                   "--out", str(out)])
    assert res["widths"] == {"16": {}}  # the solver's arithmetic is width-independent
    assert json.loads(out.read_text())["function"] == "bakshi_kleindorfer.noncooperative"
