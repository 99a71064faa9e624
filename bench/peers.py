"""Side by side with peers, on the same data.

1. Spindles: our online detector vs YASA ``spindles_detect`` (offline, whole record,
   Vallat & Walker 2021) on the real N2 excerpt and on the simulator against its truth.
2. Slow-oscillation up-state timing: our predictions (half-wave, fixed 0.5 s delay as in
   Ngo et al. 2013, our ECHT) vs meegkit's ``ECHT`` (Schreglmann et al. 2021) run on the
   4 s window ending at each of our detections, on the simulator's N3; scored with the
   simulator's noise-free SO phase at the predicted up-state.
3. Ripples: our online detector vs ``ripple_detection``'s Kay detector (offline; Kay et al.
   2016) on ``ripple_detection.simulate`` signals: an independent simulator, not ours.

The peers are optional: ``pip install -c constraints.txt '.[bench]'`` (yasa, meegkit,
ripple_detection). A peer that is missing is reported and skipped.

Run: ``.venv/bin/python bench/peers.py``.
"""
from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from engramloop.analysis.scoring import Interval, intervals, replay, score_detections, score_phase  # noqa: E402
from engramloop.decoders.phase import EchtKernel  # noqa: E402
from engramloop.decoders.ripple import RippleDetector, RippleSettings  # noqa: E402
from engramloop.decoders.slow_osc import SlowOscDetector, SlowOscSettings  # noqa: E402
from engramloop.decoders.spindle import SpindleDetector, SpindleSettings  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")


def _peer(name: str):
    import importlib

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except Exception as exc:  # ImportError, or a broken install of a heavy stack
        print(f"  [{name} not available here: {type(exc).__name__}: {exc}; "
              f"install the 'bench' extra]")
        return None


def _row(name: str, sc, latency: bool = True) -> str:
    lat = ("" if not (latency and math.isfinite(sc.latency_onset_median_s)) else
           f"  onset->detect median {1e3 * sc.latency_onset_median_s:6.0f} ms")
    return (f"  {name:<34} P {sc.precision:5.3f}  R {sc.recall:5.3f}  F1 {sc.f1:5.3f}  "
            f"FP/min {sc.fp_per_min:5.2f}{lat}")


# ------------------------------------------------------------------ spindles

