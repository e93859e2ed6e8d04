"""Errors a user can cause print one line naming the cause and where to look, never a traceback.

Given no local stack (a DynamoDB port nobody listens on), a missing file, or a reader that closes
the pipe early, when the CLI runs, then it answers in one line (or quietly, for the pipe).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from clearing_tools.cli.commands.queries import parse_order_ref

from tests.conftest import free_port, venv_tool


def _clearing(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {
        **os.environ,
        "CLEARING_MOTO_PORT": str(free_port()),
        "CLEARING_BROKER_PORT": str(free_port()),
    }
    full_env.pop("ORDERS_TABLE", None)
    full_env.update(env or {})
    return subprocess.run(
        [venv_tool("clearing"), *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )


@pytest.mark.parametrize("command", [["orders"], ["trades", "--limit", "3"], ["verify"], ["obligations"]])
def test_a_stack_that_is_not_running_is_one_line_at_once(command):
    started = time.monotonic()
    result = _clearing(*command)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "local stack is not running" in lines[0] and "clearing up" in lines[0]
    assert time.monotonic() - started < 15  # no half a minute of botocore retries


def test_a_missing_file_is_one_line():
    result = _clearing("publish", "--file", "/nonexistent/orders.jsonl")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "clearing publish: file not found: /nonexistent/orders.jsonl"


def test_a_closed_pipe_ends_quietly():
    # `clearing cost --json | head -c 10`: the reader leaves after a few bytes
    proc = subprocess.Popen(
        [venv_tool("clearing"), "cost", "-r", "50000", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.read(10)
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err
    assert proc.returncode == 0


def test_order_accepts_the_id_that_orders_prints_or_a_client_id_with_member():
    assert parse_order_ref("MBR01:S0-MBR01-0000013", None) == ("MBR01", "S0-MBR01-0000013")
    assert parse_order_ref("MBR01:S0-MBR01-0000013", "MBR01") == ("MBR01", "S0-MBR01-0000013")
    assert parse_order_ref("C-1", "MBR02") == ("MBR02", "C-1")
    with pytest.raises(SystemExit, match="--member"):
        parse_order_ref("C-1", None)


def test_cli_module_runs_under_this_interpreter():
    assert os.path.dirname(venv_tool("clearing")) == os.path.dirname(sys.executable)
