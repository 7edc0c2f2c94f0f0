"""Simulated consultations without a model: cases, the patient's view, DISC's dialogue format,
and the leak check on planted leaks and on DISC's own released dialogues."""

import json

import pytest

from discmed.chat import DataError
from discmed.eval.consult import (
    END,
    Case,
    clean_patient,
    diagnosis_terms,
    dialogue_record,
    find_leaks,
    load_cases,
    patient_messages,
    read_dialogues,
    write_dialogues,
)


@pytest.fixture(scope="module")
def eval_dir(shared_data):
    return shared_data / "disc-medllm" / "eval"


@pytest.fixture(scope="module")
def cases(eval_dir):
    return {name: load_cases(name, eval_dir / "samples") for name in ("cmb-clin", "cmd", "cmid")}


def test_sets_load(cases):
    assert [len(cases[s]) for s in ("cmb-clin", "cmd", "cmid")] == [73, 120, 120]
    cmb = cases["cmb-clin"][0]
    assert cmb.source == "CMB-clin" and cmb.kind == "case"
    assert cmb.opening.startswith("我是病人的家属") and cmb.context.startswith("现病史")
    cmd = cases["cmd"][0]
    assert cmd.source == "CMD" and cmd.dataset_info == {"department": "儿科"}
    assert cmd.hidden.startswith("你好,可能是尿布皮炎") and cmd.context == cmd.opening
    assert cases["cmid"][0].dataset_info == {"label_4class": "病症", "label_36class": "病因"}


def test_discs_released_dialogues_are_our_format(cases, eval_dir, tmp_path):
    """Rebuilding each DISC dialogue from its case gives DISC's record, and writing DISC's
    files back gives their bytes: the two are interchangeable."""
    for name in ("cmb-clin", "cmd", "cmid"):
        by_id = {c.id: c for c in cases[name]}
        path = eval_dir / "dialogues" / f"gpt-4_{name}.json"
        released = read_dialogues(path)
        for record in released:
            if record["id"] in by_id:  # gpt-4's CMD file has one case the samples lack
                assert dialogue_record(by_id[record["id"]], "gpt-4", record["conversation"]) == record
                assert record["conversation"][0]["content"] == by_id[record["id"]].opening
        write_dialogues(released, tmp_path / path.name)
        assert (tmp_path / path.name).read_bytes() == path.read_bytes()


def test_patient_sees_the_case_but_not_the_hidden_answer(cases):
    conv = [{"role": "patient", "content": cases["cmd"][0].opening}, {"role": "doctor", "content": "宝宝多大了？"}]
    system, user = patient_messages(cases["cmd"][0], conv)
    assert system["role"] == "system" and user["role"] == "user"
    assert cases["cmd"][0].opening in system["content"] and END in system["content"]
    assert "尿布皮炎" not in system["content"] + user["content"]
    assert user["content"].endswith("不要加“病人：”之类的前缀。") and "医生：宝宝多大了？" in user["content"]
    system, _ = patient_messages(cases["cmb-clin"][0], conv[:1])
    assert "右下腹可触及一包块" in system["content"]  # the CMB-clin patient knows its whole case


def test_clean_patient():
    assert clean_patient("病人：我肚子疼了两天。\n医生：还有别的症状吗？") == ("我肚子疼了两天。", False)
    assert clean_patient(f"好的，谢谢医生。{END}") == ("好的，谢谢医生。", True)
    assert clean_patient(END) == ("", True)


def test_bad_case_file_names_record_and_field(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps([{"id": "a", "question": "头疼怎么办"}, {"id": "b", "question": ""}], ensure_ascii=False))
    with pytest.raises(DataError) as e:
        load_cases(str(path))
    assert str(e.value) == f"{path}: [1].question: missing or empty"
    path.write_text(json.dumps([{"id": "a", "case": "现病史…"}], ensure_ascii=False))
    with pytest.raises(DataError, match=r"\[0\]\.first_question: missing or empty"):
        load_cases(str(path))
    with pytest.raises(FileNotFoundError, match="neither a set name"):
        load_cases(str(tmp_path / "nope.json"))


def _conv(*turns):
    return [{"role": r, "content": c} for r, c in zip(["patient", "doctor"] * 5, turns, strict=False)]


