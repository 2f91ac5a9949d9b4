"""Soak: kill a whole `affalign run` at random points N times, resume, and compare with an uninterrupted run.

The job reads a synthetic covid corpus, tags and scores it (lexicon scorer, so the soak is about
the run's bookkeeping, not scoring speed), generates responses with a tiny local HF model (random
weights, built from a config) in three modes, scores and reduces them. First an uninterrupted
reference run; then the same command is started in a second directory and SIGKILLed - the whole
process group: driver, Ray and every worker - after a random delay, ``--kills`` times, and finally
run to completion. The outputs must equal the reference's:

* ``distributions.parquet``, ``alignment.parquet``, ``summary.csv``: equal, value for value;
* ``scores/human``: the same (text_id, subject) rows with the same scores, none twice;
* ``generations/`` and ``scores/model``: every plan row exactly once, with the same text and scores;
* ``rejects/`` and ``run.json`` row counts: equal.

Prints one line and, with ``--record``, appends it to benchmarks/RESULTS.md.

    python benchmarks/soak_resume.py --kills 8 --record
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import signal
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

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from bench_tagging import RESULTS, command_line, git_commit, hardware  # noqa: E402

SECTION = "## Soak: killed and resumed runs (soak_resume.py)"
SECTION_TEXT = f"""{SECTION}

