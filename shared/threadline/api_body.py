"""The REST API's first look at a request body, before the resolver parses it.

The resolver (powertools) calls ``json.loads`` itself, so a body of 100 000 ``[``
raises RecursionError, and a lone surrogate or ``1e400`` reaches the handlers and
breaks on the way to DynamoDB: each a 500. :func:`refuse_unreadable_body` reads the
body once with :func:`threadline.jsonsafe.load_json` and answers 400 for any of these,
so the handlers only see bodies they can store. It is the API handler's first call.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from threadline.errors import MalformedRequest
from threadline.jsonsafe import load_json


def refuse_unreadable_body(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """A 400 answer (HTTP API payload v2.0) when ``event``'s body is not safe JSON, else None."""
    body = event.get("body")
    if not body:
        return None
    try:
        if event.get("isBase64Encoded"):
            try:
                data: bytes | str = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise MalformedRequest("body is not valid base64") from exc
        else:
            data = body
        load_json(data, surrogates="refuse")
    except MalformedRequest as error:
        document = {"error": {"code": error.code, "message": error.message}}
        return {
            "statusCode": 400,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps(document),
        }
    return None
