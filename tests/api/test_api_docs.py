"""The OpenAPI 3 schema and the browsable docs: served from this server's own static files, linked from the console."""

import re

import pytest
from django.test import Client

from tests.console_fixtures import client_for, viewer  # noqa: F401  (a fixture)

pytestmark = pytest.mark.django_db


def test_openapi__lists_every_route_with_bearer_auth_and_the_proposal_schema():
    spec = Client().get("/api/v1/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    operations = {op["operationId"] for methods in spec["paths"].values() for op in methods.values()}
    assert operations == {
        "proposeAction",
        "proposeActions",
        "listActions",
        "getAction",
        "getArtifact",
        "cancelAction",
        "getStatus",
        "pauseDaemon",
        "killDaemon",
    }
    assert not any(re.search(r"approve|reject|resume|revive|real|proof", path) for path in spec["paths"])
    proposal = spec["components"]["schemas"]["ActionProposal"]
    assert proposal["additionalProperties"] is False and set(proposal["required"]) == {"action_type", "payload"}
    assert any(scheme.get("scheme") == "bearer" for scheme in spec["components"]["securitySchemes"].values())
    assert "approval" in spec["paths"]["/api/v1/actions"]["post"]["description"]
    errors = [
        (path, code, set(answer.get("content", {})))
        for path, methods in spec["paths"].items()
        for op in methods.values()
        for code, answer in op["responses"].items()
        if code[0] in "45"
    ]
    assert errors and all(types == {"application/problem+json"} for _, _, types in errors), errors


def test_docs__page_loads_only_local_files_and_no_external_url():
    response = Client().get("/api/v1/docs")
    assert response.status_code == 200
    html = response.content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(source.startswith("/") for source in sources), sources
    assert not re.search(r"https?://", html), "the docs page names an external URL"
    assert '"validatorUrl": null' in html  # Swagger UI would otherwise send the schema to swagger.io
    for source in sources:
        assert Client().get(source).status_code == 200, source


def test_console__links_the_api_docs_and_schema(viewer):  # noqa: F811
    html = client_for(viewer).get("/console/").content.decode()
    assert 'href="/api/v1/docs"' in html and 'href="/api/v1/openapi.json"' in html
