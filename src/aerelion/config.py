"""Configuration from the environment (and a git-ignored `.env` for local runs).

The process environment wins over `.env`. Settings that operators change at run time
live in the `system_registry` table; where both exist the environment wins. Every
variable is listed in the README. `Settings.problems()` reports each mistake in one line
so `aerelion check` (and every server start) can fail fast.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values
from psycopg.conninfo import conninfo_to_dict

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
MIN_SECRET_BYTES = 32  # HS256 keys shorter than the hash are weak (RFC 7518 §3.2)
SUPAVISOR_TRANSACTION_PORT = 6543  # Supabase's transaction pooler port
LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost", ""}


def find_project_dir(start: Path | None = None) -> Path:
    """The folder holding `supabase/config.toml`, searched upwards from `start`."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "supabase" / "config.toml").exists():
            return folder
    return start


def load_environ(project_dir: Path) -> dict[str, str]:
    """`.env` values overlaid by the real environment."""
    values = {k: v for k, v in dotenv_values(project_dir / ".env").items() if v is not None}
    values.update(os.environ)
    return values


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    return int(raw) if raw else default


@dataclass(frozen=True)
class Settings:
    project_dir: Path
    environ: Mapping[str, str]

    @classmethod
    def load(cls, project_dir: Path | None = None) -> Settings:
        folder = project_dir or find_project_dir()
        return cls(folder, load_environ(folder))

    def get(self, name: str) -> str | None:
        value = self.environ.get(name, "").strip()
        return value or None

    # -- where things are --------------------------------------------------------------

    @property
    def migrations_dir(self) -> Path:
        return self.project_dir / "supabase" / "migrations"

    @property
    def checksums_path(self) -> Path:
        return self.project_dir / "supabase" / "migrations.sha256"

    @property
    def shim_path(self) -> Path:
        return self.project_dir / "sql" / "platform_shim.sql"

    @property
    def seed_paths(self) -> list[Path]:
        return [self.project_dir / "supabase" / "seed.sql"]

    @property
    def functions_dir(self) -> Path:
        return self.project_dir / "functions"

    @property
    def state_dir(self) -> Path:
        """Local state (embedded PostgreSQL); git-ignored."""
        configured = self.get("AERELION_STATE_DIR")
        return Path(configured) if configured else self.project_dir / ".aerelion"

    # -- database ----------------------------------------------------------------------

    @property
    def database_url(self) -> str | None:
        """None means: run the embedded PostgreSQL."""
        return self.get("DATABASE_URL")

    @property
    def database_listen_url(self) -> str | None:
        """The direct (session) connection for LISTEN/NOTIFY; defaults to DATABASE_URL."""
        return self.get("DATABASE_LISTEN_URL") or self.database_url

    @property
    def transaction_pooler(self) -> bool:
        """Whether DATABASE_URL goes through a transaction pooler (no prepared statements)."""
        mode = (self.get("DATABASE_POOL_MODE") or "auto").lower()
        if mode == "auto":
            return _port(self.database_url) == SUPAVISOR_TRANSACTION_PORT
        return mode == "transaction"

    @property
    def shim_default_grants(self) -> str:
        return (self.get("AERELION_SHIM_DEFAULT_GRANTS") or "legacy").lower()

    @property
    def db_pool_size(self) -> int:
        return _int(self.environ, "AERELION_DB_POOL_SIZE", 10)

    # -- serving -----------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.get("AERELION_HOST") or "127.0.0.1"

    @property
    def port(self) -> int:
        return _int(self.environ, "AERELION_PORT", 54321)

    @property
    def max_body_bytes(self) -> int:
        return _int(self.environ, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)

    def serving_problems(self) -> list[str]:
        """What would stop functions from being served safely."""
        from aerelion.cors import origin_problems
        from aerelion.vault import vault_problems

        found = []
        secret = self.get("SUPABASE_JWT_SECRET")
        jwks_url = self.get("SUPABASE_JWKS_URL")
        if not secret and not jwks_url:
            found.append("set SUPABASE_JWT_SECRET or SUPABASE_JWKS_URL to verify user tokens")
        if secret and len(secret.encode()) < MIN_SECRET_BYTES:
            found.append(f"SUPABASE_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")
        if jwks_url and urlsplit(jwks_url).scheme not in ("http", "https"):
            found.append("SUPABASE_JWKS_URL must be an http(s) URL")
        for name in ("THS_SIGNING_SECRET", "SUPABASE_SERVICE_ROLE_KEY"):
            value = self.get(name)
            if value and len(value.encode()) < MIN_SECRET_BYTES:
                found.append(f"{name} must be at least {MIN_SECRET_BYTES} bytes")
        found += origin_problems(self.get("ALLOWED_ORIGINS") or "")
        found += self.stripe_problems()
        found += vault_problems(self.environ)
        return found

    def stripe_problems(self) -> list[str]:
        found = []
        base = self.get("STRIPE_API_BASE")
        if base and urlsplit(base).scheme not in ("http", "https"):
            found.append("STRIPE_API_BASE must be an http(s) URL")
        secrets = {}
        for name in ("STRIPE_LIBRARY_WEBHOOK_SECRET", "STRIPE_PORTAL_WEBHOOK_SECRET"):
            value = self.get(name)
            if value and not value.startswith("whsec_"):
                found.append(f"{name} must be a Stripe endpoint signing secret (whsec_...)")
            secrets[name] = value
        if len(set(secrets.values())) == 1 and None not in secrets.values():
            found.append(
                "STRIPE_LIBRARY_WEBHOOK_SECRET and STRIPE_PORTAL_WEBHOOK_SECRET must differ: "
                "each webhook endpoint has its own secret"
            )
        return found

    def problems(self) -> list[str]:
        """Every configuration mistake, one line each (empty when all is well)."""
        found = []
        for name in ("DATABASE_URL", "DATABASE_LISTEN_URL"):
            url = self.get(name)
            if url and urlsplit(url).scheme not in ("postgres", "postgresql"):
                found.append(f"{name} must be a postgresql:// URL")
        if (self.get("DATABASE_POOL_MODE") or "auto").lower() not in (
            "auto",
            "session",
            "transaction",
        ):
            found.append("DATABASE_POOL_MODE must be auto, session or transaction")
        if _port(self.database_listen_url) == SUPAVISOR_TRANSACTION_PORT:
            found.append(
                "DATABASE_LISTEN_URL points at a transaction pooler; LISTEN needs a direct "
                "or session connection"
            )
        if self.shim_default_grants not in ("legacy", "none"):
            found.append("AERELION_SHIM_DEFAULT_GRANTS must be legacy or none")
        for name in ("AERELION_PORT", "AERELION_DB_POOL_SIZE", "MAX_BODY_BYTES"):
            raw = self.get(name)
            if raw is not None and (not raw.isdigit() or int(raw) <= 0):
                found.append(f"{name} must be a positive integer")
        return found


def _port(url: str | None) -> int | None:
    if not url:
        return None
    try:
        return urlsplit(url).port
    except ValueError:
        return None


def is_loopback(url: str) -> bool:
    """Whether a database URL points only at this machine (loopback TCP or unix socket)."""
    hosts = (conninfo_to_dict(url).get("host") or "").split(",")
    return all(host.startswith("/") or host in LOOPBACK_HOSTS for host in hosts)
