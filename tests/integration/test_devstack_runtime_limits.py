"""The local stack's function runtime on a busy machine: invocations past the stack-wide
limit wait for a turn instead of running slower, a timeout does not count the time a
worker waited for a CPU, and the warm workers of all functions stay under a limit.

Real worker processes (devstack's ``_bootstrap.py``) run small handlers written here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from devstack.aws import AwsTarget
from devstack.runtime import (
    AWS_NORMAL_SECONDS,
    FunctionRuntime,
    StarvationClock,
    run_delay_seconds,
)
from tests.unit.devstack_fakes import function_spec

HANDLER = """
import os
import time


def sleeping(event, context):
    time.sleep(event["seconds"])
    return {"pid": os.getpid()}


def computing(event, context):
    # Pinned to the CPU the test keeps busy: half of it at most.
    os.sched_setaffinity(0, {event["cpu"]})
    started = time.process_time()
    while time.process_time() - started < event["cpu_seconds"]:
        pass
    return {"pid": os.getpid()}
"""
AWS = AwsTarget("http://127.0.0.1:9", "us-east-1")


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(HANDLER, encoding="utf-8")
    return tmp_path


def runtime(code_dir: Path, handler: str, names: list[str], **limits: int) -> FunctionRuntime:
    specs = {
        name: replace(
            function_spec(name), code_dir=code_dir, handler=f"app.{handler}", timeout_seconds=1
        )
        for name in names
    }
    return FunctionRuntime(specs, AWS, **limits)


@pytest.fixture
def cpu_hog() -> Iterator[int]:
    """A process spinning on one CPU; yields that CPU's number."""
    cpu = min(os.sched_getaffinity(0))
    hog = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass",
        ]
    )
    try:
        yield cpu
    finally:
        hog.kill()
        hog.wait()


def test_invocations_past_the_limit_wait_for_a_turn_without_timing_out(code_dir):
    # Three invocations of 0.6 s with a 1 s Timeout, one turn at a time: run together
    # they would finish in 0.6 s; queued, the last one waits 1.2 s before its clock
    # starts, and none times out.
    with runtime(code_dir, "sleeping", ["Fn"], max_concurrent=1) as functions:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=3) as pool:
            invocations = list(
                pool.map(lambda _: functions.invoke("Fn", {"seconds": 0.6}), range(3))
            )
        elapsed = time.monotonic() - started
    assert [invocation.error_type for invocation in invocations] == [None] * 3
    assert elapsed >= 3 * 0.6


def test_a_sleeping_handler_past_its_timeout_is_still_stopped(code_dir):
    with runtime(code_dir, "sleeping", ["Fn"]) as functions:
        started = time.monotonic()
        invocation = functions.invoke("Fn", {"seconds": 30})
    assert invocation.error_type == "Sandbox.Timedout"
    # 1 s, plus what a busy machine kept this process or the worker from running.
    assert time.monotonic() - started < 10


@pytest.mark.skipif(not Path("/proc/self/schedstat").exists(), reason="Linux schedstat")
def test_a_timeout_does_not_count_the_time_the_worker_waited_for_a_cpu(code_dir, cpu_hog):
    # 0.7 s of CPU within a 1 s Timeout, on a CPU shared with a spinning process: about
    # 1.4 s of wall time, half of it in the run queue. Lambda would have given the
    # function its CPU; the local stack must not call that a timeout.
    with runtime(code_dir, "computing", ["Fn"]) as functions:
        functions.invoke("Fn", {"cpu": cpu_hog, "cpu_seconds": 0.01})  # warm
        started = time.monotonic()
        invocation = functions.invoke("Fn", {"cpu": cpu_hog, "cpu_seconds": 0.7})
        elapsed = time.monotonic() - started
    assert invocation.error_type is None, invocation.error_message
    assert elapsed > 1.0, "the worker was not slowed: the test proves nothing"


def test_a_busy_handler_past_its_timeout_is_stopped(code_dir):
    with runtime(code_dir, "computing", ["Fn"]) as functions:
        invocation = functions.invoke("Fn", {"cpu": min(os.sched_getaffinity(0)), "cpu_seconds": 5})
    assert invocation.error_type == "Sandbox.Timedout"


def test_warm_workers_of_all_functions_stay_under_the_limit(code_dir):
    names = ["First", "Second", "Third"]
    with runtime(code_dir, "sleeping", names, max_warm_workers=2) as functions:
        pids = []
        for name in [*names, *names]:
            invocation = functions.invoke(name, {"seconds": 0})
            assert invocation.ok, invocation.error_message
            pids.append(invocation.payload["pid"])
            assert sum(functions.pool(n).workers for n in names) <= 2
        # The least recently used idle worker made room each time: every call was cold.
        assert len(set(pids)) == 6


def test_run_delay_is_read_for_a_live_process_and_zero_for_a_gone_one():
    assert run_delay_seconds(os.getpid()) >= 0.0
    assert run_delay_seconds(2**22 + 1) == 0.0


def test_time_the_embedded_aws_holds_a_request_counts_as_lost():
    # The worker waits on the embedded AWS; while it holds a request longer than
    # DynamoDB would, the worker's timeout clock is not running.
    clock = StarvationClock(period=0.05, aws_backlog=lambda: AWS_NORMAL_SECONDS + 1)
    try:
        time.sleep(0.5)
        lost = clock.seconds()
    finally:
        clock.close()
    assert lost >= 0.3


def test_a_worker_is_read_when_its_pipe_is_past_descriptor_1024(code_dir):
    # A long session holds many descriptors (moto keeps each S3 object over 64 KB in a
    # temporary file); select() refused descriptors past 1024 and every invocation
    # after that point failed.
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        pytest.skip(f"the descriptor limit is {soft}")
    held = []
    try:
        while len(held) < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        with runtime(code_dir, "sleeping", ["Fn"]) as functions:
            invocation = functions.invoke("Fn", {"seconds": 0})
    finally:
        for descriptor in held:
            os.close(descriptor)
    assert invocation.error_type is None
    assert invocation.payload["pid"] > 0
