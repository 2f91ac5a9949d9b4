"""End-to-end throughput and memory of ``affalign run`` on a synthetic corpus.

Makes (once, cached, not timed) a covid corpus of ``--rows`` tweets with ``affalign.synth``, then
times ``python -m affalign.cli run`` on it as a user would run it: a fresh process that starts
embedded Ray, streams the human pass, finalizes and reduces (generation off). Scoring is
``--scoring lexicon`` (default, cheap), ``offline`` (the default scorer: MiniLM encoder + heads)
or ``disabled``.

Reported: wall time and rows/s of the whole command (Ray start-up included), the stage timings
from ``run.json``, and memory, sampled from ``/proc`` every ``--sample-interval`` seconds over the
process tree of the command: the driver's peak RSS, the largest peak RSS of one Ray worker, and
the peak of the workers' summed PSS (proportional set size, so the object store's shared pages
are not counted once per worker). ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` (the largest RSS of any
reaped process of the tree) is printed as a cross-check.

Prints one line; ``--record`` appends it to benchmarks/RESULTS.md (see bench_tagging.py for the
columns).

    python benchmarks/bench_pipeline.py                         # 200k rows, lexicon scorer
    python benchmarks/bench_pipeline.py --scoring disabled --record
    python benchmarks/bench_pipeline.py --dataset roe --rows 12000000 --scoring disabled --record   # full scale
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(REPO), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from bench_tagging import CACHE, RESULTS, command_line, cores, git_commit, hardware, load1, record_rows  # noqa: E402

JOB = """name: bench
dataset: {dataset}
input: {{path: {corpus}, groups: [liberal, conservative]}}
min_texts_per_group: 100
scoring: {scoring}
reduce: {{mode: mean}}
generation: {{enabled: false}}
report: false
"""
SCORING = {
    "lexicon": "{emotion: {scorer: lexicon}, moral: {scorer: lexicon}}",
    "offline": "{emotion: {scorer: offline}, moral: {scorer: offline}}",
    "disabled": "{enabled: false}",
}


def corpus(rows: int, seed: int, rows_per_shard: int, dataset: str = "covid") -> Path:
    path = CACHE / f"pipeline-{dataset}-{rows}-{seed}-{rows_per_shard}"
    if not (path / "_truth.json").exists():
        from affalign.synth import SynthSpec, synthesize

        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        t0 = time.perf_counter()
        synthesize(SynthSpec(dataset=dataset, rows=rows, seed=seed, bad_fraction=0.01, rows_per_shard=rows_per_shard), str(tmp))
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
        print(f"synthesized {rows:,} rows in {time.perf_counter() - t0:.0f}s -> {path}", file=sys.stderr)
    return path


# ---------------------------------------------------------------------------------------------
# Memory of a process tree, from /proc


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        # the command name may contain spaces and parentheses: fields after the last ')'
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def descendants(pid: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _kb(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def is_ray_worker(cmd: str) -> bool:
    return cmd.startswith("ray::") or "default_worker.py" in cmd


@dataclass
class MemorySampler:
    """Peaks of the driver's RSS, one worker's RSS and the workers' summed PSS (kB)."""

    pid: int
    interval: float = 0.5
    driver_rss: int = 0
    worker_rss: int = 0
    workers_pss: int = 0
    max_workers: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        self.driver_rss = max(self.driver_rss, _kb(f"/proc/{self.pid}/status", "VmRSS:"))
        pss, n = 0, 0
        for p in descendants(self.pid):
            if p == self.pid or not is_ray_worker(_cmdline(p)):
                continue
            n += 1
            self.worker_rss = max(self.worker_rss, _kb(f"/proc/{p}/status", "VmRSS:"))
            pss += _kb(f"/proc/{p}/smaps_rollup", "Pss:") or _kb(f"/proc/{p}/status", "VmRSS:")
        self.workers_pss = max(self.workers_pss, pss)
        self.max_workers = max(self.max_workers, n)
        self.samples += 1


