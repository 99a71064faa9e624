"""Plain-NumPy twins of every kernel of the C extension ``engramloop.decoders._filters``.

One reference per kernel, written from the recurrence or rule each kernel's docstring
states (not from the C code), so a test can run a kernel and its twin on the same input
and compare (MarkupSafe keeps ``_native.py`` beside ``_speedups.c`` for the same reason).
They are slow and used only by the tests; keep their inputs small.

=====================  ==========================================================
kernel                 twin
=====================  ==========================================================
FilterBank             :class:`NumpySosFilter`, :func:`moving_rms`,
                       :class:`NumpyFilterBank` (streaming, with ``pick_rms``)
threshold_runs         :func:`threshold_runs`
baseline_runs          :func:`baseline_runs`
baseline_push          :func:`baseline_push`
median_mad             :func:`median_mad`
running_median_mad     :func:`median_mad` (the same statistics; test_running_median.py)
first_at_or_after      :func:`first_at_or_after`
RipplePlan.run         :func:`ripple_front`; :class:`RipplePlanTwin` (the plan's interface)
ripple_candidate       :func:`ripple_candidate`
rearm_index            :func:`rearm_index`
spindle_runs           :func:`spindle_rules`
quadrature_sums        :func:`quadrature_sums`
SpindlePlan.run        :func:`spindle_block`
SoPlan.run             :func:`so_down_states`, :func:`so_block`; :class:`SoPlanTwin`
EchtPlan.push          :class:`EchtPush`; :class:`EchtPlanTwin`
EchtPlan.estimate      :func:`echt_estimate`; :class:`EchtPlanTwin`
=====================  ==========================================================
"""
from __future__ import annotations

import math

import numpy as np

# ----------------------------------------------------------------- FilterBank


class NumpySosFilter:
    """Second-order sections in transposed direct form II, sample by sample, section by
    section, with the C bank's state layout (n_sections, 2, n_channels)."""

    def __init__(self, sos: np.ndarray, n_channels: int) -> None:
        sos = np.asarray(sos, dtype=np.float64).reshape(-1, 6)
        self.sos = sos / sos[:, 3:4] if len(sos) else sos
        self.n_sections = sos.shape[0]
        self.n_channels = n_channels
        self.z = np.zeros((self.n_sections, 2, n_channels))

    def process(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        y = np.array(x, dtype=np.float64, copy=True)
        for t in range(y.shape[0]):
            row = y[t]
            for s in range(self.n_sections):
                b0, b1, b2, _, a1, a2 = self.sos[s]
                z0, z1 = self.z[s, 0], self.z[s, 1]
                v = b0 * row + z0
                self.z[s, 0] = b1 * row - a1 * v + z1
                self.z[s, 1] = b2 * row - a2 * v
                row = v
            y[t] = row
        if out is None:
            return y
        out[...] = y
        return out


def moving_rms(x: np.ndarray, window: int) -> np.ndarray:
    """RMS over the last ``window`` samples (fewer at the start), computed directly."""
    x = np.asarray(x, dtype=np.float64)
    sq = x * x
    csum = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(sq, axis=0)])
    n = np.arange(1, x.shape[0] + 1)
    lo = np.maximum(n - window, 0)
    counts = (n - lo)[:, None]
    return np.sqrt(np.maximum((csum[n] - csum[lo]) / counts, 0.0))


