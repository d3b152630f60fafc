"""The request log is a sealed, append-only audit trail: no role rewrites it, sealing covers
only settled rows, verification names the first tampered row or checkpoint, and purging
is the one way rows leave, leaving its own record."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from aerelion import audit, deploy, local_identity
from aerelion.queries import QUERIES
from support import settings_for

AUDIT_TABLES = ["edge_function_logs", "audit_checkpoints", "audit_log_seals", "audit_purges"]
ROLES = ["owner", "service_role", "admin", "anon"]

# Every column of the log, and a different value for each: the row hash must cover all.
# A new column fails this test until audit_row_hash() covers it.
OTHER_VALUES = {
    "id": str(uuid.uuid4()),
    "function_name": "other-function",
    "level": "error",
    "message": "another message",
    "details": {"request_id": "another"},
    "user_id": str(uuid.uuid4()),
    "ip_address": "198.51.100.1",
    "duration_ms": 77,
    "status_code": 418,
    "created_at": "2001-02-03T04:05:06.789012+00:00",
    "seq": 999_999,
    "xid": "12345",
}


def migrate(url: str) -> str:
    deploy.push(url, settings_for(), out=lambda _: None)
    return url


def migrate_sealed(url: str) -> str:
    """Migrated, with what the migrations themselves logged already sealed."""
    migrate(url)
    with connect(url) as conn:
        seal(conn)
    return url


def connect(url: str) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


def log(conn: psycopg.Connection, message: str, **extra: Any) -> int:
    """One row through the runtime's own statement; its seq."""
    params = {
        "function_name": "test",
        "message": message,
        "status_code": 200,
        "duration_ms": 1,
        "user_id": None,
        "ip_address": "127.0.0.1",
        "details": None,
        "level": None,
        **extra,
    }
    row_id = conn.execute(QUERIES["record_edge_function_log"], params).fetchone()["id"]
    return conn.execute(
        "select seq from public.edge_function_logs where id = %s", [row_id]
    ).fetchone()["seq"]


def settle(conn: psycopg.Connection, rows: list[int] | None = None) -> None:
    """Wait until the rows (default: all visible) are settled. Any transaction in the
    cluster holds the sealing horizon back while it runs, autovacuum's included."""
    deadline = time.monotonic() + 10
    while not conn.execute(
        "select coalesce(bool_and(xid < pg_snapshot_xmin(pg_current_snapshot())), true) as done"
        " from public.edge_function_logs where %(rows)s::bigint[] is null or seq = any(%(rows)s)",
        {"rows": rows},
    ).fetchone()["done"]:
        assert time.monotonic() < deadline, "rows never settled"
        time.sleep(0.05)


def seal(conn: psycopg.Connection, rows: list[int] | None = None) -> dict[str, Any] | None:
    settle(conn, rows)
    return audit.seal(conn)


def seqs(conn: psycopg.Connection) -> list[int]:
    rows = conn.execute("select seq from public.edge_function_logs order by seq").fetchall()
    return [row["seq"] for row in rows]


def sealed(conn: psycopg.Connection) -> list[int]:
    rows = conn.execute("select seq from public.audit_log_seals order by seq").fetchall()
    return [row["seq"] for row in rows]


