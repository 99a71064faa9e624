"""How many bits a source's samples really carry, so the recorder can store them in
float32 where that loses nothing the source had.

A source says what its values can be stored as with a ``sample_format`` attribute,
``"float32"`` or ``"float64"``; a source that says nothing is recorded as float64 (the
safe side). Chunks stay float64 in memory whatever the source declares: this is only
about the recording.

Why float32 is enough for a 24-bit ADC: float32 has a 24-bit significand, so rounding a
value ``x`` to float32 moves it by at most ``|x| * 2**-24`` (the unit roundoff; IEEE 754
binary32). An ADC of ``b`` bits spanning ``+-full_scale`` has a step of
``full_scale / 2**(b - 1)``; for ``b <= 24`` the float32 rounding error of any value it
can produce is at most half a step -- below the converter's own quantisation. A 24-bit
EEG front end (TI ADS1299 on the OpenBCI Cyton, Microchip MCP3912 on the Ganglion), an
EDF (16-bit) or BDF (24-bit) file, an LSL stream sent as float32 or int8/int16 all pass;
an int32 or double LSL stream and an .npz of float64 do not, and stay float64.
"""
from __future__ import annotations

import math

import numpy as np

FLOAT32 = "float32"
FLOAT64 = "float64"
SAMPLE_FORMATS = (FLOAT32, FLOAT64)

def for_adc_bits(bits: int) -> str:
    """The storage format for samples from a ``bits``-bit converter (any scale)."""
    return FLOAT32 if 0 < int(bits) <= 24 else FLOAT64


def for_range(max_abs: float, step: float) -> str:
    """float32 when every value up to ``max_abs`` in magnitude rounds to float32 within
    half a quantisation ``step`` (both in the same unit); float64 otherwise or when
    unknown.

    The largest rounding error is half the float32 spacing in the highest binade holding
    values below ``max_abs`` (a power of two itself is exact), so a BDF channel spanning
    the full 24-bit range -- BioSemi's -262144..262143 uV in steps of 1/32 uV -- passes.
    An EDF/BDF channel's ``max_abs`` is the larger magnitude of its physical minimum and
    maximum and its step the physical range over the digital range: a physical range far
    from zero (an offset much larger than the span) fails, as it should.
    """
    if not (math.isfinite(max_abs) and math.isfinite(step) and step > 0):
        return FLOAT64
    m = abs(float(max_abs))
    if m == 0.0:
        return FLOAT32
    frac, exp = math.frexp(m)            # m = frac * 2**exp, 0.5 <= frac < 1
    binade = exp - 2 if frac == 0.5 else exp - 1
    half_spacing = math.ldexp(1.0, binade - 24)   # float32: 23 stored significand bits
    return FLOAT32 if half_spacing <= step / 2 else FLOAT64


def for_dtype(dtype: object) -> str:
    """The storage format for values a device or file sent in ``dtype``: float32 for
    float32 and for integers of at most 16 bits (exact in float32 after any scale to
    within the float32 roundoff), float64 for everything wider or unknown."""
    try:
        dt = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError:
        return FLOAT64
    if dt == np.float32 or (dt.kind in "iu" and dt.itemsize <= 2):
        return FLOAT32
    return FLOAT64


def combine(*formats: str) -> str:
    """float32 only when every part is float32 (a stream of several channels)."""
    return FLOAT32 if formats and all(f == FLOAT32 for f in formats) else FLOAT64


def check(fmt: str, what: str = "sample_format") -> str:
    """``fmt`` if it is a known format; ValueError naming it otherwise."""
    if fmt not in SAMPLE_FORMATS:
        raise ValueError(f"{what} must be one of {', '.join(SAMPLE_FORMATS)}, got {fmt!r}")
    return fmt


__all__ = ["FLOAT32", "FLOAT64", "SAMPLE_FORMATS", "for_adc_bits", "for_range",
           "for_dtype", "combine", "check"]
