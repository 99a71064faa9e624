"""The governor refuses a pulse spec it cannot bound, whoever built it.

The config schema refuses NaN, negative widths and short train intervals in
``[policy.pulse]``, but the governor is "a layer nobody can skip" (docs/safety.md): a
``PulseSpec`` built in code reaches ``Governor.review`` without the schema. Before this
test the governor approved such specs, because every dose rule is a ``value > cap``
comparison and NaN (or a negative width, or a negative light level) is never greater than
a cap: an electrical pulse of NaN volts, a train of three pulses at the same instant, or a
train of 10^9 pulses (which exhausted memory building its onsets) were approved.
"""
from __future__ import annotations

import math

import pytest

from engramloop.controller.governor import Governor, Intent, SafetySettings
from engramloop.core.pulse import PulseSpec

RATE = 2000.0
NAN = math.nan


def ready() -> Governor:
    g = Governor(SafetySettings())
    g.arm()
    g.set_calibrated(True)
    g.observe_chunk(0.0, 1.0, 2001, RATE)
    return g


def review(spec: PulseSpec):
    return ready().review(Intent(target="ripple", spec=spec, detect_s=1.0, intended_s=1.0,
                                 deadline_s=1.01), 1.0)


ELEC = dict(modality="electrical", shape="biphasic", amplitude=1.0, phase_width_s=100e-6)

MALFORMED = {
    "electrical NaN volts": PulseSpec(**{**ELEC, "amplitude": NAN}),
    "electrical NaN width": PulseSpec(**{**ELEC, "phase_width_s": NAN}),
    "electrical negative width": PulseSpec(**{**ELEC, "amplitude": 100.0,
                                              "phase_width_s": -1e-3}),
    "electrical NaN interphase": PulseSpec(**{**ELEC, "interphase_s": NAN}),
    "optogenetic NaN mW": PulseSpec(modality="optogenetic", amplitude=NAN),
    "optogenetic negative mW": PulseSpec(modality="optogenetic", amplitude=-500.0),
    "auditory NaN dB": PulseSpec(modality="auditory", amplitude=NAN, phase_width_s=0.05),
    "auditory -inf dB": PulseSpec(modality="auditory", amplitude=-math.inf,
                                  phase_width_s=0.05),
    "ttl NaN volts": PulseSpec(modality="ttl", amplitude=NAN),
    "train NaN interval": PulseSpec(train_count=100, train_interval_s=NAN),
    "train negative interval": PulseSpec(train_count=3, train_interval_s=-1.0),
    "train of simultaneous pulses": PulseSpec(train_count=3, train_interval_s=0.0),
    "train interval shorter than a pulse": PulseSpec(
        **{**ELEC, "train_count": 2, "train_interval_s": 150e-6}),
    "train of 10^9 pulses": PulseSpec(train_count=10**9, train_interval_s=0.01),
    "unknown modality": PulseSpec(modality="xray"),  # type: ignore[arg-type]
    "unknown shape": PulseSpec(shape="triphasic"),  # type: ignore[arg-type]
    "channel 0": PulseSpec(channel=0),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_governor_refuses_a_spec_it_cannot_bound(name):
    d = review(MALFORMED[name])
    assert not d.approved, f"{name} was approved"
    assert d.rule == "waveform"
    assert d.detail  # says which field is wrong


def test_well_formed_specs_still_pass():
    for spec in (PulseSpec(), PulseSpec(**ELEC),
                 PulseSpec(modality="optogenetic", amplitude=5.0, phase_width_s=0.005),
                 PulseSpec(modality="auditory", amplitude=50.0, phase_width_s=0.05),
                 PulseSpec(train_count=3, train_interval_s=0.01)):
        d = review(spec)
        assert d.approved, (spec, d.rule, d.detail)
