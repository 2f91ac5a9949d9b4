"""The generation plan: one row per response to generate, keyed by a content hash.

For each model, topic and mode the paper draws 2,000 prompts uniformly from the 10 candidates of
Table 3 (§3.1). Here the draw for (model, dataset, topic, mode) comes from its own numpy
Generator seeded from ``(seed, model, dataset, topic, mode)``, so adding a topic or a model, or
reordering them, never changes another cell's draws.

``plan_id`` hashes everything that determines a response: the model (id, backend, path or
package reference, revision), dataset, topic, mode, the response's index, its prompt text, the
sampling params and the seed. The store keys finished generations by it, so a rerun with the same
inputs skips them, and a change to any of these makes new rows instead of reusing stale ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pyarrow as pa

from affalign.backends.base import ModelSpec
from affalign.errors import ConfigError
from affalign.generation.prompts import MODES, N_TEMPLATES, fill_templates
from affalign.schema import PLAN_SCHEMA

PLAN_COLUMNS: tuple[str, ...] = tuple(PLAN_SCHEMA.names)
_MASK63 = (1 << 63) - 1


def _h64(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def template_rng(seed: int, model_id: str, dataset: str, topic: str, mode: str) -> np.random.Generator:
    """The Generator that draws one (model, dataset, topic, mode) cell's template indices."""
    entropy = [int(seed) & 0xFFFFFFFFFFFFFFFF, _h64(model_id), _h64(dataset), _h64(topic), _h64(mode)]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def model_key(model: ModelSpec) -> dict[str, object]:
    """What identifies a model's outputs: id, backend, where its weights come from, revision, params."""
    opts = model.options or {}
    return {
        "id": model.id,
        "backend": model.backend,
        # a package-shipped file is keyed by its package reference, not this machine's path to it
        "path": opts.get("path_ref") or model.path or model.id,
        "revision": opts.get("revision"),
        "params": dataclasses.asdict(model.params),
    }


def build_plan(models: list[ModelSpec], dataset: str, topics: list[str], modes: list[str], n_responses: int, seed: int) -> pa.Table:
    """Every (model, topic, mode, index) to generate, with its prompt and per-row seed.

    Rows come model by model, then topic, mode and index in the given orders; the same inputs
    always give an identical table.
    """
    if n_responses < 1:
        raise ConfigError("generation.n_responses: must be >= 1")
    if not dataset:
        raise ConfigError("dataset is empty")
    for mode in modes:
        if mode not in MODES:
            raise ConfigError(f"generation.modes: {mode!r} is not one of {', '.join(MODES)}")
    if len(set(modes)) != len(modes):
        raise ConfigError(f"generation.modes: duplicates in {modes}")
    if len(set(topics)) != len(topics):
        raise ConfigError("topics: duplicates")
    ids = [m.id for m in models]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"generation.models: duplicate model ids in {ids}")

    cols: dict[str, list] = {name: [] for name in PLAN_COLUMNS}
    for model in models:
        mkey = model_key(model)
        for topic in topics:
            for mode in modes:
                prompts = fill_templates(model.kind, mode, topic)
                draws = template_rng(seed, model.id, dataset, topic, mode).integers(0, N_TEMPLATES, size=n_responses)
                prefix = json.dumps({"model": mkey, "dataset": dataset, "topic": topic, "mode": mode, "seed": int(seed)}, sort_keys=True)
                for index, t in enumerate(draws.tolist()):
                    prompt = prompts[t]
                    digest = hashlib.sha256(f"{prefix}\x00{index}\x00{prompt}".encode()).digest()
                    cols["plan_id"].append(digest[:16].hex())
                    cols["row_seed"].append(int.from_bytes(digest[16:24], "big") & _MASK63)
                    cols["template_index"].append(t)
                    cols["prompt"].append(prompt)
                    cols["index"].append(index)
                n = len(draws)
                cols["model"].extend([model.id] * n)
                cols["kind"].extend([model.kind] * n)
                cols["dataset"].extend([dataset] * n)
                cols["topic"].extend([topic] * n)
                cols["mode"].extend([mode] * n)
    return pa.Table.from_pydict(cols, schema=PLAN_SCHEMA)
