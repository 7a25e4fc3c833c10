"""AES-128-GCM payload encryption of newer DTU firmware (protocol.md section 2.6).

* key   = first 16 bytes of SHA256(SHA256(SHA256(enc_rand)))
* nonce = last 12 bytes of SHA256^3(tag as u16 LE || seq as u16 LE || enc_rand)
* AAD   = tag (u16 LE) || seq (u16 LE)

The 16-byte GCM tag follows the ciphertext on the wire and is neither counted
in the length field nor covered by the CRC. ``enc_rand`` comes from the DTU's
app-info reply and changes at every DTU reboot. It is a secret: it is never
logged and never part of a repr.
"""

from __future__ import annotations

import hashlib
import struct
from typing import TYPE_CHECKING, Final

from hoymiles_bridge.errors import EncryptionError, InvalidArgumentError
from hoymiles_bridge.protocol.frame import GCM_TAG_SIZE, is_extended_tag

#: Tags that stay plaintext even when the DTU encrypts: app info both ways and
#: the heartbeat request (hoymiles-wifi's list). The heartbeat *reply* is
#: treated as encrypted, as hoymiles-wifi does; protocol.md marks it uncertain.
PLAINTEXT_TAGS: Final = frozenset({0xA301, 0xA201, 0xA302})

_TAG_SEQ: Final = struct.Struct("<HH")


def is_encrypted_tag(tag: int) -> bool:
    """Whether a frame with this tag is encrypted on a DTU that encrypts."""
    return tag not in PLAINTEXT_TAGS and not is_extended_tag(tag)


def _sha256_3(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(hashlib.sha256(data).digest()).digest()).digest()


if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class PayloadCipher:
    """Encrypts and decrypts frame payloads for one ``enc_rand``.

    ``cryptography`` (about 8 MB of memory with its OpenSSL) is imported with
    the first cipher: a bridge whose DTUs do not encrypt never loads it.
    """

    __slots__ = ("_aead", "_enc_rand", "_key")

    def __init__(self, enc_rand: bytes) -> None:
        if not enc_rand:
            raise InvalidArgumentError("enc_rand must not be empty")
        self._enc_rand = bytes(enc_rand)
        self._key = _sha256_3(self._enc_rand)[:16]
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead: AESGCM = AESGCM(self._key)

    @classmethod
    def from_hex(cls, text: str) -> PayloadCipher:
        """Build from the hex string users pass as ``--enc-rand``."""
        try:
            raw = bytes.fromhex(text.strip())
        except ValueError:
            raise InvalidArgumentError("enc_rand must be hexadecimal (32 hex digits)") from None
        return cls(raw)

    def __repr__(self) -> str:
        return "PayloadCipher(enc_rand=<hidden>)"

    def same_key(self, enc_rand: bytes) -> bool:
        return self._enc_rand == enc_rand

    @property
    def key(self) -> bytes:
        return self._key

    def nonce(self, tag: int, sequence: int) -> bytes:
        return _sha256_3(_TAG_SEQ.pack(tag, sequence) + self._enc_rand)[-12:]

    def encrypt(self, tag: int, sequence: int, plaintext: bytes) -> tuple[bytes, bytes]:
        """Return ``(ciphertext, gcm_tag)``."""
        aad = _TAG_SEQ.pack(tag, sequence)
        sealed = self._aead.encrypt(self.nonce(tag, sequence), plaintext, aad)
        return sealed[:-GCM_TAG_SIZE], sealed[-GCM_TAG_SIZE:]

    def decrypt(self, tag: int, sequence: int, ciphertext: bytes, gcm_tag: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        aad = _TAG_SEQ.pack(tag, sequence)
        try:
            return self._aead.decrypt(self.nonce(tag, sequence), ciphertext + gcm_tag, aad)
        except InvalidTag:
            raise EncryptionError(
                f"payload of tag {tag:04X} failed AES-GCM authentication "
                "(wrong or outdated enc_rand; the DTU changes it at every reboot)"
            ) from None


__all__ = ["PLAINTEXT_TAGS", "PayloadCipher", "is_encrypted_tag"]
