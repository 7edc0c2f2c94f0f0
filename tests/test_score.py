"""`discmed eval score` on DISC's released judgements: DISC's published tables, to two decimals."""

import json

import pytest
import typer
from typer.testing import CliRunner

from discmed.eval.cli import register
from discmed.eval.score import (
    differences,
    draw_charts,
    judge_of,
    markdown,
    read_case_sets,
    read_categories,
    read_judgements,
    summarize,
)

CRIT = ("Proactivity", "Accuracy", "Helpfulness", "Linguistic Quality")

# DISC-MedLLM README, "Results of CMB-clin": Proactivity, Accuracy, Helpfulness, Linguistic
# Quality, Average — keyed by the model names in the released files.
DISC_CMB_CLIN = {
    "gpt-3.5-turbo": (4.30, 4.53, 4.55, 5.00, 4.60),
    "gpt-4": (4.15, 4.70, 4.75, 4.96, 4.64),
    "baichuan-chat": (4.30, 4.58, 4.73, 4.95, 4.64),
    "bianque-v2": (3.97, 4.36, 4.37, 4.81, 4.38),
    "huatuo-chat": (4.40, 4.62, 4.74, 4.96, 4.68),
    "DISC-MedLLM": (4.64, 4.47, 4.66, 4.99, 4.69),
}
# DISC published CMD and CMID only as figures; these are the released judgements' means (the
# numbers behind those figures), computed by a separate throwaway script when this was written.
CMD_MEAN = {"DISC-MedLLM": 4.85, "gpt-4": 4.92, "gpt-3.5-turbo": 4.86, "baichuan-chat": 4.80,
            "huatuo-chat": 4.84, "bianque-v2": 4.74}
CMID_MEAN = {"DISC-MedLLM": 4.87, "gpt-4": 4.92, "gpt-3.5-turbo": 4.91, "baichuan-chat": 4.85,
             "huatuo-chat": 4.87, "bianque-v2": 4.77}


@pytest.fixture(scope="module")
def eval_dir(shared_data):
    return shared_data / "disc-medllm" / "eval"


@pytest.fixture(scope="module")
def summary(eval_dir):
    judgements = read_judgements(sorted((eval_dir / "gpt4_scores").glob("*/*.jsonl")))
    return summarize(judgements, read_categories(eval_dir / "samples"), read_case_sets(eval_dir / "samples"))


def two(x: float) -> str:
    return f"{x:.2f}"


@pytest.mark.parametrize("model", sorted(DISC_CMB_CLIN))
def test_cmb_clin_table_matches_disc_readme(summary, model):
    row = summary[model]["cmb-clin"]
    assert row["n"] == 73 and row["unparsed"] == 0
    got = [two(row[c]) for c in CRIT] + [two(row["mean"])]
    assert got == [two(x) for x in DISC_CMB_CLIN[model]]


def test_cmd_and_cmid_rows(summary):
    assert {m: round(summary[m]["cmd"]["mean"], 2) for m in CMD_MEAN} == CMD_MEAN
    assert {m: round(summary[m]["cmid"]["mean"], 2) for m in CMID_MEAN} == CMID_MEAN
    assert summary["gpt-4"]["cmd"]["n"] == 121  # DISC judged one extra CMD case for gpt-4
    assert two(summary["DISC-MedLLM"]["cmd"]["Proactivity"]) == "4.74"
    assert two(summary["gpt-4"]["cmid"]["Helpfulness"]) == "4.99"


def test_per_category_means(summary):
    cmd = summary["DISC-MedLLM"]["cmd"]
    assert cmd["by_n"] == {"儿科": 20, "内科": 20, "外科": 20, "妇产科": 20, "男科": 20, "肿瘤科": 20}
    assert {k: two(v) for k, v in cmd["by"].items()} == {
        "儿科": "4.89", "内科": "4.90", "外科": "4.90", "妇产科": "4.72", "男科": "4.88", "肿瘤科": "4.79"}
    # the 121st gpt-4 CMD case (0-33275) is not in the samples file: counted, not invented
    assert summary["gpt-4"]["cmd"]["unmatched"] == 1
    cmid = summary["bianque-v2"]["cmid"]
    assert cmid["by_n"] == {"病症": 30, "药物": 30, "治疗方案": 30, "其他": 30}
    assert {k: two(v) for k, v in cmid["by"].items()} == {"病症": "4.77", "药物": "4.77", "治疗方案": "4.75", "其他": "4.80"}
    # every category mean is the mean of its dialogues' four-criterion means
    for m in summary:
        for name in ("cmd", "cmid"):
            row = summary[m][name]
            pooled = sum(row["by"][c] * row["by_n"][c] for c in row["by"]) / sum(row["by_n"].values())
            if not row["unmatched"]:
                assert pooled == pytest.approx(row["mean"])


