"""`discmed eval score` on DISC's released judgements: DISC's published tables, to two decimals."""

import json

import pytest
import typer
from typer.testing import CliRunner

from discmed.eval.cli import register
from discmed.eval.score import draw_charts, markdown, read_categories, read_judgements, summarize

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
    return summarize(judgements, read_categories(eval_dir / "samples"))


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
    assert "| **Model** | **Proactivity** | **Accuracy** | **Helpfulness** | **Linguistic Quality** | **Average** |" in text
    assert "| **DISC-MedLLM** | 4.64 | 4.47 | 4.66 | 4.99 | 4.69 |" in text
    assert "| **Model** | **儿科** | **内科** | **外科** | **妇产科** | **男科** | **肿瘤科** |" in text
    assert "| **DISC-MedLLM** | 4.89 | 4.90 | 4.90 | 4.72 | 4.88 | 4.79 |" in text


def test_charts_written(summary, tmp_path):
    from PIL import Image

    paths = draw_charts(summary, tmp_path)
    assert sorted(p.name for p in paths) == sorted(
        f"{kind}_{s}.png" for kind in ("radar", "bars") for s in ("cmb-clin", "cmd", "cmid"))
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
    assert "(1 unparsed)" in markdown({"m": {"cmd": row}})


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
    assert (tmp_path / "report" / "report.md").read_text(encoding="utf-8").startswith("#### Results of CMB-clin")
    assert json.loads((tmp_path / "report" / "scores.json").read_text(encoding="utf-8")) == data
    assert (tmp_path / "report" / "radar_cmd.png").stat().st_size > 20_000


def test_chart_labels_without_a_cjk_font():
    from discmed.eval.score import _labels

    assert _labels(["儿科", "gpt-4", "新类别"], cjk=False) == ["Pediatrics", "gpt-4", "#3"]
    assert _labels(["儿科"], cjk=True) == ["儿科"]
