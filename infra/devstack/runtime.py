"""Running functions the way Lambda does: warm workers, each with exactly its own env.

Each function gets a small pool of worker processes (execution environments),
started on demand, reused while warm, replaced when they die or time out. A
worker's environment is its template variables (Globals merged) plus what the
Lambda runtime sets, and nothing inherited from the process that started it: a
variable missing from template.yaml fails here as it would in AWS.

The gateway invokes functions through :meth:`FunctionRuntime.invoke`; so will the
SQS and DynamoDB-stream pollers, with their own event shapes.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from devstack.aws import AwsTarget
from devstack.functions import FunctionSpec
from devstack.template import TemplateError

BOOTSTRAP = Path(__file__).with_name("_bootstrap.py")
DEFAULT_MAX_WORKERS = 4
# Invocations running at once, stack-wide. Lambda runs each in its own environment
# with its own CPU, and DynamoDB answers whatever the load; locally every worker and
# the embedded AWS share this machine's CPUs, and past a few concurrent invocations
# each one only gets slower, until they outlast their Timeout (a 500 that Lambda
# would not give). Beyond this, invocations wait for a turn, their clock not started.
DEFAULT_MAX_CONCURRENT = max(4, 2 * (os.cpu_count() or 1))
# Warm workers kept stack-wide (each is a Python process of 40-90 MB): past this, a
# new worker replaces the least recently used idle one of any function.
DEFAULT_MAX_WARM_WORKERS = 12
# Longer than DynamoDB, SQS or S3 take to answer a call: a request the embedded AWS
# holds longer is the local machine's slowness, not the function's.
AWS_NORMAL_SECONDS = 0.5
# Lambda gives a function's init phase 10 s before it retries init inside the invoke.
INIT_TIMEOUT_SECONDS = 10.0
STOP_GRACE_SECONDS = 2.0

# Lambda refuses to deploy a function that sets any of these itself.
RESERVED_VARIABLES = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)


def function_environment(
    spec: FunctionSpec, aws: AwsTarget, *, path: str | None = None
) -> dict[str, str]:
    """The complete environment a worker of ``spec`` runs with.

    ``path`` is the PATH to give it (default: this process's, so tools a handler
    shells out to resolve as on the developer's machine).
    """
    clashes = sorted(RESERVED_VARIABLES & set(spec.variables))
    if clashes:
        raise TemplateError(
            f"{spec.logical_id} sets reserved variables {clashes}; Lambda would reject it"
        )
    return {
        # Lambda's defaults, which a function's own variables may override.
        "PATH": path if path is not None else os.environ.get("PATH", os.defpath),
        "LANG": "en_US.UTF-8",
        "TZ": "UTC",
        "PYTHONPATH": os.pathsep.join(spec.python_path),
        **spec.variables,
        # What the Lambda runtime sets and a function cannot change.
        "_HANDLER": spec.handler,
        "LAMBDA_TASK_ROOT": str(spec.code_dir),
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime or 'python'}",
        "AWS_LAMBDA_FUNCTION_NAME": spec.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        **aws.client_environment(),
        # A Lambda has no ~/.aws and no instance metadata; locally, the developer's
        # profiles must not leak in and no SDK may wander off to 169.254.169.254.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        # No X-Ray daemon here: the Tracer (threadline.telemetry) stays a no-op rather
        # than sending segments nowhere.
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


@dataclass(frozen=True)
class Invocation:
    """One invoke's outcome: the handler's result, or Lambda's description of a failure."""

    function: str
    request_id: str
    payload: Any = None
    error_type: str | None = None
    error_message: str | None = None
    duration_ms: float = 0.0
    cold_start: bool = False

    @property
    def ok(self) -> bool:
        return self.error_type is None


class WorkerError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


def run_delay_seconds(pid: int) -> float:
    """How long ``pid`` has waited for a CPU while runnable (Linux schedstat), else 0.

    Lambda gives an environment its CPU share for the whole Timeout; a worker on a
    machine busier than its CPUs loses that time waiting in the run queue, so a
    timeout is counted without it.
    """
    try:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as schedstat:
            return int(schedstat.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


class StarvationClock:
    """Seconds this process (moto, the gateway) was kept from serving the workers,
    counted as it goes: every ``period``, the largest run delay any of its threads
    gained, or the whole period while the embedded AWS held a request longer than
    DynamoDB would (:data:`AWS_NORMAL_SECONDS`), whichever is more.

    A worker mostly waits on the embedded AWS, which runs in this process: when the
    machine starves it, or its one interpreter is busy with other requests, the
    worker sleeps on its socket, gaining no run delay of its own, and outlasted its
    Timeout all the same (fuzzed requests at load 11-17 timed out after 18-20 s).
    """

    def __init__(
        self, period: float = 0.25, aws_backlog: Callable[[], float] | None = None
    ) -> None:
        self.period = period
        self._aws_backlog = aws_backlog
        self._starved = 0.0
        self._last: dict[str, float] = self._sample()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="devstack-starvation", daemon=True)
        self._thread.start()

    def seconds(self) -> float:
        return self._starved

    def close(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            sample = self._sample()
            gained = [delay - self._last.get(task, delay) for task, delay in sample.items()]
            lost = max(gained, default=0.0)
            if self._aws_backlog is not None and self._aws_backlog() > AWS_NORMAL_SECONDS:
                lost = max(lost, self.period)
            self._starved += lost
            self._last = sample

    @staticmethod
    def _sample() -> dict[str, float]:
        delays: dict[str, float] = {}
        try:
            tasks = os.listdir("/proc/self/task")
        except OSError:
            return delays
        for task in tasks:
            try:
                with open(f"/proc/self/task/{task}/schedstat", encoding="ascii") as schedstat:
                    delays[task] = int(schedstat.read().split()[1]) / 1e9
            except (OSError, ValueError, IndexError):
                continue
        return delays


class Worker:
    """One execution environment: a Python process running ``_bootstrap.py``."""

    def __init__(
        self,
        spec: FunctionSpec,
        environment: Mapping[str, str],
        starvation: StarvationClock | None = None,
    ) -> None:
        self.spec = spec
        self._starvation = starvation
        # -u: handler output reaches the console as it is written, like CloudWatch;
        # -X utf8: Lambda's Python is UTF-8 whatever the local locale is.
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-u", "-X", "utf8", str(BOOTSTRAP)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=dict(environment),
            cwd=spec.code_dir,
            close_fds=True,
        )
        self._pending = bytearray()
        self.invocations = 0
        self.last_used = time.monotonic()

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float) -> None:
        message = self._receive(time.monotonic() + timeout, phase="init")
        if message.get("type") == "init_error":
            self.stop()
            raise WorkerError(
                "Runtime.ImportModuleError",
                f"{message.get('errorType')}: {message.get('errorMessage')}",
            )
        if message.get("type") != "ready":
            self.kill()
            raise WorkerError("Runtime.InvalidResponse", f"unexpected message {message!r}")

    def invoke(self, event: Any, request_id: str, function_arn: str) -> dict[str, Any]:
        timeout = self.spec.timeout_seconds
        deadline = time.monotonic() + timeout
        request = {
            "requestId": request_id,
            "deadlineMs": int((time.time() + timeout) * 1000),
            "invokedFunctionArn": function_arn,
            "event": event,
        }
        stdin = self._stdin()
        try:
            stdin.write(json.dumps(request).encode() + b"\n")
            stdin.flush()
        except (BrokenPipeError, OSError):
            self.kill()
            raise WorkerError("Runtime.ExitError", self._exit_description()) from None
        self.invocations += 1
        return self._receive(deadline, phase="invoke")

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """End the worker: EOF on its stdin first, a kill if it does not listen."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()
        self._close_stdout()

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait()
        self._close_stdout()

    def _close_stdout(self) -> None:
        if self.process.stdout is not None and not self.process.stdout.closed:
            self.process.stdout.close()

    def _stdin(self) -> IO[bytes]:
        assert self.process.stdin is not None
        return self.process.stdin

    def _receive(self, deadline: float, *, phase: str) -> dict[str, Any]:
        stdout = self.process.stdout
        assert stdout is not None
        descriptor = stdout.fileno()
        delayed_before = self._delayed()
        # poll, not select: select refuses descriptors past 1024, and a long session
        # holds many (moto keeps each S3 object over 64 KB in a file).
        waiting = select.poll()
        waiting.register(descriptor, select.POLLIN)
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # Time the worker, or the embedded AWS it waits on, spent waiting for a
                # CPU does not count (see run_delay_seconds, StarvationClock).
                delayed = self._delayed() - delayed_before
                if delayed > 0.01:
                    deadline += delayed
                    delayed_before += delayed
                    continue
                self.kill()
                seconds = self.spec.timeout_seconds if phase == "invoke" else INIT_TIMEOUT_SECONDS
                raise WorkerError("Sandbox.Timedout", f"Task timed out after {seconds:.2f} seconds")
            if not waiting.poll(remaining * 1000):
                continue
            chunk = os.read(descriptor, 1 << 16)
            if not chunk:
                self.kill()
                raise WorkerError("Runtime.ExitError", self._exit_description())
            self._pending.extend(chunk)
        line, _, rest = bytes(self._pending).partition(b"\n")
        self._pending = bytearray(rest)
        try:
            message: dict[str, Any] = json.loads(line)
        except ValueError:
            self.kill()
            raise WorkerError(
                "Runtime.InvalidResponse", "the worker sent a garbled reply"
            ) from None
        return message

    def _delayed(self) -> float:
        own = run_delay_seconds(self.pid)
        return own + (self._starvation.seconds() if self._starvation is not None else 0.0)

    def _exit_description(self) -> str:
        return f"Runtime exited with error: exit status {self.process.wait()}"


class FunctionPool:
    """Up to ``max_workers`` warm workers for one function."""

    def __init__(
        self,
        spec: FunctionSpec,
        environment: Mapping[str, str],
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        turns: threading.Semaphore | None = None,
        make_room: Callable[[], None] | None = None,
        starvation: StarvationClock | None = None,
    ) -> None:
        self.spec = spec
        self.environment = dict(environment)
        self.max_workers = max_workers
        # Shared with the other functions' pools (see FunctionRuntime).
        self._turns = turns
        self._make_room = make_room
        self._starvation = starvation
        self._idle: list[Worker] = []
        self._workers: set[Worker] = set()
        self._starting = 0
        self._closed = False
        self._changed = threading.Condition()

    @property
    def workers(self) -> int:
        with self._changed:
            return len(self._workers)

    @property
    def live(self) -> int:
        """Workers alive or starting."""
        with self._changed:
            return len(self._workers) + self._starting

    def idle_workers(self) -> list[Worker]:
        with self._changed:
            return list(self._idle)

    def evict(self, worker: Worker) -> bool:
        """Take ``worker`` out if it is still idle (the caller stops it)."""
        with self._changed:
            if worker not in self._idle:
                return False
            self._idle.remove(worker)
            self._workers.discard(worker)
            return True

    def invoke(self, event: Any) -> Invocation:
        if self._turns is None:
            return self._invoke(event)
        with self._turns:
            return self._invoke(event)

    def _invoke(self, event: Any) -> Invocation:
        request_id = str(uuid.uuid4())
        started = time.perf_counter()
        try:
            worker, cold = self._acquire()
        except WorkerError as error:
            return self._failed(request_id, started, True, error)
        try:
            reply = worker.invoke(event, request_id, self.spec.arn)
        except WorkerError as error:
            self._discard(worker)
            return self._failed(request_id, started, cold, error)
        except BaseException:
            self._discard(worker)
            raise
        self._release(worker)
        if reply.get("type") == "result":
            return self._outcome(request_id, started, cold, payload=reply.get("payload"))
        return self._outcome(
            request_id,
            started,
            cold,
            error_type=str(reply.get("errorType", "Error")),
            error_message=str(reply.get("errorMessage", "")),
        )

    def close(self) -> None:
        with self._changed:
            self._closed = True
            workers = list(self._workers)
            self._workers.clear()
            self._idle.clear()
            self._changed.notify_all()
        # Busy workers are killed too: shutting down does not wait for a slow handler.
        for worker in workers:
            threading.Thread(target=worker.stop, daemon=True).start()
        deadline = time.monotonic() + STOP_GRACE_SECONDS + 1
        for worker in workers:
            try:
                worker.process.wait(timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                worker.kill()

    def recycle(self) -> int:
        """Stop every worker of this function (as a redeploy or crash would); the next
        invocation starts a new one, cold. Returns how many were stopped."""
        with self._changed:
            workers = list(self._workers)
            self._workers.clear()
            self._idle.clear()
            self._changed.notify_all()
        for worker in workers:
            worker.kill()
        return len(workers)

    def _outcome(self, request_id: str, started: float, cold: bool, **fields: Any) -> Invocation:
        duration = (time.perf_counter() - started) * 1000
        return Invocation(
            self.spec.logical_id, request_id, duration_ms=duration, cold_start=cold, **fields
        )

    def _failed(
        self, request_id: str, started: float, cold: bool, error: WorkerError
    ) -> Invocation:
        return self._outcome(
            request_id, started, cold, error_type=error.error_type, error_message=error.message
        )

    def _acquire(self) -> tuple[Worker, bool]:
        with self._changed:
            while True:
                if self._closed:
                    raise WorkerError("Runtime.Stopped", "the local stack is stopping")
                while self._idle:
                    # Last in, first out: the most recently used worker is the warmest.
                    worker = self._idle.pop()
                    if worker.alive():
                        return worker, False
                    self._workers.discard(worker)
                if len(self._workers) + self._starting < self.max_workers:
                    self._starting += 1
                    break
                self._changed.wait()
        if self._make_room is not None:
            self._make_room()
        try:
            worker = Worker(self.spec, self.environment, self._starvation)
            worker.wait_ready(INIT_TIMEOUT_SECONDS + self.spec.timeout_seconds)
        except BaseException:
            with self._changed:
                self._starting -= 1
                self._changed.notify()
            raise
        with self._changed:
            self._starting -= 1
            if self._closed:
                worker.kill()
                raise WorkerError("Runtime.Stopped", "the local stack is stopping")
            self._workers.add(worker)
        return worker, True

    def _release(self, worker: Worker) -> None:
        worker.last_used = time.monotonic()
        with self._changed:
            if worker in self._workers and not self._closed:
                self._idle.append(worker)
            self._changed.notify()

    def _discard(self, worker: Worker) -> None:
        worker.kill()
        with self._changed:
            self._workers.discard(worker)
            self._changed.notify()


class FunctionRuntime:
    """Every function of the stack, invocable by logical id."""

    def __init__(
        self,
        functions: Mapping[str, FunctionSpec],
        aws: AwsTarget,
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        max_warm_workers: int = DEFAULT_MAX_WARM_WORKERS,
        path: str | None = None,
        aws_backlog: Callable[[], float] | None = None,
    ) -> None:
        self.functions = dict(functions)
        self.environments = {
            logical_id: function_environment(spec, aws, path=path)
            for logical_id, spec in self.functions.items()
        }
        self.max_warm_workers = max_warm_workers
        self._room = threading.Lock()
        turns = threading.Semaphore(max_concurrent)
        self.starvation = StarvationClock(aws_backlog=aws_backlog)
        self._pools = {
            logical_id: FunctionPool(
                spec,
                self.environments[logical_id],
                max_workers=max_workers,
                turns=turns,
                make_room=self._make_room,
                starvation=self.starvation,
            )
            for logical_id, spec in self.functions.items()
        }

    def invoke(self, logical_id: str, event: Any) -> Invocation:
        try:
            pool = self._pools[logical_id]
        except KeyError:
            raise KeyError(f"no function {logical_id} in this stack") from None
        return pool.invoke(event)

    def pool(self, logical_id: str) -> FunctionPool:
        return self._pools[logical_id]

    def _make_room(self) -> None:
        """Stop the least recently used idle workers while more than the warm limit live
        (a worker about to start counts): memory stays bounded however many functions
        a session touches, as Lambda reclaims environments it no longer needs."""
        with self._room:
            excess = sum(pool.live for pool in self._pools.values()) - self.max_warm_workers
            if excess <= 0:
                return
            idle = sorted(
                (
                    (worker.last_used, id(worker), pool, worker)
                    for pool in self._pools.values()
                    for worker in pool.idle_workers()
                ),
                key=lambda entry: entry[:2],
            )
            stopped = [worker for _, _, pool, worker in idle[:excess] if pool.evict(worker)]
        for worker in stopped:
            worker.kill()

    def close(self) -> None:
        self.starvation.close()
        threads = [threading.Thread(target=pool.close) for pool in self._pools.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def __enter__(self) -> FunctionRuntime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
