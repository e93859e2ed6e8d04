"""Build MSK events the way Lambda delivers them (records keyed "topic-partition", base64)."""

from __future__ import annotations

import base64
import json
from typing import Any


def msk_record(
    topic: str,
    partition: int,
    offset: int,
    value: bytes | dict,
    key: bytes | str | None = None,
    timestamp: int = 1795530601000,  # 2026-11-24T14:30:01Z, a second after the tests' sent_at
) -> dict[str, Any]:
    if isinstance(value, dict):
        value = json.dumps(value).encode()
    if isinstance(key, str):
        key = key.encode()
    rec = {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": timestamp,
        "timestampType": "CREATE_TIME",
        "value": base64.b64encode(value).decode(),
        "headers": [],
    }
    if key is not None:
        rec["key"] = base64.b64encode(key).decode()
    return rec


def msk_event(records: list[dict[str, Any]]) -> dict[str, Any]:
    grouped: dict[str, list] = {}
    for r in records:
        grouped.setdefault(f"{r['topic']}-{r['partition']}", []).append(r)
    return {
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/clearing/abc-1",
        "bootstrapServers": "b-1.clearing.example:9098",
        "records": grouped,
    }
