-- name: suppression_add
-- Put addresses $1 (lower-case) on the suppression list with reasons $2, expiring at $3 (null:
-- never). An address already there keeps its first reason, unless that suppression has
-- expired, or it expires and the new one lasts longer (a hard bounce after soft ones).
-- Returns the addresses that were added or replaced.
INSERT INTO mailq.suppressions AS s (address, reason, expires_at)
SELECT a.address, a.reason, $3::timestamptz
FROM unnest($1::text[], $2::text[]) AS a(address, reason)
ON CONFLICT (address) DO UPDATE
SET reason = excluded.reason, expires_at = excluded.expires_at, created_at = now()
WHERE s.expires_at IS NOT NULL
  AND (s.expires_at <= now() OR excluded.expires_at IS NULL OR excluded.expires_at > s.expires_at)
RETURNING address;

-- name: suppression_remove
-- Take addresses $1 (lower-case) off the suppression list; returns those that were on it.
DELETE FROM mailq.suppressions WHERE address = ANY($1::text[])
RETURNING address;

-- name: suppression_list
-- Suppressed addresses in address order, $2 at most, after address $1 (keyset paging);
-- expired suppressions are left out.
SELECT address, reason, created_at, expires_at
FROM mailq.suppressions
WHERE ($1::text IS NULL OR address > $1::text)
  AND (expires_at IS NULL OR expires_at > now())
ORDER BY address
LIMIT $2::integer;

-- name: suppression_find
-- Which of addresses $1 (lower-case) are suppressed (and not expired), with the reason.
SELECT address, reason, created_at, expires_at
FROM mailq.suppressions
WHERE address = ANY($1::text[]) AND (expires_at IS NULL OR expires_at > now());

-- name: suppression_delete_expired
-- Remove up to $1 suppressions that expired before $2 (default now): their addresses may be
-- mailed again (suppressions_expires_idx).
DELETE FROM mailq.suppressions
WHERE address IN (
    SELECT address FROM mailq.suppressions
    WHERE expires_at IS NOT NULL AND expires_at <= coalesce($2::timestamptz, now())
    ORDER BY expires_at
    LIMIT $1::integer
)
RETURNING address;
