"""The one GPU/CPU decision per pass (runtime.placement) and GPU pool caps (issue 14, findings 1–3, 8)."""

from __future__ import annotations

import logging

import pytest

from affalign.backends.base import ModelSpec
from affalign.errors import ConfigError
from affalign.runtime.adapter import map_batches_kwargs, pool_size
from affalign.runtime.placement import Placement, model_billions
from affalign.scorers.base import ScorerSpec
from affalign.stages.base import Resources, Stage

HF = ScorerSpec(scorer="hf", model="some/model")
LLAMA = ModelSpec(id="llama-2-7b-chat", path="meta-llama/Llama-2-7b-chat-hf")
SMOL = ModelSpec(id="smollm2-135m-instruct", path="/models/smol.gguf")


def test_cold_cluster_scorers_on_cuda_ask_for_a_gpu_like_generation(caplog):
    """Finding 2: `device: cuda` on a cluster whose GPU nodes are not up yet asks for GPUs (the
    autoscaler starts one); before, scorers got 0 GPUs, landed on CPU nodes and failed there."""
    cold = Placement.from_cluster({"CPU": 16})
    with caplog.at_level(logging.WARNING, logger="affalign"):
        assert cold.scorer_gpus([ScorerSpec(scorer="hf", model="a", device="cuda")]) == [1.0]
    assert "no GPU yet" in caplog.text
    two = [ScorerSpec(scorer="hf", model="a", device="cuda"), ScorerSpec(scorer="offline", device="cuda")]
    assert cold.scorer_gpus(two) == [0.5, 0.5]  # they share the first GPU node
    assert cold.generation_uses_gpu(ModelSpec(id="m", options={"device": "cuda"}))
    # device auto (or cpu) on a cluster without GPUs stays on CPU
    assert cold.scorer_gpus([HF, ScorerSpec(scorer="offline", device="cpu")]) == [0.0, 0.0]


def test_gpus_are_shared_between_scoring_passes():
    assert Placement.from_cluster({"CPU": 16, "GPU": 1}).scorer_gpus([HF, ScorerSpec(scorer="hf", model="b")]) == [0.5, 0.5]
    assert Placement.from_cluster({"CPU": 64, "GPU": 8}).scorer_gpus([HF, ScorerSpec(scorer="hf", model="b")]) == [1.0, 1.0]
    assert Placement.from_cluster({"CPU": 8, "GPU": 4}).scorer_gpus([ScorerSpec(scorer="lexicon"), ScorerSpec(scorer="hf", model="b", num_gpus=0.25)]) == [0.0, 0.25]


def test_a_7b_model_is_refused_on_cpu_unless_asked(caplog):
    """Finding 3: `device: auto` with no GPU at job start ran a 7B model on CPU in fp32 silently."""
    cpu_only = Placement.from_cluster({"CPU": 16, "memory": 64e9})
    with pytest.raises(ConfigError, match=r"llama-2-7b-chat.*~7B parameters.*no GPU.*allow_cpu"):
        cpu_only.check_generation(LLAMA)
    allowed = ModelSpec(id=LLAMA.id, path=LLAMA.path, options={"allow_cpu": True})
    cpu_only.check_generation(allowed)
    # at most as many fp32 copies as half the memory holds: 32 GB / 28 GB -> one replica, not 15
    assert cpu_only.generation_replicas(allowed) == 1
    with caplog.at_level(logging.WARNING, logger="affalign"):
        cpu_only.check_generation(SMOL)  # a small model runs on CPU, with a loud warning
    assert "generates on CPU" in caplog.text
    Placement.from_cluster({"CPU": 16, "GPU": 1}).check_generation(LLAMA)  # a GPU: fine
    cpu_only.check_generation(ModelSpec(id="gpt-x", backend="openai"))  # an API model: fine


