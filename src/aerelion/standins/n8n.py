"""A stand-in for an n8n node's public API v1, for `make run` and the tests.

It follows what real n8n 2.8.4 does (as observed on real nodes, `reference/n8n-local.md`):
`X-N8N-API-KEY` (401 `'X-N8N-API-KEY' header required` / `unauthorized`); workflow bodies
validated as n8n's OpenAPI validator does (required `name`, `nodes`, `connections`,
`settings`; read-only `id`, `active`, `tags`, `createdAt`, `updatedAt`; no additional
properties at the top, in `settings` or in a node); create answers 200 with the workflow;
activation needs a trigger node and refuses a webhook path another active workflow serves;
credentials are checked against the schema of their type (`GET /credentials/schema/{type}`,
the real schemas of the four types activation creates); 404 `{"message": "Not Found"}` for
unknown ids. Webhooks are served at `/webhook/<path>` (with a webhookId) or
`/webhook/<workflow id>/<node name>/<path>` (without), as n8n serves them.

Faults: `fail_next(op, status, times)` (429 and 5xx carry `Retry-After` when asked),
`delay_next(op, seconds)`, and `starting_for(seconds)`: every path answers 200 "n8n is
starting up. Please wait" meanwhile, as n8n does while it boots. Operations: `create`,
`get`, `list`, `update`, `activate`, `deactivate`, `delete`, `create_credential`,
`delete_credential`, `schema`, `webhook`, `settings`.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import itertools
import json
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from aerelion.standins.server import LoopbackServer, ServedStandIn

WORKFLOW_FIELDS = {"name", "nodes", "connections", "settings", "staticData", "shared"}
READ_ONLY = ("id", "active", "tags", "createdAt", "updatedAt")
SETTINGS_KEYS = {
    "saveExecutionProgress",
    "saveManualExecutions",
    "saveDataErrorExecution",
    "saveDataSuccessExecution",
    "executionTimeout",
    "errorWorkflow",
    "timezone",
    "executionOrder",
    "callerPolicy",
    "callerIds",
    "timeSavedPerExecution",
    "availableInMCP",
}
NODE_KEYS = {
    "id",
    "name",
    "type",
    "typeVersion",
    "position",
    "parameters",
    "credentials",
    "webhookId",
    "disabled",
    "notes",
    "notesInFlow",
    "executeOnce",
    "alwaysOutputData",
    "retryOnFail",
    "maxTries",
    "waitBetweenTries",
    "onError",
}
# The real schemas (n8n 2.8.4) of the credential types activation creates.
CREDENTIAL_SCHEMAS: dict[str, dict[str, Any]] = {
    "openAiApi": {
        "additionalProperties": False,
        "type": "object",
        "properties": {
            "apiKey": {"type": "string"},
            "organizationId": {"type": "string"},
            "url": {"type": "string"},
            "header": {"type": "boolean"},
            "headerName": {"type": "string"},
            "headerValue": {"type": "string"},
        },
        "required": ["apiKey"],
    },
    "telegramApi": {
        "additionalProperties": False,
        "type": "object",
        "properties": {"accessToken": {"type": "string"}, "baseUrl": {"type": "string"}},
        "required": [],
    },
    "airtableTokenApi": {
        "additionalProperties": False,
        "type": "object",
        "properties": {"accessToken": {"type": "string"}, "notice": {"type": "notice"}},
        "required": [],
    },
    "httpHeaderAuth": {
        "additionalProperties": False,
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "value": {"type": "string"},
            "useCustomAuth": {"type": "notice"},
        },
        "required": [],
    },
}
KNOWN_NODE_PREFIXES = ("n8n-nodes-base.", "@n8n/n8n-nodes-langchain.")
STARTING = "n8n is starting up. Please wait"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def _message(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status, headers=headers)


def _is_trigger(node: dict[str, Any]) -> bool:
    kind = str(node.get("type", "")).lower()
    return "trigger" in kind or kind.endswith(".webhook")


def workflow_errors(body: Any) -> str | None:
    """n8n's first validation message for a workflow body, or None."""
    if not isinstance(body, dict):
        return "request/body must be object"
    for name in READ_ONLY:
        if name in body:
            return f"request/body/{name} is read-only"
    for name in ("name", "nodes", "connections", "settings"):
        if name not in body:
            return f"request/body must have required property '{name}'"
    if set(body) - WORKFLOW_FIELDS:
        return "request/body must NOT have additional properties"
    if not isinstance(body["nodes"], list):
        return "request/body/nodes must be array"
    if not isinstance(body["connections"], dict):
        return "request/body/connections must be object"
    if not isinstance(body["settings"], dict):
        return "request/body/settings must be object"
    if set(body["settings"]) - SETTINGS_KEYS:
        return "request/body/settings must NOT have additional properties"
    for index, node in enumerate(body["nodes"]):
        if not isinstance(node, dict):
            return f"request/body/nodes/{index} must be object"
        if set(node) - NODE_KEYS:
            return f"request/body/nodes/{index} must NOT have additional properties"
    return None


