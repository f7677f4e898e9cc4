"""``threadline replay``: a stored raw provider request, through its webhook again.

The local stack keeps every inbound request as an envelope (method, URL, headers,
body) inline in the message's item or in the raw bucket; ``GET /_dev/raw/<id>``
hands it out. The body goes back byte for byte and the webhook verifies it again.
Signatures: one that still verifies against the current URL and secret is kept;
otherwise the request is re-signed with the local secret and the CLI says why.
Slack's is always re-signed: Slack refuses a timestamp older than 5 minutes. A
replayed message is stored once (the webhook deduplicates provider retries): the
point is to run verification and the normalizer again. A mail goes back through
``/_dev/email``.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from threadline_cli.channels import meta_signature, slack_signed_headers, twilio_signature
from threadline_cli.target import CliError, Target, error_text

# Headers a provider sets that the webhook may read; the rest described the hop.
KEPT_HEADERS = frozenset(
    {
        "content-type",
        "user-agent",
        "i-twilio-idempotency-token",
        "x-twilio-signature",
        "x-slack-signature",
        "x-slack-request-timestamp",
        "x-hub-signature-256",
        "x-telegram-bot-api-secret-token",
    }
)


TELEGRAM_HEADER = "x-telegram-bot-api-secret-token"


@dataclass
class ReplayOutcome:
    description: str
    status: int
    answer: str
    notes: list[str] = field(default_factory=list)


def replay_message(target: Target, message_id: str) -> ReplayOutcome:
    response = target.dev("GET", f"/_dev/raw/{message_id}")
    if response.status_code in {400, 404}:
        raise CliError(f"cannot replay {message_id!r}: {error_text(response)}")
    if not response.ok:
        raise CliError(f"GET /_dev/raw answered {response.status_code}")
    stored: dict[str, Any] = response.json()
    if stored.get("mail_base64"):
        return _replay_mail(target, stored)
    envelope = stored["envelope"]
    original = urlsplit(envelope["url"])
    path = original.path + (f"?{original.query}" if original.query else "")
    url = target.url(path)
    if "body_base64" in envelope:
        body = base64.b64decode(envelope["body_base64"])
    else:
        body = str(envelope.get("body", "")).encode("utf-8")
    headers = {
        name: value
        for name, value in (envelope.get("headers") or {}).items()
        if name.lower() in KEPT_HEADERS
    }
    notes = _sign_again(target, url, envelope["url"], body, headers)
    if stored.get("provider") == "telegram" and not any(
        name.lower() == TELEGRAM_HEADER for name in headers
    ):
        # Envelopes may leave out Telegram's token: it is a shared secret, not a
        # signature of the request, so storing it would let an export forge webhooks.
        headers[TELEGRAM_HEADER] = target.secret("TELEGRAM_SECRET_TOKEN")
        notes.append("sent the local TELEGRAM_SECRET_TOKEN (the stored request has none)")
    answer = target.request(str(envelope.get("method") or "POST"), url, data=body, headers=headers)
    description = f"{stored.get('channel')} message {message_id} to {original.path}"
    if not answer.ok:
        raise CliError(
            f"{description}: the webhook answered {answer.status_code}: {error_text(answer)}"
        )
    return ReplayOutcome(description, answer.status_code, _one_line(answer.text), notes)


def _sign_again(
    target: Target, url: str, original_url: str, body: bytes, headers: dict[str, str]
) -> list[str]:
    """Keep each stored signature that still verifies, replace the others; say which."""
    names = {name.lower(): name for name in headers}
    notes: list[str] = []
    if "x-twilio-signature" in names:
        params = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        expected = twilio_signature(target, url, params)
        notes.append(
            _keep_or_replace(
                headers,
                names["x-twilio-signature"],
                expected,
                (
                    "re-signed with the local TWILIO_AUTH_TOKEN: the stored X-Twilio-Signature is "
                    f"for {original_url}, this request goes to {url}"
                    if url != original_url
                    else "re-signed with the local TWILIO_AUTH_TOKEN (it changed since)"
                ),
                "X-Twilio-Signature",
            )
        )
    if "x-hub-signature-256" in names:
        expected = meta_signature(target, body)
        notes.append(
            _keep_or_replace(
                headers,
                names["x-hub-signature-256"],
                expected,
                "re-signed with the local META_APP_SECRET (it changed since)",
                "X-Hub-Signature-256",
            )
        )
    if "x-telegram-bot-api-secret-token" in names:
        expected = target.secret("TELEGRAM_SECRET_TOKEN")
        notes.append(
            _keep_or_replace(
                headers,
                names["x-telegram-bot-api-secret-token"],
                expected,
                "sent the local TELEGRAM_SECRET_TOKEN (it changed since)",
                "X-Telegram-Bot-Api-Secret-Token",
            )
        )
    if "x-slack-signature" in names:
        for name in ("x-slack-signature", "x-slack-request-timestamp"):
            headers.pop(names[name], None)
        headers.update(slack_signed_headers(target, body.decode("utf-8")))
        notes.append(
            "re-signed with the local SLACK_SIGNING_SECRET and a new timestamp: Slack "
            "signatures are refused 5 minutes after they were made"
        )
    return notes


def _keep_or_replace(
    headers: dict[str, str], name: str, expected: str, replaced_note: str, label: str
) -> str:
    if hmac.compare_digest(headers[name].encode(), expected.encode()):
        return f"kept the stored {label}: it still verifies"
    headers[name] = expected
    return replaced_note


def _replay_mail(target: Target, stored: dict[str, Any]) -> ReplayOutcome:
    raw = base64.b64decode(stored["mail_base64"])
    answer = target.request(
        "POST", "/_dev/email", data=raw, headers={"Content-Type": "message/rfc822"}
    )
    description = f"email message {stored['message_id']} to /_dev/email"
    if not answer.ok:
        raise CliError(f"{description}: answered {answer.status_code}: {error_text(answer)}")
    return ReplayOutcome(
        description,
        answer.status_code,
        _one_line(answer.text),
        ["a mail has no signature: delivered again as SES inbound + S3 would"],
    )


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
