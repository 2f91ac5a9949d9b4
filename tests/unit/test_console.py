"""The quiet console's one filter: Ray core's known-harmless line is dropped from the driver's
stderr, everything else (an error, a partial progress line) passes in full."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import os, sys
from affalign.runtime import cluster as runtime
runtime.configure_console(filter_core=True)
runtime._console["filter"] = True
runtime.filter_core_stderr()
os.write(2, b"[2026-11-30 06:29:17,310 E 1 1] core_worker.cc:2465: Actor with class name: 'MapWorker' has constructor arguments in the object store and max_restarts > 0. If ...\n")
os.write(2, b"[2026-11-30 06:29:17,311 E 1 1] core_worker.cc:1: a real core error\n")
print("Traceback (most recent call last):\nValueError: " + "x" * 5000, file=sys.stderr)
os.write(2, b"progress 10/20\r")
runtime.stop_filter()
os.write(2, b"after stop\n")
"""


def test_stderr_filter_drops_only_the_known_ray_line():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, timeout=60)
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert "constructor arguments in the object store" not in err
    assert "a real core error" in err and "ValueError: " + "x" * 5000 in err
    assert "progress 10/20\r" in err and err.endswith("after stop\n")
