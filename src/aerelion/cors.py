"""CORS from an allow-list (`ALLOWED_ORIGINS`), never a wildcard.

An allowed origin is echoed in `Access-Control-Allow-Origin`; any other origin gets no
CORS headers at all, and its preflight is refused with the usual JSON error. Preflights
are answered before authentication, as browsers send them without credentials.
Hand-written rather than Starlette's CORSMiddleware because preflight answers must use our
error shape, leave their log row, and list each function's own methods and headers.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders

from aerelion.errors import ApiError

BASE_REQUEST_HEADERS = ("authorization", "x-client-info", "apikey", "content-type")
EXPOSED_HEADERS = "x-request-id"
PREFLIGHT_MAX_AGE = "600"


def normalize_origin(origin: str) -> str | None:
    """`scheme://host[:port]` in lower case, or None if `origin` is not one."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    default_port = {"http": 80, "https": 443}[parts.scheme]
    suffix = f":{port}" if port and port != default_port else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{suffix}"


def origin_problems(raw: str) -> list[str]:
    problems = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        if "*" in entry:
            problems.append("ALLOWED_ORIGINS may not contain a wildcard")
        elif normalize_origin(entry) is None:
            problems.append(f"ALLOWED_ORIGINS: {entry!r} is not an origin like https://host[:port]")
    return problems


class Cors:
    def __init__(self, origins: Iterable[str]) -> None:
        self.origins = frozenset(
            normal for normal in (normalize_origin(o) for o in origins if o.strip()) if normal
        )

    @classmethod
    def from_setting(cls, raw: str | None) -> Cors:
        return cls((raw or "").split(","))

    def allowed_origin(self, headers: Headers) -> str | None:
        origin = headers.get("origin")
        if origin and normalize_origin(origin) in self.origins:
            return origin
        return None

    @staticmethod
    def is_preflight(method: str, headers: Headers) -> bool:
        return method == "OPTIONS" and "access-control-request-method" in headers

    def preflight_headers(
        self, headers: Headers, methods: Iterable[str], request_headers: Iterable[str]
    ) -> dict[str, str]:
        origin = self.allowed_origin(headers)
        if origin is None:
            raise ApiError(403, "cors_origin_not_allowed", "This origin is not allowed")
        allowed_headers = dict.fromkeys([*BASE_REQUEST_HEADERS, *request_headers])
        return {
            "access-control-allow-origin": origin,
            "access-control-allow-methods": ", ".join([*methods, "OPTIONS"]),
            "access-control-allow-headers": ", ".join(allowed_headers),
            "access-control-max-age": PREFLIGHT_MAX_AGE,
            "vary": "Origin",
        }

    def decorate(self, request_headers: Headers, response_headers: MutableHeaders) -> None:
        """Add the CORS headers of an actual (non-preflight) response."""
        response_headers.add_vary_header("Origin")
        origin = self.allowed_origin(request_headers)
        if origin is not None and "access-control-allow-origin" not in response_headers:
            response_headers["access-control-allow-origin"] = origin
            response_headers["access-control-expose-headers"] = EXPOSED_HEADERS
