"""Importing n8n workflow files: parsing each file, then one transaction per file (a bad
file is reported and the others still import). The hash, the duplicate check, the slug and
provider detection are SQL (`import_n8n_template`, `import_automation_workflow`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import psycopg

from aerelion.transactions import Transaction

Opener = Callable[[], AbstractAsyncContextManager[Transaction]]
MAX_DEPTH = 64


def parse_workflow(content: str) -> dict[str, Any]:
    """A workflow file's JSON object; ValueError says what is wrong (never the content)."""
    try:
        workflow = json.loads(content)
    except (ValueError, RecursionError):
        raise ValueError("not valid JSON") from None
    if not isinstance(workflow, dict):
        raise ValueError("a workflow file holds a JSON object")
    if _depth(workflow) > MAX_DEPTH:
        raise ValueError("the workflow is nested too deeply")
    return workflow


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level


def _failure(error: Exception) -> str:
    if isinstance(error, psycopg.Error):
        if error.sqlstate == "42501":
            raise error  # not an admin: the whole request is refused
        return error.diag.message_primary or "refused"
    return str(error)


async def import_templates(
    open_transaction: Opener, items: list[dict[str, Any]]
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """("imported" | "skipped" | "error", entry) per item of {filename, content, name?,
    slug?, description?}."""
    for item in items:
        filename = item["filename"]
        try:
            workflow = parse_workflow(item["content"])
            async with open_transaction() as tx:
                row = await tx.one(
                    "import_n8n_template",
                    {
                        "workflow": workflow,
                        "filename": filename,
                        "name": item.get("name"),
                        "slug": item.get("slug"),
                        "description": item.get("description"),
                    },
                )
        except (ValueError, psycopg.Error) as error:
            yield "error", {"source_filename": filename, "error": _failure(error)}
            continue
        assert row is not None
        if row["outcome"] == "skipped":
            yield "skipped", {"source_filename": filename, "reason": row["reason"], "id": row["id"]}
        else:
            yield (
                "imported",
                {
                    "id": row["id"],
                    "slug": row["slug"],
                    "name": row["name"],
                    "source_filename": filename,
                    "file_hash": row["file_hash"],
                    "detected_providers": row["detected_providers"],
                    "trigger_type": row["trigger_type"],
                },
            )


async def import_workflows(
    open_transaction: Opener, items: list[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    """One result per item of {filename, content, override_slug?}."""
    for item in items:
        filename = item["filename"]
        try:
            workflow = parse_workflow(item["content"])
            async with open_transaction() as tx:
                row = await tx.one(
                    "import_automation_workflow",
                    {"workflow": workflow, "filename": filename, "slug": item.get("override_slug")},
                )
        except (ValueError, psycopg.Error) as error:
            yield {
                "slug": item.get("override_slug"),
                "status": "error",
                "message": _failure(error),
                "source_filename": filename,
            }
            continue
        assert row is not None
        yield {
            "slug": row["slug"],
            "status": row["status"],
            "message": row["message"],
            "automationAgentId": row["automation_agent_id"],
            "templateId": row["template_id"],
            "source_filename": filename,
        }
