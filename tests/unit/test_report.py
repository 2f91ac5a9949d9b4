"""The report on fake run directories: figures, self-contained and escaped HTML, humans-only runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from affalign import reduce, schema
from affalign.schema import DIMENSIONS

HOSTILE_TOPIC = "<script>alert(1)</script>"
TOPICS = (HOSTILE_TOPIC, "masks & $mandates$ | 50% \"quoted\"", "vaccines")
MODELS = (("base-lm", "base"), ("chat<b>-lm", "instruct"))
MODES = ("default", "liberal", "conservative")


def _fsl(mat: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(mat.astype(np.float32).ravel()), mat.shape[1])


def _texts(rng: np.random.Generator, means: dict[str, np.ndarray], n: int, concentration: float = 12.0) -> dict[str, np.ndarray]:
    """Per-text multi-label probabilities drawn from Beta distributions around planted per-label means."""
    out = {}
    for dim, mu in means.items():
        mu = np.clip(mu, 0.02, 0.98)
        out[dim] = rng.beta(concentration * mu, concentration * (1 - mu), size=(n, mu.size))
    return out


def make_run_dir(
    root: Path,
    *,
    groups: tuple[str, ...] = ("liberal", "conservative"),
    models: tuple[tuple[str, str], ...] = MODELS,
    modes: tuple[str, ...] = MODES,
    topics: tuple[str, ...] = TOPICS,
    n_human: int = 300,
    n_model: int = 200,
    seed: int = 0,
    dataset: str = "covid",
    mode: str = "mean",
    dims: tuple[str, ...] = tuple(DIMENSIONS),
    users: int | None = None,
) -> Path:
    """A run directory as ``affalign run`` writes it, from planted affect.

    Per topic the groups share per-label mean scores up to a group-specific deviation; a model's
    default mode sits between the groups, nearer the first, with a model-specific offset (so below the
    human baseline, with a bias toward the first group); its liberal/conservative modes sit near the
    group of that name. Score tables are drawn around those means (Beta per label); distributions,
    alignment and summary come from the real reduce.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    human_rows, model_rows = [], []
    for topic in topics:
        shared = {d: rng.uniform(0.1, 0.6, len(DIMENSIONS[d])) for d in dims}
        g_means = {g: {d: np.clip(v + rng.normal(0, 0.12, v.size), 0.03, 0.95) for d, v in shared.items()} for g in groups}
        for g in groups:
            human_rows.append((f"human:{g}", topic, _texts(rng, g_means[g], n_human)))
        for model_id, _kind in models:
            for md in modes:
                if md == "default" or md not in g_means:
                    w = 0.85
                    target = {d: w * g_means[groups[0]][d] + (1 - w) * g_means[groups[-1]][d] for d in dims}
                    spread = 0.12
                else:
                    target, spread = g_means[md], 0.06
                mu = {d: np.clip(v + rng.normal(0, spread, v.size), 0.02, 0.98) for d, v in target.items()}
                model_rows.append((f"model:{model_id}:{md}", topic, _texts(rng, mu, n_model)))

    def table(rows, prefix):
        subjects, tops, ids, mats = [], [], [], {d: [] for d in dims}
        for subject, topic, scores in rows:
            n = len(next(iter(scores.values())))
            subjects += [subject] * n
            tops += [[topic]] * n
            ids += [f"{prefix}-{len(ids) + i}" for i in range(n)]
            for d in dims:
                mats[d].append(scores[d])
        return pa.table(
            {
                "text_id": pa.array(ids, pa.string()),
                "dataset": pa.array([dataset] * len(ids), pa.string()),
                "subject": pa.array(subjects, pa.string()),
                "topics": pa.array(tops, pa.list_(pa.string())),
                **{schema.score_column(d): _fsl(np.vstack(mats[d])) for d in dims},
            }
        )

    human = table(human_rows, "h")
    if users:  # authors: user i % users of each group, the same users across topics
        uid = [f"{sub}-u{i % users}" for i, sub in enumerate(human.column("subject").to_pylist())]
        human = human.append_column(schema.USER_ID, pa.array(uid, pa.string()))
    (root / "scores" / "human").mkdir(parents=True, exist_ok=True)
    pq.write_table(human, root / "scores" / "human" / "part-00000.parquet")
    agg = reduce.Aggregator(tuple(dims), 0.5)
    agg.add(human)
    model_subjects: list[str] = []
    if model_rows:
        model = table(model_rows, "m")
        (root / "scores" / "model").mkdir(parents=True, exist_ok=True)
        pq.write_table(model, root / "scores" / "model" / "part-abc.parquet")
        agg.add(model)
        model_subjects = sorted({r[0] for r in model_rows})
    dists = agg.distributions(dataset, mode, list(topics))
    align = reduce.alignment_table(dists, reduce.subject_pairs(list(groups), model_subjects))
    summary = reduce.summary_rows(align, list(groups))
    pq.write_table(dists, root / "distributions.parquet")
    pq.write_table(align, root / "alignment.parquet")
    cols = list(schema.SUMMARY_COLUMNS) + ["metric"]
    lines = [",".join(cols)]
    for r in summary:
        lines.append(",".join('"' + str(r[c]).replace('"', '""') + '"' if isinstance(r[c], str) else f"{r[c]}" for c in cols))
    (root / "summary.csv").write_text("\n".join(lines) + "\n")
    doc = {
        "status": "complete",
        "job": "fake",
        "dataset": dataset,
        "groups": list(groups),
        "config": {"reduce": {"mode": mode, "tau": 0.5}},
        "topics": {"kept": [{"topic": t, "issue": "x", "counts": {g: n_human for g in groups}} for t in topics], "dropped": []},
    }
    if models and modes:
        doc["generation"] = {"models": [{"id": m, "kind": k, "backend": "hf"} for m, k in models], "modes": list(modes), "n_responses": n_model}
    (root / "run.json").write_text(json.dumps(doc))
    return root


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    from affalign.report import build_report

    run = make_run_dir(tmp_path_factory.mktemp("run"))
    paths = build_report(str(run), draws=120, seed=1, n_grid=(50, 100, 200))
    return run, paths


