"""Generation and scoring pools run side by side: one model's responses are scored while the next
model is still generating, and every response is scored exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch")

from affalign.synth import SynthSpec, synthesize  # noqa: E402
from tests.unit.test_hf_backend import build_tiny_causal  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

JOB = """
name: side-by-side
dataset: covid
input: {{path: {corpus}, groups: [liberal, conservative]}}
min_texts_per_group: 20
scoring:
  emotion: {scoring}
  moral: {scoring}
generation:
  enabled: true
  models:
    - {{id: tiny-a, backend: hf, kind: instruct, path: {model}, batch_size: 4, params: {{max_new_tokens: 4}}, options: {{device: cpu}}}}
    - {{id: tiny-b, backend: hf, kind: instruct, path: {model}, batch_size: 4, params: {{max_new_tokens: 4}}, options: {{device: cpu, batch_delay_s: 1.5}}}}
  modes: [default, liberal, conservative]
  n_responses: 4
  max_topics: 2
report: false
"""


def test_one_models_responses_are_scored_while_the_next_generates(tmp_path):
    synthesize(SynthSpec(dataset="covid", rows=3_000, seed=2, rows_per_shard=3_000), str(tmp_path / "corpus"))
    model = build_tiny_causal(tmp_path / "tiny")
    calls = tmp_path / "score-calls.log"
    scoring = f"{{scorer: 'tests.support.faulty_scorer:RecordingScorer', options: {{log: '{calls}'}}}}"
    job = tmp_path / "job.yaml"
    job.write_text(JOB.format(corpus=tmp_path / "corpus", model=model, scoring=scoring))
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false"}
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "affalign.cli", "run", str(job), "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    doc = json.loads((out / "run.json").read_text())
    assert doc["generation"]["counts"]["planned"] == 48 and doc["generation"]["counts"]["generated"] == 48

    def last_part(model_id: str) -> float:
        return max(p.stat().st_mtime for p in (out / "generations" / model_id).rglob("*.parquet"))

    a_done, b_done = last_part("tiny-a"), last_part("tiny-b")
    assert b_done - a_done > 5  # tiny-b is slow on purpose
    times = [float(line.split()[0]) for line in calls.read_text().splitlines()]
    # human tweets are scored before any generation; a call between the end of tiny-a's generation
    # and the end of tiny-b's can only be tiny-a's responses being scored side by side
    assert any(a_done < t < b_done for t in times), (a_done, b_done, times[-6:])

    scores = pq.read_table(out / "scores" / "model")
    ids = scores.column("text_id")
    assert scores.num_rows == 48 and pc.count_distinct(ids).as_py() == 48
    assert set(pc.unique(scores.column("subject")).to_pylist()) == {f"model:tiny-{m}:{mode}" for m in "ab" for mode in ("default", "liberal", "conservative")}
