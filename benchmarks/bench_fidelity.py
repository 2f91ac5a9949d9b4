"""Distribution fidelity and per-tweet accuracy of the scorers on held-out labelled tweets.

For each scorer and each reduce mode: S(gold label distribution, predicted distribution) =
1 - JSD (base 2) (``affalign.fidelity``), plus Jaccard accuracy, micro- and macro-F1 at the
threshold-mode cuts, on

* emotion: SemEval-2018 E-c dev (886 tweets), never used to train, calibrate or tune the offline
  scorer's evaluation heads;
* moral: the MFTC Election subcorpus (5,357 tweets), held out the same way.

Scorers: ``offline`` with the ``fast`` and ``exact`` encoders (their evaluation heads and thresholds,
``options.heads = eval``: the shipped heads trained on these tweets too), ``lexicon`` (tau 0.5), and
with ``--old-rev REV`` the offline heads file of an older commit (thresholds folded into the bias,
cut at 0.5) on the same exact features, for a before/after comparison in one run.

    python benchmarks/bench_fidelity.py [--old-rev 55ac0c9] [--record]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(REPO), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from provenance import git_commit  # noqa: E402

from affalign.fidelity import evaluate, read_labelled  # noqa: E402
from affalign.schema import DIMENSIONS  # noqa: E402
from affalign.scorers.base import ScorerSpec  # noqa: E402
from affalign.scorers.offline import load_bundle_file  # noqa: E402
from affalign.scorers.registry import make_scorer  # noqa: E402

SHARED = Path(os.environ.get("AFFALIGN_SHARED", REPO.parent / "shared"))
RESULTS = REPO / "benchmarks" / "RESULTS.md"
SETS = {
    "emotion": ("SemEval-2018 E-c dev", SHARED / "data" / "semeval2018-ec" / "dev.tsv"),
    "moral": ("MFTC Election", SHARED / "data" / "mftc" / "Election.csv"),
}


def run(args: argparse.Namespace) -> list[dict]:
    rows = []
    for dim, (name, path) in SETS.items():
        texts, gold = read_labelled(path, dim)
        labels = DIMENSIONS[dim]
        exact_x = None
        for scorer_name, options in (("offline", {"encoder": "fast", "heads": "eval"}), ("offline", {"encoder": "exact", "heads": "eval"}), ("lexicon", {})):
            s = make_scorer(ScorerSpec(scorer=scorer_name, device="cpu", options=options), (dim,))
            s.setup()
            tau = s.thresholds()[dim] if hasattr(s, "thresholds") else 0.5
            if options.get("encoder") == "exact":  # keep the features for the old heads
                exact_x = s.embed(texts)
                scores = s.heads[dim](exact_x)
            else:
                scores = s.score(texts)[dim]
            res = evaluate(gold, scores, labels, tau)
            label = scorer_name + (f" ({options['encoder']})" if options else "")
            rows.append({"dimension": dim, "set": name, "scorer": label, **res})
        if args.old_rev and exact_x is not None:
            raw = subprocess.run(["git", "show", f"{args.old_rev}:affalign/data/scorers/offline_heads.npz"], cwd=REPO, capture_output=True, check=True).stdout
            heads, _, _ = load_bundle_file(io.BytesIO(raw))
            res = evaluate(gold, heads[f"{dim}_eval"](exact_x), labels, 0.5)
            rows.append({"dimension": dim, "set": name, "scorer": f"offline at {args.old_rev} (thresholds folded)", **res})
    for r in rows:
        print(f"{r['dimension']:8s} {r['scorer']:40s} S mean {r['fidelity']['mean']:.3f}  S threshold {r['fidelity']['threshold']:.3f}  "
              f"Jaccard {r['per_tweet']['jaccard']:.3f}  macro-F1 {r['per_tweet']['macro_f1']:.3f}", flush=True)
    return rows


def record(rows: list[dict]) -> None:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "",
        f"### Distribution fidelity of the scorers on held-out tweets ({when})",
        "",
        f"`python benchmarks/bench_fidelity.py {' '.join(sys.argv[1:])}`; commit {git_commit()}. S = 1 - JSD(gold label "
        "distribution, predicted distribution), base 2; per-tweet figures at the threshold-mode cuts (the offline "
        "scorer's per-label thresholds; 0.5 for the lexicon and the old folded heads). Offline rows use the evaluation "
        "heads, which never saw these tweets.",
        "",
        "| dimension | held-out set | scorer | S (mean mode) | S (threshold mode) | Jaccard | micro-F1 | macro-F1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        pt = r["per_tweet"]
        lines.append(f"| {r['dimension']} | {r['set']} ({r['n_texts']}) | {r['scorer']} | {r['fidelity']['mean']:.3f} | {r['fidelity']['threshold']:.3f} | "
                     f"{pt['jaccard']:.3f} | {pt['micro_f1']:.3f} | {pt['macro_f1']:.3f} |")
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"recorded in {RESULTS}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old-rev", default=None, help="also score with the offline heads file of this git revision")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args(argv)
    missing = [str(p) for _, p in SETS.values() if not p.is_file()]
    if missing:
        print(f"held-out sets not found: {missing} (set AFFALIGN_SHARED)", file=sys.stderr)
        return 2
    rows = run(args)
    if args.record:
        record(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