def test_every_figure_is_written_and_non_empty(full_report):
    run, paths = full_report
    out = run / "report"
    for name in ("report.html", "report.md", "intervals.csv", "precision.csv"):
        assert (out / name).stat().st_size > 0, name
    figs = sorted(p for p in paths if p.startswith("figures/"))
    for dim in DIMENSIONS:
        for kind in ("a_default", "b_steered", "d_heatmap", "e_bias", "f_precision"):
            for ext in ("png", "svg"):
                assert any(re.search(rf"_{dim}_{kind}\.{ext}$", f) for f in figs), (dim, kind, ext, figs)
        topic_figs = [f for f in figs if f"_{dim}_c_topic_" in f and f.endswith(".png")]
        assert len(topic_figs) == 2  # the two most divergent topics
    for f in figs:
        p = out / f
        assert p.stat().st_size > 1000, f
        head = p.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") if f.endswith(".png") else b"<?xml" in head or b"<svg" in head
    assert not (out / "_tmp").exists()


def test_html_is_self_contained_and_escaped(full_report):
    run, _ = full_report
    text = (run / "report" / "report.html").read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "chat<b>-lm" not in text and "chat&lt;b&gt;-lm" in text
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", text)
    assert refs and all(r.startswith(("data:image/png;base64,", "#")) for r in refs)  # only data: URIs and anchors
    assert text.count('src="data:image/png;base64,') >= 2 * 6
    md = (run / "report" / "report.md").read_text(encoding="utf-8")
    assert "<script>" not in md and "&lt;script&gt;" in md
    for question in ("below the human baseline", "closer to by default", "tell liberal from conservative", "raise alignment with the target", "still below the human baseline", "remove the bias"):
        assert question in text and question in md


