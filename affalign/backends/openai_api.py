"""Generation through the OpenAI API, or any OpenAI-compatible server (vLLM, llama.cpp, ...).

Instruct models use chat completions (the prompt is one user message), base models the
completions endpoint (Appendix A.2: gpt-3.5-turbo-1106 by chat; davinci-002 and babbage-002 by
completions). The API model name is ``model.path or model.id``.

Model options (``ModelSpec.options``; all optional):

``api``                     ``chat`` | ``completions`` (default: ``chat`` for ``kind: instruct``,
                            ``completions`` for ``kind: base``)
``base_url``                server URL (default: the ``OPENAI_BASE_URL`` environment variable,
                            else the OpenAI API)
``api_key_env``             the environment variable holding the key (default ``OPENAI_API_KEY``).
                            The key is read from the environment only, never from options or
                            configs. Without one, a loopback ``base_url`` gets a dummy key (local
                            servers without auth); any other URL is a ConfigError.
``concurrency``             requests in flight at once (default 8)
``max_retries``             retries of one request after 429, 408, 409, 5xx, a timeout, a
                            dropped connection or an unreadable answer (default 6). The openai
                            client's own retries are off, so this is the retry logic in force.
``timeout``                 seconds per request (default 60)
``backoff_base``            first backoff in seconds (default 1.0); attempt k waits a uniform
                            random time in [0, min(backoff_max, backoff_base * 2**k)] ("full
                            jitter"), or the server's ``Retry-After`` / ``retry-after-ms`` when
                            it sends one (at most ``retry_after_max``)
``backoff_max``             cap of the backoff (default 30 s)
``retry_after_max``         cap of a ``Retry-After`` wait (default 120 s)
``budget``                  a mapping of limits (``max_requests``, ``max_tokens``,
                            ``max_dollars``; with ``name``: the process-wide shared budget of
                            that name, see :func:`affalign.backends.budget.shared_budget`), a
                            shared budget's name, or a :class:`Budget`. ``OpenAIBackend(model,
                            budget=...)`` takes one directly.
``prompt_overhead_tokens``  tokens added to a prompt's UTF-8 byte count to bound its token
                            count for budget reservations (default 16 for chat: the message
                            wrapping; 4 for completions)
``per_row_seed``            default true: the ``seed`` sent is derived from ``(params.seed, row
                            seed)`` (the row seed is ``seeds[i]``, else the prompt's position),
                            so that repeated prompts do not all get the same seed; false: send
                            ``params.seed`` itself

Results come back in the order of the prompts. A request that still fails after its retries is
``Generation(text=None, finish_reason="error", error=...)``; when the budget refuses a request,
it and every prompt not yet sent are ``finish_reason="budget"`` (never sent), and what was done
is kept. An authentication, permission or not-found error stops the call the same way (the
rest are errors, not sent). Error strings pass through :func:`redact`: no key in them, in logs
or in reprs.
"""

from __future__ import annotations

import concurrent.futures
import email.utils
import hashlib
import logging
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from affalign.backends.base import Generation, GenerationBackend, GenerationParams, ModelSpec
from affalign.backends.budget import Budget, Reservation
from affalign.backends.budget_keeper import budget_from_options
from affalign.errors import BudgetExceeded, ConfigError
from affalign.registry import OptionTypes

log = logging.getLogger("affalign")

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
LOCAL_DUMMY_KEY = "sk-local-no-key"
RETRY_STATUS = frozenset({408, 409, 429})
FATAL_STATUS = frozenset({401, 403, 404})
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}

# -- secrets --------------------------------------------------------------------------------------

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_REDACTIONS = [
    (re.compile(r"(?i)(bearer\s+)[^\s'\",;]+"), r"\1***"),
    (re.compile(r"\bsk-[A-Za-z0-9_\-*.]{3,}"), "sk-***"),
    (re.compile(r"(?i)(api[_-]?key['\"]?\s*[:=]\s*['\"]?)[^\s'\",;}&]+"), r"\1***"),
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\",;}\n]+"), r"\1***"),
    (re.compile(r"(?i)(incorrect api key provided:\s*)[^\s'\",;]+"), r"\1***"),
    (re.compile(r"(://)[^/@\s:]+:[^/@\s]+@"), r"\1***@"),  # user:password@ in URLs
]


def register_secret(value: str | None) -> None:
    """Have :func:`redact` remove this exact string (an API key) wherever it appears."""
    if value and len(value) >= 4:
        with _SECRETS_LOCK:
            _SECRETS.add(value)


