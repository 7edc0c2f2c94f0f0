"""The data card: what is in a DISC-Med-SFT file and how it got there (Markdown + PNG).

Counts per source, conversation and reply length histograms, turns per conversation, and,
from the step summaries (each `discmed data …` step writes one beside its output), scrub
replacements per identifier type, rewrite/kgqa rejects by reason, dedup and decontam
removals, the mix recipe, and the teachers and prompt versions that wrote the records.

    write_card("disc-med-sft.jsonl", "card/", summaries=[json.load(open(p)) for p in paths])
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from discmed.chat import atomic_writer, iter_conversations


def _collect(path: str | Path) -> dict[str, Any]:
    sources: Counter = Counter()
    conv_len: list[int] = []
    reply_len: list[int] = []
    turns: Counter = Counter()
    teachers: Counter = Counter()
    errors: list = []
    for conv in iter_conversations(path, errors):
        sources[conv.source or "?"] += 1
        conv_len.append(sum(len(m["content"]) for m in conv.messages))
        reply_len.extend(len(m["content"]) for m in conv.messages if m["role"] == "assistant")
        turns[sum(1 for m in conv.messages if m["role"] == "user")] += 1
        prov = conv.extra.get("provenance")
        if isinstance(prov, dict) and prov.get("teacher"):
            teachers[f"{prov['teacher']} (prompt {prov.get('prompt_version', '?')})"] += 1
    return {"sources": sources, "conv_len": conv_len, "reply_len": reply_len, "turns": turns,
            "teachers": teachers, "bad_records": len(errors)}


def _merge_steps(summaries: list[dict]) -> dict[str, Counter]:
    scrub, rejects, removed, methods = Counter(), Counter(), Counter(), Counter()
    for s in summaries:
        step = s.get("step")
        if step == "scrub":
            scrub.update(s.get("replaced", {}))
            methods[s.get("method", "rules")] += s.get("records", 0)
        elif step in ("rewrite", "kgqa"):
            for reason, n in s.get("rejected_by_reason", {}).items():
                rejects[f"{step}: {reason}"] += n
        elif step == "dedup":
            removed["dedup exact"] += s.get("removed_exact", 0)
            removed["dedup near"] += s.get("removed_near", 0)
        elif step == "decontam":
            removed["decontam"] += s.get("removed", 0)
    return {"scrub": scrub, "rejects": rejects, "removed": removed, "scrub_methods": methods}


def _pct(values: list[int], q: float) -> int:
    if not values:
        return 0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def write_card(data: str | Path, out_dir: str | Path, summaries: list[dict] | None = None,
               title: str = "DISC-Med-SFT (discmed)") -> dict[str, Any]:
    """Write `DATA_CARD.md` and `data_card.png` into `out_dir`; returns a summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries = summaries or []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    c = _collect(data)
    steps = _merge_steps(summaries)
    total = sum(c["sources"].values())

    # Chinese labels need a CJK font; fall back to DejaVu (boxes) without failing.
    plt.rcParams["font.sans-serif"] = ["Noto Sans CJK SC", "WenQuanYi Zen Hei", "SimHei", "DejaVu Sans"]
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    panels = [
        (axes[0][0], c["sources"], "Records per source"),
        (axes[1][1], steps["scrub"], "Scrub: identifiers replaced"),
        (axes[1][2], steps["rejects"] + steps["removed"], "Rejected / removed, by reason"),
    ]
    for ax, counter, name in panels:
        items = counter.most_common(12)
        ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="#4c72b0")
        ax.set_title(name)
        if not items:
            ax.text(0.5, 0.5, "none recorded", ha="center", va="center", transform=ax.transAxes)
    for ax, values, name in ((axes[0][1], c["conv_len"], "Conversation length (chars)"),
                             (axes[0][2], c["reply_len"], "Assistant reply length (chars)")):
        ax.hist(values or [0], bins=40, color="#55a868")
        ax.set_title(name)
    turns = sorted(c["turns"].items())
    axes[1][0].bar([str(k) for k, _ in turns], [v for _, v in turns], color="#c44e52")
    axes[1][0].set_title("User turns per conversation")
    fig.suptitle(f"{title}: {total:,} conversations")
    fig.tight_layout()
    png = out_dir / "data_card.png"
    with atomic_writer(png, "wb") as f:
        fig.savefig(f, format="png", dpi=80)
    plt.close(fig)

    def table(counter: Counter, head: str) -> list[str]:
        if not counter:
            return [f"_No {head.lower()} recorded._", ""]
        rows = [f"| {head} | count |", "|---|---:|"]
        rows += [f"| {k} | {v:,} |" for k, v in counter.most_common()]
        return rows + [""]

    mix = next((s for s in summaries if s.get("step") == "mix"), None)
    lines = [f"# Data card: {title}", "", f"File: `{data}` — {total:,} conversations.", "",
             "![data card](data_card.png)", "", "## Sources", ""]
    lines += ["| source | records | share |", "|---|---:|---:|"]
    lines += [f"| {s} | {n:,} | {n / total:.1%} |" for s, n in c["sources"].most_common()] if total else []
    lines += [""]
    if mix:
        lines += [f"Mixed by the {mix['recipe']} recipe with seed {mix['seed']}; available per source: "
                  f"{json.dumps(mix['available'], ensure_ascii=False)}.", ""]
    lines += ["## Lengths", "",
              f"Conversation characters: median {_pct(c['conv_len'], 0.5):,}, 90th percentile {_pct(c['conv_len'], 0.9):,}, "
              f"max {max(c['conv_len'], default=0):,}. Assistant replies: median {_pct(c['reply_len'], 0.5):,}, "
              f"90th percentile {_pct(c['reply_len'], 0.9):,}.", ""]
    from discmed.data.scrub import PLACEHOLDER

    scrubbed = Counter({f"{k} {PLACEHOLDER.get(k, '')}".strip(): v for k, v in steps["scrub"].items()})
    lines += ["## De-identification (scrub)", ""] + table(scrubbed, "Identifier type (placeholder)")
    if steps["scrub_methods"]:
        lines += ["Method: " + "; ".join(f"{m} ({n:,} records)" for m, n in steps["scrub_methods"].most_common()) + ".", ""]
    lines += ["## Rejected and removed", ""] + table(steps["rejects"] + steps["removed"], "Reason")
    lines += ["## Teachers and prompt versions", ""] + table(c["teachers"], "Teacher")
    lines += ["## Caveats", "",
              "- Consultations come from public medical Q&A sites; scrubbing (rules plus a learned NER) is measured, not perfect.",
              "- Rewritten replies are checked for fidelity by rules (drugs, doses, tests, diagnoses, numbers kept),",
              "  not by a physician. A model trained on this data is not a medical authority.", ""]
    md = out_dir / "DATA_CARD.md"
    with atomic_writer(md) as f:
        f.write("\n".join(lines))
    return {"step": "card", "data": str(data), "records": total, "markdown": str(md), "png": str(png),
            "sources": dict(c["sources"]), "scrub": dict(steps["scrub"]),
            "rejected": dict(steps["rejects"]), "removed": dict(steps["removed"])}
