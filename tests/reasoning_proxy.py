"""A reasoning model for tests: a loopback OpenAI-compatible server in front of a real one (the
tiny model's `discmed serve`) that answers as reasoning models do — every reply's content
opened by a `<think>…</think>` block (mode "think", as a server without a reasoning parser
returns DeepSeek-R1 or Qwen3), or the thinking in a `reasoning_content` field (mode "field", as
vLLM with --reasoning-parser does). The thinking holds MARKER and statements a parser would
read if it leaked (a verdict, four judge scores, a pairwise winner), so a test can tell that
none of it reached an answer, a record or a score."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

MARKER = "THINK-7f3a-推理痕迹"
THOUGHT = (f"让我想想。{MARKER}\ncriteria_met: false\nProactivity: 1\nAccuracy: 1\nHelpfulness: 1\n"
           "Linguistic Quality: 1\n结论：B\n病人：我已经全好了，谢谢医生。")


def _stream_with_thought(sse: str, mode: str) -> str:
    """A server-sent-event stream with the thought sent first: as `<think>` content, or as
    `reasoning_content` deltas (vLLM's way)."""
    out, done = [], False
    for event in sse.split("\n\n"):
        out.append(event)
        if done or not event.startswith("data: {"):
            continue
        chunk = json.loads(event[len("data: "):])
        if not chunk.get("choices"):
            continue
        delta = {"content": f"<think>\n{THOUGHT}\n</think>\n\n"} if mode == "think" else {"reasoning_content": THOUGHT}
        extra = {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        out.append("data: " + json.dumps(extra, ensure_ascii=False))
        done = True
    return "\n\n".join(out)


@contextmanager
def reasoning_server(upstream: str, mode: str) -> Iterator[str]:
    """Serve on a free loopback port; yields the base URL (…/v1). `upstream`: the real server's …/v1."""
    root = upstream.removesuffix("/v1")
    client = httpx.Client(timeout=300)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _forward(self, method: str) -> httpx.Response:
            url = root + self.path
            headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type",
                                                                                 "x-discmed-safety")}
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else None
            return client.request(method, url, content=body, headers=headers)

        def do_GET(self):  # noqa: N802 (http.server's name)
            r = self._forward("GET")
            self._send(r.status_code, r.content)

        def do_POST(self):  # noqa: N802
            r = self._forward("POST")
            if not self.path.endswith("/chat/completions") or r.status_code != 200:
                self._send(r.status_code, r.content)
                return
            if r.headers.get("content-type", "").startswith("text/event-stream"):
                self._send(200, _stream_with_thought(r.text, mode).encode("utf-8"), "text/event-stream")
                return
            data = r.json()
            for choice in data["choices"]:
                message = choice["message"]
                if mode == "think":
                    message["content"] = f"<think>\n{THOUGHT}\n</think>\n\n" + (message.get("content") or "")
                else:
                    message["reasoning_content"] = THOUGHT
            self._send(200, json.dumps(data, ensure_ascii=False).encode("utf-8"))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        client.close()
