"""FixSession sequence-number logic over in-memory streams (no sockets)."""

from __future__ import annotations

import asyncio

import simplefix
from clearing_fix import messages as fix
from clearing_fix.session import FixSession, SessionApplication, SessionConfig
from clearing_fix.store import MemorySessionStore


class _Transport:
    def __init__(self, writer: FakeWriter) -> None:
        self.writer = writer

    def abort(self) -> None:
        self.writer.closed = True


class FakeWriter:
    def __init__(self) -> None:
        self.parser = simplefix.FixParser()
        self.sent: list[simplefix.FixMessage] = []
        self.closed = False
        self.transport = _Transport(self)

    def write(self, data: bytes) -> None:
        self.parser.append_buffer(data)
        while (msg := self.parser.get_message()) is not None:
            self.sent.append(msg)

    async def drain(self) -> None:
        return None

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        return None

    def types(self) -> list[bytes]:
        return [m.get(35) for m in self.sent]


class Recorder(SessionApplication):
    def __init__(self) -> None:
        self.messages: list[simplefix.FixMessage] = []

    async def on_message(self, session, msg):
        self.messages.append(msg)


def exchange_msg(msg: simplefix.FixMessage, seq: int, poss_dup: bool = False) -> bytes:
    msg.append_pair(49, "EXCHANGE", header=True)
    msg.append_pair(56, "CLEARHOUSE", header=True)
    msg.append_pair(34, seq, header=True)
    if poss_dup:
        msg.append_pair(43, "Y", header=True)
    msg.append_utc_timestamp(52, header=True)
    return msg.encode()


def execution(cl_ord_id: str) -> simplefix.FixMessage:
    report = fix.new_message(fix.EXECUTION_REPORT)
    report.append_pair(11, cl_ord_id)
    report.append_pair(150, "0")
    return report


async def drive(inbound: list[bytes], store=None, *, settle: float = 0.05, before=None):
    """Run an initiator session against scripted exchange bytes; return (session, writer, app)."""
    store = store or MemorySessionStore()
    app = Recorder()
    session = FixSession(
        SessionConfig("CLEARHOUSE", "EXCHANGE", heartbeat_interval=30), store, app, initiator=True
    )
    reader = asyncio.StreamReader()
    writer = FakeWriter()
    task = asyncio.create_task(session.run(reader, writer))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    if before is not None:
        before(session)
    for data in inbound:
        reader.feed_data(data)
        await asyncio.sleep(0.01)
    await asyncio.sleep(settle)
    state = session.state
    session.disconnect()
    await task
    return state, session, writer, app


def test_logon_then_in_order_messages_reach_the_application():
    state, session, writer, app = asyncio.run(
        drive(
            [
                exchange_msg(fix.logon(30), 1),
                exchange_msg(execution("A"), 2),
                exchange_msg(execution("B"), 3),
            ]
        )
    )

    assert writer.types()[0] == b"A"
    assert state == "LOGGED_ON"
    assert [m.get(11) for m in app.messages] == [b"A", b"B"]
    assert session.store.next_target_seq == 4


def test_gap_sends_one_resend_request_and_gap_fill_resumes():
    # Given the exchange skips 2..3, when 4 and 5 arrive, then one ResendRequest(2, 0) goes out and
    # nothing is delivered until the gap is filled; then the resent 4 and 5 come in order.
    state, session, writer, app = asyncio.run(
        drive(
            [
                exchange_msg(fix.logon(30), 1),
                exchange_msg(execution("D"), 4),
                exchange_msg(execution("E"), 5),
                exchange_msg(fix.sequence_reset_gap_fill(4), 2, poss_dup=True),
                exchange_msg(execution("D"), 4, poss_dup=True),
                exchange_msg(execution("E"), 5, poss_dup=True),
            ]
        )
    )

    resend_requests = [m for m in writer.sent if m.get(35) == fix.RESEND_REQUEST]
    assert len(resend_requests) == 1
    assert (resend_requests[0].get(7), resend_requests[0].get(16)) == (b"2", b"0")
    assert [m.get(11) for m in app.messages] == [b"D", b"E"]
    assert session.store.next_target_seq == 6


