"""The learned layer of triage: the fast scorer is scikit-learn's model, the cache is keyed by
the data, bad data is named, a missing classifier leaves the rules deciding, and — the figure
that can fail — the classifier alone, trained without each writer, still finds that writer's
emergencies (leave-one-author-out, slow)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from discmed.chat import DataError
from discmed.serve import safety, triage_clf
from discmed.serve.safety import Rules, _normalize, triage

ROOT = triage_clf.ROOT  # discmed/assets/safety: the shipped corpus


def _small_root(tmp_path: Path, lines: int = 30) -> Path:
    """A corpus folder like the shipped one, each file cut to its first `lines` lines."""
    for path in triage_clf._files(ROOT):
        dest = tmp_path / path.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text("\n".join(path.read_text(encoding="utf-8").splitlines()[:lines]) + "\n", encoding="utf-8")
    return tmp_path


def test_fast_scorer_is_the_sklearn_model(tmp_path):
    rows = triage_clf.corpus(_small_root(tmp_path, 60))
    texts = [_normalize(r.text) for r in rows]
    clf, vec, model = triage_clf.fit(texts, [r.urgent for r in rows])
    probe = texts[::3] + [_normalize(t) for t in ("胸口压榨样疼痛，出冷汗", "How much vitamin D for a baby?", "", "x")]
    expected = model.predict_proba(vec.transform(probe))[:, 1]
    for text, p in zip(probe, expected, strict=True):
        assert clf.probability(text) == pytest.approx(p, abs=1e-9), text
    assert clf.threshold == triage_clf.THRESHOLD


def test_trained_at_first_use_and_cached_by_the_data(tmp_path, monkeypatch):
    monkeypatch.setenv("DISCMED_CACHE", str(tmp_path / "cache"))
    root = _small_root(tmp_path / "src")
    first = triage_clf.load_classifier(root)
    cached = tmp_path / "cache" / "triage_clf" / f"{first.key}.json"
    assert cached.exists() and first.n_train == len(triage_clf.corpus(root))
    again = triage_clf.load_classifier(root)  # from the cache: same key, same model
    assert again.key == first.key and again.weights == first.weights
    author = root / "authors" / "a1_ed_nurse.jsonl"
    author.write_text(author.read_text(encoding="utf-8").replace("胸口", "心口", 1), encoding="utf-8")
    changed = triage_clf.load_classifier(root)  # the data changed: a new model under a new key
    assert changed.key != first.key and (tmp_path / "cache" / "triage_clf" / f"{changed.key}.json").exists()


def test_bad_training_data_is_named(tmp_path):
    root = _small_root(tmp_path)
    dev = root / "triage_dev.jsonl"
    lines = dev.read_text(encoding="utf-8").splitlines()
    lines[4] = json.dumps({"category": "acs", "urgent": "yes", "text": "胸痛"}, ensure_ascii=False)
    dev.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"triage_dev\.jsonl:5: urgent: missing or not true/false"):
        triage_clf.corpus(root)
    shutil.rmtree(root / "authors")
    with pytest.raises(OSError, match="triage training data not found"):
        triage_clf.corpus(root)


def test_classifier_adds_to_the_rules_and_says_so(tmp_path):
    own = tmp_path / "rules.yaml"
    own.write_text("concepts:\n  ear: ['耳朵剧痛']\ncategories:\n  - id: ear\n    reason_zh: 耳朵剧痛\n"
                   "    reason_en: severe ear pain\n    any: [ear]\n", encoding="utf-8")
    text = "我老公胸口很难受，一身汗，脸色发白，快一个小时了"  # nothing the one-concept rules know
    assert not triage(text, rules=own, learned=False).urgent
    t = triage(text, rules=own)
    assert t.urgent and t.rule_ids == ["classifier"] and t.source == "classifier"
    assert t.score >= triage_clf.THRESHOLD and "置信度" in t.reasons[0] and t.instruction.startswith("【紧急】")
    calm = triage("请问维生素D每天吃多少合适？", rules=own)
    assert not calm.urgent and calm.score is not None and calm.score < triage_clf.THRESHOLD
    shipped = triage("胸口压榨样疼痛，出冷汗")  # the rules fired: their reasons, the score beside them
    assert shipped.rule_ids == ["acs"] and shipped.source == "rules" and shipped.score is not None


def test_without_its_data_the_rules_still_decide(monkeypatch, caplog):
    def unavailable(root=None):
        raise OSError("triage training data not found under /nowhere")

    monkeypatch.setattr(safety, "load_classifier", unavailable)  # the name safety calls
    rules = Rules(safety.DEFAULT_RULES)
    with caplog.at_level(logging.WARNING, logger="discmed.serve.safety"):
        t = rules.triage("胸口压榨样疼痛，出冷汗")
        calm = rules.triage("请问维生素D每天吃多少合适？")
    assert t.urgent and t.rule_ids == ["acs"] and t.score is None and not calm.urgent
    assert sum("classifier unavailable" in r.message for r in caplog.records) == 1  # said once


@pytest.mark.slow
def test_classifier_alone_on_writers_it_never_saw():
    # One classifier trained without all eight first-round writers (the project's sets and the
    # later writers only), scored on each of them: the learned layer's own figure on writers it
    # never saw. One fit instead of one per writer (which took 50 s at 62 writers). Measured at
    # 66 writers: recall 0.90-0.95 per writer, false alarms at most 0.02; leave-one-writer-out
    # proper is benchmarks/safety_loao.py. The second round's writers are in test_safety.py.
    import json

    writers = json.loads((triage_clf.ROOT / "authors" / "writers.json").read_text(encoding="utf-8"))["writers"]
    first = sorted(w for w, v in writers.items() if v["round"] == 1)
    rows = triage_clf.corpus()
    clf = triage_clf.train([r for r in rows if r.author not in first])
    recall, alarms = {}, {}
    for writer in first:
        scored = [(clf.probability(_normalize(r.text)) >= clf.threshold, r.urgent) for r in rows if r.author == writer]
        recall[writer] = sum(v for v, u in scored if u) / sum(u for _, u in scored)
        alarms[writer] = sum(v for v, u in scored if not u) / sum(not u for _, u in scored)
    print(f"\nclassifier on unseen writers: recall {recall}\nfalse alarms {alarms}")
    assert len(recall) == 8 and min(recall.values()) >= 0.85 and max(alarms.values()) <= 0.05, (recall, alarms)
