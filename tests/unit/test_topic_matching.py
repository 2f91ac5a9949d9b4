"""KeywordMatcher and TopicTagStage behaviour on small inline taxonomies."""

from __future__ import annotations

import pyarrow as pa
import pytest
import yaml

from affalign import schema
from affalign.stages.topics import TopicTagStage
from affalign.tagging.keywords import KeywordMatcher, normalize_texts, term_patterns
from affalign.taxonomy import parse_taxonomy

MASKING = "mask usage"
MANDATES = "mask mandates"
SCHOOLS = "school closures"
ROE = "roe"
SHARED = "shared"

DOC = {
    "dataset": "test",
    "context": ["covid", "pandemic", "covid-19"],
    "issues": [
        {
            "name": "Masking",
            "topics": [
                {"name": MASKING, "keywords": ["mask", "anti-masker", "face covering"]},
                {"name": MANDATES, "keywords": ["mask mandate", "Stay-at-Home Order"]},
            ],
        },
        {
            "name": "Education",
            "topics": [
                {
                    "name": SCHOOLS,
                    "keywords": ["school closures", "remote learning"],
                    "context_keywords": ["school", "closed"],
                },
            ],
        },
        {
            "name": "Other",
            "topics": [
                {"name": ROE, "keywords": ["#RoeVWade", "women's rights", "pro-life", "café", "коронавирус"]},
                {"name": SHARED, "keywords": ["remote learning"], "context_keywords": ["lessons"]},
            ],
        },
    ],
}


def taxonomy(doc=DOC):
    return parse_taxonomy(doc, "inline")


@pytest.fixture(scope="module")
def matcher():
    return KeywordMatcher(taxonomy())


def tag(matcher, text):
    return matcher.tag([text])[0]


# --- normalisation ------------------------------------------------------------------------------


def test_normalize_texts_lowercases_collapses_separators_and_pads():
    out = normalize_texts(pa.array(["Don't  wear MASKS!! #MaskUp 😷", "a\tb\nc", None, ""])).to_pylist()
    # the trailing emoji becomes a separator, then the padding is added
    assert out == [" don t wear masks #maskup  ", " a b c ", None, "  "]


def test_term_patterns_cover_the_word_and_its_hashtag():
    assert term_patterns("Mask Mandate") == {" mask mandate ", " #maskmandate "}
    assert term_patterns("pro-life") == {" pro life ", " #prolife "}
    assert term_patterns("#RoeVWade") == {" #roevwade "}
    assert term_patterns("!!!") == set()


# --- case and word boundaries -------------------------------------------------------------------


@pytest.mark.parametrize("text", ["mask", "MASK", "Mask", "mAsK", "wear a MASK please"])
def test_matching_is_case_insensitive(matcher, text):
    assert tag(matcher, text) == [MASKING]


def test_keywords_written_in_capitals_match_lowercase_text(matcher):
    assert tag(matcher, "the new stay at home order starts today") == [MANDATES]


@pytest.mark.parametrize(
    "text",
    [
        "mask.",
        "(mask)",
        "mask!",
        "'mask'",
        '"mask"',
        "mask,mandate?",
        "mask\n",
        "...mask...",
        "mask😷",
        "😷mask😷",
        "¡mask!",
    ],
)
def test_punctuation_and_emoji_are_word_boundaries(matcher, text):
    assert MASKING in tag(matcher, text)


@pytest.mark.parametrize(
    "text",
    ["masks", "unmasked", "masking", "maskless", "damask", "remask", "mask_up", "mask2", "#masks", "#maskup"],
)
def test_a_keyword_does_not_match_inside_another_word(matcher, text):
    assert tag(matcher, text) == []


def test_plural_keyword_does_not_match_the_singular():
    m = KeywordMatcher(
        taxonomy({"dataset": "t", "issues": [{"name": "I", "topics": [{"name": "T", "keywords": ["masks"]}]}]})
    )
    assert m.tag(["masks", "mask", "MASKS!"]) == [["T"], [], ["T"]]


# --- hashtags -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["#mask", "#MASK", "#Mask today", "so #mask."])
def test_a_word_matches_its_hashtag(matcher, text):
    assert tag(matcher, text) == [MASKING]


@pytest.mark.parametrize("text", ["#MaskMandate", "#maskmandate", "ugh #MASKMANDATE!!"])
def test_a_phrase_matches_its_joined_hashtag(matcher, text):
    assert tag(matcher, text) == [MANDATES]


def test_joined_hashtag_must_be_the_whole_phrase(matcher):
    assert tag(matcher, "#maskmandates") == []
    assert tag(matcher, "#mandatemask") == []


