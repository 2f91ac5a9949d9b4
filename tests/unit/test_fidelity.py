"""Distribution fidelity (affalign.fidelity) and the `affalign fidelity` command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from affalign import metrics
from affalign.cli import main
from affalign.errors import ConfigError
from affalign.fidelity import evaluate, fidelity, gold_distribution, per_tweet, predicted_distribution, read_labelled
from affalign.schema import EMOTION_LABELS, MORAL_LABELS


def test_gold_distribution_is_normalised_label_frequency():
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]])
    np.testing.assert_allclose(gold_distribution(y), [0.75, 0.25, 0.0])


def test_fidelity_one_when_scores_reproduce_the_label_rates():
    rng = np.random.default_rng(0)
    y = (rng.random((4000, 5)) < [0.4, 0.2, 0.1, 0.05, 0.3]).astype(int)
    # calibrated but uninformative scores: each text gets the label's base rate
    flat = np.tile(y.mean(0), (len(y), 1))
    assert fidelity(y, flat, "mean") == pytest.approx(1.0, abs=1e-9)
    # perfect scores are perfect in both modes
    assert fidelity(y, y.astype(float), "mean") == pytest.approx(1.0)
    assert fidelity(y, y.astype(float), "threshold", 0.5) == pytest.approx(1.0)


def test_fidelity_is_one_minus_js_distance_of_known_distributions():
    y = np.array([[1, 0], [1, 0], [1, 0], [0, 1]])  # gold (0.75, 0.25)
    s = np.array([[0.5, 0.5]] * 4)  # predicted (0.5, 0.5)
    m = np.array([0.625, 0.375])
    kl = lambda a, b: float(np.sum(a * np.log2(a / b)))  # noqa: E731
    expected = 1 - np.sqrt(0.5 * kl(np.array([0.75, 0.25]), m) + 0.5 * kl(np.array([0.5, 0.5]), m))
    assert fidelity(y, s, "mean") == pytest.approx(expected, abs=1e-12)
    assert fidelity(y, s, "mean") == pytest.approx(metrics.alignment([3, 1], [1, 1]))


def test_threshold_shift_toward_rare_labels_lowers_mean_fidelity():
    """The defect of folded thresholds: raising rare labels' probabilities distorts the mean distribution."""
    rng = np.random.default_rng(1)
    rates = np.array([0.4, 0.3, 0.05, 0.05])
    y = (rng.random((5000, 4)) < rates).astype(int)
    calibrated = np.clip(0.7 * y + 0.3 * rates + rng.normal(0, 0.02, y.shape), 0, 1)
    shifted = calibrated.copy()
    shifted[:, 2:] = np.clip(shifted[:, 2:] + 0.3, 0, 1)
    assert fidelity(y, calibrated, "mean") > fidelity(y, shifted, "mean") + 0.05


def test_per_label_thresholds_are_applied_in_threshold_mode():
    s = np.array([[0.3, 0.6], [0.2, 0.4], [0.35, 0.9]])
    np.testing.assert_allclose(predicted_distribution(s, "threshold", 0.5), [0.0, 1.0])
    # label 0 present from 0.25: 2 of 3 texts; label 1 from 0.5: 2 of 3 -> (0.5, 0.5)
    np.testing.assert_allclose(predicted_distribution(s, "threshold", np.array([0.25, 0.5])), [0.5, 0.5])
    y = np.array([[1, 1], [0, 0], [1, 1]])
    assert fidelity(y, s, "threshold", np.array([0.25, 0.5])) == pytest.approx(1.0)
    assert fidelity(y, s, "threshold", 0.5) < 0.6


def test_nan_rows_are_skipped_and_shapes_checked():
    y = np.array([[1, 0], [0, 1], [1, 0]])
    s = np.array([[0.9, 0.1], [np.nan, np.nan], [0.9, 0.1]])
    assert predicted_distribution(s, "mean")[0] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="shape"):
        fidelity(y, s[:2])
    out = evaluate(y, s, ("a", "b"), 0.5)
    assert out["n_texts"] == 3 and out["n_scored"] == 2


def test_per_tweet_metrics():
    y = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    p = np.array([[1, 0, 0], [0, 0, 0], [1, 1, 0]])
    r = per_tweet(y, p)
    assert r["jaccard"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert r["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))


def test_read_labelled_formats_and_errors(tmp_path):
    tsv = tmp_path / "dev.tsv"
    tsv.write_text("ID\tTweet\t" + "\t".join(EMOTION_LABELS) + "\n" + "1\tso happy\t" + "\t".join(["0"] * 4 + ["1"] + ["0"] * 6) + "\n", encoding="utf-8")
    texts, y = read_labelled(tsv, "emotion")
    assert texts == ["so happy"] and y[0, EMOTION_LABELS.index("joy")] == 1 and y.sum() == 1
    js = tmp_path / "m.jsonl"
    js.write_text(json.dumps({"text": "be fair", **{lab: int(lab == "fairness") for lab in MORAL_LABELS}}) + "\n", encoding="utf-8")
    texts, y = read_labelled(js, "moral")
    assert y[0, MORAL_LABELS.index("fairness")] == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("text," + ",".join(MORAL_LABELS) + "\nhi," + ",".join(["0"] * 9 + ["x"]) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.csv: data row 1: field 'degradation'"):
        read_labelled(bad, "moral")
    with pytest.raises(ConfigError, match="label columns"):
        read_labelled(bad, "emotion")


def test_fidelity_command_with_the_lexicon_scorer(tmp_path, capsys):
    rows = [("I am so happy and full of joy", "joy"), ("I am furious and angry", "anger"), ("happy happy joy", "joy")]
    path = tmp_path / "lab.jsonl"
    path.write_text("".join(json.dumps({"text": t, **{lab: int(lab == g) for lab in EMOTION_LABELS}}) + "\n" for t, g in rows), encoding="utf-8")
    assert main(["fidelity", str(path), "--dimension", "emotion", "--scorer", "lexicon"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_texts"] == 3 and set(out["fidelity"]) == {"mean", "threshold"}
    assert 0.0 <= out["fidelity"]["mean"] <= 1.0
    assert main(["fidelity", str(path), "--dimension", "emotion", "--scorer", "lexicon", "--option", "nokey"]) == 2
