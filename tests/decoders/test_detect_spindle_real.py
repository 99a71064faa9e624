"""Spindle detector on real human sleep EEG scored by human experts (the DREAMS development
excerpts in shared/data/dreams_dev; Devuyst et al., IEEE EMBC 2011), read through the
product's own EDF reader, against the experts' annotations (not our output): the issue-20
floor on F1, latency and density at the defaults and with the optional confirmation
(``confirm_duration_s``), chunk-size independence on real signals, the 50 Hz excerpt, and a
wake/REM-like quiet stretch that must not lower the thresholds."""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
from shared_data import DATA, require_data  # noqa: E402

from engramloop.analysis.scoring import replay
from engramloop.decoders.spindle import SpindleDetector, SpindleSettings

DREAMS = DATA / "dreams_dev"
#: expert 1 scored only the first 1000 s of each excerpt (dreams_dev/README.md)
WINDOW_S = 1000.0


def load(n: int) -> tuple[np.ndarray, np.ndarray, float, tuple[str, ...]]:
    from engramloop.drivers.files import load_file

    path = DREAMS / f"excerpt{n}.edf"
    require_data(path)
    d = load_file(path)
    return d.samples, d.timestamps, d.rate_hz, d.channels


def expert(n: int, k: int = 1) -> np.ndarray:
    """(m, 2) onset, end in seconds."""
    a = np.loadtxt(DREAMS / f"excerpt{n}_expert{k}.csv", delimiter=",", skiprows=1, ndmin=2)
    return np.column_stack([a[:, 0], a[:, 0] + a[:, 1]])


def overlap_f1(det: list, truth: np.ndarray) -> tuple[float, list[float]]:
    """F1 by interval overlap (a detection [onset_s, detect_s] matches an expert spindle it
    overlaps, each used once) and the latencies detect_s - expert onset of the matches."""
    det = [d for d in det if d[0] < WINDOW_S]
    truth = truth[truth[:, 0] < WINDOW_S]
    used = np.zeros(len(truth), dtype=bool)
    lat = []
    for on, at in sorted(det, key=lambda d: d[1]):
        hit = np.flatnonzero(~used & (truth[:, 0] <= at) & (truth[:, 1] >= on))
        if hit.size:
            used[hit[0]] = True
            lat.append(at - truth[hit[0], 0])
    return 2 * len(lat) / (len(det) + len(truth)), lat


def spindles(ev: list) -> list[tuple[float, float]]:
    """Every released spindle event (a later spindle_rejected included)."""
    return [(e.onset_s, e.detect_s) for e in ev if e.kind == "spindle"]


def confirmed(ev: list) -> list[tuple[float, float]]:
    """The spindle events no spindle_rejected took back (what the scorer keeps)."""
    rejected = {e.onset_s for e in ev if e.kind == "spindle_rejected"}
    return [d for d in spindles(ev) if d[0] not in rejected]


#: the optional confirmation's setting (off by default) that the tests below turn on
CONFIRM_S = 0.4


@functools.cache
def events(n: int, confirm_duration_s: float = 0.0) -> tuple:
    """Excerpt ``n`` replayed in chunks of 10 at the defaults (``confirm_duration_s`` as
    given), once per test session."""
    x, t, fs, names = load(n)
    s = dataclasses.replace(SpindleSettings(), channels=names,
                            confirm_duration_s=confirm_duration_s)
    return tuple(replay([SpindleDetector(s)], x, t, fs, names, 10))


def per_expert_spindle(det: list, n: int) -> float:
    """Detections per expert-1 spindle in the scored window (issue 20: within 0.5-2)."""
    return sum(1 for d in det if d[0] < WINDOW_S) / len(expert(n)[expert(n)[:, 0] < WINDOW_S])


def test_defaults_emulate_expert_scoring() -> None:
    """Issue 20's floor on the four excerpts at the defaults (no confirmation: every
    released event is scored, as pulses follow them): mean F1 against expert 1 >= 0.55
    (YASA's offline detector scores 0.49 the same way, bench/real_eeg.py), median latency
    from the expert's onset <= 0.35 s, and each excerpt's F1 >= 0.4. Nothing is taken
    back (a spindle_rejected only for a run beyond max_duration_s). Density is within a
    factor 2 of expert 1's on excerpts 1, 5 and 7; excerpt 3 misses it (3.4x, where expert
    2 marks 3.4x as many as expert 1: docs/performance.md)."""
    f1s, lats = [], []
    s = SpindleSettings()
    for n in (1, 3, 5, 7):
        ev = events(n)
        assert all(e.detect_s - e.onset_s >= s.max_duration_s - 0.02
                   for e in ev if e.kind == "spindle_rejected"), n
        f1, lat = overlap_f1(spindles(ev), expert(n))
        f1s.append(f1)
        lats += lat
        if n != 3:
            assert 0.5 <= per_expert_spindle(spindles(ev), n) <= 2.0, n
    assert np.mean(f1s) >= 0.55 and min(f1s) >= 0.4, f1s
    assert np.median(lats) <= 0.35


