"""One lazy registry for pluggable classes (scorers, generation backends).

A registry maps short names to ``"module:Class"`` targets; a module is imported only when its
name is first used (a backend's heavy imports, torch or openai, never load for a job that does
not use it). A name not in the table may be a plugin written as ``"package.module:Class"``,
importable on every node. Every class is checked against the registry's base class.
"""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

from affalign.errors import ConfigError

T = TypeVar("T")


def check_options(options: dict, allowed: frozenset[str] | set[str], where: str) -> None:
    """A ConfigError naming an option key nobody reads (a typo would otherwise be ignored)."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}.options: unknown option {unknown[0]!r} (known: {', '.join(sorted(allowed)) or 'none'})")


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
