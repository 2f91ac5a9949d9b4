"""bf16 scoring on CUDA agrees with fp32 (skipped without a CUDA GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from affalign.schema import EMOTION_LABELS
from affalign.scorers.base import ScorerSpec

torch = pytest.importorskip("torch")

from tests.unit.test_hf_classifier import EMOTION_MODEL_LABELS, build_tiny_model, tiny_texts  # noqa: E402


def _scorer(path, device: str, dtype: str, **kw):
    from affalign.scorers.hf_classifier import HFClassifierScorer

    s = HFClassifierScorer(ScorerSpec(scorer="hf", model=str(path), device=device, dtype=dtype, batch_size=16, **kw), ("emotion",))
    s.setup()
    return s


@pytest.mark.gpu
def test_bf16_cuda_agrees_with_fp32(tmp_path):
    path = build_tiny_model(tmp_path / "emo", EMOTION_MODEL_LABELS, "roberta")
    texts = tiny_texts(300, seed=13)
    ref = _scorer(path, "cpu", "float32").score(texts)["emotion"]
    fp32 = _scorer(path, "cuda", "float32").score(texts)["emotion"]
    gpu = _scorer(path, "cuda", "auto", options={"tokenize_chunk": 64})  # bf16, threaded chunks
    assert gpu.uses_gpu() and gpu._dtype == torch.bfloat16
    gpu.profile = True
    bf16 = gpu.score(texts)["emotion"]
    assert bf16.shape == (300, len(EMOTION_LABELS)) and bf16.dtype == np.float32
    np.testing.assert_allclose(fp32, ref, atol=1e-4)
    assert np.abs(bf16 - fp32).max() < 0.05
    assert np.abs(bf16 - fp32).mean() < 0.01
    assert gpu.timings["forward_s"] > 0 and gpu.timings["h2d_s"] > 0
    ids, lengths = gpu.tokenize(texts)
    # other sub-batch shapes than the chunked text path: bf16 rounding differs a little
    np.testing.assert_allclose(gpu.score_tokenized(ids, lengths)["emotion"], bf16, atol=2e-2)
