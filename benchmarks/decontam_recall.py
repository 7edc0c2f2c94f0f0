"""Planted-leak recall of `discmed data decontam`, and its false positives on clean records.

    .venv/bin/python benchmarks/decontam_recall.py                  # the report: both halves, every edit kind
    .venv/bin/python benchmarks/decontam_recall.py --half tune      # what tuning looked at (tuned kinds only)
    .venv/bin/python benchmarks/decontam_recall.py --half tune --rules question_alone=15,min_evidence=10

Every item of every evaluation set discmed loads is planted into a training record, verbatim
(the question with "A. …" options, a case as written) and with light edits, and each planted
record is run through the decontamination index of its own set (so the sets built from CMMLU
content are not credited to CMMLU's index). Sets: CMMLU (../shared/data/cmmlu, dev + test);
MLEC-QA and CMB-Exam *shapes* — the real files are not here, so they are built from CMMLU
test items (every third item each, a fifth option E taken from another item, MLEC-QA's
"（　　）。" stem ending, answers as a letter or a list, JSON array and JSON lines, a CMB test
file without answers) plus discmed's demo MLEC-QA file (discmed/assets/demo/exam); DISC's
CMB-clin cases, CMD and CMID samples (../shared/data/disc-medllm/eval/samples, with the demo's
consult files); CMB-Clin (../shared/data/cmb/CMB-Clin-v0.json).

Discipline: items are split by a hash of (set, file, line) into a tuning half and a held-out
half before any tuning. The rules were tuned with `--half tune`, which shows only the tuning
half and only the edit kinds tuned on (V, T1–T3); the held-out kinds H1–H4 were written
before tuning and never looked at while tuning. The report prints both halves.

Edit kinds — for an exam question / for a text (a case, a patient question, a CMB-Clin case):
  V   verbatim: question + "A. …" options, answer letter / the text as written
  T1  options shuffled and relabelled "(1)" …, answer as its text / two sentences swapped
  T2  punctuation swapped (，↔, 。↔. …), spaces inserted, options on one line / the same
  T3  inside a real DISC-Med-SFT dialogue: the item in the middle of the patient's message
  H1  labels "A、" or "①", options joined by "；" / the first 70% of the text only
  H2  full-width letters and digits, a line break inside the question / the same
  H3  one wrong option dropped, bullets, no labels / one sentence dropped
  H4  one character of the question replaced / one character in every 40 replaced

Clean records (false positives, against one index of every set together, as a user runs it):
DISC-Med-SFT's 163 real records (../shared/data/disc-medllm/train/test_examples.jsonl), the
demo's curation records (6) and MedDialog text (14; its 15th quotes a demo CMD case on purpose
and is left out), the CMeKG texts (24) as messages; separately, 3,000 generated dialogues from
benchmarks/data_cpu.py (templated, so a weaker check, but a larger n). Harder negatives, medical
text that holds no exam item, against the exam sets' index only: DISC's 1,884 released
consultations (../shared/data/disc-medllm/eval/dialogues; they quote DISC's consultation sets,
so not against those), split by model into a tuning and a held-out half; and every CMMLU item
against an index of the other eight subjects (a match to a question at least 80% alike is a
near-duplicate of an indexed question, counted apart). The goal's false-positive figure is
the 207 real records'; they are not split (too few), so they were seen while tuning.

The peer is the decontamination discmed had before this change (character 10-grams of every
JSON string leaf and of each CSV row joined into one string, a record removed when it covers
half of some item's 10-grams), copied below from commit f799e80 as `OldIndex` and run on the
same records in the same run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DEMO = ROOT / "discmed" / "assets" / "demo"
sys.path.insert(0, str(ROOT))

from discmed.data.decontam import EvalIndex, Rules  # noqa: E402

KINDS = ["V", "T1", "T2", "T3", "H1", "H2", "H3", "H4"]
TUNED = ["V", "T1", "T2", "T3"]


# ---------------------------------------------------------------- the old method (commit f799e80)


class OldIndex:
    """discmed's decontamination before this change, as it was (n-grams of string leaves / CSV rows)."""

    def __init__(self, n: int = 10, min_chars: int = 12):
        self.n, self.min_chars = n, min_chars
        self.items: list[int] = []
        self.index: dict[str, list[int]] = {}

    def add(self, text: str) -> None:
        from discmed.data.dedup import normalize

        norm = normalize(text)
        if len(norm) < max(self.min_chars, self.n):
            return
        grams = {norm[i:i + self.n] for i in range(len(norm) - self.n + 1)}
        idx = len(self.items)
        self.items.append(len(grams))
        for g in grams:
            self.index.setdefault(g, []).append(idx)

    def add_file(self, path: Path) -> None:
        import csv

        from discmed.chat import iter_json_records
        from discmed.data.decontam import _strings

        if path.suffix == ".csv":
            with open(path, encoding="utf-8-sig", newline="") as f:
                reader = csv.reader(f)
                next(reader, None)
                for row in reader:
                    self.add(" ".join(c for c in row if len(c.strip()) > 1))
        else:
            for _, rec in iter_json_records(path):
                for _, text in _strings(rec):
                    self.add(text)

    @classmethod
    def from_paths(cls, paths: list[Path]) -> OldIndex:
        ix = cls()
        for p in paths:
            for f in sorted(f for f in p.rglob("*") if f.suffix in (".json", ".jsonl", ".csv")) if p.is_dir() else [p]:
                ix.add_file(f)
        return ix

    def match(self, messages: list[str], threshold: float = 0.5) -> bool:
        from discmed.data.dedup import normalize

        norm = normalize("\n".join(messages))
        grams = {norm[i:i + self.n] for i in range(len(norm) - self.n + 1)}
        counts: Counter = Counter()
        for g in grams & self.index.keys():
            counts.update(self.index[g])
        return any(c / self.items[i] >= threshold for i, c in counts.items())


