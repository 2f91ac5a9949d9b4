"""Where a model runs, in what dtype, how it loads, and what to do when the GPU breaks.

Shared by the HF generation backend (:mod:`affalign.backends.hf`) and the HF classifier scorer
(:mod:`affalign.scorers.hf_classifier`).

* :func:`resolve_device` turns a ``device`` option (``auto``, ``cpu``, ``cuda``, ``cuda:N``) into a
  torch device string. Inside a Ray actor that holds GPUs, Ray has set ``CUDA_VISIBLE_DEVICES`` to
  the GPUs it assigned, so torch numbers them from 0: ``cuda:N`` naming one of the assigned GPUs
  is renumbered (:func:`map_cuda_index`), any other ``cuda:N`` is refused with an error saying why.
* :func:`auto_dtype`: bfloat16 on a GPU that runs it natively, else float16 with a warning; float32 on CPU.
* :func:`load_kwargs`: ``from_pretrained`` arguments that put the weights straight onto the GPU
  (``device_map``, needs ``accelerate``) instead of loading them into host RAM and copying.
* :func:`is_sticky_cuda_error` / :func:`die_on_sticky_cuda_error`: after an illegal memory access
  or a device-side assert the process's CUDA context is unusable (every later kernel fails), so
  catching the error and going on turns every later batch into errors. Such an error ends the
  Ray actor's process instead; Ray restarts the actor (``Resources.max_restarts``) and retries its
  batch (``max_retries``). Out of memory is not sticky (the caching allocator frees and the next
  allocation can succeed), so callers keep splitting batches on it.
* :func:`generation_batch_size`: rows per generation batch from the GPU memory left after loading.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from affalign.errors import ConfigError

log = logging.getLogger("affalign")

# Exit status of an actor process ended by a sticky CUDA error (any non-zero status makes Ray
# restart the actor; a distinct one makes it recognisable in Ray's logs).
STICKY_CUDA_EXIT = 75


def _torch():
    import torch

    return torch


# ---------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------


def ray_gpu_ids() -> list[str] | None:
    """The GPU ids Ray assigned to this worker, or None outside a Ray worker (or with none)."""
    if "ray" not in sys.modules:
        return None
    try:
        import ray

        if not ray.is_initialized():
            return None
        from ray._private.worker import global_worker

        if global_worker.mode != ray.WORKER_MODE:  # the driver: no GPU assignment, no renumbering
            return None
        ids = ray.get_gpu_ids()
    except Exception:  # noqa: BLE001 - not in a worker, or an old/odd Ray: no renumbering
        return None
    return [str(i) for i in ids] or None


def map_cuda_index(device: str, assigned: list[str] | None, where: str = "device") -> str:
    """``cuda:N`` as this process's torch sees it.

    ``assigned``: the GPU ids Ray gave this actor (None outside a Ray GPU actor: ``device`` is
    returned unchanged). Ray sets ``CUDA_VISIBLE_DEVICES`` to those GPUs, so the k-th of them is
    ``cuda:k`` here; ``cuda:N`` for an N Ray did not assign is refused: Ray, not the option, picks
    the GPU of a pool actor, so the job should say ``device: cuda``.
    """
    if not assigned or not device.startswith("cuda:"):
        return device
    index = device.split(":", 1)[1]
    if not index.isdigit():
        raise ConfigError(f"{where}: {device!r} is not a CUDA device (expected cuda or cuda:N)")
    if index in assigned:
        return f"cuda:{assigned.index(index)}"
    raise ConfigError(
        f"{where}: {device!r} asked for, but this Ray actor was given GPU(s) {', '.join(assigned)} "
        f"(visible to it as cuda:0..cuda:{len(assigned) - 1}); Ray chooses the GPU of each actor, "
        "so use device: cuda (or auto) in a job"
    )


# Test-only: "GPU" actors of a Ray that declares fake GPUs run their models on CPU, so scheduling
# on GPUs (pool sizes, sharing, overlap of passes) can be tested on a machine without one.
GPU_AS_CPU_ENV = "AFFALIGN_TEST_GPU_AS_CPU"


def resolve_device(option: str | None, where: str = "device") -> str:
    """``auto`` -> ``cuda`` when CUDA is available, else ``cpu``; ``cuda[:N]`` checked (see module doc)."""
    device = str(option or "auto").strip().lower()
    if os.environ.get(GPU_AS_CPU_ENV) == "1" and (device == "auto" or device.startswith("cuda")):
        return "cpu"
    torch = _torch()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"{where} is {device!r} but CUDA is not available")
        device = map_cuda_index(device, ray_gpu_ids(), where)
        if device.startswith("cuda:"):
            index = device.split(":", 1)[1]
            count = torch.cuda.device_count()
            if not index.isdigit() or int(index) >= count:
                raise ConfigError(f"{where} is {device!r} but this process sees {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
        return device
    if device != "cpu":
        raise ConfigError(f"{where}: {device!r} is not one of auto, cpu, cuda, cuda:N")
    return device


def bf16_supported() -> bool:
    """Whether the current GPU runs bfloat16 natively (emulated bf16 on a V100/T4 is slow)."""
    torch = _torch()
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch < 2.3 has no including_emulation
        return bool(torch.cuda.is_bf16_supported())


def auto_dtype(device: str, where: str = "dtype"):
    """The dtype of ``auto``: bfloat16 on a GPU that supports it, float16 (with a warning) on one
    that does not, float32 on CPU."""
    torch = _torch()
    if not device.startswith("cuda"):
        return torch.float32
    if bf16_supported():
        return torch.bfloat16
    log.warning("%s: this GPU does not support bfloat16; using float16 (set dtype: float32 if the model overflows in float16)", where)
    return torch.float16


def load_kwargs(device: str) -> dict[str, Any]:
    """``from_pretrained`` arguments for a model that runs whole on ``device``.

    On CUDA: ``device_map={"": device}`` materialises the weights directly on the GPU (shard by
    shard) instead of building the model in host RAM and copying it, which for a 7B model in
    bf16 is 14 GB of host memory per actor and most of the load time; ``low_cpu_mem_usage``
    (implied by ``device_map``; transformers 5 ignores it) says the same to transformers 4.x.
    On CPU: nothing (the default load).
    """
    if not device.startswith("cuda"):
        return {}
    from transformers.utils import is_accelerate_available

    if not is_accelerate_available():
        # accelerate is a dependency; without it (a hand-made environment) load the old way
        log.warning("the 'accelerate' package is missing: loading the model into host memory first, then copying it to %s", device)
        return {}
    return {"device_map": {"": device}, "low_cpu_mem_usage": True}


# ---------------------------------------------------------------------------------------------
# Sticky CUDA errors
# ---------------------------------------------------------------------------------------------

# Messages of CUDA errors after which the CUDA context of the process is corrupted: every later
# CUDA call fails too. cuBLAS/cuDNN "execution failed" is how a kernel fault surfaces in those
# libraries; "CUDA error:" is torch's wording of any failed CUDA runtime call (C10_CUDA_CHECK),
# kept sticky (except out of memory) because after an unknown runtime error a restart is cheaper
# than a run whose every later batch may fail.
_STICKY_MARKERS = (
    "illegal memory access",
    "device-side assert",
    "misaligned address",
    "unspecified launch failure",
    "illegal instruction",
    "uncorrectable ecc error",
    "cublas_status_execution_failed",
    "cudnn_status_execution_failed",
    "cuda error",
)


def is_oom(exc: BaseException) -> bool:
    """Out of (GPU or host) memory: recoverable by smaller batches, not sticky."""
    text = str(exc).lower()
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text or "alloc_failed" in text


def is_sticky_cuda_error(exc: BaseException) -> bool:
    """True for CUDA errors that leave the process's CUDA context unusable (see _STICKY_MARKERS)."""
    if is_oom(exc):
        return False
    text = f"{type(exc).__name__}: {exc}".lower()
    if type(exc).__name__ == "AcceleratorError":  # torch >= 2.8 raises this for CUDA runtime errors
        return True
    return any(marker in text for marker in _STICKY_MARKERS)


