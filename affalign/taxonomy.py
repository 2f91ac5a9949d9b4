"""Topic taxonomies: issues, fine-grained topics and their keywords, loaded from data files.

A taxonomy file is YAML::

    dataset: covid
    context: [covid, coronavirus, pandemic, ...]   # terms that mark a text as on the dataset's subject
    issues:
      - name: Masking
        topics:
          - name: COVID-19 mask mandates and policies
            keywords: [mask mandate, "#maskmandate", ...]       # match on their own
            context_keywords: [mandate, ...]                    # match only with a context term
            fallback_keywords: [mask, masks]                    # like context_keywords, and only when no
                                                                # other topic of the same issue matched

Keywords are matched case-insensitively on word boundaries. A single word ``w`` also matches the
hashtag ``#w``; a phrase ``a b`` also matches the hashtag ``#ab``. ``context_keywords`` are for
words that are ambiguous outside the dataset's subject ("mask", "school"): they count only when the
same text also contains one of the taxonomy's ``context`` terms or one of its strong keywords.
``fallback_keywords`` are gated the same way and, in addition, count only when the text got no other
topic of the same issue: a bare "mask" files a tweet under its issue's catch-all topic ("mask usage")
without adding that topic to tweets whose more specific topic ("mask mandates") was found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from affalign.errors import ConfigError

BUILTIN_TAXONOMIES = ("covid", "roe")


@dataclass(frozen=True)
class Topic:
    """One fine-grained topic and the keywords that detect it."""

    name: str
    issue: str
    keywords: tuple[str, ...]
    context_keywords: tuple[str, ...] = ()
    fallback_keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class Taxonomy:
    """A dataset's issues and topics."""

    dataset: str
    topics: tuple[Topic, ...]
    context: tuple[str, ...] = ()
    source: str = ""
    issues: tuple[str, ...] = field(default=())

    @property
    def topic_names(self) -> list[str]:
        return [t.name for t in self.topics]

    def issue_of(self, topic: str) -> str:
        for t in self.topics:
            if t.name == topic:
                return t.issue
        raise KeyError(topic)


def _as_terms(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: expected a list of non-empty strings")
    return tuple(v.strip() for v in value)


def parse_taxonomy(data: object, source: str) -> Taxonomy:
    """Validate a parsed taxonomy document; errors name the file and the offending entry."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a taxonomy must be a mapping with 'dataset' and 'issues'")
    unknown = set(data) - {"dataset", "context", "issues", "description", "provenance"}
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {sorted(unknown)}")
    dataset = data.get("dataset")
    if not isinstance(dataset, str) or not dataset:
        raise ConfigError(f"{source}: 'dataset' must be a non-empty string")
    issues = data.get("issues")
    if not isinstance(issues, list) or not issues:
        raise ConfigError(f"{source}: 'issues' must be a non-empty list")
    topics: list[Topic] = []
    issue_names: list[str] = []
    seen: set[str] = set()
    for i, issue in enumerate(issues):
        if not isinstance(issue, dict) or not isinstance(issue.get("name"), str):
            raise ConfigError(f"{source}: issues[{i}] needs a 'name'")
        issue_names.append(issue["name"])
        for j, topic in enumerate(issue.get("topics") or []):
            where = f"{source}: issues[{i}].topics[{j}]"
            if not isinstance(topic, dict) or not isinstance(topic.get("name"), str):
                raise ConfigError(f"{where} needs a 'name'")
            extra = set(topic) - {"name", "keywords", "context_keywords", "fallback_keywords"}
            if extra:
                raise ConfigError(f"{where}: unknown key(s) {sorted(extra)}")
            name = topic["name"]
            if name in seen:
                raise ConfigError(f"{where}: duplicate topic name {name!r}")
            seen.add(name)
            kws = _as_terms(topic.get("keywords"), f"{where}.keywords")
            ctx = _as_terms(topic.get("context_keywords"), f"{where}.context_keywords")
            fb = _as_terms(topic.get("fallback_keywords"), f"{where}.fallback_keywords")
            if not kws and not ctx and not fb:
                raise ConfigError(f"{where}: topic {name!r} has no keywords")
            topics.append(Topic(name=name, issue=issue["name"], keywords=kws, context_keywords=ctx, fallback_keywords=fb))
    if not topics:
        raise ConfigError(f"{source}: no topics")
    context = _as_terms(data.get("context"), f"{source}: context")
    return Taxonomy(
        dataset=dataset, topics=tuple(topics), context=context, source=source, issues=tuple(issue_names)
    )


def load_taxonomy(name_or_path: str) -> Taxonomy:
    """Load a built-in taxonomy by name (``covid``, ``roe``) or a user's taxonomy file by path."""
    if name_or_path in BUILTIN_TAXONOMIES:
        res = resources.files("affalign.data.taxonomies").joinpath(f"{name_or_path}.yaml")
        text = res.read_text(encoding="utf-8")
        source = f"affalign/data/taxonomies/{name_or_path}.yaml"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(
                f"taxonomy {name_or_path!r}: not a built-in ({', '.join(BUILTIN_TAXONOMIES)}) "
                "and no such file"
            )
        text = path.read_text(encoding="utf-8")
        source = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from exc
    return parse_taxonomy(data, source)
