"""Judge swap (`eval judges`): the same dialogues graded by several graders; agreement, Cohen's
kappa and the models' ranking (Kendall tau) checked against figures worked out by hand, then
the command end to end with the tiny model as every grader."""

import json

import pytest
import typer
from typer.testing import CliRunner

from discmed.eval.judges import compare


def graded(model, verdicts):
    return {"id": "case", "model": model, "source": "s", "repeat": None, "example_tags": [],
            "grades": [{"criterion": f"c{i}", "points": 1, "tags": ["axis:x"] if i == 0 else [], "criteria_met": v}
                       for i, v in enumerate(verdicts)]}


def test_compare_reference_figures():
    g1 = [graded("m1", [True, True]), graded("m2", [True, False]), graded("m3", [False, False])]
    g2 = [graded("m1", [True, False]), graded("m2", [True, True]), graded("m3", [False, False])]
    r = compare({"G1": g1, "G2": g2})
    (p,) = r["pairs"]
    # Verdict pairs (T,T) (T,F) | (T,T) (F,T) | (F,F) (F,F): 4 of 6 the same.
    assert p["verdicts"] == 6 and p["agreement"] == pytest.approx(2 / 3)
    # Each grader says met on 3 of 6: chance agreement 1/2·1/2 + 1/2·1/2 = 1/2; kappa (2/3 - 1/2) / (1/2) = 1/3.
    assert p["kappa"] == pytest.approx(1 / 3)
    # Scores: G1 m1 1, m2 1/2, m3 0; G2 m1 1/2, m2 1, m3 0. Of the three model pairs, (m1, m2) swaps
    # and the other two keep their order: tau = (2 - 1) / 3.
    assert r["scores"] == {"G1": {"m1": 1.0, "m2": 0.5, "m3": 0.0}, "G2": {"m1": 0.5, "m2": 1.0, "m3": 0.0}}
    assert p["kendall_tau"] == pytest.approx(1 / 3) and p["models"] == 3
    assert r["ranks"]["G1"] == {"m1": 1, "m2": 2, "m3": 3} and r["ranks"]["G2"] == {"m2": 1, "m1": 2, "m3": 3}
    # Per criterion tag: axis:x is criterion 0 alone: (T,T) (T,T) (F,F): all agree, kappa 1.
    assert p["by_tag"]["axis:x"] == {"n": 3, "agreement": 1.0, "kappa": 1.0}
    # Models a grader scores alike share a rank.
    assert compare({"G": [graded("m1", [True, False]), graded("m2", [False, True]), graded("m3", [False, False])]}
                   )["ranks"]["G"] == {"m1": 1, "m2": 1, "m3": 3}
    # A dialogue one grader left without a verdict is left out of every grader's scores.
    g2[1]["grades"][1]["criteria_met"] = None
    r = compare({"G1": g1, "G2": g2})
    assert r["dialogues_compared"] == 2 and "m2" not in r["ranks"]["G1"] and r["pairs"][0]["verdicts"] == 5


@pytest.mark.slow
def test_judges_end_to_end_on_tiny(tiny_server, tmp_path):
    from reasoning_proxy import reasoning_server

    from discmed.eval.cli import register
    from discmed.eval.rubric import read_grades

    app = typer.Typer()
    register(app)
    spec = f"openai:{tiny_server}@tiny"
    rubrics = tmp_path / "r.jsonl"
    rubrics.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in [
        {"prompt_id": "1", "prompt": [{"role": "user", "content": "我爸爸胸口压榨样疼，出冷汗，怎么办？"}],
         "rubrics": [{"criterion": "建议立即拨打120", "points": 10, "tags": ["axis:accuracy"]},
                     {"criterion": "建议在家观察", "points": -8, "tags": ["axis:accuracy"]}]},
        {"prompt_id": "2", "prompt": [{"role": "user", "content": "感冒了能喝什么药？"}],
         "rubrics": [{"criterion": "询问是否发烧", "points": 4, "tags": ["axis:completeness"]}]}]), encoding="utf-8")
    common = ["--rubrics", str(rubrics), "--model", spec, "--grader", spec, "--protocol", "discmed",
              "--model-max-new-tokens", "16", "--max-new-tokens", "256"]  # room for the schema's 200-character reason
    for name, extra in (("greedy", []), ("hot", ["--model-temperature", "1.0"])):
        r = CliRunner().invoke(app, ["rubric", *common, "--name", name, *extra, "--out", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
    out = tmp_path / "judges"
    with reasoning_server(tiny_server, "think") as url:
        think = f"openai:{url}@tiny"
        r = CliRunner().invoke(app, ["judges", str(tmp_path / "greedy"), str(tmp_path / "hot"), "--graders",
                                     f"{think},tiny", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.output.strip().splitlines()[-1])
    assert result["graders"] == [f"{spec} (the runs')", think, "tiny"] and len(result["pairs"]) == 3
    assert set(result["models"]) <= {"greedy", "hot"}
    assert "#### Graders against each other" in r.output and "Kendall tau" in r.output
    # Every grader graded the same 4 dialogues on the same 6 criteria, under the runs' protocol.
    mine = read_grades(out / "tiny" / "grades.jsonl")
    assert len(mine) == 4 and sum(len(x["grades"]) for x in mine) == 6
    assert all(x["protocol"]["name"] == "discmed" and x["grader"]["spec"] == "tiny" for x in mine)
    # The agreement reported is what the grade files say.
    runs = {(x["model"], x["id"]): x for d in ("greedy", "hot") for x in read_grades(tmp_path / d / "grades.jsonl")}
    pair = next(p for p in result["pairs"] if p["b"] == "tiny" and p["a"].endswith("(the runs')"))
    both = [(a["criteria_met"], b["criteria_met"]) for x in mine
            for a, b in zip(runs[(x["model"], x["id"])]["grades"], x["grades"], strict=True)
            if a["criteria_met"] is not None and b["criteria_met"] is not None]
    assert pair["verdicts"] == len(both) > 0
    assert pair["agreement"] == pytest.approx(sum(a == b for a, b in both) / len(both))
    saved = json.loads((out / "scores.json").read_text())
    assert saved["protocol"]["name"] == "discmed" and saved["pairs"] == result["pairs"]
