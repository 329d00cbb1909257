-- name: suppression_add
-- Put addresses $1 (lower-case) on the suppression list with reasons $2; an address already
-- there keeps its first reason. Returns the addresses that were added.
INSERT INTO mailq.suppressions (address, reason)
SELECT a.address, a.reason FROM unnest($1::text[], $2::text[]) AS a(address, reason)
ON CONFLICT (address) DO NOTHING
RETURNING address;

-- name: suppression_remove
-- Take addresses $1 (lower-case) off the suppression list; returns those that were on it.
DELETE FROM mailq.suppressions WHERE address = ANY($1::text[])
RETURNING address;

-- name: suppression_list
-- Suppressed addresses in address order, $2 at most, after address $1 (keyset paging).
SELECT address, reason, created_at
FROM mailq.suppressions
WHERE $1::text IS NULL OR address > $1::text
ORDER BY address
LIMIT $2::integer;

-- name: suppression_find
-- Which of addresses $1 (lower-case) are suppressed, with the reason.
SELECT address, reason, created_at FROM mailq.suppressions WHERE address = ANY($1::text[]);
