"""Terminal chat driven through a real pseudo-terminal (pexpect), on the tiny model."""

import os
import sys

import pexpect
import pytest

pytestmark = pytest.mark.slow


def spawn(*args: str) -> pexpect.spawn:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    return pexpect.spawn(
        sys.executable, ["-m", "discmed", "chat", *args], env=env, encoding="utf-8", timeout=120, dimensions=(40, 200)
    )


def test_terminal_chat_commands_and_interrupt(tiny_model):
    child = spawn("--model", "tiny", "--max-new-tokens", "400")
    child.expect("欢迎使用")
    child.expect("不能替代医生")  # the standing safety notice
    child.expect("用户：")
    child.sendline("医生您好，我咳嗽三天了，有点发烧。")
    child.expect("医生：")
    child.expect("用户：")  # a whole streamed reply, then the next prompt
    first = child.before.strip()
    assert first, "empty reply"

    child.sendline("stream")
    child.expect("流式输出：关")
    child.expect("用户：")
    child.sendline("还需要注意什么？")
    child.expect("医生：")
    child.expect("用户：")

    child.sendline("stream")
    child.expect("流式输出：开")
    child.expect("用户：")
    child.sendline("我胸口有点闷。")
    child.expect("医生：")
    child.sendintr()  # Ctrl+C while the reply streams: the reply stops, the session stays
    index = child.expect(["已停止本次回答", "用户："])
    print("interrupt landed mid-reply" if index == 0 else "reply had ended")
    if index == 0:
        child.expect("用户：")
    child.sendline("clear")
    child.expect("历史已清空")
    child.expect("用户：")
    child.sendline("exit")
    child.expect(pexpect.EOF)
    child.wait()  # not close(): that signals a child still tearing down
    assert child.exitstatus == 0, (child.exitstatus, child.signalstatus, child.before)


def test_terminal_chat_over_openai_endpoint(tiny_server):
    child = spawn("--model", f"openai:{tiny_server}@tiny", "--max-new-tokens", "24")
    child.expect("用户：")
    child.sendline("头疼怎么办？")
    child.expect("医生：")
    child.expect("用户：")
    assert child.before.strip()
    child.sendeof()
    child.expect(pexpect.EOF)
    child.wait()
    assert child.exitstatus == 0
