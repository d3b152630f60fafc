"""The security core: THS verified and enforced by the database, the credential
endpoints, key rotation, runtime rate limits and the logger's redaction."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from aerelion import deploy, key_rotation, local_identity, ths
from aerelion.app import App, create_app
from aerelion.request_log import redact
from aerelion.tokens import TokenSigner
from aerelion.transactions import Database
from aerelion.vault import Context, Sealed, UnknownKeyVersion, Vault
from support import RUNTIME_SECRETS, act_as, new_user, settings_for

pytestmark = [pytest.mark.anyio, pytest.mark.security]

THS_SECRET = "ths-signing-secret-" + "q" * 40
KEY_1 = base64.b64encode(b"1" * 32).decode()
KEY_2 = base64.b64encode(b"2" * 32).decode()


# -- scoring, as the original scored ------------------------------------------------------


def test_too_few_samples_score_nothing():
    trail = [ths.MousePoint(x=i, y=i, t=i * 10) for i in range(9)]
    keys = [ths.Keystroke(key="A", downAt=i * 100, upAt=i * 100 + 50) for i in range(4)]
    assert (ths.mouse_score(trail), ths.keystroke_score(keys)) == (0, 0)


def test_a_robotic_straight_line_scores_zero_and_is_not_human():
    trail = [ths.MousePoint(x=i * 5, y=0, t=i * 10) for i in range(20)]
    keys = [ths.Keystroke(key="A", downAt=i * 100, upAt=i * 100 + 50) for i in range(10)]
    verdict = ths.score(trail, keys)
    assert (verdict.mouse, verdict.keystroke, verdict.veracity, verdict.human) == (0, 0, 0, False)


def test_keystroke_score_follows_the_formula():
    # gaps 100, 300, 100, 300: population std 100 -> 100/5 = 20;
    # dwells 50, 150, 50, 150, 50: std = sqrt(2400) = 48.99 -> /3 = 16.33; total 36
    downs = [0, 100, 400, 500, 800]
    dwells = [50, 150, 50, 150, 50]
    keys = [
        ths.Keystroke(key="k", downAt=d, upAt=d + w) for d, w in zip(downs, dwells, strict=True)
    ]
    assert ths.keystroke_score(keys) == 36
    assert ths.Verdict(mouse=20, keystroke=36).veracity == round(0.4 * 20 + 0.6 * 36)
    assert ths.Verdict(mouse=0, keystroke=42).human  # 25.2 rounds to 25: the threshold


# -- the end points, on a database of their own -----------------------------------------------


@pytest.fixture
def database(fresh_database) -> str:
    deploy.push(fresh_database, settings_for(), out=lambda _: None)
    return fresh_database


@pytest.fixture
def db(database) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database, autocommit=True, row_factory=dict_row) as conn:
        yield conn


async def make_client(database: str, **environ: str) -> tuple[App, httpx.AsyncClient]:
    settings = settings_for(
        **{
            **RUNTIME_SECRETS,
            "THS_SIGNING_SECRET": THS_SECRET,
            "CREDENTIAL_ENCRYPTION_KEY": KEY_1,
            **environ,
        }
    )
    app = create_app(settings=settings, database_url=database)
    await app.runtime.database.open()
    transport = httpx.ASGITransport(app=app, client=("198.51.100.9", 1234))
    return app, httpx.AsyncClient(transport=transport, base_url="http://t")


@pytest.fixture
async def client(database) -> AsyncIterator[httpx.AsyncClient]:
    app, client = await make_client(database)
    async with client:
        yield client
    await app.runtime.database.close()


def bearer(user_id: uuid.UUID, **extra: str) -> dict[str, str]:
    claims = local_identity.user_claims(user_id, f"{user_id.hex[:8]}@example.com")
    token = local_identity.sign(claims, RUNTIME_SECRETS["SUPABASE_JWT_SECRET"])
    return {"authorization": f"Bearer {token}", **extra}


def human_challenge() -> dict:
    trail = [{"x": (i * 7) % 13 + i, "y": (i * i) % 11, "t": i * 16 + (i % 3)} for i in range(40)]
    downs = [0, 140, 310, 420, 650, 700, 980, 1100, 1390, 1450]
    keys = [{"key": "A", "downAt": d, "upAt": d + 40 + (i % 4) * 35} for i, d in enumerate(downs)]
    return {
        "mouseTrail": trail,
        "keystrokes": keys,
        "commandString": ths.COMMAND,
        "challengeDurationMs": 6500,
    }


async def verified_token(client, user_id) -> str:
    response = await client.post(
        "/functions/v1/verify-human-signature", json=human_challenge(), headers=bearer(user_id)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["verified"] is True and body["message"] == "HUMAN_SIGNATURE_CONFIRMED"
    return body["token"]


async def test_a_passed_challenge_is_recorded_by_the_server(client, db):
    user = new_user(db)
    token = await verified_token(client, user)
    claims = TokenSigner.from_secret(THS_SECRET).verify(
        token, purpose=ths.PURPOSE, audience=ths.AUDIENCE
    )
    assert claims["sub"] == str(user)
    bridge = db.execute(
        "select is_human_verified, verified_until, verification_source"
        " from public.sovereign_bridge where user_id = %s",
        [user],
    ).fetchone()
    assert bridge["is_human_verified"] and bridge["verification_source"] == "THS_BEHAVIORAL_ENTROPY"
    assert timedelta(hours=23) < bridge["verified_until"] - datetime.now(UTC) <= timedelta(hours=24)
    record = db.execute(
        "select jti, purpose from public.human_signatures where user_id = %s", [user]
    ).fetchone()
    assert record == {"jti": claims["jti"], "purpose": "ths"}


async def test_users_cannot_mark_themselves_human(db):
    user = new_user(db)
    for statement in (
        "insert into public.sovereign_bridge (user_id, is_human_verified) values (%s, true)",
        "update public.sovereign_bridge set is_human_verified = true where user_id = %s",
        "insert into public.human_signatures (user_id, jti, purpose, token_hash, veracity_score,"
        " expires_at) values (%s, 'j' || repeat('x', 20), 'ths', sha256('t'), 99, now() + '1 day')",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), db.transaction():
            act_as(db, "authenticated", user)
            db.execute(statement, [user])


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"commandString": "AUTHORIZE"}, 400, "COMMAND_MISMATCH"),
        ({"challengeDurationMs": 500}, 400, "TIMING_ANOMALY"),
        ({"challengeDurationMs": 200000}, 400, "TIMING_ANOMALY"),
    ],
)
async def test_malformed_challenges_are_refused(client, db, change, status, code):
    user = new_user(db)
    response = await client.post(
        "/functions/v1/verify-human-signature",
        json={**human_challenge(), **change},
        headers=bearer(user),
    )
    assert (response.status_code, response.json()["code"]) == (status, code)


async def test_a_missing_signing_secret_fails_closed_before_any_state(database, db):
    user = new_user(db)
    app, client = await make_client(database, THS_SIGNING_SECRET="")
    async with client:
        response = await client.post(
            "/functions/v1/verify-human-signature", json=human_challenge(), headers=bearer(user)
        )
    await app.runtime.database.close()
    assert response.status_code == 503
    assert db.execute("select count(*) as n from public.sovereign_bridge").fetchone() == {"n": 0}


# -- the gate, in SQL and through the runtime ------------------------------------------------


def switch_to_war_room(db, user, token: str | None) -> str:
    with db.transaction():
        act_as(db, "authenticated", user)
        db.execute(
            "select set_config('request.headers', %s, true)",
            [f'{{"x-ths-token": "{token}"}}' if token else "{}"],
        )
        return db.execute(
            "select operational_mode from public.set_operational_mode('WAR_ROOM')"
        ).fetchone()["operational_mode"]


async def test_war_room_needs_the_callers_own_valid_signature(client, db):
    admin, other_admin = new_user(db, admin=True), new_user(db, admin=True)
    token = await verified_token(client, admin)
    foreign = await verified_token(client, other_admin)
    for bad in (None, "not-a-token", foreign, token[:-2] + ("aa" if token[-2:] != "aa" else "bb")):
        with pytest.raises(psycopg.Error) as refused:
            switch_to_war_room(db, admin, bad)
        assert refused.value.sqlstate == "PT403"
    db.execute(  # a record for another purpose does not open this gate
        "update public.human_signatures set purpose = 'download' where user_id = %s", [admin]
    )
    with pytest.raises(psycopg.Error):
        switch_to_war_room(db, admin, token)
    db.execute(
        "update public.human_signatures set purpose = 'ths', expires_at = now() - interval '1 s'"
        " where user_id = %s",
        [admin],
    )
    with pytest.raises(psycopg.Error):  # expired: replay refused
        switch_to_war_room(db, admin, token)
    db.execute(
        "update public.human_signatures set expires_at = now() + interval '1 hour'"
        " where user_id = %s",
        [admin],
    )
    assert switch_to_war_room(db, admin, token) == "WAR_ROOM"


# -- activation credentials -------------------------------------------------------------------


def activation_request(db, owner) -> uuid.UUID:
    return db.execute(
        "insert into public.installation_requests (name, email, user_id)"
        " values ('Client', 'c@example.com', %s) returning id",
        [owner],
    ).fetchone()["id"]


async def test_credentials_are_sealed_readable_only_with_a_signature_and_revocable(client, db):
    owner, stranger, admin = new_user(db), new_user(db), new_user(db, admin=True)
    request = activation_request(db, owner)
    body = {
        "requestId": str(request),
        "credentialType": "api_key",
        "serviceName": "OpenAI",
        "credentials": {"api_key": "sk-canary-0001"},
    }
    denied = await client.post(
        "/functions/v1/store-activation-credentials", json=body, headers=bearer(stranger)
    )
    assert denied.status_code == 404
    stored = await client.post(
        "/functions/v1/store-activation-credentials", json=body, headers=bearer(owner)
    )
    assert stored.status_code == 200, stored.text
    credential_id = stored.json()["credential"]["id"]
    row = db.execute(
        "select * from public.activation_credentials where id = %s", [credential_id]
    ).fetchone()
    assert row["encrypted_data"].startswith("v2:") and "sk-canary" not in str(row)
    assert db.execute(
        "select credentials_count, customer_visible_status from public.installation_requests"
        " where id = %s",
        [request],
    ).fetchone() == {"credentials_count": 1, "customer_visible_status": "in_review"}

    read = {"requestId": str(request)}
    no_signature = await client.post(
        "/functions/v1/read-activation-credentials", json=read, headers=bearer(admin)
    )
    assert (no_signature.status_code, no_signature.json()["code"]) == (
        403,
        "human_signature_required",
    )
    token = await verified_token(client, admin)
    plain = await client.post(
        "/functions/v1/read-activation-credentials",
        json=read,
        headers=bearer(admin, **{"x-ths-token": token}),
    )
    assert plain.status_code == 200, plain.text
    assert plain.headers["cache-control"] == "no-store"
    assert plain.json()["credentials"][0]["credentials"] == {"api_key": "sk-canary-0001"}
    owner_read = await client.post(
        "/functions/v1/read-activation-credentials",
        json=read,
        headers=bearer(owner, **{"x-ths-token": token}),
    )
    assert owner_read.status_code == 403
    audit = db.execute(
        "select details from public.edge_function_logs where details ->> 'action'"
        " = 'read:activation_credentials'"
    ).fetchall()
    assert len(audit) == 1 and "sk-canary" not in str(audit)
    assert audit[0]["details"]["actor"] == str(admin)

    revoked = await client.post(
        "/functions/v1/revoke-activation-credentials",
        json={"credentialId": credential_id},
        headers=bearer(owner),
    )
    assert revoked.status_code == 200
    again = await client.post(
        "/functions/v1/revoke-activation-credentials",
        json={"credentialId": credential_id},
        headers=bearer(owner),
    )
    assert again.status_code == 409
    row = db.execute(
        "select status, encrypted_data from public.activation_credentials where id = %s",
        [credential_id],
    ).fetchone()
    assert row == {"status": "revoked", "encrypted_data": ""}


# -- Connect-Once ------------------------------------------------------------------------------


async def test_connecting_everything_an_activation_needs_queues_it(client, db):
    owner = new_user(db)
    agent = db.execute(
        "insert into public.automation_agents (slug, name, status, required_integrations)"
        ' values (%s, \'A\', \'published\', \'[{"provider": "openai"}, {"provider": "telegram"}]\')'
        " returning id",
        [f"a-{uuid.uuid4().hex[:6]}"],
    ).fetchone()["id"]
    request = db.execute(
        "insert into public.installation_requests (name, email, user_id, automation_id)"
        " values ('C', 'c@example.com', %s, %s) returning id",
        [owner, agent],
    ).fetchone()["id"]

    async def call(body):
        response = await client.post(
            "/functions/v1/connect-integration", json=body, headers=bearer(owner)
        )
        assert response.status_code == 200, response.text
        return response.json()

    ready = await call({"action": "check_ready", "activationRequestId": str(request)})
    assert (ready["all_connected"], ready["missing"]) == (False, ["openai", "telegram"])
    first = await call(
        {
            "action": "connect",
            "provider": "openai",
            "credentials": {"api_key": "sk-x"},
            "activationRequestId": str(request),
        }
    )
    assert first["autoActivated"] is False
    second = await call(
        {
            "action": "connect",
            "provider": "telegram",
            "credentials": {"token": "123:abc"},
            "activationRequestId": str(request),
        }
    )
    assert second["autoActivated"] is True
    job = db.execute(
        "select action, status from public.provisioning_queue where id = %s",
        [second["activationJobId"]],
    ).fetchone()
    assert job == {"action": "activate_workflows", "status": "queued"}
    status = await call({"action": "status"})
    assert [c["provider"] for c in status["connections"]] == ["openai", "telegram"]
    assert "encrypted_payload" not in str(status)
    assert (await call({"action": "revoke", "provider": "openai"}))["revoked"] == 1


# -- key rotation ------------------------------------------------------------------------------


def seal_rows(db, vault: Vault, n: int, *, legacy_every: int = 0) -> list[uuid.UUID]:
    """n integration credentials of one user, sealed with `vault` (some in the original,
    unbound layout)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    user = new_user(db)
    rows = []
    for index in range(n):
        row_id = uuid.uuid4()
        if legacy_every and index % legacy_every == 0:
            iv = os.urandom(12)
            out = AESGCM(base64.b64decode(KEY_1)).encrypt(iv, b'{"k": "legacy"}', None)
            sealed = Sealed(
                base64.b64encode(out[:-16]).decode(),
                base64.b64encode(iv).decode(),
                base64.b64encode(out[-16:]).decode(),
                1,
            )
        else:
            sealed = vault.seal(
                b'{"k": "v"}', Context("integration_connections", "encrypted_payload", str(row_id))
            )
        rows.append(
            (
                row_id,
                user,
                f"p{index}",
                "connected",
                sealed.ciphertext,
                sealed.iv,
                sealed.tag,
                sealed.key_version,
            )
        )
    with (
        db.cursor() as cursor,
        cursor.copy(
            "copy public.integration_connections (id, user_id, provider, status, encrypted_payload,"
            " encryption_iv, encryption_tag, key_version) from stdin"
        ) as copy,
    ):
        for row in rows:
            copy.write_row(row)
    return [row[0] for row in rows]


