"""The annotators' web tool end to end: a real `discmed data curate serve` subprocess on a
loopback port, driven by headless Chromium (Debian's chromium + chromedriver) and by plain HTTP."""

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import httpx
import pytest

from discmed import SAFETY_NOTICE_ZH
from discmed.data.curate.store import Store

ITEMS = {
    "q1": (
        "我最近总是头痛，尤其是下午，该怎么办？",
        [
            "下午头痛可能与用眼疲劳、颈椎姿势或血压有关，请问持续多久了？有没有恶心或视物模糊？",
            "吃点止痛药就行了，不用看医生。",
            "头痛很常见。",
        ],
    ),
    "q2": (
        "孩子发烧38.5度，要不要去医院？",
        ["可以先物理降温并多补液，若精神差或持续高热请就医。", "你怎么连这个都不知道？"],
    ),
    "q3": (
        "饭后胃胀反酸，平时需要注意什么？",
        ["每天喝两升可乐可以治好反酸。", "建议少食多餐，避免睡前进食和辛辣油腻食物，症状持续请就诊消化科。"],
    ),
}
IDEAL = "体温38.5℃时可以先物理降温、补充水分；如果孩子精神差、抽搐或高热超过三天，请及时就医。"


def load(db: Path, items=ITEMS) -> None:
    store = Store(db)
    for item_id, (question, replies) in items.items():
        store.add_item(item_id, [{"role": "user", "content": question}], source="test")
        for i, r in enumerate(replies):
            store.add_candidate(item_id, r, model=f"model-{i}", params={"temperature": 0.7})


class Server:
    """`discmed data curate serve` in a subprocess; `kill()` sends SIGKILL, `start()` again
    reopens the same database."""

    def __init__(self, db: Path, port: int, *extra: str):
        self.db, self.port, self.extra = db, port, extra
        self.url = f"http://127.0.0.1:{port}"
        self.proc = None

    def start(self) -> "Server":
        cmd = [
            sys.executable,
            "-m",
            "discmed.cli",
            "data",
            "curate",
            "serve",
            "--db",
            str(self.db),
            "--port",
            str(self.port),
            *self.extra,
        ]
        from discmed.process import ServerStartError, wait_ready

        self.log = self.db.parent / f"curate-{self.port}.log"
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
        try:
            wait_ready(self.proc, self.url + "/api/info", self.log, what="curate serve")
        except ServerStartError:
            self.stop()
            raise
        return self

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def headers(name: str, token: str) -> dict:
    from urllib.parse import quote

    return {"X-Annotator": quote(name), "Authorization": f"Bearer {token}"}


@pytest.fixture
def server(tmp_path, free_port):
    db = tmp_path / "curation.sqlite"
    load(db)
    tokens = {name: Store(db).issue_token(name) for name in ("张三", "李四")}
    s = Server(db, free_port).start()
    s.tokens = tokens
    yield s
    s.stop()


