"""The model side of a job: plan → generate (resumable) → score (resumable) → aggregates.

Generations and their scores are keyed by ``plan_id`` (a content hash of model, dataset, topic,
mode, index, sampling parameters and seed), so a rerun skips what is done and never counts a row
twice.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from affalign import reduce, schema
from affalign.config import JobConfig
from affalign.io import OutputDir
from affalign.stages.base import apply_stage

log = logging.getLogger("affalign")

MODEL_SCORES = "scores/model"


def with_budget(model: Any, budget: dict[str, Any]) -> Any:
    """An OpenAI model gets the job's ``generation.budget`` unless its own options set one.

    In a job the budget is ``{"keeper": NAME}``: the job-wide budget a keeper actor holds
    (:mod:`affalign.backends.budget_keeper`), shared with LM-judge scorers.
    """
    import dataclasses

    if not budget or model.backend != "openai" or "budget" in model.options:
        return model
    return dataclasses.replace(model, options={**model.options, "budget": dict(budget)})


def choose_topics(cfg: JobConfig, kept: list[str], topic_counts: dict[str, dict[str, int]]) -> list[str]:
    """The kept topics to generate for: the configured subset, then the ``max_topics`` largest."""
    topics = [t for t in kept if not cfg.generation.topics or t in cfg.generation.topics]
    if cfg.generation.max_topics:
        topics = sorted(topics, key=lambda t: (-min(topic_counts[t].values()), t))[: cfg.generation.max_topics]
        topics = [t for t in kept if t in topics]
    return topics


def _scored_ids(out: OutputDir) -> set[str]:
    done: set[str] = set()
    for path in out.list_files(MODEL_SCORES):
        try:
            with out.fs.open_input_file(path) as f:
                done.update(pq.read_table(f, columns=["text_id"]).column("text_id").to_pylist())
        except (OSError, pa.ArrowException):
            log.warning("unreadable score part %s: it will be scored again", path)
            out.fs.delete_file(path)
    return done


def score_generations(cfg: JobConfig, gens: pa.Table, out: OutputDir, cluster: dict[str, float]) -> None:
    """Score generations not scored yet; one part file per run, published atomically."""
    import ray.data

    from affalign.pipeline import score_stages

    done = _scored_ids(out)
    todo = gens.filter(pc.invert(pc.is_in(gens.column("plan_id"), pa.array(sorted(done), pa.string())))) if done else gens
    if todo.num_rows == 0:
        return
    # only complete answers are scored: stopped or cut at the token limit, never errors
    ok = pc.and_(pc.is_valid(todo.column("text")), pc.is_in(todo.column("finish_reason"), pa.array(["stop", "length"])))
    reason = pc.if_else(ok, pa.scalar(None, pa.string()), pa.scalar("generation_failed"))
    table = pa.table(
        {
            "text_id": todo.column("plan_id"),
            "dataset": todo.column("dataset"),
            schema.SUBJECT: pa.array([schema.model_subject(m, mode) for m, mode in zip(todo.column("model").to_pylist(), todo.column("mode").to_pylist(), strict=True)], pa.string()),
            schema.TOPICS: pa.array([[t] for t in todo.column("topic").to_pylist()], pa.list_(pa.string())),
            schema.TEXT: todo.column("text"),
            schema.REASON: reason,
        }
    )
    ds = ray.data.from_arrow(table)
    for stage in score_stages(cfg, cluster):
        ds = apply_stage(ds, stage, cluster)
    scored = pa.concat_tables(ray.get(ds.to_arrow_refs())) if table.num_rows else table
    scored = scored.filter(pc.is_null(scored.column(schema.REASON))).drop_columns([schema.TEXT, schema.REASON])
    out.publish_table(f"{MODEL_SCORES}/part-{uuid.uuid4().hex}.parquet", scored)


def _score_planned(cfg: JobConfig, plan: pa.Table, out: OutputDir, cluster: dict[str, float]) -> None:
    """Score the stored generations of ``plan`` not scored yet."""
    from affalign.generation.store import read_generations

    gens = read_generations(out.root, fs=out.fs)
    gens = gens.filter(pc.is_in(gens.column("plan_id"), plan.column("plan_id")))
    score_generations(cfg, gens, out, cluster)


def run_models(cfg: JobConfig, kept: list[str], topic_counts: dict[str, dict[str, int]], out: OutputDir, agg: reduce.Aggregator, cluster: dict[str, float]) -> tuple[list[str], dict[str, Any]]:
    """Generate, score and aggregate every configured model; returns model subjects and run info."""
    from affalign.generation.job import run_generation
    from affalign.generation.models import resolve_model
    from affalign.generation.plan import build_plan
    from affalign.generation.store import read_generations

    models = [with_budget(resolve_model(m), cfg.generation.budget) for m in cfg.generation.models]
    topics = choose_topics(cfg, kept, topic_counts)
    plan = build_plan(models, cfg.dataset, topics, cfg.generation.modes, cfg.generation.n_responses, cfg.generation.seed)
    counts: dict[str, Any] = {"planned": plan.num_rows, "already_done": 0, "generated": 0, "errors": 0, "seconds": 0.0}
    # Generation and scoring pools run side by side: a model's generations are scored in the
    # background while the next model generates. One scoring thread, so score passes never
    # overlap each other; neither pool waits on the other, so they cannot deadlock (on a small
    # machine the second just waits for resources).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="affalign-score") as scoring:
        pending = []
        for model in models:
            model_plan = plan.filter(pc.equal(plan.column("model"), model.id))
            if model_plan.num_rows == 0:
                continue
            got = run_generation(model_plan, [model], out.root, cluster, fs=out.fs)
            for key in ("already_done", "generated", "errors"):
                counts[key] += got[key]
            counts["seconds"] = round(counts["seconds"] + got.get("seconds", 0.0), 3)
            pending.append(scoring.submit(_score_planned, cfg, model_plan, out, cluster))
        for done in pending:
            done.result()
    gens = read_generations(out.root, fs=out.fs)
    gens = gens.filter(pc.is_in(gens.column("plan_id"), plan.column("plan_id")))
    planned = plan.column("plan_id")
    subjects = sorted({schema.model_subject(m.id, mode) for m in models for mode in cfg.generation.modes})
    for path in out.list_files(MODEL_SCORES):
        with out.fs.open_input_file(path) as f:
            t = pq.read_table(f)
        t = t.filter(pc.is_in(t.column("text_id"), planned))
        agg.add(t)
    info = {
        "models": [{"id": m.id, "kind": m.kind, "backend": m.backend, "path": m.path} for m in models],
        "topics": topics,
        "modes": list(cfg.generation.modes),
        "n_responses": cfg.generation.n_responses,
        "counts": counts,
        "failed": int(gens.num_rows - pc.sum(pc.is_valid(gens.column("text"))).as_py()) if gens.num_rows else 0,
    }
    return subjects, info
