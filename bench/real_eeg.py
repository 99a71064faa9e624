"""Detectors on real recordings scored against independent references.

Spindles: the four development excerpts of the DREAMS Sleep Spindles database
(shared/data/dreams_dev: C3-A1 scalp EEG, 50-200 Hz, two experts' independent scoring;
Devuyst et al., IEEE EMBC 2011), scored on [0, 1000 s) where expert 1 scored. Each excerpt
is replayed through the product's own path -- ``drivers.files.FileSource`` on the EDF
(speed "max", 10-sample chunks) into ``decoders.spindle.SpindleDetector`` at its default
settings (only ``channels`` set to the file's channel), the same classes ``engramloop
replay`` builds. Peers on the same excerpts and window: YASA's offline ``spindles_detect``
at its defaults (Vallat & Walker 2021; run on the whole excerpt, detections that start
before 1000 s kept; its 1-30 Hz broadband capped at 0.9 x Nyquist for the 50 Hz excerpt,
as our detector caps its own) and expert 2 against expert 1.

Scoring (``analysis.scoring.match_intervals``, the project's one scoring module, with no
tolerance; the spindle literature matches by overlap): a detection is the interval from
its onset (the low-threshold crossing) to the moment it fired, ``[onset_s, detect_s]``;
the table scores what the product's scorer keeps (a released event a later
``spindle_rejected`` took back is dropped; at the defaults only runs beyond
``max_duration_s`` are, so the scored events are the released ones a pulse may follow).
Under the table the optional confirmation (``confirm_duration_s`` 0.4, off by default) is
printed beside the defaults: its scored events and its released ones (the same as the
defaults'). YASA's and expert 2's events are their [start, end]. A detection
matches an expert spindle it overlaps (touching counts); detections are taken in the
order they fired, each paired with the earliest still-unmatched expert spindle it
overlaps, so each event is used at most once. P = matched / detections, R = matched /
expert events, F1 = 2PR / (P + R). Latency = our detection time minus the matched expert
onset (median over matches; YASA is offline and has none). Density = detections per
minute of the scored window.

Slow oscillations (``so_phase_table``): the four DREAMS development excerpts
(shared/data/dreams_dev, C3-A1, 50-200 Hz; Devuyst et al. 2011) and the YASA N3 excerpt
(shared/data, 30 s at 100 Hz) replayed through the slow-oscillation detector at its
defaults in 10-sample chunks. The trigger time of each event is its ``predicted_s`` (what
the policy aims a pulse at); its phase is read from an offline zero-phase reference computed
on the whole recording: 0.5-1.5 Hz Butterworth band-pass (order 2 per edge), applied
forward and backward (``scipy.signal.sosfiltfilt``), then ``scipy.signal.hilbert``.
Convention: cosine phase in degrees, 0 = positive peak (up state), +-180 = trough (down
state). Reported per excerpt and pooled: triggers per minute, circular mean and SD of the
phase, fraction within +-90 deg of 0 (the up-phase).

``so_sim_table``: the same figures on the simulator against its noise-free SO phase.

Ripples (``ripple_fp_table``): the rat CA1/EC3 theta recordings (shared/data/rat_*.npy,
running animals: no sharp-wave ripples, a negative control) through the ripple detector at
its defaults; every event is a false positive. Reported: events per minute after
calibration, and per minute over the whole file.

Run: ``PYTHONPATH=src python bench/real_eeg.py [--spindle] [--so] [--ripple] [--sim]
[--learn-cost] [--loo] [--why] [--tradeoff] [--so-loo] [--so-fired] [--no-yasa]
[--chunk N]`` (no flag: spindle, SO, ripple and simulator tables; ``--loo`` adds the
leave-one-excerpt-out check of the spindle defaults' grid (at the defaults and with the
optional confirmation), ``--why`` the spindle detections classed by expert with their
features, ``--tradeoff`` the spindle targets over single setting changes, ``--so-loo`` the
same leave-one-out check for the SO selection rules, ``--so-fired`` the SO pulses as a real
``engramloop replay`` sends them, bench/so_fired.py).
"""
from __future__ import annotations

import argparse
import itertools
import math
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from engramloop.analysis.scoring import replay, score_phase  # noqa: E402
from engramloop.core.chunk import EndOfStream  # noqa: E402
from engramloop.decoders.spindle import SpindleDetector, SpindleSettings  # noqa: E402
from engramloop.drivers.files import FileSource  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")
DREAMS = DATA / "dreams_dev"
EXCERPTS = (1, 3, 5, 7)
#: expert 1 scored only the first 1000 s of each excerpt (dreams_dev/README.md)
WINDOW_S = 1000.0


def load_expert(path: Path) -> np.ndarray:
    """Expert spindles (k, 2): onset and end (seconds from the file's start); an empty
    (0, 2) array when the expert did not score this excerpt."""
    if not path.exists():
        return np.zeros((0, 2))
    a = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return np.column_stack([a[:, 0], a[:, 0] + a[:, 1]])


