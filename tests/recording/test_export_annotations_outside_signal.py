"""``to_mne``/``to_edf`` keep annotations that overlap the signal and say which they drop.

Before this test an annotation that began before the first sample was dropped whole even
when it lasted into the signal (a sleep stage that started before the recording), and
any annotation outside the signal (a pulse sent after the last chunk) vanished from the
export without a word. MNE and pyedflib read the results back; the recording is written
by a real ``engramloop sim`` process.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pyedflib
import pytest

import engramloop


@pytest.fixture()
def rec(tmp_path):
    out = tmp_path / "s.xdf"
    subprocess.run([sys.executable, "-m", "engramloop", "sim", "--duration", "4", "--out",
                    str(out), "--quiet"], check=True, env=dict(os.environ))
    r = engramloop.read_recording(out)
    t0, t1 = float(r.signal().t[0]), float(r.signal().t[-1])
    rows = r._rows["annotations"]
    rows[:] = [a for a in rows if t0 <= a["onset_s"] <= t1]
    rows.append({"onset_s": t0 - 10.0, "duration_s": 12.0, "description": "stage/N3",
                 "channel": ""})
    rows.append({"onset_s": t1 + 5.0, "duration_s": 0.0, "description": "pulse/late",
                 "channel": ""})
    return r


def test_to_mne_clips_an_overlapping_annotation_and_warns_about_the_one_outside(rec):
    with pytest.warns(UserWarning, match=r"1 annotation.*outside.*pulse/late"):
        raw = rec.to_mne()
    stage = [i for i, d in enumerate(raw.annotations.description) if d == "stage/N3"]
    assert len(stage) == 1
    assert raw.annotations.onset[stage[0]] == pytest.approx(0.0, abs=1e-9)
    assert raw.annotations.duration[stage[0]] == pytest.approx(2.0, abs=2e-3)
    assert "pulse/late" not in raw.annotations.description


def test_to_edf_keeps_the_overlapping_annotation(rec, tmp_path):
    with pytest.warns(UserWarning, match="outside"):
        rec.to_edf(tmp_path / "x.edf")
    r = pyedflib.EdfReader(str(tmp_path / "x.edf"))
    try:
        onsets, durations, texts = r.readAnnotations()
    finally:
        r.close()
    assert "stage/N3" in list(texts)
    i = list(texts).index("stage/N3")
    assert onsets[i] == pytest.approx(0.0, abs=1e-9)
    assert durations[i] == pytest.approx(2.0, abs=2e-3)
