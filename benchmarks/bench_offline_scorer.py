"""Throughput of the offline default scorer: in process, and through the job, for both encoders.

Two measurements, on the same corpus of real tweets (default: the 13,689 governors' COVID tweets in
``../shared/data/real-tweets/governors_covid_2020_2021.jsonl``; ``--corpus`` for another jsonl with
a ``text`` field, or a synthetic corpus from ``affalign synth``):

* ``inproc``: ``OfflineScorer.score`` (both dimensions: normalisation, encoder, heads) on batches of
  ``--batch`` texts, in a fresh subprocess per (encoder, threads) so the thread settings hold for
  torch, BLAS and the tokenizer; texts/s over the steady part (the first batch, a warm-up, is left
  out). The ``exact`` encoder (fp32 MiniLM) is timed on the first ``--exact-rows`` texts.
* ``job``: ``affalign run`` with ``generation.enabled=false`` and both dimensions on the offline
  scorer, once per encoder, in one invocation: wall time of the command and rows/s of the human
  pass (rows read / the ``human_pass`` stage time in ``run.json``).

Prints one line per figure; ``--record`` appends a table to ``benchmarks/RESULTS.md`` with the
hardware, date and commit. Record only on a quiet machine (``flock -x /tmp/affalign-cpu.lock``).

    python benchmarks/bench_offline_scorer.py inproc
    python benchmarks/bench_offline_scorer.py job --record
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(REPO), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from bench_tagging import RESULTS, cores, hardware  # noqa: E402
from provenance import git_commit  # noqa: E402

SHARED = Path(os.environ.get("AFFALIGN_SHARED", REPO.parent / "shared"))
DEFAULT_CORPUS = SHARED / "data" / "real-tweets" / "governors_covid_2020_2021.jsonl"

JOB = """name: bench-offline
dataset: covid
input: {{path: {corpus}, group_column: party, groups: [liberal, conservative]}}
min_texts_per_group: 10
scoring:
  dimensions: [emotion, moral]
  emotion: {{scorer: offline, options: {{encoder: {encoder}}}}}
  moral: {{scorer: offline, options: {{encoder: {encoder}}}}}
reduce: {{mode: mean}}
generation: {{enabled: false}}
report: false
"""

CHILD = r"""
import json, os, sys, time
threads = int(sys.argv[1]); encoder = sys.argv[2]; path = sys.argv[3]; rows = int(sys.argv[4]); batch = int(sys.argv[5])
import torch
torch.set_num_threads(threads)
from affalign.scorers.base import ScorerSpec
from affalign.scorers.offline import OfflineScorer
texts = [json.loads(line)["text"] for line in open(path, encoding="utf-8") if line.strip()][:rows]
s = OfflineScorer(ScorerSpec(scorer="offline", device="cpu", batch_size=256, options={"encoder": encoder}), ("emotion", "moral"))
s.setup()
s.score(texts[:batch])  # warm-up (first batch: lazy imports, caches)
t0 = time.perf_counter(); n = 0
for i in range(batch, len(texts), batch):
    part = texts[i : i + batch]
    s.score(part)
    n += len(part)
