"""How much ripple recall do blanked light artefacts cost? (tests/decoders/test_detect_ripple.py
::test_blanked_light_artefacts_do_not_blind_the_detector, over more seeds.)

Per seed: 60 s of the simulator under configs/sim-ripple.toml; the detector's events on the
clean signal; a 50 ms, 400 uV photoelectric light step (2 ms time constant) 1 ms after each
clean detection at least 0.2 s apart; the detector again on the lit signal with every
pulse reported through ``RippleDetector.blank``. Prints recall against the simulator's
truth for both and the deficit, and which clean detections were lost (time since the last
light onset before them; 0.07 s or less: inside that light's blank).

    PYTHONPATH=src .venv/bin/python bench/blank_recall.py [--seeds 1 2 3 4 5 6 7 8]
"""
from __future__ import annotations

import argparse

import numpy as np

from engramloop.analysis.scoring import intervals, replay, score_detections
from engramloop.controller.config import SHIPPED_DIR, load_config
from engramloop.decoders.ripple import RippleDetector
from engramloop.sim.generate import simulate


def light_steps(t: np.ndarray, onsets: list[float], width_s: float = 0.05,
                amp_v: float = 400e-6, tau_s: float = 0.002) -> np.ndarray:
    """The artefact alone, shape (n,): rises with tau_s while the light is on, decays after."""
    y = np.zeros(t.shape[0])
    for o in onsets:
        d = t - o
        on = (d >= 0) & (d < width_s)
        y[on] += amp_v * (1 - np.exp(-d[on] / tau_s))
        after = d >= width_s
        y[after] += amp_v * (1 - np.exp(-width_s / tau_s)) * np.exp(-(d[after] - width_s) / tau_s)
    return y


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 7, 8])
    args = ap.parse_args()
    cfg = load_config(SHIPPED_DIR / "sim-ripple.toml")
    s = cfg.detectors.ripple
    for seed in args.seeds:
        x, t, truth = simulate(cfg.sim, seed=seed, duration_s=60.0)
        names = tuple(truth.channels)
        fs = truth.rate_hz
        tr = intervals([{"onset_s": r.onset_s, "offset_s": r.offset_s, "peak_s": r.peak_s}
                        for r in truth.events("ripple")])

        def detect(sig: np.ndarray, light: list[float]) -> list[float]:
            det = RippleDetector(s)
            for o in light:
                det.blank(o, o + 0.05)
            return [e.detect_s for e in replay([det], sig, t, fs, names, 10)
                    if e.kind == "ripple"]

        clean = detect(x, [])
        light: list[float] = []
        for d in clean:
            if not light or d - light[-1] >= 0.2:
                light.append(d + 0.001)
        y = x.copy()
        lfp = np.array([n.startswith("CA") for n in names])
        y[:, lfp] += light_steps(t, light)[:, None]
        lit = detect(y, light)
        rc = score_detections(clean, tr, t[-1] - 5.0).recall
        rb = score_detections(lit, tr, t[-1] - 5.0).recall
        lost = [(round(c, 3), round(c - max(o for o in light if o < c), 3))
                for c in clean if not any(abs(c - e) < 0.03 for e in lit)
                and any(o < c for o in light)]
        print(f"seed {seed}: recall clean {rc:.3f} lit+blanked {rb:.3f} deficit {rc - rb:+.3f}"
              f"  lost (t, s since light) {lost}")


if __name__ == "__main__":
    main()
