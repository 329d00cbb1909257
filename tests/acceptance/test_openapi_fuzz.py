"""schemathesis against /openapi.json of a real uvicorn: no generated request gets a 5xx.

Fixed seed (derandomized), a bounded number of examples per operation, under a minute."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from mailq.service.app import ROUTERS
from tests.support import postgres
from tests.support.service import service_env, uvicorn

CLIENT, ADMIN = "fuzz-client", "fuzz-admin"
EXAMPLES_PER_OPERATION = 30


@pytest.fixture(scope="module")
def live_service(
    pg_admin_url: str, template_name: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    name = f"mailq_f_{uuid.uuid4().hex[:16]}"
    url = postgres.create_database(pg_admin_url, name, template=template_name)
    home = tmp_path_factory.mktemp("fuzz")
    env = service_env(url, "null://", home, api_token=CLIENT, admin_token=ADMIN)
    try:
        with uvicorn(env, 1, home / "uvicorn.log") as (base_url, _process):
            yield base_url
    finally:
        postgres.drop_database(pg_admin_url, name)


@pytest.fixture(scope="module")
def api_schema(live_service: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live_service}/openapi.json")


POSITIVE = schemathesis.GenerationMode.POSITIVE
NEGATIVE = schemathesis.GenerationMode.NEGATIVE
# Every operation the app declares, each fuzzed on its own: with data its schema allows, and
# (where it takes any input) with data its schema forbids.
CASES = sorted(
    (op.method, op.path.replace("{id:id}", "{id}"), mode)
    for router in ROUTERS
    for op in router.operations
    for mode in ([POSITIVE, NEGATIVE] if op.body or op.parameters else [POSITIVE])
)


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_no_generated_request_gets_a_server_error(
    api_schema: schemathesis.BaseSchema,
    method: str,
    path: str,
    mode: schemathesis.GenerationMode,
) -> None:
    operation = api_schema[path][method]
    headers = {"Authorization": f"Bearer {ADMIN}"}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, timeout=30)

    fuzz()
