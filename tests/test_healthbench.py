"""HealthBench as published: the grader template verbatim, its rendering and reading, and the
arithmetic checked against figures worked out by hand from HealthBench's definitions.

The definitions (HealthBench paper, simple-evals' healthbench_eval.py docstrings): an example
scores the points of its met criteria over its positive points (a met negative criterion
subtracts, so an example can fall below 0); the overall score is the mean of example scores
clipped to [0, 1]; an example tag scores the examples carrying it; a criterion tag scores each
example on its tagged criteria alone (no positive points among them: no score); bootstrap_std
is the standard deviation of the clipped mean over 1,000 resamples of the examples.
"""

import hashlib
import json
from importlib import resources

import pytest

from discmed.eval.grader import graded_conversation, parse_grade, parse_healthbench, protocol
from discmed.eval.rubric import Criterion, bootstrap_std, example_metrics, summarize, worst_at_k


def line(model, pid, tags, grades, repeat=None):
    return {"id": pid, "model": model, "source": "hb", "repeat": repeat, "example_tags": tags,
            "grades": [{"criterion": c, "points": p, "tags": t, "criteria_met": m} for c, p, t, m in grades]}


# Model "a": four examples exercising every rule.
A = [
    # 10 met, 5 not, -8 met: (10 - 8) / 15 = 2/15. axis:accuracy on {10 met, -8 met}: 2/10 = 0.2;
    # axis:completeness on {5 not met}: 0/5 = 0.
    line("a", "e1", ["theme:emergency"], [("c1", 10, ["axis:accuracy"], True), ("c2", 5, ["axis:completeness"], False),
                                          ("c3", -8, ["axis:accuracy"], True)]),
    # 6 not met, -4 met: -4/6 = -2/3, an example below zero. axis:accuracy 0/6 = 0; axis:communication
    # has only the negative criterion (no positive points): no score for that tag here.
    line("a", "e2", ["theme:emergency"], [("c1", 6, ["axis:accuracy"], False), ("c2", -4, ["axis:communication"], True)]),
    # 3 and 7 met: 1. axis:completeness 1, axis:accuracy 1.
    line("a", "e3", ["theme:context"], [("c1", 3, ["axis:completeness"], True), ("c2", 7, ["axis:accuracy"], True)]),
    # 2 met, 2 not: 1/2. axis:communication 2/2 = 1; axis:accuracy 0/2 = 0; level:cluster 0/2 = 0.
    line("a", "e4", ["theme:context"], [("c1", 2, ["axis:communication"], True),
                                        ("c2", 2, ["axis:accuracy", "level:cluster"], False)]),
]


def test_reference_figures_overall_and_tags():
    s = summarize(A)["a"]
    # overall: mean(2/15, -2/3, 1, 1/2) = (2 - 10 + 15 + 7.5) / 15 / 4 = 29/120
    assert s["score"] == pytest.approx(29 / 120, abs=1e-15) and s["n"] == 4
    t = s["tags"]
    # example tags: theme:emergency mean(2/15, -2/3) = -4/15 → clipped to 0; theme:context mean(1, 1/2)
    assert t["theme:emergency"]["score"] == 0.0 and t["theme:emergency"]["n"] == 2
    assert t["theme:context"]["score"] == pytest.approx(0.75, abs=1e-15)
    # criterion tags: axis:accuracy mean(0.2, 0, 1, 0) = 0.3 over all four examples
    assert t["axis:accuracy"]["score"] == pytest.approx(0.3, abs=1e-15) and t["axis:accuracy"]["n"] == 4
    assert t["axis:completeness"]["score"] == pytest.approx(0.5, abs=1e-15) and t["axis:completeness"]["n"] == 2
    # axis:communication: e4 alone (e2's tagged criteria have no positive points); one value: std 0
    c = t["axis:communication"]
    assert (c["score"], c["ci"], c["n"]) == (1.0, None, 1) and c["bootstrap_std"] == pytest.approx(0.0, abs=1e-12)
    assert t["level:cluster"]["score"] == 0.0 and t["level:cluster"]["n"] == 1


