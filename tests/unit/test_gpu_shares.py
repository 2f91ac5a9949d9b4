"""GPUs per scoring actor come from the Ray cluster's resources (the placement), shared when GPUs are fewer than passes."""

from __future__ import annotations

from affalign.config import config_from_dict
from affalign.passes.scoring import scorer_groups, scoring_stages
from affalign.runtime.placement import Placement
from affalign.stages.classify import AffectScoreStage


def _cfg(emotion: dict, moral: dict):
    return config_from_dict({"name": "t", "dataset": "covid", "input": {"path": "x"}, "scoring": {"emotion": emotion, "moral": moral}})


HF_E = {"scorer": "hf", "model": "some/emotion-model"}
HF_M = {"scorer": "hf", "model": "some/moral-model"}


def score_stages(cfg, cluster):
    return scoring_stages(cfg.scoring, Placement.from_cluster(cluster))


def gpu_shares(cfg, cluster):
    """GPUs per actor of the passes the placement decides (``num_gpus`` left unset)."""
    placement = Placement.from_cluster(cluster)
    specs = [spec for spec, _ in scorer_groups(cfg.scoring)]
    return {spec.key(): g for spec, g in zip(specs, placement.scorer_gpus(specs), strict=True) if placement.scorer_wants_gpu(spec)}


def _gpus(stages):
    return {s.name + ":" + ",".join(s.dimensions): s.resources.num_gpus for s in stages if isinstance(s, AffectScoreStage)}


def test_two_classifiers_share_one_gpu():
    cfg = _cfg(HF_E, HF_M)
    assert sorted(gpu_shares(cfg, {"CPU": 16, "GPU": 1}).values()) == [0.5, 0.5]
    assert set(_gpus(score_stages(cfg, {"CPU": 16, "GPU": 1})).values()) == {0.5}


def test_each_classifier_gets_a_whole_gpu_when_there_are_enough():
    cfg = _cfg(HF_E, HF_M)
    assert set(_gpus(score_stages(cfg, {"CPU": 64, "GPU": 8})).values()) == {1.0}


def test_no_gpu_in_the_cluster_means_cpu_actors_even_if_the_driver_had_one():
    cfg = _cfg(HF_E, HF_M)
    assert set(_gpus(score_stages(cfg, {"CPU": 2})).values()) == {0.0}


def test_one_offline_pass_for_both_dimensions_takes_one_gpu():
    cfg = _cfg({"scorer": "offline"}, {"scorer": "offline"})
    stages = score_stages(cfg, {"CPU": 8, "GPU": 1})
    assert len(stages) == 1 and stages[0].resources.num_gpus == 1.0


def test_explicit_settings_are_kept():
    cfg = _cfg({**HF_E, "num_gpus": 0.25}, {**HF_M, "device": "cpu"})
    assert gpu_shares(cfg, {"GPU": 4}) == {}
    got = sorted(_gpus(score_stages(cfg, {"CPU": 8, "GPU": 4})).values())
    assert got == [0.0, 0.25]


def test_lexicon_scorer_never_asks_for_a_gpu():
    cfg = _cfg({"scorer": "lexicon"}, {"scorer": "lexicon"})
    assert gpu_shares(cfg, {"GPU": 2}) == {}
    assert set(_gpus(score_stages(cfg, {"CPU": 8, "GPU": 2})).values()) == {0.0}
