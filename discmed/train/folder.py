"""What makes a model folder that `train sft|dpo|merge|export` writes self-consistent: it loads
and prompts correctly with transformers alone (and so with vLLM, which reads the same files).

- a chat template that renders exactly the format the weights were trained on, checked token
  for token against `discmed.formats` before it is written (for `disc`: bos, 195 + user,
  196 + assistant + eos; a tokenizer's ChatML template beside disc-trained weights would talk
  to the model in a format it never learnt);
- a generation config that stops where the format ends a turn (`merge.generation_config_for`);
- a model card written by discmed (base model, data, recipe, figures) in place of TRL's;
- for a LoRA adapter, a base reference that travels: the model as the recipe named it (`tiny`,
  a hub id, the path as written), never the absolute cache path it was loaded from.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from discmed.chat import atomic_write_text, read_json
from discmed.formats import DISC_ASSISTANT_ID, DISC_USER_ID, FormatError, get_format

log = logging.getLogger("discmed.train")

# Conversations the template is checked on: system, one and two rounds, Chinese and ASCII.
PROBES = [
    [{"role": "user", "content": "头痛三天了，怎么办？"}, {"role": "assistant", "content": "请问有没有发烧？"}],
    [{"role": "system", "content": "你是一名医生。"}, {"role": "user", "content": "咳嗽 2 weeks"},
     {"role": "assistant", "content": "有痰吗？"}, {"role": "user", "content": "有，黄痰。"},
     {"role": "assistant", "content": "建议查血常规。"}],
]

_CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_LLAMA3 = (
    "{{ '<|begin_of_text|>' }}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)


def chat_template(fmt_name: str, tokenizer: Any) -> str | None:
    """The Jinja chat template of a format (None for `auto`: the tokenizer's own is the format)."""
    if fmt_name == "auto":
        return None
    if fmt_name == "chatml":
        return _CHATML
    if fmt_name == "llama3":
        return _LLAMA3
    if fmt_name != "disc":
        raise FormatError(f"no chat template for format {fmt_name!r}")
    user, assistant = (json.dumps(tokenizer.convert_ids_to_tokens(i)) for i in (DISC_USER_ID, DISC_ASSISTANT_ID))
    # DISC's own layout (discmed.formats.DiscFormat): system text bare after bos, each user turn
    # after 195, each assistant turn after 196 and closed by eos; a generation prompt ends in 196.
    return (
        "{{ bos_token }}{% for m in messages %}"
        f"{{% if m['role'] == 'user' %}}{{{{ {user} + m['content'] }}}}"
        f"{{% elif m['role'] == 'assistant' %}}{{{{ {assistant} + m['content'] + eos_token }}}}"
        "{% else %}{{ m['content'] }}{% endif %}{% endfor %}"
        f"{{% if add_generation_prompt %}}{{{{ {assistant} }}}}{{% endif %}}"
    )


def _ids(tokenizer: Any, messages: list[dict], generation: bool) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation)
    return list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out)


def check_template(tokenizer: Any, fmt_name: str) -> None:
    """Raise FormatError unless the tokenizer's chat template gives discmed.formats' ids exactly,
    for training rows and for generation prompts."""
    fmt = get_format(fmt_name)
    for messages in PROBES:
        want = fmt.encode(messages, tokenizer, max_length=None)[0]
        got = _ids(tokenizer, messages, generation=False)
        if got != want:
            raise FormatError(f"the {fmt_name} chat template renders {got[:12]}… where training saw {want[:12]}…")
        prompt = fmt.prompt(messages[:-1], tokenizer, max_length=10**6, reserve=0)
        if _ids(tokenizer, messages[:-1], generation=True) != prompt:
            raise FormatError(f"the {fmt_name} chat template's generation prompt differs from discmed.formats'")


def set_chat_template(tokenizer: Any, fmt_name: str) -> bool:
    """Give the tokenizer the template of `fmt_name` (its own stays for `auto`) if it renders
    exactly the format; else none at all, said in the log: no template is better than a wrong one
    (a tokenizer that cannot spell 195/196 as text, say). Returns whether it has one."""
    template = chat_template(fmt_name, tokenizer)
    if template is not None:
        tokenizer.chat_template = template
    try:
        check_template(tokenizer, fmt_name)
        return True
    except FormatError as e:
        log.warning("no chat template written: %s; prompt this model with discmed.formats (%s)", e, fmt_name)
        tokenizer.chat_template = None
        return False


