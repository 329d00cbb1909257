"""SMTP end to end: emails queued, claimed, built and sent by mailq workers (smtp backend)
into a local SMTP sink, next to a bare aiosmtplib client with as many connections (each
mailq worker keeps 4 open: `connections=4`) into the same kind of sink, started afresh for each run.

The sink is Postfix's smtp-sink when it is installed (it accepts and discards every
message, in C), else an aiosmtpd Sink in a subprocess; which one is in the results.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from bench.databases import BenchError
from bench.drain import mailq_drain
from bench.plan import BARE_SMTP, MAILQ, Context, Measurement, Sample
from bench.processes import log_tail

# Connections per worker process (mailq: `connections=` in MAILQ_BACKEND) and per bare client.
CONNECTIONS_PER_WORKER = 4
START_TIMEOUT_S = 10.0


def sink_kind() -> str | None:
    if shutil.which("smtp-sink"):
        return "smtp-sink"
    if importlib.util.find_spec("aiosmtpd") is not None:
        return "aiosmtpd"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _sink_argv(kind: str, port: int) -> list[str]:
    if kind == "smtp-sink":
        path = shutil.which("smtp-sink") or "smtp-sink"
        argv = [path]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]  # it refuses to keep root's privileges
        return [*argv, "-m", "1000", f"127.0.0.1:{port}", "1024"]
    return [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
            "-c", "aiosmtpd.handlers.Sink"]  # fmt: skip


@contextlib.asynccontextmanager
async def sink(log: Path) -> AsyncIterator[int]:
    kind = sink_kind()
    if kind is None:
        raise BenchError("no SMTP sink: install postfix (smtp-sink) or aiosmtpd")
    port = _free_port()
    with log.open("ab") as out:
        child = await asyncio.create_subprocess_exec(
            *_sink_argv(kind, port), stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                if child.returncode is not None or time.monotonic() > deadline:
                    raise BenchError(f"the SMTP sink did not start:\n{log_tail(log)}") from None
                await asyncio.sleep(0.05)
        yield port
    finally:
        if child.returncode is None:
            child.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(child.wait(), START_TIMEOUT_S)
        if child.returncode is None:
            child.kill()
            await child.wait()


async def mailq_smtp(ctx: Context) -> Sample:
    async with sink(ctx.logs / "sink-mailq.log") as port:
        sample = await mailq_drain(
            ctx,
            ctx.options.smtp_processes,
            # The worker's send slots (the run's concurrency) keep its 4 connections busy
            # while outcomes are committed.
            backend=f"smtp://127.0.0.1:{port}?tls=none&connections={CONNECTIONS_PER_WORKER}",
            count=ctx.options.smtp_emails,
        )
    sample.details["sink"] = sink_kind()
    return sample


async def bare_smtp(ctx: Context) -> Sample:
    count = ctx.options.smtp_emails
    processes = ctx.options.smtp_processes
    log = ctx.logs / "smtp-bare.log"
    async with sink(ctx.logs / "sink-bare.log") as port:
        shares = [
            count // processes + (1 if n < count % processes else 0) for n in range(processes)
        ]
        with log.open("ab") as err:
            children = [
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bench.smtp_client",
                    "--port",
                    str(port),
                    "--count",
                    str(share),
                    "--connections",
                    str(CONNECTIONS_PER_WORKER),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=err,
                )
                for share in shares
            ]
            outs = await asyncio.gather(*(c.communicate() for c in children))
    if any(c.returncode for c in children):
        raise BenchError(f"an aiosmtplib client failed:\n{log_tail(log)}")
    results = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outs]
    sent = sum(int(r["sent"]) for r in results)
    seconds = max(float(r["seconds"]) for r in results)
    return Sample(
        {"rate": sent / seconds},
        counts={"lost": count - sent},
        details={"sent": sent, "seconds": seconds, "processes": processes, "sink": sink_kind()},
    )


def measurements(count: int, processes: int) -> tuple[Measurement, ...]:
    params = {
        "emails": count,
        "processes": processes,
        "connections": processes * CONNECTIONS_PER_WORKER,
    }
    return (
        Measurement("smtp/mailq", "smtp", MAILQ, "emails/s", params, mailq_smtp),
        Measurement("smtp/aiosmtplib", "smtp", BARE_SMTP, "emails/s", params, bare_smtp),
    )
