"""Child servers and CPU sharing: the start-up wait follows the child's progress, a failed start
shows the child's log, the tiny build's lock says who holds it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import process_gone, wait_gone

from discmed.cpu import free_cores, process_cpu_seconds, usable_cores
from discmed.process import ServerStartError, free_port, running, wait_ready


def _child(code: str, log: Path) -> subprocess.Popen:
    with open(log, "ab") as f:
        return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=f, stderr=subprocess.STDOUT)


def _ok_server(port: int) -> str:
    """Python source that answers 200 to every GET on `port`, until killed."""
    return textwrap.dedent(f"""
        import http.server
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
            def log_message(self, *a):
                pass
        http.server.HTTPServer(("127.0.0.1", {port}), H).serve_forever()
    """)


def test_cpu_figures_are_sane():
    assert 1 <= free_cores(window=0.1) <= usable_cores()
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<3: pass"])
    try:
        first = process_cpu_seconds(busy.pid)
        time.sleep(1.0)
        assert process_cpu_seconds(busy.pid) > first
    finally:
        busy.kill()
        busy.wait()
    assert process_cpu_seconds(busy.pid) is None  # gone


def test_a_child_that_exits_fails_at_once_with_its_log(tmp_path):
    log = tmp_path / "child.log"
    proc = _child("import sys\nprint('loading model… no such folder: /models/x', flush=True)\nsys.exit(3)", log)
    t0 = time.time()
    with pytest.raises(ServerStartError, match=r"(?s)exited with status 3.*no such folder: /models/x"):
        wait_ready(proc, f"http://127.0.0.1:{free_port()}/health", log, stall=60, limit=60)
    assert time.time() - t0 < 20


def test_a_silent_idle_child_fails_after_the_stall_not_the_limit(tmp_path):
    log = tmp_path / "child.log"
    proc = _child("import time\ntime.sleep(60)", log)
    try:
        t0 = time.time()
        with pytest.raises(ServerStartError, match="made no progress .* for 2 s"):
            wait_ready(proc, f"http://127.0.0.1:{free_port()}/health", log, stall=2, limit=600)
        assert time.time() - t0 < 30
    finally:
        proc.kill()
        proc.wait()


def test_a_slow_child_that_keeps_working_is_waited_for(tmp_path):
    """Ready only after 4 s of work (past the 2 s stall): the wait goes on while it computes."""
    port = free_port()
    code = """
        import time
        t = time.time()
        while time.time() - t < 4:
            pass  # "loading the model": CPU in use, nothing logged
    """
    cmd = [sys.executable, "-c", textwrap.dedent(code) + _ok_server(port)]
    with running(cmd, f"http://127.0.0.1:{port}/health", tmp_path / "slow.log", stall=2, limit=120) as proc:
        assert proc.poll() is None
    assert proc.poll() is not None  # stopped on leaving


def test_tiny_build_lock_says_who_holds_it(tmp_path, capfd):
    """A second caller of ensure_tiny says it is waiting and for whom, then uses the finished build."""
    from discmed.tiny import ensure_tiny

    target = tmp_path / "tiny-x"
    lock = tmp_path / ".tiny-x.lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, pathlib, time
        with open({str(lock)!r}, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.truncate(0); f.write(f"pid {{os.getpid()}}"); f.flush()
            print("locked", flush=True)
            time.sleep(1.5)
            t = pathlib.Path({str(target)!r}); t.mkdir()
            (t / "discmed-tiny.json").write_text("{{}}")
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    assert ensure_tiny(target) == target
    holder.wait(timeout=30)
    err = capfd.readouterr().err
    assert f"waiting for pid {holder.pid} building the tiny model into {target}" in err
    assert "ready after" in err


def test_run_watched_waits_for_work_and_kills_a_hang(tmp_path):
    from discmed.process import StalledError, run_watched

    # Busy for 3 s (past the 1.5 s stall) in a grandchild: the work of the whole tree counts.
    busy = "import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'import time\\nt=time.time()\\nwhile time.time()-t<3: pass'])\nprint('done')"
    r = run_watched([sys.executable, "-c", busy], stall=1.5, limit=60)
    assert (r.returncode, r.stdout.strip()) == (0, "done")
    t0 = time.time()
    with pytest.raises(StalledError, match=r"(?s)no progress for 2 s.*about to hang"):
        run_watched([sys.executable, "-c", "import sys, time\nprint('about to hang', file=sys.stderr, flush=True)\ntime.sleep(120)"],
                    stall=2, limit=60)  # fmt: skip
    assert time.time() - t0 < 30
    r = run_watched([sys.executable, "-c", "import sys\nsys.exit(4)"], stall=5)
    assert r.returncode == 4


def test_ctrl_c_at_the_parent_stops_the_child_and_what_it_started(tmp_path, as_at_a_terminal):
    """A parent on a terminal (as `discmed demo --serve` is) runs a server through `running`; the
    server starts a helper that ignores SIGINT, SIGTERM and SIGHUP.
    Ctrl+C ends the parent promptly, and neither the server nor its helper is left behind."""
    import os

    import pexpect

    port = free_port()
    helper_pid = tmp_path / "helper.pid"
    server = f"""
        import signal, subprocess, sys
        helper = subprocess.Popen([sys.executable, "-c",
            "import signal, time\\nfor s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):\\n"
            "    signal.signal(s, signal.SIG_IGN)\\ntime.sleep(600)"])
        open({str(helper_pid)!r}, "w").write(str(helper.pid))
    """
    server = textwrap.dedent(server) + _ok_server(port)
    parent = f"""
        import sys, time
        from pathlib import Path
        from discmed.process import running
        cmd = [sys.executable, "-c", {server!r}]
        with running(cmd, "http://127.0.0.1:{port}/health", Path({str(tmp_path / "server.log")!r}), stall=30, limit=60):
            try:  # "serving" inside the try: a Ctrl+C sent the moment it is read must land here
                print("serving", flush=True)
                while True:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                print("stopping", flush=True)
    """
    child = pexpect.spawn(sys.executable, ["-c", textwrap.dedent(parent)], encoding="utf-8", timeout=60,
                          preexec_fn=as_at_a_terminal)  # fmt: skip
    try:
        child.expect("serving")
        pid = int(helper_pid.read_text())
        child.sendintr()
        child.expect("stopping")
        child.expect(pexpect.EOF, timeout=30)  # the terminal closes: nothing holds it
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    for _ in range(50):  # the helper was killed with its group; give the kernel a moment to reap it
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the server's helper (pid {pid}) outlived its parent")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_parent_killed_outright_leaves_no_server_behind(tmp_path):
    """SIGKILL gives the parent no chance to stop its server (no `finally`, no signal handler):
    the kernel's parent-death signal ends the server instead of leaving it on its port."""
    import os
    import signal

    port = free_port()
    parent = f"""
        import os, sys, time
        from pathlib import Path
        from discmed.process import running
        cmd = [sys.executable, "-c", {_ok_server(port)!r}]
        with running(cmd, "http://127.0.0.1:{port}/health", Path({str(tmp_path / "server.log")!r}), stall=30, limit=60) as p:
            print(p.pid, flush=True)
            time.sleep(600)
    """
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(parent)], stdout=subprocess.PIPE, text=True)
    try:
        server = int(proc.stdout.readline())
        assert not process_gone(server)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if not wait_gone(server):
            os.kill(server, signal.SIGKILL)
            pytest.fail(f"the server (pid {server}) outlived its SIGKILLed parent")
    finally:
        proc.kill()
        proc.wait()
