"""The semantic tagging stage (``tagging.mode``: semantic or hybrid), and the choice of tagging stage."""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from affalign import schema
from affalign.errors import ConfigError
from affalign.stages.base import Resources, Stage
from affalign.stages.topics import TopicTagStage
from affalign.tagging.semantic import (
    SemanticMatcher,
    assign,
    cached_semantic_matcher,
    keyword_bits,
    resolve_cuts,
    semantic_text,
    topics_list_array,
)


class SemanticTagStage(Stage):
    """Adds ``topics`` by semantic (or hybrid) tagging; rows with no topic are marked ``no_topic``.

    An actor stage: ``setup`` loads MiniLM and embeds the anchors once per actor. Only rows still in
    the analysis are embedded.
    """

    name = "tag_topics_semantic"
    inputs: ClassVar[tuple[str, ...]] = (schema.TEXT, schema.REASON)
    outputs: ClassVar[tuple[str, ...]] = (schema.TOPICS,)

    def __init__(
        self,
        taxonomy: str,
        mode: str = "semantic",
        exemplars: str = "",
        cut: float | None = None,
        hybrid_cut: float | None = None,
        device: str = "cpu",
        batch_size: int = 256,
        num_cpus: float = 1.0,
    ):
        if mode not in ("semantic", "hybrid"):
            raise ConfigError(f"tagging.mode {mode!r}: the semantic stage runs 'semantic' or 'hybrid'")
        self.taxonomy_ref = taxonomy
        self.mode = mode
        self.exemplars = exemplars
        self.cut = cut
        self.hybrid_cut = hybrid_cut
        self.device = device
        self.batch_size = batch_size
        self.num_cpus = num_cpus
        # an actor: the model loads once; batches a few times the encoder's so Ray's overhead stays small
        self.resources = Resources(num_cpus=num_cpus, batch_size=4 * batch_size, actor=True)
        self._matcher: SemanticMatcher | None = None
        self._cuts: tuple[float, float] | None = None

    def setup(self) -> None:
        self._matcher = cached_semantic_matcher(self.taxonomy_ref, self.exemplars, self.device, self.batch_size)
        self._cuts = resolve_cuts(self._matcher.sem, self.cut, self.hybrid_cut)

    def process(self, batch: pa.Table) -> pa.Table:
        assert self._matcher is not None and self._cuts is not None
        reason = batch.column(schema.REASON)
        live = pc.is_null(reason).to_numpy(zero_copy_only=False)
        texts = batch.column(schema.TEXT).to_pylist()
        idx = np.nonzero(live)[0]
        live_texts = [texts[i] for i in idx]
        names = self._matcher.topic_names
        bits = np.zeros((batch.num_rows, len(names)), bool)
        if len(idx):
            sims = self._matcher.topic_similarities(live_texts)
            kw = keyword_bits(self.taxonomy_ref, live_texts) if self.mode == "hybrid" else None
            bits[idx] = assign(self.mode, sims, kw, *self._cuts)
        topics_arr = topics_list_array(bits, names)
        no_topic = pc.and_(pc.is_null(reason), pc.equal(pc.list_value_length(topics_arr), 0))
        new_reason = pc.if_else(no_topic, pa.scalar("no_topic"), reason)
        batch = batch.set_column(batch.schema.get_field_index(schema.REASON), schema.REASON, new_reason)
        if schema.TOPICS in batch.column_names:
            batch = batch.drop_columns([schema.TOPICS])
        return batch.append_column(schema.TOPICS, topics_arr)


def topic_stage(cfg: Any) -> Stage:
    """The tagging stage a job config asks for (``tagging.mode``)."""
    t = cfg.tagging
    if t.mode == "keywords":
        return TopicTagStage(cfg.taxonomy_ref)
    return SemanticTagStage(cfg.taxonomy_ref, t.mode, t.exemplars, t.cut, t.hybrid_cut, t.device, t.batch_size)


def tagging_key(cfg: Any) -> Any:
    """What in the config changes a row's topics beyond the keyword taxonomy (part of the work key).

    ``None`` for keyword tagging, so keyword runs keep their key; else the mode, the cuts and the
    exemplars file's content.
    """
    t = cfg.tagging
    if t.mode == "keywords":
        return None
    text, _ = semantic_text(cfg.taxonomy_ref, t.exemplars)
    return {"mode": t.mode, "cut": t.cut, "hybrid_cut": t.hybrid_cut, "exemplars": hashlib.sha256(text.encode()).hexdigest()}
