"""Gap lines are rate-limited and summed up; every gap is still a record in the log
stream. The real simulator with chunks dropped (samples lost), read back with pyxdf."""
from __future__ import annotations

import json
import re

import pyxdf

from engramloop.controller.build import build_loop
from engramloop.controller.config import SHIPPED_DIR, load_config
from engramloop.sim.source import SimSource


class Dropping:
    """The real SimSource, every ``every``-th chunk dropped (its samples lost)."""

    def __init__(self, inner, every: int) -> None:
        self.inner, self.every, self.n = inner, every, 0
        self.rate_hz, self.channels = inner.rate_hz, inner.channels

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def start(self):
        self.inner.start()

    def stop(self):
        self.inner.stop()

    def read(self, timeout_s):
        self.n += 1
        c = self.inner.read(timeout_s)
        if self.n % self.every == 0:
            c = self.inner.read(timeout_s)
        return c


def test_gap_lines_are_rate_limited_and_summed_up(tmp_path):
    cfg = load_config(SHIPPED_DIR / "sim-ripple.toml")
    src = SimSource(cfg.sim, seed=cfg.seed, chunk_samples=cfg.source.chunk_samples,
                    duration_s=35.0)
    lines: list[str] = []
    xdf = tmp_path / "gaps.xdf"
    loop = build_loop(cfg, speed="max", source=Dropping(src, 500), record=str(xdf),
                      log=lines.append)
    res = loop.run(35.0)
    assert res.n_gaps >= 12            # one every 2.5 s of data
    gap_lines = [m for m in lines if "gap" in m]
    # one line per 10 s at most, plus the summary at the end
    assert 2 <= len(gap_lines) <= 5, gap_lines
    # together the lines account for every gap: the first is one, each summary says how
    # many it stands for (including the one at the end, if any were left)
    total = 0
    for m in gap_lines:
        n = re.match(r"(\d+) (more )?gap", m)
        total += int(n.group(1)) if n else 1
    assert total == res.n_gaps, gap_lines
    streams, _ = pyxdf.load_xdf(str(xdf), dejitter_timestamps=False)
    log = next(s for s in streams if s["info"]["name"][0] == "engramloop.log")
    recs = [json.loads(m[0]) for m in log["time_series"]]
    gaps = [r for r in recs if r.get("kind") == "gap"]
    assert len(gaps) == res.n_gaps
    assert all(r["missing_samples"] == 10 for r in gaps)     # one 10-sample chunk each