class Crash(Exception):
    pass


async def test_rotation_of_ten_thousand_rows_survives_a_crash(database, db):
    old = Vault.from_environ({"CREDENTIAL_ENCRYPTION_KEY": KEY_1})
    ids = seal_rows(db, old, 10_000, legacy_every=50)
    db.execute(  # a value on a key nobody has, and a tampered one: reported, kept
        "update public.integration_connections set key_version = 9 where id = %s", [ids[1]]
    )
    tampered = db.execute(
        "select encrypted_payload from public.integration_connections where id = %s", [ids[2]]
    ).fetchone()["encrypted_payload"]
    flipped = tampered[:-2] + ("A" if tampered[-2] != "A" else "B") + tampered[-1]
    db.execute(
        "update public.integration_connections set encrypted_payload = %s where id = %s",
        [flipped, ids[2]],
    )
    both = Vault.from_environ({"CREDENTIAL_ENCRYPTION_KEYS": f"1:{KEY_1},2:{KEY_2}"})
    database_pool = Database(database, pool_size=2, transaction_pooler=False)
    await database_pool.open()
    batches = 0

    def transaction():
        nonlocal batches
        batches += 1
        if batches == 8:
            raise Crash  # the process dies between two batches
        return database_pool.acting_as("service_role", {"role": "service_role"})

    try:
        with pytest.raises(Crash):
            await key_rotation.rotate(transaction, both, dry_run=False, batch_size=1000)
        counts = await key_rotation.rotate(
            lambda: database_pool.acting_as("service_role", {"role": "service_role"}),
            both,
            dry_run=True,
        )
        versions = {
            (c["key_version"], c["scheme"]): c["n"]
            for c in counts.columns["integration_connections"].counts
        }
        assert versions[(2, "v2")] > 0 and versions.get((1, "v1"), 0) > 0  # half done
        report = await key_rotation.rotate(
            lambda: database_pool.acting_as("service_role", {"role": "service_role"}),
            both,
            dry_run=False,
            batch_size=1000,
        )
    finally:
        await database_pool.close()
    column = report.columns["integration_connections"]
    assert (column.unknown_version, column.unreadable) == (1, 1)
    assert set(column.problem_ids) == {str(ids[1]), str(ids[2])}

    rows = db.execute(
        "select id, encrypted_payload, encryption_iv, encryption_tag, key_version"
        " from public.integration_connections where user_id = ("
        "  select user_id from public.integration_connections where id = %s)",
        [ids[0]],
    ).fetchall()
    only_new = Vault.from_environ({"CREDENTIAL_ENCRYPTION_KEYS": f"2:{KEY_2}"})
    readable = 0
    for row in rows:
        if row["id"] in (ids[1], ids[2]):
            continue
        sealed = Sealed(
            row["encrypted_payload"],
            row["encryption_iv"],
            row["encryption_tag"],
            row["key_version"],
        )
        context = Context("integration_connections", "encrypted_payload", str(row["id"]))
        assert sealed.scheme == "v2" and sealed.key_version == 2
        only_new.open(sealed, context)
        readable += 1
        with pytest.raises(UnknownKeyVersion):
            old.open(sealed, context)
    assert readable == 9_998
    audit = db.execute(
        "select details from public.edge_function_logs where details ->> 'action'"
        " = 'rotate:credentials' order by seq desc limit 1"
    ).fetchone()["details"]
    assert audit["unknown_version"] == 1 and "v2:" not in str(audit)


