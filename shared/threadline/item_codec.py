"""How a message item's two large attributes are stored: compressed.

A message item is written in a transaction, which bills 2 WRU per started KB, and an
inbound SMS from Twilio carried ~1.3 KB: the JSON document (``message``: the text,
and ``channel_data`` with every form field the normalized message has no place for)
and the provider's envelope riding inline (``raw``: the whole signed request). Both
are stored as zlib-compressed binary attributes, compressed with a preset dictionary
of what they repeat (the envelope's and the document's keys, the headers the audit
allowlist keeps, Twilio's form field names): the item is ~0.9 KB, 2 WRU
(docs/cost.md). Plain zlib would leave it over 1 KB.

A zlib stream names its dictionary (the DICTID, the dictionary's Adler-32) in its
header, so a dictionary is kept for as long as items compressed with it exist: never
change one; add another and make :func:`compress` use it. Items written before
compression hold both attributes as text; :func:`text` reads either.
"""

from __future__ import annotations

import zlib
from typing import Any

# Dictionary 1. Frozen: stored items name it by its Adler-32. Deflate codes a near
# match cheapest, so the most common strings come last.
_DICTIONARY_V1 = (
    b"MediaContentType0=image%2Fjpeg&MediaUrl0=https%3A%2F%2Fapi.twilio.com%2F2010-04-01"
    b"%2FAccounts%2FAC&ProfileName=&WaId=&MessageType=text&Forwarded=true&ButtonText=&"
    b"ButtonPayload=&Latitude=&Longitude=&Address=&Label=&OriginalRepliedMessageSender="
    b"whatsapp%3A%2B1&OriginalRepliedMessageSid=SM&ReferralNumMedia=0&From=whatsapp%3A%2B1"
    b"&To=whatsapp%3A%2B1&"
    b'{"body":"ToCountry=US&ToState=CA&SmsMessageSid=SM&NumMedia=0&ToCity=&FromZip=&'
    b"SmsSid=SM&FromState=CA&SmsStatus=received&FromCity=&Body=&FromCountry=US&To=%2B1"
    b"&MessagingServiceSid=MG&ToZip=&NumSegments=1&MessageSid=SM&AccountSid=AC&From=%2B1"
    b'&ApiVersion=2010-04-01","headers":{"content-type":"application/x-www-form-urlencoded'
    b'","i-twilio-idempotency-token":"","user-agent":"TwilioProxy/1.1","x-twilio-signature'
    b'":""},"method":"POST","received_at":"2026-01-01T00:00:00.000000+00:00","url":"https:'
    b'//webhooks/twilio/messaging"}'
    b'{"channel_data":{"ProfileName":"","WaId":"1","MessageType":"text","ReferralNumMedia":'
    b'"0","AccountSid":"AC","MessagingServiceSid":"MG","NumSegments":"1","SmsStatus":'
    b'"received","ApiVersion":"2010-04-01","FromCity":"","FromState":"CA","FromZip":"",'
    b'"FromCountry":"US","ToCity":"","ToState":"CA","ToZip":"","ToCountry":"US"}}'
    b'{"author_role":"customer","received_at":"2026-01-01T00:00:00.000000Z","parts":[{"type"'
    b':"text","text":""}],"raw":{"location":"inline","content_type":"application/json",'
    b'"size":,"sha256":""},"channel_data":{"AccountSid":"AC'
)
_DICTIONARIES = {zlib.adler32(d): d for d in (_DICTIONARY_V1,)}


def compress(value: str) -> bytes:
    """``value`` (UTF-8) as stored: zlib with the current dictionary."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS, zdict=_DICTIONARY_V1)
    return compressor.compress(value.encode("utf-8")) + compressor.flush()


def decompress(data: bytes) -> bytes:
    """What :func:`compress` stored, whichever dictionary (or none) it used."""
    if len(data) < 6 or not data[1] & 0x20:  # no FDICT flag: plain zlib
        return zlib.decompress(data)
    dictionary = _DICTIONARIES[int.from_bytes(data[2:6], "big")]
    decompressor = zlib.decompressobj(zlib.MAX_WBITS, zdict=dictionary)
    return decompressor.decompress(data) + decompressor.flush()


def stored_bytes(value: Any) -> bytes | None:
    """An attribute that may be compressed, as its original bytes; None if absent.

    Text (items written before compression) is returned as it is; a binary attribute
    comes as boto3's ``Binary`` from ``from_item`` or as bytes from the low-level
    client.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    return decompress(bytes(value.value if hasattr(value, "value") else value))


def inline_envelope(item: dict[str, Any]) -> bytes | None:
    """The provider's envelope a message item holds inline (``raw``); None if none."""
    return stored_bytes(item.get("raw"))
