"""Credentials at rest: AES-256-GCM with a key the operator keeps outside the state file.

The key is 32 random bytes, base64 (`slicewire creds keygen` prints one), read from
`auth.secret_key_file` or else from $SLICEWIRE_SECRET_KEY. Each sealed value is
`version byte | 12-byte nonce | ciphertext+tag`, with associated data naming what it belongs to, so a
sealed value moved to another (subject, backend) does not open.

    vault = Vault(load_key(config.auth))
    blob = vault.seal(b"ghp_...", b"alice|/github|key")
    vault.open(blob, b"alice|/github|key")   # -> b"ghp_..."
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._config import AuthConfig

__all__ = ["KEY_ENV", "Vault", "VaultKeyError", "decode_key", "load_key", "new_key"]

KEY_ENV = "SLICEWIRE_SECRET_KEY"
_VERSION = b"\x01"


class VaultKeyError(Exception):
    """No usable key: the message says where one is looked for."""


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def load_key(auth: AuthConfig) -> bytes:
    if auth.secret_key_file is not None:
        try:
            text = Path(auth.secret_key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise VaultKeyError(f"auth.secret_key_file: cannot read {auth.secret_key_file}: {exc.strerror}") from None
        where = f"auth.secret_key_file ({auth.secret_key_file})"
    else:
        text = os.environ.get(KEY_ENV, "").strip()
        where = f"${KEY_ENV}"
        if not text:
            raise VaultKeyError(
                f"storing users' credentials needs a key: set {KEY_ENV} or auth.secret_key_file "
                f"(`slicewire creds keygen` prints a new one)"
            )
    try:
        return decode_key(text, where)
    except ValueError as exc:
        raise VaultKeyError(str(exc)) from None


def decode_key(text: str, where: str) -> bytes:
    """A 32-byte key from its base64 (a vault key, a session key); a ValueError naming `where` otherwise."""
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{where}: not base64") from None
    if len(key) != 32:
        raise ValueError(f"{where}: expected 32 bytes (base64 of 44 characters), found {len(key)} bytes")
    return key


class Vault:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, context)

    def open(self, sealed: bytes, context: bytes) -> bytes | None:
        """The plaintext, or None when the key or the context is not the one it was sealed with."""
        if sealed[:1] != _VERSION or len(sealed) < 29:
            return None
        try:
            return self._aead.decrypt(sealed[1:13], sealed[13:], context)
        except InvalidTag:
            return None
