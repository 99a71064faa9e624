"""A scored sweep point (`replay --sweep`, `sweep`) took the file's first timestamp from
``FileSource.data``: the whole night read again, into memory, after every replay --
the O(block) memory of a block replay (issue 23) undone once per setting. The first
stamp is the reader's ``t_first``; the score is the same (DREAMS excerpt 5 against its
expert's spindles)."""
from __future__ import annotations

import pytest
from shared_data import DATA, require_data

from engramloop.analysis.sweep import find_truth, run_point
from engramloop.controller.config import loads_config
from engramloop.drivers.files import FileSource

CFG = ('[source]\nkind = "file"\n[detectors.ripple]\nenabled = false\n'
       '[detectors.so]\nchannels = ["C3-A1"]\n[detectors.spindle]\nchannels = ["C3-A1"]\n'
       '[policy]\ntarget = "spindle"\ncondition = "sham"\n')


@pytest.mark.slow
def test_scoring_a_sweep_point_does_not_load_the_whole_file(monkeypatch) -> None:
    edf = require_data(DATA / "dreams_dev" / "excerpt5.edf")
    expert = require_data(DATA / "dreams_dev" / "excerpt5_expert1.csv")
    truth = find_truth(edf, str(expert), "spindle")
    before = run_point(loads_config(CFG), str(edf), duration_s=600.0, truth=truth,
                       setting={})

    def whole(self):
        raise AssertionError("the whole file was loaded")

    monkeypatch.setattr(FileSource, "data", property(whole))
    after = run_point(loads_config(CFG), str(edf), duration_s=600.0, truth=truth,
                      setting={})
    assert after.score == before.score
    assert after.score["spindle"]["n_truth"] > 0
