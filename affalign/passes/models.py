"""The model pass: plan → generate (resumable) → score (resumable) → aggregates.

Generations and their scores are keyed by ``plan_id`` (a content hash of model, dataset, topic,
mode, index, sampling parameters and seed), so a rerun skips what is done and never counts a row
twice. For each model, its remaining plan rows (sorted by dataset, topic, mode and index, so a
batch mostly falls in one shard) are cut into blocks of the model's batch size and run through
:class:`~affalign.stages.generate.GenerateStage` on an actor pool (one replica per GPU, or CPU
replicas). The driver writes each finished batch at once as part files of its shards, so a run
killed at any point loses at most the batches in flight. Rows whose generation failed are stored
with their error and retried by the next run. A model's generations are scored in the background
while the next model generates.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from affalign import reduce, schema
from affalign.backends.base import ModelSpec, make_backend
from affalign.backends.hf import ModelLoadError
from affalign.config import JobConfig
from affalign.errors import ConfigError
from affalign.generation.plan import build_plan
from affalign.generation.store import GenerationStore, read_generations, remaining
from affalign.passes.scoring import scoring_stages
from affalign.progress import Progress
from affalign.rundir import RunDir
from affalign.runtime.adapter import apply_stages
from affalign.runtime.cluster import quiet_libraries
from affalign.runtime.executor import prefetch, run_pass
from affalign.runtime.placement import Placement
from affalign.stages.generate import GenerateStage, batch_rows

log = logging.getLogger("affalign")

MODEL_SCORES = "scores/model"


def with_budget(model: Any, budget: dict[str, Any]) -> Any:
    """An OpenAI model gets the job's ``generation.budget`` unless its own options set one.

    In a job the budget is the handle ``{"keeper": NAME}``: the job-wide budget a keeper actor
    holds (:mod:`affalign.backends.budget_keeper`), shared with LM-judge scorers.
    """
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
    quiet_libraries()  # before tqdm is imported: it reads TQDM_DISABLE at import
    try:
        from affalign.backends.hf import COMPLETE, gguf_cache_dir, resolve_dtype

        todo = []
        for model in cfg.generation.model_specs():
            path = model.path or ""
            if model.backend != "hf" or not path.lower().endswith(".gguf") or model.options.get("device_map"):
                continue
            if str(model.options.get("device") or "auto").startswith("cuda"):
                continue
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


def preflight_model(model: ModelSpec) -> None:
    """Fail before starting any actor when an HF model's local path does not exist."""
    if model.backend != "hf" or not model.path:
        return
    path = model.path
    local = path.startswith(("/", "./", "../", "~")) or path.lower().endswith(".gguf")
    if local and not os.path.exists(os.path.expanduser(path)):
        raise ModelLoadError(f"model {model.id!r}: {path!r} does not exist")


def _load_error(exc: BaseException) -> str | None:
    """The ModelLoadError message inside a Ray error from an actor that could not load its model."""
    m = re.search(r"ModelLoadError: (.+)", str(exc))
    return m.group(1).strip() if m else None


