"""The SO detector's held adaptive threshold (threshold_hold_s), batched over each block's
update points, against the rule applied one update point at a time (the NumPy twin below,
the detector's code before block23b): same held medians and same state at chunkings from
one row to longer than the hold, with all-NaN (no statistics yet), partly-NaN and repeated
values."""
from __future__ import annotations

import types

import numpy as np
import pytest

from engramloop.decoders.slow_osc import SlowOscDetector


class SequentialHold:
    """threshold_hold_s one value at a time: a new value (not all NaN, not equal to the
    last held row) joins the rows, rows at or before its time minus the hold leave (the
    newest always stays), and the held value is np.nanmax of the rows."""

    def __init__(self, k: int, hold_n: int) -> None:
        self.hold_n = hold_n
        self.rows: list[tuple[int, np.ndarray]] = []
        self.held = np.full(k, np.nan)

    def value(self, vec: np.ndarray, at: int) -> bool:
        if np.isnan(vec).all():
            return False
        if not self.rows or not np.array_equal(self.rows[-1][1], vec, equal_nan=True):
            self.rows.append((at, vec.copy()))
            while len(self.rows) > 1 and self.rows[0][0] <= at - self.hold_n:
                del self.rows[0]
            with np.errstate(invalid="ignore"):
                stack = np.array([v for _, v in self.rows])
                self.held = np.fmax.reduce(stack, axis=0)    # = np.nanmax, no warning
        return True

    def medians(self, med: np.ndarray, first: int, after: np.ndarray) -> None:
        n = med.shape[0]
        same = (med[1:] == med[:-1]) | (np.isnan(med[1:]) & np.isnan(med[:-1]))
        starts = np.concatenate(([0], np.flatnonzero(~same.all(axis=1)) + 1, [n]))
        for a, b in zip(starts[:-1], starts[1:], strict=True):
            if self.value(med[a], first + int(a)):
                med[a:b] = self.held
        self.value(after, first + n)


def medians_in_force(rng: np.random.Generator, n: int, k: int, step: int) -> np.ndarray:
    """Piecewise-constant medians changing every ``step`` rows: all NaN at first, then one
    channel NaN for a while, values that repeat, rise and fall."""
    m = np.empty((n, k))
    levels = rng.choice([1.0, 2.0, 3.0, 5.0, 8.0], size=(n // step + 1, k))
    levels[3:6] = levels[2]                       # repeated values: no new row
    for i in range(0, n, step):
        m[i:i + step] = levels[i // step]
    m[: 2 * step] = np.nan                        # no statistics yet
    m[2 * step: 5 * step, 1] = np.nan             # one channel without
    return m


@pytest.mark.parametrize("chunk", [1, 7, 64, 333, 5000])
def test_batched_hold_equals_one_update_point_at_a_time(chunk: int) -> None:
    rng = np.random.default_rng(chunk)
    n, k, step, hold_n = 5000, 3, 25, 400
    med = medians_in_force(rng, n, k, step)
    det = SlowOscDetector()
    det._held = np.full(k, np.nan)
    det._mh_at = np.zeros(4, dtype=np.int64)
    det._mh_v = np.full((4, k), np.nan)
    det._mh_a = det._mh_b = 0
    det._hold_n = hold_n
    twin = SequentialHold(k, hold_n)
    got, want = med.copy(), med.copy()
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        after = med[b] if b < n else med[n - 1] * 1.5
        det._base = types.SimpleNamespace(median=after.copy())
        det._hold_medians(got[a:b], a)
        twin.medians(want[a:b], a, after)
        np.testing.assert_array_equal(det._held, twin.held)
        rows = det._mh_v[det._mh_a:det._mh_b]
        np.testing.assert_array_equal(rows, np.array([v for _, v in twin.rows]).reshape(-1, k))
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got[: 2 * step]).all()        # no statistics: left as they are
    assert not np.isnan(got[5 * step:]).any()
