"""The data card: a file's history followed by fingerprints, as a funnel that adds up, with
what is not in the history listed, not summed (the reviewer's folder of several runs)."""

import json

from typer.testing import CliRunner

from discmed.data.card import write_card
from discmed.data.lineage import fingerprint, stamp


def discmed(*args):
    from discmed.cli import app

    r = CliRunner().invoke(app, ["data", *map(str, args)], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr[-2000:]
    return r


def rec(i, source="MedDialog", user="头疼三天了", reply="建议先测血压，必要时做头颅CT。"):
    return {"_id": f"r{i}", "source": source, "conversation": [{"role": "user", "content": f"{user}（{i}）"},
                                                             {"role": "assistant", "content": reply}]}


def write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_two_runs_in_one_folder_each_card_tells_its_own_history(tmp_path, shared_data):
    """The reviewer's folder: a decontam of another run removed records, a second scrub ran;
    the card of this pipeline (which removed none) counts neither, and names them."""
    d = tmp_path / "data"
    d.mkdir()
    train = shared_data / "disc-medllm" / "train" / "test_examples.jsonl"
    discmed("load", "disc", train, "-o", d / "meddialog.jsonl", "--no-progress")
    discmed("scrub", d / "meddialog.jsonl", "-o", d / "scrubbed.jsonl", "--no-progress")
    discmed("dedup", d / "scrubbed.jsonl", "-o", d / "dedup.jsonl", "--no-progress")
    discmed("decontam", d / "dedup.jsonl", "-o", d / "clean.jsonl", "--shared-data", shared_data, "--no-progress")
    discmed("mix", d / "clean.jsonl", "-o", d / "sft.jsonl", "--no-progress")
    # Another run in the same folder: evaluation questions planted, so its decontam removes some;
    # and a second scrub of another file.
    cmd = json.loads((shared_data / "disc-medllm" / "eval" / "samples" / "cmd_samples.json").read_text(encoding="utf-8"))
    leaks = [rec(100 + i, user=q["question"]) for i, q in enumerate(cmd[:5])]
    write(d / "other.jsonl", leaks + [rec(i) for i in range(20)])
    other = json.loads(discmed("decontam", d / "other.jsonl", "-o", d / "other.clean.jsonl", "--shared-data", shared_data,
                               "--no-progress", "--json").stdout.splitlines()[-1])
    assert other["removed"] >= 5
    discmed("scrub", d / "other.jsonl", "-o", d / "other.scrubbed.jsonl", "--no-progress")

    r = discmed("card", d / "sft.jsonl", "-o", d / "card", "--json")
    s = json.loads(r.stdout.splitlines()[-1])
    assert [(f["step"], f["in"], f["out"]) for f in s["funnel"]] == [
        ("load", 163, 163), ("scrub", 163, 163), ("dedup", 163, 163), ("decontam", 163, 163), ("mix", 163, 163)]
    assert [f["check"] for f in s["funnel"]] == ["", "= #1", "= #2", "= #3", "= #4"]
    decontam = s["funnel"][3]
    assert decontam["dropped"] == [["contain an evaluation item", 0]]
    load = s["funnel"][0]
    assert load["dropped"] == [["skipped at load", 0]]
    # Not summed: the other decontam and scrub are warnings, by name.
    other_names = {"other.clean.jsonl.summary.json", "other.scrubbed.jsonl.summary.json"}
    assert {w.split(" ")[0].split("/")[-1] for w in s["warnings"]} == other_names
    assert all(f"warning: {d / n}" in r.stderr for n in other_names)
    # One name per source (DISC's "meddial" is MedDialog from load on), one scrub's counts.
    assert s["sources"] == {"MedDialog": 163}
    scrub = json.loads((d / "scrubbed.jsonl.summary.json").read_text(encoding="utf-8"))
    assert sum(s["scrub"].values()) == scrub["replaced_total"]
    md = (d / "card" / "DATA_CARD.md").read_text(encoding="utf-8")
    assert f"`{d / 'scrubbed.jsonl.changes.jsonl'}` ({scrub['changes_count']} lines)" in md
    assert "| 4 | decontam | `clean.jsonl` | #3 | 163 | 163 | contain an evaluation item 0 | = #3 |" in md
    assert "| MedDialog | 163 | 100.0% |" in md and "meddial |" not in md


def test_rejects_are_records_failures_shown_and_steps_checked(tmp_path):
    # Files made here and summaries that describe them (the card's input), as each step writes them.
    scrubbed = write(tmp_path / "scrubbed.jsonl", [rec(i) for i in range(200)])
    rewritten = write(tmp_path / "rewritten.jsonl", [rec(i) for i in range(40)])
    (tmp_path / "rewritten.jsonl.failed.jsonl").write_text('{"_id": "r7"}\n', encoding="utf-8")
    kgqa_src = write(tmp_path / "cmekg.json", [{"text": "x", "spo_list": [["a", "b", "c"]]}])
    kgqa = write(tmp_path / "kgqa.jsonl", [rec(300 + i, "CMeKG") for i in range(10)])
    mixed = write(tmp_path / "sft.jsonl", [rec(i) for i in range(30)] + [rec(300 + i, "CMeKG") for i in range(5)])
    summaries = [
        stamp({"step": "rewrite", "accepted": 40, "rejected": 149, "failed": 11, "bad_records": 0, "limit": None,
               "rejected_by_reason": {"missing numbers": 120, "too short": 100, "new numbers": 119}},
              [scrubbed], rewritten),
        stamp({"step": "kgqa", "entities": 12, "triples": 30, "accepted": 10, "rejected": 2, "failed": 0,
               "rejected_by_reason": {"format": 2}}, [kgqa_src], kgqa),
        stamp({"step": "mix", "records": 35, "recipe": "DISC", "seed": 42, "available": {"MedDialog": 40, "CMeKG": 10},
               "taken": {"MedDialog": 30, "CMeKG": 5}, "bad_records": 0}, [rewritten, kgqa], mixed),
    ]
    s = write_card(mixed, tmp_path / "card", summaries)
    rows = {f["step"]: f for f in s["funnel"]}
    # 149 rejected records (not the 339 reasons), 11 failed, and 200 in = 40 + 149 + 11.
    assert (rows["rewrite"]["in"], rows["rewrite"]["out"]) == (200, 40)
    assert rows["rewrite"]["dropped"] == [("rejected", 149), ("failed", 11)]
    assert s["rejected"] == {"rewrite": 149, "kgqa": 2}
    assert s["rejected_by_reason"]["rewrite: missing numbers"] == 120
    # The input was not written by a step the card knows: said, not guessed.
    assert rows["rewrite"]["check"] == "input written outside the steps (no summary for it): not checked"
    # mix: 50 available, 35 drawn; the 15 not drawn are the recipe's, and the rest adds up.
    assert (rows["mix"]["in"], rows["mix"]["out"], rows["mix"]["check"]) == (50, 35, "= #1 + #2")
    assert rows["mix"]["dropped"] == [("not drawn by the DISC recipe (seed 42)", 15)]
    md = (tmp_path / "card" / "DATA_CARD.md").read_text(encoding="utf-8")
    assert "Rejected records (the funnel's counts): rewrite 149, kgqa 2." in md
    assert "| rewrite: missing numbers | 120 |" in md
    assert f"rewrite: 11 records failed (no reply from the teacher after retries), listed in `{rewritten}.failed.jsonl`" in md
    assert s["warnings"] == []


def test_counts_that_do_not_add_up_are_said(tmp_path):
    a = write(tmp_path / "a.jsonl", [rec(i) for i in range(10)])
    b = write(tmp_path / "b.jsonl", [rec(i) for i in range(8)])
    c = write(tmp_path / "c.jsonl", [rec(i) for i in range(5)])
    summaries = [stamp({"step": "load", "kind": "disc", "records": 10, "bad_records": 0, "inputs": []}, [], a),
                 # the step read 8, but the file before it held 10 (edited between the steps)
                 stamp({"step": "dedup", "kept": 8, "removed_exact": 0, "removed_near": 0, "bad_records": 0}, [a], b),
                 stamp({"step": "rewrite", "accepted": 5, "rejected": 1, "failed": 0, "limit": 6,
                        "rejected_by_reason": {"too short": 1}}, [b], c)]
    s = write_card(c, tmp_path / "card", summaries)
    assert [f["check"] for f in s["funnel"]] == [
        "", "does not add up: read 8, the input held 10 (was the file changed between the steps?)",
        "6 of 8: run with --limit 6"]


def test_a_step_that_changed_nothing_and_summaries_without_history(tmp_path):
    """decontam that removes nothing writes the bytes it read: the card tells the two files
    apart by path. An old summary (no lineage) and a second copy of one are listed, not used."""
    a = write(tmp_path / "dedup.jsonl", [rec(i) for i in range(4)])
    b = write(tmp_path / "clean.jsonl", [rec(i) for i in range(4)])
    assert fingerprint(a)["sha256"] == fingerprint(b)["sha256"]
    dedup = stamp({"step": "dedup", "kept": 4, "removed_exact": 0, "removed_near": 0, "bad_records": 0}, [], a)
    decontam = stamp({"step": "decontam", "kept": 4, "removed": 0, "bad_records": 0}, [a], b)
    s = write_card(b, tmp_path / "card", [decontam, dedup, {**decontam, "_file": "copy.summary.json"},
                                         {"step": "decontam", "removed": 271, "_file": "old.summary.json"}])
    assert [(f["step"], f["from"]) for f in s["funnel"]] == [("dedup", []), ("decontam", [1])]
    assert s["warnings"] == [
        "copy.summary.json describes the same file as the decontam summary for clean.jsonl (same bytes): counted once",
        "old.summary.json has no lineage (written before discmed recorded one, or by rewrite_file or kgqa_file "
        "called from Python, which do not yet; their commands do): not used"]
    # And with no summary for the file at all, the card is still written, and says so.
    s = write_card(b, tmp_path / "card2", [])
    assert s["funnel"] == [] and s["warnings"][0].startswith(f"no step summary wrote {b}")
