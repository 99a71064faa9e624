"""A recording cut off inside a chunk says so when read, instead of reading as a short or
empty run.

A copy interrupted mid-transfer, a full disk or a crash inside a write leaves an XDF file
that ends part-way through a chunk. pyxdf (the independent reader here) drops that
chunk and only logs it; before this test the one reader (``recording.reader.read``, used
by score, sweep and training) and ``read_recording`` returned whatever was left with no
sign anything was missing -- an empty signal when the cut fell inside the one big
raw-data chunk -- and ``engramloop report`` on such a file died with an IndexError
traceback. The reader now warns (``RecordingDamageWarning``, one ``warning:`` line in the
CLI); ``read_recording`` and ``report`` refuse such a file naming the byte offset (the
files helper's ``check_xdf``). The recordings are written by a real ``engramloop sim``.
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import pyxdf

import engramloop
from engramloop.recording import reader
from engramloop.recording.reader import RecordingDamageWarning


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rec") / "s.xdf"
    subprocess.run([sys.executable, "-m", "engramloop", "sim", "--duration", "5", "--out",
                    str(out), "--quiet"], check=True, env=dict(os.environ))
    return out


def chunks(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, tag, end) of every chunk, walked by the XDF 1.0 layout."""
    off, out = 4, []
    while off < len(data):
        nb = data[off]
        length = int.from_bytes(data[off + 1:off + 1 + nb], "little")
        tag = struct.unpack("<H", data[off + 1 + nb:off + 3 + nb])[0]
        out.append((off, tag, off + 1 + nb + length))
        off += 1 + nb + length
    return out


def cut(src: Path, dst: Path, at: int) -> Path:
    dst.write_bytes(src.read_bytes()[:at])
    return dst


def pyxdf_counts(path: Path) -> dict[str, int]:
    streams, _ = pyxdf.load_xdf(str(path), synchronize_clocks=False,
                                dejitter_timestamps=False)
    return {s["info"]["name"][0]: len(s["time_stamps"]) for s in streams}


def test_an_intact_recording_reads_without_a_damage_warning(recording):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecordingDamageWarning)
        rec = engramloop.read_recording(recording)
    assert rec.signal().x.shape[0] == pyxdf_counts(recording)["engramloop.raw"]


def test_a_recording_cut_inside_a_chunk_warns_naming_the_byte_and_keeps_the_rest(
        recording, tmp_path):
    data = recording.read_bytes()
    # the first samples chunk after the raw data: the cut loses it, keeps the raw samples
    samples = [c for c in chunks(data) if c[1] == 3]
    assert len(samples) >= 2
    damaged = cut(recording, tmp_path / "cut.xdf", samples[1][0] + 10)
    with pytest.warns(RecordingDamageWarning, match=rf"cut off.*byte {samples[1][0]}"):
        got = reader.read(damaged)
    # everything before the cut is still read, as pyxdf reads it
    raw = [s for s in got.signals if s.name == "engramloop.raw"][0]
    assert raw.x.shape[0] == pyxdf_counts(damaged)["engramloop.raw"] == 10000
    # the API refuses the file rather than hand back part of it silently
    with pytest.raises(engramloop.RecordingError, match=str(samples[1][0])):
        engramloop.read_recording(damaged)


def test_a_recording_cut_inside_its_raw_data_warns_rather_than_reading_as_empty(
        recording, tmp_path):
    data = recording.read_bytes()
    raw = max((c for c in chunks(data) if c[1] == 3), key=lambda c: c[2] - c[0])
    damaged = cut(recording, tmp_path / "cut.xdf", (raw[0] + raw[2]) // 2)
    with pytest.warns(RecordingDamageWarning, match="cut off"):
        got = reader.read(damaged)
    sig = [s for s in got.signals if s.name == "engramloop.raw"][0]
    assert sig.x.shape[0] == pyxdf_counts(damaged)["engramloop.raw"] == 0


def test_report_on_a_cut_recording_says_so_without_a_traceback(recording, tmp_path):
    data = recording.read_bytes()
    raw = max((c for c in chunks(data) if c[1] == 3), key=lambda c: c[2] - c[0])
    damaged = cut(recording, tmp_path / "cut.xdf", (raw[0] + raw[2]) // 2)
    p = subprocess.run([sys.executable, "-m", "engramloop", "report", str(damaged), "--out",
                        str(tmp_path / "rep"), "--quiet"], capture_output=True, text=True,
                       env=dict(os.environ), timeout=300)
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode != 0 and "truncated" in p.stderr, p.stderr


def test_the_cli_prints_the_damage_warning_as_one_line(recording, tmp_path):
    data = recording.read_bytes()
    samples = [c for c in chunks(data) if c[1] == 3]
    damaged = cut(recording, tmp_path / "cut.xdf", samples[1][0] + 10)
    p = subprocess.run([sys.executable, "-m", "engramloop", "score", str(damaged)],
                       capture_output=True, text=True, env=dict(os.environ), timeout=300)
    lines = [ln for ln in p.stderr.splitlines() if "cut off" in ln]
    assert lines and all(ln.startswith("warning: ") for ln in lines), p.stderr
    assert "RecordingDamageWarning" not in p.stderr