class StickyCudaError(BaseException):
    """A sticky CUDA error outside a Ray actor (a unit test, a benchmark, a local call).

    A ``BaseException`` on purpose: ``except Exception`` handlers that turn a failed batch into
    error rows or quarantine its rows (stages.base) must not swallow it, as they re-raise
    ``MemoryError``.
    """


def in_ray_actor() -> bool:
    if "ray" not in sys.modules:
        return False
    try:
        import ray

        return bool(ray.is_initialized() and ray.get_runtime_context().get_actor_id())
    except Exception:  # noqa: BLE001
        return False


def _exit(status: int) -> None:  # a seam for tests
    os._exit(status)


def die_on_sticky_cuda_error(exc: BaseException, where: str) -> None:
    """Return if ``exc`` is not a sticky CUDA error; else end this Ray actor (Ray restarts it and
    retries its batch) or, outside an actor, raise :class:`StickyCudaError`."""
    if not is_sticky_cuda_error(exc):
        return
    message = f"{where}: sticky CUDA error, the GPU context of this process is unusable: {type(exc).__name__}: {exc}"
    if in_ray_actor():
        log.error("%s; ending this actor so that Ray restarts it and retries the batch", message)
        for handler in logging.getLogger().handlers + log.handlers:
            try:
                handler.flush()
            except Exception:  # noqa: BLE001
                pass
        sys.stdout.flush()
        sys.stderr.flush()
        _exit(STICKY_CUDA_EXIT)
    raise StickyCudaError(message) from exc


