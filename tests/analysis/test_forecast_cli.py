"""`engramloop forecaster ...` end to end on small data, and the lab-data (CSV) path."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engramloop.analysis import training as ft
from engramloop.cli import main
from engramloop.decoders.forecaster import Checkpoint


def test_make_dataset_train_evaluate(tmp_path, capsys):
    train, test = tmp_path / "train.npz", tmp_path / "test.npz"
    assert main(["forecaster", "make-dataset", "--synthetic", "--nights", "5",
                 "--duration-s", "1500", "--out", str(train), "--workers", "2"]) == 0
    assert main(["forecaster", "make-dataset", "--synthetic", "--nights", "2",
                 "--seed-start", "100", "--duration-s", "1500", "--out", str(test),
                 "--workers", "1"]) == 0
    nights, info = ft.load_dataset(train)
    assert len(nights) == 5 and nights[0].features.shape == (50, len(ft.FEATURE_NAMES))
    assert info["synthetic"] is True
    # parallel generation equals serial generation
    np.testing.assert_array_equal(nights[1].features, ft.synthetic_night(1, 50, stim=0.1).features)
    ck_path, card = tmp_path / "f.pt", tmp_path / "MODEL_CARD.md"
    assert main(["forecaster", "train", "--data", str(train), "--out", str(ck_path),
                 "--epochs", "2", "--window-epochs", "4", "--horizon-epochs", "4",
                 "--hidden", "8", "--test-data", str(test), "--card", str(card),
                 "--model-version", "cli-test"]) == 0
    out = capsys.readouterr()
    # progress off a terminal: plain lines with done/total and ETA, ending at 100 %
    err = out.err.splitlines()
    assert "dataset: 0% (0/5 nights), elapsed 0:00:00, ETA -:--:--" in err
    assert any(ln.startswith("dataset: 100% (5/5 nights)") for ln in err)
    train_lines = [ln for ln in err if ln.startswith("training: ")]
    assert train_lines[0].startswith("training: 0% (0/10 epochs)")      # 5 members x 2
    assert train_lines[-1].startswith("training: 100% (10/10 epochs)")
    assert "epoch 2/2" in train_lines[-1]         # the last status (train/val loss)
    assert "persistence" in out.out and "linear" in out.out
    ck = Checkpoint.load(ck_path)
    assert ck.model_version == "cli-test" and "test" in ck.metadata["evaluation"]
    text = card.read_text()
    assert "| forecaster |" in text and "persistence" in text
    js = tmp_path / "ev.json"
    assert main(["forecaster", "evaluate", "--checkpoint", str(ck_path), "--train-data",
                 str(train), "--test-data", str(test), "--json", str(js)]) == 0
    assert set(json.loads(js.read_text())) >= {"model", "persistence", "linear"}


def test_quiet_dataset_and_training_print_no_progress(tmp_path, capsys):
    data = tmp_path / "d.npz"
    assert main(["forecaster", "make-dataset", "--synthetic", "--nights", "3",
                 "--duration-s", "900", "--out", str(data), "--workers", "1",
                 "--quiet"]) == 0
    assert main(["forecaster", "train", "--data", str(data), "--out", str(tmp_path / "f.pt"),
                 "--epochs", "1", "--members", "1", "--window-epochs", "3",
                 "--horizon-epochs", "3", "--hidden", "4", "--quiet"]) == 0
    out = capsys.readouterr()
    assert out.err == "" and "wrote" in out.out


def test_training_reports_structured_progress_and_early_stops():
    """decoders/ draws nothing: it hands Progress records to a callback."""
    nights = [ft.synthetic_night(s, n_epochs=40, epoch_s=10.0) for s in range(4)]
    seen: list[ft.Progress] = []
    ft.train(nights, ft.TrainSettings(window_epochs=3, horizon_epochs=3, hidden=4, epochs=40,
                                      members=2, patience=1, seed=3, lr=0.1),
             epoch_s=10.0, hop_s=10.0, progress=seen.append)
    assert all(p.unit == "epochs" and p.total == 80 for p in seen)
    done = [p.done for p in seen]
    assert done == sorted(done) and done[-1] == 80 and done[0] == 1
    stops = [p for p in seen if p.note]
    assert len(stops) == 2 and all("early stop" in p.message for p in stops)
    assert [p.done for p in stops] == [40, 80]    # a stop skips the rest of its member
    made: list[ft.Progress] = []
    ft.make_dataset([("synthetic", {"seed": s, "n_epochs": 5}) for s in range(3)], workers=1,
                    progress=made.append)
    assert [(p.done, p.total, p.unit) for p in made] == [(1, 3, "nights"), (2, 3, "nights"),
                                                         (3, 3, "nights")]


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["forecaster", "train", "--data", str(tmp_path / "none.npz"),
                 "--out", str(tmp_path / "f.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: dataset") and "not found" in err and "\n" not in err
    assert main(["forecaster", "evaluate", "--checkpoint", str(tmp_path / "x.pt"),
                 "--train-data", "a.npz", "--test-data", "b.npz"]) == 2
    assert "forecaster checkpoint" in capsys.readouterr().err


def test_outcomes_csv_format_and_errors(tmp_path):
    good = tmp_path / "o.csv"
    good.write_text("recording,time_s,memory,recall\nn1.xdf,0,words,0.6\n"
                    "n1.xdf,3600,words,0.5\n", encoding="utf-8")
    assert ft.read_outcomes_csv(good) == {"n1.xdf": [(0.0, "words", 0.6),
                                                     (3600.0, "words", 0.5)]}
    for body, msg in (("rec,time_s\n", "header must have"),
                      ("recording,time_s,memory,recall\nn1.xdf,x,words,0.5\n", "line 2"),
                      ("recording,time_s,memory,recall\nn1.xdf,0,words,1.5\n", "0-1"),
                      ("recording,time_s,memory,recall\nn1.xdf,0,words,0.5\n",
                       "fewer than two tests")):
        bad = tmp_path / "bad.csv"
        bad.write_text(body, encoding="utf-8")
        with pytest.raises(ValueError, match=msg):
            ft.read_outcomes_csv(bad)


def test_nights_from_a_recorded_session(tmp_path):
    """A simulated session written through the recorder, labelled by a CSV."""
    rec = tmp_path / "night.xdf"
    assert main(["sim", "--duration", "65", "--out", str(rec), "--seed", "3"]) == 0
    csv = tmp_path / "outcomes.csv"
    csv.write_text("recording,time_s,memory,recall\nnight.xdf,0,a,0.6\nnight.xdf,60,a,0.5\n"
                   "night.xdf,-10,b,0.7\nnight.xdf,60,b,0.7\n", encoding="utf-8")
    nights = ft.nights_from_recordings(csv)
    assert len(nights) == 1
    n = nights[0]
    # epochs are aligned to multiples of 30 s on the host clock, so a 65 s recording
    # spans two or three of them (the first may be partial: coverage < 1)
    k = n.features.shape[0]
    assert k in (2, 3) and n.features.shape[1] == len(ft.FEATURE_NAMES)
    assert np.all(np.diff(n.t_end_s) == pytest.approx(30.0))
    assert 0 < n.t_end_s[0] <= 30.0 + 1e-6
    cov = n.features[:, ft.FEATURE_NAMES.index("coverage")]
    assert cov[-1] == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(n.strength[:, 0], np.interp(n.t_end_s, [0, 60], [0.6, 0.5]))
    np.testing.assert_allclose(n.strength[:, 1], 0.7)
    assert n.features[:, ft.FEATURE_NAMES.index("ripple_rate_hz")].sum() >= 0
