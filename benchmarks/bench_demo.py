"""Wall time of `make demo` after setup: its two commands (synth, run jobs/demo.yaml), with the stage
timings the run records in run.json.

    python benchmarks/bench_demo.py [--tree DIR] [--cold] [--record]

``--tree DIR`` runs the code of another checkout (e.g. ``git archive HEAD`` unpacked), with this
repository's virtual environment, for a before/after pair on one machine. ``--cold`` uses an empty
GGUF cache (what the first `make demo` after `make setup` sees); by default the cache is whatever
earlier runs left (the converted SmolLM2 copy), stated in the output. Record a figure only from a
run that held the machine alone: ``flock -x /tmp/affalign-cpu.lock python benchmarks/bench_demo.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from provenance import cpu_model  # noqa: E402  (benchmarks/ holds the provenance helper)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", default=str(REPO), help="checkout whose code runs (default: this one)")
    ap.add_argument("--cold", action="store_true", help="empty GGUF cache (first demo after setup)")
    ap.add_argument("--keep", default=None, help="keep the run's files in this directory")
    ap.add_argument("--record", action="store_true", help="append the figure to benchmarks/RESULTS.md")
    args = ap.parse_args()

    tree = Path(args.tree).resolve()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-demo-"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "RAY_USAGE_STATS_ENABLED": "0"}
    if args.cold:
        env["AFFALIGN_CACHE"] = str(work / "cache")
    py = [sys.executable, "-m", "affalign.cli"]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    subprocess.run([*py, "synth", "--dataset", "covid", "--rows", "20000", "--seed", "0", "--bad-fraction", "0.01", "--out", str(work / "corpus")], cwd=tree, env=env, check=True, capture_output=True)
    t1 = time.perf_counter()
    run = subprocess.run([*py, "run", "jobs/demo.yaml", "--out", str(work / "out"), "--set", f"input.path={work / 'corpus'}"], cwd=tree, env=env, capture_output=True, text=True)
    t2 = time.perf_counter()
    if run.returncode != 0:
        print(run.stderr[-4000:], file=sys.stderr)
        return run.returncode
    doc = json.loads((work / "out" / "run.json").read_text())
    result = {
        "total_s": round(t2 - t0, 1),
        "synth_s": round(t1 - t0, 1),
        "run_s": round(t2 - t1, 1),
        "timings": doc.get("timings"),
        "generation_s": (doc.get("generation") or {}).get("counts", {}).get("seconds"),
        "gguf_cache": "cold" if args.cold else "as left by earlier runs",
        "load_before": round(load0, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "tree": str(tree),
    }
    print(json.dumps(result, indent=1))
    if args.record:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        t = result["timings"] or {}
        row = (
            f"| {time.strftime('%Y-%m-%d')} | {result['total_s']} s | {result['synth_s']} | {round(result['run_s'] - sum(t.values()), 1)} | "
            f"{t.get('human_pass')} | {t.get('generation')} | {t.get('report')} | {result['gguf_cache']} | {cpu_model()}, {os.cpu_count()} cores, load {result['load_before']} | "
            f"{commit}{' + uncommitted changes' if dirty else ''} | `{tree}` |\n"
        )
        with open(REPO / "benchmarks" / "RESULTS.md", "a", encoding="utf-8") as f:
            f.write(row)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
