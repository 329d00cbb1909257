-- name: worker_lease_register
-- Register a worker with a lease of $6 seconds, or register it again after its control
-- connection was lost. `lapsed`: it had no lease that still held (first registration, the
-- lease expired meanwhile, or the row was forgotten), so claims it holds may have been taken
-- back: it checks what it still holds before it sends any more (email_still_held).
WITH prior AS (
    SELECT lease_expires_at > now() AS holds FROM mailq.worker_leases WHERE id = $1::uuid
),
registered AS (
    INSERT INTO mailq.worker_leases (id, hostname, pid, kinds, concurrency, lease_expires_at)
    VALUES ($1::uuid, $2::text, $3::integer, $4::text[], $5::integer,
            now() + make_interval(secs => $6::float8))
    ON CONFLICT (id) DO UPDATE
    SET heartbeat_at = now(), lease_expires_at = excluded.lease_expires_at
    RETURNING id
)
SELECT NOT coalesce((SELECT holds FROM prior), false) AS lapsed FROM registered;

-- name: worker_lease_renew
-- The heartbeat: extend worker $1's lease by $2 seconds, only while it still holds. No row
-- back: the lease was lost (it expired, so its claims may have been taken back, or the row
-- is gone): the worker must not go on sending what it holds on the strength of this lease.
UPDATE mailq.worker_leases
SET heartbeat_at = now(), lease_expires_at = now() + make_interval(secs => $2::float8)
WHERE id = $1::uuid AND lease_expires_at > now()
RETURNING id;

-- name: worker_lease_delete
-- A worker that stopped cleanly removes its lease.
DELETE FROM mailq.worker_leases WHERE id = $1::uuid;

-- name: worker_lease_delete_expired
-- Forget up to $2 workers whose lease expired over $1 seconds before $3 (default now) and
-- that hold no email any more.
DELETE FROM mailq.worker_leases AS w
WHERE w.id IN (
    SELECT l.id FROM mailq.worker_leases AS l
    WHERE l.lease_expires_at
              < coalesce($3::timestamptz, now()) - make_interval(secs => $1::float8)
      AND NOT EXISTS (
          SELECT 1 FROM mailq.emails AS e WHERE e.status = 'sending' AND e.worker_id = l.id
      )
    ORDER BY l.lease_expires_at
    LIMIT $2::integer
    FOR UPDATE OF l SKIP LOCKED
)
RETURNING w.id;

-- name: worker_lease_list
-- Live workers (the mailq.workers view).
SELECT id, hostname, pid, kinds, concurrency, started_at, heartbeat_at,
       extract(epoch FROM heartbeat_age)::float8 AS heartbeat_age_s, in_flight
FROM mailq.workers
ORDER BY started_at;
