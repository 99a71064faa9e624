"""core.angles.wrap_deg, the one angle wrap (the simulator's truth, the phase estimators,
the trial and report phase errors), against NumPy's complex angle as the reference."""
import numpy as np
import pytest

from engramloop.core.angles import wrap_deg


def _numpy_wrap(x_deg: np.ndarray) -> np.ndarray:
    """numpy.angle(exp(1j x)): the principal value, range (-pi, pi]."""
    return np.degrees(np.angle(np.exp(1j * np.radians(x_deg))))


def test_agrees_with_numpy_angle_of_exp():
    rng = np.random.default_rng(22)
    x = np.concatenate([rng.uniform(-5000.0, 5000.0, 20_000), rng.uniform(-181, 181, 5000),
                        np.arange(-720.0, 721.0, 0.5) + 1e-6])
    got = wrap_deg(x)
    want = _numpy_wrap(x)
    assert got.shape == x.shape
    assert np.all((got > -180.0) & (got <= 180.0))
    # the same angle (compared on the circle: near +-180 the two may sit on either side)
    assert np.max(np.abs(np.angle(np.exp(1j * np.radians(got - want))))) < 1e-9
    # and the same number away from the branch cut
    away = np.abs(want) < 179.9
    np.testing.assert_allclose(got[away], want[away], atol=1e-9)


@pytest.mark.parametrize("x, want", [(-180.0, 180.0), (180.0, 180.0), (540.0, 180.0),
                                     (-540.0, 180.0), (-190.0, 170.0), (190.0, -170.0),
                                     (0.0, 0.0), (359.0, -1.0), (-0.0, 0.0)])
def test_branch_cut_is_that_of_numpy_angle(x, want):
    """(-180, 180]: -180 is 180, as numpy.angle gives +pi for -1 + 0j."""
    got = wrap_deg(x)
    assert isinstance(got, float)
    assert got == pytest.approx(want, abs=1e-12)
    assert np.degrees(np.angle(-1 + 0j)) == 180.0


def test_shapes_and_nan():
    assert wrap_deg(np.zeros((3, 2))).shape == (3, 2)
    out = wrap_deg(np.array([np.nan, 370.0]))
    assert np.isnan(out[0]) and out[1] == pytest.approx(10.0)
