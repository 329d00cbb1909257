-- name: schema_revision
-- The Alembic revision the database is at (the table is absent before the first migration).
SELECT version_num FROM mailq.alembic_version;

-- name: schema_try_duty_lock
-- Take the transaction-scoped advisory lock of a maintenance duty; false when another
-- worker holds it.
SELECT pg_try_advisory_xact_lock($1::bigint) AS acquired;
