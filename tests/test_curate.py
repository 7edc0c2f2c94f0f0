"""Curation store, export and admin commands, driven the way a script or an admin drives them
(the browser side is in test_curate_web.py)."""

import json
import multiprocessing as mp
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from discmed.data.curate.export import agreement, build_dpo, build_sft, export
from discmed.data.curate.store import CurationError, Store
from discmed.process import run_watched

ROOT = Path(__file__).resolve().parents[1]

CONSULTS = {
    "c1": (
        "我最近总是头痛，尤其是下午，该怎么办？",
        [
            "下午头痛可能与用眼疲劳、颈椎姿势或血压有关，请问持续多久了？",
            "吃点止痛药就行了。",
            "头痛没关系。",
        ],
    ),
    "c2": (
        "孩子发烧38.5度，要不要去医院？",
        ["可以先物理降温并多补液，若精神差、抽搐或持续高热超过三天请及时就医。", "不用管，自己会好。"],
    ),
    "c3": (
        "饭后胃胀反酸，平时需要注意什么？",
        ["建议少食多餐，避免睡前进食和辛辣油腻食物，症状持续请就诊消化科。", "多喝碳酸饮料可以缓解。"],
    ),
    "c4": (
        "体检发现尿酸偏高，需要吃药吗？",
        ["尿酸轻度升高且无痛风发作时，通常先调整饮食和多饮水，定期复查。", "马上吃降尿酸药。"],
    ),
}


def fill(store: Store, consults=CONSULTS) -> dict[str, list[int]]:
    """Load the literal consultations; returns candidate ids per item in insertion order."""
    ids = {}
    for item_id, (question, replies) in consults.items():
        store.add_item(item_id, [{"role": "user", "content": question}], source="test")
        ids[item_id] = [
            store.add_candidate(item_id, r, model=f"m{i}", params={"temperature": 0.7})
            for i, r in enumerate(replies)
        ]
    return ids


def test_decisions_become_exactly_the_sft_and_dpo_sets(tmp_path):
    store = Store(tmp_path / "c.sqlite")
    cand = fill(store)
    store.issue_token("张三")
    seen = []
    # c1: pick the first, reject the other two with reasons.
    it = store.claim("张三")
    seen.append(it.id)
    store.submit(
        "张三", it.id, best=cand["c1"][0], rejected={cand["c1"][1]: "unsafe", cand["c1"][2]: "unhelpful"}
    )
    # c2: edit the first into the ideal reply, reject the second.
    it = store.claim("张三")
    seen.append(it.id)
    ideal = "体温38.5℃可先物理降温、补充水分；如精神差、抽搐、持续高热，请及时就医。"
    store.submit("张三", it.id, edited=ideal, edited_from=cand["c2"][0], rejected={cand["c2"][1]: "unsafe"})
    # c3: every candidate rejected, nothing written: no SFT record, no pair.
    it = store.claim("张三")
    seen.append(it.id)
    store.submit("张三", it.id, rejected={cand["c3"][0]: "tone", cand["c3"][1]: "factual"})
    assert seen == ["c1", "c2", "c3"]

    summary = export(store, tmp_path / "out")
    sft = [json.loads(x) for x in (tmp_path / "out" / "sft.jsonl").read_text().splitlines()]
    dpo = [json.loads(x) for x in (tmp_path / "out" / "dpo.jsonl").read_text().splitlines()]
    assert sft == [
        {
            "_id": "c1",
            "source": "curated",
            "conversation": [
                {"role": "user", "content": CONSULTS["c1"][0]},
                {"role": "assistant", "content": CONSULTS["c1"][1][0]},
            ],
        },
        {
            "_id": "c2",
            "source": "curated",
            "conversation": [
                {"role": "user", "content": CONSULTS["c2"][0]},
                {"role": "assistant", "content": ideal},
            ],
        },
    ]
    prompt1 = [{"role": "user", "content": CONSULTS["c1"][0]}]
    prompt2 = [{"role": "user", "content": CONSULTS["c2"][0]}]
    assert dpo == [
        {"prompt": prompt1, "chosen": CONSULTS["c1"][1][0], "rejected": CONSULTS["c1"][1][1]},
        {"prompt": prompt1, "chosen": CONSULTS["c1"][1][0], "rejected": CONSULTS["c1"][1][2]},
        {"prompt": prompt2, "chosen": ideal, "rejected": CONSULTS["c2"][1][1]},
    ]
    assert summary["sft"] == 2 and summary["dpo"] == 3 and summary["decisions"] == 3
    # The SFT file reads back through the project's own DISC reader.
    # Both files read back through the readers of `discmed train sft|dpo`.
    from discmed.chat import read_conversations
    from discmed.train.config import read_pairs

    assert [c.id for c in read_conversations(tmp_path / "out" / "sft.jsonl")] == ["c1", "c2"]
    assert read_pairs(tmp_path / "out" / "dpo.jsonl") == dpo


