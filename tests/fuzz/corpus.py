"""Hostile webhook requests, signed with each provider's own scheme so they reach the parsers.

Every body starts from a realistic payload of its channel (the unit-test payloads)
and is mutated: a leaf replaced by a hostile value (a lone surrogate, 450 KB of text,
a list where a string goes, nesting hundreds deep, ``1e400``, huge and negative
numbers), keys dropped, containers swapped, the whole body replaced by junk. A share
of the requests carry broken headers instead (non-ASCII signature or timestamp, no
signature). Generation is deterministic for a seed, so a failing body can be replayed.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from tests.unit import meta_payloads as mp
from tests.unit import slack_payloads as sp
from tests.unit import telegram_payloads as tp

# Marks JSON text put in as is: a number token Python's json.dumps cannot write
# (1e400), or nesting too deep for it to write.
_RAW = "\x00raw:"
_RAW_STRING = re.compile(r'"\\u0000raw:((?:[^"\\]|\\.)*)"')
_RAW_NUMBERS = [
    "1e400",
    "-1e400",
    "1" + "0" * 5000,
    "-0",
    "1E-400",
    "123456789012345678901234567890",
]


@dataclass(frozen=True)
class Secrets:
    """What the running stack verifies with (the values it was started with)."""

    twilio_auth_token: str
    slack_signing_secret: str
    meta_app_secret: str
    telegram_secret_token: str

    def all(self) -> list[str]:
        return [
            self.twilio_auth_token,
            self.slack_signing_secret,
            self.meta_app_secret,
            self.telegram_secret_token,
        ]


@dataclass(frozen=True)
class FuzzRequest:
    route: str
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    shape: str = ""
    """What was done to the body or headers: enough to find the bug a 5xx points at."""


def hostile_strings(rng: random.Random) -> Any:
    choices: list[Callable[[], Any]] = [
        lambda: "\ud800",
        lambda: "text \udfff with a lone low surrogate",
        lambda: "x" * rng.choice([1601, 4097, 40_001]),
        lambda: "\u202e\u0000\ufeff control characters",
        lambda: "\U0001f600" * 10,
        lambda: "",
        lambda: " ",
        lambda: "é" * 1000,
        lambda: "+1 555 123 4567",
        lambda: "../../etc/passwd",
        lambda: "http://169.254.169.254/latest/meta-data/",
        lambda: "%00%ff",
    ]
    if rng.random() < 0.05:
        # Rare, as in life, and heavy: over an item, over a provider's limit.
        return rng.choice(["x" * 450_000, "é" * 100_000, "\U0001f600" * 50_000, "y" * 150_000])
    return rng.choice(choices)()


def _nested(rng: random.Random) -> str:
    depth = rng.choice([25, 100, 400, 900])
    opening, closing = rng.choice([("[", "]"), ('{"type":"rich_text","elements":[', "]}")])
    return _RAW + opening * depth + '"leaf"' + closing * depth


def hostile_value(rng: random.Random) -> Any:
    choices: list[Callable[[], Any]] = [
        lambda: hostile_strings(rng),
        lambda: _RAW + rng.choice(_RAW_NUMBERS),
        lambda: rng.choice([0, -1, 2**63, -(2**63) - 1, 10**30, 1.5, True, False, None]),
        lambda: [],
        lambda: {},
        lambda: ["a", 1, None],
        lambda: {"a": {"b": "c"}},
        lambda: _nested(rng),
    ]
    return rng.choice(choices)()


def _paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if len(prefix) > 12:
        # Inside a nesting planted by an earlier mutation: nothing more to find.
        return found
    if isinstance(document, dict):
        for key, value in document.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += _paths(value, (*prefix, index))
    return found


def _set(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return document


def mutate_json(seed: dict[str, Any], rng: random.Random) -> tuple[Any, str]:
    """A hostile variant of ``seed`` and a description of what changed."""
    document: Any = copy.deepcopy(seed)
    shapes = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        paths = _paths(document)
        path = rng.choice(paths[1:] or paths)
        action = rng.random()
        if action < 0.7:
            value = hostile_value(rng)
            document = _set(document, path, value)
            shapes.append(f"{'.'.join(map(str, path))}={_describe(value)}")
        elif action < 0.85 and path:
            parent = document
            for step in path[:-1]:
                parent = parent[step]
            del parent[path[-1]]
            shapes.append(f"del {'.'.join(map(str, path))}")
        else:
            document = _set(document, path, rng.choice([[], {}, "x", 1]))
            shapes.append(f"{'.'.join(map(str, path))} swapped")
    if rng.random() < 0.05:
        document = rng.choice([[document], "string", 12, None, "[" * 100_000])
        shapes.append("whole body replaced")
    return document, "; ".join(shapes)


def _describe(value: Any) -> str:
    if isinstance(value, list | dict):
        return f"{type(value).__name__}[{len(value)}]" if value else repr(value)
    text = repr(value)
    return text if len(text) <= 40 else f"{type(value).__name__}[{len(text)} chars]"


def dump_json(document: Any) -> bytes:
    """JSON with raw number tokens put back (``1e400`` is valid JSON, not a float)."""
    if document == "[" * 100_000:
        return document.encode()
    text = json.dumps(document)  # ensure_ascii: a lone surrogate is written \ud800
    return _RAW_STRING.sub(lambda m: json.loads(f'"{m.group(1)}"'), text).encode()


def junk_bytes(rng: random.Random) -> bytes:
    return rng.choice(
        [
            b"",
            b"\xff\xfe\x00garbage",
            b"{",
            b'{"a": NaN}',
            b'{"a": Infinity}',
            b"[" * 100_000,
            rng.randbytes(rng.choice([1, 100, 5000])),
            b'{"a":"\\ud800"}',
            b"a=1&b=%ff%fe&c",
            b"null",
        ]
    )


# ------------------------------------------------------------------- signing


def twilio_headers(url: str, body: bytes, secrets: Secrets) -> dict[str, str]:
    from urllib.parse import parse_qsl

    params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    signature = RequestValidator(secrets.twilio_auth_token).compute_signature(url, params)
    return {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}


def slack_headers(url: str, body: bytes, secrets: Secrets) -> dict[str, str]:
    timestamp = str(int(time.time()))
    base = b"v0:" + timestamp.encode() + b":" + body
    digest = hmac.new(secrets.slack_signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": "v0=" + digest,
    }


def meta_headers(url: str, body: bytes, secrets: Secrets) -> dict[str, str]:
    digest = hmac.new(secrets.meta_app_secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + digest}


def telegram_headers(url: str, body: bytes, secrets: Secrets) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Telegram-Bot-Api-Secret-Token": secrets.telegram_secret_token,
    }


# ------------------------------------------------------------------- seeds


def _twilio_sms(rng: random.Random) -> dict[str, str]:
    return {
        "MessageSid": "SM" + f"{rng.getrandbits(128):032x}",
        "AccountSid": "AC" + "0" * 32,
        # Many senders, as in life: one customer taking every message would measure
        # moto's per-customer cost, not the parsers.
        "From": rng.choice(["+1555123", "whatsapp:+1555124", "+4477009"])
        + f"{rng.randrange(10**4):04d}",
        "To": "+15557650000",
        "Body": "Where is my parcel?",
        "NumMedia": "0",
        "NumSegments": "1",
    }


def _twilio_status(rng: random.Random) -> dict[str, str]:
    return {
        "MessageSid": "SM" + f"{rng.getrandbits(128):032x}",
        "MessageStatus": rng.choice(["sent", "delivered", "failed", "undelivered", "read"]),
        "AccountSid": "AC" + "0" * 32,
        "To": f"+1555126{rng.randrange(10**4):04d}",
        "From": "+15557650000",
        "ErrorCode": "30003",
    }


def _twilio_voice(rng: random.Random) -> dict[str, str]:
    return {
        "CallSid": "CA" + f"{rng.getrandbits(128):032x}",
        "AccountSid": "AC" + "0" * 32,
        "From": f"+1555125{rng.randrange(10**4):04d}",
        "To": "+15557650000",
        "CallStatus": rng.choice(["ringing", "completed", "no-answer", "busy"]),
        "Direction": "inbound",
        "DialCallStatus": rng.choice(["completed", "no-answer"]),
        "RecordingSid": "RE" + f"{rng.getrandbits(128):032x}",
        "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/RE1",
        "RecordingDuration": "12",
        "TranscriptionText": "call me back",
        "TranscriptionStatus": "completed",
    }


_FORM_HOSTILE = [
    "x" * 1601,
    "%ff%fe",
    "1e400",
    "-1",
    "99999999999999999999",
    "NaN",
    "",
    "\u00e9" * 10,
    "whatsapp:",
    "+1 555 123 4567",
]


def mutate_form(seed: dict[str, str], rng: random.Random) -> tuple[bytes, str]:
    form = dict(seed)
    shapes = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        key = rng.choice([*form, "NumMedia", "MediaUrl0", "MediaContentType0", "Latitude", "X"])
        action = rng.random()
        if action < 0.75:
            value = rng.choice(_FORM_HOSTILE) if rng.random() > 0.03 else "x" * 450_000
            form[key] = value
            shapes.append(f"{key}={_describe(value)}")
        else:
            form.pop(key, None)
            shapes.append(f"del {key}")
    body = urlencode(form).encode()
    if rng.random() < 0.1:
        # Raw bytes urlencode would have escaped: invalid UTF-8, bare %.
        body += rng.choice([b"&Body=%ff%fe%fd", b"&%=%", b"&Body=\xff\xfe", b"&&&=="])
        shapes.append("raw form bytes")
    return body, "; ".join(shapes)


@dataclass(frozen=True)
class Route:
    name: str
    path: str
    kind: str  # "json" or "form"
    seeds: Callable[[random.Random], Any]
    sign: Callable[[str, bytes, Secrets], dict[str, str]]


def _another_sender(seed: dict[str, Any], sender: str, rng: random.Random) -> dict[str, Any]:
    """``seed`` written by one of many senders instead of the payloads' one customer."""
    # Digits for digits, the first never 0 (a JSON number cannot start with one).
    replacement = "".join(
        str(rng.randrange(1 if i == 0 else 0, 10)) if c.isdigit() else c
        for i, c in enumerate(sender)
    )
    document: dict[str, Any] = json.loads(json.dumps(seed).replace(sender, replacement))
    return document


