"""report.html in a real browser: headless Chromium renders it without console errors or network use."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.unit.test_report import make_run_dir

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def _chromium() -> str | None:
    env = os.environ.get("AFFALIGN_CHROMIUM")
    for c in ((env,) if env else ()) + CANDIDATES:
        if c and Path(c).exists():
            return c
    return shutil.which("chromium")


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install -y chromium)")

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run")


def _run(args: list[str], tmp: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    from affalign.report import build_report

    run = make_run_dir(tmp_path_factory.mktemp("run"), dims=("emotion",), n_human=150, n_model=100)
    paths = build_report(str(run), draws=60, n_grid=(25, 50, 100))
    return Path(paths["report.html"])


def test_screenshot_shows_the_report(report_html, tmp_path):
    shot = tmp_path / "report.png"
    proc = _run(["--hide-scrollbars", f"--screenshot={shot}", "--window-size=1400,3000", report_html.resolve().as_uri()], tmp_path)
    assert shot.exists() and shot.stat().st_size > 10_000, proc.stderr[-2000:]
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[0] >= 2900 and img.shape[1] >= 1300
    rgb = np.round(img[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    colours = np.unique(rgb, axis=0)
    assert len(colours) > 200, f"only {len(colours)} distinct colours: blank page?"
    # below the text there are figures: the lower half is not a blank page either
    lower = np.round(img[img.shape[0] // 2 :, :, :3] * 255).astype(np.uint8).reshape(-1, 3)
    assert (lower != 255).any(axis=1).mean() > 0.01
    if os.environ.get("AFFALIGN_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["AFFALIGN_KEEP_SCREENSHOT"])


def test_dom_loads_without_console_errors_or_network(report_html, tmp_path):
    proc = _run(["--enable-logging=stderr", "--v=0", "--dump-dom", report_html.resolve().as_uri()], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert "<h1>" in dom and "Research questions" in dom
    assert dom.count("<img") >= 6
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom  # the hostile topic stayed text
    assert "<script>alert(1)</script>" not in dom
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, "\n".join(console)
    network = [line for line in proc.stderr.splitlines() if "net::ERR" in line or "Failed to load resource" in line]
    assert not network, "\n".join(network)
