"""HFClassifierScorer on tiny random-weight models saved to tmp dirs (no hub, no network).

The builders here (``build_tiny_model``, ``tiny_texts``) are imported by the stage and Ray tests.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from affalign.errors import ConfigError
from affalign.schema import EMOTION_LABELS, MORAL_LABELS
from affalign.scorers.base import ScorerSpec

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

_WORDS = (
    "vaccine mask lockdown school abortion court rights freedom family love hate fear hope trust news "
    "doctor nurse hospital death life children mother father church god law state vote people today "
    "never always great terrible sad happy angry proud shame disgusting amazing wow lol #covid #roe"
).split()


def tiny_texts(n: int, seed: int = 0) -> list[str]:
    """Tweet-like texts of varied length (1 to ~40 words), deterministic."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.choice([1, 2, 3, 5, 8, 13, 21, 34, 40])
        words = [rng.choice(_WORDS) for _ in range(k)]
        if rng.random() < 0.3:
            words.append("@user")
        if rng.random() < 0.3:
            words.append("https://t.co/x")
        out.append(" ".join(words) + rng.choice(["", "!", "?", " 😡", " ❤️"]))
    return out


def _train_tokenizer(kind: str):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = tiny_texts(400, seed=123)
    if kind == "bpe":  # RoBERTa-style byte-level BPE
        tk = Tokenizer(models.BPE())
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tk.train_from_iterator(corpus, trainer)
        tk.post_processor = processors.RobertaProcessing(("</s>", tk.token_to_id("</s>")), ("<s>", tk.token_to_id("<s>")))
        return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>", model_max_length=512)
    # BERT-style WordPiece
    tk = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tk.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials))
    cls, sep = tk.token_to_id("[CLS]"), tk.token_to_id("[SEP]")
    tk.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tk.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=tk, cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]", model_max_length=512)


def build_tiny_model(path: Path, labels: list[str], arch: str = "roberta", seed: int = 0) -> Path:
    """Save a random-weight multi-label classifier (hidden 32, 2 layers) with a trained tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification, RobertaConfig, RobertaForSequenceClassification

    tok = _train_tokenizer("bpe" if arch == "roberta" else "wordpiece")
    common = {
        "vocab_size": len(tok),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {lab: i for i, lab in enumerate(labels)},
        "problem_type": "multi_label_classification",
        "pad_token_id": tok.pad_token_id,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }
    torch.manual_seed(seed)
    if arch == "roberta":
        cfg = RobertaConfig(max_position_embeddings=514, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **common)
        model = RobertaForSequenceClassification(cfg)
    else:
        cfg = BertConfig(max_position_embeddings=512, **common)
        model = BertForSequenceClassification(cfg)
    # random init gives near-zero logits; spread the head so probabilities differ visibly
    with torch.no_grad():
        for p in model.classifier.parameters():
            p.mul_(20.0)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models run faster on one thread, and a shared 2-core box does not thrash."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# Emotion model: canonical labels shuffled, mixed case, "Happiness" as an alias of joy, plus "neutral".
EMOTION_MODEL_LABELS = ["Trust", "neutral", "SADNESS", "Happiness", "anger", "Fear", "optimism", "Love", "pessimism", "surprise", "Disgust", "anticipation"]
# Moral model (BERT): virtue/vice spellings in a foreign order.
MORAL_MODEL_LABELS = ["sanctity.vice", "care_virtue", "care_vice", "fairness_virtue", "fairness_vice", "loyalty_virtue", "loyalty_vice", "authority_virtue", "authority_vice", "sanctity.virtue"]


@pytest.fixture(scope="module")
def emotion_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("emo") / "model", EMOTION_MODEL_LABELS, "roberta")


@pytest.fixture(scope="module")
def moral_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("mor") / "model", MORAL_MODEL_LABELS, "bert", seed=1)


def make(model_dir: Path, dim: str = "emotion", **kw):
    from affalign.scorers.hf_classifier import HFClassifierScorer

    spec = ScorerSpec(scorer="hf", model=str(model_dir), device="cpu", **kw)
    s = HFClassifierScorer(spec, (dim,))
    s.setup()
    return s


def manual_probs(model_dir: Path, texts: list[str], model_labels: list[str], canonical: tuple[str, ...], alias: dict[str, str]) -> np.ndarray:
    """Reference: transformers tokenizer + model one text at a time, sigmoid, reindexed by hand."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    cols = [model_labels.index(alias.get(c, c)) for c in canonical]
    rows = []
    with torch.no_grad():
        for t in texts:
            enc = tok([t], truncation=True, max_length=128, return_tensors="pt")
            rows.append(torch.sigmoid(model(**enc).logits)[0, cols].numpy())
    return np.stack(rows)


