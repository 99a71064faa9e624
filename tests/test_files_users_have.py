"""Issue 18 point 10: files users have. OpenBCI GUI recordings (OpenBCI-RAW-*.txt),
EDF+ annotations (into the recording and as --truth), EDF+D records at their real times,
and LSL streams without unit metadata (refused unless the config gives the unit)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from engramloop.core.chunk import SourceError
from engramloop.drivers.lsl_source import LslSource
from engramloop.drivers.sources import LslSettings

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
pytestmark = pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")


# ------------------------------------------------------------------ LSL units
def test_lsl_stream_without_units_is_refused_unless_configured() -> None:
    pytest.importorskip("pylsl")
    from test_lsl import Outlet, _name

    name = _name()
    out = Outlet(name, unit="")                     # a real outlet declaring no unit
    try:
        src = LslSource(LslSettings(name=name, resolve_timeout_s=5.0))
        with pytest.raises(SourceError, match=r"channel C3 declares no unit; set "
                                              r"\[source.lsl\] units = \"uV\""):
            src.start()
        src = LslSource(LslSettings(name=name, resolve_timeout_s=5.0, units="uV"))
        src.start()
        try:
            c = None
            for _ in range(200):
                c = src.read(0.5)
                if c is not None and c.n_samples:
                    break
        finally:
            src.stop()
    finally:
        out.kill()
    assert c is not None and c.channels == ("C3", "Cz")
    # the outlet counts up on C3 and down on Cz, in the unit we declared (uV)
    np.testing.assert_allclose(c.samples[:, 1], -c.samples[:, 0])
    np.testing.assert_allclose(np.diff(c.samples[:, 0]), 1e-6, rtol=1e-6)
