"""schemathesis against /openapi.json of a real uvicorn, with every check (`--checks all`):
no generated request gets a 5xx, data the schema allows is accepted and data it forbids is
refused (the document is as strict as the server), responses match their schemas.

Fixed seed (derandomized), a bounded number of examples per operation; more where hostile
input reached a 5xx before (issue 11: metadata integers, a campaign's context, limits)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.config import SchemathesisConfig

from mailq.service.app import ROUTERS
from tests.support import postgres
from tests.support.service import service_env, uvicorn

CLIENT, ADMIN = "fuzz-client", "fuzz-admin"
EXAMPLES_PER_OPERATION = 10
# Where hostile input reached a 5xx before (issue 11, case 3): more examples.
HOSTILE_OPERATIONS = {
    ("POST", "/v1/emails"): 60,
    ("POST", "/v1/emails/batch"): 20,
    ("POST", "/v1/campaigns"): 40,
    ("GET", "/v1/emails"): 40,
    ("GET", "/v1/suppressions"): 30,
}


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


# What JSON Schema cannot say, so that a request the schema allows may still be refused:
# whether a Jinja template is valid and its context has every variable it reads (POST
# /v1/emails, /batch, /v1/campaigns: 422), and whether an unsubscribe token is signed with
# our key (400). And `GET /v1/emails?metadata.KEY=VALUE` takes a query parameter for any KEY,
# which OpenAPI cannot list: an "undocumented" parameter may be a valid filter.
CONFIG = SchemathesisConfig.from_dict(
    {
        "operations": [
            {
                "include-path": "/v1/emails",
                "include-method": "GET",
                "checks": {"negative_data_rejection": {"enabled": False}},
            },
            {
                "include-path-regex": "^/v1/(emails|campaigns)",
                "include-method": "POST",
                "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "4xx"]}},
            },
            {
                "include-path-regex": "^/v1/unsubscribe/",
                "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400"]}},
            },
        ]
    }
)


@pytest.fixture(scope="module")
def api_schema(live_service: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live_service}/openapi.json", config=CONFIG)


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
        max_examples=HOSTILE_OPERATIONS.get((method, path), EXAMPLES_PER_OPERATION),
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, timeout=30)

    fuzz()


# The same with the schemathesis command (`st run --checks all`): its coverage phase also
# sends each schema's boundary values and just past them (a metadata integer of 2**63, one
# of -2**63 - 1, a limit past its maximum), where hostile input reached a 5xx before.
RUN_CONFIG = """
[[operations]]
include-path = "/v1/emails"
include-method = "GET"
checks.negative_data_rejection.enabled = false

[[operations]]
include-path-regex = "^/v1/(emails|campaigns)"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "4xx"]

[[operations]]
include-path-regex = "^/v1/unsubscribe/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400"]
"""


def test_schemathesis_run_with_every_check(live_service: str, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(RUN_CONFIG)
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(config),
        "run",
        f"{live_service}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage",
        "--include-path-regex",
        "^/v1/(emails|campaigns|suppressions)",
        "--header",
        f"Authorization: Bearer {ADMIN}",
        "--seed",
        "11",
        "--generation-deterministic",
        "--workers",
        "2",
        "--request-timeout",
        "30",
    ]
    # In tmp_path: the command keeps its cache in .schemathesis/ of its working folder.
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
