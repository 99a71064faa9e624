from typing import Any

import numpy as np

class FilterBank:
    """SOS cascade over time-major float64 blocks with per-channel state, plus an
    optional moving RMS envelope over ``window`` samples."""

    def __init__(self, sos: np.ndarray, n_channels: int, window: int = 0) -> None: ...
    @property
    def n_sections(self) -> int: ...
    @property
    def n_channels(self) -> int: ...
    @property
    def window(self) -> int: ...
    def process(self, x: np.ndarray, out: np.ndarray) -> np.ndarray: ...
    def process_rms(
        self, x: np.ndarray, filtered: np.ndarray, envelope: np.ndarray
    ) -> np.ndarray: ...
    def pick_rms(
        self, samples: np.ndarray, cols: np.ndarray, weights: np.ndarray,
        filtered: np.ndarray, envelope: np.ndarray
    ) -> np.ndarray:
        """``process_rms`` of columns picked (``weights`` empty) or pooled (``weights``:
        column 0 = weighted sum of the first ``len(weights)`` picked columns) out of
        ``samples`` (n, C), filtered in place in ``filtered``."""
    def get_state(self, buf: Any) -> None: ...
    def set_state(self, buf: Any) -> None: ...
    def reset_envelope(self) -> None: ...

def threshold_runs(feature: np.ndarray, median: np.ndarray, sd: np.ndarray, k_sd: float,
                   carry: np.ndarray, runs: np.ndarray, thr: np.ndarray) -> int:
    """``thr = median + k_sd * sd``; per-channel length of the run of ``feature > thr``
    ending at each sample, continuing ``carry`` (updated). Returns the largest run."""

def baseline_runs(feature: np.ndarray, first: int, step: int, ring: np.ndarray,
                  pos: np.ndarray, count: np.ndarray, excl: np.ndarray, median: np.ndarray,
                  sd: np.ndarray, k_sd: float, carry: np.ndarray, median_out: np.ndarray,
                  sd_out: np.ndarray, thr: np.ndarray, runs: np.ndarray) -> int:
    """RobustBaseline.process for a block without an update point (stats copied out,
    decimated samples pushed into the ring unless above ``excl``), then ``threshold_runs``.
    Returns the largest run."""

def spindle_runs(env: np.ndarray, eb: np.ndarray, es: np.ndarray, pm: np.ndarray,
                 ea: np.ndarray | None, med: np.ndarray, sd: np.ndarray, k_lo: float,
                 k_hi: float, rel_min: float, corr_min: float, alpha_max: float, min_n: int,
                 max_n: int, k_art: float, hold_n: int, carry: np.ndarray,
                 hold: np.ndarray, runs: np.ndarray,
                 fire: np.ndarray) -> tuple[int, int]:
    """Per-channel run lengths of ``env`` above the low threshold ``med + k_lo * sd``
    (continuing ``carry``, updated) into ``runs``, and ``fire`` = 1 where the run is at least
    ``min_n`` and less than ``max_n`` long and the high threshold, relative power,
    correlation and alpha rules hold. Samples with ``env > med + k_art * sd`` and the
    ``hold_n`` after the last such one (``hold``: samples left, carried) are held: run 0,
    no fire. ``hold`` may be (5, c) int64 instead: row 0 the hold, rows 1-4 what the gates
    passed over, counted per channel across blocks (state bits; runs that met every firing
    rule but the alpha veto at some sample and never all, counted when they end; artefact
    stretches; held samples). Returns (largest run, number of fire samples)."""

