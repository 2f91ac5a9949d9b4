"""The report's figures (matplotlib's Agg canvas used directly: no pyplot, no global backend switch): paper Figs. 1-6 and two more.

Every function takes a :class:`DimView` (one dataset and one dimension, read from a run's tables)
and returns a :class:`matplotlib.figure.Figure`, or None where the figure does not apply (e.g. a
humans-only run has no steered alignment). Strings from the data reach matplotlib only through
:func:`tex_safe` (``$`` would start mathtext).
"""

from __future__ import annotations

import io
import warnings

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from affalign import schema
from affalign.report.analysis import MODE_ORDER, DimView
from affalign.report.load import KIND_ORDER, KIND_TITLES, ModelInfo
from affalign.stats import split_model_subject

MODE_MARKERS = {"default": "o", "liberal": "<", "conservative": ">"}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
GROUP_COLORS = {"liberal": "#1f77b4", "conservative": "#ff7f0e"}
RC = {"svg.hashsalt": "affalign", "svg.fonttype": "path", "font.size": 9, "axes.titlesize": 10}


def tex_safe(text: object, limit: int = 60) -> str:
    """A data string made safe for matplotlib text (no mathtext) and shortened to ``limit`` chars."""
    s = " ".join(str(text).split())
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.replace("$", r"\$")


def group_color(view: DimView, group: str) -> str:
    """The colour of a group: blue/orange for liberal/conservative, else the palette in the run's group order."""
    if group in GROUP_COLORS and all(g in GROUP_COLORS for g in view.groups):
        return GROUP_COLORS[group]
    return PALETTE[view.groups.index(group) % len(PALETTE)] if group in view.groups else "#333333"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def style():
    """The report's matplotlib style (a context: figures are built and rendered inside it)."""
    return matplotlib.rc_context(RC)


def render(fig: Figure, fmt: str, dpi: int = 110) -> bytes:
    """PNG or SVG bytes of a figure, without software/date metadata (reproducible files)."""
    buf = io.BytesIO()
    meta = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
    with matplotlib.rc_context(RC), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Glyph.*")
        warnings.filterwarnings("ignore", message=".*missing from font.*")
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=meta)
    return buf.getvalue()


def _model_rows(view: DimView) -> list[tuple[ModelInfo | None, str]]:
    """Rows top to bottom: instruct models, then base, then unknown; None rows mark a separator."""
    rows: list[tuple[ModelInfo | None, str]] = []
    for kind in KIND_ORDER:
        ms = [m for m in view.models if m.kind == kind or (kind == "unknown" and m.kind not in KIND_ORDER)]
        if not ms:
            continue
        if rows:
            rows.append((None, kind))
        rows += [(m, kind) for m in ms]
    return rows


def _row_axes(view: DimView, title: str, extra_height: float = 0.0):
    rows = _model_rows(view)
    models = [(i, m, k) for i, (m, k) in enumerate(rows) if m is not None]
    height = 2.0 + 0.42 * max(1, len(rows)) + extra_height
    fig = _figure(8.0, height)
    ax = fig.add_subplot(1, 1, 1)
    n = len(rows)
    ys = {m.id: n - 1 - i for i, m, _ in models}
    for i, (m, _kind) in enumerate(rows):
        if m is None:
            ax.axhline(n - 1 - i, color="black", linestyle="--", linewidth=1.0)
    ax.set_yticks([ys[m.id] for _, m, _ in models])
    ax.set_yticklabels([tex_safe(m.id, 40) for _, m, _ in models])
    ax.set_ylim(-0.8, n - 0.2)
    # kind labels on the right
    for kind in KIND_ORDER:
        kys = [ys[m.id] for _, m, k in models if k == kind]
        if kys:
            ax.annotate(KIND_TITLES[kind], xy=(1.01, (np.mean(kys) + 0.8) / (n + 0.6)), xycoords="axes fraction", rotation=90, va="center", fontsize=8, color="#555555")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return fig, ax, ys


def _baseline_lines(ax, view: DimView) -> list:
    handles = []
    for k, (a, b) in enumerate(view.human_pairs()):
        ms = view.mean_std(a, b)
        if ms is None:
            continue
        color = "#d62728" if k == 0 else PALETTE[(k + 3) % len(PALETTE)]
        ax.axvline(ms[0], color=color, linestyle="--", linewidth=1.3)
        iv = view.stats.alignment(a, b) if view.stats is not None else None
        if iv is not None:
            ax.axvspan(iv.lo, iv.hi, color=color, alpha=0.12, linewidth=0)
        label = f"baseline {tex_safe(a[6:], 20)}–{tex_safe(b[6:], 20)}: {ms[0]:.3f}"
        handles.append(Line2D([], [], color=color, linestyle="--", label=label))
    return handles