def test_hyphenated_keyword_matches_spaced_hyphenated_and_hashtag_forms(matcher):
    for text in ("stay-at-home order", "stay at home order", "#StayAtHomeOrder", "STAY-AT-HOME ORDER"):
        assert tag(matcher, text) == [MANDATES], text
    assert tag(matcher, "I'm pro-life") == [ROE]
    assert tag(matcher, "#ProLife") == [ROE]
    assert tag(matcher, "pro life") == [ROE]


def test_a_hashtag_keyword_matches_only_the_hashtag(matcher):
    assert tag(matcher, "#RoeVWade") == [ROE]
    assert tag(matcher, "#roevwade overturned") == [ROE]
    assert tag(matcher, "roevwade") == []
    assert tag(matcher, "roe v wade") == []


# --- phrases ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "mask mandate",
        "the MASK MANDATE ends",
        "mask   mandate",
        "mask\tmandate",
        "mask\nmandate",
        "mask-mandate",
        "mask\u00a0mandate",
    ],
)
def test_a_phrase_matches_across_any_run_of_separators(matcher, text):
    assert MANDATES in tag(matcher, text)


@pytest.mark.parametrize("text", ["mandate mask", "mask the mandate", "maskmandate", "mask mandates"])
def test_a_phrase_needs_its_words_in_order_and_whole(matcher, text):
    assert MANDATES not in tag(matcher, text)


def test_apostrophes_straight_and_curly_and_the_hashtag_form(matcher):
    for text in ("women's rights", "WOMEN’S RIGHTS", "#WomensRights", "for women's  rights!"):
        assert tag(matcher, text) == [ROE], text


def test_unicode_letters_are_word_characters(matcher):
    assert tag(matcher, "Le CAFÉ est fermé") == [ROE]
    assert tag(matcher, "#café") == [ROE]
    assert tag(matcher, "cafés") == []
    assert tag(matcher, "КОРОНАВИРУС!") == [ROE]
    assert tag(matcher, "коронавирусы") == []


# --- multi-label and ordering -------------------------------------------------------------------


def test_a_text_gets_every_topic_whose_keywords_it_contains_in_taxonomy_order(matcher):
    text = "#RoeVWade and the mask mandate, plus remote learning, and wear a mask"
    assert tag(matcher, text) == [MASKING, MANDATES, SCHOOLS, ROE, SHARED]


def test_overlapping_keywords_both_count(matcher):
    # "mask" (one topic) lies inside "mask mandate" (another).
    assert tag(matcher, "mask mandate") == [MASKING, MANDATES]


def test_a_keyword_listed_under_two_topics_tags_both(matcher):
    assert tag(matcher, "remote learning") == [SCHOOLS, SHARED]


def test_repeated_keywords_give_the_topic_once(matcher):
    assert tag(matcher, "mask mask MASK #mask") == [MASKING]


def test_results_are_aligned_with_inputs(matcher):
    texts = ["nothing here", "mask", None, "", "mask mandate", "   ", "!!!"]
    assert matcher.tag(texts) == [[], [MASKING], [], [], [MASKING, MANDATES], [], []]
    assert matcher.tag([]) == []


def test_tag_normalized_agrees_with_tag(matcher):
    texts = ["Mask mandate!", "school closed (covid)", None, "#RoeVWade"]
    normalized = normalize_texts(pa.array(texts, pa.string())).to_pylist()
    assert matcher.tag_normalized(normalized) == matcher.tag(texts)


# --- context keywords ---------------------------------------------------------------------------


def test_context_keyword_alone_tags_nothing(matcher):
    assert tag(matcher, "the school play is tonight") == []
    assert tag(matcher, "school closed for snow") == []


@pytest.mark.parametrize(
    "text",
    [
        "school closed because of covid",
        "COVID: school closed",
        "school closed #covid",
        "school closed due to the pandemic",
        "school closed, covid-19 cases rising",
        "#COVID19 school",
    ],
)
def test_context_keyword_counts_with_a_context_term(matcher, text):
    assert tag(matcher, text) == [SCHOOLS]


def test_context_keyword_counts_with_a_strong_keyword_of_any_topic(matcher):
    assert tag(matcher, "school is closed and so is the mask mandate") == [MASKING, MANDATES, SCHOOLS]
    assert tag(matcher, "#RoeVWade school") == [SCHOOLS, ROE]


def test_context_terms_alone_and_weak_words_together_tag_nothing(matcher):
    assert tag(matcher, "covid pandemic covid-19") == []
    assert tag(matcher, "school closed, lessons") == []


def test_context_terms_also_need_whole_words(matcher):
    assert tag(matcher, "school closed by covidiots") == []
    assert tag(matcher, "school closed #covidvaccine") == []


