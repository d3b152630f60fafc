"""`aerelion nodes add|list|check|drain|remove` (the n8n node pool), `aerelion templates
import FILE...` and `aerelion agents deploy|heal` (the agents' workflows). They act as the
service role; nodes and templates name the operator (`cli:<user>`), so every change leaves
the same audit rows as an admin's."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg

from aerelion import operations, templates
from aerelion.config import Settings
from aerelion.database import database_url
from aerelion.queries import QUERIES


def _rows(settings: Settings, args: argparse.Namespace, query: str, params: dict) -> list[dict]:
    with (
        database_url(settings, args.db_url) as url,
        psycopg.connect(url) as conn,
        operations.acting(conn) as cursor,
    ):
        cursor.execute(QUERIES[query], params)
        return cursor.fetchall() if cursor.description else []


def _print(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        print(json.dumps(row, default=str))


def _add(args: argparse.Namespace, settings: Settings) -> int:
    _print(
        _rows(
            settings,
            args,
            "add_n8n_instance",
            {
                "url": args.url,
                "label": args.label,
                "region": args.region,
                "max_capacity": args.capacity,
                "api_key_secret": args.api_key_secret,
                "runtime_secret": args.runtime_secret,
            },
        )
    )
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    rows = _rows(settings, args, "list_n8n_instances", {})
    print(f"{'STATUS':<12} {'LOAD':>9} {'LIVE':>5}  {'LAST PING':<20} URL")
    for row in rows:
        load = f"{row['current_load']}/{row['max_capacity']}"
        ping = f"{row['last_ping_at']:%Y-%m-%d %H:%M:%S}" if row["last_ping_at"] else "never"
        print(
            f"{row['status']:<12} {load:>9} {row['live_mappings']:>5}  {ping:<20} "
            f"{row['instance_url']} {row['label'] or ''}"
        )
    return 0


def _ready(url: str) -> tuple[bool, str | None]:
    """n8n's readiness: `/rest/settings` answering JSON with `data`."""
    try:
        response = httpx.get(f"{url.rstrip('/')}/rest/settings", timeout=5)
        ok = response.status_code == 200 and "data" in response.json()
    except (httpx.HTTPError, ValueError) as error:
        return False, type(error).__name__
    return ok, None if ok else f"not ready (HTTP {response.status_code})"


def _check(args: argparse.Namespace, settings: Settings) -> int:
    if args.node:
        nodes = _rows(settings, args, "n8n_instance_by_ref", {"ref": args.node})
    else:
        nodes = _rows(settings, args, "n8n_instances_to_ping", {})
    failed = 0
    for node in nodes:
        ok, error = _ready(node["instance_url"])
        failed += not ok
        row = _rows(
            settings, args, "record_n8n_ping", {"instance_id": node["id"], "ok": ok, "error": error}
        )[0]
        print(f"{'ready' if ok else 'NOT READY':<10} {row['status']:<12} {node['instance_url']}")
    return 1 if failed else 0


def _status(status: str) -> Callable[[argparse.Namespace, Settings], int]:
    def run(args: argparse.Namespace, settings: Settings) -> int:
        rows = _rows(
            settings, args, "set_n8n_instance_status", {"ref": args.node, "status": status}
        )
        _print(rows)
        return 0

    return run


def _remove(args: argparse.Namespace, settings: Settings) -> int:
    _print(_rows(settings, args, "remove_n8n_instance", {"ref": args.node}))
    return 0


def _import(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from aerelion.transactions import Database

    items = [{"filename": Path(f).name, "content": Path(f).read_text()} for f in args.files]

    async def run(url: str) -> list[tuple[str, dict]]:
        database = Database(url, pool_size=1, transaction_pooler=settings.transaction_pooler)
        await database.open()
        try:
            claims = operations.service_claims()
            return [
                outcome
                async for outcome in templates.import_templates(
                    lambda: database.acting_as("service_role", claims), items
                )
            ]
        finally:
            await database.close()

    with database_url(settings, args.db_url) as url:
        outcomes = asyncio.run(run(url))
    for outcome, entry in outcomes:
        print(json.dumps({"outcome": outcome, **entry}, default=str))
    return 1 if any(outcome == "error" for outcome, _ in outcomes) else 0


def _agents(args: argparse.Namespace, settings: Settings) -> int:
    """`agents deploy [--node N]` or `agents heal AG-nn`, as the service (no admin JWT)."""
    import asyncio

    from aerelion.agent_workflows import AgentWorkflows
    from aerelion.errors import ApiError
    from aerelion.transactions import Database

    async def run(url: str) -> dict[str, Any]:
        database = Database(url, pool_size=2, transaction_pooler=settings.transaction_pooler)
        await database.open()
        try:
            agents = AgentWorkflows(database, settings)
            if args.agents_command == "deploy":
                return await agents.deploy(args.node, None)
            return await agents.heal(args.agent_id, "admin", None)
        finally:
            await database.close()

    with database_url(settings, args.db_url) as url:
        try:
            result = asyncio.run(run(url))
        except (ApiError, psycopg.Error) as error:
            print(f"error: {error}")
            return 1
    print(json.dumps(result, indent=2, default=str))
    failed = result.get("summary", {}).get("error", 0) or result.get("success") is False
    return 1 if failed else 0


def register(
    commands: argparse._SubParsersAction,
    with_url: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    nodes = commands.add_parser("nodes", help="the n8n node pool (audited)")
    sub = nodes.add_subparsers(dest="nodes_command", required=True)
    add = with_url(sub.add_parser("add", help="add a node"))
    add.add_argument("url", help="the node's base URL, http(s)://host[:port]")
    add.add_argument("--capacity", type=int, default=100, help="activations it may hold")
    add.add_argument("--label")
    add.add_argument("--region", default="us-east-1")
    add.add_argument(
        "--api-key-secret", required=True, help="where its API key is: env:NAME or vault:NAME"
    )
    add.add_argument("--runtime-secret", help="where its runtime secret is: env:NAME or vault:NAME")
    add.set_defaults(run=_add)
    with_url(sub.add_parser("list", help="nodes, loads, live activations")).set_defaults(run=_list)
    check = with_url(sub.add_parser("check", help="ask nodes whether they are ready now"))
    check.add_argument("node", nargs="?", help="id, URL or label (default: all)")
    check.set_defaults(run=_check)
    for name, status, text in (
        ("drain", "maintenance", "receive nothing new (its workflows keep running)"),
        ("activate", "active", "receive new activations again"),
        ("remove", None, "remove a node that runs nothing"),
    ):
        one = with_url(sub.add_parser(name, help=text))
        one.add_argument("node", help="id, URL or label")
        one.set_defaults(run=_status(status) if status else _remove)

    templates_parser = commands.add_parser("templates", help="n8n workflow templates")
    templates_sub = templates_parser.add_subparsers(dest="templates_command", required=True)
    importing = with_url(templates_sub.add_parser("import", help="import workflow JSON files"))
    importing.add_argument("files", nargs="+", help="n8n workflow files (.json)")
    importing.set_defaults(run=_import)

    agents = commands.add_parser("agents", help="the agents' heartbeat workflows on n8n")
    agents_sub = agents.add_subparsers(dest="agents_command", required=True)
    deploying = with_url(agents_sub.add_parser("deploy", help="deploy them (idempotent)"))
    deploying.add_argument("--node", help="id, URL or label (default: where they run)")
    deploying.set_defaults(run=_agents)
    healing = with_url(agents_sub.add_parser("heal", help="restart or redeploy one, verified"))
    healing.add_argument("agent_id", help="AG-01 … AG-07")
    healing.set_defaults(run=_agents)
