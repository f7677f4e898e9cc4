"""Hypothesis: whatever JSON reaches the Meta normalizers, the answer is drafts or a 400.

Arbitrary documents alone rarely get past the envelope, so most examples are Meta's
documented payloads with values swapped for arbitrary JSON at arbitrary depths.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit import meta_payloads as mp
from tests.unit.test_meta_channel import CHANNEL, MetaStore, post_event
from threadline.channels.base import InboundMessage, MessageEdit, StatusUpdate
from threadline.channels.meta.webhook import normalize_notification
from threadline.errors import MalformedRequest
from threadline.webhook import handle_webhook

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)

SEEDS = [
    mp.whatsapp_envelope(mp.whatsapp_value(payload))
    for payload in (
        mp.WA_TEXT,
        mp.WA_IMAGE,
        mp.WA_DOCUMENT,
        mp.WA_LOCATION,
        mp.WA_CONTACTS,
        mp.WA_BUTTON_REPLY,
        mp.WA_LIST_REPLY,
        mp.WA_TEMPLATE_BUTTON,
        mp.WA_REACTION,
        mp.WA_REPLY,
        mp.WA_UNSUPPORTED,
    )
] + [
    mp.whatsapp_envelope(mp.status_value(mp.wa_status("failed", errors=mp.WA_FAILED_ERRORS))),
    mp.whatsapp_envelope(mp.status_value(mp.wa_status("read", callback="a/b"))),
    *(
        mp.page_envelope(event)
        for event in (
            mp.MESSENGER_TEXT,
            mp.MESSENGER_QUICK_REPLY,
            mp.MESSENGER_ATTACHMENTS,
            mp.MESSENGER_REPLY,
            mp.MESSENGER_POSTBACK,
            mp.MESSENGER_REACTION,
            mp.MESSENGER_DELIVERY,
            mp.MESSENGER_ECHO,
        )
    ),
    *(
        mp.instagram_envelope(event)
        for event in (mp.INSTAGRAM_TEXT, mp.INSTAGRAM_IMAGE, mp.INSTAGRAM_READ, mp.INSTAGRAM_UNSEND)
    ),
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def mutated_payloads(draw: st.DrawFn) -> dict[str, Any]:
    document = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = [p for p in _paths(document) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return document


def _normalized_or_malformed(document: Any) -> None:
    try:
        items = normalize_notification(document) if isinstance(document, dict) else []
    except MalformedRequest:
        return
    for item in items:
        assert isinstance(item, InboundMessage | StatusUpdate | MessageEdit)


@given(json_values)
def test_arbitrary_json_is_normalized_or_malformed_never_an_exception(document):
    _normalized_or_malformed(document)


@given(st.sampled_from(["whatsapp_business_account", "page", "instagram"]), json_values)
def test_arbitrary_entries_under_each_object_are_normalized_or_malformed(kind, entry):
    _normalized_or_malformed({"object": kind, "entry": entry})
    _normalized_or_malformed({"object": kind, "entry": [entry]})


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_payloads())
def test_documented_payloads_with_arbitrary_values_are_normalized_or_malformed(document):
    _normalized_or_malformed(document)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_payloads())
def test_signed_mutated_payloads_are_answered_200_or_400_never_500(document):
    response = handle_webhook(post_event(document), CHANNEL, MetaStore())
    assert response["statusCode"] in (200, 400), response
