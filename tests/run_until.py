"""Run a real-time loop until what a test checks has happened, not for a fixed time."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def run_until(loop: Any, done: Callable[[], bool], ceiling_s: float,
              reason: str = "test: what it checks has happened") -> tuple[Any, bool]:
    """``loop.run(ceiling_s)``, asking it to stop (``loop.stop``, after the current
    chunk) as soon as ``done()`` holds; ``done`` is polled from another thread every
    50 ms, so it may only read (the loop's result lists, the status board).

    ``ceiling_s`` is a generous bound for a stuck or very slow run, never the expected
    length. Returns the run's result and whether ``done()`` held: a test asserts it, so
    reaching the ceiling is a failure, not a pass by another path.
    """
    met = threading.Event()
    finished = threading.Event()

    def watch() -> None:
        while not finished.wait(0.05):
            if done():
                met.set()
                loop.stop(reason)
                return

    th = threading.Thread(target=watch, name="test-run-until", daemon=True)
    th.start()
    try:
        res = loop.run(ceiling_s)
    finally:
        finished.set()
        th.join(timeout=10)
    return res, met.is_set()
