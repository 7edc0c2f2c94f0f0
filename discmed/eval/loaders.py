"""Exam tasks: the YAML task declaration and one loader per multiple-choice data format.

A task YAML (see `discmed/eval/tasks/`) names a `format`, where the data files sit relative to
a data folder the user passes, the subsets, and the prompt wording. Every loader turns its
format into the same `Question`; a bad record stops the load with a `DataError` naming the
file, the line and the field, because a silently skipped question changes the denominator
of a published accuracy.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from discmed.chat import DataError, iter_json_records

TASKS_DIR = Path(__file__).parent / "tasks"
LETTERS = "ABCDEFGHIJ"
# Full-width capitals (Ａ..Ｊ) turn up in Chinese answer keys and model outputs alike.
_FULLWIDTH = str.maketrans({chr(0xFF21 + i): chr(ord("A") + i) for i in range(26)})


@dataclass
class Question:
    """One exam question, whatever file it came from."""

    id: str  # unique within a task run: the resume key
    subset: str
    question: str
    options: dict[str, str]  # letter -> option text, in letter order
    answer: str  # the correct letters, sorted ("B", "BD")
    multi: bool = False  # more than one letter may be correct (CMB 多项选择题, CMExam)
    qtype: str = ""  # A1, A2, A3/A4, B1, 单项选择题 … as the source names it
    source: str = ""  # "path:line", for messages


@dataclass
class Task:
    """A benchmark as declared in a task YAML."""

    name: str
    format: str
    test: str  # file path relative to the data folder; may contain {subset}
    dev: str | None = None
    subsets: dict[str, str] = field(default_factory=dict)  # key -> subject name used in prompts
    data_dir: str | None = None
    language: str = "zh"
    description: str = ""  # header before the questions; {subject} and {kind} are filled in
    answer_prompt: str = "答案："
    target_delimiter: str = ""  # between answer_prompt and the letter, as in lm_eval
    fields: dict[str, object] = field(default_factory=dict)  # generic format: column names
    subset_field: str | None = None  # take the subset from this field when files are not per subset
    cop_base: int = 1  # MedMCQA: 1 in the original release, 0 in the Hugging Face copy
    path: Path | None = None  # the YAML file itself

    def resolve_data_dir(self, data_dir: str | Path | None = None) -> Path:
        """--data-dir, else $DISCMED_DATA_<NAME>, else the YAML's `data_dir` (relative to the YAML)."""
        env = "DISCMED_DATA_" + re.sub(r"\W", "_", self.name).upper()
        chosen = data_dir or os.environ.get(env) or self.data_dir
        if not chosen:
            raise ValueError(
                f"task {self.name!r} needs its data: pass --data-dir or set {env} "
                f"(files expected: {self.test})"
            )
        p = Path(os.path.expandvars(str(chosen))).expanduser()
        if not p.is_absolute() and not data_dir and self.path is not None and chosen == self.data_dir:
            p = self.path.parent / p
        if not p.exists():
            raise ValueError(f"task {self.name!r}: data folder {p} does not exist")
        return p


def builtin_tasks() -> list[str]:
    return sorted(p.stem for p in TASKS_DIR.glob("*.yaml"))


def load_task(name_or_path: str) -> Task:
    """A built-in task by name (`cmmlu`, `mlec-qa` …) or any task YAML by path."""
    p = Path(name_or_path)
    if not p.suffix:
        p = TASKS_DIR / f"{name_or_path}.yaml"
        if not p.exists():
            raise ValueError(f"unknown task {name_or_path!r}; built-in: {', '.join(builtin_tasks())}")
    if not p.exists():
        raise ValueError(f"task file {p} does not exist")
    raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    known = set(Task.__dataclass_fields__) - {"path"}
    for key in ("format", "test"):
        if key not in raw:
            raise DataError(str(p), 0, key, "required key is missing")
    unknown = set(raw) - known
    if unknown:
        raise DataError(str(p), 0, sorted(unknown)[0], f"unknown key (known: {', '.join(sorted(known))})")
    if raw["format"] not in LOADERS:
        raise DataError(
            str(p), 0, "format", f"unknown format {raw['format']!r} (known: {', '.join(LOADERS)})"
        )
    raw.setdefault("name", p.stem)
    subsets = raw.get("subsets") or {}
    if isinstance(subsets, list):  # a plain list: the subject name is the key itself
        subsets = {s: s for s in subsets}
    raw["subsets"] = {str(k): str(v) for k, v in subsets.items()}
    return Task(**raw, path=p)


