"""The command line: Figure 3 reproduction, info, usage errors."""

import pytest

from jaxgames import cli


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


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == 2
