"""The model card: what a checkpoint was trained on and how it scored, as Markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# ====================================================================== model card

def write_model_card(path: str | Path, checkpoint: Any, evaluation: dict,
                     data_description: str, extra: str = "",
                     checkpoint_name: str = "forecaster.pt") -> Path:
    """Write ``MODEL_CARD.md``: data, architecture, metrics vs baselines, limits."""
    from engramloop.decoders.forecaster import FORMAT_VERSION

    ck = checkpoint
    path = Path(path)

    def row(name: str, m: dict) -> str:
        return (f"| {name} | {m['auroc']:.3f} | {m['brier']:.4f} | {m['r2']:.3f} | "
                f"{m['ece']:.3f} |")

    ev = evaluation
    thr = ck.decay_threshold
    event = (f"falls by more than {thr:.4g}" if thr >= 0 else
             f"rises by less than {-thr:.4g} (i.e. the memory consolidates less than "
             "typical and falls behind; the threshold is negative because the simulator's "
             "next-day recall rises through sleep)")
    lines = [
        "# engramloop memory-decay forecaster — model card", "",
        f"Model version `{ck.model_version}`, checkpoint format {FORMAT_VERSION}, file "
        f"`{checkpoint_name}`.", "",
        "## What it does",
        f"From the last {ck.window_epochs} epoch feature vectors ({ck.epoch_s:g} s epochs, "
        f"hop {ck.hop_s:g} s; features in `decoders/features.py`) it forecasts the change of "
        f"pooled memory strength over the next {ck.horizon_s:g} s and the probability that "
        f"it {event} (Platt-calibrated)"
        + (f"; plus {ck.n_memories} per-memory changes." if ck.n_memories else "."), "",
        f"Architecture: {ck.members} member(s), each a GRU (hidden {ck.hidden}) with a "
        "2-layer head plus a linear skip path over the whole window; members differ only "
        "in their seed and their outputs are averaged; "
        f"{sum(v.numel() for v in ck.state_dict.values())} parameters in all.", "",
        "## Data", data_description, "",
    ]
    for key, title in (("test", "Held-out seeds"), ("shifted", "Unseen simulator parameters")):
        if key not in ev:
            continue
        e = ev[key]
        lines += [f"## {title}",
                  f"{e['n_nights']} nights, {e['n_windows']} windows, "
                  f"{100 * e['positive_fraction']:.1f} % decay windows.", "",
                  "| predictor | AUROC | Brier | R^2 | ECE |", "|---|---|---|---|---|",
                  row("forecaster", e["model"]), row("persistence", e["persistence"]),
                  row("linear / logistic", e["linear"]), ""]
        m, p, li = e["model"], e["persistence"], e["linear"]
        lines += [f"Margins: AUROC {m['auroc'] - p['auroc']:+.3f} vs persistence, "
                  f"{m['auroc'] - li['auroc']:+.3f} vs logistic; Brier "
                  f"{m['brier'] - p['brier']:+.4f} / {m['brier'] - li['brier']:+.4f}; R^2 "
                  f"{m['r2'] - p['r2']:+.3f} / {m['r2'] - li['r2']:+.3f} "
                  "(positive AUROC/R^2 and negative Brier margins favour the forecaster).", ""]
        cal = m.get("calibration") or []
        if cal:
            lines += ["Reliability (model): " + "; ".join(
                f"{lo:.1f}-{hi:.1f}: n={n}, mean p {mp_:.2f}, observed {fy:.2f}"
                for lo, hi, n, mp_, fy in cal), ""]
    lines += [extra, ""] if extra else []
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
