"""The whole serverless pipeline on one machine: broker, DynamoDB, exchange side, topics, tables, mappings.

Start order: broker, moto, (topics, tables, reference data), exchange simulator, FIX proxy (once logged
on), event-source mappings; stop in reverse.

Python API (used by `clearing up/down/status`, the demo and the tests):

    runtime = LocalRuntime(RuntimeConfig(...))
    runtime.start()                 # starts what is not external, creates topics and tables, seeds refdata,
                                    # the exchange simulator and the FIX proxy when the gateway runs
    runtime.wait_until_idle(60)     # every mapping caught up (lag 0, nothing in flight)
    runtime.status()                # components + per-mapping lag and counters
    runtime.env_for_function("ValidateOrdersFunction")
    runtime.stop()                  # stops only what start() recorded in <state>/pids/
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from clearing.local import components as comps
from clearing.local.config import RuntimeConfig
from clearing.local.processes import RuntimeStartError


@dataclass
class MappingStatus:
    mapping_id: str
    function_id: str
    group_id: str
    topics: list[str]
    lag: int
    lag_by_partition: dict[str, int]
    records_done: int = 0
    invocations: int = 0
    function_errors: int = 0
    partial_failures: int = 0
    retries: int = 0
    onfailure_records: int = 0
    in_flight: bool = False
    workers: int = 0
    restarts: int = 0


@dataclass
class RuntimeStatus:
    components: list[comps.ComponentStatus]
    mappings: list[MappingStatus] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "components": [asdict(c) for c in self.components],
            "mappings": [asdict(m) for m in self.mappings],
            "error": self.error,
        }


def exchange_needed(config: RuntimeConfig) -> bool:
    """True when a function whose mapping runs talks to the FIX proxy (the exchange gateway)."""
    from clearing.local.invoke import proxy_clients

    try:
        return bool(proxy_clients(config))
    except FileNotFoundError:  # no template: start() reports it
        return False


BUSY_PROBE_INTERVAL_S = 0.5


class LagProbe:
    """Reads true end offsets and each mapping's committed offsets (reuses its consumers)."""

    def __init__(self, config: RuntimeConfig):
        from clearing.local.broker import probe_consumer

        self.config = config
        self.probe = probe_consumer(config.bootstrap_servers)
        self.readers: dict[str, Any] = {}

    def offsets(self, group_id: str, topics: list[str]) -> dict[str, tuple[int, int]]:
        """ "topic-N" -> (true end offset, committed offset of the group, 0 when none)."""
        from clearing.local.broker import probe_consumer, topic_partitions, true_end_offsets

        reader = self.readers.get(group_id)
        if reader is None:
            reader = self.readers[group_id] = probe_consumer(self.config.bootstrap_servers, group_id)
        tps = topic_partitions(self.probe, topics)
        ends = true_end_offsets(self.probe, tps)  # ends first: committed never overtakes them
        return {f"{tp.topic}-{tp.partition}": (ends[tp], reader.committed(tp) or 0) for tp in tps}

    def lag(self, group_id: str, topics: list[str]) -> dict[str, int]:
        return {k: end - done for k, (end, done) in self.offsets(group_id, topics).items()}

    def close(self) -> None:
        for consumer in (self.probe, *self.readers.values()):
            with contextlib.suppress(Exception):
                consumer.close()


