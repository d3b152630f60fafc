"""The request pipeline: CORS, methods, body limits, JSON and validation, the one error
shape, SQLSTATEs mapped like PostgREST, and answers that never leak internals."""

from __future__ import annotations

import httpx
import pytest

from aerelion.errors import status_for_sqlstate
from support import ALLOWED_ORIGIN

pytestmark = pytest.mark.anyio

GOOD = {"name": "ada", "count": 3, "mode": "SENTINEL"}


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "message", "details", "hint"}
    assert body["code"] == code
    return body


# -- CORS ------------------------------------------------------------------------------


async def test_an_allowed_origin_is_echoed(client):
    response = await client.post(
        "/functions/v1/echo", json=GOOD, headers={"origin": ALLOWED_ORIGIN}
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "Origin" in response.headers["vary"]


async def test_a_foreign_origin_gets_no_cors_headers(client):
    response = await client.post(
        "/functions/v1/echo", json=GOOD, headers={"origin": "https://evil.example.net"}
    )
    assert "access-control-allow-origin" not in response.headers
    refused = await client.get(
        "/functions/v1/whoami", headers={"origin": "https://evil.example.net"}
    )
    assert "access-control-allow-origin" not in refused.headers


async def test_preflight_is_answered_before_auth(client):
    response = await client.options(
        "/functions/v1/keyed",
        headers={
            "origin": ALLOWED_ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "x-test-key, content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert response.headers["access-control-allow-methods"] == "POST, OPTIONS"
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "apikey", "content-type", "x-client-info", "x-test-key"} <= allowed
    assert "*" not in response.headers["access-control-allow-origin"]


async def test_a_foreign_preflight_is_refused(client):
    response = await client.options(
        "/functions/v1/echo",
        headers={"origin": "https://evil.example.net", "access-control-request-method": "POST"},
    )
    assert_error(response, 403, "cors_origin_not_allowed")
    assert "access-control-allow-origin" not in response.headers


async def test_origins_are_matched_exactly(client):
    for origin in ("https://app.example.com.evil.net", "http://app.example.com", "null"):
        response = await client.post("/functions/v1/echo", json=GOOD, headers={"origin": origin})
        assert "access-control-allow-origin" not in response.headers, origin


# -- methods, sizes, JSON ----------------------------------------------------------------


async def test_wrong_method_is_405_with_allow(client):
    response = await client.get("/functions/v1/echo")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST, PUT, OPTIONS"


async def test_plain_options_lists_the_methods(client):
    response = await client.options("/functions/v1/echo")
    assert response.status_code == 204
    assert response.headers["allow"] == "POST, PUT, OPTIONS"


async def test_oversized_bodies_are_413(client):
    big = {**GOOD, "tags": ["x" * 3000]}
    assert_error(await client.post("/functions/v1/echo", json=big), 413, "payload_too_large")

    async def stream():  # no Content-Length: counted while reading
        yield b'{"name": "' + b"y" * 4000 + b'"}'

    response = await client.post(
        "/functions/v1/echo", content=stream(), headers={"content-type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    "raw",
    [b"{", b"not json", b'{"name": "a",}', b"\xff\xfe", b'{"name": NaN}'],
    ids=["truncated", "text", "trailing-comma", "not-utf8", "nan"],
)
async def test_malformed_json_is_400(client, raw):
    response = await client.post(
        "/functions/v1/echo", content=raw, headers={"content-type": "application/json"}
    )
    body = assert_error(response, 400, "invalid_json")
    assert body["message"] == "The request body is not valid JSON"


async def test_a_non_json_body_is_415(client):
    response = await client.post(
        "/functions/v1/echo", content=b"name=ada", headers={"content-type": "text/plain"}
    )
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**GOOD, "count": "3"}, "count"),
        ({**GOOD, "count": 3.5}, "count"),
        ({**GOOD, "count": -1}, "count"),
        ({**GOOD, "mode": "PANIC"}, "mode"),
        ({**GOOD, "extra": "field"}, "extra"),
        ({"count": 1, "mode": "STEALTH"}, "name"),
        ({**GOOD, "name": ""}, "name"),
        ({**GOOD, "tags": ["a"] * 6}, "tags"),
        ([1, 2, 3], "(body)"),
    ],
    ids=[
        "string-for-int",
        "float",
        "negative",
        "unknown-enum",
        "unknown-field",
        "missing",
        "empty",
        "too-many",
        "not-an-object",
    ],
)
async def test_invalid_bodies_name_the_field_and_echo_nothing(client, body, field):
    response = await client.post("/functions/v1/echo", json=body)
    payload = assert_error(response, 400, "invalid_request")
    assert field in [problem["field"] for problem in payload["details"]]
    assert "PANIC" not in response.text and "3.5" not in response.text


