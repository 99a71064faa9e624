"""Slow-oscillation pulses as a user gets them: the phase of the pulses a real
``engramloop replay`` sends, read back from its recording.

Each DREAMS development excerpt (shared/data/dreams_dev, C3-A1, 50-200 Hz; Devuyst et al.,
IEEE EMBC 2011) and the YASA N3 excerpt (shared/data, 30 s at 100 Hz, written to EDF+ with
pyedflib) is replayed by an ``engramloop replay --speed max`` process with an SO up-state
click policy (``so_upstate``, one click at the predicted up state; auditory, sham output:
every decision made, reviewed by the safety governor and scheduled, nothing sent) at the
detector's defaults, per source chunk length: 10 samples (50-200 ms at these rates), 20 ms
and 40 ms. The recording is read back with pyxdf: each delivered pulse's ``sent_s`` (on
the signal's clock) and the raw signal. Its phase comes from an offline zero-phase
reference computed on the recorded signal: 0.5-1.5 Hz Butterworth (order 2 per edge)
forward and backward (``scipy.signal.sosfiltfilt``), then ``scipy.signal.hilbert``;
cosine phase, 0 deg = up-state peak, +-180 deg = trough; in up-phase = within +-90 deg.
Issue 20's targets: circular mean within +-15 deg, circular SD <= 35 deg, >= 85 % in the
up-phase; >= 1 trigger per minute of N3 on the N3 excerpt.

Late: a pulse sent after the up state its event predicted (``predicted_s`` of the event
the pulse's ``detect_s`` names): the event reached the policy after that time.

Two safety settings: the defaults (``auditory_lockout_s`` = 2.5 s refuses a click within
2.5 s of the last, as Ngo et al. 2013 paused) -- the pulses a user gets -- and the lockout
off, so every trigger the policy proposes is delivered and scored.

Run: ``PYTHONPATH=src python bench/so_fired.py`` (or ``bench/real_eeg.py --so-fired``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from engramloop.analysis.scoring import score_phase  # noqa: E402

DATA = ROOT.parents[0] / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")
DREAMS = DATA / "dreams_dev"
EXCERPTS = (1, 3, 5, 7)
N3 = DATA / "data_N3_no-spindles_30sec_100Hz.txt"
#: source chunk lengths: samples (int) or seconds (float)
CHUNKS = (10, 0.02, 0.04)

CONFIG = """name = "so-fired"
[source]
kind = "file"
chunk_samples = {chunk}
[detectors.ripple]
enabled = false
[detectors.spindle]
enabled = false
[detectors.so]
channels = ["{channel}"]
[policy]
target = "so_upstate"
[policy.pulse]
modality = "auditory"
shape = "monophasic"
amplitude = 50.0
phase_width_s = 0.05
channel = 1
[safety]
arm_on_start = true
modalities = ["auditory"]
auditory_max_db_spl = 60.0
auditory_lockout_s = {lockout}
[stimulators]
kinds = ["sham"]
"""


def reference_phase(x: np.ndarray, fs: float) -> np.ndarray:
    """Offline zero-phase SO phase, degrees (cosine, 0 = up-state peak), per sample.
    x : ndarray, shape (n,), any unit."""
    from scipy.signal import butter, hilbert, sosfiltfilt

    sos = butter(2, (0.5, 1.5), btype="bandpass", fs=fs, output="sos")
    return np.degrees(np.angle(hilbert(sosfiltfilt(sos, x - np.mean(x)))))


def phase_at(ref_deg: np.ndarray, t: np.ndarray, at_s: np.ndarray) -> np.ndarray:
    """The reference phase at ``at_s`` (s), interpolated on the unwrapped phase."""
    u = np.unwrap(np.radians(ref_deg))
    return np.mod(np.degrees(np.interp(at_s, t, u)) + 180.0, 360.0) - 180.0


def n3_edf(folder: Path) -> Path:
    """The YASA N3 excerpt (text, uV, 100 Hz) as an EDF+ file in ``folder``."""
    import pyedflib

    x = np.loadtxt(N3)
    path = folder / "n3.edf"
    with pyedflib.EdfWriter(str(path), 1, pyedflib.FILETYPE_EDFPLUS) as w:
        w.setSignalHeaders([{"label": "EEG", "dimension": "uV", "sample_frequency": 100.0,
                             "physical_min": -500.0, "physical_max": 500.0,
                             "digital_min": -32768, "digital_max": 32767}])
        w.writeSamples([x])
    return path


def edf_channel(path: Path) -> tuple[str, float]:
    import pyedflib

    with pyedflib.EdfReader(str(path)) as r:
        return r.getLabel(0).strip(), float(r.getSampleFrequency(0))


def replay_fired(path: Path, chunk: int, folder: Path, lockout_s: float = 2.5) -> dict:
    """Replay ``path`` in chunks of ``chunk`` samples through a real ``engramloop
    replay`` process; the pulses' phases and lateness read back from its recording."""
    import pyxdf

    channel, _ = edf_channel(path)
    cfg = folder / "so.toml"
    cfg.write_text(CONFIG.format(chunk=chunk, channel=channel, lockout=lockout_s),
                   encoding="utf-8")
    rec = folder / "run.xdf"
    rec.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-m", "engramloop", "replay", str(cfg), str(path),
                        "--speed", "max", "--quiet", "--record", str(rec)],
                       capture_output=True, text=True, env=env, timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"engramloop replay {path.name} failed: {p.stderr.strip()}")
    streams, _ = pyxdf.load_xdf(str(rec), synchronize_clocks=False,
                                dejitter_timestamps=False)
    by = {s["info"]["name"][0]: s for s in streams}
    raw = by["engramloop.raw"]
    t = np.asarray(raw["time_stamps"], dtype=float)
    x = np.asarray(raw["time_series"], dtype=float)[:, 0]
    fs = float(raw["info"]["nominal_srate"][0])
    events = [json.loads(v[0]) for v in by["engramloop.events"]["time_series"]]
    predicted = {e["detect_s"]: e["predicted_s"] for e in events if e["kind"] == "so"
                 and e["predicted_s"] is not None}
    sent, late = [], []
    for v in by["engramloop.pulses"]["time_series"]:
        r = json.loads(v[0])
        d = r.get("delivery") or {}
        if d.get("status") != "sham" or d.get("sent_s") is None:
            continue
        s = float(d["sent_s"])
        if s > t[-1]:
            continue                      # after the recording's end: no phase there
        sent.append(s)
        late.append(s - float(predicted.get(r["pulse"]["detect_s"], s)))
    sent = np.array(sent)
    cal = [e["detect_s"] for e in events if e["kind"] == "calibration_done"]
    return {"phases": phase_at(reference_phase(x, fs), t, sent), "late_s": np.array(late),
            "minutes": (t[-1] - t[0]) / 60.0,
            "minutes_after_cal": (t[-1] - (cal[0] if cal else t[0])) / 60.0,
            "so_events": sum(e["kind"] == "so" for e in events)}


