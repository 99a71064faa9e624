"""Helpers for stim-vs-sham twin runs of the simulator (tests/sim): settings with a
schedule, a run that delivers pulses at given times, pulse specs, SO phase times."""
from __future__ import annotations

import dataclasses

import numpy as np

from engramloop.core.chunk import EndOfStream
from engramloop.core.pulse import PulseSpec
from engramloop.sim.settings import HypnogramSettings, SimSettings
from engramloop.sim.source import SimSource

CLICK = PulseSpec(modality="auditory", amplitude=50.0, phase_width_s=0.05)
OPTO = PulseSpec(modality="optogenetic", amplitude=5.0, phase_width_s=0.01)
ELEC = PulseSpec(modality="electrical", amplitude=1.0, phase_width_s=0.0001)


def settings(*schedule: str, **sections) -> SimSettings:
    return dataclasses.replace(SimSettings(), hypnogram=HypnogramSettings(schedule=schedule),
                               **sections)


def run(s: SimSettings, seed: int, seconds: float, pulses=()) -> SimSource:
    """Read ``seconds`` of signal in 20-sample chunks, delivering each (t, spec, target)
    of ``pulses`` as soon as the samples up to t have been read."""
    src = SimSource(s, seed=seed, chunk_samples=20, duration_s=seconds)
    src.start()
    todo = sorted(pulses, key=lambda p: p[0])
    k = 0
    while True:
        try:
            c = src.read(0.0)
        except EndOfStream:
            break
        while k < len(todo) and todo[k][0] <= c.timestamps[-1]:
            src.stimulate(*todo[k])
            k += 1
    src.stop()
    return src


def so_at_phase(truth, phase_deg: float, every: int = 2):
    """Times at cosine phase ``phase_deg`` of every ``every``-th SO cycle."""
    out = []
    for e in truth.events("so")[::every]:
        k = [e.onset_s, e.meta["trough_s"], e.meta["rise_s"], e.peak_s, e.offset_s]
        ph = phase_deg % 360.0
        ph = ph + 360.0 if ph < 90.0 else ph
        out.append(float(np.interp(ph, [90.0, 180.0, 270.0, 360.0, 450.0], k)))
    return out
