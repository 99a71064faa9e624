"""`engramloop sweep` over recordings of which only some carry truth: the pooled table
said 'recordings 2' beside P/R/F1 that came from one of them; the other night was
replayed and left out of the scores without a word. The table says how many were scored
of how many replayed, and names the recordings without truth; the pooled scores equal a
sweep of the scored recording alone."""
from __future__ import annotations

import numpy as np

from engramloop.cli import main

CFG = '[source]\nkind = "file"\n[policy]\ntarget = "ripple"\n'


def _table(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln and not ln.startswith("#")]


def test_recordings_without_truth_are_named_and_not_counted_as_scored(tmp_path,
                                                                      capsys) -> None:
    night = tmp_path / "night.npz"
    assert main(["sim", "--duration", "40", "--out", str(night), "--quiet"]) == 0
    z = np.load(night)
    bare = tmp_path / "bare.npz"
    np.savez(bare, **{k: z[k] for k in z.files if k != "truth"})
    cfg = tmp_path / "c.toml"
    cfg.write_text(CFG)
    capsys.readouterr()
    assert main(["sweep", str(cfg), str(night), "--set", "detectors.ripple.threshold_sd=4",
                 "--workers", "1", "--quiet"]) == 0
    alone = _table(capsys.readouterr().out)
    assert main(["sweep", str(cfg), str(night), str(bare), "--set",
                 "detectors.ripple.threshold_sd=4", "--workers", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    both = _table(out)
    head, row = both[0], both[1]
    # the scores are the scored night's alone
    assert row.split()[-4:] == alone[1].split()[-4:]
    assert "1 of 2" in row
    notes = [ln for ln in out.splitlines() if "no truth" in ln]
    assert len(notes) == 1 and str(bare) in notes[0] and str(night) not in notes[0]
    assert head.split()[:2] == ["detectors.ripple.threshold_sd", "recordings"]
