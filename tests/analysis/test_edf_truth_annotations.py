"""``score --truth night.edf`` reads the EDF+ annotations without the night's samples
(issue 23): what it reads equals MNE's reading of the same file (a reader we did not
write), and its peak memory does not grow with the samples."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from shared_data import DATA, require_data

from engramloop.drivers.files import edf_annotations


def _edf_plus(path: Path, signals_uv, rate: int, labels, annotations) -> Path:
    """An EDF+C file written by pyedflib (the counterpart), microvolts, 1-s records."""
    import pyedflib
    from pyedflib import highlevel

    hdr = [highlevel.make_signal_header(lab, dimension="uV", sample_frequency=rate,
                                        physical_min=-500, physical_max=500)
           for lab in labels]
    h = highlevel.make_header()
    h["annotations"] = [list(a) for a in annotations]
    assert highlevel.write_edf(str(path), [np.ascontiguousarray(s) for s in signals_uv],
                               hdr, h, file_type=pyedflib.FILETYPE_EDFPLUS)
    return path


def test_annotations_equal_mnes_on_real_eeg_with_expert_spindles(tmp_path):
    """DREAMS excerpt 1 (C3-A1) with expert 1's spindles written as EDF+ annotations."""
    import mne
    import pyedflib

    dreams = require_data(DATA / "dreams_dev")
    r = pyedflib.EdfReader(str(dreams / "excerpt1.edf"))
    x = r.readSignal(0)[:600 * 100]
    r.close()
    rows = [ln.split(",") for ln in (dreams / "excerpt1_expert1.csv").read_text().split()[1:]]
    notes = [(float(a), float(b), "Spindle") for a, b in rows if float(a) < 599]
    notes.append((30.0, -1, "Sleep stage 2"))       # an annotation without a duration
    f = _edf_plus(tmp_path / "n2.edf", [x], 100, ["C3-A1"], notes)
    got = edf_annotations(f)
    ref = mne.read_annotations(str(f))
    assert len(got) == len(ref) == len(notes) > 5
    order = np.argsort(ref.onset, kind="stable")
    np.testing.assert_allclose([g["onset_s"] for g in got], ref.onset[order], atol=1e-6)
    assert [g["text"] for g in got] == [str(t) for t in ref.description[order]]
    # MNE gives 0 for "no duration"; ours keeps that it was absent (None)
    np.testing.assert_allclose([g["duration_s"] or 0.0 for g in got], ref.duration[order],
                               atol=1e-6)
    assert [g for g in got if g["text"] == "Sleep stage 2"][0]["duration_s"] is None


def test_plain_edf_has_no_annotations(tmp_path):
    import pyedflib
    from pyedflib import highlevel

    f = tmp_path / "plain.edf"
    hdr = [highlevel.make_signal_header("Cz", dimension="uV", sample_frequency=100,
                                        physical_min=-500, physical_max=500)]
    assert highlevel.write_edf(str(f), [np.zeros(1000)], hdr, file_type=pyedflib.FILETYPE_EDF)
    assert edf_annotations(f) == []


CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from engramloop.drivers.files import edf_annotations, load_edf

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])          # kB

    edf_annotations(Path(sys.argv[1]))               # imports, a first small read
    with open("/proc/self/clear_refs", "w") as f:    # Linux: reset the peak (VmHWM)
        f.write("5")
    before = status("VmRSS")
    (load_edf if sys.argv[3] == "whole" else edf_annotations)(Path(sys.argv[2]))
    print(status("VmHWM") - before)
""")


@pytest.mark.slow
def test_peak_memory_does_not_follow_the_samples(tmp_path):
    """An hour of 8 channels at 256 Hz (7.4 M samples: 59 MB as float64): reading its
    annotations raises the process's peak RSS by far less than the samples would take
    (the whole-file read, measured beside it, by more). Peak = Linux's VmHWM, reset
    before the call through /proc/self/clear_refs."""
    rng = np.random.default_rng(0)
    small = _edf_plus(tmp_path / "small.edf", rng.normal(0, 20, (1, 1000)), 100, ["Cz"],
                      [(1.0, 0.5, "Spindle")])
    sig = rng.normal(0, 20, (8, 3600 * 256))
    big = _edf_plus(tmp_path / "big.edf", sig, 256, [f"E{i}" for i in range(8)],
                    [(10.0 * k, 0.8, "Spindle") for k in range(300)])
    del sig
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak RSS")
    grow = {}
    for how in ("annotations", "whole"):
        out = subprocess.run([sys.executable, "-c", CHILD, str(small), str(big), how],
                             check=True, capture_output=True, text=True, timeout=600)
        grow[how] = int(out.stdout.split()[-1]) * 1024
    samples_bytes = 8 * 3600 * 256 * 8
    assert grow["whole"] > samples_bytes, grow          # the measure sees a whole read
    assert grow["annotations"] < samples_bytes / 20, grow
