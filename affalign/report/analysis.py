"""The statistics of a report: from a :class:`~affalign.report.load.RunData` to typed results.

The one job of this module is numbers: the clustered bootstrap of every (dataset, dimension)
(:func:`affalign.stats.analyse`), one :class:`DimView` per (dataset, dimension) joining the run's
official tables with those intervals, and what the report says about them (the topics of the
distribution figures, the consistency of ``scores/`` with the reduce, the bias of the resampled
baseline, the rows of ``intervals.csv`` and ``precision.csv``). No I/O, no sentences: the calls a
sentence makes are :mod:`affalign.report.calls`, the words are :mod:`affalign.report.prose`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from affalign import schema, stats
from affalign.errors import InputError
from affalign.report.load import ModelInfo, RunData
from affalign.schema import DIMENSIONS
from affalign.stats import DimensionStats, Interval, split_model_subject

# the prompting modes in the order the report shows them (others follow, sorted)
MODE_ORDER = ("default", "liberal", "conservative")


@dataclass
class DimView:
    """One (dataset, dimension) of a run: the run's official numbers and, where scores/ was read, its intervals."""

    dataset: str
    dimension: str
    labels: tuple[str, ...]
    groups: list[str]  # group names, in the run's order
    models: list[ModelInfo]  # ordered: instruct, base, unknown (each in run order)
    modes: list[str]
    topics: list[str]
    # official numbers (alignment.parquet / distributions.parquet)
    per_topic: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)  # (subject, target) -> topic -> S
    distributions: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (topic, subject) -> vector
    n_texts: dict[tuple[str, str], int] = field(default_factory=dict)
    stats: DimensionStats | None = None

    @property
    def humans(self) -> list[str]:
        return [schema.human_subject(g) for g in self.groups]

    def series(self, subject: str, target: str) -> dict[str, float]:
        got = self.per_topic.get((subject, target))
        if got is None and subject.startswith(schema.HUMAN_PREFIX) and target.startswith(schema.HUMAN_PREFIX):
            got = self.per_topic.get((target, subject))
        return got or {}

    def mean_std(self, subject: str, target: str) -> tuple[float, float, int] | None:
        v = list(self.series(subject, target).values())
        if not v:
            return None
        a = np.asarray(v, dtype=np.float64)
        return float(a.mean()), float(a.std()), int(a.size)

    def human_pairs(self) -> list[tuple[str, str]]:
        hs = self.humans
        return [(a, b) for i, a in enumerate(hs) for b in hs[i + 1 :] if self.series(a, b)]

    def has_models(self) -> bool:
        return any(k[0].startswith(schema.MODEL_PREFIX) for k in self.per_topic)

    def model_has(self, model_id: str, mode: str) -> bool:
        s = schema.model_subject(model_id, mode)
        return any(k[0] == s for k in self.per_topic)


@dataclass(frozen=True)
class Settings:
    """The bootstrap asked for: draws, seed, interval kind (``bc``, ``percentile``, ``basic``) and the n grid of the precision curves."""

    draws: int = 1000
    seed: int = 0
    interval: str = stats.DEFAULT_INTERVAL
    n_grid: Sequence[int] | None = stats.DEFAULT_N_GRID


@dataclass
class ViewResult:
    """What the report shows of one (dataset, dimension), as numbers."""

    view: DimView
    topics: list[str]  # the topics of the distribution figures
    topic_chosen: bool  # True: picked with --topic; False: the most divergent topics
    consistency: float | None  # largest |S from scores/ − S of alignment.parquet| (None without scores/)
    baseline_shift: float | None  # how far the bootstrap replicates of the human baseline lie below its plug-in, on average
    summary_bias: dict[tuple[str, str], tuple[float, float]] | None  # summary.csv's bias (mean, std) by (subject, target)
    intervals: list[dict] = field(default_factory=list)  # rows of intervals.csv
    precision: list[dict] = field(default_factory=list)  # rows of precision.csv


@dataclass
class Analysis:
    """The statistics of a whole run, ready to be worded and rendered."""

    settings: Settings
    views: list[ViewResult]
    clustered: bool  # some human side was resampled by user (score tables with user ids)
    topic_missing: bool  # --topic was given and is not a kept topic of any (dataset, dimension)
    humans_only: bool  # no model generations in the run


