"""The opportunity forecast: how many good candidates the rest of the night will bring.

The budget allocator (:mod:`controller.allocator`) sets its threshold from the pulses it
has left and the candidates it expects to come. By default it extrapolates the rate seen so
far ("rate": spaced candidates per second times the seconds left). This module is the
learned alternative (issue 21, point 2): a linear model of the *rate of spaced eligible
candidates over the rest of the night* from what the loop knows at a candidate -- the
fraction of the night gone, the rate so far, the newest epoch's stage indices and the
recent event densities (:data:`decoders.pulse_features.CANDIDATE_NAMES`) -- times the
seconds left. Fitted on training nights by :mod:`analysis.training.opportunity_train`.

Pure and stateless per call (no I/O after loading, no clocks): ``expected(x, t_s,
spaced_seen, night_s)``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engramloop.decoders.pulse_features import CANDIDATE_NAMES

__all__ = ["OpportunityModel", "OpportunityModelError", "default_opportunity_path",
           "opportunity_inputs", "INPUT_NAMES"]

#: the candidate features the forecast reads (besides the night fraction and rate so far)
_STAGE = ("sws_index", "rem_index", "recent_ripple_hz", "recent_spindle_per_min",
          "recent_so_per_min", "recent_coupled_frac")
INPUT_NAMES: tuple[str, ...] = ("one", "night_frac", "night_frac2", "rate_so_far_hz") + _STAGE
_IDX = np.array([CANDIDATE_NAMES.index(c) for c in _STAGE])


def default_opportunity_path() -> Path:
    """The opportunity model shipped in the package (``decoders/data/opportunity.json``)."""
    return Path(__file__).resolve().parents[1] / "decoders" / "data" / "opportunity.json"


class OpportunityModelError(ValueError):
    """An opportunity model file that cannot be used."""


def opportunity_inputs(x: np.ndarray, t_s: np.ndarray, spaced_seen: np.ndarray,
                       night_s: float) -> np.ndarray:
    """Model inputs, shape (n, len(INPUT_NAMES)), for candidates ``x`` (shape (n,
    len(CANDIDATE_NAMES))) detected at ``t_s`` (seconds from the start, shape (n,)) after
    ``spaced_seen`` spaced eligible candidates (shape (n,), this one included)."""
    x = np.atleast_2d(np.asarray(x, float))
    t = np.asarray(t_s, float).reshape(-1)
    frac = np.clip(t / night_s, 0.0, 1.0)
    rate = np.asarray(spaced_seen, float).reshape(-1) / np.maximum(t, 60.0)
    return np.column_stack([np.ones(len(t)), frac, frac ** 2, rate, x[:, _IDX]])


class OpportunityModel:
    """``expected(x, t_s, spaced_seen, night_s)``: spaced eligible candidates still to come.

    Parameters
    ----------
    weights : dict
        ``inputs`` (must equal :data:`INPUT_NAMES`), ``coef`` (one per input: the rate of
        candidates per second over the rest of the night is ``inputs @ coef``, floored at
        0) and ``info``.
    """

    def __init__(self, weights: dict) -> None:
        if tuple(weights["inputs"]) != INPUT_NAMES:
            raise OpportunityModelError(f"opportunity model: inputs {weights['inputs']} are "
                                        f"not {list(INPUT_NAMES)}; refit it")
        self.coef = np.asarray(weights["coef"], float)
        if self.coef.shape != (len(INPUT_NAMES),) or not np.all(np.isfinite(self.coef)):
            raise OpportunityModelError("opportunity model: coef must be "
                                        f"{len(INPUT_NAMES)} finite numbers")
        self.info = dict(weights.get("info", {}))

    @classmethod
    def load(cls, path: str | Path) -> OpportunityModel:
        path = Path(path)
        try:
            return cls(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise OpportunityModelError(f"opportunity model {path}: file not found") from None
        except (KeyError, ValueError, TypeError) as exc:
            raise OpportunityModelError(f"opportunity model {path}: unreadable "
                                        f"({exc})") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps({"inputs": list(INPUT_NAMES), "coef": self.coef.tolist(),
                                    "info": self.info}, indent=1), encoding="utf-8")
        return path

    def expected_many(self, x: np.ndarray, t_s: np.ndarray, spaced_seen: np.ndarray,
                      night_s: float) -> np.ndarray:
        """Expected spaced eligible candidates after each candidate, shape (n,)."""
        t = np.asarray(t_s, float).reshape(-1)
        rate = np.maximum(opportunity_inputs(x, t, spaced_seen, night_s) @ self.coef, 0.0)
        return rate * np.maximum(night_s - t, 0.0)

    def expected(self, x: np.ndarray, t_s: float, spaced_seen: int, night_s: float) -> float:
        """One candidate's forecast (``x`` shape (len(CANDIDATE_NAMES),))."""
        return float(self.expected_many(np.asarray(x, float)[None, :], np.array([t_s]),
                                        np.array([spaced_seen]), night_s)[0])