EMO_ALIAS = {"trust": "Trust", "sadness": "SADNESS", "joy": "Happiness", "fear": "Fear", "love": "Love", "disgust": "Disgust"}
MOR_ALIAS = {
    "care": "care_virtue",
    "harm": "care_vice",
    "fairness": "fairness_virtue",
    "cheating": "fairness_vice",
    "loyalty": "loyalty_virtue",
    "betrayal": "loyalty_vice",
    "authority": "authority_virtue",
    "subversion": "authority_vice",
    "purity": "sanctity.virtue",
    "degradation": "sanctity.vice",
}


def test_local_dir_label_reordering_matches_manual_forward(emotion_dir):
    texts = tiny_texts(12, seed=5)
    s = make(emotion_dir, batch_size=4)
    got = s.score(texts)["emotion"]
    want = manual_probs(emotion_dir, texts, EMOTION_MODEL_LABELS, EMOTION_LABELS, EMO_ALIAS)
    assert got.dtype == np.float32 and got.shape == (12, len(EMOTION_LABELS))
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not s.uses_gpu()
    # the probabilities are not all alike (the test would be blind otherwise)
    assert got.std() > 0.05


def test_bert_virtue_vice_aliases(moral_dir):
    texts = tiny_texts(6, seed=9)
    got = make(moral_dir, "moral").score(texts)["moral"]
    want = manual_probs(moral_dir, texts, MORAL_MODEL_LABELS, MORAL_LABELS, MOR_ALIAS)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_label_map_overrides_by_name_and_index(emotion_dir):
    texts = tiny_texts(5, seed=2)
    base = make(emotion_dir).score(texts)["emotion"]
    # swap joy and love by hand: index 3 is "Happiness", "Love" by name
    # random weights: the label-map check (label_check.py) would rightly reject this model, so it is off
    swapped = make(emotion_dir, label_map={"3": "love", "Love": "joy"}, options={"label_map_check": False}).score(texts)["emotion"]
    j, lo = EMOTION_LABELS.index("joy"), EMOTION_LABELS.index("love")
    np.testing.assert_allclose(swapped[:, j], base[:, lo], atol=1e-6)
    np.testing.assert_allclose(swapped[:, lo], base[:, j], atol=1e-6)


def test_missing_labels_error_and_nan_option(tmp_path):
    labels = [lab for lab in EMOTION_LABELS if lab not in ("trust", "surprise")]
    d = build_tiny_model(tmp_path / "m", labels)
    with pytest.raises(ConfigError) as e:
        make(d)
    msg = str(e.value)
    assert "surprise" in msg and "trust" in msg and "label_map" in msg and "missing_labels" in msg
    got = make(d, options={"missing_labels": "nan"}).score(["hello world", "wow"])["emotion"]
    nan_cols = [EMOTION_LABELS.index("surprise"), EMOTION_LABELS.index("trust")]
    assert np.isnan(got[:, nan_cols]).all()
    assert not np.isnan(np.delete(got, nan_cols, axis=1)).any()


def test_label_map_errors():
    from affalign.scorers.hf_classifier import resolve_labels

    id2label = dict(enumerate(EMOTION_LABELS))
    with pytest.raises(ConfigError, match="not a label"):
        resolve_labels(id2label, "emotion", {"anger": "rage"})
    with pytest.raises(ConfigError, match="match no label"):
        resolve_labels(id2label, "emotion", {"angr": "anger"})
    with pytest.raises(ConfigError, match="both map to"):
        resolve_labels({**id2label, 11: "Angry"}, "emotion")
    # extra labels are ignored; order comes from names
    src = resolve_labels({0: "neutral", **{i + 1: lab.upper() for i, lab in enumerate(reversed(EMOTION_LABELS))}}, "emotion")
    assert [EMOTION_LABELS[::-1][s - 1] for s in src] == list(EMOTION_LABELS)


