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
