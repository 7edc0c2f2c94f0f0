"""The job engine against a real loopback HTTP endpoint: results, cache, retries, rate limit,
a run killed with SIGKILL that restarts without redoing or duplicating anything, and results
keyed by the model's identity (a folder retrained in place is asked again)."""

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import endpoint_stats as _stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import jobs_throughput  # noqa: E402  (the endpoint the benchmark uses)


def _runner(tmp_path, **kw):
    from discmed.jobs import JobRunner

    kw.setdefault("cache", tmp_path / "cache.sqlite")
    return JobRunner(tmp_path / "journal.sqlite", progress=False, **kw)


def test_results_in_input_order_with_tally_and_provenance(tmp_path, endpoint):
    from discmed.backend import GenParams, load_backend

    runner = _runner(tmp_path, concurrency=8)
    runner.set_meta(prompt_version="t1", teacher="echo")
    teacher = runner.client(load_backend(f"openai:{endpoint}@echo"), name="teacher")

    async def work(key, text):
        return {"reply": await teacher.chat([{"role": "user", "content": text}], GenParams(max_new_tokens=8))}

    items = [(f"a{i}", f"顺序测试{i}号") for i in range(30)]
    s = runner.run(items, work)
    assert s["done"] == 30 and s["failed"] == 0 and s["calls"] == 30 and s["cache_hits"] == 0
    assert s["prompt_tokens"] > 0 and s["completion_tokens"] > 0
    got = list(runner.results())
    assert [k for k, _ in got] == [k for k, _ in items]
    assert got[3][1]["reply"] == "回复：顺序测试3号"
    assert runner.meta() == {"prompt_version": "t1", "teacher": "echo", "models": {"teacher": f"openai:{endpoint}@echo"}}
    prov = json.loads(runner.con.execute("SELECT provenance FROM items WHERE key='a0'").fetchone()[0])
    assert prov == {"models": [f"teacher=openai:{endpoint}@echo"], "calls": 1, "cache_hits": 0}

    # Same journal again: everything is skipped, nothing is called.
    s2 = runner.run(items, work)
    assert s2["skipped"] == 30 and s2["done"] == 0
    runner.close()

    # A fresh journal with the same cache: every call is a cache hit, the endpoint sees nothing new.
    before = _stats(endpoint)
    (tmp_path / "journal.sqlite").unlink()
    r3 = _runner(tmp_path, concurrency=8)
    teacher = r3.client(load_backend(f"openai:{endpoint}@echo"), name="teacher")
    s3 = r3.run(items, work)
    assert s3["done"] == 30 and s3["cache_hits"] == 30 and s3["calls"] == 0
    assert _stats(endpoint) == before


def test_failures_are_recorded_and_retried_on_the_next_run(tmp_path, endpoint):
    from discmed.backend import CallError, GenParams, load_backend

    runner = _runner(tmp_path, concurrency=4)
    # A dead endpoint fails before any item is sent, naming the endpoint.
    with pytest.raises(CallError, match=r"cannot reach the OpenAI-compatible endpoint at http://127\.0\.0\.1:9/v1"):
        runner.client(load_backend("openai:http://127.0.0.1:9/v1@none", max_retries=0), name="dead")

    live = runner.client(load_backend(f"openai:{endpoint}@echo", max_retries=0), name="live")

    async def work(key, text):
        return {"reply": await live.chat([{"role": "user", "content": text}], GenParams(max_new_tokens=8))}

    s = runner.run([("x1", "FAULT:500 一"), ("x2", "正常二")], work)
    assert s["failed"] == 1 and s["done"] == 1 and s["first_error"].startswith(f"{endpoint} (model echo) answered 500")
    assert set(dict(runner.failures())) == {"x1"}

    async def work2(key, text):
        return {"reply": await live.chat([{"role": "user", "content": text.replace("FAULT:500 ", "")}],
                                         GenParams(max_new_tokens=8))}

    s2 = runner.run([("x1", "FAULT:500 一"), ("x2", "正常二")], work2)  # the failed one is asked again
    assert s2["done"] == 1 and s2["skipped"] == 1 and dict(runner.failures()) == {}


def test_rate_limit_spreads_calls(tmp_path, endpoint):
    from discmed.backend import GenParams, load_backend

    runner = _runner(tmp_path, concurrency=16, rate=20.0, cache=None)
    c = runner.client(load_backend(f"openai:{endpoint}@echo"))

    async def work(key, text):
        return {"reply": await c.chat([{"role": "user", "content": text}], GenParams(max_new_tokens=8))}

    t0 = time.perf_counter()
    s = runner.run([(f"r{i}", f"限速{i}") for i in range(21)], work)
    # 21 starts at 20/s need at least 1 s, though 16 workers would finish in ~0.1 s unthrottled.
    assert s["done"] == 21 and time.perf_counter() - t0 >= 1.0


def test_duplicate_keys_are_refused(tmp_path, endpoint):
    runner = _runner(tmp_path, cache=None)

    async def work(key, text):
        return {}

    with pytest.raises(ValueError, match="duplicate job key 'k'"):
        runner.run([("k", 1), ("k", 2)], work)


