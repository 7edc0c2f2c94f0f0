"""Export of a curation: the behaviour set as DISC-Med-SFT JSONL, DPO preference pairs, and the
agreement between annotators (Cohen's κ on the items two people annotated).

Which decision counts. An item annotated twice (the overlap) has two decisions; the SFT record
and the DPO pairs come from the first one submitted, so overlap items weigh the same as the others
and the set does not depend on who annotated last. Both decisions feed the agreement figures.

- SFT: the consultation plus the chosen reply — the annotator's edit when they wrote one,
  otherwise the candidate they picked. Items where every candidate was rejected and nothing was
  written give no SFT record.
- DPO: {"prompt": [messages…], "chosen": "...", "rejected": "..."} for each candidate marked
  unacceptable, against the chosen reply (TRL's conversational-prompt format, which
  `discmed train dpo` reads).
"""

from __future__ import annotations

import json
import math
from itertools import combinations
from pathlib import Path

from discmed.chat import atomic_write_text
from discmed.data.curate.store import Decision, Item, Store


def resolve(store: Store) -> tuple[dict[str, Item], dict[str, Decision]]:
    """Items by id, and the decision that counts for each decided item (the first submitted)."""
    first = _first(store.decisions())
    return {it.id: it for it in store.items()}, first


def _first(decisions: list[Decision]) -> dict[str, Decision]:
    first: dict[str, Decision] = {}
    for d in decisions:  # oldest first
        first.setdefault(d.item_id, d)
    return first


def chosen_text(item: Item, d: Decision) -> str | None:
    """The reply the annotator wants the model to give, or None when they accepted nothing."""
    if d.edited:
        return d.edited
    if d.best is not None:
        return next(c.text for c in item.candidates if c.id == d.best)
    return None


def build_sft(store: Store, source: str = "curated") -> list[dict]:
    return _sft(*resolve(store), source)


def _sft(items: dict[str, Item], first: dict[str, Decision], source: str) -> list[dict]:
    out = []
    for item_id, d in first.items():
        reply = chosen_text(items[item_id], d)
        if reply is None:
            continue
        conv = [{"role": m["role"], "content": m["content"]} for m in items[item_id].messages]
        out.append(
            {
                "_id": item_id,
                "source": source,
                "conversation": conv + [{"role": "assistant", "content": reply}],
            }
        )
    return out


def build_dpo(store: Store) -> list[dict]:
    return _dpo(*resolve(store))


def _dpo(items: dict[str, Item], first: dict[str, Decision]) -> list[dict]:
    out = []
    for item_id, d in first.items():
        item = items[item_id]
        chosen = chosen_text(item, d)
        if chosen is None:
            continue
        texts = {c.id: c.text for c in item.candidates}
        prompt = [{"role": m["role"], "content": m["content"]} for m in item.messages]
        for cid in sorted(d.rejected):
            if texts[cid] != chosen:
                out.append({"prompt": prompt, "chosen": chosen, "rejected": texts[cid]})
    return out


def preferred_label(item: Item, d: Decision) -> str:
    """The category a decision puts an item in, for κ: the position (A, B, …) of the candidate
    preferred — picked, or the one an edit started from — or "edit" / "none"."""
    pick = d.best if d.best is not None else d.edited_from
    if pick is not None:
        return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[[c.id for c in item.candidates].index(pick)]
    return "edit" if d.edited else "none"


def _kappa(a: list[str], b: list[str]) -> float | None:
    from sklearn.metrics import cohen_kappa_score

    if not a:
        return None
    k = float(cohen_kappa_score(a, b))
    # Both annotators gave one and the same label throughout: κ is 0/0, undefined.
    return None if math.isnan(k) else round(k, 4)


def agreement(store: Store) -> list[dict]:
    """Per annotator pair, on the items both decided: Cohen's κ on which candidate is best
    (kappa_best) and on each candidate's acceptable/unacceptable mark (kappa_acceptable), with
    the raw agreement rates beside them."""
    decisions = store.decisions()
    return _agreement({it.id: it for it in store.items()}, decisions)


def _agreement(items: dict[str, Item], decisions: list[Decision]) -> list[dict]:
    by: dict[str, dict[str, Decision]] = {}
    for d in decisions:
        by.setdefault(d.annotator, {})[d.item_id] = d
    pairs = []
    for a, b in combinations(sorted(by), 2):
        common = sorted(set(by[a]) & set(by[b]))
        if not common:
            continue
        best_a = [preferred_label(items[i], by[a][i]) for i in common]
        best_b = [preferred_label(items[i], by[b][i]) for i in common]
        acc_a, acc_b = [], []
        for i in common:
            for c in items[i].candidates:
                acc_a.append("rejected" if c.id in by[a][i].rejected else "acceptable")
                acc_b.append("rejected" if c.id in by[b][i].rejected else "acceptable")
        pairs.append(
            {
                "a": a,
                "b": b,
                "items": len(common),
                "best_agreement": round(
                    sum(x == y for x, y in zip(best_a, best_b, strict=True)) / len(common), 4
                ),
                "kappa_best": _kappa(best_a, best_b),
                "candidates": len(acc_a),
                "acceptable_agreement": round(
                    sum(x == y for x, y in zip(acc_a, acc_b, strict=True)) / len(acc_a), 4
                ),
                "kappa_acceptable": _kappa(acc_a, acc_b),
            }
        )
    return pairs


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def export(store: Store, out_dir: str | Path, source: str = "curated") -> dict:
    """Write sft.jsonl, dpo.jsonl and agreement.json under `out_dir` (each atomically) and
    return a summary."""
    out = Path(out_dir)
    # Read once, so the three files agree; decisions first, so every decided item is in `items`
    # even while annotators keep working.
    decisions = store.decisions()
    items = {it.id: it for it in store.items()}
    first = _first(decisions)
    sft, dpo, pairs = _sft(items, first, source), _dpo(items, first), _agreement(items, decisions)
    atomic_write_text(out / "sft.jsonl", _jsonl(sft))
    atomic_write_text(out / "dpo.jsonl", _jsonl(dpo))
    atomic_write_text(out / "agreement.json", json.dumps({"pairs": pairs}, ensure_ascii=False, indent=2) + "\n")
    return {
        "decisions": len(decisions),
        "sft": len(sft),
        "dpo": len(dpo),
        "agreement": pairs,
        "sft_path": str(out / "sft.jsonl"),
        "dpo_path": str(out / "dpo.jsonl"),
        "agreement_path": str(out / "agreement.json"),
    }
