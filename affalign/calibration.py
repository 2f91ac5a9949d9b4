"""Calibration of the report's calls on simulated runs with planted truth.

Each replicate simulates one dataset and dimension with exactly known population distributions,
runs the project's own statistics (:func:`affalign.stats.analyse_aggregated`, the code
:func:`affalign.stats.analyse` runs after summing texts by user and topic) and the report's own
decisions (:mod:`affalign.report.calls`), and records which calls were made. A call made where the
planted truth says the opposite (or nothing) is a false call; a call made where an effect of stated
size was planted counts toward power. Beside the calls, every printed topic-averaged S (each model
subject with each group, and the baseline) is checked against its planted value: the share of
intervals entirely above it and entirely below it (2.5% each at 95%), and the share of estimates
above it (:data:`CENTRING`, about half when the estimate is centred).

**Humans.** Two groups, ``liberal`` (the larger) and ``conservative``. Per topic the larger group has
``n ~ log-uniform(human_min, human_max)`` tweets and the smaller ``n / r`` with ``r ~ U(ratio)``
(at least ``human_min``). Tweets come from users: each user writes ``c ~ min(200, floor(U^-1))``
tweets in all (1 to 200, heavy-tailed, mean about 6), spread over topics by the topic sizes times a
per-user Dirichlet(0.3) preference (users concentrate on a few topics). A user has one random
effect per label, shared by all their tweets in every topic: their per-label mean is
``mu_t * (1 + a)``, ``a ~ U(-user_effect, user_effect)`` (mean-preserving, so the population
distribution of a topic is exactly ``normalise(mu_t)``). A tweet's score is its user's mean plus
noise ``h * U(-1, 1)`` per label, ``h = min(mean, 1 - mean)``; tweets are generated as their sums per
(user, topic), which is all the mean-mode statistics use (the sum of the noise of ``n`` tweets is
drawn from its normal limit, variance ``n h^2 / 3``). A fraction ``shared`` of a user's tweets in a
topic is also in a second topic: that noise is added to both (the tweet's texts are the same).

**Models.** 2,000 generations per topic and mode, each its own cluster, scores ``mu_m + h U(-1, 1)``.
Populations, solved per topic by bisection on the exact population S (see :func:`_plant`):

- ``onbase-lib`` / ``onbase-con``: S with liberals (conservatives) exactly equal to the baseline S
  between the groups (null of "below/above the baseline");
- ``below``: S with liberals = baseline - ``effect`` (power of "below");
- ``equi``: exactly equidistant from the groups (null of "bias"); ``biased``: bias = ``effect``;
- ``noop``: default biased toward liberals by ``2 effect``, liberal and conservative steering
  identical to default (null of "steering raises", "told apart", "steering removes the bias");
- ``steer``: default biased toward liberals by ``2 effect``; liberal steering raises S with liberals
  by ``effect``; conservative steering removes the bias (power of those calls).
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from affalign.report import calls
from affalign.stats import Agg, DimensionStats, analyse_aggregated, js_alignment, normalise_rows

LIB, CON = "human:liberal", "human:conservative"
GROUPS = ["liberal", "conservative"]
DIM = "emotion"


@dataclass(frozen=True)
class Scenario:
    """Sizes and truths of one simulated configuration."""

    name: str
    topics: int = 10
    labels: int = 11
    baseline_s: float = 0.94
    n_model: int = 2000
    human_min: int = 1000
    human_max: int = 100_000
    ratio: tuple[float, float] = (1.1, 16.0)
    user_effect: float = 0.5
    shared: float = 0.1
    effect: float = 0.01
    pools: int = 4  # population sets planted per scenario; replicate r uses set r % pools


# ---------------------------------------------------------------------------------------------
# Populations with exact truth
# ---------------------------------------------------------------------------------------------


def _s(p: np.ndarray, q: np.ndarray) -> float:
    return float(js_alignment(normalise_rows(p), normalise_rows(q)))


def _clip(mu: np.ndarray) -> np.ndarray:
    return np.clip(mu, 0.02, 0.64)  # user effects up to x1.5 keep every user mean below 0.96


def _bisect(f: Callable[[float], float], lo: float, hi: float) -> float:
    """Root of a function with f(lo) > 0 > f(hi) (Brent's method, to 1e-14)."""
    from scipy.optimize import brentq

    if not (f(lo) > 0 > f(hi)):
        raise ValueError("no sign change")
    return float(brentq(f, lo, hi, xtol=1e-14, rtol=1e-14))


def _ray(start: np.ndarray, direction: np.ndarray, target: Callable[[np.ndarray], float], value: float, hi: float = 4.0) -> np.ndarray:
    """The point ``clip(start + t direction)``, t in [0, hi], where ``target`` falls to ``value``."""
    t = _bisect(lambda t: target(_clip(start + t * direction)) - value, 0.0, hi)
    return _clip(start + t * direction)


@dataclass
class Truth:
    """Per-topic population mean vectors of every subject, and the planted values."""

    mu: dict[str, list[np.ndarray]] = field(default_factory=dict)


def _plant_topic(rng: np.random.Generator, sc: Scenario) -> dict[str, np.ndarray]:
    """One topic's population means (raises ValueError when a random direction cannot reach a value)."""
    k, eff = sc.labels, sc.effect
    mu_a = rng.uniform(0.05, 0.5, k)
    mu_b = _ray(mu_a, rng.normal(0, 0.1, k), lambda m: _s(mu_a, m), sc.baseline_s)
    base = _s(mu_a, mu_b)

    def off(anchor: np.ndarray, value: float) -> np.ndarray:
        return _ray(anchor, rng.normal(0, 0.1, k), lambda m: _s(anchor, m), value)

    def slide(c: np.ndarray, bias: float) -> np.ndarray:
        d = mu_b - mu_a
        t = _bisect(lambda t: _s(_clip(c + t * d), mu_a) - _s(_clip(c + t * d), mu_b) - bias, -3.0, 3.0)
        return _clip(c + t * d)

    centre = off(0.5 * (mu_a + mu_b), base - 0.03)  # a model off the groups' segment, slid along it to the wanted bias
    dflt = slide(centre, 2 * eff)
    s0 = _s(dflt, mu_a)
    return {
        LIB: mu_a, CON: mu_b,
        "model:onbase-lib:default": off(mu_a, base), "model:onbase-con:default": off(mu_b, base), "model:below:default": off(mu_a, base - eff),
        "model:equi:default": slide(centre, 0.0), "model:biased:default": slide(centre, eff),
        "model:noop:default": dflt, "model:noop:liberal": dflt, "model:noop:conservative": dflt, "model:steer:default": dflt,
        "model:steer:liberal": _ray(dflt, mu_a - dflt, lambda m: s0 - _s(m, mu_a), -eff, hi=1.0),
        "model:steer:conservative": _ray(dflt, mu_b - dflt, lambda m: _s(m, mu_a) - _s(m, mu_b), 0.0, hi=1.0),
    }


def _plant(rng: np.random.Generator, sc: Scenario) -> Truth:
    """Population means per topic with the planted relations exact (to root-finding precision)."""
    tr = Truth()
    for _ in range(sc.topics):
        for _attempt in range(1000):
            try:
                topic = _plant_topic(rng, sc)
            except ValueError:  # a random direction that cannot reach a value: draw another
                continue
            break
        else:
            raise RuntimeError(f"cannot plant the populations of scenario {sc.name!r}")
        for name, mu in topic.items():
            tr.mu.setdefault(name, []).append(mu)
    return tr


def check_truth(tr: Truth, sc: Scenario, tol: float = 1e-9) -> dict[str, float]:
    """The planted relations, recomputed from the population means (max abs error of each)."""
    err: dict[str, float] = {}

    def e(name: str, vals: list[float]) -> None:
        err[name] = float(max(abs(v) for v in vals))

    mu = tr.mu
    T = range(sc.topics)
    base = [_s(mu[LIB][t], mu[CON][t]) for t in T]
    e("baseline", [b - sc.baseline_s for b in base])
    e("onbase-lib", [_s(mu["model:onbase-lib:default"][t], mu[LIB][t]) - base[t] for t in T])
    e("onbase-con", [_s(mu["model:onbase-con:default"][t], mu[CON][t]) - base[t] for t in T])
    e("below", [_s(mu["model:below:default"][t], mu[LIB][t]) - (base[t] - sc.effect) for t in T])
    bias = {m: [_s(mu[m][t], mu[LIB][t]) - _s(mu[m][t], mu[CON][t]) for t in T] for m in ("model:equi:default", "model:biased:default", "model:steer:default", "model:steer:conservative")}
    e("equi", bias["model:equi:default"])
    e("biased", [b - sc.effect for b in bias["model:biased:default"]])
    e("steer-default", [b - 2 * sc.effect for b in bias["model:steer:default"]])
    e("steer-con", bias["model:steer:conservative"])
    e("steer-lib", [_s(mu["model:steer:liberal"][t], mu[LIB][t]) - _s(mu["model:steer:default"][t], mu[LIB][t]) - sc.effect for t in T])
    return err


# ---------------------------------------------------------------------------------------------
# Samples, summed by (cluster, topic)
# ---------------------------------------------------------------------------------------------


def _humans(rng: np.random.Generator, sc: Scenario, mus: list[np.ndarray], sizes: np.ndarray) -> Agg:
    """One group's tweets summed by (user, topic); see the module doc."""
    T, k = len(mus), sc.labels
    mu = np.stack(mus)  # (T, k)
    total = float(sizes.sum())
    mean_c = sum(1.0 / j for j in range(1, 201))  # E[min(200, floor(U^-1))]
    n_users = max(1, int(round(total / mean_c)))
    c = np.minimum(200, np.floor(1.0 / rng.uniform(1e-12, 1.0, n_users))).astype(np.int64)
    pref = rng.dirichlet(np.full(T, 0.3), n_users) * (sizes / total)[None, :]
    pref /= pref.sum(axis=1, keepdims=True)
    counts = rng.multinomial(c, pref)  # (users, T)
    u, t = np.nonzero(counts)
    n = counts[u, t].astype(np.float64)
    a = rng.uniform(-sc.user_effect, sc.user_effect, (n_users, k))
    m_ut = mu[t] * (1.0 + a[u])  # (pairs, k) user means
    h = np.minimum(m_ut, 1.0 - m_ut)
    n_sh = rng.binomial(counts[u, t], sc.shared).astype(np.float64)
    own = h * np.sqrt((n - n_sh) / 3.0)[:, None] * rng.standard_normal((len(u), k))
    z_sh = np.sqrt(n_sh / 3.0)[:, None] * rng.standard_normal((len(u), k))  # shared tweets' standardised noise
    sums = n[:, None] * m_ut + own + h * z_sh
    # the shared tweets again, in a second topic (the same noise, at that topic's user mean)
    has = n_sh > 0
    t2 = (t[has] + rng.integers(1, max(T, 2), has.sum())) % T if T > 1 else t[has]
    m2 = mu[t2] * (1.0 + a[u[has]])
    sums2 = n_sh[has, None] * m2 + np.minimum(m2, 1.0 - m2) * z_sh[has]
    keys = np.concatenate([t * n_users + u, t2 * n_users + u[has]])
    cnt = np.concatenate([n, n_sh[has]])
    sm = np.vstack([sums, sums2])
    uk, inv = np.unique(keys, return_inverse=True)
    cnt = np.bincount(inv, weights=cnt)
    sm = np.stack([np.bincount(inv, weights=sm[:, j]) for j in range(k)], axis=1)
    tt, uu = np.divmod(uk, n_users)
    codes, cnts, sums_l = [], [], []
    for ti in range(T):
        sel = tt == ti
        codes.append(uu[sel].astype(np.intp))
        cnts.append(cnt[sel])
        sums_l.append(sm[sel])
    return Agg([f"t{ti:02d}" for ti in range(T)], codes, cnts, sums_l, n_users)


def _model(rng: np.random.Generator, sc: Scenario, mus: list[np.ndarray]) -> Agg:
    """``n_model`` generations per topic, each its own cluster."""
    T, n = len(mus), sc.n_model
    codes, cnts, sums = [], [], []
    for ti, mu in enumerate(mus):
        h = np.minimum(mu, 1.0 - mu)
        codes.append(np.arange(ti * n, (ti + 1) * n, dtype=np.intp))
        cnts.append(np.ones(n))
        sums.append(mu[None, :] + h[None, :] * rng.uniform(-1.0, 1.0, (n, sc.labels)))
    return Agg([f"t{ti:02d}" for ti in range(T)], codes, cnts, sums, T * n)


@functools.lru_cache(maxsize=64)
def planted(sc: Scenario, pool: int) -> Truth:
    """The ``pool``-th population set of a scenario (planting is the slow part: cached)."""
    return _plant(np.random.default_rng([pool, zlib.crc32(sc.name.encode())]), sc)


def simulate(rng: np.random.Generator, sc: Scenario, tr: Truth | None = None) -> tuple[dict[tuple[str, str], Agg], Truth]:
    """One simulated run: (dimension, subject) -> texts summed by (cluster, topic), and its truth."""
    tr = _plant(rng, sc) if tr is None else tr
    big = np.exp(rng.uniform(math.log(sc.human_min), math.log(sc.human_max), sc.topics))
    small = np.maximum(sc.human_min, big / rng.uniform(*sc.ratio, sc.topics))
    aggs = {(DIM, LIB): _humans(rng, sc, tr.mu[LIB], big), (DIM, CON): _humans(rng, sc, tr.mu[CON], small)}
    for s, mus in tr.mu.items():
        if s.startswith("model:"):
            aggs[(DIM, s)] = _model(rng, sc, mus)
    return aggs, tr


# ---------------------------------------------------------------------------------------------
# Calls
# ---------------------------------------------------------------------------------------------

# (call, planted truth, nominal false-call rate or None for a power row)
CALLS: list[tuple[str, str, float | None]] = [
    ("below the baseline", "model exactly on the baseline (with each group)", 0.025),
    ("above the baseline", "model exactly on the baseline (with each group)", 0.025),
    ("bias toward the larger group", "model equidistant", 0.025),
    ("bias toward the smaller group", "model equidistant", 0.025),
    ("steering raises alignment", "steering a no-op (both modes)", 0.025),
    ("steered modes told apart", "liberal and conservative steering identical", 0.05),
    ("steering removes/reverses/reduces the bias", "steering a no-op, default biased", 0.025),
    ("S interval above the planted S", "every model-group pair and the baseline, topic-averaged S", 0.025),
    ("S interval below the planted S", "every model-group pair and the baseline, topic-averaged S", 0.025),
    ("power: below the baseline", "S = baseline - effect", None),
    ("power: bias toward the group", "bias = effect", None),
    ("power: steering raises alignment", "raises S by effect", None),
    ("power: steered modes told apart", "liberal steering raises S(lib) by effect, conservative removes a 2-effect bias", None),
    ("power: steering removes the bias", "bias 2 effect -> 0", None),
]


# not a call: the share of printed S estimates above their planted value (about 50% when centred)
CENTRING = "S estimate above the planted S"


def calls_of(st: DimensionStats, tr: Truth | None = None) -> dict[str, list[bool]]:
    """Every call of :data:`CALLS` made on one replicate (one bool per opportunity); with the planted
    truth ``tr``, also whether each printed topic-averaged S interval misses its planted value
    (and, under :data:`CENTRING`, whether the estimate lies above it)."""
    out: dict[str, list[bool]] = {name: [] for name, _, _ in CALLS}
    out[CENTRING] = []
    if tr is not None:
        for s, t in [(m, g) for m in st.model_subjects for g in (LIB, CON)] + [(LIB, CON)]:
            iv = st.alignment(s, t)
            if iv is None:
                continue
            truth = float(np.mean([_s(a, b) for a, b in zip(tr.mu[s], tr.mu[t], strict=True)]))
            out["S interval above the planted S"].append(iv.lo > truth)
            out["S interval below the planted S"].append(iv.hi < truth)
            out[CENTRING].append(iv.estimate > truth)
    for m, g in (("model:onbase-lib:default", LIB), ("model:onbase-con:default", CON)):
        sign = calls.vs_baseline_call(st, m, g)[0]  # type: ignore[index]
        out["below the baseline"].append(sign == -1)
        out["above the baseline"].append(sign == 1)
    sign = calls.bias_call(st, "model:equi:default", LIB, CON)[0]  # type: ignore[index]
    out["bias toward the larger group"].append(sign == 1)
    out["bias toward the smaller group"].append(sign == -1)
    for md, g in (("liberal", LIB), ("conservative", CON)):
        out["steering raises alignment"].append(calls.steering_call(st, f"model:noop:{md}", g)[0] == 1)  # type: ignore[index]
        out["steering removes/reverses/reduces the bias"].append(calls.bias_change_call(st, f"model:noop:{md}", LIB, CON)[0] in (calls.REMOVED, calls.REVERSED, calls.REDUCED))  # type: ignore[index]
    out["steered modes told apart"].append(calls.tells_apart_call(st, "noop", [LIB, CON])[0])  # type: ignore[index]
    out["power: below the baseline"].append(calls.vs_baseline_call(st, "model:below:default", LIB)[0] == -1)  # type: ignore[index]
    out["power: bias toward the group"].append(calls.bias_call(st, "model:biased:default", LIB, CON)[0] == 1)  # type: ignore[index]
    out["power: steering raises alignment"].append(calls.steering_call(st, "model:steer:liberal", LIB)[0] == 1)  # type: ignore[index]
    out["power: steered modes told apart"].append(calls.tells_apart_call(st, "steer", [LIB, CON])[0])  # type: ignore[index]
    out["power: steering removes the bias"].append(calls.bias_change_call(st, "model:steer:conservative", LIB, CON)[0] == calls.REMOVED)  # type: ignore[index]
    return out


def replicate(sc: Scenario, rep: int, *, draws: int, methods: tuple[str, ...] = ("bc",), seed: int = 0, exact_max: int = 20_000) -> dict[str, dict[str, list[bool]]]:
    """One simulated run analysed once; its calls under each interval method (same replicates)."""
    rng = np.random.default_rng([seed, rep, zlib.crc32(sc.name.encode())])
    aggs, tr = simulate(rng, sc, planted(sc, rep % sc.pools))
    topics = [f"t{ti:02d}" for ti in range(sc.topics)]
    st = analyse_aggregated(aggs, GROUPS, topics=topics, dimensions=[DIM], draws=draws, seed=rep, exact_max=exact_max, key=sc.name)[DIM]
    out = {}
    for m in methods:
        st.interval = m
        out[m] = calls_of(st, tr)
    return out


@dataclass
class Tally:
    """Counts of calls over replicates: call -> [made, opportunities], and the same per replicate
    (the opportunities of one replicate share its human samples, so they are not independent)."""

    counts: dict[str, list[int]] = field(default_factory=lambda: {name: [0, 0] for name in [c[0] for c in CALLS] + [CENTRING]})
    per_replicate: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def add(self, got: dict[str, list[bool]]) -> None:
        for name, flags in got.items():
            made, n = int(sum(flags)), len(flags)
            self.counts[name][0] += made
            self.counts[name][1] += n
            self.per_replicate.setdefault(name, []).append((made, n))

    def merge(self, other: Tally) -> None:
        for name, (made, n) in other.counts.items():
            self.counts[name][0] += made
            self.counts[name][1] += n
        for name, reps in other.per_replicate.items():
            self.per_replicate.setdefault(name, []).extend(reps)

    def rate(self, name: str) -> tuple[float, float, int]:
        """(rate, Monte Carlo standard error, opportunities).

        The standard error treats each replicate as a cluster of its opportunities (the ratio
        estimator's sandwich variance, ``R / (R - 1)`` small-sample factor): the 23 S intervals of a
        replicate, or its two baseline calls, share its human samples and miss together. With no
        call made it falls back to the binomial figure at half a call (never 0)."""
        made, n = self.counts[name]
        if n == 0:
            return float("nan"), float("nan"), 0
        p = made / n
        binomial = math.sqrt(max(p * (1 - p), 0.25 / n) / n)
        reps = self.per_replicate.get(name, [])
        if made == 0 or len(reps) < 2:
            return p, binomial, n
        m = np.array(reps, dtype=np.float64)
        resid = m[:, 0] - p * m[:, 1]
        clustered = math.sqrt(float(resid @ resid) * len(m) / (len(m) - 1)) / n
        return p, clustered, n


def excess_p_value(tally: Tally, name: str, nominal: float) -> float:
    """One-sided p-value of "the false-call rate is at most ``nominal``" (normal approximation with
    the replicate-clustered standard error): small when the rate is above nominal beyond Monte
    Carlo error."""
    from scipy.stats import norm

    p, se, n = tally.rate(name)
    if n == 0:
        return 1.0
    if se == 0.0:  # every replicate made the call at the same rate: no Monte Carlo spread to judge by
        return 0.0 if p > nominal else 1.0
    return float(norm.sf((p - nominal) / se))


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm-adjusted p-values (family-wise error over all the cells judged at once)."""
    order = sorted(p_values, key=p_values.get)  # type: ignore[arg-type]
    out, running = {}, 0.0
    for i, key in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * p_values[key]))
        out[key] = running
    return out


# Bradley (1978), "Robustness?", Br. J. Math. Stat. Psychol. 31: a test's size is robust when its
# rejection rate lies within [0.9, 1.1] x nominal (stringent) or [0.5, 1.5] x nominal (liberal).
BRADLEY_STRINGENT = 1.1
BRADLEY_LIBERAL = 1.5
