"""Short-lived signed tokens (JWT, HS256) for one purpose and one audience each.

PyJWT does the format and the standard checks. On top of it every token names its purpose
twice, in the `pur` claim and in an explicit header `typ` (RFC 8725), so a token minted for
one use is never accepted for another. Keys carry an id (`kid`) so a new key can sign while
tokens signed with the old one still verify until they expire.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32  # the HS256 output size, per RFC 7518 section 3.2
DEFAULT_MAX_TTL = timedelta(hours=24)
DEFAULT_LEEWAY = timedelta(seconds=30)
# `nbf` too: PyJWT gives it time semantics that would bypass the lifetime rules here.
RESERVED_CLAIMS = frozenset({"sub", "aud", "pur", "iat", "exp", "jti", "nbf"})
_PURPOSE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class InvalidToken(Exception):
    """Any rejected token; the message is generic and never contains the token."""


@dataclass(frozen=True)
class Token:
    """An issued token; `value` is a bearer secret, so it is kept out of the repr."""

    value: str = field(repr=False)
    jti: str
    expires_at: datetime


def _typ(purpose: str) -> str:
    return f"{purpose}+jwt"


def _check_purpose(purpose: str) -> None:
    if not isinstance(purpose, str) or not _PURPOSE.fullmatch(purpose):
        raise ValueError("purpose must be letters, digits, '.', '_' or '-'")


class TokenSigner:
    """Issues and verifies tokens with a set of HMAC keys; `current` signs."""

    __slots__ = ("_current", "_keys", "_max_ttl")

    def __init__(
        self,
        keys: Mapping[str, bytes],
        current: str,
        *,
        max_ttl: timedelta = DEFAULT_MAX_TTL,
    ) -> None:
        if not keys:
            raise ValueError("at least one token signing key is required")
        for kid, secret in keys.items():
            if not isinstance(kid, str) or not kid:
                raise ValueError("token key ids must be non-empty strings")
            if not isinstance(secret, bytes):
                raise ValueError(f"token key {kid!r} must be bytes")
            if len(secret) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"token key {kid!r} must be at least {MIN_SECRET_BYTES} bytes, "
                    f"got {len(secret)}"
                )
        if current not in keys:
            raise ValueError(f"the current token key id {current!r} is not among the keys")
        if max_ttl < timedelta(seconds=1):
            raise ValueError("max_ttl must be at least one second")
        self._keys = dict(keys)
        self._current = current
        self._max_ttl = max_ttl

    @classmethod
    def from_secret(
        cls, secret: str, kid: str = "1", *, max_ttl: timedelta = DEFAULT_MAX_TTL
    ) -> TokenSigner:
        """A signer with one key, e.g. from a single environment variable."""
        return cls({kid: secret.encode("utf-8")}, kid, max_ttl=max_ttl)

    def __repr__(self) -> str:
        return f"TokenSigner(kids={sorted(self._keys)}, current={self._current!r})"

    @property
    def current(self) -> str:
        """The key id new tokens are signed with."""
        return self._current

    @property
    def max_ttl(self) -> timedelta:
        return self._max_ttl

    def issue(
        self,
        *,
        purpose: str,
        audience: str,
        subject: str,
        ttl: timedelta,
        claims: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> Token:
        """A token for `subject`, valid for `audience` and `purpose` during `ttl`.

        `now` (timezone-aware) exists so tests can mint tokens in the past.
        """
        _check_purpose(purpose)
        for name, value in (("audience", audience), ("subject", subject)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string")
        lifetime = int(ttl.total_seconds())
        if lifetime < 1:
            raise ValueError("ttl must be at least one second")
        if ttl > self._max_ttl:
            raise ValueError(f"ttl {ttl} exceeds the maximum of {self._max_ttl}")
        extra = dict(claims or {})
        overridden = sorted(RESERVED_CLAIMS.intersection(extra))
        if overridden:
            raise ValueError(f"claims may not set reserved claims: {', '.join(overridden)}")
        if now is None:
            now = datetime.now(UTC)
        elif now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        issued_at = int(now.timestamp())
        expires = issued_at + lifetime
        jti = uuid.uuid4().hex
        payload = {
            **extra,
            "sub": subject,
            "aud": audience,
            "pur": purpose,
            "iat": issued_at,
            "exp": expires,
            "jti": jti,
        }
        value = jwt.encode(
            payload,
            self._keys[self._current],
            algorithm=ALGORITHM,
            headers={"kid": self._current, "typ": _typ(purpose)},
        )
        return Token(value=value, jti=jti, expires_at=datetime.fromtimestamp(expires, UTC))

    def verify(
        self,
        value: str,
        *,
        purpose: str,
        audience: str,
        leeway: timedelta = DEFAULT_LEEWAY,
    ) -> dict[str, Any]:
        """The claims of a valid token for `purpose` and `audience`, else `InvalidToken`."""
        _check_purpose(purpose)
        if not isinstance(value, str):
            raise InvalidToken("invalid token")
        try:
            header = jwt.get_unverified_header(value)
        except jwt.PyJWTError:
            raise InvalidToken("invalid token") from None
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str) or kid not in self._keys:
            raise InvalidToken("invalid token")
        try:
            claims = jwt.decode(
                value,
                self._keys[kid],
                algorithms=[ALGORITHM],
                audience=audience,
                leeway=leeway,
                options={
                    "require": ["sub", "aud", "pur", "iat", "exp", "jti"],
                    "strict_aud": True,
                },
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.PyJWTError:
            raise InvalidToken("invalid token") from None
        # The header is covered by the signature, so it is checked only once that holds.
        if header.get("typ") != _typ(purpose) or claims.get("pur") != purpose:
            raise InvalidToken("invalid token")
        issued_at, expires = claims["iat"], claims["exp"]
        if not all(type(t) is int for t in (issued_at, expires)):
            raise InvalidToken("invalid token")
        if not 0 < expires - issued_at <= self._max_ttl.total_seconds():
            raise InvalidToken("invalid token")
        return claims