def views(data: RunData, all_stats: dict[tuple[str, str], DimensionStats]) -> list[DimView]:
    """One view per (dataset, dimension) of the run's distributions, in dataset then DIMENSIONS order."""
    out = []
    for d in data.datasets:
        dd = data.distributions[data.distributions["dataset"] == d]
        aa = data.alignment[data.alignment["dataset"] == d]
        for dim in [x for x in DIMENSIONS if x in set(dd["dimension"])]:
            sub = dd[dd["dimension"] == dim]
            labels = DIMENSIONS[dim]
            dist: dict[tuple[str, str], np.ndarray] = {}
            ntex: dict[tuple[str, str], int] = {}
            for (topic, s), g in sub.groupby(["topic", "subject"], sort=False):
                vals = dict(zip(g["label"], g["value"], strict=True))
                dist[(topic, s)] = np.array([vals.get(label, 0.0) for label in labels], dtype=float)
                ntex[(topic, s)] = int(g["n_texts"].iloc[0])
            per: dict[tuple[str, str], dict[str, float]] = {}
            for topic, s, t, v in aa[aa["dimension"] == dim][["topic", "subject", "target", "score"]].itertuples(index=False):
                per.setdefault((s, t), {})[topic] = float(v)
            topics = [t for t in data.topic_order if t in set(sub["topic"])]
            subjects = set(sub["subject"])
            present = {split_model_subject(s)[0] for s in subjects if split_model_subject(s)}  # type: ignore[index]
            models = [m for m in data.models if m.id in present]
            modes = [md for md in MODE_ORDER if any(schema.model_subject(m.id, md) in subjects for m in models)]
            modes += sorted({split_model_subject(s)[1] for s in subjects if split_model_subject(s)} - set(modes))  # type: ignore[index]
            out.append(DimView(d, dim, labels, [g for g in data.groups if schema.human_subject(g) in subjects], models, modes, topics, per, dist, ntex, all_stats.get((d, dim))))
    return out


def dim_tau(data: RunData, dimension: str) -> float | np.ndarray:
    """Threshold-mode cut of a dimension: its scorer's per-label thresholds (run.json) or reduce.tau."""
    cuts = (data.doc.get("reduce_thresholds") or {}).get(dimension) if isinstance(data.doc, dict) else None
    return np.asarray(cuts, np.float64) if cuts else data.tau


def compute_stats(data: RunData, *, draws: int, seed: int, n_grid: Sequence[int] | None, interval: str = stats.DEFAULT_INTERVAL) -> dict[tuple[str, str], DimensionStats]:
    """The clustered bootstrap of every (dataset, dimension) with per-text scores, keyed by (dataset, dimension)."""
    out: dict[tuple[str, str], DimensionStats] = {}
    for d, cells in data.cells.items():
        res = stats.analyse(cells, data.groups, topics=data.topic_order, mode=data.mode, tau={dim: dim_tau(data, dim) for dim in DIMENSIONS}, draws=draws, seed=seed, n_grid=n_grid, key=d, interval=interval)
        for dim, st in res.items():
            out[(d, dim)] = st
    return out


def consistency(view: DimView) -> float | None:
    """Largest difference between the run's per-topic S and the one recomputed from scores/."""
    if view.stats is None:
        return None
    worst = 0.0
    for (s, t), by_topic in view.per_topic.items():
        mine = view.stats.reps.get((s, t), {})
        for topic, v in by_topic.items():
            if topic in mine:
                worst = max(worst, abs(mine[topic][0] - v))
    return worst


def baseline_shift(view: DimView) -> float | None:
    """How far below its plug-in estimate the bootstrap replicates of the human baseline lie on average (the largest over pairs)."""
    if view.stats is None:
        return None
    shift = [x for a, b in view.stats.human_pairs() if (x := view.stats.resampling_shift(a, b)) is not None]
    return -min(shift) if shift else None


