"""The provisioning queue's rules, in SQL and with real worker processes: one attempt
counted per claim, backoff 60 → 120 → failed, waits not counted, zombies refused, leases
recovered, each job processed exactly once by many workers, and a graceful drain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

from support import REPO, act_as, new_user

WORKER = REPO / "tests" / "worker_process.py"


@pytest.fixture
def db(fresh_database) -> Iterator[psycopg.Connection]:
    """A migrated database of its own (workers of other tests must not take our jobs)."""
    from aerelion import deploy
    from support import settings_for

    deploy.push(fresh_database, settings_for(), out=lambda _: None)
    with psycopg.connect(fresh_database, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def call(conn: psycopg.Connection, sql: str, params: dict | list | None = None):
    with conn.transaction():
        act_as(conn, "service_role")
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


def enqueue(conn: psycopg.Connection, user: uuid.UUID, n: int = 1) -> list[uuid.UUID]:
    return [
        call(
            conn,
            "select public.enqueue_provisioning(%s, 'provision_vps', '{}') as id",
            [user],
        )[0]["id"]
        for _ in range(n)
    ]


def claim(conn, worker: str = "w1", limit: int = 10, lease: int = 300) -> list[dict]:
    return call(
        conn, "select * from public.claim_provisioning_jobs(%s, %s, %s)", [limit, worker, lease]
    )


def job(conn, job_id) -> dict:
    return conn.execute(
        "select *, scheduled_at - now() as due_in from public.provisioning_queue where id = %s",
        [job_id],
    ).fetchone()


def make_due(conn, job_id) -> None:
    conn.execute(
        "update public.provisioning_queue set scheduled_at = now() where id = %s", [job_id]
    )


def fail(conn, row, error="boom", retryable=True):
    return call(
        conn,
        "select * from public.fail_provisioning_job(%s, %s, %s, %s, %s)",
        [row["id"], row["claims"], row["worker_id"], error, retryable],
    )[0]


# -- claims, attempts, backoff --------------------------------------------------------------


def test_a_job_failing_three_times_retries_after_60_then_120_seconds_then_fails(db):
    user = new_user(db)
    (job_id,) = enqueue(db, user)
    delays = []
    for attempt in (1, 2, 3):
        (row,) = claim(db)
        assert (row["attempt_count"], row["status"], row["claims"]) == (
            attempt,
            "processing",
            attempt,
        )
        after = fail(db, row, f"failure {attempt}")
        if attempt < 3:
            assert after["status"] == "retrying"
            delays.append(job(db, job_id)["due_in"])
            assert claim(db) == []  # not due yet
            make_due(db, job_id)
        else:
            assert after["status"] == "failed"
    assert [round(d.total_seconds()) for d in delays] == [60, 120]
    final = job(db, job_id)
    assert (final["status"], final["attempt_count"], final["last_error"]) == (
        "failed",
        3,
        "failure 3",
    )
    notices = db.execute(
        "select type, body from public.admin_notifications where metadata ->> 'job_id' = %s",
        [str(job_id)],
    ).fetchall()
    assert notices == [{"type": "provisioning_failed", "body": "failure 3"}]
    messages = [
        r["message"]
        for r in db.execute(
            "select message from public.edge_function_logs where details ->> 'job_id' = %s"
            " order by seq",
            [str(job_id)],
        )
    ]
    assert messages == ["QUEUE_JOB_RETRYING", "QUEUE_JOB_RETRYING", "QUEUE_JOB_FAILED"]


def test_the_backoff_doubles_up_to_an_hour(db):
    delays = [
        db.execute(
            "select extract(epoch from public.provisioning_retry_delay(%s)) as s", [n]
        ).fetchone()["s"]
        for n in range(1, 9)
    ]
    assert [int(d) for d in delays] == [60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_a_final_error_fails_at_once(db):
    (job_id,) = enqueue(db, new_user(db))
    (row,) = claim(db)
    assert fail(db, row, "422: invalid item", retryable=False)["status"] == "failed"
    assert job(db, job_id)["attempt_count"] == 1


def test_waiting_is_not_counted_and_ends_at_its_deadline(db):
    (job_id,) = enqueue(db, new_user(db))
    (row,) = claim(db)
    for _ in range(5):
        waited = call(
            db,
            "select * from public.wait_provisioning_job(%s, %s, %s, 'wait_running', 0, 3600, null)",
            [row["id"], row["claims"], row["worker_id"]],
        )[0]
        assert waited["status"] == "waiting"
        (row,) = claim(db)
        assert row["attempt_count"] == 1  # only the first claim counted
    assert row["claims"] == 6
    db.execute(
        "update public.provisioning_queue set wait_deadline = now() - interval '1 second'"
        " where id = %s",
        [job_id],
    )
    after = call(
        db,
        "select * from public.wait_provisioning_job(%s, %s, %s, 'wait_running', 0, 3600, null)",
        [row["id"], row["claims"], row["worker_id"]],
    )[0]
    assert after["status"] == "failed"
    assert "gave up waiting at step wait_running" in after["last_error"]


def test_a_zombie_cannot_finish_a_job_someone_else_holds(db):
    (job_id,) = enqueue(db, new_user(db))
    (first,) = claim(db, "w1", lease=1)
    time.sleep(1.2)
    (second,) = [r for r in claim(db, "w2") if r["id"] == job_id] or [None]
    assert second is None  # recovered as a failed attempt: retrying in 60 s
    assert job(db, job_id)["status"] == "retrying"
    make_due(db, job_id)
    (second,) = claim(db, "w2")
    assert (second["worker_id"], second["claims"], second["attempt_count"]) == ("w2", 2, 2)
    for args in ([first["claims"], "w1"], [second["claims"], "w1"], [first["claims"], "w2"]):
        with pytest.raises(psycopg.Error) as refused:
            call(db, "select public.complete_provisioning_job(%s, %s, %s, '{}')", [job_id, *args])
        assert refused.value.sqlstate == "PT409"
    call(
        db,
        "select public.complete_provisioning_job(%s, %s, %s, '{}')",
        [job_id, second["claims"], "w2"],
    )
    assert job(db, job_id)["status"] == "completed"


def test_the_claim_is_one_statement_with_skip_locked(db):
    """Two claimers at the same moment never get the same job."""
    user = new_user(db)
    enqueue(db, user, 20)
    with psycopg.connect(db.info.dsn, row_factory=dict_row) as other:
        other.execute("begin")
        act_as(other, "service_role")
        held = other.execute(
            "select id from public.claim_provisioning_jobs(10, 'w-a', 300)"
        ).fetchall()
        # w-a's transaction still holds its rows: w-b skips them instead of waiting
        mine = claim(db, "w-b", limit=20)
        other.execute("commit")
    assert len(held) == 10 and len(mine) == 10
    assert not {r["id"] for r in held} & {r["id"] for r in mine}


def test_cancelling_and_retrying(db):
    owner, stranger, admin = new_user(db), new_user(db), new_user(db, admin=True)
    (job_id,) = enqueue(db, owner)

    def as_user(user, sql):
        with db.transaction():
            act_as(db, "authenticated", user)
            return db.execute(sql, [job_id]).fetchone()

    with pytest.raises(psycopg.Error) as refused:
        as_user(stranger, "select * from public.cancel_provisioning_job(%s)")
    assert refused.value.sqlstate == "PT404"
    assert as_user(owner, "select status from public.cancel_provisioning_job(%s)") == {
        "status": "cancelled"
    }
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_user(owner, "select * from public.retry_provisioning_job(%s)")
    assert as_user(admin, "select status from public.retry_provisioning_job(%s)") == {
        "status": "queued"
    }
    audit = db.execute(
        "select details ->> 'action' as action from public.edge_function_logs"
        " where function_name = 'audit' and details ->> 'job_id' = %s",
        [str(job_id)],
    ).fetchall()
    assert audit == [{"action": "retry:provisioning_queue"}]
    (row,) = claim(db)
    call(
        db,
        "select public.mark_provisioning_purchase(%s, %s, %s, true)",
        [row["id"], row["claims"], row["worker_id"]],
    )
    fail(db, row)
    with pytest.raises(psycopg.Error) as refused:  # something may have been bought
        as_user(owner, "select * from public.cancel_provisioning_job(%s)")
    assert refused.value.sqlstate == "PT409"


def test_enqueue_notifies_listening_workers(db):
    with psycopg.connect(db.info.dsn, autocommit=True) as listener:
        listener.execute("listen provisioning_queue")
        (job_id,) = enqueue(db, new_user(db))
        notices = listener.notifies(timeout=5, stop_after=1)
        assert [n.payload for n in notices] == [str(job_id)]


def test_an_idempotency_key_returns_the_same_job(db):
    user = new_user(db)
    sql = "select public.enqueue_provisioning(%s, 'provision_vps', '{}', null, 'k-1') as id"
    first = call(db, sql, [user])[0]["id"]
    assert call(db, sql, [user])[0]["id"] == first
    assert db.execute(
        "select count(*) as n from public.provisioning_queue where user_id = %s", [user]
    ).fetchone() == {"n": 1}


# -- real worker processes ------------------------------------------------------------------


def start_worker(url: str, mode: str, lease: int = 30) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, str(WORKER), url, mode, str(lease)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])},
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail("timed out")


def test_eight_workers_process_a_thousand_jobs_exactly_once(db):
    url = db.info.dsn
    user = new_user(db)
    workers = [start_worker(url, "noop") for _ in range(8)]
    try:
        call(
            db,
            "select public.enqueue_provisioning(%s, 'provision_vps', '{}')"
            " from generate_series(1, 1000)",
            [user],
        )

        def done() -> bool:
            return (
                db.execute(
                    "select count(*) as n from public.provisioning_queue where status = 'completed'"
                ).fetchone()["n"]
                == 1000
            )

        wait_for(done, timeout=120)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)
    stats = db.execute(
        "select count(*) as jobs, max(claims) as most_claims, min(claims) as fewest_claims,"
        " max(attempt_count) as most_attempts, count(distinct result ->> 'worker') as workers"
        " from public.provisioning_queue"
    ).fetchone()
    assert stats == {
        "jobs": 1000,
        "most_claims": 1,
        "fewest_claims": 1,
        "most_attempts": 1,
        "workers": stats["workers"],
    }
    assert stats["workers"] > 1
    assert all(worker.returncode == 0 for worker in workers)


def test_a_killed_workers_job_is_recovered_and_completed_once(db):
    url = db.info.dsn
    (job_id,) = enqueue(db, new_user(db))
    doomed = start_worker(url, "hang", lease=1)
    try:
        assert doomed.stdout.readline().strip() == f"holding {job_id}"
        held = job(db, job_id)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    finally:
        doomed.kill()
    time.sleep(1.5)  # the lease runs out
    call(db, "select public.recover_expired_provisioning_leases()")
    recovered = job(db, job_id)
    assert (recovered["status"], recovered["attempt_count"]) == ("retrying", 1)
    assert "lease expired" in recovered["last_error"]
    make_due(db, job_id)
    rescuer = start_worker(url, "noop")
    try:
        wait_for(lambda: job(db, job_id)["status"] == "completed")
    finally:
        rescuer.send_signal(signal.SIGTERM)
        rescuer.wait(timeout=30)
    done = job(db, job_id)
    assert (done["claims"], done["attempt_count"]) == (2, 2)
    with pytest.raises(psycopg.Error) as refused:  # the killed worker's late completion
        call(
            db,
            "select public.complete_provisioning_job(%s, %s, %s, '{}')",
            [job_id, held["claims"], held["worker_id"]],
        )
    assert refused.value.sqlstate == "PT409"


def test_sigterm_drains_the_running_job_and_takes_no_more(db):
    url = db.info.dsn
    user = new_user(db)
    (first,) = enqueue(db, user)
    worker = start_worker(url, "slow")
    assert worker.stdout.readline().strip() == f"working on {first}"
    worker.send_signal(signal.SIGTERM)
    (second,) = enqueue(db, user)
    out, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0
    assert out.strip().endswith("drained")
    assert job(db, first)["status"] == "completed"
    assert job(db, second)["status"] == "queued"


def test_backoff_is_documented_in_the_readme():
    readme = (REPO / "README.md").read_text()
    assert "60 s, 120 s, 240 s" in readme


def test_workers_claim_only_the_actions_they_run(db):
    user = new_user(db)
    call(db, "select public.enqueue_provisioning(%s, 'pause_workflows', '{}')", [user])
    (vps_job,) = enqueue(db, user)
    claimed = call(
        db,
        "select id from public.claim_provisioning_jobs(10, 'w', 300, array['provision_vps'])",
    )
    assert [row["id"] for row in claimed] == [vps_job]
    waiting = db.execute(
        "select status from public.provisioning_queue where action = 'pause_workflows'"
    ).fetchall()
    assert waiting == [{"status": "queued"}]  # no handler yet: it waits, it does not fail