DRIVER = textwrap.dedent("""
    import json, sys
    from discmed.backend import GenParams, load_backend
    from discmed.jobs import JobRunner
    base, journal, out = sys.argv[1:4]
    runner = JobRunner(journal, concurrency=4, cache=None, progress=False)
    t = runner.client(load_backend(f"openai:{base}@echo"))
    async def work(key, text):
        return {"id": key, "reply": await t.chat([{"role": "user", "content": text}], GenParams(max_new_tokens=8))}
    runner.run([(f"item-{i}", f"杀进程测试{i}") for i in range(80)], work)
    with open(out, "w", encoding="utf-8") as f:
        for key, r in runner.results():
            f.write(json.dumps(r, ensure_ascii=False) + "\\n")
""")


@pytest.mark.slow  # two subprocesses, each importing discmed (and with it torch)
def test_sigkill_mid_run_then_restart_gives_exact_set(tmp_path):
    # A slower endpoint of its own (100 ms per call, 4 in flight: ~2 s for 80 items) so the kill lands mid-run.
    proc, base = jobs_throughput.start_endpoint(0.1)
    try:
        driver = tmp_path / "driver.py"
        driver.write_text(DRIVER, encoding="utf-8")
        journal, out = tmp_path / "j.sqlite", tmp_path / "out.jsonl"
        run = subprocess.Popen([sys.executable, str(driver), base, str(journal), str(out)])
        done_at_kill = 0
        deadline = time.time() + 60
        while time.time() < deadline:
            time.sleep(0.05)
            if journal.exists():
                try:
                    with sqlite3.connect(journal) as con:
                        done_at_kill = con.execute("SELECT count(*) FROM items WHERE status='done'").fetchone()[0]
                except sqlite3.OperationalError:
                    continue
                if done_at_kill >= 20:
                    break
        run.send_signal(signal.SIGKILL)
        run.wait()
        assert not out.exists(), "the run finished before it could be killed"
        with sqlite3.connect(journal) as con:
            finished = {k for (k,) in con.execute("SELECT key FROM items WHERE status='done'")}
        assert 20 <= len(finished) < 80

        subprocess.run([sys.executable, str(driver), base, str(journal), str(out)], check=True, timeout=120)
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        ids = [r["id"] for r in rows]
        assert ids == [f"item-{i}" for i in range(80)]  # exactly the set, in order, no duplicates
        assert all(r["reply"] == f"回复：杀进程测试{r['id'][5:]}" for r in rows)
        counts = _stats(base)
        # Items finished before the kill were never asked again.
        assert all(counts[f"杀进程测试{k[5:]}"] == 1 for k in finished)
        assert set(counts) == {f"杀进程测试{i}" for i in range(80)}
    finally:
        proc.terminate()
        proc.wait()


@pytest.mark.slow
def test_local_backend_calls_are_batched(tmp_path, tiny_model):
    """Concurrent job calls on a local model join the engine's running batch (at most its
    batch_size), and batching does not change a greedy reply."""
    from discmed.backend import GenParams, load_backend

    backend = load_backend(f"hf:{tiny_model}", batch_size=4)
    runner = _runner(tmp_path, concurrency=8, cache=None)
    c = runner.client(backend)
    params = GenParams(max_new_tokens=4)

    async def work(key, text):
        return {"reply": await c.chat([{"role": "user", "content": text}], params)}

    s = runner.run([(f"b{i}", f"头疼{i}天怎么办") for i in range(8)], work)
    seen = backend.engine.stats()
    assert s["done"] == 8 and 1 < seen.max_batch_seen <= 4 and seen.batches < 8
    expected = backend.chat([[{"role": "user", "content": "头疼3天怎么办"}]], params)[0]
    assert dict(runner.results())["b3"]["reply"] == expected  # batching does not change greedy output


def test_rejected_requests_are_not_retried(tmp_path):
    """A 4xx such as a prompt over the context length fails the item at once; a 503 is retried."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from discmed.backend import GenParams, load_backend

    seen: list[int] = []

    class Refuse(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            code = 400 if len(seen) < 1 else 503
            seen.append(code)
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "prompt too long", "type": "invalid_request_error"}}')

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        runner = _runner(tmp_path, concurrency=1)
        # The openai SDK's retries are the only ones: it retries a 503, never a 400.
        api = runner.client(load_backend(f"openai:http://127.0.0.1:{server.server_port}/v1@m", max_retries=2), name="api")

        async def work(key, text):
            return {"reply": await api.chat([{"role": "user", "content": text}], GenParams(max_new_tokens=8))}

        s = runner.run([("too-long", "长")], work)
        assert s["failed"] == 1 and seen == [400]  # asked once, not three times
        assert "too long for this model's context (400: prompt too long)" in dict(runner.failures())["too-long"]
        assert s["failed_permanent"] == 1  # and kept as such: a rerun would fail the same way
        s = runner.run([("busy", "忙")], work)
        assert s["failed"] == 1 and seen == [400, 503, 503, 503]  # a server error is retried
    finally:
        server.shutdown()


def _retrain_in_place(folder: Path) -> None:
    """New weights in the same folder, the way `train sft --output-dir` overwrites them."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    model.save_pretrained(folder)


