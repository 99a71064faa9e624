"""EDF+ annotations count from the file's start, and its first sample lies at the first
data record's onset -- not 0 in an EDF+D that begins later (a night split into parts,
an export of a stretch). `replay --sweep` measured the annotations from that onset;
`score REC --truth night.edf` from 0, so the same expert spindles were placed that far
later in the recording: recall fell to what chance gave, and the two commands disagreed
about one file. Both now use analysis.truth_files.truth_t0.

pyedflib cannot write EDF+D, so the file is written here by a minimal writer following
the EDF+ specification (Kemp & Olivan 2003: 'EDF Annotations' signal, the time-keeping
TAL first in each record). The reference is the signal's own truth: the spindles are
put into the samples at known times."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

RATE = 100           # Hz; 1-s data records
FIRST_S = 500.0      # the first record's onset (s after the file's start)
SECONDS = 150
SPINDLES_S = [40.0, 55.0, 70.0, 85.0, 100.0, 115.0, 130.0]   # after the first sample
ANN_SAMPLES = 60     # 120 bytes of annotations per record


def _field(text: str, n: int) -> bytes:
    return text.encode("ascii")[:n].ljust(n)


def _write_edf_plus_d(path, x_uv: np.ndarray, notes: list[tuple[float, float, str]]):
    """One EEG signal (microvolts) and the annotation signal; record r starts at
    FIRST_S + r; each annotation goes into the record it falls in."""
    n_rec = len(x_uv) // RATE
    sigs = [("C3-A1", "uV", -500, 500, RATE), ("EDF Annotations", "", -1, 1, ANN_SAMPLES)]
    head = (_field("0", 8) + _field("X X X X", 80)
            + _field("Startdate 01-JAN-2020 X X X", 80) + _field("01.01.20", 8)
            + _field("00.00.00", 8) + _field(str(256 * (1 + len(sigs))), 8)
            + _field("EDF+D", 44) + _field(str(n_rec), 8) + _field("1", 8)
            + _field(str(len(sigs)), 4))
    cols = [[_field(s[0], 16) for s in sigs], [_field("", 80) for _ in sigs],
            [_field(s[1], 8) for s in sigs], [_field(str(s[2]), 8) for s in sigs],
            [_field(str(s[3]), 8) for s in sigs], [_field("-32768", 8) for _ in sigs],
            [_field("32767", 8) for _ in sigs], [_field("", 80) for _ in sigs],
            [_field(str(s[4]), 8) for s in sigs], [_field("", 32) for _ in sigs]]
    head += b"".join(b"".join(c) for c in cols)
    digital = np.clip(np.round(x_uv / 1000.0 * 65535 - 0.5), -32768, 32767).astype("<i2")
    out = bytearray(head)
    for r in range(n_rec):
        out += digital[r * RATE:(r + 1) * RATE].tobytes()
        t = FIRST_S + r
        tal = f"+{t:g}\x14\x14\x00".encode()
        for on, dur, text in notes:
            if t <= on < t + 1:
                tal += f"+{on:g}\x15{dur:g}\x14{text}\x14\x00".encode()
        assert len(tal) <= 2 * ANN_SAMPLES
        out += tal.ljust(2 * ANN_SAMPLES, b"\x00")
    path.write_bytes(bytes(out))
    return path


def _night(tmp_path):
    rng = np.random.default_rng(7)
    t = np.arange(SECONDS * RATE) / RATE
    x = rng.normal(0, 8, t.size)
    for s in SPINDLES_S:      # 1-s 13 Hz bursts, Hann-shaped, 60 uV
        m = (t >= s) & (t < s + 1.0)
        x[m] += 60 * np.hanning(m.sum()) * np.sin(2 * np.pi * 13 * (t[m] - s))
    notes = [(FIRST_S + s, 1.0, "Spindle") for s in SPINDLES_S]
    return _write_edf_plus_d(tmp_path / "night.edf", x, notes)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engramloop", *args], capture_output=True,
                          text=True, timeout=600)


def test_score_and_sweep_place_edf_annotations_alike(tmp_path) -> None:
    from engramloop.analysis.truth_files import edf_truth, truth_t0

    edf = _night(tmp_path)
    assert truth_t0(edf, None) == FIRST_S
    assert [e["onset_s"] for e in edf_truth(edf, "spindle")] == \
        [FIRST_S + s for s in SPINDLES_S]
    cfg = tmp_path / "eeg.toml"
    cfg.write_text('[source]\nkind = "file"\n[detectors.ripple]\nenabled = false\n'
                   '[detectors.so]\nenabled = false\n[detectors.spindle]\n'
                   'channels = ["C3-A1"]\n[policy]\ntarget = "spindle"\n')
    sweep = _run("replay", str(cfg), str(edf), "--sweep", "detectors.spindle.threshold_sd=3",
                 "--truth", str(edf), "--json", "--quiet")
    assert sweep.returncode == 0, sweep.stderr
    row = json.loads(sweep.stdout.splitlines()[-1])["score"]["spindle"]
    rec = tmp_path / "r.xdf"
    made = _run("replay", str(cfg), str(edf), "--speed", "max", "--quiet", "--record",
                str(rec))
    assert made.returncode == 0, made.stderr
    got = _run("score", str(rec), "--truth", str(edf), "--json")
    assert got.returncode == 0, got.stderr
    sc = json.loads(got.stdout)["spindle"]
    # the spindles put into the samples are found where the annotations say
    assert row["true_positives"] >= len(SPINDLES_S) - 2
    for key in ("n_truth", "true_positives", "false_negatives"):
        assert sc[key] == row[key], (key, sc, row)
