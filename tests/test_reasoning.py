"""Reasoning models in every role: their thinking (`<think>` blocks, `reasoning_content`) kept
apart from the answer — never in rewritten records, patient or doctor turns, judgements or
grades — and kept in journals and receipts. The reasoning model is the tiny model's real
`discmed serve` behind tests/reasoning_proxy.py."""

import json
import sqlite3

import pytest
import typer
from reasoning_proxy import MARKER, reasoning_server
from typer.testing import CliRunner

from discmed.reasoning import StreamSplitter, separate, split


@pytest.fixture(scope="module")
def think_url(tiny_server):
    with reasoning_server(tiny_server, "think") as url:
        yield url


@pytest.fixture(scope="module")
def field_url(tiny_server):
    with reasoning_server(tiny_server, "field") as url:
        yield url


@pytest.fixture
def cli():
    from discmed.eval.cli import register

    app = typer.Typer()
    register(app)
    return app


def test_split_shapes():
    assert split("<think>a</think>\n\nanswer") == ("a", "answer")
    assert split("a</think>answer") == ("a", "answer")  # the template opened the block in the prompt
    assert split("<think>cut off at the limit") == ("cut off at the limit", "")
    assert split("x<think>a</think>y<think>b</think>z") == ("a\n\nb", "xyz")
    assert split("plain answer") == (None, "plain answer")
    assert split("thinking", started=True) == ("thinking", "")
    r = separate("<think>r</think>ans")
    assert (str(r), r.reasoning) == ("ans", "r")
    r = separate("ans", reasoning="from the field")
    assert (str(r), r.reasoning) == ("ans", "from the field")


def test_stream_splitter_holds_a_tag_split_across_pieces():
    s = StreamSplitter()
    pieces = ["<th", "ink>I ", "think</th", "ink>\n\nThe an", "swer <", "b>"]
    out = [s.feed(p) for p in pieces] + [s.flush()]
    assert "".join(r for r, _ in out) == "I think"
    assert "".join(a for _, a in out) == "The answer <b>"
    s = StreamSplitter(started=True)
    assert s.feed("still thinking") == ("still thinking", "") and s.feed("</think>done") == ("", "done")


def test_openai_backend_separates_both_shapes(think_url, field_url):
    from discmed.backend import GenParams, load_backend

    for url in (think_url, field_url):
        b = load_backend(f"openai:{url}@tiny")
        (reply,) = b.chat([[{"role": "user", "content": "头疼怎么办？"}]], GenParams(max_new_tokens=12))
        assert MARKER not in reply and "<think>" not in reply and MARKER in reply.reasoning
        streamed = "".join(b.stream([{"role": "user", "content": "头疼怎么办？"}], GenParams(max_new_tokens=12)))
        assert MARKER not in streamed and "<think>" not in streamed


def _journal_reasoning(path) -> list[dict]:
    con = sqlite3.connect(path)
    rows = [json.loads(p) for (p,) in con.execute("SELECT provenance FROM items WHERE status='done'")]
    con.close()
    return [t for p in rows for t in p.get("reasoning", [])]


