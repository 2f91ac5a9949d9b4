"""Reading a run: a run directory's tables into a typed, in-memory :class:`RunData`.

The one job of this module is I/O: ``run.json``, ``distributions.parquet``, ``alignment.parquet``,
``summary.csv`` and the per-text score tables under ``scores/`` (grouped into (topic, subject) cells
for the bootstrap). It checks what it reads (missing files and columns are an :class:`InputError`
naming the file) and records what a reader should know as ``RunData.warnings``; it computes no
statistics and writes nothing.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from affalign import schema, stats
from affalign.errors import InputError
from affalign.reduce import score_matrix
from affalign.rundir import filesystem
from affalign.schema import DIMENSIONS
from affalign.stats import split_model_subject

SCORE_DIRS = ("scores/human", "scores/model")
# the kinds of model run.json records, in the order the report lists them, and their titles
KIND_ORDER = ("instruct", "base", "unknown")
KIND_TITLES = {"instruct": "instruction-tuned", "base": "base", "unknown": "kind not recorded"}


@dataclass
class ModelInfo:
    """A model of the run: its id, its kind (``base``, ``instruct`` or ``unknown``) and its backend."""

    id: str
    kind: str = "unknown"  # base | instruct | unknown
    backend: str = ""


@dataclass
class RunData:
    """What the report reads of a run directory: its record, its tables and its per-text score cells."""

    uri: str
    doc: dict[str, Any]  # run.json ({} where missing)
    groups: list[str]  # the groups with results, in the run's order
    models: list[ModelInfo]  # the models with results, ordered by KIND_ORDER
    mode: str  # the reduce's distribution mode
    tau: float
    distributions: pd.DataFrame
    alignment: pd.DataFrame
    summary: pd.DataFrame | None
    topic_order: list[str]
    cells: dict[str, dict[tuple[str, str], dict[str, np.ndarray]]] = field(default_factory=dict)  # dataset -> cells
    warnings: list[str] = field(default_factory=list)

    @property
    def datasets(self) -> list[str]:
        return sorted(self.distributions["dataset"].unique().tolist())


def _exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.File


def _read_parquet(fs: pafs.FileSystem, path: str, columns: list[str] | None = None) -> pa.Table:
    with fs.open_input_file(path) as f:
        return pq.read_table(f, columns=columns)


def load_run(run_dir: str, s3_endpoint: str | None = None, s3_region: str | None = None, read_scores: bool = True) -> RunData:
    """A run directory's tables (and its per-text scores, by dataset and (topic, subject))."""
    fs, root = filesystem(run_dir.rstrip("/"), s3_endpoint, s3_region)
    info = fs.get_file_info(root)
    if info.type != pafs.FileType.Directory:
        raise InputError(f"{run_dir}: not a run directory (it does not exist)")
    warnings: list[str] = []
    doc: dict[str, Any] = {}
    if _exists(fs, f"{root}/run.json"):
        with fs.open_input_stream(f"{root}/run.json") as f:
            try:
                doc = json.loads(f.read().decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise InputError(f"{run_dir}/run.json: not valid JSON: {exc}") from exc
    else:
        warnings.append("run.json is missing: groups, models and the reduce mode are inferred from the tables.")
    for name in ("distributions.parquet", "alignment.parquet"):
        if not _exists(fs, f"{root}/{name}"):
            status = doc.get("status", "unknown")
            raise InputError(f"{run_dir}/{name}: missing (run status: {status}); the report needs a completed reduce")
    if doc and doc.get("status") != "complete":
        warnings.append(f"run.json status is {doc.get('status')!r}, not 'complete': the tables may be stale or partial.")
    dists = _read_parquet(fs, f"{root}/distributions.parquet").to_pandas()
    align = _read_parquet(fs, f"{root}/alignment.parquet").to_pandas()
    for name, df, cols in (("distributions.parquet", dists, schema.DISTRIBUTIONS_SCHEMA.names), ("alignment.parquet", align, schema.ALIGNMENT_SCHEMA.names)):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise InputError(f"{run_dir}/{name}: missing column(s) {', '.join(missing)}")
    summary = None
    if _exists(fs, f"{root}/summary.csv"):
        with fs.open_input_stream(f"{root}/summary.csv") as f:
            summary = pd.read_csv(io.BytesIO(f.read()), keep_default_na=False, na_values=[""])

    subjects = sorted(dists["subject"].unique().tolist())
    groups = [str(g) for g in doc.get("groups") or []]
    present_groups = [s[len(schema.HUMAN_PREFIX) :] for s in subjects if s.startswith(schema.HUMAN_PREFIX)]
    if not groups:
        groups = present_groups
    groups = [g for g in groups if g in present_groups]
    cfg = doc.get("config") or {}
    red = cfg.get("reduce") or {}
    mode = red.get("mode", "mean")
    tau = float(red.get("tau", 0.5))
    if mode not in stats.MODES:
        raise InputError(f"{run_dir}/run.json: config.reduce.mode {mode!r} is not one of {', '.join(stats.MODES)}")

    listed = (doc.get("generation") or {}).get("models") or []
    models: list[ModelInfo] = []
    for m in listed:
        if isinstance(m, dict) and m.get("id") is not None:
            kind = str(m.get("kind") or "unknown")
            models.append(ModelInfo(str(m["id"]), kind if kind in ("base", "instruct") else "unknown", str(m.get("backend") or "")))
    known = {m.id for m in models}
    for s in subjects:
        parts = split_model_subject(s)
        if parts and parts[0] not in known:
            known.add(parts[0])
            models.append(ModelInfo(parts[0], "unknown", ""))
            warnings.append(f"model {parts[0]!r} has results but is not listed in run.json generation.models: its kind is unknown.")
    present_models = {split_model_subject(s)[0] for s in subjects if split_model_subject(s)}  # type: ignore[index]
    models = [m for m in models if m.id in present_models]
    models = [m for k in KIND_ORDER for m in models if m.kind == k]

    topic_order = [t["topic"] for t in (doc.get("topics") or {}).get("kept", []) if isinstance(t, dict) and "topic" in t]
    topic_order += sorted(set(dists["topic"].unique().tolist()) - set(topic_order))

    data = RunData(run_dir, doc, groups, models, mode, tau, dists, align, summary, topic_order, warnings=warnings)
    if read_scores:
        _read_scores(fs, root, data)
    return data


def _read_scores(fs: pafs.FileSystem, root: str, data: RunData) -> None:
    """Group the per-text score tables into (topic, subject) cells of the topics and subjects reduced."""
    wanted: dict[str, set[tuple[str, str]]] = {}
    for d, t, s in data.distributions[["dataset", "topic", "subject"]].drop_duplicates().itertuples(index=False):
        wanted.setdefault(d, set()).add((t, s))
    parts: dict[str, dict[tuple[str, str], dict[str, list[np.ndarray]]]] = {}
    files = []
    for sub in SCORE_DIRS:
        p = f"{root}/{sub}"
        if fs.get_file_info(p).type == pafs.FileType.Directory:
            files += sorted(i.path for i in fs.get_file_info(pafs.FileSelector(p, recursive=True)) if i.is_file and i.path.endswith(".parquet"))
    if not files:
        data.warnings.append("no per-text score tables under scores/: intervals, tests and precision curves cannot be computed; figures use the run's tables only.")
        return
    for path in files:
        with fs.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            names = pf.schema_arrow.names
            cols = [c for c in ("dataset", schema.SUBJECT, schema.TOPICS) if c in names]
            dims = [d for d in DIMENSIONS if schema.score_column(d) in names]
            if len(cols) < 3 or not dims:
                data.warnings.append(f"{path}: not a score table (needs dataset, subject, topics and scores_<dimension>); skipped.")
                continue
            t = pf.read(columns=cols + [schema.score_column(d) for d in dims] + [c for c in ("text_id", schema.USER_ID) if c in names])
        if t.num_rows == 0:
            continue
        topics = t.column(schema.TOPICS).combine_chunks()
        parents = pc.list_parent_indices(topics).to_numpy()
        if parents.size == 0:
            continue
        take = pa.array(parents)
        # one integer key per (dataset, topic, subject) from the three dictionary codes
        codes, names = [], []
        for col in (pc.take(t.column("dataset").combine_chunks(), take), pc.list_flatten(topics), pc.take(t.column(schema.SUBJECT).combine_chunks(), take)):
            enc = pc.fill_null(col.cast(pa.string()), "").dictionary_encode()
            codes.append(enc.indices.to_numpy().astype(np.int64))
            names.append(enc.dictionary.to_pylist())
        key = (codes[0] * len(names[1]) + codes[1]) * len(names[2]) + codes[2]
        order = np.argsort(key, kind="stable")
        uniq, starts = np.unique(key[order], return_index=True)
        bounds = np.append(starts, len(order))
        mats = {d: score_matrix(t.column(schema.score_column(d)), len(DIMENSIONS[d])) for d in dims}
        # a content order for the rows of a cell (hash of text_id), so the draws do not depend on
        # how the run happened to partition its score files
        ids = t.column("text_id") if "text_id" in t.column_names else pa.array(np.arange(t.num_rows).astype(str))
        text_hash = pd.util.hash_array(pc.fill_null(ids.cast(pa.string()), "").to_numpy(zero_copy_only=False))
        # the resampling cluster of a text: its author (user_id) where known, else the text itself
        # (the same text in several topics is still one cluster)
        text_key = pc.binary_join_element_wise(pa.scalar("t:"), pc.fill_null(ids.cast(pa.string()), ""), "")
        if schema.USER_ID in t.column_names:
            uid = t.column(schema.USER_ID).cast(pa.string())
            text_key = pc.if_else(pc.is_null(uid), text_key, pc.binary_join_element_wise(pa.scalar("u:"), uid, ""))
        cluster_hash = pd.util.hash_array(text_key.to_numpy(zero_copy_only=False))
        for i, k in enumerate(uniq.tolist()):
            rest, s_code = divmod(k, len(names[2]))
            d_code, t_code = divmod(rest, len(names[1]))
            d, topic, s = names[0][d_code], names[1][t_code], names[2][s_code]
            if (topic, s) not in wanted.get(d, ()):
                continue
            rows = parents[order[bounds[i] : bounds[i + 1]]]
            cell = parts.setdefault(d, {}).setdefault((topic, s), {})
            cell.setdefault("", []).append(text_hash[rows])
            cell.setdefault(stats.CLUSTER, []).append(cluster_hash[rows])
            for dim, m in mats.items():
                cell.setdefault(dim, []).append(m[rows].astype(np.float32))
    for d, cells in parts.items():
        out: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        for k, c in cells.items():
            order = np.argsort(np.concatenate(c.pop("")), kind="stable")
            out[k] = {dim: np.concatenate(v)[order] for dim, v in c.items()}
        data.cells[d] = out
    # the texts the reduce counted must be the texts found here
    mismatched = []
    dd = data.distributions.drop_duplicates(["dataset", "dimension", "topic", "subject"])
    for d, dim, topic, s, n in dd[["dataset", "dimension", "topic", "subject", "n_texts"]].itertuples(index=False):
        m = data.cells.get(d, {}).get((topic, s), {}).get(dim)
        have = 0 if m is None else int((~np.isnan(m).any(axis=1)).sum())
        if have != int(n):
            mismatched.append((d, dim, topic, s, int(n), have))
    if mismatched:
        ex = "; ".join(f"{s} on {t!r} ({dim}): {n} reduced, {h} in scores/" for _, dim, t, s, n, h in mismatched[:4])
        data.warnings.append(
            f"{len(mismatched)} (topic, subject) cells hold a different number of scored texts in scores/ than the reduce counted "
            f"(e.g. {ex}). Intervals are computed from the texts in scores/; stale score parts from an earlier plan are the usual cause."
        )
