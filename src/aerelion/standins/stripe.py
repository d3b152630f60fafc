"""A stand-in for the parts of the Stripe API that AERELION calls, for `make run` and the
tests (no Stripe emulator covers Checkout and the Billing Portal offline).

It serves, with Stripe's form-encoded requests, object shapes (API version
2026-10-28.endive, the subset we read) and error bodies (`{"error": {"type", "code",
"message", "param"}}` with a `Request-Id` header):

    POST /v1/customers                 GET /v1/customers/{id}   GET /v1/customers/search
    POST /v1/checkout/sessions         GET /v1/checkout/sessions/{id}   (expand[]=subscription)
    POST /v1/billing_portal/sessions   GET /v1/subscriptions/{id}       GET /v1/prices/{id}

Requests need `Authorization: Bearer <the key it was given>`. POSTs honour
`Idempotency-Key` as Stripe does: the same key and parameters replay the first answer,
the same key with other parameters is an `idempotency_error`. Customer search understands
`metadata['key']:'value'` and `email:'value'`. Prices of the three tiers are there from
the start (`aerelion.stripe_config`).

What a browser would do at Stripe is a method for tests: `complete_checkout(id)` pays a
session (payment mode: a PaymentIntent; subscription mode: an active subscription).
Faults, each consumed once unless `times` says more: `fail_next(op_or_path, status)`
(429 answers Stripe's `rate_limit` error, 5xx an `api_error`). `requests` logs every
request as `(method, path, params, stripe_version)`. It listens on 127.0.0.1 only and never
logs the key.
"""

from __future__ import annotations

import copy
import hmac
import itertools
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aerelion.standins.server import LoopbackServer, ServedStandIn
from aerelion.stripe_config import STRIPE_TIERS

__all__ = ["DEFAULT_PRICES", "StripeError", "StripeStandIn", "decode_form"]

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEARCH = re.compile(r"^\s*(metadata\['([^']+)'\]|email)\s*:\s*'([^']*)'\s*$")
TIER_AMOUNTS = {"pulse": 9_900, "operator": 250_000, "ghost": 2_500_000}


def _price(tier_key: str, price_id: str, product_id: str, recurring: bool) -> dict[str, Any]:
    return {
        "id": price_id,
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": 1_735_689_600,
        "currency": "usd",
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": tier_key,
        "product": product_id,
        "recurring": (
            {"interval": "month", "interval_count": 1, "usage_type": "licensed"}
            if recurring
            else None
        ),
        "tax_behavior": "unspecified",
        "type": "recurring" if recurring else "one_time",
        "unit_amount": TIER_AMOUNTS[tier_key],
        "unit_amount_decimal": str(TIER_AMOUNTS[tier_key]),
    }


DEFAULT_PRICES: list[dict[str, Any]] = [
    _price(tier.key, tier.price_id, tier.product_id, tier.mode == "subscription")
    for tier in STRIPE_TIERS
]


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding (`a[b][0][c]=v`) as nested dicts and lists."""
    root: dict[str, Any] = {}
    for raw_key, value in pairs:
        match = _KEY.match(raw_key)
        if match is None:
            raise StripeError(400, f"Invalid parameter name: {raw_key}", param=raw_key)
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node: dict[str, Any] = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if last:
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise StripeError(400, f"Invalid parameter: {raw_key}", param=raw_key)
                node = child
    return _lists(root)


def _lists(value: Any) -> Any:
    """Dicts keyed 0..n-1 (and `expand[]`) become lists."""
    if not isinstance(value, dict):
        return value
    converted = {key: _lists(item) for key, item in value.items()}
    keys = list(converted)
    if keys and all(key.isdigit() for key in keys):
        return [converted[key] for key in sorted(keys, key=int)]
    if keys == [""]:
        return [converted[""]]
    return converted


class StripeError(Exception):
    """An error answered in Stripe's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
        if self.param:
            error["param"] = self.param
        headers = {"request-id": "req_" + secrets.token_hex(7), **self.headers}
        return JSONResponse({"error": error}, status_code=self.status, headers=headers)


def _missing(name: str, what: str, param: str | None = None) -> StripeError:
    return StripeError(
        404 if param is None else 400,
        f"No such {what}: '{name}'",
        code="resource_missing",
        param=param or "id",
    )


def _required(param: str) -> StripeError:
    return StripeError(
        400, f"Missing required param: {param}.", code="parameter_missing", param=param
    )


