"""Rich renderings of API documents: a timeline table, one line per event."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.table import Table
from rich.text import Text

CHANNEL_ICONS = {
    "sms": "💬",
    "whatsapp": "🟢",
    "voice": "📞",
    "email": "✉️ ",
    "slack": "#️⃣ ",
    "messenger": "🔵",
    "instagram": "📷",
    "telegram": "✈️ ",
    "webchat": "🌐",
}
DIRECTION_ARROWS = {"inbound": "←  in", "outbound": "→ out"}


def message_text(message: dict[str, Any]) -> str:
    """The message's parts as one string: text as is, other parts as ``[type]``."""
    pieces = []
    for part in message.get("parts") or []:
        if part.get("type") == "text":
            pieces.append(str(part.get("text", "")))
        else:
            kind = part.get("content_type") or part.get("type")
            caption = part.get("caption")
            pieces.append(f"[{kind}{': ' + caption if caption else ''}]")
    call = (message.get("channel_data") or {}).get("call")
    if isinstance(call, dict) and not pieces:
        pieces.append(f"[{call.get('outcome') or call.get('status')} call]")
    if message.get("deleted_at"):
        pieces.append("[deleted]")
    return "\n".join(pieces)


def short_time(value: str | None) -> str:
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return value


def status_history(message: dict[str, Any]) -> str:
    """``queued → sent → delivered``: the statuses a message went through."""
    history = [str(change.get("status")) for change in message.get("status_history") or []]
    if not history or history[-1] != message.get("status"):
        history.append(str(message.get("status")))
    return " → ".join(history)


def timeline_table(customer: dict[str, Any], items: list[dict[str, Any]]) -> Table:
    """Oldest first (the API answers newest first), a section per conversation."""
    identities = ", ".join(
        f"{identity['kind']}:{identity['value']}" for identity in customer.get("identities") or []
    )
    name = customer.get("display_name")
    title = f"{name + ' · ' if name else ''}{customer['id']}  ({identities})"
    table = Table(title=Text(title), title_justify="left", show_lines=False)
    for column in ("time", "channel", "dir", "text", "status"):
        table.add_column(column, overflow="fold")
    conversation = None
    for message in reversed(items):
        if message.get("conversation_id") != conversation:
            if conversation is not None:
                table.add_section()
            conversation = message.get("conversation_id")
            table.add_row(
                Text("conversation", style="dim"), "", "", Text(str(conversation), style="dim"), ""
            )
        channel = str(message.get("channel"))
        table.add_row(
            short_time(message.get("received_at")),
            f"{CHANNEL_ICONS.get(channel, '')} {channel}",
            DIRECTION_ARROWS.get(str(message.get("direction")), str(message.get("direction"))),
            Text(message_text(message)),  # Text: a message is never rich markup
            status_history(message),
        )
    if not items:
        table.add_row("", "", "", Text("nothing on this timeline yet", style="dim"), "")
    return table


def event_line(event: dict[str, Any]) -> Text:
    detail = event.get("detail") or {}
    line = Text()
    line.append(short_time(event.get("time")) + "  ", style="dim")
    line.append(f"{event.get('detail-type', '?'):30}", style="bold")
    line.append(f" {detail.get('customer_id') or '-'}")
    message = detail.get("message")
    if isinstance(message, dict):
        line.append(
            f"  {message.get('channel')} {message.get('direction')} {message.get('status')}"
            f"  {message.get('id')}"
        )
    conversation = detail.get("conversation")
    if isinstance(conversation, dict):
        line.append(f"  conversation {conversation.get('id')} {conversation.get('state')}")
    return line
