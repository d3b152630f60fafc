"""`aerelion db push | status | reset`: apply migrations as the Supabase CLI does.

Each pending file runs in its own transaction and is recorded in
`supabase_migrations.schema_migrations (version, statements, name)` with the same version,
name and statement split as `supabase db push`, so either tool sees the other's work.
On plain PostgreSQL the platform shim (`sql/platform_shim.sql`) is applied first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aerelion import migrations
from aerelion.config import Settings, is_loopback
from aerelion.migrations import Migration
from aerelion.queries import QUERIES
from aerelion.sqltext import split_statements

Output = Callable[[str], None]


class RefusedError(Exception):
    """Nothing was applied: the reasons say why."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("\n".join(reasons))
        self.reasons = reasons


class MigrationFailedError(Exception):
    """A migration failed; its transaction was rolled back and nothing of it remains."""

    def __init__(self, file: str, index: int, statement: str, error: psycopg.Error) -> None:
        self.file = file
        self.index = index
        self.statement = statement
        self.sqlstate = error.sqlstate
        diag = error.diag
        lines = [
            f"{file}: statement {index} failed: {diag.message_primary or error} "
            f"(SQLSTATE {error.sqlstate})"
        ]
        if diag.message_detail:
            lines.append(diag.message_detail)
        lines.append(_mark_position(statement, diag.statement_position))
        super().__init__("\n".join(lines))


def _mark_position(statement: str, position: str | None) -> str:
    """The statement with a caret under the character the server complained about."""
    if not position or not position.isdigit():
        return statement
    offset = int(position) - 1
    lines = statement.split("\n")
    for number, line in enumerate(lines):
        if offset <= len(line):
            return "\n".join([*lines[: number + 1], " " * offset + "^"])
        offset -= len(line) + 1
    return statement


@dataclass(frozen=True)
class Applied:
    version: str
    name: str
    statements: list[str] | None


@dataclass
class Plan:
    pending: list[Migration] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def connect(url: str) -> psycopg.Connection:
    # Migrations never use prepared statements, so transaction poolers are fine too.
    return psycopg.connect(url, autocommit=True, prepare_threshold=None)


def run_script(conn: psycopg.Connection, text: str) -> None:
    for statement in split_statements(text):
        conn.execute(statement)


def is_supabase(conn: psycopg.Connection) -> bool:
    return bool(conn.execute(QUERIES["is_supabase"]).fetchone()[0])


def apply_shim(conn: psycopg.Connection, settings: Settings) -> None:
    with conn.transaction():
        conn.execute(QUERIES["set_shim_grants"], {"mode": settings.shim_default_grants})
        run_script(conn, settings.shim_path.read_text())


def read_history(conn: psycopg.Connection) -> list[Applied]:
    if not conn.execute(QUERIES["history_exists"]).fetchone()[0]:
        return []
    return [Applied(*row) for row in conn.execute(QUERIES["read_history"])]


def plan(local: list[Migration], applied: list[Applied], *, include_all: bool) -> Plan:
    """What to apply, with the CLI's refusals: versions applied remotely but missing
    locally, and local files older than the newest applied one (unless include_all).
    We also refuse when an applied file was edited since."""
    result = Plan()
    by_version = {m.version: m for m in local}
    applied_versions = {a.version for a in applied}
    missing = [a.version for a in applied if a.version not in by_version]
    if missing:
        result.problems.append(
            "applied on the database but missing from supabase/migrations: " + ", ".join(missing)
        )
    for row in applied:
        migration = by_version.get(row.version)
        if (
            migration is not None
            and row.statements is not None
            and (list(row.statements) != migration.statements)
        ):
            result.problems.append(
                f"{migration.file_name} was edited after it was applied; "
                "write a new migration instead"
            )
    newest = max(applied_versions, default="")
    pending = [m for m in local if m.version not in applied_versions]
    late = [m.file_name for m in pending if m.version < newest]
    if late and not include_all:
        result.problems.append(
            "found local migrations older than the last applied one: "
            + ", ".join(late)
            + " (rerun with --include-all to apply them)"
        )
    result.pending = pending
    return result


