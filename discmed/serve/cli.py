"""`discmed serve` (the API server and web page) and `discmed quantize` (a quantized copy)."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Annotated, Literal

import typer

from discmed.backend import BackendError, check_spec, load_backend, resolve
from discmed.cpu import freeze_heap, tune_switch_interval, tune_threads
from discmed.errors import fail

MIN_KEY = 16  # characters of an API key for a server beyond loopback
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def served_name(spec: str, backend_name: str | None) -> str:
    """The model id clients use: "tiny" for the tiny model, a folder's name, or a hub id."""
    ref = resolve(spec)
    return ref.name if ref.kind == "tiny" or Path(ref.target).exists() else (backend_name or ref.target)


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (not yet listening: clients are refused until the model is
    loaded and uvicorn accepts on it). A port in use is an OSError that says which."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def register(app: typer.Typer) -> None:
    """Add `serve` and `quantize` to the root app."""

    @app.command()
    def serve(
        model: Annotated[
            str, typer.Option("--model", "-m", help="Model spec: tiny | hf:PATH_OR_HUB_ID | PATH")
        ] = "tiny",
        host: Annotated[
            str, typer.Option(help="Address to bind; anything but loopback needs --api-key")
        ] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port")] = 8000,
        api_key: Annotated[
            str | None,
            typer.Option(
                envvar="DISCMED_API_KEY", help="Bearer key every request needs but the page, /health and /version "
                "(env DISCMED_API_KEY)"
            ),
        ] = None,
        served_model_name: Annotated[str | None, typer.Option(help="Model id reported to clients")] = None,
        engine: Annotated[
            Literal["hf", "vllm", "llama.cpp"] | None,
            typer.Option(help="hf (dynamic batching, CPU or GPU) | vllm (GPU, optional extra) | llama.cpp (a GGUF "
                         "in llama-server; the default for a .gguf model)"),
        ] = None,
        threads: Annotated[
            int | None, typer.Option(help="llama.cpp: threads for llama-server (default: every core)")
        ] = None,
        kv_cache_type: Annotated[
            Literal["auto", "f32", "f16", "bf16", "q8_0"],
            typer.Option(help="llama.cpp: KV cache type (auto: f32 for an f32 GGUF, for parity with its "
                         "safetensors; llama.cpp's f16 otherwise)"),
        ] = "auto",
        quantize: Annotated[
            Literal["int8", "int4"] | None, typer.Option(help="int8 | int4 (bitsandbytes; int4 needs a GPU)")
        ] = None,
        format: Annotated[
            Literal["disc", "chatml", "llama3", "auto"] | None,
            typer.Option(help="Chat format: disc | chatml | llama3 | auto (default: the model's)"),
        ] = None,
        max_batch: Annotated[int, typer.Option(help="Most requests generated together")] = 32,
        engine_process: Annotated[
            bool, typer.Option(help="hf: the batching engine in a process of its own, apart from HTTP "
                               "(--no-engine-process: in this process)")
        ] = True,
        max_queue: Annotated[int, typer.Option(help="Requests waiting or running before 429")] = 256,
        prefix_cache_mb: Annotated[
            int, typer.Option(help="hf: memory for finished requests' KV caches, reused by prompts that begin "
                              "the same way, such as a conversation's next turn (0: off)")
        ] = 256,
        max_model_len: Annotated[
            int | None, typer.Option(help="Context limit (default: the model's)")
        ] = None,
        max_body: Annotated[int, typer.Option(help="Largest request body in bytes")] = 1 << 20,
        safety: Annotated[
            bool, typer.Option(help="Red-flag triage and the standing notice (off for evaluation runs)")
        ] = True,
        safety_rules: Annotated[
            Path | None, typer.Option(help="Own red-flag rules YAML (default: the shipped rules)")
        ] = None,
        triage_model: Annotated[
            str | None, typer.Option(help="A second opinion on red flags from this model spec (rules stay the floor)")
        ] = None,
        triage_timeout: Annotated[float, typer.Option(help="Seconds to wait for --triage-model, then rules alone")] = 3.0,
        tensor_parallel_size: Annotated[int, typer.Option(help="vLLM: GPUs to shard the model over")] = 1,
        header_timeout: Annotated[float, typer.Option(help="Seconds a client has to send a request's headers "
                                                      "before its connection is closed")] = 10.0,
        log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
    ) -> None:
        """Serve a model over an OpenAI-compatible API, with the chat page at /."""
        if api_key is not None and (api_key != api_key.strip() or not api_key.strip()):
            raise typer.BadParameter("the API key is blank or has spaces around it", param_hint="--api-key")
        if not is_loopback(host):
            if not api_key:
                raise typer.BadParameter(f"binding to {host} exposes the server beyond this machine: pass --api-key "
                                         "(or set DISCMED_API_KEY)", param_hint="--host")
            if len(api_key) < MIN_KEY:
                raise typer.BadParameter(f"binding to {host} needs a key of at least {MIN_KEY} characters "
                                         "(e.g. python -c 'import secrets; print(secrets.token_urlsafe())')",
                                         param_hint="--api-key")
        import uvicorn

        from discmed.engine.proc import ProcessEngine
        from discmed.engine.protocol import EngineUnavailable
        from discmed.serve.app import ServedModel, create_app
        from discmed.serve.safety import Rules

        rules = None
        if safety:
            try:
                rules = Rules(safety_rules) if safety_rules else None
            except ValueError as e:
                raise typer.BadParameter(str(e), param_hint="--safety-rules") from None
        # The port first, the model after: a port in use fails in a second, before minutes of
        # loading, and "serving on …" is said only once both are true.
        try:
            kind = check_spec(model)[0]
            engine = engine or ("llama.cpp" if kind == "llamacpp" else "hf")
            if (engine == "llama.cpp") != (kind == "llamacpp"):
                raise ValueError(f"--engine {engine} and --model {model}: llama.cpp serves GGUF files "
                                 "(llamacpp:FILE.gguf), and only llama.cpp serves them")
            if engine != "llama.cpp" and kv_cache_type != "auto":
                raise ValueError(f"--kv-cache-type {kv_cache_type}: only the llama.cpp engine takes it, not {engine}")
            sock = bind(host, port)
        except (BackendError, ValueError, OSError) as e:
            fail(f"discmed serve: {e}")
        # This process's tuning, here at its entry point: torch's threads sized by the cores free
        # now, and (with the engine's thread in this process) a short GIL switch interval so the
        # event loop streaming tokens out is not kept waiting by the engine's Python.
        if engine == "hf" and not engine_process:
            tune_threads()
            tune_switch_interval()
        child = None  # the engine's own process, when it has one
        try:
            if engine == "llama.cpp":
                from discmed.serve.llamacpp import served_model as llamacpp_served

                served = llamacpp_served(model, name=served_model_name, format=format, max_model_len=max_model_len,
                                         threads=threads, max_batch=max_batch, max_queue=max_queue,
                                         kv_cache=kv_cache_type)
            elif engine == "vllm":
                from discmed.serve.vllm import served_model as vllm_served

                served = vllm_served(
                    model,
                    name=served_model_name,
                    quantize=quantize,
                    max_model_len=max_model_len,
                    tensor_parallel_size=tensor_parallel_size,
                    format=format,
                    max_queue=max_queue,
                )
            else:
                options: dict = {}
                if quantize:
                    options["quantize"] = quantize
                if format:
                    options["format"] = format
                if max_model_len:
                    options["max_length"] = max_model_len
                # With its engine in a process of its own, this process only prepares prompts: the
                # weights are loaded once, by the engine process, which starts first and loads while
                # this process reads the tokenizer and the prompt format.
                if engine_process:
                    child = ProcessEngine(model, options, max_batch=max_batch, max_queue=max_queue,
                                          max_model_len=max_model_len, prefix_cache_mb=prefix_cache_mb, wait=False)
                backend = load_backend(model, **options, **({"load_weights": False} if engine_process else {}))
                name = served_model_name or served_name(model, getattr(backend, "name", None))
                served = ServedModel.from_backend(backend, name, max_batch=max_batch, max_queue=max_queue,
                                                  engine_process=child, prefix_cache_mb=prefix_cache_mb)
        except (BackendError, ValueError, ImportError, EngineUnavailable) as e:
            if child is not None:
                child.shutdown()
            sock.close()
            fail(f"discmed serve: {e}", code=3 if isinstance(e, (BackendError, EngineUnavailable)) else 2)
        second = None
        if safety and triage_model:
            from discmed.serve.triage_model import TriageModel

            try:
                second = TriageModel(triage_model, timeout=triage_timeout)
            except (BackendError, ValueError, ImportError, OSError) as e:
                raise typer.BadParameter(f"cannot load {triage_model!r}: {e}", param_hint="--triage-model") from None
        app_ = create_app(served, api_key=api_key, safety=safety, rules=rules, max_body_bytes=max_body,
                          triage_model=second)
        shown = f"[{host}]" if ":" in host else host
        typer.echo(
            f"discmed serve: {served.name} on http://{shown}:{port}/v1 (chat page at http://{shown}:{port}/)",
            err=True,
        )
        from discmed.serve.app import header_timeout_protocol

        config = uvicorn.Config(app_, log_level=log_level, timeout_graceful_shutdown=3,
                                http=header_timeout_protocol(header_timeout))
        freeze_heap()  # everything loaded so far stays out of the collector's pauses
        uvicorn.Server(config).run(sockets=[sock])  # the app's lifespan ends the engine

    @app.command()
    def quantize(
        model: Annotated[
            str, typer.Option("--model", "-m", help="Model spec of a local model: tiny | hf:PATH | PATH")
        ],
        out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the quantized copy to")],
        bits: Annotated[
            str, typer.Option("--quantize", "-q", help="int8 | int4 (int4 needs a GPU)")
        ] = "int8",
        as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary last")] = False,
    ) -> None:
        """Write a bitsandbytes-quantized copy of a model that loads without the flag."""
        from discmed.serve.quantize import QuantizeError, write_quantized

        try:
            summary = write_quantized(model, out, bits)
        except QuantizeError as e:
            fail(f"discmed quantize: {e}", as_json)
        typer.echo(
            f"wrote {summary['out']}: {summary['bits']} weights {summary['weight_mb_quantized']:.2f} MB "
            f"(unquantized {summary['weight_mb_original']:.2f} MB)"
        )
        if as_json:
            import json

            print(json.dumps(summary, ensure_ascii=False))


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
