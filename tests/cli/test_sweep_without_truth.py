"""`engramloop sweep` of recordings that carry no truth (plain EDF, as the DREAMS
excerpts are): its table printed the swept value and a recordings count and nothing
else -- no detection of any kind, no word that nothing was scored -- and exited 0. The
--out CSV held the detections all along. Without truth the table shows each kind's
detections (pooled over recordings) and says why there are no scores; the counts equal
the events of one `replay --record` of the same file read back with pyxdf. Neither
table counts the detectors' state events (so_gate_closed/open) as detections."""
from __future__ import annotations

import json

import pytest
from shared_data import DATA, require_data

from engramloop.cli import main


@pytest.mark.slow
def test_sweep_without_truth_prints_detection_counts(tmp_path, capsys) -> None:
    import pyxdf

    edf = require_data(DATA / "dreams_dev" / "excerpt1.edf")
    cfg = tmp_path / "eeg.toml"
    cfg.write_text('[source]\nkind = "file"\n[detectors.ripple]\nenabled = false\n'
                   '[detectors.so]\nchannels = ["C3-A1"]\n[detectors.spindle]\n'
                   'channels = ["C3-A1"]\nthreshold_sd = 2.5\n[policy]\n'
                   'target = "spindle"\n')
    rc = main(["sweep", str(cfg), str(edf), "--set", "detectors.spindle.threshold_sd=2.5",
               "--workers", "1", "--duration", "120", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    rec = tmp_path / "r.xdf"
    assert main(["replay", str(cfg), str(edf), "--speed", "max", "--duration", "120",
                 "--quiet", "--record", str(rec)]) == 0
    capsys.readouterr()
    streams, _ = pyxdf.load_xdf(str(rec))
    by = {s["info"]["name"][0]: s for s in streams}
    kinds = [json.loads(v[0])["kind"] for v in by["engramloop.events"]["time_series"]]
    n = {k: kinds.count(k) for k in ("spindle", "so")}
    assert n["spindle"] > 0 and n["so"] > 0
    lines = out.splitlines()
    head = next(ln for ln in lines if ln.startswith("detectors.spindle.threshold_sd"))
    row = lines[lines.index(head) + 1]

    def cell(name: str) -> str:   # the table's cells are right-aligned under their heads
        assert f"{name} " in head + " ", out
        end = head.index(name) + len(name)
        return row[:end].split()[-1]

    assert int(cell("spindle det")) == n["spindle"], out
    assert int(cell("so det")) == n["so"], out
    assert "no truth" in out
    # the detectors' state events (the SO gate closing/opening) are no detections
    assert "gate" not in out

    # replay --sweep's table without truth: the same counts, no state events either
    assert main(["replay", str(cfg), str(edf), "--sweep", "detectors.spindle.threshold_sd=2.5",
                 "--duration", "120", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "gate" not in out, out
    head = next(ln for ln in out.splitlines() if ln.startswith("threshold_sd"))
    row = out.splitlines()[out.splitlines().index(head) + 1]
    cols, vals = head.split(), row.split()
    assert cols[1:3] == ["spindle", "det"] and cols[5:7] == ["so", "det"], out
    assert int(vals[1]) == n["spindle"] and int(vals[3]) == n["so"], out
