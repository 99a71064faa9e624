"""The slow-oscillation detector's release rule, checked from the outside (shared by the
decoder tests that replay it at several chunk sizes).

The down states it finds and the up states it predicts do not depend on chunking; when it
releases a predicted up state does: at the end of the first chunk from its detection on
whose last sample plus its span reaches ``predicted_s - confirm_lead_s`` (so the pulse can
leave at the predicted time whatever the chunk length), checked there or at the due sample
when that chunk holds it. A check may then turn out otherwise than one made at another
chunk length (``predicted_s`` NaN, counted as unconfirmed)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np


def _key(e) -> str:
    return repr(dataclasses.replace(e, detect_s=0.0, predicted_s=0.0))


def check_release(got: list, loose: list, t: np.ndarray, fs: float, chunk: int,
                  lead: float) -> int:
    """Assert the release rule on ``got`` (events of a replay in chunks of ``chunk``
    samples with the fire-time check) against ``loose`` (the same replay with
    ``confirm_rising = False``: each event at its detection); ``t`` (n,) s. Returns how
    many predictions the check withheld."""
    n = t.size
    assert sorted(map(_key, got)) == sorted(map(_key, loose))
    twin = {(e.kind, e.channel, e.onset_s): e for e in loose}
    assert len(twin) == len(loose)

    def end(k: int) -> tuple[float, float]:
        b = min((k + 1) * chunk, n)
        return float(t[b - 1]), (b - k * chunk) / fs

    withheld = 0
    for e in got:
        d = twin[(e.kind, e.channel, e.onset_s)]
        if e.kind != "so" or not math.isfinite(d.predicted_s):
            assert repr(e) == repr(d)
            continue
        if math.isfinite(e.predicted_s):
            assert e.predicted_s == d.predicted_s
        else:
            withheld += 1
        due = max(d.predicted_s - lead, math.nextafter(d.detect_s, math.inf))
        k_det = int(np.searchsorted(t, d.detect_s)) // chunk
        i_rel = int(np.searchsorted(t, e.detect_s))
        assert t[i_rel] == e.detect_s
        k = i_rel // chunk
        assert k >= k_det
        last, span = end(k)
        assert last + span >= due, (e, due)                 # not later than needed
        for kk in range(k_det, k):
            a, s = end(kk)
            assert a + s < due, (e, due)                    # nor earlier
        at_due = int(np.searchsorted(t, due))               # first sample >= due
        assert i_rel == min(at_due, min((k + 1) * chunk, n) - 1), (e, due)
    return withheld
