"""TokenizeStage and AffectScoreStage on Arrow tables, without Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from affalign import schema
from affalign.schema import EMOTION_LABELS, MORAL_LABELS
from affalign.scorers.base import ScorerSpec

torch = pytest.importorskip("torch")

from tests.unit.test_hf_classifier import (  # noqa: E402
    EMOTION_MODEL_LABELS,
    MORAL_MODEL_LABELS,
    _one_torch_thread,  # noqa: F401 - autouse fixture
    build_tiny_model,
    tiny_texts,
)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stage-models")
    return {
        "emotion": build_tiny_model(root / "emo", EMOTION_MODEL_LABELS, "roberta"),
        "moral": build_tiny_model(root / "mor", MORAL_MODEL_LABELS, "bert", seed=1),
    }


def spec(path: Path, **kw) -> ScorerSpec:
    return ScorerSpec(scorer="hf", model=str(path), device="cpu", batch_size=4, **kw)


def table(n: int = 23) -> pa.Table:
    texts = tiny_texts(n, seed=7)
    reason = [None if i % 4 else "retweet" for i in range(n)]
    if n > 5:
        reason[5] = "empty_text"
    return pa.table(
        {
            schema.TWEET_ID: [f"t{i}" for i in range(n)],
            schema.TEXT: texts,
            schema.REASON: pa.array(reason, pa.string()),
        }
    )


def direct(path: Path, dim: str, texts: list[str]) -> np.ndarray:
    from affalign.scorers.registry import make_scorer

    s = make_scorer(spec(path), (dim,))
    s.setup()
    return s.score(texts)[dim]


def test_score_stage_scores_live_rows_only(models):
    from affalign.stages.classify import AffectScoreStage

    t = table()
    stage = AffectScoreStage(spec(models["emotion"]), ("emotion",))
    out = stage(t)
    col = out.column(schema.score_column("emotion")).combine_chunks()
    assert col.type == pa.list_(pa.float32(), len(EMOTION_LABELS))
    live = np.array([r is None for r in t.column(schema.REASON).to_pylist()])
    assert col.is_null().to_numpy(zero_copy_only=False).tolist() == (~live).tolist()
    texts = t.column(schema.TEXT).to_pylist()
    want = direct(models["emotion"], "emotion", [x for x, ok in zip(texts, live, strict=True) if ok])
    got = np.array([v for v, ok in zip(col.to_pylist(), live, strict=True) if ok], np.float32)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the input columns are untouched
    assert out.select([schema.TWEET_ID, schema.TEXT, schema.REASON]).equals(t)


def test_tokenize_then_score_equals_text_path(models):
    from affalign.stages.classify import INPUT_IDS, N_TOKENS, AffectScoreStage, TokenizeStage

    t = table()
    sp = spec(models["moral"])
    tok = TokenizeStage(sp)(t)
    ids = tok.column(INPUT_IDS).combine_chunks()
    assert ids.type == pa.list_(pa.int32())
    live = np.array([r is None for r in t.column(schema.REASON).to_pylist()])
    assert ids.is_null().to_numpy(zero_copy_only=False).tolist() == (~live).tolist()
    n_tok = tok.column(N_TOKENS).to_pylist()
    assert all((n is None) == (not ok) for n, ok in zip(n_tok, live, strict=True))
    assert all(len(v) == n for v, n in zip(ids.to_pylist(), n_tok, strict=True) if n is not None)

    stage = AffectScoreStage(sp, ("moral",))
    via_ids = stage(tok)
    assert INPUT_IDS not in via_ids.column_names and N_TOKENS not in via_ids.column_names
    via_text = AffectScoreStage(sp, ("moral",))(t)
    a = via_ids.column(schema.score_column("moral")).combine_chunks()
    b = via_text.column(schema.score_column("moral")).combine_chunks()
    assert a.is_null().equals(b.is_null())
    np.testing.assert_allclose(
        np.array([v for v in a.to_pylist() if v is not None]), np.array([v for v in b.to_pylist() if v is not None]), atol=1e-6
    )
    assert len(a.to_pylist()[1]) == len(MORAL_LABELS)


def test_no_live_rows_and_resources(models):
    from affalign.stages.classify import AffectScoreStage

    t = table(4).set_column(2, schema.REASON, pa.array(["retweet"] * 4))
    stage = AffectScoreStage(spec(models["emotion"]), ("emotion",))
    out = stage(t)
    assert out.column(schema.score_column("emotion")).null_count == 4
    res = stage.resources
    assert res.actor and res.num_cpus == 1 and res.num_gpus == 0 and res.batch_size == 32
    assert AffectScoreStage(spec(models["emotion"], num_gpus=0.5), ("emotion",)).resources.num_gpus == 0.5


def test_bad_spec_fails_early(models):
    from affalign.errors import ConfigError
    from affalign.stages.classify import AffectScoreStage

    stage = AffectScoreStage(spec(models["emotion"]), ("emotion", "moral"))
    with pytest.raises(ConfigError, match="exactly one dimension"):
        stage.prefetch()  # on the driver, before any actor starts
