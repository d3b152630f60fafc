"""Test databases: a real PostgreSQL server, never a mock.

Without DATABASE_URL a throwaway embedded cluster is started in `.aerelion/` for the
session and deleted afterwards. With DATABASE_URL (a server where we may create
databases, e.g. the PostgreSQL 15 pass in CI) each test database is created there and
dropped afterwards.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from psycopg import sql

from aerelion import deploy, local_identity
from aerelion.app import App, create_app
from aerelion.embedded import throwaway
from aerelion.functions import load_functions
from aerelion.queries import QUERIES, parse
from support import (
    REPO,
    TEST_FUNCTIONS,
    TEST_RAISE,
    User,
    runtime_settings,
    settings_for,
)


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A URL to the `postgres` database of a server we may create databases on."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield configured
        return
    with throwaway(REPO / ".aerelion" / f"test-{os.getpid()}") as server:
        yield server.url()


@pytest.fixture(scope="session")
def create_database(server_url: str) -> Iterator[Callable[[], str]]:
    """A factory of empty databases, all dropped at the end of the session."""
    created: list[str] = []

    def create() -> str:
        name = f"aerelion_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))

    yield create
    with psycopg.connect(server_url, autocommit=True) as conn:
        for name in created:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def fresh_database(create_database: Callable[[], str]) -> str:
    return create_database()


@pytest.fixture(scope="module")
def database(create_database: Callable[[], str]) -> str:
    """The test module's own database with every migration applied (no seed); modules that
    need more define their own."""
    url = create_database()
    deploy.push(url, settings_for(), out=lambda _: None)
    return url


@pytest.fixture(scope="session")
def migrated_database(create_database: Callable[[], str]) -> str:
    """One database with the shim and every migration of the repository applied."""
    url = create_database()
    deploy.push(url, settings_for(), include_seed=True, out=lambda _: None)
    return url


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project folder (with the real shim) for migration tests."""
    (tmp_path / "supabase" / "migrations").mkdir(parents=True)
    (tmp_path / "supabase" / "config.toml").write_text('project_id = "test"\n')
    (tmp_path / "sql").mkdir()
    shutil.copy(REPO / "sql" / "platform_shim.sql", tmp_path / "sql" / "platform_shim.sql")
    return tmp_path


# -- the function runtime ----------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def runtime_database(create_database: Callable[[], str]) -> str:
    """A migrated database for the runtime tests, with a helper that raises any SQLSTATE."""
    url = create_database()
    deploy.push(url, settings_for(), out=lambda _: None)
    with deploy.connect(url) as conn:
        deploy.run_script(conn, TEST_RAISE)
    return url


@pytest.fixture(scope="session")
def users(runtime_database: str) -> dict[str, User]:
    """alice and bob (users) and root (an admin)."""
    made = {}
    with psycopg.connect(runtime_database, autocommit=True) as conn:
        for name in ("alice", "bob", "root"):
            email = f"{name}-{uuid.uuid4().hex[:6]}@example.com"
            made[name] = User(local_identity.create_user(conn, email, admin=name == "root"), email)
    return made


@pytest.fixture
async def app(runtime_database: str) -> AsyncIterator[App]:
    app = create_app(
        settings=runtime_settings(),
        database_url=runtime_database,
        functions=load_functions(TEST_FUNCTIONS),
        queries={**QUERIES, **parse((TEST_FUNCTIONS / "queries.sql").read_text())},
    )
    await app.runtime.database.open()
    yield app
    await app.runtime.database.close()


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4321))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client
