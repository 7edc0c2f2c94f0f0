#!/usr/bin/env bash
# DISC-MedLLM's whole recipe at DISC's scale: the pipeline of record.
#
#   bash runs/disc.sh            # every stage, in order; each one resumes where it stopped
#
# One line per stage. The comment above each says what it costs and what it needs. The tiny
# version of the same pipeline, on 2 CPU cores in a few minutes, is `discmed demo`.
#
# Assumptions behind the figures: a teacher served by vLLM on 8×A100-80G (Qwen2.5-72B-Instruct,
# ~2,500 output tokens/s per GPU at high concurrency) or any hosted OpenAI-compatible API
# (TEACHER below); training on 8×A100/A800-80G with NVLink; one node unless said otherwise.
# Token counts are for DISC's sizes (paper, table 1): 400k MedDialog + 20k cMedQA2 rewrites,
# 50k CMeKG QA. Prices are left to the reader: multiply the token counts by your API's rates.
set -euo pipefail
cd "$(dirname "$0")/.."

RAW=${RAW:-data/raw}            # MedDialog-CN .txt, cMedQA2/, CMeKG .json, MedMCQA, MOSS, Alpaca-zh (downloaded by you)
DATA=${DATA:-data}              # every intermediate file, each with its JSON summary beside it
TEACHER=${TEACHER:-openai:http://teacher-box:8000/v1@Qwen2.5-72B-Instruct}   # DISC used gpt-3.5-turbo
PATIENT=${PATIENT:-$TEACHER}    # DISC: gpt-3.5-turbo played the patient
JUDGE=${JUDGE:-openai:https://api.openai.com/v1@gpt-4o}                     # DISC: gpt-4; needs OPENAI_API_KEY
SAMPLES=${SAMPLES:-data/eval/disc-samples}  # DISC's eval/samples (CMB-clin, CMD, CMID), from its GitHub repository
EXAMS=${EXAMS:-data/eval}       # MLEC-QA/, cmmlu/ (test/ and dev/)
mkdir -p "$DATA" runs/eval

# --- data construction (CPU box + teacher endpoint) ---------------------------------------

# Load the sources into DISC-Med-SFT JSONL. CPU only, minutes; MedDialog-CN's raw text is ~3.4M
# dialogues over ~10 GB: sample 400k as DISC did with --limit (or load all and let mix sample).
discmed data load meddialog-txt "$RAW"/meddialog/*.txt --out "$DATA"/meddialog.jsonl --limit 400000 --json
discmed data load cmedqa2 "$RAW"/cMedQA2 --out "$DATA"/cmedqa2.jsonl --limit 20000 --json
discmed data load medmcqa "$RAW"/medmcqa/train.json --out "$DATA"/medmcqa.jsonl --limit 8000 --json
discmed data load moss "$RAW"/moss-003-sft.jsonl --out "$DATA"/moss.jsonl --limit 33000 --json
discmed data load alpaca "$RAW"/alpaca_gpt4_data_zh.json --out "$DATA"/alpaca.jsonl --limit 1000 --json

# De-identify before any text reaches a teacher. CPU, regular expressions: ~5 minutes for 420k
# dialogues on 2 cores; no GPU, no tokens.
discmed data scrub "$DATA"/meddialog.jsonl -o "$DATA"/meddialog.scrubbed.jsonl --json
discmed data scrub "$DATA"/cmedqa2.jsonl -o "$DATA"/cmedqa2.scrubbed.jsonl --json

# Teacher rewrites of every doctor turn, checked for fidelity (numbers, drugs, tests, diagnoses).
# THE expensive stage: ~1M doctor turns → ~1.2M teacher calls with retries, ~0.8B prompt tokens
# + ~0.35B completion tokens. Self-hosted 72B teacher on 8×A100: ~20-30 hours at concurrency
# 256; a hosted API: rate-limited by your tier (--rate). Journaled: a killed run resumes.
discmed data rewrite "$DATA"/meddialog.scrubbed.jsonl -o "$DATA"/meddialog.rewritten.jsonl --teacher "$TEACHER" --concurrency 256 --json
# cMedQA2: 20k single answers → ~25k calls, ~20M prompt + ~8M completion tokens, ~1 hour.
discmed data rewrite "$DATA"/cmedqa2.scrubbed.jsonl -o "$DATA"/cmedqa2.rewritten.jsonl --teacher "$TEACHER" --concurrency 256 --json

# Knowledge-graph QA: 50k CMeKG entities → ~60k calls with retries, ~25M prompt + ~15M
# completion tokens; ~2 hours on the self-hosted teacher.
discmed data kgqa "$RAW"/cmekg/*.json --out "$DATA"/kgqa.jsonl --teacher "$TEACHER" --limit 50000 --concurrency 256 --json

# The behaviour set (DISC: ~2k consultations, human-curated): candidates from stage 1's model and
# the teacher, then annotators in the web tool (people, not GPUs: ~2k items × ~2 minutes ≈ 70
# annotator-hours; 10% annotated twice for Cohen's κ). Run after stage 1 below.
#   discmed data candidates --input "$DATA"/behaviour-prompts.jsonl --models "hf:runs/disc-medllm,$TEACHER" --n 2 --db "$DATA"/curation.sqlite
#   discmed data curate token alice bob --db "$DATA"/curation.sqlite
#   discmed data curate serve --db "$DATA"/curation.sqlite --host 0.0.0.0 --port 8100
#   discmed data curate export --db "$DATA"/curation.sqlite --out "$DATA"/curated --json

# Exact + MinHash near-duplicates, then anything that contains an evaluation item. CPU, minutes
# (dedup ~10 minutes for 470k on 2 cores; decontam indexes every eval file first). dedup reads
# the sources itself (not a `cat` of them), so the data card can follow each back to its step.
discmed data dedup "$DATA"/meddialog.rewritten.jsonl "$DATA"/cmedqa2.rewritten.jsonl "$DATA"/kgqa.jsonl \
    "$DATA"/medmcqa.jsonl "$DATA"/moss.jsonl "$DATA"/alpaca.jsonl -o "$DATA"/dedup.jsonl --threshold 0.8 --json
discmed data decontam "$DATA"/dedup.jsonl -o "$DATA"/clean.jsonl --eval "$SAMPLES" --eval "$EXAMS" --json

# The final mix in DISC's proportions (paper, table 1) and its data card. CPU, a minute.
discmed data mix "$DATA"/clean.jsonl --out "$DATA"/disc-med-sft.jsonl --seed 42 --json
discmed data card "$DATA"/disc-med-sft.jsonl --out "$DATA"/card --summary "$DATA" --json

# --- training (8 GPUs) ---------------------------------------------------------------------

# Stage 1: full-parameter SFT of Baichuan-13B-Base, ZeRO-3, bf16, 1 epoch over ~470k samples
# (~0.3B tokens): ~2.4e19 FLOPs ≈ 7-10 hours on 8×A100-80G at 30-40% MFU. Needs ~70 GB per GPU
# with gradient checkpointing; checkpoints are ~26 GB each (save_total_limit 3).
# Several nodes: same command on each node with --num_machines N --machine_rank i
# --main_process_ip HOST --main_process_port 29500 (or torchrun --nnodes).
accelerate launch --config_file discmed/train/accelerate/zero3.yaml -m discmed.train sft --config recipes/disc.yaml --json

# Stage 2: the behaviour set on top of stage 1. ~2k samples: ~10 minutes on the same 8 GPUs.
accelerate launch --config_file discmed/train/accelerate/zero3.yaml -m discmed.train sft --config recipes/disc.yaml \
    model=runs/disc-medllm "data=[{path: $DATA/curated/sft.jsonl}]" output_dir=runs/disc-medllm-stage2 warmup_steps=10 --json

# DPO on the curated preference pairs (discmed's addition to DISC's recipe): a policy and a
# frozen reference of 13B each → ZeRO-3 on 8 GPUs, ~30 minutes for ~5k pairs.
# (No recipe file: DPORecipe's defaults are the real-model ones, max_length 1200, lr 5e-7, beta 0.1.)
accelerate launch --config_file discmed/train/accelerate/zero3.yaml -m discmed.train dpo \
    model=runs/disc-medllm-stage2 "data=[{path: $DATA/curated/dpo.jsonl}]" output_dir=runs/disc-medllm-dpo \
    deepspeed=zero3 bf16=true gradient_checkpointing=true --json

# GRPO on simulated consultations (discmed's addition, after Baichuan-M2): first a rubric per
# CMB-clin case by the judge model, CMB-Clin's own answers shown (73 calls, ~0.2M prompt + 60k
# completion tokens); then 200 steps × 64 three-turn episodes: ~25k patient calls (~20M tokens),
# ~128k grader calls (~0.4B prompt tokens: point GRADER at a local vLLM Qwen2.5-72B-Instruct, not
# a paid API) and ~13k judge calls. The policy (LoRA on 13B) and its colocated vLLM on one 8-GPU
# node: ~12-16 hours, most of it waiting on the patient and grader servers.
discmed eval rubrics --cases cmb-clin --samples "$SAMPLES" --reference "$SAMPLES"/../../cmb/CMB-Clin-v0.json \
    --writer "$JUDGE" --out runs/rubrics/cmb-clin.jsonl --json
GRADER=${GRADER:-$JUDGE}
accelerate launch --config_file discmed/train/accelerate/multi_gpu.yaml -m discmed.train grpo --config recipes/disc-grpo.yaml \
    patient="$PATIENT" grader="$GRADER" judge="$JUDGE" samples="$SAMPLES" --json

# --- evaluation (1-2 GPUs + API tokens) ----------------------------------------------------

# Exams, DISC's table: MLEC-QA's five columns and CMMLU's medical subjects, 0- and few-shot.
# Logprob scoring on 1 GPU: ~20 minutes for MLEC-QA's ~30k test questions in bf16.
discmed eval mcq --model hf:runs/disc-medllm-dpo --task mlec-qa --data-dir "$EXAMS"/MLEC-QA --shots 0 --out runs/eval/mlec-qa-0shot --json
discmed eval mcq --model hf:runs/disc-medllm-dpo --task mlec-qa --data-dir "$EXAMS"/MLEC-QA --shots 3 --out runs/eval/mlec-qa-3shot --json
discmed eval mcq --model hf:runs/disc-medllm-dpo --task cmmlu --data-dir "$EXAMS"/cmmlu --shots 0 --out runs/eval/cmmlu-0shot --json

# Serve the model under test through vLLM for the consultations (2 GPUs, tensor parallel).
discmed serve --model runs/disc-medllm-dpo --engine vllm --tensor-parallel-size 2 --port 8001 --no-safety &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
until curl -sf http://127.0.0.1:8001/health >/dev/null; do sleep 5; done
DOCTOR=openai:http://127.0.0.1:8001/v1@disc-medllm-dpo

# Simulated consultations: 313 cases × 3 doctor turns, patient played by $PATIENT: ~2k patient
# calls (~3M tokens) and ~1k doctor calls on the vLLM server; ~15 minutes.
for set in cmb-clin cmd cmid; do
  discmed eval consult --doctor "$DOCTOR" --patient "$PATIENT" --set $set --samples "$SAMPLES" --turns 3 \
      --name disc-medllm-dpo --out runs/eval/consult/disc-medllm-dpo_$set.json --json
done

# The judge, DISC's four criteria: 313 judgements ≈ 0.8M prompt + 40k completion tokens of
# gpt-4o-class API (DISC: gpt-4). Then DISC's tables, radar and point-range charts with intervals.
discmed eval judge runs/eval/consult/disc-medllm-dpo_*.json --judge "$JUDGE" --rubric disc --out runs/eval/judge/result_disc-medllm-dpo.jsonl --json
discmed eval score runs/eval/judge --samples "$SAMPLES" --out runs/eval/report --json

# Rubric scores in HealthBench's form on the CMB-clin dialogues (~10 criteria × 73 dialogues
# ≈ 730 grader calls, ~1.5M prompt tokens); HealthBench itself: `--rubrics healthbench.jsonl --model "$DOCTOR"`
# (5,000 conversations × ~11 criteria ≈ 55k grader calls).
discmed eval rubric runs/eval/consult/disc-medllm-dpo_cmb-clin.json --rubrics runs/rubrics/cmb-clin.jsonl \
    --grader "$GRADER" --out runs/eval/rubric --json

# --- serving (1-2 GPUs) -------------------------------------------------------------------
# The API (OpenAI-compatible) and the web page, with the safety layer on. Anything but loopback
# needs an API key:
#   DISCMED_API_KEY=... discmed serve --model runs/disc-medllm-dpo --engine vllm --tensor-parallel-size 2 --host 0.0.0.0 --port 8000
