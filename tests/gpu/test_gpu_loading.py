"""The GPU-path checks of issue 14 on a real CUDA device (run by `make gpu-check`; skipped in CI):
weights load straight onto the GPU, dtype auto picks bf16 where supported, batches sized from free
memory generate, no generation-config warnings, and a real device-side assert is recognised as
sticky (and really is: later CUDA calls of that process fail too)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from affalign import devices  # noqa: E402
from affalign.backends.base import GenerationParams, ModelSpec  # noqa: E402
from tests.unit.test_hf_backend import PROMPTS, build_tiny_causal  # noqa: E402
from tests.unit.test_hf_classifier import EMOTION_MODEL_LABELS, build_tiny_model  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.gpu
def test_generation_model_loads_straight_onto_the_gpu_with_an_auto_batch(tmp_path):
    from affalign.backends.hf import HFBackend

    path = build_tiny_causal(tmp_path / "tiny")
    spec = ModelSpec(id="tiny", backend="hf", path=str(path), batch_size=64, options={"device": "cuda", "auto_batch_size": True})
    b = HFBackend(spec)
    b.setup()
    assert b._placed  # from_pretrained's device_map put it there
    assert {str(p.device) for p in b.hf_model.parameters()} == {"cuda:0"}
    want = torch.bfloat16 if devices.bf16_supported() else torch.float16
    assert next(b.hf_model.parameters()).dtype == want
    # a tiny model on a big GPU: the cap, a power of two
    assert b.batch_size == devices.AUTO_BATCH_CAP
    gens = b.generate(PROMPTS * 3, GenerationParams(max_new_tokens=8, seed=1), seeds=list(range(12)))
    assert len(gens) == 12 and all(g.finish_reason in ("stop", "length") for g in gens)


@pytest.mark.gpu
def test_classifier_loads_straight_onto_the_gpu_with_its_cuda_batch_default(tmp_path):
    from affalign.scorers.base import ScorerSpec
    from affalign.scorers.hf_classifier import HFClassifierScorer

    path = build_tiny_model(tmp_path / "emo", EMOTION_MODEL_LABELS, "roberta")
    s = HFClassifierScorer(ScorerSpec(scorer="hf", model=str(path), device="cuda", batch_size=None), ("emotion",))  # type: ignore[arg-type]
    s.setup()
    assert {str(p.device) for p in s._model.parameters()} == {"cuda:0"}
    assert s.batch_size == 1024
    assert s.score(["masks work"] * 3)["emotion"].shape[0] == 3


@pytest.mark.gpu
def test_a_real_device_side_assert_is_sticky():
    """In a child process (it ruins its CUDA context): the real error message is classified as
    sticky, and a plain CUDA call afterwards fails as well."""
    code = textwrap.dedent(
        """
        import torch
        from affalign.devices import is_sticky_cuda_error
        x = torch.zeros(4, device="cuda")
        try:
            x[torch.tensor([10], device="cuda")] = 1.0  # index out of range: device-side assert
            torch.cuda.synchronize()
            print("NO-ERROR")
        except Exception as exc:
            print("STICKY" if is_sticky_cuda_error(exc) else f"NOT-STICKY {exc!r}")
        try:
            torch.ones(2, device="cuda").sum().item()
            print("LATER-OK")
        except Exception as exc:
            print("LATER-FAILS" if is_sticky_cuda_error(exc) else f"LATER-OTHER {exc!r}")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "STICKY" in out.stdout.split(), out.stdout + out.stderr[-2000:]
    assert "LATER-FAILS" in out.stdout.split(), out.stdout + out.stderr[-2000:]


@pytest.mark.gpu
def test_cuda_oom_is_not_sticky():
    free, _ = torch.cuda.mem_get_info()
    with pytest.raises(torch.cuda.OutOfMemoryError) as info:
        torch.empty(int(free * 4), dtype=torch.uint8, device="cuda")
    assert not devices.is_sticky_cuda_error(info.value)
    assert torch.ones(2, device="cuda").sum().item() == 2.0  # the context still works
