"""Build the hand-labelled topic-tagging evaluation set (tests/data/tagging_eval/).

Two steps, both deterministic:

* ``sample``: draws the tweets to label from ``../shared/data`` with a fixed seed (the scheme is
  written in tests/data/tagging_eval/README.md) and writes ``sample.jsonl`` (no labels yet) plus
  numbered batches of texts to read under ``--batch-dir``;
* ``merge``: reads the hand-written label files (``labels/*.txt``, one line per tweet:
  ``<id> <CODE> <CODE> ...`` or ``<id> none``; codes are listed in README.md) and writes
  ``covid.jsonl``, ``roe.jsonl`` and ``negatives.jsonl`` with issues, topics and the dev/test split.

The sample is drawn WITHOUT looking at affalign's keyword lists (simple random sampling within each
source file), so recall measured on it is not biased towards what today's keywords already find.

    python scripts/build_tagging_eval.py sample --batch-dir /tmp/tageval_batches
    python scripts/build_tagging_eval.py merge
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
OUT = REPO / "tests" / "data" / "tagging_eval"
SEED = 20261130

# (dataset, source file relative to ../shared/data, how many to draw)
QUOTAS: list[tuple[str, str, int]] = [
    ("covid", "real-tweets/governors_covid_2020_2021.jsonl", 260),
    ("covid", "real-tweets/covid_masks_stance_canada_2020_2021.jsonl", 200),
    ("covid", "real-tweets/covid_senwave_emotions_topical.jsonl", 100),
    ("covid", "real-tweets/covid_canada_users_2020_keyword.jsonl", 80),
    ("roe", "real-tweets/abortion_roe2022_stance_crowd.jsonl", 440),
    ("negative", "semeval2018-ec/train.tsv", 80),
    ("negative", "mftc/ALM.csv", 20),
    ("negative", "mftc/BLM.csv", 20),
    ("negative", "mftc/Baltimore.csv", 20),
    ("negative", "mftc/Davidson.csv", 20),
    ("negative", "mftc/Election.csv", 20),
    ("negative", "mftc/MeToo.csv", 20),
]

COVID_CODES = {
    "E1": ("Education", "COVID-19 online and remote education"),
    "E2": ("Education", "COVID-19 educational institution adaptations"),
    "E3": ("Education", "COVID-19 teaching and learning adjustments"),
    "E4": ("Education", "COVID-19 education disruptions and responses"),
    "E5": ("Education", "COVID-19 early childhood and kindergarten education"),
    "L1": ("Lockdowns", "COVID-19 lockdown measures and regulations"),
    "L2": ("Lockdowns", "COVID-19 lockdown responses and protests"),
    "L3": ("Lockdowns", "COVID-19 business and public service impact"),
    "L4": ("Lockdowns", "COVID-19 community and personal practices"),
    "L5": ("Lockdowns", "COVID-19 government and health policies"),
    "M1": ("Masking", "COVID-19 mask types and features"),
    "M2": ("Masking", "COVID-19 mask usage and compliance"),
    "M3": ("Masking", "COVID-19 mask mandates and policies"),
    "M4": ("Masking", "COVID-19 mask health concerns"),
    "M5": ("Masking", "COVID-19 mask sanitization and maintenance"),
    "O1": ("Origins", "COVID-19 natural origin theories"),
    "O2": ("Origins", "COVID-19 lab leak hypotheses"),
    "O3": ("Origins", "COVID-19 conspiracy theories"),
    "O4": ("Origins", "COVID-19 scientific research and personalities"),
    "V1": ("Vaccines", "COVID-19 vaccine types"),
    "V2": ("Vaccines", "COVID-19 vaccine administration"),
    "V3": ("Vaccines", "COVID-19 vaccine efficacy and safety"),
    "V4": ("Vaccines", "COVID-19 vaccine approval and authorization"),
    "V5": ("Vaccines", "COVID-19 vaccine distribution and accessibility"),
    "V6": ("Vaccines", "COVID-19 vaccine misinformation"),
    "V7": ("Vaccines", "COVID-19 vaccine reporting"),
}
ROE_CODES = {
    "B1": ("Bodily Autonomy", "abortion rights and access"),
    "B2": ("Bodily Autonomy", "reproductive rights and body autonomy"),
    "B3": ("Bodily Autonomy", "pro-choice movement"),
    "B4": ("Bodily Autonomy", "abortion legal and political debate"),
    "B5": ("Bodily Autonomy", "forced practices and coercion in reproduction"),
    "B6": ("Bodily Autonomy", "alternative methods for abortion"),
    "B7": ("Bodily Autonomy", "historical symbols in abortion debates"),
    "X1": ("Exceptions to Abortion Bans", "abortion viability and medical exceptions"),
    "X2": ("Exceptions to Abortion Bans", "legal and ethical exceptions in abortion"),
    "X3": ("Exceptions to Abortion Bans", "parental consent in abortion decisions"),
    "X4": ("Exceptions to Abortion Bans", "adoption as an alternative in abortion discussions"),
    "F1": ("Fetal Rights", "fetal rights debate in abortion"),
    "F2": ("Fetal Rights", "anti-abortion arguments"),
    "F3": ("Fetal Rights", "philosophical and ethical perspectives on abortion"),
    "F4": ("Fetal Rights", "fetal rights advocacy"),
    "F5": ("Fetal Rights", "abortion alternatives and fetal rights"),
    "R1": ("Religion", "religious beliefs and abortion"),
    "R2": ("Religion", "christian denominations and abortion"),
    "R3": ("Religion", "religious practices and abortion"),
    "W1": ("Women's Health", "women's reproductive rights and abortion"),
    "W2": ("Women's Health", "abortion methods and medications"),
    "W3": ("Women's Health", "maternal health and abortion"),
    "W4": ("Women's Health", "healthcare access and effects in abortion"),
    "W5": ("Women's Health", "historical and illegal abortion practices"),
}
CODES = {**COVID_CODES, **ROE_CODES}


def split_of(key: str) -> str:
    """dev or test from a seeded hash of the row's provenance key (stable if rows are added)."""
    h = hashlib.sha256(f"{SEED}:{key}".encode()).digest()
    return "dev" if h[0] % 2 == 0 else "test"


