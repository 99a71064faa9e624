"""The EDF+ export refuses what EDF cannot hold instead of writing something else.

Read back with pyedflib (EDFlib, which MNE and EDFbrowser also follow), the export used
to alter labels and annotations without a word: labels longer than EDF's 16 characters
were cut, so ``Hippocampus_CA1_left`` and ``Hippocampus_CA1_right`` both became
``Hippocampus_CA1_``; non-ASCII labels were mangled (``Fz-µ`` -> ``Fz-Au``); annotation
texts longer than EDFlib's 40 characters were cut; annotations with a negative or NaN
onset vanished from the file.
"""
from __future__ import annotations

import math

import numpy as np
import pyedflib
import pytest

from engramloop.analysis.edf_export import write_edf

FS = 200.0
X = np.random.default_rng(0).standard_normal((int(FS) * 3, 2)) * 50e-6


def read_back(path):
    r = pyedflib.EdfReader(str(path))
    try:
        return r.getSignalLabels(), list(zip(r.readAnnotations()[0], r.readAnnotations()[2],
                                             strict=True))
    finally:
        r.close()


@pytest.mark.parametrize("labels", [
    ["Hippocampus_CA1_left", "Hippocampus_CA1_right"],   # cut to the same 16 characters
    ["Fz-µV", "C3"],                                       # not ASCII
    ["", "C3"],                                            # empty
    ["C3", "C3"],                                          # duplicate
])
def test_labels_edf_cannot_hold_exactly_are_refused_naming_the_label(tmp_path, labels):
    with pytest.raises(ValueError, match="label"):
        write_edf(tmp_path / "x.edf", X, FS, labels)
    assert not (tmp_path / "x.edf").exists()


@pytest.mark.parametrize("ann", [
    (0.5, 0.1, "pulse/" + "x" * 60 + "/cancelled"),       # longer than EDFlib keeps
    (-0.5, 0.1, "before the first sample"),
    (math.nan, 0.1, "no onset"),
    (0.5, math.nan, "no duration"),
])
def test_annotations_edf_cannot_hold_exactly_are_refused(tmp_path, ann):
    with pytest.raises(ValueError, match="annotation"):
        write_edf(tmp_path / "x.edf", X, FS, ["Fz", "C3"], [ann])
    assert not (tmp_path / "x.edf").exists()


def test_what_edf_can_hold_reads_back_unchanged_with_pyedflib(tmp_path):
    labels = ["Hippocampus_CA1L", "C3"]  # exactly 16 characters
    ann = [(0.5, 0.1, "pulse/pulsepal/cancelled CA1"), (1.25, 0.0, "détection/ripple")]
    write_edf(tmp_path / "x.edf", X, FS, labels, ann)
    got_labels, got_ann = read_back(tmp_path / "x.edf")
    assert got_labels == labels
    assert [(float(o), str(t)) for o, t in got_ann] == [(a[0], a[2]) for a in ann]


def test_recording_to_edf_refuses_a_long_channel_name_and_relabels_on_request(tmp_path):
    """Through the API: a recording (written by a real ``engramloop sim`` process) whose
    channel names EDF cannot hold is refused naming the label; ``ch_names`` relabels it,
    and the annotations name the new labels (read back with pyedflib and MNE)."""
    import dataclasses
    import os
    import subprocess
    import sys

    import mne

    import engramloop

    out = tmp_path / "s.xdf"
    subprocess.run([sys.executable, "-m", "engramloop", "sim", "--duration", "3", "--out",
                    str(out), "--quiet"], check=True, env=dict(os.environ))
    rec = engramloop.read_recording(out)
    s = rec.signal()
    long = tuple(f"{c}_hippocampus_left" for c in s.channels)
    rec.signals[rec.signals.index(s)] = dataclasses.replace(s, channels=long)
    with pytest.raises(engramloop.RecordingError, match="label"):
        rec.to_edf(tmp_path / "long.edf")
    assert not (tmp_path / "long.edf").exists()
    short = [f"E{i}" for i in range(len(long))]
    rec.to_edf(tmp_path / "short.edf", ch_names=short)
    labels, _ = read_back(tmp_path / "short.edf")
    assert labels == short
    raw = mne.io.read_raw_edf(tmp_path / "short.edf", verbose="error")
    assert raw.ch_names == short
    np.testing.assert_allclose(raw.get_data()[0, :s.t.size], s.x[:, 0], atol=1e-8)