def overlap_match(det: np.ndarray, truth: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (detection, expert event) by interval overlap, each used at most once, by the
    project's one scoring module (:func:`analysis.scoring.match_intervals`, no tolerance).

    Parameters
    ----------
    det, truth : ndarray, shape (k, 2), seconds
        Start and end of each detection / expert event.
    """
    from engramloop.analysis.scoring import Interval, match_intervals

    det = np.asarray(det, dtype=float).reshape(-1, 2)
    return match_intervals(det[:, 0], det[:, 1],
                           [Interval(float(a), float(b)) for a, b in truth],
                           tol_before_s=0.0, tol_after_s=0.0)


def _overlaps(d: np.ndarray, truth: np.ndarray) -> bool:
    """Whether the interval d = (start, end) overlaps any row of truth (k, 2)."""
    return bool(np.any((truth[:, 0] <= d[1]) & (truth[:, 1] >= d[0])))


def score(det: np.ndarray, truth: np.ndarray, window_s: float = WINDOW_S,
          confirm_s: float = 0.0) -> dict:
    """P, R, F1, median latency (detection end - expert onset, s) and densities (/min) of
    the detections and expert events that start in [0, window_s); ``lats_confirmed``: from
    the expert onset to when each matched detection's run had lasted ``confirm_s`` (the
    earliest a pulse waiting for the confirmation could leave)."""
    det = det[det[:, 0] < window_s] if len(det) else np.zeros((0, 2))
    truth = truth[truth[:, 0] < window_s]
    pairs = overlap_match(det, truth)
    tp, nd, nt = len(pairs), len(det), len(truth)
    lat = [det[d, 1] - truth[t, 0] for d, t in pairs]
    lat_conf = [max(det[d, 1], det[d, 0] + confirm_s) - truth[t, 0] for d, t in pairs]
    return {"lats": lat, "lats_confirmed": lat_conf,
            "P": tp / nd if nd else math.nan, "R": tp / nt if nt else math.nan,
            "F1": 2 * tp / (nd + nt) if nd + nt else math.nan,
            "lat": float(np.median(lat)) if lat else math.nan,
            "dens": nd / window_s * 60.0, "dens_expert": nt / window_s * 60.0, "n": nd}


def replay_spindles(path: Path, settings: SpindleSettings | None = None,
                    chunk: int = 10, released: bool = False) -> np.ndarray:
    """Our detector on an EDF through FileSource: (k, 2) [onset_s, detect_s] of each
    ``spindle`` event, seconds from the file's first sample. Without ``released``, the
    events the detector later rejected (``spindle_rejected``: the run ended before
    ``confirm_duration_s`` or outlasted ``max_duration_s``) are dropped, as the product's
    scorer (``analysis.scoring.score_recording``) drops them; with it, every released
    event (what a pulse may have followed)."""
    confirmed, every = replay_both(path, settings, chunk)
    return every if released else confirmed


def replay_both(path: Path, settings: SpindleSettings | None = None, chunk: int = 10
                ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`replay_spindles`'s confirmed and released detections, from one replay."""
    src = FileSource(path, speed="max", chunk_samples=chunk)
    s = replace(settings or SpindleSettings(), channels=(src.channels[0],))
    det = SpindleDetector(s)
    out, rejected = [], set()
    t0 = math.nan
    while True:
        try:
            c = src.read(1.0)
        except EndOfStream:
            break
        if c is None:
            continue
        if t0 != t0:
            t0 = float(c.timestamps[0])
        for e in det.process(c):
            if e.kind == "spindle":
                out.append((e.onset_s - t0, e.detect_s - t0))
            elif e.kind == "spindle_rejected":
                rejected.add(e.onset_s - t0)
    every = np.array(out).reshape(-1, 2)
    return every[[d[0] not in rejected for d in out]].reshape(-1, 2), every


def yasa_spindles(path: Path) -> np.ndarray:
    """YASA ``spindles_detect`` at its defaults on the whole excerpt: (k, 2) start, end."""
    import pyedflib
    import yasa

    r = pyedflib.EdfReader(str(path))
    try:
        x, fs = r.readSignal(0), r.getSampleFrequency(0)
    finally:
        r.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sp = yasa.spindles_detect(x, sf=fs, freq_broad=(1.0, min(30.0, 0.45 * fs)),
                                  verbose=False)
    if sp is None:
        return np.zeros((0, 2))
    s = sp.summary()
    return np.column_stack([s["Start"].to_numpy(), s["End"].to_numpy()])


def _fmt(r: dict | None) -> str:
    if r is None:
        return f"{'--':>5} {'--':>5} {'--':>5} {'--':>6} {'--':>5}"
    lat = f"{r['lat'] * 1000:6.0f}" if r["lat"] == r["lat"] else f"{'--':>6}"
    return f"{r['P']:5.2f} {r['R']:5.2f} {r['F1']:5.2f} {lat} {r['dens']:5.1f}"


def spindle_table(data: Path, chunk: int, with_yasa: bool = True,
                  settings: SpindleSettings | None = None, label: str = "defaults") -> dict:
    """Print the per-excerpt table; return the per-excerpt results."""
    what = label
    print("Spindles, DREAMS development excerpts, C3-A1, scored vs expert 1 on [0, 1000 s) "
          f"(ours: FileSource -> SpindleDetector {what}, {chunk}-sample chunks)")
    head = f"{'P':>5} {'R':>5} {'F1':>5} {'lat ms':>6} {'/min':>5}"
    print(f"{'excerpt':>8} {'fs':>4} {'exp1/min':>8} | ours {head} | YASA {head} | "
          f"expert 2 {head}")
    rows = {}
    held_out = []
    conventions: list[str] = []
    either: list[str] = []
    released: list[str] = []
    for n in EXCERPTS:
        edf = data / "dreams_dev" / f"excerpt{n}.edf"
        e1 = load_expert(edf.with_name(f"excerpt{n}_expert1.csv"))
        e2 = load_expert(edf.with_name(f"excerpt{n}_expert2.csv"))
        fs = FileSource(edf, speed="max").rate_hz
        det, every = replay_both(edf, settings, chunk=chunk)
        rel = score(every, e1)
        released.append(f"{n}: {rel['n']} ({rel['dens'] / rel['dens_expert']:.2f} x expert 1, "
                        f"F1 {rel['F1']:.2f}, {rel['lat'] * 1000:.0f} ms)")
        ydet = yasa_spindles(edf) if with_yasa else None
        conf_s = (settings or SpindleSettings()).confirm_duration_s
        ours = score(det, e1, confirm_s=conf_s)
        yas = score(ydet, e1) if with_yasa else None
        if len(e2):
            both = overlap_match(e2[e2[:, 0] < WINDOW_S], e1)
            shift = np.median([e2[a, 0] - e1[b, 0] for a, b in both])
            d1, d2 = np.median(e1[:, 1] - e1[:, 0]), np.median(e2[:, 1] - e2[:, 0])
            win = det[det[:, 0] < WINDOW_S]
            hits = [(_overlaps(d, e2), _overlaps(d, e1) or _overlaps(d, e2)) for d in win]
            either.append(f"excerpt {n}: {len(win)} detections, {sum(h[0] for h in hits)} "
                          f"overlap an expert-2 spindle, {sum(h[1] for h in hits)} either's")
            conventions.append(f"excerpt {n}: onset expert 2 - expert 1 median {shift:+.2f} s "
                               f"over {len(both)} spindles both marked; median duration "
                               f"expert 1 {d1:.2f} s, expert 2 {d2:.2f} s")
            full = 1800.0
            held_out.append((n, score(det, e2, full),
                             score(ydet, e2, full) if ydet is not None else None))
        exp2 = score(e2, e1) if len(e2) else None
        if exp2 is not None:
            exp2["lat"] = math.nan
        if yas is not None:
            yas["lat"] = math.nan
        rows[n] = (ours, yas, exp2)
        print(f"{n:>8} {fs:4.0f} {ours['dens_expert']:8.1f} | ours {_fmt(ours)} | "
              f"YASA {_fmt(yas)} | expert 2 {_fmt(exp2)}")
    mean = {}
    for k, name in enumerate(("ours", "YASA", "expert 2")):
        got = [r[k] for r in rows.values() if r[k] is not None]
        mean[name] = ({key: float(np.nanmean([g[key] for g in got]))
                       for key in ("P", "R", "F1", "dens")} if got else None)
        if mean[name] is not None:
            # the median latency of all matched detections of the four excerpts
            lats = [x for g in got if g["lat"] == g["lat"] for x in g["lats"]]
            mean[name]["lat"] = float(np.median(lats)) if lats else math.nan
    print(f"{'mean':>8} {'':>4} {'':>8} | ours {_fmt(mean['ours'])} | "
          f"YASA {_fmt(mean['YASA'])} | expert 2 {_fmt(mean['expert 2'])}")
    ratio = [rows[n][0]["dens"] / rows[n][0]["dens_expert"] for n in EXCERPTS]
    print("density ours / expert 1 per excerpt: "
          + ", ".join(f"{n}: {r:.2f}" for n, r in zip(EXCERPTS, ratio, strict=True))
          + " (target: each within 0.5-2)")
    if (settings or SpindleSettings()).confirm_duration_s > 0:
        print("released events (every spindle event, the ones later rejected included: a "
              "pulse may follow each) per excerpt: " + "; ".join(released))
        conf = [x for r in rows.values() for x in r[0]["lats_confirmed"]]
        print(f"a pulse that waited for the confirmation (the run lasting confirm_duration_s "
              f"{(settings or SpindleSettings()).confirm_duration_s:g} s) would leave a median "
              f"{np.median(conf) * 1000:.0f} ms after the expert's onset (the matched "
              "confirmed detections)")
    print("(mean row: means of the excerpts' P, R, F1 and density; latency: median over all "
          "matched detections; expert 2 did not score excerpt 7)")
    print("Against expert 2 on the whole 1800 s (expert 2 was not used to choose anything):")
    print(f"{'excerpt':>8} {'exp2/min':>8} | ours {head} | YASA {head}")
    for n, o, y in held_out:
        if y is not None:
            y["lat"] = math.nan
        print(f"{n:>8} {o['dens_expert']:8.1f} | ours {_fmt(o)} | YASA {_fmt(y)}")
    print(f"{'mean':>8} {'':>8} | ours F1 {np.mean([o['F1'] for _, o, _ in held_out]):.2f}"
          + (f" | YASA F1 {np.mean([y['F1'] for _, _, y in held_out]):.2f}" if with_yasa
             else ""))
    print("The experts' conventions: " + "; ".join(conventions))
    print("Our detections on [0, 1000 s) against either expert: " + "; ".join(either))
    return rows


