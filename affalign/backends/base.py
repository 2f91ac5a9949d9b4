"""The generation interface every backend implements."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from affalign.errors import ConfigError


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


class GenerationBackend:
    """Turns prompts into generations. ``setup`` loads the model once per actor."""

    name = "base"

    def __init__(self, model: ModelSpec):
        self.model = model

    def setup(self) -> None:
        """Load the model or open the client."""

    def generate(self, prompts: list[str], params: GenerationParams) -> list[Generation]:
        raise NotImplementedError

    def uses_gpu(self) -> bool:
        return False


BACKENDS: dict[str, str] = {
    "hf": "affalign.backends.hf:HFBackend",
    "openai": "affalign.backends.openai_api:OpenAIBackend",
}


def make_backend(model: ModelSpec) -> GenerationBackend:
    """Build (not set up) the backend a model spec names; imports it lazily."""
    target = BACKENDS.get(model.backend)
    if target is None:
        raise ConfigError(f"model {model.id!r}: unknown backend {model.backend!r}; choose one of {sorted(BACKENDS)}")
    module_name, cls_name = target.split(":")
    return getattr(importlib.import_module(module_name), cls_name)(model)
