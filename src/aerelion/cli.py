"""The `aerelion` command."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence

from aerelion import deploy, migrations
from aerelion.config import Settings
from aerelion.database import database_url, embedded_cluster
from aerelion.embedded import EmbeddedError

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


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run(args: argparse.Namespace, settings: Settings) -> int:
    """`make run`: the database (embedded unless DATABASE_URL), migrations and seed."""
    with database_url(settings) as url:
        deploy.push(url, settings, include_seed=True)
        print(f"database ready: {url}")
        print("press Ctrl-C to stop")
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            signal.pause()
        except KeyboardInterrupt:
            print("stopping")
    return 0


def _check(args: argparse.Namespace, settings: Settings) -> int:
    problems = settings.problems()
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

    commands.add_parser("run", help="database, migrations and seed, until Ctrl-C").set_defaults(
        run=_run
    )
    commands.add_parser("check", help="validate the configuration").set_defaults(run=_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings.load()
    try:
        return int(args.run(args, settings))
    except deploy.RefusedError as refused:
        for reason in refused.reasons:
            print(f"refused: {reason}", file=sys.stderr)
        return 1
    except (deploy.MigrationFailedError, EmbeddedError) as error:
        print(error, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
