"""The reduce: per-(topic, subject) affect distributions, alignment tables and the summary.

Pure numpy/pyarrow (no Ray): partial aggregates are additive, so they can be built per batch or per
shard anywhere and merged; distributions follow from them in either mode of :mod:`affalign.metrics`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from affalign import metrics, schema
from affalign.schema import DIMENSIONS


def score_matrix(column: pa.ChunkedArray | pa.Array, n_labels: int) -> np.ndarray:
    """A fixed-size-list score column as a float64 matrix; null rows become NaN rows."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    if n == 0:
        return np.zeros((0, n_labels))
    if column.null_count:
        column = column.fill_null(pa.scalar([float("nan")] * n_labels, column.type))
    flat = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.float64)
    return flat.reshape(n, n_labels)


# Scores are summed as integers in units of 2**-24 (float32 resolution near 1): integer sums are
# exact and independent of order, so a resumed or re-partitioned run reduces to identical bits.
FIXED_POINT = 2**24


@dataclass
class _Acc:
    score_sum: np.ndarray  # int64, in units of 1 / FIXED_POINT
    above: np.ndarray  # int64 counts
    n: int = 0


@dataclass
class Aggregator:
    """Additive per-(topic, subject, dimension) sums of scores and of scores >= tau."""

    dimensions: tuple[str, ...]
    tau: float = 0.5
    acc: dict[tuple[str, str, str], _Acc] = field(default_factory=dict)
    # per-label cuts by dimension (a scorer's own thresholds, e.g. the offline scorer's); else tau
    label_tau: dict[str, list[float]] = field(default_factory=dict)
    # texts per (topic, subject), scored or not (for the topic threshold)
    members: dict[tuple[str, str], int] = field(default_factory=dict)

    def add_members(self, topics: pa.Array, subjects: pa.Array) -> None:
        """Count topic membership of kept texts (whether or not they were scored)."""
        if len(topics) == 0:
            return
        parents = pc.list_parent_indices(topics)
        flat_topics = pc.list_flatten(topics)
        flat_subjects = pc.take(subjects, parents)
        keys = pa.table({"t": flat_topics, "s": flat_subjects}).group_by(["t", "s"]).aggregate([([], "count_all")])
        for t, s, c in zip(*(keys.column(i).to_pylist() for i in range(3)), strict=True):
            self.members[(t, s)] = self.members.get((t, s), 0) + c

    def add(self, table: pa.Table) -> None:
        """Add scored texts: columns ``subject``, ``topics`` and ``scores_<dimension>``."""
        if table.num_rows == 0:
            return
        topics = table.column(schema.TOPICS).combine_chunks()
        parents = pc.list_parent_indices(topics).to_numpy()
        flat_topics = pc.list_flatten(topics)
        flat_subjects = pc.take(table.column(schema.SUBJECT).combine_chunks(), pa.array(parents))
        keys = pc.binary_join_element_wise(flat_topics, flat_subjects, "\x1f")
        encoded = keys.dictionary_encode()
        codes = encoded.indices.to_numpy()
        names = encoded.dictionary.to_pylist()
        k = len(names)
        for dim in self.dimensions:
            col = schema.score_column(dim)
            if col not in table.column_names:
                continue
            mat = score_matrix(table.column(col), len(DIMENSIONS[dim]))[parents]
            ok = ~np.isnan(mat).any(axis=1)
            c = codes[ok]
            m = mat[ok]
            n = np.bincount(c, minlength=k)
            fixed = np.rint(m * FIXED_POINT)
            # per-batch float64 sums of integers stay exact below 2**53
            sums = np.stack([np.bincount(c, weights=fixed[:, j], minlength=k) for j in range(m.shape[1])], axis=1).astype(np.int64)
            cut = np.broadcast_to(np.asarray(self.label_tau.get(dim, self.tau), np.float64), (m.shape[1],))
            above = np.stack([np.bincount(c, weights=(m[:, j] >= cut[j]), minlength=k) for j in range(m.shape[1])], axis=1).astype(np.int64)
            for i, name in enumerate(names):
                if n[i] == 0:
                    continue
                topic, subject = name.split("\x1f", 1)
                key = (topic, subject, dim)
                a = self.acc.get(key)
                if a is None:
                    a = self.acc[key] = _Acc(np.zeros(m.shape[1], np.int64), np.zeros(m.shape[1], np.int64), 0)
                a.score_sum += sums[i]
                a.above += above[i]
                a.n += int(n[i])

    def merge(self, other: Aggregator) -> None:
        for key, a in other.acc.items():
            mine = self.acc.get(key)
            if mine is None:
                self.acc[key] = _Acc(a.score_sum.copy(), a.above.copy(), a.n)
            else:
                mine.score_sum += a.score_sum
                mine.above += a.above
                mine.n += a.n
        for key, c in other.members.items():
            self.members[key] = self.members.get(key, 0) + c

    def distributions(self, dataset: str, mode: str, topics: list[str] | None = None) -> pa.Table:
        """The distributions table (schema.DISTRIBUTIONS_SCHEMA), optionally for some topics only."""
        rows: dict[str, list] = {f.name: [] for f in schema.DISTRIBUTIONS_SCHEMA}
        keep = set(topics) if topics is not None else None
        for (topic, subject, dim), a in sorted(self.acc.items()):
            if keep is not None and topic not in keep:
                continue
            values = metrics.distribution_from_sums(a.score_sum / FIXED_POINT, a.above, a.n, mode)
            for label, v in zip(DIMENSIONS[dim], values, strict=True):
                rows["dataset"].append(dataset)
                rows["dimension"].append(dim)
                rows["topic"].append(topic)
                rows["subject"].append(subject)
                rows["label"].append(label)
                rows["value"].append(float(v))
                rows["n_texts"].append(a.n)
        return pa.table(rows, schema=schema.DISTRIBUTIONS_SCHEMA)


