"""An LSL outlet that comes back with another rate or other channels after a restart.

Real pylsl outlets in other processes. Before this test, a stream with a source_id (what
LSL recommends) that restarted at 250 Hz instead of 100 Hz was reconnected by liblsl
without a word, and engramloop went on labelling its samples 100 Hz: the detectors'
filters ran 2.5 times off in frequency and the raw recording held 250 Hz data in a stream
declared 100 Hz. Without a source_id, engramloop's own re-resolve took the new rate and
channels silently. Now either is a SourceError naming what changed (the loop stops with
a one-line error and keeps what was recorded).
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
from engramloop.drivers.lsl_source import LslSource  # noqa: E402
from engramloop.drivers.sources import LslSettings  # noqa: E402

pytestmark = pytest.mark.realtime   # paced by the wall clock (conftest.py)

HERE = Path(__file__).parent


def _outlet(name, sid, rate, nch):
    p = subprocess.Popen([sys.executable, str(HERE / "lsl_restart_outlet_proc.py"), name,
                          sid, str(rate), str(nch)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "up"
    return p


def _stop(p):
    p.kill()
    p.wait(timeout=10)


@pytest.mark.parametrize("sid,first,second,what", [
    ("sid", (100, 1), (250, 1), "250"),    # liblsl recovers it by source_id by itself
    ("-", (100, 2), (250, 2), "250"),      # no source_id: engramloop re-resolves it
    ("-", (100, 2), (100, 1), "channel"),
])
def test_outlet_back_with_other_rate_or_channels_is_an_error(sid, first, second, what):
    name = f"restart-{uuid.uuid4().hex[:8]}"
    sid = f"{name}-sid" if sid == "sid" else "-"
    a = _outlet(name, sid, *first)
    b = None
    src = LslSource(LslSettings(name=name, units="uV", stale_after_s=0.3, lost_after_s=0.6,
                                error_after_s=30.0, resolve_timeout_s=5.0))
    src.start()
    try:
        assert src.rate_hz == first[0]
        got = 0
        deadline = time.monotonic() + 20
        while got < 100 and time.monotonic() < deadline:
            c = src.read(0.2)
            got += 0 if c is None else c.n_samples
        assert got >= 100
        _stop(a)
        t_gone = time.monotonic()
        while time.monotonic() - t_gone < 1.5:     # the outage is seen (stale/lost)
            src.read(0.1)
        b = _outlet(name, sid, *second)
        with pytest.raises(SourceError, match=what) as err:
            deadline = time.monotonic() + 25
            while time.monotonic() < deadline:
                src.read(0.2)
        msg = str(err.value)
        assert "\n" not in msg and name in msg
    finally:
        src.stop()
        for p in (a, b):
            if p is not None and p.poll() is None:
                _stop(p)
