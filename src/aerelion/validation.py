"""Reading and validating request input: the body limit, JSON, and the models handlers
declare (pydantic). Bad input becomes a 4xx in the common error shape that names the
fields at fault but never echoes the values sent."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request

from aerelion.errors import ApiError, bad_request

JSON_TYPES = ("application/json",)
M = TypeVar("M", bound=BaseModel)


class RequestModel(BaseModel):
    """Base of every request body: unknown fields and type coercion are refused."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"The request body exceeds {limit} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise bad_request("invalid_request", "Invalid Content-Length header")
        if int(declared) > limit:
            raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _problems(error: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(part) for part in item["loc"]) or "(body)", "problem": item["msg"]}
        for item in error.errors(include_input=False, include_url=False, include_context=False)
    ]


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _holds_nul(document: Any) -> bool:
    """Whether a string (or key) anywhere in `document` holds U+0000, which PostgreSQL text
    cannot store (psycopg refuses it with no SQLSTATE: a server error, were it let through)."""
    pending = [document]
    while pending:  # iterative: documents may nest as deep as the JSON parser allows
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


NUL_PROBLEM = [{"field": "(text)", "problem": "Text may not contain NUL (U+0000) characters"}]


def parse_body(model: type[M], raw: bytes, content_type: str | None) -> M:
    """The body as `model`; an empty body is `{}`."""
    if raw.strip():
        media_type = (content_type or "").split(";")[0].strip().lower()
        if media_type not in JSON_TYPES and not media_type.endswith("+json"):
            raise ApiError(415, "unsupported_media_type", "The request body must be JSON")
    else:
        raw = b"{}"
    try:
        # Strict JSON first (no NaN/Infinity, valid UTF-8); then the model reads the same
        # text in JSON mode, where strings may become UUIDs and datetimes.
        document = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise bad_request("invalid_json", "The request body is not valid JSON") from None
    if _holds_nul(document):
        raise bad_request("invalid_request", "The request body is invalid", NUL_PROBLEM)
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise bad_request(
            "invalid_request", "The request body is invalid", _problems(error)
        ) from None


def parse_query(model: type[M], params: Mapping[str, Any]) -> M:
    """Query parameters as `model`; text is converted to the declared types."""
    if _holds_nul(dict(params)):
        raise bad_request("invalid_request", "The query parameters are invalid", NUL_PROBLEM)
    try:
        return model.model_validate(dict(params), strict=False)
    except ValidationError as error:
        raise bad_request(
            "invalid_request", "The query parameters are invalid", _problems(error)
        ) from None
