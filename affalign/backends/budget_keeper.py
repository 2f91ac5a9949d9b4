"""One budget for a whole job, across processes: a Ray actor holds it, backends draw on it remotely.

Generation replicas and LM-judge scorer actors run in different processes; a limits mapping in
their options would give each its own budget. With ``options["budget"] = {"keeper": NAME}`` they
all reserve and commit against the one :class:`~affalign.backends.budget.Budget` that the named
keeper actor holds (started by the job from ``generation.budget``), so the job's limit holds in sum.
"""

from __future__ import annotations

import uuid
from typing import Any

from affalign.backends.budget import Budget, Reservation, find_shared_budget, shared_budget
from affalign.errors import BudgetExceeded, ConfigError


class _Keeper:
    """The actor's body: a plain Budget behind remote calls (refusals come back as values)."""

    def __init__(self, config: dict[str, Any]):
        self.budget = Budget.from_config(config)

    def check_model(self, model: str) -> None:
        self.budget.check_model(model)

    def reserve(self, model: str, prompt_tokens_estimate: int, max_new_tokens: int) -> Reservation | str:
        try:
            return self.budget.reserve(model, prompt_tokens_estimate, max_new_tokens)
        except BudgetExceeded as exc:  # a value, not a remote error: re-raised on the caller's side
            return str(exc)

    def commit(self, reservation: Reservation, prompt_tokens: int | None = None, completion_tokens: int | None = None) -> None:
        self.budget.commit(reservation, prompt_tokens, completion_tokens)

    def release(self, reservation: Reservation) -> None:
        self.budget.release(reservation)

    def spent(self) -> dict[str, Any]:
        return self.budget.spent()

    def describe(self) -> str:
        return repr(self.budget)


def start_keeper(config: dict[str, Any]) -> tuple[str, Any]:
    """Start a keeper actor for ``config`` (limits as in ``generation.budget``); returns (name, handle).

    The handle must stay referenced by the driver for the job's lifetime (the actor is not detached).
    """
    import ray

    name = f"affalign-budget-{uuid.uuid4().hex[:12]}"
    actor_cls = ray.remote(num_cpus=0, max_concurrency=64)(_Keeper)
    handle = actor_cls.options(name=name).remote(dict(config))
    ray.get(handle.describe.remote())  # fail here, on the driver, if the config is bad
    return name, handle


class RemoteBudget:
    """The Budget interface that backends use, forwarded to a keeper actor by name."""

    def __init__(self, name: str):
        self.name = name
        self._actor = None

    def _handle(self) -> Any:
        if self._actor is None:
            import ray

            self._actor = ray.get_actor(self.name)
        return self._actor

    def _call(self, method: str, *args: Any) -> Any:
        import ray

        return ray.get(getattr(self._handle(), method).remote(*args))

    @property
    def limited(self) -> bool:
        return True

    def check_model(self, model: str) -> None:
        self._call("check_model", model)

    def reserve(self, model: str, prompt_tokens_estimate: int, max_new_tokens: int) -> Reservation:
        got = self._call("reserve", model, prompt_tokens_estimate, max_new_tokens)
        if isinstance(got, str):
            raise BudgetExceeded(got)
        return got

    def commit(self, reservation: Reservation, prompt_tokens: int | None = None, completion_tokens: int | None = None) -> None:
        self._call("commit", reservation, prompt_tokens, completion_tokens)

    def release(self, reservation: Reservation) -> None:
        self._call("release", reservation)

    def spent(self) -> dict[str, Any]:
        return self._call("spent")

    def __repr__(self) -> str:
        return f"RemoteBudget({self.name!r})"


def budget_from_options(value: Any) -> Budget | None:
    """A backend's ``options["budget"]``: a Budget, a shared budget's name, or a limits mapping.

    A mapping with a ``name`` is the shared budget of that name; without one, a private budget.
    """
    if value is None or isinstance(value, Budget):
        return value
    if isinstance(value, str):
        budget = find_shared_budget(value)
        if budget is None:
            raise ConfigError(f"no shared budget named {value!r}; create it with shared_budget({value!r}, ...)")
        return budget
    if isinstance(value, dict) and "keeper" in value:
        return RemoteBudget(str(value["keeper"]))  # type: ignore[return-value]  (same interface)
    if isinstance(value, dict):
        config = dict(value)
        name = config.pop("name", None)
        return shared_budget(str(name), **config) if name else Budget.from_config(config)
    raise ConfigError(f"options.budget: give a mapping of limits or a shared budget's name, not {type(value).__name__}")
