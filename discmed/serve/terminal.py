"""Terminal chat: DISC-MedLLM's `cli_demo.py`, for any backend.

Streams the reply as it is generated and keeps the history. Commands, as in DISC's demo:
`clear` forgets the conversation, `stream` toggles streaming, `exit` leaves. Ctrl+C while the
model is answering stops that reply and keeps the session; Ctrl+D (or `exit`) ends it. A
backend that fails (an endpoint down, a model refusing) prints one line and keeps the session
and its history: the unanswered question can simply be asked again.
"""

from __future__ import annotations

import sys
from typing import TextIO

from discmed import SAFETY_NOTICE_ZH
from discmed.backend import Backend, BackendError, GenParams
from discmed.chat import Message
from discmed.serve.safety import triage

WELCOME = "欢迎使用 discmed 医疗咨询对话。输入问题开始；clear 清空历史，stream 切换流式输出，exit 退出。"
STOPPED = "（已停止本次回答）"
FAILED = "（模型暂时无法回答：{error}。对话历史已保留，可稍后重试。）"


def chat_loop(
    backend: Backend,
    params: GenParams,
    *,
    streaming: bool = True,
    safety: bool = True,
    system: str | None = None,
    triage_model=None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> list[Message]:
    """Run the interactive loop until exit; returns the final history."""
    out = stdout or sys.stdout
    read = (lambda prompt: _read_line(stdin, out, prompt)) if stdin is not None else input
    history: list[Message] = [{"role": "system", "content": system}] if system else []
    print(WELCOME, file=out)
    if safety:
        print(SAFETY_NOTICE_ZH, file=out)
    while True:
        try:
            text = read("\n用户：").strip()
        except EOFError:
            print(file=out)
            break
        except KeyboardInterrupt:
            print(file=out)
            continue
        if not text:
            continue
        command = text.lower()
        if command in ("exit", "quit"):
            break
        if command == "clear":
            history = history[:1] if system else []
            print("（历史已清空）", file=out)
            continue
        if command == "stream":
            streaming = not streaming
            print(f"（流式输出：{'开' if streaming else '关'}）", file=out)
            continue
        history.append({"role": "user", "content": text})
        try:
            prefix = _urgent_notice(text, triage_model) if safety else ""
            print("\n医生：", end="", file=out, flush=True)
            if prefix:
                print(prefix + "\n", end="", file=out, flush=True)
            reply = _answer(backend, history, params, streaming, out)
        except KeyboardInterrupt:  # Ctrl+C anywhere in the turn stops the reply, not the session
            print("\n" + STOPPED, file=out, flush=True)
            reply = None
        except BackendError as e:  # the model failed this turn; the session and its history stay
            print("\n" + FAILED.format(error=e), file=out, flush=True)
            reply = None
        if reply is None:  # interrupted or failed: the user turn stays unanswered, so drop it
            history.pop()
            continue
        history.append({"role": "assistant", "content": reply})
    return history


def _answer(backend: Backend, history: list[Message], params: GenParams, streaming: bool, out: TextIO) -> str:
    """The reply, printed as it comes; a KeyboardInterrupt closes the stream and propagates."""
    parts: list[str] = []
    if streaming:
        it = backend.stream(history, params)
        try:
            for delta in it:
                parts.append(delta)
                print(delta, end="", file=out, flush=True)
        finally:
            close = getattr(it, "close", None)
            if close:
                close()  # stops the generation (local) or the connection (API)
    else:
        parts.append(backend.chat([history], params)[0])
        print(parts[-1], end="", file=out, flush=True)
    print(file=out, flush=True)
    return "".join(parts)


def _urgent_notice(text: str, triage_model=None) -> str:
    """The safety layer's urgent-care instruction for this message, if any (empty when none):
    the same verdict the API and the chat page give (rules, and the --triage-model opinion)."""
    t = triage(text)
    if triage_model is not None:
        t = triage_model.review(t, text)
    return t.instruction if t.urgent else ""  # t.notice is the standing notice, printed above


def _read_line(stdin: TextIO, out: TextIO, prompt: str) -> str:
    print(prompt, end="", file=out, flush=True)
    line = stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")
