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
    from affalign.job import run_job
    from affalign.summary import format_summary

    cfg = load_config(args.job, args.set)
    doc = run_job(cfg, args.out, address=args.address)
    print(format_summary(doc, args.out))
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    from affalign.tagging.keywords import KeywordMatcher
    from affalign.taxonomy import load_taxonomy

    texts = _texts(args)
    ref = args.taxonomy or args.dataset
    taxonomy = load_taxonomy(ref)
    matcher = KeywordMatcher(taxonomy)
    keyword_topics = matcher.tag(texts) if args.mode != "semantic" else None
    why: list[dict] = [{} for _ in texts]
    if args.mode == "keywords":
        assert keyword_topics is not None
        topics = keyword_topics
    else:
        from affalign.tagging.semantic import SemanticMatcher, load_semantic, resolve_cuts, tag_texts

        sem = SemanticMatcher(load_semantic(ref, args.exemplars or ""))
        cut, hybrid_cut = resolve_cuts(sem.sem, args.cut, args.hybrid_cut)
        topics = tag_texts(texts, ref, args.mode, cut=cut, hybrid_cut=hybrid_cut, matcher=sem)
        if args.explain:
            from affalign.tagging_explain import explain_semantic

            why = explain_semantic(sem, texts, topics, cut, hybrid_cut, args.mode, keyword_topics)
    if args.explain and keyword_topics is not None:
        from affalign.tagging_explain import KeywordExplainer

        explainer = KeywordExplainer(taxonomy)
        for i, (text, kw) in enumerate(zip(texts, keyword_topics, strict=True)):
            for topic, evidence in explainer.explain(text, kw).items():
                why[i][topic] = evidence + why[i].get(topic, [])
    for i, (text, tops) in enumerate(zip(texts, topics, strict=True)):
        line: dict = {"text": text, "topics": tops}
        if args.explain:
            line["why"] = {t: why[i].get(t, []) for t in tops}
        print(json.dumps(line, ensure_ascii=False))
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
    # "labels": those at or above the scorer's own per-label thresholds (offline), else 0.5
    cuts = scorer.thresholds()[args.dimension] if hasattr(scorer, "thresholds") else [0.5] * len(labels)
    for text, row in zip(texts, mat, strict=True):
        scores = {lab: round(float(v), 4) for lab, v in zip(labels, row, strict=True)}
        present = [lab for lab, v, t in zip(labels, row, cuts, strict=True) if v >= t]
        print(json.dumps({"text": text, "scores": scores, "labels": present}, ensure_ascii=False))
    return 0


def cmd_fidelity(args: argparse.Namespace) -> int:
    from affalign.fidelity import evaluate, read_labelled
    from affalign.schema import DIMENSIONS
    from affalign.scorers.base import ScorerSpec
    from affalign.scorers.registry import make_scorer

    texts, gold = read_labelled(args.data, args.dimension, args.limit)
    bad = [kv for kv in args.option if "=" not in kv]
    if bad:
        raise ConfigError(f"--option takes KEY=VALUE, got {bad[0]!r}")
    options = dict(kv.split("=", 1) for kv in args.option)
    spec = ScorerSpec(scorer=args.scorer, model=args.model, device=args.device, options=options)
    scorer = make_scorer(spec, (args.dimension,))
    scorer.setup()
    # threshold mode: the scorer's own per-label thresholds where it has them, else --tau
    tau = scorer.thresholds()[args.dimension] if hasattr(scorer, "thresholds") and args.tau is None else (args.tau if args.tau is not None else 0.5)
    out = evaluate(gold, scorer.score(texts)[args.dimension], DIMENSIONS[args.dimension], tau)
    print(json.dumps({"data": str(args.data), "dimension": args.dimension, "scorer": args.scorer, "options": options, **out}, indent=2))
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
    from affalign.rundir import RunDir
    from affalign.scorers.base import ScorerSpec

    a = ScorerSpec(scorer=args.a, model=args.a_model) if args.a else None
    b = ScorerSpec(scorer=args.b, model=args.b_model)
    rows = compare_scorers(args.run_dir, b, a, n=args.sample, seed=args.seed)
    print(format_rows(rows))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    RunDir(args.run_dir).publish_bytes("scorer_agreement.csv", buf.getvalue().encode())
    print(f"written: {args.run_dir.rstrip('/')}/scorer_agreement.csv")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="affalign", description="Affective alignment of language models with groups of people.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging, and Ray's own INFO logs")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only: no progress display (for scripts)")
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
    t.add_argument("--mode", choices=["keywords", "semantic", "hybrid"], default="keywords", help="tagging mode (as tagging.mode of a job)")
    t.add_argument("--exemplars", default=None, help="semantic/hybrid: a topic exemplars file (default: the built-in taxonomy's)")
    t.add_argument("--cut", type=float, default=None, help="semantic: similarity cut (default: the calibrated one)")
    t.add_argument("--hybrid-cut", type=float, default=None, help="hybrid: similarity cut for semantic additions (default: calibrated)")
    t.add_argument("--explain", action="store_true", help="also print, per topic, the keyword, phrase, context gate or exemplar behind it")
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

    fd = sub.add_parser("fidelity", help="distribution fidelity S(gold, predicted) and per-tweet accuracy of a scorer on labelled texts")
    fd.add_argument("data", help="labelled file: SemEval E-c .tsv, MFTC .csv, or .jsonl with text + one 0/1 field per label")
    fd.add_argument("--dimension", choices=["emotion", "moral"], required=True)
    fd.add_argument("--scorer", default="offline", help="offline (default), hf, lexicon or judge")
    fd.add_argument("--model", default=None)
    fd.add_argument("--device", default="auto")
    fd.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="scorer option, e.g. encoder=exact or heads=eval (offline)")
    fd.add_argument("--tau", type=float, default=None, help="threshold-mode cut (default: the scorer's per-label thresholds, else 0.5)")
    fd.add_argument("--limit", type=int, default=None, help="first N rows only")
    fd.set_defaults(fn=cmd_fidelity)

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
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from affalign.runtime.cluster import configure_console

    configure_console(verbose=args.verbose, quiet=args.quiet and not args.verbose, filter_core=True)
    try:
        return _dispatch(args)
    finally:
        from affalign.runtime.cluster import stop_filter

        stop_filter()  # what is still in the stderr filter reaches the console before exit


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return args.fn(args)
    except AffalignError as exc:
        print(f"affalign: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        from affalign.errors import unwrap_error

        inner = unwrap_error(exc)
        if isinstance(inner, AffalignError):
            print(f"affalign: error: {inner}", file=sys.stderr)
            return inner.exit_code
        # an unexpected failure is shown in full, then summed up on the last line (a Ray error's
        # text already carries the remote traceback, and Ray Data logs its own stack)
        if not type(exc).__module__.startswith("ray."):
            import traceback

            traceback.print_exc(file=sys.stderr)
        print(f"affalign: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
