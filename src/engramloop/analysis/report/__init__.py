"""Session reports: an HTML page with PNG figures, made from one XDF recording only.

:func:`write_report` reads the recording through the project's reader (the raw signal
stream(s) and the JSON marker streams ``engramloop.events``, ``.pulses``, ``.governor``,
``.forecasts``, ``.truth``, ``.memory`` and ``.log``) and writes ``index.html`` plus one
PNG per figure into a folder. Nothing else is consulted (except, for a simulated trial,
the memory stream of its sham twin's recording beside it), so any session can be
re-reported later. A stream that is not in the recording turns its section into a short
"not in this recording" note.

Memory does not grow with the night: the markers are held (JSON records), the signal is
read on demand -- block by block for running aggregates (the spectrogram), and in padded
windows around the few moments a figure plots (examples, event-locked averages, the phase
at each pulse, pulse-locked responses).

File names are fixed per figure kind (``examples-ripple.png``, ``phase-so_upstate.png``,
...), the page carries no generation time and the PNGs no software tag, so reporting the
same recording twice gives identical files. The page uses no scripts, fonts or styles from
the network: it opens offline.

The package is split by job: :mod:`.recording` (the report's view of the file),
:mod:`.records` (markers into pulses, events, stages), :mod:`.signals` (bands, windows,
filters, running aggregates), one module per section, :mod:`.page` (figures and HTML)
and :mod:`.write` (the whole report).
"""
from __future__ import annotations

from engramloop.analysis.report.memory import MemoryTrack, load_twin_memory, memory_track
from engramloop.analysis.report.raster import stage_densities
from engramloop.analysis.report.recording import (
    Recording,
    ReportError,
    Signal,
    expand_truth,
    load_recording,
)
from engramloop.analysis.report.records import PulseRecord, merge_pulses, numeric_series
from engramloop.analysis.report.signals import pick_channel
from engramloop.analysis.report.write import ReportResult, write_report

__all__ = ["ReportError", "Recording", "Signal", "PulseRecord", "load_recording",
           "write_report", "ReportResult", "merge_pulses", "numeric_series",
           "pick_channel", "expand_truth", "MemoryTrack", "memory_track",
           "load_twin_memory", "stage_densities"]
