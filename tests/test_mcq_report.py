"""The exam table in DISC's README layout; the standard errors, chance line, answer letters
and one-letter flag that say how far to trust it; the bootstrap interval."""

import itertools
import json

import pytest
import typer
from typer.testing import CliRunner

from discmed.eval.cli import register
from discmed.eval.mcq import summarize
from discmed.eval.mcq_report import bootstrap_ci, differences, load_summaries, one_letter, render_table


def fig(acc, lo, hi, n=100):
    return {"n": n, "correct": round(acc * n), "accuracy": acc, "ci95": [lo, hi], "unparseable": 0}


def test_runs_with_one_setting_merge_into_one_row_average_last():
    mlec = {
        "model": "disc-medllm",
        "mode": "logprob",
        "shots": 0,
        "subsets": {"Clinic": fig(0.5, 0.4, 0.6), "CWM": fig(0.25, 0.2, 0.3)},
    }
    neep = {"model": "disc-medllm", "mode": "logprob", "shots": 0, "subsets": {"NEEP306": fig(0.6, 0.5, 0.7)}}
    other = {"model": "qwen", "mode": "generate", "shots": 3, "subsets": {"Clinic": fig(0.75, 0.7, 0.8)}}
    table = render_table([mlec, neep, other])
    assert table.split("\n\n")[1] == (
        "| Model | Clinic | CWM | NEEP306 | Average |\n"
        "|---|---|---|---|---|\n"
        "| disc-medllm (0-shot, logprob) | 50.00 | 25.00 | 60.00 | 45.00 |\n"
        "| qwen (3-shot, generate) | 75.00 | – | – | 75.00 |\n"
        "| *chance (1/k)* | – | – | – | – |"
    )
    # qwen's Average is over one subset, disc-medllm's over three: said above the table
    assert table.split("\n\n")[0] == (
        "**Not like for like:** the Averages are over different subsets (disc-medllm (0-shot, logprob): "
        "3 of 3 subsets; qwen (3-shot, generate): 1 of 3 subsets). Compare these rows with care.")
    assert "| disc-medllm (0-shot, logprob) | 40.00–60.00 | 20.00–30.00 | 50.00–70.00 | |" in table


def test_bootstrap_interval_brackets_the_accuracy_and_narrows_with_n():
    small = [True] * 6 + [False] * 4
    large = small * 50
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s < 0.6 < hi_s and lo_l < 0.6 < hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 3
    # binomial standard error at n=500 is 0.0219: the 95% interval is about ±0.043
    assert abs((hi_l - lo_l) - 2 * 1.96 * (0.6 * 0.4 / 500) ** 0.5) < 0.015
    assert bootstrap_ci([True] * 20) == (1.0, 1.0)