def spindle_why(data: Path, chunk: int, settings: SpindleSettings | None = None) -> None:
    """Why excerpt 3 over-detects against expert 1: every released detection on [0, 1000 s)
    of each excerpt, classed by what it overlaps (an expert-1 spindle; only an expert-2
    spindle; neither), with per-class medians of features measured offline on the EEG
    (references we did not write: ``scipy.signal`` zero-phase filters):

    - peak: the largest 11-16 Hz amplitude (4th-order Butterworth ``sosfiltfilt`` +
      ``hilbert``) within 1.5 s of the onset, uV and as a multiple of the recording's median
      11-16 Hz amplitude on [0, 1000 s);
    - f: the frequency of the largest spectral peak in 9-17 Hz over the first second from
      the onset (Hann window, 8x zero-padded FFT; 9.0 = the band's edge, no sigma peak);
    - run: how long the detector's own run (sigma amplitude above its low threshold)
      lasted, read from a replay that rejects every run shorter than 2 s (its
      ``spindle_rejected`` marks the run's end);
    - score: the detector's amplitude in robust SDs at release;
    - delta: the 0.5-4 Hz share of the 0.5-20 Hz power (Welch) over the 30 s around
      the detection -- a proxy of sleep depth, since the development set has no hypnogram;
    - zc: what the detector could know of the frequency at the release, the zero-crossing
      rate of a causal sigma signal (``sosfilt``, the detector's one-pole-pair 11-16 Hz
      band-pass of its 3-30 Hz one, 30 Hz capped at 0.9 x Nyquist) over the run from its
      onset to the release (at least 0.25 s).

    Per excerpt also: the median 11-16 Hz amplitude, and the relative sigma power of the
    background (the same causal signals' power ratio over 0.1 s, outside either expert's
    spindles and the second after them) at its median and 99th percentile.

    The expert-1 and expert-2-only spindles of the same window are summarised the same way
    (their duration as scored)."""
    from scipy.signal import butter, hilbert, sosfilt, sosfiltfilt, welch

    from engramloop.drivers.files import load_file

    base = settings or SpindleSettings()
    probe = replace(base, confirm_duration_s=2.0, max_duration_s=max(base.max_duration_s, 2.5))
    print("== Why excerpt 3 over-detects: released detections on [0, 1000 s) by what they "
          "overlap (E1: an expert-1 spindle; E2 only; neither), medians of offline features")
    print(f"{'excerpt':>8} {'class':>7} {'n':>3} | {'peak uV':>7} {'x med':>5} {'f Hz':>5} "
          f"{'f<11':>4} {'run s':>5} {'run<.4':>6} {'score':>5} {'delta':>5} {'zc Hz':>5}")
    for n in EXCERPTS:
        edf = data / "dreams_dev" / f"excerpt{n}.edf"
        rec = load_file(edf)
        x, fs = rec.samples[:, 0] * 1e6, rec.rate_hz      # volts -> uV
        e1 = load_expert(edf.with_name(f"excerpt{n}_expert1.csv"))
        e2 = load_expert(edf.with_name(f"excerpt{n}_expert2.csv"))
        e2 = e2[e2[:, 0] < WINDOW_S]
        amp = np.abs(hilbert(sosfiltfilt(butter(4, (11.0, 16.0), btype="bandpass", fs=fs,
                                                output="sos"), x)))
        med = float(np.median(amp[:int(WINDOW_S * fs)]))
        xb = sosfilt(butter(1, (3.0, min(30.0, 0.45 * fs)), btype="bandpass", fs=fs,
                            output="sos"), x)
        xs = sosfilt(butter(1, (11.0, 16.0), btype="bandpass", fs=fs, output="sos"), xb)
        w = int(round(0.1 * fs))
        kern = np.ones(w) / w
        rel = (np.convolve(xs ** 2, kern)[:x.size] / np.convolve(xb ** 2, kern)[:x.size])
        away = np.ones(int(WINDOW_S * fs), dtype=bool)
        for a, b in np.vstack([e1, e2]):
            away[int(a * fs):int((b + 1.0) * fs)] = False

        def peak_f(on: float) -> float:
            seg = x[int(on * fs):int(on * fs) + int(fs)]
            spec = np.abs(np.fft.rfft((seg - seg.mean()) * np.hanning(seg.size), 8 * seg.size))
            f = np.fft.rfftfreq(8 * seg.size, 1.0 / fs)
            band = (f >= 9.0) & (f <= 17.0)
            return float(f[band][np.argmax(spec[band])])

        def delta(at: float) -> float:
            seg = x[max(0, int((at - 15.0) * fs)):int((at + 15.0) * fs)]
            f, p = welch(seg, fs, nperseg=int(2 * fs))
            return float(p[(f >= 0.5) & (f < 4.0)].sum() / p[(f >= 0.5) & (f <= 20.0)].sum())

        ends: dict[float, float] = {}
        released: dict[float, tuple[float, float]] = {}
        for ev in _spindle_events(rec, probe, chunk):
            if ev.kind == "spindle_rejected":
                ends[ev.onset_s] = ev.detect_s - ev.onset_s
        for ev in _spindle_events(rec, base, chunk):
            if ev.kind == "spindle":
                released[ev.onset_s] = (ev.detect_s, ev.score)
        t0 = float(rec.timestamps[0])
        classes: dict[str, list] = {"E1": [], "E2 only": [], "neither": []}
        for on_abs, (at_abs, sc) in released.items():
            on = on_abs - t0
            if on >= WINDOW_S:
                continue
            d = (on, at_abs - t0)
            cls = ("E1" if _overlaps(d, e1) else
                   "E2 only" if len(e2) and _overlaps(d, e2) else "neither")
            run = ends.get(on_abs, 2.0)
            i1 = int(round((at_abs - t0) * fs)) + 1
            seg = xs[min(int(round(on * fs)), i1 - int(0.25 * fs)):i1]
            zc = np.count_nonzero(np.diff(np.signbit(seg))) / 2.0 / (seg.size / fs)
            classes[cls].append((amp[int(on * fs):int((on + 1.5) * fs)].max(), peak_f(on),
                                 run, sc, delta(on), zc))
        for cls, v in classes.items():
            if not v:
                continue
            a = np.array(v)
            print(f"{n:>8} {cls:>7} {len(a):3d} | {np.median(a[:, 0]):7.1f} "
                  f"{np.median(a[:, 0]) / med:5.1f} {np.median(a[:, 1]):5.1f} "
                  f"{int(np.sum(a[:, 1] < 11.0)):4d} {np.median(a[:, 2]):5.2f} "
                  f"{int(np.sum(a[:, 2] < 0.4)):6d} {np.median(a[:, 3]):5.1f} "
                  f"{np.median(a[:, 4]):5.2f} {np.median(a[:, 5]):5.1f}")
        e2_only = e2[[not _overlaps(r, e1) for r in e2]] if len(e2) else e2
        for name, ex in (("expert 1", e1), ("E2-only", e2_only)):
            if not len(ex):
                continue
            pk = np.array([amp[int(a * fs):int(b * fs) + 1].max() for a, b in ex])
            print(f"{n:>8} {name:>8}{len(ex):3d} | {np.median(pk):7.1f} {np.median(pk) / med:5.1f}"
                  f" {np.median([peak_f(a) for a, _ in ex]):5.1f} {'':>4} "
                  f"{np.median(ex[:, 1] - ex[:, 0]):5.2f} {'':>6} {'':>5} "
                  f"{np.median([delta(a) for a, _ in ex]):5.2f}   (scored spindles)")
        print(f"{'':>8} expert 1 {len(e1)} and expert 2 {len(e2)} spindles on [0, 1000 s): "
              f"{len(e1) / WINDOW_S * 60:.1f} and {len(e2) / WINDOW_S * 60:.1f} per min; "
              f"median 11-16 Hz amplitude {med:.1f} uV; background relative sigma power "
              f"median {np.median(rel[:away.size][away]):.2f}, 99th percentile "
              f"{np.percentile(rel[:away.size][away], 99):.2f}")


