"""Detection events: small frozen records the loop, recorder and scoring all share."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Event:
    """One detection.

    Attributes
    ----------
    kind : str
        "ripple", "spindle", "so" (slow-oscillation down-state), ...
    channel : str
        Channel name the event was detected on (first channel for consensus events).
    onset_s : float
        Host-clock time the event started (threshold crossing), seconds.
    detect_s : float
        Host-clock time of the sample at which the detector decided (seconds); the
        detector's latency from onset is ``detect_s - onset_s``.
    peak_s : float
        Estimated peak time in seconds (NaN when not known at detection time).
    amplitude : float
        Envelope / trough amplitude at detection, volts (or source units).
    score : float
        Detector-specific strength, e.g. envelope in baseline SDs.
    threshold : float
        The threshold in force when the event was detected (same units as amplitude).
    predicted_s : float
        For slow oscillations: predicted time of the next up-state (seconds); NaN otherwise.
    """

    kind: str
    channel: str
    onset_s: float
    detect_s: float
    peak_s: float = float("nan")
    amplitude: float = float("nan")
    score: float = float("nan")
    threshold: float = float("nan")
    predicted_s: float = float("nan")

    def to_dict(self) -> dict:
        return asdict(self)
