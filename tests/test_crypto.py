"""AES-128-GCM payload encryption against the computed vector of protocol.md section 2.6."""

from __future__ import annotations

import pytest

from hoymiles_bridge.errors import EncryptionError, InvalidArgumentError
from hoymiles_bridge.protocol.crypto import PayloadCipher, is_encrypted_tag
from hoymiles_bridge.protocol.frame import encode_frame, parse_frame

from .conftest import load_vectors

VECTOR = next(v for v in load_vectors() if v["name"].startswith("encrypted_"))
EXPECT = VECTOR["expect"]


def test_key_nonce_match_vector() -> None:
    cipher = PayloadCipher.from_hex(EXPECT["enc_rand"])
    assert cipher.key.hex() == EXPECT["key"]
    assert cipher.nonce(0xA311, 1).hex() == EXPECT["nonce"]


def test_vector_decrypts_and_reencrypts_bit_exact() -> None:
    raw = bytes.fromhex(VECTOR["hex"])
    frame = parse_frame(raw)
    assert frame.encrypted
    assert frame.length == 41
    assert len(raw) == 57
    cipher = PayloadCipher.from_hex(EXPECT["enc_rand"])
    plain = cipher.decrypt(frame.tag, frame.sequence, frame.payload, frame.gcm_tag)
    assert plain.hex() == EXPECT["plaintext_hex"]
    ciphertext, tag = cipher.encrypt(frame.tag, frame.sequence, plain)
    assert encode_frame(frame.tag, frame.sequence, ciphertext, gcm_tag=tag) == raw


def test_wrong_key_is_a_typed_error() -> None:
    frame = parse_frame(bytes.fromhex(VECTOR["hex"]))
    with pytest.raises(EncryptionError):
        PayloadCipher(b"\x00" * 16).decrypt(frame.tag, frame.sequence, frame.payload, frame.gcm_tag)


def test_secret_not_in_repr() -> None:
    cipher = PayloadCipher.from_hex(EXPECT["enc_rand"])
    assert EXPECT["enc_rand"] not in repr(cipher)


@pytest.mark.parametrize("text", ["", "zz", "abc"])
def test_bad_hex_is_invalid_argument(text: str) -> None:
    with pytest.raises(InvalidArgumentError):
        PayloadCipher.from_hex(text)


def test_plaintext_exemptions() -> None:
    assert not is_encrypted_tag(0xA301)
    assert not is_encrypted_tag(0xA201)
    assert not is_encrypted_tag(0xDB01)
    assert is_encrypted_tag(0xA311)
    assert is_encrypted_tag(0xA211)
