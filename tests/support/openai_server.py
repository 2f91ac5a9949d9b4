"""A loopback OpenAI-compatible HTTP server for tests, with a fault schedule.

Serves ``POST /v1/chat/completions`` and ``POST /v1/completions`` (also without the ``/v1``
prefix) and ``GET /v1/models`` on 127.0.0.1 at a free port, from a thread of the test process.
Nothing leaves the machine.

Usage::

    from tests.support.openai_server import FaultPlan, start_server

    with start_server(faults=["429:0.05", "500", "ok"]) as srv:       # arrival order
        client = OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0)
        ...
        assert srv.hits("chat") == 4
        assert srv.requests[0].authorization == "Bearer sk-test"

Answers
    By default the reply is :func:`fake_reply` of the prompt: deterministic words derived from a
    hash of the prompt (3 to 12 of them), cut to ``max_tokens`` with ``finish_reason="length"``,
    else ``"stop"``. Usage counts one token per whitespace-separated word (prompt: of the
    completions ``prompt`` or of all chat message contents; completion: of the reply), so they
    never exceed the prompt's UTF-8 byte count. ``responder(request_json)`` replaces it and
    returns the content as a ``str``, or a ``dict`` with ``text`` and optionally
    ``finish_reason``, ``prompt_tokens``, ``completion_tokens``, and ``usage: None`` to leave the
    usage block out. A responder that raises gives a 500.

Faults
    A fault is a spec string ``KIND[:ARG]``:

    ``ok``            a normal answer
    ``429``, ``500``, ``503``, any ``NNN``   that HTTP status with an OpenAI-style error body;
                      ``ARG`` (seconds, may be fractional) is sent as ``Retry-After``
                      (default: ``FaultPlan.retry_after`` for 429 and 503, else none)
    ``slow``          sleeps ``ARG`` seconds (default ``FaultPlan.slow_seconds``) then answers
                      normally; use it with a client timeout shorter than that
    ``reset``         reads the request, then closes the socket with a TCP RST, no response
    ``close``         reads the request, then closes the socket cleanly (FIN), no response
    ``malformed``     200 with ``Content-Type: application/json`` and a truncated JSON body

    ``faults=`` takes a :class:`FaultPlan`, or a shorthand: a list (the arrival-order
    ``sequence``), a mapping of spec -> probability (``rates``) or of prompt -> list of specs
    (``by_prompt``). For each request the plan looks, in order, at ``by_prompt[prompt][attempt]``
    (``attempt``: how many earlier requests carried the same prompt), ``sequence[arrival index]``,
    then ``rates``; otherwise ``ok``. Rate draws hash ``(seed, prompt, attempt)``, so they do
    not depend on thread timing: with concurrency the same prompts meet the same faults.

Records
    ``srv.requests`` lists a :class:`RecordedRequest` per request received (in arrival order),
    with its parsed JSON body, headers, the ``Authorization`` header, the prompt, its attempt
    number and the fault served. The server itself logs nothing (it never prints headers).
    ``expected_key``: when set, a request without ``Authorization: Bearer <expected_key>`` gets a
    401 whose message quotes the key it received in full (harsher than OpenAI, which masks
    it), to check that clients redact error messages.
"""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Fault", "FaultPlan", "FakeOpenAIServer", "RecordedRequest", "fake_reply", "prompt_of", "start_server"]

Responder = Callable[[dict[str, Any]], "str | dict[str, Any]"]

_CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
_COMPLETION_PATHS = ("/v1/completions", "/completions")
_MODELS_PATHS = ("/v1/models", "/models")


@dataclass(frozen=True)
class Fault:
    """One parsed fault spec (see the module docstring)."""

    kind: str  # ok | status | slow | reset | close | malformed
    status: int = 200
    arg: float | None = None

    @classmethod
    def parse(cls, spec: str | int | Fault) -> Fault:
        if isinstance(spec, Fault):
            return spec
        text = str(spec).strip().lower()
        name, _, arg_text = text.partition(":")
        arg = float(arg_text) if arg_text else None
        if name.isdigit():
            status = int(name)
            if not 100 <= status <= 599:
                raise ValueError(f"bad status in fault spec {spec!r}")
            return cls("ok" if status == 200 else "status", status, arg)
        if name in ("ok", "slow", "reset", "close", "malformed"):
            return cls(name, 200, arg)
        raise ValueError(f"unknown fault spec {spec!r}")

    def __str__(self) -> str:
        name = str(self.status) if self.kind == "status" else self.kind
        return name if self.arg is None else f"{name}:{self.arg:g}"


