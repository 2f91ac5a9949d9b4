"""The report's modules one by one, without a run directory: analysis on an in-memory run, prose, render, layering."""

from __future__ import annotations

import ast
import base64
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from affalign import reduce, schema, stats
from affalign.report import analysis, prose, render
from affalign.report.analysis import Analysis, DimView, Settings, ViewResult
from affalign.report.load import ModelInfo, RunData
from affalign.schema import DIMENSIONS

DIM = "emotion"
GROUPS = ("liberal", "conservative")


def _fsl(mat: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(mat.astype(np.float32).ravel()), mat.shape[1])


def in_memory_run(n: int = 150, seed: int = 0) -> RunData:
    """A RunData built in memory (no files): a model planted at the liberal group's means on t1 and
    further from both groups, but still nearer the liberals, on t2."""
    rng = np.random.default_rng(seed)
    k = len(DIMENSIONS[DIM])
    rows: list[tuple[str, str, np.ndarray]] = []
    for topic in ("t1", "t2"):
        lib = rng.uniform(0.3, 0.6, k)
        con = np.clip(lib - 0.15, 0.03, 0.95)
        model = lib if topic == "t1" else np.clip(lib + 0.2, 0.03, 0.97)
        for subject, mu in (("human:liberal", lib), ("human:conservative", con), ("model:m:default", model)):
            rows.append((subject, topic, rng.beta(12 * mu, 12 * (1 - mu), size=(n, k))))
    table = pa.table({
        "text_id": pa.array([f"x{i}" for i in range(n * len(rows))], pa.string()),
        "dataset": pa.array(["covid"] * n * len(rows), pa.string()),
        "subject": pa.array([s for s, _, m in rows for _ in range(len(m))], pa.string()),
        "topics": pa.array([[t] for _, t, m in rows for _ in range(len(m))], pa.list_(pa.string())),
        schema.score_column(DIM): _fsl(np.vstack([m for _, _, m in rows])),
    })
    agg = reduce.Aggregator((DIM,), 0.5)
    agg.add(table)
    dists = agg.distributions("covid", "mean", ["t1", "t2"])
    align = reduce.alignment_table(dists, reduce.subject_pairs(list(GROUPS), ["model:m:default"]))
    cells = {(t, s): {DIM: m.astype(np.float32)} for s, t, m in rows}
    return RunData("mem://run", {"status": "complete", "job": "mem"}, list(GROUPS), [ModelInfo("m", "instruct", "hf")], "mean", 0.5,
                   dists.to_pandas(), align.to_pandas(), None, ["t1", "t2"], cells={"covid": cells})


@pytest.fixture(scope="module")
def run_and_analysis() -> tuple[RunData, Analysis]:
    data = in_memory_run()
    return data, analysis.analyse(data, Settings(draws=80, seed=0, n_grid=None))


def test_analysis_of_an_in_memory_run(run_and_analysis):
    data, result = run_and_analysis
    assert [(vr.view.dataset, vr.view.dimension) for vr in result.views] == [("covid", DIM)]
    vr = result.views[0]
    st = vr.view.stats
    assert st is not None and not result.humans_only and not result.topic_missing
    # planted: the model sits at the liberals' means (t1) or beyond them, away from the conservatives
    assert st.bias("model:m:default", "human:liberal", "human:conservative").sign == 1
    # the model is furthest from the groups on t2, and t2 leads the distribution figures
    assert analysis.divergent_topics(vr.view, k=1) == ["t2"] and vr.topics[0] == "t2" and not vr.topic_chosen
    # S recomputed from the cells is the reduce's S: the cells are exactly the texts reduced
    assert vr.consistency is not None and vr.consistency < 1e-4
    stats_rows = {r["statistic"] for r in vr.intervals}
    assert {"alignment", "alignment_topic", "baseline", "vs_baseline", "bias"} <= stats_rows
    assert all(r["lo"] <= r["hi"] for r in vr.intervals)


