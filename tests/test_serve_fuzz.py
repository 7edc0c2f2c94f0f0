"""Property-based fuzz of the API from its own published schema (schemathesis): whatever a
client sends, the server answers 2xx or an OpenAI-shaped 4xx, never a 5xx.

A server of its own with a short context (128 tokens), so that the generated requests that
are valid generate little and the run stays within minutes.
"""

from __future__ import annotations

import collections

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def short_server(tiny_model, tmp_path_factory):
    from discmed.process import served

    log = tmp_path_factory.mktemp("fuzz-server") / "serve.log"
    with served("tiny", log, safety=True, args=["--max-model-len", "128", "--max-batch", "16"]) as url:
        yield url.removesuffix("/v1")


def test_no_request_gets_a_5xx(short_server):
    # schemathesis's pytest plugin does not run under this pytest; its strategies do, with
    # hypothesis driving them, one operation at a time.
    schema = schemathesis.openapi.from_url(short_server + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert any(op.path == "/v1/chat/completions" for op in operations)
    seen: dict[str, collections.Counter] = {}
    for op in operations:
        statuses = seen.setdefault(op.path, collections.Counter())
        generating = op.path in ("/v1/chat/completions", "/v1/completions", "/v1/responses")

        @given(case=op.as_strategy())
        @settings(max_examples=300 if generating else 40, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  derandomize=True)  # the same requests every run: a failure reproduces
        def check(case):
            if isinstance(case.body, dict) and "model" in case.body:
                case.body["model"] = "tiny"  # past the 404 for unknown models, into generation
            response = case.call(timeout=60)
            statuses[response.status_code] += 1  # noqa: B023  (check runs inside this iteration)
            what = f"{case.method} {case.path} {case.body!r} -> {response.status_code} {response.text[:300]}"
            # 501: a field /v1/responses does not implement, refused by name (never a crash)
            refused = response.status_code == 501 and case.path == "/v1/responses"
            assert response.status_code < 500 or refused, what
            if response.status_code >= 400 and "application/json" in str(response.headers.get("content-type")):
                error = response.json()["error"]
                assert {"message", "type", "param", "code"} <= set(error), what

        check()
    print({path: dict(c) for path, c in seen.items()})
    # Whether random cases are valid enough to generate is chance; the same server still
    # generates for plain requests after the fuzz (it was not left broken by it).
    import httpx

    chat = httpx.post(short_server + "/v1/chat/completions", timeout=120,
                      json={"model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": "头痛"}]})
    comp = httpx.post(short_server + "/v1/completions", timeout=120,
                      json={"model": "tiny", "max_tokens": 4, "prompt": "医生，我"})  # fmt: skip
    assert chat.status_code == 200 and comp.status_code == 200, (chat.text, comp.text)