def _slack_seed(rng: random.Random) -> dict[str, Any]:
    seed = _another_sender(rng.choice(list(sp.ALL.values())), sp.CUSTOMER, rng)
    seed["event_id"] = f"Ev{rng.getrandbits(30):010d}"
    if isinstance(seed.get("event"), dict) and "ts" in seed["event"]:
        seed["event"]["ts"] = f"{int(time.time())}.{rng.getrandbits(20):06d}"
    return seed


def _telegram_seed(rng: random.Random) -> dict[str, Any]:
    seed = _another_sender(
        rng.choice([*tp.STORED.values(), *tp.SKIPPED.values()]), str(tp.USER_ID), rng
    )
    seed["update_id"] = rng.getrandbits(31)
    return seed


def _meta_seed(rng: random.Random) -> dict[str, Any]:
    message = copy.deepcopy(rng.choice([mp.WA_TEXT, mp.WA_IMAGE, mp.WA_LOCATION, mp.WA_REPLY]))
    message["id"] = f"wamid.fuzz{rng.getrandbits(60):020d}"
    return rng.choice(
        [
            _another_sender(mp.whatsapp_envelope(mp.whatsapp_value(message)), mp.WA_ID, rng),
            mp.page_envelope(copy.deepcopy(mp.MESSENGER_TEXT)),
            mp.instagram_envelope(copy.deepcopy(mp.INSTAGRAM_TEXT)),
            mp.whatsapp_envelope(mp.status_value(mp.wa_status("delivered")), field="messages"),
        ]
    )


