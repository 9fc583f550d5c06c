"""Encryption at rest of `Deployment.db_connection_info`: AES-256-GCM envelopes in jsonb.

With `CODERUNNER_SQL_ENCRYPTION_KEY` set (`DatabaseConfig.encryption_key`), every
db_connection_info the services write is stored as an *envelope*, a JSON object with the
single key `$encrypted`::

    {"$encrypted": {"v": 1, "kid": "2026-11", "nonce": "<base64>", "ct": "<base64>"}}

so the column stays `jsonb` and the schema is unchanged. Reads open envelopes transparently.
The key id travels with each ciphertext, so keys can rotate: the variable lists every key
still in use, newest last (`kid:base64key,kid:base64key`); the newest encrypts, any of them
decrypts, and `coderunner-sql secrets rotate` re-encrypts every row under the newest.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from coderunner_sql.errors import ConfigError, EncryptionError

__all__ = [
    "ENCRYPTION_KEY_ENV",
    "ENVELOPE_KEY",
    "EncryptionKey",
    "KeyRing",
    "RotationReport",
    "UnfitValue",
    "generate_key",
    "is_envelope",
    "open_value",
    "openers",
]

ENCRYPTION_KEY_ENV = "CODERUNNER_SQL_ENCRYPTION_KEY"
"""The environment variable holding the key ring: `kid:base64key[,kid:base64key…]`."""

ENVELOPE_KEY = "$encrypted"
"""The one key of an envelope object; plaintext connection info may not use it."""

_VERSION = 1
_KEY_BYTES = 32  # AES-256
_NONCE_BYTES = 12  # GCM's standard nonce; random per encryption
_KID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Bound into every ciphertext: an envelope only opens as this field under its own key id.
_AAD = b"coderunner-sql/deployments.db_connection_info/v1/"


@attrs.frozen
class EncryptionKey:
    """One AES-256 key and the id stored beside everything it encrypts."""

    kid: str
    key: bytes = attrs.field(repr=False)


@attrs.frozen
class RotationReport:
    """What a key rotation did: rows rewritten under `kid`, in how many batches, and rows
    `skipped` because their db_connection_info is not a JSON object (left as they were)."""

    kid: str
    rewritten: int
    batches: int
    skipped: int = 0


def generate_key() -> str:
    """A new random key in the ring's format (base64 of 32 bytes), for `kid:<this>`."""
    return base64.b64encode(os.urandom(_KEY_BYTES)).decode("ascii")


def _decode_key(kid: str, text: str) -> bytes:
    raw = b""
    for altchars in (None, b"-_"):  # standard or URL-safe base64
        try:
            raw = base64.b64decode(text.strip(), altchars=altchars, validate=True)
            break
        except (binascii.Error, ValueError):
            continue
    if len(raw) != _KEY_BYTES:
        raise ConfigError(
            f"{ENCRYPTION_KEY_ENV}: key {kid!r} must be {_KEY_BYTES} random bytes in base64 "
            "(`coderunner-sql secrets new-key` prints one)"
        )
    return raw


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def is_envelope(value: object) -> bool:
    """True when `value` is an encrypted envelope (a dict whose only key is `$encrypted`)."""
    return isinstance(value, Mapping) and len(value) == 1 and ENVELOPE_KEY in value


