"""Forecaster: checkpoint format, reproducible training, metrics, baselines, export."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from engramloop.analysis import training as ft
from engramloop.decoders.features import FEATURE_NAMES, FeatureVector
from engramloop.decoders.forecaster import (
    FORMAT_VERSION,
    Checkpoint,
    CheckpointError,
    Forecaster,
    default_checkpoint_path,
)

SMALL = ft.TrainSettings(window_epochs=4, horizon_epochs=4, hidden=8, epochs=3, batch=128,
                         members=2, seed=3)


@pytest.fixture(scope="module")
def nights():
    return [ft.synthetic_night(s, n_epochs=60) for s in range(6)]


@pytest.fixture(scope="module")
def checkpoint(nights):
    return ft.train(nights, SMALL, epoch_s=30.0, hop_s=30.0, model_version="test-1")


def test_training_is_reproducible_for_a_seed(nights, checkpoint):
    again = ft.train(nights, SMALL, epoch_s=30.0, hop_s=30.0, model_version="test-1")
    for k, v in checkpoint.state_dict.items():
        assert torch.equal(v, again.state_dict[k]), k
    assert (checkpoint.calib_a, checkpoint.calib_b) == (again.calib_a, again.calib_b)
    other = ft.train(nights, dataclasses.replace(SMALL, seed=4), epoch_s=30.0, hop_s=30.0)
    assert any(not torch.equal(v, other.state_dict[k]) for k, v in checkpoint.state_dict.items())


def test_checkpoint_round_trip(tmp_path, nights, checkpoint):
    path = checkpoint.save(tmp_path / "f.pt")
    fc = Forecaster.load(path, epoch_s=30.0, hop_s=30.0)
    assert fc.version == "test-1" and fc.window == 4
    x = nights[0].features[:10]
    a = Forecaster(checkpoint).predict(x, time_s=5.0)
    b = fc.predict(x, time_s=5.0)
    assert a == b
    assert 0.0 <= b.p_below_median <= 1.0 and b.horizon_s == 120.0 and b.time_s == 5.0
    # predict() on a window equals the batch path
    p, d = fc.predict_batch(x[None, -4:])
    assert p[0] == pytest.approx(b.p_below_median, rel=1e-5)
    assert d[0] == pytest.approx(b.delta_strength, rel=1e-5, abs=1e-9)


def test_extreme_logits_give_probabilities_not_overflow(checkpoint, nights):
    """An input far from the training data can push the calibrated logit to thousands:
    math.exp overflowed and took the forecaster worker down (seen while re-checking the
    checkpoint on shifted features). Both paths now give 0 or 1."""
    x = nights[0].features[:10]
    for a in (1e6, -1e6):
        fc = Forecaster(dataclasses.replace(checkpoint, calib_a=a, calib_b=0.0))
        with torch.inference_mode():
            out = float(fc.net(torch.from_numpy(fc.normalise(x[None, -4:])))[0, 1])
        assert out != 0.0
        p = fc.predict(x).p_below_median
        assert p == (1.0 if a * out > 0 else 0.0)
        pb, _ = fc.predict_batch(x[None, -4:])
        assert pb[0] == p


def test_short_history_is_padded_with_the_first_epoch(checkpoint, nights):
    fc = Forecaster(checkpoint)
    vecs = [FeatureVector(30.0 * i, 30.0 * (i + 1), nights[1].features[i]) for i in range(2)]
    f = fc.predict(vecs)
    padded = np.vstack([nights[1].features[:1]] * 2 + [nights[1].features[:2]])
    assert f.time_s == 60.0
    assert fc.predict(padded).p_below_median == pytest.approx(f.p_below_median, rel=1e-6)
    with pytest.raises(ValueError, match="shape"):
        fc.predict(np.zeros((3, 5)))


def test_mismatched_checkpoints_are_clear_errors(tmp_path, checkpoint):
    with pytest.raises(CheckpointError, match="file not found"):
        Checkpoint.load(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        Checkpoint.load(junk)
    d = checkpoint.to_dict()
    d["format_version"] = FORMAT_VERSION + 1
    torch.save(d, tmp_path / "v2.pt")
    with pytest.raises(CheckpointError, match="format version"):
        Checkpoint.load(tmp_path / "v2.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an engramloop forecaster"):
        Checkpoint.load(tmp_path / "other.pt")
    d = checkpoint.to_dict()
    d["arch"]["kind"] = "tcn"
    torch.save(d, tmp_path / "tcn.pt")
    with pytest.raises(CheckpointError, match="architecture 'tcn'"):
        Checkpoint.load(tmp_path / "tcn.pt")
    path = checkpoint.save(tmp_path / "ok.pt")
    with pytest.raises(CheckpointError, match="epoch_s = 30.0 s"):
        Forecaster.load(path, epoch_s=10.0)
    with pytest.raises(CheckpointError, match="different feature set"):
        Forecaster.load(path, feature_names=FEATURE_NAMES[:-1])
    d = checkpoint.to_dict()
    d["state_dict"] = {k: v[..., :1].clone() for k, v in d["state_dict"].items()}
    torch.save(d, tmp_path / "bad_weights.pt")
    with pytest.raises(CheckpointError, match="weights do not fit"):
        Forecaster.load(tmp_path / "bad_weights.pt")


def test_metrics_match_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.3
    s = np.round(y * 0.5 + rng.normal(0, 0.5, 500), 1)   # rounded: many ties
    p = 1 / (1 + np.exp(-s))
    assert ft.auroc(y, s) == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)
    assert ft.brier(y, p) == pytest.approx(metrics.brier_score_loss(y, p), abs=1e-12)
    t = rng.normal(size=200)
    pred = t + rng.normal(0, 0.5, 200)
    assert ft.r2(t, pred) == pytest.approx(metrics.r2_score(t, pred), abs=1e-12)
    assert np.isnan(ft.auroc(np.zeros(5), np.arange(5)))
    # a perfectly calibrated predictor (y drawn from p) has a small ECE
    pp = rng.random(20000)
    yy = rng.random(20000) < pp
    cal = ft.calibration_table(yy, pp)
    assert cal["ece"] < 0.02 and sum(b[2] for b in cal["bins"]) == 20000


def test_windows_targets_and_persistence(nights):
    w = ft.make_windows(nights[:1], 4, 4)
    n = nights[0]
    pooled = n.strength.mean(axis=1)
    assert len(w.delta) == len(pooled) - 4
    np.testing.assert_allclose(w.delta, pooled[4:] - pooled[:-4])
    np.testing.assert_allclose(w.past_delta[4:], pooled[4:-4] - pooled[:-8])
    np.testing.assert_array_equal(w.x[10, -1], n.features[10])
    np.testing.assert_array_equal(w.x[0, 0], n.features[0])   # padded start


def test_evaluate_reports_model_and_baselines(nights, checkpoint):
    ev = ft.evaluate(checkpoint, nights[:4], nights[4:])
    for name in ("model", "persistence", "linear"):
        for key in ("auroc", "brier", "r2", "ece"):
            assert np.isfinite(ev[name][key]), (name, key)
    assert 0 < ev["positive_fraction"] < 1


def test_fused_ensemble_equals_the_members(checkpoint, nights):
    fc = Forecaster(checkpoint)
    assert checkpoint.members == 2 and fc.net is not fc.ensemble
    x = torch.from_numpy(fc.normalise(np.stack([nights[3].features[i:i + 4]
                                                for i in range(20)])))
    with torch.inference_mode():
        members = torch.stack([m(x) for m in fc.ensemble.members]).mean(0)
        torch.testing.assert_close(fc.ensemble(x), members)
        torch.testing.assert_close(fc.net(x), members, rtol=1e-5, atol=1e-6)


def test_torchscript_export_is_equal(tmp_path, checkpoint, nights):
    fc = Forecaster(checkpoint)
    path = fc.export_torchscript(tmp_path / "f.ts")
    ts = torch.jit.load(str(path))
    x = torch.from_numpy(fc.normalise(nights[2].features[None, :4]))
    with torch.inference_mode():
        assert torch.allclose(ts(x), fc.net(x), atol=0, rtol=0)


def test_shipped_checkpoint_loads_and_predicts():
    path = default_checkpoint_path()
    assert path.is_file(), "decoders/data/forecaster.pt must ship with the package"
    assert path.stat().st_size < 3 * 2 ** 20
    fc = Forecaster.load()
    f = fc.predict(np.zeros((fc.window, len(FEATURE_NAMES))) + fc.checkpoint.feature_mean)
    assert 0.0 <= f.p_below_median <= 1.0 and np.isfinite(f.delta_strength)
    assert (default_checkpoint_path().parent / "MODEL_CARD.md").is_file()


def test_domain_randomisation_never_draws_the_unseen_parameters():
    """Randomised training nights span the shifted set's parameters but never come within
    RANDOMIZE_EXCLUSION of them, so the 'unseen simulator parameters' test stays unseen."""
    draws = [ft.randomized_overrides(s) for s in range(400)]
    assert draws[7] == ft.randomized_overrides(7)             # reproducible for a seed
    for key, (lo, hi) in ft.RANDOMIZE_RANGES.items():
        v = np.array([d[key] for d in draws])
        c = ft.SHIFTED_OVERRIDES[key]
        assert lo <= v.min() and v.max() <= hi, key
        assert np.all(np.abs(v / c - 1) >= ft.RANDOMIZE_EXCLUSION - 1e-12), key
        assert (v < c).any() and (v > c).any(), key           # the shifted value is bracketed
    spec = ft.night_spec(5, 60.0, randomize=True)
    assert spec.sim_overrides["memory.decay_tau_s"] == draws[5]["memory.decay_tau_s"]
    with pytest.raises(ValueError, match="either shifted"):
        ft.night_spec(5, 60.0, randomize=True, shifted=True)


def test_margin_intervals_resample_whole_nights(nights, checkpoint):
    test = [ft.synthetic_night(s, n_epochs=60) for s in (50, 51, 52)]
    ci = ft.margin_intervals(checkpoint, nights, test, n_boot=50, seed=1)
    ev = ft.evaluate(checkpoint, nights, test)
    assert ci == ft.margin_intervals(checkpoint, nights, test, n_boot=50, seed=1)
    for base in ("persistence", "linear"):
        for metric in ("auroc", "brier", "r2"):
            lo, hi = ci[base][metric]
            assert lo <= hi
            # the full-sample margin lies near the interval (percentile bootstrap)
            full = ev["model"][metric] - ev[base][metric]
            assert lo - 0.5 <= full <= hi + 0.5
