"""Datasets, training, baselines and evaluation for the memory-decay forecaster:
:mod:`.dataset`, :mod:`.train`, :mod:`.evaluate`, :mod:`.card`.

Pipeline
--------
1. **Nights.** A :class:`Night` is one session: the epoch feature matrix
   (:mod:`engramloop.decoders.features`), the epoch end times, and the memory strength of each
   memory at each epoch end. Nights come from the simulator (:func:`sim_night`: the real
   detectors and feature stage run on a simulated night whose engram model gives the
   ground-truth strength), from a fast synthetic generator used by the tests
   (:func:`synthetic_night`), or from a lab's own recordings plus a CSV of memory
   outcomes (:func:`nights_from_recordings`). :func:`make_dataset` builds many nights in
   parallel on the sweep engine (a local Dask pool or a cluster) and saves them as one ``.npz``.
2. **Windows.** :func:`make_windows` cuts every night into samples: the last
   ``window_epochs`` feature vectors up to epoch ``t`` -> the pooled strength change from
   ``t`` to ``t + horizon`` (regression target), whether it is below ``-decay_threshold``
   (classification target), and the per-memory changes.
3. **Training.** :func:`train` fits ``members`` :class:`~engramloop.decoders.forecaster.ForecastNet`
   networks (a seed ensemble) with Adam, reproducibly for a seed (all RNGs seeded, one
   thread, deterministic order), holding out whole nights for early stopping and Platt
   calibration, and returns a :class:`~engramloop.decoders.forecaster.Checkpoint`.
4. **Evaluation.** :func:`evaluate` scores the model on held-out nights next to a
   persistence baseline and linear/logistic baselines on the same features: AUROC, Brier
   score, R^2 and calibration (reliability bins, expected calibration error).

Torch is imported inside the functions that need it so dataset workers stay light.
"""
from __future__ import annotations

from engramloop.analysis.training.card import (
    write_model_card,
)
from engramloop.analysis.training.dataset import (
    DATASET_CHANNELS,
    RANDOMIZE_EXCLUSION,
    RANDOMIZE_RANGES,
    SHIFTED_OVERRIDES,
    Night,
    NightSpec,
    Progress,
    ProgressCallback,
    Windows,
    load_dataset,
    make_dataset,
    make_windows,
    night_detectors,
    night_spec,
    nights_from_recordings,
    randomized_overrides,
    read_outcomes_csv,
    ripple_pulse_spec,
    save_dataset,
    sim_night,
    sim_settings,
    subset_windows,
    synthetic_night,
)
from engramloop.analysis.training.evaluate import (
    auroc,
    brier,
    calibration_table,
    evaluate,
    margin_intervals,
    r2,
)
from engramloop.analysis.training.train import (
    TrainSettings,
    train,
)
from engramloop.decoders.features import FEATURE_NAMES

__all__ = ["FEATURE_NAMES", "night_detectors", "sim_settings",
           "DATASET_CHANNELS", "Night", "NightSpec", "Progress", "ProgressCallback",
           "RANDOMIZE_EXCLUSION", "RANDOMIZE_RANGES", "SHIFTED_OVERRIDES",
           "TrainSettings", "Windows", "auroc", "brier", "calibration_table",
           "evaluate", "load_dataset", "make_dataset", "make_windows",
           "margin_intervals", "night_spec", "nights_from_recordings", "r2",
           "randomized_overrides", "read_outcomes_csv", "ripple_pulse_spec",
           "save_dataset", "sim_night", "subset_windows", "synthetic_night", "train",
           "write_model_card"]
