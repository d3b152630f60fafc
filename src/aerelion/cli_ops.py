"""`aerelion logs` (the provenance log in a terminal, `--follow` on LISTEN/NOTIFY) and
`aerelion report aar` (the after-action report). Both act as the service role naming the
operator (`cli:<user>`), through the same SQL functions the console uses."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import psycopg

from aerelion import aar, operations
from aerelion.config import Settings
from aerelion.database import database_url
from aerelion.queries import QUERIES

DURATION = re.compile(r"^([0-9]{1,5})([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
COLOURS = {"error": "\033[31m", "warn": "\033[33m", "info": "\033[32m", "debug": "\033[2m"}
RESET = "\033[0m"


def moment(text: str, now: datetime | None = None) -> datetime:
    """`--since`: a duration back from now (`90s`, `15m`, `24h`, `7d`) or an ISO moment."""
    match = DURATION.match(text)
    if match:
        amount, unit = match.groups()
        return (now or datetime.now(UTC)) - timedelta(**{UNITS[unit]: int(amount)})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration or ISO moment: {text}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def hours(text: str) -> int:
    """`--window`: whole hours (`24h`, `2d` or a bare number of hours)."""
    match = re.fullmatch(r"([0-9]{1,4})([hd]?)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a window in hours or days: {text}")
    value = int(match.group(1)) * (24 if match.group(2) == "d" else 1)
    if not 1 <= value <= 720:
        raise argparse.ArgumentTypeError("the window is 1 hour to 30 days")
    return value


def line(row: dict[str, Any], colour: bool) -> str:
    agent = f" [{row['agent_id']}]" if row["agent_id"] else ""
    status = f" {row['status_code']}" if row["status_code"] is not None else ""
    took = f" {row['duration_ms']}ms" if row["duration_ms"] is not None else ""
    level = row["level"].upper().ljust(5)
    if colour:
        level = f"{COLOURS.get(row['level'], '')}{level}{RESET}"
    stamp = row["created_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp} {level}{agent} {row['function_name']}: {row['message']}{status}{took}"


def _page(conn: psycopg.Connection, params: dict[str, Any]) -> list[dict[str, Any]]:
    with operations.acting(conn) as cursor:
        return cursor.execute(QUERIES["provenance_log"], params).fetchall()


def follow(
    conn: psycopg.Connection, listener: psycopg.Connection, params: dict[str, Any], after: int
) -> Iterator[dict[str, Any]]:
    """Rows as they are written: LISTEN edge_function_logs, then read what is new."""
    listener.execute("LISTEN edge_function_logs")
    while True:
        rows = _page(conn, {**params, "before": None, "after": after, "limit": 1000})
        yield from rows
        if rows:
            after = rows[-1]["seq"]
        if len(rows) < 1000:  # caught up: wait for the next NOTIFY
            for _ in listener.notifies(stop_after=1):
                pass


def logs(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    params = {
        "before": None,
        "after": None,
        "limit": args.limit,
        "level": args.level,
        "function": args.function,
        "agent": args.agent,
        "since": args.since,
    }
    colour = not args.json and out.isatty()
    show: Callable[[dict[str, Any]], str] = (
        (lambda row: json.dumps(row, default=str)) if args.json else (lambda r: line(r, colour))
    )
    with database_url(settings, args.db_url) as url, psycopg.connect(url) as conn:
        rows = list(reversed(_page(conn, params)))  # oldest first, as a terminal reads
        for row in rows:
            print(show(row), file=out, flush=True)
        if not args.follow:
            return 0
        newest = rows[-1]["seq"] if rows else _newest(conn, params)
        listen = settings.database_listen_url or url
        with psycopg.connect(listen, autocommit=True) as listener:
            try:
                for row in follow(conn, listener, params, newest):
                    print(show(row), file=out, flush=True)
            except KeyboardInterrupt:
                return 0
    return 0


def _newest(conn: psycopg.Connection, params: dict[str, Any]) -> int:
    rows = _page(conn, {**params, "limit": 1})
    return rows[0]["seq"] if rows else 0


def report(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    with (
        database_url(settings, args.db_url) as url,
        psycopg.connect(url) as conn,
        operations.acting(conn) as cursor,
    ):
        query = QUERIES["aar_telemetry"]
        telemetry = cursor.execute(query, {"window_hours": args.window}).fetchone()["telemetry"]
    if args.html:
        Path(args.html).write_text(aar.render_html(telemetry), encoding="utf-8")
        print(f"wrote {args.html} ({aar.reference_id(telemetry)})", file=sys.stderr)
    print(aar.render_markdown(telemetry), file=out, end="")
    return 0


def register(commands: Any, with_url: Callable[[argparse.ArgumentParser], Any]) -> None:
    """Add `logs` and `report aar` to the `aerelion` command."""
    parser = with_url(commands.add_parser("logs", help="the provenance log (edge_function_logs)"))
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing new rows")
    parser.add_argument("--level", choices=("debug", "info", "warn", "error"))
    parser.add_argument("--function", help="one function's rows")
    parser.add_argument("--agent", help="one agent's rows (AG-01 … AG-07)")
    parser.add_argument("--since", type=moment, help="15m, 24h, 7d or an ISO moment")
    parser.add_argument("--limit", type=int, default=100, choices=range(1, 1001), metavar="N")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(run=logs)

    reports = commands.add_parser("report", help="reports")
    kinds = reports.add_subparsers(dest="report_command", required=True)
    after_action = with_url(kinds.add_parser("aar", help="the after-action report (AG-07)"))
    after_action.add_argument("--window", type=hours, default=24, help="24h (default), 7d, …")
    after_action.add_argument("--html", metavar="FILE", help="also write the one-page HTML")
    after_action.set_defaults(run=report)
