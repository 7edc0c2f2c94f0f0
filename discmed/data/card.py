"""The data card: what is in a DISC-Med-SFT file and how it got there (Markdown + PNG).

Counts per source, conversation and reply length histograms, turns per conversation, the
teachers and prompt versions that wrote the records, and the file's history: the card takes
the file's fingerprint, finds the step summary that wrote it (`lineage.output`), then the
summaries that wrote that step's inputs, and so on back to the sources (`discmed.data.lineage`).
That chain is shown as a funnel (loaded → skipped at load → scrubbed → rewritten, rejected,
failed → dedup → decontam → mix) whose counts are checked to add up: each step's input is
the previous steps' output, and where it is not the card says so and why (a `--limit`, mix's
sampling, a file changed between steps).

Summaries in the folders that are not in the chain (another run, an experiment, a step whose
output was never mixed in) are listed as warnings and not counted: a folder may hold several
runs, and adding them up is how a card came to report 271 removals for a pipeline that removed
none. The card is still written (it describes the file, which it can), and the warnings are
on it and returned, so `discmed data card` prints them.

    write_card("disc-med-sft.jsonl", "card/", summaries=[read_json(p) for p in paths])
"""

from __future__ import annotations

import warnings as warnings_module
from collections import Counter
from pathlib import Path
from typing import Any

from discmed.chat import atomic_writer, iter_conversations
from discmed.data.idrules import PLACEHOLDER
from discmed.data.lineage import fingerprint
from discmed.data.sources import canonical_source


def _collect(path: str | Path) -> dict[str, Any]:
    sources: Counter = Counter()
    conv_len: list[int] = []
    reply_len: list[int] = []
    turns: Counter = Counter()
    teachers: Counter = Counter()
    errors: list = []
    for conv in iter_conversations(path, errors):
        sources[canonical_source(conv.source or "(none)")] += 1
        conv_len.append(sum(len(m["content"]) for m in conv.messages))
        reply_len.extend(len(m["content"]) for m in conv.messages if m["role"] == "assistant")
        turns[sum(1 for m in conv.messages if m["role"] == "user")] += 1
        prov = conv.extra.get("provenance")
        if isinstance(prov, dict) and prov.get("teacher"):
            teachers[f"{prov['teacher']} (prompt {prov.get('prompt_version', '?')})"] += 1
    return {"sources": sources, "conv_len": conv_len, "reply_len": reply_len, "turns": turns,
            "teachers": teachers, "bad_records": len(errors)}


# ---------------------------------------------------------------- the chain


def _name(s: dict) -> str:
    """How a summary is named in a warning: its file, else its step and output."""
    out = (s.get("lineage") or {}).get("output", {}).get("path") or s.get("output", "?")
    return s.get("_file") or f"the {s.get('step', '?')} summary for {Path(out).name}"


def trace(final: dict, summaries: list[dict]) -> tuple[list[dict], list[str]]:
    """The steps that made the file with fingerprint `final`, sources first, and warnings.

    Each step is {"summary", "parents": [indices of the steps that wrote its inputs],
    "outside": [inputs no summary wrote]}. A file is matched by its bytes (sha256) and, among
    the summaries that wrote those bytes, by its path: a step that removed nothing writes the
    bytes it read, so scrubbed.jsonl and a no-op decontam's clean.jsonl can be the same bytes."""
    by_output: dict[str, list[dict]] = {}
    for s in summaries:
        lin = s.get("lineage")
        if isinstance(lin, dict) and isinstance(lin.get("output"), dict):
            by_output.setdefault(lin["output"]["sha256"], []).append(s)
    steps: list[dict] = []
    warnings: list[str] = []
    used: set[int] = set()
    done: dict[tuple, int | None] = {}  # a file read by two steps (scrubbed: rewrite and dedup) is one step

    def out(s: dict) -> dict:
        return s["lineage"]["output"]

    def visit(fp: dict, seen: frozenset) -> int | None:
        """Index of the step that wrote `fp`, its history visited first (None: no summary did)."""
        key = (fp["sha256"], fp["path"])
        if key in done:
            return done[key]
        if key in seen:
            return None
        cands = by_output.get(fp["sha256"], [])
        # The writer of this very file; else (files moved since) the one that made these bytes
        # from other bytes, a step that changed nothing being left out of a history it may not be in.
        mine = [s for s in cands if out(s)["path"] == fp["path"]]
        mine = mine or [s for s in cands if all(i["sha256"] != fp["sha256"] for i in s["lineage"]["inputs"])]
        if not mine:
            return None
        s = mine[0]
        for twin in mine[1:]:
            if id(twin) not in used:
                warnings.append(f"{_name(twin)} describes the same file as {_name(s)} (same bytes): counted once")
                used.add(id(twin))
        used.add(id(s))
        parents, outside = [], []
        for inp in s["lineage"]["inputs"]:
            i = visit(inp, seen | {key})
            if i is None:
                outside.append(inp)
            else:
                parents.append(i)
        steps.append({"summary": s, "parents": parents, "outside": outside})
        done[key] = len(steps) - 1
        return done[key]

    visit(final, frozenset())
    for s in summaries:
        if id(s) in used:
            continue
        if not isinstance(s.get("lineage"), dict):
            warnings.append(f"{_name(s)} has no lineage (written before discmed recorded one, or by rewrite_file or "
                            "kgqa_file called from Python, which do not yet; their commands do): not used")
        else:
            warnings.append(f"{_name(s)} ({s.get('step')} → {Path(out(s)['path']).name}) is not in this file's "
                            "history: not counted")
    return steps, warnings


