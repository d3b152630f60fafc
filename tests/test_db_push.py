"""`aerelion db push | status | reset` against a real PostgreSQL."""

import psycopg
import pytest

from aerelion import deploy
from aerelion.deploy import MigrationFailedError, RefusedError
from support import REPO, settings_for, write_migration


def quiet(_: str) -> None:
    pass


def history(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select version, name from supabase_migrations.schema_migrations order by version"
        ).fetchall()


def table_exists(url: str, name: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("select to_regclass(%s) is not null", [name]).fetchone()[0]


def test_fresh_apply_then_reapply_is_a_no_op(fresh_database):
    settings = settings_for()
    applied = deploy.push(fresh_database, settings, out=quiet)
    local = sorted(p.name for p in (REPO / "supabase" / "migrations").glob("*.sql"))
    assert [m.file_name for m in applied] == local
    before = history(fresh_database)
    assert [f"{v}_{n}.sql" for v, n in before] == local

    lines: list[str] = []
    assert deploy.push(fresh_database, settings, out=lines.append) == []
    assert lines == ["Database is up to date."]
    assert history(fresh_database) == before


def test_a_failing_migration_leaves_nothing(project, fresh_database):
    write_migration(project, "20261203000000_good.sql", "create table public.good (id int);")
    write_migration(
        project,
        "20261203000001_bad.sql",
        "create table public.half (id int);\ninsert into public.half values (1);\nselect 1 / 0;\n",
    )
    with pytest.raises(MigrationFailedError) as failed:
        deploy.push(fresh_database, settings_for(project), out=quiet)
    message = str(failed.value)
    assert (
        "20261203000001_bad.sql: statement 3 failed: division by zero (SQLSTATE 22012)" in message
    )
    assert "select 1 / 0" in message
    assert failed.value.index == 3
    # The earlier file is committed; nothing of the failing one remains.
    assert table_exists(fresh_database, "public.good")
    assert not table_exists(fresh_database, "public.half")
    assert history(fresh_database) == [("20261203000000", "good")]


def test_the_error_points_at_the_offending_text(project, fresh_database):
    write_migration(project, "20261203000000_typo.sql", "select 1;\nselect\n  nope_column;\n")
    with pytest.raises(MigrationFailedError) as failed:
        deploy.push(fresh_database, settings_for(project), out=quiet)
    assert str(failed.value).endswith("select\n  nope_column\n  ^")
    assert failed.value.sqlstate == "42703"


def test_rule_violations_refuse_before_anything_runs(project, fresh_database):
    write_migration(project, "20261203000000_fine.sql", "create table public.fine (id int);")
    write_migration(project, "20261203000001_roles.sql", "create role intruder;")
    with pytest.raises(RefusedError) as refused:
        deploy.push(fresh_database, settings_for(project), out=quiet)
    assert refused.value.reasons == [
        "20261203000001_roles.sql (statement 1): roles belong to the platform: "
        "no CREATE/ALTER/DROP ROLE [roles]"
    ]
    assert not table_exists(fresh_database, "public.fine")
    assert not table_exists(fresh_database, "supabase_migrations.schema_migrations")


def test_out_of_order_files_need_include_all(project, fresh_database):
    settings = settings_for(project)
    write_migration(project, "20261203000002_late.sql", "create table public.late (id int);")
    deploy.push(fresh_database, settings, out=quiet)
    write_migration(project, "20261203000001_early.sql", "create table public.early (id int);")
    with pytest.raises(RefusedError) as refused:
        deploy.push(fresh_database, settings, out=quiet)
    assert "20261203000001_early.sql" in refused.value.reasons[0]
    assert "--include-all" in refused.value.reasons[0]
    assert not table_exists(fresh_database, "public.early")

    deploy.push(fresh_database, settings, include_all=True, out=quiet)
    assert table_exists(fresh_database, "public.early")


def test_an_applied_file_that_was_edited_is_refused(project, fresh_database):
    settings = settings_for(project)
    path = write_migration(project, "20261203000000_a.sql", "create table public.a (id int);")
    deploy.push(fresh_database, settings, out=quiet)
    path.write_text("create table public.a (id int, sneaky text);")
    with pytest.raises(RefusedError) as refused:
        deploy.push(fresh_database, settings, out=quiet)
    assert refused.value.reasons == [
        "20261203000000_a.sql was edited after it was applied; write a new migration instead"
    ]
    assert [row.state for row in deploy.status(fresh_database, settings)] == ["edited"]


def test_versions_missing_locally_are_refused(project, fresh_database):
    settings = settings_for(project)
    path = write_migration(project, "20261203000000_a.sql", "select 1;")
    deploy.push(fresh_database, settings, out=quiet)
    path.unlink()
    write_migration(project, "20261203000001_b.sql", "create table public.b (id int);")
    with pytest.raises(RefusedError) as refused:
        deploy.push(fresh_database, settings, out=quiet)
    assert "missing from supabase/migrations: 20261203000000" in refused.value.reasons[0]
    assert not table_exists(fresh_database, "public.b")


def test_dry_run_changes_nothing(fresh_database):
    lines: list[str] = []
    pending = deploy.push(fresh_database, settings_for(), dry_run=True, out=lines.append)
    assert pending
    assert lines[0] == "Would apply the platform shim"
    assert not table_exists(fresh_database, "supabase_migrations.schema_migrations")
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("select to_regnamespace('auth')").fetchone()[0] is None


def test_status_lists_applied_and_pending(project, fresh_database):
    settings = settings_for(project)
    write_migration(project, "20261203000000_a.sql", "select 1;")
    deploy.push(fresh_database, settings, out=quiet)
    write_migration(project, "20261203000001_b.sql", "select 2;")
    assert [(r.version, r.name, r.state) for r in deploy.status(fresh_database, settings)] == [
        ("20261203000000", "a", "applied"),
        ("20261203000001", "b", "pending"),
    ]


def test_seeds_run_once_per_content(project, fresh_database):
    settings = settings_for(project)
    write_migration(project, "20261203000000_a.sql", "create table public.a (n int);")
    seed = project / "supabase" / "seed.sql"
    seed.write_text("insert into public.a values (1);")
    deploy.push(fresh_database, settings, include_seed=True, out=quiet)
    deploy.push(fresh_database, settings, include_seed=True, out=quiet)
    seed.write_text("insert into public.a values (2);")
    deploy.push(fresh_database, settings, include_seed=True, out=quiet)
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("select n from public.a order by n").fetchall() == [(1,), (2,)]
        assert conn.execute("select path from supabase_migrations.seed_files").fetchall() == [
            ("seed.sql",)
        ]


def test_reset_rebuilds_a_local_database(project, fresh_database):
    settings = settings_for(project)
    write_migration(project, "20261203000000_a.sql", "create table public.a (n int);")
    deploy.push(fresh_database, settings, out=quiet)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("create table public.junk (x int)")
    deploy.reset(fresh_database, settings, out=quiet)
    assert table_exists(fresh_database, "public.a")
    assert not table_exists(fresh_database, "public.junk")
    assert history(fresh_database) == [("20261203000000", "a")]


def test_reset_refuses_a_remote_database(project):
    with pytest.raises(RefusedError) as refused:
        deploy.reset("postgresql://postgres@db.example.com:5432/postgres", settings_for(project))
    assert "only runs against a local database" in refused.value.reasons[0]