def redact(text: Any, limit: int = 400) -> str:
    """``text`` as a string without secrets, shortened to ``limit`` characters.

    Removes every registered key, ``Bearer ...`` tokens, ``sk-...`` keys, ``api_key=...`` and
    ``Authorization: ...`` values and passwords in URLs.
    """
    s = str(text)
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        s = s.replace(secret, "***")
    for pattern, repl in _REDACTIONS:
        s = pattern.sub(repl, s)
    if len(s) > limit:
        s = s[: limit - 3] + "..."
    return s


def _is_loopback(url: str | None) -> bool:
    if not url:
        return False
    host = (urlsplit(url).hostname or "").lower()
    return host in _LOOPBACK or host.startswith("127.")


# -- helpers --------------------------------------------------------------------------------------


def request_seed(seed: int, row_seed: int) -> int:
    """The API ``seed`` of a row: a 31-bit hash of ``(seed, row_seed)``."""
    digest = hashlib.blake2b(f"{int(seed)}:{int(row_seed)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def retry_after_seconds(headers: Any) -> float | None:
    """The wait a response asks for: ``retry-after-ms``, else ``Retry-After`` (seconds or a date)."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
    except (TypeError, ValueError):
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class _Outcome:
    """How one attempt ended."""

    generation: Generation | None = None  # set on success
    retry: bool = False
    fatal: bool = False
    retry_after: float | None = None
    usage_known: bool = True  # False: charge the reservation's worst case
    message: str = ""


class _Call:
    """State shared by one ``generate`` call's threads: why it stopped dispatching, if it did."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reason: str | None = None  # budget | error
        self.message = ""

    def stop(self, reason: str, message: str) -> None:
        with self._lock:
            if self.reason is None:
                self.reason, self.message = reason, message

    @property
    def stopped(self) -> bool:
        return self.reason is not None


class OpenAIBackend(GenerationBackend):
    """OpenAI (or OpenAI-compatible) chat / completions with retries, bounded concurrency and a budget."""

    name = "openai"
    option_keys: ClassVar[OptionTypes] = {
        "api": str, "api_key_env": str, "base_url": str, "budget": object, "concurrency": int, "max_retries": int,
        "backoff_base": float, "backoff_max": float, "retry_after_max": float, "timeout": float, "per_row_seed": bool,
        "prompt_overhead_tokens": int,
    }  # fmt: skip

    def __init__(self, model: ModelSpec, budget: Budget | dict | str | None = None, *, sleep: Callable[[float], None] | None = None):
        super().__init__(model)
        opts = dict(model.options or {})
        self.api = str(opts.get("api") or ("completions" if model.kind == "base" else "chat")).lower()
        if self.api not in ("chat", "completions"):
            raise ConfigError(f"model {model.id!r}: options.api must be chat or completions, not {self.api!r}")
        self.api_model = model.path or model.id
        self.base_url = opts.get("base_url") or os.environ.get("OPENAI_BASE_URL") or None
        self.key_env = str(opts.get("api_key_env") or DEFAULT_KEY_ENV)
        self.concurrency = _positive_int(model, opts, "concurrency", 8)
        self.max_retries = _positive_int(model, opts, "max_retries", 6, minimum=0)
        self.timeout = _positive_float(model, opts, "timeout", 60.0)
        self.backoff_base = _positive_float(model, opts, "backoff_base", 1.0, minimum=0.0)
        self.backoff_max = _positive_float(model, opts, "backoff_max", 30.0, minimum=0.0)
        self.retry_after_max = _positive_float(model, opts, "retry_after_max", 120.0, minimum=0.0)
        default_overhead = 16 if self.api == "chat" else 4
        self.prompt_overhead = _positive_int(model, opts, "prompt_overhead_tokens", default_overhead, minimum=0)
        self.per_row_seed = bool(opts.get("per_row_seed", True))
        self.budget: Budget = budget_from_options(budget if budget is not None else opts.get("budget")) or Budget()
        self._sleep = sleep or time.sleep
        self._rng = random.Random()
        self._client = None
        self.stats: Counter[str] = Counter()  # requests, retries, errors, budget, ok
        self._stats_lock = threading.Lock()

    def __repr__(self) -> str:
        url = redact(self.base_url) if self.base_url else "default"
        return (
            f"OpenAIBackend(model={self.api_model!r}, api={self.api!r}, base_url={url!r}, "
            f"concurrency={self.concurrency}, budget={self.budget!r})"
        )

    __str__ = __repr__

    # -- setup ----------------------------------------------------------------------------------

    def setup(self) -> None:
        if self._client is not None:
            return
        try:
            import openai
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise ConfigError("the openai backend needs the `openai` package") from e
        key = os.environ.get(self.key_env) or ""
        if not key:
            if not _is_loopback(self.base_url):
                raise ConfigError(
                    f"model {self.model.id!r}: set the API key in the environment variable {self.key_env} "
                    "(keys are never read from configs)"
                )
            key = LOCAL_DUMMY_KEY
            log.info("openai: no %s set; using a dummy key for the local server", self.key_env)
        register_secret(key)
        self.budget.check_model(self.api_model)
        self._client = openai.OpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.timeout)
        log.debug("openai: %r ready", self)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- generation -----------------------------------------------------------------------------

    def generate(self, prompts: list[str], params: GenerationParams, seeds: list[int] | None = None) -> list[Generation]:
        """One generation per prompt, in order (see the module docstring for errors and budget)."""
        if self._client is None:
            self.setup()
        n = len(prompts)
        if seeds is None:
            seeds = list(range(n))
        if len(seeds) != n:
            raise ValueError("one seed per prompt")
        results: list[Generation | None] = [None] * n
        if n == 0:
            return []
        call = _Call()
        slots = threading.BoundedSemaphore(self.concurrency)
        futures: list[concurrent.futures.Future] = []
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=min(self.concurrency, n), thread_name_prefix=f"openai-{self.model.id}"
        ) as pool:
            for i, prompt in enumerate(prompts):
                slots.acquire()
                if call.stopped:
                    slots.release()
                    break
                reservation = self._reserve_for_dispatch(prompt, params, futures, call)
                if reservation is None:
                    slots.release()
                    break
                seed = request_seed(params.seed, seeds[i]) if self.per_row_seed else int(params.seed)
                fut = pool.submit(self._run_one, i, prompt, seed, params, reservation, call)
                fut.add_done_callback(lambda _f: slots.release())
                futures.append(fut)
            for i, fut in enumerate(futures):
                results[i] = fut.result()
        for i in range(n):
            if results[i] is None:
                reason = "budget" if call.reason == "budget" else "error"
                results[i] = Generation(text=None, finish_reason=reason, error=call.message or "not sent")
        with self._stats_lock:
            self.stats["budget"] += sum(g.finish_reason == "budget" for g in results)
        if call.reason:
            log.warning("openai %s: stopped after %d of %d prompts: %s", self.model.id, len(futures), n, call.message)
        return results  # type: ignore[return-value]

    def _estimate(self, prompt: str) -> int:
        return len(prompt.encode("utf-8")) + self.prompt_overhead

    def _reserve(self, prompt: str, params: GenerationParams) -> Reservation:
        return self.budget.reserve(self.api_model, self._estimate(prompt), params.max_new_tokens)

    def _reserve_for_dispatch(self, prompt, params, futures, call: _Call) -> Reservation | None:
        """A reservation for the next prompt, or None (and the call stopped) when refused.

        A refusal may only be due to the worst cases held by requests in flight: wait for them
        to settle (their real usage replaces the worst case) and ask once more.
        """
        try:
            return self._reserve(prompt, params)
        except BudgetExceeded as e:
            refusal = e
        pending = [f for f in futures if not f.done()]
        if pending:
            concurrent.futures.wait(pending)
            if not call.stopped:
                try:
                    return self._reserve(prompt, params)
                except BudgetExceeded as e:
                    refusal = e
        call.stop("budget", redact(refusal))
        return None

    def _run_one(self, index: int, prompt: str, seed: int, params: GenerationParams, reservation: Reservation, call: _Call) -> Generation:
        attempt = 0
        while True:
            self._count("requests")
            try:
                outcome = self._attempt(prompt, seed, params)
            except Exception as e:  # noqa: BLE001 - not an API error: report it, do not retry
                outcome = _Outcome(usage_known=False, message=redact(f"{type(e).__name__}: {e}"))
            except BaseException:
                self.budget.commit(reservation)  # worst case: the request may have been served
                raise
            if outcome.generation is not None:
                g = outcome.generation
                if outcome.usage_known:
                    self.budget.commit(reservation, g.prompt_tokens, g.completion_tokens)
                else:
                    self.budget.commit(reservation)
                self._count("ok")
                return g
            if outcome.usage_known:
                self.budget.commit(reservation, 0, 0)  # an error answer: a request, no tokens
            else:
                self.budget.commit(reservation)
            if outcome.fatal:
                call.stop("error", outcome.message)
            if outcome.retry and call.stopped and not outcome.fatal:
                # the call stopped (budget refused, or a fatal error) while this one waited to retry
                reason = "budget" if call.reason == "budget" else "error"
                self._count("errors" if reason == "error" else "stopped")
                return Generation(text=None, finish_reason=reason, error=redact(f"{call.message}; last: {outcome.message}"))
            if not outcome.retry or attempt >= self.max_retries:
                self._count("errors")
                tries = f" (after {attempt + 1} attempts)" if attempt else ""
                log.warning("openai %s: prompt %d failed%s: %s", self.model.id, index, tries, outcome.message)
                return Generation(text=None, finish_reason="error", error=redact(outcome.message + tries))
            delay = self._backoff(attempt, outcome.retry_after)
            log.debug(
                "openai %s: prompt %d attempt %d failed (%s); retrying in %.3fs",
                self.model.id, index, attempt + 1, outcome.message, delay,
            )
            self._sleep(delay)
            attempt += 1
            self._count("retries")
            try:
                reservation = self._reserve(prompt, params)
            except BudgetExceeded as e:
                call.stop("budget", redact(e))
                return Generation(text=None, finish_reason="budget", error=redact(e))

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry_after_max)
        return self._rng.uniform(0.0, min(self.backoff_max, self.backoff_base * (2**attempt)))

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    def _attempt(self, prompt: str, seed: int, params: GenerationParams) -> _Outcome:
        """Send one request; classify what came back."""
        import openai

        sample = {
            "model": self.api_model,
            "temperature": float(params.temperature) if params.do_sample else 0.0,
            "top_p": float(params.top_p),
            "max_tokens": int(params.max_new_tokens),
            "seed": seed,
        }
        try:
            if self.api == "chat":
                resp = self._client.chat.completions.create(messages=[{"role": "user", "content": prompt}], **sample)
            else:
                resp = self._client.completions.create(prompt=prompt, **sample)
        except openai.APIStatusError as e:
            status = int(e.status_code)
            body = e.body if isinstance(e.body, dict) else {}
            detail = body.get("message") if isinstance(body.get("message"), str) else e.message
            msg = redact(f"{type(e).__name__} (HTTP {status}): {detail}")
            retry = status in RETRY_STATUS or status >= 500
            return _Outcome(
                retry=retry,
                fatal=status in FATAL_STATUS,
                retry_after=retry_after_seconds(getattr(e.response, "headers", None)) if retry else None,
                message=msg,
            )
        except openai.APITimeoutError:
            return _Outcome(retry=True, usage_known=False, message=f"timeout after {self.timeout:g}s")
        except openai.APIConnectionError as e:
            cause = e.__cause__ or e.__context__
            detail = f" ({type(cause).__name__})" if cause is not None else ""
            return _Outcome(retry=True, usage_known=False, message=redact(f"connection error{detail}"))
        except (openai.APIResponseValidationError, ValueError) as e:  # json.JSONDecodeError is a ValueError
            return _Outcome(retry=True, usage_known=False, message=redact(f"unreadable response: {type(e).__name__}: {e}", 200))
        except openai.OpenAIError as e:
            return _Outcome(message=redact(f"{type(e).__name__}: {e}"))
        return self._parse(resp)

    def _parse(self, resp: Any) -> _Outcome:
        choices = getattr(resp, "choices", None) or []
        if not choices:
            return _Outcome(retry=True, usage_known=False, message="unreadable response: no choices")
        choice = choices[0]
        if self.api == "chat":
            message = getattr(choice, "message", None)
            text = getattr(message, "content", None) if message is not None else None
        else:
            text = getattr(choice, "text", None)
        usage = getattr(resp, "usage", None)
        pt = getattr(usage, "prompt_tokens", None) if usage is not None else None
        ct = getattr(usage, "completion_tokens", None) if usage is not None else None
        known = pt is not None and ct is not None
        g = Generation(
            text=text if isinstance(text, str) else "",
            finish_reason=str(getattr(choice, "finish_reason", None) or "stop"),
            prompt_tokens=int(pt or 0),
            completion_tokens=int(ct or 0),
        )
        return _Outcome(generation=g, usage_known=known)


def _positive_int(model: ModelSpec, opts: dict, key: str, default: int, minimum: int = 1) -> int:
    value = opts.get(key, default)
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"model {model.id!r}: options.{key} must be an integer, not {value!r}") from None
    if v < minimum:
        raise ConfigError(f"model {model.id!r}: options.{key} must be >= {minimum}")
    return v


def _positive_float(model: ModelSpec, opts: dict, key: str, default: float, minimum: float = 1e-9) -> float:
    value = opts.get(key, default)
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"model {model.id!r}: options.{key} must be a number, not {value!r}") from None
    if not v >= minimum:
        raise ConfigError(f"model {model.id!r}: options.{key} must be >= {minimum:g}")
    return v