def mib(kb: int) -> str:
    return f"{kb / 1024:,.0f} MiB"


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dataset", choices=["covid", "roe"], default="covid")
    ap.add_argument("--rows-per-shard", type=int, default=50_000, help="corpus shard size (a shard is at least one read task)")
    ap.add_argument("--scoring", choices=sorted(SCORING), default="lexicon")
    ap.add_argument("--sample-fraction", type=float, default=1.0, help="scoring.sample_fraction: share of tagged tweets scored (the rest still flow through every stage)")
    ap.add_argument("--num-cpus", type=int, default=None, help="ray.num_cpus of the job (default: the machine's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample-interval", type=float, default=0.5)
    ap.add_argument("--out", default=None, help="output dir (default: a temporary dir, removed)")
    ap.add_argument("--record", action="store_true", help=f"append the figure to {RESULTS.relative_to(REPO)}")
    args = ap.parse_args(argv)

    data = corpus(args.rows, args.seed, args.rows_per_shard, args.dataset)
    tmp = Path(tempfile.mkdtemp(prefix="affalign-bench-pipeline-"))
    try:
        job = tmp / "job.yaml"
        job.write_text(JOB.format(corpus=data, scoring=SCORING[args.scoring], dataset=args.dataset))
        out = Path(args.out) if args.out else tmp / "out"
        cmd = [sys.executable, "-m", "affalign.cli", "run", str(job), "--out", str(out)]
        if args.num_cpus:
            cmd += ["--set", f"ray.num_cpus={args.num_cpus}"]
        if args.sample_fraction < 1.0:
            cmd += ["--set", f"scoring.sample_fraction={args.sample_fraction}"]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])), "RAY_USAGE_STATS_ENABLED": "0"}
        load_before = load1()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        sampler = MemorySampler(proc.pid, args.sample_interval).start()
        output, _ = proc.communicate()
        wall = time.perf_counter() - t0
        sampler.stop()
        load_after = load1()
        children_maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kB on Linux
        if proc.returncode != 0:
            print(output[-4000:], file=sys.stderr)
            print(f"bench_pipeline: affalign run failed with exit code {proc.returncode}", file=sys.stderr)
            return 1
        run = json.loads((out / "run.json").read_text())
    finally:
        if not args.out:
            shutil.rmtree(tmp, ignore_errors=True)

    timings = run.get("timings", {})
    rows_in = run["rows"]["in"]
    rate = rows_in / wall
    sampled = f" on a {args.sample_fraction:g} sample ({run['rows']['kept']:,} tweets scored)" if args.sample_fraction < 1.0 else ""
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items() if v >= 0.05)
    memory = f"driver peak RSS {mib(sampler.driver_rss)}, worker peak RSS {mib(sampler.worker_rss)}, workers' peak PSS sum {mib(sampler.workers_pss)} ({sampler.max_workers} workers)"
    line = (
        f"pipeline: {rate:,.0f} rows/s end to end ({rows_in:,} {args.dataset} rows, scoring {args.scoring}{sampled}, wall {wall:.1f}s incl. Ray start; "
        f"human pass {rows_in / max(timings.get('human_pass', 0), 1e-9):,.0f} rows/s); {memory}; {stages}; "
        f"max RSS of a reaped process {mib(children_maxrss)}; load {load_before:.2f} -> {load_after:.2f}"
    )
    print(line)
    if args.record:
        record_rows(
            [
                {
                    "benchmark": f"bench_pipeline: affalign run ({args.dataset}), scoring {args.scoring}{sampled}",
                    "figure": f"{rate:,.0f}",
                    "unit": "rows/s end to end",
                    "hardware": hardware(),
                    "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
                    "commit": git_commit(),
                    "command": command_line("bench_pipeline.py", argv),
                    "notes": (
                        f"{rows_in:,} rows, wall {wall:.1f}s incl. Ray start ({args.num_cpus or cores()} CPUs); {stages}; {memory}; "
                        f"load {load_before:.2f}/{load_after:.2f} on {cores()} cores"
                    ),
                }
            ]
        )
        print(f"recorded in {RESULTS.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