dt = time.perf_counter() - t0
print(json.dumps({"encoder": encoder, "threads": threads, "texts": n, "seconds": dt, "texts_per_s": n / dt}))
"""


def thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS", "RAYON_RS_NUM_CPUS"):
        env[k] = str(threads)
    env["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def inproc(args: argparse.Namespace) -> list[dict]:
    out = []
    for encoder in args.encoders:
        for threads in args.threads:
            rows = args.exact_rows if encoder == "exact" else args.rows
            res = subprocess.run(
                [sys.executable, "-c", CHILD, str(threads), encoder, str(args.corpus), str(rows), str(args.batch)],
                env=thread_env(threads), capture_output=True, text=True, check=False,
            )
            if res.returncode:
                raise SystemExit(f"inproc {encoder}/{threads}: failed:\n{res.stderr[-3000:]}")
            r = json.loads(res.stdout.strip().splitlines()[-1])
            print(f"inproc encoder={encoder} threads={threads}: {r['texts_per_s']:,.0f} texts/s ({r['texts']} texts, {r['seconds']:.1f} s)", flush=True)
            out.append(r)
    return out


def count_rows(path: Path) -> int:
    if path.is_file():
        return sum(1 for line in path.open(encoding="utf-8") if line.strip())
    return -1


def job(args: argparse.Namespace) -> list[dict]:
    out = []
    for encoder in args.encoders:
        with tempfile.TemporaryDirectory(prefix="bench-offline-") as tmp:
            spec = Path(tmp) / "job.yaml"
            spec.write_text(JOB.format(corpus=args.corpus, encoder=encoder), encoding="utf-8")
            run_dir = Path(tmp) / "run"
            cmd = [sys.executable, "-m", "affalign.cli", "run", str(spec), "--out", str(run_dir)]
            if args.num_cpus:
                cmd += ["--set", f"ray.num_cpus={args.num_cpus}"]
            t0 = time.perf_counter()
            res = subprocess.run(cmd, env=thread_env(1), capture_output=True, text=True, check=False, cwd=REPO)
            wall = time.perf_counter() - t0
            if res.returncode:
                raise SystemExit(f"job {encoder}: exit {res.returncode}:\n{res.stderr[-3000:]}")
            doc = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
            stages = doc.get("timings_s") or doc.get("stage_timings_s") or doc.get("timings") or {}
            human = next((float(v) for k, v in stages.items() if "human" in k), None)
            rows = count_rows(Path(args.corpus))
            r = {"encoder": encoder, "rows": rows, "wall_s": wall, "human_pass_s": human,
                 "rows_per_s_wall": rows / wall, "rows_per_s_human_pass": (rows / human) if human else None}
            hp = f"{r['rows_per_s_human_pass']:,.0f} rows/s in the human pass ({human:.1f} s), " if human else ""
            print(f"job encoder={encoder}: {hp}{r['rows_per_s_wall']:,.0f} rows/s over the whole command ({wall:.1f} s, {rows} rows)", flush=True)
            out.append(r)
    return out


def record(args: argparse.Namespace, results: list[dict]) -> None:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "",
        f"### Offline scorer throughput, {args.what} ({when})",
        "",
        f"`python benchmarks/bench_offline_scorer.py {' '.join(sys.argv[1:])}`; hardware: {hardware()}, {cores()} cores; "
        f"commit {git_commit()}; corpus `{args.corpus}`; ran alone (flock -x /tmp/affalign-cpu.lock).",
        "",
    ]
    if args.what == "inproc":
        lines += ["| encoder | threads | texts/s | texts |", "|---|---|---|---|"]
        lines += [f"| {r['encoder']} | {r['threads']} | {r['texts_per_s']:,.0f} | {r['texts']} |" for r in results]
    else:
        lines += ["| encoder | rows | human pass s | rows/s (human pass) | wall s | rows/s (whole command) |", "|---|---|---|---|---|---|"]
        for r in results:
            hp = f"{r['human_pass_s']:.1f} | {r['rows_per_s_human_pass']:,.0f}" if r["human_pass_s"] else "n/a | n/a"
            lines.append(f"| {r['encoder']} | {r['rows']} | {hp} | {r['wall_s']:.1f} | {r['rows_per_s_wall']:,.0f} |")
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"recorded in {RESULTS}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["inproc", "job"])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="jsonl with a text field (job: an input the job reads)")
    ap.add_argument("--encoders", nargs="+", default=["exact", "fast"], choices=["exact", "fast"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--rows", type=int, default=20_000, help="inproc: texts for the fast encoder")
    ap.add_argument("--exact-rows", type=int, default=1_536, help="inproc: texts for the exact encoder")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--num-cpus", type=int, default=None, help="job: ray.num_cpus")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args(argv)
    if not Path(args.corpus).exists():
        print(f"corpus not found: {args.corpus}", file=sys.stderr)
        return 2
    results = inproc(args) if args.what == "inproc" else job(args)
    if args.record:
        record(args, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
