"""The uplift model's NumPy inference against torch running the same weights."""
import numpy as np
import pytest

from engramloop.decoders.pulse_features import CANDIDATE_NAMES
from engramloop.decoders.uplift import UpliftModel, UpliftModelError

torch = pytest.importorskip("torch")


def _net_and_model(tmp_path):
    torch.manual_seed(0)
    cols = list(CANDIDATE_NAMES[:-3])
    net = torch.nn.Sequential(torch.nn.Linear(len(cols), 8), torch.nn.ReLU(),
                              torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    lin = [m for m in net if isinstance(m, torch.nn.Linear)]
    mean, std = np.linspace(-1, 1, len(cols)), np.linspace(0.5, 2, len(cols))
    m = UpliftModel({"columns": cols, "mean": mean.tolist(), "std": std.tolist(),
                     "layers": [[x.weight.detach().numpy().T.tolist(),
                                 x.bias.detach().numpy().tolist()] for x in lin],
                     "scale": 1e4})
    path = m.save(tmp_path / "u.json")
    return net, cols, mean, std, UpliftModel.load(path)


def test_numpy_inference_matches_torch(tmp_path):
    net, cols, mean, std, m = _net_and_model(tmp_path)
    x = np.random.default_rng(1).normal(0, 1, (50, len(CANDIDATE_NAMES)))
    idx = [CANDIDATE_NAMES.index(c) for c in cols]
    with torch.no_grad():
        ref = net(torch.tensor((x[:, idx] - mean) / std, dtype=torch.float64
                               ).float()).numpy()[:, 0] / 1e4
    np.testing.assert_allclose(m.predict_many(x), ref, rtol=1e-5, atol=1e-9)
    assert m.predict(x[3]) == pytest.approx(float(ref[3]), rel=1e-5, abs=1e-9)


def test_refuses_non_finite_features_and_bad_files(tmp_path):
    _, _, _, _, m = _net_and_model(tmp_path)
    x = np.zeros(len(CANDIDATE_NAMES))
    x[0] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        m.predict(x)
    with pytest.raises(UpliftModelError, match="file not found"):
        UpliftModel.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"columns": ["nope"]}')
    with pytest.raises(UpliftModelError, match="unknown features"):
        UpliftModel.load(tmp_path / "bad.json")