def test_markdown_has_disc_layout(summary):
    text = markdown(summary)
    assert ("| **Model** | **Proactivity** | **Accuracy** | **Helpfulness** | **Linguistic Quality** | **Average** "
            "| **Cases** | **Judge** |") in text
    assert "| **DISC-MedLLM** | 4.64 | 4.47 | 4.66 | 4.99 | 4.69 | 73 of 73 | gpt-4 (DISC's release) |" in text
    assert "| **Model** | **儿科** (20) | **内科** (20) | **外科** (20) | **妇产科** (20) | **男科** (20) | **肿瘤科** (20) |" in text
    assert "| **DISC-MedLLM** | 4.89 | 4.90 | 4.90 | 4.72 | 4.88 | 4.79 |" in text


def test_charts_written(summary, tmp_path):
    from PIL import Image

    paths = draw_charts(summary, tmp_path)
    assert sorted(p.name for p in paths) == sorted(
        f"{kind}_{s}.png" for kind in ("radar", "means") for s in ("cmb-clin", "cmd", "cmid"))
    for p in paths:
        assert p.stat().st_size > 20_000
        img = Image.open(p)
        assert img.width > 500 and img.height > 300
        # not blank: many distinct colours (six model series drawn)
        assert len(img.convert("RGB").getcolors(maxcolors=1 << 16) or []) > 50


def test_unparsed_lines_are_counted_not_averaged(tmp_path):
    path = tmp_path / "result_m_cmd.jsonl"
    lines = [
        {"id": "a", "model": "m", "source": "CMD", "scores": "Proactivity: 4\nAccuracy: 4\nHelpfulness: 4\nLinguistic Quality: 4", "prompt": "p"},
        {"id": "b", "model": "m", "source": "CMD", "scores": "医生表现不错", "prompt": "p"},
        {"id": "c", "model": "m", "source": "CMD", "scores": "主动性：2\n准确性：3\n帮助性：4\n语言质量：5", "prompt": "p"},
    ]
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    row = summarize(read_judgements([path]))["m"]["cmd"]
    assert row["n"] == 2 and row["unparsed"] == 1
    assert row["Proactivity"] == 3.0 and row["Linguistic Quality"] == 4.5 and row["mean"] == 3.75
    assert "| **m** | 3.00 | 3.50 | 4.00 | 4.50 | 3.75 | 2 of 3 (1 unparsed) | unknown judge |" in markdown({"m": {"cmd": row}})


def test_bad_line_names_file_line_and_field(tmp_path):
    from discmed.chat import DataError

    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "1", "model": "m", "source": "CMD", "scores": "Proactivity: 4"}\n{"id": "2", "model": "m"}\n')
    with pytest.raises(DataError) as e:
        read_judgements([path])
    assert str(e.value) == f"{path}:2: source: missing or not a string"


