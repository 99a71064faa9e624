"""OpenBCI GUI recordings (``OpenBCI-RAW-<date>.txt``) as :class:`~drivers.file_data.FileData`.

The GUI writes comma-separated text (OpenBCI documentation, "OpenBCI GUI: Data Format";
the GUI's DataWriterODF): header lines starting with ``%``::

    %OpenBCI Raw EXG Data
    %Number of channels = 8
    %Sample Rate = 250 Hz
    %Board = OpenBCI_GUI$BoardCytonSerial

then, since GUI v5, one line of column names (``Sample Index, EXG Channel 0, ...,
EXG Channel 7, Accel Channel 0..2, ..., Timestamp, Marker Channel, Timestamp
(Formatted)``) and one sample per line. EXG values are microvolts; ``Sample Index`` is the
board's wrapping packet counter (0-255; it steps by 2 on a Cyton+Daisy); ``Timestamp`` is
the host's Unix time in seconds when BrainFlow parsed the packet. Older GUIs (v3/v4) wrote
no column line and described the columns in the header (``%First Column = SampleIndex``,
``%Other Columns = EEG data in microvolts followed by Accel Data``, the last column a
formatted clock time): there the EXG channels are columns 1..N and sample times come from
the counter.

Channel names: the GUI stores none; for a Cyton, Cyton+Daisy or Ganglion recording the
channels get BrainFlow's names for that board (Fp1, Fp2, C3, ... on a Cyton), the same a
live ``[source] kind = "brainflow"`` run uses, so one config fits both; otherwise
``EXG Channel i`` as the GUI labels them.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from engramloop.core.chunk import SourceError
from engramloop.drivers.brainflow_lib import load_brainflow
from engramloop.drivers.brainflow_source import CounterGapDetector, board_id
from engramloop.drivers.file_blocks import TextBlocks, iter_table, read_whole

#: the GUI's board class (after ``OpenBCI_GUI$``) -> BrainFlow board name and counter step
_BOARDS = (("daisy", "cyton_daisy", 2), ("cyton", "cyton", 1), ("ganglion", "ganglion", 1))


def is_openbci_txt(path: Path) -> bool:
    """True when the file starts like an OpenBCI GUI recording."""
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"%OpenBCI"
    except OSError:
        return False


def _board_names(board: str, n: int) -> tuple[list[str] | None, int]:
    key = board.lower()
    for needle, name, step in _BOARDS:
        if needle in key:
            try:
                descr = load_brainflow().BoardShim.get_board_descr(board_id(name))
                names = str(descr.get("eeg_names", "")).split(",")
            except ImportError:  # no BrainFlow here: the GUI's own labels are used
                names = []
            return (names if len(names) == n and all(names) else None), step
    return None, 1


def open_openbci_txt(path: Path, scale_v: float = 1e-6, check: bool = True):
    """An OpenBCI GUI recording as :class:`~drivers.file_blocks.TextBlocks` (parsed in
    blocks); ``scale_v`` volts per stored unit (microvolts)."""
    header: dict[str, str] = {}
    n_head = 0
    names_line = ""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("%"):
                key, sep, val = line[1:].partition("=")
                if sep:
                    header[key.strip().lower()] = val.strip()
                n_head += 1
                continue
            first = line.split(",", 1)[0].strip()
            try:
                float(first)
            except ValueError:
                names_line = line
            break
    try:
        n_ch = int(header["number of channels"])
        rate = float(re.sub(r"[^0-9.eE+-]", "", header["sample rate"]))
    except (KeyError, ValueError):
        raise SourceError(f"{path}: OpenBCI GUI file without a readable '%Number of "
                          "channels = N' and '%Sample Rate = R Hz' header") from None
    if not (n_ch > 0 and math.isfinite(rate) and rate > 0):
        raise SourceError(f"{path}: OpenBCI GUI header gives {n_ch} channels at {rate} Hz")
    board = header.get("board", "")
    cols = [c.strip() for c in names_line.split(",")] if names_line else []
    if cols:
        exg = [i for i, c in enumerate(cols) if c.lower().startswith("exg channel")
               or c.lower().startswith("eeg channel")]
        if len(exg) != n_ch:
            raise SourceError(f"{path}: the column line names {len(exg)} EXG channels, the "
                              f"header says {n_ch}")
        index = cols.index("Sample Index") if "Sample Index" in cols else 0
        stamp = cols.index("Timestamp") if "Timestamp" in cols else None
        labels = [cols[i] for i in exg]
    else:
        exg, index, stamp = list(range(1, n_ch + 1)), 0, None
        labels = [f"EXG Channel {i}" for i in range(n_ch)]
    use = [index, *exg] + ([stamp] if stamp is not None else [])
    names, step = _board_names(board, n_ch)

    def table():
        return iter_table(path, "OpenBCI GUI file", delimiter=",", comments="%",
                          skip_lines=n_head + (1 if cols else 0), usecols=use)

    def convert(data: np.ndarray, state: dict) -> tuple:
        counter = data[:, 0]
        if stamp is not None:
            t = data[:, -1]
        else:
            # no host times: sample times from the counter (a lost packet is a real gap)
            c = counter.astype(np.int64)
            prev = state.get("counter")
            steps = np.ones(c.size, dtype=np.int64)
            steps[1:] = np.maximum(((c[1:] - c[:-1]) % 256) // step, 1)
            steps[0] = 0 if prev is None else max(((c[0] - prev) % 256) // step, 1)
            t = state.get("count", 0) + np.cumsum(steps)
            state["counter"], state["count"] = int(c[-1]), int(t[-1])
            t = t / rate
        det = state.get("det") or state.setdefault("det", CounterGapDetector(rate, step=step))
        lost = det.update(counter, t) > 0
        return data[:, 1:1 + n_ch] * scale_v, t, lost

    b = TextBlocks(path, rate, names or labels, table, convert, check=check)
    # the OpenBCI boards' converters are 24-bit (Cyton ADS1299, Ganglion MCP3912): a
    # recording of the replay may store them in float32 (engramloop.core.sample_format)
    known = any(needle in board.lower() for needle, _, _ in _BOARDS)
    b.sample_format = "float32" if known else "float64"
    return b


def load_openbci_txt(path: Path, scale_v: float = 1e-6):
    """:func:`open_openbci_txt` read whole."""
    return read_whole(open_openbci_txt(path, scale_v))
