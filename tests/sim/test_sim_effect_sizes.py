"""Each closed-loop effect's size per pulse stays inside the range of the table in
docs/simulator-effects.md, measured on the simulator's own memory model as the paired
difference of a stim run and its sham twin (same seed, same spontaneous events):
(mean recall, stim - sham) / pulses delivered. Short runs, one seed each; the table's
figures come from bench/effect_sizes.py (3 seeds, 180 s)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from sham_twins import CLICK, ELEC, OPTO, run, settings, so_at_phase

DOC = Path(__file__).resolve().parents[2] / "docs" / "simulator-effects.md"


def doc_ranges() -> dict[str, tuple[float, float]]:
    """Rows ``| name | ... | [lo, hi] |`` of the table's last column."""
    out = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*`(\w+)`.*\[\s*([-+0-9.e]+)\s*,\s*([-+0-9.e]+)\s*\]\s*\|\s*$", line)
        if m:
            out[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    return out


def theta_times(truth, want_deg: float, seconds: float, every: int = 8) -> list[float]:
    """Every ``every``-th time the theta phase passes ``want_deg`` (about 1 Hz at 8: a
    rate the governor allows, and far from saturating the labile strength)."""
    t = np.arange(5.0, seconds - 5.0, 0.001)
    d = np.abs((truth.phase("theta", t) - want_deg + 180.0) % 360.0 - 180.0)
    ok = (d[1:-1] < d[:-2]) & (d[1:-1] <= d[2:]) & (d[1:-1] < 5.0)
    return [float(x) for x in t[1:-1][ok][::every]]


SCENARIOS = {
    "click_upstate": ("N3", lambda tr, T: [(t, CLICK, "so_upstate")
                                           for t in so_at_phase(tr, 0.0)]),
    "click_downstate": ("N3", lambda tr, T: [(t, CLICK, "so_upstate")
                                             for t in so_at_phase(tr, 180.0)]),
    "ripple_prolong": ("N3", lambda tr, T: [(e.peak_s, OPTO, "ripple")
                                            for e in tr.events("ripple")]),
    "ripple_disrupt": ("N3", lambda tr, T: [(e.peak_s, ELEC, "ripple")
                                            for e in tr.events("ripple")]),
    "spindle_locked_light": ("N3", lambda tr, T: [(e.peak_s, OPTO, "spindle")
                                                  for e in tr.events("spindle")]),
    "theta_peak": ("REM", lambda tr, T: [(t, ELEC, "theta_peak")
                                         for t in theta_times(tr, 0.0, T)]),
    "theta_trough": ("REM", lambda tr, T: [(t, ELEC, "theta_trough")
                                           for t in theta_times(tr, 180.0, T)]),
}


def per_pulse(name: str, seed: int = 1, seconds: float = 90.0) -> float:
    stage, pick = SCENARIOS[name]
    s = settings(f"{stage}:{seconds:g}")
    sham = run(s, seed, seconds)
    pulses = pick(sham.truth, seconds)
    stim = run(s, seed, seconds, pulses)

    def mean(src):
        return float(np.mean(list(src.recall_scores().values())))
    return (mean(stim) - mean(sham)) / len(pulses)


def test_the_table_lists_every_effect():
    assert set(doc_ranges()) == set(SCENARIOS)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_effect_per_pulse_is_in_the_documented_range(name):
    lo, hi = doc_ranges()[name]
    got = per_pulse(name)
    print(f"{name}: {got:+.2e} recall per pulse (table: [{lo:g}, {hi:g}])")
    assert lo <= got <= hi
