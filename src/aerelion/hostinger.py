"""An async client for the Hostinger VPS public API (https://developers.hostinger.com).

Hand-written on httpx rather than built on the official `hostinger_api` SDK: that SDK is
synchronous, urllib3-based generated code, while the provisioning worker runs on an event
loop and needs to tell "refused" from "may have happened" on every call, which the
generated exceptions do not say.

Only what provisioning and the client's VPS operations need is covered (paths and shapes
from the official OpenAPI description, version 1.42.5):

* GET requests are retried (up to `get_retries` times) on retryable errors, with jittered
  exponential backoff, waiting at least as long as a `Retry-After` header asks.
* POST, PUT and DELETE requests (purchase, setup, restart, keys, password) are never
  retried here. When one fails in a way
  that leaves its effect unknown (a timeout after sending, a connection dropped mid-reply,
  a 5xx), the error says so with `outcome_unknown`, and the caller must look
  (`find_by_hostname`) before trying again: a second purchase is a second bill.
* The API token is only ever sent in the `Authorization` header; it never appears in an
  exception message.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import math
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import anyio
import httpx

__all__ = ["HostingerClient", "HostingerError", "VirtualMachine"]

logger = logging.getLogger(__name__)

VPS = "/api/vps/v1"
BILLING = "/api/billing/v1"
CONNECT_TIMEOUT = 5.0
MAX_WAIT = 10.0
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
_RANDOM = secrets.SystemRandom()


class HostingerError(Exception):
    """A failed Hostinger API call.

    * `status` is the HTTP status, or None when no reply arrived.
    * `message` is the API's `message` (falling back to `error`), or a description of the
      transport failure.
    * `retryable`: the same call may succeed later (429, 5xx, network failures).
    * `outcome_unknown`: a non-idempotent request may have been carried out although it
      failed (timeout after sending, connection dropped mid-reply, 5xx on a POST). Check
      the state before retrying.
    * `retry_after`: seconds from a `Retry-After` header, if one was sent.
    * `errors`: the per-field messages of a 422 reply; `correlation_id` as sent by the API.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        outcome_unknown: bool = False,
        retry_after: float | None = None,
        errors: dict[str, list[str]] | None = None,
        correlation_id: str | None = None,
        operation: str = "",
    ) -> None:
        self.status = status
        self.message = message
        self.retryable = retryable
        self.outcome_unknown = outcome_unknown
        self.retry_after = retry_after
        self.errors = errors or {}
        self.correlation_id = correlation_id
        self.operation = operation
        where = f"{operation}: " if operation else ""
        code = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"Hostinger API {where}{code}{message}")


@dataclass(frozen=True)
class VirtualMachine:
    """The fields of a `VPS.V1.VirtualMachine.VirtualMachineResource` provisioning uses."""

    id: int
    hostname: str | None
    state: str
    plan: str | None
    data_center_id: int | None
    ipv4: list[str]
    actions_lock: str | None
    cpus: int | None = None
    memory_mb: int | None = None
    disk_mb: int | None = None

    @classmethod
    def from_api(cls, data: dict) -> VirtualMachine:
        """Build from the API's JSON object (`ipv4` is a nullable list of `{id, address}`)."""
        if not isinstance(data, dict):
            raise ValueError("a virtual machine must be a JSON object")
        addresses = []
        for entry in data.get("ipv4") or []:
            address = entry.get("address") if isinstance(entry, dict) else entry
            if isinstance(address, str) and address:
                addresses.append(address)
        data_center = data.get("data_center_id")
        return cls(
            id=int(data["id"]),
            hostname=data.get("hostname"),
            state=str(data["state"]),
            plan=data.get("plan"),
            data_center_id=int(data_center) if data_center is not None else None,
            ipv4=addresses,
            actions_lock=data.get("actions_lock"),
            cpus=_positive_int(data.get("cpus")),
            memory_mb=_positive_int(data.get("memory")),
            disk_mb=_positive_int(data.get("disk")),
        )


