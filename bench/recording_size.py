"""Recording size: bytes per sample and channel, the schema 1 layout against schema 2.

Two sources, each read once, every chunk going to two recorders side by side:

- the simulator, 8 channels at 2 kHz (a rodent night; it declares float32);
- an 8-channel, 250 Hz EDF (an OpenBCI night: real N2 EEG from shared/data tiled onto 8
  channels, written by pyedflib; 16-bit EDF declares float32) replayed by ``FileSource``
  at ``--speed max``, as ``engramloop replay --record`` does.

The two recorders:

- **schema 1 layout**: float64 values and an 8-byte timestamp on every sample (what
  ``--record`` wrote before schema version 2: ``Recorder(stamp_every_s=1e-9,
  timestamp_tolerance=0)`` and a float64 stream);
- **schema 2**: the recorder's defaults with the source's declared ``sample_format``
  (the simulator declares float32) and timestamps stored only where an XDF reader could
  not deduce them (see ``engramloop.recording.xdf.stamp_mask``).

The simulator's files get its truth markers too, as ``engramloop sim --out X.xdf`` writes
them. Printed: file size, bytes per sample-channel, and the file's size over the float32
size of its samples (the issue's aim: <= 1.5). Then pyxdf loads the new file and its
samples and times are compared with what was recorded. Last, the writer thread's cost of
encoding one second of 8 channels at 2 kHz (median of 5 x 20), both layouts, with
regular stamps and with stamps jittered by +-1 ms (every sample then keeps its own).

    .venv/bin/python bench/recording_size.py [--minutes 60]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def sim_source(minutes: float, folder: Path):
    from engramloop.sim.settings import SimSettings
    from engramloop.sim.source import SimSource

    return SimSource(SimSettings(), seed=1, chunk_samples=200, duration_s=minutes * 60.0)


def edf_source(minutes: float, folder: Path):
    """8 channels at 250 Hz of real N2 EEG (tiled), as a 16-bit EDF, replayed."""
    import pyedflib

    from engramloop.drivers.files import FileSource

    data = ROOT.parent / "shared" / "data" / "data_N2_spindles_15sec_200Hz.txt"
    if not data.is_file():
        data = Path("/work/shared/data/data_N2_spindles_15sec_200Hz.txt")
    x = np.loadtxt(data)
    rate, n = 250, int(minutes * 60 * 250)
    path = folder / "night.edf"
    w = pyedflib.EdfWriter(str(path), 8, file_type=pyedflib.FILETYPE_EDFPLUS)
    lim = float(np.ceil(np.abs(x).max() * 1.1))
    w.setSignalHeaders([{"label": f"EEG{i + 1}", "dimension": "uV", "sample_frequency": rate,
                         "physical_max": lim, "physical_min": -lim, "digital_max": 32767,
                         "digital_min": -32768} for i in range(8)])
    w.writeSamples([np.resize(np.roll(x, 37 * i), n) for i in range(8)])
    w.close()
    print(f"  (EDF written by pyedflib: {path.stat().st_size / 1e6:.1f} MB)")
    src = FileSource(path, speed="max", chunk_samples=25)
    src.edf_bytes = path.stat().st_size
    return src


def one_source(make, minutes: float, folder: Path, check: bool) -> None:
    from engramloop.controller.recorder import Recorder
    from engramloop.core.chunk import EndOfStream

    src = make(minutes, folder)
    rate = src.rate_hz
    old_path, new_path = folder / f"v1-{rate:g}.xdf", folder / f"v2-{rate:g}.xdf"
    old = Recorder(old_path, "", stamp_every_s=1e-9, timestamp_tolerance=0.0)
    new = Recorder(new_path, "")
    old.add_signal_stream(src, sample_format="float64")
    new.add_signal_stream(src)
    keep_x, keep_t = [], []
    n = 0
    t0 = time.perf_counter()
    for rec in (old, new):
        rec.start()
    src.start()
    while True:
        try:
            c = src.read(0.0)
        except EndOfStream:
            break
        for rec in (old, new):
            rec.write_chunk(c)
        if check and n < rate * 120:      # the first 2 minutes, to compare with pyxdf
            keep_x.append(c.samples)
            keep_t.append(c.timestamps)
        n += c.n_samples
    src.stop()
    for ev in (src.truth.events() if hasattr(src, "truth") else []):
        for rec in (old, new):
            rec.write_marker("truth", ev.onset_s, ev)
    for rec in (old, new):
        rec.close()
    wall = time.perf_counter() - t0
    n_ch = len(src.channels)
    f32 = n * n_ch * 4
    print(f"{type(src).__name__}: {n_ch} channels at {rate:g} Hz, {minutes:g} min ({n} "
          f"samples; read and written to both in {wall:.1f} s)")
    for what, path in (("schema 1 layout (float64, stamp per sample)", old_path),
                       (f"schema 2 ({src.sample_format}, stamps where needed)", new_path)):
        size = path.stat().st_size
        print(f"  {what:46s} {size / 1e6:9.1f} MB  {size / (n * n_ch):6.2f} B/sample-channel"
              f"  {size / f32:5.2f}x float32 samples")
    print(f"  ratio schema 1 / schema 2: {old_path.stat().st_size / new_path.stat().st_size:.2f}")
    if hasattr(src, "edf_bytes"):
        print(f"  over the EDF's own size: schema 1 layout "
              f"{old_path.stat().st_size / src.edf_bytes:.2f}x, schema 2 "
              f"{new_path.stat().st_size / src.edf_bytes:.2f}x")
    if check:
        import pyxdf

        streams, _ = pyxdf.load_xdf(str(new_path), select_streams=[{"name": "engramloop.raw"}],
                                    synchronize_clocks=False, dejitter_timestamps=False)
        s = streams[0]
        x, t = np.concatenate(keep_x), np.concatenate(keep_t)
        m = len(t)
        dx = np.abs(s["time_series"][:m] - x).max() / np.abs(x).max()
        dt = np.abs(s["time_stamps"][:m] - t).max()
        print(f"  pyxdf reads the schema 2 file: format {s['info']['channel_format'][0]}, first "
              f"{m} samples: max |x - recorded| / max|x| = {dx:.1e}, max |t - recorded| = "
              f"{dt:.1e} s ({dt * rate:.1e} sample periods)")
    old_path.unlink()
    new_path.unlink()


def encode_cost() -> None:
    import timeit

    from engramloop.recording import xdf

    rate, n = 2000.0, 2000
    x = np.random.default_rng(0).normal(size=(n, 8))
    regular = 12345.6 + np.arange(n) / rate
    jittered = regular + np.random.default_rng(1).uniform(-1e-3, 1e-3, n)

    def v1(t):
        return xdf.numeric_samples(1, x, t)

    def v2(t):
        keep = xdf.stamp_mask(t, rate, tolerance_s=0.01 / rate, max_run=int(rate))
        return xdf.numeric_samples(1, x, t, dtype="<f4", keep=keep)

    print("encoding 1 s of 8 channels at 2 kHz (writer thread), median of 5 x 20:")
    for what, f, t in (("schema 1 layout", v1, regular), ("schema 2, regular stamps", v2,
                                                         regular),
                       ("schema 2, stamps jittered +-1 ms", v2, jittered)):
        runs = timeit.repeat(lambda f=f, t=t: f(t), number=20, repeat=5)
        print(f"  {what:34s} {np.median(runs) / 20 * 1e6:7.0f} us  ({len(f(t))} bytes)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--no-check", action="store_true", help="skip the pyxdf read-back")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="engramloop-size-") as tmp:
        for make in (sim_source, edf_source):
            one_source(make, args.minutes, Path(tmp), not args.no_check)
    encode_cost()


if __name__ == "__main__":
    main()
