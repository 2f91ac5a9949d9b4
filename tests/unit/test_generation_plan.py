"""Generation plans: deterministic, uniform template draws, independent of other topics and models."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest

from affalign.backends.base import GenerationParams, ModelSpec
from affalign.errors import ConfigError
from affalign.generation.plan import PLAN_COLUMNS, build_plan
from affalign.generation.prompts import fill_templates

BASE = ModelSpec(id="opt-x", kind="base", path="facebook/opt-x")
CHAT = ModelSpec(id="chat-x", kind="instruct", path="org/chat-x")
TOPICS = ["COVID-19 vaccine types", "COVID-19 mask mandates and policies", "abortion rights and access"]
MODES = ["default", "liberal", "conservative"]


def by_id(table):
    return table.take(pc.sort_indices(table, [("plan_id", "ascending")])).to_pylist()


def test_columns_counts_and_prompts():
    plan = build_plan([BASE, CHAT], "covid", TOPICS, MODES, 20, seed=1)
    assert tuple(plan.column_names) == PLAN_COLUMNS
    assert plan.num_rows == 2 * 3 * 3 * 20
    assert len(set(plan.column("plan_id").to_pylist())) == plan.num_rows
    for row in plan.slice(0, 200).to_pylist():
        kind = "base" if row["model"] == "opt-x" else "instruct"
        assert row["kind"] == kind
        assert row["prompt"] == fill_templates(kind, row["mode"], row["topic"])[row["template_index"]]
        assert 0 <= row["row_seed"] < 2**63
    first = plan.slice(0, 20).to_pylist()
    assert [r["index"] for r in first] == list(range(20))
    assert {(r["model"], r["topic"], r["mode"]) for r in first} == {("opt-x", TOPICS[0], "default")}


def test_same_inputs_identical_table():
    a = build_plan([BASE, CHAT], "covid", TOPICS, MODES, 50, seed=3)
    b = build_plan([BASE, CHAT], "covid", TOPICS, MODES, 50, seed=3)
    assert a.equals(b)
    c = build_plan([BASE, CHAT], "covid", TOPICS, MODES, 50, seed=4)
    assert a.column("plan_id") != c.column("plan_id")
    assert a.column("template_index") != c.column("template_index")


def test_topic_and_model_order_and_additions_do_not_change_rows():
    full = build_plan([BASE, CHAT], "covid", TOPICS, MODES, 30, seed=0)
    reordered = build_plan([CHAT, BASE], "covid", TOPICS[::-1], MODES[::-1], 30, seed=0)
    assert by_id(full) == by_id(reordered)
    one = build_plan([CHAT], "covid", TOPICS[1:2], ["liberal"], 30, seed=0)
    sub = full.filter(pc.and_(pc.and_(pc.equal(full.column("model"), "chat-x"), pc.equal(full.column("topic"), TOPICS[1])), pc.equal(full.column("mode"), "liberal")))
    assert one.equals(sub)


def test_plan_id_covers_params_seed_dataset_path_revision():
    ids = set(build_plan([CHAT], "covid", TOPICS[:1], ["default"], 5, seed=0).column("plan_id").to_pylist())
    variants = [
        build_plan([ModelSpec(id="chat-x", kind="instruct", path="org/chat-x", params=GenerationParams(temperature=0.7))], "covid", TOPICS[:1], ["default"], 5, seed=0),
        build_plan([ModelSpec(id="chat-x", kind="instruct", path="org/chat-x", options={"revision": "abc"})], "covid", TOPICS[:1], ["default"], 5, seed=0),
        build_plan([ModelSpec(id="chat-x", kind="instruct", path="other/chat-x")], "covid", TOPICS[:1], ["default"], 5, seed=0),
        build_plan([CHAT], "roe", TOPICS[:1], ["default"], 5, seed=0),
    ]
    for v in variants:
        assert ids.isdisjoint(v.column("plan_id").to_pylist())
    # batch size and backend options that do not change outputs keep the ids
    same = build_plan([ModelSpec(id="chat-x", kind="instruct", path="org/chat-x", batch_size=7, options={"static_cache": True})], "covid", TOPICS[:1], ["default"], 5, seed=0)
    assert set(same.column("plan_id").to_pylist()) == ids


def test_template_draws_are_uniform():
    plan = build_plan([CHAT], "covid", TOPICS, MODES, 2000, seed=0)
    counts = np.bincount(np.asarray(plan.column("template_index")), minlength=10)
    expected = plan.num_rows / 10
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 27.9  # chi-square, 9 dof, p = 0.001
    # each cell alone is roughly uniform too (2000 draws: every template 150..250 times)
    cell = plan.filter(pc.and_(pc.equal(plan.column("topic"), TOPICS[0]), pc.equal(plan.column("mode"), "default")))
    c = np.bincount(np.asarray(cell.column("template_index")), minlength=10)
    assert c.min() > 140 and c.max() < 260
    # different cells draw differently
    other = plan.filter(pc.and_(pc.equal(plan.column("topic"), TOPICS[1]), pc.equal(plan.column("mode"), "default")))
    assert cell.column("template_index") != other.column("template_index")


def test_bad_inputs():
    with pytest.raises(ConfigError, match="mode"):
        build_plan([CHAT], "covid", TOPICS, ["neutral"], 5, seed=0)
    with pytest.raises(ConfigError, match="n_responses"):
        build_plan([CHAT], "covid", TOPICS, MODES, 0, seed=0)
    with pytest.raises(ConfigError, match="duplicate"):
        build_plan([CHAT, CHAT], "covid", TOPICS, MODES, 5, seed=0)
    assert build_plan([], "covid", TOPICS, MODES, 5, seed=0).num_rows == 0
