"""The embedded default: a small tokenizer and model that discmed builds offline from its own corpus.

Nothing can be downloaded where discmed is built and tested, so discmed makes its own model:
a byte-level BPE tokenizer trained on the shipped corpus (`discmed/assets/corpus`, written for
discmed: consultation dialogues and medical sentences) with DISC-MedLLM's reserved ids in place
(195 = user, 196 = assistant), and a ~5M-parameter Qwen2-style model pretrained for about a
minute on 2 CPU cores, in DISC's chat format. It is saved in Hugging Face format, so every
part of discmed loads it the way it loads a real model.

It proves the machinery, not medicine: its replies look like consultations and mean little.

The build is deterministic and cached under `~/.cache/discmed` (or `$DISCMED_CACHE`), keyed by
a fingerprint of the corpus and this recipe; concurrent callers wait on a file lock instead of
building twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

from discmed.chat import iter_conversations
from discmed.cpu import free_cores
from discmed.formats import get_format

RECIPE_VERSION = "1"

# Ids 0-2 as Baichuan's, then chatml/llama3 markers so every discmed format works on the tiny
# tokenizer, then reserved slots up to DISC's user (195) and assistant (196) ids.
PAD, BOS, EOS = "<pad>", "<s>", "</s>"
MARKERS = ["<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|end_of_text|>",
           "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]  # fmt: skip
USER_TOKEN, ASSISTANT_TOKEN = "<reserved_102>", "<reserved_103>"  # Baichuan's names for 195, 196


def special_tokens() -> list[str]:
    tokens = [PAD, BOS, EOS, *MARKERS]
    tokens += [f"<unused_{i}>" for i in range(len(tokens), 195)]
    tokens += [USER_TOKEN, ASSISTANT_TOKEN]
    assert tokens.index(USER_TOKEN) == 195 and tokens.index(ASSISTANT_TOKEN) == 196
    return tokens


# Qwen2's pre-tokenizer split (digits one by one, CJK runs kept together). transformers 5
# rebuilds a Qwen2 tokenizer's pre-tokenizer from the model type; using the same one here means
# ids round-trip whichever class loads the files.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

CONFIG = dict(
    vocab_size=6000,
    hidden_size=192,
    intermediate_size=512,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
    tie_word_embeddings=True,
)
TRAIN = dict(seq_len=256, batch_size=16, steps=240, lr=3e-3, warmup=20, seed=0)


def corpus_files() -> list[Path]:
    root = files("discmed") / "assets" / "corpus"
    return [Path(str(root / "dialogues.jsonl")), Path(str(root / "sentences.txt"))]


def fingerprint() -> str:
    h = hashlib.sha256(RECIPE_VERSION.encode())
    h.update(json.dumps([CONFIG, TRAIN], sort_keys=True).encode())
    for path in corpus_files():
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def cache_dir() -> Path:
    return Path(os.environ.get("DISCMED_CACHE", Path.home() / ".cache" / "discmed"))


def default_path() -> Path:
    return cache_dir() / f"tiny-{fingerprint()}"


def ensure_tiny(path: str | os.PathLike | None = None, *, quiet: bool = True, force: bool = False) -> Path:
    """The built tiny model's folder, building it first if it is not there yet (or if `force`)."""
    target = Path(path) if path is not None else default_path()
    if (target / "discmed-tiny.json").exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{target.name}.lock"
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another process is building it right now: say so, then wait
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            print(f"discmed: waiting for {holder} building the tiny model into {target} (lock {lock_path})",
                  file=sys.stderr, flush=True)  # fmt: skip
            t0 = time.time()
            fcntl.flock(lock, fcntl.LOCK_EX)
            print(f"discmed: the tiny model is ready after {time.time() - t0:.0f} s of waiting", file=sys.stderr)
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}")
        lock.flush()
        if force or not (target / "discmed-tiny.json").exists():
            build_tiny(target, quiet=quiet)
    return target


# -- corpus -------------------------------------------------------------------------------


def load_corpus() -> tuple[list[list[dict[str, str]]], list[str]]:
    """The shipped dialogues (as message lists) and sentences."""
    dialogues_path, sentences_path = corpus_files()
    dialogues = [c.messages for c in iter_conversations(dialogues_path)]
    sentences = [s.strip() for s in sentences_path.read_text(encoding="utf-8").splitlines() if s.strip()]
    return dialogues, sentences


