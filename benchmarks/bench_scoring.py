"""Scoring throughput of a RoBERTa-base-shaped multi-label classifier (11 labels, random weights).

Throughput does not depend on weight values, so the model is built from a config (no download) and
saved once to a cache dir; a byte-level BPE tokenizer is trained on the synthetic tweets and cached
with it. The tweets are synthetic (fixed seed): Zipf-distributed made-up words plus hashtags,
mentions, links and emoji, ~44 tokens on average (the mean is printed).

Modes
-----
* default: Ray Data end to end — ``TokenizeStage`` CPU tasks feed ``AffectScoreStage`` actors
  (``--naive``: no tokenize stage, the actors tokenize);
* ``--no-ray``: the scorer in one process (``HFClassifierScorer.score`` on batches of
  ``8 x batch_size`` rows, the batch a Ray score actor gets).

It prints one line: rows/s, then the time shares: tokenization (CPU seconds per wall second, summed
over tokenize workers, so it can exceed 100%), host-to-device copies and the forward pass (CUDA
event time per wall second on a GPU, i.e. how busy the GPU was; wall time on CPU). In Ray mode the
figure is rows scored over the steady window (from the first batch a score actor starts to the last
it finishes: actor start-up and model load left out) and the shares are per second of that window;
the end-to-end rate is logged too. ``--tiny``: a small model and few rows, a CPU smoke run of the
code path (never recorded). ``--record`` appends the figure to benchmarks/RESULTS.md with hardware,
date and git commit.

    python benchmarks/bench_scoring.py --tiny --no-ray
    python benchmarks/bench_scoring.py --rows 300000 --batch-size 1024            # GPU, Ray
    python benchmarks/bench_scoring.py --rows 300000 --batch-size 1024 --no-ray
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import logging
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from provenance import git_commit  # noqa: E402  (benchmarks/ is the script directory)

from affalign.schema import EMOTION_LABELS  # noqa: E402
from affalign.scorers.base import ScorerSpec  # noqa: E402

log = logging.getLogger("bench_scoring")
RESULTS = REPO / "benchmarks" / "RESULTS.md"
CACHE = Path(os.environ.get("AFFALIGN_BENCH_CACHE", Path(tempfile.gettempdir()) / "affalign-bench"))

# ---------------------------------------------------------------------------------------------
# Synthetic tweets
# ---------------------------------------------------------------------------------------------

_ONSETS = ["", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "st", "tr", "pl", "gr", "ch", "sh", "th"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "y"]
_CODAS = ["", "", "n", "s", "t", "r", "l", "ck", "ng", "st", "d"]
_EMOJI = ["😂", "😡", "❤️", "🙏", "😭", "🔥", "👏", "🤔", "😷", "💉"]
_PUNCT = [",", ".", "!", "?", "...", ":", "!!"]


def _vocabulary(rng: np.random.Generator, size: int) -> list[str]:
    syll = np.array([o + v + c for o in _ONSETS for v in _VOWELS for c in _CODAS])
    n_syll = rng.choice([1, 2, 2, 3, 3, 4], size=size)
    parts = rng.integers(0, len(syll), size=(size, 4))
    return ["".join(syll[parts[i, : n_syll[i]]]) for i in range(size)]


def synthetic_tweets(n: int, seed: int = 0, mean_words: float = 32.0, vocab_size: int = 20_000) -> list[str]:
    """Deterministic tweet-like texts: Zipf words, word counts ~ Gamma(2) (many short, a long tail,
    capped at 70), with hashtags, mentions, capitals, punctuation, links and emoji."""
    rng = np.random.default_rng(seed)
    words = _vocabulary(np.random.default_rng(1234), vocab_size)  # the same language for every seed
    p = 1.0 / np.arange(1, vocab_size + 1) ** 1.1
    p /= p.sum()
    counts = np.clip(rng.gamma(2.0, mean_words / 2.0, n).astype(int), 1, 70)
    total = int(counts.sum())
    picks = rng.choice(vocab_size, size=total, p=p)
    r = rng.random((total, 2))
    out, pos = [], 0
    for c in counts:
        toks = []
        for j in range(pos, pos + c):
            w = words[picks[j]]
            if r[j, 0] < 0.03:
                w = "#" + w.capitalize()
            elif r[j, 0] < 0.05:
                w = "@" + w + str(int(r[j, 1] * 100))
            elif r[j, 0] < 0.10:
                w = w.capitalize()
            if r[j, 1] < 0.08:
                w += _PUNCT[int(r[j, 1] * 1000) % len(_PUNCT)]
            toks.append(w)
        pos += c
        if rng.random() < 0.2:
            toks.append(f"https://t.co/{words[rng.integers(vocab_size)][:5]}{rng.integers(100)}")
        if rng.random() < 0.3:
            toks.append(_EMOJI[rng.integers(len(_EMOJI))])
        out.append(" ".join(toks))
    return out


# ---------------------------------------------------------------------------------------------
# Model and tokenizer (cached)
# ---------------------------------------------------------------------------------------------


def _publish(tmp: Path, path: Path) -> None:
    if path.exists():  # another run built it meanwhile
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, path)


def build_tokenizer():
    """Byte-level BPE (16k) trained on synthetic tweets, cached; the same for every model shape."""
    from transformers import PreTrainedTokenizerFast

    path = CACHE / "tokenizer-bpe16k-v1"
    if not (path / "tokenizer.json").is_file():
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

        t0 = time.perf_counter()
        tk = Tokenizer(models.BPE())
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        trainer = trainers.BpeTrainer(vocab_size=16_000, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tk.train_from_iterator(synthetic_tweets(30_000, seed=12345), trainer)
        tk.post_processor = processors.RobertaProcessing(("</s>", tk.token_to_id("</s>")), ("<s>", tk.token_to_id("<s>")))
        tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>", model_max_length=512)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tok.save_pretrained(tmp)
        _publish(tmp, path)
        log.info("trained the BPE tokenizer in %.1fs (%s)", time.perf_counter() - t0, path)
    return PreTrainedTokenizerFast.from_pretrained(path)


def build_model_dir(tiny: bool) -> Path:
    """A saved random-weight classifier (11 labels) + the tokenizer, built once per shape."""
    shape = "tiny" if tiny else "roberta-base"
    path = CACHE / f"model-{shape}-v1"
    if (path / "config.json").is_file() and (path / "tokenizer.json").is_file():
        return path
    import torch
    from transformers import RobertaConfig, RobertaForSequenceClassification

    tok = build_tokenizer()
    t0 = time.perf_counter()
    labels = list(EMOTION_LABELS)
    common = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {lab: i for i, lab in enumerate(labels)},
        "problem_type": "multi_label_classification",
        "pad_token_id": tok.pad_token_id,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
    }
    if tiny:
        cfg = RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=514, **common)
    else:  # RoBERTa-base: 12 x 768, 12 heads, 3072, vocab 50265, 514 positions
        cfg = RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5, **common)
    torch.manual_seed(0)
    model = RobertaForSequenceClassification(cfg)
    if not tiny:
        model = model.to(torch.bfloat16)  # half the disk; fp32 on CPU is restored at load
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    _publish(tmp, path)
    log.info("built %s in %.1fs", path, time.perf_counter() - t0)
    return path


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------


def run_no_ray(spec: ScorerSpec, texts: list[str]) -> dict:
    from affalign.scorers.hf_classifier import HFClassifierScorer

    scorer = HFClassifierScorer(spec, ("emotion",))
    scorer.setup()
    from affalign.stages.classify import SUB_BATCHES_PER_BATCH

    per_batch = spec.batch_size * SUB_BATCHES_PER_BATCH
    scorer.score(texts[: min(len(texts), per_batch)])  # warm-up (CUDA context, kernels, allocator)
    if scorer.uses_gpu():
        import torch

        torch.cuda.synchronize()
    scorer.profile = True
    scorer.reset_timings()
    t0 = time.perf_counter()
    for s in range(0, len(texts), per_batch):
        scorer.score(texts[s : s + per_batch])
    wall = time.perf_counter() - t0
    tm = scorer.timings
    return {
        "rows_per_s": len(texts) / wall,
        "wall_s": wall,
        "tokenize": tm["tokenize_s"] / wall,
        "h2d": tm["h2d_s"] / wall,
        "forward": tm["forward_s"] / wall,
        "padding_overhead": tm["padded_tokens"] / max(1, tm["tokens"]) - 1.0,
        "device": "cuda" if scorer.uses_gpu() else "cpu",
    }


def _apply(ds, stage, cluster):
    """The shipped Ray Data adapter, so the benchmark measures the job's own path."""
    from affalign.runtime.adapter import apply_stage

    return apply_stage(ds, stage, cluster)


