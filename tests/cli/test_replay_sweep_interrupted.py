"""Ctrl-C during `engramloop replay FILE --sweep ...` (one setting after another): the
table printed the interrupted setting's partial replay as an ordinary row (its scores
over the first 696 s of an 1800 s night) with nothing saying it was cut short, the
progress bar jumped to that replay's full length, and with --json the command exited 0.
The interrupted row is named as partial, the settings never replayed are listed, and the
exit status is 130 in both forms. A real process on a real night (DREAMS excerpt 1)
gets SIGINT once its first replay is under way."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from shared_data import DATA, require_data

#: 100 settings: a replay of the 1800 s night at --speed max takes well under a second
#: (30-s blocks), so the sweep must be long enough to be interrupted while it runs
VALUES = ",".join(f"{2 + 0.1 * k:.1f}" for k in range(100))
LAST = VALUES.rsplit(",", 1)[1]


@pytest.mark.slow
@pytest.mark.parametrize("form", ["table", "json"])
def test_an_interrupted_sweep_says_which_row_is_partial(tmp_path, form) -> None:
    edf = require_data(DATA / "dreams_dev" / "excerpt1.edf")
    expert = require_data(DATA / "dreams_dev" / "excerpt1_expert1.csv")
    cfg = tmp_path / "eeg.toml"
    cfg.write_text('[source]\nkind = "file"\n[detectors.ripple]\nenabled = false\n'
                   '[detectors.so]\nchannels = ["C3-A1"]\n[detectors.spindle]\n'
                   'channels = ["C3-A1"]\n[policy]\ntarget = "spindle"\n')
    proc = subprocess.Popen([sys.executable, "-m", "engramloop", "replay", str(cfg), str(edf),
                             "--sweep", f"detectors.spindle.threshold_sd={VALUES}",
                             "--truth", str(expert)] + (["--json"] if form == "json" else []),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        err = ""
        deadline = time.monotonic() + 120
        # the progress line comes once at the start, then about once a second: wait for
        # the first, and the sweep is under way (100 replays take tens of seconds)
        while "sweep" not in err and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            err += line
        time.sleep(3.0)     # a few replays done, one under way
        assert proc.poll() is None, proc.communicate()
        os.kill(proc.pid, signal.SIGINT)
        out, rest = proc.communicate(timeout=120)
        err += rest
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    if not out:           # before the first replay ended: nothing to show but that
        assert "interrupted before the first replay ended" in err.strip().splitlines()[-1]
        return
    if "between two replays" in out + err:   # test_replay_sweep_interrupted_between
        return
    if form == "json":
        rows = [json.loads(ln) for ln in out.splitlines()]
        assert rows[-1]["stop_reason"].startswith("interrupted")
        if len(rows) == 1:   # the bar stays where the first replay stopped
            assert f"(1800/{1800 * 100}" not in err, err
        return
    notes = [ln for ln in out.splitlines() if ln.startswith("# interrupted")]
    assert len(notes) == 1, out
    assert "partial" in notes[0] and "not replayed" in notes[0] and LAST in notes[0]