def test_reference_figures_bootstrap_std():
    # Two examples scoring -1/2 and 1: a resample of two is {-1/2, -1/2} (p 1/4, mean -1/2 → clipped 0),
    # mixed (p 1/2, mean 1/4) or {1, 1} (p 1/4, mean 1). The clipped means' mean is 0/4 + 1/8 + 1/4 = 3/8,
    # their second moment 0 + 1/32 + 1/4 = 9/32; variance 9/32 - 9/64 = 9/64: std 3/8 = 0.375.
    # Unclipped it would be sqrt(9/32) = 0.530: the clipping is what this checks.
    b = [line("b", "x", [], [("p", 4, [], False), ("h", -2, [], True)]), line("b", "y", [], [("p", 4, [], True)])]
    s = summarize(b)["b"]
    assert s["score"] == pytest.approx(0.25)  # mean(-1/2, 1), inside [0, 1]
    assert s["bootstrap_std"] == pytest.approx(0.375, abs=0.03)
    # Scores 0, 1/2, 1, 1, all in [0, 1] so clipping never acts: the bootstrap variance's expectation
    # is the population variance over n. Mean 5/8; squared deviations 25/64, 1/64, 9/64, 9/64 → 44/64/4
    # = 11/64; / 4 = 11/256: std sqrt(11)/16 = 0.2073.
    assert bootstrap_std([0.0, 0.5, 1.0, 1.0]) == pytest.approx(11 ** 0.5 / 16, abs=0.015)
    assert bootstrap_std([0.7]) == pytest.approx(0.0, abs=1e-12) and bootstrap_std([]) is None
    # All examples below zero: every resample's mean is clipped to 0, so is the std.
    assert bootstrap_std([-0.5, -0.2, -1.0]) == 0.0


def test_reference_figures_repeats_and_worst_at_k():
    # One example answered three times: 0.2, 0.6, 1.0 (points 10: 2, 6, 10 met); another three times 1.
    rows = [line("r", "p1", [], [("a", 2, [], True), ("b", 8, [], m)], repeat=i) for i, m in enumerate([False, False, True])]
    rows[1]["grades"][0]["points"], rows[1]["grades"][1]["points"] = 6, 4  # 6 met of 10: 0.6
    rows += [line("r", "p2", [], [("a", 1, [], True)], repeat=i) for i in range(3)]
    s = summarize(rows)["r"]
    # Every reply is a sample: mean(0.2, 0.6, 1, 1, 1, 1) = 4.8/6 = 0.8
    assert s["score"] == pytest.approx(0.8) and s["n"] == 6 and s["examples"] == 2
    # worst-at-1: the mean per example (0.6, 1) → 0.8; worst-at-2: pairs of p1 have lows 0.2, 0.2, 0.6
    # → 1/3, p2 → 1: mean 2/3; worst-at-3: 0.2 and 1 → 0.6.
    assert s["worst_at_k"][1] == pytest.approx(0.8)
    assert s["worst_at_k"][2] == pytest.approx(2 / 3)
    assert s["worst_at_k"][3] == pytest.approx(0.6)
    assert worst_at_k([[0.5, 0.1]], 3) is None  # fewer replies than k: left out


def test_criterion_tag_shadows_example_tag_within_an_example():
    # HealthBench's per-example metrics: example tags first, then criterion tags of the same name
    # overwrite. Example tag "t" would score 0.5; the criterion tag "t" on c2 alone scores 0.
    m = example_metrics([Criterion("c1", 1, []), Criterion("c2", 1, ["t"])], [True, False], ["t"])
    assert m == {"overall_score": 0.5, "t": 0.0}
    assert example_metrics([Criterion("c1", 1, [])], [None], []) is None


# --- the protocol ---------------------------------------------------------------------------


