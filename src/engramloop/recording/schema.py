"""What an engramloop recording holds: its stream names, the shape of their records, and
the schema version written in the file header.

Version history
---------------
1  one numeric stream per signal source (``engramloop.raw`` by default, volts, a host-clock
   timestamp per sample); JSON marker streams named ``engramloop.<kind>`` for the kinds in
   :data:`MARKER_STREAMS`; the effective config (TOML) and the clock in the file header's
   ``<engramloop>`` element. Files written before the version was recorded read as 1.
2  the same streams and records, smaller: a signal stream is float32 (XDF
   ``channel_format``) when its source declares that float32 holds its resolution (see
   :mod:`engramloop.core.sample_format`), double64 otherwise; a regular stream's sample
   stores its timestamp only where a reader's deduction (previous timestamp + 1 /
   ``nominal_srate``, the XDF rule) would be more than ``<timestamp_tolerance_samples>``
   sample periods off, at the first sample of every Samples chunk and at least every
   ``<stamp_every_s>`` seconds of samples (both in the file header's ``<engramloop>``
   element). Readers of version 1 need no change: both are standard XDF 1.0.
"""
from __future__ import annotations

SCHEMA_VERSION = 2

#: the default signal stream
RAW = "engramloop.raw"

#: marker streams, one JSON object per sample: ``engramloop.<kind>``
#: events     a detection (``Event.to_dict()``: kind, channel, onset_s, detect_s, ...)
#: pulses     a pulse's life: approved, sent, acked/failed (``Pulse.to_dict()`` records)
#: forecasts  a forecaster output per epoch
#: governor   every decision, approved or refused, with the rule that refused it
#: truth      the simulator's ground truth (events, phases, stages, memory)
#: memory     the simulated memory model's recall over time
#: log        operator-facing messages (warnings, state changes, faults)
MARKER_STREAMS = ("events", "pulses", "forecasts", "governor", "truth", "memory", "log")

#: annotations the source's file carried (EDF+: ``{"kind": "annotation", "text",
#: "onset_s", "duration_s"}`` at the annotation's onset), declared only when there are any
#: (a replay of an annotated file); same record layout as the other marker streams
ANNOTATIONS = "engramloop.annotations"


#: forecast fields renamed since older recordings were written: old name -> new name
#: (issue 21: ``p_decay`` was P(below-median consolidation), not a decay risk)
FORECAST_RENAMED = {"p_decay": "p_below_median"}


def upgrade_forecast(record: dict) -> dict:
    """A ``forecasts`` record with the current field names (a record from an older
    version carries ``p_decay``; the new name wins when both are present)."""
    if not isinstance(record, dict) or not any(k in record for k in FORECAST_RENAMED):
        return record
    out = {}
    for k, v in record.items():
        new = FORECAST_RENAMED.get(k)
        if new is None:
            out[k] = v
        elif new not in record:
            out[new] = v
    return out


def marker_stream(kind: str) -> str:
    """``"events"`` -> ``"engramloop.events"``."""
    return f"engramloop.{kind}"


def marker_kind(stream_name: str) -> str:
    """``"engramloop.events"`` -> ``"events"``; a foreign stream's name as it is."""
    prefix = "engramloop."
    return stream_name[len(prefix):] if stream_name.startswith(prefix) else stream_name


__all__ = ["SCHEMA_VERSION", "RAW", "MARKER_STREAMS", "ANNOTATIONS", "FORECAST_RENAMED",
           "marker_stream", "marker_kind", "upgrade_forecast"]
