"""The words of a report: findings, notes, captions, tables and the method note, from the statistics.

The one job of this module is text: it turns an :class:`~affalign.report.analysis.Analysis` into a
:class:`ReportText` (plain strings, no HTML or Markdown; :mod:`affalign.report.render` escapes and
lays them out). The decisions behind the research-question sentences are
:mod:`affalign.report.calls` (the same functions the calibration suite counts), so what is
calibrated is what is printed; this module only words them.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from affalign import schema, stats
from affalign.report import calls
from affalign.report.analysis import Analysis, DimView, Settings, ViewResult
from affalign.report.load import KIND_TITLES, ModelInfo, RunData
from affalign.stats import Interval

# a table as text: its header and its rows of cells
Table = tuple[list[str], list[list[str]]]


# ---------------------------------------------------------------------------------------------
# Research questions (paper §4.1-4.2)
# ---------------------------------------------------------------------------------------------


@dataclass
class Answer:
    """One research question: its verdict (one sentence, with the numbers) and the sentences behind it."""

    question: str
    verdict: str  # one sentence, with the numbers
    details: list[str] = field(default_factory=list)


def _ci(iv: Interval, digits: int = 3) -> str:
    return f"[{iv.lo:.{digits}f}, {iv.hi:.{digits}f}]"


def _d(iv: Interval) -> str:
    return f"{iv.estimate:+.4f} [{iv.lo:+.4f}, {iv.hi:+.4f}]"


def _s(iv: Interval) -> str:
    return f"{iv.estimate:.3f} {_ci(iv)}"


def _p(iv: Interval, bare: bool = False) -> str:
    """A bootstrap-inversion p-value; at its floor 2 / (draws + 1) it is an upper bound."""
    if iv.p_value is None:
        return "–"
    if iv.p_value <= iv.p_floor + 1e-12:
        return f"≤ {iv.p_value:.2g}" if bare else f"≤ {iv.p_value:.2g} (no bootstrap replicate on the other side of 0)"
    return f"{iv.p_value:.3g}" if bare else f"= {iv.p_value:.3g}"


def _g(subject: str) -> str:
    return subject[len(schema.HUMAN_PREFIX) :] if subject.startswith(schema.HUMAN_PREFIX) else subject


def _name(m: ModelInfo) -> str:
    return f"{m.id} ({KIND_TITLES.get(m.kind, m.kind)})"


UNRESOLVED = "not resolved at this sample size"


def _quantified(counts: Mapping[Any, int], total: int, unit: str, words: Mapping[Any, tuple[str, str]]) -> str:
    """"All 4 model–group comparisons are below the baseline" / "1 of 4 ... is below ...; 3 ... are ..."."""
    out = []
    for key, (one, many) in words.items():
        c = counts.get(key, 0)
        if c == 0:
            continue
        if c == total:
            lead = f"the only {unit}" if total == 1 else f"{'both' if total == 2 else 'all ' + str(total)} {unit}s"
            out.append(f"{lead} {one if total == 1 else many}")
        else:
            out.append(f"{c} of {total} {unit}s {one if c == 1 else many}")
    return "; ".join(out)


def _split_kinds(models: list[ModelInfo]) -> tuple[list[ModelInfo], list[ModelInfo]]:
    """(instruction-tuned models, the others): the paper's steering analysis covers the former only."""
    return [m for m in models if m.kind == "instruct"], [m for m in models if m.kind != "instruct"]