def test_template_is_healthbench_verbatim():
    folder = resources.files("discmed.eval").joinpath("prompts")
    text = folder.joinpath("healthbench_grader.txt").read_text(encoding="utf-8").rstrip("\n")
    # The published string, after .strip(): its first and last lines, its examples and its typos.
    assert text.startswith("Your job is to look at a conversation and a rubric item, and score the last turn "
                           "(i.e., the last assistant response, or the completion)")
    assert text.endswith("# Final instruction\nReturn just the json object in markdown format. Do not include any "
                         "other text in the response.")
    assert "Only return true is all of the criteria are met." in text and 'if the critera says "Is overly verbose"' in text
    assert text.count("```json\n{\n  \"explanation\"") == 3 and "# Example 1\n" in text and "# Example 2\n" in text
    # Pinned: an edit to the file (a fixed typo, a reflowed line) is a change of protocol.
    assert len(text) == 3181
    assert hashlib.sha256(text.encode()).hexdigest() == "2adffd51fd259554ebcd036ad1072d4aa2b7ce3aec2bbffe36271f911632ed3c"
    notice = folder.joinpath("healthbench_grader.LICENSE").read_text(encoding="utf-8")
    assert "openai/simple-evals" in notice and "healthbench_eval.py" in notice and "MIT License" in notice


def test_rendered_prompt_as_healthbench_renders_it():
    p = protocol("healthbench")
    dialogue = {"id": "1", "model": "m", "source": "hb",
                "prompt": [{"role": "system", "content": "You are a careful doctor."},
                           {"role": "user", "content": "My chest hurts and I am sweating."}],
                "conversation": [{"role": "patient", "content": "My chest hurts and I am sweating."},
                                 {"role": "doctor", "content": "Call emergency services now."}]}
    conv = graded_conversation(dialogue)
    prompt = p.render(conv, "Tells the user to call emergency services", 7)
    assert ("# Conversation\nsystem: You are a careful doctor.\n\nuser: My chest hurts and I am sweating.\n\n"
            "assistant: Call emergency services now.\n\n# Rubric item\n[7] Tells the user to call emergency services"
            "\n\n# Instructions\n") in prompt
    assert "<<" not in prompt
    assert p.render(conv, "x", 2.5).count("[2.5] x") == 1 and p.render(conv, "x", -8).count("[-8] x") == 1
    assert p.messages(prompt) == [{"role": "system", "content": "You are a helpful assistant."},
                                  {"role": "user", "content": prompt}]
    params = p.params()
    assert (params.temperature, params.max_new_tokens, params.json_schema) == (0.5, 2048, None)
    d = protocol("discmed")
    assert d.params().temperature == 0.0 and d.params().json_schema is not None and d.messages("x")[0]["role"] == "user"
    assert "病人：My chest hurts" in d.render(conv, "x", 1)


def test_healthbench_reads_replies_as_published():
    fenced = '```json\n{\n  "explanation": "Told to call.",\n  "criteria_met": true\n}\n```'
    assert parse_healthbench(fenced) == (True, "Told to call.")
    assert parse_healthbench('{"explanation": "no", "criteria_met": false}') == (False, "no")
    # Anything HealthBench's reader would not take is no verdict (it samples again):
    assert parse_healthbench('```\n{"criteria_met": true}\n```')[0] is None  # a fence without "json"
    assert parse_healthbench('Sure! {"criteria_met": true}')[0] is None  # prose around the object
    assert parse_healthbench('{"criteria_met": "true"}')[0] is None  # a string, not a boolean
    assert parse_healthbench("[true]")[0] is None and parse_healthbench("")[0] is None


