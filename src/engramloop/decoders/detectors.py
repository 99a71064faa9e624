"""The ``[detectors]`` config section and the factory that builds the enabled detectors."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engramloop.core.schema import ConfigError, name_with_hint
from engramloop.decoders.ripple import RippleDetector, RippleSettings
from engramloop.decoders.slow_osc import SlowOscDetector, SlowOscSettings
from engramloop.decoders.spindle import SpindleDetector, SpindleSettings, broad_band_for

__all__ = ["DetectorsSettings", "make_detectors", "RippleSettings", "SpindleSettings",
           "SlowOscSettings"]


@dataclass(frozen=True)
class DetectorsSettings:
    """``[detectors]``: which detectors run, with ``ripple``, ``spindle`` and ``so``
    sub-tables (each has ``enabled`` and ``channels``)."""

    ripple: RippleSettings = field(default_factory=RippleSettings)
    spindle: SpindleSettings = field(default_factory=SpindleSettings)
    so: SlowOscSettings = field(default_factory=SlowOscSettings)


def make_detectors(cfg: Any, channels: tuple[str, ...] | None = None, *,
                   rate_hz: float | None = None, missing: str = "error") -> list:
    """The enabled detector stages, each with ``process(chunk) -> list[Event]``.

    Parameters
    ----------
    cfg : Config or DetectorsSettings
        A whole config (its ``detectors`` section is used) or the section itself.
    channels : tuple of str, optional
        The source's channel names (default: ``cfg.source.channels`` when that is set);
        None or empty when not known yet (nothing is checked).
    rate_hz : float, optional
        The source's sampling rate in Hz; when given, every band of an enabled detector
        must lie below its Nyquist frequency.
    missing : "error" or "skip"
        An enabled detector whose channels the source lacks is a :class:`ConfigError`
        naming the detector, the missing names and the names the source has ("error",
        for runs: a typo must never silently leave a detector out); "skip" leaves out a
        detector none of whose channels the source has (offline tools that run the
        default detector set over whatever a recording holds).

    Raises
    ------
    ConfigError
        For a detector whose channels are missing (all of them, or with "skip" some of
        them) or whose band is at or above Nyquist.
    """
    ds = cfg if isinstance(cfg, DetectorsSettings) else getattr(cfg, "detectors", None)
    if ds is None:
        ds = DetectorsSettings()
    if channels is None:
        src = getattr(getattr(cfg, "source", None), "channels", ())
        channels = tuple(src) or None
    if missing not in ("error", "skip"):
        raise ValueError(f"make_detectors: missing must be 'error' or 'skip', got {missing!r}")
    out: list = []
    for key, sub, cls in (("ripple", ds.ripple, RippleDetector),
                          ("spindle", ds.spindle, SpindleDetector),
                          ("so", ds.so, SlowOscDetector)):
        if not sub.enabled:
            continue
        if channels:
            need = detector_channels(key, sub)
            if missing == "skip" and not any(c in channels for c in need):
                continue
            check_channels(f"detectors.{key}", need, tuple(channels))
        if rate_hz is not None:
            check_nyquist(f"detectors.{key}", sub, rate_hz)
        out.append(cls(sub))
    return out


def detector_channels(key: str, sub: Any) -> tuple[str, ...]:
    """Every channel name a detector's settings make it read, in config order."""
    names = list(sub.channels)
    if key == "ripple":
        names += list(sub.reference_channels)
        if sub.sharp_wave_channel:
            names.append(sub.sharp_wave_channel)
        if sub.theta_gate and sub.theta_channel:
            names.append(sub.theta_channel)
    return tuple(dict.fromkeys(names))


def check_channels(owner: str, need: tuple[str, ...], have: tuple[str, ...]) -> None:
    """Raise a one-line :class:`ConfigError` when ``need`` names channels not in ``have``:
    it names ``owner``, the missing names (with a close match as "did you mean"), the
    names the source has and the two ways out."""
    lost = [c for c in need if c not in have]
    if not lost:
        return
    parts = [name_with_hint(c, have) for c in lost]
    key, _, det = owner.rpartition(".")
    raise ConfigError("", f"{owner}.channels",
                      f"the {det} detector needs channel(s) {', '.join(parts)} that the "
                      f"source does not have; it has {', '.join(have) or '(none)'}; set "
                      f"{owner}.channels to names it has, or {owner}.enabled = false")


def check_nyquist(owner: str, sub: Any, rate_hz: float) -> None:
    """Every ``*band_hz`` setting ``sub`` uses must end below the Nyquist frequency (the
    stages' own first-chunk checks, made before the run starts)."""
    import dataclasses

    nyq = float(rate_hz) / 2.0
    unused = set()
    if not getattr(sub, "sharp_wave_channel", "x"):
        unused.add("sharp_wave_band_hz")      # the sharp-wave assist is off
    if not getattr(sub, "theta_gate", True):
        unused.update(("theta_band_hz", "delta_band_hz"))
    if isinstance(sub, SpindleSettings):
        # the spindle detector caps its broadband at 0.9 x Nyquist itself (3-22.5 Hz at
        # 50 Hz, as DREAMS excerpt 3 is stored); refused only when the capped band no
        # longer reaches above the sigma band -- its own first-chunk check, made here
        unused.add("broad_band_hz")
        try:
            broad_band_for(sub, float(rate_hz))
        except ValueError as exc:
            raise ConfigError("", f"{owner}.broad_band_hz",
                              str(exc).split(": ", 1)[-1]) from None
    for f in dataclasses.fields(sub):
        if not f.name.endswith("band_hz") or f.name in unused:
            continue
        band = getattr(sub, f.name)
        if band and max(band) >= nyq:
            off = f", or set {owner}.enabled = false" if hasattr(sub, "enabled") else ""
            raise ConfigError("", f"{owner}.{f.name}",
                              f"{list(band)} Hz reaches the Nyquist frequency ({nyq:g} Hz) "
                              f"of the {rate_hz:g} Hz source; lower the band{off}")
