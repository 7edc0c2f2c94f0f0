"""Exam scoring over HTTP: lm-eval's `local-completions` against `discmed serve`, vs `discmed
eval mcq` in process, on CMMLU's medical subjects.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mcq_over_http.py [--limit 20]

lm-evaluation-harness scores a multiple-choice question by the loglikelihood of each choice
after the prompt; over an API it asks `/v1/completions` for the prompt's token logprobs
(`echo`, `logprobs`, token-id prompts). The bar: its predicted letters through discmed's
server are the same as `discmed eval mcq --mode logprob` computes in process with the hf
backend (100% agreement), on the same tiny model, prompts and zero-shot setting (the task
YAML of benchmarks/mcq_vs_lm_eval.py). Both wall-clock times are printed; the ratio is the
agreement, not a speed.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from mcq_vs_lm_eval import LM_EVAL_TASK, ROOT, timed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cmmlu"))
    ap.add_argument("--limit", type=int, default=None, help="only the first N questions per subject")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--work", default=None)
    args = ap.parse_args()

    from discmed.eval.loaders import load_task
    from discmed.process import served
    from discmed.tiny import ensure_tiny

    tiny = ensure_tiny()
    data = Path(args.data).resolve()
    task = load_task("cmmlu")
    work = Path(args.work or tempfile.mkdtemp(prefix="mcq-http-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "HF_DATASETS_CACHE": str(work / "hf-datasets")}  # fmt: skip
    tasks_dir = work / "lm_eval_tasks"
    tasks_dir.mkdir(exist_ok=True)
    names = []
    for subject, zh in task.subsets.items():
        name = f"discmed_cmmlu_{subject}"
        names.append(name)
        description = json.dumps(task.description.format(subject=zh, kind="单项选择题"), ensure_ascii=False)
        (tasks_dir / f"{name}.yaml").write_text(
            LM_EVAL_TASK.format(task=name, test=data / "test" / f"{subject}.csv", dev=data / "dev" / f"{subject}.csv",
                                description=description),
            encoding="utf-8",
        )  # fmt: skip
    limit = ["--limit", str(args.limit)] if args.limit else []
    ours_dir = work / "discmed"
    discmed_cmd = [str(Path(sys.executable).with_name("discmed")), "eval", "mcq", "--model", f"hf:{tiny}", "--task",
                   "cmmlu", "--data-dir", str(data), "--mode", "logprob", "--shots", "0", "--batch-size",
                   str(args.batch_size), *limit, "--out", str(ours_dir), "--json"]  # fmt: skip
    t_ours, _ = timed(discmed_cmd, env, work / "discmed.log")

    lm_out = work / "lm_eval"
    with served("tiny", work / "serve.log", safety=False) as url:
        model_args = (f"base_url={url}/completions,model=tiny,tokenizer={tiny},tokenizer_backend=huggingface,"
                      "tokenized_requests=True,num_concurrent=4,max_retries=1")  # fmt: skip
        lm_cmd = [sys.executable, "-m", "lm_eval", "--model", "local-completions", "--model_args", model_args,
                  "--tasks", ",".join(names), "--include_path", str(tasks_dir), "--num_fewshot", "0",
                  "--batch_size", str(args.batch_size),
                  *limit, "--log_samples", "--output_path", str(lm_out)]  # fmt: skip
        t_lm, _ = timed(lm_cmd, env, work / "lm_eval.log")

    ours = json.loads((ours_dir / "results.json").read_text(encoding="utf-8"))["questions"]
    by_pos = {}
    for subject in task.subsets:
        for pos, r in enumerate(x for x in ours if x["subset"] == subject):
            by_pos[(subject, pos)] = r
    same = total = 0
    max_diff = 0.0
    for subject in task.subsets:
        files = sorted(glob.glob(str(lm_out / "**" / f"samples_discmed_cmmlu_{subject}_*.jsonl"), recursive=True))
        if not files:
            sys.exit(f"no lm_eval samples for {subject} under {lm_out}")
        for line in Path(files[-1]).read_text(encoding="utf-8").splitlines():
            s = json.loads(line)
            lls = [float(r[0]) for r in s["filtered_resps"]]
            theirs = "ABCD"[max(range(4), key=lambda i: lls[i])]
            mine = by_pos[(subject, s["doc_id"])]
            total += 1
            same += theirs == mine["extracted"]
            max_diff = max(max_diff, *(abs(a - mine["logprobs"][k]) for a, k in zip(lls, "ABCD", strict=True)))
    agreement = same / total
    print(f"questions: {total}; letters agreeing: {same}/{total} = {agreement:.4f} (goal 1.0)")
    print(f"largest |log-prob difference| on any choice: {max_diff:.2e}")
    print(f"wall-clock: discmed eval mcq {t_ours:.1f} s in process, lm_eval over HTTP {t_lm:.1f} s")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; outputs in {work}")
    print(json.dumps({
        "benchmark": "mcq_over_http", "discmed": same, "peer": total, "unit": "questions with the same letter",
        "ratio": round(agreement, 4), "goal": 1.0, "met": agreement == 1.0, "max_logprob_diff": max_diff,
        "wall_s": {"discmed_in_process": round(t_ours, 1), "lm_eval_over_http": round(t_lm, 1)},
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