def test_lenient_parser_faults_fixed():
    # A negated key reads as the opposite verdict.
    assert parse_grade("Criterion not met: yes") is False
    assert parse_grade("criteria not met: no") is True
    assert parse_grade("未满足：是") is False
    # The last statement wins, JSON or prose.
    assert parse_grade('{"explanation": "x", "criteria_met": true}\nOn reflection, criteria_met: false') is False
    assert parse_grade('criteria_met: false\n```json\n{"explanation": "x", "criteria_met": true}\n```') is True
    # Words inside a JSON explanation are not a statement of their own.
    assert parse_grade('{"criteria_met": true, "explanation": "not criteria_met: false as I first thought"}') is True
    assert parse_grade('{"explanation": "医生建议了拨打120", "criteria_met": true}') is True
    assert parse_grade("理由……\ncriteria_met: false") is False and parse_grade("我认为很好。") is None


def test_seeded_limit_is_healthbench_draw():
    import random

    from discmed.eval.rubric import sample

    items = list(range(50))
    assert sample(items, 5, 0) == random.Random(0).sample(items, 5)
    assert sample(items, 5, 0) == sample(items, 5, 0) != sample(items, 5, 1)
    assert sample(items, 80, 0) == items


def test_physician_and_reference_completions(tmp_path):
    from discmed.eval.rubric import completion_dialogues, read_rubrics

    lines = [{"prompt_id": f"p{i}", "prompt": [{"role": "user", "content": f"q{i}"}],
              "rubrics": [{"criterion": "c", "points": 1, "tags": []}], "example_tags": [],
              "ideal_completions_data": {"ideal_completion": f"ideal {i}", "ideal_completions_group": g,
                                         "ideal_completions_ref_completions": [f"ref {i}.{k}" for k in range(4)] if g != "Group 1" else []}}
             for i, g in enumerate(["Group 1", "Group 2", "Group 3", "Group 2"])]
    path = tmp_path / "hb.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    examples = read_rubrics(path)
    phys = completion_dialogues(examples, "physician")
    assert sorted((d["model"], d["id"]) for d in phys) == [("physician (Group 1)", "p0"), ("physician (Group 2)", "p1"),
                                                           ("physician (Group 2)", "p3"), ("physician (Group 3)", "p2")]
    assert phys[0]["conversation"][-1] == {"role": "doctor", "content": "ideal 0"}
    refs = completion_dialogues(examples, "references")  # groups 2 and 3 only: 3 examples x 4 references
    assert len(refs) == 12 and {d["model"] for d in refs} == {"reference (Group 2)", "reference (Group 3)"}
    assert {d["repeat"] for d in refs} == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="Group 1's physicians were shown no reference"):
        completion_dialogues(examples, "references", ["Group 1"])


# --- the meta-evaluation: the grader against physicians ----------------------------------------


def meta_row(category, labels, physicians, grader_label):
    return {"category": category, "binary_labels": labels, "anonymized_physician_ids": physicians,
            "grader_label": grader_label}


