"""A small machine never hangs: pools sized over all pools of a dataset, offline dimensions in one
pass, a stalled pass explained (issue 15 item 0)."""

from __future__ import annotations

from pathlib import Path

from affalign.config import load_config
from affalign.passes.scoring import scorer_groups
from affalign.runtime.adapter import actor_cpus, count_pools, map_batches_kwargs, pool_size, task_cpus
from affalign.runtime.executor import stall_report
from affalign.scorers.base import ScorerSpec
from affalign.stages.base import Resources, Stage
from affalign.stages.classify import AffectScoreStage

REPO = Path(__file__).resolve().parents[2]
OFFLINE = ["scoring.emotion.scorer=offline", "scoring.moral.scorer=offline", "generation.enabled=false"]


def _cpus_in_use(pools: list[Resources], cluster: dict[str, float]) -> float:
    """CPUs held when every pool runs its largest size, plus one read task."""
    n = len(pools)
    held = sum(pool_size(r, cluster, pools=n)[1] * actor_cpus(r, cluster, pools=n) for r in pools)
    return held + task_cpus(Resources(num_cpus=1), cluster)


def test_pools_of_one_dataset_always_leave_a_cpu_for_reads():
    one = Resources(num_cpus=1, actor=True)
    for cpus in (1.0, 2.0, 3.0, 4.0, 16.0):
        cluster = {"CPU": cpus}
        for n in (1, 2, 3):
            assert _cpus_in_use([one] * n, cluster) <= cpus + 1e-9, (cpus, n)
    # two 1-CPU pools on 2 CPUs: one actor each at half a CPU, one CPU for the read task
    assert pool_size(one, {"CPU": 2.0}, pools=2) == (1, 1)
    assert actor_cpus(one, {"CPU": 2.0}, pools=2) == 0.5
    # a big machine: pools split what the reserve leaves
    assert pool_size(one, {"CPU": 16.0}, pools=3) == (1, 5) and actor_cpus(one, {"CPU": 16.0}, pools=3) == 1
    # a small host with one GPU and two half-GPU pools: the GPU actors hold no more than their CPU share
    gpu = Resources(num_cpus=1, num_gpus=0.5, actor=True)
    assert _cpus_in_use([gpu, gpu], {"CPU": 2.0, "GPU": 1.0}) <= 2.0


def test_map_batches_kwargs_take_the_pool_count():
    class Actor(Stage):
        resources = Resources(num_cpus=1, batch_size=64, actor=True)

    kw = map_batches_kwargs(Actor(), {"CPU": 2.0}, pools=2)
    assert kw["num_cpus"] == 0.5 and (kw["compute"].min_size, kw["compute"].max_size) == (1, 1)
    assert kw["max_restarts"] == 3 and kw["max_task_retries"] == 3
    assert count_pools([Actor(), Actor()]) == 2


def test_offline_override_drops_hf_options_and_scores_both_dimensions_in_one_pass():
    cfg = load_config(REPO / "jobs" / "covid.yaml", ["input.path=/tmp/x", *OFFLINE])
    for dim in ("emotion", "moral"):
        spec = cfg.scoring.spec(dim)
        assert spec.scorer == "offline" and spec.label_map is None and spec.model is None
        assert spec.batch_size == ScorerSpec().batch_size and spec.max_length == ScorerSpec().max_length
    groups = scorer_groups(cfg.scoring)
    assert len(groups) == 1 and groups[0][1] == ("emotion", "moral") and groups[0][0].scorer == "offline"
    # a setting given with --set for the new scorer is kept
    cfg = load_config(REPO / "jobs" / "covid.yaml", ["input.path=/tmp/x", *OFFLINE, "scoring.moral.batch_size=64"])
    assert cfg.scoring.moral.batch_size == 64 and len(scorer_groups(cfg.scoring)) == 1
    # the hf job itself keeps its two classifiers (two passes)
    assert len(scorer_groups(load_config(REPO / "jobs" / "covid.yaml", ["input.path=/tmp/x"]).scoring)) == 2


def test_offline_dimensions_with_different_batch_sizes_share_the_encoder():
    from affalign.config import config_from_dict

    cfg = config_from_dict({"scoring": {"emotion": {"scorer": "offline", "batch_size": 64}, "moral": {"scorer": "offline", "batch_size": 128, "label_map": {"a": "care"}}}})
    (spec, dims), = scorer_groups(cfg.scoring)
    assert dims == ("emotion", "moral") and spec.batch_size == 128
    # other scorers still split on any difference
    cfg = config_from_dict({"scoring": {"emotion": {"scorer": "lexicon", "batch_size": 64}, "moral": {"scorer": "lexicon", "batch_size": 128}}})
    assert len(scorer_groups(cfg.scoring)) == 2


def test_stall_report_names_the_stage_and_the_resource_it_waits_for():
    stage = AffectScoreStage(ScorerSpec(scorer="lexicon", num_gpus=1), ("emotion",))
    msg = stall_report("human pass", [stage], {"CPU": 2.0, "GPU": 0.0}, 30)
    assert "human pass made no progress for 30s" in msg
    assert "score (AffectScoreStage)" in msg and "waits for a GPU" in msg
    assert "ray.no_progress_timeout_s" in msg


def test_stall_report_tells_own_starting_actors_from_other_work(monkeypatch):
    """The report said "waits for a free GPU" while the GPU was held by the stage's own actor,
    still loading its model; it now says which."""
    import ray

    stage = AffectScoreStage(ScorerSpec(scorer="lexicon", num_gpus=1), ("emotion",))
    monkeypatch.setattr(ray, "available_resources", lambda: {"CPU": 1.0, "GPU": 0.0})
    own = stall_report("human pass", [stage], {"CPU": 2.0, "GPU": 1.0}, 30)
    assert "this pass's own actors" in own and "still be starting" in own and "other work" not in own
    other = stall_report("human pass", [stage], {"CPU": 2.0, "GPU": 2.0}, 30)
    assert "waits for a free GPU (other work holds 1)" in other