def _spindle_events(rec, settings: SpindleSettings, chunk: int) -> list:
    """Every event of the spindle detector on a loaded recording (``drivers.files``)."""
    s = replace(settings, channels=rec.channels[:1])
    return replay([SpindleDetector(s)], np.ascontiguousarray(rec.samples[:, :1]),
                  rec.timestamps, rec.rate_hz, rec.channels[:1], chunk)


def resampled_rates(data: Path, rates: list[float], chunk: int) -> None:
    """The spindle defaults on excerpts resampled to other rates (``scipy.signal.
    resample_poly``, replayed with ``analysis.scoring.replay``): F1, latency and density
    against expert 1, per excerpt and rate."""
    from fractions import Fraction

    from scipy.signal import resample_poly

    from engramloop.analysis.scoring import replay
    from engramloop.drivers.files import load_file

    print("Spindle defaults on resampled excerpts (vs expert 1, [0, 1000 s)): F1 / latency ms "
          "/ detections per min")
    print(f"{'excerpt':>8} {'native':>6} | " + " | ".join(f"{r:>15g} Hz" for r in rates))
    for n in EXCERPTS:
        edf = data / "dreams_dev" / f"excerpt{n}.edf"
        d = load_file(edf)
        e1 = load_expert(edf.with_name(f"excerpt{n}_expert1.csv"))
        cells = []
        for fs in rates:
            if fs / 2 <= SpindleSettings().sigma_band_hz[1] / 0.9:
                cells.append(f"{'--':>18}")
                continue
            fr = Fraction(fs / d.rate_hz).limit_denominator(1000)
            x = np.ascontiguousarray(resample_poly(d.samples[:, 0], fr.numerator,
                                                   fr.denominator)[:, None])
            t = np.arange(x.shape[0]) / fs
            s = replace(SpindleSettings(), channels=d.channels)
            ev = replay([SpindleDetector(s)], x, t, fs, d.channels, chunk)
            det = np.array([(e.onset_s, e.detect_s) for e in ev if e.kind == "spindle"])
            r = score(det.reshape(-1, 2), e1)
            cells.append(f"{r['F1']:5.2f} / {r['lat'] * 1000:4.0f} / {r['dens']:4.1f}")
        print(f"{n:>8} {d.rate_hz:6g} | " + " | ".join(cells))


