"""De-identification on the project's written test set, plus the validators and the file step."""

import json
from collections import Counter
from pathlib import Path

from discmed.data.scrub import PLACEHOLDER, id_checksum_ok, luhn_ok, scrub_file, scrub_text

CASES = Path(__file__).resolve().parents[1] / "discmed" / "data" / "testsets" / "scrub_cases.jsonl"


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
            meds += 1
            altered += m not in out
    recall, altered_rate = found / ids, altered / meds
    print(f"\nscrub test set: {len(rows)} lines, {ids} identifiers, recall {recall:.4f} "
          f"(right type {typed / ids:.4f}), missed by type {dict(missed)}; "
          f"{meds} medical numbers, altered {altered_rate:.4f}")
    assert ids >= 300 and meds >= 400
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
    assert n_ids >= 300 and n_meds >= 300 and len(per_type) == len(PLACEHOLDER) - 2  # all but long_number, org
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
        "住院号：ZY20230456，床号12": "住院号：[病历号]，床号12",
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
