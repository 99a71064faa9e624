"""Any BrainFlow board as a Source: EEG rows scaled to volts, board timestamps mapped to
the host clock, packet-counter gap detection, stale-stream detection.

BrainFlow returns data as a (rows, samples) array whose row layout is given by
``BoardShim.get_board_descr(board_id)``; EEG rows are in microvolts (BrainFlow docs, "Data
format description"; for the Cyton, counts x 4.5 V / (2^23 - 1) / gain 24). The timestamp
row is BrainFlow's ``get_timestamp()`` taken when a packet was parsed: Unix time in
seconds, which we shift onto the host monotonic clock.

The package-number row is the board's packet counter. OpenBCI Cyton sends an 8-bit counter
that wraps at 256 (OpenBCI Cyton data format docs); with the Daisy module BrainFlow joins
packet pairs and keeps the odd counter of each pair, so consecutive samples step by 2 and
the counter takes 128 values. A counter alone cannot see a gap longer than one wrap (about
1 s at 250 Hz), so gaps are sized from host time first and refined by the counter.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from engramloop.core.chunk import Chunk, SourceError
from engramloop.drivers.brainflow_lib import load_brainflow
from engramloop.drivers.ftdi import check_latency_timer

log = logging.getLogger(__name__)

# input range (volts, +-) of the boards whose front end we know: the Cyton family's
# ADS1299 spans +-VREF/gain with VREF = 4.5 V (TI ADS1299 datasheet) at OpenBCI's default
# gain of 24 (OpenBCI Cyton docs), i.e. +-187.5 mV; other boards: unknown (no clip check)
_FULL_SCALE_V = {name: 4.5 / 24 for name in ("CYTON_BOARD", "CYTON_DAISY_BOARD",
                                             "CYTON_WIFI_BOARD", "CYTON_DAISY_WIFI_BOARD")}

# boards whose EEG comes from a converter of at most 24 bits, so the recorder stores it
# in float32 (engramloop.core.sample_format): the Cyton family's TI ADS1299 (24-bit, TI
# ADS1299 datasheet), the Ganglion's Microchip MCP3912 (24-bit, MCP3912 datasheet; the
# Ganglion sends 18/19-bit deltas of it, OpenBCI Ganglion data format docs) and
# BrainFlow's synthetic board (generated values); any other board is stored in float64
_FLOAT32_BOARDS = frozenset(("CYTON_BOARD", "CYTON_DAISY_BOARD", "CYTON_WIFI_BOARD",
                             "CYTON_DAISY_WIFI_BOARD", "GANGLION_BOARD",
                             "GANGLION_WIFI_BOARD", "GANGLION_NATIVE_BOARD",
                             "SYNTHETIC_BOARD"))

# counter step between consecutive samples, per BrainFlow board name; default 1
_COUNTER_STEP = {"CYTON_DAISY_BOARD": 2, "CYTON_DAISY_WIFI_BOARD": 2}
_COUNTER_MODULUS = 256


def board_id(name: str) -> int:
    """BrainFlow board id from a friendly name (``cyton``, ``cyton_daisy``,
    ``CYTON_BOARD``, ``"0"``); raises SourceError listing valid names."""
    from brainflow.board_shim import BoardIds

    key = name.strip()
    if key.lstrip("-").isdigit():
        bid = int(key)
        if bid in {b.value for b in BoardIds}:
            return bid
    key = key.upper().replace("-", "_").replace(" ", "_")
    for cand in (key, key + "_BOARD"):
        if cand in BoardIds.__members__:
            return BoardIds[cand].value
    names = ", ".join(sorted(n[:-6].lower() for n in BoardIds.__members__ if n.endswith("_BOARD")))
    raise SourceError(f"unknown BrainFlow board {name!r}; known boards: {names}")


def counter_step(board: int) -> int:
    """Packet-counter increment per sample for a BrainFlow board id (2 for Cyton+Daisy)."""
    from brainflow.board_shim import BoardIds

    return _COUNTER_STEP.get(BoardIds(board).name, 1)


def board_sample_format(board: int) -> str:
    """How a recording may store this BrainFlow board's EEG: ``"float32"`` for a board
    with a converter of at most 24 bits (see ``_FLOAT32_BOARDS``), else ``"float64"``."""
    from brainflow.board_shim import BoardIds

    return "float32" if BoardIds(board).name in _FLOAT32_BOARDS else "float64"


def board_names() -> list[str]:
    """Every BrainFlow board name accepted by :func:`board_id`."""
    from brainflow.board_shim import BoardIds

    return sorted(n[:-6].lower() for n in BoardIds.__members__
                  if n.endswith("_BOARD") and n != "NO_BOARD")


class CounterGapDetector:
    """Count samples lost between consecutive samples from a wrapping packet counter and
    host timestamps.

    Parameters
    ----------
    rate_hz : float
        Nominal sampling rate.
    step : int
        Counter increment per sample (1 for Cyton, 2 for Cyton+Daisy).
    modulus : int
        Counter wraps at this value (256 for an 8-bit counter).
    """

    def __init__(self, rate_hz: float, step: int = 1, modulus: int = _COUNTER_MODULUS) -> None:
        self.rate_hz = float(rate_hz)
        self.step = int(step)
        self.modulus = int(modulus)
        self.cycle = self.modulus // self.step  # distinct counter values
        self._prev_counter: int | None = None
        self._prev_t: float | None = None

    def reset(self) -> None:
        self._prev_counter = None
        self._prev_t = None

    def update(self, counters: np.ndarray, times_s: np.ndarray) -> np.ndarray:
        """Lost samples before each sample, shape (n,), int.

        ``counters`` (n,) counter values; ``times_s`` (n,) host times in seconds.
        """
        counters = np.asarray(counters).astype(np.int64)
        times_s = np.asarray(times_s, dtype=np.float64)
        n = counters.size
        lost = np.zeros(n, dtype=np.int64)
        if n == 0:
            return lost
        prev_c = np.empty(n, dtype=np.int64)
        prev_t = np.empty(n, dtype=np.float64)
        prev_c[1:], prev_t[1:] = counters[:-1], times_s[:-1]
        first = self._prev_counter is not None
        if first:
            prev_c[0], prev_t[0] = self._prev_counter, self._prev_t
        else:  # no previous sample: any finite value (lost[0] is set to 0 below)
            prev_c[0], prev_t[0] = counters[0], times_s[0]
        d_counter = ((counters - prev_c) % self.modulus) // self.step  # 1 when nothing lost
        missing = (d_counter - 1) % self.cycle
        # host time says how many whole wraps could hide in between: choose the count of
        # lost samples consistent with the counter that is closest to the time estimate
        by_time = (times_s - prev_t) * self.rate_hz - 1.0
        wraps = np.maximum(np.round((by_time - missing) / self.cycle), 0)
        lost[:] = missing + wraps * self.cycle
        if not first:
            lost[0] = 0
        self._prev_counter = int(counters[-1])
        self._prev_t = float(times_s[-1])
        return lost


class BrainFlowSource:
    """A BrainFlow board as a Source.

    Parameters
    ----------
    settings : drivers.sources.BrainFlowSettings
        Board name, port and parameters.
    serial_port : str, optional
        Overrides ``settings.serial_port``.
    channels : sequence of str
        EEG channel names to keep, in order (BrainFlow's names, e.g. ``C3``; default all).

    Attributes
    ----------
    stale : bool
        True while no data has arrived for ``settings.stale_after_s``.
    lost_samples : int
        Samples lost so far (counter/host-time gaps).
    """

    def __init__(self, settings: Any, *, serial_port: str | None = None,
                 channels: Sequence[str] = ()) -> None:
        load_brainflow()
        from brainflow.board_shim import BoardShim

        self.settings = settings
        self.board_name = settings.board
        self.board_id = board_id(settings.board)
        self.serial_port = serial_port or settings.serial_port
        data_board = self.board_id
        if settings.master_board:
            data_board = board_id(settings.master_board)
        self._data_board = data_board
        descr = BoardShim.get_board_descr(data_board)
        self._descr = descr
        eeg_rows = list(descr["eeg_channels"])
        names = str(descr.get("eeg_names", "")).split(",")
        if len(names) != len(eeg_rows):
            names = [f"EEG{i + 1}" for i in range(len(eeg_rows))]
        if channels:
            missing = [c for c in channels if c not in names]
            if missing:
                raise SourceError(f"BrainFlow board {self.board_name}: no channel(s) "
                                  f"{', '.join(missing)}; it has {', '.join(names)}")
            eeg_rows = [eeg_rows[names.index(c)] for c in channels]
            names = list(channels)
        self._rows = np.array(eeg_rows, dtype=np.intp)
        self.channels = tuple(names)
        self.rate_hz = float(descr["sampling_rate"])
        self._ts_row = descr.get("timestamp_channel")
        self._pkg_row = descr.get("package_num_channel")
        self._gaps = CounterGapDetector(self.rate_hz, step=counter_step(data_board))
        self._board: Any = None
        self._index = 0
        self._last_data_host = float("nan")
        self.stale = False
        self.lost_samples = 0
        from brainflow.board_shim import BoardIds

        #: input range, volts (+-); inf when the board's front end is not known. Assumes
        #: the default gain: a board reconfigured to another gain must not trust it.
        self.full_scale_v = _FULL_SCALE_V.get(BoardIds(data_board).name, float("inf"))
        #: how the recorder may store the samples (a <= 24-bit converter: float32)
        self.sample_format = board_sample_format(data_board)
        self._wall_to_host = 0.0
        self._carry: tuple | None = None

    # -- life cycle -----------------------------------------------------------------------
    def _where(self) -> str:
        return f"BrainFlow board {self.board_name}" + (f" on {self.serial_port}"
                                                       if self.serial_port else "")

    def start(self) -> None:
        """Check the port, prepare the session and start streaming (released on failure)."""
        load_brainflow()
        from brainflow.board_shim import BoardShim, BrainFlowError, BrainFlowInputParams

        s = self.settings
        if self.serial_port and s.latency_timer_check != "off":
            ok, msg = check_latency_timer(self.serial_port)
            if not ok:
                if s.latency_timer_check == "refuse":
                    raise SourceError(msg + " (or set source.brainflow.latency_timer_check = "
                                      "\"warn\" for open-loop recording)")
                log.warning(msg)
        params = BrainFlowInputParams()
        params.serial_port = self.serial_port
        params.ip_address = s.ip_address
        params.ip_port = s.ip_port
        params.other_info = s.other_info
        params.timeout = s.timeout_s
        params.file = s.file
        if s.master_board:
            params.master_board = board_id(s.master_board)
        BoardShim.disable_board_logger()
        board = BoardShim(self.board_id, params)
        self._board = board
        try:
            board.prepare_session()
            board.start_stream(s.ring_buffer_samples)
        except BrainFlowError as exc:
            self._release()
            raise SourceError(f"{self._where()}: {exc}; check the port, power and that no "
                              "other program holds the board") from None
        except BaseException:
            self._release()
            raise
        self._last_data_host = time.monotonic()
        self._gaps.reset()
        self._index = 0

    def stop(self) -> None:
        """Stop streaming and release the session (always, also after errors)."""
        self._release()

    def _release(self) -> None:
        self._carry = None
        board, self._board = self._board, None
        if board is None:
            return
        try:
            if board.is_prepared():
                try:
                    board.stop_stream()
                except Exception:  # not streaming: nothing to stop
                    pass
        finally:
            try:
                board.release_session()
            except Exception as exc:  # report, but the session is gone either way
                log.warning("%s: release_session failed: %s", self._where(), exc)

    def __enter__(self) -> BrainFlowSource:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- reading --------------------------------------------------------------------------
    def read(self, timeout_s: float) -> Chunk | None:
        """All samples that arrived since the last read, waiting up to ``timeout_s`` for
        the first. Returns None on timeout (``stale`` is set after ``stale_after_s``);
        raises SourceError after ``error_after_s`` without data."""
        board = self._board
        if board is None:
            raise SourceError(f"{self._where()}: read() before start() or after stop()")
        if self._carry is not None:  # the part after a loss found in the last block
            carry, self._carry = self._carry, None
            return self._emit(*carry)
        deadline = time.monotonic() + timeout_s
        while True:
            n = board.get_board_data_count()
            now = time.monotonic()
            if n > 0:
                break
            silent = now - self._last_data_host
            if silent >= self.settings.error_after_s:
                raise SourceError(f"{self._where()}: no data for {silent:.1f} s; check the "
                                  "board is powered and in range, then restart")
            if silent >= self.settings.stale_after_s:
                self.stale = True
            if now >= deadline:
                return None
            time.sleep(min(0.001, max(deadline - now, 0.0)))
        data = board.get_board_data(n)
        arrival = time.monotonic()
        self._last_data_host = arrival
        self.stale = False
        samples = np.ascontiguousarray(data[self._rows].T) * 1e-6  # uV -> V
        if self._ts_row is not None:
            t_board = data[self._ts_row]
            # BrainFlow stamps with Unix time; move it onto the monotonic host clock.
            if t_board[-1] > 1e9:
                self._wall_to_host = time.monotonic() - time.time()
                t = t_board + self._wall_to_host
            else:
                t = t_board.copy()
        else:  # a board without host timestamps: spread back from arrival
            t = arrival - (np.arange(n)[::-1]) / self.rate_hz
        if self._pkg_row is not None:
            lost = self._gaps.update(data[self._pkg_row], t)
            total = int(lost.sum())
            if total:
                self.lost_samples += total
                log.warning("%s: %d samples lost", self._where(), total)
        else:
            lost = np.zeros(n, dtype=np.int64)
        return self._emit(samples, np.ascontiguousarray(t, dtype=np.float64), lost, arrival)

    def _emit(self, samples: np.ndarray, t: np.ndarray, lost: np.ndarray,
              arrival: float) -> Chunk:
        """Chunk up to the next loss inside the block; the rest waits for the next read,
        so ``gap_before`` marks exactly the sample after the lost ones."""
        later = np.flatnonzero(lost[1:]) + 1
        if later.size:
            j = int(later[0])
            self._carry = (samples[j:], t[j:], lost[j:], arrival)
            samples, t, lost = samples[:j], t[:j], lost[:j]
        first = self._index + int(lost[0])
        self._index = first + len(t)
        return Chunk(samples, t, self.rate_hz, self.channels, arrival_s=arrival,
                     first_index=first, gap_before=bool(lost[0]),
                     meta={"source": self._where(), "lost_samples": int(lost[0])})


__all__ = ["BrainFlowSource", "CounterGapDetector", "board_id", "board_names"]