#: the grid the spindle defaults were chosen from (the rules' thresholds); --loo picks the
#: best point on three excerpts and scores it on the fourth
LOO_GRID = {"rel_power_min": (0.65, 0.75, 0.85), "threshold_sd": (4.0, 4.5),
            "min_duration_s": (0.12, 0.15, 0.2)}


def _four(data: Path, s: SpindleSettings, chunk: int) -> list[tuple[dict, dict]]:
    """(confirmed, released) scores against expert 1 of each excerpt at settings ``s``."""
    out = []
    for n in EXCERPTS:
        edf = data / "dreams_dev" / f"excerpt{n}.edf"
        e1 = load_expert(edf.with_name(f"excerpt{n}_expert1.csv"))
        confirmed, every = replay_both(edf, s, chunk)
        out.append((score(confirmed, e1, confirm_s=s.confirm_duration_s), score(every, e1)))
    return out


def _ratio(r: dict) -> float:
    return r["dens"] / r["dens_expert"]


#: the optional spindle confirmation (off by default) that --spindle and --loo print
#: beside the defaults
CONFIRM_OPTION_S = 0.4


def _cell(r: list[dict]) -> str:
    """Mean F1 (per excerpt), median latency over all matches, density x expert 1's per
    excerpt, of one row of per-excerpt scores."""
    f1 = [x["F1"] for x in r]
    lat = np.median([v for x in r for v in x["lats"]]) * 1000
    return (f"F1 {np.mean(f1):.3f} ({' '.join(f'{v:.2f}' for v in f1)}) {lat:3.0f} ms "
            f"x[{' '.join(f'{_ratio(x):.2f}' for x in r)}]")


def confirm_side_by_side(data: Path, chunk: int, settings: SpindleSettings | None = None,
                         confirm_s: float = CONFIRM_OPTION_S) -> None:
    """The defaults (``settings``, confirmation off: every released event is scored and a
    pulse may follow each) beside the optional confirmation (``confirm_duration_s`` =
    ``confirm_s``): its scored (confirmed) events, its released ones (what pulses follow:
    the same events as without it) and when a pulse that waited for it would leave."""
    base = replace(settings or SpindleSettings(), confirm_duration_s=0.0)
    off = _four(data, base, chunk)
    on = _four(data, replace(base, confirm_duration_s=confirm_s), chunk)
    print(f"== The optional spindle confirmation (confirm_duration_s {confirm_s:g}, off by "
          "default) beside the defaults, vs expert 1 on [0, 1000 s): mean F1 (per excerpt 1, "
          "3, 5, 7) / median latency / density x expert 1 per excerpt (target 0.5-2)")
    print(f"{'defaults (scored = released = what pulses follow)':58s} "
          f"{_cell([c for c, _ in off])}")
    print(f"{f'option {confirm_s:g} s: scored (confirmed) events':58s} "
          f"{_cell([c for c, _ in on])}")
    print(f"{f'option {confirm_s:g} s: released events (what pulses follow)':58s} "
          f"{_cell([r for _, r in on])}")
    waited = [v for c, _ in on for v in c["lats_confirmed"]]
    print(f"(a pulse that waited for the confirmation would leave a median "
          f"{np.median(waited) * 1000:.0f} ms after the expert's onset; the option delays no "
          "pulse, it only drops the short runs from what is scored)")


def leave_one_out(data: Path, chunk: int) -> None:
    """Leave-one-excerpt-out over :data:`LOO_GRID`: for each excerpt, the grid point with
    the best mean F1 on the other three, scored on it (F1, density against expert 1's,
    latency) -- at the defaults (confirmation off: the released events are scored) and
    with the optional confirmation (``confirm_duration_s`` = :data:`CONFIRM_OPTION_S`, the
    confirmed events scored and chosen on), side by side. One replay per grid point gives
    both: the confirmation changes no released event
    (tests/decoders/test_detect_spindle_real.py checks that on these excerpts)."""
    keys = list(LOO_GRID)
    points = list(itertools.product(*LOO_GRID.values()))
    res = [_four(data, replace(SpindleSettings(), confirm_duration_s=CONFIRM_OPTION_S,
                               **dict(zip(keys, p, strict=True))), chunk)
           for p in points]
    d = SpindleSettings()
    dflt = tuple(getattr(d, k) for k in keys)
    at = points.index(dflt) if dflt in points else None
    print(f"== Spindle leave-one-excerpt-out over {keys} ({len(points)} points), vs expert 1")
    # k = 1: released events (the defaults' scoring); k = 0: confirmed (the option's)
    for k, label in ((1, "defaults (confirmation off, released events scored)"),
                     (0, f"option confirm_duration_s {CONFIRM_OPTION_S:g} (confirmed events "
                         "scored)")):
        f1 = np.array([[x[k]["F1"] for x in r] for r in res])
        held, lats, ratios = [], [], []
        print(f"-- {label}")
        for j, n in enumerate(EXCERPTS):
            others = np.delete(f1, j, axis=1).mean(axis=1)
            best = int(np.argmax(others))
            held.append(f1[best, j])
            got, rel = res[best][j][k], res[best][j][1]
            lats += got["lats"]
            ratios.append(_ratio(got))
            chosen = dict(zip(keys, points[best], strict=True))
            print(f"leave out excerpt {n}: best on the others {chosen} (their mean F1 "
                  f"{others[best]:.2f}) -> excerpt {n}: F1 {f1[best, j]:.2f}, density "
                  f"{_ratio(got):.2f} x expert 1's"
                  + (f" (released, what pulses follow: {_ratio(rel):.2f} x)" if k == 0 else ""))
        print(f"leave-one-out mean F1 {np.mean(held):.2f}, median latency "
              f"{np.median(lats) * 1000:.0f} ms, densities "
              + ", ".join(f"{r:.2f}" for r in ratios) + " x expert 1's"
              + (f"; the defaults' grid point on all four {f1[at].mean():.2f}"
                 if at is not None else ""))


#: single changes from the defaults for the trade-off table (--tradeoff)
TRADEOFF = ({}, {"confirm_duration_s": 0.3}, {"confirm_duration_s": 0.35},
            {"confirm_duration_s": 0.4}, {"confirm_duration_s": 0.45},
            {"confirm_duration_s": 0.5}, {"confirm_duration_s": 0.6},
            {"min_duration_s": 0.25}, {"min_duration_s": 0.3},
            {"min_duration_s": 0.25, "confirm_duration_s": 0.4})


