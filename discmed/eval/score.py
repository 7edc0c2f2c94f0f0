"""Score tables and charts from judgement files: DISC's README tables, per-category means,
a radar chart and grouped bar charts.

Input: judgement lines in DISC's format (`{"id","model","source","scores","prompt"}`, one per
dialogue), DISC's released `result_<model>_<set>.jsonl` or discmed's own `eval judge` output.
A model's score on a set is the mean over dialogues of each criterion; its "mean" is the mean
of the four (DISC's "Average" column). Categories are joined by dialogue id from the set's
samples file: CMD by `department`, CMID by intent class `cate` — the breakdowns behind DISC's
CMD and CMID figures. Lines whose scores cannot be parsed are counted, never averaged in.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from discmed.chat import DataError, atomic_writer, iter_jsonl, read_json
from discmed.eval.judge import CRITERIA, parse_scores

# Which samples file and which field give each set's categories.
CATEGORY_FIELD = {"cmd": ("cmd_samples.json", "department"), "cmid": ("cmid_samples.json", "cate")}

# English labels for charts drawn without a CJK font (DISC's six departments, four intents).
ENGLISH = {
    "儿科": "Pediatrics", "内科": "Internal Med.", "外科": "Surgery", "妇产科": "Obstetrics & Gyn.",
    "男科": "Andrology", "肿瘤科": "Oncology", "病症": "Condition", "药物": "Medication",
    "治疗方案": "Treatment", "其他": "Other",
}
SHORT = {"Proactivity": "Proactivity", "Accuracy": "Accuracy", "Helpfulness": "Helpfulness",
         "Linguistic Quality": "Linguistic\nQuality"}


@dataclass
class Judgement:
    id: str
    model: str
    set: str  # "cmb-clin", "cmd", "cmid", or the source as written, lower-cased
    scores: dict[str, float] | None
    path: str
    line: int


def read_judgements(paths: list[str | Path]) -> list[Judgement]:
    """Read judgement JSONL files; a malformed line raises `DataError` naming file:line:field."""
    out = []
    for path in paths:

        def parse(record: Any, n: int, path: str | Path = path) -> Judgement:
            if not isinstance(record, dict):
                raise DataError(path, n, "record", "expected a JSON object")
            for key in ("id", "model", "source", "scores"):
                if not isinstance(record.get(key), str | int):
                    raise DataError(path, n, key, "missing or not a string")
            return Judgement(str(record["id"]), str(record["model"]), str(record["source"]).lower(),
                             parse_scores(str(record["scores"])), str(path), n)

        out += iter_jsonl(path, parse)
    return out


def read_categories(samples: Path | None) -> dict[str, dict[str, str]]:
    """{set: {id: category}} from a samples folder holding cmd_samples.json / cmid_samples.json."""
    cats: dict[str, dict[str, str]] = {}
    if samples is None:
        return cats
    for name, (filename, field) in CATEGORY_FIELD.items():
        path = Path(samples) / filename
        if path.is_file():
            records = read_json(path)
            cats[name] = {str(r["id"]): r[field] for r in records if field in r}
    return cats


def summarize(judgements: list[Judgement], categories: dict[str, dict[str, str]] | None = None) -> dict:
    """{model: {set: {criterion: mean, ..., "mean", "n", "unparsed", "by": {category: mean}}}}."""
    categories = categories or {}
    groups: dict[tuple[str, str], list[Judgement]] = defaultdict(list)
    for j in judgements:
        groups[(j.model, j.set)].append(j)
    out: dict[str, dict[str, Any]] = {}
    for (model, name), items in groups.items():
        scored = [j.scores for j in items if j.scores is not None]
        row: dict[str, Any] = {}
        for c in CRITERIA:
            row[c] = sum(s[c] for s in scored) / len(scored) if scored else None
        row["mean"] = sum(row[c] for c in CRITERIA) / len(CRITERIA) if scored else None
        row["n"] = len(scored)
        row["unparsed"] = len(items) - len(scored)
        if name in categories:
            by: dict[str, list[float]] = defaultdict(list)
            unmatched = 0
            for j in items:
                if j.scores is None:
                    continue
                cat = categories[name].get(j.id)
                if cat is None:
                    unmatched += 1  # e.g. DISC's gpt-4 CMD file has one case not in the samples
                    continue
                by[cat].append(sum(j.scores.values()) / len(CRITERIA))
            row["by"] = {cat: sum(v) / len(v) for cat, v in by.items()}
            row["by_n"] = {cat: len(v) for cat, v in by.items()}
            row["unmatched"] = unmatched
        out.setdefault(model, {})[name] = row
    return out


def sets_in(summary: dict) -> list[str]:
    order = ["cmb-clin", "cmd", "cmid"]
    found = {s for m in summary.values() for s in m}
    return [s for s in order if s in found] + sorted(found - set(order))


def markdown(summary: dict) -> str:
    """DISC's README layout: one table per set, criteria and Average to two decimals."""
    lines = []
    for name in sets_in(summary):
        title = {"cmb-clin": "CMB-clin", "cmd": "CMD", "cmid": "CMID"}.get(name, name)
        lines += [f"#### Results of {title}", "",
                  "| **Model** | " + " | ".join(f"**{c}**" for c in CRITERIA) + " | **Average** |",
                  "|---" * (len(CRITERIA) + 2) + "|"]
        cats: list[str] = []
        for model, sets in summary.items():
            row = sets.get(name)
            if row is None:
                continue
            cells = [f"{row[c]:.2f}" if row[c] is not None else "—" for c in [*CRITERIA, "mean"]]
            note = f" ({row['unparsed']} unparsed)" if row["unparsed"] else ""
            lines.append(f"| **{model}**{note} | " + " | ".join(cells) + " |")
            cats += [c for c in row.get("by", {}) if c not in cats]
        if cats:
            lines += ["", f"Mean of the four criteria by {'department' if name == 'cmd' else 'category'}:", "",
                      "| **Model** | " + " | ".join(f"**{c}**" for c in cats) + " |",
                      "|---" * (len(cats) + 1) + "|"]
            for model, sets in summary.items():
                by = sets.get(name, {}).get("by")
                if by is not None:
                    lines.append(f"| **{model}** | " + " | ".join(f"{by[c]:.2f}" if c in by else "—" for c in cats) + " |")
        lines.append("")
    return "\n".join(lines)


