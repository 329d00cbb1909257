-- name: audit_log_add
-- Record an operator's action (actor $1, action $2, on $3 $4, the emails it changed $5,
-- details $6 as JSON), and tell open dashboards that something changed.
WITH added AS (
    INSERT INTO mailq.audit_log (actor, action, target_type, target, email_ids, detail)
    VALUES ($1::text, $2::text, $3::text, $4::text, $5::bigint[], $6::jsonb)
    RETURNING id
)
SELECT a.id, pg_notify('mailq_dashboard', $3::text) IS NOT NULL AS notified FROM added AS a;

-- name: audit_log_for_target
-- The latest $3 actions on one thing ($1 type, $2 name), newest first.
SELECT id, at, actor, action, target_type, target, cardinality(email_ids) AS emails,
       detail::text AS detail
FROM mailq.audit_log
WHERE target_type = $1::text AND target = $2::text
ORDER BY id DESC
LIMIT $3::integer;

-- name: audit_log_for_email
-- The latest $2 actions that changed email $1: on it alone, or on a selection that held it.
SELECT id, at, actor, action, target_type, target, cardinality(email_ids) AS emails,
       detail::text AS detail
FROM mailq.audit_log
WHERE (target_type = 'email' AND target = $1::bigint::text)
   OR (email_ids @> ARRAY[$1::bigint] AND email_ids IS NOT NULL)
ORDER BY id DESC
LIMIT $2::integer;

-- name: audit_log_of_type
-- The latest $2 actions on things of type $1 (a list page's log), newest first.
SELECT id, at, actor, action, target_type, target, cardinality(email_ids) AS emails,
       detail::text AS detail
FROM mailq.audit_log
WHERE target_type = ANY($1::text[])
ORDER BY id DESC
LIMIT $2::integer;
