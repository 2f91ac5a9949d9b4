"""Topic tagging throughput: tweets/s per CPU core of ``TopicTagStage``.

Tweets come from ``affalign.synth`` (the covid taxonomy's keywords, filler, cue words, off-topic
texts; made once before any clock starts and cached). Measured:

* ``one process`` (the figure): ``TopicTagStage.process`` on Arrow batches of 8192 rows in this
  process — normalisation (Arrow compute) plus the pyahocorasick loop — best of ``--repeat``;
  one process uses one core, so this is tweets/s per core;
* the split of that time between ``normalize_texts`` and the matcher loop;
* ``ahocorasick-rs``: the matcher's inner loop on the same normalised texts with
  ``ahocorasick_rs`` (overlapping matches, the same padded patterns and bit masks), checked to give
  the same topics, to see whether swapping the automaton would pay;
* ``ray data``: the stage through Ray Data exactly as the job applies it (``apply_stage``: tasks of
  ``num_cpus=1``, the stage's batches of 32768) on an embedded Ray with ``--num-cpus`` CPUs; tweets/s divided by
  that CPU count (start-up of Ray excluded, scheduling and object-store traffic included).

Prints one line (the one-process figure, with the others after it); ``--record`` appends rows to
benchmarks/RESULTS.md (hardware, date, git commit, command). The machine should be otherwise idle:
the 1-minute load average before and after is printed and recorded in the notes.

    python benchmarks/bench_tagging.py                    # 200k tweets
    python benchmarks/bench_tagging.py --rows 400000 --record
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from provenance import git_commit  # noqa: E402  (benchmarks/ is the script directory)

from affalign import schema  # noqa: E402
from affalign.stages.topics import TopicTagStage  # noqa: E402
from affalign.tagging.keywords import KeywordMatcher, normalize_texts  # noqa: E402

RESULTS = REPO / "benchmarks" / "RESULTS.md"
SECTION = "## Tagging and end-to-end pipeline (bench_tagging.py, bench_pipeline.py)"
COLUMNS = ("benchmark", "figure", "unit", "hardware", "date", "commit", "command", "notes")
HEADER = """# Benchmark results

Rows are appended by the benchmark scripts in this directory with `--record`; each section says
what its columns mean. Figures from a shared or busy machine are noted as such.
"""
SECTION_TEXT = f"""{SECTION}

Columns: **benchmark** (script/measurement), **figure** and **unit** (the measured rate),
**hardware** (`lscpu` model name and the CPU cores available to the process), **date** (UTC),
**commit** (`git rev-parse --short HEAD`, `+dirty` when tracked files had uncommitted changes),
**command** (how to reproduce), **notes** (rows, settings, machine load: the 1-minute `uptime`
load average before/after the measurement).

