"""The `aerelion` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence

import psycopg

from aerelion import (
    audit,
    cli_ops,
    deploy,
    local_identity,
    migrations,
    operations,
    serving,
    supabase_config,
)
from aerelion.app import ConfigurationError
from aerelion.config import Settings
from aerelion.database import database_url, embedded_cluster
from aerelion.embedded import EmbeddedError
from aerelion.functions import load_functions

Command = Callable[[argparse.Namespace, Settings], int]


def _db_push(args: argparse.Namespace, settings: Settings) -> int:
    with database_url(settings, args.db_url) as url:
        deploy.push(
            url,
            settings,
            include_all=args.include_all,
            include_seed=args.include_seed,
            shim=args.shim,
            dry_run=args.dry_run,
        )
    return 0


def _db_status(args: argparse.Namespace, settings: Settings) -> int:
    with database_url(settings, args.db_url) as url:
        rows = deploy.status(url, settings)
    print(f"{'VERSION':<16} {'STATE':<14} NAME")
    for row in rows:
        print(f"{row.version:<16} {row.state:<14} {row.name}")
    return 0 if all(row.state in ("applied", "pending") for row in rows) else 1


def _db_reset(args: argparse.Namespace, settings: Settings) -> int:
    with database_url(settings, args.db_url) as url:
        deploy.reset(url, settings, include_seed=not args.no_seed)
    return 0


def _db_lint(args: argparse.Namespace, settings: Settings) -> int:
    found = migrations.verify(settings.migrations_dir, settings.checksums_path, require_listed=True)
    for violation in found.violations:
        print(violation)
    print(f"{len(found.migrations)} migrations, {len(found.violations)} problems")
    return 1 if found.violations else 0


def _db_lock(args: argparse.Namespace, settings: Settings) -> int:
    found = migrations.verify(
        settings.migrations_dir, settings.checksums_path, require_listed=False
    )
    if found.violations:
        for violation in found.violations:
            print(violation)
        return 1
    added = migrations.lock(settings.migrations_dir, settings.checksums_path)
    for name in added:
        print(f"recorded {name}")
    if not added:
        print("every migration is already recorded")
    return 0


def _db_start(args: argparse.Namespace, settings: Settings) -> int:
    if settings.database_url:
        print("DATABASE_URL is set: nothing to start", file=sys.stderr)
        return 1
    print(embedded_cluster(settings).start().url())
    return 0


def _db_stop(args: argparse.Namespace, settings: Settings) -> int:
    embedded_cluster(settings).stop()
    return 0


def _db_url(args: argparse.Namespace, settings: Settings) -> int:
    if settings.database_url:
        print(settings.database_url)
        return 0
    server = embedded_cluster(settings).running()
    if server is None:
        print("the embedded database is not running (aerelion db start)", file=sys.stderr)
        return 1
    print(server.url())
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    with database_url(settings) as url:
        serving.serve(
            settings, url, args.names or None, args.host or settings.host, _port(args, settings)
        )
    return 0


def _port(args: argparse.Namespace, settings: Settings) -> int:
    return args.port if args.port is not None else settings.port


def _run(args: argparse.Namespace, settings: Settings) -> int:
    """`make run`: local secrets, the database (embedded unless DATABASE_URL), migrations
    and seed, then every function."""
    added = local_identity.ensure_local_env(settings.project_dir / ".env", dict(os.environ))
    if added:
        print(f"generated local secrets into .env: {', '.join(added)}")
        settings = Settings.load(settings.project_dir)
    with database_url(settings) as url:
        deploy.push(url, settings, include_seed=True)
        print(f"database: {url}")
        print("a token: aerelion users create me@example.com && aerelion token me@example.com")
        serving.run_stack(settings, url, args.host or settings.host, _port(args, settings))
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    with database_url(settings, args.db_url) as url:
        outcomes = asyncio.run(
            serving.run_worker(
                settings,
                url,
                once=args.once,
                concurrency=args.concurrency,
                interval=args.interval,
            )
        )
    for outcome in outcomes:
        print(json.dumps(outcome.summary()))
    return 0


def _jobs(args: argparse.Namespace, settings: Settings) -> int:
    with database_url(settings, args.db_url) as url, psycopg.connect(url) as conn:
        if args.jobs_command == "list":
            rows = operations.list_jobs(conn, args.status, args.limit)
        else:
            rows = [operations.job(conn, args.jobs_command, args.job_id)]
    for row in rows:
        print(json.dumps(row, default=str))
    return 0


def _users_create(args: argparse.Namespace, settings: Settings) -> int:
    with database_url(settings) as url, psycopg.connect(url, autocommit=True) as conn:
        user_id = local_identity.create_user(conn, args.email, admin=args.admin)
    print(user_id)
    return 0


def _token(args: argparse.Namespace, settings: Settings) -> int:
    secret = settings.get("SUPABASE_JWT_SECRET")
    if not secret:
        print("SUPABASE_JWT_SECRET is not set (make run generates one into .env)", file=sys.stderr)
        return 1
    if args.service_role:
        print(local_identity.sign(local_identity.service_claims(ttl=args.ttl), secret))
        return 0
    if not args.email:
        print("name a user's email, or --service-role", file=sys.stderr)
        return 1
    with database_url(settings) as url, psycopg.connect(url) as conn:
        user_id = local_identity.find_user(conn, args.email)
    if user_id is None:
        print(f"no user {args.email} (aerelion users create {args.email})", file=sys.stderr)
        return 1
    claims = local_identity.user_claims(
        user_id, args.email.lower(), ttl=args.ttl, issuer=settings.get("SUPABASE_JWT_ISSUER")
    )
    print(local_identity.sign(claims, secret))
    return 0


def _mode(args: argparse.Namespace, settings: Settings) -> int:
    with database_url(settings, args.db_url) as url, psycopg.connect(url) as conn:
        if args.mode_command == "set":
            row = operations.set_mode(conn, args.mode, args.as_email)
        else:
            row = operations.show_mode(conn)
    by = row["updated_by"] or "the service role"
    print(f"{row['operational_mode']} (since {row['updated_at']:%Y-%m-%d %H:%M:%S %Z}, by {by})")
    return 0


def _retention(args: argparse.Namespace, settings: Settings) -> int:
    with database_url(settings, args.db_url) as url, psycopg.connect(url) as conn:
        report = operations.apply_retention(conn)
    for table, removed in sorted(report.items()):
        print(f"{table}: {removed} rows removed")
    return 0


def _keys(args: argparse.Namespace, settings: Settings) -> int:
    with database_url(settings, args.db_url) as url:
        report = asyncio.run(
            serving.rotate_keys(settings, url, dry_run=args.dry_run, batch_size=args.batch)
        )
    print(json.dumps(report, indent=2, default=str))
    unreadable = report["unknown_version"] + report["unreadable"]
    return 1 if unreadable and not args.dry_run else 0


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    if args.audit_command == "seal":
        return audit.main_seal(settings, args.db_url)
    if args.audit_command == "verify":
        return audit.main_verify(settings, args.db_url)
    return audit.main_purge(settings, args.db_url, args.before)


def _functions(args: argparse.Namespace, settings: Settings) -> int:
    functions = load_functions(settings.functions_dir)
    if args.config:
        print("\n".join(supabase_config.render(f) for f in functions))
        return 0
    for function in functions:
        methods = ",".join(function.methods)
        verify = str(function.verify_jwt).lower()
        print(f"{function.name:<32} {methods:<12} verify_jwt={verify:<6} {function.policy}")
    return 0


def _check(args: argparse.Namespace, settings: Settings) -> int:
    problems = settings.problems() + settings.serving_problems()
    problems += supabase_config.problems(
        load_functions(settings.functions_dir), settings.project_dir / "supabase" / "config.toml"
    )
    for problem in problems:
        print(f"config: {problem}", file=sys.stderr)
    if not problems:
        print("configuration is valid")
    return 1 if problems else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aerelion", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="migrations and the local database")
    db_commands = db.add_subparsers(dest="db_command", required=True)

    def with_url(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--db-url", help="target database (default: DATABASE_URL, else embedded)")
        return sub

    push = with_url(db_commands.add_parser("push", help="apply pending migrations"))
    push.add_argument("--include-all", action="store_true", help="apply out-of-order files")
    push.add_argument("--include-seed", action="store_true", help="also run supabase/seed.sql")
    push.add_argument("--dry-run", action="store_true", help="show what would be applied")
    push.add_argument(
        "--shim",
        choices=("auto", "always", "never"),
        default="auto",
        help="apply the platform shim first (auto: only on plain PostgreSQL)",
    )
    push.set_defaults(run=_db_push)
    with_url(db_commands.add_parser("status", help="applied and pending migrations")).set_defaults(
        run=_db_status
    )
    reset = with_url(db_commands.add_parser("reset", help="rebuild a local database"))
    reset.add_argument("--no-seed", action="store_true", help="skip supabase/seed.sql")
    reset.set_defaults(run=_db_reset)
    db_commands.add_parser("lint", help="check every migration rule").set_defaults(run=_db_lint)
    db_commands.add_parser("lock", help="record checksums of new migrations").set_defaults(
        run=_db_lock
    )
    db_commands.add_parser("start", help="start the embedded database").set_defaults(run=_db_start)
    db_commands.add_parser("stop", help="stop the embedded database").set_defaults(run=_db_stop)
    db_commands.add_parser("url", help="print the database URL").set_defaults(run=_db_url)

    def with_address(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--host", help="address to listen on (default: AERELION_HOST)")
        sub.add_argument("--port", type=int, help="port (default: AERELION_PORT, 54321)")
        return sub

    with_address(
        commands.add_parser("run", help="secrets, database, migrations, seed, all functions")
    ).set_defaults(run=_run)
    serve = with_address(commands.add_parser("serve", help="serve all or the named functions"))
    serve.add_argument("names", nargs="*", help="function names (default: all)")
    serve.set_defaults(run=_serve)

    users = commands.add_parser("users", help="local users")
    users_commands = users.add_subparsers(dest="users_command", required=True)
    create = users_commands.add_parser("create", help="create (or find) a confirmed user")
    create.add_argument("email")
    create.add_argument("--admin", action="store_true", help="also grant the admin role")
    create.set_defaults(run=_users_create)

    token = commands.add_parser("token", help="print a JWT signed with SUPABASE_JWT_SECRET")
    token.add_argument("email", nargs="?", help="the user's email")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    token.add_argument("--service-role", action="store_true", help="a service-role token")
    token.set_defaults(run=_token)

    worker = with_url(commands.add_parser("worker", help="run the provisioning queue worker"))
    worker.add_argument("--once", action="store_true", help="run due jobs once and exit")
    worker.add_argument("--interval", type=float, default=60.0, help="poll interval, seconds")
    worker.add_argument("--concurrency", type=int, default=4, help="jobs at a time")
    worker.set_defaults(run=_worker)

    jobs = commands.add_parser("jobs", help="provisioning jobs (audited)")
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True)
    listing = with_url(jobs_commands.add_parser("list", help="newest first"))
    listing.add_argument("--status", help="only jobs with this status")
    listing.add_argument("--limit", type=int, default=50)
    for name, text in (
        ("show", "one job"),
        ("retry", "retry a failed or cancelled job"),
        ("cancel", "cancel a job nothing was bought for"),
    ):
        one = with_url(jobs_commands.add_parser(name, help=text))
        one.add_argument("job_id")
    jobs.set_defaults(run=_jobs)

    mode = commands.add_parser("mode", help="the operational mode")
    mode_commands = mode.add_subparsers(dest="mode_command", required=True)
    with_url(mode_commands.add_parser("show", help="print the mode")).set_defaults(run=_mode)
    set_mode = with_url(mode_commands.add_parser("set", help="switch the mode (audited)"))
    set_mode.add_argument("mode", choices=("STEALTH", "SENTINEL", "WAR_ROOM"))
    set_mode.add_argument(
        "--as", dest="as_email", help="act as this admin (default: the service role)"
    )
    set_mode.set_defaults(run=_mode)

    audit_parser = commands.add_parser("audit", help="the sealed, append-only audit log")
    audit_commands = audit_parser.add_subparsers(dest="audit_command", required=True)
    with_url(audit_commands.add_parser("seal", help="seal settled rows into a checkpoint"))
    with_url(audit_commands.add_parser("verify", help="check every seal; exit 1 on a fault"))
    purge = with_url(audit_commands.add_parser("purge", help="remove sealed rows older than"))
    purge.add_argument("before", help="cut-off: 90d, 2026-01-31 or an ISO time")
    audit_parser.set_defaults(run=_audit)

    keys = commands.add_parser("keys", help="credential encryption keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    rotate = with_url(keys_commands.add_parser("rotate", help="re-seal with the newest key"))
    rotate.add_argument("--dry-run", action="store_true", help="count what would change")
    rotate.add_argument("--batch", type=int, default=500, help="rows per transaction")
    rotate.set_defaults(run=_keys)

    retention = commands.add_parser("retention", help="age out old rows (registry periods)")
    with_url(retention).set_defaults(run=_retention)

    functions = commands.add_parser("functions", help="list functions and their auth policy")
    functions.add_argument(
        "--config", action="store_true", help="print their supabase/config.toml blocks"
    )
    functions.set_defaults(run=_functions)
    commands.add_parser("check", help="validate the configuration").set_defaults(run=_check)
    from aerelion import cli_n8n

    cli_n8n.register(commands, with_url)
    cli_ops.register(commands, with_url)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings.load()
    try:
        return int(args.run(args, settings))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM after a clean shutdown
        return 0
    except deploy.RefusedError as refused:
        for reason in refused.reasons:
            print(f"refused: {reason}", file=sys.stderr)
        return 1
    except psycopg.Error as error:
        print(f"database: {error.diag.message_primary or error}", file=sys.stderr)
        return 1
    except (deploy.MigrationFailedError, EmbeddedError, LookupError) as error:
        print(error, file=sys.stderr)
        return 1
    except ConfigurationError as error:
        for line in str(error).splitlines():
            print(f"config: {line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