class LocalRuntime:
    def __init__(self, config: RuntimeConfig | None = None, owner_pid: int | None = None):
        config = config or RuntimeConfig()
        if config.start_exchange is None:  # decided once, saved in runtime.json for down / status
            config = config.model_copy(update={"start_exchange": exchange_needed(config)})
        self.config = config
        self.owner_pid = owner_pid  # set: the mappings stop when this process exits (tests, demo)
        self.components: list[comps.Component] = [
            comps.broker_component(self.config),
            comps.moto_component(self.config),
        ]
        self.components += [comps.extra_component(n, self.config) for n in self.exchange_component_names()]
        if self.config.start_esm:
            self.components.append(comps.esm_component(self.config, owner_pid))
        self.components += [
            comps.extra_component(n, self.config)
            for n in self.config.extra_components
            if n not in comps.EXCHANGE_COMPONENTS
        ]
        self.table_names: dict[str, str] = {}

    def exchange_component_names(self) -> list[str]:
        """exchange-sim then fix-proxy: both, the proxy alone (real exchange), or neither."""
        wanted = set(comps.EXCHANGE_COMPONENTS) if self.config.start_exchange else set()
        wanted |= set(self.config.extra_components) & set(comps.EXCHANGE_COMPONENTS)  # `--with fix-proxy`
        if self.config.proxy_endpoint:
            wanted.discard("exchange-sim")  # a running proxy has its own exchange
        return [n for n in comps.EXCHANGE_COMPONENTS if n in wanted]

    # ------------------------------------------------------------ lifecycle
    def start(self, ready_timeout: float = 60.0) -> LocalRuntime:
        state = self.config.state_path
        (state / "pids").mkdir(parents=True, exist_ok=True)
        shutil.rmtree(state / "esm" / "state", ignore_errors=True)  # counters of a previous run
        self._reset_simulated_fix_session()
        (state / "runtime.json").write_text(self.config.model_dump_json(indent=2))
        started: list[comps.Component] = []
        bootstrapped = False
        try:
            for component in self.components:
                if component.name not in ("broker", "moto") and not bootstrapped:
                    self.bootstrap()  # the proxy publishes to exchange.executions, the mappings read topics
                    bootstrapped = True
                component.start()
                started.append(component)
            if not bootstrapped:
                self.bootstrap()
            if self.config.start_esm:
                self.wait_for_workers(ready_timeout)
        except Exception:
            for component in reversed(started):
                with contextlib.suppress(Exception):
                    component.stop()
            raise
        return self

    def _reset_simulated_fix_session(self) -> None:
        """A cold `up` against the simulator and the in-memory broker starts a new FIX session.

        Both ends' stores persist under <state>/fix/ so a restarted proxy continues the session; but
        after `down` the broker's topics and moto's tables are gone, trade ids start again from the same
        offsets, and a kept store would answer them DUPLICATE. A real exchange's session is never reset.
        """
        if not self.config.start_exchange or self.config.exchange_endpoint or self.config.proxy_endpoint:
            return
        if not self.config.local_broker:
            return
        if any(c.health().state in ("running", "degraded") for c in self.components):
            return  # something of this runtime is up: an idempotent `up`, not a new world
        shutil.rmtree(self.config.state_path / "fix", ignore_errors=True)

    def bootstrap(self) -> None:
        """Topics, tables and reference data (idempotent)."""
        from clearing.local.broker import create_topics
        from clearing.local.dynamodb import (
            create_tables,
            dynamodb_resource,
            seed_reference_data,
            wait_for_dynamodb,
        )
        from clearing.topics import TOPICS

        topics = {t: self.config.partitions_for(t) for t in [*TOPICS, *self.config.extra_topics]}
        create_topics(self.config.bootstrap_servers, topics)
        dynamodb = dynamodb_resource(self.config.dynamodb_url, self.config.region)
        wait_for_dynamodb(dynamodb)
        self.table_names = create_tables(dynamodb, self.config.table_prefix, self._template())
        if self.config.seed_reference_data and "ReferenceTable" in self.table_names:
            seed_reference_data(dynamodb.Table(self.table_names["ReferenceTable"]))

    def wait_for_workers(self, timeout: float) -> None:
        """Until every planned worker has assigned its partitions and written its state."""
        from clearing.local.esm import mapping_specs, read_supervisor_state, read_worker_states

        if not mapping_specs(self.config):
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            supervisor = read_supervisor_state(self.config)
            if supervisor and supervisor["workers"]:
                ready = {s["worker_id"] for s in read_worker_states(self.config)}
                if set(supervisor["workers"]) <= ready:
                    return
            time.sleep(0.1)
        raise RuntimeStartError(
            f"event-source mapping workers not ready after {timeout:.0f} s; see {self.config.state_path / 'logs'}"
        )

    def stop(self) -> None:
        for component in reversed(self.components):
            with contextlib.suppress(Exception):
                component.stop()

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ queries
    def _template(self) -> dict[str, Any]:
        from clearing.local.invoke import load_template

        return load_template(self.config)

    def env_for_function(self, logical_id: str) -> dict[str, str]:
        """The environment a handler gets locally (Globals + function env, local endpoints)."""
        from clearing.local.invoke import find_function, function_environment

        return function_environment(self.config, find_function(self.config, logical_id))

    def status(self, with_lag: bool = True) -> RuntimeStatus:
        from clearing.local.esm import mapping_specs, read_supervisor_state, read_worker_states

        result = RuntimeStatus([c.health() for c in self.components])
        broker_up = any(c.name == "broker" and c.state in ("running", "external") for c in result.components)
        supervisor = read_supervisor_state(self.config) or {"workers": {}}
        states = read_worker_states(self.config)
        probe = LagProbe(self.config) if with_lag and broker_up else None
        try:
            for spec in mapping_specs(self.config):
                lag = probe.lag(spec.group_id, spec.topics) if probe else {}
                mine = [s for s in states if s["mapping_id"] == spec.mapping_id]
                restarts = sum(
                    w["restarts"]
                    for wid, w in supervisor["workers"].items()
                    if wid.startswith(spec.mapping_id + ".w")
                )
                result.mappings.append(
                    MappingStatus(
                        mapping_id=spec.mapping_id,
                        function_id=spec.function_id,
                        group_id=spec.group_id,
                        topics=spec.topics,
                        lag=sum(lag.values()),
                        lag_by_partition=lag,
                        records_done=sum(s["records_done"] for s in mine),
                        invocations=sum(s["invocations"] for s in mine),
                        function_errors=sum(s["function_errors"] for s in mine),
                        partial_failures=sum(s["partial_failures"] for s in mine),
                        retries=sum(s["retries"] for s in mine),
                        onfailure_records=sum(s["onfailure_records"] for s in mine),
                        in_flight=any(s["in_flight"] for s in mine),
                        workers=len(mine),
                        restarts=restarts,
                    )
                )
        except Exception as exc:  # noqa: BLE001 - status must still show the components
            result.error = f"lag unavailable: {exc}"
        finally:
            if probe:
                probe.close()
        return result

    def wait_until_idle(self, timeout: float = 60.0, settle_rounds: int = 2) -> float:
        """Block until every mapping has committed everything on its topics and nothing is in flight.

        Idle must be seen in `settle_rounds` consecutive probes with the same end and committed offsets:
        a record that a handler produced while one probe was reading other partitions changes the next. Returns seconds waited; raises
        TimeoutError (with the lag left) otherwise.
        """
        from clearing.local.esm import mapping_specs, read_worker_states

        specs = mapping_specs(self.config)
        probe = LagProbe(self.config)
        started = time.monotonic()
        deadline = started + timeout
        previous, rounds, last_lag = None, 0, {}
        try:
            while True:
                snapshot, busy = {}, False
                for spec in specs:
                    offsets = probe.offsets(spec.group_id, spec.topics)
                    snapshot[spec.mapping_id] = offsets
                    busy = busy or any(end > done for end, done in offsets.values())
                busy = busy or any(s.get("in_flight") for s in read_worker_states(self.config))
                last_lag = {m: sum(e - d for e, d in v.values()) for m, v in snapshot.items()}
                if not busy:
                    rounds = rounds + 1 if snapshot == previous else 1
                    if rounds >= settle_rounds:
                        return time.monotonic() - started
                else:
                    rounds = 0
                previous = snapshot
                if time.monotonic() > deadline:
                    raise TimeoutError(f"mappings not idle after {timeout} s; lag {json.dumps(last_lag)}")
                # A probe round costs ~10 ms of CPU per mapping (kafka-python round trips): polling
                # a busy pipeline every 0.1 s took half a core from it. Poll slowly while there is
                # lag, quickly while confirming idleness.
                time.sleep(0.1 if not busy else BUSY_PROBE_INTERVAL_S)
        finally:
            probe.close()