def load_questions(
    task: Task, split: str = "test", data_dir: str | Path | None = None, subsets: list[str] | None = None
) -> list[Question]:
    """All questions of `split` ("test" or "dev"), subset by subset in the YAML's order."""
    root = task.resolve_data_dir(data_dir)
    pattern = task.test if split == "test" else task.dev
    if pattern is None:
        raise ValueError(f"task {task.name!r} declares no dev split, so it cannot build few-shot prompts")
    wanted = subsets or list(task.subsets)
    unknown = [s for s in wanted if task.subsets and s not in task.subsets]
    if unknown:
        raise ValueError(f"task {task.name!r} has no subset {unknown[0]!r} (has: {', '.join(task.subsets)})")
    loader = LOADERS[task.format]
    out: list[Question] = []
    if "{subset}" in pattern:
        for s in wanted:
            out += loader(root / pattern.format(subset=s), s, task)
    else:
        out = loader(root / pattern, task.name, task)
        if wanted:
            out = [q for q in out if q.subset in wanted]
    _dedupe_ids(out)
    return out


# ---------------------------------------------------------------- reading records


def read_records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line, record) from a JSON array or a JSON-lines file, told apart by the first character."""
    if not path.exists():
        raise DataError(str(path), 0, "file", "does not exist")
    for line, rec in iter_json_records(path):
        if not isinstance(rec, dict):
            raise DataError(str(path), line, "record", "not a JSON object")
        yield line, rec


def read_csv(path: Path) -> Iterator[tuple[int, dict]]:
    if not path.exists():
        raise DataError(str(path), 0, "file", "does not exist")
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        start = 2
        for row in reader:
            # Quoted cells may span lines (CMExam's Options): report the line the record starts on.
            if None in row:  # more cells than the header; fewer cells leave None values instead
                raise DataError(str(path), start, "row", "more cells than the header has columns")
            yield start, row
            start = reader.line_num + 1


def read_any(path: Path) -> Iterator[tuple[int, dict]]:
    return read_csv(path) if path.suffix.lower() in (".csv", ".tsv") else read_records(path)


def normalize_letters(value: object, valid: str, path: Path, line: int, fieldname: str) -> str:
    """An answer key as sorted letters: "B", ["B","D"], "BD", "B,D", "B、D", "Ｂ" all accepted."""
    if isinstance(value, list):
        value = "".join(str(v) for v in value)
    if not isinstance(value, str):
        raise DataError(str(path), line, fieldname, f"expected letters, got {value!r}")
    letters = re.sub(r"[\s,，、;；/]", "", value.translate(_FULLWIDTH).upper())
    if not letters or any(c not in valid for c in letters):
        raise DataError(str(path), line, fieldname, f"answer {value!r} is not among the options {valid}")
    return "".join(sorted(set(letters)))


def _text(rec: dict, key: str, path: Path, line: int) -> str:
    v = rec.get(key)
    if v is None or (isinstance(v, str) and not v.strip()):
        raise DataError(str(path), line, key, "missing or empty")
    return str(v).strip()


def _options(value: object, path: Path, line: int, fieldname: str) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise DataError(str(path), line, fieldname, "expected an object of lettered options")
    opts: dict[str, str] = {}
    for k in sorted(value):
        letter = str(k).strip().translate(_FULLWIDTH).upper()
        if len(letter) != 1 or letter not in LETTERS:
            raise DataError(str(path), line, fieldname, f"option key {k!r} is not a letter A-J")
        if value[k] is None or not str(value[k]).strip():
            raise DataError(str(path), line, f"{fieldname}.{k}", "empty option")
        # Kept as written (no strip): the prompt must match lm_eval's byte for byte.
        opts[letter] = str(value[k])
    if "".join(opts) != LETTERS[: len(opts)]:
        raise DataError(
            str(path), line, fieldname, f"option letters {''.join(opts)} are not consecutive from A"
        )
    return opts


def _dedupe_ids(questions: list[Question]) -> None:
    # Resume keys must be unique; real files sometimes repeat an id, so repeats get #2, #3 …
    seen: dict[str, int] = {}
    for q in questions:
        n = seen.get(q.id, 0) + 1
        seen[q.id] = n
        if n > 1:
            q.id = f"{q.id}#{n}"


def _subset(rec: dict, task: Task, default: str) -> str:
    if task.subset_field and rec.get(task.subset_field) not in (None, ""):
        return str(rec[task.subset_field]).strip()
    return default


# ---------------------------------------------------------------- one loader per format


def load_mlecqa(path: Path, subset: str, task: Task) -> list[Question]:
    """MLEC-QA: {"qid","qtype","qtext","qimage","options":{A..E},"answer": "B" | ["B"]}."""
    out = []
    for line, rec in read_records(path):
        opts = _options(rec.get("options"), path, line, "options")
        answer = normalize_letters(rec.get("answer"), "".join(opts), path, line, "answer")
        qtype = str(rec.get("qtype") or "").replace("型题", "")
        out.append(
            Question(
                id=f"{subset}/{rec.get('qid') or line}",
                subset=subset,
                question=_text(rec, "qtext", path, line),
                options=opts,
                answer=answer,
                multi=len(answer) > 1,
                qtype=qtype,
                source=f"{path}:{line}",
            )
        )
    return out


def load_cmb_exam(path: Path, subset: str, task: Task) -> list[Question]:
    """CMB-Exam: {"exam_type",…,"question","answer":"ABCDE"-style,"question_type","option":{A..E}}."""
    out = []
    for line, rec in read_records(path):
        if "answer" not in rec:
            raise DataError(
                str(path), line, "answer", "missing (CMB's test split ships without answers; use val)"
            )
        opts = _options(rec.get("option"), path, line, "option")
        answer = normalize_letters(rec["answer"], "".join(opts), path, line, "answer")
        qtype = str(rec.get("question_type") or "")
        out.append(
            Question(
                id=f"{rec.get('id', line)}",
                subset=_subset(rec, task, subset),
                question=_text(rec, "question", path, line),
                options=opts,
                answer=answer,
                multi=qtype == "多项选择题" or len(answer) > 1,
                qtype=qtype,
                source=f"{path}:{line}",
            )
        )
    return out


_OPTION_LINE = re.compile(r"^\s*([A-JＡ-Ｊ])\s*[\.．、:：)）]?\s*(.*?)\s*$")


def load_cmexam(path: Path, subset: str, task: Task) -> list[Question]:
    """CMExam CSV: Question, Options ("A 文本" per line), Answer ("B" or "ABD"), Explanation, …"""
    out = []
    for line, row in read_csv(path):
        opts: dict[str, str] = {}
        for part in (row.get("Options") or "").splitlines():
            if not part.strip():
                continue
            m = _OPTION_LINE.match(part)
            if not m or not m.group(2):
                raise DataError(str(path), line, "Options", f"cannot read option line {part!r}")
            opts[m.group(1)] = m.group(2)
        opts = _options(opts, path, line, "Options")
        answer = normalize_letters(row.get("Answer"), "".join(opts), path, line, "Answer")
        out.append(
            Question(
                id=f"{subset}/{line}",
                subset=_subset(row, task, subset),
                question=_text(row, "Question", path, line),
                options=opts,
                answer=answer,
                multi=len(answer) > 1,
                source=f"{path}:{line}",
            )
        )
    return out


def load_cmmlu(path: Path, subset: str, task: Task) -> list[Question]:
    """CMMLU CSV: `,Question,A,B,C,D,Answer`, one file per subject."""
    out = []
    for line, row in read_csv(path):
        for col in ("Question", "A", "B", "C", "D", "Answer"):
            if col not in row:
                raise DataError(str(path), line, col, "column missing")
        opts = _options({k: row[k] for k in "ABCD"}, path, line, "A-D")
        out.append(
            Question(
                id=f"{subset}/{row.get('') or line}",
                subset=subset,
                question=_text(row, "Question", path, line),
                options=opts,
                answer=normalize_letters(row["Answer"], "ABCD", path, line, "Answer"),
                source=f"{path}:{line}",
            )
        )
    return out


def load_medqa(path: Path, subset: str, task: Task) -> list[Question]:
    """MedQA (Mainland) JSONL: {"question","options":{A..E},"answer": text,"answer_idx": letter,"meta_info"}."""
    out = []
    for line, rec in read_records(path):
        opts = _options(rec.get("options"), path, line, "options")
        idx = rec.get("answer_idx")
        if idx in (None, ""):
            # Older copies carry only the answer text; find the option it names.
            text = str(rec.get("answer") or "").strip()
            idx = next((k for k, v in opts.items() if v == text), None)
            if idx is None:
                raise DataError(str(path), line, "answer_idx", "missing, and `answer` matches no option")
        out.append(
            Question(
                id=f"{subset}/{rec.get('id', line)}",
                subset=_subset(rec, task, subset),
                question=_text(rec, "question", path, line),
                options=opts,
                answer=normalize_letters(idx, "".join(opts), path, line, "answer_idx"),
                qtype=str(rec.get("meta_info") or ""),
                source=f"{path}:{line}",
            )
        )
    return out


def load_medmcqa(path: Path, subset: str, task: Task) -> list[Question]:
    """MedMCQA: {"question","opa".."opd","cop","id","subject_name",…}; `cop` base from the YAML."""
    out = []
    for line, rec in read_records(path):
        opts = _options({L: rec.get(f"op{L.lower()}") for L in "ABCD"}, path, line, "opa-opd")
        cop = rec.get("cop")
        if not isinstance(cop, int) or not 0 <= cop - task.cop_base < 4:
            raise DataError(
                str(path),
                line,
                "cop",
                f"{cop!r} is not an option index with cop_base {task.cop_base} "
                "(1 in the original release, 0 in the Hugging Face copy; set cop_base in the task YAML)",
            )
        out.append(
            Question(
                id=f"{subset}/{rec.get('id', line)}",
                subset=_subset(rec, task, subset),
                question=_text(rec, "question", path, line),
                options=opts,
                answer="ABCD"[cop - task.cop_base],
                qtype=str(rec.get("choice_type") or ""),
                source=f"{path}:{line}",
            )
        )
    return out


def load_generic(path: Path, subset: str, task: Task) -> list[Question]:
    """Any JSONL/JSON/CSV: `fields` in the YAML names the question, options and answer columns.

    fields: {question: stem, options: [opt1, opt2, opt3, opt4] | choices, answer: key, id: qid}
    `options` is either a list of columns (lettered A, B, … in order) or one field holding an
    object of lettered options or a list of option texts. The answer may be letters or a 0-based index.
    """
    f = task.fields
    qf, of, af = f.get("question", "question"), f.get("options", "options"), f.get("answer", "answer")
    out = []
    for line, rec in read_any(path):
        if isinstance(of, list):
            raw = {LETTERS[i]: rec.get(col) for i, col in enumerate(of) if rec.get(col) not in (None, "")}
        else:
            raw = rec.get(of)
            if isinstance(raw, list):
                raw = {LETTERS[i]: v for i, v in enumerate(raw)}
        opts = _options(raw, path, line, str(of))
        ans = rec.get(af)
        if isinstance(ans, int) and not isinstance(ans, bool):
            if not 0 <= ans < len(opts):
                raise DataError(str(path), line, str(af), f"index {ans} outside the {len(opts)} options")
            ans = LETTERS[ans]
        answer = normalize_letters(ans, "".join(opts), path, line, str(af))
        qid = rec.get(f["id"]) if "id" in f else None
        out.append(
            Question(
                id=f"{subset}/{qid if qid not in (None, '') else line}",
                subset=_subset(rec, task, subset),
                question=_text(rec, str(qf), path, line),
                options=opts,
                answer=answer,
                multi=bool(f.get("multi")) or len(answer) > 1,
                source=f"{path}:{line}",
            )
        )
    return out


LOADERS = {
    "mlecqa": load_mlecqa,
    "cmb_exam": load_cmb_exam,
    "cmexam": load_cmexam,
    "cmmlu": load_cmmlu,
    "medqa": load_medqa,
    "medmcqa": load_medmcqa,
    "generic": load_generic,
}