def fig_default_alignment(view: DimView) -> Figure | None:
    """(a) Default alignment of every model with every group, mean ± std over topics (paper Figs. 1/4)."""
    title = f"Default alignment S — {tex_safe(view.dataset, 30)}, {view.dimension}"
    if not view.has_models() or not view.models:
        return _baseline_only(view, title)
    fig, ax, ys = _row_axes(view, title)
    k = len(view.groups)
    offsets = np.linspace(-0.18, 0.18, k) if k > 1 else [0.0]
    handles = []
    for g, off in zip(view.groups, offsets, strict=True):
        h = schema.human_subject(g)
        xs, y, e = [], [], []
        for m in view.models:
            ms = view.mean_std(schema.model_subject(m.id, "default"), h)
            if ms is not None:
                xs.append(ms[0])
                e.append(ms[1])
                y.append(ys[m.id] + off)
        if xs:
            ax.errorbar(xs, y, xerr=e, fmt="o", color=group_color(view, g), capsize=3, markersize=6, linewidth=1.2)
        handles.append(Line2D([], [], marker="o", color=group_color(view, g), linestyle="", label=f"with {tex_safe(g, 24)}"))
    handles += _baseline_lines(ax, view)
    ax.set_xlabel("alignment S = 1 − JS distance (mean ± std over topics)")
    fig.legend(handles=handles, loc="outside lower center", fontsize=8, ncol=min(4, len(handles)), frameon=False)
    return fig


def _baseline_only(view: DimView, title: str) -> Figure | None:
    pairs = view.human_pairs()
    if not pairs:
        return None
    fig = _figure(7.0, 1.6 + 0.5 * max(1, len(pairs)))
    ax = fig.add_subplot(1, 1, 1)
    for i, (a, b) in enumerate(pairs):
        ms = view.mean_std(a, b)
        iv = view.stats.alignment(a, b) if view.stats is not None else None
        ax.errorbar([ms[0]], [i], xerr=[[ms[1]], [ms[1]]], fmt="o", color="#d62728", capsize=3)
        if iv is not None:
            ax.plot([iv.lo, iv.hi], [i + 0.15, i + 0.15], color="black", linewidth=3, solid_capstyle="butt")
    ax.set_yticks(range(len(pairs)))
    ax.set_yticklabels([f"{tex_safe(a[6:], 20)} vs {tex_safe(b[6:], 20)}" for a, b in pairs])
    ax.set_ylim(-0.8, len(pairs) - 0.2)
    ax.set_xlabel("human baseline S (mean ± std over topics; black bar: 95% bootstrap interval)")
    ax.set_title(title + " (no model generations in this run)")
    ax.grid(axis="x", alpha=0.3)
    return fig


def fig_steered_alignment(view: DimView) -> Figure | None:
    """(b) Liberal-steered (◀) and conservative-steered (▶) beside default (○) markers (paper Figs. 2/5)."""
    steered = [md for md in view.modes if md != "default"]
    if not view.has_models() or not view.models or not steered:
        return None
    fig, ax, ys = _row_axes(view, f"Steered alignment S — {tex_safe(view.dataset, 30)}, {view.dimension}")
    k = len(view.groups)
    offsets = np.linspace(-0.2, 0.2, k) if k > 1 else [0.0]
    for g, off in zip(view.groups, offsets, strict=True):
        h = schema.human_subject(g)
        for mode in [md for md in MODE_ORDER if md in view.modes] + [md for md in view.modes if md not in MODE_ORDER]:
            xs, y = [], []
            for m in view.models:
                ms = view.mean_std(schema.model_subject(m.id, mode), h)
                if ms is not None:
                    xs.append(ms[0])
                    y.append(ys[m.id] + off)
            if not xs:
                continue
            marker = MODE_MARKERS.get(mode, "s")
            face = "none" if mode == "default" else group_color(view, g)
            ax.scatter(xs, y, marker=marker, s=55, facecolors=face, edgecolors=group_color(view, g), linewidths=1.3, zorder=3)
    handles = [Line2D([], [], marker="s", color=group_color(view, g), linestyle="", label=f"with {tex_safe(g, 24)}") for g in view.groups]
    for mode in view.modes:
        handles.append(Line2D([], [], marker=MODE_MARKERS.get(mode, "s"), color="black", markerfacecolor="none" if mode == "default" else "black", linestyle="", label=f"{tex_safe(mode, 20)} prompting"))
    handles += _baseline_lines(ax, view)
    ax.set_xlabel("alignment S = 1 − JS distance (mean over topics)")
    fig.legend(handles=handles, loc="outside lower center", fontsize=8, ncol=min(4, len(handles)), frameon=False)
    return fig