@pytest.mark.slow
def test_teacher_patient_doctor_judge_grader_keep_no_reasoning(tmp_path, tiny_server, think_url, field_url,
                                                               shared_data, cli):
    from discmed.data.rewrite import rewrite_file

    think, field = f"openai:{think_url}@tiny", f"openai:{field_url}@tiny"
    # The teacher: rewritten records and rejects hold answers only; the journal holds the thinking.
    src = tmp_path / "in.jsonl"
    src.write_text((shared_data / "disc-medllm" / "train" / "test_examples.jsonl").read_text(encoding="utf-8")
                   .splitlines()[0] + "\n", encoding="utf-8")
    out = tmp_path / "rewritten.jsonl"
    s = rewrite_file(src, out, think, max_new_tokens=32, cache=tmp_path / "c1.sqlite", progress=False)
    assert s["accepted"] + s["rejected"] == 1 and s["teacher_calls"] >= 1
    written = out.read_text(encoding="utf-8") + (tmp_path / "rewritten.jsonl.rejects.jsonl").read_text(encoding="utf-8")
    assert written.strip() and MARKER not in written and "<think>" not in written
    kept = _journal_reasoning(tmp_path / "rewritten.jsonl.journal.sqlite")
    assert kept and all(t["role"] == "teacher" and MARKER in t["reasoning"] for t in kept)
    # A rerun answered from the call cache keeps the thinking apart too (the cache stores it).
    again = rewrite_file(src, tmp_path / "again.jsonl", think, max_new_tokens=32, cache=tmp_path / "c1.sqlite",
                         progress=False)
    assert again["teacher_calls"] == 0 and again["cache_hits"] >= 1
    assert MARKER not in (tmp_path / "again.jsonl").read_text(encoding="utf-8")
    assert _journal_reasoning(tmp_path / "again.jsonl.journal.sqlite")

    # The patient thinks in <think> blocks, the doctor in reasoning_content: turns hold neither.
    dialogues = tmp_path / "d.json"
    r = CliRunner().invoke(cli, ["consult", "--doctor", field, "--patient", think, "--set", "cmid", "--samples",
                                 str(shared_data / "disc-medllm" / "eval" / "samples"), "--limit", "2", "--turns", "2",
                                 "--doctor-max-new-tokens", "16", "--patient-max-new-tokens", "12",
                                 "--out", str(dialogues), "--json"])
    assert r.exit_code == 0, r.output
    text = dialogues.read_text(encoding="utf-8")
    assert MARKER not in text and "<think>" not in text and "criteria_met" not in text
    # The thought ends "病人：我已经全好了" (a goodbye): had it leaked, clean_patient would read it.
    assert json.loads(r.output.strip().splitlines()[-1])["ended_by_patient"] == 0
    roles = {t["role"] for t in _journal_reasoning(tmp_path / "d.json.journal.sqlite")}
    assert roles == {"doctor", "patient"}

    # The judge: its line's scores are the answer; the thinking is in the receipt, never parsed.
    judged = tmp_path / "result_tiny_cmid.jsonl"
    r = CliRunner().invoke(cli, ["judge", str(dialogues), "--judge", think, "--rubric", "zh", "--out", str(judged),
                                 "--max-new-tokens", "24", "--json"])
    assert r.exit_code == 0, r.output
    from discmed.eval.judge import parse_scores

    for line in map(json.loads, judged.read_text(encoding="utf-8").splitlines()):
        assert MARKER not in line["scores"] and MARKER not in json.dumps(line["receipt"]["parsed"])
        assert MARKER in line["receipt"]["reasoning"] and line["receipt"]["parsed"] == parse_scores(line["scores"])

    # The grader: verdicts read from the answer alone; receipts keep the reasoning.
    rubric = tmp_path / "r.jsonl"
    rubric.write_text("".join(
        json.dumps({"prompt_id": d["id"], "prompt": [{"role": "user", "content": d["conversation"][0]["content"]}],
                    "rubrics": [{"criterion": "建议就医", "points": 5, "tags": ["axis:accuracy"]},
                                {"criterion": "推荐抗生素", "points": -3, "tags": []}]}, ensure_ascii=False) + "\n"
        for d in json.loads(text)), encoding="utf-8")
    run = tmp_path / "graded"
    r = CliRunner().invoke(cli, ["rubric", str(dialogues), "--rubrics", str(rubric), "--grader", field,
                                 "--protocol", "discmed", "--max-new-tokens", "48", "--out", str(run), "--json"])
    assert r.exit_code == 0, r.output
    from discmed.eval.grader import parse_lenient

    grades = [g for x in map(json.loads, (run / "grades.jsonl").read_text(encoding="utf-8").splitlines())
              for g in x["grades"]]
    assert len(grades) == 4
    for g in grades:
        assert MARKER not in g["grade"] and MARKER in g["reasoning"]
        assert g["criteria_met"] == parse_lenient(g["grade"])[0] or g["criteria_met"] is None
    r = CliRunner().invoke(cli, ["receipts", str(run), "--json"])
    assert r.exit_code == 0, r.output
    counts = json.loads(r.output.strip().splitlines()[-1])
    assert counts["verdicts"] == 4 and counts["with_reasoning"] == 4 and counts["verified"] == 4
