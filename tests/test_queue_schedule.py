"""On hosted Supabase the queue-processor is called every minute by pg_cron + pg_net; the
migration schedules it only where both are installed, and the URL and secret are read when
the job runs. Proven on Debian's PostgreSQL 15 with pg_cron preloaded and a stand-in
`net.http_post` that records its calls."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from aerelion import deploy
from aerelion.embedded import throwaway
from support import REPO, act_as, settings_for

DEBIAN_PG15 = Path("/usr/lib/postgresql/15/bin")
PG_CRON = Path("/usr/lib/postgresql/15/lib/pg_cron.so")

STAND_IN_PG_NET = """
create schema if not exists net;
create table net.calls (
  id bigserial primary key, url text, body jsonb, params jsonb, headers jsonb, timeout integer
);
create function net.http_post(
  url text, body jsonb default '{}', params jsonb default '{}',
  headers jsonb default '{"Content-Type": "application/json"}',
  timeout_milliseconds integer default 5000
) returns bigint language sql as $$
  insert into net.calls (url, body, params, headers, timeout)
  values (url, body, params, headers, timeout_milliseconds) returning id
$$;
"""


@pytest.fixture(scope="module")
def cron_database() -> Iterator[str]:
    if not PG_CRON.exists():
        if os.environ.get("AERELION_REQUIRE_PG_CRON"):
            pytest.fail("pg_cron is required here (apt-get install postgresql-15-cron)")
        pytest.skip("Debian's postgresql-15-cron is not installed")
    root = REPO / ".aerelion" / f"test-cron-{os.getpid()}"
    settings = {"shared_preload_libraries": "pg_cron", "cron.database_name": "postgres"}
    with throwaway(root, binaries=DEBIAN_PG15, settings=settings) as server:
        url = server.url()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("create extension pg_cron")
            deploy.run_script(conn, STAND_IN_PG_NET)
        deploy.push(url, settings_for(), out=lambda _: None)
        yield url


def test_the_call_is_scheduled_every_minute_without_secrets(cron_database):
    with psycopg.connect(cron_database, row_factory=dict_row) as conn:
        jobs = conn.execute("select jobname, schedule, command from cron.job").fetchall()
    assert jobs == [
        {
            "jobname": "aerelion-queue-processor",
            "schedule": "* * * * *",
            "command": "SELECT public.trigger_queue_processor()",
        }
    ]


def test_the_call_reads_url_and_secret_when_it_runs(cron_database):
    with psycopg.connect(cron_database, autocommit=True, row_factory=dict_row) as conn:

        def trigger():
            with conn.transaction():
                act_as(conn, "service_role")
                return conn.execute("select public.trigger_queue_processor() as id").fetchone()

        assert trigger() == {"id": None}  # no secret configured: nothing is sent
        assert conn.execute("select count(*) as n from net.calls").fetchone() == {"n": 0}
        conn.execute(
            "update public.system_registry set value = 'cron-s3cret'"
            " where namespace = 'queue' and key = 'cron_secret'"
        )
        conn.execute(
            "update public.system_registry set value = 'https://fn.example.com/functions/v1/'"
            " where namespace = 'app' and key = 'functions_url'"
        )
        request_id = trigger()["id"]
        call = conn.execute("select * from net.calls where id = %s", [request_id]).fetchone()
    assert call["url"] == "https://fn.example.com/functions/v1/queue-processor"
    assert call["headers"]["Authorization"] == "Bearer cron-s3cret"
    assert "triggered_at" in call["body"]


def test_nothing_is_scheduled_without_pg_cron(migrated_database):
    with psycopg.connect(migrated_database) as conn:
        assert conn.execute("select to_regnamespace('cron')").fetchone() == (None,)
        act_as(conn, "service_role")
        assert conn.execute("select public.schedule_queue_processor()").fetchone() == (None,)
