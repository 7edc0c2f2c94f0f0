"""The README's "Per stage, on a real model" walk, as a user types it, with the tiny model as
every model (the teacher, patient and judge served by `discmed serve`) and the real public
samples in ../shared/data. Each step is the real command line; the assertions are what a user
would check in its output: planted leaks gone, a data card whose funnel adds up and matches the
files, a dead teacher that stops with the endpoint named, reports that say which judge and how
many cases. When the README's commands change, change this walk with them."""

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


class Walk:
    """The walk's folder and its command line: `run("data", "load", …)` as a user runs it."""

    def __init__(self, folder: Path, teacher: str):
        self.dir, self.teacher = folder, teacher

    def run(self, *args, ok: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-m", "discmed", *map(str, args)], cwd=self.dir, capture_output=True,
                           text=True, timeout=600)
        if ok:
            assert r.returncode == 0, f"discmed {' '.join(map(str, args))}\n{r.stderr[-3000:]}"
        return r

    def json(self, *args) -> dict:
        return json.loads(self.run(*args, "--json").stdout.strip().splitlines()[-1])


def plant_leaks(shared: Path, out: Path) -> set[str]:
    """Training records that contain eval items: CMMLU test questions verbatim and lightly edited
    (options reordered and relabelled, inside a longer message), and two CMB-clin cases."""
    rows = []
    for f in sorted((shared / "cmmlu" / "test").glob("*.csv"))[:4]:
        with open(f, encoding="utf-8-sig", newline="") as fh:
            items = list(csv.reader(fh))[1:4]
        for n, q, a, b, c, d, ans in (row[:7] for row in items):
            rows.append({"_id": f"leak-{f.stem}-{n}", "source": "planted", "conversation": [
                {"role": "user", "content": f"{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}"},
                {"role": "assistant", "content": f"答案是{ans}。"}]})
            rows.append({"_id": f"leak-edited-{f.stem}-{n}", "source": "planted", "conversation": [
                {"role": "user", "content": f"医生您好，我在复习，想问一下：{q}（1）{d}（2）{c}（3）{b}（4）{a} 谢谢！"},
                {"role": "assistant", "content": "好的，我们一起看看。"}]})
    cases = json.loads((shared / "disc-medllm" / "eval" / "samples" / "CMB-cases.json").read_text(encoding="utf-8"))
    for c in cases[:2]:
        rows.append({"_id": f"leak-case-{c['id']}", "source": "planted", "conversation": [
            {"role": "user", "content": c["case"]}, {"role": "assistant", "content": "建议尽快就医。"}]})
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return {r["_id"] for r in rows}


@pytest.fixture(scope="module")
def walk(tiny_model, shared_data, tmp_path_factory):
    from discmed.process import served

    folder = tmp_path_factory.mktemp("walk")
    (folder / "data").mkdir()
    with served("tiny", folder / "serve.log", safety=False, name="tiny") as url:
        yield Walk(folder, f"openai:{url}@tiny")


def test_data_construction_and_its_card(walk, shared_data, free_port):
    S, T = shared_data, walk.teacher
    s = walk.json("data", "load", "disc", S / "disc-medllm" / "train" / "test_examples.jsonl", "-o", "data/disc.jsonl",
                  "--no-progress")
    assert s["records"] == 163 and s["bad_records"] == 0

    s = walk.json("data", "scrub", "data/disc.jsonl", "-o", "data/scrubbed.jsonl", "--no-progress")
    changes = lines(walk.dir / "data" / "scrubbed.jsonl.changes.jsonl")
    assert len(changes) == s["replaced_total"] > 0  # every replacement reviewable
    assert all({"_id", "message", "start", "end", "text", "type", "rule"} <= c.keys() for c in changes)

    # A dead teacher stops at once, with the endpoint and the cause, before any record.
    t0 = time.perf_counter()
    r = walk.run("data", "rewrite", "data/scrubbed.jsonl", "-o", "data/dead.jsonl", "--teacher",
                 f"openai:http://127.0.0.1:{free_port}/v1@tiny", "--no-progress", ok=False)
    assert r.returncode == 3 and time.perf_counter() - t0 < 30
    assert f"cannot reach the OpenAI-compatible endpoint at http://127.0.0.1:{free_port}/v1" in r.stderr
    assert not (walk.dir / "data" / "dead.jsonl").exists()

    s = walk.json("data", "rewrite", "data/scrubbed.jsonl", "-o", "data/rewritten.jsonl", "--teacher", T, "--limit", 8,
                  "--max-new-tokens", 64, "--no-progress")
    assert s["accepted"] + s["rejected"] == 8 and s["failed"] == 0  # the tiny teacher's rewrites fail the checks
    s = walk.json("data", "kgqa", S / "cmekg" / "train_example.json", "-o", "data/kgqa.jsonl", "--teacher", T,
                  "--limit", 4, "--max-new-tokens", 96, "--no-progress")
    assert s["entities"] == 4 and s["accepted"] + s["rejected"] == 4 and s["failed"] == 0

    planted = plant_leaks(S, walk.dir / "data" / "leaks.jsonl")
    s = walk.json("data", "dedup", "data/scrubbed.jsonl", "data/rewritten.jsonl", "data/kgqa.jsonl", "data/leaks.jsonl",
                  "-o", "data/dedup.jsonl", "--no-progress")
    s = walk.json("data", "decontam", "data/dedup.jsonl", "-o", "data/clean.jsonl", "--eval", S / "cmmlu",
                  "--eval", S / "cmb", "--eval", S / "disc-medllm" / "eval" / "samples", "--no-progress")
    removed = {r["_id"] for r in lines(walk.dir / "data" / "clean.jsonl.removed.jsonl")}
    assert removed == planted  # every planted leak, verbatim or edited, and nothing else
    assert not planted & {r["_id"] for r in lines(walk.dir / "data" / "clean.jsonl")}

    s = walk.json("data", "mix", "data/clean.jsonl", "-o", "data/sft.jsonl", "--no-progress")
    final = lines(walk.dir / "data" / "sft.jsonl")
    card = walk.json("data", "card", "data/sft.jsonl", "-o", "card")
    funnel = {f["step"]: f for f in card["funnel"]}
    assert list(funnel) == ["load", "scrub", "rewrite", "kgqa", "dedup", "decontam", "mix"] and card["warnings"] == []
    # The funnel adds up and matches the files on disk.
    assert funnel["load"]["out"] == len(lines(walk.dir / "data" / "disc.jsonl")) == 163
    assert funnel["rewrite"]["in"] == 8 and funnel["rewrite"]["out"] == len(lines(walk.dir / "data" / "rewritten.jsonl"))
    assert funnel["dedup"]["in"] == 163 + funnel["rewrite"]["out"] + funnel["kgqa"]["out"] + len(planted)
    assert funnel["decontam"]["in"] == funnel["dedup"]["out"] == len(lines(walk.dir / "data" / "dedup.jsonl"))
    assert funnel["decontam"]["in"] - funnel["decontam"]["out"] == len(planted)
    assert funnel["mix"]["out"] == len(final) == card["records"]
    md = (walk.dir / "card" / "DATA_CARD.md").read_text(encoding="utf-8")
    assert "contain an evaluation item 26" in md and "scrubbed.jsonl.changes.jsonl" in md


