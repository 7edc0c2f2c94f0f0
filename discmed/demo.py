"""`discmed demo`: the main job on the embedded default.

Builds the tiny model (reused when present) and runs a short scripted consultation with it
through the same backend and chat format every other command uses, saying what it did and
where the model is. The tiny model proves the machinery, not medicine.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from discmed import SAFETY_NOTICE_ZH

SCRIPT = [
    "医生您好，我这两天咳嗽，有点低烧，37.8℃，需要吃药吗？",
    "没有痰，嗓子有点痛。",
    "好的，谢谢医生。",
]


def run_consultation(model: str = "tiny", max_new_tokens: int = 64) -> dict:
    """The scripted consultation: returns the transcript and timings."""
    from discmed.backend import load_backend

    backend = load_backend(model)
    params = backend.default_params()
    params.max_new_tokens = max_new_tokens
    history: list[dict[str, str]] = []
    turns = []
    for question in SCRIPT:
        history.append({"role": "user", "content": question})
        t0 = time.time()
        reply = "".join(backend.stream(history, params))
        turns.append({"user": question, "assistant": reply, "seconds": round(time.time() - t0, 2)})
        history.append({"role": "assistant", "content": reply or "（无回复）"})
    return {"model": getattr(backend, "path", model), "turns": turns}


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        model: Annotated[str, typer.Option("--model", "-m", help="Model spec (default: the embedded tiny model)")] = "tiny",
        as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary last")] = False,
    ) -> None:
        """Build the tiny model if needed and run a scripted consultation with it."""
        from rich.console import Console

        from discmed.tiny import default_path, ensure_tiny

        console = Console(highlight=False)
        t0 = time.time()
        if model == "tiny":
            fresh = not (default_path() / "discmed-tiny.json").exists()
            console.print("[bold]1/2[/] 构建内置小模型（约一两分钟）…" if fresh else "[bold]1/2[/] 复用已构建的内置小模型")
            path = ensure_tiny(quiet=False)
            info = json.loads((path / "discmed-tiny.json").read_text())
            console.print(f"    模型目录：{path}（{info['parameters']:,} 参数，预训练损失 {info['loss_first']} → {info['loss_last']}）")
        console.print("[bold]2/2[/] 脚本化问诊（DISC 对话格式，流式生成）")
        console.print(f"[dim]{SAFETY_NOTICE_ZH}[/]")
        result = run_consultation(model)
        for turn in result["turns"]:
            console.print(f"[cyan]患者：[/]{turn['user']}")
            console.print(f"[green]医生（{model}）：[/]{turn['assistant']}  [dim]({turn['seconds']} s)[/]")
        console.print(
            "\n内置小模型只证明流程可以跑通，不代表任何医学能力。"
            "换成真实模型：discmed chat --model hf:Flmc/DISC-MedLLM（或任何本地目录、OpenAI 兼容地址）。"
        )
        result["seconds"] = round(time.time() - t0, 1)
        if as_json:
            print(json.dumps(result, ensure_ascii=False))
