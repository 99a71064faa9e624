"""The composition root: :func:`build_loop` turns a Config into a ready :class:`Loop` --
source, detectors, phase estimator, policy, governor, scheduler, outputs, forecaster,
recorder -- and refuses, with one line naming the key, a combination that cannot work.

This is the one module that knows every layer below the controller (drivers, decoders,
the simulator); the sources and outputs are built by :mod:`controller.build_source` and
:mod:`controller.build_outputs`.
"""
from __future__ import annotations

import math
from typing import Any

from engramloop.controller.allocator import AllocatorSettings, UpliftGate
from engramloop.controller.build_outputs import check_outputs_can_play, make_outputs
from engramloop.controller.build_source import make_source
from engramloop.controller.forecast_worker import ForecastGate, ForecastWorker
from engramloop.controller.governor import Governor
from engramloop.controller.loop import Loop
from engramloop.controller.opportunity import (
    OpportunityModel,
    OpportunityModelError,
    default_opportunity_path,
)
from engramloop.controller.policy import Policy, check_against_safety
from engramloop.controller.recorder import Recorder
from engramloop.controller.scheduler import Scheduler
from engramloop.controller.tee import Tee
from engramloop.core.chunk import SourceError
from engramloop.core.clock import HostClock, SimClock
from engramloop.core.schema import ConfigError
from engramloop.decoders.detectors import check_nyquist
from engramloop.decoders.detectors import make_detectors as detector_factory
from engramloop.decoders.phase import make_phase_estimator
from engramloop.decoders.uplift import UpliftModel, UpliftModelError, default_uplift_path
from engramloop.drivers.lsl_outlets import LoopOutlets
from engramloop.drivers.sources import parse_speed
from engramloop.sim.loopback import EmulatedOutput, SimStimOutput


def make_detectors(cfg: Any, channels: tuple[str, ...] | None = None,
                   rate_hz: float | None = None) -> list:
    """The detector stages ``[detectors]`` enables for a source with these channels and
    this rate; an enabled detector whose channels the source lacks, or whose band reaches
    the source's Nyquist frequency, is a ConfigError (never silently left out)."""
    return list(detector_factory(cfg, channels, rate_hz=rate_hz))


def phase_channel_missing(estimator: Any, source: Any) -> bool:
    ch = getattr(getattr(estimator, "settings", None), "channel", None)
    return bool(ch) and ch not in tuple(source.channels)


def _check_source_for_stages(source: Any, phase: Any) -> None:
    """ConfigError when the source cannot feed the decoders: a phase channel it lacks,
    SourceError when it has no regular sampling rate (an irregular LSL stream,
    nominal_srate 0: every filter and detector is designed for a fixed rate)."""
    if phase is not None and phase_channel_missing(phase, source):
        raise ConfigError("", "phase.channel", f"{phase.settings.channel!r} is not a channel "
                                               f"of the source ({', '.join(source.channels)})")
    rate = getattr(source, "rate_hz", math.nan)
    if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
        what = (f"LSL stream {source.stream_name!r}" if getattr(source, "stream_name", "")
                else type(source).__name__)
        raise SourceError(f"{what} has an irregular rate (nominal rate {rate} Hz); the "
                          "filters and detectors need a regular one: publish the stream "
                          "with its nominal sampling rate")
    if phase is not None:
        check_nyquist("phase", phase.settings, float(rate))


def _rate(source: Any) -> float | None:
    """The source's sampling rate in Hz, or None while it is not known (NaN/0 before a
    stream source has started, or an irregular stream)."""
    rate = getattr(source, "rate_hz", None)
    if isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0:
        return float(rate)
    return None


def _check_decoders_for_policy(cfg: Any) -> None:
    """Combinations of [policy], [detectors] and [phase] that cannot work."""
    pol = cfg.policy
    ds = cfg.detectors
    need = {"ripple": "ripple", "spindle": "spindle", "so_upstate": "so"}.get(pol.target)
    if need and not getattr(ds, need).enabled:
        raise ValueError(f"policy.target: {pol.target!r} needs detectors.{need}.enabled = true")
    if pol.target == "so_upstate" and ds.so.target_deg != 0.0 \
            and pol.so_phase_deg != 0.0:
        raise ValueError("policy.so_phase_deg: the target phase is set twice (also "
                         "detectors.so.target_deg); set it in one place")
    ph = cfg.phase
    if pol.target.startswith("theta") and not (
            ph.band_hz[0] >= 4.0 and ph.band_hz[1] <= 12.0):
        raise ValueError(f"policy.target: {pol.target!r} needs [phase] band_hz inside the "
                         f"theta range (e.g. [6.0, 10.0]) on a hippocampal channel; got "
                         f"{list(ph.band_hz)}")


