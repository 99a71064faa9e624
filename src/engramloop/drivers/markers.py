"""Marker outputs: every pulse announced to other software instead of (or beside) a
stimulator. None of them stimulates; they follow the same ``Output`` contract (nothing is
sent unless armed, off after ``close()``) so the scheduler treats every output alike.

- :class:`LslMarkerOutput` — an LSL outlet of string markers (one JSON object per pulse,
  channel format ``string``, irregular rate, type ``Markers``), so a PsychoPy sound player,
  LabRecorder or any LSL client sees each pulse stamped on the shared LSL clock.
- :class:`BrainFlowMarkerOutput` — ``BoardShim.insert_marker`` so the pulse lands in-band
  in a BrainFlow board's own stream (the marker row), value ``pulse_id + marker_offset``.
- :class:`ShamOutput` — logs only: the pulse is written to the log and kept in memory.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from engramloop.core.pulse import Delivery, DeviceError, Pulse
from engramloop.drivers.brainflow_lib import load_brainflow

log = logging.getLogger("engramloop.outputs")

__all__ = ["LslMarkerOutput", "BrainFlowMarkerOutput", "BrainFlowBoardRef", "ShamOutput",
           "marker_payload"]


def marker_payload(pulse: Pulse, output: str) -> dict:
    """The JSON-able description of a pulse carried by marker outputs."""
    d = pulse.to_dict()
    d["output"] = output
    return d


class _Armable:
    name: str
    _open = False
    _armed = False

    def arm(self) -> None:
        if not self._open:
            raise DeviceError(f"{self.name}: arm() before open()")
        self._armed = True

    def disarm(self) -> None:
        self._armed = False

    def _refuse(self, pulse: Pulse) -> Delivery | None:
        if not self._open:
            raise DeviceError(f"{self.name}: send() on a closed output; call open() first")
        if not self._armed:
            return Delivery(pulse.pulse_id, self.name, "failed", reason="output not armed")
        return None


class LslMarkerOutput(_Armable):
    """LSL string-marker outlet, one JSON object per pulse.

    Parameters
    ----------
    stream_name : str
        LSL stream name (what LabRecorder lists).
    source_id : str
        LSL source_id, so receivers can reconnect after a restart.
    name : str
        Output name used in deliveries.
    """

    def __init__(self, stream_name: str = "engramloop-pulses",
                 source_id: str = "engramloop-pulses", *, name: str = "lsl-markers") -> None:
        self.stream_name = stream_name
        self.source_id = source_id
        self.name = name
        self._outlet: Any = None

    def open(self) -> None:
        import pylsl

        info = pylsl.StreamInfo(self.stream_name, "Markers", 1, pylsl.IRREGULAR_RATE,
                                pylsl.cf_string, self.source_id)
        info.desc().append_child_value("content", "engramloop pulse, one JSON object")
        self._outlet = pylsl.StreamOutlet(info)
        self._open = True

    def send(self, pulse: Pulse) -> Delivery:
        refused = self._refuse(pulse)
        if refused is not None:
            return refused
        text = json.dumps(marker_payload(pulse, self.name), allow_nan=True)
        t = time.monotonic()  # == pylsl.local_clock() (drivers.clock.HostClock)
        self._outlet.push_sample([text], t)
        return Delivery(pulse.pulse_id, self.name, "sent", sent_s=t)

    def have_consumers(self) -> bool:
        """True when at least one inlet is connected (a recorder, a sound player)."""
        return bool(self._outlet is not None and self._outlet.have_consumers())

    def close(self) -> None:
        self._armed = False
        self._open = False
        self._outlet = None  # pylsl destroys the outlet when the last reference goes


class BrainFlowBoardRef:
    """Addresses a BrainFlow session another object prepared, for ``insert_marker`` only.

    BrainFlow's core keys sessions by (board id, input-params JSON), so a call with the
    same pair reaches the source's session. A second ``BoardShim`` would do that too, but
    its ``__del__`` releases the session it addresses whenever it is garbage collected —
    the source's — so this handle calls the core library directly and owns nothing.

    Parameters
    ----------
    board_id : int
        BrainFlow board id of the source.
    params : BrainFlowInputParams
        Exactly the params the source prepared its session with.
    """

    def __init__(self, board_id: int, params: Any) -> None:
        self.board_id = int(board_id)
        self.input_json = params.to_json().encode()

    def insert_marker(self, value: float) -> None:
        load_brainflow()
        from brainflow.board_shim import (
            BoardControllerDLL,
            BrainFlowError,
            BrainFlowExitCodes,
            BrainFlowPresets,
        )

        res = BoardControllerDLL.get_instance().insert_marker(
            float(value), BrainFlowPresets.DEFAULT_PRESET, self.board_id, self.input_json)
        if res != BrainFlowExitCodes.STATUS_OK.value:
            raise BrainFlowError("unable to insert marker", res)


class BrainFlowMarkerOutput(_Armable):
    """Pulses as in-band markers of a running BrainFlow board.

    Parameters
    ----------
    board : BoardShim, BrainFlowBoardRef, or a callable returning one
        The board session to mark: the source's own ``BoardShim``, or a
        :class:`BrainFlowBoardRef` with the source's board id and params. A callable is
        resolved at ``open()``. Closing this output never releases the session.
    marker_offset : float
        Marker value = ``pulse_id + marker_offset`` (BrainFlow markers must be non-zero).
    name : str
        Output name used in deliveries.
    """

    def __init__(self, board: Any | Callable[[], Any], *, marker_offset: float = 1.0,
                 name: str = "brainflow-marker") -> None:
        if marker_offset <= 0:
            raise ValueError(f"marker_offset={marker_offset}: must be > 0 so markers are "
                             "non-zero")
        self._board_spec = board
        self._board: Any = None
        self.marker_offset = float(marker_offset)
        self.name = name

    def open(self) -> None:
        board = self._board_spec() if callable(self._board_spec) and not hasattr(
            self._board_spec, "insert_marker") else self._board_spec
        if board is None or not hasattr(board, "insert_marker"):
            raise DeviceError("brainflow-marker: no BrainFlow board session to mark (the "
                              "source must be a running BrainFlow board)")
        self._board = board
        self._open = True

    def send(self, pulse: Pulse) -> Delivery:
        refused = self._refuse(pulse)
        if refused is not None:
            return refused
        t = time.monotonic()
        try:
            self._board.insert_marker(float(pulse.pulse_id) + self.marker_offset)
        except Exception as exc:  # noqa: BLE001 - BrainFlowError or a released session
            raise DeviceError(f"brainflow-marker: insert_marker failed ({exc}); the board "
                              "session is gone") from None
        return Delivery(pulse.pulse_id, self.name, "sent", sent_s=t)

    def close(self) -> None:
        self._armed = False
        self._open = False
        self._board = None


class ShamOutput(_Armable):
    """Logs every pulse, stimulates nothing; deliveries have status ``"sham"`` (as the
    scheduler's sham-condition pulses). ``pulses`` keeps the last ``KEEP`` pulses handed in
    (the recording has them all), so a long sham session cannot grow without bound."""

    KEEP = 10_000

    def __init__(self, *, name: str = "sham") -> None:
        self.name = name
        self.pulses: deque[Pulse] = deque(maxlen=self.KEEP)

    def open(self) -> None:
        self._open = True

    def send(self, pulse: Pulse) -> Delivery:
        refused = self._refuse(pulse)
        if refused is not None:
            return refused
        t = time.monotonic()
        self.pulses.append(pulse)
        log.info("sham pulse %d (%s) at %.6f", pulse.pulse_id, pulse.target, t)
        return Delivery(pulse.pulse_id, self.name, "sham", sent_s=t, ack_s=math.nan,
                        reason="sham output: nothing delivered")

    def close(self) -> None:
        self._armed = False
        self._open = False
