"""The one `edge_function_logs` row every function request leaves, accepted or refused.

It holds the function, level, message, status, duration, user id and client address —
never bodies, tokens or secrets. It is written after the response has been sent, in its
own statement (through a SECURITY DEFINER function), so a handler's rollback cannot erase it and the
client does not wait for it. A failure to write it is reported on stderr and never turns
into a failed request.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import psycopg
import psycopg_pool

from aerelion.transactions import Database

logger = logging.getLogger("aerelion.request_log")

# A last line of defence: whatever a handler puts in its log note, credentials and
# personal data never reach the row.
_SENSITIVE = re.compile(
    r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"  # JWTs
    r"|\b(?:sb_secret|sb_publishable|whsec|sk_live|sk_test|rk_live|rk_test)_[A-Za-z0-9_-]+"
    r"|[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"  # e-mail addresses
    r"|-----BEGIN [A-Z ]+-----",
)


def redact(value: Any) -> Any:
    if isinstance(value, str):
        return _SENSITIVE.sub("[redacted]", value)
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


class RequestLog:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def record(
        self,
        *,
        function_name: str,
        status_code: int,
        duration_ms: int,
        message: str,
        level: str | None,
        user_id: uuid.UUID | None,
        ip_address: str | None,
        details: dict[str, Any],
    ) -> None:
        try:
            await self.database.as_owner(
                "record_edge_function_log",
                {
                    "function_name": function_name,
                    "message": redact(message),
                    "status_code": status_code,
                    "duration_ms": duration_ms,
                    "user_id": user_id,
                    "ip_address": ip_address,
                    "details": redact(details),
                    "level": level,
                },
            )
        except (psycopg.Error, psycopg_pool.PoolTimeout) as error:
            logger.error(
                "request log row for %s not written: %s %s",
                function_name,
                type(error).__name__,
                getattr(error, "sqlstate", "") or "",
            )