def test_analysis_topic_choice_and_stale_cells():
    data = in_memory_run(n=60, seed=1)
    chosen = analysis.analyse(data, Settings(draws=20, n_grid=None), topic="t1")
    assert chosen.views[0].topics == ["t1"] and chosen.views[0].topic_chosen
    missing = analysis.analyse(data, Settings(draws=20, n_grid=None), topic="nope")
    assert missing.topic_missing and missing.views[0].topics == analysis.divergent_topics(missing.views[0].view)
    # cells that are not the texts the reduce counted show up as an inconsistency
    cell = data.cells["covid"][("t1", "human:liberal")]
    cell[DIM] = cell[DIM][: len(cell[DIM]) // 3]
    stale = analysis.analyse(data, Settings(draws=20, n_grid=None))
    assert stale.views[0].consistency > 1e-3


def test_prose_words_the_analysis(run_and_analysis):
    data, result = run_and_analysis
    text = prose.write(data, result)
    assert text.warnings == [] and len(text.sections) == 1
    answers = {a.question: a for a in text.sections[0].answers}
    bias = answers["Which group is each model closer to by default (bias)?"]
    assert "closer to liberal" in bias.verdict
    assert any(d.startswith("m (instruction-tuned): bias S(liberal) − S(conservative) = +") for d in bias.details)
    assert text.sections[0].captions.topics.keys() == set(result.views[0].topics)
    assert [t for t, _ in text.sections[0].tables] == ["Alignment (mean over topics)", "Bias", "Steering effects", "Precision against n (median over model subjects)"]


def test_method_note_warnings_and_notes_without_statistics():
    note = prose.method_note(Settings(draws=7, seed=3, interval="percentile"), "threshold", clustered=True)
    assert "7 draws, seed 3" in note and "(threshold)" in note and prose.INTERVAL_NAMES["percentile"] in note
    assert note != prose.method_note(Settings(draws=7, seed=3, interval="percentile"), "threshold", clustered=False)
    assert note != prose.method_note(Settings(draws=7, seed=3, interval="bc"), "threshold", clustered=True)
    data = RunData("mem://x", {}, ["a"], [], "mean", 0.5, pd.DataFrame({"dataset": []}), pd.DataFrame(), None, [], warnings=["from the reader"])
    flags = Analysis(Settings(), [], clustered=False, topic_missing=True, humans_only=True)
    warnings = prose.run_warnings(data, flags, "zz")
    assert warnings[0] == "from the reader" and "--topic 'zz'" in warnings[1] and warnings[2].startswith("Humans only")
    view = DimView("covid", DIM, DIMENSIONS[DIM], ["a"], [], [], ["t"], per_topic={("human:a", "human:a"): {"t": 1.0}})
    notes = prose.section_notes(ViewResult(view, ["t"], False, None, None, None))
    assert notes[0].startswith("No per-text scores") and notes[1].startswith("Humans only")
    assert prose.research_questions(view)[0].verdict.startswith("Not answered")


@pytest.mark.parametrize("interval", stats.INTERVALS)
def test_every_interval_kind_has_a_method_note(interval):
    # build_report accepts every stats.INTERVALS kind: each needs its name and its verified/warning sentence
    note = prose.method_note(Settings(interval=interval), "mean", clustered=False)
    assert prose.INTERVAL_NAMES[interval] in note and prose.VERIFIED[interval] in note


def _fixed_report() -> tuple[RunData, prose.ReportText, list[render.Section], Analysis]:
    view = DimView("covid<i>", DIM, DIMENSIONS[DIM], ["liberal"], [], [], ["t"])
    vr = ViewResult(view, ["t"], False, None, None, None, intervals=[{"dataset": "covid", "estimate": 1 / 3, "lo": None}])
    caps = prose.Captions("a <b>", "b", {"t": "c"}, "d", "e", "f")
    sec = prose.SectionText(vr, ["a note & more"], [prose.Answer("Q <b>?", "V_1", ["detail | pipe"])], caps, [("T", (["h"], [["<x>"], ["0.5"]]))])
    text = prose.ReportText(["warn <script>"], "method *note*", "tau = 0.5", [sec])
    data = RunData("mem://<run>", {"job": "j&j", "status": "complete"}, ["liberal"], [ModelInfo("m<1>", "base", "hf")], "threshold", 0.5,
                   pd.DataFrame({"dataset": ["covid<i>"]}), pd.DataFrame(), None, ["t"])
    figs = [render.FigureOut("figures/x", "cap <i>", b"\x89PNG-bytes", b"<svg/>")]
    return data, text, [render.Section(sec, figs)], Analysis(Settings(draws=9, seed=4), [vr], clustered=True, topic_missing=False, humans_only=False)


def test_render_lays_out_a_fixed_text_escaped():
    data, text, secs, result = _fixed_report()
    page = render.render_html(data, text, secs, result, "now")
    css = resources.files("affalign.report").joinpath("report.css").read_text(encoding="utf-8")
    assert f"<style>\n{css}</style>" in page and "body{" in css
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "<h4>Q &lt;b&gt;?</h4>" in page and '<td class="num">0.5</td>' in page and "<td>&lt;x&gt;</td>" in page
    assert base64.b64encode(b"\x89PNG-bytes").decode() in page and 'alt="cap &lt;i&gt;"' in page
    assert "m&lt;1&gt; (base, hf)" in page and "threshold (tau = 0.5)" in page and "9 draws, seed 4, bc intervals, resampled by user" in page
    md = render.render_md(data, text, secs, result)
    assert "![cap &lt;i&gt;](figures/x.png)" in md and "**Q &lt;b&gt;?** V\\_1" in md and "- detail \\| pipe" in md
    assert "> method \\*note\\*" in md and "> **Warning:** warn &lt;script&gt;" in md and "| &lt;x&gt; |" in md
    files = render.figure_files(secs) | render.documents(data, text, secs, result, "now")
    assert list(files) == ["figures/x.png", "figures/x.svg", "report.html", "report.md", "intervals.csv", "precision.csv"]
    assert files["intervals.csv"].decode().splitlines()[1].startswith("covid,,,,,,0.333333,,")


# the report's layers, bottom to top: a module may import only from the layers below it
LAYERS = {"load": set(), "analysis": {"load"}, "prose": {"load", "analysis", "calls"}, "figures": {"load", "analysis"},
          "render": {"load", "analysis", "prose", "figures"}, "build": {"load", "analysis", "prose", "render"}}


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_report_modules_import_only_downward(module):
    path = Path(__file__).resolve().parents[2] / "affalign" / "report" / f"{module}.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n.split(".")[2] for n in names if n.startswith("affalign.report.")}
    assert found <= LAYERS[module], f"{module} imports {sorted(found - LAYERS[module])}"


def test_reading_analysing_and_wording_do_not_load_matplotlib():
    code = "import sys, affalign.report.prose; assert 'matplotlib' not in sys.modules, 'matplotlib loaded'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
