"""Property-based fuzz of the API from its own published schema (schemathesis): whatever a
client sends, the server answers 2xx or an OpenAI-shaped 4xx, never a 5xx.

A server of its own with a short context (128 tokens), so that the generated requests that
are valid generate little and the run stays within minutes.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def short_server(tiny_model):
    from test_serve import serve

    with serve("--max-model-len", "128", "--max-batch", "16") as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(short_server):
    return schemathesis.openapi.from_url(short_server + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_5xx(case):
    response = case.call(timeout=60)
    assert response.status_code < 500, f"{case.method} {case.path} {case.body!r} -> {response.status_code} {response.text[:300]}"
    if 400 <= response.status_code < 500 and response.headers.get("content-type", "").startswith("application/json"):
        error = response.json()["error"]
        assert {"message", "type", "param", "code"} <= set(error) and "Traceback" not in error["message"]
