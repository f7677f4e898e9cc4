"""`make fuzz`: hostile signed bodies on every webhook route of a running local stack.

    python -m tests.fuzz.run [--bodies 10000] [--routes slack,meta] [--workers 4]

Starts `make dev` on a free port with known secrets, sends ``--bodies`` requests per
route from the corpus (tests/fuzz/corpus.py), and prints per route how many were
tried and answered 2xx, 4xx and 5xx, the stack's peak memory (resident set of its
process tree) and whether it is still alive. Exits 1 on any 5xx or a dead stack. A
5xx's mutation is printed with its seed and index, so it can be replayed.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import requests

from tests.e2e.conftest import running_stack
from tests.fuzz.corpus import ROUTES, FuzzRequest, Secrets, requests_for


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants (Linux /proc)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pending.extend(int(child) for child in children)
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class MemoryWatch:
    """Samples the stack's memory every second: its process tree, and its own process
    (moto, gateway, pollers) apart from the function workers. Peaks are kept per route."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = self.start = tree_rss_bytes(pid)
        self.route_peak = self.route_peak_stack = 0
        self.latest = self.latest_stack = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.latest, self.latest_stack = tree_rss_bytes(self.pid), rss_bytes(self.pid)
            self.peak = max(self.peak, self.latest)
            self.route_peak = max(self.route_peak, self.latest)
            self.route_peak_stack = max(self.route_peak_stack, self.latest_stack)

    def next_route(self) -> None:
        self.route_peak = self.route_peak_stack = 0

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def send(session: requests.Session, base_url: str, request: FuzzRequest) -> int:
    try:
        response = session.post(
            # Long: on a machine at several times its CPUs the stack queues requests
            # (devstack.runtime: invocations wait for a turn); no answer is a 599.
            base_url + request.path,
            data=request.body,
            headers=request.headers,
            timeout=300,
        )
    except requests.RequestException:
        return 599  # no answer at all: counted with the 5xx
    return response.status_code


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def fuzz_route(
    base_url: str,
    secrets: Secrets,
    route: str,
    bodies: int,
    workers: int,
    seed: int,
    watch: MemoryWatch,
    progress_every: float,
    console: list[str],
) -> tuple[Counter[int], list[str]]:
    """Send ``bodies`` requests from ``workers`` senders, each pulling the next request
    from one generator (the corpus is made as it is sent, never held whole: its 450 KB
    bodies would be gigabytes), printing a progress line every ``progress_every`` s."""
    counts: Counter[int] = Counter()
    failures: list[str] = []
    lock = threading.Lock()
    stream: Iterator[tuple[int, FuzzRequest]] = enumerate(
        requests_for(route, base_url, secrets, bodies, seed=seed)
    )
    started = time.monotonic()

    def sender() -> None:
        session = requests.Session()
        session.trust_env = False  # loopback only: no proxy from the environment
        while True:
            with lock:
                indexed = next(stream, None)
            if indexed is None:
                return
            index, request = indexed
            status = send(session, base_url, request)
            with lock:
                counts[status // 100] += 1
                if status >= 500:
                    failure = f"seed {seed} #{index} -> {status}: {request.shape}"
                    failures.append(failure)
                    print(f"  5xx {route}: {failure}", file=sys.stderr, flush=True)
                    # What the stack said just then: a function error, a timeout.
                    for line in [line for line in console[-300:] if _is_trouble(line)][-5:]:
                        print(f"    stack: {line.rstrip()[:300]}", file=sys.stderr, flush=True)

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    while True:
        deadline = time.monotonic() + progress_every
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if not any(thread.is_alive() for thread in threads):
            break
        with lock:
            done = sum(counts.values())
            line = _row(route, counts, time.monotonic() - started)
        print(
            f"  .. {line}  {done / (time.monotonic() - started):5.1f}/s  "
            f"stack {watch.latest / 2**20:.0f} MB  {load()}",
            flush=True,
        )
    return counts, failures


def _is_trouble(line: str) -> bool:
    return any(mark in line for mark in (" 500 ", " 502 ", " 503 ", "timed out", "Error"))


def _row(route: str, counts: Counter[int], seconds: float) -> str:
    return (
        f"{route:<24}{sum(counts.values()):>8}{counts[2]:>8}{counts[4]:>8}"
        f"{counts[5]:>8}{seconds:>9.0f}"
    )


def main() -> int:
    # `timeout` and CI send SIGTERM: leave through the stack's context manager, so the
    # stack is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bodies", type=int, default=10_000, help="requests per route")
    parser.add_argument("--routes", default=",".join(ROUTES), help="comma-separated")
    parser.add_argument("--workers", type=int, default=4, help="concurrent senders")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", "0")))
    parser.add_argument(
        "--progress", type=float, default=60.0, help="seconds between progress lines"
    )
    args = parser.parse_args()
    meta_app_secret = os.urandom(16).hex()
    with running_stack({"META_APP_SECRET": meta_app_secret}) as stack:
        secrets = Secrets(
            twilio_auth_token=stack.twilio_auth_token,
            slack_signing_secret=stack.slack_signing_secret,
            meta_app_secret=meta_app_secret,
            telegram_secret_token=stack.telegram_secret_token,
        )
        # One request per route first, not counted: a cold start on a busy machine can
        # outlast the function timeout, which is the local stack's speed, not a parser.
        session = requests.Session()
        for route in args.routes.split(","):
            (request,) = requests_for(route, stack.base_url, secrets, 1, seed=-1)
            send(session, stack.base_url, request)
        watch = MemoryWatch(stack.process.pid)
        print(
            f"stack at {stack.base_url}, {watch.start / 2**20:.0f} MB at start, {load()}",
            flush=True,
        )
        header = f"{'route':<24}{'tried':>8}{'2xx':>8}{'4xx':>8}{'5xx':>8}{'seconds':>9}"
        print(f"{header}  peak MB (tree / stack process)", flush=True)
        total_5xx = 0
        all_failures: list[str] = []
        rows: list[str] = []
        for route in args.routes.split(","):
            started = time.monotonic()
            watch.next_route()
            counts, failures = fuzz_route(
                stack.base_url,
                secrets,
                route,
                args.bodies,
                args.workers,
                args.seed,
                watch,
                args.progress,
                stack.output,
            )
            total_5xx += counts[5]
            all_failures += [f"{route}: {failure}" for failure in failures]
            row = (
                f"{_row(route, counts, time.monotonic() - started)}  "
                f"{watch.route_peak / 2**20:6.0f} / {watch.route_peak_stack / 2**20:.0f}  {load()}"
            )
            rows.append(row)
            print(row, flush=True)
        peak = watch.stop()
        alive = stack.process.poll() is None
        print(f"\n{header}  peak MB (tree / stack process)")
        print("\n".join(rows))
        print(f"stack memory: {watch.start / 2**20:.0f} MB at start, peak {peak / 2**20:.0f} MB")
        print(f"stack alive: {alive}")
        print(f"function timeouts: {sum('Task timed out' in line for line in stack.output)}")
        for failure in all_failures[:50]:
            print(failure)
        if all_failures:
            # What the stack said about them: function errors and timeouts.
            for line in [
                line for line in stack.output if "failed" in line or "Task timed out" in line
            ][:30]:
                print("stack:", line.rstrip()[:300])
    return 0 if total_5xx == 0 and alive else 1


if __name__ == "__main__":
    sys.exit(main())