def test_resend_request_is_answered_with_possdup_copies_and_gap_fills():
    store = MemorySessionStore()

    async def scenario():
        app = Recorder()
        session = FixSession(SessionConfig("CLEARHOUSE", "EXCHANGE"), store, app, initiator=True)
        reader, writer = asyncio.StreamReader(), FakeWriter()
        task = asyncio.create_task(session.run(reader, writer))  # type: ignore[arg-type]
        reader.feed_data(exchange_msg(fix.logon(30), 1))
        await asyncio.sleep(0.02)
        order = fix.new_message(fix.NEW_ORDER_SINGLE)
        order.append_pair(11, "MBR01:C-1")
        first = session.send_application(order, "MBR01:C-1")  # seq 2
        session.send(fix.heartbeat())  # seq 3, admin: gap-filled on resend
        order = fix.new_message(fix.NEW_ORDER_SINGLE)
        order.append_pair(11, "MBR01:C-2")
        second = session.send_application(order, "MBR01:C-2")  # seq 4
        writer.sent.clear()
        reader.feed_data(exchange_msg(fix.resend_request(1, 0), 2))
        await asyncio.sleep(0.02)
        session.disconnect()
        await task
        return first, second, writer

    first, second, writer = asyncio.run(scenario())

    assert (first, second) == (2, 4)
    replay = [(m.get(35), m.get(34), m.get(43), m.get(36), m.get(11)) for m in writer.sent]
    assert replay == [
        (b"4", b"1", b"Y", b"2", None),  # our Logon: gap fill
        (b"D", b"2", b"Y", None, b"MBR01:C-1"),
        (b"4", b"3", b"Y", b"4", None),  # the heartbeat: gap fill
        (b"D", b"4", b"Y", None, b"MBR01:C-2"),
    ]
    assert all(m.get(122) is not None for m in writer.sent if m.get(35) == b"D")  # OrigSendingTime


def test_seqnum_too_low_without_possdup_logs_out():
    store = MemorySessionStore()
    store.set_next_target_seq(10)

    state, session, writer, app = asyncio.run(drive([exchange_msg(fix.logon(30), 3)], store))

    assert state == "DISCONNECTED"
    logout = writer.sent[-1]
    assert logout.get(35) == fix.LOGOUT
    assert b"expecting 10" in logout.get(58)


def test_possdup_below_expected_is_ignored():
    state, session, writer, app = asyncio.run(
        drive(
            [
                exchange_msg(fix.logon(30), 1),
                exchange_msg(execution("A"), 2),
                exchange_msg(execution("A"), 2, poss_dup=True),
            ]
        )
    )

    assert [m.get(11) for m in app.messages] == [b"A"]
    assert state == "LOGGED_ON"


def test_application_failure_leaves_the_message_to_be_resent():
    class Failing(Recorder):
        async def on_message(self, session, msg):
            raise ConnectionError("kafka down")

    async def scenario():
        store = MemorySessionStore()
        session = FixSession(SessionConfig("CLEARHOUSE", "EXCHANGE"), store, Failing(), initiator=True)
        reader, writer = asyncio.StreamReader(), FakeWriter()
        task = asyncio.create_task(session.run(reader, writer))  # type: ignore[arg-type]
        reader.feed_data(exchange_msg(fix.logon(30), 1) + exchange_msg(execution("A"), 2))
        await asyncio.wait_for(task, 2)
        return store

    assert asyncio.run(scenario()).next_target_seq == 2  # 2 not consumed: it will be asked for again


