"""The human pass: every input row through read → validate → tag → sample → score into a work
table, then one finalize pass on the driver that publishes ``rejects/`` and the score table and
builds the additive aggregates the reduce needs (a rerun of the reduce or report never re-scores).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from affalign import __version__, reduce, schema
from affalign.config import JobConfig
from affalign.inputs import InputFile, ReadUnit
from affalign.passes.ideology import bias_table_digest
from affalign.passes.scoring import describe, scoring_stages
from affalign.progress import Progress
from affalign.rundir import RunDir
from affalign.runtime.adapter import apply_stages, count_pools
from affalign.runtime.executor import PassWork, prefetch, run_pass
from affalign.runtime.placement import Placement
from affalign.schema import STAGE_ERROR
from affalign.scorers.registry import label_thresholds
from affalign.stages.base import Stage
from affalign.stages.ideology import UserGroupStage
from affalign.stages.read import ReadStage
from affalign.stages.semantic import tagging_key, topic_stage
from affalign.stages.validate import SampleStage, ValidateStage, retweet_fallback_counts
from affalign.stages.write import WriteStage
from affalign.taxonomy import load_taxonomy

log = logging.getLogger("affalign")


def work_key(cfg: JobConfig, files: list[InputFile]) -> str:
    """Content key of the human pass: inputs and every setting that changes a row's content."""

    tax = load_taxonomy(cfg.taxonomy_ref)
    blob = json.dumps(
        {
            "version": __version__,
            "bias_table": bias_table_digest(cfg),
            "files": [(f.uri, f.size, f.format) for f in files],
            "taxonomy": [(t.name, t.keywords, t.context_keywords, t.fallback_keywords) for t in tax.topics] + [tax.context],
            "tagging": tagging_key(cfg),
            "input": {k: v for k, v in cfg.to_dict()["input"].items() if k != "path"},
            "scoring": cfg.to_dict()["scoring"],
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def done_rows(work: PassWork) -> dict[int, np.ndarray]:
    """Rows already written by an interrupted attempt, by input file (sorted row numbers)."""
    t = work.done_keys()
    if t is None:
        return {}
    files = t.column(schema.SOURCE_FILE).to_numpy()
    rows = t.column(schema.SOURCE_ROW).to_numpy()
    return {int(fi): np.unique(rows[files == fi]) for fi in np.unique(files)}


def human_pass(
    cfg: JobConfig,
    files: list[InputFile],
    units: list[ReadUnit],
    out: RunDir,
    placement: Placement,
    work: PassWork,
    info: dict[str, Any] | None = None,
    user_groups: pa.Table | None = None,
    budget: dict[str, Any] | None = None,
) -> None:
    """Stream every input row through read → validate → tag → sample → score into the work table.

    Resumable: a finished pass leaves a marker and is skipped; an interrupted one is completed by
    reading only the rows its readable part files lack (nothing is scored twice).
    """
    import ray
    import ray.data

    if work.complete():
        log.info("human pass already complete in %s; reusing it", work.rel)
        if info is not None:
            info["resumed"] = "human pass reused"
        return
    done = done_rows(work)
    todo = []
    for u in units:
        have = done.get(u.file_index)
        if u.num_rows >= 0 and have is not None:
            n_done = int(np.count_nonzero((have >= u.row_start) & (have < u.row_start + u.num_rows)))
            if n_done == u.num_rows:
                continue
        todo.append(u)
    if done and info is not None:
        info["resumed"] = f"{sum(len(v) for v in done.values())} rows reused, {len(todo)} of {len(units)} read units to do"
    if todo:
        items = [{"unit": u.to_json()} for u in todo]
        ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        done_ref = ray.put(done) if done else None
        groups_ref = ray.put(user_groups) if user_groups is not None else None
        # rows known before reading: parquet units know theirs, jsonl/csv ones do not (-1)
        known = all(u.num_rows >= 0 for u in todo)
        total = sum(u.num_rows for u in todo) - sum(len(v) for v in done.values()) if known else None
        _stream_rows(cfg, files, ds, out, placement, work, done_ref, groups_ref, total=total, budget=budget)
    work.mark_complete()


def rows_per_block(total: int | None) -> int:
    """Rows per block of the scored stream: about 20 progress steps, at least 2,048 rows a block
    (per-block overhead) and at most 65,536 (work table part files of a few MB)."""
    if total is None:
        return 16_384
    return int(max(2_048, min(65_536, total // 20)))


def _stream_rows(
    cfg: JobConfig,
    files: list[InputFile],
    ds: Any,
    out: RunDir,
    placement: Placement,
    work: PassWork,
    done_ref: Any,
    groups_ref: Any = None,
    total: int | None = None,
    budget: dict[str, Any] | None = None,
) -> None:
    inferred = cfg.input.ideology.enabled
    stages: list[Stage] = [
        ReadStage(files, cfg.input.path, None if inferred else cfg.input.group_column, cfg.storage.s3_endpoint, cfg.storage.s3_region, done_ref),
        ValidateStage(cfg.input.groups, cfg.input.drop_retweets, cfg.input.drop_quotes, check_group=not inferred),
    ]
    if inferred:
        stages.append(UserGroupStage(groups_ref))
    stages.append(topic_stage(cfg))  # tagging.mode: keywords (TopicTagStage), semantic or hybrid
    if cfg.scoring.sample_fraction < 1.0:
        stages.append(SampleStage(cfg.scoring.sample_fraction))
    scoring = scoring_stages(cfg.scoring, placement, budget)
    passes = describe(scoring)
    log.info("human pass: %d scoring pass(es)%s", len(passes), ": " + "; ".join(passes) if passes else "")
    before_scoring = stages
    after_scoring = [*scoring, WriteStage(out.uri, work.rel, cfg.storage.s3_endpoint, cfg.storage.s3_region)]
    stages = before_scoring + after_scoring
    prefetch(stages)  # models are fetched once on the driver, not once per actor
    # every actor pool of the pass is sized together, so read tasks always keep a CPU
    ds = apply_stages(ds, before_scoring, placement.resources, extra_pools=count_pools(after_scoring), reserve_cpus=1.0)
    if scoring:
        # rows stream on in blocks of a bounded size: a read unit (up to 200,000 rows, or a
        # whole small file) would otherwise reach the scorer, the writer and the progress
        # display as one block, shown only when the unit is done
        ds = ds.repartition(target_num_rows_per_block=rows_per_block(total))
    ds = apply_stages(ds, after_scoring, placement.resources, extra_pools=count_pools(before_scoring), reserve_cpus=1.0)
    with Progress("human pass", total) as bar:
        run_pass(ds, "human pass", stages, placement.resources, cfg.ray.no_progress_timeout_s, lambda b: bar.update(int(pc.sum(b.column("rows")).as_py() or 0)))


def _dup_keys(out: RunDir, rows_dir: str) -> set[tuple[int, int]]:
    """(file, row) of every row whose tweet_id appeared at an earlier (file, row): later copies are duplicates."""
    fps, files, rows = [], [], []
    for path in out.list_files(rows_dir):
        with out.fs.open_input_file(path) as f:
            t = pq.read_table(f, columns=[schema.TWEET_ID, schema.SOURCE_FILE, schema.SOURCE_ROW])
        ids = t.column(schema.TWEET_ID).to_pandas()
        valid = ids.notna().to_numpy()
        fps.append(pd.util.hash_array(ids[valid].to_numpy(dtype=object)).astype(np.uint64))
        files.append(t.column(schema.SOURCE_FILE).to_numpy()[valid])
        rows.append(t.column(schema.SOURCE_ROW).to_numpy()[valid])
    if not fps:
        return set()
    fp, fi, ro = np.concatenate(fps), np.concatenate(files), np.concatenate(rows)
    order = np.lexsort((ro, fi, fp))
    fp_sorted = fp[order]
    later = np.zeros(len(fp), bool)
    later[1:] = fp_sorted[1:] == fp_sorted[:-1]
    dup = order[later]
    return set(zip(fi[dup].tolist(), ro[dup].tolist(), strict=True))


def reduce_thresholds(cfg: JobConfig) -> dict[str, list[float]]:
    """Per-label cuts for reduce.mode threshold from scorers that ship them (offline); others use reduce.tau."""
    if not cfg.scoring.enabled:
        return {}
    return label_thresholds({d: cfg.scoring.spec(d) for d in cfg.scoring.dimensions})


def finalize(cfg: JobConfig, out: RunDir, info: dict[str, Any], work: PassWork) -> reduce.Aggregator:
    """One pass over the work table: publish rejects and scores, count reasons, aggregate."""
    rows_dir = work.rel
    dups = _dup_keys(out, rows_dir)
    agg = reduce.Aggregator(tuple(cfg.scoring.dimensions), cfg.reduce.tau, label_tau=reduce_thresholds(cfg))
    reasons: dict[str, int] = {}
    errors: dict[str, int] = {}
    rows_in = 0
    group_counts: dict[str, int] = {}
    score_cols = [schema.score_column(d) for d in cfg.scoring.dimensions] if cfg.scoring.enabled else []
    reject_parts, score_parts = 0, 0
    fallback = {"rows_without_is_retweet": 0, "rows_without_is_quote": 0, "retweets_by_text_prefix": 0}
    out.delete_dir("rejects")
    out.delete_dir("scores/human")
    for path in out.list_files(rows_dir):
        with out.fs.open_input_file(path) as f:
            t = pq.read_table(f)
        rows_in += t.num_rows
        reason = t.column(schema.REASON).combine_chunks()
        if dups:
            keys = zip(t.column(schema.SOURCE_FILE).to_pylist(), t.column(schema.SOURCE_ROW).to_pylist(), strict=True)
            is_dup = pa.array([k in dups for k in keys], pa.bool_())
            reason = pc.if_else(pc.and_(is_dup, pc.is_null(reason)), pa.scalar("duplicate_tweet_id"), reason)
            # a duplicate loses any earlier filter reason too: it is not a row of the corpus
            reason = pc.if_else(pc.and_(is_dup, pc.is_in(reason, pa.array(schema.FILTER_REASONS))), pa.scalar("duplicate_tweet_id"), reason)
            t = t.set_column(t.schema.get_field_index(schema.REASON), schema.REASON, reason)
        if "is_retweet" in t.column_names:
            for k, v in retweet_fallback_counts(t).items():
                fallback[k] += v
        for r, c in zip(*pc.value_counts(reason).flatten(), strict=True):
            key = r.as_py() or "kept"
            if key.startswith(STAGE_ERROR):
                errors.setdefault(key, 0)
                errors[key] += c.as_py()
                key = STAGE_ERROR
            reasons[key] = reasons.get(key, 0) + c.as_py()
        is_error = pc.fill_null(pc.starts_with(reason, STAGE_ERROR), False)
        rejected = t.filter(pc.or_(pc.is_in(reason, pa.array(schema.REJECT_REASONS)), is_error))
        if rejected.num_rows:
            out.publish_table(f"rejects/part-{reject_parts:05d}.parquet", rejected.drop_columns([c for c in (schema.TOPICS, *score_cols) if c in rejected.column_names]))
            reject_parts += 1
        # texts in the analysis: kept (scored) rows and sampled-out rows, for topic membership
        member = t.filter(pc.or_(pc.is_null(reason), pc.fill_null(pc.equal(reason, "not_sampled"), False)))
        subjects = schema.human_subjects(member.column(schema.GROUP))
        agg.add_members(member.column(schema.TOPICS).combine_chunks(), subjects.combine_chunks() if isinstance(subjects, pa.ChunkedArray) else subjects)
        kept = t.filter(pc.is_null(reason))
        for g, c in zip(*pc.value_counts(kept.column(schema.GROUP)).flatten(), strict=True):
            group_counts[g.as_py()] = group_counts.get(g.as_py(), 0) + c.as_py()
        if kept.num_rows and score_cols:
            scored = schema.score_table(
                {
                    "text_id": kept.column(schema.TWEET_ID),
                    "dataset": pa.array([cfg.dataset] * kept.num_rows, pa.string()),
                    schema.SUBJECT: schema.human_subjects(kept.column(schema.GROUP)),
                    schema.TOPICS: kept.column(schema.TOPICS),
                    **({schema.USER_ID: kept.column(schema.USER_ID)} if schema.USER_ID in kept.column_names else {}),  # report: resample by user
                    **{c: kept.column(c) for c in score_cols},
                },
                cfg.scoring.dimensions,
            )
            agg.add(scored)
            out.publish_table(f"scores/human/part-{score_parts:05d}.parquet", scored)
            score_parts += 1
    info["rows"] = {
        "in": rows_in,
        "kept": reasons.get("kept", 0),
        "rejected": sum(v for k, v in reasons.items() if k in schema.REJECT_REASONS or k == STAGE_ERROR),
        "stage_errors": dict(sorted(errors.items())[:50]),
        "filtered": sum(v for k, v in reasons.items() if k in schema.FILTER_REASONS),
        "by_reason": dict(sorted(reasons.items())),
        "kept_by_group": dict(sorted(group_counts.items())),
    }
    if fallback["rows_without_is_retweet"] or fallback["rows_without_is_quote"]:
        info["rows"]["retweet_detection"] = _retweet_note(cfg, fallback, rows_in)
        log.warning("input: %s", info["rows"]["retweet_detection"]["note"])
    return agg


def _retweet_note(cfg: JobConfig, counts: dict[str, int], rows_in: int) -> dict[str, Any]:
    """run.json's account of rows whose input lacks is_retweet / is_quote (see stages/validate.py)."""

    def which(column: str) -> str:
        n = counts[f"rows_without_{column}"]
        return f"the input has no {column} column" if n == rows_in else f"{n} of {rows_in} rows have no {column} value (column absent from their file, or empty)"

    parts = []
    if counts["rows_without_is_retweet"]:
        how = (
            f"retweets were recognised by the text prefix 'RT @user' instead: {counts['retweets_by_text_prefix']} filtered as retweet"
            if cfg.input.drop_retweets
            else "input.drop_retweets is false, so they were not looked for"
        )
        parts.append(f"{which('is_retweet')}; {how}")
    if counts["rows_without_is_quote"] and cfg.input.drop_quotes:
        parts.append(f"{which('is_quote')}: quote tweets there cannot be recognised and were kept")
    return {**counts, "method": "text prefix 'RT @user'" if cfg.input.drop_retweets else "none", "note": "; ".join(parts)}