def test_a_folder_retrained_in_place_is_asked_again(tmp_path, tiny_model, capfd):
    """Reproduction 1: the cache and the journal used to key on the folder's name, so new
    weights in runs/x were answered with the old weights' replies, from either."""
    import shutil

    from discmed.backend import GenParams, load_backend

    folder = tmp_path / "runs" / "x"
    shutil.copytree(tiny_model, folder)
    params = GenParams(max_new_tokens=6)
    items = [(f"q{i}", f"咳嗽{i}天") for i in range(3)]

    def run_once():
        backend = load_backend(f"hf:{folder}")
        runner = _runner(tmp_path)
        c = runner.client(backend, name="doctor")

        async def work(key, text):
            return {"reply": await c.chat([{"role": "user", "content": text}], params)}

        summary = runner.run(items, work)
        runner.close()
        return backend.identity, summary

    first_id, s1 = run_once()
    assert s1["done"] == 3 and s1["calls"] == 3
    same_id, s2 = run_once()  # same weights: resumed from the journal, nothing asked
    assert same_id == first_id and s2["skipped"] == 3 and s2["calls"] == 0 and s2["restarted"] is None

    _retrain_in_place(folder)
    new_id, s3 = run_once()
    assert new_id != first_id and new_id.startswith("x@")
    assert s3["done"] == 3 and s3["calls"] == 3 and s3["cache_hits"] == 0  # neither journal nor cache answered
    assert "was made with doctor x@" in s3["restarted"] and "starting a new run" in capfd.readouterr().err
    assert list(tmp_path.glob("journal.sqlite.*.stale"))  # the old run is kept, not lost


def test_a_journal_of_another_model_can_be_refused(tmp_path, endpoint):
    from discmed.backend import GenParams, load_backend
    from discmed.jobs import JobRunner, JournalMismatch

    runner = _runner(tmp_path, cache=None)
    a = runner.client(load_backend(f"openai:{endpoint}@echo"), name="judge")

    async def work(key, text):
        return {"reply": await a.chat([{"role": "user", "content": text}], GenParams(max_new_tokens=4))}

    runner.run([("k", "问")], work)
    runner.close()
    strict = JobRunner(tmp_path / "journal.sqlite", cache=None, progress=False, restart=False)
    with pytest.raises(JournalMismatch, match=r"made with judge openai:.*@echo, not openai:.*@other"):
        strict.client(load_backend(f"openai:{endpoint}@other"), name="judge")
    strict.close()

    # Two roles, the second one changed: the run starts over and keeps both roles' identities.
    (tmp_path / "journal.sqlite").unlink()
    first = _runner(tmp_path, cache=None)
    first.client(load_backend(f"openai:{endpoint}@echo"), name="doctor")
    a = first.client(load_backend(f"openai:{endpoint}@echo"), name="judge")
    first.run([("k", "问")], work)
    first.close()
    two = _runner(tmp_path, cache=None)
    two.client(load_backend(f"openai:{endpoint}@echo"), name="doctor")
    assert two.restarted is None  # the doctor is the same
    two.client(load_backend(f"openai:{endpoint}@other"), name="judge")
    assert "judge" in two.restarted and two.meta()["models"] == {"doctor": f"openai:{endpoint}@echo",
                                                                  "judge": f"openai:{endpoint}@other"}


def test_identities(tmp_path):
    from discmed.backend import fingerprint, load_backend, model_identity

    (tmp_path / "config.json").write_text('{"a": 1}')
    (tmp_path / "README.md").write_text("card")
    before = fingerprint(tmp_path)
    (tmp_path / "README.md").write_text("a new model card")  # not the model: same identity
    assert fingerprint(tmp_path) == before
    (tmp_path / "config.json").write_text('{"a": 2}')
    assert fingerprint(tmp_path) != before
    assert model_identity(str(tmp_path)) == f"{tmp_path.name}@{fingerprint(tmp_path)}"
    api = load_backend("openai:http://127.0.0.1:9/v1/@m1")
    assert api.identity == "openai:http://127.0.0.1:9/v1@m1"


def test_map_without_a_journal_gives_results_in_order(endpoint):
    """Work that is not resumed (RL rollouts) runs with no journal file; `map` hands back exactly
    the items asked for, in order, with None for a failed one."""
    from discmed.backend import GenParams, load_backend
    from discmed.jobs import JobRunner

    with JobRunner(None, concurrency=4, cache=None, progress=False) as runner:
        c = runner.client(load_backend(f"openai:{endpoint}@echo", max_retries=0))

        async def work(key, text):
            return {"reply": await c.chat([{"role": "user", "content": text}], GenParams(max_new_tokens=8))}

        out = runner.map([("a", "一"), ("b", "FAULT:500 二"), ("c", "三")], work)
    assert [r and r["reply"] for r in out.results] == ["回复：一", None, "回复：三"]
    assert list(out.failures) == ["b"] and out.summary["journal"] is None
