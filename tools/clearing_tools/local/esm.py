"""Local event-source mappings: what Lambda's MSK pollers do, for template.yaml's Kafka events.

One mapping per Kafka event of a function (Topics, BatchSize, MaximumBatchingWindowInSeconds,
StartingPosition, ConsumerGroupId, MaximumRetryAttempts, BisectBatchOnFunctionError,
FunctionResponseTypes, DestinationConfig.OnFailure). A supervisor process runs one worker process per
mapping (or per group of `partitions_per_worker` partitions) and restarts a worker that dies; the
restarted worker resumes from the committed offset.

A worker assigns its partitions (no group join), polls up to BatchSize records, waits at most the local
batching window to fill a batch, and invokes the handler in-process with Lambda's MSK event, one
invocation per partition batch, partitions in turn. Offsets are committed for the ConsumerGroupId only
after the batch is done:
- success: commit after the batch;
- ReportBatchItemFailures: commit up to the lowest failed offset, retry from it (Lambda's Kafka semantics);
- function error: bisect (if enabled) and retry, up to MaximumRetryAttempts (template value, else the
  local default; Lambda's own default is -1 = retry until the record expires);
- exhausted: the batch goes to the on-failure destination (JSON Lines file in <state>/onfailure/ and the
  `esm.onfailure` topic), then the offset moves past it.
Each worker writes its counters to <state>/esm/state/<worker>.json once a second.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clearing_tools.local.config import RuntimeConfig
from clearing_tools.local.processes import pid_alive, read_pid, stop_pid, write_json_atomic

log = logging.getLogger("clearing_tools.local.esm")


# ----------------------------------------------------------------------------- mapping specs


@dataclass
class MappingSpec:
    """One Kafka event-source mapping of one function, with local values filled in."""

    mapping_id: str  # <FunctionLogicalId>.<EventName>
    function_id: str
    topics: list[str]
    batch_size: int
    batching_window_s: float
    starting_position: str  # TRIM_HORIZON | LATEST
    group_id: str
    max_retry_attempts: int  # -1 = forever
    bisect_on_error: bool
    report_item_failures: bool
    onfailure_destination: str | None
    event_source_arn: str


@dataclass
class WorkerSpec:
    worker_id: str
    mapping: MappingSpec
    partitions: list[tuple[str, int]]


def mapping_specs(config: RuntimeConfig) -> list[MappingSpec]:
    """The mappings of the functions to run (config.functions, or every function with Kafka events)."""
    from clearing_tools.local.invoke import load_functions

    specs = []
    for fn in load_functions(config).values():
        if config.functions and fn.logical_id not in config.functions and fn.name not in config.functions:
            continue
        for ev in fn.kafka_events:
            if not ev.enabled:
                continue
            window = ev.maximum_batching_window_in_seconds
            window_s = (
                config.batching_window_cap_s if window is None else min(window, config.batching_window_cap_s)
            )
            on_failure = ((ev.destination_config or {}).get("OnFailure") or {}).get("Destination")
            retries = ev.maximum_retry_attempts
            specs.append(
                MappingSpec(
                    mapping_id=f"{fn.logical_id}.{ev.name}",
                    function_id=fn.logical_id,
                    topics=list(ev.topics),
                    batch_size=int(ev.batch_size or 100),
                    batching_window_s=float(window_s),
                    starting_position=(ev.starting_position or "TRIM_HORIZON").upper(),
                    group_id=ev.consumer_group_id or f"{fn.logical_id}-{ev.name}",
                    max_retry_attempts=config.default_max_retry_attempts if retries is None else int(retries),
                    bisect_on_error=ev.bisect_batch_on_function_error,
                    report_item_failures=ev.reports_batch_item_failures,
                    onfailure_destination=on_failure
                    if isinstance(on_failure, str)
                    else json.dumps(on_failure),
                    event_source_arn=ev.stream
                    if isinstance(ev.stream, str)
                    else "arn:aws:kafka:local:cluster/local",
                )
            )
    return specs


def worker_specs(config: RuntimeConfig, partitions_of: dict[str, int]) -> list[WorkerSpec]:
    """Split each mapping's partitions over workers (all in one unless partitions_per_worker is set)."""
    workers = []
    for mapping in mapping_specs(config):
        tps = [(t, p) for t in mapping.topics for p in range(partitions_of.get(t, config.partitions_for(t)))]
        size = config.partitions_per_worker or len(tps) or 1
        for k, start in enumerate(range(0, max(len(tps), 1), size)):
            workers.append(WorkerSpec(f"{mapping.mapping_id}.w{k}", mapping, tps[start : start + size]))
    return workers