def research_questions(view: DimView) -> list[Answer]:
    """The answers to the paper's research questions (§4.1-4.2) for one (dataset, dimension), worded from :mod:`affalign.report.calls`."""
    st = view.stats
    if st is None:
        return [Answer("Research questions", "Not answered: the run has no per-text score tables (scores/), so no intervals can be computed.")]
    humans = [h for h in view.humans if h in st.humans]
    answers: list[Answer] = []
    pairs = [(a, b) for a, b in itertools.combinations(humans, 2) if st.has(a, b)]
    base_txt = "; ".join(f"{_g(a)} vs {_g(b)}: S = {_s(iv)}" for a, b in pairs if (iv := st.alignment(a, b)) is not None)
    if not view.has_models() or not view.models:
        answers.append(Answer("Human baseline", f"Human baseline (alignment between the groups, mean over {len(view.topics)} topics): {base_txt or 'not available (fewer than two groups)'}. "
                              "No model generations in this run: the questions about models do not apply."))
        return answers
    models = [m for m in view.models if any(st.has(schema.model_subject(m.id, "default"), h) for h in humans)]

    # 1. below the baseline by default
    a1 = Answer("Is every model below the human baseline (default prompting)?", "")
    signs: list[int] = []
    for m in models:
        s = schema.model_subject(m.id, "default")
        for h in humans:
            got, iv, base = calls.vs_baseline_call(st, s, h), st.alignment(s, h), st.baseline(h)
            if got is None or iv is None or base is None:
                continue
            sign, diff = got
            signs.append(sign)
            word = {-1: "below the baseline", 1: "above the baseline", 0: f"{UNRESOLVED} (the interval of the difference contains 0)"}[sign]
            a1.details.append(f"{_name(m)} with {_g(h)}: S = {_s(iv)}, baseline {_s(base)}, difference {_d(diff)} on {diff.n_topics} topics, p {_p(diff)}: {word}.")
    if not signs:
        a1.verdict = "Not answerable: no model has default-mode results against two groups."
    else:
        counts = {k: signs.count(k) for k in (-1, 1, 0)}
        lead = "Yes" if counts[-1] == len(signs) else ("No" if counts[1] else "Not shown")
        a1.verdict = f"{lead}: " + _quantified(counts, len(signs), "model–group comparison", {
            -1: ("is below the baseline", "are below the baseline"), 1: ("is above the baseline", "are above the baseline"),
            0: (f"is {UNRESOLVED}", f"are {UNRESOLVED}")}) + " (95% interval of the difference to the baseline)."
    a1.details.insert(0, f"Baseline: {base_txt}." if base_txt else "Baseline: not available.")
    if len(humans) > 2:
        a1.details.insert(1, "With more than two groups, a group's baseline is its mean S with the other groups.")
    answers.append(a1)

    # 2. bias by default
    a2 = Answer("Which group is each model closer to by default (bias)?", "")
    tally: dict[str, int] = {}
    for a, b in pairs:
        for m in models:
            got = calls.bias_call(st, schema.model_subject(m.id, "default"), a, b)
            if got is None:
                continue
            sign, iv = got
            who = UNRESOLVED if sign == 0 else f"closer to {_g(a) if sign > 0 else _g(b)}"
            tally[who] = tally.get(who, 0) + 1
            a2.details.append(f"{_name(m)}: bias S({_g(a)}) − S({_g(b)}) = {_d(iv)}, p {_p(iv)} (null: equidistant): {who}.")
    unit = "model" if len(pairs) == 1 else "model–pair comparison"
    total = sum(tally.values())
    verdict = _quantified(tally, total, unit, {k: (f"is {k}", f"are {k}") for k in sorted(tally)})
    a2.verdict = (verdict[0].upper() + verdict[1:] + ".") if tally else "Not answerable: no default-mode bias."
    if tally:
        a2.details.insert(0, "Null hypothesis of each p-value: the model is equidistant from the two groups (topic-averaged bias 0); bootstrap test, "
                             "the model's and both groups' texts resampled, each S bias-corrected for its own sample sizes.")
    answers.append(a2)

    steered_modes = [md for md in view.modes if md != "default"]
    if not steered_modes:
        answers.append(Answer("Steering", "No steered generations in this run: the steering questions do not apply."))
        return answers
    instruct, others = _split_kinds(models)
    scope = ("Steering questions cover instruction-tuned models only, as in the paper; "
             + (f"base and other models ({', '.join(_name(m) for m in others)}) are listed apart below each answer and are not counted." if others else "this run has no base models."))

    # 3. tells liberal from conservative steering (one question over the groups: Bonferroni)
    a3 = Answer("Does each model tell liberal from conservative steering?", "")
    yes, asked = 0, 0
    for m in instruct + others:
        got = calls.tells_apart_call(st, m.id, humans) if humans else None
        if got is None:
            continue
        told, diffs = got
        parts = "; ".join(f"with {_g(h)} {_d(iv)}" for h, iv in diffs)
        lvl = f"{100 * (1 - (1 - stats.LEVEL) / max(len(diffs), 1)):.1f}%"
        text = (f"yes — S(liberal-steered) − S(conservative-steered) {parts} ({lvl} intervals, Bonferroni over {len(diffs)} groups)." if told else
                f"{UNRESOLVED} — the two steered modes are not told apart (S(liberal-steered) − S(conservative-steered) {parts}; every {lvl} interval contains 0).")
        if m in instruct:
            asked += 1
            yes += told
            a3.details.append(f"{_name(m)}: {text}")
        else:
            a3.details.append(f"(not counted) {_name(m)}: {text}")
    how = ("A 'yes' needs an interval of S(liberal-steered) − S(conservative-steered) to exclude 0 for some group; the intervals are Bonferroni-corrected "
           "over the groups, so a 'yes' for identical steered modes has at most a 5% chance")
    if not asked:
        a3.verdict = "Not answerable: no instruction-tuned model has both liberal- and conservative-steered generations."
    else:
        told_n = _quantified({1: yes, 0: asked - yes}, asked, "instruction-tuned model with both steered modes", {1: ("tells them apart", "tell them apart"), 0: (f"is {UNRESOLVED}", f"are {UNRESOLVED}")})
        a3.verdict = told_n[0].upper() + told_n[1:] + ". " + how + "."
    a3.details.insert(0, scope)
    answers.append(a3)

    # 4. steering raises alignment with the target group; 5. still below the baseline; 6. bias removed?
    a4 = Answer("Does steering raise alignment with the target group?", "")
    a5 = Answer("Is steered alignment still below the human baseline?", "")
    a6 = Answer("Does steering remove the bias?", "")
    c4: list[int] = []
    c5: list[int] = []
    c6: dict[str, int] = {}
    unmatched = []
    for m in instruct + others:
        counted = m in instruct
        tag = "" if counted else "(not counted) "
        for md in steered_modes:
            s = schema.model_subject(m.id, md)
            if not any(st.has(s, h) for h in humans):
                continue
            target = schema.human_subject(md) if schema.human_subject(md) in humans else None
            if target is None:
                unmatched.append(md)
            else:
                got = calls.steering_call(st, s, target)
                if got is not None:
                    sign, iv = got
                    if counted:
                        c4.append(sign)
                    word = {1: "raises it", -1: "lowers it", 0: UNRESOLVED}[sign]
                    a4.details.append(f"{tag}{_name(m)}, {md} steering: S with {_g(target)} changes by {_d(iv)} vs default: {word}.")
                vb, al = calls.vs_baseline_call(st, s, target), st.alignment(s, target)
                if vb is not None and al is not None:
                    sign, diff = vb
                    if counted:
                        c5.append(sign)
                    word = {-1: "still below the baseline", 1: "above the baseline", 0: UNRESOLVED}[sign]
                    a5.details.append(f"{tag}{_name(m)}, {md}-steered with {_g(target)}: S = {_s(al)}, difference to the baseline {_d(diff)}: {word}.")
            for a, b in pairs:
                got6 = calls.bias_change_call(st, s, a, b)
                if got6 is None:
                    continue
                key, bd, bs, ch = got6
                toward = _g(a) if bs.sign > 0 else _g(b)
                word = {
                    calls.UNRESOLVED: f"{UNRESOLVED}: neither the default nor the steered bias is resolved",
                    calls.KEPT: f"no — it keeps the bias toward {toward}",
                    calls.REDUCED: f"it reduces the bias but keeps it, toward {toward}",
                    calls.REMOVED: "yes — it removes the bias (the change is resolved against the default bias, and no bias is resolved after steering)",
                    calls.REVERSED: f"it reverses the bias, now toward {toward}",
                    calls.BIASED_AFTER: f"no — it is biased toward {toward} after steering (the default bias was not resolved)",
                }[key]
                if bd.sign != 0 and bs.sign == 0 and key == calls.UNRESOLVED:
                    word = f"{UNRESOLVED}: no bias is resolved after steering, but the change from the default bias is not resolved either"
                if counted:
                    c6[key] = c6.get(key, 0) + 1
                a6.details.append(f"{tag}{_name(m)}, {md} steering: bias {_d(bs)} (default {_d(bd)}, change {_d(ch)}): {word}.")
    if unmatched:
        note = f"No group is named {', '.join(sorted(set(repr(u) for u in unmatched)))}: steering toward it cannot be matched to a target group (the tables show its effect on every group)."
        a4.details.append(note)
        a5.details.append(note)
    none_instruct = "Not answerable: no instruction-tuned model has a steered mode that matches a group."
    a4.verdict = ("Of the instruction-tuned model–mode cases: " + _quantified({k: c4.count(k) for k in (1, -1, 0)}, len(c4), "case", {
        1: ("raises alignment with the target group", "raise alignment with the target group"), -1: ("lowers it", "lower it"), 0: (f"is {UNRESOLVED}", f"are {UNRESOLVED}")}) + "."
        if c4 else none_instruct)
    a5.verdict = ("Of the instruction-tuned steered model–mode cases: " + _quantified({k: c5.count(k) for k in (-1, 1, 0)}, len(c5), "case", {
        -1: ("is still below the baseline with its target group", "are still below the baseline with their target group"), 1: ("is above it", "are above it"),
        0: (f"is {UNRESOLVED}", f"are {UNRESOLVED}")}) + "."
        if c5 else none_instruct)
    if c6:
        total6 = sum(c6.values())
        a6.verdict = "Of the instruction-tuned steered model–mode cases: " + _quantified(c6, total6, "case", {
            calls.REMOVED: ("removes the bias", "remove the bias"), calls.REVERSED: ("reverses it", "reverse it"), calls.REDUCED: ("reduces but keeps it", "reduce but keep it"),
            calls.KEPT: ("keeps the default bias", "keep the default bias"), calls.BIASED_AFTER: ("is biased only after steering", "are biased only after steering"),
            calls.UNRESOLVED: (f"is {UNRESOLVED}", f"are {UNRESOLVED}")}) + "."
    else:
        a6.verdict = "Not answerable: no bias of instruction-tuned steered generations (needs two groups and an instruction-tuned model)."
    for a in (a4, a5, a6):
        a.details.insert(0, scope)
    answers += [a4, a5, a6]
    return answers


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