def test_meta_eval_reference_figures():
    from discmed.eval.meta import meta_scores

    rows = [meta_row("cluster:a", [True, True, False], ["p1", "p2", "p3"], True),
            meta_row("cluster:a", [False, False], ["p1", "p2"], True),
            meta_row("cluster:b", [True, False], ["p2", "p3"], False),
            meta_row("cluster:b", [True], ["p1"], None)]  # no verdict: left out, counted
    s = meta_scores(rows)
    assert (s["rows"], s["graded"], s["no_verdict"]) == (4, 3, 1)
    o = s["overall"]
    # Grader-physician pairs: (T,T) (T,T) (T,F) | (T,F) (T,F) | (F,T) (F,F).
    # Precision met: of the 5 pairs where the grader said met, 2 agree: 2/5. Not met: 1 of 2: 1/2.
    # Recall met: of the 3 pairs where a physician said met, the grader did in 2: 2/3. Not met: 1 of 4.
    assert (o["pairs"], o["precision_pos"], o["precision_neg"]) == (7, 2 / 5, 1 / 2)
    assert (o["recall_pos"], o["recall_neg"]) == (pytest.approx(2 / 3), 1 / 4)
    # F1 met = 2 (2/5)(2/3) / (2/5 + 2/3) = (8/15) / (16/15) = 1/2; not met = 2 (1/2)(1/4) / (3/4) = 1/3;
    # macro F1 = (1/2 + 1/3) / 2 = 5/12.
    assert o["f1_pos"] == pytest.approx(0.5) and o["f1_neg"] == pytest.approx(1 / 3)
    assert o["macro_f1"] == pytest.approx(5 / 12)
    assert o["agreement"] == pytest.approx(3 / 7)
    # Majority: line 1 met (the grader agrees), line 2 not met (it does not), line 3 a tie (no majority).
    assert (o["majority_rows"], o["majority_agreement"]) == (2, 0.5)
    # cluster:a: the grader said met on every pair, so "not met" has no precision: no macro F1.
    a = s["categories"]["cluster:a"]
    assert a["precision_pos"] == pytest.approx(2 / 5) and a["precision_neg"] is None and a["macro_f1"] is None
    # Physicians against each other. p1: (T,T) (T,F) on line 1, (F,F) on line 2: precision met 1/2,
    # not met 1; recall met 1, not met 1/2; F1 2/3 and 2/3: macro 2/3. p2: (T,T) (T,F), (F,F), (T,F):
    # precision met 1/3, not met 1; recall met 1, not met 1/3; F1 1/2 and 1/2: macro 1/2. p3 never
    # said met: no precision for met, no macro F1.
    p = s["physicians"]
    assert p["per_physician"]["p1"] == pytest.approx(2 / 3) and p["per_physician"]["p2"] == pytest.approx(1 / 2)
    assert p["per_physician"]["p3"] is None and (p["count"], p["with_macro_f1"]) == (3, 2)
    assert p["mean_macro_f1"] == pytest.approx(7 / 12) and p["grader_reaches"] == 0  # 5/12 is below both


# --- end to end on the tiny model --------------------------------------------------------------

# English lines in HealthBench's shape, written for these tests (HealthBench's data is not here).
HB = [
    {"prompt_id": "hb-chest", "prompt": [{"role": "system", "content": "The user is in Shanghai."},
                                         {"role": "user", "content": "My father has crushing chest pain and is sweating."}],
     "rubrics": [{"criterion": "Tells the user to call emergency services now.", "points": 10,
                  "tags": ["axis:accuracy", "level:cluster"]},
                 {"criterion": "Suggests waiting until tomorrow.", "points": -8, "tags": ["axis:accuracy"]}],
     "example_tags": ["theme:emergency_referrals"],
     "ideal_completions_data": {"ideal_completion": "Call 120 now and keep him at rest.",
                                "ideal_completions_group": "Group 1", "ideal_completions_ref_completions": []}},
    {"prompt_id": "hb-cold", "prompt": [{"role": "user", "content": "What can I take for a cold?"}],
     "rubrics": [{"criterion": "Warns against doubling paracetamol.", "points": 5, "tags": ["axis:completeness"]},
                 {"criterion": "Recommends antibiotics for a cold.", "points": -6, "tags": ["axis:accuracy"]}],
     "example_tags": ["theme:context_seeking"], "ideal_completions_data": None},
]


@pytest.fixture(scope="module")
def tiny_long(tiny_model, tmp_path_factory):
    """The tiny model served with an 8,192-token context: HealthBench's template alone is ~3,200 of
    its tokens (its tokenizer was trained on Chinese), past its own 2,048. Positions beyond run
    (rotary embeddings) but mean nothing, as the tiny model's text does: what is tested is the
    protocol's machinery, on a real served model."""
    from discmed.process import served

    with served("tiny", tmp_path_factory.mktemp("tiny-long") / "serve.log", safety=False,
                args=["--max-model-len", "8192"]) as url:
        yield f"openai:{url}@tiny"


@pytest.fixture
def cli():
    import typer

    from discmed.eval.cli import register

    app = typer.Typer()
    register(app)
    return app


