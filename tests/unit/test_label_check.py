"""Label-map check: probe sentences against a scorer's columns; a permuted map stops the run (exit 2)."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
import pytest

from affalign.errors import ConfigError
from affalign.schema import DIMENSIONS, EMOTION_LABELS, MORAL_LABELS
from affalign.scorers.base import ScorerSpec
from affalign.scorers.label_check import CHANCE, check_scores, load_probes, probe_texts

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.unit.test_hf_classifier import tiny_texts  # noqa: E402

# ---------------------------------------------------------------------------------------------
# The shipped probe set


@pytest.mark.parametrize("dimension", sorted(DIMENSIONS))
def test_probe_files_cover_every_label(dimension):
    probes = load_probes(dimension)
    assert list(probes) == list(DIMENSIONS[dimension])
    texts, labels = probe_texts(dimension)
    assert all(6 <= len(v) <= 10 for v in probes.values())
    assert len(set(texts)) == len(texts)  # no sentence stands for two labels
    assert all(8 <= len(t) <= 140 for t in texts)
    assert labels.count(DIMENSIONS[dimension][0]) == len(probes[DIMENSIONS[dimension][0]])


# ---------------------------------------------------------------------------------------------
# The statistic on score matrices with known structure


def _ideal_scores(dimension: str, seed: int = 0, confuse: dict[str, str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Scores of a decent classifier: its own column high on a label's probes (plus noise and base rates);
    ``confuse`` {a: b}: column b also fires on a's probes, almost as high."""
    rng = np.random.default_rng(seed)
    canonical = DIMENSIONS[dimension]
    _, labels = probe_texts(dimension)
    base = rng.uniform(0.02, 0.3, len(canonical))  # columns differ in base rate
    scores = np.tile(base, (len(labels), 1)) + rng.normal(0, 0.05, (len(labels), len(canonical)))
    for r, lab in enumerate(labels):
        scores[r, canonical.index(lab)] += 0.6
        for a, b in (confuse or {}).items():
            if lab == a:
                scores[r, canonical.index(b)] += 0.45
    return np.clip(scores, 0, 1), labels


def _swap(scores: np.ndarray, dimension: str, a: str, b: str) -> np.ndarray:
    canonical = DIMENSIONS[dimension]
    perm = np.arange(len(canonical))
    i, j = canonical.index(a), canonical.index(b)
    perm[i], perm[j] = j, i
    return scores[:, perm]


def test_correct_map_passes_and_each_swap_is_named():
    scores, labels = _ideal_scores("moral", confuse={"care": "harm", "harm": "care"})  # virtue/vice confused
    ok = check_scores(scores, labels, "moral")
    assert ok.passed and set(ok.agreement) == set(MORAL_LABELS)
    assert min(ok.agreement.values()) > CHANCE
    bad = check_scores(_swap(scores, "moral", "care", "harm"), labels, "moral")
    assert not bad.passed
    assert [(a, b) for a, b, _ in bad.swapped] == [("care", "harm")]
    assert bad.top("care") == "harm" and bad.top("harm") == "care"
    assert "care and harm look swapped: probes for care score highest on harm, probes for harm on care" in bad.describe()
    assert bad.agreement["care"] <= CHANCE and bad.agreement["fairness"] > CHANCE


def test_a_three_cycle_and_random_permutations_fail():
    scores, labels = _ideal_scores("emotion", seed=3)
    c = [EMOTION_LABELS.index(x) for x in ("anger", "fear", "joy")]
    perm = np.arange(len(EMOTION_LABELS))
    perm[c] = perm[[c[1], c[2], c[0]]]
    res = check_scores(scores[:, perm], labels, "emotion")
    flagged = {x for pair in res.swapped for x in pair[:2]}
    assert not res.passed and flagged <= {"anger", "fear", "joy"} and len(flagged) == 3
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = rng.permutation(len(EMOTION_LABELS))
        if (p != np.arange(len(p))).any():
            assert not check_scores(scores[:, p], labels, "emotion").passed


