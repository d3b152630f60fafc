"""Declaring edge functions, and finding them in `functions/<name>/index.py`.

A function folder holds one module that declares `function = Function(...)`: its name (the
Supabase function name, also its URL `/functions/v1/<name>`), methods, auth policy, input
models and handler. The handler receives a `Call` and returns JSON-able data or a `Reply`.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel
from starlette.datastructures import Headers, QueryParams

from aerelion.auth import Policy, Principal, SignaturePolicy, parse_policy

if TYPE_CHECKING:
    from aerelion.config import Settings
    from aerelion.transactions import Database, Transaction

NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Request headers that carry credentials never reach SQL's `request.headers`.
PRIVATE_HEADERS = frozenset({"authorization", "apikey", "cookie"})

BodyT = TypeVar("BodyT")
DEFAULT_RATE_LIMIT = (120, 60)


@dataclass
class Reply:
    """A response other than `200` with the returned data."""

    body: Any = None
    status: int = 200
    headers: Mapping[str, str] | None = None


@dataclass
class LogNote:
    """What the handler wants its request's log row to say (never secrets or bodies)."""

    message: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    level: str | None = None


@dataclass
class Call(Generic[BodyT]):
    """One request, authenticated and validated, as a handler sees it."""

    function: Function
    principal: Principal
    body: BodyT
    query: Any
    raw_body: bytes
    headers: Headers
    query_params: QueryParams
    method: str
    subpath: str
    request_id: str
    database: Database
    settings: Settings
    note: LogNote = field(default_factory=LogNote)

    def secret(self, name: str) -> str | None:
        return self.settings.get(name)

    def as_caller(self) -> AbstractAsyncContextManager[Transaction]:
        """A transaction as the caller (role and JWT claims set): RLS decides."""
        headers = {
            name: value
            for name, value in self.headers.items()
            if name not in PRIVATE_HEADERS and name not in self.function.private_headers
        }
        return self.database.acting_as(
            self.principal.role,
            self.principal.claims,
            method=self.method,
            path=f"/functions/v1/{self.function.name}{self.subpath}",
            headers=headers,
        )

    def as_service(self) -> AbstractAsyncContextManager[Transaction]:
        """A transaction as `service_role`, for work the service does on its own."""
        return self.database.as_service()


Handler = Callable[[Call[Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Function:
    name: str
    handler: Handler
    auth: str | Policy
    methods: tuple[str, ...] = ("POST",)
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    summary: str = ""
    max_body_bytes: int | None = None
    # Calls per window (seconds) per caller, counted in SQL before the handler runs; None:
    # never limited. Webhook receivers (`signature`) are not limited by default.
    rate_limit: tuple[int, int] | None = DEFAULT_RATE_LIMIT

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise ValueError(f"function name {self.name!r} must be lower-case-with-hyphens")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"{self.name}: methods must be among {', '.join(METHODS)}")
        if isinstance(self.policy, SignaturePolicy) and self.rate_limit == DEFAULT_RATE_LIMIT:
            object.__setattr__(self, "rate_limit", None)  # webhook senders are never refused

    @cached_property
    def policy(self) -> Policy:
        return parse_policy(self.auth)

    @property
    def verify_jwt(self) -> bool:
        """What `supabase/config.toml` must say for this function."""
        return self.policy.jwt_based

    @property
    def private_headers(self) -> frozenset[str]:
        return frozenset(h.lower() for h in self.policy.secret_headers())


def load_function(folder: Path) -> Function:
    """The `function` declared by `<folder>/index.py` (folder names have hyphens, so the
    module is loaded from its path)."""
    path = folder / "index.py"
    module_name = f"aerelion_functions.{folder.name.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function = getattr(module, "function", None)
    if not isinstance(function, Function):
        raise ImportError(f"{path} must declare `function = Function(...)`")
    if function.name != folder.name:
        raise ImportError(f"{path} declares {function.name!r}; its folder is {folder.name!r}")
    return function


def load_functions(directory: Path, names: list[str] | None = None) -> list[Function]:
    """Every function in `directory` (folders holding an `index.py`), or only `names`."""
    folders = sorted(p.parent for p in directory.glob("*/index.py"))
    available = {folder.name: folder for folder in folders}
    if names:
        missing = [n for n in names if n not in available]
        if missing:
            raise LookupError(f"no such function: {', '.join(missing)}")
        folders = [available[n] for n in names]
    return [load_function(folder) for folder in folders]
