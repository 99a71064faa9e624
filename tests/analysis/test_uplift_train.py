"""The uplift MLP's training recipe recovers a known gain function from noisy labels.

Synthetic candidates with a known expected gain (simulator truth stands in for nothing
here: the function is written down), so the check is against that function, not against
our own output."""
import numpy as np
import pytest

from engramloop.analysis.training.uplift_train import fit_uplift, score_uplift
from engramloop.decoders.pulse_features import CANDIDATE_NAMES
from engramloop.decoders.uplift import UpliftModel

pytest.importorskip("torch")


def _candidates(rng, n_nights=6, per_night=300):
    x = rng.normal(0.0, 1.0, (n_nights * per_night, len(CANDIDATE_NAMES)))
    sp = CANDIDATE_NAMES.index("spindle_recent")
    x[:, sp] = rng.random(len(x)) < 0.2
    el = CANDIDATE_NAMES.index("elapsed_h")
    x[:, el] = rng.uniform(0.0, 0.33, len(x))
    truth = 1e-4 * (2.0 + 3.0 * x[:, sp] + 6.0 * x[:, el])      # recall per pulse
    nights = np.repeat(np.arange(100, 100 + n_nights), per_night)
    return x, truth, nights


def test_fit_recovers_a_known_gain_function_from_noisy_labels(tmp_path):
    rng = np.random.default_rng(7)
    x, truth, nights = _candidates(rng)
    y = truth + rng.normal(0.0, 1e-4, len(truth))
    model = fit_uplift(x, y, nights, [100, 103], seed=0, epochs=60)
    assert model.info["val_nights"] == [100, 103]
    assert 100 not in model.info["train_nights"]
    x2, truth2, _ = _candidates(np.random.default_rng(8), n_nights=2)
    m = score_uplift(model, x2, truth2)
    assert m["spearman"] > 0.8
    assert m["r2"] > 0.6, m
    back = UpliftModel.load(model.save(tmp_path / "u.json"))
    np.testing.assert_allclose(back.predict_many(x2), model.predict_many(x2))
    assert "pulses_so_far_h" not in back.columns


def test_fit_refuses_without_training_or_held_out_nights():
    x, truth, nights = _candidates(np.random.default_rng(1), n_nights=2, per_night=20)
    with pytest.raises(ValueError, match="held out"):
        fit_uplift(x, truth, nights, [])
    with pytest.raises(ValueError, match="held out"):
        fit_uplift(x, truth, nights, [100, 101])
