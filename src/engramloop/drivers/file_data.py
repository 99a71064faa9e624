"""What every file loader returns (:class:`FileData`) and how a damaged text table is
reported (:func:`table_error`); shared by :mod:`drivers.files` and the format modules it
dispatches to (:mod:`drivers.openbci_txt`), which import nothing of each other."""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engramloop.core import sample_format as _fmt
from engramloop.core.chunk import SourceError


class FileData:
    """A loaded recording: ``samples`` (n, c) volts, ``timestamps`` (n,) seconds from the
    file, ``rate_hz``, ``channels``, ``markers`` (kind -> [(time, dict)], as
    :func:`engramloop.recording.reader.read` gives them) if any,
    ``gaps`` (indices of samples that follow a loss) when the format records losses, and
    ``full_scale_v`` (c,) volts, the largest magnitude each channel can hold, when the
    format says (EDF/BDF physical range), else inf; ``sample_format``, how a recording
    of the replay may store the samples (:mod:`engramloop.core.sample_format`: float32
    when the file's own resolution fits in it, float64 when unknown)."""

    def __init__(self, samples: np.ndarray, timestamps: np.ndarray, rate_hz: float,
                 channels: Sequence[str], markers: dict | None = None,
                 gaps: np.ndarray | None = None,
                 full_scale_v: Sequence[float] | None = None,
                 sample_format: str = _fmt.FLOAT64) -> None:
        self.samples = np.ascontiguousarray(samples, dtype=np.float64)
        self.timestamps = np.ascontiguousarray(timestamps, dtype=np.float64)
        self.rate_hz = float(rate_hz)
        self.channels = tuple(str(c) for c in channels)
        self.markers = markers or {}
        # sample indices that follow lost samples, when the format knows better than the
        # timestamps (BrainFlow CSV: packet counter); None = judge from the timestamps
        self.gaps = gaps
        self.full_scale_v = (np.full(len(self.channels), np.inf) if full_scale_v is None
                             else np.asarray(full_scale_v, dtype=np.float64))
        self.sample_format = _fmt.check(sample_format)


def table_error(path: Path, what: str, exc: ValueError) -> SourceError:
    """numpy.loadtxt's complaint about a text table, said for a user: where (line, column,
    byte offset), what is wrong, and that the file is damaged (numpy's own hint to 'use
    usecols' would only hide the damage)."""
    msg = str(exc)
    if isinstance(exc, UnicodeDecodeError):
        why = (f"byte 0x{exc.object[exc.start]:02x} at byte offset {exc.start} is not UTF-8 "
               "text")
    elif m := re.search(r"number of columns changed from (\d+) to (\d+) at row (\d+)", msg):
        why = (f"data row {int(m.group(3))} has {m.group(2)} columns where the rows before "
               f"have {m.group(1)}")
    elif m := re.search(r"invalid column index (\d+) at row (\d+) with (\d+) columns", msg):
        why = f"data row {int(m.group(2))} has only {m.group(3)} columns"
    elif m := re.search(r"could not convert string (.*) to float64", msg):
        why = f"{m.group(1)[:40]} is not a number"
    else:
        why = msg
    return SourceError(f"{path}: malformed {what}{_csv_where(path, msg)}: {why}; the file "
                       f"is damaged or not a {what}")


def _csv_where(path: Path, message: str) -> str:
    """' at line L, column C (byte offset B)' from numpy's 0-based 'at row R, column C'."""
    m = re.search(r"at row (\d+), column (\d+)", message)
    if not m:
        return ""
    row, col = int(m.group(1)), int(m.group(2))
    offset = 0
    with open(path, "rb") as f:
        for _ in range(row):
            offset += len(f.readline())
    return f" at line {row + 1}, column {col} (byte offset {offset})"


__all__ = ["FileData", "table_error"]