def build_loop(cfg: Any, *, config_text: str = "", speed: Any = 1.0,
               duration_s: float | None = None, record: str | None = None,
               stim_port: str | None = None, serial_port: str | None = None,
               stream: str | None = None, channels: Any = None, path: str | None = None,
               source: Any = None, outputs: list | None = None, status_board: Any = None,
               log: Any = None, description: str = "") -> Loop:
    """Assemble a :class:`Loop` from a :class:`~controller.config.Config`.

    Parameters
    ----------
    cfg : Config
    config_text : str
        The effective config as TOML, written into the recording header.
    speed : 1, a number or "max"
        ``"max"`` runs unpaced on a :class:`SimClock` (sim and file sources only).
    duration_s : float, optional
        Seconds of data after which a simulated source ends.
    record : str, optional
        XDF path to record to.
    stim_port, serial_port, stream, channels, path : optional
        Command-line overrides for the outputs and the source.
    source : Source, optional
        Use this source instead of building one from ``cfg.source`` (replay, tests).
    outputs : list of Output, optional
        Use these outputs instead of ``[stimulators]``.

    Raises
    ------
    ConfigError
        For a policy the safety limits would refuse every time.
    """
    try:
        check_against_safety(cfg.policy, cfg.safety)
        _check_decoders_for_policy(cfg)
    except ValueError as exc:
        key, _, msg = str(exc).partition(": ")
        raise ConfigError("", key, msg) from None
    sp = parse_speed(speed)
    simulated = sp == "max"
    clock = SimClock(0.0) if simulated else HostClock()
    if source is None:
        source = make_source(cfg, serial_port=serial_port, stream=stream, channels=channels,
                             clock=clock if simulated else None, speed=sp, path=path,
                             duration_s=duration_s)
    if not simulated:
        # A source that paces itself on its own clock (a file replayed at N x real time)
        # stamps its chunks on that clock; the governor, scheduler and latency accounting
        # must read the very same clock or every pulse looks stale or late.
        clock = getattr(source, "clock", None) or clock
    sim_source = source if callable(getattr(source, "stimulate", None)) else None
    if outputs is None:
        outputs = []
        feeds_sim = False
        if not simulated:
            outputs = list(make_outputs(cfg, stim_port=stim_port, sim_source=sim_source,
                                        source=source))
            feeds_sim = any(isinstance(o, EmulatedOutput) for o in outputs)
        elif log is not None and set(cfg.stimulators.kinds) - {"sham"}:
            log(f"--speed max: configured stimulators {list(cfg.stimulators.kinds)} are not "
                "used (they run in real time); pulses go straight to the simulator")
        if sim_source is not None and not feeds_sim:
            # no emulated device hands pulses back: the simulator is stimulated directly
            outputs.append(SimStimOutput(sim_source, clock))
    devices = sorted(set(cfg.stimulators.kinds) & {"pulsepal", "stimbox"})
    clock_rate = float(getattr(clock, "speed", 1.0))
    if not simulated and devices and cfg.policy.condition != "sham" and clock_rate != 1.0:
        # the governor's refractory, rate and dose windows are in this clock's seconds; on
        # a clock faster than the wall they would let N times the limit reach the tissue
        raise ConfigError("", "stimulators.kinds", f"{', '.join(devices)} stimulate in real "
                          f"time but this run's clock runs at {clock_rate:g} x real time; "
                          "run at speed 1 (or sham) so the safety limits hold in wall-clock "
                          "seconds")
    if not simulated:
        check_outputs_can_play(cfg)  # each device's own encoder judges what it can play
    governor = Governor(cfg.safety)
    scheduler = Scheduler(cfg.scheduler, governor, outputs, clock)
    forecaster = gate = None
    fset = cfg.forecaster
    if fset.enabled:
        forecaster = ForecastWorker(fset)
        if fset.gate == "uplift_budget":
            try:
                model = UpliftModel.load(fset.uplift_model or default_uplift_path())
            except UpliftModelError as exc:
                raise ConfigError("", "forecaster.uplift_model", str(exc)) from None
            opportunity = None
            if fset.uplift_opportunity == "forecast":
                try:
                    opportunity = OpportunityModel.load(fset.uplift_opportunity_model
                                                        or default_opportunity_path())
                except OpportunityModelError as exc:
                    raise ConfigError("", "forecaster.uplift_opportunity_model",
                                      str(exc)) from None
            gate = UpliftGate(model, AllocatorSettings(
                budget=fset.budget_pulses, night_s=fset.night_s, min_gap_s=fset.min_gap_s,
                after_spindle_only=fset.uplift_after_spindle_only, slack=fset.uplift_slack,
                opportunity=fset.uplift_opportunity, endgame=fset.uplift_endgame),
                worker=forecaster, max_wait_s=fset.uplift_max_wait_s, synchronous=simulated,
                opportunity=opportunity)
        else:
            gate = ForecastGate(forecaster, fset)
    policy = Policy(cfg.policy, cfg.scheduler.budget_s, seed=cfg.seed,
                    refractory_s=cfg.safety.refractory_s, gate=gate)
    phase = None
    if policy.needs_phase:
        phase = make_phase_estimator(cfg.phase)
    # A stream source (LSL) learns its channels and rate only when it resolves the
    # stream at start: its detectors are built then, and the checks below run then.
    known = bool(tuple(source.channels)) and _rate(source) is not None
    if known:
        _check_source_for_stages(source, phase)
    recorder = None
    if record:
        recorder = Recorder(record, config_text)
    lsl = cfg.lsl_outlets
    if lsl.enabled:
        outlets = LoopOutlets(lsl)
        recorder = outlets if recorder is None else Tee(recorder, outlets)
    return Loop(source, make_detectors(cfg, tuple(source.channels), _rate(source))
                if known else None,
                policy, governor, scheduler, clock,
                recorder=recorder, phase_estimator=phase,
                arm_on_start=cfg.safety.arm_on_start, status_board=status_board,
                description=description or cfg.source.kind,
                read_timeout_s=cfg.source.read_timeout_s, log=log, sim_source=sim_source,
                forecaster=forecaster,
                make_detectors=None if known else (
                    lambda chans: make_detectors(cfg, chans, _rate(source))),
                check_stages=None if known else (
                    lambda src: _check_source_for_stages(src, phase)),
                fault_rearm_after_s=cfg.stimulators.fault_rearm_after_s,
                fault_max_rearms=cfg.stimulators.fault_max_rearms)


__all__ = ["build_loop", "make_detectors", "phase_channel_missing"]