def tradeoff(data: Path, chunk: int) -> None:
    """The trade-off table of issue 20's three spindle targets: mean F1 against expert 1,
    median latency from the expert's onset, each excerpt's density against expert 1's --
    for the confirmed events (what the recording and the scorer keep) and the released ones
    (what a pulse may follow)."""
    print("== Spindle trade-off vs expert 1 on [0, 1000 s): confirmed F1 (per excerpt 1, 3, "
          "5, 7) / median latency / density x expert 1 per excerpt | released the same")
    for change in TRADEOFF:
        r = _four(data, replace(SpindleSettings(), **change), chunk)
        cells = [_cell([x[k] for x in r]) for k in (0, 1)]
        label = ", ".join(f"{k}={v:g}" for k, v in change.items()) or "defaults"
        print(f"{label:50s} {cells[0]} | {cells[1]}")


def reference_phase(x: np.ndarray, fs: float) -> np.ndarray:
    """Offline zero-phase SO phase, degrees (cosine, 0 = up-state peak), per sample.

    x : ndarray, shape (n,), any unit."""
    from scipy.signal import butter, hilbert, sosfiltfilt

    sos = butter(2, (0.5, 1.5), btype="bandpass", fs=fs, output="sos")
    return np.degrees(np.angle(hilbert(sosfiltfilt(sos, x - np.mean(x)))))


def phase_at(ref_deg: np.ndarray, t: np.ndarray, at_s: np.ndarray) -> np.ndarray:
    """The reference phase at times ``at_s`` (seconds), interpolated on the unwrapped
    phase, wrapped to (-180, 180]."""
    u = np.unwrap(np.radians(ref_deg))
    p = np.degrees(np.interp(at_s, t, u))
    return np.mod(p + 180.0, 360.0) - 180.0


def so_triggers(x: np.ndarray, t: np.ndarray, fs: float, channel: str,
                chunk: int = 10, **settings) -> tuple[list, np.ndarray]:
    """SO events of the detector at its defaults (plus ``settings``) on one channel, and
    their finite trigger times (``predicted_s`` inside the recording)."""
    from engramloop.decoders.slow_osc import SlowOscDetector, SlowOscSettings

    s = SlowOscSettings(channels=(channel,), **settings)
    ev = [e for e in replay([SlowOscDetector(s)], np.ascontiguousarray(x[:, None]), t, fs,
                            (channel,), chunk) if e.kind == "so"]
    pred = np.array([e.predicted_s for e in ev], dtype=float)
    return ev, pred[np.isfinite(pred) & (pred <= t[-1])]


def so_phase_table(chunk: int = 10, keep_phases: dict | None = None,
                   **settings) -> list[dict]:
    """One row per recording (and a pooled row over the DREAMS excerpts); the trigger
    phases per excerpt number go into ``keep_phases`` when given."""
    from engramloop.drivers.files import load_edf

    rows, pooled = [], []
    for ex in EXCERPTS:
        path = DREAMS / f"excerpt{ex}.edf"
        d = load_edf(path)
        x, t, fs = d.samples[:, 0], d.timestamps, d.rate_hz
        ev, trig = so_triggers(x, t, fs, d.channels[0], chunk, **settings)
        ph = phase_at(reference_phase(x, fs), t, trig)
        pooled.append(ph)
        if keep_phases is not None:
            keep_phases[ex] = ph
        rows.append(_so_row(f"DREAMS excerpt{ex} ({fs:g} Hz)", len(ev), ph, t[-1] - t[0]))
    rows.append(_so_row("DREAMS pooled", sum(r["events"] for r in rows),
                        np.concatenate(pooled), sum(r["minutes"] for r in rows) * 60.0))
    x = np.loadtxt(DATA / "data_N3_no-spindles_30sec_100Hz.txt") * 1e-6
    t = np.arange(x.size) / 100.0
    ev, trig = so_triggers(x, t, 100.0, "EEG", chunk, **settings)
    rows.append(_so_row("YASA N3 excerpt (100 Hz)", len(ev),
                        phase_at(reference_phase(x, 100.0), t, trig), t[-1] - t[0]))
    return rows


#: the grid of the SO selection rules (predictions only from sharp and deep enough down
#: states); --so-loo prints every point and picks one on three excerpts for the fourth
#: (before the fire-time check the grid was predict_min_hz 0.5-1.1 x sws_gate_ratio 0-3 x
#: max_depth_ratio 0.75/0.6: every fold chose 1 Hz and 2.5-3, held out 40.9 deg pooled)
SO_GRID = {"predict_min_hz": (0.9, 1.0, 1.1), "sws_gate_ratio": (2.0, 2.5, 3.0),
           "confirm_lead_s": (0.0, 0.03, 0.05)}
#: a grid point qualifies only if the N3 excerpt keeps this many triggers per minute of N3
#: (issue 20's target) and each excerpt it is chosen on at least SO_MIN_TRIGGERS triggers
#: (the DREAMS excerpts hold little slow-wave sleep: no rate is asked of them)
SO_MIN_PER_MIN = 1.0
SO_MIN_TRIGGERS = 10


