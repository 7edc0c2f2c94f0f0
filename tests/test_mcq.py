"""Exam evaluation on the real tiny model: logprob scores, runs, resume, generate mode, the CLI."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from discmed.eval.loaders import load_questions, load_task
from discmed.eval.mcq import build_prompt, choice_strings, run_mcq
from discmed.process import run_watched


@pytest.fixture(scope="module")
def backend(tiny_model):
    import torch

    from discmed.backend import load_backend

    torch.set_num_threads(1)
    return load_backend(f"hf:{tiny_model}", batch_size=4)


@pytest.fixture(scope="module")
def cmmlu(shared_data):
    task = load_task("cmmlu")
    qs = load_questions(task, "test", shared_data / "cmmlu", ["anatomy", "virology"])
    return task, [q for s in ("anatomy", "virology") for q in [x for x in qs if x.subset == s][:6]]


def direct_logprob(backend, prompt: str, choice: str) -> float:
    """log P(choice | prompt) from one unbatched forward pass, splitting the tokens the way
    lm-evaluation-harness does: encode(prompt + choice), minus the tokens of encode(prompt)."""
    import torch

    tok = backend.tokenizer
    ctx = tok(prompt)["input_ids"]
    whole = tok(prompt + choice)["input_ids"]
    cont = whole[len(ctx) :]
    with torch.inference_mode():
        logits = backend.model(input_ids=torch.tensor([ctx + cont[:-1]])).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)
    return sum(lp[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont))


def test_logprob_scores_equal_a_direct_forward_pass(backend, cmmlu):
    task, qs = cmmlu
    prompts = [build_prompt(q, task, []) for q in qs[:5]]
    got = backend.choice_logprobs(prompts, ["A", "B", "C", "D"])
    for p, row in zip(prompts, got, strict=True):
        want = [direct_logprob(backend, p, c) for c in "ABCD"]
        assert row == pytest.approx(want, abs=1e-4)
    # multi-token continuations (CMB's letter sets) go through the same definition
    combos = ["A", "AB", "ACD"]
    row = backend.choice_logprobs(prompts[:1], combos)[0]
    assert row == pytest.approx([direct_logprob(backend, prompts[0], c) for c in combos], abs=1e-4)


def test_logprob_scores_through_discmed_serve_equal_the_local_ones(backend, cmmlu, tiny_server):
    """`--mode logprob` against an endpoint: the openai backend splits each (prompt, choice) as
    the local backend does (the server's /tokenize), and the server's echoed prompt logprobs
    give the same scores, multi-token continuations included."""
    from discmed.backend import load_backend

    task, qs = cmmlu
    prompts = [build_prompt(q, task, []) for q in qs[:3]]
    api = load_backend(f"openai:{tiny_server}@tiny")
    for choices in (["A", "B", "C", "D"], ["A", "AB", "ACD"]):
        got = api.choice_logprobs(prompts, choices)
        for row, want in zip(got, backend.choice_logprobs(prompts, choices), strict=True):
            assert row == pytest.approx(want, abs=1e-4)


def test_run_records_every_question_and_resumes(backend, cmmlu, tmp_path):
    task, qs = cmmlu
    settings = {"task": "cmmlu", "model": "tiny", "mode": "logprob", "shots": 0}
    first = run_mcq(backend, task, qs, tmp_path / "run", settings=settings, batch_size=4, progress=False)
    full = json.loads((tmp_path / "run" / "results.json").read_text(encoding="utf-8"))
    assert first["n"] == 12 and first["resumed"] == 0 and list(first["subsets"]) == ["anatomy", "virology"]
    for r in full["questions"]:
        assert r["prompt"].endswith("答案：") and set(r["logprobs"]) == {"A", "B", "C", "D"}
        assert r["extracted"] == max(r["logprobs"], key=r["logprobs"].get)
        assert r["verdict"] == ("correct" if r["extracted"] == r["answer"] else "wrong")
    s = first["subsets"]["anatomy"]
    assert s["accuracy"] == s["correct"] / 6 and s["ci95"][0] <= s["accuracy"] <= s["ci95"][1]
    assert s["stderr"] == pytest.approx((s["accuracy"] * (1 - s["accuracy"]) / 5) ** 0.5)
    # CMMLU offers four options: chance is 25%; every answer is a letter, counted per letter
    assert s["chance"] == 0.25 and all(r["k"] == 4 for r in full["questions"])
    assert sum(s["predictions"].values()) == 6 and set(s["predictions"]) <= set("ABCD")
    assert s["predictions"] == dict(sorted(Counter(r["extracted"] for r in full["questions"][:6]).items()))
    top = max(first["predictions"].values())
    table = (tmp_path / "run" / "table.md").read_text(encoding="utf-8")
    assert first["one_letter"] == (top / 12 > 0.5) == ("⚠" in table)
    assert "| tiny (0-shot, logprob)" in table and "| *chance (1/k)* | 25.00 | 25.00 | 25.00 |" in table

    # What an interrupt leaves: some finished lines and a half-written one, no results yet.
    journal = tmp_path / "run" / "answers.jsonl"
    lines = journal.read_text(encoding="utf-8").splitlines(keepends=True)
    journal.write_text("".join(lines[:5]) + lines[5][:40], encoding="utf-8")
    (tmp_path / "run" / "results.json").unlink()
    again = run_mcq(backend, task, qs, tmp_path / "run", settings=settings, batch_size=4, progress=False)
    assert again["resumed"] == 5
    redone = json.loads((tmp_path / "run" / "results.json").read_text(encoding="utf-8"))
    assert [r["extracted"] for r in redone["questions"]] == [r["extracted"] for r in full["questions"]]
    assert len(journal.read_text(encoding="utf-8").splitlines()) == 12

    with pytest.raises(ValueError, match=r"holds a run with other settings \(shots\)"):
        run_mcq(backend, task, qs, tmp_path / "run", settings={**settings, "shots": 5}, progress=False)


def test_multi_answer_logprob_picks_a_letter_set(backend, tmp_path):
    task = load_task("cmb-exam")
    rec = {
        "exam_type": "护理考试",
        "question": "下列属于无菌技术操作原则的是",
        "answer": "ABD",
        "question_type": "多项选择题",
        "option": {
            "A": "操作前洗手",
            "B": "无菌物品与非无菌物品分开放置",
            "C": "无菌包过期后烘干再用",
            "D": "一份无菌物品仅供一位患者使用",
        },
    }
    (tmp_path / "CMB-val").mkdir()
    (tmp_path / "CMB-val" / "CMB-val-merge.json").write_text(
        json.dumps([rec], ensure_ascii=False), encoding="utf-8"
    )
    qs = load_questions(task, "test", tmp_path)
    run_mcq(
        backend,
        task,
        qs,
        tmp_path / "run",
        settings={"model": "tiny", "mode": "logprob", "shots": 0},
        progress=False,
    )
    r = json.loads((tmp_path / "run" / "results.json").read_text(encoding="utf-8"))["questions"][0]
    assert len(r["logprobs"]) == 15 and r["extracted"] == max(r["logprobs"], key=r["logprobs"].get)
    assert choice_strings(qs[0], task)[-1] == "ABCD"


def test_generate_mode_extracts_from_the_reply(backend, cmmlu, tmp_path):
    from discmed.eval.extract import parse_choice

    task, qs = cmmlu
    summary = run_mcq(
        backend,
        task,
        qs[:4],
        tmp_path / "gen",
        settings={"model": "tiny", "mode": "generate"},
        mode="generate",
        max_new_tokens=12,
        batch_size=4,
        progress=False,
    )
    recs = json.loads((tmp_path / "gen" / "results.json").read_text(encoding="utf-8"))["questions"]
    assert len(recs) == 4
    for r, q in zip(recs, qs[:4], strict=True):
        assert isinstance(r["output"], str) and r["extracted"] == parse_choice(r["output"], q.options)
    # the tiny model rarely commits to a letter: whatever it did not answer is listed, and counted wrong
    assert summary["unparseable"] == [r["id"] for r in recs if r["extracted"] is None]


@pytest.mark.slow  # three commands in subprocesses: about 11 s on 2 cores
def test_cli_json_last_line_and_table(tiny_model, shared_data, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [
        str(Path(sys.executable).with_name("discmed")),
        "eval",
        "mcq",
        "--model",
        f"hf:{tiny_model}",
        "--task",
        "cmmlu",
        "--data-dir",
        str(shared_data / "cmmlu"),
        "--subsets",
        "genetics,nutrition",
        "--limit",
        "3",
        "--shots",
        "2",
        "--out",
        str(tmp_path / "run"),
        "--json",
    ]
    out = run_watched(cmd, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert (
        summary["n"] == 6 and list(summary["subsets"]) == ["genetics", "nutrition"] and summary["shots"] == 2
    )
    assert "| Model | genetics | nutrition | Average |" in out.stdout
    # n of N: three questions of each subset's 176 and 145 (--limit 3)
    assert f"| hf:{tiny_model} (2-shot, logprob) | 3 of 176 | 3 of 145 | 6 |" in out.stdout
    assert summary["subsets"]["genetics"]["N"] == 176 and "average_stderr" in summary
    rec = json.loads((tmp_path / "run" / "answers.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert rec["prompt"].count("答案：") == 3  # two answered shots, then the question

    table = subprocess.run(
        [cmd[0], "eval", "mcq-table", str(tmp_path / "run"), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert table.returncode == 0, table.stderr
    rows = json.loads(table.stdout.strip().splitlines()[-1])["rows"]
    assert list(rows) == [f"hf:{tiny_model} (2-shot, logprob)"]

    bad = subprocess.run(
        [cmd[0], "eval", "mcq", "--task", "cmmlu", "--json"],
        capture_output=True,
        text=True,
        env={k: v for k, v in env.items() if k != "DISCMED_DATA_CMMLU"},
        timeout=120,
    )
    assert bad.returncode == 2 and "--data-dir" in json.loads(bad.stdout.strip().splitlines()[-1])["error"]


@pytest.mark.slow  # starts discmed's own server (shared session fixture)
def test_generate_mode_through_an_openai_compatible_server(tiny_server, cmmlu, tmp_path):
    from discmed.backend import load_backend
    from discmed.eval.extract import parse_choice

    task, qs = cmmlu
    api = load_backend(f"openai:{tiny_server}@tiny")
    run_mcq(api, task, qs[:3], tmp_path / "api", settings={"model": "api"}, mode="generate",
            max_new_tokens=8, progress=False)  # fmt: skip
    recs = json.loads((tmp_path / "api" / "results.json").read_text(encoding="utf-8"))["questions"]
    assert [r["id"] for r in recs] == [q.id for q in qs[:3]]
    for r, q in zip(recs, qs[:3], strict=True):
        assert isinstance(r["output"], str) and r["extracted"] == parse_choice(r["output"], q.options)
    # logprob mode through the endpoint too: the server echoes the prompt's logprobs
    run_mcq(api, task, qs[:1], tmp_path / "lp", settings={"model": "api"}, progress=False)
    (rec,) = json.loads((tmp_path / "lp" / "results.json").read_text(encoding="utf-8"))["questions"]
    assert set(rec["logprobs"]) == {"A", "B", "C", "D"} and rec["extracted"] == max(rec["logprobs"], key=rec["logprobs"].get)


def test_a_folder_retrained_in_place_is_scored_anew(tiny_model, cmmlu, tmp_path, capfd):
    """Reproduction 1 for `eval mcq`: the run folder was reused whenever the settings strings
    matched, so new weights in the same folder reported "resumed 20" with the old answers."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    from discmed.backend import load_backend

    task, qs = cmmlu
    folder = tmp_path / "runs" / "x"
    shutil.copytree(tiny_model, folder)
    settings = {"model": f"hf:{folder}", "mode": "logprob", "shots": 0}
    first = run_mcq(load_backend(f"hf:{folder}"), task, qs[:3], tmp_path / "mcq", settings=settings, progress=False)
    results = tmp_path / "mcq" / "results.json"
    old_scores = [r["logprobs"] for r in json.loads(results.read_text(encoding="utf-8"))["questions"]]
    again = run_mcq(load_backend(f"hf:{folder}"), task, qs[:3], tmp_path / "mcq", settings=settings, progress=False)
    assert (first["resumed"], again["resumed"]) == (0, 3)  # same weights: resumed

    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        model.lm_head.weight.mul_(-1.0)  # new weights, same folder, same settings
    model.save_pretrained(folder)
    retrained = run_mcq(load_backend(f"hf:{folder}"), task, qs[:3], tmp_path / "mcq", settings=settings, progress=False)
    assert retrained["resumed"] == 0 and retrained["model_identity"] != first["model_identity"]
    assert "starting a new run" in capfd.readouterr().err
    new_scores = [r["logprobs"] for r in json.loads(results.read_text(encoding="utf-8"))["questions"]]
    assert new_scores != old_scores  # the new weights' answers, not the old ones'
    run = json.loads((tmp_path / "mcq" / "run.json").read_text(encoding="utf-8"))
    assert run["model_identity"] == retrained["model_identity"]