# ---------------------------------------------------------------------------------------------
# Batch sizes
# ---------------------------------------------------------------------------------------------

AUTO_BATCH_CAP = 512  # rows: beyond this decoding is bandwidth-bound on the KV cache anyway
MEMORY_FRACTION = 0.85  # of the free bytes; the rest for the allocator's fragmentation and kernels' workspaces
LOGIT_COPIES = 6  # float32 vocab-sized rows per sequence per step (logits, softmax, top-k, sampler)


def kv_bytes_per_token(config: Any, dtype_bytes: int) -> int:
    """KV cache bytes one token takes over all layers (keys and values) for an HF model config."""
    text = getattr(config, "get_text_config", None)
    cfg = text() if callable(text) else config
    layers = int(getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "num_layers", 0) or getattr(cfg, "n_layer", 0))
    heads = int(getattr(cfg, "num_attention_heads", 0) or getattr(cfg, "n_head", 0) or 1)
    kv_heads = int(getattr(cfg, "num_key_value_heads", 0) or heads)
    hidden = int(getattr(cfg, "hidden_size", 0) or getattr(cfg, "d_model", 0) or getattr(cfg, "n_embd", 0))
    head_dim = int(getattr(cfg, "head_dim", 0) or (hidden // heads if heads else 0))
    return 2 * layers * kv_heads * head_dim * int(dtype_bytes)


def generation_batch_size(free_bytes: int, kv_bytes_token: int, seq_len: int, vocab_size: int, cap: int = AUTO_BATCH_CAP) -> int:
    """Rows per generation batch that fit in ``free_bytes`` of GPU memory (measured after loading).

    A row holds ``seq_len`` (prompt + new tokens) tokens of KV cache and a few float32 vocab-sized
    rows of logits per step. The result is a power of two (the static cache pads batches to powers
    of two anyway) between 1 and ``cap``.
    """
    per_row = int(seq_len) * int(kv_bytes_token) + LOGIT_COPIES * 4 * int(vocab_size)
    if per_row <= 0:
        raise ValueError("generation_batch_size: a row must take some memory")
    rows = int(max(0, free_bytes) * MEMORY_FRACTION) // per_row
    rows = max(1, min(int(cap), rows))
    return 1 << (rows.bit_length() - 1)