def fig_topic_distributions(view: DimView, topic: str) -> Figure:
    """(c) Affect distribution of each group and each model/mode on one topic, grouped bars (Figs. 3/6)."""
    humans = [h for h in view.humans if (topic, h) in view.distributions]
    models = [m for m in view.models if any((topic, schema.model_subject(m.id, md)) in view.distributions for md in view.modes)]
    panels: list[tuple[str, list[tuple[str, str]]]] = []
    if models:
        for m in models:
            bars = [(h, f"{tex_safe(h[6:], 24)} (humans)") for h in humans]
            bars += [(schema.model_subject(m.id, md), "default prompting" if md == "default" else f"{tex_safe(md, 16)}-steered") for md in view.modes if (topic, schema.model_subject(m.id, md)) in view.distributions]
            panels.append((f"{tex_safe(m.id, 50)} ({KIND_TITLES.get(m.kind, m.kind)})", bars))
    else:
        panels.append(("human groups", [(h, f"{tex_safe(h[6:], 24)} (humans)") for h in humans]))
    labels = view.labels
    fig = _figure(max(9.5, 0.75 * len(labels) + 3.5), 0.4 + 2.3 * len(panels))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    x = np.arange(len(labels))
    for ax, (title, bars) in zip(axes, panels, strict=True):
        width = 0.84 / max(1, len(bars))
        for j, (subject, label) in enumerate(bars):
            vec = view.distributions[(topic, subject)]
            if subject.startswith(schema.HUMAN_PREFIX):
                color, hatch, edge = group_color(view, subject[6:]), None, "none"
            else:
                mode = split_model_subject(subject)[1]  # type: ignore[index]
                color = {"default": "#9e9e9e", "liberal": "#6baed6", "conservative": "#fd8d3c"}.get(mode, "#bbbbbb")
                hatch, edge = {"default": None, "liberal": "//", "conservative": "\\\\"}.get(mode), "#444444"
            n = view.n_texts.get((topic, subject))
            ax.bar(x - 0.42 + width * (j + 0.5), vec, width, label=f"{label} (n={n})" if n else label, color=color, hatch=hatch, edgecolor=edge, linewidth=0.4)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=35, ha="right")
        ax.set_ylabel("share")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{tex_safe(view.dataset, 30)}, {view.dimension}: “{tex_safe(topic, 80)}”", fontsize=10)
    return fig


def heatmap_columns(view: DimView) -> list[tuple[str, str]]:
    cols = list(view.human_pairs())
    for m in view.models:
        for md in view.modes:
            for h in view.humans:
                if view.series(schema.model_subject(m.id, md), h):
                    cols.append((schema.model_subject(m.id, md), h))
    return cols


def fig_topic_heatmap(view: DimView) -> Figure | None:
    """(d) Per-topic alignment, topics × (subject, target)."""
    cols = heatmap_columns(view)
    if not cols or not view.topics:
        return None
    mat = np.full((len(view.topics), len(cols)), np.nan)
    for j, (s, t) in enumerate(cols):
        ser = view.series(s, t)
        for i, topic in enumerate(view.topics):
            if topic in ser:
                mat[i, j] = ser[topic]
    fig = _figure(min(40.0, 3.5 + 0.42 * len(cols)), min(40.0, 2.2 + 0.3 * len(view.topics)))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(np.ma.masked_invalid(mat), aspect="auto", cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="S", shrink=0.8)

    def col_label(s: str, t: str) -> str:
        if s.startswith(schema.HUMAN_PREFIX):
            return f"{tex_safe(s[6:], 14)} vs {tex_safe(t[6:], 14)}"
        mid, md = split_model_subject(s)  # type: ignore[misc]
        return f"{tex_safe(mid, 22)} [{tex_safe(md[:3], 4)}] vs {tex_safe(t[6:], 12)}"

    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([col_label(s, t) for s, t in cols], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(view.topics)))
    ax.set_yticklabels([tex_safe(t, 45) for t in view.topics], fontsize=7)
    if mat.size <= 600:
        finite = mat[np.isfinite(mat)]
        mid = float(np.median(finite)) if finite.size else 0.0
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                if np.isfinite(mat[i, j]):
                    ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=6, color="white" if mat[i, j] < mid else "black")
    ax.set_title(f"Per-topic alignment S — {tex_safe(view.dataset, 30)}, {view.dimension}")
    return fig