def test_a_weak_keyword_unlocks_every_weak_topic_once_context_is_there(matcher):
    assert tag(matcher, "covid: school closed and lessons cancelled") == [SCHOOLS, SHARED]
    assert tag(matcher, "#RoeVWade lessons") == [ROE, SHARED]


def test_taxonomy_without_context_uses_strong_keywords_only():
    doc = {
        "dataset": "t",
        "issues": [
            {
                "name": "I",
                "topics": [{"name": "A", "keywords": ["vaccine mandate"]}, {"name": "B", "context_keywords": ["shot"]}],
            }
        ],
    }
    m = KeywordMatcher(taxonomy(doc))
    assert m.tag(["got my shot", "vaccine mandate, got my shot", "vaccine mandate"]) == [[], ["A", "B"], ["A"]]


def test_a_term_that_is_strong_in_one_topic_and_weak_in_another_tags_both():
    doc = {
        "dataset": "t",
        "issues": [
            {
                "name": "I",
                "topics": [{"name": "A", "keywords": ["mandate"]}, {"name": "B", "context_keywords": ["mandate"]}],
            }
        ],
    }
    assert KeywordMatcher(taxonomy(doc)).tag(["mandate", "mandates"]) == [["A", "B"], []]


# --- odd inputs and big taxonomies --------------------------------------------------------------


def test_keywords_that_normalise_to_nothing_are_ignored():
    doc = {"dataset": "t", "issues": [{"name": "I", "topics": [{"name": "A", "keywords": ["!!!", "😷", "mask"]}]}]}
    m = KeywordMatcher(taxonomy(doc))
    assert m.tag(["!!!", "😷", "   ", "mask"]) == [[], [], [], ["A"]]


def test_more_topics_than_a_machine_word_has_bits():
    topics = [{"name": f"t{i}", "keywords": [f"word{i}"]} for i in range(150)]
    m = KeywordMatcher(taxonomy({"dataset": "t", "issues": [{"name": "I", "topics": topics}]}))
    assert m.tag(["word149", "word0 word64 word128", "word150"]) == [["t149"], ["t0", "t64", "t128"], []]


def test_long_text_with_many_matches(matcher):
    text = " ".join(["filler words here"] * 2000 + ["mask mandate"] + ["more filler"] * 2000)
    assert tag(matcher, text) == [MASKING, MANDATES]


# --- TopicTagStage ------------------------------------------------------------------------------


@pytest.fixture()
def stage(tmp_path):
    path = tmp_path / "tax.yaml"
    path.write_text(yaml.safe_dump(DOC, allow_unicode=True), encoding="utf-8")
    return TopicTagStage(str(path))


def batch(texts, reasons, **extra):
    cols = {
        "tweet_id": pa.array([str(i) for i in range(len(texts))]),
        schema.TEXT: pa.array(texts, pa.string()),
        schema.REASON: pa.array(reasons, pa.string()),
    }
    cols.update(extra)
    return pa.table(cols)


def test_stage_tags_live_rows_and_marks_rows_without_topic(stage):
    out = stage(
        batch(
            ["mask mandate", "mask mandate", "nothing to see", "school closed #covid", None],
            [None, "retweet", None, None, None],
        )
    )
    assert out.column(schema.TOPICS).to_pylist() == [[MASKING, MANDATES], [], [], [SCHOOLS], []]
    # A row already out of the analysis keeps its reason and gets no topics.
    assert out.column(schema.REASON).to_pylist() == [None, "retweet", "no_topic", None, "no_topic"]
    assert out.column("tweet_id").to_pylist() == ["0", "1", "2", "3", "4"]
    assert out.schema.field(schema.TOPICS).type == pa.list_(pa.string())
    assert out.schema.field(schema.REASON).type == pa.string()


def test_stage_keeps_every_existing_reason(stage):
    reasons = ["null_user_id", "duplicate_tweet_id", "quote", "not_sampled"]
    out = stage(batch(["mask"] * 4, reasons))
    assert out.column(schema.REASON).to_pylist() == reasons
    assert out.column(schema.TOPICS).to_pylist() == [[], [], [], []]


def test_stage_replaces_an_existing_topics_column(stage):
    old = pa.array([["stale"], ["stale"]], pa.list_(pa.string()))
    out = stage(batch(["mask", "nothing"], [None, None], topics=old))
    assert out.column_names.count(schema.TOPICS) == 1
    assert out.column(schema.TOPICS).to_pylist() == [[MASKING], []]
    assert out.column(schema.REASON).to_pylist() == [None, "no_topic"]


def test_stage_handles_chunked_columns(stage):
    part1 = batch(["mask mandate", "nothing"], [None, None])
    part2 = batch(["#RoeVWade", "mask"], [None, "quote"])
    table = pa.concat_tables([part1, part2])
    assert table.column(schema.TEXT).num_chunks == 2
    out = stage(table)
    assert out.column(schema.TOPICS).to_pylist() == [[MASKING, MANDATES], [], [ROE], []]
    assert out.column(schema.REASON).to_pylist() == [None, "no_topic", None, "quote"]


