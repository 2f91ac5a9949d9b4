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
from affalign.stages.base import apply_stages, count_pools

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


def start_model_warmup(cfg: JobConfig) -> Any:
    """Prepare the job's local GGUF models on the driver while Ray starts and the human pass runs.

    A GGUF file is converted (dequantized) once into the on-disk cache (``backends.hf``): tens of
    seconds on a laptop, which every generation replica would otherwise spend (each converting
    the same file) after the human pass. Returns the thread (``join`` it before generation) or
    None when there is nothing to convert. A failure here only logs: the replicas convert then.
    """
    import os
    import threading

    if not cfg.generation.enabled:
        return None
    from affalign.runtime import quiet_libraries

    quiet_libraries()  # before tqdm is imported: it reads TQDM_DISABLE at import
    try:
        from affalign.backends.hf import COMPLETE, gguf_cache_dir, resolve_dtype
        from affalign.generation.models import resolve_model

        todo = []
        for entry in cfg.generation.models:
            model = resolve_model(entry)
            path = model.path or ""
            if model.backend != "hf" or not path.lower().endswith(".gguf") or model.options.get("device_map"):
                continue
            if str(model.options.get("device") or "auto").startswith("cuda"):
                continue
            from affalign.backends.base import make_backend

            backend = make_backend(model)
            cache = gguf_cache_dir(getattr(backend, "path", path), resolve_dtype(model.dtype, "cpu"))
            if cache is not None and not os.path.exists(os.path.join(cache, COMPLETE)):
                todo.append(backend)
    except Exception as exc:  # noqa: BLE001 - an optimisation only
        log.debug("model warm-up skipped: %s", exc)
        return None
    if not todo:
        return None

    def work() -> None:
        quiet_libraries()
        for backend in todo:
            try:
                backend._load_gguf(resolve_dtype(backend.model.dtype, "cpu"))
                log.info("generation: prepared %s (GGUF converted once, while the human pass runs)", backend.model.id)
            except Exception as exc:  # noqa: BLE001
                log.debug("model warm-up of %s failed: %s", backend.model.id, exc)

    thread = threading.Thread(target=work, name="affalign-model-warmup", daemon=True)
    thread.start()
    return thread


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


def score_generations(cfg: JobConfig, gens: pa.Table, out: OutputDir, cluster: dict[str, float], other_pools: int = 0) -> None:
    """Score generations not scored yet; one part file per run, published atomically.

    ``other_pools``: actor pools of other datasets running at the same time (a generation pool
    running beside this pass), counted when this pass sizes its own pools.
    """
    import ray.data

    from affalign.pipeline import consume, score_stages
    from affalign.progress import Progress

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
    stages = score_stages(cfg, cluster)
    # streamed to the driver (not to_arrow_refs): the driver counts rows for the progress display
    ds = apply_stages(ray.data.from_arrow(table), stages, cluster, extra_pools=other_pools)
    parts: list[pa.Table] = []

    def take(batch: pa.Table) -> None:
        parts.append(batch)
        bar.update(batch.num_rows)

    with Progress("scoring generations", table.num_rows) as bar:
        consume(ds, "scoring of generations", stages, cluster, cfg.ray.no_progress_timeout_s, take)
    scored = pa.concat_tables(parts, promote_options="default") if parts else table
    scored = scored.filter(pc.is_null(scored.column(schema.REASON))).drop_columns([schema.TEXT, schema.REASON])
    out.publish_table(f"{MODEL_SCORES}/part-{uuid.uuid4().hex}.parquet", scored)


def _score_planned(cfg: JobConfig, plan: pa.Table, out: OutputDir, cluster: dict[str, float], other_pools: int = 0) -> None:
    """Score the stored generations of ``plan`` not scored yet."""
    from affalign.generation.store import read_generations

    gens = read_generations(out.root, fs=out.fs)
    gens = gens.filter(pc.is_in(gens.column("plan_id"), plan.column("plan_id")))
    score_generations(cfg, gens, out, cluster, other_pools=other_pools)


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
    from affalign.pipeline import score_stages

    # the two side-by-side datasets share the CPUs left after the reserve: the generation pool
    # counts the scoring pools beside it and the other way round (no pool takes every CPU)
    overlap = len([m for m in models if pc.any(pc.equal(plan.column("model"), m.id)).as_py()]) > 1
    score_pools = count_pools(score_stages(cfg, cluster)) if overlap else 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="affalign-score") as scoring:
        pending = []
        for model in models:
            model_plan = plan.filter(pc.equal(plan.column("model"), model.id))
            if model_plan.num_rows == 0:
                continue
            got = run_generation(model_plan, [model], out.root, cluster, fs=out.fs, other_pools=score_pools, no_progress_timeout_s=cfg.ray.no_progress_timeout_s)
            for key in ("already_done", "generated", "errors"):
                counts[key] += got[key]
            counts["seconds"] = round(counts["seconds"] + got.get("seconds", 0.0), 3)
            pending.append(scoring.submit(_score_planned, cfg, model_plan, out, cluster, 1 if overlap else 0))
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
