"""One lazy registry for pluggable classes (scorers, generation backends).

A registry maps short names to ``"module:Class"`` targets; a module is imported only when its
name is first used (a backend's heavy imports, torch or openai, never load for a job that does
not use it). A name not in the table may be a plugin written as ``"package.module:Class"``,
importable on every node. Every class is checked against the registry's base class.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeVar

from affalign.errors import ConfigError

T = TypeVar("T")

# The options a plugin reads: name -> the type (or tuple of types) its value must have; ``object``
# takes any value. A plain set of names (how plugins declared them before types) takes any value.
OptionTypes = Mapping[str, Any]


def option_types(*declared: OptionTypes | Iterable[str]) -> dict[str, Any]:
    """One name -> type mapping from several declarations (later ones win)."""
    out: dict[str, Any] = {}
    for d in declared:
        out.update(d if isinstance(d, Mapping) else dict.fromkeys(d, object))
    return out


def _accepts(want: Any, value: Any) -> bool:
    wants = want if isinstance(want, tuple) else (want,)
    if object in wants:
        return True
    if isinstance(value, bool):  # a bool is an int to isinstance: accept it only where a bool is wanted
        return bool in wants
    if isinstance(value, int) and float in wants:
        return True
    return isinstance(value, wants)


def _type_names(want: Any) -> str:
    wants = want if isinstance(want, tuple) else (want,)
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a mapping"}
    return " or ".join(words.get(w, w.__name__) for w in wants)


def check_options(options: Mapping[str, Any], allowed: OptionTypes | Iterable[str], where: str) -> None:
    """A ConfigError naming an option nobody reads (a typo would otherwise be ignored) or a value of
    the wrong type (``seq2seq: "false"`` would otherwise read as true). ``None`` leaves the default."""
    types = option_types(allowed)
    unknown = sorted(set(options) - set(types))
    if unknown:
        raise ConfigError(f"{where}.options: unknown option {unknown[0]!r} (known: {', '.join(sorted(types)) or 'none'})")
    for key, value in options.items():
        if value is not None and not _accepts(types[key], value):
            raise ConfigError(f"{where}.options.{key}: expected {_type_names(types[key])}, got {value!r}")


class Registry(Generic[T]):
    """Names → lazily imported subclasses of ``base``; errors name ``where`` (a config key)."""

    def __init__(self, kind: str, base: type[T], targets: dict[str, str], where: str, plugins: bool = True):
        self.kind = kind
        self.base = base
        self.targets = dict(targets)
        self.where = where
        self.plugins = plugins

    def names(self) -> list[str]:
        return sorted(self.targets)

    def __contains__(self, name: object) -> bool:
        return name in self.targets

    def load(self, name: str) -> type[T]:
        """The class a name stands for; a ConfigError naming the key for an unknown or broken one."""
        target = self.targets.get(name)
        if target is None and self.plugins and ":" in name:
            target = name
        if target is None:
            plugin = " or name a plugin as 'module:Class'" if self.plugins else ""
            raise ConfigError(f"{self.where}: unknown {self.kind} {name!r}; choose one of {self.names()}{plugin}")
        module_name, cls_name = target.split(":", 1)
        try:
            cls = getattr(importlib.import_module(module_name), cls_name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{self.where}: cannot load {self.kind} {name!r}: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise ConfigError(f"{self.where}: {name!r} is not a {self.base.__name__} subclass")
        return cls