| {" | ".join(COLUMNS)} |
|{"---|" * len(COLUMNS)}
"""
CACHE = Path(os.environ.get("AFFALIGN_BENCH_CACHE", Path(tempfile.gettempdir()) / "affalign-bench"))


# ---------------------------------------------------------------------------------------------
# Reporting (shared with bench_pipeline.py)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def hardware() -> str:
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"^Model name:\s*(.+)$", out, re.MULTILINE)
        model = m.group(1).strip() if m else ""
    except (OSError, subprocess.SubprocessError):
        pass
    return f"{model or platform.processor() or platform.machine()}, {cores()} cores"


def load1() -> float:
    return os.getloadavg()[0]


def command_line(script: str, argv: list[str]) -> str:
    return "python " + " ".join(shlex.quote(a) for a in [f"benchmarks/{script}", *argv])


def record_rows(rows: list[dict[str, str]]) -> None:
    """Append rows to this section's table in RESULTS.md (created with its header if missing).

    Other benchmark scripts keep their own sections in the same file, so rows are inserted after
    the last row of this section's table, not at the end of the file.
    """
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else HEADER
    if SECTION not in text:
        text = text.rstrip("\n") + "\n\n" + SECTION_TEXT
    lines = text.splitlines()
    start = lines.index(SECTION)
    i = start + 1
    while i < len(lines) and not lines[i].startswith("| benchmark |"):
        i += 1
    i += 2  # header and rule
    while i < len(lines) and lines[i].startswith("|"):
        i += 1
    new = ["| " + " | ".join(r[c].replace("|", "\\|") for c in COLUMNS) + " |" for r in rows]
    lines[i:i] = new
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Tweets


def synthetic_tweets(rows: int, seed: int = 0) -> pa.Table:
    """``text`` and ``reason`` (null) of ``rows`` synthetic covid tweets, cached on disk."""
    path = CACHE / f"tagging-covid-{rows}-{seed}.parquet"
    if not path.exists():
        from affalign.synth import SynthSpec, synthesize

        with tempfile.TemporaryDirectory() as tmp:
            synthesize(SynthSpec(dataset="covid", rows=rows, seed=seed, rows_per_shard=rows), tmp)
            table = pq.read_table(tmp, columns=[schema.TEXT])
        CACHE.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").rename(path)
    table = pq.read_table(path)
    return table.append_column(schema.REASON, pa.nulls(table.num_rows, pa.string()))


def batches(table: pa.Table, size: int) -> list[pa.Table]:
    return [table.slice(i, size).combine_chunks() for i in range(0, table.num_rows, size)]


# ---------------------------------------------------------------------------------------------
# Measurements


def one_process(parts: list[pa.Table], repeat: int) -> dict[str, float]:
    stage = TopicTagStage("covid")
    t0 = time.perf_counter()
    stage.setup()  # taxonomy + automaton: paid once per process, or per Ray task for a task stage
    setup_s = time.perf_counter() - t0
    stage.process(parts[0])  # warm caches (mask -> names)
    n = sum(p.num_rows for p in parts)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for p in parts:
            stage.process(p)
        best = min(best, time.perf_counter() - t0)
    # where the time goes: normalisation (Arrow) vs the Aho-Corasick loop (Python + C)
    matcher = stage._matcher
    assert matcher is not None
    t_norm = t_match = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        normed = [normalize_texts(p.column(schema.TEXT)).to_pylist() for p in parts]
        t1 = time.perf_counter()
        for texts in normed:
            matcher.tag_normalized(texts)
        t2 = time.perf_counter()
        t_norm, t_match = min(t_norm, t1 - t0), min(t_match, t2 - t1)
    return {"tweets_per_s": n / best, "seconds": best, "normalize_s": t_norm, "match_s": t_match, "setup_s": setup_s}


class RsMatcher:
    """The inner loop of ``KeywordMatcher.tag_normalized`` on ``ahocorasick_rs`` (same patterns, masks)."""

    def __init__(self, matcher: KeywordMatcher):
        import ahocorasick_rs

        patterns, values = [], []
        for pattern, value in matcher._automaton.items():
            patterns.append(pattern)
            values.append(value)
        self.values = values
        self.names = matcher._names
        # overlapping matches, as pyahocorasick's iter(): adjacent padded keywords share a space
        self.ac = ahocorasick_rs.AhoCorasick(patterns, matchkind=ahocorasick_rs.MATCHKIND_STANDARD)

    def tag_normalized(self, normalized: list[str | None]) -> list[list[str]]:
        find = self.ac.find_matches_as_indexes
        values = self.values
        out: list[list[str]] = []
        append = out.append
        for text in normalized:
            if not text:
                append([])
                continue
            strong = weak = ctx = 0
            for idx, _, _ in find(text, overlapping=True):
                s, w, c = values[idx]
                strong |= s
                weak |= w
                ctx |= c
            if weak and (ctx or strong):
                strong |= weak
            append(self.names(strong))
        return out


def rs_inner_loop(parts: list[pa.Table], repeat: int) -> dict[str, float]:
    stage = TopicTagStage("covid")
    stage.setup()
    matcher = stage._matcher
    assert matcher is not None
    rs = RsMatcher(matcher)
    normed = [normalize_texts(p.column(schema.TEXT)).to_pylist() for p in parts]
    for texts in normed:  # same topics, else the comparison means nothing
        if rs.tag_normalized(texts) != matcher.tag_normalized(texts):
            raise AssertionError("ahocorasick-rs variant tags differently from the pyahocorasick matcher")
    n = sum(len(t) for t in normed)
    best_py = best_rs = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for texts in normed:
            matcher.tag_normalized(texts)
        t1 = time.perf_counter()
        for texts in normed:
            rs.tag_normalized(texts)
        t2 = time.perf_counter()
        best_py, best_rs = min(best_py, t1 - t0), min(best_rs, t2 - t1)
    return {"py_loop_per_s": n / best_py, "rs_loop_per_s": n / best_rs, "speedup": best_py / best_rs}


def through_ray(parts: list[pa.Table], num_cpus: int, repeat: int) -> dict[str, float]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    import ray.data

    from affalign.runtime.adapter import apply_stage

    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        cluster = dict(ray.cluster_resources())
        refs = [ray.put(p) for p in parts]
        n = sum(p.num_rows for p in parts)
        best = float("inf")
        for i in range(repeat + 1):  # the first run warms the workers (imports, automaton)
            ds = ray.data.from_arrow_refs(refs)
            ds = apply_stage(ds, TopicTagStage("covid"), cluster)
            t0 = time.perf_counter()
            rows = 0
            for b in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                rows += b.num_rows
            elapsed = time.perf_counter() - t0
            assert rows == n, (rows, n)
            if i:
                best = min(best, elapsed)
        return {"tweets_per_s": n / best, "per_core": n / best / num_cpus, "seconds": best, "num_cpus": num_cpus}
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--batch-size", type=int, default=8192)
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is reported")
    ap.add_argument("--ray-repeat", type=int, default=1, help="timed Ray Data runs after the warm-up run; the best is reported")
    ap.add_argument("--num-cpus", type=int, default=cores(), help="CPUs of the embedded Ray (default: the cores available)")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray Data measurement")
    ap.add_argument("--block-rows", type=int, default=200_000, help="rows per Ray Data block (the job's read units are 200,000 rows)")
    ap.add_argument("--no-rs", action="store_true", help="skip the ahocorasick-rs comparison")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--record", action="store_true", help=f"append the figures to {RESULTS.relative_to(REPO)}")
    args = ap.parse_args(argv)

    table = synthetic_tweets(args.rows, args.seed)
    parts = batches(table, args.batch_size)
    load_before = load1()
    one = one_process(parts, args.repeat)
    rs = None if args.no_rs else rs_inner_loop(parts, args.repeat)
    # Ray Data gets blocks the size the job's read units produce; the stage cuts them into batches
    ray_res = None if args.no_ray else through_ray(batches(table, args.block_rows), args.num_cpus, args.ray_repeat)
    load_after = load1()

    line = f"tagging: {one['tweets_per_s']:,.0f} tweets/s per core (TopicTagStage.process, one process, batches of {args.batch_size}, {args.rows:,} tweets)"
    extra = [f"setup (taxonomy + automaton) {one['setup_s']:.1f}s", f"normalize {one['normalize_s'] / (one['normalize_s'] + one['match_s']):.0%} / match loop {one['match_s'] / (one['normalize_s'] + one['match_s']):.0%}"]
    if rs:
        extra.append(f"match loop: pyahocorasick {rs['py_loop_per_s']:,.0f}/s vs ahocorasick-rs {rs['rs_loop_per_s']:,.0f}/s ({rs['speedup']:.2f}x)")
    if ray_res:
        extra.append(f"ray data: {ray_res['tweets_per_s']:,.0f} tweets/s on {args.num_cpus} CPUs = {ray_res['per_core']:,.0f} per core (blocks of {args.block_rows:,} rows)")
    extra.append(f"load {load_before:.2f} -> {load_after:.2f}")
    print(line + "; " + "; ".join(extra))

    if args.record:
        common = {
            "hardware": hardware(),
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
            "commit": git_commit(),
            "command": command_line("bench_tagging.py", argv),
        }
        load = f"load {load_before:.2f}/{load_after:.2f} on {cores()} cores"
        rows = [
            {
                **common,
                "benchmark": "bench_tagging: TopicTagStage.process, one process",
                "figure": f"{one['tweets_per_s']:,.0f}",
                "unit": "tweets/s per core",
                "notes": f"{args.rows:,} synthetic covid tweets, batches of {args.batch_size}, best of {args.repeat}; setup {one['setup_s']:.1f}s (not in the figure); normalize {one['normalize_s']:.2f}s + match {one['match_s']:.2f}s; {load}",
            }
        ]
        if rs:
            rows.append(
                {
                    **common,
                    "benchmark": "bench_tagging: match loop, ahocorasick-rs vs pyahocorasick",
                    "figure": f"{rs['speedup']:.2f}",
                    "unit": "x (rs / py loop speed)",
                    "notes": f"py {rs['py_loop_per_s']:,.0f}/s, rs {rs['rs_loop_per_s']:,.0f}/s on the same normalised texts; same topics; {load}",
                }
            )
        if ray_res:
            rows.append(
                {
                    **common,
                    "benchmark": "bench_tagging: TopicTagStage through Ray Data (apply_stage tasks)",
                    "figure": f"{ray_res['per_core']:,.0f}",
                    "unit": "tweets/s per core",
                    "notes": f"{ray_res['tweets_per_s']:,.0f} tweets/s on {args.num_cpus} Ray CPUs, best of {args.ray_repeat} after a warm-up run; scheduling, object store, the stage's setup in every task ({one['setup_s']:.1f}s in one process) and the consuming driver on the same cores; {load}",
                }
            )
        record_rows(rows)
        print(f"recorded in {RESULTS.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
