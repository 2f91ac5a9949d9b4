"""The job: preflight → ideology pass → human pass → finalize → model pass → reduce → report.

A run in progress is never mistaken for a finished one: outputs of an earlier run are withdrawn
first, and run.json says "complete" only after every output is published.
"""

from __future__ import annotations

import json
import logging
import platform
import re
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np

from affalign import __version__, reduce, schema
from affalign.backends.budget_keeper import start_keeper
from affalign.config import JobConfig
from affalign.inputs import preflight, resolve_inputs
from affalign.passes.human import finalize, human_pass, work_key
from affalign.passes.ideology import ideology_key, ideology_pass
from affalign.passes.models import run_models, start_model_warmup
from affalign.report import build_report
from affalign.rundir import RunDir, filesystem
from affalign.runtime.cluster import cluster_info, init_ray
from affalign.runtime.executor import PassWork, prune_stale_work
from affalign.runtime.placement import Placement
from affalign.taxonomy import load_taxonomy

log = logging.getLogger("affalign")


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
    out = RunDir(out_uri, cfg.storage.s3_endpoint, cfg.storage.s3_region)
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
            # local GGUF models are converted on the driver while Ray starts and the human pass runs
            warmup = start_model_warmup(cfg)
        placement = Placement.from_cluster(init_ray(address or cfg.ray.address, cfg.ray.num_cpus, cfg.ray.num_gpus))
        doc["ray"] = cluster_info()
        keeper, budget = None, None
        if cfg.generation.budget.enabled:
            # one budget for every OpenAI generation replica and LM-judge actor of the job; the
            # handle travels explicitly to the passes (the config is never rewritten)
            name, keeper = start_keeper(cfg.generation.budget.limits())
            budget = {"keeper": name}
        rows_work = PassWork(out, "rows", work_key(cfg, files), (schema.SOURCE_FILE, schema.SOURCE_ROW))
        ideology_work = PassWork(out, "ideology", ideology_key(cfg, files)) if cfg.input.ideology.enabled else None
        # work tables of other configs or inputs are stale: only this key's can be resumed
        prune_stale_work(out, [w for w in (rows_work, ideology_work) if w is not None], ("rows", "ideology"))
        doc["work"] = rows_work.rel
        user_groups = None
        if ideology_work is not None:
            with state.timed("ideology"):
                user_groups, doc["ideology"] = ideology_pass(cfg, files, units, out, placement, ideology_work)
            log.info("ideology: %s", doc["ideology"])
        with state.timed("human_pass"):
            human_pass(cfg, files, units, out, placement, rows_work, state.info, user_groups, budget)
        with state.timed("finalize"):
            agg = finalize(cfg, out, state.info, rows_work)
        groups = list(cfg.input.groups) or (list(cfg.input.ideology.labels) if cfg.input.ideology.enabled else sorted(state.info["rows"]["kept_by_group"]))
        kept, topic_counts = reduce.kept_topics(agg.members, taxonomy.topic_names, groups, cfg.min_texts_per_group)
        model_subjects: list[str] = []
        with state.timed("generation"):
            if warmup is not None:
                warmup.join()  # replicas then load the converted copy instead of converting again
            if cfg.generation.enabled and kept:
                model_subjects, gen_info = run_models(cfg, kept, topic_counts, out, agg, placement, budget)
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
