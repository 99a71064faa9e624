"""A stratum radiatum site on the simulated probe: the sharp wave of each SPW-R complex,
large and negative, with the amplitude recorded in the truth; the rest of the plan is the
one the same seed gives without that site."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from engramloop.controller.config import loads_config
from engramloop.core.schema import ConfigError
from engramloop.sim.generate import simulate
from engramloop.sim.settings import (
    ArtefactSettings,
    HypnogramSettings,
    NoiseSettings,
    SimSettings,
    SlowOscSettings,
    SpindleSettings,
)

PROBE = ("CA1", "CA1b", "CA1rad", "Fz", "Cz")


def _quiet(channels: tuple[str, ...]) -> SimSettings:
    """N3 with no background, no cortical rhythms and no artefacts: only ripples (and
    their sharp waves) are left in the signal."""
    zero_noise = NoiseSettings(eeg_aperiodic_v=0.0, lfp_aperiodic_v=0.0, eeg_white_v_per_rthz=0.0,
                               lfp_white_v_per_rthz=0.0, eeg_sigma_v=0.0, alpha_v=0.0,
                               lfp_spike_v=0.0, line_v=0.0)
    no_art = ArtefactSettings(movement_rate_hz=0.0, pop_rate_hz=0.0, dropout_rate_hz=0.0,
                              eye_rate_rem_hz=0.0, eye_rate_wake_hz=0.0, saturation_rate_hz=0.0)
    return SimSettings(channels=channels, radiatum_channels=("CA1rad",), noise=zero_noise,
                       artefacts=no_art, so=SlowOscSettings(trough_v=0.0, peak_v=0.0),
                       spindle=SpindleSettings(amplitude_v=0.0),
                       hypnogram=HypnogramSettings(schedule=("N3:120",)))


@pytest.fixture(scope="module")
def quiet():
    return simulate(_quiet(PROBE), seed=4, duration_s=120.0)


def test_radiatum_carries_the_recorded_sharp_wave(quiet) -> None:
    """At each ripple's peak the radiatum channel reads its sharp wave (truth meta) plus at
    most radiatum_ripple_gain of the ripple; sharp waves that overlap a neighbour's tail are
    left out of the comparison."""
    x, t, truth = quiet
    s = _quiet(PROBE).ripple
    rad = PROBE.index("CA1rad")
    rips = truth.events("ripple")
    assert len(rips) > 60
    checked = 0
    for i, r in enumerate(rips):
        sw = r.meta["radiatum_sharp_wave_v"]
        gap = min([abs(r.peak_s - o.peak_s) for j, o in enumerate(rips) if j != i] or [1.0])
        k = int(round((r.peak_s - t[0]) * truth.rate_hz))
        if gap < 0.25 or k >= len(x):      # (a ripple that started just before the end)
            continue
        assert x[k, rad] == pytest.approx(sw, abs=s.radiatum_ripple_gain * r.meta["amplitude_v"]
                                          + 2e-6)
        checked += 1
    assert checked > 30


def test_sharp_wave_amplitudes_follow_the_settings(quiet) -> None:
    """Median near radiatum_sharp_wave_v, always negative, log-normal spread, and
    correlated with the ripple amplitude about as configured (0.5)."""
    _, _, truth = quiet
    s = _quiet(PROBE).ripple
    sw = np.array([r.meta["radiatum_sharp_wave_v"] for r in truth.events("ripple")])
    amp = np.array([r.meta["amplitude_v"] for r in truth.events("ripple")])
    assert np.all(sw < 0)
    assert np.median(sw) == pytest.approx(s.radiatum_sharp_wave_v, rel=0.2)
    assert np.std(np.log(-sw)) == pytest.approx(s.radiatum_sharp_wave_sigma, rel=0.3)
    assert 0.25 < np.corrcoef(np.log(-sw), np.log(amp))[0, 1] < 0.75


def test_pyramidal_sites_keep_their_ripple_and_a_small_sharp_wave(quiet) -> None:
    """The radiatum site takes no place in the pyramidal-layer fall-off: CA1 and CA1b carry
    the ripple at 1 and 0.7 as without it, and CA1rad only a small fraction."""
    x, t, truth = quiet
    from scipy import signal

    sos = signal.butter(4, [150, 250], "bandpass", fs=truth.rate_hz, output="sos")
    band = signal.sosfiltfilt(sos, x[:, :3], axis=0)
    k = [int(round((r.peak_s - t[0]) * truth.rate_hz)) for r in truth.events("ripple")]
    rms = np.sqrt(np.mean(np.concatenate([band[i - 20:i + 20] for i in k]) ** 2, axis=0))
    assert rms[1] / rms[0] == pytest.approx(0.7, rel=0.05)
    assert rms[2] / rms[0] == pytest.approx(_quiet(PROBE).ripple.radiatum_ripple_gain, rel=0.1)


def test_adding_a_radiatum_site_leaves_the_plan_as_it_was() -> None:
    """Its sharp-wave draws come from their own random stream: the same seed plans the
    same ripples, spindles and slow oscillations with or without the site."""
    base = SimSettings(hypnogram=HypnogramSettings(schedule=("N2:30", "N3:60")))
    lam = dataclasses.replace(base, channels=base.channels + ("CA1rad",),
                              radiatum_channels=("CA1rad",))
    _, _, a = simulate(base, seed=9, duration_s=90.0)
    _, _, b = simulate(lam, seed=9, duration_s=90.0)
    for kind in ("ripple", "spindle", "so"):
        ea, eb = a.events(kind), b.events(kind)
        assert len(ea) > 3
        assert [(e.onset_s, e.peak_s, e.offset_s) for e in ea] == \
               [(e.onset_s, e.peak_s, e.offset_s) for e in eb]
    assert all("radiatum_sharp_wave_v" in e.meta for e in b.events("ripple"))
    assert not any("radiatum_sharp_wave_v" in e.meta for e in a.events("ripple"))


def test_a_probe_without_radiatum_is_unchanged_by_the_feature() -> None:
    """Default channels: the radiatum code draws nothing and adds nothing (the figures
    measured before it existed still hold): no sharp-wave entry in the truth, and the
    ripple channel is still the first hippocampal one."""
    _, _, truth = simulate(SimSettings(hypnogram=HypnogramSettings(schedule=("N3:20",))),
                           seed=2, duration_s=20.0)
    r = truth.events("ripple")
    assert r and all(e.channel == "CA1" for e in r)
    assert not any(math.isfinite(e.meta.get("radiatum_sharp_wave_v", math.nan)) for e in r)


def test_radiatum_channel_must_be_a_hippocampal_channel() -> None:
    with pytest.raises(ConfigError, match=r"sim.radiatum_channels: 'Cz' is not one of the "
                                          r"hippocampal channels"):
        loads_config('[sim]\nradiatum_channels = ["Cz"]\n')
    with pytest.raises(ConfigError, match=r"sim.radiatum_channels: 'CA3' is not one"):
        loads_config('[sim]\nradiatum_channels = ["CA3"]\n')