def _fmt(v: float | None, spec: str = ".4f") -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return format(v, spec)


def table_alignment(view: DimView) -> Table:
    """Alignment of every pair, mean over topics, with its interval."""
    head = ["subject", "target", "S (plug-in, mean over topics)", "std over topics", "S (estimate)", "95% interval", "topics"]
    rows = []
    keys = list(view.human_pairs()) + [(schema.model_subject(m.id, md), h) for m in view.models for md in view.modes for h in view.humans]
    for s, t in keys:
        ms = view.mean_std(s, t)
        if ms is None:
            continue
        iv = view.stats.alignment(s, t) if view.stats is not None else None
        rows.append([s, t, f"{ms[0]:.4f}", f"{ms[1]:.4f}", f"{iv.estimate:.4f}" if iv else "–", _ci(iv, 4) if iv else "–", str(ms[2])])
    return head, rows


def table_bias(view: DimView) -> Table:
    """Bias of every model and mode for every pair of groups, with its call."""
    head = ["model", "kind", "mode", "groups (A | B)", "bias S(A) − S(B)", "95% interval", "p (null: equidistant)", "call"]
    rows = []
    if view.stats is None:
        return head, rows
    for a, b in view.human_pairs():
        for m in view.models:
            for md in view.modes:
                iv = view.stats.bias(schema.model_subject(m.id, md), a, b)
                if iv is None:
                    continue
                call = {1: f"closer to {_g(a)}", -1: f"closer to {_g(b)}", 0: "not resolved"}[iv.sign]
                rows.append([m.id, m.kind, md, f"{_g(a)} | {_g(b)}", f"{iv.estimate:+.4f}", _ci(iv, 4), _p(iv, bare=True), call])
    return head, rows


