"""The OpenAI backend and the budget, against the loopback fake server (no other network)."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from affalign.backends.base import Generation, GenerationParams, ModelSpec, make_backend
from affalign.backends.budget import Budget, load_price_table, shared_budget
from affalign.backends.openai_api import (
    LOCAL_DUMMY_KEY,
    OpenAIBackend,
    redact,
    request_seed,
    retry_after_seconds,
)
from affalign.errors import BudgetExceeded, ConfigError
from tests.support.openai_server import FaultPlan, fake_reply, start_server

KEY = "sk-test-SeCrEt-0123456789abcdef"
PARAMS = GenerationParams()  # T=0.9, top_p=0.9, 96 new tokens, seed 0
# Tiny backoffs; a generous timeout (the machine may be loaded) except where a test needs timeouts.
FAST = {"backoff_base": 0.005, "backoff_max": 0.02, "timeout": 5.0}
SHORT_TIMEOUT = 1.5  # for "slow" faults, which sleep 5 s (stopping the server wakes them)
NOISY_LOGGERS = ("affalign", "openai", "httpx", "httpx2", "httpcore", "httpcore2")


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
def server():
    with start_server() as srv:
        yield srv


class RecordingSleep:
    """A sleep that records the waits asked for and sleeps only a token time."""

    def __init__(self):
        self.delays: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self.lock:
            self.delays.append(seconds)
        time.sleep(0.001)


def backend_for(srv, kind="instruct", model="gpt-3.5-turbo-1106", budget=None, sleep=None, **options):
    opts = {"base_url": srv.base_url, **FAST, **options}
    spec = ModelSpec(id=model, backend="openai", kind=kind, path=model, options=opts)
    b = OpenAIBackend(spec, budget=budget, sleep=sleep or RecordingSleep())
    b.setup()
    return b


def prompts(n, prefix="prompt"):
    return [f"{prefix} number {i}" for i in range(n)]


def assert_answered(gens, ps, max_tokens=96):
    assert len(gens) == len(ps)
    for g, p in zip(gens, ps, strict=True):
        text, finish = fake_reply(p, max_tokens)
        assert (g.text, g.finish_reason, g.error) == (text, finish, None), p


# -- routing and parameters -----------------------------------------------------------------------


def test_registry_builds_openai_backend(server):
    b = make_backend(ModelSpec(id="gpt-3.5-turbo-1106", backend="openai", options={"base_url": server.base_url}))
    assert isinstance(b, OpenAIBackend) and not b.uses_gpu()


def test_instruct_model_uses_chat_with_params(server):
    ps = prompts(5)
    b = backend_for(server)
    gens = b.generate(ps, PARAMS)
    assert_answered(gens, ps)
    assert server.hits("chat") == 5 and server.hits("completions") == 0
    for r in server.requests:
        i = ps.index(r.prompt)
        assert r.body["model"] == "gpt-3.5-turbo-1106"
        assert r.body["messages"] == [{"role": "user", "content": ps[i]}]
        assert r.body["temperature"] == 0.9 and r.body["top_p"] == 0.9 and r.body["max_tokens"] == 96
        assert r.body["seed"] == request_seed(0, i)
        assert r.authorization == f"Bearer {KEY}"
    g = gens[0]
    assert g.prompt_tokens == 3 and g.completion_tokens == len(g.text.split())


def test_base_model_uses_completions(server):
    ps = prompts(4)
    b = backend_for(server, kind="base", model="davinci-002")
    gens = b.generate(ps, GenerationParams(max_new_tokens=5, temperature=0.7, top_p=1.0, seed=3))
    assert_answered(gens, ps, max_tokens=5)
    assert server.hits("completions") == 4 and server.hits("chat") == 0
    bodies = sorted((r.body for r in server.requests), key=lambda body: body["prompt"])
    assert [body["prompt"] for body in bodies] == sorted(ps)
    assert {(body["model"], body["temperature"], body["top_p"], body["max_tokens"]) for body in bodies} == {
        ("davinci-002", 0.7, 1.0, 5)
    }


def test_api_option_overrides_kind_and_path_is_the_api_name(server):
    spec = ModelSpec(id="my-babbage", backend="openai", kind="instruct", path="babbage-002",
                     options={"base_url": server.base_url, "api": "completions"})
    OpenAIBackend(spec).generate(["hello"], PARAMS)
    (r,) = server.requests
    assert r.endpoint == "completions" and r.body["model"] == "babbage-002"
    with pytest.raises(ConfigError):
        OpenAIBackend(ModelSpec(id="x", backend="openai", options={"api": "responses"}))


def test_finish_reason_length_and_greedy(server):
    gens = backend_for(server).generate(["a b c"], GenerationParams(max_new_tokens=2, do_sample=False))
    assert gens[0].finish_reason == "length" and len(gens[0].text.split()) == 2
    assert server.requests[0].body["temperature"] == 0.0


def test_seeds_per_row_and_fixed(server):
    b = backend_for(server, concurrency=1)
    b.generate(["same", "same", "same"], GenerationParams(seed=7), seeds=[10, 11, 12])
    assert [r.body["seed"] for r in server.requests] == [request_seed(7, s) for s in (10, 11, 12)]
    assert len({r.body["seed"] for r in server.requests}) == 3
    server.clear()
    backend_for(server, concurrency=1, per_row_seed=False).generate(["x", "y"], GenerationParams(seed=7))
    assert [r.body["seed"] for r in server.requests] == [7, 7]
    with pytest.raises(ValueError):
        b.generate(["a", "b"], PARAMS, seeds=[1])
    assert b.generate([], PARAMS) == []


def test_order_kept_with_uneven_latency(server):
    def slow_echo(body):
        p = body["messages"][-1]["content"]
        time.sleep(0.002 * (hash(p) % 10))
        return "re: " + p

    server.set_responder(slow_echo)
    ps = prompts(40)
    gens = backend_for(server, concurrency=8).generate(ps, PARAMS)
    assert [g.text for g in gens] == ["re: " + p for p in ps]


def test_concurrency_is_bounded():
    with start_server(latency=0.03) as srv:
        backend_for(srv, concurrency=3).generate(prompts(24), PARAMS)
        assert 2 <= srv.max_in_flight <= 3


# -- faults and retries ---------------------------------------------------------------------------


def test_scheduled_faults_each_prompt_answered_once_in_order():
    ps = prompts(10)
    schedule = {
        ps[1]: ["429"],
        ps[3]: ["500", "503"],
        ps[5]: ["slow:5"],  # beyond the client timeout
        ps[7]: ["reset"],
        ps[8]: ["malformed", "close"],
        ps[9]: ["502", "429", "500"],
    }
    with start_server(faults=schedule) as srv:
        b = backend_for(srv, concurrency=4, timeout=SHORT_TIMEOUT)
        t0 = time.monotonic()
        gens = b.generate(ps, PARAMS)
        assert time.monotonic() - t0 < 4.5  # the slow answer was abandoned, not awaited
        assert_answered(gens, ps)
        expected = {p: len(schedule.get(p, [])) + 1 for p in ps}
        assert {p: srv.hits(prompt=p) for p in ps} == expected
        assert len(srv.requests) == sum(expected.values()) == 20
        # exactly one successful answer per prompt, and it is the last request for that prompt
        for p in ps:
            faults = [r.fault for r in srv.requests if r.prompt == p]
            assert faults[-1] == "ok" and faults.count("ok") == 1
        assert b.stats["retries"] == 10 and b.stats["requests"] == 20 and b.stats["ok"] == 10


def test_arrival_sequence_with_one_worker():
    with start_server(faults=["429", "500", "ok", "reset", "ok", "503", "503"]) as srv:
        ps = prompts(4)
        gens = backend_for(srv, concurrency=1).generate(ps, PARAMS)
        assert_answered(gens, ps)
        assert len(srv.requests) == 9  # the sequence is used up at the 8th request: then ok
        assert [r.prompt for r in srv.requests] == [ps[0]] * 3 + [ps[1]] * 2 + [ps[2]] * 3 + [ps[3]]


def test_retry_after_is_honoured_mocked_sleep():
    plan = FaultPlan(by_prompt={"a": ["429:7"], "b": ["503:2.5"], "c": ["429:900"], "d": ["500", "500", "500"]})
    with start_server(faults=plan) as srv:
        sleep = RecordingSleep()
        b = backend_for(srv, sleep=sleep, concurrency=1, retry_after_max=60, backoff_base=0.5, backoff_max=10)
        gens = b.generate(["a", "b", "c", "d"], PARAMS)
        assert all(g.finish_reason in ("stop", "length") for g in gens)
    assert sleep.delays[:3] == [7.0, 2.5, 60.0]  # the server's wait; a huge one capped
    jitter = sleep.delays[3:]
    assert len(jitter) == 3 and all(0.0 <= d <= 0.5 * 2**k for k, d in enumerate(jitter))


def test_retry_after_is_honoured_real_time():
    with start_server(faults={"p": ["429:0.3"]}) as srv:
        b = OpenAIBackend(ModelSpec(id="m", backend="openai", options={"base_url": srv.base_url, **FAST}))
        gens = b.generate(["p"], PARAMS)
        assert gens[0].text == fake_reply("p", 96)[0]
        first, second = srv.requests
        assert second.time - first.time >= 0.29


def test_retry_after_header_forms():
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after": "0.25"}) == 0.25
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= retry_after_seconds({"retry-after": date}) <= 31
    assert retry_after_seconds({}) is None and retry_after_seconds({"retry-after": "soon"}) is None


def test_gives_up_after_max_retries_and_on_client_errors():
    plan = FaultPlan(by_prompt={"bad": ["500"] * 10, "invalid": ["400"], "gone": ["reset"] * 10})
    with start_server(faults=plan) as srv:
        b = backend_for(srv, max_retries=2, concurrency=3)
        gens = b.generate(["ok", "bad", "invalid", "gone"], PARAMS)
        assert gens[0].finish_reason == "stop"
        for g in gens[1:]:
            assert g.text is None and g.finish_reason == "error" and g.error
        assert "500" in gens[1].error and "after 3 attempts" in gens[1].error
        assert "400" in gens[2].error
        assert "connection error" in gens[3].error
        assert (srv.hits(prompt="bad"), srv.hits(prompt="invalid"), srv.hits(prompt="gone")) == (3, 1, 3)


def test_random_faults_twenty_percent_all_answered():
    # ("slow" is left to the scheduled test: timeouts are slow, and a loaded machine could make
    # a normal answer time out too, which would break the exact counts here)
    rates = {"429:0.01": 0.06, "500": 0.05, "503": 0.03, "reset": 0.03, "malformed": 0.03}
    ps = prompts(100, "tweet")
    with start_server(faults=FaultPlan(rates=rates, seed=1)) as srv:
        b = backend_for(srv, concurrency=8)
        gens = b.generate(ps, PARAMS)
        assert_answered(gens, ps)
        faulted = [r for r in srv.requests if r.fault != "ok"]
        assert len(faulted) >= 10  # the schedule really did fault about a fifth of the requests
        assert len(srv.requests) == 100 + len(faulted) == b.stats["requests"]
        assert all(srv.hits(prompt=p) == 1 + sum(r.prompt == p for r in faulted) for p in ps)
        assert srv.max_in_flight <= 8


# -- budget ---------------------------------------------------------------------------------------


class CheckedBudget(Budget):
    """A budget that asserts, after every reservation, that nothing held could pass the limits."""

    def reserve(self, model, prompt_tokens_estimate, max_new_tokens):
        r = super().reserve(model, prompt_tokens_estimate, max_new_tokens)
        s = self.spent()
        if self.max_requests is not None:
            assert s["requests"] + s["in_flight"]["requests"] <= self.max_requests
        if self.max_tokens is not None:
            assert s["tokens"] + s["in_flight"]["tokens"] <= self.max_tokens
        if self.max_dollars is not None:
            assert s["dollars"] + s["in_flight"]["dollars"] <= self.max_dollars + 1e-12
        return r


def split_budget(gens):
    done = [g for g in gens if g.finish_reason in ("stop", "length")]
    stopped = [g for g in gens if g.finish_reason == "budget"]
    assert len(done) + len(stopped) == len(gens)
    # what was done is kept, the rest is a suffix marked "budget", never sent
    assert gens[: len(done)] == done
    assert all(g.text is None and g.error and "max_" in g.error for g in stopped)
    return done, stopped


def test_budget_max_requests_with_concurrency(server):
    budget = CheckedBudget(max_requests=10)
    ps = prompts(25)
    gens = backend_for(server, budget=budget, concurrency=8).generate(ps, PARAMS)
    done, stopped = split_budget(gens)
    assert (len(done), len(stopped)) == (10, 15)
    assert len(server.requests) == 10 == budget.spent()["requests"]
    assert budget.spent()["in_flight"] == {"requests": 0, "tokens": 0, "dollars": 0.0}


def test_budget_counts_retries_as_requests():
    ps = prompts(12)
    with start_server(faults={ps[0]: ["429", "500"], ps[2]: ["reset"]}) as srv:
        budget = CheckedBudget(max_requests=8)
        gens = backend_for(srv, budget=budget, concurrency=8).generate(ps, PARAMS)
        assert len(srv.requests) == 8 == budget.spent()["requests"]
        served = sum(r.fault == "ok" for r in srv.requests)
        assert 5 <= served <= 6  # 3 faults among 8 requests, or 2 when a retry is refused
        assert sum(g.finish_reason == "stop" for g in gens) == served
        assert all(g.finish_reason in ("stop", "budget") for g in gens)


def test_budget_refuses_a_retry():
    with start_server(faults={"p": ["500"] * 5}) as srv:
        gens = backend_for(srv, budget=Budget(max_requests=2), concurrency=1).generate(["p", "q"], PARAMS)
        assert [g.finish_reason for g in gens] == ["budget", "budget"]
        assert len(srv.requests) == 2


def test_budget_max_tokens_with_concurrency(server):
    budget = CheckedBudget(max_tokens=300)
    ps = prompts(50)
    b = backend_for(server, budget=budget, concurrency=8)
    gens = b.generate(ps, PARAMS)
    done, stopped = split_budget(gens)
    spent = budget.spent()
    assert 5 < len(done) < 50 and stopped
    assert len(server.requests) == len(done) == spent["requests"]
    assert spent["tokens"] == sum(g.prompt_tokens + g.completion_tokens for g in done) <= 300
    # it stopped only when the next prompt's worst case no longer fit
    next_worst = len(ps[len(done)].encode()) + b.prompt_overhead + PARAMS.max_new_tokens
    assert 300 - spent["tokens"] < next_worst


def test_budget_max_dollars_with_concurrency(server):
    budget = CheckedBudget(max_dollars=0.0005)
    ps = prompts(50)
    b = backend_for(server, budget=budget, concurrency=8)
    gens = b.generate(ps, PARAMS)
    done, stopped = split_budget(gens)
    spent = budget.spent()
    assert len(done) > 5 and stopped
    assert len(server.requests) == len(done)
    price = budget.price("gpt-3.5-turbo-1106")
    expected = sum(price.cost(g.prompt_tokens, g.completion_tokens) for g in done)
    assert spent["dollars"] == pytest.approx(expected) and spent["dollars"] <= 0.0005
    next_worst = price.cost(len(ps[len(done)].encode()) + b.prompt_overhead, PARAMS.max_new_tokens)
    assert 0.0005 - spent["dollars"] < next_worst
    assert spent["by_model"]["gpt-3.5-turbo-1106"]["requests"] == len(done)


def test_budget_shared_by_two_backends_at_once(server):
    budget = CheckedBudget(max_requests=15)
    gen_backend = backend_for(server, budget=budget, concurrency=8)
    judge = backend_for(server, budget=budget, concurrency=8, model="gpt-4o-mini")
    out: dict[str, list[Generation]] = {}
    threads = [
        threading.Thread(target=lambda: out.__setitem__("g", gen_backend.generate(prompts(20, "gen"), PARAMS))),
        threading.Thread(target=lambda: out.__setitem__("j", judge.generate(prompts(20, "judge"), PARAMS))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = sum(g.finish_reason == "stop" for g in out["g"] + out["j"])
    assert ok == 15 == len(server.requests) == budget.spent()["requests"]
    assert set(budget.spent()["by_model"]) <= {"gpt-3.5-turbo-1106", "gpt-4o-mini"}


def test_budget_from_options_and_shared_by_name(server):
    def spec(budget):
        return ModelSpec(id="m", backend="openai", options={"base_url": server.base_url, "budget": budget})

    b1 = OpenAIBackend(spec({"name": "test-shared-run", "max_requests": 3}))
    b2 = OpenAIBackend(spec("test-shared-run"))
    assert b1.budget is b2.budget is shared_budget("test-shared-run")
    gens = b1.generate(["a", "b"], PARAMS) + b2.generate(["c", "d"], PARAMS)
    assert [g.finish_reason for g in gens] == ["stop", "stop", "stop", "budget"]
    with pytest.raises(ConfigError):
        shared_budget("test-shared-run", max_requests=4)
    private = OpenAIBackend(spec({"max_tokens": 10}))
    assert private.budget.max_tokens == 10 and private.budget is not b1.budget
    assert OpenAIBackend(spec(None), budget={"max_requests": 1}).budget.max_requests == 1
    with pytest.raises(ConfigError):
        OpenAIBackend(spec("no-such-budget"))


def test_dollar_limit_needs_a_price(server):
    with pytest.raises(ConfigError, match="no price"):
        backend_for(server, model="my-local-llama", budget=Budget(max_dollars=1.0))
    b = backend_for(server, model="my-local-llama", budget=Budget(max_dollars=1.0, prices={"my-local-llama": [0.0, 0.0]}))
    assert b.generate(["x"], PARAMS)[0].finish_reason == "stop"


def test_unknown_outcome_is_charged_the_worst_case():
    with start_server(faults={"p": ["slow:5"]}) as srv:
        budget = Budget(max_tokens=10_000)
        b = backend_for(srv, budget=budget, max_retries=0, timeout=0.5)
        (g,) = b.generate(["p"], PARAMS)
        assert g.finish_reason == "error" and "timeout" in g.error
        assert budget.spent()["tokens"] == len(b"p") + b.prompt_overhead + 96


def test_budget_unit():
    budget = Budget(max_requests=3, max_tokens=100)
    r1 = budget.reserve("gpt-3.5-turbo-1106", 10, 40)
    r2 = budget.reserve("gpt-3.5-turbo-1106", 10, 40)
    with pytest.raises(BudgetExceeded, match="max_tokens"):
        budget.reserve("gpt-3.5-turbo-1106", 10, 40)  # 100 held, 50 more would pass 100
    budget.commit(r1, 5, 5)
    budget.release(r2)
    with pytest.raises(ValueError):
        budget.commit(r1, 1, 1)
    r3 = budget.reserve("gpt-3.5-turbo-1106", 10, 40)
    budget.commit(r3)  # unknown usage: the worst case
    s = budget.spent()
    assert (s["requests"], s["tokens"], s["refused"]) == (2, 60, 1)
    assert s["dollars"] == pytest.approx((15 * 0.001 + 45 * 0.002) / 1000)
    assert s["remaining"] == {"requests": 1, "tokens": 40, "dollars": None}
    budget.commit(budget.reserve("gpt-3.5-turbo-1106", 1, 1), 0, 0)
    with pytest.raises(BudgetExceeded, match="max_requests"):
        budget.reserve("gpt-3.5-turbo-1106", 1, 1)
    assert "max_requests=3" in repr(budget)
    with pytest.raises(ConfigError):
        Budget.from_config({"max_request": 3})
    with pytest.raises(ConfigError):
        Budget(max_dollars=-1)


def test_budget_threads_never_overshoot():
    budget = Budget(max_tokens=5000, max_dollars=0.05)
    errors: list[Exception] = []

    def worker():
        try:
            for _ in range(200):
                try:
                    r = budget.reserve("gpt-4o", 30, 20)
                except BudgetExceeded:
                    return
                budget.commit(r, 30, 20)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = budget.spent()
    assert not errors and s["tokens"] <= 5000 and s["dollars"] <= 0.05
    assert s["tokens"] == 50 * s["requests"] and s["requests"] == 100  # 5000 / 50 per request


def test_price_table_has_the_paper_models():
    table = load_price_table()
    assert table["as_of"] and table["source"].startswith("https://")
    for m in ("gpt-3.5-turbo-1106", "davinci-002", "babbage-002", "gpt-4o-mini"):
        p = table["models"][m]
        assert 0 < p.input < 0.1 and 0 < p.output < 0.1


# -- keys -----------------------------------------------------------------------------------------


def test_key_never_in_logs_errors_or_reprs(caplog):
    for name in NOISY_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    caplog.set_level(logging.DEBUG)
    plan = FaultPlan(by_prompt={"a": ["429", "500"], "b": ["reset"], "c": ["malformed"], "d": ["500"] * 5})
    with start_server(faults=plan) as srv:
        b = backend_for(srv, max_retries=2)
        gens = b.generate(["a", "b", "c", "d"], PARAMS)
        assert srv.requests[0].authorization == f"Bearer {KEY}"  # the key was sent
    assert gens[3].finish_reason == "error"
    # a server that quotes the key it got back in its 401 message (OpenAI masks it, this one does not)
    with start_server(expected_key="sk-the-right-one") as srv:
        b401 = backend_for(srv, concurrency=2)
        gens401 = b401.generate(prompts(10), PARAMS)
        assert srv.hits() <= 2  # a 401 stops the call: the rest are not sent
    assert all(g.finish_reason == "error" and "401" in g.error for g in gens401)
    texts = [caplog.text, *(g.error or "" for g in gens + gens401)]
    texts += [repr(x) for x in (b, b401, vars(b), vars(b401), gens, gens401, b.budget.spent())]
    texts += [str(b), str(b401)]
    assert {r.name.split(".")[0] for r in caplog.records} >= {"affalign", "openai"}  # DEBUG records were captured
    for t in texts:
        assert KEY not in t and KEY[8:20] not in t


def test_redact():
    assert KEY not in redact(f"Incorrect API key provided: {KEY}.")
    assert redact("Authorization: Bearer abc.def-123") == "Authorization: ***"
    assert redact("headers={'authorization': 'Bearer xyz'}") == "headers={'authorization': '***'}"
    assert redact("https://user:pw@host/v1") == "https://***@host/v1"
    assert redact("?api_key=abcdef&x=1") == "?api_key=***&x=1"
    assert redact("plain message") == "plain message"
    assert len(redact("x" * 1000)) == 400


def test_key_from_environment_only(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    remote = ModelSpec(id="gpt-3.5-turbo-1106", backend="openai", options={"base_url": "https://api.example.invalid/v1"})
    with pytest.raises(ConfigError, match="OPENAI_API_KEY") as e:
        OpenAIBackend(remote).setup()
    assert KEY not in str(e.value)
    monkeypatch.setenv("MY_KEY_VAR", KEY + "-other")
    with start_server() as srv:
        named = backend_for(srv, api_key_env="MY_KEY_VAR")
        named.generate(["x"], PARAMS)
        local = backend_for(srv)  # no key, loopback server: a dummy key
        local.generate(["y"], PARAMS)
        assert srv.authorizations == [f"Bearer {KEY}-other", f"Bearer {LOCAL_DUMMY_KEY}"]


def test_base_url_from_environment(monkeypatch):
    with start_server() as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        b = OpenAIBackend(ModelSpec(id="babbage-002", backend="openai", kind="base"))
        assert b.generate(["z"], PARAMS)[0].text == fake_reply("z", 96)[0]
        assert srv.hits("completions") == 1


def test_job_budget_reaches_openai_models_and_one_replica_holds_it():
    from affalign.backends.base import ModelSpec
    from affalign.config import config_from_dict
    from affalign.errors import ConfigError
    from affalign.passes.models import with_budget
    from affalign.stages.generate import GenerateStage

    api = ModelSpec(id="gpt-x", backend="openai", kind="instruct", path="gpt-x", options={"concurrency": 4})
    hf = ModelSpec(id="tiny", backend="hf", kind="instruct", path="/nowhere")
    assert with_budget(api, {"max_requests": 10}).options == {"concurrency": 4, "budget": {"max_requests": 10}}
    assert with_budget(hf, {"max_requests": 10}) is hf
    own = ModelSpec(id="gpt-y", backend="openai", path="gpt-y", options={"budget": {"max_tokens": 5}})
    assert with_budget(own, {"max_requests": 10}).options["budget"] == {"max_tokens": 5}
    # the budget lives in the replica: an OpenAI model never gets more than one
    assert GenerateStage(api, use_gpu=False).resources.max_actors == 1
    assert GenerateStage(ModelSpec(id="gpt-z", backend="openai", path="gpt-z", options={"max_replicas": 8}), use_gpu=False).resources.max_actors == 1
    with pytest.raises(ConfigError, match="generation.budget"):
        config_from_dict({"name": "x", "dataset": "covid", "input": {"path": "x"}, "generation": {"budget": {"max_reqs": 3}}})
