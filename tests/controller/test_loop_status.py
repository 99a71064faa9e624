"""What the loop feeds the dashboard: per-channel clipping over each status period (checked
against the recorded samples with NumPy) and the newest forecast with the gate's state;
the dashboard draws both in a non-interactive console."""
from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path

import numpy as np
import pytest
import pyxdf
from rich.console import Console

from engramloop.controller.build import build_loop
from engramloop.controller.config import SHIPPED_DIR, load_config, loads_config
from engramloop.controller.dashboard import render_status
from engramloop.controller.status import CLIP_FRACTION, StatusBoard
from engramloop.decoders.features import FeatureSettings, Forecast

ROOT = Path(__file__).resolve().parents[2]
CFG = SHIPPED_DIR / "sim-ripple.toml"


class Snapshots(StatusBoard):
    """Keeps every snapshot the loop publishes."""

    def __init__(self) -> None:
        super().__init__()
        self.all = []

    def publish(self, status) -> None:
        super().publish(status)
        self.all.append(status)


def _plain_render(status) -> str:
    buf = io.StringIO()
    Console(file=buf, force_terminal=False, width=160, color_system=None).print(
        render_status(status))
    return buf.getvalue()


def test_clipping_is_flagged_for_the_channels_that_reached_the_rail(tmp_path):
    base = load_config(CFG)
    art = dataclasses.replace(base.sim.artefacts, saturation_rate_hz=0.3,
                              movement_rate_hz=0.0, pop_rate_hz=0.0, dropout_rate_hz=0.0)
    cfg = dataclasses.replace(base, sim=dataclasses.replace(base.sim, artefacts=art))
    board = Snapshots()
    xdf = tmp_path / "run.xdf"
    loop = build_loop(cfg, speed="max", duration_s=30.0, record=str(xdf), status_board=board)
    # at --speed max snapshots follow the wall clock; here every 0.25 s of signal, so
    # each snapshot's period can be checked against the recording
    loop.wall_clock = loop.clock.now
    result = loop.run(30.0)
    clip_v = cfg.sim.artefacts.clip_v
    assert loop.source.full_scale_v == clip_v
    streams, _ = pyxdf.load_xdf(str(xdf), synchronize_clocks=False,
                                dejitter_timestamps=False)
    raw = next(s for s in streams if s["info"]["name"][0] == "engramloop.raw")
    t, x = raw["time_stamps"], np.asarray(raw["time_series"])
    names = tuple(loop.source.channels)
    flagged: set[str] = set()
    prev = -math.inf
    checked = 0
    for st in board.all:
        now = result.t0_s + st.elapsed_s
        if now == prev:
            continue  # the end-of-run snapshot repeats the last period
        # the recording's times are the source's within a fraction of a sample period
        # (regular samples are stored without a stamp): cut half a period past each
        half = 0.5 / loop.source.rate_hz
        seg = x[(t > prev + half) & (t <= now + half)]
        prev = now
        # the recording holds the simulator's samples in float32 (its declared format):
        # a sample within float32 rounding of the threshold may count either way
        thr, eps = CLIP_FRACTION * clip_v, 2.0 ** -23
        want_lo = np.mean(np.abs(seg) >= thr * (1 + eps), axis=0)
        want_hi = np.mean(np.abs(seg) >= thr * (1 - eps), axis=0)
        got = np.array([ch.clipped_fraction for ch in st.channels])
        assert [ch.name for ch in st.channels] == list(names)
        assert np.all(want_lo - 1e-12 <= got) and np.all(got <= want_hi + 1e-12)
        assert [ch.clipping for ch in st.channels] == list(got > 0)
        assert np.all((want_lo > 0) <= (got > 0)) and np.all((got > 0) <= (want_hi > 0))
        flagged |= {ch.name for ch in st.channels if ch.clipping}
        checked += 1
    assert checked >= 100                              # every 0.25 s of the 30 s run
    truth = {e.channel for e in loop.sim_source.truth.events("artefact")
             if e.meta.get("type") == "saturation"}
    assert flagged and flagged <= truth                # only saturated channels, and some
    shown = next(st for st in board.all if any(ch.clipping for ch in st.channels))
    text = _plain_render(shown)
    name = next(ch.name for ch in shown.channels if ch.clipping)
    assert "CLIPPING" in text and name in text


