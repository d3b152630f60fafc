"""Every auth policy, with each kind of bad credential."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from aerelion import local_identity
from aerelion.app import create_app
from aerelion.functions import load_functions
from aerelion.queries import QUERIES, parse
from support import RUNTIME_SECRETS, SERVICE_KEY, TEST_FUNCTIONS, runtime_settings

pytestmark = [pytest.mark.anyio, pytest.mark.security]


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details", "hint"}
    assert body["code"] == code


# -- user ----------------------------------------------------------------------------------


async def test_a_user_token_is_accepted(client, users):
    response = await client.get("/functions/v1/whoami", headers=users["alice"].headers())
    assert response.status_code == 200
    assert response.json()["user_id"] == str(users["alice"].id)


def _unsigned(claims: dict) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@pytest.mark.parametrize(
    ("make_headers", "code"),
    [
        (lambda u: {}, "auth_required"),
        (lambda u: {"authorization": "Basic abc"}, "auth_required"),
        (lambda u: {"authorization": "Bearer"}, "auth_required"),
        (lambda u: bearer("not-a-jwt"), "invalid_jwt"),
        (lambda u: bearer("a.b.c"), "invalid_jwt"),
        (lambda u: bearer(_unsigned(local_identity.user_claims(u.id, u.email))), "invalid_jwt"),
        (
            lambda u: bearer(
                local_identity.sign(local_identity.user_claims(u.id, u.email), "x" * 64)
            ),
            "invalid_jwt",
        ),
        (lambda u: u.headers(exp=int(time.time()) - 120), "invalid_jwt"),
        (lambda u: u.headers(aud="somebody-else"), "invalid_jwt"),
        (lambda u: u.headers(role="anon"), "invalid_jwt"),
        (lambda u: u.headers(sub="not-a-uuid"), "invalid_jwt"),
        (
            lambda u: bearer(
                jwt.encode(
                    local_identity.user_claims(u.id, u.email),
                    RUNTIME_SECRETS["SUPABASE_JWT_SECRET"],
                    algorithm="HS512",
                )
            ),
            "invalid_jwt",
        ),
    ],
    ids=[
        "missing",
        "not-bearer",
        "empty-bearer",
        "malformed",
        "garbage-segments",
        "alg-none",
        "wrong-key",
        "expired",
        "wrong-audience",
        "anon-role",
        "sub-not-uuid",
        "hs512",
    ],
)
async def test_bad_user_tokens_get_401(client, users, make_headers, code):
    response = await client.get("/functions/v1/whoami", headers=make_headers(users["alice"]))
    assert_error(response, 401, code)
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_an_expired_token_says_so(client, users):
    response = await client.get(
        "/functions/v1/whoami", headers=users["alice"].headers(exp=int(time.time()) - 120)
    )
    assert response.json()["message"] == "JWT expired"


async def test_a_service_token_is_not_a_user(client):
    token = local_identity.sign(
        local_identity.service_claims(), RUNTIME_SECRETS["SUPABASE_JWT_SECRET"]
    )
    assert_error(await client.get("/functions/v1/whoami", headers=bearer(token)), 403, "forbidden")


# -- admin ---------------------------------------------------------------------------------


async def test_admin_is_decided_by_the_database(client, users):
    response = await client.get("/functions/v1/admin-report", headers=users["root"].headers())
    assert response.status_code == 200
    assert response.json()["admin"] is True
    refused = await client.get("/functions/v1/admin-report", headers=users["alice"].headers())
    assert_error(refused, 403, "forbidden")
    assert refused.json()["message"] == "Admin access required"
    assert_error(await client.get("/functions/v1/admin-report"), 401, "auth_required")


async def test_a_forged_admin_claim_is_ignored(client, users):
    forged = users["alice"].headers(app_metadata={"role": "admin"}, user_role="admin")
    assert_error(await client.get("/functions/v1/admin-report", headers=forged), 403, "forbidden")


# -- service -------------------------------------------------------------------------------


async def test_service_role_jwt_and_secret_key(client):
    token = local_identity.sign(
        local_identity.service_claims(), RUNTIME_SECRETS["SUPABASE_JWT_SECRET"]
    )
    for headers in (bearer(token), {"apikey": SERVICE_KEY}, bearer(SERVICE_KEY)):
        response = await client.post("/functions/v1/service-task", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json() == {"db_role": "service_role", "role": "service_role"}


async def test_service_endpoints_refuse_users_and_wrong_keys(client, users):
    assert_error(
        await client.post("/functions/v1/service-task", headers=users["root"].headers()),
        403,
        "forbidden",
    )
    assert_error(
        await client.post("/functions/v1/service-task", headers={"apikey": SERVICE_KEY + "x"}),
        401,
        "auth_required",
    )
    assert_error(
        await client.post("/functions/v1/service-task", headers=bearer("sb_secret_wrong")),
        401,
        "invalid_jwt",
    )


# -- shared secrets ------------------------------------------------------------------------


async def test_secret_or_service(client, users):
    ok = await client.post(
        "/functions/v1/cron-task", headers=bearer(RUNTIME_SECRETS["TEST_CRON_SECRET"])
    )
    assert ok.json() == {"kind": "secret"}
    ok = await client.post("/functions/v1/cron-task", headers={"apikey": SERVICE_KEY})
    assert ok.json() == {"kind": "service"}
    assert_error(
        await client.post("/functions/v1/cron-task", headers=bearer("wrong")),
        401,
        "invalid_credentials",
    )
    assert_error(await client.post("/functions/v1/cron-task"), 401, "auth_required")
    # A valid user is known but not allowed here.
    assert_error(
        await client.post("/functions/v1/cron-task", headers=users["alice"].headers()),
        403,
        "forbidden",
    )


async def test_secret_in_a_named_header(client):
    key = RUNTIME_SECRETS["TEST_HOOK_KEY"]
    response = await client.post("/functions/v1/keyed", headers={"x-test-key": key})
    assert response.status_code == 200
    # The secret header never reaches SQL's request.headers.
    assert "x-test-key" not in response.json()["headers"]
    assert_error(
        await client.post("/functions/v1/keyed", headers={"x-test-key": key[:-1]}),
        401,
        "invalid_credentials",
    )
    assert_error(
        await client.post("/functions/v1/keyed", headers=bearer(key)), 401, "auth_required"
    )


async def test_an_unconfigured_secret_accepts_nobody(runtime_database):
    settings = runtime_settings(TEST_HOOK_KEY="")
    app = create_app(
        settings=settings,
        database_url=runtime_database,
        functions=load_functions(TEST_FUNCTIONS, ["keyed"]),
    )
    await app.runtime.database.open()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post("/functions/v1/keyed", headers={"x-test-key": ""})
        assert_error(response, 503, "not_configured")
    finally:
        await app.runtime.database.close()


async def test_signature_policy_leaves_it_to_the_handler(client):
    import hashlib
    import hmac

    body = b'{"event": "x"}'
    signature = hmac.new(
        RUNTIME_SECRETS["TEST_WEBHOOK_SECRET"].encode(), body, hashlib.sha256
    ).hexdigest()
    ok = await client.post(
        "/functions/v1/webhook",
        content=body,
        headers={"x-signature": signature, "content-type": "application/json"},
    )
    assert ok.json() == {"received": len(body)}
    assert_error(
        await client.post("/functions/v1/webhook", content=body, headers={"x-signature": "00"}),
        401,
        "invalid_signature",
    )


# -- JWKS: projects on asymmetric signing keys ---------------------------------------------


class JwksServer:
    """A loopback JWKS endpoint whose keys and health the test controls."""

    def __init__(self) -> None:
        self.document: dict = {"keys": []}
        self.status = 200
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.fetches += 1
                body = json.dumps(server.document).encode()
                self.send_response(server.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/auth/v1/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, *keys: tuple[str, str, object]) -> None:
        entries = []
        for kid, alg, private in keys:
            algorithm = jwt.get_algorithm_by_name(alg)
            entry = algorithm.to_jwk(private.public_key(), as_dict=True)  # type: ignore[attr-defined]
            entries.append({**entry, "kid": kid, "alg": alg, "use": "sig"})
        self.document = {"keys": entries}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


@pytest.fixture
async def jwks_client(runtime_database, jwks):
    app = create_app(
        settings=runtime_settings(SUPABASE_JWKS_URL=jwks.url),
        database_url=runtime_database,
        functions=load_functions(TEST_FUNCTIONS, ["whoami"]),
        queries={**QUERIES, **parse((TEST_FUNCTIONS / "queries.sql").read_text())},
    )
    await app.runtime.database.open()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client
    await app.runtime.database.close()


def signed(user, private, alg: str, kid: str) -> dict[str, str]:
    claims = local_identity.user_claims(user.id, user.email)
    return bearer(jwt.encode(claims, private, algorithm=alg, headers={"kid": kid}))


async def whoami(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.get("/functions/v1/whoami", headers=headers)


async def test_es256_and_rs256_tokens_verify_against_the_jwks(jwks, jwks_client, users):
    es = ec.generate_private_key(ec.SECP256R1())
    rs = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks.publish(("es-1", "ES256", es), ("rs-1", "RS256", rs))
    alice = users["alice"]
    for private, alg, kid in ((es, "ES256", "es-1"), (rs, "RS256", "rs-1")):
        response = await jwks_client.get(
            "/functions/v1/whoami", headers=signed(alice, private, alg, kid)
        )
        assert response.status_code == 200, response.text
        assert response.json()["user_id"] == str(alice.id)
    assert jwks.fetches == 1  # cached
    # HS256 still works beside the JWKS (projects migrating to signing keys).
    assert (
        await jwks_client.get("/functions/v1/whoami", headers=alice.headers())
    ).status_code == 200


async def test_jwks_refuses_unknown_and_wrong_keys_and_picks_up_rotation(jwks, jwks_client, users):
    old = ec.generate_private_key(ec.SECP256R1())
    intruder = ec.generate_private_key(ec.SECP256R1())
    jwks.publish(("old", "ES256", old))
    alice = users["alice"]
    assert (
        await jwks_client.get("/functions/v1/whoami", headers=signed(alice, old, "ES256", "old"))
    ).status_code == 200
    # Signed by a key that claims a published kid: the signature does not verify.
    forged = await jwks_client.get(
        "/functions/v1/whoami", headers=signed(alice, intruder, "ES256", "old")
    )
    assert_error(forged, 401, "invalid_jwt")
    # A new key appears (rotation): an unknown kid triggers one refresh.
    new = ec.generate_private_key(ec.SECP256R1())
    jwks.publish(("old", "ES256", old), ("new", "ES256", new))
    fetches = jwks.fetches
    jwks_client_app = jwks_client._transport.app  # type: ignore[attr-defined]
    jwks_client_app.runtime.verifier._jwks._fetched_at -= 60  # past the refresh interval
    rotated = await jwks_client.get(
        "/functions/v1/whoami", headers=signed(alice, new, "ES256", "new")
    )
    assert rotated.status_code == 200
    assert jwks.fetches == fetches + 1
    # Forged kids cannot make us hammer the endpoint.
    for _ in range(3):
        response = await jwks_client.get(
            "/functions/v1/whoami", headers=signed(alice, intruder, "ES256", "nope")
        )
        assert_error(response, 401, "invalid_jwt")
    assert jwks.fetches == fetches + 1


async def test_an_unreachable_jwks_is_503_not_a_pass(jwks, jwks_client, users):
    key = ec.generate_private_key(ec.SECP256R1())
    jwks.status = 500
    response = await jwks_client.get(
        "/functions/v1/whoami", headers=signed(users["alice"], key, "ES256", "k")
    )
    assert_error(response, 503, "jwks_unavailable")


async def test_verified_tokens_are_cached_only_until_they_expire(users, monkeypatch):
    from aerelion.supabase_jwt import JwtVerifier

    verifier = JwtVerifier(secret=RUNTIME_SECRETS["SUPABASE_JWT_SECRET"], jwks=None)
    calls = []
    real = verifier._verify

    async def counting(token):
        calls.append(token)
        return await real(token)

    monkeypatch.setattr(verifier, "_verify", counting)
    token = users["alice"].token()
    first = await verifier.verify(token)
    first["role"] = "service_role"  # callers get copies: the cache cannot be poisoned
    assert (await verifier.verify(token))["role"] == "authenticated"
    assert len(calls) == 1
    verifier._cache[token]["exp"] = int(time.time()) - 3600
    await verifier.verify(token)
    assert len(calls) == 2