def fig_bias(view: DimView, summary_bias: dict[tuple[str, str], tuple[float, float]] | None = None) -> Figure | None:
    """(e) Bias (S with the first group − S with the second) per model and mode, with its 95% interval."""
    pairs = view.human_pairs()
    if not view.has_models() or not view.models or not pairs:
        return None
    rows = _model_rows(view)
    n = len(rows)
    fig = _figure(8.0, 0.8 + len(pairs) * (1.2 + 0.42 * max(1, n)))
    axes = fig.subplots(len(pairs), 1, squeeze=False)[:, 0]
    for ax, (a, b) in zip(axes, pairs, strict=True):
        ys = {}
        for i, (m, _k) in enumerate(rows):
            if m is None:
                ax.axhline(n - 1 - i, color="black", linestyle="--", linewidth=1.0)
            else:
                ys[m.id] = n - 1 - i
        offsets = dict(zip(view.modes, np.linspace(-0.22, 0.22, len(view.modes)) if len(view.modes) > 1 else [0.0], strict=True))
        for mode in view.modes:
            for m in view.models:
                s = schema.model_subject(m.id, mode)
                iv = view.stats.bias(s, a, b) if view.stats is not None else None
                y = ys[m.id] + offsets[mode]
                color = {"default": "#333333", "liberal": "#1f77b4", "conservative": "#ff7f0e"}.get(mode, "#777777")
                if iv is not None:
                    ax.errorbar([iv.estimate], [y], xerr=[[iv.estimate - iv.lo], [iv.hi - iv.estimate]], fmt=MODE_MARKERS.get(mode, "s"), color=color, capsize=3, markerfacecolor="none" if mode == "default" else color)
                elif summary_bias and (s, f"{a}|{b}") in summary_bias:
                    mean, std = summary_bias[(s, f"{a}|{b}")]
                    ax.errorbar([mean], [y], xerr=[std], fmt=MODE_MARKERS.get(mode, "s"), color=color, capsize=2, alpha=0.6)
        ax.axvline(0.0, color="black", linewidth=1.0)
        ax.set_yticks(list(ys.values()))
        ax.set_yticklabels([tex_safe(mid, 40) for mid in ys])
        ax.set_ylim(-0.8, n - 0.2)
        ga, gb = tex_safe(a[6:], 20), tex_safe(b[6:], 20)
        what = "95% bootstrap interval" if view.stats is not None else "± std over topics (no score tables: no intervals)"
        ax.set_xlabel(f"bias = S(model, {ga}) − S(model, {gb}), mean over topics, {what}")
        lim = max(abs(v) for v in ax.get_xlim())
        ax.set_xlim(-lim, lim)
        ax.annotate(f"closer to {ga} →", xy=(0.99, 1.01), xycoords="axes fraction", ha="right", va="bottom", fontsize=8)
        ax.annotate(f"← closer to {gb}", xy=(0.01, 1.01), xycoords="axes fraction", ha="left", va="bottom", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], marker=MODE_MARKERS.get(md, "s"), linestyle="", color={"default": "#333333", "liberal": "#1f77b4", "conservative": "#ff7f0e"}.get(md, "#777777"), markerfacecolor="none" if md == "default" else None, label=f"{tex_safe(md, 16)} prompting") for md in view.modes]
    fig.legend(handles=handles, loc="outside lower center", fontsize=8, ncol=len(handles), frameon=False)
    fig.suptitle(f"Bias — {tex_safe(view.dataset, 30)}, {view.dimension}", fontsize=10)
    return fig


def fig_precision(view: DimView) -> Figure | None:
    """(f) 95% interval width against the number of generations per topic (to choose n_responses)."""
    if view.stats is None:
        return None
    rows = view.stats.precision_summary()
    detail = view.stats.precision()
    if len(rows) < 1:
        return None
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    ns = np.array([r["n"] for r in rows])
    series = [("topic_width_median", "per-topic S", "#1f77b4", lambda r: "|" not in r["target"], "topic_width_median"),
              ("average_width_median", "topic-averaged S", "#2ca02c", lambda r: "|" not in r["target"], "average_width"),
              ("bias_width_median", "bias (topic-averaged)", "#d62728", lambda r: "|" in r["target"], "average_width")]
    for key, label, color, pick, dkey in series:
        ys = np.array([r[key] for r in rows], dtype=float)
        if not np.isfinite(ys).any():
            continue
        lo = [min((d[dkey] for d in detail if d["n"] == n and pick(d)), default=np.nan) for n in ns]
        hi = [max((d[dkey] for d in detail if d["n"] == n and pick(d)), default=np.nan) for n in ns]
        ax.fill_between(ns, lo, hi, color=color, alpha=0.12, linewidth=0)
        ax.plot(ns, ys, marker="o", color=color, label=f"{label} (median over model subjects; band: range)")
    ax.set_xscale("log")
    ax.set_xticks(ns)
    ax.set_xticklabels([str(int(n)) for n in ns])
    ax.minorticks_off()
    ax.set_xlabel("generations per topic and mode (n_responses)")
    ax.set_ylabel("width of the 95% interval")
    ax.set_title(f"Precision against n — {tex_safe(view.dataset, 30)}, {view.dimension}")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", fontsize=7, frameon=False)
    return fig
