"""Per-candidate features: causal, and the spindle rule's flag matches its definition."""
import math

import numpy as np
import pytest

from engramloop.core.events import Event
from engramloop.decoders.pulse_features import CANDIDATE_NAMES, CandidateFeatures


def _rip(t, score=6.0):
    return Event("ripple", "CA1", t - 0.02, t, amplitude=50e-6, score=score)


def test_spindle_flag_and_so_phase():
    cf = CandidateFeatures()
    cf.start(0.0)
    col = {n: i for i, n in enumerate(CANDIDATE_NAMES)}
    x = cf.features(_rip(5.0))
    assert x[col["spindle_recent"]] == 0 and x[col["since_spindle_s"]] == 10.0
    cf.observe([Event("spindle", "Cz", 9.5, 10.0)])
    assert cf.features(_rip(10.6))[col["spindle_recent"]] == 1
    assert cf.features(_rip(11.2))[col["spindle_recent"]] == 0
    # SO: predicted up-state at 20.0 s; a ripple at 20.25 s is a quarter cycle later
    cf.observe([Event("so", "Cz", 19.4, 19.6, predicted_s=20.0)])
    x = cf.features(_rip(20.25))
    assert x[col["so_cos"]] == pytest.approx(math.cos(math.pi / 2), abs=1e-12)
    assert x[col["so_sin"]] == pytest.approx(1.0)
    assert cf.features(_rip(25.0))[col["so_recent"]] == 0
    assert x[col["ripple_amp_uv"]] == pytest.approx(50.0)
    assert x[col["ripple_age_ms"]] == pytest.approx(20.0)


def test_a_ripple_never_sees_itself_or_later_events():
    a, b = CandidateFeatures(), CandidateFeatures()
    for cf in (a, b):
        cf.start(0.0)
    xa = a.features(_rip(30.0))
    b.observe([])
    xb = b.features(_rip(30.0))
    np.testing.assert_array_equal(xa, xb)
    col = CANDIDATE_NAMES.index("recent_ripple_hz")
    assert xa[col] == 0.0
    assert a.features(_rip(31.0))[col] == pytest.approx(1 / 31.0)   # one ripple in the 31 s so far
