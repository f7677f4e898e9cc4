"""The worker: one Lambda execution environment, run as ``python <this file>``.

It runs inside the function's own environment (exactly its template variables
plus what Lambda sets), so it imports nothing from devstack, only the standard
library. Protocol with the parent, one JSON document per line:

* worker -> parent, once: ``{"type": "ready"}`` or ``{"type": "init_error", ...}``
* parent -> worker: ``{"requestId", "deadlineMs", "event"}``
* worker -> parent: ``{"type": "result", "payload"}`` or ``{"type": "error", ...}``

The protocol runs on private duplicates of stdin/stdout; the handler's stdout and
stderr (powertools' JSON logs, print calls) go to the parent's stderr, so nothing
a handler prints can corrupt a reply.
"""

from __future__ import annotations

import decimal
import importlib
import json
import os
import signal
import sys
import time
import traceback
import uuid
from typing import IO, Any


class LambdaContext:
    """The attributes and method of the context object the Python runtime passes."""

    def __init__(self, request: dict[str, Any], log_stream_name: str) -> None:
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.invoked_function_arn = str(request["invokedFunctionArn"])
        self.aws_request_id = str(request["requestId"])
        self.log_group_name = os.environ.get(
            "AWS_LAMBDA_LOG_GROUP_NAME", f"/aws/lambda/{self.function_name}"
        )
        self.log_stream_name = log_stream_name
        self.identity = None
        self.client_context = None
        self._deadline_ms = int(request["deadlineMs"])

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)


def _json_default(value: Any) -> Any:
    # The Lambda runtime's serializer accepts Decimal (what boto3 returns for numbers).
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, default=_json_default).encode() + b"\n"


def _send(channel: IO[bytes], line: bytes) -> None:
    channel.write(line)
    channel.flush()


def _error(kind: str, exc: BaseException) -> dict[str, Any]:
    return {
        "type": kind,
        "errorType": type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


def _log_exception(prefix: str, exc: BaseException) -> None:
    print(prefix, file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)
    sys.stderr.flush()


def _load_handler() -> Any:
    module_name, _, function_name = os.environ["_HANDLER"].rpartition(".")
    module = importlib.import_module(module_name.replace("/", "."))
    handler = getattr(module, function_name)
    if not callable(handler):
        raise TypeError(f"handler {function_name} in {module_name} is not callable")
    return handler


def main() -> None:
    # Ctrl-C reaches every process of the terminal; the parent decides when a
    # worker ends (it closes our stdin), so a keypress never kills a request midway.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    # Lambda's sys.path starts with the function's code, not with this file's folder.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != here]

    try:
        handler = _load_handler()
    except BaseException as exc:  # every init failure is reported alike, as Lambda does
        _log_exception(f"[ERROR] Runtime.ImportModuleError: {exc}", exc)
        _send(replies, _encode(_error("init_error", exc)))
        return
    _send(replies, _encode({"type": "ready"}))

    log_stream = f"{time.strftime('%Y/%m/%d', time.gmtime())}/[$LATEST]{uuid.uuid4().hex}"
    for line in requests:
        request = json.loads(line)
        context = LambdaContext(request, log_stream)
        try:
            # Encoding inside the try: an unserializable result is the handler's error.
            reply = _encode({"type": "result", "payload": handler(request["event"], context)})
        except Exception as exc:  # a handler error is a result, not a crash
            _log_exception(
                f"[ERROR] {type(exc).__name__}: {exc} (RequestId: {context.aws_request_id})", exc
            )
            reply = _encode(_error("error", exc))
        _send(replies, reply)


if __name__ == "__main__":
    main()
