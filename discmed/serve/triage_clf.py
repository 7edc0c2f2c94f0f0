"""The learned layer of red-flag triage: a logistic regression over character n-grams.

Trained with scikit-learn on the multi-author corpus (`discmed/assets/safety/authors/*.jsonl`, the
triage lines of eight independent writers) and the project's own sets
(`discmed/assets/safety/`: `triage_dev.jsonl`, `triage_heldout.jsonl`, `triage_en.jsonl`, `safety_cases.jsonl`): a
TF-IDF of character 2- to 6-grams (sublinear term frequency, l2-normalised) and a
class-balanced logistic regression. Nothing is shipped as weights: the model is trained at
first use (a few seconds) and cached under `$DISCMED_CACHE/triage_clf/` (default
`~/.cache/discmed`), keyed by a hash of the training files, the settings below and the
scikit-learn version, so a changed corpus or setting trains a new one. The same build,
by hand:

    python -m discmed.serve.triage_clf            # trains (or finds) the model, prints its key

Prediction does not go through scikit-learn (whose per-call overhead alone is near the 2 ms
budget): the fitted vocabulary is kept as `{n-gram: (idf, coefficient)}` and a message is
scored with a few dictionary look-ups; `tests/test_triage_clf.py` checks it against
scikit-learn's `predict_proba`. A message is urgent for this layer when the probability is
at least `THRESHOLD` (chosen on the leave-one-author-out figures of the writers the
catalogue was developed on; benchmarks/safety_loao.py).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from discmed.chat import DataError, iter_jsonl
from discmed.serve.dialect import normalize

# The labelled corpus ships with discmed (written for it): an installed package trains too.
ROOT = Path(__file__).resolve().parents[1] / "assets" / "safety"
NGRAMS = (2, 6)  # character n-gram lengths (single characters added false alarms; 2-6 over 2-4: worst LOAO recall 0.900 vs 0.825 at the same false alarms, 19 writers)
MIN_DF = 2       # an n-gram seen in one message only is noise
C = 10.0         # inverse regularisation strength
THRESHOLD = 0.7  # probability at or above which the classifier alone calls a message urgent
VERSION = "triage-clf-v2"


@dataclass
class Row:
    text: str
    urgent: bool
    author: str  # "a1_ed_nurse" … for the writers, "project" for the project's own sets


def corpus(root: Path = ROOT) -> list[Row]:
    """Every labelled triage message the classifier learns from, with its author. A bad
    line raises a DataError naming the file, line and field."""
    def parse(path: Path, author: str):
        def one(obj, line: int) -> Row | None:
            if not isinstance(obj, dict):
                raise DataError(path, line, "line", "expected a JSON object")
            if author != "project" and obj.get("kind") != "triage":
                return None  # the writers' de-identification texts
            if not isinstance(obj.get("text"), str):
                raise DataError(path, line, "text", "missing or not a string")
            if author == "project":
                if not isinstance(obj.get("urgent"), bool):
                    raise DataError(path, line, "urgent", "missing or not true/false")
                return Row(obj["text"], obj["urgent"], author)
            if obj.get("label") not in ("urgent", "not_urgent"):
                raise DataError(path, line, "label", f"expected 'urgent' or 'not_urgent', got {obj.get('label')!r}")
            return Row(obj["text"], obj["label"] == "urgent", author)
        return one

    files = _files(root)
    missing = [str(p) for p in files if not p.exists()]
    if len(files) < 5 or missing:
        raise OSError(f"triage training data not found under {root}: "
                      f"{', '.join(missing) or 'no authors/a*.jsonl'}")
    rows = []
    for path in files:
        author = path.stem if path.parent.name == "authors" else "project"
        rows += [r for r in iter_jsonl(path, parse(path, author)) if r is not None]
    return rows


def _files(root: Path) -> list[Path]:
    return sorted((root / "authors").glob("a*.jsonl")) + [
        root / "triage_dev.jsonl", root / "triage_heldout.jsonl", root / "triage_en.jsonl", root / "safety_cases.jsonl"]


def _key(root: Path) -> str:
    import sklearn

    h = hashlib.sha256(f"{VERSION} {NGRAMS} {MIN_DF} {C} sklearn {sklearn.__version__}".encode())
    for path in _files(root):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _grams(text: str) -> Counter:
    lo, hi = NGRAMS
    return Counter([text[i:i + n] for n in range(lo, hi + 1) for i in range(len(text) - n + 1)])


class LinearTriage:
    """A fitted model: `{n-gram: (idf, coefficient)}`, the intercept and the threshold."""

    def __init__(self, weights: dict[str, tuple[float, float]], intercept: float, threshold: float = THRESHOLD,
                 key: str = "", n_train: int = 0):
        self.weights, self.intercept, self.threshold = weights, intercept, threshold
        self.key, self.n_train = key, n_train
        self._arrays: tuple | None = None

    def probability(self, text: str) -> float:
        """P(urgent) for a normalised message (`dialect.normalize`): sublinear TF-IDF,
        l2-normalised, dotted with the coefficients — what scikit-learn computes.

        The message's known n-grams (a C-level join of its counts with the vocabulary) are
        looked up and weighed as arrays: a long message has a thousand or more of them, and a
        Python loop over them was about 40% of a long message's triage time."""
        import numpy as np

        if self._arrays is None:
            index = {g: i for i, g in enumerate(self.weights)}
            table = np.array(list(self.weights.values()), dtype=np.float64).reshape(-1, 2)
            self._arrays = (index, np.ascontiguousarray(table[:, 0]), np.ascontiguousarray(table[:, 1]))
        index, idf, coef = self._arrays
        counts = _grams(text)
        known = list(counts.keys() & index.keys())
        if not known:
            z = self.intercept
        else:
            rows = np.fromiter(map(index.__getitem__, known), dtype=np.intp, count=len(known))
            tf = np.fromiter(map(counts.__getitem__, known), dtype=np.float64, count=len(known))
            x = (1.0 + np.log(tf)) * idf[rows]
            norm = float(x @ x)
            z = self.intercept + (float(x @ coef[rows]) / math.sqrt(norm) if norm else 0.0)
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def to_json(self) -> dict:
        return {"version": VERSION, "key": self.key, "n_train": self.n_train, "intercept": self.intercept,
                "threshold": self.threshold, "weights": self.weights}

    @classmethod
    def from_json(cls, obj: dict) -> LinearTriage:
        weights = {g: (w[0], w[1]) for g, w in obj["weights"].items()}
        return cls(weights, float(obj["intercept"]), float(obj["threshold"]), obj.get("key", ""), int(obj["n_train"]))


