"""The generation interface every backend implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from affalign.errors import ConfigError
from affalign.registry import OptionTypes, Registry


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings (the paper's: do_sample, T=0.9, top_p=0.9, at most 96 new tokens)."""

    max_new_tokens: int = 96
    temperature: float = 0.9
    top_p: float = 0.9
    do_sample: bool = True
    seed: int = 0


@dataclass
class Generation:
    """One response: its text (prompt stripped), why it stopped and its token counts."""

    text: str | None
    finish_reason: str  # stop | length | error | budget
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A model to generate with: its id, backend, kind and backend options."""

    id: str  # the name used in subjects, e.g. "smollm2-135m-instruct" or "gpt-3.5-turbo-1106"
    backend: str = "hf"  # hf | openai
    kind: str = "instruct"  # base | instruct
    path: str | None = None  # hub id, local dir or gguf file (hf); API model name (openai)
    dtype: str = "auto"
    batch_size: int = 64
    params: GenerationParams = field(default_factory=GenerationParams)
    options: dict[str, Any] = field(default_factory=dict)


# model options read by the job itself, whatever the backend (generation pass and placement):
# replicas, GPUs per replica, throttling, CPU consent, size hint; the rest are set by affalign
JOB_MODEL_OPTIONS: dict[str, Any] = {
    "gpus_per_replica": float, "max_replicas": int, "batch_delay_s": float, "allow_cpu": bool, "params_b": float,
    "budget": object,  # a limits mapping, a shared budget's name or a keeper handle (backends.budget_keeper checks it)
    "path_ref": str, "auto_batch_size": bool,
}  # fmt: skip


class GenerationBackend:
    """Turns prompts into generations. ``setup`` loads the model once per actor.

    ``option_keys``: the ``ModelSpec.options`` the backend reads; with ``JOB_MODEL_OPTIONS`` they
    are all a model entry may set (checked when the config loads).
    """

    name = "base"
    option_keys: ClassVar[OptionTypes] = {}

    def __init__(self, model: ModelSpec):
        self.model = model

    def prefetch(self) -> None:  # noqa: B027 - optional hook
        """Fetch what ``setup`` will load (a hub download), on the driver, once, before replicas start."""

    def setup(self) -> None:
        """Load the model or open the client."""

    def generate(self, prompts: list[str], params: GenerationParams) -> list[Generation]:
        raise NotImplementedError

    def uses_gpu(self) -> bool:
        return False


BACKENDS: Registry[GenerationBackend] = Registry(
    "backend",
    GenerationBackend,
    {"hf": "affalign.backends.hf:HFBackend", "openai": "affalign.backends.openai_api:OpenAIBackend"},
    where="generation.models",
    plugins=False,
)


def make_backend(model: ModelSpec) -> GenerationBackend:
    """Build (not set up) the backend a model spec names; imports it lazily."""
    if model.backend not in BACKENDS:
        raise ConfigError(f"model {model.id!r}: unknown backend {model.backend!r}; choose one of {BACKENDS.names()}")
    return BACKENDS.load(model.backend)(model)