@dataclass
class FaultPlan:
    """Which fault each request meets (see the module docstring)."""

    sequence: list[str | Fault] = field(default_factory=list)
    by_prompt: dict[str, list[str | Fault]] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    retry_after: float | None = None  # Retry-After for 429 / 503 faults that carry none
    slow_seconds: float = 5.0

    def __post_init__(self) -> None:
        self._sequence = [Fault.parse(s) for s in self.sequence]
        self._by_prompt = {p: [Fault.parse(s) for s in specs] for p, specs in self.by_prompt.items()}
        self._rates = [(Fault.parse(s), float(r)) for s, r in self.rates.items()]
        if sum(r for _, r in self._rates) > 1.0 + 1e-9:
            raise ValueError("fault rates add up to more than 1")

    @classmethod
    def coerce(cls, faults: Any) -> FaultPlan:
        if faults is None:
            return cls()
        if isinstance(faults, FaultPlan):
            return faults
        if isinstance(faults, Mapping):
            values = list(faults.values())
            if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                return cls(rates=dict(faults))
            return cls(by_prompt={k: [v] if isinstance(v, (str, Fault)) else list(v) for k, v in faults.items()})
        if isinstance(faults, (str, Fault)):
            return cls(sequence=[faults])
        if isinstance(faults, Iterable):
            return cls(sequence=list(faults))
        raise TypeError(f"faults: give a FaultPlan, a list, or a mapping, not {type(faults).__name__}")

    def choose(self, index: int, prompt: str | None, attempt: int) -> Fault:
        specs = self._by_prompt.get(prompt) if prompt is not None else None
        if specs is not None and attempt < len(specs):
            return specs[attempt]
        if index < len(self._sequence):
            return self._sequence[index]
        if self._rates:
            digest = hashlib.sha256(f"{self.seed}|{prompt}|{attempt}".encode()).digest()
            u = int.from_bytes(digest[:8], "big") / 2**64
            acc = 0.0
            for fault, rate in self._rates:
                acc += rate
                if u < acc:
                    return fault
        return Fault("ok")


@dataclass
class RecordedRequest:
    """One request the server received."""

    index: int  # arrival order, from 0
    method: str
    path: str
    endpoint: str  # chat | completions | models | other
    headers: dict[str, str]
    authorization: str | None
    body: dict[str, Any] | None  # parsed JSON (None when absent or unparsable)
    prompt: str | None
    attempt: int  # earlier requests with the same prompt
    fault: str  # what was served: ok, 429, slow:1, reset, ...
    time: float  # time.monotonic() on arrival


def prompt_of(body: dict[str, Any] | None) -> str | None:
    """The prompt of a request: the completions ``prompt``, or the last chat message's content."""
    if not isinstance(body, dict):
        return None
    if "messages" in body:
        msgs = body.get("messages") or []
        content = msgs[-1].get("content") if msgs and isinstance(msgs[-1], dict) else None
        return content if isinstance(content, str) else json.dumps(content)
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = prompt[0] if prompt and isinstance(prompt[0], str) else json.dumps(prompt)
    return prompt if isinstance(prompt, str) else None


def _words(text: str) -> int:
    return len(text.split())


def fake_reply(prompt: str, max_tokens: int | None = None) -> tuple[str, str]:
    """The default answer to ``prompt``: ``(text, finish_reason)``, deterministic."""
    h = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
    n = 3 + int(h[:2], 16) % 10
    words = [f"w{h[4 * i : 4 * i + 4]}" for i in range(n)]
    if max_tokens is not None and int(max_tokens) < n:
        return " ".join(words[: max(0, int(max_tokens))]), "length"
    return " ".join(words), "stop"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, addr, handler, fake: FakeOpenAIServer):
        self.fake = fake
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(addr, handler)

    def process_request(self, request, client_address):
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        pass  # clients hang up on slow answers on purpose; stay quiet


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format, *args):  # noqa: A002 - never print requests or headers
        pass

    def do_POST(self):
        self.server.fake._handle(self)

    def do_GET(self):
        self.server.fake._handle(self)


