"""TokenizeStage (CPU tasks) -> AffectScoreStage (a pool of one 1-CPU actor) through Ray Data."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest

from affalign import schema
from affalign.scorers.base import ScorerSpec

pytest.importorskip("torch")
ray = pytest.importorskip("ray")

from tests.unit.test_hf_classifier import EMOTION_MODEL_LABELS, build_tiny_model, tiny_texts  # noqa: E402


def _apply(ds, stage, cluster):
    """The shipped adapter (``runtime.adapter.apply_stage``)."""
    from affalign.runtime.adapter import apply_stage

    return apply_stage(ds, stage, cluster)


@pytest.fixture(scope="module")
def ray_cpu():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def test_tokenize_and_score_through_ray_data(ray_cpu, tmp_path):
    import ray.data

    from affalign.runtime.adapter import map_batches_kwargs
    from affalign.stages.classify import AffectScoreStage, TokenizeStage

    model = build_tiny_model(tmp_path / "emo", EMOTION_MODEL_LABELS, "roberta")
    n = 150
    reason = [None if i % 5 else "retweet" for i in range(n)]
    t = pa.table(
        {
            schema.TWEET_ID: [f"t{i:04d}" for i in range(n)],
            schema.TEXT: tiny_texts(n, seed=21),
            schema.REASON: pa.array(reason, pa.string()),
        }
    )
    spec = ScorerSpec(scorer="hf", model=str(model), device="cpu", batch_size=8)
    tok, score = TokenizeStage(spec), AffectScoreStage(spec, ("emotion",), max_actors=1)
    score.prefetch()
    cluster = {"CPU": 2.0}
    kw = map_batches_kwargs(score, cluster)
    assert kw["num_cpus"] == 1 and "num_gpus" not in kw
    assert (kw["compute"].min_size, kw["compute"].max_size) == (1, 1)

    ctx = ray.data.DataContext.get_current()
    old = ctx.execution_options.preserve_order
    ctx.execution_options.preserve_order = True
    try:
        ds = ray.data.from_arrow(t).repartition(5)  # several blocks, several batches per block
        ds = _apply(_apply(ds, tok, cluster), score, cluster)
        out = pa.concat_tables(ray.get(ds.to_arrow_refs()))
    finally:
        ctx.execution_options.preserve_order = old

    assert out.column(schema.TWEET_ID).to_pylist() == t.column(schema.TWEET_ID).to_pylist()
    assert "input_ids" not in out.column_names
    no_ray = AffectScoreStage(spec, ("emotion",))(t)
    a = out.column(schema.score_column("emotion")).combine_chunks()
    b = no_ray.column(schema.score_column("emotion")).combine_chunks()
    assert a.is_null().equals(b.is_null()) and a.null_count == n // 5
    fa = np.array([v for v in a.to_pylist() if v is not None], np.float32)
    fb = np.array([v for v in b.to_pylist() if v is not None], np.float32)
    np.testing.assert_allclose(fa, fb, atol=1e-5)
