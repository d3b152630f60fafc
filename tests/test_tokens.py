from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aerelion.tokens import InvalidToken, Token, TokenSigner

pytestmark = pytest.mark.security

SECRET = b"k" * 64  # long enough for the HS512 forgeries below to raise no warning
OTHER = b"o" * 32
NEWER = b"n" * 40
PURPOSE = "oauth-state"
AUDIENCE = "aerelion-api"
GENERIC = {"invalid token", "token expired"}


def signer(**kwargs: Any) -> TokenSigner:
    return TokenSigner({"1": SECRET}, "1", **kwargs)


def issue(s: TokenSigner | None = None, **overrides: Any) -> Token:
    args: dict[str, Any] = {
        "purpose": PURPOSE,
        "audience": AUDIENCE,
        "subject": "user-42",
        "ttl": timedelta(minutes=10),
    }
    args.update(overrides)
    return (s or signer()).issue(**args)


def refused(value: str, s: TokenSigner | None = None, **overrides: Any) -> str:
    """Verify must fail with a generic message that does not echo the token."""
    args: dict[str, Any] = {"purpose": PURPOSE, "audience": AUDIENCE}
    args.update(overrides)
    with pytest.raises(InvalidToken) as caught:
        (s or signer()).verify(value, **args)
    message = str(caught.value)
    assert message in GENERIC
    return message


