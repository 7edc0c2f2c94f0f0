"""Exam task YAMLs and loaders: each format in its documented shape, and malformed files.

The real CMMLU medical files come from ../shared/data/cmmlu; the other formats are written here
as small files in the shapes ../shared/data/README.md documents (the questions are written for
discmed, not copied from the datasets).
"""

import json

import pytest

from discmed.chat import DataError
from discmed.eval.loaders import builtin_tasks, load_questions, load_task
from discmed.eval.mcq import build_prompt, choice_strings, pick_shots

MLEC = [
    {
        "qid": "q-001",
        "qtype": "A1型题",
        "qtext": "下列哪项是维生素C缺乏的典型表现（　　）。",
        "qimage": "",
        "options": {"A": "夜盲", "B": "牙龈出血", "C": "脚气病", "D": "佝偻病", "E": "口角炎"},
        "answer": "B",
    },
    {
        "qid": "q-002",
        "qtype": "A3/A4型题",
        "qtext": "患者男，60岁，胸骨后压榨样疼痛2小时，首选检查是（　　）。",
        "qimage": None,
        "options": {"A": "胸片", "B": "心电图", "C": "腹部B超", "D": "头颅CT", "E": "血常规"},
        "answer": ["B"],
    },
    {
        "qid": "q-003",
        "qtype": "B1型题",
        "qtext": "属于暖色调的舌象是（　　）。",
        "qimage": "",
        "options": {"A": "淡白舌", "B": "红舌", "C": "青紫舌", "D": "淡红舌", "E": "胖大舌"},
        "answer": "Ｂ",
    },
]


def write_task(tmp_path, **fields):
    import yaml

    p = tmp_path / "task.yaml"
    p.write_text(yaml.safe_dump(fields, allow_unicode=True), encoding="utf-8")
    return load_task(str(p))


def test_builtin_tasks_all_load():
    names = builtin_tasks()
    assert {"cmmlu", "mlec-qa", "cmb-exam", "cmexam", "medqa-mainland", "medmcqa"} <= set(names)
    for n in names:
        assert load_task(n).name == n


def test_cmmlu_real_files(shared_data):
    task = load_task("cmmlu")
    qs = load_questions(task, "test", shared_data / "cmmlu")
    assert len(qs) == 1815
    assert [q.subset for q in qs][:1] == ["anatomy"] and len({q.subset for q in qs}) == 9
    first = qs[0]
    assert first.question == "女性生殖腺是" and first.options["A"] == "卵巢" and first.answer == "A"
    assert len({q.id for q in qs}) == 1815
    dev = load_questions(task, "dev", shared_data / "cmmlu")
    assert len(dev) == 45


def test_cmmlu_prompt_matches_lm_eval_template(shared_data):
    task = load_task("cmmlu")
    q = load_questions(task, "test", shared_data / "cmmlu", ["anatomy"])[0]
    assert build_prompt(q, task, []) == (
        "以下是关于解剖学的单项选择题，请直接给出正确答案的选项。\n\n"
        "女性生殖腺是\nA. 卵巢\nB. 前庭大腺\nC. 前庭球\nD. 乳腺\n答案："
    )
    assert choice_strings(q, task) == ["A", "B", "C", "D"]


def test_few_shot_prompt_uses_first_k_dev_questions_of_the_subset(shared_data):
    task = load_task("cmmlu")
    data = shared_data / "cmmlu"
    q = load_questions(task, "test", data, ["virology"])[0]
    dev = load_questions(task, "dev", data)
    shots = pick_shots(q, dev, 2)
    assert [s.subset for s in shots] == ["virology", "virology"]
    prompt = build_prompt(q, task, shots)
    parts = prompt.split("\n\n")
    assert parts[0] == "以下是关于病毒学的单项选择题，请直接给出正确答案的选项。"
    assert (
        parts[1]
        == build_prompt(shots[0], task, [])[
            len(task.description.format(subject="病毒学", kind="单项选择题")) :
        ]
        + shots[0].answer
    )
    assert parts[1].endswith("答案：" + shots[0].answer) and parts[2].endswith("答案：" + shots[1].answer)
    assert parts[3].endswith("答案：") and parts[3].startswith(q.question)
    with pytest.raises(ValueError, match="fewer than --shots 6"):
        pick_shots(q, dev, 6)


