"""`engramloop sweep --truth-dir DIR` finds each recording's truth by its file stem:
site_a/night1.edf and site_b/night1.edf both took DIR/night1.csv, so one of the two nights
was scored against the other's annotations without a word (exit 0). Two recordings with
one stem under --truth-dir are a one-line error naming both, before any replay."""
from __future__ import annotations

import shutil

from shared_data import DATA, require_data

from engramloop.cli import main


def test_two_recordings_with_one_stem_cannot_share_a_truth_file(tmp_path, capsys) -> None:
    edf = require_data(DATA / "dreams_dev" / "excerpt1.edf")
    for site in ("site_a", "site_b"):
        (tmp_path / site).mkdir()
        shutil.copy(edf, tmp_path / site / "night1.edf")
    truth = tmp_path / "truth"
    truth.mkdir()
    (truth / "night1.csv").write_text("onset_s,duration_s\n300.0,1.0\n")
    cfg = tmp_path / "eeg.toml"
    cfg.write_text('[source]\nkind = "file"\n[detectors.ripple]\nenabled = false\n'
                   '[detectors.so]\nchannels = ["C3-A1"]\n[detectors.spindle]\n'
                   'channels = ["C3-A1"]\n[policy]\ntarget = "spindle"\n')
    rc = main(["sweep", str(cfg), str(tmp_path / "site_*" / "night1.edf"), "--truth-dir",
               str(truth), "--workers", "1", "--duration", "30", "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --truth-dir")
    assert "site_a" in lines[0] and "site_b" in lines[0] and "night1" in lines[0]
    assert out == ""