def test_stage_on_an_empty_batch(stage):
    out = stage(batch([], []))
    assert out.num_rows == 0
    assert out.schema.field(schema.TOPICS).type == pa.list_(pa.string())


def test_stage_declares_its_columns_and_requires_reason(stage):
    assert set(TopicTagStage.inputs) == {schema.TEXT, schema.REASON}
    assert TopicTagStage.outputs == (schema.TOPICS,)
    with pytest.raises(KeyError):
        stage(pa.table({schema.TEXT: pa.array(["mask"])}))


def test_column_wise_topics_equal_the_per_text_lists():
    """The stage builds its list<string> column from bit masks; it must equal the per-text lists."""
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    from affalign.synth import SynthSpec, synthesize
    from affalign.tagging.keywords import cached_matcher, normalize_texts

    with tempfile.TemporaryDirectory() as tmp:
        synthesize(SynthSpec(dataset="roe", rows=3_000, seed=9, bad_fraction=0.02), tmp)
        texts = pq.read_table(tmp, columns=["text"]).column("text").to_pylist()
    # pairs of texts joined: multi-topic texts
    texts = pa.array(texts + [f"{a} {b}" for a, b in zip(texts[:500], texts[500:1000], strict=True)], pa.string())
    matcher = cached_matcher("roe")
    normalized = normalize_texts(texts).to_pylist()
    column = matcher.topics_array(matcher.masks_normalized(normalized))
    assert column.type == pa.list_(pa.string())
    expected = matcher.tag_normalized(normalized)
    assert column.to_pylist() == expected
    assert sum(1 for t in expected if t) > 1_000 and any(len(t) > 1 for t in expected)
    assert matcher.topics_array([]).to_pylist() == []


# --- fallback keywords and HTML entities (issue 12) ----------------------------------------------

FALLBACK_DOC = {
    "dataset": "fb",
    "context": ["covid"],
    "issues": [
        {
            "name": "Masking",
            "topics": [
                {"name": "types", "keywords": ["n95"]},
                {"name": "usage", "keywords": ["wear a mask"], "fallback_keywords": ["mask", "masks"]},
                {"name": "mandates", "keywords": ["mask mandate"]},
            ],
        },
        {"name": "Vaccines", "topics": [{"name": "vax", "keywords": ["vaccinated"], "fallback_keywords": ["vaccine"]}]},
    ],
}


@pytest.fixture(scope="module")
def fb_matcher():
    return KeywordMatcher(parse_taxonomy(FALLBACK_DOC, "inline"))


def test_fallback_keyword_fills_an_issue_with_no_other_topic(fb_matcher):
    assert tag(fb_matcher, "so many masks everywhere since covid") == ["usage"]


def test_fallback_keyword_is_context_gated(fb_matcher):
    assert tag(fb_matcher, "halloween masks are sold out") == []


def test_fallback_keyword_adds_nothing_when_the_issue_already_has_a_topic(fb_matcher):
    # "mask" next to "n95": the tweet is about mask types, not (also) usage
    assert tag(fb_matcher, "covid: is an n95 mask better?") == ["types"]
    assert tag(fb_matcher, "the covid mask mandate ends friday, masks off") == ["mandates"]


def test_fallback_is_decided_per_issue(fb_matcher):
    # a Masking topic found does not stop the Vaccines fallback, and a strong keyword opens the gate
    assert tag(fb_matcher, "got an n95 and the vaccine") == ["types", "vax"]


def test_a_strong_keyword_of_the_same_topic_wins_over_its_fallback(fb_matcher):
    assert tag(fb_matcher, "wear a mask, masks save lives") == ["usage"]


def test_a_topic_may_have_only_fallback_keywords():
    doc = {"dataset": "x", "context": ["c"], "issues": [{"name": "I", "topics": [{"name": "t", "fallback_keywords": ["w"]}]}]}
    assert tag(KeywordMatcher(parse_taxonomy(doc, "inline")), "c w") == ["t"]


def test_html_escaped_ampersand_matches_keywords_written_with_ampersand():
    doc = {"dataset": "x", "issues": [{"name": "I", "topics": [{"name": "jj", "keywords": ["J&J vaccine", "church & state"]}]}]}
    m = KeywordMatcher(parse_taxonomy(doc, "inline"))
    assert tag(m, "got the J&amp;J vaccine") == ["jj"]
    assert tag(m, "separation of church &amp; state") == ["jj"]
    assert tag(m, "got the J&J vaccine") == ["jj"]
