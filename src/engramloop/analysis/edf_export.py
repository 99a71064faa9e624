"""Write signals and annotations to an EDF+ file (pyedflib).

EDF stores 16-bit integers per channel with a linear map to physical units given by the
channel's physical and digital minimum and maximum (EDF specification, Kemp et al. 1992;
EDF+: Kemp & Olivan 2003). Each channel's physical range here is its own data range (a
little widened so the extremes are representable), so the quantisation step is
range / 65535: about 3 nV for a +-100 uV channel. Values are written in microvolts, the
unit EEG readers expect. Annotations are EDF+ TAL entries (onset and duration in seconds
from the first sample, and a text).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["write_edf"]

DIGITAL_MIN, DIGITAL_MAX = -32768, 32767
#: EDFlib's limit on annotation signals (EDFLIB_MAX_ANNOTATION_CHANNELS in edflib.h)
MAX_ANNOTATION_SIGNALS = 64
#: EDF header fields are printable ASCII; a signal label has 16 characters (EDF
#: specification, Kemp et al. 1992, "label" field of the signal header)
LABEL_CHARS = 16
#: EDFlib keeps at most this many bytes of an annotation's UTF-8 text and cuts the rest
#: (EDFLIB_WRITE_MAX_ANNOTATION_LEN in edflib.h)
MAX_ANNOTATION_BYTES = 40


def _check_labels(channels: Sequence[str]) -> None:
    """Refuse labels EDF would not store exactly (cut, mangled or ambiguous)."""
    for name in channels:
        text = str(name)
        if not (0 < len(text) <= LABEL_CHARS and text == text.strip()
                and all(32 <= ord(c) < 127 for c in text)):
            raise ValueError(f"EDF export: channel label {text!r} is not 1-{LABEL_CHARS} "
                             "printable ASCII characters, so EDF would store a different "
                             "name; rename the channel")
    if len(set(map(str, channels))) != len(channels):
        raise ValueError(f"EDF export: channel labels are not unique: {list(channels)}")


def _check_annotations(annotations: Sequence[tuple[float, float, str]]) -> None:
    """Refuse annotations EDFlib would drop or cut."""
    for onset, duration, text in annotations:
        if not (np.isfinite(onset) and onset >= 0 and np.isfinite(duration)):
            raise ValueError(f"EDF export: annotation {text!r} at onset {onset!r} s, "
                             f"duration {duration!r} s: EDF+ needs a finite onset >= 0 (from "
                             "the first sample) and a finite duration")
        if len(str(text).encode("utf-8")) > MAX_ANNOTATION_BYTES:
            raise ValueError(f"EDF export: annotation text {text!r} is longer than the "
                             f"{MAX_ANNOTATION_BYTES} bytes EDFlib stores")


def _phys_range(col: np.ndarray) -> tuple[float, float]:
    lo, hi = (float(np.min(col)), float(np.max(col))) if col.size else (-1.0, 1.0)
    if hi - lo < 1e-6:  # flat (or empty) channel: any non-empty range
        lo, hi = lo - 1.0, hi + 1.0
    pad = 1e-3 * (hi - lo)
    # widen to what 8 header characters can hold without rounding inwards
    return float(np.floor((lo - pad) * 100) / 100), float(np.ceil((hi + pad) * 100) / 100)


def write_edf(path: str | Path, x_v: np.ndarray, rate_hz: float, channels: Sequence[str],
              annotations: Sequence[tuple[float, float, str]] = (),
              start: dt.datetime | None = None) -> Path:
    """Write an EDF+ file.

    Parameters
    ----------
    path : str or Path
    x_v : ndarray, shape (n_samples, n_channels), volts
    rate_hz : float
        Sampling rate; must be a whole number of samples per second (EDF stores samples
        per 1 s data record).
    channels : sequence of str
        One label per column: 1-16 printable ASCII characters, unique (EDF's label
        field; anything else is refused rather than cut or mangled).
    annotations : sequence of (onset_s, duration_s, text)
        Onsets in seconds from the first sample (finite, >= 0); text at most 40 bytes
        of UTF-8 (what EDFlib stores).
    start : datetime, optional
        Recording start (the first sample, local wall-clock time as EDF stores it);
        default 2000-01-01 00:00:00, EDF's way of saying "not known".

    Raises
    ------
    ValueError
        If the rate is not a whole number, the shapes disagree, the data are not finite,
        or a label or annotation is one EDF would not store exactly.
    """
    import pyedflib

    x = np.asarray(x_v, dtype=float)
    if x.ndim != 2 or x.shape[1] != len(channels):
        raise ValueError(f"EDF export: {x.shape} samples for {len(channels)} channel names")
    if abs(rate_hz - round(rate_hz)) > 1e-9 or rate_hz < 1:
        raise ValueError(f"EDF export: the rate {rate_hz:g} Hz is not a whole number of "
                         "samples per second, which EDF's 1 s data records need")
    if not np.isfinite(x).all():
        raise ValueError("EDF export: the signal has non-finite samples, which EDF cannot "
                         "store")
    _check_labels(channels)
    _check_annotations(annotations)
    rate = int(round(rate_hz))
    n_records = int(np.ceil(x.shape[0] / rate)) if x.shape[0] else 0
    # EDFlib stores at most one annotation per annotation signal and data record and
    # drops the rest when the file closes: reserve enough signals, or refuse
    need = int(np.ceil(len(annotations) / max(n_records, 1))) if annotations else 1
    if need > MAX_ANNOTATION_SIGNALS:
        raise ValueError(f"EDF export: {len(annotations)} annotations do not fit in "
                         f"{n_records} one-second data records (EDFlib keeps at most "
                         f"{MAX_ANNOTATION_SIGNALS} per record)")
    uv = np.zeros((n_records * rate, x.shape[1]))
    uv[:x.shape[0]] = x * 1e6
    if x.shape[0] < uv.shape[0]:  # pad the last data record with the last value
        uv[x.shape[0]:] = uv[x.shape[0] - 1] if x.shape[0] else 0.0
    path = Path(path)
    w = pyedflib.EdfWriter(str(path), x.shape[1], file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        headers = []
        for i, name in enumerate(channels):
            lo, hi = _phys_range(uv[:, i])
            headers.append({"label": str(name)[:16], "dimension": "uV",
                            "sample_frequency": rate, "physical_min": lo,
                            "physical_max": hi, "digital_min": DIGITAL_MIN,
                            "digital_max": DIGITAL_MAX, "transducer": "",
                            "prefilter": ""})
        w.setSignalHeaders(headers)
        w.setStartdatetime(start or dt.datetime(2000, 1, 1))
        w.setEquipment("engramloop")
        w.set_number_of_annotation_signals(max(1, need))
        for onset, duration, text in annotations:
            w.writeAnnotation(float(onset), float(duration) if duration > 0 else -1,
                              str(text))
        w.writeSamples([np.ascontiguousarray(uv[:, i]) for i in range(x.shape[1])])
    finally:
        w.close()
    return path
