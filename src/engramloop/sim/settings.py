"""Settings of the simulated hippocampus, sleeping cortex and memory: config section ``[sim]``.

All amplitudes are in volts, all times in seconds, all rates in events per second unless a
field name says otherwise. Physiological numbers cite their source next to the field.

Default signal-to-noise (what the detector targets are measured at)
-------------------------------------------------------------------
Measured by ``bench/sim.py`` (300 s of N3, seed 1, 2 kHz, default settings):

* ripples on "CA1": median peak ripple envelope ~62 uV (log-normal, sigma 0.35) over a
  150-250 Hz background of 8.7 uV RMS -> median peak-envelope / band-RMS ratio ~7
  (5th percentile ~4);
* spindles on "Cz": median peak envelope ~23 uV over an 11-16 Hz background of 2.2 uV RMS
  -> ratio ~10 (the YASA N2 example recording: ~13);
* slow oscillations on "Fz": median down-state trough ~70 uV and up-state peak ~40 uV
  over a 0.3-1.5 Hz background of ~13 uV RMS outside SOs.

These move by about +-10 % with the seed and the random stream.

The N2 EEG background (1/f^1.9, 25 uV RMS aperiodic) matches the power spectrum of the
YASA N2 example recording (/work/shared/data) within about 2.5 dB at 5, 10 and 20-40 Hz;
it is ~6 dB lower at 2 Hz and ~5 dB lower at 8 Hz, where that excerpt carries delta and
alpha/theta activity the simulator does not generate in N2.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from engramloop.core.schema import setting

Stage = Literal["wake", "N1", "N2", "N3", "REM"]
STAGES: tuple[str, ...] = ("wake", "N1", "N2", "N3", "REM")


@dataclass(frozen=True)
class NoiseSettings:
    """Background activity: aperiodic 1/f^a, amplifier noise, mains."""

    aperiodic_exponent: float = setting(
        1.9, ge=0.0, le=2.0, doc="exponent a of the 1/f^a aperiodic power spectrum (sleep "
        "EEG is steeper than wake: about 1.5-2.5 in NREM, Lendner et al. 2020 eLife 9:e55092; "
        "1.9 with eeg_aperiodic_v 25 uV matches the YASA N2 example recording within "
        "~2.5 dB at 5, 10 and 20-40 Hz)")
    eeg_aperiodic_v: float = setting(
        25e-6, ge=0, unit="V", doc="RMS of the aperiodic component on EEG channels (scalp "
        "sleep EEG background is tens of microvolts)")
    lfp_aperiodic_v: float = setting(
        80e-6, ge=0, unit="V", doc="RMS of the aperiodic component on hippocampal LFP channels")
    eeg_white_v_per_rthz: float = setting(
        0.05e-6, ge=0, unit="V/sqrt(Hz)", doc="amplifier white-noise density on EEG channels "
        "(ADS1299 input noise ~1 uVpp in 70 Hz, TI datasheet SBAS499)")
    lfp_white_v_per_rthz: float = setting(
        0.9e-6, ge=0, unit="V/sqrt(Hz)", doc="broadband noise density on LFP channels (amplifier "
        "plus unresolved multi-unit activity; sets the ripple-band background)")
    eeg_sigma_v: float = setting(
        1.8e-6, ge=0, unit="V", doc="RMS of ongoing 10-16 Hz background activity on EEG "
        "channels (small spindle-band waves that are not spindles: the YASA N2 example has "
        "2.5 uV RMS in 11-16 Hz outside its spindles)")
    alpha_v: float = setting(
        8e-6, ge=0, unit="V", doc="RMS of 8-12 Hz alpha on EEG channels in wake (largest "
        "posteriorly; the classic false positive of spindle detectors). 0 disables it")
    lfp_spike_rate_hz: float = setting(
        30.0, ge=0, unit="1/s", doc="rate of unit spikes resolved on LFP channels while theta "
        "runs (wake/REM), locked near the theta trough (Buzsaki 2002); with nested gamma "
        "the classic false positive of ripple detectors")
    lfp_spike_v: float = setting(100e-6, ge=0, unit="V",
                                 doc="median negative peak of a unit spike on the LFP")
    lfp_burst_prob: float = setting(
        0.3, ge=0, le=1, doc="probability that a spike is a complex-spike burst of 2-5 "
        "spikes 3-6 ms apart (Ranck 1973): a ~200 Hz transient, the hardest ripple look-alike")
    line_hz: float = setting(50.0, gt=0, unit="Hz", doc="mains frequency (50 or 60 Hz)")
    line_v: float = setting(2e-6, ge=0, unit="V", doc="mains interference amplitude")
    channel_correlation: float = setting(
        0.6, ge=0, le=0.99, doc="fraction of the aperiodic EEG variance shared between EEG "
        "channels (volume conduction)")


@dataclass(frozen=True)
class RippleSettings:
    """Sharp-wave ripples in CA1 (Buzsaki 2015 Hippocampus 25:1073)."""

    rate_n3_hz: float = setting(1.0, ge=0, unit="1/s", doc="ripple rate in N3 (rodent NREM "
                                "0.5-2/s, Buzsaki 2015)")
    rate_n2_hz: float = setting(0.6, ge=0, unit="1/s", doc="ripple rate in N2")
    rate_wake_hz: float = setting(0.05, ge=0, unit="1/s", doc="awake (immobility) ripple rate")
    freq_hz: tuple[float, float] = setting((150.0, 250.0), gt=0, unit="Hz",
                                           doc="range of ripple carrier frequencies")
    duration_s: tuple[float, float] = setting((0.02, 0.15), gt=0, unit="s",
                                              doc="range of ripple durations (Buzsaki 2015)")
    median_duration_s: float = setting(0.05, gt=0, unit="s",
                                       doc="median of the log-normal duration distribution")
    amplitude_v: float = setting(60e-6, ge=0, unit="V",
                                 doc="median peak ripple envelope on the first CA1 channel")
    amplitude_sigma: float = setting(0.35, ge=0, doc="log-normal sigma of ripple amplitude")
    sharp_wave_v: float = setting(
        -150e-6, unit="V", doc="sharp-wave deflection under the ripple on the pyramidal-layer "
        "channels (scaled like the ripple on each); a Gaussian centred on the ripple peak, "
        "SD max(15 ms, 0.3 x ripple duration)")
    radiatum_sharp_wave_v: float = setting(
        -400e-6, unit="V", doc="median sharp wave on a stratum radiatum channel "
        "(``radiatum_channels``): the CA3 Schaffer-collateral sink makes it the largest "
        "deflection of the CA1 LFP in NREM sleep, negative, peaking in mid radiatum "
        "(Buzsaki 2015 Hippocampus 25:1073, Fig. 6 depth profiles; hundreds of microvolts "
        "to millivolts in the rat -- the default is at the low, mouse-like end). Same "
        "time course as the pyramidal-layer sharp wave")
    radiatum_sharp_wave_sigma: float = setting(
        0.35, ge=0, doc="log-normal sigma of the radiatum sharp-wave amplitude")
    sharp_wave_ripple_corr: float = setting(
        0.5, ge=0, le=1, doc="correlation of the log sharp-wave amplitude with the log ripple "
        "amplitude of the same event (both grow with the CA3 burst that drives them, "
        "imperfectly: strong sharp waves with weak ripples and the reverse both occur)")
    radiatum_ripple_gain: float = setting(
        0.15, ge=0, le=1, doc="ripple oscillation on a radiatum channel relative to the first "
        "pyramidal-layer channel (the ripple is confined to a few hundred microns around "
        "stratum pyramidale: Buzsaki 2015)")
    spindle_coupling: float = setting(
        0.5, ge=0, le=1, doc="probability that a spindle trough carries a ripple (ripples "
        "nest in spindle troughs: Sirota et al. 2003; Staresina et al. 2015)")
    so_modulation: float = setting(
        0.6, ge=0, le=1, doc="depth of SO-phase modulation of the spontaneous ripple rate: "
        "rate x (1 + m cos(phase)) during an SO, most at the up-state (Battaglia et al. 2004 "
        "Learn Mem 11:697; Sirota et al. 2003)")


@dataclass(frozen=True)
class SpindleSettings:
    """Sleep spindles (11-16 Hz, 0.5-2 s, waxing-waning; AASM; Fernandez & Luthi 2020)."""

    rate_n2_hz: float = setting(0.1, ge=0, unit="1/s", doc="isolated spindle rate in N2 "
                                "(about 5-7/min)")
    rate_n3_hz: float = setting(0.03, ge=0, unit="1/s", doc="isolated spindle rate in N3")
    freq_hz: tuple[float, float] = setting((11.0, 16.0), gt=0, unit="Hz",
                                           doc="range of spindle frequencies")
    duration_s: tuple[float, float] = setting((0.5, 2.0), gt=0, unit="s",
                                              doc="range of spindle durations")
    amplitude_v: float = setting(25e-6, ge=0, unit="V",
                                 doc="median peak envelope on the strongest EEG channel")
    amplitude_sigma: float = setting(0.3, ge=0, doc="log-normal sigma of spindle amplitude")
    so_coupling: float = setting(
        0.6, ge=0, le=1, doc="probability that an SO up-state carries a spindle (Staresina "
        "et al. 2015; Helfrich et al. 2018)")
    so_phase_deg: float = setting(
        -15.0, ge=-180, le=180, unit="deg", doc="preferred SO phase of the coupled spindle's "
        "envelope peak (cosine phase, 0 = up-state peak; young adults peak just before the "
        "up-state peak, Helfrich et al. 2018 Neuron 97:221)")
    so_phase_sd_deg: float = setting(25.0, ge=0, unit="deg",
                                     doc="spread of the coupled spindle's SO phase")
    refractory_s: float = setting(2.0, ge=0, unit="s", doc="minimum gap between spindles "
                                  "(spindles recur every ~3-6 s: Antony et al. 2018)")


@dataclass(frozen=True)
class SlowOscSettings:
    """Slow oscillations (0.5-1.25 Hz down/up states; Steriade 1993, Massimini 2004)."""

    freq_hz: tuple[float, float] = setting((0.5, 1.25), gt=0, unit="Hz",
                                           doc="range of SO cycle frequencies")
    n3_occupancy: float = setting(0.7, ge=0, le=1, doc="fraction of N3 time filled by SO trains")
    rate_n2_hz: float = setting(0.04, ge=0, unit="1/s",
                                doc="rate of isolated slow waves / K-complexes in N2")
    train_cycles: tuple[int, int] = setting((2, 8), ge=1, doc="range of cycles per N3 SO train")
    train_cycle_cv: float = setting(
        0.1, ge=0, le=0.5,
        doc="cycle-to-cycle variability of the SO frequency inside an N3 train: the first "
            "cycle draws its frequency from freq_hz, each later cycle of the train that "
            "frequency times a log-normal factor with this sigma (~ coefficient of "
            "variation), clipped to freq_hz. Consecutive slow waves in N3 recur at a "
            "sharply preferred interval (Massimini et al. 2004, J Neurosci 24:6862, Fig. "
            "2C: inter-wave intervals in stages 3-4 peak at 1.25 s), not independently "
            "across the whole 0.5-1.25 Hz range; 10 % is a modelling choice within that "
            "peak, not a published per-cycle figure. Isolated N2 waves and evoked waves "
            "draw independently")
    trough_v: float = setting(70e-6, ge=0, unit="V", doc="median down-state trough depth "
                              "(EEG polarity: down state negative) on the strongest channel")
    peak_v: float = setting(40e-6, ge=0, unit="V", doc="median up-state peak height")
    amplitude_sigma: float = setting(0.25, ge=0, doc="log-normal sigma of SO amplitude")
    down_fraction: float = setting(0.5, gt=0.2, lt=0.8,
                                   doc="fraction of a cycle spent in the negative half-wave")


@dataclass(frozen=True)
class ThetaSettings:
    """Hippocampal theta (6-10 Hz) with nested gamma, in wake and REM (Buzsaki 2002)."""

    freq_hz: tuple[float, float] = setting((6.0, 10.0), gt=0, unit="Hz",
                                           doc="range the theta frequency wanders in "
                                           "(mean-reverting to its middle)")
    lfp_v: float = setting(250e-6, ge=0, unit="V", doc="theta amplitude on CA1 channels "
                           "(with gamma_v, puts 60-200 Hz power relative to theta-band power "
                           "within ~2 dB of the shared rat CA1 recording)")
    eeg_v: float = setting(4e-6, ge=0, unit="V", doc="theta amplitude on EEG channels")
    gamma_hz: tuple[float, float] = setting(
        (25.0, 80.0), gt=0, unit="Hz", doc="band of the nested gamma (slow 30-50 Hz and mid "
        "60-90 Hz gamma: Colgin et al. 2009 Nature 462:353); band-limited noise")
    gamma_v: float = setting(70e-6, ge=0, unit="V",
                             doc="nested gamma RMS at its preferred theta phase (with the "
                             "defaults, the 60-200 Hz wake LFP spectrum relative to theta is "
                             "within ~3 dB of the shared rat CA1 recording)")
    gamma_phase_deg: float = setting(
        180.0, ge=-180, le=180, unit="deg", doc="theta phase of maximal gamma (CA1 pyramidal "
        "layer: near the trough, Belluscio et al. 2012)")
    asymmetry: float = setting(0.2, ge=0, lt=0.45, doc="sawtooth asymmetry of theta (0 = sine; "
                               "CA1 theta rises faster than it falls, Buzsaki 2002)")


@dataclass(frozen=True)
class ArtefactSettings:
    """Artefacts: rates are per second of recording."""

    movement_rate_hz: float = setting(0.002, ge=0, unit="1/s",
                                      doc="movement bursts in sleep (x10 in wake)")
    movement_v: float = setting(300e-6, ge=0, unit="V", doc="movement burst amplitude")
    pop_rate_hz: float = setting(0.002, ge=0, unit="1/s", doc="electrode pops (one channel)")
    pop_v: float = setting(500e-6, ge=0, unit="V", doc="electrode pop step size")
    dropout_rate_hz: float = setting(0.001, ge=0, unit="1/s", doc="flat-line dropouts")
    eye_rate_rem_hz: float = setting(0.3, ge=0, unit="1/s", doc="rapid eye movements in "
                                     "REM (frontal EEG deflections; AASM manual)")
    eye_rate_wake_hz: float = setting(0.2, ge=0, unit="1/s", doc="blinks and saccades in wake")
    eye_v: float = setting(80e-6, ge=0, unit="V", doc="eye-movement deflection on the most "
                           "frontal channel (falls off posteriorly); slow-wave look-alikes")
    saturation_rate_hz: float = setting(
        0.0005, ge=0, unit="1/s", doc="amplifier saturation: a transient twice the input "
        "range drives one channel to the rail (clip_v), from which it recovers over ~1 s")
    clip_v: float = setting(0.1875, gt=0, unit="V", doc="amplifier input range; samples "
                            "beyond +-clip_v saturate (ADS1299 at gain 24: +-187.5 mV)")
    stim_artefact_v: float = setting(2e-3, ge=0, unit="V", doc="electrical stimulation "
                                     "artefact peak on LFP channels (EEG: 1/10 of it)")
    stim_artefact_s: float = setting(0.002, gt=0, unit="s",
                                     doc="decay time constant of the stimulation artefact")


@dataclass(frozen=True)
class EffectSettings:
    """How delivered pulses change the rhythms (never the memory directly)."""

    click_gain: float = setting(
        0.4, ge=0, doc="relative SO amplitude gain of the following cycle for a click at the "
        "optimal phase (Ngo et al. 2013 Neuron 78:545: in-phase clicks enhance SO trains and "
        "spindles)")
    click_best_phase_deg: float = setting(
        0.0, ge=-180, le=180, unit="deg", doc="SO phase where a click helps most: the up-state "
        "peak, where Ngo et al. 2013 (Neuron 78:545) timed their clicks and where the shipped "
        "policy aims (policy.so_phase_deg = 0); the benefit falls off as cos(phase - this)")
    click_down_gain: float = setting(
        0.1, ge=0, doc="relative shrinking of the next SO cycle and its spindles for a click "
        "in the down state (benefit b < 0): 1 + click_down_gain x b. Small: anti-phase "
        "clicks gave no memory benefit and did not enhance SOs in Ngo et al. 2013 (their "
        "out-of-phase condition), but no marked harm either")
    click_spindle_prob: float = setting(
        0.4, ge=0, le=1, doc="probability (times the click's benefit b) that a helpful click "
        "enlarges the spindle of the next up-state by 1 + click_gain b, or induces one "
        "there; an enlarged spindle raises the coupling bonus of its ripples by the same "
        "factor. 0.4 puts an up-state click at ~7e-5 next-day recall, about +7 percentage "
        "points over ~1000 clicks a night, near Ngo et al. 2013's +9.2 of 120 word pairs "
        "(docs/simulator-effects.md)")
    electrical_ripple_mode: Literal["disrupt", "prolong"] = setting(
        "disrupt", doc="effect of an electrical pulse during a ripple (Girardeau et al. 2009 "
        "Nat Neurosci 12:1222: commissural stimulation truncates ripples)")
    optogenetic_ripple_mode: Literal["disrupt", "prolong"] = setting(
        "prolong", doc="effect of an optogenetic pulse during a ripple (Fernandez-Ruiz et al. "
        "2019 Science 364:1082: light prolongs ripples)")
    prolong_s: float = setting(0.1, ge=0, unit="s", doc="how much later a prolonged ripple ends "
                               "(Fernandez-Ruiz 2019: ~50 ms ripples to >100 ms)")
    induced_ripple_s: float = setting(
        0.03, gt=0, unit="s", doc="duration of the ripple an optogenetic pulse induces in a "
        "spindle trough (spindle-locked light): short, like the spontaneous ripples induced "
        "ones resemble (Fernandez-Ruiz et al. 2019 Science 364:1082)")
    cut_latency_s: float = setting(0.003, ge=0, unit="s",
                                   doc="time for a disrupting pulse to silence the ripple")
    theta_gain: float = setting(
        0.0007, ge=0, doc="plasticity per theta-locked pulse on each tagged memory's labile "
        "strength: +gain x cos(theta phase) (potentiation at the peak, depression at the "
        "trough: Huerta & Lisman 1995 Neuron 15:1053; Hyman et al. 2003 J Neurosci 23:11725). "
        "Labile: it decays like any unconsolidated change, so by the next-day test a pulse "
        "is worth about a third of a prolonged ripple (docs/simulator-effects.md). It "
        "was 0.05, which filled memory to its ceiling in a minute of pulses")


@dataclass(frozen=True)
class MemorySettings:
    """The engram model (see sim/memory.py)."""

    n_memories: int = setting(4, ge=1, le=64, doc="number of memories encoded before sleep")
    initial_strength: float = setting(0.6, gt=0, le=1, doc="mean labile strength after "
                                      "encoding (each memory's own: encoding_spread)")
    encoding_spread: float = setting(
        0.5, ge=0, lt=1, doc="memories differ in how well they were encoded: memory i starts "
        "at initial_strength x (1 - spread + 2 spread (r_i + 1/2) / n_memories), r_i a "
        "random rank per seed (stratified uniform draw, so the mean is initial_strength). "
        "Item-level learning varies widely in the studies this models (object-location "
        "pairs, Creery et al. 2015 Sleep 38:755; 15 objects, Schapiro et al. 2018 Nat "
        "Commun 9:3920); +-50 % is a modelling choice")
    need_exponent: float = setting(
        1.0, ge=0, doc="replay content is drawn by need: memory i is replayed with "
        "probability proportional to (1 - strength_i)^k x (1/2 + tag_i) (weaker memories are "
        "replayed more: Schapiro et al. 2018 Nat Commun 9:3920, hippocampal item replay "
        "correlated negatively with pre-rest memory); 0 = uniform. k = 1 is a modelling "
        "choice (the study reports the direction, not an exponent)")
    decay_tau_s: float = setting(6 * 3600.0, gt=0, unit="s", doc="decay time constant of "
                                 "unconsolidated (early-LTP-like) strength")
    tag_tau_s: float = setting(40 * 60.0, gt=0, unit="s", doc="synaptic tag lifetime (Frey & "
                               "Morris 1998; CaMKII condensates, Hosokawa et al. 2021)")
    prp_tau_s: float = setting(30 * 60.0, gt=0, unit="s",
                               doc="lifetime of plasticity-related products")
    replay_gain: float = setting(0.002, ge=0, doc="fraction of the labile strength a replay "
                                 "can consolidate (times coupling 1-3x, ripple quality, tag "
                                 "and PRPs); about 10 min of N3 consolidates ~1/4 of a memory")
    test_delay_s: float = setting(12 * 3600.0, ge=0, unit="s", doc="recall is tested this "
                                  "long after the last simulated sample (a next-day test), so "
                                  "unconsolidated strength has mostly decayed")
    drift_per_hour: float = setting(0.05, ge=0, le=1, doc="fraction of engram units replaced "
                                    "per hour without consolidation (Ziv et al. 2013)")
    n_units: int = setting(200, ge=10, le=100000, doc="units per engram population")
    record_every_s: float = setting(
        10.0, gt=0, unit="s", doc="a recorded closed-loop run on the simulator writes the "
        "engram model's state (recall and strength per memory; stream engramloop.memory) "
        "every this many seconds of signal, at the start and at the end")


@dataclass(frozen=True)
class HypnogramSettings:
    """The sleep-stage schedule."""

    mode: Literal["fixed", "night"] = setting(
        "fixed", doc="'fixed' cycles through `schedule`; 'night' generates a ~90-min-cycle "
        "night hypnogram from the seed (N3 early, REM late; Carskadon & Dement 2011)")
    schedule: tuple[str, ...] = setting(
        ("N2:60", "N3:240", "N2:120", "REM:120", "wake:60"),
        doc="'STAGE:seconds' segments, repeated; STAGE in wake, N1, N2, N3, REM")

    def validate(self) -> None:
        parse_schedule(self.schedule)


def parse_schedule(items: tuple[str, ...]) -> list[tuple[str, float]]:
    """Parse ``("N2:60", ...)`` into ``[("N2", 60.0), ...]``.

    Raises
    ------
    ValueError
        ``"schedule: ..."`` naming the bad item.
    """
    if not items:
        raise ValueError("schedule: must list at least one 'STAGE:seconds' segment")
    out = []
    for item in items:
        stage, sep, dur = item.partition(":")
        if not sep or stage not in STAGES:
            raise ValueError(f"schedule: bad segment {item!r}; use 'STAGE:seconds' with STAGE "
                             f"one of {', '.join(STAGES)}")
        try:
            d = float(dur)
        except ValueError:
            raise ValueError(f"schedule: bad duration in {item!r}") from None
        if not d > 0:
            raise ValueError(f"schedule: duration must be > 0 in {item!r}")
        out.append((stage, d))
    return out


@dataclass(frozen=True)
class SimSettings:
    """The simulated hippocampus and sleeping cortex (config section ``[sim]``).

    Channels whose names start with one of ``lfp_prefixes`` are hippocampal LFP (ripples,
    theta, large background); every other channel is scalp EEG (slow oscillations,
    spindles).

    Default SNR (measured by ``bench/sim.py``; details in the ``sim.settings`` module
    docstring): ripples on CA1 ~7x the 150-250 Hz background RMS (peak envelope,
    median; 5th percentile ~4x); spindles on Cz ~10x the 11-16 Hz background RMS; SO
    troughs ~70 uV on Fz over a ~13 uV RMS 0.3-1.5 Hz background.
    """

    rate_hz: float = setting(2000.0, ge=250, le=30000, unit="Hz", doc="sampling rate")
    channels: tuple[str, ...] = setting(
        ("CA1", "CA1b", "Fz", "C3", "Cz", "C4", "Pz", "Oz"),
        doc="channel names; names starting with an lfp_prefixes entry are CA1 LFP")
    lfp_prefixes: tuple[str, ...] = setting(("CA", "HPC", "LFP", "DG"),
                                            doc="name prefixes that mark hippocampal channels")
    radiatum_channels: tuple[str, ...] = setting(
        (), doc="hippocampal channels (from `channels`) that sit in CA1 stratum radiatum, "
        "not the pyramidal layer: they carry the large negative sharp wave "
        "(ripple.radiatum_sharp_wave_v) and only a small ripple (ripple.radiatum_ripple_gain)")
    noise: NoiseSettings = field(default_factory=NoiseSettings)
    ripple: RippleSettings = field(default_factory=RippleSettings)
    spindle: SpindleSettings = field(default_factory=SpindleSettings)
    so: SlowOscSettings = field(default_factory=SlowOscSettings)
    theta: ThetaSettings = field(default_factory=ThetaSettings)
    artefacts: ArtefactSettings = field(default_factory=ArtefactSettings)
    effects: EffectSettings = field(default_factory=EffectSettings)
    memory: MemorySettings = field(default_factory=MemorySettings)
    hypnogram: HypnogramSettings = field(default_factory=HypnogramSettings)

    def validate(self) -> None:
        if not self.channels:
            raise ValueError("channels: list at least one channel")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channels: duplicate names in {list(self.channels)}")
        for name, (lo, hi) in (("ripple.freq_hz", self.ripple.freq_hz),
                               ("spindle.freq_hz", self.spindle.freq_hz),
                               ("so.freq_hz", self.so.freq_hz),
                               ("theta.freq_hz", self.theta.freq_hz),
                               ("theta.gamma_hz", self.theta.gamma_hz),
                               ("ripple.duration_s", self.ripple.duration_s),
                               ("spindle.duration_s", self.spindle.duration_s)):
            if lo > hi:
                raise ValueError(f"{name}: low end {lo} is above high end {hi}")
        if self.theta.gamma_hz[1] >= 0.45 * self.rate_hz:
            raise ValueError(f"theta: gamma_hz upper end {self.theta.gamma_hz[1]} Hz must be "
                             f"below 0.45 x rate_hz")
        for name in self.radiatum_channels:
            if name not in self.channels or not self.is_lfp(name):
                raise ValueError(f"radiatum_channels: {name!r} is not one of the hippocampal "
                                 f"channels {[c for c in self.channels if self.is_lfp(c)]}")
        if self.ripple.freq_hz[1] >= self.rate_hz / 2:
            raise ValueError(f"ripple: freq_hz upper end {self.ripple.freq_hz[1]} Hz must be "
                             f"below Nyquist ({self.rate_hz / 2} Hz); raise rate_hz")

    def is_lfp(self, name: str) -> bool:
        """True when channel ``name`` is hippocampal LFP."""
        return any(name.startswith(p) for p in self.lfp_prefixes)
