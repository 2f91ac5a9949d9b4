"""Generation throughput (output tokens/s) of HFBackend at the paper's settings.

A Llama-2-7B-shaped model with random weights is built from its config on the GPU (no download)
and driven through :class:`affalign.backends.hf.HFBackend` -- the same batching, left padding,
per-row sampling and static-cache path that jobs use -- with 24-token prompts, 96 new tokens,
temperature 0.9 and top_p 0.9 (Appendix A.2). Random weights almost never sample EOS, so nearly
every row runs the full 96 tokens; the figure counts the tokens actually generated.

    python benchmarks/bench_generation.py                       # batch 64, static cache on
    python benchmarks/bench_generation.py --batch-size 128 --no-static-cache
    python benchmarks/bench_generation.py --record              # also append a row to RESULTS.md
    python benchmarks/bench_generation.py --tiny                # CPU smoke test of this script

It needs a CUDA GPU; on CPU it refuses unless ``--tiny`` (a tiny config, to check the script
runs; its figure means nothing and cannot be recorded).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from provenance import git_commit  # noqa: E402  (benchmarks/ is the script directory)

RESULTS = REPO / "benchmarks" / "RESULTS.md"
# meta-llama/Llama-2-7b-hf's config.json
LLAMA2_7B = dict(
    vocab_size=32000,
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    max_position_embeddings=4096,
    rms_norm_eps=1e-5,
)
TINY = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512)
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]


def word_tokenizer(vocab_size: int):
    """A word-level tokenizer over ``vocab_size`` tokens: "w<i>" words map to one token each."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS)}
    for i in range(vocab_size - len(SPECIALS)):
        vocab[f"w{i}"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def hardware(device: str) -> str:
    import torch

    if device == "cuda":
        n = torch.cuda.device_count()
        return f"{torch.cuda.get_device_name(0)}" + (f" x{n}" if n > 1 else "")
    return f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def record(row: dict[str, str]) -> None:
    cols = ["date", "commit", "hardware", "model", "batch", "static cache", "prompt/new tokens", "output tokens/s"]
    new = not RESULTS.exists()
    with RESULTS.open("a", encoding="utf-8") as f:
        if new:
            f.write("# Benchmark results\n\nRows are appended by the benchmark scripts with `--record`.\n\n")
        if new or "| date | commit |" not in RESULTS.read_text("utf-8"):
            f.write("## bench_generation.py\n\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n")
        f.write("| " + " | ".join(row[c] for c in cols) + " |\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=4, help="timed batches (after one warm-up batch)")
    p.add_argument("--static-cache", action=argparse.BooleanOptionalAction, default=True, help="static KV cache + compiled decode")
    p.add_argument("--prompt-tokens", type=int, default=24)
    p.add_argument("--new-tokens", type=int, default=96)
    p.add_argument("--tiny", action="store_true", help="tiny config (runs on CPU; checks the script only)")
    p.add_argument("--record", action="store_true", help=f"append the result to {RESULTS.relative_to(REPO)}")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from affalign.backends.base import GenerationParams, ModelSpec
    from affalign.backends.hf import HFBackend

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.tiny:
        print("bench_generation: needs a CUDA GPU (the 7B-shaped model is not meaningful on CPU); use --tiny to check the script runs", file=sys.stderr)
        return 2
    if args.record and args.tiny:
        print("bench_generation: --tiny figures are not recorded", file=sys.stderr)
        return 2

    from transformers import LlamaConfig, LlamaForCausalLM

    shape = TINY if args.tiny else LLAMA2_7B
    tok = word_tokenizer(shape["vocab_size"])
    config = LlamaConfig(**shape, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    t0 = time.perf_counter()
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.eval()
    build_s = time.perf_counter() - t0

    spec = ModelSpec(
        id="llama-2-7b-shape-random" if not args.tiny else "tiny-llama-random",
        kind="base",
        dtype="auto",
        batch_size=args.batch_size,
        options={"device": device, "static_cache": bool(args.static_cache)},
    )
    backend = HFBackend(spec)
    backend.device = device
    backend.attach(model, tok)
    params = GenerationParams(max_new_tokens=args.new_tokens, temperature=0.9, top_p=0.9, do_sample=True, seed=0)

    rng = np.random.default_rng(0)
    n_words = shape["vocab_size"] - len(SPECIALS)

    def prompts(n: int) -> list[str]:
        return [" ".join(f"w{i}" for i in rng.integers(0, n_words, size=args.prompt_tokens)) for _ in range(n)]

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    backend.generate(prompts(args.batch_size), params, seeds=list(range(args.batch_size)))  # warm-up (compiles)
    sync()
    warm_s = time.perf_counter() - t0

    batch = prompts(args.batch_size * args.batches)
    sync()
    t0 = time.perf_counter()
    gens = backend.generate(batch, params, seeds=list(range(len(batch))))
    sync()
    elapsed = time.perf_counter() - t0
    out_tokens = sum(g.completion_tokens for g in gens)
    prompt_tokens = sum(g.prompt_tokens for g in gens) / len(gens)
    rate = out_tokens / elapsed

    hw = hardware(device)
    print(
        f"{rate:.1f} output tokens/s  ({spec.id}, {hw}, batch {args.batch_size}, static cache {'on' if backend.static_cache else 'off'}, "
        f"{prompt_tokens:.0f}-token prompts, {out_tokens / len(gens):.1f} new tokens/row, {len(gens)} rows in {elapsed:.2f}s; "
        f"build {build_s:.1f}s, warm-up {warm_s:.1f}s)"
    )
    if args.record:
        record(
            {
                "date": datetime.date.today().isoformat(),
                "commit": git_commit(),
                "hardware": hw,
                "model": spec.id,
                "batch": str(args.batch_size),
                "static cache": "on" if backend.static_cache else "off",
                "prompt/new tokens": f"{args.prompt_tokens}/{args.new_tokens}",
                "output tokens/s": f"{rate:.1f}",
            }
        )
        print(f"recorded in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
