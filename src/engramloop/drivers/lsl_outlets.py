"""LSL outlets for what the loop computes, so LSL viewers (and LabRecorder) can watch it:
processed signals (filtered traces, envelopes, phase) and events/pulses as JSON markers.

Our timestamps are already on the host clock, which is liblsl's ``local_clock``, so they
are passed to liblsl unchanged.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engramloop.core.jsonable import to_jsonable
from engramloop.core.schema import setting
from engramloop.recording.schema import MARKER_STREAMS


def _add_channel_desc(info: Any, channels: Sequence[str], unit: str, kind: str) -> None:
    chans = info.desc().append_child("channels")
    for c in channels:
        ch = chans.append_child("channel")
        ch.append_child_value("label", c)
        ch.append_child_value("unit", unit)
        ch.append_child_value("type", kind)


class SignalOutlet:
    """A numeric LSL outlet (float64) for a processed signal.

    Parameters
    ----------
    name : str
        Stream name, e.g. ``"engramloop.ripple_envelope"``.
    channels : sequence of str
        Channel labels.
    rate_hz : float
        Nominal rate in Hz.
    unit : str
        Unit label written to the stream description (``"volts"``, ``"degrees"``...).
    stream_type : str
        LSL stream type.
    source_id : str
        Unique id so inlets can recover after a restart (default ``engramloop:<name>``).
    """

    def __init__(self, name: str, channels: Sequence[str], rate_hz: float, *,
                 unit: str = "volts", stream_type: str = "EEG",
                 source_id: str | None = None) -> None:
        import pylsl

        info = pylsl.StreamInfo(name, stream_type, len(channels), float(rate_hz), "double64",
                                source_id or f"engramloop:{name}")
        _add_channel_desc(info, channels, unit, stream_type)
        self.name = name
        self.channels = tuple(channels)
        self._outlet = pylsl.StreamOutlet(info)

    def push(self, samples: np.ndarray, timestamps: np.ndarray) -> None:
        """Push ``samples`` (n, c) with per-sample host-clock ``timestamps`` (n,) seconds."""
        samples = np.ascontiguousarray(samples, dtype=np.float64)
        if samples.ndim != 2 or samples.shape[1] != len(self.channels):
            raise ValueError(f"SignalOutlet {self.name}: samples must have shape (n, "
                             f"{len(self.channels)}), got {samples.shape}")
        if samples.shape[0]:
            self._outlet.push_chunk(samples, [float(t) for t in timestamps])

    def push_chunk(self, chunk: Any) -> None:
        """Push a Chunk."""
        self.push(chunk.samples, chunk.timestamps)

    def have_consumers(self) -> bool:
        return bool(self._outlet.have_consumers())

    def close(self) -> None:
        self._outlet = None


class MarkerOutlet:
    """A string LSL outlet: each sample one JSON object (events, pulses, governor...).

    Parameters
    ----------
    name : str
        Stream name, e.g. ``"engramloop.events"`` (same names as the recording).
    source_id : str
        Default ``engramloop:<name>``.
    """

    def __init__(self, name: str, *, source_id: str | None = None) -> None:
        import pylsl

        info = pylsl.StreamInfo(name, "Markers", 1, 0.0, "string",
                                source_id or f"engramloop:{name}")
        self.name = name
        self._outlet = pylsl.StreamOutlet(info)

    def push(self, t_s: float, obj: Any) -> None:
        """Push one object (dict, dataclass or ``to_dict()``-able) stamped ``t_s`` (host
        clock seconds)."""
        text = json.dumps(to_jsonable(obj), separators=(",", ":"), allow_nan=False)
        self._outlet.push_sample([text], float(t_s))

    def have_consumers(self) -> bool:
        return bool(self._outlet.have_consumers())

    def close(self) -> None:
        self._outlet = None


@dataclass(frozen=True)
class LslOutletSettings:
    """``[lsl_outlets]``: publish what the loop sees and decides on LSL while it runs."""

    enabled: bool = setting(
        False, doc="publish the loop's signal and its events, governor decisions and pulses "
                   "as LSL streams (for LSL viewers and LabRecorder); costs a few "
                   "microseconds per chunk")
    prefix: str = setting(
        "engramloop", doc="stream-name prefix: <prefix>.signal (numeric, volts) and "
                          "<prefix>.events|pulses|governor|forecasts|log (JSON strings)")
    streams: tuple[str, ...] = setting(
        tuple(k for k in MARKER_STREAMS if k not in ("truth", "memory")),
        doc="which marker streams to publish (any of events, pulses, governor, forecasts, "
            "log, truth, memory)")

    def validate(self) -> None:
        allowed = set(MARKER_STREAMS)
        for name in self.streams:
            if name not in allowed:
                raise ValueError(f"streams: unknown stream {name!r}; allowed: "
                                 f"{', '.join(sorted(allowed))}")
        if not self.prefix.strip():
            raise ValueError("prefix: must not be empty")


class LoopOutlets:
    """The loop's view on LSL, fed through the same calls as the recorder.

    ``add_signal_stream(source)`` creates ``<prefix>.signal``; ``write_chunk`` pushes each
    chunk the loop processes; ``write_marker(stream, t_s, obj)`` pushes the JSON objects of
    the selected marker streams under the same names the recording uses.
    """

    failed = False  # LSL has no writer thread that can fail later

    def __init__(self, settings: LslOutletSettings) -> None:
        self.settings = settings
        self._signal: SignalOutlet | None = None
        self._markers = {name: MarkerOutlet(f"{settings.prefix}.{name}")
                         for name in settings.streams}

    def add_signal_stream(self, source: Any) -> None:
        self._signal = SignalOutlet(f"{self.settings.prefix}.signal", source.channels,
                                    source.rate_hz)

    def start(self) -> None:
        """Nothing to start: outlets are live from construction."""

    def write_chunk(self, chunk: Any) -> None:
        if self._signal is not None:
            self._signal.push_chunk(chunk)

    def write_marker(self, stream: str, t_s: float, obj: Any) -> None:
        outlet = self._markers.get(stream)
        if outlet is not None:
            outlet.push(t_s, obj)

    def check(self) -> None:
        """Nothing to check (kept for the recorder interface)."""

    def close(self) -> None:
        if self._signal is not None:
            self._signal.close()
        for outlet in self._markers.values():
            outlet.close()


__all__ = ["SignalOutlet", "MarkerOutlet", "LslOutletSettings", "LoopOutlets"]
