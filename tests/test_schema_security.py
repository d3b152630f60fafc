"""Security invariants of the whole schema, checked in the catalog after every migration:
they hold for tables and functions later migrations add, in both grant modes. (Who may
call which function, table by table access: test_rls_matrix.py.)"""

import psycopg
import pytest

pytestmark = pytest.mark.security


@pytest.fixture(scope="module")
def catalog(migrated_database):
    with psycopg.connect(migrated_database) as conn:
        yield conn


def test_every_table_has_row_level_security_enabled_and_forced(catalog):
    rows = catalog.execute(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'public' and c.relkind in ('r', 'p')"
        " and not (c.relrowsecurity and c.relforcerowsecurity)"
    ).fetchall()
    assert rows == []


def test_security_definer_functions_pin_their_search_path(catalog):
    rows = catalog.execute(
        "select p.oid::regprocedure::text from pg_proc p"
        " join pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname = 'public' and p.prosecdef"
        " and not exists (select 1 from unnest(p.proconfig) c where c like 'search_path=%')"
    ).fetchall()
    assert rows == []


def test_no_function_is_executable_by_public_or_anon(catalog):
    rows = catalog.execute(
        "select p.oid::regprocedure::text from pg_proc p"
        " join pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname = 'public'"
        " and (has_function_privilege('anon', p.oid, 'execute')"
        "  or exists (select 1 from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a"
        "             where a.grantee = 0 and a.privilege_type = 'EXECUTE'))"
    ).fetchall()
    assert rows == []


def test_anon_reads_only_the_published_catalog_and_the_agent_registry(catalog):
    rows = catalog.execute(
        "select table_name, privilege_type from information_schema.role_table_grants"
        " where table_schema = 'public' and grantee in ('anon', 'PUBLIC')"
        " union all"
        " select table_name, privilege_type from information_schema.column_privileges"
        " where table_schema = 'public' and grantee in ('anon', 'PUBLIC')"
    ).fetchall()
    assert set(rows) == {
        ("automation_agents", "SELECT"),
        ("automation_bundles", "SELECT"),
        ("agent_registry", "SELECT"),
    }


def test_nobody_but_the_owner_writes_the_request_log(catalog):
    for role in ("anon", "authenticated", "service_role"):
        for privilege in ("insert", "update", "delete", "truncate"):
            assert not catalog.execute(
                "select has_table_privilege(%s, 'public.edge_function_logs', %s)",
                [role, privilege],
            ).fetchone()[0], (role, privilege)