def test_chance_shared_outputs_and_missing_labels():
    _, labels = probe_texts("moral")
    # a model that says the same about everything: every margin is 0, at chance -> fails
    flat = np.full((len(labels), len(MORAL_LABELS)), 0.3)
    assert not check_scores(flat, labels, "moral").passed
    # five-foundation model: care and harm share one output; that pair is not compared
    scores, _ = _ideal_scores("moral")
    five = scores.copy()
    for v, w in (("care", "harm"), ("fairness", "cheating"), ("loyalty", "betrayal"), ("authority", "subversion"), ("purity", "degradation")):
        five[:, MORAL_LABELS.index(w)] = five[:, MORAL_LABELS.index(v)] = scores[:, MORAL_LABELS.index(v)] + scores[:, MORAL_LABELS.index(w)]
    sources = np.repeat(np.arange(5), 2)
    res = check_scores(five, labels, "moral", sources)
    assert res.passed and ("care", "harm") not in res.margins and ("care", "fairness") in res.margins
    # a label the scorer lacks (NaN column) is left out
    scores[:, MORAL_LABELS.index("betrayal")] = np.nan
    res = check_scores(scores, labels, "moral")
    assert res.passed and "betrayal" not in res.labels and len(res.labels) == 9


# ---------------------------------------------------------------------------------------------
# A real classifier: the offline default (trained on SemEval E-c and MFTC)


@pytest.fixture(scope="module")
def offline_probe_scores():
    from affalign.scorers.registry import make_scorer

    # the exact MiniLM encoder with the shipped heads
    scorer = make_scorer(ScorerSpec(scorer="offline", device="cpu", options={"encoder": "exact"}), ("emotion", "moral"))
    scorer.setup()
    return {dim: scorer.score(probe_texts(dim)[0])[dim] for dim in DIMENSIONS}


@pytest.mark.parametrize("dimension", sorted(DIMENSIONS))
def test_offline_classifier_correct_map_passes_every_swap_fails(offline_probe_scores, dimension):
    scores = offline_probe_scores[dimension]
    _, labels = probe_texts(dimension)
    canonical = DIMENSIONS[dimension]
    ok = check_scores(scores, labels, dimension)
    assert ok.passed, ok.describe()
    for a, b in itertools.combinations(canonical, 2):
        res = check_scores(_swap(scores, dimension, a, b), labels, dimension)
        assert (a, b) in [(x, y) for x, y, _ in res.swapped], (a, b)
    rng = np.random.default_rng(1)
    for _ in range(100):
        p = rng.permutation(len(canonical))
        if (p != np.arange(len(p))).any():
            assert not check_scores(scores[:, p], labels, dimension).passed


# ---------------------------------------------------------------------------------------------
# Through the hf scorer: a tiny classifier trained here on texts like the probes


MMADS_STYLE = {f"LABEL_{i}": lab for i, lab in enumerate(MORAL_LABELS)}  # LABEL_0..9, as jobs/covid.yaml maps them


