"""Calibration of the report's calls: false-call rates and power on simulated runs with planted truth.

Runs :mod:`affalign.calibration` at full size (10-26 topics, 2,000 generations per topic and mode,
1k-100k human tweets per group and topic from users with 1-200 tweets, unequal group sizes) through
the project's own statistics and report decisions, and appends the table to
``benchmarks/RESULTS.md`` (``--no-record`` to only print it).

Scenarios run round-robin (one replicate of each in turn, two of the 26-topic baseline-S-0.97 one) until ``--reps`` rounds or the time
budget ``--budget-s`` is reached, so a slow machine shortens every scenario alike; the table states
the replicates done and the Monte Carlo standard error of every rate. Each replicate is analysed
once and judged under the default two-stage bias-corrected intervals (``bc``) and, for comparison,
the one-stage correction (``bc1``, the previous default) and the uncorrected percentile intervals
(the same bootstrap replicates). Every subject takes the normal-limit path of
the resampling (``--exact-max``, default 1000 (cluster, topic) pairs; the report's default switches
at 20,000): at these sizes the exact path would take minutes per replicate; the CI version
(``tests/unit/test_calibration.py``) runs the exact path at small sizes.

    flock -s /tmp/affalign-cpu.lock .venv/bin/python benchmarks/bench_calibration.py
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provenance import cpu_model, git_commit  # noqa: E402  (benchmarks/ is the script directory)

from affalign.calibration import (  # noqa: E402
    BRADLEY_LIBERAL,
    BRADLEY_STRINGENT,
    CALLS,
    CENTRING,
    Scenario,
    Tally,
    check_truth,
    excess_p_value,
    holm,
    planted,
    replicate,
)

SCENARIOS = (
    Scenario("10 topics, baseline S 0.94", topics=10, baseline_s=0.94, effect=0.005),
    Scenario("26 topics, baseline S 0.94", topics=26, baseline_s=0.94, effect=0.005),
    Scenario("26 topics, baseline S 0.97", topics=26, baseline_s=0.97, effect=0.005),
)
# replicates per round: the scenario where the one-stage correction erred most (S near 1, many topics) twice
WEIGHTS = {"26 topics, baseline S 0.97": 2}
METHODS = ("bc", "bc1", "percentile")


def _fmt(rate: float, se: float) -> str:
    return f"{100 * rate:.1f}% ± {100 * se:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200, help="replicates per scenario at most (default 200)")
    ap.add_argument("--budget-s", type=float, default=1200.0, help="stop starting rounds of replicates after this many seconds (default 1200)")
    ap.add_argument("--stop-at", default=None, help="also stop starting rounds at this UTC time (HH:MM), e.g. when the run had to wait for the CPU lock")
    ap.add_argument("--draws", type=int, default=1000, help="bootstrap draws per replicate (the report's default: 1000)")
    ap.add_argument("--exact-max", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-record", action="store_true", help="print the table only")
    ap.add_argument("--note", default="", help="a sentence appended to the header (e.g. whether it ran alone)")
    args = ap.parse_args(argv)

    for sc in SCENARIOS:  # the planted truth, checked before anything is counted
        for pool in range(sc.pools):
            worst = max(check_truth(planted(sc, pool), sc).values())
            if worst > 1e-9:
                raise SystemExit(f"{sc.name}: planted truth off by {worst:g}")
    tallies = {(sc.name, m): Tally() for sc in SCENARIOS for m in METHODS}
    done = {sc.name: 0 for sc in SCENARIOS}
    t0 = time.perf_counter()
    stop = None
    if args.stop_at:
        now = datetime.datetime.now(datetime.UTC)
        hh, mm = (int(x) for x in args.stop_at.split(":"))
        stop = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    for rnd in range(args.reps):
        if time.perf_counter() - t0 > args.budget_s or (stop is not None and datetime.datetime.now(datetime.UTC) >= stop):
            break
        for sc in SCENARIOS:
            for _ in range(WEIGHTS.get(sc.name, 1)):
                got = replicate(sc, done[sc.name], draws=args.draws, methods=METHODS, seed=args.seed, exact_max=args.exact_max)
                for m in METHODS:
                    tallies[(sc.name, m)].add(got[m])
                done[sc.name] += 1
        print(f"round {rnd + 1}: {time.perf_counter() - t0:.0f}s {done}", file=sys.stderr, flush=True)
    wall = time.perf_counter() - t0

    pooled = {m: Tally() for m in METHODS}
    for (_, m), t in tallies.items():
        pooled[m].merge(t)
    verdict = judge(tallies, pooled)
    head = ["call", "planted truth", "nominal"] + [f"{sc.name} (bc)" for sc in SCENARIOS] + ["all (bc)", "all, bc1 (previous default)", "all, percentile"]
    rows = []
    for name, truth, nominal in [*CALLS, (CENTRING, "as the S interval rows", None)]:
        row = [name, truth, f"≤ {100 * nominal:.1f}%" if nominal is not None else ("about 50%" if name == CENTRING else "power")]
        for sc in SCENARIOS:
            r, se, _ = tallies[(sc.name, "bc")].rate(name)
            row.append(_fmt(r, se))
        r, se, n = pooled["bc"].rate(name)
        row.append(f"{_fmt(r, se)} (n={n})")
        for m in ("bc1", "percentile"):
            r, se, _ = pooled[m].rate(name)
            row.append(_fmt(r, se))
        rows.append(row)
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    eff = SCENARIOS[0].effect
    text = "\n".join(
        [
            "",
            "## Calibration of the report's calls, with a verdict on Monte Carlo error (issue 11) — `benchmarks/bench_calibration.py`",
            "",
            f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; commit {git_commit()}; {cpu_model()}, {os.cpu_count()} CPUs, 1 process (1 BLAS thread); "
            f"{args.note + ' ' if args.note else ''}(the figures are rates, fixed by the seeds and the replicate count; the time budget only sets how many replicates); wall {wall:.0f} s.",
            f"- replicates: {', '.join(f'{k}: {v}' for k, v in done.items())}; {args.draws} bootstrap draws each; normal-limit resampling above {args.exact_max} (cluster, topic) pairs "
            "(every subject at these sizes). Each replicate: 2 groups (per topic the larger 1k–100k tweets, log-uniform, the smaller 1.1–16× fewer, at least 1k), "
            "users with 1–200 tweets (heavy-tailed), per-user random effects shared across topics, 10% of a user's tweets also in a second topic; "
            "11 model subjects with 2,000 generations per topic and mode; populations planted exactly (root-finding to 1e-14; checked); 4 population sets per scenario.",
            f"- rates: calls made ÷ opportunities (2 per replicate for the baseline and steering rows, 23 for the S interval rows: 11 model subjects × 2 groups and the baseline, 1 otherwise), "
            "± Monte Carlo standard error with each replicate a cluster of its opportunities (they share its human samples; `affalign.calibration.Tally.rate`). "
            f"Power rows at the stated effect: {eff} in S (below the baseline; bias; steering raises S with the target group), a {2 * eff} bias removed by steering.",
            "- 'bc' is the default two-stage correction (divergence scale, then the square root's own bias on the S scale; `affalign/stats.py` `bias_corrected`); "
            "'bc1' the one-stage divergence-scale correction; 'percentile' the uncorrected percentile interval; all three judge the same replicates.",
            *verdict,
            "",
            *table,
            "",
        ]
    )
    print(text)
    if not args.no_record:
        with (ROOT / "benchmarks" / "RESULTS.md").open("a", encoding="utf-8") as f:
            f.write(text)
    return 0


def judge(tallies: dict[tuple[str, str], Tally], pooled: dict[str, Tally]) -> list[str]:
    """The verdict lines on the default method's false-call rates: which cells are above nominal
    beyond Monte Carlo error (one-sided, unadjusted and Holm-adjusted over every cell judged), and
    Bradley's (1978) criteria (rate at most 1.1x nominal pooled; at most 1.5x in every scenario)."""
    cells: dict[str, tuple[Tally, str, float]] = {}
    for name, _, nominal in CALLS:
        if nominal is None:
            continue
        for sc in SCENARIOS:
            cells[f"{name} ({sc.name})"] = (tallies[(sc.name, "bc")], name, nominal)
        cells[f"{name} (all)"] = (pooled["bc"], name, nominal)
    raw = {key: excess_p_value(t, name, nominal) for key, (t, name, nominal) in cells.items()}
    adjusted = holm(raw)
    above = [f"{k} (p {raw[k]:.3f})" for k in raw if raw[k] < 0.05]
    flagged = [f"{k} (adjusted p {adjusted[k]:.3f})" for k in adjusted if adjusted[k] < 0.05]
    over_point = [k for k, (t, name, nominal) in cells.items() if k.endswith("(all)") and t.rate(name)[0] > nominal]
    stringent = [k for k, (t, name, nominal) in cells.items() if k.endswith("(all)") and t.rate(name)[0] > BRADLEY_STRINGENT * nominal]
    liberal = [k for k, (t, name, nominal) in cells.items() if t.rate(name)[0] > BRADLEY_LIBERAL * nominal]
    return [
        f"- verdict (bc; {len(cells)} cells: {len(cells) // (len(SCENARIOS) + 1)} null calls × {len(SCENARIOS)} scenarios and pooled): "
        f"above nominal beyond Monte Carlo error (one-sided p < 0.05, Holm-adjusted over the {len(cells)} cells): {', '.join(flagged) or 'none'}; "
        f"unadjusted p < 0.05: {', '.join(above) or 'none'}; pooled point rates above nominal: {', '.join(over_point) or 'none'}; "
        f"Bradley's stringent criterion (pooled rate ≤ {BRADLEY_STRINGENT}× nominal): {'met' if not stringent else 'not met by ' + ', '.join(stringent)}; "
        f"liberal criterion (≤ {BRADLEY_LIBERAL}× nominal in every scenario): {'met' if not liberal else 'not met by ' + ', '.join(liberal)}.",
    ]


if __name__ == "__main__":
    raise SystemExit(main())
