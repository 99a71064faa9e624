"""Recorded files read block by block, so a replay holds O(block) memory whatever the
night's length (issue 23).

Each reader opens a file, checks it (header, then one streaming pass over what the file
stores when its time base or samples can be broken), and then hands out consecutive
blocks ``(samples (m, k) float64 volts, timestamps (m,) float64 file seconds)`` of the
channels asked for, chosen *before* reading:

- EDF/EDF+/BDF (:class:`EdfBlocks`): the data records are read with ``readinto`` a few
  seconds at a time and converted digital -> physical per EDF spec (Kemp et al. 1992);
  times are the record onsets (EDF+ time-keeping TALs) + k / rate. No pre-pass: the
  samples are integers, so always finite, and the times are made, not stored.
  pyedflib (the counterpart) still opens continuous files first, as the header's judge.
- .npz (:class:`NpzBlocks`): each member ``.npy`` is streamed out of the zip archive
  (``zipfile`` decompresses on the fly, so ``numpy.savez_compressed`` archives stream
  as well as stored ones; a compressed archive costs one decompression per pass, two in
  all). ``np.load(mmap_mode=...)`` does not map members of an .npz, and a map of the
  whole night would count its pages in the process's resident memory anyway.
- BrainFlow CSV and OpenBCI GUI text (:class:`TextBlocks`): parsed 32768 lines at a time
  with ``numpy.loadtxt``; parse errors keep the file's line, column and byte offset.
- XDF (:class:`XdfBlocks`): one stream decoded by the project's streaming reader
  (:meth:`engramloop.recording.xdf_blocks.XdfFile.blocks`, opened through
  :func:`engramloop.recording.reader.open_file`, so with the one timestamp policy: our
  recordings' stamps as written, other writers' synchronised and dejittered); the
  file's small chunks are gathered into blocks of about :data:`BLOCK_SAMPLES`.

The checks of :func:`drivers.files.check_data` run over the blocks of the pre-pass
(:class:`TimeBaseScan`), with the same one-line errors.
"""
from __future__ import annotations

import abc
import itertools
import math
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engramloop.core import sample_format
from engramloop.core.chunk import SourceError
from engramloop.drivers.file_data import FileData, table_error
from engramloop.drivers.sources import unit_scale
from engramloop.recording.xdf_blocks import XdfFormatError

#: samples per block a reader hands out (8 channels of float64: 2 MB)
BLOCK_SAMPLES = 32768


