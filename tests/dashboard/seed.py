"""A queue that has been running for a day, for the dashboard's pages and screenshots: sent
emails with their attempts spread over the last 24 hours, failures with real-looking replies
from a few domains, emails waiting, retrying and in doubt, a worker, a paused kind, a
campaign part way through, suppressed addresses, bounces and complaints, a relay whose
circuit breaker is open."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import asyncpg

from mailq.campaigns import NewCampaign, create_campaign
from mailq.service.dashboard import overview

CONTENT = json.dumps(
    {
        "from": "hello@shop.example",
        "subject": "Your order has shipped",
        "text": "Hi,\n\nYour order is on its way.\n",
        "html": "<h1>Your order has shipped</h1><p>It is on its way.</p>",
    }
)
SENT = 2400
FAILURES = (
    (550, "5.1.1 The email account that you tried to reach does not exist", "gmail.com", 9),
    (550, "5.1.1 <{a}>: Recipient address rejected: User unknown", "example.org", 5),
    (552, "5.2.2 Mailbox full", "yahoo.com", 4),
    (554, "5.7.1 Message rejected as spam", "outlook.com", 3),
)
WORKER = "6f1c2a4e-1111-4a0b-9c7e-3b7f5e2d9a10"


async def seed(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        return await _seed(conn)
    finally:
        await conn.close()


async def _seed(conn: asyncpg.Connection) -> dict[str, int]:
    await conn.execute(
        """
        INSERT INTO mailq.worker_leases (id, hostname, pid, kinds, concurrency, lease_expires_at)
        VALUES ($1, 'mail-1', 4242, '{welcome,search_engine,platform_complete}', 16,
                now() + interval '1 hour')
        """,
        WORKER,
    )
    # Sent over the last day, busier in the last hours (the charts show a shape).
    await conn.execute(
        """
        INSERT INTO mailq.emails (kind, status, to_address, message_id, content, attempts,
                                  created_at, run_at, finished_at)
        SELECT (ARRAY['welcome', 'welcome', 'search_engine'])[1 + g % 3], 'sent',
               'user' || g || '@example.com', '<sent.' || g || '@shop.example>', $1, 1, t, t, t
        FROM generate_series(1, $2::integer) AS g
        CROSS JOIN LATERAL (
            SELECT now() - (power(g::float8 / $2, 1.6) * interval '23 hours 50 minutes')
        ) AS x(t)
        ORDER BY t
        """,
        CONTENT,
        SENT,
    )
    for code, reply, domain, count in FAILURES:
        await conn.execute(
            """
            WITH made AS (
                INSERT INTO mailq.emails (kind, status, to_address, message_id, content,
                                          attempts, max_attempts, created_at, run_at,
                                          finished_at, last_error)
                SELECT 'welcome', 'failed', 'nobody' || g || '@' || $2, '<f.' || $2 || g || '@x>',
                       $1, 2, 8, now() - g * interval '7 minutes', now() - g * interval '7 minutes',
                       now() - g * interval '7 minutes', $3::integer || ' ' || $4
                FROM generate_series(1, $5::integer) AS g
                RETURNING id, to_address, finished_at
            )
            INSERT INTO mailq.attempts (email_id, attempt, worker_id, started_at, finished_at,
                                        outcome, smtp_code, smtp_reply)
            SELECT id, 1, $6::uuid, finished_at - interval '181 seconds',
                   finished_at - interval '180 seconds', 'retry', 421,
                   '4.7.0 Temporary System Problem. Try again later.'
            FROM made
            UNION ALL
            SELECT id, 2, $6::uuid, finished_at - interval '1 second', finished_at, 'failed', $3,
                   replace($4, '{a}', to_address)
            FROM made
            """,
            CONTENT,
            domain,
            code,
            reply,
            count,
            WORKER,
        )
    await conn.execute(
        """
        INSERT INTO mailq.attempts (email_id, attempt, worker_id, started_at, finished_at,
                                    outcome, smtp_code, smtp_reply)
        SELECT id, 1, $1, finished_at - interval '2 seconds', finished_at, 'sent', 250,
               '2.0.0 Ok: queued as ' || upper(to_hex(id * 7919))
        FROM mailq.emails WHERE status = 'sent'
        """,
        WORKER,
    )
    # Waiting: due now, scheduled for later, retrying after a 421.
    await conn.execute(
        """
        INSERT INTO mailq.emails (kind, to_address, message_id, content, run_at, created_at)
        SELECT 'welcome', 'new' || g || '@example.net', '<q.' || g || '@shop.example>', $1,
               now() - g * interval '3 seconds', now() - g * interval '3 seconds'
        FROM generate_series(1, 40) AS g
        """,
        CONTENT,
    )
    await conn.execute(
        """
        INSERT INTO mailq.emails (kind, priority, to_address, message_id, content, run_at)
        SELECT 'platform_complete', 5, 'later' || g || '@example.net', '<l.' || g || '@x>', $1,
               now() + g * interval '1 hour'
        FROM generate_series(1, 12) AS g
        """,
        CONTENT,
    )
    await conn.execute(
        """
        WITH made AS (
            INSERT INTO mailq.emails (kind, to_address, message_id, content, attempts,
                                      run_at, last_error)
            SELECT 'welcome', 'slow' || g || '@yahoo.com', '<r.' || g || '@x>', $1, 1,
                   now() + g * interval '4 minutes', '421 4.7.0 Try again later'
            FROM generate_series(1, 6) AS g
            RETURNING id
        )
        INSERT INTO mailq.attempts (email_id, attempt, worker_id, started_at, finished_at,
                                    outcome, smtp_code, smtp_reply)
        SELECT id, 1, $2, now() - interval '3 minutes', now() - interval '3 minutes', 'retry',
               421, '4.7.0 Try again later, closing connection.'
        FROM made
        """,
        CONTENT,
        WORKER,
    )
    await conn.execute(
        """
        INSERT INTO mailq.emails (kind, status, to_address, message_id, content, attempts,
                                  data_started_at, last_error)
        SELECT 'platform_complete', 'unknown', 'doubt' || g || '@example.com',
               '<u.' || g || '@shop.example>', $1, 1, now() - g * interval '20 minutes',
               'unknown: the worker died after SMTP DATA had begun; retry or cancel it'
        FROM generate_series(1, 3) AS g
        """,
        CONTENT,
    )
    await conn.execute(
        "INSERT INTO mailq.paused_kinds (kind, paused_by) VALUES ('portfolio_builder', 'ops')"
    )
    await conn.execute(
        """
        INSERT INTO mailq.suppressions (address, reason)
        VALUES ('bounced@example.org', 'bounced: 550 5.1.1 user unknown'),
               ('complained@gmail.com', 'complaint (feedback loop)'),
               ('unsubscribed@example.com', 'unsubscribed (one-click link)')
        """
    )
    campaign, _added = await create_campaign(
        conn,
        NewCampaign(
            name="Spring launch",
            kind="search_engine",
            send_at=datetime.now(UTC) - timedelta(minutes=30),
            subject="Meet the new search, {{ name }}",
            text="Hello {{ name }}, the new search is here.",
            html="<p>Hello {{ name }}, the new search is here.</p>",
        ),
        [
            {"email": f"reader{i}@example.com", "context": {"name": f"Reader {i}"}}
            for i in range(600)
        ],
        default_from="news@shop.example",
    )
    await conn.execute(
        """
        WITH done AS (
            UPDATE mailq.emails SET status = 'sent', attempts = 1,
                   finished_at = now() - (id % 1500) * interval '1 second'
            WHERE id IN (SELECT id FROM mailq.emails WHERE campaign_id = $1 ORDER BY id LIMIT 410)
            RETURNING id, finished_at
        )
        INSERT INTO mailq.attempts (email_id, attempt, worker_id, started_at, finished_at,
                                    outcome, smtp_code, smtp_reply)
        SELECT id, 1, $2, finished_at, finished_at, 'sent', 250, '2.0.0 Ok' FROM done
        """,
        campaign.id,
        WORKER,
    )
    await conn.execute(
        """
        UPDATE mailq.emails SET status = 'failed', attempts = 1, finished_at = now(),
               last_error = '550 5.1.1 user unknown'
        WHERE id IN (SELECT id FROM mailq.emails WHERE campaign_id = $1 AND status = 'waiting'
                     ORDER BY id LIMIT 7)
        """,
        campaign.id,
    )
    # The campaign's rate and ETA: as if its page had been open five minutes ago.
    await conn.execute(
        """
        INSERT INTO mailq.campaign_samples (campaign_id, sampled_at, finished)
        VALUES ($1, now() - interval '5 minutes', 300)
        """,
        campaign.id,
    )
    await _seed_health(conn)
    await conn.execute("ANALYZE")
    # The attempt-rate rollup as after the dashboard has been open a while (a first look
    # counts a bounded slice of history per refresh).
    for _ in range(500):
        if not (await overview.snapshot(conn))["uncounted"]:
            break
    return {"campaign": campaign.id}


async def _seed_health(conn: asyncpg.Connection) -> None:
    """Delivery events of sent emails (through mailq.events, whose trigger counts them into
    mailq.event_counts) and an open backend circuit breaker."""
    await conn.execute(
        """
        INSERT INTO mailq.events (email_id, kind, campaign_id, type, subtype, sender_side,
                                  provider, recipient, status_code, dedup_key, occurred_at)
        SELECT e.id, e.kind, e.campaign_id, x.type, x.subtype, x.sender_side, 'dsn',
               e.to_address, x.status,
               concat_ws('.', 'seed', x.type, x.subtype, x.status, e.id), now()
        FROM mailq.emails AS e
        CROSS JOIN LATERAL (
            SELECT * FROM (VALUES
                (e.id % 40 = 0, 'bounced', 'hard', false, '5.1.1'),
                (e.id % 97 = 1, 'bounced', 'soft', false, '4.2.2'),
                (e.id % 400 = 3, 'bounced', 'hard', true, '5.7.26'),
                (e.id % 350 = 5 OR (e.campaign_id IS NOT NULL AND e.id % 60 = 7),
                 'complained', NULL, false, NULL),
                (e.id % 9 = 2, 'delivered', NULL, false, '2.0.0')
            ) AS v(pick, type, subtype, sender_side, status)
            WHERE v.pick
        ) AS x
        WHERE e.status = 'sent'
        """
    )
    await conn.execute(
        """
        INSERT INTO mailq.backend_breakers (backend, state, opened_at, last_error, deferred,
                                            probes, backoff_s, probe_at)
        VALUES ('smtp://relay.shop.example:587', 'open', now() - interval '4 minutes',
                'connection refused (relay.shop.example:587)', 37, 3, 40,
                now() + interval '25 seconds')
        """
    )