def test_five_foundation_model_fills_virtue_and_vice():
    from affalign.scorers.hf_classifier import resolve_labels

    five = {0: "Care", 1: "Fairness", 2: "Loyalty", 3: "Authority", 4: "Sanctity", 5: "non-moral"}
    with pytest.raises(ConfigError, match="five_foundations"):
        resolve_labels(five, "moral")
    src = resolve_labels(five, "moral", options={"five_foundations": True})
    assert dict(zip(MORAL_LABELS, src.tolist(), strict=True)) == {
        "care": 0, "harm": 0, "fairness": 1, "cheating": 1, "loyalty": 2, "betrayal": 2, "authority": 3, "subversion": 3, "purity": 4, "degradation": 4,
    }  # fmt: skip
    by_map = resolve_labels(five, "moral", {"Care": "care,harm", "Fairness": "fairness,cheating", "Loyalty": "loyalty,betrayal", "Authority": "authority,subversion", "Sanctity": "purity,degradation"})
    np.testing.assert_array_equal(by_map, src)


def test_one_dimension_only(emotion_dir):
    from affalign.scorers.hf_classifier import HFClassifierScorer

    with pytest.raises(ConfigError, match="exactly one dimension"):
        HFClassifierScorer(ScorerSpec(scorer="hf", model=str(emotion_dir)), ("emotion", "moral"))
    with pytest.raises(ConfigError, match="needs a model"):
        HFClassifierScorer(ScorerSpec(scorer="hf"), ("emotion",))


def test_order_restored_across_length_sorted_sub_batches(emotion_dir):
    texts = tiny_texts(37, seed=11)
    s = make(emotion_dir, batch_size=5, options={"tokenize_chunk": 12})  # 4 chunks via the thread
    one_by_one = np.concatenate([s.score([t])["emotion"] for t in texts])
    perm = np.random.default_rng(0).permutation(len(texts))
    shuffled = [texts[i] for i in perm]
    s.profile = True
    got = s.score(shuffled)["emotion"]
    np.testing.assert_allclose(got, one_by_one[perm], atol=1e-5)
    # the sorted path really cut several padded sub-batches, each padded to a multiple of 8
    assert s.timings["sub_batches"] >= 8 and s.timings["rows"] == len(texts)
    assert s.timings["padded_tokens"] % 8 == 0 and s.timings["padded_tokens"] >= s.timings["tokens"]
    assert s.timings["tokenize_s"] > 0 and s.timings["forward_s"] > 0


def test_dynamic_padding_beats_global_padding(emotion_dir):
    texts = tiny_texts(64, seed=4)
    s = make(emotion_dir, batch_size=8)
    s.profile = True
    s.score(texts)
    ids, lengths = s.tokenize(texts)
    assert s.timings["padded_tokens"] < ids.shape[0] * ids.shape[1]


def test_tokenize_matches_transformers_and_pre_tokenized_equals_text(emotion_dir):
    from transformers import AutoTokenizer

    texts = tiny_texts(20, seed=3) + ["", "x " * 300]  # empty and truncated rows
    s = make(emotion_dir, batch_size=6, max_length=64)
    ids, lengths = s.tokenize(texts)
    assert ids.dtype == np.int32 and lengths.dtype == np.int32 and ids.shape[1] % 8 == 0
    ref = AutoTokenizer.from_pretrained(emotion_dir)(texts, truncation=True, max_length=64)["input_ids"]
    assert [list(ids[i, : lengths[i]]) for i in range(len(texts))] == ref
    assert (ids[np.arange(ids.shape[1])[None, :] >= lengths[:, None]] == s.pad_id).all()
    assert lengths.max() == 64
    np.testing.assert_allclose(s.score_tokenized(ids, lengths)["emotion"], s.score(texts)["emotion"], atol=1e-6)


def test_pad_flat():
    from affalign.scorers.hf_classifier import pad_flat

    mat = pad_flat(np.array([1, 2, 3, 4, 5, 6], np.int32), np.array([2, 0, 4]), pad_id=9)
    assert mat.shape == (3, 8)
    assert mat[:, :4].tolist() == [[1, 2, 9, 9], [9, 9, 9, 9], [3, 4, 5, 6]]
    assert pad_flat(np.zeros(0, np.int32), np.zeros(0, np.int64), 0).shape == (0, 8)


def test_empty_input(emotion_dir):
    s = make(emotion_dir)
    assert s.score([])["emotion"].shape == (0, len(EMOTION_LABELS))


