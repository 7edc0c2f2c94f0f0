"""Simulated consultations: a patient model role-plays a case, a doctor model consults.

DISC-MedLLM had GPT-3.5 play the patient from each case and talk with the model under test
for three doctor turns; it released the dialogues, not the harness nor the patient prompt.
This module is that harness, on any two backends:

- CMB-clin (`CMB-cases.json`): the patient knows the whole `case` (history, examination,
  tests) and opens with `first_question`;
- CMD (`cmd_samples.json`): the patient knows only its `question`; `raw_anwser` (sic) is the
  real doctor's answer, hidden from the patient and used by the leak check;
- CMID (`cmid_samples.json`): the patient knows only its `question`.

Doctor and patient alternate for up to `turns` doctor replies, or until the patient ends the
consultation. The output is DISC's own dialogue format, so DISC's released dialogues and
discmed's are interchangeable inputs to `eval judge`:

    [{"id", "model", "source", "dataset_info"?, "conversation": [{"role": "patient"|"doctor", "content"}]}]

`find_leaks` flags patient turns that copy the case text verbatim or state a diagnosis the
patient was never told — the two ways a simulated patient makes a consultation too easy.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from discmed.backend import GenParams
from discmed.chat import DataError, atomic_write_text, iter_json_records, read_json, write_jsonl
from discmed.eval.judge import load_prompt
from discmed.jobs import JobRunner, job_outcome

END = "[结束咨询]"  # what the patient says, alone, to end the consultation

SETS = {  # set name -> (samples file, source label DISC uses)
    "cmb-clin": ("CMB-cases.json", "CMB-clin"),
    "cmd": ("cmd_samples.json", "CMD"),
    "cmid": ("cmid_samples.json", "CMID"),
}


@dataclass
class Case:
    id: str
    source: str
    opening: str  # the patient's first message
    context: str  # everything the patient knows (the CMB-clin case, or just the question)
    kind: str  # "case" (CMB-clin style) or "question" (CMD / CMID style)
    hidden: str = ""  # a reference answer the patient must not see (CMD's raw_anwser)
    diagnoses: list[str] = field(default_factory=list)  # explicit diagnoses the patient must not state
    dataset_info: dict[str, Any] | None = None


def default_samples_dir() -> Path | None:
    """$DISCMED_EVAL_SAMPLES, else DISC's samples folder next to the project if it is there."""
    env = os.environ.get("DISCMED_EVAL_SAMPLES")
    if env:
        return Path(env)
    here = Path.cwd() / ".." / "shared" / "data" / "disc-medllm" / "eval" / "samples"
    return here.resolve() if here.is_dir() else None


def resolve_set(name: str, samples: str | Path | None = None) -> Path:
    """A set name (cmb-clin, cmd, cmid) or a file path → the samples file to read."""
    if name.lower() in SETS:
        folder = Path(samples) if samples else default_samples_dir()
        if folder is None:
            raise FileNotFoundError(
                f"set {name!r} needs DISC's samples folder (…/disc-medllm/eval/samples): "
                "pass --samples DIR or set DISCMED_EVAL_SAMPLES"
            )
        path = folder / SETS[name.lower()][0]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (the {name} samples file)")
        return path
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: neither a set name ({', '.join(SETS)}) nor a file")
    return path


def load_cases(name: str, samples: str | Path | None = None) -> list[Case]:
    """Read a set's cases; a bad record raises `DataError` naming the file, record and field."""
    path = resolve_set(name, samples)
    records = read_json(path)
    if not isinstance(records, list):
        raise DataError(path, None, "<file>", "expected a JSON array of cases")
    default_source = next((src for key, (f, src) in SETS.items() if f == path.name), path.stem)
    cases, seen = [], set()
    for i, r in enumerate(records):
        where = f"[{i}]"

        def text(key: str, r: dict = r, where: str = where) -> str:
            value = r.get(key)
            if not isinstance(value, str) or not value.strip():
                raise DataError(path, None, f"{where}.{key}", "missing or empty")
            return value

        if not isinstance(r, dict):
            raise DataError(path, None, where, "expected an object")
        cid = str(r.get("id", i))
        if cid in seen:
            raise DataError(path, None, f"{where}.id", f"duplicate id {cid!r}")
        seen.add(cid)
        source = str(r.get("source") or default_source)
        diagnoses = r.get("diagnosis") or []
        diagnoses = [diagnoses] if isinstance(diagnoses, str) else list(diagnoses)
        if "case" in r:
            cases.append(Case(cid, source, text("first_question"), text("case"), "case", diagnoses=diagnoses))
        else:
            question = text("question")
            info = r.get("dataset_info")
            if info is None and "department" in r:
                info = {"department": r["department"]}
            cases.append(Case(cid, source, question, question, "question", hidden=str(r.get("raw_anwser") or ""),
                              diagnoses=diagnoses, dataset_info=info))
    return cases


