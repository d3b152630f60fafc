"""The sealed audit log (`aerelion audit seal | verify | purge`).

Every rule lives in SQL (`supabase/migrations/20261203020000_audit_log_sealing.sql`):
`edge_function_logs` is append-only for every role, `seal_audit_log()` seals the rows of
settled transactions into hash-chained checkpoints, `verify_audit_log()` recomputes them
and names the first row or checkpoint that does not match, and `purge_audit_log()` is the
only way rows leave. These functions call them, each in its own transaction, as the
service role (`operations.acting`), the one role granted to run them.
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import errors

from aerelion.config import Settings
from aerelion.database import database_url
from aerelion.operations import acting
from aerelion.queries import QUERIES

_AGE = re.compile(r"^(\d+)\s*d$")


def seal(conn: psycopg.Connection) -> dict[str, Any] | None:
    """Seal the settled rows into a new checkpoint; None when there was nothing to seal."""
    with acting(conn) as cursor:
        return cursor.execute(QUERIES["seal_audit_log"]).fetchone()


def verify(conn: psycopg.Connection) -> dict[str, Any]:
    """ok, checkpoints, sealed_rows, unsealed_rows, fault, fault_seq, head_digest."""
    with acting(conn) as cursor:
        row = cursor.execute(QUERIES["verify_audit_log"]).fetchone()
    assert row is not None  # the function always returns one row
    return row


def purge(conn: psycopg.Connection, before: datetime) -> int:
    """Remove the sealed checkpoints whose rows are all older than `before`; rows removed."""
    if before.tzinfo is None:
        raise ValueError("the cut-off needs a time zone")
    with acting(conn) as cursor:
        row = cursor.execute(QUERIES["purge_audit_log"], {"before": before}).fetchone()
    assert row is not None
    return int(row["rows_removed"])


def parse_before(text: str, *, now: datetime | None = None) -> datetime:
    """A purge cut-off from the command line: `90d` (that many days ago), an ISO date
    (midnight UTC) or an ISO date-time (UTC unless it names an offset)."""
    text = text.strip()
    age = _AGE.match(text)
    if age:
        return (now or datetime.now(UTC)) - timedelta(days=int(age.group(1)))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a cut-off: {text!r} (use 90d, 2026-01-31 or an ISO time)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- what the CLI runs ------------------------------------------------------------------


def _failed(action: str, error: psycopg.Error) -> int:
    print(f"audit {action}: {error.diag.message_primary or error}", file=sys.stderr)
    return 2


def main_seal(settings: Settings, url: str | None = None) -> int:
    """`aerelion audit seal`: 0 when sealed or nothing to seal, 2 when it could not run."""
    try:
        with database_url(settings, url) as target, psycopg.connect(target) as conn:
            checkpoint = seal(conn)
    except psycopg.Error as error:
        return _failed("seal", error)
    if checkpoint is None:
        print("nothing to seal: every settled row is already sealed")
        return 0
    print(
        f"checkpoint {checkpoint['id']}: sealed {checkpoint['row_count']} rows"
        f" (seq {checkpoint['first_seq']}..{checkpoint['last_seq']},"
        f" transactions {checkpoint['previous_horizon']}..{checkpoint['horizon']})"
    )
    print(f"head digest: {checkpoint['digest']}")
    return 0


def report(result: dict[str, Any]) -> list[str]:
    """The lines `aerelion audit verify` prints."""
    lines = [
        "audit log: " + ("OK" if result["ok"] else f"TAMPERED: {result['fault']}"),
        f"checkpoints:   {result['checkpoints']}",
        f"sealed rows:   {result['sealed_rows']}",
        f"unsealed rows: {result['unsealed_rows']}",
        f"head digest:   {result['head_digest'] or '(nothing sealed yet)'}",
    ]
    if result["fault_seq"] is not None:
        lines.append(f"first faulty row: seq {result['fault_seq']}")
    if result["ok"] and result["head_digest"]:
        lines.append("record the head digest outside the database to detect a rewritten log")
    return lines


def main_verify(settings: Settings, url: str | None = None) -> int:
    """`aerelion audit verify`: 0 when the log verifies, 1 on a fault, 2 when it could not
    run."""
    try:
        with database_url(settings, url) as target, psycopg.connect(target) as conn:
            result = verify(conn)
    except psycopg.Error as error:
        return _failed("verify", error)
    for line in report(result):
        print(line)
    return 0 if result["ok"] else 1


def main_purge(settings: Settings, url: str | None, before: datetime | str) -> int:
    """`aerelion audit purge BEFORE`: 0 when done (or nothing old enough), 1 when refused
    (the log does not verify), 2 when it could not run."""
    cutoff = parse_before(before) if isinstance(before, str) else before
    try:
        with database_url(settings, url) as target, psycopg.connect(target) as conn:
            removed = purge(conn, cutoff)
    except errors.ObjectNotInPrerequisiteState as error:
        print(f"audit purge refused: {error.diag.message_primary}", file=sys.stderr)
        return 1
    except psycopg.Error as error:
        return _failed("purge", error)
    if removed:
        print(f"purged {removed} rows: whole checkpoints older than {cutoff.isoformat()}")
    else:
        print(f"nothing to purge: no sealed checkpoint is entirely older than {cutoff.isoformat()}")
    return 0
