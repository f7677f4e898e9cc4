"""`make soak`: many signed Twilio SMS through the local stack, from concurrent senders.

Starts `python -m devstack` on a free port of 127.0.0.1 (its own moto, nothing
outside), sends N signed SMS to the Twilio messaging webhook from S threads (each
sender its own phone number, so each is one customer), and reports per 1000
messages: latency (median, p95, max), throughput, the answers that were not 2xx,
the memory (RSS) of the stack process (moto, gateway, pollers) and of its
function workers, and how many invocations the stack killed past their Timeout
(each is a 500: on a machine busier than its CPUs, a sign of load, not of a bug).
Ends with a summary line and, with --json, writes the figures.

What to hold (issue 16): per-message latency flat from the first 1000 to the last,
the stack process under 1 GB, and 0 answers 5xx.

    .venv/bin/python bench/load_local_stack.py --messages 10000 --senders 8
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import requests
from twilio.request_validator import RequestValidator

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.e2e.conftest import free_port, launch_local_stack  # noqa: E402

TWILIO_PATH = "/webhooks/twilio/messaging"
WINDOW = 1000


@dataclass
class Stack:
    process: subprocess.Popen[str]
    base_url: str
    twilio_auth_token: str
    console: list[str]  # its lines so far, read on by a thread

    def timeouts(self) -> int:
        """Invocations the stack killed past their function's Timeout (a 500 each)."""
        return sum("Task timed out" in line for line in list(self.console))


def start_stack() -> Stack:
    token = secrets.token_hex(16)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "THREADLINE_PORT": str(free_port()),
        "TWILIO_AUTH_TOKEN": token,
        "THREADLINE_API_TOKEN": secrets.token_hex(16),
        "PYTHONUNBUFFERED": "1",
    }
    try:
        process, console, base_url = launch_local_stack(env)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None
    return Stack(process, base_url, token, console)


def stop_stack(stack: Stack) -> None:
    stack.process.send_signal(signal.SIGINT)
    try:
        stack.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        stack.process.kill()
        stack.process.wait()


def rss_mb(pid: int) -> float:
    """Resident memory of one process (Linux /proc), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as listing:
                found += [int(child) for child in listing.read().split()]
    except OSError:
        pass
    return found


def sms(sender: int, sequence: int) -> dict[str, str]:
    return {
        "MessageSid": f"SM{secrets.token_hex(16)}",
        "AccountSid": "AC" + "0" * 32,
        "From": f"+1555{sender:07d}",
        "To": "+15557654321",
        "Body": f"load message {sequence} from sender {sender}",
        "NumMedia": "0",
    }


@dataclass
class Result:
    sequence: int
    status: int  # 0: no answer (connection error, timeout)
    seconds: float


def send(
    session: requests.Session, url: str, validator: RequestValidator, sender: int, sequence: int
) -> Result:
    params = sms(sender, sequence)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": validator.compute_signature(url, params),
    }
    started = time.perf_counter()
    try:
        answer = session.post(url, data=urlencode(params), headers=headers, timeout=60)
        status = answer.status_code
    except requests.RequestException:
        status = 0
    return Result(sequence, status, time.perf_counter() - started)


def run(messages: int, senders: int) -> dict[str, object]:
    stack = start_stack()
    url = stack.base_url + TWILIO_PATH
    validator = RequestValidator(stack.twilio_auth_token)
    sessions = [requests.Session() for _ in range(senders)]
    for session in sessions:
        session.trust_env = False  # loopback only: no proxy from the environment
    windows: list[dict[str, object]] = []
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    window: list[Result] = []
    window_started = time.monotonic()
    # Set on Ctrl-C: the senders stop after their request in flight, instead of the
    # pool's exit waiting for all N messages to be sent.
    stopping = threading.Event()
    try:
        with ThreadPoolExecutor(max_workers=senders) as pool:
            results_queue: queue.Queue[Result] = queue.Queue()

            # Each sender is one thread with its own number: S requests in flight.
            def streaming(sender: int) -> None:
                for sequence in range(sender, messages, senders):
                    if stopping.is_set():
                        return
                    results_queue.put(send(sessions[sender], url, validator, sender, sequence))

            futures = [pool.submit(streaming, sender) for sender in range(senders)]
            for _ in range(messages):
                try:
                    result = results_queue.get()
                except KeyboardInterrupt:
                    stopping.set()
                    raise
                statuses[result.status] += 1
                window.append(result)
                if len(window) == WINDOW:
                    windows.append(summarize(window, window_started, stack))
                    print(json.dumps(windows[-1]), flush=True)
                    window, window_started = [], time.monotonic()
            for future in futures:
                future.result()
        if window:
            windows.append(summarize(window, window_started, stack))
            print(json.dumps(windows[-1]), flush=True)
    finally:
        stop_stack(stack)
    timeouts = stack.timeouts()
    server_errors = sum(count for status, count in statuses.items() if status >= 500 or status == 0)
    latencies = [float(w["median_ms"]) for w in windows if w["messages"] == WINDOW]  # type: ignore[arg-type]
    return {
        "messages": messages,
        "senders": senders,
        "seconds": round(time.monotonic() - started, 1),
        "statuses": {str(status): count for status, count in sorted(statuses.items())},
        "5xx_or_no_answer": server_errors,
        "function_timeouts": timeouts,
        "peak_stack_rss_mb": max((float(w["stack_rss_mb"]) for w in windows), default=None),  # type: ignore[arg-type]
        "median_ms_first_window": latencies[0] if latencies else None,
        "median_ms_last_window": latencies[-1] if latencies else None,
        "last_over_first": round(latencies[-1] / latencies[0], 2) if latencies else None,
        "windows": windows,
    }


def summarize(window: list[Result], window_started: float, stack: Stack) -> dict[str, object]:
    seconds = sorted(result.seconds for result in window)
    statuses = Counter(result.status for result in window)
    workers = children(stack.process.pid)
    elapsed = time.monotonic() - window_started
    return {
        "up_to": max(result.sequence for result in window) + 1,
        "messages": len(window),
        "median_ms": round(statistics.median(seconds) * 1000, 1),
        "p95_ms": round(seconds[int(len(seconds) * 0.95) - 1] * 1000, 1),
        "max_ms": round(seconds[-1] * 1000, 1),
        "per_second": round(len(window) / elapsed, 1) if elapsed else None,
        "not_2xx": {str(s): n for s, n in statuses.items() if not 200 <= s < 300},
        "function_timeouts_so_far": stack.timeouts(),
        "stack_rss_mb": round(rss_mb(stack.process.pid), 1),
        "workers": len(workers),
        "workers_rss_mb": round(sum(rss_mb(pid) for pid in workers), 1),
        # A figure means little without how busy the machine was (2 CPUs, shared).
        "load_average": round(os.getloadavg()[0], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    report = run(args.messages, args.senders)
    summary = {key: value for key, value in report.items() if key != "windows"}
    print("summary " + json.dumps(summary), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 1 if report["5xx_or_no_answer"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
