"""``[forecaster] gate = "uplift_budget"`` in a real loop on the simulator: the allocator
spends at most its budget, the governor still reviews every pulse, refusals are counted
by reason, the live view's status never spends budget, and the old gate keys are one-line
ConfigErrors naming the new ones."""
import dataclasses
import json

import pytest
from test_loop_status import Snapshots, StubForecaster

from engramloop.controller.build import build_loop
from engramloop.controller.config import SHIPPED_DIR, load_config, loads_config
from engramloop.core.schema import ConfigError
from engramloop.decoders.features import FeatureSettings
from engramloop.decoders.pulse_features import CANDIDATE_NAMES

CFG = SHIPPED_DIR / "sim-ripple-forecast.toml"


def _model(tmp_path):
    # a linear model: predicted gain = ripple score x 1e-5 (a known ranking)
    cols = list(CANDIDATE_NAMES)
    w = [[1.0 if c == "ripple_score" else 0.0] for c in cols]
    path = tmp_path / "uplift.json"
    path.write_text(json.dumps({"columns": cols, "mean": [0.0] * len(cols),
                                "std": [1.0] * len(cols), "layers": [[w, [0.0]]],
                                "scale": 1e5}))
    return path


@pytest.mark.parametrize("opportunity", ["rate", "forecast"])
def test_uplift_gate_spends_its_budget_under_the_governor(tmp_path, opportunity):
    base = load_config(CFG)
    fs = FeatureSettings(epoch_s=5.0, hop_s=5.0, eeg_channel="Cz", lfp_channel="CA1")
    fset = dataclasses.replace(base.forecaster, enabled=True, gate="uplift_budget",
                               uplift_model=str(_model(tmp_path)), budget_pulses=4,
                               night_s=60.0, min_gap_s=5.0, features=fs,
                               uplift_opportunity=opportunity)
    board = Snapshots()
    loop = build_loop(dataclasses.replace(base, forecaster=fset), speed="max",
                      duration_s=60.0, status_board=board)
    loop.forecaster._forecaster = StubForecaster(0.5)
    res = loop.run(60.0)
    gate = loop.policy.gate
    assert gate.allocator.spent <= 4
    # what the governor refused of what the gate allowed was given back to the budget
    sent = loop.policy.gate_allowed - gate.n_refunded
    assert 1 <= sent <= 4
    assert sum(1 for d in res.decisions if d.approved) == sent == gate.allocator.spent
    assert sum(res.gate_refusals.values()) > 0
    assert set(loop.policy.gate_refusals) <= {"low_predicted_gain", "budget_spent",
                                              "not_after_spindle", "no_candidate",
                                              "forecaster_failed"}
    assert board.all[-1].forecast_gate.startswith(("spending", "closed (budget_spent)"))
    # the status was read every chunk without spending anything
    assert gate.allocator.spent == loop.policy.gate_allowed - gate.n_refunded


@pytest.mark.parametrize("old,new", [("gate_threshold = 0.5", "p_below_median_threshold"),
                                     ('gate_when = "risk_low"', "p_below_median_low")])
def test_old_gate_keys_name_the_new_ones(old, new):
    with pytest.raises(ConfigError, match=f"forecaster.*was renamed: use .*{new}") as e:
        loads_config(f"[forecaster]\n{old}\n")
    assert "\n" not in str(e.value)


def test_a_missing_uplift_model_is_a_config_error(tmp_path):
    base = load_config(CFG)
    fset = dataclasses.replace(base.forecaster, enabled=True, gate="uplift_budget",
                               uplift_model=str(tmp_path / "nope.json"))
    with pytest.raises(ConfigError, match="forecaster.uplift_model.*file not found"):
        build_loop(dataclasses.replace(base, forecaster=fset), speed="max", duration_s=5.0)


def test_a_missing_opportunity_model_is_a_config_error(tmp_path):
    base = load_config(CFG)
    fset = dataclasses.replace(base.forecaster, enabled=True, gate="uplift_budget",
                               uplift_opportunity="forecast",
                               uplift_opportunity_model=str(tmp_path / "nope.json"))
    with pytest.raises(ConfigError, match="forecaster.uplift_opportunity_model.*not found"):
        build_loop(dataclasses.replace(base, forecaster=fset), speed="max", duration_s=5.0)
