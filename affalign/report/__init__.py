"""The report of a run: figures, bootstrap intervals, tests and research-question answers.

Reads only a run directory's tables (never re-scores): see :func:`build_report`. One module per job,
each importing only the ones above it in this list:

* :mod:`~affalign.report.load`: read a run directory into a ``RunData``;
* :mod:`~affalign.report.analysis`: the statistics (bootstrap intervals, baseline comparisons, bias,
  steering, precision) as typed results, no I/O and no text;
* :mod:`~affalign.report.calls` and :mod:`~affalign.report.prose`: the calls and their words (findings,
  tables, captions, the method note);
* :mod:`~affalign.report.figures` and :mod:`~affalign.report.render`: the figures, HTML (CSS in
  ``report.css``), Markdown and CSV, as bytes;
* :mod:`~affalign.report.build`: runs these in order and publishes the files atomically.
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
