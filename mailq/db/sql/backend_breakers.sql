-- name: backend_breaker_trip
-- Backend $1 failed ($2: the error) during an attempt: open its breaker, first probe after $3
-- seconds, or count one more deferred attempt while it is open. A breaker that closed less
-- than $4 seconds ago opens again with its last backoff times $5 (capped at $4): a flapping
-- backend is probed less and less often. `opened` is true only for the call that opened it
-- (the others see the row it wrote), so one line is logged however many workers fail.
WITH prior AS (
    SELECT b.closed_at, b.backoff_s FROM mailq.backend_breakers AS b WHERE b.backend = $1::text
),
fresh AS (
    SELECT CASE WHEN p.closed_at > now() - make_interval(secs => $4::float8)
                THEN least($4::float8, p.backoff_s * $5::float8)
                ELSE $3::float8 END AS backoff_s
    FROM (SELECT 1) AS one LEFT JOIN prior AS p ON true
)
INSERT INTO mailq.backend_breakers AS b
    (backend, state, opened_at, last_error, deferred, backoff_s, probe_at)
SELECT $1::text, 'open', now(), $2::text, 1, f.backoff_s,
       now() + make_interval(secs => f.backoff_s)
FROM fresh AS f
ON CONFLICT (backend) DO UPDATE
SET state = 'open',
    opened_at = CASE WHEN b.state = 'open' THEN b.opened_at ELSE excluded.opened_at END,
    closed_at = NULL,
    last_error = excluded.last_error,
    deferred = CASE WHEN b.state = 'open' THEN b.deferred + 1 ELSE 1 END,
    probes = CASE WHEN b.state = 'open' THEN b.probes ELSE 0 END,
    backoff_s = CASE WHEN b.state = 'open' THEN b.backoff_s ELSE excluded.backoff_s END,
    probe_at = CASE WHEN b.state = 'open' THEN b.probe_at ELSE excluded.probe_at END,
    probe_by = CASE WHEN b.state = 'open' THEN b.probe_by END,
    probe_until = CASE WHEN b.state = 'open' THEN b.probe_until END,
    updated_at = now()
RETURNING b.opened_at = now() AS opened,
          extract(epoch FROM b.probe_at - now())::float8 AS probe_in_s;

-- name: backend_breaker_get
-- Backend $1's breaker: open or closed, and the seconds until its next probe is due.
SELECT state = 'open' AS open, extract(epoch FROM probe_at - now())::float8 AS probe_in_s
FROM mailq.backend_breakers
WHERE backend = $1::text;

-- name: backend_breaker_take_probe
-- Worker $2 takes the probe of backend $1 for $3 seconds: only while the breaker is open, the
-- probe is due and no other worker holds it (one probe at a time across all workers).
UPDATE mailq.backend_breakers
SET probe_by = $2::uuid, probe_until = now() + make_interval(secs => $3::float8),
    updated_at = now()
WHERE backend = $1::text AND state = 'open' AND probe_at <= now()
  AND (probe_until IS NULL OR probe_until < now())
RETURNING backend;

-- name: backend_breaker_probe_failed
-- Worker $2's probe of backend $1 failed ($3: why): the next one after the backoff times $4,
-- at most $5 seconds.
UPDATE mailq.backend_breakers
SET backoff_s = least($5::float8, backoff_s * $4::float8),
    probe_at = now() + make_interval(secs => least($5::float8, backoff_s * $4::float8)),
    probes = probes + 1,
    last_error = $3::text,
    probe_by = NULL,
    probe_until = NULL,
    updated_at = now()
WHERE backend = $1::text AND state = 'open' AND probe_by = $2::uuid
RETURNING extract(epoch FROM probe_at - now())::float8 AS probe_in_s;

-- name: backend_breaker_close
-- A probe of backend $1 succeeded: close its breaker and wake every worker (its emails are
-- due where they were). One row back, only for the call that closed it: how long it was open,
-- the attempts it deferred and the probes that failed meanwhile.
WITH closed AS (
    UPDATE mailq.backend_breakers
    SET state = 'closed', closed_at = now(), probe_by = NULL, probe_until = NULL,
        updated_at = now()
    WHERE backend = $1::text AND state = 'open'
    RETURNING extract(epoch FROM now() - opened_at)::float8 AS open_s, deferred, probes
)
SELECT open_s, deferred, probes, pg_notify('mailq_emails', '0') IS NOT NULL AS woken
FROM closed;

-- name: backend_breaker_list
-- Every backend that ever failed, the open ones first (mailq status, /v1/stats, /metrics).
SELECT backend, state, opened_at, closed_at, last_error, deferred, probes, backoff_s,
       extract(epoch FROM probe_at - now())::float8 AS probe_in_s,
       extract(epoch FROM coalesce(closed_at, now()) - opened_at)::float8 AS open_for_s
FROM mailq.backend_breakers
ORDER BY state = 'open' DESC, backend;
