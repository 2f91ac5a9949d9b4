"""``affalign report``: the figures, intervals, tests and research-question answers of a finished run.

Reads only the run directory's tables (``run.json``, ``distributions.parquet``, ``alignment.parquet``,
``summary.csv`` and the per-text ``scores/``); it never re-scores. Writes ``report.html`` (one
self-contained file: figures embedded as base64 PNG, inline CSS, no scripts, no remote resources,
every string from the data HTML-escaped), ``report.md``, every figure as PNG and SVG under
``figures/``, ``intervals.csv`` (every estimate with its 95% interval) and ``precision.csv``.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import itertools
import json
import logging
import re
import time
import zlib
from collections.abc import Sequence
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
from affalign.report import calls
from affalign.report import figures as F
from affalign.report.figures import DimView, ModelInfo
from affalign.schema import DIMENSIONS
from affalign.stats import DimensionStats, Interval, split_model_subject

log = logging.getLogger("affalign")

SCORE_DIRS = ("scores/human", "scores/model")


# ---------------------------------------------------------------------------------------------
# Reading a run
# ---------------------------------------------------------------------------------------------


@dataclass
class RunData:
    uri: str
    doc: dict[str, Any]
    groups: list[str]
    models: list[ModelInfo]
    mode: str
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


def _fs(uri: str, s3_endpoint: str | None, s3_region: str | None) -> tuple[pafs.FileSystem, str]:
    from affalign.io import filesystem

    return filesystem(uri.rstrip("/"), s3_endpoint, s3_region)


def _exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.File


def _read_parquet(fs: pafs.FileSystem, path: str, columns: list[str] | None = None) -> pa.Table:
    with fs.open_input_file(path) as f:
        return pq.read_table(f, columns=columns)


def load_run(run_dir: str, s3_endpoint: str | None = None, s3_region: str | None = None, read_scores: bool = True) -> RunData:
    """A run directory's tables (and its per-text scores, by dataset and (topic, subject))."""
    fs, root = _fs(run_dir, s3_endpoint, s3_region)
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
    present_groups = [s[len("human:") :] for s in subjects if s.startswith("human:")]
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
    models = [m for k in F.KIND_ORDER for m in models if m.kind == k]

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


# ---------------------------------------------------------------------------------------------
# Views and statistics
# ---------------------------------------------------------------------------------------------


def _views(data: RunData, all_stats: dict[tuple[str, str], DimensionStats]) -> list[DimView]:
    views = []
    for d in data.datasets:
        dd = data.distributions[data.distributions["dataset"] == d]
        aa = data.alignment[data.alignment["dataset"] == d]
        for dim in [x for x in DIMENSIONS if x in set(dd["dimension"])]:
            sub = dd[dd["dimension"] == dim]
            labels = DIMENSIONS[dim]
            dist: dict[tuple[str, str], np.ndarray] = {}
            ntex: dict[tuple[str, str], int] = {}
            for (topic, s), g in sub.groupby(["topic", "subject"], sort=False):
                vals = dict(zip(g["label"], g["value"], strict=True))
                dist[(topic, s)] = np.array([vals.get(label, 0.0) for label in labels], dtype=float)
                ntex[(topic, s)] = int(g["n_texts"].iloc[0])
            per: dict[tuple[str, str], dict[str, float]] = {}
            for topic, s, t, v in aa[aa["dimension"] == dim][["topic", "subject", "target", "score"]].itertuples(index=False):
                per.setdefault((s, t), {})[topic] = float(v)
            topics = [t for t in data.topic_order if t in set(sub["topic"])]
            subjects = set(sub["subject"])
            present = {split_model_subject(s)[0] for s in subjects if split_model_subject(s)}  # type: ignore[index]
            models = [m for m in data.models if m.id in present]
            modes = [md for md in F.MODE_ORDER if any(f"model:{m.id}:{md}" in subjects for m in models)]
            modes += sorted({split_model_subject(s)[1] for s in subjects if split_model_subject(s)} - set(modes))  # type: ignore[index]
            views.append(DimView(d, dim, labels, [g for g in data.groups if f"human:{g}" in subjects], models, modes, topics, per, dist, ntex, all_stats.get((d, dim))))
    return views


def _dim_tau(data: RunData, dimension: str) -> float | np.ndarray:
    """Threshold-mode cut of a dimension: its scorer's per-label thresholds (run.json) or reduce.tau."""
    cuts = (data.doc.get("reduce_thresholds") or {}).get(dimension) if isinstance(data.doc, dict) else None
    return np.asarray(cuts, np.float64) if cuts else data.tau


def _tau_note(data: RunData) -> str:
    cuts = sorted((data.doc.get("reduce_thresholds") or {}) if isinstance(data.doc, dict) else {})
    if not cuts:
        return f"tau = {data.tau}"
    return f"per-label thresholds of the scorer for {', '.join(cuts)}; tau = {data.tau} otherwise"


def compute_stats(data: RunData, *, draws: int, seed: int, n_grid: Sequence[int] | None, interval: str = stats.DEFAULT_INTERVAL) -> dict[tuple[str, str], DimensionStats]:
    out: dict[tuple[str, str], DimensionStats] = {}
    for d, cells in data.cells.items():
        res = stats.analyse(cells, data.groups, topics=data.topic_order, mode=data.mode, tau={dim: _dim_tau(data, dim) for dim in DIMENSIONS}, draws=draws, seed=seed, n_grid=n_grid, key=d, interval=interval)
        for dim, st in res.items():
            out[(d, dim)] = st
    return out