def divergent_topics(view: DimView, k: int = 2) -> list[str]:
    """Topics where default models are furthest from the groups (humans only: the groups from each other)."""
    score: dict[str, list[float]] = {}
    keys = [(schema.model_subject(m.id, "default"), h) for m in view.models for h in view.humans] if view.has_models() else view.human_pairs()
    for s, t in keys:
        for topic, v in view.series(s, t).items():
            score.setdefault(topic, []).append(v)
    if not score:
        for ser in view.per_topic.values():
            for topic, v in ser.items():
                score.setdefault(topic, []).append(v)
    ranked = sorted(score, key=lambda t: (float(np.mean(score[t])), view.topics.index(t) if t in view.topics else 0))
    return ranked[:k] or view.topics[:k]


def summary_bias(data: RunData, view: DimView) -> dict[tuple[str, str], tuple[float, float]] | None:
    """summary.csv's bias rows of a (dataset, dimension): (mean, std over topics) by (subject, target); None without summary.csv."""
    if data.summary is None or "metric" not in data.summary.columns:
        return None
    ss = data.summary[(data.summary["metric"] == "bias") & (data.summary["dataset"] == view.dataset) & (data.summary["dimension"] == view.dimension)]
    return {(r.subject, r.target): (float(r.score_mean), float(r.score_std)) for r in ss.itertuples(index=False)}


def interval_rows(view: DimView) -> list[dict]:
    """Every estimate with its interval, for intervals.csv."""
    st = view.stats
    out: list[dict] = []
    if st is None:
        return out

    def add(statistic: str, subject: str, target: str, iv: Interval | None, topic: str = "") -> None:
        if iv is not None:
            out.append({"dataset": view.dataset, "dimension": view.dimension, "statistic": statistic, "subject": subject, "target": target, "topic": topic, **iv.as_dict()})

    for a, b in st.human_pairs():
        add("alignment", a, b, st.alignment(a, b))
        for t, iv in st.per_topic(a, b).items():
            add("alignment_topic", a, b, iv, t)
    for h in st.humans:
        add("baseline", h, "", st.baseline(h))
    for m in st.model_subjects:
        for h in st.humans:
            add("alignment", m, h, st.alignment(m, h))
            for t, iv in st.per_topic(m, h).items():
                add("alignment_topic", m, h, iv, t)
            add("vs_baseline", m, h, st.vs_baseline(m, h))
            add("steering", m, h, st.steering(m, h))
        for a, b in st.human_pairs():
            add("bias", m, f"{a}|{b}", st.bias(m, a, b))
            add("bias_change", m, f"{a}|{b}", st.bias_change(m, a, b))
    for mid in st.model_ids():
        for h in st.humans:
            add("liberal_minus_conservative", schema.model_label(mid), h, st.mode_contrast(mid, h))
    return out


def precision_rows(view: DimView) -> list[dict]:
    """The precision curve of a (dataset, dimension) (interval width against n), for precision.csv."""
    if view.stats is None:
        return []
    return [{"dataset": view.dataset, "dimension": view.dimension, **r} for r in view.stats.precision()]


def view_result(data: RunData, view: DimView, topic: str | None = None) -> ViewResult:
    """The numbers the report shows of one view; ``topic`` (if one of its topics) picks the distribution figures' topic."""
    topics = [topic] if topic is not None and topic in view.topics else divergent_topics(view)
    return ViewResult(view, topics, topic is not None and topic in view.topics,
                      consistency(view), baseline_shift(view), summary_bias(data, view), interval_rows(view), precision_rows(view))


def analyse(data: RunData, settings: Settings, topic: str | None = None) -> Analysis:
    """The statistics of a run: the bootstrap of every (dataset, dimension) and what the report shows of each."""
    all_stats = compute_stats(data, draws=settings.draws, seed=settings.seed, n_grid=settings.n_grid, interval=settings.interval)
    vs = views(data, all_stats)
    if not vs:
        raise InputError(f"{data.uri}/distributions.parquet: no rows to report")
    return Analysis(
        settings,
        [view_result(data, v, topic) for v in vs],
        clustered=any(st.clustered for st in all_stats.values()),
        topic_missing=topic is not None and not any(topic in v.topics for v in vs),
        humans_only=not any(v.has_models() for v in vs),
    )