def _paths(config: RuntimeConfig) -> dict[str, Path]:
    root = config.state_path
    return {
        "specs": root / "esm" / "specs",
        "state": root / "esm" / "state",
        "logs": root / "logs",
        "pids": root / "pids",
        "onfailure": root / "onfailure",
    }


# ----------------------------------------------------------------------------- worker


@dataclass
class WorkerStats:
    worker_id: str
    mapping_id: str
    function_id: str
    group_id: str
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)
    updated_at: float = 0.0
    records_polled: int = 0
    records_done: int = 0  # committed after success or after going to the on-failure destination
    invocations: int = 0
    function_errors: int = 0
    partial_failures: int = 0
    duplicate_deliveries: int = 0  # extra deliveries of the same payload (RuntimeConfig.duplicate_delivery)
    retries: int = 0
    bisections: int = 0
    onfailure_batches: int = 0
    onfailure_records: int = 0
    in_flight: bool = False
    last_invocation_ms: float = 0.0
    invocation_ms_total: float = 0.0  # wall time inside the handler, summed (mean = total / invocations)
    committed: dict[str, int] = field(default_factory=dict)  # "topic-N" -> next offset
    failed: str | None = None  # set: the mapping stopped for good (state lost); status shows it
    blocked: str | None = None  # set: waiting for a component that does not answer
    positions: dict[str, int] = field(default_factory=dict)  # "topic-N" -> next offset fetched
    idle_since: float | None = None


class MappingFailed(Exception):
    """The broker or store lost this mapping's state: stop loudly, never seek or commit around it."""


WORLD_CHECK_INTERVAL_S = 5.0  # broker marker, store sentinel and log ends checked this often


