"""A hard request / token / dollar budget for API backends, safe under concurrency.

Every HTTP request is covered by a :class:`Reservation` taken *before* it is sent::

    r = budget.reserve("gpt-3.5-turbo-1106", prompt_tokens_estimate=120, max_new_tokens=96)
    ...send the request...
    budget.commit(r, prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)

``reserve`` counts the request's worst case (one request, ``prompt_tokens_estimate +
max_new_tokens`` tokens and their price) against the limits together with everything already
spent *and* everything reserved by requests still in flight, and raises
:class:`~affalign.errors.BudgetExceeded` when that could pass a limit. ``commit`` then replaces
the reservation with what the request really used. So however many threads (or backends sharing
one budget: a generator and an LM judge) send requests at once, the limits are never overshot,
as long as the prompt estimate is an upper bound (the OpenAI backend uses the prompt's UTF-8
byte count plus a template overhead, which is one for byte-level BPE tokenizers).

What counts:

* ``max_requests``: HTTP requests sent, retries included (a 429 is a request).
* ``max_tokens``: prompt + completion tokens.
* ``max_dollars``: tokens priced with :file:`affalign/data/prices.yaml` (per 1K tokens), or the
  ``prices`` given to the budget. A dollar limit refuses models without a price (ConfigError).

``commit(r)`` without token counts (a timeout, a dropped connection, an unreadable answer: the
server may have done the work) charges the reservation's worst case; ``release(r)`` returns a
reservation whose request was never sent. A budget is per process: Ray actors each hold their own.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from affalign.errors import BudgetExceeded, ConfigError

log = logging.getLogger("affalign")

LIMIT_KEYS = ("max_requests", "max_tokens", "max_dollars")


@dataclass(frozen=True)
class Price:
    """US dollars per 1,000 input (prompt) and output (completion) tokens."""

    input: float
    output: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1000.0


@functools.lru_cache(maxsize=1)
def load_price_table() -> dict[str, Any]:
    """The shipped price table: ``{"as_of", "source", "models": {name: Price}}``."""
    text = resources.files("affalign.data").joinpath("prices.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text) or {}
    models = {str(name): _price(name, p) for name, p in (raw.get("models") or {}).items()}
    return {"as_of": str(raw.get("as_of", "")), "source": str(raw.get("source", "")), "models": models}


def _price(name: Any, p: Any) -> Price:
    if isinstance(p, Price):
        return p
    if isinstance(p, (list, tuple)) and len(p) == 2:
        p = {"input": p[0], "output": p[1]}
    if not isinstance(p, dict) or set(p) != {"input", "output"}:
        raise ConfigError(f"price of {name!r}: give {{input: $/1K tokens, output: $/1K tokens}}, not {p!r}")
    try:
        price = Price(float(p["input"]), float(p["output"]))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"price of {name!r}: {e}") from None
    if not (price.input >= 0 and price.output >= 0 and math.isfinite(price.input) and math.isfinite(price.output)):
        raise ConfigError(f"price of {name!r} must be finite and >= 0")
    return price


@dataclass
class Reservation:
    """The worst case of one request, held against a budget until committed or released."""

    id: int
    model: str
    prompt_tokens: int
    completion_tokens: int
    dollars: float  # 0.0 when the model has no price
    requests: int = 1
    state: str = "reserved"  # reserved | committed | released

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class _Totals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    dollars: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens": self.prompt_tokens + self.completion_tokens,
            "dollars": round(self.dollars, 10),
        }


@dataclass
class _InFlight:
    requests: int = 0
    tokens: int = 0
    dollars: float = 0.0
    open: dict[int, Reservation] = field(default_factory=dict)


class Budget:
    """Hard limits on requests, tokens and dollars; thread-safe; shareable between backends.

    Any limit left ``None`` is not enforced (but still counted). ``prices`` (``{model: {input,
    output}}`` in $ per 1K tokens) add to or override the shipped table.
    """

    def __init__(
        self,
        max_requests: int | None = None,
        max_tokens: int | None = None,
        max_dollars: float | None = None,
        *,
        prices: dict[str, Any] | None = None,
        name: str | None = None,
    ):
        self.max_requests = _limit("max_requests", max_requests, int)
        self.max_tokens = _limit("max_tokens", max_tokens, int)
        self.max_dollars = _limit("max_dollars", max_dollars, float)
        self.name = name
        table = load_price_table()
        self.prices_as_of = table["as_of"]
        self._prices: dict[str, Price] = dict(table["models"])
        for model, p in (prices or {}).items():
            self._prices[str(model)] = _price(model, p)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._spent = _Totals()
        self._by_model: dict[str, _Totals] = {}
        self._flight = _InFlight()
        self._refused = 0
        self._overruns = 0
        self._unpriced: set[str] = set()

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> Budget:
        """A budget from a job config mapping (``max_requests``, ``max_tokens``, ``max_dollars``, ``prices``)."""
        config = dict(config or {})
        unknown = set(config) - {*LIMIT_KEYS, "prices", "name"}
        if unknown:
            raise ConfigError(f"budget: unknown keys {sorted(unknown)}; use {list(LIMIT_KEYS)} and prices")
        return cls(**config)

    @property
    def limited(self) -> bool:
        return any(v is not None for v in (self.max_requests, self.max_tokens, self.max_dollars))

    def price(self, model: str) -> Price | None:
        return self._prices.get(model)

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        """Dollars for these token counts, or None when the model has no price."""
        p = self._prices.get(model)
        return None if p is None else p.cost(prompt_tokens, completion_tokens)

    def check_model(self, model: str) -> None:
        """Raise ConfigError when a dollar limit is set and ``model`` has no price."""
        if self.max_dollars is not None and model not in self._prices:
            raise ConfigError(
                f"budget: max_dollars is set but model {model!r} has no price in affalign/data/prices.yaml; "
                "add one (or give the budget `prices`)"
            )

    def reserve(self, model: str, prompt_tokens_estimate: int, max_new_tokens: int) -> Reservation:
        """Hold one request's worst case; BudgetExceeded when it could pass a limit."""
        self.check_model(model)
        pt, ct = max(0, int(prompt_tokens_estimate)), max(0, int(max_new_tokens))
        dollars = self.cost(model, pt, ct) or 0.0
        with self._lock:
            spent, flight = self._spent, self._flight
            why = None
            if self.max_requests is not None and spent.requests + flight.requests + 1 > self.max_requests:
                why = f"max_requests={self.max_requests} ({spent.requests} sent, {flight.requests} in flight)"
            elif self.max_tokens is not None and _tokens(spent) + flight.tokens + pt + ct > self.max_tokens:
                why = (
                    f"max_tokens={self.max_tokens} ({_tokens(spent)} used, {flight.tokens} held in flight, "
                    f"this request up to {pt + ct})"
                )
            elif self.max_dollars is not None and spent.dollars + flight.dollars + dollars > self.max_dollars * (1 + 1e-12):
                why = (
                    f"max_dollars={self.max_dollars:g} (${spent.dollars:.6f} spent, ${flight.dollars:.6f} held in "
                    f"flight, this request up to ${dollars:.6f})"
                )
            if why is not None:
                self._refused += 1
                raise BudgetExceeded(f"budget{' ' + self.name if self.name else ''} exhausted: {why}")
            r = Reservation(next(self._ids), model, pt, ct, dollars)
            flight.requests += 1
            flight.tokens += pt + ct
            flight.dollars += dollars
            flight.open[r.id] = r
            return r

    def commit(self, reservation: Reservation, prompt_tokens: int | None = None, completion_tokens: int | None = None) -> None:
        """Record a sent request's real usage in place of its reservation.

        Without token counts (the outcome is unknown: timeout, dropped connection, unreadable
        answer) the reservation's worst case is charged. A 429 or 5xx answer is committed with
        ``0, 0``: a request, no tokens.
        """
        unknown = prompt_tokens is None and completion_tokens is None
        pt = reservation.prompt_tokens if unknown else max(0, int(prompt_tokens or 0))
        ct = reservation.completion_tokens if unknown else max(0, int(completion_tokens or 0))
        with self._lock:
            self._close(reservation, "committed")
            dollars = self.cost(reservation.model, pt, ct)
            if dollars is None:
                self._unpriced.add(reservation.model)
                dollars = 0.0
            for t in (self._spent, self._by_model.setdefault(reservation.model, _Totals())):
                t.requests += reservation.requests
                t.prompt_tokens += pt
                t.completion_tokens += ct
                t.dollars += dollars
            over = pt > reservation.prompt_tokens or ct > reservation.completion_tokens
            if over:
                self._overruns += 1
        if over:
            log.warning(
                "budget: a %s request used %d+%d tokens, more than the %d+%d reserved for it",
                reservation.model, pt, ct, reservation.prompt_tokens, reservation.completion_tokens,
            )

    def release(self, reservation: Reservation) -> None:
        """Give back a reservation whose request was never sent."""
        with self._lock:
            self._close(reservation, "released")

    def _close(self, r: Reservation, state: str) -> None:
        if self._flight.open.pop(r.id, None) is None:
            raise ValueError(f"reservation {r.id} is not open (it is {r.state})")
        r.state = state
        self._flight.requests -= r.requests
        self._flight.tokens -= r.tokens
        self._flight.dollars = max(0.0, self._flight.dollars - r.dollars)
        if not self._flight.open:
            self._flight.dollars = 0.0  # no float residue once nothing is in flight

    def spent(self) -> dict[str, Any]:
        """What was used so far, what is held by requests in flight, the limits and what is left."""
        with self._lock:
            out = self._spent.as_dict()
            flight = self._flight
            out["in_flight"] = {"requests": flight.requests, "tokens": flight.tokens, "dollars": round(flight.dollars, 10)}
            out["refused"] = self._refused
            out["overruns"] = self._overruns
            out["limits"] = {k: getattr(self, k) for k in LIMIT_KEYS}
            out["remaining"] = {
                "requests": None if self.max_requests is None else self.max_requests - self._spent.requests,
                "tokens": None if self.max_tokens is None else self.max_tokens - _tokens(self._spent),
                "dollars": None if self.max_dollars is None else round(self.max_dollars - self._spent.dollars, 10),
            }
            out["by_model"] = {m: t.as_dict() for m, t in sorted(self._by_model.items())}
            out["unpriced_models"] = sorted(self._unpriced)
            out["prices_as_of"] = self.prices_as_of
        return out

    def __repr__(self) -> str:
        limits = ", ".join(f"{k}={getattr(self, k)!r}" for k in LIMIT_KEYS if getattr(self, k) is not None)
        name = f"{self.name!r}, " if self.name else ""
        return f"Budget({name}{limits or 'unlimited'})"


