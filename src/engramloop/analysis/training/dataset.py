"""Forecaster training data: nights (simulated, synthetic, or a lab's recordings with
memory outcomes), built in parallel on the sweep engine, saved and loaded, and cut into
windows (feature history -> strength change over the horizon)."""

from __future__ import annotations

import csv
import json
import math
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engramloop.analysis.fanout import map_ordered
from engramloop.core.chunk import Chunk, EndOfStream
from engramloop.core.pulse import PulseSpec
from engramloop.core.schema import build
from engramloop.decoders.detectors import DetectorsSettings, make_detectors
from engramloop.decoders.features import (
    FEATURE_NAMES,
    EpochFeatures,
    FeatureSettings,
    feature_matrix,
)
from engramloop.recording import reader
from engramloop.sim.settings import SimSettings
from engramloop.sim.source import SimSource

# ====================================================================== progress

@dataclass(frozen=True)
class Progress:
    """How far a long job (dataset generation, training, reading recordings) has come.

    The functions here draw nothing: they call a ``progress`` callback with one of these
    after each unit of work, and the caller (the command line) shows it.

    Attributes
    ----------
    done : int
        Units finished so far.
    total : int
        Units in the whole job (an upper bound for training, which may stop early).
    unit : str
        What a unit is: ``"nights"``, ``"epochs"``, ``"recordings"``.
    message : str
        What just happened, one line (``"epoch 3/60 train loss 0.41 val loss 0.44"``).
    note : bool
        True for a one-off event worth keeping in a log (an early stop, the time limit)
        rather than a status that the next update replaces.
    """

    done: int
    total: int
    unit: str
    message: str = ""
    note: bool = False


#: ``progress(update)``: called on the calling thread after each unit of work
ProgressCallback = Callable[[Progress], None]


# ====================================================================== nights

@dataclass
class Night:
    """One session.

    Attributes
    ----------
    features : ndarray, shape (n_epochs, n_features)
        Epoch feature vectors in :data:`~decoders.features.FEATURE_NAMES` order.
    t_end_s : ndarray, shape (n_epochs,)
        End time of each epoch, seconds from the start of the session.
    strength : ndarray, shape (n_epochs, n_memories)
        Memory strength (0-1 recall scale) of each memory at each epoch end.
    meta : dict
        Provenance: seed, condition, simulator parameters, source file...
    """

    features: np.ndarray
    t_end_s: np.ndarray
    strength: np.ndarray
    meta: dict = field(default_factory=dict)


def save_dataset(path: str | Path, nights: Sequence[Night], info: dict | None = None) -> Path:
    """Save nights to one ``.npz`` (arrays concatenated, offsets, JSON metadata)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lengths = np.array([len(n.t_end_s) for n in nights], dtype=np.int64)
    n_mem = {n.strength.shape[1] for n in nights}
    if len(n_mem) > 1:
        raise ValueError(f"nights have different numbers of memories: {sorted(n_mem)}")
    np.savez_compressed(
        path, features=np.concatenate([n.features for n in nights]),
        t_end_s=np.concatenate([n.t_end_s for n in nights]),
        strength=np.concatenate([n.strength for n in nights]), lengths=lengths,
        feature_names=np.array(FEATURE_NAMES),
        meta=np.array(json.dumps({"nights": [n.meta for n in nights], "info": info or {}})))
    return path


def load_dataset(path: str | Path) -> tuple[list[Night], dict]:
    """Load a dataset written by :func:`save_dataset`; returns (nights, info).

    Raises
    ------
    ValueError
        If the file is missing or its feature names differ from this version's.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"dataset {path}: file not found (make one with "
                         "`engramloop forecaster make-dataset`)")
    with np.load(path, allow_pickle=False) as z:
        names = tuple(str(s) for s in z["feature_names"])
        if names != FEATURE_NAMES:
            raise ValueError(f"dataset {path}: made with a different feature set; regenerate it")
        meta = json.loads(str(z["meta"]))
        ends = np.cumsum(z["lengths"])
        starts = ends - z["lengths"]
        nights = [Night(z["features"][a:b], z["t_end_s"][a:b], z["strength"][a:b], m)
                  for a, b, m in zip(starts, ends, meta["nights"], strict=True)]
    return nights, meta.get("info", {})