def apply_migration(conn: psycopg.Connection, migration: Migration) -> None:
    conn.execute(QUERIES["reset_connection"])
    steps = [*migration.statements, QUERIES["record_migration"]]
    record = {
        "version": migration.version,
        "name": migration.name,
        "statements": migration.statements,
    }
    done = 0
    try:
        with conn.transaction():
            for statement in migration.statements:
                conn.execute(statement)
                done += 1
            conn.execute(QUERIES["record_migration"], record)
    except psycopg.Error as error:
        raise MigrationFailedError(migration.file_name, done + 1, steps[done], error) from error


def apply_seeds(conn: psycopg.Connection, settings: Settings, out: Output) -> None:
    with conn.transaction():
        run_script(conn, QUERIES["ensure_seed_table"])
    done = dict(conn.execute(QUERIES["read_seeds"]).fetchall())
    for path in settings.seed_paths:
        if not path.exists():
            continue
        relative = str(path.relative_to(settings.project_dir / "supabase"))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if done.get(relative) == digest:
            continue
        out(f"Seeding data from {relative}...")
        with conn.transaction():
            run_script(conn, path.read_text())
            conn.execute(QUERIES["record_seed"], {"path": relative, "hash": digest})


def local_migrations(settings: Settings) -> list[Migration]:
    """The migration files, refusing before anything runs if any rule is broken."""
    found = migrations.verify(
        settings.migrations_dir, settings.checksums_path, require_listed=False
    )
    if found.violations:
        raise RefusedError([str(v) for v in found.violations])
    return found.migrations


def push(
    url: str,
    settings: Settings,
    *,
    include_all: bool = False,
    include_seed: bool = False,
    shim: str = "auto",
    dry_run: bool = False,
    out: Output = print,
) -> list[Migration]:
    """Apply the shim (where needed) and every pending migration; returns what ran."""
    local = local_migrations(settings)
    with connect(url) as conn:
        conn.execute(QUERIES["lock_migrations"])
        try:
            wants_shim = shim == "always" or (shim == "auto" and not is_supabase(conn))
            the_plan = plan(local, read_history(conn), include_all=include_all)
            if the_plan.problems:
                raise RefusedError(the_plan.problems)
            if dry_run:
                if wants_shim:
                    out("Would apply the platform shim")
                for migration in the_plan.pending:
                    out(f"Would push {migration.file_name}")
                return the_plan.pending
            if wants_shim:
                apply_shim(conn, settings)
            if the_plan.pending:
                with conn.transaction():
                    run_script(conn, QUERIES["ensure_history"])
            for migration in the_plan.pending:
                out(f"Applying migration {migration.file_name}...")
                apply_migration(conn, migration)
            if not the_plan.pending:
                out("Database is up to date.")
            if include_seed:
                apply_seeds(conn, settings, out)
            return the_plan.pending
        finally:
            conn.execute(QUERIES["unlock_migrations"])


@dataclass(frozen=True)
class StatusRow:
    version: str
    name: str
    state: str  # applied | pending | edited | missing-local


def status(url: str, settings: Settings) -> list[StatusRow]:
    found = migrations.discover(settings.migrations_dir)
    local = {m.version: m for m in found.migrations}
    with connect(url) as conn:
        applied = {a.version: a for a in read_history(conn)}
    rows = []
    for version in sorted(local.keys() | applied.keys()):
        migration, row = local.get(version), applied.get(version)
        if migration is None:
            rows.append(StatusRow(version, row.name, "missing-local"))
        elif row is None:
            rows.append(StatusRow(version, migration.name, "pending"))
        elif row.statements is not None and list(row.statements) != migration.statements:
            rows.append(StatusRow(version, migration.name, "edited"))
        else:
            rows.append(StatusRow(version, migration.name, "applied"))
    return rows


def reset(url: str, settings: Settings, *, include_seed: bool = True, out: Output = print) -> None:
    """Drop and recreate a local database, then push everything. Refuses remote hosts."""
    if not is_loopback(url):
        raise RefusedError(["db reset only runs against a local database (loopback or socket)"])
    database = conninfo_to_dict(url).get("dbname") or "postgres"
    maintenance = make_conninfo(url, dbname="template1" if database != "template1" else "postgres")
    with connect(maintenance) as conn:
        name = sql.Identifier(database)
        conn.execute(sql.SQL(QUERIES["drop_database"]).format(database=name))
        conn.execute(sql.SQL(QUERIES["create_database"]).format(database=name))
    out(f"Recreated database {database}.")
    push(url, settings, include_seed=include_seed, out=out)
