"""The experiment's target lines (issue 21): target B is judged against the *best*
model-free rule too, not only the one-line spindle rule -- a model that only ties the
rule with the allocator's own pacing must not read as "MET"."""
import numpy as np

from engramloop.analysis.training.experiment import CONDITIONS, ExperimentSettings, report


def _rows(gains: dict[str, float], n_seeds: int = 20) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for k in range(n_seeds):
        noise = rng.normal(0, 1e-4)
        rec = {}
        for c in CONDITIONS:
            for n in (10, 20, 30, 60):
                rec[(c, n)] = (0.3 + gains.get(c, 0.0) * n / 30 + noise
                               + rng.normal(0, 2e-4), float(n))
        rows.append({"seed": 3000 + k, "sham": 0.3 + noise, "n_candidates": 700,
                     "n_rule": 120, "n_coupled": 24, "check_diff": 0.0, "rows": rec})
    return rows


def test_target_b_against_the_best_model_free_rule():
    st = ExperimentSettings(seeds=20)
    gains = {"ungated": 0.003, "spaced": 0.0077, "rule": 0.0098, "rule-paced": 0.0105,
             "allocator": 0.0106, "learned": 0.009}
    out = "\n".join(report(_rows(gains), st))
    assert "target B (allocator@30 vs rule@30)" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("target B, against the best"))
    assert "(rule-paced)" in line and "MISSED" in line and "adds nothing" in line
    gains["allocator"] = 0.0140                   # clearly above every model-free rule
    line = next(ln for ln in report(_rows(gains), st)
                if ln.startswith("target B, against the best"))
    assert line.endswith(": MET"), line


def test_report_counts_pulses_the_rerun_cannot_reproduce():
    st = ExperimentSettings(seeds=20)
    rows = _rows({"rule": 0.0098})
    for r in rows:
        r["inexact"] = {k: 0 for k in r["rows"]}
    rows[3]["inexact"][("rule", 30)] = 2
    total = sum(n for r in rows for _, n in r["rows"].values())
    line = next(ln for ln in report(rows, st) if ln.startswith("pulses the re-run cannot"))
    assert f": 2 of {int(total)} scored (most: rule@30: 2)" in line, line
