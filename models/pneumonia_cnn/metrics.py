"""Binary classification metrics in NumPy: exact ROC AUC, threshold choice, confusion, ECE."""
from __future__ import annotations

import numpy as np


def roc_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False/true positive rates at every distinct score, highest threshold first."""
    order = np.argsort(-p, kind="mergesort")
    p, y = p[order], y[order].astype(np.float64)
    distinct = np.r_[np.where(np.diff(p))[0], len(p) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    tpr = np.r_[0.0, tps / max(y.sum(), 1)]
    fpr = np.r_[0.0, fps / max(len(y) - y.sum(), 1)]
    thresholds = np.r_[np.inf, p[distinct]]
    return fpr, tpr, thresholds


def auc(y: np.ndarray, p: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(y, p)
    return float(np.trapezoid(tpr, fpr))


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Threshold maximising sensitivity + specificity − 1 (independent of class prevalence)."""
    fpr, tpr, thr = roc_curve(y, p)
    i = int(np.argmax(tpr - fpr))
    # midway between the chosen score and the next lower one, so it does not sit on a sample
    lower = thr[i + 1] if i + 1 < len(thr) else thr[i] - 1e-3
    return float((thr[i] + lower) / 2) if np.isfinite(thr[i]) else 0.5


def at_threshold(y: np.ndarray, p: np.ndarray, t: float) -> dict:
    pred = (p >= t).astype(np.int64)
    y = y.astype(np.int64)
    tp = int(((pred == 1) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    return {
        "threshold": float(t),
        "accuracy": (tp + tn) / len(y),
        "sensitivity": tp / max(tp + fn, 1),
        "specificity": tn / max(tn + fp, 1),
        "confusion_matrix": {"rows": "true normal, true pneumonia", "columns": "predicted normal, predicted pneumonia",
                             "matrix": [[tn, fp], [fn, tp]]},
    }


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[float, list[dict]]:
    """Expected calibration error of P(pneumonia) over equal-width bins, and the per-bin table."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    ece, table = 0.0, []
    for b in range(bins):
        m = idx == b
        if not m.any():
            table.append({"bin": [float(edges[b]), float(edges[b + 1])], "count": 0})
            continue
        conf, freq = float(p[m].mean()), float(y[m].mean())
        ece += m.sum() / len(p) * abs(conf - freq)
        table.append({"bin": [float(edges[b]), float(edges[b + 1])], "count": int(m.sum()),
                      "mean_probability": conf, "fraction_pneumonia": freq})
    return float(ece), table