def run_ray(spec: ScorerSpec, texts: list[str], args) -> dict:
    import pyarrow as pa
    import ray
    import ray.data

    from affalign.stages.classify import SUB_BATCHES_PER_BATCH, AffectScoreStage, TokenizeStage

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        import torch

        ray.init(num_cpus=args.num_cpus or os.cpu_count(), num_gpus=torch.cuda.device_count(), include_dashboard=False, log_to_driver=False)
    cluster = ray.cluster_resources()
    table = pa.table({"tweet_id": [f"t{i}" for i in range(len(texts))], "text": texts, "reason": pa.nulls(len(texts), pa.string())})
    block = max(spec.batch_size * SUB_BATCHES_PER_BATCH, len(texts) // max(8, int(cluster.get("CPU", 1)) * 2))
    blocks = [table.slice(s, block) for s in range(0, len(texts), block)]
    prof = CACHE / f"profile-{uuid.uuid4().hex[:8]}"
    stages = [] if args.naive else [TokenizeStage(spec, profile_dir=str(prof))]
    stages.append(AffectScoreStage(spec, ("emotion",), max_actors=args.actors, profile_dir=str(prof)))
    stages[-1].prefetch()
    ds = ray.data.from_arrow(blocks)
    for st in stages:
        ds = _apply(ds, st, cluster)
    t0 = time.perf_counter()
    rows = 0
    for b in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        rows += b.num_rows
    wall = time.perf_counter() - t0
    assert rows == len(texts), (rows, len(texts))
    score_files = [json.load(open(f)) for f in glob.glob(str(prof / "score-*.json"))]
    tok_files = [json.load(open(f)) for f in glob.glob(str(prof / "tokenize-*.json"))]
    # steady window: from the first batch a score actor started to the last it finished (actor
    # start-up and model load excluded); shares are per second of that window
    window = max(f["last_end"] for f in score_files) - min(f["first_start"] for f in score_files)
    window = window if window > 0 else wall

    def total(files: list[dict], key: str) -> float:
        return float(sum(f.get(key, 0.0) for f in files))

    out = {
        "rows_per_s": total(score_files, "scored_rows") / window,
        "end_to_end_rows_per_s": rows / wall,
        "wall_s": wall,
        "tokenize": (total(tok_files, "tokenize_s") + total(score_files, "tokenize_s")) / window,
        "h2d": total(score_files, "h2d_s") / window,
        "forward": total(score_files, "forward_s") / window,
        "padding_overhead": total(score_files, "padded_tokens") / max(1.0, total(score_files, "tokens")) - 1.0,
        "device": "cuda" if cluster.get("GPU", 0) and spec.device != "cpu" else "cpu",
    }
    ray.shutdown()
    return out


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------


def hardware() -> str:
    cpu = f"{os.cpu_count()} CPU cores ({platform.machine()})"
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}, {cpu}, torch {torch.__version__}"
        return f"no GPU, {cpu}, torch {torch.__version__}"
    except Exception:  # noqa: BLE001
        return cpu


