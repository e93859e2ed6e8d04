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

from clearing_tools.local import components as comps
from clearing_tools.local.config import RuntimeConfig
from clearing_tools.local.processes import RuntimeStartError, RuntimeStateError, one_line, with_log_cause


@dataclass
class MappingStatus:
    mapping_id: str
    function_id: str
    group_id: str
    topics: list[str]
    lag: int | None  # None: unknown (broker down or reset), never shown as 0
    lag_by_partition: dict[str, int]
    state: str = "running"  # running | failed | stopped | unknown
    reason: str = ""  # why failed / unknown
    records_done: int = 0
    invocations: int = 0
    function_errors: int = 0
    partial_failures: int = 0
    retries: int = 0
    onfailure_records: int = 0  # records in the on-failure destination file (this run), all workers
    onfailure_batches: int = 0
    onfailure_file: str = ""
    in_flight: bool = False
    workers: int = 0
    restarts: int = 0


@dataclass
class RuntimeStatus:
    components: list[comps.ComponentStatus]
    mappings: list[MappingStatus] = field(default_factory=list)
    error: str | None = None
    problems: list[str] = field(default_factory=list)  # lost state, failed mappings, impossible lag
    run_id: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.state in ("running", "external") for c in self.components)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "ok": self.ok,
            "components": [asdict(c) for c in self.components],
            "mappings": [asdict(m) for m in self.mappings],
            "problems": self.problems,
            "error": self.error,
        }


def onfailure_counts(config: RuntimeConfig) -> dict[str, tuple[int, int, str]]:
    """mapping id -> (batches, records, file) from the on-failure destination files of this run."""
    counts: dict[str, tuple[int, int, str]] = {}
    for path in sorted((config.state_path / "onfailure").glob("*.jsonl")):
        with contextlib.suppress(OSError), path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    info = json.loads(line).get("KafkaBatchInfo") or {}
                except ValueError:
                    continue  # a torn last line while a worker writes
                mapping = info.get("mappingId", path.stem)
                batches, records, _ = counts.get(mapping, (0, 0, ""))
                counts[mapping] = (batches + 1, records + int(info.get("batchSize", 0)), str(path))
    return counts


def exchange_needed(config: RuntimeConfig) -> bool:
    """True when a function whose mapping runs talks to the FIX proxy (the exchange gateway)."""
    from clearing_tools.local.invoke import proxy_clients

    try:
        return bool(proxy_clients(config))
    except FileNotFoundError:  # no template: start() reports it
        return False


BUSY_PROBE_INTERVAL_S = 0.5
HEALTH_CHECK_INTERVAL_S = 5.0  # wait_until_idle: components and reset markers checked this often
# A component that runs but is not ready (the FIX proxy re-logging on after the exchange dropped it) is
# down only when it stays so this long: the mappings retry meanwhile.
DEGRADED_GRACE_S = 30.0


