"""Column names, label sets and Arrow schemas of every table the job reads or writes."""

from __future__ import annotations

import pyarrow as pa

EMOTION_LABELS: tuple[str, ...] = (
    "anger",
    "anticipation",
    "disgust",
    "fear",
    "joy",
    "love",
    "optimism",
    "pessimism",
    "sadness",
    "surprise",
    "trust",
)
MORAL_LABELS: tuple[str, ...] = (
    "care",
    "harm",
    "fairness",
    "cheating",
    "loyalty",
    "betrayal",
    "authority",
    "subversion",
    "purity",
    "degradation",
)
DIMENSIONS: dict[str, tuple[str, ...]] = {"emotion": EMOTION_LABELS, "moral": MORAL_LABELS}

# Input contract.
TWEET_ID = "tweet_id"
USER_ID = "user_id"
TEXT = "text"
REQUIRED_INPUT_COLUMNS: tuple[str, ...] = (TWEET_ID, USER_ID, TEXT)
OPTIONAL_INPUT_COLUMNS: tuple[str, ...] = ("created_at", "is_retweet", "is_quote")

# Columns the job adds while streaming.
SOURCE_FILE = "_file"  # index into the run's list of input files
SOURCE_ROW = "_row"  # row index within that file
GROUP = "group"  # the author's group, normalised from the configured group column
REASON = "reason"  # null when the row is kept; otherwise why it was rejected or filtered
TOPICS = "topics"  # list<string> of topic names
SUBJECT = "subject"


def score_column(dimension: str) -> str:
    """Name of the fixed-size list column holding one dimension's label probabilities."""
    return f"scores_{dimension}"


# Reasons a row leaves the analysis. "Rejected" rows are bad input and go to rejects/;
# "filtered" rows are valid but outside the analysis by design (counted, not rejected).
REJECT_REASONS: tuple[str, ...] = (
    "null_tweet_id",
    "null_user_id",
    "null_text",
    "text_not_string",
    "empty_text",
    "duplicate_tweet_id",
    "missing_group",
    "unknown_group",
    "unparseable_row",
    "invalid_utf8",
    "text_too_long",
)
FILTER_REASONS: tuple[str, ...] = ("retweet", "quote", "no_topic", "not_sampled", "user_not_labelled")

# Output tables.
DISTRIBUTIONS_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("dimension", pa.string()),
        ("topic", pa.string()),
        ("subject", pa.string()),
        ("label", pa.string()),
        ("value", pa.float64()),
        ("n_texts", pa.int64()),
    ]
)
ALIGNMENT_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("dimension", pa.string()),
        ("topic", pa.string()),
        ("subject", pa.string()),
        ("target", pa.string()),
        ("score", pa.float64()),
    ]
)
SUMMARY_COLUMNS: tuple[str, ...] = (
    "dataset",
    "dimension",
    "subject",
    "target",
    "score_mean",
    "score_std",
    "n_topics",
)


def human_subject(group: str) -> str:
    """Subject string of a group of tweet authors."""
    return f"human:{group}"


def model_subject(model_id: str, mode: str) -> str:
    """Subject string of one model's generations in one prompting mode."""
    return f"model:{model_id}:{mode}"
