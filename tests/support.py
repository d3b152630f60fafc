"""What several test modules share (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from aerelion import local_identity
from aerelion.config import Settings

if TYPE_CHECKING:
    from aerelion.app import App

REPO = Path(__file__).resolve().parents[1]


def settings_for(project_dir: Path = REPO, **environ: str) -> Settings:
    """Settings that ignore the developer's `.env`: only what a test says."""
    base = {
        # The strict default: nothing is granted unless a migration grants it. The PG 15
        # pass in CI runs the suite with `legacy` to prove the REVOKEs as well.
        "AERELION_SHIM_DEFAULT_GRANTS": os.environ.get("AERELION_SHIM_DEFAULT_GRANTS", "none"),
    }
    base.update(environ)
    return Settings(project_dir, base)


def write_migration(project: Path, file_name: str, text: str) -> Path:
    path = project / "supabase" / "migrations" / file_name
    path.write_text(text)
    return path


# -- the function runtime ----------------------------------------------------------------

TEST_FUNCTIONS = REPO / "tests" / "functions"
JWT_SECRET = "local-test-jwt-secret-" + "0123456789abcdef" * 3
SERVICE_KEY = "sb_secret_" + "s" * 40
ALLOWED_ORIGIN = "https://app.example.com"
RUNTIME_SECRETS = {
    "SUPABASE_JWT_SECRET": JWT_SECRET,
    "SUPABASE_SERVICE_ROLE_KEY": SERVICE_KEY,
    "ALLOWED_ORIGINS": f"{ALLOWED_ORIGIN}, http://localhost:3000",
    "TEST_CRON_SECRET": "cron-" + "c" * 40,
    "TEST_HOOK_KEY": "hook-" + "h" * 40,
    "TEST_WEBHOOK_SECRET": "whsec_" + "w" * 40,
}
TEST_RAISE = """
create or replace function public.test_raise(code text, message text) returns void
language plpgsql as $$
begin
  raise exception using errcode = code, message = message, detail = 'the detail',
    hint = 'the hint';
end
$$;
grant execute on function public.test_raise(text, text) to anon, authenticated;
"""


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    email: str

    def token(self, **overrides: Any) -> str:
        claims = local_identity.user_claims(self.id, self.email)
        claims.update(overrides)
        return local_identity.sign(claims, JWT_SECRET)

    def headers(self, **overrides: Any) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(**overrides)}"}


def runtime_settings(**extra: str) -> Settings:
    return settings_for(**{**RUNTIME_SECRETS, **extra})


# -- acting as a role in SQL, as PostgREST does ------------------------------------------


def act_as(conn: Any, role: str, user_id: uuid.UUID | None = None) -> None:
    """Inside the connection's current transaction, become `role` with its JWT claims."""
    claims: dict[str, Any] = {"role": role}
    if user_id is not None:
        claims["sub"] = str(user_id)
    conn.execute(
        "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
        [role, json.dumps(claims)],
    )


def new_user(conn: Any, *, admin: bool = False) -> uuid.UUID:
    """A user (and its profile); committed."""
    user_id = local_identity.create_user(
        conn, f"user-{uuid.uuid4().hex[:10]}@example.com", admin=admin
    )
    return user_id


def present_human_signature(conn: Any, user_id: uuid.UUID, purpose: str = "ths") -> None:
    """Within the current transaction, store a valid human signature of `user_id` and
    carry its token in `request.headers`, as a request from verify-human-signature's
    client would (the superuser writes the record the service role normally writes)."""
    token = f"test-{uuid.uuid4().hex}"
    conn.execute(
        "insert into public.human_signatures"
        " (user_id, jti, purpose, token_hash, veracity_score, expires_at)"
        " values (%s, %s, %s, sha256(convert_to(%s, 'UTF8')), 90, now() + interval '1 hour')",
        [user_id, uuid.uuid4().hex, purpose, token],
    )
    conn.execute(
        "select set_config('request.headers', %s, true)", [json.dumps({"x-ths-token": token})]
    )


# -- the app in process ----------------------------------------------------------------------


@asynccontextmanager
async def running_app(database: str, settings: Settings) -> AsyncIterator[App]:
    """The app with every function, its pool open on `database`."""
    from aerelion.app import create_app

    app = create_app(settings=settings, database_url=database)
    await app.runtime.database.open()
    try:
        yield app
    finally:
        await app.runtime.database.close()


@asynccontextmanager
async def client_of(app: App) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to `app` in process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client