class TimeBaseScan:
    """The checks of :func:`drivers.files.check_data` over consecutive blocks.

    ``feed(t, x)`` each block in order, then ``finish()`` raises the first problem in the
    order check_data checks (no samples, NaN/Inf stamps, steps back, constant time, a
    declared rate the stamps contradict). Also collects ``gaps`` (indices of samples more
    than 1.5 periods after the one before), ``finite`` (per channel: some finite sample)
    and the first and last stamps. Memory: one stamp per ``k`` samples (~0.5 s).
    """

    def __init__(self, path: Path, rate_hz: float, n_channels: int,
                 gaps_from_time: bool = True) -> None:
        self.path, self.rate_hz = path, float(rate_hz)
        self.n = 0
        self.finite = np.zeros(n_channels, dtype=bool)
        self.t_first = self.t_last = math.nan
        self._gaps: list[np.ndarray] = []
        self._gaps_from_time = gaps_from_time
        self._n_bad, self._first_bad = 0, -1
        self._n_back = 0
        self._back: tuple[int, float, float] | None = None
        self._k = max(10, int(self.rate_hz * 0.5)) if self.rate_hz > 0 else 10
        self._strided: list[np.ndarray] = []

    def feed(self, t: np.ndarray, x: np.ndarray | None = None) -> None:
        m = t.size
        if m == 0:
            return
        i0 = self.n
        bad = np.flatnonzero(~np.isfinite(t))
        if bad.size:
            self._first_bad = self._first_bad if self._n_bad else i0 + int(bad[0])
            self._n_bad += bad.size
        prev = self.t_last if i0 else t[0]
        dt = np.diff(t, prepend=prev)
        back = np.flatnonzero(dt < 0)
        if back.size:
            if self._back is None:
                j = int(back[0])
                self._back = (i0 + j, float(t[j]), float(t[j - 1]) if j else prev)
            self._n_back += back.size
        if self._gaps_from_time and self.rate_hz > 0:
            g = np.flatnonzero(dt > 1.5 / self.rate_hz)
            if g.size:
                self._gaps.append(g + i0)
        first = (-i0) % self._k
        self._strided.append(t[first::self._k].copy())
        if x is not None and not self.finite.all():
            self.finite |= np.isfinite(x).any(axis=0)
        if not i0:
            self.t_first = float(t[0])
        self.t_last = float(t[-1])
        self.n += m

    def add_gaps(self, idx: np.ndarray) -> None:
        """Gaps the format knows of (packet counters), sample indices in the file."""
        if idx.size:
            self._gaps.append(np.asarray(idx, dtype=np.intp))

    @property
    def gaps(self) -> np.ndarray:
        return (np.concatenate(self._gaps).astype(np.intp) if self._gaps
                else np.zeros(0, dtype=np.intp))

    def finish(self) -> None:
        path, n = self.path, self.n
        if n == 0:
            raise SourceError(f"{path}: the recording holds no samples")
        if self._n_bad:
            raise SourceError(f"{path}: {self._n_bad} timestamp(s) are NaN/Inf (first at "
                              f"sample {self._first_bad}); the file's time base is broken")
        if n < 2:
            return
        if self._back is not None:
            i, ti, tp = self._back
            raise SourceError(f"{path}: timestamps step backwards at sample {i} ({ti:.6f} s "
                              f"after {tp:.6f} s; {self._n_back} time(s) in all); replay "
                              "needs increasing times")
        if not self.t_last > self.t_first:
            raise SourceError(f"{path}: all {n} timestamps are {self.t_first:.6f} s "
                              "(constant); replay needs increasing times")
        k = self._k
        if n > 2 * k:
            # stamps k samples apart (one every k samples): strides, not single steps, so
            # host stamps that bunch up per USB packet still pass
            step = float(np.median(np.diff(np.concatenate(self._strided)))) / k
            if not step > 0:
                raise SourceError(
                    f"{path}: the timestamps do not advance over most of the file (median "
                    f"step 0 over {k}-sample strides); replay needs times that follow the "
                    "samples: fix the file's timestamps")
            implied = 1.0 / step
            if abs(implied / self.rate_hz - 1.0) > 0.1:
                raise SourceError(
                    f"{path}: declared rate {self.rate_hz:g} Hz does not match the "
                    f"timestamps (they advance at {implied:.4g} samples/s); fix the "
                    "rate or the timestamps")