def test_load_summaries_from_folders(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(
        json.dumps(
            {
                "model": "m",
                "mode": "logprob",
                "shots": 0,
                "subsets": {"a": fig(0.5, 0.4, 0.6)},
                "questions": [],
            }
        )
    )
    assert load_summaries([tmp_path / "run"])[0]["model"] == "m"
    (tmp_path / "x.json").write_text("{}")
    import pytest

    with pytest.raises(ValueError, match="not a `discmed eval mcq` results file"):
        load_summaries([tmp_path / "x.json"])
    with pytest.raises(ValueError, match="no results.json"):
        load_summaries([tmp_path])


_ids = itertools.count()


def rec(subset: str, answer: str, extracted: str | None, k: int = 4, multi: bool = False) -> dict:
    verdict = "unparseable" if extracted is None else ("correct" if extracted == answer else "wrong")
    return {"id": f"{subset}-{next(_ids)}", "subset": subset, "multi": multi, "k": k,
            "answer": answer, "extracted": extracted, "verdict": verdict}


# Subset a: 3 of 4 right; subset b: 1 of 2 right (one reply unreadable).
RECORDS = [rec("a", "A", "A"), rec("a", "B", "B"), rec("a", "C", "C"), rec("a", "D", "A"),
           rec("b", "A", "A"), rec("b", "B", None)]


def test_standard_errors_equal_lm_evals_by_hand():
    s = summarize(RECORDS, {"model": "m", "mode": "logprob", "shots": 0}, ["a", "b"])
    a, b = s["subsets"]["a"], s["subsets"]["b"]
    # lm-eval: sqrt(p(1-p)/(n-1)) — a: sqrt(.75 * .25 / 3) = .25; b: sqrt(.5 * .5 / 1) = .5
    assert a["stderr"] == pytest.approx(0.25) and b["stderr"] == pytest.approx(0.5)
    # the unweighted average of subsets (.625), its stderr sqrt(.25² + .5²) / 2 = sqrt(.3125) / 2
    assert s["average"] == pytest.approx(0.625) and s["average_stderr"] == pytest.approx(0.2795084971874737)
    # pooled across questions: 4 of 6, sqrt((2/3)(1/3)/5) = sqrt(2/45)
    assert s["micro"] == pytest.approx(4 / 6) and s["micro_stderr"] == pytest.approx(0.21081851067789195)
    assert a["predictions"] == {"A": 2, "B": 1, "C": 1} and b["predictions"] == {"A": 1, "none": 1}
    assert a["answers"] == {"A": 1, "B": 1, "C": 1, "D": 1}
    assert s["predictions"] == {"A": 3, "B": 1, "C": 1, "none": 1}
    assert s["top_prediction"] == {"letter": "A", "count": 3, "share": 0.5} and s["one_letter"] is False
    assert a["chance"] == 0.25 and s["chance"] == 0.25
    # one question: no spread to measure
    one = summarize(RECORDS[:1], {"model": "m", "mode": "logprob", "shots": 0}, ["a"])
    assert one["subsets"]["a"]["stderr"] is None and one["average_stderr"] is None


def test_chance_line_is_one_over_k():
    five = [rec("x", "A", "B", k=5), rec("x", "C", "C", k=5)]
    multi = [rec("y", "AB", "AB", k=4, multi=True)]  # a letter set of 4 options: 1 in 15
    s = summarize(five + multi, {"model": "m", "mode": "logprob", "shots": 0}, ["x", "y"])
    assert s["subsets"]["x"]["chance"] == pytest.approx(0.2) and s["subsets"]["y"]["chance"] == pytest.approx(1 / 15)
    table = render_table([s])
    assert "| *chance (1/k)* | 20.00 | 6.67 | 13.33 |" in table
    # a journal line from before discmed recorded k: the chance line is left blank, not guessed
    old = {k: v for k, v in five[0].items() if k != "k"}
    assert summarize([old], {"model": "m", "mode": "logprob", "shots": 0}, ["x"])["subsets"]["x"]["chance"] is None


def test_one_letter_flag_fires_on_a_biased_run_only():
    settings = {"model": "m", "mode": "logprob", "shots": 5}
    keys = "ABCD" * 5
    biased = summarize([rec("s", k, "A") for k in keys[:-2]] + [rec("s", "C", "C"), rec("s", "D", "B")], settings, ["s"])
    answers = "ABCDBCDA" "ABCDBCDA" "ABCD"  # each letter 5 times, 12 of 20 right
    balanced = summarize([rec("s", k, a) for k, a in zip(keys, answers, strict=True)], {**settings, "model": "b"}, ["s"])
    assert biased["one_letter"] is True and balanced["one_letter"] is False
    assert one_letter(biased["subsets"]) == ("A", 18, 20) and one_letter(balanced["subsets"]) is None
    table = render_table([biased, balanced])
    assert "| m (5-shot, logprob) ⚠ A for 90% | 30.00 | 30.00 |" in table
    assert "| b (5-shot, logprob) | 60.00 | 60.00 |" in table
    assert "| b (5-shot, logprob) | 25.0 (25.0) | 25.0 (25.0) | 25.0 (25.0) | 25.0 (25.0) | 0.0 |" in table
    assert "⚠ m (5-shot, logprob) answers A for 18 of 20 questions" in table
    assert "⚠ b" not in table
    # the letters table: share of answers per letter, the keys' share in brackets
    assert "| m (5-shot, logprob) | 90.0 (25.0) | 5.0 (25.0) | 5.0 (25.0) | 0.0 (25.0) | 0.0 |" in table
    # exactly half is not "more than half"
    half = summarize([rec("s", "A", "A"), rec("s", "B", "A"), rec("s", "C", "C"), rec("s", "D", "D")], settings, ["s"])
    assert half["one_letter"] is False


def test_table_shows_n_of_n_and_stderr():
    s = summarize(RECORDS, {"model": "m", "mode": "logprob", "shots": 0}, ["a", "b"], available={"a": 40, "b": 2})
    table = render_table([s])
    assert "| m (0-shot, logprob) | 4 of 40 | 2 of 2 | 6 |" in table
    assert "| m (0-shot, logprob) | 25.00 | 50.00 | 27.95 |" in table  # standard errors, %
    assert "| m (0-shot, logprob) | 6 | 66.67 | 21.08 |" in table  # micro and its pooled stderr


def write_run(folder, model: str, records: list[dict], identity: str = "m@1"):
    folder.mkdir(parents=True)
    s = summarize(records, {"model": model, "mode": "logprob", "shots": 0, "model_identity": identity},
                  list(dict.fromkeys(r["subset"] for r in records)))
    (folder / "results.json").write_text(json.dumps({**s, "questions": records}), encoding="utf-8")
    return folder


def test_mcq_table_warns_on_mixed_rows_and_strict_refuses(tmp_path):
    full = write_run(tmp_path / "full", "x", RECORDS)
    cut = write_run(tmp_path / "cut", "y", RECORDS[:2] + RECORDS[4:])  # 2 of subset a's 4 questions
    assert differences(load_summaries([full, cut])) == [
        "a scored on different numbers of questions (x (0-shot, logprob): 4 of 4; y (0-shot, logprob): 2 of 2)"]
    app = typer.Typer()
    register(app)
    out = CliRunner().invoke(app, ["mcq-table", str(full), str(cut)])
    assert out.exit_code == 0 and out.output.startswith("**Not like for like:** a scored on different numbers")
    strict = CliRunner().invoke(app, ["mcq-table", str(full), str(cut), "--strict", "--json"])
    assert strict.exit_code == 2
    assert json.loads(strict.output.strip().splitlines()[-1])["error"].startswith(
        "--strict: rows that do not compare — a scored on different numbers of questions")
    same = CliRunner().invoke(app, ["mcq-table", str(full), str(write_run(tmp_path / "z", "z", RECORDS)),
                                    "--strict", "--json"])
    assert same.exit_code == 0, same.output
    data = json.loads(same.output.strip().splitlines()[-1])
    assert data["stderr"]["x (0-shot, logprob)"]["a"] == pytest.approx(0.25) and data["not_like_for_like"] == []
    assert data["n_of_N"]["z (0-shot, logprob)"] == {"a": [4, 4], "b": [2, 2]}
    # the same subsets and counts, other questions; and one row merging two sets of weights
    other = [dict(r, id=r["id"] + "'") for r in RECORDS]
    assert differences(load_summaries([full, write_run(tmp_path / "o", "o", other)])) == [
        "a scored on as many but different questions", "b scored on as many but different questions"]
    again = write_run(tmp_path / "x2", "x", [dict(r, subset="c") for r in RECORDS[:2]], identity="m@2")
    assert differences(load_summaries([full, again])) == [
        "x (0-shot, logprob) merges runs of different weights (m@1, m@2)"]