# ---------------------------------------------------------------- synthetic nights

def synthetic_night(seed: int, n_epochs: int = 240, epoch_s: float = 30.0,
                    n_memories: int = 4, stim: float = 0.0, decay_tau_s: float = 4 * 3600.0,
                    consolidation_gain: float = 0.0005) -> Night:
    """A fast stand-in for a simulated night (tests and quick experiments).

    A four-state sleep-stage Markov chain (wake, N2, N3, REM; stays ~5-10 epochs) sets
    the mean of every feature; memory strength decays exponentially (``decay_tau_s``) and
    is consolidated by *coupled* replay -- ripples inside spindles inside SO up-states,
    i.e. the product ``ripple rate x ripple-spindle fraction x SO-spindle coupling`` --
    a multiplicative effect a linear model on the features cannot represent exactly.

    Parameters
    ----------
    seed : int
    n_epochs : int
    epoch_s : float
        Epoch length, seconds.
    n_memories : int
    stim : float
        Extra coupled events per second from stimulation (0 = none), shows in ``pulses``.
    """
    rng = np.random.default_rng(seed)
    stages = np.empty(n_epochs, dtype=int)
    trans = np.array([[0.85, 0.15, 0.0, 0.0], [0.04, 0.84, 0.08, 0.04],
                      [0.0, 0.1, 0.9, 0.0], [0.06, 0.06, 0.0, 0.88]])
    s = 1
    for i in range(n_epochs):
        stages[i] = s
        s = rng.choice(4, p=trans[s])
    # per-stage means: ripple Hz, ripple-spindle frac, SO/min, spindle/min, coupling
    rip = np.array([0.05, 0.6, 1.0, 0.05])[stages]
    frac = np.array([0.05, 0.3, 0.45, 0.02])[stages]
    so = np.array([0.5, 3.0, 25.0, 0.3])[stages]
    sp = np.array([0.2, 6.0, 2.0, 0.1])[stages]
    coup = np.array([0.1, 0.35, 0.6, 0.05])[stages]
    k = len(FEATURE_NAMES)
    f = np.zeros((n_epochs, k))
    col = {n: i for i, n in enumerate(FEATURE_NAMES)}
    # slowly wandering per-night modulation of replay efficacy (unobserved drive)
    wander = np.exp(np.cumsum(rng.normal(0, 0.08, n_epochs)) * 0.5)
    lam = rip * epoch_s
    n_rip = rng.poisson(lam * np.clip(wander, 0.3, 3))
    f[:, col["ripple_rate_hz"]] = n_rip / epoch_s
    f[:, col["ripple_amp_uv"]] = np.where(n_rip > 0, 60 * rng.lognormal(0, 0.1, n_epochs), 0)
    f[:, col["ripple_score"]] = np.where(n_rip > 0, 6 + rng.normal(0, 0.5, n_epochs), 0)
    f[:, col["spindle_per_min"]] = rng.poisson(sp * epoch_s / 60) * 60 / epoch_s
    f[:, col["spindle_amp_uv"]] = 25 * rng.lognormal(0, 0.1, n_epochs)
    f[:, col["so_per_min"]] = rng.poisson(so * epoch_s / 60) * 60 / epoch_s
    f[:, col["so_amp_uv"]] = 75 * rng.lognormal(0, 0.1, n_epochs)
    cs = np.clip(coup + rng.normal(0, 0.1, n_epochs), 0, 1)
    f[:, col["so_spindle_strength"]] = cs
    ph = np.deg2rad(-15 + rng.normal(0, 20, n_epochs))
    f[:, col["so_spindle_cos"]] = cs * np.cos(ph)
    f[:, col["so_spindle_sin"]] = cs * np.sin(ph)
    fr = np.clip(frac + rng.normal(0, 0.08, n_epochs), 0, 1)
    f[:, col["ripple_spindle_frac"]] = fr
    base = np.array([[-10.5, -11.2, -11.6, -11.0, -9.2, -10.5],   # wake
                     [-10.0, -11.3, -11.0, -11.8, -9.8, -10.3],   # N2
                     [-9.3, -11.2, -11.4, -12.0, -10.0, -10.2],   # N3
                     [-10.6, -11.0, -11.9, -11.6, -9.0, -10.7]])  # REM
    bp = base[stages] + rng.normal(0, 0.12, (n_epochs, 6))
    f[:, col["logp_eeg_delta"]:col["logp_lfp_ripple"] + 1] = bp
    f[:, col["sws_index"]] = bp[:, 0] - bp[:, 3]
    f[:, col["rem_index"]] = bp[:, 4] - bp[:, 0]
    n_pulse = rng.poisson(stim * epoch_s * (stages >= 1) * (stages <= 2)) if stim else \
        np.zeros(n_epochs)
    f[:, col["pulses"]] = n_pulse
    f[:, col["coverage"]] = 1.0
    f[:, col["elapsed_h"]] = (np.arange(n_epochs) + 1) * epoch_s / 3600.0
    f[:, col["cum_ripples_k"]] = np.cumsum(n_rip) / 1000.0
    f[:, col["cum_coupled_k"]] = np.cumsum(n_rip * fr) / 1000.0
    f[:, col["cum_pulses_k"]] = np.cumsum(n_pulse) / 1000.0
    # memory: labile strength L decays; coupled replay moves labile strength into a
    # consolidated pool (Frey & Morris 1998 tagging idea, reduced to one rate)
    coupled = f[:, col["ripple_rate_hz"]] * fr * cs * epoch_s + 0.3 * n_pulse * (stages == 2)
    lab = np.full(n_memories, 0.6) * rng.uniform(0.8, 1.2, n_memories)
    con = np.zeros(n_memories)
    w = rng.uniform(0.5, 1.5, n_memories)   # how much each memory is replayed
    strength = np.empty((n_epochs, n_memories))
    decay = math.exp(-epoch_s / decay_tau_s)
    for i in range(n_epochs):
        # wake and REM: faster forgetting (interference); NREM: slow decay; coupled
        # replay strengthens the labile trace with diminishing returns
        d = decay ** (4.0 if stages[i] in (0, 3) else 1.0)
        gain = consolidation_gain * coupled[i] * w * (1.0 - lab - con)
        lab = lab * d + gain
        strength[i] = lab + con
    t_end = (np.arange(n_epochs) + 1) * epoch_s
    return Night(f, t_end, strength, {"seed": int(seed), "kind": "synthetic", "stim": stim,
                                      "decay_tau_s": decay_tau_s})


