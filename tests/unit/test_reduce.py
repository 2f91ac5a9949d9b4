import numpy as np
import pyarrow as pa
import pytest

from affalign import metrics, reduce, schema
from affalign.schema import EMOTION_LABELS


def scored(subjects, topics, mat, dim="emotion"):
    n_labels = mat.shape[1]
    flat = pa.array(mat.astype(np.float32).ravel())
    return pa.table(
        {
            "subject": pa.array(subjects),
            "topics": pa.array(topics, pa.list_(pa.string())),
            schema.score_column(dim): pa.FixedSizeListArray.from_arrays(flat, n_labels),
        }
    )


def test_aggregator_matches_direct_computation_with_multilabel_topics():
    rng = np.random.default_rng(0)
    n = 200
    mat = rng.random((n, 11))
    subjects = rng.choice(["human:a", "human:b"], n).tolist()
    topics = [rng.choice(["t1", "t2", "t3"], rng.integers(1, 3), replace=False).tolist() for _ in range(n)]
    agg = reduce.Aggregator(("emotion",), tau=0.5)
    # added in two halves and merged: partial aggregates are additive
    agg.add(scored(subjects[:120], topics[:120], mat[:120]))
    other = reduce.Aggregator(("emotion",), tau=0.5)
    other.add(scored(subjects[120:], topics[120:], mat[120:]))
    agg.merge(other)
    for mode in ("mean", "threshold"):
        d = agg.distributions("covid", mode)
        lookup = reduce.distribution_lookup(d)
        for t in ("t1", "t2", "t3"):
            for s in ("human:a", "human:b"):
                idx = [i for i in range(n) if subjects[i] == s and t in topics[i]]
                expected = metrics.distribution(mat[idx], mode, 0.5)
                np.testing.assert_allclose(lookup[("covid", "emotion", t, s)], expected, atol=1e-6)
        sums = {}
        for key, v in zip(zip(d.column("topic").to_pylist(), d.column("subject").to_pylist(), strict=True), d.column("value").to_pylist(), strict=True):
            sums[key] = sums.get(key, 0) + v
        assert all(v == pytest.approx(1.0) for v in sums.values())




def test_null_score_rows_are_not_counted():
    mat = np.array([[1.0] + [0.0] * 10, [0.0] * 10 + [1.0]])
    t = scored(["human:a", "human:a"], [["t"], ["t"]], mat)
    col = t.column(schema.score_column("emotion")).combine_chunks()
    masked = pa.FixedSizeListArray.from_arrays(col.values, 11, mask=pa.array([False, True]))
    t = t.set_column(2, schema.score_column("emotion"), masked)
    agg = reduce.Aggregator(("emotion",))
    agg.add(t)
    d = agg.distributions("covid", "mean")
    assert d.column("n_texts").to_pylist()[0] == 1
    assert d.column("value").to_pylist()[0] == pytest.approx(1.0)


def test_kept_topics_requires_every_group():
    members = {("t1", "human:a"): 5, ("t1", "human:b"): 5, ("t2", "human:a"): 10, ("t2", "human:b"): 4}
    kept, counts = reduce.kept_topics(members, ["t1", "t2", "t3"], ["a", "b"], 5)
    assert kept == ["t1"]
    assert counts["t2"] == {"a": 10, "b": 4} and counts["t3"] == {"a": 0, "b": 0}


def test_alignment_pairs_and_summary_with_bias_and_steering():
    def dist(subject, topic, vec):
        return [("covid", "emotion", topic, subject, lab, float(v), 10) for lab, v in zip(EMOTION_LABELS, vec, strict=True)]

    rng = np.random.default_rng(3)
    vecs = {}
    rows = []
    for topic in ("t1", "t2"):
        for s in ("human:liberal", "human:conservative", "model:m:default", "model:m:liberal"):
            v = rng.random(11)
            v /= v.sum()
            vecs[(topic, s)] = v
            rows += dist(s, topic, v)
    d = pa.Table.from_pylist([dict(zip([f.name for f in schema.DISTRIBUTIONS_SCHEMA], r, strict=True)) for r in rows], schema=schema.DISTRIBUTIONS_SCHEMA)
    pairs = reduce.subject_pairs(["liberal", "conservative"], ["model:m:default", "model:m:liberal"])
    assert ("human:liberal", "human:conservative") in pairs
    align = reduce.alignment_table(d, pairs)
    assert align.num_rows == 2 * (1 + 2 * 2)
    summary = reduce.summary_rows(align, ["liberal", "conservative"])

    def s_of(topic, a, b):
        return metrics.alignment(vecs[(topic, a)], vecs[(topic, b)])

    base = next(r for r in summary if r["subject"] == "human:liberal" and r["metric"] == "alignment")
    assert base["target"] == "human:conservative" and base["n_topics"] == 2
    assert base["score_mean"] == pytest.approx(np.mean([s_of(t, "human:liberal", "human:conservative") for t in ("t1", "t2")]))
    bias = next(r for r in summary if r["metric"] == "bias" and r["subject"] == "model:m:default")
    assert bias["target"] == "human:liberal|human:conservative"
    expected_bias = np.mean([s_of(t, "model:m:default", "human:liberal") - s_of(t, "model:m:default", "human:conservative") for t in ("t1", "t2")])
    assert bias["score_mean"] == pytest.approx(expected_bias)
    steer = next(r for r in summary if r["metric"] == "steering" and r["target"] == "human:liberal")
    assert steer["subject"] == "model:m:liberal"
    expected_steer = np.mean([s_of(t, "model:m:liberal", "human:liberal") - s_of(t, "model:m:default", "human:liberal") for t in ("t1", "t2")])
    assert steer["score_mean"] == pytest.approx(expected_steer)
