"""`eval receipts`: every verdict of a run with its grader, prompt hash, reply, reasoning and parsed
result; a prompt that no longer matches its receipt (an edited line) is found and fails the command."""

import csv
import hashlib
import json

import typer
from typer.testing import CliRunner

from discmed.eval.grader import protocol


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def rubric_line(criterion="Tells the user to call 120.", points=10):
    p = protocol("healthbench")
    conversation = [{"role": "user", "content": "Chest pain."}, {"role": "assistant", "content": "Call 120."}]
    prompt = p.render(conversation, criterion, points)
    return {"id": "1", "model": "m", "source": "hb", "repeat": None, "example_tags": [],
            "grader": {"spec": "openai:http://x/v1@g", "identity": "openai:http://x/v1@g"}, "protocol": p.describe(),
            "conversation": conversation,
            "grades": [{"criterion": criterion, "points": points, "tags": [], "criteria_met": True,
                        "explanation": "It does.", "grade": '```json\n{"explanation": "It does.", "criteria_met": true}\n```',
                        "reasoning": "the user needs 120", "finish_reason": "stop", "prompt_sha256": sha(prompt),
                        "asked": 2, "tries": [{"reply": "I think so", "reasoning": None, "finish_reason": "stop",
                                               "criteria_met": None}]}]}


def app():
    from discmed.eval.cli import register

    a = typer.Typer()
    register(a)
    return a


def test_receipts_verify_show_and_export(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "grades.jsonl").write_text(json.dumps(rubric_line()) + "\n")
    r = CliRunner().invoke(app(), ["receipts", str(run), "--show", "--out", str(tmp_path / "r.csv"), "--json"])
    assert r.exit_code == 0, r.output
    counts = json.loads(r.output.strip().splitlines()[-1])
    assert (counts["verdicts"], counts["verified"], counts["with_reasoning"], counts["asked_again"]) == (1, 1, 1, 1)
    assert "# Rubric item\n[10] Tells the user to call 120." in r.output and "[reasoning, not parsed]" in r.output
    assert "[unreadable try 1]\nI think so" in r.output
    (row,) = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert row["verdict"] == "True" and row["verified"] == "True" and row["reasoning"] == "the user needs 120"

    # A line whose criterion was edited after grading: its prompt no longer hashes to the receipt.
    edited = rubric_line()
    edited["grades"][0]["criterion"] = "Tells the user to rest."
    (run / "grades.jsonl").write_text(json.dumps(edited) + "\n")
    r = CliRunner().invoke(app(), ["receipts", str(run)])
    assert r.exit_code == 2 and "1 receipts do not match the prompt re-rendered from their line" in r.output


def test_receipts_of_judge_pairwise_and_old_lines(tmp_path):
    prompt = "rate this dialogue"
    judged = tmp_path / "result_m_cmd.jsonl"
    judged.write_text("\n".join(json.dumps(x) for x in [
        {"id": "1", "model": "m", "source": "cmd", "scores": "Proactivity: 4\nAccuracy: 4\nHelpfulness: 4\n"
         "Linguistic Quality: 5", "prompt": prompt, "judge": {"spec": "j", "identity": "j@1"},
         "receipt": {"reply": "…", "reasoning": None, "finish_reason": "stop", "parsed": {"Proactivity": 4.0},
                     "prompt_sha256": sha(prompt), "asked": 1, "tries": []}},
        # DISC's released lines carry no receipt: listed, not checkable, not wrong.
        {"id": "2", "model": "m", "source": "cmd", "scores": "Proactivity: 5", "prompt": prompt}]) + "\n")
    r = CliRunner().invoke(app(), ["receipts", str(judged), "--json"])
    assert r.exit_code == 0, r.output
    counts = json.loads(r.output.strip().splitlines()[-1])
    assert (counts["verdicts"], counts["verified"], counts["not_checkable"]) == (2, 1, 1)

    pair = tmp_path / "pairwise.jsonl"
    pair.write_text(json.dumps({"id": "1", "source": "cmd", "x": "a", "y": "b", "ab": "A", "ba": "tie", "outcome": "x",
                                "winner": "a", "replies": ["结论：A", "结论：平局"], "judge": {"spec": "j", "identity": "j@1"},
                                "receipts": [{"reply": "结论：A", "reasoning": "a is better", "order": "x first",
                                              "prompt_sha256": "00"}, {"reply": "结论：平局", "order": "y first"}]}) + "\n")
    r = CliRunner().invoke(app(), ["receipts", str(pair), "--out", str(tmp_path / "p.jsonl")])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [(x["item"], x["verdict"], x["reasoning"]) for x in rows] == [("x first", "A", "a is better"),
                                                                         ("y first", "tie", None)]
