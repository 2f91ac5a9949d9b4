"""``affalign report RUN_DIR``: the parser hook the CLI registers (``add_report_parser(sub)``)."""

from __future__ import annotations

import argparse
import json


def cmd_report(args: argparse.Namespace) -> int:
    from affalign.report import build_report

    paths = build_report(args.run_dir, args.out, topic=args.topic, draws=args.draws, seed=args.seed, interval=args.interval)
    print(json.dumps({"report": paths.get("report.html"), "markdown": paths.get("report.md"), "files": len(paths)}))
    return 0


def add_report_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``report RUN_DIR [--out DIR] [--topic T] [--draws N] [--seed S]`` (and two finer options)."""
    p = subparsers.add_parser("report", help="figures, 95%% intervals, tests and research-question answers of a finished run (reads its tables only)")
    p.add_argument("run_dir", help="a run's output directory (local or s3://)")
    p.add_argument("--out", default=None, help="where to write the report (default: RUN_DIR/report)")
    p.add_argument("--topic", default=None, help="the topic of the distribution figures (default: the 2 most divergent topics)")
    p.add_argument("--draws", type=int, default=1000, help="bootstrap draws (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--interval", choices=["bc", "percentile", "basic"], default="bc", help="bootstrap interval: bc (bias-corrected, calibrated; default), percentile or basic")
    p.set_defaults(fn=cmd_report)
    return p