class LagProbe:
    """Reads true end offsets and each mapping's committed offsets (reuses its consumers)."""

    def __init__(self, config: RuntimeConfig):
        from clearing_tools.local.broker import probe_consumer

        self.config = config
        self.probe = probe_consumer(config.bootstrap_servers)
        self.readers: dict[str, Any] = {}

    def offsets(self, group_id: str, topics: list[str]) -> dict[str, tuple[int, int]]:
        """ "topic-N" -> (true end offset, committed offset of the group, 0 when none)."""
        from clearing_tools.local.broker import probe_consumer, topic_partitions, true_end_offsets

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
        self._degraded_since: dict[str, float] = {}  # component -> when down_components first saw it degraded

    def exchange_component_names(self) -> list[str]:
        """exchange-sim then fix-proxy: both, the proxy alone (real exchange), or neither."""
        wanted = set(comps.EXCHANGE_COMPONENTS) if self.config.start_exchange else set()
        wanted |= set(self.config.extra_components) & set(comps.EXCHANGE_COMPONENTS)  # `--with fix-proxy`
        if self.config.proxy_endpoint:
            wanted.discard("exchange-sim")  # a running proxy has its own exchange
        return [n for n in comps.EXCHANGE_COMPONENTS if n in wanted]

    # ------------------------------------------------------------ lifecycle
    def start(self, ready_timeout: float = 60.0) -> LocalRuntime:
        """Start what is not running. State of a previous run whose broker or store is gone (or was
        reset) is refused with RuntimeStateError (`clearing down` wipes it); any failure stops what this
        call started and raises RuntimeStartError with one line naming the cause and the log."""
        from clearing_tools.local.identity import read_identity

        state = self.config.state_path
        identity = read_identity(self.config)
        was_running = {c.name for c in self.components if c.health().state in ("running", "degraded")}
        if identity:
            self._refuse_lost_state(identity, was_running)
        else:
            self.wipe_run_state(keep_config=False)  # a cold start: nothing of an earlier run is kept
        (state / "pids").mkdir(parents=True, exist_ok=True)
        if "esm-supervisor" not in was_running:
            shutil.rmtree(state / "esm" / "state", ignore_errors=True)  # counters of a previous run
        (state / "runtime.json").write_text(self.config.model_dump_json(indent=2))
        attempted: list[comps.Component] = []
        bootstrapped = False
        try:
            for component in self.components:
                if component.name not in ("broker", "moto") and not bootstrapped:
                    self._bootstrap(stamp_identity=identity is None)
                    bootstrapped = True
                attempted.append(component)
                component.start()
            if not bootstrapped:
                self._bootstrap(stamp_identity=identity is None)
            if self.config.start_esm:
                self.wait_for_workers(ready_timeout)
        except BaseException as exc:
            for component in reversed(attempted):
                if component.name not in was_running:
                    with contextlib.suppress(Exception):
                        component.stop()
            if identity is None:
                self.wipe_run_state(keep_config=False)  # the next `up` starts cold again
            if isinstance(exc, RuntimeStartError | RuntimeStateError) or not isinstance(exc, Exception):
                raise
            raise RuntimeStartError(self._explain(exc)) from exc
        return self

    def _explain(self, exc: BaseException) -> str:
        """One line for an unexpected start failure, with the log of the component it came from."""
        module = type(exc).__module__
        name = "broker" if module.startswith("kafka") else "moto" if module.startswith("botocore") else None
        message = f"{type(exc).__name__}: {exc}"
        if name:
            component = next((c for c in self.components if c.name == name), None)
            log_path = getattr(component, "log_path", None)
            if log_path is not None and not getattr(component, "external_address", None):
                return with_log_cause(f"{name}: {message}", log_path)
        return one_line(f"{message} (logs in {self.config.state_path / 'logs'})")

    def _refuse_lost_state(self, identity: dict[str, Any], was_running: set[str]) -> None:
        """State of a previous run is only continued with the broker and store that hold it."""
        from clearing_tools.local.identity import ResetProblem, reset_problems

        problems: list[ResetProblem] = []
        for name, local in (("broker", self.config.local_broker), ("moto", self.config.local_dynamodb)):
            if local and name in identity and name not in was_running:
                problems.append(ResetProblem(name, "its process is gone (it kept the run's state in memory)"))
        if not problems:
            problems = reset_problems(self.config, identity)
        if problems:
            raise RuntimeStateError(
                f"state of run {identity.get('run_id')} in {self.config.state_path} is lost: "
                + "; ".join(map(str, problems))
                + ". Run `clearing down` (stops what is left, wipes the state) and `clearing up` again"
            )

    def wipe_run_state(self, keep_config: bool = True) -> None:
        """Forget a run: its identity, mapping state, on-failure records and the simulated FIX session.

        The in-memory broker and store lose the run at `down`; what the state dir holds about it goes
        with them (logs are kept: they are appended to, and say what happened). A real exchange's FIX
        session store and the on-failure records of a real Kafka are never wiped.
        """
        state = self.config.state_path
        for name in ("identity.json", *(() if keep_config else ("runtime.json",))):
            (state / name).unlink(missing_ok=True)
        shutil.rmtree(state / "esm", ignore_errors=True)
        if self.config.local_broker:
            shutil.rmtree(state / "onfailure", ignore_errors=True)
        self._reset_simulated_fix_session()

    def down(self) -> None:
        """Stop everything recorded and wipe the run's state (what `clearing down` does)."""
        self.stop()
        self.wipe_run_state(keep_config=False)
        pids = self.config.state_path / "pids"
        if pids.is_dir():
            for leftover in pids.glob("*.pid"):
                from clearing_tools.local.processes import read_pid, stop_pid

                pid = read_pid(leftover)
                if pid:
                    stop_pid(pid)
                leftover.unlink(missing_ok=True)

    def _reset_simulated_fix_session(self) -> None:
        """Both ends' stores of the simulated session go with the run (a new run starts at MsgSeqNum 1).

        Only the simulator's session: the exchange-sim store and the proxy's store for the simulator's
        endpoint (clearing_tools.exchange.local keeps one store per endpoint). A real exchange's session
        (--exchange-endpoint) is never reset: see docs/exchange.md for resetting it by hand.
        """
        from clearing_tools.exchange.local import simulated_session_dirs

        if any(
            c.health().state in ("running", "degraded")
            for c in self.components
            if c.name in comps.EXCHANGE_COMPONENTS
        ):
            return  # the session is live
        for path in simulated_session_dirs(self.config):
            shutil.rmtree(path, ignore_errors=True)

    def _bootstrap(self, stamp_identity: bool) -> None:
        self.bootstrap()
        if stamp_identity:
            from clearing_tools.local.identity import stamp

            stamp(self.config)

    def bootstrap(self) -> None:
        """Topics, tables and reference data (idempotent)."""
        from clearing.topics import TOPICS

        from clearing_tools.local.broker import create_topics
        from clearing_tools.local.dynamodb import (
            create_tables,
            dynamodb_resource,
            seed_reference_data,
            wait_for_dynamodb,
        )

        topics = {t: self.config.partitions_for(t) for t in [*TOPICS, *self.config.extra_topics]}
        create_topics(self.config.bootstrap_servers, topics)
        dynamodb = dynamodb_resource(self.config.dynamodb_url, self.config.region)
        wait_for_dynamodb(dynamodb)
        self.table_names = create_tables(dynamodb, self.config.table_prefix, self._template())
        if self.config.seed_reference_data and "ReferenceTable" in self.table_names:
            seed_reference_data(dynamodb.Table(self.table_names["ReferenceTable"]))

    def wait_for_workers(self, timeout: float) -> None:
        """Until every planned worker has assigned its partitions and written its state."""
        from clearing_tools.local.esm import mapping_specs, read_supervisor_state, read_worker_states
        from clearing_tools.local.processes import pid_alive, read_pid

        if not mapping_specs(self.config):
            return
        supervisor_log = self.config.state_path / "logs" / "esm-supervisor.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            supervisor = read_supervisor_state(self.config)
            if supervisor and supervisor["workers"]:
                states = read_worker_states(self.config)
                failed = [s for s in states if s.get("failed")]
                if failed:
                    worker = failed[0]
                    raise RuntimeStartError(
                        f"mapping {worker['mapping_id']} failed: {worker['failed']} "
                        f"(log: {self.config.state_path / 'logs' / ('esm-' + worker['worker_id'] + '.log')})"
                    )
                if set(supervisor["workers"]) <= {s["worker_id"] for s in states}:
                    return
            pid = read_pid(self.config.state_path / "pids" / "esm-supervisor.pid")
            if not (pid and pid_alive(pid)):
                raise RuntimeStartError(with_log_cause("esm-supervisor exited during start", supervisor_log))
            time.sleep(0.1)
        raise RuntimeStartError(
            with_log_cause(f"event-source mapping workers not ready after {timeout:.0f} s", supervisor_log)
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
        from clearing_tools.local.invoke import load_template

        return load_template(self.config)

    def env_for_function(self, logical_id: str) -> dict[str, str]:
        """The environment a handler gets locally (Globals + function env, local endpoints)."""
        from clearing_tools.local.invoke import find_function, function_environment

        return function_environment(self.config, find_function(self.config, logical_id))

    def status(self, with_lag: bool = True, check_identity: bool = True) -> RuntimeStatus:
        """Components, mappings (lag, counters, failed state, on-failure records) and `problems`: state
        lost by a reset broker or store, failed mappings, a committed offset beyond the log's end."""
        from clearing_tools.local.esm import mapping_specs, read_supervisor_state, read_worker_states
        from clearing_tools.local.identity import read_identity, reset_problems

        result = RuntimeStatus([c.health() for c in self.components])
        identity = read_identity(self.config)
        result.run_id = (identity or {}).get("run_id")
        broker_reset = False
        broker = next((c for c in result.components if c.name == "broker"), None)
        broker_up = broker is not None and broker.state in ("running", "external")
        if check_identity and identity and any(c.state in ("running", "external") for c in result.components):
            stopped = {c.name for c in result.components if c.state == "stopped"}
            for problem in reset_problems(self.config, identity):
                text = str(problem)
                if not problem.lost and problem.component in stopped:  # a local in-memory process: gone
                    text = f"{problem.component}: its process is gone, and with it the run's state it kept in memory"
                    broker_reset = broker_reset or problem.component == "broker"
                broker_reset = broker_reset or (problem.lost and problem.component == "broker")
                result.problems.append(f"{text} -> `clearing down` wipes the run")
        supervisor = read_supervisor_state(self.config) or {"workers": {}}
        supervisor_up = any(c.name == "esm-supervisor" and c.state == "running" for c in result.components)
        states = read_worker_states(self.config)
        onfailure = onfailure_counts(self.config)
        probe = LagProbe(self.config) if with_lag and broker_up and not broker_reset else None
        try:
            for spec in mapping_specs(self.config):
                lag: dict[str, int] | None = None
                if probe is not None:
                    try:
                        lag = probe.lag(spec.group_id, spec.topics)
                    except Exception as exc:  # noqa: BLE001 - unknown, never 0
                        result.error = one_line(f"lag unavailable: {exc}")
                mine = [s for s in states if s["mapping_id"] == spec.mapping_id]
                restarts = sum(
                    w["restarts"]
                    for wid, w in supervisor["workers"].items()
                    if wid.startswith(spec.mapping_id + ".w")
                )
                failed = [s["failed"] for s in mine if s.get("failed")]
                blocked = [s["blocked"] for s in mine if s.get("blocked")]
                if failed:
                    state, reason = "failed", failed[0]
                elif not supervisor_up:
                    state, reason = "stopped", ""
                elif blocked:  # retrying a batch until the component answers again
                    state, reason = "blocked", f"waiting for {blocked[0]}"
                elif lag is None and (with_lag or broker_reset or not broker_up):
                    state = "unknown"
                    reason = (
                        "broker lost the run's state" if broker_reset else "broker not answering: lag unknown"
                    )
                else:
                    state, reason = "running", ""
                negative = {k: v for k, v in (lag or {}).items() if v < 0}
                if negative:
                    reason = reason or (
                        f"committed offsets beyond the log's end {negative}: the broker lost records"
                    )
                    state = "failed"
                if state in ("failed", "unknown", "blocked") and self.config.start_esm:
                    result.problems.append(f"mapping {spec.mapping_id} {state}: {reason}")
                batches, records, path = onfailure.get(spec.mapping_id, (0, 0, ""))
                result.mappings.append(
                    MappingStatus(
                        mapping_id=spec.mapping_id,
                        function_id=spec.function_id,
                        group_id=spec.group_id,
                        topics=spec.topics,
                        lag=None if lag is None else sum(lag.values()),
                        lag_by_partition=lag or {},
                        state=state,
                        reason=reason,
                        records_done=sum(s["records_done"] for s in mine),
                        invocations=sum(s["invocations"] for s in mine),
                        function_errors=sum(s["function_errors"] for s in mine),
                        partial_failures=sum(s["partial_failures"] for s in mine),
                        retries=sum(s["retries"] for s in mine),
                        onfailure_records=records,
                        onfailure_batches=batches,
                        onfailure_file=path,
                        in_flight=any(s["in_flight"] for s in mine),
                        workers=len(mine),
                        restarts=restarts,
                    )
                )
        except Exception as exc:  # noqa: BLE001 - status must still show the components
            result.error = one_line(f"mappings unavailable: {exc}")
        finally:
            if probe:
                probe.close()
        return result

    def down_components(self) -> list[str]:
        """What stops the pipeline: components that should run and do not (with their log), lost
        state, failed mappings. [] when nothing is wrong. A component that runs but is degraded (not
        ready) counts once it has been so for DEGRADED_GRACE_S (seen across calls)."""
        lines = []
        degraded_since = self._degraded_since
        now = time.monotonic()
        for component in self.components:
            health = component.health()
            if health.state == "degraded":
                first = degraded_since.setdefault(component.name, now)
                if now - first < DEGRADED_GRACE_S:
                    continue
            else:
                degraded_since.pop(component.name, None)
            if health.state not in ("running", "external"):
                log_path = getattr(component, "log_path", None)
                lines.append(
                    f"{component.name} is {health.state}" + (f" (log: {log_path})" if log_path else "")
                )
        return lines + self.status(with_lag=False).problems

    def _raise_if_down(self, what: str) -> None:
        down = self.down_components()
        if down:
            raise RuntimeStateError(f"{what}: " + "; ".join(down))

    def wait_until_idle(self, timeout: float = 60.0, settle_rounds: int = 2) -> float:
        """Block until every mapping has committed everything on its topics and nothing is in flight.

        Idle must be seen in `settle_rounds` consecutive probes with the same end and committed offsets:
        a record that a handler produced while one probe was reading other partitions changes the next. Returns seconds waited; raises
        TimeoutError (with the lag left) otherwise, or RuntimeStateError naming the component that is down,
        the mapping that failed or the state that was lost, as soon as it sees one.
        """
        from clearing_tools.local.esm import mapping_specs, read_worker_states

        specs = mapping_specs(self.config)
        probe = LagProbe(self.config)
        started = time.monotonic()
        deadline = started + timeout
        previous, rounds, last_lag = None, 0, {}
        next_check = started + HEALTH_CHECK_INTERVAL_S
        try:
            while True:
                snapshot, busy = {}, False
                try:
                    for spec in specs:
                        offsets = probe.offsets(spec.group_id, spec.topics)
                        snapshot[spec.mapping_id] = offsets
                        busy = busy or any(end > done for end, done in offsets.values())
                except Exception as exc:  # noqa: BLE001 - which component is down says more
                    self._raise_if_down(f"mappings cannot be probed ({one_line(exc, 100)})")
                    raise
                states = read_worker_states(self.config)
                failed = [s for s in states if s.get("failed")]
                if failed:
                    raise RuntimeStateError(
                        f"mapping {failed[0]['mapping_id']} failed: {failed[0]['failed']} (`clearing status`)"
                    )
                if time.monotonic() >= next_check:  # a dead moto shows as lag that never moves
                    self._raise_if_down("mappings not idle")
                    next_check = time.monotonic() + HEALTH_CHECK_INTERVAL_S
                busy = busy or any(s.get("in_flight") for s in states)
                last_lag = {m: sum(e - d for e, d in v.values()) for m, v in snapshot.items()}
                if not busy:
                    rounds = rounds + 1 if snapshot == previous else 1
                    if rounds >= settle_rounds:
                        self._raise_if_down(
                            "mappings idle, but"
                        )  # idle over a dead or reset store is no success
                        return time.monotonic() - started
                else:
                    rounds = 0
                previous = snapshot
                if time.monotonic() > deadline:
                    self._raise_if_down(f"mappings not idle after {timeout} s")
                    raise TimeoutError(f"mappings not idle after {timeout} s; lag {json.dumps(last_lag)}")
                # A probe round costs ~10 ms of CPU per mapping (kafka-python round trips): polling
                # a busy pipeline every 0.1 s took half a core from it. Poll slowly while there is
                # lag, quickly while confirming idleness.
                time.sleep(0.1 if not busy else BUSY_PROBE_INTERVAL_S)
        finally:
            probe.close()
