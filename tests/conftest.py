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
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from aerelion import deploy
from aerelion.embedded import throwaway
from support import REPO, settings_for


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
