"""Patients whose turns can be checked, and the measurement agent.

Every doctor turn is read the same way first (`read_turn`): which findings it asks about (a
finding's synonym in a sentence that asks: a question, or a request such as "说说"), whether it
examines the patient, which tests it orders, how many questions it asks, and whether it gives
advice. (GRPO on the tiny model found that a reader counting a synonym anywhere pays for a turn
of keyword soup, "我一下尿常规尿尿尿…"; a keyword now asks only inside a question.) What may be disclosed next follows from
the ledger alone (`allowed`): a finding asked about, an exam finding when the doctor examines,
a test result when the doctor orders that test, and whatever was disclosed before.

- `RulePatient` answers from the ledger with templates styled by the persona, one or two of the
  findings asked at a time (the first asked; a terse patient only the first): no model call,
  and by construction it never says a finding that is not allowed (a property test drives it
  with random question sequences).
- `LLMPatient` is any model (any backend) told what the patient knows of the case (not the exam
  findings or test results) and the persona, replying with JSON `{"say", "findings"}` (the
  finding ids it used, held to the ledger's schema); `check_reply` rejects a reply that
  cites or says a finding that is not allowed (a leak), states a number the ledger does not
  have, names a symptom the ledger does not hold (an invention), or contradicts the ledger
  (discmed.gym.contradiction: denies a finding that is present, asserts one that is absent, the
  wrong side, duration, onset or allergen), and the turn is generated again (a new seed: a new
  call), then falls back to the rule-based answer; every rejection is counted.
- `measure` is AgentClinic's measurement agent: exam findings and test results come from it,
  as a separate message, never from the patient.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from dataclasses import dataclass, field
from typing import Any

from discmed.gym.contradiction import contradictions, denied
from discmed.gym.ledger import RE_NUMBER, Finding, Ledger, norm

# A general request to examine the patient discloses every exam finding; a named exam (a
# finding's synonym) discloses that one.
EXAM_REQUEST = ("查体", "体格检查", "给您检查", "给你检查", "帮您检查", "帮你检查", "检查一下身体", "我来检查", "检查一下",
                "听诊", "触诊", "按一下", "摸一下", "量一下", "测一下", "看一下舌", "视诊")
TEST_ORDER = ("查", "做", "化验", "检查", "拍", "开", "验", "测")
# A question without a question mark (the marks are counted first): its words, not "几天" or
# "什么" alone, which advice has too ("观察几天", "没什么大问题").
QUESTION = re.compile(r"吗[。，,]|吗$|呢[。，,]|多久|多长时间|什么时候|哪里|哪儿|有没有|是否|是不是|怎么样了|多少度")
# A request that asks without a question's form ("说说您以前的病史").
REQUEST = re.compile(r"说说|讲讲|说一下|讲一下|告诉我|描述一下")
SENTENCE = re.compile(r"[^。！!？?；;\n]+[。！!？?；;\n]?")
ANSWERS_PER_TURN = {"terse": 1, "normal": 2, "talkative": 2}  # asked findings a patient answers in one turn
# Advice or a conclusion ("需要" and "注意" alone are left out: "需要问您几个问题" is not advice).
ADVICE = re.compile(r"建议|应该(?:吃|服|用|去|做)|可以(?:吃|服|用)|考虑(?:是|为)|诊断(?:是|为)|可能是|去医院|就医|急诊|"
                    r"拨打|120|住院|手术|服用|多喝水|多休息|观察几天|复查|随诊|门诊")
# Symptoms a patient might invent: named in a reply but held by no finding of the ledger.
SYMPTOMS = ("发热", "发烧", "头痛", "头疼", "头晕", "咳嗽", "咳痰", "胸痛", "胸闷", "心慌", "心悸", "气短", "气促", "呼吸困难",
            "腹痛", "肚子疼", "恶心", "呕吐", "腹泻", "拉肚子", "便血", "黑便", "尿频", "尿急", "尿痛", "血尿", "皮疹",
            "瘙痒", "乏力", "水肿", "浮肿", "出汗", "昏迷", "抽搐", "晕倒", "视力模糊", "麻木", "出血", "关节痛", "腰痛",
            "背痛", "咽痛", "嗓子疼", "流涕", "鼻塞")


@dataclass
class DoctorTurn:
    """What one doctor turn does, read the same way for every patient and every reward."""

    asks: list[str]  # finding ids it asks about (on_question findings, and volunteered ones asked again)
    examines: list[str]  # exam finding ids the examination reaches
    orders: list[str]  # test finding ids it orders
    questions: int  # question marks / question forms in the turn
    advice: bool  # it gives advice or a conclusion


def mentions(text: str, finding: Finding) -> bool:
    t = norm(text)
    return any(norm(s) and norm(s) in t for s in finding.synonyms)


def read_turn(doctor: str, ledger: Ledger) -> DoctorTurn:
    """What the turn does. A finding is asked about only in a sentence that asks (a question
    mark, a question's words, a request): a string of keywords asks nothing. Asked findings are
    listed in the order the turn names them."""
    general_exam = any(w in doctor for w in EXAM_REQUEST)
    asking = [x for x in SENTENCE.findall(doctor) if x.rstrip().endswith(("？", "?")) or QUESTION.search(x)
              or REQUEST.search(x)]
    asked = norm("".join(asking))
    asks, examines, orders = [], [], []
    for f in ledger.findings:
        hit = mentions(doctor, f)
        if f.disclosure in ("on_question", "volunteered") and mentions(asked, f):
            asks.append(f.id)
        elif f.disclosure == "on_exam" and (general_exam or hit):
            examines.append(f.id)
        elif f.disclosure == "on_test" and hit and any(w in doctor for w in TEST_ORDER):
            orders.append(f.id)
    asks.sort(key=lambda i: min(asked.find(norm(w)) for w in ledger.finding(i).synonyms if norm(w) and norm(w) in asked))
    return DoctorTurn(asks, examines, orders, len(asking), bool(ADVICE.search(doctor)))


@dataclass
class State:
    """What has been disclosed so far: finding id → the doctor turn (0 = the opening) it came in."""

    ledger: Ledger
    disclosed: dict[str, int] = field(default_factory=dict)
    turn: int = 0
    rejections: int = 0  # LLM patient turns the checker refused
    fallbacks: int = 0  # turns answered by the rules after the LLM failed the checker

    def __post_init__(self) -> None:
        for f in self.ledger.findings:
            if f.disclosure == "volunteered":
                self.disclosed.setdefault(f.id, 0)


def allowed(turn: DoctorTurn, state: State) -> set[str]:
    """Findings the patient (or the measurement agent) may state after this turn."""
    return set(state.disclosed) | set(turn.asks) | set(turn.examines) | set(turn.orders)


# -- the rule-based patient ---------------------------------------------------------------------

NEGATIVE = {"terse": "没有。", "normal": "这个倒没有。", "talkative": "这个倒是没有注意到，应该没有吧。"}
NOT_A_QUESTION = {"calm": "好的，谢谢医生。", "worried": "好的医生，那我需要注意什么？", "panicked": "医生，我这个严不严重啊？"}
DIALECT = {"northern": ("俺", "咋"), "southwestern": ("我", "啥子"), "cantonese": ("我", "点样")}


def styled(text: str, ledger: Ledger, rng: random.Random) -> str:
    """A finding's words as this persona says them."""
    p = ledger.persona
    if p.recall == "vague" and rng.random() < 0.5:
        text = "好像" + text.lstrip("我")
    if p.dialect == "northern":
        text = text.replace("我", "俺", 1)
    elif p.dialect == "southwestern":
        text = text.replace("什么", "啥子")
    return text


class RulePatient:
    """Answers from the ledger with templates: no model call; never says what is not allowed."""

    name = "rule"

    def __init__(self, seed: int = 0):
        self.seed = seed

    async def reply(self, doctor: str, turn: DoctorTurn, state: State) -> tuple[str, list[str]]:
        return self.answer(doctor, turn, state)

    def answer(self, doctor: str, turn: DoctorTurn, state: State) -> tuple[str, list[str]]:
        led = state.ledger
        rng = random.Random(f"{self.seed}/{led.id}/{state.turn}")
        # One or two things at a time, the first asked (a terse patient: the first only).
        said = [i for i in turn.asks if led.finding(i).kind not in ("exam", "test")]
        said = said[:ANSWERS_PER_TURN[led.persona.talkativeness]]
        parts = [styled(led.finding(i).say, led, rng) for i in said]
        if not parts:
            if turn.questions and not turn.examines and not turn.orders:
                parts = [NEGATIVE[led.persona.talkativeness]]
            elif not turn.questions and not turn.examines and not turn.orders:
                parts = [NOT_A_QUESTION[led.persona.anxiety]]
            else:
                parts = ["好的，您检查吧。"]
        if led.persona.anxiety == "panicked" and parts and turn.questions:
            parts.append("医生，我这个要不要紧？")
        return "，".join(p.rstrip("。") for p in parts) + "。", said


# -- the measurement agent ------------------------------------------------------------------------

def measure(turn: DoctorTurn, state: State) -> str:
    """Exam findings and test results the turn asked for, as the measurement agent reports them."""
    led = state.ledger
    parts = [f"【查体】{led.finding(i).say}" for i in turn.examines] + [f"【检查结果】{led.finding(i).say}" for i in turn.orders]
    return "\n".join(parts)


# -- the LLM patient and its checker --------------------------------------------------------------

REPLY_SCHEMA = {
    "type": "object",
    "properties": {"say": {"type": "string"}, "findings": {"type": "array", "items": {"type": "string"}}},
    "required": ["say", "findings"],
}
SAY_MAX_CHARS = 80  # the prompt asks for one or two sentences; a reply that never closes its string is a wasted call


def reply_schema(ledger: Ledger) -> dict:
    """REPLY_SCHEMA narrowed to one ledger: `say` at most SAY_MAX_CHARS characters, so that the
    reply always closes and parses (the tiny model, unbounded, ran every reply to its token limit
    and none could be read), and `findings` at most three ids of what the patient knows (a turn
    answers one or two things)."""
    known = [f.id for f in ledger.findings if f.kind not in ("exam", "test")]
    items = {"enum": known} if known else {"type": "string"}
    return {"type": "object", "additionalProperties": False, "required": ["say", "findings"],
            "properties": {"say": {"type": "string", "maxLength": SAY_MAX_CHARS},
                           "findings": {"type": "array", "items": items, "maxItems": min(3, len(known))}}}


# What the patient knows, each fact once with its id (the ids are what a reply cites). Exam
# findings and test results are not in it: the measurement agent gives them, and a patient that
# does not know them cannot read them out.
PROMPT = """你在扮演一位到线上问诊的病人。下面是你的病情（医生看不到），每条前面是它的编号：
主诉：{complaint}
{facts}

你的性格：{persona}。
规则：
1. 只回答医生这一轮问到的内容，没问到的不要主动说；不要说出诊断名称。
2. 体格检查和化验结果不由你说（会由检查人员另外给出）。
3. 只能说病情里有的事实，不能编造；不知道的就说不清楚或没有。
4. 用病人的口吻、口语化地回答，一两句话。
用 JSON 回答：{{"say": "你要说的话", "findings": [你这句话用到的病情条目编号]}}

医生说：{doctor}"""


def check_reply(say: str, cited: list[str], turn: DoctorTurn, state: State) -> list[str]:
    """Why an LLM patient's reply is refused ([] = it passes): a leak, a number the ledger does
    not hold, a symptom it does not hold, or a contradiction of it."""
    led = state.ledger
    ok = allowed(turn, state)
    problems = []
    unknown = [i for i in cited if i not in {f.id for f in led.findings}]
    if unknown:
        problems.append(f"cites findings the ledger does not have: {', '.join(unknown)}")
    leaked = [i for i in cited if i in {f.id for f in led.findings} and i not in ok]
    for f in led.findings:
        if f.id not in ok and f.id not in leaked and (mentions(say, f) or _says(say, f)):
            leaked.append(f.id)
    if leaked:
        problems.append(f"leak: says {', '.join(leaked)} before it was asked")
    results = [f.id for f in led.findings if f.kind in ("exam", "test") and f.id in ok and f.id not in leaked
               and (f.id in cited or _says(say, f))]
    if results:  # exam findings and test results are the measurement agent's to give
        problems.append(f"reads out a result: {', '.join(results)}")
    held = " ".join(f.fact + f.say for f in led.findings if f.id in ok) + led.opening
    numbers = [n for n in RE_NUMBER.findall(say) if n not in RE_NUMBER.findall(held) + ["1"]]
    if numbers:
        problems.append(f"a number the case does not give: {', '.join(numbers)}")
    whole = norm(" ".join(f.fact + f.say + " ".join(f.synonyms) for f in led.findings) + led.opening)
    invented = [s for s in SYMPTOMS if s in say and norm(s) not in whole and not denied(say, s)]
    if invented:
        problems.append(f"invents a symptom: {', '.join(invented)}")
    ids = {f.id for f in led.findings}
    return problems + contradictions(say, led, turn.asks, [c for c in cited if c in ids and c in ok])


def _says(text: str, f: Finding) -> bool:
    """Whether `text` states finding `f` in its own words (its distinctive numbers)."""
    nums = [n for n in RE_NUMBER.findall(f.fact) if n != "1" and len(n) > 1]
    return bool(nums) and all(n in text for n in nums)


class LLMPatient:
    """A model plays the patient; its turns are checked and regenerated, then fall back to rules."""

    name = "llm"

    def __init__(self, client: Any, params: Any, tries: int = 2, seed: int = 0):
        self.client, self.params, self.tries, self.seed = client, params, tries, seed
        self.rules = RulePatient(seed)

    def prompt(self, doctor: str, state: State) -> list[dict[str, str]]:
        led = state.ledger
        p = led.persona
        persona = (f"说话{ {'terse': '简短', 'normal': '正常', 'talkative': '啰嗦'}[p.talkativeness] }，"
                   f"医学常识{ {'low': '很少', 'medium': '一般', 'high': '较多'}[p.health_literacy] }，"
                   f"记性{ {'clear': '清楚', 'vague': '模糊'}[p.recall] }，"
                   f"{ {'calm': '平静', 'worried': '有些担心', 'panicked': '很紧张'}[p.anxiety] }")
        facts = "\n".join(f"{f.id}: {f.fact}" for f in led.findings if f.kind not in ("exam", "test"))
        return [{"role": "user", "content": PROMPT.format(complaint=led.chief_complaint, facts=facts, persona=persona,
                                                          doctor=doctor)}]

    def params_for(self, ledger: Ledger, attempt: int) -> Any:
        """The call's parameters: the ledger's reply schema, and a seed of the attempt's own. A
        regeneration with the first call's parameters is the same call: a call cache answers it
        with the reply just refused, and an unseeded one cannot be replayed."""
        if self.params is None:
            return None
        return dataclasses.replace(self.params, json_schema=reply_schema(ledger), seed=self.seed * self.tries + attempt)

    async def reply(self, doctor: str, turn: DoctorTurn, state: State) -> tuple[str, list[str]]:
        for attempt in range(self.tries):
            raw = await self.client.chat(self.prompt(doctor, state), self.params_for(state.ledger, attempt))
            say, cited = parse_reply(raw)
            if say and not check_reply(say, cited, turn, state):
                return say, [c for c in cited if c in allowed(turn, state)]
            state.rejections += 1
        state.fallbacks += 1
        return self.rules.answer(doctor, turn, state)


def parse_reply(raw: str) -> tuple[str, list[str]]:
    """(say, finding ids) from the patient model's JSON reply; ("", []) when unreadable."""
    m = re.search(r"\{.*\}", raw, re.S)
    try:
        obj = json.loads(m.group(0)) if m else None
    except json.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict) or not isinstance(obj.get("say"), str):
        return "", []
    cited = [c for c in obj.get("findings") or [] if isinstance(c, str)]
    return obj["say"].strip(), cited
