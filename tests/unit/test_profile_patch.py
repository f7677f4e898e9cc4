"""PATCH /v1/customers/{id}: the merge-patch document, its validation and BCP 47 tags."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from threadline.customers import ProfilePatch, canonical_language, parse_external_id


@pytest.mark.parametrize(
    ("tag", "canonical"),
    [
        ("en", "en"),
        ("pt-br", "pt-BR"),
        ("PT-BR", "pt-BR"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("sr-Latn", "sr-Latn"),
        ("es-419", "es-419"),  # Latin American Spanish: a UN M.49 region
        ("de-CH-1996", "de-CH-1996"),  # a variant
        ("en-US-u-ca-gregory", "en-US-u-ca-gregory"),  # an extension
        ("x-whatever", "x-whatever"),  # private use
        ("haw", "haw"),
    ],
)
def test_well_formed_tags_are_kept_in_their_conventional_case(tag, canonical):
    assert canonical_language(tag) == canonical


@pytest.mark.parametrize(
    "tag", ["", "e", "english!", "pt_BR", "en-", "-en", "en--US", "toolonglanguage", "en-US-x"]
)
def test_malformed_tags_are_refused(tag):
    with pytest.raises(ValueError, match="BCP 47"):
        canonical_language(tag)


@given(st.from_regex(r"[a-z]{2,3}(-[A-Za-z]{4})?(-[A-Za-z]{2})?", fullmatch=True))
def test_canonical_language_is_stable(tag):
    once = canonical_language(tag)
    assert canonical_language(once) == once
    assert once.lower() == tag.lower()


def test_a_field_left_out_is_unchanged_and_null_removes():
    patch = ProfilePatch.model_validate({"display_name": None, "tags": ["vip"]})
    assert patch.changes() == {"display_name": None, "tags": ["vip"]}
    assert ProfilePatch.model_validate({}).changes() == {}


def test_values_are_cleaned():
    patch = ProfilePatch.model_validate(
        {
            "display_name": "  Ana  ",
            "language": "pt-br",
            "tags": [" vip", "vip", "b2b "],
            "external_ids": {"salesforce": " 0035e00000AbCdE ", "hubspot": None},
        }
    )
    assert patch.changes() == {
        "display_name": "Ana",
        "language": "pt-BR",
        "tags": ["vip", "b2b"],
        "external_ids": {"salesforce": "0035e00000AbCdE", "hubspot": None},
    }


@pytest.mark.parametrize(
    "document",
    [
        {"colour": "red"},  # unknown field
        {"display_name": ""},
        {"display_name": "   "},
        {"display_name": "Ana\x00"},
        {"language": "en_US"},
        {"tags": "vip"},
        {"tags": [""]},
        {"tags": ["x" * 65]},
        {"tags": [f"t{i}" for i in range(51)]},
        {"external_ids": {"Sales Force": "1"}},
        {"external_ids": {"salesforce": ""}},
        {"external_ids": {"salesforce": "a\nb"}},
        {"external_ids": {"salesforce": "x" * 257}},
        {"external_ids": {f"s{i}": "1" for i in range(21)}},
        {"external_ids": ["salesforce"]},
    ],
)
def test_invalid_patches_are_refused(document):
    with pytest.raises(ValidationError):
        ProfilePatch.model_validate(document)


def test_external_id_lookups_are_system_colon_id():
    assert parse_external_id("salesforce:003:with:colons") == ("salesforce", "003:with:colons")
    for text in ("salesforce", "salesforce:", ":1", "Sales Force:1"):
        with pytest.raises(ValueError, match="system:id"):
            parse_external_id(text)
