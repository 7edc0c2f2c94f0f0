"""The exam table in DISC's README layout, and the bootstrap interval."""

import json

from discmed.eval.mcq_report import bootstrap_ci, load_summaries, render_table


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
    assert table.split("\n95%")[0] == (
        "| Model | Clinic | CWM | NEEP306 | Average |\n"
        "|---|---|---|---|---|\n"
        "| disc-medllm (0-shot, logprob) | 50.00 | 25.00 | 60.00 | 45.00 |\n"
        "| qwen (3-shot, generate) | 75.00 | – | – | 75.00 |\n"
    )
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