# ---------------------------------------------------------------- simulated nights

@dataclass(frozen=True)
class NightSpec:
    """What one simulated night looks like (picklable, for the worker pool)."""

    seed: int
    duration_s: float
    condition: str = "none"          # "none" | "sham" | "ungated" | "random"
    scale: float = 1.0               # SNR scale applied to signal amplitudes
    sim_overrides: dict = field(default_factory=dict)   # dotted [sim] keys -> values
    feature_settings: FeatureSettings = field(default_factory=FeatureSettings)
    rate_hz: float = 1000.0
    chunk_samples: int = 500
    pulses_per_min: float = 6.0
    modality: str = "optogenetic"    # "optogenetic" prolongs ripples, "electrical" cuts them


#: Channels simulated for datasets: one CA1 LFP channel and the two EEG channels the
#: default detectors use (spindles on Cz, slow oscillations on Fz). Fewer channels make
#: simulation ~3x faster than the 8-channel default.
DATASET_CHANNELS = ("CA1", "Cz", "Fz")

#: "Unseen simulator parameters" for out-of-distribution evaluation: weaker and rarer
#: ripples, noisier LFP, fewer coupled spindles, faster forgetting and drift.
SHIFTED_OVERRIDES = {
    "ripple.amplitude_v": 45e-6, "ripple.rate_n3_hz": 0.7, "ripple.rate_n2_hz": 0.45,
    "noise.lfp_white_v_per_rthz": 1.2e-6, "spindle.so_coupling": 0.45,
    "memory.decay_tau_s": 3 * 3600.0, "memory.drift_per_hour": 0.08,
}


