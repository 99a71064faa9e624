"""Ground truth of a simulated recording: every generated event, the noise-free phase of
the slow-oscillation, spindle and theta generators, and the sleep stages.

All times handed out are host-clock seconds (the same clock as the Chunk timestamps of
the run). Internally the simulator works in "sim seconds" since its first sample; the
offset between the two is ``Truth.t0_s``.

Phase convention (shared by the whole project): degrees, cosine phase, 0 = positive peak
(SO up-state peak in surface-EEG polarity, spindle cycle peak, theta peak), +-180 = trough,
wrapped to (-180, 180].
"""
from __future__ import annotations

import bisect
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engramloop.core.angles import wrap_deg

GENERATORS = ("so", "spindle", "theta")


@dataclass(frozen=True, eq=False)
class TruthEvent:
    """One generated event, as scored against detections.

    Attributes
    ----------
    kind : str
        "ripple", "spindle", "so" (one slow-oscillation cycle), "theta_burst" (a theta
        episode), "artefact" (``meta["type"]`` says which), "stim" (a delivered pulse),
        "suppressed" (a spontaneous event a pulse's effect blocked -- present in the sham
        twin, not in this run: ``meta["kind"]`` its kind, ``meta["by_eid"]`` the blocking
        event's record index, ``meta["reason"]``).
    channel : str
        Channel on which the event is largest. Cortical events appear on every EEG channel
        and ripples on every LFP channel, scaled (``meta["channels"]``).
    onset_s, peak_s, offset_s : float
        Host-clock seconds. For "so": onset is the descending zero crossing that starts the
        down state, ``meta["trough_s"]`` the down-state trough, peak_s the up-state peak.
        For "ripple" and "spindle", peak_s is the envelope maximum.
    meta : dict
        Kind-specific numbers (frequency_hz, amplitude_v, coupled, truncated, ...).
    """

    kind: str
    channel: str
    onset_s: float
    peak_s: float
    offset_s: float
    meta: dict = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.offset_s - self.onset_s

    def to_dict(self) -> dict:
        return asdict(self)


class EventRecord:
    """Mutable internal form of a truth event, in sim seconds (closed-loop effects edit it)."""

    __slots__ = ("kind", "channel", "onset", "peak", "offset", "meta", "eid")

    def __init__(self, kind: str, channel: str, onset: float, peak: float, offset: float,
                 meta: dict | None = None, eid: int = -1) -> None:
        self.kind, self.channel = kind, channel
        self.onset, self.peak, self.offset = float(onset), float(peak), float(offset)
        self.meta = dict(meta or {})
        self.eid = eid

    def to_truth(self, t0: float) -> TruthEvent:
        meta = {k: (v + t0 if k.endswith("_s") and k not in _RELATIVE_KEYS
                    and isinstance(v, float) else v) for k, v in self.meta.items()}
        return TruthEvent(self.kind, self.channel, self.onset + t0, self.peak + t0,
                          self.offset + t0, meta)


# meta keys ending in _s that are durations, not times
_RELATIVE_KEYS = frozenset({"duration_s", "prolonged_by_s", "lag_s", "decay_s"})


