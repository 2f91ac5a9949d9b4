"""Topic-tagging quality: precision and recall of ``affalign tag`` on the hand-labelled set.

The set is ``tests/data/tagging_eval/`` (1,280 real tweets labelled by hand with the issues and
topics of Tables 1-2, guidelines and sampling scheme in its README). Tagging goes through the same
code path as ``affalign tag`` (``KeywordMatcher(load_taxonomy(dataset)).tag``). Each dataset is
scored on its own tweets plus the off-topic negatives; issues and topics micro-averaged.

Prints the tables (test split, then dev split) and the throughput of the matcher on the set;
``--record`` appends them to benchmarks/RESULTS.md with hardware, date and git commit. The dev
split was used to repair the keyword lists, so test is the figure; dev is shown labelled as such.

    python benchmarks/bench_tagging_quality.py            # print
    flock -x /tmp/affalign-cpu.lock python benchmarks/bench_tagging_quality.py --record
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from provenance import git_commit  # noqa: E402  (benchmarks/ is the script directory)

from affalign.tagging.keywords import KeywordMatcher  # noqa: E402
from affalign.tagging_quality import Report, evaluate, format_table, has_subject_word, load_rows  # noqa: E402
from affalign.taxonomy import load_taxonomy  # noqa: E402

EVAL_DIR = REPO / "tests" / "data" / "tagging_eval"
RESULTS = REPO / "benchmarks" / "RESULTS.md"


def measure(split: str) -> list[Report]:
    """One report per dataset on one split (``dev``, ``test`` or ``all``)."""
    reports = []
    for dataset in ("covid", "roe"):
        tax = load_taxonomy(dataset)
        matcher = KeywordMatcher(tax)
        rows = load_rows(EVAL_DIR, dataset, None if split == "all" else split)
        reports.append(evaluate(tax, rows, matcher.tag, split))
    return reports


def subject_word_recall(split: str = "test") -> str:
    """Issue recall on the on-issue tweets that hold a subject word (a context term or strong keyword)."""
    lines = ["| dataset | on-issue tweets | with a subject word | recall, any issue | recall per issue (labelled) |", "|---|---:|---:|---:|---|"]
    for dataset in ("covid", "roe"):
        tax = load_taxonomy(dataset)
        rows = [r for r in load_rows(EVAL_DIR, dataset, split) if r["dataset"] == dataset and set(r["topics"]) & set(tax.topic_names)]
        kept = [r for r, ok in zip(rows, has_subject_word(tax, [r["text"] for r in rows]), strict=True) if ok]
        rep = evaluate(tax, kept, KeywordMatcher(tax).tag, split)
        per = ", ".join(f"{i} {s.recall:.2f} ({s.labelled})" for i, s in rep.issues.items() if s.recall is not None)
        lines.append(f"| {dataset} | {len(rows)} | {len(kept)} | {rep.any_issue.recall:.2f} | {per} |")
    return "\n".join(lines)


def throughput() -> float:
    """Tweets/s of the matcher (normalisation included) on the labelled texts, best of 5, one process."""
    texts = [r["text"] for d in ("covid", "roe") for r in load_rows(EVAL_DIR, d)]
    texts = texts * max(1, 20000 // len(texts))
    matcher = KeywordMatcher(load_taxonomy("covid"))
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        matcher.tag(texts)
        best = min(best, time.perf_counter() - t0)
    return len(texts) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", action="store_true", help="append the tables to benchmarks/RESULTS.md")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    test, dev = measure("test"), measure("dev")
    rate = throughput()
    blocks = [format_table(r) for r in test] + [format_table(r).replace("split (", "split — used to repair the lists (") for r in dev]
    text = "\n\n".join(blocks)
    text += "\n\nRecall where the tweet holds a subject word (test split; the others cannot be found by keywords):\n\n"
    text += subject_word_recall("test")
    print(text)
    print(f"\nmatcher throughput on these texts: {rate:,.0f} tweets/s (one process); load average before {load:.2f}")
    if args.record:
        when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        cpu = platform.processor() or platform.machine()
        section = (
            f"\n## Topic tagging quality on hand-labelled real tweets (issue 12) — {when}\n\n"
            f"`python benchmarks/bench_tagging_quality.py --record`, run alone (`flock -x`), commit `{git_commit()}`, "
            f"{platform.system()} {cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"1-min load average before {load:.2f}.\n"
            "Set: `tests/data/tagging_eval/` (640 COVID-19, 440 abortion, 200 off-topic tweets, labelled by hand; "
            "sampling and guidelines in its README). Mode: keywords (the paper's tagging, `affalign tag`). "
            "Each dataset scored on its own tweets plus the negatives; **test** split is the figure, the dev split "
            "was used to repair the keyword lists.\n\n"
            f"{text}\n\nMatcher throughput on the same texts: {rate:,.0f} tweets/s in one process (best of 5).\n"
        )
        with RESULTS.open("a", encoding="utf-8") as f:
            f.write(section)
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
