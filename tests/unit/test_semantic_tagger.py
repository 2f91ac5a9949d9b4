"""Semantic and hybrid topic tagging (affalign.stages.semantic), the tagging config, and `affalign tag --explain`."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from affalign import schema
from affalign.cli import main
from affalign.config import config_from_dict
from affalign.errors import ConfigError
from affalign.stages.semantic import SemanticTagStage, topic_stage
from affalign.stages.topics import TopicTagStage
from affalign.tagging.semantic import gate_similarities, load_semantic
from affalign.taxonomy import load_taxonomy

OFF_TOPIC = ["The Lakers won the championship last night!", "I love watching the sunset over the lake with my dog."]


def _batch(texts: list[str], reasons: list[str | None] | None = None) -> pa.Table:
    return pa.table({schema.TEXT: pa.array(texts, pa.string()), schema.REASON: pa.array(reasons or [None] * len(texts), pa.string())})


@pytest.mark.parametrize("dataset", ["covid", "roe"])
def test_exemplar_files_cover_their_taxonomy_and_are_calibrated(dataset):
    sem = load_semantic(dataset)
    assert [t.name for t in sem.topics] == load_taxonomy(dataset).topic_names
    assert all(len(t.exemplars) >= 4 for t in sem.topics)
    assert sem.cut is not None and sem.hybrid_cut is not None and sem.hybrid_cut >= sem.cut
    assert "dev split" in sem.calibration["calibrated_on"]


def test_semantic_stage_puts_clear_texts_in_their_topic_and_off_topic_nowhere():
    texts = [
        "Starting Monday the governor requires everyone to cover their face inside all public buildings.",
        "Dr. Fauci should be fired.",
        *OFF_TOPIC,
        "Our kids are learning on Zoom from the kitchen table because classrooms are closed.",
    ]
    stage = SemanticTagStage("covid", mode="semantic")
    out = stage(_batch(texts, [None, None, None, None, "retweet"]))
    topics = out.column(schema.TOPICS).to_pylist()
    reasons = out.column(schema.REASON).to_pylist()
    assert topics[0] == ["COVID-19 mask mandates and policies"]
    assert topics[1] == ["COVID-19 scientific research and personalities"]
    assert topics[2] == [] and topics[3] == []
    assert reasons[2] == reasons[3] == "no_topic"
    # a row already out of the analysis is not tagged and keeps its reason
    assert topics[4] == [] and reasons[4] == "retweet"
    assert reasons[0] is None and reasons[1] is None


def test_roe_semantic_and_hybrid():
    texts = ["Keep your religion out of my uterus.", "The Supreme Court just struck down Roe v. Wade.", *OFF_TOPIC]
    sem = SemanticTagStage("roe", mode="semantic")(_batch(texts)).column(schema.TOPICS).to_pylist()
    assert sem[0] == ["religious beliefs and abortion"]
    assert sem[1] == ["abortion legal and political debate"]
    assert sem[2] == [] and sem[3] == []
    # hybrid keeps every keyword match (it only adds), and adds nothing to off-topic text
    hyb = SemanticTagStage("roe", mode="hybrid")(_batch(texts)).column(schema.TOPICS).to_pylist()
    kw = TopicTagStage("roe")(_batch(texts)).column(schema.TOPICS).to_pylist()
    for h, k in zip(hyb, kw, strict=True):
        assert set(k) <= set(h)
    assert hyb[2] == [] and hyb[3] == []


def test_hybrid_cut_adds_semantic_topics_to_keyword_matches():
    text = ["we are not going back to back alleys, never again"]
    kw = TopicTagStage("roe")(_batch(text)).column(schema.TOPICS).to_pylist()[0]
    low = SemanticTagStage("roe", mode="hybrid", hybrid_cut=0.3)(_batch(text)).column(schema.TOPICS).to_pylist()[0]
    high = SemanticTagStage("roe", mode="hybrid", hybrid_cut=0.99)(_batch(text)).column(schema.TOPICS).to_pylist()[0]
    assert high == kw
    assert set(kw) < set(low)


def test_gate_rules():
    sims = np.array([[0.5, 0.48, 0.3], [0.2, 0.1, 0.15]], np.float32)
    bg = np.array([[0.1], [0.3]], np.float32)
    out = gate_similarities(sims, bg, 0.0, 0.05)
    assert out[0].tolist() == pytest.approx([0.5, 0.48, -1.0])
    assert (out[1] == -1.0).all()  # nearer to the background than to any topic
    assert gate_similarities(sims, None, None, None) is sims


def test_config_mode_is_validated():
    assert config_from_dict({}).tagging.mode == "keywords"
    assert isinstance(topic_stage(config_from_dict({})), TopicTagStage)
    cfg = config_from_dict({"tagging": {"mode": "hybrid"}})
    stage = topic_stage(cfg)
    assert isinstance(stage, SemanticTagStage) and stage.mode == "hybrid" and stage.resources.actor
    with pytest.raises(ConfigError, match="tagging.mode: 'fuzzy' is not one of keywords, semantic, hybrid"):
        config_from_dict({"tagging": {"mode": "fuzzy"}})
    with pytest.raises(ConfigError, match="tagging.cut"):
        config_from_dict({"tagging": {"mode": "semantic", "cut": 1.5}})
    with pytest.raises(ConfigError, match="unknown key tagging.cutoff"):
        config_from_dict({"tagging": {"cutoff": 0.5}})


def test_semantic_mode_with_own_taxonomy_needs_exemplars(tmp_path):
    tax = tmp_path / "tax.yaml"
    tax.write_text("dataset: pets\nissues:\n  - name: Pets\n    topics:\n      - name: cats\n        keywords: [cat]\n      - name: dogs\n        keywords: [dog]\n")
    with pytest.raises(ConfigError, match="set tagging.exemplars"):
        config_from_dict({"taxonomy": str(tax), "tagging": {"mode": "semantic"}})
    ex = tmp_path / "ex.yaml"
    ex.write_text("dataset: pets\ntopics:\n  - name: cats\n    description: Cats.\n    exemplars: [My cat purrs.]\n")
    with pytest.raises(ConfigError, match=r"no description for topic\(s\) \['dogs'\]"):
        config_from_dict({"taxonomy": str(tax), "tagging": {"mode": "semantic", "exemplars": str(ex)}})
    ex.write_text(ex.read_text() + "  - name: dogs\n    description: Dogs.\n    exemplars: [My dog barks.]\n")
    with pytest.raises(ConfigError, match="no calibrated cut"):
        topic_stage(config_from_dict({"taxonomy": str(tax), "tagging": {"mode": "semantic", "exemplars": str(ex)}})).setup()
    ex.write_text(ex.read_text() + "calibration: {top_delta: 0.0}\n")
    cfg = config_from_dict({"taxonomy": str(tax), "tagging": {"mode": "semantic", "exemplars": str(ex), "cut": 0.4, "hybrid_cut": 0.6}})
    out = topic_stage(cfg)(_batch(["my cat purrs all night", "my dog barks at the mailman"]))
    assert out.column(schema.TOPICS).to_pylist() == [["cats"], ["dogs"]]


def _tag(capsys, *args: str) -> list[dict]:
    assert main(["tag", *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_explain_keywords_names_keyword_and_context_gate(capsys, tmp_path):
    tax = tmp_path / "tax.yaml"
    tax.write_text(
        "dataset: pets\ncontext: [pet]\nissues:\n  - name: Pets\n    topics:\n"
        "      - name: cats\n        keywords: [kitten]\n        context_keywords: [purr]\n"
        "      - name: dogs\n        keywords: [puppy]\n        fallback_keywords: [bark]\n"
    )
    rows = _tag(capsys, "--dataset", "covid", "--taxonomy", str(tax), "--explain", "a #kitten", "my pet will purr", "the purr of an engine", "the pet would bark")
    assert rows[0]["why"] == {"cats": [{"keyword": "kitten"}]}
    assert rows[1]["why"] == {"cats": [{"context_keyword": "purr", "gate": {"context": "pet"}}]}
    assert rows[2]["topics"] == [] and rows[2]["why"] == {}
    assert rows[3]["why"]["dogs"][0]["fallback_keyword"] == "bark"
    assert rows[3]["why"]["dogs"][0]["gate"] == {"context": "pet"}


def test_explain_builtin_keywords(capsys):
    (row,) = _tag(capsys, "--dataset", "covid", "--explain", "The mask mandate starts today")
    assert "COVID-19 mask mandates and policies" in row["topics"]
    assert {"keyword": "mask mandate"} in row["why"]["COVID-19 mask mandates and policies"]
    (plain,) = _tag(capsys, "--dataset", "covid", "The mask mandate starts today")
    assert "why" not in plain and plain["topics"] == row["topics"]


def test_explain_semantic_gives_nearest_exemplar_and_similarity(capsys):
    rows = _tag(capsys, "--dataset", "roe", "--mode", "semantic", "--explain", "Keep your religion out of my uterus.", OFF_TOPIC[0])
    (why,) = rows[0]["why"]["religious beliefs and abortion"]
    assert why["exemplar"] == "Keep your religion out of my uterus."
    assert why["similarity"] == pytest.approx(1.0, abs=1e-3) and why["cut"] == load_semantic("roe").cut
    assert rows[1] == {"text": OFF_TOPIC[0], "topics": [], "why": {}}