def _consistency(view: DimView) -> float | None:
    """Largest difference between the run's per-topic S and the one recomputed from scores/."""
    if view.stats is None:
        return None
    worst = 0.0
    for (s, t), by_topic in view.per_topic.items():
        mine = view.stats.reps.get((s, t), {})
        for topic, v in by_topic.items():
            if topic in mine:
                worst = max(worst, abs(mine[topic][0] - v))
    return worst


def divergent_topics(view: DimView, k: int = 2) -> list[str]:
    """Topics where default models are furthest from the groups (humans only: the groups from each other)."""
    score: dict[str, list[float]] = {}
    keys = [(f"model:{m.id}:default", h) for m in view.models for h in view.humans] if view.has_models() else view.human_pairs()
    for s, t in keys:
        for topic, v in view.series(s, t).items():
            score.setdefault(topic, []).append(v)
    if not score:
        for ser in view.per_topic.values():
            for topic, v in ser.items():
                score.setdefault(topic, []).append(v)
    ranked = sorted(score, key=lambda t: (float(np.mean(score[t])), view.topics.index(t) if t in view.topics else 0))
    return ranked[:k] or view.topics[:k]


# ---------------------------------------------------------------------------------------------
# Research questions (paper §4.1-4.2)
# ---------------------------------------------------------------------------------------------


@dataclass
class Answer:
    question: str
    verdict: str  # one sentence, with the numbers
    details: list[str] = field(default_factory=list)


def _ci(iv: Interval, digits: int = 3) -> str:
    return f"[{iv.lo:.{digits}f}, {iv.hi:.{digits}f}]"


def _d(iv: Interval) -> str:
    return f"{iv.estimate:+.4f} [{iv.lo:+.4f}, {iv.hi:+.4f}]"


def _s(iv: Interval) -> str:
    return f"{iv.estimate:.3f} {_ci(iv)}"


def _p(iv: Interval, bare: bool = False) -> str:
    """A bootstrap-inversion p-value; at its floor 2 / (draws + 1) it is an upper bound."""
    if iv.p_value is None:
        return "–"
    if iv.p_value <= iv.p_floor + 1e-12:
        return f"≤ {iv.p_value:.2g}" if bare else f"≤ {iv.p_value:.2g} (no bootstrap replicate on the other side of 0)"
    return f"{iv.p_value:.3g}" if bare else f"= {iv.p_value:.3g}"


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" + ("" if n == 1 else "s")


def _g(subject: str) -> str:
    return subject[len("human:") :] if subject.startswith("human:") else subject


def _name(m: ModelInfo) -> str:
    return f"{m.id} ({F.KIND_TITLES.get(m.kind, m.kind)})"


UNRESOLVED = "not resolved at this sample size"


def _quantified(counts: dict[int, int], total: int, unit: str, words: dict[int, str]) -> str:
    """"All 4 model–group comparisons are below the baseline" / "1 of 4 ... is below ...; 3 ... are ..."."""
    out = []
    for key, (one, many) in words.items():
        c = counts.get(key, 0)
        if c == 0:
            continue
        if c == total:
            lead = f"the only {unit}" if total == 1 else f"{'both' if total == 2 else 'all ' + str(total)} {unit}s"
            out.append(f"{lead} {one if total == 1 else many}")
        else:
            out.append(f"{c} of {total} {unit}s {one if c == 1 else many}")
    return "; ".join(out)


def _split_kinds(models: list[ModelInfo]) -> tuple[list[ModelInfo], list[ModelInfo]]:
    """(instruction-tuned models, the others): the paper's steering analysis covers the former only."""
    return [m for m in models if m.kind == "instruct"], [m for m in models if m.kind != "instruct"]


