"""Score tables and charts from judgement files: DISC's README tables with what they compare
(the judge, n of N cases, 95% intervals), per-category means, radar and point-range charts.

Input: judgement lines in DISC's format (`{"id","model","source","scores","prompt"}`, one per
dialogue), DISC's released `result_<model>_<set>.jsonl` or discmed's own `eval judge` output,
which adds `"judge": {"spec", "identity"}`. A model's score on a set is the mean over dialogues
of each criterion; its "mean" is the mean of the four (DISC's "Average" column). Categories
are joined by dialogue id from the set's samples file: CMD by `department`, CMID by intent
class `cate` — the breakdowns behind DISC's CMD and CMID figures. Lines whose scores cannot be
parsed are counted, never averaged in.

A table puts rows side by side only as far as they compare: each row says its judge and n of
N (N from the set's samples file, else the most cases any row has), and a set whose rows
differ in judge, case count or case ids opens with a line saying what differs.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from discmed.chat import DataError, atomic_writer, iter_jsonl, read_json
from discmed.eval.judge import CRITERIA, load_prompt, parse_scores

# Which samples file and which field give each set's categories.
CATEGORY_FIELD = {"cmd": ("cmd_samples.json", "department"), "cmid": ("cmid_samples.json", "cate")}
# Each set's case file: its ids are the N of "n of N".
CASE_FILE = {"cmb-clin": "CMB-cases.json", "cmd": "cmd_samples.json", "cmid": "cmid_samples.json"}
TITLE = {"cmb-clin": "CMB-clin", "cmd": "CMD", "cmid": "CMID"}

# DISC's released judgement lines name no judge. They are recognised (see `judge_of`) by their
# prompt, DISC's English rubric verbatim, in a file under DISC's `gpt4_scores/` folder; DISC's
# paper and README say GPT-4 wrote them.
DISC_RELEASE = {
    "spec": "gpt-4",
    "identity": "DISC-MedLLM release",
    "how": "DISC's released GPT-4 judgements: the lines name no judge; recognised by their prompt "
           "(DISC's English rubric, verbatim) in DISC's gpt4_scores/ folder",
}
BOOT = 2000  # bootstrap resamples for the 95% intervals (percentile method, seed 0)

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
    judge: dict[str, str]  # {"spec", "identity"} (+ "how" when it was inferred, not written)


_DISC_HEADS: tuple[str, ...] = ()


def judge_of(record: dict, path: str | Path, line: int) -> dict[str, str]:
    """Who judged a line: its own `judge` field (discmed's `eval judge` writes one); else DISC's
    release when the prompt is DISC's rubric and the file lies under `gpt4_scores/`; else an
    unknown judge, said so rather than guessed."""
    global _DISC_HEADS
    judge = record.get("judge")
    if judge is not None:
        if not isinstance(judge, dict) or not all(isinstance(judge.get(k), str) and judge[k] for k in ("spec", "identity")):
            raise DataError(path, line, "judge", 'expected {"spec": "...", "identity": "..."}')
        return {"spec": judge["spec"], "identity": judge["identity"]}
    if not _DISC_HEADS:  # the rubric up to the transcript, both of DISC's variants
        heads = [load_prompt(n) for n in ("judge_disc_cmb-clin.txt", "judge_disc_dialogue.txt")]
        _DISC_HEADS = tuple(h[: h.index("[start of conversation]")] for h in heads)
    prompt = record.get("prompt")
    disc_prompt = isinstance(prompt, str) and prompt.startswith(_DISC_HEADS)
    if disc_prompt and "gpt4_scores" in Path(path).parts:
        return dict(DISC_RELEASE)
    return {"spec": "unknown judge", "identity": "unknown",
            "how": "the lines name no judge" + (" (their prompt is DISC's rubric, but they are not in DISC's "
                                                "gpt4_scores/ folder)" if disc_prompt else "")}


def judge_key(judge: dict[str, str]) -> tuple[str, str]:
    return (judge["spec"], judge["identity"])


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
                             parse_scores(str(record["scores"])), str(path), n, judge_of(record, path, n))

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


def read_case_sets(samples: Path | None) -> dict[str, dict[str, Any]]:
    """{set: {"ids": [...], "from": file name}} for each of DISC's case files in a samples
    folder: the N of "n of N" (73 for CMB-clin, 120 for CMD and CMID)."""
    sets: dict[str, dict[str, Any]] = {}
    if samples is None:
        return sets
    for name, filename in CASE_FILE.items():
        path = Path(samples) / filename
        if path.is_file():
            records = read_json(path)
            if not isinstance(records, list):
                raise DataError(path, None, "<file>", "expected a JSON array of cases")
            sets[name] = {"ids": [str(r.get("id", i)) if isinstance(r, dict) else str(i) for i, r in enumerate(records)],
                          "from": filename}
    return sets


def bootstrap_means(x: np.ndarray, n_boot: int = BOOT, seed: int = 0) -> list[list[float]]:
    """95% percentile bootstrap interval of the mean of each column of `x` (rows: dialogues),
    one resampling of rows shared by all columns; [None, None] under two rows (no spread to
    resample: an interval of one dialogue would read as certainty)."""
    x = np.asarray(x, dtype=np.float64)
    x = x.reshape(len(x), -1) if x.ndim < 2 else x
    if len(x) < 2:
        return [[None, None] for _ in range(x.shape[1])]
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5], axis=0)
    return [[float(a), float(b)] for a, b in zip(lo, hi, strict=True)]


def summarize(judgements: list[Judgement], categories: dict[str, dict[str, str]] | None = None,
              cases: dict[str, dict[str, Any]] | None = None) -> dict:
    """{model: {set: row}}; a row holds each criterion's mean and "mean", "ci95" (95% bootstrap
    intervals of the same), "n" (dialogues scored), "unparsed", "judges" (who judged them),
    "ids" (the cases scored), "N" and "N_from" (the case set's size and where it came from),
    "outside" (judged cases not in the case set), "missing" (cases of the set with no line), and with categories "by", "by_n", "by_ci95"."""
    categories = categories or {}
    cases = cases or {}
    groups: dict[tuple[str, str], list[Judgement]] = defaultdict(list)
    for j in judgements:
        groups[(j.model, j.set)].append(j)
    out: dict[str, dict[str, Any]] = {}
    for (model, name), items in groups.items():
        scored = [j for j in items if j.scores is not None]
        x = np.array([[j.scores[c] for c in CRITERIA] for j in scored], dtype=np.float64).reshape(len(scored), 4)
        x = np.column_stack([x, x.mean(axis=1)])  # DISC's Average is the mean of the dialogue means too
        row: dict[str, Any] = {}
        for i, c in enumerate([*CRITERIA, "mean"]):
            row[c] = float(x[:, i].mean()) if scored else None
        row["ci95"] = dict(zip([*CRITERIA, "mean"], bootstrap_means(x), strict=True))
        row["n"] = len(scored)
        row["unparsed"] = len(items) - len(scored)
        row["judges"] = list({judge_key(j.judge): j.judge for j in items}.values())
        row["ids"] = sorted({j.id for j in scored})
        if name in cases:
            known, seen = set(cases[name]["ids"]), {j.id for j in items}
            row["N"], row["N_from"] = len(known), cases[name]["from"]
            row["outside"] = sorted(seen - known)  # judged, though not one of the set's cases
            row["missing"] = len(known - seen)  # one of the set's cases with no judgement line
        if name in categories:
            by: dict[str, list[float]] = defaultdict(list)
            unmatched = 0
            for j in scored:
                cat = categories[name].get(j.id)
                if cat is None:
                    unmatched += 1  # e.g. DISC's gpt-4 CMD file has one case not in the samples
                    continue
                by[cat].append(sum(j.scores.values()) / len(CRITERIA))
            row["by"] = {cat: sum(v) / len(v) for cat, v in by.items()}
            row["by_n"] = {cat: len(v) for cat, v in by.items()}
            row["by_ci95"] = {cat: bootstrap_means(np.array(v))[0] for cat, v in by.items()}
            row["unmatched"] = unmatched
        out.setdefault(model, {})[name] = row
    # A set without a case file: N is the most cases any model has there, and the report says so.
    for name in sets_in(out):
        rows = [s[name] for s in out.values() if name in s and "N" not in s[name]]
        most = max((r["n"] + r["unparsed"] for r in rows), default=0)
        for r in rows:
            r["N"], r["N_from"], r["outside"], r["missing"] = most, None, [], most - r["n"] - r["unparsed"]
    return out


def sets_in(summary: dict) -> list[str]:
    order = ["cmb-clin", "cmd", "cmid"]
    found = {s for m in summary.values() for s in m}
    return [s for s in order if s in found] + sorted(found - set(order))


def judge_label(judge: dict[str, str]) -> str:
    """What a table cell shows: the spec (DISC's release marked as such), with the
    fingerprint in the legend below."""
    return judge["spec"] + (" (DISC's release)" if judge["identity"] == DISC_RELEASE["identity"] else "")


def cases_label(row: dict, unit: str = "") -> str:
    """'73 of 73', '26 of 73 (7 unparsed)', '121 of 120 (1 not in cmd_samples.json)'; `unit`
    goes after the numbers ('73 of 73 cases')."""
    notes = []
    if row["unparsed"]:
        notes.append(f"{row['unparsed']} unparsed")
    if row.get("outside"):
        notes.append(f"{len(row['outside'])} not in {row['N_from']}")
    return f"{row['n']} of {row['N']}{unit}" + (f" ({', '.join(notes)})" if notes else "")


def _grouped(values: dict[str, str]) -> str:
    """{model: value} → 'a, b: x; c: y' — models that share a value named together."""
    by: dict[str, list[str]] = defaultdict(list)
    for model, value in values.items():
        by[value].append(model)
    return "; ".join(f"{', '.join(models)}: {value}" for value, models in by.items())


def differences(summary: dict, name: str) -> list[str]:
    """What keeps a set's rows from being like for like: different judges, different case
    counts, or as many cases but not the same ones. Empty when the rows compare."""
    rows = {m: s[name] for m, s in summary.items() if name in s}
    out = []
    judges = {m: " + ".join(f"{j['spec']} ({j['identity']})" for j in r["judges"]) for m, r in rows.items()}
    if len(set(judges.values())) > 1 or any(len(r["judges"]) > 1 for r in rows.values()):
        out.append("judges differ (" + _grouped(judges) + ")")
    if len({r["n"] for r in rows.values()}) > 1:
        out.append("case counts differ (" + _grouped({m: cases_label(r) for m, r in rows.items()}) + ")")
    elif len({tuple(r["ids"]) for r in rows.values()}) > 1:
        shared = set.intersection(*(set(r["ids"]) for r in rows.values()))
        out.append(f"case ids differ (each row has {next(iter(rows.values()))['n']} cases, "
                   f"{len(shared)} of them common to all rows)")
    return out


def _pair(ci: list[float | None]) -> str:
    return "—" if ci[0] is None or ci[0] != ci[0] else f"{ci[0]:.2f}–{ci[1]:.2f}"


def markdown(summary: dict) -> str:
    """DISC's README layout, one table per set, criteria and Average to two decimals, with each
    row's n of N and judge; a line above the table when its rows differ in judge or cases;
    the judges' identities and the 95% intervals below it."""
    lines = []
    for name in sets_in(summary):
        rows = {m: s[name] for m, s in summary.items() if name in s}
        first = next(iter(rows.values()))
        lines += [f"#### Results of {TITLE.get(name, name)}", ""]
        diff = differences(summary, name)
        if diff:
            lines += ["**Not like for like:** " + "; ".join(diff) + ". Compare these rows with care.", ""]
        lines += ["| **Model** | " + " | ".join(f"**{c}**" for c in CRITERIA) + " | **Average** | **Cases** | **Judge** |",
                  "|---" * (len(CRITERIA) + 4) + "|"]
        for model, row in rows.items():
            cells = [f"{row[c]:.2f}" if row[c] is not None else "—" for c in [*CRITERIA, "mean"]]
            judge = " + ".join(judge_label(j) for j in row["judges"])
            lines.append(f"| **{model}** | " + " | ".join(cells) + f" | {cases_label(row)} | {judge} |")
        lines.append("")
        lines.append(f"N = {first['N']}: " + (f"the cases in {first['N_from']}." if first["N_from"] else
                                                "the most cases any row has (no samples file for this set)."))
        judges = {judge_key(j): j for r in rows.values() for j in r["judges"]}
        lines.append("Judges: " + "; ".join(
            f"`{j['spec']}` — {j.get('how') or 'identity ' + j['identity']}" for j in judges.values()) + ".")
        short = [f"{m}: {r['missing']}" for m, r in rows.items() if r["missing"]]
        if short:
            lines.append("Cases with no judgement line (a failed consultation or judgement, or a --limit): "
                         + ", ".join(short) + ". Unparsed lines are counted, not averaged.")
        lines += ["", f"95% intervals (percentile bootstrap over dialogues, {BOOT:,} resamples):", "",
                  "| **Model** | " + " | ".join(f"**{c}**" for c in CRITERIA) + " | **Average** |",
                  "|---" * (len(CRITERIA) + 2) + "|"]
        for model, row in rows.items():
            lines.append(f"| **{model}** | " + " | ".join(_pair(row["ci95"][c]) for c in [*CRITERIA, "mean"]) + " |")
        cats = list(dict.fromkeys(c for r in rows.values() for c in r.get("by", {})))
        if cats:
            n_by = {c: max(r.get("by_n", {}).get(c, 0) for r in rows.values()) for c in cats}
            lines += ["", f"Mean of the four criteria by {'department' if name == 'cmd' else 'category'} "
                      "(dialogues per category in brackets):", "",
                      "| **Model** | " + " | ".join(f"**{c}** ({n_by[c]})" for c in cats) + " |",
                      "|---" * (len(cats) + 1) + "|"]
            for model, row in rows.items():
                by = row.get("by")
                if by is not None:
                    lines.append(f"| **{model}** | " + " | ".join(f"{by[c]:.2f}" if c in by else "—" for c in cats) + " |")
        lines.append("")
    return "\n".join(lines)


# --- charts ----------------------------------------------------------------------------

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "h", "<"]
TOP = 5.3  # the scale ends at 5: room above it so a 5.0 and its interval stay off the frame


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


def _span(value: float, ci: list[float | None]) -> tuple[float, float]:
    """An interval to draw: the point itself where there is none (a single dialogue)."""
    return (value, value) if ci[0] is None else (ci[0], ci[1])


def _save(fig: Any, path: Path) -> None:
    with atomic_writer(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")


def _warning(fig: Any, diff: list[str], y: float) -> None:
    """The 'not like for like' line, above the plot, wrapped to the figure's width."""
    import textwrap

    if diff:
        width = int(fig.get_figwidth() * 13)
        text = textwrap.fill("Not like for like: " + "; ".join(diff), width)
        fig.text(0.5, y, text, ha="center", va="bottom", fontsize=8, color="#a01010")


def draw_charts(summary: dict, out_dir: str | Path) -> list[Path]:
    """Per set: radar charts, one small panel per model (outline, markers and each criterion's
    95% interval as a radial error bar), and a point-range chart (means with 95% error bars,
    one marker per model) by category where the set has them, else by criterion, the
    four-criterion mean last. A set whose rows differ in judge or cases says so above both
    charts. Returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    font = _cjk_font()
    cjk = font is not None
    if cjk:
        plt.rcParams["font.sans-serif"] = [font, "DejaVu Sans"]
        plt.rcParams["axes.unicode_minus"] = False
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    written = []
    for name in sets_in(summary):
        rows = {m: s[name] for m, s in summary.items() if name in s and s[name]["mean"] is not None}
        if not rows:
            continue
        title = TITLE.get(name, name)
        diff = differences({m: {name: r} for m, r in rows.items()}, name)
        names = _labels(list(rows), cjk)
        legend = [f"{label}: {cases_label(r, ' cases')}, judge {' + '.join(judge_label(j) for j in r['judges'])}"
                  for label, r in zip(names, rows.values(), strict=True)]
        low = min(min(_span(r[c], r["ci95"][c])[0] for c in CRITERIA) for r in rows.values())
        # The axis starts near the lowest interval, as DISC's scores sit between 3.9 and 5 and a
        # scale from 1 hides the differences; it ends above 5 (TOP), the scale's maximum.
        floor = max(0.7, np.floor((low - 0.2) * 2) / 2)  # below 1: a score of 1 stays off the frame too

        # Radar: small multiples, never stacked filled polygons that merge into one blob.
        angles = np.linspace(0, 2 * np.pi, len(CRITERIA), endpoint=False)
        cols = min(3, len(rows))
        nrows = -(-len(rows) // cols)
        fig = plt.figure(figsize=(3.4 * cols, 3.5 * nrows + 0.6), layout="constrained")
        for k, (label, row) in enumerate(zip(names, rows.values(), strict=True)):
            ax = fig.add_subplot(nrows, cols, k + 1, polar=True)
            values = np.array([row[c] for c in CRITERIA])
            err = np.array([[row[c] - _span(row[c], row["ci95"][c])[0], _span(row[c], row["ci95"][c])[1] - row[c]]
                            for c in CRITERIA]).T
            color = colors[k % len(colors)]
            ax.plot(np.append(angles, angles[0]), np.append(values, values[0]), color=color, linewidth=1.6,
                    marker=MARKERS[k % len(MARKERS)], markersize=5)
            ax.errorbar(angles, values, yerr=np.nan_to_num(err), fmt="none", ecolor=color, elinewidth=1.2, capsize=2)
            ax.set_ylim(floor, TOP)
            step = 0.5 if 5 - floor <= 1.5 else 1.0
            ticks = [t for t in np.arange(5.0, floor, -step)][::-1]
            ax.set_yticks(ticks)
            ax.set_yticklabels([f"{t:g}" for t in ticks], fontsize=7, color="#555555")
            ax.set_rlabel_position(45)
            ax.set_xticks(angles)
            ax.set_xticklabels([SHORT[c] for c in CRITERIA], fontsize=8)
            ax.tick_params(axis="x", pad=1)
            ax.grid(alpha=0.35)
            judges = " + ".join(judge_label(j) for j in row["judges"])
            ax.set_title(f"{label} — mean {row['mean']:.2f}\n{cases_label(row, ' cases')} · judge {judges}",
                         fontsize=9, pad=14)
        fig.suptitle(f"{title}: judge scores (1-5) with 95% bootstrap intervals\n"
                     f"radius from {floor:g} at the centre to the scale's 5, with room above", fontsize=11)
        _warning(fig, diff, 1.02)
        path = out_dir / f"radar_{name}.png"
        _save(fig, path)
        plt.close(fig)
        written.append(path)

        # Point-range: categories (or criteria) on the x axis, one marker per model, 95% error bars.
        cats = list(dict.fromkeys(c for r in rows.values() for c in r.get("by", {})))
        groups = [*(cats or CRITERIA), "mean"]
        ticklabels = [*(_labels(cats, cjk) if cats else [SHORT[c] for c in CRITERIA]),
                      "Mean of\nthe four" if cats else "Average"]
        fig, ax = plt.subplots(figsize=(max(6.4, 1.25 * len(groups) + 2.5), 4.6))
        span = min(0.7, 0.12 * len(rows))
        x = np.arange(len(groups))
        for k, row in enumerate(rows.values()):
            vals, lo, hi = [], [], []
            for g in groups:
                if g in CRITERIA or g == "mean":
                    v, ci = row[g], row["ci95"][g]
                else:
                    v, ci = row.get("by", {}).get(g, np.nan), row.get("by_ci95", {}).get(g, [np.nan, np.nan])
                vals.append(v)
                lo.append(v - _span(v, ci)[0])
                hi.append(_span(v, ci)[1] - v)
            offset = (k - (len(rows) - 1) / 2) * (span / max(1, len(rows) - 1)) if len(rows) > 1 else 0.0
            ax.errorbar(x + offset, vals, yerr=np.nan_to_num([lo, hi]), fmt=MARKERS[k % len(MARKERS)], markersize=5,
                        color=colors[k % len(colors)], elinewidth=1.1, capsize=2.5, label=legend[k])
        for edge in x[:-1] + 0.5:
            ax.axvline(edge, color="#dddddd", linewidth=0.8)
        ax.axhline(5.0, color="#888888", linewidth=0.8, linestyle="--")
        ax.text(len(groups) - 0.5, 5.0, " scale max", va="center", ha="left", fontsize=7, color="#666666")
        ax.set_xticks(x)
        ax.set_xticklabels(ticklabels, fontsize=9)
        ax.set_xlim(-0.5, len(groups) - 0.5)
        ax.set_ylim(floor, TOP)
        ax.set_yticks([t for t in ax.get_yticks() if floor <= t <= 5.0])
        ax.set_ylabel("mean score (1-5), 95% interval")
        ax.set_title(f"{title}: mean of the four criteria by category" if cats else f"{title}: mean score per criterion",
                     pad=8)
        ax.legend(fontsize=7.5, ncol=1 if len(rows) < 4 else 2, loc="upper center", bbox_to_anchor=(0.5, -0.12),
                  frameon=False)
        ax.grid(axis="y", alpha=0.3)
        _warning(fig, diff, 0.99)
        path = out_dir / f"means_{name}.png"
        _save(fig, path)
        plt.close(fig)
        written.append(path)
    return written


def json_summary(summary: dict) -> dict:
    """The `--json` shape: {model: {set: {criterion: v, ..., "mean", "ci95", "n", "N", "judge",
    "by", "not_like_for_like": [what differs between this set's rows]}}}."""
    out: dict[str, dict[str, Any]] = {}
    diffs = {name: differences(summary, name) for name in sets_in(summary)}
    for model, sets in summary.items():
        for name, row in sets.items():
            item: dict[str, Any] = {c: _round(row[c]) for c in CRITERIA}
            item["mean"] = _round(row["mean"])
            item["ci95"] = {k: [_round(v[0]), _round(v[1])] for k, v in row["ci95"].items()}  # None: no scores
            item["by"] = {k: _round(v) for k, v in row.get("by", {}).items()}
            item["by_n"] = row.get("by_n", {})
            item["by_ci95"] = {k: [_round(v[0]), _round(v[1])] for k, v in row.get("by_ci95", {}).items()}
            item["n"] = row["n"]
            item["N"] = row["N"]
            item["N_from"] = row["N_from"] or "the most cases any model has in this set"
            item["unparsed"] = row["unparsed"]
            item["missing"] = row["missing"]
            item["outside"] = row["outside"]
            item["judge"] = row["judges"]  # {"spec", "identity"} (+ "how" where inferred)
            item["not_like_for_like"] = diffs[name]
            out.setdefault(model, {})[name] = item
    return out


def _round(v: float | None) -> float | None:
    return None if v is None or v != v else round(v, 4)
