"""The OpenAPI document tells the truth: it describes every route (and only those), and schemathesis
finds no 5xx and no answer outside the document when it runs generated requests against the live app
(real Postgres and Redis)."""

from __future__ import annotations

import re

import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from searchjobs import clients
from searchjobs.web import schemas
from searchjobs.web.error_codes import ERROR_CODES
from searchjobs.web.openapi import DOCUMENT, UNDOCUMENTED_ENDPOINTS
from searchjobs.web.schemas import CURSOR_PATTERN, FEED_CURSOR_PATTERN
from tests.conftest import demo_image_bytes

IGNORED_METHODS = {"HEAD", "OPTIONS"}  # Flask answers these for every route by itself
MAX_EXAMPLES = 20  # per operation and mode: the ~30 runs stay well under a minute


def routes(app) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in UNDOCUMENTED_ENDPOINTS:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        found |= {(path, method.lower()) for method in rule.methods - IGNORED_METHODS}
    return found


def documented() -> set[tuple[str, str]]:
    return {(path, method) for path, item in DOCUMENT["paths"].items() for method in item if method != "parameters"}


def test_every_route_is_documented_and_nothing_else(app):
    in_app, in_doc = routes(app), documented()
    assert in_app - in_doc == set(), "routes missing from searchjobs/web/openapi.py"
    assert in_doc - in_app == set(), "documented operations that do not exist"


