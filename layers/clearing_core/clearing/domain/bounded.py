"""Bounds on everything derived from input that gets stored or produced.

Any message the broker accepts must end in a recorded decision, and no input may make that record too
large to write (a DynamoDB item holds at most 400 KB; a Kafka message is bounded by the topic's
max.message.bytes). So a stored or produced record keeps, instead of the input itself, a prefix of
the payload, its length and SHA-256 (the full bytes stay in the source topic, at the offset the
record names), and clips any text that can echo the input (ids, error messages).
Pure: no I/O.
"""

from __future__ import annotations

from binascii import b2a_base64
from hashlib import sha256
from typing import TypedDict, overload

PREFIX_BYTES = 4096  # of the original payload kept in rejections and dead letters
MAX_TEXT = 1024  # characters of a message text (error texts can echo the input)
MAX_ID = 64  # characters of an id read from invalid input (member, client order id, symbol)


@overload
def clip(text: str, limit: int = ...) -> str: ...
@overload
def clip(text: None, limit: int = ...) -> None: ...
@overload
def clip(text: str | None, limit: int = ...) -> str | None: ...


def clip(text: str | None, limit: int = MAX_TEXT) -> str | None:
    """`text` when it is at most `limit` characters, else its start and how long it was."""
    if text is None or len(text) <= limit:
        return text
    note = f"... ({len(text)} characters)"
    return text[: max(0, limit - len(note))] + note


class PayloadFields(TypedDict):
    original_b64: str
    original_length: int
    original_sha256: str
    original_truncated: bool


def payload_fields(raw: bytes | bytearray | memoryview | None) -> PayloadFields:
    """What a record keeps of a payload: the first PREFIX_BYTES as base64, the length and SHA-256."""
    raw = bytes(raw) if raw is not None else b""
    return {
        "original_b64": b2a_base64(raw[:PREFIX_BYTES], newline=False).decode(),
        "original_length": len(raw),
        "original_sha256": sha256(raw).hexdigest(),
        "original_truncated": len(raw) > PREFIX_BYTES,
    }