def _tokens(t: _Totals) -> int:
    return t.prompt_tokens + t.completion_tokens


def _limit(name: str, value: Any, typ: type) -> Any:
    if value is None:
        return None
    try:
        v = typ(value)
    except (TypeError, ValueError):
        raise ConfigError(f"budget: {name} must be a number, not {value!r}") from None
    if not (v >= 0 and math.isfinite(v)):
        raise ConfigError(f"budget: {name} must be >= 0, not {value!r}")
    return v


_SHARED: dict[str, Budget] = {}
_SHARED_LOCK = threading.Lock()


def shared_budget(name: str, **config: Any) -> Budget:
    """The process-wide budget called ``name``, created from ``config`` on first use.

    Backends whose ``options["budget"]`` names the same budget (a generator and an LM judge)
    draw on one set of limits. Asking again with different limits is a ConfigError.
    """
    with _SHARED_LOCK:
        budget = _SHARED.get(name)
        if budget is None:
            budget = Budget.from_config({**config, "name": name})
            _SHARED[name] = budget
        elif config:
            given = {k: _limit(k, config.get(k), int if k != "max_dollars" else float) for k in LIMIT_KEYS}
            if given != {k: getattr(budget, k) for k in LIMIT_KEYS} or "prices" in config:
                raise ConfigError(f"budget {name!r} already exists with other limits: {budget!r}")
        return budget


def find_shared_budget(name: str) -> Budget | None:
    """The process-wide budget called ``name``, if one was created."""
    with _SHARED_LOCK:
        return _SHARED.get(name)