def research_questions(view: DimView) -> list[Answer]:
    st = view.stats
    if st is None:
        return [Answer("Research questions", "Not answered: the run has no per-text score tables (scores/), so no intervals can be computed.")]
    humans = [h for h in view.humans if h in st.humans]
    answers: list[Answer] = []
    pairs = [(a, b) for a, b in itertools.combinations(humans, 2) if st.has(a, b)]
    base_txt = "; ".join(f"{_g(a)} vs {_g(b)}: S = {_s(iv)}" for a, b in pairs if (iv := st.alignment(a, b)) is not None)
    if not view.has_models() or not view.models:
        answers.append(Answer("Human baseline", f"Human baseline (alignment between the groups, mean over {len(view.topics)} topics): {base_txt or 'not available (fewer than two groups)'}. "
                              "No model generations in this run: the questions about models do not apply."))
        return answers
    models = [m for m in view.models if any(st.has(f"model:{m.id}:default", h) for h in humans)]

    # 1. below the baseline by default
    a1 = Answer("Is every model below the human baseline (default prompting)?", "")
    signs: list[int] = []
    for m in models:
        s = f"model:{m.id}:default"
        for h in humans:
            got, iv, base = calls.vs_baseline_call(st, s, h), st.alignment(s, h), st.baseline(h)
            if got is None or iv is None or base is None:
                continue
            sign, diff = got
            signs.append(sign)
            word = {-1: "below the baseline", 1: "above the baseline", 0: f"{UNRESOLVED} (the interval of the difference contains 0)"}[sign]
            a1.details.append(f"{_name(m)} with {_g(h)}: S = {_s(iv)}, baseline {_s(base)}, difference {_d(diff)} on {diff.n_topics} topics, p {_p(diff)}: {word}.")
    if not signs:
        a1.verdict = "Not answerable: no model has default-mode results against two groups."
    else:
        counts = {k: signs.count(k) for k in (-1, 1, 0)}
        lead = "Yes" if counts[-1] == len(signs) else ("No" if counts[1] else "Not shown")
        a1.verdict = f"{lead}: " + _quantified(counts, len(signs), "model–group comparison", {
            -1: ("is below the baseline", "are below the baseline"), 1: ("is above the baseline", "are above the baseline"),
            0: (f"is {UNRESOLVED}", f"are {UNRESOLVED}")}) + " (95% interval of the difference to the baseline)."
    a1.details.insert(0, f"Baseline: {base_txt}." if base_txt else "Baseline: not available.")
    if len(humans) > 2:
        a1.details.insert(1, "With more than two groups, a group's baseline is its mean S with the other groups.")
    answers.append(a1)

    # 2. bias by default
    a2 = Answer("Which group is each model closer to by default (bias)?", "")
    tally: dict[str, int] = {}
    for a, b in pairs:
        for m in models:
            got = calls.bias_call(st, f"model:{m.id}:default", a, b)
            if got is None:
                continue
            sign, iv = got
            who = UNRESOLVED if sign == 0 else f"closer to {_g(a) if sign > 0 else _g(b)}"
            tally[who] = tally.get(who, 0) + 1
            a2.details.append(f"{_name(m)}: bias S({_g(a)}) − S({_g(b)}) = {_d(iv)}, p {_p(iv)} (null: equidistant): {who}.")
    unit = "model" if len(pairs) == 1 else "model–pair comparison"
    total = sum(tally.values())
    verdict = _quantified(tally, total, unit, {k: (f"is {k}", f"are {k}") for k in sorted(tally)})
    a2.verdict = (verdict[0].upper() + verdict[1:] + ".") if tally else "Not answerable: no default-mode bias."
    if tally:
        a2.details.insert(0, "Null hypothesis of each p-value: the model is equidistant from the two groups (topic-averaged bias 0); bootstrap test, "
                             "the model's and both groups' texts resampled, each S bias-corrected for its own sample sizes.")
    answers.append(a2)

    steered_modes = [md for md in view.modes if md != "default"]
    if not steered_modes:
        answers.append(Answer("Steering", "No steered generations in this run: the steering questions do not apply."))
        return answers
    instruct, others = _split_kinds(models)
    scope = ("Steering questions cover instruction-tuned models only, as in the paper; "
             + (f"base and other models ({', '.join(_name(m) for m in others)}) are listed apart below each answer and are not counted." if others else "this run has no base models."))

    # 3. tells liberal from conservative steering (one question over the groups: Bonferroni)
    a3 = Answer("Does each model tell liberal from conservative steering?", "")
    yes, asked = 0, 0
    for m in instruct + others:
        got = calls.tells_apart_call(st, m.id, humans) if humans else None
        if got is None:
            continue
        told, diffs = got
        parts = "; ".join(f"with {_g(h)} {_d(iv)}" for h, iv in diffs)
        lvl = f"{100 * (1 - (1 - stats.LEVEL) / max(len(diffs), 1)):.1f}%"
        text = (f"yes — S(liberal-steered) − S(conservative-steered) {parts} ({lvl} intervals, Bonferroni over {len(diffs)} groups)." if told else
                f"{UNRESOLVED} — the two steered modes are not told apart (S(liberal-steered) − S(conservative-steered) {parts}; every {lvl} interval contains 0).")
        if m in instruct:
            asked += 1
            yes += told
            a3.details.append(f"{_name(m)}: {text}")
        else:
            a3.details.append(f"(not counted) {_name(m)}: {text}")
    how = ("A 'yes' needs an interval of S(liberal-steered) − S(conservative-steered) to exclude 0 for some group; the intervals are Bonferroni-corrected "
           "over the groups, so a 'yes' for identical steered modes has at most a 5% chance")
    if not asked:
        a3.verdict = "Not answerable: no instruction-tuned model has both liberal- and conservative-steered generations."
    else:
        told_n = _quantified({1: yes, 0: asked - yes}, asked, "instruction-tuned model with both steered modes", {1: ("tells them apart", "tell them apart"), 0: (f"is {UNRESOLVED}", f"are {UNRESOLVED}")})
        a3.verdict = told_n[0].upper() + told_n[1:] + ". " + how + "."
    a3.details.insert(0, scope)
    answers.append(a3)

    # 4. steering raises alignment with the target group; 5. still below the baseline; 6. bias removed?
    a4 = Answer("Does steering raise alignment with the target group?", "")
    a5 = Answer("Is steered alignment still below the human baseline?", "")
    a6 = Answer("Does steering remove the bias?", "")
    c4: list[int] = []
    c5: list[int] = []
    c6: dict[str, int] = {}
    unmatched = []
    for m in instruct + others:
        counted = m in instruct
        tag = "" if counted else "(not counted) "
        for md in steered_modes:
            s = f"model:{m.id}:{md}"
            if not any(st.has(s, h) for h in humans):
                continue
            target = f"human:{md}" if f"human:{md}" in humans else None
            if target is None:
                unmatched.append(md)
            else:
                got = calls.steering_call(st, s, target)
                if got is not None:
                    sign, iv = got
                    if counted:
                        c4.append(sign)
                    word = {1: "raises it", -1: "lowers it", 0: UNRESOLVED}[sign]
                    a4.details.append(f"{tag}{_name(m)}, {md} steering: S with {_g(target)} changes by {_d(iv)} vs default: {word}.")
                vb, al = calls.vs_baseline_call(st, s, target), st.alignment(s, target)
                if vb is not None and al is not None:
                    sign, diff = vb
                    if counted:
                        c5.append(sign)
                    word = {-1: "still below the baseline", 1: "above the baseline", 0: UNRESOLVED}[sign]
                    a5.details.append(f"{tag}{_name(m)}, {md}-steered with {_g(target)}: S = {_s(al)}, difference to the baseline {_d(diff)}: {word}.")
            for a, b in pairs:
                got6 = calls.bias_change_call(st, s, a, b)
                if got6 is None:
                    continue
                key, bd, bs, ch = got6
                toward = _g(a) if bs.sign > 0 else _g(b)
                word = {
                    calls.UNRESOLVED: f"{UNRESOLVED}: neither the default nor the steered bias is resolved",
                    calls.KEPT: f"no — it keeps the bias toward {toward}",
                    calls.REDUCED: f"it reduces the bias but keeps it, toward {toward}",
                    calls.REMOVED: "yes — it removes the bias (the change is resolved against the default bias, and no bias is resolved after steering)",
                    calls.REVERSED: f"it reverses the bias, now toward {toward}",
                    calls.BIASED_AFTER: f"no — it is biased toward {toward} after steering (the default bias was not resolved)",
                }[key]
                if bd.sign != 0 and bs.sign == 0 and key == calls.UNRESOLVED:
                    word = f"{UNRESOLVED}: no bias is resolved after steering, but the change from the default bias is not resolved either"
                if counted:
                    c6[key] = c6.get(key, 0) + 1
                a6.details.append(f"{tag}{_name(m)}, {md} steering: bias {_d(bs)} (default {_d(bd)}, change {_d(ch)}): {word}.")
    if unmatched:
        note = f"No group is named {', '.join(sorted(set(repr(u) for u in unmatched)))}: steering toward it cannot be matched to a target group (the tables show its effect on every group)."
        a4.details.append(note)
        a5.details.append(note)
    none_instruct = "Not answerable: no instruction-tuned model has a steered mode that matches a group."
    a4.verdict = ("Of the instruction-tuned model–mode cases: " + _quantified({k: c4.count(k) for k in (1, -1, 0)}, len(c4), "case", {
        1: ("raises alignment with the target group", "raise alignment with the target group"), -1: ("lowers it", "lower it"), 0: (f"is {UNRESOLVED}", f"are {UNRESOLVED}")}) + "."
        if c4 else none_instruct)
    a5.verdict = ("Of the instruction-tuned steered model–mode cases: " + _quantified({k: c5.count(k) for k in (-1, 1, 0)}, len(c5), "case", {
        -1: ("is still below the baseline with its target group", "are still below the baseline with their target group"), 1: ("is above it", "are above it"),
        0: (f"is {UNRESOLVED}", f"are {UNRESOLVED}")}) + "."
        if c5 else none_instruct)
    if c6:
        total6 = sum(c6.values())
        a6.verdict = "Of the instruction-tuned steered model–mode cases: " + _quantified(c6, total6, "case", {
            calls.REMOVED: ("removes the bias", "remove the bias"), calls.REVERSED: ("reverses it", "reverse it"), calls.REDUCED: ("reduces but keeps it", "reduce but keep it"),
            calls.KEPT: ("keeps the default bias", "keep the default bias"), calls.BIASED_AFTER: ("is biased only after steering", "are biased only after steering"),
            calls.UNRESOLVED: (f"is {UNRESOLVED}", f"are {UNRESOLVED}")}) + "."
    else:
        a6.verdict = "Not answerable: no bias of instruction-tuned steered generations (needs two groups and an instruction-tuned model)."
    for a in (a4, a5, a6):
        a.details.insert(0, scope)
    answers += [a4, a5, a6]
    return answers


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