ROUTES = {
    route.name: route
    for route in [
        Route(
            "twilio_messaging", "/webhooks/twilio/messaging", "form", _twilio_sms, twilio_headers
        ),
        Route("twilio_status", "/webhooks/twilio/status", "form", _twilio_status, twilio_headers),
        Route("twilio_fallback", "/webhooks/twilio/fallback", "form", _twilio_sms, twilio_headers),
        Route("twilio_voice", "/webhooks/twilio/voice", "form", _twilio_voice, twilio_headers),
        Route(
            "twilio_voice_dial",
            "/webhooks/twilio/voice/dial",
            "form",
            _twilio_voice,
            twilio_headers,
        ),
        Route(
            "twilio_voice_recording",
            "/webhooks/twilio/voice/recording",
            "form",
            _twilio_voice,
            twilio_headers,
        ),
        Route("slack", "/webhooks/slack/events", "json", _slack_seed, slack_headers),
        Route("meta", "/webhooks/meta", "json", _meta_seed, meta_headers),
        Route("telegram", "/webhooks/telegram", "json", _telegram_seed, telegram_headers),
    ]
}


def _break_headers(headers: dict[str, str], rng: random.Random) -> tuple[dict[str, str], str]:
    signed = [name for name in headers if name != "Content-Type"]
    name = rng.choice(signed)
    action = rng.random()
    broken = dict(headers)
    if action < 0.4:
        broken[name] = headers[name][:-1] + "\u00e9"
        return broken, f"non-ASCII {name}"
    if action < 0.7:
        del broken[name]
        return broken, f"no {name}"
    broken[name] = headers[name][::-1]
    return broken, f"wrong {name}"


def requests_for(
    route_name: str, base_url: str, secrets: Secrets, count: int, seed: int = 0
) -> Iterator[FuzzRequest]:
    """``count`` hostile, signed requests for one route (deterministic for ``seed``)."""
    route = ROUTES[route_name]
    rng = random.Random(f"{route_name}:{seed}")
    url = base_url.rstrip("/") + route.path
    for _ in range(count):
        roll = rng.random()
        if roll < 0.05:
            body, shape = junk_bytes(rng), "junk body"
        elif route.kind == "json":
            document, shape = mutate_json(route.seeds(rng), rng)
            body = dump_json(document)
        else:
            body, shape = mutate_form(route.seeds(rng), rng)
        headers = route.sign(url, body, secrets)
        if rng.random() < 0.1:
            headers, broken = _break_headers(headers, rng)
            shape = f"{shape}; {broken}"
        yield FuzzRequest(route_name, route.path, body, headers, shape)
