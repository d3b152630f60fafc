"""A stand-in for the Hostinger VPS public API, for `make run` and the tests.

It serves the operations provisioning uses, with the paths, bodies and status codes of the
official OpenAPI description (version 1.42.5; the subset used is copied in
`hostinger_openapi.json` next to this file). Request bodies are validated against that
subset by a small validator (`schema_errors`) that understands the JSON Schema keywords
the subset uses. Where the description is silent (404 for an unknown id, the exact
validation messages, how long installation takes) the behaviour here is a plausible
choice, marked as such.

VM life cycle: a purchase creates a completed order and a VM in state `creating`
(`actions_lock: locked`) that becomes `running` with an IPv4 address from 203.0.113.0/24
after `setup_seconds`. A restart goes `stopping` -> `starting` -> `running` over about
the same time. States advance lazily, whenever they are read. SSH public keys are
registered with the account, attached to VMs and deleted; a root password change is an
action that succeeds at once (the password itself is kept nowhere).

Faults for tests (each consumed once unless noted): `fail_next`, `delay_next`,
`lose_next_purchase_reply`, `drop_next_purchase`, `stuck_creating` (a switch),
`leave_initial_next_purchase`, `error_next_setup`. `requests` logs every request as
`(method, path, json_body)` and `purchases` counts the purchases carried out.

It listens on 127.0.0.1 only and never logs the token or request bodies (the in-memory
`requests` log keeps bodies as sent, for tests to inspect).
"""

from __future__ import annotations

import asyncio
import copy
import fnmatch
import hmac
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from aerelion.standins.server import LoopbackServer, ServedStandIn

__all__ = [
    "DEFAULT_CATALOG",
    "DEFAULT_DATA_CENTERS",
    "DEFAULT_PAYMENT_METHODS",
    "DEFAULT_TEMPLATES",
    "N8N_TEMPLATE_ID",
    "SPEC",
    "HostingerStandIn",
    "schema_errors",
]

SPEC_PATH = Path(__file__).with_name("hostinger_openapi.json")
SPEC: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))

VPS = "/api/vps/v1"
BILLING = "/api/billing/v1"
VM_PATH = VPS + "/virtual-machines/{virtualMachineId}"

# ---------------------------------------------------------------------------------------
# A validator for the subset of JSON Schema (OpenAPI 3.0 flavour) the copied schemas use.
# Messages follow the Laravel wording the API uses ("The setup.template id field is
# required."), keyed by the dotted field path.

_VALIDATING = {"$ref", "type", "nullable", "required", "properties", "items", "minLength"}
_VALIDATING |= {"enum", "oneOf"}
_ANNOTATIONS = {"description", "example", "default", "format", "title"}
_TYPE_WORDS = {
    "string": "must be a string",
    "integer": "must be an integer",
    "number": "must be a number",
    "boolean": "must be true or false",
    "array": "must be an array",
    "object": "must be an object",
}