def _fmt(v: float | None, spec: str = ".4f") -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return format(v, spec)


def table_alignment(view: DimView) -> tuple[list[str], list[list[str]]]:
    head = ["subject", "target", "S (plug-in, mean over topics)", "std over topics", "S (estimate)", "95% interval", "topics"]
    rows = []
    keys = list(view.human_pairs()) + [(f"model:{m.id}:{md}", h) for m in view.models for md in view.modes for h in view.humans]
    for s, t in keys:
        ms = view.mean_std(s, t)
        if ms is None:
            continue
        iv = view.stats.alignment(s, t) if view.stats is not None else None
        rows.append([s, t, f"{ms[0]:.4f}", f"{ms[1]:.4f}", f"{iv.estimate:.4f}" if iv else "–", _ci(iv, 4) if iv else "–", str(ms[2])])
    return head, rows


def table_bias(view: DimView) -> tuple[list[str], list[list[str]]]:
    head = ["model", "kind", "mode", "groups (A | B)", "bias S(A) − S(B)", "95% interval", "p (null: equidistant)", "call"]
    rows = []
    if view.stats is None:
        return head, rows
    for a, b in view.human_pairs():
        for m in view.models:
            for md in view.modes:
                iv = view.stats.bias(f"model:{m.id}:{md}", a, b)
                if iv is None:
                    continue
                call = {1: f"closer to {_g(a)}", -1: f"closer to {_g(b)}", 0: "not resolved"}[iv.sign]
                rows.append([m.id, m.kind, md, f"{_g(a)} | {_g(b)}", f"{iv.estimate:+.4f}", _ci(iv, 4), _p(iv, bare=True), call])
    return head, rows


