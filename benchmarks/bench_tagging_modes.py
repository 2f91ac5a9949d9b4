"""Keyword vs semantic vs hybrid topic tagging: precision/recall on the held-out labelled set, and cost through the job.

Quality: the TEST split of ``tests/data/tagging_eval/`` (each dataset's tweets plus the off-topic
negatives; the semantic cuts were calibrated on the dev split only, by
``scripts/calibrate_semantic_tagger.py``), scored by :mod:`affalign.tagging_quality` (H4's scorer, the
same one ``bench_tagging_quality.py`` uses for keyword tagging): micro precision/recall over topic
labels and over issue labels, "any issue" (on-subject detection), and per-issue figures.

Cost: the governors' COVID tweets (``../shared/data/real-tweets/governors_covid_2020_2021.jsonl``,
13,689 rows) through ``run_job`` on an embedded Ray with 2 CPUs, scoring and report off, once per
mode; the figure is rows in / wall seconds of the human pass (read, validate, tag, write).

Run alone (``flock -x /tmp/affalign-cpu.lock``); ``--record`` appends a section to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.provenance import git_commit  # noqa: E402

EVAL_DIR = REPO / "tests" / "data" / "tagging_eval"
GOVERNORS = REPO.parent / "shared" / "data" / "real-tweets" / "governors_covid_2020_2021.jsonl"
MODES = ("keywords", "semantic", "hybrid")


def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def _micro(scores) -> tuple[float | None, float | None, int]:
    tp = sum(s.tp for s in scores)
    fp = sum(s.fp for s in scores)
    fn = sum(s.fn for s in scores)
    return (tp / (tp + fp) if tp + fp else None, tp / (tp + fn) if tp + fn else None, tp + fn)


def quality(split: str) -> tuple[list[str], dict]:
    from affalign.tagging.semantic import load_semantic, tag_texts
    from affalign.tagging_quality import evaluate, load_rows
    from affalign.taxonomy import load_taxonomy

    lines = [
        "| dataset | mode | topics P | topics R | issues P | issues R | any issue P | any issue R | per-issue P/R |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    figures: dict = {}
    for ds in ("covid", "roe"):
        tax = load_taxonomy(ds)
        rows = load_rows(EVAL_DIR, ds, split)
        sem = load_semantic(ds)
        for mode in MODES:
            rep = evaluate(tax, rows, lambda texts, m=mode, d=ds: tag_texts(texts, d, m), split)
            tp, tr, n_topic = _micro(rep.topics.values())
            ip, ir, _ = _micro(rep.issues.values())
            a = rep.any_issue
            per_issue = "; ".join(f"{name} {_f(s.precision)}/{_f(s.recall)}" for name, s in rep.issues.items())
            lines.append(f"| {ds} ({len(rows)} tweets, {n_topic} topic labels) | {mode} | {_f(tp)} | {_f(tr)} | {_f(ip)} | {_f(ir)} | {_f(a.precision)} | {_f(a.recall)} | {per_issue} |")
            figures[f"{ds}/{mode}"] = {"topics": [tp, tr], "issues": [ip, ir], "any_issue": [a.precision, a.recall]}
        figures[f"{ds}/cuts"] = {"cut": sem.cut, "hybrid_cut": sem.hybrid_cut, "background_margin": sem.background_margin, "top_delta": sem.top_delta}
    return lines, figures


SWEEP = (0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75)


def hybrid_sweep(split: str) -> list[str]:
    """Hybrid at other cuts on the same split: is there a cut where it beats keywords on both P and R?"""
    from affalign.tagging.semantic import assign, cached_semantic_matcher, keyword_bits
    from affalign.tagging_quality import evaluate, load_rows
    from affalign.taxonomy import load_taxonomy

    lines = ["| dataset | hybrid_cut | topics P | topics R | issues P | issues R | topics added |", "|---|---:|---:|---:|---:|---:|---:|"]
    for ds in ("covid", "roe"):
        tax = load_taxonomy(ds)
        rows = load_rows(EVAL_DIR, ds, split)
        texts = [r["text"] for r in rows]
        m = cached_semantic_matcher(ds, "", "cpu", 256)
        sims = m.topic_similarities(texts)
        kw = keyword_bits(ds, texts)
        for cut in SWEEP:
            bits = assign("hybrid", sims, kw, -1.0, cut)
            tags = [[m.topic_names[j] for j in np.nonzero(b)[0]] for b in bits]
            rep = evaluate(tax, rows, lambda _t, tags=tags: tags, split)
            tp, tr, _ = _micro(rep.topics.values())
            ip, ir, _ = _micro(rep.issues.values())
            lines.append(f"| {ds} | {cut:.2f} | {_f(tp)} | {_f(tr)} | {_f(ip)} | {_f(ir)} | {int((bits & ~kw).sum())} |")
    return lines


def throughput(rows_path: Path) -> dict[str, dict]:
    import ray

    from affalign.config import config_from_dict
    from affalign.job import run_job

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    out: dict[str, dict] = {}
    try:
        for mode in MODES:
            with tempfile.TemporaryDirectory() as tmp:
                cfg = config_from_dict(
                    {
                        "name": f"tagging-{mode}",
                        "dataset": "covid",
                        "input": {"path": str(rows_path), "groups": ["liberal", "conservative"]},
                        "min_texts_per_group": 1,
                        "tagging": {"mode": mode},
                        "scoring": {"enabled": False},
                        "report": False,
                    }
                )
                t0 = time.perf_counter()
                doc = run_job(cfg, str(Path(tmp) / "out"))
                wall = time.perf_counter() - t0
                run = json.loads((Path(tmp) / "out" / "run.json").read_text())
                human = run["timings"]["human_pass"]
                n = run["rows"]["in"]
                tagged = sum(sum(t["counts"].values()) for t in run["topics"]["kept"]) if "topics" in run else None
                out[mode] = {"rows": n, "human_pass_s": human, "rows_per_s": n / human, "job_wall_s": wall, "status": doc.get("status"), "topic_memberships": tagged}
                print(mode, out[mode], flush=True)
    finally:
        ray.shutdown()
    return out


def _throughput_md(tp: dict[str, dict]) -> list[str]:
    md = [
        "",
        "Cost through the job: governors' COVID tweets (13,689 rows) through `run_job`, embedded Ray with 2 CPUs,",
        "scoring and report off; rows/s = rows in / human-pass seconds (read, validate, tag, write; the semantic",
        "stage's model load included).",
        "",
        "| mode | rows | human pass (s) | rows/s | job wall (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    return md + [f"| {m} | {v['rows']} | {v['human_pass_s']:.1f} | {v['rows_per_s']:.0f} | {v['job_wall_s']:.1f} |" for m, v in tp.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--split", default="test", choices=["dev", "test"])
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--throughput-only", action="store_true", help="only the cost through the job (recorded as its own section)")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    date = dt.date.today().isoformat()
    hw = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    if args.throughput_only:
        tp = throughput(GOVERNORS)
        if args.record:
            md = [
                "",
                f"## Tagging modes: cost through the job (bench_tagging_modes.py --throughput-only, {date})",
                "",
                f"Commit {git_commit()} + uncommitted changes; {hw}; ran alone (`flock -x /tmp/affalign-cpu.lock`).",
                *_throughput_md(tp),
            ]
            with open(REPO / "benchmarks" / "RESULTS.md", "a", encoding="utf-8") as f:
                f.write("\n".join(md) + "\n")
        return
    lines, figures = quality(args.split)
    print("\n".join(lines))
    print(json.dumps(figures, indent=1, default=str))
    sweep = hybrid_sweep(args.split)
    print("\n".join(sweep))
    tp = {} if args.no_throughput or not GOVERNORS.is_file() else throughput(GOVERNORS)
    if not args.record:
        return
    md = [
        "",
        f"## Tagging modes: keywords vs semantic vs hybrid (bench_tagging_modes.py, {date})",
        "",
        f"Commit {git_commit()} + uncommitted changes; {hw}"
        + ("; ran alone (`flock -x /tmp/affalign-cpu.lock`)." if tp else "; quality figures only (no timing, so not run alone)."),
        f"Quality on the **{args.split}** split of tests/data/tagging_eval (the dataset's tweets + the off-topic negatives);",
        "semantic cuts calibrated on the dev split only (scripts/calibrate_semantic_tagger.py). Micro precision (P) and",
        "recall (R) over topic labels, over issue labels, and for \"on any issue\". Cuts: "
        + "; ".join(f"{k.split('/')[0]} {v}" for k, v in figures.items() if k.endswith("/cuts"))
        + ".",
        "",
        *lines,
        "",
        f"Hybrid at other cuts, same {args.split} split (reported, not tuned on: is there any cut where hybrid beats keywords on both",
        "precision and recall?); \"topics added\" = semantic topics hybrid adds to the keyword matches:",
        "",
        *sweep,
    ]
    if tp:
        md += _throughput_md(tp)
    with open(REPO / "benchmarks" / "RESULTS.md", "a", encoding="utf-8") as f:
        f.write("\n".join(md) + "\n")
    print("recorded in benchmarks/RESULTS.md")


if __name__ == "__main__":
    main()