class Truth:
    """Everything the simulator generated, queryable while a run is going and afterwards.

    Parameters
    ----------
    rate_hz : float
        Sampling rate of the simulated recording.
    channels : tuple of str
        Channel names.
    t0_s : float
        Host-clock time of sample 0.
    """

    def __init__(self, rate_hz: float, channels: tuple[str, ...], t0_s: float = 0.0) -> None:
        self.rate_hz = float(rate_hz)
        self.channels = tuple(channels)
        self.t0_s = float(t0_s)
        self.until_s = 0.0          # sim seconds delivered so far (events after it are hidden)
        self._records: list[EventRecord] = []
        self._next_id = 0
        self._version = 0
        self._cache: dict[str, Any] = {}
        # stage segments in sim seconds: parallel lists of start, end, label
        self.seg_start: list[float] = []
        self.seg_end: list[float] = []
        self.seg_stage: list[str] = []
        # theta generator: knot times (sim s), frequency (Hz) and unwrapped phase (rad) at
        # knots; frequency is linear between knots, so phase is quadratic (exact integral).
        # Stored in a growable array so a night-long run appends in O(1).
        self._th = np.empty((64, 3))
        self._th_n = 0
        self.theta_asym = 0.0
        self._by_kind: dict[str, list[EventRecord]] = {}
        self.memory: dict = {}

    # ---------------------------------------------------------------- building (internal)
    def add(self, rec: EventRecord) -> EventRecord:
        rec.eid = self._next_id
        self._next_id += 1
        self._records.append(rec)
        self._by_kind.setdefault(rec.kind, []).append(rec)
        self.touch()
        return rec

    def add_theta_knot(self, t: float, f: float, ph: float) -> None:
        """Append a theta knot: sim time (s), frequency (Hz), unwrapped phase (rad)."""
        if self._th_n == self._th.shape[0]:
            self._th = np.concatenate([self._th, np.empty_like(self._th)])
        self._th[self._th_n] = (t, f, ph)
        self._th_n += 1

    @property
    def theta_knots(self) -> np.ndarray:
        """Theta knots so far, shape (n, 3): time (sim s), frequency (Hz), phase (rad)."""
        return self._th[:self._th_n]

    def touch(self) -> None:
        """Invalidate the phase caches after an event was added or edited."""
        self._version += 1
        self._cache.clear()

    def add_segment(self, stage: str, start: float, end: float) -> None:
        self.seg_start.append(float(start))
        self.seg_end.append(float(end))
        self.seg_stage.append(stage)

    # ---------------------------------------------------------------- queries
    def events(self, kind: str | None = None) -> list[TruthEvent]:
        """Generated events that started before the last delivered sample, by onset.

        Parameters
        ----------
        kind : str, optional
            Only this kind ("ripple", "spindle", "so", "theta_burst", "artefact", "stim").
        """
        t0, until = self.t0_s, self.until_s
        recs = [r for r in self._records if (kind is None or r.kind == kind)
                and r.onset < until]
        recs.sort(key=lambda r: (r.onset, r.eid))
        out = []
        for r in recs:
            ev = r.to_truth(t0)
            if r.kind == "theta_burst" and r.offset > until:
                ev = TruthEvent(ev.kind, ev.channel, ev.onset_s, ev.peak_s, until + t0, ev.meta)
            out.append(ev)
        return out

    def stages(self, t_s: np.ndarray | float) -> np.ndarray:
        """Sleep-stage labels ("wake", "N1", "N2", "N3", "REM"; "" where unknown).

        Parameters
        ----------
        t_s : float or ndarray
            Host-clock times, seconds.

        Returns
        -------
        ndarray of str, same shape as ``t_s``
        """
        t = np.asarray(t_s, dtype=float) - self.t0_s
        labels = np.array(self.seg_stage + [""], dtype=object)
        if not self.seg_start:
            return np.full(t.shape, "", dtype=object)
        idx = np.searchsorted(np.asarray(self.seg_start), t, side="right") - 1
        ends = np.asarray(self.seg_end)
        bad = (idx < 0) | (t >= ends[np.clip(idx, 0, None)])
        idx = np.where(bad, len(self.seg_stage), idx)
        return labels[idx]

    def stage_at(self, t_sim: float) -> str:
        """Stage at sim time ``t_sim`` (internal, scalar)."""
        i = bisect.bisect_right(self.seg_start, t_sim) - 1
        if i < 0 or t_sim >= self.seg_end[i]:
            return ""
        return self.seg_stage[i]

    def phase(self, generator: str, t_s: np.ndarray | float) -> np.ndarray:
        """Noise-free phase of a generator at host-clock times.

        Parameters
        ----------
        generator : "so" | "spindle" | "theta"
        t_s : float or ndarray
            Host-clock times, seconds.

        Returns
        -------
        ndarray, same shape as ``t_s``, degrees in (-180, 180]
            Cosine phase (0 = positive peak, +-180 = trough); NaN where the generator is
            inactive.
        """
        t = np.atleast_1d(np.asarray(t_s, dtype=float)) - self.t0_s
        if generator == "so":
            out = self._so_phase(t)
        elif generator == "spindle":
            out = self._spindle_phase(t)
        elif generator == "theta":
            out = self._theta_phase(t)
        else:
            raise ValueError(f"Truth.phase: unknown generator {generator!r}; use one of "
                             f"{', '.join(GENERATORS)}")
        return out.reshape(np.shape(t_s)) if np.ndim(t_s) else out.reshape(())

    # ---- SO: piecewise-linear phase through the cycle's zero crossings and extrema
    def _so_tables(self) -> tuple[np.ndarray, np.ndarray]:
        if "so" not in self._cache:
            cyc = sorted((r for r in self._records if r.kind == "so"), key=lambda r: r.onset)
            knots = np.array([[r.onset, r.meta["trough_s"], r.meta["rise_s"], r.peak, r.offset]
                              for r in cyc], dtype=float).reshape(-1, 5)
            self._cache["so"] = (knots[:, 0].copy(), knots)
        return self._cache["so"]

    def _so_phase(self, t: np.ndarray) -> np.ndarray:
        starts, knots = self._so_tables()
        out = np.full(t.shape, np.nan)
        if not len(starts):
            return out
        i = np.searchsorted(starts, t, side="right") - 1
        ok = i >= 0
        ic = np.clip(i, 0, None)
        k = knots[ic]
        ok &= t < k[:, 4]
        # phases at the knots: start 90, trough 180, rising zero 270, peak 360, end 450
        ph = np.full(t.shape, np.nan)
        for j in range(4):
            a, b = k[:, j], k[:, j + 1]
            sel = ok & (t >= a) & (t < b)
            ph[sel] = 90.0 * (j + 1) + 90.0 * (t[sel] - a[sel]) / (b[sel] - a[sel])
        out[ok] = wrap_deg(ph[ok])
        return out

    # ---- spindle: linear phase 0 at the envelope peak
    def _spindle_tables(self) -> np.ndarray:
        if "spindle" not in self._cache:
            sp = sorted((r for r in self._records if r.kind == "spindle"), key=lambda r: r.onset)
            self._cache["spindle"] = np.array(
                [[r.onset, r.offset, r.peak, r.meta["frequency_hz"]] for r in sp],
                dtype=float).reshape(-1, 4)
        return self._cache["spindle"]

    def _spindle_phase(self, t: np.ndarray) -> np.ndarray:
        tab = self._spindle_tables()        # spindles never overlap (refractory)
        out = np.full(t.shape, np.nan)
        if not len(tab):
            return out
        i = np.searchsorted(tab[:, 0], t, side="right") - 1
        ic = np.clip(i, 0, None)
        ok = (i >= 0) & (t < tab[ic, 1])
        out[ok] = wrap_deg(360.0 * tab[ic[ok], 3] * (t[ok] - tab[ic[ok], 2]))
        return out

    # ---- fast scalar queries near the present (used while the simulation runs)
    def phase_at(self, generator: str, t: float, lookback: int = 64) -> float:
        """Phase (degrees) of a generator at sim time ``t``, searching only the most recent
        ``lookback`` events of that kind — O(1) for queries near the simulation's present.
        """
        if generator == "theta":
            st = self.stage_at(t)
            if st not in ("wake", "REM"):
                return math.nan
            g = self.theta_generator_phase(np.array([t]))
            return float(wrap_deg(np.degrees(theta_warp(g, self.theta_asym)))[0]) \
                if np.isfinite(g[0]) else math.nan
        recs = self._by_kind.get(generator, [])
        for r in reversed(recs[-lookback:]):
            if r.onset <= t < r.offset:
                if generator == "spindle":
                    return float(wrap_deg(360.0 * r.meta["frequency_hz"] * (t - r.peak)))
                k = (r.onset, r.meta["trough_s"], r.meta["rise_s"], r.peak, r.offset)
                for j in range(4):
                    if k[j] <= t < k[j + 1]:
                        return float(wrap_deg(90.0 * (j + 1) + 90.0 * (t - k[j])
                                              / (k[j + 1] - k[j])))
        return math.nan

    def record_at(self, kind: str, t: float, lookback: int = 64) -> EventRecord | None:
        """The most recently started event of ``kind`` whose span contains sim time
        ``t`` (searching the last ``lookback`` of that kind; internal), or None."""
        for r in reversed(self._by_kind.get(kind, [])[-lookback:]):
            if r.onset <= t < r.offset:
                return r
        return None

    # ---- theta: integrated piecewise-linear frequency, warped for asymmetry
    def theta_generator_phase(self, t: np.ndarray) -> np.ndarray:
        """Unwrapped generator phase (rad) at sim times ``t`` (NaN outside the knots)."""
        k = self.theta_knots
        kt, kf, kp = k[:, 0], k[:, 1], k[:, 2]
        out = np.full(t.shape, np.nan)
        if len(kt) < 2:
            return out
        i = np.clip(np.searchsorted(kt, t, side="right") - 1, 0, len(kt) - 2)
        ok = (t >= kt[0]) & (t <= kt[-1])
        tau = t - kt[i]
        dt = kt[i + 1] - kt[i]
        slope = (kf[i + 1] - kf[i]) / dt
        out[ok] = (kp[i] + 2 * math.pi * (kf[i] * tau + 0.5 * slope * tau * tau))[ok]
        return out

    def _theta_phase(self, t: np.ndarray) -> np.ndarray:
        g = self.theta_generator_phase(t)
        stages = self.stages(t + self.t0_s)
        active = (stages == "wake") | (stages == "REM")
        w = theta_warp(g, self.theta_asym)
        out = np.where(active & np.isfinite(w), np.degrees(w), np.nan)
        return np.where(np.isfinite(out), wrap_deg(out), np.nan)

    # ---------------------------------------------------------------- persistence
    def to_json(self) -> str:
        """Serialise (times stay in sim seconds plus ``t0_s``)."""
        recs = [[r.kind, r.channel, r.onset, r.peak, r.offset, r.meta] for r in self._records]
        return json.dumps({
            "format": "engramloop.truth/1", "rate_hz": self.rate_hz,
            "channels": list(self.channels), "t0_s": self.t0_s, "until_s": self.until_s,
            "records": recs,
            "segments": [self.seg_start, self.seg_end, self.seg_stage],
            "theta": [self.theta_knots.tolist(), self.theta_asym],
            "memory": self.memory,
        }, default=_json_default)

    @classmethod
    def from_json(cls, text: str) -> Truth:
        """Rebuild a Truth written by :meth:`to_json`.

        Raises
        ------
        ValueError
            If the text is not an engramloop truth document.
        """
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"truth: not JSON: {exc}") from None
        if not isinstance(d, dict) or d.get("format") != "engramloop.truth/1":
            raise ValueError("truth: not an engramloop truth document "
                             "(missing format 'engramloop.truth/1')")
        tr = cls(d["rate_hz"], tuple(d["channels"]), d["t0_s"])
        tr.until_s = d["until_s"]
        for kind, ch, on, pk, off, meta in d["records"]:
            tr.add(EventRecord(kind, ch, on, pk, off, meta))
        tr.seg_start, tr.seg_end, tr.seg_stage = (list(x) for x in d["segments"])
        knots, tr.theta_asym = d["theta"]
        for t, f, ph in knots:
            tr.add_theta_knot(t, f, ph)
        tr.memory = d.get("memory", {})
        return tr

    def save(self, path: str | Path) -> None:
        """Write the truth as JSON to ``path``."""
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Truth:
        """Read a truth JSON file written by :meth:`save`."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"truth file not found: {p}")
        return cls.from_json(p.read_text(encoding="utf-8"))


def theta_warp(g: np.ndarray, asym: float) -> np.ndarray:
    """Map the uniform theta generator phase (rad) to waveform cosine phase (rad).

    The rising half (trough to peak) takes ``(1 - asym)/2`` of a cycle and the falling half
    ``(1 + asym)/2`` — the sawtooth shape of CA1 theta (Buzsaki 2002 Neuron 33:325).
    Generator phase +-pi is the waveform trough.
    """
    x = np.mod(np.asarray(g) + math.pi, 2 * math.pi)     # 0 at the trough
    rise = (1.0 - asym) * math.pi                         # generator span of the rise
    return np.where(x < rise, x / rise * math.pi,
                    math.pi + (x - rise) / (2 * math.pi - rise) * math.pi) - math.pi


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"truth: cannot serialise {type(o).__name__}")
