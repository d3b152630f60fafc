"""Proof of Supabase compatibility: the real Supabase CLI (npm `supabase`, pinned in
package.json) and `aerelion db push` produce the same schema and the same history, and
each sees the other's work."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from aerelion import deploy
from aerelion.embedded import bin_dir
from support import REPO, settings_for

ATTVER = re.compile(r"pg_attver=\d+")
CLI = REPO / "node_modules" / ".bin" / "supabase"
TRICKY = REPO / "tests" / "fixtures" / "tricky_migrations"

pytestmark = [
    pytest.mark.cli,
    pytest.mark.skipif(
        not CLI.exists() and not os.environ.get("AERELION_REQUIRE_SUPABASE_CLI"),
        reason="the Supabase CLI is not installed (make tools)",
    ),
]


def quiet(_: str) -> None:
    pass


def supabase(project: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HOME": str(home),
        "SUPABASE_TELEMETRY_DISABLED": "1",
        "DO_NOT_TRACK": "1",
    }
    return subprocess.run(
        [str(CLI), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def cli_url(url: str) -> str:
    # The CLI insists on TLS unless told otherwise; local servers have none.
    return f"{url}{'&' if '?' in url else '?'}sslmode=disable"


def history(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select version, name, statements from supabase_migrations.schema_migrations"
            " order by version"
        ).fetchall()


def schema_dump(url: str) -> str:
    result = subprocess.run(
        [str(bin_dir() / "pg_dump"), "--schema-only", "--no-owner", "--dbname", url],
        capture_output=True,
        text=True,
        check=True,
    )
    # pg_dump 17.6+ brackets the dump with \restrict <random key> lines, and Debian's
    # PostgreSQL 15.20 stamps every column with a per-creation `pg_attver` option.
    return "\n".join(
        ATTVER.sub("pg_attver=N", line)
        for line in result.stdout.splitlines()
        if not line.startswith(("\\restrict", "\\unrestrict"))
    )


def make_project(tmp_path: Path, migrations: Path) -> Path:
    project = tmp_path / "project"
    (project / "supabase").mkdir(parents=True)
    shutil.copy(REPO / "supabase" / "config.toml", project / "supabase" / "config.toml")
    shutil.copytree(migrations, project / "supabase" / "migrations")
    shutil.copytree(REPO / "sql", project / "sql")
    return project


@pytest.mark.parametrize(
    "migrations", [REPO / "supabase" / "migrations", TRICKY], ids=["repository", "tricky"]
)
def test_cli_and_aerelion_push_agree(tmp_path, create_database, migrations):
    project = make_project(tmp_path, migrations)
    settings = settings_for(project)
    by_cli, by_us = create_database(), create_database()

    with deploy.connect(by_cli) as conn:  # the CLI expects the platform to be there
        deploy.apply_shim(conn, settings)
    result = supabase(project, tmp_path, "db", "push", "--db-url", cli_url(by_cli), "--yes")
    assert result.returncode == 0, result.stderr + result.stdout

    deploy.push(by_us, settings, out=quiet)

    assert history(by_us) == history(by_cli)
    assert len(history(by_us)) == len(list(migrations.glob("*.sql")))
    assert schema_dump(by_us) == schema_dump(by_cli)


def test_each_tool_sees_the_others_work(tmp_path, create_database):
    project = make_project(tmp_path, REPO / "supabase" / "migrations")
    settings = settings_for(project)
    first, second = create_database(), create_database()

    deploy.push(first, settings, out=quiet)
    result = supabase(project, tmp_path, "db", "push", "--db-url", cli_url(first), "--yes")
    assert result.returncode == 0, result.stderr
    assert "Remote database is up to date." in result.stdout + result.stderr
    listing = supabase(project, tmp_path, "migration", "list", "--db-url", cli_url(first))
    assert listing.returncode == 0, listing.stderr
    for path in (project / "supabase" / "migrations").glob("*.sql"):
        version = path.name.split("_", 1)[0]
        assert listing.stdout.count(version) == 2  # local and remote columns

    with deploy.connect(second) as conn:
        deploy.apply_shim(conn, settings)
    result = supabase(project, tmp_path, "db", "push", "--db-url", cli_url(second), "--yes")
    assert result.returncode == 0, result.stderr
    lines: list[str] = []
    assert deploy.push(second, settings, out=lines.append) == []
    assert lines == ["Database is up to date."]


def test_the_cli_refuses_what_we_refuse_out_of_order(tmp_path, create_database):
    project = make_project(tmp_path, REPO / "supabase" / "migrations")
    settings = settings_for(project)
    url = create_database()
    deploy.push(url, settings, out=quiet)
    (project / "supabase" / "migrations" / "20200101000000_early.sql").write_text(
        "create table public.early (id int);\n"
    )
    result = supabase(project, tmp_path, "db", "push", "--db-url", cli_url(url), "--yes")
    assert result.returncode != 0
    assert "--include-all" in result.stdout + result.stderr
    with pytest.raises(deploy.RefusedError):
        deploy.push(url, settings, out=quiet)
