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
STAGE_ERROR = "stage_error"  # reason prefix of a row a stage failed on (quarantined: "stage_error:<stage>:<error>")
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


HUMAN_PREFIX = "human:"
MODEL_PREFIX = "model:"


def model_label(model_id: str) -> str:
    """Label of a model across its prompting modes (a contrast of two modes): ``model:<id>``, no mode.
    Not a subject: :func:`parse_model_subject` would read its last ``:`` part as a mode."""
    return f"{MODEL_PREFIX}{model_id}"


def is_model_subject(subject: str) -> bool:
    return subject.startswith(MODEL_PREFIX)


def parse_model_subject(subject: str) -> tuple[str, str]:
    """(model id, mode) of a model subject; model ids may contain ':'."""
    if not is_model_subject(subject):
        raise ValueError(f"not a model subject: {subject!r}")
    model_id, _, mode = subject[len(MODEL_PREFIX) :].rpartition(":")
    return model_id, mode


def human_subjects(groups: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Subject strings of an Arrow column of groups (vectorised :func:`human_subject`)."""
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(pa.scalar(HUMAN_PREFIX), groups, "")


# Prompting modes of Table 3: the model's default voice and the two steered ones.
PROMPT_MODES: tuple[str, ...] = ("default", "liberal", "conservative")

# The generation plan: one row per response to generate (generation/plan.py builds it).
PLAN_SCHEMA = pa.schema(
    [
        ("plan_id", pa.string()),
        ("model", pa.string()),
        ("kind", pa.string()),
        ("dataset", pa.string()),
        ("topic", pa.string()),
        ("mode", pa.string()),
        ("index", pa.int32()),
        ("template_index", pa.int32()),
        ("prompt", pa.string()),
        ("row_seed", pa.int64()),
    ]
)

# What generation adds to a plan row (stages/generate.py); the generations table is both.
GENERATION_OUTPUT_FIELDS: tuple[pa.Field, ...] = (
    pa.field("text", pa.string()),
    pa.field("finish_reason", pa.string()),
    pa.field("prompt_tokens", pa.int32()),
    pa.field("completion_tokens", pa.int32()),
    pa.field("error", pa.string()),
)
GENERATIONS_SCHEMA = pa.schema(list(PLAN_SCHEMA) + list(GENERATION_OUTPUT_FIELDS))


def scores_schema(dimensions: tuple[str, ...] | list[str], with_user: bool = False) -> pa.Schema:
    """The per-text score table (``scores/human``, ``scores/model``): one row per scored text."""
    fields = [
        pa.field("text_id", pa.string()),
        pa.field("dataset", pa.string()),
        pa.field(SUBJECT, pa.string()),
        pa.field(TOPICS, pa.list_(pa.string())),
    ]
    if with_user:
        fields.append(pa.field(USER_ID, pa.string()))
    fields += [pa.field(score_column(d), pa.list_(pa.float32(), len(DIMENSIONS[d]))) for d in dimensions]
    return pa.schema(fields)


def score_table(columns: dict[str, pa.Array | pa.ChunkedArray], dimensions: tuple[str, ...] | list[str]) -> pa.Table:
    """A score table with the declared schema (``scores_schema``); a wrong column type fails here."""
    sch = scores_schema(dimensions, with_user=USER_ID in columns)
    return pa.table({f.name: columns[f.name] for f in sch}, schema=sch)