def _resolve(schema: Mapping[str, Any], spec: Mapping[str, Any]) -> Mapping[str, Any]:
    seen = 0
    while "$ref" in schema:
        ref = schema["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise NotImplementedError(f"only local $ref is supported, not {ref!r}")
        node: Any = spec
        for part in ref[2:].split("/"):
            node = node[part]
        schema = node
        seen += 1
        if seen > 32:
            raise ValueError(f"$ref loop at {ref}")
    return schema


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    raise NotImplementedError(f"unsupported type {kind!r}")


def _attribute(path: str) -> str:
    return path.replace("_", " ") if path else "request body"


def _check(
    schema: Mapping[str, Any],
    value: Any,
    path: str,
    errors: dict[str, list[str]],
    spec: Mapping[str, Any],
) -> None:
    schema = _resolve(schema, spec)
    unknown = {
        key
        for key in schema
        if key not in _VALIDATING and key not in _ANNOTATIONS and not key.startswith("x-")
    }
    if unknown:
        raise NotImplementedError(f"unsupported schema keywords: {sorted(unknown)}")
    key = path or "body"
    attribute = _attribute(path)

    def fail(message: str) -> None:
        errors.setdefault(key, []).append(message)

    if value is None and schema.get("nullable"):
        return
    kind = schema.get("type")
    if kind is not None and not _type_ok(kind, value):
        fail(f"The {attribute} field {_TYPE_WORDS[kind]}.")
        return
    if "oneOf" in schema:
        outcomes = []
        for branch in schema["oneOf"]:
            branch_errors: dict[str, list[str]] = {}
            _check(branch, value, path, branch_errors, spec)
            outcomes.append(branch_errors)
        passed = [outcome for outcome in outcomes if not outcome]
        if len(passed) != 1:
            if len(outcomes) == 1:
                for field_name, messages in outcomes[0].items():
                    errors.setdefault(field_name, []).extend(messages)
            else:
                fail(f"The {attribute} field is invalid.")
            return
    if "enum" in schema and value not in schema["enum"]:
        fail(f"The selected {attribute} is invalid.")
        return
    if "minLength" in schema and isinstance(value, str) and len(value) < schema["minLength"]:
        fail(f"The {attribute} field must be at least {schema['minLength']} characters.")
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if value.get(name) is None:
                child = f"{path}.{name}" if path else name
                errors.setdefault(child, []).append(f"The {_attribute(child)} field is required.")
        for name, child_schema in schema.get("properties", {}).items():
            if name not in value or (value[name] is None and name in schema.get("required", [])):
                continue  # absent, or null and already reported as required
            child = f"{path}.{name}" if path else name
            _check(child_schema, value[name], child, errors, spec)
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            _check(schema["items"], item, f"{path}.{index}" if path else str(index), errors, spec)


def schema_errors(
    schema: str | Mapping[str, Any], value: Any, *, spec: Mapping[str, Any] = SPEC
) -> dict[str, list[str]]:
    """Validation messages for `value` by field path (empty when valid).

    `schema` is a schema object or the name of one in `components.schemas`.
    """
    if isinstance(schema, str):
        schema = {"$ref": f"#/components/schemas/{schema}"}
    errors: dict[str, list[str]] = {}
    _check(schema, value, "", errors, spec)
    return errors


def _summary(errors: Mapping[str, list[str]]) -> str:
    """Laravel's summary: the first message and how many more there are."""
    messages = [message for items in errors.values() for message in items]
    if not messages:
        return "The given data was invalid."
    more = len(messages) - 1
    if more == 0:
        return messages[0]
    return f"{messages[0]} (and {more} more error{'s' if more > 1 else ''})"


# ---------------------------------------------------------------------------------------
# Reference data. Ids, prices and plan sizes are illustrative stand-in values, not
# Hostinger's real catalogue.

N8N_TEMPLATE_ID = 1130


def _plan(number: int, cpus: int, memory_gb: int, monthly: int, first: int) -> dict[str, Any]:
    item = f"hostingercom-vps-kvm{number}"
    return {
        "id": item,
        "name": f"KVM {number}",
        "category": "VPS",
        "metadata": {
            "cpus": cpus,
            "memory": memory_gb * 1024,
            "disk_space": memory_gb * 12800,
            "bandwidth": memory_gb * 1024 * 1024,
        },
        "prices": [
            {
                "id": f"{item}-usd-1m",
                "name": f"KVM {number} (billed every month)",
                "currency": "USD",
                "price": monthly,
                "first_period_price": first,
                "period": 1,
                "period_unit": "month",
            },
            {
                "id": f"{item}-usd-12m",
                "name": f"KVM {number} (billed every 12 months)",
                "currency": "USD",
                "price": monthly * 12,
                "first_period_price": first * 12,
                "period": 12,
                "period_unit": "month",
            },
        ],
    }


DEFAULT_CATALOG: list[dict[str, Any]] = [
    _plan(1, 1, 4, 1099, 499),
    _plan(2, 2, 8, 1399, 699),
    _plan(4, 4, 16, 2599, 999),
    _plan(8, 8, 32, 5099, 1999),
]

DEFAULT_DATA_CENTERS: list[dict[str, Any]] = [
    {"id": 29, "name": "phx", "location": "us", "city": "Phoenix", "continent": "North America"},
    {"id": 17, "name": "bos", "location": "us", "city": "Boston", "continent": "North America"},
    {"id": 19, "name": "ams", "location": "nl", "city": "Amsterdam", "continent": "Europe"},
    {"id": 21, "name": "fra", "location": "de", "city": "Frankfurt", "continent": "Europe"},
    {"id": 23, "name": "lon", "location": "gb", "city": "London", "continent": "Europe"},
    {"id": 25, "name": "sin", "location": "sg", "city": "Singapore", "continent": "Asia"},
]

DEFAULT_TEMPLATES: list[dict[str, Any]] = [
    {
        "id": 1077,
        "name": "Ubuntu 24.04 LTS",
        "description": "Ubuntu 24.04 LTS",
        "documentation": "https://ubuntu.com/server/docs",
    },
    {
        "id": 1002,
        "name": "Debian 12",
        "description": "Debian 12 (bookworm)",
        "documentation": "https://www.debian.org/doc/",
    },
    {
        "id": N8N_TEMPLATE_ID,
        "name": "Ubuntu 24.04 with n8n",
        "description": "n8n workflow automation on Ubuntu 24.04 LTS",
        "documentation": "https://docs.n8n.io",
    },
]

DEFAULT_PAYMENT_METHODS: list[dict[str, Any]] = [
    {
        "id": 1327362,
        "name": "Credit Card",
        "identifier": "4242*****4242",
        "payment_method": "card",
        "is_default": True,
        "is_expired": False,
        "is_suspended": False,
        "created_at": "2025-01-15T10:00:00Z",
        "expires_at": "2030-12-31T00:00:00Z",
    },
]

_BILLING_ADDRESS = {
    "first_name": "Stand",
    "last_name": "In",
    "company": None,
    "address_1": None,
    "address_2": None,
    "city": None,
    "state": None,
    "zip": None,
    "country": "NL",
    "phone": None,
    "email": "billing@example.com",
}


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------
# State


@dataclass
class _Action:
    id: int
    vm_id: int
    name: str
    created: datetime
    done_at: float  # monotonic
    seconds: float
    fails: bool = False

    def resource(self, now: float, vm_settled: bool) -> dict[str, Any]:
        if now >= self.done_at and vm_settled:
            state = "error" if self.fails else "success"
            updated = self.created + timedelta(seconds=self.seconds)
        else:
            state = "sent"
            updated = self.created
        return {
            "id": self.id,
            "name": self.name,
            "state": state,
            "created_at": _iso(self.created),
            "updated_at": _iso(updated),
        }


@dataclass
class _VM:
    id: int
    subscription_id: str
    plan: str
    cpus: int
    memory: int
    disk: int
    bandwidth: int
    hostname: str
    state: str
    created: datetime
    data_center_id: int | None = None
    template: dict[str, Any] | None = None
    ns1: str | None = None
    ns2: str | None = None
    ipv4: list[dict[str, Any]] | None = None
    public_key_ids: set[int] = field(default_factory=set)
    password_changes: int = 0
    # Scheduled transitions: (monotonic moment, state), applied in order when due.
    phases: list[tuple[float, str]] = field(default_factory=list)

    @property
    def actions_lock(self) -> str:
        return "locked" if self.phases else "unlocked"

    def resource(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "firewall_group_id": None,
            "subscription_id": self.subscription_id,
            "data_center_id": self.data_center_id,
            "plan": self.plan,
            "hostname": self.hostname,
            "state": self.state,
            "actions_lock": self.actions_lock,
            "cpus": self.cpus,
            "memory": self.memory,
            "disk": self.disk,
            "bandwidth": self.bandwidth,
            "ns1": self.ns1,
            "ns2": self.ns2,
            "ipv4": copy.deepcopy(self.ipv4),
            "ipv6": None,
            "template": copy.deepcopy(self.template),
            "created_at": _iso(self.created),
        }


@dataclass
class _Fault:
    key: str
    status: int
    remaining: int
    retry_after: float | None = None
    carry_out: bool = False


class _ConnectionDropped(Exception):
    """Raised after a reply has started, so that the server closes the connection."""


class _DroppedReply(Response):
    """Starts a 200 reply, sends a fragment of the body, then drops the connection."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"4096"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b'{"order":{', "more_body": True})
        raise _ConnectionDropped("reply dropped on purpose")


class _QuietDrops(logging.Filter):
    """Keeps uvicorn from logging a traceback for every deliberately dropped reply."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _ConnectionDropped)


_QUIET_DROPS = _QuietDrops()


def _error(
    status: int,
    message: str,
    *,
    errors: Mapping[str, list[str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"message": message}
    if errors is not None:
        body["errors"] = dict(errors)
    body["correlation_id"] = str(uuid.uuid4())
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _unprocessable(errors: Mapping[str, list[str]]) -> JSONResponse:
    return _error(422, _summary(errors), errors=errors)


_FAULT_MESSAGES = {
    429: "Too Many Attempts.",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}

Handler = Callable[[Request, Any], Awaitable[Response]]


class HostingerStandIn(ServedStandIn):
    """The Hostinger VPS API on 127.0.0.1, with state and fault switches for tests.

    `with HostingerStandIn(token="t") as hostinger:` starts it; `hostinger.url` is the
    base URL to give the client.
    """

    def __init__(
        self,
        token: str,
        *,
        setup_seconds: float = 0.5,
        catalog: Iterable[Mapping[str, Any]] | None = None,
        data_centers: Iterable[Mapping[str, Any]] | None = None,
        templates: Iterable[Mapping[str, Any]] | None = None,
        payment_methods: Iterable[Mapping[str, Any]] | None = None,
        post_install_scripts: Iterable[int] | None = None,
    ) -> None:
        if not token:
            raise ValueError("the stand-in needs the token it will accept")
        self._token = token
        self.setup_seconds = float(setup_seconds)
        self.catalog = copy.deepcopy(list(catalog if catalog is not None else DEFAULT_CATALOG))
        self.data_centers = copy.deepcopy(
            list(data_centers if data_centers is not None else DEFAULT_DATA_CENTERS)
        )
        self.templates = copy.deepcopy(
            list(templates if templates is not None else DEFAULT_TEMPLATES)
        )
        self.payment_methods = copy.deepcopy(
            list(payment_methods if payment_methods is not None else DEFAULT_PAYMENT_METHODS)
        )
        #: None accepts any post_install_script_id.
        self.post_install_scripts = (
            set(post_install_scripts) if post_install_scripts is not None else None
        )

        self.requests: list[tuple[str, str, Any]] = []
        self.purchases = 0
        self.orders: list[dict[str, Any]] = []
        self.stuck_creating = False

        self._lock = threading.RLock()
        self._vms: dict[int, _VM] = {}
        self._actions: dict[int, _Action] = {}
        self._vm_ids = itertools.count(1_268_054)
        self._order_ids = itertools.count(2_957_086)
        self._action_ids = itertools.count(8_123_712)
        self._ip_ids = itertools.count(52_347)
        self._key_ids = itertools.count(325)
        self.public_keys: dict[int, dict[str, Any]] = {}
        self._next_host = 10
        self._faults: list[_Fault] = []
        self._delays: list[tuple[str, float]] = []
        self._lose_purchase_reply: str | None = None
        self._drop_purchase = False
        self._leave_initial = False
        self._error_setup = False

        self._stopping = threading.Event()
        self.url: str | None = None
        self.app = self._build_app()
        self._server = LoopbackServer(self.app, "hostinger-standin")

    def __repr__(self) -> str:
        return f"HostingerStandIn(url={self.url!r}, vms={len(self._vms)})"

    # -- fault switches --------------------------------------------------------------

    def fail_next(
        self,
        path_prefix_or_op: str,
        status: int,
        times: int = 1,
        *,
        retry_after: float | None = None,
        carry_out: bool = False,
    ) -> None:
        """Answer the next `times` matching requests with `status` (and `Retry-After`).

        The key is an operation (`purchase`, `list`, `get`, `setup`, `restart`, `metrics`,
        `actions`, `action`, `root_password`, `create_key`, `attach_keys`, `delete_key`,
        `data_centers`, `templates`, `catalog`, `payment_methods`, or the spec's
        operationId), a path prefix (`/api/vps/v1/...`), or `METHOD /prefix`.
        With `carry_out` the request is carried out first and only its reply is replaced.
        """
        with self._lock:
            self._faults.append(_Fault(path_prefix_or_op, status, times, retry_after, carry_out))

    def delay_next(self, op: str, seconds: float) -> None:
        """Wait `seconds` before handling the next matching request (it is then handled)."""
        with self._lock:
            self._delays.append((op, seconds))

    def lose_next_purchase_reply(self, *, hang: bool = False) -> None:
        """Carry out the next purchase but never deliver its reply.

        The connection is dropped mid-reply, or with `hang` the reply is held back until the
        client gives up and disconnects.
        """
        with self._lock:
            self._lose_purchase_reply = "hang" if hang else "drop"

    def drop_next_purchase(self) -> None:
        """Drop the connection of the next purchase without carrying it out."""
        with self._lock:
            self._drop_purchase = True

    def leave_initial_next_purchase(self) -> None:
        """The next purchased VM is not set up: it stays `initial` until /setup is called."""
        with self._lock:
            self._leave_initial = True

    def error_next_setup(self) -> None:
        """The next setup (by purchase or /setup) ends with the VM in state `error`."""
        with self._lock:
            self._error_setup = True

    def reset(self) -> None:
        """Forget every VM, order, action, logged request and pending fault."""
        with self._lock:
            self.requests.clear()
            self.orders.clear()
            self.purchases = 0
            self.stuck_creating = False
            self._vms.clear()
            self._actions.clear()
            self.public_keys.clear()
            self._faults.clear()
            self._delays.clear()
            self._lose_purchase_reply = None
            self._drop_purchase = self._leave_initial = self._error_setup = False

    # -- inspection helpers for tests --------------------------------------------------

    def virtual_machines(self) -> list[dict[str, Any]]:
        """Every VM as the API would show it now."""
        with self._lock:
            return [self._advanced(vm).resource() for vm in self._vms.values()]

    def virtual_machine(self, vm_id: int) -> dict[str, Any] | None:
        """One VM as the API would show it now, or None."""
        with self._lock:
            vm = self._vms.get(vm_id)
            return self._advanced(vm).resource() if vm else None

    def set_state(self, vm_id: int, state: str) -> None:
        """Force a VM into `state` (cancelling pending transitions)."""
        with self._lock:
            vm = self._vms[vm_id]
            vm.state = state
            vm.phases.clear()

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> str:
        """Serve on 127.0.0.1 on a free port in a background thread; returns the base URL."""
        if self._server.running:
            raise RuntimeError("the stand-in is already running")
        error_logger = logging.getLogger("uvicorn.error")
        if _QUIET_DROPS not in error_logger.filters:
            error_logger.addFilter(_QUIET_DROPS)
        self._stopping.clear()
        try:
            self.url = self._server.start()
        except RuntimeError:
            raise RuntimeError("the Hostinger stand-in did not start") from None
        return self.url

    def stop(self) -> None:
        """Stop serving (in-flight requests get a second to finish)."""
        if not self._server.running:
            return
        self._stopping.set()
        self._server.stop()
        self.url = None

    # -- the ASGI app ------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        routes = [
            self._route("list", "GET", VPS + "/virtual-machines", self._list_vms),
            self._route("purchase", "POST", VPS + "/virtual-machines", self._purchase),
            self._route("get", "GET", VM_PATH, self._get_vm),
            self._route("setup", "POST", VM_PATH + "/setup", self._setup),
            self._route("restart", "POST", VM_PATH + "/restart", self._restart),
            self._route("metrics", "GET", VM_PATH + "/metrics", self._metrics),
            self._route("actions", "GET", VM_PATH + "/actions", self._list_actions),
            self._route(
                "root_password", "PUT", VM_PATH + "/root-password", self._set_root_password
            ),
            self._route("create_key", "POST", VPS + "/public-keys", self._create_key),
            self._route(
                "attach_keys",
                "POST",
                VPS + "/public-keys/attach/{virtualMachineId}",
                self._attach_keys,
            ),
            self._route(
                "delete_key", "DELETE", VPS + "/public-keys/{publicKeyId}", self._delete_key
            ),
            self._route("action", "GET", VM_PATH + "/actions/{actionId}", self._get_action),
            self._route("data_centers", "GET", VPS + "/data-centers", self._data_centers),
            self._route("templates", "GET", VPS + "/templates", self._templates),
            self._route("catalog", "GET", BILLING + "/catalog", self._catalog),
            self._route(
                "payment_methods", "GET", BILLING + "/payment-methods", self._payment_methods
            ),
        ]

        async def http_error(request: Request, exc: Exception) -> Response:
            status = exc.status_code if isinstance(exc, HTTPException) else 500
            return _error(status, HTTPStatus(status).phrase)

        return Starlette(routes=routes, exception_handlers={404: http_error, 405: http_error})

    def _route(self, op: str, method: str, template: str, handler: Handler) -> Route:
        operation_id = SPEC["paths"][template][method.lower()]["operationId"]
        path = (
            template.replace("{virtualMachineId}", "{vm_id:int}")
            .replace("{actionId}", "{action_id:int}")
            .replace("{publicKeyId}", "{key_id:int}")
        )

        async def endpoint(request: Request) -> Response:
            return await self._dispatch(request, op, operation_id, handler)

        return Route(path, endpoint, methods=[method], name=op)

    async def _dispatch(
        self, request: Request, op: str, operation_id: str, handler: Handler
    ) -> Response:
        raw = await request.body()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        method, path = request.method, request.url.path
        with self._lock:
            self.requests.append((method, path, body))
        if not self._authorized(request):
            return _error(401, "Unauthenticated")
        with self._lock:
            fault = self._take_fault(op, operation_id, method, path)
            delay = self._take_delay(op, operation_id, method, path)
        if delay:
            await asyncio.sleep(delay)
        if fault is not None and not fault.carry_out:
            return self._fault_response(fault)
        response = await handler(request, body)
        if fault is not None:
            return self._fault_response(fault)
        return response

    def _authorized(self, request: Request) -> bool:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return False
        return hmac.compare_digest(given.strip().encode(), self._token.encode())

    @staticmethod
    def _matches(key: str, op: str, operation_id: str, method: str, path: str) -> bool:
        if key in (op, operation_id):
            return True
        wanted_method, _, prefix = key.partition(" ") if " " in key else ("", "", key)
        if wanted_method and wanted_method.upper() != method:
            return False
        return prefix.startswith("/") and path.startswith(prefix)

    def _take_fault(self, op: str, operation_id: str, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if self._matches(fault.key, op, operation_id, method, path):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _take_delay(self, op: str, operation_id: str, method: str, path: str) -> float:
        for index, (key, seconds) in enumerate(self._delays):
            if self._matches(key, op, operation_id, method, path):
                del self._delays[index]
                return seconds
        return 0.0

    @staticmethod
    def _fault_response(fault: _Fault) -> Response:
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        try:
            phrase = HTTPStatus(fault.status).phrase
        except ValueError:
            phrase = "Error"
        return _error(fault.status, _FAULT_MESSAGES.get(fault.status, phrase), headers=headers)

    # -- state -------------------------------------------------------------------------

    def _advanced(self, vm: _VM) -> _VM:
        """Apply the transitions that are due (callers hold the lock)."""
        now = time.monotonic()
        while vm.phases and vm.phases[0][0] <= now:
            if vm.state == "creating" and self.stuck_creating:
                break
            _, state = vm.phases.pop(0)
            vm.state = state
            if state == "running" and vm.ipv4 is None:
                vm.ipv4 = [self._new_address(vm)]
        return vm

    def _new_address(self, vm: _VM) -> dict[str, Any]:
        host = self._next_host
        self._next_host = host + 1 if host < 254 else 10
        return {
            "id": next(self._ip_ids),
            "address": f"203.0.113.{host}",
            "ptr": f"srv{vm.id}.hstgr.cloud",
        }

    def _find_vm(self, vm_id: int) -> _VM | None:
        vm = self._vms.get(vm_id)
        return self._advanced(vm) if vm is not None else None

    def _price(self, item_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        for item in self.catalog:
            if item.get("category") != "VPS":
                continue
            for price in item.get("prices") or []:
                if price.get("id") == item_id:
                    return item, price
        return None

    def _setup_errors(self, setup: Any, prefix: str, errors: dict[str, list[str]]) -> None:
        """Add reference checks of the SetupRequest fields the schema found well typed."""
        if not isinstance(setup, dict):
            return
        checks = [
            ("template_id", {item["id"] for item in self.templates}),
            ("data_center_id", {item["id"] for item in self.data_centers}),
        ]
        if self.post_install_scripts is not None:
            checks.append(("post_install_script_id", self.post_install_scripts))
        for name, known in checks:
            key = prefix + name
            if setup.get(name) is not None and key not in errors and setup[name] not in known:
                errors[key] = [f"The selected {_attribute(key)} is invalid."]

    def _purchase_errors(self, body: Any) -> dict[str, list[str]]:
        """Schema and reference checks of a PurchaseRequest, by field."""
        errors = schema_errors("VPS.V1.VirtualMachine.PurchaseRequest", body)
        if not isinstance(body, dict):
            return errors
        item_id = body.get("item_id")
        if isinstance(item_id, str) and "item_id" not in errors and self._price(item_id) is None:
            errors["item_id"] = ["The selected item id is invalid."]
        method_id = body.get("payment_method_id")
        if method_id is None:
            if not any(method.get("is_default") for method in self.payment_methods):
                errors["payment_method_id"] = ["The payment method id field is required."]
        elif "payment_method_id" not in errors and method_id not in {
            method["id"] for method in self.payment_methods
        }:
            errors["payment_method_id"] = ["The selected payment method id is invalid."]
        self._setup_errors(body.get("setup"), "setup.", errors)
        # In the order of the request's fields, as the API lists them.
        order = {"item_id": 0, "payment_method_id": 1, "setup": 2, "coupons": 3}
        return dict(sorted(errors.items(), key=lambda kv: order.get(kv[0].split(".")[0], 4)))

    def _apply_setup(self, vm: _VM, setup: Mapping[str, Any]) -> None:
        """Start installing (the password is used for nothing and kept nowhere)."""
        now = time.monotonic()
        template_id = setup["template_id"]
        vm.template = copy.deepcopy(next(t for t in self.templates if t["id"] == template_id))
        vm.data_center_id = setup["data_center_id"]
        if setup.get("hostname"):
            vm.hostname = setup["hostname"]
        vm.ns1 = setup.get("ns1") or "153.92.2.6"
        vm.ns2 = setup.get("ns2") or "1.1.1.1"
        fails, self._error_setup = self._error_setup, False
        vm.state = "creating"
        done = now + self.setup_seconds
        vm.phases = [(done, "error" if fails else "running")]
        action = _Action(
            next(self._action_ids), vm.id, "setup", _now(), done, self.setup_seconds, fails
        )
        self._actions[action.id] = action

    def _action_resource(self, action: _Action) -> dict[str, Any]:
        vm = self._find_vm(action.vm_id)
        settled = vm is not None and not vm.phases
        return action.resource(time.monotonic(), settled)

    # -- handlers ----------------------------------------------------------------------

    async def _list_vms(self, request: Request, body: Any) -> Response:
        return JSONResponse(self.virtual_machines())

    async def _get_vm(self, request: Request, body: Any) -> Response:
        with self._lock:
            vm = self._find_vm(request.path_params["vm_id"])
            if vm is None:
                return _error(404, "Virtual machine not found")
            return JSONResponse(vm.resource())

    async def _purchase(self, request: Request, body: Any) -> Response:
        with self._lock:
            drop, self._drop_purchase = self._drop_purchase, False
        if drop:
            return _DroppedReply()
        errors = self._purchase_errors(body)
        if errors:
            return _unprocessable(errors)

        with self._lock:
            order, vm = self._create(body)
            reply = {"order": order, "virtual_machine": vm.resource()}
            lose, self._lose_purchase_reply = self._lose_purchase_reply, None
        if lose == "hang":
            await self._hang(request)
        if lose is not None:
            return _DroppedReply()
        return JSONResponse(reply)

    def _create(self, body: Mapping[str, Any]) -> tuple[dict[str, Any], _VM]:
        """Carry out a purchase (callers hold the lock)."""
        priced = self._price(body["item_id"])
        assert priced is not None
        item, price = priced
        specs = item.get("metadata") or {}
        created = _now()
        subscription_id = uuid.uuid4().hex[:17]
        vm_id = next(self._vm_ids)
        vm = _VM(
            id=vm_id,
            subscription_id=subscription_id,
            plan=str(item.get("name") or item["id"]),
            cpus=int(specs.get("cpus", 1)),
            memory=int(specs.get("memory", 4096)),
            disk=int(specs.get("disk_space", 51200)),
            bandwidth=int(specs.get("bandwidth", 4_194_304)),
            hostname=f"srv{vm_id}.hstgr.cloud",
            state="initial",
            created=created,
        )
        self._vms[vm.id] = vm
        leave_initial, self._leave_initial = self._leave_initial, False
        if not leave_initial:
            self._apply_setup(vm, body["setup"])
        order = {
            "id": next(self._order_ids),
            "subscription_id": subscription_id,
            "status": "completed",
            "currency": price.get("currency", "USD"),
            "subtotal": price.get("first_period_price", price.get("price", 0)),
            "total": price.get("first_period_price", price.get("price", 0)),
            "billing_address": dict(_BILLING_ADDRESS),
            "created_at": _iso(created),
            "updated_at": _iso(created),
        }
        self.orders.append(order)
        self.purchases += 1
        return copy.deepcopy(order), vm

    async def _hang(self, request: Request, limit: float = 120.0) -> None:
        """Hold the reply until the client disconnects (or the stand-in stops)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and not self._stopping.is_set():
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.02)

    async def _setup(self, request: Request, body: Any) -> Response:
        errors = schema_errors("VPS.V1.VirtualMachine.SetupRequest", body)
        self._setup_errors(body, "", errors)
        with self._lock:
            vm = self._find_vm(request.path_params["vm_id"])
            if vm is None:
                return _error(404, "Virtual machine not found")
            if errors:
                return _unprocessable(errors)
            if vm.state != "initial":
                return _error(422, f"Virtual machine is not in initial state (it is {vm.state})")
            self._apply_setup(vm, body)
            return JSONResponse(vm.resource())

    async def _restart(self, request: Request, body: Any) -> Response:
        with self._lock:
            vm = self._find_vm(request.path_params["vm_id"])
            if vm is None:
                return _error(404, "Virtual machine not found")
            if vm.phases:
                return _error(422, "Virtual machine is locked by another action")
            if vm.state not in ("running", "stopped"):
                return _error(422, f"Virtual machine cannot be restarted while {vm.state}")
            now = time.monotonic()
            seconds = self.setup_seconds
            vm.state = "stopping" if vm.state == "running" else "starting"
            vm.phases = [(now + seconds / 2, "starting"), (now + seconds, "running")]
            action = _Action(
                next(self._action_ids), vm.id, "restart", _now(), now + seconds, seconds
            )
            self._actions[action.id] = action
            resource = action.resource(now, vm_settled=False)
            resource["state"] = "created"
            return JSONResponse(resource)

    async def _metrics(self, request: Request, body: Any) -> Response:
        bounds: dict[str, datetime] = {}
        errors: dict[str, list[str]] = {}
        for name in ("date_from", "date_to"):
            raw = request.query_params.get(name)
            attribute = _attribute(name)
            if not raw:
                errors[name] = [f"The {attribute} field is required."]
                continue
            try:
                moment = datetime.fromisoformat(raw)
            except ValueError:
                errors[name] = [f"The {attribute} field must be a valid date."]
                continue
            bounds[name] = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        if not errors and bounds["date_to"] <= bounds["date_from"]:
            errors["date_to"] = ["The date to field must be a date after date from."]
        if errors:
            return _unprocessable(errors)
        with self._lock:
            vm = self._find_vm(request.path_params["vm_id"])
            if vm is None:
                return _error(404, "Virtual machine not found")
            return JSONResponse(_metrics(vm, bounds["date_from"], bounds["date_to"]))

    async def _list_actions(self, request: Request, body: Any) -> Response:
        try:
            page = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            return _unprocessable({"page": ["The page field must be an integer."]})
        per_page = 50
        with self._lock:
            vm_id = request.path_params["vm_id"]
            if self._find_vm(vm_id) is None:
                return _error(404, "Virtual machine not found")
            actions = sorted(
                (a for a in self._actions.values() if a.vm_id == vm_id),
                key=lambda a: a.id,
                reverse=True,
            )
            data = [self._action_resource(a) for a in actions]
        start = (page - 1) * per_page
        return JSONResponse(
            {
                "data": data[start : start + per_page],
                "meta": {"current_page": page, "per_page": per_page, "total": len(data)},
            }
        )

    async def _get_action(self, request: Request, body: Any) -> Response:
        with self._lock:
            action = self._actions.get(request.path_params["action_id"])
            if action is None or action.vm_id != request.path_params["vm_id"]:
                return _error(404, "Action not found")
            return JSONResponse(self._action_resource(action))

    def _instant_action(self, vm: _VM, name: str) -> dict[str, Any]:
        """An action that is done as soon as it is created (callers hold the lock)."""
        action = _Action(next(self._action_ids), vm.id, name, _now(), time.monotonic(), 0.0)
        self._actions[action.id] = action
        return self._action_resource(action)

    def _unlocked_vm(self, vm_id: int) -> _VM | Response:
        """The VM, or the error reply for an unknown or busy one (callers hold the lock)."""
        vm = self._find_vm(vm_id)
        if vm is None:
            return _error(404, "Virtual machine not found")
        if vm.phases:
            return _error(422, "Virtual machine is locked by another action")
        return vm

    async def _set_root_password(self, request: Request, body: Any) -> Response:
        errors = schema_errors("VPS.V1.VirtualMachine.RootPasswordUpdateRequest", body)
        with self._lock:
            vm = self._unlocked_vm(request.path_params["vm_id"])
            if isinstance(vm, Response):
                return vm
            if errors:
                return _unprocessable(errors)
            vm.password_changes += 1
            return JSONResponse(self._instant_action(vm, "set_root_password"))

    async def _create_key(self, request: Request, body: Any) -> Response:
        errors = schema_errors("VPS.V1.PublicKey.StoreRequest", body)
        if errors:
            return _unprocessable(errors)
        with self._lock:
            key = {"id": next(self._key_ids), "name": body["name"], "key": body["key"]}
            self.public_keys[key["id"]] = key
            return JSONResponse(dict(key))

    async def _attach_keys(self, request: Request, body: Any) -> Response:
        errors = schema_errors("VPS.V1.PublicKey.AttachRequest", body)
        with self._lock:
            vm = self._unlocked_vm(request.path_params["vm_id"])
            if isinstance(vm, Response):
                return vm
            if not errors:  # plausible: unknown ids are refused like other references
                for index, key_id in enumerate(body["ids"]):
                    if key_id not in self.public_keys:
                        errors[f"ids.{index}"] = [f"The selected ids.{index} is invalid."]
            if errors:
                return _unprocessable(errors)
            vm.public_key_ids.update(body["ids"])
            return JSONResponse(self._instant_action(vm, "attach_public_key"))

    async def _delete_key(self, request: Request, body: Any) -> Response:
        with self._lock:
            if self.public_keys.pop(request.path_params["key_id"], None) is None:
                return _error(404, "Public key not found")
        return JSONResponse({"message": "Request accepted"})

    async def _data_centers(self, request: Request, body: Any) -> Response:
        return JSONResponse(self.data_centers)

    async def _templates(self, request: Request, body: Any) -> Response:
        return JSONResponse(self.templates)

    async def _catalog(self, request: Request, body: Any) -> Response:
        category = request.query_params.get("category")
        name = request.query_params.get("name")
        if category is not None and category not in ("DOMAIN", "VPS", "EMAIL"):
            return _unprocessable({"category": ["The selected category is invalid."]})
        pattern = name.lower() if name else None
        items = [
            item
            for item in self.catalog
            if (category is None or item.get("category") == category)
            and (pattern is None or fnmatch.fnmatchcase(str(item.get("name", "")).lower(), pattern))
        ]
        return JSONResponse(items)

    async def _payment_methods(self, request: Request, body: Any) -> Response:
        return JSONResponse(self.payment_methods)


def _metrics(vm: _VM, date_from: datetime, date_to: datetime) -> dict[str, Any]:
    """A MetricsCollection with a point every 5 minutes (never in the future)."""
    start = int(date_from.timestamp())
    end = min(int(date_to.timestamp()), int(time.time()))
    step = 300
    while (end - start) // step > 2000:
        step *= 2
    first = -(-start // step) * step
    stamps = range(first, end + 1, step) if end >= first else range(0)
    created = int(vm.created.timestamp())
    cpu, ram, disk, out, into, up = ({} for _ in range(6))
    for stamp in stamps:
        wave = ((vm.id * 2_654_435_761 + stamp) % 1000) / 1000  # deterministic noise
        key = str(stamp)
        cpu[key] = round(1 + 19 * wave, 2)
        ram[key] = int(vm.memory * 1024 * 1024 * (0.25 + 0.2 * wave))
        disk[key] = int(2_620_018_688 + 1_000_000 * wave)
        out[key] = int(500_000 + 1_000_000 * wave)
        into[key] = int(5_000_000 + 8_000_000 * wave)
        up[key] = max(0, stamp - created) * 1000
    return {
        "cpu_usage": {"unit": "%", "usage": cpu},
        "ram_usage": {"unit": "bytes", "usage": ram},
        "disk_space": {"unit": "bytes", "usage": disk},
        "outgoing_traffic": {"unit": "bytes", "usage": out},
        "incoming_traffic": {"unit": "bytes", "usage": into},
        "uptime": {"unit": "milliseconds", "usage": up},
    }
