"""Red-flag triage, leave-one-author-out: rules alone, classifier alone, combined, per writer.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/safety_loao.py               # all writers
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/safety_loao.py --authors a1_ed_nurse,a7_rural

The corpus is tests/data/authors/ (eight independent writers, 40 urgent + 50 not urgent
each; see its README) and the project's own sets as a ninth "author" (tests/data/
triage_dev.jsonl, triage_heldout.jsonl, triage_en.jsonl, tests/safety_cases.jsonl). For each author k:

- classifier: trained on every other author's messages (the project's included), scored on
  k's — mechanical leave-one-author-out (discmed.serve.triage_clf, same settings as served);
- rules: the shipped catalogue (discmed/serve/rules/redflags.yaml). Rules written by hand
  cannot "un-see" a writer, so the table says which writers the catalogue was developed on
  (their figure is not blind) and which were locked away until the end (blind);
- combined: urgent when the rules fire or the classifier's probability ≥ its threshold —
  what `discmed.serve.safety.triage` does.

Context is measured on its own: over each author's messages, the rules with every mention
counted (context off) against the rules as shipped — the false alarms the context rules
removed, and the urgent messages they wrongly silenced.

The last line is the JSON summary: worst-author combined recall against the goal (0.90,
English included) with false alarms ≤ 0.05; "peer" is main's blind figure before this work
(worst author recall 0.225, tests/data/authors/README.md).
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

# The development protocol (issue 24): the catalogue and the classifier's settings were
# developed on these writers and the project's own sets; the others were locked away —
# never opened or printed — until the rules were frozen, then scored once.
DEVELOPED_ON = ["a1_ed_nurse", "a2_peds_parent", "a4_obstetrics", "a5_onco_dialysis", "a7_rural", "project"]
LOCKED = ["a3_elder_care", "a6_mental_health", "a8_english"]
BLIND_WORST_RECALL = 0.225  # main before this work, worst writer (tests/data/authors/README.md)
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
            "n": len(test), "urgent": sum(urg), "developed_on": k in DEVELOPED_ON,
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
        tag = "" if v["developed_on"] else "  (locked: blind)"
        print(f"{k:18} {v['n']:>4}  {fmt(v['rules']):13} {fmt(v['classifier']):13} {fmt(v['combined']):17} "
              f"{en:8} {ctx:>36}{tag}")
    writers = {k: v for k, v in table.items() if k != "project"}
    summary = {"benchmark": "safety_loao", "unit": "worst-writer triage recall, leave-one-author-out, combined",
               "peer": BLIND_WORST_RECALL, "goal": GOAL_RECALL, "goal_false_alarms": GOAL_FALSE_ALARMS,
               "threshold": threshold, "seconds": round(time.perf_counter() - t0, 1),
               "developed_on": [k for k in table if table[k]["developed_on"]],
               "locked": [k for k in table if not table[k]["developed_on"]],
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
