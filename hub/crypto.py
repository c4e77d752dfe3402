"""Encryption of secrets at rest, bound to the row that owns them, with rotatable keys."""
from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app

from .config import decode_key

PREFIX = "enc1"


class DecryptionError(Exception):
    """The ciphertext is corrupt, was moved to another row, or no configured key opens it."""


def generate_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def _decode_key(text: str) -> bytes:
    try:
        return decode_key(text)
    except ValueError as exc:
        raise ValueError(f"an encryption key {exc}: keys are 32 bytes, urlsafe-base64 encoded "
                         "(hub keys generate)") from None


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"hub-key-id" + key).hexdigest()[:8]


def _keys(app=None) -> list[bytes]:
    app = app or current_app
    return [_decode_key(k) for k in app.config["HUB_ENCRYPTION_KEYS"]]


def encrypt(plaintext: str, context: str, app=None) -> str:
    """Encrypt under the first key. ``context`` names the owning row and field; the same
    context is needed to decrypt, so a ciphertext copied to another row does not open."""
    key = _keys(app)[0]
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), context.encode())
    return f"{PREFIX}:{_key_id(key)}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"


def decrypt(token: str, context: str, app=None) -> str:
    try:
        prefix, key_id, blob = token.split(":", 2)
        raw = base64.urlsafe_b64decode(blob.encode())
    except (ValueError, AttributeError) as exc:
        raise DecryptionError("not a hub ciphertext") from exc
    if prefix != PREFIX:
        raise DecryptionError("not a hub ciphertext")
    for key in _keys(app):
        if _key_id(key) != key_id:
            continue
        try:
            return AESGCM(key).decrypt(raw[:12], raw[12:], context.encode()).decode()
        except InvalidTag as exc:
            raise DecryptionError("ciphertext does not belong to this row or was altered") from exc
    raise DecryptionError("no configured key matches this ciphertext (was a key removed?)")


def needs_rotation(token: str, app=None) -> bool:
    return token.split(":", 2)[1] != _key_id(_keys(app)[0])


#: Every encrypted field declared on a model, so key rotation can find them all.
ENCRYPTED_FIELDS: list[tuple[type, EncryptedField]] = []


class EncryptedField:
    """A model attribute stored encrypted in another column, bound to the row's primary key.

    ``token = EncryptedField("token_ciphertext")`` reads and writes plaintext; the column
    holds only ciphertext. The row's ``id`` must be known before the value is set.
    """

    def __init__(self, column: str):
        self.column = column

    def __set_name__(self, owner, name):
        self.name = name
        ENCRYPTED_FIELDS.append((owner, self))

    def context(self, obj) -> str:
        if obj.id is None:
            raise ValueError(f"{type(obj).__name__} needs an id before {self.name} is set")
        return f"{obj.__tablename__}:{obj.id}:{self.name}"

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        token = getattr(obj, self.column)
        return None if token is None else decrypt(token, self.context(obj))

    def __set__(self, obj, value):
        setattr(obj, self.column, None if value is None else encrypt(value, self.context(obj)))

    def rotate(self, obj) -> bool:
        """Re-encrypt under the first key; True when the row changed."""
        token = getattr(obj, self.column)
        if token is None or not needs_rotation(token):
            return False
        self.__set__(obj, self.__get__(obj))
        return True
