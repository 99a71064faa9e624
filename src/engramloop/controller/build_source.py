"""Build the Source a Config's ``[source]`` describes (:func:`make_source`): the simulator,
a BrainFlow board, an LSL stream or a recorded file.

Part of the composition root (:mod:`engramloop.controller.build`). Device libraries
(brainflow, pylsl, pyxdf, pyedflib) are imported by each driver when it starts, for the
kind actually used.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engramloop.controller.config import Config
from engramloop.core.chunk import Source, SourceError
from engramloop.core.clock import Clock, SimClock
from engramloop.drivers.brainflow_source import BrainFlowSource
from engramloop.drivers.files import FileSource
from engramloop.drivers.lsl_source import LslSource
from engramloop.drivers.sources import SelectChannels, parse_speed
from engramloop.sim.source import SimSource


def make_source(cfg: Config, *, serial_port: str | None = None, stream: str | None = None,
                channels: Sequence[str] | None = None, clock: Clock | None = None,
                speed: Any = None, path: str | None = None,
                duration_s: float | None = None) -> Source:
    """Build the Source that ``cfg.source`` describes (not yet started).

    Parameters
    ----------
    cfg : Config
        The run configuration; ``cfg.source.kind`` picks sim, brainflow, lsl or file.
    serial_port, stream, channels : optional
        Command-line overrides: board serial port, LSL stream name (for a file source,
        the XDF stream name), channel names to keep in order.
    clock : Clock, optional
        Clock for simulated/replayed time (sim and file sources).
    speed : float or "max", optional
        Pacing for sim and file sources; file sources default to ``source.file.speed``,
        the simulator to real time unless the clock is a SimClock.
    path : str, optional
        File to replay (overrides ``source.file.path``).
    duration_s : float, optional
        Stop a simulated source after this many seconds (``EndOfStream``).
    """
    src_cfg = cfg.source
    kind = src_cfg.kind
    chans = tuple(channels) if channels else tuple(src_cfg.channels)
    if kind == "sim":
        sp = parse_speed(speed) if speed is not None else None
        paced = not (sp == "max" or isinstance(clock, SimClock))
        src = SimSource(cfg.sim, seed=cfg.seed, clock=clock, paced=paced,
                        chunk_samples=src_cfg.chunk_samples, duration_s=duration_s)
        return SelectChannels(src, chans, "simulator") if chans else src
    if kind == "brainflow":
        return BrainFlowSource(src_cfg.brainflow, serial_port=serial_port, channels=chans)
    if kind == "lsl":
        return LslSource(src_cfg.lsl, name=stream, channels=chans,
                         chunk_samples=src_cfg.chunk_samples)
    if kind == "file":
        fpath = path or src_cfg.file.path
        if not fpath:
            raise SourceError("source.file.path is empty: give the file to replay")
        sp = parse_speed(speed if speed is not None else src_cfg.file.speed)
        return FileSource(fpath, speed=sp, clock=clock, channels=chans,
                          chunk_samples=src_cfg.chunk_samples,
                          stream=stream or src_cfg.file.stream, board=src_cfg.file.board,
                          units=src_cfg.file.units)
    raise SourceError(f"source.kind {kind!r} is not one of sim, brainflow, lsl, file")


__all__ = ["make_source"]