def credential_errors(kind: str, data: Any) -> str | None:
    schema = CREDENTIAL_SCHEMAS.get(kind)
    if schema is None:
        return None  # a type the stand-in does not model: accepted as n8n would most
    if not isinstance(data, dict):
        return "request.body.data is not of a type(s) object"
    for name in data:
        if name not in schema["properties"]:
            return f'request.body.data is not allowed to have the additional property "{name}"'
    for name in schema["required"]:
        if name not in data:
            return f'request.body.data requires property "{name}"'
    if (
        kind == "openAiApi"
        and data.get("header") is not False
        and not (data.get("headerName") and data.get("headerValue"))
    ):
        return 'request.body.data requires property "headerName"'
    for name, value in data.items():
        expected = schema["properties"][name].get("type")
        if expected == "string" and not isinstance(value, str):
            return f"request.body.data.{name} is not of a type(s) string"
        if expected == "boolean" and not isinstance(value, bool):
            return f"request.body.data.{name} is not of a type(s) boolean"
    return None


class N8nStandIn(ServedStandIn):
    """One n8n node on 127.0.0.1; `with N8nStandIn(api_key="k") as node:` then `node.url`."""

    def __init__(self, api_key: str, *, name: str = "n8n-standin") -> None:
        if not api_key:
            raise ValueError("the stand-in needs the API key it will accept")
        self._key = api_key
        self.name = name
        self.workflows: dict[str, dict[str, Any]] = {}
        self.credentials: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path): never bodies or keys
        self.webhook_calls: list[tuple[str, Any]] = []
        self._faults: list[list[Any]] = []  # [op, status, remaining, retry_after]
        self._delays: list[tuple[str, float]] = []
        self._starting_until = 0.0
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self.url: str | None = None
        self.app = self._build_app()
        self._server = LoopbackServer(self.app, name)

    # -- switches and inspection ------------------------------------------------------

    def fail_next(
        self, op: str, status: int, times: int = 1, *, retry_after: float | None = None
    ) -> None:
        with self._lock:
            self._faults.append([op, status, times, retry_after])

    def delay_next(self, op: str, seconds: float) -> None:
        with self._lock:
            self._delays.append((op, seconds))

    def starting_for(self, seconds: float) -> None:
        self._starting_until = time.monotonic() + seconds

    def active_workflows(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(w) for w in self.workflows.values() if w["active"]]

    def reset(self) -> None:
        with self._lock:
            self.workflows.clear()
            self.credentials.clear()
            self.requests.clear()
            self.webhook_calls.clear()
            self._faults.clear()
            self._delays.clear()
            self._starting_until = 0.0

    # -- the app ------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        api = "/api/v1"
        wf = api + "/workflows/{workflow_id}"
        routes = [
            self._route("list", "GET", api + "/workflows", self._list),
            self._route("create", "POST", api + "/workflows", self._create),
            self._route("get", "GET", wf, self._get),
            self._route("update", "PUT", wf, self._update),
            self._route("delete", "DELETE", wf, self._delete),
            self._route("activate", "POST", wf + "/activate", self._activate),
            self._route("deactivate", "POST", wf + "/deactivate", self._deactivate),
            self._route("schema", "GET", api + "/credentials/schema/{kind}", self._schema),
            self._route("create_credential", "POST", api + "/credentials", self._create_credential),
            self._route(
                "delete_credential",
                "DELETE",
                api + "/credentials/{credential_id}",
                self._delete_credential,
            ),
            self._route("settings", "GET", "/rest/settings", self._settings, public=True),
            self._route("webhook", "POST", "/webhook/{path:path}", self._webhook, public=True),
        ]

        async def not_found(request: Request, exc: Exception) -> Response:
            if time.monotonic() < self._starting_until:
                return PlainTextResponse(STARTING)
            return _message(404, "Not Found")

        return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})

    def _route(
        self,
        op: str,
        method: str,
        path: str,
        handler: Callable[[Request, Any], Awaitable[Response]],
        *,
        public: bool = False,
    ) -> Route:
        async def endpoint(request: Request) -> Response:
            with self._lock:
                self.requests.append((request.method, request.url.path))
            if time.monotonic() < self._starting_until:
                return PlainTextResponse(STARTING)
            if not public:
                given = request.headers.get("x-n8n-api-key")
                if not given:
                    return _message(401, "'X-N8N-API-KEY' header required")
                if not hmac.compare_digest(given.encode(), self._key.encode()):
                    return _message(401, "unauthorized")
            delay = self._take_delay(op)
            if delay:
                await asyncio.sleep(delay)
            fault = self._take_fault(op)
            if fault is not None:
                status, retry_after = fault
                headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
                return _message(
                    status, "Internal Server Error" if status >= 500 else "error", headers
                )
            raw = await request.body()
            body: Any = None
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    return PlainTextResponse("Failed to parse request body", status_code=500)
            with self._lock:
                return await handler(request, body)

        return Route(path, endpoint, methods=[method])

    def _take_fault(self, op: str) -> tuple[int, float | None] | None:
        with self._lock:
            for fault in self._faults:
                if fault[0] == op:
                    fault[2] -= 1
                    if fault[2] <= 0:
                        self._faults.remove(fault)
                    return fault[1], fault[3]
        return None

    def _take_delay(self, op: str) -> float:
        with self._lock:
            for index, (key, seconds) in enumerate(self._delays):
                if key == op:
                    del self._delays[index]
                    return seconds
        return 0.0

    # -- handlers (called with the lock held) -------------------------------------------

    def _new_id(self) -> str:
        return f"{next(self._ids):04d}{secrets.token_hex(6)}"

    async def _list(self, request: Request, body: Any) -> Response:
        name = request.query_params.get("name")
        active = request.query_params.get("active")
        found = [
            copy.deepcopy(w)
            for w in self.workflows.values()
            if (name is None or w["name"] == name)
            and (active is None or w["active"] == (active == "true"))
        ]
        return JSONResponse({"data": found, "nextCursor": None})

    async def _create(self, request: Request, body: Any) -> Response:
        problem = workflow_errors(body)
        if problem:
            return _message(400, problem)
        workflow = {
            "id": self._new_id(),
            "active": False,
            "createdAt": _now(),
            "updatedAt": _now(),
            "isArchived": False,
            "tags": [],
            "pinData": {},
            "meta": None,
            "name": body["name"],
            "nodes": copy.deepcopy(body["nodes"]),
            "connections": copy.deepcopy(body["connections"]),
            "settings": {**body["settings"], "callerPolicy": "workflowsFromSameOwner"},
            "staticData": body.get("staticData"),
        }
        self.workflows[workflow["id"]] = workflow
        return JSONResponse(copy.deepcopy(workflow))

    async def _get(self, request: Request, body: Any) -> Response:
        workflow = self.workflows.get(request.path_params["workflow_id"])
        if workflow is None:
            return _message(404, "Not Found")
        return JSONResponse(copy.deepcopy(workflow))

    async def _update(self, request: Request, body: Any) -> Response:
        workflow = self.workflows.get(request.path_params["workflow_id"])
        if workflow is None:
            return _message(404, "Not Found")
        problem = workflow_errors(body)
        if problem:
            return _message(400, problem)
        for node in body["nodes"]:
            for reference in (node.get("credentials") or {}).values():
                if str(reference.get("id")) not in self.credentials:
                    return _message(
                        400, f'Credential with ID "{reference.get("id")}" does not exist'
                    )
        workflow.update(
            name=body["name"],
            nodes=copy.deepcopy(body["nodes"]),
            connections=copy.deepcopy(body["connections"]),
            updatedAt=_now(),
            settings={**body["settings"], "callerPolicy": "workflowsFromSameOwner"},
        )
        return JSONResponse(copy.deepcopy(workflow))

    async def _delete(self, request: Request, body: Any) -> Response:
        workflow = self.workflows.pop(request.path_params["workflow_id"], None)
        if workflow is None:
            return _message(404, "Not Found")
        return JSONResponse(workflow)

    def _routes_of(self, workflow: dict[str, Any]) -> list[str]:
        routes = []
        for node in workflow["nodes"]:
            if str(node.get("type")) != "n8n-nodes-base.webhook":
                continue
            path = str((node.get("parameters") or {}).get("path", "")).strip("/")
            if node.get("webhookId"):
                routes.append(path)
            else:
                name = str(node.get("name", "")).lower().replace(" ", "%20")
                routes.append(f"{workflow['id']}/{name}/{path}")
        return routes

    async def _activate(self, request: Request, body: Any) -> Response:
        workflow = self.workflows.get(request.path_params["workflow_id"])
        if workflow is None:
            return _message(404, "Not Found")
        for node in workflow["nodes"]:
            if not str(node.get("type", "")).startswith(KNOWN_NODE_PREFIXES):
                return _message(400, f"Unrecognized node type: {node.get('type')}")
        if not any(_is_trigger(n) for n in workflow["nodes"]):
            return _message(
                400,
                "Workflow cannot be activated because it has no trigger node. At least one "
                "trigger, webhook, or polling node is required.",
            )
        taken = {
            route
            for other in self.workflows.values()
            if other["active"] and other["id"] != workflow["id"]
            for route in self._routes_of(other)
        }
        if taken & set(self._routes_of(workflow)):
            return _message(400, "There is a conflict with one of the webhooks.")
        workflow["active"] = True
        return JSONResponse(copy.deepcopy(workflow))

    async def _deactivate(self, request: Request, body: Any) -> Response:
        workflow = self.workflows.get(request.path_params["workflow_id"])
        if workflow is None:
            return _message(404, "Not Found")
        workflow["active"] = False
        return JSONResponse(copy.deepcopy(workflow))

    async def _schema(self, request: Request, body: Any) -> Response:
        schema = CREDENTIAL_SCHEMAS.get(request.path_params["kind"])
        if schema is None:
            return _message(404, "Not Found")
        return JSONResponse(copy.deepcopy(schema))

    async def _create_credential(self, request: Request, body: Any) -> Response:
        if not isinstance(body, dict):
            return _message(400, "request.body must be object")
        for name in ("name", "type", "data"):
            if name not in body:
                return _message(400, f'request.body requires property "{name}"')
        problem = credential_errors(str(body["type"]), body["data"])
        if problem:
            return _message(400, problem)
        credential = {
            "id": self._new_id(),
            "name": body["name"],
            "type": body["type"],
            "createdAt": _now(),
            "updatedAt": _now(),
        }
        self.credentials[credential["id"]] = {**credential, "data": copy.deepcopy(body["data"])}
        return JSONResponse(credential)

    async def _delete_credential(self, request: Request, body: Any) -> Response:
        credential = self.credentials.pop(request.path_params["credential_id"], None)
        if credential is None:
            return _message(404, "Not Found")
        return JSONResponse({k: v for k, v in credential.items() if k != "data"})

    async def _settings(self, request: Request, body: Any) -> Response:
        return JSONResponse({"data": {"versionCli": "2.8.4", "stand_in": True}})

    async def _webhook(self, request: Request, body: Any) -> Response:
        path = request.path_params["path"].strip("/")
        for workflow in self.workflows.values():
            if workflow["active"] and path in self._routes_of(workflow):
                self.webhook_calls.append((path, body))
                return JSONResponse({"message": "Workflow was started"})
        return JSONResponse(
            {"code": 404, "message": f'The requested webhook "POST {path}" is not registered.'},
            status_code=404,
        )
