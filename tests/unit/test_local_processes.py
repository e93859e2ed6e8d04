"""The one-line causes `clearing up` takes from a component's log (clearing_tools.local.processes)."""

from __future__ import annotations

import json

from clearing_tools.local.processes import log_cause, one_line, with_log_cause


def test_the_exception_line_of_a_traceback_is_the_cause(tmp_path):
    log = tmp_path / "moto.log"
    log.write_text(
        "moto_http11: moto 5.2.5 on 127.0.0.1:18000\n"
        'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
        "botocore.exceptions.ClientError: An error occurred (500)\n    \n"
        "waitress: serving\n"
    )
    assert log_cause(log) == "botocore.exceptions.ClientError: An error occurred (500)"


def test_a_json_error_line_gives_its_message_else_the_last_line(tmp_path):
    log = tmp_path / "fix-proxy.log"
    error = {"level": "ERROR", "message": "logon rejected", "exception": "ValueError: bad password"}
    log.write_text(json.dumps({"level": "INFO", "message": "start"}) + "\n" + json.dumps(error) + "\n")
    assert log_cause(log) == "logon rejected ValueError: bad password"
    plain = tmp_path / "broker.log"
    plain.write_text("starting\n\naddress in use: 127.0.0.1:19092\n\n")
    assert log_cause(plain) == "address in use: 127.0.0.1:19092"


def test_only_this_starts_output_counts_and_a_missing_log_says_so(tmp_path):
    log = tmp_path / "moto.log"
    log.write_text("KeyError: 'an earlier run'\n")
    since = log.stat().st_size
    assert log_cause(log, since) is None
    with log.open("a") as out:
        out.write("OSError: this run\n")
    assert log_cause(log, since) == "OSError: this run"
    assert with_log_cause("moto: failed", tmp_path / "absent.log") == (
        f"moto: failed (log: {tmp_path / 'absent.log'}, empty)"
    )
    assert one_line("a\n  b\tc", 5) == "a b c"
    assert one_line("x" * 10, 6) == "xxx..."
