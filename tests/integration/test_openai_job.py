"""A whole job with an OpenAI-compatible model on a loopback server that fails 20% of requests:
every plan row present exactly once, the budget respected, and the API key in no output or log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from affalign.synth import SynthSpec, synthesize
from tests.support.openai_server import FaultPlan, start_server

SECRET = "sk-test-DO-NOT-LEAK-0123456789abcdef"


def test_job_with_faulty_api_completes_without_leaking_the_key(tmp_path):
    synthesize(SynthSpec(dataset="covid", rows=8000, seed=5, rows_per_shard=4000), str(tmp_path / "corpus"))
    faults = FaultPlan(rates={"429:0.01": 0.07, "500": 0.07, "reset": 0.06}, seed=11)
    with start_server(faults=faults, expected_key=SECRET) as srv:
        model = {
            "id": "fake-chat",
            "backend": "openai",
            "kind": "instruct",
            "path": "gpt-3.5-turbo-1106",
            "options": {"base_url": srv.base_url, "backoff_base": 0.01, "backoff_max": 0.05, "concurrency": 4, "max_retries": 8, "budget": {"max_requests": 400}},
        }
        job = tmp_path / "job.yaml"
        job.write_text(
            json.dumps(
                {
                    "name": "api",
                    "dataset": "covid",
                    "input": {"path": str(tmp_path / "corpus"), "groups": ["liberal", "conservative"]},
                    "min_texts_per_group": 20,
                    "scoring": {"emotion": {"scorer": "lexicon"}, "moral": {"scorer": "lexicon"}},
                    "generation": {"enabled": True, "models": [model], "n_responses": 12, "max_topics": 3, "seed": 1},
                    "report": False,
                }
            )
        )
        env = {**os.environ, "OPENAI_API_KEY": SECRET}
        r = subprocess.run([sys.executable, "-m", "affalign.cli", "run", str(job), "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=900)
        hits = len(srv.requests)
        assert all(req.authorization == f"Bearer {SECRET}" for req in srv.requests)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert hits <= 400  # the hard request budget
    out = tmp_path / "out"
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete"
    from affalign.generation.store import read_generations

    gens = read_generations(str(out)).to_pandas()
    planned = 3 * 3 * 12  # topics x modes x n_responses
    assert len(gens) == planned and gens["plan_id"].is_unique
    assert gens["text"].notna().all()
    summary = (out / "summary.csv").read_text()
    for mode in ("default", "liberal", "conservative"):
        assert f"model:fake-chat:{mode}" in summary
    # the key appears nowhere: outputs, run.json, logs
    leaked = [str(p) for p in out.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaked == []
    assert SECRET not in r.stdout and SECRET not in r.stderr
    assert "sk-test" not in Path(out / "run.json").read_text()


def test_job_budget_is_one_limit_for_the_whole_job(tmp_path):
    """`generation.budget` (no per-model budget): a keeper actor holds it for both models; the run
    stops sending at the limit, keeps what was done and says what was spent."""
    synthesize(SynthSpec(dataset="covid", rows=4000, seed=6, rows_per_shard=4000), str(tmp_path / "corpus"))
    with start_server(expected_key=SECRET) as srv:
        model = {"id": "fake-chat", "backend": "openai", "kind": "instruct", "path": "gpt-3.5-turbo-1106", "options": {"base_url": srv.base_url, "concurrency": 4}}
        job = tmp_path / "job.yaml"
        job.write_text(
            json.dumps(
                {
                    "name": "api-budget",
                    "dataset": "covid",
                    "input": {"path": str(tmp_path / "corpus"), "groups": ["liberal", "conservative"]},
                    "min_texts_per_group": 10,
                    "scoring": {"emotion": {"scorer": "lexicon"}, "moral": {"scorer": "lexicon"}},
                    "generation": {"enabled": True, "models": [model, {**model, "id": "fake-chat-2"}], "n_responses": 10, "max_topics": 2, "seed": 1, "budget": {"max_requests": 70}},
                    "report": False,
                }
            )
        )
        env = {**os.environ, "OPENAI_API_KEY": SECRET}
        r = subprocess.run([sys.executable, "-m", "affalign.cli", "run", str(job), "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=900)
        hits = len(srv.requests)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # two models x 2 topics x 3 modes x 10 = 120 planned, but the job may send only 70 in all
    assert hits == 70
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["status"] == "complete"
    spent = run["generation"]["budget_spent"]
    assert spent["requests"] == 70 and spent["remaining"]["requests"] == 0 and spent["refused"] >= 1
    assert run["generation"]["counts"]["generated"] == 70 and run["generation"]["counts"]["errors"] == 50