def test_the_confirmation_option_changes_only_what_is_scored() -> None:
    """With confirm_duration_s 0.4 the released events (what a pulse follows) are exactly
    the defaults' and the scored (confirmed) events meet issue 20's targets on all four
    excerpts: mean F1 >= 0.55, each >= 0.4, median latency (to the release) <= 0.35 s, each
    excerpt's density within a factor 2 of expert 1's (excerpt 3 included)."""
    f1s, lats = [], []
    for n in (1, 3, 5, 7):
        ev = events(n, CONFIRM_S)
        assert spindles(ev) == spindles(events(n)), n
        det = confirmed(ev)
        assert len(det) < len(spindles(ev)), n
        f1, lat = overlap_f1(det, expert(n))
        f1s.append(f1)
        lats += lat
        assert 0.5 <= per_expert_spindle(det, n) <= 2.0, n
    assert np.mean(f1s) >= 0.55 and min(f1s) >= 0.4, f1s
    assert np.median(lats) <= 0.35


def test_confirmation_takes_back_mostly_what_no_expert_marked() -> None:
    """With the option on, on the three excerpts both experts scored, most of the events
    it takes back overlap neither expert's spindles, and their precision against expert 1
    is below that of the events it keeps (the short runs are the unmarked ones)."""
    back = kept_n = back_e1 = kept_e1 = neither = 0
    for n in (1, 3, 5):
        ev = events(n, CONFIRM_S)
        kept = set(confirmed(ev))
        e1, e2 = expert(n), expert(n, 2)
        for on, at in spindles(ev):
            if on >= WINDOW_S:
                continue
            hit1 = bool(np.any((e1[:, 0] <= at) & (e1[:, 1] >= on)))
            hit2 = bool(np.any((e2[:, 0] <= at) & (e2[:, 1] >= on)))
            if (on, at) in kept:
                kept_n, kept_e1 = kept_n + 1, kept_e1 + hit1
            else:
                back, back_e1, neither = back + 1, back_e1 + hit1, neither + (not (hit1 or hit2))
    assert back >= 10 and neither > back / 2, (back, neither)
    assert back_e1 / back < kept_e1 / kept_n, (back_e1, back, kept_e1, kept_n)


@pytest.mark.parametrize("confirm_s", [0.0, CONFIRM_S])
@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_chunk_size_independent_on_real_eeg(chunk: int | None, confirm_s: float) -> None:
    """The first 400 s of excerpt 1 (several baseline updates and a hold window) give the
    same events whatever the chunking, with the confirmation off (the default) and on."""
    x, t, fs, names = load(1)
    n = int(400 * fs)
    x, t = np.ascontiguousarray(x[:n]), t[:n]
    s = dataclasses.replace(SpindleSettings(), channels=names, confirm_duration_s=confirm_s)
    ref = replay([SpindleDetector(s)], x, t, fs, names, n)
    got = replay([SpindleDetector(s)], x, t, fs, names, chunk or n)
    assert len(spindles(ref)) >= 5 and got == ref
    # with the option on, some released runs are taken back (5 of 14 here)
    assert any(e.kind == "spindle_rejected" for e in ref) == (confirm_s > 0)


def test_a_50_hz_recording_runs_with_its_broadband_capped() -> None:
    """Excerpt 3 is stored at 50 Hz: the default 3-30 Hz broadband is capped at 0.9 x
    Nyquist (22.5 Hz) instead of failing, and it still finds expert 1's spindles."""
    x, t, fs, names = load(3)
    assert fs == 50.0
    s = dataclasses.replace(SpindleSettings(), channels=names)
    f1, lat = overlap_f1(spindles(replay([SpindleDetector(s)], x, t, fs, names, 10)),
                         expert(3))
    assert len(lat) >= 4 and f1 >= 0.4


def test_a_sigma_band_above_nyquist_is_a_clear_error() -> None:
    x, t, fs, names = load(3)
    s = dataclasses.replace(SpindleSettings(), channels=names, sigma_band_hz=(11.0, 26.0))
    with pytest.raises(ValueError, match="sigma_band_hz: 26.0 Hz is at or above Nyquist"):
        replay([SpindleDetector(s)], x[:100], t[:100], fs, names, 10)