def test_a_value_changed_during_rotation_is_not_overwritten(db):
    old = Vault.from_environ({"CREDENTIAL_ENCRYPTION_KEY": KEY_1})
    both = Vault.from_environ({"CREDENTIAL_ENCRYPTION_KEYS": f"1:{KEY_1},2:{KEY_2}"})
    kept, changed = seal_rows(db, old, 2)
    with db.transaction():
        act_as(db, "service_role")
        batch = db.execute(
            "select * from public.encrypted_values_to_rotate('integration_connections', 2, null, 9)"
        ).fetchall()
    db.execute(  # the user reconnects one integration while the batch is re-sealed
        "update public.integration_connections set encrypted_payload = 'v2:bmV3' where id = %s",
        [changed],
    )
    values = []
    for row in batch:
        context = Context("integration_connections", "encrypted_payload", str(row["id"]))
        sealed = both.reseal(Sealed(row["ciphertext"], row["iv"], row["tag"], 1), context)
        values.append(
            {"id": str(row["id"]), "previous_ciphertext": row["ciphertext"], **vars(sealed)}
        )
    with db.transaction():
        act_as(db, "service_role")
        stored = db.execute(
            "select public.store_rotated_values('integration_connections', %s) as id",
            [Jsonb(values)],
        ).fetchall()
    assert [row["id"] for row in stored] == [kept]
    assert db.execute(
        "select encrypted_payload from public.integration_connections where id = %s", [changed]
    ).fetchone() == {"encrypted_payload": "v2:bmV3"}