def test_model_size_from_id_path_or_option():
    assert model_billions(LLAMA) == 7
    assert model_billions(SMOL) == pytest.approx(0.135)
    assert model_billions(ModelSpec(id="gpt-3.5-turbo-1106", backend="openai")) is None
    assert model_billions(ModelSpec(id="x", options={"params_b": 13})) == 13


def test_generation_and_scoring_overlap_only_when_both_fit():
    """Finding 1: on one GPU the scoring pool would wait for the whole generation (and Ray Data's
    no-progress guard would end the job); the passes then take turns."""
    one = Placement.from_cluster({"CPU": 16, "GPU": 1})
    assert not one.overlap_generation_and_scoring([LLAMA, SMOL], [0.5])
    two = Placement.from_cluster({"CPU": 16, "GPU": 2})
    assert two.overlap_generation_and_scoring([LLAMA, SMOL], [0.5, 0.5])
    # generation leaves the scoring passes' GPUs free when they overlap
    assert two.generation_replicas(LLAMA, gpus_reserved=1.0) == 1
    assert Placement.from_cluster({"CPU": 64, "GPU": 8}).generation_replicas(LLAMA, gpus_reserved=1.0) == 7
    cpu = Placement.from_cluster({"CPU": 4})
    assert cpu.overlap_generation_and_scoring([SMOL, SMOL], [0.0])


class _GpuActor(Stage):
    resources = Resources(num_cpus=1, num_gpus=0.5, actor=True)


def test_two_half_gpu_pools_on_one_gpu_get_one_actor_each():
    """Finding 8: each pool was capped at GPUs / 0.5 = 2 actors, two pools asking for 2 GPUs on one."""
    res = _GpuActor.resources
    assert pool_size(res, {"CPU": 16.0, "GPU": 1.0}, gpu_pools=2) == (1, 1)
    assert pool_size(res, {"CPU": 16.0, "GPU": 8.0}, gpu_pools=2) == (1, 8)
    kw = map_batches_kwargs(_GpuActor(), {"CPU": 16.0, "GPU": 1.0}, pools=2, gpu_pools=2)
    assert kw["compute"].max_size == 1 and kw["num_gpus"] == 0.5


def test_scorer_batch_default_follows_the_device():
    """Finding 8: defaults sized for small GPUs; a pass on a GPU now gets 1,024 rows per sub-batch."""
    from affalign.config import config_from_dict
    from affalign.passes.scoring import scoring_stages
    from affalign.stages.classify import SUB_BATCHES_PER_BATCH, AffectScoreStage

    cfg = config_from_dict({"name": "t", "dataset": "covid", "input": {"path": "x"}, "scoring": {"emotion": {"scorer": "hf", "model": "a/b"}, "moral": {"scorer": "offline"}}})

    def rows(cluster):
        return {s.spec.scorer: (s.spec.batch_size, s.resources.batch_size) for s in scoring_stages(cfg.scoring, Placement.from_cluster(cluster)) if isinstance(s, AffectScoreStage)}

    assert rows({"CPU": 16, "GPU": 2})["hf"] == (1024, 1024 * SUB_BATCHES_PER_BATCH)
    assert rows({"CPU": 16})["hf"] == (256, 256 * SUB_BATCHES_PER_BATCH)
    given = config_from_dict({"name": "t", "dataset": "covid", "input": {"path": "x"}, "scoring": {"emotion": {"scorer": "hf", "model": "a/b", "batch_size": 64}}})
    (stage,) = [s for s in scoring_stages(given.scoring, Placement.from_cluster({"CPU": 8, "GPU": 1})) if isinstance(s, AffectScoreStage) and s.spec.scorer == "hf"]
    assert stage.spec.batch_size == 64


