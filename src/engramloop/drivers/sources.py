"""Source settings (``[source.brainflow]``, ``[source.lsl]``, ``[source.file]``) and the
small helpers every source shares (channel selection, units, replay speed).
:func:`engramloop.controller.build_source.make_source` turns a Config into a Source.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from engramloop.core.chunk import Chunk, Source, SourceError
from engramloop.core.schema import name_with_hint, setting


@dataclass(frozen=True)
class BrainFlowSettings:
    """A BrainFlow board (``[source.brainflow]``)."""

    board: str = setting(
        "synthetic", doc="BrainFlow board name: synthetic, cyton, cyton_daisy, ganglion, "
                         "playback_file, streaming, ... (BoardIds name without _BOARD, any "
                         "case) or its numeric id")
    serial_port: str = setting("", doc="serial port of the board or its dongle, e.g. "
                                       "/dev/ttyUSB0 (override with --serial-port)")
    master_board: str = setting("", doc="for playback_file/streaming boards: the board "
                                        "that recorded the data (e.g. cyton)")
    file: str = setting("", doc="for playback_file: the BrainFlow CSV file to play")
    ip_address: str = setting("", doc="IP address for network boards (streaming, wifi)")
    ip_port: int = setting(0, ge=0, le=65535, doc="IP port for network boards")
    other_info: str = setting("", doc="BrainFlow 'other_info' parameter, board specific")
    timeout_s: int = setting(0, ge=0, le=600, unit="s",
                             doc="BrainFlow discovery timeout (0 = BrainFlow default)")
    ring_buffer_samples: int = setting(
        45000, ge=1000, le=10_000_000, unit="samples", doc="BrainFlow's internal ring buffer")
    stale_after_s: float = setting(
        0.5, gt=0, le=60, unit="s", doc="no new data for this long marks the stream stale")
    error_after_s: float = setting(
        5.0, gt=0, le=600, unit="s", doc="no new data for this long is a SourceError")
    latency_timer_check: Literal["refuse", "warn", "off"] = setting(
        "refuse", doc="FTDI USB latency timer not 1 ms: refuse to start (closed loop), warn "
                      "(open-loop recording) or off")

    def validate(self) -> None:
        if self.error_after_s <= self.stale_after_s:
            raise ValueError("error_after_s: must be > stale_after_s")


@dataclass(frozen=True)
class LslSettings:
    """An LSL stream (``[source.lsl]``); give at least one of name, type, source_id."""

    name: str = setting("", doc="stream name to resolve (override with --stream)")
    type: str = setting("", doc="stream type to resolve, e.g. EEG")
    source_id: str = setting("", doc="stream source_id to resolve (most specific)")
    resolve_timeout_s: float = setting(5.0, gt=0, le=600, unit="s",
                                       doc="how long to look for the stream at start")
    units: Literal["auto", "V", "mV", "uV", "nV"] = setting(
        "auto", doc="units of the stream values; auto reads the channel units in the stream "
                    "description and refuses a stream that declares none (set the unit "
                    "here then)")
    time_correction_every_s: float = setting(
        5.0, gt=0, le=600, unit="s", doc="how often the LSL clock offset is re-measured")
    clock_jump_s: float = setting(
        0.1, gt=0, le=3600, unit="s",
        doc="a change of the clock offset, or timestamps stepping back, by more than this is "
            "a clock reset (marks a gap); smaller steps back are jitter")
    max_buffer_s: int = setting(30, ge=1, le=3600, unit="s", doc="inlet buffer length")
    max_chunk_samples: int = setting(1024, ge=1, le=1_000_000, unit="samples",
                                     doc="most samples pulled per read")
    stale_after_s: float = setting(0.5, gt=0, le=60, unit="s",
                                   doc="no new data for this long marks the stream stale")
    lost_after_s: float = setting(
        2.0, gt=0, le=3600, unit="s",
        doc="no data for this long (or liblsl reporting the stream lost) marks the outlet "
            "lost: an event in the recording and a state on the live view; liblsl keeps "
            "reconnecting until error_after_s")
    error_after_s: float = setting(
        10.0, gt=0, le=3600, unit="s",
        doc="no data (outlet gone and not back) for this long is a SourceError")


@dataclass(frozen=True)
class FileSettings:
    """A recorded file replayed as a source (``[source.file]``)."""

    path: str = setting("", doc="file to replay: .xdf, .edf, .bdf, .csv (BrainFlow), .txt "
                                "(OpenBCI GUI) or .npz (engramloop sim)")
    speed: float | Literal["max"] = setting(
        1.0, gt=0, doc="replay speed: 1 = real time, N = N times faster, \"max\" = as fast "
                       "as the loop runs (simulated clock)")
    stream: str = setting("", doc="XDF: name of the stream to replay (default: the first "
                                  "regularly sampled numeric stream)")
    board: str = setting("", doc="BrainFlow CSV: the board that wrote the file (column "
                                 "layout), e.g. cyton")
    units: Literal["auto", "V", "mV", "uV", "nV"] = setting(
        "auto", doc="units of the stored values; auto reads them from the file (EDF "
                    "physical dimension, XDF channel unit; BrainFlow CSV, OpenBCI GUI and "
                    ".npz files have fixed units: an .npz of floats is volts) and refuses a "
                    "signal that declares none, and an .npz of integer samples")


UNIT_SCALE = {"v": 1.0, "volt": 1.0, "volts": 1.0, "mv": 1e-3, "millivolt": 1e-3,
              "millivolts": 1e-3, "uv": 1e-6, "µv": 1e-6, "μv": 1e-6, "microvolt": 1e-6,
              "microvolts": 1e-6, "nv": 1e-9, "nanovolt": 1e-9, "nanovolts": 1e-9}


def unit_scale(unit: str) -> float | None:
    """Factor from ``unit`` to volts (``"uV"`` -> 1e-6); None if not a voltage unit."""
    return UNIT_SCALE.get(unit.strip().lower().replace(" ", ""))


class SelectChannels:
    """Wrap a Source and keep only the named channels, in the given order."""

    def __init__(self, source: Source, channels: Sequence[str], what: str = "source") -> None:
        missing = [c for c in channels if c not in source.channels]
        if missing:
            raise SourceError(f"{what}: no channel(s) "
                              f"{', '.join(name_with_hint(c, source.channels) for c in missing)}"
                              f"; it has {', '.join(source.channels)} (check source.channels "
                              "or --channels)")
        self.source = source
        self._idx = np.array([source.channels.index(c) for c in channels], dtype=np.intp)
        self.channels = tuple(channels)
        self.rate_hz = source.rate_hz

    def __getattr__(self, name: str) -> Any:  # forward clock, truth, stimulate, ...
        if name == "source":
            raise AttributeError(name)
        return getattr(self.source, name)

    def start(self) -> None:
        self.source.start()

    def stop(self) -> None:
        self.source.stop()

    def read(self, timeout_s: float) -> Chunk | None:
        c = self.source.read(timeout_s)
        if c is None:
            return None
        return Chunk(np.ascontiguousarray(c.samples[:, self._idx]), c.timestamps, c.rate_hz,
                     self.channels, c.arrival_s, c.first_index, c.gap_before, c.units, c.meta)


def parse_speed(speed: Any) -> float | str:
    """``1``, ``"4"``, ``2.5`` -> float; ``"max"`` -> ``"max"``; anything else ValueError."""
    if isinstance(speed, str):
        if speed.strip().lower() == "max":
            return "max"
        try:
            speed = float(speed)
        except ValueError:
            raise ValueError(f"speed must be a number > 0 or 'max', got {speed!r}") from None
    speed = float(speed)
    if not speed > 0:
        raise ValueError(f"speed must be a number > 0 or 'max', got {speed!r}")
    return speed


__all__ = ["BrainFlowSettings", "LslSettings", "FileSettings", "SelectChannels",
           "unit_scale", "parse_speed"]
