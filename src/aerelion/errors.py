"""One error shape for every error, and database errors mapped to HTTP like PostgREST.

Every error response is JSON `{"code", "message", "details", "hint"}` — PostgREST's shape,
so a client handles errors from the REST API and from functions alike. Server errors
never carry internals: no stack trace, no SQL, no secret; the `x-request-id` header
ties the response to its log row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg

JsonDetails = str | list[Any] | dict[str, Any] | None
_RETRY_AFTER = re.compile(r"retry_after_seconds=([0-9]{1,6})")


@dataclass(eq=False)
class ApiError(Exception):
    status: int
    code: str
    message: str
    details: JsonDetails = None
    hint: str | None = None
    headers: dict[str, str] | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "details": self.details,
            "hint": self.hint,
        }


def bad_request(code: str, message: str, details: JsonDetails = None) -> ApiError:
    return ApiError(400, code, message, details)


def internal_error() -> ApiError:
    return ApiError(500, "internal_error", "The request could not be completed")


# PostgREST's table, most specific first: (SQLSTATE or class prefix, status).
_SQLSTATE_STATUS: list[tuple[str, int]] = [
    ("23503", 409),
    ("23505", 409),
    ("25006", 405),
    ("53400", 500),
    ("42883", 404),
    ("42P01", 404),
    ("42P17", 500),
    ("P0001", 400),
    ("08", 503),
    ("09", 500),
    ("0L", 403),
    ("0P", 403),
    ("25", 500),
    ("28", 403),
    ("2D", 500),
    ("38", 500),
    ("39", 500),
    ("3B", 500),
    ("40", 500),
    ("53", 503),
    ("54", 500),
    ("55", 500),
    ("57", 500),
    ("58", 500),
    ("F0", 500),
    ("HV", 500),
    ("P0", 500),
    ("XX", 500),
]


def status_for_sqlstate(sqlstate: str, *, authenticated: bool) -> int:
    """The HTTP status PostgREST answers for a SQLSTATE."""
    if sqlstate == "42501":
        return 403 if authenticated else 401
    if len(sqlstate) == 5 and sqlstate.startswith("PT") and sqlstate[2:].isdigit():
        return int(sqlstate[2:])  # RAISE SQLSTATE 'PT402' chooses the status
    for prefix, status in _SQLSTATE_STATUS:
        if sqlstate.startswith(prefix):
            return status
    return 400


def from_database(error: psycopg.Error, *, authenticated: bool) -> ApiError:
    """A database error as the API reports it."""
    if error.sqlstate is None and isinstance(error, psycopg.DataError):
        # psycopg refused a value before sending it (text holding NUL): the input's fault.
        return ApiError(400, "22021", "A value cannot be stored: text may not contain NUL")
    sqlstate = error.sqlstate or "XX000"
    status = status_for_sqlstate(sqlstate, authenticated=authenticated)
    if status == 503:
        return ApiError(503, sqlstate, "The database is unavailable")
    if status >= 500 or not 100 <= status <= 599:
        return ApiError(500, sqlstate, "The request could not be completed")
    diag = error.diag
    # Integrity errors describe the offending values; those stay in the database.
    details = None if sqlstate.startswith("23") else diag.message_detail
    hint = None if sqlstate.startswith("23") else diag.message_hint
    headers = None
    if status == 429 and hint and (wait := _RETRY_AFTER.fullmatch(hint)):
        headers = {"Retry-After": wait.group(1)}  # enforce_rate_limit's hint
    return ApiError(
        status,
        sqlstate,
        diag.message_primary or "The request was refused",
        details,
        hint,
        headers,
    )
