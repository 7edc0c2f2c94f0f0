"""One error boundary (reproduction 5 of issue 15): wrong input is refused in one line with one
exit-code scheme, before anything loads; a failing model does not end a chat session."""

import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner


def root(*args):
    from discmed.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_the_errors_users_fix_share_one_base_and_exit_codes():
    from discmed.backend import BackendError
    from discmed.chat import DataError
    from discmed.errors import DiscmedError, SpecError
    from discmed.formats import FormatError
    from discmed.jobs import JournalMismatch
    from discmed.train.config import ConfigError

    for cls in (DataError, ConfigError, FormatError, SpecError, JournalMismatch):
        assert issubclass(cls, DiscmedError) and cls.exit_code == 2
    assert issubclass(BackendError, DiscmedError) and BackendError.exit_code == 3


def test_a_misspelt_choice_is_refused_not_taken_for_another(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text('{"conversation": [{"role": "user", "content": "头疼"}, {"role": "assistant", "content": "休息"}]}\n',
                    encoding="utf-8")
    r = root("data", "scrub", data, "-o", tmp_path / "out.jsonl", "--on-error", "sikp")
    assert r.exit_code == 2 and "sikp" in r.output and "skip" in r.output
    assert not (tmp_path / "out.jsonl").exists()
    r = root("eval", "mcq", "--task", "cmmlu", "--mode", "logprb")
    assert r.exit_code == 2 and "logprb" in r.output


def test_specs_are_checked_before_anything_loads(tmp_path):
    from discmed.backend import check_spec, load_backend
    from discmed.errors import SpecError

    with pytest.raises(SpecError, match=r"unknown model kind 'vlm' in 'vlm:/x' \(did you mean vllm:\?\)"):
        load_backend("vlm:/x")
    with pytest.raises(SpecError, match="/nonexistent does not exist"):
        load_backend("hf:/nonexistent")
    with pytest.raises(SpecError, match="http"):
        check_spec("openai:localhost:8000@m")
    assert check_spec(f"hf:{tmp_path}") == ("hf", str(tmp_path))
    assert check_spec("Qwen/Qwen2.5-7B-Instruct") == ("hf", "Qwen/Qwen2.5-7B-Instruct")  # a hub id stays one
    assert check_spec(r"C:\models\x")[0] == "hf"  # a drive letter is not a kind


def test_chat_with_a_missing_model_is_one_line(tmp_path):
    r = root("chat", "--model", "hf:/nonexistent")
    assert r.exit_code == 2
    assert r.stderr.strip() == "error: model 'hf:/nonexistent': /nonexistent does not exist"
    r = root("chat", "--model", "vlm:/x")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and "unknown model kind" in r.stderr
    # A relative name that is no folder here is tried as a hub id (offline here): one line, exit 3.
    r = root("chat", "--model", f"hf:{tmp_path.name}-missing/model")
    assert r.exit_code == 3 and len(r.stderr.strip().splitlines()) == 1 and "no such folder here" in r.stderr


class _FlakyEndpoint(BaseHTTPRequestHandler):
    """Chat completions that fail once (500), then answer with how many messages they got."""

    calls: list[int] = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.calls.append(len(body["messages"]))
        if len(self.calls) == 1:
            self.send_response(500)
            payload = {"error": {"message": "boom", "type": "server_error"}}
        else:
            self.send_response(200)
            payload = {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": f"收到{len(body['messages'])}条"}}]}
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_the_chat_loop_survives_a_backend_error_and_keeps_its_history(free_port):
    from discmed.backend import GenParams, load_backend
    from discmed.serve.terminal import FAILED, chat_loop

    server = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = load_backend(f"openai:http://127.0.0.1:{server.server_port}/v1@m", max_retries=0)
        out = io.StringIO()
        history = chat_loop(backend, GenParams(), streaming=False, safety=False,
                            stdin=io.StringIO("第一问\n第二问\n第三问\n"), stdout=out)
    finally:
        server.shutdown()
    assert FAILED.split("：")[0] in out.getvalue()  # said so, in one line, and went on
    assert history == [{"role": "user", "content": "第二问"}, {"role": "assistant", "content": "收到1条"},
                       {"role": "user", "content": "第三问"}, {"role": "assistant", "content": "收到3条"}]

    # An endpoint that is not there at all, streaming: the session ends normally, not in a traceback.
    down = load_backend(f"openai:http://127.0.0.1:{free_port}/v1@m", max_retries=0, timeout=5)
    out = io.StringIO()
    assert chat_loop(down, GenParams(), safety=False, stdin=io.StringIO("你好\n"), stdout=out) == []
    assert "cannot reach" in out.getvalue()


def test_serve_binds_its_port_before_loading_the_model(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # An empty folder would fail to load; the port in use is found first, and nothing is announced.
        r = root("serve", "--model", f"hf:{tmp_path}", "--port", port)
    assert r.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "serve:" in r.stderr
    assert "cannot load" not in r.stderr and "/v1 (chat page" not in r.output
