import numpy as np
import pytest

from engramloop.core.chunk import Chunk


def test_chunk_accepts_time_major_float64() -> None:
    c = Chunk(np.zeros((10, 3)), np.arange(10) / 1000.0, 1000.0, ("a", "b", "c"), 0.01)
    assert (c.n_samples, c.n_channels) == (10, 3)
    assert c.last_time_s == pytest.approx(0.009)


@pytest.mark.parametrize("samples, ts, names, err", [
    (np.zeros((10, 3), dtype=np.float32), np.zeros(10), ("a", "b", "c"), TypeError),
    (np.zeros((3, 10)).T, np.zeros(10), ("a", "b", "c"), TypeError),
    (np.zeros((10, 3)), np.zeros(9), ("a", "b", "c"), ValueError),
    (np.zeros((10, 3)), np.zeros(10), ("a", "b"), ValueError),
])
def test_chunk_rejects_bad_layout(samples, ts, names, err) -> None:
    with pytest.raises(err):
        Chunk(samples, ts, 1000.0, names, 0.0)
