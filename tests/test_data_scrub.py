"""De-identification on the project's written test set, plus the validators and the file step."""

import json
from collections import Counter
from pathlib import Path

from discmed.data.idrules import PLACEHOLDER, id_checksum_ok, luhn_ok
from discmed.data.scrub import scrub_file, scrub_text

CASES = Path(__file__).resolve().parents[1] / "discmed" / "data" / "testsets" / "scrub_cases.jsonl"


def _now_identifier(value: str) -> str | None:
    """The part of an older set's "medical value" that issue 24's taxonomy makes an identifier:
    an absolute date (2023年5月12日开始发病: Safe Harbor removes dates; the relative timeline
    stays) or a bed (12床). Such values are checked as identifiers: that part must be gone."""
    from discmed.data.deid import RE_BED, RE_DATE

    m = RE_DATE.search(value) or RE_BED.search(value)
    return m.group(0) if m else None


def test_scrub_test_set_recall_and_medical_numbers():
    rows = [json.loads(line) for line in CASES.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 200
    ids = found = typed = meds = altered = 0
    missed: Counter = Counter()
    for r in rows:
        out, _ = scrub_text(r["text"])
        for ident in r["identifiers"]:
            ids += 1
            if ident["text"] in out:
                missed[ident["type"]] += 1
            else:
                found += 1
                typed += PLACEHOLDER[ident["type"]] in out
        for m in r["medical"]:
            if (part := _now_identifier(m)) is not None:
                assert part not in out, (part, out)
                continue
            meds += 1
            altered += m not in out
    recall, altered_rate = found / ids, altered / meds
    print(f"\nscrub test set: {len(rows)} lines, {ids} identifiers, recall {recall:.4f} "
          f"(right type {typed / ids:.4f}), missed by type {dict(missed)}; "
          f"{meds} medical numbers, altered {altered_rate:.4f}")
    assert ids >= 300 and meds >= 430
    assert recall >= 0.99
    assert altered_rate <= 0.01


def test_examples():
    out, counts = scrub_text("王医生您好，我电话138-1234-5678，微信号abc_12345，阿莫西林0.5g每日3次，WBC 5.0×10^9/L")
    assert out == "[姓名]医生您好，我电话[电话]，微信号[微信号]，阿莫西林0.5g每日3次，WBC 5.0×10^9/L"
    assert counts == Counter({"name": 1, "phone": 1, "wechat": 1})
    # Generic places are not hospitals; thanks are not names.
    assert scrub_text("当地医院说是胃炎，谢谢医生")[0] == "当地医院说是胃炎，谢谢医生"
    assert scrub_text("我在北京协和医院看过")[0] == "我在[医院]看过"
    assert scrub_text("住在北京市朝阳区建国路88号3栋2单元501室")[0] == "住在[地址]"


def test_validators():
    assert id_checksum_ok("11010519491231002X")
    assert not id_checksum_ok("110105194912310021")
    assert not id_checksum_ok("110105194913310026")  # month 13
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    # An 18-digit number with a bad checksum is not called an ID, but still removed as a long number.
    out, counts = scrub_text("编号110105194912310021")
    assert out == "编号[号码]" and counts == Counter({"long_number": 1})


def test_scrub_file_counts_and_bad_lines(tmp_path):
    src = tmp_path / "in.jsonl"
    lines = [
        {"_id": "a", "source": "t", "conversation": [{"role": "user", "content": "我是患者李明，电话13912345678"},
                                                     {"role": "assistant", "content": "李明您好，布洛芬0.2g"}]},
        "not json",
        {"_id": "b", "source": "t", "conversation": [{"role": "user", "content": "发烧3天，38.5℃"},
                                                     {"role": "assistant", "content": "多喝水"}]},
    ]
    src.write_text("\n".join(x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in lines) + "\n",
                   encoding="utf-8")
    summary = scrub_file(src, tmp_path / "out.jsonl", progress=False, report=tmp_path / "report.json")
    assert summary["records"] == 2 and summary["bad_records"] == 1 and summary["records_changed"] == 1
    assert summary["replaced"] == {"name": 2, "phone": 1}
    assert summary["errors"][0].startswith(f"{src}:2: json:")
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert out[0]["conversation"][0]["content"] == "我是患者[姓名]，电话[电话]"
    assert out[0]["scrub"] == {"name": 2, "phone": 1}
    assert out[0]["conversation"][1]["content"] == "[姓名]您好，布洛芬0.2g"
    assert out[1]["conversation"][0]["content"] == "发烧3天，38.5℃"
    assert json.loads((tmp_path / "report.json").read_text())["replaced_total"] == 3

    import pytest

    from discmed.chat import DataError

    with pytest.raises(DataError, match=r"in.jsonl:2: json"):
        scrub_file(src, tmp_path / "out2.jsonl", on_error="stop", progress=False)
    assert not (tmp_path / "out2.jsonl").exists()


# -- the sets written for issue 14: identifiers of every type, medicine that must survive ----

DATA = Path(__file__).parent / "data"


def _score(name: str) -> tuple[dict, float, int, int, list]:
    rows = [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines()]
    hit, total, lost = Counter(), Counter(), []
    meds = 0
    for r in rows:
        out, _ = scrub_text(r["text"])
        for ident in r["identifiers"]:
            total[ident["type"]] += 1
            hit[ident["type"]] += ident["text"] not in out
        for m in r["medical"]:
            if (part := _now_identifier(m)) is not None:
                assert part not in out, (part, out)
                continue
            meds += 1
            if m not in out:
                lost.append((m, out))
    removed = sum(hit.values()) / sum(total.values())
    print(f"\n{name}: identifiers fully removed {removed:.3f} of {sum(total.values())} "
          f"({ {k: f'{hit[k]}/{total[k]}' for k in sorted(total)} }); medical values intact "
          f"{1 - len(lost) / meds:.4f} of {meds}")
    return {k: hit[k] / total[k] for k in total}, removed, sum(total.values()), meds, lost


def test_dev_set_per_type_and_medicine_intact():
    per_type, removed, n_ids, n_meds, lost = _score("scrub_dev.jsonl")
    # issue 14's twelve kinds (PLACEHOLDER has more since issue 24's taxonomy)
    assert n_ids >= 300 and n_meds >= 300 and set(per_type) == {
        "email", "url", "id_card", "bank_card", "phone", "wechat", "qq", "name", "hospital", "address", "record_number",
        "plate"}
    assert all(v >= 0.95 for v in per_type.values()), per_type
    assert removed >= 0.97
    assert 1 - len(lost) / n_meds >= 0.99, lost


def test_held_out_fifth():
    per_type, removed, _, n_meds, lost = _score("scrub_heldout.jsonl")
    assert removed >= 0.95 and 1 - len(lost) / n_meds >= 0.99, (per_type, lost)


def test_new_identifier_kinds():
    cases = {
        "我婆婆王秀英今年68岁，左下腹疼": "我婆婆[姓名]今年68岁，左下腹疼",  # after a family word, by NER
        "欧阳娜娜说孩子发烧39度": "[姓名]说孩子发烧39度",  # a compound surname at the start
        "住院号：ZY20230456，床号12": "住院号：[病历号]，床号[床号]",  # a bed identifies (issue 24)
        "医保卡号 1234567890 能报销胰岛素吗": "医保卡号 [病历号] 能报销胰岛素吗",
        "车牌京A·12345停在急诊门口": "车牌[车牌号]停在急诊门口",
        "身份证 1101 0519 4912 3100 2X": "身份证 [身份证号]",  # 4-4-4-4-2 grouping
        "住在望京西园三区312号楼2单元1103，老人脑梗": "住在[地址]，老人脑梗",
        "在北医三院和省人医都看过": "在[医院]和[医院]都看过",
        "我在华西看过消化内科": "我在[医院]看过消化内科",
        "我婆婆刘桂芬最近老是头晕": "我婆婆[姓名]最近老是头晕",  # 桂芬 is a name, 他莫昔芬 a drug
        "妞妞发烧39度": "[姓名]发烧39度",  # a doubled-character nickname opening the message
        "身份证号 4401 0619 9001 0112 3X": "身份证号 [身份证号]",  # after its cue, even with a bad checksum
    }
    for text, want in cases.items():
        assert scrub_text(text)[0] == want, text
    # The medicine stays: eponymous and place-named diseases, drugs, brands, anatomy, specialties.
    for text in ["桥本甲状腺炎，TSH 8.6", "帕金森病吃多巴丝肼", "香港脚涂特比萘芬", "华法林和阿司匹林", "右肺上叶磨玻璃结节8mm",
                 "云南白药能止血吗", "同仁堂的六味地黄丸", "左下腹隐痛，去消化内科", "德国麻疹就是风疹吗",
                 "他莫昔芬10mg每日两次", "季德胜蛇药片被蛇咬能用吗", "田七粉能降血脂吗"]:
        assert scrub_text(text)[0] == text, text


def test_rules_alone_when_ner_is_off():
    text = "我婆婆王秀英今年68岁，电话13812345678"
    assert scrub_text(text, ner=False)[0] == "我婆婆王秀英今年68岁，电话[电话]"  # no cue word: only NER finds her


# -- precision: what the reviewer found replaced on the real DISC sample, and more like it ----

def test_medical_terms_and_common_words_are_not_names_or_hospitals():
    from discmed.chat import Conversation
    from discmed.data.scrub import scrub_record

    # The reviewer's three, in their real contexts (DISC sample records 01-32300, 01-65864, 01-134938).
    conv = Conversation("01-32300", "MedDialog", [
        {"role": "user", "content": "髋关节结核术后切口一直流脓，活动受限。"},
        {"role": "assistant", "content": "根据您的描述，您可能形成了窦道。针对结核的窦道需要规范抗结核治疗。"},
        {"role": "user", "content": "我想了解一下窦道的治疗方法和费用。"},
        {"role": "assistant", "content": "窦道的治疗方法主要是手术清创，但价格因地区和医院而异，我无法给出准确数字。"}], {})
    out, changes = scrub_record(conv)
    assert [m["content"] for m in out.messages] == [m["content"] for m in conv.messages], changes
    assert changes == []
    for text in ["孩子咳嗽也不好，一晚上没安生。今天又去挂了急诊",
                 # more of the same kinds, seen on the real sample: a disease, drugs, a profession,
                 # a misspelled drug, a public body, a city where care happened
                 "左眼青光眼、白内障，后又患青光眼", "服抗肿瘤药物索拉菲尼。", "开的思诺思和米氮平，这两种药吃了一个月",
                 "建议带母亲去专业的心理咨询师或心理医生那里评估", "继续服用消心痛、力普妥、阿思匹林和丹参滴丸等药物",
                 "根据世界卫生组织的最新标准，成人血压≥140/90即为高血压", "吃药没效，今年有去新乡看看",
                 "一般来说，激光治疗的价格因地区和医院而异"]:
        assert scrub_text(text)[0] == text, text
    # and the identifiers in the same records still go
    assert scrub_text("请张大夫帮帮忙！孩子咳嗽也不好，一晚上没安生")[0] == "请[姓名]大夫帮帮忙！孩子咳嗽也不好，一晚上没安生"
    assert scrub_text("在脑科医院看过尚晓芳大夫，开的思诺思和米氮平")[0] == "在脑科医院看过[姓名]大夫，开的思诺思和米氮平"
    assert scrub_text("去过翔安区同民医院和厦门市第一医院就诊过")[0] == "去过[医院]和[医院]就诊过"


def test_word_probe_written_before_the_fix():
    """tests/data/scrub_words.jsonl: 45 texts of medical terms and common words (drugs, eponyms,
    generic 'X和医院', public bodies) and 40 real common names, written before the precision
    fix and not tuned on (benchmarks/RESULTS.md has the before/after figures)."""
    per_type, removed, n_ids, n_meds, lost = _score("scrub_words.jsonl")
    assert n_ids == 40 and n_meds == 59
    assert lost == []  # before the fix: 8 of 59 altered
    assert removed >= 0.975  # 39/40, as before the fix: 杜鹃 (a flower as much as a name) is missed
    # Names that are also dictionary words: taken with a cue around them, or when the tagger is sure.
    for text, want in {"王平昨天晚上开始发烧": "[姓名]昨天晚上开始发烧", "我同事汪洋也得过这个病": "我同事[姓名]也得过这个病",
                       "我叫李娜，今年32岁": "我叫[姓名]，今年32岁"}.items():
        assert scrub_text(text)[0] == want


def test_changes_file_says_what_was_replaced_where_and_by_what(tmp_path):
    src = tmp_path / "in.jsonl"
    rows = [{"_id": "r1", "source": "MedDialog", "conversation": [
                {"role": "user", "content": "我是患者李明，电话13912345678，在北京协和医院看过"},
                {"role": "assistant", "content": "李明您好，建议复查血常规"}]},
            {"_id": "r2", "source": "MedDialog", "conversation": [
                {"role": "user", "content": "头疼三天"}, {"role": "assistant", "content": "多休息"}]}]
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    s = scrub_file(src, tmp_path / "out.jsonl", progress=False, ner=False)  # the rules: each change names its own
    changes = [json.loads(x) for x in (tmp_path / "out.jsonl.changes.jsonl").read_text(encoding="utf-8").splitlines()]
    assert s["changes"] == str(tmp_path / "out.jsonl.changes.jsonl") and s["changes_count"] == len(changes) == 4
    assert s["replaced_total"] == 4 and sum(s["replaced_by_rule"].values()) == 4
    assert [(c["_id"], c["message"], c["text"], c["type"], c["replacement"], c["rule"]) for c in changes] == [
        ("r1", 0, "李明", "name", "[姓名]", "rule:name_cue"),
        ("r1", 0, "13912345678", "phone", "[电话]", "rule:phone_mobile"),
        ("r1", 0, "北京协和医院", "hospital", "[医院]", "rule:hospital_abbr"),
        ("r1", 1, "李明", "name", "[姓名]", "rule:name_repeat")]
    # Spans are offsets in the original message: replaying them gives the output.
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    for c in changes:
        assert rows[0]["conversation"][c["message"]]["content"][c["start"]:c["end"]] == c["text"]
    for i, m in enumerate(rows[0]["conversation"]):
        text = m["content"]
        for c in sorted((c for c in changes if c["message"] == i), key=lambda c: -c["start"]):
            text = text[:c["start"]] + c["replacement"] + text[c["end"]:]
        assert out[0]["conversation"][i]["content"] == text
    scrub_file(src, tmp_path / "ner.jsonl", progress=False)
    changes = [json.loads(x) for x in (tmp_path / "ner.jsonl.changes.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {(c["message"], c["text"], c["rule"]) for c in changes if c["type"] == "name"} == {
        (0, "李明", "ner:lac:PER"), (1, "李明", "ner:lac:PER")}


def test_a_replacement_that_swallows_another_is_one_change():
    from discmed.data.scrub import scrub_edits

    doc = scrub_edits("住在北京市朝阳区建国路88号3栋2单元501室")
    assert doc.text == "住在[地址]" and len(doc.changes) == 1
    s, e, kind, _ = doc.changes[0]
    assert (doc.original[s:e], kind) == ("北京市朝阳区建国路88号3栋2单元501室", "address")
