"""The end-of-run console summary: where the outputs are and the alignment table."""

from __future__ import annotations

from typing import Any


def _outputs(doc: dict[str, Any]) -> list[str]:
    names = ["distributions.parquet", "alignment.parquet", "summary.csv", "run.json", "rejects/", "scores/"]
    if doc.get("generation"):
        names.append("generations/")
    if doc.get("ideology"):
        names.append("ideology/")
    return names


def format_summary(doc: dict[str, Any], out: str) -> str:
    rows = doc.get("rows", {})
    lines = [
        "",
        f"affalign run {doc.get('job')} ({doc.get('dataset')}): {doc.get('status')}",
        f"  rows in {rows.get('in', 0):,}  kept {rows.get('kept', 0):,}  rejected {rows.get('rejected', 0):,}  filtered {rows.get('filtered', 0):,}",
        f"  topics kept {len(doc.get('topics', {}).get('kept', []))}, dropped {len(doc.get('topics', {}).get('dropped', []))}",
        f"  outputs: {out.rstrip('/')}/ ({', '.join(_outputs(doc))})",
    ]
    if doc.get("report"):
        lines.append(f"  report: {doc['report']}")
    summary = [r for r in doc.get("summary", []) if r.get("metric") == "alignment"]
    if summary:
        width = max(len(r["subject"]) for r in summary)
        twidth = max(len(r["target"]) for r in summary)
        lines.append("")
        lines.append(f"  {'dimension':<9}  {'subject':<{width}}  {'target':<{twidth}}  {'S mean':>7}  {'S std':>6}  topics")
        for r in summary:
            lines.append(
                f"  {r['dimension']:<9}  {r['subject']:<{width}}  {r['target']:<{twidth}}  {r['score_mean']:>7.4f}  {r['score_std']:>6.4f}  {r['n_topics']:>6}"
            )
    other = [r for r in doc.get("summary", []) if r.get("metric") in ("bias", "steering")]
    if other:
        lines.append("")
        lines.append("  bias (S with first group - S with second) and steering (S steered - S default):")
        for r in other:
            lines.append(f"  {r['metric']:<8} {r['dimension']:<7} {r['subject']}  vs {r['target']}: {r['score_mean']:+.4f} ± {r['score_std']:.4f} over {r['n_topics']} topics")
    return "\n".join(lines)