def test_planted_case_text_leak(cases):
    case = cases["cmb-clin"][0]
    # copied exam findings, reformatted punctuation does not hide it
    leaked = _conv(case.opening, "有没有做过检查？", "做了B超，沿腹股沟纵切可见一多层分布的混合回声区 宽窄不等，远端膨大。")
    found = find_leaks(leaked, case)
    assert [x["kind"] for x in found] == ["case_text"]
    assert found[0]["turn"] == 2 and "多层分布的混合回声区宽窄不等远端膨大" in found[0]["text"]
    # the same facts in a layperson's words are not a leak
    lay = _conv(case.opening, "有没有做过检查？", "做了个B超，医生说那里有一团东西，一头大一头小。")
    assert find_leaks(lay, case) == []
    # repeating what the doctor already said is not a leak either
    echo = _conv(case.opening, "B超可见一多层分布的混合回声区，宽窄不等，远端膨大，对吗？", "对，可见一多层分布的混合回声区，宽窄不等，远端膨大。")
    assert find_leaks(echo, case) == []


def test_planted_diagnosis_leak(cases):
    case = cases["cmd"][0]  # the hidden answer says 尿布皮炎
    assert diagnosis_terms(case) == ["尿布皮炎"]
    leaked = _conv(case.opening, "孩子多大了？", "一个半月。我怀疑是尿布皮炎，对吗？")
    assert find_leaks(leaked, case) == [{"turn": 2, "kind": "diagnosis", "text": "尿布皮炎"}]
    told = _conv(case.opening, "可能是尿布皮炎，注意勤换尿布。", "尿布皮炎要擦药吗？")
    assert find_leaks(told, case) == []
    # a made-up diagnosis the patient never had
    invented = _conv(case.opening, "孩子多大了？", "一个半月，上周已经被确诊为睾丸炎了。")
    assert find_leaks(invented, case) == [{"turn": 2, "kind": "diagnosis", "text": "睾丸炎"}]
    # a diagnosis written in the patient's own question is known to it
    own = Case("x", "CMID", "我有糖尿病，能吃西瓜吗？", "我有糖尿病，能吃西瓜吗？", "question")
    assert find_leaks(_conv(own.opening, "血糖控制得怎么样？", "我确诊糖尿病三年了，血糖还行。"), own) == []


def test_explicit_diagnosis_field(tmp_path):
    path = tmp_path / "cases.json"
    path.write_text(json.dumps([{"id": "1", "question": "胸口闷，喘不上气", "diagnosis": ["心绞痛"]}], ensure_ascii=False))
    case = load_cases(str(path))[0]
    assert case.source == "cases" and case.diagnoses == ["心绞痛"]
    assert find_leaks(_conv(case.opening, "多久了？", "两天了，是不是心绞痛？"), case)[0]["kind"] == "diagnosis"


def test_leak_rate_on_discs_own_dialogues(cases, eval_dir):
    """DISC's GPT-3.5 patients: the check flags a minority of CMB-clin consultations (copied
    exam reports, a guessed diagnosis) and almost none of CMD / CMID."""
    flagged = {}
    for name in ("cmb-clin", "cmd", "cmid"):
        by_id = {c.id: c for c in cases[name]}
        dialogues = [d for d in read_dialogues(eval_dir / "dialogues" / f"gpt-4_{name}.json") if d["id"] in by_id]
        flagged[name] = [d["id"] for d in dialogues if find_leaks(d["conversation"], by_id[d["id"]])]
    assert 3 <= len(flagged["cmb-clin"]) <= 12
    assert "19" in flagged["cmb-clin"]  # "如果确诊是肾癌…" before the doctor said 肾癌
    assert len(flagged["cmd"]) <= 2 and len(flagged["cmid"]) <= 3


def test_cli_bad_set_is_a_clear_error(tmp_path):
    import typer
    from typer.testing import CliRunner

    from discmed.eval.cli import register

    app = typer.Typer()
    register(app)
    bad = tmp_path / "cases.json"
    bad.write_text('[{"id": "1", "question": "咳嗽三天"}, {"id": "1", "question": "发烧"}]', encoding="utf-8")
    result = CliRunner().invoke(app, ["consult", "--doctor", "tiny", "--patient", "tiny", "--set", str(bad), "--json"])
    assert result.exit_code == 2
    assert json.loads(result.output.strip().splitlines()[-1]) == {"error": f"{bad}: [1].id: duplicate id '1'"}