def pick(samples: np.ndarray, cols: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The bank's input columns as ``pick_rms`` documents them: samples[:, cols], or with
    nw weights the weighted sum of the first nw picked columns, then the rest."""
    cols = np.asarray(cols, dtype=np.int64)
    nw = len(weights)
    if nw == 0:
        return samples[:, cols]
    pooled = samples[:, cols[:nw]] @ np.asarray(weights, dtype=np.float64)
    return np.column_stack([pooled, samples[:, cols[nw:]]])


class NumpyFilterBank:
    """A streaming twin of ``FilterBank(sos, n_channels, window)``: the SOS recurrence and
    a moving RMS over the last ``window`` squared values (fewer at the start), computed
    from the kept history each call rather than from running sums."""

    def __init__(self, sos: np.ndarray, n_channels: int, window: int = 0) -> None:
        self.filt = NumpySosFilter(sos, n_channels)
        self.n_channels, self.window = n_channels, window
        self.hist = np.zeros((0, n_channels))          # last window - 1 squared values

    def process(self, x: np.ndarray) -> np.ndarray:
        return self.filt.process(x)

    def rms(self, y: np.ndarray) -> np.ndarray:
        full = np.vstack([self.hist, y * y])
        end = self.hist.shape[0] + 1 + np.arange(y.shape[0])
        lo = np.maximum(end - self.window, 0)
        # each window summed on its own (no running or cumulative sums to cancel)
        sums = np.array([full[a:b].sum(axis=0) for a, b in zip(lo, end, strict=True)])
        env = np.sqrt(sums.reshape(-1, self.n_channels) / (end - lo)[:, None])
        self.hist = full[max(0, full.shape[0] - (self.window - 1)):] if self.window > 1 \
            else full[:0]
        return env

    def process_rms(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = self.process(x)
        return y, self.rms(y)

    def pick_rms(self, samples: np.ndarray, cols, weights) -> tuple[np.ndarray, np.ndarray]:
        return self.process_rms(pick(samples, cols, weights))


# ----------------------------------------------------------------- baseline and rules


def run_lengths(above: np.ndarray, carry: np.ndarray) -> np.ndarray:
    """Per column, the length of the run of True ending at each row, continuing ``carry``
    (updated to the last row)."""
    out = np.empty(above.shape, dtype=np.int64)
    for i in range(above.shape[0]):
        carry[:] = np.where(above[i], carry + 1, 0)
        out[i] = carry
    return out


def threshold_runs(feature, median, sd, k_sd, carry) -> tuple[int, np.ndarray, np.ndarray]:
    """threshold_runs: (longest, runs, thr); NaN compares False."""
    thr = median + k_sd * sd
    runs = run_lengths(feature > thr, carry)
    return int(runs.max(initial=0)), runs, thr


def baseline_runs(feature, first, step, ring, pos, count, excl, median, sd, k_sd, carry):
    """baseline_runs: samples whose absolute index first + i is a multiple of ``step`` go
    into each channel's ring at pos unless above excl (NaN is not kept); then
    threshold_runs. ring, pos, count, carry are updated; returns (longest, median_out,
    sd_out, thr, runs)."""
    n, c = feature.shape
    length = ring.shape[1]
    for i in np.flatnonzero((first + np.arange(n)) % step == 0):
        for j in range(c):
            if feature[i, j] <= excl[j]:
                ring[j, pos[j]] = feature[i, j]
                pos[j] = (pos[j] + 1) % length
                count[j] += 1
    mo, so = np.tile(median, (n, 1)), np.tile(sd, (n, 1))
    longest, runs, thr = threshold_runs(feature, mo, so, k_sd, carry)
    return longest, mo, so, thr, runs


def baseline_push(feature, first, step, absolute, ring, pos, count, excl) -> None:
    """baseline_push: rows whose absolute index first + i is a multiple of ``step`` go, per
    channel, into the ring at pos unless above excl (NaN is not kept); |value| when
    ``absolute``. ring, pos, count are updated."""
    n, c = feature.shape
    length = ring.shape[1]
    for i in np.flatnonzero((first + np.arange(n)) % step == 0):
        for j in range(c):
            v = abs(feature[i, j]) if absolute else feature[i, j]
            if v <= excl[j]:
                ring[j, pos[j]] = v
                pos[j] = (pos[j] + 1) % length
                count[j] += 1


def median_mad(ring, counts, min_count) -> tuple[np.ndarray, np.ndarray]:
    """median_mad: numpy.median of each row's first min(count, L) values and of their
    absolute deviations; NaN below min_count."""
    c, length = ring.shape
    med, mad = np.full(c, np.nan), np.full(c, np.nan)
    for j in range(c):
        k = min(int(counts[j]), length)
        if k >= min_count:
            med[j] = np.median(ring[j, :k])
            mad[j] = np.median(np.abs(ring[j, :k] - med[j]))
    return med, mad


def first_at_or_after(t, time_s, start) -> int:
    hit = np.flatnonzero(t[max(start, 0):] >= time_s)
    return max(start, 0) + int(hit[0]) if hit.size else -1


# ----------------------------------------------------------------- ripple


class TimeRingTwin:
    """The time ring ripple_front writes: t[i] at (index + i) % len(values)."""

    def __init__(self, length: int) -> None:
        self.values, self.index = np.zeros(length), 0

    def write(self, t: np.ndarray) -> None:
        self.values[(self.index + np.arange(len(t))) % len(self.values)] = t
        self.index += len(t)


def ripple_front(samples, first, t, times: TimeRingTwin, cols, weights,
                 band: NumpyFilterBank, step, ring, pos, count, excl, median, sd, k_sd, carry,
                 n_det, k_art, gate_col, theta: NumpyFilterBank | None,
                 delta: NumpyFilterBank | None, hold) -> dict:
    """ripple_front as its docstring lists the steps: the time ring, the band's pick and
    envelope, baseline_runs on the envelope, the artefact test over the first n_det
    columns, then (without an artefact and with a gate channel) the theta and delta
    envelopes of the gate column and ``hold`` = its last sample. Returns every output."""
    times.write(t)
    filt, env = band.pick_rms(samples, cols, weights)
    longest, mo, so, thr, runs = baseline_runs(env, first, step, ring, pos, count, excl,
                                               median, sd, k_sd, carry)
    artefact = int(bool((env[:, :n_det] > mo[:, :n_det] + k_art * so[:, :n_det]).any()))
    out = dict(longest=longest, artefact=artefact, f=filt, e=env, m=mo, s=so, t=thr,
               runs=runs)
    if gate_col >= 0 and not artefact and len(samples):
        g = samples[:, [gate_col]]
        _, out["th"] = theta.process_rms(g)
        out["gf"], out["de"] = delta.process_rms(g)
        hold[0] = samples[-1, gate_col]
    return out


def ripple_candidate(runs, theta_env, delta_env, min_n, gate_k, start) -> int:
    """The first row >= start with runs[:, 0] >= min_n and (with a gate) theta_env <=
    gate_k * delta_env (NaN closes the gate), or -1."""
    ok = runs[:, 0] >= min_n
    if theta_env is not None:
        ok &= theta_env[:, 0] <= gate_k * delta_env[:, 0]
    start = max(start, 0)
    hit = np.flatnonzero(ok[start:])
    return start + int(hit[0]) if hit.size else -1


def rearm_index(t, f, m, sd, k, after, start) -> int:
    """The ripple detector's old Python re-arm loop, the reference for ``rearm_index``."""
    for i in range(max(start, 0), len(t)):
        if t[i] >= after and not f[i, 0] >= m[i, 0] + k * sd[i, 0]:
            return i
    return -1


# ----------------------------------------------------------------- spindle


def spindle_rules(env, eb, es, pm, ea, med, sd, k_lo, k_hi, rel, corr, amax, min_n, max_n,
                  k_art, hold_n):
    """The spindle rules written out: samples held as artefact (beyond k_art SDs, and the
    hold_n samples after the last such one), run lengths above the low threshold over the
    rest, and the samples where the run is long enough (and not too long) and every firing
    rule holds. Returns (runs, fire)."""
    k = env.shape[1]
    art = env > med + k_art * sd
    idx = np.arange(env.shape[0])[:, None]
    until = np.maximum.accumulate(np.where(art, idx + hold_n, -1), axis=0)
    held = art | (idx <= until)
    runs = run_lengths((env > med + k_lo * sd) & ~held, np.zeros(k, dtype=np.int64))
    cond = (runs >= min_n) & (runs < max_n) & ~held
    cond &= env > med + k_hi * sd
    cond &= env * env >= rel * eb * eb
    d1 = (pm[:, :k] ** 2 - pm[:, k:2 * k] ** 2) ** 2
    d2 = (pm[:, 2 * k:3 * k] ** 2 - pm[:, 3 * k:] ** 2) ** 2
    cond &= d1 + d2 >= (es * eb) ** 2 * (16.0 * corr * abs(corr))
    if ea is not None:
        cond &= ea <= env * amax
    return runs, cond.astype(np.int64)


def quadrature_sums(xs, xb, w0, last=None) -> tuple[np.ndarray, np.ndarray]:
    """q = (xs[n] - xs[n-1]) / (2 sin(w0/2)) and i = (xs[n] + xs[n-1]) / (2 cos(w0/2)),
    xs[-1] = ``last`` (zeros); returns ([xs + xb, xs - xb, q + xb, q - xb], sqrt((i^2 +
    q^2) / 2))."""
    c = xs.shape[1]
    prev = np.vstack([np.zeros((1, c)) if last is None else last[None, :], xs[:-1]])
    q = (xs - prev) / (2 * np.sin(w0 / 2))
    i = (xs + prev) / (2 * np.cos(w0 / 2))
    return np.hstack([xs + xb, xs - xb, q + xb, q - xb]), np.sqrt((i ** 2 + q ** 2) / 2)


def spindle_block(x, sos: dict, w0, win, ewin, median, sd, step, length, excl, rules,
                  alpha: bool) -> dict:
    """The steps of SpindlePlan.run written out with scipy and NumPy over a whole signal
    (x: (n, k) picked columns, the first sample at absolute index 0): scipy's sosfilt, a
    moving RMS by cumulative sums, the quadrature formulas, a plain-Python baseline ring
    and :func:`spindle_rules`."""
    from scipy.signal import sosfilt

    k = x.shape[1]
    xb = sosfilt(sos["broad"], x, axis=0)
    xs = sosfilt(sos["sigma"], xb, axis=0)
    sums, amp = quadrature_sums(xs, xb, w0)
    env = moving_rms(amp, ewin)
    ref = {"xb": xb, "eb": moving_rms(xb, win), "xs": xs, "es": moving_rms(xs, win),
           "sums": sums, "pm": moving_rms(sums, win), "amp": amp, "env": env}
    ea = None
    if alpha:
        xa = sosfilt(sos["alpha"], xb, axis=0)
        ea = moving_rms(xa, win)
        ref.update(xa=xa, ea=ea)
    n = x.shape[0]
    med, sdv = np.tile(median, (n, 1)), np.tile(sd, (n, 1))
    ring, pos, count = np.zeros((k, length)), [0] * k, [0] * k
    for j in range(0, n, step):                    # decimation points: multiples of step
        for c in range(k):
            if env[j, c] <= excl[c]:
                ring[c, pos[c]] = env[j, c]
                pos[c] = (pos[c] + 1) % length
                count[c] += 1
    runs, fire = spindle_rules(env, ref["eb"], ref["es"], ref["pm"], ea, med, sdv, *rules)
    ref.update(med=med, sd=sdv, ring=ring, pos=np.array(pos), count=np.array(count),
               runs=runs, fire=fire)
    return ref


# ----------------------------------------------------------------- slow oscillation


def so_initial_state(k: int) -> np.ndarray:
    """so_block's (k, 5) state before the first sample: [state, onset_s, trough_v,
    trough_s, rearm_s]."""
    st = np.empty((k, 5))
    st[:] = (0.0, np.nan, np.inf, np.nan, -np.inf)
    return st


def so_down_states(y: np.ndarray, thr: np.ndarray, t: np.ndarray, st: np.ndarray,
                   offset: int, found: list, refractory_s: float) -> None:
    """The down-state machine over one block with NumPy: per channel, whole stretches.

    y, thr: (n, k) volts; t: (n,) s; st: (k, 5) [state, onset_s, trough_v, trough_s,
    rearm_s], updated; found gets (offset + sample, channel, onset_s, trough_v, trough_s).
    """
    n, k = y.shape
    block: list = []
    for ch in range(k):
        i = 0
        while i < n:
            if st[ch, 0] == 0:
                below = np.flatnonzero(y[i:, ch] < thr[i:, ch])
                if below.size == 0:
                    break
                i += int(below[0])
                st[ch, 0], st[ch, 1] = 1, t[i]
            elif st[ch, 0] == 1:
                up = np.flatnonzero(y[i:, ch] >= thr[i:, ch])
                end = i + int(up[0]) if up.size else n
                if end > i:
                    m = i + int(np.argmin(y[i:end, ch]))
                    if y[m, ch] < st[ch, 2]:
                        st[ch, 2], st[ch, 3] = y[m, ch], t[m]
                if not up.size:
                    break
                block.append((offset + end, ch, float(st[ch, 1]), float(st[ch, 2]),
                              float(st[ch, 3])))
                st[ch, 0], st[ch, 2], st[ch, 4] = 2, np.inf, t[end] + refractory_s
                i = end + 1
            else:
                ok = np.flatnonzero((y[i:, ch] > 0) & (t[i:] >= st[ch, 4]))
                if ok.size == 0:
                    break
                st[ch, 0] = 0
                i += int(ok[0]) + 1
    found.extend(sorted(block))


def so_block(x: np.ndarray, t: np.ndarray, pieces: list[int], adaptive: bool, base: dict, *,
             cols, sos, sos_slow, sos_fast, gate_window, first, step, scale, floor_v,
             threshold_v, refractory_s) -> dict:
    """so_block over a whole signal fed in ``pieces``: the picked columns through the SOS
    recurrence, the two gate envelopes, the decimated absolute-value baseline push (when
    adaptive: threshold = min(median * scale, floor_v), else threshold_v) and
    :func:`so_down_states`."""
    picked = x[:, cols]
    k = len(cols)
    y = NumpySosFilter(sos, k).process(picked)
    gs = moving_rms(NumpySosFilter(sos_slow, k).process(picked), gate_window)
    gh = moving_rms(NumpySosFilter(sos_fast, k).process(picked), gate_window)
    ring, pos, count = base["ring"].copy(), base["pos"].copy(), base["count"].copy()
    if adaptive:
        thr = np.broadcast_to(np.minimum(base["median"] * scale, floor_v), y.shape)
        at = np.flatnonzero((first + np.arange(len(t))) % step == 0)
        for ch in range(k):
            kept = np.abs(y[at, ch])
            kept = kept[kept <= base["excl"][ch]]
            length = ring.shape[1]
            slots = (pos[ch] + np.arange(kept.size)) % length
            ring[ch, slots[-length:]] = kept[-length:]
            pos[ch] = (pos[ch] + kept.size) % length
            count[ch] += kept.size
    else:
        thr = np.full(y.shape, threshold_v)
    st = so_initial_state(k)
    found: list = []
    a = 0
    for p in pieces:
        so_down_states(y[a:a + p], thr[a:a + p], t[a:a + p], st, a, found, refractory_s)
        a += p
    return dict(x=picked, y=y, gs=gs, gh=gh, thr=thr, ring=ring, pos=pos, count=count,
                state=st, found=found)


# ----------------------------------------------------------------- ECHT


class EchtPush:
    """echt_push: column ``col`` through the anti-alias filter (``aa_sos``, or none),
    decimated by q -- kept when the absolute index is q - 1 modulo q -- into a window of
    the newest N kept values. ``ring`` is the doubled ring echt_push keeps (ring[w:w + N]
    the window in time order), ``state`` = [seen, w, written]."""

    def __init__(self, aa_sos: np.ndarray | None, q: int, n: int) -> None:
        self.aa = NumpySosFilter(aa_sos, 1) if aa_sos is not None else None
        self.q, self.n = q, n
        self.window: list[float] = [0.0] * n         # oldest first
        self.seen = self.written = 0

    def push(self, samples: np.ndarray, col: int) -> int:
        v = samples[:, [col]]
        if self.aa is not None:
            v = self.aa.process(v)
        keep = np.flatnonzero((self.seen + np.arange(len(v))) % self.q == self.q - 1)
        for i in keep:
            self.window = self.window[1:] + [float(v[i, 0])]
        self.seen += len(v)
        self.written += keep.size
        return int(keep[-1]) if keep.size else -1

    @property
    def state(self) -> np.ndarray:
        return np.array([self.seen, self.written % self.n, self.written], dtype=np.int64)

    @property
    def ring(self) -> np.ndarray:
        w = self.written % self.n
        half = np.roll(np.array(self.window), w)       # window[0] sits at slot w
        return np.concatenate([half, half])


def wrap_deg(phase: float) -> float:
    """An angle in degrees wrapped to (-180, 180]."""
    return 180.0 - (180.0 - phase) % 360.0


def echt_estimate(window, kernels, rate_hz, lag, lo_hz, hi_hz, phase_rad=None, gain=None):
    """echt_estimate on the window (N,) in time order: a, b the endpoint kernel and its
    lagged copy applied as complex dot products, frequency from the angle of a / b, the
    filter's phase and gain interpolated on the uniform grid lo..hi (np.interp) and
    removed, cosine phase in degrees, confidence = amplitude / (sqrt 2 * SD), clipped to 1.
    A non-finite window gives (nan, nan, nan, 0)."""
    x = np.asarray(window, dtype=np.float64)
    if not np.isfinite(x).all():
        return (math.nan, math.nan, math.nan, 0.0)
    a = complex(kernels[0] @ x, kernels[1] @ x)
    b = complex(kernels[2] @ x, kernels[3] @ x)
    f = float(np.clip(np.angle(a / b) * rate_hz / (2 * np.pi * lag), lo_hz, hi_hz))
    phase, amp = math.degrees(np.angle(a)), abs(a)
    if phase_rad is not None:
        grid = np.linspace(lo_hz, hi_hz, len(phase_rad))
        phase -= math.degrees(np.interp(f, grid, phase_rad))
        amp /= np.interp(f, grid, gain)
    sd = float(np.std(x))
    conf = min(1.0, amp / (math.sqrt(2.0) * sd)) if sd > 0 else 0.0
    return (wrap_deg(phase), f, amp, conf)


# ----------------------------------------------------------------- plan twins
#
# The C plans bind a detector's FilterBanks, which the detector's step-by-step path (a
# baseline update point, calibration, blanking) also runs: the filter state is shared. So a
# plan's twin takes the same constructor arguments, runs the banks through their own
# ``process`` / ``process_rms`` (the FilterBank kernel, which meets its own twin,
# NumpyFilterBank, in test_twins.py and test_filters.py) and does every other step of the
# fused kernel with the twins above, in NumPy, writing into the same bound buffers. A test
# puts one in place of the C plan (``install_plan_twins``) and runs a whole detector.


def _c_steps(bank):
    """A C FilterBank with the NumpyFilterBank interface the twins above call."""

    class _Steps:
        def pick_rms(self, samples, cols, weights):
            return self.process_rms(pick(samples, cols, weights))

        def process_rms(self, x):
            x = np.ascontiguousarray(x, dtype=np.float64)
            f, e = np.empty_like(x), np.empty_like(x)
            bank.process_rms(x, f, e)
            return f, e

    return _Steps()


class RipplePlanTwin:
    """``RipplePlan`` in NumPy: :func:`ripple_front` on the bound arguments, its outputs
    written into the bound work blocks and runs as the plan documents them."""

    def __init__(self, times, cols, weights, band, work, runs, step, ring, pos, count, excl,
                 median, sd, k_sd, carry, n_det, k_art, gate_col, theta, delta,
                 hold) -> None:
        self.a = dict(times=times, cols=cols, weights=weights, band=band, step=step,
                      ring=ring, pos=pos, count=count, excl=excl, median=median, sd=sd,
                      k_sd=k_sd, carry=carry, n_det=n_det, k_art=k_art, gate_col=gate_col,
                      theta=theta, delta=delta, hold=hold)
        self.c = band.n_channels
        self.cap = len(work) // (5 * self.c + 3)
        self.work, self.runs = work, runs

    def run(self, samples, first, t, times_index):
        a, c, cap, n = self.a, self.c, self.cap, len(samples)
        ring = TimeRingTwin.__new__(TimeRingTwin)
        ring.values, ring.index = a["times"], times_index
        gate = a["gate_col"] >= 0
        out = ripple_front(
            samples, first, t, ring, a["cols"], a["weights"], _c_steps(a["band"]), a["step"],
            a["ring"], a["pos"], a["count"], a["excl"], a["median"], a["sd"], a["k_sd"],
            a["carry"], a["n_det"], a["k_art"], a["gate_col"],
            _c_steps(a["theta"]) if gate else None, _c_steps(a["delta"]) if gate else None,
            a["hold"])
        for b, key in enumerate("femst"):
            self.work[b * cap * c:(b + 1) * cap * c].reshape(cap, c)[:n] = out[key]
        g0 = 5 * cap * c
        for g, key in enumerate(("gf", "th", "de")):
            if key in out:
                self.work[g0 + g * cap:g0 + g * cap + n] = out[key][:, 0]
        self.runs[:n] = out["runs"]
        return out["longest"], out["artefact"]


class SoPlanTwin:
    """``SoPlan`` in NumPy: the picked columns, the banks' own filtering, the decimated
    absolute-value baseline push and the threshold written out, then
    :func:`so_down_states` on the bound state."""

    def __init__(self, cols, filt, gate_slow, gate_fast, work, state, ring, pos, count,
                 excl, median, step, threshold_v, scale, floor_v, refractory_s) -> None:
        self.cols, self.filt, self.gates = cols, filt, (gate_slow, gate_fast)
        self.work, self.state, self.ring = work, state, ring
        self.pos, self.count, self.excl, self.median, self.step = pos, count, excl, median, step
        self.threshold_v, self.scale, self.floor_v = threshold_v, scale, floor_v
        self.refractory_s = refractory_s
        self.cap = work.shape[1]

    def run(self, samples, first, t, scan):
        n, w = len(samples), self.work
        x = np.ascontiguousarray(samples[:, self.cols])
        w[0, :n] = x
        y = np.empty_like(x)
        self.filt.process(x, y)
        w[1, :n] = y
        if self.gates[0] is not None:
            for bank, plane in zip(self.gates, (3, 4), strict=True):
                gf, env = np.empty_like(x), np.empty_like(x)
                bank.process_rms(x, gf, env)
                w[2, :n], w[plane, :n] = gf, env
        if self.ring is not None:
            length = self.ring.shape[1]
            for i in np.flatnonzero((first + np.arange(n)) % self.step == 0):
                for j in range(x.shape[1]):
                    v = abs(y[i, j])
                    if v <= self.excl[j]:                 # NaN is not kept
                        self.ring[j, self.pos[j]] = v
                        self.pos[j] = (self.pos[j] + 1) % length
                        self.count[j] += 1
            thr = np.broadcast_to(np.minimum(self.median * self.scale, self.floor_v), y.shape)
        else:
            thr = np.full(y.shape, self.threshold_v)
        w[5, :n] = thr
        found: list = []
        if scan:
            so_down_states(y, np.asarray(thr), np.asarray(t, dtype=np.float64), self.state, 0,
                           found, self.refractory_s)
        return tuple((int(i), int(ch), on, v, ts) for i, ch, on, v, ts in found)

    def scan(self, t, start, n):
        found: list = []
        so_down_states(self.work[1, start:n], self.work[5, start:n],
                       np.asarray(t, dtype=np.float64)[start:n], self.state, start, found,
                       self.refractory_s)
        return tuple((int(i), int(ch), on, v, ts) for i, ch, on, v, ts in found)


class EchtPlanTwin:
    """``EchtPlan`` in NumPy: the column through the bound anti-alias bank's own
    ``process``, decimated as :class:`EchtPush` documents it into the bound doubled ring
    and state, and :func:`echt_estimate` on the window."""

    def __init__(self, col, aa, q, state, ring, kernels, rate_hz, lag, lo_hz, hi_hz,
                 phase_rad, gain) -> None:
        self.col, self.aa, self.q, self.state, self.ring = col, aa, q, state, ring
        self.n = len(ring) // 2
        self.est = (kernels, rate_hz, lag, lo_hz, hi_hz, phase_rad, gain)

    def push(self, samples) -> int:
        v = np.ascontiguousarray(samples[:, [self.col]], dtype=np.float64)
        if self.aa is not None:
            self.aa.process(v, v)
        seen, w, written = (int(s) for s in self.state)
        keep = np.flatnonzero((seen + np.arange(len(v))) % self.q == self.q - 1)
        for i in keep:
            self.ring[w] = self.ring[w + self.n] = v[i, 0]
            w = (w + 1) % self.n
        self.state[:] = (seen + len(v), w, written + keep.size)
        return int(keep[-1]) if keep.size else -1

    def estimate(self):
        w = int(self.state[1])
        return echt_estimate(self.ring[w:w + self.n], *self.est)


def install_plan_twins(monkeypatch) -> None:
    """Run the ripple, slow-oscillation and ECHT stages on the plan twins (``monkeypatch``:
    pytest's fixture, so the C plans come back after the test)."""
    from engramloop.decoders import phase, ripple, slow_osc

    monkeypatch.setattr(ripple, "RipplePlan", RipplePlanTwin)
    monkeypatch.setattr(slow_osc, "SoPlan", SoPlanTwin)
    monkeypatch.setattr(phase, "EchtPlan", EchtPlanTwin)


#: the ``plans`` fixture's parameters (test modules of the ripple, SO and phase stages)
PLAN_IMPLEMENTATIONS = ("C", "numpy twin")