#: Domain randomisation for training nights (Tobin et al. 2017): each parameter is drawn
#: uniformly from (low, high) per night, so the model sees many simulators instead of one.
#: The ranges bracket both the default and the :data:`SHIFTED_OVERRIDES` value, but a band
#: of +-:data:`RANDOMIZE_EXCLUSION` (relative) around every shifted value is never drawn:
#: no training night has any parameter within 10 % of the "unseen parameters" test set,
#: which therefore stays unseen (interpolation between seen simulators, not a copy).
RANDOMIZE_RANGES = {
    "ripple.amplitude_v": (35e-6, 80e-6), "ripple.rate_n3_hz": (0.5, 1.3),
    "ripple.rate_n2_hz": (0.3, 0.8), "noise.lfp_white_v_per_rthz": (0.6e-6, 1.5e-6),
    "spindle.so_coupling": (0.3, 0.8), "memory.decay_tau_s": (2 * 3600.0, 9 * 3600.0),
    "memory.drift_per_hour": (0.02, 0.11),
}
RANDOMIZE_EXCLUSION = 0.10


def randomized_overrides(seed: int) -> dict:
    """Per-night simulator parameters drawn from :data:`RANDOMIZE_RANGES` for ``seed``.

    Each value is uniform on its range minus the excluded band around the shifted value
    (reproducible: the generator is seeded from ``seed``).
    """
    rng = np.random.default_rng([seed, 0x5EED])
    out = {}
    for key, (lo, hi) in RANDOMIZE_RANGES.items():
        c = SHIFTED_OVERRIDES[key]
        g_lo, g_hi = c * (1 - RANDOMIZE_EXCLUSION), c * (1 + RANDOMIZE_EXCLUSION)
        u = rng.uniform(lo, hi - (g_hi - g_lo))
        out[key] = float(u if u < g_lo else u + (g_hi - g_lo))
    return out


def night_spec(seed: int, duration_s: float, condition: str = "none", *,
               shifted: bool = False, randomize: bool = False, rate_hz: float = 1000.0,
               feature_settings: FeatureSettings | None = None) -> NightSpec:
    """The dataset recipe for one simulated night.

    Even seeds use the simulator's 'night' hypnogram (N3-rich early night, from the seed),
    odd seeds the default fixed 10-minute cycle (N2, N3, N2, REM, wake), so both deep
    sleep and REM/wake transitions are represented; the LFP noise level (ripple SNR)
    cycles through three values with the seed. ``randomize`` draws the night's simulator
    parameters from :data:`RANDOMIZE_RANGES` (:func:`randomized_overrides`); ``shifted``
    uses :data:`SHIFTED_OVERRIDES` (the two cannot be combined).
    """
    if shifted and randomize:
        raise ValueError("a night is either shifted (unseen parameters) or randomized, "
                         "not both")
    over: dict = {"channels": list(DATASET_CHANNELS),
                  # three SNR levels: LFP broadband noise x0.8, x1, x1.25 of the default
                  "noise.lfp_white_v_per_rthz": 0.9e-6 * (0.8, 1.0, 1.25)[seed % 3]}
    if seed % 2 == 0:
        over["hypnogram.mode"] = "night"
    if shifted:
        over.update(SHIFTED_OVERRIDES)
    if randomize:
        over.update(randomized_overrides(seed))
    return NightSpec(seed=seed, duration_s=duration_s, condition=condition,
                     sim_overrides=over, rate_hz=rate_hz,
                     feature_settings=feature_settings or FeatureSettings())


def sim_settings(spec: NightSpec) -> Any:
    """Build SimSettings for a spec from the [sim] schema (overrides as a TOML-like table)."""
    table: dict = {"rate_hz": spec.rate_hz}
    for key, value in spec.sim_overrides.items():
        node = table
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return build(SimSettings, table, prefix="sim")


def ripple_pulse_spec(modality: str = "optogenetic") -> Any:
    """The ripple-locked pulse used for datasets and the gating experiment.

    Optogenetic: a 50 ms light pulse (Fernandez-Ruiz et al. 2019 prolonged ripples with
    light); electrical: a 100 us/phase biphasic pulse (Girardeau et al. 2009 used
    commissural pulses of this order to truncate ripples).
    """
    if modality == "optogenetic":
        return PulseSpec(modality="optogenetic", shape="monophasic", amplitude=0.005,
                         phase_width_s=0.05, interphase_s=0.0, train_count=1,
                         train_interval_s=0.0, channel=0)
    return PulseSpec(modality="electrical", shape="biphasic", amplitude=1e-4,
                     phase_width_s=1e-4, interphase_s=0.0, train_count=1,
                     train_interval_s=0.0, channel=0)


