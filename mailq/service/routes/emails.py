"""Emails: queue one or a batch, read one, find by metadata, retry, cancel."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailq.db.emails import (
    email_attempts,
    email_cancel,
    email_find_by_metadata,
    email_get,
    email_retry,
)
from mailq.db.events import event_list_for_email
from mailq.enqueue import enqueue_rows
from mailq.models import EmailRow
from mailq.service import idempotency
from mailq.service.api import Role, Router
from mailq.service.body import read_json
from mailq.service.errors import ApiError
from mailq.service.openapi import errors
from mailq.service.schemas import emails as schemas
from mailq.service.schemas.fields import ID
from mailq.service.state import MAX_ID, Service, service_of
from mailq.settings import BATCH_LIMIT

router = Router("emails")

ID_PARAMETER = {"name": "id", "in": "path", "required": True, "schema": ID}
KEY_PARAMETER = idempotency.PARAMETER
LIST_LIMIT_DEFAULT = 100
LIST_LIMIT_MAX = 1000
MAX_METADATA_FILTERS = 4
METADATA_PREFIX = "metadata."
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@router.route(
    "POST",
    "/v1/emails",
    role=Role.CLIENT,
    summary="Queue one email",
    body=schemas.EMAIL,
    parameters=[KEY_PARAMETER],
    idempotent=True,
    responses={
        201: ("queued", schemas.CREATED),
        200: ("a replay of the Idempotency-Key: the first response", schemas.CREATED),
        **errors(400, 401, 413, 422),
    },
)
async def create_email(request: Request) -> Response:
    service = service_of(request)
    data = await read_json(request, service.limits.body_bytes)
    row = schemas.single_row(
        data,
        default_from=service.settings.from_address,
        attachments_limit=service.limits.attachments_bytes,
        config=service.config,
    )

    async def work(conn: asyncpg.Connection) -> tuple[int, dict[str, Any]]:
        ids = await enqueue_rows(conn, [row])
        return 201, {"id": ids[0], "state": schemas.created_state(row)}

    return await _queue(request, service, data, [row], work)


@router.route(
    "POST",
    "/v1/emails/batch",
    role=Role.CLIENT,
    summary="Queue a batch of emails, all or nothing",
    body=schemas.batch_schema(BATCH_LIMIT),
    parameters=[KEY_PARAMETER],
    idempotent=True,
    responses={
        201: ("all queued, ids in the order given", schemas.BATCH_CREATED),
        200: ("a replay of the Idempotency-Key: the first response", schemas.BATCH_CREATED),
        **errors(400, 401, 413, 422),
    },
)
async def create_batch(request: Request) -> Response:
    service = service_of(request)
    data = await read_json(request, service.limits.body_bytes)
    rows = schemas.batch_rows(
        data,
        default_from=service.settings.from_address,
        attachments_limit=service.limits.attachments_bytes,
        batch_limit=service.limits.batch_emails,
        config=service.config,
    )

    async def work(conn: asyncpg.Connection) -> tuple[int, dict[str, Any]]:
        return 201, {"ids": await enqueue_rows(conn, rows)}

    return await _queue(request, service, data, rows, work)


async def _queue(
    request: Request,
    service: Service,
    data: Any,
    rows: Sequence[EmailRow],
    work: idempotency.Work,
) -> Response:
    outcome = await idempotency.perform(
        request, service.pool, data, service.limits.idempotency_hours, work
    )
    status, body, replayed = outcome.status, outcome.body, outcome.replayed
    if not replayed:
        service.metrics.count_queued(r.kind for r in rows)
    headers = {idempotency.REPLAYED_HEADER: "true"} if replayed else None
    return JSONResponse(body, status_code=status, headers=headers)


def _email_id(request: Request) -> int:
    email_id: int = request.path_params["id"]
    if not 1 <= email_id <= MAX_ID:
        raise ApiError(404, f"no email has id {email_id}")
    return email_id


@router.route(
    "GET",
    "/v1/emails/{id:id}",
    role=Role.CLIENT,
    summary="One email: state, attempts with SMTP replies, events (bounces, complaints), "
    "Message-ID, metadata, timestamps",
    parameters=[ID_PARAMETER],
    responses={200: ("the email", schemas.EMAIL_DETAIL), **errors(401, 404)},
)
async def get_email(request: Request) -> Response:
    service = service_of(request)
    email_id = _email_id(request)
    row = await email_get(service.pool, email_id)
    if row is None:
        raise ApiError(404, f"no email has id {email_id}")
    attempts = await email_attempts(service.pool, email_id)
    events = await event_list_for_email(service.pool, email_id)
    return JSONResponse(schemas.email_detail(row, attempts, events))


@router.route(
    "GET",
    "/v1/emails",
    role=Role.CLIENT,
    summary="Find emails by metadata (?metadata.KEY=VALUE, repeatable for AND), newest first",
    parameters=[
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX},
        },
        {"name": "before_id", "in": "query", "schema": ID},
    ],
    responses={200: ("matching emails", schemas.EMAIL_LIST), **errors(400, 401)},
)
async def find_emails(request: Request) -> Response:
    service = service_of(request)
    filters: dict[str, str] = {}
    limit, before_id = LIST_LIMIT_DEFAULT, None
    for name, value in request.query_params.multi_items():
        if name.startswith(METADATA_PREFIX) and len(name) > len(METADATA_PREFIX):
            key = name[len(METADATA_PREFIX) :]
            if key in filters:
                raise ApiError(400, f"{name[:64]}: given twice")
            if _CONTROL.search(key) or "\x00" in value:
                raise ApiError(400, "metadata: control characters in a filter")
            filters[key] = value
        elif name == "limit":
            limit = _query_int(name, value, 1, LIST_LIMIT_MAX)
        elif name == "before_id":
            before_id = _query_int(name, value, 1, MAX_ID)
        else:
            raise ApiError(400, f"{name[:64]}: unknown query parameter (use metadata.KEY=VALUE)")
    if len(filters) > MAX_METADATA_FILTERS:
        raise ApiError(400, f"metadata: at most {MAX_METADATA_FILTERS} filters at once")
    candidates = schemas.metadata_candidates(filters) if filters else None
    rows = await email_find_by_metadata(service.pool, candidates, limit, before_id)
    return JSONResponse(
        {
            "emails": [schemas.email_summary(r) for r in rows],
            "next_before_id": rows[-1]["id"] if len(rows) == limit else None,
        }
    )


def _query_int(name: str, value: str, low: int, high: int) -> int:
    if (
        not value.isascii()
        or not value.isdigit()
        or len(value) > 19
        or not low <= int(value) <= high
    ):
        raise ApiError(400, f"{name}: a whole number from {low} to {high}")
    return int(value)


@router.route(
    "POST",
    "/v1/emails/{id:id}/retry",
    role=Role.ADMIN,
    summary="Queue a failed, cancelled or unknown email again, due now",
    parameters=[ID_PARAMETER],
    responses={
        200: ("queued again", schemas.CREATED),
        **errors(401, 403, 404, 409),
    },
)
async def retry_email(request: Request) -> Response:
    service = service_of(request)
    email_id = _email_id(request)
    done = await email_retry(service.pool, [email_id])
    return await _after_change(service, email_id, done, "failed, cancelled or unknown", "retried")


@router.route(
    "POST",
    "/v1/emails/{id:id}/cancel",
    role=Role.ADMIN,
    summary="Cancel a waiting (or unknown) email",
    parameters=[ID_PARAMETER],
    responses={200: ("cancelled", schemas.CREATED), **errors(401, 403, 404, 409)},
)
async def cancel_email(request: Request) -> Response:
    service = service_of(request)
    email_id = _email_id(request)
    done = await email_cancel(service.pool, [email_id], "cancelled by an operator through the API")
    return await _after_change(service, email_id, done, "waiting or unknown", "cancelled")


async def _after_change(
    service: Service, email_id: int, done: Sequence[int], allowed: str, verb: str
) -> Response:
    row = await email_get(service.pool, email_id)
    if row is None:
        raise ApiError(404, f"no email has id {email_id}")
    if not done:
        raise ApiError(
            409, f"email {email_id} is {row['state']}; only {allowed} emails can be {verb}"
        )
    return JSONResponse({"id": email_id, "state": row["state"]})
