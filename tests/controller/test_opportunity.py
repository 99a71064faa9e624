"""The opportunity forecast (issue 21 point 2): fitted on nights whose candidates stop
half-way, it forecasts the candidates still to come against the analytic count, far better
than extrapolating the rate so far; and an allocator paced by it spends a budget that
clock pacing leaves unspent."""
import numpy as np
import pytest

from engramloop.analysis.training.opportunity_train import fit_opportunity, opportunity_rows
from engramloop.controller.allocator import AllocatorSettings, BudgetAllocator
from engramloop.controller.opportunity import OpportunityModel, OpportunityModelError
from engramloop.decoders.pulse_features import CANDIDATE_NAMES

NIGHT_S = 1200.0
_SP = CANDIDATE_NAMES.index("spindle_recent")


def _night(seed, stop_s=600.0, every_s=10.0):
    """Eligible candidates every ``every_s`` (jittered) until ``stop_s``, none after."""
    rng = np.random.default_rng(seed)
    t = np.arange(5.0, stop_s, every_s)
    t = t + rng.uniform(-1.0, 1.0, len(t))
    x = np.zeros((len(t), len(CANDIDATE_NAMES)))
    x[:, _SP] = 1.0
    return {"seed": seed, "t": t, "x": x}


def test_forecast_matches_the_analytic_count_and_beats_the_rate():
    nights = [_night(s) for s in range(100, 106)]
    m = fit_opportunity(nights, NIGHT_S, gap_s=5.0)
    f, left, truth = opportunity_rows(nights[0]["t"], nights[0]["x"], NIGHT_S, 5.0)
    t = NIGHT_S - left
    seen = np.arange(1, len(t) + 1)
    got = m.expected_many(nights[0]["x"], t, seen, NIGHT_S)
    rate = seen / np.maximum(t, 60.0) * left
    assert np.mean(np.abs(got - truth)) < 0.25 * np.mean(np.abs(rate - truth))
    mid = np.argmin(np.abs(t - 300.0))       # analytic: (600 - 300) / 10 = 30 to come
    assert abs(got[mid] - truth[mid]) < 6 and abs(truth[mid] - 30) <= 1


def test_fit_refuses_evaluation_seeds_and_bad_files(tmp_path):
    with pytest.raises(ValueError, match="evaluation seeds"):
        fit_opportunity([_night(3001)], NIGHT_S)
    p = tmp_path / "o.json"
    p.write_text('{"inputs": ["one"], "coef": [1.0]}', encoding="utf-8")
    with pytest.raises(OpportunityModelError, match="refit"):
        OpportunityModel.load(p)
    m = fit_opportunity([_night(s) for s in range(100, 103)], NIGHT_S)
    back = OpportunityModel.load(m.save(tmp_path / "ok.json"))
    np.testing.assert_array_equal(back.coef, m.coef)


class _Exact:
    """The true number of candidates to come (the synthetic night's schedule)."""

    def __init__(self, t):
        self.t = np.asarray(t)

    def expected(self, x, t_s, spaced_seen, night_s):
        return float(np.sum(self.t > t_s))


def test_forecast_pacing_spends_a_front_loaded_budget():
    t = np.arange(5.0, 600.0, 10.0)             # 60 candidates, all in the first half
    x = np.zeros(len(CANDIDATE_NAMES))
    x[_SP] = 1.0
    kw = dict(budget=50, night_s=NIGHT_S, min_gap_s=5.0, slack=6.0, warmup=0)
    rate = BudgetAllocator(AllocatorSettings(**kw))
    fc = BudgetAllocator(AllocatorSettings(opportunity="forecast", pace="opportunity", **kw),
                         _Exact(t))
    n_rate = sum(rate.decide(0.0, ti, x=x) for ti in t)
    n_fc = sum(fc.decide(0.0, ti, x=x) for ti in t)
    assert n_fc == 50 and fc.spent == 50
    assert n_rate < 40                           # paced by the clock it waits for a half
    with pytest.raises(ValueError, match="OpportunityModel"):
        BudgetAllocator(AllocatorSettings(opportunity="forecast"))
    with pytest.raises(ValueError, match="features"):
        fc.decide(0.0, 700.0)