class Blocks(abc.ABC):
    """What every reader gives: the file's channels (all of them), rate, per-channel full
    scale (volts, inf when the format does not say), markers, sample count, first and
    last stamp, ``gaps`` (sample indices that follow a loss) and ``finite`` (per channel:
    holds a finite sample), and :meth:`blocks`."""

    path: Path
    rate_hz: float
    channels: tuple[str, ...]
    full_scale_v: np.ndarray
    markers: dict
    n_samples: int
    t_first: float
    t_last: float
    gaps: np.ndarray
    finite: np.ndarray
    #: how a recording of the replay may store the samples (core.sample_format)
    sample_format: str = "float64"
    #: one line per part of the file the reader leaves out (EDF signals at other rates)
    notes: tuple[str, ...] = ()
    left_out: tuple[str, ...] = ()

    @abc.abstractmethod
    def blocks(self, cols: Sequence[int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Consecutive blocks of the channels ``cols`` (indices into ``channels``):
        samples (m, len(cols)) float64 volts, C-contiguous, and timestamps (m,) file
        seconds. Each reader (XDF, EDF, npz, text) defines it."""


def _finish(b: Blocks, scan: TimeBaseScan) -> None:
    scan.finish()
    b.n_samples, b.t_first, b.t_last = scan.n, scan.t_first, scan.t_last
    b.gaps, b.finite = scan.gaps, scan.finite


# ---------------------------------------------------------------------------- XDF
class XdfBlocks(Blocks):
    """One numeric stream of an XDF file (:func:`drivers.files.open_xdf` chooses it and
    its per-channel ``scales``, volts per stored unit), checked by one streaming pass.

    ``f`` is the :class:`~engramloop.recording.xdf_blocks.XdfFile` from
    :func:`engramloop.recording.reader.open_file`; ``synchronize`` is that function's
    policy (False for our recordings)."""

    def __init__(self, path: Path, f: Any, info: Any, rate_hz: float, synchronize: bool,
                 scales: Sequence[float], markers: dict, fmt: str) -> None:
        self.path, self._f, self._sid = path, f, info.stream_id
        self._sync = synchronize
        self.rate_hz = float(rate_hz)
        self.channels = tuple(info.channels)
        self._scales = np.asarray(scales, dtype=np.float64)
        self.full_scale_v = np.full(len(self.channels), np.inf)
        self.markers = markers
        self.sample_format = fmt
        _check_names(path, self.rate_hz, self.channels)
        scan = TimeBaseScan(path, self.rate_hz, len(self.channels))
        for x, t in self.blocks(range(len(self.channels))):
            scan.feed(t, x)
        _finish(self, scan)

    def blocks(self, cols: Sequence[int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        cols = list(cols)
        sc = self._scales[cols]
        xs: list[np.ndarray] = []
        ts: list[np.ndarray] = []
        m = 0
        try:
            for t, x in self._f.blocks(self._sid, synchronize=self._sync,
                                       block_samples=BLOCK_SAMPLES):
                xs.append(x[:, cols].astype(np.float64) * sc)
                ts.append(t)
                m += t.size
                if m >= BLOCK_SAMPLES:
                    yield _joined(xs, ts)
                    xs, ts, m = [], [], 0
        except (XdfFormatError, OSError) as exc:
            why = str(exc)
            where = "" if why.startswith(str(self.path)) else f"{self.path}: "
            raise SourceError(f"{where}malformed XDF samples ({why}); the file is "
                              "damaged") from None
        if m:
            yield _joined(xs, ts)


def _joined(xs: list[np.ndarray], ts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if len(ts) == 1:
        return np.ascontiguousarray(xs[0]), np.asarray(ts[0], dtype=np.float64)
    return np.concatenate(xs), np.concatenate(ts).astype(np.float64, copy=False)


# ---------------------------------------------------------------------------- EDF
class EdfBlocks(Blocks):
    """EDF/EDF+/BDF (continuous or EDF+D) data records, read a few at a time.

    ``scales`` (per ordinary signal kept, volts per physical unit) and ``full_scale``
    come from :func:`drivers.files.load_edf`'s rules; ``onsets`` are the records' start
    times (EDF+, None for plain EDF: contiguous from 0 s)."""

    def __init__(self, path: Path, h: Any, keep: list[int], scales: Sequence[float],
                 n_records: int, onsets: np.ndarray | None, markers: dict) -> None:
        self.path, self._h, self._keep = path, h, list(keep)
        self._spr = h.per_record[keep[0]]
        self.rate_hz = self._spr / h.record_s
        self.channels = tuple(h.labels[i] for i in keep)
        self.markers = markers
        sc = np.asarray(scales, dtype=np.float64)
        (pmin, pmax), (dmin, dmax) = h.phys[keep].T, h.dig[keep].T
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            gain = (pmax - pmin) / (dmax - dmin)
            off = pmax / gain - dmax
        usable = np.isfinite(gain) & np.isfinite(off) & (gain != 0)
        if not np.all(usable):
            bad = [h.labels[i] for i, ok in zip(keep, usable, strict=True) if not ok]
            raise SourceError(f"{path}: malformed EDF header: signal(s) {', '.join(bad)} have "
                              "no usable physical/digital range (equal or non-finite "
                              "minimum and maximum)")
        # physical = gain * (digital + offset), offset = pmax / gain - dmax: the EDF
        # spec's linear map written as edflib (pyedflib) computes it, then volts
        self._gain, self._off = gain * sc, off
        self.full_scale_v = np.maximum(np.abs(pmax), np.abs(pmin)) * sc
        self._n_records = int(n_records)
        self.n_samples = self._n_records * self._spr
        self.finite = np.ones(len(keep), dtype=bool)
        bps = h.bytes_per_sample
        self._starts = np.cumsum([0] + [n * bps for n in h.per_record])
        self._rb = int(self._starts[-1])
        if onsets is None or not onsets.size:
            onsets = np.arange(self._n_records) * h.record_s
        elif not h.discontinuous:   # EDF+C: contiguous from the first record's onset
            t0 = float(onsets[0]) if math.isfinite(onsets[0]) else 0.0
            onsets = t0 + np.arange(self._n_records) * h.record_s
        self._onsets = np.asarray(onsets[:self._n_records], dtype=np.float64)
        per = 1.0 / self.rate_hz
        self.t_first = float(self._onsets[0]) if self.n_samples else math.nan
        self.t_last = (float(self._onsets[-1]) + (self._spr - 1) * per if self.n_samples
                       else math.nan)
        # a record that starts more than 1.5 periods after the last sample of the one
        # before follows a gap (EDF+D)
        jump = np.diff(self._onsets) - (self._spr - 1) * per
        self.gaps = (np.flatnonzero(jump > 1.5 * per) + 1) * self._spr

    def blocks(self, cols: Sequence[int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        h, spr, bps = self._h, self._spr, self._h.bytes_per_sample
        sig = [self._keep[c] for c in cols]
        per_block = max(1, BLOCK_SAMPLES // spr)
        k = np.arange(spr) / self.rate_hz
        with open(self.path, "rb") as f:
            for r0 in range(0, self._n_records, per_block):
                nr = min(per_block, self._n_records - r0)
                buf = np.empty((nr, self._rb), dtype=np.uint8)
                f.seek(h.header_bytes + r0 * self._rb)
                got = f.readinto(memoryview(buf).cast("B"))
                if got != buf.nbytes:
                    raise SourceError(f"{self.path}: truncated EDF file: data record "
                                      f"{r0 + got // self._rb} is cut off at byte offset "
                                      f"{h.header_bytes + r0 * self._rb + got}")
                x = np.empty((nr * spr, len(cols)), dtype=np.float64)
                for j, (s, c) in enumerate(zip(sig, cols, strict=True)):
                    seg = buf[:, self._starts[s]:self._starts[s + 1]]
                    if bps == 2:
                        dig = seg.view("<i2").reshape(-1)
                    else:
                        b = seg.reshape(nr, spr, 3).astype(np.int32)
                        dig = (b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)).reshape(-1)
                        dig = np.where(dig >= 1 << 23, dig - (1 << 24), dig)
                    np.add(dig, self._off[c], out=x[:, j])
                    x[:, j] *= self._gain[c]
                t = (self._onsets[r0:r0 + nr, None] + k[None, :]).reshape(-1)
                yield x, t


# ---------------------------------------------------------------------------- NPZ
class _NpyMember:
    """One ``.npy`` member of an .npz, streamed row by row from the archive."""

    def __init__(self, zf: zipfile.ZipFile, name: str) -> None:
        self._zf, self.name = zf, name
        with zf.open(name) as f:
            self.shape, self.fortran, self.dtype = _npy_header(f)

    def rows(self, n: int = 0) -> Iterator[np.ndarray]:
        n = n or BLOCK_SAMPLES
        width = int(np.prod(self.shape[1:], dtype=np.int64)) if len(self.shape) > 1 else 1
        total = self.shape[0] if self.shape else 1
        with self._zf.open(self.name) as f:
            _npy_header(f)
            item = self.dtype.itemsize * width
            if self.fortran and len(self.shape) > 1:
                # column-major (numpy.save of a transposed array): each row is spread
                # through the whole member, so this one is read whole
                raw = f.read(total * item)
                if len(raw) != total * item:
                    raise EOFError(f"member {self.name} ends after {len(raw)} of "
                                   f"{total * item} bytes")
                a = np.frombuffer(raw, dtype=self.dtype).reshape(self.shape, order="F")
                for i in range(0, total, n):
                    yield a[i:i + n]
                return
            for i in range(0, total, n):
                m = min(n, total - i)
                raw = f.read(m * item)
                if len(raw) != m * item:
                    raise EOFError(f"member {self.name} ends after {i * item + len(raw)} "
                                   f"of {total * item} bytes")
                a = np.frombuffer(raw, dtype=self.dtype)
                yield a.reshape((m, *self.shape[1:])) if self.shape else a.reshape(())


def _npy_header(f: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    major, _ = np.lib.format.read_magic(f)
    read = (np.lib.format.read_array_header_1_0 if major == 1
            else np.lib.format.read_array_header_2_0)
    shape, fortran, dtype = read(f)
    if dtype.hasobject:
        raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
    return tuple(shape), bool(fortran), dtype


class NpzBlocks(Blocks):
    """An .npz from ``engramloop sim`` (``samples`` (n, c) volts, ``timestamps`` (n,) s,
    ``rate_hz``, ``channels``; aliases data/x, t/time_s, fs/sfreq/rate, ch_names),
    streamed: one pass checks it, :meth:`blocks` reads it again."""

    def __init__(self, path: Path, units: str = "auto", check: bool = True) -> None:
        try:
            self._open(path, units, check)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
            raise SourceError(f"{path}: malformed .npz file ({exc}); the file is damaged or "
                              "not an .npz archive (numpy.savez, engramloop sim --out X.npz)"
                              ) from None

    def _open(self, path: Path, units: str, check: bool) -> None:

        self.path, self.markers = path, {}
        self._scale = 1.0 if units == "auto" else (unit_scale(units) or 1.0)
        try:
            self._zf = zf = zipfile.ZipFile(path)
            members = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}

            def member(*names: str) -> _NpyMember | None:
                for k in names:
                    if k in members:
                        return _NpyMember(zf, members[k])
                return None

            def small(*names: str) -> Any:
                m = member(*names)
                if m is None:
                    return None
                with zf.open(m.name) as f:
                    return np.lib.format.read_array(f, allow_pickle=False)

            xs = member("samples", "data", "x")
            if xs is None:
                raise SourceError(f"{path}: .npz has no 'samples' array (has: "
                                  f"{', '.join(sorted(members))})")
            ts = member("timestamps", "t", "time_s")
            rate, ch = small("rate_hz", "fs", "sfreq", "rate"), small("channels", "ch_names")
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
            raise SourceError(f"{path}: malformed .npz file ({exc}); the file is damaged or "
                              "not an .npz archive (numpy.savez, engramloop sim --out X.npz)"
                              ) from None
        for what, dt in (("samples", xs.dtype), ("timestamps", ts.dtype if ts else None),
                         ("rate_hz", None if rate is None else np.asarray(rate).dtype)):
            if dt is not None and dt.kind == "c":
                raise SourceError(f"{path}: .npz '{what}' holds complex numbers; store real "
                                  "values (volts, seconds, Hz)")
        if xs.dtype.kind not in "biuf":
            raise SourceError(f"{path}: .npz 'samples' is not numeric (dtype {xs.dtype}); "
                              "store an (n_samples, n_channels) float array in volts")
        if len(xs.shape) not in (1, 2):
            raise SourceError(f"{path}: .npz 'samples' has shape {xs.shape}; store an "
                              "(n_samples, n_channels) array")
        if xs.dtype.kind in "biu" and units == "auto":
            # integers are ADC counts or scaled values (int16 microvolts), never volts: read
            # as volts, every amplitude -- and with it every threshold -- would be off by
            # the scale, without a word
            raise SourceError(f"{path}: .npz 'samples' holds integers ({xs.dtype}), not "
                              "volts; set source.file.units (V, mV, uV or nV) to say what "
                              "one count is, or store floats in volts")
        if ts is not None and ts.dtype.kind not in "biuf":
            raise SourceError(f"{path}: .npz 'timestamps' is not numeric (dtype {ts.dtype}); "
                              "store seconds as floats")
        n = xs.shape[0] if xs.shape else 0
        self._t_all = None
        if ts is not None and (len(ts.shape) != 1 and ts.shape[:1] != (n,)):
            try:   # stamps in an odd shape (1, n): small beside the samples, read whole
                with zf.open(ts.name) as f:
                    self._t_all = np.lib.format.read_array(f, allow_pickle=False).reshape(-1)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
                raise SourceError(f"{path}: malformed .npz file ({exc}); the file is "
                                  "damaged or not an .npz archive") from None
        self._xs, self._ts = xs, ts
        # a float32 (or int16) array stays float32 recorded
        self.sample_format = sample_format.for_dtype(xs.dtype)
        c = xs.shape[1] if len(xs.shape) == 2 else 1
        nt = int(np.prod(ts.shape, dtype=np.int64)) if ts is not None else n
        t_ends = self._t_ends() if ts is not None and nt >= 2 else None
        if rate is None:
            if t_ends is None or not t_ends[1] > t_ends[0]:
                raise SourceError(f"{path}: .npz needs 'rate_hz' (or increasing 'timestamps' "
                                  "to derive it from)")
            rate = (nt - 1) / (t_ends[1] - t_ends[0])
        rate_arr = np.asarray(rate).reshape(-1)
        try:
            if rate_arr.size != 1:
                raise ValueError
            rate = float(rate_arr[0])
        except (TypeError, ValueError):
            raise SourceError(f"{path}: .npz 'rate_hz' must be one number in Hz, got "
                              f"{np.asarray(rate).tolist()!r}") from None
        if not (math.isfinite(rate) and rate > 0):
            raise SourceError(f"{path}: .npz 'rate_hz' must be a finite number of Hz > 0, "
                              f"got {rate}")
        self.rate_hz = rate
        if t_ends is not None:
            _check_stamp_precision(path, ts.dtype, t_ends, rate)
        names = ([str(x) for x in np.atleast_1d(ch)] if ch is not None
                 else [f"ch{i + 1}" for i in range(c)])
        if nt != n or len(names) != c:
            raise SourceError(f"{path}: .npz shapes disagree: samples {xs.shape}, timestamps "
                              f"{nt}, channels {len(names)}")
        self.channels = tuple(names)
        _check_names(path, self.rate_hz, self.channels)
        self.full_scale_v = np.full(c, np.inf)
        scan = TimeBaseScan(path, rate, c)
        if check:
            for x, t in self._pairs(list(range(c))):
                scan.feed(t, x)
            _finish(self, scan)

    def _t_ends(self) -> tuple[float, float]:
        if self._t_all is not None:
            return float(self._t_all[0]), float(self._t_all[-1])
        first = last = math.nan
        for a in self._ts.rows():
            a = a.reshape(-1)
            if a.size:
                if first != first:
                    first = float(a[0])
                last = float(a[-1])
        return first, last

    def _pairs(self, cols: list[int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        i = 0
        trows = (self._ts.rows() if self._ts is not None and self._t_all is None
                 else None)
        for a in self._xs.rows():
            a = a.reshape(a.shape[0], -1)
            m = a.shape[0]
            x = np.ascontiguousarray(a[:, cols], dtype=np.float64)
            if self._scale != 1.0:
                x *= self._scale
            if self._t_all is not None:
                t = np.asarray(self._t_all[i:i + m], dtype=np.float64)
            elif trows is not None:
                t = np.asarray(next(trows), dtype=np.float64).reshape(-1)
            else:
                t = np.arange(i, i + m) / self.rate_hz
            i += m
            yield x, t

    def blocks(self, cols: Sequence[int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        try:
            yield from self._pairs(list(cols))
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
            raise SourceError(f"{self.path}: malformed .npz file ({exc}); the file is "
                              "damaged") from None


def _check_stamp_precision(path: Path, dtype: np.dtype, ends: tuple[float, float],
                           rate_hz: float) -> None:
    """Stamps stored more coarsely than a tenth of a sample period at their magnitude
    (float32 Unix-epoch seconds: 128 s apart) cannot time the samples: refuse them."""
    big = max(abs(ends[0]), abs(ends[1]))
    if not math.isfinite(big):
        return      # TimeBaseScan names NaN/Inf stamps
    if dtype.kind == "f":
        step = float(np.spacing(dtype.type(big)))
    elif dtype.kind in "iu":
        step = 1.0
    else:
        return
    if step > 0.1 / rate_hz:
        raise SourceError(f"{path}: .npz 'timestamps' are {dtype.name}, which holds "
                          f"{big:.6g} s only to {step:.3g} s (a sample period is "
                          f"{1 / rate_hz:.3g} s); store them as float64 seconds, or leave "
                          "them out and give 'rate_hz'")


def _check_names(path: Path, rate_hz: float, channels: Sequence[str]) -> None:
    if not (math.isfinite(rate_hz) and rate_hz > 0):
        raise SourceError(f"{path}: sampling rate {rate_hz} Hz is not a finite number "
                          "> 0; the file's rate field is broken")
    seen: set[str] = set()
    dup = sorted({c for c in channels if c in seen or seen.add(c)})
    if dup:
        raise SourceError(f"{path}: duplicate channel name(s) {', '.join(map(repr, dup))}; "
                          "give every channel a distinct name")


# ---------------------------------------------------------------------------- text
TEXT_ROWS = 32768


def iter_table(path: Path, what: str, *, delimiter: str, skip_lines: int = 0,
               usecols: Sequence[int] | None = None, comments: str | None = "#",
               rows: int = 0) -> Iterator[np.ndarray]:
    """A delimited numeric text table, ``rows`` lines at a time, each (m, k) float64.

    Errors are :func:`drivers.files.table_error`'s one line, with the line, column and
    byte offset in the whole file; a block whose rows have another column count than the
    rows before is the same error as numpy's within a block."""

    rows = rows or TEXT_ROWS
    with open(path, "rb") as f:
        offset = 0
        for _ in range(skip_lines):
            offset += len(f.readline())
        row0 = skip_lines      # file lines before this block
        ncols = None
        while True:
            raw = list(itertools.islice(f, rows))
            if not raw:
                return
            try:
                text = [r.decode("utf-8") for r in raw]
            except UnicodeDecodeError:
                at = offset
                for r in raw:
                    try:
                        r.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        raise SourceError(
                            f"{path}: malformed {what}: byte 0x{r[exc.start]:02x} at byte "
                            f"offset {at + exc.start} is not UTF-8 text; the file is damaged "
                            f"or not a {what}") from None
                    at += len(r)
                raise
            try:
                a = np.loadtxt(text, delimiter=delimiter, dtype=np.float64, ndmin=2,
                               usecols=usecols, comments=comments)
            except ValueError as exc:
                msg = re.sub(r"at row (\d+)", lambda m: f"at row {int(m.group(1)) + row0}",
                             str(exc))
                raise table_error(path, what, ValueError(msg)) from None
            if a.shape[0]:
                if ncols is None:
                    ncols = a.shape[1]
                elif a.shape[1] != ncols and usecols is None:
                    raise SourceError(f"{path}: malformed {what} at line {row0 + 1} (byte "
                                      f"offset {offset}): data row {row0 + 1 - skip_lines} "
                                      f"has {a.shape[1]} columns where the rows before have "
                                      f"{ncols}; the file is damaged or not a {what}")
                yield a
            offset += sum(len(r) for r in raw)
            row0 += len(raw)


class TextBlocks(Blocks):
    """A text table as blocks: ``table()`` iterates the parsed rows (m, k);
    ``convert(rows, state)`` turns them into (samples (m, c) volts of every channel,
    timestamps (m,), lost (m,) samples lost before each, or None). One pass checks,
    :meth:`blocks` parses again."""

    def __init__(self, path: Path, rate_hz: float, channels: Sequence[str],
                 table: Callable[[], Iterator[np.ndarray]],
                 convert: Callable[[np.ndarray, dict], tuple], check: bool = True) -> None:
        self.path, self.rate_hz, self.channels = path, float(rate_hz), tuple(channels)
        self.full_scale_v = np.full(len(self.channels), np.inf)
        self.markers: dict = {}
        self._table, self._convert = table, convert
        _check_names(path, self.rate_hz, self.channels)
        if not check:
            return
        scan = TimeBaseScan(path, rate_hz, len(self.channels), gaps_from_time=False)
        state: dict = {}
        for rows in table():
            x, t, lost = convert(rows, state)
            i0 = scan.n
            scan.feed(t, x)
            if lost is None:
                dt = np.diff(t, prepend=state.get("t_prev", t[0]))
                lost = dt > 1.5 / self.rate_hz
            scan.add_gaps(np.flatnonzero(lost) + i0)
            state["t_prev"] = float(t[-1])
        _finish(self, scan)

    def blocks(self, cols: Sequence[int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        state: dict = {}
        cols = list(cols)
        for rows in self._table():
            x, t, _ = self._convert(rows, state)
            yield np.ascontiguousarray(x[:, cols]), t


__all__ = ["Blocks", "EdfBlocks", "NpzBlocks", "TextBlocks", "XdfBlocks", "TimeBaseScan",
           "iter_table", "BLOCK_SAMPLES"]


def read_whole(b: Any, cols: Sequence[int] | None = None) -> FileData:
    """Every block of ``b`` (the ``cols`` channels, all by default) as one FileData."""
    cols = list(range(len(b.channels))) if cols is None else list(cols)
    xs, ts = [], []
    for x, t in b.blocks(cols):
        xs.append(x)
        ts.append(t)
    x = np.concatenate(xs) if xs else np.zeros((0, len(cols)))
    t = np.concatenate(ts) if ts else np.zeros(0)
    return FileData(x, t, b.rate_hz, [b.channels[c] for c in cols], b.markers,
                    gaps=b.gaps, full_scale_v=b.full_scale_v[cols],
                    sample_format=b.sample_format)
