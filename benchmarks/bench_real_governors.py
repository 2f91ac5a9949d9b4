"""The human side of the job on real partisan tweets: US governors' COVID-19 tweets, 2020-2021, party known.

``../shared/data/real-tweets/governors_covid_2020_2021.jsonl`` (13,689 tweets; ``party`` liberal for
Democratic, conservative for Republican governors; in the input contract) through tagging (keywords, the
default), offline scoring, reduce and report, generation off. Records topics kept, tweets per group and
topic, the baseline S (human:liberal vs human:conservative) per dimension, and wall time.

``min_texts_per_group`` is 100, not the paper's 1,000: the paper applied 1,000 to 9M tweets; here the
whole corpus has 13,689 tweets (9,084 liberal, 4,605 conservative), so 1,000 would keep at most one or
two topics. At 100 tweets a label's share in a group's distribution has a standard error of at most
0.05 (sqrt(0.25/100)), small next to the differences S measures, and most topics with a real presence in
governors' tweets stay in.

``--sample N`` runs on a seeded sample (the integration test uses 1,500 rows). Run the recorded run alone:
``flock -x /tmp/affalign-cpu.lock python benchmarks/bench_real_governors.py --record --figure docs/governors_covid.png``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.provenance import git_commit  # noqa: E402

GOVERNORS = REPO.parent / "shared" / "data" / "real-tweets" / "governors_covid_2020_2021.jsonl"
MIN_TEXTS = 100


def sample_corpus(src: Path, dst: Path, n: int | None, seed: int = 20261130) -> int:
    """Copy the corpus (or a seeded sample of ``n`` rows, in file order) to ``dst``; returns the row count."""
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    if n is not None and n < len(lines):
        keep = sorted(random.Random(seed).sample(range(len(lines)), n))
        lines = [lines[i] for i in keep]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("".join(lines), encoding="utf-8")
    return len(lines)


def job_config(corpus: Path, min_texts: int, tagging_mode: str = "keywords", report: bool = True, encoder: str | None = None) -> dict[str, Any]:
    scorer: dict[str, Any] = {"scorer": "offline", **({"options": {"encoder": encoder}} if encoder else {})}
    return {
        "name": "governors-covid",
        "dataset": "covid",
        "input": {"path": str(corpus), "format": "jsonl", "group_column": "party", "groups": ["liberal", "conservative"]},
        "min_texts_per_group": min_texts,
        "tagging": {"mode": tagging_mode},
        "scoring": {"dimensions": ["emotion", "moral"], "emotion": dict(scorer), "moral": dict(scorer)},
        "reduce": {"mode": "mean"},
        "generation": {"enabled": False},
        "report": report,
    }


def run(corpus: Path, out: Path, min_texts: int, encoder: str | None = None) -> dict[str, Any]:
    from affalign.config import config_from_dict
    from affalign.job import run_job

    cfg = config_from_dict(job_config(corpus, min_texts, encoder=encoder), "bench_real_governors")
    t0 = time.perf_counter()
    run_job(cfg, str(out))
    wall = time.perf_counter() - t0
    doc = json.loads((out / "run.json").read_text())
    with open(out / "summary.csv", encoding="utf-8") as f:
        summary = list(csv.DictReader(f))
    return {"wall_s": wall, "run": doc, "summary": summary}


def baseline(summary: list[dict]) -> dict[str, str]:
    """S of human:liberal vs human:conservative per dimension (the summary's mean over kept topics)."""
    out = {}
    for r in summary:
        if r["subject"] == "human:liberal" and r["target"] == "human:conservative":
            out[r["dimension"]] = r["score_mean"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sample", type=int, default=None, help="rows to sample (default: all)")
    ap.add_argument("--min-texts", type=int, default=MIN_TEXTS)
    ap.add_argument("--out", default="runs/governors")
    ap.add_argument("--encoder", default=None, help="offline scorer encoder option (default: the scorer's default)")
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--figure", default=None, help="copy the report's alignment figure here (a PNG)")
    args = ap.parse_args()
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    out = REPO / args.out
    shutil.rmtree(out, ignore_errors=True)
    corpus = out.parent / f"{out.name}_corpus" / "governors.jsonl"
    n = sample_corpus(GOVERNORS, corpus, args.sample)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        res = run(corpus, out, args.min_texts, args.encoder)
    finally:
        ray.shutdown()
    doc = res["run"]
    kept = doc["topics"]["kept"]
    dropped = doc["topics"]["dropped"]
    base = baseline(res["summary"])
    print(json.dumps({"rows": n, "wall_s": round(res["wall_s"], 1), "rows_detail": doc["rows"], "kept": kept, "baseline_S": base, "timings": doc["timings"]}, indent=1))
    figs = sorted((out / "report" / "figures").glob("*.png"))
    print("figures:", [str(f) for f in figs])
    if args.figure and figs:
        # the affect distributions of both parties on the topic where they differ most: what a report on real tweets shows
        pick = next((f for f in figs if "emotion_c_topic" in f.name), next((f for f in figs if "emotion" in f.name), figs[0]))
        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pick, args.figure)
        print("figure copied:", pick, "->", args.figure)
    if not args.record:
        return
    hw = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    md = [
        "",
        f"## Real partisan tweets: governors' COVID-19 tweets through the human side (bench_real_governors.py, {dt.date.today().isoformat()})",
        "",
        f"Commit {git_commit()} + uncommitted changes; {hw}; embedded Ray, 2 CPUs; ran alone (`flock -x /tmp/affalign-cpu.lock`).",
        f"`{GOVERNORS.relative_to(REPO.parent)}`: {n} rows; keyword tagging (default), offline scorer (emotion + moral, encoder {args.encoder or 'default'}), reduce mean,",
        f"report on, generation off. min_texts_per_group = {args.min_texts} (not 1,000: the paper's threshold is for 9M tweets; this corpus",
        "has 13,689, so 1,000 would keep one or two topics; at 100 a label share's standard error is at most 0.05).",
        "",
        f"Wall time {res['wall_s']:.0f} s (timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in doc["timings"].items()) + ").",
        f"Rows: in {doc['rows']['in']}, kept {doc['rows']['kept']}, filtered {doc['rows']['filtered']}, rejected {doc['rows']['rejected']}"
        + (f" ({', '.join(f'{k} {v}' for k, v in doc['rows'].get('by_reason', {}).items())})" if doc["rows"].get("by_reason") else "")
        + ".",
        "",
        "Baseline S (human:liberal vs human:conservative, mean over kept topics): " + ", ".join(f"{d} {v}" for d, v in base.items()) + ".",
        "",
        f"Topics kept ({len(kept)} of {len(kept) + len(dropped)}): tweets per group",
        "",
        "| issue | topic | liberal | conservative |",
        "|---|---|---:|---:|",
    ]
    md += [f"| {t['issue']} | {t['topic']} | {t['counts'].get('liberal', 0)} | {t['counts'].get('conservative', 0)} |" for t in kept]
    md += ["", "Dropped (a group below the threshold): " + "; ".join(f"{t['topic']} ({t['counts'].get('liberal', 0)}/{t['counts'].get('conservative', 0)})" for t in dropped) + "."]
    with open(REPO / "benchmarks" / "RESULTS.md", "a", encoding="utf-8") as f:
        f.write("\n".join(md) + "\n")
    print("recorded in benchmarks/RESULTS.md")


if __name__ == "__main__":
    main()