def _counts(s: dict) -> dict[str, Any]:
    """A step's records in and out, and what it dropped, from its own summary."""
    step, bad = s.get("step"), s.get("bad_records", 0)
    dropped: list[tuple[str, int]] = [("bad records skipped", bad)] if bad else []
    notes: list[str] = []
    if step == "load":
        n_in, n_out = s["records"] + bad, s["records"]
        dropped = [("skipped at load", bad)]
        notes.append(f"{s.get('kind')} from {', '.join(Path(p).name for p in s.get('inputs', []))}")
        if s.get("stopped_at_limit"):
            notes.append(f"stopped at --limit {s['limit']}")
    elif step == "scrub":
        n_in, n_out = s["records"] + bad, s["records"]
        notes.append(f"{s.get('replaced_total', 0):,} identifiers replaced in {s.get('records_changed', 0):,} records")
    elif step in ("rewrite", "kgqa"):
        failed = s.get("failed", 0)
        n_out = s["accepted"]
        n_in = (s["entities"] if step == "kgqa" else s["accepted"] + s["rejected"] + failed) + bad
        dropped += [("rejected", s["rejected"]), ("failed", failed)]
        if step == "kgqa":
            notes.append(f"{s.get('entities', 0):,} entities from {s.get('triples', 0):,} triples")
        if s.get("limit"):
            notes.append(f"--limit {s['limit']}")
    elif step == "dedup":
        n_out = s["kept"]
        n_in = s["kept"] + s["removed_exact"] + s["removed_near"] + bad
        dropped += [("exact duplicates", s["removed_exact"]), ("near duplicates", s["removed_near"])]
    elif step == "decontam":
        n_out = s["kept"]
        n_in = s["kept"] + s["removed"] + bad
        dropped += [("contain an evaluation item", s["removed"])]
    elif step == "mix":
        available = sum(s.get("available", {}).values())
        n_in, n_out = available + bad, s["records"]
        dropped += [(f"not drawn by the {s.get('recipe')} recipe (seed {s.get('seed')})", available - s["records"])]
    else:
        n_in = n_out = s.get("records")
    # The step's own categories are shown at zero too (a reader sees "failed 0", not nothing);
    # bad records only when there were some.
    return {"in": n_in, "out": n_out, "dropped": [(k, v) for k, v in dropped if v or k != "bad records skipped"],
            "notes": notes}


def funnel(steps: list[dict]) -> list[dict]:
    """One row per step, with its counts checked against the steps before it."""
    rows = []
    for i, st in enumerate(steps):
        s = st["summary"]
        c = _counts(s)
        row = {"n": i + 1, "step": s.get("step"), "output": s["lineage"]["output"]["path"], **c,
               "from": [p + 1 for p in st["parents"]], "outside": [x["path"] for x in st["outside"]], "check": ""}
        if s.get("step") == "kgqa":
            row["check"] = "entities of the CMeKG triples (not records)"
        elif st["parents"] and not st["outside"] and c["in"] is not None:
            expected = sum(rows[p]["out"] or 0 for p in st["parents"])
            if c["in"] == expected:
                row["check"] = "= " + " + ".join(f"#{p + 1}" for p in st["parents"])
            elif s.get("limit") and c["in"] < expected:
                row["check"] = f"{c['in']:,} of {expected:,}: run with --limit {s['limit']}"
            else:
                row["check"] = (f"does not add up: read {c['in']:,}, the input held {expected:,} "
                                "(was the file changed between the steps?)")
        elif st["outside"] and s.get("step") != "load":
            row["check"] = "input written outside the steps (no summary for it): not checked"
        rows.append(row)
    return rows