def sim_night(spec: NightSpec) -> Night:
    """Run one simulated night through the real detectors and feature stage.

    The simulator's engram model (``SimSource.memory.recall_scores()``) gives the memory
    strength at each epoch end. With ``condition="ungated"`` the night gets
    detection-locked pulses on ripples (``modality``; at most ``pulses_per_min``), fed
    back through ``SimSource.stimulate``; ``"random"`` puts the same budget at random
    times.
    """
    settings = sim_settings(spec)
    src = SimSource(settings, seed=spec.seed, chunk_samples=spec.chunk_samples,
                    duration_s=spec.duration_s)
    detectors = night_detectors(src.channels)
    stage = EpochFeatures(spec.feature_settings)
    rng = np.random.default_rng(spec.seed + 7919)
    pulse_spec = ripple_pulse_spec(spec.modality)
    min_gap = 60.0 / spec.pulses_per_min if spec.pulses_per_min > 0 else math.inf
    last_pulse = -math.inf
    feats, ends, strength = [], [], []

    src.start()
    try:
        while True:
            try:
                chunk = src.read(1.0)
            except EndOfStream:
                break
            if chunk is None:
                break
            events = []
            for det in detectors:
                events.extend(det.process(chunk))
            pulses = []
            t_last = float(chunk.timestamps[-1])
            if spec.condition == "ungated":
                for ev in events:
                    if ev.kind == "ripple" and ev.detect_s - last_pulse >= min_gap:
                        src.stimulate(ev.detect_s + 0.002, pulse_spec, "ripple")
                        pulses.append(ev.detect_s + 0.002)
                        last_pulse = ev.detect_s
            elif spec.condition == "random":
                p = len(chunk.timestamps) / chunk.rate_hz / min_gap
                if rng.random() < p:
                    src.stimulate(t_last, pulse_spec, "ripple")
                    pulses.append(t_last)
            for fv in stage.process(chunk, events, pulses):
                feats.append(fv.values)
                ends.append(fv.t_end_s)
                scores = src.recall_scores()
                strength.append([scores[k] for k in sorted(scores)])
    finally:
        src.stop()
    return Night(np.array(feats).reshape(-1, len(FEATURE_NAMES)), np.array(ends),
                 np.array(strength), {"seed": spec.seed, "kind": "sim",
                                      "condition": spec.condition,
                                      "duration_s": spec.duration_s,
                                      "overrides": spec.sim_overrides})


def night_detectors(channels: Sequence[str], detectors: Any = None) -> list:
    """The project's detectors (``[detectors]`` settings, defaults when None) for these
    channels; a detector none of whose channels exist is left out."""
    return make_detectors(detectors or DetectorsSettings(), tuple(channels), missing="skip")


def _one(job: tuple[str, Any]) -> Night:
    kind, arg = job
    if kind == "synthetic":
        return synthetic_night(**arg)
    return sim_night(arg)


def make_dataset(jobs: Sequence[tuple[str, Any]], workers: int | None = None,
                 progress: ProgressCallback | None = None,
                 address: str | None = None) -> list[Night]:
    """Build nights in parallel, on the same engine as sweeps
    (:func:`engramloop.analysis.fanout.map_ordered`: a local Dask pool, or a cluster).

    Parameters
    ----------
    jobs : sequence of ("synthetic", kwargs dict) or ("sim", NightSpec)
    workers : int, optional
        Processes (default: number of cores). 1 runs in this process.
    address : str, optional
        A running Dask scheduler to use instead of a local pool.
    progress : callable(Progress), optional
        Called after each night (unit ``"nights"``).

    Returns
    -------
    list of Night, in job order.
    """
    done = [0]

    def tick(_night: Night) -> None:
        done[0] += 1
        if progress:
            progress(Progress(done[0], len(jobs), "nights",
                              f"night {done[0]}/{len(jobs)} done"))

    return map_ordered(_one, list(jobs), workers=workers, address=address, on_done=tick)


# ====================================================================== windows