class RipplePlan:
    """The ripple detector's chunk without a baseline update point, its banks and buffers
    bound and checked once (the plan references the banks and holds a view of every buffer
    until it is freed, so none can be resized meanwhile; the caller reads and writes them
    in place). ``theta``, ``delta`` and ``hold`` are ignored (may be None) when
    ``gate_col`` is -1."""

    def __init__(self, times: np.ndarray, cols: np.ndarray, weights: np.ndarray,
                 band: FilterBank, work: np.ndarray, runs: np.ndarray, step: int,
                 ring: np.ndarray, pos: np.ndarray, count: np.ndarray, excl: np.ndarray,
                 median: np.ndarray, sd: np.ndarray, k_sd: float, carry: np.ndarray,
                 n_det: int, k_art: float, gate_col: int, theta: FilterBank | None,
                 delta: FilterBank | None, hold: np.ndarray | None) -> None: ...
    @property
    def cap(self) -> int:
        """The most samples one ``run`` takes (the bound work array's rows)."""
    def run(self, samples: np.ndarray, first: int, t: np.ndarray,
            times_index: int) -> tuple[int, int]:
        """One chunk: ``t`` (seconds) into the time ring ``times`` at ``times_index``,
        ``band.pick_rms``, ``baseline_runs`` on the envelope (volts; ``first`` the absolute
        index of the chunk's first sample), the artefact test (any of the first ``n_det``
        columns above ``median + k_art * sd``) and, unless there is an artefact or
        ``gate_col`` is -1, the theta and delta envelopes of column ``gate_col`` (``hold``
        gets its last sample). ``work`` (flat) holds five (cap, c) blocks -- filtered,
        envelope, median, SD, threshold -- then three (cap, 1) -- gate scratch, theta and
        delta envelopes; ``runs`` (>= cap, c) int64. samples (n, C) float64 volts,
        n <= cap. Returns (largest run, artefact flag)."""

class SpindlePlan:
    """The spindle detector's chunk, its banks and buffers checked once and bound: the
    plan references the banks and holds a view of every buffer until it is freed (so none
    of them can be resized meanwhile; the caller writes into them in place). ``alpha``
    None: no alpha veto."""

    def __init__(self, cols: np.ndarray, broad: FilterBank, sigma: FilterBank,
                 alpha: FilterBank | None, pm: FilterBank, env: FilterBank, w0: float,
                 xs_last: np.ndarray, work: np.ndarray, iwork: np.ndarray,
                 runstate: np.ndarray, step: int, ring: np.ndarray, pos: np.ndarray,
                 count: np.ndarray, excl: np.ndarray, median: np.ndarray, sd: np.ndarray,
                 k_lo: float, k_hi: float, rel_min: float, corr_min: float,
                 alpha_max: float, min_n: int, max_n: int, k_art: float,
                 hold_n: int) -> None: ...
    @property
    def cap(self) -> int:
        """The most samples one ``run`` takes (the bound work arrays' rows)."""
    def run(self, samples: np.ndarray, first: int, rules: bool) -> tuple[int, int] | None:
        """One chunk of the spindle detector, the separate calls' operations in their order:
        pick ``samples[:, cols]`` (samples (n, C) float64, volts, n <= cap; cols (c,)
        int64), then ``broad.process_rms`` -> xb, eb; ``sigma.process_rms(xb)`` -> xs, es;
        ``quadrature_sums(xs, xb, xs_last, w0)`` -> sums, amp (``w0``: sigma centre,
        radians per sample); the moving RMS of sums in ``pm`` (4c channels) and of amp in
        ``env`` (c channels; both without sections) -> pm, env; unless alpha is None
        ``alpha.process_rms(xb)`` -> xa, ea. ``work`` (18 cap, c) float64 holds the
        C-contiguous blocks xb, eb, xs, es (cap, c), sums, pm (cap, 4c), amp, env, xa, ea,
        med, sd (cap, c), each written in its first n rows (volts); ``iwork`` (2 cap, c)
        int64 holds runs, fire. With ``rules`` false that is all and None is returned.
        Else, for a block with no baseline update point (``first``: absolute index of its
        first sample, >= 0): med/sd = ``median``/``sd`` per row; samples at absolute
        indices that are multiples of ``step`` are pushed into ``ring`` (c, L) at ``pos``
        (count += 1) unless env > ``excl`` (``RobustBaseline.process``); then
        ``spindle_runs`` with carry, hold = ``runstate`` (2, c) int64 (samples), or
        (6, c) with the counts of ``spindle_runs``' (5, c) hold in rows 2-5. Returns
        (largest run, number of fire samples)."""