Columns: **kills** (SIGKILLs of the whole run's process group that landed while it was running),
**rows lost** (rows of the reference run's outputs missing after the resumed run),
**duplicates** (rows present more than once), **identical** (every output table equal to the
uninterrupted run's), **hardware**, **date**, **commit**, **command**, **notes**.

| kills | rows lost | duplicates | identical | hardware | date | commit | command | notes |
|---|---|---|---|---|---|---|---|---|
"""

JOB = """name: soak
dataset: covid
input: {{path: {corpus}, groups: [liberal, conservative]}}
min_texts_per_group: 100
scoring: {{emotion: {{scorer: lexicon}}, moral: {{scorer: lexicon}}}}
reduce: {{mode: mean}}
generation:
  enabled: true
  models:
    - {{id: tiny, backend: hf, kind: instruct, path: {model}, batch_size: 4, params: {{max_new_tokens: 8}}, options: {{device: cpu}}}}
  modes: [default, liberal, conservative]
  n_responses: {n_responses}
  max_topics: 3
  seed: 0
report: false
"""


def start(job: Path, out: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])), "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false"}
    fh = open(log, "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen([sys.executable, "-m", "affalign.cli", "run", str(job), "--out", str(out)], cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def kill_tree(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    # Ray's raylet and workers live in the same session; give the OS a moment to reap them
    time.sleep(1.0)


def _parquet_dir(path: Path) -> pa.Table | None:
    files = sorted(p for p in path.rglob("*.parquet") if "_tmp" not in p.parts)
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")


def _rows(table: pa.Table | None, key: list[str]) -> tuple[dict[tuple, tuple], int]:
    """Rows keyed by ``key`` (value: the other columns) and the number of duplicate keys."""
    if table is None:
        return {}, 0
    cols = sorted(table.column_names)
    out: dict[tuple, tuple] = {}
    dups = 0
    for row in table.select(cols).to_pylist():
        k = tuple(row[c] for c in key)
        if k in out:
            dups += 1
        out[k] = tuple(row[c] for c in cols if c not in key)
    return out, dups


def compare(ref: Path, got: Path) -> dict[str, object]:
    """Rows lost, duplicates and whether every output equals the reference."""
    report: dict[str, object] = {"lost": 0, "duplicates": 0, "identical": True, "diffs": []}

    def diff(name: str, detail: str) -> None:
        report["identical"] = False
        report["diffs"].append(f"{name}: {detail}")  # type: ignore[union-attr]

    for name in ("distributions.parquet", "alignment.parquet"):
        a, b = pq.read_table(ref / name), pq.read_table(got / name)
        if not a.equals(b):
            diff(name, "tables differ")
    if (ref / "summary.csv").read_text() != (got / "summary.csv").read_text():
        diff("summary.csv", "differs")
    for sub, key in (("scores/human", ["text_id", "subject"]), ("scores/model", ["text_id"]), ("generations", ["plan_id"]), ("rejects", ["_file", "_row"])):
        a, da = _rows(_parquet_dir(ref / sub), key)
        b, db = _rows(_parquet_dir(got / sub), key)
        lost = len(set(a) - set(b))
        report["lost"] = int(report["lost"]) + lost  # type: ignore[arg-type]
        report["duplicates"] = int(report["duplicates"]) + db  # type: ignore[arg-type]
        changed = sum(1 for k in set(a) & set(b) if a[k] != b[k])
        if lost or db or changed or len(b) != len(a):
            diff(sub, f"{len(a)} rows in the reference, {len(b)} resumed; {lost} lost, {db} duplicated (reference: {da}), {changed} changed")
    ra, rb = json.loads((ref / "run.json").read_text()), json.loads((got / "run.json").read_text())
    if rb.get("status") != "complete":
        diff("run.json", f"status {rb.get('status')}")
    if ra["rows"] != rb["rows"]:
        diff("run.json rows", f"{ra['rows']} != {rb['rows']}")
    ca, cb = ra.get("generation", {}).get("counts", {}), rb.get("generation", {}).get("counts", {})
    if ca.get("planned") != cb.get("planned") or cb.get("errors"):
        diff("run.json generation", f"{ca} != {cb}")
    return report


def record(row: dict[str, str]) -> None:
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    if SECTION not in text:
        text = text.rstrip("\n") + "\n\n" + SECTION_TEXT
    lines = text.splitlines()
    i = lines.index(SECTION) + 1
    while i < len(lines) and not lines[i].startswith("| kills |"):
        i += 1
    i += 2
    while i < len(lines) and lines[i].startswith("|"):
        i += 1
    cols = ["kills", "lost", "duplicates", "identical", "hardware", "date", "commit", "command", "notes"]
    lines[i:i] = ["| " + " | ".join(str(row[c]).replace("|", "\\|") for c in cols) + " |"]
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=5, help="how many times to kill the run")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--n-responses", type=int, default=8, help="generations per (topic, mode)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the corpus and of the kill times")
    ap.add_argument("--keep", default=None, help="keep the work directory here (default: a temporary one, removed)")
    ap.add_argument("--record", action="store_true", help=f"append the result to {RESULTS.relative_to(REPO)}")
    args = ap.parse_args(argv)

    from affalign.synth import SynthSpec, synthesize
    from tests.unit.test_hf_backend import build_tiny_causal

    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="affalign-soak-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        corpus = base / "corpus"
        if not (corpus / "_truth.json").exists():
            synthesize(SynthSpec(dataset="covid", rows=args.rows, seed=args.seed, bad_fraction=0.01, rows_per_shard=5_000), str(corpus))
        model = build_tiny_causal(base / "tiny-model")
        job = base / "job.yaml"
        job.write_text(JOB.format(corpus=corpus, model=model, n_responses=args.n_responses))
        log = base / "runs.log"

        shutil.rmtree(base / "ref", ignore_errors=True)
        t0 = time.perf_counter()
        ref = start(job, base / "ref", log)
        if ref.wait() != 0:
            print(log.read_text()[-3000:], file=sys.stderr)
            print("soak: the reference run failed", file=sys.stderr)
            return 1
        t_ref = time.perf_counter() - t0

        rng = random.Random(args.seed)
        out = base / "soaked"
        shutil.rmtree(out, ignore_errors=True)
        kills, finished_early, stages_hit = 0, 0, []
        for _ in range(args.kills):
            delay = rng.uniform(2.0, max(3.0, 0.9 * t_ref))
            proc = start(job, out, log)
            try:
                proc.wait(timeout=delay)
                finished_early += 1
                shutil.rmtree(out, ignore_errors=True)  # start again: a kill must land in a run
                continue
            except subprocess.TimeoutExpired:
                pass
            kill_tree(proc)
            status = json.loads((out / "run.json").read_text()).get("status") if (out / "run.json").exists() else None
            if status == "complete":
                # the kill landed after the run had published everything (while Ray shut down):
                # not a kill mid-run; start again so that the next kill lands in a run
                finished_early += 1
                shutil.rmtree(out, ignore_errors=True)
                continue
            kills += 1
            human_parts = len(list(out.glob("_work/rows-*/*.parquet")))
            human_done = any(out.glob("_work/rows-*/_SUCCESS"))
            gen_parts = len(list((out / "generations").rglob("*.parquet"))) if (out / "generations").exists() else 0
            where = "after the human pass" if human_done else f"in the human pass ({human_parts} parts written)"
            stages_hit.append(f"{delay:.0f}s {where}, {gen_parts} generation parts")
        t1 = time.perf_counter()
        last = start(job, out, log)
        if last.wait() != 0:
            print(log.read_text()[-3000:], file=sys.stderr)
            print("soak: the final resumed run failed", file=sys.stderr)
            return 1
        t_final = time.perf_counter() - t1
        result = compare(base / "ref", out)
        resumed = json.loads((out / "run.json").read_text()).get("resumed")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)

    line = (
        f"soak: {kills} kills survived, rows lost {result['lost']}, duplicates {result['duplicates']}, "
        f"outputs identical: {'yes' if result['identical'] else 'NO'}; reference run {t_ref:.0f}s, final resumed run {t_final:.0f}s "
        f"({resumed}); kills: {'; '.join(stages_hit)}"
        + (f"; {finished_early} runs finished before their kill" if finished_early else "")
    )
    print(line)
    for d in result["diffs"]:  # type: ignore[union-attr]
        print("  " + d)
    if args.record:
        record(
            {
                "kills": kills,
                "lost": result["lost"],
                "duplicates": result["duplicates"],
                "identical": "yes" if result["identical"] else "NO: " + "; ".join(result["diffs"]),  # type: ignore[arg-type]
                "hardware": hardware(),
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
                "commit": git_commit(),
                "command": command_line("soak_resume.py", argv),
                "notes": f"{args.rows:,} synthetic covid rows (1% bad), lexicon scorer, tiny HF model x 3 modes x 3 topics x {args.n_responses}; reference {t_ref:.0f}s; kill delays uniform in [2, {max(3.0, 0.9 * t_ref):.0f}]s; kills: {'; '.join(stages_hit)}",
            }
        )
        print(f"recorded in {RESULTS.relative_to(REPO)}", file=sys.stderr)
    return 0 if result["identical"] and not result["lost"] and not result["duplicates"] else 1


if __name__ == "__main__":
    sys.exit(main())