class KeyRing:
    """Keys by id: the last one encrypts, any of them decrypts. Never shows key material."""

    def __init__(self, keys: Iterable[EncryptionKey]) -> None:
        self._keys = list(keys)
        if not self._keys:
            raise ConfigError(f"{ENCRYPTION_KEY_ENV} names no key")
        self._by_kid: dict[str, EncryptionKey] = {}
        for key in self._keys:
            if key.kid in self._by_kid:
                raise ConfigError(f"{ENCRYPTION_KEY_ENV}: key id {key.kid!r} appears twice")
            self._by_kid[key.kid] = key

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        """The ring from `kid:base64key,kid:base64key` (newest last); `ConfigError` if malformed."""
        keys = []
        for index, item in enumerate(part.strip() for part in text.split(",")):
            if not item:
                continue
            kid, sep, encoded = item.partition(":")
            kid = kid.strip()
            if not sep or not _KID.match(kid):
                raise ConfigError(
                    f"{ENCRYPTION_KEY_ENV}: entry {index + 1} must be kid:base64key with a key id "
                    "of letters, digits, '_', '.' or '-' (at most 64)"
                )
            keys.append(EncryptionKey(kid, _decode_key(kid, encoded)))
        return cls(keys)

    @property
    def kids(self) -> tuple[str, ...]:
        """Every key id, oldest first."""
        return tuple(key.kid for key in self._keys)

    @property
    def newest(self) -> EncryptionKey:
        """The key new envelopes are sealed with (the last in the ring)."""
        return self._keys[-1]

    def __repr__(self) -> str:
        return f"KeyRing(kids={list(self.kids)!r})"

    def seal(self, info: Mapping[str, Any]) -> dict[str, Any]:
        """`info` as an envelope under the newest key."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        from coderunner_sql.converter import dump_json

        key = self.newest
        nonce = os.urandom(_NONCE_BYTES)
        # Any depth: rotation seals what other clients stored too. Callers of the services
        # never get here with text that is not UTF-8 (validation refuses it).
        plain = dump_json(info).encode("utf-8")
        sealed = AESGCM(key.key).encrypt(nonce, plain, _AAD + key.kid.encode("ascii"))
        return {
            ENVELOPE_KEY: {"v": _VERSION, "kid": key.kid, "nonce": _b64(nonce), "ct": _b64(sealed)}
        }

    def open(self, envelope: Mapping[str, Any]) -> dict[str, Any]:
        """The plaintext of an envelope; `EncryptionError` if no key opens it."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        from coderunner_sql.converter import load_json

        body = envelope.get(ENVELOPE_KEY)
        if not isinstance(body, Mapping) or body.get("v") != _VERSION:
            raise EncryptionError("db_connection_info holds an envelope of an unknown format")
        kid = body.get("kid")
        key = self._by_kid.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise EncryptionError(
                f"db_connection_info is encrypted under key id {kid!r}, which "
                f"{ENCRYPTION_KEY_ENV} does not hold (it has {', '.join(self.kids)})"
            )
        try:
            nonce = base64.b64decode(str(body.get("nonce")), validate=True)
            sealed = base64.b64decode(str(body.get("ct")), validate=True)
            plain = AESGCM(key.key).decrypt(nonce, sealed, _AAD + key.kid.encode("ascii"))
            value = load_json(plain)
            failed = False
        except (InvalidTag, binascii.Error, ValueError):
            failed = True
        # Raised outside the handler, which would keep the plaintext's frames as context.
        if failed:
            raise EncryptionError(
                f"db_connection_info could not be decrypted with key {kid!r}: "
                "the key is wrong or the stored value was altered"
            )
        if not isinstance(value, dict):
            raise EncryptionError("db_connection_info decrypted to something other than an object")
        return value

    def reseal(self, value: Mapping[str, Any]) -> dict[str, Any]:
        """`value` (an envelope under any key, or plaintext) sealed under the newest key."""
        return self.seal(self.open(value) if is_envelope(value) else value)


def open_value(keys: KeyRing | None, value: Any) -> Any:
    """A stored db_connection_info as the caller sees it: envelopes opened, plaintext as is."""
    if not is_envelope(value):
        return value
    if keys is None:
        raise EncryptionError(
            f"db_connection_info is encrypted, but {ENCRYPTION_KEY_ENV} is not set: "
            "give this service the key ring the rows were written with"
        )
    return keys.open(value)


# Result columns that may hold an envelope: the column itself, and as a nested record's.
_ENCRYPTED_COLUMNS = frozenset({"db_connection_info", "deployment__db_connection_info"})
_JSON_KINDS = {list: "an array", str: "a string", bool: "a boolean", int: "a number"}


class UnfitValue(ValueError):
    """A stored value a record cannot hold as it is (the service reports a QueryError)."""


def _connection_info(keys: KeyRing | None, value: Any) -> Any:
    # Rows other clients wrote may hold any JSON in the jsonb column. Turning an array of
    # pairs into a dict would hand out connection info nobody stored: such a row is refused
    # by name instead (JSON null reads as None, as SQL NULL does).
    if value is None:
        return None
    if type(value) is not dict:
        kind = next((k for t, k in _JSON_KINDS.items() if isinstance(value, t)), "a number")
        raise UnfitValue(
            f"db_connection_info is {kind}, not a JSON object (written by another client?)"
        )
    return open_value(keys, value)


def openers(keys: KeyRing | None, names: Sequence[str]) -> dict[int, Callable[[Any], Any]]:
    """Column index -> what opens that column's stored value, for the result columns
    `names`: envelopes are opened before a record is built, so records only hold plaintext,
    and an envelope without its key raises EncryptionError rather than leak ciphertext."""

    def opener(value: Any) -> Any:
        # Most rows have no connection info: skip every other test for them.
        return None if value is None else _connection_info(keys, value)

    return {i: opener for i, name in enumerate(names) if name in _ENCRYPTED_COLUMNS}
