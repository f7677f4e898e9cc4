"""End-to-end fixtures: the `make dev` stack as a subprocess, spoken to over HTTP."""

from __future__ import annotations

import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

READY_LINE = "threadline local stack ready on "
START_TIMEOUT_SECONDS = 90


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningStack:
    base_url: str
    twilio_auth_token: str
    api_token: str
    process: subprocess.Popen[str]
    output: list[str]
    slack_signing_secret: str = ""
    telegram_secret_token: str = ""
    telegram_bot_token: str = ""
    lake_dir: Path | None = None


def launch_local_stack(
    env: dict[str, str], timeout: float = START_TIMEOUT_SECONDS
) -> tuple[subprocess.Popen[str], list[str], str]:
    """``python -m devstack`` with ``env``: the process, its console lines, its base URL.

    The console keeps being read (into the list) so the stack never blocks on it.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    base_url = None
    while time.monotonic() < deadline and base_url is None:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        if READY_LINE in line:
            base_url = line.split(READY_LINE, 1)[1].strip()
    if base_url is None:
        process.kill()
        raise RuntimeError("local stack did not become ready:\n" + "".join(output[-60:]))
    return process, output, base_url


@pytest.fixture(scope="session")
def local_stack() -> Iterator[RunningStack]:
    with running_stack() as stack:
        yield stack


@contextmanager
def running_stack(extra_env: dict[str, str] | None = None) -> Iterator[RunningStack]:
    """`make dev` on a free port with fresh secrets (and ``extra_env``), until exit."""
    port = free_port()
    # The stack's analytics lake: the test run's own, never the developer's.
    lake_dir = Path(tempfile.mkdtemp(prefix="threadline-lake-"))
    token = secrets.token_hex(16)
    api_token = secrets.token_hex(16)
    slack_signing_secret = secrets.token_hex(16)
    telegram_secret_token = secrets.token_urlsafe(24)
    telegram_bot_token = f"{secrets.randbelow(10**9) + 10**9}:{secrets.token_urlsafe(26)[:35]}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "THREADLINE_PORT": str(port),
        "TWILIO_AUTH_TOKEN": token,
        "THREADLINE_API_TOKEN": api_token,
        "SLACK_SIGNING_SECRET": slack_signing_secret,
        "TELEGRAM_SECRET_TOKEN": telegram_secret_token,
        "TELEGRAM_BOT_TOKEN": telegram_bot_token,
        "PYTHONUNBUFFERED": "1",
        "THREADLINE_LAKE_DIR": str(lake_dir),
        **(extra_env or {}),
    }
    try:
        process, output, base_url = launch_local_stack(env)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    stack = RunningStack(
        base_url,
        token,
        api_token,
        process,
        output,
        slack_signing_secret=slack_signing_secret,
        telegram_secret_token=telegram_secret_token,
        telegram_bot_token=telegram_bot_token,
        lake_dir=lake_dir,
    )
    try:
        yield stack
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