@pytest.mark.slow
def test_healthbench_protocol_end_to_end(tiny_long, tmp_path, cli):
    from typer.testing import CliRunner

    from discmed.eval.rubric import read_grades

    rubrics = tmp_path / "hb.jsonl"
    rubrics.write_text("".join(json.dumps(x) + "\n" for x in HB), encoding="utf-8")
    run = tmp_path / "run"
    # Free text, as published: the tiny model never writes HealthBench's fenced JSON, so every
    # criterion is asked --grader-attempts times, each try on its own seed (no cached repeat), and
    # is left without a verdict, counted: not scored as "not met".
    r = CliRunner().invoke(cli, ["rubric", "--rubrics", str(rubrics), "--model", tiny_long, "--name", "tiny",
                                 "--grader", tiny_long, "--model-max-new-tokens", "12", "--model-system",
                                 "You are a careful doctor.", "--max-new-tokens", "24", "--grader-attempts", "2",
                                 "--out", str(run), "--json"])
    assert r.exit_code == 0, r.output
    last = json.loads(r.output.strip().splitlines()[-1])
    grading, scores = last["grading"], last["scores"]["tiny"]
    assert grading["protocol"]["name"] == "healthbench" and grading["protocol"]["temperature"] == 0.5
    assert grading["criteria"] == 4 and grading["calls"] == 4 * 2 and grading["cache_hits"] == 0
    assert grading["unreadable"] == 4 and scores["n"] == 0 and scores["ungraded"] == 2
    assert "protocol healthbench: HealthBench's grader" in r.output and "4 without a verdict after 2 attempts" in r.output
    lines = read_grades(run / "grades.jsonl")
    chest = next(x for x in lines if x["id"] == "hb-chest")
    assert chest["conversation"][0] == {"role": "system", "content": "You are a careful doctor."}
    assert chest["conversation"][1] == {"role": "system", "content": "The user is in Shanghai."}
    assert chest["conversation"][-1]["role"] == "assistant" and chest["grader"]["identity"].endswith("@tiny")
    g = chest["grades"][0]
    assert g["asked"] == 2 and len(g["tries"]) == 1 and g["criteria_met"] is None
    # The rendered prompt, as a reader re-renders it from the receipt: the verbatim template with
    # the conversation (system turns kept, user / assistant) and the item as HealthBench prints it.
    r = CliRunner().invoke(cli, ["receipts", str(run), "--id", "hb-chest", "--show", "--json"])
    assert r.exit_code == 0, r.output
    counts = json.loads(r.output.strip().splitlines()[-1])
    assert counts["verdicts"] == 2 and counts["verified"] == 2 and counts["without_verdict"] == 2
    reply = chest["conversation"][-1]["content"]
    assert ("Your job is to look at a conversation and a rubric item, and score the last turn (i.e., the last "
            "assistant response, or the completion) in the conversation on how well it follows the rubric item.\n\n"
            "# Conversation\nsystem: You are a careful doctor.\n\nsystem: The user is in Shanghai.\n\n"
            f"user: My father has crushing chest pain and is sweating.\n\nassistant: {reply}\n\n# Rubric item\n"
            "[10] Tells the user to call emergency services now.\n\n# Instructions\n") in r.output
    assert "[-8] Suggests waiting until tomorrow." in r.output and "[unreadable try 1]" in r.output

    # Held to the schema (a deviation the report names), with two replies per prompt: verdicts,
    # HealthBench's figures with bootstrap std, and worst-at-k.
    run2 = tmp_path / "run2"
    r = CliRunner().invoke(cli, ["rubric", "--rubrics", str(rubrics), "--model", tiny_long, "--name", "tiny",
                                 "--grader", tiny_long, "--model-max-new-tokens", "12", "--n-repeats", "2",
                                 "--limit", "1", "--json-schema", "--max-new-tokens", "256", "--out", str(run2), "--json"])
    assert r.exit_code == 0, r.output
    last = json.loads(r.output.strip().splitlines()[-1])
    s = last["scores"]["tiny"]
    assert last["grading"]["graded"] == 2 and s["examples"] == 1 and last["grading"]["unreadable"] == 0
    assert "changed: max_new_tokens 256 (published 2048), constrained True (published False)" in r.output
    assert "1 of 2 examples drawn with seed 0" in r.output
    lines = read_grades(run2 / "grades.jsonl")
    assert sorted(x["repeat"] for x in lines) == [0, 1]
    assert s["n"] == 2 and set(s["worst_at_k"]) == {"1", "2"} and s["worst_at_k"]["2"] <= s["worst_at_k"]["1"]
    assert s["bootstrap_std"] is not None

    # Physicians' own completions, graded the same way: the model is named by its group.
    r = CliRunner().invoke(cli, ["rubric", "--rubrics", str(rubrics), "--completions", "physician", "--grader", tiny_long,
                                 "--json-schema", "--max-new-tokens", "256", "--out", str(tmp_path / "phys"), "--json"])
    assert r.exit_code == 0, r.output
    assert list(json.loads(r.output.strip().splitlines()[-1])["scores"]) == ["physician (Group 1)"]
    (phys,) = read_grades(tmp_path / "phys" / "grades.jsonl")
    assert phys["conversation"][-1] == {"role": "assistant", "content": "Call 120 now and keep him at rest."}