def test_undo_takes_back_the_last_decision_and_returns_its_item(tmp_path):
    store = Store(tmp_path / "c.sqlite")
    cand = fill(store)
    store.submit("a", store.claim("a").id, best=cand["c1"][0])
    assert store.claim("a").id == "c2"  # now holding c2
    d = store.undo("a")
    assert (d.item_id, d.best) == ("c1", cand["c1"][0])
    assert store.decisions() == []
    assert store.claim("a").id == "c1"  # the undone item comes back first; c2 went back to the pool
    assert store.claim("b").id == "c2"
    store.submit("a", "c1", best=cand["c1"][1], rejected={cand["c1"][0]: "factual"})
    assert [(x.item_id, x.best) for x in store.decisions()] == [("c1", cand["c1"][1])]
    assert build_sft(store)[0]["conversation"][-1]["content"] == CONSULTS["c1"][1][1]
    with pytest.raises(CurationError, match="已经提交过"):
        store.submit("a", "c1", best=cand["c1"][1])
    # the undone decision is kept in the database, stamped, never exported
    rows = (
        sqlite3.connect(tmp_path / "c.sqlite")
        .execute("SELECT undone IS NOT NULL FROM decisions ORDER BY id")
        .fetchall()
    )
    assert rows == [(1,), (0,)]


def test_bad_decisions_are_refused(tmp_path):
    store = Store(tmp_path / "c.sqlite")
    cand = fill(store)
    it = store.claim("a")
    with pytest.raises(CurationError, match="最佳回复"):
        store.submit("a", it.id, rejected={cand["c1"][1]: "unsafe"})  # one of three rejected, nothing chosen
    with pytest.raises(CurationError, match="不属于"):
        store.submit("a", it.id, best=cand["c2"][0])
    with pytest.raises(CurationError, match="未知的理由"):
        store.submit("a", it.id, best=cand["c1"][0], rejected={cand["c1"][1]: "boring"})
    with pytest.raises(CurationError, match="既是最佳"):
        store.submit("a", it.id, best=cand["c1"][0], rejected={cand["c1"][0]: "tone"})
    with pytest.raises(CurationError, match="没有分配") as e:
        store.submit("b", it.id, best=cand["c1"][0])
    assert e.value.status == 409
    assert store.decisions() == []


def test_tokens_are_stored_only_as_hashes(tmp_path):
    store = Store(tmp_path / "c.sqlite")
    token = store.issue_token("李四")
    assert store.check_token("李四", token)
    assert not store.check_token("李四", token[:-1] + ("x" if token[-1] != "x" else "y"))
    assert not store.check_token("王五", token)
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("c.sqlite*"))
    assert token.encode() not in raw
    new = store.issue_token("李四")  # reissuing replaces the old token
    assert store.check_token("李四", new) and not store.check_token("李四", token)


def test_expired_lease_hands_the_item_to_someone_else(tmp_path):
    store = Store(tmp_path / "c.sqlite", lease_s=0.3)
    fill(store, {"c1": CONSULTS["c1"]})
    assert store.claim("a").id == "c1"
    assert store.claim("b") is None  # held by a, lease running
    time.sleep(0.4)
    assert store.claim("b").id == "c1"
    with pytest.raises(CurationError) as e:
        store.submit("a", "c1", best=store.item("c1").candidates[0].id)
    assert e.value.status == 409


