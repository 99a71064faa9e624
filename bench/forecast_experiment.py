"""The fixed pulse-budget experiment of issue 21, at equal pulses delivered.

Conditions (sham, ungated, spaced, spindle-conditioned rule, two oracles, the learned
uplift model's top-N, the online budget allocator) each deliver N = 10/20/30/60 pulses
>= --gap-s apart on >= 20 held-out seeds; nights of --duration-s (default 1200 s) that all
contain N3. Prints each condition's gain over the sham twin with paired 95 % intervals,
the paired comparisons at equal N and targets A and B as MET/MISSED. The method is
described in ``engramloop.analysis.training.experiment``; the same run is
``engramloop forecaster experiment``.

    PYTHONPATH=src python bench/forecast_experiment.py [--seeds 20] [--workers 2]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from engramloop.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["forecaster", "experiment", *sys.argv[1:]]))