def table_steering(view: DimView) -> tuple[list[str], list[list[str]]]:
    head = ["model", "kind", "steering", "target", "S steered − S default", "95% interval", "call"]
    rows = []
    if view.stats is None:
        return head, rows
    for m in view.models:
        for md in [x for x in view.modes if x != "default"]:
            for h in view.humans:
                iv = view.stats.steering(f"model:{m.id}:{md}", h)
                if iv is None:
                    continue
                call = {1: "raises S", -1: "lowers S", 0: "not resolved"}[iv.sign]
                rows.append([m.id, m.kind, md, _g(h), f"{iv.estimate:+.4f}", _ci(iv, 4), call])
    return head, rows


def table_precision(view: DimView) -> tuple[list[str], list[list[str]]]:
    head = ["n per topic", "mean n used", "per-topic S width (median)", "topic-averaged S width (median)", "bias width (median)"]
    if view.stats is None:
        return head, []
    return head, [[str(r["n"]), f"{r['n_used_mean']:.0f}", f"{r['topic_width_median']:.4f}", f"{r['average_width_median']:.4f}", _fmt(r["bias_width_median"])] for r in view.stats.precision_summary()]


def interval_rows(view: DimView) -> list[dict]:
    """Every estimate with its interval, for intervals.csv."""
    st = view.stats
    out: list[dict] = []
    if st is None:
        return out

    def add(statistic: str, subject: str, target: str, iv: Interval | None, topic: str = "") -> None:
        if iv is not None:
            out.append({"dataset": view.dataset, "dimension": view.dimension, "statistic": statistic, "subject": subject, "target": target, "topic": topic, **iv.as_dict()})

    for a, b in st.human_pairs():
        add("alignment", a, b, st.alignment(a, b))
        for t, iv in st.per_topic(a, b).items():
            add("alignment_topic", a, b, iv, t)
    for h in st.humans:
        add("baseline", h, "", st.baseline(h))
    for m in st.model_subjects:
        for h in st.humans:
            add("alignment", m, h, st.alignment(m, h))
            for t, iv in st.per_topic(m, h).items():
                add("alignment_topic", m, h, iv, t)
            add("vs_baseline", m, h, st.vs_baseline(m, h))
            add("steering", m, h, st.steering(m, h))
        for a, b in st.human_pairs():
            add("bias", m, f"{a}|{b}", st.bias(m, a, b))
            add("bias_change", m, f"{a}|{b}", st.bias_change(m, a, b))
    for mid in st.model_ids():
        for h in st.humans:
            add("liberal_minus_conservative", f"model:{mid}", h, st.mode_contrast(mid, h))
    return out


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe slug of a data string, with a short hash so distinct strings never collide."""
    base = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:limit] or "x"
    if base == text:
        return base
    return f"{base}-{zlib.crc32(str(text).encode('utf-8')):08x}"


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def md_esc(text: object) -> str:
    """A data string made inert in Markdown (no HTML, no emphasis, no table breaks, one line)."""
    s = " ".join(str(text).split())
    s = html.escape(s, quote=False)
    return re.sub(r"([\\`*_\[\]|~])", r"\\\1", s)


@dataclass
class FigureOut:
    name: str  # relative path without extension
    caption: str
    png: bytes
    svg: bytes


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1200px;padding:1.5em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.86em}th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0 2em}figure img{max-width:100%;height:auto;border:1px solid #eee}figcaption{font-size:.88em;color:#444;margin-top:.3em}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:.5em .8em;margin:.5em 0}
.note{background:#f4f8fb;border-left:4px solid #6a9fd0;padding:.5em .8em;margin:.5em 0;font-size:.92em}
.verdict{font-weight:600}ul.details{font-size:.9em}code{background:#f5f5f5;padding:0 3px}
"""


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    num = re.compile(r"^[+\-−]?[0-9.]+(e[+-]?[0-9]+)?$|^\[.*\]$")
    out = ["<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for r in rows:
        out.append("<tr>" + "".join(f'<td class="num">{esc(c)}</td>' if num.match(str(c)) else f"<td>{esc(c)}</td>" for c in r) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "_none_\n"
    lines = ["| " + " | ".join(md_esc(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(md_esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


@dataclass
class Section:
    view: DimView
    figures: list[FigureOut]
    answers: list[Answer]
    notes: list[str]
    tables: list[tuple[str, tuple[list[str], list[list[str]]]]]


METHOD_NOTE = (
    "Alignment S = 1 − Jensen-Shannon distance (base 2) between two affect distributions of a topic, averaged over topics (paper eq. 1). "
    "Intervals: 95% {interval_name}, {draws} draws, seed {seed}. {resampling} "
    "Every distribution and S is recomputed in the run's mode ({mode}); topic averages, differences to the baseline, biases and steering effects are bootstrapped jointly. "
    "p-values (differences only) invert these intervals: the null hypothesis is the difference = 0 — for a bias, that the model is equidistant from the two groups. "
    "An answer is called only where its 95% interval excludes the opposite (for 'tells liberal from conservative steering', Bonferroni over the groups); "
    "otherwise it is reported as not resolved at this sample size. {verified}"
)
RESAMPLING_CLUSTERED = ("Resampling is by user on the human side (one Exp(1) weight per user per draw, shared by all the topics the user's tweets are in, "
                        "so tweets of one user and a tweet in several topics move together) and by text on the model side.")
RESAMPLING_TEXTS = ("The score tables carry no user ids: every text is resampled as its own cluster (one weight per text per draw, shared by the topics it is in); "
                    "tweets of one user are treated as independent, which makes human-side intervals too narrow when users post many tweets.")
VERIFIED = {
    "bc": ("Why bias-corrected: S from finite samples is biased downward (noise only adds divergence), more for smaller samples; each S is corrected by its bootstrap "
           "bias estimate on the divergence scale, so an interval contains its estimate and a larger group does not look closer. Verified: on simulated runs with planted truth "
           "(10–26 topics, 2,000 generations per topic and mode, 1k–100k tweets per group and topic from users with 1–200 tweets, unequal group sizes; 528 runs) the false-call rate "
           "of every call this report makes was within one Monte Carlo standard error of its nominal rate (2.5% per one-sided call, 5% for 'tells apart'; largest: "
           "3.2% ± 0.8 for 'closer to the smaller group' with an equidistant model), where the uncorrected percentile interval made 9.8% false 'above the baseline' "
           "and 15.5% false 'closer to the larger group' calls; see 'Calibration of the report's calls' in benchmarks/RESULTS.md and affalign/calibration.py."),
    "percentile": ("Warning: the percentile bootstrap is not bias-corrected. S from finite samples is biased downward, so these intervals are shifted, and a model exactly on "
                   "the baseline, or exactly equidistant between unequal groups, is called above/below the baseline or biased far more often than 2.5% (benchmarks/RESULTS.md); "
                   "use the default --interval bc for findings."),
    "basic": ("Basic intervals reflect the percentiles about the plug-in estimate (a first-order bias correction on the S scale); the calibrated default is --interval bc "
              "(benchmarks/RESULTS.md)."),
}
INTERVAL_NAMES = {"bc": "bias-corrected clustered bootstrap interval", "percentile": "percentile clustered bootstrap interval", "basic": "basic clustered bootstrap interval"}


def _method_note(params: dict[str, Any], mode: str, clustered: bool) -> str:
    return METHOD_NOTE.format(interval_name=INTERVAL_NAMES[params["interval"]], draws=params["draws"], seed=params["seed"], mode=mode,
                              resampling=RESAMPLING_CLUSTERED if clustered else RESAMPLING_TEXTS, verified=VERIFIED[params["interval"]])


def _render_html(data: RunData, sections: list[Section], params: dict[str, Any], run_warnings: list[str]) -> str:
    doc = data.doc
    title = f"affalign report — {doc.get('job') or ''} ({', '.join(data.datasets)})"
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{esc(title)}</title>", f"<style>{CSS}</style></head><body>", f"<h1>{esc(title)}</h1>"]
    out.append("<table>")
    info = [
        ("run", data.uri),
        ("status", doc.get("status", "unknown")),
        ("groups (in order)", ", ".join(data.groups)),
        ("distribution mode", f"{data.mode}" + (f" ({_tau_note(data)})" if data.mode == "threshold" else "")),
        ("topics", f"{len(data.topic_order)} kept" + (f", {len((doc.get('topics') or {}).get('dropped', []))} dropped" if doc.get("topics") else "")),
        ("models", "; ".join(f"{m.id} ({F.KIND_TITLES.get(m.kind, m.kind)}{', ' + m.backend if m.backend else ''})" for m in data.models) or "none (humans only)"),
        ("bootstrap", f"{params['draws']} draws, seed {params['seed']}, {params['interval']} intervals, " + ("resampled by user" if params["clustered"] else "resampled by text (no user ids)")),
        ("generated", params["generated"]),
    ]
    out += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in info]
    out.append("</table>")
    for w in run_warnings:
        out.append(f'<div class="warn">{esc(w)}</div>')
    out.append(f'<div class="note">{esc(_method_note(params, data.mode, params["clustered"]))}</div>')
    out.append("<h2>Contents</h2><ul>")
    for i, sec in enumerate(sections):
        out.append(f'<li><a href="#s{i}">{esc(sec.view.dataset)} — {esc(sec.view.dimension)}</a></li>')
    out.append("</ul>")
    for i, sec in enumerate(sections):
        v = sec.view
        out.append(f'<h2 id="s{i}">{esc(v.dataset)} — {esc(v.dimension)}</h2>')
        for n in sec.notes:
            out.append(f'<div class="note">{esc(n)}</div>')
        out.append("<h3>Research questions</h3>")
        for a in sec.answers:
            out.append(f"<h4>{esc(a.question)}</h4><p class=\"verdict\">{esc(a.verdict)}</p>")
            if a.details:
                out.append('<ul class="details">' + "".join(f"<li>{esc(d)}</li>" for d in a.details) + "</ul>")
        out.append("<h3>Figures</h3>")
        for f in sec.figures:
            b64 = base64.b64encode(f.png).decode("ascii")
            out.append(f'<figure><img alt="{esc(f.caption)}" src="data:image/png;base64,{b64}"><figcaption>{esc(f.caption)}</figcaption></figure>')
        for title_, (head, rows) in sec.tables:
            out.append(f"<h3>{esc(title_)}</h3>")
            out.append(_html_table(head, rows))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _render_md(data: RunData, sections: list[Section], params: dict[str, Any], run_warnings: list[str]) -> str:
    doc = data.doc
    lines = [f"# affalign report — {md_esc(doc.get('job') or '')} ({md_esc(', '.join(data.datasets))})", ""]
    lines += [
        f"- run: {md_esc(data.uri)}",
        f"- status: {md_esc(doc.get('status', 'unknown'))}",
        f"- groups (in order): {md_esc(', '.join(data.groups))}",
        f"- distribution mode: {md_esc(data.mode)}" + (f" ({_tau_note(data)})" if data.mode == "threshold" else ""),
        f"- topics: {len(data.topic_order)} kept",
        f"- models: {md_esc('; '.join(f'{m.id} ({F.KIND_TITLES.get(m.kind, m.kind)})' for m in data.models) or 'none (humans only)')}",
        f"- bootstrap: {params['draws']} draws, seed {params['seed']}, {params['interval']} intervals, " + ("resampled by user" if params["clustered"] else "resampled by text (no user ids)"),
        "",
    ]
    for w in run_warnings:
        lines += [f"> **Warning:** {md_esc(w)}", ""]
    lines += ["> " + md_esc(_method_note(params, data.mode, params["clustered"])), ""]
    for sec in sections:
        v = sec.view
        lines += [f"## {md_esc(v.dataset)} — {md_esc(v.dimension)}", ""]
        for n in sec.notes:
            lines += [f"> {md_esc(n)}", ""]
        lines += ["### Research questions", ""]
        for a in sec.answers:
            lines += [f"**{md_esc(a.question)}** {md_esc(a.verdict)}", ""]
            lines += [f"- {md_esc(d)}" for d in a.details]
            lines.append("")
        lines += ["### Figures", ""]
        for f in sec.figures:
            lines += [f"![{md_esc(f.caption)}]({f.name}.png)", "", f"_{md_esc(f.caption)}_ ([SVG]({f.name}.svg))", ""]
        for title_, (head, rows) in sec.tables:
            lines += [f"### {md_esc(title_)}", "", _md_table(head, rows)]
    return "\n".join(lines) + "\n"


def _csv(rows: list[dict], columns: list[str]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else (f"{r[k]:.6g}" if isinstance(r.get(k), float) else r.get(k))) for k in columns})
    return buf.getvalue().encode("utf-8")


# ---------------------------------------------------------------------------------------------
# Entry point
def _section(v: DimView, data: RunData, topic: str | None) -> Section:
    """Figures, notes, research-question answers and tables of one (dataset, dimension)."""
    base = f"figures/{slug(v.dataset, 20)}_{v.dimension}"
    figs: list[FigureOut] = []
    notes: list[str] = []

    def add(fig, name: str, caption: str) -> None:
        if fig is None:
            return
        figs.append(FigureOut(name, caption, F.render(fig, "png"), F.render(fig, "svg")))

    add(F.fig_default_alignment(v), f"{base}_a_default",
        f"(a) Default alignment S of each model with each group ({v.dataset}, {v.dimension}): mean over topics (markers) ± std over topics (bars); "
        "instruction-tuned models above the dashed separator, base models below; the human baseline (alignment between the groups) as a vertical dashed line, "
        "its 95% interval shaded." if v.has_models() else f"(a) Human baseline ({v.dataset}, {v.dimension}): alignment between the groups, mean ± std over topics, with its 95% interval.")
    add(F.fig_steered_alignment(v), f"{base}_b_steered",
        f"(b) Steered alignment ({v.dataset}, {v.dimension}): liberal-steered (◀) and conservative-steered (▶) beside default (○) prompting, colour = group; mean over topics.")
    chosen = [topic] if topic is not None and topic in v.topics else divergent_topics(v)
    why = "chosen with --topic" if topic is not None and topic in v.topics else ("among the 2 topics where default models are furthest from the groups" if v.has_models() else "among the 2 topics where the groups differ most")
    for t in chosen:
        add(F.fig_topic_distributions(v, t), f"{base}_c_topic_{slug(t)}", f"(c) Affect distributions on topic “{t}” ({why}) of each group and each model and prompting mode; n = texts.")
    add(F.fig_topic_heatmap(v), f"{base}_d_heatmap", f"(d) Per-topic alignment S ({v.dataset}, {v.dimension}): rows are topics, columns subject vs target.")
    sb = None
    if data.summary is not None and "metric" in data.summary.columns:
        ss = data.summary[(data.summary["metric"] == "bias") & (data.summary["dataset"] == v.dataset) & (data.summary["dimension"] == v.dimension)]
        sb = {(r.subject, r.target): (float(r.score_mean), float(r.score_std)) for r in ss.itertuples(index=False)}
    add(F.fig_bias(v, sb), f"{base}_e_bias",
        f"(e) Bias of each model and mode ({v.dataset}, {v.dimension}): S with the first group − S with the second, mean over topics, with its 95% bootstrap interval.")
    add(F.fig_precision(v), f"{base}_f_precision",
        f"(f) Width of the 95% interval against the number of generations per topic ({v.dataset}, {v.dimension}), from subsampling each model's texts; use it to choose n_responses.")
    if v.stats is None:
        notes.append("No per-text scores for this dataset: no intervals, tests or precision curve.")
    else:
        worst = _consistency(v)
        if worst is not None and worst > 1e-5:
            notes.append(f"The per-topic S recomputed from scores/ differs from alignment.parquet by up to {worst:.2g}: the score tables are not exactly the texts the reduce used.")
        shift = [x for a, b in v.stats.human_pairs() if (x := v.stats.resampling_shift(a, b)) is not None]
        if shift and -min(shift) > 0.001:
            notes.append(f"Bootstrap replicates of the human baseline lie {(-min(shift)):.4f} below its plug-in estimate on average: the downward bias of S from finite samples"
                         + (", which the bias-corrected estimates and intervals remove (see the method note)." if v.stats.interval == "bc" else
                            "; these intervals are not bias-corrected (see the method note)."))
    if not v.has_models():
        notes.append("Humans only: figures (b) steered alignment and (e) bias do not apply; shown are the baseline, the distributions and the heatmap.")
    tables = [("Alignment (mean over topics)", table_alignment(v))]
    if v.has_models():
        tables += [("Bias", table_bias(v)), ("Steering effects", table_steering(v))]
        tables.append(("Precision against n (median over model subjects)", table_precision(v)))
    return Section(v, figs, research_questions(v), notes, tables)


# ---------------------------------------------------------------------------------------------


def build_report(
    run_dir: str,
    out_dir: str | None = None,
    *,
    topic: str | None = None,
    draws: int = 1000,
    seed: int = 0,
    n_grid: Sequence[int] | None = stats.DEFAULT_N_GRID,
    interval: str = stats.DEFAULT_INTERVAL,
    s3_endpoint: str | None = None,
    s3_region: str | None = None,
) -> dict[str, str]:
    """Write the report of a run directory to ``out_dir`` (default ``RUN_DIR/report``).

    Returns {relative name: full path} of every file written (``report.html``, ``report.md``,
    ``intervals.csv``, ``precision.csv``, ``figures/*.png|svg``). ``topic`` picks the topic of the
    distribution figures (default: the two most divergent topics); ``draws`` bootstrap draws, seeded
    by ``seed``; ``interval``: ``bc`` (bias-corrected, the calibrated default), ``percentile`` or ``basic``.
    """
    from affalign.errors import ConfigError
    from affalign.io import OutputDir

    if draws < 2:
        raise ConfigError("--draws must be at least 2")
    if interval not in stats.INTERVALS:
        raise ConfigError(f"--interval must be one of {', '.join(stats.INTERVALS)}")
    t0 = time.perf_counter()
    data = load_run(run_dir, s3_endpoint, s3_region)
    all_stats = compute_stats(data, draws=draws, seed=seed, n_grid=n_grid, interval=interval)
    t_stats = time.perf_counter() - t0
    views = _views(data, all_stats)
    if not views:
        raise InputError(f"{run_dir}/distributions.parquet: no rows to report")
    run_warnings = list(data.warnings)
    if topic is not None and not any(topic in v.topics for v in views):
        run_warnings.append(f"--topic {topic!r} is not a kept topic of this run: the distribution figures show the two most divergent topics instead.")
    if not any(v.has_models() for v in views):
        run_warnings.append("Humans only: this run has no model generations. Shown: the human baseline, the groups' distributions and the per-topic heatmap; "
                            "the steered-alignment and bias figures and the research questions about models do not apply.")

    sections: list[Section] = []
    written: dict[str, bytes] = {}
    for v in views:
        with F.style():
            section = _section(v, data, topic)
        sections.append(section)
        for f in section.figures:
            written[f"{f.name}.png"] = f.png
            written[f"{f.name}.svg"] = f.svg

    params = {"draws": draws, "seed": seed, "interval": interval, "clustered": any(st.clustered for st in all_stats.values()),
              "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + f" in {time.perf_counter() - t0:.1f}s (statistics {t_stats:.1f}s)"}
    written["report.html"] = _render_html(data, sections, params, run_warnings).encode("utf-8")
    written["report.md"] = _render_md(data, sections, params, run_warnings).encode("utf-8")
    icols = ["dataset", "dimension", "statistic", "subject", "target", "topic", "estimate", "lo", "hi", "n_topics", "std", "p_value", "plugin"]
    written["intervals.csv"] = _csv([r for s in sections for r in interval_rows(s.view)], icols)
    pcols = ["dataset", "dimension", "subject", "target", "n", "n_used_mean", "n_topics", "topic_width_median", "average_width"]
    written["precision.csv"] = _csv([{"dataset": s.view.dataset, "dimension": s.view.dimension, **r} for s in sections if s.view.stats is not None for r in s.view.stats.precision()], pcols)

    target = out_dir or f"{run_dir.rstrip('/')}/report"
    out = OutputDir(target, s3_endpoint, s3_region)
    paths = {name: out.uri_of(name) if "://" in target else out.path(name) for name in written}
    for name, blob in written.items():
        out.publish_bytes(name, blob)
    tmp = out.path("_tmp")
    try:
        if out.fs.get_file_info(tmp).type == pafs.FileType.Directory and not out.fs.get_file_info(pafs.FileSelector(tmp)):
            out.fs.delete_dir(tmp)
    except OSError:  # pragma: no cover - cosmetic
        pass
    log.info("report written to %s in %.1fs", target, time.perf_counter() - t0)
    return paths
