"""``engramloop run`` of a recorded file (source.kind = "file") at ``--speed max`` with
``policy.condition = "stim"``: no stimulator is used at that speed (build_loop), so an
approved pulse cannot be sent anywhere. It vanished: 'approved 23, sent 0, cancelled 0,
not delivered 0' and nothing in the recording's pulse stream. Every approved pulse must
have a delivery record saying what happened to it (read back with pyxdf)."""
from __future__ import annotations

import json

import pytest
from shared_data import DATA, require_data

from engramloop.cli import main


@pytest.mark.slow
def test_approved_pulses_without_an_output_are_recorded_as_not_sent(tmp_path,
                                                                    capsys) -> None:
    import pyxdf

    edf = require_data(DATA / "dreams_dev" / "excerpt5.edf")
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'[source]\nkind = "file"\n[source.file]\npath = "{edf}"\n'
                   '[detectors.ripple]\nenabled = false\n[detectors.so]\nchannels = ["C3-A1"]\n'
                   '[detectors.spindle]\nchannels = ["C3-A1"]\n[policy]\ntarget = "spindle"\n'
                   'condition = "stim"\n[safety]\narm_on_start = true\n')
    rec = tmp_path / "r.xdf"
    assert main(["run", str(cfg), "--speed", "max", "--duration", "300", "--quiet",
                 "--record", str(rec)]) == 0
    out = capsys.readouterr().out
    streams, _ = pyxdf.load_xdf(str(rec), dejitter_timestamps=False)
    by = {s["info"]["name"][0]: s for s in streams}
    approved = [json.loads(v[0]) for v in by["engramloop.governor"]["time_series"]]
    approved = [d for d in approved if d["approved"]]
    pulses = [json.loads(v[0]) for v in by["engramloop.pulses"]["time_series"]] \
        if "engramloop.pulses" in by else []
    assert len(approved) >= 5
    ids = {p["pulse"]["pulse_id"] for p in pulses}
    assert ids == {d["pulse_id"] for d in approved}
    assert all(p["delivery"]["status"] == "cancelled" and "no stimulator" in
               p["delivery"]["reason"] for p in pulses)
    assert f"cancelled {len(approved)}" in out
