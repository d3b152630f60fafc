"""Encryption of stored credentials with AES-256-GCM.

Keys come from the environment and carry a version so they can be rotated: the newest key
encrypts, every configured key decrypts. Each value is stored as three base64 texts
(`ciphertext`, `iv`, `tag`) plus the key version, the layout the original system wrote, so
rows it left behind stay readable.

Two schemes share that layout. The original ("v1") used no associated data, so a value
copied into another row or column still decrypted. The current one ("v2") marks the
ciphertext with a `v2:` prefix and binds the value to its table, column, row and key version
through the associated data. v1 values are only read, never written, and report
`needs_rotation` so a rotation job can reseal them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEYS_VAR = "CREDENTIAL_ENCRYPTION_KEYS"
KEY_VAR = "CREDENTIAL_ENCRYPTION_KEY"

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # 96-bit GCM nonce
TAG_BYTES = 16

SCHEME_V1 = "v1"
SCHEME_V2 = "v2"
_V2_MARKER = SCHEME_V2 + ":"
_AAD_LABEL = b"aerelion.vault.credential"
_VERSION = re.compile(r"[0-9]+")
_B64_STANDARD = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class VaultError(Exception):
    """Base class of the errors raised while opening a stored value."""


class UnknownKeyVersion(VaultError):
    """The value was sealed with a key version that is not configured."""

    def __init__(self, version: int) -> None:
        super().__init__(f"no credential encryption key for version {version}")
        self.version = version


class DecryptionError(VaultError):
    """The value is malformed, tampered with, or bound to another place or key."""

    def __init__(self) -> None:
        super().__init__("could not decrypt the stored credential")


class VaultConfigError(ValueError):
    """The key configuration is unusable; the message never contains key material."""


@dataclass(frozen=True)
class Context:
    """Where a value is stored; a v2 value only opens at the place it was sealed for."""

    table: str
    column: str
    row_id: str

    def __post_init__(self) -> None:
        for name in ("table", "column", "row_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"Context.{name} must be a non-empty string")


@dataclass(frozen=True)
class Sealed:
    """An encrypted value in its stored form."""

    ciphertext: str
    iv: str
    tag: str
    key_version: int

    @property
    def scheme(self) -> str:
        """`v2` for bound values, `v1` for the original unbound layout."""
        return SCHEME_V2 if self.ciphertext.startswith(_V2_MARKER) else SCHEME_V1


def _aad(scheme: str, context: Context, key_version: int) -> bytes:
    """Length-prefixed fields, so no two different contexts give the same bytes."""
    fields = (_AAD_LABEL, scheme, context.table, context.column, context.row_id, str(key_version))
    out = bytearray()
    for field in fields:
        data = field if isinstance(field, bytes) else field.encode("utf-8")
        out += struct.pack(">I", len(data)) + data
    return bytes(out)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _stored_b64(text: str) -> bytes:
    """Strict standard base64, as written to storage; anything else is refused."""
    if not isinstance(text, str) or not _B64_STANDARD.fullmatch(text) or len(text) % 4:
        raise DecryptionError
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptionError from None


def _key_b64(text: str) -> bytes | None:
    """Standard or URL-safe base64, padding optional; None when it is not base64."""
    text = text.strip()
    if not text:
        return None
    urlsafe = "-" in text or "_" in text
    if urlsafe and ("+" in text or "/" in text):
        return None
    if urlsafe:
        text = text.replace("-", "+").replace("_", "/")
    if not _B64_STANDARD.fullmatch(text):
        return None
    unpadded = text.rstrip("=")
    if len(unpadded) % 4 == 1 or (text != unpadded and len(text) % 4):
        return None
    try:
        return base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _decode_key(text: str, where: str, problems: list[str]) -> bytes | None:
    key = _key_b64(text)
    if key is None:
        problems.append(f"{where} is not valid base64")
        return None
    if len(key) != KEY_BYTES:
        problems.append(f"{where} must decode to exactly {KEY_BYTES} bytes, got {len(key)}")
        return None
    return key


def _parse_keys_list(raw: str, problems: list[str]) -> tuple[dict[int, bytes], set[int]]:
    """Valid keys by version, and every version listed (valid or not)."""
    keys: dict[int, bytes] = {}
    listed: set[int] = set()
    for position, entry in enumerate(raw.split(","), start=1):
        entry = entry.strip()
        version_text, sep, encoded = entry.partition(":")
        version_text = version_text.strip()
        if not sep:
            problems.append(f"{KEYS_VAR}: entry {position} is not of the form version:base64")
            continue
        # The version text is never echoed: a swapped entry would put the key there.
        if not _VERSION.fullmatch(version_text) or int(version_text) < 1:
            problems.append(
                f"{KEYS_VAR}: entry {position} has an invalid version (expected a positive integer)"
            )
            continue
        version = int(version_text)
        if version in listed:
            problems.append(f"{KEYS_VAR}: version {version} is listed more than once")
            continue
        listed.add(version)
        key = _decode_key(encoded, f"{KEYS_VAR}: version {version} key", problems)
        if key is not None:
            keys[version] = key
    return keys, listed


def _parse(environ: Mapping[str, str]) -> tuple[dict[int, bytes] | None, list[str]]:
    """The configured keys (None when unset) and every problem found."""
    problems: list[str] = []
    keys_raw = environ.get(KEYS_VAR, "").strip()
    single_raw = environ.get(KEY_VAR, "").strip()
    if not keys_raw and not single_raw:
        return None, problems
    single = _decode_key(single_raw, KEY_VAR, problems) if single_raw else None
    if not keys_raw:
        return ({1: single} if single is not None else {}), problems
    keys, listed = _parse_keys_list(keys_raw, problems)
    if single is not None:
        if 1 not in listed:
            problems.append(f"{KEY_VAR} is set but {KEYS_VAR} has no version 1 key")
        elif 1 in keys and not hmac.compare_digest(keys[1], single):
            problems.append(f"{KEY_VAR} differs from the version 1 key in {KEYS_VAR}")
    return keys, problems


def vault_problems(environ: Mapping[str, str]) -> list[str]:
    """One line per mistake in the key configuration; empty when fine or unset."""
    return _parse(environ)[1]


class Vault:
    """Seals and opens credentials with a set of versioned AES-256 keys."""

    __slots__ = ("_ciphers", "_current")

    def __init__(self, keys: Mapping[int, bytes]) -> None:
        if not keys:
            raise VaultConfigError("at least one credential encryption key is required")
        ciphers: dict[int, AESGCM] = {}
        for version, key in keys.items():
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise VaultConfigError("key versions must be positive integers")
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise VaultConfigError(f"key version {version} must be exactly {KEY_BYTES} bytes")
            ciphers[version] = AESGCM(key)
        self._ciphers = ciphers
        self._current = max(ciphers)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Vault | None:
        """The vault configured in `environ`, or None when no key is set."""
        keys, problems = _parse(environ)
        if problems:
            raise VaultConfigError("; ".join(problems))
        return None if keys is None else cls(keys)

    def __repr__(self) -> str:
        return f"Vault(versions={sorted(self._ciphers)}, current={self._current})"

    @property
    def current_version(self) -> int:
        """The key version new values are sealed with."""
        return self._current

    def seal(self, plaintext: bytes, context: Context) -> Sealed:
        """Encrypt under the newest key, bound to `context`, with a fresh random nonce."""
        nonce = os.urandom(NONCE_BYTES)
        aad = _aad(SCHEME_V2, context, self._current)
        out = self._ciphers[self._current].encrypt(nonce, plaintext, aad)
        return Sealed(
            ciphertext=_V2_MARKER + _b64(out[:-TAG_BYTES]),
            iv=_b64(nonce),
            tag=_b64(out[-TAG_BYTES:]),
            key_version=self._current,
        )

    def seal_json(self, value: Any, context: Context) -> Sealed:
        """`seal` of the compact UTF-8 JSON text of `value`."""
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return self.seal(text.encode("utf-8"), context)

    def open(self, sealed: Sealed, context: Context) -> bytes:
        """Decrypt a stored value; v1 values have no binding, so `context` is not checked."""
        cipher = self._ciphers.get(sealed.key_version)
        if cipher is None:
            raise UnknownKeyVersion(sealed.key_version)
        body = sealed.ciphertext
        aad: bytes | None = None  # v1 values were sealed without associated data
        if sealed.scheme == SCHEME_V2:
            body = body.removeprefix(_V2_MARKER)
            aad = _aad(SCHEME_V2, context, sealed.key_version)
        ciphertext, nonce, tag = _stored_b64(body), _stored_b64(sealed.iv), _stored_b64(sealed.tag)
        if len(nonce) != NONCE_BYTES or len(tag) != TAG_BYTES:
            raise DecryptionError
        try:
            return cipher.decrypt(nonce, ciphertext + tag, aad)
        except InvalidTag:
            raise DecryptionError from None

    def open_json(self, sealed: Sealed, context: Context) -> Any:
        """`open` followed by JSON decoding."""
        plaintext = self.open(sealed, context)
        try:
            return json.loads(plaintext.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise DecryptionError from None

    def reseal(self, sealed: Sealed, context: Context) -> Sealed:
        """The same plaintext sealed under the newest key and the v2 scheme."""
        return self.seal(self.open(sealed, context), context)

    def needs_rotation(self, sealed: Sealed) -> bool:
        """True for unbound v1 values and values sealed with an older key."""
        return sealed.scheme != SCHEME_V2 or sealed.key_version < self._current