# ---------------------------------------------------------------- the evaluation sets


def _cmmlu_items() -> list[dict]:
    from discmed.eval.loaders import load_cmmlu, load_task

    task = load_task("cmmlu")
    out = []
    for f in sorted((SHARED / "cmmlu").glob("*/*.csv")):
        for q in load_cmmlu(f, f.stem, task):
            out.append({"set": "cmmlu", "key": f"cmmlu/{f.parent.name}/{f.name}:{q.source.rsplit(':', 1)[1]}",
                        "question": q.question, "options": q.options, "answer": q.answer})
    return out


def build_sets(tmp: Path) -> tuple[dict[str, list[Path]], list[dict]]:
    """(set → its eval paths, every item to plant)."""
    from discmed.chat import iter_json_records
    from discmed.eval.loaders import load_mlecqa, load_task

    cmmlu = _cmmlu_items()
    test = [x for x in cmmlu if "/test/" in x["key"]]
    paths: dict[str, list[Path]] = {"cmmlu": [SHARED / "cmmlu"]}
    items = list(cmmlu)

    def fifth(i: int, opts: dict) -> str:  # an option E from another item, not already among these
        j = i + 7
        while True:
            cand = list(test[j % len(test)]["options"].values())[j % 4]
            if cand not in opts.values():
                return cand
            j += 1

    # MLEC-QA shape: every third CMMLU test item, five options, "（　　）。" stems, answers as a letter or a list.
    mlec = tmp / "mlec-qa"
    mlec.mkdir()
    recs = {"Clinic_test.json": [], "CWM_test.json": []}
    for k, i in enumerate(range(0, len(test), 3)):
        x = test[i]
        opts = dict(x["options"], E=fifth(i, x["options"]))
        qtext = re.sub(r"[（(]\s*[)）]|[。？?:：]$", "", x["question"]).rstrip() + "（　　）。"
        rec = {"qid": hashlib.md5(x["key"].encode()).hexdigest(), "qtype": "A1型题", "qtext": qtext, "qimage": "",
               "options": opts, "answer": x["answer"] if k % 2 else [x["answer"]]}
        recs["Clinic_test.json" if k % 2 else "CWM_test.json"].append(rec)
    (mlec / "Clinic_test.json").write_text(json.dumps(recs["Clinic_test.json"], ensure_ascii=False, indent=1), encoding="utf-8")
    (mlec / "CWM_test.json").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs["CWM_test.json"]),
                                        encoding="utf-8")
    demo_exam = DEMO / "exam"
    paths["mlec-qa"] = [mlec, demo_exam]
    task = load_task("mlec-qa")
    for f in [mlec / "Clinic_test.json", mlec / "CWM_test.json", *sorted(demo_exam.glob("*.json"))]:
        for q in load_mlecqa(f, f.stem, task):
            items.append({"set": "mlec-qa", "key": f"mlec-qa/{f.name}:{q.source.rsplit(':', 1)[1]}",
                          "question": q.question, "options": q.options, "answer": q.answer})

    # CMB-Exam shape: the next third, five options; half in a validation file, half in a test file without answers.
    cmb = tmp / "cmb-exam"
    cmb.mkdir()
    val, tst = [], []
    for k, i in enumerate(range(1, len(test), 3)):
        x = test[i]
        opts = dict(x["options"], E=fifth(i, x["options"]))
        rec = {"exam_type": "医师考试", "exam_class": "执业医师", "exam_subject": x["key"].split("/")[2][:-4],
               "question": x["question"], "answer": x["answer"], "question_type": "单项选择题", "option": opts}
        if k % 2:
            val.append(rec)
        else:
            tst.append({"id": len(tst), **{key: v for key, v in rec.items() if key != "answer"}})
    for name, rs in (("CMB-val-merge.json", val), ("CMB-test-merge.json", tst)):
        (cmb / name).write_text(json.dumps(rs, ensure_ascii=False, indent=1), encoding="utf-8")
        for line, r in iter_json_records(cmb / name):
            items.append({"set": "cmb-exam", "key": f"cmb-exam/{name}:{line}", "question": r["question"],
                          "options": r["option"], "answer": r.get("answer", "")})
    paths["cmb-exam"] = [cmb]

    # DISC's samples (with the demo's files in the same shape) and CMB-Clin.
    samples = SHARED / "disc-medllm" / "eval" / "samples"
    for name, files in (("cmb-clin-cases", [samples / "CMB-cases.json", DEMO / "consult" / "cmb-clin.json"]),
                        ("cmd", [samples / "cmd_samples.json", DEMO / "consult" / "cmd.json"]),
                        ("cmid", [samples / "cmid_samples.json"]),
                        ("cmb-clin", [SHARED / "cmb" / "CMB-Clin-v0.json"])):
        paths[name] = files
        for f in files:
            for line, r in iter_json_records(f):
                items.append({"set": name, "key": f"{name}/{f.name}:{line}", "record": r})
    return paths, items