# --- the two roles ---------------------------------------------------------------------


def doctor_messages(conversation: list[dict[str, str]], system: str | None = None) -> list[dict[str, str]]:
    """The doctor's view: patient turns are `user`, its own are `assistant`."""
    messages = [{"role": "system", "content": system}] if system else []
    role = {"patient": "user", "doctor": "assistant"}
    return messages + [{"role": role[t["role"]], "content": t["content"]} for t in conversation]


def patient_messages(case: Case, conversation: list[dict[str, str]]) -> list[dict[str, str]]:
    """The patient's view: a system prompt with what it knows, and the transcript so far as
    one user message. One user turn keeps any chat template happy (the patient's own first
    line would otherwise be an assistant turn before any user turn)."""
    template = load_prompt("patient_case.txt" if case.kind == "case" else "patient_question.txt")
    system = template.replace("{case}", case.context).replace("{opening}", case.opening).replace("{end}", END)
    names = {"patient": "病人", "doctor": "医生"}
    transcript = "\n".join(f"{names[t['role']]}：{t['content']}" for t in conversation)
    user = load_prompt("patient_turn.txt").replace("{transcript}", transcript)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


_PREFIX_RE = re.compile(r"^\s*(?:病人|患者|patient|家属)\s*[:：]\s*", re.IGNORECASE)
_DOCTOR_LINE_RE = re.compile(r"\n\s*(?:医生|doctor)\s*[:：]", re.IGNORECASE)


def clean_patient(text: str) -> tuple[str, bool]:
    """The patient's line without a role prefix or an invented doctor reply; (text, ended)."""
    text = _PREFIX_RE.sub("", text.strip())
    m = _DOCTOR_LINE_RE.search(text)
    if m:
        text = text[: m.start()]
    ended = END in text or "结束咨询" in text
    return text.replace(END, "").strip(), ended


def dialogue_record(case: Case, model: str, conversation: list[dict[str, str]]) -> dict[str, Any]:
    """DISC's dialogue record, keys in DISC's order."""
    record: dict[str, Any] = {"id": case.id, "model": model, "source": case.source}
    if case.dataset_info is not None:
        record["dataset_info"] = case.dataset_info
    record["conversation"] = conversation
    return record


async def consult(case: Case, doctor: Any, patient: Any, *, turns: int, doctor_params: Any,
                  patient_params: Any, model: str, doctor_system: str | None = None) -> dict[str, Any]:
    """One consultation. `doctor` and `patient` are engine clients (async `chat`)."""
    conversation = [{"role": "patient", "content": case.opening}]
    ended = silent = mute = False
    for turn in range(turns):
        reply = await doctor.chat(doctor_messages(conversation, doctor_system), doctor_params)
        conversation.append({"role": "doctor", "content": reply.strip()})
        # An empty doctor reply ends the consultation: it is kept (the judge should see it)
        # but cannot be sent back, as OpenAI-compatible servers refuse empty messages.
        mute = not reply.strip()
        if turn == turns - 1 or mute:
            break
        said, ended = clean_patient(await patient.chat(patient_messages(case, conversation), patient_params))
        if ended or not said:
            # The patient's goodbye is not part of the consultation DISC scores; an empty
            # patient line (a broken patient model) ends it too, and is counted apart.
            silent = not ended
            break
        conversation.append({"role": "patient", "content": said})
    record = dialogue_record(case, model, conversation)
    return {"dialogue": record, "ended_by_patient": ended, "patient_silent": silent, "doctor_silent": mute,
            "leaks": find_leaks(conversation, case)}


# --- leak check ------------------------------------------------------------------------