def table_steering(view: DimView) -> Table:
    """Effect of each steered mode on S with each group, with its call."""
    head = ["model", "kind", "steering", "target", "S steered − S default", "95% interval", "call"]
    rows = []
    if view.stats is None:
        return head, rows
    for m in view.models:
        for md in [x for x in view.modes if x != "default"]:
            for h in view.humans:
                iv = view.stats.steering(schema.model_subject(m.id, md), h)
                if iv is None:
                    continue
                call = {1: "raises S", -1: "lowers S", 0: "not resolved"}[iv.sign]
                rows.append([m.id, m.kind, md, _g(h), f"{iv.estimate:+.4f}", _ci(iv, 4), call])
    return head, rows


def table_precision(view: DimView) -> Table:
    """Median interval widths against n (the precision curve, summarised over model subjects)."""
    head = ["n per topic", "mean n used", "per-topic S width (median)", "topic-averaged S width (median)", "bias width (median)"]
    if view.stats is None:
        return head, []
    return head, [[str(r["n"]), f"{r['n_used_mean']:.0f}", f"{r['topic_width_median']:.4f}", f"{r['average_width_median']:.4f}", _fmt(r["bias_width_median"])] for r in view.stats.precision_summary()]


# ---------------------------------------------------------------------------------------------
# The method note, warnings, notes and captions
# ---------------------------------------------------------------------------------------------


