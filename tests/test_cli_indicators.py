"""`tradecore indicators list|validate`, through the real entry point and the installed script."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tradecore_lib.cli import main
from tradecore_lib.features import REGISTRY


def test_list_prints_every_card(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["indicators", "list"]) == 0
    out = capsys.readouterr().out
    for name, card in REGISTRY.items():
        assert f"{name} - {card.label}" in out
    assert "param window (int, default 14, 2..1000)" in out


def test_list_json_is_machine_readable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["indicators", "list", "--json"]) == 0
    catalog = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in catalog] == list(REGISTRY)
    rsi = next(c for c in catalog if c["name"] == "rsi")
    assert rsi["outputs_at_defaults"] == ["rsi_14"] and rsi["talib"] == ["RSI"]


@pytest.mark.parametrize("name", ["default", "extended", "full"])
def test_validate_shipped_presets(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["indicators", "validate", name]) == 0
    assert f"valid preset {name!r}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"indicators": [{"name": "stoch"}]}, "unknown indicator 'stoch'; valid choices: atr,"),
        ({"indicators": [{"name": "rsi", "params": {"length": 9}}]},
         "indicators[0] (rsi): unknown parameter 'length'; valid parameters: window"),
        ({"indicators": [{"name": "bbands", "params": {"nbdev": 9}}]},
         "indicators[0] (bbands): parameter 'nbdev' = 9 is out of bounds [0.5, 5]"),
    ],
)
def test_validate_invalid_file_exits_2_naming_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: dict, expected: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    assert main(["indicators", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: invalid indicator preset" in err
    assert expected in err


def test_installed_script_exit_codes(tmp_path: Path) -> None:
    script = shutil.which("tradecore", path=str(Path(__file__).parents[1] / ".venv" / "bin"))
    if script is None:
        pytest.skip("the tradecore console script is not installed in .venv")
    ok = subprocess.run([script, "indicators", "validate", "default"], capture_output=True)
    assert ok.returncode == 0
    bad = subprocess.run([script, "indicators", "validate", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "unknown preset 'nope'" in bad.stderr and "default, extended, full" in bad.stderr
    usage = subprocess.run([script, "indicators"], capture_output=True, text=True)
    assert usage.returncode == 2  # argparse: missing ACTION