@dataclass
class Windows:
    """Training samples cut from nights.

    Attributes
    ----------
    x : ndarray, shape (n, window_epochs, n_features), raw features
    delta : ndarray, shape (n,)
        Pooled strength change over the horizon.
    per_memory : ndarray, shape (n, n_memories)
    past_delta : ndarray, shape (n,)
        Pooled change over the *previous* horizon (the persistence baseline's input;
        known in the simulator, not to the model).
    night : ndarray of int, shape (n,)
        Which night each sample came from.
    """

    x: np.ndarray
    delta: np.ndarray
    per_memory: np.ndarray
    past_delta: np.ndarray
    night: np.ndarray

    def decay(self, threshold: float) -> np.ndarray:
        """Binary target: the pooled strength falls by more than ``threshold``."""
        return (self.delta < -threshold).astype(np.float64)


def make_windows(nights: Sequence[Night], window_epochs: int, horizon_epochs: int) -> Windows:
    """Cut (window -> future change) samples from every night.

    A sample ends at epoch ``t`` for every ``t`` with ``t + horizon_epochs`` inside the
    night. Epochs before the first are padded with the first epoch (as at inference).
    """
    xs, ds, pms, pds, ids = [], [], [], [], []
    k, h = window_epochs, horizon_epochs
    for ni, n in enumerate(nights):
        m = len(n.t_end_s)
        if m <= h:
            continue
        pooled = n.strength.mean(axis=1)
        pad = np.concatenate([np.repeat(n.features[:1], k - 1, axis=0), n.features])
        idx = np.arange(m - h)
        # windows via strides (copied below, so the nights can be freed)
        win = np.lib.stride_tricks.sliding_window_view(pad, (k, pad.shape[1]))[:, 0]
        xs.append(win[idx])
        ds.append(pooled[idx + h] - pooled[idx])
        pms.append(n.strength[idx + h] - n.strength[idx])
        past = np.where(idx >= h, pooled[idx] - pooled[np.maximum(idx - h, 0)],
                        (pooled[idx] - pooled[0]) * h / np.maximum(idx, 1))
        pds.append(past)
        ids.append(np.full(len(idx), ni))
    if not xs:
        raise ValueError(f"no night is longer than the horizon ({horizon_epochs} epochs)")
    return Windows(np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ds),
                   np.concatenate(pms), np.concatenate(pds), np.concatenate(ids))


def subset_windows(w: Windows, mask: np.ndarray) -> Windows:
    return Windows(w.x[mask], w.delta[mask], w.per_memory[mask], w.past_delta[mask],
                   w.night[mask])


# ====================================================================== lab data

