"""affalign.devices: device resolution in Ray GPU actors, dtype choice, loading onto the GPU, sticky
CUDA errors and batch sizes from free memory -- on CPU, with torch.cuda and Ray monkeypatched."""

from __future__ import annotations

import logging

import pytest

torch = pytest.importorskip("torch")

from affalign import devices  # noqa: E402
from affalign.errors import ConfigError  # noqa: E402


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch.cuda says it has 4 devices (nothing is run on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)


# -- cuda:N inside a Ray GPU actor --------------------------------------------------------------


def test_map_cuda_index_renumbers_the_gpus_ray_assigned():
    # Ray gave this actor physical GPU 3; CUDA_VISIBLE_DEVICES=3, so torch calls it cuda:0
    assert devices.map_cuda_index("cuda:3", ["3"]) == "cuda:0"
    assert devices.map_cuda_index("cuda:5", ["2", "5"]) == "cuda:1"
    # outside a Ray GPU actor nothing is renumbered
    assert devices.map_cuda_index("cuda:3", None) == "cuda:3"
    assert devices.map_cuda_index("cuda", ["3"]) == "cuda"


def test_map_cuda_index_refuses_a_gpu_ray_did_not_assign():
    with pytest.raises(ConfigError, match=r"given GPU\(s\) 0.*use device: cuda"):
        devices.map_cuda_index("cuda:1", ["0"], "options.device")


def test_resolve_device_in_a_ray_gpu_actor(fake_cuda, monkeypatch):
    monkeypatch.setattr(devices, "ray_gpu_ids", lambda: ["2"])
    assert devices.resolve_device("cuda:2") == "cuda:0"
    assert devices.resolve_device("CUDA") == "cuda"
    with pytest.raises(ConfigError, match="cuda:1"):
        devices.resolve_device("cuda:1")


def test_resolve_device_outside_ray(fake_cuda, monkeypatch):
    monkeypatch.setattr(devices, "ray_gpu_ids", lambda: None)
    assert devices.resolve_device("auto") == "cuda"
    assert devices.resolve_device("cuda:3") == "cuda:3"
    with pytest.raises(ConfigError, match="sees 4 CUDA device"):
        devices.resolve_device("cuda:7")
    with pytest.raises(ConfigError, match="not one of"):
        devices.resolve_device("tpu")


def test_resolve_device_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.resolve_device(None) == "cpu"
    with pytest.raises(ConfigError, match="CUDA is not available"):
        devices.resolve_device("cuda", "scoring.device")


def test_the_backend_and_the_classifier_share_it(fake_cuda, monkeypatch):
    from affalign.backends import hf
    from affalign.scorers import hf_classifier

    monkeypatch.setattr(devices, "ray_gpu_ids", lambda: ["1"])
    assert hf.resolve_device("cuda:1") == "cuda:0"
    assert hf_classifier.resolve_device("cuda:1") == "cuda:0"


def test_ray_gpu_ids_on_the_driver_is_none():
    # the test process is no Ray worker (Ray may or may not be initialised by other tests)
    assert devices.ray_gpu_ids() is None


# -- dtype --------------------------------------------------------------------------------------


def test_auto_dtype_falls_back_to_float16_without_native_bf16(monkeypatch, caplog):
    # torch's default (including_emulation=True) says yes on a GPU that only emulates bf16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    with caplog.at_level(logging.WARNING, logger="affalign"):
        assert devices.auto_dtype("cuda") is torch.float16
    assert "does not support bfloat16" in caplog.text
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert devices.auto_dtype("cuda:0") is torch.bfloat16
    assert devices.auto_dtype("cpu") is torch.float32


def test_generation_dtype_auto_checks_bf16_support(monkeypatch):
    from affalign.backends.hf import resolve_dtype

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert resolve_dtype("auto", "cuda") is torch.float16
    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("bfloat16", "cuda") is torch.bfloat16  # asked for by name: as asked


# -- loading straight onto the GPU --------------------------------------------------------------


def test_load_kwargs_put_weights_on_the_gpu_and_leave_cpu_alone():
    assert devices.load_kwargs("cpu") == {}
    assert devices.load_kwargs("cuda:0") == {"device_map": {"": "cuda:0"}, "low_cpu_mem_usage": True}