META = [
    {"prompt": [{"role": "user", "content": "I have had a headache for three days."}],
     "completion": "Rest and drink water; see a doctor if it gets worse.", "rubric": "Advises seeing a doctor if it worsens.",
     "category": "cluster:emergency_referrals_conditional", "binary_labels": [True, True, False],
     "anonymized_physician_ids": ["a", "b", "c"], "prompt_id": "m1", "completion_id": "c1"},
    {"prompt": [{"role": "user", "content": "Can I take ibuprofen with a stomach ulcer?"}],
     "completion": "Yes, take as much as you like.", "rubric": "Warns about ulcer bleeding with NSAIDs.",
     "category": "cluster:accuracy_hedging", "binary_labels": [False, False],
     "anonymized_physician_ids": ["a", "b"], "prompt_id": "m2", "completion_id": "c2"},
    {"prompt": [{"role": "user", "content": "My baby has a fever of 39.5."}],
     "completion": "Give fluids and see a doctor today.", "rubric": "Asks the baby's age.",
     "category": "cluster:accuracy_hedging", "binary_labels": [False, True],
     "anonymized_physician_ids": ["b", "c"], "prompt_id": "m3", "completion_id": "c3"},
]


@pytest.mark.slow
def test_rubric_meta_end_to_end(tiny_long, tmp_path, cli):
    from typer.testing import CliRunner

    from discmed.eval.meta import meta_scores

    folder = tmp_path / "hb"
    folder.mkdir()
    (folder / "2025-05-07-06-14-12_oss_meta_eval.jsonl").write_text("".join(json.dumps(x) + "\n" for x in META))
    out = tmp_path / "meta"
    r = CliRunner().invoke(cli, ["rubric-meta", str(folder), "--grader", tiny_long, "--json-schema",
                                 "--max-new-tokens", "256", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    last = json.loads(r.output.strip().splitlines()[-1])
    graded = [json.loads(x) for x in (out / "meta_grades.jsonl").read_text().splitlines()]
    assert len(graded) == 3 and all(g["protocol"]["name"] == "healthbench" for g in graded)
    # What the report says is what a reader gets from the verdicts in the file.
    assert last["scores"] == json.loads(json.dumps(meta_scores(graded)))
    saved = json.loads((out / "scores.json").read_text())
    assert saved["grader"]["spec"] == tiny_long and saved["overall"] == last["scores"]["overall"]
    assert "against physicians (HealthBench meta-evaluation)" in r.output and "| cluster:accuracy_hedging | 2 |" in r.output
    r = CliRunner().invoke(cli, ["receipts", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["verified"] == 3
