"""Persistent state of one FIX session: sequence numbers, sent application messages, request ids.

What survives a proxy restart is what makes "nothing lost, nothing sent twice" hold:
- next sender / next target MsgSeqNum, so the session continues instead of starting at 1;
- every application message we sent, by MsgSeqNum, so a ResendRequest can be answered with
  PossDupFlag=Y copies (administrative messages are not kept: they are gap-filled);
- the gateway request id (TradeReportID / ClOrdID) of each sent message, so a retried request is
  answered DUPLICATE instead of being sent again.

FileSessionStore keeps one directory per session (`<dir>/<Sender>-<Target>/`): `seqnums` (one
fixed-size checksummed record rewritten in place) and `outgoing.jsonl` (append-only journal, written before the message goes
on the wire). In production the directory sits on a persistent volume (EFS) so a replaced task
continues the session.
"""

from __future__ import annotations

import bisect
import json
import os
import zlib
from pathlib import Path
from typing import Protocol


class SessionStore(Protocol):
    @property
    def next_sender_seq(self) -> int: ...

    @property
    def next_target_seq(self) -> int: ...

    def set_next_sender_seq(self, seq: int) -> None: ...

    def set_next_target_seq(self, seq: int) -> None: ...

    def hold_target_seq(self) -> None: ...  # until release: set_next_target_seq is not persisted

    def release_target_seq(self, keep: bool) -> None: ...  # keep: persist it; else back to the held one

    def save_outgoing(self, seq: int, raw: bytes, request_id: str | None = None) -> None: ...

    def get_outgoing(self, seq: int) -> bytes | None: ...

    def outgoing_between(self, begin: int, end: int) -> list[tuple[int, bytes]]: ...

    def seq_for_request(self, request_id: str) -> int | None: ...

    def request_for_seq(self, seq: int) -> str | None: ...


class MemorySessionStore:
    """In-memory store: the exchange simulator's side and unit tests."""

    def __init__(self) -> None:
        self._next_sender = 1
        self._next_target = 1
        self._outgoing: dict[int, bytes] = {}
        self._seqs: list[int] = []
        self._by_request: dict[str, int] = {}
        self._by_seq: dict[int, str] = {}
        self._held_target: int | None = None  # the persisted inbound seq while a read is in progress

    @property
    def next_sender_seq(self) -> int:
        return self._next_sender

    @property
    def next_target_seq(self) -> int:
        return self._next_target

    def set_next_sender_seq(self, seq: int) -> None:
        self._next_sender = seq

    def set_next_target_seq(self, seq: int) -> None:
        self._next_target = seq

    def hold_target_seq(self) -> None:
        self._held_target = self._next_target

    def release_target_seq(self, keep: bool) -> None:
        if self._held_target is not None and not keep:
            self._next_target = self._held_target
        self._held_target = None
        self._write_seqnums()

    def _write_seqnums(self) -> None:
        return None

    def save_outgoing(self, seq: int, raw: bytes, request_id: str | None = None) -> None:
        self._remember(seq, raw, request_id)

    def _remember(self, seq: int, raw: bytes, request_id: str | None) -> None:
        if seq not in self._outgoing:
            bisect.insort(self._seqs, seq)
        self._outgoing[seq] = raw
        if request_id:
            self._by_request[request_id] = seq
            self._by_seq[seq] = request_id

    def get_outgoing(self, seq: int) -> bytes | None:
        return self._outgoing.get(seq)

    def outgoing_between(self, begin: int, end: int) -> list[tuple[int, bytes]]:
        lo = bisect.bisect_left(self._seqs, begin)
        hi = bisect.bisect_right(self._seqs, end)
        return [(seq, self._outgoing[seq]) for seq in self._seqs[lo:hi]]

    def seq_for_request(self, request_id: str) -> int | None:
        return self._by_request.get(request_id)

    def request_for_seq(self, seq: int) -> str | None:
        return self._by_seq.get(seq)


class FileSessionStore(MemorySessionStore):
    """The proxy's store: memory for reads, files for durability (see module docstring)."""

    def __init__(self, directory: str | os.PathLike[str], session_id: str, *, fsync: bool = True) -> None:
        super().__init__()
        self.path = Path(directory) / session_id
        self.path.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._seqnums_file = self.path / "seqnums"
        self._journal_file = self.path / "outgoing.jsonl"
        self._load()
        self._journal = open(self._journal_file, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        self._seqnums_fd = os.open(self._seqnums_file, os.O_RDWR | os.O_CREAT, 0o600)
        self._write_seqnums()

    def _load(self) -> None:
        if self._seqnums_file.exists():
            saved = _parse_seqnums(self._seqnums_file.read_bytes())
            if saved is not None:
                self._next_sender, self._next_target = saved
        if self._journal_file.exists():
            with open(self._journal_file, encoding="utf-8") as journal:
                for line in journal:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        break  # torn last line from a crash mid-write: that message was never sent
                    self._remember(int(entry["seq"]), entry["raw"].encode("latin-1"), entry.get("request_id"))
        # A message journaled but crashed before the seqnums record caught up still used its number.
        if self._seqs:
            self._next_sender = max(self._next_sender, self._seqs[-1] + 1)

    def _write_seqnums(self) -> None:
        # One fixed-size record rewritten in place: a single small pwrite (within one disk sector)
        # instead of write-temp-and-rename, which costs milliseconds on overlay/network filesystems.
        target = self._next_target if self._held_target is None else self._held_target
        os.pwrite(self._seqnums_fd, _format_seqnums(self._next_sender, target), 0)
        if self._fsync:
            os.fsync(self._seqnums_fd)

    def set_next_sender_seq(self, seq: int) -> None:
        self._next_sender = seq
        self._write_seqnums()

    def set_next_target_seq(self, seq: int) -> None:
        self._next_target = seq
        if self._held_target is None:
            self._write_seqnums()

    def save_outgoing(self, seq: int, raw: bytes, request_id: str | None = None) -> None:
        entry = {"seq": seq, "request_id": request_id, "raw": raw.decode("latin-1")}
        self._journal.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self._journal.flush()
        if self._fsync:
            os.fsync(self._journal.fileno())
        self._remember(seq, raw, request_id)

    def close(self) -> None:
        self._journal.close()
        os.close(self._seqnums_fd)


def _format_seqnums(sender: int, target: int) -> bytes:
    body = f"{sender:020d} {target:020d}"
    return f"{body} {zlib.crc32(body.encode()):010d}\n".encode()


def _parse_seqnums(data: bytes) -> tuple[int, int] | None:
    """(next sender, next target) or None for a torn/corrupt record (then the journal decides)."""
    try:
        sender, target, crc = data.decode().split()
        if zlib.crc32(f"{sender} {target}".encode()) != int(crc):
            return None
        return int(sender), int(target)
    except (UnicodeDecodeError, ValueError):
        return None