def test_planted_bias_is_called_with_numbers(full_report):
    run, _ = full_report
    md = (run / "report" / "report.md").read_text(encoding="utf-8")
    # default modes sit near the first group (liberal): the bias must be called, with its interval
    assert re.search(r"base-lm \(base\): bias S\(liberal\) − S\(conservative\) = \+0\.\d{4} \\\[\+0\.\d{4}, \+0\.\d{4}\\\], p (= 0\.0[0-4][0-9.e-]*|≤ [0-9.e-]+ \(no bootstrap replicate on the other side of 0\)) \(null: equidistant\): closer to liberal", md), md
    assert "Null hypothesis of each p-value: the model is equidistant from the two groups" in md
    rows = (run / "report" / "intervals.csv").read_text().splitlines()
    assert rows[0].startswith("dataset,dimension,statistic")
    assert any(",bias," in r for r in rows) and any(",alignment_topic," in r for r in rows)


def test_humans_only_run(tmp_path):
    from affalign.report import build_report

    run = make_run_dir(tmp_path / "run", models=(), topics=("a", "b", "c"), dims=("emotion",))
    paths = build_report(str(run), str(tmp_path / "out"), draws=50)
    figs = [p for p in paths if p.startswith("figures/")]
    assert any("_a_default.png" in f for f in figs) and any("_d_heatmap.png" in f for f in figs) and any("_c_topic_" in f for f in figs)
    assert not any("_b_steered" in f or "_e_bias" in f or "_f_precision" in f for f in figs)
    html_text = (tmp_path / "out" / "report.html").read_text()
    assert "Humans only" in html_text and "no model generations" in html_text


def test_topic_option_and_stale_score_parts(tmp_path):
    from affalign.report import build_report

    run = make_run_dir(tmp_path / "run", topics=("t1", "t2", "t3"), n_human=80, n_model=40, dims=("emotion",))
    extra = pq.read_table(run / "scores" / "model" / "part-abc.parquet").slice(0, 10)
    pq.write_table(extra, run / "scores" / "model" / "part-stale.parquet")  # texts the reduce did not count
    paths = build_report(str(run), draws=30, topic="t3", n_grid=None)
    assert [p for p in paths if "_c_topic_" in p] == ["figures/covid_emotion_c_topic_t3.png", "figures/covid_emotion_c_topic_t3.svg"]
    assert "different number of scored texts" in (run / "report" / "report.html").read_text()


def test_missing_run_dir_is_an_input_error(tmp_path):
    from affalign.errors import InputError
    from affalign.report import build_report

    with pytest.raises(InputError):
        build_report(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="distributions.parquet"):
        build_report(str(tmp_path / "empty"))


