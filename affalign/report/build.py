"""``affalign report``: the figures, intervals, tests and research-question answers of a finished run.

The one job of this module is to run the report's steps in order and publish what they make:
read the run (:mod:`~affalign.report.load`), compute the statistics (:mod:`~affalign.report.analysis`),
word them (:mod:`~affalign.report.prose`), render them (:mod:`~affalign.report.render`), and write
every file atomically into the output directory. It reads only the run directory's tables
(``run.json``, ``distributions.parquet``, ``alignment.parquet``, ``summary.csv`` and the per-text
``scores/``); it never re-scores. Writes ``report.html`` (one self-contained file), ``report.md``,
every figure as PNG and SVG under ``figures/``, ``intervals.csv`` (every estimate with its 95%
interval) and ``precision.csv``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import pyarrow.fs as pafs

from affalign import stats
from affalign.errors import ConfigError
from affalign.report import analysis, prose, render
from affalign.report.load import load_run
from affalign.rundir import RunDir

log = logging.getLogger("affalign")


def build_report(
    run_dir: str,
    out_dir: str | None = None,
    *,
    topic: str | None = None,
    draws: int = 1000,
    seed: int = 0,
    n_grid: Sequence[int] | None = stats.DEFAULT_N_GRID,
    interval: str = stats.DEFAULT_INTERVAL,
    s3_endpoint: str | None = None,
    s3_region: str | None = None,
) -> dict[str, str]:
    """Write the report of a run directory to ``out_dir`` (default ``RUN_DIR/report``).

    Returns {relative name: full path} of every file written (``report.html``, ``report.md``,
    ``intervals.csv``, ``precision.csv``, ``figures/*.png|svg``). ``topic`` picks the topic of the
    distribution figures (default: the two most divergent topics); ``draws`` bootstrap draws, seeded
    by ``seed``; ``interval``: ``bc`` (bias-corrected, the calibrated default), ``percentile`` or ``basic``.
    """
    if draws < 2:
        raise ConfigError("--draws must be at least 2")
    if interval not in stats.INTERVALS:
        raise ConfigError(f"--interval must be one of {', '.join(stats.INTERVALS)}")
    t0 = time.perf_counter()
    data = load_run(run_dir, s3_endpoint, s3_region)
    result = analysis.analyse(data, analysis.Settings(draws=draws, seed=seed, interval=interval, n_grid=n_grid), topic)
    t_stats = time.perf_counter() - t0
    text = prose.write(data, result, topic)
    secs = render.sections(text)
    generated = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + f" in {time.perf_counter() - t0:.1f}s (statistics {t_stats:.1f}s)"
    written = render.figure_files(secs)
    written.update(render.documents(data, text, secs, result, generated))

    target = out_dir or f"{run_dir.rstrip('/')}/report"
    out = RunDir(target, s3_endpoint, s3_region)
    paths = {name: out.uri_of(name) if "://" in target else out.path(name) for name in written}
    for name, blob in written.items():
        out.publish_bytes(name, blob)
    tmp = out.path("_tmp")
    try:
        if out.fs.get_file_info(tmp).type == pafs.FileType.Directory and not out.fs.get_file_info(pafs.FileSelector(tmp)):
            out.fs.delete_dir(tmp)
    except OSError:  # pragma: no cover - cosmetic
        pass
    log.info("report written to %s in %.1fs", target, time.perf_counter() - t0)
    return paths
