from __future__ import annotations

import base64
import dataclasses
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from aerelion.vault import (
    Context,
    DecryptionError,
    Sealed,
    UnknownKeyVersion,
    Vault,
    VaultConfigError,
    VaultError,
    vault_problems,
)

pytestmark = pytest.mark.security

KEY1 = bytes(range(32))
KEY2 = bytes(range(100, 132))
HERE = Context("connections", "secret", "4f1c2a9e-0000-4000-8000-000000000001")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def legacy_seal(key: bytes, plaintext: bytes, version: int = 1) -> Sealed:
    """A value exactly as the original system stored it: no associated data."""
    iv = os.urandom(12)
    out = AESGCM(key).encrypt(iv, plaintext, None)
    return Sealed(b64(out[:-16]), b64(iv), b64(out[-16:]), version)


def flip_first_byte(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[0] ^= 0x01
    return b64(bytes(raw))


def test_round_trip() -> None:
    vault = Vault({1: KEY1})
    sealed = vault.seal(b"hunter2", HERE)
    assert sealed.scheme == "v2"
    assert sealed.ciphertext.startswith("v2:")
    assert sealed.key_version == 1
    assert len(base64.b64decode(sealed.iv)) == 12
    assert len(base64.b64decode(sealed.tag)) == 16
    assert b"hunter2" not in base64.b64decode(sealed.ciphertext[3:])
    assert vault.open(sealed, HERE) == b"hunter2"
    assert not vault.needs_rotation(sealed)


def test_empty_plaintext_round_trips() -> None:
    vault = Vault({1: KEY1})
    assert vault.open(vault.seal(b"", HERE), HERE) == b""


def test_json_round_trip() -> None:
    vault = Vault({1: KEY1})
    value = {"token": "abc", "scopes": ["read", "write"], "n": 3, "name": "Zoë"}
    sealed = vault.seal_json(value, HERE)
    assert vault.open_json(sealed, HERE) == value
    assert (
        vault.open(sealed, HERE)
        == '{"token":"abc","scopes":["read","write"],"n":3,"name":"Zoë"}'.encode()
    )


def test_two_seals_of_the_same_plaintext_use_different_nonces() -> None:
    vault = Vault({1: KEY1})
    first, second = vault.seal(b"same", HERE), vault.seal(b"same", HERE)
    assert first.iv != second.iv
    assert first.ciphertext != second.ciphertext


@pytest.mark.parametrize("field", ["ciphertext", "iv", "tag"])
def test_a_flipped_byte_is_refused(field: str) -> None:
    vault = Vault({1: KEY1})
    sealed = vault.seal(b"secret value", HERE)
    if field == "ciphertext":
        tampered = dataclasses.replace(
            sealed, ciphertext="v2:" + flip_first_byte(sealed.ciphertext[3:])
        )
    else:
        tampered = dataclasses.replace(sealed, **{field: flip_first_byte(getattr(sealed, field))})
    with pytest.raises(DecryptionError) as caught:
        vault.open(tampered, HERE)
    assert str(caught.value) == "could not decrypt the stored credential"


@pytest.mark.parametrize(
    "elsewhere",
    [
        Context(HERE.table, HERE.column, "4f1c2a9e-0000-4000-8000-000000000002"),
        Context(HERE.table, "refresh_token", HERE.row_id),
        Context("other_table", HERE.column, HERE.row_id),
    ],
    ids=["other-row", "other-column", "other-table"],
)
def test_a_value_moved_elsewhere_is_refused(elsewhere: Context) -> None:
    vault = Vault({1: KEY1})
    sealed = vault.seal(b"secret value", HERE)
    with pytest.raises(DecryptionError):
        vault.open(sealed, elsewhere)


def test_context_fields_are_unambiguous() -> None:
    vault = Vault({1: KEY1})
    sealed = vault.seal(b"x", Context("a", "bc", "1"))
    with pytest.raises(DecryptionError):
        vault.open(sealed, Context("ab", "c", "1"))
    sealed = vault.seal(b"x", Context("t", "c", "12"))
    with pytest.raises(DecryptionError):
        vault.open(sealed, Context("t", "c1", "2"))


def test_the_key_version_is_bound() -> None:
    # Same key material under two versions: relabelling the version must still fail.
    vault = Vault({1: KEY1, 2: KEY1})
    sealed = vault.seal(b"x", HERE)
    assert sealed.key_version == 2
    with pytest.raises(DecryptionError):
        vault.open(dataclasses.replace(sealed, key_version=1), HERE)


def test_v2_value_cannot_be_downgraded_to_v1() -> None:
    vault = Vault({1: KEY1})
    sealed = vault.seal(b"x", HERE)
    with pytest.raises(DecryptionError):
        vault.open(dataclasses.replace(sealed, ciphertext=sealed.ciphertext[3:]), HERE)


def test_wrong_key_is_refused() -> None:
    sealed = Vault({1: KEY1}).seal(b"x", HERE)
    with pytest.raises(DecryptionError):
        Vault({1: KEY2}).open(sealed, HERE)


@pytest.mark.parametrize(
    "change",
    [
        {"ciphertext": "v2:not base64!"},
        {"ciphertext": "v2:QUJD"[:-1]},
        {"iv": "****"},
        {"iv": b64(bytes(16))},
        {"iv": b64(bytes(8))},
        {"tag": b64(bytes(12))},
        {"tag": ""},
        {"ciphertext": "v3:QUJD"},
    ],
)
def test_malformed_values_are_refused(change: dict[str, str]) -> None:
    vault = Vault({1: KEY1})
    sealed = dataclasses.replace(vault.seal(b"x", HERE), **change)
    with pytest.raises(DecryptionError) as caught:
        vault.open(sealed, HERE)
    assert str(caught.value) == "could not decrypt the stored credential"


def test_legacy_v1_values_are_readable_and_need_rotation() -> None:
    vault = Vault({1: KEY1})
    legacy = legacy_seal(KEY1, b"old secret")
    assert legacy.scheme == "v1"
    assert vault.open(legacy, HERE) == b"old secret"
    # No binding existed, so any context reads it (the reason it must be rotated).
    assert vault.open(legacy, Context("x", "y", "z")) == b"old secret"
    assert vault.needs_rotation(legacy)
    resealed = vault.reseal(legacy, HERE)
    assert resealed.scheme == "v2"
    assert not vault.needs_rotation(resealed)
    assert vault.open(resealed, HERE) == b"old secret"


def test_legacy_v1_json_is_readable() -> None:
    legacy = legacy_seal(KEY1, b'{"a":1}')
    assert Vault({1: KEY1}).open_json(legacy, HERE) == {"a": 1}


def test_tampered_legacy_value_is_refused() -> None:
    legacy = legacy_seal(KEY1, b"old secret")
    with pytest.raises(DecryptionError):
        Vault({1: KEY1}).open(dataclasses.replace(legacy, tag=flip_first_byte(legacy.tag)), HERE)


def test_rotation_to_a_new_key() -> None:
    old = Vault({1: KEY1})
    sealed = old.seal(b"rotate me", HERE)
    both = Vault({1: KEY1, 2: KEY2})
    assert both.current_version == 2
    assert both.needs_rotation(sealed)
    assert both.open(sealed, HERE) == b"rotate me"
    resealed = both.seal(both.open(sealed, HERE), HERE)
    assert resealed.key_version == 2
    assert not both.needs_rotation(resealed)
    assert both.open(resealed, HERE) == b"rotate me"
    assert both.reseal(sealed, HERE).key_version == 2
    with pytest.raises(UnknownKeyVersion):
        old.open(resealed, HERE)


def test_unknown_key_version() -> None:
    sealed = Vault({3: KEY2}).seal(b"x", HERE)
    with pytest.raises(UnknownKeyVersion) as caught:
        Vault({1: KEY1, 2: KEY2}).open(sealed, HERE)
    assert caught.value.version == 3
    assert isinstance(caught.value, VaultError)
    assert issubclass(DecryptionError, VaultError)


def test_repr_shows_no_key_material() -> None:
    text = repr(Vault({1: KEY1, 2: KEY2}))
    assert text == "Vault(versions=[1, 2], current=2)"


def test_constructor_refuses_bad_keys() -> None:
    with pytest.raises(VaultConfigError):
        Vault({})
    with pytest.raises(VaultConfigError):
        Vault({1: bytes(16)})
    with pytest.raises(VaultConfigError):
        Vault({0: KEY1})


def test_context_requires_every_field() -> None:
    with pytest.raises(ValueError, match="row_id"):
        Context("t", "c", "")


# --- configuration from the environment ---------------------------------------------------


def test_unset_environment_gives_no_vault() -> None:
    assert Vault.from_environ({}) is None
    assert (
        Vault.from_environ({"CREDENTIAL_ENCRYPTION_KEYS": " ", "CREDENTIAL_ENCRYPTION_KEY": ""})
        is None
    )
    assert vault_problems({}) == []


def test_keys_list() -> None:
    env = {"CREDENTIAL_ENCRYPTION_KEYS": f"1:{b64(KEY1)}, 2:{b64(KEY2)}"}
    vault = Vault.from_environ(env)
    assert vault is not None
    assert vault.current_version == 2
    assert vault_problems(env) == []
    sealed = vault.seal(b"x", HERE)
    assert Vault({2: KEY2}).open(sealed, HERE) == b"x"


def test_single_key_is_version_one() -> None:
    vault = Vault.from_environ({"CREDENTIAL_ENCRYPTION_KEY": b64(KEY1)})
    assert vault is not None
    assert vault.current_version == 1
    assert Vault({1: KEY1}).open(vault.seal(b"x", HERE), HERE) == b"x"


def test_url_safe_base64_is_accepted() -> None:
    key = bytes([0xFB, 0xFF] * 16)  # encodes with '+' and '/' in standard base64
    urlsafe = base64.urlsafe_b64encode(key).decode()
    assert "-" in urlsafe or "_" in urlsafe
    for text in (urlsafe, urlsafe.rstrip("=")):
        vault = Vault.from_environ({"CREDENTIAL_ENCRYPTION_KEY": text})
        assert vault is not None
        assert Vault({1: key}).open(vault.seal(b"x", HERE), HERE) == b"x"


def test_both_set_and_consistent() -> None:
    env = {
        "CREDENTIAL_ENCRYPTION_KEYS": f"1:{b64(KEY1)},2:{b64(KEY2)}",
        "CREDENTIAL_ENCRYPTION_KEY": b64(KEY1),
    }
    vault = Vault.from_environ(env)
    assert vault is not None
    assert vault.current_version == 2
    assert vault_problems(env) == []


def test_both_set_and_inconsistent() -> None:
    env = {
        "CREDENTIAL_ENCRYPTION_KEYS": f"1:{b64(KEY1)},2:{b64(KEY2)}",
        "CREDENTIAL_ENCRYPTION_KEY": b64(KEY2),
    }
    assert_refused(env, "CREDENTIAL_ENCRYPTION_KEY differs from the version 1 key")
    env["CREDENTIAL_ENCRYPTION_KEYS"] = f"2:{b64(KEY2)}"
    assert_refused(env, "has no version 1 key")


def assert_refused(env: dict[str, str], expected: str) -> list[str]:
    problems = vault_problems(env)
    assert problems
    assert any(expected in p for p in problems), problems
    with pytest.raises(VaultConfigError) as caught:
        Vault.from_environ(env)
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert expected in message
    for value in env.values():
        for part in value.replace(",", ":").split(":"):
            part = part.strip()
            if len(part) >= 8:
                assert part not in message
                assert all(part not in p for p in problems)
    return problems


@pytest.mark.parametrize("size", [16, 31, 33, 64])
def test_wrong_key_length_is_refused_and_never_padded(size: int) -> None:
    key = os.urandom(size)
    assert_refused(
        {"CREDENTIAL_ENCRYPTION_KEY": b64(key)},
        f"CREDENTIAL_ENCRYPTION_KEY must decode to exactly 32 bytes, got {size}",
    )
    assert_refused(
        {"CREDENTIAL_ENCRYPTION_KEYS": f"1:{b64(KEY1)},2:{b64(key)}"},
        f"CREDENTIAL_ENCRYPTION_KEYS: version 2 key must decode to exactly 32 bytes, got {size}",
    )


@pytest.mark.parametrize(
    "text",
    [
        "not base64 at all!!",
        b64(KEY1)[:-2] + "*=",
        b64(KEY1) + "=",
        b64(KEY1)[:-1] + "===",
        "-" + b64(KEY1)[1:].replace("A", "/"),  # mixes both alphabets
        b64(KEY1)[:-1] + "A=",  # 45 characters
    ],
)
def test_bad_base64_is_refused(text: str) -> None:
    assert_refused({"CREDENTIAL_ENCRYPTION_KEY": text}, "CREDENTIAL_ENCRYPTION_KEY")
    assert_refused(
        {"CREDENTIAL_ENCRYPTION_KEYS": f"1:{b64(KEY1)},2:{text}"},
        "CREDENTIAL_ENCRYPTION_KEYS: version 2 key",
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"0:{b64(KEY1)}", "entry 1 has an invalid version"),
        (f"-1:{b64(KEY1)}", "entry 1 has an invalid version"),
        (f"one:{b64(KEY1)}", "entry 1 has an invalid version"),
        (f"1:{b64(KEY1)},x2:{b64(KEY2)}", "entry 2 has an invalid version"),
        (f"{b64(KEY1)}:1", "entry 1 has an invalid version"),
        (b64(KEY1), "entry 1 is not of the form version:base64"),
        (f"1:{b64(KEY1)},", "entry 2 is not of the form version:base64"),
        (f"1:{b64(KEY1)},1:{b64(KEY2)}", "version 1 is listed more than once"),
        ("1:", "version 1 key is not valid base64"),
    ],
)
def test_bad_keys_list_is_refused(value: str, expected: str) -> None:
    assert_refused({"CREDENTIAL_ENCRYPTION_KEYS": value}, expected)


def test_every_problem_is_reported() -> None:
    env = {"CREDENTIAL_ENCRYPTION_KEYS": f"1:{b64(bytes(16))},2:???,x:{b64(KEY2)}"}
    assert len(assert_refused(env, "version 1 key must decode")) == 3


@settings(max_examples=50, deadline=None)
@given(
    plaintext=st.binary(max_size=512),
    table=st.text(min_size=1, max_size=20),
    column=st.text(min_size=1, max_size=20),
    row_id=st.text(min_size=1, max_size=40),
)
def test_round_trip_property(plaintext: bytes, table: str, column: str, row_id: str) -> None:
    vault = Vault({1: KEY1, 2: KEY2})
    context = Context(table, column, row_id)
    sealed = vault.seal(plaintext, context)
    assert vault.open(sealed, context) == plaintext
    moved = Context(table, column, row_id + "x")
    with pytest.raises(DecryptionError):
        vault.open(sealed, moved)
