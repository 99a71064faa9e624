"""The one thing sources produce, and the interface every source implements."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True, eq=False)
class Chunk:
    """A block of consecutive samples from one source.

    Attributes
    ----------
    samples : ndarray, shape (n_samples, n_channels), float64, C-contiguous, volts
        Time-major so chunks append along time and kernels vectorise across channels.
        A source never reuses this buffer after handing it out.
    timestamps : ndarray, shape (n_samples,), float64, seconds
        Per-sample times on the host clock (the same clock as ``pylsl.local_clock()``,
        or the simulated clock of a ``--speed max`` run).
    rate_hz : float
        The source's nominal sampling rate.
    channels : tuple of str
        Channel names, one per column.
    arrival_s : float
        Host-clock time at which the chunk reached the process (for latency accounting).
    first_index : int
        Index of the first sample since the source started (for gap bookkeeping only;
        time is never built from sample counts).
    gap_before : bool
        True when the source knows samples were lost just before this chunk
        (packet-counter jump, timestamp gap, stream restart).
    """

    samples: np.ndarray
    timestamps: np.ndarray
    rate_hz: float
    channels: tuple[str, ...]
    arrival_s: float
    first_index: int = 0
    gap_before: bool = False
    units: str = "V"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        s, t = self.samples, self.timestamps
        if not (isinstance(s, np.ndarray) and s.dtype == np.float64 and s.ndim == 2
                and s.flags.c_contiguous):
            raise TypeError("Chunk.samples must be a C-contiguous float64 array of shape "
                            "(n_samples, n_channels)")
        if not (isinstance(t, np.ndarray) and t.ndim == 1 and t.shape[0] == s.shape[0]):
            raise ValueError(f"Chunk.timestamps must have shape ({s.shape[0]},), got "
                             f"{getattr(t, 'shape', None)}")
        if len(self.channels) != s.shape[1]:
            raise ValueError(f"Chunk.channels has {len(self.channels)} names for "
                             f"{s.shape[1]} columns")

    @classmethod
    def unchecked(cls, samples: np.ndarray, timestamps: np.ndarray, rate_hz: float,
                  channels: tuple[str, ...], arrival_s: float, first_index: int = 0,
                  gap_before: bool = False, units: str = "V",
                  meta: dict | None = None) -> Chunk:
        """A Chunk without the checks of ``__post_init__``, for a source whose arrays are
        valid by construction (its own C-contiguous float64 copies): the real-time loop
        builds one per 5 ms, and on a cold cache the checks and the frozen dataclass's
        per-field ``__setattr__`` cost tens of microseconds of its latency budget.
        Tests check that it equals the checked constructor field for field."""
        c = object.__new__(cls)
        c.__dict__.update(samples=samples, timestamps=timestamps, rate_hz=rate_hz,
                          channels=channels, arrival_s=arrival_s, first_index=first_index,
                          gap_before=gap_before, units=units,
                          meta={} if meta is None else meta)
        return c

    @property
    def n_samples(self) -> int:
        return self.samples.shape[0]

    @property
    def n_channels(self) -> int:
        return self.samples.shape[1]

    @property
    def last_time_s(self) -> float:
        """Host-clock time of the newest sample (seconds); NaN for an empty chunk."""
        return float(self.timestamps[-1]) if self.timestamps.size else float("nan")


@runtime_checkable
class Source(Protocol):
    """What the loop reads from: a device, a stream, a file or the simulator.

    ``read(timeout_s)`` returns the next Chunk, or ``None`` if nothing arrived within the
    timeout (the loop's stale-data rule handles that); it raises ``SourceError`` (or a
    subclass) when the source has failed or ended for good. ``EndOfStream`` marks the
    regular end of a finite source (a file, a fixed-duration simulation).
    """

    rate_hz: float
    channels: tuple[str, ...]

    def start(self) -> None: ...

    def read(self, timeout_s: float) -> Chunk | None: ...

    def stop(self) -> None: ...


class SourceError(RuntimeError):
    """A source failed: names the device, port, stream or file and what to do."""


class EndOfStream(SourceError):
    """A finite source (file, fixed-duration simulation) has no more samples."""