@contextmanager
def tampering(url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """A superuser connection with triggers off, as an attacker with full access."""
    with connect(url) as conn:
        conn.execute("set session_replication_role = replica")
        yield conn


@contextmanager
def acting(
    url: str, role: str, user_id: uuid.UUID | None = None
) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """A transaction as `role` (the owner: the connecting superuser), rolled back."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        if role != "owner":
            claims = {"role": role, **({"sub": str(user_id)} if user_id else {})}
            conn.execute(
                "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
                [role, json.dumps(claims)],
            )
        yield conn
        conn.rollback()


def refused(url: str, role: str, statement: str, user_id: uuid.UUID | None = None) -> str:
    """The message of the 42501 error `statement` gets as `role`."""
    with acting(url, role, user_id) as conn, pytest.raises(errors.InsufficientPrivilege) as error:
        conn.execute(statement)
    return str(error.value)


def sealed_log(url: str) -> dict[str, Any]:
    """Seven seqs with a gap (a rolled-back insert), sealed into two checkpoints."""
    with connect(url) as conn:
        first = [log(conn, "one"), log(conn, "two")]
        with pytest.raises(ZeroDivisionError), conn.transaction():
            log(conn, "rolled back")
            raise ZeroDivisionError
        first += [log(conn, "four"), log(conn, "five")]
        one = seal(conn)
        second = [log(conn, "six"), log(conn, "seven")]
        two = seal(conn)
        assert audit.verify(conn)["ok"]
    gap = next(n for n in range(first[0], first[-1]) if n not in first)
    return {"first": first, "second": second, "gap": gap, "checkpoints": [one, two]}


# -- append-only ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def busy_log(create_database: Callable[[], str]) -> dict[str, Any]:
    """A log with rows, checkpoints, seals and a purge record, and an admin user."""
    url = migrate(create_database())
    with connect(url) as conn:
        log(conn, "purged soon")
        seal(conn)
        assert audit.purge(conn, datetime.now(UTC) + timedelta(hours=1)) > 0
        log(conn, "kept")
        seal(conn)
        log(conn, "unsealed")
        admin = local_identity.create_user(conn, "root@example.com", admin=True)
        counts = {
            t: conn.execute(f"select count(*) from public.{t}").fetchone() for t in AUDIT_TABLES
        }
    assert all(count["count"] > 0 for count in counts.values()), counts
    return {"url": url, "admin": admin, "counts": counts}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("table", AUDIT_TABLES)
def test_no_role_rewrites_the_audit_trail(busy_log, table, role):
    url, admin = busy_log["url"], busy_log["admin"]
    user = admin if role == "admin" else None
    db_role = "authenticated" if role == "admin" else role
    first_column = {
        "edge_function_logs": "message",
        "audit_checkpoints": "digest",
        "audit_log_seals": "row_hash",
        "audit_purges": "rows_removed",
    }[table]
    for statement in (
        f"update public.{table} set {first_column} = {first_column}",
        f"delete from public.{table}",
        f"truncate public.{table} cascade",
    ):
        message = refused(url, db_role, statement, user)
        if role == "owner":  # privileges do not bind the owner: the triggers refuse
            assert f"public.{table} is append-only" in message
    with connect(url) as conn:
        after = {
            t: conn.execute(f"select count(*) from public.{t}").fetchone() for t in AUDIT_TABLES
        }
    assert after == busy_log["counts"]


def test_admins_read_the_audit_tables_and_users_do_not(busy_log):
    url = busy_log["url"]
    with acting(url, "authenticated", busy_log["admin"]) as conn:
        for table in AUDIT_TABLES:
            assert conn.execute(f"select count(*) from public.{table}").fetchone()["count"] > 0
    with acting(url, "authenticated", uuid.uuid4()) as conn:
        for table in AUDIT_TABLES[1:]:
            assert conn.execute(f"select count(*) from public.{table}").fetchone()["count"] == 0
    refused(url, "anon", "select * from public.audit_checkpoints")


def test_the_runtime_still_writes_log_rows(fresh_database):
    url = migrate_sealed(fresh_database)
    with connect(url) as conn:  # the runtime writes as the connecting role (the owner)
        first = log(conn, "as the owner")
    with acting(url, "service_role") as conn:
        row_id = conn.execute(
            "select public.record_edge_function_log('test', 'as the service', 200, 3) as id"
        ).fetchone()["id"]
        row = conn.execute(
            "select seq, xid::text as xid, pg_current_xact_id()::text as current"
            " from public.edge_function_logs where id = %s",
            [row_id],
        ).fetchone()
        assert row["seq"] > first
        assert row["xid"] == row["current"]
    refused(
        url,
        "service_role",
        "insert into public.edge_function_logs (function_name, message) values ('x', 'y')",
    )


# -- sealing -------------------------------------------------------------------------------


def test_sealing_covers_only_settled_rows(fresh_database):
    url = migrate_sealed(fresh_database)
    with connect(url) as conn, psycopg.connect(url, row_factory=dict_row) as writer:
        conn.execute("set lock_timeout = '5s'")
        base = audit.verify(conn)
        already = sealed(conn)
        early = [log(conn, "early one"), log(conn, "early two")]

        # An open transaction with an uncommitted row; a later row commits before it.
        pending = log(writer, "still running")
        later = log(conn, "committed after the running transaction began")

        checkpoint = seal(conn, early)  # waits for no lock the writer holds
        assert checkpoint is not None
        assert sealed(conn) == [*already, *early]
        assert (checkpoint["row_count"], checkpoint["first_seq"]) == (2, early[0])
        result = audit.verify(conn)
        assert result["ok"] is True
        assert (result["sealed_rows"], result["unsealed_rows"]) == (base["sealed_rows"] + 2, 1)

        writer.commit()
        second = seal(conn)
        assert second is not None
        assert sealed(conn) == [*already, *early, pending, later]
        assert second["previous_digest"] == checkpoint["digest"]
        assert second["previous_horizon"] == checkpoint["horizon"]
        assert seal(conn) is None  # nothing new: no checkpoint

        result = audit.verify(conn)
        assert result == {
            "ok": True,
            "checkpoints": base["checkpoints"] + 2,
            "sealed_rows": base["sealed_rows"] + 4,
            "unsealed_rows": 0,
            "fault": None,
            "fault_seq": None,
            "head_digest": second["digest"],
        }


def test_writers_do_not_wait_for_a_sealer(fresh_database):
    url = migrate_sealed(fresh_database)
    with connect(url) as conn:
        log(conn, "to seal")
        settle(conn)
    with psycopg.connect(url, row_factory=dict_row) as sealer, connect(url) as writer:
        sealer.execute("set local role service_role")
        assert sealer.execute("select * from public.seal_audit_log()").fetchone()["id"]
        writer.execute("set lock_timeout = '1s'")
        log(writer, "written while the sealing transaction is open")
        sealer.commit()
        assert audit.verify(writer)["unsealed_rows"] == 1


def test_the_first_seal_covers_the_rows_logged_before_the_migration(fresh_database):
    url = migrate(fresh_database)
    with connect(url) as conn:
        logged = len(seqs(conn))  # what the migrations themselves logged
        assert audit.verify(conn) == {
            "ok": True,
            "checkpoints": 0,
            "sealed_rows": 0,
            "unsealed_rows": logged,
            "fault": None,
            "fault_seq": None,
            "head_digest": None,
        }
        first = seal(conn)
        assert (first["row_count"] if first else 0) == logged
        assert seal(conn) is None  # nothing new: no checkpoint
        result = audit.verify(conn)
        assert (result["ok"], result["sealed_rows"], result["unsealed_rows"]) == (True, logged, 0)


def test_verify_counts_the_rows_not_sealed_yet(fresh_database):
    url = migrate_sealed(fresh_database)
    with connect(url) as conn:
        base = audit.verify(conn)["sealed_rows"]
        log(conn, "one")
        assert audit.verify(conn)["unsealed_rows"] == 1
        seal(conn)
        log(conn, "two")
        log(conn, "three")
        result = audit.verify(conn)
        assert (result["ok"], result["sealed_rows"], result["unsealed_rows"]) == (True, base + 1, 2)


def test_the_audit_functions_need_the_service_role(fresh_database):
    url = migrate_sealed(fresh_database)
    with connect(url) as conn:
        admin = local_identity.create_user(conn, "root@example.com", admin=True)
    for call in (
        "select * from public.seal_audit_log()",
        "select * from public.verify_audit_log()",
        "select public.purge_audit_log(now())",
    ):
        refused(url, "authenticated", call, admin)
        refused(url, "anon", call)
    with acting(url, "service_role") as conn:
        assert conn.execute("select * from public.verify_audit_log()").fetchone()["ok"]


def test_audit_functions_refuse_a_connection_inside_a_transaction(fresh_database):
    url = migrate_sealed(fresh_database)
    with psycopg.connect(url) as conn:
        conn.execute("select 1")
        with pytest.raises(ValueError, match="outside a transaction"):
            audit.verify(conn)


# -- the row hash --------------------------------------------------------------------------


def test_the_row_hash_covers_every_column(fresh_database):
    url = migrate_sealed(fresh_database)
    with connect(url) as conn:
        columns = conn.execute(
            "select attname from pg_attribute"
            " where attrelid = 'public.edge_function_logs'::regclass"
            " and attnum > 0 and not attisdropped"
        ).fetchall()
        assert {c["attname"] for c in columns} == set(OTHER_VALUES)
        seq = log(conn, "hashed", details=Jsonb({"request_id": "r1"}), user_id=uuid.uuid4())
        for column, value in OTHER_VALUES.items():
            changed = conn.execute(
                "select public.audit_row_hash(l) <> public.audit_row_hash("
                "  jsonb_populate_record(l, jsonb_build_object(%s::text, %s::jsonb))) as differs"
                " from public.edge_function_logs l where seq = %s",
                [column, json.dumps(value), seq],
            ).fetchone()
            assert changed["differs"], column


def test_the_row_hash_tells_sql_null_from_json_null(fresh_database):
    url = migrate_sealed(fresh_database)
    with connect(url) as conn:
        conn.execute(
            "insert into public.edge_function_logs (function_name, message, details)"
            " values ('test', 'json null', 'null'::jsonb)"
        )
        differs = conn.execute(
            "select public.audit_row_hash(l) <> public.audit_row_hash("
            "  jsonb_populate_record(l, '{\"details\": null}')) as differs"
            " from public.edge_function_logs l where message = 'json null'"
        ).fetchone()["differs"]
    assert differs


def test_the_row_hash_does_not_depend_on_the_session(fresh_database):
    url = migrate_sealed(fresh_database)
    hashes = set()
    with connect(url) as conn:
        seq = log(conn, "zoned")
        for zone, style in (
            ("UTC", "ISO, MDY"),
            ("Pacific/Chatham", "SQL, DMY"),
            ("America/St_Johns", "German"),
        ):
            conn.execute(
                "select set_config('TimeZone', %s, false), set_config('DateStyle', %s, false)",
                [zone, style],
            )
            hashes.add(
                conn.execute(
                    "select public.audit_row_hash(l) as h from public.edge_function_logs l"
                    " where seq = %s",
                    [seq],
                ).fetchone()["h"]
            )
    assert len(hashes) == 1


# -- tampering (each on its own database) --------------------------------------------------


def test_a_changed_row_is_named(fresh_database):
    url = migrate_sealed(fresh_database)
    log_ = sealed_log(url)
    target = log_["first"][2]
    with tampering(url) as conn:
        conn.execute(
            "update public.edge_function_logs set message = 'rewritten' where seq = %s", [target]
        )
        result = audit.verify(conn)
    assert (result["ok"], result["fault"], result["fault_seq"]) == (
        False,
        f"row {target} was changed",
        target,
    )


def test_a_removed_row_is_named(fresh_database):
    url = migrate_sealed(fresh_database)
    log_ = sealed_log(url)
    target = log_["second"][0]
    with tampering(url) as conn:
        conn.execute("delete from public.edge_function_logs where seq = %s", [target])
        result = audit.verify(conn)
    assert (result["ok"], result["fault"], result["fault_seq"]) == (
        False,
        f"row {target} was removed",
        target,
    )


def test_a_row_inserted_behind_the_seal_is_named(fresh_database):
    url = migrate_sealed(fresh_database)
    log_ = sealed_log(url)
    gap, neighbour = log_["gap"], log_["first"][0]
    with tampering(url) as conn:
        conn.execute(
            "insert into public.edge_function_logs (seq, xid, function_name, message)"
            " overriding system value"
            " select %s, xid, 'test', 'slipped in' from public.edge_function_logs where seq = %s",
            [gap, neighbour],
        )
        result = audit.verify(conn)
    assert (result["ok"], result["fault"], result["fault_seq"]) == (
        False,
        f"row {gap} was inserted behind the seal",
        gap,
    )


def test_a_row_claiming_a_future_transaction_is_named(fresh_database):
    url = migrate_sealed(fresh_database)
    sealed_log(url)
    with connect(url) as conn:  # the owner may insert, but not name a future transaction
        conn.execute(
            "insert into public.edge_function_logs (xid, function_name, message)"
            " values ((pg_current_xact_id()::text::bigint + 1000000)::text::xid8, 'test', 'later')"
        )
        seq = max(seqs(conn))
        result = audit.verify(conn)
    assert (result["ok"], result["fault"], result["fault_seq"]) == (
        False,
        f"row {seq} names a transaction that has not started",
        seq,
    )


def test_sealing_needs_read_committed(fresh_database):
    url = migrate_sealed(fresh_database)
    with psycopg.connect(url, row_factory=dict_row) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with pytest.raises(errors.ObjectNotInPrerequisiteState, match="READ COMMITTED"):
            audit.seal(conn)


def test_a_forged_checkpoint_digest_is_named(fresh_database):
    url = migrate_sealed(fresh_database)
    first = sealed_log(url)["checkpoints"][0]
    with tampering(url) as conn:
        conn.execute(
            "update public.audit_checkpoints set digest = sha256('forged'::bytea) where id = %s",
            [first["id"]],
        )
        result = audit.verify(conn)
    assert result["ok"] is False
    assert result["fault"] == f"checkpoint {first['id']} does not match its seals"
    assert result["fault_seq"] is None


def test_a_changed_row_with_a_recomputed_seal_breaks_its_checkpoint(fresh_database):
    url = migrate_sealed(fresh_database)
    log_ = sealed_log(url)
    target, first = log_["first"][1], log_["checkpoints"][0]
    with tampering(url) as conn:
        conn.execute(
            "update public.edge_function_logs set status_code = 500 where seq = %s", [target]
        )
        conn.execute(
            "update public.audit_log_seals s set row_hash = public.audit_row_hash(l)"
            " from public.edge_function_logs l where l.seq = s.seq and s.seq = %s",
            [target],
        )
        result = audit.verify(conn)
    assert result["fault"] == f"checkpoint {first['id']} does not match its seals"


def test_a_relinked_chain_is_named(fresh_database):
    url = migrate_sealed(fresh_database)
    first, second = sealed_log(url)["checkpoints"]
    with tampering(url) as conn:
        conn.execute(
            "update public.audit_checkpoints set previous_digest = sha256('other'::bytea),"
            " digest = public.audit_chain_digest(sha256('other'::bytea),"
            "   (select string_agg(row_hash, ''::bytea order by seq) from public.audit_log_seals"
            "    where checkpoint_id = %s))"
            " where id = %s",
            [second["id"], second["id"]],
        )
        result = audit.verify(conn)
    assert result["fault"] == f"checkpoint {second['id']} does not link to checkpoint {first['id']}"


def test_a_cut_off_tail_shows_only_against_the_recorded_head(fresh_database):
    """Inside the database a superuser may drop the newest checkpoint with its seals and
    rows; the head digest recorded outside the database is what reveals it."""
    url = migrate_sealed(fresh_database)
    log_ = sealed_log(url)
    first, second = log_["checkpoints"]
    recorded = second["digest"]
    with tampering(url) as conn:
        conn.execute("delete from public.edge_function_logs where seq = any(%s)", [log_["second"]])
        conn.execute("delete from public.audit_log_seals where checkpoint_id = %s", [second["id"]])
        conn.execute("delete from public.audit_checkpoints where id = %s", [second["id"]])
        result = audit.verify(conn)
    assert result["ok"] is True
    assert result["head_digest"] == first["digest"] != recorded


# -- purging -------------------------------------------------------------------------------


def database_now(conn: psycopg.Connection) -> datetime:
    return conn.execute("select clock_timestamp() as now").fetchone()["now"]


def test_purge_removes_old_checkpoints_and_verification_starts_from_it(fresh_database):
    url = migrate_sealed(fresh_database)
    with connect(url) as conn:
        base = audit.verify(conn)  # the migrations' own rows, sealed
        old = [*seqs(conn), log(conn, "old one"), log(conn, "old two")]
        first = seal(conn)
        cutoff = database_now(conn)
        young = log(conn, "young")
        second = seal(conn)

        assert audit.purge(conn, cutoff) == len(old)
        assert set(old).isdisjoint(seqs(conn)) and young in seqs(conn)
        purge = conn.execute("select * from public.audit_purges").fetchone()
        assert purge["through_checkpoint_id"] == first["id"]
        assert purge["through_digest"].hex() == first["digest"] == second["previous_digest"]
        assert (purge["rows_removed"], purge["checkpoints_removed"]) == (
            len(old),
            base["checkpoints"] + 1,
        )
        assert purge["xid"] is not None
        trail = conn.execute(
            "select seq, function_name, level, message, details from public.edge_function_logs"
            " where seq > %s",
            [young],
        ).fetchone()
        assert (trail["function_name"], trail["level"]) == ("audit", "warn")
        assert trail["message"].startswith(f"purged {len(old)} rows in ")
        assert trail["details"]["through_digest"] == first["digest"]

        result = audit.verify(conn)
        assert (result["ok"], result["checkpoints"], result["sealed_rows"]) == (True, 1, 1)
        assert result["unsealed_rows"] == 1  # the purge's own row
        third = seal(conn)
        assert sealed(conn) == [young, trail["seq"]]
        assert audit.verify(conn)["ok"]

        # Everything sealed goes; the next checkpoint links to the purge point.
        assert audit.purge(conn, datetime.now(UTC) + timedelta(hours=1)) == 2
        result = audit.verify(conn)
        assert (result["ok"], result["checkpoints"], result["head_digest"]) == (
            True,
            0,
            third["digest"],
        )
        log(conn, "after the purge")
        fourth = seal(conn)
        assert fourth["previous_digest"] == third["digest"]
        assert audit.verify(conn)["ok"]
        assert len(conn.execute("select * from public.audit_purges").fetchall()) == 2


def test_purge_takes_whole_checkpoints_oldest_first(fresh_database):
    url = migrate_sealed(fresh_database)
    with connect(url) as conn:
        log(conn, "recent")
        seal(conn)
        # A row of a transaction that began long ago, sealed later.
        conn.execute(
            "insert into public.edge_function_logs (function_name, message, created_at)"
            " values ('test', 'ancient', '2000-01-01T00:00:00Z')"
        )
        seal(conn)
        before = seqs(conn)
        assert audit.purge(conn, datetime(2001, 1, 1, tzinfo=UTC)) == 0
        assert seqs(conn) == before
        assert conn.execute("select count(*) from public.audit_purges").fetchone()["count"] == 0


def test_purge_is_refused_while_the_log_does_not_verify(fresh_database, capsys):
    url = migrate_sealed(fresh_database)
    target = sealed_log(url)["first"][0]
    with tampering(url) as conn:
        conn.execute("update public.edge_function_logs set message = 'x' where seq = %s", [target])
    with connect(url) as conn:
        before = seqs(conn)
        with pytest.raises(errors.ObjectNotInPrerequisiteState, match=f"row {target} was changed"):
            audit.purge(conn, datetime.now(UTC) + timedelta(hours=1))
        assert seqs(conn) == before
    assert audit.main_purge(settings_for(), url, "0d") == 1
    assert f"row {target} was changed" in capsys.readouterr().err


def test_a_purge_record_cannot_be_forged(fresh_database):
    url = migrate_sealed(fresh_database)
    with connect(url) as conn:
        log(conn, "kept")
        checkpoint = seal(conn)
        admin = local_identity.create_user(conn, "root@example.com", admin=True)
        before = audit.verify(conn)
    forge = (
        "insert into public.audit_purges (through_checkpoint_id, through_horizon, through_digest,"
        " checkpoints_removed, rows_removed, purged_before)"
        f" select id, horizon, digest, 1, row_count, now() from public.audit_checkpoints"
        f" where id = {checkpoint['id']}"
    )
    refused(url, "service_role", forge)
    refused(url, "authenticated", forge, admin)
    refused(url, "anon", forge)
    # Even the owner's record must name a real checkpoint with its digest.
    with acting(url, "owner") as conn, pytest.raises(errors.CheckViolation):
        conn.execute(
            forge.replace("select id, horizon, digest", "select id, horizon, sha256(digest)")
        )
    # Without a purge record of its own transaction the owner deletes nothing.
    refused(url, "owner", "delete from public.edge_function_logs")
    with connect(url) as conn:
        assert audit.verify(conn) == before
        assert conn.execute("select count(*) from public.audit_purges").fetchone()["count"] == 0


# -- the command line ----------------------------------------------------------------------


def test_the_commands_report(fresh_database, capsys):
    url = migrate_sealed(fresh_database)
    settings = settings_for()
    with connect(url) as conn:
        base = audit.verify(conn)["sealed_rows"]
    assert audit.main_seal(settings, url) == 0
    assert "nothing to seal" in capsys.readouterr().out
    with connect(url) as conn:
        log(conn, "one")
        target = log(conn, "two")
        settle(conn)
    assert audit.main_seal(settings, url) == 0
    out = capsys.readouterr().out
    assert "sealed 2 rows" in out and "head digest:" in out

    assert audit.main_verify(settings, url) == 0
    out = capsys.readouterr().out
    assert "audit log: OK" in out
    assert f"sealed rows:   {base + 2}\n" in out and "unsealed rows: 0\n" in out

    assert audit.main_purge(settings, url, "2000-01-01") == 0
    assert "nothing to purge" in capsys.readouterr().out

    with tampering(url) as conn:
        conn.execute(
            "update public.edge_function_logs set level = 'debug' where seq = %s", [target]
        )
    assert audit.main_verify(settings, url) == 1
    out = capsys.readouterr().out
    assert f"TAMPERED: row {target} was changed" in out
    assert f"first faulty row: seq {target}" in out


def test_purge_cut_offs_from_the_command_line():
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert audit.parse_before("90d", now=now) == now - timedelta(days=90)
    assert audit.parse_before("2026-01-31") == datetime(2026, 1, 31, tzinfo=UTC)
    assert audit.parse_before("2026-01-31T10:00:00+02:00") == datetime(2026, 1, 31, 8, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a cut-off"):
        audit.parse_before("last week")
