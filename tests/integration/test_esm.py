"""Local MSK event-source mappings against the real local broker (Tansu) with a tiny test handler."""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict

import pytest
from clearing_tools.local.esm import read_supervisor_state, read_worker_states

from tests.integration.esm_support import EsmHarness

pytestmark = [pytest.mark.integration]


@pytest.fixture
def harness_factory(tmp_path, kafka_broker, moto_server):
    made = []

    def make(**kwargs) -> EsmHarness:
        harness = EsmHarness(tmp_path / f"h{len(made)}", kafka_broker, moto_server, **kwargs)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.runtime.stop()


def by_partition(lines):
    result = defaultdict(list)
    for line in lines:
        result[line["key"]].append(line)
    return result


def test_records_arrive_in_partition_order_with_lambdas_event_shape(harness_factory):
    # Given 20 records on each of 3 partitions, produced before the mapping starts
    h = harness_factory(batch_size=7)
    for n in range(60):
        h.send(n, partition=n % 3)
    h.flush()
    # When the mapping runs until it is idle
    with h:
        h.wait_idle()
        status = h.runtime.status()
    # Then every record is processed exactly once, in offset order per partition
    lines = h.results_lines()
    assert sorted(line["n"] for line in lines) == list(range(60))
    for key, part in by_partition(lines).items():
        assert [line["offset"] for line in part] == list(range(20)), key
        assert [line["n"] for line in part] == sorted(line["n"] for line in part)
    assert {line["msg_key"] for line in lines} == {f"k{n}" for n in range(60)}
    assert all(line["headers"] == {"origin": "test"} for line in lines)
    # and payloads respect BatchSize over all their partitions, may hold several partitions (as
    # Lambda's do), and the function gets the table names from the template
    invocations = h.invocations()
    assert max(i["size"] for i in invocations) == 7
    assert max(len(i["keys"]) for i in invocations) > 1
    assert {i["env_table"] for i in invocations} == {h.config.table_prefix + "OrdersTable"}
    (mapping,) = status.mappings
    assert mapping.lag == 0 and mapping.records_done == 60 and mapping.function_errors == 0


def test_batch_item_failure_commits_up_to_the_failed_offset_and_retries_from_it(harness_factory):
    # Given 10 records on partition 0, the handler reports offset 4 as failed once
    h = harness_factory(batch_size=10, partitions=1)
    for n in range(10):
        h.send(n, partition=0, fail="item" if n == 4 else None)
    h.flush()
    with h:
        h.wait_idle()
        (mapping,) = h.runtime.status().mappings
    # Then 0..3 are done in the first invocation, 4..9 in the retry, none twice
    assert [line["offset"] for line in h.results_lines()] == list(range(10))
    assert [(i["first"], i["size"]) for i in h.invocations()] == [(0, 10), (4, 6)]
    assert mapping.partial_failures == 1 and mapping.onfailure_records == 0 and mapping.lag == 0


def test_item_failure_in_a_multi_partition_payload_holds_back_only_its_partition(harness_factory):
    # Given 5 records on each of 2 partitions, delivered in one payload; partition 0 fails at offset 2 once
    h = harness_factory(batch_size=10, partitions=2)
    for n in range(10):
        h.send(n, partition=n % 2, fail="item" if n == 4 else None)  # n=4: partition 0, offset 2
    h.flush()
    with h:
        h.wait_idle()
        (mapping,) = h.runtime.status().mappings
    # Then partition 1 is done by the first invocation, partition 0 up to offset 1, and 0@2.. retried alone
    first, *rest = h.invocations()
    assert sorted(first["keys"]) == [f"{h.topic}-0", f"{h.topic}-1"] and first["size"] == 10
    assert [(i["keys"], i["first"], i["size"]) for i in rest] == [([f"{h.topic}-0"], 2, 3)]
    for key, part in by_partition(h.results_lines()).items():
        assert [line["offset"] for line in part] == list(range(5)), key  # each record once, in order
    assert mapping.partial_failures == 1 and mapping.lag == 0


def test_function_error_in_a_multi_partition_payload_retries_each_partition(harness_factory):
    # Given one payload of 2 partitions whose invocation fails once
    h = harness_factory(batch_size=10, partitions=2, retries=2, bisect=False)
    for n in range(10):
        h.send(n, partition=n % 2, fail="error" if n == 3 else None, times=1)
    h.flush()
    with h:
        h.wait_idle()
        (mapping,) = h.runtime.status().mappings
    # Then each partition is invoked again on its own and every record is processed exactly once
    first, *rest = h.invocations()
    assert first["size"] == 10 and len(first["keys"]) == 2
    assert sorted((tuple(i["keys"]), i["size"]) for i in rest) == [
        ((f"{h.topic}-0",), 5),
        ((f"{h.topic}-1",), 5),
    ]
    for key, part in by_partition(h.results_lines()).items():
        assert [line["offset"] for line in part] == list(range(5)), key
    assert mapping.function_errors == 1 and mapping.onfailure_records == 0 and mapping.lag == 0


