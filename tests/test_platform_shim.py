"""The Supabase platform shim on plain PostgreSQL."""

import json
import uuid

import psycopg
import pytest

from aerelion import deploy
from support import settings_for, write_migration

USER_ID = str(uuid.uuid4())
CLAIMS = {
    "sub": USER_ID,
    "role": "authenticated",
    "aud": "authenticated",
    "email": "ada@example.com",
}


@pytest.fixture
def shimmed(fresh_database):
    with deploy.connect(fresh_database) as conn:
        deploy.apply_shim(conn, settings_for())
    return fresh_database


def as_postgrest(conn: psycopg.Connection, claims: dict, role: str = "authenticated") -> None:
    """What PostgREST runs at the start of every request transaction."""
    conn.execute(
        "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
        [role, json.dumps(claims)],
    )


def test_auth_helpers_read_postgrest_claims(shimmed):
    with psycopg.connect(shimmed) as conn:
        as_postgrest(conn, CLAIMS)
        row = conn.execute(
            "select auth.uid(), auth.role(), auth.email(), auth.jwt() ->> 'aud', current_user"
        ).fetchone()
        assert row == (
            uuid.UUID(USER_ID),
            "authenticated",
            "ada@example.com",
            "authenticated",
            "authenticated",
        )
        conn.rollback()
        # Once the transaction ends the settings read back as '' (not NULL) on this
        # connection: the helpers must still answer NULL.
        assert conn.execute("select current_setting('request.jwt.claims', true)").fetchone() == (
            "",
        )
        assert conn.execute("select auth.uid(), auth.role(), auth.jwt()").fetchone() == (
            None,
            None,
            None,
        )


def test_auth_helpers_read_legacy_per_claim_settings(shimmed):
    with psycopg.connect(shimmed) as conn:
        conn.execute(
            "select set_config('request.jwt.claim.sub', %s, true),"
            " set_config('request.jwt.claim.role', 'service_role', true)",
            [USER_ID],
        )
        assert conn.execute("select auth.uid(), auth.role()").fetchone() == (
            uuid.UUID(USER_ID),
            "service_role",
        )


def test_roles_match_supabase(shimmed):
    with psycopg.connect(shimmed) as conn:
        rows = dict(
            (name, (login, inherit, bypass))
            for name, login, inherit, bypass in conn.execute(
                "select rolname, rolcanlogin, rolinherit, rolbypassrls from pg_roles"
                " where rolname in ('anon', 'authenticated', 'service_role', 'authenticator')"
            )
        )
        assert rows == {
            "anon": (False, False, False),
            "authenticated": (False, False, False),
            "service_role": (False, False, True),
            "authenticator": (True, False, False),
        }
        members = conn.execute(
            "select array_agg(r.rolname order by r.rolname) from pg_auth_members m"
            " join pg_roles r on r.oid = m.roleid join pg_roles u on u.oid = m.member"
            " where u.rolname = 'authenticator'"
        ).fetchone()[0]
        assert {"anon", "authenticated", "service_role"} <= set(members)


def test_a_user_row_needs_only_id_and_email_and_api_roles_cannot_read_it(shimmed):
    with psycopg.connect(shimmed) as conn:
        conn.execute("insert into auth.users (id, email) values (%s, 'ada@example.com')", [USER_ID])
        conn.commit()
        as_postgrest(conn, CLAIMS)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select email from auth.users")


def test_the_shim_runs_again_and_keeps_what_exists(shimmed):
    with deploy.connect(shimmed) as conn:
        conn.execute(
            "create or replace function auth.uid() returns uuid language sql stable"
            " as $$ select '00000000-0000-0000-0000-000000000001'::uuid $$"
        )
        deploy.apply_shim(conn, settings_for())
        deploy.apply_shim(conn, settings_for())
        assert conn.execute("select auth.uid()::text").fetchone() == (
            "00000000-0000-0000-0000-000000000001",
        )


@pytest.mark.parametrize(("mode", "granted"), [("legacy", True), ("none", False)])
def test_default_grants_emulate_old_and_new_projects(fresh_database, mode, granted):
    with deploy.connect(fresh_database) as conn:
        deploy.apply_shim(conn, settings_for(AERELION_SHIM_DEFAULT_GRANTS=mode))
        conn.execute("create table public.t (id int)")
        conn.execute("create function public.f() returns int language sql as $$ select 1 $$")
        privileges = conn.execute(
            "select has_table_privilege('anon', 'public.t', 'select'),"
            " has_table_privilege('authenticated', 'public.t', 'insert'),"
            " has_table_privilege('service_role', 'public.t', 'delete')"
        ).fetchone()
        assert privileges == (granted, granted, granted)


def test_switching_to_none_revokes_the_default_grants(fresh_database):
    with deploy.connect(fresh_database) as conn:
        deploy.apply_shim(conn, settings_for(AERELION_SHIM_DEFAULT_GRANTS="legacy"))
        deploy.apply_shim(conn, settings_for(AERELION_SHIM_DEFAULT_GRANTS="none"))
        conn.execute("create table public.t (id int)")
        assert conn.execute(
            "select has_table_privilege('anon', 'public.t', 'select')"
        ).fetchone() == (False,)


def test_an_unknown_grants_mode_is_refused(fresh_database):
    with deploy.connect(fresh_database) as conn, pytest.raises(psycopg.errors.RaiseException):
        deploy.apply_shim(conn, settings_for(AERELION_SHIM_DEFAULT_GRANTS="everything"))


def test_push_can_skip_the_shim(project, fresh_database):
    write_migration(project, "20261203000000_a.sql", "create table public.a (id int);")
    deploy.push(fresh_database, settings_for(project), shim="never", out=lambda _: None)
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("select to_regnamespace('auth')").fetchone() == (None,)
