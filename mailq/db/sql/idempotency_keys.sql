-- name: idempotency_key_claim
-- Claim key $2 of scope $1 for a request with hash $3: true when this request is the first
-- (or the key's earlier use is older than $4 hours and is taken over). A concurrent holder
-- of the same key makes this wait until its transaction ends. No row: the key is taken.
INSERT INTO mailq.idempotency_keys AS k (scope, key, request_hash)
VALUES ($1::text, $2::text, $3::text)
ON CONFLICT (scope, key) DO UPDATE
SET request_hash = excluded.request_hash, status = NULL, response = NULL, created_at = now()
WHERE k.created_at < now() - $4::float8 * interval '1 hour'
RETURNING true AS claimed;

-- name: idempotency_key_get
-- The request hash and stored response of a key already used.
SELECT request_hash, status, response::text AS response
FROM mailq.idempotency_keys
WHERE scope = $1::text AND key = $2::text;

-- name: idempotency_key_complete
-- Store the response of the request that claimed the key (in the same transaction).
UPDATE mailq.idempotency_keys
SET status = $3::smallint, response = $4::jsonb
WHERE scope = $1::text AND key = $2::text;

-- name: idempotency_key_delete_expired
-- Forget up to $2 keys older than $1 hours.
DELETE FROM mailq.idempotency_keys
WHERE (scope, key) IN (
    SELECT scope, key FROM mailq.idempotency_keys
    WHERE created_at < now() - $1::float8 * interval '1 hour'
    ORDER BY created_at
    LIMIT $2::integer
    FOR UPDATE SKIP LOCKED
)
RETURNING key;