def so_leave_one_out(chunk: int = 10) -> None:
    """The SO selection grid on the DREAMS excerpts and the YASA N3 excerpt, then
    leave-one-excerpt-out: for each excerpt, the point with the lowest pooled circular SD
    on the other three among those that keep >= SO_MIN_PER_MIN triggers per minute of N3
    on the N3 excerpt and >= SO_MIN_TRIGGERS on each of the three, scored on it."""
    from engramloop.decoders.slow_osc import SlowOscSettings

    keys = list(SO_GRID)
    points = list(itertools.product(*SO_GRID.values()))
    print("== SO selection grid: per recording triggers/min, circular mean, SD (deg), "
          "in up-phase; DREAMS excerpts 1, 3, 5, 7, pooled, YASA N3")
    phases: dict = {}
    rows: dict = {}
    for p in points:
        kw = dict(zip(keys, p, strict=True))
        r = so_phase_table(chunk, keep_phases=phases.setdefault(p, {}), **kw)
        rows[p] = r
        print(", ".join(f"{k}={v:g}" for k, v in kw.items()) + ": " + " | ".join(
            f"{x['per_min']:.1f}/{x['mean_deg']:+.0f}/{x['sd_deg']:.0f}/"
            f"{100 * x['up_fraction']:.0f}%" for x in r))
    held = []
    for j, ex in enumerate(EXCERPTS):
        best, best_sd = None, math.inf
        for p in points:
            others = [i for i in range(len(EXCERPTS)) if i != j]
            n3 = rows[p][-1]
            n3_per_min = n3["triggers"] / (n3["minutes"] - SlowOscSettings().calibration_s
                                           / 60.0)
            if (n3_per_min < SO_MIN_PER_MIN
                    or min(rows[p][i]["triggers"] for i in others) < SO_MIN_TRIGGERS):
                continue
            sd = score_phase(np.concatenate([phases[p][EXCERPTS[i]] for i in others]),
                             0.0).sd_phase_deg
            if sd < best_sd:
                best, best_sd = p, sd
        r = rows[best][j]
        held.append(phases[best][ex])
        print(f"leave out excerpt {ex}: best on the others "
              f"{dict(zip(keys, best, strict=True))} (their pooled SD {best_sd:.1f} deg) -> "
              f"excerpt {ex}: {r['per_min']:.1f}/min, mean {r['mean_deg']:+.1f}, SD "
              f"{r['sd_deg']:.1f} deg, {100 * r['up_fraction']:.0f} % in the up-phase")
    sc = score_phase(np.concatenate(held), 0.0)
    print(f"leave-one-out pooled over the held-out excerpts: {sc.n} triggers, mean "
          f"{sc.mean_phase_deg:+.1f} deg, SD {sc.sd_phase_deg:.1f} deg, "
          f"{100 * sc.fraction_in_target_half:.0f} % in the up-phase")


def _so_row(name: str, n_events: int, ph: np.ndarray, duration_s: float) -> dict:
    sc = score_phase(ph, 0.0)
    return {"recording": name, "events": n_events, "triggers": int(ph.size),
            "minutes": duration_s / 60.0, "per_min": ph.size / (duration_s / 60.0),
            "mean_deg": sc.mean_phase_deg, "sd_deg": sc.sd_phase_deg,
            "up_fraction": sc.fraction_in_target_half}


def print_so_table(rows: list[dict], title: str) -> None:
    print(f"== {title}")
    print("| recording | SO events | triggers | triggers/min | circular mean (deg) "
          "| circular SD (deg) | in up-phase |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['recording']} | {r['events']} | {r['triggers']} | {r['per_min']:.1f} | "
              f"{r['mean_deg']:+.1f} | {r['sd_deg']:.1f} | {100 * r['up_fraction']:.0f} % |")


def so_sim_table(seeds: tuple[int, ...] = (0, 1, 2), duration_s: float = 600.0,
                 chunk: int = 10) -> dict:
    """SO trigger phase on the simulator against its noise-free phase (default
    hypnogram, Fz), pooled over seeds."""
    from engramloop.decoders.slow_osc import SlowOscDetector
    from engramloop.sim.generate import simulate

    phases, n_ev = [], 0
    for seed in seeds:
        x, t, truth = simulate(seed=seed, duration_s=duration_s)
        names = tuple(truth.channels)
        ev = [e for e in replay([SlowOscDetector()], x, t, truth.rate_hz, names, chunk)
              if e.kind == "so"]
        n_ev += len(ev)
        pred = np.array([e.predicted_s for e in ev], dtype=float)
        phases.append(truth.phase("so", pred[np.isfinite(pred)]))
    sc = score_phase(np.concatenate(phases), 0.0)
    return {"seeds": seeds, "events": n_ev, "triggers": sc.n, "mean_deg": sc.mean_phase_deg,
            "sd_deg": sc.sd_phase_deg, "up_fraction": sc.fraction_in_target_half}


def ripple_sim_f1(seeds: tuple[int, ...] = (0, 1, 2), duration_s: float = 600.0,
                  chunk: int = 10, **settings) -> dict:
    """Ripple F1 on the simulator at the defaults (plus ``settings``), scored as
    bench/detectors.py scores it (after calibration, by :mod:`analysis.scoring`)."""
    from engramloop.analysis.scoring import score_kind
    from engramloop.decoders.ripple import RippleDetector, RippleSettings
    from engramloop.sim.generate import simulate

    tp = nd = nt = 0
    for seed in seeds:
        x, t, truth = simulate(seed=seed, duration_s=duration_s)
        ev = replay([RippleDetector(RippleSettings(**settings))], x, t, truth.rate_hz,
                    tuple(truth.channels), chunk)
        start = next(e.detect_s for e in ev if e.kind == "calibration_done")
        tr = [e for e in truth.events("ripple") if e.onset_s >= start]
        sc = score_kind("ripple", [e for e in ev if e.kind == "ripple"], tr, t[-1] - start)
        tp, nd, nt = tp + sc.true_positives, nd + sc.n_detected, nt + sc.n_truth
    return {"seeds": seeds, "truth": nt, "detected": nd, "tp": tp,
            "f1": 2 * tp / (nd + nt) if nd + nt else math.nan}


def learn_cost(fs_hz: float = 2000.0, repeats: int = 200) -> dict:
    """Median time (ms) of one learned-timing measurement of the SO detector (the loop
    thread pays it once per predicted up-state, learn_settle_s later): its default 12 s
    window at ``fs_hz`` through ``SlowOscDetector._learn_until``."""
    import time

    from engramloop.decoders.slow_osc import SlowOscDetector, SlowOscSettings

    det = SlowOscDetector(SlowOscSettings(channels=("EEG",)))
    det._setup(fs_hz)
    n = int(20 * fs_hz)
    t = np.arange(n) / fs_hz
    x = np.random.default_rng(0).standard_normal((n, 1)) * 20e-6
    det._remember(x, t)
    times = []
    for _ in range(repeats):
        det._pending[:] = [(t[-1], 0, 0, t[-1] - 4.0, 1.0)]
        t0 = time.perf_counter()
        det._learn_until(t, n - 1, n)
        times.append(time.perf_counter() - t0)
    return {"fs_hz": fs_hz, "median_ms": 1e3 * float(np.median(times)),
            "p99_ms": 1e3 * float(np.percentile(times, 99))}