def train_probe_classifier(path: Path, dimension: str = "moral", steps: int = 200, seed: int = 0) -> Path:
    """A 1-layer BERT (hidden 64) with labels LABEL_0..n, trained to tell the probe labels apart.

    Training texts are the probes with ~30% of their words dropped and up to three filler words
    added (six variants each); the tokenizer is a WordPiece trained here on the probes and filler.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    texts, labels = probe_texts(dimension)
    canonical = DIMENSIONS[dimension]
    rng = random.Random(seed)
    filler = " ".join(tiny_texts(50, seed=1)).split()
    train_x, train_y = [], []
    for text, lab in zip(texts, labels, strict=True):
        words = text.split()
        for _ in range(6):
            kept = [w for w in words if rng.random() > 0.3] or words[:1]
            for _ in range(rng.randrange(4)):
                kept.insert(rng.randrange(len(kept) + 1), rng.choice(filler))
            train_x.append(" ".join(kept))
            train_y.append(canonical.index(lab))
    tk = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.train_from_iterator(texts + tiny_texts(200, seed=4), trainers.WordPieceTrainer(vocab_size=800, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    tk.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tk.token_to_id("[CLS]")), ("[SEP]", tk.token_to_id("[SEP]"))])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]", model_max_length=128)
    n = len(canonical)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=128,
        num_labels=n,
        id2label={i: f"LABEL_{i}" for i in range(n)},
        label2id={f"LABEL_{i}": i for i in range(n)},
        problem_type="multi_label_classification",
        pad_token_id=tok.pad_token_id,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(cfg)
    enc = tok(train_x, padding=True, return_tensors="pt")
    target = torch.tensor(train_y)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(train_x), (32,), generator=gen)
        logits = model(input_ids=enc["input_ids"][idx], attention_mask=enc["attention_mask"][idx]).logits
        # softmax cross-entropy gets the labels apart fast (BCE alone stalls at the base rate for
        # this many steps); BCE besides makes the sigmoid outputs the scorer reads low off-label
        onehot = torch.nn.functional.one_hot(target[idx], n).float()
        loss = torch.nn.functional.cross_entropy(logits, target[idx]) + torch.nn.functional.binary_cross_entropy_with_logits(logits, onehot)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def trained_moral(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield train_probe_classifier(tmp_path_factory.mktemp("probe_model") / "model")
    finally:
        torch.set_num_threads(before)


def _scorer(model_dir: Path, label_map: dict[str, str] | None, **options):
    from affalign.scorers.hf_classifier import HFClassifierScorer

    return HFClassifierScorer(ScorerSpec(scorer="hf", model=str(model_dir), device="cpu", label_map=label_map, options=options), ("moral",))


def test_hf_scorer_correct_map_passes(trained_moral):
    s = _scorer(trained_moral, MMADS_STYLE)
    s.setup()
    assert s.label_check is not None and s.label_check.passed
    assert min(s.label_check.agreement.values()) > CHANCE
    assert s.score(["Volunteers helped the sick"])["moral"].shape == (1, 10)


def test_hf_scorer_permuted_map_stops_with_exit_2_naming_the_swap(trained_moral):
    swapped = {**MMADS_STYLE, "LABEL_0": "harm", "LABEL_1": "care"}  # care and harm swapped
    s = _scorer(trained_moral, swapped)
    with pytest.raises(ConfigError) as e:
        s.setup()
    assert e.value.exit_code == 2
    msg = str(e.value)
    assert "scoring.moral.label_map looks wrong" in msg
    assert "care and harm look swapped: probes for care score highest on harm, probes for harm on care" in msg
    assert "label_map_check: false" in msg
    assert s._model is None  # not left usable
    # a rotated map (every label one place off) names pairs too
    rotated = {f"LABEL_{i}": MORAL_LABELS[(i + 1) % 10] for i in range(10)}
    with pytest.raises(ConfigError, match="look swapped"):
        _scorer(trained_moral, rotated).setup()


def test_hf_scorer_check_can_be_turned_off_and_auto_skips_name_maps(trained_moral, tmp_path):
    swapped = {**MMADS_STYLE, "LABEL_0": "harm", "LABEL_1": "care"}
    s = _scorer(trained_moral, swapped, label_map_check=False)
    s.setup()
    assert s.label_check is None
    with pytest.raises(ConfigError, match="label_map_check"):
        _scorer(trained_moral, swapped, label_map_check="sometimes").setup()
    from affalign.scorers.hf_classifier import label_map_renames

    names = dict(enumerate(MORAL_LABELS))
    # a map that only repeats what the names say is not checked by default; a renaming one is
    assert not label_map_renames(names, "moral", {lab: lab for lab in MORAL_LABELS})
    assert label_map_renames(names, "moral", {"care": "harm", "harm": "care"})
    assert label_map_renames({i: f"LABEL_{i}" for i in range(10)}, "moral", MMADS_STYLE)
    assert not label_map_renames(names, "moral", None)


def test_driver_check_before_actors_start(trained_moral):
    """The job runs the check in AffectScoreStage.prefetch (the driver) so the error exits 2 there."""
    from affalign.stages.classify import AffectScoreStage

    swapped = {**MMADS_STYLE, "LABEL_0": "harm", "LABEL_1": "care"}
    stage = AffectScoreStage(ScorerSpec(scorer="hf", model=str(trained_moral), device="cuda", label_map=swapped), ("moral",))
    with pytest.raises(ConfigError, match="care and harm look swapped"):
        stage.prefetch()  # device cuda is ignored here: the driver checks on CPU
    AffectScoreStage(ScorerSpec(scorer="hf", model=str(trained_moral), label_map=MMADS_STYLE), ("moral",)).prefetch()