METHOD_NOTE = (
    "Alignment S = 1 − Jensen-Shannon distance (base 2) between two affect distributions of a topic, averaged over topics (paper eq. 1). "
    "Intervals: 95% {interval_name}, {draws} draws, seed {seed}. {resampling} "
    "Every distribution and S is recomputed in the run's mode ({mode}); topic averages, differences to the baseline, biases and steering effects are bootstrapped jointly. "
    "p-values (differences only) invert these intervals: the null hypothesis is the difference = 0 — for a bias, that the model is equidistant from the two groups. "
    "An answer is called only where its 95% interval excludes the opposite (for 'tells liberal from conservative steering', Bonferroni over the groups); "
    "otherwise it is reported as not resolved at this sample size. {verified}"
)
RESAMPLING_CLUSTERED = ("Resampling is by user on the human side (one Exp(1) weight per user per draw, shared by all the topics the user's tweets are in, "
                        "so tweets of one user and a tweet in several topics move together) and by text on the model side.")
RESAMPLING_TEXTS = ("The score tables carry no user ids: every text is resampled as its own cluster (one weight per text per draw, shared by the topics it is in); "
                    "tweets of one user are treated as independent, which makes human-side intervals too narrow when users post many tweets.")
VERIFIED = {
    "bc": ("Why bias-corrected: S from finite samples is biased downward (noise only adds divergence), more for smaller samples. Each S is corrected in two stages "
           "from its own bootstrap replicates: first the divergence's upward bias, on the divergence scale; then the upward bias that the square root in S = 1 − √D "
           "puts back (Jensen's inequality; it grows as S nears 1 and with the smaller sample, and adds up over topic averages and differences), on the S scale. "
           "So an interval contains its estimate, an equidistant model does not look closer to either group, and a model on the baseline is not called below it. "
           "Verified: on simulated runs with planted truth (10–26 topics, 2,000 generations per topic and mode, 1k–100k tweets per group and topic from users with "
           "1–200 tweets, unequal group sizes; 3,904 runs) no call this report makes was wrong more often than its nominal rate beyond Monte Carlo error "
           "(2.5% per one-sided call, 5% for 'tells apart'; pooled: 2.2% ± 0.2 false 'below the baseline' with a model exactly on it, 2.7% ± 0.3 false "
           "'closer to the larger group' with an equidistant model, the highest, 2.3% for the others), and printed S intervals missed the planted S 2.4% of the "
           "time on the high side and 2.5% on the low side; the one-stage correction used before put intervals above the planted S 3.8% of the time, and the "
           "uncorrected percentile interval made 12.0% false 'above the baseline' and 21.5% false 'closer to the larger group' calls on the same runs. See "
           "'Calibration of the report's calls, with a verdict on Monte Carlo error' in benchmarks/RESULTS.md and affalign/calibration.py."),
    "percentile": ("Warning: the percentile bootstrap is not bias-corrected. S from finite samples is biased downward, so these intervals are shifted, and a model exactly on "
                   "the baseline, or exactly equidistant between unequal groups, is called above/below the baseline or biased far more often than 2.5% (benchmarks/RESULTS.md); "
                   "use the default --interval bc for findings."),
    "basic": ("Basic intervals reflect the percentiles about the plug-in estimate (a first-order bias correction on the S scale); the calibrated default is --interval bc "
              "(benchmarks/RESULTS.md)."),
    "bc1": ("One-stage bias correction (divergence scale only), the default before the two-stage one; on the simulated runs of benchmarks/RESULTS.md it called "
            "'below the baseline' and 'closer to the smaller group' more often than 2.5%; use the default --interval bc for findings."),
}
INTERVAL_NAMES = {"bc": "bias-corrected clustered bootstrap interval", "percentile": "percentile clustered bootstrap interval", "basic": "basic clustered bootstrap interval",
                  "bc1": "one-stage bias-corrected clustered bootstrap interval"}