def _annotate_all(db: str, name: str, start, out) -> None:
    store = Store(db)
    start.wait()
    got = []
    try:
        while (item := store.claim(name)) is not None:
            got.append(item.id)
            store.submit(name, item.id, best=item.candidates[0].id)
    except Exception as e:  # noqa: BLE001 - sent to the test, which fails with it
        got.append(f"error: {e}")
    out.put((name, got))


def test_concurrent_annotators_in_separate_processes_never_share_a_slot(tmp_path):
    db = tmp_path / "c.sqlite"
    store = Store(db)
    consults = {
        f"q{i:02d}": (f"第{i}个问题：咳嗽两周了怎么办？", [f"回复甲{i}", f"回复乙{i}"]) for i in range(40)
    }
    fill(store, consults)
    assert store.set_overlap(0.25) == 10
    overlapped = {it.id for it in store.items() if _slots(db, it.id) == 2}
    # fork: the workers start with everything imported, so they reach the barrier together
    ctx = mp.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_annotate_all, args=(str(db), f"标注员{k}", start, out)) for k in range(4)]
    for p in procs:
        p.start()
    start.set()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    counts: dict[str, list[str]] = {}
    for name, got in results.items():
        assert not [g for g in got if g.startswith("error")], (name, got)
        assert len(got) == len(set(got)), f"{name} got an item twice"
        for item_id in got:
            counts.setdefault(item_id, []).append(name)
    assert set(counts) == set(consults)
    for item_id, names in counts.items():
        assert len(names) == (2 if item_id in overlapped else 1), (item_id, names)
    assert len(store.decisions()) == 50
    assert store.progress()["items_done"] == 40


def _slots(db: Path, item_id: str) -> int:
    return sqlite3.connect(db).execute("SELECT COUNT(*) FROM slots WHERE item_id=?", (item_id,)).fetchone()[0]


def test_cohens_kappa_per_annotator_pair(tmp_path):
    store = Store(tmp_path / "c.sqlite")
    cand = fill(store)
    store.set_overlap(1.0)
    # best picks by candidate position: a = A A B B, b = A A B A -> p_o = .75, p_e = .5, κ = .5
    picks = {"a": [0, 0, 1, 1], "b": [0, 0, 1, 0]}
    for name in ("a", "b"):
        for k, item_id in enumerate(["c1", "c2", "c3", "c4"]):
            assert store.claim(name).id == item_id
            best = cand[item_id][picks[name][k]]
            rejected = {c: "unhelpful" for c in cand[item_id] if c != best}
            store.submit(name, item_id, best=best, rejected=rejected)
    [pair] = agreement(store)
    assert (pair["a"], pair["b"], pair["items"]) == ("a", "b", 4)
    assert pair["best_agreement"] == 0.75 and pair["kappa_best"] == 0.5
    # acceptable marks over 9 candidates: they disagree on both candidates of c4 only
    assert pair["candidates"] == 9 and pair["acceptable_agreement"] == round(7 / 9, 4)
    # overlap items count once in the sets: the first decision submitted wins (a's)
    assert [r["conversation"][-1]["content"] for r in build_sft(store)] == [
        CONSULTS["c1"][1][0],
        CONSULTS["c2"][1][0],
        CONSULTS["c3"][1][1],
        CONSULTS["c4"][1][1],
    ]
    assert len(build_dpo(store)) == 5


def _cli(*args):
    # In-process through the real root app (one import instead of a process per command).
    from typer.testing import CliRunner

    from discmed.cli import app

    return CliRunner().invoke(app, ["data", "curate", *map(str, args)])


