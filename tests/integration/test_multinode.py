"""A real multi-node Ray cluster on loopback: a head and a worker started with ``ray start``.

The head has 1 CPU and no GPU; the worker has 1 CPU and one *declared* GPU (Ray schedules on it,
torch finds no CUDA there, so "GPU" actors run their model on the CPU). The demo job runs three
times on the same small corpus: embedded (no cluster), joined with ``--address``, and as a
``ray job submit`` entrypoint; every published table must be identical across the three.

The cluster has its own ``--temp-dir`` and token authentication, so it is never the cluster that
another process on the machine finds by default, and teardown stops only its own processes
(``ray stop`` would stop every Ray on the machine).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RAY = BIN / "ray"
AFFALIGN = BIN / "affalign"

pytestmark = [pytest.mark.slow]

# the demo job made small: a few topics, a handful of responses of a few tokens per mode
JOB_OVERRIDES = [
    "--set", "min_texts_per_group=20",
    "--set", "generation.n_responses=3",
    "--set", "generation.max_topics=2",
    "--set", "generation.models=[{name: smollm2-135m-instruct, batch_size: 8, params: {max_new_tokens: 8}}]",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_mentioning(needle: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if needle.encode() in cmd:
            pids.append(int(d.name))
    return pids


def _stop_cluster(temp_dir: str) -> None:
    """Stop the processes of this cluster only (their command lines name its temp dir)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _pids_mentioning(temp_dir):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + 15
        while _pids_mentioning(temp_dir) and time.time() < deadline:
            time.sleep(0.5)


def _check(cmd: list[str], env: dict[str, str], log: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    log.write_text(res.stdout + res.stderr)
    assert res.returncode == 0, f"{' '.join(cmd[:4])} ... exited {res.returncode}:\n{(res.stdout + res.stderr)[-4000:]}"
    return res


@pytest.fixture(scope="module")
def cluster():
    if not RAY.exists():
        pytest.skip("the ray command line is not installed next to this Python")
    # unix socket paths must stay short: a temp dir directly under /tmp
    temp_dir = tempfile.mkdtemp(prefix="afmn", dir="/tmp")
    token = Path(temp_dir) / "token"
    token.write_text(os.urandom(32).hex())
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token), PYTHONUNBUFFERED="1")
    port, dash = _free_port(), _free_port()
    common = ["--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}", "--object-store-memory=400000000", "--disable-usage-stats"]

    def own_ports() -> list[str]:
        # every node's agents on ports of their own: Ray's fixed defaults (52365 for the dashboard
        # agent) are taken by any other Ray on the machine, and the job API needs the head's agent
        return [f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
                f"--runtime-env-agent-port={_free_port()}", f"--metrics-export-port={_free_port()}"]

    logs = Path(temp_dir)
    try:
        _check([str(RAY), "start", "--head", f"--port={port}", "--num-cpus=1", "--num-gpus=0",
                "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", *common, *own_ports()],
               env, logs / "head.log", timeout=180)
        _check([str(RAY), "start", f"--address=127.0.0.1:{port}", "--num-cpus=1", "--num-gpus=1", *common, *own_ports()],
               env, logs / "worker.log", timeout=180)
        yield {"address": f"127.0.0.1:{port}", "dashboard": f"http://127.0.0.1:{dash}", "env": env, "dir": Path(temp_dir)}
    finally:
        _stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def corpus(cluster):
    out = cluster["dir"] / "corpus"
    _check([str(AFFALIGN), "synth", "--dataset", "covid", "--rows", "2500", "--seed", "3", "--out", str(out)],
           cluster["env"], cluster["dir"] / "synth.log", timeout=120)
    return out


def _tables(out: Path) -> dict[str, list[dict]]:
    """Every published table, rows sorted, for comparing runs."""
    got = {}
    for name in ("distributions.parquet", "alignment.parquet"):
        rows = pq.read_table(out / name).to_pylist()
        got[name] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))
    got["summary.csv"] = sorted((out / "summary.csv").read_text().splitlines())
    gens = pq.read_table(out / "generations").select(["plan_id", "text"]).to_pylist()
    got["generations"] = sorted((g["plan_id"], g["text"]) for g in gens)
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete"
    got["counts"] = [run["rows"]] if "rows" in run else [run.get("counts")]
    got["topics"] = json.dumps(run.get("topics"), sort_keys=True, default=str)
    return got


def test_demo_job_on_a_two_node_cluster_matches_an_embedded_run(cluster, corpus):
    env, d = cluster["env"], cluster["dir"]
    base = [str(AFFALIGN), "run", "jobs/demo.yaml", "--set", f"input.path={corpus}", *JOB_OVERRIDES]

    # embedded: a local Ray of its own, even with the cluster running on this machine
    _check([*base, "--out", str(d / "embedded"), "--set", "ray.num_cpus=2"], env, d / "embedded.log")
    embedded = _tables(d / "embedded")
    assert embedded["generations"], "the demo generates responses"

    # joined with --address: the driver here, the work on the head and worker nodes
    joined = _check([*base, "--out", str(d / "joined"), "--address", cluster["address"]], env, d / "joined.log")
    assert _tables(d / "joined") == embedded

    # ray job submit: the driver itself runs on the cluster (Ray sets RAY_ADDRESS for it)
    entry = "cd " + shlex.quote(str(REPO)) + " && " + shlex.join(
        [sys.executable, "-m", "affalign.cli", *base[1:], "--out", str(d / "submitted")]
    )
    _check([str(RAY), "job", "submit", "--address", cluster["dashboard"], "--", "bash", "-c", entry], env, d / "submitted.log")
    assert _tables(d / "submitted") == embedded

    # the cluster really was used: both joined runs saw two nodes, 2 CPUs and the worker's GPU;
    # the embedded one saw its own single node
    for name, nodes, gpus in (("joined", 2, 1), ("submitted", 2, 1), ("embedded", 1, 0)):
        ray_info = json.loads((d / name / "run.json").read_text())["ray"]
        assert (ray_info["nodes"], ray_info["resources"]["CPU"], ray_info["resources"].get("GPU", 0)) == (nodes, 2, gpus), (name, ray_info, joined.stderr[-2000:])