def forge(
    payload: dict[str, Any],
    *,
    key: bytes | None = SECRET,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
) -> str:
    """A token built outside the signer, to test what verify accepts."""
    header = {"kid": "1", "typ": f"{PURPOSE}+jwt"}
    header.update(headers or {})
    return jwt.encode(payload, key, algorithm=algorithm, headers=header)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def hand_made(header: dict[str, Any], payload: dict[str, Any], key: bytes = SECRET) -> str:
    """An HS256 token assembled by hand, for headers PyJWT refuses to write."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def good_payload(**changes: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    payload: dict[str, Any] = {
        "sub": "user-42",
        "aud": AUDIENCE,
        "pur": PURPOSE,
        "iat": now,
        "exp": now + 600,
        "jti": "abc123",
    }
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def test_round_trip() -> None:
    before = datetime.now(UTC)
    token = issue(claims={"connection": "c-1", "n": 2})
    claims = signer().verify(token.value, purpose=PURPOSE, audience=AUDIENCE)
    assert claims["sub"] == "user-42"
    assert claims["aud"] == AUDIENCE
    assert claims["pur"] == PURPOSE
    assert claims["jti"] == token.jti
    assert claims["connection"] == "c-1"
    assert claims["n"] == 2
    assert claims["exp"] - claims["iat"] == 600
    assert token.expires_at == datetime.fromtimestamp(claims["exp"], UTC)
    assert before + timedelta(minutes=9) < token.expires_at <= before + timedelta(minutes=11)
    assert jwt.get_unverified_header(token.value) == {
        "alg": "HS256",
        "kid": "1",
        "typ": f"{PURPOSE}+jwt",
    }
    assert token.value not in repr(token)


def test_forged_good_token_is_accepted() -> None:
    # Guards the forge helper itself: the rejections below are due to the one change each makes.
    assert signer().verify(forge(good_payload()), purpose=PURPOSE, audience=AUDIENCE)["jti"]


def test_each_token_has_a_fresh_id() -> None:
    assert issue().jti != issue().jti


def test_expired_token_is_refused() -> None:
    past = datetime.now(UTC) - timedelta(hours=2)
    token = issue(ttl=timedelta(hours=1), now=past)
    assert refused(token.value) == "token expired"


def test_leeway_applies_to_expiry() -> None:
    token = issue(ttl=timedelta(minutes=1), now=datetime.now(UTC) - timedelta(seconds=70))
    assert signer().verify(token.value, purpose=PURPOSE, audience=AUDIENCE)["jti"] == token.jti
    assert refused(token.value, leeway=timedelta(0)) == "token expired"


def test_token_issued_in_the_future_is_refused() -> None:
    token = issue(now=datetime.now(UTC) + timedelta(hours=1))
    assert refused(token.value) == "invalid token"


def test_wrong_purpose_is_refused() -> None:
    token = issue()
    refused(token.value, purpose="password-reset")


@pytest.mark.parametrize(
    ("payload", "headers"),
    [
        (good_payload(pur="password-reset"), {}),
        (good_payload(), {"typ": "password-reset+jwt"}),
        (good_payload(), {"typ": "JWT"}),
    ],
    ids=["pur-differs", "typ-differs", "generic-typ"],
)
def test_purpose_is_checked_in_claim_and_header(
    payload: dict[str, Any], headers: dict[str, Any]
) -> None:
    refused(forge(payload, headers=headers))


def test_wrong_audience_is_refused() -> None:
    token = issue()
    refused(token.value, audience="another-service")
    refused(forge(good_payload(aud=[AUDIENCE, "another-service"])))


def test_tampered_payload_is_refused() -> None:
    mine = issue(subject="user-1")
    theirs = issue(subject="user-2")
    head, _, signature = mine.value.split(".")
    swapped = ".".join([head, theirs.value.split(".")[1], signature])
    refused(swapped)


def test_tampered_signature_is_refused() -> None:
    value = issue().value
    head, body, signature = value.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    refused(f"{head}.{body}.{flipped}")
    refused(f"{head}.{body}.")


def test_alg_none_is_refused() -> None:
    refused(forge(good_payload(), key=None, algorithm="none"))
    # A hand-made unsigned token is refused as well.
    header = {"alg": "none", "kid": "1", "typ": f"{PURPOSE}+jwt"}
    refused(f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(good_payload()).encode())}.")
    # Nor is a correctly signed token whose header names another algorithm.
    refused(hand_made({**header, "alg": "hs256"}, good_payload()))


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_other_algorithms_are_refused(algorithm: str) -> None:
    refused(forge(good_payload(), algorithm=algorithm))


def test_token_signed_with_another_key_is_refused() -> None:
    stranger = TokenSigner({"1": OTHER}, "1")
    refused(issue(stranger).value)


def test_unknown_kid_is_refused() -> None:
    refused(forge(good_payload(), headers={"kid": "9"}))
    typ = f"{PURPOSE}+jwt"
    assert signer().verify(
        hand_made({"alg": "HS256", "kid": "1", "typ": typ}, good_payload()),
        purpose=PURPOSE,
        audience=AUDIENCE,
    )
    refused(hand_made({"alg": "HS256", "kid": ["1"], "typ": typ}, good_payload()))
    refused(hand_made({"alg": "HS256", "kid": 1, "typ": typ}, good_payload()))
    header = {"typ": f"{PURPOSE}+jwt"}
    refused(jwt.encode(good_payload(), SECRET, algorithm="HS256", headers=header))


@pytest.mark.parametrize("claim", ["sub", "aud", "pur", "iat", "exp", "jti"])
def test_missing_required_claims_are_refused(claim: str) -> None:
    refused(forge(good_payload(**{claim: None})))


@pytest.mark.parametrize(
    "changes",
    [{"exp": "soon"}, {"iat": "now"}, {"jti": 5}, {"sub": 7}, {"iat": 1.5}],
)
def test_malformed_claims_are_refused(changes: dict[str, Any]) -> None:
    refused(forge(good_payload(**changes)))


def test_lifetime_above_max_ttl_is_refused() -> None:
    now = int(datetime.now(UTC).timestamp())
    refused(forge(good_payload(iat=now, exp=now + 25 * 3600)))
    refused(forge(good_payload(iat=now, exp=now)), leeway=timedelta(seconds=60))
    short = signer(max_ttl=timedelta(minutes=5))
    refused(issue().value, short)


def test_kid_rotation() -> None:
    old = TokenSigner({"1": SECRET}, "1")
    both = TokenSigner({"1": SECRET, "2": NEWER}, "2")
    old_token = issue(old)
    assert both.verify(old_token.value, purpose=PURPOSE, audience=AUDIENCE)["jti"] == old_token.jti
    new_token = issue(both)
    assert jwt.get_unverified_header(new_token.value)["kid"] == "2"
    assert both.verify(new_token.value, purpose=PURPOSE, audience=AUDIENCE)["sub"] == "user-42"
    refused(new_token.value, old)
    # A token relabelled with the other kid fails its signature check.
    refused(forge(good_payload(), key=SECRET, headers={"kid": "2"}), both)


def test_ttl_above_max_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        issue(ttl=timedelta(hours=24, seconds=1))
    with pytest.raises(ValueError, match="exceeds"):
        issue(signer(max_ttl=timedelta(minutes=5)), ttl=timedelta(minutes=6))
    assert issue(ttl=timedelta(hours=24)).value
    with pytest.raises(ValueError, match="at least one second"):
        issue(ttl=timedelta(0))


@pytest.mark.parametrize("claim", ["sub", "aud", "pur", "iat", "exp", "jti", "nbf"])
def test_reserved_claims_cannot_be_overridden(claim: str) -> None:
    with pytest.raises(ValueError, match=claim):
        issue(claims={claim: "x"})


def test_bad_issue_arguments() -> None:
    with pytest.raises(ValueError, match="purpose"):
        issue(purpose="a b")
    with pytest.raises(ValueError, match="audience"):
        issue(audience="")
    with pytest.raises(ValueError, match="timezone"):
        issue(now=datetime(2030, 1, 1))


def test_short_secret_is_refused_without_printing_it() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes") as caught:
        TokenSigner({"main": b"s3cr3t-but-too-short"}, "main")
    assert "s3cr3t" not in str(caught.value)
    with pytest.raises(ValueError, match="at least 32 bytes") as caught:
        TokenSigner.from_secret("tiny-secret")
    assert "tiny" not in str(caught.value)


def test_current_kid_must_exist() -> None:
    with pytest.raises(ValueError, match="not among the keys"):
        TokenSigner({"1": SECRET}, "2")


def test_from_secret() -> None:
    s = TokenSigner.from_secret("x" * 32, kid="env")
    assert s.current == "env"
    token = issue(s)
    assert TokenSigner({"env": b"x" * 32}, "env").verify(
        token.value, purpose=PURPOSE, audience=AUDIENCE
    )
    assert "x" * 32 not in repr(s)


@pytest.mark.parametrize("value", ["", "a.b", "a.b.c", "...", "not a token", "e30.e30.e30"])
def test_garbage_is_refused(value: str) -> None:
    assert refused(value) == "invalid token"


@settings(max_examples=50, deadline=None)
@given(value=st.text(max_size=200))
def test_arbitrary_text_only_raises_invalid_token(value: str) -> None:
    with pytest.raises(InvalidToken):
        signer().verify(value, purpose=PURPOSE, audience=AUDIENCE)


@settings(max_examples=50, deadline=None)
@given(
    subject=st.text(min_size=1, max_size=40),
    extra=st.dictionaries(
        st.text(min_size=1, max_size=10).filter(
            lambda k: k not in {"sub", "aud", "pur", "iat", "exp", "jti", "nbf"}
        ),
        st.one_of(st.integers(-(2**53), 2**53), st.text(max_size=20), st.booleans()),
        max_size=4,
    ),
)
def test_round_trip_property(subject: str, extra: dict[str, Any]) -> None:
    token = issue(subject=subject, claims=extra)
    claims = signer().verify(token.value, purpose=PURPOSE, audience=AUDIENCE)
    assert claims["sub"] == subject
    assert {k: claims[k] for k in extra} == extra