def train_tokenizer(dialogues: list[list[dict[str, str]]], sentences: list[str], vocab_size: int):
    """A byte-level BPE `PreTrainedTokenizerFast` with DISC's reserved ids in place."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens(),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = [m["content"] for d in dialogues for m in d] + sentences
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=None,
        model_max_length=CONFIG["max_position_embeddings"], clean_up_tokenization_spaces=False,
    )  # fmt: skip
    fast.chat_template = CHATML_TEMPLATE
    return fast


def pretraining_stream(tokenizer, dialogues, sentences, seed: int) -> list[int]:
    """One long token stream: dialogues in DISC's format, sentences between bos and eos."""
    fmt = get_format("disc")
    docs: list[list[int]] = []
    for messages in dialogues:
        enc = fmt.encode(messages, tokenizer, max_length=None)
        if enc is not None:
            docs.append(enc[0])
    for s in sentences:
        docs.append([tokenizer.bos_token_id] + tokenizer(s, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
    random.Random(seed).shuffle(docs)
    return [t for d in docs for t in d]


# -- build --------------------------------------------------------------------------------


def build_tiny(out: str | os.PathLike, *, steps: int | None = None, quiet: bool = False) -> dict[str, Any]:
    """Train the tokenizer, pretrain the model, save both to `out` (atomically). Returns a summary."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out = Path(out)
    t0 = time.time()
    steps = steps or TRAIN["steps"]
    torch.manual_seed(TRAIN["seed"])
    threads = torch.get_num_threads()
    # The cores idle right now, at most 2: a busy machine gets one thread instead of two threads
    # spinning against the other work (several times slower). Float reductions depend on the
    # thread count, so builds with 1 and 2 threads can differ in the last bits; the summary says
    # which ran.
    build_threads = min(2, free_cores())
    torch.set_num_threads(build_threads)
    try:
        dialogues, sentences = load_corpus()
        tokenizer = train_tokenizer(dialogues, sentences, CONFIG["vocab_size"])
        stream = torch.tensor(pretraining_stream(tokenizer, dialogues, sentences, TRAIN["seed"]))
        config = Qwen2Config(
            **CONFIG,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = Qwen2ForCausalLM(config)
        n_params = sum(p.numel() for p in model.parameters())
        losses = _pretrain(model, stream, steps, quiet=quiet)
        model.generation_config = GenerationConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            user_token_id=195,
            assistant_token_id=196,
            max_new_tokens=128,
            repetition_penalty=1.1,
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        summary = {
            "path": str(out),
            "parameters": n_params,
            "corpus_dialogues": len(dialogues),
            "corpus_sentences": len(sentences),
            "corpus_tokens": int(stream.numel()),
            "steps": steps,
            "loss_first": round(losses[0], 4),
            "loss_last": round(sum(losses[-20:]) / len(losses[-20:]), 4),
            "seconds": round(time.time() - t0, 1),
            "threads": build_threads,
            "fingerprint": fingerprint(),
            "note": "discmed's embedded tiny model: proves the machinery, not medicine",
        }
        (tmp / "discmed-tiny.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        return summary
    finally:
        torch.set_num_threads(threads)


def _pretrain(model, stream, steps: int, quiet: bool) -> list[float]:
    """A plain next-token loop over random windows of the stream: AdamW, warmup, cosine."""
    import torch
    from tqdm import tqdm

    seq, bs = TRAIN["seq_len"], TRAIN["batch_size"]
    gen = torch.Generator().manual_seed(TRAIN["seed"])
    opt = torch.optim.AdamW(model.parameters(), lr=TRAIN["lr"], weight_decay=0.01, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:
        if step < TRAIN["warmup"]:
            return (step + 1) / TRAIN["warmup"]
        progress = (step - TRAIN["warmup"]) / max(1, steps - TRAIN["warmup"])
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    losses: list[float] = []
    bar = tqdm(range(steps), desc="pretraining tiny model", disable=quiet, leave=False)
    for _ in bar:
        starts = torch.randint(0, stream.numel() - seq - 1, (bs,), generator=gen)
        batch = torch.stack([stream[s : s + seq] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses
