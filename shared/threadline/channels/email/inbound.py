"""E-mail: inbound through SES receipt rules (raw MIME in S3), parsed with the standard library.

SES does not call a webhook: a receipt rule writes the raw message to the inbound
bucket and the bucket's event notification runs ``functions/email_inbound``. There is
no signature to check (only SES may write to that bucket, by bucket policy), so this
module offers :func:`parse_email` rather than the webhook adapter's ``verify``.

What a mail becomes:

- ``sender``: the ``From`` address as a lower-cased ``email`` identity, its display
  name kept as ``sender_display_name``; ``recipient``: the first ``To`` address;
- a ``text`` part: the ``text/plain`` body (an HTML-only mail is converted to text
  with :mod:`html.parser`), with quoted history ("On ... wrote:", Outlook's
  "Original Message" blocks, ``>`` lines) and the ``-- `` signature removed. The
  whole mail stays in S3 as the raw payload, so nothing is lost by trimming;
- ``media`` parts for attachments (content type, size, filename, ``s3_key``
  ``attachments/<sha256>``); the bytes are in :attr:`ParsedEmail.attachments` for the
  store to put there;
- ``provider_message_id``: the ``Message-ID`` (angle brackets kept, as clients quote
  it in ``In-Reply-To``), else the sha256 of the raw bytes, so a redelivery dedupes;
- ``in_reply_to``: ``In-Reply-To``; ``thread_id``: the root (first id) of ``References``.

Auto-replies and mail SES marked as spam or carrying a virus are not customer
messages: :attr:`ParsedEmail.filtered` names why, and the message is marked
``author_role: system`` with ``channel_data.filtered``. The inbound path decides what
to do with them (docs/channels.md, "E-mail").

Nothing here raises anything but :class:`~threadline.errors.MalformedRequest` for any
input bytes: a mail we cannot read must not make SES's S3 event retry forever.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

from threadline.channels.base import InboundMessage, build
from threadline.errors import MalformedRequest
from threadline.schema import (
    AuthorRole,
    Channel,
    Identity,
    IdentityKind,
    MediaPart,
    Part,
    TextPart,
)

if TYPE_CHECKING:
    from email.message import EmailMessage, MIMEPart

PROVIDER = "ses"
ATTACHMENT_PREFIX = "attachments/"
MAX_ID_LENGTH = 256
_MSG_ID = re.compile(r"<[^<>\s]+>")
# Reasons a mail is kept but not filed as a customer message.
FILTER_AUTO_REPLY = "auto_reply"
FILTER_SPAM = "spam"
FILTER_VIRUS = "virus"
_BULK_PRECEDENCE = frozenset({"bulk", "junk", "auto_reply", "list"})

# Where quoted history starts. Gmail/Apple: "On <date>, <name> wrote:" (sometimes
# wrapped over two lines), and the same line in the languages Gmail, Apple Mail and
# Outlook write it in ("Am ... schrieb <name>:", "Le ... a écrit :", "El ...
# escribió:", ...); Outlook: "-----Original Message-----", or a rule of underscores,
# or a "From:"/"Von:"/"De:" line followed by "Sent:"/"Date:"/"Gesendet:" header
# lines. Every pattern is bounded ({0,400}), so no mail makes matching slow (the
# maintained library we measured backtracks for seconds on a few KB: docs/channels.md).
_INTRO = r"(?:On|Am|Le|El|Il|Em|Op|Den|Dne|W\s+dniu)"
_WROTE = re.compile(
    rf"^\s*{_INTRO}\b.{{0,400}}?(?:"
    # the verb ends the line: "wrote:", "a écrit :", "escribió:", "ha scritto:"
    r"\b(?:wrote|a\s+écrit|escribió|ha\s+scritto|escreveu|napisał|napsal)\s*:"
    # the verb, then who: "schrieb Ada <ada@example.com>:", "schreef ...:", "skrev ...:"
    r"|\b(?:schrieb|schreef|skrev)\b.{0,300}:"
    r")\s*$",
    re.IGNORECASE | re.DOTALL,
)
_INTRO_START = re.compile(rf"^\s*{_INTRO}\s", re.IGNORECASE)
_ORIGINAL = re.compile(
    r"^\s*-{2,}\s*(?:Original Message|Ursprüngliche Nachricht|Message d'origine|"
    r"Mensaje original|Messaggio originale|Oorspronkelijk bericht)\s*-{2,}\s*$",
    re.IGNORECASE,
)
_RULE = re.compile(r"^\s*_{10,}\s*$")
_OUTLOOK_FROM = re.compile(r"^\s*\**(?:From|Von|De|Da|Van|Från|Od):\**\s", re.IGNORECASE)
_OUTLOOK_NEXT = re.compile(
    r"^\s*\**(?:Sent|Date|To|Subject|Gesendet|Datum|An|Betreff|Envoyé|À|Objet|Enviado|"
    r"Fecha|Para|Asunto|Inviato|Data|Oggetto|Verzonden|Aan|Onderwerp|Skickat|Till|Ämne):\**\s",
    re.IGNORECASE,
)


# Header length stays sane on long threads: the root and the latest ids matter most
# to mail clients threading a reply (RFC 5322 3.6.4 allows trimming the middle).
MAX_REFERENCES = 20


def reply_to_of(message_id: str, references: list[str], subject: str | None) -> dict[str, str]:
    """What an agent's reply to this mail needs to thread (kept on the identity)."""
    chain = [*references, message_id]
    if len(chain) > MAX_REFERENCES:
        chain = [chain[0], *chain[-(MAX_REFERENCES - 1) :]]
    return {"message_id": message_id, "references": " ".join(chain), "subject": subject or ""}


@dataclass(frozen=True)
class Attachment:
    key: str
    """``attachments/<sha256>`` in the raw bucket: one copy per distinct file."""
    content_type: str
    data: bytes


@dataclass(frozen=True)
class ParsedEmail:
    message: InboundMessage
    attachments: list[Attachment] = field(default_factory=list)
    filtered: str | None = None
    """Why this is not a customer message (auto_reply, spam, virus), or None."""


def _clean(text: str) -> str:
    """Text safe to store as JSON: undecodable bytes (kept by the parser as
    surrogates) become U+FFFD instead of failing the DynamoDB write later."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _header(msg: EmailMessage, name: str) -> str | None:
    """A header's decoded value, or None; a header too broken to parse reads as None."""
    try:
        value = msg.get(name)
    except Exception:  # the header parser has raised on hostile input; treat as absent
        return None
    if value is None:
        return None
    return _clean(str(value)).strip() or None


def _addresses(msg: EmailMessage, name: str) -> list[tuple[str, str]]:
    """(display name, address) pairs of an address header, best effort."""
    from email.utils import getaddresses

    try:
        value = msg.get(name)
        if value is None:
            return []
        found = [(a.display_name, a.addr_spec) for a in getattr(value, "addresses", ())]
    except Exception:  # malformed: fall back to the lenient parser below
        found = []
    if not found:
        raw = _header(msg, name)
        found = getaddresses([raw]) if raw else []
    return [(_clean(n).strip(), _clean(a).strip()) for n, a in found if a and "@" in a]


def _email_identity(address: str) -> Identity | None:
    try:
        return Identity(kind=IdentityKind.EMAIL, value=address)
    except ValueError:
        return None


def _message_ids(value: str | None) -> list[str]:
    return [i for i in _MSG_ID.findall(value or "") if len(i) <= MAX_ID_LENGTH]


class _TextFromHtml(HTMLParser):
    _BLOCK = frozenset(
        {"br", "p", "div", "li", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"}
    )
    _SKIP = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCK:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.chunks.append(data)


def html_to_text(html: str) -> str:
    parser = _TextFromHtml()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.chunks).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def strip_quoted(text: str) -> str:
    """The new part of a reply: quoted history and the signature removed."""
    lines = text.splitlines()
    kept: list[str] = []
    for index, line in enumerate(lines):
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if (
            _WROTE.match(line)
            or (_INTRO_START.match(line) and _WROTE.match(line + " " + following))
            or _ORIGINAL.match(line)
            or (_RULE.match(line) and _OUTLOOK_FROM.match(following))
            or (_OUTLOOK_FROM.match(line) and _OUTLOOK_NEXT.match(following))
            or line in ("-- ", "--")
        ):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    return "\n".join(kept).strip()


def _decoded_text(part: MIMEPart) -> str:
    try:
        content = part.get_content()
    except Exception:  # unknown charset, broken transfer encoding: decode leniently below
        content = None
    if isinstance(content, str):
        return content
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _body_text(msg: EmailMessage) -> str:
    body = msg.get_body(preferencelist=("plain", "html"))
    if body is None:
        return ""
    text = _decoded_text(body)
    if body.get_content_subtype() == "html":
        text = html_to_text(text)
    return _clean(text)


def _attachments(msg: EmailMessage) -> tuple[list[Part], list[Attachment]]:
    parts: list[Part] = []
    files: list[Attachment] = []
    if not msg.is_multipart():
        return parts, files
    for attachment in msg.iter_attachments():
        data = attachment.get_payload(decode=True)
        if not isinstance(data, bytes):
            # An attached message (message/rfc822) has no payload of its own: keep it whole.
            data = attachment.as_bytes()
        content_type = _clean(attachment.get_content_type())
        key = ATTACHMENT_PREFIX + hashlib.sha256(data).hexdigest()
        filename = attachment.get_filename()
        parts.append(
            MediaPart(
                content_type=content_type,
                size=len(data),
                s3_key=key,
                filename=_clean(filename) if filename else None,
            )
        )
        files.append(Attachment(key=key, content_type=content_type, data=data))
    return parts, files


def _filter_reason(msg: EmailMessage) -> str | None:
    # SES prepends its X-SES-* verdicts, and msg.get reads the first occurrence: a
    # sender's own "X-SES-Spam-Verdict: PASS" further down cannot override SES's.
    if (_header(msg, "X-SES-Virus-Verdict") or "").upper() == "FAIL":
        return FILTER_VIRUS
    if (_header(msg, "X-SES-Spam-Verdict") or "").upper() == "FAIL":
        return FILTER_SPAM
    auto_submitted = (_header(msg, "Auto-Submitted") or "no").lower()
    precedence = (_header(msg, "Precedence") or "").lower()
    if (
        auto_submitted != "no"
        or _header(msg, "X-Autoreply") is not None
        or _header(msg, "X-Autorespond") is not None
        or precedence in _BULK_PRECEDENCE
    ):
        return FILTER_AUTO_REPLY
    return None


def _sent_at(msg: EmailMessage) -> datetime | None:
    from email.utils import parsedate_to_datetime

    value = _header(msg, "Date")
    if not value:
        return None
    try:
        sent = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return sent if sent.tzinfo else sent.replace(tzinfo=UTC)


def parse_email(raw: bytes) -> ParsedEmail:
    """One raw RFC 5322 message as threadline's inbound message (module docstring)."""
    try:
        return _parse(raw)
    except MalformedRequest:
        raise
    except Exception as exc:
        # The standard library's parser is lenient but not total on hostile input;
        # whatever it trips on, the answer is the same: this mail cannot be read.
        raise MalformedRequest("the mail could not be parsed") from exc


def _parse(raw: bytes) -> ParsedEmail:
    import email
    import email.policy

    msg: EmailMessage = email.message_from_bytes(raw, policy=email.policy.default)
    senders = _addresses(msg, "From")
    sender = _email_identity(senders[0][1]) if senders else None
    if sender is None:
        raise MalformedRequest("the mail has no usable From address")
    display_name = senders[0][0] or None
    recipients = _addresses(msg, "To") or _addresses(msg, "Delivered-To")
    recipient = _email_identity(recipients[0][1]) if recipients else None

    message_ids = _message_ids(_header(msg, "Message-ID"))
    provider_message_id = (
        message_ids[0] if message_ids else "sha256:" + hashlib.sha256(raw).hexdigest()
    )
    replied_to = _message_ids(_header(msg, "In-Reply-To"))
    in_reply_to = replied_to[0] if replied_to else None
    references = _message_ids(_header(msg, "References"))
    thread_id = references[0] if references else in_reply_to

    full_text = _body_text(msg)
    text = strip_quoted(full_text)
    parts: list[Part] = [TextPart(text=text or full_text.strip())] if full_text.strip() else []
    media, files = _attachments(msg)
    parts.extend(media)

    filtered = _filter_reason(msg)
    channel_data: dict[str, Any] = {
        "subject": _header(msg, "Subject"),
        "message_id": _header(msg, "Message-ID"),
        "references": references,
        "in_reply_to": in_reply_to,
        "cc": [a for _, a in _addresses(msg, "Cc")],
        "quoted_text_removed": bool(text) and text != full_text.strip(),
    }
    for name in ("Auto-Submitted", "Precedence", "X-SES-Spam-Verdict", "X-SES-Virus-Verdict"):
        value = _header(msg, name)
        if value is not None:
            channel_data[name.lower().replace("-", "_")] = value
    if filtered:
        channel_data["filtered"] = filtered
    if msg.defects:
        channel_data["defects"] = sorted({type(d).__name__ for d in msg.defects})

    message = build(
        InboundMessage,
        channel=Channel.EMAIL,
        provider=PROVIDER,
        provider_message_id=provider_message_id,
        author_role=AuthorRole.SYSTEM if filtered else AuthorRole.CUSTOMER,
        sender=sender,
        recipient=recipient,
        sender_display_name=display_name,
        sent_at=_sent_at(msg),
        parts=parts,
        in_reply_to=in_reply_to,
        thread_id=thread_id,
        channel_data=channel_data,
        # Kept on the identity: the agent's reply threads under this mail. Not for
        # an auto-reply (the customer's own last mail is the one to answer) nor for
        # a mail without a Message-ID (nothing to point In-Reply-To at).
        reply_to=(
            reply_to_of(provider_message_id, references, _header(msg, "Subject"))
            if message_ids and not filtered
            else None
        ),
        # The From address is not verified by anything we check here (SES's SPF/DKIM
        # verdicts are in the headers, not enforced), so it links nothing else.
    )
    return ParsedEmail(message=message, attachments=files, filtered=filtered)
