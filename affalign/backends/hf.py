"""Generation with Hugging Face ``transformers``: causal LMs, seq2seq (T5) models and GGUF files.

Model options (``ModelSpec.options``; all optional):

``device``               ``auto`` (CUDA when available, else CPU) | ``cpu`` | ``cuda`` | ``cuda:N``
                         (in a Ray GPU actor ``cuda:N`` must be a GPU Ray assigned it; see
                         :func:`affalign.devices.resolve_device`). On CUDA the weights load straight
                         onto the GPU (``device_map``, :func:`affalign.devices.load_kwargs`).
``device_map``           passed to ``from_pretrained`` (``auto`` shards a model over the visible GPUs;
                         needs the ``accelerate`` package)
``revision``             hub revision (also part of the plan's content key)
``local_files_only``     never reach the hub (default: the ``HF_HUB_OFFLINE`` environment variable)
``trust_remote_code``    default false
``attn_implementation``  passed to ``from_pretrained`` (e.g. ``sdpa``)
``seq2seq``              encoder-decoder model (default: the checkpoint's config says)
``static_cache``         static KV cache + compiled decode step (default: on for causal models on CUDA,
                         off otherwise). Batches are padded to ``batch_buckets`` rows and prompts to a
                         multiple of ``pad_to_multiple_of`` tokens so that compiled graphs are reused.
``batch_buckets``        row counts batches are padded to with the static cache (default: powers of
                         two up to ``batch_size``, and ``batch_size``)
``pad_to_multiple_of``   prompt length padding (default 32 with the static cache, else none)
``chat_template``        wrap prompts of instruct models in the tokenizer's chat template (default true)
``prompt_format``        a ``{prompt}`` format string used instead of a chat template (Dolly, Vicuna)
``stop_tokens``          extra tokens that end a response like EOS (Dolly's ``### End``)
``auto_batch_size``      on CUDA, rows per batch from the GPU memory free after loading instead of
                         ``batch_size`` (:func:`affalign.devices.generation_batch_size`); set by
                         :mod:`affalign.backends.models` when neither the job nor the registry
                         gives a batch size
``top_k``                top-k before top-p (default: the checkpoint's generation config, else 50 --
                         the transformers default that was in effect in the paper's HF runs, which
                         set only temperature and top_p)

Sampling and reproducibility
----------------------------
Sampling is done here, not by ``generate``'s global-RNG ``multinomial``: each row gets its own
stream of uniforms from ``numpy`` seeded by ``(params.seed, row seed)``, and the logits processor
:class:`RowSampler` turns step *t*'s uniform into a token by inverse-CDF sampling of the
temperature / top-k / top-p distribution (``generate`` then just takes that token). So a row's
random draws do not depend on which rows share its batch, on the batch size, or on padding rows.

What stays non-deterministic: the logits themselves can differ in the last bits with the batch
shape (matmul kernels pick different reduction orders; more so in bfloat16 on GPU, with the static
cache's padded shapes, and across GPU models or library versions), and a tiny difference can flip a
draw that falls on a boundary between two tokens. On CPU in float32 with the same batches, results
are bit-for-bit reproducible; across batch compositions they match almost always, not always.
"""

from __future__ import annotations

import logging
import os
from typing import Any, ClassVar

import numpy as np

from affalign import devices
from affalign.backends.base import Generation, GenerationBackend, GenerationParams, ModelSpec
from affalign.errors import ConfigError
from affalign.registry import OptionTypes

log = logging.getLogger("affalign")

DEFAULT_TOP_K = 50  # transformers' GenerationConfig default
# The oldest transformers this backend runs on, from what it uses: `dtype=` in from_pretrained
# (4.56; before, it is ignored and models load in float32), load_gguf_checkpoint(torch_dtype=)
# (5.x) and GenerationConfig.max_cache_len (5.13.0; before, the attribute is silently ignored and
# the static cache is reallocated and its decode step recompiled whenever a batch needs more room).
MIN_TRANSFORMERS = (5, 13)
# Prompt tokens assumed when sizing batches from free memory (the paper's prompts, chat template
# included, are well under this; a longer prompt only makes that batch's cache larger).
PROMPT_TOKENS = 256


class ModelLoadError(ConfigError):
    """A model (or its tokenizer) could not be loaded."""


def _torch():
    import torch

    return torch


