"""The report reads the signal in blocks and windows, never a whole stream: its running
spectrogram equals scipy's on the whole signal, its event-locked windows equal indexing
the whole channel (and, band-passed with padding, scipy's zero-phase filter of the whole
channel), and a report of a real `engramloop sim` recording reads no stream whole."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import signal as sps

from engramloop.analysis.report import signals as rs
from engramloop.analysis.report import write_report
from engramloop.analysis.report.recording import load_recording
from engramloop.recording import reader, xdf, xdf_blocks


@pytest.mark.parametrize("block", [7, 64, 1000, 10**9])
def test_running_spectrogram_equals_scipy_on_the_whole_signal(block):
    rng = np.random.default_rng(0)
    fs = 200.0
    x = rng.normal(size=7460) + np.sin(2 * np.pi * 12 * np.arange(7460) / fs)
    spec = rs.RunningSpectrogram(fs, int(4 * fs), 0.5, 30.0)
    for i in range(0, x.size, block):
        spec.add(x[i:i + block])
    f, t, sxx = spec.result()
    rf, rt, rsxx = sps.spectrogram(x, fs, nperseg=800, noverlap=400, scaling="density")
    keep = (rf >= 0.5) & (rf <= 30.0)
    np.testing.assert_allclose(f, rf[keep])
    np.testing.assert_allclose(t, rt)
    np.testing.assert_allclose(sxx, rsxx[keep], rtol=1e-10, atol=1e-14)


@pytest.fixture(scope="module")
def chunked(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """An engramloop recording in 1-s chunks (every stamp written), 250 Hz, 2 channels."""
    path = tmp_path_factory.mktemp("rec") / "r.xdf"
    rng = np.random.default_rng(1)
    fs, n = 250.0, 250 * 120
    t = 1000.0 + np.arange(n) / fs
    x = rng.normal(size=(n, 2)) * 1e-5
    parts = [xdf.file_header("<engramloop><schema_version>1</schema_version></engramloop>"),
             xdf.stream_header(1, name="engramloop.raw", stream_type="EEG",
                               channels=["C3", "C4"], rate_hz=fs,
                               channel_format="double64", units="V")]
    parts += [xdf.numeric_samples(1, x[i:i + 250], t[i:i + 250]) for i in range(0, n, 250)]
    path.write_bytes(b"".join(parts))
    return path, t, x


def test_locked_windows_equal_indexing_the_whole_channel(chunked):
    path, t, x = chunked
    rec = load_recording(path)
    sig = rec.signals[0]
    # near both edges, inside, overlapping neighbours, between samples
    times = np.array([1000.0, 1000.5, 1010.0, 1010.3, 1010.3001, 1050.123, 1119.9, 1119.99])
    nb, na = 100, 150
    kept, got = rs.locked(sig, 1, times, nb, na, {"raw": lambda v: v}, pad=0.0)
    c = np.searchsorted(t, times)
    ok = (c - nb > 0) & (c + na < t.size)
    np.testing.assert_array_equal(kept, times[ok])
    want = x[:, 1][c[ok][:, None] + np.arange(-nb, na + 1)[None, :]]
    np.testing.assert_array_equal(got["raw"], want)
    # band-passed in padded windows: scipy's zero-phase filter of the whole channel
    band = (11.0, 16.0)
    kept, got = rs.locked(sig, 1, times, nb, na,
                          {"bp": lambda v: rs.bandpass(v, band, 250.0)}, pad=rs.pad_s(band))
    whole = rs.bandpass(x[:, 1], band, 250.0)
    inner = (kept > 1000.0 + 2) & (kept < 1120.0 - 2)
    ref = whole[np.searchsorted(t, kept[inner])[:, None] + np.arange(-nb, na + 1)[None, :]]
    scale = np.abs(ref).max()
    np.testing.assert_allclose(got["bp"][inner], ref, rtol=0, atol=1e-3 * scale)
    # the phase at a moment (the phase section): scipy's filter and Hilbert transform of
    # the whole channel, within a degree
    kept, got = rs.locked(sig, 1, times, 0, 0,
                          {"ph": lambda v: rs.phase_and_envelope(v, band, 250.0)[0]},
                          pad=rs.pad_s(band))
    from scipy.signal import hilbert

    whole = np.degrees(np.angle(hilbert(rs.bandpass(x[:, 1], band, 250.0))))
    inner = (kept > 1000.0 + 2) & (kept < 1120.0 - 2)
    want = whole[np.searchsorted(t, kept[inner])]
    err = (got["ph"][inner, 0] - want + 180.0) % 360.0 - 180.0
    assert inner.sum() >= 4 and np.abs(err).max() < 1.0


def test_locked_moments_equal_numpy_over_the_whole_channel(chunked, monkeypatch):
    path, t, x = chunked
    sig = load_recording(path).signals[0]
    monkeypatch.setattr(rs, "LOCKED_BATCH", 3)          # several batches
    times = np.linspace(1001.0, 1118.0, 17)
    nb, na = 50, 80
    n, mom = rs.locked_moments(sig, 0, times, nb, na, {"a": lambda v: v, "b": lambda v: v},
                               pad=0.0, remove={"a": "mean", "b": "baseline"})
    seg = x[:, 0][np.searchsorted(t, times)[:, None] + np.arange(-nb, na + 1)[None, :]]
    a = seg - seg.mean(axis=1, keepdims=True)
    b = seg - seg[:, :nb].mean(axis=1, keepdims=True)
    assert n == times.size
    np.testing.assert_allclose(mom["a"][0], a.mean(0), rtol=1e-9, atol=1e-20)
    np.testing.assert_allclose(mom["a"][1], a.std(0), rtol=1e-6)
    np.testing.assert_allclose(mom["b"][0], b.mean(0), rtol=1e-9, atol=1e-20)
    np.testing.assert_allclose(mom["b"][1], b.std(0), rtol=1e-6)


def test_a_report_of_a_sim_recording_reads_no_stream_whole(tmp_path, monkeypatch):
    out = tmp_path / "s.xdf"
    subprocess.run([sys.executable, "-m", "engramloop", "sim", "--duration", "40", "--out",
                    str(out), "--quiet"], check=True, env=dict(os.environ))

    def refuse(*a, **k):
        raise AssertionError("the report loaded a whole stream")

    monkeypatch.setattr(reader, "read", refuse)
    monkeypatch.setattr(reader, "signal_stream", refuse)
    biggest = []
    real = xdf_blocks.XdfFile.blocks

    def counting(self, *a, **k):
        for t, x in real(self, *a, **k):
            biggest.append(t.size)
            yield t, x

    monkeypatch.setattr(xdf_blocks.XdfFile, "blocks", counting)
    res = write_report(out, tmp_path / "rep")
    assert res.index.is_file() and (tmp_path / "rep" / "spectrogram.png").is_file()
    n = load_recording(out).signals[0].n
    assert biggest and max(biggest) <= xdf_blocks.BLOCK_SAMPLES < n
