"""A read-only snapshot of the running loop, for the live dashboard (and anything else
that wants to show the loop's state without touching its objects).

The loop builds a :class:`LoopStatus` every few hundred milliseconds from numbers it already
keeps and hands it over with :meth:`StatusBoard.publish`; the dashboard thread reads the
newest one with :meth:`StatusBoard.latest`. The snapshot is frozen and holds only plain
values, so the display never reaches into live loop state and never blocks the loop.

The small helpers here compute the snapshot's figures: :func:`channel_quality` (RMS, flat
and clipping flags per channel of one chunk), :class:`RateWindow` (events per minute in a
sliding window) and :class:`QuantileWindow` (p99 of the last N latencies).
"""
from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

import numpy as np

#: A channel whose sample-to-sample range over a chunk is below this many volts is flagged
#: "flat" (disconnected lead, railed amplifier, dropout). 0.1 uV is far below the EEG/LFP
#: noise floor of any real amplifier (the ADS1299 on the OpenBCI Cyton is specified at
#: about 1 uV peak-to-peak input-referred noise over a 70 Hz bandwidth, TI datasheet).
FLAT_RANGE_V = 1e-7
#: Fraction of the input range beyond which a sample counts as clipped.
CLIP_FRACTION = 0.99


def _frozen_map(m: Mapping | None) -> Mapping:
    return MappingProxyType(dict(m or {}))


@dataclass(frozen=True)
class ChannelQuality:
    """Signal quality of one channel over the most recent chunk(s).

    Attributes
    ----------
    name : str
        Channel name.
    rms_v : float
        Root-mean-square of the mean-removed signal, volts.
    flat : bool
        The signal barely moved (range below :data:`FLAT_RANGE_V`).
    clipping : bool
        At least one sample reached the amplifier's input range.
    clipped_fraction : float
        Fraction of the samples at the input range (0-1).
    """

    name: str
    rms_v: float
    flat: bool = False
    clipping: bool = False
    clipped_fraction: float = 0.0


@dataclass(frozen=True)
class LoopStatus:
    """What the dashboard shows: one consistent snapshot of the loop.

    All times are seconds; latencies are seconds (the dashboard shows milliseconds).
    NaN means "no data yet".

    Attributes
    ----------
    source : str
        Source description, e.g. ``"sim"``, ``"brainflow cyton /dev/ttyUSB0"``.
    rate_hz : float
        Nominal sampling rate of the source, Hz.
    elapsed_s : float
        Time since the loop started, seconds.
    channels : tuple of ChannelQuality
        Per-channel signal quality.
    detections_per_min : Mapping[str, float]
        Detections per minute by event kind (sliding window).
    pulses_sent : int
        Pulses that left the process to an output (all outputs, all conditions).
    pulses_refused : Mapping[str, int]
        Refusals by governor rule (``"refractory"``, ``"rate"``, ...).
    armed : bool
        The governor is armed (stimulation possible).
    lockouts : tuple of str
        Lockouts in force now, human-readable (``"refractory 0.8 s"``, ``"gap"``).
    loop_latency_p99_s : float
        99th percentile of chunk arrival -> decision time, seconds.
    scheduler_lateness_p99_s : float
        99th percentile of (actual send - intended send), seconds.
    forecast : Mapping[str, float]
        Latest forecast values by name (``p_below_median``, ``delta_strength``, per-memory
        changes ``delta.m0``, ...).
    forecast_age_s : float
        How old the latest forecast is, seconds.
    forecast_gate : str
        The forecast gate's state now: ``"open"``, ``"closed (<reason>)"``, or ``""``
        when the policy has no gate.
    recording_path : str
        The XDF file being written ("" when not recording).
    recording_bytes : int
        Its current size in bytes.
    state : str
        ``"running"``, ``"calibrating"``, ``"stopping"``, ``"stopped"``, ``"FAULT"`` (a
        device fault: ``lockouts`` names the output) or an error text.
    messages : tuple of str
        The last few log lines worth showing (warnings, refusals).
    detector_states : tuple of str
        A line per detector that is passing over what it would otherwise detect now
        (e.g. ``"SO gate closed (...) on Fz (12 since it closed): 40 down states passed
        over in all"``); empty when every detector detects.
    """

    source: str = ""
    rate_hz: float = math.nan
    elapsed_s: float = 0.0
    channels: tuple[ChannelQuality, ...] = ()
    detections_per_min: Mapping[str, float] = field(default_factory=dict)
    pulses_sent: int = 0
    pulses_refused: Mapping[str, int] = field(default_factory=dict)
    armed: bool = False
    lockouts: tuple[str, ...] = ()
    loop_latency_p99_s: float = math.nan
    scheduler_lateness_p99_s: float = math.nan
    forecast: Mapping[str, float] = field(default_factory=dict)
    forecast_age_s: float = math.nan
    forecast_gate: str = ""
    recording_path: str = ""
    recording_bytes: int = 0
    state: str = "running"
    messages: tuple[str, ...] = ()
    detector_states: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # read-only views so a snapshot cannot be changed after it is published
        for name in ("detections_per_min", "pulses_refused", "forecast"):
            object.__setattr__(self, name, _frozen_map(getattr(self, name)))
        object.__setattr__(self, "channels", tuple(self.channels))
        object.__setattr__(self, "lockouts", tuple(self.lockouts))
        object.__setattr__(self, "messages", tuple(self.messages))
        object.__setattr__(self, "detector_states", tuple(self.detector_states))

    @property
    def pulses_refused_total(self) -> int:
        return int(sum(self.pulses_refused.values()))