def method_note(settings: Settings, mode: str, clustered: bool) -> str:
    """What the intervals are, how they were resampled, and what of them was verified."""
    return METHOD_NOTE.format(interval_name=INTERVAL_NAMES[settings.interval], draws=settings.draws, seed=settings.seed, mode=mode,
                              resampling=RESAMPLING_CLUSTERED if clustered else RESAMPLING_TEXTS, verified=VERIFIED[settings.interval])


def tau_note(data: RunData) -> str:
    """The threshold-mode cut in words: tau, or the scorer's per-label thresholds where run.json records them."""
    cuts = sorted((data.doc.get("reduce_thresholds") or {}) if isinstance(data.doc, dict) else {})
    if not cuts:
        return f"tau = {data.tau}"
    return f"per-label thresholds of the scorer for {', '.join(cuts)}; tau = {data.tau} otherwise"




def run_warnings(data: RunData, analysis: Analysis, topic: str | None) -> list[str]:
    """The warnings at the top of the report: the reader's (run.json, scores/) and the analysis's."""
    out = list(data.warnings)
    if analysis.topic_missing:
        out.append(f"--topic {topic!r} is not a kept topic of this run: the distribution figures show the two most divergent topics instead.")
    if analysis.humans_only:
        out.append("Humans only: this run has no model generations. Shown: the human baseline, the groups' distributions and the per-topic heatmap; "
                   "the steered-alignment and bias figures and the research questions about models do not apply.")
    return out


