"""The FIX 4.4 session layer (ours; simplefix only encodes and parses).

One FixSession object lives as long as the logical session (it keeps its store across TCP
connections); `run(reader, writer)` drives one connection until it closes. The same class is the
proxy's initiator and the exchange simulator's acceptor.

What it does, per the FIX session protocol:
- Logon (initiator sends first; acceptor validates and answers), Logout both ways.
- Heartbeat after HeartBtInt seconds without sending; TestRequest after HeartBtInt (+20%) without
  receiving; the connection is dropped when the TestRequest goes unanswered for another HeartBtInt.
- MsgSeqNum checks: a gap sends one ResendRequest(expected, 0) and discards out-of-order messages
  until the gap is filled; a number below the expected one without PossDupFlag is fatal (Logout).
- Answers a ResendRequest from its store: application messages again with PossDupFlag=Y and
  OrigSendingTime, administrative ones (not stored) collapsed into SequenceReset-GapFill.
- Sequence numbers are persisted before a message is written (sender) and after an inbound
  message was processed by the application (target), so an application failure (e.g. Kafka down)
  leaves the message to be resent rather than lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import simplefix

from clearing_fix import messages as fix
from clearing_fix.store import SessionStore

_log = logging.getLogger(__name__)


class SessionState(StrEnum):
    DISCONNECTED = "DISCONNECTED"
    AWAITING_LOGON = "AWAITING_LOGON"  # initiator: Logon sent; acceptor: waiting for the peer's
    LOGGED_ON = "LOGGED_ON"
    LOGOUT_SENT = "LOGOUT_SENT"


class SessionNotLoggedOn(Exception):
    """An application message was offered while no session is logged on."""


class SessionTerminated(Exception):
    """The connection must end (protocol violation, heartbeat timeout, logout)."""


@dataclass(frozen=True)
class SessionConfig:
    sender_comp_id: str
    target_comp_id: str
    heartbeat_interval: int = 30
    username: str | None = None
    password: str | None = None
    logon_timeout: float = 10.0
    logout_timeout: float = 2.0
    test_request_factor: float = 1.2  # silence tolerated before a TestRequest, in HeartBtInts

    @property
    def session_id(self) -> str:
        return f"{self.sender_comp_id}-{self.target_comp_id}"


class SessionApplication:
    """Callbacks of the layer above the session. Defaults do nothing."""

    async def on_logon(self, session: FixSession) -> None:
        return None

    async def on_message(self, session: FixSession, msg: simplefix.FixMessage) -> None:
        """In-order application message, or a session-level Reject (35=3). Raise to refuse it.
        May return before the message's effect is durable: see `flush`."""
        return None

    async def flush(self, session: FixSession) -> None:
        """Make every message `on_message` accepted so far durable; raise if that fails. Called once
        per socket read, before the inbound sequence numbers of that read are persisted."""
        return None

    async def on_disconnect(self, session: FixSession) -> None:
        return None


LogonValidator = Callable[[simplefix.FixMessage], str | None]  # returns a refusal text or None


