"""Affect scoring stages: an optional CPU tokenize stage, and the one classifier stage per scorer.

``AffectScoreStage(spec, dimensions)`` is the classifier stage for every scorer kind (hf, offline,
lexicon, judge); dimensions that share one scorer spec run in one pass. It scores only the rows
still in the analysis (``reason`` null) and appends one ``FixedSizeList<float32>[n_labels]`` column
per dimension (``schema.score_column(dim)``); other rows get null scores.

``TokenizeStage(spec)`` moves tokenization off the GPU actors: CPU tasks add ``input_ids``
(``list<int32>``, with special tokens, truncated to ``spec.max_length``) and ``n_tokens`` for live
rows. Put it directly before the ``AffectScoreStage`` with the same spec: the score stage then feeds
those ids to the scorer's ``score_tokenized`` (when it has one) and drops both columns, so a later
stage with another model never sees ids from the wrong tokenizer and the work table stays small.

Both stages have ``prefetch()``: the runtime calls it on the driver before the dataset runs, so a
hub model is downloaded (or found missing, with a clear error) once instead of in every actor.

``classifier_stages(spec, dims, num_gpus)`` builds the stages of one scoring pass (the passes of a
job, and their GPUs, are decided in :mod:`affalign.passes.scoring`).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from affalign import schema
from affalign.schema import DIMENSIONS
from affalign.scorers.base import AffectScorer, ScorerSpec
from affalign.stages.base import Resources, Stage

INPUT_IDS = "input_ids"
N_TOKENS = "n_tokens"
SUB_BATCHES_PER_BATCH = 8  # a Ray batch holds up to this many full scorer sub-batches: a bigger sort pool pads less


def live_mask(batch: pa.Table) -> np.ndarray:
    """Rows still in the analysis: ``reason`` is null (every row when there is no reason column)."""
    if schema.REASON not in batch.column_names:
        return np.ones(batch.num_rows, bool)
    return pc.is_null(batch.column(schema.REASON)).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _replace(batch: pa.Table, name: str, arr: pa.Array) -> pa.Table:
    if name in batch.column_names:
        batch = batch.drop_columns([name])
    return batch.append_column(name, arr)


_PROFILE: dict[tuple[str, str], dict[str, float]] = {}  # (profile_dir, stage) -> this process's sums


def _write_profile(profile_dir: str | None, stage: str, timings: dict[str, float]) -> None:
    """Cumulative timings of this process, for benchmarks (one small JSON file per process)."""
    if not profile_dir:
        return
    os.makedirs(profile_dir, exist_ok=True)
    path = os.path.join(profile_dir, f"{stage}-{os.getpid()}.json")
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(timings, f)
    os.replace(tmp, path)


class TokenizeStage(Stage):
    """CPU tasks: ``input_ids`` (list<int32>) and ``n_tokens`` (int32) for live rows, null otherwise."""

    name = "tokenize"
    inputs: ClassVar[tuple[str, ...]] = (schema.TEXT,)
    outputs: ClassVar[tuple[str, ...]] = (INPUT_IDS, N_TOKENS)

    def __init__(self, spec: ScorerSpec, batch_size: int | None = None, num_cpus: float = 1.0, profile_dir: str | None = None):
        if spec.scorer != "hf" or not spec.model:
            raise ValueError("TokenizeStage needs an hf scorer spec with a model")
        self.spec = spec
        self.batch_size = int(batch_size or spec.rows_per_batch(False) * SUB_BATCHES_PER_BATCH)
        self.num_cpus = num_cpus
        self.resources = Resources(num_cpus=num_cpus, batch_size=self.batch_size)
        self.profile_dir = profile_dir
        self._tok: Any = None

    def prefetch(self) -> None:
        from affalign.scorers.hf_classifier import prefetch

        prefetch(self.spec)

    def setup(self) -> None:
        from affalign.scorers.hf_classifier import load_tokenizer

        self._tok = load_tokenizer(self.spec)

    def process(self, batch: pa.Table) -> pa.Table:
        t0 = time.perf_counter()
        n = batch.num_rows
        live = live_mask(batch)
        idx = np.flatnonzero(live)
        texts = batch.column(schema.TEXT).take(pa.array(idx)).to_pylist() if len(idx) else []
        flat, lengths = self._tok.encode_flat(texts)
        full = np.zeros(n, np.int32)
        full[idx] = lengths
        offsets = np.zeros(n + 1, np.int32)
        np.cumsum(full, out=offsets[1:])
        null = pa.array(~live)
        ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.int32()), type=pa.list_(pa.int32()), mask=null)
        n_tok = pa.array(full, pa.int32(), mask=~live)
        out = _replace(_replace(batch, INPUT_IDS, ids), N_TOKENS, n_tok)
        if self.profile_dir:  # summed per process: Ray runs many short tasks in one worker
            acc = _PROFILE.setdefault((self.profile_dir, self.name), {"tokenize_s": 0.0, "rows": 0})
            acc["tokenize_s"] += time.perf_counter() - t0
            acc["rows"] += len(idx)
            _write_profile(self.profile_dir, self.name, acc)
        return out


class AffectScoreStage(Stage):
    """Scores live rows with one scorer; one fixed-size-list float32 column per dimension."""

    name = "score"
    inputs: ClassVar[tuple[str, ...]] = (schema.TEXT,)

    def __init__(
        self,
        spec: ScorerSpec,
        dimensions: tuple[str, ...],
        num_gpus: float | None = None,
        max_actors: int | None = None,
        drop_tokens: bool = True,
        profile_dir: str | None = None,
    ):
        """``num_gpus``: GPUs per actor, as the pass's placement decided; None (a stage built
        outside a job, e.g. in a unit test): ``spec.num_gpus``, else 0."""
        unknown = [d for d in dimensions if d not in DIMENSIONS]
        if unknown or not dimensions:
            raise ValueError(f"AffectScoreStage: bad dimensions {list(dimensions)}; expected some of {sorted(DIMENSIONS)}")
        self.spec = spec
        self.dimensions = tuple(dimensions)
        self.drop_tokens = drop_tokens
        self.profile_dir = profile_dir
        self.outputs = tuple(schema.score_column(d) for d in self.dimensions)
        gpus = num_gpus if num_gpus is not None else float(spec.num_gpus or 0.0)
        self.resources = Resources(num_cpus=1, num_gpus=gpus, batch_size=spec.rows_per_batch(gpus > 0) * SUB_BATCHES_PER_BATCH, actor=True, max_actors=max_actors)
        self._scorer: AffectScorer | None = None

    def prefetch(self) -> None:
        """Check the spec (an unbuilt scorer is cheap) and download the scorer's model once, on
        the driver, before actors start."""
        from affalign.scorers.registry import make_scorer

        make_scorer(self.spec, self.dimensions)
        if self.spec.scorer == "hf":
            from affalign.scorers.hf_classifier import prefetch, verify_label_map

            prefetch(self.spec, f"scoring.{self.dimensions[0]}.model")
            # a label map that looks permuted stops the job here, on the driver, as a ConfigError
            # (exit 2); raised in an actor it would reach the driver as a generic actor failure
            verify_label_map(self.spec, self.dimensions[0])

    def setup(self) -> None:
        from affalign.scorers.registry import make_scorer

        scorer = make_scorer(self.spec, self.dimensions)
        scorer.setup()
        scorer.profile = bool(self.profile_dir)
        self._scorer = scorer

    def _score_live(self, batch: pa.Table, idx: np.ndarray) -> dict[str, np.ndarray]:
        scorer = self._scorer
        assert scorer is not None
        if INPUT_IDS in batch.column_names and scorer.tokenized:
            col = batch.column(INPUT_IDS)
            col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
            sub = col.take(pa.array(idx))
            if sub.null_count == 0:
                from affalign.scorers.hf_classifier import pad_flat

                lengths = pc.list_value_length(sub).to_numpy(zero_copy_only=False).astype(np.int64)
                flat = pc.list_flatten(sub).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
                mat = pad_flat(flat, lengths, scorer.pad_id)
                return scorer.score_tokenized(mat, lengths)
        texts = batch.column(schema.TEXT).take(pa.array(idx)).to_pylist()
        return scorer.score(texts)

    def process(self, batch: pa.Table) -> pa.Table:
        started = time.time()
        n = batch.num_rows
        live = live_mask(batch)
        idx = np.flatnonzero(live)
        got = self._score_live(batch, idx) if len(idx) else {}
        null = pa.array(~live)
        for dim in self.dimensions:
            k = len(DIMENSIONS[dim])
            values = np.zeros((n, k), np.float32)
            if len(idx):
                mat = np.asarray(got[dim], np.float32)
                if mat.shape != (len(idx), k):
                    raise ValueError(f"scorer {self.spec.scorer!r} returned {mat.shape} for {dim}, expected {(len(idx), k)}")
                values[idx] = mat
            arr = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel(), pa.float32()), k, mask=null)
            batch = _replace(batch, schema.score_column(dim), arr)
        if self.drop_tokens:
            batch = batch.drop_columns([c for c in (INPUT_IDS, N_TOKENS) if c in batch.column_names])
        if self.profile_dir and self._scorer is not None:
            acc = _PROFILE.setdefault((self.profile_dir, self.name), {"first_start": started, "scored_rows": 0})
            acc["scored_rows"] += len(idx)
            acc["last_end"] = time.time()
            _write_profile(self.profile_dir, self.name, {**self._scorer.timings, **acc})
        return batch



def classifier_stages(spec: ScorerSpec, dimensions: tuple[str, ...], num_gpus: float) -> list[Stage]:
    """The stages of one scoring pass: a CPU tokenize stage for an hf model, then the score stage."""
    stages: list[Stage] = []
    if spec.scorer == "hf":
        # tokenization runs in CPU tasks so the GPU actors only run forward passes
        stages.append(TokenizeStage(spec))
    # an LM judge's budget lives in its actor: one actor keeps it exact (it sends requests
    # concurrently itself)
    stages.append(AffectScoreStage(spec, dimensions, num_gpus=num_gpus, max_actors=1 if spec.scorer == "judge" else None))
    return stages
