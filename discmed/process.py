"""A server as a child process: started on a loopback port, waited for, stopped.

`discmed serve` is run this way by the demo (its teacher, patient and judge) and the tests, and
llama.cpp's llama-server by the llama.cpp engine (discmed.engine.llamacpp). It lives at the top
of the package, apart from `serve`, so that engines need nothing of the server.

How long to wait is not a fixed guess: a server that loads a model on a busy machine may take
minutes, one that crashed takes none. `wait_ready` keeps waiting while the child makes progress
(it uses CPU or writes to its log), fails once it has made none for `stall` seconds or has run
past `limit`, and fails at once when the child exits; every failure carries the child's log tail.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from discmed.cpu import tree_cpu_seconds


class ServerStartError(RuntimeError):
    """A child server that exited, stalled or ran out of time before it answered."""


class StalledError(RuntimeError):
    """A child command that made no progress for too long, or ran past its limit."""


def child_setup():
    """The `preexec_fn` of a supervised child: SIGINT and SIGTERM at their defaults, and (on
    Linux) the kernel sending it SIGTERM when its parent dies, even by SIGKILL
    (`PR_SET_PDEATHSIG`).

    The child runs in a session of its own, its lifetime the parent's to decide, so it must not
    inherit how the parent happened to be started: a shell starts a background job (`nohup make
    test &`) with SIGINT ignored, and a server that inherited that would shrug off the Ctrl+C
    or group SIGINT its supervisor sends. A child in a session of its own also no longer gets
    the terminal's signals, so without the death signal a parent killed outright (an OOM kill,
    a CI runner's timeout) would leave its server holding a port and a model's memory. The
    death signal fires when the *thread* that started the child exits: start children from a
    thread that lives as long as they should.
    """
    import signal

    prctl = None
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            prctl = None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if prctl is None:
            return
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def wait_ready(proc: subprocess.Popen, url: str, log: Path, *, stall: float = 120.0, limit: float = 1200.0,
               what: str = "server") -> float:
    """Poll `url` until it answers 200; returns the seconds waited.

    Raises ServerStartError with the log tail when the child exits, when it has neither used CPU
    nor written to `log` for `stall` seconds, or after `limit` seconds in all.
    """
    t0 = last_progress = time.time()
    cpu, size = tree_cpu_seconds(proc.pid), _size(log)
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.time() - t0
        except OSError:
            pass
        now = time.time()
        if proc.poll() is not None:
            reason = f"exited with status {proc.returncode}"
        elif now - last_progress > stall:
            reason = f"made no progress (no CPU used, nothing logged) for {stall:.0f} s"
        elif now - t0 > limit:
            reason = f"was not ready after {limit:.0f} s"
        else:
            new_cpu, new_size = tree_cpu_seconds(proc.pid), _size(log)
            if (new_cpu is not None and cpu is not None and new_cpu > cpu + 0.05) or new_size != size:
                last_progress = now
            cpu, size = new_cpu, new_size
            time.sleep(0.3)
            continue
        raise ServerStartError(f"{what} {reason} (pid {proc.pid}, {now - t0:.0f} s); its log {log}:\n{log_tail(log)}")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM to the child's process group (it runs in a session of its own), SIGKILL to the
    group if it has not exited after `timeout` seconds: nothing it started is left behind."""
    import signal

    def signal_group(sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except OSError:  # already gone, or not a group leader
            try:
                proc.send_signal(sig)
            except OSError:
                pass

    if proc.poll() is None:
        signal_group(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    signal_group(signal.SIGKILL)  # the child if it is still there, and what it left behind
    proc.wait()


@contextmanager
def running(cmd: Sequence[str], url: str, log: Path, *, env: dict[str, str] | None = None, cwd: str | None = None,
            stall: float = 120.0, limit: float = 1200.0) -> Iterator[subprocess.Popen]:
    """Run `cmd` with its output in `log`, wait until `url` answers, yield the process, stop it.

    The child runs in a session of its own with no terminal: the parent owns its lifetime (and
    if the parent is killed outright, the kernel sends the child SIGTERM). A
    Ctrl+C typed at the parent's terminal reaches the parent only, which then stops the child
    (and whatever the child started) through `stop`; the child cannot read the terminal or
    change its modes, and holds no handle on it that would keep the terminal open after the
    parent exits.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    # One thread unless told otherwise: the parent computes at the same time on a small machine.
    child_env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), **(env or {})}
    with open(log, "ab") as logf:
        proc = subprocess.Popen(list(cmd), stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=child_env, cwd=cwd, start_new_session=True,
                                preexec_fn=child_setup())  # fmt: skip
    try:
        wait_ready(proc, url, log, stall=stall, limit=limit, what=f"`{' '.join(cmd)}`")
        yield proc
    finally:
        stop(proc)


@contextmanager
def served(model: str, log: Path, *, safety: bool, name: str | None = None, port: int | None = None,
           args: Sequence[str] = (), env: dict[str, str] | None = None, stall: float = 120.0,
           limit: float = 1200.0) -> Iterator[str]:
    """`discmed serve --model MODEL` in a subprocess on loopback, serving it as `name`; yields its base URL (…/v1)."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "discmed", "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port)]
    if name:
        cmd += ["--served-model-name", name]
    if not safety:
        cmd.append("--no-safety")
    cmd += list(args)
    with running(cmd, f"http://127.0.0.1:{port}/health", log, env=env, stall=stall, limit=limit):
        yield f"http://127.0.0.1:{port}/v1"


def run_watched(cmd: Sequence[str], *, stall: float = 180.0, limit: float = 3600.0, env: dict[str, str] | None = None,
                cwd: str | os.PathLike | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    """`subprocess.run(cmd, capture_output=True, text=True)`, but timed by progress instead of a
    fixed guess: the command may run while it (or any process it started) uses CPU or writes
    output, and is killed with StalledError (carrying its output tail) after `stall` seconds
    without either, or after `limit` seconds in all. On a busy machine a slow run is waited for;
    a hung one still fails in minutes."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="discmed-run-") as tmp:
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=env, cwd=cwd,
                                    stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                    start_new_session=True, preexec_fn=child_setup())  # fmt: skip
            if input is not None:
                proc.stdin.write(input.encode())
                proc.stdin.close()
            t0 = last = time.time()
            cpu, size = tree_cpu_seconds(proc.pid), -1
            while proc.poll() is None:
                time.sleep(0.5)
                now = time.time()
                new_cpu, new_size = tree_cpu_seconds(proc.pid), _size(out_path) + _size(err_path)
                if (new_cpu is not None and cpu is not None and new_cpu > cpu + 0.05) or new_size != size:
                    last = now
                cpu, size = new_cpu, new_size
                if now - last > stall or now - t0 > limit:
                    _kill_tree(proc)
                    why = f"no progress for {stall:.0f} s" if now - last > stall else f"still running after {limit:.0f} s"
                    tail = log_tail(err_path, 3000) + "\n" + log_tail(out_path, 2000)
                    raise StalledError(f"`{' '.join(cmd)}`: {why}; killed. Output tail:\n{tail}")
        return subprocess.CompletedProcess(list(cmd), proc.returncode, out_path.read_text(errors="replace"),
                                           err_path.read_text(errors="replace"))  # fmt: skip


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill `proc`'s whole process group (it was started in a session of its own), so a
    launcher's workers do not live on."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()
    proc.wait()
