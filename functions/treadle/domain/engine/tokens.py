"""Checkpoint tokens: signed capabilities for one invocation of one execution.

A token names the execution, the invocation generation and the checkpoint sequence,
and carries an HMAC so it cannot be forged or moved to another execution. Tokens of
older generations are fenced by the engine, not by the codec.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from treadle.domain.errors import InvalidToken

_MAC_BYTES = 16


@dataclass(frozen=True)
class TokenClaims:
    exec_id: str
    generation: int
    seq: int


class TokenCodec:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("token secret must be at least 16 bytes")
        self._secret = secret

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, claims: TokenClaims) -> str:
        body = f"{claims.exec_id}:{claims.generation}:{claims.seq}".encode()
        return base64.b64encode(body + self._mac(body)).decode()

    def decode(self, token: str) -> TokenClaims:
        try:
            raw = base64.b64decode(token.encode(), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise InvalidToken("Invalid checkpoint token.") from None
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, self._mac(body)):
            raise InvalidToken("Invalid checkpoint token.")
        exec_id, gen, seq = body.decode().split(":")
        return TokenClaims(exec_id=exec_id, generation=int(gen), seq=int(seq))
