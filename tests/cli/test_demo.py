"""`engramloop demo` (what `make demo` runs): the uplift allocator with the shipped models,
recorded with a sham twin and an ungated run of as many pulses, compared as recorded."""
from __future__ import annotations

import fnmatch
import json
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import pyxdf

from engramloop.cli import main
from engramloop.cli.commands import demo
from engramloop.controller.config import SHIPPED_DIR

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


def _sent(xdf: Path) -> int:
    """Pulses the recording says were sent (read back by pyxdf, not by us)."""
    streams, _ = pyxdf.load_xdf(str(xdf), synchronize_clocks=False, dejitter_timestamps=False)
    st = [s for s in streams if s["info"]["name"][0] == "engramloop.pulses"]
    recs = [json.loads(m[0]) for s in st for m in s["time_series"]]
    return len({r["pulse"]["pulse_id"] for r in recs
                if (r.get("delivery") or {}).get("status") in ("sent", "acked")})


def test_demo_records_the_uplift_allocator_and_compares_at_equal_pulses(tmp_path, capsys):
    from engramloop.decoders.forecaster import Checkpoint, default_checkpoint_path
    from engramloop.decoders.uplift import default_uplift_path

    # 60 simulated seconds (the default is 480): one forecast (the first after 30 s, the
    # next would be at 60 s), and time for a ripple after a spindle (the allocator's only
    # candidates) in the N2 the night starts with
    assert main(["demo", "--duration", "60", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "uplift-allocated closed-loop ripple trial" in out
    assert f"the checkpoint shipped in the package, {default_checkpoint_path()}" in out
    assert f"the uplift model shipped in the package, {default_uplift_path()}" in out
    shipped = Checkpoint.load(default_checkpoint_path()).model_version
    assert f"forecaster {shipped}: 1 forecasts (first 30 s in)" in out
    assert "forecast gate: let " in out
    rep = json.loads((tmp_path / "summary.json").read_text())
    f = rep["run"]["forecaster"]
    assert f["model_version"] == shipped and f["forecasts"] == 1
    assert f["gate_rule"].startswith("predicted recall gain >= budget threshold")
    held = f["gate_held_back"]
    assert "uplift_late" not in held          # --speed max waits for every answer
    # every ripple the policy saw went to the gate: let through or held back
    skips = rep["run"]["policy_skips"]
    assert f["gate_allowed"] + sum(held.values()) == (
        rep["run"]["events"]["ripple"] - skips.get("ripple_too_late", 0))
    assert rep["sham"] is not None and "recall_mean" in rep["sham"]
    html = (tmp_path / "index.html").read_text()
    assert "Forecast gate" in html and "uplift_budget" in html
    # allocator vs ungated vs sham at equal pulses, as recorded
    n = rep["run"]["pulses_sent"]
    assert n >= 1, "no pulse in 60 s: the comparison would be empty"
    assert _sent(tmp_path / "session.xdf") == n
    assert _sent(tmp_path / "ungated.xdf") == n
    assert _sent(tmp_path / "session-sham-twin.xdf") == 0
    lines = out[out.index("at equal pulses"):].splitlines()
    row = {k: next(ln for ln in lines if ln.strip().startswith(k))
           for k in ("sham twin", "ungated", "uplift allocator")}
    assert f"recall {rep['sham']['recall_mean']:.4f}" in row["sham twin"]
    assert f"recall {rep['run']['recall_mean']:.4f}" in row["uplift allocator"]
    assert f", {n} pulses)" in row["uplift allocator"] and f", {n} pulses)" in row["ungated"]
    # and it claims nothing the experiment did not show
    assert "adds nothing over that rule" in out and "target B missed" in out
    assert "every predicted gain equal (no model) did better" in out
    assert "beats" not in out


def test_demo_default_is_the_uplift_allocator_with_the_shipped_models():
    from engramloop.controller.config import load_config

    assert demo.CONFIG == SHIPPED_DIR / "demo-uplift.toml"
    cfg = load_config(demo.CONFIG)
    f = cfg.forecaster
    assert f.enabled and f.checkpoint == "" and f.uplift_model == ""
    assert f.gate == "uplift_budget" and f.night_s == demo.DURATION_S
    # the night contains N3 (as the fixed experiment's nights) within the default run
    sched = [(st, float(s)) for st, s in (x.split(":") for x in cfg.sim.hypnogram.schedule)]
    start = 0.0
    for st, s in sched:
        if st == "N3":
            assert start + s <= demo.DURATION_S
            break
        start += s
    else:
        raise AssertionError("no N3 in the demo night")


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
        # 5 simulated seconds: what is checked is the folder being replaced, not the trial
        assert main(["demo", "--duration", "5", "--out", str(out), "--quiet"]) == 0
    assert "replacing the previous demo" in capsys.readouterr().out
    assert (out / "session.xdf").is_file() and (out / "index.html").is_file()