def test_data_dir_is_required_and_env_override(tmp_path, monkeypatch, shared_data):
    task = load_task("cmmlu")
    monkeypatch.delenv("DISCMED_DATA_CMMLU", raising=False)
    with pytest.raises(ValueError, match="--data-dir or set DISCMED_DATA_CMMLU"):
        load_questions(task)
    monkeypatch.setenv("DISCMED_DATA_CMMLU", str(shared_data / "cmmlu"))
    assert len(load_questions(task, subsets=["genetics"])) > 100
    with pytest.raises(ValueError, match="no subset 'dentistry'"):
        load_questions(task, subsets=["dentistry"])


@pytest.mark.parametrize("layout", ["array", "lines"])
def test_mlecqa_array_or_lines_and_answer_shapes(tmp_path, layout):
    text = (
        json.dumps(MLEC, ensure_ascii=False, indent=2)
        if layout == "array"
        else "\n".join(json.dumps(r, ensure_ascii=False) for r in MLEC)
    )
    (tmp_path / "Clinic_test.json").write_text(text, encoding="utf-8")
    task = load_task("mlec-qa")
    qs = load_questions(task, "test", tmp_path, ["Clinic"])
    assert [q.answer for q in qs] == ["B", "B", "B"]
    assert [q.qtype for q in qs] == ["A1", "A3/A4", "B1"]
    assert qs[0].id == "Clinic/q-001" and len(qs[0].options) == 5
    assert build_prompt(qs[0], task, []).startswith("以下是中国国家医师资格考试临床医学的单项选择题")


def test_mlecqa_bad_record_names_file_line_and_field(tmp_path):
    bad = [dict(MLEC[0]), dict(MLEC[1], answer="F")]
    (tmp_path / "TCM_test.json").write_text(json.dumps(bad, ensure_ascii=False, indent=1), encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_questions(load_task("mlec-qa"), "test", tmp_path, ["TCM"])
    assert e.value.field == "answer" and e.value.path.endswith("TCM_test.json")
    # the second record starts on the line after the first record's 15 lines
    text = (tmp_path / "TCM_test.json").read_text(encoding="utf-8").splitlines()
    assert text[e.value.line - 1].strip() == "{" and e.value.line > 2
    assert "not among the options ABCDE" in str(e.value)


def test_broken_json_lines_names_the_line(tmp_path):
    lines = [json.dumps(MLEC[0], ensure_ascii=False), '{"qid": "x", "qtext": "未闭合', json.dumps(MLEC[1])]
    (tmp_path / "CWM_test.json").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataError, match=r"CWM_test.json:2: json"):
        load_questions(load_task("mlec-qa"), "test", tmp_path, ["CWM"])
    (tmp_path / "CWM_test.json").write_text(
        "\n".join([lines[0], json.dumps(dict(MLEC[1], options={"A": "x", "C": "y"}))])
    )
    with pytest.raises(DataError, match=r"CWM_test.json:2: options: option letters AC are not consecutive"):
        load_questions(load_task("mlec-qa"), "test", tmp_path, ["CWM"])


CMB = [
    {
        "exam_type": "医师考试",
        "exam_class": "执业医师",
        "exam_subject": "内科学",
        "question": "急性心肌梗死最早升高的心肌标志物是",
        "answer": "D",
        "question_type": "单项选择题",
        "option": {"A": "CK-MB", "B": "肌钙蛋白I", "C": "LDH", "D": "肌红蛋白", "E": "AST"},
    },
    {
        "exam_type": "护理考试",
        "exam_class": "护师",
        "exam_subject": "基础护理",
        "question": "下列属于无菌技术操作原则的是",
        "answer": "ABD",
        "question_type": "多项选择题",
        "option": {
            "A": "操作前洗手",
            "B": "无菌物品与非无菌物品分开放置",
            "C": "无菌包过期后烘干再用",
            "D": "一份无菌物品仅供一位患者使用",
            "E": "取出的无菌物品未用可放回",
        },
    },
]


