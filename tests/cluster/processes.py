"""Real worker and client processes for the fault tests, and waiting on Redis state with deadlines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WORKER_MAIN = "import sys; from mvactors.cli import main; sys.exit(main(sys.argv[1:]))"
# The suites' replica_acks (conftest.py starts a replicated Redis for it): workers and feeders use it.
REPLICA_ACKS = int(os.environ.get("MVACTORS_TEST_REPLICA_ACKS", "0"))


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("MVACTORS_CRASH_AT", None)
    env.update(extra or {})
    return env


class Process:
    """A child process whose stderr/stdout lines are collected (``wait_for`` a line)."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(list(argv), env=_env(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, cwd=ROOT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        """The first output line containing ``text`` (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no line with {text!r} in output:\n" + "\n".join(self.lines[-40:]))
                self._changed.wait(min(left, 0.5))

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait()

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def output(self) -> str:
        return "\n".join(self.lines)

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.signal(signal.SIGCONT)
        self.kill()


def worker(url: str, *flags: str, env: dict[str, str] | None = None) -> Process:
    """``mvactors worker --redis URL --imports cluster_hosts:IMPORTS FLAGS...`` as a process."""
    if REPLICA_ACKS and "--replica-acks" not in flags:
        flags = ("--replica-acks", str(REPLICA_ACKS), *flags)
    return Process([sys.executable, "-c", WORKER_MAIN, "worker", "--redis", url, "--imports",
                    "cluster_hosts:IMPORTS", *flags], env)


def feeder(url: str, sender: str, count: int, actors: Sequence[str], *, replica_acks: int | None = None,
           log: str | None = None) -> Process:
    """``feeder.py``; ``replica_acks`` (default: $MVACTORS_TEST_REPLICA_ACKS) for its client; ``log``: a
    file it appends each acknowledged send and each received reply to (see feeder.py)."""
    env = {} if replica_acks is None else {"MVACTORS_TEST_REPLICA_ACKS": str(replica_acks)}
    if log is not None:
        env["MVACTORS_FEEDER_LOG"] = log
    return Process([sys.executable, str(HERE / "feeder.py"), url, sender, str(count), *actors], env)


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy (state in Redis has no change feed)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await check()
        except Exception as exc:  # Redis restarting, say
            last = exc
        else:
            if last:
                return last
        await anyio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
