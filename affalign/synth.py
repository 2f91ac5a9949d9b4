"""Synthetic tweet corpora in the input contract, at any size, deterministic by seed.

Texts are built from the taxonomy's keywords (so they get topics), neutral filler words and
affect cue words from the shipped lexicon. Each (topic, group) has planted per-label rates: a
text of that topic and group carries a cue word of a label with that label's rate. With the
``lexicon`` scorer and the ``threshold`` reduce, the job must therefore recover
``normalise(rates)`` for every (topic, group) — the planted truth, written to ``_truth.json``.

Only topics with a *signature* keyword (one that tags that topic alone) are generated, so that
every text belongs to exactly one topic and the truth is exact.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from affalign.rundir import filesystem
from affalign.schema import DIMENSIONS
from affalign.scorers.lexicon import load_lexicon
from affalign.tagging.keywords import KeywordMatcher
from affalign.taxonomy import load_taxonomy

FILLER = (
    "the people are talking about this today and i think we need to see what happens next "
    "honestly my neighbor said it again at work this morning so here we go folks "
    "just read a thread on it everyone keeps posting the same thing this week "
    "what do you all think about it can somebody explain the details please"
).split()
OFF_TOPIC = [
    "just made pancakes for breakfast",
    "the game last night went to overtime",
    "new episode of my favorite show drops friday",
    "traffic on the highway is terrible again",
    "cannot believe how cold it got this weekend",
    "my cat knocked the plant off the shelf",
]
BAD_KINDS = ("null_text", "empty_text", "null_tweet_id", "null_user_id", "duplicate_tweet_id", "unknown_group")


@dataclass
class SynthSpec:
    dataset: str = "covid"
    rows: int = 10_000
    seed: int = 0
    groups: tuple[str, ...] = ("liberal", "conservative")
    bad_fraction: float = 0.0
    retweet_fraction: float = 0.08
    quote_fraction: float = 0.04
    off_topic_fraction: float = 0.1
    rows_per_shard: int = 1_000_000
    format: str = "parquet"
    taxonomy: str | None = None


def _clean_words(words: list[str], matcher: KeywordMatcher) -> list[str]:
    return [w for w in words if not matcher.tag([w])[0]]


def _neutral_next_to_keywords(words: list[str], sigs: dict[str, list[str]], matcher: KeywordMatcher) -> list[str]:
    """Filler words that do not change a signature keyword's topics when written next to it.

    A filler word can complete a phrase of the taxonomy ("masks" + "work" is "masks work"); such a
    word would give some texts a second topic and make the planted truth inexact.
    """
    pairs = [(w, topic, text) for w in words for topic, kws in sigs.items() for kw in kws for text in (f"{kw} {w}", f"{w} {kw}")]
    tagged = matcher.tag([text for _, _, text in pairs])
    bad = {w for (w, topic, _), got in zip(pairs, tagged, strict=True) if got != [topic]}
    return [w for w in words if w not in bad]


def signature_keywords(matcher: KeywordMatcher) -> dict[str, list[str]]:
    """For each topic, its keywords that tag that topic and no other."""
    out: dict[str, list[str]] = {}
    for topic in matcher.taxonomy.topics:
        sig = [kw for kw in topic.keywords if matcher.tag([kw])[0] == [topic.name]]
        if sig:
            out[topic.name] = sig
    return out


def planted_rates(topics: list[str], groups: tuple[str, ...], seed: int) -> dict[str, np.ndarray]:
    """Per dimension a (topic, group, label) array of planted cue rates in [0.03, 0.45]."""
    rng = np.random.default_rng([seed, 7])
    rates = {}
    for dim, labels in DIMENSIONS.items():
        base = rng.uniform(0.03, 0.45, size=(len(topics), 1, len(labels)))
        shift = rng.uniform(-0.12, 0.12, size=(len(topics), len(groups), len(labels)))
        rates[dim] = np.clip(base + shift, 0.03, 0.45)
    return rates


def _expected(rate_row: np.ndarray) -> list[float]:
    v = rate_row / rate_row.sum()
    return [float(x) for x in v]


def synthesize(spec: SynthSpec, out: str) -> dict:
    """Write the corpus as shards under ``out`` (local dir or s3://) and return its truth."""
    tax = load_taxonomy(spec.taxonomy or spec.dataset)
    matcher = KeywordMatcher(tax)
    sigs = signature_keywords(matcher)
    topics = [t for t in tax.topic_names if t in sigs]
    lex = load_lexicon()
    cues = {dim: [_clean_words(list(lex[dim][label]), matcher) for label in labels] for dim, labels in DIMENSIONS.items()}
    for dim, per_label in cues.items():
        for label, words in zip(DIMENSIONS[dim], per_label, strict=True):
            if not words:
                raise ValueError(f"every cue word of {dim}.{label} tags a topic of {tax.dataset}")
    cue_words = {w for per_dim in lex.values() for words in per_dim.values() for w in words}
    filler = [w for w in _clean_words(sorted(set(FILLER)), matcher) if w not in cue_words]
    filler = _neutral_next_to_keywords(filler, sigs, matcher)
    off_topic = [t for t in OFF_TOPIC if not matcher.tag([t])[0]]
    rates = planted_rates(topics, spec.groups, spec.seed)
    fs, root = filesystem(out)
    fs.create_dir(root, recursive=True)
    n_shards = max(1, -(-spec.rows // spec.rows_per_shard))
    counts = {k: 0 for k in BAD_KINDS}
    counts.update(retweet=0, quote=0, off_topic=0)
    next_id = 10**15
    for shard in range(n_shards):
        n = min(spec.rows_per_shard, spec.rows - shard * spec.rows_per_shard)
        rng = np.random.default_rng([spec.seed, shard])
        table, shard_counts = _shard(rng, n, next_id, spec, topics, sigs, cues, rates, filler, off_topic)
        next_id += n
        for k, v in shard_counts.items():
            counts[k] += v
        name = f"part-{shard:05d}.{ {'parquet': 'parquet', 'jsonl': 'jsonl', 'csv': 'csv'}[spec.format] }"
        path = posixpath.join(root, name)
        with fs.open_output_stream(path) as f:
            if spec.format == "parquet":
                pq.write_table(table, f, compression="zstd")
            elif spec.format == "jsonl":
                for row in table.to_pylist():
                    f.write((json.dumps(row) + "\n").encode())
            else:
                import pyarrow.csv as pacsv

                pacsv.write_csv(table, f)
    truth = {
        "dataset": tax.dataset,
        "rows": spec.rows,
        "seed": spec.seed,
        "groups": list(spec.groups),
        "topics": topics,
        "counts": counts,
        "expected_threshold_distributions": [
            {"topic": t, "group": g, "dimension": dim, "labels": list(DIMENSIONS[dim]), "values": _expected(rates[dim][i, j])}
            for dim in DIMENSIONS
            for i, t in enumerate(topics)
            for j, g in enumerate(spec.groups)
        ],
    }
    with fs.open_output_stream(posixpath.join(root, "_truth.json")) as f:
        f.write(json.dumps(truth, indent=1).encode())
    return truth


def _shard(rng, n, first_id, spec, topics, sigs, cues, rates, filler, off_topic):
    n_groups = len(spec.groups)
    topic_idx = rng.integers(0, len(topics), n)
    group_idx = rng.integers(0, n_groups, n)
    kind = rng.random(n)
    is_off = kind < spec.off_topic_fraction
    is_rt = (kind >= spec.off_topic_fraction) & (kind < spec.off_topic_fraction + spec.retweet_fraction)
    lo = spec.off_topic_fraction + spec.retweet_fraction
    is_qt = (kind >= lo) & (kind < lo + spec.quote_fraction)
    texts: list[str | None] = []
    fill = np.array(filler, dtype=object)
    for i in range(n):
        words = list(fill[rng.integers(0, len(fill), 3)])
        if is_off[i]:
            words.append(off_topic[rng.integers(0, len(off_topic))])
        else:
            t, g = topic_idx[i], group_idx[i]
            kws = sigs[topics[t]]
            kw = kws[rng.integers(0, len(kws))]
            words.insert(int(rng.integers(0, 4)), kw)
            for dim, per_label in cues.items():
                hits = rng.random(len(per_label)) < rates[dim][t, g]
                for j in np.flatnonzero(hits):
                    opts = per_label[j]
                    words.append(opts[rng.integers(0, len(opts))])
        texts.append(" ".join(words).capitalize())
    ids: list[int | None] = list(range(first_id, first_id + n))
    users = [f"u{int(x)}" for x in rng.integers(0, max(10, n // 20), n)]
    party: list[str | None] = [spec.groups[j] for j in group_idx]
    counts = {k: 0 for k in BAD_KINDS}
    counts.update(retweet=int(is_rt.sum()), quote=int((is_qt & ~is_rt).sum()), off_topic=int(is_off.sum()))
    if spec.bad_fraction > 0:
        # bad rows are chosen among on-topic originals so that each has exactly one reason
        candidates = np.flatnonzero(~is_off & ~is_rt & ~is_qt)
        n_bad = min(len(candidates), int(round(spec.bad_fraction * n)))
        chosen = rng.choice(candidates, size=n_bad, replace=False) if n_bad else []
        for k, i in enumerate(sorted(chosen)):
            bad = BAD_KINDS[k % len(BAD_KINDS)]
            if bad == "duplicate_tweet_id":
                earlier = next((ids[j] for j in range(i - 1, -1, -1) if ids[j] is not None), None)
                if earlier is None:
                    continue
                ids[i] = earlier
            counts[bad] += 1
            if bad == "null_text":
                texts[i] = None
            elif bad == "empty_text":
                texts[i] = "   "
            elif bad == "null_tweet_id":
                ids[i] = None
            elif bad == "null_user_id":
                users[i] = None
            elif bad == "unknown_group":
                party[i] = "independent"
    table = pa.table(
        {
            "tweet_id": pa.array(ids, pa.int64()),
            "user_id": pa.array(users, pa.string()),
            "text": pa.array(texts, pa.string()),
            "created_at": pa.array(["2021-03-01T12:00:00Z"] * n, pa.string()),
            "is_retweet": pa.array(is_rt, pa.bool_()),
            "is_quote": pa.array(is_qt & ~is_rt, pa.bool_()),
            "party": pa.array(party, pa.string()),
        }
    )
    return table, counts