def test_generation_models_are_prefetched_on_the_driver(monkeypatch):
    """Finding 9: a hub model was downloaded inside each GPU actor (counted against the
    no-progress guard); GenerateStage.prefetch downloads it once, on the driver."""
    import huggingface_hub

    from affalign.backends.hf import ModelLoadError
    from affalign.stages.generate import GenerateStage

    calls = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo, **kw: calls.append((repo, kw)) or "/cache/x")
    GenerateStage(ModelSpec(id="m", path="org/chat-7b"), use_gpu=True).prefetch()
    assert [c[0] for c in calls] == ["org/chat-7b"] and "*.safetensors" in calls[0][1]["allow_patterns"]
    GenerateStage(SMOL, use_gpu=False).prefetch()  # a local file: nothing to fetch
    GenerateStage(ModelSpec(id="gpt-x", backend="openai", path="gpt-x"), use_gpu=False).prefetch()
    assert len(calls) == 1

    def offline(repo, **kw):
        raise OSError("not in the cache and HF_HUB_OFFLINE=1")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ModelLoadError, match=r"prefetch on the driver.*org/chat-7b"):
        GenerateStage(ModelSpec(id="m", path="org/chat-7b"), use_gpu=True).prefetch()


def _events_of_run_models(monkeypatch, cluster):
    """run_models with generation and scoring replaced by recorders: the order they ran in."""
    import threading
    import time

    import pyarrow as pa

    from affalign import reduce
    from affalign.config import config_from_dict
    from affalign.passes import models as passes_models

    events: list[str] = []
    lock = threading.Lock()

    def generate(plan, models, out, resources, **kw):
        with lock:
            events.append(f"generate {models[0].id} start")
            if not kw.get("models_checked"):  # run_models checked every model already: no second warning
                events.append(f"generate {models[0].id} checks again")
        time.sleep(0.3)
        with lock:
            events.append(f"generate {models[0].id} end")
        return {"already_done": 0, "generated": plan.num_rows, "errors": 0, "seconds": 0.3}

    def score(cfg, plan, out, placement, *args):
        model = plan.column("model")[0].as_py()
        with lock:
            events.append(f"score {model} start")
        time.sleep(0.3)
        with lock:
            events.append(f"score {model} end")

    monkeypatch.setattr(passes_models, "run_generation", generate)
    monkeypatch.setattr(passes_models, "_score_planned", score)
    monkeypatch.setattr(passes_models, "prefetch", lambda stages: None)  # no hub model to fetch here
    monkeypatch.setattr(passes_models, "read_generations", lambda out: pa.table({"plan_id": pa.array([], pa.string()), "text": pa.array([], pa.string())}))

    class _Out:
        def read_parts(self, *a, **k):
            return []

    cfg = config_from_dict(
        {
            "name": "t",
            "dataset": "covid",
            "input": {"path": "x"},
            "scoring": {"emotion": {"scorer": "hf", "model": "a/b", "device": "cuda"}, "dimensions": ["emotion"]},
            "generation": {"enabled": True, "n_responses": 1, "modes": ["default"], "models": [{"id": "m1", "path": "org/m1", "options": {"device": "cuda"}}, {"id": "m2", "path": "org/m2", "options": {"device": "cuda"}}]},
        }
    )
    agg = reduce.Aggregator(("emotion",), 0.5)
    passes_models.run_models(cfg, ["Masks"], {"Masks": {"liberal": 5, "conservative": 5}}, _Out(), agg, Placement.from_cluster(cluster))
    return events


def test_on_one_gpu_a_model_is_scored_before_the_next_generates(monkeypatch):
    """Finding 1: the scoring pool started while the next model generated and waited for its GPU
    (Ray Data's no-progress guard then ended the job). On one GPU the passes now take turns."""
    events = _events_of_run_models(monkeypatch, {"CPU": 8, "GPU": 1})
    assert events == ["generate m1 start", "generate m1 end", "score m1 start", "score m1 end", "generate m2 start", "generate m2 end", "score m2 start", "score m2 end"]


def test_with_gpus_for_both_a_model_is_scored_while_the_next_generates(monkeypatch):
    events = _events_of_run_models(monkeypatch, {"CPU": 8, "GPU": 2})
    assert events.index("score m1 start") < events.index("generate m2 end")
