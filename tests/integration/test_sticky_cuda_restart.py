"""A sticky CUDA error in a generation actor, through Ray Data on a local Ray: the actor ends, Ray
restarts it (a new process, the model set up again) and retries the batch, and every row comes out
generated -- none is left as an error row by an actor whose GPU context is broken.

The "CUDA error" is raised by a fake backend (no GPU here); the stage's real handling decides.
"""

from __future__ import annotations

import os
import sys

import pyarrow as pa
import pytest

from affalign.backends.base import Generation, GenerationBackend, ModelSpec
from affalign.stages.generate import GenerateStage

ray = pytest.importorskip("ray")

ILLEGAL = "CUDA error: an illegal memory access was encountered"


class BreaksOnceBackend(GenerationBackend):
    """Echoes prompts; the first call that sees prompt ``q5`` (across all processes, counted with a
    marker file created atomically) raises a sticky CUDA error, as a kernel fault would."""

    def __init__(self, model: ModelSpec, marks: str):
        super().__init__(model)
        self.marks = marks

    def generate(self, prompts, params):
        if "q5" in prompts:
            try:
                fd = os.open(os.path.join(self.marks, "broke"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                raise RuntimeError(ILLEGAL)
        return [Generation(text=f"echo {p}", finish_reason="stop", prompt_tokens=1, completion_tokens=2) for p in prompts]


class BreaksOnceStage(GenerateStage):
    """GenerateStage with the fake backend (its error handling is GenerateStage's own)."""

    def __init__(self, model: ModelSpec, marks: str, batches: int):
        super().__init__(model, use_gpu=False, batches=batches)
        self.marks = marks

    def setup(self) -> None:
        # one marker per process that set the model up: a restarted actor is a new process
        open(os.path.join(self.marks, f"setup-{os.getpid()}"), "w").close()
        self._backend = BreaksOnceBackend(self.model, self.marks)
        self._takes_seeds = False


@pytest.fixture(scope="module")
def ray_local():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # the stage and backend above travel by value: workers need not import this test module
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    if started:
        ray.shutdown()


def test_sticky_cuda_error_restarts_the_actor_and_the_batch_is_retried(ray_local, tmp_path):
    import ray.data

    from affalign.runtime.adapter import apply_stages

    marks = tmp_path / "marks"
    marks.mkdir()
    n, bs = 12, 4
    plan = pa.table({"plan_id": [f"p{i}" for i in range(n)], "model": ["m"] * n, "prompt": [f"q{i}" for i in range(n)], "row_seed": list(range(n))})
    model = ModelSpec(id="m", backend="hf", batch_size=bs)
    stage = BreaksOnceStage(model, str(marks), batches=1)
    assert stage.resources.max_restarts > 0 and stage.resources.max_retries > 0
    blocks = [plan.slice(i, bs) for i in range(0, n, bs)]
    ds = apply_stages(ray.data.from_arrow(blocks), [stage], {"CPU": 2.0})
    out = pa.concat_tables(list(ds.iter_batches(batch_format="pyarrow", batch_size=None)))

    assert (marks / "broke").exists()  # the fault did happen
    setups = sorted(p.name for p in marks.iterdir() if p.name.startswith("setup-"))
    assert len(setups) == 2, setups  # one actor, then its restart in a new process
    got = dict(zip(out.column("plan_id").to_pylist(), out.column("text").to_pylist(), strict=True))
    assert got == {f"p{i}": f"echo q{i}" for i in range(n)}  # every row once, none an error row
    assert out.column("error").null_count == n