@pytest.fixture
def browser():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("chromium and chromedriver are needed: run scripts/test-setup.sh")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="curate-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def test_annotator_picks_rejects_edits_undoes_and_the_export_holds_exactly_that(server, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    wait = WebDriverWait(d, 20)

    def card(text):
        # Candidates are shown in a shuffled order: find them by their text.
        for c in d.find_elements(By.CSS_SELECTOR, ".cand"):
            if c.find_element(By.CSS_SELECTOR, ".text").text == text:
                return c
        raise AssertionError(f"no candidate {text!r} on the page")

    def on_item(item_id):
        wait.until(EC.text_to_be_present_in_element((By.ID, "item-id"), item_id))
        assert d.find_element(By.ID, "item-id").text == item_id

    def keys(*ks):
        ActionChains(d).send_keys(*ks).perform()

    d.get(server.url + "/")
    safety = d.find_element(By.ID, "safety")
    assert safety.is_displayed() and SAFETY_NOTICE_ZH in safety.text

    # A wrong token is refused, with a message.
    d.find_element(By.ID, "login-name").send_keys("张三")
    d.find_element(By.ID, "login-token").send_keys("not-the-token")
    d.find_element(By.ID, "login-btn").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "login-error"), "令牌不正确"))
    assert not d.find_element(By.ID, "work").is_displayed()

    token = d.find_element(By.ID, "login-token")
    token.clear()
    token.send_keys(server.tokens["张三"])
    d.find_element(By.ID, "login-btn").click()
    on_item("q1")
    assert d.find_element(By.ID, "messages").text.endswith(ITEMS["q1"][0])
    assert len(d.find_elements(By.CSS_SELECTOR, ".cand")) == 3

    # q1: best by click; "unsafe" by keyboard on the focused card; "unhelpful" by click; Ctrl+Enter.
    a, b, c = ITEMS["q1"][1]
    card(a).find_element(By.CSS_SELECTOR, ".best-btn").click()
    card(b).find_element(By.TAG_NAME, "h3").click()  # focus the card
    keys("2")
    card(c).find_element(By.CSS_SELECTOR, ".reason-btn[data-reason=unhelpful]").click()
    assert "best" in card(a).get_attribute("class") and "rejected" in card(b).get_attribute("class")
    ActionChains(d).key_down(Keys.CONTROL).send_keys(Keys.ENTER).key_up(Keys.CONTROL).perform()
    on_item("q2")
    assert "你已完成 1 条" in d.find_element(By.ID, "progress").text

    # q2: edit the first reply into the ideal one ("e" on the focused card), reject the other for tone.
    good, rude = ITEMS["q2"][1]
    card(good).find_element(By.TAG_NAME, "h3").click()
    keys("e")
    editor = d.find_element(By.ID, "editor")
    assert editor.is_displayed() and editor.get_attribute("value") == good
    editor.clear()
    editor.send_keys(IDEAL)
    card(rude).find_element(By.CSS_SELECTOR, ".reason-btn[data-reason=tone]").click()
    d.find_element(By.ID, "submit").click()
    on_item("q3")

    # q3: pick the wrong one, submit, then undo with "u" and decide again.
    wrong, right = ITEMS["q3"][1]
    card(wrong).find_element(By.CSS_SELECTOR, ".best-btn").click()
    d.find_element(By.ID, "submit").click()
    wait.until(EC.visibility_of_element_located((By.ID, "done")))
    d.find_element(By.TAG_NAME, "body").click()
    keys("u")
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "已撤销"))
    assert d.find_element(By.ID, "work").is_displayed() and not d.find_element(By.ID, "done").is_displayed()
    on_item("q3")
    wait.until(lambda _: "best" in card(wrong).get_attribute("class"))  # the undone decision is shown again
    card(right).find_element(By.CSS_SELECTOR, ".best-btn").click()
    card(wrong).find_element(By.CSS_SELECTOR, ".reason-btn[data-reason=factual]").click()
    assert "best" not in card(wrong).get_attribute("class")
    d.find_element(By.ID, "submit").click()
    wait.until(EC.visibility_of_element_located((By.ID, "done")))
    assert "你已完成 3 条" in d.find_element(By.ID, "progress").text

    out = tmp_path / "export"
    from typer.testing import CliRunner

    from discmed.cli import app

    r = CliRunner().invoke(
        app, ["data", "curate", "export", "--db", str(server.db), "--out", str(out), "--json"]
    )
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.splitlines()[-1])
    assert (summary["decisions"], summary["sft"], summary["dpo"]) == (3, 3, 4)
    sft = [json.loads(x) for x in (out / "sft.jsonl").read_text().splitlines()]
    assert [(r["_id"], r["conversation"][-1]["content"]) for r in sft] == [
        ("q1", a),
        ("q2", IDEAL),
        ("q3", right),
    ]
    dpo = [json.loads(x) for x in (out / "dpo.jsonl").read_text().splitlines()]
    assert [(p["prompt"][-1]["content"], p["chosen"], p["rejected"]) for p in dpo] == [
        (ITEMS["q1"][0], a, b),
        (ITEMS["q1"][0], a, c),
        (ITEMS["q2"][0], IDEAL, rude),
        (ITEMS["q3"][0], right, wrong),
    ]
    reasons = sorted(r for dec in Store(server.db).decisions() for r in dec.rejected.values())
    assert reasons == ["factual", "tone", "unhelpful", "unsafe"]


def test_bad_tokens_get_401(server):
    good = server.tokens["张三"]
    for h in (
        headers("张三", "wrong"),
        headers("王五", good),
        headers("李四", good),
        {},
        {"Authorization": f"Bearer {good}"},
    ):
        r = httpx.get(server.url + "/api/next", headers=h)
        assert r.status_code == 401, h
        assert httpx.post(server.url + "/api/undo", headers=h).status_code == 401
    assert httpx.post(server.url + "/api/login", json={"name": "张三", "token": "wrong"}).status_code == 401
    assert httpx.post(server.url + "/api/login", json={"name": "张三", "token": good}).status_code == 200
    assert httpx.get(server.url + "/api/next", headers=headers("张三", good)).json()["item"]["id"] == "q1"