def test_test_request_is_answered_with_its_id():
    state, session, writer, app = asyncio.run(
        drive(
            [
                exchange_msg(fix.logon(30), 1),
                exchange_msg(fix.test_request("PING-1"), 2),
            ]
        )
    )

    heartbeat = writer.sent[-1]
    assert (heartbeat.get(35), heartbeat.get(112)) == (fix.HEARTBEAT, b"PING-1")


class Batching(Recorder):
    """Accepts messages without making them durable; `flush` makes them durable (or fails)."""

    def __init__(self, flush_fails: bool = False, refuse: bytes | None = None) -> None:
        super().__init__()
        self.flush_fails = flush_fails
        self.refuse = refuse
        self.flushes: list[int] = []  # how many messages each flush covered
        self._since_flush = 0

    async def on_message(self, session, msg):
        if self.refuse is not None and msg.get(11) == self.refuse:
            raise ConnectionError("cannot hand over")
        self.messages.append(msg)
        self._since_flush += 1

    async def flush(self, session):
        self.flushes.append(self._since_flush)
        self._since_flush = 0
        if self.flush_fails and len(self.flushes) > 1:  # the Logon's read flushes fine
            raise ConnectionError("kafka down at flush")


def _one_read(app, *payloads, store=None):
    async def scenario():
        session_store = store or MemorySessionStore()
        session = FixSession(SessionConfig("CLEARHOUSE", "EXCHANGE"), session_store, app, initiator=True)
        reader, writer = asyncio.StreamReader(), FakeWriter()
        task = asyncio.create_task(session.run(reader, writer))  # type: ignore[arg-type]
        reader.feed_data(exchange_msg(fix.logon(30), 1))
        await asyncio.sleep(0.05)
        reader.feed_data(b"".join(payloads))  # one socket read
        await asyncio.sleep(0.05)
        reader.feed_eof()
        await asyncio.wait_for(task, 2)
        return session_store

    return asyncio.run(scenario())


def test_one_flush_per_read_then_the_seq_moves_past_every_message():
    app = Batching()
    store = _one_read(app, *(exchange_msg(execution(c), s) for c, s in (("A", 2), ("B", 3), ("C", 4))))
    assert [m.get(11) for m in app.messages] == [b"A", b"B", b"C"]
    assert app.flushes[-1] == 3  # the three executions of the read went out together
    assert store.next_target_seq == 5


def test_a_failed_flush_leaves_the_whole_read_to_be_resent():
    app = Batching(flush_fails=True)
    store = _one_read(app, *(exchange_msg(execution(c), s) for c, s in (("A", 2), ("B", 3), ("C", 4))))
    assert store.next_target_seq == 2  # none of 2..4 counts as received: asked for again on reconnect


def test_a_refused_message_keeps_what_was_flushed_before_it():
    app = Batching(refuse=b"B")
    store = _one_read(app, *(exchange_msg(execution(c), s) for c, s in (("A", 2), ("B", 3), ("C", 4))))
    assert [m.get(11) for m in app.messages] == [b"A"]
    assert app.flushes[-1] == 1  # A was made durable before the session ended
    assert store.next_target_seq == 3  # B (and C after it) come again


def test_the_store_does_not_persist_a_held_seq(tmp_path):
    from clearing_fix.store import FileSessionStore

    store = FileSessionStore(tmp_path, "S-T", fsync=False)
    store.set_next_target_seq(7)
    store.hold_target_seq()
    store.set_next_target_seq(9)
    store.set_next_sender_seq(4)  # a send during the read rewrites the record: with the held target
    assert store.next_target_seq == 9
    assert FileSessionStore(tmp_path, "S-T", fsync=False).next_target_seq == 7  # what a crash now leaves
    store.release_target_seq(keep=True)
    assert FileSessionStore(tmp_path, "S-T", fsync=False).next_target_seq == 9
    store.hold_target_seq()
    store.set_next_target_seq(12)
    store.release_target_seq(keep=False)
    assert store.next_target_seq == 9
    assert FileSessionStore(tmp_path, "S-T", fsync=False).next_target_seq == 9