class FakeOpenAIServer:
    """A running fake server; see :func:`start_server`."""

    def __init__(
        self,
        faults: Any = None,
        responder: Responder | None = None,
        *,
        expected_key: str | None = None,
        latency: float = 0.0,
        host: str = "127.0.0.1",
    ):
        self._lock = threading.Lock()
        self._plan = FaultPlan.coerce(faults)
        self._responder = responder
        self.expected_key = expected_key
        self.latency = float(latency)
        self._records: list[RecordedRequest] = []
        self._seen: Counter[str | None] = Counter()
        self._in_flight = 0
        self._max_in_flight = 0
        self._stopping = threading.Event()
        self._httpd = _HTTPServer((host, 0), _Handler, self)
        self.host, self.port = self._httpd.server_address[:2]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    # -- public API ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to give an OpenAI client as ``base_url``."""
        return f"{self.url}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, in arrival order."""
        with self._lock:
            return list(self._records)

    @property
    def authorizations(self) -> list[str | None]:
        return [r.authorization for r in self.requests]

    @property
    def max_in_flight(self) -> int:
        """The most requests the server was handling at once."""
        with self._lock:
            return self._max_in_flight

    def hits(self, endpoint: str | None = None, prompt: str | None = None) -> int:
        """How many requests arrived (for ``endpoint`` chat/completions/models, for ``prompt``)."""
        return sum(
            1
            for r in self.requests
            if (endpoint is None or r.endpoint == endpoint) and (prompt is None or r.prompt == prompt)
        )

    def set_faults(self, faults: Any) -> None:
        """Replace the fault plan (arrival indices and attempt counts are not reset; see clear)."""
        with self._lock:
            self._plan = FaultPlan.coerce(faults)

    def set_responder(self, responder: Responder | None) -> None:
        with self._lock:
            self._responder = responder

    def clear(self) -> None:
        """Forget the recorded requests, the attempt counts and the in-flight maximum."""
        with self._lock:
            self._records.clear()
            self._seen.clear()
            self._max_in_flight = self._in_flight

    def stop(self) -> None:
        """Stop serving, drop open connections and wake sleeping (slow) handlers. Idempotent."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._httpd.shutdown()
        with self._httpd.sockets_lock:
            socks = list(self._httpd.open_sockets)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"FakeOpenAIServer({self.base_url!r}, requests={len(self._records)})"

    # -- request handling ----------------------------------------------------------------------

    def _handle(self, h: _Handler) -> None:
        arrived = time.monotonic()
        path = h.path.split("?", 1)[0].rstrip("/")
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length > 0 else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if path in _CHAT_PATHS:
            endpoint = "chat"
        elif path in _COMPLETION_PATHS:
            endpoint = "completions"
        elif path in _MODELS_PATHS:
            endpoint = "models"
        else:
            endpoint = "other"
        prompt = prompt_of(body) if endpoint in ("chat", "completions") else None
        headers = {k: v for k, v in h.headers.items()}
        with self._lock:
            index = len(self._records)
            attempt = self._seen[prompt]
            self._seen[prompt] += 1
            fault = self._plan.choose(index, prompt, attempt) if endpoint in ("chat", "completions") else Fault("ok")
            plan, responder = self._plan, self._responder
            self._records.append(
                RecordedRequest(
                    index, h.command, path, endpoint, headers, h.headers.get("Authorization"),
                    body if isinstance(body, dict) else None, prompt, attempt, str(fault), arrived,
                )
            )
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            self._serve(h, endpoint, body, fault, plan, responder)
        except OSError:
            h.close_connection = True  # the client went away (e.g. it timed out)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _serve(self, h, endpoint, body, fault: Fault, plan: FaultPlan, responder) -> None:
        if endpoint == "models":
            if h.command != "GET":
                return self._send_error(h, 405, "use GET")
            return self._send_json(h, 200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
        if endpoint == "other" or h.command != "POST":
            return self._send_error(h, 404, f"no route for {h.command} {h.path}", "invalid_request_error")
        if self.expected_key is not None:
            auth = h.headers.get("Authorization") or ""
            if auth != f"Bearer {self.expected_key}":
                got = auth.removeprefix("Bearer ")
                return self._send_error(h, 401, f"Incorrect API key provided: {got}.", "invalid_request_error", "invalid_api_key")
        if not isinstance(body, dict):
            return self._send_error(h, 400, "the body must be a JSON object", "invalid_request_error")
        if endpoint == "chat" and not isinstance(body.get("messages"), list):
            return self._send_error(h, 400, "'messages' is required", "invalid_request_error")
        if endpoint == "completions" and "prompt" not in body:
            return self._send_error(h, 400, "'prompt' is required", "invalid_request_error")

        if fault.kind == "status":
            retry_after = fault.arg if fault.arg is not None else (plan.retry_after if fault.status in (429, 503) else None)
            extra = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
            kind = "rate_limit_exceeded" if fault.status == 429 else "server_error"
            return self._send_error(h, fault.status, f"fake fault {fault.status}", kind, headers=extra)
        if fault.kind in ("reset", "close"):
            h.close_connection = True
            if fault.kind == "reset":
                h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                h.connection.close()
            else:
                h.connection.shutdown(socket.SHUT_RDWR)
            return None
        if fault.kind == "malformed":
            return self._send_raw(h, 200, b'{"id": "cmpl-fake", "object": "chat.completion", "choices": [{"index": 0, "mess')
        if fault.kind == "slow":
            if self._stopping.wait(fault.arg if fault.arg is not None else plan.slow_seconds):
                return None
        elif self.latency > 0 and self._stopping.wait(self.latency):
            return None

        try:
            reply = self._reply(endpoint, body, responder)
        except Exception as e:  # noqa: BLE001 - a broken responder is a 500, visible to the test
            return self._send_error(h, 500, f"responder failed: {type(e).__name__}: {e}", "server_error")
        return self._send_json(h, 200, reply)

    def _reply(self, endpoint: str, body: dict[str, Any], responder: Responder | None) -> dict[str, Any]:
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        if endpoint == "chat":
            prompt_text = " ".join(
                m.get("content") for m in body["messages"] if isinstance(m, dict) and isinstance(m.get("content"), str)
            )
        else:
            prompt_text = prompt_of(body) or ""
        prompt = prompt_of(body) or ""
        if responder is None:
            text, finish = fake_reply(prompt, max_tokens)
            out: dict[str, Any] = {"text": text, "finish_reason": finish}
        else:
            got = responder(body)
            out = {"text": got} if isinstance(got, str) else dict(got)
            out.setdefault("finish_reason", "stop")
        text = str(out.get("text", ""))
        usage = {
            "prompt_tokens": int(out.get("prompt_tokens", _words(prompt_text))),
            "completion_tokens": int(out.get("completion_tokens", _words(text))),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        with self._lock:
            n = len(self._records)
        model = body.get("model", "fake-model")
        if endpoint == "chat":
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": out["finish_reason"],
                "logprobs": None,
            }
            reply = {"id": f"chatcmpl-fake-{n}", "object": "chat.completion", "system_fingerprint": "fp_fake"}
        else:
            choice = {"index": 0, "text": text, "finish_reason": out["finish_reason"], "logprobs": None}
            reply = {"id": f"cmpl-fake-{n}", "object": "text_completion"}
        reply.update({"created": int(time.time()), "model": model, "choices": [choice]})
        if "usage" not in out or out["usage"] is not None:
            reply["usage"] = usage
        return reply

    @staticmethod
    def _send_raw(h: _Handler, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()

    def _send_json(self, h: _Handler, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(h, status, json.dumps(obj).encode("utf-8"), headers)

    def _send_error(self, h, status: int, message: str, kind: str = "server_error", code: str | None = None, headers=None):
        self._send_json(h, status, {"error": {"message": message, "type": kind, "param": None, "code": code}}, headers)


def start_server(
    faults: Any = None,
    responder: Responder | None = None,
    *,
    expected_key: str | None = None,
    latency: float = 0.0,
    host: str = "127.0.0.1",
) -> FakeOpenAIServer:
    """Start a fake OpenAI server on ``host`` at a free port; it is also a context manager.

    ``faults``: a :class:`FaultPlan` or its shorthand (list: arrival sequence; mapping of spec ->
    rate; mapping of prompt -> specs). ``responder(request_json) -> str | dict``: the reply
    content. ``expected_key``: answer 401 to other keys. ``latency``: seconds each normal
    answer waits (to make requests overlap).
    """
    return FakeOpenAIServer(faults, responder, expected_key=expected_key, latency=latency, host=host)