# --- charts ----------------------------------------------------------------------------


def _cjk_font() -> str | None:
    """Name of an installed font that has Chinese glyphs, or None."""
    from matplotlib import font_manager

    hints = ("CJK", "WenQuanYi", "Hei", "Song", "Kai", "Han Sans", "Han Serif", "Ming", "Noto Sans SC", "PingFang")
    for font in font_manager.fontManager.ttflist:
        if any(h.lower() in font.name.lower() for h in hints):
            return font.name
    return None


def _labels(texts: list[str], cjk: bool) -> list[str]:
    """Tick and legend labels: as written when a CJK font is installed; else English for the
    known DISC categories and a numbered placeholder for other non-ASCII names (never a
    row of missing-glyph boxes)."""
    return [t if cjk or t.isascii() else ENGLISH.get(t, f"#{i + 1}") for i, t in enumerate(texts)]


def _save(fig: Any, path: Path) -> None:
    with atomic_writer(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")


def draw_charts(summary: dict, out_dir: str | Path) -> list[Path]:
    """A radar chart per set (models over the four criteria) and a grouped bar chart per set
    (by category where the set has them, else by criterion). Returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out_dir = Path(out_dir)
    font = _cjk_font()
    cjk = font is not None
    if cjk:
        plt.rcParams["font.sans-serif"] = [font, "DejaVu Sans"]
        plt.rcParams["axes.unicode_minus"] = False
    written = []
    for name in sets_in(summary):
        rows = {m: s[name] for m, s in summary.items() if name in s and s[name]["mean"] is not None}
        if not rows:
            continue
        title = {"cmb-clin": "CMB-clin", "cmd": "CMD", "cmid": "CMID"}.get(name, name)
        low = min(min(r[c] for c in CRITERIA) for r in rows.values())
        floor = max(0.0, np.floor((low - 0.25) * 2) / 2)

        # Radar: one polygon per model; the radial axis starts near the lowest score, as
        # DISC's scores all sit between 3.9 and 5 and a zero-based axis hides the differences.
        angles = np.linspace(0, 2 * np.pi, len(CRITERIA), endpoint=False).tolist()
        fig = plt.figure(figsize=(6.4, 6.4))
        ax = fig.add_subplot(polar=True)
        names = _labels(list(rows), cjk)
        for label, row in zip(names, rows.values(), strict=True):
            values = [row[c] for c in CRITERIA]
            ax.plot(angles + angles[:1], values + values[:1], linewidth=1.6, label=label)
            ax.fill(angles + angles[:1], values + values[:1], alpha=0.08)
        ax.set_xticks(angles)
        ax.set_xticklabels([SHORT[c] for c in CRITERIA])
        ax.set_ylim(floor, 5.0)
        ax.set_title(f"{title}: judge scores (1-5)", pad=18)
        ax.legend(loc="upper right", bbox_to_anchor=(1.35, 1.1), fontsize=8)
        path = out_dir / f"radar_{name}.png"
        _save(fig, path)
        plt.close(fig)
        written.append(path)

        # Grouped bars: categories on the x axis, one bar per model.
        cats = [c for r in rows.values() for c in r.get("by", {})]
        cats = list(dict.fromkeys(cats))
        groups = cats or list(CRITERIA)
        fig, ax = plt.subplots(figsize=(max(6.4, 1.4 * len(groups) + 2), 4.4))
        width = 0.8 / len(rows)
        x = np.arange(len(groups))
        for i, (label, row) in enumerate(zip(names, rows.values(), strict=True)):
            values = [row["by"].get(g, np.nan) for g in groups] if cats else [row[g] for g in groups]
            ax.bar(x + (i - (len(rows) - 1) / 2) * width, values, width, label=label)
        ax.set_xticks(x)
        ax.set_xticklabels(_labels(groups, cjk) if cats else groups)
        ax.set_ylim(floor, 5.0)
        ax.set_ylabel("mean score (1-5)")
        ax.set_title(f"{title}: mean of the four criteria by category" if cats else f"{title}: mean score per criterion")
        ax.legend(fontsize=8, ncol=min(6, len(rows)), loc="upper center", bbox_to_anchor=(0.5, -0.1))
        ax.grid(axis="y", alpha=0.3)
        path = out_dir / f"bars_{name}.png"
        _save(fig, path)
        plt.close(fig)
        written.append(path)
    return written


def json_summary(summary: dict) -> dict:
    """The `--json` shape: {model: {set: {criterion: v, ..., "mean": m, "by": {cat: mean}}}}."""
    out: dict[str, dict[str, Any]] = {}
    for model, sets in summary.items():
        for name, row in sets.items():
            item = {c: _round(row[c]) for c in CRITERIA}
            item["mean"] = _round(row["mean"])
            item["by"] = {k: _round(v) for k, v in row.get("by", {}).items()}
            item["n"] = row["n"]
            item["unparsed"] = row["unparsed"]
            out.setdefault(model, {})[name] = item
    return out


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)