def test_training_and_evaluation_reports(walk, shared_data):
    S, T = shared_data, walk.teacher
    samples = S / "disc-medllm" / "eval" / "samples"
    data = walk.dir / "data" / "sft.jsonl"
    if not data.exists():  # the data test above failed; train on the sample as it is
        data = S / "disc-medllm" / "train" / "test_examples.jsonl"
    s = walk.json("train", "sft", "--config", ROOT / "recipes" / "tiny.yaml", f"data=[{data}]", "output_dir=runs/sft",
                  "max_steps=4", "save_steps=1000")
    assert s["steps"] == 4 and (walk.dir / "runs" / "sft" / "config.json").exists()

    r = walk.run("eval", "mcq", "--model", "runs/sft", "--task", "cmmlu", "--data-dir", S / "cmmlu", "--limit", 8,
                 "--out", "runs/mcq/sft", "--json")
    mcq = json.loads(r.stdout.strip().splitlines()[-1])
    assert "*chance (1/k)*" in r.stdout and "Answers given" in r.stdout  # chance line and letter distribution
    assert all(sub["n"] == 8 and sub["N"] > 8 and "stderr" in sub for sub in mcq["subsets"].values())  # n of N
    assert mcq["average_stderr"] > 0 and mcq["chance"] == 0.25 and sum(mcq["predictions"].values()) == mcq["n"]

    s = walk.json("eval", "consult", "--doctor", "runs/sft", "--patient", T, "--set", "cmb-clin", "--samples", samples,
                  "--limit", 4, "--turns", 2, "--doctor-max-new-tokens", 48, "--patient-max-new-tokens", 32,
                  "--name", "sft", "--out", "runs/consult/sft_cmb-clin.json")
    assert s["dialogues"] + s["failed"] == 4
    s = walk.json("eval", "judge", "runs/consult/sft_cmb-clin.json", "--judge", T,
                  "--out", "runs/judge/result_sft_cmb-clin.jsonl")
    judged = lines(walk.dir / "runs" / "judge" / "result_sft_cmb-clin.jsonl")
    assert judged and all(j["judge"]["spec"] == T for j in judged)

    disc = S / "disc-medllm" / "eval" / "gpt4_scores" / "cmb-clin" / "result_DISC-MedLLM_cmb-clin_v2.jsonl"
    r = walk.run("eval", "score", "runs/judge", disc, "--samples", samples, "--out", "runs/report")
    report = (walk.dir / "runs" / "report" / "report.md").read_text(encoding="utf-8")
    # Every row says its judge and n of N, and a table of unlike rows says so above it.
    assert f"| {len(judged)} of 73 | {T} |" in report and "| 73 of 73 | gpt-4 (DISC's release) |" in report
    assert "**Not like for like:** judges differ" in report and "case counts differ" in report
    assert "95% intervals" in report
    strict = walk.run("eval", "score", "runs/judge", disc, "--samples", samples, "--out", "runs/strict", "--strict",
                      ok=False)
    assert strict.returncode == 2 and "judges differ" in strict.stderr