def half(item: dict) -> str:
    """The split, fixed before tuning: a hash of the item's set, file and line."""
    return "tune" if hashlib.sha1(item["key"].encode()).digest()[0] % 2 == 0 else "held-out"


# ---------------------------------------------------------------- the edits

_TO_ASCII = str.maketrans("，。？！：；（）", ",.?!:;()")
_TO_CJK = str.maketrans(",.?!:;()", "，。？！：；（）")


def punct(text: str, rng: random.Random) -> str:
    """Chinese punctuation to ASCII and back, a few spaces in, newlines to spaces."""
    text = text.translate(_TO_ASCII) if rng.random() < 0.5 else text.translate(_TO_CJK)
    chars = list(text.replace("\n", " "))
    for _ in range(max(1, len(chars) // 30)):
        chars.insert(rng.randrange(len(chars) + 1), rng.choice([" ", "  ", "\u3000"]))
    return "".join(chars)


def fullwidth(text: str, rng: random.Random) -> str:
    """ASCII letters and digits to full width, a line break in the middle."""
    text = "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)
    mid = len(text) // 2
    return text[:mid] + "\n" + text[mid:]


_SENT = re.compile(r"(?<=[。！？!?\n；;])")


def sentences(text: str) -> list[str]:
    return [s for s in _SENT.split(text) if s.strip()]


def swap_sentences(text: str, rng: random.Random) -> str:
    s = sentences(text)
    if len(s) < 2:
        return "医生您好，" + text
    i = rng.randrange(len(s) - 1)
    s[i], s[i + 1] = s[i + 1], s[i]
    return "".join(s)


def drop_sentence(text: str, rng: random.Random) -> str:
    s = sentences(text)
    if len(s) < 3:
        return text + "，在线等"
    del s[rng.randrange(1, len(s) - 1)]
    return "".join(s)


def replace_chars(text: str, rng: random.Random, every: int = 40) -> str:
    """One CJK character in every `every` replaced (at least one), never the first or last."""
    cjk = [i for i, c in enumerate(text) if "\u4e00" <= c <= "\u9fff" and 0 < i < len(text) - 1]
    if not cjk:
        return text
    chars = list(text)
    for i in rng.sample(cjk, max(1, len(text) // every) if len(cjk) >= max(1, len(text) // every) else 1):
        chars[i] = "某" if chars[i] != "某" else "其"
    return "".join(chars)


def render_mcq(x: dict, kind: str, rng: random.Random) -> tuple[str, str]:
    """(user text, assistant text) for an exam question under an edit kind."""
    q, opts, ans = x["question"], list(x["options"].items()), x["answer"]
    ans_text = "、".join(x["options"][a] for a in ans) if ans else ""
    reply = f"答案：{ans}" if ans else "这道题我不确定。"
    if kind == "V":
        return q + "\n" + "\n".join(f"{k}. {v}" for k, v in opts), reply
    if kind == "T1":
        rng.shuffle(opts)
        return q + "\n" + "\n".join(f"({i + 1}) {v}" for i, (_, v) in enumerate(opts)), f"正确答案是{ans_text}。"
    if kind == "T2":
        return punct(q, rng) + " " + "  ".join(f"{k}．{punct(v, rng)}" for k, v in opts), reply
    if kind == "H1":
        labels = [f"{k}、" for k, _ in opts] if rng.random() < 0.5 else list("①②③④⑤⑥⑦⑧⑨⑩")[:len(opts)]
        return q + " " + "；".join(f"{lab}{v}" for lab, (_, v) in zip(labels, opts, strict=False)), f"选{ans}"
    if kind == "H2":
        return fullwidth(q, rng) + "\n" + "\n".join(f"{fullwidth(k, rng).strip()}．{fullwidth(v, rng)}" for k, v in opts), reply
    if kind == "H3":
        wrong = [k for k, _ in opts if k not in ans]
        if wrong:
            drop = rng.choice(wrong)
            opts = [(k, v) for k, v in opts if k != drop]
        rng.shuffle(opts)
        return q + "\n" + "\n".join(f"- {v}" for _, v in opts), f"应该是{ans_text}"
    if kind == "H4":
        return replace_chars(q, rng, every=10**9) + "\n" + "\n".join(f"{k}. {v}" for k, v in opts), reply
    raise ValueError(kind)


def render_text(x: dict, kind: str, rng: random.Random, generic: str) -> list[str]:
    """The messages (user, assistant, …) for a case / sample under an edit kind."""
    r, s = x["record"], x["set"]
    edit = {"V": lambda t: t, "T1": lambda t: swap_sentences(t, rng), "T2": lambda t: punct(t, rng),
            "T3": lambda t: t, "H1": lambda t: t[:max(len(t) * 7 // 10, 1)] if len(t) > 30 else "请问" + t,
            "H2": lambda t: fullwidth(t, rng), "H3": lambda t: drop_sentence(t, rng),
            "H4": lambda t: replace_chars(t, rng)}[kind]
    if s == "cmb-clin":
        qa = list(r["QA_pairs"])
        if kind == "T1":
            qa.reverse()
        if kind == "H3" and len(qa) > 1:
            qa = qa[1:]
        msgs = [edit(r["description"]) + "\n" + edit(qa[0]["question"]), edit(qa[0]["answer"])]
        for p in qa[1:]:
            msgs += [edit(p["question"]), edit(p["answer"])]
        return msgs
    if s == "cmb-clin-cases":
        return [edit(r["case"]), generic]
    if s == "cmd":
        return [edit(r["question"]), r["raw_anwser"] if kind == "V" else generic]
    return [edit(r["question"]), generic]  # cmid


def plant(x: dict, kind: str, clean: list[dict]) -> list[str]:
    """The planted record's messages."""
    seed = int(hashlib.sha1(f"{x['key']}/{kind}".encode()).hexdigest()[:8], 16)
    rng = random.Random(seed)
    host = clean[seed % len(clean)]["conversation"]
    generic = host[1]["content"]
    msgs = list(render_mcq(x, "V" if kind == "T3" else kind, rng)) if "question" in x else render_text(x, kind, rng, generic)
    if kind != "T3":
        return msgs
    # Inside a real dialogue: the item in the middle of the patient's first message, the rest of the dialogue around.
    first = host[0]["content"]
    cut = len(first) // 2
    user = first[:cut] + "。对了医生，我在准备考试，想顺便问一下：\n" + msgs[0] + "\n" + first[cut:]
    return [user, msgs[1] + "\n" + host[1]["content"], *msgs[2:], *[m["content"] for m in host[2:]]]


# ---------------------------------------------------------------- clean records


def clean_sets() -> dict[str, list[list[str]]]:
    from discmed.data.sources import load_meddialog_txt

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import data_cpu

    real = [[m["content"] for m in json.loads(line)["conversation"]]
            for line in (SHARED / "disc-medllm" / "train" / "test_examples.jsonl").read_text(encoding="utf-8").splitlines()]
    demo = [[m["content"] for m in json.loads(line)["conversation"]]
            for line in (DEMO / "curation.jsonl").read_text(encoding="utf-8").splitlines()]
    # meddialog-15 quotes the demo CMD case demo-cmd-1 on purpose (the demo's own decontam check): not clean.
    demo += [[m["content"] for m in c.messages] for c in load_meddialog_txt(DEMO / "meddialog.txt") if c.id != "meddialog-15"]
    kg = [[r["text"]] for r in json.loads((SHARED / "cmekg" / "train_example.json").read_text(encoding="utf-8"))]
    with tempfile.TemporaryDirectory() as d:
        data_cpu.generate(Path(d) / "gen.jsonl", 3000)  # under 5,000: no planted eval copies
        gen = [[m["content"] for m in json.loads(line)["conversation"]]
               for line in (Path(d) / "gen.jsonl").read_text(encoding="utf-8").splitlines()]
    return {"disc-med-sft (real)": real, "demo curation + meddialog": demo, "cmekg texts": kg, "generated (data_cpu)": gen}


TUNE_MODELS = ("DISC-MedLLM", "baichuan-chat", "bianque-v2")  # the other three are held out


def consultations(h: str) -> list[list[str]]:
    """DISC's released consultations (6 models × CMB-clin, CMD, CMID; long medical replies), split by
    model. They quote DISC's consultation sets, so they are clean only against the exam sets."""
    out = []
    for f in sorted((SHARED / "disc-medllm" / "eval" / "dialogues").glob("*.json")):
        if (f.name.startswith(TUNE_MODELS)) == (h == "tune"):
            out += [[m["content"] for m in r["conversation"]] for r in json.loads(f.read_text(encoding="utf-8"))]
    return out


def other_exam_questions(rules: Rules) -> tuple[list, list, int, int]:
    """Exam questions that are not in the index: each CMMLU subject's items (verbatim, with options
    and answer) against an index of the other eight subjects. CMMLU repeats some questions across
    subjects with small differences (a comma for a full stop, 纳 for 钠): a match whose question is
    at least 80% like the planted one (difflib's ratio) is a near-duplicate, listed apart; any
    other match is a false positive."""
    import difflib

    from discmed.data.decontam import normalize

    items = _cmmlu_items()
    subject = lambda x: x["key"].split("/")[2].split(":")[0]  # noqa: E731
    fps, dups, old_fps = [], [], 0
    for s in sorted({subject(x) for x in items}):
        others = [f for f in sorted((SHARED / "cmmlu").glob("*/*.csv")) if f.name != s]
        ix, old = EvalIndex.from_paths(others, rules), OldIndex.from_paths(others)
        for x in (x for x in items if subject(x) == s):
            msgs = list(render_mcq(x, "V", random.Random(0)))
            if (m := ix.match(msgs)) is not None:
                like = difflib.SequenceMatcher(None, normalize(x["question"]), m[0].question[1]).ratio()
                (dups if like >= 0.8 else fps).append((x, m[0], m[2], like))
            old_fps += old.match(msgs)
    return fps, dups, len(items), old_fps


# ---------------------------------------------------------------- the run


def main() -> None:
    ap = argparse.ArgumentParser(description="planted-leak recall and clean false positives of decontam")
    ap.add_argument("--half", choices=["tune", "both"], default="both", help="tune: the tuning half, tuned kinds only")
    ap.add_argument("--misses", type=int, default=0, help="print this many missed plants per set (debugging)")
    ap.add_argument("--rules", default="", help="override Rules fields, e.g. question_alone=15,min_evidence=10")
    args = ap.parse_args()
    rules = Rules(**{k: type(getattr(Rules(), k))(v) for k, v in (p.split("=") for p in args.rules.split(",") if p)})
    halves = ["tune"] if args.half == "tune" else ["tune", "held-out"]
    kinds = TUNED if args.half == "tune" else KINDS

    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        paths, items = build_sets(Path(d))
        new = {s: EvalIndex.from_paths(p, rules) for s, p in paths.items()}
        old = {s: OldIndex.from_paths(p) for s, p in paths.items()}
        union = EvalIndex.from_paths([x for p in paths.values() for x in p], rules)
        old_union = OldIndex.from_paths([x for p in paths.values() for x in p])
        exam_paths = paths["cmmlu"] + paths["mlec-qa"] + paths["cmb-exam"]
        exams, old_exams = EvalIndex.from_paths(exam_paths, rules), OldIndex.from_paths(exam_paths)
    clean = clean_sets()
    hosts = [json.loads(line) for line in (SHARED / "disc-medllm" / "train" / "test_examples.jsonl").read_text(encoding="utf-8").splitlines()]

    # hits[(method, set, half, kind)] = (removed, planted)
    hits: dict[tuple, list[int]] = {}
    shown: Counter = Counter()
    for x in items:
        h = half(x)
        if h not in halves:
            continue
        for kind in kinds:
            msgs = plant(x, kind, hosts)
            for method, ix in (("discmed", new[x["set"]]), ("peer", old[x["set"]])):
                removed = (ix.match(msgs) is not None) if method == "discmed" else ix.match(msgs)
                c = hits.setdefault((method, x["set"], h, kind), [0, 0])
                c[0] += removed
                c[1] += 1
                if method == "discmed" and not removed and shown[x["set"]] < args.misses:
                    shown[x["set"]] += 1
                    print(f"missed {kind} {x['key']}: {json.dumps(msgs, ensure_ascii=False)[:300]}")

    def recall(method: str, sets=None, hs=None, ks=None) -> tuple[int, int]:
        r = p = 0
        for (m, s, h, k), (a, b) in hits.items():
            if m == method and (sets is None or s in sets) and (hs is None or h in hs) and (ks is None or k in ks):
                r, p = r + a, p + b
        return r, p

    def pct(rp: tuple[int, int]) -> str:
        return f"{rp[0]}/{rp[1]} = {100 * rp[0] / max(rp[1], 1):.1f}%"

    edits = [k for k in kinds if k != "V"]
    too_short = Counter()
    for s, ix in new.items():
        too_short[s] = sum(not r["part"] for r in ix.too_short)
    print(f"rules: {vars(rules)}")
    for h in halves:
        print(f"\n== {h} half ({'tuned kinds only' if args.half == 'tune' else 'every kind'}): removed / planted")
        print(f"{'set':16} {'items':>6} {'short':>6}  {'verbatim':>20}  {'edited':>22}  {'peer verbatim':>20}  {'peer edited':>22}")
        for s in paths:
            n_items = sum(1 for x in items if x["set"] == s and half(x) == h)
            print(f"{s:16} {n_items:6} {too_short[s]:6}  {pct(recall('discmed', [s], [h], ['V'])):>20}  "
                  f"{pct(recall('discmed', [s], [h], edits)):>22}  {pct(recall('peer', [s], [h], ['V'])):>20}  "
                  f"{pct(recall('peer', [s], [h], edits)):>22}")
        print(f"{'all':16} {sum(1 for x in items if half(x) == h):6} {sum(too_short.values()):6}  "
              f"{pct(recall('discmed', hs=[h], ks=['V'])):>20}  {pct(recall('discmed', hs=[h], ks=edits)):>22}  "
              f"{pct(recall('peer', hs=[h], ks=['V'])):>20}  {pct(recall('peer', hs=[h], ks=edits)):>22}")
        if args.half != "tune":
            print(f"{'':16} {'':6} {'':6}  {'untuned kinds H1-H4:':>20}  {pct(recall('discmed', hs=[h], ks=KINDS[4:])):>22}  "
                  f"{'':20}  {pct(recall('peer', hs=[h], ks=KINDS[4:])):>22}")
        print("by kind: " + "  ".join(f"{k} {100 * (lambda a: a[0] / max(a[1], 1))(recall('discmed', hs=[h], ks=[k])):.1f}%"
                                      for k in kinds))
    print("\n(short: the set's items too short to index, both halves; listed by the index, kept in the denominators)")
    fp_total = [0, 0]
    print("\nclean records removed (one index of every set; peer in brackets):")
    for name, recs in clean.items():
        fp = [m for m in recs if union.match(m) is not None]
        old_fp = sum(old_union.match(m) for m in recs)
        print(f"  {name:30} n={len(recs):5}  removed {len(fp)} = {100 * len(fp) / len(recs):.2f}%  [peer {old_fp}]")
        for m in fp[:3]:
            it, cov, fields = union.match(m)
            print(f"      e.g. {'+'.join(fields)} of {Path(it.file).name}:{it.line} {it.preview[:40]!r} in {m[0][:60]!r}")
        if "generated" not in name:
            fp_total = [fp_total[0] + len(fp), fp_total[1] + len(recs)]
    print(f"  {'real clean records in all':30} n={fp_total[1]:5}  removed {fp_total[0]} = {100 * fp_total[0] / fp_total[1]:.2f}%")
    gen_fp = sum(union.match(m) is not None for m in clean["generated (data_cpu)"]) / len(clean["generated (data_cpu)"])

    print("\nharder negatives: medical text that holds no exam item, against the exam sets' index:")
    dia = {}
    for h in halves:
        recs = consultations(h)
        fp = [(m, hit) for m in recs if (hit := exams.match(m)) is not None]
        old_fp = sum(old_exams.match(m) for m in recs)
        dia[h] = (len(fp), len(recs))
        print(f"  {'consultations, ' + h + ' models':30} n={len(recs):5}  removed {len(fp)} = {100 * len(fp) / len(recs):.2f}%  "
              f"[peer {old_fp}]")
        for _, (it, cov, fields) in fp[:3]:
            print(f"      e.g. {'+'.join(fields)} of {Path(it.file).name}:{it.line} {it.preview[:30]!r} (question {cov:.0%})")
    exam_fp, exam_dup, exam_n, old_exam_fp = other_exam_questions(rules)
    print(f"  {'other exam questions':30} n={exam_n:5}  removed {len(exam_fp)} = {100 * len(exam_fp) / exam_n:.2f}%  "
          f"[peer {old_exam_fp}]   (CMMLU items against the other subjects' files; "
          f"{len(exam_dup)} more removed as near-duplicates of an indexed question)")
    for x, it, fields, like in exam_fp + exam_dup[:3]:
        print(f"      {'false positive' if like < 0.8 else 'near-duplicate'}: {x['question'][:24]!r} matched "
              f"{'+'.join(fields)} of {Path(it.file).name}:{it.line} {it.preview[:24]!r} (question {like:.0%} alike)")

    last = halves[-1]
    v, e = recall("discmed", hs=[last], ks=["V"]), recall("discmed", hs=[last], ks=edits)
    pv, pe = recall("peer", hs=[last], ks=["V"]), recall("peer", hs=[last], ks=edits)
    fp_rate = fp_total[0] / fp_total[1]
    rv, re_, rpv, rpe = (a[0] / max(a[1], 1) for a in (v, e, pv, pe))
    met = rv >= 0.99 and re_ >= 0.95 and fp_rate <= 0.005
    print(f"\n{time.time() - t0:.0f} s")
    print(json.dumps({
        "benchmark": "decontam_recall", "discmed": round(rv, 4), "peer": round(rpv, 4),
        "unit": f"share of verbatim planted leaks removed ({last} half)", "ratio": round(rv / max(rpv, 1e-9), 2),
        "goal": "verbatim >= 0.99, edited >= 0.95, clean removed <= 0.005", "met": met,
        "edited": round(re_, 4), "peer_edited": round(rpe, 4), "half": last,
        "untuned_kinds": round((lambda a: a[0] / max(a[1], 1))(recall("discmed", hs=[last], ks=KINDS[4:])), 4)
        if args.half != "tune" else None,
        "tune_verbatim": round((lambda a: a[0] / max(a[1], 1))(recall("discmed", hs=["tune"], ks=["V"])), 4),
        "tune_edited": round((lambda a: a[0] / max(a[1], 1))(recall("discmed", hs=["tune"], ks=[k for k in TUNED if k != "V"])), 4),
        "clean_removed": round(fp_rate, 4), "clean_n": fp_total[1], "generated_clean_removed": round(gen_fp, 4),
        "consultations_removed": {h: round(a / b, 4) for h, (a, b) in dia.items()},
        "other_exam_removed": round(len(exam_fp) / exam_n, 4), "other_exam_near_duplicates": len(exam_dup),
        "planted": v[1] + e[1], "too_short": sum(too_short.values())}))


if __name__ == "__main__":
    main()