def ripple_fp_table(chunk: int = 10) -> list[dict]:
    """Ripple detector events on the rat theta recordings (negative controls)."""
    from engramloop.decoders.ripple import RippleDetector, RippleSettings

    rows = []
    for name, fs in (("rat_ca1_theta_1000hz.npy", 1000.0), ("rat_ca1_theta_1250hz.npy", 1250.0),
                     ("rat_ec3_theta_1250hz.npy", 1250.0)):
        x = np.load(DATA / name).astype(np.float64).ravel()
        x = (x - np.median(x))[:, None] * 1e-6     # arbitrary units; thresholds are relative
        t = np.arange(x.shape[0]) / fs
        s = RippleSettings(channels=("LFP",))
        ev = replay([RippleDetector(s)], np.ascontiguousarray(x), t, fs, ("LFP",), chunk)
        cal = [e.detect_s for e in ev if e.kind == "calibration_done"]
        start = cal[0] if cal else math.nan
        rip = [e for e in ev if e.kind == "ripple"]
        scored_min = (t[-1] - start) / 60.0
        rows.append({"file": name, "minutes": t[-1] / 60.0, "events": len(rip),
                     "per_min_scored": len(rip) / scored_min if scored_min > 0 else math.nan,
                     "times": [round(e.detect_s, 1) for e in rip]})
    return rows


def print_ripple_table(rows: list[dict]) -> None:
    print("== ripple false positives on rat theta LFP (no ripples: every event is false), "
          "defaults")
    print("| file | minutes | events | per minute after calibration | event times (s) |")
    print("|---|---:|---:|---:|---|")
    for r in rows:
        times = ", ".join(f"{v:g}" for v in r["times"][:12]) + (
            " ..." if len(r["times"]) > 12 else "")
        print(f"| {r['file']} | {r['minutes']:.1f} | {r['events']} | "
              f"{r['per_min_scored']:.2f} | {times} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spindle", action="store_true", help="the spindle table")
    ap.add_argument("--data", type=Path, default=DATA, help="shared data folder")
    ap.add_argument("--chunk", type=int, default=10, help="samples per replayed chunk")
    ap.add_argument("--no-yasa", action="store_true", help="skip the YASA column")
    ap.add_argument("--loo", action="store_true", help="leave-one-excerpt-out check")
    ap.add_argument("--tradeoff", action="store_true",
                    help="the spindle targets' trade-off table over single setting changes")
    ap.add_argument("--why", action="store_true",
                    help="the spindle detections classed by expert and their features (why "
                         "excerpt 3 over-detects against expert 1)")
    ap.add_argument("--rates", type=lambda v: [float(x) for x in v.split(",")],
                    default=None, metavar="R1,R2,...",
                    help="also run the spindle defaults on the excerpts resampled to these "
                         "rates (Hz)")
    ap.add_argument("--so", action="store_true", help="the SO phase table")
    ap.add_argument("--so-loo", action="store_true",
                    help="the SO selection grid and its leave-one-excerpt-out check")
    ap.add_argument("--so-fired", action="store_true",
                    help="the SO pulses as a real engramloop replay sends them, per chunk "
                         "length (bench/so_fired.py)")
    ap.add_argument("--sim", action="store_true",
                    help="the simulator figures (SO trigger phase, ripple F1)")
    ap.add_argument("--ripple", action="store_true", help="the ripple false-positive table")
    ap.add_argument("--learn-cost", action="store_true",
                    help="time of one learned-timing measurement of the SO detector")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a [detectors.spindle] setting for the spindle table (repeatable; "
                         "a Python literal, e.g. baseline_hold_s=0 or "
                         "broad_band_hz=(1,30))")
    a = ap.parse_args(argv)
    if not (a.data / "dreams_dev").is_dir():
        print(f"error: no dreams_dev folder in {a.data}; pass --data DIR", file=sys.stderr)
        return 2
    everything = not (a.spindle or a.so or a.sim or a.ripple or a.learn_cost or a.so_loo
                      or a.so_fired)
    settings = None
    if a.set:
        import ast

        kw = {}
        for item in a.set:
            key, sep, value = item.partition("=")
            if not sep:
                print(f"error: --set {item!r}: write KEY=VALUE", file=sys.stderr)
                return 2
            kw[key.strip()] = ast.literal_eval(value.strip())
        settings = replace(SpindleSettings(), **kw)
    if a.spindle or everything:
        spindle_table(a.data, a.chunk, with_yasa=not a.no_yasa, settings=settings,
                      label="defaults" + "".join(f", {x}" for x in a.set))
        confirm_side_by_side(a.data, a.chunk, settings)
    if a.why:
        spindle_why(a.data, a.chunk, settings)
    if a.tradeoff:
        tradeoff(a.data, a.chunk)
    if a.rates:
        resampled_rates(a.data, a.rates, a.chunk)
    if a.loo:
        leave_one_out(a.data, a.chunk)
    so_ripple(a.chunk, so=a.so or everything, sim=a.sim or everything,
              ripple=a.ripple or everything, learn=a.learn_cost)
    if a.so_fired:
        import so_fired

        so_fired.fired_table()
    if a.so_loo:
        so_leave_one_out(a.chunk)
    return 0


def so_ripple(chunk: int, *, so: bool, sim: bool, ripple: bool, learn: bool) -> None:
    """The SO, ripple and simulator tables (and the learned-timing cost)."""
    if learn:
        for fs in (200.0, 2000.0):
            r = learn_cost(fs)
            print(f"== SO learned-timing measurement at {fs:g} Hz (12 s window): median "
                  f"{r['median_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms per predicted up-state")
    if so:
        print_so_table(so_phase_table(chunk),
                       "SO up-state triggers vs offline zero-phase reference (0.5-1.5 Hz "
                       "filtfilt + Hilbert; 0 deg = up-state peak), defaults, "
                       f"{chunk}-sample chunks")
    if sim:
        r = so_sim_table(chunk=chunk)
        print(f"== SO on the simulator (seeds {list(r['seeds'])}, 600 s each, defaults): "
              f"{r['events']} events, {r['triggers']} triggers, true phase mean "
              f"{r['mean_deg']:+.1f} deg, circular SD {r['sd_deg']:.1f} deg, "
              f"in up-phase {100 * r['up_fraction']:.1f} %")
    if ripple:
        print_ripple_table(ripple_fp_table(chunk))
    if sim:
        for win in (1.0, None):
            kw = {} if win is None else {"theta_window_s": win}
            r = ripple_sim_f1(chunk=chunk, **kw)
            label = "defaults" if win is None else f"theta_window_s = {win:g} (the old default)"
            print(f"== ripple on the simulator ({label}; seeds {list(r['seeds'])}, 600 s "
                  f"each): truth {r['truth']}, detected {r['detected']}, matched {r['tp']}, "
                  f"F1 {r['f1']:.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
