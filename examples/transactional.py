"""Queue an email inside your application's own transaction: it is queued exactly when your
change commits, and a rollback queues nothing. The reason to keep the queue in Postgres.

    mailq migrate                      # once, with MAILQ_DATABASE_URL set
    python examples/transactional.py postgresql://localhost/app

The same database holds your tables and the `mailq` schema. MAILQ_FROM and MAILQ_CONFIG
apply here as in the CLI and the service (read once, on first use).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import asyncpg
import psycopg

import mailq

SIGNUPS = "CREATE TABLE IF NOT EXISTS signups (id bigserial PRIMARY KEY, email text UNIQUE)"


def welcome(address: str, name: str) -> mailq.Email:
    return mailq.Email(
        to=f"{name} <{address}>",
        subject="Welcome, {{ name }}",
        text="Hello {{ name }}, your account is ready.",
        context={"name": name},
    )


# -- asyncpg (async apps) ---------------------------------------------------------------------


async def sign_up(pool: asyncpg.Pool, address: str, name: str) -> int:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO signups (email) VALUES ($1)", address)
        (email_id,) = await mailq.enqueue(conn, welcome(address, name))
        return email_id


# -- psycopg (sync web apps) ------------------------------------------------------------------


def sign_up_sync(conn: psycopg.Connection[Any], address: str, name: str) -> int:
    with conn.transaction():
        conn.execute("INSERT INTO signups (email) VALUES (%s)", (address,))
        (email_id,) = mailq.enqueue_sync(conn, welcome(address, name))
        return email_id


class PaymentDeclined(Exception):
    pass


def sign_up_paid(conn: psycopg.Connection[Any], address: str, name: str) -> None:
    with conn.transaction():
        conn.execute("INSERT INTO signups (email) VALUES (%s)", (address,))
        mailq.enqueue_sync(conn, welcome(address, name))
        raise PaymentDeclined(address)  # anything that fails after the enqueue


async def main(url: str) -> None:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        await pool.execute(SIGNUPS)
        email_id = await sign_up(pool, "ann@example.com", "Ann")
        print(f"asyncpg: signed up ann@example.com, email {email_id} queued")
        try:
            await sign_up(pool, "ann@example.com", "Ann again")
        except asyncpg.UniqueViolationError:
            print("asyncpg: ann@example.com is taken: rolled back, no email queued")

        with psycopg.connect(url, autocommit=True) as conn:
            email_id = sign_up_sync(conn, "bob@example.com", "Bob")
            print(f"psycopg: signed up bob@example.com, email {email_id} queued")
            try:
                sign_up_paid(conn, "carol@example.com", "Carol")
            except PaymentDeclined:
                print("psycopg: carol@example.com's payment failed: rolled back, no email queued")

        queued = await pool.fetch("SELECT to_address FROM mailq.emails ORDER BY id")
        print("queued emails to:", ", ".join(r["to_address"] for r in queued))
    finally:
        await pool.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/transactional.py postgresql://…")
    asyncio.run(main(sys.argv[1]))
