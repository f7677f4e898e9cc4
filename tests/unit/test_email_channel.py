"""The e-mail channel's parser, from real-shaped MIME messages (tests/unit/email_messages.py)."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit import email_messages as em
from threadline.channels.email.inbound import html_to_text, parse_email, strip_quoted
from threadline.errors import MalformedRequest
from threadline.schema import AuthorRole, Channel, Identity, MediaPart, TextPart


def text_of(raw: bytes) -> str:
    parts = parse_email(raw).message.parts
    return "\n".join(p.text for p in parts if isinstance(p, TextPart))


def test_multipart_alternative_takes_the_plain_part() -> None:
    parsed = parse_email(em.ALTERNATIVE)
    message = parsed.message
    assert message.channel is Channel.EMAIL
    assert message.provider == "ses"
    assert message.sender == Identity.parse("email:ada@example.com")
    assert message.sender_display_name == "Ada Lovelace"
    assert message.recipient == Identity.parse("email:support@threadline.example")
    assert message.provider_message_id == "<CAH+abc123@mail.gmail.com>"
    assert message.parts == [TextPart(text="Hello, order #42 has not arrived. Café?")]
    assert message.channel_data["subject"] == "My order has not arrived"
    assert message.sent_at == datetime(2026, 11, 23, 8, 1, 2, tzinfo=UTC)
    assert message.author_role is AuthorRole.CUSTOMER
    assert parsed.filtered is None


def test_attachment_is_a_media_part_with_its_bytes_for_the_store() -> None:
    parsed = parse_email(em.ATTACHMENT)
    text, media = parsed.message.parts
    assert text == TextPart(text="See the attached photo.")
    assert isinstance(media, MediaPart)
    [attachment] = parsed.attachments
    assert attachment.key == "attachments/" + hashlib.sha256(attachment.data).hexdigest()
    assert attachment.data.startswith(b"\x89PNG")
    assert media.content_type == "image/png"
    assert media.filename == "damage.png"
    assert media.size == len(attachment.data)
    assert media.s3_key == attachment.key


def test_gmail_reply_loses_quote_and_signature_and_keeps_threading() -> None:
    message = parse_email(em.GMAIL_REPLY).message
    assert text_of(em.GMAIL_REPLY) == "Thanks, it arrived today.\n\nAda"
    assert message.in_reply_to == "<01000abc@email.amazonses.com>"
    assert message.thread_id == "<CAH+abc123@mail.gmail.com>"
    assert message.channel_data["quoted_text_removed"] is True


def test_outlook_reply_loses_the_original_message_block() -> None:
    assert text_of(em.OUTLOOK_REPLY) == "Please send it to accounts@example.org instead."
    message = parse_email(em.OUTLOOK_REPLY).message
    assert message.thread_id == "<01000def@email.amazonses.com>"


def test_iso_8859_1_body_and_encoded_headers() -> None:
    message = parse_email(em.LATIN1).message
    assert text_of(em.LATIN1) == "Bonjour, le colis est arrivé abîmé."
    assert message.sender_display_name == "François Dupont"
    assert message.channel_data["subject"] == "Réclamation"


def test_malformed_headers_and_unknown_charset_do_not_crash() -> None:
    message = parse_email(em.MALFORMED).message
    assert message.sender == Identity.parse("email:broken@example.com")
    assert message.sent_at is None
    # No usable Message-ID: the raw bytes' hash dedupes a redelivery instead.
    assert message.provider_message_id == "sha256:" + hashlib.sha256(em.MALFORMED).hexdigest()
    assert "Body with" in text_of(em.MALFORMED)
    message.model_dump_json()  # storable: no surrogates left in any string


@pytest.mark.parametrize(("raw", "reason"), [(em.AUTO_REPLY, "auto_reply"), (em.SPAM, "spam")])
def test_auto_replies_and_spam_are_flagged_not_customer_messages(raw: bytes, reason: str) -> None:
    parsed = parse_email(raw)
    assert parsed.filtered == reason
    assert parsed.message.author_role is AuthorRole.SYSTEM
    assert parsed.message.channel_data["filtered"] == reason


@pytest.mark.parametrize(
    "header",
    [
        b"X-Autoreply: yes",
        b"X-Autorespond: yes",
        b"Precedence: bulk",
        b"Precedence: junk",
        b"X-SES-Virus-Verdict: FAIL",
    ],
)
def test_other_auto_reply_and_verdict_headers(header: bytes) -> None:
    raw = b"From: a@example.com\r\n" + header + b"\r\nSubject: x\r\n\r\nhello\r\n"
    assert parse_email(raw).filtered is not None


def test_auto_submitted_no_is_a_person() -> None:
    raw = b"From: a@example.com\nAuto-Submitted: no\n\nhello\n"
    assert parse_email(raw).filtered is None


def test_html_only_mail_becomes_text() -> None:
    assert text_of(em.HTML_ONLY) == "Line one & more\n\nLine\ntwo"
    assert html_to_text("<script>x()</script><b>bold</b>") == "bold"


def test_strip_quoted_keeps_an_all_quoted_mail_whole() -> None:
    raw = b"From: a@example.com\n\n> only a quote\n"
    assert text_of(raw) == "> only a quote"
    assert strip_quoted("hi\n-- \nsig") == "hi"


@pytest.mark.parametrize("raw", [b"", b"no headers at all", b"From: not-an-address\n\nhi"])
def test_mail_without_a_usable_sender_is_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedRequest):
        parse_email(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_raise_only_malformed_request(raw: bytes) -> None:
    with contextlib.suppress(MalformedRequest):
        parse_email(raw)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"From: ",
                b"a@example.com",
                b'"x" <',
                b">",
                b"=?utf-8?q?",
                b"?=",
                b"\r\n",
                b"\n\n",
                b"Content-Type: multipart/mixed; boundary=b\n",
                b"--b\n",
                b"Content-Transfer-Encoding: base64\n",
                b"References: <",
                b"\xff\xc3",
                b"charset=bogus",
            ]
        ),
        max_size=40,
    )
)
def test_mail_shaped_noise_raises_only_malformed_request(chunks: list[bytes]) -> None:
    try:
        parsed = parse_email(b"".join(chunks))
    except MalformedRequest:
        return
    parsed.message.model_dump_json()


def test_a_senders_own_verdict_header_cannot_override_ses() -> None:
    # SES prepends its verdicts; a forged PASS further down changes nothing.
    raw = (
        b"X-SES-Spam-Verdict: FAIL\r\nFrom: a@example.com\r\n"
        b"X-SES-Spam-Verdict: PASS\r\n\r\nhello\r\n"
    )
    assert parse_email(raw).filtered == "spam"


# Replies as the common clients write them, in English and other languages: the new
# text is kept, the attribution line and everything after it goes.
QUOTED_REPLIES = {
    "apple_iphone": (
        "Yes, Tuesday works.\n\nSent from my iPhone\n\n> On 23 Nov 2026, at 09:12, "
        "Threadline Support <support@threadline.example> wrote:\n> \n> Can we deliver?\n",
        "Yes, Tuesday works.\n\nSent from my iPhone",
    ),
    "apple_mac": (
        "Yes, Tuesday works.\n\nOn 23 Nov 2026, at 09:12, Threadline Support "
        "<support@threadline.example> wrote:\n\n> Can we deliver on Tuesday?\n",
        "Yes, Tuesday works.",
    ),
    "gmail_german_wrapped": (
        "Danke, ist angekommen.\n\nAm Mo., 23. Nov. 2026 um 09:12 Uhr schrieb Threadline "
        "Support <\nsupport@threadline.example>:\n\n> Wir haben es erneut verschickt.\n",
        "Danke, ist angekommen.",
    ),
    "gmail_french": (
        "Merci, bien reçu.\n\nLe lun. 23 nov. 2026 à 09:12, Threadline Support "
        "<support@threadline.example> a écrit :\n\n> Nous l'avons renvoyé.\n",
        "Merci, bien reçu.",
    ),
    "gmail_spanish": (
        "Gracias, ya llegó.\n\nEl lun, 23 nov 2026 a las 9:12, Threadline Support "
        "(<support@threadline.example>) escribió:\n\n> Lo hemos reenviado.\n",
        "Gracias, ya llegó.",
    ),
    "gmail_dutch": (
        "Bedankt!\n\nOp ma 23 nov. 2026 om 09:12 schreef Threadline Support "
        "<support@threadline.example>:\n\n> Verzonden.\n",
        "Bedankt!",
    ),
    "outlook_german": (
        "Bitte an buchhaltung@example.de senden.\n\nVon: Threadline Support "
        "<support@threadline.example>\nGesendet: Montag, 23. November 2026 10:00\n"
        "An: Karl <karl@example.de>\nBetreff: Rechnung\n\nIhre Rechnung anbei.\n",
        "Bitte an buchhaltung@example.de senden.",
    ),
    "outlook_french_original": (
        "Voir ci-dessous.\n\n-----Message d'origine-----\nDe : Support\nObjet : Facture\n",
        "Voir ci-dessous.",
    ),
}


@pytest.mark.parametrize("name", sorted(QUOTED_REPLIES))
def test_quoted_history_is_cut_in_every_client_and_language(name: str) -> None:
    text, expected = QUOTED_REPLIES[name]
    assert strip_quoted(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "On Monday I wrote to you about this.\nStill waiting.",
        "Am Montag kommt der Techniker.\nDanke",
        "Le colis est arrivé.\nEl paquete también.",
        "Von Montag bis Freitag.\nAn: niemand",
    ],
)
def test_sentences_that_only_look_like_attribution_lines_are_kept(text: str) -> None:
    assert strip_quoted(text) == text
