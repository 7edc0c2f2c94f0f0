"""The consultation gym: ledgers that hold their case, patients that never say what was not
asked, a checker that catches a patient model's leaks, rewards that rank doctors the way a
clinician would, and the commands on the tiny model."""

import asyncio
import json
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discmed.chat import DataError
from discmed.gym import SHIPPED
from discmed.gym.episode import SCRIPTED, run_episode
from discmed.gym.ledger import Ledger, check_ledger, read_ledgers
from discmed.gym.patient import RulePatient, State, allowed, check_reply, measure, read_turn
from discmed.gym.rewards import score_episode

ROOT = Path(__file__).resolve().parents[1]
LEDGERS = read_ledgers(SHIPPED)


def ledger(lid: str) -> Ledger:
    return next(led for led in LEDGERS if led.id == lid)


def test_shipped_ledgers_hold_their_rules():
    assert len(LEDGERS) == 8 and {led.disposition for led in LEDGERS} == {"self-care", "clinic", "emergency"}
    assert all(check_ledger(led) == [] for led in LEDGERS)
    assert sum(bool(led.red_flags) for led in LEDGERS) == 6


def test_a_bad_ledger_names_its_line_and_field(tmp_path):
    good = SHIPPED.read_text(encoding="utf-8").splitlines()[0]
    bad = json.loads(good)
    bad["red_flags"][0]["reveals"] = ["no_such_finding"]
    p = tmp_path / "l.jsonl"
    p.write_text(good + "\n" + json.dumps(bad, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"l\.jsonl:2: ledger: .*red flag peritoneal: reveals no_such_finding"):
        read_ledgers(p)
    bad = json.loads(good)
    bad["findings"][1]["synonyms"] = []  # an on_question finding nobody can ask about
    p.write_text(json.dumps(bad, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"l\.jsonl:1: findings.1: .*needs synonyms"):
        read_ledgers(p)


def test_a_ledger_is_checked_against_its_case_and_answer():
    case = ("病人，男，49岁，3小时前解大便后出现右下腹疼痛，右下腹可触及一包块。体温37.8℃，P 101次/分。"
            "血常规：WBC 5.0×109/L，N 78%。")
    base = {"id": "c0", "source": "CMB-clin", "chief_complaint": "右下腹痛并自扪及包块3小时",
            "opening": "我右下腹疼，摸到一个包块，3个小时了。",
            "diagnosis": {"name": "嵌顿性腹股沟斜疝", "synonyms": ["腹股沟斜疝"]}, "disposition": "emergency"}
    findings = [
        {"id": "pain", "kind": "symptom", "fact": "3小时前解大便后出现右下腹疼痛，右下腹可触及一包块", "say": "右下腹疼，有个包块",
         "disclosure": "volunteered"},
        {"id": "age", "kind": "history", "fact": "男，49岁", "say": "49岁", "disclosure": "on_question", "synonyms": ["年龄"]},
        {"id": "vitals", "kind": "exam", "fact": "体温37.8℃，P 101次/分", "say": "T 37.8℃，P 101次/分",
         "disclosure": "on_exam", "synonyms": ["体温"]},
        {"id": "blood", "kind": "test", "fact": "血常规：WBC 5.0×109/L，N 78%", "say": "WBC 5.0×109/L，N 78%",
         "disclosure": "on_test", "synonyms": ["血常规"]},
    ]
    answer = "诊断：嵌顿性腹股沟斜疝合并肠梗阻。"
    led = Ledger.model_validate({**base, "findings": findings})
    assert check_ledger(led, case, answer) == []
    invented = Ledger.model_validate({**base, "findings": [*findings, {
        "id": "vomit", "kind": "symptom", "fact": "呕吐3次，吐出胆汁", "say": "吐了3次", "disclosure": "on_question",
        "synonyms": ["吐"]}]})
    assert check_ledger(invented, case, answer) == ["finding vomit: not in the case text (呕吐3次，吐出胆汁)"]
    dropped = Ledger.model_validate({**base, "findings": findings[:3]})
    assert check_ledger(dropped, case, answer) == ["case facts missing from the ledger: numbers 5.0, 109, 78"]
    wrong = Ledger.model_validate({**base, "findings": findings, "diagnosis": {"name": "急性阑尾炎"}})
    assert check_ledger(wrong, case, answer) == [
        "diagnosis '急性阑尾炎': neither it nor its synonyms are in the case's answer"]


WORDS = sorted({s for led in LEDGERS for f in led.findings for s in f.synonyms}
               | {"查体", "检查一下", "做", "化验", "吗？", "多久", "还有", "您好", "谢谢", "。", "？"})


@settings(max_examples=150, deadline=None)
@given(case=st.sampled_from([led.id for led in LEDGERS]),
       turns=st.lists(st.lists(st.sampled_from(WORDS), min_size=0, max_size=6), min_size=1, max_size=8),
       seed=st.integers(0, 1000))
def test_the_rule_patient_never_says_what_was_not_asked(case, turns, seed):
    """Over random question sequences: every finding the patient states is one whose disclosure
    condition was met (now or before), no other finding's words appear in its replies, and exam
    and test results come only from the measurement agent when asked for."""
    led = ledger(case)
    state = State(led)
    patient = RulePatient(seed)
    for t, words in enumerate(turns, start=1):
        state.turn = t
        doctor = "".join(words) or "嗯"
        turn = read_turn(doctor, led)
        ok = allowed(turn, state)
        said, cited = patient.answer(doctor, turn, state)
        assert set(cited) <= ok
        for f in led.findings:
            if f.id not in ok and f.kind not in ("exam", "test"):
                assert f.say.rstrip("。") not in said, (f.id, doctor, said)
            if f.kind in ("exam", "test"):
                assert f.say not in said  # the patient never reads out a result
        results = measure(turn, state)
        for f in led.findings:
            if f.kind in ("exam", "test") and f.say in results:
                assert f.id in turn.examines + turn.orders
        for fid in [*cited, *turn.examines, *turn.orders]:
            state.disclosed.setdefault(fid, t)


def test_the_checker_catches_planted_leaks_inventions_and_numbers():
    led = ledger("gym-appendicitis")
    state = State(led)
    turn = read_turn("请问发烧吗？", led)
    assert check_reply("有点发烧，量了是37.9度。", ["fever"], turn, state) == []
    # A leak by citation, by its words, and by its numbers: none was asked.
    assert check_reply("有点恶心。", ["nausea"], turn, state) == ["leak: says nausea before it was asked"]
    assert check_reply("发烧37.9度，走路的时候疼得更厉害。", ["fever"], turn, state) == [
        "leak: says movement before it was asked"]
    assert check_reply("疼了大概14个小时了。", [], turn, state) == [
        "leak: says duration before it was asked", "a number the case does not give: 14"]
    # A number the ledger does not hold, and a symptom it does not hold.
    assert check_reply("发烧到39度了。", ["fever"], turn, state) == ["a number the case does not give: 39"]
    assert check_reply("有点发烧，还胸痛。", ["fever"], turn, state) == ["invents a symptom: 胸痛"]
    assert check_reply("有点发烧，没有胸痛。", ["fever"], turn, state) == []  # a denial invents nothing
    assert check_reply("嗯。", ["no_such"], turn, state) == ["cites findings the ledger does not have: no_such"]


CONTRADICTIONS = [  # (ledger, doctor's turn, a reply that contradicts the ledger, its reason, a truthful reply)
    ("gym-appendicitis", "请问发烧吗？", ("不发烧。", ["fever"]), "denies fever", ("有点发烧。", ["fever"])),
    ("gym-appendicitis", "请问发烧吗？", ("没有。", []), "denies fever", ("有点发烧，量了是37.9度。", ["fever"])),
    ("gym-uti", "有没有过敏？", ("没有过敏。", ["allergy"]), "denies allergy", ("我对青霉素过敏。", ["allergy"])),
    ("gym-uti", "有没有过敏？", ("我对头孢过敏。", ["allergy"]), "an allergy the case does not have: 头孢",
     ("对青霉素过敏。", ["allergy"])),
    ("gym-cold", "有药物过敏吗？", ("对青霉素过敏。", ["allergy"]), "asserts allergy, which the case denies",
     ("没有药物过敏。", ["allergy"])),
    ("gym-uti", "发烧吗？", ("有点发烧。", ["fever"]), "asserts fever, which the case denies", ("发烧倒是没有。", ["fever"])),
    ("gym-stroke", "头痛吗？", ("头痛得厉害。", ["headache"]), "asserts headache", ("头不怎么疼。", ["headache"])),
    ("gym-ectopic", "肩膀疼吗？", ("左边肩膀也有点疼。", ["shoulder"]), "says 左 of shoulder",
     ("右边肩膀也有点疼。", ["shoulder"])),
    ("gym-appendicitis", "疼了多久了？", ("疼了两天了。", ["duration"]), "a duration the case does not give: 两天",
     ("疼了十四个小时左右。", ["duration"])),
    ("gym-stroke", "什么时候开始的？", ("三个小时前突然这样的。", ["onset"]), "a duration the case does not give: 三个小时",
     ("一个小时前突然这样的。", ["onset"])),
    ("gym-stroke", "什么时候开始的？", ("是慢慢开始的。", ["onset"]), "the onset was 慢慢, the case says 突然",
     ("就是突然这样的。", ["onset"])),
    ("gym-appendicitis", "什么时候开始疼的？", ("今天早上开始疼的。", ["duration"]), "began 今天, the case says 昨天",
     ("昨天晚上开始疼的。", ["duration"])),
]


@pytest.mark.parametrize("lid,doctor,planted,reason,truthful", CONTRADICTIONS)
def test_the_checker_catches_planted_contradictions(lid, doctor, planted, reason, truthful):
    """A reply that contradicts the ledger (a present finding denied, an absent one asserted,
    the wrong allergen, side, duration in words, or onset) is refused, saying which; the
    truthful reply to the same question passes."""
    led = ledger(lid)
    turn = read_turn(doctor, led)
    problems = check_reply(*planted, turn, State(led))
    assert len(problems) >= 1 and all(p.startswith("contradicts the ledger: ") for p in problems), problems
    assert any(reason in p for p in problems), problems
    assert check_reply(*truthful, turn, State(led)) == []


def test_a_contradicting_patient_model_is_regenerated_then_answered_by_the_rules():
    """A patient model that denies whatever is asked: every such turn is refused and generated
    again; the episode's patient turns hold none of its denials where the ledger says otherwise."""
    from discmed.gym.patient import LLMPatient

    class Denier:
        async def chat(self, messages, params):
            return json.dumps({"say": "没有。", "findings": []}, ensure_ascii=False)

    led = ledger("gym-mi")
    ep = asyncio.run(run_episode(led, SCRIPTED["ask-all"](led), LLMPatient(Denier(), None, tries=2), doctor_name="x"))
    asked_present = [t for t in ep.turns[:-1] if t["asks"]]
    assert asked_present and ep.fallbacks >= len(asked_present) and ep.rejections == 2 * ep.fallbacks
    assert ep.disclosed.keys() >= {"character", "radiation", "sweat"}  # the rules answered them truthfully


def test_the_llm_patient_falls_back_to_the_rules_when_it_leaks():
    """A patient model that always leaks (it says the case's result numbers): every reply is
    refused, regenerated, then answered by the rules; the episode says so."""
    from discmed.gym.patient import LLMPatient

    class Leaky:  # the model's side of the contract: messages in, text out
        calls = 0

        async def chat(self, messages, params):
            Leaky.calls += 1
            return json.dumps({"say": "白细胞12.8，阑尾增粗9mm。", "findings": ["wbc", "ultrasound"]}, ensure_ascii=False)

    led = ledger("gym-appendicitis")
    ep = asyncio.run(run_episode(led, SCRIPTED["ask-all"](led), LLMPatient(Leaky(), None, tries=2), doctor_name="x"))
    patient_turns = [m["content"] for m in ep.conversation[1:] if m["role"] == "user"]
    assert ep.rejections == 2 * ep.fallbacks and ep.fallbacks == len(patient_turns) > 0
    assert Leaky.calls == ep.rejections
    assert not any("12.8，阑尾" in t for t in patient_turns)


def test_the_llm_patient_regenerates_anew_and_replays_from_the_cache(tmp_path, tiny_model):
    """The tiny model as the LLM patient, through the job engine's call cache: every reply is
    JSON the checker can read (the ledger's schema bounds `say`, so the string always closes,
    and cites only ids the patient knows); a refused reply is generated again with a seed of
    its own, not answered from the cache with the reply just refused; and a second run with the
    same seeds replays every call from the cache, to the same answer."""
    from discmed.backend import GenParams, load_backend
    from discmed.gym.patient import SAY_MAX_CHARS, LLMPatient, parse_reply
    from discmed.jobs import JobRunner

    led = ledger("gym-appendicitis")
    turn = read_turn("请问发烧吗？疼了多久了？", led)
    params = GenParams(max_new_tokens=128, temperature=0.7, top_p=0.9)
    backend = load_backend("tiny")
    answers = []
    for _ in range(2):
        with JobRunner(None, cache=tmp_path / "calls.sqlite", progress=False) as runner:
            client = runner.client(backend, name="patient")
            state = State(led)
            patient = LLMPatient(client, params, tries=3, seed=4)
            answers.append(asyncio.run(patient.reply("请问发烧吗？疼了多久了？", turn, state)))
            calls, hits, rejected = client.calls, client.cache_hits, state.rejections
            raws = [r for (r,) in runner.cache.con.execute("SELECT reply FROM replies")]
        if not answers[1:]:
            assert rejected >= 1 and calls == min(rejected + 1, 3) and hits == 0  # each attempt a call of its own
            assert len(set(raws)) == calls
            for raw in raws:
                say, cited = parse_reply(raw)
                assert say and len(say) <= SAY_MAX_CHARS and set(cited) <= {f.id for f in led.findings}
        else:
            assert calls == 0 and hits == min(rejected + 1, 3)
    assert answers[0] == answers[1]


def test_scripted_doctors_rank_as_a_clinician_would():
    """Asking what matters, examining, testing and concluding scores near the top on every
    case; advising at once scores near the bottom; the gap is wide on every measure."""
    rows = {}
    for name, make in SCRIPTED.items():
        scores = [score_episode(asyncio.run(run_episode(led, make(led), RulePatient(), doctor_name=name)), led)
                  for led in LEDGERS]
        rows[name] = {k: sum(float(s[k] or 0) for s in scores) / len(scores)
                      for k in ("reward", "info_recall", "diagnosis", "disposition")}
        rows[name]["red"] = [s["red_flags_before_advice"] for s in scores if s["red_flags_before_advice"] is not None]
    top, bottom = rows["ask-all"], rows["advise-now"]
    assert top["diagnosis"] == top["disposition"] == 1.0 and top["info_recall"] >= 0.8 and min(top["red"]) == 1.0
    assert bottom["info_recall"] == bottom["diagnosis"] == 0.0 and max(bottom["red"]) == 0.0
    assert bottom["disposition"] <= 0.25  # right only for the cold, where staying home is right
    assert top["reward"] - bottom["reward"] >= 3.0


def test_rewards_worked_out_by_hand():
    led = ledger("gym-uti")
    conversation = [{"role": "user", "content": led.opening}]
    doctor_turns = ["有没有发烧？腰疼吗？", "发烧吗？", "建议今天尽快去医院门诊，考虑是膀胱炎。"]
    ep = asyncio.run(run_episode(led, _say(doctor_turns), RulePatient(), doctor_name="hand"))
    s = score_episode(ep, led)
    # Asked: fever (1.5) and flank (1.5) of 1.5+1.5+1+1+1.5+1.5 = 8 askable weight.
    assert ep.disclosed == {"frequency": 0, "dysuria": 0, "fever": 1, "flank": 1}
    assert s["info_recall"] == round(3 / 8, 4)
    assert s["red_flags_before_advice"] == 1.0  # both of the flag's findings came before turn 3's advice
    assert s["diagnosis"] == 1.0 and s["said_disposition"] == "same-day" and s["disposition"] == 0.0  # clinic
    assert (s["turns"], s["multi"], s["repeated"]) == (3, 1, 1)  # two questions at once; fever asked again
    assert s["reward"] == round(3 / 8 + 1 + 1 + 0 - 0.1 - 0.1, 4)
    assert conversation[0]["content"] == ep.conversation[0]["content"]


EXAMINE = "我给您做个体格检查，检查一下。"


def test_repeating_an_examination_or_a_test_order_is_penalised():
    """An examination or a test order whose results are already known is a repeated turn, as a
    question already answered is: on every shipped ledger with exam findings (or tests), the
    doctor that examines (orders) twice scores lower than the one that does it once, by the
    `repeated` weight, and nothing else changes. The concluding turn is not a repeat: it is
    never answered, and here it names a diagnosis whose words an exam finding shares."""
    from discmed.gym.episode import DISPOSITION_ADVICE
    from discmed.gym.rewards import WEIGHTS

    compared = 0
    for led in LEDGERS:
        final = f"考虑是{led.diagnosis.name}。{DISPOSITION_ADVICE[led.disposition]}"
        tests = [f for f in led.findings if f.disclosure == "on_test"]
        steps = ([EXAMINE] if any(f.disclosure == "on_exam" for f in led.findings) else []) + \
                [f"需要做一下{f.synonyms[0]}检查。" for f in tests[:1]]
        for step in steps:
            once = score_episode(asyncio.run(run_episode(led, _say([step, final]), RulePatient(), doctor_name="a")), led)
            twice = score_episode(asyncio.run(run_episode(led, _say([step, step, final]), RulePatient(),
                                                          doctor_name="b")), led)
            assert (once["repeated"], twice["repeated"]) == (0, 1), (led.id, step)
            assert twice["reward"] == round(once["reward"] + WEIGHTS["repeated"], 4) < once["reward"]
            assert {k: v for k, v in twice.items() if k not in ("repeated", "reward", "turns", "asked_turns")} == \
                   {k: v for k, v in once.items() if k not in ("repeated", "reward", "turns", "asked_turns")}
            compared += 1
    assert compared >= 10  # exams and tests on most shipped ledgers
    # Examining every turn until the budget runs out (what GRPO found paid): every answered turn after the first is
    # a repeat, the last one (unanswered) is not.
    led = ledger("gym-appendicitis")
    s = score_episode(asyncio.run(run_episode(led, _say([EXAMINE] * led.turn_budget), RulePatient(), doctor_name="c")),
                      led)
    assert s["repeated"] == led.turn_budget - 2 and s["over_budget"] == 1


def test_a_silent_doctor_ends_the_consultation_unconcluded():
    """An empty doctor turn ends the episode (no model is called with an empty message after
    it) and counts as ending without a conclusion, as running out of turns does."""
    led = ledger("gym-uti")
    ep = asyncio.run(run_episode(led, _say(["发烧吗？", "", "建议去门诊。"]), RulePatient(), doctor_name="hand"))
    assert ep.ended == "silent" and len(ep.turns) == 2 and ep.conversation[-1] == {"role": "assistant", "content": ""}
    s = score_episode(ep, led)
    assert s["over_budget"] == 1 and s["disposition"] == 0.0 and s["info_recall"] == round(1.5 / 8, 4)


def _say(turns):
    async def doctor(conversation):
        return turns[sum(m["role"] == "assistant" for m in conversation)]

    return doctor


@pytest.mark.slow
def test_eval_gym_on_the_tiny_model(tmp_path, tiny_model):
    r = subprocess.run([sys.executable, "-m", "discmed", "eval", "gym", "--doctor", "tiny", "--doctor",
                        "scripted:advise-now", "--out", tmp_path / "gym", "--max-new-tokens", "24", "--json"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["episodes"] == 16 and s["doctors"]["tiny"]["n"] == 8 and s["doctors"]["tiny"]["N"] == 8
    report = (tmp_path / "gym" / "report.md").read_text(encoding="utf-8")
    assert "| tiny | 8 of 8 |" in report and "| scripted:advise-now | 8 of 8 |" in report
    eps = [json.loads(x) for x in (tmp_path / "gym" / "episodes.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(e["scores"]["turns"] >= 1 and 0 <= e["scores"]["info_recall"] <= 1 for e in eps)


@pytest.mark.slow
def test_eval_gym_system_reaches_the_doctor_and_keys_its_results(tmp_path, tiny_model):
    """`eval gym --system` plays a model doctor with that system message: its first turn is
    the model's own reply to the system message and the opening (and not its reply to the
    opening alone); the call cache keys the call on the system message, and a journal written
    with one system message refuses a run without it, so no result is answered from a run
    with another prompt."""
    from discmed.backend import GenParams, load_backend
    from discmed.jobs import cache_key

    led = LEDGERS[0]
    one = tmp_path / "one.jsonl"
    one.write_text(led.model_dump_json() + "\n", encoding="utf-8")
    system = "你是一位经验丰富的全科医生。先问清楚病人的症状、持续时间和既往史，再给出建议。"

    def gym(out, *extra):
        return subprocess.run([sys.executable, "-m", "discmed", "eval", "gym", "--doctor", "tiny", "--ledgers", one,
                               "--out", out, "--max-new-tokens", "16", "--concurrency", "1", *extra],
                              capture_output=True, text=True, timeout=600, cwd=ROOT)

    r = gym(tmp_path / "with", "--system", system)
    assert r.returncode == 0, r.stderr[-2000:]
    again = gym(tmp_path / "with")  # the same folder, no system message: refused, not mixed in
    assert again.returncode != 0 and "written with other settings" in again.stderr, again.stderr[-2000:]
    r = gym(tmp_path / "without")
    assert r.returncode == 0, r.stderr[-2000:]

    def first_turn(out):
        return json.loads((out / "episodes.jsonl").read_text(encoding="utf-8").splitlines()[0])["conversation"][1]["content"]

    doctor = load_backend("tiny")
    params = GenParams(max_new_tokens=16, temperature=0.0, seed=0)  # eval gym's: greedy, the repeat's seed
    opening = [{"role": "user", "content": led.opening}]
    prompted = [{"role": "system", "content": system}, *opening]
    assert first_turn(tmp_path / "with") == doctor.chat([prompted], params)[0].strip()
    assert first_turn(tmp_path / "without") == doctor.chat([opening], params)[0].strip()
    assert first_turn(tmp_path / "with") != first_turn(tmp_path / "without")

    def keys(out):
        con = sqlite3.connect(out / "tiny.journal.sqlite.cache.sqlite")
        return {k for (k,) in con.execute("SELECT key FROM replies")}

    with_key, without_key = (cache_key(doctor.identity, m, params) for m in (prompted, opening))
    assert with_key in keys(tmp_path / "with") and without_key not in keys(tmp_path / "with")
    assert without_key in keys(tmp_path / "without") and with_key not in keys(tmp_path / "without")


@pytest.mark.slow
def test_gym_build_keeps_rejects_with_reasons(tmp_path, tiny_server, shared_data):
    """The tiny teacher cannot write a ledger: every case is rejected (kept, with the checks'
    reasons) or failed (a prompt too long for it), none is written, and the command says so."""
    out = tmp_path / "ledgers.jsonl"
    r = subprocess.run([sys.executable, "-m", "discmed", "gym", "build", "--cases", "cmid", "--samples",
                        shared_data / "disc-medllm" / "eval" / "samples", "--teacher", f"openai:{tiny_server}@tiny",
                        "--limit", "2", "--max-new-tokens", "64", "--out", out, "--no-cache", "--json"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    last = json.loads(r.stdout.strip().splitlines()[-1])
    summary = last.get("summary", last)
    assert summary["cases"] == 2 and summary["written"] == 0
    assert summary["rejected"] + summary["failed"] == 2
    rejects = [json.loads(x) for x in out.with_name("ledgers.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rejects) == summary["rejected"] and all(x["problems"] for x in rejects)
    assert r.returncode == (4 if summary["failed"] else 0)


def test_random_question_sequences_reach_findings():
    """The property test above means something: random sequences do disclose findings."""
    led = ledger("gym-appendicitis")
    rng = random.Random(0)
    state = State(led)
    for t in range(1, 6):
        turn = read_turn("".join(rng.sample(WORDS, 4)), led)
        state.disclosed.update({f: t for f in turn.asks + turn.examines if f not in state.disclosed})
    assert len(state.disclosed) > 1
