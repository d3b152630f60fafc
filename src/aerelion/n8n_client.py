"""An async client for the n8n public REST API v1 (`<node>/api/v1`, header X-N8N-API-KEY).

No official Python client exists; this one covers what the activation lifecycle needs,
with the behaviour of n8n 2.x observed on real nodes:

* every call has a timeout; GETs (and the idempotent `activate`, `deactivate` and DELETE
  calls) are retried on 429, 5xx and connection failures with jittered backoff, honouring
  `Retry-After`; creating a workflow or a credential is retried only when n8n did not act
  on it (no connection, or 429) — a failure after sending says `outcome_unknown`,
  and the caller cleans up what it recorded;
* errors carry n8n's `{"message": ...}`, the status, and whether trying again may help;
  the API key never appears in a message;
* readiness is `GET /rest/settings` answering JSON with `data` (while n8n starts, every
  path answers 200 "n8n is starting up" and `/healthz` is already 200).
"""

from __future__ import annotations

import email.utils
import logging
import math
import secrets
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import anyio
import httpx

__all__ = ["N8nClient", "N8nError", "origin_of"]

logger = logging.getLogger(__name__)

API = "/api/v1"
CONNECT_TIMEOUT = 5.0
KEEPALIVE_EXPIRY = 2.0
MAX_WAIT = 10.0
_RANDOM = secrets.SystemRandom()


class N8nError(Exception):
    """A failed n8n call: `status` (None when no reply arrived), n8n's `message`,
    `retryable` (the same call may succeed later) and `outcome_unknown` (a create may
    have happened although it failed)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        outcome_unknown: bool = False,
        retry_after: float | None = None,
        operation: str = "",
    ) -> None:
        self.status = status
        self.message = message
        self.retryable = retryable
        self.outcome_unknown = outcome_unknown
        self.retry_after = retry_after
        self.operation = operation
        where = f"{operation}: " if operation else ""
        code = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"n8n {where}{code}{message}")


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a node URL (paths and trailing slashes dropped)."""
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = (when.replace(tzinfo=when.tzinfo or UTC) - datetime.now(UTC)).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None


