"""Training the uplift model on simulator counterfactual labels.

Data: :func:`experiment.label_night` per training seed (seeds from
``experiment.TRAIN_SEED_START``; the experiment evaluates on seeds from
``EVAL_SEED_START``, never the same). Each ripple candidate's label is its exact
single-pulse uplift (recall with the pulse minus without, the rest of the night sham).
Model: a tiny MLP (inputs standardised, two hidden layers of 16 ReLU units, linear output
in units of 1e-4 recall), Adam, Huber loss, one CPU thread, fixed seed, early stopping on
whole held-out nights. Saved as JSON for :class:`decoders.uplift.UpliftModel` (NumPy
inference, no torch in the loop).

``pulses_so_far_h`` is left out: single-pulse labels are made with no other pulse, so the
feature is always 0 in training (a micro-randomised background would be needed to learn
it; see docs/uplift.md).
"""
from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from engramloop.analysis.training.experiment import code_key, label_night
from engramloop.decoders.pulse_features import CANDIDATE_NAMES
from engramloop.decoders.uplift import UpliftModel

SCALE = 1e4
INPUTS = tuple(n for n in CANDIDATE_NAMES if n != "pulses_so_far_h")


def _label(job: tuple) -> dict:
    return label_night(*job)


def make_uplift_dataset(seeds: Sequence[int], duration_s: float, path: str | Path,
                        workers: int = 2, progress: Callable[[str], None] | None = None,
                        cache_dir: str | Path | None = None) -> Path:
    """Label every candidate of the given seeds' nights; save an ``.npz``."""
    rows = []
    jobs = [(s, duration_s, cache_dir) for s in seeds]
    with mp.get_context("spawn").Pool(max(1, workers)) as pool:
        for i, r in enumerate(pool.imap_unordered(_label, jobs),
                              start=1):
            rows.append(r)
            if progress:
                progress(f"[{i}/{len(seeds)}] seed {r['seed']}: {len(r['t'])} candidates")
    rows.sort(key=lambda r: r["seed"])
    path = Path(path)
    np.savez_compressed(path, x=np.concatenate([r["x"] for r in rows]),
                        y=np.concatenate([r["labels"] for r in rows]),
                        t=np.concatenate([r["t"] for r in rows]),
                        coupled=np.concatenate([r["coupled"] for r in rows]),
                        seed=np.concatenate([np.full(len(r["t"]), r["seed"]) for r in rows]),
                        names=np.array(CANDIDATE_NAMES), duration_s=float(duration_s),
                        code_key=np.array(code_key()))
    return path


def fit_uplift(x: np.ndarray, y: np.ndarray, nights: np.ndarray, val_nights: Sequence[int],
               seed: int = 0, epochs: int = 200, hidden: int = 16,
               inputs: Sequence[str] = INPUTS) -> UpliftModel:
    """Fit the MLP on candidates ``x`` (shape (n, len(CANDIDATE_NAMES))) with labels ``y``
    (recall, shape (n,)); whole nights ``val_nights`` (by ``nights``, shape (n,)) are held
    out for early stopping. Returns the model (NumPy inference)."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    cols = [CANDIDATE_NAMES.index(c) for c in inputs]
    x, y = x[:, cols], np.asarray(y, float) * SCALE
    val = np.isin(nights, val_nights)
    if val.all() or not val.any():
        raise ValueError(f"uplift training: need both training and held-out nights, got "
                         f"{len(np.unique(nights))} nights with {list(val_nights)} held out")
    mean, std = x[~val].mean(0), x[~val].std(0)
    std[std < 1e-9] = 1.0
    xt = torch.tensor((x - mean) / std, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.float32)[:, None]
    net = torch.nn.Sequential(torch.nn.Linear(len(cols), hidden), torch.nn.ReLU(),
                              torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
                              torch.nn.Linear(hidden, 1))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    loss_fn = torch.nn.HuberLoss(delta=5.0)
    tr_idx = np.flatnonzero(~val)
    va = torch.tensor(np.flatnonzero(val))
    g = np.random.default_rng(seed)
    best, best_state, bad = np.inf, None, 0
    for _ in range(epochs):
        g.shuffle(tr_idx)
        for k in range(0, len(tr_idx), 256):
            b = torch.tensor(tr_idx[k:k + 256])
            opt.zero_grad()
            loss = loss_fn(net(xt[b]), yt[b])
            loss.backward()
            opt.step()
        with torch.no_grad():
            vl = float(loss_fn(net(xt[va]), yt[va]))
        if vl < best - 1e-6:
            best, bad = vl, 0
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
            if bad >= 15:
                break
    net.load_state_dict(best_state)
    lin = [m for m in net if isinstance(m, torch.nn.Linear)]
    uniq = np.unique(nights)
    return UpliftModel({
        "columns": list(inputs), "mean": mean.tolist(), "std": std.tolist(),
        "layers": [[m.weight.detach().numpy().T.tolist(), m.bias.detach().numpy().tolist()]
                   for m in lin], "scale": SCALE,
        "info": {"train_nights": [int(s) for s in uniq if s not in set(val_nights)],
                 "val_nights": [int(s) for s in val_nights], "seed": seed,
                 "labels": "exact single-pulse simulator counterfactuals"}})


def score_uplift(model: UpliftModel, x: np.ndarray, y: np.ndarray) -> dict:
    """R^2 and Spearman rank correlation of the model's predictions against labels ``y``
    (recall units) on candidates ``x``."""
    from scipy import stats

    p = model.predict_many(x)
    y = np.asarray(y, float)
    r2 = 1.0 - float(np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2))
    return {"r2": r2, "spearman": float(stats.spearmanr(p, y).statistic)}


def train_uplift(data: str | Path, out: str | Path, seed: int = 0, epochs: int = 200,
                 hidden: int = 16) -> dict:
    """Fit the MLP; returns held-out metrics (R^2 and rank correlation on whole nights:
    every fifth night of the dataset is held out for early stopping and these metrics)."""
    z = np.load(data)
    names = tuple(str(n) for n in z["names"])
    if names != CANDIDATE_NAMES:
        raise ValueError(f"uplift dataset {data}: another feature set; regenerate it")
    nights = z["seed"]
    val_n = np.unique(nights)[:: 5]               # every fifth night held out
    model = fit_uplift(z["x"], z["y"], nights, val_n, seed=seed, epochs=epochs,
                       hidden=hidden)
    val = np.isin(nights, val_n)
    m = score_uplift(model, z["x"][val], z["y"][val])
    model.info.update({"val_r2": m["r2"], "val_spearman": m["spearman"]})
    if "code_key" in z:
        # the simulator/decoder code digest the twin nights were made with
        model.info.update({"code_key": str(z["code_key"]),
                           "night_s": float(z["duration_s"])})
    model.save(out)
    return {"val_r2": m["r2"], "val_spearman": m["spearman"], "n_train": int((~val).sum()),
            "n_val": int(val.sum())}
