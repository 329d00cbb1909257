"""ESP end to end: N emails queued, claimed, built and sent by one mailq worker through the
Postmark backend (`postmark://`, batches of what the worker holds) into a local server that
answers as Postmark does after a configurable latency (bench/esp_server.py), next to

- the same worker with the SMTP backend into the SMTP sink of bench/smtp.py (no latency:
  the sink answers at once), and
- a bare httpx client (bench/esp_client.py) with the connections of the worker's sender
  (its concurrency), posting the same Postmark batches, full ones (as many messages as the
  worker may hold), one request at a time per `concurrency` messages, into the same server.

Figures: emails/s (to the last `sent` in the database; the client: to its last answer) and
CPU per email of the sending process (the worker, from /proc, from idle to drained; the
client: its own CPU time over the sends), and of the worker's Postgres processes. The
server's own tally (requests, messages, connections) is kept in the details: it shows the
batches the worker actually made.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import socket
import sys
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

from bench import cpu
from bench.databases import BenchError
from bench.drain import mailq_drain
from bench.plan import BARE_HTTPX, MAILQ, MAILQ_SMTP, Context, Measurement, Sample
from bench.processes import log_tail
from bench.smtp import START_TIMEOUT_S, sink, sink_kind

PROCESSES = 1  # one worker: CPU per email is that process's
POSTMARK_MAX_BATCH = 500
TOKEN = "bench-server-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def available() -> bool:
    """The Postmark backend needs httpx with HTTP/2 (the `esp` extra)."""
    return all(importlib.util.find_spec(name) is not None for name in ("httpx", "h2"))


async def _get_json(port: int, path: str) -> Any:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise BenchError(f"the ESP server answered {head[:40]!r}")
    return json.loads(payload)


@contextlib.asynccontextmanager
async def server(ctx: Context, name: str) -> AsyncIterator[tuple[int, int]]:
    """A Postmark-like server in a subprocess: its port and pid."""
    port = _free_port()
    log = ctx.logs / f"esp-server-{name}.log"
    argv = ["-m", "bench.esp_server", "--port", str(port)]
    argv += ["--latency-ms", f"{ctx.options.esp_latency_ms:g}"]
    with log.open("ab") as out:
        child = await asyncio.create_subprocess_exec(
            sys.executable, *argv, env=dict(ctx.env), stdin=asyncio.subprocess.DEVNULL,
            stdout=out, stderr=out,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                await _get_json(port, "/_bench")
                break
            except (OSError, BenchError):
                if child.returncode is not None or time.monotonic() > deadline:
                    raise BenchError(f"the ESP server did not start:\n{log_tail(log)}") from None
                await asyncio.sleep(0.05)
        yield port, child.pid
    finally:
        if child.returncode is None:
            child.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(child.wait(), START_TIMEOUT_S)
        if child.returncode is None:
            child.kill()
            await child.wait()


def _tally(sample: Sample, tally: Mapping[str, Any], server_cpu_s: float | None) -> None:
    requests = int(tally["requests"])
    messages = int(tally["messages"])
    sample.details["esp_server"] = {
        **tally,
        "messages_per_request": messages / requests if requests else 0.0,
        "cpu_us_per_message": server_cpu_s / messages * 1e6 if server_cpu_s and messages else None,
    }


async def mailq_esp(ctx: Context) -> Sample:
    async with server(ctx, "mailq") as (port, pid):
        endpoint = quote(f"http://127.0.0.1:{port}", safe="")
        before = cpu.snapshot([pid])
        sample = await mailq_drain(
            ctx,
            PROCESSES,
            backend=f"postmark://{TOKEN}@?endpoint={endpoint}",
            count=ctx.options.esp_emails,
        )
        _tally(sample, await _get_json(port, "/_bench"), cpu.spent(before, cpu.snapshot([pid])))
    return sample


async def mailq_smtp(ctx: Context) -> Sample:
    async with sink(ctx.logs / "sink-esp.log") as port:
        sample = await mailq_drain(
            ctx,
            PROCESSES,
            backend=f"smtp://127.0.0.1:{port}?tls=none",
            count=ctx.options.esp_emails,
        )
    sample.details["sink"] = sink_kind()
    return sample


async def bare_httpx(ctx: Context) -> Sample:
    count = ctx.options.esp_emails
    connections = ctx.options.concurrency
    batch = min(connections, POSTMARK_MAX_BATCH)
    log = ctx.logs / "esp-bare.log"
    async with server(ctx, "bare") as (port, pid):
        before = cpu.snapshot([pid])
        with log.open("ab") as err:
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.esp_client", "--url", f"http://127.0.0.1:{port}",
                "--count", str(count), "--batch", str(batch), "--connections", str(connections),
                env=dict(ctx.env), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=err,
            )  # fmt: skip
            out, _ = await child.communicate()
        if child.returncode:
            raise BenchError(f"the httpx client failed:\n{log_tail(log)}")
        server_cpu_s = cpu.spent(before, cpu.snapshot([pid]))
        tally = await _get_json(port, "/_bench")
    result = json.loads(out.decode().strip().splitlines()[-1])
    sent, seconds = int(result["sent"]), float(result["seconds"])
    sample = Sample(
        {"rate": sent / seconds, "drainers_cpu_us": float(result["cpu_s"]) / sent * 1e6},
        counts={"lost": count - sent},
        details={"sent": sent, "seconds": seconds, "batch": batch, "connections": connections},
    )
    _tally(sample, tally, server_cpu_s)
    return sample


def measurements(count: int, concurrency: int, latency_ms: float) -> tuple[Measurement, ...]:
    params = {
        "emails": count,
        "processes": PROCESSES,
        "concurrency": concurrency,
        "esp_latency_ms": latency_ms,
    }
    members = [
        Measurement("esp/mailq", "esp", MAILQ, "emails/s", {**params, "backend": "postmark://"},
                    mailq_esp),
        Measurement("esp/httpx", "esp", BARE_HTTPX, "emails/s",
                    {**params, "batch": min(concurrency, POSTMARK_MAX_BATCH)}, bare_httpx),
    ]  # fmt: skip
    if sink_kind() is not None:
        members.append(
            Measurement("esp/mailq_smtp", "esp", MAILQ_SMTP, "emails/s",
                        {**params, "backend": "smtp://"}, mailq_smtp)
        )  # fmt: skip
    return tuple(members)


def _per(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def ratios(entry: Mapping[str, Any]) -> dict[str, float | None]:
    """Of the esp group's summary entry: mailq's Postmark backend against the bare client and
    against mailq's SMTP backend, in emails/s and in the sender's CPU per email."""
    figures = entry.get("by_system") or {}

    def of(system: str, name: str) -> float | None:
        value = (figures.get(system) or {}).get(name)
        return float(value) if value is not None else None

    return {
        "rate_vs_httpx": _per(of(MAILQ, "rate"), of(BARE_HTTPX, "rate")),
        "rate_vs_smtp": _per(of(MAILQ, "rate"), of(MAILQ_SMTP, "rate")),
        "cpu_vs_httpx": _per(of(MAILQ, "drainers_cpu_us"), of(BARE_HTTPX, "drainers_cpu_us")),
        "cpu_vs_smtp": _per(of(MAILQ, "drainers_cpu_us"), of(MAILQ_SMTP, "drainers_cpu_us")),
    }


def with_ratios(summary: dict[str, Any]) -> dict[str, Any]:
    entry = summary["groups"].get("esp")
    if entry:
        entry["ratios"] = ratios(entry)
    return summary


def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown_lines(doc: Mapping[str, Any]) -> list[str]:
    """The esp group's table: rate and CPU per email of each sender, and the ratios."""
    entry = doc["summary"]["groups"].get("esp")
    if not entry:
        return []
    options = doc["options"]
    figures = entry["by_system"]
    labels = {
        MAILQ: "mailq, postmark:// backend",
        BARE_HTTPX: "bare httpx client, same batches",
        MAILQ_SMTP: f"mailq, smtp:// backend into {doc['environment'].get('smtp_sink', '?')}",
    }
    rows = [
        f"| {label} | {_n(figures[s].get('rate'))} | {_n(figures[s].get('drainers_cpu_us'), 1)}"
        f" | {_n(figures[s].get('server_cpu_us'), 1)} |"
        for s, label in labels.items()
        if s in figures
    ]
    r = entry.get("ratios") or ratios(entry)
    x = {k: "-" if v is None else f"{v:.2f}x" for k, v in r.items()}
    return [
        "",
        f"ESP end to end, {options['esp_emails']:,} emails, 1 worker of concurrency "
        f"{options['concurrency']}, the Postmark-like server answering after "
        f"{options['esp_latency_ms']:g} ms:",
        "",
        "| sender | emails/s | CPU us/email (sender) | CPU us/email (its Postgres) |",
        "| --- | ---: | ---: | ---: |",
        *rows,
        "",
        f"postmark:// / bare httpx: {x['rate_vs_httpx']} the rate, {x['cpu_vs_httpx']} the CPU "
        f"per email; postmark:// / smtp://: {x['rate_vs_smtp']} the rate, {x['cpu_vs_smtp']} "
        "the CPU per email.",
    ]
