"""Slack: Events API inbound (``POST /webhooks/slack/events``) and chat.postMessage outbound.

Slack posts JSON and signs it with ``X-Slack-Signature`` (``v0=`` HMAC-SHA256 of
``v0:<X-Slack-Request-Timestamp>:<raw body>`` with the app's signing secret); slack_sdk's
``SignatureVerifier`` checks it and refuses timestamps more than five minutes off.

A Slack user is the identity ``slack:TEAM:USER``. A message's provider id is
``TEAM:CHANNEL:TS`` (a ``ts`` is unique only within its conversation), so a retry of
the same event, the ``message`` and ``app_mention`` events for one message, and the
echo of a reply we posted all meet the same DEDUP item and are stored once.

slack_sdk is imported only when a signature is checked or the Web API is called:
handler cold start matters and the module-level import is not free.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from threadline.channels.base import (
    Acknowledgement,
    InboundMessage,
    MessageEdit,
    Normalized,
    WebhookRequest,
    build,
    parse_json_object,
)
from threadline.errors import MalformedRequest, SignatureInvalid
from threadline.logs import logger
from threadline.schema import Channel, Identity, IdentityKind, MediaPart, Part, TextPart

PROVIDER = "slack"
SLACK_URL = "https://slack.com"
SLACK_API_URL = f"{SLACK_URL}/api/"
# Message subtypes that are a person writing; every other subtype (joins, topic
# changes, bot_message, ...) is workspace noise or a bot and is not a customer message.
CUSTOMER_SUBTYPES = frozenset({None, "file_share", "thread_broadcast", "me_message"})
# Fields the normalized message carries itself; the rest of the event goes to
# channel_data so nothing is dropped silently.
_MAPPED_EVENT_FIELDS = frozenset({"type", "user", "text", "files", "thread_ts", "ts"})
_MAPPED_FILE_FIELDS = frozenset({"id", "name", "mimetype", "size", "url_private"})
# Slack re-sends an event it got no answer to within 3 s: users.info must not eat
# that budget, so a slow lookup gives up and the message is filed without linking.
DIRECTORY_TIMEOUT_SECONDS = 2
DIRECTORY_CACHE_SIZE = 1024


def verify_signature(request: WebhookRequest, signing_secret: str) -> None:
    """Raise SignatureInvalid unless Slack signed exactly this body, recently."""
    from slack_sdk.signature import SignatureVerifier

    timestamp = request.headers.get("x-slack-request-timestamp")
    signature = request.headers.get("x-slack-signature")
    if not timestamp or not signature:
        raise SignatureInvalid("X-Slack-Signature or X-Slack-Request-Timestamp is missing")
    if not timestamp.isdigit():
        # SignatureVerifier would raise ValueError on int(); this is a forgery, not a 500.
        raise SignatureInvalid("X-Slack-Request-Timestamp is not a Unix time")
    try:
        request.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Slack sends UTF-8 JSON; the SDK would raise decoding anything else (a 500).
        raise MalformedRequest("body is not UTF-8") from exc
    if not SignatureVerifier(signing_secret).is_valid(request.body, timestamp, signature):
        raise SignatureInvalid("X-Slack-Signature does not match this request or is stale")


def _str(document: Mapping[str, Any], key: str) -> str | None:
    value = document.get(key)
    return value if isinstance(value, str) and value else None


def _slack_time(ts: str | None) -> datetime | None:
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(float(ts), UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise MalformedRequest("a Slack ts is not a timestamp") from exc


def _media_parts(files: Any) -> list[Part]:
    if files is None:
        return []
    if not isinstance(files, list):
        raise MalformedRequest("files is not a list")
    parts: list[Part] = []
    for file in files:
        if not isinstance(file, dict):
            raise MalformedRequest("a file is not an object")
        size = file.get("size")
        parts.append(
            build(
                MediaPart,
                content_type=_str(file, "mimetype"),
                size=size if isinstance(size, int) and not isinstance(size, bool) else None,
                url=_str(file, "url_private"),
                filename=_str(file, "name"),
                provider_media_id=_str(file, "id"),
            )
        )
    return parts


def _parts(event: Mapping[str, Any]) -> list[Part]:
    text = event.get("text")
    parts: list[Part] = [TextPart(text=text)] if isinstance(text, str) and text else []
    return parts + _media_parts(event.get("files"))


def _own_bot_users(envelope: Mapping[str, Any]) -> set[str]:
    """The app's own bot user ids, from the event's authorizations."""
    authorizations = envelope.get("authorizations")
    if not isinstance(authorizations, list):
        return set()
    return {
        str(a["user_id"])
        for a in authorizations
        if isinstance(a, dict) and a.get("is_bot") is True and isinstance(a.get("user_id"), str)
    }


def is_from_a_bot(message: Mapping[str, Any], envelope: Mapping[str, Any]) -> bool:
    """True for anything a bot wrote, ours above all: answering it could loop forever."""
    return bool(
        message.get("bot_id")
        or message.get("subtype") == "bot_message"
        or message.get("bot_profile")
        or (message.get("app_id") and message.get("app_id") == envelope.get("api_app_id"))
        or _str(message, "user") in _own_bot_users(envelope)
    )


class SlackDirectory:
    """Looks up a Slack user's confirmed e-mail with the bot token (users.info).

    Answers are cached per user for the life of the warm container, misses included,
    so a busy customer costs one Web API call per container, not one per message.
    """

    def __init__(
        self,
        bot_token: Callable[[], str],
        *,
        base_url: str = SLACK_API_URL,
        timeout: int = DIRECTORY_TIMEOUT_SECONDS,
    ) -> None:
        self._bot_token = bot_token
        self.base_url = base_url
        self.timeout = timeout
        self._cache: OrderedDict[tuple[str, str], tuple[str | None, str | None]] = OrderedDict()
        self._lock = threading.Lock()

    def lookup(self, team: str, user: str) -> tuple[str | None, str | None]:
        """(confirmed e-mail, real name) of the user; (None, None) when unknown."""
        key = (team, user)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        found = self._fetch(user)
        with self._lock:
            self._cache[key] = found
            while len(self._cache) > DIRECTORY_CACHE_SIZE:
                self._cache.popitem(last=False)
        return found

    def _fetch(self, user: str) -> tuple[str | None, str | None]:
        from slack_sdk import WebClient
        from slack_sdk.errors import SlackApiError, SlackClientError

        try:
            token = self._bot_token()
        except Exception:
            # A missing or unreadable token must not cost the message: Slack would
            # get a 5xx and retry it forever. Log the kind of failure, not the secret.
            logger.exception("slack bot token could not be read; e-mail linking skipped")
            return None, None
        try:
            client = WebClient(
                token=token,
                base_url=self.base_url,
                timeout=self.timeout,
                retry_handlers=[],
            )
            profile_user = client.users_info(user=user).get("user") or {}
        except (SlackApiError, SlackClientError, OSError, ValueError) as exc:
            # Linking is a convenience: the message is stored either way.
            logger.warning("slack users.info failed", extra={"error": type(exc).__name__})
            return None, None
        profile = profile_user.get("profile") or {}
        name = profile.get("real_name") or profile_user.get("real_name") or None
        email = profile.get("email")
        # Only an address Slack confirmed, of a person: the design links on exact,
        # verified identities only.
        if (
            not isinstance(email, str)
            or profile_user.get("is_email_confirmed") is not True
            or profile_user.get("is_bot")
            or profile_user.get("deleted")
        ):
            return None, name if isinstance(name, str) else None
        return email, name if isinstance(name, str) else None


def _verified_email(address: str | None) -> list[Identity]:
    if not address:
        return []
    try:
        return [Identity(kind=IdentityKind.EMAIL, value=address)]
    except ValueError:
        return []


class SlackEvents:
    """The channel adapter for ``POST /webhooks/slack/events``."""

    provider = PROVIDER

    def __init__(
        self, signing_secret: Callable[[], str], directory: SlackDirectory | None = None
    ) -> None:
        self._signing_secret = signing_secret
        self.directory = directory

    def verify(self, request: WebhookRequest) -> None:
        verify_signature(request, self._signing_secret())

    def acknowledge(self) -> Acknowledgement:
        return Acknowledgement(status=200, content_type="application/json", body='{"ok":true}')

    def normalize(self, request: WebhookRequest) -> list[Normalized]:
        envelope = parse_json_object(request.body)
        kind = envelope.get("type")
        if kind == "url_verification":
            challenge = envelope.get("challenge")
            if not isinstance(challenge, str):
                raise MalformedRequest("url_verification without a challenge")
            body = json.dumps({"challenge": challenge})
            return [Acknowledgement(status=200, content_type="application/json", body=body)]
        if kind != "event_callback":
            return []  # app_rate_limited and future envelope types: nothing to store
        event = envelope.get("event")
        team = _str(envelope, "team_id")
        event_id = _str(envelope, "event_id")
        if not isinstance(event, dict) or not team or not event_id:
            raise MalformedRequest("event_callback without event, team_id or event_id")
        item = self._normalize_event(envelope, event, team, event_id, request.headers)
        return [item] if item is not None else []

    def _normalize_event(
        self,
        envelope: Mapping[str, Any],
        event: dict[str, Any],
        team: str,
        event_id: str,
        headers: Mapping[str, str],
    ) -> Normalized | None:
        event_type = event.get("type")
        if event_type not in ("message", "app_mention"):
            return None
        subtype = event.get("subtype")
        if subtype is not None and not isinstance(subtype, str):
            # Not a shape Slack sends; ignored like any subtype that is not a person.
            return None
        if subtype in ("message_changed", "message_deleted"):
            return self._edit(envelope, event, team, event_id)
        if subtype not in CUSTOMER_SUBTYPES or is_from_a_bot(event, envelope):
            return None
        user = _str(event, "user")
        channel = _str(event, "channel")
        ts = _str(event, "ts")
        if not user or not channel or not ts:
            raise MalformedRequest("message without user, channel or ts")
        user_team = _str(event, "user_team") or _str(event, "team") or team
        thread_ts = _str(event, "thread_ts")
        in_thread = thread_ts is not None and thread_ts != ts
        email, name = self._lookup(user_team, user)
        # Reply where the customer wrote: in their thread; in a channel, in a thread
        # under their message (a support answer should not flood the channel); in a
        # DM, plainly.
        reply_thread = thread_ts or (None if event.get("channel_type") == "im" else ts)
        reply_to = {"channel": channel, **({"thread_ts": reply_thread} if reply_thread else {})}
        channel_data: dict[str, Any] = {
            k: v for k, v in event.items() if k not in _MAPPED_EVENT_FIELDS
        }
        channel_data["ts"] = ts
        channel_data["event_type"] = event_type
        channel_data["event_id"] = event_id
        for key in ("event_time", "api_app_id", "team_id", "is_ext_shared_channel"):
            if key in envelope:
                channel_data[key] = envelope[key]
        if thread_ts:
            channel_data["thread_ts"] = thread_ts
        retry = headers.get("x-slack-retry-num")
        if retry:
            channel_data["retry_num"] = retry
        extra_files = _extra_file_fields(event.get("files"))
        if extra_files:
            channel_data["files"] = extra_files
        return build(
            InboundMessage,
            channel=Channel.SLACK,
            provider=PROVIDER,
            provider_message_id=f"{team}:{channel}:{ts}",
            sender=_slack_identity(user_team, user),
            sender_display_name=name,
            sent_at=_slack_time(ts),
            parts=_parts(event),
            in_reply_to=f"{team}:{channel}:{thread_ts}" if in_thread else None,
            thread_id=thread_ts,
            channel_data=channel_data,
            verified_identities=_verified_email(email),
            reply_to=reply_to,
        )

    def _edit(
        self, envelope: Mapping[str, Any], event: dict[str, Any], team: str, event_id: str
    ) -> MessageEdit | None:
        channel = _str(event, "channel")
        if not channel:
            raise MalformedRequest("message change without channel")
        if event.get("subtype") == "message_deleted":
            deleted_ts = _str(event, "deleted_ts")
            if not deleted_ts:
                raise MalformedRequest("message_deleted without deleted_ts")
            return build(
                MessageEdit,
                provider=PROVIDER,
                provider_message_id=f"{team}:{channel}:{deleted_ts}",
                kind="deleted",
                edit_id=event_id,
                at=_slack_time(_str(event, "ts")),
                channel_data={"event_id": event_id},
            )
        message = event.get("message")
        if not isinstance(message, dict):
            raise MalformedRequest("message_changed without message")
        if is_from_a_bot(message, envelope):
            return None  # our own reply being updated (or another bot's): not the customer
        ts = _str(message, "ts")
        if not ts:
            raise MalformedRequest("message_changed without message.ts")
        edited = message.get("edited")
        edited_ts = _str(edited, "ts") if isinstance(edited, dict) else None
        return build(
            MessageEdit,
            provider=PROVIDER,
            provider_message_id=f"{team}:{channel}:{ts}",
            kind="edited",
            edit_id=event_id,
            parts=_parts(message),
            at=_slack_time(edited_ts or _str(event, "ts")),
            channel_data={"event_id": event_id},
        )

    def _lookup(self, team: str, user: str) -> tuple[str | None, str | None]:
        if self.directory is None:
            return None, None
        return self.directory.lookup(team, user)


def _slack_identity(team: str, user: str) -> Identity:
    try:
        return Identity(kind=IdentityKind.SLACK, value=f"{team}:{user}")
    except ValueError as exc:
        raise MalformedRequest("team or user is not a Slack id") from exc


def _extra_file_fields(files: Any) -> list[dict[str, Any]]:
    if not isinstance(files, list):
        return []
    extras = [
        {k: v for k, v in f.items() if k not in _MAPPED_FILE_FIELDS}
        for f in files
        if isinstance(f, dict)
    ]
    return extras if any(extras) else []


def web_api_url(api_base_url: str = SLACK_URL) -> str:
    """Slack's Web API methods live under ``/api/`` of its root."""
    return f"{api_base_url.rstrip('/')}/api/"


def slack_api_base_url() -> str:
    from threadline.settings import api_base_url

    return api_base_url("SLACK_API_BASE_URL", SLACK_URL)


def directory_from_env() -> SlackDirectory | None:
    """The e-mail directory when a bot token is configured (it is optional inbound)."""
    if not os.environ.get("SLACK_BOT_TOKEN_PARAM"):
        return None
    from threadline.secrets import get_secret

    return SlackDirectory(
        lambda: get_secret("SLACK_BOT_TOKEN"),
        base_url=web_api_url(slack_api_base_url()),
    )