def read_outcomes_csv(path: str | Path) -> dict[str, list[tuple[float, str, float]]]:
    """Read per-session memory outcomes.

    Format (UTF-8 CSV with a header row; one row per memory test)::

        recording,time_s,memory,recall
        night01.xdf,0,wordpairs,0.62
        night01.xdf,28800,wordpairs,0.55

    ``recording`` is the recording file name (relative to the CSV's folder, or absolute),
    ``time_s`` seconds from the first sample of the recording (tests before sleep may be
    0 or negative), ``memory`` a name for the memory or task, ``recall`` the score on a
    0-1 scale. Every recording needs at least two tests of each memory; strength between
    tests is linearly interpolated (an assumption: say so when reporting).

    Returns
    -------
    dict recording -> list of (time_s, memory, recall)

    Raises
    ------
    ValueError
        Naming the file, line and column of a bad row.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"outcomes CSV {path}: file not found")
    out: dict[str, list[tuple[float, str, float]]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        need = {"recording", "time_s", "memory", "recall"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise ValueError(f"outcomes CSV {path}: header must have columns "
                             f"{sorted(need)}, got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            try:
                t = float(row["time_s"])
                r = float(row["recall"])
            except (TypeError, ValueError):
                raise ValueError(f"outcomes CSV {path}: line {line}: time_s and recall must "
                                 "be numbers") from None
            if not (0.0 <= r <= 1.0) or not math.isfinite(t):
                raise ValueError(f"outcomes CSV {path}: line {line}: recall must be in 0-1 "
                                 f"and time_s finite, got {row['recall']}, {row['time_s']}")
            rec = str(row["recording"]).strip()
            if not rec or not str(row["memory"]).strip():
                raise ValueError(f"outcomes CSV {path}: line {line}: empty recording or "
                                 "memory")
            out.setdefault(rec, []).append((t, str(row["memory"]).strip(), r))
    for rec, rows in out.items():
        mems: dict[str, int] = {}
        for _, m, _ in rows:
            mems[m] = mems.get(m, 0) + 1
        few = [m for m, c in mems.items() if c < 2]
        if few:
            raise ValueError(f"outcomes CSV {path}: recording {rec}: memories {few} have "
                             "fewer than two tests")
    return out


def nights_from_recordings(outcomes_csv: str | Path,
                           feature_settings: FeatureSettings | None = None,
                           progress: ProgressCallback | None = None) -> list[Night]:
    """Nights from a lab's XDF recordings plus their outcome CSV (see :func:`read_outcomes_csv`).

    Each recording's first numeric signal stream is run through the project's detectors
    and :class:`~decoders.features.EpochFeatures` (offline, one pass: the same code as the
    loop), block by block (:func:`_recording_features`: memory holds a block, not the
    night). Pulses are read from the ``engramloop.pulses`` marker stream when present.
    Memory strength at each epoch end is interpolated between the tests.
    """
    base = Path(outcomes_csv).resolve().parent
    outcomes = read_outcomes_csv(outcomes_csv)
    nights = []
    memories = sorted({m for rows in outcomes.values() for _, m, _ in rows})
    for rec, rows in outcomes.items():
        path = Path(rec) if Path(rec).is_absolute() else base / rec
        if not path.is_file():
            raise ValueError(f"outcomes CSV {outcomes_csv}: recording {path} not found")
        vecs, n_events, t0 = _recording_features(path, feature_settings)
        if not vecs:
            raise ValueError(f"recording {path}: shorter than one epoch")
        ends = np.array([v.t_end_s for v in vecs]) - t0
        strength = np.empty((len(ends), len(memories)))
        for j, m in enumerate(memories):
            pts = sorted((t, r) for t, mm, r in rows if mm == m)
            if not pts:
                raise ValueError(f"outcomes CSV: recording {rec} has no test of memory {m!r} "
                                 "(every recording must test every memory)")
            strength[:, j] = np.interp(ends, [p[0] for p in pts], [p[1] for p in pts])
        nights.append(Night(feature_matrix(vecs), ends, strength,
                            {"kind": "recording", "recording": str(path)}))
        if progress:
            progress(Progress(len(nights), len(outcomes), "recordings",
                              f"{path.name}: {len(vecs)} epochs, {n_events} events"))
    return nights


#: samples per block of the offline pass over a recording (8 channels of float64: 4 MB)
RECORDING_BLOCK = 65536


def _recording_features(path: Path, feature_settings: FeatureSettings | None
                        ) -> tuple[list, int, float]:
    """A recording's first numeric stream with samples, decoded block by block
    (:meth:`~engramloop.recording.xdf_blocks.XdfFile.blocks`, the reader's timestamp
    policy) through the detectors and the feature stage; each pulse of the
    ``engramloop.pulses`` stream is handed on with the block that reaches its time.
    Returns (feature vectors, event count, first sample's time)."""
    try:
        f, ours = reader.open_file(path)
    except reader.RecordingReadError as exc:
        raise ValueError(str(exc)) from None
    info = next((i for i in f.streams.values()
                 if i.numeric and f.sample_count(i.stream_id) > 0), None)
    if info is None:
        raise ValueError(f"recording {path}: no numeric signal stream")
    rate, chans = reader.signal_rate(f, info, ours=ours), info.channels
    pulses = sorted(t for t, _ in reader.marker_streams(f, ours=ours).get("pulses", []))
    detectors = night_detectors(chans)
    stage = EpochFeatures(feature_settings or FeatureSettings())
    vecs: list = []
    n_events, i, k, t0 = 0, 0, 0, math.nan
    for ts, x in f.blocks(info.stream_id, synchronize=not ours,
                          block_samples=RECORDING_BLOCK):
        if not i:
            t0 = float(ts[0])
        chunk = Chunk(np.ascontiguousarray(x, dtype=np.float64), ts, rate, chans,
                      arrival_s=float(ts[-1]), first_index=i)
        events = []
        for det in detectors:
            events.extend(det.process(chunk))
        j = bisect_right(pulses, float(ts[-1]))
        vecs.extend(stage.process(chunk, events, pulses[k:j]))
        n_events += len(events)
        i, k = i + ts.size, j
    return vecs, n_events, t0
