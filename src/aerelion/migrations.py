"""Migration files: discovery, the rules every file must follow, and the checksum list.

Rules (checked by `aerelion db push` before it applies anything, and by the test suite):

- files are named `<14-digit UTC timestamp>_<snake_case name>.sql`, versions unique;
- a file is one transaction: no BEGIN/COMMIT/ROLLBACK/SAVEPOINT, no `CONCURRENTLY`;
- roles belong to the platform: no CREATE/ALTER/DROP ROLE, USER or GROUP;
- secrets never sit in migrations: no `vault.create_secret`;
- only core crypto: no pgcrypto or uuid-ossp (core `gen_random_uuid()` and `sha256()` exist);
- extensions only `CREATE EXTENSION IF NOT EXISTS … WITH SCHEMA extensions`
  (pg_cron, which Supabase installs in `pg_catalog`, may name that schema);
- the `auth` schema belongs to Supabase Auth: migrations may reference `auth.users` in
  foreign keys, put triggers on it and call `auth.uid()`/`auth.jwt()`, nothing else;
- an applied migration is never edited: `supabase/migrations.sha256` lists the checksum
  of every committed file, and a change is a new migration.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

from aerelion.sqltext import mask, split_statements

FILE_NAME = re.compile(r"^(\d{14})_([a-z0-9_]+)\.sql$")
CHECKSUMS_FILE = "migrations.sha256"


@dataclass(frozen=True)
class Violation:
    file: str
    rule: str
    message: str
    statement: int | None = None  # 1-based index of the offending statement

    def __str__(self) -> str:
        where = self.file if self.statement is None else f"{self.file} (statement {self.statement})"
        return f"{where}: {self.message} [{self.rule}]"


@dataclass(frozen=True)
class Migration:
    path: Path
    version: str
    name: str

    @property
    def file_name(self) -> str:
        return self.path.name

    @cached_property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @cached_property
    def statements(self) -> list[str]:
        return split_statements(self.text)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@dataclass
class LocalMigrations:
    """The `.sql` files of a migrations folder, in the CLI's (lexical) order."""

    migrations: list[Migration] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)


def discover(directory: Path) -> LocalMigrations:
    found = LocalMigrations()
    seen: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        match = FILE_NAME.match(path.name)
        if match is None:
            found.violations.append(
                Violation(
                    path.name,
                    "file-name",
                    "migration files are named <YYYYMMDDHHMMSS>_<snake_case_name>.sql",
                )
            )
            continue
        version, name = match.groups()
        try:
            datetime.strptime(version, "%Y%m%d%H%M%S")
        except ValueError:
            found.violations.append(
                Violation(path.name, "file-name", f"{version} is not a UTC timestamp")
            )
            continue
        if version in seen:
            found.violations.append(
                Violation(
                    path.name, "file-name", f"version {version} is also used by {seen[version]}"
                )
            )
            continue
        seen[version] = path.name
        found.migrations.append(Migration(path, version, name))
    return found


# -- content rules ----------------------------------------------------------------------

