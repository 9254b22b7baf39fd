"""Encryption at rest (Fernet) and keyed hashes (HMAC-SHA256) for the ledger.

One key from the environment (``CALLBRIDGE_SECRET_KEY``, a Fernet key) does both:
the HMAC key is derived from it with HKDF, so a hash cannot be checked against
a guessed phone number without the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from callbridge.errors import ConfigError

ENV_KEY = "CALLBRIDGE_SECRET_KEY"


class Cipher:
    def __init__(self, key: str | None) -> None:
        key = key or os.environ.get(ENV_KEY)
        if not key:
            raise ConfigError(
                f"{ENV_KEY} is not set: the ledger encrypts event contents with it. "
                "Make one with `callbridge keygen` and keep it secret "
                "(losing it loses the contents).")
        try:
            self._fernet = Fernet(key.encode() if isinstance(key, str) else key)
            raw = base64.urlsafe_b64decode(key)
        except (ValueError, TypeError):
            raise ConfigError(
                f"{ENV_KEY} is not a valid key; make one with `callbridge keygen`") from None
        self.use_mac_key(HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                              info=b"callbridge ledger hmac").derive(raw))

    @property
    def mac_key(self) -> bytes:
        """The key of :meth:`digest`: derived from the encryption key until the ledger
        hands over its own hash key (:mod:`callbridge.markers`)."""
        return self._mac_key

    def use_mac_key(self, key: bytes) -> None:
        """Make :meth:`digest` use the ledger's hash key, which never rotates."""
        self._mac_key = key
        # Keyed once; each digest copies it (the key's set-up is not paid per hash).
        self._mac = hmac.new(key, digestmod=hashlib.sha256)

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, text: str | None) -> bytes | None:
        return None if text is None else self._fernet.encrypt(text.encode())

    def decrypt(self, blob: bytes | None) -> str | None:
        if blob is None:
            return None
        try:
            return self._fernet.decrypt(blob).decode()
        except InvalidToken:
            raise ConfigError(
                f"the ledger's contents cannot be decrypted with this {ENV_KEY}") from None

    def digest(self, *parts: str) -> str:
        mac = self._mac.copy()
        mac.update("\x1f".join(parts).encode())
        return mac.hexdigest()
