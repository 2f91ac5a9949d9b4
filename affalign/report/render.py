"""Rendering a report: figures, ``report.html``, ``report.md`` and the CSV tables, as bytes.

The one job of this module is layout: it draws the figures (:mod:`affalign.report.figures`) and
lays out the text of :mod:`affalign.report.prose` as one self-contained HTML file (figures embedded
as base64 PNG, the CSS of ``report.css`` inline, no scripts, no remote resources, every string from
the data HTML-escaped) and as Markdown (every string made inert), and writes the rows of
:mod:`affalign.report.analysis` as CSV. It reads and writes no files of the run: it returns
{relative name: bytes} for :mod:`affalign.report.build` to publish.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import re
import zlib
from dataclasses import dataclass
from importlib import resources

from affalign.report import figures as F
from affalign.report.analysis import Analysis, DimView
from affalign.report.load import KIND_TITLES, RunData
from affalign.report.prose import ReportText, SectionText

# the report's style sheet, inlined into report.html (a data file, so it can be read and edited as CSS)
CSS = resources.files("affalign.report").joinpath("report.css").read_text(encoding="utf-8")
INTERVAL_COLUMNS = ["dataset", "dimension", "statistic", "subject", "target", "topic", "estimate", "lo", "hi", "n_topics", "std", "p_value", "plugin"]
PRECISION_COLUMNS = ["dataset", "dimension", "subject", "target", "n", "n_used_mean", "n_topics", "topic_width_median", "average_width"]


def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe slug of a data string, with a short hash so distinct strings never collide."""
    base = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:limit] or "x"
    if base == text:
        return base
    return f"{base}-{zlib.crc32(str(text).encode('utf-8')):08x}"


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def md_esc(text: object) -> str:
    """A data string made inert in Markdown (no HTML, no emphasis, no table breaks, one line)."""
    s = " ".join(str(text).split())
    s = html.escape(s, quote=False)
    return re.sub(r"([\\`*_\[\]|~])", r"\\\1", s)


@dataclass
class FigureOut:
    """A rendered figure: its relative path without extension, its caption and its PNG and SVG bytes."""

    name: str  # relative path without extension
    caption: str
    png: bytes
    svg: bytes


@dataclass
class Section:
    """One (dataset, dimension) ready to lay out: its text and its rendered figures."""

    text: SectionText
    figures: list[FigureOut]

    @property
    def view(self) -> DimView:
        return self.text.view


def section_figures(text: SectionText) -> list[FigureOut]:
    """The figures (a) to (f) of a (dataset, dimension) that apply to it, rendered as PNG and SVG."""
    vr, cap = text.result, text.captions
    v = vr.view
    base = f"figures/{slug(v.dataset, 20)}_{v.dimension}"
    figs: list[FigureOut] = []

    def add(fig, name: str, caption: str) -> None:
        if fig is None:
            return
        figs.append(FigureOut(name, caption, F.render(fig, "png"), F.render(fig, "svg")))

    with F.style():
        add(F.fig_default_alignment(v), f"{base}_a_default", cap.default)
        add(F.fig_steered_alignment(v), f"{base}_b_steered", cap.steered)
        for t in vr.topics:
            add(F.fig_topic_distributions(v, t), f"{base}_c_topic_{slug(t)}", cap.topics[t])
        add(F.fig_topic_heatmap(v), f"{base}_d_heatmap", cap.heatmap)
        add(F.fig_bias(v, vr.summary_bias), f"{base}_e_bias", cap.bias)
        add(F.fig_precision(v), f"{base}_f_precision", cap.precision)
    return figs


