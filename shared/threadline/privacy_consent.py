"""Consent records through the API: read per identity and purpose, record one.

Consent lives on the PROFILE item (identity -> purpose -> record, threadline.consent).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field

from threadline import consent
from threadline.consent import ConsentRecord, ConsentSource, ConsentState, Purpose
from threadline.dal.base import Update, WriteCancelled
from threadline.errors import MalformedRequest, NotFound, StorageUnavailable, ThreadlineError
from threadline.items import PROFILE_SK, customer_pk
from threadline.logs import logger
from threadline.model import Model
from threadline.schema import Identity, utc_now
from threadline.store import TimelineStore, profile_from_item

_CONSENT_ATTEMPTS = 5


class ConsentEntry(Model):
    """One identity's consent for one purpose, as the dispatcher sees it."""

    identity: str
    purpose: Purpose
    state: ConsentState | None = Field(description="null: never recorded (the default applies)")
    allowed: bool = Field(description="whether the dispatcher sends messages of this purpose")
    at: datetime | None = None
    source: ConsentSource | None = None
    evidence: str | None = None
    channel: str | None = None


class CustomerConsent(Model):
    customer_id: str
    consent: list[ConsentEntry]


class ConsentUpdate(Model):
    """``PUT /v1/customers/{id}/consent``: record a grant or a withdrawal, with evidence."""

    model_config = ConfigDict(extra="forbid")

    identity: str = Field(description="kind:value, one of the customer's identities")
    purpose: Purpose
    state: ConsentState
    source: ConsentSource = ConsentSource.API
    evidence: str | None = Field(
        default=None, max_length=1024, description="e.g. the signed form's id, a ticket URL"
    )
    channel: str | None = Field(default=None, max_length=32)


class IdentityNotOfCustomer(ThreadlineError):
    status = 422
    code = "identity_not_of_customer"


def consent_view(customer_id: str, item: dict[str, Any]) -> CustomerConsent:
    profile = profile_from_item(item)
    entries = []
    for identity in profile.customer.identities:
        records = consent.records_of(profile.consent.get(str(identity)))
        for purpose in Purpose:
            record = records.get(purpose)
            entries.append(
                ConsentEntry(
                    identity=str(identity),
                    purpose=purpose,
                    state=record.state if record else None,
                    allowed=profile.allows(identity, purpose),
                    at=record.at if record else None,
                    source=record.source if record else None,
                    evidence=record.evidence if record else None,
                    channel=record.channel if record else None,
                )
            )
    return CustomerConsent(customer_id=customer_id, consent=entries)


def get_consent(store: TimelineStore, customer_id: str) -> CustomerConsent:
    item = store.get_item(customer_pk(customer_id), PROFILE_SK, consistent=True)
    if item is None:
        raise NotFound("no such customer")
    return consent_view(customer_id, item)


def set_consent(
    store: TimelineStore, customer_id: str, update: ConsentUpdate, *, now: datetime | None = None
) -> CustomerConsent:
    """Record one purpose's consent of one identity; other purposes keep theirs.

    Read-modify-write with the identity's previous entry as the condition, so a STOP
    arriving meanwhile is never overwritten by a stale copy.
    """
    try:
        identity = Identity.parse(update.identity)
    except ValueError as exc:
        raise MalformedRequest(f"identity is not valid: {exc}", code="invalid_identity") from exc
    record = ConsentRecord(
        state=update.state,
        at=now or utc_now(),
        source=update.source,
        evidence=update.evidence,
        channel=update.channel,
    )
    for _ in range(_CONSENT_ATTEMPTS):
        item = store.get_item(customer_pk(customer_id), PROFILE_SK, consistent=True)
        if item is None:
            raise NotFound("no such customer")
        if str(identity) not in item.get("identities", []):
            raise IdentityNotOfCustomer(f"{identity.kind.value} identity is not this customer's")
        previous = (item.get("consent") or {}).get(str(identity))
        entry = {
            p.value: r.model_dump(mode="json", exclude_none=True)
            for p, r in consent.records_of(previous).items()
        }
        entry[update.purpose.value] = record.model_dump(mode="json", exclude_none=True)
        condition = (
            "consent.#identity = :previous"
            if previous is not None
            else "attribute_not_exists(consent.#identity)"
        )
        values: dict[str, Any] = {":entry": entry}
        if previous is not None:
            values[":previous"] = previous
        write = Update(
            key=(customer_pk(customer_id), PROFILE_SK),
            expression="SET consent.#identity = :entry",
            condition=f"attribute_exists(pk) AND {condition}",
            names={"#identity": str(identity)},
            values=values,
        )
        try:
            store.data.write([write])
        except WriteCancelled:
            continue
        except StorageUnavailable as exc:
            raise StorageUnavailable("the consent could not be written") from exc
        logger.info(
            "consent recorded",
            extra={
                "customer_id": customer_id,
                "purpose": update.purpose.value,
                "state": update.state.value,
                "source": update.source.value,
            },
        )
        return get_consent(store, customer_id)
    raise StorageUnavailable("the consent kept changing under us; retry")
