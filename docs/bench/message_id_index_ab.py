"""The sent emails' Message-ID index side by side: hash (0011) against a B-tree in byte order
(0013), one database, rounds alternating; or (`ids`) the B-tree taking new emails whose
Message-IDs are clock-first against random ones (as a bulk enqueue made them before the
clock came first there too).

10,000,000 sent emails with random Message-IDs (as the ones made before 0013 are), then per
round: the index built, 50,000 new emails with clock-first (or random) Message-IDs, a
CHECKPOINT, and the 50,000 marked sent in batches of 100 as the outcome statement does; the
WAL bytes and the seconds of those updates alone. Run from a checkout with its venv:

    .venv/bin/python docs/bench/message_id_index_ab.py [HISTORY] [ids] > results.json
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import asyncpg

from mailq.addresses import new_message_id
from mailq.db.schema import migrate

SERVER = "postgresql://postgres@127.0.0.1:5432"
NAME = "mailq_message_id_index_ab"
NEW = 50_000
BATCH = 100
INDEX = {
    "hash": "CREATE INDEX ab_idx ON mailq.emails USING hash (message_id) WHERE status = 'sent'",
    "btree": "CREATE INDEX ab_idx ON mailq.emails (message_id COLLATE \"C\") WHERE status = 'sent'",
}


async def fill(conn: asyncpg.Connection, history: int) -> None:
    await conn.execute("DROP INDEX mailq.emails_message_id_sent_btree")
    await conn.execute("SET synchronous_commit = off")
    await conn.execute(
        "INSERT INTO mailq.emails (kind, status, attempts, to_address, message_id, content, "
        "finished_at) SELECT 'welcome', 'sent', 1, 'u' || g || '@example.com', "
        "'<' || md5(g::text) || '@example.com>', '{}', now() FROM generate_series(1, $1) g",
        history,
    )
    await conn.execute("VACUUM ANALYZE mailq.emails")


def new_ids(kind: str) -> list[str]:
    if kind == "random":
        return [f"<{os.urandom(16).hex()}@example.com>" for _ in range(NEW)]
    return [new_message_id("example.com") for _ in range(NEW)]


async def one_round(conn: asyncpg.Connection, index: str, ids: str) -> dict[str, object]:
    await conn.execute("DROP INDEX IF EXISTS mailq.ab_idx")
    await conn.execute(INDEX[index])
    size = await conn.fetchval("SELECT pg_relation_size('mailq.ab_idx')")
    rows = await conn.fetch(
        "INSERT INTO mailq.emails (kind, to_address, message_id, content) "
        "SELECT 'welcome', 'n' || g || '@example.com', m, '{}' "
        "FROM unnest($1::text[]) WITH ORDINALITY AS r(m, g) RETURNING id",
        new_ids(ids),
    )
    emails = [r["id"] for r in rows]
    await conn.execute("CHECKPOINT")
    await conn.execute("SET synchronous_commit = on")
    began_at = await conn.fetchval("SELECT pg_current_wal_lsn()")
    began = time.perf_counter()
    for at in range(0, NEW, BATCH):
        await conn.execute(
            "UPDATE mailq.emails SET status = 'sent', attempts = 1, finished_at = now() "
            "WHERE id = ANY($1::bigint[])",
            emails[at : at + BATCH],
        )
    seconds = time.perf_counter() - began
    wal = await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)", began_at)
    await conn.execute("SET synchronous_commit = off")
    return {
        "index": index,
        "new_ids": ids,
        "index_mb": round(size / 2**20),
        "seconds": round(seconds, 2),
        "emails_per_s": round(NEW / seconds),
        "wal_bytes_per_email": round(float(wal) / NEW),
    }


async def main(history: int, compare: str) -> None:
    admin = await asyncpg.connect(f"{SERVER}/postgres")
    await admin.execute(f"DROP DATABASE IF EXISTS {NAME}")
    await admin.execute(f"CREATE DATABASE {NAME}")
    try:
        migrate(f"{SERVER}/{NAME}")
        conn = await asyncpg.connect(f"{SERVER}/{NAME}")
        try:
            await fill(conn, history)
            variants = (
                [("btree", "random"), ("btree", "clock")]
                if compare == "ids"
                else [
                    ("hash", "clock"),
                    ("btree", "clock"),
                ]
            )
            rounds = [await one_round(conn, i, ids) for i, ids in variants * 2]
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {NAME}")
        await admin.close()
    json.dump({"history": history, "new": NEW, "batch": BATCH, "rounds": rounds}, sys.stdout)


if __name__ == "__main__":
    asyncio.run(
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000,
            sys.argv[2] if len(sys.argv) > 2 else "index",
        )
    )