def _rows(rel: str) -> list[dict]:
    """All rows of a source file, each with its 0-based row number and text."""
    path = SHARED / rel
    out: list[dict] = []
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for i, line in enumerate(f):
                r = json.loads(line)
                out.append({"source_row": i, "tweet_id": r.get("tweet_id"), "text": r["text"]})
    elif path.suffix == ".tsv":
        with path.open(encoding="utf-8", newline="") as f:
            for i, r in enumerate(csv.DictReader(f, delimiter="\t")):
                out.append({"source_row": i, "tweet_id": r["ID"], "text": r["Tweet"]})
    else:
        with path.open(encoding="utf-8", newline="") as f:
            for i, r in enumerate(csv.DictReader(f)):
                out.append({"source_row": i, "tweet_id": r["tweet_id"], "text": r["text"]})
    return out


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", re.sub(r"https?://\S+", "", text.lower())).strip()


def sample(batch_dir: Path, batch_size: int) -> None:
    rng = random.Random(SEED)
    seen: set[str] = set()
    rows: list[dict] = []
    prefix = {"covid": "c", "roe": "r", "negative": "n"}
    count = {"covid": 0, "roe": 0, "negative": 0}
    for dataset, rel, n in QUOTAS:
        pool = [r for r in _rows(rel) if r["text"] and r["text"].strip()]
        order = list(range(len(pool)))
        rng.shuffle(order)
        taken = 0
        for idx in order:  # simple random sample without replacement, skipping exact duplicates
            if taken == n:
                break
            r = pool[idx]
            key = _norm(r["text"])
            if key in seen or len(key) < 3:
                continue
            seen.add(key)
            count[dataset] += 1
            rows.append({
                "id": f"{prefix[dataset]}{count[dataset]:04d}",
                "dataset": dataset,
                "source": rel,
                "source_row": r["source_row"],
                "tweet_id": r["tweet_id"],
                "text": r["text"],
                "split": split_of(f"{rel}:{r['source_row']}"),
            })
            taken += 1
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "sample.jsonl").open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    batch_dir.mkdir(parents=True, exist_ok=True)
    for b in range(0, len(rows), batch_size):
        chunk = rows[b : b + batch_size]
        with (batch_dir / f"batch_{b // batch_size:03d}.txt").open("w", encoding="utf-8") as f:
            for r in chunk:
                f.write(f"{r['id']}\t{' '.join(r['text'].split())}\n")
    print(f"{len(rows)} rows: {count}", file=sys.stderr)


def read_labels(label_dir: Path) -> dict[str, list[str]]:
    """id -> codes from every labels/*.txt file; rejects unknown codes and duplicate ids."""
    labels: dict[str, list[str]] = {}
    for path in sorted(label_dir.glob("*.txt")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            rid, *codes = line.split()
            codes = [c.upper() for c in codes]
            if not codes:
                raise SystemExit(f"{path}:{n}: {rid} has no label (write 'none')")
            if codes != ["NONE"]:
                bad = [c for c in codes if c not in CODES]
                if bad:
                    raise SystemExit(f"{path}:{n}: unknown code(s) {bad}")
            if rid in labels:
                raise SystemExit(f"{path}:{n}: {rid} labelled twice")
            labels[rid] = [] if codes == ["NONE"] else codes
    return labels


def merge() -> None:
    rows = [json.loads(x) for x in (OUT / "sample.jsonl").read_text(encoding="utf-8").splitlines()]
    labels = read_labels(OUT / "labels")
    files = {"covid": [], "roe": [], "negative": []}
    missing = 0
    for r in rows:
        if r["id"] not in labels:
            missing += 1
            continue
        codes = labels[r["id"]]
        topics = sorted({CODES[c][1] for c in codes}, key=lambda t: list(c[1] for c in CODES.values()).index(t))
        issues = sorted({CODES[c][0] for c in codes})
        files[r["dataset"]].append({**r, "codes": codes, "issues": issues, "topics": topics})
    for dataset, name in (("covid", "covid.jsonl"), ("roe", "roe.jsonl"), ("negative", "negatives.jsonl")):
        with (OUT / name).open("w", encoding="utf-8") as f:
            for r in files[dataset]:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print({k: len(v) for k, v in files.items()}, f"unlabelled: {missing}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample")
    s.add_argument("--batch-dir", type=Path, default=Path("/tmp/tageval_batches"))
    s.add_argument("--batch-size", type=int, default=60)
    sub.add_parser("merge")
    args = ap.parse_args()
    if args.cmd == "sample":
        sample(args.batch_dir, args.batch_size)
    else:
        merge()


if __name__ == "__main__":
    main()