def check_transformers(version: str | None = None) -> None:
    """Refuse a transformers older than :data:`MIN_TRANSFORMERS` (it would load models in float32)."""
    if version is None:
        import transformers

        version = transformers.__version__
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    if tuple(parts) < MIN_TRANSFORMERS:
        want = ".".join(map(str, MIN_TRANSFORMERS))
        raise ConfigError(f"transformers {version} is too old for the hf backend: it needs >= {want} (pip install -U 'transformers>={want}')")


def resolve_device(option: str | None) -> str:
    """See :func:`affalign.devices.resolve_device`."""
    return devices.resolve_device(option, "options.device")


def resolve_dtype(name: str, device: str):
    """``auto``: bfloat16 on a GPU that supports it (else float16), float32 on CPU; else the named torch dtype."""
    torch = _torch()
    if name in (None, "", "auto"):
        return devices.auto_dtype(device, "dtype auto")
    try:
        dtype = getattr(torch, name)
    except AttributeError:
        raise ConfigError(f"unknown dtype {name!r}") from None
    if not isinstance(dtype, torch.dtype):
        raise ConfigError(f"unknown dtype {name!r}")
    return dtype


def row_uniforms(seed: int, row_seeds: list[int], steps: int) -> np.ndarray:
    """(rows, steps) uniforms in [0, 1); row i's stream depends only on (seed, row_seeds[i])."""
    out = np.empty((len(row_seeds), steps), dtype=np.float64)
    for i, rs in enumerate(row_seeds):
        ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, int(rs) & 0xFFFFFFFFFFFFFFFF])
        out[i] = np.random.default_rng(ss).random(steps)
    return out


class RowSampler:
    """Logits processor: temperature, top-k, top-p, then inverse-CDF sampling with per-row uniforms.

    Returns scores that are 0 at the chosen token and -inf elsewhere, so greedy ``generate`` picks
    it. Everything stays on the device (no host synchronisation per step).
    """

    def __init__(self, uniforms, temperature: float, top_k: int, top_p: float):
        self.uniforms = uniforms  # (batch, max_new_tokens) float32 tensor on the model's device
        self.temperature = float(temperature)
        self.top_k = int(top_k or 0)
        self.top_p = float(top_p)
        self.step = 0

    def __call__(self, input_ids, scores):
        torch = _torch()
        u = self.uniforms[:, min(self.step, self.uniforms.shape[1] - 1)]
        self.step += 1
        logits = scores.float() / self.temperature
        vocab = logits.shape[-1]
        k = self.top_k if 0 < self.top_k < vocab else vocab
        top_logits, top_idx = torch.topk(logits, k, dim=-1, sorted=True)
        probs = torch.softmax(top_logits, dim=-1)
        cum = probs.cumsum(-1)
        # top-p: keep the smallest prefix whose mass reaches top_p (the first token always stays).
        keep = (cum - probs) < self.top_p
        probs = probs * keep
        cum = probs.cumsum(-1)
        n_keep = keep.sum(-1, keepdim=True)
        target = (u.to(cum.dtype)[:, None] * cum[:, -1:]).contiguous()
        pos = torch.searchsorted(cum.contiguous(), target, right=True)
        pos = torch.minimum(pos, n_keep - 1)
        token = top_idx.gather(-1, pos)
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(-1, token, 0.0)
        return out


def _default_buckets(batch_size: int) -> list[int]:
    buckets = [1]
    while buckets[-1] < batch_size:
        buckets.append(min(buckets[-1] * 2, batch_size))
    return buckets


def bucket_for(n: int, buckets: list[int]) -> int:
    for b in sorted(buckets):
        if b >= n:
            return b
    return n