async def test_query_parameters_are_validated(client):
    response = await client.post("/functions/v1/echo?verbose=true", json=GOOD)
    assert response.json()["verbose"] is True
    bad = await client.post("/functions/v1/echo?verbose=perhaps", json=GOOD)
    assert_error(bad, 400, "invalid_request")


async def test_an_empty_body_means_an_empty_object(client):
    response = await client.post("/functions/v1/echo")
    body = assert_error(response, 400, "invalid_request")
    assert {p["field"] for p in body["details"]} == {"name", "count", "mode"}


# -- errors and SQLSTATEs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sqlstate", "status"),
    [
        ("P0001", 400),
        ("23505", 409),
        ("23503", 409),
        ("23514", 400),
        ("22P02", 400),
        ("42P01", 404),
        ("PT402", 402),
        ("PT429", 429),
        ("57014", 500),
        ("XX000", 500),
        ("53300", 503),
    ],
)
async def test_sqlstates_map_like_postgrest(client, users, sqlstate, status):
    response = await client.post(
        "/functions/v1/sql-error",
        json={"code": sqlstate, "message": "the database said no"},
        headers=users["alice"].headers(),
    )
    body = assert_error(response, status, sqlstate)
    if status < 500:
        assert body["message"] == "the database said no"
    else:
        assert "the database said no" not in response.text
        assert "the detail" not in response.text


async def test_raised_details_and_hints_reach_the_client(client, users):
    response = await client.post(
        "/functions/v1/sql-error", json={"code": "P0001"}, headers=users["alice"].headers()
    )
    assert response.json() == {
        "code": "P0001",
        "message": "refused",
        "details": "the detail",
        "hint": "the hint",
    }


async def test_integrity_errors_keep_the_offending_values_to_themselves(client, users):
    response = await client.post(
        "/functions/v1/sql-error", json={"code": "23505"}, headers=users["alice"].headers()
    )
    assert response.json()["details"] is None


async def test_insufficient_privilege_is_401_anonymous_and_403_authenticated(client, users):
    anonymous = await client.post("/functions/v1/sql-error", json={"code": "42501"})
    assert_error(anonymous, 401, "42501")
    signed_in = await client.post(
        "/functions/v1/sql-error", json={"code": "42501"}, headers=users["alice"].headers()
    )
    assert_error(signed_in, 403, "42501")


def test_the_sqlstate_table_covers_postgrest_classes():
    assert status_for_sqlstate("08006", authenticated=True) == 503
    assert status_for_sqlstate("25006", authenticated=True) == 405
    assert status_for_sqlstate("0P000", authenticated=True) == 403
    assert status_for_sqlstate("40001", authenticated=True) == 500
    assert status_for_sqlstate("22023", authenticated=True) == 400


async def test_a_crash_is_a_plain_500(client):
    response = await client.post("/functions/v1/crash")
    body = assert_error(response, 500, "internal_error")
    assert body["message"] == "The request could not be completed"
    assert "sk_live" not in response.text
    assert "Traceback" not in response.text and "RuntimeError" not in response.text


async def test_a_reply_chooses_its_status(client):
    response = await client.post("/functions/v1/accepted")
    assert response.status_code == 202
    assert response.json()["status"] == "queued"


async def test_unknown_functions_and_paths_are_404(client):
    assert_error(await client.post("/functions/v1/no-such-thing"), 404, "function_not_found")
    assert_error(await client.get("/nowhere"), 404, "not_found")


async def test_every_answer_has_a_request_id(client):
    for response in (
        await client.post("/functions/v1/echo", json=GOOD),
        await client.post("/functions/v1/echo", json={}),
        await client.get("/functions/v1/whoami"),
    ):
        assert len(response.headers["x-request-id"]) == 32


# -- app endpoints ---------------------------------------------------------------------


async def test_health_checks_the_database(client):
    response = await client.get("/health")
    assert response.json() == {"status": "ok", "database": "ok"}


async def test_openapi_describes_every_function_from_its_models(client, app):
    spec = (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    assert set(spec["paths"]) == {f"/functions/v1/{f.name}" for f in app.functions}
    echo = spec["paths"]["/functions/v1/echo"]
    assert set(echo) == {"post", "put"}
    schema_ref = echo["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
    assert schema["properties"]["mode"]["enum"] == ["STEALTH", "SENTINEL", "WAR_ROOM"]
    assert schema["additionalProperties"] is False
    assert echo["post"]["parameters"][0]["name"] == "verbose"
    keyed = spec["paths"]["/functions/v1/keyed"]["post"]
    assert keyed["security"] == [{"secret_TEST_HOOK_KEY": []}]
    assert spec["components"]["securitySchemes"]["secret_TEST_HOOK_KEY"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-test-key",
    }
    assert spec["paths"]["/functions/v1/whoami"]["get"]["security"] == [{"userJwt": []}]