def test_a_quiet_stretch_does_not_lower_the_thresholds() -> None:
    """Real N2 EEG rich in expert-scored spindles (excerpt 5, 600-900 s) followed by the same
    EEG scaled to a third -- the low-amplitude EEG of wake or REM after NREM. With the hold
    off, the running baseline follows the quiet stretch within about a minute and the
    quiet copy's spindles fire again at a third of the N2 threshold; with the default hold
    nothing fires for baseline_hold_s + half the baseline history into it."""
    x, t, fs, names = load(5)
    seg = x[int(600 * fs):int(900 * fs)]
    y = np.ascontiguousarray(np.concatenate([seg, seg / 3.0]))
    ty = np.arange(y.shape[0]) / fs
    s = dataclasses.replace(SpindleSettings(), channels=names)
    quiet0 = 300.0
    until = quiet0 + s.baseline_hold_s + s.baseline_s / 2

    def fired(hold_s: float) -> list:
        ev = replay([SpindleDetector(dataclasses.replace(s, baseline_hold_s=hold_s))], y, ty,
                    fs, names, 10)
        return [e for e in ev if e.kind == "spindle" and quiet0 <= e.detect_s < until]

    assert fired(s.baseline_hold_s) == []
    assert len(fired(0.0)) >= 5


#: the defaults before issue 20 (tuned on the simulator), to show what the artefact test
#: would catch
BEFORE_ISSUE_20 = dict(rel_power_min=0.05, corr_min=0.4, min_duration_s=0.03, threshold_sd=5.0,
                       broad_band_hz=(1.0, 30.0), baseline_s=60.0, baseline_hold_s=0.0)


@pytest.mark.parametrize("kind", ["pop", "movement", "alpha"])
def test_artefacts_on_real_n2_do_not_fire(kind: str) -> None:
    """Twelve artefacts added to real N2 EEG (excerpt 5, 600-900 s) where neither expert 1
    nor the detector has a spindle: electrode pops (a 50-200 uV step decaying over 0.3 s),
    movement (1 s of 60 uV RMS broadband noise on a 150 uV 1.5 Hz swing) or 3 s of 9-10.5
    Hz wake alpha at 30 uV. No spindle fires within 3.5 s of any (the settings before issue
    20 fired on nearly every one), and the other events are unchanged."""
    x, t, fs, names = load(5)
    seg = np.ascontiguousarray(x[int(600 * fs):int(900 * fs)])
    ty = np.arange(seg.shape[0]) / fs
    e1 = expert(5) - 600.0
    s = dataclasses.replace(SpindleSettings(), channels=names)

    def run(y: np.ndarray, settings: SpindleSettings = s) -> list:
        return [e for e in replay([SpindleDetector(settings)], np.ascontiguousarray(y), ty, fs,
                                  names, 10) if e.kind == "spindle"]

    clean = run(seg)
    free = [a for a in np.arange(20.0, 290.0, 1.0)
            if not np.any((e1[:, 0] < a + 4) & (e1[:, 1] > a - 2))
            and not any(a - 2 < e.detect_s < a + 4 for e in clean)]
    ats = free[::max(1, len(free) // 12)][:12]
    assert len(ats) == 12
    rng = np.random.default_rng(0)
    y = seg.copy()
    for a in ats:
        if kind == "pop":
            m = ty >= a
            y[m, 0] += (rng.choice([-1, 1]) * rng.uniform(50e-6, 200e-6)
                        * np.exp(-(ty[m] - a) / 0.3))
        elif kind == "movement":
            m = (ty >= a) & (ty < a + 1.0)
            y[m, 0] += (rng.standard_normal(m.sum()) * 60e-6
                        + 150e-6 * np.sin(2 * np.pi * 1.5 * (ty[m] - a)))
        else:
            m = (ty >= a) & (ty < a + 3.0)
            y[m, 0] += 30e-6 * np.sin(2 * np.pi * rng.uniform(9.0, 10.5) * ty[m])

    def near(evs: list) -> list:
        return [e for e in evs if any(a - 0.5 <= e.detect_s < a + 3.5 for a in ats)]

    got = run(y)
    assert near(got) == []
    # (the artefacts enter the baseline a little, so a detection may move by a sample)
    assert np.allclose([e.detect_s for e in got], [e.detect_s for e in clean], atol=0.02)
    before = dataclasses.replace(s, **BEFORE_ISSUE_20)
    assert len(near(run(y, before))) >= 10
