"""Auth policies: each handler declares one, the runtime enforces it before the handler runs.

    user            a Supabase user JWT (role `authenticated`, aud `authenticated`)
    admin           a user JWT, and `is_admin()` — decided in SQL — is true
    service         the service role: a JWT whose role is `service_role`, or the
                    `sb_secret_…` key (SUPABASE_SERVICE_ROLE_KEY) in `apikey` or Bearer
    secret:ENV      a shared secret from env ENV as Bearer, or in a named header with
                    `secret:ENV@header-name`; compared in constant time
    ths             an admin JWT and a valid human signature (`X-THS-Token`), checked in SQL
    signature       the handler verifies a webhook signature itself
    none            anyone
    a | b           either policy

`verify_jwt` in `supabase/config.toml` is true exactly for the JWT-based policies.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.datastructures import Headers

from aerelion.errors import ApiError
from aerelion.supabase_jwt import JwtVerifier, invalid_jwt

ANON_CLAIMS: Mapping[str, Any] = {"role": "anon"}


@dataclass(frozen=True)
class Principal:
    """Who is calling, as far as the policy established."""

    kind: str  # user | service | secret | anonymous
    claims: Mapping[str, Any] = field(default_factory=lambda: dict(ANON_CLAIMS))
    is_admin: bool = False

    @property
    def role(self) -> str:
        """The database role the caller acts as."""
        return {"user": "authenticated", "service": "service_role"}.get(self.kind, "anon")

    @property
    def user_id(self) -> uuid.UUID | None:
        return uuid.UUID(self.claims["sub"]) if self.kind == "user" else None


ANONYMOUS = Principal("anonymous")


class AdminCheck(Protocol):
    async def __call__(self, claims: Mapping[str, Any]) -> bool: ...


class SignatureCheck(Protocol):
    async def __call__(self, claims: Mapping[str, Any], headers: Headers) -> bool: ...


@dataclass
class AuthContext:
    """What policies need: the request's headers, the JWT verifier, secrets, and the
    database's answer to `is_admin()`."""

    headers: Headers
    verifier: JwtVerifier
    secret: Callable[[str], str | None]
    is_admin: AdminCheck
    has_human_signature: SignatureCheck
    # Who the caller turned out to be, even when the policy then refuses them (for the log).
    identified: Principal | None = None

    def bearer(self) -> str | None:
        value = self.headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return token.strip() or None


