"""The business rules of the database core: operational modes, entitlements, the rate
limiter, the admin audit trail, the registry, retention and what deleting a user does."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from support import act_as, new_user, present_human_signature


@pytest.fixture
def db(migrated_database) -> Iterator[psycopg.Connection]:
    """A superuser connection; each test works in its own rolled-back transaction."""
    with psycopg.connect(migrated_database, row_factory=dict_row) as conn:
        yield conn
        conn.rollback()


def audit_rows(conn: psycopg.Connection, since: int, function_name: str = "audit") -> list:
    """Log rows of `function_name` written after `mark()`, in the order written."""
    return conn.execute(
        "select * from public.edge_function_logs where function_name = %s and seq > %s"
        " order by seq",
        [function_name, since],
    ).fetchall()


def mark(conn: psycopg.Connection) -> int:
    """A position in the log (its sequence numbers grow as rows are written)."""
    return conn.execute(
        "select coalesce(max(seq), 0) as seq from public.edge_function_logs"
    ).fetchone()["seq"]


def as_role(conn: psycopg.Connection, role: str, user_id: uuid.UUID | None = None):
    """A savepoint acting as `role`; leaving it returns to the superuser."""

    class Acting:
        def __enter__(self) -> psycopg.Connection:
            conn.execute("savepoint acting")
            act_as(conn, role, user_id)
            return conn

        def __exit__(self, kind, value, traceback) -> None:
            if kind is None:
                conn.execute("release savepoint acting")
            else:
                conn.execute("rollback to savepoint acting")
            conn.execute("reset role")
            conn.execute("select set_config('request.jwt.claims', '', true)")

    return Acting()


# -- operational modes ------------------------------------------------------------------


def test_each_mode_transition_is_audited_in_the_original_format(db):
    admin = new_user(db, admin=True)
    present_human_signature(db, admin)  # WAR_ROOM needs one
    started = mark(db)
    for mode in ("SENTINEL", "WAR_ROOM", "STEALTH"):
        with as_role(db, "authenticated", admin):
            row = db.execute("select * from public.set_operational_mode(%s)", [mode]).fetchone()
        assert (row["operational_mode"], row["updated_by"]) == (mode, admin)
    rows = audit_rows(db, started, "nexus_config_trigger")
    assert [r["message"] for r in rows] == [
        "OPERATIONAL_MODE_TRANSITION: STEALTH → SENTINEL",
        "OPERATIONAL_MODE_TRANSITION: SENTINEL → WAR_ROOM",
        "OPERATIONAL_MODE_TRANSITION: WAR_ROOM → STEALTH",
    ]
    assert [r["level"] for r in rows] == ["info", "error", "info"]
    details = rows[1]["details"]
    assert set(details) == {"previous_mode", "new_mode", "changed_by", "changed_at"}
    assert (details["previous_mode"], details["new_mode"], details["changed_by"]) == (
        "SENTINEL",
        "WAR_ROOM",
        str(admin),
    )
    assert rows[1]["user_id"] == admin


def test_setting_the_current_mode_changes_nothing(db):
    admin = new_user(db, admin=True)
    started = mark(db)
    with as_role(db, "authenticated", admin):
        db.execute("select public.set_operational_mode('STEALTH')")
    assert audit_rows(db, started, "nexus_config_trigger") == []


def test_only_admins_change_the_mode_and_nobody_writes_the_row(db):
    user, admin = new_user(db), new_user(db, admin=True)
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(db, "authenticated", user):
        db.execute("select public.set_operational_mode('WAR_ROOM')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(db, "anon"):
        db.execute("select public.set_operational_mode('WAR_ROOM')")
    # A forged `updated_by` has nowhere to go: the row is not writable, the function
    # takes the actor from the JWT.
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(db, "authenticated", admin):
        db.execute(
            "update public.nexus_config set operational_mode = 'WAR_ROOM', updated_by = %s",
            [user],
        )
    with pytest.raises(psycopg.errors.InvalidParameterValue), as_role(db, "authenticated", admin):
        db.execute("select public.set_operational_mode('PANIC')")
    assert db.execute("select operational_mode from public.nexus_config").fetchone() == {
        "operational_mode": "STEALTH"
    }


# -- entitlements -------------------------------------------------------------------------


@pytest.fixture
def catalog(db):
    def agent(status: str = "published") -> uuid.UUID:
        return db.execute(
            "insert into public.automation_agents (slug, name, status, price_cents)"
            " values (%s, 'A', %s, 4900) returning id",
            [f"a-{uuid.uuid4().hex[:8]}", status],
        ).fetchone()["id"]

    a1, a2, draft = agent(), agent(), agent("draft")
    bundle = db.execute(
        "insert into public.automation_bundles (slug, name, status, included_agent_ids)"
        " values (%s, 'B', 'published', %s) returning id",
        [f"b-{uuid.uuid4().hex[:8]}", [a2]],
    ).fetchone()["id"]
    return {"a1": a1, "a2": a2, "draft": draft, "bundle": bundle}


def buy(db, user, item_type, item_id=None, *, tier=None, status="completed"):
    db.execute(
        "insert into public.purchases (email, item_type, item_id, tier, amount_cents, status,"
        " user_id) values ('x@example.com', %s, %s, %s, 100, %s, %s)",
        [item_type, item_id, tier, status, user],
    )


def subscribe(db, user, tier, *, status="active", ends=None):
    db.execute(
        "insert into public.client_billing (user_id, current_price_id, status, subscription_end)"
        " values (%s, (select value from public.system_registry"
        "              where namespace = 'stripe' and key = 'price_' || %s), %s, %s)",
        [user, tier, status, ends],
    )


def entitled(db, user, item_type, item_id, *, as_caller: bool = False) -> bool:
    """has_entitlement(), asked by the service role unless the test already acts as someone."""
    query = "select public.has_entitlement(%s, %s, %s) as ok"
    if as_caller:
        return db.execute(query, [user, item_type, item_id]).fetchone()["ok"]
    with as_role(db, "service_role"):
        return db.execute(query, [user, item_type, item_id]).fetchone()["ok"]


def limits(db, user, *, as_caller: bool = False) -> tuple:
    query = "select * from public.entitlement_limits(%s)"
    if as_caller:
        row = db.execute(query, [user]).fetchone()
    else:
        with as_role(db, "service_role"):
            row = db.execute(query, [user]).fetchone()
    return (row["tier"], row["max_live_activations"], row["max_vps"])


def test_without_a_tier_only_purchases_entitle(db, catalog):
    user = new_user(db)
    assert limits(db, user) == ("none", 0, 0)
    assert not entitled(db, user, "agent", catalog["a1"])
    buy(db, user, "agent", catalog["a1"], status="pending")
    assert not entitled(db, user, "agent", catalog["a1"])
    buy(db, user, "agent", catalog["a1"])
    assert entitled(db, user, "agent", catalog["a1"])
    assert not entitled(db, user, "agent", catalog["a2"])
    buy(db, user, "bundle", catalog["bundle"])
    assert entitled(db, user, "agent", catalog["a2"])  # inside the bundle, for good
    assert entitled(db, user, "bundle", catalog["bundle"])


def test_the_pulse_allows_one_activation_of_items_bought_one_by_one(db, catalog):
    user = new_user(db)
    subscribe(db, user, "pulse")
    assert limits(db, user) == ("pulse", 1, 0)
    assert not entitled(db, user, "agent", catalog["a1"])


def test_the_operator_includes_every_published_automation_while_active(db, catalog):
    user = new_user(db)
    subscribe(db, user, "operator", ends=datetime.now(UTC) + timedelta(days=20))
    assert limits(db, user) == ("operator", 10, 1)
    assert entitled(db, user, "agent", catalog["a1"])
    assert entitled(db, user, "bundle", catalog["bundle"])
    assert not entitled(db, user, "agent", catalog["draft"])


@pytest.mark.parametrize(
    ("status", "ends"),
    [("canceled", None), ("past_due", None), ("active", datetime(2020, 1, 1, tzinfo=UTC))],
)
def test_a_lapsed_subscription_gives_nothing(db, catalog, status, ends):
    user = new_user(db)
    subscribe(db, user, "operator", status=status, ends=ends)
    assert limits(db, user) == ("none", 0, 0)
    assert not entitled(db, user, "agent", catalog["a1"])


def test_the_ghost_is_unlimited_and_never_expires(db, catalog):
    user = new_user(db)
    buy(db, user, "tier", tier="ghost")
    subscribe(db, user, "pulse")  # a weaker tier held too
    assert limits(db, user) == ("ghost", None, 3)
    assert entitled(db, user, "agent", catalog["a2"])
    assert not entitled(db, user, "agent", catalog["draft"])


def test_admins_are_always_entitled(db, catalog):
    admin = new_user(db, admin=True)
    assert entitled(db, admin, "agent", catalog["draft"])
    assert limits(db, admin) == ("admin", None, None)


def test_users_may_only_ask_about_themselves(db, catalog):
    alice, bob, admin = new_user(db), new_user(db), new_user(db, admin=True)
    with as_role(db, "authenticated", alice):
        assert not entitled(db, alice, "agent", catalog["a1"], as_caller=True)
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(db, "authenticated", alice):
        entitled(db, bob, "agent", catalog["a1"], as_caller=True)
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(db, "authenticated", alice):
        limits(db, bob, as_caller=True)
    with as_role(db, "authenticated", admin):
        assert limits(db, bob, as_caller=True) == ("none", 0, 0)
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.transaction():
        limits(db, bob, as_caller=True)  # no caller at all: refused too
    with pytest.raises(psycopg.errors.InvalidParameterValue), db.transaction():
        entitled(db, bob, "tier", catalog["a1"])


# -- rate limiting --------------------------------------------------------------------------


def hit(db, key, max_, window=60) -> bool:
    return db.execute(
        "select public.check_rate_limit(%s, %s, %s) as ok", [key, max_, window]
    ).fetchone()["ok"]


def test_a_counter_per_caller_and_window(db):
    alice, bob = new_user(db), new_user(db)
    key = f"metrics:{uuid.uuid4().hex[:6]}"
    with as_role(db, "authenticated", alice):
        assert [hit(db, key, 3) for _ in range(4)] == [True, True, True, False]
    # Bob is counted as himself: Alice's exhausted budget does not touch his.
    with as_role(db, "authenticated", bob):
        assert hit(db, key, 3)
    with as_role(db, "service_role"):
        assert hit(db, key, 3)


def test_limits_refuse_with_429_and_when_to_retry(db):
    user = new_user(db)
    key = f"reboot:{uuid.uuid4().hex[:6]}"
    with as_role(db, "authenticated", user):
        db.execute("select public.enforce_rate_limit(%s, 1, 3600)", [key])
    with pytest.raises(psycopg.Error) as refused, as_role(db, "authenticated", user):
        db.execute("select public.enforce_rate_limit(%s, 1, 3600)", [key])
    assert refused.value.sqlstate == "PT429"
    assert refused.value.diag.message_hint.startswith("retry_after_seconds=")


@pytest.mark.parametrize(
    ("key", "max_", "window"),
    [
        ("", 1, 60),
        ("x" * 201, 1, 60),
        ("bad key", 1, 60),
        ("k", 0, 60),
        ("k", 1, 0),
        ("k", 1, 86401),
        (None, 1, 60),
    ],
)
def test_bad_arguments_fail_closed(db, key, max_, window):
    user = new_user(db)
    with pytest.raises(psycopg.errors.InvalidParameterValue), as_role(db, "authenticated", user):
        hit(db, key, max_, window)


def test_anonymous_callers_are_not_counted_they_are_refused(db):
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(db, "anon"):
        hit(db, "k", 1)


def test_concurrent_callers_never_share_the_last_slot(migrated_database):
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        user = new_user(conn)
    key = f"burst:{uuid.uuid4().hex[:6]}"
    results: list[bool] = []
    barrier = threading.Barrier(16)

    def call() -> None:
        with psycopg.connect(migrated_database) as conn:
            act_as(conn, "authenticated", user)
            barrier.wait()
            ok = conn.execute("select public.check_rate_limit(%s, 10, 3600)", [key]).fetchone()[0]
            conn.commit()
            results.append(ok)

    threads = [threading.Thread(target=call) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 6 + [True] * 10


# -- the admin audit trail, the registry ------------------------------------------------------


def test_admin_changes_are_audited_without_values(db):
    admin = new_user(db, admin=True)
    started = mark(db)
    with as_role(db, "authenticated", admin):
        db.execute("select public.registry_set('app', 'support_email', 'ops@example.com')")
        db.execute(
            "insert into public.n8n_instances (instance_url, label)"
            " values ('https://n8n-test.example.com', 'N1')"
        )
        db.execute(
            "update public.n8n_instances set status = 'maintenance', max_capacity = 5"
            " where instance_url = 'https://n8n-test.example.com'"
        )
    with as_role(db, "service_role"):
        db.execute(
            "select public.registry_set('hostinger', 'api_token', 'sekr1t-value', null, true)"
        )
    rows = audit_rows(db, started)
    summary = [(r["details"]["table"], r["details"]["operation"]) for r in rows]
    assert summary == [
        ("system_registry", "INSERT"),
        ("n8n_instances", "INSERT"),
        ("n8n_instances", "UPDATE"),
        ("system_registry", "INSERT"),
    ]
    assert rows[0]["details"]["row"] == {
        "namespace": "app",
        "key": "support_email",
        "is_secret": False,
    }
    assert rows[0]["details"]["actor"] == str(admin) and rows[0]["user_id"] == admin
    assert set(rows[2]["details"]["changed_columns"]) - {"updated_at"} == {"max_capacity", "status"}
    assert rows[3]["details"]["actor_role"] == "service_role"
    text = str(rows)
    assert "sekr1t-value" not in text and "ops@example.com" not in text


def test_role_grants_and_template_imports_are_audited(db):
    user = new_user(db)
    started = mark(db)
    with as_role(db, "service_role"):
        db.execute("insert into public.user_roles (user_id, role) values (%s, 'admin')", [user])
        db.execute(
            "insert into public.n8n_workflow_templates (slug, name, workflow_json, file_hash)"
            " values (%s, 'T', '{}', %s)",
            [f"t-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex * 2],
        )
    tables = [r["details"]["table"] for r in audit_rows(db, started)]
    assert tables == ["user_roles", "n8n_workflow_templates"]


def test_a_no_op_update_is_not_audited(db):
    admin = new_user(db, admin=True)
    started = mark(db)
    with as_role(db, "authenticated", admin):
        db.execute("update public.agent_registry set sort_order = sort_order where id = 'AG-01'")
    assert audit_rows(db, started) == []


def test_registry_seeds_and_secret_rows(db):
    def get(namespace, key):
        return db.execute("select public.registry_get(%s, %s) as v", [namespace, key]).fetchone()[
            "v"
        ]

    admin, user = new_user(db, admin=True), new_user(db)
    with as_role(db, "service_role"):
        assert get("stripe", "price_pulse") == "price_1SzdaCJAQcpzy6vVzFLVYkgd"
        assert get("stripe", "product_ghost") == "prod_TxYhXs1DPZsWtZ"
        assert get("app", "domain") == "app.aerelion.systems"
        assert get("hostinger", "api_base") == "https://developers.hostinger.com"
        db.execute("select public.registry_set('n8n', 'api_key', 'k3y', null, true)")
        assert get("n8n", "api_key") == "k3y"
    with as_role(db, "authenticated", admin):
        assert get("app", "domain") == "app.aerelion.systems"
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(db, "authenticated", admin):
        get("n8n", "api_key")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(db, "authenticated", user):
        get("app", "domain")


def test_the_agent_registry_is_seeded_as_the_original(db):
    rows = db.execute(
        "select id, codename, module, ref_id, has_site_scan, heartbeat_interval_s"
        " from public.agent_registry order by sort_order"
    ).fetchall()
    assert [r["id"] for r in rows] == [f"AG-0{n}" for n in range(1, 8)]
    assert rows[0] == {
        "id": "AG-01",
        "codename": "THE SENTINEL",
        "module": "SENTINEL",
        "ref_id": "REF-SENTINEL-800171",
        "has_site_scan": True,
        "heartbeat_interval_s": 7200,
    }
    assert rows[6]["codename"] == "THE ENVOY"


# -- retention, realtime --------------------------------------------------------------------


def test_retention_removes_only_what_is_past_its_period_and_audits_it(db):
    user = new_user(db)
    db.execute(
        "insert into public.agent_heartbeats (agent_id, created_at) values"
        " ('AG-03', now() - interval '40 days'), ('AG-03', now() - interval '1 day')"
    )
    db.execute(
        "insert into public.provisioning_queue (user_id, action, status, updated_at) values"
        " (%(u)s, 'provision_vps', 'completed', now()), (%(u)s, 'provision_vps', 'queued', now())",
        {"u": user},
    )
    db.execute(
        "alter table public.provisioning_queue disable trigger provisioning_queue_set_updated_at"
    )
    db.execute(
        "update public.provisioning_queue set updated_at = now() - interval '8 days'"
        " where user_id = %s",
        [user],
    )
    db.execute(
        "alter table public.provisioning_queue enable trigger provisioning_queue_set_updated_at"
    )
    started = mark(db)
    with as_role(db, "service_role"):
        report = db.execute("select public.apply_retention() as r").fetchone()["r"]
    assert report["agent_heartbeats"] >= 1
    assert report["provisioning_queue"] >= 1
    assert db.execute(
        "select status from public.provisioning_queue where user_id = %s", [user]
    ).fetchall() == [{"status": "queued"}]  # unfinished jobs are never aged out
    assert audit_rows(db, started)[0]["details"]["action"] == "retention"


def test_stripe_events_age_out_but_never_within_a_week(db):
    """Events are kept to recognise Stripe's retries (up to three days): a registry value
    below seven days is raised to seven."""
    ids = {age: f"evt_retention{age}d{uuid.uuid4().hex[:12]}" for age in (1, 6, 8, 100)}
    for age, event_id in ids.items():
        db.execute(
            "insert into public.stripe_events (endpoint, id, type, created, payload, received_at)"
            " values ('library', %s, 'charge.refunded', now(), '{}',"
            " now() - make_interval(days => %s))",
            [event_id, age],
        )

    def kept() -> list[int]:
        rows = db.execute(
            "select id from public.stripe_events where id = any(%s)", [list(ids.values())]
        ).fetchall()
        return sorted(age for age, event_id in ids.items() if {"id": event_id} in rows)

    with as_role(db, "service_role"):
        report = db.execute("select public.apply_retention() as r").fetchone()["r"]
    assert report["stripe_events"] >= 1 and kept() == [1, 6, 8]
    db.execute(
        "update public.system_registry set value = '1'"
        " where namespace = 'retention' and key = 'stripe_events_days'"
    )
    try:
        with as_role(db, "service_role"):
            db.execute("select public.apply_retention()")
        assert kept() == [1, 6]
    finally:
        db.execute(
            "update public.system_registry set value = '90'"
            " where namespace = 'retention' and key = 'stripe_events_days'"
        )


def test_realtime_publishes_the_original_tables_without_secrets(db):
    rows = db.execute(
        "select tablename, attnames from pg_publication_tables where pubname = 'supabase_realtime'"
    ).fetchall()
    published = {r["tablename"]: r["attnames"] for r in rows}
    assert set(published) >= {
        "edge_function_logs",
        "admin_notifications",
        "agent_heartbeats",
        "sovereign_bridge",
        "nexus_config",
        "vps_instances",
        "agent_registry",
    }
    assert not any(c.startswith("encrypted_") for c in published["vps_instances"])
    assert "behavioral_data" not in published["sovereign_bridge"]


# -- deleting a user ------------------------------------------------------------------------


def test_deleting_a_user_keeps_purchases_and_audit_rows_and_removes_credentials(db):
    user = new_user(db)
    request = db.execute(
        "insert into public.installation_requests (name, email, user_id)"
        " values ('N', 'n@example.com', %s) returning id",
        [user],
    ).fetchone()["id"]
    db.execute(
        "insert into public.activation_credentials (request_id, credential_type, service_name,"
        " encrypted_data, encryption_iv, encryption_tag, created_by)"
        " values (%s, 'api_key', 'svc', 'c', 'i', 't', 'n@example.com')",
        [request],
    )
    db.execute(
        "insert into public.integration_connections (user_id, provider) values (%s, 'gmail')",
        [user],
    )
    db.execute("insert into public.sovereign_bridge (user_id) values (%s)", [user])
    db.execute("insert into public.client_billing (user_id) values (%s)", [user])
    db.execute(
        "insert into public.client_notifications (user_id, type, title, body)"
        " values (%s, 'welcome', 't', 'b')",
        [user],
    )
    db.execute(
        "insert into public.provisioning_queue (user_id, action) values (%s, 'provision_vps')",
        [user],
    )
    buy(db, user, "tier", tier="ghost")
    db.execute(
        "insert into public.edge_function_logs (function_name, message, user_id)"
        " values ('t', 'm', %s)",
        [user],
    )
    db.execute("delete from auth.users where id = %s", [user])

    def count(table: str, column: str = "user_id") -> int:
        return db.execute(
            f"select count(*) as n from public.{table} where {column} = %s",
            [user],
        ).fetchone()["n"]

    for gone in (
        "profiles",
        "user_roles",
        "integration_connections",
        "sovereign_bridge",
        "client_billing",
        "client_notifications",
        "provisioning_queue",
    ):
        assert count(gone, "id" if gone == "profiles" else "user_id") == 0, gone
    assert count("edge_function_logs") == 1  # the trail keeps the id
    assert db.execute(
        "select user_id from public.purchases where tier = 'ghost' and email = 'x@example.com'"
        " order by created_at desc limit 1"
    ).fetchone() == {"user_id": None}
    assert db.execute(
        "select user_id from public.installation_requests where id = %s", [request]
    ).fetchone() == {"user_id": None}
    assert db.execute(
        "select count(*) as n from public.activation_credentials where request_id = %s", [request]
    ).fetchone() == {"n": 0}


@pytest.mark.parametrize("resource", ["vps_instances", "n8n_mappings"])
def test_a_user_with_live_infrastructure_cannot_be_deleted(db, resource):
    user = new_user(db)
    if resource == "vps_instances":
        db.execute("insert into public.vps_instances (user_id) values (%s)", [user])
    else:
        request = db.execute(
            "insert into public.installation_requests (name, email, user_id)"
            " values ('N', 'n@example.com', %s) returning id",
            [user],
        ).fetchone()["id"]
        db.execute(
            "insert into public.n8n_mappings (user_id, activation_request_id) values (%s, %s)",
            [user, request],
        )
    # PostgreSQL 18 reports RESTRICT as 23001, older versions as 23503.
    with pytest.raises((psycopg.errors.RestrictViolation, psycopg.errors.ForeignKeyViolation)):
        db.execute("delete from auth.users where id = %s", [user])


def test_one_live_mapping_per_activation(db):
    user = new_user(db)
    request = db.execute(
        "insert into public.installation_requests (name, email, user_id)"
        " values ('N', 'n@example.com', %s) returning id",
        [user],
    ).fetchone()["id"]
    db.execute(
        "insert into public.n8n_mappings (user_id, activation_request_id, status)"
        " values (%s, %s, 'revoked')",
        [user, request],
    )
    db.execute(
        "insert into public.n8n_mappings (user_id, activation_request_id) values (%s, %s)",
        [user, request],
    )
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(
            "insert into public.n8n_mappings (user_id, activation_request_id) values (%s, %s)",
            [user, request],
        )


def test_templates_are_immutable_for_everyone(db):
    template = db.execute(
        "insert into public.n8n_workflow_templates (slug, name, workflow_json)"
        " values (%s, 'T', '{}') returning id",
        [f"t-{uuid.uuid4().hex[:6]}"],
    ).fetchone()["id"]
    for statement in (
        "update public.n8n_workflow_templates set name = 'X' where id = %s",
        "delete from public.n8n_workflow_templates where id = %s",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute("savepoint s")
            try:
                db.execute(statement, [template])
            finally:
                db.execute("rollback to savepoint s")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("truncate public.n8n_workflow_templates cascade")