class N8nClient:
    """One n8n node; use as `async with N8nClient(url, api_key) as n8n`."""

    backoff_base: float = 0.3

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 20.0,
        retries: int = 2,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("an n8n API key is required")
        self.base_url = origin_of(base_url)
        self._key = api_key
        self._timeout = float(timeout)
        self._retries = max(0, int(retries))
        self._transport = transport
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            transport=transport,
            timeout=httpx.Timeout(self._timeout, connect=min(CONNECT_TIMEOUT, self._timeout)),
            headers={"X-N8N-API-KEY": api_key, "Accept": "application/json"},
            follow_redirects=False,
            # n8n (Node's http server) closes a connection idle for 5 s; reusing one at
            # that moment loses the request (ReadError), and a create cannot be retried
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY),
        )

    def __repr__(self) -> str:
        return f"N8nClient({self.base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.aclose()

    # -- workflows -------------------------------------------------------------------

    async def create_workflow(self, workflow: dict[str, Any]) -> dict[str, Any]:
        """POST /workflows with `{name, nodes, connections, settings}` (n8n answers 200)."""
        return await self._json("POST", f"{API}/workflows", "create workflow", body=workflow)

    async def get_workflow(self, workflow_id: str) -> dict[str, Any]:
        return await self._json("GET", f"{API}/workflows/{workflow_id}", "get workflow")

    async def find_workflows(self, name: str) -> list[dict[str, Any]]:
        """Workflows with exactly this name (first page of n8n's name filter)."""
        path = f"{API}/workflows"
        data = await self._json("GET", path, "list workflows", params={"name": name, "limit": 250})
        found = data.get("data") if isinstance(data, dict) else None
        return [w for w in found or [] if isinstance(w, dict) and w.get("name") == name]

    async def update_workflow(self, workflow_id: str, workflow: dict[str, Any]) -> dict[str, Any]:
        """PUT: a full replacement (the public API has no PATCH for workflows)."""
        path = f"{API}/workflows/{workflow_id}"
        return await self._json("PUT", path, "update workflow", body=workflow, retry=True)

    async def activate_workflow(self, workflow_id: str) -> dict[str, Any]:
        """`/activate`; `/publish` (n8n 2.x's name) only where `/activate` is unknown."""
        try:
            return await self._json(
                "POST", f"{API}/workflows/{workflow_id}/activate", "activate", retry=True
            )
        except N8nError as error:
            if error.status != 404:
                raise
        return await self._json(
            "POST", f"{API}/workflows/{workflow_id}/publish", "publish", retry=True
        )

    async def deactivate_workflow(self, workflow_id: str) -> dict[str, Any]:
        try:
            return await self._json(
                "POST", f"{API}/workflows/{workflow_id}/deactivate", "deactivate", retry=True
            )
        except N8nError as error:
            if error.status != 404:
                raise
        return await self._json(
            "POST", f"{API}/workflows/{workflow_id}/unpublish", "unpublish", retry=True
        )

    async def delete_workflow(self, workflow_id: str) -> bool:
        """True when deleted now, False when it was already gone."""
        return await self._delete(f"{API}/workflows/{workflow_id}", "delete workflow")

    # -- credentials -----------------------------------------------------------------

    async def credential_schema(self, credential_type: str) -> dict[str, Any]:
        path = f"{API}/credentials/schema/{credential_type}"
        return await self._json("GET", path, "credential schema")

    async def create_credential(self, name: str, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        body = {"name": name, "type": kind, "data": data}
        return await self._json("POST", f"{API}/credentials", "create credential", body=body)

    async def delete_credential(self, credential_id: str) -> bool:
        return await self._delete(f"{API}/credentials/{credential_id}", "delete credential")

    # -- the node itself -------------------------------------------------------------

    async def ready(self) -> bool:
        """Whether the node has finished starting: `/rest/settings` answers JSON `data`."""
        try:
            response = await self._http.get("/rest/settings", timeout=min(self._timeout, 5.0))
            body = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return False
        return isinstance(body, dict) and "data" in body

    async def post_webhook(self, url: str, payload: dict[str, Any]) -> httpx.Response:
        """POST to one of the node's production webhooks (public: never with the API key)."""
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout, connect=CONNECT_TIMEOUT),
            transport=self._transport,
            follow_redirects=False,
        ) as plain:
            return await plain.post(url, json=payload)

    # -- plumbing --------------------------------------------------------------------

    async def _delete(self, path: str, op: str) -> bool:
        try:
            await self._json("DELETE", path, op, retry=True)
        except N8nError as error:
            if error.status == 404:
                return False
            raise
        return True

    async def _json(
        self,
        method: str,
        path: str,
        op: str,
        *,
        body: Any = None,
        retry: bool | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        retry = method == "GET" if retry is None else retry
        attempts = 1 + self._retries
        for attempt in range(attempts):
            try:
                return await self._send(method, path, op, body, params, idempotent=retry)
            except N8nError as error:
                # a create is retried only when n8n did not act on it: the connection
                # failed, or it answered 429
                unsent = error.status == 429 or (error.status is None and not error.outcome_unknown)
                if not error.retryable or not (retry or unsent) or attempt + 1 >= attempts:
                    raise
                if error.retry_after is not None and error.retry_after > MAX_WAIT:
                    raise
                delay = error.retry_after
                if delay is None:
                    delay = min(MAX_WAIT, self.backoff_base * 2**attempt) * _RANDOM.uniform(0.5, 1)
                logger.info(
                    "n8n %s %s failed (%s); retry in %.1fs", method, path, error.status, delay
                )
                await anyio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self, method: str, path: str, op: str, body: Any, params: Any, *, idempotent: bool
    ) -> Any:
        try:
            with anyio.fail_after(self._timeout):
                response = await self._http.request(method, path, json=body, params=params)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise N8nError(
                f"could not connect ({type(exc).__name__})", retryable=True, operation=op
            ) from None
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise N8nError(
                f"no reply within {self._timeout:g}s ({type(exc).__name__})",
                retryable=True,
                outcome_unknown=not idempotent,
                operation=op,
            ) from None
        except httpx.TransportError as exc:
            raise N8nError(
                f"connection lost ({type(exc).__name__})",
                retryable=True,
                outcome_unknown=not idempotent,
                operation=op,
            ) from None
        status = response.status_code
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.is_success:
            if data is None:  # "n8n is starting up" answers 200 in plain text
                raise N8nError(
                    "not a JSON answer (is the node still starting?)",
                    status=status,
                    retryable=True,
                    outcome_unknown=not idempotent,
                    operation=op,
                )
            return data
        message = data.get("message") if isinstance(data, dict) else None
        if not isinstance(message, str) or not message:
            message = response.reason_phrase or "request failed"
        message = message.replace(self._key, "[key]")[:500]
        raise N8nError(
            message,
            status=status,
            retryable=status == 429 or status >= 500,
            outcome_unknown=status >= 500 and not idempotent,
            retry_after=_retry_after(response.headers.get("retry-after")),
            operation=op,
        )
