"""What the local runtime does when something fails or loses its memory: one clear line, nothing left
running, nothing lost silently (docs/local-runtime.md "Failures and lost state")."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from clearing_tools.cli.main import main
from clearing_tools.local.config import RuntimeConfig
from clearing_tools.local.esm import read_worker_states
from clearing_tools.local.identity import reset_problems
from clearing_tools.local.processes import OWNER_ENV, RuntimeStartError, RuntimeStateError, read_pid
from clearing_tools.local.runtime import LocalRuntime
from kafka import KafkaProducer

from tests.conftest import free_port
from tests.integration.esm_support import APP_DIR, TEMPLATE

pytestmark = [pytest.mark.integration]

FAKE_MOTO = """
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        sys.stderr.write("Traceback (most recent call last):\\n  File 'moto/core.py', line 1\\n")
        sys.stderr.write("KeyError: 'fake moto is broken'\\n")
        sys.stderr.flush()
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[sys.argv.index("-p") + 1])), Handler).serve_forever()
"""


def processes_of(state: Path) -> list[str]:
    """Processes started for this state dir (the runtime marks them with OWNER_ENV) still alive."""
    marker = f"{OWNER_ENV}={state.resolve()}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                status = (proc / "status").read_text()
                if "\nState:\tZ" not in status:
                    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                    found.append(f"{proc.name} {cmdline}")
        except OSError:
            continue
    return found


def assert_nothing_left(state: Path) -> None:
    deadline = time.monotonic() + 5
    while processes_of(state) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_of(state) == []


def one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert "Traceback" not in text, text
    joined = " ".join(lines)  # rich wraps long lines at the terminal width: one message, maybe wrapped
    return " ".join(joined.split())


# ----------------------------------------------------------------------------- A, B: start-up failures


def test_a_component_that_fails_after_listening_is_named_with_its_logs_cause_and_nothing_is_left(
    tmp_path, capsys, monkeypatch
):
    # Given a "moto" that listens but answers every call with 500 (its log has the exception)
    fake = tmp_path / "fake_moto.py"
    fake.write_text(FAKE_MOTO)
    monkeypatch.setattr(
        "clearing_tools.local.dynamodb.moto_argv",
        lambda host, port: [sys.executable, str(fake), "-p", str(port)],
    )
    state = tmp_path / "state"
    capsys.readouterr()
    # When `clearing up` starts the broker, then moto
    code = main(["up", "--state-dir", str(state), "--broker-port", str(free_port()),
                 "--moto-port", str(free_port()), "--no-esm"])  # fmt: skip
    # Then it fails with one line: the component, the cause from its log, the log's path
    assert code == 1
    message = one_error_line(capsys.readouterr().err)
    assert message.startswith("clearing up failed: moto:"), message
    assert "KeyError: 'fake moto is broken'" in message
    assert str(state / "logs" / "moto.log") in message
    # and the broker it had started is stopped too; the next `up` starts cold (no run recorded)
    assert_nothing_left(state)
    assert not (state / "identity.json").exists()


def test_a_proxy_that_never_logs_on_is_stopped_with_everything_up_had_started(tmp_path):
    # Given an exchange endpoint where nothing listens: the proxy starts but never logs on
    state = tmp_path / "state"
    config = RuntimeConfig(
        state_dir=state, broker_port=free_port(), moto_port=free_port(), start_esm=False,
        start_exchange=True, exchange_endpoint=f"127.0.0.1:{free_port()}", proxy_gateway_port=free_port(),
        proxy_health_port=free_port(), fix_logon_timeout=2, kafka_bootstrap_servers=None,
        dynamodb_endpoint_url=None, proxy_endpoint=None,
    )  # fmt: skip
    with pytest.raises(RuntimeStartError, match=r"fix-proxy: no FIX logon within 2 s.*log: .*fix-proxy.log"):
        LocalRuntime(config).start()
    # Then no process of this state dir survives: not the broker, not moto, not the proxy
    assert_nothing_left(state)
    assert not list((state / "pids").glob("*.pid"))


def test_a_taken_port_and_a_bad_binary_are_one_line_each(tmp_path, capsys, monkeypatch):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        capsys.readouterr()
        assert main(["up", "--state-dir", str(tmp_path / "a"), "--broker-port", str(free_port()),
                     "--moto-port", str(port), "--no-esm"]) == 1  # fmt: skip
        message = one_error_line(capsys.readouterr().err)
        assert f"port 127.0.0.1:{port} for moto is already in use" in message
        assert "--moto-port / CLEARING_MOTO_PORT" in message
        assert_nothing_left(tmp_path / "a")  # the broker started before moto is stopped
    monkeypatch.setenv("CLEARING_BROKER_BINARY", "/nonexistent/tansu")
    assert main(["up", "--state-dir", str(tmp_path / "b"), "--broker-port", str(free_port()),
                 "--moto-port", str(free_port()), "--no-esm"]) == 1  # fmt: skip
    assert one_error_line(capsys.readouterr().err) == (
        "clearing up failed: broker: binary not found: /nonexistent/tansu"
    )


# ----------------------------------------------------------------------------- D, E, G: lost state


def _echo_runtime(tmp_path: Path) -> tuple[LocalRuntime, Path]:
    template = tmp_path / "template.yaml"
    template.write_text(TEMPLATE.format(code_uri=str(APP_DIR), batch_size=10, retries=0, bisect="false"))
    results = tmp_path / "results.jsonl"
    config = RuntimeConfig(
        state_dir=tmp_path / "state", broker_port=free_port(), moto_port=free_port(), template_path=template,
        template_parameters={"ResultsFile": str(results)}, extra_topics=["esm.test"], onfailure_topic=None,
        retry_backoff_s=0.01, start_exchange=False, kafka_bootstrap_servers=None, dynamodb_endpoint_url=None,
        exchange_endpoint=None, proxy_endpoint=None,
    )  # fmt: skip
    return LocalRuntime(config, owner_pid=os.getpid()), results


def _send(runtime: LocalRuntime, values: list[dict]) -> None:
    producer = KafkaProducer(bootstrap_servers=runtime.config.bootstrap_servers)
    for value in values:
        producer.send("esm.test", value=json.dumps(value).encode(), partition=0)
    producer.flush()
    producer.close()


def _wait_failed(runtime: LocalRuntime, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        failed = [s["failed"] for s in read_worker_states(runtime.config) if s.get("failed")]
        if failed:
            return failed[0]
        time.sleep(0.2)
    raise AssertionError(f"no mapping failed within {timeout} s")


def _results(path: Path) -> list[int]:
    return [json.loads(line)["n"] for line in path.read_text().splitlines()] if path.exists() else []


def test_a_restarted_broker_stops_the_mapping_loudly_and_up_refuses_the_lost_state(tmp_path, capsys):
    from clearing_tools.local.broker import create_topics
    from clearing_tools.local.components import broker_component

    runtime, results = _echo_runtime(tmp_path)
    state = runtime.config.state_path
    runtime.start()
    try:
        # Given a run with 5 records done and one that went to the on-failure destination
        _send(runtime, [{"n": n} for n in range(5)])
        runtime.wait_until_idle(30)
        assert sorted(_results(results)) == [0, 1, 2, 3, 4]
        _send(runtime, [{"n": 99, "fail": "poison"}])
        runtime.wait_until_idle(30)
        status = runtime.status()
        assert status.ok, status.problems
        (mapping,) = status.mappings
        assert (mapping.onfailure_records, mapping.onfailure_batches) == (1, 1)
        assert mapping.onfailure_file.endswith("onfailure/EchoFunction.jsonl")
        assert status.to_dict()["mappings"][0]["onfailure_records"] == 1
        # When the in-memory broker dies and a new (empty) one takes its port, and new records arrive
        os.kill(read_pid(state / "pids" / "broker.pid"), signal.SIGKILL)
        time.sleep(1)
        broker_component(runtime.config).start()
        create_topics(runtime.config.bootstrap_servers, {"esm.test": 1})
        _send(runtime, [{"n": n} for n in range(100, 103)])
        # Then the mapping stops, saying why, instead of committing its old position into the new log
        reason = _wait_failed(runtime)
        assert "broker" in reason and ("reset" in reason or "log" in reason), reason
        assert sorted(_results(results)) == [0, 1, 2, 3, 4]  # nothing processed around the loss
        status = runtime.status()
        assert not status.ok and status.mappings[0].state == "failed"
        assert any("broker: was reset" in p for p in status.problems), status.problems
        assert [p.component for p in reset_problems(runtime.config)] == ["broker"]
        capsys.readouterr()
        assert main(["status", "--state-dir", str(state)]) == 3
        # publishing into the new, empty broker is refused too
        capsys.readouterr()
        assert main(["publish", "--state-dir", str(state), "-n", "3"]) == 1
        assert "not publishing: broker: was reset" in one_error_line(capsys.readouterr().err)
        # and `up` refuses to carry on with the lost state, naming `clearing down`
        with pytest.raises(RuntimeStateError, match=r"broker: was reset.*clearing down"):
            LocalRuntime(runtime.config).start()
        with pytest.raises(RuntimeStateError, match=r"wait|failed|reset"):
            runtime.wait_until_idle(10)
    finally:
        runtime.down()
    # `down` wipes what belonged to the run, the on-failure records included, and leaves nothing running
    assert not (state / "onfailure").exists() and not (state / "identity.json").exists()
    assert_nothing_left(state)


def test_a_dead_then_restarted_moto_is_named_and_stops_the_mapping(tmp_path):
    from clearing_tools.local.components import moto_component

    runtime, results = _echo_runtime(tmp_path)
    state = runtime.config.state_path
    runtime.start()
    try:
        _send(runtime, [{"n": 1}])
        runtime.wait_until_idle(30)
        # When moto dies, waiting for the pipeline names it within seconds (no 120 s timeout)
        os.kill(read_pid(state / "pids" / "moto.pid"), signal.SIGKILL)
        started = time.monotonic()
        _send(runtime, [{"n": 2}])
        with pytest.raises(RuntimeStateError, match=r"moto is stopped \(log: .*moto.log\)"):
            runtime.wait_until_idle(60)
        assert time.monotonic() - started < 20
        status = runtime.status()
        assert not status.ok and any(p.startswith("moto: its process is gone") for p in status.problems)
        # and when an empty moto comes back on its port, the mapping stops: its checkpoints are gone
        moto_component(runtime.config).start()
        reason = _wait_failed(runtime)
        assert reason.startswith("moto: was reset"), reason
        assert [p.component for p in reset_problems(runtime.config)] == ["moto"]
        status = runtime.status()
        assert not status.ok and any(p.startswith("moto: was reset") for p in status.problems)
    finally:
        runtime.down()
    assert_nothing_left(state)


def test_without_a_marker_a_position_beyond_the_new_logs_end_still_fails_the_mapping(tmp_path):
    from clearing_tools.local.broker import create_topics
    from clearing_tools.local.components import broker_component

    runtime, results = _echo_runtime(tmp_path)
    state = runtime.config.state_path
    runtime.start()
    try:
        _send(runtime, [{"n": n} for n in range(5)])
        runtime.wait_until_idle(30)
        # Given a worker that knows no run identity (it started after identity.json went away)
        (state / "identity.json").unlink()
        (worker,) = read_worker_states(runtime.config)
        os.kill(worker["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = read_worker_states(runtime.config)
            if states and states[0]["pid"] != worker["pid"] and states[0]["committed"]:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("worker not restarted")
        # When the broker restarts empty and 3 records arrive (offsets 0-2, below the mapping's 5)
        os.kill(read_pid(state / "pids" / "broker.pid"), signal.SIGKILL)
        time.sleep(1)
        broker_component(runtime.config).start()
        create_topics(runtime.config.bootstrap_servers, {"esm.test": 1})
        _send(runtime, [{"n": n} for n in range(100, 103)])
        # Then the mapping notices its position is beyond the log (or that the log went back) and stops
        reason = _wait_failed(runtime)
        assert "esm.test-0" in reason and "log" in reason, reason
        assert sorted(_results(results)) == [0, 1, 2, 3, 4]
    finally:
        runtime.down()
    assert_nothing_left(state)


def test_demo_that_cannot_start_says_why_in_one_line(tmp_path, capsys, monkeypatch):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("CLEARING_BROKER_PORT", str(free_port()))
        monkeypatch.setenv("CLEARING_MOTO_PORT", str(port))
        capsys.readouterr()
        state = tmp_path / "state"
        assert main(["demo", "--orders", "10", "--state-dir", str(state), "--report", ""]) == 1
        message = one_error_line(capsys.readouterr().err)
        assert message.startswith("clearing demo failed: port 127.0.0.1:"), message
        assert f"127.0.0.1:{port} for moto is already in use" in message and "--moto-port" in message
        assert_nothing_left(state)
