"""The judge's prompts, DISC's output format, pairwise verdicts and judge agreement."""

import json
import math

import pytest
import typer
from typer.testing import CliRunner

from discmed.eval.cli import register
from discmed.eval.consult import read_dialogues
from discmed.eval.judge import (
    CRITERIA,
    agreement,
    combine_verdicts,
    judgement_line,
    parse_scores,
    render_prompt,
)


@pytest.fixture(scope="module")
def eval_dir(shared_data):
    return shared_data / "disc-medllm" / "eval"


def test_disc_prompt_rebuilt_byte_for_byte(eval_dir):
    """Every released judgement's prompt is rebuilt exactly from its dialogue, except DISC's
    CMD runs of five models, whose prompts carry one stray blank line after the header."""
    dialogues = {}
    for path in (eval_dir / "dialogues").glob("*.json"):
        for d in read_dialogues(path):
            dialogues[(d["model"], d["source"], d["id"])] = d
    exact = quirk = 0
    for path in sorted((eval_dir / "gpt4_scores").glob("*/*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            released = json.loads(line)
            ours = render_prompt(dialogues[(released["model"], released["source"], released["id"])])
            if ours == released["prompt"]:
                exact += 1
            else:
                assert released["source"] == "CMD" and released["model"] != "DISC-MedLLM"
                assert ours.replace("[start of conversation]\n", "[start of conversation]\n\n") == released["prompt"]
                quirk += 1
    assert (exact, quirk) == (1879 - 601, 601)


def test_rubric_variants(eval_dir):
    cmb = render_prompt({"source": "CMB-clin", "conversation": [{"role": "patient", "content": "头疼"}]})
    cmd = render_prompt({"source": "CMD", "conversation": [{"role": "patient", "content": "头疼"}]})
    assert "a full score of five should be given" in cmd and "a full score of five" not in cmb
    assert cmb.endswith("[start of conversation]\npatient: 头疼\n[end of conversation]")
    zh = render_prompt({"source": "CMD", "conversation": [{"role": "patient", "content": "头疼"}]}, rubric="zh")
    assert "主动性" in zh and zh.endswith("[对话开始]\npatient: 头疼\n[对话结束]")
    with pytest.raises(ValueError, match="unknown rubric"):
        render_prompt({"source": "CMD", "conversation": []}, rubric="gpt")


def test_judgement_line_is_discs_format(eval_dir):
    released = json.loads((eval_dir / "gpt4_scores/cmid/result_gpt-4_cmid.jsonl").read_text().splitlines()[0])
    dialogue = next(d for d in read_dialogues(eval_dir / "dialogues/gpt-4_cmid.json") if d["id"] == released["id"])
    line = judgement_line(dialogue, released["scores"], render_prompt(dialogue))
    assert list(line) == ["id", "model", "source", "scores", "prompt"]
    assert line == released


@pytest.mark.parametrize(
    ("ab", "ba", "expected"),
    [
        ("A", "B", "x"),  # X wins shown first and shown second
        ("B", "A", "y"),
        ("A", "A", "tie"),  # each order prefers the first shown: position bias, no winner
        ("B", "B", "tie"),
        ("A", "tie", "x"),
        ("tie", "A", "y"),
        ("tie", "tie", "tie"),
        (None, "A", None),
    ],
)
def test_combine_verdicts(ab, ba, expected):
    assert combine_verdicts(ab, ba) == expected


def _scores(*values):
    return dict(zip(CRITERIA, map(float, values), strict=True))


def test_agreement_figures():
    a = [_scores(5, 5, 5, 5), _scores(4, 4, 4, 4), _scores(3, 4, 5, 5), _scores(2, 3, 4, 5)]
    same = {r.criterion: r for r in agreement(zip(a, a, strict=True))}
    assert same["Proactivity"].exact == 1.0 and same["Proactivity"].kappa == 1.0
    assert same["Proactivity"].spearman == pytest.approx(1.0)
    b = [_scores(4, 5, 5, 5), _scores(4, 4, 4, 4), _scores(3, 4, 5, 4), _scores(1, 3, 4, 5)]
    rows = {r.criterion: r for r in agreement(zip(a, b, strict=True))}
    p = rows["Proactivity"]
    assert (p.n, p.exact, p.within_one) == (4, 0.5, 1.0)
    # quadratic-weighted kappa by hand, weights (i-j)²/16: observed disagreement (1+1)/16 over
    # 4 items, expected from the marginals 48/16 over 4 → 1 - (2/16) / (48/16) = 5/6
    assert p.kappa == pytest.approx(5 / 6)
    assert rows["Accuracy"].exact == 1.0
    assert math.isnan(agreement(zip([_scores(4, 4, 4, 4)] * 2, [_scores(4, 4, 4, 4)] * 2, strict=True))[0].spearman)


def test_cli_agree_between_two_judges(eval_dir, tmp_path):
    """A second judge that scores DISC's CMB-clin dialogues one point lower on Proactivity
    whenever GPT-4 gave 5: agreement figures drop for that criterion only."""
    src = eval_dir / "gpt4_scores/cmb-clin/result_DISC-MedLLM_cmb-clin_v2.jsonl"
    lines = [json.loads(x) for x in src.read_text(encoding="utf-8").splitlines()]
    for line in lines:
        s = parse_scores(line["scores"])
        if s["Proactivity"] == 5:
            s["Proactivity"] = 4
        line["scores"] = "\n".join(f"{k}: {v:g}" for k, v in s.items())
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["agree", str(src), str(other), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert data["dialogues"] == 73
    assert data["criteria"]["Accuracy"]["exact"] == 1.0
    fives = sum(parse_scores(json.loads(x)["scores"])["Proactivity"] == 5 for x in src.read_text().splitlines())
    assert data["criteria"]["Proactivity"]["exact"] == pytest.approx(1 - fives / 73)
    assert data["criteria"]["Proactivity"]["within_one"] == 1.0


def _dialogues() -> list[dict]:
    turns = [("patient", "我头痛三天了，还有点发烧。"), ("doctor", "体温最高多少度？有没有咳嗽、流涕？"),
             ("patient", "38.2度，没有咳嗽。"), ("doctor", "多喝水，注意休息，超过三天不退烧请到医院就诊。")]
    return [{"id": str(i), "model": "doc", "source": "CMD",
             "conversation": [{"role": r, "content": c} for r, c in turns[: 2 + 2 * (i % 2)]]} for i in range(3)]


def test_json_mode_judge_always_gives_scores_in_process_and_over_http(tiny_model, tiny_server, tmp_path):
    """The tiny judge writes what it likes in free text; held to SCORES_SCHEMA it gives four
    integer scores 1–5 every time, and the same ones in process (hf backend) and through
    `discmed serve` (the openai backend's response_format): one sampler, one constraint."""
    from discmed.backend import GenParams, load_backend
    from discmed.backends.openai import OpenAIBackend
    from discmed.eval.judge import run_judge

    lines = {}
    for name, judge in (("hf", load_backend("tiny")), ("http", OpenAIBackend(f"{tiny_server}@tiny"))):
        out = tmp_path / f"{name}.jsonl"
        summary = run_judge(_dialogues(), judge, out, judge_spec=name, rubric="zh", params=GenParams(max_new_tokens=80),
                            cache="none", progress=False)  # fmt: skip
        assert (summary["judged"], summary["parsed"], summary["asked_again"]) == (3, 3, 0), summary
        lines[name] = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
        for line in lines[name]:
            assert line["judge"] == {"spec": name, "identity": judge.identity}  # who wrote it, by its weights
            value = json.loads(line["scores"])
            assert list(value) == list(CRITERIA) and all(v in range(1, 6) for v in value.values())
            assert parse_scores(line["scores"]) == {k: float(v) for k, v in value.items()}
    assert [x["scores"] for x in lines["hf"]] == [x["scores"] for x in lines["http"]]
    # Free text is still there for DISC's own protocol: the schema is what changed the reply.
    free = run_judge(_dialogues()[:1], load_backend("tiny"), tmp_path / "free.jsonl", judge_spec="hf", rubric="zh",
                     params=GenParams(max_new_tokens=80), cache="none", progress=False, json_output=False)  # fmt: skip
    text = json.loads((tmp_path / "free.jsonl").read_text(encoding="utf-8").splitlines()[0])["scores"]
    assert free["judged"] == 1 and text != lines["hf"][0]["scores"]
