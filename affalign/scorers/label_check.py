"""Label-map check: a scorer's columns against probe sentences written for each label.

Why
---
A classifier whose labels are named ``LABEL_0`` … ``LABEL_9`` (``MMADS/MoralFoundationsClassifier``)
is mapped onto our labels by a ``label_map`` nobody can read off the model. A wrong map swaps
columns silently: care becomes harm, and every distribution and alignment score built on it is
wrong while looking plausible. Printing ``id2label`` cannot catch it.

What
----
``affalign/data/probes/<dimension>.yaml`` holds a handful of short sentences written for each label
(8 per label; ours, not from any dataset). The scorer scores them once at setup. With ``M[g, c]``
the mean score of column ``c`` on the probes of label ``g``, every pair of labels ``(a, b)`` gets
the margin (in probability units)

    D(a, b) = M[a, a] + M[b, b] - M[a, b] - M[b, a]

how much more the two columns score on their own probes than on each other's: how much better the
map's pairing explains the probes than the same map with ``a`` and ``b`` swapped. Each column
enters once with each sign, so its base rate cancels; a column that carries no signal adds
nothing (its noise is not scaled up, as a per-column standardisation would). A correct map on a
decent classifier has every margin positive, also for labels it confuses (it takes the two
columns together preferring each other's probes to make a margin negative). Swapping two labels
negates their margin; a longer cycle puts a label's column on another label's probes. A column
unrelated to its label (a random map, a random model) has expected margin 0: that is chance. A
label's *agreement* is its smallest margin over the other labels; any margin at or below 0 (chance)
stops the run with a :class:`ConfigError` (exit 2) naming the pairs that look swapped, e.g. "care and
harm look swapped: probes for care score highest on harm, probes for harm on care" (*highest*:
the column whose score on those probes is furthest above its own mean over all probe groups).

Pairs filled from one model output (a five-foundation model's ``care: "care,harm"``) cannot be
told apart and are not compared; labels the scorer lacks (NaN columns) are left out.
``options: {label_map_check: false}`` in the scorer's section turns the check off (a model with its
own label set whose outputs our probes do not describe).

Validation: tests/unit/test_label_check.py runs the check on the offline default scorer (a
classifier trained on SemEval E-c and MFTC) — its correct map passes, and every swap of two labels
and random permutations fail — and on a tiny transformer trained in the test, loaded through the
hf scorer with its correct map (passes) and a permuted one (exit-2 error naming the swapped labels).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import numpy as np
import yaml

from affalign.errors import ConfigError
from affalign.schema import DIMENSIONS

log = logging.getLogger("affalign")

CHANCE = 0.0  # expected margin of a column unrelated to its label's probes


@lru_cache(maxsize=4)
def load_probes(dimension: str) -> dict[str, tuple[str, ...]]:
    """Probe sentences of ``dimension``, label -> sentences, in canonical label order."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}")
    text = resources.files("affalign.data.probes").joinpath(f"{dimension}.yaml").read_text("utf-8")
    doc = yaml.safe_load(text)
    probes = doc["probes"]
    missing = [lab for lab in DIMENSIONS[dimension] if not probes.get(lab)]
    if missing:  # a packaging error, not the user's
        raise RuntimeError(f"affalign/data/probes/{dimension}.yaml has no probes for {missing}")
    return {lab: tuple(str(t) for t in probes[lab]) for lab in DIMENSIONS[dimension]}


def probe_texts(dimension: str) -> tuple[list[str], list[str]]:
    """(texts, label of each text) of the probe set, in canonical label order."""
    texts, labels = [], []
    for lab, sents in load_probes(dimension).items():
        texts += list(sents)
        labels += [lab] * len(sents)
    return texts, labels


