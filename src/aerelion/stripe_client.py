"""Stripe, through the official `stripe` library: customers, Checkout Sessions, Billing
Portal sessions, and reading a session back (with its subscription).

* One pinned API version, `API_VERSION`: the version `stripe==16.1.0` is generated for, so
  the library's types and the objects Stripe sends agree. Code reads that version's shapes:
  a subscription's `current_period_end` is on its items, an invoice's subscription under
  `parent.subscription_details` (both moved in the 2025 "basil" versions).
* Async calls over httpx (`stripe.HTTPXClient`) with a timeout on every call.
* Bounded retries with jittered exponential backoff (the library's `max_network_retries`:
  connection errors, 409 and 5xx; here 429 too, which the library retries only when
  Stripe adds `Stripe-Should-Retry: true`). Every POST carries an idempotency key, so a
  retry never creates anything twice.
* `STRIPE_SECRET_KEY` authenticates; `STRIPE_API_BASE` points the library at another base
  (the local stand-in). The key never appears in an error.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self

import httpx
import stripe

from aerelion.config import Settings
from aerelion.errors import ApiError

__all__ = ["API_VERSION", "StripeApi", "not_configured"]

logger = logging.getLogger(__name__)

API_VERSION = "2026-10-28.endive"
TIMEOUT = httpx.Timeout(20.0, connect=5.0)
MAX_NETWORK_RETRIES = 2


class _HttpClient(stripe.HTTPXClient):
    """The library's httpx client, retrying a 429 within the same retry budget, and sending
    the encoded form as the request's content (httpx's way for a ready body)."""

    def _get_request_args_kwargs(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any
    ) -> list[Any]:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        if isinstance(kwargs.get("data"), str | bytes):
            kwargs["content"] = kwargs.pop("data")
        elif not kwargs.get("data"):
            kwargs.pop("data", None)
        return [args, kwargs]

    def _should_retry(
        self,
        response: tuple[Any, int, Mapping[str, str] | None] | None,
        api_connection_error: stripe.APIConnectionError | None,
        num_retries: int,
        max_network_retries: int | None,
    ) -> bool:
        if response is not None and response[1] == 429:
            headers = response[2] or {}
            refused = headers.get("stripe-should-retry") == "false"
            return not refused and num_retries < (max_network_retries or 0)
        return super()._should_retry(
            response, api_connection_error, num_retries, max_network_retries
        )


def not_configured() -> ApiError:
    return ApiError(503, "not_configured", "Payments are not configured")


@contextmanager
def _answers(*, reading: bool = False) -> Iterator[None]:
    """Stripe's failures as API errors: the object read does not exist is a 404, anything
    else that went wrong at or on the way to Stripe a 502 (with Stripe's code, not its
    message)."""
    try:
        yield
    except stripe.InvalidRequestError as error:
        if reading and error.http_status == 404:
            raise ApiError(404, "not_found", "No such object at the payment provider") from None
        logger.warning("Stripe refused a request: %s", error.code or error.http_status)
        raise _provider_error(error) from None
    except stripe.StripeError as error:
        logger.warning("Stripe call failed: %s", type(error).__name__)
        raise _provider_error(error) from None


def _provider_error(error: stripe.StripeError) -> ApiError:
    return ApiError(
        502,
        "payment_provider_error",
        "The payment provider could not complete the request",
        details={"provider_code": error.code, "provider_status": error.http_status},
    )


class StripeApi:
    """The calls AERELION makes. Use as `async with StripeApi.from_settings(s) as api:`."""

    def __init__(self, api_key: str, api_base: str | None = None) -> None:
        self._http = _HttpClient(timeout=TIMEOUT)
        self._client = stripe.StripeClient(
            api_key,
            stripe_version=API_VERSION,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=MAX_NETWORK_RETRIES,
            http_client=self._http,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeApi:
        key = settings.get("STRIPE_SECRET_KEY")
        if key is None:
            raise not_configured()
        return cls(key, settings.get("STRIPE_API_BASE"))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.close_async()

    async def customer_for(self, user_id: uuid.UUID, email: str | None) -> str:
        """The customer carrying our user id in its metadata: found by that id, else created
        (with an idempotency key per user, so two racing checkouts create one)."""
        with _answers():
            found = await self._client.v1.customers.search_async(
                params={"query": f"metadata['user_id']:'{user_id}'", "limit": 1}
            )
            if found.data:
                return found.data[0].id
            params: dict[str, Any] = {
                "metadata": {"user_id": str(user_id), "supabase_uid": str(user_id)}
            }
            if email:
                params["email"] = email
            created = await self._client.v1.customers.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": f"aerelion-customer-{user_id}"},
            )
            return created.id

    async def create_checkout_session(self, params: Mapping[str, Any]) -> dict[str, Any]:
        with _answers():
            session = await self._client.v1.checkout.sessions.create_async(
                params=dict(params)  # type: ignore[arg-type]
            )
            return session.to_dict(for_json=True)

    async def checkout_session(
        self, session_id: str, *, expand_subscription: bool = False
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"expand": ["subscription"]} if expand_subscription else {}
        with _answers(reading=True):
            session = await self._client.v1.checkout.sessions.retrieve_async(
                session_id,
                params=params,  # type: ignore[arg-type]
            )
            return session.to_dict(for_json=True)

    async def create_portal_session(self, customer_id: str, return_url: str) -> dict[str, Any]:
        with _answers():
            session = await self._client.v1.billing_portal.sessions.create_async(
                params={"customer": customer_id, "return_url": return_url}
            )
            return session.to_dict(for_json=True)