def test_openapi_json_is_served_and_valid(client):
    import jsonschema_rs  # schemathesis's JSON Schema engine

    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert body["openapi"].startswith("3.1")
    assert body["components"]["securitySchemes"]["apiKey"] == {
        "type": "http", "scheme": "bearer", "description": body["components"]["securitySchemes"]["apiKey"]["description"]}
    assert {} in body["security"], "the API key is optional"
    for schema in body["components"]["schemas"].values():
        jsonschema_rs.meta.validate(schema)  # each is a valid JSON Schema (2020-12, OpenAPI 3.1's dialect)
    assert body["components"]["schemas"]["Error"]["properties"]["error"] == {"$ref": "#/components/schemas/ErrorDetail"}
    assert set(body["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"]) == set(ERROR_CODES)
    assert set(body["components"]["schemas"]) == set(schemas.component_schemas()), "components are the models"
    # as strict as the server: the catalog's names are the only categories, cursors have their exact shape
    categories = client.get("/api/categories").get_json()["categories"]
    for model in ("SubmitJson", "SubmitMultipart"):
        items = body["components"]["schemas"][model]["properties"]["categories"]["items"]
        assert set(items["enum"]) == {c["category"] for c in categories}
    submit = body["paths"]["/api/search-jobs"]["post"]
    assert set(submit["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert submit["responses"]["202"]["headers"]["Location"]["required"] is True
    assert "text/event-stream" in body["paths"]["/api/search-jobs/{job_id}/events"]["get"]["responses"]["200"][
        "content"]


def test_links_lead_from_a_submit_to_every_operation_on_the_job():
    operations = {operation["operationId"]: (path, operation) for path, item in DOCUMENT["paths"].items()
                  for method, operation in item.items() if method != "parameters"}
    links = DOCUMENT["paths"]["/api/search-jobs"]["post"]["responses"]["202"]["links"]
    assert {"getJob", "jobEvents", "cancelJob", "retryJob", "deleteJob", "getResults", "resultEvents",
            "resultPage"} <= set(links)
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for response in operation["responses"].values():
                for link in response.get("links", {}).values():
                    target_path, _ = operations[link["operationId"]]  # a link names a real operation
                    for name in link["parameters"]:
                        assert "{" + name + "}" in target_path or name in ("since", "cursor"), (path, link)


@pytest.mark.parametrize(("name", "pattern", "valid"), [
    ("cursor", CURSOR_PATTERN, [1, 42, 10**17]),
    ("since", FEED_CURSOR_PATTERN, [1, (0, 0), (123456, 789), (2**62, 2**62)]),
])
def test_cursor_patterns_match_the_cursors_the_api_gives_out(name, pattern, valid):
    from searchjobs.web.api import _encode_cursor, _encode_feed_cursor

    encode = _encode_cursor if name == "cursor" else _encode_feed_cursor
    for position in valid:
        assert re.fullmatch(pattern, encode(position)), position
    assert not re.fullmatch(pattern, "not-a-cursor") and re.fullmatch(pattern, ""), "empty: from the start"


def test_docs_page_is_self_contained(client):
    response = client.get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self';" in policy, "scripts from this origin only"
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts and all(re.search(r'src="/(static|docs/assets)/', tag) for tag in scripts), \
        "no inline or third-party script"
    assert "http://" not in html and "https://" not in html, "nothing from a CDN"
    assets = re.findall(r'(?:src|href)="(/(?:static|docs/assets)/[^"]+)"', html)
    assert "/docs/assets/swagger-ui-bundle.js" in assets and "/docs/assets/swagger-ui.css" in assets
    for asset in assets:
        with client.get(asset) as served:
            assert served.status_code == 200, asset
    assert client.get("/docs/assets/index.html").status_code == 404, "only the files the page loads"


# -- schemathesis against the live app ------------------------------------------------------------
# One test per operation and generation mode (valid and invalid requests). Each builds the schema from the
# live app's /openapi.json and runs hypothesis on schemathesis's strategy for that operation. (Not
# schemathesis.pytest.from_fixture: its lazy fixtures do not work with the pytest this project uses.)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def _parameter(ref_or_parameter: dict) -> dict:
    if "$ref" in ref_or_parameter:
        return DOCUMENT["components"]["parameters"][ref_or_parameter["$ref"].rsplit("/", 1)[1]]
    return ref_or_parameter


def negatable(path: str, method: str) -> bool:
    """Whether a request can break this operation's document at all (any string fits a bare string)."""
    item = DOCUMENT["paths"][path]
    operation = item[method]
    for parameter in map(_parameter, item.get("parameters", []) + operation.get("parameters", [])):
        if parameter["schema"] != {"type": "string"}:
            return True
    content = operation.get("requestBody", {}).get("content", {})
    return "application/json" in content or "multipart/form-data" in content


OPERATIONS = sorted(documented())
CASES = [(path, method, GenerationMode.POSITIVE) for path, method in OPERATIONS] + [
    (path, method, GenerationMode.NEGATIVE) for path, method in OPERATIONS if negatable(path, method)]


def live_schema(app):
    app.config["SEARCHJOBS_STREAM_MAX_SECONDS"] = 1.0  # a stream that does open must not hold the test
    app.config["SEARCHJOBS_SSE_HEARTBEAT"] = 0.5
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


def bearer(runtime, *, admin: bool = False) -> dict:
    with runtime.engine.begin() as conn:
        return {"Authorization": f"Bearer {clients.create(conn, 'schemathesis', is_admin=admin)[1]}"}


@pytest.mark.parametrize(("path", "method", "mode"), CASES, ids=[f"{m.upper()} {p} {g}" for p, m, g in CASES])
def test_api_conforms_to_its_document(app, runtime, path, method, mode):
    operation = live_schema(app)[path][method.upper()]
    auth = bearer(runtime)

    @given(case=operation.as_strategy(generation_mode=mode), keyed=st.booleans())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def check(case, keyed):
        case.call_and_validate(headers=auth if keyed else None, checks=CHECKS)

    check()


def test_success_answers_conform_to_the_document(app, runtime, run_jobs):
    """Generated ids never hit a real job; these calls do, so every 2xx answer is checked too."""
    schema = live_schema(app)
    owner, admin = bearer(runtime), bearer(runtime, admin=True)

    def call(path, method, headers=None, **case):
        return schema[path][method].Case(headers=headers or {}, **case).call_and_validate(checks=CHECKS)

    submitted = call("/api/search-jobs", "POST", owner, media_type="multipart/form-data",
                     body={"categories": ["dress", "shoes"], "image": demo_image_bytes(0, "dress"),
                           "phone_number": "+33612345678"})
    assert submitted.status_code == 202
    job_id = submitted.json()["job_id"]
    token = submitted.json()["result_url"].rsplit("/r/", 1)[1]
    by_json = call("/api/search-jobs", "POST", {**owner, "Idempotency-Key": "contract-1"},
                   media_type="application/json", body={"categories": ["bag"], "image_url": "https://x.example/a.png"})
    replay = call("/api/search-jobs", "POST", {**owner, "Idempotency-Key": "contract-1"},
                  media_type="application/json", body={"categories": ["bag"], "image_url": "https://x.example/a.png"})
    assert replay.headers["idempotent-replayed"] == ["true"] and replay.json()["job_id"] == by_json.json()["job_id"]
    assert call("/api/search-jobs/{job_id}/cancel", "POST", owner,
                path_parameters={"job_id": by_json.json()["job_id"]}).status_code == 200

    job = {"job_id": job_id}
    assert call("/api/search-jobs/{job_id}", "GET", owner, path_parameters=job).status_code == 200
    run_jobs()
    done = call("/api/search-jobs/{job_id}", "GET", owner, path_parameters=job)
    assert done.json()["status"] == "completed" and done.json()["results"]["categories"]["dress"]
    assert call("/api/search-jobs", "GET", admin, query={"limit": 1}).json()["next_cursor"]
    assert call("/api/changes", "GET", owner, query={"limit": 3}).json()["has_more"] is True
    assert call("/api/results/{token}", "GET", path_parameters={"token": token}).status_code == 200
    assert call("/api/search-jobs/{job_id}/events", "GET", owner, path_parameters=job).status_code == 200
    assert call("/api/results/{token}/events", "GET", path_parameters={"token": token}).status_code == 200
    assert call("/api/categories", "GET").status_code == 200
    assert call("/r/{token}", "GET", path_parameters={"token": token}).status_code == 200
    image = done.json()["results"]["categories"]["dress"][0]
    assert call("/catalog/images/{sku}", "GET", path_parameters={"sku": image["sku"]}).status_code == 200
    public_id = runtime.engine.connect().execute(sa.text("SELECT public_id FROM images")).scalar()
    assert call("/images/{public_id}", "GET", path_parameters={"public_id": public_id}).status_code == 200
    assert call("/api/search-jobs/{job_id}/retry", "POST", owner, path_parameters=job).status_code == 409
    assert call("/api/search-jobs/{job_id}/cancel", "POST", owner, path_parameters=job).status_code == 409
    assert call("/api/search-jobs/{job_id}", "DELETE", owner, path_parameters=job).status_code == 204
    assert call("/api/search-jobs/{job_id}", "GET", owner, path_parameters=job).status_code == 404
