"""Scorer agreement: per-label correlation between two scorers on the same texts of a run."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy import stats

from affalign import schema
from affalign.errors import InputError
from affalign.reduce import score_matrix
from affalign.rundir import RunDir
from affalign.schema import DIMENSIONS
from affalign.scorers.base import ScorerSpec
from affalign.scorers.registry import make_scorer


def sample_texts(run_dir: str, n: int, seed: int = 0) -> pa.Table:
    """A deterministic sample of the run's kept tweets, with their stored scores.

    Two passes over the work table, so memory holds the sample, not the corpus: the first reads
    only the ``reason`` column to count kept rows per part, the second reads the chosen rows.
    """
    out = RunDir(run_dir)
    try:
        rows_dir = json.loads(out.read_bytes("run.json"))["work"]
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{run_dir}: not a finished affalign run (no run.json with a work table)") from exc
    paths = out.list_files(rows_dir)
    kept_idx: list[np.ndarray] = []
    for path in paths:
        with out.fs.open_input_file(path) as f:
            reason = pq.read_table(f, columns=[schema.REASON]).column(schema.REASON)
        kept_idx.append(np.flatnonzero(pc.is_null(reason).to_numpy(zero_copy_only=False)))
    total = sum(len(k) for k in kept_idx)
    if not paths:
        raise InputError(f"{run_dir}: no scored rows under {rows_dir}/ (is it a finished affalign run?)")
    if total == 0:
        raise InputError(f"{run_dir}: the run kept no rows")
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=min(n, total), replace=False))
    offsets = np.cumsum([0] + [len(k) for k in kept_idx])
    parts = []
    for i, path in enumerate(paths):
        mine = chosen[(chosen >= offsets[i]) & (chosen < offsets[i + 1])] - offsets[i]
        if len(mine) == 0:
            continue
        with out.fs.open_input_file(path) as f:
            t = pq.read_table(f)
        parts.append(t.take(pa.array(kept_idx[i][mine])))
    return pa.concat_tables(parts, promote_options="default")


def correlations(a: np.ndarray, b: np.ndarray, labels: tuple[str, ...], dimension: str) -> list[dict]:
    rows = []
    for j, label in enumerate(labels):
        x, y = a[:, j], b[:, j]
        failed_a, failed_b = int(np.isnan(x).sum()), int(np.isnan(y).sum())
        ok = ~(np.isnan(x) | np.isnan(y))
        x, y = x[ok], y[ok]
        constant = x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0
        rows.append(
            {
                "dimension": dimension,
                "label": label,
                "sample": int(a.shape[0]),
                "n": int(x.size),
                # texts a scorer could not score (e.g. an LM judge's malformed answers): left out
                "failed_a": failed_a,
                "failed_b": failed_b,
                "pearson": float("nan") if constant else float(stats.pearsonr(x, y)[0]),
                "spearman": float("nan") if constant else float(stats.spearmanr(x, y)[0]),
                "mean_a": float(x.mean()) if x.size else float("nan"),
                "mean_b": float(y.mean()) if y.size else float("nan"),
            }
        )
    return rows


def compare_scorers(run_dir: str, b: ScorerSpec, a: ScorerSpec | None = None, n: int = 500, seed: int = 0, dimensions: tuple[str, ...] = ("emotion", "moral")) -> list[dict]:
    """Correlate scorer ``a`` (default: the scores the run stored) with scorer ``b`` per label."""
    sample = sample_texts(run_dir, n, seed)
    texts = sample.column(schema.TEXT).to_pylist()
    dims = tuple(d for d in dimensions if a is not None or schema.score_column(d) in sample.column_names)
    if not dims:
        raise InputError(f"{run_dir}: the run stored no scores to compare with")
    scorer_b = make_scorer(b, dims)
    scorer_b.setup()
    got_b = scorer_b.score(texts)
    if a is None:
        got_a = {d: score_matrix(sample.column(schema.score_column(d)), len(DIMENSIONS[d])) for d in dims}
    else:
        scorer_a = make_scorer(a, dims)
        scorer_a.setup()
        got_a = scorer_a.score(texts)
    rows: list[dict] = []
    for d in dims:
        rows += correlations(np.asarray(got_a[d], float), np.asarray(got_b[d], float), DIMENSIONS[d], d)
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = [f"{'dimension':<9} {'label':<12} {'n':>5} {'fail_a':>6} {'fail_b':>6} {'pearson':>8} {'spearman':>8} {'mean_a':>7} {'mean_b':>7}"]
    for r in rows:
        lines.append(
            f"{r['dimension']:<9} {r['label']:<12} {r['n']:>5} {r['failed_a']:>6} {r['failed_b']:>6} "
            f"{r['pearson']:>8.3f} {r['spearman']:>8.3f} {r['mean_a']:>7.3f} {r['mean_b']:>7.3f}"
        )
    failed = max((r["failed_b"] for r in rows), default=0)
    if rows and failed:
        lines.append(f"scorer B could not score {failed} of {rows[0]['sample']} texts (recorded as failures, not zeros); correlations use the rest")
    return "\n".join(lines)
