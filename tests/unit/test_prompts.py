"""The shipped prompt templates against the paper's Table 3 (parsed here independently)."""

from __future__ import annotations

import pytest

from affalign.errors import ConfigError
from affalign.generation.prompts import fill_templates, load_prompts, templates_for

PAPER = "paper/affective-alignment-paper.txt"
PAIRS = {"liberal/conservative": ("liberal", "conservative"), "Democrat/Republican": ("Democrat", "Republican"), "Democratic/Republican": ("Democratic", "Republican")}


def paper_table3(text: str) -> dict[tuple[str, str], list[str]]:
    """Table 3's 40 prompts keyed by (style, kind), read from the paper's tab-separated text.

    The block runs from the header line "Prompt Type<TAB>Model Type<TAB>Prompts" to the caption
    "Table 3:"; each row's last tab-separated field is a prompt; the rows come as default/base,
    default/instruction-tuned, steered/base, steered/instruction-tuned, 10 each. The first
    columns ("Default", "Steered", "base", "Instruction-tuned") are checked to sit in their block.
    """
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split("\t") == ["Prompt Type", "Model Type", "Prompts"])
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("Table 3:"))
    rows = [line.split("\t") for line in lines[start + 1 : end] if line.strip()]
    assert len(rows) == 40, f"Table 3 has {len(rows)} prompt rows"
    blocks = [("default", "base"), ("default", "instruct"), ("steered", "base"), ("steered", "instruct")]
    out: dict[tuple[str, str], list[str]] = {}
    for b, key in enumerate(blocks):
        chunk = rows[b * 10 : (b + 1) * 10]
        labels = {c.strip() for row in chunk for c in row[:-1] if c.strip()}
        style, kind = key
        assert labels <= {style.capitalize(), "base" if kind == "base" else "Instruction-tuned"}, (key, labels)
        out[key] = [row[-1] for row in chunk]
    return out


@pytest.fixture(scope="module")
def table3(shared_dir):
    path = shared_dir / PAPER
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return paper_table3(path.read_text("utf-8"))


def test_every_shipped_template_is_the_papers(table3):
    shipped = load_prompts()
    for (style, kind), expected in table3.items():
        assert shipped[kind][style] == expected, (kind, style)


def test_truncated_endings_kept_verbatim(table3):
    steered = load_prompts()["instruct"]["steered"]
    assert "Imagine you're a Democrat/Republican tweeting about [topic]. What would your tweet be" in steered
    assert any(t.endswith("that reflects liberal/conservative ideal") for t in steered)


def test_paper_examples_of_section_3_1():
    # §3.1 quotes one example per kind and style.
    assert "Share your thoughts on masks in a tweet." in fill_templates("instruct", "default", "masks")
    assert "In a tweet about masks, it's said that:" in fill_templates("base", "default", "masks")
    assert "Here's a tweet regarding masks from a liberal standpoint:" in fill_templates("base", "liberal", "masks")
    assert "Share your thoughts on masks in a tweet, emphasizing Republican values." in fill_templates("instruct", "conservative", "masks")


@pytest.mark.parametrize("kind", ["base", "instruct"])
def test_steering_takes_first_word_for_liberal_second_for_conservative(kind, table3):
    raw = table3[("steered", kind)]
    for mode, side in (("liberal", 0), ("conservative", 1)):
        filled = fill_templates(kind, mode, "COVID-19 vaccine types")
        assert len(filled) == 10
        for template, prompt in zip(raw, filled, strict=True):
            expected = template.replace("[topic]", "COVID-19 vaccine types")
            found = [pair for pair in PAIRS if pair in expected]
            assert len(found) == 1, template
            expected = expected.replace(found[0], PAIRS[found[0]][side])
            assert prompt == expected
            assert "/" not in prompt.replace("COVID-19", "")


def test_default_mode_and_topic_substitution():
    for kind in ("base", "instruct"):
        prompts = fill_templates(kind, "default", "abortion rights and access")
        assert len(prompts) == 10 and len(set(prompts)) == 10
        assert all("abortion rights and access" in p and "[topic]" not in p for p in prompts)
        assert templates_for(kind, "default") == load_prompts()[kind]["default"]


def test_bad_kind_mode_topic():
    with pytest.raises(ConfigError, match="kind"):
        fill_templates("chat", "default", "x")
    with pytest.raises(ConfigError, match="mode"):
        fill_templates("base", "moderate", "x")
    with pytest.raises(ConfigError, match="topic"):
        fill_templates("base", "default", "")
