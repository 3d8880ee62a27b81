"""A bounded schemathesis run over the published OpenAPI spec: whatever it sends, the server
answers with a documented status (never a 5xx), in the documented content type and schema,
and stays up. The server used never runs jobs (``--max-jobs 0``), so accepted jobs cost nothing.

The event stream is left out: it stays open while a job is queued, by design."""

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytest_plugins = ["tests.server_fixtures"]

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]



def _spec() -> dict:
    """The spec as the server builds it (fetched below from the running server as well)."""
    from dynapose4d.server.api.app import build_api
    from dynapose4d.server.config import ServerConfig

    with tempfile.TemporaryDirectory(prefix="dp4d-spec-") as folder:
        return build_api(ServerConfig(jobs_dir=Path(folder), token="-")).openapi()


SPEC = _spec()
schema = schemathesis.openapi.from_dict(SPEC).exclude(path_regex=r"/events$")


def test_the_server_publishes_this_spec(upload_server):
    served = upload_server.get("/v1/openapi.json").json()
    assert served["paths"].keys() == SPEC["paths"].keys()
    assert served["components"] == SPEC["components"]


@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api_fuzz(case, upload_server):
    response = case.call(base_url=upload_server.url, headers=upload_server.auth, timeout=30)
    case.validate_response(response, checks=CHECKS)
    assert upload_server.alive()


def test_server_is_healthy_after_fuzzing(upload_server):
    assert upload_server.get("/v1/health").status == 200