@dataclass
class LabelMapCheck:
    """Outcome of the check; ``passed`` is False when some pair's margin is at or below chance."""

    dimension: str
    labels: tuple[str, ...]  # the labels compared (those the scorer has)
    means: np.ndarray  # [label g, label c]: mean score of column c on g's probes
    lift: np.ndarray  # means minus each column's mean over the probe groups
    margins: dict[tuple[str, str], float]  # D(a, b) for every compared pair, a before b
    agreement: dict[str, float]  # per label: its smallest margin (chance: 0)
    swapped: list[tuple[str, str, float]] = field(default_factory=list)  # pairs at or below chance, worst first

    @property
    def passed(self) -> bool:
        return not self.swapped

    def top(self, label: str) -> str:
        """The column that responds most (relative to its own spread) to ``label``'s probes."""
        i = self.labels.index(label)
        return self.labels[int(np.argmax(self.lift[i]))]

    def describe(self) -> str:
        """One line per flagged pair, e.g. 'care and harm look swapped: ...'."""
        out = []
        for a, b, d in self.swapped:
            out.append(f"{a} and {b} look swapped: probes for {a} score highest on {self.top(a)}, probes for {b} on {self.top(b)} (margin {d:+.2f}; chance {CHANCE:.0f})")
        return "; ".join(out)

    def summary(self) -> dict[str, object]:
        """For logs and run records: pass/fail, the weakest label and the flagged pairs."""
        weakest = min(self.agreement, key=self.agreement.get) if self.agreement else None
        return {
            "passed": self.passed,
            "labels": len(self.labels),
            "weakest_label": weakest,
            "weakest_agreement": None if weakest is None else round(self.agreement[weakest], 3),
            "swapped": [[a, b] for a, b, _ in self.swapped],
        }


def check_scores(scores: np.ndarray, probe_labels: list[str], dimension: str, sources: np.ndarray | None = None) -> LabelMapCheck:
    """Check a scorer's probe scores (``[n probes, len(DIMENSIONS[dimension])]``, canonical columns).

    ``sources`` is the model output behind each canonical column (``resolve_labels``); pairs with
    the same source are not compared. NaN columns (labels the scorer lacks) are left out.
    """
    canonical = DIMENSIONS[dimension]
    scores = np.asarray(scores, np.float64)
    if scores.shape != (len(probe_labels), len(canonical)):
        raise ValueError(f"check_scores: scores are {scores.shape}, expected ({len(probe_labels)}, {len(canonical)})")
    present = [j for j, lab in enumerate(canonical) if not np.isnan(scores[:, j]).any() and lab in probe_labels]
    labels = tuple(canonical[j] for j in present)
    rows = np.asarray(probe_labels)
    means = np.array([[scores[rows == g, j].mean() for j in present] for g in labels]).reshape(len(labels), len(labels))
    lift = means - (means.mean(axis=0) if len(labels) else 0.0)
    margins: dict[tuple[str, str], float] = {}
    for i, a in enumerate(labels):
        for k in range(i + 1, len(labels)):
            b = labels[k]
            if sources is not None and sources[present[i]] == sources[present[k]]:
                continue  # one model output fills both columns: nothing to tell apart
            margins[(a, b)] = float(means[i, i] + means[k, k] - means[i, k] - means[k, i])
    agreement: dict[str, float] = {}
    for (a, b), d in margins.items():
        agreement[a] = min(agreement.get(a, np.inf), d)
        agreement[b] = min(agreement.get(b, np.inf), d)
    swapped = sorted(((a, b, d) for (a, b), d in margins.items() if d <= CHANCE), key=lambda x: x[2])
    return LabelMapCheck(dimension, labels, means, lift, margins, agreement, swapped)


def check_scorer(score: Callable[[list[str]], dict[str, np.ndarray]], dimension: str, sources: np.ndarray | None = None) -> LabelMapCheck:
    """Score the probe set of ``dimension`` with ``score`` (a scorer's ``score``) and check it."""
    texts, labels = probe_texts(dimension)
    return check_scores(score(texts)[dimension], labels, dimension, sources)


def enforce(check: LabelMapCheck, where: str) -> None:
    """Raise :class:`ConfigError` (exit 2) when the check failed; log the outcome either way."""
    if check.passed:
        log.info("%s: label map checked on %d probe labels: %s", where, len(check.labels), check.summary())
        return
    raise ConfigError(
        f"{where}.label_map looks wrong: {check.describe()}. The check scores sentences written for each label "
        f"(affalign/data/probes/{check.dimension}.yaml); a pair of columns that responds more to each other's probes "
        f"than to its own is at or below chance. Fix {where}.label_map (which model label is which?), or set "
        f"{where}.options.label_map_check: false if the model's labels are not these."
    )
