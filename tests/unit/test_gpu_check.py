"""`make gpu-check` (scripts/gpu_check.sh) refuses to pass on a machine without CUDA."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.skipif(_has_cuda(), reason="this machine has CUDA: the refusal cannot be shown here")
@pytest.mark.parametrize("skip", ["", "scoring generation job"], ids=["gpu-check", "gpu-test"])
def test_gpu_check_refuses_without_cuda(tmp_path, skip):
    env = {"PATH": "/usr/bin:/bin", "GPU_CHECK_PY": sys.executable, "GPU_CHECK_SKIP": skip, "OUT": str(tmp_path)}
    res = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert "no CUDA device" in res.stderr and "refuse" in res.stderr
    assert "passed" not in res.stdout


def test_make_targets_run_the_check_script():
    make = (REPO / "Makefile").read_text()
    for target in ("gpu-check:", "gpu-test:"):
        body = make.split(target, 1)[1].split("\n\n", 1)[0]
        assert "scripts/gpu_check.sh" in body, target