def record(line: str, res: dict, args) -> None:
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\n| date | benchmark | figure | setting | hardware | commit |\n| --- | --- | --- | --- | --- | --- |\n")
    setting = f"{'no-ray' if args.no_ray else ('ray naive' if args.naive else 'ray, tokenize stage')}; rows {args.rows}; batch {args.batch_size}; dtype {args.dtype}; " f"tokenize {res['tokenize']:.0%}, h2d {res['h2d']:.0%}, forward {res['forward']:.0%}"
    with RESULTS.open("a") as f:
        f.write(f"| {dt.date.today().isoformat()} | bench_scoring (RoBERTa-base shape, 11 labels) | {res['rows_per_s']:,.0f} rows/s | {setting} | {hardware()} | {git_commit()} |\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-ray", action="store_true", help="score in this process, no Ray")
    ap.add_argument("--naive", action="store_true", help="Ray mode without the tokenize stage (actors tokenize)")
    ap.add_argument("--tiny", action="store_true", help="tiny model and few rows: a CPU smoke run (not recordable)")
    ap.add_argument("--rows", type=int, default=None, help="rows to score (default 200000; --tiny 2000)")
    ap.add_argument("--batch-size", type=int, default=None, help="scorer sub-batch rows (default 1024; --tiny 64)")
    ap.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA) | float32 | bfloat16 | float16")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--actors", type=int, default=1, help="score actors (they share the GPUs: num_gpus = GPUs / actors)")
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs for the local Ray (default: all)")
    ap.add_argument("--address", default=None, help="an existing Ray cluster")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--record", action="store_true", help=f"append the figure to {RESULTS.relative_to(REPO)}")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    if args.record and args.tiny:
        ap.error("--record: a --tiny smoke run is not a result; run without --tiny")
    args.rows = args.rows or (2_000 if args.tiny else 200_000)
    args.batch_size = args.batch_size or (64 if args.tiny else 1024)
    CACHE.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    texts = synthetic_tweets(args.rows, seed=args.seed)
    model_dir = build_model_dir(args.tiny)
    from affalign.scorers.hf_classifier import HFTokenizer

    sample = texts[: min(len(texts), 20_000)]
    t_tok = time.perf_counter()
    _, lengths = HFTokenizer(str(model_dir), args.max_length).encode_flat(sample)
    tok_rate = len(sample) / (time.perf_counter() - t_tok)
    log.info("data ready in %.1fs: %d texts, mean %.1f tokens (p50 %d, p95 %d, max %d); tokenization alone %.0f rows/s (one process)", time.perf_counter() - t0, len(texts), lengths.mean(), np.percentile(lengths, 50), np.percentile(lengths, 95), lengths.max(), tok_rate)

    gpus = None
    if not args.no_ray and args.actors > 1:
        import torch

        gpus = max(torch.cuda.device_count(), 1) / args.actors if torch.cuda.is_available() else 0.0
    spec = ScorerSpec(scorer="hf", model=str(model_dir), batch_size=args.batch_size, device=args.device, dtype=args.dtype, max_length=args.max_length, num_gpus=gpus)
    res = run_no_ray(spec, texts) if args.no_ray else run_ray(spec, texts, args)
    mode = "no-ray" if args.no_ray else ("ray-naive" if args.naive else "ray")
    extra = f", end-to-end {res['end_to_end_rows_per_s']:,.0f} rows/s incl. startup" if "end_to_end_rows_per_s" in res else ""
    log.info("wall %.1fs%s; padding overhead %.0f%%", res["wall_s"], extra, 100 * res["padding_overhead"])
    line = (
        f"bench_scoring {'tiny' if args.tiny else 'roberta-base'} {mode} {res['device']}: {res['rows_per_s']:,.0f} rows/s "
        f"({args.rows} rows, mean {lengths.mean():.0f} tokens, batch {args.batch_size}; time per wall second: "
        f"tokenize {res['tokenize']:.0%}, h2d {res['h2d']:.1%}, forward {res['forward']:.0%})"
    )
    print(line)
    if args.record:
        record(line, res, args)
        log.info("recorded in %s", RESULTS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