class HFBackend(GenerationBackend):
    """A transformers model and tokenizer in one process (one Ray actor per GPU)."""

    name = "hf"
    # the options of the module docstring
    option_keys: ClassVar[OptionTypes] = {
        "device": str, "device_map": (str, dict), "revision": str, "local_files_only": bool, "trust_remote_code": bool,
        "attn_implementation": str, "seq2seq": bool, "static_cache": bool, "batch_buckets": list, "pad_to_multiple_of": int,
        "chat_template": bool, "prompt_format": str, "stop_tokens": list, "top_k": int,
    }  # fmt: skip

    def __init__(self, model: ModelSpec):
        super().__init__(model)
        self.options = dict(model.options or {})
        self.hf_model: Any = None
        self.tokenizer: Any = None
        self.device: str | None = None
        self.seq2seq = bool(self.options.get("seq2seq", False))
        self.static_cache = False
        self._max_cache_len = 0
        self._checkpoint_top_k: int | None = None
        self._placed = False  # from_pretrained put the weights on self.device (device_map)
        # rows per generate() call: the spec's, or sized from free GPU memory after loading when
        # the job gave none (options.auto_batch_size, set by backends.models)
        self.batch_size = max(1, int(model.batch_size))

    # ----------------------------------------------------------------------------------------
    # Loading

    def uses_gpu(self) -> bool:
        if self.options.get("device_map"):
            return True
        device = str(self.options.get("device") or "auto").lower()
        if device == "auto":
            return _torch().cuda.is_available()
        return device.startswith("cuda")

    @property
    def path(self) -> str:
        return self.model.path or self.model.id

    def _fail(self, what: str, exc: BaseException) -> ModelLoadError:
        hint = ""
        if not self.path.lower().endswith(".gguf") and not os.path.isdir(self.path):
            hint = (
                " It is not a local directory, so it must be in the Hugging Face cache (HF_HOME) or downloadable: "
                "download it on a machine with network access, or point the model's path at a local checkpoint."
            )
        detail = str(exc).strip().rstrip(".")
        return ModelLoadError(f"model {self.model.id!r}: cannot load the {what} from {self.path!r}: {type(exc).__name__}: {detail}.{hint}")

    # what a generation replica loads from a hub snapshot (no other formats, no extra checkpoints)
    PREFETCH_PATTERNS = ("*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.py")

    def prefetch(self) -> None:
        """Download a hub model into the local HF cache once, on the driver, before replicas start.

        A local directory or ``.gguf`` file needs nothing. Inside a GPU actor the same download
        would count against Ray Data's no-progress guard and run once per replica; here a missing
        model or a failed download stops the job before any actor starts, naming the model.
        """
        path = self.path
        if path.lower().endswith(".gguf") or os.path.isdir(os.path.expanduser(path)) or path.startswith((".", "/", "~")):
            return
        from huggingface_hub import snapshot_download

        hub = self._hub_kwargs()
        try:
            snapshot_download(
                path,
                revision=hub.get("revision"),
                local_files_only=bool(hub.get("local_files_only")),
                allow_patterns=list(self.PREFETCH_PATTERNS),
            )
        except Exception as exc:  # noqa: BLE001 - network errors, unknown or gated repo, not cached offline
            raise self._fail("weights (prefetch on the driver)", exc) from exc

    def setup(self) -> None:
        if self.hf_model is not None:
            return
        check_transformers()
        self.device = resolve_device(self.options.get("device"))
        dtype = resolve_dtype(self.model.dtype, self.device)
        if self.path.lower().endswith(".gguf"):
            model, tokenizer = self._load_gguf(dtype)
        else:
            model, tokenizer = self._load_pretrained(dtype)
        if not (self.options.get("device_map") or self._placed):
            model.to(self.device)
        model.eval()
        self.attach(model, tokenizer)
        if self.options.get("auto_batch_size") and self.device.startswith("cuda"):
            self.batch_size = self._batch_from_free_memory(dtype)

    def _batch_from_free_memory(self, dtype) -> int:
        """Rows per batch from the GPU memory free now that the weights are loaded."""
        torch = _torch()
        free, _total = torch.cuda.mem_get_info(torch.device(self.device))
        config = self.hf_model.config
        kv = devices.kv_bytes_per_token(config, torch.tensor([], dtype=dtype).element_size())
        seq_len = PROMPT_TOKENS + int(self.model.params.max_new_tokens)
        vocab = int(getattr(config, "vocab_size", 0) or len(self.tokenizer))
        rows = devices.generation_batch_size(free, kv, seq_len, vocab)
        log.info("model %s: batch size %d from %.1f GiB of free GPU memory", self.model.id, rows, free / 2**30)
        return rows

    def _hub_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.options.get("revision"):
            kwargs["revision"] = self.options["revision"]
        local_only = self.options.get("local_files_only")
        if local_only is None:
            local_only = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        if local_only:
            kwargs["local_files_only"] = True
        if self.options.get("trust_remote_code"):
            kwargs["trust_remote_code"] = True
        return kwargs

    def _load_pretrained(self, dtype):
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        hub = self._hub_kwargs()
        try:
            config = AutoConfig.from_pretrained(self.path, **hub)
        except Exception as e:  # noqa: BLE001 - any loading failure becomes one clear error
            raise self._fail("config", e) from e
        self.seq2seq = bool(self.options.get("seq2seq", getattr(config, "is_encoder_decoder", False)))
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.path, **hub)
        except Exception as e:  # noqa: BLE001
            raise self._fail("tokenizer", e) from e
        kwargs: dict[str, Any] = dict(hub, dtype=dtype)
        if self.options.get("attn_implementation"):
            kwargs["attn_implementation"] = self.options["attn_implementation"]
        # a model on one GPU: load its weights straight there (no copy through host RAM)
        placement = devices.load_kwargs(self.device or "cpu")
        kwargs.update(placement)
        if self.options.get("device_map"):
            from transformers.utils import is_accelerate_available

            if not is_accelerate_available():
                raise ConfigError(f"model {self.model.id!r}: options.device_map needs the 'accelerate' package (pip install accelerate)")
            kwargs["device_map"] = self.options["device_map"]
        cls = AutoModelForSeq2SeqLM if self.seq2seq else AutoModelForCausalLM
        try:
            model = cls.from_pretrained(self.path, **kwargs)
        except Exception as e:  # noqa: BLE001
            raise self._fail("weights", e) from e
        self._placed = "device_map" in placement
        return model, tokenizer

    def _load_gguf(self, dtype):
        """A GGUF file: tokenizer and config from its metadata, weights dequantized into a fresh model.

        ``from_pretrained(dir, gguf_file=...)`` does the same but insists on the ``accelerate``
        package (transformers 5.x); this path needs only ``gguf``.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not os.path.isfile(self.path):
            raise ModelLoadError(f"model {self.model.id!r}: GGUF file {self.path!r} does not exist")
        cache = gguf_cache_dir(self.path, dtype)
        if cache is not None and os.path.exists(os.path.join(cache, COMPLETE)):
            try:
                tokenizer = AutoTokenizer.from_pretrained(cache)
                model = AutoModelForCausalLM.from_pretrained(cache, dtype=dtype)
                self.seq2seq = False
                return model, tokenizer
            except Exception:  # noqa: BLE001 - a damaged cache entry: convert the GGUF again
                log.warning("the converted copy of %s in %s is unreadable; converting the GGUF file again", self.path, cache)
        model, tokenizer = self._convert_gguf(dtype)
        if cache is not None:
            _save_converted(model, tokenizer, cache)
        return model, tokenizer

    def _convert_gguf(self, dtype):
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

        folder, fname = os.path.split(os.path.abspath(self.path))
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
            config = AutoConfig.from_pretrained(folder, gguf_file=fname)
        except Exception as e:  # noqa: BLE001
            raise self._fail("GGUF metadata", e) from e
        if getattr(config, "is_encoder_decoder", False):
            raise ModelLoadError(f"model {self.model.id!r}: encoder-decoder GGUF files are not supported")
        self.seq2seq = False
        try:
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
            loaded = load_gguf_checkpoint(self.path, return_tensors=True, model_to_load=model, torch_dtype=dtype)
            missing, unexpected = model.load_state_dict(loaded["tensors"], strict=False)
        except Exception as e:  # noqa: BLE001
            raise self._fail("GGUF weights", e) from e
        tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
        bad_missing = [k for k in missing if k not in tied]
        if bad_missing or unexpected:
            raise ModelLoadError(f"model {self.model.id!r}: GGUF weights do not fit the model: missing {bad_missing[:5]}, unexpected {list(unexpected)[:5]}")
        if tied and hasattr(model, "tie_weights"):
            model.tie_weights()
        return model.to(dtype), tokenizer

    def attach(self, model: Any, tokenizer: Any) -> None:
        """Use an already loaded model and tokenizer (``setup`` calls this; so do tests and benchmarks)."""
        torch = _torch()
        self.hf_model = model
        self.tokenizer = tokenizer
        self.seq2seq = bool(self.options.get("seq2seq", getattr(model.config, "is_encoder_decoder", False)))
        if self.device is None:
            self.device = str(next(model.parameters()).device)
        if not self.seq2seq:
            tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token is None:
                raise ModelLoadError(f"model {self.model.id!r}: tokenizer has neither a pad nor an eos token")
            tokenizer.pad_token = tokenizer.eos_token
        self._neutralize_sampling()
        on_cuda = self.device.startswith("cuda") or bool(self.options.get("device_map"))
        self.static_cache = bool(self.options.get("static_cache", on_cuda and not self.seq2seq))
        if on_cuda:
            torch.backends.cuda.matmul.allow_tf32 = True

    # Sampling-only fields of GenerationConfig, with the values transformers treats as "unset".
    # Sampling is RowSampler's job; generate() runs greedy. transformers fills every field left
    # None in the config passed to generate() from the model's own generation config (a chat
    # checkpoint's temperature 0.6, top_p 0.9 ...), then warns that they do nothing without
    # do_sample; so the model's config is cleared once here and each call sets neutral values.
    _NEUTRAL_SAMPLING: dict[str, Any] = {"temperature": 1.0, "top_p": 1.0, "top_k": 50, "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0}
    _UNSET_SAMPLING = ("min_p", "top_h")  # no neutral value but None

    def _neutralize_sampling(self) -> None:
        gc = getattr(self.hf_model, "generation_config", None)
        # the checkpoint's top_k is the default of options.top_k (read before it is cleared)
        self._checkpoint_top_k = getattr(gc, "top_k", None) if gc is not None else None
        if gc is None:
            return
        gc.do_sample = False
        for name, value in self._NEUTRAL_SAMPLING.items():
            if hasattr(gc, name):
                setattr(gc, name, value)
        for name in self._UNSET_SAMPLING:
            if hasattr(gc, name):
                setattr(gc, name, None)

    # ----------------------------------------------------------------------------------------
    # Generation

    def _eos_ids(self) -> list[int]:
        ids: set[int] = set()
        for src in (self.hf_model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            if src is None:
                continue
            ids.update(src if isinstance(src, (list, tuple)) else [src])
        for token in self.options.get("stop_tokens") or []:
            tid = self.tokenizer.convert_tokens_to_ids(token)
            if tid is None or tid == self.tokenizer.unk_token_id:
                raise ConfigError(f"model {self.model.id!r}: stop token {token!r} is not one token of its vocabulary")
            ids.add(tid)
        return sorted(int(i) for i in ids)

    def format_prompt(self, prompt: str) -> tuple[str, bool]:
        """The text fed to the model and whether it already holds the special tokens."""
        fmt = self.options.get("prompt_format")
        if fmt:
            return str(fmt).replace("{prompt}", prompt), False
        if self.model.kind == "instruct" and self.options.get("chat_template", True) and getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
            return text, True
        return prompt, False

    def _input_device(self):
        if self.options.get("device_map"):
            return self.hf_model.get_input_embeddings().weight.device
        return self.device

    def generate(self, prompts: list[str], params: GenerationParams, seeds: list[int] | None = None) -> list[Generation]:
        """Generate for ``prompts`` in batches of ``batch_size``; ``seeds`` are the per-row seeds.

        Without ``seeds`` a row's seed is its position in ``prompts`` (then results depend on the
        call's composition).
        """
        if self.hf_model is None:
            self.setup()
        if seeds is None:
            seeds = list(range(len(prompts)))
        if len(seeds) != len(prompts):
            raise ValueError("one seed per prompt")
        out: list[Generation] = []
        bs = self.batch_size
        for start in range(0, len(prompts), bs):
            out.extend(self._generate_batch(prompts[start : start + bs], params, seeds[start : start + bs]))
        return out

    def _generate_batch(self, prompts: list[str], params: GenerationParams, seeds: list[int]) -> list[Generation]:
        import copy

        torch = _torch()
        n = len(prompts)
        formatted = [self.format_prompt(p) for p in prompts]
        # Inputs that already carry special tokens (chat template) are not given a second BOS.
        add_special = not all(has for _, has in formatted)
        texts = [t for t, _ in formatted]
        seeds = list(seeds)
        pad_multiple = self.options.get("pad_to_multiple_of", 32 if self.static_cache else None)
        if self.static_cache:
            size = bucket_for(n, list(self.options.get("batch_buckets") or _default_buckets(self.batch_size)))
            texts += [texts[-1]] * (size - n)
            seeds += [0] * (size - n)
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=add_special, pad_to_multiple_of=pad_multiple)
        device = self._input_device()
        enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        prompt_tokens = enc["attention_mask"].sum(-1).tolist()
        input_len = enc["input_ids"].shape[1]

        gen_cfg = copy.deepcopy(self.hf_model.generation_config)
        eos_ids = self._eos_ids()
        gen_cfg.max_new_tokens = int(params.max_new_tokens)
        gen_cfg.max_length = None
        gen_cfg.min_new_tokens = None
        gen_cfg.min_length = 0
        gen_cfg.num_beams = 1
        gen_cfg.num_return_sequences = 1
        gen_cfg.do_sample = False  # RowSampler has already drawn the token: greedy takes it
        for name, value in self._NEUTRAL_SAMPLING.items():  # not None: None is refilled, then warned about
            if hasattr(gen_cfg, name):
                setattr(gen_cfg, name, value)
        gen_cfg.pad_token_id = self.tokenizer.pad_token_id
        gen_cfg.eos_token_id = eos_ids or None
        if self.static_cache:
            gen_cfg.cache_implementation = "static"
            # One cache size for every call so far (it only grows): later batches with shorter
            # prompts reuse the allocated cache and the compiled graphs instead of recompiling.
            self._max_cache_len = max(self._max_cache_len, input_len + int(params.max_new_tokens))
            gen_cfg.max_cache_len = self._max_cache_len
        processors = None
        if params.do_sample:
            from transformers import LogitsProcessorList

            top_k = self.options.get("top_k")
            if top_k is None:
                top_k = self._checkpoint_top_k or DEFAULT_TOP_K
            uniforms = torch.as_tensor(row_uniforms(params.seed, seeds, params.max_new_tokens), dtype=torch.float32, device=device)
            processors = LogitsProcessorList([RowSampler(uniforms, params.temperature, int(top_k), params.top_p)])
        with torch.inference_mode():
            sequences = self.hf_model.generate(**enc, generation_config=gen_cfg, logits_processor=processors)
        generated = sequences[:, 1:] if self.seq2seq else sequences[:, input_len:]
        generated = generated[:n].tolist()

        eos_set = set(eos_ids)
        results: list[Generation] = []
        kept: list[list[int]] = []
        meta: list[tuple[str, int]] = []
        for row in generated:
            stop_at = next((i for i, tok in enumerate(row) if tok in eos_set), None)
            if stop_at is None:
                kept.append(row)
                meta.append(("length", len(row)))
            else:
                kept.append(row[:stop_at])
                meta.append(("stop", stop_at + 1))  # the EOS token counts as generated
        decoded = self.tokenizer.batch_decode(kept, skip_special_tokens=True)
        for text, (reason, count), ptoks in zip(decoded, meta, prompt_tokens[:n], strict=True):
            results.append(Generation(text=text.strip(), finish_reason=reason, prompt_tokens=int(ptoks), completion_tokens=int(count)))
        return results


COMPLETE = "_COMPLETE"


def gguf_cache_dir(path: str, dtype: Any) -> str | None:
    """Where the converted (dequantized) copy of a GGUF file is kept, keyed by file and dtype.

    Converting a GGUF file reads its metadata three times and takes tens of seconds even for a
    135M model; a saved copy loads in about a second. ``AFFALIGN_CACHE=off`` disables the cache.
    """
    root = os.environ.get("AFFALIGN_CACHE")
    if root == "off":
        return None
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "affalign")
    try:
        st = os.stat(path)
    except OSError:
        return None
    import hashlib

    key = hashlib.sha256(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{dtype}".encode()).hexdigest()[:16]
    return os.path.join(root, "gguf", key)


def _save_converted(model: Any, tokenizer: Any, cache: str) -> None:
    """Save a converted model atomically (a temp dir renamed into place); failures only warn."""
    import shutil
    import uuid

    tmp = f"{cache}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        with open(os.path.join(tmp, COMPLETE), "w") as f:
            f.write("ok\n")
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        os.rename(tmp, cache)
    except OSError as exc:  # e.g. a read-only home, or another process won the rename
        log.info("not caching the converted GGUF model in %s: %s", cache, exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
