-- name: rate_bucket_configure
-- Create or reconfigure the buckets named $1 (rate $2/s, burst $3, welcome reserve $4); a
-- new bucket starts full, a reconfigured one keeps its tokens up to the new burst.
INSERT INTO mailq.rate_buckets AS b (name, rate, burst, reserve, tokens)
SELECT c.name, c.rate, c.burst, c.reserve, c.burst
FROM unnest($1::text[], $2::float8[], $3::float8[], $4::float8[]) AS c(name, rate, burst, reserve)
ON CONFLICT (name) DO UPDATE
SET rate = excluded.rate, burst = excluded.burst, reserve = excluded.reserve,
    tokens = least(b.tokens, excluded.burst);

-- name: rate_bucket_lock
-- Inside a transaction: lock buckets $1 (in name order, so workers never deadlock) and read
-- their tokens refilled up to now by the database's clock.
SELECT b.name, b.rate, b.burst, b.reserve,
       least(b.burst, b.tokens + b.rate * greatest(0, extract(epoch FROM t.now - b.updated_at)))
           AS tokens,
       t.now AS read_at
FROM mailq.rate_buckets AS b
CROSS JOIN (SELECT clock_timestamp() AS now) AS t
WHERE b.name = ANY($1::text[])
ORDER BY b.name
FOR UPDATE OF b;

-- name: rate_bucket_store
-- Inside the same transaction: store the tokens left in buckets $1 as of $3. (A read that
-- waited for another worker's lock may predate that worker's write: never move time back,
-- or the refill between the two would be counted twice.)
UPDATE mailq.rate_buckets AS b
SET tokens = s.tokens, updated_at = greatest(b.updated_at, $3::timestamptz)
FROM unnest($1::text[], $2::float8[]) AS s(name, tokens)
WHERE b.name = s.name;

-- name: rate_bucket_refund
-- Give back tokens $2 to buckets $1 (taken for emails that were not there to claim).
UPDATE mailq.rate_buckets AS b
SET tokens = least(b.burst, b.tokens + s.n)
FROM unnest($1::text[], $2::float8[]) AS s(name, n)
WHERE b.name = s.name;

-- name: rate_bucket_hold
-- A provider asked every sender to wait $2 seconds (HTTP 429 Retry-After): bucket $1 is left
-- with no tokens until then (negative tokens refill to zero in $2 seconds), so every worker
-- sharing it slows down. A bucket already emptier is left as it is.
UPDATE mailq.rate_buckets AS b
SET tokens = least(
        least(b.burst,
              b.tokens + b.rate * greatest(0, extract(epoch FROM clock_timestamp() - b.updated_at))),
        -b.rate * $2::float8),
    updated_at = greatest(b.updated_at, clock_timestamp())
WHERE b.name = $1::text;
