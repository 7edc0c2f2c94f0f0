"""The model's second opinion on triage: the verdict contract, and end to end with the tiny
model (its opinions are noise; what is tested is that the rules stay the floor, a slow or
failing model never blocks, and the verdict's source reaches the API)."""

from __future__ import annotations

import openai
import pytest

from discmed.serve.safety import triage
from discmed.serve.triage_model import TriageModel, parse_verdict


def test_parse_verdict():
    assert parse_verdict('{"urgent": true, "reason": "胸痛伴大汗"}') == {"urgent": True, "reason": "胸痛伴大汗"}
    assert parse_verdict('好的。\n{"urgent": false, "reason": "慢性病咨询"} 以上') == {"urgent": False, "reason": "慢性病咨询"}
    assert parse_verdict('{"urgent": "yes"}') is None  # a boolean, or nothing
    assert parse_verdict("这是紧急情况，请立即就医") is None
    assert parse_verdict("") is None


@pytest.fixture(scope="module")
def tiny_opinion(tiny_model):
    model = TriageModel("tiny", timeout=120)
    yield model
    model.close()


def test_tiny_model_through_the_contract(tiny_opinion):
    text = "胸口压榨样疼痛，出冷汗"
    t = tiny_opinion.review(triage(text), text)
    assert t.urgent  # the rules' verdict stands whatever the model says
    assert t.model["spec"] == "tiny" and t.model["status"] in ("ok", "unparsed")
    assert t.source == ("rules+model" if t.model["status"] == "ok" else "rules")
    calm = "我想减肥，每天跑步多久合适"
    c = tiny_opinion.review(triage(calm), calm)
    assert c.model["status"] in ("ok", "unparsed") and c.urgent == bool(c.model.get("urgent"))


def test_a_slow_model_does_not_block(tiny_opinion):
    slow = TriageModel("tiny", timeout=0.001, backend=tiny_opinion.backend)
    text = "胸口压榨样疼痛，出冷汗"
    t = slow.review(triage(text), text)
    assert t.urgent and t.source == "rules" and t.model["status"] == "timeout" and t.model["seconds"] < 1
    slow.close()


def test_a_failing_model_does_not_block(free_port):
    dead = TriageModel(f"openai:http://127.0.0.1:{free_port}/v1@nobody", timeout=5)
    t = dead.review(triage("头疼两天了"), "头疼两天了")
    assert not t.urgent and t.source == "rules" and t.model["status"] in ("error", "timeout")
    dead.close()


@pytest.mark.slow
def test_verdict_source_on_the_api(tiny_model, tmp_path):
    from discmed.process import served

    with served("tiny", tmp_path / "serve.log", safety=True, args=["--triage-model", "tiny", "--triage-timeout", "60"]) as url:
        client = openai.OpenAI(base_url=url, api_key="unused")
        r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "胸口压榨样疼痛，出冷汗"}],
                                           max_tokens=4)
        safety = r.model_extra["safety"]
        assert safety["urgent"] is True and r.choices[0].message.content.startswith("【紧急】")
        assert safety["model"]["spec"] == "tiny" and safety["model"]["status"] in ("ok", "unparsed")
        assert safety["source"] == ("rules+model" if safety["model"]["status"] == "ok" else "rules")


def test_api_terminal_and_page_give_one_verdict(tiny_server):
    """The page shows the API's `safety` field; the terminal prints `_urgent_notice`: both
    come from the same triage, so one message gets one verdict everywhere."""
    from discmed.serve.terminal import _urgent_notice

    client = openai.OpenAI(base_url=tiny_server, api_key="unused")
    for text in ["我爸胸口疼，出了一身冷汗", "我爸以前中风过，现在恢复得挺好", "血压78/45，人很虚", "哪些药对孩子特别危险"]:
        r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": text}], max_tokens=1)
        api = r.model_extra["safety"]
        local = triage(text)
        assert api["urgent"] == local.urgent == bool(_urgent_notice(text)), text
        assert api["reasons"] == local.reasons and api["source"] == "rules"
        assert r.choices[0].message.content.startswith("【紧急】") == local.urgent
