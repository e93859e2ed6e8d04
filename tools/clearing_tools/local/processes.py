"""Background processes of the local runtime: ports, pid files, detached start and stop by pid.

`down` stops only what `up` recorded: every process started here gets a pid file in
<state_dir>/pids/, and stopping means signalling exactly those pids (never a name pattern).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path


class RuntimeStartError(RuntimeError):
    """A component could not start: a port is taken, a binary is missing, a health check failed."""


class RuntimeStateError(RuntimeError):
    """The runtime's state is not trustworthy: a component died or was reset (lost its memory)."""


# Set in the environment of every process the runtime starts: which state dir owns it (leak checks,
# `ps e`); the value is the absolute state path.
OWNER_ENV = "CLEARING_RUNTIME_STATE"

_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit|Incompatible|Interrupt)\b"
)


def one_line(text: object, limit: int = 400) -> str:
    """`text` on one line (whitespace runs collapsed), cut to `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def log_cause(log_path: Path, since: int = 0, max_bytes: int = 16384) -> str | None:
    """The most telling line at the end of a component's log: the last exception line (`KeyError: ...`)
    or error message of a JSON log line, else the last non-empty line; None for an empty or missing log.
    `since`: a byte offset where this run's output starts (logs are appended to across runs)."""
    try:
        with open(log_path, "rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(since if since <= size else 0, size - max_bytes))
            tail = log.read().decode("utf-8", "replace")
    except OSError:
        return None
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    if not lines:
        return None
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and str(entry.get("level", "")).upper() in ("ERROR", "CRITICAL"):
                return one_line(f"{entry.get('message', '')} {entry.get('exception', '')}".strip())
        elif _EXCEPTION_LINE.match(line):
            return one_line(line)
    return one_line(lines[-1])


def with_log_cause(message: str, log_path: Path, since: int = 0) -> str:
    """`message; cause: <log's last telling line> (log: <path>)` on one line."""
    cause = log_cause(log_path, since)
    text = one_line(message, 300)
    return f"{text}; cause: {cause} (log: {log_path})" if cause else f"{text} (log: {log_path}, empty)"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def ensure_port_free(host: str, port: int, what: str, hint: str | None = None) -> None:
    """Raise naming the port, its user and how to pick another (`hint`: the flag / env to use)."""
    if port_is_open(host, port):
        hint = hint or f"--{what}-port / CLEARING_{what.upper().replace('-', '_')}_PORT"
        raise RuntimeStartError(
            f"port {host}:{port} for {what} is already in use; pick another with the flag or env "
            f"(e.g. {hint}) or stop what holds it"
        )


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_is_open(host, port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeStartError(f"process {proc.args!r} exited with {proc.returncode} before listening")
        time.sleep(0.05)
    raise RuntimeStartError(f"nothing listens on {host}:{port} after {timeout:.0f} s")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def spawn(
    argv: list[str],
    log_path: Path,
    pid_path: Path | None = None,
    env: dict[str, str] | None = None,
    detached: bool = True,
) -> subprocess.Popen:
    """Start argv in the background with output appended to log_path; record its pid in pid_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - the child keeps the file
    try:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=detached,
            close_fds=True,
        )
    except FileNotFoundError as exc:
        raise RuntimeStartError(f"binary not found: {argv[0]}") from exc
    finally:
        log.close()
    if pid_path is not None:
        pid_path.parent.mkdir(parents=True, exist_ok=True)
        pid_path.write_text(str(proc.pid))
    return proc


def stop_pid(pid: int, timeout: float = 5.0) -> bool:
    """SIGTERM one pid, then SIGKILL it after timeout. True when it was running."""
    if not pid_alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


def stop_started(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """Stop a process this one started (SIGTERM, then SIGKILL) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def start_listening(
    what: str,
    argv: list[str],
    host: str,
    port: int,
    log_path: Path,
    pid_path: Path | None = None,
    detached: bool = True,
    timeout: float = 30.0,
) -> subprocess.Popen:
    """Spawn a server and wait until it listens on host:port; on any failure stop it (never leave it
    behind) and name the cause from its log."""
    ensure_port_free(host, port, what)
    proc = spawn(argv, log_path, pid_path, detached=detached)
    try:
        wait_for_port(host, port, timeout=timeout, proc=proc)
    except BaseException as exc:
        stop_started(proc)
        if isinstance(exc, RuntimeStartError):
            raise RuntimeStartError(with_log_cause(f"{what}: {exc}", log_path)) from exc
        raise
    return proc


def read_pid(pid_path: Path) -> int | None:
    try:
        return int(pid_path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def write_json_atomic(path: Path, text: str) -> None:
    """Write a small state file so that readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