_DISEASE = r"(?:炎|病|症|癌|瘤|疹|疝|结石|综合征|感染|骨折|梗阻|溃疡|增生|囊肿|积液|衰竭|不全|畸形|狭窄|穿孔|扭转|中毒|过敏|出血|肿大|息肉|结节)"
_CUE_RE = re.compile(
    r"(?:可能是|可能为|考虑是|考虑为|考虑|诊断为|诊断是|诊断|诊为|确诊为|确诊|属于|应该是|怀疑是|怀疑)"
    r"[:：]?\s*[“\"「]?([\u4e00-\u9fa5A-Za-z]{1,10}?" + _DISEASE + r")"
)
_SELF_DX_RE = re.compile(
    r"(?:确诊|诊断|查出|得的是|患的是|得了|患了|患有)(?:为|是|了|出)?\s*[“\"「]?([\u4e00-\u9fa5A-Za-z]{1,8}?" + _DISEASE + r")"
)


_GENERIC = {"什么病", "这种病", "那种病", "这个病", "该病", "此病", "疾病", "毛病", "小病", "大病", "老毛病", "心病"}


def _term(raw: str) -> str | None:
    """The disease name at the end of a regex capture ("我真的得了尿道炎" → "尿道炎"), or None
    for a generic word ("我的病", "什么病")."""
    term = re.split(r"得了|患了|患有|得的是|是|为|了|的|个|种", raw)[-1]
    if len(term) < 2 or term in _GENERIC or term[0] in "我你他她它这那哪啥某其此该":
        return None
    return term


def _norm(text: str) -> str:
    """Compare text without spacing or punctuation: copying survives reformatting."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in text if ch.isalnum())


def diagnosis_terms(case: Case) -> list[str]:
    """Diagnoses the patient was not told: explicit ones, the hidden reference's (CMD), and
    for a CMB-clin case those stated outside its history section (the history holds what
    earlier hospitals told the patient, which it may repeat)."""
    terms = list(case.diagnoses) + [_term(m.group(1)) for m in _CUE_RE.finditer(case.hidden)]
    if case.kind == "case":
        known = case.opening + case.context.split("体格检查", 1)[0]
        terms += [t for t in (_term(m.group(1)) for m in _CUE_RE.finditer(case.context)) if t and t not in known]
    return list(dict.fromkeys(t for t in terms if t))


def find_leaks(conversation: list[dict[str, str]], case: Case, min_span: int = 15) -> list[dict[str, Any]]:
    """Patient turns (after the opening) that leak: `case_text` (a span of ≥ `min_span`
    characters, ignoring spacing and punctuation, copied from the case or the hidden
    reference and not said earlier in the dialogue), or `diagnosis` (a diagnosis the patient
    was not told, stated before the doctor named it)."""
    leaks: list[dict[str, Any]] = []
    sources = [_norm(case.context), _norm(case.hidden)] if case.hidden else [_norm(case.context)]
    terms = diagnosis_terms(case)
    known = case.opening + (case.context if case.kind == "case" else "")
    for i, turn in enumerate(conversation):
        if i == 0 or turn["role"] != "patient":
            continue
        earlier = "".join(t["content"] for t in conversation[:i])
        said, before = _norm(turn["content"]), _norm(earlier)
        # Longest run of min_span-grams found in the case but not earlier in the dialogue.
        start = 0
        while start + min_span <= len(said):
            gram = said[start : start + min_span]
            if gram in before or not any(gram in s for s in sources):
                start += 1
                continue
            end = start + min_span
            while end < len(said) and any(said[start : end + 1] in s for s in sources):
                end += 1
            leaks.append({"turn": i, "kind": "case_text", "text": said[start:end]})
            start = end
        for term in terms:
            if term in turn["content"] and term not in earlier:
                leaks.append({"turn": i, "kind": "diagnosis", "text": term})
        # "我被确诊为X" with an X the patient never had: a diagnosis it made up.
        for m in _SELF_DX_RE.finditer(turn["content"]):
            term = _term(m.group(1))
            if term and term not in earlier and term not in known and term not in terms:
                leaks.append({"turn": i, "kind": "diagnosis", "text": term})
    return leaks


# --- files -----------------------------------------------------------------------------


def read_dialogues(path: str | Path) -> list[dict[str, Any]]:
    """A dialogue file in DISC's format (a JSON array; JSON lines accepted too)."""
    path = Path(path)
    records, where = [], []
    for line, r in iter_json_records(path):
        if not isinstance(r, dict):
            raise DataError(path, line, "<record>", f"expected an object, got {type(r).__name__}")
        records.append(r)
        where.append((line, ""))
    for r, (line, prefix) in zip(records, where, strict=True):
        for key in ("id", "model", "source", "conversation"):
            if key not in r:
                raise DataError(path, line, f"{prefix}.{key}".lstrip("."), "missing")
        conv = r["conversation"]
        if not isinstance(conv, list) or not conv:
            raise DataError(path, line, f"{prefix}.conversation".lstrip("."), "expected a non-empty list")
        for k, t in enumerate(conv):
            if not isinstance(t, dict) or t.get("role") not in ("patient", "doctor") or not isinstance(t.get("content"), str):
                raise DataError(path, line, f"{prefix}.conversation[{k}]".lstrip("."),
                                "expected {'role': 'patient'|'doctor', 'content': str}")
    return records