def test_load_kwargs_without_accelerate_warns_and_loads_the_old_way(monkeypatch, caplog):
    import transformers.utils

    monkeypatch.setattr(transformers.utils, "is_accelerate_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="affalign"):
        assert devices.load_kwargs("cuda") == {}
    assert "accelerate" in caplog.text


# -- sticky CUDA errors -------------------------------------------------------------------------

STICKY = [
    RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be asynchronously reported"),
    RuntimeError("CUDA error: device-side assert triggered"),
    RuntimeError("CUDA error: misaligned address"),
    RuntimeError("CUDA error: unspecified launch failure"),
    RuntimeError("CUDA error: uncorrectable ECC error encountered"),
    RuntimeError("CUDA error: invalid configuration argument"),
    RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasGemmEx( handle, opa, opb, m, n, k, ...)`"),
    RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"),
]
NOT_STICKY = [
    RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("CUDA error: out of memory"),
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    ValueError("Input length of input_ids is 300, but max_length is set to 256"),
    KeyError("input_ids"),
    RuntimeError("shape mismatch"),
]


@pytest.mark.parametrize("exc", STICKY, ids=lambda e: str(e)[:40])
def test_sticky_cuda_errors(exc):
    assert devices.is_sticky_cuda_error(exc)


@pytest.mark.parametrize("exc", NOT_STICKY, ids=lambda e: str(e)[:40])
def test_oom_and_ordinary_errors_are_not_sticky(exc):
    assert not devices.is_sticky_cuda_error(exc)


def test_torch_accelerator_error_is_sticky():
    AcceleratorError = type("AcceleratorError", (RuntimeError,), {})
    assert devices.is_sticky_cuda_error(AcceleratorError("CUDA kernel failed"))


def test_die_on_sticky_outside_ray_raises_what_except_exception_does_not_catch(monkeypatch):
    monkeypatch.setattr(devices, "in_ray_actor", lambda: False)
    devices.die_on_sticky_cuda_error(ValueError("bad row"), "model m")  # returns: not sticky
    with pytest.raises(devices.StickyCudaError, match="model m: sticky CUDA error"):
        try:
            devices.die_on_sticky_cuda_error(STICKY[0], "model m")
        except Exception:  # noqa: BLE001 - the handlers of stages must not swallow it
            pytest.fail("StickyCudaError was caught by `except Exception`")


def test_die_on_sticky_in_a_ray_actor_ends_the_process(monkeypatch, caplog):
    exits: list[int] = []

    def fake_exit(status: int) -> None:
        exits.append(status)
        raise SystemExit(status)

    monkeypatch.setattr(devices, "in_ray_actor", lambda: True)
    monkeypatch.setattr(devices, "_exit", fake_exit)
    with caplog.at_level(logging.ERROR, logger="affalign"), pytest.raises(SystemExit):
        devices.die_on_sticky_cuda_error(STICKY[1], "scoring.emotion")
    assert exits == [devices.STICKY_CUDA_EXIT]
    assert "restarts it" in caplog.text
    devices.die_on_sticky_cuda_error(NOT_STICKY[0], "scoring.emotion")  # OOM: no exit
    assert exits == [devices.STICKY_CUDA_EXIT]


# -- batch sizes --------------------------------------------------------------------------------


def test_kv_bytes_per_token_of_a_gqa_llama():
    from transformers import LlamaConfig

    cfg = LlamaConfig(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8)
    # keys and values x 32 layers x 8 kv heads x 128 dims x 2 bytes
    assert devices.kv_bytes_per_token(cfg, 2) == 2 * 32 * 8 * 128 * 2


def test_generation_batch_size_from_free_memory():
    gib = 2**30
    kv = 2 * 32 * 32 * 128 * 2  # Llama-2-7B in bf16: 512 KiB per token
    vocab = 32_000
    per_row = 352 * kv + devices.LOGIT_COPIES * 4 * vocab
    # an H200 after loading 13.5 GB of weights: the cap
    assert devices.generation_batch_size(125 * gib, kv, 352, vocab) == devices.AUTO_BATCH_CAP
    # a 24 GB card with ~10 GB left: floor(0.85 * 10 GiB / per_row) = 49 -> 32 (a power of two)
    assert int(10 * gib * devices.MEMORY_FRACTION) // per_row == 49
    assert devices.generation_batch_size(10 * gib, kv, 352, vocab) == 32
    # more tokens per row, fewer rows; never below one
    assert devices.generation_batch_size(10 * gib, kv, 1400, vocab) == 8
    assert devices.generation_batch_size(0, kv, 352, vocab) == 1
    assert devices.generation_batch_size(125 * gib, kv, 352, vocab, cap=100) == 64
    with pytest.raises(ValueError):
        devices.generation_batch_size(gib, 0, 0, 0)
