"""A FIX 4.4 stock-exchange simulator (acceptor) for local runs and tests.

Behaviour: NewOrderSingle -> ExecutionReport New, then ExecutionReport Trade (fully filled at the
limit price, or 100.00 for a market order); OrderCancelRequest -> ExecutionReport Canceled;
OrderCancelReplaceRequest -> ExecutionReport Replaced; TradeCaptureReport -> TradeCaptureReportAck
(accepted). An application message whose ClOrdID / TradeReportID was already processed (a
PossDupFlag=Y resend) is not processed again.

Faults on demand, as method calls (tests) or over the control channel (one text command per line,
JSON answer per line): `drop`, `drop-next` (close the connection on the next application message
without processing it: the message is lost in transit), `skip N` (jump our MsgSeqNum by N),
`reject session|business|app [TEXT]` (refuse the next application message), `silence` / `resume`
(stop / restart heartbeats and TestRequest answers), `resend BEGIN [END]`, `status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from typing import Any

import simplefix
from clearing_fix import messages as fix
from clearing_fix.session import FixSession, SessionApplication, SessionConfig
from clearing_fix.store import MemorySessionStore, SessionStore

_log = logging.getLogger(__name__)
MARKET_FILL_PRICE = "100.00"


class _ExchangeMatching(SessionApplication):
    def __init__(self, simulator: ExchangeSimulator) -> None:
        self.sim = simulator

    async def on_message(self, session: FixSession, msg: simplefix.FixMessage) -> None:
        await self.sim._on_application_message(session, msg)


class ExchangeSimulator:
    def __init__(
        self,
        *,
        sender_comp_id: str = "EXCHANGE",
        target_comp_id: str = "CLEARHOUSE",
        password: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        control_port: int | None = None,
        heartbeat_interval: int = 30,
        store: SessionStore | None = None,
        logger: Any = None,
    ) -> None:
        self.log = logger or _log
        self.password = password
        self.config = SessionConfig(sender_comp_id, target_comp_id, heartbeat_interval=heartbeat_interval)
        self.store = store or MemorySessionStore()
        self.session = FixSession(
            self.config,
            self.store,
            _ExchangeMatching(self),
            initiator=False,
            validate_logon=self._validate_logon,
            logger=self.log,
        )
        self._addr = (host, port)
        self._control_addr = (host, control_port) if control_port is not None else None
        self.port = 0
        self.control_port = 0
        self._servers: list[asyncio.base_events.Server] = []
        self._connection_task: asyncio.Task[None] | None = None
        # What the exchange received, for assertions: every processed application message, and
        # per business id (ClOrdID / TradeReportID) how often it arrived.
        self.received: list[simplefix.FixMessage] = []
        self.received_ids: dict[str, int] = {}
        self.connections = 0
        self._ids = itertools.count(1)
        self._pending_rejects: list[tuple[str, str]] = []
        self._drop_next = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        server = await asyncio.start_server(self._accept, *self._addr)
        self._servers.append(server)
        self.port = server.sockets[0].getsockname()[1]
        if self._control_addr is not None:
            control = await asyncio.start_server(self._serve_control, *self._control_addr)
            self._servers.append(control)
            self.control_port = control.sockets[0].getsockname()[1]
        self.log.info(f"exchange simulator listening on {self._addr[0]}:{self.port}")

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        self.session.disconnect()
        if self._connection_task is not None:
            await asyncio.gather(self._connection_task, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # One counterparty: a new connection replaces the old one (as after a half-open socket).
        if self._connection_task is not None and not self._connection_task.done():
            self.session.disconnect()
            await asyncio.gather(self._connection_task, return_exceptions=True)
        self.connections += 1
        self._drop_next = False
        self._connection_task = asyncio.current_task()
        await self.session.run(reader, writer)

    def _validate_logon(self, msg: simplefix.FixMessage) -> str | None:
        if (
            msg.get(49) != self.config.target_comp_id.encode()
            or msg.get(56) != self.config.sender_comp_id.encode()
        ):
            return "unknown CompID pair"
        if self.password is not None and msg.get(554) != self.password.encode():
            return "bad password"
        return None

    @property
    def logged_on(self) -> bool:
        return self.session.logged_on

    # ------------------------------------------------------------------ faults

    def drop_connection(self) -> None:
        self.session.disconnect()

    def drop_on_next_message(self) -> None:
        self._drop_next = True

    def skip_sequence_numbers(self, count: int) -> None:
        self.session.skip_outgoing(count)

    def reject_next(self, how: str = "session", text: str = "rejected by simulator") -> None:
        if how not in ("session", "business", "app"):
            raise ValueError(f"unknown reject kind {how!r}")
        self._pending_rejects.append((how, text))

    def stop_heartbeats(self) -> None:
        self.session.heartbeats_enabled = False
        self.session.answer_test_requests = False

    def resume_heartbeats(self) -> None:
        self.session.heartbeats_enabled = True
        self.session.answer_test_requests = True

    def request_resend(self, begin: int, end: int = 0) -> None:
        self.session.send_resend_request(begin, end)

    def status(self) -> dict[str, Any]:
        return {
            "logged_on": self.logged_on,
            "connections": self.connections,
            "next_sender_seq": self.store.next_sender_seq,
            "next_target_seq": self.store.next_target_seq,
            "received": len(self.received),
            "stats": self.session.stats,
        }

    # ------------------------------------------------------------------ the exchange

    async def _on_application_message(self, session: FixSession, msg: simplefix.FixMessage) -> None:
        if self._drop_next:
            self._drop_next = False
            self.log.warning("fault: dropping the connection instead of processing the message")
            session.disconnect()
            raise ConnectionAbortedError("simulated loss in transit")
        msg_type = fix.msg_type_of(msg)
        if msg_type == fix.REJECT:
            return
        business_id = (msg.get(571) if msg_type == fix.TRADE_CAPTURE_REPORT else msg.get(11)) or b""
        key = business_id.decode("latin-1")
        if key in self.received_ids and msg.get(43) == b"Y":
            return  # resend of something we already have
        self.received.append(msg)
        self.received_ids[key] = self.received_ids.get(key, 0) + 1
        if self._pending_rejects:
            how, text = self._pending_rejects.pop(0)
            self._reject(session, msg, how, text)
            return
        if msg_type == fix.NEW_ORDER_SINGLE:
            self._fill_order(session, msg)
        elif msg_type == fix.ORDER_CANCEL_REQUEST:
            session.send(self._execution_report(msg, exec_type="4", ord_status="4", leaves=0, cum=0))
        elif msg_type == fix.ORDER_CANCEL_REPLACE_REQUEST:
            qty = int(msg.get(38) or 0)
            session.send(self._execution_report(msg, exec_type="5", ord_status="0", leaves=qty, cum=0))
        elif msg_type == fix.TRADE_CAPTURE_REPORT:
            session.send(self._trade_capture_ack(msg, accepted=True))
        else:
            session.send(
                fix.business_message_reject(
                    fix.seq_num_of(msg), msg_type, None, 3, "unsupported message type"
                )
            )

    def _fill_order(self, session: FixSession, order: simplefix.FixMessage) -> None:
        qty = int(order.get(38) or 0)
        price = (order.get(44) or MARKET_FILL_PRICE.encode()).decode()
        order_id = f"O-{next(self._ids)}"
        session.send(
            self._execution_report(order, exec_type="0", ord_status="0", leaves=qty, cum=0, order_id=order_id)
        )
        session.send(
            self._execution_report(
                order,
                exec_type="F",
                ord_status="2",
                leaves=0,
                cum=qty,
                order_id=order_id,
                last_qty=qty,
                last_px=price,
            )
        )

    def _execution_report(
        self,
        order: simplefix.FixMessage,
        *,
        exec_type: str,
        ord_status: str,
        leaves: int,
        cum: int,
        order_id: str | None = None,
        last_qty: int = 0,
        last_px: str | None = None,
        text: str | None = None,
    ) -> simplefix.FixMessage:
        report = fix.new_message(fix.EXECUTION_REPORT)
        report.append_pair(37, order_id or f"O-{next(self._ids)}")
        report.append_pair(11, order.get(11) or b"")
        if order.get(41):
            report.append_pair(41, order.get(41))
        report.append_pair(17, f"X-{next(self._ids)}")
        report.append_pair(150, exec_type)
        report.append_pair(39, ord_status)
        report.append_pair(55, order.get(55) or b"")
        report.append_pair(54, order.get(54) or b"1")
        report.append_pair(38, order.get(38) or b"0")
        if order.get(44):
            report.append_pair(44, order.get(44))
        report.append_pair(32, last_qty)
        report.append_pair(31, last_px or "0")
        report.append_pair(151, leaves)
        report.append_pair(14, cum)
        report.append_pair(6, last_px if cum else "0")
        report.append_utc_timestamp(60, precision=3)
        if exec_type == "8":
            report.append_pair(103, 99)
        if text:
            report.append_pair(58, text)
        return report

    def _trade_capture_ack(
        self, report: simplefix.FixMessage, *, accepted: bool, text: str | None = None
    ) -> simplefix.FixMessage:
        ack = fix.new_message(fix.TRADE_CAPTURE_REPORT_ACK)
        ack.append_pair(571, report.get(571) or b"")
        ack.append_pair(1003, f"XT-{next(self._ids)}")  # the exchange's own trade id
        ack.append_pair(487, "0")
        ack.append_pair(939, "0" if accepted else "1")
        if not accepted:
            ack.append_pair(751, 99)
        ack.append_pair(55, report.get(55) or b"")
        ack.append_pair(32, report.get(32) or b"0")
        ack.append_pair(31, report.get(31) or b"0")
        if text:
            ack.append_pair(58, text)
        return ack

    def _reject(self, session: FixSession, msg: simplefix.FixMessage, how: str, text: str) -> None:
        msg_type = fix.msg_type_of(msg)
        seq = fix.seq_num_of(msg)
        if how == "session":
            session.send(fix.session_reject(seq, msg_type, 99, text))
        elif how == "business":
            ref_id = (msg.get(571) or msg.get(11) or b"").decode("latin-1")
            session.send(fix.business_message_reject(seq, msg_type, ref_id, 0, text))
        elif msg_type == fix.TRADE_CAPTURE_REPORT:
            session.send(self._trade_capture_ack(msg, accepted=False, text=text))
        else:
            session.send(
                self._execution_report(msg, exec_type="8", ord_status="8", leaves=0, cum=0, text=text)
            )

    # ------------------------------------------------------------------ control channel

    def control(self, command: str) -> dict[str, Any]:
        """Run one control command (see module docstring)."""
        words = command.split()
        if not words:
            return {"ok": False, "error": "empty command"}
        verb, args = words[0].lower(), words[1:]
        try:
            if verb == "drop":
                self.drop_connection()
            elif verb == "drop-next":
                self.drop_on_next_message()
            elif verb == "skip":
                self.skip_sequence_numbers(int(args[0]) if args else 1)
            elif verb == "reject":
                self.reject_next(
                    args[0] if args else "session", " ".join(args[1:]) or "rejected by simulator"
                )
            elif verb == "silence":
                self.stop_heartbeats()
            elif verb == "resume":
                self.resume_heartbeats()
            elif verb == "resend":
                self.request_resend(int(args[0]), int(args[1]) if len(args) > 1 else 0)
            elif verb != "status":
                return {"ok": False, "error": f"unknown command {verb!r}"}
        except Exception as exc:  # a bad command must not kill the simulator
            return {"ok": False, "error": repr(exc)}
        return {"ok": True, **self.status()}

    async def _serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write((json.dumps(self.control(line.decode().strip()), default=str) + "\n").encode())
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


async def run_simulator(simulator: ExchangeSimulator) -> None:
    """Run until cancelled / SIGTERM (the CLI's `clearing exchange-sim`)."""
    import signal

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await simulator.start()
    await stop.wait()
    await simulator.stop()