class StubForecaster:
    """A forecaster with fixed outputs (the real one is tested in test_forecast*)."""

    window = 1

    def __init__(self, p_below_median: float) -> None:
        self.p_below_median = p_below_median

    def predict(self, vectors) -> Forecast:
        return Forecast(vectors[-1].t_end_s, 300.0, self.p_below_median, -0.02, "stub",
                        per_memory=(-0.01, -0.03))


def _forecast_loop(threshold: float, p_below_median: float, board: StatusBoard):
    base = load_config(CFG)
    fs = FeatureSettings(epoch_s=5.0, hop_s=5.0, eeg_channel="Cz", lfp_channel="CA1")
    fset = dataclasses.replace(base.forecaster, enabled=True, p_below_median_threshold=threshold,
                               features=fs)
    cfg = dataclasses.replace(base, forecaster=fset)
    loop = build_loop(cfg, speed="max", duration_s=22.0, status_board=board)
    loop.forecaster._forecaster = StubForecaster(p_below_median)  # instead of loading torch
    loop.wall_clock = loop.clock.now   # snapshots every 0.25 s of signal, not wall time
    return loop


def test_forecast_and_gate_are_fed_to_the_status():
    board = Snapshots()
    loop = _forecast_loop(0.5, 0.7, board)
    loop.run(22.0)
    first, last = board.all[0], board.all[-1]
    assert first.forecast == {} and math.isnan(first.forecast_age_s)
    assert first.forecast_gate == "closed (no_forecast)"    # before_first = "block"
    # the newest forecast: epochs end every 5 s; the last one at 20 s
    assert dict(last.forecast) == {"p_below_median": 0.7, "delta_strength": -0.02,
                                   "delta_strength[0]": -0.01, "delta_strength[1]": -0.03}
    assert last.forecast_age_s == pytest.approx(last.elapsed_s - 20.0, abs=1e-9)
    assert last.forecast_gate == "open"
    assert any(s.forecast and s.forecast_gate == "open" for s in board.all[:-1])
    text = _plain_render(last)
    for word in ("forecast", "p_below_median", "0.7", "delta_strength", "-0.02", "age", "gate",
                 "open"):
        assert word in text, word
    # a forecast below the threshold closes the gate, and the status says why
    board = Snapshots()
    _forecast_loop(0.9, 0.7, board).run(22.0)
    assert board.all[-1].forecast_gate == "closed (p_below_median_low)"
    assert "closed (p_below_median_low)" in _plain_render(board.all[-1])


def test_without_forecaster_or_known_range_nothing_is_invented(tmp_path):
    cfg = loads_config('[source]\nkind = "sim"\n[detectors.ripple]\nchannels = ["CA1"]\n')
    board = Snapshots()
    build_loop(cfg, speed="max", duration_s=2.0, status_board=board).run(2.0)
    st = board.all[-1]
    assert st.forecast == {} and st.forecast_gate == "" and math.isnan(st.forecast_age_s)
    assert "none yet" in _plain_render(st)


def test_sources_know_their_input_range(tmp_path):
    pyedflib = pytest.importorskip("pyedflib")
    from engramloop.drivers.files import FileSource

    edf = tmp_path / "x.edf"
    w = pyedflib.EdfWriter(str(edf), 2, file_type=pyedflib.FILETYPE_EDFPLUS)
    w.setSignalHeaders([{"label": lab, "dimension": dim, "sample_frequency": 100,
                         "physical_max": pmax, "physical_min": -pmax,
                         "digital_max": 32767, "digital_min": -32768}
                        for lab, dim, pmax in (("C3", "uV", 500.0), ("EOG", "mV", 2.0))])
    w.writeSamples([np.zeros(1000), np.zeros(1000)])
    w.close()
    assert FileSource(edf).full_scale_v.tolist() == pytest.approx([500e-6, 2e-3])
    assert FileSource(edf, channels=["EOG"]).full_scale_v.tolist() == pytest.approx([2e-3])
    pytest.importorskip("brainflow")
    from engramloop.drivers.brainflow_source import BrainFlowSource
    from engramloop.drivers.sources import BrainFlowSettings

    # ADS1299: +-4.5 V / gain 24
    assert BrainFlowSource(BrainFlowSettings(board="cyton")).full_scale_v == 0.1875
    assert math.isinf(BrainFlowSource(BrainFlowSettings(board="synthetic")).full_scale_v)