# ---------------------------------------------------------------- the card


def _pct(values: list[int], q: float) -> int:
    if not values:
        return 0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _table(counter: Counter, head: str, unit: str = "count") -> list[str]:
    if not counter:
        return [f"_No {head.lower()} recorded._", ""]
    rows = [f"| {head} | {unit} |", "|---|---:|"]
    rows += [f"| {k} | {v:,} |" for k, v in counter.most_common()]
    return rows + [""]


def write_card(data: str | Path, out_dir: str | Path, summaries: list[dict] | None = None,
               title: str = "DISC-Med-SFT (discmed)") -> dict[str, Any]:
    """Write `DATA_CARD.md` and `data_card.png` into `out_dir`; returns a summary with `warnings`.

    `summaries` are step summaries (a `_file` key, if present, names where each was read);
    only those in `data`'s history are used (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    c = _collect(data)
    total = sum(c["sources"].values())
    steps, warnings = trace(fingerprint(data), summaries or [])
    rows = funnel(steps)
    if not steps:
        warnings.insert(0, f"no step summary wrote {data} (looked for one whose output fingerprint is this file's): "
                           "the card has no history")
    elif rows[-1]["out"] != total:
        warnings.insert(0, f"the last step wrote {rows[-1]['out']:,} records, the file holds {total:,}")
    if c["bad_records"]:
        warnings.insert(0, f"{c['bad_records']:,} lines of {data} are not valid records (not counted here)")
    chain = [st["summary"] for st in steps]
    scrub_steps = [s for s in chain if s.get("step") == "scrub"]
    scrubbed: Counter = Counter()
    for s in scrub_steps:
        scrubbed.update({f"{k} {PLACEHOLDER.get(k, '')}".strip(): v for k, v in s.get("replaced", {}).items()})
    rejected: Counter = Counter()
    reasons: Counter = Counter()
    failed = []
    for s in chain:
        if s.get("step") in ("rewrite", "kgqa"):
            rejected[s["step"]] += s.get("rejected", 0)
            reasons.update({f"{s['step']}: {r}": n for r, n in s.get("rejected_by_reason", {}).items()})
            failures = Path(s["lineage"]["output"]["path"] + ".failed.jsonl")
            if s.get("failed"):
                failed.append(f"{s['step']}: {s['failed']:,} records failed (no reply from the teacher after retries)"
                              + (f", listed in `{failures}`" if failures.exists() else ""))

    # Chinese labels need a CJK font; fall back to DejaVu (boxes) without failing.
    plt.rcParams["font.sans-serif"] = ["Noto Sans CJK SC", "WenQuanYi Zen Hei", "SimHei", "DejaVu Sans"]
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    for ax, counter, name in ((axes[0][0], c["sources"], "Records per source"),
                              (axes[1][1], scrubbed, "Scrub: identifiers replaced")):
        items = counter.most_common(12)
        ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="#4c72b0")
        ax.set_title(name)
        if not items:
            ax.text(0.5, 0.5, "none recorded", ha="center", va="center", transform=ax.transAxes)
    ax = axes[1][2]
    labels = [f"#{r['n']} {r['step']}" for r in rows]
    ax.barh(labels[::-1], [r["out"] or 0 for r in rows][::-1], color="#8172b2")
    ax.set_title("Funnel: records out of each step")
    if not rows:
        ax.text(0.5, 0.5, "no history found", ha="center", va="center", transform=ax.transAxes)
    for ax, values, name in ((axes[0][1], c["conv_len"], "Conversation length (chars)"),
                             (axes[0][2], c["reply_len"], "Assistant reply length (chars)")):
        ax.hist(values or [0], bins=40, color="#55a868")
        ax.set_title(name)
    turns = sorted(c["turns"].items())
    axes[1][0].bar([str(k) for k, _ in turns], [v for _, v in turns], color="#c44e52")
    axes[1][0].set_title("User turns per conversation")
    fig.suptitle(f"{title}: {total:,} conversations")
    png = out_dir / "data_card.png"
    with warnings_module.catch_warnings():  # no CJK font installed: boxes, said once here, not per glyph
        warnings_module.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.tight_layout()
        with atomic_writer(png, "wb") as f:
            fig.savefig(f, format="png", dpi=80)
    plt.close(fig)

    lines = [f"# Data card: {title}", "", f"File: `{data}` — {total:,} conversations.", "",
             "![data card](data_card.png)", ""]
    if warnings:
        lines += ["**Warnings**", ""] + [f"- {w}" for w in warnings] + [""]
    lines += ["## Sources", "", "| source | records | share |", "|---|---:|---:|"]
    lines += [f"| {s} | {n:,} | {n / total:.1%} |" for s, n in c["sources"].most_common()] if total else []
    lines += [""]
    lines += ["## How it was made", "",
              "Each step's input is the output of the steps it names (`from`); its counts come from its own summary.",
              "", "| # | step | output | from | in | out | not carried forward | check |", "|---|---|---|---|---:|---:|---|---|"]
    for r in rows:
        src = ", ".join(f"#{p}" for p in r["from"]) + (", " if r["from"] and r["outside"] else "") + ", ".join(
            f"`{Path(p).name}`" for p in r["outside"])
        drop = "; ".join(f"{k} {v:,}" for k, v in r["dropped"]) or "—"
        note = "; ".join(r["notes"])
        lines.append(f"| {r['n']} | {r['step']}{f' ({note})' if note else ''} | `{Path(r['output']).name}` | {src} | "
                     f"{r['in'] if r['in'] is None else format(r['in'], ',')} | "
                     f"{r['out'] if r['out'] is None else format(r['out'], ',')} | {drop} | {r['check']} |")
    lines += [""]
    mix = next((s for s in reversed(chain) if s.get("step") == "mix"), None)
    if mix:
        lines += [f"Mixed by the {mix['recipe']} recipe with seed {mix['seed']}: available per source "
                  + ", ".join(f"{k} {v:,}" for k, v in mix["available"].items()) + "; taken "
                  + ", ".join(f"{k} {v:,}" for k, v in mix["taken"].items()) + ".", ""]
    lines += ["## Lengths", "",
              f"Conversation characters: median {_pct(c['conv_len'], 0.5):,}, 90th percentile {_pct(c['conv_len'], 0.9):,}, "
              f"max {max(c['conv_len'], default=0):,}. Assistant replies: median {_pct(c['reply_len'], 0.5):,}, "
              f"90th percentile {_pct(c['reply_len'], 0.9):,}.", ""]
    lines += ["## De-identification (scrub)", ""] + _table(scrubbed, "Identifier type (placeholder)")
    for s in scrub_steps:
        lines += [f"Method: {s.get('method', 'rules')}, {s['records']:,} records. Every replacement (record, message, "
                  f"span, original text, type, rule or model) is in `{s.get('changes')}` "
                  f"({s.get('changes_count', 0):,} lines) for review.", ""]
    lines += ["## Rejected and failed", ""]
    if rejected:
        lines += ["Rejected records (the funnel's counts): " + ", ".join(f"{k} {v:,}" for k, v in rejected.items()) + ".", ""]
        lines += _table(reasons, "Reason (a record may have several)", "records with it")
    else:
        lines += ["_No rewrite or KG-QA step in this file's history._", ""]
    lines += [f"- {f}" for f in failed] + ([""] if failed else [])
    lines += ["## Teachers and prompt versions", ""] + _table(c["teachers"], "Teacher")
    lines += ["## Caveats", "",
              "- Consultations come from public medical Q&A sites; scrubbing (rules plus a learned NER) is measured, not perfect.",
              "- Rewritten replies are checked for fidelity by rules (drugs, doses, tests, diagnoses, numbers kept),",
              "  not by a physician. A model trained on this data is not a medical authority.", ""]
    md = out_dir / "DATA_CARD.md"
    with atomic_writer(md) as f:
        f.write("\n".join(lines))
    return {"step": "card", "data": str(data), "records": total, "markdown": str(md), "png": str(png),
            "sources": dict(c["sources"]), "scrub": dict(scrubbed), "rejected": dict(rejected),
            "rejected_by_reason": dict(reasons),
            "funnel": [{k: r[k] for k in ("n", "step", "output", "from", "in", "out", "dropped", "check")} for r in rows],
            "warnings": warnings}