_TRANSACTION_CONTROL = re.compile(
    r"^\s*(BEGIN|COMMIT|ROLLBACK|ABORT|END|SAVEPOINT|RELEASE|START\s+TRANSACTION"
    r"|PREPARE\s+TRANSACTION)\b",
    re.IGNORECASE,
)
_CONCURRENTLY = re.compile(r"\bCONCURRENTLY\b", re.IGNORECASE)
_ROLES = re.compile(r"\b(CREATE|ALTER|DROP)\s+(ROLE|USER|GROUP)\b(?!\s+MAPPING)", re.IGNORECASE)
_VAULT_SECRET = re.compile(r"\bvault\s*\.\s*create_secret\b", re.IGNORECASE)
_CREATE_EXTENSION = re.compile(
    r"^\s*CREATE\s+EXTENSION\s+(?P<guard>IF\s+NOT\s+EXISTS\s+)?(?P<name>[\w-]+)(?P<rest>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_EXTENSION_SCHEMA = re.compile(r"\bSCHEMA\s+(?P<schema>\w+)", re.IGNORECASE)
_FORBIDDEN_EXTENSIONS = {"pgcrypto", "uuid-ossp"}
_FORBIDDEN_CALLS = re.compile(
    r"\b(gen_random_bytes|gen_salt|crypt|digest|hmac|pgp_sym_encrypt|pgp_sym_decrypt"
    r"|pgp_pub_encrypt|pgp_pub_decrypt|uuid_generate_v1|uuid_generate_v1mc"
    r"|uuid_generate_v3|uuid_generate_v4|uuid_generate_v5)\s*\(",
    re.IGNORECASE,
)
_IF_EXISTS = r"(?:IF\s+(?:NOT\s+)?EXISTS\s+)?"
_AUTH_RULES = [
    re.compile(p, re.IGNORECASE | re.DOTALL)
    for p in (
        r"^\s*(CREATE|ALTER|DROP)\s+(OR\s+REPLACE\s+)?(TEMP\w*\s+|UNLOGGED\s+|MATERIALIZED\s+)?"
        r"(TABLE|VIEW|FUNCTION|PROCEDURE|TYPE|SEQUENCE|DOMAIN|AGGREGATE|OPERATOR)\s+"
        + _IF_EXISTS
        + r"(ONLY\s+)?auth\.",
        r"^\s*(CREATE|ALTER|DROP)\s+SCHEMA\s+" + _IF_EXISTS + r"auth\b",
        r"^\s*CREATE\s+(UNIQUE\s+)?INDEX\b.*?\bON\s+(ONLY\s+)?auth\.",
        r"^\s*(CREATE|ALTER|DROP)\s+POLICY\b.*?\bON\s+auth\.",
        r"^\s*CREATE\s+(OR\s+REPLACE\s+)?(CONSTRAINT\s+)?TRIGGER\b.*?\bON\s+auth\.(?!users\b)",
        r"^\s*(GRANT|REVOKE)\b.*?\bON\s+(TABLE\s+|FUNCTION\s+|SEQUENCE\s+|SCHEMA\s+"
        r"|ALL\s+\w+\s+IN\s+SCHEMA\s+)?auth\b",
        r"^\s*COMMENT\s+ON\s+\w+(\s+\w+)?\s+auth\.",
        r"^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM|TRUNCATE(\s+TABLE)?)\s+(ONLY\s+)?auth\.",
    )
]


def check_statement(statement: str) -> list[tuple[str, str]]:
    """(rule, message) for each rule the statement breaks."""
    code = mask(statement)
    named = mask(statement, keep_identifiers=True).replace('"', "")
    problems: list[tuple[str, str]] = []
    if _TRANSACTION_CONTROL.match(code):
        problems.append(
            ("transaction", "each migration already runs in one transaction: no BEGIN/COMMIT")
        )
    if _CONCURRENTLY.search(code):
        problems.append(("concurrently", "CONCURRENTLY cannot run inside a transaction"))
    if _ROLES.search(code):
        problems.append(("roles", "roles belong to the platform: no CREATE/ALTER/DROP ROLE"))
    if _VAULT_SECRET.search(code):
        problems.append(("vault", "secrets never sit in migrations: no vault.create_secret"))
    if _FORBIDDEN_CALLS.search(code):
        problems.append(
            ("crypto", "no pgcrypto or uuid-ossp functions: use gen_random_uuid() and sha256()")
        )
    extension = _CREATE_EXTENSION.match(named)
    if extension:
        name = extension["name"].lower()
        schema = _EXTENSION_SCHEMA.search(extension["rest"])
        allowed_schemas = {"extensions", "pg_catalog"} if name == "pg_cron" else {"extensions"}
        if name in _FORBIDDEN_EXTENSIONS:
            problems.append(("crypto", f"extension {name} is not available everywhere"))
        elif (
            not extension["guard"]
            or schema is None
            or schema["schema"].lower() not in (allowed_schemas)
        ):
            problems.append(
                (
                    "extension",
                    "extensions are created with IF NOT EXISTS … WITH SCHEMA extensions",
                )
            )
    if any(rule.search(named) for rule in _AUTH_RULES):
        problems.append(
            (
                "auth",
                "the auth schema belongs to Supabase Auth (only FKs and triggers on auth.users)",
            )
        )
    return problems


def check(migration: Migration) -> list[Violation]:
    violations = []
    for index, statement in enumerate(migration.statements, start=1):
        for rule, message in check_statement(statement):
            violations.append(Violation(migration.file_name, rule, message, index))
    return violations


# -- checksums of committed files -------------------------------------------------------


def read_checksums(path: Path) -> dict[str, str]:
    """`sha256sum` format: `<hex digest>  <file name>` per line."""
    if not path.exists():
        return {}
    checksums = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            checksums[name.strip()] = digest
    return checksums


def checksum_violations(
    migrations: list[Migration], checksums: dict[str, str], *, require_listed: bool
) -> list[Violation]:
    violations = []
    on_disk = {m.file_name: m for m in migrations}
    for name, digest in checksums.items():
        migration = on_disk.get(name)
        if migration is None:
            violations.append(
                Violation(name, "checksum", f"listed in {CHECKSUMS_FILE} but the file is gone")
            )
        elif migration.sha256 != digest:
            violations.append(
                Violation(
                    name,
                    "checksum",
                    "an applied migration was edited; write a new migration instead",
                )
            )
    if require_listed:
        for name in on_disk.keys() - checksums.keys():
            violations.append(
                Violation(
                    name,
                    "checksum",
                    f"not listed in {CHECKSUMS_FILE}: run `aerelion db lock` when it is final",
                )
            )
    return violations


def lock(directory: Path, checksums_path: Path) -> list[str]:
    """Append the checksums of new migration files; existing lines are never changed."""
    found = discover(directory)
    checksums = read_checksums(checksums_path)
    added = [m for m in found.migrations if m.file_name not in checksums]
    if added:
        with checksums_path.open("a") as handle:
            for migration in added:
                handle.write(f"{migration.sha256}  {migration.file_name}\n")
    return [m.file_name for m in added]


def verify(directory: Path, checksums_path: Path, *, require_listed: bool) -> LocalMigrations:
    """Discover the files and check every rule; `violations` lists what is wrong."""
    found = discover(directory)
    for migration in found.migrations:
        found.violations.extend(check(migration))
    found.violations.extend(
        checksum_violations(
            found.migrations, read_checksums(checksums_path), require_listed=require_listed
        )
    )
    return found