def section_notes(vr: ViewResult) -> list[str]:
    """The notes above a (dataset, dimension): missing scores, inconsistent scores, the bias of the resampled baseline, humans only."""
    v = vr.view
    notes: list[str] = []
    if v.stats is None:
        notes.append("No per-text scores for this dataset: no intervals, tests or precision curve.")
    else:
        worst = vr.consistency
        if worst is not None and worst > 1e-5:
            notes.append(f"The per-topic S recomputed from scores/ differs from alignment.parquet by up to {worst:.2g}: the score tables are not exactly the texts the reduce used.")
        shift = vr.baseline_shift
        if shift is not None and shift > 0.001:
            notes.append(f"Bootstrap replicates of the human baseline lie {shift:.4f} below its plug-in estimate on average: the downward bias of S from finite samples"
                         + (", which the bias-corrected estimates and intervals remove (see the method note)." if v.stats.interval == "bc" else
                            "; these intervals are not bias-corrected (see the method note)."))
    if not v.has_models():
        notes.append("Humans only: figures (b) steered alignment and (e) bias do not apply; shown are the baseline, the distributions and the heatmap.")
    return notes


@dataclass
class Captions:
    """The caption of each figure of a (dataset, dimension), (a) to (f); ``topics``: (c) by topic."""

    default: str
    steered: str
    topics: dict[str, str]
    heatmap: str
    bias: str
    precision: str


def captions(vr: ViewResult) -> Captions:
    """The figure captions of a (dataset, dimension)."""
    v = vr.view
    why = "chosen with --topic" if vr.topic_chosen else ("among the 2 topics where default models are furthest from the groups" if v.has_models() else "among the 2 topics where the groups differ most")
    return Captions(
        default=(f"(a) Default alignment S of each model with each group ({v.dataset}, {v.dimension}): mean over topics (markers) ± std over topics (bars); "
                 "instruction-tuned models above the dashed separator, base models below; the human baseline (alignment between the groups) as a vertical dashed line, "
                 "its 95% interval shaded." if v.has_models() else f"(a) Human baseline ({v.dataset}, {v.dimension}): alignment between the groups, mean ± std over topics, with its 95% interval."),
        steered=f"(b) Steered alignment ({v.dataset}, {v.dimension}): liberal-steered (◀) and conservative-steered (▶) beside default (○) prompting, colour = group; mean over topics.",
        topics={t: f"(c) Affect distributions on topic “{t}” ({why}) of each group and each model and prompting mode; n = texts." for t in vr.topics},
        heatmap=f"(d) Per-topic alignment S ({v.dataset}, {v.dimension}): rows are topics, columns subject vs target.",
        bias=f"(e) Bias of each model and mode ({v.dataset}, {v.dimension}): S with the first group − S with the second, mean over topics, with its 95% bootstrap interval.",
        precision=(f"(f) Width of the 95% interval against the number of generations per topic ({v.dataset}, {v.dimension}), from subsampling each model's texts; "
                   "use it to choose n_responses."),
    )


def section_tables(v: DimView) -> list[tuple[str, Table]]:
    """The titled tables of a (dataset, dimension)."""
    tables = [("Alignment (mean over topics)", table_alignment(v))]
    if v.has_models():
        tables += [("Bias", table_bias(v)), ("Steering effects", table_steering(v))]
        tables.append(("Precision against n (median over model subjects)", table_precision(v)))
    return tables


@dataclass
class SectionText:
    """The words of one (dataset, dimension)."""

    result: ViewResult
    notes: list[str]
    answers: list[Answer]
    captions: Captions
    tables: list[tuple[str, Table]] = field(default_factory=list)

    @property
    def view(self) -> DimView:
        return self.result.view


@dataclass
class ReportText:
    """The words of a whole report: the warnings, the method note and one :class:`SectionText` per (dataset, dimension)."""

    warnings: list[str]
    method_note: str
    tau_note: str
    sections: list[SectionText]


def write(data: RunData, analysis: Analysis, topic: str | None = None) -> ReportText:
    """The text of a report from its statistics."""
    sections = [SectionText(vr, section_notes(vr), research_questions(vr.view), captions(vr), section_tables(vr.view)) for vr in analysis.views]
    return ReportText(run_warnings(data, analysis, topic), method_note(analysis.settings, data.mode, analysis.clustered), tau_note(data), sections)
