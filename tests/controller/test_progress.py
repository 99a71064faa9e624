"""Progress with ETA: plain lines when not on a terminal (how many, what they say), the
ETA arithmetic, notes, and the bar on a terminal."""
from __future__ import annotations

import io

from rich.console import Console

from engramloop.controller.progress import ProgressHandle, hms, progress


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _plain() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=False, width=200, color_system=None), buf


def test_plain_lines_at_each_tenth_and_eta_from_the_rate_so_far():
    con, buf = _plain()
    clock = FakeClock()
    h = ProgressHandle(total=200.0, description="replay", unit="s", console=con, plain=True,
                       plain_every_s=1e9, plain_min_s=0.5, clock=clock)
    h._open()
    for _ in range(40):          # 5 s of recording per wall second
        clock.t += 1.0
        h.advance(5.0)
    h._close()
    lines = buf.getvalue().splitlines()
    # start, 10 %, 20 %, ..., 100 % (one per crossed tenth), final
    assert len(lines) == 12 and lines == h.lines
    assert lines[0] == "replay: 0% (0/200 s), elapsed 0:00:00, ETA -:--:--"
    assert lines[1] == "replay: 10% (20/200 s), elapsed 0:00:04, ETA 0:00:36"
    assert lines[-1] == "replay: 100% (200/200 s), elapsed 0:00:40"


def test_plain_lines_are_rate_limited_and_heartbeat_when_slow():
    con, _ = _plain()
    clock = FakeClock()
    h = ProgressHandle(total=1000.0, description="x", console=con, plain=True,
                       plain_every_s=30.0, plain_min_s=1.0, clock=clock)
    h._open()
    h.advance(900.0)             # 90 % at once, no time passed: no line yet
    assert len(h.lines) == 1
    clock.t += 1.0
    h.advance(1.0)
    assert len(h.lines) == 2 and "90%" in h.lines[-1]
    clock.t += 29.0              # slow: nothing crossed, but 30 s passed since the last line
    h.advance(1.0)
    assert len(h.lines) == 2
    clock.t += 1.0
    h.advance(1.0)
    assert len(h.lines) == 3 and "ETA" in h.lines[-1]


def test_unknown_total_counts_and_notes():
    con, buf = _plain()
    with progress(None, "dataset", unit="nights", console=con) as bar:
        bar.advance(3)
        bar.note("night 2 skipped")
        bar.update(info="last: seed 3")
    out = buf.getvalue().splitlines()
    assert out[0].startswith("dataset: 0 nights, elapsed")
    assert "night 2 skipped" in out
    assert out[-1].startswith("dataset: 3 nights, elapsed") and out[-1].endswith("last: seed 3")


def test_hms():
    assert hms(3725.0) == "1:02:05" and hms(float("nan")) == "-:--:--" and hms(-3) == "0:00:00"


def test_terminal_bar_shows_info_and_notes():
    term = io.StringIO()
    con = Console(file=term, force_terminal=True, width=160, color_system=None)
    with progress(4, "training", unit="epochs", console=con) as bar:
        bar.update(2, info="val loss 0.123")
        bar.note("early stop")
        bar.update(4)
    out = term.getvalue()
    assert bar.shown and "val loss 0.123" in out and "early stop" in out and "4/4 epochs" in out