def fit(texts: list[str], labels: list[bool], threshold: float = THRESHOLD):
    """Train on normalised texts; returns (LinearTriage, the scikit-learn vectorizer and
    model, for checking the fast scorer against them)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(analyzer="char", ngram_range=NGRAMS, sublinear_tf=True, min_df=MIN_DF, lowercase=False)
    x = vec.fit_transform(texts)
    model = LogisticRegression(C=C, class_weight="balanced", max_iter=3000).fit(x, labels)
    coef = model.coef_[0]
    weights = {g: (float(vec.idf_[i]), float(coef[i])) for g, i in vec.vocabulary_.items()}
    return LinearTriage(weights, float(model.intercept_[0]), threshold, n_train=len(texts)), vec, model


def train(rows: list[Row], threshold: float = THRESHOLD) -> LinearTriage:
    return fit([normalize(r.text) for r in rows], [r.urgent for r in rows], threshold)[0]


def cache_dir() -> Path:
    return Path(os.environ.get("DISCMED_CACHE", Path.home() / ".cache" / "discmed")) / "triage_clf"


def load_classifier(root: Path = ROOT) -> LinearTriage:
    """The classifier for the training data under `root`: from the cache when its key
    matches, trained and cached (atomically) otherwise."""
    rows = corpus(root)  # raises OSError naming what is missing
    key = _key(root)
    path = cache_dir() / f"{key}.json"
    if path.exists():
        try:
            return LinearTriage.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache entry is rebuilt below
    clf = train(rows)
    clf.key = key
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(clf.to_json(), ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return clf


def main() -> None:
    clf = load_classifier()
    print(f"triage classifier {clf.key}: {clf.n_train} messages, {len(clf.weights)} n-grams, "
          f"threshold {clf.threshold}, cache {cache_dir() / (clf.key + '.json')}", file=sys.stderr)


if __name__ == "__main__":
    main()
