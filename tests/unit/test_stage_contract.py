import pyarrow as pa
import pytest

from affalign.runtime.adapter import map_batches_kwargs, pool_size
from affalign.stages.base import Resources, Stage


class Boom(Stage):
    name = "boom"
    inputs = ("text", "reason")

    def __init__(self):
        self.setups = 0

    def setup(self):
        self.setups += 1

    def process(self, batch):
        live = [r is None for r in batch.column("reason").to_pylist()]
        for text, ok in zip(batch.column("text").to_pylist(), live, strict=True):
            if ok and text == "poison":
                raise ValueError("cannot handle poison")
        out = [t.upper() if ok else None for t, ok in zip(batch.column("text").to_pylist(), live, strict=True)]
        return batch.append_column("out", pa.array(out, pa.string()))


def table(texts):
    return pa.table({"text": texts, "reason": pa.nulls(len(texts), pa.string())})


def test_setup_runs_once_and_missing_columns_are_named():
    s = Boom()
    s(table(["a"]))
    s(table(["b"]))
    assert s.setups == 1
    with pytest.raises(KeyError, match="reason"):
        s(pa.table({"text": ["a"]}))


def test_failing_rows_are_quarantined_not_fatal():
    out = Boom()(table(["a", "b", "poison", "c", "d", "poison", "e"]))
    assert out.column("text").to_pylist() == ["a", "b", "poison", "c", "d", "poison", "e"]
    reasons = out.column("reason").to_pylist()
    assert [r is None for r in reasons] == [True, True, False, True, True, False, True]
    assert reasons[2].startswith("stage_error:boom:ValueError: cannot handle poison")
    assert out.column("out").to_pylist() == ["A", "B", None, "C", "D", None, "E"]


def test_pool_sizing_leaves_a_cpu_for_reads_and_follows_gpus():
    assert pool_size(Resources(num_cpus=1, actor=True), {"CPU": 2.0}) == (1, 1)
    assert pool_size(Resources(num_cpus=1, actor=True), {"CPU": 16.0}) == (1, 15)
    assert pool_size(Resources(num_cpus=1, actor=True, max_actors=4), {"CPU": 16.0}) == (1, 4)
    assert pool_size(Resources(num_cpus=1, num_gpus=1, actor=True), {"CPU": 16.0, "GPU": 8.0}) == (1, 8)
    assert pool_size(Resources(num_cpus=1, num_gpus=0.5, actor=True), {"CPU": 16.0, "GPU": 1.0}) == (1, 2)


def test_map_batches_kwargs_for_gpu_actor_and_cpu_task():
    class G(Stage):
        resources = Resources(num_cpus=1, num_gpus=1, batch_size=1024, actor=True)

    kw = map_batches_kwargs(G(), {"CPU": 16.0, "GPU": 2.0})
    assert kw["num_gpus"] == 1 and kw["batch_size"] == 1024
    assert kw["compute"].min_size == 1 and kw["compute"].max_size == 2
    assert kw["max_restarts"] == 3 and kw["max_task_retries"] == 3
    kw = map_batches_kwargs(Boom(), {"CPU": 2.0})
    assert "compute" not in kw and "num_gpus" not in kw