class SoPlan:
    """The slow-oscillation detector's block with no baseline update point in it, its
    banks and buffers bound and checked once. ``cols`` (k,) int64 picked columns; gate
    banks both None: no gate; ``ring`` None: the fixed ``threshold_v`` (volts), and
    ``pos`` .. ``median``, ``step`` are ignored."""

    def __init__(self, cols: np.ndarray, filt: FilterBank, gate_slow: FilterBank | None,
                 gate_fast: FilterBank | None, work: np.ndarray, state: np.ndarray,
                 ring: np.ndarray | None, pos: np.ndarray, count: np.ndarray,
                 excl: np.ndarray, median: np.ndarray, step: int, threshold_v: float,
                 scale: float, floor_v: float, refractory_s: float) -> None: ...
    @property
    def cap(self) -> int:
        """The most samples one ``run`` takes (the bound work array's rows)."""
    def run(self, samples: np.ndarray, first: int, t: np.ndarray,
            scan: bool) -> tuple[tuple[int, int, float, float, float], ...]:
        """One block: ``samples`` (n, C) volts, n <= cap; ``first`` the absolute index of
        its first sample; ``t`` (n,) seconds. Writes into ``work`` (6, cap, k): the picked
        input, it through ``filt`` (volts), gate scratch, the moving RMS of the input
        through ``gate_slow`` / ``gate_fast`` (volts), and the threshold (volts):
        ``threshold_v``, or with a ``ring`` (k, L) the adaptive ``min(median * scale,
        floor_v)`` after pushing ``|filtered|`` at absolute indices that are multiples of
        ``step`` (unless above ``excl``; ``pos``, ``count`` (k,) int64 advance). With
        ``scan`` the down-state machine runs on ``state`` (k, 5) = [state 0/1/2, onset_s,
        trough_v, trough_s, rearm_s] (``refractory_s`` seconds after an event); without
        (calibrating) it does not. Returns the down states that ended in the block as
        (sample, channel, onset_s, trough_v (V), trough_s), in (sample, channel) order;
        ``()`` when none did."""
    def scan(self, t: np.ndarray, start: int,
             n: int) -> tuple[tuple[int, int, float, float, float], ...]:
        """The down-state machine alone, as ``run`` does it, over rows ``start`` .. ``n``
        of ``work``'s band-passed plane against its threshold plane as they are (the
        Python path fills them in a block with a baseline update point); ``t`` (n,)
        seconds, 0 <= start <= n <= cap. Updates ``state``; returns as ``run``."""

class EchtPlan:
    """The single-channel ECHT estimator's buffer and estimate, its anti-alias bank and
    buffers bound and checked once. ``col``: the channel's column; ``aa``: the 1-channel
    anti-alias bank or None; ``q``: the decimation factor; ``state`` (3,) int64 =
    [samples seen, write position, values written]; ``ring`` (2N,) the doubled window;
    ``kernels`` (5, N): the endpoint kernel's real and imaginary parts, the same ``lag``
    samples earlier, and 1/N; ``rate_hz``: the decimated rate; the band ``lo_hz``..
    ``hi_hz``; ``phase_rad``, ``gain`` (G,): the causal filter's response on a uniform grid
    over the band, or both None (no compensation)."""

    def __init__(self, col: int, aa: FilterBank | None, q: int, state: np.ndarray,
                 ring: np.ndarray, kernels: np.ndarray, rate_hz: float, lag: int,
                 lo_hz: float, hi_hz: float, phase_rad: np.ndarray | None,
                 gain: np.ndarray | None) -> None: ...
    @property
    def n(self) -> int:
        """The window's length N (decimated samples)."""
    def push(self, samples: np.ndarray) -> int:
        """Column ``col`` of ``samples`` (n, C) through ``aa``, decimated by ``q``
        (absolute sample index ``q - 1`` modulo ``q`` kept), written into the doubled
        ring; ``state`` updated. Returns the row of the last kept sample or -1."""
    def estimate(self) -> tuple[float, float, float, float]:
        """At the newest kept sample: (phase in degrees wrapped to (-180, 180], frequency
        in Hz clipped to [lo_hz, hi_hz], amplitude in the input's units, confidence 0-1);
        (nan, nan, nan, 0) while a non-finite sample is in the window."""