def sections(text: ReportText) -> list[Section]:
    """Every (dataset, dimension) of the report with its figures drawn."""
    return [Section(s, section_figures(s)) for s in text.sections]


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    num = re.compile(r"^[+\-−]?[0-9.]+(e[+-]?[0-9]+)?$|^\[.*\]$")
    out = ["<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for r in rows:
        out.append("<tr>" + "".join(f'<td class="num">{esc(c)}</td>' if num.match(str(c)) else f"<td>{esc(c)}</td>" for c in r) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "_none_\n"
    lines = ["| " + " | ".join(md_esc(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(md_esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _bootstrap_line(analysis: Analysis) -> str:
    s = analysis.settings
    return f"{s.draws} draws, seed {s.seed}, {s.interval} intervals, " + ("resampled by user" if analysis.clustered else "resampled by text (no user ids)")


def render_html(data: RunData, text: ReportText, secs: list[Section], analysis: Analysis, generated: str) -> str:
    """``report.html``: one self-contained page (inline CSS, figures as data: URIs, no scripts)."""
    doc = data.doc
    title = f"affalign report — {doc.get('job') or ''} ({', '.join(data.datasets)})"
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{esc(title)}</title>", f"<style>\n{CSS}</style></head><body>", f"<h1>{esc(title)}</h1>"]
    out.append("<table>")
    info = [
        ("run", data.uri),
        ("status", doc.get("status", "unknown")),
        ("groups (in order)", ", ".join(data.groups)),
        ("distribution mode", f"{data.mode}" + (f" ({text.tau_note})" if data.mode == "threshold" else "")),
        ("topics", f"{len(data.topic_order)} kept" + (f", {len((doc.get('topics') or {}).get('dropped', []))} dropped" if doc.get("topics") else "")),
        ("models", "; ".join(f"{m.id} ({KIND_TITLES.get(m.kind, m.kind)}{', ' + m.backend if m.backend else ''})" for m in data.models) or "none (humans only)"),
        ("bootstrap", _bootstrap_line(analysis)),
        ("generated", generated),
    ]
    out += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in info]
    out.append("</table>")
    for w in text.warnings:
        out.append(f'<div class="warn">{esc(w)}</div>')
    out.append(f'<div class="note">{esc(text.method_note)}</div>')
    out.append("<h2>Contents</h2><ul>")
    for i, sec in enumerate(secs):
        out.append(f'<li><a href="#s{i}">{esc(sec.view.dataset)} — {esc(sec.view.dimension)}</a></li>')
    out.append("</ul>")
    for i, sec in enumerate(secs):
        v = sec.view
        out.append(f'<h2 id="s{i}">{esc(v.dataset)} — {esc(v.dimension)}</h2>')
        for n in sec.text.notes:
            out.append(f'<div class="note">{esc(n)}</div>')
        out.append("<h3>Research questions</h3>")
        for a in sec.text.answers:
            out.append(f"<h4>{esc(a.question)}</h4><p class=\"verdict\">{esc(a.verdict)}</p>")
            if a.details:
                out.append('<ul class="details">' + "".join(f"<li>{esc(d)}</li>" for d in a.details) + "</ul>")
        out.append("<h3>Figures</h3>")
        for f in sec.figures:
            b64 = base64.b64encode(f.png).decode("ascii")
            out.append(f'<figure><img alt="{esc(f.caption)}" src="data:image/png;base64,{b64}"><figcaption>{esc(f.caption)}</figcaption></figure>')
        for title_, (head, rows) in sec.text.tables:
            out.append(f"<h3>{esc(title_)}</h3>")
            out.append(_html_table(head, rows))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render_md(data: RunData, text: ReportText, secs: list[Section], analysis: Analysis) -> str:
    """``report.md``: the same report in Markdown, figures linked as files under ``figures/``."""
    doc = data.doc
    lines = [f"# affalign report — {md_esc(doc.get('job') or '')} ({md_esc(', '.join(data.datasets))})", ""]
    lines += [
        f"- run: {md_esc(data.uri)}",
        f"- status: {md_esc(doc.get('status', 'unknown'))}",
        f"- groups (in order): {md_esc(', '.join(data.groups))}",
        f"- distribution mode: {md_esc(data.mode)}" + (f" ({text.tau_note})" if data.mode == "threshold" else ""),
        f"- topics: {len(data.topic_order)} kept",
        f"- models: {md_esc('; '.join(f'{m.id} ({KIND_TITLES.get(m.kind, m.kind)})' for m in data.models) or 'none (humans only)')}",
        f"- bootstrap: {_bootstrap_line(analysis)}",
        "",
    ]
    for w in text.warnings:
        lines += [f"> **Warning:** {md_esc(w)}", ""]
    lines += ["> " + md_esc(text.method_note), ""]
    for sec in secs:
        v = sec.view
        lines += [f"## {md_esc(v.dataset)} — {md_esc(v.dimension)}", ""]
        for n in sec.text.notes:
            lines += [f"> {md_esc(n)}", ""]
        lines += ["### Research questions", ""]
        for a in sec.text.answers:
            lines += [f"**{md_esc(a.question)}** {md_esc(a.verdict)}", ""]
            lines += [f"- {md_esc(d)}" for d in a.details]
            lines.append("")
        lines += ["### Figures", ""]
        for f in sec.figures:
            lines += [f"![{md_esc(f.caption)}]({f.name}.png)", "", f"_{md_esc(f.caption)}_ ([SVG]({f.name}.svg))", ""]
        for title_, (head, rows) in sec.text.tables:
            lines += [f"### {md_esc(title_)}", "", _md_table(head, rows)]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict], columns: list[str]) -> bytes:
    """Rows as CSV bytes (floats to 6 significant digits, None as an empty field)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else (f"{r[k]:.6g}" if isinstance(r.get(k), float) else r.get(k))) for k in columns})
    return buf.getvalue().encode("utf-8")


def figure_files(secs: list[Section]) -> dict[str, bytes]:
    """Every figure as ``figures/<name>.png`` and ``.svg``, in report order."""
    out: dict[str, bytes] = {}
    for sec in secs:
        for f in sec.figures:
            out[f"{f.name}.png"] = f.png
            out[f"{f.name}.svg"] = f.svg
    return out


def documents(data: RunData, text: ReportText, secs: list[Section], analysis: Analysis, generated: str) -> dict[str, bytes]:
    """``report.html``, ``report.md``, ``intervals.csv`` and ``precision.csv`` as bytes."""
    return {
        "report.html": render_html(data, text, secs, analysis, generated).encode("utf-8"),
        "report.md": render_md(data, text, secs, analysis).encode("utf-8"),
        "intervals.csv": to_csv([r for vr in analysis.views for r in vr.intervals], INTERVAL_COLUMNS),
        "precision.csv": to_csv([r for vr in analysis.views for r in vr.precision], PRECISION_COLUMNS),
    }