class LoopControls(Protocol):
    """What the dashboard's keys call; the loop implements it.

    Each call must return quickly (it runs on the dashboard's key thread). ``arm`` goes
    through the governor like any arming; ``disarm`` and ``stop`` must always succeed.
    """

    def arm(self) -> None: ...

    def disarm(self) -> None: ...

    def stop(self) -> None: ...


class StatusBoard:
    """Hand-over point between the loop (writer) and the dashboard (reader).

    ``publish`` replaces the snapshot under a lock (a pointer swap); ``latest`` returns
    the newest snapshot or ``None`` before the first one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status: LoopStatus | None = None
        self._version = 0

    def publish(self, status: LoopStatus) -> None:
        with self._lock:
            self._status = status
            self._version += 1

    def latest(self) -> LoopStatus | None:
        with self._lock:
            return self._status

    @property
    def watched(self) -> bool:
        """True when something may read the snapshots while the loop runs (a dashboard,
        a caller polling :meth:`latest`): the loop then publishes one every
        ``STATUS_EVERY_S``; a board that says False gets only the snapshots of faults and
        the last one, at the end of the run."""
        return True

    @property
    def version(self) -> int:
        """How many snapshots were published so far."""
        with self._lock:
            return self._version


def channel_quality(samples: np.ndarray, channels: Sequence[str], *,
                    clip_v: float | Sequence[float] = math.inf,
                    flat_range_v: float = FLAT_RANGE_V) -> tuple[ChannelQuality, ...]:
    """Quality of each channel of one block of samples.

    Parameters
    ----------
    samples : ndarray, shape (n_samples, n_channels), volts
    channels : sequence of str, length n_channels
    clip_v : float or sequence of float (one per channel)
        Amplifier input range, volts (a sample with ``|x| >= CLIP_FRACTION * clip_v`` is
        clipped); ``inf`` disables the check.
    flat_range_v : float
        Peak-to-peak below which a channel is flat, volts.

    Returns
    -------
    tuple of ChannelQuality
        One per channel; an empty block gives NaN RMS and no flags.
    """
    x = np.asarray(samples, dtype=float)
    if x.ndim != 2 or x.shape[1] != len(channels):
        raise ValueError(f"channel_quality: samples shape {x.shape} does not match "
                         f"{len(channels)} channels")
    if x.shape[0] == 0:
        return tuple(ChannelQuality(c, math.nan) for c in channels)
    rms = np.sqrt(np.mean((x - x.mean(axis=0)) ** 2, axis=0))
    ptp = np.ptp(x, axis=0)
    limit = np.broadcast_to(np.asarray(clip_v, dtype=float), (x.shape[1],))
    if np.isfinite(limit).any():
        frac = np.mean(np.abs(x) >= CLIP_FRACTION * limit, axis=0)
    else:
        frac = np.zeros(x.shape[1])
    return tuple(ChannelQuality(c, float(r), bool(p < flat_range_v), bool(f > 0), float(f))
                 for c, r, p, f in zip(channels, rms, ptp, frac, strict=True))


class RateWindow:
    """Counts per minute over a sliding time window, by key.

    Parameters
    ----------
    window_s : float
        Window length, seconds (60 gives "per minute over the last minute").
    """

    def __init__(self, window_s: float = 60.0) -> None:
        if not window_s > 0:
            raise ValueError(f"RateWindow: window_s must be > 0, got {window_s}")
        self.window_s = float(window_s)
        self._times: dict[str, deque] = {}
        self._start: float | None = None

    def add(self, key: str, t_s: float) -> None:
        """Record one occurrence of ``key`` at host time ``t_s`` seconds."""
        if self._start is None:
            self._start = t_s
        self._times.setdefault(key, deque()).append(t_s)

    def per_minute(self, now_s: float) -> dict[str, float]:
        """Rate of each key over the window ending at ``now_s`` (shorter at the start)."""
        span = self.window_s if self._start is None else min(
            self.window_s, max(now_s - self._start, 1e-9))
        out = {}
        for key, q in self._times.items():
            while q and q[0] < now_s - self.window_s:
                q.popleft()
            out[key] = len(q) * 60.0 / span
        return out


class QuantileWindow:
    """A quantile of the last ``size`` values (ring buffer, no allocation per value)."""

    def __init__(self, size: int = 2000, q: float = 0.99) -> None:
        if size < 1 or not 0 <= q <= 1:
            raise ValueError(f"QuantileWindow: need size >= 1 and 0 <= q <= 1, got {size}, {q}")
        self._buf = np.full(size, np.nan)
        self._i = 0
        self._n = 0
        self.q = q

    def add(self, value: float) -> None:
        self._buf[self._i] = value
        self._i = (self._i + 1) % self._buf.size
        self._n = min(self._n + 1, self._buf.size)

    def value(self) -> float:
        """The quantile of the stored values; NaN when empty."""
        if self._n == 0:
            return math.nan
        return float(np.nanquantile(self._buf[:self._n] if self._n < self._buf.size
                                    else self._buf, self.q))


__all__ = ["ChannelQuality", "LoopStatus", "LoopControls", "StatusBoard", "channel_quality",
           "RateWindow", "QuantileWindow", "FLAT_RANGE_V", "CLIP_FRACTION"]
