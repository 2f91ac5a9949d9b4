"""Precision and recall of topic tagging against hand-labelled tweets.

The labelled set lives outside the package (``tests/data/tagging_eval/``: ``covid.jsonl``,
``roe.jsonl``, ``negatives.jsonl``; guidelines in its README). Each row has ``text``, ``dataset``
(``covid``, ``roe`` or ``negative``), ``topics`` (topic names of Tables 1-2, ``[]`` for none) and
``split`` (``dev`` or ``test``). A dataset's evaluation rows are its own tweets plus the off-topic
negatives; labels of the other dataset's taxonomy are ignored.

Scores are micro-averaged counts per topic and per issue: a tweet counts for an issue when at
least one of its topics (labelled, resp. predicted) belongs to the issue.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from affalign.errors import ConfigError
from affalign.taxonomy import Taxonomy

FILES = {"covid": "covid.jsonl", "roe": "roe.jsonl"}
NEGATIVES = "negatives.jsonl"


@dataclass
class Score:
    """True positives, false positives and false negatives of one topic or issue."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def labelled(self) -> int:
        return self.tp + self.fn

    @property
    def predicted(self) -> int:
        return self.tp + self.fp

    @property
    def precision(self) -> float | None:
        return self.tp / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        return self.tp / self.labelled if self.labelled else None

    def count(self, labelled: bool, predicted: bool) -> None:
        """Add one decision: a true positive, a false positive, a miss, or nothing (true negative)."""
        if labelled and predicted:
            self.tp += 1
        elif predicted:
            self.fp += 1
        elif labelled:
            self.fn += 1


@dataclass
class Report:
    """Scores of one taxonomy on one split."""

    dataset: str
    split: str
    n_rows: int
    topics: dict[str, Score] = field(default_factory=dict)
    issues: dict[str, Score] = field(default_factory=dict)
    any_issue: Score = field(default_factory=Score)
    # (row id, text, labelled topics, predicted topics) of every row with a disagreement
    errors: list[tuple[str, str, list[str], list[str]]] = field(default_factory=list)


def load_rows(eval_dir: str | Path, dataset: str, split: str | None = None) -> list[dict]:
    """A dataset's labelled rows plus the negatives, optionally one split (``dev``/``test``)."""
    if dataset not in FILES:
        raise ConfigError(f"no labelled set for dataset {dataset!r} (have {sorted(FILES)})")
    eval_dir = Path(eval_dir)
    rows: list[dict] = []
    for name in (FILES[dataset], NEGATIVES):
        path = eval_dir / name
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                row = json.loads(line)
                for key in ("id", "text", "topics", "split"):
                    if key not in row:
                        raise ConfigError(f"{path}:{n}: missing field {key!r}")
                if split is None or row["split"] == split:
                    rows.append(row)
    return rows


def evaluate(
    taxonomy: Taxonomy,
    rows: Sequence[dict],
    tag: Callable[[list[str]], Iterable[Sequence[str]]],
    split: str = "all",
) -> Report:
    """Score ``tag`` (texts -> topic names per text) on labelled rows."""
    names = set(taxonomy.topic_names)
    issue_of = {t.name: t.issue for t in taxonomy.topics}
    report = Report(dataset=taxonomy.dataset, split=split, n_rows=len(rows))
    report.topics = {t: Score() for t in taxonomy.topic_names}
    report.issues = {i: Score() for i in taxonomy.issues}
    predicted_all = list(tag([r["text"] for r in rows]))
    for row, predicted in zip(rows, predicted_all, strict=True):
        gold = {t for t in row["topics"] if t in names}
        pred = set(predicted)
        for t in gold | pred:
            report.topics[t].count(t in gold, t in pred)
        gi = {issue_of[t] for t in gold}
        pi = {issue_of[t] for t in pred}
        for i in gi | pi:
            report.issues[i].count(i in gi, i in pi)
        report.any_issue.count(bool(gi), bool(pi))
        if gold != pred:
            order = taxonomy.topic_names
            report.errors.append((row["id"], row["text"], sorted(gold, key=order.index), sorted(pred, key=order.index)))
    return report


def has_subject_word(taxonomy: Taxonomy, texts: Sequence[str]) -> list[bool]:
    """Per text: does it hold a context term or a strong keyword (what opens the context gate)?

    Keyword tagging cannot file a tweet that has neither (e.g. a reply cut at 140 characters before
    the word "abortion"); recall restricted to tweets that have one separates that limit of the
    method from gaps in the keyword lists. The paper's corpora were collected by keyword search, so
    every tweet in them has such a word.
    """
    import ahocorasick
    import pyarrow as pa

    from affalign.tagging.keywords import normalize_terms, normalize_texts, term_patterns

    terms = [*taxonomy.context, *(kw for t in taxonomy.topics for kw in t.keywords)]
    norms = normalize_terms(terms)
    automaton = ahocorasick.Automaton()
    for term in terms:
        for pattern in term_patterns(term, norms[term]):
            automaton.add_word(pattern, 1)
    automaton.make_automaton()
    normalized = normalize_texts(pa.array(list(texts), pa.string())).to_pylist()
    return [bool(t) and next(automaton.iter(t), None) is not None for t in normalized]


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def format_table(report: Report, min_labelled: int = 0) -> str:
    """Markdown table: issues first, then topics (those with ``min_labelled`` labelled tweets or more)."""
    lines = [
        f"**{report.dataset}**, {report.split} split ({report.n_rows} tweets incl. negatives)",
        "",
        "| level | name | labelled | tagged | precision | recall |",
        "|---|---|---:|---:|---:|---:|",
    ]
    s = report.any_issue
    lines.append(f"| any issue | (any of the five) | {s.labelled} | {s.predicted} | {_fmt(s.precision)} | {_fmt(s.recall)} |")
    for name, s in report.issues.items():
        lines.append(f"| issue | {name} | {s.labelled} | {s.predicted} | {_fmt(s.precision)} | {_fmt(s.recall)} |")
    for name, s in report.topics.items():
        if s.labelled >= min_labelled:
            lines.append(f"| topic | {name} | {s.labelled} | {s.predicted} | {_fmt(s.precision)} | {_fmt(s.recall)} |")
    return "\n".join(lines)