def run_generation(
    plan: pa.Table,
    models: list[ModelSpec],
    run: RunDir | str,
    cluster_resources: dict[str, float],
    progress: bool = True,
    other_pools: int = 0,
    no_progress_timeout_s: float | None = None,
    gpus_reserved: float = 0.0,
    models_checked: bool = False,
) -> dict[str, Any]:
    """Generate the plan rows not yet stored in ``run`` (a RunDir, or a local path or URI); returns counts.

    ``other_pools``: actor pools of other datasets running beside this one (they share the CPUs);
    ``gpus_reserved``: GPUs those pools hold (generation never takes them);
    ``no_progress_timeout_s``: fail a stalled pass with a clear message (see runtime.executor);
    ``models_checked``: the caller already ran the placement's checks on ``models`` (no second warning).

    Counts: ``planned`` (plan rows), ``already_done`` (rows found in the store at the start),
    ``generated`` (rows generated now without error), ``errors`` (rows that failed now; retried
    by the next run).
    """
    specs = {m.id: m for m in models}
    unknown = sorted(set(plan.column("model").to_pylist()) - set(specs)) if plan.num_rows else []
    if unknown:
        raise ConfigError(f"the plan has rows of model(s) {unknown} that are not in the models given")
    store = GenerationStore(run)
    stale = store.clean_temp()
    if stale:
        log.info("generation: removed %d temp file(s) of an interrupted run", stale)
    todo = remaining(plan, store.run)
    counts: dict[str, Any] = {"planned": plan.num_rows, "already_done": plan.num_rows - todo.num_rows, "generated": 0, "errors": 0}
    if todo.num_rows == 0:
        return counts
    placement = Placement.from_cluster(cluster_resources)
    for model in models:
        preflight_model(model)
        if not models_checked:
            placement.check_generation(model)

    import ray.data
    started = time.monotonic()
    for model in models:
        rows = todo.filter(pc.equal(todo.column("model"), model.id))
        if rows.num_rows == 0:
            continue
        rows = rows.sort_by([("dataset", "ascending"), ("topic", "ascending"), ("mode", "ascending"), ("index", "ascending")])
        use_gpu = placement.generation_uses_gpu(model)
        bs = batch_rows(model, use_gpu)  # one block per replica batch (the backend may cut it further)
        blocks = [rows.slice(i, bs) for i in range(0, rows.num_rows, bs)]
        stage = GenerateStage(model, use_gpu=use_gpu, batches=len(blocks), max_replicas=placement.generation_replicas(model, gpus_reserved))
        prefetch([stage])  # weights fetched once on the driver, not in each actor
        ds = apply_stages(ray.data.from_arrow(blocks), [stage], cluster_resources, extra_pools=other_pools)
        if progress:
            log.info("generation: model %s: %d rows to generate in %d batches", model.id, rows.num_rows, len(blocks))
        bar = Progress(f"generation {model.id}", rows.num_rows)
        bar.quiet = bar.quiet or not progress

        def take(batch: pa.Table, model_id: str = model.id, bar: Progress = bar) -> None:
            store.write_batch(batch)
            failed = batch.num_rows - batch.column("error").null_count
            counts["errors"] += failed
            counts["generated"] += batch.num_rows - failed
            if failed:
                log.warning("generation: model %s: %d rows of a batch failed (retried by the next run)", model_id, failed)
            bar.update(batch.num_rows)

        try:
            with bar:
                run_pass(ds, f"generation pass of {model.id}", [stage], cluster_resources, no_progress_timeout_s if no_progress_timeout_s is not None else -1, take)
        except Exception as e:
            message = _load_error(e)
            if message is None:
                raise
            raise ModelLoadError(message) from e
    counts["seconds"] = round(time.monotonic() - started, 3)
    return counts


def _scored_ids(out: RunDir) -> set[str]:
    done: set[str] = set()
    for t in out.read_parts(MODEL_SCORES, ["text_id"], what="score part"):
        done.update(t.column("text_id").to_pylist())
    return done


def score_generations(
    cfg: JobConfig,
    gens: pa.Table,
    out: RunDir,
    placement: Placement,
    other_pools: int = 0,
    budget: dict[str, Any] | None = None,
    other_gpu_pools: int = 0,
) -> None:
    """Score generations not scored yet; one part file per run, published atomically.

    ``other_pools``: actor pools of other datasets running at the same time (a generation pool
    running beside this pass), counted when this pass sizes its own pools.
    """
    import ray.data

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
    stages = scoring_stages(cfg.scoring, placement, budget)  # prefetched once, by run_models
    # streamed to the driver (not to_arrow_refs): the driver counts rows for the progress display
    ds = apply_stages(ray.data.from_arrow(table), stages, placement.resources, extra_pools=other_pools, extra_gpu_pools=other_gpu_pools)
    parts: list[pa.Table] = []

    def take(batch: pa.Table) -> None:
        parts.append(batch)
        bar.update(batch.num_rows)

    with Progress("scoring generations", table.num_rows) as bar:
        run_pass(ds, "scoring of generations", stages, placement.resources, cfg.ray.no_progress_timeout_s, take)
    scored = pa.concat_tables(parts, promote_options="default") if parts else table
    scored = scored.filter(pc.is_null(scored.column(schema.REASON)))
    scored = schema.score_table({c: scored.column(c) for c in scored.column_names}, cfg.scoring.dimensions)
    out.write_part(MODEL_SCORES, scored, ("text_id",))