def test_admin_commands_load_token_progress_and_bad_input(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(
        json.dumps(
            {
                "_id": "g1",
                "source": "test",
                "conversation": [
                    {"role": "user", "content": "失眠多梦怎么调理？"},
                    {"role": "assistant", "content": "规律作息。"},
                ],
                "candidates": [
                    "睡前避免咖啡和手机，固定作息，持续失眠请就诊。",
                    {"text": "喝酒助眠。", "model": "gpt-x", "params": {"temperature": 1.0}},
                ],
            },
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps(
            {
                "_id": "b1",
                "conversation": [{"role": "user", "content": "问题一"}],
                "candidates": ["好的回复"],
            },
            ensure_ascii=False,
        )
        + "\n"
        + json.dumps(
            {
                "_id": "b2",
                "conversation": [{"role": "user", "content": "问题二"}],
                "candidates": ["x", {"text": ""}],
            },
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    db = tmp_path / "c.sqlite"
    r = _cli("load", "--db", db, good, "--with-reference", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.splitlines()[-1]) == {
        "db": str(db),
        "records": 1,
        "items_added": 1,
        "candidates_added": 3,
    }
    r = _cli("load", "--db", db, bad)
    assert r.exit_code == 2
    assert f"{bad}:2: candidates[1].text: missing or empty" in r.stderr
    store = Store(tmp_path / "c.sqlite")
    assert [it.id for it in store.items()] == ["g1"]  # the bad file added nothing, the good one stays
    [item] = store.items()
    assert [(c.model, c.params) for c in item.candidates] == [
        ("reference", {}),
        ("imported", {}),
        ("gpt-x", {"temperature": 1.0}),
    ]
    r = _cli("token", "--db", db, "张三", "--json")
    token = json.loads(r.stdout.splitlines()[-1])["tokens"]["张三"]
    assert store.check_token("张三", token)
    store.submit("张三", store.claim("张三").id, best=item.candidates[1].id)
    r = _cli("progress", "--db", db, "--json")
    p = json.loads(r.stdout.splitlines()[-1])
    assert (p["items"], p["slots_done"], p["annotators"]["张三"]["done"]) == (1, 1, 1)
    r = _cli("export", "--db", db, "--out", tmp_path / "out", "--json")
    s = json.loads(r.stdout.splitlines()[-1])
    assert (s["sft"], s["dpo"], s["agreement"]) == (1, 0, [])
    r = _cli("export", "--db", tmp_path / "missing.sqlite")
    assert r.exit_code == 2 and f"no curation database at {tmp_path / 'missing.sqlite'}" in r.stderr


@pytest.mark.slow
def test_candidates_from_the_tiny_model_carry_provenance_and_resume(tmp_path, tiny_model, shared_data):
    # Three real DISC-Med-SFT consultations; their last doctor turn becomes the "reference" candidate.
    lines = (
        (shared_data / "disc-medllm" / "train" / "test_examples.jsonl")
        .read_text(encoding="utf-8")
        .splitlines()[:3]
    )
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    records = [json.loads(x) for x in lines]
    cmd = [
        sys.executable,
        "-m",
        "discmed.cli",
        "data",
        "candidates",
        "--models",
        "tiny",
        "--input",
        "p.jsonl",
        "--n",
        "2",
        "--temperatures",
        "0.7,1.0",
        "--max-new-tokens",
        "24",
        "--db",
        "c.sqlite",
        "--with-reference",
        "--json",
    ]
    t0 = time.time()
    r = run_watched(cmd, cwd=tmp_path)
    t1 = time.time()
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout.splitlines()[-1])
    assert first["items"] == 3 and first["generated"] + first["empty"] == 6 and first["generated"] >= 4
    store = Store(tmp_path / "c.sqlite")
    for rec, item in zip(records, store.items(), strict=True):
        assert item.id == rec["_id"]
        assert item.messages == rec["conversation"][:-1] and item.messages[-1]["role"] == "user"
        with sqlite3.connect(tmp_path / "c.sqlite") as db:
            rows = db.execute(
                "SELECT model, sample, params, created, text FROM candidates WHERE item_id=? ORDER BY model, sample",
                (item.id,),
            ).fetchall()
        assert rows[0][0] == "reference" and rows[0][4] == rec["conversation"][-1]["content"]
        for model, sample, params, created, text in rows[1:]:
            params = json.loads(params)
            assert model == "tiny" and text.strip()
            assert (params["temperature"], params["seed"], params["max_new_tokens"]) == (
                [0.7, 1.0][sample],
                sample,
                24,
            )
            assert t0 <= created <= t1
    # A rerun generates nothing new: every stored sample is skipped.
    r = run_watched(cmd, cwd=tmp_path)
    again = json.loads(r.stdout.splitlines()[-1])
    assert again["skipped"] == first["generated"] and again["generated"] <= first["empty"]