def kept_topics(members: dict[tuple[str, str], int], topics: list[str], groups: list[str], minimum: int) -> tuple[list[str], dict[str, dict[str, int]]]:
    """Topics where every group has at least ``minimum`` texts; and per-topic counts of all topics."""
    counts = {t: {g: members.get((t, schema.human_subject(g)), 0) for g in groups} for t in topics}
    kept = [t for t in topics if groups and all(c >= minimum for c in counts[t].values())]
    return kept, counts


def distribution_lookup(dists: pa.Table) -> dict[tuple[str, str, str, str], np.ndarray]:
    """(dataset, dimension, topic, subject) -> distribution vector in canonical label order."""
    out: dict[tuple[str, str, str, str], dict[str, float]] = {}
    cols = [dists.column(c).to_pylist() for c in ("dataset", "dimension", "topic", "subject", "label", "value")]
    for d, dim, t, s, label, v in zip(*cols, strict=True):
        out.setdefault((d, dim, t, s), {})[label] = v
    return {k: np.array([v[label] for label in DIMENSIONS[k[1]]]) for k, v in out.items()}


def alignment_table(dists: pa.Table, pairs: list[tuple[str, str]]) -> pa.Table:
    """Per-topic alignment ``1 - JSD`` for each (subject, target) pair present in the distributions."""
    lookup = distribution_lookup(dists)
    rows: dict[str, list] = {f.name: [] for f in schema.ALIGNMENT_SCHEMA}
    for (d, dim, topic, subject), p in sorted(lookup.items()):
        for s, target in pairs:
            if s != subject:
                continue
            q = lookup.get((d, dim, topic, target))
            if q is None:
                continue
            rows["dataset"].append(d)
            rows["dimension"].append(dim)
            rows["topic"].append(topic)
            rows["subject"].append(subject)
            rows["target"].append(target)
            rows["score"].append(metrics.alignment(p, q))
    return pa.table(rows, schema=schema.ALIGNMENT_SCHEMA)


def subject_pairs(groups: list[str], model_subjects: list[str]) -> list[tuple[str, str]]:
    """The human baseline (each pair of groups, in config order) and every model vs every group."""
    humans = [schema.human_subject(g) for g in groups]
    pairs = list(itertools.combinations(humans, 2))
    pairs += [(m, h) for m in model_subjects for h in humans]
    return pairs


def summary_rows(align: pa.Table, groups: list[str]) -> list[dict]:
    """summary.csv rows: alignment mean/std over topics, plus per-model bias and steering effects.

    ``metric`` is ``alignment`` (S averaged over topics, paper eq. 1), ``bias`` (S with the first
    group minus S with the second, per topic, for each pair of groups; target ``human:A|human:B``)
    or ``steering`` (S of a steered mode minus S of the default mode with the same target).
    """
    per: dict[tuple[str, str, str, str], dict[str, float]] = {}
    cols = [align.column(c).to_pylist() for c in ("dataset", "dimension", "topic", "subject", "target", "score")]
    for d, dim, topic, s, t, v in zip(*cols, strict=True):
        per.setdefault((d, dim, s, t), {})[topic] = v
    out: list[dict] = []

    def add(d, dim, s, t, metric, values):
        mean, std, n = metrics.summarise(values)
        out.append({"dataset": d, "dimension": dim, "subject": s, "target": t, "metric": metric, "score_mean": mean, "score_std": std, "n_topics": n})

    for (d, dim, s, t), by_topic in sorted(per.items()):
        add(d, dim, s, t, "alignment", list(by_topic.values()))
    humans = [schema.human_subject(g) for g in groups]
    subjects = sorted({k[2] for k in per if schema.is_model_subject(k[2])})
    datasets_dims = sorted({(k[0], k[1]) for k in per})
    for d, dim in datasets_dims:
        for s in subjects:
            for a, b in itertools.combinations(humans, 2):
                sa, sb = per.get((d, dim, s, a), {}), per.get((d, dim, s, b), {})
                common = sorted(set(sa) & set(sb))
                if common:
                    add(d, dim, s, f"{a}|{b}", "bias", [sa[t] - sb[t] for t in common])
            model_id, mode = schema.parse_model_subject(s)
            if mode == "default":
                continue
            default = schema.model_subject(model_id, "default")
            for h in humans:
                steered, base = per.get((d, dim, s, h), {}), per.get((d, dim, default, h), {})
                common = sorted(set(steered) & set(base))
                if common:
                    add(d, dim, s, h, "steering", [steered[t] - base[t] for t in common])
    return out