def save_tokenizer(tokenizer: Any, folder: Path, fmt_name: str) -> bool:
    """Save the tokenizer with the format's checked chat template, replacing any template a
    library saved there before (TRL's save_model writes the tokenizer's own)."""
    ok = set_chat_template(tokenizer, fmt_name)
    tokenizer.save_pretrained(str(folder))
    if not ok:
        (folder / "chat_template.jinja").unlink(missing_ok=True)
        cfg = folder / "tokenizer_config.json"
        if cfg.is_file():
            data = read_json(cfg)
            if data.pop("chat_template", None) is not None:
                atomic_write_text(cfg, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return ok


def portable_base(model: str) -> str:
    """The base of an adapter as the recipe named it: `tiny`, a hub id, or the path as written."""
    return model


def set_adapter_base(folder: Path, base: str) -> None:
    cfg = folder / "adapter_config.json"
    if cfg.is_file():
        data = read_json(cfg)
        data["base_model_name_or_path"] = portable_base(base)
        atomic_write_text(cfg, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def from_tiny(base: str, depth: int = 8) -> bool:
    """Whether a base model is discmed's tiny one, or was trained from it (followed through the
    folders' `discmed_recipe.json`)."""
    if base == "tiny":
        return True
    folder = Path(base)
    if depth == 0 or not folder.is_dir():
        return False
    if (folder / "discmed-tiny.json").is_file():
        return True
    trained = folder / "discmed_recipe.json"
    parent = read_json(trained).get("recipe", {}).get("model") if trained.is_file() else None
    return bool(parent) and from_tiny(parent, depth - 1)


def model_card(*, name: str, command: str, base: str, fmt_name: str, recipe: dict[str, Any] | None = None,
               data: list[dict[str, Any]] | None = None, figures: dict[str, Any] | None = None,
               template: bool = True) -> str:
    """README.md for a model folder discmed wrote: what it was made from, how, and how it did."""
    hub_base = base if base.count("/") == 1 and not base.startswith((".", "/", "~")) else None
    lines = ["---", "library_name: transformers", "language: [zh]", "tags: [discmed, medical, chat]"]
    if hub_base:
        lines.append(f"base_model: {hub_base}")
    lines += ["---", "", f"# {name}", "",
              f"Written by discmed (`discmed train {command}`) from the base model `{base}`.", ""]
    if from_tiny(base):
        lines += ["It descends from discmed's embedded tiny model: it proves the machinery, not medicine. "
                  "Its replies are no medical advice.", ""]
    else:
        lines += ["A language model is not a doctor: its replies are no diagnosis and no substitute for "
                  "seeing one. 本模型的回答不能替代医生的诊断与治疗。", ""]
    fmt_note = {"disc": "DISC-MedLLM's: `<bos>`, then each user turn after token 195, each assistant turn "
                        "after token 196 and closed by `<eos>`",
                "chatml": "ChatML (`<|im_start|>role … <|im_end|>`)", "llama3": "Llama 3's header format",
                "auto": "the tokenizer's own chat template"}[fmt_name]
    if template:
        how = ("The folder's chat template renders exactly this (checked token for token against "
               "`discmed.formats`), so `apply_chat_template`, a transformers pipeline and `vllm serve` "
               "prompt the model as it was trained.")
    else:
        how = ("No chat template could render this exactly with this tokenizer, so the folder has none: "
               "prompt it through discmed (`discmed chat|serve`, `discmed.formats`), not apply_chat_template.")
    lines += ["## Chat format", "", f"`{fmt_name}`: {fmt_note}. {how}", ""]
    if data:
        lines += ["## Data", "", "| file | weight | sha256 |", "|---|---|---|"]
        lines += [f"| {d['path']} | {d['weight']} | {d['sha256'][:16]}… |" for d in data]
        lines.append("")
    if figures:
        lines += ["## Figures", "", "| | |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in figures.items() if v is not None and not isinstance(v, dict | list)]
        lines.append("")
    if recipe:
        lines += ["## Recipe", "", "```json", json.dumps(recipe, ensure_ascii=False, indent=1), "```", ""]
    return "\n".join(lines)


def write_card(folder: Path, name: str | None = None, **card: Any) -> None:
    atomic_write_text(folder / "README.md", model_card(name=name or folder.resolve().name, **card))
