-- What a campaign's recipients cost Postgres, part by part: 200,000 rows shaped like a
-- campaign's (waiting, due tomorrow, one small JSON context each) inserted into mailq.emails
-- with everything on, without the statement triggers, without each index in turn, and into
-- the heap and primary key alone. Every variant runs in a transaction that is rolled back
-- (its DDL too), so the database is left as it was. Run it against a migrated, otherwise idle
-- database, at least twice (the first run warms the cache), and compare the times of one run:
--
--     psql postgresql://postgres@127.0.0.1:5432/mailq_scratch -f docs/bench/campaign_insert_costs.sql
--
-- The triggers are switched off with session_replication_role (superuser), which skips
-- every trigger, the count triggers among them.
\set ON_ERROR_STOP on
CREATE TEMP TABLE recipients AS
SELECT n,
       'reader' || n || '@example.com' AS address,
       '<' || md5(n::text) || '@example.com>' AS message_id,
       jsonb_build_object('name', 'Reader ' || n) AS context
FROM generate_series(1, 200000) AS n;

-- Each variant times this one statement (the last time it prints): a campaign, and its
-- 200,000 rows.
\set insert_recipients 'WITH campaign AS (INSERT INTO mailq.campaigns (name, kind, send_at, priority, content) VALUES (''cost probe'', ''platform_complete'', now() + interval ''1 day'', 5, ''{}'') RETURNING id) INSERT INTO mailq.emails (kind, priority, run_at, send_at, to_address, message_id, content, campaign_id) SELECT ''platform_complete'', 5, now() + interval ''1 day'', now() + interval ''1 day'', r.address, r.message_id, r.context, campaign.id FROM recipients AS r CROSS JOIN campaign'
\timing on

\echo '--- 1. everything (indexes and triggers)'
BEGIN;
:insert_recipients;
ROLLBACK;

\echo '--- 2. no triggers'
BEGIN;
SET LOCAL session_replication_role = replica;
:insert_recipients;
ROLLBACK;

\echo '--- 3. no triggers, without emails_open_address_idx (lower(to_address) of open emails)'
BEGIN;
SET LOCAL session_replication_role = replica;
DROP INDEX mailq.emails_open_address_idx;
:insert_recipients;
ROLLBACK;

\echo '--- 4. no triggers, without emails_campaign_recipient_idx (unique campaign, address)'
BEGIN;
SET LOCAL session_replication_role = replica;
DROP INDEX mailq.emails_campaign_recipient_idx;
:insert_recipients;
ROLLBACK;

\echo '--- 5. no triggers, the two address indexes on lower(to_address) COLLATE "C"'
BEGIN;
SET LOCAL session_replication_role = replica;
DROP INDEX mailq.emails_open_address_idx;
DROP INDEX mailq.emails_campaign_recipient_idx;
CREATE INDEX ON mailq.emails ((lower(to_address) COLLATE "C"))
    WHERE status IN ('waiting', 'unknown');
CREATE UNIQUE INDEX ON mailq.emails (campaign_id, (lower(to_address) COLLATE "C"))
    WHERE campaign_id IS NOT NULL;
:insert_recipients;
ROLLBACK;

\echo '--- 6. no triggers, the heap and the primary key only (no other index)'
BEGIN;
SET LOCAL session_replication_role = replica;
DROP INDEX mailq.emails_open_address_idx;
DROP INDEX mailq.emails_campaign_recipient_idx;
DROP INDEX mailq.emails_campaign_open_idx;
DROP INDEX mailq.emails_due_idx;
:insert_recipients;
ROLLBACK;
