"""The one engine under every local path: `discmed chat`, data and eval jobs, `discmed serve`
and GRPO rollouts generate through it, so the same seed gives the same tokens everywhere.

    protocol   the contract: Request, Delta, Stream, EngineStats, the Engine Protocol; delivery
               to event loops and threads; collect / acollect / deltas (how callers wait)
    scheduler  who waits, who is refused, when arrivals join the running batch
    cache      the running batch's tensors: KV cache join and select
    sampler    the one sampler (logits → the next token)
    output     the output processor: detokenizing, stop rules, delta packing
    core       LocalEngine: the in-process engine (one thread, continuous batching)
    proc       ProcessEngine: the same in a child process (discmed serve's default)
    vllm       VLLMEngine: vLLM's async engine behind the same contract
    llamacpp   LlamaCppEngine: llama-server (a child process) on a GGUF behind the same contract,
               and where llama.cpp's tools are (scripts/llamacpp.sh's cached build)
"""
