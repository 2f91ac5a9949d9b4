"""The ``affalign`` command line; thin: parsing, printing and exit codes only."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from affalign.errors import AffalignError, ConfigError

log = logging.getLogger("affalign")


def _texts(args: argparse.Namespace) -> list[str]:
    texts = list(args.text or [])
    if args.file:
        try:
            texts += [line.rstrip("\n") for line in Path(args.file).read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError as exc:
            raise ConfigError(f"{args.file}: cannot read: {exc.strerror or exc}") from exc
    if not texts:
        raise ConfigError("give texts as arguments or --file FILE (one text a line)")
    return texts


def cmd_synth(args: argparse.Namespace) -> int:
    from affalign.synth import SynthSpec, synthesize

    if not 0 <= args.bad_fraction < 1:
        raise ConfigError("--bad-fraction must be in [0, 1)")
    groups = tuple(g.strip() for g in args.groups.split(",") if g.strip())
    spec = SynthSpec(dataset=args.dataset, rows=args.rows, seed=args.seed, groups=groups, bad_fraction=args.bad_fraction, rows_per_shard=args.rows_per_shard, format=args.format)
    truth = synthesize(spec, args.out)
    print(json.dumps({"out": args.out, "rows": args.rows, "topics": len(truth["topics"]), "counts": truth["counts"]}))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from affalign.config import load_config
    from affalign.pipeline import run_job
    from affalign.summary import format_summary

    cfg = load_config(args.job, args.set)
    doc = run_job(cfg, args.out, address=args.address)
    print(format_summary(doc, args.out))
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    from affalign.stages.topics import KeywordMatcher
    from affalign.taxonomy import load_taxonomy

    texts = _texts(args)
    matcher = KeywordMatcher(load_taxonomy(args.taxonomy or args.dataset))
    for text, topics in zip(texts, matcher.tag(texts), strict=True):
        print(json.dumps({"text": text, "topics": topics}, ensure_ascii=False))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from affalign.schema import DIMENSIONS
    from affalign.scorers.base import ScorerSpec
    from affalign.scorers.registry import make_scorer

    texts = _texts(args)
    spec = ScorerSpec(scorer=args.scorer, model=args.model, device=args.device)
    scorer = make_scorer(spec, (args.dimension,))
    scorer.setup()
    mat = scorer.score(texts)[args.dimension]
    labels = DIMENSIONS[args.dimension]
    for text, row in zip(texts, mat, strict=True):
        print(json.dumps({"text": text, "scores": {lab: round(float(v), 4) for lab, v in zip(labels, row, strict=True)}}, ensure_ascii=False))
    return 0


def cmd_prompts(args: argparse.Namespace) -> int:
    from affalign.generation.prompts import fill_templates

    for p in fill_templates(args.kind, args.mode, args.topic):
        print(p)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import csv
    import io

    from affalign.compare import compare_scorers, format_rows
    from affalign.io import OutputDir
    from affalign.scorers.base import ScorerSpec

    a = ScorerSpec(scorer=args.a, model=args.a_model) if args.a else None
    b = ScorerSpec(scorer=args.b, model=args.b_model)
    rows = compare_scorers(args.run_dir, b, a, n=args.sample, seed=args.seed)
    print(format_rows(rows))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    OutputDir(args.run_dir).publish_bytes("scorer_agreement.csv", buf.getvalue().encode())
    print(f"written: {args.run_dir.rstrip('/')}/scorer_agreement.csv")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="affalign", description="Affective alignment of language models with groups of people.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="write a synthetic tweet corpus in the input contract")
    s.add_argument("--dataset", choices=["covid", "roe"], required=True)
    s.add_argument("--rows", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="output directory (local or s3://)")
    s.add_argument("--bad-fraction", type=float, default=0.0, help="share of bad rows (null/empty text, null ids, duplicates, unknown group)")
    s.add_argument("--groups", default="liberal,conservative", help="comma-separated group values")
    s.add_argument("--rows-per-shard", type=int, default=1_000_000)
    s.add_argument("--format", choices=["parquet", "jsonl", "csv"], default="parquet")
    s.set_defaults(fn=cmd_synth)

    r = sub.add_parser("run", help="run a job (YAML spec) and write its outputs to DIR")
    r.add_argument("job")
    r.add_argument("--out", required=True, help="output directory (local or s3://)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. input.path=data/")
    r.add_argument("--address", default=None, help="join an existing Ray cluster (default: embedded local Ray)")
    r.set_defaults(fn=cmd_run)

    t = sub.add_parser("tag", help="print the topics of texts, one JSON line each")
    t.add_argument("--dataset", choices=["covid", "roe"], required=True)
    t.add_argument("--taxonomy", default=None, help="a taxonomy file instead of the dataset's built-in one")
    t.add_argument("--file", default=None)
    t.add_argument("text", nargs="*")
    t.set_defaults(fn=cmd_tag)

    c = sub.add_parser("score", help="print the affect scores of texts, one JSON line each")
    c.add_argument("--dimension", choices=["emotion", "moral"], required=True)
    c.add_argument("--scorer", default="offline", help="offline (default), hf, lexicon or judge")
    c.add_argument("--model", default=None, help="model for hf/judge scorers")
    c.add_argument("--device", default="auto")
    c.add_argument("--file", default=None)
    c.add_argument("text", nargs="*")
    c.set_defaults(fn=cmd_score)

    pr = sub.add_parser("prompts", help="print the 10 filled prompts of Table 3, one a line")
    pr.add_argument("--kind", choices=["base", "instruct"], required=True)
    pr.add_argument("--mode", choices=["default", "liberal", "conservative"], required=True)
    pr.add_argument("--topic", required=True)
    pr.set_defaults(fn=cmd_prompts)
    from affalign.report.cli_hook import add_report_parser

    add_report_parser(sub)

    cs = sub.add_parser("compare-scorers", help="per-label correlation of two scorers on a run's texts")
    cs.add_argument("run_dir")
    cs.add_argument("--a", default=None, help="scorer A (default: the scores the run stored)")
    cs.add_argument("--a-model", default=None)
    cs.add_argument("--b", default="lexicon", help="scorer B (offline, hf, lexicon, judge)")
    cs.add_argument("--b-model", default=None)
    cs.add_argument("--sample", type=int, default=500)
    cs.add_argument("--seed", type=int, default=0)
    cs.set_defaults(fn=cmd_compare)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.fn(args)
    except AffalignError as exc:
        print(f"affalign: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        from affalign.pipeline import unwrap_error

        inner = unwrap_error(exc)
        if isinstance(inner, AffalignError):
            print(f"affalign: error: {inner}", file=sys.stderr)
            return inner.exit_code
        log.debug("failure", exc_info=True)
        print(f"affalign: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
