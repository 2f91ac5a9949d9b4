"""The report of a run: figures, bootstrap intervals, tests and research-question answers.

Reads only a run directory's tables (never re-scores): see :func:`build_report`.
"""

from __future__ import annotations

from typing import Any


def build_report(run_dir: str, out_dir: str | None = None, **kwargs: Any) -> dict[str, str]:
    """Write the report of ``run_dir`` to ``out_dir`` (default ``RUN_DIR/report``); returns the paths written.

    See :func:`affalign.report.build.build_report` for the options (imported lazily: matplotlib
    loads only when a report is built).
    """
    from affalign.report.build import build_report as _build

    return _build(run_dir, out_dir, **kwargs)


__all__ = ["build_report"]
