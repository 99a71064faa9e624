"""`engramloop demo` (what `make demo` runs): forecast-gated trial with the shipped checkpoint."""
from __future__ import annotations

import fnmatch
import json
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from engramloop.cli import main
from engramloop.cli.commands import demo
from engramloop.controller.config import SHIPPED_DIR

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


def test_demo_uses_the_shipped_checkpoint_and_reports_the_gate(tmp_path, capsys):
    from engramloop.decoders.forecaster import Checkpoint, default_checkpoint_path

    # 45 simulated seconds (the default is 600): one 30 s epoch, so one forecast
    assert main(["demo", "--duration", "45", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "forecast-gated closed-loop ripple trial" in out
    assert f"the checkpoint shipped in the package, {default_checkpoint_path()}" in out
    shipped = Checkpoint.load(default_checkpoint_path()).model_version
    assert f"forecaster {shipped}: 1 forecasts (first 30 s in)" in out
    assert "forecast gate: let " in out
    rep = json.loads((tmp_path / "summary.json").read_text())
    f = rep["run"]["forecaster"]
    assert f["model_version"] == shipped and f["forecasts"] == 1
    assert f["gate_rule"] == "P(below-median) >= 0.5"
    held = f["gate_held_back"]
    # before the first forecast (30 s) the gate blocks every detection
    assert held.get("no_forecast", 0) > 0
    # every ripple the policy saw went to the gate: let through or held back
    skips = rep["run"]["policy_skips"]
    assert f["gate_allowed"] + sum(held.values()) == (
        rep["run"]["events"]["ripple"] - skips.get("ripple_too_late", 0))
    assert rep["sham"] is not None and "recall_mean" in rep["sham"]
    html = (tmp_path / "index.html").read_text()
    assert "forecast-gate.png" in html and (tmp_path / "forecast-gate.png").is_file()
    assert "Forecast gate" in html
    # allocator vs ungated vs sham at equal pulses, and what the fixed experiment found
    assert "at equal pulses" in out
    for word in ("sham", "ungated", "spindle rule", "allocator", "did not beat"):
        assert word in out, word


def test_demo_default_is_the_forecast_config_long_enough_to_open_the_gate():
    from engramloop.controller.config import load_config

    assert demo.CONFIG == SHIPPED_DIR / "sim-ripple-forecast.toml"
    cfg = load_config(demo.CONFIG)
    assert cfg.forecaster.enabled and cfg.forecaster.checkpoint == ""
    # several forecasts in the default run (the gate needs some to open and close)
    assert demo.DURATION_S >= 10 * cfg.forecaster.features.hop_s


def test_checkpoint_is_package_data():
    """The wheel carries decoders/data/forecaster.pt and every subpackage (pyproject)."""
    from engramloop.decoders.forecaster import default_checkpoint_path

    py = tomllib.loads((ROOT / "pyproject.toml").read_text())
    tool = py["tool"]["setuptools"]
    rel = default_checkpoint_path().relative_to(SRC / "engramloop" / "decoders").as_posix()
    assert any(fnmatch.fnmatch(rel, pat)
               for pat in tool["package-data"]["engramloop.decoders"])
    # the example configs ship too (tests/cli/test_install.py checks the built wheel)
    for cfg in SHIPPED_DIR.glob("*.toml"):
        rel = cfg.relative_to(SRC / "engramloop").as_posix()
        assert any(fnmatch.fnmatch(rel, pat) for pat in tool["package-data"]["engramloop"])
    # every package with an __init__.py, subpackages included (controller.commands holds
    # the CLI), matches the packages.find patterns
    include = tool["packages"]["find"]["include"]
    for init in (SRC / "engramloop").rglob("__init__.py"):
        name = ".".join(init.parent.relative_to(SRC).parts)
        assert any(fnmatch.fnmatch(name, pat) for pat in include), name


def test_demo_twice_replaces_its_own_recordings(tmp_path, capsys):
    """`make demo` twice must work: the demo's folder is its own, while `run --record`
    never overwrites a file."""
    from engramloop.cli import main

    out = tmp_path / "demo"
    for _ in range(2):
        assert main(["demo", "--duration", "20", "--out", str(out), "--quiet"]) == 0
    assert "replacing the previous demo" in capsys.readouterr().out
    assert (out / "session.xdf").is_file() and (out / "index.html").is_file()
