"""Why a text got each of its topics: the keyword, phrase, context gate or exemplar behind it.

For ``affalign tag --explain``, so users can audit a taxonomy (their own or a built-in one). The topics
themselves always come from the taggers (:class:`affalign.tagging.keywords.KeywordMatcher`, the semantic
matcher); this module only finds the evidence, following the keyword rules:

* a ``keywords`` term matches on its own;
* a ``context_keywords`` term counts when the text also holds one of the taxonomy's ``context``
  terms or a strong keyword of any topic (the gate);
* a ``fallback_keywords`` term is gated the same way and counts only when no other topic of the same
  issue matched.

Semantic evidence is the topic's nearest anchor (its description or one of its exemplars), its cosine
similarity and the cut it cleared.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from affalign.tagging.keywords import normalize_terms, normalize_texts, term_patterns
from affalign.taxonomy import Taxonomy


class KeywordExplainer:
    """Finds the terms of a taxonomy present in a text (word boundaries and hashtags, as the matcher)."""

    def __init__(self, taxonomy: Taxonomy):
        self.taxonomy = taxonomy
        terms: list[str] = list(taxonomy.context)
        for t in taxonomy.topics:
            terms += [*t.keywords, *t.context_keywords, *getattr(t, "fallback_keywords", ())]
        norms = normalize_terms(terms)
        self._patterns = {term: term_patterns(term, norms[term]) for term in set(terms)}

    def _found(self, norm_text: str, terms: tuple[str, ...] | list[str]) -> list[str]:
        return [t for t in terms if any(p in norm_text for p in self._patterns.get(t, ()))]

    def explain(self, text: str, topics: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Per topic of ``topics`` (as the keyword matcher gave them) the evidence found in ``text``."""
        norm = normalize_texts(pa.array([text], pa.string()))[0].as_py() or ""
        context = self._found(norm, self.taxonomy.context)
        strong_any = {t.name: self._found(norm, t.keywords) for t in self.taxonomy.topics}
        gate_strong = next(((name, kws[0]) for name, kws in strong_any.items() if kws), None)
        if context:
            gate: dict[str, Any] = {"context": context[0]}
        elif gate_strong is not None:
            gate = {"strong_keyword": gate_strong[1], "of_topic": gate_strong[0]}
        else:
            gate = {}
        out: dict[str, list[dict[str, Any]]] = {}
        for topic in self.taxonomy.topics:
            if topic.name not in topics:
                continue
            why: list[dict[str, Any]] = [{"keyword": k} for k in strong_any[topic.name]]
            why += [{"context_keyword": k, "gate": gate} for k in self._found(norm, topic.context_keywords)]
            if not why:
                fb = self._found(norm, getattr(topic, "fallback_keywords", ()))
                why += [{"fallback_keyword": k, "gate": gate, "note": f"no other {topic.issue} topic matched"} for k in fb]
            out[topic.name] = why or [{"unexplained": "the matcher gave this topic but no term of it was found"}]
        return out


def explain_semantic(matcher: Any, texts: list[str], topics: list[list[str]], cut: float, hybrid_cut: float, mode: str, keyword_topics: list[list[str]] | None) -> list[dict[str, list[dict[str, Any]]]]:
    """Per text and topic the nearest anchor and its similarity (semantic topics only)."""
    import numpy as np

    if not texts:
        return []
    emb = matcher.embed(texts)
    anchor_sims = emb @ matcher.anchor_emb.T
    gated = matcher.gate(matcher.reduce(anchor_sims), emb)
    out: list[dict[str, list[dict[str, Any]]]] = []
    for i, tops in enumerate(topics):
        kw = set(keyword_topics[i]) if keyword_topics is not None else set()
        row: dict[str, list[dict[str, Any]]] = {}
        for name in tops:
            j = matcher.topic_names.index(name)
            if mode == "hybrid" and name in kw and gated[i, j] < hybrid_cut:
                continue  # the keywords explain it
            near = matcher.nearest(anchor_sims[i], name)
            row[name] = [
                {
                    ("description" if near.is_description else "exemplar"): near.anchor,
                    "similarity": round(float(np.float32(near.similarity)), 3),
                    "cut": hybrid_cut if mode == "hybrid" else cut,
                }
            ]
        out.append(row)
    return out
