"""`engramloop run` on a live LSL stream with --record: the stream's channels and rate are
known only once it is resolved, and the recording must still declare them (this crashed:
"Recorder.add_signal_stream: channels and rate_hz are required")."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import pyxdf
from test_lsl import Outlet, _name

from engramloop.cli import main
from engramloop.controller.config import SHIPPED_DIR

pytestmark = pytest.mark.realtime   # paced by the wall clock (conftest.py)

ROOT = Path(__file__).resolve().parents[2]


def test_run_on_an_lsl_stream_records_it(tmp_path: Path) -> None:
    name = _name()
    outlet = Outlet(name, start=0, unit="microvolts")  # a real outlet in another process
    try:
        xdf = tmp_path / "lsl.xdf"
        rc = main(["run", str(SHIPPED_DIR / "lsl.toml"), "--stream", name,
                   "--duration", "2", "--record", str(xdf), "--quiet"])
    finally:
        outlet.kill()
    assert rc == 0
    streams, _ = pyxdf.load_xdf(str(xdf), dejitter_timestamps=False)
    raw = next(s for s in streams if s["info"]["name"][0] == "engramloop.raw")
    labels = [c["label"][0] for c in raw["info"]["desc"][0]["channels"][0]["channel"]]
    assert labels == ["C3", "Cz"] and float(raw["info"]["nominal_srate"][0]) == 200.0
    x = raw["time_series"]
    # about 2 s at 200 Hz on a quiet machine; a loaded one may start the run late, and
    # how many samples a 2-s wall-clock run gets is no test of recording them right
    assert x.shape[0] >= 20
    # the outlet counts up in microvolts on C3 and down on Cz; we record volts
    np.testing.assert_allclose(x[:, 1], -x[:, 0])
    # a float32 outlet is recorded in float32 (volts): steps of 1 uV to float32 precision
    assert raw["info"]["channel_format"] == ["float32"]
    np.testing.assert_allclose(np.diff(x[:, 0]), 1e-6, rtol=0,
                               atol=2 * float(np.spacing(np.abs(x).max())))
    log = next(s for s in streams if s["info"]["name"][0] == "engramloop.log")
    assert all("message" in json.loads(m[0]) for m in log["time_series"])
