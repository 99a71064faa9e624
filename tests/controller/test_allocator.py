"""The pulse-budget allocator: never over budget, keeps the gap, spends the budget on a
steady stream, and spends it on the better candidates."""
import numpy as np

from engramloop.controller.allocator import AllocatorSettings, BudgetAllocator, after_spindle
from engramloop.decoders.pulse_features import CANDIDATE_NAMES


def _run(gains, times, **kw):
    a = BudgetAllocator(AllocatorSettings(**kw))
    fired = [i for i, (g, t) in enumerate(zip(gains, times, strict=True)) if a.decide(g, t)]
    return fired, a


def test_spends_the_budget_on_the_high_gains_with_the_gap():
    rng = np.random.default_rng(0)
    times = np.sort(rng.uniform(0, 1200, 800))
    gains = rng.normal(0, 1, 800)
    fired, a = _run(gains, times, budget=30, night_s=1200.0, min_gap_s=5.0)
    assert 27 <= len(fired) <= 30 and a.spent == len(fired)
    assert np.all(np.diff(times[fired]) >= 5.0)
    # against the reference: the mean gain of everything (0); quantile targeting picks
    # far above it
    assert gains[fired].mean() > 1.0


def test_never_over_budget_and_catches_up_when_candidates_are_scarce():
    times = np.arange(0, 1200, 40.0)          # 30 candidates in the night, budget 60
    fired, _ = _run(np.zeros(len(times)), times, budget=60, night_s=1200.0, min_gap_s=5.0)
    assert len(fired) == len(times)
    times = np.arange(0, 1200, 1.0)
    fired, _ = _run(np.linspace(0, 1, len(times)), times, budget=10, night_s=1200.0)
    assert len(fired) <= 10


def test_ineligible_candidates_are_refused_and_not_counted():
    a = BudgetAllocator(AllocatorSettings(budget=5, night_s=100.0, min_gap_s=1.0, warmup=0))
    assert not a.decide(1.0, 10.0, eligible=False)
    assert a.spent == 0 and a._n_seen == 0 and a._spaced_seen == 0
    x = [0.0] * len(CANDIDATE_NAMES)
    assert not after_spindle(x)
    x[CANDIDATE_NAMES.index("spindle_recent")] = 1.0
    assert after_spindle(x)


def test_endgame_spends_a_budget_the_quantile_threshold_leaves_unspent():
    # 55 candidates spread over the night for a budget of 50: the quantile threshold
    # refuses some early ones and the night runs out; taking everything once fewer than
    # 1.5 x the pulses left are expected spends the whole budget
    times = np.linspace(5.0, 1195.0, 55)
    gains = np.random.default_rng(3).normal(0, 1, len(times))
    kw = dict(budget=50, night_s=1200.0, min_gap_s=5.0, slack=6.0)
    plain, _ = _run(gains, times, **kw)
    spent, a = _run(gains, times, endgame=1.5, **kw)
    assert len(plain) < 50
    assert len(spent) == a.spent == 50
    assert np.all(np.diff(times[spent]) >= 5.0)