def test_cli_hook_runs_without_score_tables(tmp_path, capsys):
    import argparse
    import shutil

    from affalign.report.cli_hook import add_report_parser

    run = make_run_dir(tmp_path / "run", topics=("t1", "t2"), n_human=60, n_model=30, models=(("m", "instruct"),), dims=("emotion",))
    shutil.rmtree(run / "scores")
    p = argparse.ArgumentParser()
    add_report_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(["report", str(run), "--out", str(tmp_path / "r"), "--draws", "20", "--seed", "3", "--topic", "t2"])
    assert args.fn(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["report"].endswith("report.html") and Path(printed["report"]).exists()
    # without score tables the figures still come from the run's tables, and the report says why
    text = (tmp_path / "r" / "report.html").read_text()
    assert "no per-text score tables" in text
    assert (tmp_path / "r" / "figures" / "covid_emotion_e_bias.png").stat().st_size > 1000


def test_intervals_do_not_depend_on_how_scores_are_partitioned(tmp_path):
    from affalign.report.analysis import compute_stats
    from affalign.report.load import load_run

    run = make_run_dir(tmp_path / "run", topics=("t1", "t2"), n_human=80, n_model=40, dims=("emotion",))

    def intervals():
        data = load_run(str(run))
        st = compute_stats(data, draws=50, seed=0, n_grid=None)[("covid", "emotion")]
        return [st.bias(m, "human:liberal", "human:conservative") for m in st.model_subjects] + [st.alignment("human:liberal", "human:conservative")]

    before = intervals()
    human = pq.read_table(run / "scores" / "human" / "part-00000.parquet")
    shuffled = human.take(np.random.default_rng(0).permutation(human.num_rows))
    (run / "scores" / "human" / "part-00000.parquet").unlink()
    pq.write_table(shuffled.slice(0, 70), run / "scores" / "human" / "part-00000.parquet")
    pq.write_table(shuffled.slice(70), run / "scores" / "human" / "part-00001.parquet")
    assert intervals() == before


def test_wording_scope_and_method_note(full_report):
    run, _ = full_report
    md = (run / "report" / "report.md").read_text(encoding="utf-8")
    assert "Mostly" not in md and not re.search(r"\b0 of \d", md)  # no "Mostly: 0 of N"
    # steering questions count the instruction-tuned model only; the base model is shown apart
    assert "Steering questions cover instruction-tuned models only" in md
    assert "(not counted) base-lm (base)" in md
    assert re.search(r"\*\*Does each model tell liberal from conservative steering\?\*\* The only instruction-tuned model with both steered modes tells them apart\. A 'yes' needs", md), md
    assert "Bonferroni" in md
    # the method note says what was verified, and no longer calls the baseline comparisons conservative
    assert "bias-corrected" in md and "Verified: on simulated runs with planted truth" in md
    assert "conservative for that reason" not in md and "permutation" not in md
    assert "resampled by text (no user ids)" in md  # this fake run has no user_id column


def test_quantified_verdicts():
    from affalign.report.prose import _quantified

    words = {-1: ("is below", "are below"), 1: ("is above", "are above"), 0: ("is unresolved", "are unresolved")}
    assert _quantified({-1: 0, 1: 0, 0: 2}, 2, "comparison", words) == "both comparisons are unresolved"
    assert _quantified({-1: 1, 1: 0, 0: 1}, 2, "comparison", words) == "1 of 2 comparisons is below; 1 of 2 comparisons is unresolved"
    assert _quantified({-1: 4}, 4, "comparison", words) == "all 4 comparisons are below"
    assert _quantified({1: 1}, 1, "comparison", words) == "the only comparison is above"


def test_human_side_is_resampled_by_user(tmp_path):
    from affalign.report import build_report
    from affalign.report.analysis import compute_stats
    from affalign.report.load import load_run

    run = make_run_dir(tmp_path / "run", topics=("t1", "t2"), n_human=120, n_model=40, models=(("m", "instruct"),), dims=("emotion",), users=15)
    st = compute_stats(load_run(str(run)), draws=40, seed=0, n_grid=None)[("covid", "emotion")]
    assert st.clustered
    assert st.n_clusters[("t1", "human:liberal")] == 15 and st.n_texts[("t1", "human:liberal")] == 120
    assert st.n_clusters[("t1", "model:m:default")] == 40  # generations: one cluster each
    build_report(str(run), draws=30, n_grid=None)
    md = (run / "report" / "report.md").read_text(encoding="utf-8")
    assert "resampled by user" in md and "Resampling is by user on the human side" in md


def test_tells_apart_is_bonferroni_corrected(tmp_path):
    from affalign.report import calls
    from affalign.report.analysis import compute_stats
    from affalign.report.load import load_run

    run = make_run_dir(tmp_path / "run", topics=("t1", "t2"), n_human=100, n_model=60, models=(("m", "instruct"),), dims=("emotion",))
    st = compute_stats(load_run(str(run)), draws=200, seed=0, n_grid=None)[("covid", "emotion")]
    told, diffs = calls.tells_apart_call(st, "m", st.humans)
    assert [h for h, _ in diffs] == st.humans
    for h, iv in diffs:
        wide = st.mode_contrast("m", h, level=0.975)
        assert (iv.lo, iv.hi) == (wide.lo, wide.hi) and iv.width > st.mode_contrast("m", h).width
    assert told == any(iv.sign != 0 for _, iv in diffs)