def _positive_int(value: Any) -> int | None:
    """The API's sizes (`memory` and `disk` in MB); None when absent or nonsense."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return int(value)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, as the spec's examples (naive datetimes are UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class HostingerClient:
    """The Hostinger VPS API over httpx; use as `async with HostingerClient(...) as client`."""

    #: First backoff step in seconds (doubled per attempt, jittered, capped at MAX_WAIT).
    backoff_base: float = 0.5

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 20.0,
        transport: httpx.AsyncBaseTransport | None = None,
        get_retries: int = 2,
    ) -> None:
        if not token:
            raise ValueError("a Hostinger API token is required")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        url = httpx.URL(base_url)
        if url.scheme != "https" and transport is None and not _is_loopback(url.host):
            # The token would cross the network in clear text.
            raise ValueError("the Hostinger API must be reached over https")
        self._token = token
        self._timeout = float(timeout)
        self._get_retries = max(0, int(get_retries))
        self._http = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            timeout=httpx.Timeout(self._timeout, connect=min(CONNECT_TIMEOUT, self._timeout)),
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "Content-Type": "application/json",
                "User-Agent": "aerelion-hostinger-client",
            },
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"HostingerClient({str(self._http.base_url)!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # -- virtual machines ------------------------------------------------------------

    async def list_virtual_machines(self) -> list[VirtualMachine]:
        """Every virtual machine of the account (the API answers a bare array)."""
        op = "list virtual machines"
        data = await self._request("GET", f"{VPS}/virtual-machines", op=op)
        if not isinstance(data, list):
            raise self._bad_reply("GET", op, "expected a JSON array")
        return [self._vm(item, "GET", op) for item in data]

    async def get_virtual_machine(self, vm_id: int) -> VirtualMachine:
        """One virtual machine; an unknown id raises HostingerError with status 404."""
        op = "get virtual machine"
        data = await self._request("GET", f"{VPS}/virtual-machines/{int(vm_id)}", op=op)
        return self._vm(data, "GET", op)

    async def find_by_hostname(self, hostname: str) -> VirtualMachine | None:
        """The virtual machine with this hostname (lowest id if several), or None."""
        wanted = hostname.strip().rstrip(".").lower()
        found = [
            vm
            for vm in await self.list_virtual_machines()
            if vm.hostname is not None and vm.hostname.rstrip(".").lower() == wanted
        ]
        return min(found, key=lambda vm: vm.id) if found else None

    async def purchase_virtual_machine(
        self, *, item_id: str, setup: dict, payment_method_id: int | None = None
    ) -> tuple[dict, VirtualMachine]:
        """Buy and set up a VM: returns `(order, virtual_machine)`. Never retried here.

        Without `payment_method_id` the account's default payment method is charged.
        """
        op = "purchase virtual machine"
        body: dict[str, Any] = {"item_id": item_id}
        if payment_method_id is not None:
            body["payment_method_id"] = payment_method_id
        body["setup"] = setup
        data = await self._request("POST", f"{VPS}/virtual-machines", json=body, op=op)
        if not isinstance(data, dict) or not isinstance(data.get("order"), dict):
            raise self._bad_reply("POST", op, "expected {order, virtual_machine}")
        return data["order"], self._vm(data.get("virtual_machine"), "POST", op)

    async def setup_virtual_machine(self, vm_id: int, setup: dict) -> VirtualMachine:
        """Set up a purchased VM still in state `initial`. Never retried here."""
        op = "set up virtual machine"
        path = f"{VPS}/virtual-machines/{int(vm_id)}/setup"
        data = await self._request("POST", path, json=setup, op=op)
        return self._vm(data, "POST", op)

    async def restart_virtual_machine(self, vm_id: int) -> dict:
        """Restart (stop then start) a VM; returns the ActionResource. Never retried here."""
        op = "restart virtual machine"
        path = f"{VPS}/virtual-machines/{int(vm_id)}/restart"
        data = await self._request("POST", path, op=op)
        if not isinstance(data, dict):
            raise self._bad_reply("POST", op, "expected an action object")
        return data

    async def get_metrics(self, vm_id: int, date_from: datetime, date_to: datetime) -> dict:
        """The MetricsCollection between two moments (`{cpu_usage: {unit, usage}, ...}`)."""
        op = "get metrics"
        params = {"date_from": _timestamp(date_from), "date_to": _timestamp(date_to)}
        path = f"{VPS}/virtual-machines/{int(vm_id)}/metrics"
        data = await self._request("GET", path, params=params, op=op)
        if not isinstance(data, dict):
            raise self._bad_reply("GET", op, "expected a JSON object")
        return data

    async def get_action(self, vm_id: int, action_id: int) -> dict:
        """One action (e.g. the one a restart returned), to follow its `state`."""
        op = "get action"
        path = f"{VPS}/virtual-machines/{int(vm_id)}/actions/{int(action_id)}"
        data = await self._request("GET", path, op=op)
        if not isinstance(data, dict):
            raise self._bad_reply("GET", op, "expected an action object")
        return data

    async def set_root_password(self, vm_id: int, password: str) -> dict:
        """Set the VM's root password (12+ characters); returns the ActionResource."""
        op = "set root password"
        path = f"{VPS}/virtual-machines/{int(vm_id)}/root-password"
        data = await self._request("PUT", path, json={"password": password}, op=op)
        if not isinstance(data, dict):
            raise self._bad_reply("PUT", op, "expected an action object")
        return data

    async def create_public_key(self, name: str, key: str) -> int:
        """Register an SSH public key with the account; returns its id."""
        op = "create public key"
        data = await self._request(
            "POST", f"{VPS}/public-keys", json={"name": name, "key": key}, op=op
        )
        if not isinstance(data, dict) or not isinstance(data.get("id"), int):
            raise self._bad_reply("POST", op, "expected a public key with an id")
        return data["id"]

    async def attach_public_keys(self, vm_id: int, key_ids: list[int]) -> dict:
        """Attach registered keys to a VM; returns the ActionResource."""
        op = "attach public keys"
        path = f"{VPS}/public-keys/attach/{int(vm_id)}"
        data = await self._request("POST", path, json={"ids": list(key_ids)}, op=op)
        if not isinstance(data, dict):
            raise self._bad_reply("POST", op, "expected an action object")
        return data

    async def delete_public_key(self, key_id: int) -> None:
        """Remove a key from the account (the API leaves it on VMs it was attached to)."""
        await self._request("DELETE", f"{VPS}/public-keys/{int(key_id)}", op="delete public key")

    # -- reference data ----------------------------------------------------------------

    async def list_data_centers(self) -> list[dict]:
        """Data centers `{id, name, location, city, continent}`."""
        return await self._list(f"{VPS}/data-centers", "list data centers")

    async def list_templates(self) -> list[dict]:
        """OS templates `{id, name, description, documentation}`."""
        return await self._list(f"{VPS}/templates", "list templates")

    async def list_catalog(self, category: str | None = "VPS") -> list[dict]:
        """Catalog items with their prices; a price `id` is a purchase `item_id`."""
        params = {"category": category} if category else None
        return await self._list(f"{BILLING}/catalog", "list catalog", params=params)

    async def list_payment_methods(self) -> list[dict]:
        """The account's payment methods."""
        return await self._list(f"{BILLING}/payment-methods", "list payment methods")

    # -- plumbing ------------------------------------------------------------------------

    async def _list(self, path: str, op: str, params: dict | None = None) -> list[dict]:
        data = await self._request("GET", path, params=params, op=op)
        if not isinstance(data, list):
            raise self._bad_reply("GET", op, "expected a JSON array")
        return data

    def _vm(self, data: Any, method: str, op: str) -> VirtualMachine:
        try:
            return VirtualMachine.from_api(data)
        except (KeyError, TypeError, ValueError):
            raise self._bad_reply(method, op, "unexpected virtual machine shape") from None

    def _bad_reply(self, method: str, op: str, problem: str) -> HostingerError:
        # A 2xx whose body we cannot read: a POST probably took effect.
        return HostingerError(
            f"unreadable reply ({problem})",
            status=200,
            retryable=method in _IDEMPOTENT,
            outcome_unknown=method not in _IDEMPOTENT,
            operation=op,
        )

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "[token]") if self._token in text else text

    async def _request(
        self,
        method: str,
        path: str,
        *,
        op: str,
        json: Any = None,
        params: dict | None = None,
    ) -> Any:
        attempts = 1 + (self._get_retries if method in _IDEMPOTENT else 0)
        for attempt in range(attempts):
            try:
                return await self._send(method, path, op=op, json=json, params=params)
            except HostingerError as error:
                if not error.retryable or attempt + 1 >= attempts:
                    raise
                if error.retry_after is not None:
                    if error.retry_after > MAX_WAIT:
                        raise  # the caller reschedules; hammering risks an IP block
                    delay = error.retry_after
                else:
                    step = min(MAX_WAIT, self.backoff_base * 2**attempt)
                    delay = step * _RANDOM.uniform(0.5, 1.0)
                logger.info(
                    "Hostinger %s %s failed (%s); retry %d/%d in %.1fs",
                    method,
                    path,
                    error.status if error.status is not None else "no reply",
                    attempt + 1,
                    attempts - 1,
                    delay,
                )
                await anyio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self, method: str, path: str, *, op: str, json: Any, params: dict | None
    ) -> Any:
        idempotent = method in _IDEMPOTENT
        request = self._http.build_request(method, path, json=json, params=params)
        try:
            with anyio.fail_after(self._timeout):
                response = await self._http.send(request)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached the API.
            raise HostingerError(
                self._scrub(f"could not connect ({type(exc).__name__}: {exc})"),
                retryable=True,
                operation=op,
            ) from None
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise HostingerError(
                f"no reply within {self._timeout:g}s ({type(exc).__name__})",
                retryable=True,
                outcome_unknown=not idempotent,
                operation=op,
            ) from None
        except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.DecodingError) as exc:
            # Sent (at least partly); the reply was lost or cut short.
            raise HostingerError(
                self._scrub(f"connection lost before a complete reply ({type(exc).__name__})"),
                retryable=True,
                outcome_unknown=not idempotent,
                operation=op,
            ) from None
        except httpx.TransportError as exc:
            raise HostingerError(
                self._scrub(f"transport error ({type(exc).__name__}: {exc})"), operation=op
            ) from None

        if response.is_success:
            try:
                return response.json()
            except ValueError:
                raise self._bad_reply(method, op, "not JSON") from None
        raise self._error_from(response, op=op, idempotent=idempotent)

    def _error_from(self, response: httpx.Response, *, op: str, idempotent: bool) -> HostingerError:
        status = response.status_code
        message = ""
        errors: dict[str, list[str]] = {}
        correlation_id = None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            for key in ("message", "error"):
                if isinstance(body.get(key), str) and body[key]:
                    message = body[key]
                    break
            if isinstance(body.get("errors"), dict):
                errors = {
                    str(field): [str(item) for item in items]
                    if isinstance(items, list)
                    else [str(items)]
                    for field, items in body["errors"].items()
                }
            if isinstance(body.get("correlation_id"), str):
                correlation_id = body["correlation_id"]
        server_error = status >= 500
        return HostingerError(
            self._scrub(message or response.reason_phrase or "request failed"),
            status=status,
            retryable=status == 429 or server_error,
            outcome_unknown=server_error and not idempotent,
            retry_after=_parse_retry_after(response.headers.get("retry-after")),
            errors={
                field: [self._scrub(item) for item in items] for field, items in errors.items()
            },
            correlation_id=correlation_id,
            operation=op,
        )