def _score_planned(cfg: JobConfig, plan: pa.Table, out: RunDir, placement: Placement, other_pools: int = 0, budget: dict[str, Any] | None = None, other_gpu_pools: int = 0) -> None:
    """Score the stored generations of ``plan`` not scored yet."""
    gens = read_generations(out)
    gens = gens.filter(pc.is_in(gens.column("plan_id"), plan.column("plan_id")))
    score_generations(cfg, gens, out, placement, other_pools=other_pools, budget=budget, other_gpu_pools=other_gpu_pools)


def run_models(
    cfg: JobConfig,
    kept: list[str],
    topic_counts: dict[str, dict[str, int]],
    out: RunDir,
    agg: reduce.Aggregator,
    placement: Placement,
    budget: dict[str, Any] | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """Generate, score and aggregate every configured model; returns model subjects and run info.

    ``budget``: the job's spending handle (``{"keeper": NAME}``) for OpenAI models and LM judges.
    """
    models = [with_budget(m, budget or {}) for m in cfg.generation.model_specs()]
    topics = choose_topics(cfg, kept, topic_counts)
    plan = build_plan(models, cfg.dataset, topics, cfg.generation.modes, cfg.generation.n_responses, cfg.generation.seed)
    counts: dict[str, Any] = {"planned": plan.num_rows, "already_done": 0, "generated": 0, "errors": 0, "seconds": 0.0}
    # Generation and scoring pools run side by side where both fit at once: a model's
    # generations are scored in the background while the next model generates. One scoring
    # thread, so score passes never overlap each other. The two datasets share the CPUs left
    # after the reserve (each counts the other's pools), and generation leaves the scoring
    # passes' GPUs free; where they do not both fit (one GPU), the passes take turns.
    for model in models:
        placement.check_generation(model)  # before any model generates
    active = [m for m in models if pc.any(pc.equal(plan.column("model"), m.id)).as_py()]
    score_stages = scoring_stages(cfg.scoring, placement, budget)
    prefetch(score_stages)  # once for every model's scoring pass, before any actor starts
    score_gpus = [st.resources.num_gpus for st in score_stages if st.resources.actor]
    overlap = len(active) > 1 and placement.overlap_generation_and_scoring(active, score_gpus)
    if len(active) > 1 and not overlap:
        log.info("generation: scoring each model's responses after it generates (the GPUs do not hold both pools at once)")
    score_pools = len(score_gpus) if overlap else 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="affalign-score") as scoring:
        pending = []
        for model in active:
            model_plan = plan.filter(pc.equal(plan.column("model"), model.id))
            got = run_generation(
                model_plan,
                [model],
                out,
                placement.resources,
                other_pools=score_pools,
                no_progress_timeout_s=cfg.ray.no_progress_timeout_s,
                gpus_reserved=sum(score_gpus) if overlap else 0.0,
                models_checked=True,
            )
            for key in ("already_done", "generated", "errors"):
                counts[key] += got[key]
            counts["seconds"] = round(counts["seconds"] + got.get("seconds", 0.0), 3)
            gen_gpu_pools = 1 if overlap and placement.generation_uses_gpu(model) else 0
            pending.append(scoring.submit(_score_planned, cfg, model_plan, out, placement, 1 if overlap else 0, budget, gen_gpu_pools))
            if not overlap:
                pending.pop().result()  # the next model waits: its pool would hold the GPU
        for done in pending:
            done.result()
    gens = read_generations(out)
    gens = gens.filter(pc.is_in(gens.column("plan_id"), plan.column("plan_id")))
    planned = plan.column("plan_id")
    subjects = sorted({schema.model_subject(m.id, mode) for m in models for mode in cfg.generation.modes})
    for t in out.read_parts(MODEL_SCORES, what="score part"):
        agg.add(t.filter(pc.is_in(t.column("text_id"), planned)))
    info = {
        "models": [{"id": m.id, "kind": m.kind, "backend": m.backend, "path": m.path} for m in models],
        "topics": topics,
        "modes": list(cfg.generation.modes),
        "n_responses": cfg.generation.n_responses,
        "counts": counts,
        "failed": int(gens.num_rows - pc.sum(pc.is_valid(gens.column("text"))).as_py()) if gens.num_rows else 0,
    }
    return subjects, info