def _row(name: str, r: dict) -> str:
    sc = score_phase(r["phases"], 0.0)
    lt = r["late_s"]
    late = (f"{100 * np.mean(lt > 0):.0f} %"
            + (f" (median {1e3 * np.median(lt[lt > 0]):.0f} ms)" if (lt > 0).any() else ""))
    sd = f"{sc.sd_phase_deg:.1f}" if r["phases"].size > 1 else "-"
    return (f"| {name} | {r['phases'].size} | {r['phases'].size / r['minutes_after_cal']:.1f} "
            f"| {sc.mean_phase_deg:+.1f} | {sd} "
            f"| {100 * sc.fraction_in_target_half:.0f} % | {late} |")


def fired_table(chunks=CHUNKS, lockouts=(2.5, 0.0)) -> dict:
    """Print one table per safety setting and chunk length; returns the pooled scores."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        recs = [(f"DREAMS excerpt{ex}", DREAMS / f"excerpt{ex}.edf") for ex in EXCERPTS]
        recs.append(("YASA N3 excerpt", n3_edf(folder)))
        for lockout in lockouts:
            for c in chunks:
                rows, pooled = [], {"phases": [], "late_s": [], "minutes_after_cal": 0.0}
                for name, path in recs:
                    _, fs = edf_channel(path)
                    n = c if isinstance(c, int) else max(1, int(round(c * fs)))
                    r = replay_fired(path, n, folder, lockout)
                    rows.append(_row(f"{name} ({fs:g} Hz, {n}-sample chunks)", r))
                    if name.startswith("DREAMS"):
                        for k in ("phases", "late_s"):
                            pooled[k].append(r[k])
                        pooled["minutes_after_cal"] += r["minutes_after_cal"]
                pooled = {k: np.concatenate(v) if isinstance(v, list) else v
                          for k, v in pooled.items()}
                rows.insert(len(EXCERPTS), _row("DREAMS pooled", pooled))
                what = f"{c}-sample" if isinstance(c, int) else f"{c * 1e3:g} ms"
                print(f"== SO pulses as sent by engramloop replay, {what} chunks, "
                      f"auditory_lockout_s = {lockout:g}")
                print("| recording | pulses | pulses/min | circular mean (deg) "
                      "| circular SD (deg) | in up-phase | late |")
                print("|---|---:|---:|---:|---:|---:|---:|")
                print("\n".join(rows), flush=True)
                out[(lockout, c)] = score_phase(pooled["phases"], 0.0)
    return out


def main() -> int:
    if not DREAMS.is_dir():
        print(f"error: no DREAMS excerpts in {DREAMS}", file=sys.stderr)
        return 2
    fired_table()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
