"""Red-flag triage, leave-one-author-out: rules alone, classifier alone, combined, per writer.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/safety_loao.py               # all writers
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/safety_loao.py --authors a1_ed_nurse,a7_rural

The corpus is discmed/assets/safety/authors/ (26 independent writers in five rounds, 40 urgent + 50 not
urgent each; see its README and writers.json; the later rounds' blind figures are in benchmarks/RESULTS.md)
and the project's own sets as one more "author", "project" (triage_dev.jsonl, triage_heldout.jsonl,
triage_en.jsonl, safety_cases.jsonl beside it). For each author k:

- classifier: trained on every other author's messages (the project's included), scored on
  k's — mechanical leave-one-author-out (discmed.serve.triage_clf, same settings as served);
- rules: the shipped catalogue (discmed/serve/rules/redflags.yaml). Rules written by hand
  cannot "un-see" a writer: three writers were locked away until the catalogue was frozen
  and scored once (the blind figure, BLIND below and in the summary); the rules' column as
  printed now is developed on every writer and is not blind;
- combined: urgent when the rules fire or the classifier's probability ≥ its threshold —
  what `discmed.serve.safety.triage` does.

Context is measured on its own: over each author's messages, the rules with every mention
counted (context off) against the rules as shipped — the false alarms the context rules
removed, and the urgent messages they wrongly silenced.

The last line is the JSON summary: worst-author combined recall against the goal (0.90,
English included) with false alarms ≤ 0.05; "peer" is main's blind figure before this work
(worst author recall 0.225, discmed/assets/safety/authors/README.md).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The development protocol (issue 24). The catalogue and the classifier's settings were
# developed on DEVELOPED_FIRST and the project's own sets while LOCKED was kept away (never
# opened or printed) until the catalogue was frozen at commit 76e2301; that run, the one
# blind figure for the rules, is BLIND below (rules, classifier, combined: recall, false
# alarms). The locked writers' errors were read afterwards and the catalogue extended, so
# from then on the rules' column is developed on every writer (not blind); the
# classifier's column stays leave-one-author-out whatever happens to the rules.
DEVELOPED_FIRST = ["a1_ed_nurse", "a2_peds_parent", "a4_obstetrics", "a5_onco_dialysis", "a7_rural", "project"]
LOCKED = ["a3_elder_care", "a6_mental_health", "a8_english"]
LOCKED_UNTIL = "76e2301"
BLIND = {
    "a1_ed_nurse": {"rules": [1.0, 0.0], "classifier": [0.925, 0.0], "combined": [1.0, 0.0]},
    "a2_peds_parent": {"rules": [1.0, 0.02], "classifier": [0.825, 0.04], "combined": [1.0, 0.06]},
    "a3_elder_care": {"rules": [0.825, 0.1], "classifier": [0.9, 0.0], "combined": [0.975, 0.1]},
    "a4_obstetrics": {"rules": [1.0, 0.0], "classifier": [0.775, 0.02], "combined": [1.0, 0.02]},
    "a5_onco_dialysis": {"rules": [1.0, 0.0], "classifier": [0.925, 0.0], "combined": [1.0, 0.0]},
    "a6_mental_health": {"rules": [0.55, 0.04], "classifier": [0.85, 0.0], "combined": [0.85, 0.04]},
    "a7_rural": {"rules": [1.0, 0.0], "classifier": [0.925, 0.02], "combined": [1.0, 0.02]},
    "a8_english": {"rules": [0.575, 0.04], "classifier": [0.725, 0.02], "combined": [0.875, 0.06]},
}
BLIND_WORST_RECALL = 0.225  # main before this work, worst writer (discmed/assets/safety/authors/README.md)
GOAL_RECALL, GOAL_FALSE_ALARMS = 0.90, 0.05
_CJK = re.compile(r"[\u4e00-\u9fff]")


def _rate(hits: list[bool]) -> float:
    return sum(hits) / len(hits) if hits else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--authors", help="comma-separated authors to score (default: all); others still train")
    ap.add_argument("--threshold", type=float, help="classifier threshold (default: the served one)")
    ap.add_argument("--no-classifier", action="store_true", help="rules only (no training)")
    ap.add_argument("--misses", action="store_true", help="print the combined verdict's errors per author")
    args = ap.parse_args()
    from discmed.serve import triage_clf
    from discmed.serve.safety import Rules, _normalize

    rules = Rules(learned=False)
    rows = triage_clf.corpus()
    authors = sorted({r.author for r in rows}, key=lambda a: (a == "project", a))
    scored = args.authors.split(",") if args.authors else authors
    unknown = set(scored) - set(authors)
    if unknown:
        sys.exit(f"safety_loao: unknown authors {sorted(unknown)} (have {', '.join(authors)})")
    threshold = args.threshold if args.threshold is not None else triage_clf.THRESHOLD
    table, t0 = {}, time.perf_counter()
    for k in scored:
        test = [r for r in rows if r.author == k]
        rule = [bool(rules.categories_for(r.text)) for r in test]
        raw = [bool(rules.categories_for(r.text, context=False)) for r in test]
        if args.no_classifier:
            prob = [0.0] * len(test)
        else:
            clf = triage_clf.train([r for r in rows if r.author != k], threshold)
            prob = [clf.probability(_normalize(r.text)) for r in test]
        clf_v = [p >= threshold for p in prob]
        comb = [a or b for a, b in zip(rule, clf_v, strict=True)]
        urg = [r.urgent for r in test]
        en = [not _CJK.search(r.text) for r in test]

        def score(v: list[bool], urg: list[bool] = urg) -> tuple[float, float]:
            return (_rate([x for x, u in zip(v, urg, strict=True) if u]),
                    _rate([x for x, u in zip(v, urg, strict=True) if not u]))

        en_urgent = [x for x, u, e in zip(comb, urg, en, strict=True) if u and e]
        table[k] = {
            "n": len(test), "urgent": sum(urg),
            "rules": score(rule), "classifier": score(clf_v) if not args.no_classifier else None,
            "combined": score(comb),
            "english_urgent": (sum(en_urgent), len(en_urgent)),
            # context on its own: false alarms it removed / urgent messages it silenced
            "context_removed_fa": (sum(a and not b for a, b, u in zip(raw, rule, urg, strict=True) if not u),
                                   sum(a for a, u in zip(raw, urg, strict=True) if not u)),
            "context_silenced_urgent": (sum(a and not b for a, b, u in zip(raw, rule, urg, strict=True) if u),
                                        sum(a for a, u in zip(raw, urg, strict=True) if u)),
        }
        if args.misses:
            for r, c, p, ru in zip(test, comb, prob, rule, strict=True):
                if c != r.urgent:
                    kind = "MISS" if r.urgent else "FALSE ALARM"
                    print(f"  {k} {kind} rules={ru} p={p:.2f}: {r.text[:160]}")
    fmt = lambda s: "  -    -  " if s is None else f"{s[0]:.3f} {s[1]:.3f}"  # noqa: E731
    print(f"{'author':18} {'n':>4}  {'rules rec  fa':13} {'clf rec  fa':13} {'combined rec  fa':17} "
          f"{'English':8} {'context: FA removed, urgent silenced':>36}")
    for k, v in table.items():
        en = f"{v['english_urgent'][0]}/{v['english_urgent'][1]}" if v["english_urgent"][1] else "-"
        ctx = f"{v['context_removed_fa'][0]}/{v['context_removed_fa'][1]}, {v['context_silenced_urgent'][0]}/" \
              f"{v['context_silenced_urgent'][1]}"
        tag = f"  (locked until {LOCKED_UNTIL}; blind combined {BLIND[k]['combined'][0]:.3f} {BLIND[k]['combined'][1]:.3f})" \
            if k in LOCKED else ""
        print(f"{k:18} {v['n']:>4}  {fmt(v['rules']):13} {fmt(v['classifier']):13} {fmt(v['combined']):17} "
              f"{en:8} {ctx:>36}{tag}")
    writers = {k: v for k, v in table.items() if k != "project"}
    summary = {"benchmark": "safety_loao",
               "unit": "worst-writer triage recall, combined: classifier leave-one-author-out, rules developed on "
                       f"every writer since {LOCKED_UNTIL} (not blind; the blind figure is under 'blind')",
               "peer": BLIND_WORST_RECALL, "goal": GOAL_RECALL, "goal_false_alarms": GOAL_FALSE_ALARMS,
               "threshold": threshold, "seconds": round(time.perf_counter() - t0, 1),
               "developed_first": DEVELOPED_FIRST, "locked_until": {"commit": LOCKED_UNTIL, "writers": LOCKED},
               "blind": {"per_author": BLIND,
                         "worst_recall": min(v["combined"][0] for v in BLIND.values()),
                         "worst_false_alarms": max(v["combined"][1] for v in BLIND.values())},
               "per_author": {k: {"rules": v["rules"], "classifier": v["classifier"], "combined": v["combined"],
                                  "english_urgent": v["english_urgent"]} for k, v in table.items()}}
    if writers:
        worst_r = min(writers, key=lambda k: writers[k]["combined"][0])
        worst_f = max(writers, key=lambda k: writers[k]["combined"][1])
        rec, fa = writers[worst_r]["combined"][0], writers[worst_f]["combined"][1]
        print(f"worst writer: recall {rec:.3f} ({worst_r}), false alarms {fa:.3f} ({worst_f}); "
              f"goal ≥ {GOAL_RECALL} and ≤ {GOAL_FALSE_ALARMS}")
        summary.update(discmed=round(rec, 3), ratio=round(rec / BLIND_WORST_RECALL, 3), worst_recall_author=worst_r,
                       worst_false_alarms=round(fa, 3), worst_false_alarms_author=worst_f,
                       met=rec >= GOAL_RECALL and fa <= GOAL_FALSE_ALARMS)
    else:
        summary.update(discmed=None, ratio=None, met=False)
    print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    main()