def test_the_server_refuses_before_it_reads_and_shows_only_your_own_progress(server, tmp_path):
    """A stranger's big body is refused from its headers (413 over the limit; 401 without a valid
    token, the body never read), and an annotator sees the set's counts and their own, not the
    other annotators' names."""
    import socket

    def head_only(length: int, token: str) -> bytes:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as c:
            c.sendall(f"POST /api/decision HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      f"X-Annotator: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {length}\r\n\r\n".encode())
            return c.recv(200)  # answered at once, though the body has not been sent

    assert head_only(100 << 20, "wrong").startswith(b"HTTP/1.1 413")
    assert head_only(500 << 10, "wrong").startswith(b"HTTP/1.1 401")
    mine = httpx.get(server.url + "/api/progress", headers=headers("张三", server.tokens["张三"])).json()
    assert mine["mine"] == 0 and mine["items"] >= 1 and "李四" not in json.dumps(mine, ensure_ascii=False)
    assert httpx.get(server.url + "/api/progress").status_code == 401
    r = subprocess.run([sys.executable, "-m", "discmed", "data", "curate", "serve", "--db", str(server.db),
                        "--host", "0.0.0.0", "--port", "1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--allow-remote" in r.stderr


def test_two_annotators_at_once_never_get_the_same_non_overlap_item(tmp_path, free_port):
    db = tmp_path / "c.sqlite"
    items = {
        f"k{i:02d}": (f"第{i}位患者：咳嗽两周，夜里加重，需要做什么检查？", [f"甲{i}", f"乙{i}", f"丙{i}"])
        for i in range(16)
    }
    load(db, items)
    store = Store(db)
    tokens = {n: store.issue_token(n) for n in ("张三", "李四")}
    s = Server(db, free_port, "--overlap", "0.25").start()
    overlap = {it for it in items if _slot_count(db, it) == 2}
    assert len(overlap) == 4
    got: dict[str, list[str]] = {}
    barrier = threading.Barrier(2)
    errors = []

    def together():
        # Both ask for their next item at the same moment, while both still have work; once one
        # has run out it breaks the barrier and the other goes on alone.
        try:
            barrier.wait(timeout=30)
        except threading.BrokenBarrierError:
            pass

    def work(name):
        try:
            client = httpx.Client(base_url=s.url, headers=headers(name, tokens[name]), timeout=30)
            got[name] = []
            while True:
                together()
                item = client.get("/api/next").json()["item"]
                together()
                if item is None:
                    barrier.abort()
                    break
                got[name].append(item["id"])
                r = client.post(
                    "/api/decision", json={"item_id": item["id"], "best": item["candidates"][0]["id"]}
                )
                assert r.status_code == 200, r.text
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
            barrier.abort()

    try:
        threads = [threading.Thread(target=work, args=(n,)) for n in tokens]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        s.stop()
    assert not errors, errors
    shared = set(got["张三"]) & set(got["李四"])
    assert shared <= overlap, f"non-overlap items given to both: {shared - overlap}"
    assert set(got["张三"]) | set(got["李四"]) == set(items)
    decisions = Store(db).decisions()
    assert len(decisions) == len(items) + len(overlap)
    assert {d.item_id for d in decisions if d.annotator == "张三"} & {
        d.item_id for d in decisions if d.annotator == "李四"
    } == overlap


def _slot_count(db: Path, item_id: str) -> int:
    import sqlite3

    return sqlite3.connect(db).execute("SELECT COUNT(*) FROM slots WHERE item_id=?", (item_id,)).fetchone()[0]


def test_a_killed_server_restarts_with_everything_submitted(server):
    h = headers("张三", server.tokens["张三"])
    submitted = []
    for _ in range(2):
        item = httpx.get(server.url + "/api/next", headers=h).json()["item"]
        best = item["candidates"][-1]["id"]
        r = httpx.post(server.url + "/api/decision", headers=h, json={"item_id": item["id"], "best": best})
        assert r.status_code == 200
        submitted.append((item["id"], best))
    held = httpx.get(server.url + "/api/next", headers=h).json()["item"]["id"]  # mid-annotation
    server.kill()
    assert server.proc.returncode == -signal.SIGKILL
    server.start()
    assert [(d.item_id, d.best) for d in Store(server.db).decisions()] == submitted
    r = httpx.get(server.url + "/api/next", headers=h).json()
    assert r["item"]["id"] == held  # the item in hand is still theirs
    assert r["progress"]["mine"] == 2
    # and the other annotator carries on with nothing of it
    other = httpx.get(server.url + "/api/next", headers=headers("李四", server.tokens["李四"])).json()["item"]
    assert other is None
