"""The ``[detectors]`` config section and the factory that builds the enabled detectors."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engramloop.decoders.ripple import RippleDetector, RippleSettings
from engramloop.decoders.slow_osc import SlowOscDetector, SlowOscSettings
from engramloop.decoders.spindle import SpindleDetector, SpindleSettings

__all__ = ["DetectorsSettings", "make_detectors", "RippleSettings", "SpindleSettings",
           "SlowOscSettings"]


@dataclass(frozen=True)
class DetectorsSettings:
    """``[detectors]``: which detectors run, with ``ripple``, ``spindle`` and ``so``
    sub-tables (each has ``enabled`` and ``channels``)."""

    ripple: RippleSettings = field(default_factory=RippleSettings)
    spindle: SpindleSettings = field(default_factory=SpindleSettings)
    so: SlowOscSettings = field(default_factory=SlowOscSettings)


def make_detectors(cfg: Any,
                   channels: tuple[str, ...] | None = None) -> list:
    """The enabled detector stages, each with ``process(chunk) -> list[Event]``.

    Parameters
    ----------
    cfg : Config or DetectorsSettings
        A whole config (its ``detectors`` section is used) or the section itself.
    channels : tuple of str, optional
        The source's channel names (default: ``cfg.source.channels`` when that is set).
        When known, a detector none of whose channels the source has is left out (e.g. no
        ripple detector on a scalp-EEG-only board); a detector with only some of its
        channels present is an error at its first chunk.
    """
    ds = cfg if isinstance(cfg, DetectorsSettings) else getattr(cfg, "detectors", None)
    if ds is None:
        ds = DetectorsSettings()
    if channels is None:
        src = getattr(getattr(cfg, "source", None), "channels", ())
        channels = tuple(src) or None
    out: list = []
    for sub, cls in ((ds.ripple, RippleDetector), (ds.spindle, SpindleDetector),
                     (ds.so, SlowOscDetector)):
        if not sub.enabled:
            continue
        if channels is not None and not any(c in channels for c in sub.channels):
            continue
        out.append(cls(sub))
    return out
