"""GenerateStage's failure handling with a fake backend: ordinary failures become error rows, out of
memory splits the batch, a sticky CUDA error ends the actor instead of failing every later batch."""

from __future__ import annotations

import pyarrow as pa
import pytest

from affalign import devices
from affalign.backends.base import Generation, GenerationBackend, ModelSpec
from affalign.stages.generate import GenerateStage, batch_rows

ILLEGAL = "CUDA error: an illegal memory access was encountered"


class FakeBackend(GenerationBackend):
    """Echoes prompts; raises ``errors[i]`` on its i-th call when one is given."""

    def __init__(self, errors: list[BaseException | None] | None = None, fail_above: int | None = None):
        super().__init__(ModelSpec(id="m"))
        self.errors = list(errors or [])
        self.fail_above = fail_above
        self.calls: list[int] = []

    def generate(self, prompts, params, seeds=None):
        self.calls.append(len(prompts))
        if self.errors:
            err = self.errors.pop(0)
            if err is not None:
                raise err
        if self.fail_above is not None and len(prompts) > self.fail_above:
            raise RuntimeError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return [Generation(text=f"echo {p}", finish_reason="stop", prompt_tokens=1, completion_tokens=2) for p in prompts]


def stage_with(backend: FakeBackend) -> GenerateStage:
    stage = GenerateStage(ModelSpec(id="m", backend="hf"))
    stage._backend = backend
    stage._takes_seeds = True
    return stage


def plan(n: int) -> pa.Table:
    return pa.table({"plan_id": [f"p{i}" for i in range(n)], "model": ["m"] * n, "prompt": [f"q{i}" for i in range(n)], "row_seed": list(range(n))})


def test_ordinary_failure_is_error_rows_and_the_next_batch_runs():
    stage = stage_with(FakeBackend([ValueError("prompt too long")]))
    out = stage.process(plan(3))
    assert out.column("finish_reason").to_pylist() == ["error"] * 3
    assert all("ValueError: prompt too long" in e for e in out.column("error").to_pylist())
    out = stage.process(plan(2))
    assert out.column("text").to_pylist() == ["echo q0", "echo q1"]


def test_out_of_memory_is_not_sticky_the_batch_is_split():
    backend = FakeBackend(fail_above=2)
    out = stage_with(backend).process(plan(8))
    assert out.column("text").to_pylist() == [f"echo q{i}" for i in range(8)]
    assert backend.calls == [8, 4, 2, 2, 4, 2, 2]


def test_sticky_cuda_error_is_not_turned_into_error_rows(monkeypatch):
    # outside Ray: a StickyCudaError (a BaseException, so no `except Exception` swallows it)
    monkeypatch.setattr(devices, "in_ray_actor", lambda: False)
    stage = stage_with(FakeBackend([RuntimeError(ILLEGAL)]))
    with pytest.raises(devices.StickyCudaError, match="model m: sticky CUDA error.*illegal memory access"):
        stage.process(plan(4))


def test_sticky_cuda_error_after_an_oom_split_still_ends_the_actor(monkeypatch):
    monkeypatch.setattr(devices, "in_ray_actor", lambda: False)
    stage = stage_with(FakeBackend([RuntimeError("CUDA out of memory"), None, RuntimeError("CUDA error: device-side assert triggered")]))
    with pytest.raises(devices.StickyCudaError, match="device-side assert"):
        stage.process(plan(4))


def test_sticky_cuda_error_in_an_actor_exits_the_process(monkeypatch):
    exits: list[int] = []

    def fake_exit(status: int) -> None:
        exits.append(status)
        raise SystemExit(status)

    monkeypatch.setattr(devices, "in_ray_actor", lambda: True)
    monkeypatch.setattr(devices, "_exit", fake_exit)
    stage = stage_with(FakeBackend([RuntimeError(ILLEGAL)]))
    with pytest.raises(SystemExit):
        stage.process(plan(4))
    assert exits == [devices.STICKY_CUDA_EXIT]


def test_stage_row_isolation_does_not_swallow_a_sticky_error(monkeypatch):
    """The stage contract's quarantine (rows that fail alone get a reason) must not turn a broken
    GPU into quarantined rows: StickyCudaError passes through it."""
    from affalign.schema import REASON

    monkeypatch.setattr(devices, "in_ray_actor", lambda: False)
    stage = stage_with(FakeBackend([RuntimeError(ILLEGAL)] * 10))
    stage.quarantine = True
    stage._ready = True
    batch = plan(4).append_column(REASON, pa.array([None] * 4, pa.string()))
    with pytest.raises(devices.StickyCudaError):
        stage(batch)


def test_batch_rows_grow_only_for_auto_sized_hf_models_on_a_gpu():
    auto = ModelSpec(id="m", backend="hf", batch_size=64, options={"auto_batch_size": True})
    fixed = ModelSpec(id="m", backend="hf", batch_size=64)
    assert batch_rows(auto, gpu=True) == devices.AUTO_BATCH_CAP
    assert batch_rows(auto, gpu=False) == 64
    assert batch_rows(fixed, gpu=True) == 64
    assert batch_rows(ModelSpec(id="o", backend="openai", batch_size=16, options={"auto_batch_size": True}), gpu=True) == 16


def test_registry_models_without_a_batch_size_are_auto_sized():
    from affalign.backends.models import resolve_model

    assert resolve_model({"path": "some/hub-model"}).options.get("auto_batch_size") is True
    given = resolve_model({"path": "some/hub-model", "batch_size": 16})
    assert "auto_batch_size" not in given.options and given.batch_size == 16
    assert "auto_batch_size" not in resolve_model("smollm2-135m-instruct").options  # the registry gives 32
