"""Verifying Supabase JWTs: HS256 with the project's JWT secret, or ES256/RS256 with the
project's signing keys from its JWKS endpoint (cached).

The algorithm list is fixed per key, never taken from the token (RFC 8725 §2.1): `none`,
HS256 without a secret, or an asymmetric token without a JWKS are all refused. A token
cannot point us at another key set (`jku`/`x5u` are ignored).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from typing import Any

import httpx
import jwt

from aerelion.errors import ApiError

ASYMMETRIC = ("ES256", "RS256")
LEEWAY_SECONDS = 30  # clock skew tolerated on exp/nbf/iat


def invalid_jwt(message: str = "Invalid JWT") -> ApiError:
    return ApiError(
        401, "invalid_jwt", message, headers={"www-authenticate": 'Bearer error="invalid_token"'}
    )


class JwksCache:
    """The project's signing keys, refreshed every `ttl` seconds or when a token names an
    unknown key id (at most once per `refresh_interval`, so forged ids cannot make us
    hammer the endpoint)."""

    def __init__(
        self,
        url: str,
        *,
        ttl: float = 600.0,
        refresh_interval: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.ttl = ttl
        self.refresh_interval = refresh_interval
        self._transport = transport
        self._keys: list[jwt.PyJWK] = []
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def key_for(self, kid: str | None, alg: str) -> Any:
        key = self._match(kid, alg)
        age = time.monotonic() - self._fetched_at
        if (key is None and age >= self.refresh_interval) or age >= self.ttl:
            await self._refresh()
            key = self._match(kid, alg)
        if key is None:
            raise invalid_jwt()
        return key.key

    def _match(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        candidates = [k for k in self._keys if k.algorithm_name == alg]
        if kid is not None:
            candidates = [k for k in candidates if k.key_id == kid]
        return candidates[0] if len(candidates) == 1 else None

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._fetched_at < self.refresh_interval:
                return  # another request refreshed while we waited
            try:
                async with httpx.AsyncClient(transport=self._transport, timeout=5.0) as client:
                    response = await client.get(self.url)
                    response.raise_for_status()
                    document = response.json()
            except (httpx.HTTPError, json.JSONDecodeError) as error:
                if self._keys:
                    return  # keep serving the keys we have
                raise ApiError(
                    503, "jwks_unavailable", "User tokens cannot be verified right now"
                ) from error
            keys = []
            for entry in document.get("keys", []) if isinstance(document, dict) else []:
                try:
                    key = jwt.PyJWK(entry)
                except jwt.PyJWTError:
                    continue  # a key type we do not use
                if key.algorithm_name in ASYMMETRIC:
                    keys.append(key)
            self._keys = keys
            self._fetched_at = time.monotonic()


class JwtVerifier:
    """Verifies tokens, remembering recently verified ones until they expire (as PostgREST's
    JWT cache does): clients send the same access token for up to an hour, and a cache hit
    needs the exact same token text, which only the signer can produce."""

    def __init__(
        self,
        *,
        secret: str | None,
        jwks: JwksCache | None,
        issuer: str | None = None,
        cache_size: int = 4096,
    ) -> None:
        self._secret = secret.encode() if secret else None
        self._jwks = jwks
        self._issuer = issuer
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; 401 `invalid_jwt` for anything that is not a valid token."""
        cached = self._cache.get(token)
        if cached is not None:
            if cached["exp"] + LEEWAY_SECONDS > time.time():
                self._cache.move_to_end(token)
                return dict(cached)
            del self._cache[token]
        claims = await self._verify(token)
        if isinstance(claims.get("exp"), int | float):
            self._cache[token] = claims
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return dict(claims)

    async def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise invalid_jwt() from None
        alg = header.get("alg")
        if alg == "HS256" and self._secret is not None:
            key: Any = self._secret
        elif alg in ASYMMETRIC and self._jwks is not None:
            key = await self._jwks.key_for(header.get("kid"), alg)
        else:
            raise invalid_jwt()
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                leeway=LEEWAY_SECONDS,
                issuer=self._issuer,
                options={"require": ["exp"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise invalid_jwt("JWT expired") from None
        except jwt.PyJWTError:
            raise invalid_jwt() from None
        if not isinstance(claims, dict):
            raise invalid_jwt()
        return claims
