"""Ctrl-C during `engramloop replay FILE --sweep ...` that lands BETWEEN two replays (the
next setting's loop being built, the last one scored) printed only "interrupted": the
rows of the settings already replayed were lost, and nothing said which were never run.
Now it ends as an interrupt inside a replay does: the completed rows (said to be
complete), the settings not replayed, exit 130.

The interrupt is raised at the start of the second setting's replay by wrapping
run_point in-process: a real signal cannot be timed to land between two replays. The
first replay is a real one of DREAMS excerpt 1."""
from __future__ import annotations

import json

import pytest
from shared_data import DATA, require_data

from engramloop.cli import main
from engramloop.cli.commands import replay as replay_cmd


def _cfg(tmp_path):
    cfg = tmp_path / "eeg.toml"
    cfg.write_text('[source]\nkind = "file"\n[detectors.ripple]\nenabled = false\n'
                   '[detectors.so]\nchannels = ["C3-A1"]\n[detectors.spindle]\n'
                   'channels = ["C3-A1"]\n[policy]\ntarget = "spindle"\n')
    return cfg


@pytest.mark.parametrize("form", ["table", "json"])
def test_rows_done_before_an_interrupt_between_replays_are_kept(tmp_path, capsys,
                                                                monkeypatch, form) -> None:
    edf = require_data(DATA / "dreams_dev" / "excerpt1.edf")
    real = replay_cmd.run_point
    calls = []

    def second_is_interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(replay_cmd, "run_point", second_is_interrupted)
    rc = main(["replay", str(_cfg(tmp_path)), str(edf), "--sweep",
               "detectors.spindle.threshold_sd=2.5,3,3.5", "--duration", "120", "--quiet"]
              + (["--json"] if form == "json" else []))
    out, err = capsys.readouterr()
    assert rc == 130, (out, err)
    assert "Traceback" not in err
    if form == "json":
        rows = [json.loads(ln) for ln in out.splitlines()]
        assert [r["setting"] for r in rows] == [{"detectors.spindle.threshold_sd": "2.5"}]
        assert rows[0]["stop_reason"] == "duration reached"
        note = err.strip().splitlines()[-1]
    else:
        lines = out.splitlines()
        assert lines[1].split()[0] == "threshold_sd" and lines[2].split()[0] == "2.5"
        assert len([ln for ln in lines if not ln.startswith("#")]) == 2   # head + 1 row
        note = lines[-1]
    assert note.lstrip("# ").startswith("interrupted between two replays")
    assert "1 row(s)" in note and "complete" in note
    assert "not replayed: detectors.spindle.threshold_sd=3; " \
           "detectors.spindle.threshold_sd=3.5" in note
