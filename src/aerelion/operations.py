"""Operator commands that run SQL functions directly (the `aerelion` CLI): the operational
mode and retention. They act as the service role, or as a named admin, exactly as a
request would, so the same checks and audit rows apply."""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from aerelion import local_identity
from aerelion.queries import QUERIES


def service_claims() -> dict[str, str]:
    """The service role, naming the operator at the shell as the actor (`cli:<user>`)."""
    return {"role": "service_role", "actor": f"cli:{getpass.getuser()}"}


@contextmanager
def acting(conn: psycopg.Connection, as_email: str | None = None) -> Iterator[psycopg.Cursor]:
    """A transaction of its own as `as_email` (a signed-in user) or else as the service
    role, with claims set as for a request, so the same checks and audit rows apply."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        # Inside a caller's transaction the role would outlive this block.
        raise ValueError("operator commands need a connection outside a transaction")
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
        if as_email is None:
            role, claims = "service_role", service_claims()
        else:
            user_id = local_identity.find_user(conn, as_email)
            if user_id is None:
                raise LookupError(f"no user {as_email}")
            role, claims = "authenticated", {"role": "authenticated", "sub": str(user_id)}
        cursor.execute(
            QUERIES["act_as"],
            {
                "statement_timeout": None,
                "role": role,
                "claims": json.dumps(claims),
                "method": "",
                "path": "",
                "headers": "{}",
            },
        )
        yield cursor


def show_mode(conn: psycopg.Connection) -> dict[str, Any]:
    with acting(conn) as cursor:
        return cursor.execute(QUERIES["show_mode"]).fetchone()


def set_mode(conn: psycopg.Connection, mode: str, as_email: str | None = None) -> dict[str, Any]:
    with acting(conn, as_email) as cursor:
        return cursor.execute(QUERIES["set_operational_mode"], {"mode": mode}).fetchone()


def apply_retention(conn: psycopg.Connection) -> dict[str, int]:
    with acting(conn) as cursor:
        return cursor.execute(QUERIES["apply_retention"]).fetchone()["report"]


JOB_QUERIES = {
    "show": "show_provisioning_job",
    "retry": "retry_provisioning_job",
    "cancel": "cancel_provisioning_job",
}


def list_jobs(conn: psycopg.Connection, status: str | None, limit: int) -> list[dict[str, Any]]:
    with acting(conn) as cursor:
        return cursor.execute(
            QUERIES["list_provisioning_jobs"], {"status": status, "limit": limit}
        ).fetchall()


def job(conn: psycopg.Connection, command: str, job_id: str) -> dict[str, Any]:
    """show, retry or cancel one job, as the service role (retries are audited)."""
    with acting(conn) as cursor:
        row = cursor.execute(QUERIES[JOB_QUERIES[command]], {"job_id": job_id}).fetchone()
    if row is None:
        raise LookupError(f"no job {job_id}")
    return row