def quadrature_sums(xs: np.ndarray, xb: np.ndarray, xs_last: np.ndarray, w0: float,
                    out: np.ndarray, amp: np.ndarray | None) -> np.ndarray:
    """``[xs + xb, xs - xb, q + xb, q - xb]`` into ``out`` (n, 4c) with ``q`` the first
    difference of ``xs`` (continuing from ``xs_last``, updated) divided by ``2 sin(w0 / 2)``
    (``w0``: centre frequency, radians per sample), and unless ``amp`` is None the
    instantaneous amplitude ``sqrt((i^2 + q^2) / 2)`` into ``amp`` (n, c), ``i`` the
    midpoint ``(xs[n] + xs[n-1]) / (2 cos(w0 / 2))``."""

def baseline_push(feature: np.ndarray, first: int, step: int, absolute: bool,
                  ring: np.ndarray, pos: np.ndarray, count: np.ndarray,
                  excl: np.ndarray) -> None:
    """Every row ``i`` of ``feature`` (n, c) whose absolute index ``first + i`` is a multiple
    of ``step`` is pushed, per channel, into ``ring`` (c, L) at ``pos`` (advancing it,
    ``count += 1``) unless above ``excl`` (NaN is not kept); its absolute value when
    ``absolute``. ``pos``, ``count`` (c,) int64; ``excl`` (c,) float64."""

def median_mad(ring: np.ndarray, counts: np.ndarray, min_count: int, scratch: np.ndarray,
               median: np.ndarray, mad: np.ndarray) -> None:
    """Per row of ``ring`` (c, L), over its first ``min(counts[j], L)`` values: the median
    and the median absolute deviation (as ``numpy.median``); NaN when fewer than
    ``min_count`` values. ``scratch`` (L,) is work space."""

def running_median_mad(ring: np.ndarray, pos: np.ndarray, counts: np.ndarray,
                       min_count: int, prev: np.ndarray, sorted: np.ndarray,
                       synced: np.ndarray, scratch: np.ndarray, index: np.ndarray,
                       median: np.ndarray, mad: np.ndarray) -> None:
    """:func:`median_mad`'s statistics, bit for bit, from a sorted copy of each row of
    ``ring`` (c, L) kept up to date across calls: the values written since the last call
    (slots ``synced[j] .. counts[j] - 1`` mod L; ``pos == counts mod L``) are merged in and
    the ones they replaced (kept in ``prev`` (c, L)) taken out of ``sorted`` (c, L); the
    median is read off it and the MAD found by a binary search over the deviations on
    either side. ``prev``, ``sorted``, ``synced`` (c,) int64 are the state (zeros for a new
    or reset ring); ``scratch`` (2 L,) float64 and ``index`` (2 L,) int64 are work space."""

def rearm_index(t: np.ndarray, feature: np.ndarray, median: np.ndarray, sd: np.ndarray,
                k_sd: float, after_s: float, start: int) -> int:
    """The first row ``i >= start`` with ``t[i] >= after_s`` whose ``feature[i, 0]`` is not
    ``>= median[i, 0] + k_sd * sd[i, 0]`` (NaN re-arms), or -1."""

def ripple_candidate(runs: np.ndarray, theta_env: np.ndarray | None,
                     delta_env: np.ndarray | None, min_n: int, gate_k: float,
                     start: int) -> int:
    """The first row ``i >= start`` with ``runs[i, 0] >= min_n`` (samples) and, unless
    ``theta_env`` is None, ``theta_env[i, 0] <= gate_k * delta_env[i, 0]`` (the theta gate
    open; NaN closes it), or -1."""

def first_at_or_after(t: np.ndarray, time_s: float, start: int) -> int:
    """The first row ``i >= start`` with ``t[i] >= time_s`` (seconds; NaN compares False),
    or -1. ``t``: (n,) float64."""
