"""The generation store (shards, atomic parts, dedup, unreadable parts) and GenerateStage without Ray."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from affalign.backends.base import Generation, GenerationBackend, ModelSpec
from affalign.generation.plan import build_plan
from affalign.generation.store import GenerationStore, read_generations, remaining, safe_id, shard_dir, topic_slug
from affalign.passes.models import run_generation
from affalign.runtime.placement import Placement
from affalign.stages.generate import GenerateStage

MODEL = ModelSpec(id="org/chat-x", kind="instruct", path="org/chat-x", batch_size=4)


def fake_outputs(batch: pa.Table, error_rows: set[int] = frozenset()) -> pa.Table:
    n = batch.num_rows
    err = [("boom" if i in error_rows else None) for i in range(n)]
    return (
        batch.append_column("text", pa.array([None if e else f"t{i}" for i, e in enumerate(err)], pa.string()))
        .append_column("finish_reason", pa.array(["error" if e else "stop" for e in err]))
        .append_column("prompt_tokens", pa.array([3] * n, pa.int32()))
        .append_column("completion_tokens", pa.array([5] * n, pa.int32()))
        .append_column("error", pa.array(err, pa.string()))
    )


@pytest.fixture
def plan():
    return build_plan([MODEL], "covid", ["COVID-19 vaccine types", "masks/face coverings"], ["default", "liberal"], 6, seed=0)


def test_layout_is_deterministic_and_safe():
    d = shard_dir("org/chat-x", "covid", "masks/face coverings", "liberal")
    assert d.startswith("generations/org--chat-x/covid/masks-face-coverings-")
    assert d.endswith("/liberal") and d == shard_dir("org/chat-x", "covid", "masks/face coverings", "liberal")
    assert topic_slug("A b") != topic_slug("a-b") and safe_id("a b/c") == "a_b--c"


def test_write_remaining_read(tmp_path, plan):
    root = str(tmp_path / "run")
    assert remaining(plan, root).num_rows == plan.num_rows
    assert read_generations(root).num_rows == 0 and "text" in read_generations(root).column_names
    store = GenerationStore(root)
    # a batch spanning two shards becomes two parts
    paths = store.write_batch(fake_outputs(plan.slice(4, 4)))
    assert len(paths) == 2 and all(os.path.basename(p).startswith("part-") for p in paths)
    assert {os.path.dirname(p) for p in paths} == {os.path.join(root, shard_dir("org/chat-x", "covid", t, m)) for t, m in [("COVID-19 vaccine types", "default"), ("COVID-19 vaccine types", "liberal")]}
    left = remaining(plan, root)
    assert left.num_rows == plan.num_rows - 4
    assert set(left.column("plan_id").to_pylist()).isdisjoint(plan.slice(4, 4).column("plan_id").to_pylist())
    # the same batch again replaces its parts; an overlapping batch duplicates rows on disk only
    store.write_batch(fake_outputs(plan.slice(4, 4)))
    store.write_batch(fake_outputs(plan.slice(6, 4)))
    got = read_generations(root)
    assert got.num_rows == 6 and len(set(got.column("plan_id").to_pylist())) == 6
    assert set(got.column_names) >= {"plan_id", "model", "topic", "mode", "prompt", "text", "finish_reason", "error"}


def test_error_rows_are_not_done_and_success_wins(tmp_path, plan):
    root = str(tmp_path / "run")
    store = GenerationStore(root)
    store.write_batch(fake_outputs(plan.slice(0, 4), error_rows={1, 2}))
    assert remaining(plan, root).num_rows == plan.num_rows - 2
    store.write_batch(fake_outputs(plan.slice(1, 2)))  # the retry succeeds
    got = read_generations(root)
    assert got.num_rows == 4 and got.column("error").null_count == 4


def test_unreadable_part_is_deleted_and_regenerated(tmp_path, plan):
    root = str(tmp_path / "run")
    store = GenerationStore(root)
    store.write_batch(fake_outputs(plan.slice(0, 4)))[0]
    bad = store.write_batch(fake_outputs(plan.slice(12, 4)))[0]
    with open(bad, "r+b") as f:  # truncate: as if the disk lost its tail
        f.truncate(os.path.getsize(bad) // 2)
    # a temp file left by a killed writer (the store's temp directory) is not a part
    os.makedirs(os.path.join(root, "_tmp", "generations"), exist_ok=True)
    tmp = os.path.join(root, "_tmp", "generations", "deadbeef-part.parquet")
    with open(tmp, "wb") as f:
        f.write(b"PAR1 half")
    left = remaining(plan, root)
    assert left.num_rows == plan.num_rows - 4 and not os.path.exists(bad)
    assert store.clean_temp() == 1 and not os.path.exists(tmp)


class EchoBackend(GenerationBackend):
    """Test backend: echoes the seed; fails on prompts containing 'fail'."""

    def generate(self, prompts, params, seeds=None):
        if any("fail" in p for p in prompts):
            raise RuntimeError("cannot")
        return [Generation(text=f"{s}", finish_reason="stop", prompt_tokens=len(p.split()), completion_tokens=1) for p, s in zip(prompts, seeds, strict=True)]


def test_generate_stage_without_ray(plan, monkeypatch):
    monkeypatch.setattr("affalign.stages.generate.make_backend", lambda m: EchoBackend(m))
    stage = GenerateStage(MODEL, use_gpu=False)
    res = stage.resources
    assert res.actor and res.num_gpus == 0 and res.batch_size == 4
    assert GenerateStage(MODEL, use_gpu=True).resources.num_gpus == 1
    out = stage(plan.slice(0, 5))
    assert out.column_names[-5:] == ["text", "finish_reason", "prompt_tokens", "completion_tokens", "error"]
    assert out.column("text").to_pylist() == [str(s) for s in plan.slice(0, 5).column("row_seed").to_pylist()]
    bad = plan.slice(0, 2).set_column(plan.schema.get_field_index("prompt"), "prompt", pa.array(["fail", "x"]))
    failed = stage(bad)
    assert failed.column("finish_reason").to_pylist() == ["error", "error"]
    assert all("RuntimeError: cannot" in e for e in failed.column("error").to_pylist())
    with pytest.raises(KeyError):
        stage(plan.drop_columns(["prompt"]))


def stage_uses_gpu(model, cluster):
    return Placement.from_cluster(cluster).generation_uses_gpu(model)


def test_gpu_decision_follows_cluster():
    assert stage_uses_gpu(MODEL, {"CPU": 8, "GPU": 2}) and not stage_uses_gpu(MODEL, {"CPU": 8})
    cpu = ModelSpec(id="x", options={"device": "cpu"})
    assert not stage_uses_gpu(cpu, {"GPU": 1}) and not stage_uses_gpu(ModelSpec(id="g", backend="openai"), {"GPU": 1})


def test_nothing_remaining_needs_no_ray(tmp_path, plan):
    root = str(tmp_path / "run")
    GenerationStore(root).write_batch(fake_outputs(plan))
    counts = run_generation(plan, [MODEL], root, {"CPU": 2}, progress=False)
    assert counts == {"planned": plan.num_rows, "already_done": plan.num_rows, "generated": 0, "errors": 0}
    sub = plan.filter(pc.equal(plan.column("mode"), "liberal"))
    assert run_generation(sub, [MODEL], root, {"CPU": 2})["already_done"] == sub.num_rows


def test_missing_local_model_fails_before_ray(tmp_path, plan):
    from affalign.backends.hf import ModelLoadError

    missing = ModelSpec(id="org/chat-x", kind="instruct", path=str(tmp_path / "no-such-model"))
    with pytest.raises(ModelLoadError, match="org/chat-x.*does not exist"):
        run_generation(plan, [missing], str(tmp_path / "run"), {"CPU": 2}, progress=False)
    with pytest.raises(Exception, match="not in the models given"):
        run_generation(plan, [ModelSpec(id="other")], str(tmp_path / "run"), {"CPU": 2}, progress=False)


def test_uri_and_explicit_filesystem(tmp_path, plan):
    import pyarrow.fs as pafs

    root = tmp_path / "run"
    GenerationStore(f"file://{root}").write_batch(fake_outputs(plan.slice(0, 3)))
    assert read_generations(str(root)).num_rows == 3
    sub = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    assert read_generations("run", fs=sub).num_rows == 3
    assert remaining(plan, "run", fs=sub).num_rows == plan.num_rows - 3
