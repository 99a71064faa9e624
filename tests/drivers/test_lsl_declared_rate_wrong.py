"""An LSL outlet whose samples do not come at the rate it declares (real outlets in other
processes).

Before this test, an outlet declaring 100 Hz that pushed 80 samples a second ran for as
long as it lasted: the detectors' filters, designed for 100 Hz, were 25 % off in
frequency, the raw recording declared 100 Hz over timestamps saying 80 Hz, and nothing
in the log said so. Now the source compares the samples that came (plus those counted
lost) with the declared rate over ``RATE_CHECK_S`` seconds of timestamps and stops with
a one-line SourceError when they differ by more than ``RATE_TOLERANCE``.
"""
from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pylsl = pytest.importorskip("pylsl")

from engramloop.core.chunk import SourceError  # noqa: E402
from engramloop.drivers import lsl_source  # noqa: E402
from engramloop.drivers.lsl_source import LslSource  # noqa: E402
from engramloop.drivers.sources import LslSettings  # noqa: E402

pytestmark = pytest.mark.realtime   # paced by the wall clock (conftest.py)

HERE = Path(__file__).parent


def _run(real_hz: float, seconds: float, jump_s: float = 0.0):
    name = f"rate-{uuid.uuid4().hex[:8]}"
    p = subprocess.Popen([sys.executable, str(HERE / "lsl_restart_outlet_proc.py"), name,
                          "-", "100", "1", str(real_hz), str(jump_s)],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "up"
        src = LslSource(LslSettings(name=name, units="uV", resolve_timeout_s=5.0))
        src.start()
        try:
            end = time.monotonic() + seconds
            n = 0
            while time.monotonic() < end:
                c = src.read(0.2)
                n += 0 if c is None else c.n_samples
            return n
        finally:
            src.stop()
    finally:
        p.kill()
        p.wait(timeout=10)


def test_outlet_slower_than_it_declares_is_an_error(monkeypatch):
    monkeypatch.setattr(lsl_source, "RATE_CHECK_S", 6.0)
    with pytest.raises(SourceError, match=r"declares 100 Hz.*8\d(\.\d)? Hz") as err:
        _run(80.0, 30.0)
    assert "\n" not in str(err.value)


def test_outlet_at_its_declared_rate_runs_on():
    # SendData-style bursts every 10 ms, past a whole check window
    assert _run(100.0, lsl_source.RATE_CHECK_S + 4.0) > 100 * lsl_source.RATE_CHECK_S


def test_a_clock_jump_is_not_taken_for_a_wrong_rate(monkeypatch):
    """An hour's jump forward in the stamps is no rate of 0.1 Hz: the window restarts."""
    monkeypatch.setattr(lsl_source, "RATE_CHECK_S", 4.0)
    assert _run(100.0, 12.0, jump_s=3600.0) > 800
