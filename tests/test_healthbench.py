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
