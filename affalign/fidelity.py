"""Distribution fidelity: how close a scorer's label distribution is to the gold one (pure numpy).

The job measures alignment between *distributions* of labels (:mod:`affalign.metrics`), so a scorer
can be accurate tweet by tweet and still distort the distribution (e.g. decision thresholds folded
into its probabilities push mass towards rare labels). Fidelity is the job's own alignment applied
to a scorer against human labels on the same texts::

    S(gold, predicted) = 1 - JSD(gold label distribution, predicted distribution)   (base 2)

where the gold distribution is the normalised frequency of each label among the labelled texts and
the predicted one is what the reduce would compute from the scorer's probabilities in a given mode
(``mean``: mean probability per label; ``threshold``: share of texts at or above the label's
threshold), both normalised to sum to 1. S = 1 means the scorer reproduces the label distribution.

Per-tweet accuracy (Jaccard accuracy, micro- and macro-F1 of the thresholded labels) is reported
beside it, since the two measure different things. Labelled files are read by :func:`read_labelled`
(SemEval-2018 E-c TSV, MFTC CSV, or any CSV/TSV/JSONL with a text column and one 0/1 column per
label).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from affalign import metrics
from affalign.errors import ConfigError
from affalign.schema import DIMENSIONS

TEXT_COLUMNS = ("text", "Tweet", "tweet")


def gold_distribution(gold: np.ndarray) -> np.ndarray:
    """Normalised label frequencies of a ``(n_texts, n_labels)`` 0/1 matrix."""
    y = np.asarray(gold, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] == 0:
        raise ValueError("gold labels must be a non-empty 2-D (texts x labels) matrix")
    return metrics.normalise(y.mean(axis=0))


def predicted_distribution(scores: np.ndarray, mode: str = "mean", tau: float | np.ndarray = 0.5) -> np.ndarray:
    """The reduce's distribution of a score matrix; ``tau`` may be one cut or one per label."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError("scores must be a 2-D (texts x labels) matrix")
    s = s[~np.isnan(s).any(axis=1)]
    cut = np.broadcast_to(np.asarray(tau, dtype=np.float64), (s.shape[1],))
    return metrics.distribution_from_sums(s.sum(axis=0), (s >= cut).sum(axis=0), s.shape[0], mode)


def fidelity(gold: np.ndarray, scores: np.ndarray, mode: str = "mean", tau: float | np.ndarray = 0.5) -> float:
    """S(gold label distribution, predicted distribution) = 1 - Jensen-Shannon distance (base 2)."""
    y = np.asarray(gold)
    s = np.asarray(scores)
    if y.shape != s.shape:
        raise ValueError(f"gold {y.shape} and scores {s.shape} differ in shape")
    # js_distance clamps rounding below 0 (scipy's jensenshannon gives NaN for equal distributions)
    return 1.0 - metrics.js_distance(gold_distribution(y), predicted_distribution(s, mode, tau))


def per_tweet(gold: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Jaccard accuracy (SemEval E-c: 1 when both label sets are empty), micro- and macro-F1."""
    y, p = np.asarray(gold).astype(bool), np.asarray(predicted).astype(bool)
    inter, union = (y & p).sum(1), (y | p).sum(1)
    tp, fp, fn = (y & p).sum(0), (~y & p).sum(0), (y & ~p).sum(0)
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    return {
        "jaccard": float(np.where(union == 0, 1.0, inter / np.maximum(union, 1)).mean()),
        "micro_f1": float(2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1)),
        "macro_f1": float(f1.mean()),
    }


def evaluate(gold: np.ndarray, scores: np.ndarray, labels: tuple[str, ...], tau: float | np.ndarray = 0.5) -> dict:
    """Fidelity in both reduce modes, per-tweet accuracy at ``tau``, and the three distributions."""
    cut = np.broadcast_to(np.asarray(tau, dtype=np.float64), (len(labels),))
    s = np.asarray(scores, dtype=np.float64)
    ok = ~np.isnan(s).any(axis=1)
    g = np.asarray(gold)
    out = {
        "n_texts": int(len(g)),
        "n_scored": int(ok.sum()),
        "fidelity": {mode: round(fidelity(g[ok], s[ok], mode, cut), 4) for mode in metrics.MODES},
        "per_tweet": {k: round(v, 4) for k, v in per_tweet(g[ok], s[ok] >= cut).items()},
        "thresholds": {lab: round(float(t), 4) for lab, t in zip(labels, cut, strict=True)},
        "distributions": {
            "gold": _named(labels, gold_distribution(g[ok])),
            **{mode: _named(labels, predicted_distribution(s[ok], mode, cut)) for mode in metrics.MODES},
        },
    }
    return out


def _named(labels: tuple[str, ...], values: np.ndarray) -> dict[str, float]:
    return {lab: round(float(v), 4) for lab, v in zip(labels, values, strict=True)}


def read_labelled(path: str | Path, dimension: str, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """Texts and a ``(n, n_labels)`` 0/1 matrix (canonical label order) from a labelled file.

    Accepts ``.tsv`` (SemEval-2018 E-c: ``ID``, ``Tweet``, one column per emotion), ``.csv`` (MFTC:
    ``text`` and one column per virtue/vice) or ``.jsonl`` (a ``text`` field and one field per
    label). Every label of the dimension must be a column; values must be 0 or 1 (errors name the
    file, row and field).
    """
    path = Path(path)
    labels = DIMENSIONS.get(dimension)
    if labels is None:
        raise ConfigError(f"fidelity: unknown dimension {dimension!r}; expected one of {sorted(DIMENSIONS)}")
    try:
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            with path.open(encoding="utf-8", newline="") as f:
                if path.suffix == ".tsv":
                    rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
                else:
                    rows = list(csv.DictReader(f))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: line {exc.lineno}: not JSON: {exc.msg}") from exc
    if not rows:
        raise ConfigError(f"{path}: no rows")
    text_col = next((c for c in TEXT_COLUMNS if c in rows[0]), None)
    missing = [lab for lab in labels if lab not in rows[0]]
    if text_col is None or missing:
        raise ConfigError(f"{path}: needs a text column ({' or '.join(TEXT_COLUMNS)}) and the {dimension} label columns; missing {missing or 'text'}")
    rows = rows[:limit] if limit else rows
    texts: list[str] = []
    y = np.zeros((len(rows), len(labels)), np.int8)
    for i, row in enumerate(rows):
        texts.append(str(row.get(text_col) or ""))
        for j, lab in enumerate(labels):
            v = str(row.get(lab)).strip()
            if v not in ("0", "1", "0.0", "1.0", "True", "False", "true", "false"):
                raise ConfigError(f"{path}: data row {i + 1}: field {lab!r}: expected 0 or 1, got {row.get(lab)!r}")
            y[i, j] = v in ("1", "1.0", "True", "true")
    return texts, y