def write_dialogues(records: list[dict[str, Any]], path: str | Path) -> None:
    """Write DISC's dialogue file (a JSON array, 4-space indent, UTF-8) atomically."""
    atomic_write_text(path, json.dumps(records, ensure_ascii=False, indent=4))


# --- the run ---------------------------------------------------------------------------


def run_consult(cases: list[Case], doctor: Any, patient: Any, out: str | Path, *, doctor_spec: str,
                patient_spec: str, model: str, turns: int = 3, concurrency: int = 8, doctor_params: Any = None,
                patient_params: Any = None, doctor_system: str | None = None, cache: str | Path = "run",
                progress: bool = True) -> dict[str, Any]:
    """Run every case through the engine and write DISC's dialogue file to `out`.

    The journal (`<out>.journal.sqlite`) keeps each finished consultation, so an interrupted
    run resumes where it stopped; the call cache makes a repeated run cost nothing. Leaks go
    to `<out>.leaks.jsonl`, one line per flagged dialogue.
    """
    out = Path(out)
    doctor_params = doctor_params or GenParams(max_new_tokens=512)
    patient_params = patient_params or GenParams(max_new_tokens=128, temperature=0.7, top_p=0.9)
    settings = {"doctor": doctor_spec, "patient": patient_spec, "model": model, "turns": turns,
                "doctor_params": vars(doctor_params), "patient_params": vars(patient_params),
                "doctor_system": doctor_system}
    settings = settings
    with JobRunner.beside(out, cache=cache, settings=settings, concurrency=concurrency, progress=progress) as runner:
        doc = runner.client(doctor, name="doctor")
        pat = runner.client(patient, name="patient")

        async def work(key: str, case: Case) -> dict:
            return await consult(case, doc, pat, turns=turns, doctor_params=doctor_params,
                                 patient_params=patient_params, model=model, doctor_system=doctor_system)

        outcome = runner.map([(c.id, c) for c in cases], work, desc=f"consult {model}",
                             describe=lambda k, case: {"id": case.id})
    stats, failed_file = outcome.summary, runner.failed_file
    results = [r for r in outcome.results if r is not None]
    failures = [{"id": k, "error": e} for k, e in outcome.failures.items()]
    write_dialogues([r["dialogue"] for r in results], out)
    leaky = [{"id": r["dialogue"]["id"], "leaks": r["leaks"]} for r in results if r["leaks"]]
    leak_path = out.with_name(out.stem + ".leaks.jsonl")
    write_jsonl(leaky, leak_path)
    wall = stats["wall_s"]
    return {
        "out": str(out), "model": model, "cases": len(cases), "dialogues": len(results),
        "failed": len(failures), "failures": failures[:20], "resumed": stats["skipped"],
        "generated": stats["done"], "ended_by_patient": sum(r["ended_by_patient"] for r in results),
        "patient_silent": sum(r.get("patient_silent", False) for r in results),
        "doctor_silent": sum(r.get("doctor_silent", False) for r in results),
        "doctor_turns": sum(sum(t["role"] == "doctor" for t in r["dialogue"]["conversation"]) for r in results),
        "leaks": len(leaky), "leak_ids": [x["id"] for x in leaky][:50], "leak_file": str(leak_path),
        "calls": stats["calls"], "cache_hits": stats["cache_hits"],
        "prompt_tokens": stats["prompt_tokens"], "completion_tokens": stats["completion_tokens"],
        "tokens": stats["clients"], "wall_s": wall,
        "cases_per_min": round(60 * stats["done"] / wall, 2) if wall and stats["done"] else None,
        "journal": stats["journal"], **job_outcome(stats, failed_file),
    }