class FixSession:
    def __init__(
        self,
        config: SessionConfig,
        store: SessionStore,
        application: SessionApplication | None = None,
        *,
        initiator: bool,
        validate_logon: LogonValidator | None = None,
        logger: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.store = store
        self.application = application or SessionApplication()
        self.initiator = initiator
        self._validate_logon = validate_logon
        self.log = logger or _log
        self._clock = clock
        self.state = SessionState.DISCONNECTED
        self.heartbeat_interval = config.heartbeat_interval
        self._writer: asyncio.StreamWriter | None = None
        self._closed = asyncio.Event()
        self._closed.set()
        self._last_sent = 0.0
        self._last_received = 0.0
        self._connected_at = 0.0
        self._pending_test_request: tuple[str, float] | None = None
        self._test_request_counter = 0
        self._resend_requested_through: int | None = None  # highest seq seen when we asked for a resend
        # Hooks the exchange simulator uses to inject faults; a real session leaves them alone.
        self.heartbeats_enabled = True
        self.answer_test_requests = True
        # Counters for tests, health and logs.
        self.stats: dict[str, int] = {
            "logons": 0,
            "heartbeats_sent": 0,
            "test_requests_sent": 0,
            "resend_requests_sent": 0,
            "resend_requests_received": 0,
            "messages_resent": 0,
            "gap_fills_sent": 0,
            "gap_fills_received": 0,
            "rejects_received": 0,
            "heartbeat_timeouts": 0,
        }
        self.sent_log: list[bytes] = []  # MsgTypes written, newest last (bounded)
        self.received_log: list[bytes] = []

    # ------------------------------------------------------------------ public API

    @property
    def logged_on(self) -> bool:
        return self.state == SessionState.LOGGED_ON

    async def run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Drive one TCP connection until it ends; never raises for connection-level trouble."""
        self._writer = writer
        self._closed = asyncio.Event()
        self._connected_at = self._last_sent = self._last_received = self._clock()
        self._pending_test_request = None
        self._resend_requested_through = None
        self.state = SessionState.AWAITING_LOGON
        if self.initiator:
            self._send(fix.logon(self.heartbeat_interval, self.config.username, self.config.password))
        reading = asyncio.create_task(self._read_loop(reader), name="fix-read")
        timing = asyncio.create_task(self._timer_loop(), name="fix-timer")
        closing = asyncio.create_task(self._closed.wait(), name="fix-closed")
        try:
            done, _ = await asyncio.wait({reading, timing, closing}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not closing and not task.cancelled() and task.exception() is not None:
                    exc = task.exception()
                    if isinstance(exc, SessionTerminated):
                        self.log.info(f"FIX connection ended: {exc}")
                    else:
                        self.log.warning(f"FIX connection ended: {exc!r}")
        finally:
            for task in (reading, timing, closing):
                task.cancel()
            await asyncio.gather(reading, timing, closing, return_exceptions=True)
            self.state = SessionState.DISCONNECTED
            self._closed.set()
            self._writer = None
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            with contextlib.suppress(Exception):
                await self.application.on_disconnect(self)

    def send_application(self, msg: simplefix.FixMessage, request_id: str | None = None) -> int:
        """Persist then write one application message; returns its MsgSeqNum.

        Synchronous on purpose: no other coroutine can interleave between taking the sequence
        number, journaling the message and writing it (call `drain()` afterwards).
        """
        if not self.logged_on:
            raise SessionNotLoggedOn(f"session {self.config.session_id} is {self.state}")
        return self._send(msg, request_id=request_id, store=True)

    async def drain(self) -> None:
        writer = self._writer
        if writer is not None:
            with contextlib.suppress(ConnectionError):
                await writer.drain()

    async def logout(self, text: str | None = None) -> None:
        """Send Logout, wait (bounded) for the peer's Logout, then close the connection."""
        if self.state not in (SessionState.LOGGED_ON, SessionState.AWAITING_LOGON) or self._writer is None:
            return
        self._send(fix.logout(text))
        self.state = SessionState.LOGOUT_SENT
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._closed.wait(), self.config.logout_timeout)
        self.disconnect()

    def disconnect(self) -> None:
        """Drop the connection now (no Logout)."""
        writer = self._writer
        if writer is not None:
            writer.transport.abort()
        self._closed.set()

    def send_resend_request(self, begin: int, end: int = 0) -> None:
        self.stats["resend_requests_sent"] += 1
        self._send(fix.resend_request(begin, end))

    def skip_outgoing(self, count: int) -> None:
        """Advance our MsgSeqNum without sending (simulates lost messages; the peer must ask for them)."""
        self.store.set_next_sender_seq(self.store.next_sender_seq + count)

    def send(self, msg: simplefix.FixMessage) -> int:
        """Write any message now; application messages are stored so a ResendRequest can replay them."""
        return self._send(msg, store=fix.msg_type_of(msg) not in fix.ADMIN_MSG_TYPES)

    # ------------------------------------------------------------------ sending

    def _send(self, msg: simplefix.FixMessage, *, request_id: str | None = None, store: bool = False) -> int:
        writer = self._writer
        if writer is None or writer.is_closing():
            raise SessionNotLoggedOn("no connection")
        seq = self.store.next_sender_seq
        self._stamp_header(msg, seq)
        raw = msg.encode()
        if store:
            self.store.save_outgoing(seq, raw, request_id)
        self.store.set_next_sender_seq(seq + 1)
        self._write(raw, fix.msg_type_of(msg))
        return seq

    def _write(self, raw: bytes, msg_type: bytes) -> None:
        assert self._writer is not None
        self._writer.write(raw)
        self._last_sent = self._clock()
        self.sent_log.append(msg_type)
        if len(self.sent_log) > 2000:
            del self.sent_log[:1000]

    def _stamp_header(
        self,
        msg: simplefix.FixMessage,
        seq: int,
        *,
        poss_dup: bool = False,
        orig_sending_time: bytes | None = None,
    ) -> None:
        msg.append_pair(49, self.config.sender_comp_id, header=True)
        msg.append_pair(56, self.config.target_comp_id, header=True)
        msg.append_pair(34, seq, header=True)
        if poss_dup:
            msg.append_pair(43, "Y", header=True)
        msg.append_utc_timestamp(52, precision=3, header=True)
        if orig_sending_time is not None:
            msg.append_pair(122, orig_sending_time, header=True)

    def _resend_copy(self, raw: bytes) -> bytes:
        """Stored message re-encoded with PossDupFlag=Y, its original SendingTime as OrigSendingTime."""
        parser = simplefix.FixParser()
        parser.append_buffer(raw)
        original = parser.get_message()
        assert original is not None
        copy = fix.new_message(fix.msg_type_of(original))
        self._stamp_header(copy, fix.seq_num_of(original), poss_dup=True, orig_sending_time=original.get(52))
        for tag, value in original.pairs:
            if int(tag) not in fix.HEADER_TAGS:
                copy.append_pair(int(tag), value)
        return copy.encode()

    def _gap_fill(self, seq: int, new_seq_no: int) -> None:
        msg = fix.sequence_reset_gap_fill(new_seq_no)
        self._stamp_header(msg, seq, poss_dup=True)
        self.stats["gap_fills_sent"] += 1
        self._write(msg.encode(), fix.SEQUENCE_RESET)

    def _answer_resend_request(self, begin: int, end: int) -> None:
        last = self.store.next_sender_seq - 1
        end = last if end == 0 or end > last else end
        self.stats["resend_requests_received"] += 1
        self.log.info(f"resending {begin}..{end}")
        expected = begin
        for seq, raw in self.store.outgoing_between(begin, end):
            if seq > expected:
                self._gap_fill(expected, seq)
            self._write(self._resend_copy(raw), b"resend")
            self.stats["messages_resent"] += 1
            expected = seq + 1
        if expected <= end:
            self._gap_fill(expected, end + 1)

    # ------------------------------------------------------------------ receiving

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        parser = simplefix.FixParser()
        while True:
            data = await reader.read(65536)
            if not data:
                raise SessionTerminated("peer closed the connection")
            parser.append_buffer(data)
            # The inbound seq number is persisted once per read, after the application made that
            # read's messages durable; if it cannot, the read counts as not received and its messages
            # are asked for again after the reconnect (at-least-once, as before batching).
            self.store.hold_target_seq()
            durable = False
            try:
                try:
                    while (msg := parser.get_message()) is not None:
                        await self._on_message(msg)
                finally:
                    await self.application.flush(self)
                    durable = True
            finally:
                self.store.release_target_seq(keep=durable)
            if self._writer is not None:
                await self._writer.drain()

    async def _on_message(self, msg: simplefix.FixMessage) -> None:
        self._last_received = self._clock()
        self._pending_test_request = None  # any inbound traffic proves the peer alive
        msg_type = fix.msg_type_of(msg)
        seq = fix.seq_num_of(msg)
        self.received_log.append(msg_type)
        if len(self.received_log) > 2000:
            del self.received_log[:1000]
        expected = self.store.next_target_seq
        poss_dup = msg.get(43) == b"Y"

        if self.state == SessionState.AWAITING_LOGON:
            if msg_type != fix.LOGON:
                raise SessionTerminated(f"expected Logon, got {msg_type!r}")
            await self._on_logon(msg, seq, expected)
            return

        if msg_type == fix.SEQUENCE_RESET and msg.get(123) != b"Y":
            # SequenceReset-Reset: sets the expected number whatever MsgSeqNum says.
            self.store.set_next_target_seq(int(msg.get(36) or expected))
            return
        if seq < expected:
            if poss_dup:
                return  # already processed
            text = f"MsgSeqNum too low, expecting {expected} but received {seq}"
            self._send_logout_and_end(text)
        if seq > expected:
            if msg_type == fix.RESEND_REQUEST:
                self._answer_resend_request(int(msg.get(7) or 1), int(msg.get(16) or 0))
            if msg_type == fix.LOGOUT:
                raise SessionTerminated("peer logged out")
            self._request_resend_for_gap(expected, seq)
            return

        # seq == expected: in order.
        if msg_type == fix.SEQUENCE_RESET:  # GapFill
            new_seq = int(msg.get(36) or seq + 1)
            self.stats["gap_fills_received"] += 1
            self.store.set_next_target_seq(max(new_seq, seq + 1))
            self._maybe_resend_complete()
            return
        if msg_type == fix.HEARTBEAT:
            pass
        elif msg_type == fix.TEST_REQUEST:
            if self.answer_test_requests:
                self._send(fix.heartbeat(msg.get(112)))
        elif msg_type == fix.RESEND_REQUEST:
            self._answer_resend_request(int(msg.get(7) or 1), int(msg.get(16) or 0))
        elif msg_type == fix.LOGOUT:
            self.store.set_next_target_seq(seq + 1)
            if self.state != SessionState.LOGOUT_SENT:
                self._send(fix.logout())
            raise SessionTerminated(f"logout: {(msg.get(58) or b'').decode('latin-1')}")
        elif msg_type == fix.LOGON:
            pass  # a second Logon on a live session: ignored
        else:
            if msg_type == fix.REJECT:
                self.stats["rejects_received"] += 1
            # The application may raise (e.g. cannot publish): the target seq then stays put and
            # the message comes again after the reconnect's ResendRequest.
            await self.application.on_message(self, msg)
        self.store.set_next_target_seq(seq + 1)
        self._maybe_resend_complete()

    async def _on_logon(self, msg: simplefix.FixMessage, seq: int, expected: int) -> None:
        if not self.initiator:
            refusal = self._validate_logon(msg) if self._validate_logon else None
            if refusal:
                self.log.warning(f"Logon refused: {refusal}")
                self._send_logout_and_end(refusal)
            self.heartbeat_interval = int(msg.get(108) or self.config.heartbeat_interval)
        if seq < expected and msg.get(141) != b"Y":
            self._send_logout_and_end(f"MsgSeqNum too low, expecting {expected} but received {seq}")
        if not self.initiator:
            self._send(fix.logon(self.heartbeat_interval))
        self.state = SessionState.LOGGED_ON
        self.stats["logons"] += 1
        if seq > expected:
            self._request_resend_for_gap(expected, seq)
        else:
            self.store.set_next_target_seq(seq + 1)
        self.log.info(
            f"FIX session {self.config.session_id} logged on "
            f"(next out {self.store.next_sender_seq}, next in {self.store.next_target_seq})"
        )
        await self.application.on_logon(self)

    def _request_resend_for_gap(self, expected: int, received: int) -> None:
        if self._resend_requested_through is not None and expected <= self._resend_requested_through:
            return  # one ResendRequest per gap; later messages are covered by its open end
        self._resend_requested_through = received
        self.log.warning(f"sequence gap: expected {expected}, received {received}; ResendRequest sent")
        self.send_resend_request(expected, 0)

    def _maybe_resend_complete(self) -> None:
        if (
            self._resend_requested_through is not None
            and self.store.next_target_seq > self._resend_requested_through
        ):
            self._resend_requested_through = None

    def _send_logout_and_end(self, text: str) -> None:
        with contextlib.suppress(Exception):
            self._send(fix.logout(text))
        raise SessionTerminated(text)

    # ------------------------------------------------------------------ timers

    async def _timer_loop(self) -> None:
        tick = min(0.1, self.config.heartbeat_interval / 10)
        while True:
            await asyncio.sleep(tick)
            now = self._clock()
            if self.state == SessionState.AWAITING_LOGON:
                if now - self._connected_at > self.config.logon_timeout:
                    raise SessionTerminated("no Logon answer in time")
                continue
            if self.state != SessionState.LOGGED_ON:
                continue
            interval = self.heartbeat_interval
            if self.heartbeats_enabled and now - self._last_sent >= interval:
                self.stats["heartbeats_sent"] += 1
                self._send(fix.heartbeat())
            pending = self._pending_test_request
            if pending is not None:
                if now - pending[1] >= interval:
                    self.stats["heartbeat_timeouts"] += 1
                    raise SessionTerminated(f"TestRequest {pending[0]} unanswered: heartbeat timeout")
            elif (
                self.heartbeats_enabled
                and now - self._last_received >= interval * self.config.test_request_factor
            ):
                self._test_request_counter += 1
                test_req_id = f"TEST-{self._test_request_counter}"
                self.stats["test_requests_sent"] += 1
                self._send(fix.test_request(test_req_id))
                self._pending_test_request = (test_req_id, now)
            if self._writer is not None:
                await self._writer.drain()