class _ConnectionTrouble(logging.Handler):
    """Notes any warning of kafka-python (a dropped or refused connection, a metadata error): the next
    invocation is preceded by a world check, so a broker restarted in between is seen before a batch
    of its new log is processed, not up to WORLD_CHECK_INTERVAL_S later."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = False

    def emit(self, record: logging.LogRecord) -> None:  # noqa: ARG002
        self.seen = True


@dataclass
class Outcome:
    ok: bool
    failed_offsets: dict[str, int] | None = None  # ReportBatchItemFailures: "topic-N" -> lowest failed offset
    error_type: str | None = None
    error_message: str | None = None


class MappingWorker:
    """Polls a mapping's partitions and invokes the handler like Lambda's poller does."""

    def __init__(self, config: RuntimeConfig, spec: WorkerSpec, handler=None):
        from kafka import KafkaConsumer, TopicPartition

        self.config = config
        self.spec = spec
        self.mapping = spec.mapping
        self.paths = _paths(config)
        self.stats = WorkerStats(
            spec.worker_id, self.mapping.mapping_id, self.mapping.function_id, self.mapping.group_id
        )
        self.stop_requested = False
        self._last_state_write = 0.0
        self._producer = None
        if handler is None:
            from clearing_tools.local.invoke import LocalFunction, find_function

            self.function = LocalFunction(config, find_function(config, self.mapping.function_id))
        else:
            self.function = handler
        self.tps = [TopicPartition(t, p) for t, p in spec.partitions]
        self.consumer = KafkaConsumer(
            bootstrap_servers=config.bootstrap_servers,
            group_id=self.mapping.group_id,
            enable_auto_commit=False,
            auto_offset_reset="latest" if self.mapping.starting_position == "LATEST" else "earliest",
            fetch_max_wait_ms=max(10, config.fetch_max_wait_ms),
            max_poll_records=self.mapping.batch_size,
            client_id=f"esm-{spec.worker_id}",
        )
        self.consumer.assign(self.tps)
        from clearing_tools.local.identity import read_identity

        self.identity = read_identity(config)  # None: no run recorded (tests' own brokers): no marker check
        self._trouble = _ConnectionTrouble()
        logging.getLogger("kafka").addHandler(self._trouble)
        self._marker_reader = None
        self._dynamodb = None
        self._next_world_check = 0.0
        self.next_offset: dict[Any, int] = {}  # what the next fetched record of a partition must be
        self.buffers: dict[Any, deque] = {tp: deque() for tp in self.tps}
        self._first_served = 0  # take_batch's rotating start
        try:
            self.check_world(force=True)  # before touching offsets: never commit into a reset broker
            self._seek_to_start()
        except MappingFailed as exc:
            self.fail(str(exc))

    # ------------------------------------------------------------ offsets
    def _seek_to_start(self) -> None:
        from clearing_tools.local.broker import probe_consumer, true_end_offsets

        uncommitted = []
        for tp in self.tps:
            committed = self.consumer.committed(tp)
            if committed is None:
                uncommitted.append(tp)
            else:
                self.consumer.seek(tp, committed)
                self.stats.committed[self._key(tp)] = committed
                self.next_offset[tp] = committed
        if not uncommitted:
            return
        if self.mapping.starting_position == "LATEST":
            probe = probe_consumer(self.config.bootstrap_servers)
            try:
                ends = true_end_offsets(probe, uncommitted)
            finally:
                probe.close()
            for tp in uncommitted:
                self.consumer.seek(tp, ends[tp])
                self._commit(tp, ends[tp])  # LATEST is fixed at the mapping's creation, as in Lambda
                self.next_offset[tp] = ends[tp]
        else:
            self.consumer.seek_to_beginning(*uncommitted)
            for tp in uncommitted:
                self.next_offset[tp] = self.consumer.position(tp)

    @staticmethod
    def _key(tp) -> str:
        return f"{tp.topic}-{tp.partition}"

    def _commit(self, tp, next_offset: int) -> None:
        from kafka.structs import OffsetAndMetadata

        self.consumer.commit({tp: OffsetAndMetadata(next_offset, "", -1)})
        self.stats.committed[self._key(tp)] = next_offset

    # ------------------------------------------------------------ loop
    def run(self) -> None:
        parent = os.getppid()
        while not self.stop_requested:
            if os.getppid() != parent:  # supervisor gone: do not linger as an orphan
                log.warning("supervisor exited; worker %s stops", self.spec.worker_id)
                break
            if (
                self.stats.failed
            ):  # stays up, idle, so that status shows why (the supervisor would restart it)
                self._sleep(1.0)
                continue
            try:
                self.check_world()
                self.poll_batches()
                batch = self.take_batch()
                if batch:
                    self.deliver_together(batch)
            except MappingFailed as exc:
                self.fail(str(exc))
                continue
            self.write_state(force=bool(batch))
        self.write_state(force=True)
        self.consumer.close()
        if self._marker_reader is not None:
            self._marker_reader.close()
        if self._producer is not None:
            self._producer.close(timeout=5)

    def poll_batches(self) -> None:
        """Fill the partition buffers: up to BatchSize records, waiting at most the batching window."""
        if any(len(b) >= self.mapping.batch_size for b in self.buffers.values()):
            return
        got = self._poll(self.config.poll_timeout_ms)
        if not got:
            if self.stats.idle_since is None:
                self.stats.idle_since = time.time()
            return
        self.stats.idle_since = None
        deadline = time.monotonic() + self.mapping.batching_window_s
        while (
            time.monotonic() < deadline
            and max(len(b) for b in self.buffers.values()) < self.mapping.batch_size
        ):
            self._poll(max(1, int((deadline - time.monotonic()) * 1000)))

    def _poll(self, timeout_ms: int) -> int:
        polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.mapping.batch_size)
        count = 0
        for tp, records in polled.items():
            expected = self.next_offset.get(tp)
            if expected is not None and records[0].offset < expected:
                # the consumer went back (kafka-python resets an out-of-range position): the log no
                # longer holds what this mapping already fetched or committed
                raise MappingFailed(
                    f"{self._key(tp)}: the broker returned offset {records[0].offset} where {expected} was "
                    "next: its log no longer covers this mapping's position (a restarted in-memory broker?)"
                )
            self.next_offset[tp] = records[-1].offset + 1
            self.buffers[tp].extend(records)
            count += len(records)
            self.stats.positions[self._key(tp)] = records[-1].offset + 1
        self.stats.records_polled += count
        return count

    # ------------------------------------------------------------ delivery
    def take_batch(self) -> dict:
        """Up to BatchSize records over every partition that has some: one Lambda payload may hold
        several partitions (records keyed "topic-partition"), each in offset order. The first
        partition served rotates so that a busy one cannot starve the others."""
        batch: dict[Any, list] = {}
        room = self.mapping.batch_size
        count = len(self.tps)
        for i in range(count):
            tp = self.tps[(self._first_served + i) % count]
            take = min(len(self.buffers[tp]), room)
            if take:
                buffer = self.buffers[tp]
                batch[tp] = [buffer.popleft() for _ in range(take)]
                room -= take
            if room == 0:
                break
        self._first_served = (self._first_served + 1) % max(count, 1)
        return batch

    def deliver_together(self, batch: dict) -> None:
        """One invocation for the partitions of `batch`; each is committed on success. After a failure
        every partition goes its own way through `deliver` (retries with backoff, bisect, on-failure
        destination), the failed invocation counted as its first attempt; with ReportBatchItemFailures
        a partition the response does not name is done, and a named one is committed up to its
        failed offset, as Lambda does."""
        if len(batch) == 1:
            ((tp, records),) = batch.items()
            self.deliver(tp, records, attempts=0)
            return
        if self.stop_requested:
            return  # not committed: the next worker starts again from the committed offsets
        outcome = self.invoke([r for records in batch.values() for r in records])
        if outcome.ok:
            for tp, records in batch.items():
                self._commit(tp, records[-1].offset + 1)
                self.stats.records_done += len(records)
            return
        if outcome.failed_offsets is None:
            self._sleep(self.config.retry_backoff_s)
        for tp, records in batch.items():
            if outcome.failed_offsets is not None:
                records = self._commit_before(tp, records, outcome.failed_offsets.get(self._key(tp)))
                if not records:
                    continue
            self.deliver(tp, records, attempts=1)

    def _commit_before(self, tp, records: list, failed: int | None) -> list:
        """Commit the records before the failed offset (all of them when None); return the rest."""
        done = [r for r in records if failed is None or r.offset < failed]
        if done:
            self._commit(tp, failed if failed is not None else done[-1].offset + 1)
            self.stats.records_done += len(done)
        return records[len(done) :]

    def deliver(self, tp, records: list, attempts: int) -> None:
        """Process one partition batch until it is done or gone to the on-failure destination."""
        pending = records
        while pending:
            if self.stop_requested:
                return  # not committed: the next worker starts again from the committed offset
            outcome = self.invoke(pending)
            if outcome.ok:
                self._commit(tp, pending[-1].offset + 1)
                self.stats.records_done += len(pending)
                return
            if outcome.failed_offsets is not None:  # names this partition, the only one invoked
                pending = self._commit_before(tp, pending, outcome.failed_offsets[self._key(tp)])
            elif self.mapping.bisect_on_error and len(pending) > 1:
                self.stats.bisections += 1
                half = len(pending) // 2
                self.deliver(tp, pending[:half], attempts)
                self.deliver(tp, pending[half:], attempts)
                return
            attempts += 1
            limit = self.mapping.max_retry_attempts
            if limit >= 0 and attempts > limit:
                # A dead or reset broker / store fails every batch: that is not the batch's fault, and
                # moving past it would lose it. Only a batch that fails on a healthy stack goes there.
                if self.world_problem(block=True):
                    attempts -= 1
                    continue
                self.send_to_onfailure(pending, outcome, attempts)
                self._commit(tp, pending[-1].offset + 1)
                self.stats.records_done += len(pending)
                return
            self.stats.retries += 1
            self._sleep(min(2.0, self.config.retry_backoff_s * 2 ** (attempts - 1)))

    # ------------------------------------------------------------ the world this mapping's state lives in
    def fail(self, reason: str) -> None:
        """Stop for good: nothing more is invoked or committed; status shows the reason."""
        if not self.stats.failed:
            log.error("mapping %s FAILED, stopped: %s", self.mapping.mapping_id, reason)
        self.stats.failed = reason
        self.stats.in_flight = False
        for buffer in self.buffers.values():
            buffer.clear()
        self.write_state(force=True)

    def world_problem(self, block: bool = False) -> str | None:
        """Why the broker or store cannot be trusted right now: raises MappingFailed when their state is
        lost (reset); returns the reason when one does not answer (and, with `block`, waits 2 s first:
        the caller retries); None when both hold this run's state."""
        from clearing_tools.local.identity import broker_problem, local_dynamodb_client, store_problem

        if not self.identity:
            return None
        if self._marker_reader is None:
            from clearing_tools.local.identity import BrokerMarkerReader

            self._marker_reader = BrokerMarkerReader(self.config.bootstrap_servers)
        if self._dynamodb is None and "moto" in self.identity:
            self._dynamodb = local_dynamodb_client(self.config)
        for problem in (
            broker_problem(self.config, self.identity, self._marker_reader),
            store_problem(self.config, self.identity, self._dynamodb),
        ):
            if problem is None:
                continue
            if problem.lost:
                raise MappingFailed(str(problem))
            if self.stats.blocked != str(problem):
                log.error("mapping %s blocked: %s", self.mapping.mapping_id, problem)
            self.stats.blocked = str(problem)
            if block:
                self._sleep(2.0)
            return str(problem)
        self.stats.blocked = None
        return None

    def check_world(self, force: bool = False) -> None:
        """Every WORLD_CHECK_INTERVAL_S: the marker and sentinel (world_problem), and no partition's
        position beyond its log's end (a broker that lost records answers empty fetches there)."""
        now = time.monotonic()
        if not force and now < self._next_world_check:
            return
        self._next_world_check = now + WORLD_CHECK_INTERVAL_S
        if self.world_problem():
            return  # not answering: nothing more to learn now
        ahead = {tp: pos for tp, pos in self.next_offset.items()}
        for tp in self.tps:
            committed = self.stats.committed.get(self._key(tp))
            if committed is not None:
                ahead[tp] = max(ahead.get(tp, 0), committed)
        if not ahead:
            return
        try:
            reported = self.consumer.end_offsets(list(ahead))
        except Exception:  # noqa: BLE001 - an unreachable broker is seen by world_problem next time
            return
        beyond = [tp for tp, pos in ahead.items() if pos > reported.get(tp, pos)]
        if not beyond:
            return
        from clearing_tools.local.broker import probe_consumer, true_end_offsets

        probe = probe_consumer(self.config.bootstrap_servers)
        try:
            ends = true_end_offsets(probe, beyond)  # Tansu's ListOffsets can under-count
        finally:
            probe.close()
        for tp in beyond:
            if ahead[tp] > ends[tp]:
                raise MappingFailed(
                    f"{self._key(tp)}: this mapping is at offset {ahead[tp]} but the log ends at {ends[tp]}: "
                    "the broker lost records (a restarted in-memory broker?)"
                )

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stop_requested and time.monotonic() < deadline:
            time.sleep(min(0.05, seconds))
            self.write_state()

    def invoke(self, records: list) -> Outcome:
        from clearing_tools.local.invoke import kafka_event

        if self._trouble.seen:  # the broker connection had trouble since the last check: is it the same one?
            self._trouble.seen = False
            self.check_world(force=True)
        event = kafka_event(records, self.mapping.event_source_arn, self.config.bootstrap_servers)
        self.stats.in_flight = True
        self.write_state(force=True)
        started = time.monotonic()
        self.stats.invocations += 1
        try:
            if self.config.duplicate_delivery:  # fault injection: every payload delivered twice
                self.function.invoke(json.loads(json.dumps(event)))
                self.stats.duplicate_deliveries += 1
            response = self.function.invoke(event)
        except Exception as exc:  # noqa: BLE001 - a function error, as Lambda sees it
            self.stats.function_errors += 1
            log.error("function error in %s: %s", self.mapping.function_id, traceback.format_exc())
            return Outcome(ok=False, error_type=type(exc).__name__, error_message=str(exc))
        finally:
            self.stats.in_flight = False
            self.stats.last_invocation_ms = (time.monotonic() - started) * 1000
            self.stats.invocation_ms_total += self.stats.last_invocation_ms
            self.write_state(force=True)
        if not self.mapping.report_item_failures:
            return Outcome(ok=True)
        return self._item_failures(records, response)

    def _item_failures(self, records: list, response: Any) -> Outcome:
        failures = (response or {}).get("batchItemFailures") if isinstance(response, dict) else None
        if not failures:
            return Outcome(ok=True)
        offsets: dict[str, set[int]] = {}
        for r in records:
            offsets.setdefault(f"{r.topic}-{r.partition}", set()).add(r.offset)
        failed: dict[str, int] = {}
        for failure in failures:
            ident = (failure or {}).get("itemIdentifier") if isinstance(failure, dict) else None
            if not isinstance(ident, dict) or ident.get("offset") not in offsets.get(
                ident.get("partition"), ()
            ):
                # An identifier Lambda cannot match fails the whole batch.
                self.stats.function_errors += 1
                return Outcome(
                    ok=False, error_type="InvalidBatchItemFailure", error_message=json.dumps(failure)
                )
            key, offset = ident["partition"], int(ident["offset"])
            failed[key] = min(offset, failed.get(key, offset))
        self.stats.partial_failures += 1
        return Outcome(
            ok=False,
            failed_offsets=failed,
            error_type="BatchItemFailure",
            error_message=f"failed offsets {sorted(failed.items())}",
        )

    # ------------------------------------------------------------ on-failure destination
    def send_to_onfailure(self, records: list, outcome: Outcome, attempts: int) -> None:
        from clearing_tools.local.invoke import kafka_event

        first, last = records[0], records[-1]
        record = {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "requestContext": {
                "requestId": self.function.new_context().aws_request_id
                if hasattr(self.function, "new_context")
                else "",
                "functionArn": f"arn:aws:lambda:{self.config.region}:123456789012:function:{self.mapping.function_id}",
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": attempts,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled" if outcome.failed_offsets is None else "BatchItemFailure",
            },
            "KafkaBatchInfo": {
                "mappingId": self.mapping.mapping_id,
                "consumerGroupId": self.mapping.group_id,
                "destination": self.mapping.onfailure_destination,
                "batchSize": len(records),
                "topic": first.topic,
                "partition": first.partition,
                "firstOffset": first.offset,
                "lastOffset": last.offset,
                "bootstrapServers": self.config.bootstrap_servers,
            },
            "errorType": outcome.error_type,
            "errorMessage": outcome.error_message,
            "payload": kafka_event(records, self.mapping.event_source_arn, self.config.bootstrap_servers),
        }
        line = json.dumps(record, separators=(",", ":"))
        path = self.paths["onfailure"] / f"{self.mapping.function_id}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")
        if self.config.onfailure_topic:
            try:
                self.producer().send(
                    self.config.onfailure_topic, key=self.mapping.mapping_id.encode(), value=line.encode()
                ).get(timeout=10)
            except Exception:  # noqa: BLE001 - the file copy is the record of last resort
                log.exception("could not publish to %s", self.config.onfailure_topic)
        self.stats.onfailure_batches += 1
        self.stats.onfailure_records += len(records)
        log.warning(
            "%s: %d record(s) %s-%d@%d..%d sent to the on-failure destination after %d attempt(s): %s",
            self.mapping.mapping_id, len(records), first.topic, first.partition, first.offset, last.offset,
            attempts, outcome.error_message,
        )  # fmt: skip

    def producer(self):
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = KafkaProducer(bootstrap_servers=self.config.bootstrap_servers, acks="all")
        return self._producer

    # ------------------------------------------------------------ state
    def write_state(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._last_state_write < 1.0:
            return
        self._last_state_write = now
        self.stats.updated_at = now
        write_json_atomic(self.paths["state"] / f"{self.spec.worker_id}.json", json.dumps(asdict(self.stats)))


def run_worker(config_path: Path, spec_path: Path) -> int:
    config = RuntimeConfig.model_validate_json(config_path.read_text())
    raw = json.loads(spec_path.read_text())
    spec = WorkerSpec(raw["worker_id"], MappingSpec(**raw["mapping"]), [tuple(p) for p in raw["partitions"]])
    worker = MappingWorker(config, spec)

    def request_stop(signum, frame):  # noqa: ARG001
        worker.stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    log.info("worker %s pid %d: %s", spec.worker_id, os.getpid(), spec.partitions)
    worker.run()
    return 0


# ----------------------------------------------------------------------------- supervisor


class Supervisor:
    """Starts one process per worker spec, restarts the ones that die, stops them all on SIGTERM."""

    def __init__(self, config: RuntimeConfig, config_path: Path, owner_pid: int | None = None):
        self.config = config
        self.config_path = config_path
        self.owner_pid = owner_pid
        self.paths = _paths(config)
        self.procs: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, int] = {}
        self.started_at: dict[str, float] = {}  # monotonic start of each worker's current process
        self.quick_exits: dict[str, int] = {}  # consecutive exits within 10 s of a start
        self.restart_due: dict[str, float] = {}  # worker -> when its pending restart is due
        self.specs: dict[str, WorkerSpec] = {}
        self.stopping = False

    def plan(self) -> list[WorkerSpec]:
        from clearing_tools.local.broker import probe_consumer, topic_partitions

        topics = sorted({t for m in mapping_specs(self.config) for t in m.topics})
        consumer = probe_consumer(self.config.bootstrap_servers)
        try:
            partitions_of: dict[str, int] = {}
            for tp in topic_partitions(consumer, topics):
                partitions_of[tp.topic] = max(partitions_of.get(tp.topic, 0), tp.partition + 1)
        finally:
            consumer.close()
        return worker_specs(self.config, partitions_of)

    def start_worker(self, spec: WorkerSpec) -> None:
        spec_path = self.paths["specs"] / f"{spec.worker_id}.json"
        write_json_atomic(spec_path, json.dumps(asdict(spec)))
        log_path = self.paths["logs"] / f"esm-{spec.worker_id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "clearing_tools.local.esm",
                    "worker",
                    str(self.config_path),
                    str(spec_path),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.procs[spec.worker_id] = proc
        self.started_at[spec.worker_id] = time.monotonic()
        write_json_atomic(self.paths["pids"] / f"esm-worker-{spec.worker_id}.pid", str(proc.pid))

    def write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "updated_at": time.time(),
            "workers": {
                wid: {"pid": p.pid, "alive": p.poll() is None, "restarts": self.restarts.get(wid, 0)}
                for wid, p in self.procs.items()
            },
        }
        write_json_atomic(self.paths["state"].parent / "supervisor.json", json.dumps(state))

    def run(self) -> int:
        for spec in self.plan():
            self.specs[spec.worker_id] = spec
            self.start_worker(spec)
        self.write_state()
        while not self.stopping:
            if self.owner_pid and not pid_alive(self.owner_pid):
                log.warning("owner %d exited; stopping", self.owner_pid)
                break
            now = time.monotonic()
            for wid, proc in list(self.procs.items()):
                if proc.poll() is None or self.stopping:
                    continue
                due = self.restart_due.get(wid)
                if due is None:  # just noticed: schedule the restart
                    # a worker that dies young (a broker that is down, a handler that cannot import) is
                    # restarted ever later, up to 10 s, instead of re-importing its handler every 0.5 s
                    quick = now - self.started_at.get(wid, 0.0) < 10.0
                    self.quick_exits[wid] = self.quick_exits.get(wid, 0) + 1 if quick else 0
                    delay = min(10.0, self.config.restart_backoff_s * 2 ** max(0, self.quick_exits[wid] - 1))
                    self.restart_due[wid] = now + delay
                    self.restarts[wid] = self.restarts.get(wid, 0) + 1
                    log.warning(
                        "worker %s exited with %s; restart #%d in %.1f s",
                        wid, proc.returncode, self.restarts[wid], delay,
                    )  # fmt: skip
                elif now >= due:
                    del self.restart_due[wid]
                    self.start_worker(self.specs[wid])
            self.write_state()
            time.sleep(0.2)
        self.stop_workers()
        return 0

    def stop_workers(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        deadline = time.monotonic() + 10
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for wid in self.procs:
            with contextlib.suppress(FileNotFoundError):
                (self.paths["pids"] / f"esm-worker-{wid}.pid").unlink()
        self.write_state()


def run_supervisor(config_path: Path, owner_pid: int | None) -> int:
    config = RuntimeConfig.model_validate_json(config_path.read_text())
    supervisor = Supervisor(config, config_path, owner_pid)

    def request_stop(signum, frame):  # noqa: ARG001
        supervisor.stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return supervisor.run()


# ----------------------------------------------------------------------------- reading state


def read_worker_states(config: RuntimeConfig) -> list[dict[str, Any]]:
    states = []
    for path in sorted(_paths(config)["state"].glob("*.json")):
        with contextlib.suppress(ValueError, FileNotFoundError):
            states.append(json.loads(path.read_text()))
    return states


def read_supervisor_state(config: RuntimeConfig) -> dict[str, Any] | None:
    path = _paths(config)["state"].parent / "supervisor.json"
    with contextlib.suppress(ValueError, FileNotFoundError):
        return json.loads(path.read_text())
    return None


def stop_recorded_workers(config: RuntimeConfig) -> list[int]:
    """SIGTERM the worker pids the supervisor recorded (after the supervisor itself is gone)."""
    stopped = []
    for pid_path in _paths(config)["pids"].glob("esm-worker-*.pid"):
        pid = read_pid(pid_path)
        if pid and stop_pid(pid):
            stopped.append(pid)
        pid_path.unlink(missing_ok=True)
    return stopped


def decode_value(record: dict[str, Any]) -> bytes:
    """The value bytes of one record of an MSK event (helper for handlers and tests)."""
    return base64.b64decode(record.get("value", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clearing_tools.local.esm")
    sub = parser.add_subparsers(dest="role", required=True)
    w = sub.add_parser("worker")
    w.add_argument("config", type=Path)
    w.add_argument("spec", type=Path)
    s = sub.add_parser("supervise")
    s.add_argument("config", type=Path)
    s.add_argument("--owner-pid", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {args.role} %(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    if args.role == "worker":
        return run_worker(args.config, args.spec)
    return run_supervisor(args.config, args.owner_pid)


if __name__ == "__main__":
    sys.exit(main())
