"""threadline.http against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given
from hypothesis import strategies as st

from threadline.http import HttpClient, TransportError, parse_retry_after


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(1.0)
            self._answer(200, b"late")
        elif self.path.startswith("/redirect"):
            self._answer(302, b"", {"Location": "http://127.0.0.1:9/elsewhere"})
        elif self.path.startswith("/limited"):
            self._answer(429, b"{}", {"Retry-After": "7"})
        else:
            self._answer(200, json.dumps({"path": self.path}).encode())

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        echoed = {
            "body": json.loads(self.rfile.read(length)),
            "content_type": self.headers.get("Content-Type"),
            "user_agent": self.headers.get("User-Agent"),
        }
        self._answer(201, json.dumps(echoed).encode())


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_post_json_sends_json_with_a_user_agent(server_url: str) -> None:
    answer = HttpClient().post_json(server_url + "/send", {"text": "hi"})
    assert answer.status == 201 and answer.ok
    echoed = answer.json()
    assert echoed["body"] == {"text": "hi"}
    assert echoed["content_type"] == "application/json"
    assert echoed["user_agent"].startswith("threadline/")


def test_get_encodes_fields_as_a_query_string(server_url: str) -> None:
    answer = HttpClient().get(server_url + "/q", fields={"a": "1 2"})
    assert answer.json()["path"] == "/q?a=1+2"


def test_redirects_are_returned_not_followed(server_url: str) -> None:
    answer = HttpClient().get(server_url + "/redirect")
    assert answer.status == 302
    assert answer.headers["location"].endswith("/elsewhere")


def test_rate_limit_carries_retry_after(server_url: str) -> None:
    answer = HttpClient().get(server_url + "/limited")
    assert answer.retryable and not answer.ok
    assert answer.retry_after() == 7.0


def test_read_timeout_is_a_transport_error(server_url: str) -> None:
    with pytest.raises(TransportError) as caught:
        HttpClient(read_timeout=0.2).get(server_url + "/slow")
    assert caught.value.timed_out


def test_refused_connection_is_a_transport_error_without_the_path() -> None:
    with pytest.raises(TransportError) as caught:
        HttpClient(connect_timeout=0.5).get("http://127.0.0.1:9/bot123:SECRET/sendMessage")
    assert "SECRET" not in str(caught.value)
    assert not caught.value.timed_out


def test_retry_after_accepts_an_http_date() -> None:
    now = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Mon, 23 Nov 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Mon, 23 Nov 2026 11:00:00 GMT", now) == 0.0


@given(st.text(max_size=40))
def test_retry_after_never_raises_and_is_never_negative(value: str) -> None:
    seconds = parse_retry_after(value)
    assert seconds is None or seconds >= 0
