"""The paper's opinion-eliciting prompts (§3.1, Table 3) and filling them for a topic and mode.

``affalign/data/prompts.yaml`` holds Table 3 verbatim: 10 templates for each model kind (base,
instruct) and prompting style (default, steered). Steered templates carry the table's pair
wordings ("liberal/conservative", "Democrat/Republican", "Democratic/Republican"); the liberal
mode takes the first word of the pair and the conservative mode the second.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

import yaml

from affalign.errors import ConfigError
from affalign.schema import PROMPT_MODES

KINDS: tuple[str, ...] = ("base", "instruct")
MODES = PROMPT_MODES
STYLES: tuple[str, ...] = ("default", "steered")
N_TEMPLATES = 10
TOPIC_SLOT = "[topic]"
# The table's pair wordings: (liberal word)/(conservative word).
PAIR_RE = re.compile(r"\b(liberal|Democrat|Democratic)/(conservative|Republican)\b")


def style_of(mode: str) -> str:
    """``default`` for the default mode, ``steered`` for liberal and conservative."""
    if mode not in MODES:
        raise ConfigError(f"prompt mode {mode!r} is not one of {', '.join(MODES)}")
    return "default" if mode == "default" else "steered"


@lru_cache(maxsize=1)
def _load() -> dict[str, dict[str, tuple[str, ...]]]:
    text = resources.files("affalign.data").joinpath("prompts.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for kind in KINDS:
        out[kind] = {}
        for style in STYLES:
            templates = tuple(data[kind][style])
            if len(templates) != N_TEMPLATES:
                raise ConfigError(f"prompts.yaml: {kind}/{style} has {len(templates)} templates, expected {N_TEMPLATES}")
            for t in templates:
                if TOPIC_SLOT not in t:
                    raise ConfigError(f"prompts.yaml: template {t!r} has no {TOPIC_SLOT}")
                if (style == "steered") != bool(PAIR_RE.search(t)):
                    raise ConfigError(f"prompts.yaml: {kind}/{style} template {t!r} has the wrong steering wording")
            out[kind][style] = templates
    return out


def load_prompts() -> dict[str, dict[str, list[str]]]:
    """Table 3 as ``{kind: {style: [10 templates]}}`` with kinds base|instruct, styles default|steered."""
    return {kind: {style: list(ts) for style, ts in styles.items()} for kind, styles in _load().items()}


def templates_for(kind: str, mode: str) -> list[str]:
    """The 10 templates of a kind and mode, with the steering pair resolved for the mode ([topic] kept)."""
    if kind not in KINDS:
        raise ConfigError(f"model kind {kind!r} is not one of {', '.join(KINDS)}")
    style = style_of(mode)
    templates = _load()[kind][style]
    if style == "default":
        return list(templates)
    group = 1 if mode == "liberal" else 2
    return [PAIR_RE.sub(lambda m: m.group(group), t) for t in templates]


def fill_templates(kind: str, mode: str, topic: str) -> list[str]:
    """The 10 prompts for a model kind (base|instruct), a mode (default|liberal|conservative) and a topic."""
    if not topic:
        raise ConfigError("topic is empty")
    return [t.replace(TOPIC_SLOT, topic) for t in templates_for(kind, mode)]