def yasa_spindles(yasa, x_uv: np.ndarray, fs: float,
                  freq_sp: tuple[float, float] = (12, 15)) -> list[tuple[float, float]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = yasa.spindles_detect(x_uv, sf=fs, freq_sp=freq_sp, verbose=False)
    if res is None:  # YASA returns None when it finds nothing
        return []
    df = res.summary()
    return list(zip(df["Start"].astype(float), df["End"].astype(float), strict=True))


def bench_spindles() -> None:
    print("== spindles: ours (online, causal) vs YASA spindles_detect (offline)")
    yasa = _peer("yasa")
    # real N2 excerpt (YASA's own example data)
    path = DATA / "data_N2_spindles_15sec_200Hz.txt"
    if path.is_file():
        x = np.loadtxt(path)
        t = np.arange(x.size) / 200.0
        short = SpindleSettings(channels=("EEG",), calibration_s=2.0, baseline_update_s=0.5)
        ours = [e for e in replay([SpindleDetector(short)],
                                  np.ascontiguousarray(x[:, None] * 1e-6), t, 200.0,
                                  ("EEG",), 10) if e.kind == "spindle"]
        print("  real N2 excerpt (15 s): ours onset/detect (s): "
              + ", ".join(f"{e.onset_s:.2f}/{e.detect_s:.2f}" for e in ours))
        if yasa is not None:
            print("  real N2 excerpt: YASA start-end (s): "
                  + ", ".join(f"{a:.2f}-{b:.2f}" for a, b in yasa_spindles(yasa, x, 200.0)))
    # simulator, 600 s, Cz, against truth
    from scipy.signal import resample_poly

    from engramloop.sim.generate import simulate

    x, t, truth = simulate(seed=5, duration_s=600.0)
    names = tuple(truth.channels)
    ev = replay([SpindleDetector()], x, t, truth.rate_hz, names, 10)
    cal = next(e.detect_s for e in ev if e.kind == "calibration_done")
    tr = intervals([e for e in truth.events("spindle") if e.onset_s >= cal])
    ours = score_detections([e.detect_s for e in ev if e.kind == "spindle"], tr, t[-1] - cal)
    print(f"  simulator seed 5, 600 s (N2/N3/REM/wake), Cz, {len(tr)} true spindles:")
    print(_row("ours (online, at detection time)", ours))
    if yasa is not None:
        cz = x[:, names.index("Cz")] * 1e6
        fs_y = 200.0
        y = resample_poly(cz, 1, int(truth.rate_hz // fs_y))
        for band in ((12, 15), (11, 16)):
            sp = [(a, b) for a, b in yasa_spindles(yasa, y, fs_y, band) if a >= cal]
            # offline: score by the middle of YASA's event (it has no detection time)
            mids = [0.5 * (a + b) for a, b in sp]
            print(_row(f"YASA {band[0]}-{band[1]} Hz (offline, all)",
                       score_detections(mids, tr, t[-1] - cal), latency=False))


# ------------------------------------------------------------------ slow oscillations

def bench_so() -> None:
    print("== slow-oscillation up-state timing: ours vs meegkit ECHT "
          "(simulator N3, truth phase at the predicted up-state; 0 deg = up-state peak)")
    meegkit_phase = _peer("meegkit.phase")
    from engramloop.sim.generate import simulate

    x, t, truth = simulate(seed=6, duration_s=300.0)
    names = tuple(truth.channels)
    fs = truth.rate_hz
    rows = {}
    for mode in ("halfwave", "fixed", "echt"):
        ev = [e for e in replay([SlowOscDetector(SlowOscSettings(predict=mode))], x, t, fs,
                                names, 10) if e.kind == "so"]
        pred = np.array([e.predicted_s for e in ev])
        rows[mode] = (score_phase(truth.phase("so", pred[np.isfinite(pred)])), len(ev))
        if mode == "halfwave":
            detections = ev
    label = {"halfwave": "ours: half-wave (default)", "fixed": "ours: fixed 0.5 s (Ngo 2013)",
             "echt": "ours: ECHT kernel (compensated)"}
    if meegkit_phase is not None:
        col = x[:, names.index("Fz")]
        n_win = int(4.0 * fs)
        q = 8                               # meegkit ECHT on 250 Hz windows (fast FFT)
        kern = EchtKernel(fs / q, (0.5, 1.25), 4.0, 1, compensate=False)
        preds, agree = [], []
        echt = meegkit_phase.ECHT(0.5, 1.25, fs / q)
        for e in detections:
            j = int(np.searchsorted(t, e.detect_s))
            if j + 1 < n_win:
                continue
            win = col[j + 1 - n_win:j + 1:q][:, None]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                a = echt.fit_transform(win)[:, 0]
            ph = float(np.angle(a[-1]))
            f = float(np.angle(a[-1] * np.conj(a[-2]))) * (fs / q) / (2 * math.pi)
            f = min(max(f, 0.5), 1.25)
            preds.append(e.detect_s + ((-ph) % (2 * math.pi)) / (2 * math.pi * f))
            # the same window through our precomputed kernel: identical ECHT value
            kern.reset()
            kern.write(np.ascontiguousarray(win[-kern.n:]))
            agree.append(abs((kern.analytic()[0][0] - math.degrees(ph) + 180) % 360 - 180))
        rows["meegkit"] = (score_phase(truth.phase("so", np.array(preds))), len(preds))
        label["meegkit"] = "meegkit ECHT (4 s window at detection)"
        print(f"  our ECHT kernel (uncompensated) vs meegkit ECHT on the same windows: median "
              f"|phase diff| {np.median(agree):.1f} deg. meegkit evaluates the causal filter's "
              f"response at bin frequencies rounded up to whole Hz (np.ceil), which for a "
              f"0.5-1.25 Hz band is far from the filter the paper applies; ours uses the "
              f"exact bin frequencies (tests/decoders/test_phase.py checks it against the FFT "
              f"recipe).")
    for k, (ph, n) in rows.items():
        up = 100 * ph.fraction_in_target_half
        print(f"  {label[k]:<40} n {ph.n:4d}/{n:<4d} mean {ph.mean_phase_deg:+6.1f} deg  "
              f"circ SD {ph.sd_phase_deg:5.1f} deg  up-phase {up:5.1f} %")


# ------------------------------------------------------------------ ripples

def bench_ripples() -> None:
    print("== ripples on ripple_detection.simulate signals (independent simulator): "
          "ours (online) vs Kay detector (offline)")
    rd = _peer("ripple_detection")
    if rd is None:
        return
    from ripple_detection.simulate import brown, simulate_LFP, simulate_time

    fs = 1500.0                      # ripple_detection's band filter is designed for 1500 Hz
    rng = np.random.default_rng(0)
    dur = 300.0
    time = simulate_time(int(dur * fs), fs)
    centres = np.cumsum(rng.uniform(0.6, 1.8, int(dur)))
    centres = centres[(centres > 6.0) & (centres < dur - 1.0)]
    for amp in (2.0, 1.5):
        # simulate_LFP draws its noise from an unseeded RandomState; to make the run
        # repeatable we add the same noise (its brown(), scaled as simulate_LFP scales it:
        # noise_amplitude / 2) from a seeded one
        lfp = simulate_LFP(time, list(centres), ripple_amplitude=amp, ripple_duration=0.1,
                           noise_type="brown", noise_amplitude=0.0)
        lfp = lfp + (1.3 / 2) * brown(time.size, state=np.random.RandomState(1))
        truth = [Interval(c - 0.05, c + 0.05, c) for c in centres]
        ev = replay([RippleDetector(RippleSettings(channels=("LFP",), theta_gate=False))],
                    np.ascontiguousarray(lfp[:, None]), time, fs, ("LFP",), 10)
        cal = next(e.detect_s for e in ev if e.kind == "calibration_done")
        tr = [i for i in truth if i.onset_s >= cal]
        ours = score_detections([e.detect_s for e in ev if e.kind == "ripple"], tr, dur - cal)
        print(f"  ripple_amplitude {amp} / noise 1.3 (brown), {len(tr)} ripples, 100 ms:")
        print(_row("ours (online, at detection time)", ours))
        filt = rd.filter_ripple_band(lfp[:, None])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = rd.Kay_ripple_detector(time, filt, np.zeros(time.size), fs)
        starts = [float(s) for s in df["start_time"] if s >= cal]
        print(_row("Kay (offline; its start time)",
                   score_detections(starts, tr, dur - cal, tol_before_s=0.05)))


def main() -> int:
    bench_ripples()
    bench_spindles()
    bench_so()
    return 0


if __name__ == "__main__":
    sys.exit(main())
