"""One job-wide budget across processes: generation replicas and LM-judge actors draw on one keeper."""

from __future__ import annotations

import pytest

from affalign.backends.base import ModelSpec
from affalign.backends.budget_keeper import RemoteBudget, budget_from_options, start_keeper
from affalign.config import config_from_dict
from affalign.errors import BudgetExceeded
from affalign.passes.models import with_budget
from affalign.passes.scoring import scoring_stages
from affalign.runtime.placement import Placement
from affalign.stages.classify import AffectScoreStage


def test_two_processes_share_one_limit(ray_local):
    ray = ray_local
    name, keeper = start_keeper({"max_requests": 4})

    @ray.remote(num_cpus=0)
    def draw(n: int) -> list[str]:
        budget = RemoteBudget(name)
        got = []
        for _ in range(n):
            try:
                r = budget.reserve("gpt-x", 10, 5)
                budget.commit(r, 8, 3)
                got.append("ok")
            except BudgetExceeded:
                got.append("refused")
        return got

    # three requests from one worker, three from another: only four in all are allowed
    results = ray.get([draw.remote(3), draw.remote(3)])
    flat = [x for r in results for x in r]
    assert flat.count("ok") == 4 and flat.count("refused") == 2
    spent = ray.get(keeper.spent.remote())
    assert spent["requests"] == 4 and spent["refused"] == 2 and spent["remaining"]["requests"] == 0
    assert spent["prompt_tokens"] == 32 and spent["completion_tokens"] == 12

    # the driver's own view goes through the same keeper; a released reservation costs nothing
    local = budget_from_options({"keeper": name})
    assert isinstance(local, RemoteBudget)
    with pytest.raises(BudgetExceeded, match="max_requests=4"):
        local.reserve("gpt-x", 1, 1)


def test_a_bad_budget_fails_on_the_driver(ray_local):
    with pytest.raises(Exception, match="unknown keys"):
        start_keeper({"max_reqs": 3})


def test_the_keeper_reaches_openai_models_and_the_judge():
    budget = {"keeper": "affalign-budget-test"}
    api = ModelSpec(id="gpt-x", backend="openai", path="gpt-x")
    assert with_budget(api, budget).options["budget"] == budget
    cfg = config_from_dict(
        {"name": "x", "dataset": "covid", "input": {"path": "x"}, "scoring": {"emotion": {"scorer": "judge", "model": "gpt-x"}, "moral": {"scorer": "lexicon"}}}
    )
    # the handle run_job passes once the keeper is started (the config is never rewritten)
    judge = [s for s in scoring_stages(cfg.scoring, Placement.from_cluster({"CPU": 4}), budget) if isinstance(s, AffectScoreStage) and s.spec.scorer == "judge"]
    assert judge and judge[0].spec.options["budget"] == budget and judge[0].resources.max_actors == 1