async def test_rotating_through_http_needs_a_signature(client, db):
    admin = new_user(db, admin=True)
    refused = await client.post(
        "/functions/v1/rotate-encryption-key", json={"dry_run": True}, headers=bearer(admin)
    )
    assert refused.status_code == 403
    token = await verified_token(client, admin)
    counted = await client.post(
        "/functions/v1/rotate-encryption-key",
        json={"dry_run": True},
        headers=bearer(admin, **{"x-ths-token": token}),
    )
    assert counted.status_code == 200, counted.text
    assert set(counted.json()["columns"]) == {
        "activation_credentials",
        "integration_connections",
        "vps_n8n",
        "vps_ssh",
    }


# -- abuse controls ----------------------------------------------------------------------------


async def test_every_endpoint_is_rate_limited_per_caller(client, db):
    user, other = new_user(db), new_user(db)
    statuses = []
    for _ in range(11):
        response = await client.post(
            "/functions/v1/verify-human-signature",
            json={**human_challenge(), "commandString": "nope"},
            headers=bearer(user),
        )
        statuses.append(response.status_code)
    assert statuses == [400] * 10 + [429]
    assert int(response.headers["retry-after"]) > 0
    fresh = await client.post(
        "/functions/v1/verify-human-signature",
        json={**human_challenge(), "commandString": "nope"},
        headers=bearer(other),
    )
    assert fresh.status_code == 400  # counted per caller


def test_the_logger_redacts_credentials_and_personal_data():
    jwt = local_identity.sign(local_identity.user_claims(uuid.uuid4(), "a@b.co"), "x" * 40)
    text = f"user ada@example.com sent {jwt} and sb_secret_abc123 and whsec_zz -----BEGIN KEY-----"
    cleaned = redact({"message": text, "nested": [text]})
    for secret in ("ada@example.com", jwt, "sb_secret_abc123", "whsec_zz", "BEGIN KEY"):
        assert secret not in str(cleaned)