def test_cmb_exam_single_and_multiple(tmp_path):
    d = tmp_path / "CMB-val"
    d.mkdir()
    (d / "CMB-val-merge.json").write_text(json.dumps(CMB, ensure_ascii=False, indent=2), encoding="utf-8")
    task = load_task("cmb-exam")
    qs = load_questions(task, "test", tmp_path)
    assert [(q.subset, q.answer, q.multi) for q in qs] == [
        ("医师考试", "D", False),
        ("护理考试", "ABD", True),
    ]
    assert "多项选择题" in build_prompt(qs[1], task, [])
    combos = choice_strings(qs[1], task)
    assert len(combos) == 31 and combos[:6] == ["A", "B", "C", "D", "E", "AB"] and combos[-1] == "ABCDE"
    assert load_questions(task, "test", tmp_path, ["护理考试"])[0].answer == "ABD"
    # the test split ships without answers: refuse with a pointer to val
    (d / "CMB-val-merge.json").write_text(json.dumps([{k: v for k, v in CMB[0].items() if k != "answer"}]))
    with pytest.raises(DataError, match="answer: missing"):
        load_questions(task, "test", tmp_path)


def test_cmexam_csv(tmp_path):
    import csv

    rows = [
        [
            "小儿最常见的贫血类型是",
            "A 营养性缺铁性贫血\nB 再生障碍性贫血\nC 溶血性贫血\nD 失血性贫血\nE 巨幼细胞贫血",
            "A",
            "缺铁最常见。",
            "血液",
        ],
        [
            "属于糖皮质激素不良反应的有",
            "A 骨质疏松\nB 低血糖\nC 消化性溃疡\nD 向心性肥胖\nE 高血钾",
            "ACD",
            "",
            "内分泌",
        ],
        ["坏的一题", "A 只有一个选项\n乱写的一行", "A", "", ""],
    ]

    def write(rs):
        with (tmp_path / "test_with_annotations.csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["Question", "Options", "Answer", "Explanation", "Disease Group"])
            w.writerows(rs)

    task = load_task("cmexam")
    write(rows)
    # records 1 and 2 span five lines each, so the bad one starts on line 12
    with pytest.raises(
        DataError, match=r"test_with_annotations.csv:12: Options: cannot read option line '乱写的一行'"
    ):
        load_questions(task, "test", tmp_path)
    write(rows[:2])
    qs = load_questions(task, "test", tmp_path)
    assert [(q.answer, q.multi, len(q.options)) for q in qs] == [("A", False, 5), ("ACD", True, 5)]
    assert qs[0].options["E"] == "巨幼细胞贫血"


def test_medqa_mainland_jsonl(tmp_path):
    recs = [
        {
            "question": "治疗典型癫痫失神发作首选的药物是",
            "options": {"A": "苯妥英钠", "B": "乙琥胺", "C": "卡马西平", "D": "苯巴比妥", "E": "地西泮"},
            "answer": "乙琥胺",
            "meta_info": "药理学",
            "answer_idx": "B",
        },
        {
            "question": "缺碘引起的疾病是",
            "options": {"A": "佝偻病", "B": "坏血病", "C": "地方性甲状腺肿", "D": "夜盲症", "E": "贫血"},
            "answer": "地方性甲状腺肿",
            "meta_info": "预防医学",
        },
    ]
    (tmp_path / "test.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in recs), encoding="utf-8"
    )
    qs = load_questions(load_task("medqa-mainland"), "test", tmp_path)
    assert [q.answer for q in qs] == ["B", "C"] and qs[0].qtype == "药理学"
    recs[1]["answer"] = "不在选项里"
    (tmp_path / "test.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in recs), encoding="utf-8"
    )
    with pytest.raises(DataError, match=r"test.jsonl:2: answer_idx: missing, and `answer` matches no option"):
        load_questions(load_task("medqa-mainland"), "test", tmp_path)


def test_medmcqa_cop_base(tmp_path):
    recs = [
        {
            "question": "Drug of choice for absence seizures is",
            "opa": "Phenytoin",
            "opb": "Ethosuximide",
            "opc": "Carbamazepine",
            "opd": "Phenobarbitone",
            "cop": 2,
            "exp": "",
            "subject_name": "Pharmacology",
            "topic_name": "",
            "id": "m1",
            "choice_type": "single",
        },
        {
            "question": "Vitamin deficient in scurvy",
            "opa": "A",
            "opb": "B1",
            "opc": "C",
            "opd": "D",
            "cop": 3,
            "subject_name": "Biochemistry",
            "id": "m2",
            "choice_type": "single",
        },
    ]
    (tmp_path / "dev.json").write_text("\n".join(json.dumps(r) for r in recs), encoding="utf-8")
    task = load_task("medmcqa")
    qs = load_questions(task, "test", tmp_path)
    assert [q.answer for q in qs] == ["B", "C"]
    prompt = build_prompt(qs[0], task, [])
    assert prompt.startswith("The following are single-answer questions about medicine.") and prompt.endswith(
        "\nAnswer:"
    )
    assert choice_strings(qs[0], task) == [" A", " B", " C", " D"]
    task.cop_base = 0  # the Hugging Face copy counts from 0
    assert [q.answer for q in load_questions(task, "test", tmp_path)] == ["C", "D"]
    recs[1]["cop"] = 4
    (tmp_path / "dev.json").write_text("\n".join(json.dumps(r) for r in recs), encoding="utf-8")
    with pytest.raises(DataError, match=r"dev.json:2: cop: 4 is not an option index with cop_base 0"):
        load_questions(task, "test", tmp_path)


def test_generic_task_over_csv_and_jsonl(tmp_path):
    (tmp_path / "mine.csv").write_text(
        "qid,stem,o1,o2,o3,key,dept\n"
        "1,高血压患者首选的生活方式干预是,限盐,多喝咖啡,熬夜,A,心内科\n"
        "2,糖尿病足护理正确的是,赤脚行走,每日检查足部,热水泡脚,B,内分泌科\n",
        encoding="utf-8",
    )
    task = write_task(
        tmp_path,
        name="my-exam",
        format="generic",
        data_dir=".",
        test="mine.csv",
        subset_field="dept",
        description="以下是{subject}的{kind}。\n\n",
        fields={"id": "qid", "question": "stem", "options": ["o1", "o2", "o3"], "answer": "key"},
    )
    qs = load_questions(task)  # data_dir "." is relative to the YAML file
    assert [(q.id, q.subset, q.answer, list(q.options)) for q in qs] == [
        ("my-exam/1", "心内科", "A", ["A", "B", "C"]),
        ("my-exam/2", "内分泌科", "B", ["A", "B", "C"]),
    ]
    assert build_prompt(qs[1], task, []).startswith(
        "以下是内分泌科的单项选择题。\n\n糖尿病足护理正确的是\nA. 赤脚行走"
    )

    (tmp_path / "mine.jsonl").write_text(
        json.dumps(
            {"q": "发热首选的物理降温是", "choices": ["温水擦浴", "酒精擦浴全身"], "label": 0},
            ensure_ascii=False,
        )
        + "\n"
        + json.dumps({"q": "缺项", "choices": ["a", "b"], "label": 5})
        + "\n",
        encoding="utf-8",
    )
    task = write_task(
        tmp_path,
        name="mine2",
        format="generic",
        test="mine.jsonl",
        fields={"question": "q", "options": "choices", "answer": "label"},
    )
    with pytest.raises(DataError, match=r"mine.jsonl:2: label: index 5 outside the 2 options"):
        load_questions(task, data_dir=tmp_path)


def test_bad_task_yaml(tmp_path):
    (tmp_path / "t.yaml").write_text("format: cmmlu\ntest: x.csv\nshots: 3\n")
    with pytest.raises(DataError, match=r"t.yaml:0: shots: unknown key"):
        load_task(str(tmp_path / "t.yaml"))
    (tmp_path / "t.yaml").write_text("format: excel\ntest: x.csv\n")
    with pytest.raises(DataError, match="unknown format 'excel'"):
        load_task(str(tmp_path / "t.yaml"))
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        load_task("nope")


def test_cmmlu_missing_column(tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "anatomy.csv").write_text(
        ",Question,A,B,C,D\n0,问题,甲,乙,丙,丁\n", encoding="utf-8"
    )
    with pytest.raises(DataError, match=r"anatomy.csv:2: Answer: column missing"):
        load_questions(load_task("cmmlu"), "test", tmp_path, ["anatomy"])