def same_secret(presented: str, expected: str) -> bool:
    """Constant-time comparison that does not reveal the expected length either."""
    return hmac.compare_digest(
        hashlib.sha256(presented.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


def auth_required() -> ApiError:
    return ApiError(
        401,
        "auth_required",
        "Missing authorization header",
        headers={"www-authenticate": "Bearer"},
    )


class Policy:
    name = ""
    jwt_based = False

    async def authenticate(self, ctx: AuthContext) -> Principal:
        raise NotImplementedError

    def request_headers(self) -> tuple[str, ...]:
        """Request headers a browser must be allowed to send (CORS)."""
        return ()

    def secret_headers(self) -> tuple[str, ...]:
        """Request headers holding a shared secret: they never reach SQL."""
        return ()

    def security(self) -> list[dict[str, list[str]]]:
        """OpenAPI security requirements."""
        return []

    def __str__(self) -> str:
        return self.name


class UserPolicy(Policy):
    name = "user"
    jwt_based = True

    async def authenticate(self, ctx: AuthContext) -> Principal:
        token = ctx.bearer()
        if token is None:
            raise auth_required()
        claims = await ctx.verifier.verify(token)
        if claims.get("role") == "service_role":
            raise ApiError(403, "forbidden", "A user token is required")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if claims.get("role") != "authenticated" or "authenticated" not in audiences:
            raise invalid_jwt("A signed-in user is required")
        try:
            uuid.UUID(str(claims.get("sub")))
        except ValueError:
            raise invalid_jwt() from None
        ctx.identified = Principal("user", claims)
        return ctx.identified

    def security(self) -> list[dict[str, list[str]]]:
        return [{"userJwt": []}]


class AdminPolicy(UserPolicy):
    name = "admin"

    async def authenticate(self, ctx: AuthContext) -> Principal:
        principal = await super().authenticate(ctx)
        if not await ctx.is_admin(principal.claims):
            raise ApiError(403, "forbidden", "Admin access required")
        return Principal("user", principal.claims, is_admin=True)


class ThsPolicy(AdminPolicy):
    """An admin who has also passed the human-signature challenge (the database checks
    the token's record, as the sensitive SQL functions do themselves)."""

    name = "ths"

    async def authenticate(self, ctx: AuthContext) -> Principal:
        principal = await super().authenticate(ctx)
        if not await ctx.has_human_signature(principal.claims, ctx.headers):
            raise ApiError(
                403,
                "human_signature_required",
                "A human signature is required",
                hint="pass the token from verify-human-signature in X-THS-Token",
            )
        return principal

    def request_headers(self) -> tuple[str, ...]:
        return ("x-ths-token",)

    def security(self) -> list[dict[str, list[str]]]:
        return [{"userJwt": [], "humanSignature": []}]


class ServicePolicy(Policy):
    name = "service"
    jwt_based = True

    async def authenticate(self, ctx: AuthContext) -> Principal:
        key = ctx.secret("SUPABASE_SERVICE_ROLE_KEY")
        presented = [v for v in (ctx.headers.get("apikey"), ctx.bearer()) if v]
        if key and any(same_secret(value, key) for value in presented):
            return Principal("service", {"role": "service_role"})
        token = ctx.bearer()
        if token is None:
            raise auth_required()
        claims = await ctx.verifier.verify(token)
        if claims.get("role") != "service_role":
            raise ApiError(403, "forbidden", "The service role is required")
        return Principal("service", claims)

    def request_headers(self) -> tuple[str, ...]:
        return ("apikey",)

    def security(self) -> list[dict[str, list[str]]]:
        return [{"serviceRoleJwt": []}, {"serviceRoleKey": []}]


@dataclass(frozen=True)
class SecretPolicy(Policy):
    env: str
    header: str | None = None  # None: `Authorization: Bearer <secret>`

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"secret:{self.env}" + (f"@{self.header}" if self.header else "")

    async def authenticate(self, ctx: AuthContext) -> Principal:
        expected = ctx.secret(self.env)
        if not expected:
            # Fail closed: an endpoint without its secret accepts nobody.
            raise ApiError(503, "not_configured", "This endpoint is not configured")
        presented = ctx.headers.get(self.header) if self.header else ctx.bearer()
        if not presented:
            raise auth_required()
        if not same_secret(presented, expected):
            raise ApiError(401, "invalid_credentials", "Invalid credentials")
        return Principal("secret")

    def request_headers(self) -> tuple[str, ...]:
        return (self.header,) if self.header else ()

    def secret_headers(self) -> tuple[str, ...]:
        return self.request_headers()

    def security(self) -> list[dict[str, list[str]]]:
        return [{security_scheme_name(self): []}]


class SignaturePolicy(Policy):
    name = "signature"

    async def authenticate(self, ctx: AuthContext) -> Principal:
        return ANONYMOUS


class NoPolicy(Policy):
    name = "none"

    async def authenticate(self, ctx: AuthContext) -> Principal:
        return ANONYMOUS


@dataclass(frozen=True)
class AnyOf(Policy):
    policies: tuple[Policy, ...]

    @property
    def name(self) -> str:  # type: ignore[override]
        return " | ".join(str(p) for p in self.policies)

    @property
    def jwt_based(self) -> bool:  # type: ignore[override]
        return all(p.jwt_based for p in self.policies)

    async def authenticate(self, ctx: AuthContext) -> Principal:
        refusals: list[ApiError] = []
        for policy in self.policies:
            try:
                return await policy.authenticate(ctx)
            except ApiError as refusal:
                refusals.append(refusal)
        # Authenticated but not allowed (403) says more than "who are you?" (401).
        for status in (403, 401):
            for refusal in refusals:
                if refusal.status == status:
                    raise refusal
        raise refusals[0]

    def request_headers(self) -> tuple[str, ...]:
        return tuple(h for p in self.policies for h in p.request_headers())

    def secret_headers(self) -> tuple[str, ...]:
        return tuple(h for p in self.policies for h in p.secret_headers())

    def security(self) -> list[dict[str, list[str]]]:
        return [s for p in self.policies for s in p.security()]


_SECRET = re.compile(r"^secret:(?P<env>[A-Z][A-Z0-9_]*)(?:@(?P<header>[a-z0-9-]+))?$")
_SIMPLE: dict[str, Policy] = {
    "user": UserPolicy(),
    "admin": AdminPolicy(),
    "ths": ThsPolicy(),
    "service": ServicePolicy(),
    "signature": SignaturePolicy(),
    "none": NoPolicy(),
}


def parse_policy(spec: str | Policy) -> Policy:
    """`"user"`, `"secret:CRON_SECRET | service"`, … or a Policy as is."""
    if isinstance(spec, Policy):
        return spec
    parts = [part.strip() for part in spec.split("|")]
    policies = [_parse_one(part) for part in parts]
    return policies[0] if len(policies) == 1 else AnyOf(tuple(policies))


def _parse_one(spec: str) -> Policy:
    if spec in _SIMPLE:
        return _SIMPLE[spec]
    match = _SECRET.match(spec)
    if match is None:
        raise ValueError(
            f"unknown auth policy {spec!r}: use user, admin, ths, service, secret:ENV[@header], "
            "signature or none"
        )
    return SecretPolicy(match["env"], match["header"])


def security_scheme_name(policy: SecretPolicy) -> str:
    return f"secret_{policy.env}"


def secret_policies(policy: Policy) -> Sequence[SecretPolicy]:
    if isinstance(policy, SecretPolicy):
        return [policy]
    if isinstance(policy, AnyOf):
        return [s for p in policy.policies for s in secret_policies(p)]
    return []