def test_cli_json_and_report(eval_dir, tmp_path):
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["score", str(eval_dir / "gpt4_scores"), "--samples", str(eval_dir / "samples"),
                                      "--out", str(tmp_path / "report"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert set(data) == set(DISC_CMB_CLIN)
    row = data["DISC-MedLLM"]["cmb-clin"]
    assert [two(row[c]) for c in CRIT] == ["4.64", "4.47", "4.66", "4.99"] and two(row["mean"]) == "4.69"
    assert row["by"] == {}
    assert set(data["huatuo-chat"]["cmid"]["by"]) == {"病症", "药物", "治疗方案", "其他"}
    assert row["n"] == row["N"] == 73 and row["N_from"] == "CMB-cases.json"
    assert row["judge"][0]["spec"] == "gpt-4" and row["judge"][0]["identity"] == "DISC-MedLLM release"
    lo, hi = row["ci95"]["mean"]
    assert lo < row["mean"] < hi and hi - lo < 0.3
    assert data["gpt-4"]["cmd"]["not_like_for_like"] and not row["not_like_for_like"]
    assert (tmp_path / "report" / "report.md").read_text(encoding="utf-8").startswith("#### Results of CMB-clin")
    assert json.loads((tmp_path / "report" / "scores.json").read_text(encoding="utf-8")) == data
    assert (tmp_path / "report" / "radar_cmd.png").stat().st_size > 20_000


def test_chart_labels_without_a_cjk_font():
    from discmed.eval.score import _labels

    assert _labels(["儿科", "gpt-4", "新类别"], cjk=False) == ["Pediatrics", "gpt-4", "#3"]
    assert _labels(["儿科"], cjk=True) == ["儿科"]


# --- what a table compares: judge, n of N, intervals -------------------------------------


def score_cli(*args: str):
    app = typer.Typer()
    register(app)
    return CliRunner().invoke(app, ["score", *args])


def sft_lines(eval_dir, tmp_path, n: int = 26, judge: dict | None = None):
    """Judgements of a model "sft" on the first n CMB-clin cases by the tiny judge, as
    `eval judge` writes them."""
    src = eval_dir / "gpt4_scores" / "cmb-clin" / "result_DISC-MedLLM_cmb-clin_v2.jsonl"
    lines = [json.loads(x) for x in src.read_text(encoding="utf-8").splitlines()[:n]]
    path = tmp_path / "result_sft_cmb-clin.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i, line in enumerate(lines):
            line.update(model="sft", scores=f"Proactivity: {1 + i % 3}\nAccuracy: 3\nHelpfulness: 3\nLinguistic Quality: 4",
                        judge=judge or {"spec": "tiny", "identity": "tiny-472b975418b3@8d79cd3c4a8c51cd"})
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path


def test_report_names_the_judge_and_n_of_n(eval_dir, tmp_path):
    out = score_cli(str(eval_dir / "gpt4_scores" / "cmb-clin"), "--samples", str(eval_dir / "samples"))
    assert out.exit_code == 0, out.output
    assert "| **DISC-MedLLM** | 4.64 | 4.47 | 4.66 | 4.99 | 4.69 | 73 of 73 | gpt-4 (DISC's release) |" in out.output
    assert "N = 73: the cases in CMB-cases.json." in out.output
    assert "Judges: `gpt-4` — DISC's released GPT-4 judgements" in out.output
    assert "Not like for like" not in out.output  # one judge, the same 73 cases: rows compare
    assert "95% intervals (percentile bootstrap over dialogues, 2,000 resamples):" in out.output
    # Without a samples folder N is the most cases any row has, and the report says so.
    alone = score_cli(str(sft_lines(eval_dir, tmp_path)), "--samples", str(tmp_path / "none"))
    assert "| **sft** | 1.96 | 3.00 | 3.00 | 4.00 | 2.99 | 26 of 26 | tiny |" in alone.output
    assert "N = 26: the most cases any row has (no samples file for this set)." in alone.output
    assert "Judges: `tiny` — identity tiny-472b975418b3@8d79cd3c4a8c51cd." in alone.output


def test_a_mixed_table_says_what_differs_above_it(eval_dir, tmp_path):
    out = score_cli(str(sft_lines(eval_dir, tmp_path)), str(eval_dir / "gpt4_scores" / "cmb-clin"),
                    "--samples", str(eval_dir / "samples"), "--out", str(tmp_path / "report"))
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    header = lines.index("| **Model** | **Proactivity** | **Accuracy** | **Helpfulness** | **Linguistic Quality** "
                         "| **Average** | **Cases** | **Judge** |")
    warning = lines[header - 2]
    assert warning.startswith("**Not like for like:** judges differ (sft: tiny (tiny-472b975418b3@8d79cd3c4a8c51cd); "
                              "DISC-MedLLM, baichuan-chat")
    assert "case counts differ (sft: 26 of 73; DISC-MedLLM" in warning
    assert "| **sft** | 1.96 | 3.00 | 3.00 | 4.00 | 2.99 | 26 of 73 | tiny |" in out.output
    assert "Cases with no judgement line (a failed consultation or judgement, or a --limit): sft: 47." in out.output
    assert (tmp_path / "report" / "report.md").read_text(encoding="utf-8").count("**Not like for like:**") == 1

    strict = score_cli(str(sft_lines(eval_dir, tmp_path)), str(eval_dir / "gpt4_scores" / "cmb-clin"),
                       "--samples", str(eval_dir / "samples"), "--strict", "--json")
    assert strict.exit_code == 2
    error = json.loads(strict.output.strip().splitlines()[-1])["error"]
    assert error.startswith("--strict: rows that do not compare — CMB-clin: judges differ (sft: tiny")
    assert "| **" not in strict.output  # refused: no table printed
    assert score_cli(str(eval_dir / "gpt4_scores" / "cmid"), "--samples", str(eval_dir / "samples"),
                     "--strict").exit_code == 0


def test_same_count_other_cases_and_same_judge_other_weights(eval_dir, tmp_path):
    def lines(model, ids, identity="tiny@aaaa"):
        return [{"id": i, "model": model, "source": "CMB-clin", "prompt": "p",
                 "scores": "Proactivity: 4\nAccuracy: 4\nHelpfulness: 4\nLinguistic Quality: 4",
                 "judge": {"spec": "tiny", "identity": identity}} for i in ids]

    path = tmp_path / "j.jsonl"
    rows = lines("x", ["0", "1", "2"]) + lines("y", ["0", "1", "5"])
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    summary = summarize(read_judgements([path]))
    assert differences(summary, "cmb-clin") == ["case ids differ (each row has 3 cases, 2 of them common to all rows)"]
    # The same spec with other weights (its identity changed) is another judge.
    path.write_text("".join(json.dumps(r) + "\n" for r in lines("x", ["0"]) + lines("y", ["0"], "tiny@bbbb")),
                    encoding="utf-8")
    assert differences(summarize(read_judgements([path])), "cmb-clin") == [
        "judges differ (x: tiny (tiny@aaaa); y: tiny (tiny@bbbb))"]


def test_who_judged_a_line(eval_dir, tmp_path):
    from discmed.chat import DataError

    released = json.loads((eval_dir / "gpt4_scores/cmd/result_gpt-4_cmd.jsonl").read_text().splitlines()[0])
    # DISC's release: no judge field, DISC's rubric as the prompt, in DISC's gpt4_scores/ folder
    assert judge_of(released, eval_dir / "gpt4_scores/cmd/result_gpt-4_cmd.jsonl", 1)["spec"] == "gpt-4"
    # the same line elsewhere cannot be told from an unlabelled run: said so, not guessed
    moved = judge_of(released, tmp_path / "result_gpt-4_cmd.jsonl", 1)
    assert moved["spec"] == "unknown judge" and "DISC's rubric" in moved["how"]
    assert judge_of({**released, "prompt": "评分"}, tmp_path / "x.jsonl", 1)["spec"] == "unknown judge"
    written = {**released, "judge": {"spec": "openai:http://h/v1@gpt-4o", "identity": "openai:http://h/v1@gpt-4o"}}
    assert judge_of(written, eval_dir / "gpt4_scores/x.jsonl", 1) == written["judge"]
    with pytest.raises(DataError) as e:
        judge_of({**released, "judge": "gpt-4"}, tmp_path / "bad.jsonl", 7)
    assert str(e.value).startswith(f"{tmp_path / 'bad.jsonl'}:7: judge: expected")


def test_intervals_bracket_the_means(summary):
    for model, sets in summary.items():
        for name, row in sets.items():
            for c in [*CRIT, "mean"]:
                lo, hi = row["ci95"][c]
                assert lo <= row[c] <= hi, (model, name, c)
    # every dialogue gave 5: nothing to resample, the interval is the point
    assert summary["gpt-3.5-turbo"]["cmb-clin"]["ci95"]["Linguistic Quality"] == [5.0, 5.0]


def _warning_pixels(png) -> int:
    """Pixels in the dark red of the 'not like for like' line."""
    import numpy as np
    from PIL import Image

    px = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int(((abs(px[..., 0] - 160) < 25) & (px[..., 1] < 60) & (px[..., 2] < 60)).sum())


def test_charts_carry_the_warning_only_when_mixed(eval_dir, tmp_path):
    mixed = summarize(read_judgements([sft_lines(eval_dir, tmp_path),
                                       eval_dir / "gpt4_scores/cmb-clin/result_gpt-4_cmb-clin.jsonl"]))
    alike = summarize(read_judgements([eval_dir / "gpt4_scores/cmb-clin/result_gpt-4_cmb-clin.jsonl",
                                       eval_dir / "gpt4_scores/cmb-clin/result_huatuo-chat_cmb-clin.jsonl"]))
    for name, summary, want in (("mixed", mixed, True), ("alike", alike, False)):
        (tmp_path / name).mkdir()
        for png in draw_charts(summary, tmp_path / name):
            assert (_warning_pixels(png) > 200) is want, (name, png.name)


def test_one_dialogue_has_no_interval(tmp_path):
    path = tmp_path / "result_m_cmd.jsonl"
    path.write_text(json.dumps({"id": "a", "model": "m", "source": "CMD", "prompt": "p",
                                "scores": "Proactivity: 4\nAccuracy: 3\nHelpfulness: 4\nLinguistic Quality: 5"}) + "\n")
    summary = summarize(read_judgements([path]))
    assert summary["m"]["cmd"]["ci95"]["mean"] == [None, None]  # nothing to resample: no interval, not a point
    assert "| **m** | — | — | — | — | — |" in markdown(summary)
    assert len(draw_charts(summary, tmp_path)) == 2