def test_function_error_is_retried_and_nothing_is_committed_before_success(harness_factory):
    # Given a batch whose invocation fails twice, then succeeds (MaximumRetryAttempts 2, no bisect)
    h = harness_factory(batch_size=10, partitions=1, retries=2, bisect=False)
    for n in range(10):
        h.send(n, partition=0, fail="error" if n == 6 else None, times=2)
    h.flush()
    with h:
        h.wait_idle()
        (mapping,) = h.runtime.status().mappings
    # Then the same whole batch was invoked three times and its records were processed once
    assert [(i["first"], i["size"]) for i in h.invocations()] == [(0, 10)] * 3
    assert [line["offset"] for line in h.results_lines()] == list(range(10))
    assert mapping.function_errors == 2 and mapping.retries == 2 and mapping.onfailure_records == 0


def test_poison_record_is_bisected_out_and_sent_to_the_on_failure_destination(harness_factory):
    # Given 8 records with a poison record at offset 5, bisect on, 1 retry
    h = harness_factory(batch_size=8, partitions=1, retries=1, bisect=True)
    for n in range(8):
        h.send(n, partition=0, fail="poison" if n == 5 else None)
    h.flush()
    with h:
        h.wait_idle()
        (mapping,) = h.runtime.status().mappings
    # Then every other record is processed, in order, and only offset 5 went to the destination
    assert [line["offset"] for line in h.results_lines()] == [0, 1, 2, 3, 4, 6, 7]
    (failure,) = h.onfailure()
    info = failure["KafkaBatchInfo"]
    assert (info["firstOffset"], info["lastOffset"], info["batchSize"]) == (5, 5, 1)
    assert info["destination"] == "arn:aws:sqs:us-east-1:123456789012:esm-test-dlq"
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    assert failure["errorType"] == "RuntimeError"
    (record,) = failure["payload"]["records"][f"{h.topic}-0"]
    assert record["offset"] == 5
    assert mapping.lag == 0 and mapping.onfailure_records == 1 and mapping.records_done == 8


def test_exhausted_batch_without_bisect_goes_whole_to_the_destination(harness_factory):
    h = harness_factory(batch_size=4, partitions=1, retries=0, bisect=False)
    for n in range(4):
        h.send(n, partition=0, fail="poison" if n == 2 else None)
    h.send(4, partition=0)
    h.flush()
    with h:
        h.wait_idle()
    (failure,) = h.onfailure()
    assert (failure["KafkaBatchInfo"]["firstOffset"], failure["KafkaBatchInfo"]["lastOffset"]) == (0, 3)
    assert [line["offset"] for line in h.results_lines()] == [4]  # the mapping moved past the batch


@pytest.mark.slow
def test_killed_worker_is_restarted_and_resumes_from_the_committed_offset(harness_factory):
    # Given a slow handler working through 3 x 100 records
    h = harness_factory(batch_size=5, sleep_ms=20)
    with h:
        for n in range(300):
            h.send(n, partition=n % 3)
        h.flush()
        h.wait_for(lambda: len(h.results_lines()) >= 30)
        (worker,) = read_worker_states(h.config)
        # When the worker is SIGKILLed mid-stream
        os.kill(worker["pid"], signal.SIGKILL)
        h.wait_for(lambda: any(s["pid"] != worker["pid"] for s in read_worker_states(h.config)), timeout=20)
        h.wait_idle(timeout=60)
        supervisor = read_supervisor_state(h.config)
    # Then the supervisor restarted it and no record was lost (at-least-once: replays allowed)
    (restarted,) = supervisor["workers"].values()
    assert restarted["restarts"] == 1 and restarted["pid"] != worker["pid"]
    lines = h.results_lines()
    assert {line["n"] for line in lines} == set(range(300))
    for key, part in by_partition(lines).items():
        first_seen = list(dict.fromkeys(line["offset"] for line in part))
        assert first_seen == list(range(100)), key
    assert len({i["pid"] for i in h.invocations()}) == 2


def test_wait_until_idle_times_out_while_a_partition_is_stuck(harness_factory):
    h = harness_factory(batch_size=1, partitions=1, retries=-1, bisect=False)
    h.send(0, partition=0, fail="poison")
    h.flush()
    with h:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="lag"):
            h.wait_idle(timeout=1.5)
        assert time.monotonic() - started < 5
        assert h.onfailure() == []  # -1 retries forever, like Lambda's default
