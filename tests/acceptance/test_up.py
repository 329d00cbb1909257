"""`mailq up` with nothing configured, as a user runs it: an email queued over HTTP lands in
the outbox; Ctrl-C (SIGINT) stops everything; the next `mailq up` finds the same email.

Needs the HTTP service (service/app.py, `uvicorn service.app:app`). Until it is part of the
tree this test is skipped, and in CI a skip counts as a failure.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.processes import REPO
from tests.support.waiting import eventually

READY_S = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Running:
    def __init__(self, process: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
        self.process = process
        self.lines = lines
        self.seen: list[str] = []

    def wait_for(self, pattern: str, timeout: float = READY_S) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.process.poll() is None, "mailq up exited:\n" + "".join(self.seen)
                continue
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r}; output:\n" + "".join(self.seen))


@contextmanager
def mailq_up(home: Path, port: int) -> Iterator[Running]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILQ_")}
    env.update({"MAILQ_HOME": str(home), "PYTHONUNBUFFERED": "1"})
    process = subprocess.Popen(
        [sys.executable, "-m", "mailq.cli", "up", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(x) for x in process.stdout], daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        yield Running(process, lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def stop(running: Running) -> None:
    running.process.send_signal(signal.SIGINT)
    assert running.process.wait(timeout=90) == 0, "".join(running.seen)


def test_mailq_up_sends_to_the_outbox_and_keeps_its_data(mailq_home: Path) -> None:
    home = mailq_home
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with mailq_up(home, port) as running:
        token = running.wait_for(r"client token\s+(\S+)").group(1)
        running.wait_for(r"Press Ctrl-C to stop")
        auth = {"Authorization": f"Bearer {token}"}
        created = httpx.post(
            f"{base}/v1/emails",
            headers=auth,
            json={"to": "ann@example.com", "subject": "Hello", "text": "Hi Ann"},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        email_id = created.json()["id"]
        outbox = home / "outbox"
        asyncio.run(
            eventually(
                lambda: list(outbox.glob("*.eml")),
                timeout=60,
                message="nothing in the outbox",
            )
        )
        (eml,) = outbox.glob("*.eml")
        assert b"Subject: Hello" in eml.read_bytes()
        assert b"To: ann@example.com" in eml.read_bytes()
        stop(running)
    assert not (home / "pg" / "postmaster.pid").exists(), "the embedded PostgreSQL still runs"
    with socket.socket() as probe:
        # The service is gone too: nothing listens (connections may linger in TIME_WAIT).
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))

    with mailq_up(home, port) as running:
        again = running.wait_for(r"client token\s+(\S+)").group(1)
        running.wait_for(r"Press Ctrl-C to stop")
        assert again == token, "tokens are generated once and kept in MAILQ_HOME"
        found = httpx.get(f"{base}/v1/emails/{email_id}", headers=auth, timeout=30)
        assert found.status_code == 200, found.text
        assert found.json()["state"] == "sent"
        stop(running)
