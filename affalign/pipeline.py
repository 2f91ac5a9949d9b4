"""Builds and runs the job from a config: read → validate → tag → score → finalize → reduce.

The human pass streams through Ray Data and writes every row (kept, filtered or rejected) to a
work table; the finalize pass on the driver streams that table once to publish ``rejects/`` and
the score table and to build the additive aggregates the reduce needs, so a rerun of the reduce
or the report never re-scores.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import re
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from affalign import __version__, reduce, schema
from affalign.config import JobConfig
from affalign.errors import AffalignError, InputError
from affalign.io import InputFile, OutputDir, ReadUnit, filesystem, preflight, read_unit, resolve_inputs
from affalign.runtime import cluster_info, init_ray
from affalign.scorers.base import ScorerSpec
from affalign.stages.base import STAGE_ERROR, Resources, Stage, apply_stage, count_pools
from affalign.stages.semantic import tagging_key, topic_stage
from affalign.stages.validate import ValidateStage, retweet_fallback_counts, sampled_mask
from affalign.taxonomy import load_taxonomy

log = logging.getLogger("affalign")

WORK = "_work"
ROWS = f"{WORK}/rows"
DONE_MARKER = "_SUCCESS"


class ReadStage(Stage):
    """Reads the read units named in a batch into the canonical table."""

    name = "read"
    inputs = ("unit",)

    def __init__(self, files: list[InputFile], uri: str, group_column: str | None, s3_endpoint: str | None, s3_region: str | None, done_rows: Any = None):
        self.files = files
        self.uri = uri
        self.group_column = group_column
        self.s3 = (s3_endpoint, s3_region)
        # rows a previous, interrupted attempt already wrote: {file index: sorted row array}
        # (an ObjectRef on Ray, so actors do not each get a pickled copy)
        self.done_rows = done_rows

    def setup(self) -> None:
        self._fs, _ = filesystem(self.uri, *self.s3)
        done = self.done_rows
        if done is not None and not isinstance(done, dict):
            import ray

            done = ray.get(done)
        self._done: dict[int, np.ndarray] = done or {}

    def resources(self) -> Resources:
        return Resources(num_cpus=1, batch_size=1)

    def process(self, batch: pa.Table) -> pa.Table:
        tables = []
        for raw in batch.column("unit").to_pylist():
            unit = ReadUnit.from_json(raw)
            t = read_unit(unit, self.files[unit.file_index], self._fs, self.group_column)
            done = self._done.get(unit.file_index)
            if done is not None and len(done):
                rows = t.column(schema.SOURCE_ROW).to_numpy()
                t = t.filter(pa.array(~np.isin(rows, done)))
            tables.append(t)
        return pa.concat_tables(tables)


class SampleStage(Stage):
    """Marks tagged rows outside the scoring sample as ``not_sampled`` (topic counts still see them)."""

    name = "sample"
    inputs = (schema.TWEET_ID, schema.REASON)

    def __init__(self, fraction: float):
        self.fraction = fraction

    def resources(self) -> Resources:
        return Resources(num_cpus=1, batch_size=None)

    def process(self, batch: pa.Table) -> pa.Table:
        reason = batch.column(schema.REASON).combine_chunks()
        out = pc.invert(sampled_mask(batch.column(schema.TWEET_ID).combine_chunks(), self.fraction))
        new = pc.if_else(pc.and_(pc.is_null(reason), out), pa.scalar("not_sampled"), reason)
        return batch.set_column(batch.schema.get_field_index(schema.REASON), schema.REASON, new)


# scorers whose dimensions share one encoder: every dimension costs one more small head, so any
# dimensions with the same encoder settings are scored in one pass (one encoding of each text)
SHARED_ENCODER_SCORERS = ("offline",)


def _pass_key(spec: ScorerSpec) -> tuple:
    """What makes two dimensions need separate passes; for a shared-encoder scorer, neither its
    ``label_map`` (unused) nor its ``batch_size`` (the pass takes the largest) does."""
    if spec.scorer not in SHARED_ENCODER_SCORERS:
        return spec.key()
    return (spec.scorer, spec.model, spec.device, spec.dtype, spec.max_length, spec.num_gpus, tuple(sorted((k, repr(v)) for k, v in spec.options.items())))


class WriteStage(Stage):
    """Writes each batch of the human pass as one part file of the work table; returns its row count.

    The driver consumes only these counts (the progress display, on embedded Ray and on a
    cluster alike), never the rows. A part file is named by a hash of its rows' (file, row)
    keys, so a batch retried after a crash overwrites its own file instead of adding a copy;
    it is published atomically (temp name, then move), so a resumed run reads only whole parts.
    """

    name = "write"
    inputs = (schema.SOURCE_FILE, schema.SOURCE_ROW)
    quarantine = False  # a failed write fails the batch (retried); rows are never marked for it

    def __init__(self, uri: str, rows_dir: str, s3_endpoint: str | None, s3_region: str | None):
        self.uri = uri
        self.rows_dir = rows_dir
        self.s3 = (s3_endpoint, s3_region)

    def setup(self) -> None:
        self._out = OutputDir(self.uri, *self.s3)

    def resources(self) -> Resources:
        return Resources(num_cpus=1, batch_size=None)

    def process(self, batch: pa.Table) -> pa.Table:
        import hashlib

        if batch.num_rows:
            h = hashlib.sha256()
            for col in (schema.SOURCE_FILE, schema.SOURCE_ROW):
                h.update(np.ascontiguousarray(batch.column(col).to_numpy()).astype(np.int64).tobytes())
            self._out.publish_table(f"{self.rows_dir}/part-{h.hexdigest()[:24]}.parquet", batch)
        return pa.table({"rows": pa.array([batch.num_rows], pa.int64())})


class NoProgressError(AffalignError):
    """A pass made no progress for ``ray.no_progress_timeout_s``; the message names what it waits for (exit 1)."""


def stall_report(pass_name: str, stages: list[Stage], cluster: dict[str, float], timeout_s: float, detail: str = "") -> str:
    """A clear message for a stalled pass: its stages, what each asks for, what the cluster has free."""
    from affalign.stages.base import map_batches_kwargs

    try:
        import ray

        free = {k: v for k, v in ray.available_resources().items() if k in ("CPU", "GPU")}
    except Exception:  # noqa: BLE001 - the report must not fail on a dead cluster
        free = {}
    pools = sum(1 for st in stages if st.resources().actor)
    lines = [
        f"the {pass_name} made no progress for {timeout_s:.0f}s (ray.no_progress_timeout_s) and was stopped.",
        f"Ray cluster: {cluster.get('CPU', 0):g} CPU, {cluster.get('GPU', 0):g} GPU in all; free now: {free.get('CPU', 0):g} CPU, {free.get('GPU', 0):g} GPU.",
        "Its stages and what one replica of each asks for:",
    ]
    waits = []
    for st in stages:
        kw = map_batches_kwargs(st, cluster, pools=pools)
        kind = f"actor pool of {kw['compute'].min_size}-{kw['compute'].max_size}" if "compute" in kw else "tasks"
        gpus = float(kw.get("num_gpus", 0) or 0)
        lines.append(f"  - {st.name} ({type(st).__name__}): {kind}, {kw['num_cpus']:g} CPU, {gpus:g} GPU each")
        if gpus > float(cluster.get("GPU", 0)):
            waits.append(f"stage {st.name} waits for a GPU ({gpus:g} per actor) that the cluster does not have")
        elif gpus > free.get("GPU", 0) + 1e-9:
            waits.append(f"stage {st.name} waits for a free GPU")
        if kw["num_cpus"] > free.get("CPU", 0) + 1e-9:
            waits.append(f"stage {st.name} waits for {kw['num_cpus']:g} free CPU")
    lines.append("Waiting: " + ("; ".join(waits) if waits else "no stage lacks resources: a replica is stuck or far slower than the timeout (a model loading?)"))
    if detail:
        lines.append("Ray Data: " + detail.strip())
    lines.append("Raise ray.no_progress_timeout_s (or -1 to wait forever) if this pass is expected to be this slow.")
    return "\n".join(lines)


def consume(ds: Any, pass_name: str, stages: list[Stage], cluster: dict[str, float], timeout_s: float, on_batch: Any) -> None:
    """Iterate a dataset's output on the driver, calling ``on_batch(table)``; a stall fails clearly.

    Ray Data's own guard (``DataContext.execution_no_progress_timeout_s``: no block moved through
    any operator's queues) detects the stall; this turns its error into one naming the stage and
    the resources it waits for.
    """
    from ray.data.exceptions import ExecutionTimeoutError

    ds.context.execution_no_progress_timeout_s = timeout_s if timeout_s and timeout_s > 0 else -1
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            on_batch(batch)
    except ExecutionTimeoutError as exc:
        raise NoProgressError(stall_report(pass_name, stages, cluster, timeout_s, str(exc).split("If this is expected")[0])) from None


def scorer_groups(cfg: JobConfig) -> list[tuple[ScorerSpec, tuple[str, ...]]]:
    """Dimensions that share one scorer spec (or one encoder, see ``_pass_key``) are scored in one pass."""
    groups: dict[tuple, tuple[ScorerSpec, list[str]]] = {}
    for dim in cfg.scoring.dimensions:
        spec = cfg.scoring.spec(dim)
        key = _pass_key(spec)
        if key in groups:
            first, dims = groups[key]
            if spec.batch_size > first.batch_size:
                groups[key] = (dataclasses.replace(first, batch_size=spec.batch_size), dims)
            groups[key][1].append(dim)
        else:
            groups[key] = (spec, [dim])
    return [(spec, tuple(dims)) for spec, dims in groups.values()]


# scorers that run a transformer and can use a GPU
GPU_SCORERS = ("hf", "offline")


def gpu_shares(cfg: JobConfig, cluster: dict[str, float] | None) -> dict[tuple, float]:
    """GPUs per actor of each scoring pass whose spec leaves ``num_gpus`` unset.

    Decided from the Ray cluster's resources, not the driver's machine (on a cluster the driver
    runs on a head without a GPU): ``device: auto`` (or ``cuda``) gets GPUs when the cluster has
    any. When there are fewer GPUs than GPU passes (e.g. two classifiers on one GPU), the passes
    share: each actor asks for ``GPUs / passes``, so both pools fit and neither waits forever.
    """
    if cluster is None:
        return {}
    gpus = float(cluster.get("GPU", 0.0))
    wanting = [spec for spec, _ in scorer_groups(cfg) if spec.num_gpus is None and spec.scorer in GPU_SCORERS and spec.device != "cpu"]
    if not wanting:
        return {}
    share = min(1.0, gpus / len(wanting)) if gpus > 0 else 0.0
    return {spec.key(): share for spec in wanting}


def score_stages(cfg: JobConfig, cluster: dict[str, float] | None = None) -> list[Stage]:
    """The scoring stages of a job; with ``cluster``, GPUs per actor follow the cluster (see gpu_shares)."""
    if not cfg.scoring.enabled:
        return []
    from affalign.stages.classify import AffectScoreStage, TokenizeStage

    shares = gpu_shares(cfg, cluster)
    gpus = float((cluster or {}).get("GPU", 0.0))
    stages: list[Stage] = []
    for spec, dims in scorer_groups(cfg):
        key = spec.key()
        if key in shares:
            spec = dataclasses.replace(spec, num_gpus=shares[key])
        elif cluster is not None and (spec.num_gpus or 0) > 0 and gpus < float(spec.num_gpus or 0):
            log.warning(
                "scoring.%s.num_gpus is %s but the Ray cluster has %s GPU: the scoring actors wait for a GPU node "
                "(autoscaling); on a machine without a GPU set num_gpus: 0",
                dims[0],
                spec.num_gpus,
                gpus,
            )
        if spec.scorer == "judge" and cfg.generation.budget and "budget" not in spec.options:
            # the judge draws on the job's budget, the same one generation uses
            spec = dataclasses.replace(spec, options={**spec.options, "budget": dict(cfg.generation.budget)})
        if spec.scorer == "hf":
            # tokenization runs in CPU tasks so the GPU actors only run forward passes
            stages.append(TokenizeStage(spec))
        # an LM judge's budget lives in its actor: one actor keeps it exact (it sends requests
        # concurrently itself)
        stages.append(AffectScoreStage(spec, dims, max_actors=1 if spec.scorer == "judge" else None))
    return stages


@dataclass
class RunState:
    """What a run learns as it goes; becomes run.json."""

    cfg: JobConfig
    out: str
    started: float = field(default_factory=time.time)
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def timed(self, name: str):
        state = self

        class _T:
            def __enter__(self):
                self.t0 = time.perf_counter()
                log.info("stage %s ...", name)

            def __exit__(self, *exc):
                state.timings[name] = round(time.perf_counter() - self.t0, 3)
                log.info("stage %s done in %.1fs", name, state.timings[name])

        return _T()


_SECRET_KEY = re.compile(r"(api[_-]?key|secret|token|password|credential)", re.IGNORECASE)


def redact(obj: Any) -> Any:
    """A copy of a config tree with the values of secret-looking keys replaced (never written out)."""
    if isinstance(obj, dict):
        return {k: ("***" if _SECRET_KEY.search(str(k)) and not str(k).endswith("_env") else redact(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


def _versions() -> dict[str, str]:
    out = {"affalign": __version__, "python": platform.python_version()}
    for pkg in ("ray", "pyarrow", "numpy", "scipy", "torch", "transformers", "openai", "pyahocorasick"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _bias_table_digest(cfg: JobConfig) -> str | None:
    import hashlib

    from affalign.ideology import bias_table_text

    if not cfg.input.ideology.enabled:
        return None
    return hashlib.sha256(bias_table_text(cfg.input.ideology.bias_table).encode()).hexdigest()


def work_key(cfg: JobConfig, files: list[InputFile]) -> str:
    """Content key of the human pass: inputs and every setting that changes a row's content."""
    import hashlib

    tax = load_taxonomy(cfg.taxonomy_ref)
    blob = json.dumps(
        {
            "version": __version__,
            "bias_table": _bias_table_digest(cfg),
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


def ideology_key(cfg: JobConfig, files: list[InputFile]) -> str:
    """Content key of the ideology pass: inputs, its settings and the bias table's content."""
    import hashlib

    blob = json.dumps(
        {"version": __version__, "files": [(f.uri, f.size, f.format) for f in files], "ideology": cfg.to_dict()["input"]["ideology"], "table": _bias_table_digest(cfg)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def ideology_pass(cfg: JobConfig, files: list[InputFile], units: list[ReadUnit], out: OutputDir, cluster: dict[str, float], work: str) -> tuple[pa.Table, dict[str, Any]]:
    """Label users from the domains they share (one streaming pass); returns (user_id, group) and counts.

    Per-user sums are exact integers, so partial sums from any split of the corpus add up to the
    same labels. The result is kept in ``work`` (``_work/ideology-<key>/``, see
    :func:`ideology_key`) and reused by a rerun; every
    user's mean bias and status is published as ``ideology/users.parquet``.
    """
    import ray.data

    from affalign.ideology import combine_sums, label_users, labelled_groups
    from affalign.stages.ideology import DomainSumsStage

    ideo = cfg.input.ideology
    if out.exists(work, "users.parquet") and out.exists(work, "counts.json"):
        log.info("ideology pass already complete in %s; reusing it", work)
        with out.fs.open_input_file(out.path(work, "users.parquet")) as f:
            users = pq.read_table(f)
        with out.fs.open_input_stream(out.path(work, "counts.json")) as f:
            counts = json.loads(f.read())
    else:
        items = [{"unit": u.to_json()} for u in units]
        sums = combine_sums([])
        if items:
            ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
            stage = DomainSumsStage(files, cfg.input.path, ideo.domains_column, ideo.bias_table, cfg.storage.s3_endpoint, cfg.storage.s3_region)
            ds = apply_stage(ds, stage, cluster)
            pending: list[pa.Table] = [sums]
            from affalign.progress import Progress

            def take(part: pa.Table) -> None:
                nonlocal pending
                pending.append(part)
                if len(pending) >= 16:  # bound the driver's memory: fold partials as they arrive
                    pending = [combine_sums(pending)]
                bar.update(1)  # one partial per read unit (batch_size 1)

            with Progress("ideology pass", len(items), unit="read units") as bar:
                consume(ds, "ideology pass", [stage], cluster, cfg.ray.no_progress_timeout_s, take)
            sums = combine_sums(pending)
        result = label_users(sums, ideo.threshold, ideo.min_domains, tuple(ideo.labels), ideo.cutoff, tuple(ideo.tails))
        users, counts = result.users, result.counts
        out.publish_table(f"{work}/users.parquet", users)
        out.publish_bytes(f"{work}/counts.json", json.dumps(counts).encode())
    out.publish_table("ideology/users.parquet", users)
    return labelled_groups(users, ideo.labels), counts


def done_rows(out: OutputDir, rows_dir: str) -> dict[int, np.ndarray]:
    """Rows already written by an interrupted attempt; unreadable (half-written) parts are removed."""
    done: dict[int, list[np.ndarray]] = {}
    for path in out.list_files(rows_dir):
        try:
            with out.fs.open_input_file(path) as f:
                t = pq.read_table(f, columns=[schema.SOURCE_FILE, schema.SOURCE_ROW])
        except (OSError, pa.ArrowException):
            log.warning("removing unreadable partial output %s", path)
            out.fs.delete_file(path)
            continue
        files = t.column(schema.SOURCE_FILE).to_numpy()
        rows = t.column(schema.SOURCE_ROW).to_numpy()
        for fi in np.unique(files):
            done.setdefault(int(fi), []).append(rows[files == fi])
    return {fi: np.unique(np.concatenate(parts)) for fi, parts in done.items()}


def human_pass(
    cfg: JobConfig,
    files: list[InputFile],
    units: list[ReadUnit],
    out: OutputDir,
    cluster: dict[str, float],
    rows_dir: str,
    state: RunState | None = None,
    user_groups: pa.Table | None = None,
) -> None:
    """Stream every input row through read → validate → tag → sample → score into the work table.

    Resumable: a finished pass leaves a marker and is skipped; an interrupted one is completed by
    reading only the rows its readable part files lack (nothing is scored twice).
    """
    import ray
    import ray.data

    if out.exists(rows_dir, DONE_MARKER):
        log.info("human pass already complete in %s; reusing it", rows_dir)
        if state is not None:
            state.info["resumed"] = "human pass reused"
        return
    done = done_rows(out, rows_dir)
    todo = []
    for u in units:
        have = done.get(u.file_index)
        if u.num_rows >= 0 and have is not None:
            n_done = int(np.count_nonzero((have >= u.row_start) & (have < u.row_start + u.num_rows)))
            if n_done == u.num_rows:
                continue
        todo.append(u)
    if done and state is not None:
        state.info["resumed"] = f"{sum(len(v) for v in done.values())} rows reused, {len(todo)} of {len(units)} read units to do"
    if todo:
        items = [{"unit": u.to_json()} for u in todo]
        ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        done_ref = ray.put(done) if done else None
        groups_ref = ray.put(user_groups) if user_groups is not None else None
        # rows known before reading: parquet units know theirs, jsonl/csv ones do not (-1)
        known = all(u.num_rows >= 0 for u in todo)
        total = sum(u.num_rows for u in todo) - sum(len(v) for v in done.values()) if known else None
        _stream_rows(cfg, files, ds, out, cluster, rows_dir, done_ref, groups_ref, total=total)
    out.publish_bytes(f"{rows_dir}/{DONE_MARKER}", b"")


def rows_per_block(total: int | None) -> int:
    """Rows per block of the scored stream: about 20 progress steps, at least 2,048 rows a block
    (per-block overhead) and at most 65,536 (work table part files of a few MB)."""
    if total is None:
        return 16_384
    return int(max(2_048, min(65_536, total // 20)))


def _stream_rows(cfg: JobConfig, files: list[InputFile], ds: Any, out: OutputDir, cluster: dict[str, float], rows_dir: str, done_ref: Any, groups_ref: Any = None, total: int | None = None) -> None:
    inferred = cfg.input.ideology.enabled
    stages: list[Stage] = [
        ReadStage(files, cfg.input.path, None if inferred else cfg.input.group_column, cfg.storage.s3_endpoint, cfg.storage.s3_region, done_ref),
        ValidateStage(cfg.input.groups, cfg.input.drop_retweets, cfg.input.drop_quotes, check_group=not inferred),
    ]
    if inferred:
        from affalign.stages.ideology import UserGroupStage

        stages.append(UserGroupStage(groups_ref))
    stages.append(topic_stage(cfg))  # tagging.mode: keywords (TopicTagStage), semantic or hybrid
    if cfg.scoring.sample_fraction < 1.0:
        stages.append(SampleStage(cfg.scoring.sample_fraction))
    scoring = score_stages(cfg, cluster)
    stages += scoring
    passes = [f"{st.spec.scorer} [{', '.join(st.dimensions)}]" for st in scoring if hasattr(st, "dimensions")]
    log.info("human pass: %d scoring pass(es)%s", len(passes), ": " + "; ".join(passes) if passes else "")
    for stage in stages:
        if hasattr(stage, "prefetch"):
            stage.prefetch()  # models are fetched once on the driver, not once per actor
    stages.append(WriteStage(out.uri, rows_dir, cfg.storage.s3_endpoint, cfg.storage.s3_region))
    # every actor pool of the pass is sized together, so read tasks always keep a CPU
    pools = count_pools(stages)
    for stage in stages:
        if scoring and stage is scoring[0]:
            # rows stream on in blocks of a bounded size: a read unit (up to 200,000 rows, or a
            # whole small file) would otherwise reach the scorer, the writer and the progress
            # display as one block, shown only when the unit is done
            ds = ds.repartition(target_num_rows_per_block=rows_per_block(total))
        ds = apply_stage(ds, stage, cluster, pools=pools)
    from affalign.progress import Progress

    with Progress("human pass", total) as bar:
        consume(ds, "human pass", stages, cluster, cfg.ray.no_progress_timeout_s, lambda b: bar.update(int(pc.sum(b.column("rows")).as_py() or 0)))


def _dup_keys(out: OutputDir, rows_dir: str) -> set[tuple[int, int]]:
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
    from affalign.scorers.registry import label_thresholds

    if not cfg.scoring.enabled:
        return {}
    return label_thresholds({d: cfg.scoring.spec(d) for d in cfg.scoring.dimensions})


def finalize(cfg: JobConfig, out: OutputDir, state: RunState, rows_dir: str) -> reduce.Aggregator:
    """One pass over the work table: publish rejects and scores, count reasons, aggregate."""
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
        subjects = pc.binary_join_element_wise(pa.scalar("human:"), member.column(schema.GROUP), "")
        agg.add_members(member.column(schema.TOPICS).combine_chunks(), subjects.combine_chunks() if isinstance(subjects, pa.ChunkedArray) else subjects)
        kept = t.filter(pc.is_null(reason))
        for g, c in zip(*pc.value_counts(kept.column(schema.GROUP)).flatten(), strict=True):
            group_counts[g.as_py()] = group_counts.get(g.as_py(), 0) + c.as_py()
        if kept.num_rows and score_cols:
            scored = pa.table(
                {
                    "text_id": kept.column(schema.TWEET_ID),
                    "dataset": pa.array([cfg.dataset] * kept.num_rows, pa.string()),
                    schema.SUBJECT: pc.binary_join_element_wise(pa.scalar("human:"), kept.column(schema.GROUP), ""),
                    schema.TOPICS: kept.column(schema.TOPICS),
                    **({schema.USER_ID: kept.column(schema.USER_ID)} if schema.USER_ID in kept.column_names else {}),  # report: resample by user
                    **{c: kept.column(c) for c in score_cols},
                }
            )
            agg.add(scored)
            out.publish_table(f"scores/human/part-{score_parts:05d}.parquet", scored)
            score_parts += 1
    state.info["rows"] = {
        "in": rows_in,
        "kept": reasons.get("kept", 0),
        "rejected": sum(v for k, v in reasons.items() if k in schema.REJECT_REASONS or k == STAGE_ERROR),
        "stage_errors": dict(sorted(errors.items())[:50]),
        "filtered": sum(v for k, v in reasons.items() if k in schema.FILTER_REASONS),
        "by_reason": dict(sorted(reasons.items())),
        "kept_by_group": dict(sorted(group_counts.items())),
    }
    if fallback["rows_without_is_retweet"] or fallback["rows_without_is_quote"]:
        state.info["rows"]["retweet_detection"] = _retweet_note(cfg, fallback, rows_in)
        log.warning("input: %s", state.info["rows"]["retweet_detection"]["note"])
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


def run_job(cfg: JobConfig, out_uri: str, address: str | None = None) -> dict[str, Any]:
    """Run a job end to end; returns the run.json document. Raises AffalignError on bad input."""
    state = RunState(cfg, out_uri)
    taxonomy = load_taxonomy(cfg.taxonomy_ref)
    with state.timed("preflight"):
        files = resolve_inputs(cfg.input.path, cfg.input.format, cfg.storage.s3_endpoint, cfg.storage.s3_region)
        fs, _ = filesystem(cfg.input.path, cfg.storage.s3_endpoint, cfg.storage.s3_region)
        ideo = cfg.input.ideology
        extra = {ideo.domains_column: "input.ideology.domains_column"} if ideo.enabled else None
        units, file_infos = preflight(files, fs, None if ideo.enabled else cfg.input.group_column, extra)
    out = OutputDir(out_uri, cfg.storage.s3_endpoint, cfg.storage.s3_region)
    # A run in progress is never mistaken for a finished one: outputs of an earlier run are
    # withdrawn first, and run.json says "complete" only after every output is published.
    for name in ("distributions.parquet", "alignment.parquet", "summary.csv"):
        out.delete_file(name)
    doc: dict[str, Any] = {
        "status": "running",
        "job": cfg.name,
        "dataset": cfg.dataset,
        "config_hash": cfg.hash(),
        "config": redact(cfg.to_dict()),
        "inputs": file_infos,
        "versions": _versions(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(state.started)),
    }
    out.publish_bytes("run.json", json.dumps(doc, indent=1, default=str).encode())
    try:
        warmup = None
        if cfg.generation.enabled:
            from affalign.generation_pipeline import start_model_warmup

            # local GGUF models are converted on the driver while Ray starts and the human pass runs
            warmup = start_model_warmup(cfg)
        cluster = _init_ray(cfg, address)
        doc["ray"] = cluster_info()
        keeper = None
        if cfg.generation.budget:
            # one budget for every OpenAI generation replica and LM-judge actor of the job
            from affalign.backends.budget_keeper import start_keeper

            name, keeper = start_keeper({k: v for k, v in cfg.generation.budget.items() if k != "name"})
            cfg = dataclasses.replace(cfg, generation=dataclasses.replace(cfg.generation, budget={"keeper": name}))
        rows_dir = f"{ROWS}-{work_key(cfg, files)}"
        # work tables of other configs or inputs are stale: only this key's can be resumed
        current = {out.path(rows_dir)}
        ideology_dir = f"{WORK}/ideology-{ideology_key(cfg, files)}" if cfg.input.ideology.enabled else None
        if ideology_dir:
            current.add(out.path(ideology_dir))
        for stale in out.list_dirs(WORK):
            if stale not in current and stale.rsplit("/", 1)[-1].startswith(("rows-", "ideology-")):
                out.fs.delete_dir(stale)
        doc["work"] = rows_dir
        user_groups = None
        if ideology_dir:
            with state.timed("ideology"):
                user_groups, doc["ideology"] = ideology_pass(cfg, files, units, out, cluster, ideology_dir)
            log.info("ideology: %s", doc["ideology"])
        with state.timed("human_pass"):
            human_pass(cfg, files, units, out, cluster, rows_dir, state, user_groups)
        with state.timed("finalize"):
            agg = finalize(cfg, out, state, rows_dir)
        groups = list(cfg.input.groups) or (list(cfg.input.ideology.labels) if cfg.input.ideology.enabled else sorted(state.info["rows"]["kept_by_group"]))
        kept, topic_counts = reduce.kept_topics(agg.members, taxonomy.topic_names, groups, cfg.min_texts_per_group)
        model_subjects: list[str] = []
        with state.timed("generation"):
            if warmup is not None:
                warmup.join()  # replicas then load the converted copy instead of converting again
            if cfg.generation.enabled and kept:
                from affalign.generation_pipeline import run_models

                model_subjects, gen_info = run_models(cfg, kept, topic_counts, out, agg, cluster)
                doc["generation"] = gen_info
        if keeper is not None:
            import ray

            doc.setdefault("generation", {})["budget_spent"] = ray.get(keeper.spent.remote())
        with state.timed("reduce"):
            dists = agg.distributions(cfg.dataset, cfg.reduce.mode, kept)
            align = reduce.alignment_table(dists, reduce.subject_pairs(groups, model_subjects))
            summary = reduce.summary_rows(align, groups)
            out.publish_table("distributions.parquet", dists)
            out.publish_table("alignment.parquet", align)
            out.publish_bytes("summary.csv", _summary_csv(summary).encode())
        doc.update(
            status="complete",
            rows=state.info["rows"],
            groups=groups,
            topics={
                "kept": [{"topic": t, "issue": taxonomy.issue_of(t), "counts": topic_counts[t]} for t in kept],
                "dropped": [
                    {"topic": t, "issue": taxonomy.issue_of(t), "counts": topic_counts[t], "reason": f"a group has fewer than {cfg.min_texts_per_group} tweets"}
                    for t in taxonomy.topic_names
                    if t not in kept
                ],
            },
            outputs={"distributions": "distributions.parquet", "alignment": "alignment.parquet", "summary": "summary.csv", "rejects": "rejects/", "scores": "scores/"},
            timings=state.timings,
            reduce_thresholds=agg.label_tau,  # the cuts finalize aggregated with
            resumed=state.info.get("resumed"),
            finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        doc["summary"] = summary
        out.publish_bytes("run.json", json.dumps(doc, indent=1, default=str).encode())
        if cfg.report:
            # the report reads only the published tables; its failure is recorded, and the
            # tables stay complete (`affalign report RUN_DIR` can be rerun on its own)
            with state.timed("report"):
                try:
                    from affalign.report import build_report

                    paths = build_report(out_uri, s3_endpoint=cfg.storage.s3_endpoint, s3_region=cfg.storage.s3_region)
                    doc["report"] = out.uri_of("report", "report.html") if "report.html" in paths else None
                except Exception as exc:  # noqa: BLE001
                    log.exception("the report failed")
                    doc["report_error"] = f"{type(exc).__name__}: {exc}"[:1000]
            doc["timings"] = state.timings
            out.publish_bytes("run.json", json.dumps(doc, indent=1, default=str).encode())
        out.delete_dir("_tmp")
        return doc
    except BaseException as exc:
        doc.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:2000], timings=state.timings)
        try:
            out.publish_bytes("run.json", json.dumps(doc, indent=1, default=str).encode())
        except Exception:  # noqa: BLE001 - the original error matters more
            log.exception("could not record the failed run")
        raise


def _init_ray(cfg: JobConfig, address: str | None) -> dict[str, float]:
    return init_ray(address or cfg.ray.address, cfg.ray.num_cpus, cfg.ray.num_gpus)


def _summary_csv(rows: list[dict]) -> str:
    cols = list(schema.SUMMARY_COLUMNS) + ["metric"]
    lines = [",".join(cols)]
    for r in rows:
        lines.append(",".join(_csv_cell(r[c]) for c in cols))
    return "\n".join(lines) + "\n"


def _csv_cell(v: Any) -> str:
    if isinstance(v, float):
        return "" if np.isnan(v) else f"{v:.6f}"
    s = str(v)
    if any(ch in s for ch in ',"\n'):
        s = '"' + s.replace('"', '""') + '"'
    return s


def unwrap_error(exc: BaseException) -> BaseException:
    """The affalign error inside a Ray task error, if any (so bad input still exits 2)."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 10:
        if isinstance(cur, InputError):
            return cur
        cause = getattr(cur, "cause", None) or cur.__cause__
        cur = cause
        seen += 1
    return exc