def test_missing_hub_model_message(tmp_path, monkeypatch):
    from affalign.scorers.hf_classifier import HFClassifierScorer, ensure_model_available

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    model_id = "cardiffnlp/twitter-roberta-base-emotion-multilabel-latest"
    with pytest.raises(ConfigError) as e:
        ensure_model_available(model_id, "scoring.emotion.model")
    msg = str(e.value)
    assert model_id in msg
    assert f"huggingface-cli download {model_id}" in msg
    assert "scoring.emotion.model" in msg and "HF_HOME" in msg and "HF_HUB_OFFLINE" in msg
    assert str(tmp_path / "hf") in msg
    s = HFClassifierScorer(ScorerSpec(scorer="hf", model=model_id, device="cpu"), ("emotion",))
    with pytest.raises(ConfigError, match="huggingface-cli download"):
        s.setup()
    with pytest.raises(ConfigError, match="does not exist"):
        ensure_model_available(str(tmp_path / "nowhere"), "scoring.emotion.model")


def test_hub_model_found_in_cache_offline(tmp_path, monkeypatch, emotion_dir):
    """A snapshot in the HF cache layout is used without network."""
    import shutil

    from affalign.scorers.hf_classifier import ensure_model_available

    cache = tmp_path / "hf" / "hub"
    repo = cache / "models--org--tiny"
    snap = repo / "snapshots" / ("a" * 40)
    shutil.copytree(emotion_dir, snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert Path(ensure_model_available("org/tiny")) == snap


def test_sub_batches_group_by_padded_width():
    from affalign.scorers.hf_classifier import sub_batches

    rng = np.random.default_rng(0)
    lengths = np.clip(rng.gamma(2.0, 20.0, 4000).astype(int), 3, 128)
    order = np.argsort(-lengths, kind="stable")
    got = list(sub_batches(lengths, order, max_rows=1000, max_tokens=1000 * 64, max_width=128, min_rows=250))
    rows = np.concatenate([idx for idx, _ in got])
    assert sorted(rows.tolist()) == list(range(4000))  # every row exactly once
    for idx, width in got:
        assert width % 8 == 0 and lengths[idx].max() <= width < lengths[idx].max() + 8
        assert len(idx) <= 1000 and len(idx) * width <= 1000 * 64
    padded = sum(len(idx) * w for idx, w in got)
    equal_slices = sum(len(order[s : s + 1000]) * -(-lengths[order[s]] // 8) * 8 for s in range(0, 4000, 1000))
    assert padded < 0.85 * equal_slices  # far less padding than equal 1,000-row slices
    assert all(len(idx) >= 250 for idx, _ in got[:-1])


def test_next_chunk_is_tokenized_while_the_current_one_runs(emotion_dir, monkeypatch):
    """The CPU path exercises the same thread + pending/collect machinery as CUDA."""
    import time

    s = make(emotion_dir, batch_size=4, options={"tokenize_chunk": 8})
    events: list[tuple[str, float, float]] = []
    tokenize, launch = s.tokenizer.tokenize, s._launch_cpu

    def timed_tokenize(texts):
        t0 = time.perf_counter()
        out = tokenize(texts)
        events.append(("tok", t0, time.perf_counter()))
        return out

    def slow_launch(*args):
        t0 = time.perf_counter()
        time.sleep(0.1)  # a forward long enough to see the overlap (sleep releases the GIL)
        out = launch(*args)
        events.append(("fwd", t0, time.perf_counter()))
        return out

    monkeypatch.setattr(s.tokenizer, "tokenize", timed_tokenize)
    monkeypatch.setattr(s, "_launch_cpu", slow_launch)
    texts = tiny_texts(32, seed=8)
    got = s.score(texts)["emotion"]
    toks = [e for e in events if e[0] == "tok"]
    fwds = [e for e in events if e[0] == "fwd"]
    assert len(toks) == 4 and len(fwds) >= 8
    assert toks[1][1] < fwds[1][2]  # chunk 2 was being tokenized while chunk 1 (>= 2 sub-batches) ran
    monkeypatch.undo()
    np.testing.assert_allclose(got, s.score_tokenized(*s.tokenize(texts))["emotion"], atol=1e-5)


# -- GPU readiness (issue 14): checked on CPU with torch.cuda / from_pretrained monkeypatched --------


class _Stop(RuntimeError):
    """Stops setup right after from_pretrained (the rest of it needs a real GPU)."""


def test_classifier_weights_load_straight_onto_a_cuda_device(emotion_dir, monkeypatch):
    import transformers as tf

    from affalign.scorers import hf_classifier
    from affalign.scorers.hf_classifier import HFClassifierScorer

    seen: list[dict] = []

    def spy(klass, path, **kwargs):
        seen.append(kwargs)
        raise _Stop

    monkeypatch.setattr(tf.AutoModelForSequenceClassification, "from_pretrained", classmethod(spy))
    monkeypatch.setattr(hf_classifier, "resolve_device", lambda device, where="": "cuda:0")
    s = HFClassifierScorer(ScorerSpec(scorer="hf", model=str(emotion_dir), device="cuda", dtype="bfloat16"), ("emotion",))
    with pytest.raises(_Stop):
        s.setup()
    assert seen[0]["device_map"] == {"": "cuda:0"} and seen[0]["low_cpu_mem_usage"] is True
    assert seen[0]["dtype"] is torch.bfloat16


def test_classifier_cpu_loading_is_unchanged(emotion_dir, monkeypatch):
    import transformers as tf

    cls = tf.AutoModelForSequenceClassification
    original = cls.from_pretrained.__func__
    seen: list[dict] = []

    def spy(klass, path, **kwargs):
        seen.append(dict(kwargs))
        return original(klass, path, **kwargs)

    monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    s = make(emotion_dir)
    assert "device_map" not in seen[0] and "low_cpu_mem_usage" not in seen[0]
    assert s.score(["masks work"])["emotion"].shape == (1, len(EMOTION_LABELS))


def test_classifier_auto_dtype_checks_native_bf16(monkeypatch):
    from affalign.scorers.hf_classifier import _torch_dtype

    # torch's default (including_emulation=True) says yes on GPUs that only emulate bf16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert _torch_dtype("auto", "cuda") is torch.float16
    assert _torch_dtype("auto", "cpu") is torch.float32


def test_classifier_batch_default_by_device(emotion_dir):
    from affalign.scorers.hf_classifier import HFClassifierScorer, default_batch_size

    assert default_batch_size("cuda") == 1024 and default_batch_size("cuda:1") == 1024
    assert default_batch_size("cpu") == 256
    s = HFClassifierScorer(ScorerSpec(scorer="hf", model=str(emotion_dir), device="cpu", batch_size=None), ("emotion",))  # type: ignore[arg-type]
    assert s.batch_size == 256
    s.setup()
    assert s.score(tiny_texts(5))["emotion"].shape == (5, len(EMOTION_LABELS))
    assert make(emotion_dir, batch_size=32).batch_size == 32  # a job's batch size is kept


@pytest.mark.parametrize("message", ["CUDA error: an illegal memory access was encountered", "CUDA error: device-side assert triggered"])
def test_classifier_sticky_cuda_error_is_not_swallowed(emotion_dir, monkeypatch, message):
    """The classify stage isolates rows that raise (quarantine); after a sticky CUDA error every row
    would, so the scorer ends the actor instead (outside Ray: StickyCudaError, a BaseException)."""
    from affalign import devices

    s = make(emotion_dir)
    monkeypatch.setattr(devices, "in_ray_actor", lambda: False)

    def broken(*a, **k):
        raise RuntimeError(message)

    monkeypatch.setattr(s, "_model", broken)
    with pytest.raises(devices.StickyCudaError, match="scoring.emotion"):
        s.score(["masks work", "we must protect the most vulnerable"])
    with pytest.raises(devices.StickyCudaError):
        s.score_tokenized(*s.tokenize(["masks work"]))
    exits: list[int] = []
    monkeypatch.setattr(devices, "in_ray_actor", lambda: True)
    monkeypatch.setattr(devices, "_exit", lambda status: exits.append(status) or (_ for _ in ()).throw(SystemExit(status)))
    with pytest.raises(SystemExit):
        s.score(["masks work"])
    assert exits == [devices.STICKY_CUDA_EXIT]


def test_classifier_ordinary_errors_still_raise_as_they_are(emotion_dir, monkeypatch):
    s = make(emotion_dir)

    def broken(*a, **k):
        raise ValueError("bad input")

    monkeypatch.setattr(s, "_model", broken)
    with pytest.raises(ValueError, match="bad input"):
        s.score(["masks work"])
