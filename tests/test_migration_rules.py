"""Every rule a migration must follow, each refused with a clear message, and the
repository's own migrations following all of them."""

import pytest

from aerelion import migrations
from aerelion.migrations import check_statement, discover, verify
from support import REPO, write_migration


@pytest.mark.parametrize(
    ("statement", "rule"),
    [
        ("BEGIN", "transaction"),
        ("begin transaction isolation level serializable", "transaction"),
        ("COMMIT", "transaction"),
        ("rollback", "transaction"),
        ("start transaction", "transaction"),
        ("savepoint a", "transaction"),
        ("create index concurrently i on t (a)", "concurrently"),
        ("do $$ begin execute 'x'; create index concurrently i on t (a); end $$", "concurrently"),
        ("create role app_user", "roles"),
        ("alter role authenticated set statement_timeout = '1s'", "roles"),
        ("drop user someone", "roles"),
        ("create group admins", "roles"),
        ("select vault.create_secret('s3cr3t', 'name')", "vault"),
        ("do $$ begin perform vault.create_secret('x'); end $$", "vault"),
        ("create extension if not exists pgcrypto with schema extensions", "crypto"),
        ('create extension if not exists "uuid-ossp" with schema extensions', "crypto"),
        ("select extensions.gen_random_bytes(16)", "crypto"),
        ("insert into t values (uuid_generate_v4())", "crypto"),
        ("select crypt('pw', gen_salt('bf'))", "crypto"),
        ("create extension pg_trgm with schema extensions", "extension"),
        ("create extension if not exists pg_trgm", "extension"),
        ("create extension if not exists pg_trgm with schema public", "extension"),
        ("create table auth.sessions_copy (id int)", "auth"),
        (
            "create or replace function auth.uid() returns uuid language sql as $$ select null $$",
            "auth",
        ),
        ("alter table auth.users add column x int", "auth"),
        ("drop table if exists auth.users", "auth"),
        ("create index on auth.users (email)", "auth"),
        ("create policy p on auth.users for select using (true)", "auth"),
        ("grant select on auth.users to authenticated", "auth"),
        ("grant usage on schema auth to anon", "auth"),
        ("comment on table auth.users is 'x'", "auth"),
        ("insert into auth.users (id, email) values (gen_random_uuid(), 'a@b')", "auth"),
        ('create table "auth"."other" (id int)', "auth"),
        (
            "create trigger t after insert on auth.identities for each row execute function f()",
            "auth",
        ),
    ],
)
def test_each_rule_refuses_with_a_clear_message(statement, rule):
    problems = check_statement(statement)
    assert rule in [found for found, _ in problems], problems
    assert all(message for _, message in problems)


@pytest.mark.parametrize(
    "statement",
    [
        "create table public.t (id uuid primary key default gen_random_uuid(), "
        "user_id uuid references auth.users (id) on delete cascade)",
        "create trigger on_auth_user_created after insert on auth.users "
        "for each row execute function public.handle_new_user()",
        "create policy own on public.t for select using (user_id = auth.uid())",
        "create extension if not exists pg_trgm with schema extensions",
        "create extension if not exists pg_cron with schema pg_catalog",
        "select encode(sha256('x'::bytea), 'hex')",
        "comment on table public.t is 'BEGIN; COMMIT; create role x; CONCURRENTLY'",
        "-- create role ghost; begin; commit\nselect 1",
        "create function public.f() returns void language plpgsql as $$ begin "
        "insert into public.t default values; end $$",
        "create function public.email_of(u uuid) returns text language sql as "
        "$$ select email from auth.users where id = u $$",
        "create table public.digest_log (digest text)",
        "create user mapping for current_user server s",
    ],
)
def test_allowed_statements_pass(statement):
    assert check_statement(statement) == []


@pytest.mark.parametrize(
    "file_name",
    [
        "2026_create.sql",
        "20261301000000_bad_month.sql",
        "20261203000000_Has-Caps.sql",
        "20261203000000.sql",
        "create_things.sql",
    ],
)
def test_file_names_are_checked(project, file_name):
    write_migration(project, file_name, "select 1;")
    found = discover(project / "supabase" / "migrations")
    assert found.migrations == []
    assert [v.rule for v in found.violations] == ["file-name"]


def test_duplicate_versions_are_refused(project):
    write_migration(project, "20261203000000_a.sql", "select 1;")
    write_migration(project, "20261203000000_b.sql", "select 2;")
    found = discover(project / "supabase" / "migrations")
    assert [m.file_name for m in found.migrations] == ["20261203000000_a.sql"]
    assert "also used by 20261203000000_a.sql" in str(found.violations[0])


def test_violation_names_file_and_statement(project):
    write_migration(project, "20261203000000_a.sql", "select 1;\ncreate role x;\n")
    found = verify(
        project / "supabase" / "migrations",
        project / "supabase" / "migrations.sha256",
        require_listed=False,
    )
    assert [str(v) for v in found.violations] == [
        "20261203000000_a.sql (statement 2): roles belong to the platform: "
        "no CREATE/ALTER/DROP ROLE [roles]"
    ]


def test_checksums_catch_edits_and_unlisted_files(project):
    folder = project / "supabase" / "migrations"
    checksums = project / "supabase" / "migrations.sha256"
    first = write_migration(project, "20261203000000_a.sql", "select 1;")
    assert migrations.lock(folder, checksums) == ["20261203000000_a.sql"]
    assert migrations.lock(folder, checksums) == []
    write_migration(project, "20261203000001_b.sql", "select 2;")
    found = verify(folder, checksums, require_listed=True)
    assert [v.file for v in found.violations] == ["20261203000001_b.sql"]
    assert verify(folder, checksums, require_listed=False).violations == []

    first.write_text("select 1; select 'edited';")
    found = verify(folder, checksums, require_listed=False)
    assert [str(v) for v in found.violations] == [
        "20261203000000_a.sql: an applied migration was edited; "
        "write a new migration instead [checksum]"
    ]
    first.unlink()
    found = verify(folder, checksums, require_listed=False)
    assert "listed in migrations.sha256 but the file is gone" in str(found.violations[0])


def test_the_repository_follows_every_rule():
    """Every migration in the repository is well formed and listed with its checksum:
    a committed migration is never edited, a change is a new file."""
    found = verify(
        REPO / "supabase" / "migrations",
        REPO / "supabase" / "migrations.sha256",
        require_listed=True,
    )
    assert [str(v) for v in found.violations] == []
    assert found.migrations, "the repository has migrations"