@dataclass
class _Fault:
    key: str
    status: int
    remaining: int


Handler = Callable[[Request, dict[str, Any]], Awaitable[Any]]


class StripeStandIn(ServedStandIn):
    """The Stripe API subset on 127.0.0.1. `with StripeStandIn(api_key="sk_test_…") as s:`
    starts it; `s.url` is the base to give the library (`STRIPE_API_BASE`)."""

    def __init__(self, api_key: str, *, prices: list[dict[str, Any]] | None = None) -> None:
        if not api_key:
            raise ValueError("the stand-in needs the secret key it will accept")
        self._key = api_key
        self._lock = threading.RLock()
        self._initial_prices = copy.deepcopy(prices if prices is not None else DEFAULT_PRICES)
        self._ids = itertools.count(1)
        self.requests: list[tuple[str, str, dict[str, Any], str | None]] = []
        self.customers: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.portal_sessions: dict[str, dict[str, Any]] = {}
        self.prices: dict[str, dict[str, Any]] = {}
        self._idempotent: dict[str, tuple[str, dict[str, Any], int, Any]] = {}
        self._faults: list[_Fault] = []
        self._reset_state()
        self.url: str | None = None
        self.app = self._build_app()
        self._server = LoopbackServer(self.app, "stripe-standin")

    def __repr__(self) -> str:
        return f"StripeStandIn(url={self.url!r}, sessions={len(self.sessions)})"

    # -- switches and helpers for tests ------------------------------------------------

    def fail_next(self, op_or_path: str, status: int, times: int = 1) -> None:
        """Answer the next `times` matching requests with `status` in Stripe's error shape.

        The key is an operation (`customers.create`, `customers.retrieve`,
        `customers.search`, `checkout.sessions.create`, `checkout.sessions.retrieve`,
        `billing_portal.sessions.create`, `subscriptions.retrieve`, `prices.retrieve`) or a
        path prefix (`/v1/checkout`)."""
        with self._lock:
            self._faults.append(_Fault(op_or_path, status, times))

    def reset(self) -> None:
        """Forget every object, logged request, idempotency key and pending fault."""
        with self._lock:
            self._reset_state()

    def _reset_state(self) -> None:
        self.requests.clear()
        self.customers.clear()
        self.sessions.clear()
        self.subscriptions.clear()
        self.portal_sessions.clear()
        self.prices = {price["id"]: copy.deepcopy(price) for price in self._initial_prices}
        self._idempotent.clear()
        self._faults.clear()

    def complete_checkout(self, session_id: str, *, paid: bool = True) -> dict[str, Any]:
        """What paying at Stripe does to a session: it completes (`paid=False`: a delayed
        payment method, still unpaid) with a PaymentIntent, or an active subscription."""
        with self._lock:
            session = self.sessions[session_id]
            now = int(time.time())
            session["status"] = "complete"
            session["payment_status"] = "paid" if paid else "unpaid"
            customer = self.customers.get(session.get("customer") or "")
            email = (customer or {}).get("email") or session.get("customer_email")
            session["customer_details"] = {"email": email, "name": None, "phone": None}
            if session["mode"] == "payment":
                session["payment_intent"] = self._id("pi")
            else:
                subscription = self._subscription(session, now)
                self.subscriptions[subscription["id"]] = subscription
                session["subscription"] = subscription["id"]
            return self._public(session)

    def _subscription(self, session: Mapping[str, Any], now: int) -> dict[str, Any]:
        subscription_id = self._id("sub")
        items = []
        for line in session["_line_items"]:
            price = self.prices[line["price"]]
            items.append(
                {
                    "id": self._id("si"),
                    "object": "subscription_item",
                    "created": now,
                    "current_period_start": now,
                    "current_period_end": now + 30 * 86_400,
                    "metadata": {},
                    "price": copy.deepcopy(price),
                    "quantity": line["quantity"],
                    "subscription": subscription_id,
                }
            )
        return {
            "id": subscription_id,
            "object": "subscription",
            "billing_cycle_anchor": now,
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "collection_method": "charge_automatically",
            "created": now,
            "currency": "usd",
            "customer": session["customer"],
            "ended_at": None,
            "items": {
                "object": "list",
                "data": items,
                "has_more": False,
                "total_count": len(items),
                "url": f"/v1/subscription_items?subscription={subscription_id}",
            },
            "latest_invoice": None,
            "livemode": False,
            "metadata": copy.deepcopy(session.get("_subscription_metadata") or {}),
            "start_date": now,
            "status": "active",
            "trial_end": None,
            "trial_start": None,
        }

    # -- the ASGI app ------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        routes = [
            self._route("customers.create", "POST", "/v1/customers", self._create_customer),
            self._route("customers.search", "GET", "/v1/customers/search", self._search),
            self._route("customers.retrieve", "GET", "/v1/customers/{id}", self._get_customer),
            self._route(
                "checkout.sessions.create", "POST", "/v1/checkout/sessions", self._create_session
            ),
            self._route(
                "checkout.sessions.retrieve",
                "GET",
                "/v1/checkout/sessions/{id}",
                self._get_session,
            ),
            self._route(
                "billing_portal.sessions.create",
                "POST",
                "/v1/billing_portal/sessions",
                self._create_portal_session,
            ),
            self._route(
                "subscriptions.retrieve", "GET", "/v1/subscriptions/{id}", self._get_subscription
            ),
            self._route("prices.retrieve", "GET", "/v1/prices/{id}", self._get_price),
        ]

        async def unknown(request: Request, exc: Exception) -> Response:
            status = exc.status_code if isinstance(exc, HTTPException) else 404
            return StripeError(
                status,
                f"Unrecognized request URL ({request.method}: {request.url.path}).",
            ).response()

        return Starlette(routes=routes, exception_handlers={404: unknown, 405: unknown})

    def _route(self, op: str, method: str, path: str, handler: Handler) -> Route:
        async def endpoint(request: Request) -> Response:
            return await self._dispatch(request, op, handler)

        return Route(path, endpoint, methods=[method], name=op)

    async def _dispatch(self, request: Request, op: str, handler: Handler) -> Response:
        try:
            if request.method == "POST":
                raw = (await request.body()).decode("utf-8", "replace")
                params = decode_form(parse_qsl(raw, keep_blank_values=True))
            else:
                params = decode_form(list(request.query_params.multi_items()))
        except StripeError as error:
            return error.response()
        path = request.url.path
        with self._lock:
            self.requests.append(
                (request.method, path, copy.deepcopy(params), request.headers.get("stripe-version"))
            )
        try:
            self._authorize(request)
            with self._lock:
                fault = self._take_fault(op, path)
            if fault is not None:
                raise self._fault_error(fault.status)
            key = request.headers.get("idempotency-key") if request.method == "POST" else None
            if key:
                replay = self._replay(key, op, params)
                if replay is not None:
                    return replay
            try:
                body = await handler(request, params)
                status = 200
            except StripeError as error:
                if key and error.status < 500:
                    self._remember(key, op, params, error.status, error)
                raise
            if key:
                self._remember(key, op, params, status, body)
            return JSONResponse(body, headers={"request-id": "req_" + secrets.token_hex(7)})
        except StripeError as error:
            return error.response()

    def _authorize(self, request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth.",
            )
        if not hmac.compare_digest(given.strip().encode(), self._key.encode()):
            raise StripeError(
                401, f"Invalid API Key provided: {given.strip()[:8]}****", code="api_key_invalid"
            )

    def _take_fault(self, op: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.key == op or (fault.key.startswith("/") and path.startswith(fault.key)):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    @staticmethod
    def _fault_error(status: int) -> StripeError:
        if status == 429:
            return StripeError(
                429,
                "Too many requests hit the API too quickly. We recommend an exponential "
                "backoff of your requests.",
                code="rate_limit",
            )
        if status >= 500:
            return StripeError(status, "An unknown error occurred", type="api_error")
        return StripeError(status, "The request was refused")

    def _replay(self, key: str, op: str, params: dict[str, Any]) -> Response | None:
        with self._lock:
            seen = self._idempotent.get(key)
        if seen is None:
            return None
        first_op, first_params, status, body = seen
        if first_op != op or first_params != params:
            raise StripeError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request.",
                type="idempotency_error",
            )
        headers = {"idempotent-replayed": "true"}
        if isinstance(body, StripeError):
            body.headers.update(headers)
            return body.response()
        return JSONResponse(copy.deepcopy(body), status_code=status, headers=headers)

    def _remember(self, key: str, op: str, params: dict[str, Any], status: int, body: Any) -> None:
        with self._lock:
            kept = body if isinstance(body, StripeError) else copy.deepcopy(body)
            self._idempotent.setdefault(key, (op, copy.deepcopy(params), status, kept))

    def _id(self, prefix: str) -> str:
        return f"{prefix}_test_{next(self._ids):06d}{secrets.token_hex(6)}"

    # -- handlers ----------------------------------------------------------------------

    async def _create_customer(self, request: Request, params: dict[str, Any]) -> Any:
        metadata = self._metadata(params.get("metadata"))
        customer = {
            "id": self._id("cus"),
            "object": "customer",
            "balance": 0,
            "created": int(time.time()),
            "currency": None,
            "delinquent": False,
            "description": params.get("description"),
            "email": params.get("email"),
            "invoice_prefix": secrets.token_hex(4).upper(),
            "livemode": False,
            "metadata": metadata,
            "name": params.get("name"),
            "phone": params.get("phone"),
        }
        with self._lock:
            self.customers[customer["id"]] = customer
            return copy.deepcopy(customer)

    async def _get_customer(self, request: Request, params: dict[str, Any]) -> Any:
        customer_id = request.path_params["id"]
        with self._lock:
            customer = self.customers.get(customer_id)
            if customer is None:
                raise _missing(customer_id, "customer")
            if customer.get("deleted"):
                return {"id": customer_id, "object": "customer", "deleted": True}
            return copy.deepcopy(customer)

    async def _search(self, request: Request, params: dict[str, Any]) -> Any:
        query = params.get("query")
        if not isinstance(query, str) or not query:
            raise _required("query")
        match = _SEARCH.match(query)
        if match is None:
            raise StripeError(
                400, f"The search query is not supported here: {query}", param="query"
            )
        _, metadata_key, wanted = match.groups()
        with self._lock:
            found = [
                copy.deepcopy(customer)
                for customer in self.customers.values()
                if not customer.get("deleted")
                and (
                    customer["metadata"].get(metadata_key) == wanted
                    if metadata_key
                    else customer.get("email") == wanted
                )
            ]
        limit = int(params.get("limit") or 10)
        return {
            "object": "search_result",
            "data": found[:limit],
            "has_more": len(found) > limit,
            "next_page": None,
            "url": "/v1/customers/search",
        }

    async def _create_session(self, request: Request, params: dict[str, Any]) -> Any:
        mode = params.get("mode")
        if mode is None:
            raise _required("mode")
        if mode not in ("payment", "subscription"):
            raise StripeError(
                400, f"Invalid mode: {mode}", code="parameter_invalid_string", param="mode"
            )
        if not params.get("success_url"):
            raise _required("success_url")
        customer = params.get("customer")
        with self._lock:
            if customer is not None and customer not in self.customers:
                raise _missing(customer, "customer", param="customer")
        if mode == "payment" and "subscription_data" in params:
            raise StripeError(
                400,
                "You can not pass `subscription_data` in `payment` mode.",
                param="subscription_data",
            )
        if mode == "subscription" and "payment_intent_data" in params:
            raise StripeError(
                400,
                "You can not pass `payment_intent_data` in `subscription` mode.",
                param="payment_intent_data",
            )
        lines, amount = self._line_items(params.get("line_items"), mode)
        reference = params.get("client_reference_id")
        if reference is not None and len(reference) > 200:
            raise StripeError(400, "client_reference_id is too long", param="client_reference_id")
        now = int(time.time())
        session_id = self._id("cs")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": amount,
            "amount_total": amount,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": reference,
            "created": now,
            "currency": "usd",
            "customer": customer,
            "customer_details": None,
            "customer_email": params.get("customer_email"),
            "expires_at": now + 86_400,
            "invoice": None,
            "livemode": False,
            "metadata": self._metadata(params.get("metadata")),
            "mode": mode,
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "subscription": None,
            "success_url": params["success_url"],
            "ui_mode": "hosted",
            "url": f"{self.url or ''}/c/pay/{session_id}",
            # kept for complete_checkout, never shown
            "_line_items": lines,
            "_subscription_metadata": self._metadata(
                (params.get("subscription_data") or {}).get("metadata")
            ),
        }
        with self._lock:
            self.sessions[session_id] = session
        return self._public(session)

    def _line_items(self, items: Any, mode: str) -> tuple[list[dict[str, Any]], int]:
        if not items:
            raise _required("line_items")
        if not isinstance(items, list):
            raise StripeError(400, "Invalid array", param="line_items")
        lines, amount, recurring = [], 0, False
        for index, item in enumerate(items):
            where = f"line_items[{index}]"
            if not isinstance(item, dict):
                raise StripeError(400, "Invalid object", param=where)
            quantity = self._integer(item.get("quantity", "1"), f"{where}[quantity]")
            if quantity < 1:
                raise StripeError(400, "Quantity must be at least 1", param=f"{where}[quantity]")
            if "price" in item:
                with self._lock:
                    price = self.prices.get(item["price"])
                if price is None or not price["active"]:
                    raise _missing(str(item["price"]), "price", param=f"{where}[price]")
                recurring = recurring or price["type"] == "recurring"
                if mode == "payment" and price["type"] == "recurring":
                    raise StripeError(
                        400,
                        "You specified `payment` mode but passed a recurring price. Either "
                        "switch to `subscription` mode or use only one-time prices.",
                        param=f"{where}[price]",
                    )
                lines.append({"price": price["id"], "quantity": quantity})
                amount += price["unit_amount"] * quantity
            elif "price_data" in item:
                data = item["price_data"]
                if not isinstance(data, dict) or not data.get("currency"):
                    raise _required(f"{where}[price_data][currency]")
                unit = self._integer(data.get("unit_amount"), f"{where}[price_data][unit_amount]")
                product = data.get("product_data")
                if not isinstance(product, dict) or not product.get("name"):
                    raise _required(f"{where}[price_data][product_data][name]")
                if "recurring" in data:
                    recurring = True
                lines.append({"price_data": data, "quantity": quantity})
                amount += unit * quantity
            else:
                raise StripeError(
                    400, "You must specify either `price` or `price_data`.", param=where
                )
        if mode == "subscription" and not recurring:
            raise StripeError(
                400,
                "You must provide at least one recurring price in `subscription` mode when "
                "using prices.",
                param="line_items",
            )
        if mode == "payment" and amount < 50:
            raise StripeError(
                400,
                "The Checkout Session's total amount due must add up to at least $0.50 usd",
                code="amount_too_small",
            )
        return lines, amount

    async def _get_session(self, request: Request, params: dict[str, Any]) -> Any:
        session_id = request.path_params["id"]
        expand = params.get("expand") or []
        with self._lock:
            session = self.sessions.get(session_id)
            if session is None:
                raise _missing(session_id, "checkout.session")
            public = self._public(session)
            if "subscription" in expand and session.get("subscription"):
                public["subscription"] = copy.deepcopy(self.subscriptions[session["subscription"]])
            return public

    async def _create_portal_session(self, request: Request, params: dict[str, Any]) -> Any:
        customer = params.get("customer")
        if not customer:
            raise _required("customer")
        with self._lock:
            if customer not in self.customers:
                raise _missing(customer, "customer", param="customer")
            portal_id = self._id("bps")
            portal = {
                "id": portal_id,
                "object": "billing_portal.session",
                "configuration": "bpc_test_default",
                "created": int(time.time()),
                "customer": customer,
                "livemode": False,
                "locale": None,
                "on_behalf_of": None,
                "return_url": params.get("return_url"),
                "url": f"{self.url or ''}/p/session/{portal_id}",
            }
            self.portal_sessions[portal_id] = portal
            return copy.deepcopy(portal)

    async def _get_subscription(self, request: Request, params: dict[str, Any]) -> Any:
        subscription_id = request.path_params["id"]
        with self._lock:
            subscription = self.subscriptions.get(subscription_id)
            if subscription is None:
                raise _missing(subscription_id, "subscription")
            return copy.deepcopy(subscription)

    async def _get_price(self, request: Request, params: dict[str, Any]) -> Any:
        price_id = request.path_params["id"]
        with self._lock:
            price = self.prices.get(price_id)
            if price is None:
                raise _missing(price_id, "price")
            return copy.deepcopy(price)

    # -- helpers -----------------------------------------------------------------------

    @staticmethod
    def _public(session: Mapping[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in session.items() if not k.startswith("_")}

    @staticmethod
    def _metadata(value: Any) -> dict[str, str]:
        if value is None or value == "":
            return {}
        if not isinstance(value, dict):
            raise StripeError(400, "Invalid object", param="metadata")
        for key, item in value.items():
            if len(key) > 40 or not isinstance(item, str) or len(item) > 500:
                raise StripeError(
                    400, "Metadata keys are at most 40 and values 500 characters", param="metadata"
                )
        return dict(value)

    @staticmethod
    def _integer(value: Any, param: str) -> int:
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            return int(value)
        raise StripeError(400, "Invalid integer", code="parameter_invalid_integer", param=param)
