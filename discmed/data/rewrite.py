"""DISC's dialogue reconstruction: a teacher LLM rewrites each doctor turn of a real
consultation into a complete, polite, explanatory reply, and code checks it kept the facts.

Real doctors online write "查个血常规，阿莫西林0.5g一天三次". DISC had ChatGPT rewrite such
replies so a model learns to explain, while keeping every medical fact. A teacher can drop a
dose, invent one, or slip into "作为一个AI…", so every rewrite is checked by deterministic
code against the original turn (`check_rewrite`):

- every number of the original is present (doses, lab values, durations; 三次 counts as 3次;
  the number 1 is not checked: 一天三次 and 每天3次 say the same);
- no new numbers (beyond those anywhere in the conversation); list markers "1." "2、" are
  not numbers on either side;
- drugs, tests and diagnoses named in the original are present (a written lexicon plus
  suffix rules: …西林, …沙星, …拉唑, …炎, …癌, …综合征 …);
- length within bounds; no "as an AI" phrasing; mostly Chinese.

A failed rewrite is retried once with the reasons in the prompt; if it fails again the
conversation is rejected, and the reasons are recorded. Prompts live in
`prompts/teacher_zh.yaml` with a version that goes into every sample's provenance.

    summary = rewrite_file("scrubbed.jsonl", "rewritten.jsonl", "openai:http://127.0.0.1:8000/v1@tiny")
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

from discmed.backend import GenParams, cut_off
from discmed.chat import Conversation, atomic_writer, error_sink, iter_conversations
from discmed.data.lineage import fingerprint, stamp
from discmed.jobs import JobRunner, backend_for, cache_path, job_outcome

PROMPTS = Path(__file__).resolve().parent / "prompts" / "teacher_zh.yaml"


@cache
def load_prompts(path: str | Path = PROMPTS) -> dict:
    """The teacher prompts (one YAML file, each prompt with its version)."""
    import yaml

    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


# ---------------------------------------------------------------- fact extraction

CN_DIGIT = {"一": "1", "二": "2", "两": "2", "三": "3", "四": "4", "五": "5", "六": "6", "七": "7", "八": "8", "九": "9",
            "十": "10"}
UNITS = "次|片|粒|袋|支|瓶|盒|天|日|周|个月|月|年|岁|小时|分钟|毫克|克|毫升|滴|包|丸|疗程|针"
RE_CN_NUM = re.compile(f"([一二两三四五六七八九十])(?={UNITS})")
RE_LIST_MARK = re.compile(r"(?:^|(?<=[\n：:。；;！？]))\s*(?:第)?\d{1,2}\s*[.、)）](?!\d)")
RE_NUMBER = re.compile(r"\d+(?:\.\d+)?")

TESTS = ("血常规 尿常规 便常规 大便常规 白带常规 精液常规 肝功能 肾功能 甲功 甲状腺功能 血糖 血脂 心电图 彩超 B超 超声 CT MRI "
         "核磁共振 核磁 X线 胸片 胃镜 肠镜 喉镜 支气管镜 病理 活检 穿刺 造影 骨密度 肺功能 幽门螺杆菌 呼气试验 凝血 血沉 C反应蛋白 "
         "CRP 降钙素原 肿瘤标志物 HPV TCT 性激素 孕酮 HCG 甲胎蛋白 AFP 乙肝五项 乙肝两对半 HBV-DNA 糖化血红蛋白 OGTT 脑电图 "
         "肌电图 内镜 PET-CT 钼靶 眼压 血气 D-二聚体 BNP 心肌酶 尿酸 血钾 过敏原 微量元素 铁蛋白 血培养 胸部CT 头颅CT "
         "腹部B超 听力测试").split()
DRUGS = ("布洛芬 对乙酰氨基酚 阿司匹林 二甲双胍 蒙脱石散 益生菌 叶酸 钙片 氯雷他定 西替利嗪 孟鲁司特 泼尼松 地塞米松 "
         "甲泼尼龙 胸腺肽 日达仙 优甲乐 左甲状腺素 碘伏 硝酸甘油 华法林 肝素 青霉素 头孢 红霉素 阿奇霉素 维生素 胰岛素 "
         "氨溴索 沐舒坦 开塞露 乳果糖 黄体酮 达英 甲氨蝶呤 碳酸氢钠 口服补液盐 板蓝根 连花清瘟 藿香正气").split()
DIAGNOSES = ("高血压 糖尿病 冠心病 哮喘 湿疹 痛风 贫血 抑郁 焦虑 失眠 便秘 腹泻 感冒 流感 肺结核 乙肝 甲亢 甲减 痔疮 "
             "荨麻疹 带状疱疹 骨质疏松 心衰 脑梗 中风 肺结节 息肉 囊肿 结石 溃疡 骨折 疝气 鼻窦炎").split()
RE_DRUG = re.compile(r"[\u4e00-\u9fff]{2}(?:西林|沙星|霉素|拉唑|替丁|地平|洛尔|普利|沙坦|他汀|替尼|单抗|洛芬|韦|唑"
                     r"|胶囊|颗粒|口服液|注射液|混悬液|滴眼液|软膏|乳膏|喷雾剂)")
RE_DIAG = re.compile(r"[\u4e00-\u9fff](?:炎|癌|瘤|综合征|结石|溃疡|增生|感染|梗死|梗塞|衰竭|出血|囊肿|结节|息肉)"
                     r"|[\u4e00-\u9fff](?:病|症)(?![状情人史毒变因理灶例房友程号])")
GENERIC_DIAG = {"发炎", "消炎", "的病", "发病", "生病", "看病", "疾病", "此病", "该病", "这病", "有病", "治病", "的症",
                "病症", "重症", "轻症", "对症", "急症", "病病", "炎症", "的炎", "和炎", "是炎", "个病", "种病",
                "了病", "么病", "啥病", "何病", "查病", "种症", "并发症", "后遗症", "的癌", "肿瘤", "的瘤", "的感染"}
RE_AI = re.compile(r"作为(?:一[个名位]|一款)?(?:AI|ai|人工智能|语言模型|智能助手|AI助手|机器人|虚拟助手)|我(?:只)?是(?:一[个名])?"
                   r"(?:AI|人工智能|语言模型|智能助手)|(?:as an|I am an?) (?:AI|language model)|人工智能(?:模型|助手)", re.I)


def _normalize_numbers(text: str) -> str:
    """三次 → 3次 (so a rewrite may write the digit), and list markers removed."""
    return RE_CN_NUM.sub(lambda m: CN_DIGIT[m.group(1)], text)


def numbers(text: str, drop_list_marks: bool = False) -> Counter:
    t = _normalize_numbers(text)
    if drop_list_marks:
        t = RE_LIST_MARK.sub(" ", t)
    return Counter(float(x) if "." in x else int(x) for x in RE_NUMBER.findall(t))


def medical_terms(text: str) -> dict[str, set[str]]:
    """Drugs, tests and diagnoses named in `text` (lexicon entries and suffix-rule cores)."""
    drugs = {d for d in DRUGS if d in text} | {m.group(0) for m in RE_DRUG.finditer(text)}
    tests = {t for t in TESTS if t in text}
    diags = {d for d in DIAGNOSES if d in text} | {m.group(0) for m in RE_DIAG.finditer(text)
                                                   if m.group(0) not in GENERIC_DIAG}
    # A term inside a longer one (头孢 in 头孢克肟胶囊) needs no separate check.
    def prune(s: set[str]) -> set[str]:
        return {x for x in s if not any(x != y and x in y for y in s)}

    return {"drugs": prune(drugs), "tests": prune(tests), "diagnoses": prune(diags)}


def chinese_ratio(text: str) -> float:
    han = sum(1 for c in text if "\u4e00" <= c <= "\u9fff")
    latin = sum(1 for c in text if c.isascii() and c.isalpha())
    return han / (han + latin) if han + latin else 0.0


def check_common(text: str, *, min_chars: int, max_chars: int, min_chinese: float = 0.6) -> list[str]:
    """Checks every generated reply gets: non-empty, length, no AI phrasing, Chinese."""
    reasons = []
    if not text.strip():
        return ["empty"]
    if len(text) < min_chars:
        reasons.append(f"too short: {len(text)} chars < {min_chars}")
    if len(text) > max_chars:
        reasons.append(f"too long: {len(text)} chars > {max_chars}")
    m = RE_AI.search(text)
    if m:
        reasons.append(f"AI phrasing: 「{m.group(0)}」")
    ratio = chinese_ratio(text)
    if ratio < min_chinese:
        reasons.append(f"not Chinese: {ratio:.0%} Chinese characters < {min_chinese:.0%}")
    return reasons


def check_rewrite(original: str, rewrite: str, context: str = "", *, min_ratio: float = 0.8,
                  max_ratio: float = 6.0, max_chars: int = 2000) -> list[str]:
    """Reasons `rewrite` is not a faithful rewrite of `original` (empty list = it passes).

    `context` is the rest of the conversation: a number the patient gave may be repeated.
    """
    reasons = check_common(rewrite, min_chars=max(10, int(len(original) * min_ratio)),
                           max_chars=min(max_chars, int(len(original) * max_ratio) + 200))
    if reasons == ["empty"]:
        return reasons
    # List markers ("1." "2、") are not facts on either side: the rewrite need not keep the
    # original's (a word-for-word copy of a numbered list drops none), nor may it add its own
    # as facts; any number written in the original, a marker's included, may appear.
    orig_nums, new_nums = numbers(original, drop_list_marks=True), numbers(rewrite, drop_list_marks=True)
    # 1 is left out both ways: 一天三次 / 每天3次 and 每次一片 / 每次1片 say the same thing.
    missing = [str(n) for n in orig_nums if n not in new_nums and n != 1]
    if missing:
        reasons.append(f"missing numbers: {', '.join(missing)}")
    allowed = numbers(original) | numbers(context)
    added = [str(n) for n in new_nums if n not in allowed and n != 1]
    if added:
        reasons.append(f"new numbers: {', '.join(added)}")
    want = medical_terms(original)
    for kind, label in (("drugs", "missing drugs"), ("tests", "missing tests"), ("diagnoses", "missing diagnoses")):
        lost = sorted(t for t in want[kind] if t not in rewrite)
        if lost:
            reasons.append(f"{label}: {', '.join(lost)}")
    return reasons


def reason_category(reason: str) -> str:
    return reason.split(":", 1)[0]


# ---------------------------------------------------------------- the step


def _context(messages: list[dict], upto: int) -> str:
    names = {"user": "患者", "assistant": "医生", "system": "说明"}
    return "\n".join(f"{names[m['role']]}：{m['content']}" for m in messages[:upto])


def rewrite_file(src: str | Path, dst: str | Path, teacher: str | Any, *, journal: str | Path | None = None,
                 concurrency: int = 8, rate: float | None = None, retries: int = 3, max_new_tokens: int = 768,
                 temperature: float = 0.7, seed: int = 0, limit: int | None = None, on_error: str = "skip",
                 cache: str | Path = "shared", progress: bool = True,
                 teacher_name: str | None = None) -> dict[str, Any]:
    """Rewrite every doctor turn of `src` with `teacher` (a model spec or a Backend); returns a summary.

    Accepted conversations go to `dst`, rejected ones (with reasons) to `dst` + `.rejects.jsonl`,
    both written atomically from the journal (`dst` + `.journal.sqlite` unless given), so a
    killed run resumes where it stopped and a finished one re-exports at no cost.
    """
    before = fingerprint(src)  # what the step read, for the data card's lineage
    prompts = load_prompts()["rewrite"]
    backend = backend_for(teacher, retries=retries)
    name = teacher_name or (teacher if isinstance(teacher, str) else getattr(backend, "name", type(backend).__name__))
    dst = Path(dst)
    with JobRunner(journal or dst.with_name(dst.name + ".journal.sqlite"), concurrency=concurrency, rate=rate,
                   cache=cache_path(cache), progress=progress) as runner:
        runner.set_meta(step="rewrite", teacher=name, prompt_version=prompts["version"], input=str(src))
        client = runner.client(backend, name="teacher")
        params = GenParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)

        async def ask(messages: list[dict]) -> tuple[str, list[str]]:
            """The teacher's rewrite, and a reason when it was cut off at the token limit."""
            reply = await client.chat(messages, params)
            cut = [f"cut off: the reply reached --max-new-tokens {max_new_tokens}"] if cut_off(reply) else []
            return reply.strip(), cut

        async def work(key: str, conv: Conversation) -> dict:
            out = [dict(m) for m in conv.messages]
            attempts = 0
            for i, m in enumerate(conv.messages):
                if m["role"] != "assistant":
                    continue
                context = _context(conv.messages, i)
                base = [{"role": "system", "content": prompts["system"]},
                        {"role": "user", "content": prompts["user"].format(context=context, original=m["content"])}]
                text, cut = await ask(base)
                attempts += 1
                reasons = cut + check_rewrite(m["content"], text, context)
                first_reasons = reasons
                if reasons:  # one retry, told what was wrong
                    retry = base + [{"role": "assistant", "content": text},
                                    {"role": "user", "content": prompts["retry"].format(reasons="；".join(reasons), previous=text)}]
                    text, cut = await ask(retry)
                    attempts += 1
                    reasons = cut + check_rewrite(m["content"], text, context)
                if reasons:
                    return {"status": "rejected", "_id": conv.id, "source": conv.source, "turn": i,
                            "reasons": reasons, "first_reasons": first_reasons,
                            "original": m["content"], "rewrite": text, "teacher": name, "prompt_version": prompts["version"]}
                out[i] = {"role": "assistant", "content": text}
            record = Conversation(conv.id, conv.source, out, dict(conv.extra)).to_record()
            record["provenance"] = {"source_id": conv.id, "teacher": name, "prompt_version": prompts["version"],
                                    "step": "rewrite", "teacher_calls": attempts,
                                    "retried": attempts > sum(1 for m in conv.messages if m["role"] == "assistant")}
            return {"status": "accepted", "record": record}

        errors = error_sink(on_error)

        def items():
            for n, conv in enumerate(iter_conversations(src, errors)):
                if limit is not None and n >= limit:
                    return
                yield conv.id, conv

        run = runner.run(items(), work, desc="rewrite")
        summary = export(runner, dst)
        failed_file = dst.with_name(dst.name + ".failed.jsonl")
        runner.write_failures(failed_file, lambda k, conv: {"record": conv.to_record()})
    summary.update({"step": "rewrite", "input": str(src), "teacher": name, "prompt_version": prompts["version"],
                    **job_outcome(run, failed_file), "skipped_already_done": run["skipped"], "teacher_calls": run["calls"],
                    "cache_hits": run["cache_hits"], "prompt_tokens": run["prompt_tokens"],
                    "completion_tokens": run["completion_tokens"], "tokens_estimated": all(
                        c["tokens_estimated"] for c in run["clients"].values()),
                    "bad_records": len(errors or []), "errors": [str(e) for e in (errors or [])[:20]],
                    "limit": limit})
    return stamp(summary, [before], dst)


def export(runner, dst: Path) -> dict[str, Any]:
    """Write accepted records and rejects from a journal; count rejects by reason."""
    accepted = rejected = retried_ok = 0
    by_reason: Counter = Counter()
    rejects_path = dst.with_name(dst.name + ".rejects.jsonl")
    with atomic_writer(dst) as f, atomic_writer(rejects_path) as g:
        for _, result in runner.results():
            if result["status"] == "accepted":
                accepted += 1
                retried_ok += bool(result["record"]["provenance"].get("retried"))
                f.write(json.dumps(result["record"], ensure_ascii=False) + "\n")
            else:
                rejected += 1
                by_reason.update({reason_category(r) for r in result["reasons"]})
                g.write(json.dumps({k: v for k, v in result.items() if k != "status"}, ensure_ascii=False) + "\n")
    return {"output": str(dst), "rejects": str(rejects_path), "accepted": accepted, "rejected": rejected,
            "accepted_after_retry": retried_ok, "rejected_by_reason": dict(by_reason.most_common()),
            "journal": str(runner.journal)}
