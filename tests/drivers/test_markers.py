"""Marker outputs with the real libraries: an LSL outlet read back by a pylsl inlet on
loopback, BrainFlow markers landing in the synthetic board's marker row, the sham output."""
from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from engramloop.core.pulse import DeviceError, Pulse, PulseSpec
from engramloop.drivers.markers import (
    BrainFlowBoardRef,
    BrainFlowMarkerOutput,
    LslMarkerOutput,
    ShamOutput,
)

pytestmark = pytest.mark.realtime   # paced by the wall clock (conftest.py)


def pulse(i: int) -> Pulse:
    return Pulse(i, "so_upstate", PulseSpec(modality="auditory", amplitude=55.0), 1.0 + i,
                 1.5 + i, 1.6 + i, "stim")


def wait_for(cond, timeout_s: float = 10.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_lsl_markers_reach_an_inlet_with_json_and_host_time():
    import pylsl

    sid = f"engramloop-test-markers-{os.getpid()}"
    out = LslMarkerOutput("engramloop-test", sid)
    out.open()
    try:
        infos = pylsl.resolve_byprop("source_id", sid, timeout=10)
        assert len(infos) == 1 and infos[0].type() == "Markers"
        assert infos[0].channel_format() == pylsl.cf_string
        inlet = pylsl.StreamInlet(infos[0])
        inlet.open_stream(timeout=10)
        wait_for(out.have_consumers, what="LSL consumer")
        assert out.send(pulse(0)).status == "failed"  # not armed: nothing pushed
        out.arm()
        sent = [out.send(pulse(i)) for i in (1, 2)]
        got = []
        while len(got) < 2:
            sample, ts = inlet.pull_sample(timeout=10)
            assert sample is not None, "no marker arrived"
            got.append((json.loads(sample[0]), ts))
        for d, (obj, ts) in zip(sent, got, strict=True):
            assert d.status == "sent" and obj["pulse_id"] == d.pulse_id
            assert obj["spec"]["modality"] == "auditory" and obj["output"] == "lsl-markers"
            assert obj["target"] == "so_upstate" and obj["intended_s"] == 1.5 + d.pulse_id
            assert ts == pytest.approx(d.sent_s, abs=1e-9)  # stamped with our host time
        inlet.close_stream()
    finally:
        out.close()
    with pytest.raises(DeviceError, match="closed"):
        out.send(pulse(3))


def test_brainflow_marker_lands_in_the_board_stream():
    from brainflow.board_shim import BoardIds, BoardShim, BrainFlowInputParams

    BoardShim.disable_board_logger()
    bid = BoardIds.SYNTHETIC_BOARD
    board = BoardShim(bid, BrainFlowInputParams())
    board.prepare_session()
    try:
        board.start_stream()
        # a handle with the same id and params reaches the same session
        out = BrainFlowMarkerOutput(lambda: BrainFlowBoardRef(bid, BrainFlowInputParams()))
        out.open()
        out.arm()
        for i in (0, 4):
            assert out.send(pulse(i)).status == "sent"
        row = BoardShim.get_marker_channel(bid)

        def marks() -> np.ndarray:  # markers are queued and stamped on the next samples
            data = board.get_current_board_data(2000)
            return data[row][data[row] != 0]

        wait_for(lambda: len(marks()) == 2, what="two markers in the board stream")
        np.testing.assert_array_equal(marks(), [1.0, 5.0])  # pulse_id + 1
        out.close()
        import gc

        gc.collect()
        assert board.is_prepared()  # closing the marker output left the session alone
    finally:
        board.release_session()
    out = BrainFlowMarkerOutput(BrainFlowBoardRef(bid, BrainFlowInputParams()))
    out.open()
    out.arm()
    with pytest.raises(DeviceError, match="insert_marker failed"):
        out.send(pulse(1))  # session released: the board is gone


def test_brainflow_marker_without_board_is_an_error():
    with pytest.raises(DeviceError, match="no BrainFlow board"):
        BrainFlowMarkerOutput(lambda: None).open()
    with pytest.raises(ValueError, match="marker_offset"):
        BrainFlowMarkerOutput(None, marker_offset=0)


def test_sham_logs_only():
    out = ShamOutput()
    out.open()
    assert out.send(pulse(0)).status == "failed"
    out.arm()
    d = out.send(pulse(1))
    assert d.status == "sham" and d.output == "sham" and list(out.pulses) == [pulse(1)]
    out.close()
    with pytest.raises(DeviceError):
        out.send(pulse(2))
