"""run_generation through Ray Data with a tiny local model: killed midway, rerun, nothing lost or redone.

Each run is a separate process (``ray.init(num_cpus=2)`` inside it), so the first one can be
SIGKILLed - driver, Ray and actors at once - as soon as its first part file appears.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch")
pytest.importorskip("ray")

from affalign.backends.base import GenerationParams, ModelSpec  # noqa: E402
from affalign.generation.plan import build_plan  # noqa: E402
from affalign.generation.store import GenerationStore  # noqa: E402
from affalign.passes.models import read_generations, run_generation  # noqa: E402
from tests.unit.test_hf_backend import build_tiny_causal  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TOPICS = ["COVID-19 vaccine types", "COVID-19 mask mandates and policies"]
MODES = ["default", "liberal", "conservative"]
N = 8  # 2 topics x 3 modes x 8 = 48 rows, 12 batches of 4

CHILD = r"""
import json, os, sys
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
import ray
from affalign.backends.base import GenerationParams, ModelSpec
from affalign.passes.models import run_generation
from affalign.generation.plan import build_plan

model_dir, root, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
spec = ModelSpec(id="tiny", kind="instruct", path=model_dir, batch_size=4,
                 params=GenerationParams(max_new_tokens=8, seed=0), options={"device": "cpu", "batch_delay_s": delay})
topics, modes, n = json.loads(sys.argv[4])
plan = build_plan([spec], "covid", topics, modes, n, seed=0)
counts = run_generation(plan, [spec], root, ray.cluster_resources(), progress=False)
print("COUNTS " + json.dumps(counts), flush=True)
ray.shutdown()
"""


def spec_for(model_dir: Path) -> ModelSpec:
    return ModelSpec(id="tiny", kind="instruct", path=str(model_dir), batch_size=4, params=GenerationParams(max_new_tokens=8, seed=0), options={"device": "cpu"})


def start(model_dir: Path, root: Path, delay: float) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_USAGE_STATS_ENABLED="0", TOKENIZERS_PARALLELISM="false")
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(model_dir), str(root), str(delay), json.dumps([TOPICS, MODES, N])],
        cwd=str(REPO),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: Ray's processes die with it
    )


def part_snapshot(root: Path) -> dict[str, bytes]:
    return {p: Path(p).read_bytes() for p in GenerationStore(str(root)).part_files()}


@pytest.mark.slow
def test_killed_run_resumes_without_loss_or_rework(tmp_path):
    model_dir = build_tiny_causal(tmp_path / "tiny")
    root = tmp_path / "run"
    spec = spec_for(model_dir)
    plan = build_plan([spec], "covid", TOPICS, MODES, N, seed=0)
    assert plan.num_rows == 48

    # Run 1: slow batches; SIGKILL the whole process group once the first part is published.
    proc = start(model_dir, root, delay=1.5)
    deadline = time.monotonic() + 240
    try:
        while not GenerationStore(str(root)).part_files():
            if proc.poll() is not None:
                pytest.fail(f"first run ended before writing a part:\n{proc.stdout.read()}")
            if time.monotonic() > deadline:
                pytest.fail("no part file within 240 s")
            time.sleep(0.1)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    before = part_snapshot(root)
    done_before = set()
    for path in before:
        done_before.update(pq.read_table(path, columns=["plan_id"]).column("plan_id").to_pylist())
    assert 0 < len(done_before) < plan.num_rows, len(done_before)

    # Run 2: no delay, to the end.
    proc = start(model_dir, root, delay=0)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    counts = json.loads(next(line for line in out.splitlines() if line.startswith("COUNTS "))[len("COUNTS ") :])
    assert counts["planned"] == 48 and counts["already_done"] == len(done_before)
    assert counts["generated"] == 48 - len(done_before) and counts["errors"] == 0

    # Every plan row exactly once; nothing that was done was generated again.
    gens = read_generations(str(root))
    assert gens.num_rows == 48
    assert sorted(gens.column("plan_id").to_pylist()) == sorted(plan.column("plan_id").to_pylist())
    after = part_snapshot(root)
    for path, data in before.items():
        assert after[path] == data  # old parts untouched
    on_disk = []
    for path in set(after) - set(before):
        on_disk += pq.read_table(path, columns=["plan_id"]).column("plan_id").to_pylist()
    assert len(on_disk) == len(set(on_disk)) == 48 - len(done_before)
    assert done_before.isdisjoint(on_disk)
    assert not [p for p in Path(root).rglob(".tmp-*")]
    ok = gens.filter(pc.is_null(gens.column("error")))
    assert ok.num_rows == 48 and set(ok.column("finish_reason").to_pylist()) <= {"stop", "length"}
    assert all(0 < n <= 8 for n in ok.column("completion_tokens").to_pylist())

    # Run 3 (in-process): nothing left, so it does not even start Ray.
    again = run_generation(plan, [spec], str(root), {"CPU": 2}, progress=False)
    assert again == {"planned": 48, "already_done": 48, "generated": 0, "errors": 0}
